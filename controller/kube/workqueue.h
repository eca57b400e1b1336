/* A work queue in the shape of client-go's rate-limited queue, on the loop:
 * keys are de-duplicated, a key is never handed out twice at once, a key
 * added while in flight is queued again when it is done, failures back off
 * per key (5 ms doubling to 1000 s) under an overall token bucket, and
 * delayed adds run on timers. */
#ifndef GM_KUBE_WORKQUEUE_H
#define GM_KUBE_WORKQUEUE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct gm_workqueue;

/* Called on the loop when keys are ready; the consumer calls gm_wq_get until
 * it returns -EAGAIN. */
typedef void (*gm_wq_ready_cb)(void *data);

struct gm_wq_opts {
    uint64_t base_delay_ms; /* default 5 */
    uint64_t max_delay_ms;  /* default 1000 s */
    double qps;             /* overall bucket; default 10 */
    int burst;              /* default 100 */
};

int gm_wq_new(uv_loop_t *loop, const struct gm_wq_opts *opts,
              gm_wq_ready_cb ready, void *data, struct gm_workqueue **out);
/* Frees keys and timers; no callback runs afterwards. */
void gm_wq_free(struct gm_workqueue *q);

void gm_wq_add(struct gm_workqueue *q, const char *key);
void gm_wq_add_after(struct gm_workqueue *q, const char *key,
                     uint64_t delay_ms);
/* Re-queues after the key's next backoff delay (or the bucket's, if
 * longer). */
void gm_wq_add_rate_limited(struct gm_workqueue *q, const char *key);
/* Clears the key's failure count after a success. */
void gm_wq_forget(struct gm_workqueue *q, const char *key);
int gm_wq_num_requeues(const struct gm_workqueue *q, const char *key);

/* Takes the next key: *key is the caller's (free it after gm_wq_done).
 * Returns -EAGAIN when nothing is ready. */
int gm_wq_get(struct gm_workqueue *q, char **key);
/* Ends processing of key; re-queues it if it was added meanwhile. */
void gm_wq_done(struct gm_workqueue *q, const char *key);

size_t gm_wq_len(const struct gm_workqueue *q);     /* queued, ready */
size_t gm_wq_waiting(const struct gm_workqueue *q); /* on delay timers */

/* The delay gm_wq_add_rate_limited would use for a key failing n times:
 * exported for tests of the schedule. */
uint64_t gm_wq_backoff_ms(const struct gm_wq_opts *opts, int failures);

#endif
