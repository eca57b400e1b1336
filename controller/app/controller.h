/* The controller: caches (nodes, helper pods, pods of switching nodes,
 * policies), one work queue, and the reconcilers. Watch handlers only
 * enqueue keys ("n/<node>", "p/<policy>"); every decision happens in a
 * reconcile, which is level-triggered and idempotent. */
#ifndef GM_APP_CONTROLLER_H
#define GM_APP_CONTROLLER_H

#include <stdbool.h>
#include <uv.h>

#include "app/config.h"
#include "common/map.h"
#include "kube/client.h"
#include "kube/reflector.h"
#include "kube/workqueue.h"
#include "nodeswitch/switch.h"

/* Runtime state of one node while it switches; not persisted. */
struct gm_node_rt {
    char *name;                /* owned */
    struct gm_reflector *pods; /* owned; pods on this node, or NULL */
    struct gm_map evictions;   /* pod uid -> struct gm_eviction* (owned) */
    char message[512];         /* status line for this node */
    /* message says our last write was refused (not with 409): the next
     * write that succeeds clears it. */
    bool write_refused;
    /* The node resourceVersion when we last patched it: while the cache
     * still shows it, our write has not come back through the watch. */
    char written_from_rv[32];
    /* That write started a switch or used up a retry mark. */
    bool start_written;
    /* The helper pod we last asked to delete, so each is asked once. */
    char deleted_helper[64];
    /* The helper pod we last created and when (loop ms): until the helper
     * cache shows it, another reconcile must not post it again. */
    char created_helper[64];
    uint64_t created_at_ms;
    /* The last create of a helper pod was refused (not with 409). */
    bool helper_refused;
    /* The last helper pod seen in the helper cache: one that existed may
     * have run, so a later refused create of it does not prove the
     * hardware untouched. */
    char seen_helper[64];
    /* Loop ms since which the list of pods has failed, or 0. */
    uint64_t pods_failing_ms;
    /* A helper waited for the node's GPU driver pod to be Ready. */
    bool driver_waited;
    /* Loop ms since which the reboot helper has ended well on the boot it
     * was to end, or 0. */
    uint64_t reboot_ended_ms;
    int inflight; /* API calls whose callbacks use this */
    bool doomed;  /* free once inflight drops to 0 */
};

/* What the last answer to a pod's eviction was (gm_eviction.blocked). */
enum {
    GM_EVICT_ASKED = 0,   /* none yet, accepted, or the pod is gone */
    GM_EVICT_BUDGET = 1,  /* 429: a budget said no; asked again */
    GM_EVICT_BROKEN = 2,  /* 500: the budgets for it are misconfigured */
    GM_EVICT_REFUSED = 3, /* 400, 403, 422: refused (RBAC, admission) */
};

struct gm_eviction {
    uint64_t next_try_ms; /* loop time before which we do not ask again */
    int blocked;          /* GM_EVICT_* */
    /* the last error answered ("Reason: message"), "" after a success;
     * shown while it is asked again */
    char error[200];
    int sent; /* an eviction is in flight */
    /* A budget of the namespace allowed a disruption while it was in
     * flight: a refusal may predate that, so the next try is at once. */
    int freed_in_flight;
    char namespace[64]; /* the pod's (names are at most 63 bytes) */
};

struct gm_recon;
struct gm_hami;

struct gm_ctl {
    uv_loop_t *loop;
    struct gm_kube *kube;            /* borrowed */
    const struct gm_ctl_config *cfg; /* borrowed */
    struct gm_reflector *nodes;      /* owned: struct gm_node */
    struct gm_reflector *helpers;    /* owned: struct gm_pod (helper pods) */
    struct gm_reflector *hami_cm;    /* owned: struct gm_cm_data */
    bool
        hami_refused; /* a list was refused since the last one that succeeded */
    struct gm_hami *hami; /* owned: writes its entries */
    /* owned, NULL until an eviction is refused (app/budgets.h) */
    struct gm_reflector *budgets;
    struct gm_map node_states;  /* name -> struct gm_node_rt* */
    struct gm_recon *recons;    /* reconciles in flight (controller.c) */
    struct gm_workqueue *queue; /* owned */
    /* Policy lookup for switches; set by the rollout layer. 0, -ENOENT
     * when the policy is gone or invalid, -EAGAIN before the policies are
     * listed, -EBADMSG with out filled but for a pod selector that does
     * not parse (and is missing from out). */
    int (*policy_for)(void *data, const char *policy,
                      struct gm_switch_policy *out);
    void *policy_data;
    /* Does a valid policy select the node (one owns it, or several tie)?
     * 1, 0, or -EAGAIN before the policies are listed. Set by the rollout
     * layer; NULL counts as 0. */
    int (*governed)(void *data, const struct gm_node *node);
    /* Called for node events that matter to planning (labels, annotations,
     * cordon, readiness, GPU resources), so policies re-plan; node is NULL
     * when something every plan reads changed (leading began, HAMi's
     * ConfigMap came or went). */
    void (*on_node_change)(void *data, const char *node);
    /* Reconciles a "p/<policy>" key; same contract as
     * gm_switch_reconcile. */
    int (*reconcile_policy)(void *data, const char *policy,
                            gm_switch_done_cb done, void *ctx,
                            long *requeue_ms);
    struct gm_metrics *metrics; /* borrowed or NULL */
    struct gm_recorder *events; /* borrowed or NULL */
    bool leading; /* false: caches warm, queue idle (a standby replica) */
    bool dry_run;
    bool stopping;
    unsigned long reconciles;
};

/* A cached ConfigMap's one key we care about. */
struct gm_cm_data {
    char *rv;    /* owned */
    char *value; /* owned; NULL when the key is absent */
    /* HAMi's entries: node name -> owned settings text, as the node's
     * gpumode.io/settings would say it (gm_plan_vgpu_settings); empty and
     * not known when config.json does not parse. */
    struct gm_map entries;
    bool entries_known;
    /* owned, NULL when absent: the ConfigMap's gpumode.io/hami-nodes
     * (GM_HAMI_MARKS in app/hami.h) */
    char *marks;
};

/* HAMi's per-node config (config.json) as cached, or NULL when the
 * ConfigMap does not exist; *rv receives its resourceVersion. */
const char *gm_ctl_hami_config(const struct gm_ctl *ctl, const char **rv,
                               bool *exists);
/* Its gpumode.io/hami-nodes annotation (borrowed), or NULL. */
const char *gm_ctl_hami_marks(const struct gm_ctl *ctl);
/* Whether gpumode switched node, or is switching it, and may not leave
 * it alone (gpumode.io/skip): the keys it sets in HAMi's entry are its. */
bool gm_ctl_node_ours(const struct gm_node *n);
/* Its entries (struct gm_cm_data), or NULL when it does not exist or its
 * config does not parse. */
const struct gm_map *gm_ctl_hami_entries(const struct gm_ctl *ctl);
/* Whether the API server refused to list HAMi's ConfigMap (401, 403: a
 * Role not updated after hamiConfigMap moved) and nothing is cached; buf
 * then says why (gm_ctl_refused). Such a ConfigMap is neither absent nor
 * present: the vgpu policies stall and switches that need an entry wait,
 * while every other policy goes on. */
bool gm_ctl_hami_refused(const struct gm_ctl *ctl, char *buf, size_t size);

/* Whether cache r (NULL: none) is as complete as it gets until a person
 * acts: synced, or its list refused (401, 403), which retrying does not
 * fix. A ConfigMap's cache settles so, to stop only what needs it. Other
 * errors (a timeout, a 5xx) are retried with the caches still waiting. */
bool gm_ctl_settled(const struct gm_reflector *r);
/* Whether r's list was refused and nothing is cached; buf then receives
 * "the controller may not read it (<the server's words>; it needs list
 * and watch on it: rbac.yaml)". */
bool gm_ctl_refused(const struct gm_reflector *r, char *buf, size_t size);

int gm_ctl_new(uv_loop_t *loop, struct gm_kube *kube,
               const struct gm_ctl_config *cfg, struct gm_ctl **out);
/* Starts the caches and the queue. */
int gm_ctl_start(struct gm_ctl *ctl);
/* This replica became the leader: process the queue, look at every node
 * and policy again. Does nothing once gm_ctl_stop_work has run. */
void gm_ctl_lead(struct gm_ctl *ctl);
/* Stop taking keys from the queue (shutdown, lost lease). */
void gm_ctl_stop_work(struct gm_ctl *ctl);
bool gm_ctl_synced(const struct gm_ctl *ctl);
void gm_ctl_enqueue_node(struct gm_ctl *ctl, const char *node);
void gm_ctl_enqueue_node_after(struct gm_ctl *ctl, const char *node,
                               uint64_t delay_ms);
void gm_ctl_enqueue_policy(struct gm_ctl *ctl, const char *policy);
void gm_ctl_enqueue_policy_after(struct gm_ctl *ctl, const char *policy,
                                 uint64_t delay_ms);
void gm_ctl_free(struct gm_ctl *ctl);

/* The runtime state of node, created on first use. */
struct gm_node_rt *gm_ctl_node_state(struct gm_ctl *ctl, const char *node);
/* Starts (or keeps) a pod cache for the node; returns it. */
struct gm_reflector *gm_ctl_node_pods(struct gm_ctl *ctl,
                                      struct gm_node_rt *ns);
/* Drops the node's runtime state (pod cache, eviction marks). */
void gm_ctl_node_done(struct gm_ctl *ctl, const char *node);
/* An API call holding ns ended: frees a state dropped meanwhile. */
void gm_ctl_node_state_release(struct gm_node_rt *ns);

#endif
