/* A phase or a switch that ends is counted once, and the event that
 * announces it recorded once, when the node write that records it
 * succeeds. A write refused with 409 (another writer's newer node: the
 * node lifecycle controller's taint right after a cordon) is redone by the
 * next reconcile, which would otherwise count and announce it again.
 *
 * Real libcurl and libuv against the test server, which plays the API
 * server: one node in Draining of a full -> vgpu switch, no pods on it;
 * the first node PATCH is answered 409, the next one 200. */
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
#include "server/events.h"
#include "server/metrics.h"
#include "support/ctlfx.h"
#include "support/testutil.h"

struct fx {
    struct th_node_fx n; /* first: the handler's ud */
    int conflicts;       /* node PATCHes still to refuse with 409 */
    int refusals;        /* node PATCHes still to refuse with 422 */
    int drops;           /* node PATCHes still to drop: closed, no answer */
    int patches;
    int taken;     /* node PATCHes answered 200 */
    int policy_rc; /* what policy_for answers */
    int events;    /* Events POSTed */
    char reason[64];
    char type[16];
    char note[128];
    int taken_at_event; /* taken when the first Event came */
};

/* Answers with a Status refusing the request. */
static void refuse(struct th_conn *c, int code, const char *reason,
                   const char *message)
{
    char body[256];
    snprintf(body, sizeof(body),
             "{\"kind\":\"Status\",\"status\":\"Failure\",\"reason\":"
             "\"%s\",\"code\":%d,\"message\":\"%s\"}",
             reason, code, message);
    th_respond(c, code, NULL, body);
}

static void handler(void *ud, const struct th_req *r, struct th_conn *c)
{
    struct fx *f = ud;
    if (strcmp(r->method, "PATCH") == 0 &&
        strcmp(r->path, "/api/v1/nodes/gpu-001") == 0) {
        f->patches++;
        if (f->drops > 0) {
            f->drops--;
            th_close(c);
            return;
        }
        if (f->refusals > 0) {
            f->refusals--;
            refuse(c, 422, "Invalid", "denied by webhook");
            return;
        }
        if (f->conflicts > 0) {
            f->conflicts--;
            refuse(c, 409, "Conflict", "the object has been modified");
            return;
        }
        f->taken++;
    }
    if (strcmp(r->method, "POST") == 0 &&
        strstr(r->path, "/apis/events.k8s.io/v1/namespaces/") == r->path) {
        if (f->events++ == 0) {
            f->taken_at_event = f->taken;
            json_object *ev = json_tokener_parse(r->body);
            const char *reason =
                json_object_get_string(json_object_object_get(ev, "reason"));
            const char *type =
                json_object_get_string(json_object_object_get(ev, "type"));
            const char *note =
                json_object_get_string(json_object_object_get(ev, "note"));
            snprintf(f->reason, sizeof(f->reason), "%s", reason ? reason : "");
            snprintf(f->type, sizeof(f->type), "%s", type ? type : "");
            snprintf(f->note, sizeof(f->note), "%s", note ? note : "");
            json_object_put(ev);
        }
        th_respond(c, 201, NULL, "{}");
        return;
    }
    th_node_fx_handler(ud, r, c);
}

static int policy_for(void *data, const char *name, struct gm_switch_policy *o)
{
    const struct fx *f = data;
    (void)name;
    (void)o;
    return f->policy_rc;
}

/* Runs the Draining node with the policy answering policy_rc until a node
 * PATCH is taken; returns the metrics (caller frees). With reason, also
 * until the one Event the step announces is posted, and its reason there
 * (len bytes). */
static struct gm_metrics *run_with(int drops, int policy_rc, int *patches,
                                   char *reason, size_t len)
{
    struct fx f = {
        .conflicts = drops ? 0 : 1, .drops = drops, .policy_rc = policy_rc};
    struct gm_metrics *m = NULL;
    struct gm_recorder *rec = NULL;
    struct gm_recorder_opts ro = {.identity = "test"};
    assert_int_equal(gm_metrics_new(&m), 0);
    assert_int_equal(gm_metrics_define_gpumode(m, "test"), 0);
    f.n.record = th_ctl_switch_record(GM_PHASE_DRAIN, NULL);
    th_ctl_start(&f.n.c, handler, &f);
    assert_int_equal(gm_recorder_new(&f.n.c.loop, f.n.c.k, &ro, &rec), 0);
    f.n.c.ctl->metrics = m;
    f.n.c.ctl->events = rec;
    f.n.c.ctl->policy_for = policy_for;
    f.n.c.ctl->policy_data = &f;
    assert_true(th_run_until(&f.n.c.loop, &f.n.done, 8000));
    if (reason) {
        assert_true(th_run_until(&f.n.c.loop, &f.events, 2000));
        /* Announced by the write that was taken, not the one refused. */
        assert_int_equal(f.taken_at_event, 1);
        assert_int_equal(f.events, 1);
    }
    f.n.c.ctl->events = NULL;
    gm_recorder_free(rec);
    th_node_fx_stop(&f.n);
    *patches = f.patches;
    if (reason)
        snprintf(reason, len, "%s", f.reason);
    return m;
}

static struct gm_metrics *run(int policy_rc, int *patches, char *reason,
                              size_t len)
{
    return run_with(0, policy_rc, patches, reason, len);
}

static void test_phase_counted_once(void **state)
{
    (void)state;
    int patches;
    double v = 0;
    struct gm_metrics *m = run(0, &patches, NULL, 0);
    assert_int_equal(patches, 2); /* refused, then taken */
    assert_int_equal(gm_metrics_value(m, GM_METRIC_PHASE_DURATION, &v, "phase",
                                      "Draining", NULL),
                     0);
    assert_true(v == 1);
    gm_metrics_free(m);
}

/* run_with(drops, 0, ...) with the log at info level captured into text
 * (cap bytes); returns the node PATCHes made. */
static int run_logged(int drops, char *text, size_t cap)
{
    int patches;
    struct tu_log log;
    tu_log_begin(&log, GM_LOG_INFO);
    struct gm_metrics *m = run_with(drops, 0, &patches, NULL, 0);
    tu_log_end(&log, text, cap);
    gm_metrics_free(m);
    return patches;
}

/* The phase's log line, too, is written once, for the write that was
 * taken: written before the PATCH, it came twice. */
static void test_phase_logged_once(void **state)
{
    (void)state;
    char text[16384];
    assert_int_equal(run_logged(0, text, sizeof(text)), 2); /* 409, 200 */
    const char *line = "msg=\"Draining -> StoppingClients\"";
    const char *first = strstr(text, line);
    assert_non_null(first);
    assert_non_null(strstr(first, "node=gpu-001"));
    assert_null(strstr(first + 1, line));
}

/* A write with no answer may have landed: its line is logged all the
 * same, said to be unconfirmed (the fixture stops once the write made
 * again reaches the server, so that one's answer is cut off too). */
static void test_unconfirmed_write_logged(void **state)
{
    (void)state;
    char text[16384];
    assert_true(run_logged(1, text, sizeof(text)) >= 2);
    const char *line = strstr(text, "msg=\"Draining -> StoppingClients "
                                    "(write unconfirmed: Empty reply");
    assert_non_null(line);
    assert_non_null(strstr(line, "node=gpu-001 policy=p"));
}

/* The policy is gone while the node drains: the switch is cancelled. */
static void test_switch_counted_once(void **state)
{
    (void)state;
    int patches;
    double v = 0;
    char reason[64];
    struct gm_metrics *m = run(-ENOENT, &patches, reason, sizeof(reason));
    assert_int_equal(patches, 2);
    assert_string_equal(reason, "RolledBack");
    assert_int_equal(gm_metrics_value(m, GM_METRIC_SWITCHES, &v, "from", "full",
                                      "to", "vgpu", "result", "cancelled",
                                      NULL),
                     0);
    assert_true(v == 1);
    gm_metrics_free(m);
}

/* A write refused otherwise (an admission webhook's 422) is retried,
 * and while it is refused the node's status line says why, and a Warning
 * event on the node, whose repeats are counted rather than posted. */
static void test_refused_write_is_shown(void **state)
{
    (void)state;
    static const int never = 0;
    struct fx f = {.refusals = 1000};
    struct gm_recorder *rec = NULL;
    struct gm_recorder_opts ro = {.identity = "test"};
    f.n.record = th_ctl_switch_record(GM_PHASE_DRAIN, NULL);
    th_ctl_start(&f.n.c, handler, &f);
    assert_int_equal(gm_recorder_new(&f.n.c.loop, f.n.c.k, &ro, &rec), 0);
    f.n.c.ctl->events = rec;
    f.n.c.ctl->policy_for = policy_for;
    f.n.c.ctl->policy_data = &f;
    th_run_until(&f.n.c.loop, &never, 1500);
    assert_true(f.patches >= 2); /* tried again */
    assert_false(f.n.done);
    assert_string_equal(gm_ctl_node_state(f.n.c.ctl, "gpu-001")->message,
                        "updating the node failed, retrying: Invalid: denied "
                        "by webhook");
    assert_int_equal(f.events, 1);
    assert_string_equal(f.reason, "FailedUpdate");
    assert_string_equal(f.type, "Warning");
    assert_string_equal(f.note, "Updating the node was refused (Invalid): "
                                "denied by webhook; gpumode retries it");
    f.n.c.ctl->events = NULL;
    gm_recorder_free(rec);
    /* Taken: the line no longer says so. */
    f.refusals = 0;
    assert_true(th_run_until(&f.n.c.loop, &f.n.done, 8000));
    th_run_until(&f.n.c.loop, &never, 100);
    assert_string_equal(gm_ctl_node_state(f.n.c.ctl, "gpu-001")->message, "");
    th_node_fx_stop(&f.n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_phase_counted_once),
        cmocka_unit_test(test_phase_logged_once),
        cmocka_unit_test(test_unconfirmed_write_logged),
        cmocka_unit_test(test_switch_counted_once),
        cmocka_unit_test(test_refused_write_is_shown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
