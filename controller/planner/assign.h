/* Which policy governs a node. Every node has at most one owner: the
 * matching policy with the highest priority. A tie at the top is a conflict
 * that a person must resolve, so none of the tied policies acts on the node
 * and each of them reports it. */
#ifndef GM_PLANNER_ASSIGN_H
#define GM_PLANNER_ASSIGN_H

#include <stddef.h>

#include "kube/node.h"
#include "planner/policy.h"

enum gm_assign_kind {
    GM_ASSIGN_NONE = 0, /* no valid policy selects the node */
    GM_ASSIGN_SKIPPED,  /* gpumode.io/skip=true: never touched */
    GM_ASSIGN_NO_GPU,   /* shows no GPU (gm_node_shows_gpu): never touched */
    GM_ASSIGN_OWNED,    /* exactly one policy has the highest priority */
    GM_ASSIGN_CONFLICT, /* two or more share the highest priority */
};

/* How many tied policies an assignment names; more are counted only. */
#define GM_ASSIGN_MAX_TIED 8

struct gm_assignment {
    enum gm_assign_kind kind;
    const struct gm_policy *owner; /* borrowed; set when OWNED */
    /* When CONFLICT: the tied policies (borrowed), in the order given. */
    const struct gm_policy *tied[GM_ASSIGN_MAX_TIED];
    size_t n_tied; /* may exceed GM_ASSIGN_MAX_TIED */
};

/* Decides the owner of node n among policies[0..n_policies). Policies that
 * failed to decode (valid false) select nothing. Pure: reads only. */
void gm_assign_node(const struct gm_node *n,
                    const struct gm_policy *const *policies, size_t n_policies,
                    struct gm_assignment *out);

/* True when the node carries gpumode.io/skip=true. */
bool gm_node_skipped(const struct gm_node *n);
/* True when the node shows a GPU: gpumode's own label or switch record,
 * a feature-discovery label (nvidia.com/gpu.present, .count, .product, or
 * NFD's PCI vendor 10de), or a GPU resource offered. A selector such as
 * "pool NotIn (training)" also matches CPU and control-plane nodes; they
 * must never be cordoned and drained for a GPU switch. */
bool gm_node_shows_gpu(const struct gm_node *n);

#endif
