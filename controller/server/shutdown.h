/* Orderly shutdown on SIGTERM or SIGINT, on the loop (uv_signal): stop
 * starting new work, give in-flight writes a bounded time to finish, give up
 * the leader Lease so the next replica takes over at once, then let the
 * caller close its handles. A second signal skips the waiting. */
#ifndef GM_SERVER_SHUTDOWN_H
#define GM_SERVER_SHUTDOWN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct gm_shutdown_hooks {
    /* Stop taking keys from the queue and starting switches. */
    void (*stop_new_work)(void *data);
    /* Writes still out; polled every 50 ms until 0 or grace_ms passed. */
    size_t (*in_flight)(void *data);
    /* Optional: start the release and call done(arg) when it ends (e.g. a
     * wrapper around gm_leader_release). Return non-zero when there is
     * nothing to release; done is then not called. */
    int (*release)(void *data, void (*done)(void *arg), void *arg);
    /* Close every handle (or uv_stop); the loop then ends. */
    void (*finish)(void *data);
    void *data;
    uint64_t grace_ms;   /* 0: 10 s for in-flight writes */
    uint64_t release_ms; /* 0: 3 s for the Lease release */
};

struct gm_shutdown;

/* Installs the signal handlers (they do not keep the loop alive). hooks
 * is copied. *out is the caller's (gm_shutdown_free). */
int gm_shutdown_new(uv_loop_t *loop, const struct gm_shutdown_hooks *hooks,
                    struct gm_shutdown **out);

/* Starts the sequence as if signum had arrived (e.g. after losing the
 * lease, with 0). Calling it again while it runs skips to the next step. */
void gm_shutdown_begin(struct gm_shutdown *s, int signum);

/* Non-zero once the sequence has started. */
int gm_shutdown_started(const struct gm_shutdown *s);

/* Closes the handlers and timer; the memory goes with the close
 * callbacks. Safe to call from the finish hook. */
void gm_shutdown_free(struct gm_shutdown *s);

#endif
