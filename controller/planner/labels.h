/* Label lookups on the compact cached node, and the node contract's keys.
 * The planner keeps its own lookup so it does not depend on node.c; the two
 * agree because both rely on node.h's promise that labels are sorted. */
#ifndef GM_PLANNER_LABELS_H
#define GM_PLANNER_LABELS_H

#include "kube/node.h"

#define GM_LABEL_MODE "gpumode.io/mode"
#define GM_LABEL_STATE "gpumode.io/state"
#define GM_LABEL_SKIP "gpumode.io/skip"
#define GM_LABEL_PRODUCT "nvidia.com/gpu.product"
#define GM_LABEL_GPU_COUNT "nvidia.com/gpu.count"

/* NULL when absent. Binary search over n->labels (sorted by key, strcmp). */
const char *gm_planner_label(const struct gm_node *n, const char *key);

#endif
