#include "kube/workqueue.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/map.h"

/* Key flags kept in q->state. */
#define ST_QUEUED 1u     /* in the ready FIFO (dirty in client-go) */
#define ST_PROCESSING 2u /* handed out, not done yet */
#define ST_DIRTY 4u      /* added while processing */

struct waiting {
    uv_timer_t timer; /* freed in its close callback */
    struct gm_workqueue *q;
    char *key; /* owned */
    uint64_t due;
    struct waiting *next, *prev;
};

struct gm_workqueue {
    uv_loop_t *loop;
    struct gm_wq_opts opts;
    gm_wq_ready_cb ready;
    void *data;
    uv_idle_t *kick; /* owned; signals readiness on the next loop turn */
    char **fifo;     /* owned ring of owned keys */
    size_t head, len, cap;
    struct gm_map state;    /* key -> flags */
    struct gm_map failures; /* key -> count */
    struct gm_map delayed;  /* key -> struct waiting (earliest only) */
    struct waiting *waiters;
    double tokens;
    uint64_t tokens_at;
};

uint64_t gm_wq_backoff_ms(const struct gm_wq_opts *o, int failures)
{
    uint64_t d = o->base_delay_ms;
    for (int i = 0; i < failures && d < o->max_delay_ms; i++)
        d *= 2;
    return d > o->max_delay_ms ? o->max_delay_ms : d;
}

static unsigned get_state(const struct gm_workqueue *q, const char *key)
{
    return (unsigned)(uintptr_t)gm_map_get(&q->state, key);
}

static void set_state(struct gm_workqueue *q, const char *key, unsigned st)
{
    if (st == 0)
        gm_map_del(&q->state, key);
    else
        gm_map_put(&q->state, key, (void *)(uintptr_t)st, NULL);
}

static void kick_cb(uv_idle_t *h)
{
    struct gm_workqueue *q = h->data;
    uv_idle_stop(h);
    if (q->len > 0 && q->ready)
        q->ready(q->data);
}

static int fifo_push(struct gm_workqueue *q, const char *key)
{
    if (q->len == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 64;
        char **f = malloc(cap * sizeof(*f));
        if (f == NULL)
            return -ENOMEM;
        for (size_t i = 0; i < q->len; i++)
            f[i] = q->fifo[(q->head + i) % q->cap];
        free(q->fifo);
        q->fifo = f;
        q->cap = cap;
        q->head = 0;
    }
    char *copy = strdup(key);
    if (copy == NULL)
        return -ENOMEM;
    q->fifo[(q->head + q->len) % q->cap] = copy;
    q->len++;
    uv_idle_start(q->kick, kick_cb);
    return 0;
}

void gm_wq_add(struct gm_workqueue *q, const char *key)
{
    unsigned st = get_state(q, key);

    if (st & ST_QUEUED)
        return;
    if (st & ST_PROCESSING) {
        set_state(q, key, st | ST_DIRTY);
        return;
    }
    if (fifo_push(q, key) == 0)
        set_state(q, key, st | ST_QUEUED);
}

static void waiting_close_cb(uv_handle_t *h)
{
    struct waiting *w = h->data;
    free(w->key);
    free(w);
}

static void waiting_remove(struct gm_workqueue *q, struct waiting *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        q->waiters = w->next;
    if (w->next)
        w->next->prev = w->prev;
    gm_map_del(&q->delayed, w->key);
    uv_timer_stop(&w->timer);
    uv_close((uv_handle_t *)&w->timer, waiting_close_cb);
}

static void waiting_fire(uv_timer_t *t)
{
    struct waiting *w = t->data;
    struct gm_workqueue *q = w->q;
    gm_wq_add(q, w->key);
    waiting_remove(q, w);
}

void gm_wq_add_after(struct gm_workqueue *q, const char *key, uint64_t delay_ms)
{
    if (delay_ms == 0) {
        gm_wq_add(q, key);
        return;
    }
    uint64_t due = uv_now(q->loop) + delay_ms;
    struct waiting *w = gm_map_get(&q->delayed, key);
    /* One timer per key, for the earliest time asked: a later add never
     * postpones an earlier one (client-go keeps the earliest too). */
    if (w) {
        if (w->due <= due)
            return;
        w->due = due;
        uv_timer_start(&w->timer, waiting_fire, delay_ms, 0);
        return;
    }
    w = calloc(1, sizeof(*w));
    if (w == NULL)
        return;
    w->key = strdup(key);
    if (w->key == NULL || gm_map_put(&q->delayed, key, w, NULL) != 0) {
        free(w->key);
        free(w);
        return;
    }
    w->q = q;
    w->due = due;
    uv_timer_init(q->loop, &w->timer);
    w->timer.data = w;
    w->next = q->waiters;
    if (q->waiters)
        q->waiters->prev = w;
    q->waiters = w;
    uv_timer_start(&w->timer, waiting_fire, delay_ms, 0);
}

/* The overall bucket: tokens may go negative so each caller learns its
 * wait at once. */
static uint64_t bucket_delay(struct gm_workqueue *q)
{
    uint64_t now = uv_now(q->loop);
    q->tokens += (double)(now - q->tokens_at) * q->opts.qps / 1000.0;
    if (q->tokens > q->opts.burst)
        q->tokens = q->opts.burst;
    q->tokens_at = now;
    q->tokens -= 1;
    if (q->tokens >= 0)
        return 0;
    return (uint64_t)(-q->tokens * 1000.0 / q->opts.qps + 0.999);
}

void gm_wq_add_rate_limited(struct gm_workqueue *q, const char *key)
{
    int n = (int)(uintptr_t)gm_map_get(&q->failures, key);
    uint64_t per_key = gm_wq_backoff_ms(&q->opts, n);
    uint64_t overall = bucket_delay(q);
    gm_map_put(&q->failures, key, (void *)(uintptr_t)(n + 1), NULL);
    gm_wq_add_after(q, key, per_key > overall ? per_key : overall);
}

void gm_wq_forget(struct gm_workqueue *q, const char *key)
{
    gm_map_del(&q->failures, key);
}

int gm_wq_num_requeues(const struct gm_workqueue *q, const char *key)
{
    return (int)(uintptr_t)gm_map_get(&q->failures, key);
}

int gm_wq_get(struct gm_workqueue *q, char **key)
{
    if (q->len == 0)
        return -EAGAIN;
    char *k = q->fifo[q->head];
    q->head = (q->head + 1) % q->cap;
    q->len--;
    unsigned st = get_state(q, k);
    set_state(q, k, (st & ~ST_QUEUED) | ST_PROCESSING);
    *key = k;
    return 0;
}

void gm_wq_done(struct gm_workqueue *q, const char *key)
{
    unsigned st = get_state(q, key);
    set_state(q, key, st & ~(ST_PROCESSING | ST_DIRTY));
    if (st & ST_DIRTY)
        gm_wq_add(q, key);
}

size_t gm_wq_len(const struct gm_workqueue *q)
{
    return q->len;
}

size_t gm_wq_waiting(const struct gm_workqueue *q)
{
    return q->delayed.len;
}

static void idle_close_cb(uv_handle_t *h)
{
    free(h);
}

int gm_wq_new(uv_loop_t *loop, const struct gm_wq_opts *opts,
              gm_wq_ready_cb ready, void *data, struct gm_workqueue **out)
{
    struct gm_workqueue *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return -ENOMEM;
    q->kick = calloc(1, sizeof(*q->kick));
    if (q->kick == NULL) {
        free(q);
        return -ENOMEM;
    }
    q->loop = loop;
    if (opts)
        q->opts = *opts;
    if (q->opts.base_delay_ms == 0)
        q->opts.base_delay_ms = 5;
    if (q->opts.max_delay_ms == 0)
        q->opts.max_delay_ms = 1000 * 1000;
    if (q->opts.qps <= 0)
        q->opts.qps = 10;
    if (q->opts.burst <= 0)
        q->opts.burst = 100;
    q->tokens = q->opts.burst;
    q->tokens_at = uv_now(loop);
    q->ready = ready;
    q->data = data;
    gm_map_init(&q->state);
    gm_map_init(&q->failures);
    gm_map_init(&q->delayed);
    uv_idle_init(loop, q->kick);
    q->kick->data = q;
    *out = q;
    return 0;
}

void gm_wq_free(struct gm_workqueue *q)
{
    if (q == NULL)
        return;
    while (q->waiters)
        waiting_remove(q, q->waiters);
    for (size_t i = 0; i < q->len; i++)
        free(q->fifo[(q->head + i) % q->cap]);
    free(q->fifo);
    gm_map_free(&q->state);
    gm_map_free(&q->failures);
    gm_map_free(&q->delayed);
    uv_idle_stop(q->kick);
    uv_close((uv_handle_t *)q->kick, idle_close_cb);
    free(q);
}
