/* Decodes GPUModePolicy objects. The CRD validates first; this decoder checks
 * again because a policy can also come from a file (`kubectl gpumode plan`)
 * or from a cluster whose CRD is older, and a message naming the field is
 * the only useful answer in every case. */
#include "planner/policy.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct dec {
    char msg[512];
};

__attribute__((format(printf, 2, 3))) static int fail(struct dec *d,
                                                      const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(d->msg, sizeof(d->msg), fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static json_object *field(json_object *o, const char *key)
{
    json_object *v = NULL;

    if (o == NULL || !json_object_is_type(o, json_type_object))
        return NULL;
    if (!json_object_object_get_ex(o, key, &v))
        return NULL;
    /* An explicit null means the same as an absent field in Kubernetes. */
    if (v == NULL || json_object_is_type(v, json_type_null))
        return NULL;
    return v;
}

static int want_object(struct dec *d, json_object *v, const char *path)
{
    if (!json_object_is_type(v, json_type_object))
        return fail(d, "%s: must be an object", path);
    return 0;
}

static int get_string(struct dec *d, json_object *o, const char *key,
                      const char *path, const char **out)
{
    json_object *v = field(o, key);

    *out = NULL;
    if (v == NULL)
        return 0;
    if (!json_object_is_type(v, json_type_string))
        return fail(d, "%s: must be a string", path);
    *out = json_object_get_string(v);
    return 0;
}

/* Absent leaves *out alone, so callers preset the default. */
static int get_int(struct dec *d, json_object *o, const char *key,
                   const char *path, int64_t lo, int64_t hi, int64_t *out)
{
    json_object *v = field(o, key);

    if (v == NULL)
        return 0;
    if (!json_object_is_type(v, json_type_int))
        return fail(d, "%s: must be an integer", path);
    int64_t x = json_object_get_int64(v);
    if (x < lo || x > hi)
        return fail(d, "%s: %lld is out of range [%lld, %lld]", path,
                    (long long)x, (long long)lo, (long long)hi);
    *out = x;
    return 0;
}

static int get_bool(struct dec *d, json_object *o, const char *key,
                    const char *path, bool *out)
{
    json_object *v = field(o, key);

    if (v == NULL)
        return 0;
    if (!json_object_is_type(v, json_type_boolean))
        return fail(d, "%s: must be true or false", path);
    *out = json_object_get_boolean(v);
    return 0;
}

static char *dup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

/* ---- selector ---- */

static int add_req(struct gm_selector *s, const char *key, enum gm_sel_op op,
                   struct gm_sel_req **out)
{
    struct gm_sel_req *r = realloc(s->reqs, (s->n_reqs + 1) * sizeof(*s->reqs));
    if (r == NULL)
        return -ENOMEM;
    s->reqs = r;
    r = &s->reqs[s->n_reqs];
    memset(r, 0, sizeof(*r));
    r->op = op;
    r->key = strdup(key);
    if (r->key == NULL)
        return -ENOMEM;
    s->n_reqs++;
    *out = r;
    return 0;
}

static int add_value(struct gm_sel_req *r, const char *v)
{
    char **vals = realloc(r->values, (r->n_values + 1) * sizeof(*vals));
    if (vals == NULL)
        return -ENOMEM;
    r->values = vals;
    vals[r->n_values] = strdup(v);
    if (vals[r->n_values] == NULL)
        return -ENOMEM;
    r->n_values++;
    return 0;
}

static int parse_op(const char *s, enum gm_sel_op *op)
{
    if (strcmp(s, "In") == 0)
        *op = GM_SEL_IN;
    else if (strcmp(s, "NotIn") == 0)
        *op = GM_SEL_NOT_IN;
    else if (strcmp(s, "Exists") == 0)
        *op = GM_SEL_EXISTS;
    else if (strcmp(s, "DoesNotExist") == 0)
        *op = GM_SEL_DOES_NOT_EXIST;
    else
        return -EINVAL;
    return 0;
}

static bool name_char(char c, bool lower_only)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (!lower_only && c >= 'A' && c <= 'Z');
}

/* Why key is not a Kubernetes label key, or NULL when it is one: an
 * optional prefix (a DNS subdomain: lowercase alphanumerics, '-' and '.',
 * at most 253) and '/', then a name of 1 to 63 alphanumerics, '-', '_' and
 * '.', beginning and ending alphanumeric. The apiserver checks this for
 * Node labels but not inside a custom resource. */
static const char *key_problem(const char *key)
{
    const char *slash = strchr(key, '/');
    const char *name = slash ? slash + 1 : key;
    if (slash) {
        size_t n = (size_t)(slash - key);
        if (n == 0 || n > 253)
            return "its prefix must have 1 to 253 characters";
        if (!name_char(key[0], true) || !name_char(key[n - 1], true))
            return "its prefix must begin and end with a lowercase letter or "
                   "digit";
        for (size_t i = 0; i < n; i++)
            if (!name_char(key[i], true) && key[i] != '-' && key[i] != '.')
                return "its prefix may hold only lowercase letters, digits, "
                       "'-' and '.'";
    }
    size_t n = strlen(name);
    if (n == 0 || n > 63)
        return "its name must have 1 to 63 characters";
    if (!name_char(name[0], false) || !name_char(name[n - 1], false))
        return "its name must begin and end with a letter or digit";
    for (size_t i = 0; i < n; i++)
        if (!name_char(name[i], false) && name[i] != '-' && name[i] != '_' &&
            name[i] != '.')
            return "its name may hold only letters, digits, '-', '_' and '.'";
    return NULL;
}

/* Whether v is a label value: empty, or at most 63 letters, digits, '-',
 * '_' and '.', beginning and ending with a letter or digit (the CRD's
 * pattern; kubectl gpumode plan decodes files the API server never saw). */
static bool value_ok(const char *v)
{
    size_t n = strlen(v);
    if (n == 0)
        return true;
    if (n > 63 || !name_char(v[0], false) || !name_char(v[n - 1], false))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!name_char(v[i], false) && v[i] != '-' && v[i] != '_' &&
            v[i] != '.')
            return false;
    return true;
}

/* Fails at path (its label value's place) unless v is a label value. */
static int check_value(struct dec *d, const char *path, const char *v)
{
    if (value_ok(v))
        return 0;
    return fail(d,
                "%s: \"%s\" is not a label value (at most 63 letters, "
                "digits, '-', '_' and '.', beginning and ending with a letter "
                "or digit)",
                path, v);
}

static int decode_expression(struct dec *d, json_object *e, const char *at,
                             size_t i, struct gm_selector *s)
{
    char path[160];
    const char *key = NULL;
    const char *ops = NULL;
    enum gm_sel_op op;
    struct gm_sel_req *r;
    int err;

    snprintf(path, sizeof(path), "%s.matchExpressions[%zu]", at, i);
    if (!json_object_is_type(e, json_type_object))
        return fail(d, "%s: must be an object", path);
    err = get_string(d, e, "key", path, &key);
    if (err)
        return err;
    if (key == NULL || key[0] == '\0')
        return fail(d, "%s.key: required", path);
    const char *why = key_problem(key);
    if (why)
        return fail(d, "%s.key: \"%s\" is not a label key: %s", path, key, why);
    err = get_string(d, e, "operator", path, &ops);
    if (err)
        return err;
    if (ops == NULL)
        return fail(d, "%s.operator: required", path);
    if (parse_op(ops, &op))
        return fail(d,
                    "%s.operator: \"%s\" is not one of In, NotIn, Exists, "
                    "DoesNotExist",
                    path, ops);
    json_object *vals = field(e, "values");
    size_t n = 0;
    if (vals != NULL) {
        if (!json_object_is_type(vals, json_type_array))
            return fail(d, "%s.values: must be a list of strings", path);
        n = json_object_array_length(vals);
    }
    if ((op == GM_SEL_IN || op == GM_SEL_NOT_IN) && n == 0)
        return fail(d, "%s.values: must be non-empty for operator %s", path,
                    ops);
    if ((op == GM_SEL_EXISTS || op == GM_SEL_DOES_NOT_EXIST) && n > 0)
        return fail(d, "%s.values: must be empty for operator %s", path, ops);
    err = add_req(s, key, op, &r);
    if (err)
        return err;
    for (size_t j = 0; j < n; j++) {
        json_object *v = json_object_array_get_idx(vals, j);
        if (!json_object_is_type(v, json_type_string))
            return fail(d, "%s.values[%zu]: must be a string", path, j);
        char vpath[192];
        snprintf(vpath, sizeof(vpath), "%s.values[%zu]", path, j);
        err = check_value(d, vpath, json_object_get_string(v));
        if (!err)
            err = add_value(r, json_object_get_string(v));
        if (err)
            return err;
    }
    return 0;
}

/* at is the field's path in messages ("spec.nodeSelector"). An empty
 * selector is refused unless allow_empty: a policy must never select every
 * node, while a PodDisruptionBudget's {} means every pod. */
static int decode_selector(struct dec *d, json_object *sel, const char *at,
                           bool allow_empty, struct gm_selector *s)
{
    int err;

    if (sel == NULL)
        return fail(d, "%s: required", at);
    err = want_object(d, sel, at);
    if (err)
        return err;
    json_object *ml = field(sel, "matchLabels");
    if (ml != NULL) {
        char path[160];
        snprintf(path, sizeof(path), "%s.matchLabels", at);
        err = want_object(d, ml, path);
        if (err)
            return err;
        json_object_object_foreach(ml, k, v)
        {
            struct gm_sel_req *r;
            const char *why = key_problem(k);
            if (why)
                return fail(d, "%s: \"%s\" is not a label key: %s", path, k,
                            why);
            if (!json_object_is_type(v, json_type_string))
                return fail(d, "%s.%s: must be a string", path, k);
            char vpath[512];
            snprintf(vpath, sizeof(vpath), "%s.%s", path, k);
            err = check_value(d, vpath, json_object_get_string(v));
            if (!err)
                err = add_req(s, k, GM_SEL_IN, &r);
            if (!err)
                err = add_value(r, json_object_get_string(v));
            if (err)
                return err;
        }
    }
    json_object *me = field(sel, "matchExpressions");
    if (me != NULL) {
        if (!json_object_is_type(me, json_type_array))
            return fail(d, "%s.matchExpressions: must be a list", at);
        for (size_t i = 0; i < json_object_array_length(me); i++) {
            err = decode_expression(d, json_object_array_get_idx(me, i), at, i,
                                    s);
            if (err)
                return err;
        }
    }
    if (s->n_reqs == 0 && !allow_empty)
        return fail(d,
                    "%s: must not be empty (an empty selector would select "
                    "every node)",
                    at);
    return 0;
}

int gm_selector_decode(json_object *sel, const char *at, bool allow_empty,
                       struct gm_selector *out, char *err, size_t err_len)
{
    struct dec d = {{0}};

    memset(out, 0, sizeof(*out));
    int rc = decode_selector(&d, sel, at, allow_empty, out);
    if (rc) {
        gm_selector_clear(out);
        if (rc == -EINVAL && err_len > 0)
            snprintf(err, err_len, "%s", d.msg);
    }
    return rc;
}

/* ---- mig ---- */

/* The CRD's pattern ^[1-9]g\.[0-9]+gb(\+me)?$, written out because the
 * agent passes these names to nvidia-smi and regex.h is more than needed. */
static bool valid_profile(const char *s)
{
    if (s[0] < '1' || s[0] > '9' || s[1] != 'g' || s[2] != '.')
        return false;
    s += 3;
    if (*s < '0' || *s > '9')
        return false;
    while (*s >= '0' && *s <= '9')
        s++;
    if (s[0] != 'g' || s[1] != 'b')
        return false;
    s += 2;
    return *s == '\0' || strcmp(s, "+me") == 0;
}

static int decode_counts(struct dec *d, json_object *md, const char *path,
                         struct gm_mig_entry *e)
{
    if (md == NULL || !json_object_is_type(md, json_type_object) ||
        json_object_object_length(md) == 0)
        return fail(d, "%s: must map at least one profile to a count", path);
    size_t n = (size_t)json_object_object_length(md);
    e->counts = calloc(n, sizeof(*e->counts));
    if (e->counts == NULL)
        return -ENOMEM;
    int slices = 0;
    json_object_object_foreach(md, k, v)
    {
        if (!valid_profile(k))
            return fail(d,
                        "%s: \"%s\" is not a MIG profile name (such as "
                        "1g.10gb or 1g.10gb+me)",
                        path, k);
        if (!json_object_is_type(v, json_type_int) ||
            json_object_get_int64(v) < 1 || json_object_get_int64(v) > 7)
            return fail(d, "%s.%s: must be an integer from 1 to 7", path, k);
        struct gm_mig_count *c = &e->counts[e->n_counts];
        c->profile = strdup(k);
        if (c->profile == NULL)
            return -ENOMEM;
        c->count = (int)json_object_get_int64(v);
        e->n_counts++;
        slices += (k[0] - '0') * c->count;
    }
    if (slices > 7)
        return fail(d,
                    "%s: the instances need more than the 7 compute slices "
                    "a GPU has at most (an <n>g profile takes n per instance)",
                    path);
    return 0;
}

static int decode_layout(struct dec *d, json_object *arr,
                         struct gm_mig_layout *l)
{
    size_t catchall = 0;

    if (!json_object_is_type(arr, json_type_array) ||
        json_object_array_length(arr) == 0)
        return fail(d, "spec.mig.layout: must be a non-empty list");
    size_t n = json_object_array_length(arr);
    l->entries = calloc(n, sizeof(*l->entries));
    if (l->entries == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        char path[64];
        json_object *it = json_object_array_get_idx(arr, i);
        struct gm_mig_entry *e = &l->entries[l->n_entries++];
        int err;

        snprintf(path, sizeof(path), "spec.mig.layout[%zu]", i);
        err = want_object(d, it, path);
        if (err)
            return err;
        e->mig_enabled = true;
        json_object *dev = field(it, "devices");
        if (dev == NULL) {
            e->all_devices = true;
            catchall++;
        } else {
            size_t nd = json_object_is_type(dev, json_type_array)
                            ? json_object_array_length(dev)
                            : 0;
            if (nd == 0)
                return fail(d,
                            "%s.devices: must be a non-empty list of GPU "
                            "indexes (omit it to mean every other GPU)",
                            path);
            e->devices = calloc(nd, sizeof(*e->devices));
            if (e->devices == NULL)
                return -ENOMEM;
            for (size_t j = 0; j < nd; j++) {
                json_object *x = json_object_array_get_idx(dev, j);
                if (!json_object_is_type(x, json_type_int) ||
                    json_object_get_int64(x) < 0 ||
                    json_object_get_int64(x) > 63)
                    return fail(d,
                                "%s.devices[%zu]: must be a GPU index "
                                "from 0 to 63",
                                path, j);
                e->devices[e->n_devices++] = (int)json_object_get_int64(x);
            }
        }
        char cpath[96];
        snprintf(cpath, sizeof(cpath), "%s.migDevices", path);
        err = decode_counts(d, field(it, "migDevices"), cpath, e);
        if (err)
            return err;
    }
    if (catchall > 1)
        return fail(d, "spec.mig.layout: at most one entry may omit devices "
                       "(it covers every other GPU)");
    uint64_t seen = 0;
    for (size_t i = 0; i < l->n_entries; i++)
        for (size_t j = 0; j < l->entries[i].n_devices; j++) {
            int g = l->entries[i].devices[j];
            if (seen & (UINT64_C(1) << g))
                return fail(d,
                            "spec.mig.layout: a GPU index may appear in only "
                            "one layout entry (%d is in more than one)",
                            g);
            seen |= UINT64_C(1) << g;
        }
    return 0;
}

static int decode_mig(struct dec *d, json_object *mig, struct gm_policy_spec *s)
{
    const char *str = NULL;
    int err;

    if (s->mode != GM_MODE_MIG) {
        if (mig != NULL)
            return fail(d, "spec.mig: only allowed when spec.mode is mig");
        return 0;
    }
    if (mig == NULL)
        return fail(d, "spec.mig: required when spec.mode is mig");
    err = want_object(d, mig, "spec.mig");
    if (err)
        return err;
    err = get_string(d, mig, "config", "spec.mig.config", &str);
    if (err)
        return err;
    json_object *layout = field(mig, "layout");
    if ((str != NULL) == (layout != NULL))
        return fail(d, "spec.mig: set exactly one of config or layout");
    if (str != NULL) {
        if (str[0] == '\0')
            return fail(d, "spec.mig.config: must not be empty");
        s->mig_config = strdup(str);
        if (s->mig_config == NULL)
            return -ENOMEM;
    } else {
        s->has_mig_layout = true;
        err = decode_layout(d, layout, &s->mig_layout);
        if (err)
            return err;
    }
    err = get_string(d, mig, "strategy", "spec.mig.strategy", &str);
    if (err)
        return err;
    if (str == NULL || strcmp(str, "mixed") == 0)
        s->mig_strategy = GM_MIG_MIXED;
    else if (strcmp(str, "single") == 0)
        s->mig_strategy = GM_MIG_SINGLE;
    else
        return fail(d, "spec.mig.strategy: \"%s\" is not single or mixed", str);
    return 0;
}

/* ---- vgpu ---- */

static int get_scaling(struct dec *d, json_object *o, const char *key,
                       const char *path, bool *has, double *out)
{
    json_object *v = field(o, key);

    if (v == NULL)
        return 0;
    if (!json_object_is_type(v, json_type_int) &&
        !json_object_is_type(v, json_type_double))
        return fail(d, "%s: must be a number", path);
    double x = json_object_get_double(v);
    if (!(x > 0.0) || x > 100.0)
        return fail(d, "%s: %g must be greater than 0 and at most 100", path,
                    x);
    *has = true;
    *out = x;
    return 0;
}

static int decode_vgpu(struct dec *d, json_object *v, struct gm_policy_spec *s)
{
    int64_t split = 0;
    int err;

    s->memory_scaling = 1.0;
    s->core_scaling = 1.0;
    if (v == NULL)
        return 0;
    if (s->mode != GM_MODE_VGPU)
        return fail(d, "spec.vgpu: only allowed when spec.mode is vgpu");
    err = want_object(d, v, "spec.vgpu");
    if (err)
        return err;
    if (field(v, "splitCount") != NULL) {
        err = get_int(d, v, "splitCount", "spec.vgpu.splitCount", 1, 1000,
                      &split);
        if (err)
            return err;
        s->has_split_count = true;
        s->split_count = (int)split;
    }
    err = get_scaling(d, v, "memoryScaling", "spec.vgpu.memoryScaling",
                      &s->has_memory_scaling, &s->memory_scaling);
    if (err)
        return err;
    return get_scaling(d, v, "coreScaling", "spec.vgpu.coreScaling",
                       &s->has_core_scaling, &s->core_scaling);
}

/* ---- rollout ---- */

static int decode_max_unavailable(struct dec *d, json_object *v,
                                  struct gm_policy_spec *s)
{
    const char *path = "spec.rollout.maxUnavailable";

    s->max_unavailable = 1;
    s->max_unavailable_percent = false;
    if (v == NULL)
        return 0;
    if (json_object_is_type(v, json_type_int)) {
        int64_t x = json_object_get_int64(v);
        if (x < 1)
            return fail(d, "%s: %lld must be at least 1", path, (long long)x);
        /* More than any fleet has means all of them at once. */
        s->max_unavailable = x > 1000000 ? 1000000 : (int)x;
        return 0;
    }
    if (!json_object_is_type(v, json_type_string))
        return fail(
            d, "%s: must be an integer or a percentage such as \"25%%\"", path);
    const char *str = json_object_get_string(v);
    size_t len = strlen(str);
    int pct = 0;
    bool ok = len >= 2 && len <= 4 && str[len - 1] == '%' && str[0] != '0';
    for (size_t i = 0; ok && i + 1 < len; i++) {
        if (str[i] < '0' || str[i] > '9')
            ok = false;
        else
            pct = pct * 10 + (str[i] - '0');
    }
    if (!ok || pct < 1 || pct > 100)
        return fail(d,
                    "%s: \"%s\" is not a valid percentage (an integer "
                    "from 1%% to 100%%)",
                    path, str);
    s->max_unavailable_percent = true;
    s->max_unavailable = pct;
    return 0;
}

static int parse_hhmm(const char *s, int *minute)
{
    if (s == NULL || strlen(s) != 5 || s[2] != ':')
        return -EINVAL;
    for (int i = 0; i < 5; i++)
        if (i != 2 && (s[i] < '0' || s[i] > '9'))
            return -EINVAL;
    int h = (s[0] - '0') * 10 + (s[1] - '0');
    int m = (s[3] - '0') * 10 + (s[4] - '0');
    if (h > 23 || m > 59)
        return -EINVAL;
    *minute = h * 60 + m;
    return 0;
}

/* IANA names are path-like; refusing "..", absolute paths and odd bytes
 * matters because the name ends up in TZ and so in a file lookup. */
static bool valid_zone(const char *z)
{
    size_t len = strlen(z);

    if (len == 0 || len > 64 || z[0] == '/' || z[len - 1] == '/' ||
        strstr(z, "..") != NULL || strstr(z, "//") != NULL)
        return false;
    for (const char *p = z; *p; p++) {
        char c = *p;
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                  (c >= '0' && c <= '9') || c == '_' || c == '+' || c == '-' ||
                  c == '/';
        if (!ok)
            return false;
    }
    return true;
}

static const char *const day_names[7] = {"sun", "mon", "tue", "wed",
                                         "thu", "fri", "sat"};

static int decode_window(struct dec *d, json_object *w, struct gm_window *out)
{
    const char *str = NULL;
    int err;

    err = want_object(d, w, "spec.rollout.window");
    if (err)
        return err;
    out->days = GM_DAYS_ALL;
    json_object *days = field(w, "days");
    if (days != NULL) {
        if (!json_object_is_type(days, json_type_array))
            return fail(d, "spec.rollout.window.days: must be a list");
        if (json_object_array_length(days) > 0)
            out->days = 0;
        for (size_t i = 0; i < json_object_array_length(days); i++) {
            json_object *v = json_object_array_get_idx(days, i);
            const char *name = json_object_is_type(v, json_type_string)
                                   ? json_object_get_string(v)
                                   : "";
            int found = -1;
            for (int k = 0; k < 7; k++)
                if (strcmp(name, day_names[k]) == 0)
                    found = k;
            if (found < 0)
                return fail(d,
                            "spec.rollout.window.days[%zu]: \"%s\" is not "
                            "one of mon, tue, wed, thu, fri, sat, sun",
                            i, name);
            out->days |= (uint8_t)(1u << found);
        }
    }
    err = get_string(d, w, "start", "spec.rollout.window.start", &str);
    if (err)
        return err;
    if (parse_hhmm(str, &out->start_minute))
        return fail(d,
                    "spec.rollout.window.start: \"%s\" is not a time "
                    "HH:MM from 00:00 to 23:59",
                    str ? str : "");
    err = get_string(d, w, "end", "spec.rollout.window.end", &str);
    if (err)
        return err;
    if (parse_hhmm(str, &out->end_minute))
        return fail(d,
                    "spec.rollout.window.end: \"%s\" is not a time HH:MM "
                    "from 00:00 to 23:59",
                    str ? str : "");
    err = get_string(d, w, "timeZone", "spec.rollout.window.timeZone", &str);
    if (err)
        return err;
    if (str == NULL)
        str = "UTC";
    if (!valid_zone(str))
        return fail(d,
                    "spec.rollout.window.timeZone: \"%s\" is not an IANA "
                    "time zone name",
                    str);
    snprintf(out->time_zone, sizeof(out->time_zone), "%s", str);
    return 0;
}

static int decode_drain(struct dec *d, json_object *dr,
                        struct gm_policy_spec *s)
{
    const char *str = NULL;
    int err;

    s->drain_gpu_pods_only = true;
    s->drain_timeout_seconds = 600;
    s->drain_grace_period_seconds = -1;
    if (dr != NULL) {
        err = want_object(d, dr, "spec.rollout.drain");
        if (err)
            return err;
    }
    err = get_bool(d, dr, "gpuPodsOnly", "spec.rollout.drain.gpuPodsOnly",
                   &s->drain_gpu_pods_only);
    if (!err)
        err = get_string(d, dr, "podSelector", "spec.rollout.drain.podSelector",
                         &str);
    if (!err)
        err = get_int(d, dr, "timeoutSeconds",
                      "spec.rollout.drain.timeoutSeconds", 0, INT64_MAX,
                      &s->drain_timeout_seconds);
    if (!err)
        err = get_int(d, dr, "gracePeriodSeconds",
                      "spec.rollout.drain.gracePeriodSeconds", -1, INT64_MAX,
                      &s->drain_grace_period_seconds);
    if (!err)
        err = get_bool(d, dr, "deleteEmptyDirData",
                       "spec.rollout.drain.deleteEmptyDirData",
                       &s->drain_delete_empty_dir_data);
    if (!err)
        err = get_bool(d, dr, "force", "spec.rollout.drain.force",
                       &s->drain_force);
    if (err)
        return err;
    s->drain_pod_selector = dup_or_empty(str);
    return s->drain_pod_selector ? 0 : -ENOMEM;
}

static int decode_wait(struct dec *d, json_object *w, struct gm_policy_spec *s)
{
    const char *str = NULL;
    int err;

    if (w == NULL)
        return 0;
    err = want_object(d, w, "spec.rollout.waitForCompletion");
    if (!err)
        err = get_string(d, w, "podSelector",
                         "spec.rollout.waitForCompletion.podSelector", &str);
    if (err)
        return err;
    if (str == NULL || str[0] == '\0')
        return fail(d, "spec.rollout.waitForCompletion.podSelector: required");
    err = get_int(d, w, "timeoutSeconds",
                  "spec.rollout.waitForCompletion.timeoutSeconds", 0, INT64_MAX,
                  &s->wait_timeout_seconds);
    if (err)
        return err;
    s->has_wait = true;
    s->wait_pod_selector = strdup(str);
    return s->wait_pod_selector ? 0 : -ENOMEM;
}

static int decode_rollout(struct dec *d, json_object *r,
                          struct gm_policy_spec *s)
{
    const char *str = NULL;
    int64_t x;
    int err;

    if (r != NULL) {
        err = want_object(d, r, "spec.rollout");
        if (err)
            return err;
    }
    err = decode_max_unavailable(d, field(r, "maxUnavailable"), s);
    if (err)
        return err;
    x = 1;
    err = get_int(d, r, "maxFailures", "spec.rollout.maxFailures", 1, INT32_MAX,
                  &x);
    if (err)
        return err;
    s->max_failures = (int)x;
    err = get_bool(d, r, "paused", "spec.rollout.paused", &s->paused);
    if (err)
        return err;
    json_object *w = field(r, "window");
    if (w != NULL) {
        err = decode_window(d, w, &s->window);
        if (err)
            return err;
        s->has_window = true;
    }
    err = decode_drain(d, field(r, "drain"), s);
    if (!err)
        err = decode_wait(d, field(r, "waitForCompletion"), s);
    if (!err)
        err = get_string(d, r, "onFailure", "spec.rollout.onFailure", &str);
    if (err)
        return err;
    if (str == NULL || strcmp(str, "Rollback") == 0)
        s->on_failure = GM_ON_FAILURE_ROLLBACK;
    else if (strcmp(str, "Hold") == 0)
        s->on_failure = GM_ON_FAILURE_HOLD;
    else
        return fail(d, "spec.rollout.onFailure: \"%s\" is not Rollback or Hold",
                    str);
    return get_bool(d, r, "allowReboot", "spec.rollout.allowReboot",
                    &s->allow_reboot);
}

static int decode_spec(struct dec *d, json_object *spec,
                       struct gm_policy_spec *s)
{
    const char *str = NULL;
    int64_t prio = 0;
    int err;

    if (spec == NULL)
        return fail(d, "spec: required");
    err = want_object(d, spec, "spec");
    if (err)
        return err;
    err = get_string(d, spec, "mode", "spec.mode", &str);
    if (err)
        return err;
    if (str == NULL)
        return fail(d, "spec.mode: required (full, vgpu or mig)");
    if (gm_mode_parse(str, &s->mode))
        return fail(d, "spec.mode: \"%s\" is not one of full, vgpu, mig", str);
    err = decode_selector(d, field(spec, "nodeSelector"), "spec.nodeSelector",
                          false, &s->selector);
    if (err)
        return err;
    err = get_int(d, spec, "priority", "spec.priority", -1000, 1000, &prio);
    if (err)
        return err;
    s->priority = (int)prio;
    err = decode_mig(d, field(spec, "mig"), s);
    if (!err)
        err = decode_vgpu(d, field(spec, "vgpu"), s);
    if (!err)
        err = decode_rollout(d, field(spec, "rollout"), s);
    return err;
}

/* ---- status as last written ---- */

static int decode_status(json_object *st, struct gm_policy *p)
{
    int64_t x;
    struct dec ignored;

    if (st == NULL || !json_object_is_type(st, json_type_object))
        return 0;
    p->status = json_object_get(st);
    x = 0;
    get_int(&ignored, st, "observedGeneration", "", 0, INT64_MAX, &x);
    p->status_observed_generation = x;
    json_object *sum = field(st, "summary");
    struct {
        const char *key;
        int *dst;
    } counts[] = {
        {"matched", &p->summary.matched},
        {"converged", &p->summary.converged},
        {"switching", &p->summary.switching},
        {"pending", &p->summary.pending},
        {"failed", &p->summary.failed},
        {"conflicted", &p->summary.conflicted},
    };
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
        x = 0;
        get_int(&ignored, sum, counts[i].key, "", 0, INT32_MAX, &x);
        *counts[i].dst = (int)x;
    }
    json_object *conds = field(st, "conditions");
    if (conds == NULL || !json_object_is_type(conds, json_type_array))
        return 0;
    size_t n = json_object_array_length(conds);
    if (n == 0)
        return 0;
    p->conditions = calloc(n, sizeof(*p->conditions));
    if (p->conditions == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        json_object *c = json_object_array_get_idx(conds, i);
        const char *type = NULL;
        const char *status = NULL;
        const char *reason = NULL;
        const char *message = NULL;
        const char *ltt = NULL;
        get_string(&ignored, c, "type", "", &type);
        if (type == NULL)
            continue; /* not a condition we can diff against */
        get_string(&ignored, c, "status", "", &status);
        get_string(&ignored, c, "reason", "", &reason);
        get_string(&ignored, c, "message", "", &message);
        get_string(&ignored, c, "lastTransitionTime", "", &ltt);
        struct gm_condition *out = &p->conditions[p->n_conditions++];
        out->type = dup_or_empty(type);
        out->status = dup_or_empty(status);
        out->reason = dup_or_empty(reason);
        out->message = dup_or_empty(message);
        out->last_transition_time = dup_or_empty(ltt);
        x = 0;
        get_int(&ignored, c, "observedGeneration", "", 0, INT64_MAX, &x);
        out->observed_generation = x;
        if (!out->type || !out->status || !out->reason || !out->message ||
            !out->last_transition_time)
            return -ENOMEM;
    }
    return 0;
}

int gm_policy_decode(json_object *obj, struct gm_policy **out)
{
    struct dec d = {{0}};
    const char *name = NULL;
    const char *uid = NULL;
    const char *rv = NULL;
    int64_t gen = 0;
    int err;

    *out = NULL;
    json_object *md = field(obj, "metadata");
    get_string(&d, md, "name", "metadata.name", &name);
    if (name == NULL || name[0] == '\0')
        return -EINVAL;
    get_string(&d, md, "uid", "metadata.uid", &uid);
    get_string(&d, md, "resourceVersion", "metadata.resourceVersion", &rv);
    get_int(&d, md, "generation", "metadata.generation", 0, INT64_MAX, &gen);

    struct gm_policy *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return -ENOMEM;
    p->name = strdup(name);
    p->uid = dup_or_empty(uid);
    p->resource_version = dup_or_empty(rv);
    p->generation = gen;
    if (p->name == NULL || p->uid == NULL || p->resource_version == NULL) {
        err = -ENOMEM;
        goto fail;
    }
    err = decode_status(field(obj, "status"), p);
    if (err)
        goto fail;
    err = decode_spec(&d, field(obj, "spec"), &p->spec);
    if (err == -EINVAL) {
        p->valid = false;
        p->error = strdup(d.msg);
        if (p->error == NULL) {
            err = -ENOMEM;
            goto fail;
        }
        *out = p;
        return -EINVAL;
    }
    if (err)
        goto fail;
    p->valid = true;
    *out = p;
    return 0;
fail:
    gm_policy_free(p);
    return err;
}

void gm_mig_layout_clear(struct gm_mig_layout *l)
{
    for (size_t i = 0; i < l->n_entries; i++) {
        struct gm_mig_entry *e = &l->entries[i];
        free(e->devices);
        for (size_t j = 0; j < e->n_counts; j++)
            free(e->counts[j].profile);
        free(e->counts);
        for (size_t j = 0; j < e->n_device_filter; j++)
            free(e->device_filter[j]);
        free(e->device_filter);
    }
    free(l->entries);
    l->entries = NULL;
    l->n_entries = 0;
}

void gm_selector_clear(struct gm_selector *s)
{
    for (size_t i = 0; i < s->n_reqs; i++) {
        free(s->reqs[i].key);
        for (size_t j = 0; j < s->reqs[i].n_values; j++)
            free(s->reqs[i].values[j]);
        free(s->reqs[i].values);
    }
    free(s->reqs);
    s->reqs = NULL;
    s->n_reqs = 0;
}

void gm_policy_free(struct gm_policy *p)
{
    if (p == NULL)
        return;
    free(p->name);
    free(p->uid);
    free(p->resource_version);
    free(p->error);
    gm_selector_clear(&p->spec.selector);
    free(p->spec.mig_config);
    gm_mig_layout_clear(&p->spec.mig_layout);
    free(p->spec.drain_pod_selector);
    free(p->spec.wait_pod_selector);
    if (p->status)
        json_object_put(p->status);
    for (size_t i = 0; i < p->n_conditions; i++) {
        free(p->conditions[i].type);
        free(p->conditions[i].status);
        free(p->conditions[i].reason);
        free(p->conditions[i].message);
        free(p->conditions[i].last_transition_time);
    }
    free(p->conditions);
    free(p);
}

const struct gm_condition *gm_policy_condition(const struct gm_policy *p,
                                               const char *type)
{
    for (size_t i = 0; i < p->n_conditions; i++)
        if (strcmp(p->conditions[i].type, type) == 0)
            return &p->conditions[i];
    return NULL;
}
