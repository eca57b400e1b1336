#include "kube/client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/log.h"
#include "kube/listdecode.h"

struct gm_kube {
    uv_loop_t *loop;
    struct gm_http *http; /* owned */
    struct gm_auth *auth; /* owned, or NULL when cfg needs none */
};

/* One request in flight; freed once its callback ran. */
struct req {
    struct gm_kube *k;
    gm_kube_cb cb;
    void *data;
};

static int cred_adapter(void *src, struct gm_cred *cred, gm_auth_cb cb,
                        void *data)
{
    return gm_auth_current(src, cred, cb, data);
}

static void cred_invalidate_adapter(void *src, uint64_t generation)
{
    gm_auth_invalidate(src, generation);
}

static const char *cred_error_adapter(void *src)
{
    return gm_auth_last_error(src);
}

int gm_kube_new(uv_loop_t *loop, const struct gm_kube_config *cfg,
                const struct gm_kube_opts *opts, struct gm_kube **out)
{
    struct gm_kube *k = calloc(1, sizeof(*k));
    struct gm_http_opts ho = {0};
    int err;

    if (k == NULL)
        return -ENOMEM;
    k->loop = loop;
    if (cfg->token_file || cfg->exec || gm_auth_has_cert_files(cfg)) {
        err = gm_auth_new(loop, cfg, &k->auth);
        if (err) {
            free(k);
            return err;
        }
        gm_auth_set_terminal(k->auth, opts && opts->terminal);
        ho.cred = cred_adapter;
        ho.cred_invalidate = cred_invalidate_adapter;
        ho.cred_error = cred_error_adapter;
        ho.cred_src = k->auth;
    }
    ho.cfg = cfg;
    ho.qps = opts && opts->qps > 0 ? opts->qps : 50;
    ho.burst = opts && opts->burst > 0 ? opts->burst : 100;
    ho.timeout_ms = opts ? opts->timeout_ms : 0;
    ho.max_body = opts ? opts->max_body : 0;
    ho.stream_idle_s = opts ? opts->stream_idle_s : 0;
    ho.on_response = opts ? opts->on_response : NULL;
    ho.on_response_data = opts ? opts->on_response_data : NULL;
    ho.user_agent = opts ? opts->user_agent : NULL;
    err = gm_http_new(loop, &ho, &k->http);
    if (err) {
        gm_auth_free(k->auth);
        free(k);
        return err;
    }
    *out = k;
    return 0;
}

void gm_kube_free(struct gm_kube *k)
{
    if (k == NULL)
        return;
    gm_http_free(k->http);
    gm_auth_free(k->auth);
    free(k);
}

struct gm_http *gm_kube_http(struct gm_kube *k)
{
    return k->http;
}

static void copy_trunc(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src ? src : "");
}

void gm_kube_error_from(struct gm_kube_error *e, long code, int terr,
                        const char *body, size_t len, const char *errmsg)
{
    memset(e, 0, sizeof(*e));
    e->err = terr;
    e->code = code;
    if (terr) {
        copy_trunc(e->reason, sizeof(e->reason), "TransportError");
        snprintf(e->message, sizeof(e->message), "%s (%s)",
                 errmsg ? errmsg : "request failed", strerror(-terr));
        return;
    }
    json_object *st = body && len ? json_tokener_parse(body) : NULL;
    json_object *v;
    if (st && json_object_object_get_ex(st, "reason", &v))
        copy_trunc(e->reason, sizeof(e->reason), json_object_get_string(v));
    if (st && json_object_object_get_ex(st, "message", &v))
        copy_trunc(e->message, sizeof(e->message), json_object_get_string(v));
    json_object_put(st);
    if (e->reason[0] == '\0') {
        const char *r = code == 404   ? "NotFound"
                        : code == 409 ? "Conflict"
                        : code == 401 ? "Unauthorized"
                        : code == 403 ? "Forbidden"
                        : code == 429 ? "TooManyRequests"
                        : code >= 500 ? "InternalError"
                                      : "Unknown";
        copy_trunc(e->reason, sizeof(e->reason), r);
    }
    if (e->message[0] == '\0')
        snprintf(e->message, sizeof(e->message), "HTTP %ld", code);
}

static void req_done(void *data, const struct gm_http_result *res)
{
    struct req *r = data;
    struct gm_kube_error kerr;
    struct gm_kube_resp resp = {.code = res->status};
    json_object *obj = NULL;

    if (res->err == 0 && res->status >= 200 && res->status < 300) {
        if (res->body_len > 0) {
            obj = json_tokener_parse(res->body);
            if (obj == NULL) {
                gm_kube_error_from(&kerr, res->status, -EPROTO, NULL, 0,
                                   "response is not JSON");
                resp.error = &kerr;
            }
        }
        resp.obj = obj;
    } else {
        gm_kube_error_from(&kerr, res->status, res->err, res->body,
                           res->body_len, res->errmsg);
        resp.error = &kerr;
    }
    if (r->cb)
        r->cb(r->data, &resp);
    json_object_put(obj);
    free(r);
}

static int send_req(struct gm_kube *k, const char *method, const char *path,
                    const char *ctype, const char *body, int retry,
                    gm_kube_cb cb, void *data)
{
    struct req *r = calloc(1, sizeof(*r));
    struct gm_http_req hr = {
        .method = method,
        .path = path,
        .content_type = ctype,
        .body = body,
        .body_len = body ? strlen(body) : 0,
        .retry = retry,
    };

    if (r == NULL)
        return -ENOMEM;
    r->k = k;
    r->cb = cb;
    r->data = data;
    int err = gm_http_send(k->http, &hr, req_done, NULL, r, NULL);
    if (err)
        free(r);
    return err;
}

int gm_kube_get(struct gm_kube *k, const char *path, gm_kube_cb cb, void *data)
{
    return send_req(k, "GET", path, NULL, NULL, 1, cb, data);
}

static int send_json(struct gm_kube *k, const char *method, const char *path,
                     json_object *body, gm_kube_cb cb, void *data)
{
    const char *s =
        json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN);
    return send_req(k, method, path, "application/json", s, 1, cb, data);
}

int gm_kube_create(struct gm_kube *k, const char *path, json_object *body,
                   gm_kube_cb cb, void *data)
{
    return send_json(k, "POST", path, body, cb, data);
}

int gm_kube_update(struct gm_kube *k, const char *path, json_object *body,
                   gm_kube_cb cb, void *data)
{
    return send_json(k, "PUT", path, body, cb, data);
}

int gm_kube_patch(struct gm_kube *k, const char *path, enum gm_patch_type t,
                  const char *body, const char *field_manager, int force,
                  gm_kube_cb cb, void *data)
{
    static const char *const ctypes[] = {
        "application/merge-patch+json",
        "application/json-patch+json",
        "application/apply-patch+yaml",
    };
    char full[2048];
    char fm[256] = "";

    if (t == GM_PATCH_APPLY && field_manager == NULL)
        return -EINVAL;
    if (field_manager && gm_url_escape(field_manager, fm, sizeof(fm)) != 0)
        return -E2BIG;
    int n = snprintf(full, sizeof(full), "%s%s%s%s%s", path,
                     field_manager ? (strchr(path, '?') ? "&" : "?") : "",
                     field_manager ? "fieldManager=" : "", fm,
                     t == GM_PATCH_APPLY && force ? "&force=true" : "");
    if (n < 0 || (size_t)n >= sizeof(full))
        return -E2BIG;
    return send_req(k, "PATCH", full, ctypes[t], body, 1, cb, data);
}

int gm_kube_delete(struct gm_kube *k, const char *path, const char *uid,
                   const char *resource_version, long grace_seconds,
                   gm_kube_cb cb, void *data)
{
    json_object *opts = json_object_new_object();
    json_object *pre = json_object_new_object();

    json_object_object_add(opts, "apiVersion", json_object_new_string("v1"));
    json_object_object_add(opts, "kind",
                           json_object_new_string("DeleteOptions"));
    if (uid)
        json_object_object_add(pre, "uid", json_object_new_string(uid));
    if (resource_version)
        json_object_object_add(pre, "resourceVersion",
                               json_object_new_string(resource_version));
    if (uid || resource_version)
        json_object_object_add(opts, "preconditions", pre);
    else
        json_object_put(pre);
    if (grace_seconds >= 0)
        json_object_object_add(opts, "gracePeriodSeconds",
                               json_object_new_int64(grace_seconds));
    int err =
        send_req(k, "DELETE", path, "application/json",
                 json_object_to_json_string_ext(opts, JSON_C_TO_STRING_PLAIN),
                 1, cb, data);
    json_object_put(opts);
    return err;
}

int gm_kube_evict(struct gm_kube *k, const char *ns, const char *name,
                  const char *uid, long grace_seconds, gm_kube_cb cb,
                  void *data)
{
    char path[768];
    json_object *ev = json_object_new_object();
    json_object *meta = json_object_new_object();

    int n = snprintf(path, sizeof(path),
                     "/api/v1/namespaces/%s/pods/%s/eviction", ns, name);
    if (n < 0 || (size_t)n >= sizeof(path)) {
        json_object_put(ev);
        json_object_put(meta);
        return -E2BIG;
    }
    json_object_object_add(ev, "apiVersion",
                           json_object_new_string("policy/v1"));
    json_object_object_add(ev, "kind", json_object_new_string("Eviction"));
    json_object_object_add(meta, "name", json_object_new_string(name));
    json_object_object_add(meta, "namespace", json_object_new_string(ns));
    json_object_object_add(ev, "metadata", meta);
    if (grace_seconds >= 0 || uid) {
        json_object *del = json_object_new_object();
        if (grace_seconds >= 0)
            json_object_object_add(del, "gracePeriodSeconds",
                                   json_object_new_int64(grace_seconds));
        if (uid) {
            json_object *pre = json_object_new_object();
            json_object_object_add(pre, "uid", json_object_new_string(uid));
            json_object_object_add(del, "preconditions", pre);
        }
        json_object_object_add(ev, "deleteOptions", del);
    }
    int err =
        send_req(k, "POST", path, "application/json",
                 json_object_to_json_string_ext(ev, JSON_C_TO_STRING_PLAIN), 0,
                 cb, data);
    json_object_put(ev);
    return err;
}

/* ---- paginated list, streamed ---- */

#define MAX_ITEM_BYTES (16u * 1024 * 1024)

struct list {
    struct gm_kube *k;
    char *path; /* owned, without limit/continue */
    long limit;
    gm_kube_page_cb page_cb;
    gm_kube_cb done_cb;
    void *data;
    struct gm_list_decoder *dec; /* owned; one per page */
    int stopped;                 /* page_cb asked to stop */
    int decode_err;
};

static int list_next(struct list *l, const char *cont);

static void list_free(struct list *l)
{
    gm_list_decoder_free(l->dec);
    free(l->path);
    free(l);
}

static int list_item(void *data, json_object *one)
{
    struct list *l = data;
    if (l->page_cb(l->data, one) != 0) {
        l->stopped = 1;
        return 1;
    }
    return 0;
}

static int list_data(void *data, const char *p, size_t n)
{
    struct list *l = data;
    if (p == NULL)
        return 0; /* the page's headers are in: nothing to decode yet */
    int rc = gm_list_decoder_feed(l->dec, p, n);
    if (rc < 0)
        l->decode_err = rc;
    return rc != 0;
}

static void list_page_done(void *data, const struct gm_http_result *res)
{
    struct list *l = data;
    struct gm_kube_error kerr;
    struct gm_kube_resp resp = {.code = res->status};
    json_object *meta = NULL, *cont = NULL;

    if (l->stopped) {
        /* The reader is done: report the list as it stood. */
        l->done_cb(l->data, &resp);
        list_free(l);
        return;
    }
    if (res->err || res->status != 200 || l->decode_err ||
        !gm_list_decoder_complete(l->dec)) {
        int terr =
            res->err == -EPIPE && l->decode_err ? l->decode_err : res->err;
        if (!terr && res->status == 200)
            terr = -EPROTO; /* the body ended early */
        gm_kube_error_from(&kerr, res->status, terr, res->body, res->body_len,
                           l->decode_err ? "malformed list" : res->errmsg);
        resp.error = &kerr;
        l->done_cb(l->data, &resp);
        list_free(l);
        return;
    }
    meta = gm_list_decoder_metadata(l->dec);
    if (meta)
        json_object_object_get_ex(meta, "continue", &cont);
    const char *c = cont ? json_object_get_string(cont) : NULL;
    if (c && c[0]) {
        char *next = strdup(c);
        gm_list_decoder_free(l->dec);
        l->dec = NULL;
        int err = next ? list_next(l, next) : -ENOMEM;
        free(next);
        if (err == 0)
            return;
        gm_kube_error_from(&kerr, 0, err, NULL, 0, "next page");
        resp.error = &kerr;
        l->done_cb(l->data, &resp);
        list_free(l);
        return;
    }
    /* The final page: callers read metadata.resourceVersion from obj. */
    json_object *obj = json_object_new_object();
    json_object_object_add(obj, "metadata",
                           meta ? json_object_get(meta)
                                : json_object_new_object());
    resp.obj = obj;
    l->done_cb(l->data, &resp);
    json_object_put(obj);
    list_free(l);
}

static int list_next(struct list *l, const char *cont)
{
    struct gm_buf b;
    char esc[4096];
    int err;

    err = gm_list_decoder_new(MAX_ITEM_BYTES, list_item, l, &l->dec);
    if (err)
        return err;
    gm_buf_init(&b, 16384);
    err = gm_buf_appendf(&b, "%s%climit=%ld", l->path,
                         strchr(l->path, '?') ? '&' : '?', l->limit);
    if (!err && cont) {
        err = gm_url_escape(cont, esc, sizeof(esc));
        if (!err)
            err = gm_buf_appendf(&b, "&continue=%s", esc);
    }
    struct gm_http_req hr = {
        .method = "GET",
        .path = b.data,
        .stream = 1,
        .retry = 1,
        .timeout_ms = 120000,
        /* Only the page's whole time bounds it: a page queued by API
         * Priority and Fairness sends nothing for a while, and cutting
         * it at a short watch silence (watchIdleSeconds) would retry it
         * into the same queue. */
        .idle_s = 120,
    };
    if (!err)
        err = gm_http_send(l->k->http, &hr, list_page_done, list_data, l, NULL);
    gm_buf_free(&b);
    if (err) {
        gm_list_decoder_free(l->dec);
        l->dec = NULL;
    }
    return err;
}

int gm_kube_list(struct gm_kube *k, const char *path, long limit,
                 gm_kube_page_cb page_cb, gm_kube_cb done_cb, void *data)
{
    struct list *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return -ENOMEM;
    l->k = k;
    l->path = strdup(path);
    l->limit = limit > 0 ? limit : 500;
    l->page_cb = page_cb;
    l->done_cb = done_cb;
    l->data = data;
    int err = l->path ? list_next(l, NULL) : -ENOMEM;
    if (err) {
        free(l->path);
        free(l);
    }
    return err;
}

/* ---- watch ---- */

#define MAX_EVENT_BYTES (16u * 1024 * 1024)

struct gm_kube_watch {
    struct gm_kube *k;
    struct gm_http_call *call;    /* borrowed handle of the stream */
    struct gm_watch_decoder *dec; /* owned */
    gm_kube_event_cb ev_cb;
    gm_kube_watch_end_cb end_cb;
    void *data;
    int decode_err;
    /* A handler may stop the watch while we are on the stack (the decoder
     * with more events of the same chunk, or the end being told): the
     * stop is then only marked, and whoever is on the stack frees it. */
    int in_cb;
    int stopped;
};

static void watch_free(struct gm_kube_watch *w)
{
    gm_watch_decoder_free(w->dec);
    free(w);
}

static int watch_event(void *data, enum gm_watch_type type, json_object *obj)
{
    struct gm_kube_watch *w = data;
    if (w->stopped)
        return 1; /* the rest of the chunk is for nobody */
    return w->ev_cb(w->data, type, obj);
}

static int watch_data(void *data, const char *p, size_t n)
{
    struct gm_kube_watch *w = data;
    int rc;

    w->in_cb = 1;
    if (p == NULL) {
        rc = w->ev_cb(w->data, GM_WATCH_OPENED, NULL) != 0;
    } else {
        rc = gm_watch_decoder_feed(w->dec, p, n);
        if (rc < 0 && !w->stopped)
            w->decode_err = rc;
    }
    w->in_cb = 0;
    if (w->stopped) {
        /* The transport's call was cancelled with the stop and calls
         * nothing more: no one else holds the watch. */
        watch_free(w);
        return 1;
    }
    return rc != 0;
}

static void watch_done(void *data, const struct gm_http_result *res)
{
    struct gm_kube_watch *w = data;
    struct gm_kube_error kerr;

    w->in_cb = 1; /* freed below, stopped or not */
    if (res->err == 0 && res->status == 200) {
        w->end_cb(w->data, NULL);
    } else if (res->err == -EPIPE && w->decode_err) {
        gm_kube_error_from(&kerr, res->status, w->decode_err, NULL, 0,
                           "malformed watch stream");
        w->end_cb(w->data, &kerr);
    } else {
        gm_kube_error_from(&kerr, res->status, res->err, res->body,
                           res->body_len, res->errmsg);
        w->end_cb(w->data, &kerr);
    }
    watch_free(w);
}

int gm_kube_watch(struct gm_kube *k, const char *path, long timeout_s,
                  gm_kube_event_cb ev_cb, gm_kube_watch_end_cb end_cb,
                  void *data, struct gm_kube_watch **out)
{
    struct gm_kube_watch *w = calloc(1, sizeof(*w));
    int err;

    if (w == NULL)
        return -ENOMEM;
    w->k = k;
    w->ev_cb = ev_cb;
    w->end_cb = end_cb;
    w->data = data;
    err = gm_watch_decoder_new(MAX_EVENT_BYTES, watch_event, w, &w->dec);
    if (err) {
        free(w);
        return err;
    }
    struct gm_http_req hr = {
        .method = "GET",
        .path = path,
        .stream = 1,
        /* The server ends the watch at timeoutSeconds; allow slack. */
        .timeout_ms = timeout_s > 0 ? (timeout_s + 30) * 1000 : 0,
    };
    err = gm_http_send(k->http, &hr, watch_done, watch_data, w, &w->call);
    if (err) {
        watch_free(w);
        return err;
    }
    if (out)
        *out = w;
    return 0;
}

void gm_kube_watch_stop(struct gm_kube_watch *w)
{
    if (w == NULL)
        return;
    gm_http_cancel(w->call);
    w->call = NULL;
    if (w->in_cb) {
        w->stopped = 1; /* watch_data or watch_done frees it */
        return;
    }
    watch_free(w);
}

int gm_url_escape(const char *s, char *out, size_t out_len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;

    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        int plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    (c >= '0' && c <= '9') || c == '-' || c == '_' ||
                    c == '.' || c == '~';
        if (o + (plain ? 1 : 3) >= out_len)
            return -E2BIG;
        if (plain) {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
    return 0;
}
