#include "planner/budget.h"

#include <stdint.h>

int gm_budget_limit(const struct gm_policy_spec *s, int matched)
{
    int64_t limit = s->max_unavailable;

    if (s->max_unavailable_percent)
        limit = (int64_t)matched * s->max_unavailable / 100;
    if (limit < 1)
        limit = 1;
    return (int)limit;
}

void gm_budget_compute(const struct gm_policy_spec *s,
                       const struct gm_budget_input *in, struct gm_budget *out)
{
    out->limit = gm_budget_limit(s, in->matched);
    out->used = in->unavailable + in->in_flight;
    out->paused = s->paused;
    out->stalled = in->failed >= s->max_failures;
    out->slots = out->limit - out->used;
    if (out->slots < 0 || out->paused || out->stalled)
        out->slots = 0;
}
