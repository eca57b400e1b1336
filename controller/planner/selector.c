#include "planner/selector.h"

#include <string.h>

#include "planner/labels.h"

static bool has_value(const struct gm_sel_req *r, const char *v)
{
    for (size_t i = 0; i < r->n_values; i++)
        if (strcmp(r->values[i], v) == 0)
            return true;
    return false;
}

static bool req_matches(const struct gm_sel_req *r, gm_label_fn lookup,
                        const void *obj)
{
    const char *v = lookup(obj, r->key);

    switch (r->op) {
    case GM_SEL_IN:
        return v != NULL && has_value(r, v);
    case GM_SEL_NOT_IN:
        return v == NULL || !has_value(r, v);
    case GM_SEL_EXISTS:
        return v != NULL;
    case GM_SEL_DOES_NOT_EXIST:
        return v == NULL;
    }
    return false;
}

bool gm_selector_matches_fn(const struct gm_selector *s, gm_label_fn lookup,
                            const void *obj)
{
    if (s->n_reqs == 0)
        return false;
    for (size_t i = 0; i < s->n_reqs; i++)
        if (!req_matches(&s->reqs[i], lookup, obj))
            return false;
    return true;
}

static const char *node_lookup(const void *obj, const char *key)
{
    return gm_node_label(obj, key);
}

bool gm_selector_matches(const struct gm_selector *s, const struct gm_node *n)
{
    return gm_selector_matches_fn(s, node_lookup, n);
}
