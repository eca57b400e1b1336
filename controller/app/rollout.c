#include "app/rollout.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/observe.h"
#include "app/policyopts.h"
#include "common/json.h"
#include "common/log.h"
#include "planner/assign.h"
#include "planner/plan.h"
#include "planner/status.h"

/* A cached policy with its drain selectors parsed once. */
struct entry {
    struct gm_policy *p;        /* owned */
    struct gm_policy_sels sels; /* owned; sels.error: one did not parse */
};

/* The MIG layout ConfigMap, parsed. */
struct layouts {
    char *rv;               /* owned */
    struct gm_migparted *m; /* owned or NULL */
    char error[512];        /* why m is NULL */
};

/* The device plugin's config ConfigMap, parsed. */
struct plugin_cm {
    char *rv; /* owned */
    struct gm_plugin_configs c;
};

/* Status writes of one policy are at most one per STATUS_INTERVAL_MS. In a
 * rollout some node changes phase many times a second, and every write
 * sends up to 256 node entries to the API server, etcd and each watcher;
 * a later pass writes what changed meanwhile, so nothing is lost. */
#define STATUS_INTERVAL_MS 1000

struct gm_rollout {
    struct gm_ctl *ctl;
    struct gm_reflector *policies; /* struct entry */
    struct gm_reflector *cms;      /* struct layouts */
    /* struct plugin_cm; NULL when devicePluginConfigMap names none */
    struct gm_reflector *plugin_cms;
    struct gm_plugin_configs plugin_absent; /* what a missing one gives */
    struct gm_plugin_configs plugin_unread; /* before a list succeeded */
    struct gm_map written; /* policy name -> owned uint64_t: loop
                              time of its last status write */
    struct gm_map differ;  /* policy name -> owned int: nodes its
                              last plan named for offering other
                              GPU resources */
    /* "ConfigMap NS/NAME": namespaces are at most 63 bytes, names 253. */
    char source[400];
    char hami_source[400];   /* HAMi's per-node config */
    char plugin_source[400]; /* the device plugin's configs */
};

/* One policy reconcile that went asynchronous: starts and a status write
 * in flight; done runs when the last ends. */
struct pass {
    struct gm_rollout *r;
    gm_switch_done_cb done;
    void *ctx;
    int pending;
    int failed;
    long requeue_ms;
};

/* ---- caches ---- */

static void *policy_decode(void *ud, json_object *obj)
{
    struct entry *e = calloc(1, sizeof(*e));
    (void)ud;
    if (e == NULL)
        return NULL;
    gm_policy_decode(obj, &e->p);
    if (e->p == NULL) {
        free(e);
        return NULL;
    }
    if (e->p->valid)
        gm_policy_sels_parse(e->p, &e->sels);
    return e;
}

static void policy_free(void *ud, void *obj)
{
    struct entry *e = obj;
    (void)ud;
    gm_policy_free(e->p);
    gm_policy_sels_clear(&e->sels);
    free(e);
}

static const char *policy_rv(const void *obj)
{
    const struct entry *e = obj;
    return e->p->resource_version ? e->p->resource_version : "";
}

static void policy_changed(void *ud, const char *key, const void *obj)
{
    struct gm_rollout *r = ud;
    (void)obj;
    gm_ctl_enqueue_policy(r->ctl, key);
}

static void policy_update(void *ud, const char *key, const void *old,
                          const void *obj)
{
    (void)old;
    policy_changed(ud, key, obj);
}

static void enqueue_all(struct gm_rollout *r)
{
    if (r->policies == NULL)
        return;
    const struct gm_map *m = gm_reflector_items(r->policies);
    for (struct gm_map_entry *e = gm_map_first(m); e; e = gm_map_next(m, e))
        gm_ctl_enqueue_policy(r->ctl, e->key);
}

/* gpumode_nodes_resources_differ{policy}: a series per policy, from its
 * last plan; a deleted policy's (count < 0) goes. */
static void publish_differ(struct gm_rollout *r, const char *name, int count)
{
    int *v = gm_map_get(&r->differ, name);

    if (count < 0) {
        if (v == NULL)
            return;
        free(gm_map_del(&r->differ, name));
    } else if (v == NULL) {
        v = malloc(sizeof(*v));
        if (v == NULL || gm_map_put(&r->differ, name, v, NULL) != 0) {
            free(v);
            return;
        }
        *v = count;
    } else if (*v == count) {
        return;
    } else {
        *v = count;
    }
    gm_obs_resources_differ(r->ctl, &r->differ);
}

static void policy_delete(void *ud, const char *key, const void *obj)
{
    struct gm_rollout *r = ud;
    (void)obj;
    free(gm_map_del(&r->written, key));
    publish_differ(r, key, -1);
    /* Nodes the policy governed may now belong to another one. */
    enqueue_all(r);
}

static const struct gm_reflector_ops policy_ops = {
    .decode = policy_decode,
    .free_obj = policy_free,
    .resource_version = policy_rv,
    .on_add = policy_changed,
    .on_update = policy_update,
    .on_delete = policy_delete,
};

static void *cm_decode(void *ud, json_object *obj)
{
    struct gm_rollout *r = ud;
    struct layouts *l = calloc(1, sizeof(*l));
    const char *key = r->ctl->cfg->mig_cm.key;
    if (l == NULL)
        return NULL;
    const char *rv = json_object_get_string(
        gm_json_get(gm_json_get(obj, "metadata"), "resourceVersion"));
    l->rv = strdup(rv ? rv : "");
    gm_layouts_from_configmap(obj, key, r->source, &l->m, l->error,
                              sizeof(l->error));
    return l;
}

static void cm_free(void *ud, void *obj)
{
    struct layouts *l = obj;
    (void)ud;
    gm_migparted_free(l->m);
    free(l->rv);
    free(l);
}

static const char *cm_rv(const void *obj)
{
    const struct layouts *l = obj;
    return l->rv ? l->rv : "";
}

static void cm_event(void *ud, const char *key, const void *obj)
{
    (void)key;
    (void)obj;
    enqueue_all(ud);
}

static void cm_update(void *ud, const char *key, const void *old,
                      const void *obj)
{
    (void)old;
    cm_event(ud, key, obj);
}

static const struct gm_reflector_ops cm_ops = {
    .decode = cm_decode,
    .free_obj = cm_free,
    .resource_version = cm_rv,
    .on_add = cm_event,
    .on_update = cm_update,
    .on_delete = cm_event,
};

static void *plugin_cm_decode(void *ud, json_object *obj)
{
    struct plugin_cm *pc = calloc(1, sizeof(*pc));
    (void)ud;
    if (pc == NULL)
        return NULL;
    const char *rv = json_object_get_string(
        gm_json_get(gm_json_get(obj, "metadata"), "resourceVersion"));
    pc->rv = strdup(rv ? rv : "");
    if (pc->rv == NULL || gm_plugin_configs_parse(obj, &pc->c)) {
        gm_plugin_configs_free(&pc->c);
        free(pc->rv);
        free(pc);
        return NULL;
    }
    return pc;
}

static void plugin_cm_free(void *ud, void *obj)
{
    struct plugin_cm *pc = obj;
    (void)ud;
    gm_plugin_configs_free(&pc->c);
    free(pc->rv);
    free(pc);
}

static const char *plugin_cm_rv(const void *obj)
{
    const struct plugin_cm *pc = obj;
    return pc->rv;
}

/* Listed at last (RBAC fixed, say): plan again, also when it does not
 * exist (no add event then). */
static void plugin_cm_synced(void *ud)
{
    enqueue_all(ud);
}

static const struct gm_reflector_ops plugin_cm_ops = {
    .decode = plugin_cm_decode,
    .free_obj = plugin_cm_free,
    .resource_version = plugin_cm_rv,
    .on_add = cm_event,
    .on_update = cm_update,
    .on_delete = cm_event,
    .on_synced = plugin_cm_synced,
};

/* The device plugin's configs as cached, or NULL when not checked. */
static const struct gm_plugin_configs *plugin_configs(struct gm_rollout *r)
{
    if (r->plugin_cms == NULL)
        return NULL;
    if (!gm_reflector_has_synced(r->plugin_cms))
        return &r->plugin_unread;
    struct gm_map_entry *e = gm_map_first(gm_reflector_items(r->plugin_cms));
    return e ? &((const struct plugin_cm *)e->value)->c : &r->plugin_absent;
}

/* ---- hooks for the switch ---- */

static int policy_for(void *data, const char *name, struct gm_switch_policy *o)
{
    struct gm_rollout *r = data;
    /* Not listed yet (a restart): "gone" would be a guess. */
    if (!gm_reflector_has_synced(r->policies))
        return -EAGAIN;
    const struct entry *e = name ? gm_reflector_get(r->policies, name) : NULL;
    if (e == NULL || !e->p->valid)
        return -ENOENT; /* gone or invalid: the defaults stand */
    gm_policy_switch_opts(e->p, &e->sels, o);
    /* A pod selector that did not parse is missing from o: a drain would
     * evict every pod and wait for none, so the switch cancels it; past
     * the drain the rest of the policy still applies. */
    return e->sels.error[0] ? -EBADMSG : 0;
}

static int governed(void *data, const struct gm_node *node)
{
    struct gm_rollout *r = data;
    if (!gm_reflector_has_synced(r->policies))
        return -EAGAIN;
    const struct gm_map *pm = gm_reflector_items(r->policies);
    const struct gm_policy **pols = calloc(pm->len + 1, sizeof(*pols));
    size_t n = 0;
    if (pols == NULL)
        return -ENOMEM;
    for (struct gm_map_entry *e = gm_map_first(pm); e; e = gm_map_next(pm, e)) {
        const struct entry *en = e->value;
        if (en->p->valid)
            pols[n++] = en->p;
    }
    struct gm_assignment a;
    gm_assign_node(node, pols, n, &a);
    free(pols);
    return a.kind == GM_ASSIGN_OWNED || a.kind == GM_ASSIGN_CONFLICT;
}

static void node_changed(void *data, const char *node)
{
    (void)node;
    enqueue_all(data);
}

/* ---- the policy reconcile ---- */

static void pass_end(struct pass *p)
{
    if (--p->pending > 0)
        return;
    p->done(p->ctx, p->requeue_ms, p->failed);
    free(p);
}

/* A start whose write met 409 asks to be looked at again: the newer node
 * may differ only in its status, which does not re-plan by itself. */
static void start_done(void *ctx, long requeue_ms, int failed)
{
    struct pass *p = ctx;
    p->failed |= failed;
    if (requeue_ms >= 0 && (p->requeue_ms < 0 || requeue_ms < p->requeue_ms))
        p->requeue_ms = requeue_ms;
    pass_end(p);
}

static void status_done(void *data, const struct gm_kube_resp *resp)
{
    struct pass *p = data;
    if (resp->error && resp->error->err != -ECANCELED) {
        gm_log_kv(GM_LOG_WARN, NULL, NULL, "status write failed: %s: %s",
                  resp->error->reason, resp->error->message);
        p->failed = 1;
    }
    pass_end(p);
}

/* A merge patch replacing status: keys the old status had and the new one
 * lacks are set to null, or the server would keep them. */
static char *status_patch(const struct gm_policy *pol, json_object *status)
{
    json_object *patch = json_object_new_object();
    json_object *st = json_object_get(status);
    if (pol->status && json_object_is_type(pol->status, json_type_object)) {
        json_object_object_foreach(pol->status, k, v)
        {
            (void)v;
            if (!json_object_object_get_ex(st, k, NULL))
                json_object_object_add(st, k, NULL);
        }
    }
    json_object_object_add(patch, "status", st);
    char *s =
        strdup(json_object_to_json_string_ext(patch, JSON_C_TO_STRING_PLAIN));
    json_object_put(patch);
    return s;
}

static int write_status(struct gm_rollout *r, struct pass *pass,
                        const struct gm_policy *pol, json_object *status)
{
    char path[512];
    if (!gm_status_changed(pol, status))
        return 0;
    uint64_t now = uv_now(r->ctl->loop);
    uint64_t *last = gm_map_get(&r->written, pol->name);
    if (last && now < *last + STATUS_INTERVAL_MS) {
        long wait = (long)(*last + STATUS_INTERVAL_MS - now);
        if (pass->requeue_ms < 0 || wait < pass->requeue_ms)
            pass->requeue_ms = wait;
        return 0;
    }
    if (last == NULL) {
        last = malloc(sizeof(*last));
        if (last == NULL || gm_map_put(&r->written, pol->name, last, NULL)) {
            free(last);
            return -ENOMEM;
        }
    }
    *last = now;
    char *body = status_patch(pol, status);
    if (body == NULL)
        return -ENOMEM;
    if (r->ctl->dry_run) {
        gm_log_kv(GM_LOG_INFO, NULL, pol->name, "dry run: status %s", body);
        free(body);
        return 0;
    }
    snprintf(path, sizeof(path), GM_POLICY_API "/%s/status", pol->name);
    int err = gm_kube_patch(r->ctl->kube, path, GM_PATCH_MERGE, body, NULL, 0,
                            status_done, pass);
    free(body);
    if (err == 0)
        pass->pending++;
    return err;
}

static int collect(struct gm_rollout *r, const struct gm_node ***nodes,
                   size_t *n_nodes, const struct gm_policy ***pols,
                   size_t *n_pols)
{
    const struct gm_map *nm = gm_reflector_items(r->ctl->nodes);
    const struct gm_map *pm = gm_reflector_items(r->policies);
    size_t i = 0;

    *nodes = calloc(nm->len + 1, sizeof(**nodes));
    *pols = calloc(pm->len + 1, sizeof(**pols));
    if (*nodes == NULL || *pols == NULL) {
        free(*nodes);
        free(*pols);
        return -ENOMEM;
    }
    for (struct gm_map_entry *e = gm_map_first(nm); e; e = gm_map_next(nm, e))
        (*nodes)[i++] = e->value;
    *n_nodes = i;
    i = 0;
    for (struct gm_map_entry *e = gm_map_first(pm); e; e = gm_map_next(pm, e)) {
        const struct entry *en = e->value;
        if (en->p->valid)
            (*pols)[i++] = en->p;
    }
    *n_pols = i;
    return 0;
}

static int reconcile(void *data, const char *name, gm_switch_done_cb done,
                     void *ctx, long *requeue_ms)
{
    struct gm_rollout *r = data;
    const struct entry *e;
    json_object *status = NULL;
    time_t now = time(NULL);
    int rc;

    *requeue_ms = -1;
    if (!gm_rollout_synced(r) || !gm_ctl_synced(r->ctl)) {
        *requeue_ms = 200;
        return 0;
    }
    e = gm_reflector_get(r->policies, name);
    if (e == NULL)
        return 0;
    struct pass *pass = calloc(1, sizeof(*pass));
    if (pass == NULL)
        return -ENOMEM;
    pass->r = r;
    pass->done = done;
    pass->ctx = ctx;
    pass->pending = 1; /* this function's own hold */
    pass->requeue_ms = -1;

    if (!e->p->valid || e->sels.error[0]) {
        if (e->sels.error[0] && e->p->valid) {
            /* A selector the schema let through but we cannot parse. */
            struct gm_policy tmp = *e->p;
            tmp.valid = false;
            tmp.error = (char *)(uintptr_t)e->sels.error;
            rc = gm_status_build_invalid(&tmp, now, &status);
        } else {
            rc = gm_status_build_invalid(e->p, now, &status);
        }
        if (rc == 0 && gm_status_changed(e->p, status))
            gm_obs_policy_event(r->ctl, name, e->p->uid, GM_EVENT_WARNING,
                                GM_REASON_INVALID_POLICY, "%s",
                                e->sels.error[0]
                                    ? e->sels.error
                                    : (e->p->error ? e->p->error : "invalid"));
        if (rc == 0)
            rc = write_status(r, pass, e->p, status);
        json_object_put(status);
        goto out;
    }

    const struct gm_node **nodes;
    const struct gm_policy **pols;
    size_t n_nodes, n_pols;
    rc = collect(r, &nodes, &n_nodes, &pols, &n_pols);
    if (rc)
        goto out;
    const struct layouts *lay = NULL;
    const struct gm_map *cms = gm_reflector_items(r->cms);
    struct gm_map_entry *first = gm_map_first(cms);
    if (first)
        lay = first->value;
    char unread[800] = "", hami_unread[800] = "";
    bool lay_refused = gm_ctl_refused(r->cms, unread, sizeof(unread));
    bool hami_refused =
        gm_ctl_hami_refused(r->ctl, hami_unread, sizeof(hami_unread));
    const char *hami_rv;
    bool hami_exists;
    gm_ctl_hami_config(r->ctl, &hami_rv, &hami_exists);
    struct gm_plan_input in = {
        .policy = e->p,
        .policies = pols,
        .n_policies = n_pols,
        .nodes = nodes,
        .n_nodes = n_nodes,
        .now = now,
        .layouts = lay ? lay->m : NULL,
        .layouts_source = r->source,
        .layouts_error = lay_refused ? unread
                         : lay       ? (lay->m ? NULL : lay->error)
                                     : "the ConfigMap does not exist",
        .hami_config_absent = !hami_exists && !hami_refused,
        .hami_config_unreadable = hami_refused ? hami_unread : NULL,
        .hami_config_source = r->hami_source,
        .hami_entries = gm_ctl_hami_entries(r->ctl),
        .vgpu_resource = r->ctl->cfg->profile->vgpu_resource,
        .resources_grace_s = r->ctl->cfg->resources_grace_s,
        .plugin_configs = plugin_configs(r),
        .plugin_configs_source = r->plugin_source,
        .plugin_config_label = r->ctl->cfg->profile->mig_config_label,
    };
    struct gm_plan plan;
    rc = gm_plan_policy(&in, &plan);
    free(nodes);
    free(pols);
    if (rc)
        goto out;
    publish_differ(r, name, plan.drifted);
    const char *strategy =
        e->p->spec.mig_strategy == GM_MIG_SINGLE ? "single" : "mixed";
    /* As a ReplicaSet controller keeps expectations: while a start of
     * ours on one of the policy's nodes has yet to come back through the
     * watch, that node still looks pending, and starts now could take a
     * second slot of the budget (the candidates' order can change in
     * between). Its watch event plans again; the timer covers a watch
     * that is down. */
    bool unseen = false;
    for (size_t i = 0; i < plan.n_nodes && plan.n_starts && !unseen; i++)
        unseen = gm_switch_start_unseen(r->ctl, plan.nodes[i].name);
    if (unseen && (pass->requeue_ms < 0 || pass->requeue_ms > 500))
        pass->requeue_ms = 500;
    for (size_t i = 0; i < plan.n_starts && !unseen && !r->ctl->stopping; i++) {
        const struct gm_plan_start *st = &plan.starts[i];
        int err = gm_switch_start(r->ctl, st->node, name, st->to, st->layout,
                                  strategy, st->settings, start_done, pass);
        if (err == GM_SWITCH_ASYNC || err == 1)
            pass->pending++;
        else if (err < 0)
            pass->failed = 1;
    }
    /* What a switch in flight is waiting for lives in memory (it changes
     * too often to write to the node); show it in the status. */
    for (size_t i = 0; i < plan.n_nodes; i++) {
        struct gm_plan_node *pn = &plan.nodes[i];
        const char *m = gm_switch_message(r->ctl, pn->name);
        if (pn->state == GM_NODE_SWITCHING && m[0] &&
            strcmp(m, pn->message) != 0) {
            char *copy = strdup(m);
            if (copy) {
                free(pn->message);
                pn->message = copy;
            }
        }
    }
    if (plan.stall_reason && strcmp(plan.stall_reason, "PolicyConflict") == 0)
        gm_obs_policy_event(r->ctl, name, e->p->uid, GM_EVENT_WARNING,
                            GM_REASON_POLICY_CONFLICT, "%s",
                            plan.stall_message ? plan.stall_message : "");
    /* The status is built from the cache as it is now; the starts show up
     * as switching on the next pass, when their node events come back. */
    rc = gm_status_build(e->p, &plan, now, &status);
    if (rc == 0)
        rc = write_status(r, pass, e->p, status);
    json_object_put(status);
    time_t again[2] = {plan.requeue_at, plan.recheck_at};
    for (size_t i = 0; i < 2; i++) {
        if (again[i] <= now)
            continue;
        long ms = (long)(again[i] - now) * 1000;
        if (pass->requeue_ms < 0 || ms < pass->requeue_ms)
            pass->requeue_ms = ms;
    }
    gm_plan_free(&plan);
out:
    if (rc < 0)
        pass->failed = 1;
    if (pass->pending == 1) {
        /* Nothing went asynchronous. */
        *requeue_ms = pass->requeue_ms;
        int failed = pass->failed;
        free(pass);
        return failed ? -EIO : 0;
    }
    pass_end(pass);
    return GM_SWITCH_ASYNC;
}

/* ---- public ---- */

int gm_rollout_start(struct gm_ctl *ctl, struct gm_rollout **out)
{
    struct gm_rollout *r = calloc(1, sizeof(*r));
    char path[256], field[320];
    const struct gm_ctl_config *c = ctl->cfg;
    int err;

    if (r == NULL)
        return -ENOMEM;
    r->ctl = ctl;
    gm_map_init(&r->written);
    gm_map_init(&r->differ);
    snprintf(r->source, sizeof(r->source), "ConfigMap %s/%s",
             c->mig_cm.namespace, c->mig_cm.name);
    snprintf(r->hami_source, sizeof(r->hami_source), "ConfigMap %s/%s",
             c->hami_cm.namespace, c->hami_cm.name);
    const char *plugin_ns =
        c->plugin_cm.namespace ? c->plugin_cm.namespace : c->operator_ns;
    snprintf(r->plugin_source, sizeof(r->plugin_source), "ConfigMap %s/%s",
             plugin_ns, c->plugin_cm.name ? c->plugin_cm.name : "");
    gm_map_init(&r->plugin_absent.m);
    gm_map_init(&r->plugin_unread.m);
    r->plugin_unread.unreadable = true;
    ctl->policy_for = policy_for;
    ctl->governed = governed;
    ctl->policy_data = r;
    ctl->on_node_change = node_changed;
    ctl->reconcile_policy = reconcile;
    struct gm_reflector_opts po = {.path = GM_POLICY_API};
    err = gm_reflector_start(ctl->kube, ctl->loop, &po, &policy_ops, r,
                             &r->policies);
    if (err) {
        free(r);
        return err;
    }
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/configmaps",
             c->mig_cm.namespace);
    snprintf(field, sizeof(field), "metadata.name=%s", c->mig_cm.name);
    struct gm_reflector_opts co = {.path = path, .field_selector = field};
    err = gm_reflector_start(ctl->kube, ctl->loop, &co, &cm_ops, r, &r->cms);
    if (!err && c->plugin_cm.name && c->plugin_cm.name[0]) {
        snprintf(path, sizeof(path), "/api/v1/namespaces/%s/configmaps",
                 plugin_ns);
        snprintf(field, sizeof(field), "metadata.name=%s", c->plugin_cm.name);
        struct gm_reflector_opts pco = {.path = path, .field_selector = field};
        err = gm_reflector_start(ctl->kube, ctl->loop, &pco, &plugin_cm_ops, r,
                                 &r->plugin_cms);
    }
    if (err) {
        gm_reflector_free(r->cms);
        gm_reflector_free(r->policies);
        free(r);
        return err;
    }
    *out = r;
    return 0;
}

/* A device plugin or layout ConfigMap the controller may not read must not
 * stop every policy, only what needs it (gm_ctl_settled):
 * gm_plugin_config_check says why for the switches that would select a
 * plugin config, InvalidLayout for the mig policies that name a layout. */
bool gm_rollout_synced(const struct gm_rollout *r)
{
    return gm_reflector_has_synced(r->policies) && gm_ctl_settled(r->cms) &&
           gm_ctl_settled(r->plugin_cms);
}

void gm_rollout_reflectors(const struct gm_rollout *r,
                           const struct gm_reflector **policies,
                           const struct gm_reflector **layouts,
                           const struct gm_reflector **plugin_cms)
{
    *policies = r->policies;
    *layouts = r->cms;
    *plugin_cms = r->plugin_cms;
}

void gm_rollout_free(struct gm_rollout *r)
{
    if (r == NULL)
        return;
    r->ctl->policy_for = NULL;
    r->ctl->governed = NULL;
    r->ctl->on_node_change = NULL;
    r->ctl->reconcile_policy = NULL;
    gm_reflector_free(r->policies);
    gm_reflector_free(r->cms);
    gm_reflector_free(r->plugin_cms);
    gm_plugin_configs_free(&r->plugin_absent);
    gm_plugin_configs_free(&r->plugin_unread);
    for (struct gm_map_entry *it = gm_map_first(&r->written); it;
         it = gm_map_next(&r->written, it))
        free(it->value);
    gm_map_free(&r->written);
    for (struct gm_map_entry *it = gm_map_first(&r->differ); it;
         it = gm_map_next(&r->differ, it))
        free(it->value);
    gm_map_free(&r->differ);
    free(r);
}
