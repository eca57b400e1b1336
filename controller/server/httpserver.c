#include "server/httpserver.h"

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/buf.h"
#include "common/log.h"

struct conn {
    uv_tcp_t tcp;    /* closed with timer; freed when both are closed */
    uv_timer_t idle; /* cuts idle keep-alive and unfinished requests */
    struct gm_httpd *h;
    struct conn *prev, *next;
    char *in; /* owned; max_header bytes: one request head at a time */
    size_t len;
    int open_handles;
    int closing;
    int writing;            /* a response is being written: reading is paused */
    int close_after;        /* close once the response is written */
    int in_head;            /* part of a request head is buffered */
    uint64_t head_deadline; /* when in_head: the head must be complete */
};

struct gm_httpd {
    uv_loop_t *loop;
    uv_tcp_t listener;
    struct gm_httpd_opts o;
    struct conn *conns;
    unsigned n_conns;
    int port;
    char addr[INET6_ADDRSTRLEN + 8]; /* as bound: "[::]:8080" */
    unsigned long requests;
    int closing;
    /* The listener plus every connection not yet freed; the server's own
     * memory goes when this reaches zero after gm_httpd_close. */
    unsigned refs;
};

struct wreq {
    uv_write_t w;
    struct conn *c;
    char *data; /* owned: head and body in one block */
};

static void server_unref(struct gm_httpd *h)
{
    if (--h->refs == 0 && h->closing)
        free(h);
}

/* ---- addresses ---- */

static int parse_port(const char *s, int *port)
{
    char *end;
    if (*s < '0' || *s > '9')
        return -EINVAL;
    long v = strtol(s, &end, 10);
    if (*end != '\0' || v < 0 || v > 65535)
        return -EINVAL;
    *port = (int)v;
    return 0;
}

/* any_host is set when the host was left out (":8080"): gm_httpd_start may
 * then fall back from "::" to 0.0.0.0, which it must not do for a host
 * the operator named. */
static int parse_addr(const char *addr, struct sockaddr_storage *out,
                      int *any_host)
{
    char host[64];
    const char *colon;
    int port;

    *any_host = 0;
    if (addr == NULL)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (close == NULL || close[1] != ':' ||
            (size_t)(close - addr - 1) >= sizeof(host))
            return -EINVAL;
        memcpy(host, addr + 1, (size_t)(close - addr - 1));
        host[close - addr - 1] = '\0';
        if (parse_port(close + 2, &port))
            return -EINVAL;
        return uv_ip6_addr(host, port, (struct sockaddr_in6 *)out) ? -EINVAL
                                                                   : 0;
    }
    colon = strrchr(addr, ':');
    if (colon == NULL || (size_t)(colon - addr) >= sizeof(host) ||
        parse_port(colon + 1, &port))
        return -EINVAL;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    /* No host means every interface of both families, as Go's net.Listen
     * reads it: the kubelet probes, and Prometheus scrapes, the pod's
     * first address, which is IPv6 on IPv6-only and IPv6-first clusters.
     * libuv binds "::" with IPV6_V6ONLY off, so IPv4 clients reach it too
     * (as v4-mapped addresses). */
    if (host[0] == '\0') {
        *any_host = 1;
        return uv_ip6_addr("::", port, (struct sockaddr_in6 *)out) ? -EINVAL
                                                                   : 0;
    }
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof(host), "127.0.0.1");
    return uv_ip4_addr(host, port, (struct sockaddr_in *)out) ? -EINVAL : 0;
}

int gm_httpd_parse_addr(const char *addr, struct sockaddr_storage *out)
{
    int any_host;
    return parse_addr(addr, out, &any_host);
}

/* "0.0.0.0:8080", "[::]:8080": how an operator would write it back. */
static void addr_text(const struct sockaddr_storage *ss, char *out, size_t n)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        uv_ip6_name(a, ip, sizeof(ip));
        snprintf(out, n, "[%s]:%d", ip, ntohs(a->sin6_port));
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        uv_ip4_name(a, ip, sizeof(ip));
        snprintf(out, n, "%s:%d", ip, ntohs(a->sin_port));
    }
}

/* ---- connections ---- */

static void conn_handle_closed(uv_handle_t *hd)
{
    struct conn *c = hd->data;
    if (--c->open_handles > 0)
        return;
    struct gm_httpd *h = c->h;
    free(c->in);
    free(c);
    server_unref(h);
}

static void conn_close(struct conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    if (c->prev)
        c->prev->next = c->next;
    else
        c->h->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->h->n_conns--;
    uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
    uv_close((uv_handle_t *)&c->idle, conn_handle_closed);
}

static void idle_fired(uv_timer_t *t)
{
    conn_close(t->data);
}

/* Restarts the connection's timer: the idle time, but never past the
 * deadline of a request head begun, so a client sending a byte now and
 * then cannot hold a connection (one of a few) for ever. */
static void touch(struct conn *c)
{
    uint64_t ms = c->h->o.idle_ms;
    uint64_t now = uv_now(c->h->loop);

    if (c->len > 0 && !c->writing) {
        if (!c->in_head) {
            c->in_head = 1;
            c->head_deadline = now + c->h->o.head_ms;
        }
        uint64_t left = c->head_deadline > now ? c->head_deadline - now : 0;
        if (left < ms)
            ms = left;
    } else if (c->len == 0) {
        c->in_head = 0;
    }
    uv_timer_start(&c->idle, idle_fired, ms, 0);
}

static void process(struct conn *c);
static void read_start(struct conn *c);

static void write_done(uv_write_t *w, int status)
{
    struct wreq *r = (struct wreq *)w;
    struct conn *c = r->c;
    free(r->data);
    free(r);
    if (c->closing)
        return;
    c->writing = 0;
    if (status < 0 || c->close_after) {
        conn_close(c);
        return;
    }
    touch(c);
    /* Requests pipelined behind this one are already buffered. */
    process(c);
    if (!c->closing && !c->writing)
        read_start(c);
}

static const char *status_text(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "Unknown";
    }
}

/* Queues one whole response and pauses reading until it is written, so a
 * client that pipelines without reading holds at most one response. */
static void respond(struct conn *c, int status, const char *ctype,
                    const char *body, size_t blen, int head_only)
{
    char head[512];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
                     "Content-Length: %zu\r\n%s%s\r\n",
                     status, status_text(status), ctype, blen,
                     status == 405 ? "Allow: GET, HEAD\r\n" : "",
                     c->close_after ? "Connection: close\r\n" : "");
    size_t total = (size_t)n + (head_only ? 0 : blen);
    struct wreq *r = calloc(1, sizeof(*r));
    char *data = malloc(total);
    if (r == NULL || data == NULL) {
        free(r);
        free(data);
        conn_close(c);
        return;
    }
    memcpy(data, head, (size_t)n);
    if (!head_only && blen)
        memcpy(data + n, body, blen);
    r->c = c;
    r->data = data;
    uv_buf_t b = uv_buf_init(data, (unsigned)total);
    c->h->requests++;
    if (uv_write(&r->w, (uv_stream_t *)&c->tcp, &b, 1, write_done) != 0) {
        free(data);
        free(r);
        conn_close(c);
        return;
    }
    c->writing = 1;
    uv_read_stop((uv_stream_t *)&c->tcp);
}

static void respond_text(struct conn *c, int status, const char *text,
                         int head_only)
{
    respond(c, status, "text/plain; charset=utf-8", text, strlen(text),
            head_only);
}

static void serve_metrics(struct conn *c, int head_only)
{
    struct gm_buf b;
    gm_buf_init(&b, c->h->o.max_response);
    int err = c->h->o.metrics ? gm_metrics_render(c->h->o.metrics, &b) : 0;
    if (err) {
        gm_warn("metrics: cannot render: %s", strerror(-err));
        respond_text(c, 500, "cannot render metrics\n", head_only);
    } else {
        respond(c, 200, GM_METRICS_CONTENT_TYPE, b.data ? b.data : "", b.len,
                head_only);
    }
    gm_buf_free(&b);
}

static void serve_readyz(struct conn *c, int head_only)
{
    char reason[256] = "";
    char body[300];
    const struct gm_httpd_opts *o = &c->h->o;
    if (o->ready == NULL || o->ready(o->ready_data, reason, sizeof(reason))) {
        respond_text(c, 200, "ok\n", head_only);
        return;
    }
    snprintf(body, sizeof(body), "not ready: %s\n",
             reason[0] ? reason : "starting");
    respond_text(c, 503, body, head_only);
}

/* The value of header name in head (lines after the request line), copied
 * into out; "" when absent. */
static void header(const char *head, const char *name, char *out, size_t n)
{
    size_t nl = strlen(name);
    const char *p = head;
    out[0] = '\0';
    while ((p = strstr(p, "\r\n")) != NULL) {
        p += 2;
        if (strncasecmp(p, name, nl) != 0 || p[nl] != ':')
            continue;
        const char *v = p + nl + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        size_t vl = strcspn(v, "\r");
        if (vl >= n)
            vl = n - 1;
        memcpy(out, v, vl);
        out[vl] = '\0';
        return;
    }
}

/* Answers the request whose head is head (NUL-terminated, CRLFs kept). */
static void handle(struct conn *c, const char *head)
{
    char method[16], target[1024], version[16], v[64];
    const struct gm_httpd_opts *o = &c->h->o;

    if (sscanf(head, "%15s %1023s %15s", method, target, version) != 3 ||
        strncmp(version, "HTTP/1.", 7) != 0) {
        c->close_after = 1;
        respond_text(c, 400, "bad request\n", 0);
        return;
    }
    int http10 = strcmp(version, "HTTP/1.0") == 0;
    header(head, "Connection", v, sizeof(v));
    if (http10 ? strcasestr(v, "keep-alive") == NULL
               : strcasestr(v, "close") != NULL)
        c->close_after = 1;
    /* Bodies are never read here, so a request announcing one ends the
     * connection after the answer instead of desynchronising it. */
    char cl[32], te[32];
    header(head, "Content-Length", cl, sizeof(cl));
    header(head, "Transfer-Encoding", te, sizeof(te));
    int has_body = (cl[0] && strcmp(cl, "0") != 0) || te[0];
    if (has_body)
        c->close_after = 1;

    int head_only = strcmp(method, "HEAD") == 0;
    if (strcmp(method, "GET") != 0 && !head_only) {
        respond_text(c, 405, "method not allowed\n", 0);
        return;
    }
    if (has_body) {
        respond_text(c, 400, "request bodies are not accepted\n", head_only);
        return;
    }
    target[strcspn(target, "?#")] = '\0';
    if ((o->endpoints & GM_HTTPD_METRICS) && strcmp(target, "/metrics") == 0)
        serve_metrics(c, head_only);
    else if ((o->endpoints & GM_HTTPD_HEALTH) &&
             strcmp(target, "/healthz") == 0)
        respond_text(c, 200, "ok\n", head_only);
    else if ((o->endpoints & GM_HTTPD_HEALTH) && strcmp(target, "/readyz") == 0)
        serve_readyz(c, head_only);
    else
        respond_text(c, 404, "not found\n", head_only);
}

/* Answers the buffered request, if its head is complete. One at a time: the
 * next is looked at when this answer has been written. */
static void process(struct conn *c)
{
    if (c->closing || c->writing || c->len == 0)
        return;
    char *end = memmem(c->in, c->len, "\r\n\r\n", 4);
    if (end == NULL) {
        if (c->len >= c->h->o.max_header) {
            c->close_after = 1;
            respond_text(c, 431, "request head too large\n", 0);
        }
        return;
    }
    size_t head_len = (size_t)(end - c->in) + 4;
    /* A NUL inside the head would hide the rest from the string parsing. */
    if (memchr(c->in, '\0', head_len) != NULL) {
        c->close_after = 1;
        respond_text(c, 400, "bad request\n", 0);
        return;
    }
    end[2] = '\0'; /* keep the last header's CRLF for header() */
    handle(c, c->in);
    memmove(c->in, c->in + head_len, c->len - head_len);
    c->len -= head_len;
    c->in_head = 0; /* what is left begins the next head */
    /* The answer gets the idle time, not what was left of the head's. */
    if (!c->closing)
        touch(c);
}

static void alloc_cb(uv_handle_t *hd, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = hd->data;
    (void)suggested;
    *buf = uv_buf_init(c->in + c->len, (unsigned)(c->h->o.max_header - c->len));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    (void)buf;
    if (n < 0) {
        conn_close(c);
        return;
    }
    if (n == 0)
        return;
    c->len += (size_t)n;
    touch(c);
    process(c);
}

static void read_start(struct conn *c)
{
    if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read) != 0)
        conn_close(c);
}

/* At the cap, a new client (the kubelet's probe, a scraper) is served
 * rather than refused: the oldest connection waiting between requests makes
 * room, else the one whose unfinished request head began first. So
 * connections holding part of a request (each cut after head_ms, and
 * opened again) cannot keep the probe out for long; a flood of new
 * connections arriving in the same instant as the probe still can, as
 * any cap allows. NULL when every connection is being answered. */
static struct conn *make_room(struct gm_httpd *h)
{
    struct conn *idle = NULL, *slow = NULL;
    for (struct conn *c = h->conns; c; c = c->next) {
        if (c->writing || c->closing)
            continue;
        if (c->len == 0)
            idle = c; /* newest first: the last one seen is the oldest */
        else if (c->in_head &&
                 (slow == NULL || c->head_deadline <= slow->head_deadline))
            slow = c;
    }
    return idle ? idle : slow;
}

static void on_connection(uv_stream_t *server, int status)
{
    struct gm_httpd *h = server->data;
    if (status < 0 || h->closing)
        return;
    struct conn *c = calloc(1, sizeof(*c));
    if (c)
        c->in = malloc(h->o.max_header);
    if (c == NULL || c->in == NULL) {
        /* Accepting needs a handle; without memory leave it queued. */
        if (c)
            free(c);
        return;
    }
    if (h->n_conns >= h->o.max_conns) {
        struct conn *old = make_room(h);
        if (old)
            conn_close(old);
    }
    c->h = h;
    uv_tcp_init(h->loop, &c->tcp);
    uv_timer_init(h->loop, &c->idle);
    c->tcp.data = c;
    c->idle.data = c;
    c->open_handles = 2;
    h->refs++;
    c->next = h->conns;
    if (h->conns)
        h->conns->prev = c;
    h->conns = c;
    h->n_conns++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 ||
        h->n_conns > h->o.max_conns) {
        conn_close(c);
        return;
    }
    touch(c);
    read_start(c);
}

static void listener_closed(uv_handle_t *hd)
{
    server_unref(hd->data);
}

/* One attempt at serving on *ss. On failure the half-made server is
 * closed and freed once the loop runs its close callback. */
static int listen_on(uv_loop_t *loop, const struct gm_httpd_opts *opts,
                     const struct sockaddr_storage *ss, struct gm_httpd **out)
{
    struct gm_httpd *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return -ENOMEM;
    h->loop = loop;
    h->o = *opts;
    if (h->o.max_header == 0)
        h->o.max_header = 8192;
    if (h->o.max_response == 0)
        h->o.max_response = 8u << 20;
    if (h->o.max_conns == 0)
        h->o.max_conns = 64;
    if (h->o.idle_ms == 0)
        h->o.idle_ms = 30000;
    if (h->o.head_ms == 0)
        h->o.head_ms = 10000;
    h->o.addr = NULL; /* borrowed string not needed past here */
    uv_tcp_init(loop, &h->listener);
    h->listener.data = h;
    h->refs = 1;
    int err = uv_tcp_bind(&h->listener, (const struct sockaddr *)ss, 0);
    if (!err)
        err = uv_listen((uv_stream_t *)&h->listener, 128, on_connection);
    if (!err) {
        struct sockaddr_storage bound;
        int len = sizeof(bound);
        err = uv_tcp_getsockname(&h->listener, (struct sockaddr *)&bound, &len);
        if (!err) {
            h->port = ntohs(bound.ss_family == AF_INET6
                                ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                : ((struct sockaddr_in *)&bound)->sin_port);
            addr_text(&bound, h->addr, sizeof(h->addr));
        }
    }
    if (err) {
        h->closing = 1;
        uv_close((uv_handle_t *)&h->listener, listener_closed);
        return err;
    }
    *out = h;
    return 0;
}

int gm_httpd_start(uv_loop_t *loop, const struct gm_httpd_opts *opts,
                   struct gm_httpd **out)
{
    struct sockaddr_storage ss;
    int any_host;
    int err = parse_addr(opts->addr, &ss, &any_host);
    if (err)
        return err;
    /* libuv writes to sockets with writev, without MSG_NOSIGNAL: a client
     * that closes before reading its answers (pipelined requests, a
     * scraper's timeout) would raise SIGPIPE, whose default action ends
     * the whole controller. The write then fails with EPIPE instead. */
    signal(SIGPIPE, SIG_IGN);
    err = listen_on(loop, opts, &ss, out);
    /* A kernel without IPv6 (ipv6.disable=1) cannot make the socket; one
     * with IPv6 turned off may refuse the address. Every IPv4 interface
     * is then what ":P" can still mean. A named host gets no such
     * substitute: its error is the operator's to see. */
    if (any_host && (err == -EAFNOSUPPORT || err == -EADDRNOTAVAIL)) {
        int port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        uv_ip4_addr("0.0.0.0", port, (struct sockaddr_in *)&ss);
        gm_warn("http: cannot listen on [::]:%d (%s), so IPv4 only: "
                "0.0.0.0:%d",
                port, strerror(-err), port);
        err = listen_on(loop, opts, &ss, out);
    }
    if (err)
        return err;
    gm_info("http: serving%s%s on %s",
            (opts->endpoints & GM_HTTPD_METRICS) ? " /metrics" : "",
            (opts->endpoints & GM_HTTPD_HEALTH) ? " /healthz /readyz" : "",
            (*out)->addr);
    return 0;
}

int gm_httpd_port(const struct gm_httpd *h)
{
    return h->port;
}

const char *gm_httpd_addr(const struct gm_httpd *h)
{
    return h->addr;
}

unsigned long gm_httpd_requests(const struct gm_httpd *h)
{
    return h->requests;
}

void gm_httpd_close(struct gm_httpd *h)
{
    if (h == NULL || h->closing)
        return;
    h->closing = 1;
    while (h->conns)
        conn_close(h->conns);
    uv_close((uv_handle_t *)&h->listener, listener_closed);
}
