#include "kube/reflector.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/log.h"

struct gm_reflector {
    struct gm_kube *k;
    uv_loop_t *loop;
    uv_timer_t *timer;             /* owned; freed in its close callback */
    struct gm_reflector_opts opts; /* strings owned */
    const struct gm_reflector_ops *ops;
    void *ud;
    struct gm_map cache; /* key -> cached object */
    struct gm_map next;  /* objects of a list in progress */
    char *rv;            /* owned; resume point */
    struct gm_kube_watch *watch;
    int listing; /* a list request is in flight */
    int busy;    /* >0 while an ops callback runs */
    int stopped; /* gm_reflector_free ran; whoever is on the stack (list_done,
                    a watch event) frees it */
    int synced;
    int need_relist; /* set by a 410 inside the stream */
    int error_event; /* another ERROR inside the stream, told and counted */
    long backoff_ms;
    uint64_t watch_started_ms;  /* loop time the current watch was sent */
    uint64_t listed_ms;         /* loop time the last list completed */
    unsigned long watch_events; /* events it delivered, bookmarks too */
    struct gm_reflector_stats stats;
    char last_error[700]; /* stats.last_error points here */
};

/* A watch that ends normally sooner than this with no event is treated
 * as failed (client-go's "very short watch"). */
#define VERY_SHORT_WATCH_MS 1000
/* A watch Gone this soon after its list did not lose history to etcd's
 * compaction: the relist backs off. */
#define RELIST_AGAIN_MS 1000

static void start_list(struct gm_reflector *r);
static void start_watch(struct gm_reflector *r);

/* A list or watch failed: counted, and kept until something comes. */
static void failed(struct gm_reflector *r, long code, const char *reason,
                   const char *message)
{
    r->stats.errors++;
    r->stats.failing = 1;
    snprintf(r->last_error, sizeof(r->last_error), "%ld %s: %s", code,
             reason ? reason : "", message ? message : "");
}

static void healthy(struct gm_reflector *r)
{
    r->stats.failing = 0;
    r->last_error[0] = '\0';
}

static char *object_key(json_object *obj)
{
    json_object *meta, *name, *ns = NULL;
    char buf[512];

    if (!json_object_object_get_ex(obj, "metadata", &meta) ||
        !json_object_object_get_ex(meta, "name", &name))
        return NULL;
    json_object_object_get_ex(meta, "namespace", &ns);
    const char *nss = ns ? json_object_get_string(ns) : NULL;
    if (nss && nss[0])
        snprintf(buf, sizeof(buf), "%s/%s", nss, json_object_get_string(name));
    else
        snprintf(buf, sizeof(buf), "%s", json_object_get_string(name));
    return strdup(buf);
}

static const char *object_rv(json_object *obj)
{
    json_object *meta, *rv;
    if (!json_object_object_get_ex(obj, "metadata", &meta) ||
        !json_object_object_get_ex(meta, "resourceVersion", &rv))
        return NULL;
    return json_object_get_string(rv);
}

static void set_rv(struct gm_reflector *r, const char *rv)
{
    if (rv == NULL || rv[0] == '\0')
        return;
    char *copy = strdup(rv);
    if (copy == NULL)
        return;
    free(r->rv);
    r->rv = copy;
}

static void clear_map(struct gm_reflector *r, struct gm_map *m)
{
    for (struct gm_map_entry *e = gm_map_first(m); e; e = gm_map_next(m, e))
        r->ops->free_obj(r->ud, e->value);
    gm_map_free(m);
}

static void reflector_destroy(struct gm_reflector *r)
{
    clear_map(r, &r->cache);
    clear_map(r, &r->next);
    free(r->rv);
    free((char *)(uintptr_t)r->opts.path);
    free((char *)(uintptr_t)r->opts.label_selector);
    free((char *)(uintptr_t)r->opts.field_selector);
    free(r);
}

static void timer_close_cb(uv_handle_t *h)
{
    free(h);
}

static void retry_cb(uv_timer_t *t)
{
    struct gm_reflector *r = t->data;
    if (r->need_relist || r->rv == NULL)
        start_list(r);
    else
        start_watch(r);
}

/* Errors wait 0.8 s doubling to 30 s, with up to 25% jitter so many
 * controllers do not retry in step. */
static void retry_later(struct gm_reflector *r)
{
    long d = r->backoff_ms;
    d += (long)(rand() % (d / 4 + 1));
    r->backoff_ms *= 2;
    if (r->backoff_ms > r->opts.backoff_max_ms)
        r->backoff_ms = r->opts.backoff_max_ms;
    uv_timer_start(r->timer, retry_cb, (uint64_t)d, 0);
}

static void append_selectors(struct gm_reflector *r, struct gm_buf *b)
{
    char esc[2048];
    if (r->opts.label_selector &&
        gm_url_escape(r->opts.label_selector, esc, sizeof(esc)) == 0)
        gm_buf_appendf(b, "&labelSelector=%s", esc);
    if (r->opts.field_selector &&
        gm_url_escape(r->opts.field_selector, esc, sizeof(esc)) == 0)
        gm_buf_appendf(b, "&fieldSelector=%s", esc);
}

/* ---- list ---- */

static int list_page(void *data, json_object *items)
{
    struct gm_reflector *r = data;
    size_t n = json_object_array_length(items);

    if (r->stopped)
        return 1;
    for (size_t i = 0; i < n; i++) {
        json_object *item = json_object_array_get_idx(items, i);
        char *key = object_key(item);
        void *obj = key ? r->ops->decode(r->ud, item) : NULL;
        void *old = NULL;
        if (obj && gm_map_put(&r->next, key, obj, &old) != 0)
            r->ops->free_obj(r->ud, obj);
        if (old)
            r->ops->free_obj(r->ud, old);
        free(key);
    }
    return 0;
}

/* Replaces the cache with the listed objects, reporting what changed. */
static void apply_relist(struct gm_reflector *r)
{
    const struct gm_reflector_ops *ops = r->ops;
    /* The list becomes the cache before any callback runs, as a watch
     * event changes the cache before its callback: a handler that reads
     * the whole cache (a deleted policy re-plans the others) sees it as
     * the server has it, not half the old one. */
    struct gm_map old = r->cache;
    r->cache = r->next;
    gm_map_init(&r->next);

    for (struct gm_map_entry *e = gm_map_first(&r->cache); e;
         e = gm_map_next(&r->cache, e)) {
        void *prev = gm_map_del(&old, e->key);
        /* A handler that freed the reflector hears nothing more; the
         * loops still run to the end, so every object is freed once. */
        if (prev == NULL) {
            if (ops->on_add && !r->stopped)
                ops->on_add(r->ud, e->key, e->value);
        } else if (strcmp(ops->resource_version(prev),
                          ops->resource_version(e->value)) != 0) {
            if (ops->carry && !r->stopped)
                ops->carry(r->ud, prev, e->value);
            if (ops->on_update && !r->stopped)
                ops->on_update(r->ud, e->key, prev, e->value);
            ops->free_obj(r->ud, prev);
        } else {
            /* Unchanged: keep the old object, whose pointer callers may
             * hold, and drop the copy. */
            ops->free_obj(r->ud, e->value);
            e->value = prev;
        }
    }
    /* Whatever is left of the old cache vanished during the gap. */
    for (struct gm_map_entry *e = gm_map_first(&old); e;
         e = gm_map_next(&old, e)) {
        if (ops->on_delete && !r->stopped)
            ops->on_delete(r->ud, e->key, e->value);
        ops->free_obj(r->ud, e->value);
    }
    gm_map_free(&old);
}

static void list_end(struct gm_reflector *r, const struct gm_kube_resp *resp)
{
    if (resp->error) {
        clear_map(r, &r->next);
        if (resp->error->err == -ECANCELED)
            return;
        failed(r, resp->error->code, resp->error->reason, resp->error->message);
        r->stats.list_refused =
            resp->error->code == 401 || resp->error->code == 403
                ? resp->error->code
                : 0;
        gm_warn("list %s failed: %ld %s: %s", r->opts.path, resp->error->code,
                resp->error->reason, resp->error->message);
        retry_later(r);
        if (r->ops->on_list_failed)
            r->ops->on_list_failed(r->ud);
        return;
    }
    json_object *meta, *rv;
    if (resp->obj && json_object_object_get_ex(resp->obj, "metadata", &meta) &&
        json_object_object_get_ex(meta, "resourceVersion", &rv))
        set_rv(r, json_object_get_string(rv));
    r->need_relist = 0;
    r->listed_ms = uv_now(r->loop);
    healthy(r);
    apply_relist(r);
    r->synced = 1;
    if (r->ops->on_synced && !r->stopped)
        r->ops->on_synced(r->ud);
    if (!r->stopped)
        start_watch(r);
}

static void list_done(void *data, const struct gm_kube_resp *resp)
{
    struct gm_reflector *r = data;

    r->listing = 0;
    if (!r->stopped) {
        r->busy++;
        list_end(r, resp);
        r->busy--;
    }
    if (r->stopped)
        reflector_destroy(r);
}

static void start_list(struct gm_reflector *r)
{
    struct gm_buf b;

    gm_buf_init(&b, 8192);
    gm_buf_appendf(&b, "%s?resourceVersion=", r->opts.path);
    append_selectors(r, &b);
    /* A consistent list from etcd (resourceVersion unset) so the diff sees
     * every delete that happened while we were away. */
    r->stats.lists++;
    clear_map(r, &r->next);
    int err =
        gm_kube_list(r->k, b.data, r->opts.page_size, list_page, list_done, r);
    gm_buf_free(&b);
    if (err) {
        retry_later(r);
        return;
    }
    r->listing = 1;
}

/* ---- watch ---- */

static int status_code(json_object *obj)
{
    json_object *code;
    if (json_object_object_get_ex(obj, "code", &code))
        return json_object_get_int(code);
    return 0;
}

static int handle_event(struct gm_reflector *r, enum gm_watch_type type,
                        json_object *obj)
{
    const struct gm_reflector_ops *ops = r->ops;

    if (type == GM_WATCH_OPENED) {
        /* Answered: the cache is current again, though a quiet resource
         * may bring no event for a long while. */
        healthy(r);
        return 0;
    }
    r->stats.events++;
    r->watch_events++;
    if (type != GM_WATCH_ERROR)
        healthy(r);
    if (type == GM_WATCH_BOOKMARK) {
        r->stats.bookmarks++;
        set_rv(r, object_rv(obj));
        return 0;
    }
    if (type == GM_WATCH_ERROR) {
        if (status_code(obj) == 410) {
            r->stats.gone++;
            r->need_relist = 1;
        } else {
            /* The server's reason (an etcd error, "Too large resource
             * version" from a lagging member); the stream's end that
             * follows would only say the reader stopped it. */
            json_object *v;
            const char *reason = "", *msg = "";
            if (json_object_object_get_ex(obj, "reason", &v))
                reason = json_object_get_string(v);
            if (json_object_object_get_ex(obj, "message", &v))
                msg = json_object_get_string(v);
            failed(r, status_code(obj), reason, msg);
            r->error_event = 1;
            gm_warn("watch %s ended: %d %s: %s", r->opts.path, status_code(obj),
                    reason ? reason : "", msg ? msg : "");
        }
        return 1;
    }
    char *key = object_key(obj);
    if (key == NULL)
        return 0;
    if (type == GM_WATCH_DELETED) {
        void *old = gm_map_del(&r->cache, key);
        if (old) {
            if (ops->on_delete)
                ops->on_delete(r->ud, key, old);
            ops->free_obj(r->ud, old);
        }
    } else {
        void *obj_c = ops->decode(r->ud, obj);
        void *old = NULL;
        if (obj_c && gm_map_put(&r->cache, key, obj_c, &old) == 0) {
            if (old && ops->carry)
                ops->carry(r->ud, old, obj_c);
            if (old == NULL && ops->on_add)
                ops->on_add(r->ud, key, obj_c);
            else if (old && ops->on_update)
                ops->on_update(r->ud, key, old, obj_c);
            if (old)
                ops->free_obj(r->ud, old);
        } else if (obj_c || gm_map_get(&r->cache, key)) {
            /* Not stored, or not decoded (both out of memory today): the
             * copy cached before is stale. A relist puts the cache right
             * rather than a delete told now, which a lack of memory
             * would make up. */
            if (obj_c)
                ops->free_obj(r->ud, obj_c);
            free(key);
            r->need_relist = 1;
            return 1;
        }
    }
    set_rv(r, object_rv(obj));
    free(key);
    /* A watch that delivers is healthy: later errors start from the
     * smallest delay again. */
    r->backoff_ms = r->opts.backoff_min_ms;
    return 0;
}

static int watch_event(void *data, enum gm_watch_type type, json_object *obj)
{
    struct gm_reflector *r = data;

    r->busy++;
    int rc = handle_event(r, type, obj);
    r->busy--;
    if (r->stopped) {
        /* A handler freed it; the watch was stopped with it and calls
         * nothing more. */
        reflector_destroy(r);
        return 1;
    }
    return rc;
}

static void watch_end(void *data, const struct gm_kube_error *err)
{
    struct gm_reflector *r = data;

    r->watch = NULL;
    if (err && err->err == -ECANCELED)
        return;
    if (r->error_event) {
        r->error_event = 0;
        retry_later(r);
        return;
    }
    if (err == NULL) {
        /* The server's timeout: resume from where we are. A watch that
         * ended at once with nothing (a proxy or a server shutting down
         * that closes streams) backs off instead of looping hot. */
        if (r->watch_events == 0 &&
            uv_now(r->loop) - r->watch_started_ms < VERY_SHORT_WATCH_MS) {
            failed(r, 200, "", "the watch ended at once with no event");
            gm_debug("watch %s ended at once with no event; backing off",
                     r->opts.path);
            retry_later(r);
            return;
        }
        r->backoff_ms = r->opts.backoff_min_ms;
        healthy(r);
        start_watch(r);
        return;
    }
    if (err->err == -ETIMEDOUT && err->code == 200) {
        /* Cut for silence (no event, no bookmark) after it had started:
         * a quiet resource, or a dead connection, which TCP keepalive
         * ends. Not a failure: resume from where we are. */
        gm_debug("watch %s quiet for %lds; resuming", r->opts.path,
                 (long)((uv_now(r->loop) - r->watch_started_ms) / 1000));
        start_watch(r);
        return;
    }
    if (r->need_relist || err->code == 410) {
        if (err->code == 410)
            r->stats.gone++;
        r->need_relist = 1;
        gm_info("watch %s: resourceVersion %s is gone, relisting", r->opts.path,
                r->rv ? r->rv : "");
        /* Gone straight after a list: a server (or proxy) that keeps
         * saying so is relisted with the errors' back-off, as client-go
         * does, not in a tight loop of full lists. */
        if (uv_now(r->loop) - r->listed_ms < RELIST_AGAIN_MS)
            retry_later(r);
        else
            start_list(r);
        return;
    }
    failed(r, err->code, err->reason, err->message);
    gm_warn("watch %s ended: %ld %s: %s", r->opts.path, err->code, err->reason,
            err->message);
    retry_later(r);
}

static void start_watch(struct gm_reflector *r)
{
    struct gm_buf b;
    long span = r->opts.max_watch_s - r->opts.min_watch_s;
    long timeout = r->opts.min_watch_s + (span > 0 ? rand() % (span + 1) : 0);

    gm_buf_init(&b, 8192);
    gm_buf_appendf(&b,
                   "%s?watch=1&allowWatchBookmarks=true&resourceVersion=%s"
                   "&timeoutSeconds=%ld",
                   r->opts.path, r->rv ? r->rv : "", timeout);
    append_selectors(r, &b);
    r->stats.watches++;
    r->watch_started_ms = uv_now(r->loop);
    r->watch_events = 0;
    int err = gm_kube_watch(r->k, b.data, timeout, watch_event, watch_end, r,
                            &r->watch);
    gm_buf_free(&b);
    if (err)
        retry_later(r);
}

/* ---- public ---- */

int gm_reflector_start(struct gm_kube *k, uv_loop_t *loop,
                       const struct gm_reflector_opts *opts,
                       const struct gm_reflector_ops *ops, void *ud,
                       struct gm_reflector **out)
{
    struct gm_reflector *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return -ENOMEM;
    r->k = k;
    r->loop = loop;
    r->ops = ops;
    r->ud = ud;
    r->opts = *opts;
    r->opts.path = strdup(opts->path);
    r->opts.label_selector =
        opts->label_selector ? strdup(opts->label_selector) : NULL;
    r->opts.field_selector =
        opts->field_selector ? strdup(opts->field_selector) : NULL;
    if (r->opts.page_size <= 0)
        r->opts.page_size = 500;
    if (r->opts.min_watch_s <= 0)
        r->opts.min_watch_s = 300;
    if (r->opts.max_watch_s < r->opts.min_watch_s)
        r->opts.max_watch_s =
            r->opts.min_watch_s == 300 ? 600 : r->opts.min_watch_s;
    if (r->opts.backoff_min_ms <= 0)
        r->opts.backoff_min_ms = 800;
    if (r->opts.backoff_max_ms <= 0)
        r->opts.backoff_max_ms = 30000;
    r->backoff_ms = r->opts.backoff_min_ms;
    gm_map_init(&r->cache);
    gm_map_init(&r->next);
    r->timer = calloc(1, sizeof(*r->timer));
    if (r->opts.path == NULL || r->timer == NULL) {
        free(r->timer);
        r->timer = NULL;
        reflector_destroy(r);
        return -ENOMEM;
    }
    uv_timer_init(loop, r->timer);
    r->timer->data = r;
    start_list(r);
    *out = r;
    return 0;
}

const void *gm_reflector_get(const struct gm_reflector *r, const char *key)
{
    return gm_map_get(&r->cache, key);
}

const struct gm_map *gm_reflector_items(const struct gm_reflector *r)
{
    return &r->cache;
}

int gm_reflector_has_synced(const struct gm_reflector *r)
{
    return r->synced;
}

const char *gm_reflector_resource_version(const struct gm_reflector *r)
{
    return r->rv ? r->rv : "";
}

void gm_reflector_get_stats(const struct gm_reflector *r,
                            struct gm_reflector_stats *out)
{
    *out = r->stats;
    out->last_error = r->last_error;
}

void gm_reflector_free(struct gm_reflector *r)
{
    if (r == NULL)
        return;
    gm_kube_watch_stop(r->watch);
    r->watch = NULL;
    uv_timer_stop(r->timer);
    uv_close((uv_handle_t *)r->timer, timer_close_cb);
    r->timer = NULL;
    r->stopped = 1;
    if (r->listing || r->busy)
        return; /* list_done or watch_event frees it */
    reflector_destroy(r);
}
