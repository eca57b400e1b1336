/* The reflector against a scripted API server on loopback: first list in
 * pages, watch from the list's resourceVersion with bookmarks, resume after
 * the server's timeout, relist on 410 (in the stream and as a response)
 * with the differences reported, and back off after errors. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kube/node.h"
#include "kube/reflector.h"
#include "support/httpd.h"

#define MAX_NODES 8

struct apiserver {
    /* The store: name and resourceVersion of each node, "" when absent. */
    char names[MAX_NODES][16];
    char rvs[MAX_NODES][16];
    char list_rv[16];
    int lists, watches;
    char watch_paths[16][2048];
    struct th_conn *watch; /* the open watch stream, if any */
    int watch_answer;      /* 0: stream; else answer with this status */
    bool always_gone;      /* answer every watch 410 */
    int list_answers[4];   /* the next lists' statuses, 0: served */
    int n_list_answers;
};

struct fx {
    uv_loop_t loop;
    struct th_server *srv;
    struct apiserver api;
    struct gm_kube_config cfg;
    struct gm_kube *k;
    struct gm_reflector *r;
    char log[2048]; /* "+n1 ~n2 -n3 S " */
    /* What the cache held when the last delete was told: its size, and
     * whether the deleted object was still in it. */
    size_t cached_at_delete;
    bool deleted_cached;
    int synced;
    /* A handler frees the reflector when it logs this op ('+', '~', '-',
     * 'S'; '*' any of the first three), the free_after'th time. */
    char free_on;
    const char *refuse; /* decode leaves this node out, or NULL */
    int free_after;
};

static void node_json(char *out, size_t n, const char *name, const char *rv)
{
    snprintf(out, n,
             "{\"kind\":\"Node\",\"metadata\":{\"name\":\"%s\","
             "\"resourceVersion\":\"%s\",\"labels\":{\"pool\":\"a\"}}}",
             name, rv);
}

static void serve_list(struct fx *f, const struct th_req *r, struct th_conn *c)
{
    /* Pages of two; the continue token is the index to resume at. */
    int start = 0;
    const char *cont = strstr(r->path, "continue=");
    if (cont)
        start = atoi(cont + 9);
    char body[8192] = "", item[256];
    int shown = 0, i = start;
    strcat(body, "{\"kind\":\"NodeList\",\"items\":[");
    for (; i < MAX_NODES && shown < 2; i++) {
        if (f->api.names[i][0] == '\0')
            continue;
        node_json(item, sizeof(item), f->api.names[i], f->api.rvs[i]);
        if (shown++)
            strcat(body, ",");
        strcat(body, item);
    }
    int more = 0;
    for (int j = i; j < MAX_NODES; j++)
        more |= f->api.names[j][0] != '\0';
    char meta[128];
    if (more)
        snprintf(meta, sizeof(meta),
                 "],\"metadata\":{\"resourceVersion\":\"%s\",\"continue\":"
                 "\"%d\"}}",
                 f->api.list_rv, i);
    else
        snprintf(meta, sizeof(meta),
                 "],\"metadata\":{\"resourceVersion\":"
                 "\"%s\"}}",
                 f->api.list_rv);
    strcat(body, meta);
    th_respond(c, 200, NULL, body);
}

static void handler(void *ud, const struct th_req *r, struct th_conn *c)
{
    struct fx *f = ud;
    if (strstr(r->path, "watch=1") == NULL) {
        int code = f->api.lists < f->api.n_list_answers
                       ? f->api.list_answers[f->api.lists]
                       : 0;
        f->api.lists++;
        if (code) {
            char body[128];
            snprintf(body, sizeof(body), "{\"kind\":\"Status\",\"code\":%d}",
                     code);
            th_respond(c, code, NULL, body);
            return;
        }
        serve_list(f, r, c);
        return;
    }
    memcpy(f->api.watch_paths[f->api.watches++ % 16], r->path, sizeof(r->path));
    if (f->api.always_gone)
        f->api.watch_answer = 410;
    if (f->api.watch_answer) {
        char body[256];
        snprintf(body, sizeof(body),
                 "{\"kind\":\"Status\",\"code\":%d,\"reason\":\"%s\"}",
                 f->api.watch_answer,
                 f->api.watch_answer == 410 ? "Expired" : "InternalError");
        th_respond(c, f->api.watch_answer, NULL, body);
        f->api.watch_answer = 0;
        return;
    }
    f->api.watch = c;
    th_stream_start(c, 200);
}

static void send_event(struct fx *f, const char *type, const char *name,
                       const char *rv)
{
    char obj[256], ev[512];
    if (strcmp(type, "BOOKMARK") == 0)
        snprintf(
            obj, sizeof(obj),
            "{\"kind\":\"Node\",\"metadata\":{\"resourceVersion\":\"%s\"}}",
            rv);
    else if (strcmp(type, "ERROR") == 0)
        snprintf(obj, sizeof(obj),
                 "{\"kind\":\"Status\",\"code\":410,\"reason\":\"Expired\","
                 "\"message\":\"too old resource version\"}");
    else if (strcmp(type, "ERROR500") == 0) {
        snprintf(obj, sizeof(obj),
                 "{\"kind\":\"Status\",\"code\":500,\"reason\":"
                 "\"InternalError\",\"message\":\"etcdserver: leader "
                 "changed\"}");
        type = "ERROR";
    } else
        node_json(obj, sizeof(obj), name, rv);
    snprintf(ev, sizeof(ev), "{\"type\":\"%s\",\"object\":%s}\n", type, obj);
    th_stream_write(f->api.watch, ev, strlen(ev));
}

static void set_node(struct fx *f, int i, const char *name, const char *rv)
{
    snprintf(f->api.names[i], 16, "%s", name);
    snprintf(f->api.rvs[i], 16, "%s", rv);
}

/* ---- the reflector's user: a node cache that logs events ---- */

static void *decode(void *ud, json_object *obj)
{
    struct fx *f = ud;
    struct gm_node *n = NULL;
    gm_node_from_json(obj, &n);
    if (n && f->refuse && strcmp(n->name, f->refuse) == 0) {
        gm_node_free(n);
        return NULL;
    }
    return n;
}

static void free_obj(void *ud, void *obj)
{
    (void)ud;
    gm_node_free(obj);
}

static const char *rv_of(const void *obj)
{
    return ((const struct gm_node *)obj)->resource_version;
}

static void logf_(struct fx *f, char op, const char *key)
{
    char tmp[64];
    snprintf(tmp, sizeof(tmp), "%c%s ", op, key);
    strncat(f->log, tmp, sizeof(f->log) - strlen(f->log) - 1);
    bool told = op == '+' || op == '~' || op == '-';
    if ((f->free_on == op || (f->free_on == '*' && told)) &&
        --f->free_after == 0) {
        gm_reflector_free(f->r);
        f->r = NULL;
    }
}

static void on_add(void *ud, const char *key, const void *obj)
{
    (void)obj;
    logf_(ud, '+', key);
}

/* Logged as the key with '^': each update is carried first. */
static void carry(void *ud, const void *old, void *obj)
{
    const struct gm_node *was = old;
    struct gm_node *now = obj;
    assert_string_equal(was->name, now->name);
    assert_string_not_equal(was->resource_version, now->resource_version);
    logf_(ud, '^', now->name);
}

static void on_update(void *ud, const char *key, const void *old,
                      const void *obj)
{
    (void)old;
    (void)obj;
    logf_(ud, '~', key);
}

static void on_delete(void *ud, const char *key, const void *obj)
{
    struct fx *f = ud;
    (void)obj;
    assert_non_null(f->r); /* nothing is told after a free */
    f->cached_at_delete = gm_reflector_items(f->r)->len;
    f->deleted_cached = gm_reflector_get(f->r, key) != NULL;
    logf_(ud, '-', key);
}

static void on_synced(void *ud)
{
    struct fx *f = ud;
    f->synced++;
    logf_(ud, 'S', "");
}

static const struct gm_reflector_ops ops = {
    .decode = decode,
    .free_obj = free_obj,
    .resource_version = rv_of,
    .carry = carry,
    .on_add = on_add,
    .on_update = on_update,
    .on_delete = on_delete,
    .on_synced = on_synced,
};

static struct fx *fx_new(void)
{
    struct fx *f = calloc(1, sizeof(*f));
    uv_loop_init(&f->loop);
    assert_int_equal(th_start(&f->loop, handler, f, &f->srv), 0);
    f->cfg.server = strdup(th_url(f->srv));
    assert_int_equal(gm_kube_new(&f->loop, &f->cfg, NULL, &f->k), 0);
    set_node(f, 0, "n1", "10");
    set_node(f, 1, "n2", "11");
    set_node(f, 2, "n3", "12");
    snprintf(f->api.list_rv, 16, "100");
    return f;
}

static void fx_free(struct fx *f)
{
    gm_reflector_free(f->r);
    gm_kube_free(f->k);
    th_stop(f->srv);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f->cfg.server);
    free(f);
}

static void start_backoff(struct fx *f, long min_ms, long max_ms)
{
    struct gm_reflector_opts o = {
        .path = "/api/v1/nodes",
        .label_selector = "pool=a",
        .page_size = 2,
        .backoff_min_ms = min_ms,
        .backoff_max_ms = max_ms,
    };
    assert_int_equal(gm_reflector_start(f->k, &f->loop, &o, &ops, f, &f->r), 0);
}

static void start(struct fx *f)
{
    start_backoff(f, 50, 200);
}

static void run_until_watches(struct fx *f, int n)
{
    uint64_t end = uv_now(&f->loop) + 5000;
    while ((f->api.watches < n ||
            (f->api.watch == NULL && f->api.watch_answer == 0)) &&
           uv_now(&f->loop) < end)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_true(f->api.watches >= n);
}

static void run_until_log(struct fx *f, const char *expect)
{
    uint64_t end = uv_now(&f->loop) + 5000;
    while (strstr(f->log, expect) == NULL && uv_now(&f->loop) < end)
        uv_run(&f->loop, UV_RUN_ONCE);
    if (strstr(f->log, expect) == NULL)
        fail_msg("log \"%s\" lacks \"%s\"", f->log, expect);
}

static void test_list_in_pages_then_watch(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    start(f);
    run_until_watches(f, 1);
    assert_int_equal(strlen(f->log), strlen("+n1 +n2 +n3 S "));
    assert_non_null(strstr(f->log, "+n1 "));
    assert_non_null(strstr(f->log, "+n2 "));
    assert_non_null(strstr(f->log, "+n3 "));
    assert_non_null(strstr(f->log, "S "));
    assert_int_equal(f->api.lists, 2); /* two pages of two */
    assert_true(gm_reflector_has_synced(f->r));
    assert_non_null(gm_reflector_get(f->r, "n2"));
    const char *p = f->api.watch_paths[0];
    assert_non_null(strstr(p, "allowWatchBookmarks=true"));
    assert_non_null(strstr(p, "resourceVersion=100"));
    assert_non_null(strstr(p, "labelSelector=pool%3Da"));
    const char *t = strstr(p, "timeoutSeconds=");
    assert_non_null(t);
    int secs = atoi(t + 15);
    assert_true(secs >= 300 && secs <= 600);
    fx_free(f);
}

static void test_events_bookmark_and_resume(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    start(f);
    run_until_watches(f, 1);
    f->log[0] = '\0';
    send_event(f, "MODIFIED", "n2", "120");
    send_event(f, "ADDED", "n4", "121");
    send_event(f, "DELETED", "n1", "122");
    send_event(f, "BOOKMARK", NULL, "150");
    run_until_log(f, "-n1 ");
    assert_string_equal(f->log, "^n2 ~n2 +n4 -n1 ");
    assert_null(gm_reflector_get(f->r, "n1"));
    assert_string_equal(((const struct gm_node *)gm_reflector_get(f->r, "n2"))
                            ->resource_version,
                        "120");
    /* The server's timeout ends the stream: resume from the bookmark. */
    while (strcmp(gm_reflector_resource_version(f->r), "150") != 0)
        uv_run(&f->loop, UV_RUN_ONCE);
    th_stream_end(f->api.watch);
    f->api.watch = NULL;
    run_until_watches(f, 2);
    assert_non_null(strstr(f->api.watch_paths[1], "resourceVersion=150"));
    assert_int_equal(f->api.lists, 2); /* no relist */
    struct gm_reflector_stats st;
    gm_reflector_get_stats(f->r, &st);
    assert_int_equal(st.bookmarks, 1);
    fx_free(f);
}

/* A cached object whose new version the decoder cannot give is not kept
 * as it was: the watch ends and a relist puts the cache right (here the
 * decoder leaves n2 out, so the relist finds it gone). */
static void test_undecoded_on_watch_relists(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    start(f);
    run_until_watches(f, 1);
    f->log[0] = '\0';
    f->refuse = "n2";
    send_event(f, "MODIFIED", "n2", "120");
    run_until_log(f, "-n2 ");
    assert_null(gm_reflector_get(f->r, "n2"));
    assert_non_null(gm_reflector_get(f->r, "n1"));
    assert_int_equal(f->api.lists, 4); /* two pages again */
    fx_free(f);
}

static void test_410_in_stream_relists_with_diff(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    start(f);
    run_until_watches(f, 1);
    /* While we were cut off: n1 went, n2 changed, n4 came, n3 unchanged. */
    set_node(f, 0, "", "");
    set_node(f, 1, "n2", "300");
    set_node(f, 3, "n4", "301");
    snprintf(f->api.list_rv, 16, "310");
    f->log[0] = '\0';
    send_event(f, "ERROR", NULL, NULL);
    f->api.watch = NULL;
    run_until_watches(f, 2);
    run_until_log(f, "S ");
    /* Order of adds/updates follows the map; check each. */
    assert_non_null(strstr(f->log, "^n2 ~n2 "));
    assert_non_null(strstr(f->log, "+n4 "));
    assert_non_null(strstr(f->log, "-n1 "));
    assert_null(strstr(f->log, "n3"));
    /* Told of the delete, a handler reads the cache as listed: the three
     * that are there, not what was left of the old one. */
    assert_int_equal(f->cached_at_delete, 3);
    assert_false(f->deleted_cached);
    assert_non_null(strstr(f->api.watch_paths[1], "resourceVersion=310"));
    struct gm_reflector_stats st;
    gm_reflector_get_stats(f->r, &st);
    assert_int_equal(st.gone, 1);
    assert_int_equal(st.lists, 2);
    fx_free(f);
}

static void test_410_response_relists(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    start(f);
    run_until_watches(f, 1);
    f->api.watch_answer = 410;
    th_stream_end(f->api.watch); /* next watch gets 410 Gone */
    f->api.watch = NULL;
    run_until_watches(f, 3);
    struct gm_reflector_stats st;
    gm_reflector_get_stats(f->r, &st);
    assert_int_equal(st.gone, 1);
    assert_int_equal(st.lists, 2);
    assert_int_equal(f->synced, 2);
    fx_free(f);
}

/* A server that answers every watch 410 Gone, straight after each list:
 * the relists back off as errors do, not a tight loop of full lists. */
static void test_gone_again_backs_off(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    start_backoff(f, 400, 1600);
    run_until_watches(f, 1);
    f->api.always_gone = true;
    th_stream_end(f->api.watch);
    f->api.watch = NULL;
    int never = 0;
    th_run_until(&f->loop, &never, 1500);
    struct gm_reflector_stats st;
    gm_reflector_get_stats(f->r, &st);
    assert_true(st.gone >= 2);  /* it kept trying */
    assert_true(st.lists <= 4); /* after 400 ms, then 800 ms: 3 */
    f->api.always_gone = false;
    fx_free(f);
}

static void test_error_backs_off_and_resumes(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    start(f);
    run_until_watches(f, 1);
    f->api.watch_answer = 500;
    /* Ended cleanly but at once and with no event: a very short watch,
     * counted as failed (no hot loop against a server closing streams). */
    th_stream_end(f->api.watch);
    f->api.watch = NULL;
    uint64_t t0 = uv_now(&f->loop);
    run_until_watches(f, 3);
    /* Each retry waited at least the minimum backoff (50 ms). */
    assert_true(uv_now(&f->loop) - t0 >= 100);
    assert_non_null(strstr(f->api.watch_paths[2], "resourceVersion=100"));
    struct gm_reflector_stats st;
    gm_reflector_get_stats(f->r, &st);
    assert_int_equal(st.lists, 1);
    assert_int_equal(st.errors, 2);
    fx_free(f);
}

/* Another ERROR inside the stream: one error, the watch resumes from
 * where it was after a backoff, no relist. */
static void test_error_event_resumes(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    start(f);
    run_until_watches(f, 1);
    send_event(f, "ERROR500", NULL, NULL);
    f->api.watch = NULL;
    run_until_watches(f, 2);
    assert_non_null(strstr(f->api.watch_paths[1], "resourceVersion=100"));
    struct gm_reflector_stats st;
    gm_reflector_get_stats(f->r, &st);
    assert_int_equal(st.lists, 1);
    assert_int_equal(st.gone, 0);
    assert_int_equal(st.errors, 1);
    fx_free(f);
}

static void run_until_lists(struct fx *f, int n)
{
    uint64_t end = uv_now(&f->loop) + 5000;
    while (f->api.lists < n && uv_now(&f->loop) < end)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_true(f->api.lists >= n);
}

/* A list the API server refuses (403) is told apart from one that failed
 * otherwise (404 here; 5xx the client retries itself first): callers may
 * go on without a cache they may not read, not without one that is merely
 * late. Both are retried. */
static void test_refused_list_is_told_apart(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    struct gm_reflector_stats st;
    f->api.list_answers[0] = 403;
    f->api.list_answers[1] = 403;
    f->api.list_answers[2] = 404;
    f->api.n_list_answers = 3;
    start(f);
    /* An answer is in once the retry after it (>= 50 ms later) is asked. */
    run_until_lists(f, 2);
    gm_reflector_get_stats(f->r, &st);
    assert_int_equal(st.list_refused, 403);
    assert_false(gm_reflector_has_synced(f->r));
    run_until_lists(f, 4);
    gm_reflector_get_stats(f->r, &st);
    assert_int_equal(st.list_refused, 0);
    assert_int_equal(st.errors, 3);
    run_until_watches(f, 1);
    assert_true(gm_reflector_has_synced(f->r));
    fx_free(f);
}

/* A quiet watch cut for silence by the client's idle limit is resumed at
 * once from where it was, and is not an error (it backed off up to 30 s). */
static void test_quiet_watch_resumes(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    struct gm_kube_opts o = {.stream_idle_s = 1};
    gm_kube_free(f->k);
    assert_int_equal(gm_kube_new(&f->loop, &f->cfg, &o, &f->k), 0);
    start(f);
    run_until_watches(f, 1);
    uint64_t t0 = uv_now(&f->loop);
    f->api.watch = NULL; /* the server keeps it open and says nothing */
    run_until_watches(f, 2);
    assert_true(uv_now(&f->loop) - t0 >= 900);
    assert_non_null(strstr(f->api.watch_paths[1], "resourceVersion=100"));
    struct gm_reflector_stats st;
    gm_reflector_get_stats(f->r, &st);
    assert_int_equal(st.lists, 1);
    assert_int_equal(st.errors, 0);
    fx_free(f);
}

static void test_free_while_listing(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    start(f);
    /* Free at once, with the first list request in flight. */
    gm_reflector_free(f->r);
    f->r = NULL;
    uv_run(&f->loop, UV_RUN_NOWAIT);
    fx_free(f);
}

/* A handler may free the reflector it hears from, in the middle of a
 * watch chunk or of a relist: nothing more is told, nothing more is
 * requested, and every object is freed once (ASan and valgrind tell). */
static void test_free_from_a_watch_handler(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    start(f);
    run_until_watches(f, 1);
    f->log[0] = '\0';
    f->free_on = '~';
    f->free_after = 1;
    send_event(f, "MODIFIED", "n2", "120");
    send_event(f, "ADDED", "n4", "121");
    send_event(f, "DELETED", "n1", "122");
    run_until_log(f, "~n2 ");
    int never = 0;
    th_run_until(&f->loop, &never, 300);
    assert_null(f->r);
    assert_string_equal(f->log, "^n2 ~n2 ");
    assert_int_equal(f->api.watches, 1);
    assert_int_equal(f->api.lists, 2);
    fx_free(f);
}

static void test_free_from_a_relist_handler(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    start(f);
    run_until_watches(f, 1);
    /* A 410 in the stream: the relist finds n2 and n3 changed, n4 new and
     * n1 gone; the first of those told (in the map's order) frees the
     * reflector. A changed node always follows it, whose carry must not
     * run. */
    set_node(f, 0, "", "");
    set_node(f, 1, "n2", "130");
    set_node(f, 2, "n3", "132");
    set_node(f, 3, "n4", "131");
    snprintf(f->api.list_rv, 16, "200");
    f->log[0] = '\0';
    f->free_on = '*';
    f->free_after = 1;
    send_event(f, "ERROR", NULL, NULL);
    f->api.watch = NULL;
    int never = 0;
    for (int i = 0; i < 50 && f->r; i++)
        th_run_until(&f->loop, &never, 100);
    th_run_until(&f->loop, &never, 300);
    assert_null(f->r);
    int told = 0, carried_after = 0;
    for (const char *p = f->log; *p; p = strchr(p, ' ') + 1) {
        carried_after += told && *p == '^';
        told += *p == '+' || *p == '~' || *p == '-';
    }
    assert_int_equal(told, 1);
    assert_int_equal(carried_after, 0);
    assert_null(strstr(f->log, "S"));
    assert_int_equal(f->api.lists, 4);   /* two lists of two pages */
    assert_int_equal(f->api.watches, 1); /* no watch after the relist */
    fx_free(f);
}

static void test_free_when_synced(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    f->free_on = 'S';
    f->free_after = 1;
    start(f);
    run_until_log(f, "S ");
    int never = 0;
    th_run_until(&f->loop, &never, 300);
    assert_null(f->r);
    assert_int_equal(f->api.watches, 0);
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_in_pages_then_watch),
        cmocka_unit_test(test_events_bookmark_and_resume),
        cmocka_unit_test(test_undecoded_on_watch_relists),
        cmocka_unit_test(test_410_in_stream_relists_with_diff),
        cmocka_unit_test(test_410_response_relists),
        cmocka_unit_test(test_gone_again_backs_off),
        cmocka_unit_test(test_error_backs_off_and_resumes),
        cmocka_unit_test(test_error_event_resumes),
        cmocka_unit_test(test_refused_list_is_told_apart),
        cmocka_unit_test(test_quiet_watch_resumes),
        cmocka_unit_test(test_free_while_listing),
        cmocka_unit_test(test_free_from_a_watch_handler),
        cmocka_unit_test(test_free_from_a_relist_handler),
        cmocka_unit_test(test_free_when_synced),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
