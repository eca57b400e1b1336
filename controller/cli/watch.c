#include "cli/watch.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "app/rollout.h"
#include "common/json.h"
#include "kube/reflector.h"
#include "planner/labels.h"

struct gm_cli_watch {
    struct gm_reflector *policies; /* owned: json_object (the policy) */
    struct gm_reflector *nodes;    /* owned or NULL: json_object (slim) */
    int changed;
};

static void put_obj(void *ud, void *obj)
{
    (void)ud;
    json_object_put(obj);
}

static const char *obj_rv(const void *obj)
{
    /* json-c's getters take a non-const object; nothing is changed. */
    json_object *o = (json_object *)(uintptr_t)obj;
    return gm_json_str(gm_json_get(o, "metadata"), "resourceVersion");
}

static void *policy_decode(void *ud, json_object *obj)
{
    (void)ud;
    if (obj_rv(obj) == NULL)
        return NULL;
    return json_object_get(obj);
}

static void copy_str(json_object *dst, json_object *src, const char *key)
{
    const char *v = gm_json_str(src, key);
    if (v)
        json_object_object_add(dst, key, json_object_new_string(v));
}

/* Only what the status render reads of a node. */
static void *node_decode(void *ud, json_object *obj)
{
    json_object *meta = gm_json_get(obj, "metadata");
    json_object *labels = gm_json_get(meta, "labels");
    (void)ud;
    if (gm_json_str(meta, "name") == NULL || obj_rv(obj) == NULL)
        return NULL;
    json_object *slim = json_object_new_object();
    json_object *m = json_object_new_object();
    json_object *l = json_object_new_object();
    if (slim == NULL || m == NULL || l == NULL) {
        json_object_put(slim);
        json_object_put(m);
        json_object_put(l);
        return NULL;
    }
    copy_str(m, meta, "name");
    copy_str(m, meta, "resourceVersion");
    copy_str(l, labels, GM_LABEL_MODE);
    copy_str(l, labels, GM_LABEL_STATE);
    json_object_object_add(m, "labels", l);
    json_object_object_add(slim, "metadata", m);
    return slim;
}

static void mark(void *ud)
{
    ((struct gm_cli_watch *)ud)->changed = 1;
}

static void on_add(void *ud, const char *key, const void *obj)
{
    (void)key;
    (void)obj;
    mark(ud);
}

static void on_update(void *ud, const char *key, const void *old,
                      const void *obj)
{
    (void)key;
    (void)old;
    (void)obj;
    mark(ud);
}

/* A node is shown by its mode and state labels only: its status posts
 * (each kubelet's, every few seconds) change nothing on the screen, and a
 * pipe would get a snapshot for each. */
static void on_node_update(void *ud, const char *key, const void *old,
                           const void *obj)
{
    (void)key;
    json_object *a = json_object_object_get(old, "metadata");
    json_object *b = json_object_object_get(obj, "metadata");
    if (!json_object_equal(json_object_object_get(a, "labels"),
                           json_object_object_get(b, "labels")))
        mark(ud);
}

static const struct gm_reflector_ops policy_ops = {
    .decode = policy_decode,
    .free_obj = put_obj,
    .resource_version = obj_rv,
    .on_add = on_add,
    .on_update = on_update,
    .on_delete = on_add,
    .on_synced = mark,
};

static const struct gm_reflector_ops node_ops = {
    .decode = node_decode,
    .free_obj = put_obj,
    .resource_version = obj_rv,
    .on_add = on_add,
    .on_update = on_node_update,
    .on_delete = on_add,
    .on_synced = mark,
};

int gm_cli_watch_start(struct gm_cli_conn *c, const char *policy, bool nodes,
                       struct gm_cli_watch **out)
{
    struct gm_cli_watch *w = calloc(1, sizeof(*w));
    char field[300];
    int err;

    *out = NULL;
    if (w == NULL)
        return -ENOMEM;
    struct gm_reflector_opts po = {.path = GM_POLICY_API};
    if (policy) {
        snprintf(field, sizeof(field), "metadata.name=%s", policy);
        po.field_selector = field;
    }
    err = gm_reflector_start(gm_cli_kube(c), gm_cli_loop(c), &po, &policy_ops,
                             w, &w->policies);
    if (!err && nodes) {
        struct gm_reflector_opts no = {.path = "/api/v1/nodes"};
        err = gm_reflector_start(gm_cli_kube(c), gm_cli_loop(c), &no, &node_ops,
                                 w, &w->nodes);
    }
    if (err) {
        gm_cli_watch_free(w);
        return err;
    }
    *out = w;
    return 0;
}

int gm_cli_watch_synced(const struct gm_cli_watch *w)
{
    return gm_reflector_has_synced(w->policies) &&
           (w->nodes == NULL || gm_reflector_has_synced(w->nodes));
}

const char *gm_cli_watch_trouble(const struct gm_cli_watch *w)
{
    struct gm_reflector_stats st;
    gm_reflector_get_stats(w->policies, &st);
    if (st.failing)
        return st.last_error;
    if (w->nodes) {
        gm_reflector_get_stats(w->nodes, &st);
        if (st.failing)
            return st.last_error;
    }
    return NULL;
}

int gm_cli_watch_take_change(struct gm_cli_watch *w)
{
    if (!w->changed || !gm_cli_watch_synced(w))
        return 0;
    w->changed = 0;
    return 1;
}

static json_object *to_array(const struct gm_reflector *r)
{
    const struct gm_map *m = gm_reflector_items(r);
    json_object *a = json_object_new_array_ext(m->len ? (int)m->len : 1);

    for (struct gm_map_entry *e = gm_map_first(m); a && e;
         e = gm_map_next(m, e))
        json_object_array_add(a, json_object_get(e->value));
    return a;
}

int gm_cli_watch_snapshot(const struct gm_cli_watch *w, json_object **policies,
                          json_object **nodes)
{
    *policies = to_array(w->policies);
    *nodes = w->nodes ? to_array(w->nodes) : NULL;
    if (*policies == NULL || (w->nodes && *nodes == NULL)) {
        json_object_put(*policies);
        json_object_put(*nodes);
        *policies = *nodes = NULL;
        return -ENOMEM;
    }
    return 0;
}

void gm_cli_watch_free(struct gm_cli_watch *w)
{
    if (w == NULL)
        return;
    gm_reflector_free(w->policies);
    gm_reflector_free(w->nodes);
    free(w);
}
