#include "planner/assign.h"

#include <string.h>

#include "planner/labels.h"
#include "planner/selector.h"

bool gm_node_skipped(const struct gm_node *n)
{
    const char *v = gm_node_label(n, GM_LABEL_SKIP);

    return v != NULL && strcmp(v, "true") == 0;
}

bool gm_node_shows_gpu(const struct gm_node *n)
{
    /* Set by gpumode, or by feature discovery on GPU nodes only. */
    static const char *const labels[] = {
        GM_LABEL_MODE,
        GM_LABEL_STATE,
        "nvidia.com/gpu.count",
        "nvidia.com/gpu.product",
    };
    /* NFD's and the GPU Operator's, which are "true" when they hold. */
    static const char *const flags[] = {
        "nvidia.com/gpu.present",
        "feature.node.kubernetes.io/pci-10de.present",
    };

    if (n->ann_switch != NULL)
        return true;
    for (size_t i = 0; i < sizeof(labels) / sizeof(labels[0]); i++)
        if (gm_node_label(n, labels[i]) != NULL)
            return true;
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
        const char *v = gm_node_label(n, flags[i]);
        if (v != NULL && strcmp(v, "true") == 0)
            return true;
    }
    /* The cache keeps only GPU resources. */
    for (size_t i = 0; i < n->n_allocatable; i++)
        if (n->allocatable[i].value > 0)
            return true;
    return false;
}

void gm_assign_node(const struct gm_node *n,
                    const struct gm_policy *const *policies, size_t n_policies,
                    struct gm_assignment *out)
{
    const struct gm_policy *best = NULL;

    memset(out, 0, sizeof(*out));
    if (gm_node_skipped(n)) {
        out->kind = GM_ASSIGN_SKIPPED;
        return;
    }
    if (!gm_node_shows_gpu(n)) {
        out->kind = GM_ASSIGN_NO_GPU;
        return;
    }
    for (size_t i = 0; i < n_policies; i++) {
        const struct gm_policy *p = policies[i];
        if (!p->valid || !gm_selector_matches(&p->spec.selector, n))
            continue;
        if (best == NULL || p->spec.priority > best->spec.priority) {
            best = p;
            out->n_tied = 0;
        }
        if (p->spec.priority == best->spec.priority) {
            if (out->n_tied < GM_ASSIGN_MAX_TIED)
                out->tied[out->n_tied] = p;
            out->n_tied++;
        }
    }
    if (best == NULL) {
        out->kind = GM_ASSIGN_NONE;
    } else if (out->n_tied > 1) {
        out->kind = GM_ASSIGN_CONFLICT;
    } else {
        out->kind = GM_ASSIGN_OWNED;
        out->owner = best;
        out->n_tied = 0;
        out->tied[0] = NULL;
    }
}
