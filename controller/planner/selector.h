/* metav1.LabelSelector semantics against a cached node's labels. */
#ifndef GM_PLANNER_SELECTOR_H
#define GM_PLANNER_SELECTOR_H

#include <stdbool.h>

#include "kube/node.h"
#include "planner/policy.h"

/* True when every requirement holds: In needs the label with one of the
 * values; NotIn holds when the label is absent or has none of them; Exists
 * and DoesNotExist look at the key only. An empty selector matches nothing:
 * a policy must never grab every node by accident. */
bool gm_selector_matches(const struct gm_selector *s, const struct gm_node *n);

/* The same test against any labelled object (pods for PodDisruptionBudget
 * selectors): lookup returns a label's value or NULL. */
typedef const char *(*gm_label_fn)(const void *obj, const char *key);
bool gm_selector_matches_fn(const struct gm_selector *s, gm_label_fn lookup,
                            const void *obj);

#endif
