/* The transport: libcurl's multi interface driven by the libuv loop (socket
 * and timer callbacks), one connection pool for every request and watch.
 * HTTP/2 is negotiated over TLS and streams are multiplexed (PIPEWAIT), so a
 * hundred watches and requests share a handful of connections. The transport
 * knows nothing of Kubernetes objects; client.h builds on it. */
#ifndef GM_KUBE_HTTP_H
#define GM_KUBE_HTTP_H

#include <stddef.h>
#include <uv.h>

#include "kube/auth.h"
#include "kube/config.h"

struct gm_http;
struct gm_http_call;

/* Where credentials come from. gm_auth_current and gm_auth_invalidate fit
 * these shapes; tests pass their own. */
typedef int (*gm_cred_fn)(void *src, struct gm_cred *cred, gm_auth_cb cb,
                          void *data);
/* generation: that of the credentials the refused request carried. */
typedef void (*gm_cred_invalidate_fn)(void *src, uint64_t generation);
/* Why the last gm_cred_fn call failed (borrowed text), or NULL. */
typedef const char *(*gm_cred_error_fn)(void *src);

struct gm_http_opts {
    const struct gm_kube_config *cfg; /* borrowed; outlives the transport */
    gm_cred_fn cred;                  /* NULL: no credentials beyond cfg */
    gm_cred_invalidate_fn cred_invalidate;
    gm_cred_error_fn cred_error; /* NULL: failures say only that */
    void *cred_src;
    double qps;             /* client-side rate limit; <= 0 means none */
    int burst;              /* tokens available at once */
    long timeout_ms;        /* per non-streamed request; 0 means 30 s */
    size_t max_body;        /* cap on a non-streamed response; 0: 64 MiB */
    long stream_idle_s;     /* streams abort after this long with no byte
                               (unless the request sets idle_s) */
    const char *user_agent; /* borrowed; NULL means gpumode/<version> */
    /* Optional: told of every HTTP answer (retries included), for the
     * requests-by-verb-and-code metric. status 0: no answer. */
    void (*on_response)(void *data, const char *method, long status);
    void *on_response_data;
};

struct gm_http_req {
    const char *method;       /* GET, POST, PUT, PATCH, DELETE */
    const char *path;         /* path and query, appended to cfg->server */
    const char *content_type; /* for a body; NULL means application/json */
    const char *body;         /* copied by gm_http_send */
    size_t body_len;
    int stream;      /* deliver the body to on_data as it arrives */
    long timeout_ms; /* overrides the default; for streams, the whole */
    long idle_s;     /* a stream: cut after this long with no byte; 0 means
                        opts.stream_idle_s */
    int retry;       /* retry 429 (any verb) and 5xx/transport errors
                        (GET only), honouring Retry-After */
};

struct gm_http_result {
    int err;          /* 0, or negative errno when no HTTP answer was had:
                         -ETIMEDOUT, -ECONNREFUSED, -E2BIG (body over the cap),
                         -ECANCELED when gm_http_free closed the call */
    long status;      /* HTTP status, 0 when err */
    const char *body; /* borrowed until the callback returns; NUL-ended */
    size_t body_len;
    const char *errmsg; /* transport detail when err, else NULL */
};

/* Called exactly once per call that was not cancelled. */
typedef void (*gm_http_done_cb)(void *data, const struct gm_http_result *res);
/* Stream bytes; return non-zero to abort the call (done then gets -EPIPE).
 * Called once with (NULL, 0) when the headers of a 200 answer are in: the
 * stream is open, though the server may send nothing for a while. */
typedef int (*gm_http_data_cb)(void *data, const char *p, size_t n);

/* opts is copied (its pointers are borrowed). */
int gm_http_new(uv_loop_t *loop, const struct gm_http_opts *opts,
                struct gm_http **out);

/* Starts a call. On success *call (may be NULL if not wanted) identifies it
 * until done runs or gm_http_cancel is called; done never runs before this
 * returns, so it may be called from any callback. A failure to start
 * returns a negative errno and calls nothing. */
int gm_http_send(struct gm_http *h, const struct gm_http_req *req,
                 gm_http_done_cb done, gm_http_data_cb on_data, void *data,
                 struct gm_http_call **call);

/* Stops a call; its callbacks are never called afterwards, so the caller
 * frees whatever it gave as data. May be called from any callback, the
 * call's own on_data included (libcurl lets go of it on the next turn of
 * the loop). */
void gm_http_cancel(struct gm_http_call *call);

/* How long a connection to a peer that vanished without a reset lives on:
 * the kernel closes it once its data or its keepalive probes have gone this
 * long unanswered, and libcurl reconnects. Linux only (TCP_USER_TIMEOUT);
 * elsewhere keepalive alone, which stops probing while data is unanswered. */
#define GM_HTTP_DEAD_PEER_MS 30000

/* Sets the socket options behind GM_HTTP_DEAD_PEER_MS that libcurl cannot
 * (TCP_KEEPCNT, TCP_USER_TIMEOUT) on a TCP socket, and close-on-exec. Every
 * connection gets them through libcurl's sockopt callback; exposed for
 * tests. Returns 0 or a negative errno. */
int gm_http_tune_socket(int fd);

/* Counts for metrics and tests. */
struct gm_http_stats {
    unsigned long requests; /* HTTP requests sent, retries included */
    unsigned long retries;
    unsigned long auth_refreshes; /* 401s that led to a credential refresh */
    unsigned long connects;       /* new connections opened */
    unsigned long dropped;  /* connections shut after an unanswered probe */
    long last_http_version; /* CURL_HTTP_VERSION_* of the last response */
};
void gm_http_get_stats(const struct gm_http *h, struct gm_http_stats *out);
/* Calls not yet answered, watches excluded: what a graceful stop waits
 * for. */
size_t gm_http_pending(const struct gm_http *h);

/* Calls every open call's done with -ECANCELED (so owners free their
 * data), closes handles; the memory goes once the loop has run the close
 * callbacks. */
void gm_http_free(struct gm_http *h);

#endif
