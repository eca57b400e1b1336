#include "planner/pluginconfig.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base64.h"
#include "common/json.h"
#include "common/yaml.h"
#include "planner/labels.h"

/* A whole number at least min (sigs.k8s.io/yaml writes 4.0 as 4); past
 * 2^63 the plugin's int refuses it too. */
static bool whole_at_least(json_object *v, int min)
{
    if (json_object_is_type(v, json_type_int))
        return json_object_get_int64(v) >= min;
    if (json_object_is_type(v, json_type_double)) {
        double d = json_object_get_double(v);
        return d >= min && d < 9223372036854775808.0 && d == floor(d);
    }
    return false;
}

/* A mapping with a YAML merge key (<<): the plugin's YAML 1.1 reader
 * merges it, ours keeps it as a key, so what it holds is not known. */
static bool merges(json_object *o)
{
    return json_object_object_get_ex(o, "<<", NULL);
}

/* Why the plugin's loader refuses a time-sliced resource's devices v
 * (NULL: given empty), or NULL. It takes "all", a count above 0, or a
 * list (empty too) of GPU indexes (whole numbers or strings), MIG indexes
 * ("0:1") and UUIDs; an empty value leaves its string "" ("the only valid
 * string input is 'all'"). What it takes, it then ignores: the plugin
 * shares every device of the resource ("Customizing the 'devices' field
 * ... is not yet supported"), so the count offered does not depend on it.
 * Strings are left alone (a plain 0x4 is a number to YAML 1.1, the
 * plugin's, and a string to our reader), and so are list items that may
 * be numbers to it (a digit or + first) or are null (read as GPU 0). */
static const char *devices_error(json_object *v)
{
    static const char any[] = "must be \"all\", a count above 0 or a list";
    if (v == NULL)
        return any;
    if (json_object_is_type(v, json_type_string))
        return NULL;
    if (!json_object_is_type(v, json_type_array))
        return whole_at_least(v, 1) ? NULL : any;
    size_t n = json_object_array_length(v);
    for (size_t i = 0; i < n; i++) {
        json_object *d = json_object_array_get_idx(v, i);
        if (d == NULL || whole_at_least(d, 0)) /* a GPU index */
            continue;
        const char *s = json_object_get_string(d);
        if (json_object_is_type(d, json_type_string) &&
            (isdigit((unsigned char)s[0]) || s[0] == '+' ||
             strncmp(s, "GPU-", 4) == 0 || strncmp(s, "MIG-", 4) == 0))
            continue;
        return "must list GPU indexes, MIG indexes (0:1) or UUIDs";
    }
    return NULL;
}

/* sharing.timeSlicing (ReplicatedResources): what the plugin refuses —
 * no resources, a resource without a name or with fewer than 2 replicas
 * ("number of replicas must be >= 2" in v0.17 and in every older copy of
 * the config loader we could read, back to 2022 forks; leaving the
 * resource out shares nothing on every release), devices it cannot read
 * (devices_error). A string is left
 * alone: a plain 0x4 is a number to YAML 1.1 (the plugin's) and a string
 * to our reader. sharing.mps is not read: plugins before MPS ignore it. */
static void read_time_slicing(json_object *sharing, char *err, size_t len)
{
    static const char field[] = "timeSlicing";
    json_object *rr = NULL;
    /* Present but null ("timeSlicing:" and nothing under it) is refused
     * like an empty one: the plugin decodes the field even then. */
    if (!json_object_is_type(sharing, json_type_object) ||
        !json_object_object_get_ex(sharing, field, &rr) || err[0] ||
        (rr && merges(rr)))
        return;
    if (rr != NULL && !json_object_is_type(rr, json_type_object)) {
        snprintf(err, len, "sharing.%s: not a mapping", field);
        return;
    }
    json_object *res = gm_json_get(rr, "resources");
    size_t n = json_object_is_type(res, json_type_array)
                   ? json_object_array_length(res)
                   : 0;
    if (n == 0) {
        snprintf(err, len,
                 "sharing.%s.resources: none given (the plugin needs at "
                 "least one)",
                 field);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        json_object *r = json_object_array_get_idx(res, i);
        json_object *v, *devices = NULL;
        const char *why = NULL, *what = "";
        if (!json_object_is_type(r, json_type_object)) {
            why = "not a mapping";
        } else if (merges(r)) {
            continue;
        } else if (gm_json_get(r, "name") == NULL) {
            what = ".name", why = "missing";
        } else if ((v = gm_json_get(r, "replicas")) == NULL) {
            what = ".replicas", why = "missing";
        } else if (!json_object_is_type(v, json_type_string) &&
                   !whole_at_least(v, 2)) {
            what = ".replicas",
            why = "must be a whole number, at least 2 (the plugin refuses "
                  "fewer; to share nothing, leave the resource out)";
        } else if (json_object_object_get_ex(r, "devices", &devices) &&
                   (why = devices_error(devices)) != NULL) {
            what = ".devices";
        }
        if (why) {
            snprintf(err, len, "sharing.%s.resources[%zu]%s: %s", field, i,
                     what, why);
            return;
        }
    }
}

/* What the plugin's config loader refuses (api/config/v1): text that is
 * not YAML, a version other than v1 (none means v1), an unknown MIG
 * strategy, time-slicing it cannot read (read_time_slicing). Other
 * fields are the
 * plugin's business and left alone. */
static void read_config(const char *text, size_t len,
                        struct gm_plugin_config *pc)
{
    json_object *o = NULL;
    char err[160];

    if (gm_yaml_parse_first(text, len, &o, err, sizeof(err))) {
        snprintf(pc->error, sizeof(pc->error), "not YAML: %s", err);
        return;
    }
    if (o == NULL) /* empty: every default */
        return;
    if (!json_object_is_type(o, json_type_object)) {
        snprintf(pc->error, sizeof(pc->error), "not a mapping");
        json_object_put(o);
        return;
    }
    json_object *v = gm_json_get(o, "version");
    if (v && (!json_object_is_type(v, json_type_string) ||
              (strcmp(json_object_get_string(v), "v1") != 0 &&
               json_object_get_string(v)[0] != '\0')))
        snprintf(pc->error, sizeof(pc->error),
                 "version: unknown version %s (the plugin reads v1)",
                 json_object_get_string(v));
    read_time_slicing(gm_json_get(o, "sharing"), pc->error, sizeof(pc->error));
    json_object *s = gm_json_get(gm_json_get(o, "flags"), "migStrategy");
    if (s && pc->error[0] == '\0') {
        const char *name = json_object_get_string(s);
        if (json_object_is_type(s, json_type_string) &&
            (strcmp(name, "none") == 0 || gm_plugin_config_is_strategy(name)))
            snprintf(pc->mig_strategy, sizeof(pc->mig_strategy), "%s", name);
        else
            snprintf(pc->error, sizeof(pc->error),
                     "flags.migStrategy: unknown strategy %s (none, single "
                     "or mixed)",
                     name);
    }
    json_object_put(o);
}

/* One key of data (binary false) or binaryData (base64 in JSON). */
static int read_key(struct gm_plugin_configs *out, const char *key,
                    json_object *val, bool binary)
{
    struct gm_plugin_config *pc = calloc(1, sizeof(*pc));
    void *old = NULL;
    if (pc == NULL || gm_map_put(&out->m, key, pc, &old)) {
        free(pc);
        return -ENOMEM;
    }
    free(old); /* in data and binaryData: the API server refuses that */
    const char *s = json_object_get_string(val);
    if (!json_object_is_type(val, json_type_string)) {
        snprintf(pc->error, sizeof(pc->error), "not a string");
    } else if (!binary || s[0] == '\0') {
        /* With its length: a NUL inside is the YAML reader's to refuse. */
        read_config(s, (size_t)json_object_get_string_len(val), pc);
    } else {
        char *text = NULL;
        size_t len = 0;
        int err = gm_base64_decode(s, &text, &len);
        if (err == -ENOMEM)
            return err;
        if (err)
            snprintf(pc->error, sizeof(pc->error), "binaryData: not base64");
        else
            read_config(text, len, pc);
        free(text);
    }
    return 0;
}

int gm_plugin_configs_parse(json_object *cm, struct gm_plugin_configs *out)
{
    memset(out, 0, sizeof(*out));
    gm_map_init(&out->m);
    out->exists = cm != NULL;
    /* A ConfigMap volume holds binaryData keys as files too, and the
     * config-manager picks any file by name. */
    static const char *const fields[] = {"data", "binaryData"};
    for (size_t i = 0; i < 2; i++) {
        json_object *data = gm_json_get(cm, fields[i]);
        if (data == NULL || !json_object_is_type(data, json_type_object))
            continue;
        json_object_object_foreach(data, key, val)
        {
            int err = read_key(out, key, val, i == 1);
            if (err)
                return err;
        }
    }
    return 0;
}

void gm_plugin_configs_free(struct gm_plugin_configs *c)
{
    for (struct gm_map_entry *it = gm_map_first(&c->m); it;
         it = gm_map_next(&c->m, it))
        free(it->value);
    gm_map_free(&c->m);
    c->exists = false;
}

bool gm_plugin_config_is_strategy(const char *value)
{
    return value &&
           (strcmp(value, "single") == 0 || strcmp(value, "mixed") == 0);
}

int gm_plugin_config_replicas(const struct gm_node *n, const char **renamed)
{
    const char *r = gm_node_label(n, "nvidia.com/gpu.replicas");
    const char *product = gm_node_label(n, GM_LABEL_PRODUCT);
    int replicas = r ? atoi(r) : 1;
    size_t len = product ? strlen(product) : 0;

    if (replicas <= 1)
        return 1;
    if (len < 7 || strcmp(product + len - 7, "-SHARED") != 0)
        *renamed = "nvidia.com/gpu.shared";
    return replicas;
}

const char *gm_plugin_config_own(const char *saved, const char *current)
{
    if (saved)
        return saved;
    return gm_plugin_config_is_strategy(current) ? NULL : current;
}

/* What a switch record (gpumode.io/switch) saved for label, as the
 * switch's own_config takes it: 1 with a copy in buf, 0 with *buf "" when
 * it saved the label's absence (the switch removes the label), -1 when it
 * saved nothing or a strategy (the node's labels decide). */
static int record_saved(const char *record, const char *label, char *buf,
                        size_t len)
{
    json_object *o = record ? json_tokener_parse(record) : NULL;
    json_object *labels = gm_json_get(o, "labels");
    json_object *v = NULL;
    int rc = -1;
    buf[0] = '\0';
    if (labels && json_object_object_get_ex(labels, label, &v)) {
        if (v == NULL || json_object_is_type(v, json_type_null))
            rc = 0;
        else if (json_object_is_type(v, json_type_string) &&
                 !gm_plugin_config_is_strategy(json_object_get_string(v)) &&
                 (size_t)snprintf(buf, len, "%s", json_object_get_string(v)) <
                     len)
            rc = 1;
    }
    json_object_put(o);
    return rc;
}

const char *gm_plugin_config_key(const struct gm_node *n, const char *label,
                                 enum gm_mode to, const char *strategy,
                                 char *buf, size_t len)
{
    if (label == NULL)
        return NULL;
    if (to == GM_MODE_MIG)
        return strategy;
    if (to != GM_MODE_FULL)
        return NULL;
    if (n->ann_plugin_config == NULL) {
        int saved = record_saved(n->ann_switch, label, buf, len);
        if (saved >= 0)
            return saved ? buf : NULL;
    }
    return gm_plugin_config_own(n->ann_plugin_config, gm_node_label(n, label));
}

int gm_plugin_config_check(const struct gm_plugin_configs *c,
                           const char *source, const char *key,
                           const char *strategy, char *msg, size_t len)
{
    if (key == NULL)
        return 0;
    if (c->unreadable) {
        snprintf(msg, len,
                 "the device plugin config %s cannot be checked: %s could "
                 "not be read (the controller's log says why; it needs list "
                 "and watch on it: rbac.yaml)",
                 key, source);
        return -EINVAL;
    }
    if (!c->exists) {
        snprintf(msg, len,
                 "the device plugin config %s cannot be loaded: %s does not "
                 "exist (devicePluginConfigMap in the controller's config "
                 "names it)",
                 key, source);
        return -EINVAL;
    }
    const struct gm_plugin_config *pc = gm_map_get(&c->m, key);
    if (pc == NULL) {
        snprintf(msg, len,
                 "the device plugin config %s is not in %s: the plugin "
                 "would not start (add the key, or change the node's "
                 "config)",
                 key, source);
        return -EINVAL;
    }
    if (pc->error[0]) {
        snprintf(msg, len, "the device plugin config %s in %s: %s", key, source,
                 pc->error);
        return -EINVAL;
    }
    /* Silent on the strategy, the plugin runs its default, none (the
     * ClusterPolicy leaves MIG_STRATEGY unset, see the README), and offers
     * MIG-enabled GPUs whole. */
    if (strategy && !pc->mig_strategy[0]) {
        snprintf(msg, len,
                 "the device plugin config %s in %s sets no "
                 "flags.migStrategy: the plugin would run its default, none, "
                 "and not offer the %s strategy's resources",
                 key, source, strategy);
        return -EINVAL;
    }
    if (strategy && strcmp(pc->mig_strategy, strategy) != 0) {
        snprintf(msg, len,
                 "the device plugin config %s in %s sets flags.migStrategy "
                 "%s: the plugin would not offer the %s strategy's resources",
                 key, source, pc->mig_strategy, strategy);
        return -EINVAL;
    }
    return 0;
}
