/* Policies in the controller: a cache of GPUModePolicies and of the MIG
 * layout ConfigMap, and the policy reconcile, which asks the planner what to
 * do, starts the switches it chose (each recorded on its node before
 * anything acts) and writes the status only when it changed. */
#ifndef GM_APP_ROLLOUT_H
#define GM_APP_ROLLOUT_H

#include "app/controller.h"

struct gm_rollout;

/* ctl must outlive it. Installs itself as ctl's policy hooks. */
int gm_rollout_start(struct gm_ctl *ctl, struct gm_rollout **out);
bool gm_rollout_synced(const struct gm_rollout *r);
void gm_rollout_free(struct gm_rollout *r);
/* Its reflectors, for gpumode_watch_restarts_total (borrowed; the plugin
 * ConfigMap's is NULL when none is configured). */
void gm_rollout_reflectors(const struct gm_rollout *r,
                           const struct gm_reflector **policies,
                           const struct gm_reflector **layouts,
                           const struct gm_reflector **plugin_cms);

#define GM_POLICY_API "/apis/gpumode.io/v1alpha1/gpumodepolicies"

#endif
