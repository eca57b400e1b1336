/* Hardware an earlier attempt changed is never laid back under workloads.
 * A retry of a held node drains it again; if that drain fails, the pods it
 * could not move are still there, so the node is held as it was rather
 * than rolled back under them. A rollback of such hardware (a released
 * node, a retry whose policy went) drains before the GPUs go back: a
 * person may have uncordoned the held node, and pods landed.
 *
 * Real libcurl and libuv against the test server, which plays the API
 * server: one node in Draining of a full -> vgpu switch, cordoned by
 * gpumode, with one GPU pod (bare, so the drain refuses it, or owned by a
 * ReplicaSet, so it is evicted) or none. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/json.h"
#include "nodeswitch/record.h"
#include "support/ctlfx.h"

enum pod { NO_POD, BARE_POD, OWNED_POD };

struct fx {
    struct th_node_fx n; /* first: the handler's ud */
    enum pod pod;
    int evictions; /* eviction POSTs seen */
};

static const char pod_fmt[] =
    "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"10\"},"
    "\"items\":[{\"metadata\":{\"name\":\"work-1\",\"namespace\":"
    "\"default\",\"uid\":\"u1\",\"resourceVersion\":\"8\"%s},"
    "\"spec\":{\"nodeName\":\"gpu-001\",\"containers\":[{\"name\":\"c\","
    "\"resources\":{\"limits\":{\"nvidia.com/gpu\":\"1\"}}}]},"
    "\"status\":{\"phase\":\"Running\"}}]}";

static void handler(void *ud, const struct th_req *r, struct th_conn *c)
{
    struct fx *f = ud;
    if (f->pod != NO_POD && strstr(r->path, "fieldSelector=spec.nodeName") &&
        !strstr(r->path, "watch=1")) {
        char body[1024];
        snprintf(body, sizeof(body), pod_fmt,
                 f->pod == OWNED_POD
                     ? ",\"ownerReferences\":[{\"kind\":\"ReplicaSet\","
                       "\"name\":\"work\",\"controller\":true}]"
                     : "");
        th_respond(c, 200, NULL, body);
        return;
    }
    if (strcmp(r->method, "POST") == 0 && strstr(r->path, "/eviction")) {
        f->evictions++;
        f->n.done = 1;
        th_respond(c, 201, NULL,
                   "{\"kind\":\"Status\",\"status\":\"Success\"}");
        return;
    }
    th_node_fx_handler(ud, r, c);
}

/* Runs the node in Draining (attempt 2 after a hardware change when
 * reconfigured; rolling back when back) with pod on it, until the first
 * node patch or eviction; returns the patch (caller frees) or NULL, and
 * the evictions seen. */
static char *run(bool reconfigured, bool back, enum pod pod, int *evictions)
{
    struct fx f = {.pod = pod};
    struct gm_switch_record rec = {0};
    char err[256];
    char *text = th_ctl_switch_record(GM_PHASE_DRAIN, NULL);
    assert_int_equal(gm_record_parse(text, &rec, err, sizeof(err)), 0);
    free(text);
    rec.reconfigured = reconfigured;
    rec.rolling_back = back;
    rec.attempt = reconfigured ? 2 : 1;
    f.n.record = gm_record_format(&rec);
    gm_record_clear(&rec);

    th_ctl_start(&f.n.c, handler, &f);
    f.n.c.ctl->policy_for = th_ctl_policy_split4;
    th_run_until(&f.n.c.loop, &f.n.done, 5000);
    char *patch = f.n.patch;
    f.n.patch = NULL;
    th_node_fx_stop(&f.n);
    *evictions = f.evictions;
    return patch;
}

/* The patch's record parsed into rec; the patch itself (caller puts). */
static json_object *patched(const char *body, struct gm_switch_record *rec)
{
    char err[256];
    json_object *p = json_tokener_parse(body);
    assert_non_null(p);
    const char *text = json_object_get_string(gm_json_get(
        gm_json_get(gm_json_get(p, "metadata"), "annotations"), GM_ANN_SWITCH));
    assert_non_null(text);
    assert_int_equal(gm_record_parse(text, rec, err, sizeof(err)), 0);
    return p;
}

static const char *label(json_object *p, const char *key)
{
    return json_object_get_string(
        gm_json_get(gm_json_get(gm_json_get(p, "metadata"), "labels"), key));
}

/* The retry's drain fails on a pod it may not evict: held, not rolled
 * back, still cordoned, the message saying why. */
static void test_retry_drain_failure_holds(void **state)
{
    (void)state;
    int ev;
    char *body = run(true, false, BARE_POD, &ev);
    struct gm_switch_record rec = {0};
    assert_non_null(body);
    json_object *p = patched(body, &rec);
    assert_int_equal(rec.phase, GM_PHASE_FAILED);
    assert_false(rec.rolling_back);
    assert_true(rec.reconfigured);
    assert_string_equal(rec.reason, "DrainBlocked");
    assert_non_null(strstr(rec.message, "default/work-1"));
    assert_non_null(strstr(rec.message, "not laid back under the pods"));
    assert_string_equal(label(p, GM_LABEL_STATE), "failed");
    assert_null(gm_json_get(p, "spec")); /* stays cordoned */
    assert_int_equal(ev, 0);
    gm_record_clear(&rec);
    json_object_put(p);
    free(body);
}

/* A first attempt's drain failure changed nothing on the GPUs: it rolls
 * back as before (the old clients start again, then the uncordon). */
static void test_first_drain_failure_rolls_back(void **state)
{
    (void)state;
    int ev;
    char *body = run(false, false, BARE_POD, &ev);
    struct gm_switch_record rec = {0};
    assert_non_null(body);
    json_object *p = patched(body, &rec);
    assert_int_equal(rec.phase, GM_PHASE_START_CLIENTS);
    assert_true(rec.rolling_back);
    assert_string_equal(rec.reason, "DrainBlocked");
    assert_null(strstr(rec.message, "not laid back"));
    gm_record_clear(&rec);
    json_object_put(p);
    free(body);
}

/* The rollback of changed hardware evicts the GPU pod it finds before
 * anything else: no patch moves it on while the pod is there. */
static void test_rollback_evicts_first(void **state)
{
    (void)state;
    int ev;
    char *body = run(true, true, OWNED_POD, &ev);
    assert_null(body);
    assert_int_equal(ev, 1);
}

/* Drained, it stops the GPU clients (their stop labels in the same write)
 * and goes on to lay the GPUs back. */
static void test_rollback_drained_stops_clients(void **state)
{
    (void)state;
    int ev;
    char *body = run(true, true, NO_POD, &ev);
    struct gm_switch_record rec = {0};
    assert_non_null(body);
    json_object *p = patched(body, &rec);
    assert_int_equal(rec.phase, GM_PHASE_STOP_CLIENTS);
    assert_true(rec.rolling_back);
    assert_string_equal(label(p, "nvidia.com/gpu.deploy.device-plugin"),
                        "false");
    gm_record_clear(&rec);
    json_object_put(p);
    free(body);
}

/* A rollback's drain that fails holds the node, as any failed rollback. */
static void test_rollback_drain_failure_holds(void **state)
{
    (void)state;
    int ev;
    char *body = run(true, true, BARE_POD, &ev);
    struct gm_switch_record rec = {0};
    assert_non_null(body);
    json_object *p = patched(body, &rec);
    assert_int_equal(rec.phase, GM_PHASE_FAILED);
    assert_true(rec.rolling_back);
    assert_string_equal(rec.reason, "DrainBlocked");
    assert_null(gm_json_get(p, "spec"));
    gm_record_clear(&rec);
    json_object_put(p);
    free(body);
}

/* A rollback with the hardware as it was does not drain: the old clients
 * start again at once. */
static void test_rollback_untouched_does_not_drain(void **state)
{
    (void)state;
    int ev;
    char *body = run(false, true, OWNED_POD, &ev);
    struct gm_switch_record rec = {0};
    assert_non_null(body);
    json_object *p = patched(body, &rec);
    assert_int_equal(rec.phase, GM_PHASE_START_CLIENTS);
    assert_int_equal(ev, 0);
    gm_record_clear(&rec);
    json_object_put(p);
    free(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retry_drain_failure_holds),
        cmocka_unit_test(test_first_drain_failure_rolls_back),
        cmocka_unit_test(test_rollback_evicts_first),
        cmocka_unit_test(test_rollback_drained_stops_clients),
        cmocka_unit_test(test_rollback_drain_failure_holds),
        cmocka_unit_test(test_rollback_untouched_does_not_drain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
