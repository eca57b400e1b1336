/* The controller's gauges and counters refreshed on a timer (app/observe):
 * watch restarts are counted for each long-lived reflector, not only the
 * nodes'. Real libcurl and libuv against the test server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "app/observe.h"
#include "server/metrics.h"
#include "support/ctlfx.h"

struct fx {
    struct th_ctl c;
    int helper_watches; /* helper pod watches asked for */
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
    th_ctl_start(&f.c, handler, &f);
    f.c.ctl->metrics = m;
    assert_int_equal(gm_obs_start(f.c.ctl, 20), 0);
    for (int i = 0; i < 200 && v != 1; i++) {
        int never = 0;
        th_run_until(&f.c.loop, &never, 20);
        v = -1;
        gm_metrics_value(m, GM_METRIC_WATCH_RESTARTS, &v, "resource", "pods",
                         NULL);
    }
    assert_true(f.helper_watches >= 2);
    assert_true(v == 1);
    /* The nodes' watch never ended: no restart is counted for it. */
    v = -1;
    gm_metrics_value(m, GM_METRIC_WATCH_RESTARTS, &v, "resource", "nodes",
                     NULL);
    assert_true(v == -1 || v == 0);
    gm_obs_stop(f.c.ctl);
    f.c.ctl->metrics = NULL;
    th_ctl_stop(&f.c);
    gm_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_restarts_counted_by_resource),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
