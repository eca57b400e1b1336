/* Leader election on a coordination.k8s.io/v1 Lease, the way client-go's
 * leaderelection package does it, so gpumode replicas and kubectl's view of
 * the Lease agree:
 *
 * - acquire when the Lease is absent (create; a 409 means another replica
 *   won the race), has no holder, is ours, or has expired. Expiry is judged
 *   by our own clock: we note when we last saw the record change and wait
 *   leaseDurationSeconds from then, so clock skew between nodes is harmless.
 * - renew by update (PUT) carrying the last seen resourceVersion, so a
 *   competing write makes ours fail with 409 instead of silently winning.
 * - when no renewal succeeded for renew_deadline, leadership is lost:
 *   on_lost runs once and the controller exits to restart clean, because
 *   another replica may already be acting.
 * - on shutdown, release: update with an empty holder and a one-second
 *   duration so the next replica takes over at once. */
#ifndef GM_SERVER_LEADER_H
#define GM_SERVER_LEADER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "kube/client.h"
#include "server/metrics.h"

#define GM_LEADER_LEASE_NAME "gpumode-controller"

struct gm_leader_opts {
    const char *namespace; /* copied; the controller's namespace */
    const char *name;      /* copied; NULL: GM_LEADER_LEASE_NAME */
    const char *identity;  /* copied; see gm_leader_default_identity */
    /* 0 takes client-go's defaults: 15 s, 10 s, 2 s. The lease duration is
     * written in whole seconds (at least 1). */
    uint64_t lease_duration_ms;
    uint64_t renew_deadline_ms;
    uint64_t retry_period_ms;
    void (*on_started_leading)(void *data);
    void (*on_lost)(void *data); /* at most once; never after release */
    /* Optional: the holder we observe changed (NULL or "" for none). */
    void (*on_new_leader)(void *data, const char *identity);
    void *data;
    struct gm_metrics *metrics; /* borrowed, optional: gpumode_leader */
};

struct gm_leader;

/* k is borrowed and must outlive the elector (or be freed first, which
 * ends the elector's requests). *out is the caller's (gm_leader_free).
 * Returns -EINVAL when namespace or identity is missing or the deadlines
 * are inconsistent (renew deadline must be below the lease duration and
 * above the retry period). */
int gm_leader_new(uv_loop_t *loop, struct gm_kube *k,
                  const struct gm_leader_opts *opts, struct gm_leader **out);

/* Starts trying to acquire (first attempt at once). */
int gm_leader_start(struct gm_leader *l);

int gm_leader_is_leader(const struct gm_leader *l);
/* The identity we last saw holding the lease ("" when none). Borrowed until
 * the next loop turn. */
const char *gm_leader_holder(const struct gm_leader *l);
const char *gm_leader_identity(const struct gm_leader *l);

/* Gives the lease up and stops electing; no on_started_leading runs after
 * it. done(data, err) runs once the update is answered (err 0 or negative
 * errno). While acquiring with a request out, that answer decides: done
 * runs with 0 after releasing what it won, or -ENOTCONN. Returns
 * -ENOTCONN, and never calls done, when we neither lead nor wait on an
 * answer; electing stops all the same. */
int gm_leader_release(struct gm_leader *l, void (*done)(void *data, int err),
                      void *data);

/* Stops everything; no callback runs afterwards. The memory goes once the
 * loop has closed the timer. */
void gm_leader_free(struct gm_leader *l);

/* $POD_NAME when set and it fits in n (unique per pod, stable across
 * container restarts), else hostname + "_" + 8 random hex digits. Returns 0
 * or -E2BIG. */
int gm_leader_default_identity(char *out, size_t n);

#endif
