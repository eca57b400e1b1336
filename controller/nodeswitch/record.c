#include "nodeswitch/record.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const phase_names[GM_PHASE_COUNT] = {
    [GM_PHASE_CORDON] = "Cordoning",
    [GM_PHASE_DRAIN] = "Draining",
    [GM_PHASE_STOP_CLIENTS] = "StoppingClients",
    [GM_PHASE_RECONFIGURE] = "Reconfiguring",
    [GM_PHASE_REBOOT] = "Rebooting",
    [GM_PHASE_START_CLIENTS] = "StartingClients",
    [GM_PHASE_VERIFY] = "Verifying",
    [GM_PHASE_FINISH] = "Finishing",
    [GM_PHASE_FAILED] = "Failed",
};

const char *gm_phase_name(enum gm_phase p)
{
    return p >= 0 && p < GM_PHASE_COUNT ? phase_names[p] : "Unknown";
}

int gm_phase_parse(const char *s, enum gm_phase *out)
{
    for (int i = 0; s && i < GM_PHASE_COUNT; i++) {
        if (strcmp(s, phase_names[i]) == 0) {
            *out = (enum gm_phase)i;
            return 0;
        }
    }
    return -EINVAL;
}

int gm_set_str(char **dst, const char *src)
{
    char *copy = NULL;
    if (src) {
        copy = strdup(src);
        if (copy == NULL)
            return -ENOMEM;
    }
    free(*dst);
    *dst = copy;
    return 0;
}

void gm_record_clear(struct gm_switch_record *r)
{
    free(r->policy);
    free(r->layout);
    free(r->strategy);
    free(r->settings);
    free(r->from_layout);
    free(r->boot_id);
    free(r->gpu_uuids);
    free(r->reason);
    free(r->message);
    for (size_t i = 0; i < r->n_saved; i++) {
        free(r->saved[i].key);
        free(r->saved[i].value);
    }
    memset(r, 0, sizeof(*r));
    r->from = GM_MODE_UNKNOWN;
    r->to = GM_MODE_UNKNOWN;
}

const struct gm_saved_label *gm_record_saved(const struct gm_switch_record *r,
                                             const char *key)
{
    for (size_t i = 0; i < r->n_saved; i++)
        if (strcmp(r->saved[i].key, key) == 0)
            return &r->saved[i];
    return NULL;
}

void gm_record_forget_labels(struct gm_switch_record *r)
{
    for (size_t i = 0; i < r->n_saved; i++) {
        free(r->saved[i].key);
        free(r->saved[i].value);
        r->saved[i].key = r->saved[i].value = NULL;
    }
    r->n_saved = 0;
}

int gm_record_save_label(struct gm_switch_record *r, const char *key,
                         const char *old_value)
{
    if (gm_record_saved(r, key))
        return 0;
    if (r->n_saved >= GM_RECORD_MAX_LABELS)
        return -E2BIG;
    struct gm_saved_label *s = &r->saved[r->n_saved];
    s->key = strdup(key);
    s->value = old_value ? strdup(old_value) : NULL;
    if (s->key == NULL || (old_value && s->value == NULL)) {
        free(s->key);
        free(s->value);
        s->key = s->value = NULL;
        return -ENOMEM;
    }
    r->n_saved++;
    return 0;
}

static json_object *get(json_object *o, const char *k)
{
    json_object *v = NULL;
    if (o && json_object_object_get_ex(o, k, &v))
        return v;
    return NULL;
}

static int get_str(json_object *o, const char *k, char **out, int required,
                   char *err, size_t err_len)
{
    json_object *v = get(o, k);
    if (v == NULL || json_object_is_type(v, json_type_null)) {
        if (required) {
            snprintf(err, err_len, "switch.%s: required", k);
            return -EINVAL;
        }
        return 0;
    }
    if (!json_object_is_type(v, json_type_string)) {
        snprintf(err, err_len, "switch.%s: must be a string", k);
        return -EINVAL;
    }
    return gm_set_str(out, json_object_get_string(v));
}

static int get_mode(json_object *o, const char *k, enum gm_mode *out,
                    int allow_none, char *err, size_t err_len)
{
    const char *s = json_object_get_string(get(o, k));
    *out = GM_MODE_UNKNOWN;
    if (gm_mode_parse(s, out) != 0 && !(allow_none && (s == NULL || !s[0]))) {
        snprintf(err, err_len, "switch.%s: \"%s\" is not full, vgpu or mig", k,
                 s ? s : "");
        return -EINVAL;
    }
    return 0;
}

/* Times are RFC 3339 in UTC, as everywhere in Kubernetes; a number (unix
 * seconds) is read too. 0 when absent or unreadable. */
/* The last second of year 9999: beyond it RFC 3339 has no form. */
#define MAX_TIME 253402300799LL

static long long get_time(json_object *v)
{
    struct tm tm;
    if (v == NULL)
        return 0;
    if (json_object_is_type(v, json_type_int)) {
        long long t = json_object_get_int64(v);
        return t < 0 || t > MAX_TIME ? 0 : t;
    }
    const char *s = json_object_get_string(v);
    memset(&tm, 0, sizeof(tm));
    const char *end = s ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
    if (end == NULL)
        return 0;
    return (long long)timegm(&tm);
}

static void add_time(json_object *o, const char *k, long long t)
{
    char buf[32];
    struct tm tm;
    time_t tt = (time_t)(t < 0 || t > MAX_TIME ? 0 : t);
    gmtime_r(&tt, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_object_object_add(o, k, json_object_new_string(buf));
}

int gm_record_parse(const char *json, struct gm_switch_record *r, char *err,
                    size_t err_len)
{
    json_object *o = json_tokener_parse(json);
    char *phase = NULL;
    int rc;

    memset(r, 0, sizeof(*r));
    r->from = r->to = GM_MODE_UNKNOWN;
    if (o == NULL || !json_object_is_type(o, json_type_object)) {
        snprintf(err, err_len, "switch: not a JSON object");
        json_object_put(o);
        return -EINVAL;
    }
    rc = get_str(o, "policy", &r->policy, 1, err, err_len);
    if (!rc)
        rc = get_mode(o, "from", &r->from, 1, err, err_len);
    if (!rc)
        rc = get_mode(o, "to", &r->to, 0, err, err_len);
    if (!rc)
        rc = get_str(o, "layout", &r->layout, 0, err, err_len);
    if (!rc)
        rc = get_str(o, "strategy", &r->strategy, 0, err, err_len);
    if (!rc)
        rc = get_str(o, "settings", &r->settings, 0, err, err_len);
    if (!rc)
        rc = get_str(o, "fromLayout", &r->from_layout, 0, err, err_len);
    if (!rc)
        rc = get_str(o, "bootID", &r->boot_id, 0, err, err_len);
    /* Only a hint for verification: a value of another type is dropped,
     * not a record left unreadable. */
    if (!rc && json_object_is_type(get(o, "gpuUUIDs"), json_type_string))
        rc = gm_set_str(&r->gpu_uuids,
                        json_object_get_string(get(o, "gpuUUIDs")));
    if (!rc)
        rc = get_str(o, "reason", &r->reason, 0, err, err_len);
    if (!rc)
        rc = get_str(o, "message", &r->message, 0, err, err_len);
    if (!rc)
        rc = get_str(o, "phase", &phase, 1, err, err_len);
    if (!rc && gm_phase_parse(phase, &r->phase) != 0) {
        snprintf(err, err_len, "switch.phase: unknown phase \"%s\"", phase);
        rc = -EINVAL;
    }
    free(phase);
    r->since = get_time(get(o, "since"));
    r->started = get_time(get(o, "started"));
    r->attempt = json_object_get_int(get(o, "attempt"));
    if (r->attempt < 1)
        r->attempt = 1;
    r->cordoned = json_object_get_boolean(get(o, "cordoned"));
    r->rolling_back = json_object_get_boolean(get(o, "rollingBack"));
    r->reconfigured = json_object_get_boolean(get(o, "reconfigured"));
    r->releasing = json_object_get_boolean(get(o, "releasing"));
    r->reboot_drained = json_object_get_boolean(get(o, "rebootDrained"));
    r->gpus = json_object_get_int(get(o, "gpus"));
    if (r->gpus < 0 || r->gpus > 64)
        r->gpus = 0;
    json_object *labels = get(o, "labels");
    if (!rc && labels && !json_object_is_type(labels, json_type_object)) {
        snprintf(err, err_len, "switch.labels: must be an object");
        rc = -EINVAL;
    }
    if (!rc && labels) {
        json_object_object_foreach(labels, k, v)
        {
            const char *val = json_object_is_type(v, json_type_null)
                                  ? NULL
                                  : json_object_get_string(v);
            rc = gm_record_save_label(r, k, val);
            if (rc) {
                snprintf(err, err_len, "switch.labels: too many labels");
                break;
            }
        }
    }
    json_object_put(o);
    if (rc)
        gm_record_clear(r);
    return rc;
}

static void add_str(json_object *o, const char *k, const char *v)
{
    if (v)
        json_object_object_add(o, k, json_object_new_string(v));
}

char *gm_record_format(const struct gm_switch_record *r)
{
    json_object *o = json_object_new_object();
    json_object *labels = json_object_new_object();

    add_str(o, "policy", r->policy);
    if (r->from != GM_MODE_UNKNOWN)
        add_str(o, "from", gm_mode_name(r->from));
    add_str(o, "to", gm_mode_name(r->to));
    add_str(o, "layout", r->layout);
    add_str(o, "strategy", r->strategy);
    add_str(o, "settings", r->settings);
    add_str(o, "fromLayout", r->from_layout);
    add_str(o, "phase", gm_phase_name(r->phase));
    add_time(o, "since", r->since);
    if (r->started)
        add_time(o, "started", r->started);
    json_object_object_add(o, "attempt", json_object_new_int(r->attempt));
    json_object_object_add(o, "cordoned", json_object_new_boolean(r->cordoned));
    if (r->rolling_back)
        json_object_object_add(o, "rollingBack", json_object_new_boolean(1));
    if (r->reconfigured)
        json_object_object_add(o, "reconfigured", json_object_new_boolean(1));
    if (r->releasing)
        json_object_object_add(o, "releasing", json_object_new_boolean(1));
    if (r->reboot_drained)
        json_object_object_add(o, "rebootDrained", json_object_new_boolean(1));
    if (r->gpus > 0)
        json_object_object_add(o, "gpus", json_object_new_int(r->gpus));
    add_str(o, "gpuUUIDs", r->gpu_uuids);
    add_str(o, "bootID", r->boot_id);
    add_str(o, "reason", r->reason);
    add_str(o, "message", r->message);
    for (size_t i = 0; i < r->n_saved; i++)
        json_object_object_add(labels, r->saved[i].key,
                               r->saved[i].value
                                   ? json_object_new_string(r->saved[i].value)
                                   : NULL);
    json_object_object_add(o, "labels", labels);
    char *s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
    return s;
}
