/* What the controller tells the outside while it works: Kubernetes events
 * on nodes and policies, and Prometheus metrics. Every function is a no-op
 * when the controller has no recorder or registry (tests, tools). */
#ifndef GM_APP_OBSERVE_H
#define GM_APP_OBSERVE_H

#include "app/controller.h"
#include "server/events.h"
#include "server/metrics.h"

void gm_obs_node_event(struct gm_ctl *ctl, const struct gm_node *node,
                       enum gm_event_type type, const char *reason,
                       const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* An event about ref with its note written already. */
void gm_obs_event(struct gm_ctl *ctl, const struct gm_event_ref *ref,
                  enum gm_event_type type, const char *reason,
                  const char *note);
void gm_obs_policy_event(struct gm_ctl *ctl, const char *policy,
                         const char *uid, enum gm_event_type type,
                         const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* A switch ended: result is "succeeded", "failed" or "rolledback". */
void gm_obs_switch_done(struct gm_ctl *ctl, const char *from, const char *to,
                        const char *result, double seconds);
void gm_obs_phase_done(struct gm_ctl *ctl, const char *phase, double seconds);
/* Sets gpumode_nodes_resources_differ{policy} from counts (policy name ->
 * int, borrowed), dropping the series of policies not in it. */
void gm_obs_resources_differ(struct gm_ctl *ctl, const struct gm_map *counts);

struct gm_rollout;

/* Periodic gauges: nodes by mode and state, queue depth, watch restarts
 * (of ctl's reflectors and of rollout's when it is not NULL; it must
 * outlive the timer). Starts a timer on the loop; gm_obs_stop ends it. */
int gm_obs_start(struct gm_ctl *ctl, const struct gm_rollout *rollout,
                 uint64_t interval_ms);
void gm_obs_stop(struct gm_ctl *ctl);

/* Fits gm_kube_opts.on_response. */
void gm_obs_api_response(void *metrics, const char *method, long status);

#endif
