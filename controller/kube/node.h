/* The compact form of a Node that the controller keeps in memory: only what
 * the planner and the node switch read. Strings that repeat across nodes
 * (labels as key=value pairs, resource names, taints) are interned and
 * shared, which is what keeps a cached node well under 1 KiB. */
#ifndef GM_KUBE_NODE_H
#define GM_KUBE_NODE_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* A label as the caches keep it: one interned "key=value" string, shared by
 * every object carrying the same label (label keys cannot contain '=').
 * Labels are most of a cached node; one pointer each instead of a key and a
 * value pointer takes 1.4 MiB off a cache of 5,000 GPU nodes. */
struct gm_label {
    const char *kv; /* interned */
};

struct gm_quantity {
    const char *name; /* interned, e.g. "nvidia.com/mig-1g.10gb" */
    int64_t value;    /* whole units; GPU resources are counts */
};

struct gm_taint {
    const char *key;    /* interned */
    const char *value;  /* interned, "" when absent */
    const char *effect; /* interned */
};

enum gm_res_match { GM_RES_UNKNOWN = 0, GM_RES_SAME, GM_RES_OTHER };

struct gm_node {
    char *name;              /* owned */
    char *uid;               /* owned */
    char *resource_version;  /* owned */
    struct gm_label *labels; /* owned array, sorted by key */
    size_t n_labels;
    /* gpumode.io annotations, owned or NULL */
    char *ann_switch;
    char *ann_boot_id;
    char *ann_retry;
    /* gpumode.io/plugin-config: the node's own device plugin config label
     * value, kept while gpumode has the node in mig */
    char *ann_plugin_config;
    /* interned or NULL: gpumode.io/settings, the mode settings the node was
     * last verified with (the same string on every node of a pool) */
    const char *ann_settings;
    /* interned or NULL: gpumode.io/resources, the GPU resources the node
     * advertised when its last switch was verified */
    const char *ann_resources;
    /* Wall clock; 0 when unknown. Since when the node has, without a
     * break, offered other GPU resources than ann_resources while in
     * service; when it does not, its decode time. Kept by the cache's
     * owner (gm_plan_carry_resources_since), not by gm_node_from_json. */
    time_t resources_since;
    /* Does the node offer what ann_resources says? Worked out once per
     * cached object by the cache's owner (gm_plan_mark_resources), so
     * plans do not; GM_RES_UNKNOWN (as decoded) has the planner work it
     * out itself. */
    unsigned char resources;
    bool unschedulable;
    bool ready; /* condition Ready is True */
    /* gpumode.io/gpus: the GPUs a full node was verified with, below
     * 1024; 0 when not recorded (another mode, or verified by an older
     * gpumode). Here, it fills what was padding. */
    unsigned short ann_gpus;
    char *boot_id;                   /* owned, status.nodeInfo.bootID */
    struct gm_quantity *allocatable; /* owned; only GPU-related resources */
    size_t n_allocatable;
    struct gm_taint *taints; /* owned */
    size_t n_taints;
};

/* Builds a compact node from a Node JSON object. Returns 0, -EINVAL when the
 * object is not a Node with metadata.name, or -ENOMEM. *out is the caller's;
 * free it with gm_node_free. */
int gm_node_from_json(json_object *obj, struct gm_node **out);
void gm_node_free(struct gm_node *n);

/* The value: what follows the key's '='. */
const char *gm_label_value(const struct gm_label *l);
/* Orders a label by its key against key, as strcmp would order the key
 * alone: <0, 0 or >0. */
int gm_label_key_cmp(const struct gm_label *l, const char *key);
/* qsort comparator for label arrays: by key. */
int gm_label_order(const void *a, const void *b);

/* Decodes a labels object into an array sorted by key with interned
 * strings (a non-object counts as no labels). The array (*out, *n) is the
 * caller's;
 * free with gm_labels_free even on error. */
int gm_labels_decode(json_object *labels, struct gm_label **out, size_t *n);
void gm_labels_free(struct gm_label *labels, size_t n);
/* NULL when absent: a binary search of a sorted label array. */
const char *gm_labels_get(const struct gm_label *labels, size_t n,
                          const char *key);

/* NULL when the label is absent. Binary search over the sorted labels. */
const char *gm_node_label(const struct gm_node *n, const char *key);
/* Do a and b advertise the same GPU resources (names and counts)? */
bool gm_node_same_allocatable(const struct gm_node *a, const struct gm_node *b);
/* -1 when the node does not advertise the resource. */
int64_t gm_node_allocatable(const struct gm_node *n, const char *resource);

/* Is a resource name one we keep (nvidia.com/..., HAMi's resources)? */
bool gm_is_gpu_resource(const char *name);

/* Approximate bytes a node holds beyond the shared intern table, for the
 * memory benchmark. */
size_t gm_node_footprint(const struct gm_node *n);

#endif
