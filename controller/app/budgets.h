/* PodDisruptionBudgets, watched once an eviction has been refused: a
 * refused eviction is asked again as soon as a budget in its namespace
 * allows a disruption, instead of on a timer. */
#ifndef GM_APP_BUDGETS_H
#define GM_APP_BUDGETS_H

#include "app/controller.h"

/* Starts the budget cache unless it runs already (it then runs until
 * gm_ctl_free). Returns 0 or a negative errno. */
int gm_ctl_watch_budgets(struct gm_ctl *ctl);

/* Marks up to `allowed` refused evictions in namespace due now (all of
 * them when allowed < 0) and wakes their nodes; evictions still in flight
 * are marked to be asked again at once if refused. Returns how many
 * refused evictions were made due. */
int gm_ctl_budget_freed(struct gm_ctl *ctl, const char *namespace, int allowed);

#endif
