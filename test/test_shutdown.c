/* The shutdown sequence, started by a real SIGTERM delivered through the
 * loop: new work stops, in-flight writes are waited for (bounded), the
 * lease is released, then finish runs; a second signal skips the wait. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/shutdown.h"
#include "support/httpd.h"

struct fx {
    uv_loop_t loop;
    struct gm_shutdown *s;
    uv_timer_t release_timer;
    int stopped, finished, released;
    size_t writes;
    int release_answers; /* 0: never answers */
    char order[16];
    void (*done)(void *);
    void *done_arg;
};

static void note(struct fx *f, char c)
{
    size_t n = strlen(f->order);
    if (n + 1 < sizeof(f->order))
        f->order[n] = c;
}

static void stop_new_work(void *data)
{
    note(data, 'S');
    ((struct fx *)data)->stopped = 1;
}

static size_t in_flight(void *data)
{
    struct fx *f = data;
    /* One write finishes per poll. */
    if (f->writes)
        f->writes--;
    return f->writes;
}

static void release_fire(uv_timer_t *t)
{
    struct fx *f = t->data;
    f->done(f->done_arg);
}

static int release(void *data, void (*done)(void *arg), void *arg)
{
    struct fx *f = data;
    note(f, 'R');
    f->released = 1;
    f->done = done;
    f->done_arg = arg;
    if (f->release_answers)
        uv_timer_start(&f->release_timer, release_fire, 20, 0);
    return 0;
}

static void finish(void *data)
{
    struct fx *f = data;
    note(f, 'F');
    f->finished = 1;
}

static struct fx *fx_new(uint64_t grace_ms)
{
    struct fx *f = calloc(1, sizeof(*f));
    uv_loop_init(&f->loop);
    uv_timer_init(&f->loop, &f->release_timer);
    f->release_timer.data = f;
    struct gm_shutdown_hooks h = {.stop_new_work = stop_new_work,
                                  .in_flight = in_flight,
                                  .release = release,
                                  .finish = finish,
                                  .data = f,
                                  .grace_ms = grace_ms,
                                  .release_ms = 200};
    assert_int_equal(gm_shutdown_new(&f->loop, &h, &f->s), 0);
    return f;
}

static void fx_free(struct fx *f)
{
    gm_shutdown_free(f->s);
    uv_close((uv_handle_t *)&f->release_timer, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f);
}

static void test_sigterm_runs_the_sequence(void **state)
{
    (void)state;
    struct fx *f = fx_new(2000);
    f->writes = 3;
    f->release_answers = 1;
    assert_false(gm_shutdown_started(f->s));
    raise(SIGTERM);
    assert_true(th_run_until(&f->loop, &f->finished, 3000));
    assert_string_equal(f->order, "SRF");
    assert_int_equal(f->writes, 0);
    assert_true(gm_shutdown_started(f->s));
    fx_free(f);
}

static void test_bounded_waits(void **state)
{
    (void)state;
    struct fx *f = fx_new(150);
    f->writes = 1000000;    /* never drains */
    f->release_answers = 0; /* and the API server never answers */
    uint64_t t0 = uv_now(&f->loop);
    gm_shutdown_begin(f->s, 0);
    assert_true(th_run_until(&f->loop, &f->finished, 3000));
    uint64_t took = uv_now(&f->loop) - t0;
    assert_true(took >= 150 + 200);
    assert_true(took < 1500);
    assert_string_equal(f->order, "SRF");
    fx_free(f);
}

static void test_second_signal_skips_wait(void **state)
{
    (void)state;
    struct fx *f = fx_new(60000);
    f->writes = 1000000;
    f->release_answers = 1;
    raise(SIGINT);
    assert_true(th_run_until(&f->loop, &f->stopped, 1000));
    raise(SIGINT);
    assert_true(th_run_until(&f->loop, &f->finished, 1000));
    assert_string_equal(f->order, "SRF");
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigterm_runs_the_sequence),
        cmocka_unit_test(test_bounded_waits),
        cmocka_unit_test(test_second_signal_skips_wait),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
