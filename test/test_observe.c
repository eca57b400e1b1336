/* The controller's gauges and counters refreshed on a timer (app/observe):
 * watch restarts are counted for each long-lived reflector, not only the
 * nodes', the rollout layer's included. Real libcurl and libuv against the test
 * server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "app/observe.h"
#include "app/rollout.h"
#include "kube/workqueue.h"
#include "server/metrics.h"
#include "support/ctlfx.h"

struct fx {
    struct th_ctl c;
    int helper_watches; /* helper pod watches asked for */
    int policy_watches; /* GPUModePolicy watches asked for */
};

/* The first watch of the helper pods ends at once, as a watch cut by a
 * load balancer does; the reflector starts another. */
static void handler(void *ud, const struct th_req *r, struct th_conn *c)
{
    struct fx *f = ud;
    if (strstr(r->path, "/namespaces/gpumode-system/pods") &&
        strstr(r->path, "watch=1") && f->helper_watches++ == 0) {
        th_respond(c, 200, NULL, "");
        return;
    }
    if (strncmp(r->path, GM_POLICY_API "?", strlen(GM_POLICY_API) + 1) == 0 &&
        strstr(r->path, "watch=1") && f->policy_watches++ == 0) {
        th_respond(c, 200, NULL, "");
        return;
    }
    th_ctl_respond_default(r, c);
}

static void test_restarts_counted_by_resource(void **state)
{
    (void)state;
    struct fx f = {0};
    struct gm_metrics *m = NULL;
    double v = -1;

    assert_int_equal(gm_metrics_new(&m), 0);
    assert_int_equal(gm_metrics_define_gpumode(m, "test"), 0);
    double pv = -1;
    struct gm_rollout *ro = NULL;

    th_ctl_start(&f.c, handler, &f);
    f.c.ctl->metrics = m;
    assert_int_equal(gm_rollout_start(f.c.ctl, &ro), 0);
    assert_int_equal(gm_obs_start(f.c.ctl, ro, 20), 0);
    for (int i = 0; i < 200 && (v != 1 || pv != 1); i++) {
        int never = 0;
        th_run_until(&f.c.loop, &never, 20);
        v = pv = -1;
        gm_metrics_value(m, GM_METRIC_WATCH_RESTARTS, &v, "resource", "pods",
                         NULL);
        gm_metrics_value(m, GM_METRIC_WATCH_RESTARTS, &pv, "resource",
                         "gpumodepolicies", NULL);
    }
    assert_true(f.helper_watches >= 2);
    assert_true(v == 1);
    /* The rollout layer's watches are counted too. */
    assert_true(f.policy_watches >= 2);
    assert_true(pv == 1);
    /* The nodes' watch never ended: no restart is counted for it. */
    v = -1;
    gm_metrics_value(m, GM_METRIC_WATCH_RESTARTS, &v, "resource", "nodes",
                     NULL);
    assert_true(v == -1 || v == 0);
    gm_obs_stop(f.c.ctl);
    gm_rollout_free(ro);
    f.c.ctl->metrics = NULL;
    th_ctl_stop(&f.c);
    gm_metrics_free(m);
}

/* Three nodes: one gpumode verified (full, ready), one offering GPUs it
 * never switched, and a CPU node. */
static void nodes_handler(void *ud, const struct th_req *r, struct th_conn *c)
{
    (void)ud;
    if (strncmp(r->path, "/api/v1/nodes?", 14) == 0 &&
        !strstr(r->path, "watch=1")) {
        th_respond(
            c, 200, NULL,
            "{\"kind\":\"NodeList\",\"metadata\":{\"resourceVersion\":"
            "\"5\"},\"items\":["
            "{\"metadata\":{\"name\":\"gpu-1\",\"uid\":\"u1\","
            "\"resourceVersion\":\"3\",\"labels\":{\"gpumode.io/mode\":"
            "\"full\",\"gpumode.io/state\":\"ready\"}},\"status\":{"
            "\"allocatable\":{\"nvidia.com/gpu\":\"8\",\"cpu\":\"64\"}}},"
            "{\"metadata\":{\"name\":\"gpu-2\",\"uid\":\"u2\","
            "\"resourceVersion\":\"4\",\"labels\":{}},\"status\":{"
            "\"allocatable\":{\"nvidia.com/gpu\":\"8\",\"cpu\":\"64\"}}},"
            "{\"metadata\":{\"name\":\"cpu-1\",\"uid\":\"u3\","
            "\"resourceVersion\":\"5\",\"labels\":{\"kubernetes.io/os\":"
            "\"linux\"}},\"status\":{\"allocatable\":{\"cpu\":\"64\"}}}"
            "]}");
        return;
    }
    th_ctl_respond_default(r, c);
}

/* gpumode_nodes counts GPU nodes only: a CPU node is not an unverified
 * GPU node. */
static void test_nodes_gauge_counts_gpu_nodes(void **state)
{
    (void)state;
    struct th_ctl c = {0};
    struct gm_metrics *m = NULL;
    double ready = -1, unknown = -1;

    assert_int_equal(gm_metrics_new(&m), 0);
    assert_int_equal(gm_metrics_define_gpumode(m, "test"), 0);
    th_ctl_start(&c, nodes_handler, NULL);
    c.ctl->metrics = m;
    assert_int_equal(gm_obs_start(c.ctl, NULL, 20), 0);
    for (int i = 0; i < 200 && (ready != 1 || unknown < 0); i++) {
        int never = 0;
        th_run_until(&c.loop, &never, 20);
        ready = unknown = -1;
        gm_metrics_value(m, GM_METRIC_NODES, &ready, "mode", "full", "state",
                         "ready", NULL);
        gm_metrics_value(m, GM_METRIC_NODES, &unknown, "mode", "unknown",
                         "state", "none", NULL);
    }
    assert_true(ready == 1);
    assert_true(unknown == 1); /* gpu-2; cpu-1 made it 2 */

    /* A standby's queue holds keys it never runs: its depth reads 0. */
    double depth = -1;
    c.ctl->leading = false;
    gm_wq_add(c.ctl->queue, "n/gpu-2");
    for (int i = 0; i < 200 && depth != 0; i++) {
        int never = 0;
        th_run_until(&c.loop, &never, 20);
        gm_metrics_value(m, GM_METRIC_QUEUE_DEPTH, &depth, NULL);
    }
    assert_true(gm_wq_len(c.ctl->queue) >= 1);
    assert_true(depth == 0);
    gm_obs_stop(c.ctl);
    c.ctl->metrics = NULL;
    th_ctl_stop(&c);
    gm_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_restarts_counted_by_resource),
        cmocka_unit_test(test_nodes_gauge_counts_gpu_nodes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
