#include "app/budgets.h"

#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "kube/reflector.h"

/* The cached form: all we read of a budget. */
struct budget {
    char *namespace; /* owned */
    char *rv;        /* owned */
    int allowed;     /* status.disruptionsAllowed */
};

static void budget_free(void *ud, void *obj)
{
    struct budget *b = obj;
    (void)ud;
    if (b == NULL)
        return;
    free(b->namespace);
    free(b->rv);
    free(b);
}

static void *budget_decode(void *ud, json_object *obj)
{
    json_object *meta = gm_json_get(obj, "metadata");
    const char *ns = gm_json_str(meta, "namespace");
    const char *rv = gm_json_str(meta, "resourceVersion");
    (void)ud;
    if (ns == NULL || rv == NULL)
        return NULL;
    struct budget *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    b->namespace = strdup(ns);
    b->rv = strdup(rv);
    b->allowed = json_object_get_int(
        gm_json_get(gm_json_get(obj, "status"), "disruptionsAllowed"));
    if (b->namespace == NULL || b->rv == NULL) {
        budget_free(ud, b);
        return NULL;
    }
    return b;
}

static const char *budget_rv(const void *obj)
{
    return ((const struct budget *)obj)->rv;
}

static void budget_add(void *ud, const char *key, const void *obj)
{
    const struct budget *b = obj;
    (void)key;
    if (b->allowed > 0)
        gm_ctl_budget_freed(ud, b->namespace, b->allowed);
}

static void budget_update(void *ud, const char *key, const void *old,
                          const void *obj)
{
    (void)old;
    budget_add(ud, key, obj);
}

static void budget_delete(void *ud, const char *key, const void *obj)
{
    const struct budget *b = obj;
    (void)key;
    /* One budget fewer: whatever it held may go now (another budget of
     * the namespace answers 429 again if it still objects). */
    gm_ctl_budget_freed(ud, b->namespace, -1);
}

static const struct gm_reflector_ops budget_ops = {
    .decode = budget_decode,
    .free_obj = budget_free,
    .resource_version = budget_rv,
    .on_add = budget_add,
    .on_update = budget_update,
    .on_delete = budget_delete,
};

int gm_ctl_watch_budgets(struct gm_ctl *ctl)
{
    if (ctl->budgets)
        return 0;
    struct gm_reflector_opts o = {.path =
                                      "/apis/policy/v1/poddisruptionbudgets"};
    int err = gm_reflector_start(ctl->kube, ctl->loop, &o, &budget_ops, ctl,
                                 &ctl->budgets);
    if (err)
        ctl->budgets = NULL;
    return err;
}

int gm_ctl_budget_freed(struct gm_ctl *ctl, const char *namespace, int allowed)
{
    uint64_t now = uv_now(ctl->loop);
    int n = 0;

    if (ctl->stopping)
        return 0;
    for (struct gm_map_entry *it = gm_map_first(&ctl->node_states); it;
         it = gm_map_next(&ctl->node_states, it)) {
        struct gm_node_rt *ns = it->value;
        int woke = 0;
        for (struct gm_map_entry *e = gm_map_first(&ns->evictions); e;
             e = gm_map_next(&ns->evictions, e)) {
            struct gm_eviction *ev = e->value;
            if (strcmp(ev->namespace, namespace) != 0)
                continue;
            if (ev->sent) {
                /* Its answer may have been decided before this change;
                 * evict_done retries a refusal at once. Not counted: the
                 * allowance goes first to evictions known to wait. */
                ev->freed_in_flight = 1;
                continue;
            }
            if (ev->blocked != GM_EVICT_BUDGET ||
                (allowed >= 0 && n >= allowed))
                continue;
            ev->next_try_ms = now;
            n++;
            woke = 1;
        }
        if (woke)
            gm_ctl_enqueue_node(ctl, ns->name);
    }
    return n;
}
