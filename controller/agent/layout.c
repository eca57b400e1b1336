#include "agent/layout.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

static int fail(char *msg, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *msg, size_t cap, const char *fmt, ...)
{
    va_list ap;
    if (cap > 0) {
        va_start(ap, fmt);
        vsnprintf(msg, cap, fmt, ap);
        va_end(ap);
        /* Keys come from user input; keep the message printable. */
        for (char *p = msg; *p; p++) {
            if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
                *p = '?';
        }
    }
    return -EINVAL;
}

static int parse_devices(json_object *v, struct gm_layout_entry *e, int i,
                         char *msg, size_t cap)
{
    if (json_object_is_type(v, json_type_string)) {
        if (strcmp(json_object_get_string(v), "all") != 0)
            return fail(msg, cap,
                        "layout[%d].devices: want \"all\" or a "
                        "list of GPU indices",
                        i);
        e->is_default = 1;
        return 0;
    }
    if (!json_object_is_type(v, json_type_array))
        return fail(msg, cap,
                    "layout[%d].devices: want \"all\" or a list of GPU "
                    "indices",
                    i);
    size_t n = json_object_array_length(v);
    if (n == 0 || n > GM_SMI_MAX_INDEX + 1)
        return fail(msg, cap, "layout[%d].devices: want 1..%d indices", i,
                    GM_SMI_MAX_INDEX + 1);
    for (size_t k = 0; k < n; k++) {
        json_object *d = json_object_array_get_idx(v, k);
        if (!json_object_is_type(d, json_type_int))
            return fail(msg, cap, "layout[%d].devices[%zu]: not an integer", i,
                        k);
        int64_t x = json_object_get_int64(d);
        if (x < 0 || x > GM_SMI_MAX_INDEX)
            return fail(msg, cap,
                        "layout[%d].devices[%zu]: index %lld out of 0..%d", i,
                        k, (long long)x, GM_SMI_MAX_INDEX);
        for (int j = 0; j < e->ndevices; j++) {
            if (e->devices[j] == (int)x)
                return fail(msg, cap, "layout[%d].devices: %d twice", i,
                            (int)x);
        }
        e->devices[e->ndevices++] = (int)x;
    }
    return 0;
}

static int parse_mig_devices(json_object *v, struct gm_layout_entry *e, int i,
                             char *msg, size_t cap)
{
    int total = 0;
    if (!json_object_is_type(v, json_type_object))
        return fail(msg, cap, "layout[%d].migDevices: want an object", i);
    json_object_object_foreach(v, key, val)
    {
        if (!gm_smi_valid_profile(key))
            return fail(msg, cap,
                        "layout[%d].migDevices: bad profile name \"%.40s\"", i,
                        key);
        if (!json_object_is_type(val, json_type_int))
            return fail(msg, cap,
                        "layout[%d].migDevices[%s]: count is not an integer", i,
                        key);
        int64_t c = json_object_get_int64(val);
        if (c < 0 || c > GM_LAYOUT_MAX_INSTANCES)
            return fail(msg, cap,
                        "layout[%d].migDevices[%s]: count %lld out of 0..%d", i,
                        key, (long long)c, GM_LAYOUT_MAX_INSTANCES);
        if (c == 0)
            continue;
        if (e->nprofiles == GM_LAYOUT_MAX_PROFILES)
            return fail(msg, cap,
                        "layout[%d].migDevices: more than %d "
                        "profiles",
                        i, GM_LAYOUT_MAX_PROFILES);
        total += (int)c;
        struct gm_layout_profile *p = &e->profiles[e->nprofiles++];
        snprintf(p->name, sizeof(p->name), "%s", key);
        p->count = (int)c;
    }
    if (total > GM_LAYOUT_MAX_INSTANCES)
        return fail(msg, cap,
                    "layout[%d].migDevices: %d instances, a GPU has at most "
                    "%d",
                    i, total, GM_LAYOUT_MAX_INSTANCES);
    return 0;
}

static int parse_entry(json_object *o, struct gm_layout_entry *e, int i,
                       char *msg, size_t cap)
{
    int have_devices = 0;
    int err;

    memset(e, 0, sizeof(*e));
    if (!json_object_is_type(o, json_type_object))
        return fail(msg, cap, "layout[%d]: want an object", i);
    e->mig_enabled = 1;
    json_object_object_foreach(o, key, val)
    {
        if (strcmp(key, "devices") == 0) {
            have_devices = 1;
            err = parse_devices(val, e, i, msg, cap);
        } else if (strcmp(key, "migEnabled") == 0) {
            if (!json_object_is_type(val, json_type_boolean))
                return fail(msg, cap, "layout[%d].migEnabled: want a boolean",
                            i);
            e->mig_enabled = json_object_get_boolean(val);
            err = 0;
        } else if (strcmp(key, "migDevices") == 0) {
            err = parse_mig_devices(val, e, i, msg, cap);
        } else {
            return fail(msg, cap, "layout[%d]: unknown key \"%.40s\"", i, key);
        }
        if (err)
            return err;
    }
    if (!have_devices)
        e->is_default = 1;
    if (e->mig_enabled && e->nprofiles == 0)
        return fail(msg, cap,
                    "layout[%d]: migDevices must list at least one profile "
                    "when migEnabled is true",
                    i);
    if (!e->mig_enabled && e->nprofiles > 0)
        return fail(msg, cap,
                    "layout[%d]: migDevices is forbidden when migEnabled is "
                    "false",
                    i);
    return 0;
}

/* Cross-entry rules: one default entry, no index named twice. */
static int check_entries(const struct gm_layout *l, char *msg, size_t cap)
{
    int seen[GM_SMI_MAX_INDEX + 1] = {0};
    int defaults = 0;
    for (int i = 0; i < l->nentries; i++) {
        const struct gm_layout_entry *e = &l->entries[i];
        if (e->is_default && ++defaults > 1)
            return fail(msg, cap,
                        "layout[%d]: only one entry may omit devices or say "
                        "\"all\"",
                        i);
        for (int k = 0; k < e->ndevices; k++) {
            if (seen[e->devices[k]]++)
                return fail(msg, cap,
                            "layout[%d]: GPU %d is named by two entries", i,
                            e->devices[k]);
        }
    }
    return 0;
}

int gm_layout_parse(const char *json, struct gm_layout *out, char *msg,
                    size_t msgcap)
{
    json_tokener *tok = NULL;
    json_object *root = NULL;
    int err = 0;

    memset(out, 0, sizeof(*out));
    if (msgcap > 0)
        msg[0] = '\0';
    size_t len = json ? strlen(json) : 0;
    if (len == 0 || len > GM_LAYOUT_JSON_MAX)
        return fail(msg, msgcap, "layout: want 1..%d bytes of JSON",
                    GM_LAYOUT_JSON_MAX);
    tok = json_tokener_new();
    if (tok == NULL)
        return -ENOMEM;
    root = json_tokener_parse_ex(tok, json, (int)len);
    if (root == NULL || json_tokener_get_error(tok) != json_tokener_success) {
        err = fail(msg, msgcap, "layout: invalid JSON (%s)",
                   json_tokener_error_desc(json_tokener_get_error(tok)));
        goto out;
    }
    for (size_t k = json_tokener_get_parse_end(tok); k < len; k++) {
        if (json[k] != ' ' && json[k] != '\n' && json[k] != '\t' &&
            json[k] != '\r') {
            err = fail(msg, msgcap, "layout: trailing data after the JSON");
            goto out;
        }
    }
    if (!json_object_is_type(root, json_type_array)) {
        err = fail(msg, msgcap, "layout: want a JSON array of entries");
        goto out;
    }
    size_t n = json_object_array_length(root);
    if (n == 0 || n > GM_LAYOUT_MAX_ENTRIES) {
        err = fail(msg, msgcap, "layout: want 1..%d entries",
                   GM_LAYOUT_MAX_ENTRIES);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        err = parse_entry(json_object_array_get_idx(root, i), &out->entries[i],
                          (int)i, msg, msgcap);
        if (err)
            goto out;
        out->nentries++;
    }
    err = check_entries(out, msg, msgcap);
out:
    json_object_put(root);
    json_tokener_free(tok);
    return err;
}

const struct gm_layout_entry *gm_layout_for_gpu(const struct gm_layout *l,
                                                int index, int *is_explicit)
{
    const struct gm_layout_entry *def = NULL;
    for (int i = 0; i < l->nentries; i++) {
        const struct gm_layout_entry *e = &l->entries[i];
        if (e->is_default)
            def = e;
        for (int k = 0; k < e->ndevices; k++) {
            if (e->devices[k] == index) {
                if (is_explicit)
                    *is_explicit = 1;
                return e;
            }
        }
    }
    if (is_explicit)
        *is_explicit = 0;
    return def;
}
