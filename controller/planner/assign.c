#include "planner/assign.h"

#include <string.h>

#include "planner/labels.h"
#include "planner/selector.h"

bool gm_node_skipped(const struct gm_node *n)
{
    const char *v = gm_node_label(n, GM_LABEL_SKIP);

    return v != NULL && strcmp(v, "true") == 0;
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
