/* The planner's decision for one policy: from the cached nodes, every
 * policy, the clock and the MIG layouts, which nodes to start switching
 * now, and what the status should say. Pure: no I/O, no clock reads; the
 * caller executes the starts and writes the status.
 *
 * How a governed node is classified, first match wins:
 *   switching  it carries a gpumode.io/switch annotation (whoever's it is:
 *              a switch in flight is finished by the switch machine, and the
 *              node is busy either way);
 *   failed     gpumode.io/state=failed and no gpumode.io/retry annotation;
 *   converged  gpumode.io/mode is the policy's mode, gpumode.io/state is
 *              ready (or absent), for mig the boot id has not changed
 *              since the layout was verified (gpumode.io/boot-id), and
 *              gpumode.io/settings, when present, is what gm_plan_settings
 *              gives for the node now (a changed layout, strategy or vGPU
 *              split is a switch within the mode). A node without the
 *              annotation was verified before gpumode wrote it; its
 *              settings are unknown and taken as current, so an upgrade
 *              never re-lays a fleet. A vgpu node's settings are not
 *              compared while HAMi's ConfigMap is absent or
 *              unreadable (see hami_config_absent). When the policy's layout
 * cannot be resolved for the node, the node stays converged and the policy
 * stalls (InvalidLayout) until a person fixes it. A full node has no settings:
 * the annotation there (put by a person) makes it pending. A converged node
 * that offers other GPU resources than gpumode.io/resources stays converged and
 * is named in drift_notice; pending    everything else. A node without
 * gpumode.io/mode is "unknown" and needs a switch: labels like
 *              nvidia.com/gpu.deploy.device-plugin=true do not tell full
 *              from mig, so only the agent's probe can; the switch should
 *              probe first and skip the hardware step if it already matches.
 *
 * Budget: governed nodes cordoned or NotReady without a switch count
 * against maxUnavailable, as do switches in flight. A pending node that is
 * already cordoned (and Ready) starts without spending budget: it is
 * unavailable either way. NotReady nodes never start (no helper pod could
 * run). Candidates are taken in name order, repairs first. Nothing starts
 * while the policy is paused or outside its window (repairs excepted), nor
 * past maxFailures but the retries asked for; the other stalls
 * (InvalidLayout, PolicyConflict...) hold only the nodes they are about. */
#ifndef GM_PLANNER_PLAN_H
#define GM_PLANNER_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "common/map.h"
#include "kube/node.h"
#include "planner/budget.h"
#include "planner/layout.h"
#include "planner/pluginconfig.h"
#include "planner/policy.h"

enum gm_node_state {
    GM_NODE_CONVERGED = 0,
    GM_NODE_SWITCHING,
    GM_NODE_PENDING,
    GM_NODE_FAILED,
    GM_NODE_CONFLICT,
};

/* A node that is not converged, as status.nodes lists it. */
struct gm_plan_node {
    char *name; /* owned */
    enum gm_node_state state;
    char *phase;   /* owned: Pending, Starting, Failed, Conflict, or the
                    * switch annotation's phase */
    char *from;    /* owned mode name */
    char *to;      /* owned mode name */
    char *since;   /* owned or NULL: from the switch annotation */
    int attempt;   /* 0 when unknown */
    char *message; /* owned, "" when nothing to say */
};

/* A switch to start now. */
struct gm_plan_start {
    const struct gm_node *node; /* borrowed from the input */
    enum gm_mode from;          /* GM_MODE_UNKNOWN without a mode label */
    enum gm_mode to;
    char *layout;   /* owned agent layout JSON when to is mig, else NULL */
    char *settings; /* owned gm_plan_settings value, NULL for full */
};

struct gm_plan_input {
    const struct gm_policy *policy; /* must be valid */
    /* Every policy, this one included, to decide who owns each node. */
    const struct gm_policy *const *policies;
    size_t n_policies;
    const struct gm_node *const *nodes;
    size_t n_nodes;
    time_t now;
    /* The parsed layout ConfigMap (for spec.mig.config), or NULL with
     * layouts_error saying why (missing, malformed). */
    const struct gm_migparted *layouts;
    const char *layouts_source; /* "ConfigMap gpumode-system/..." */
    const char *layouts_error;
    /* HAMi's per-node config ConfigMap does not exist, so no vgpu split
     * can be written: a vgpu node whose settings differ stays converged
     * (a switch could not apply the new split, a drain for nothing).
     * Nodes switched meanwhile record {}, so once the ConfigMap appears
     * they differ and are switched again to apply the split. */
    bool hami_config_absent;
    /* Why the controller may not read that ConfigMap (the API server
     * refused the list), or NULL. Then it is not known absent or present:
     * a vgpu policy stalls (HAMiConfigUnreadable) with this reason, and
     * its converged nodes stay converged, as when it is absent. */
    const char *hami_config_unreadable;
    const char *hami_config_source; /* "ConfigMap kube-system/...", or NULL */
    /* HAMi's entries when the ConfigMap exists: node name -> settings text
     * (gm_plan_vgpu_settings), or NULL when not known. A converged vgpu
     * node whose entry says otherwise than its settings (the ConfigMap
     * was re-created, or edited) stays converged: HAMi reads the entry
     * only when its plugin starts. The notice names it, so a person can
     * decide; gpumode does not write the entry back (a GitOps tool that
     * owns the ConfigMap would revert it) nor drain for it. */
    const struct gm_map *hami_entries;
    /* The profile's vGPU resource name (e.g. nvidia.com/vgpu), for
     * gm_plan_resources. */
    const char *vgpu_resource;
    /* How long a converged node may advertise other GPU resources than
     * its gpumode.io/resources before the notice names it (a device plugin
     * restarting shows other counts for a moment); a node's
     * resources_since says since when (gm_plan_carry_resources_since). gpumode
     * never switches such a node by itself: the change may be a person's, and a
     * switch drains. */
    long resources_grace_s;
    /* The device plugin's configs (devicePluginConfigMap in the
     * controller's config), or NULL when not checked. A pending node whose
     * switch would select, through plugin_config_label, a config the
     * plugin cannot load (gm_plugin_config_check) is not started, and the
     * policy stalls (InvalidPluginConfig) until a person fixes the
     * ConfigMap or the node: the plugin would crash-loop after the drain,
     * and the switch roll back only after clientsTimeoutSeconds. */
    const struct gm_plugin_configs *plugin_configs;
    const char *plugin_configs_source; /* "ConfigMap gpu-operator/..." */
    const char *plugin_config_label;   /* the profile's, or NULL: none */
};

struct gm_plan {
    struct gm_summary summary;
    /* This policy's switches still running on nodes it no longer governs
     * (its selector changed, or a policy of higher priority took them):
     * not in summary or nodes, but they hold budget and the policy is not
     * done until they end. */
    int in_flight_elsewhere;
    struct gm_budget budget;
    struct gm_plan_start *starts; /* owned, in name order */
    size_t n_starts;
    struct gm_plan_node *nodes; /* owned, every node not converged, sorted
                                 * by name (status caps the list) */
    size_t n_nodes;
    int window;        /* 1 open, 0 closed, -1 the policy has none */
    time_t requeue_at; /* when to look again (window opening), or 0 */
    /* Set when the policy cannot make progress without a person: a
     * CamelCase reason (InvalidLayout, InvalidTimeZone, MaxFailuresReached,
     * PolicyConflict) and a message. */
    const char *stall_reason; /* static or NULL */
    char *stall_message;      /* owned or NULL */
    /* Owned or NULL: what the policy asks that is not being done though
     * nothing stalls (a splitCount without HAMi's ConfigMap, entries that
     * differ from what nodes were verified with), or will undo itself (a
     * single-strategy policy selecting on labels feature discovery
     * rewrites in MIG); the status adds it to
     * the Ready and Reconciling messages. */
    char *notice;
    /* Owned or NULL: converged nodes whose GPU resources differ from what
     * they were verified with, named; the status adds it after notice. */
    char *drift_notice;
    int drifted; /* how many (gpumode_nodes_resources_differ) */
    /* When a node's differing resources outlast the grace, or 0: plan
     * again then. */
    time_t recheck_at;
};

/* Returns 0 with *out filled (free with gm_plan_free), -EINVAL when the
 * policy is not valid, or -ENOMEM. */
int gm_plan_policy(const struct gm_plan_input *in, struct gm_plan *out);
void gm_plan_free(struct gm_plan *p);

/* What gpumode.io/settings says on a node verified in spec's mode: what
 * beyond the mode decides the resources it serves. mig: the device-plugin
 * strategy and the layout resolved for the node (layout, agent JSON):
 *   {"strategy":"mixed","layout":[...]}
 * vgpu: what HAMi's per-node config gets, or {} when the policy sets no
 * splitCount (the controller then writes no entry; a switch that finds
 * no HAMi ConfigMap records {} too, as nothing was written):
 *   {"splitCount":10,"memoryScaling":1,"coreScaling":1}
 * full: nothing, *out is NULL. The switch writes the value the plan gave
 * it when it completes, so the same function decides both sides of the
 * comparison. The text is persisted on nodes: a release that writes it
 * differently (here or in gm_layout_resolve) re-lays every MIG node it
 * finds, so change the form only with a migration. Returns 0 with *out
 * the caller's, or -ENOMEM. */
int gm_plan_settings(const struct gm_policy_spec *s, const char *layout,
                     char **out);

/* The vgpu value of gm_plan_settings from what HAMi's entry for the node
 * gets: {} without an entry (split false), else the split and both
 * scalings. The switch records it for the entry it actually wrote.
 * Returns what snprintf returns. */
int gm_plan_vgpu_settings(bool split, int count, double memory, double core,
                          char *buf, size_t len);

/* gpumode.io/resources: the GPU resources a node offers in its mode, as
 * "name=count" pairs sorted by name and joined by ",", of its nonzero
 * nvidia.com/gpu, nvidia.com/mig-* and vgpu_resource allocatable ("" for
 * none). The switch records it when a node is verified; the planner
 * compares it with what converged nodes offer now. Other resources (the
 * network operator's nvidia.com/rdma_*, HAMi's gpumem) are left out: they
 * follow from these or are not the mode's. 0, or -ENOSPC when buf is too
 * short. */
int gm_plan_resources(const struct gm_node *n, const char *vgpu_resource,
                      char *buf, size_t len);

/* For the node cache, when now replaces was (same node): a node that
 * offered other GPU resources than its gpumode.io/resources, in service
 * (schedulable and Ready), and still does, keeps was's resources_since;
 * otherwise now keeps its own (its decode time). So resources_since is
 * when the current run of differing began: a node out of service or
 * briefly back to its recorded resources starts the grace again, a count
 * that changes while it differs does not. */
void gm_plan_carry_resources_since(const struct gm_node *was,
                                   struct gm_node *now,
                                   const char *vgpu_resource);
/* Works out once whether n offers what its gpumode.io/resources says
 * (n->resources), for the cache's owner to call on each decoded node:
 * plans then read the answer instead of formatting every converged node's
 * resources each time. */
void gm_plan_mark_resources(struct gm_node *n, const char *vgpu_resource);

/* "1/3 nodes in mig" style progress line the status and the CLI share. */
int gm_plan_progress(const struct gm_plan *p, enum gm_mode mode, char *buf,
                     size_t len);

#endif
