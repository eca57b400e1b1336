/* Work queue semantics (client-go's): de-duplication, one key in flight at a
 * time, re-queue when changed in flight, per-key backoff, delayed adds. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kube/workqueue.h"
#include "support/httpd.h"

struct fixture {
    uv_loop_t loop;
    struct gm_workqueue *q;
    int ready_calls;
};

static void on_ready(void *data)
{
    ((struct fixture *)data)->ready_calls++;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    uv_loop_init(&f->loop);
    struct gm_wq_opts o = {0};
    assert_int_equal(gm_wq_new(&f->loop, &o, on_ready, f, &f->q), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    gm_wq_free(f->q);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f);
    return 0;
}

static char *take(struct gm_workqueue *q)
{
    char *k = NULL;
    assert_int_equal(gm_wq_get(q, &k), 0);
    return k;
}

static void test_dedup_and_order(void **state)
{
    struct fixture *f = *state;
    gm_wq_add(f->q, "a");
    gm_wq_add(f->q, "b");
    gm_wq_add(f->q, "a");
    assert_int_equal(gm_wq_len(f->q), 2);
    char *k1 = take(f->q), *k2 = take(f->q);
    assert_string_equal(k1, "a");
    assert_string_equal(k2, "b");
    char *none;
    assert_int_equal(gm_wq_get(f->q, &none), -EAGAIN);
    gm_wq_done(f->q, k1);
    gm_wq_done(f->q, k2);
    free(k1);
    free(k2);
}

static void test_ready_callback_runs_on_loop(void **state)
{
    struct fixture *f = *state;
    gm_wq_add(f->q, "a");
    assert_int_equal(f->ready_calls, 0); /* never synchronously */
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(f->ready_calls, 1);
    free(take(f->q));
}

static void test_never_twice_in_flight(void **state)
{
    struct fixture *f = *state;
    gm_wq_add(f->q, "a");
    char *k = take(f->q);
    /* Changed while in flight: held back, not handed out again. */
    gm_wq_add(f->q, "a");
    gm_wq_add(f->q, "a");
    assert_int_equal(gm_wq_len(f->q), 0);
    char *none;
    assert_int_equal(gm_wq_get(f->q, &none), -EAGAIN);
    gm_wq_done(f->q, k);
    free(k);
    /* ...and queued once when done. */
    assert_int_equal(gm_wq_len(f->q), 1);
    k = take(f->q);
    assert_string_equal(k, "a");
    gm_wq_done(f->q, k);
    free(k);
    assert_int_equal(gm_wq_len(f->q), 0);
}

static void test_backoff_schedule(void **state)
{
    (void)state;
    struct gm_wq_opts o = {.base_delay_ms = 5, .max_delay_ms = 1000000};
    assert_int_equal(gm_wq_backoff_ms(&o, 0), 5);
    assert_int_equal(gm_wq_backoff_ms(&o, 1), 10);
    assert_int_equal(gm_wq_backoff_ms(&o, 2), 20);
    assert_int_equal(gm_wq_backoff_ms(&o, 10), 5120);
    assert_int_equal(gm_wq_backoff_ms(&o, 17), 655360);
    assert_int_equal(gm_wq_backoff_ms(&o, 18), 1000000);
    assert_int_equal(gm_wq_backoff_ms(&o, 500), 1000000);
}

static void test_rate_limited_counts_and_forget(void **state)
{
    struct fixture *f = *state;
    gm_wq_add_rate_limited(f->q, "a");
    gm_wq_add_rate_limited(f->q, "a");
    assert_int_equal(gm_wq_num_requeues(f->q, "a"), 2);
    assert_int_equal(gm_wq_waiting(f->q), 1);
    /* The earliest delay (5 ms) wins; the key arrives once. */
    while (gm_wq_len(f->q) == 0)
        uv_run(&f->loop, UV_RUN_ONCE);
    char *k = take(f->q);
    assert_string_equal(k, "a");
    gm_wq_forget(f->q, "a");
    assert_int_equal(gm_wq_num_requeues(f->q, "a"), 0);
    gm_wq_done(f->q, k);
    free(k);
}

static void test_add_after_orders_by_due_time(void **state)
{
    struct fixture *f = *state;
    gm_wq_add_after(f->q, "late", 60);
    gm_wq_add_after(f->q, "early", 20);
    gm_wq_add_after(f->q, "late", 500); /* later: does not postpone */
    assert_int_equal(gm_wq_len(f->q), 0);
    while (gm_wq_len(f->q) < 2)
        uv_run(&f->loop, UV_RUN_ONCE);
    char *a = take(f->q), *b = take(f->q);
    assert_string_equal(a, "early");
    assert_string_equal(b, "late");
    gm_wq_done(f->q, a);
    gm_wq_done(f->q, b);
    free(a);
    free(b);
    assert_int_equal(gm_wq_waiting(f->q), 0);
}

static void test_overall_bucket_limits(void **state)
{
    (void)state;
    uv_loop_t loop;
    struct gm_workqueue *q;
    struct gm_wq_opts o = {.qps = 100, .burst = 2};
    uv_loop_init(&loop);
    assert_int_equal(gm_wq_new(&loop, &o, NULL, NULL, &q), 0);
    uint64_t start = uv_now(&loop);
    char key[16];
    for (int i = 0; i < 6; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        gm_wq_add_rate_limited(q, key);
    }
    while (gm_wq_len(q) < 6)
        uv_run(&loop, UV_RUN_ONCE);
    /* Two tokens at once, then one per 10 ms: the sixth waits >= 40 ms. */
    assert_true(uv_now(&loop) - start >= 40);
    gm_wq_free(q);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_free_with_pending_timers(void **state)
{
    struct fixture *f = *state;
    gm_wq_add_after(f->q, "x", 100000);
    gm_wq_add(f->q, "y");
    /* teardown frees with both pending; valgrind/ASan check nothing leaks */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_dedup_and_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ready_callback_runs_on_loop, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_never_twice_in_flight, setup,
                                        teardown),
        cmocka_unit_test(test_backoff_schedule),
        cmocka_unit_test_setup_teardown(test_rate_limited_counts_and_forget,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_add_after_orders_by_due_time,
                                        setup, teardown),
        cmocka_unit_test(test_overall_bucket_limits),
        cmocka_unit_test_setup_teardown(test_free_with_pending_timers, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
