/* A GPUModePolicy decoded into plain C: the spec with the CRD's defaults
 * applied (so a policy read from a cluster without the CRD's defaulting, or
 * from a file for `kubectl gpumode plan`, means the same thing), and the
 * status as it was last written, which status.c diffs against. */
#ifndef GM_PLANNER_POLICY_H
#define GM_PLANNER_POLICY_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/mode.h"

enum gm_sel_op {
    GM_SEL_IN,
    GM_SEL_NOT_IN,
    GM_SEL_EXISTS,
    GM_SEL_DOES_NOT_EXIST,
};

/* One requirement; matchLabels entries become In with one value. */
struct gm_sel_req {
    char *key; /* owned */
    enum gm_sel_op op;
    char **values; /* owned array of owned strings */
    size_t n_values;
};

struct gm_selector {
    struct gm_sel_req *reqs; /* owned; never empty in a decoded policy */
    size_t n_reqs;
};

/* One profile count of a layout entry, e.g. {"1g.10gb", 7}. */
struct gm_mig_count {
    char *profile; /* owned */
    int count;
};

/* One entry of a mig-parted config or of an inline layout. */
struct gm_mig_entry {
    bool all_devices; /* devices: all, or (inline) devices omitted */
    int *devices;     /* owned; GPU indexes when !all_devices */
    size_t n_devices;
    bool mig_enabled;
    struct gm_mig_count *counts; /* owned */
    size_t n_counts;
    char **device_filter; /* owned; PCI ids such as "0x20B010DE"; empty: any */
    size_t n_device_filter;
};

struct gm_mig_layout {
    struct gm_mig_entry *entries; /* owned */
    size_t n_entries;
};

enum gm_mig_strategy {
    GM_MIG_MIXED = 0,
    GM_MIG_SINGLE,
};

enum gm_on_failure {
    GM_ON_FAILURE_ROLLBACK = 0,
    GM_ON_FAILURE_HOLD,
};

/* Days as a bit mask indexed like struct tm's tm_wday: bit 0 is Sunday. */
#define GM_DAYS_ALL 0x7f

struct gm_window {
    uint8_t days;       /* GM_DAYS_ALL when the policy lists none */
    int start_minute;   /* minutes after local midnight, 0..1439 */
    int end_minute;     /* equal to start_minute: the whole day */
    char time_zone[65]; /* IANA name, "UTC" by default */
};

struct gm_policy_spec {
    struct gm_selector selector;
    enum gm_mode mode;
    int priority;

    /* mode mig only: exactly one of mig_config and mig_layout is set. */
    char *mig_config; /* owned or NULL: a name in the mig-parted ConfigMap */
    bool has_mig_layout;
    struct gm_mig_layout mig_layout;
    enum gm_mig_strategy mig_strategy;

    /* mode vgpu only; has_* say whether the user set a value. */
    bool has_split_count;
    int split_count;
    bool has_memory_scaling;
    double memory_scaling;
    bool has_core_scaling;
    double core_scaling;

    bool max_unavailable_percent; /* max_unavailable is a percentage */
    int max_unavailable;
    int max_failures;
    bool paused;
    bool has_window;
    struct gm_window window;

    bool drain_gpu_pods_only;
    char *drain_pod_selector; /* owned, "" by default */
    int64_t drain_timeout_seconds;
    int64_t drain_grace_period_seconds; /* -1: the pod's own */
    bool drain_delete_empty_dir_data;
    bool drain_force;

    bool has_wait;
    char *wait_pod_selector; /* owned or NULL */
    int64_t wait_timeout_seconds;

    enum gm_on_failure on_failure;
    bool allow_reboot;
};

/* A condition as last written; all strings owned, never NULL. */
struct gm_condition {
    char *type;
    char *status; /* "True", "False", "Unknown" */
    char *reason;
    char *message;
    char *last_transition_time;
    int64_t observed_generation;
};

struct gm_summary {
    int matched; /* nodes this policy governs */
    int converged;
    int switching;
    int pending;
    int failed;
    int conflicted; /* selected but tied with another policy: not governed */
};

struct gm_policy {
    char *name;             /* owned */
    char *uid;              /* owned, "" when absent */
    char *resource_version; /* owned, "" when absent */
    int64_t generation;

    /* False when the spec could not be decoded: error says why and spec
     * holds only what was decoded before the error. */
    bool valid;
    char *error; /* owned or NULL, e.g. `spec.mode: "x" is not ...` */
    struct gm_policy_spec spec;

    /* The status as last written, for diffing. */
    json_object *status; /* owned reference or NULL */
    int64_t status_observed_generation;
    struct gm_condition *conditions; /* owned */
    size_t n_conditions;
    struct gm_summary summary;
};

/* Decodes a GPUModePolicy object. Returns 0 with *out a valid policy;
 * -EINVAL with *out an invalid policy (out->valid false, out->error naming
 * the field) when the metadata decoded but the spec did not, or with *out
 * NULL when metadata.name is missing; -ENOMEM. The object is only read (a
 * reference to its status is taken). *out is the caller's: gm_policy_free. */
int gm_policy_decode(json_object *obj, struct gm_policy **out);
void gm_policy_free(struct gm_policy *p);

/* Decodes a metav1.LabelSelector (matchLabels, matchExpressions). at names
 * the field in messages ("spec.selector"); an empty selector is an error
 * unless allow_empty. Returns 0, -EINVAL with err naming the field, or
 * -ENOMEM; on error *out is left empty. Free with gm_selector_clear. */
int gm_selector_decode(json_object *sel, const char *at, bool allow_empty,
                       struct gm_selector *out, char *err, size_t err_len);
/* Frees what a selector owns (not the struct) and zeroes it. */
void gm_selector_clear(struct gm_selector *s);

/* Frees what a layout owns (not the struct itself) and zeroes it. */
void gm_mig_layout_clear(struct gm_mig_layout *l);

/* NULL when the policy's last status has no condition of that type. */
const struct gm_condition *gm_policy_condition(const struct gm_policy *p,
                                               const char *type);

#endif
