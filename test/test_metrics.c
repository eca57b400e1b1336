/* The metrics registry: exact exposition text (ordering, escaping, float
 * formatting, cumulative buckets), argument checking, cardinality bounds,
 * and the whole gpumode set accepted by `promtool check metrics`. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "server/metrics.h"

static char *render(struct gm_metrics *m)
{
    struct gm_buf b;
    gm_buf_init(&b, 1 << 20);
    assert_int_equal(gm_metrics_render(m, &b), 0);
    return gm_buf_steal(&b);
}

static const struct gm_metric_def counter_def = {
    "t_requests_total", "Requests.", GM_METRIC_COUNTER, NULL, 0};
static const struct gm_metric_def gauge_def = {"t_temp", "Temperature.",
                                               GM_METRIC_GAUGE, NULL, 0};

static void test_counter_and_gauge_text(void **state)
{
    (void)state;
    struct gm_metrics *m;
    assert_int_equal(gm_metrics_new(&m), 0);
    assert_int_equal(gm_metrics_define(m, &gauge_def), 0);
    assert_int_equal(gm_metrics_define(m, &counter_def), 0);
    /* Label order given differs; the series is the same. */
    assert_int_equal(gm_metrics_counter_add(m, "t_requests_total", 1, "verb",
                                            "GET", "code", "200", NULL),
                     0);
    assert_int_equal(gm_metrics_counter_add(m, "t_requests_total", 2, "code",
                                            "200", "verb", "GET", NULL),
                     0);
    assert_int_equal(gm_metrics_counter_add(m, "t_requests_total", 1, "code",
                                            "409", "verb", "PUT", NULL),
                     0);
    assert_int_equal(gm_metrics_gauge_set(m, "t_temp", 0.5, NULL), 0);
    assert_int_equal(gm_metrics_gauge_add(m, "t_temp", 1e6, NULL), 0);
    char *text = render(m);
    assert_string_equal(text, "# HELP t_requests_total Requests.\n"
                              "# TYPE t_requests_total counter\n"
                              "t_requests_total{code=\"200\",verb=\"GET\"} 3\n"
                              "t_requests_total{code=\"409\",verb=\"PUT\"} 1\n"
                              "# HELP t_temp Temperature.\n"
                              "# TYPE t_temp gauge\n"
                              "t_temp 1000000.5\n");
    free(text);
    double v;
    assert_int_equal(gm_metrics_value(m, "t_requests_total", &v, "verb", "GET",
                                      "code", "200", NULL),
                     0);
    assert_true(v == 3);
    assert_int_equal(gm_metrics_value(m, "t_requests_total", &v, "verb", "POST",
                                      "code", "200", NULL),
                     -ENOENT);
    gm_metrics_free(m);
}

static void test_escaping(void **state)
{
    (void)state;
    struct gm_metrics *m;
    assert_int_equal(gm_metrics_new(&m), 0);
    const struct gm_metric_def d = {"t_info", "Line one\\two\nthree \"q\".",
                                    GM_METRIC_GAUGE, NULL, 0};
    assert_int_equal(gm_metrics_define(m, &d), 0);
    assert_int_equal(
        gm_metrics_gauge_set(m, "t_info", 1, "v", "a\"b\\c\nd", NULL), 0);
    char *text = render(m);
    assert_string_equal(text, "# HELP t_info Line one\\\\two\\nthree \"q\".\n"
                              "# TYPE t_info gauge\n"
                              "t_info{v=\"a\\\"b\\\\c\\nd\"} 1\n");
    free(text);
    gm_metrics_free(m);
}

static void test_histogram_text(void **state)
{
    (void)state;
    struct gm_metrics *m;
    const double b[] = {0.5, 1, 10};
    const struct gm_metric_def d = {"t_seconds", "Durations.",
                                    GM_METRIC_HISTOGRAM, b, 3};
    assert_int_equal(gm_metrics_new(&m), 0);
    assert_int_equal(gm_metrics_define(m, &d), 0);
    assert_int_equal(
        gm_metrics_observe(m, "t_seconds", 0.25, "phase", "drain", NULL), 0);
    /* A value on a bound belongs to that bucket (le means <=). */
    assert_int_equal(
        gm_metrics_observe(m, "t_seconds", 1, "phase", "drain", NULL), 0);
    assert_int_equal(
        gm_metrics_observe(m, "t_seconds", 100, "phase", "drain", NULL), 0);
    assert_int_equal(
        gm_metrics_observe(m, "t_seconds", 2, "phase", "apply", NULL), 0);
    /* A negative duration (clocks of two replicas) counts as 0, so the
     * sum never goes down; NaN is refused. */
    assert_int_equal(
        gm_metrics_observe(m, "t_seconds", -3, "phase", "apply", NULL), 0);
    assert_int_equal(
        gm_metrics_observe(m, "t_seconds", NAN, "phase", "apply", NULL),
        -EINVAL);
    /* "le" is the histogram's own label. */
    assert_int_equal(gm_metrics_observe(m, "t_seconds", 2, "le", "x", NULL),
                     -EINVAL);
    char *text = render(m);
    assert_string_equal(text,
                        "# HELP t_seconds Durations.\n"
                        "# TYPE t_seconds histogram\n"
                        "t_seconds_bucket{phase=\"apply\",le=\"0.5\"} 1\n"
                        "t_seconds_bucket{phase=\"apply\",le=\"1\"} 1\n"
                        "t_seconds_bucket{phase=\"apply\",le=\"10\"} 2\n"
                        "t_seconds_bucket{phase=\"apply\",le=\"+Inf\"} 2\n"
                        "t_seconds_sum{phase=\"apply\"} 2\n"
                        "t_seconds_count{phase=\"apply\"} 2\n"
                        "t_seconds_bucket{phase=\"drain\",le=\"0.5\"} 1\n"
                        "t_seconds_bucket{phase=\"drain\",le=\"1\"} 2\n"
                        "t_seconds_bucket{phase=\"drain\",le=\"10\"} 2\n"
                        "t_seconds_bucket{phase=\"drain\",le=\"+Inf\"} 3\n"
                        "t_seconds_sum{phase=\"drain\"} 101.25\n"
                        "t_seconds_count{phase=\"drain\"} 3\n");
    free(text);
    gm_metrics_free(m);
}

static void test_errors_and_bounds(void **state)
{
    (void)state;
    struct gm_metrics *m;
    assert_int_equal(gm_metrics_new(&m), 0);
    assert_int_equal(gm_metrics_define(m, &counter_def), 0);
    assert_int_equal(gm_metrics_define(m, &counter_def), 0);
    const struct gm_metric_def clash = {"t_requests_total", "x",
                                        GM_METRIC_GAUGE, NULL, 0};
    assert_int_equal(gm_metrics_define(m, &clash), -EEXIST);
    const struct gm_metric_def bad = {"9bad", "x", GM_METRIC_GAUGE, NULL, 0};
    assert_int_equal(gm_metrics_define(m, &bad), -EINVAL);
    const double unsorted[] = {2, 1};
    const struct gm_metric_def badh = {"t_h", "x", GM_METRIC_HISTOGRAM,
                                       unsorted, 2};
    assert_int_equal(gm_metrics_define(m, &badh), -EINVAL);

    assert_int_equal(gm_metrics_counter_add(m, "nope", 1, NULL), -ENOENT);
    assert_int_equal(gm_metrics_gauge_set(m, "t_requests_total", 1, NULL),
                     -EINVAL);
    assert_int_equal(gm_metrics_counter_add(m, "t_requests_total", -1, NULL),
                     -EINVAL);
    assert_int_equal(
        gm_metrics_counter_add(m, "t_requests_total", 1, "bad-key", "v", NULL),
        -EINVAL);
    assert_int_equal(
        gm_metrics_counter_add(m, "t_requests_total", 1, "__x", "v", NULL),
        -EINVAL);
    assert_int_equal(gm_metrics_counter_add(m, "t_requests_total", 1, "a", "1",
                                            "a", "2", NULL),
                     -EINVAL);

    /* The cardinality bound holds and existing series still count. */
    char v[16];
    for (int i = 0; i < GM_METRICS_MAX_SERIES; i++) {
        snprintf(v, sizeof(v), "%d", i);
        assert_int_equal(
            gm_metrics_counter_add(m, "t_requests_total", 1, "n", v, NULL), 0);
    }
    assert_int_equal(
        gm_metrics_counter_add(m, "t_requests_total", 1, "n", "new", NULL),
        -E2BIG);
    assert_int_equal(
        gm_metrics_counter_add(m, "t_requests_total", 1, "n", "7", NULL), 0);
    assert_int_equal(gm_metrics_clear(m, "t_requests_total"), 0);
    char *text = render(m);
    assert_string_equal(text, "# HELP t_requests_total Requests.\n"
                              "# TYPE t_requests_total counter\n");
    free(text);
    gm_metrics_free(m);
}

/* The full gpumode set with a sample of every series shape, checked by the
 * tool Prometheus operators use. */
static void test_gpumode_set_passes_promtool(void **state)
{
    (void)state;
    struct gm_metrics *m;
    assert_int_equal(gm_metrics_new(&m), 0);
    assert_int_equal(gm_metrics_define_gpumode(m, "0.1.0"), 0);
    assert_int_equal(gm_metrics_gauge_set(m, GM_METRIC_NODES, 3, "mode", "mig",
                                          "state", "ready", NULL),
                     0);
    assert_int_equal(gm_metrics_gauge_set(m, GM_METRIC_NODES, 1, "mode", "full",
                                          "state", "switching", NULL),
                     0);
    assert_int_equal(gm_metrics_counter_add(m, GM_METRIC_SWITCHES, 1, "from",
                                            "full", "to", "mig", "result",
                                            "succeeded", NULL),
                     0);
    assert_int_equal(
        gm_metrics_observe(m, GM_METRIC_SWITCH_DURATION, 312.5, NULL), 0);
    assert_int_equal(gm_metrics_observe(m, GM_METRIC_PHASE_DURATION, 0.2,
                                        "phase", "Cordoning", NULL),
                     0);
    assert_int_equal(gm_metrics_counter_add(m, GM_METRIC_API_REQUESTS, 5,
                                            "verb", "GET", "code", "200", NULL),
                     0);
    assert_int_equal(gm_metrics_counter_add(m, GM_METRIC_WATCH_RESTARTS, 1,
                                            "resource", "nodes", NULL),
                     0);
    assert_int_equal(gm_metrics_gauge_set(m, GM_METRIC_LEADER, 1, NULL), 0);
    assert_int_equal(gm_metrics_gauge_set(m, GM_METRIC_QUEUE_DEPTH, 4, NULL),
                     0);
    char *text = render(m);
    assert_non_null(strstr(text, "gpumode_build_info{version=\"0.1.0\"} 1\n"));
    assert_non_null(strstr(text, "gpumode_leader 1\n"));
    assert_non_null(
        strstr(text, "gpumode_switch_duration_seconds_bucket{le=\"600\"} 1\n"));

    char path[] = "/tmp/gm-metrics-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *fp = fdopen(fd, "w");
    fputs(text, fp);
    fclose(fp);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "promtool check metrics < %s 2>&1", path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char out[4096] = "";
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    int rc = pclose(p);
    unlink(path);
    if (rc != 0)
        fail_msg("promtool: rc %d: %s\n%s", rc, out, text);
    free(text);
    gm_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_and_gauge_text),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_histogram_text),
        cmocka_unit_test(test_errors_and_bounds),
        cmocka_unit_test(test_gpumode_set_passes_promtool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
