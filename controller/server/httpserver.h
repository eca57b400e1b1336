/* A minimal HTTP/1.1 server on the libuv loop for the operational
 * endpoints: /metrics (Prometheus text), /healthz and /readyz. GET and HEAD
 * only, no request bodies, headers capped, keep-alive unless the client
 * asks to close, idle connections cut. No threads: a slow scraper can only
 * hold its own connection, and the caps bound what it can make us hold. */
#ifndef GM_SERVER_HTTPSERVER_H
#define GM_SERVER_HTTPSERVER_H

#include <stddef.h>
#include <sys/socket.h>
#include <uv.h>

#include "server/metrics.h"

/* Returns non-zero when caches have synced and the controller can act.
 * Otherwise it writes a short reason (served with the 503) to reason. */
typedef int (*gm_ready_fn)(void *data, char *reason, size_t reason_len);

/* Which endpoints a server answers; the others are 404. With one address
 * for both flags, start one server with both. */
#define GM_HTTPD_METRICS 1u
#define GM_HTTPD_HEALTH 2u

struct gm_httpd_opts {
    const char *addr;           /* ":8080", "127.0.0.1:8081", "[::1]:9090";
                                   port 0 picks a free port (tests) */
    unsigned endpoints;         /* GM_HTTPD_* flags */
    struct gm_metrics *metrics; /* borrowed; must outlive the server */
    gm_ready_fn ready;          /* NULL: always ready */
    void *ready_data;
    size_t max_header;   /* request head cap; 0: 8 KiB, else 431 */
    size_t max_response; /* rendered /metrics cap; 0: 8 MiB */
    unsigned max_conns;  /* 0: 64; at the cap a new connection closes the
                            oldest one idle between requests, else the one
                            whose unfinished head began first; only when
                            all are being answered is it closed itself */
    uint64_t idle_ms;    /* 0: 30 s, keep-alive and unfinished heads */
    uint64_t head_ms;    /* 0: 10 s, from a request head's first byte to
                            its end, however the bytes trickle in */
};

struct gm_httpd;

/* Parses a listen address. ":P" means every interface, IPv6 and IPv4
 * ("::", which takes IPv4 clients too), as Go's net.Listen reads it;
 * "host:P" takes an IPv4 literal or "localhost"; "[v6]:P" an IPv6 literal
 * ("[::]:P" is every interface too, "[::1]:P" loopback). No name
 * resolution, so start-up never blocks. Returns 0 or -EINVAL. */
int gm_httpd_parse_addr(const char *addr, struct sockaddr_storage *out);

/* Binds and listens; SIGPIPE is ignored from then on, process-wide (see
 * gm_httpd_start). ":P" where the host has no IPv6 falls back to 0.0.0.0:P,
 * with a warning. opts is copied (its pointers borrowed). *out is the
 * caller's until gm_httpd_close. Returns 0, -EINVAL for a bad address, or
 * the bind/listen error (e.g. -EADDRINUSE). */
int gm_httpd_start(uv_loop_t *loop, const struct gm_httpd_opts *opts,
                   struct gm_httpd **out);

/* The port actually bound (useful with port 0). */
int gm_httpd_port(const struct gm_httpd *h);

/* The address bound, as text ("[::]:8080", "127.0.0.1:8081"), with the
 * port picked for port 0. Borrowed: it lives as long as h. */
const char *gm_httpd_addr(const struct gm_httpd *h);

/* Requests answered so far, for tests. */
unsigned long gm_httpd_requests(const struct gm_httpd *h);

/* Stops listening and closes every connection; the memory goes once the
 * loop has run the close callbacks. */
void gm_httpd_close(struct gm_httpd *h);

#endif
