#include "kube/node.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/intern.h"

bool gm_is_gpu_resource(const char *name)
{
    return strncmp(name, "nvidia.com/", 11) == 0 ||
           strncmp(name, "hami.io/", 8) == 0;
}

static char *dup_or_null(json_object *o)
{
    const char *s = o ? json_object_get_string(o) : NULL;
    return s ? strdup(s) : NULL;
}

static json_object *get(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (o && json_object_object_get_ex(o, key, &v))
        return v;
    return NULL;
}

const char *gm_label_value(const struct gm_label *l)
{
    const char *eq = strchr(l->kv, '=');
    return eq ? eq + 1 : "";
}

/* A stored key ends at its first '=': compared as if that were a NUL, so
 * labels order as their keys would. b_is_kv says whether b is a stored
 * pair too; a key being looked up keeps its '=' as a character, so
 * "pool=b" (never a valid key) matches no label rather than "pool". */
static int key_cmp(const char *kv, const char *b_str, bool b_is_kv)
{
    const unsigned char *a = (const unsigned char *)kv;
    const unsigned char *b = (const unsigned char *)b_str;
    for (;; a++, b++) {
        unsigned ca = *a == '=' ? 0 : *a;
        unsigned cb = b_is_kv && *b == '=' ? 0 : *b;
        if (ca != cb || ca == 0)
            return (int)ca - (int)cb;
    }
}

int gm_label_key_cmp(const struct gm_label *l, const char *key)
{
    return key_cmp(l->kv, key, false);
}

int gm_label_order(const void *a, const void *b)
{
    const struct gm_label *x = a, *y = b;
    return key_cmp(x->kv, y->kv, true);
}

/* Kubernetes quantities for devices are plain integers; CPU-style suffixes
 * never appear on extended resources, so anything else counts as 0. */
static int64_t parse_count(const char *s)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s)
        return 0;
    switch (*end) {
    case '\0':
        return v;
    case 'k':
        return v * 1000;
    case 'M':
        return v * 1000000;
    case 'G':
        return v * 1000000000;
    default:
        return 0;
    }
}

/* labels and allocatable are objects in a valid Node; anything else is
 * ignored, as a missing field is (json-c's object accessors would read
 * through a NULL table). */
static bool is_object(json_object *o)
{
    return o != NULL && json_object_is_type(o, json_type_object);
}

int gm_labels_decode(json_object *labels, struct gm_label **out, size_t *n)
{
    size_t count =
        is_object(labels) ? (size_t)json_object_object_length(labels) : 0;

    *out = NULL;
    *n = 0;
    if (count == 0)
        return 0;
    *out = calloc(count, sizeof(**out));
    if (*out == NULL)
        return -ENOMEM;
    /* One buffer for every "key=value" of this object: a key is at most
     * 317 bytes, but a value is not bounded by the JSON itself. */
    char small[512];
    json_object_object_foreach(labels, k, v)
    {
        const char *val = json_object_get_string(v);
        size_t kl = strlen(k), vl = val ? strlen(val) : 0;
        char *kv = kl + vl + 2 <= sizeof(small) ? small : malloc(kl + vl + 2);
        if (kv == NULL)
            return -ENOMEM;
        memcpy(kv, k, kl);
        kv[kl] = '=';
        memcpy(kv + kl + 1, val ? val : "", vl + 1);
        (*out)[*n].kv = gm_intern(kv);
        if (kv != small)
            free(kv);
        if ((*out)[*n].kv == NULL)
            return -ENOMEM;
        (*n)++;
    }
    qsort(*out, *n, sizeof(**out), gm_label_order);
    return 0;
}

void gm_labels_free(struct gm_label *labels, size_t n)
{
    for (size_t i = 0; i < n; i++)
        gm_intern_release(labels[i].kv);
    free(labels);
}

const char *gm_labels_get(const struct gm_label *labels, size_t n,
                          const char *key)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = gm_label_key_cmp(&labels[mid], key);
        if (c == 0)
            return gm_label_value(&labels[mid]);
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static int decode_allocatable(struct gm_node *n, json_object *alloc)
{
    size_t count = 0;
    if (!is_object(alloc))
        return 0;
    json_object_object_foreach(alloc, k0, v0)
    {
        (void)v0;
        if (gm_is_gpu_resource(k0))
            count++;
    }
    if (count == 0)
        return 0;
    n->allocatable = calloc(count, sizeof(*n->allocatable));
    if (n->allocatable == NULL)
        return -ENOMEM;
    json_object_object_foreach(alloc, k, v)
    {
        if (!gm_is_gpu_resource(k))
            continue;
        struct gm_quantity *q = &n->allocatable[n->n_allocatable++];
        q->name = gm_intern(k);
        q->value = parse_count(json_object_get_string(v));
        if (q->name == NULL)
            return -ENOMEM;
    }
    return 0;
}

static int decode_taints(struct gm_node *n, json_object *taints)
{
    size_t count = taints && json_object_is_type(taints, json_type_array)
                       ? json_object_array_length(taints)
                       : 0;
    if (count == 0)
        return 0;
    n->taints = calloc(count, sizeof(*n->taints));
    if (n->taints == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < count; i++) {
        json_object *t = json_object_array_get_idx(taints, i);
        const char *key = json_object_get_string(get(t, "key"));
        const char *val = json_object_get_string(get(t, "value"));
        const char *eff = json_object_get_string(get(t, "effect"));
        struct gm_taint *x = &n->taints[n->n_taints++];
        x->key = gm_intern(key ? key : "");
        x->value = gm_intern(val ? val : "");
        x->effect = gm_intern(eff ? eff : "");
        if (!x->key || !x->value || !x->effect)
            return -ENOMEM;
    }
    return 0;
}

int gm_node_from_json(json_object *obj, struct gm_node **out)
{
    json_object *meta = get(obj, "metadata");
    json_object *spec = get(obj, "spec");
    json_object *status = get(obj, "status");
    json_object *name = get(meta, "name");
    json_object *ann = get(meta, "annotations");
    json_object *kind = get(obj, "kind");
    int err;

    if (name == NULL ||
        (kind && strcmp(json_object_get_string(kind), "Node") != 0))
        return -EINVAL;
    struct gm_node *n = calloc(1, sizeof(*n));
    if (n == NULL)
        return -ENOMEM;
    n->name = dup_or_null(name);
    n->uid = dup_or_null(get(meta, "uid"));
    n->resource_version = dup_or_null(get(meta, "resourceVersion"));
    n->ann_switch = dup_or_null(get(ann, "gpumode.io/switch"));
    n->ann_boot_id = dup_or_null(get(ann, "gpumode.io/boot-id"));
    n->ann_retry = dup_or_null(get(ann, "gpumode.io/retry"));
    n->ann_plugin_config = dup_or_null(get(ann, "gpumode.io/plugin-config"));
    const char *gpus = json_object_get_string(get(ann, "gpumode.io/gpus"));
    char *end = NULL;
    long ng = gpus ? strtol(gpus, &end, 10) : 0;
    n->ann_gpus = gpus && *gpus && *end == '\0' && ng > 0 && ng < 1024
                      ? (unsigned short)ng
                      : 0;
    json_object *settings = get(ann, "gpumode.io/settings");
    json_object *resources = get(ann, "gpumode.io/resources");
    if (settings)
        n->ann_settings = gm_intern(json_object_get_string(settings));
    if (resources)
        n->ann_resources = gm_intern(json_object_get_string(resources));
    if ((settings && n->ann_settings == NULL) ||
        (resources && n->ann_resources == NULL)) {
        gm_node_free(n);
        return -ENOMEM;
    }
    n->boot_id = dup_or_null(get(get(status, "nodeInfo"), "bootID"));
    n->unschedulable = json_object_get_boolean(get(spec, "unschedulable"));
    json_object *conds = get(status, "conditions");
    size_t nc = conds && json_object_is_type(conds, json_type_array)
                    ? json_object_array_length(conds)
                    : 0;
    for (size_t i = 0; i < nc; i++) {
        json_object *c = json_object_array_get_idx(conds, i);
        const char *type = json_object_get_string(get(c, "type"));
        const char *st = json_object_get_string(get(c, "status"));
        if (type && st && strcmp(type, "Ready") == 0)
            n->ready = strcmp(st, "True") == 0;
    }
    err = n->name ? 0 : -ENOMEM;
    if (!err)
        err = gm_labels_decode(get(meta, "labels"), &n->labels, &n->n_labels);
    if (!err)
        err = decode_allocatable(n, get(status, "allocatable"));
    if (!err)
        err = decode_taints(n, get(spec, "taints"));
    if (err) {
        gm_node_free(n);
        return err;
    }
    *out = n;
    return 0;
}

void gm_node_free(struct gm_node *n)
{
    if (n == NULL)
        return;
    gm_labels_free(n->labels, n->n_labels);
    for (size_t i = 0; i < n->n_allocatable; i++)
        gm_intern_release(n->allocatable[i].name);
    for (size_t i = 0; i < n->n_taints; i++) {
        gm_intern_release(n->taints[i].key);
        gm_intern_release(n->taints[i].value);
        gm_intern_release(n->taints[i].effect);
    }
    free(n->allocatable);
    free(n->taints);
    free(n->name);
    free(n->uid);
    free(n->resource_version);
    free(n->ann_switch);
    free(n->ann_boot_id);
    free(n->ann_retry);
    free(n->ann_plugin_config);
    gm_intern_release(n->ann_settings);
    gm_intern_release(n->ann_resources);
    free(n->boot_id);
    free(n);
}

const char *gm_node_label(const struct gm_node *n, const char *key)
{
    return gm_labels_get(n->labels, n->n_labels, key);
}

bool gm_node_same_allocatable(const struct gm_node *a, const struct gm_node *b)
{
    if (a->n_allocatable != b->n_allocatable)
        return false;
    /* Both decoded from the same API server's JSON, so in the same order;
     * names are interned, so equal names are equal pointers. */
    for (size_t i = 0; i < a->n_allocatable; i++)
        if (a->allocatable[i].name != b->allocatable[i].name ||
            a->allocatable[i].value != b->allocatable[i].value)
            return false;
    return true;
}

int64_t gm_node_allocatable(const struct gm_node *n, const char *resource)
{
    for (size_t i = 0; i < n->n_allocatable; i++)
        if (strcmp(n->allocatable[i].name, resource) == 0)
            return n->allocatable[i].value;
    return -1;
}

static size_t str_size(const char *s)
{
    /* malloc rounds small blocks up to 16-byte chunks plus a header word. */
    return s ? ((strlen(s) + 1 + 8 + 15) & ~(size_t)15) : 0;
}

size_t gm_node_footprint(const struct gm_node *n)
{
    size_t b = sizeof(*n) + 16;
    b += n->n_labels * sizeof(*n->labels) + 16;
    b += n->n_allocatable * sizeof(*n->allocatable) + 16;
    b += n->n_taints * sizeof(*n->taints) + 16;
    b += str_size(n->name) + str_size(n->uid) + str_size(n->resource_version);
    b += str_size(n->ann_switch) + str_size(n->ann_boot_id);
    b += str_size(n->ann_retry) + str_size(n->ann_plugin_config);
    b += str_size(n->boot_id);
    return b;
}
