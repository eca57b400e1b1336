#include "planner/labels.h"

#include <string.h>

const char *gm_planner_label(const struct gm_node *n, const char *key)
{
    size_t lo = 0;
    size_t hi = n->n_labels;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(n->labels[mid].key, key);
        if (c == 0)
            return n->labels[mid].value;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}
