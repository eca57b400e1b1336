/* `kubectl gpumode plan`: what a policy would do to the live cluster,
 * worked out by the controller's own planner. The rollout is simulated by
 * planning again and again: the first plan's starts are batch 1; those
 * nodes are then taken as converged and the policy planned again, until
 * nothing more would start. Then, for every node that would switch, which
 * pods its drain would evict, wait for, or leave, and which evictions a
 * PodDisruptionBudget would refuse right now. Pure: no I/O. */
#ifndef GM_CLI_DRYRUN_H
#define GM_CLI_DRYRUN_H

#include <json-c/json.h>
#include <stddef.h>
#include <time.h>

#include "common/buf.h"
#include "kube/node.h"
#include "kube/pod.h"
#include "planner/layout.h"
#include "planner/plan.h"
#include "planner/policy.h"

enum gm_dry_action {
    GM_DRY_EVICT,     /* the Eviction API would be asked */
    GM_DRY_PROTECTED, /* would be evicted, but a PodDisruptionBudget
                         allows no disruption now: the drain waits */
    GM_DRY_WAIT,      /* waited for, not evicted (waitForCompletion) */
    GM_DRY_BLOCKED,   /* needs an option the policy does not give */
    GM_DRY_SKIP,      /* left alone (DaemonSet, not a GPU pod, ...) */
};

const char *gm_dry_action_name(enum gm_dry_action a);

struct gm_dry_pod {
    char *namespace; /* owned */
    char *name;      /* owned */
    enum gm_dry_action action;
    char *why; /* owned, "" when nothing to add */
};

struct gm_dry_node {
    char *name; /* owned */
    char *from; /* owned: the mode now ("unknown" without a label) */
    enum gm_node_state state; /* as the first plan saw it */
    int batch;  /* 1.. when it would start; 0 in flight now; -1 never */
    char *note; /* owned: why it would not switch, or "" */
    struct gm_dry_pod *pods; /* owned; filled by gm_dry_run_pods */
    size_t n_pods;
};

struct gm_dry_run {
    char *policy; /* owned */
    enum gm_mode mode;
    int priority;
    int matched;               /* nodes the policy would govern */
    int limit;                 /* maxUnavailable in nodes */
    struct gm_dry_node *nodes; /* owned, every node the policy selects that
                                  it would govern or is tied on, by name */
    size_t n_nodes;
    int n_batches;
    char **elsewhere; /* owned: "node: governed by policy X (priority N)" */
    size_t n_elsewhere;
    char **notes; /* owned: informational (paused, window) */
    size_t n_notes;
    char **errors; /* owned: what stops the policy (exit 1) */
    size_t n_errors;
};

struct gm_dry_input {
    const struct gm_policy *policy; /* valid; the file's */
    /* The cluster's valid policies; one with the same name is replaced by
     * the file's, as applying it would. */
    const struct gm_policy *const *existing;
    size_t n_existing;
    const struct gm_node *const *nodes;
    size_t n_nodes;
    const struct gm_migparted *layouts; /* NULL with layouts_error */
    const char *layouts_source;
    const char *layouts_error;
    /* "ConfigMap NS/NAME" of HAMi's per-node config when it does not
     * exist (no vgpu split can be written), else NULL. */
    const char *hami_config_absent;
    /* The device plugin's configs (--plugin-configmap, else the
     * controller's devicePluginConfigMap), or NULL: not checked; source
     * names them. */
    const struct gm_plugin_configs *plugin_configs;
    const char *plugin_configs_source;
    /* The controller's preset's vGPU resource; NULL: nvidia.com/vgpu. */
    const char *vgpu_resource;
    /* Why the plan used the defaults rather than the controller's config,
     * or NULL: there is none (a note), or one that could not be read or
     * is not valid (an error: the plan fails). Shown first of their kind. */
    const char *config_note;
    const char *config_problem;
    time_t now;
};

/* Returns 0 with *out filled (gm_dry_run_free), -EINVAL when the policy is
 * not valid, or -ENOMEM. */
int gm_dry_run_plan(const struct gm_dry_input *in, struct gm_dry_run *out);

/* Classifies pods of the nodes that would switch (pods on other nodes are
 * ignored). pdbs is an array of policy/v1 PodDisruptionBudgets, or NULL
 * with pdbs_unread saying why they could not be read (a note then tells
 * that evictions were not checked against them); own_namespace is the
 * controller's (its helper pods are never drained). */
int gm_dry_run_pods(struct gm_dry_run *run, const struct gm_policy *p,
                    const struct gm_pod *const *pods, size_t n_pods,
                    json_object *pdbs, const char *pdbs_unread,
                    const char *own_namespace);

/* True when a pod in ns with these labels is covered by a PDB in pdbs that
 * allows no disruption and the API server would ask it (the pod runs,
 * or its phase is Unknown, and is not being deleted); *which gets its
 * name (borrowed from pdbs). */
bool gm_dry_pdb_blocks(json_object *pdbs, const struct gm_pod *pod,
                       const char **which);

/* Names of the nodes that would switch (batch >= 1), borrowed. *out is an
 * array the caller frees (not the strings). */
int gm_dry_run_switching(const struct gm_dry_run *r, const char ***out,
                         size_t *n);

int gm_dry_run_render(const struct gm_dry_run *r, struct gm_buf *out);
/* New reference, or NULL on allocation failure. */
json_object *gm_dry_run_json(const struct gm_dry_run *r);
void gm_dry_run_free(struct gm_dry_run *r);

#endif
