/* The node switch: a table of phases, each with one function that reads
 * the observed state (node, its pods, the helper pod) and takes the next
 * step. Every step is idempotent and all progress lives in the node's
 * gpumode.io/switch annotation, so a controller restarted at any instant
 * picks up where the last one stopped without repeating a side effect. */
#ifndef GM_NODESWITCH_SWITCH_H
#define GM_NODESWITCH_SWITCH_H

#include <stdbool.h>
#include <stddef.h>

#include "app/profile.h"
#include "common/strsel.h"
#include "kube/node.h"
#include "nodeswitch/drain.h"
#include "nodeswitch/record.h"

struct gm_ctl;

/* What a switch reads from its policy. When the policy is gone the
 * defaults apply (SPEC.md defaults). */
struct gm_switch_policy {
    /* Borrowed from the policy cache for the reconcile's length; NULL with
     * the defaults. Failures are reported on the policy too. */
    const char *uid;
    struct gm_drain_opts drain;
    bool hold_on_failure; /* onFailure: Hold */
    bool allow_reboot;
    bool has_vgpu_config;
    int split_count;
    double memory_scaling;
    double core_scaling;
};

void gm_switch_policy_defaults(struct gm_switch_policy *p);

/* Called when a reconcile that went asynchronous ends. requeue_ms < 0: no
 * requeue (an event will come); 0: at once; > 0: after that long. failed:
 * an API error, requeue with backoff. */
typedef void (*gm_switch_done_cb)(void *ctx, long requeue_ms, int failed);

#define GM_SWITCH_ASYNC 1

/* Reconciles one node that has a switch record (or a retry annotation, or
 * a mig layout lost to a reboot). Returns 0 with *requeue_ms set when it
 * finished at once, GM_SWITCH_ASYNC when done(ctx, ...) will be called, or
 * a negative errno. */
int gm_switch_reconcile(struct gm_ctl *ctl, const struct gm_node *node,
                        gm_switch_done_cb done, void *ctx, long *requeue_ms);

/* Starts a switch of node to mode for policy: writes the record, the state
 * label and the cordon in one patch (so nothing acts before the record is
 * on the node). layout is the agent's JSON for mig (may be NULL). */
int gm_switch_start(struct gm_ctl *ctl, const struct gm_node *node,
                    const char *policy, enum gm_mode to, const char *layout,
                    const char *strategy, const char *settings,
                    gm_switch_done_cb done, void *ctx);

/* Expected GPU resources of a mode on a node: fills names/counts (up to
 * max) and returns how many. gpus is the node's GPU count; split is
 * HAMi's split count in vgpu and the time-slicing replicas in full. */
size_t gm_switch_expected(const struct gm_profile *p, enum gm_mode m,
                          const char *layout, const char *strategy, int gpus,
                          int split, const char **names, long long *counts,
                          size_t max, char *name_buf, size_t name_buf_len);

/* Why a MIG node may offer other resources than its strategy's: the
 * plugin runs another strategy than the node's config names (the GPU
 * Operator gives it MIG_STRATEGY from the ClusterPolicy's mig.strategy,
 * and a variable outranks the config file). Writes " (...)" to why when
 * the node offers the other strategy's resources, else leaves it. */
void gm_switch_strategy_hint(const struct gm_node *n, const char *strategy,
                             char *why, size_t len);

/* The status line of a node in flight, kept in memory (not persisted). */
const char *gm_switch_message(struct gm_ctl *ctl, const char *node);

/* Whether we started a switch on node that the node cache does not show
 * yet: until it does, the node looks as if it had not started. */
bool gm_switch_start_unseen(struct gm_ctl *ctl, const char *node);

#endif
