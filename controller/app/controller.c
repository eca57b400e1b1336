#include "app/controller.h"
#include "app/hami.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/json.h"
#include "common/log.h"
#include "kube/node.h"
#include "kube/pod.h"
#include "nodeswitch/helperpod.h"
#include "planner/labels.h"
#include "planner/plan.h"

/* ---- cache decoders ---- */

static void *node_decode(void *ud, json_object *obj)
{
    const struct gm_ctl *ctl = ud;
    struct gm_node *n = NULL;
    gm_node_from_json(obj, &n);
    if (n) {
        n->resources_since = time(NULL); /* see node_carry */
        gm_plan_mark_resources(n, ctl->cfg->profile->vgpu_resource);
    }
    return n;
}

static void node_free(void *ud, void *obj)
{
    (void)ud;
    gm_node_free(obj);
}

static const char *node_rv(const void *obj)
{
    const char *rv = ((const struct gm_node *)obj)->resource_version;
    return rv ? rv : "";
}

static void *pod_decode(void *ud, json_object *obj)
{
    struct gm_pod *p = NULL;
    (void)ud;
    gm_pod_from_json(obj, &p);
    return p;
}

static void pod_free(void *ud, void *obj)
{
    (void)ud;
    gm_pod_free(obj);
}

static const char *pod_rv(const void *obj)
{
    const char *rv = ((const struct gm_pod *)obj)->resource_version;
    return rv ? rv : "";
}

/* ---- events: only enqueue ---- */

static void node_event(struct gm_ctl *ctl, const char *name, int plan)
{
    gm_ctl_enqueue_node(ctl, name);
    if (plan && ctl->on_node_change)
        ctl->on_node_change(ctl->policy_data, name);
}

static void node_add(void *ud, const char *key, const void *obj)
{
    (void)obj;
    node_event(ud, key, 1);
}

static int str_differ(const char *a, const char *b)
{
    return (a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0);
}

/* Does a node update change what planning reads? Kubelet status updates
 * (heartbeats, images) do not; skipping them keeps a quiet fleet of 5,000
 * nodes from re-planning every policy on every heartbeat. Label strings
 * are interned, so equal labels are equal pointers. */
static int plan_relevant(const struct gm_node *a, const struct gm_node *b)
{
    if (a->n_labels != b->n_labels || a->unschedulable != b->unschedulable ||
        a->ready != b->ready || !gm_node_same_allocatable(a, b) ||
        str_differ(a->ann_switch, b->ann_switch) ||
        str_differ(a->ann_boot_id, b->ann_boot_id) ||
        str_differ(a->ann_retry, b->ann_retry) ||
        a->ann_settings != b->ann_settings || /* interned */
        a->ann_resources != b->ann_resources || a->ann_gpus != b->ann_gpus ||
        str_differ(a->boot_id, b->boot_id))
        return 1;
    for (size_t i = 0; i < a->n_labels; i++)
        if (a->labels[i].kv != b->labels[i].kv)
            return 1;
    return 0;
}

/* Since when a node has offered other GPU resources than it was verified
 * with: only the pair of old and new shows it (node_decode stamps each
 * decode). */
static void node_carry(void *ud, const void *old, void *obj)
{
    const struct gm_ctl *ctl = ud;
    gm_plan_carry_resources_since(old, obj, ctl->cfg->profile->vgpu_resource);
}

static void node_update(void *ud, const char *key, const void *old,
                        const void *obj)
{
    node_event(ud, key, plan_relevant(old, obj));
}

bool gm_ctl_node_ours(const struct gm_node *n)
{
    const char *skip = gm_node_label(n, GM_LABEL_SKIP);
    return (gm_node_label(n, GM_LABEL_MODE) || n->ann_switch) &&
           !(skip && strcmp(skip, "true") == 0);
}

static void node_delete(void *ud, const char *key, const void *obj)
{
    struct gm_ctl *ctl = ud;
    /* A dry run writes nothing. */
    if (gm_ctl_node_ours(obj)) {
        if (ctl->dry_run)
            gm_log_kv(GM_LOG_INFO, key, NULL,
                      "dry run: would take the deleted node's keys out of "
                      "HAMi's per-node config");
        else
            gm_hami_prune(ctl->hami, key); /* out of memory: it stays */
    }
    node_event(ud, key, 1);
}

static const struct gm_reflector_ops node_ops = {
    .decode = node_decode,
    .free_obj = node_free,
    .resource_version = node_rv,
    .carry = node_carry,
    .on_add = node_add,
    .on_update = node_update,
    .on_delete = node_delete,
};

/* Pod events (helper pods and pods of switching nodes) wake the node. */
static void pod_event(struct gm_ctl *ctl, const struct gm_pod *p)
{
    if (p->node_name)
        gm_ctl_enqueue_node(ctl, p->node_name);
}

static void pod_add(void *ud, const char *key, const void *obj)
{
    (void)key;
    pod_event(ud, obj);
}

static void pod_update(void *ud, const char *key, const void *old,
                       const void *obj)
{
    (void)key;
    (void)old;
    pod_event(ud, obj);
}

static void pod_delete(void *ud, const char *key, const void *obj)
{
    (void)key;
    pod_event(ud, obj);
}

static const struct gm_reflector_ops pod_ops = {
    .decode = pod_decode,
    .free_obj = pod_free,
    .resource_version = pod_rv,
    .on_add = pod_add,
    .on_update = pod_update,
    .on_delete = pod_delete,
};

/* ---- node runtime state ---- */

static void node_state_destroy(struct gm_node_rt *ns)
{
    gm_reflector_free(ns->pods);
    for (struct gm_map_entry *e = gm_map_first(&ns->evictions); e;
         e = gm_map_next(&ns->evictions, e))
        free(e->value);
    gm_map_free(&ns->evictions);
    free(ns->name);
    free(ns);
}

struct gm_node_rt *gm_ctl_node_state(struct gm_ctl *ctl, const char *node)
{
    struct gm_node_rt *ns = gm_map_get(&ctl->node_states, node);
    if (ns)
        return ns;
    ns = calloc(1, sizeof(*ns));
    if (ns == NULL)
        return NULL;
    ns->name = strdup(node);
    gm_map_init(&ns->evictions);
    if (ns->name == NULL ||
        gm_map_put(&ctl->node_states, node, ns, NULL) != 0) {
        free(ns->name);
        free(ns);
        return NULL;
    }
    return ns;
}

struct gm_reflector *gm_ctl_node_pods(struct gm_ctl *ctl, struct gm_node_rt *ns)
{
    char field[320];
    if (ns->pods)
        return ns->pods;
    /* Only this node's pods: a switch watches its own node, which is what
     * keeps a 20,000-pod cluster out of our memory. */
    snprintf(field, sizeof(field), "spec.nodeName=%s", ns->name);
    struct gm_reflector_opts o = {.path = "/api/v1/pods",
                                  .field_selector = field};
    if (gm_reflector_start(ctl->kube, ctl->loop, &o, &pod_ops, ctl,
                           &ns->pods) != 0)
        ns->pods = NULL;
    return ns->pods;
}

void gm_ctl_node_done(struct gm_ctl *ctl, const char *node)
{
    /* Its switch is over (or the node gone): an entry still queued for
     * HAMi's ConfigMap is for a switch that will not read it. */
    gm_hami_forget(ctl->hami, node);
    struct gm_node_rt *ns = gm_map_del(&ctl->node_states, node);
    if (ns == NULL)
        return;
    if (ns->inflight > 0) {
        /* Callbacks still hold it; the last one frees it. */
        gm_reflector_free(ns->pods);
        ns->pods = NULL;
        ns->doomed = true;
        return;
    }
    node_state_destroy(ns);
}

/* ---- the queue ---- */

/* One reconcile; linked in ctl->recons until it finishes. Its done
 * callback may run after gm_ctl_free (a write cancelled when the client is
 * freed), so gm_ctl_free orphans it: ctl NULL, and finishing only frees. */
struct gm_recon {
    struct gm_ctl *ctl; /* borrowed; NULL once the controller is freed */
    char *key;          /* owned */
    struct gm_recon *prev, *next;
};

static void recon_finish(struct gm_recon *r, long requeue_ms, int failed)
{
    struct gm_ctl *ctl = r->ctl;
    if (ctl == NULL) {
        free(r->key);
        free(r);
        return;
    }
    if (r->prev)
        r->prev->next = r->next;
    else
        ctl->recons = r->next;
    if (r->next)
        r->next->prev = r->prev;
    gm_wq_done(ctl->queue, r->key);
    if (!ctl->stopping) {
        if (failed) {
            gm_wq_add_rate_limited(ctl->queue, r->key);
        } else {
            gm_wq_forget(ctl->queue, r->key);
            if (requeue_ms >= 0)
                gm_wq_add_after(ctl->queue, r->key, (uint64_t)requeue_ms);
        }
    }
    free(r->key);
    free(r);
}

static void recon_done(void *ctx, long requeue_ms, int failed)
{
    recon_finish(ctx, requeue_ms, failed);
}

static void reconcile_node(struct gm_recon *r, const char *name)
{
    struct gm_ctl *ctl = r->ctl;
    const struct gm_node *node = gm_reflector_get(ctl->nodes, name);
    long requeue = -1;

    if (node == NULL) {
        /* Gone: nothing to switch; drop what we kept for it. */
        gm_ctl_node_done(ctl, name);
        recon_finish(r, -1, 0);
        return;
    }
    int rc = gm_switch_reconcile(ctl, node, recon_done, r, &requeue);
    if (rc == GM_SWITCH_ASYNC)
        return;
    if (rc < 0) {
        gm_log_kv(GM_LOG_WARN, name, NULL, "reconcile failed: %s",
                  strerror(-rc));
        recon_finish(r, -1, 1);
        return;
    }
    recon_finish(r, requeue, 0);
}

static void reconcile_policy(struct gm_recon *r, const char *name)
{
    struct gm_ctl *ctl = r->ctl;
    long requeue = -1;
    int rc =
        ctl->reconcile_policy(ctl->policy_data, name, recon_done, r, &requeue);
    if (rc == GM_SWITCH_ASYNC)
        return;
    if (rc < 0) {
        gm_log_kv(GM_LOG_WARN, NULL, name, "reconcile failed: %s",
                  strerror(-rc));
        recon_finish(r, -1, 1);
        return;
    }
    recon_finish(r, requeue, 0);
}

static void queue_ready(void *data)
{
    struct gm_ctl *ctl = data;
    char *key;

    /* Every cache this reads, or a key could act on half the picture. Keys
     * already queued do not kick the queue again when added, so each
     * cache's on_synced (cache_synced) and gm_ctl_lead must. */
    if (!ctl->leading || !gm_ctl_synced(ctl))
        return;
    while (!ctl->stopping && gm_wq_get(ctl->queue, &key) == 0) {
        struct gm_recon *r = calloc(1, sizeof(*r));
        if (r == NULL) {
            gm_wq_done(ctl->queue, key);
            free(key);
            break;
        }
        r->ctl = ctl;
        r->key = key;
        r->next = ctl->recons;
        if (r->next)
            r->next->prev = r;
        ctl->recons = r;
        ctl->reconciles++;
        if (strncmp(key, "n/", 2) == 0)
            reconcile_node(r, key + 2);
        else if (strncmp(key, "p/", 2) == 0 && ctl->reconcile_policy)
            reconcile_policy(r, key + 2);
        else
            recon_finish(r, -1, 0);
    }
}

static void cache_synced(void *ud)
{
    struct gm_ctl *ctl = ud;
    if (gm_ctl_synced(ctl) && ctl->leading)
        queue_ready(ctl);
    gm_hami_sweep(ctl->hami);
}

void gm_ctl_enqueue_node(struct gm_ctl *ctl, const char *node)
{
    gm_ctl_enqueue_node_after(ctl, node, 0);
}

void gm_ctl_enqueue_node_after(struct gm_ctl *ctl, const char *node,
                               uint64_t delay_ms)
{
    char key[300];
    if (ctl->stopping)
        return;
    snprintf(key, sizeof(key), "n/%s", node);
    if (delay_ms == 0)
        gm_wq_add(ctl->queue, key);
    else
        gm_wq_add_after(ctl->queue, key, delay_ms);
}

void gm_ctl_enqueue_policy_after(struct gm_ctl *ctl, const char *policy,
                                 uint64_t delay_ms)
{
    char key[300];
    if (ctl->stopping)
        return;
    snprintf(key, sizeof(key), "p/%s", policy);
    gm_wq_add_after(ctl->queue, key, delay_ms);
}

void gm_ctl_enqueue_policy(struct gm_ctl *ctl, const char *policy)
{
    gm_ctl_enqueue_policy_after(ctl, policy, 0);
}

int gm_ctl_new(uv_loop_t *loop, struct gm_kube *kube,
               const struct gm_ctl_config *cfg, struct gm_ctl **out)
{
    struct gm_ctl *ctl = calloc(1, sizeof(*ctl));
    if (ctl == NULL)
        return -ENOMEM;
    ctl->loop = loop;
    ctl->kube = kube;
    ctl->cfg = cfg;
    gm_map_init(&ctl->node_states);
    int err = gm_wq_new(loop, NULL, queue_ready, ctl, &ctl->queue);
    if (err == 0) {
        err = gm_hami_new(ctl, &ctl->hami);
        if (err)
            gm_wq_free(ctl->queue);
    }
    if (err) {
        free(ctl);
        return err;
    }
    *out = ctl;
    return 0;
}

/* ---- one ConfigMap key ---- */

static void cm_entries_clear(struct gm_cm_data *d)
{
    for (struct gm_map_entry *e = gm_map_first(&d->entries); e;
         e = gm_map_next(&d->entries, e))
        free(e->value);
    gm_map_free(&d->entries);
    gm_map_init(&d->entries);
}

static void cm_free(void *ud, void *obj)
{
    struct gm_cm_data *d = obj;
    (void)ud;
    cm_entries_clear(d); /* leaves an empty map that holds no memory */
    free(d->rv);
    free(d->value);
    free(d->marks);
    free(d);
}

/* HAMi's entries as settings texts, so the planner can tell a node whose
 * entry no longer says what it was verified with. Only the values the
 * settings hold are compared (not operatingmode or other keys); a node's
 * entries add up as HAMi reads them (app/hami.h), and one that sets none
 * of them is HAMi's defaults, {}. Sets entries_known: a config HAMi
 * cannot read, or no memory, leaves the entries unknown rather than empty,
 * which would name every node. */
static void cm_entries(struct gm_cm_data *d, int default_split)
{
    json_object *cfg = NULL;
    char why[400];
    /* As HAMi reads it: the switch verifies with the same reading. */
    int err = gm_hami_config_parse(d->value, &cfg, why, sizeof(why));
    json_object *list = gm_hami_list(cfg);
    struct gm_map views; /* name -> struct gm_hami_view* (owned) */

    gm_map_init(&views);
    d->entries_known = err == 0;
    err = err == -ENOMEM ? err : 0;
    size_t n = d->entries_known ? gm_json_len(list) : 0;
    for (size_t i = 0; i < n && !err; i++) {
        json_object *e = json_object_array_get_idx(list, i);
        const char *name = gm_hami_entry_name(e);
        if (name == NULL)
            continue;
        struct gm_hami_view *v = gm_map_get(&views, name);
        if (v == NULL) {
            v = calloc(1, sizeof(*v));
            err = v ? gm_map_put(&views, name, v, NULL) : -ENOMEM;
            if (err) {
                free(v);
                break;
            }
        }
        gm_hami_view_apply(v, e);
    }
    for (struct gm_map_entry *it = gm_map_first(&views); it;
         it = gm_map_next(&views, it)) {
        struct gm_hami_view *v = it->value;
        char text[160];
        gm_plan_vgpu_settings(v->split || v->memory > 0 || v->core > 0,
                              v->split ? v->split : default_split,
                              v->memory > 0 ? v->memory : 1.0,
                              v->core > 0 ? v->core : 1.0, text, sizeof(text));
        char *copy = err ? NULL : strdup(text);
        if (!err)
            err = copy ? gm_map_put(&d->entries, it->key, copy, NULL) : -ENOMEM;
        if (err)
            free(copy);
        gm_hami_view_clear(v);
        free(v);
    }
    gm_map_free(&views);
    json_object_put(cfg);
    if (err) {
        gm_log_kv(GM_LOG_WARN, NULL, NULL, "HAMi's entries: out of memory");
        cm_entries_clear(d);
        d->entries_known = false;
    }
}

static void *cm_decode(void *ud, json_object *obj)
{
    struct gm_ctl *ctl = ud;
    struct gm_cm_data *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return NULL;
    gm_map_init(&d->entries);
    const char *rv = json_object_get_string(
        gm_json_get(gm_json_get(obj, "metadata"), "resourceVersion"));
    const char *v = json_object_get_string(
        gm_json_get(gm_json_get(obj, "data"), ctl->cfg->hami_cm.key));
    const char *marks = json_object_get_string(
        gm_json_get(gm_json_get(gm_json_get(obj, "metadata"), "annotations"),
                    GM_HAMI_MARKS));
    d->rv = strdup(rv ? rv : "");
    d->value = v ? strdup(v) : NULL;
    d->marks = marks ? strdup(marks) : NULL;
    if (d->rv == NULL || (v && d->value == NULL) ||
        (marks && d->marks == NULL)) {
        cm_free(ud, d);
        return NULL;
    }
    /* An entry without a split runs with HAMi's own deviceSplitCount,
     * which the config says (hamiDefaultSplitCount), as the switch
     * verifies with. */
    cm_entries(d, ctl->cfg->hami_default_split);
    return d;
}

static const char *cm_rv(const void *obj)
{
    return ((const struct gm_cm_data *)obj)->rv;
}

/* Whether HAMi's ConfigMap exists decides whether a vgpu split can be
 * written, and its entries whether a vgpu node still has what it was
 * verified with (planner/plan.h), so every change re-plans the policies.
 * Most are our own entries (app/hami.h), whose switches wait for them. */
static void cm_presence(void *ud, const char *key, const void *obj)
{
    struct gm_ctl *ctl = ud;
    (void)key;
    (void)obj;
    gm_hami_changed(ctl->hami);
    if (ctl->on_node_change)
        ctl->on_node_change(ctl->policy_data, NULL);
}

static void cm_update(void *ud, const char *key, const void *old,
                      const void *obj)
{
    (void)old;
    cm_presence(ud, key, obj);
}

/* The HAMi ConfigMap may be the last cache to sync: it too must kick the
 * queue then (without this, keys queued meanwhile waited for a new key). */
static void cm_synced(void *ud)
{
    struct gm_ctl *ctl = ud;
    cache_synced(ud);
    /* The writer waits for the cache: what it holds (a deleted node's
     * want) goes now. */
    gm_hami_changed(ctl->hami);
    /* Readable again after a refusal: the vgpu policies that stalled on
     * it plan anew, even when the ConfigMap turns out absent (no add). */
    if (ctl->hami_refused && ctl->on_node_change)
        ctl->on_node_change(ctl->policy_data, NULL);
    ctl->hami_refused = false;
}

/* A refused list settles the cache (gm_ctl_settled) with no on_synced: it
 * kicks the queue as a sync does, and the policies plan when the refusal
 * begins (the vgpu ones stall, saying why); ctl->hami_refused stays until
 * a list succeeds (cm_synced plans them again). A list that failed
 * otherwise unsettles the cache: keys wait for the next answer. */
static void cm_list_failed(void *ud)
{
    struct gm_ctl *ctl = ud;
    if (gm_reflector_has_synced(ctl->hami_cm) || !gm_ctl_settled(ctl->hami_cm))
        return;
    cache_synced(ud);
    if (!ctl->hami_refused && ctl->on_node_change)
        ctl->on_node_change(ctl->policy_data, NULL);
    ctl->hami_refused = true;
}

static const struct gm_reflector_ops cm_ops = {
    .decode = cm_decode,
    .free_obj = cm_free,
    .resource_version = cm_rv,
    .on_add = cm_presence,
    .on_update = cm_update,
    .on_delete = cm_presence,
    .on_synced = cm_synced,
    .on_list_failed = cm_list_failed,
};

const char *gm_ctl_hami_config(const struct gm_ctl *ctl, const char **rv,
                               bool *exists)
{
    const struct gm_map *m = gm_reflector_items(ctl->hami_cm);
    struct gm_map_entry *e = gm_map_first(m);
    *exists = e != NULL;
    if (e == NULL)
        return NULL;
    const struct gm_cm_data *d = e->value;
    *rv = d->rv;
    return d->value;
}

const char *gm_ctl_hami_marks(const struct gm_ctl *ctl)
{
    struct gm_map_entry *e = gm_map_first(gm_reflector_items(ctl->hami_cm));
    return e ? ((const struct gm_cm_data *)e->value)->marks : NULL;
}

const struct gm_map *gm_ctl_hami_entries(const struct gm_ctl *ctl)
{
    struct gm_map_entry *e = gm_map_first(gm_reflector_items(ctl->hami_cm));
    const struct gm_cm_data *d = e ? e->value : NULL;
    return d && d->entries_known ? &d->entries : NULL;
}

bool gm_ctl_settled(const struct gm_reflector *r)
{
    struct gm_reflector_stats st;
    if (r == NULL || gm_reflector_has_synced(r))
        return true;
    gm_reflector_get_stats(r, &st);
    return st.list_refused != 0;
}

bool gm_ctl_refused(const struct gm_reflector *r, char *buf, size_t size)
{
    struct gm_reflector_stats st;
    if (r == NULL || gm_reflector_has_synced(r))
        return false;
    gm_reflector_get_stats(r, &st);
    if (st.list_refused == 0)
        return false;
    snprintf(buf, size,
             "the controller may not read it (%s; it needs list and watch on "
             "it: rbac.yaml)",
             st.last_error ? st.last_error : "refused");
    return true;
}

bool gm_ctl_hami_refused(const struct gm_ctl *ctl, char *buf, size_t size)
{
    return gm_ctl_refused(ctl->hami_cm, buf, size);
}

static struct gm_reflector_ops node_ops_synced;
static struct gm_reflector_ops helper_ops_synced;

int gm_ctl_start(struct gm_ctl *ctl)
{
    char path[256];
    int err;

    node_ops_synced = node_ops;
    node_ops_synced.on_synced = cache_synced;
    helper_ops_synced = pod_ops;
    helper_ops_synced.on_synced = cache_synced;
    struct gm_reflector_opts no = {.path = "/api/v1/nodes"};
    err = gm_reflector_start(ctl->kube, ctl->loop, &no, &node_ops_synced, ctl,
                             &ctl->nodes);
    if (err)
        return err;
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods",
             ctl->cfg->namespace);
    struct gm_reflector_opts ho = {
        .path = path,
        .label_selector = GM_HELPER_LABEL_KEY "=" GM_HELPER_LABEL_VALUE,
    };
    err = gm_reflector_start(ctl->kube, ctl->loop, &ho, &helper_ops_synced, ctl,
                             &ctl->helpers);
    if (err)
        return err;
    char cm_path[256], cm_field[320];
    snprintf(cm_path, sizeof(cm_path), "/api/v1/namespaces/%s/configmaps",
             ctl->cfg->hami_cm.namespace);
    snprintf(cm_field, sizeof(cm_field), "metadata.name=%s",
             ctl->cfg->hami_cm.name);
    struct gm_reflector_opts co = {.path = cm_path, .field_selector = cm_field};
    return gm_reflector_start(ctl->kube, ctl->loop, &co, &cm_ops, ctl,
                              &ctl->hami_cm);
}

void gm_ctl_lead(struct gm_ctl *ctl)
{
    /* Leadership won during shutdown is released, not used. */
    if (ctl->stopping)
        return;
    ctl->leading = true;
    /* Deleted nodes' entries a standby saw go now, and those of nodes
     * deleted while none ran. */
    gm_hami_changed(ctl->hami);
    gm_hami_sweep(ctl->hami);
    if (gm_ctl_synced(ctl)) {
        const struct gm_map *m = gm_reflector_items(ctl->nodes);
        for (struct gm_map_entry *e = gm_map_first(m); e; e = gm_map_next(m, e))
            gm_ctl_enqueue_node(ctl, e->key);
        if (ctl->on_node_change)
            ctl->on_node_change(ctl->policy_data, NULL);
    }
    queue_ready(ctl);
}

void gm_ctl_stop_work(struct gm_ctl *ctl)
{
    ctl->leading = false;
    ctl->stopping = true;
}

bool gm_ctl_synced(const struct gm_ctl *ctl)
{
    return ctl->nodes && ctl->helpers && ctl->hami_cm &&
           gm_reflector_has_synced(ctl->nodes) &&
           gm_reflector_has_synced(ctl->helpers) &&
           gm_ctl_settled(ctl->hami_cm);
}

void gm_ctl_free(struct gm_ctl *ctl)
{
    if (ctl == NULL)
        return;
    ctl->stopping = true;
    gm_reflector_free(ctl->nodes);
    gm_reflector_free(ctl->helpers);
    gm_reflector_free(ctl->hami_cm);
    gm_reflector_free(ctl->budgets);
    for (struct gm_map_entry *e = gm_map_first(&ctl->node_states); e;
         e = gm_map_next(&ctl->node_states, e)) {
        struct gm_node_rt *ns = e->value;
        if (ns->inflight > 0) {
            gm_reflector_free(ns->pods);
            ns->pods = NULL;
            ns->doomed = true;
        } else {
            node_state_destroy(ns);
        }
    }
    gm_map_free(&ctl->node_states);
    for (struct gm_recon *r = ctl->recons; r; r = r->next)
        r->ctl = NULL;
    gm_hami_free(ctl->hami);
    gm_wq_free(ctl->queue);
    free(ctl);
}

void gm_ctl_node_state_release(struct gm_node_rt *ns)
{
    if (--ns->inflight == 0 && ns->doomed)
        node_state_destroy(ns);
}
