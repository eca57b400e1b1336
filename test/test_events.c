/* The event recorder against a loopback API server: the created Event's
 * fields, repeats folded into a series patch, a storm of identical events
 * costing a handful of requests, the rate limits on distinct events (per
 * object and type, and the backstop over all objects), drops logged, the
 * bounded tables, and a vanished Event starting over. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/log.h"
#include "kube/client.h"
#include "server/events.h"
#include "support/httpd.h"
#include "support/testutil.h"

struct fx {
    uv_loop_t loop;
    struct th_server *srv;
    struct gm_kube_config cfg;
    struct gm_kube *k;
    struct gm_recorder *r;
    int posts, patches;
    int patch_404;
    int post_503; /* POSTs still to answer 503 */
    char post_path[2048], post_body[4096];
    char patch_path[2048], patch_body[1024], patch_type[128];
};

static void handler(void *ud, const struct th_req *r, struct th_conn *c)
{
    struct fx *f = ud;
    if (strcmp(r->method, "POST") == 0) {
        f->posts++;
        snprintf(f->post_path, sizeof(f->post_path), "%s", r->path);
        snprintf(f->post_body, sizeof(f->post_body), "%s", r->body);
        if (f->post_503 > 0) {
            f->post_503--;
            th_respond(c, 503, NULL,
                       "{\"kind\":\"Status\",\"reason\":"
                       "\"ServiceUnavailable\",\"code\":503}");
            return;
        }
        th_respond(c, 201, NULL, r->body);
    } else if (strcmp(r->method, "PATCH") == 0) {
        f->patches++;
        snprintf(f->patch_path, sizeof(f->patch_path), "%s", r->path);
        snprintf(f->patch_body, sizeof(f->patch_body), "%s", r->body);
        snprintf(f->patch_type, sizeof(f->patch_type), "%s", r->content_type);
        if (f->patch_404)
            th_respond(c, 404, NULL,
                       "{\"kind\":\"Status\",\"reason\":\"NotFound\","
                       "\"code\":404}");
        else
            th_respond(c, 200, NULL, "{}");
    } else {
        th_respond(c, 405, NULL, "{}");
    }
}

static struct fx *fx_new(const struct gm_recorder_opts *extra)
{
    struct fx *f = calloc(1, sizeof(*f));
    uv_loop_init(&f->loop);
    assert_int_equal(th_start(&f->loop, handler, f, &f->srv), 0);
    f->cfg.server = strdup(th_url(f->srv));
    assert_int_equal(gm_kube_new(&f->loop, &f->cfg, NULL, &f->k), 0);
    struct gm_recorder_opts o = {.series_interval_ms = 200};
    if (extra)
        o = *extra;
    o.identity = "gpumode-controller-abc";
    assert_int_equal(gm_recorder_new(&f->loop, f->k, &o, &f->r), 0);
    return f;
}

static void fx_free(struct fx *f)
{
    gm_recorder_free(f->r);
    gm_kube_free(f->k);
    th_stop(f->srv);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f->cfg.server);
    free(f);
}

static void run_for(struct fx *f, int ms)
{
    int never = 0;
    th_run_until(&f->loop, &never, ms);
}

static const struct gm_event_ref node = {
    .api_version = "v1", .kind = "Node", .name = "gpu-07", .uid = "u-1"};

/* The string at a dotted path of a JSON text ("" when absent). */
static const char *field(const char *text, const char *dotted)
{
    static char out[1200];
    char path[128];
    json_object *root = json_tokener_parse(text), *o = root;
    snprintf(path, sizeof(path), "%s", dotted);
    out[0] = '\0';
    for (char *save, *p = strtok_r(path, ".", &save); p && o;
         p = strtok_r(NULL, ".", &save))
        if (!json_object_object_get_ex(o, p, &o))
            o = NULL;
    if (o)
        snprintf(out, sizeof(out), "%s", json_object_get_string(o));
    json_object_put(root);
    return out;
}

static void test_first_event_fields(void **state)
{
    (void)state;
    struct fx *f = fx_new(NULL);
    assert_int_equal(gm_event(f->r, &node, GM_EVENT_WARNING,
                              GM_REASON_EVICTION_BLOCKED, "Drain",
                              "eviction of %s blocked by PodDisruptionBudget",
                              "team-a/train-0"),
                     0);
    assert_true(th_run_until(&f->loop, &f->posts, 2000));
    run_for(f, 20);
    const char *b = f->post_body;
    assert_string_equal(f->post_path,
                        "/apis/events.k8s.io/v1/namespaces/default/events");
    assert_string_equal(field(b, "apiVersion"), "events.k8s.io/v1");
    assert_string_equal(field(b, "kind"), "Event");
    assert_string_equal(field(b, "metadata.namespace"), "default");
    assert_memory_equal(field(b, "metadata.name"), "gpu-07.", 7);
    assert_string_equal(field(b, "regarding.kind"), "Node");
    assert_string_equal(field(b, "regarding.name"), "gpu-07");
    assert_string_equal(field(b, "regarding.uid"), "u-1");
    assert_string_equal(field(b, "regarding.apiVersion"), "v1");
    assert_null(strstr(b, "\"regarding\":{\"apiVersion\":\"v1\",\"kind\":"
                          "\"Node\",\"namespace\""));
    assert_string_equal(field(b, "reason"), "EvictionBlocked");
    assert_string_equal(field(b, "action"), "Drain");
    assert_string_equal(field(b, "type"), "Warning");
    assert_string_equal(field(b, "note"),
                        "eviction of team-a/train-0 blocked by "
                        "PodDisruptionBudget");
    assert_string_equal(field(b, "reportingController"),
                        "gpumode.io/controller");
    assert_string_equal(field(b, "reportingInstance"),
                        "gpumode-controller-abc");
    assert_int_equal(strlen(field(b, "eventTime")), 27);
    assert_null(strstr(b, "\"series\""));

    /* A namespaced object's events stay in its namespace. */
    const struct gm_event_ref pod = {.api_version = "v1",
                                     .kind = "Pod",
                                     .namespace = "gpumode-system",
                                     .name = "helper-gpu-07"};
    assert_int_equal(gm_event(f->r, &pod, GM_EVENT_NORMAL,
                              GM_REASON_RECONFIGURED, "Reconfigure", "done"),
                     0);
    int two = 0;
    while (f->posts < 2 && two++ < 200)
        run_for(f, 10);
    assert_string_equal(
        f->post_path,
        "/apis/events.k8s.io/v1/namespaces/gpumode-system/events");
    assert_string_equal(field(f->post_body, "regarding.namespace"),
                        "gpumode-system");
    assert_string_equal(field(f->post_body, "type"), "Normal");

    /* A long note is cut to the API's 1 KiB without splitting a rune. */
    char longnote[3000];
    memset(longnote, 'a', 1023);
    strcpy(longnote + 1023, "\xc3\xa9 and more");
    assert_int_equal(gm_event(f->r, &node, GM_EVENT_NORMAL,
                              GM_REASON_SWITCH_STARTED, "Switch", "%s",
                              longnote),
                     0);
    while (f->posts < 3 && two++ < 400)
        run_for(f, 10);
    assert_int_equal(strlen(field(f->post_body, "note")), 1023);
    /* A note its caller's buffer cut inside a rune loses the part. */
    strcpy(longnote + 1020, "\xe2\x82");
    assert_int_equal(gm_event(f->r, &node, GM_EVENT_NORMAL,
                              GM_REASON_SWITCH_STARTED, "Switch", "%s",
                              longnote),
                     0);
    while (f->posts < 4 && two++ < 600)
        run_for(f, 10);
    assert_int_equal(strlen(field(f->post_body, "note")), 1020);
    /* A whole rune at the end stays. */
    strcpy(longnote + 1020, "\xe2\x82\xac");
    assert_int_equal(gm_event(f->r, &node, GM_EVENT_NORMAL,
                              GM_REASON_SWITCH_STARTED, "Switch", "%s",
                              longnote),
                     0);
    while (f->posts < 5 && two++ < 800)
        run_for(f, 10);
    assert_int_equal(strlen(field(f->post_body, "note")), 1023);
    assert_int_equal(gm_event(f->r, &node, GM_EVENT_NORMAL, "", "x", "y"),
                     -EINVAL);
    assert_int_equal(gm_event(f->r, &node, GM_EVENT_NORMAL, "R", NULL, "y"),
                     -EINVAL);
    fx_free(f);
}

static void test_repeat_becomes_series_patch(void **state)
{
    (void)state;
    struct fx *f = fx_new(NULL);
    for (int i = 0; i < 3; i++)
        assert_int_equal(gm_event(f->r, &node, GM_EVENT_WARNING,
                                  GM_REASON_SWITCH_FAILED, "Switch",
                                  "helper pod failed: %s", "GPUInUse"),
                         0);
    assert_true(th_run_until(&f->loop, &f->patches, 2000));
    assert_int_equal(f->posts, 1);
    char want[512];
    snprintf(want, sizeof(want),
             "/apis/events.k8s.io/v1/namespaces/default/events/%s",
             field(f->post_body, "metadata.name"));
    assert_string_equal(f->patch_path, want);
    assert_string_equal(f->patch_type, "application/merge-patch+json");
    assert_string_equal(field(f->patch_body, "series.count"), "3");
    assert_int_equal(strlen(field(f->patch_body, "series.lastObservedTime")),
                     27);

    /* Nothing new, nothing sent; one more, one more patch after the
     * interval. */
    run_for(f, 300);
    assert_int_equal(f->patches, 1);
    assert_int_equal(gm_event(f->r, &node, GM_EVENT_WARNING,
                              GM_REASON_SWITCH_FAILED, "Switch",
                              "helper pod failed: %s", "GPUInUse"),
                     0);
    run_for(f, 300);
    assert_int_equal(f->patches, 2);
    assert_string_equal(field(f->patch_body, "series.count"), "4");
    assert_int_equal(f->posts, 1);

    /* A different note is a different event. */
    assert_int_equal(gm_event(f->r, &node, GM_EVENT_WARNING,
                              GM_REASON_SWITCH_FAILED, "Switch",
                              "helper pod failed: %s", "ResetRequired"),
                     0);
    run_for(f, 100);
    assert_int_equal(f->posts, 2);
    fx_free(f);
}

static void test_storm_is_a_handful_of_requests(void **state)
{
    (void)state;
    struct fx *f = fx_new(NULL);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(gm_event(f->r, &node, GM_EVENT_WARNING,
                                  GM_REASON_EVICTION_BLOCKED, "Drain",
                                  "eviction blocked"),
                         0);
    run_for(f, 700);
    assert_int_equal(f->posts, 1);
    assert_true(f->patches >= 1 && f->patches <= 2);
    assert_string_equal(field(f->patch_body, "series.count"), "1000");

    /* A storm of distinct events is held by the object's rate limit: its
     * burst of 25 less the token the first event above took. */
    int ok = 0, dropped = 0;
    for (int i = 0; i < 200; i++) {
        int err =
            gm_event(f->r, &node, GM_EVENT_WARNING, GM_REASON_EVICTION_BLOCKED,
                     "Drain", "eviction of pod-%d blocked", i);
        if (err == 0)
            ok++;
        else if (err == -EAGAIN)
            dropped++;
    }
    assert_int_equal(ok, 24);
    assert_int_equal(ok + dropped, 200);
    struct gm_recorder_stats st;
    gm_recorder_get_stats(f->r, &st);
    assert_int_equal(st.dropped, (unsigned long)dropped);
    run_for(f, 200);
    assert_true(f->posts <= 26);
    fx_free(f);
}

/* Runs the loop until the server has seen n POSTs or 2 s pass. */
static void wait_posts(struct fx *f, int n)
{
    for (int i = 0; f->posts < n && i < 200; i++)
        run_for(f, 10);
}

/* A rollout that starts 50 switches in one pass announces every one: the
 * limit is per object, not one bucket shared by all. */
static void test_many_objects_each_get_their_event(void **state)
{
    (void)state;
    struct fx *f = fx_new(NULL);
    for (int i = 0; i < 60; i++) {
        char name[32], uid[32];
        snprintf(name, sizeof(name), "gpu-%02d", i);
        snprintf(uid, sizeof(uid), "u-%d", i);
        const struct gm_event_ref n = {
            .api_version = "v1", .kind = "Node", .name = name, .uid = uid};
        assert_int_equal(gm_event(f->r, &n, GM_EVENT_NORMAL,
                                  GM_REASON_SWITCH_STARTED, "Switch",
                                  "switching to mig"),
                         0);
    }
    struct gm_recorder_stats st;
    gm_recorder_get_stats(f->r, &st);
    assert_int_equal(st.created, 60);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(st.objects, 60);
    wait_posts(f, 60);
    assert_int_equal(f->posts, 60);
    fx_free(f);
}

/* One object gets client-go's burst of 25 distinct events of a type; the
 * rest are dropped and counted. Its Warnings have their own bucket, other
 * objects are untouched, and a repeat still costs nothing. */
static void test_one_object_is_limited(void **state)
{
    (void)state;
    struct fx *f = fx_new(NULL);
    for (int i = 0; i < 30; i++)
        assert_int_equal(gm_event(f->r, &node, GM_EVENT_NORMAL,
                                  GM_REASON_RECONFIGURED, "Reconfigure",
                                  "step %d", i),
                         i < 25 ? 0 : -EAGAIN);
    struct gm_recorder_stats st;
    gm_recorder_get_stats(f->r, &st);
    assert_int_equal(st.created, 25);
    assert_int_equal(st.dropped, 5);

    assert_int_equal(gm_event(f->r, &node, GM_EVENT_NORMAL,
                              GM_REASON_RECONFIGURED, "Reconfigure", "step %d",
                              3),
                     0);
    assert_int_equal(gm_event(f->r, &node, GM_EVENT_WARNING,
                              GM_REASON_SWITCH_FAILED, "Switch", "failed"),
                     0);
    const struct gm_event_ref other = {
        .api_version = "v1", .kind = "Node", .name = "gpu-08", .uid = "u-2"};
    assert_int_equal(gm_event(f->r, &other, GM_EVENT_NORMAL,
                              GM_REASON_RECONFIGURED, "Reconfigure", "step %d",
                              0),
                     0);
    gm_recorder_get_stats(f->r, &st);
    assert_int_equal(st.created, 27);
    assert_int_equal(st.dropped, 5);
    wait_posts(f, 27);
    run_for(f, 20);
    assert_int_equal(f->posts, 27);
    fx_free(f);
}

/* An object earns a token back per object_refill_ms; its bucket is
 * forgotten once it would be full again, and when the table is full of
 * busy ones the least recently used goes. */
static void test_object_bucket_refills_and_is_bounded(void **state)
{
    (void)state;
    struct gm_recorder_opts o = {.series_interval_ms = 200,
                                 .object_burst = 2,
                                 .object_refill_ms = 100,
                                 .max_objects = 2};
    struct fx *f = fx_new(&o);
    const struct gm_event_ref b = {
        .api_version = "v1", .kind = "Node", .name = "gpu-b"};
    const struct gm_event_ref c = {
        .api_version = "v1", .kind = "Node", .name = "gpu-c"};
    const struct gm_event_ref d = {
        .api_version = "v1", .kind = "Node", .name = "gpu-d"};
    int i = 0;
    assert_int_equal(
        gm_event(f->r, &node, GM_EVENT_NORMAL, "R", "A", "%d", i++), 0);
    assert_int_equal(
        gm_event(f->r, &node, GM_EVENT_NORMAL, "R", "A", "%d", i++), 0);
    assert_int_equal(
        gm_event(f->r, &node, GM_EVENT_NORMAL, "R", "A", "%d", i++), -EAGAIN);
    run_for(f, 150);
    assert_int_equal(
        gm_event(f->r, &node, GM_EVENT_NORMAL, "R", "A", "%d", i++), 0);
    assert_int_equal(
        gm_event(f->r, &node, GM_EVENT_NORMAL, "R", "A", "%d", i++), -EAGAIN);

    struct gm_recorder_stats st;
    assert_int_equal(gm_event(f->r, &b, GM_EVENT_NORMAL, "R", "A", "b"), 0);
    assert_int_equal(gm_event(f->r, &c, GM_EVENT_NORMAL, "R", "A", "c"), 0);
    gm_recorder_get_stats(f->r, &st);
    assert_int_equal(st.objects, 2);
    run_for(f, 250); /* both would be full again: both are forgotten */
    assert_int_equal(gm_event(f->r, &d, GM_EVENT_NORMAL, "R", "A", "d"), 0);
    gm_recorder_get_stats(f->r, &st);
    assert_int_equal(st.objects, 1);
    fx_free(f);
}

/* The backstop over all objects holds a flood of Normal events for many
 * objects, and keeps the last quarter of its burst for Warnings. */
static void test_backstop_keeps_room_for_warnings(void **state)
{
    (void)state;
    struct gm_recorder_opts o = {
        .series_interval_ms = 200, .burst = 8, .qps = 0.01};
    struct fx *f = fx_new(&o);
    int ok = 0;
    for (int i = 0; i < 10; i++) {
        char name[32];
        snprintf(name, sizeof(name), "gpu-%02d", i);
        const struct gm_event_ref n = {
            .api_version = "v1", .kind = "Node", .name = name};
        int err = gm_event(f->r, &n, GM_EVENT_NORMAL, GM_REASON_SWITCH_STARTED,
                           "Switch", "go");
        assert_true(err == 0 || err == -EAGAIN);
        ok += err == 0;
    }
    assert_int_equal(ok, 6);
    assert_int_equal(gm_event(f->r, &node, GM_EVENT_WARNING,
                              GM_REASON_SWITCH_FAILED, "Switch", "1"),
                     0);
    assert_int_equal(gm_event(f->r, &node, GM_EVENT_WARNING,
                              GM_REASON_SWITCH_FAILED, "Switch", "2"),
                     0);
    assert_int_equal(gm_event(f->r, &node, GM_EVENT_WARNING,
                              GM_REASON_SWITCH_FAILED, "Switch", "3"),
                     -EAGAIN);
    fx_free(f);
}

/* A drop is logged at once with the object and why; more within the
 * second are counted into one line when it is up. */
static void test_drops_are_logged(void **state)
{
    (void)state;
    struct gm_recorder_opts o = {.series_interval_ms = 200, .object_burst = 1};
    struct fx *f = fx_new(&o);
    struct tu_log log;
    tu_log_begin(&log, GM_LOG_WARN);

    assert_int_equal(gm_event(f->r, &node, GM_EVENT_WARNING,
                              GM_REASON_ROLLED_BACK, "Switch", "a"),
                     0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(gm_event(f->r, &node, GM_EVENT_WARNING,
                                  GM_REASON_ROLLED_BACK, "Switch", "b%d", i),
                         -EAGAIN);
    long first = tu_log_pos(&log);
    run_for(f, 1100);

    char text[4096];
    tu_log_end(&log, text, sizeof(text));
    const char *one = strstr(text, "event dropped: Node gpu-07: Warning "
                                   "RolledBack: \\\"b0\\\" (rate limit per "
                                   "object)");
    assert_non_null(one);
    assert_true(one - text < first);
    assert_non_null(strstr(text, "node=gpu-07"));
    const char *two = strstr(text, "2 events dropped since the last such "
                                   "line; the last: Node gpu-07: Warning "
                                   "RolledBack: \\\"b2\\\"");
    assert_non_null(two);
    assert_true(two - text >= first);
    fx_free(f);
}

static void test_bounded_table_and_gone_event(void **state)
{
    (void)state;
    struct gm_recorder_opts o = {
        .series_interval_ms = 100, .max_keys = 4, .burst = 100, .qps = 100};
    struct fx *f = fx_new(&o);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(gm_event(f->r, &node, GM_EVENT_NORMAL,
                                  GM_REASON_SWITCH_STARTED, "Switch",
                                  "attempt %d", i),
                         0);
        run_for(f, 30); /* let each create finish so it can be evicted */
    }
    struct gm_recorder_stats st;
    gm_recorder_get_stats(f->r, &st);
    assert_true(st.keys <= 4);
    assert_int_equal(f->posts, 10);

    /* The API server dropped the Event (TTL): the failed patch forgets it
     * and the next occurrence creates a new one. */
    f->patch_404 = 1;
    assert_int_equal(gm_event(f->r, &node, GM_EVENT_NORMAL,
                              GM_REASON_SWITCH_STARTED, "Switch", "attempt %d",
                              9),
                     0);
    run_for(f, 250);
    assert_int_equal(f->patches, 1);
    f->patch_404 = 0;
    assert_int_equal(gm_event(f->r, &node, GM_EVENT_NORMAL,
                              GM_REASON_SWITCH_STARTED, "Switch", "attempt %d",
                              9),
                     0);
    run_for(f, 100);
    assert_int_equal(f->posts, 11);
    fx_free(f);
}

static void test_free_with_requests_out(void **state)
{
    (void)state;
    struct fx *f = fx_new(NULL);
    assert_int_equal(gm_event(f->r, &node, GM_EVENT_NORMAL,
                              GM_REASON_SWITCH_COMPLETED, "Switch", "done"),
                     0);
    fx_free(f); /* the create is still out; nothing may touch the recorder */
}

/* A create that failed is made again when the event recurs a series
 * interval later (200 ms here), not counted unseen for as long as it
 * recurs; a repeat within the interval is only counted. */
static void test_failed_create_is_tried_again(void **state)
{
    (void)state;
    struct fx *f = fx_new(NULL);
    f->post_503 = 1;
    assert_int_equal(gm_event(f->r, &node, GM_EVENT_WARNING,
                              GM_REASON_SWITCH_FAILED, "Switch", "stuck"),
                     0);
    while (f->posts < 1)
        run_for(f, 10);
    run_for(f, 50);
    assert_int_equal(gm_event(f->r, &node, GM_EVENT_WARNING,
                              GM_REASON_SWITCH_FAILED, "Switch", "stuck"),
                     0);
    run_for(f, 100);
    assert_int_equal(f->posts, 1);
    run_for(f, 200);
    assert_int_equal(gm_event(f->r, &node, GM_EVENT_WARNING,
                              GM_REASON_SWITCH_FAILED, "Switch", "stuck"),
                     0);
    run_for(f, 100);
    assert_int_equal(f->posts, 2);
    assert_string_equal(field(f->post_body, "note"), "stuck");
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_event_fields),
        cmocka_unit_test(test_repeat_becomes_series_patch),
        cmocka_unit_test(test_failed_create_is_tried_again),
        cmocka_unit_test(test_storm_is_a_handful_of_requests),
        cmocka_unit_test(test_many_objects_each_get_their_event),
        cmocka_unit_test(test_one_object_is_limited),
        cmocka_unit_test(test_object_bucket_refills_and_is_bounded),
        cmocka_unit_test(test_backstop_keeps_room_for_warnings),
        cmocka_unit_test(test_drops_are_logged),
        cmocka_unit_test(test_bounded_table_and_gone_event),
        cmocka_unit_test(test_free_with_requests_out),
    };
    gm_log_setup(GM_LOG_ERROR, 0); /* drops are logged at warn */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
