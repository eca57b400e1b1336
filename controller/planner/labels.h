/* The node contract's label keys (SPEC.md, "Node contract"). Lookups use
 * gm_node_label from kube/node.h. */
#ifndef GM_PLANNER_LABELS_H
#define GM_PLANNER_LABELS_H

#include "kube/node.h"

#define GM_LABEL_MODE "gpumode.io/mode"
#define GM_LABEL_STATE "gpumode.io/state"
#define GM_LABEL_SKIP "gpumode.io/skip"
#define GM_LABEL_PRODUCT "nvidia.com/gpu.product"
#define GM_LABEL_GPU_COUNT "nvidia.com/gpu.count"

#endif
