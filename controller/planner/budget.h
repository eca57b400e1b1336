/* Rollout arithmetic: how many new switches a policy may start now. Kept
 * apart from plan.c so the numbers can be tested on their own. */
#ifndef GM_PLANNER_BUDGET_H
#define GM_PLANNER_BUDGET_H

#include <stdbool.h>

#include "planner/policy.h"

struct gm_budget_input {
    int matched;     /* nodes the policy governs */
    int unavailable; /* governed nodes cordoned or NotReady, not by a
                      * switch: they count against maxUnavailable */
    int in_flight;   /* governed nodes with a switch in flight */
    int failed;      /* governed nodes in gpumode.io/state=failed */
};

struct gm_budget {
    int limit;    /* maxUnavailable resolved against matched */
    int used;     /* unavailable + in_flight */
    int slots;    /* new switches that may start: max(0, limit - used),
                   * 0 when paused or stalled */
    bool paused;  /* spec.rollout.paused */
    bool stalled; /* failed >= maxFailures: no new switch starts */
};

/* maxUnavailable as a node count: an integer as is; a percentage of
 * matched rounded down; never below 1, so a small pool still moves. */
int gm_budget_limit(const struct gm_policy_spec *s, int matched);

void gm_budget_compute(const struct gm_policy_spec *s,
                       const struct gm_budget_input *in, struct gm_budget *out);

#endif
