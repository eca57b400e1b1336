#include "server/shutdown.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>

#include "common/log.h"

enum step { S_IDLE, S_DRAINING, S_RELEASING, S_FINISHED };

struct gm_shutdown {
    uv_loop_t *loop;
    struct gm_shutdown_hooks h;
    uv_signal_t sigterm, sigint;
    uv_timer_t timer;
    enum step step;
    uint64_t step_started;
    int open_handles; /* freed when the last close callback runs */
    int freeing;
};

static void finish(struct gm_shutdown *s)
{
    if (s->step == S_FINISHED)
        return;
    s->step = S_FINISHED;
    uv_timer_stop(&s->timer);
    gm_info("shutdown: done");
    if (s->h.finish)
        s->h.finish(s->h.data);
}

static void released(void *arg)
{
    struct gm_shutdown *s = arg;
    if (s->step == S_RELEASING)
        finish(s);
}

static void start_release(struct gm_shutdown *s)
{
    s->step = S_RELEASING;
    s->step_started = uv_now(s->loop);
    if (s->h.release == NULL || s->h.release(s->h.data, released, s) != 0) {
        finish(s);
        return;
    }
    /* The 50 ms tick keeps running and bounds the wait (release_ms). */
}

static void tick(uv_timer_t *t)
{
    struct gm_shutdown *s = t->data;
    uint64_t waited = uv_now(s->loop) - s->step_started;
    if (s->step == S_DRAINING) {
        size_t n = s->h.in_flight ? s->h.in_flight(s->h.data) : 0;
        if (n == 0 || waited >= s->h.grace_ms) {
            if (n)
                gm_warn("shutdown: %zu writes still out after %llu ms", n,
                        (unsigned long long)waited);
            start_release(s);
        }
    } else if (s->step == S_RELEASING && waited >= s->h.release_ms) {
        gm_warn("shutdown: lease release unanswered; leaving it to expire");
        finish(s);
    }
}

int gm_shutdown_started(const struct gm_shutdown *s)
{
    return s->step != S_IDLE;
}

void gm_shutdown_begin(struct gm_shutdown *s, int signum)
{
    switch (s->step) {
    case S_IDLE:
        gm_info("shutdown: signal %d: stopping new work", signum);
        s->step = S_DRAINING;
        s->step_started = uv_now(s->loop);
        if (s->h.stop_new_work)
            s->h.stop_new_work(s->h.data);
        /* Check at once, then every 50 ms. */
        uv_timer_start(&s->timer, tick, 0, 50);
        break;
    case S_DRAINING:
        gm_warn("shutdown: signal %d again: not waiting for writes", signum);
        start_release(s);
        break;
    case S_RELEASING:
        finish(s);
        break;
    case S_FINISHED:
        break;
    }
}

static void on_signal(uv_signal_t *h, int signum)
{
    gm_shutdown_begin(h->data, signum);
}

int gm_shutdown_new(uv_loop_t *loop, const struct gm_shutdown_hooks *hooks,
                    struct gm_shutdown **out)
{
    struct gm_shutdown *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->loop = loop;
    s->h = *hooks;
    if (s->h.grace_ms == 0)
        s->h.grace_ms = 10000;
    if (s->h.release_ms == 0)
        s->h.release_ms = 3000;
    uv_signal_init(loop, &s->sigterm);
    uv_signal_init(loop, &s->sigint);
    uv_timer_init(loop, &s->timer);
    s->sigterm.data = s->sigint.data = s->timer.data = s;
    s->open_handles = 3;
    int err = uv_signal_start(&s->sigterm, on_signal, SIGTERM);
    if (!err)
        err = uv_signal_start(&s->sigint, on_signal, SIGINT);
    /* Waiting for a signal must not keep an otherwise finished loop. */
    uv_unref((uv_handle_t *)&s->sigterm);
    uv_unref((uv_handle_t *)&s->sigint);
    if (err) {
        gm_shutdown_free(s);
        return err;
    }
    *out = s;
    return 0;
}

static void closed(uv_handle_t *h)
{
    struct gm_shutdown *s = h->data;
    if (--s->open_handles == 0)
        free(s);
}

void gm_shutdown_free(struct gm_shutdown *s)
{
    if (s == NULL || s->freeing)
        return;
    s->freeing = 1;
    s->step = S_FINISHED;
    uv_close((uv_handle_t *)&s->sigterm, closed);
    uv_close((uv_handle_t *)&s->sigint, closed);
    uv_close((uv_handle_t *)&s->timer, closed);
}
