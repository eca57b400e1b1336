/* The transport and the request layer, through the real libcurl + libuv
 * path against a loopback server: typed errors, retries, 401 refresh, caps,
 * timeouts, pagination, rate limiting, connection reuse and watches. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "kube/client.h"
#include "kube/http.h"
#include "support/httpd.h"

/* ---- fixture: a loop, a server whose behaviour a test sets, a client ---- */

struct fx;
typedef void (*behaviour)(struct fx *f, const struct th_req *r,
                          struct th_conn *c);

struct fx {
    uv_loop_t loop;
    struct th_server *srv;
    struct gm_kube_config cfg;
    struct gm_kube *k;
    behaviour serve;
    int hits;
    struct th_req last;
    char last_body[4096];
    struct th_conn *held; /* a connection a test keeps for streaming */
    int livez;            /* /livez requests seen */
    bool livez_answers;   /* answer them (else say nothing) */
    /* results */
    int done;
    struct gm_kube_error err;
    int has_err;
    long code;
    char got[4096];
};

static void handler(void *ud, const struct th_req *r, struct th_conn *c)
{
    struct fx *f = ud;
    f->hits++;
    f->last = *r;
    f->last.body = NULL;
    snprintf(f->last_body, sizeof(f->last_body), "%s", r->body);
    f->serve(f, r, c);
}

static struct fx *fx_new(behaviour b, const struct gm_kube_opts *opts)
{
    struct fx *f = calloc(1, sizeof(*f));
    uv_loop_init(&f->loop);
    assert_int_equal(th_start(&f->loop, handler, f, &f->srv), 0);
    f->serve = b;
    f->cfg.server = strdup(th_url(f->srv));
    assert_int_equal(gm_kube_new(&f->loop, &f->cfg, opts, &f->k), 0);
    return f;
}

static void fx_free(struct fx *f)
{
    gm_kube_free(f->k);
    th_stop(f->srv);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f->cfg.server);
    free(f);
}

static void on_resp(void *data, const struct gm_kube_resp *resp)
{
    struct fx *f = data;
    f->done = 1;
    f->code = resp->code;
    f->has_err = resp->error != NULL;
    if (resp->error)
        f->err = *resp->error;
    if (resp->obj)
        snprintf(
            f->got, sizeof(f->got), "%s",
            json_object_to_json_string_ext(resp->obj, JSON_C_TO_STRING_PLAIN));
}

static void wait_done(struct fx *f, int ms)
{
    assert_true(th_run_until(&f->loop, &f->done, ms));
}

static void run_a_while(struct fx *f, int ms)
{
    int never = 0;
    th_run_until(&f->loop, &never, ms);
}

/* ---- behaviours ---- */

static void serve_ok(struct fx *f, const struct th_req *r, struct th_conn *c)
{
    (void)f;
    (void)r;
    th_respond(c, 200, NULL,
               "{\"kind\":\"Node\",\"metadata\":{\"name\":\"n1\"}}");
}

static void serve_not_found(struct fx *f, const struct th_req *r,
                            struct th_conn *c)
{
    (void)f;
    (void)r;
    th_respond(c, 404, NULL,
               "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":"
               "\"Failure\",\"message\":\"nodes \\\"nx\\\" not found\","
               "\"reason\":\"NotFound\",\"code\":404}");
}

static void serve_echo(struct fx *f, const struct th_req *r, struct th_conn *c)
{
    (void)f;
    th_respond(c, r->method[0] == 'P' && r->method[1] == 'O' ? 201 : 200, NULL,
               r->body_len ? r->body : "{}");
}

static void serve_429_then_ok(struct fx *f, const struct th_req *r,
                              struct th_conn *c)
{
    (void)r;
    if (f->hits == 1)
        th_respond(c, 429, "Retry-After: 0\r\n",
                   "{\"kind\":\"Status\",\"reason\":\"TooManyRequests\","
                   "\"message\":\"slow down\",\"code\":429}");
    else
        serve_ok(f, r, c);
}

static void serve_500_twice(struct fx *f, const struct th_req *r,
                            struct th_conn *c)
{
    if (f->hits <= 2)
        th_respond(c, 500, "Retry-After: 0\r\n",
                   "{\"kind\":\"Status\",\"reason\":\"InternalError\","
                   "\"message\":\"etcd is sad\",\"code\":500}");
    else
        serve_ok(f, r, c);
}

static void serve_eviction_blocked(struct fx *f, const struct th_req *r,
                                   struct th_conn *c)
{
    (void)f;
    (void)r;
    th_respond(c, 429, NULL,
               "{\"kind\":\"Status\",\"status\":\"Failure\",\"message\":"
               "\"Cannot evict pod as it would violate the pod's disruption "
               "budget.\",\"reason\":\"TooManyRequests\",\"details\":{"
               "\"causes\":[{\"reason\":\"DisruptionBudget\",\"message\":"
               "\"The disruption budget web needs 2 healthy pods and has 2 "
               "currently\"}]},\"code\":429}");
}

static void serve_big(struct fx *f, const struct th_req *r, struct th_conn *c)
{
    (void)f;
    (void)r;
    char body[8192];
    memset(body, 'x', sizeof(body));
    memcpy(body, "{\"x\":\"", 6);
    memcpy(body + sizeof(body) - 3, "\"}", 3);
    th_respond(c, 200, NULL, body);
}

static void serve_nothing(struct fx *f, const struct th_req *r,
                          struct th_conn *c)
{
    (void)r;
    f->held = c; /* a peer that never answers */
}

static void serve_pages(struct fx *f, const struct th_req *r, struct th_conn *c)
{
    (void)f;
    if (strstr(r->path, "continue=tok%2F2"))
        th_respond(c, 200, NULL,
                   "{\"kind\":\"NodeList\",\"metadata\":{\"resourceVersion\":"
                   "\"77\"},\"items\":[{\"metadata\":{\"name\":\"c\"}}]}");
    else if (strstr(r->path, "continue=tok1"))
        th_respond(c, 200, NULL,
                   "{\"kind\":\"NodeList\",\"metadata\":{\"resourceVersion\":"
                   "\"77\",\"continue\":\"tok/2\"},\"items\":[{\"metadata\":"
                   "{\"name\":\"b\"}}]}");
    else
        th_respond(c, 200, NULL,
                   "{\"kind\":\"NodeList\",\"metadata\":{\"resourceVersion\":"
                   "\"77\",\"continue\":\"tok1\"},\"items\":[{\"metadata\":"
                   "{\"name\":\"a\"}}]}");
}

/* ---- tests ---- */

static void test_get_ok_headers(void **state)
{
    (void)state;
    struct fx *f = fx_new(serve_ok, NULL);
    assert_int_equal(gm_kube_get(f->k, "/api/v1/nodes/n1", on_resp, f), 0);
    wait_done(f, 5000);
    assert_false(f->has_err);
    assert_int_equal(f->code, 200);
    assert_non_null(strstr(f->got, "\"n1\""));
    assert_string_equal(f->last.method, "GET");
    assert_string_equal(f->last.path, "/api/v1/nodes/n1");
    assert_string_equal(f->last.user_agent, "gpumode/" GM_VERSION);
    fx_free(f);
}

static void test_typed_error_from_status(void **state)
{
    (void)state;
    struct fx *f = fx_new(serve_not_found, NULL);
    assert_int_equal(gm_kube_get(f->k, "/api/v1/nodes/nx", on_resp, f), 0);
    wait_done(f, 5000);
    assert_true(f->has_err);
    assert_int_equal(f->err.code, 404);
    assert_int_equal(f->err.err, 0);
    assert_string_equal(f->err.reason, "NotFound");
    assert_string_equal(f->err.message, "nodes \"nx\" not found");
    assert_int_equal(f->hits, 1); /* 404 is an answer, not retried */
    fx_free(f);
}

static void test_create_and_patch_kinds(void **state)
{
    (void)state;
    struct fx *f = fx_new(serve_echo, NULL);
    json_object *body = json_tokener_parse("{\"metadata\":{\"name\":\"p\"}}");
    assert_int_equal(
        gm_kube_create(f->k, "/api/v1/namespaces/x/pods", body, on_resp, f), 0);
    wait_done(f, 5000);
    json_object_put(body);
    assert_int_equal(f->code, 201);
    assert_string_equal(f->last.method, "POST");
    assert_string_equal(f->last.content_type, "application/json");
    assert_string_equal(f->last_body, "{\"metadata\":{\"name\":\"p\"}}");

    static const struct {
        enum gm_patch_type t;
        const char *ctype;
    } kinds[] = {
        {GM_PATCH_MERGE, "application/merge-patch+json"},
        {GM_PATCH_JSON, "application/json-patch+json"},
        {GM_PATCH_APPLY, "application/apply-patch+yaml"},
    };
    for (size_t i = 0; i < 3; i++) {
        f->done = 0;
        const char *b = kinds[i].t == GM_PATCH_JSON
                            ? "[{\"op\":\"add\",\"path\":\"/x\",\"value\":1}]"
                            : "{\"x\":1}";
        assert_int_equal(gm_kube_patch(f->k, "/api/v1/nodes/n1", kinds[i].t, b,
                                       "gpumode", 1, on_resp, f),
                         0);
        wait_done(f, 5000);
        assert_string_equal(f->last.method, "PATCH");
        assert_string_equal(f->last.content_type, kinds[i].ctype);
        assert_string_equal(f->last_body, b);
    }
    assert_string_equal(f->last.path,
                        "/api/v1/nodes/n1?fieldManager=gpumode&force=true");
    /* Server-side apply without a field manager is refused up front. */
    assert_int_equal(
        gm_kube_patch(f->k, "/x", GM_PATCH_APPLY, "{}", NULL, 0, on_resp, f),
        -EINVAL);
    fx_free(f);
}

static void test_delete_preconditions(void **state)
{
    (void)state;
    struct fx *f = fx_new(serve_echo, NULL);
    assert_int_equal(gm_kube_delete(f->k, "/api/v1/namespaces/a/pods/p",
                                    "uid-1", "42", 0, on_resp, f),
                     0);
    wait_done(f, 5000);
    assert_string_equal(f->last.method, "DELETE");
    json_object *o = json_tokener_parse(f->last_body), *pre, *v;
    assert_non_null(o);
    assert_true(json_object_object_get_ex(o, "preconditions", &pre));
    assert_true(json_object_object_get_ex(pre, "uid", &v));
    assert_string_equal(json_object_get_string(v), "uid-1");
    assert_true(json_object_object_get_ex(pre, "resourceVersion", &v));
    assert_string_equal(json_object_get_string(v), "42");
    assert_true(json_object_object_get_ex(o, "gracePeriodSeconds", &v));
    assert_int_equal(json_object_get_int(v), 0);
    json_object_put(o);
    fx_free(f);
}

static void test_eviction_429_not_retried(void **state)
{
    (void)state;
    struct fx *f = fx_new(serve_eviction_blocked, NULL);
    assert_int_equal(
        gm_kube_evict(f->k, "team-a", "train-0", "u-7", -1, on_resp, f), 0);
    wait_done(f, 5000);
    assert_int_equal(f->hits, 1);
    assert_string_equal(f->last.path,
                        "/api/v1/namespaces/team-a/pods/train-0/eviction");
    assert_non_null(strstr(f->last_body, "\"kind\":\"Eviction\""));
    /* Only the pod seen is evicted, not one of its name made since. */
    assert_non_null(strstr(f->last_body, "\"preconditions\":{\"uid\":"
                                         "\"u-7\"}"));
    assert_null(strstr(f->last_body, "gracePeriodSeconds"));
    assert_true(f->has_err);
    assert_int_equal(f->err.code, 429);
    assert_string_equal(f->err.reason, "TooManyRequests");
    assert_non_null(strstr(f->err.message, "disruption budget"));
    fx_free(f);
}

static void test_get_retries_429_and_5xx(void **state)
{
    (void)state;
    struct fx *f = fx_new(serve_429_then_ok, NULL);
    assert_int_equal(gm_kube_get(f->k, "/api/v1/nodes", on_resp, f), 0);
    wait_done(f, 5000);
    assert_false(f->has_err);
    assert_int_equal(f->hits, 2);
    fx_free(f);

    f = fx_new(serve_500_twice, NULL);
    assert_int_equal(gm_kube_get(f->k, "/api/v1/nodes", on_resp, f), 0);
    wait_done(f, 5000);
    assert_false(f->has_err);
    assert_int_equal(f->hits, 3);
    struct gm_http_stats st;
    gm_http_get_stats(gm_kube_http(f->k), &st);
    assert_int_equal(st.retries, 2);
    fx_free(f);
}

static void test_post_5xx_not_retried(void **state)
{
    (void)state;
    struct fx *f = fx_new(serve_500_twice, NULL);
    json_object *b = json_object_new_object();
    assert_int_equal(gm_kube_create(f->k, "/api/v1/nodes", b, on_resp, f), 0);
    json_object_put(b);
    wait_done(f, 5000);
    assert_true(f->has_err);
    assert_int_equal(f->err.code, 500);
    assert_string_equal(f->err.message, "etcd is sad");
    assert_int_equal(f->hits, 1);
    fx_free(f);
}

static void test_body_cap(void **state)
{
    (void)state;
    struct gm_kube_opts o = {.max_body = 1024};
    struct fx *f = fx_new(serve_big, &o);
    assert_int_equal(gm_kube_get(f->k, "/big", on_resp, f), 0);
    wait_done(f, 5000);
    assert_true(f->has_err);
    assert_int_equal(f->err.err, -E2BIG);
    fx_free(f);
}

static void test_request_timeout(void **state)
{
    (void)state;
    struct gm_kube_opts o = {.timeout_ms = 300};
    struct fx *f = fx_new(serve_nothing, &o);
    json_object *b = json_object_new_object();
    assert_int_equal(gm_kube_create(f->k, "/slow", b, on_resp, f), 0);
    json_object_put(b);
    wait_done(f, 5000);
    assert_true(f->has_err);
    assert_int_equal(f->err.err, -ETIMEDOUT);
    fx_free(f);
}

static void test_connection_refused(void **state)
{
    (void)state;
    struct fx *f = fx_new(serve_ok, NULL);
    free(f->cfg.server);
    /* The server's port, once closed, refuses. */
    gm_kube_free(f->k);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", th_port(f->srv));
    th_stop(f->srv);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    f->cfg.server = strdup(url);
    assert_int_equal(gm_kube_new(&f->loop, &f->cfg, NULL, &f->k), 0);
    json_object *b = json_object_new_object();
    assert_int_equal(gm_kube_create(f->k, "/x", b, on_resp, f), 0);
    json_object_put(b);
    wait_done(f, 5000);
    assert_true(f->has_err);
    assert_int_equal(f->err.err, -ECONNREFUSED);
    gm_kube_free(f->k);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f->cfg.server);
    free(f);
}

static int page_items;
static char page_names[8];

static int on_page(void *data, json_object *items)
{
    (void)data;
    for (size_t i = 0; i < json_object_array_length(items); i++) {
        json_object *meta, *name;
        json_object_object_get_ex(json_object_array_get_idx(items, i),
                                  "metadata", &meta);
        json_object_object_get_ex(meta, "name", &name);
        page_names[page_items++] = json_object_get_string(name)[0];
    }
    return 0;
}

static void test_paginated_list(void **state)
{
    (void)state;
    struct fx *f = fx_new(serve_pages, NULL);
    page_items = 0;
    memset(page_names, 0, sizeof(page_names));
    assert_int_equal(gm_kube_list(f->k, "/api/v1/nodes?labelSelector=a%3Db", 1,
                                  on_page, on_resp, f),
                     0);
    wait_done(f, 5000);
    assert_false(f->has_err);
    assert_int_equal(page_items, 3);
    assert_string_equal(page_names, "abc");
    assert_int_equal(f->hits, 3);
    assert_non_null(strstr(f->got, "\"resourceVersion\":\"77\""));
    assert_string_equal(f->last.path,
                        "/api/v1/nodes?labelSelector=a%3Db&limit=1&continue="
                        "tok%2F2");
    fx_free(f);
}

static int count_done;
static void on_count(void *data, const struct gm_kube_resp *resp)
{
    (void)data;
    (void)resp;
    count_done++;
}

static void test_rate_limit_and_reuse(void **state)
{
    (void)state;
    struct gm_kube_opts o = {.qps = 20, .burst = 1};
    struct fx *f = fx_new(serve_ok, &o);
    count_done = 0;
    uint64_t start = uv_now(&f->loop);
    for (int i = 0; i < 5; i++)
        assert_int_equal(gm_kube_get(f->k, "/api/v1/nodes", on_count, f), 0);
    int all = 0;
    while (count_done < 5 && uv_now(&f->loop) - start < 5000)
        uv_run(&f->loop, UV_RUN_ONCE);
    all = count_done == 5;
    assert_true(all);
    /* One token at once, then one per 50 ms. */
    assert_true(uv_now(&f->loop) - start >= 190);
    struct gm_http_stats st;
    gm_http_get_stats(gm_kube_http(f->k), &st);
    assert_int_equal(st.requests, 5);
    /* Sequential requests reuse the one keep-alive connection. */
    assert_int_equal(st.connects, 1);
    fx_free(f);
}

/* ---- 401: the credential source is refreshed once and the call replayed */

struct cred_src {
    int generation;
    int invalidations;
    uint64_t refused; /* the generation the last 401 was told of */
    char token[32];
};

static int fake_cred(void *src, struct gm_cred *cred, gm_auth_cb cb, void *data)
{
    struct cred_src *s = src;
    (void)cb;
    (void)data;
    snprintf(s->token, sizeof(s->token), "token-%d", s->generation);
    cred->token = s->token;
    cred->generation = 100 + (uint64_t)s->generation;
    return 0;
}

static void fake_invalidate(void *src, uint64_t generation)
{
    struct cred_src *s = src;
    s->refused = generation;
    s->invalidations++;
    s->generation++;
}

static void serve_auth(struct fx *f, const struct th_req *r, struct th_conn *c)
{
    (void)f;
    if (strcmp(r->authorization, "Bearer token-1") == 0)
        serve_ok(f, r, c);
    else
        th_respond(c, 401, NULL,
                   "{\"kind\":\"Status\",\"reason\":\"Unauthorized\","
                   "\"message\":\"Unauthorized\",\"code\":401}");
}

static int http_done;
static long http_status;
static void on_http(void *data, const struct gm_http_result *res)
{
    (void)data;
    http_done = 1;
    http_status = res->status;
}

static void test_401_refreshes_once(void **state)
{
    (void)state;
    struct fx *f = fx_new(serve_auth, NULL);
    struct cred_src src = {0};
    struct gm_http_opts ho = {.cfg = &f->cfg,
                              .cred = fake_cred,
                              .cred_invalidate = fake_invalidate,
                              .cred_src = &src};
    struct gm_http *h;
    assert_int_equal(gm_http_new(&f->loop, &ho, &h), 0);
    struct gm_http_req req = {.method = "GET", .path = "/api"};
    http_done = 0;
    assert_int_equal(gm_http_send(h, &req, on_http, NULL, NULL, NULL), 0);
    assert_true(th_run_until(&f->loop, &http_done, 5000));
    assert_int_equal(http_status, 200);
    assert_int_equal(src.invalidations, 1);
    /* The 401 names the credential that was refused, token-0's. */
    assert_int_equal(src.refused, 100);
    assert_string_equal(f->last.authorization, "Bearer token-1");

    /* A credential that stays wrong: one refresh, then the 401 comes out. */
    src.generation = 5;
    http_done = 0;
    assert_int_equal(gm_http_send(h, &req, on_http, NULL, NULL, NULL), 0);
    assert_true(th_run_until(&f->loop, &http_done, 5000));
    assert_int_equal(http_status, 401);
    assert_int_equal(src.invalidations, 2);
    gm_http_free(h);
    fx_free(f);
}

/* The answer hook may cancel the call being answered (a shutdown it
 * starts stops every call): a 429 it is told of is then not retried. */
static struct gm_http_call *hooked_call;
static void cancel_on_429(void *data, const char *method, long status)
{
    (void)data;
    (void)method;
    if (status == 429)
        gm_http_cancel(hooked_call);
}

static void test_cancel_from_the_answer_hook(void **state)
{
    (void)state;
    struct fx *f = fx_new(serve_429_then_ok, NULL);
    struct gm_http_opts ho = {.cfg = &f->cfg, .on_response = cancel_on_429};
    struct gm_http *h;
    assert_int_equal(gm_http_new(&f->loop, &ho, &h), 0);
    struct gm_http_req req = {.method = "GET", .path = "/api", .retry = 1};
    http_done = 0;
    assert_int_equal(gm_http_send(h, &req, on_http, NULL, NULL, &hooked_call),
                     0);
    run_a_while(f, 500); /* Retry-After: 0 would retry within 50 ms */
    assert_int_equal(f->hits, 1);
    assert_int_equal(http_done, 0);
    assert_int_equal(gm_http_pending(h), 0);
    gm_http_free(h);
    fx_free(f);
}

/* A credential source that fails says why in the call's error. */
static int failing_cred(void *src, struct gm_cred *cred, gm_auth_cb cb,
                        void *data)
{
    (void)src, (void)cred, (void)cb, (void)data;
    return -ENOENT;
}

static const char *failing_cred_error(void *src)
{
    (void)src;
    return "/etc/kube/client.crt: cannot read: No such file or directory";
}

static int cred_err;
static char cred_msg[256];
static void on_cred_fail(void *data, const struct gm_http_result *res)
{
    (void)data;
    http_done = 1;
    cred_err = res->err;
    snprintf(cred_msg, sizeof(cred_msg), "%s", res->errmsg ? res->errmsg : "");
}

static void test_credential_failure_says_why(void **state)
{
    (void)state;
    struct fx *f = fx_new(serve_ok, NULL);
    struct gm_http_opts ho = {
        .cfg = &f->cfg, .cred = failing_cred, .cred_error = failing_cred_error};
    struct gm_http *h;
    assert_int_equal(gm_http_new(&f->loop, &ho, &h), 0);
    struct gm_http_req req = {.method = "GET", .path = "/api"};
    http_done = 0;
    assert_int_equal(gm_http_send(h, &req, on_cred_fail, NULL, NULL, NULL), 0);
    assert_true(th_run_until(&f->loop, &http_done, 5000));
    assert_int_equal(cred_err, -ENOENT);
    assert_string_equal(cred_msg, failing_cred_error(NULL));
    assert_int_equal(f->hits, 0);
    gm_http_free(h);
    fx_free(f);
}

/* ---- an exec credential due for refresh while its plugin fails ---- */

struct http_res {
    int done;
    int err;
    long status;
    char errmsg[1024];
};

static void on_http_res(void *data, const struct gm_http_result *res)
{
    struct http_res *r = data;
    r->done = 1;
    r->err = res->err;
    r->status = res->status;
    snprintf(r->errmsg, sizeof(r->errmsg), "%s",
             res->errmsg ? res->errmsg : "");
}

static int auth_cred(void *src, struct gm_cred *cred, gm_auth_cb cb, void *data)
{
    return gm_auth_current(src, cred, cb, data);
}

static void auth_invalidate(void *src, uint64_t generation)
{
    gm_auth_invalidate(src, generation);
}

static int64_t test_clock(void *data)
{
    return *(const int64_t *)data;
}

static void serve_exec_token(struct fx *f, const struct th_req *r,
                             struct th_conn *c)
{
    if (strcmp(r->authorization, "Bearer exec-token-0-x") == 0)
        serve_ok(f, r, c);
    else
        serve_auth(f, r, c);
}

static void get_once(struct gm_http *h, struct fx *f, struct http_res *res)
{
    struct gm_http_req req = {.method = "GET", .path = "/api"};
    memset(res, 0, sizeof(*res));
    assert_int_equal(gm_http_send(h, &req, on_http_res, NULL, res, NULL), 0);
    assert_true(th_run_until(&f->loop, &res->done, 5000));
}

/* test/fixtures/exec/plugin.sh hands out a token valid until 2030; between
 * refresh time and expiry a plugin that fails must not fail requests, which
 * go on with the token they have; once it has expired, they fail with the
 * plugin's error. */
static void test_early_refresh_failure_keeps_requests_going(void **state)
{
    (void)state;
    const int64_t expiry = INT64_C(1893456000000); /* 2030-01-01 */
    int64_t now = expiry - 3600 * 1000;
    char cmd[] = "test/fixtures/exec/plugin.sh";
    char arg[] = "x";
    char api[] = "client.authentication.k8s.io/v1";
    char source[] = "test.kubeconfig";
    char mode[32] = "PLUGIN_MODE=token";
    char exp[] = "PLUGIN_EXPIRY=2030-01-01T00:00:00Z";
    char *args[] = {cmd, arg, NULL};
    char *env[] = {mode, exp, NULL};
    struct gm_kube_exec x = {.api_version = api,
                             .command = cmd,
                             .args = args,
                             .env = env,
                             .source = source};
    struct fx *f = fx_new(serve_exec_token, NULL);
    struct gm_auth *a;
    struct gm_http *h;
    struct http_res res;

    f->cfg.exec = &x;
    assert_int_equal(gm_auth_new(&f->loop, &f->cfg, &a), 0);
    gm_auth_set_clock(a, test_clock, &now);
    struct gm_http_opts ho = {.cfg = &f->cfg,
                              .cred = auth_cred,
                              .cred_invalidate = auth_invalidate,
                              .cred_src = a};
    assert_int_equal(gm_http_new(&f->loop, &ho, &h), 0);
    get_once(h, f, &res);
    assert_int_equal(res.err, 0);
    assert_int_equal(res.status, 200);

    snprintf(mode, sizeof(mode), "PLUGIN_MODE=fail");
    now = expiry - 5 * 60 * 1000;
    get_once(h, f, &res);
    assert_int_equal(res.err, 0);
    assert_int_equal(res.status, 200);
    assert_string_equal(f->last.authorization, "Bearer exec-token-0-x");

    now = expiry;
    get_once(h, f, &res);
    assert_int_equal(res.err, -ECHILD);
    assert_non_null(strstr(res.errmsg, "exit status 1"));

    gm_http_free(h);
    gm_auth_free(a);
    f->cfg.exec = NULL;
    fx_free(f);
}

/* ---- a peer that vanishes without a reset ---- */

static int sock_int(int fd, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof(v);
    assert_int_equal(getsockopt(fd, level, name, &v, &len), 0);
    return v;
}

static void test_socket_bounds_dead_peer(void **state)
{
    (void)state;
#ifdef TCP_USER_TIMEOUT
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(gm_http_tune_socket(fd), 0);
    assert_int_equal(sock_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT),
                     GM_HTTP_DEAD_PEER_MS);
    assert_int_equal(sock_int(fd, IPPROTO_TCP, TCP_KEEPCNT), 3);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    close(fd);
#else
    skip();
#endif
}

/* Our end of the connection to the test server, found by its peer port. */
static int client_socket(const struct fx *f)
{
    for (int fd = 0; fd < 1024; fd++) {
        struct sockaddr_in sa;
        socklen_t len = sizeof(sa);
        if (getpeername(fd, (struct sockaddr *)&sa, &len) == 0 &&
            sa.sin_family == AF_INET && ntohs(sa.sin_port) == th_port(f->srv))
            return fd;
    }
    return -1;
}

/* Every connection libcurl opens gets the options: keepalive probes that
 * end inside the user timeout, and the user timeout itself. */
static void test_connection_bounds_dead_peer(void **state)
{
    (void)state;
#ifdef TCP_USER_TIMEOUT
    struct fx *f = fx_new(serve_ok, NULL);
    assert_int_equal(gm_kube_get(f->k, "/api/v1/nodes/n1", on_resp, f), 0);
    wait_done(f, 5000);
    assert_int_equal(f->code, 200);
    /* The connection stays open in libcurl's pool. */
    int fd = client_socket(f);
    assert_true(fd >= 0);
    int idle = sock_int(fd, IPPROTO_TCP, TCP_KEEPIDLE);
    int intvl = sock_int(fd, IPPROTO_TCP, TCP_KEEPINTVL);
    int cnt = sock_int(fd, IPPROTO_TCP, TCP_KEEPCNT);
    assert_int_equal(sock_int(fd, SOL_SOCKET, SO_KEEPALIVE), 1);
    assert_int_equal(sock_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT),
                     GM_HTTP_DEAD_PEER_MS);
    assert_int_equal((idle + cnt * intvl) * 1000, GM_HTTP_DEAD_PEER_MS);
    /* Not inherited by an exec credential plugin. */
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    fx_free(f);
#else
    skip();
#endif
}

/* ---- watches ---- */

struct wstate {
    int opened; /* GM_WATCH_OPENED seen */
    int events;
    int ended;
    int end_err;
    long end_code;
    char names[8][16];
};

static int on_event(void *data, enum gm_watch_type t, json_object *obj)
{
    struct wstate *w = data;
    json_object *meta, *name;
    if (t == GM_WATCH_OPENED) {
        assert_null(obj);
        assert_int_equal(w->events, 0); /* before any event */
        w->opened++;
        return 0;
    }
    if (json_object_object_get_ex(obj, "metadata", &meta) &&
        json_object_object_get_ex(meta, "name", &name) && w->events < 8)
        snprintf(w->names[w->events], 16, "%s", json_object_get_string(name));
    w->events++;
    return 0;
}

static void on_end(void *data, const struct gm_kube_error *err)
{
    struct wstate *w = data;
    w->ended = 1;
    w->end_err = err ? (err->err ? err->err : 1) : 0;
    w->end_code = err ? err->code : 200;
}

static void serve_stream(struct fx *f, const struct th_req *r,
                         struct th_conn *c)
{
    (void)r;
    f->held = c;
    th_stream_start(c, 200);
}

static void test_watch_stream_and_normal_end(void **state)
{
    (void)state;
    struct fx *f = fx_new(serve_stream, NULL);
    struct wstate w = {0};
    struct gm_kube_watch *wh;
    assert_int_equal(gm_kube_watch(f->k, "/api/v1/nodes?watch=1", 300, on_event,
                                   on_end, &w, &wh),
                     0);
    while (f->held == NULL)
        uv_run(&f->loop, UV_RUN_ONCE);
    /* Open before any event: the answer's headers are in. */
    assert_true(th_run_until(&f->loop, &w.opened, 5000));
    const char *ev1 = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":"
                      "\"n1\"}}}\n{\"type\":\"MODI";
    const char *ev2 = "FIED\",\"object\":{\"metadata\":{\"name\":\"n2\"}}}\n";
    th_stream_write(f->held, ev1, strlen(ev1));
    int one = 0;
    while (w.events < 1)
        uv_run(&f->loop, UV_RUN_ONCE);
    one = w.events;
    assert_int_equal(one, 1);
    th_stream_write(f->held, ev2, strlen(ev2));
    th_stream_end(f->held);
    assert_true(th_run_until(&f->loop, &w.ended, 5000));
    assert_int_equal(w.events, 2);
    assert_int_equal(w.opened, 1);
    assert_string_equal(w.names[1], "n2");
    assert_int_equal(w.end_err, 0);
    fx_free(f);
}

static void test_dead_watch_is_detected(void **state)
{
    (void)state;
    struct gm_kube_opts o = {.stream_idle_s = 1};
    struct fx *f = fx_new(serve_stream, &o);
    struct wstate w = {0};
    assert_int_equal(gm_kube_watch(f->k, "/api/v1/nodes?watch=1", 300, on_event,
                                   on_end, &w, NULL),
                     0);
    /* Headers arrive, then silence: the low-speed limit cuts it. */
    assert_true(th_run_until(&f->loop, &w.ended, 10000));
    assert_int_equal(w.end_err, -ETIMEDOUT);
    assert_int_equal(w.end_code, 200); /* it had started: quiet, not down */
    fx_free(f);
}

/* A list page the server holds back (API Priority and Fairness queues
 * it) longer than the watch silence cut: only the page's own timeout
 * bounds it, so it is answered, not cut and failed. */
static void serve_late_page(struct fx *f, const struct th_req *r,
                            struct th_conn *c)
{
    if (strcmp(r->path, "/livez") == 0) {
        th_respond(c, 200, "Content-Type: text/plain\r\n", "ok");
        return;
    }
    f->held = c; /* answered by the test */
}

static void test_slow_list_page_is_not_cut(void **state)
{
    (void)state;
    struct gm_kube_opts o = {.stream_idle_s = 1};
    struct fx *f = fx_new(serve_late_page, &o);
    int never = 0;
    page_items = 0;
    memset(page_names, 0, sizeof(page_names));
    assert_int_equal(
        gm_kube_list(f->k, "/api/v1/nodes", 10, on_page, on_resp, f), 0);
    while (f->held == NULL)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_false(th_run_until(&f->loop, &never, 2500)); /* 2.5 s silent */
    assert_int_equal(f->done, 0);
    th_respond(f->held, 200, "Content-Type: application/json\r\n",
               "{\"metadata\":{\"resourceVersion\":\"5\"},"
               "\"items\":[{\"metadata\":{\"name\":\"a\"}}]}");
    wait_done(f, 5000);
    assert_false(f->has_err);
    assert_int_equal(page_items, 1);
    assert_int_equal(f->hits, 1);
    fx_free(f);
}

/* ---- a connection whose peer ACKs but never answers ---- */

static void serve_silent(struct fx *f, const struct th_req *r,
                         struct th_conn *c)
{
    if (strstr(r->path, "watch=1")) {
        serve_stream(f, r, c);
        return;
    }
    if (strcmp(r->path, "/livez") == 0) {
        f->livez++;
        if (f->livez_answers)
            th_respond(c, 200, "Content-Type: text/plain\r\n", "ok");
        return;
    }
    (void)c; /* no answer, the connection kept */
}

/* Runs a watch, then a GET the server never answers (its request timeout
 * 300 ms), with /livez answered when livez_answers. */
static void run_silent(struct fx **out, struct wstate *w, bool livez_answers)
{
    struct gm_kube_opts o = {.timeout_ms = 300, .stream_idle_s = 60};
    struct fx *f = fx_new(serve_silent, &o);
    f->livez_answers = livez_answers;
    assert_int_equal(gm_kube_watch(f->k, "/api/v1/nodes?watch=1", 300, on_event,
                                   on_end, w, NULL),
                     0);
    assert_true(th_run_until(&f->loop, &w->opened, 5000));
    assert_int_equal(gm_kube_get(f->k, "/api/v1/nodes/n1", on_resp, f), 0);
    *out = f;
}

/* The server stops answering on its connections (a wedged process, a
 * proxy that lost its backend, the kernel still ACKing): after a call
 * times out, the transport asks /livez, gets no answer either, and drops
 * the connections, so the watch fails now rather than sit blind on a
 * connection every later call would share. */
static void test_silent_connection_is_dropped(void **state)
{
    (void)state;
    struct wstate w = {0};
    struct fx *f;
    struct gm_http_stats st;
    run_silent(&f, &w, false);
    assert_true(th_run_until(&f->loop, &w.ended, 5000));
    assert_int_not_equal(w.end_err, 0);
    assert_int_equal(f->livez, 1);
    assert_true(f->done); /* the GET timed out first */
    gm_http_get_stats(gm_kube_http(f->k), &st);
    assert_true(st.dropped >= 1);
    fx_free(f);
}

/* A slow call on a live connection is no reason to cut the watches: the
 * probe is answered, and nothing is dropped. */
static void test_answering_connection_is_kept(void **state)
{
    (void)state;
    struct wstate w = {0};
    struct fx *f;
    struct gm_http_stats st;
    static const int never = 0;
    run_silent(&f, &w, true);
    th_run_until(&f->loop, &never, 1500);
    assert_true(f->done);
    assert_int_equal(f->livez, 1);
    assert_false(w.ended);
    gm_http_get_stats(gm_kube_http(f->k), &st);
    assert_int_equal(st.dropped, 0);
    fx_free(f);
}

/* A connect attempt libcurl abandons (timed out while connecting) is
 * closed without its close callback, and the number may go to another
 * socket of the process before a probe condemns the connections: that
 * socket must not be shut down. The server is a listener whose accept
 * queue is full, so connects hang. */
struct reuse {
    int pair[2]; /* made in the call's done, taking the freed number */
    int done;
};

static void on_timed_out(void *data, const struct gm_http_result *res)
{
    struct reuse *u = data;
    assert_int_equal(res->err, -ETIMEDOUT);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, u->pair), 0);
    u->done = 1;
}

static void test_probe_spares_a_reused_number(void **state)
{
    (void)state;
    uv_loop_t loop;
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int l = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(l, 0), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&sa, &len), 0);
    int fill[2];
    for (int i = 0; i < 2; i++) { /* the queue is full after these */
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fill[i], (struct sockaddr *)&sa, sizeof(sa));
    }
    char server[64];
    snprintf(server, sizeof(server), "http://127.0.0.1:%d", ntohs(sa.sin_port));
    struct gm_kube_config cfg = {.server = server};
    struct gm_http_opts ho = {.cfg = &cfg, .timeout_ms = 300};
    struct gm_http *h;
    struct reuse u = {{-1, -1}, 0};
    struct gm_http_stats st;
    static const int never = 0;
    uv_loop_init(&loop);
    assert_int_equal(gm_http_new(&loop, &ho, &h), 0);
    struct gm_http_req req = {.method = "GET", .path = "/api"};
    assert_int_equal(gm_http_send(h, &req, on_timed_out, NULL, &u, NULL), 0);
    assert_true(th_run_until(&loop, &u.done, 5000));
    /* The probe (300 ms here) gets no answer either. */
    th_run_until(&loop, &never, 1000);
    gm_http_get_stats(h, &st);
    assert_int_equal(st.dropped, 0); /* no socket of its own was open */
    assert_int_equal(write(u.pair[0], "x", 1), 1);
    char c = 0;
    assert_int_equal(read(u.pair[1], &c, 1), 1);
    assert_int_equal(c, 'x');
    gm_http_free(h);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    close(u.pair[0]);
    close(u.pair[1]);
    close(fill[0]);
    close(fill[1]);
    close(l);
}

/* A request that cannot even be set up (a token too long for a header) is
 * reported through done, from the loop: never before gm_kube_get returns,
 * when the caller does not yet hold the call. */
static void test_setup_failure_reported_from_the_loop(void **state)
{
    (void)state;
    struct fx *f = fx_new(serve_ok, NULL);
    char *token = malloc(9000);
    memset(token, 'a', 8999);
    token[8999] = '\0';
    gm_kube_free(f->k);
    f->cfg.token = token;
    assert_int_equal(gm_kube_new(&f->loop, &f->cfg, NULL, &f->k), 0);
    assert_int_equal(gm_kube_get(f->k, "/api/v1/nodes/n1", on_resp, f), 0);
    assert_int_equal(f->done, 0);
    wait_done(f, 2000);
    assert_true(f->has_err);
    assert_int_equal(f->err.err, -E2BIG);
    assert_int_equal(f->hits, 0);
    f->cfg.token = NULL;
    free(token);
    fx_free(f);
}

/* A watch event's handler runs inside libcurl's write callback, where the
 * multi handle refuses new transfers: a request sent from there must still
 * go out (HAMi's ConfigMap writer sends from its watch's events). */
struct send_from_event {
    struct wstate w; /* first: on_end writes it */
    struct fx *f;
    int events;
};

static int on_event_send(void *data, enum gm_watch_type t, json_object *obj)
{
    struct send_from_event *s = data;
    (void)obj;
    if (t == GM_WATCH_OPENED)
        return 0;
    if (s->events++ == 0)
        assert_int_equal(
            gm_kube_get(s->f->k, "/api/v1/nodes/n1", on_resp, s->f), 0);
    return 0;
}

static void serve_stream_or_ok(struct fx *f, const struct th_req *r,
                               struct th_conn *c)
{
    if (strstr(r->path, "watch=1"))
        serve_stream(f, r, c);
    else
        serve_ok(f, r, c);
}

static void test_send_from_a_watch_event(void **state)
{
    (void)state;
    struct fx *f = fx_new(serve_stream_or_ok, NULL);
    struct send_from_event s = {.f = f};
    assert_int_equal(gm_kube_watch(f->k, "/api/v1/nodes?watch=1", 300,
                                   on_event_send, on_end, &s, NULL),
                     0);
    while (f->held == NULL)
        uv_run(&f->loop, UV_RUN_ONCE);
    const char *ev = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{"
                     "\"name\":\"n1\"}}}\n";
    th_stream_write(f->held, ev, strlen(ev));
    wait_done(f, 5000);
    assert_false(f->has_err);
    assert_int_equal(f->code, 200);
    assert_non_null(strstr(f->got, "\"n1\""));
    fx_free(f);
}

/* A handler may end the watch it is reading, or another one, even with
 * more events of the same chunk still to decode: nothing of either is
 * called afterwards, and the client goes on serving. */
struct stopper {
    struct wstate w;               /* first: on_end writes it */
    struct gm_kube_watch *own;     /* this watch */
    struct gm_kube_watch **victim; /* stopped at the first event */
    const struct wstate *victim_w; /* the victim's events, if another's */
    int victim_events;             /* how many it had seen at the stop */
};

static int on_event_stop(void *data, enum gm_watch_type t, json_object *obj)
{
    struct stopper *s = data;
    on_event(&s->w, t, obj);
    if (t == GM_WATCH_OPENED)
        return 0;
    if (s->w.events == 1) {
        if (s->victim_w)
            s->victim_events = s->victim_w->events;
        gm_kube_watch_stop(*s->victim);
        *s->victim = NULL;
    }
    return 0;
}

static struct th_conn *streams[2];
static int n_streams;

static void serve_streams_or_ok(struct fx *f, const struct th_req *r,
                                struct th_conn *c)
{
    if (strstr(r->path, "watch=1") && n_streams < 2) {
        streams[n_streams++] = c;
        th_stream_start(c, 200);
    } else {
        serve_ok(f, r, c);
    }
}

static const char three_events[] =
    "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}\n"
    "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"b\"}}}\n"
    "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"c\"}}}\n";

static void test_watch_stopped_from_its_own_event(void **state)
{
    (void)state;
    n_streams = 0;
    struct fx *f = fx_new(serve_streams_or_ok, NULL);
    struct stopper s = {0};
    s.victim = &s.own;
    assert_int_equal(gm_kube_watch(f->k, "/api/v1/nodes?watch=1", 300,
                                   on_event_stop, on_end, &s, &s.own),
                     0);
    while (n_streams < 1)
        uv_run(&f->loop, UV_RUN_ONCE);
    th_stream_write(streams[0], three_events, strlen(three_events));
    run_a_while(f, 300);
    assert_int_equal(s.w.events, 1);
    assert_string_equal(s.w.names[0], "a");
    assert_int_equal(s.w.ended, 0);
    /* The client still answers. */
    assert_int_equal(gm_kube_get(f->k, "/api/v1/nodes/n1", on_resp, f), 0);
    wait_done(f, 5000);
    assert_int_equal(f->code, 200);
    fx_free(f);
}

static void test_watch_stopped_from_another_watch_event(void **state)
{
    (void)state;
    n_streams = 0;
    struct fx *f = fx_new(serve_streams_or_ok, NULL);
    struct stopper s = {0};
    struct wstate other = {0};
    struct gm_kube_watch *other_w = NULL;
    s.victim = &other_w;
    s.victim_w = &other;
    assert_int_equal(gm_kube_watch(f->k, "/api/v1/nodes?watch=1", 300,
                                   on_event_stop, on_end, &s, &s.own),
                     0);
    assert_true(th_run_until(&f->loop, &s.w.opened, 5000));
    assert_int_equal(gm_kube_watch(f->k, "/api/v1/pods?watch=1", 300, on_event,
                                   on_end, &other, &other_w),
                     0);
    assert_true(th_run_until(&f->loop, &other.opened, 5000));
    /* Both streams speak in the same turn of the loop, the stopper
     * first: the other one's bytes are already in libcurl when it is
     * stopped, and none of them may be told. */
    th_stream_write(streams[0], three_events, strlen(three_events));
    th_stream_write(streams[1], three_events, strlen(three_events));
    run_a_while(f, 300);
    assert_int_equal(s.w.events, 3);
    assert_null(other_w);
    assert_true(s.victim_events < 3); /* stopped with events to come */
    assert_int_equal(other.events, s.victim_events); /* none after it */
    assert_int_equal(other.ended, 0);
    assert_int_equal(gm_kube_get(f->k, "/api/v1/nodes/n1", on_resp, f), 0);
    wait_done(f, 5000);
    assert_int_equal(f->code, 200);
    gm_kube_watch_stop(s.own);
    fx_free(f);
}

/* Watches sent together over cleartext (kubectl proxy: HTTP/1.1) each get
 * a connection at once; none waits for the first one's answer, or end. */
static void test_watches_sent_together_all_open(void **state)
{
    (void)state;
    n_streams = 0;
    struct fx *f = fx_new(serve_streams_or_ok, NULL);
    struct wstate a = {0}, b = {0};
    assert_int_equal(gm_kube_watch(f->k, "/api/v1/nodes?watch=1", 300, on_event,
                                   on_end, &a, NULL),
                     0);
    assert_int_equal(gm_kube_watch(f->k, "/api/v1/pods?watch=1", 300, on_event,
                                   on_end, &b, NULL),
                     0);
    assert_true(th_run_until(&f->loop, &a.opened, 5000));
    assert_true(th_run_until(&f->loop, &b.opened, 5000));
    assert_int_equal(n_streams, 2);
    /* And a request beside them. */
    assert_int_equal(gm_kube_get(f->k, "/api/v1/nodes/n1", on_resp, f), 0);
    wait_done(f, 5000);
    assert_int_equal(f->code, 200);
    fx_free(f);
}

/* Told of the end, a handler may still stop the watch it holds. */
static void on_end_stop(void *data, const struct gm_kube_error *err)
{
    struct stopper *s = data;
    on_end(&s->w, err);
    gm_kube_watch_stop(s->own);
    s->own = NULL;
}

static void test_watch_stopped_from_its_end(void **state)
{
    (void)state;
    n_streams = 0;
    struct fx *f = fx_new(serve_streams_or_ok, NULL);
    struct stopper s = {0};
    assert_int_equal(gm_kube_watch(f->k, "/api/v1/nodes?watch=1", 300, on_event,
                                   on_end_stop, &s, &s.own),
                     0);
    assert_true(th_run_until(&f->loop, &s.w.opened, 5000));
    th_stream_write(streams[0], three_events, strlen(three_events));
    th_stream_end(streams[0]);
    assert_true(th_run_until(&f->loop, &s.w.ended, 5000));
    assert_int_equal(s.w.events, 3);
    assert_int_equal(s.w.end_err, 0);
    assert_null(s.own);
    fx_free(f);
}

static void serve_watch_500(struct fx *f, const struct th_req *r,
                            struct th_conn *c)
{
    (void)f;
    (void)r;
    th_respond(c, 500, NULL,
               "{\"kind\":\"Status\",\"code\":500,\"reason\":"
               "\"InternalError\",\"message\":\"etcd is down\"}");
}

/* A watch answered with an error was never open: no GM_WATCH_OPENED. */
static void test_watch_refused_never_opens(void **state)
{
    (void)state;
    struct fx *f = fx_new(serve_watch_500, NULL);
    struct wstate w = {0};
    assert_int_equal(gm_kube_watch(f->k, "/api/v1/nodes?watch=1", 300, on_event,
                                   on_end, &w, NULL),
                     0);
    assert_true(th_run_until(&f->loop, &w.ended, 5000));
    assert_int_equal(w.end_code, 500);
    assert_int_equal(w.opened, 0);
    assert_int_equal(w.events, 0);
    fx_free(f);
}

static void test_watch_stop_and_free_with_calls_open(void **state)
{
    (void)state;
    struct fx *f = fx_new(serve_stream, NULL);
    struct wstate w = {0};
    struct gm_kube_watch *wh;
    assert_int_equal(gm_kube_watch(f->k, "/w", 300, on_event, on_end, &w, &wh),
                     0);
    while (f->held == NULL)
        uv_run(&f->loop, UV_RUN_ONCE);
    gm_kube_watch_stop(wh);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(w.ended, 0);
    /* A request still open when the client is freed gets -ECANCELED. */
    f->serve = serve_nothing;
    f->done = 0;
    assert_int_equal(gm_kube_get(f->k, "/never", on_resp, f), 0);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    gm_kube_free(f->k);
    f->k = NULL;
    assert_true(f->done);
    assert_int_equal(f->err.err, -ECANCELED);
    th_stop(f->srv);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f->cfg.server);
    free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_ok_headers),
        cmocka_unit_test(test_typed_error_from_status),
        cmocka_unit_test(test_create_and_patch_kinds),
        cmocka_unit_test(test_delete_preconditions),
        cmocka_unit_test(test_eviction_429_not_retried),
        cmocka_unit_test(test_get_retries_429_and_5xx),
        cmocka_unit_test(test_post_5xx_not_retried),
        cmocka_unit_test(test_body_cap),
        cmocka_unit_test(test_request_timeout),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test(test_watch_refused_never_opens),
        cmocka_unit_test(test_paginated_list),
        cmocka_unit_test(test_rate_limit_and_reuse),
        cmocka_unit_test(test_401_refreshes_once),
        cmocka_unit_test(test_cancel_from_the_answer_hook),
        cmocka_unit_test(test_credential_failure_says_why),
        cmocka_unit_test(test_early_refresh_failure_keeps_requests_going),
        cmocka_unit_test(test_socket_bounds_dead_peer),
        cmocka_unit_test(test_connection_bounds_dead_peer),
        cmocka_unit_test(test_watch_stream_and_normal_end),
        cmocka_unit_test(test_dead_watch_is_detected),
        cmocka_unit_test(test_slow_list_page_is_not_cut),
        cmocka_unit_test(test_silent_connection_is_dropped),
        cmocka_unit_test(test_answering_connection_is_kept),
        cmocka_unit_test(test_probe_spares_a_reused_number),
        cmocka_unit_test(test_watch_stop_and_free_with_calls_open),
        cmocka_unit_test(test_setup_failure_reported_from_the_loop),
        cmocka_unit_test(test_send_from_a_watch_event),
        cmocka_unit_test(test_watch_stopped_from_its_own_event),
        cmocka_unit_test(test_watch_stopped_from_another_watch_event),
        cmocka_unit_test(test_watch_stopped_from_its_end),
        cmocka_unit_test(test_watches_sent_together_all_open),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
