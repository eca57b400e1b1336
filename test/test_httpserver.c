/* The operational HTTP server on a real loopback socket, driven from the
 * same loop: endpoints through the project's own curl transport (with
 * keep-alive visible as one connection), and raw requests from a tiny uv
 * client for what a well-behaved client never sends: pipelining, bodies,
 * oversized heads, garbage, idling, too many connections. Also which
 * addresses it listens on: ":P" on IPv6 and IPv4, with IPv4 alone where
 * the host has no IPv6. */
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "kube/http.h"
#include "server/httpserver.h"
#include "support/httpd.h"

struct fx {
    uv_loop_t loop;
    struct gm_metrics *metrics;
    struct gm_httpd *srv;
    int ready;
};

static int ready_fn(void *data, char *reason, size_t n)
{
    struct fx *f = data;
    if (!f->ready)
        snprintf(reason, n, "caches not synced: nodes");
    return f->ready;
}

static struct fx *fx_new(const struct gm_httpd_opts *extra)
{
    struct fx *f = calloc(1, sizeof(*f));
    uv_loop_init(&f->loop);
    assert_int_equal(gm_metrics_new(&f->metrics), 0);
    assert_int_equal(gm_metrics_define_gpumode(f->metrics, "9.9.9"), 0);
    struct gm_httpd_opts o = {0};
    if (extra)
        o = *extra;
    o.addr = extra && extra->addr ? extra->addr : "127.0.0.1:0";
    o.endpoints = GM_HTTPD_METRICS | GM_HTTPD_HEALTH;
    o.metrics = f->metrics;
    o.ready = ready_fn;
    o.ready_data = f;
    assert_int_equal(gm_httpd_start(&f->loop, &o, &f->srv), 0);
    assert_true(gm_httpd_port(f->srv) > 0);
    return f;
}

static void fx_free(struct fx *f)
{
    gm_httpd_close(f->srv);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    gm_metrics_free(f->metrics);
    free(f);
}

/* ---- a raw client ---- */

struct raw {
    uv_tcp_t tcp;
    uv_connect_t conn;
    uv_write_t w;
    uv_buf_t req;
    char in[65536];
    size_t len;
    int eof;
    int connected;
    int conn_err; /* the connect's error: the test says what it expects */
};

static void raw_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    struct raw *r = h->data;
    (void)s;
    *b = uv_buf_init(r->in + r->len, (unsigned)(sizeof(r->in) - 1 - r->len));
}

static void raw_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct raw *r = s->data;
    (void)b;
    if (n < 0) {
        r->eof = 1;
        uv_read_stop(s);
        return;
    }
    r->len += (size_t)n;
    r->in[r->len] = '\0';
}

static void raw_written(uv_write_t *w, int status)
{
    (void)w;
    (void)status;
}

static void raw_connected(uv_connect_t *c, int status)
{
    struct raw *r = c->handle->data;
    if (status < 0) {
        r->conn_err = status;
        r->eof = 1;
        return;
    }
    r->connected = 1;
    uv_read_start((uv_stream_t *)&r->tcp, raw_alloc, raw_read);
    if (r->req.len)
        uv_write(&r->w, (uv_stream_t *)&r->tcp, &r->req, 1, raw_written);
}

/* Sends req (may be "") to sa and collects what comes back until the
 * server closes or ms pass. Returns the raw client; raw_free it. */
static struct raw *raw_send_to(struct fx *f, const struct sockaddr *sa,
                               const char *req, int ms)
{
    struct raw *r = calloc(1, sizeof(*r));
    uv_tcp_init(&f->loop, &r->tcp);
    r->tcp.data = r;
    r->req = uv_buf_init((char *)(uintptr_t)req, (unsigned)strlen(req));
    assert_int_equal(uv_tcp_connect(&r->conn, &r->tcp, sa, raw_connected), 0);
    th_run_until(&f->loop, &r->eof, ms);
    return r;
}

/* raw_send_to the server on 127.0.0.1. */
static struct raw *raw_send(struct fx *f, const char *req, int ms)
{
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", gm_httpd_port(f->srv), &sa);
    struct raw *r = raw_send_to(f, (const struct sockaddr *)&sa, req, ms);
    assert_int_equal(r->conn_err, 0);
    return r;
}

static void raw_closed(uv_handle_t *h)
{
    free(h->data);
}

static void raw_free(struct fx *f, struct raw *r)
{
    uv_close((uv_handle_t *)&r->tcp, raw_closed);
    uv_run(&f->loop, UV_RUN_NOWAIT);
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

/* ---- through the curl transport ---- */

struct got {
    int done;
    long status;
    int err;
    char body[65536];
};

static void got_cb(void *data, const struct gm_http_result *res)
{
    struct got *g = data;
    g->done = 1;
    g->status = res->status;
    g->err = res->err;
    snprintf(g->body, sizeof(g->body), "%s", res->body ? res->body : "");
}

static void get(struct fx *f, struct gm_http *h, const char *path,
                struct got *g)
{
    memset(g, 0, sizeof(*g));
    struct gm_http_req req = {.method = "GET", .path = path};
    assert_int_equal(gm_http_send(h, &req, got_cb, NULL, g, NULL), 0);
    assert_true(th_run_until(&f->loop, &g->done, 3000));
    assert_int_equal(g->err, 0);
}

static void test_parse_addr(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    const struct sockaddr_in *in4 = (const struct sockaddr_in *)&ss;
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;

    /* No host: every interface of both families, as "::" takes IPv4
     * clients too. */
    assert_int_equal(gm_httpd_parse_addr(":8080", &ss), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_int_equal(ntohs(in6->sin6_port), 8080);
    assert_memory_equal(&in6->sin6_addr, &in6addr_any, sizeof(in6addr_any));
    assert_int_equal(gm_httpd_parse_addr("[::]:8080", &ss), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_memory_equal(&in6->sin6_addr, &in6addr_any, sizeof(in6addr_any));
    assert_int_equal(gm_httpd_parse_addr("0.0.0.0:8080", &ss), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(ntohs(in4->sin_port), 8080);
    assert_int_equal(in4->sin_addr.s_addr, htonl(INADDR_ANY));
    assert_int_equal(gm_httpd_parse_addr("127.0.0.1:8081", &ss), 0);
    assert_int_equal(in4->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
    assert_int_equal(gm_httpd_parse_addr("localhost:0", &ss), 0);
    assert_int_equal(in4->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
    assert_int_equal(gm_httpd_parse_addr("[::1]:9090", &ss), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_int_equal(ntohs(in6->sin6_port), 9090);
    assert_memory_equal(&in6->sin6_addr, &in6addr_loopback,
                        sizeof(in6addr_loopback));

    const char *bad[] = {"8080",        ":",         ":65536",        ":-1",
                         ":80x",        "host.x:80", "[::1]80",       "[::1:80",
                         "1.2.3.4:80:", "",          "host:notaport", "[::1]:",
                         "[]:80",       "::1:80",    "[::1]:80x",     NULL};
    for (int i = 0; bad[i]; i++)
        if (gm_httpd_parse_addr(bad[i], &ss) != -EINVAL)
            fail_msg("accepted %s", bad[i]);
    assert_int_equal(gm_httpd_parse_addr(NULL, &ss), -EINVAL);
}

static void test_endpoints_keepalive(void **state)
{
    (void)state;
    struct fx *f = fx_new(NULL);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", gm_httpd_port(f->srv));
    struct gm_kube_config cfg = {.server = url};
    struct gm_http_opts ho = {.cfg = &cfg};
    struct gm_http *h;
    assert_int_equal(gm_http_new(&f->loop, &ho, &h), 0);
    struct got *g = malloc(sizeof(*g));

    get(f, h, "/metrics", g);
    assert_int_equal(g->status, 200);
    assert_non_null(
        strstr(g->body, "gpumode_build_info{version=\"9.9.9\"} 1\n"));
    assert_non_null(strstr(g->body, "# TYPE gpumode_nodes gauge\n"));

    get(f, h, "/healthz", g);
    assert_int_equal(g->status, 200);
    assert_string_equal(g->body, "ok\n");

    get(f, h, "/readyz", g);
    assert_int_equal(g->status, 503);
    assert_string_equal(g->body, "not ready: caches not synced: nodes\n");
    f->ready = 1;
    get(f, h, "/readyz?verbose", g);
    assert_int_equal(g->status, 200);

    get(f, h, "/nope", g);
    assert_int_equal(g->status, 404);

    struct gm_http_stats st;
    gm_http_get_stats(h, &st);
    assert_int_equal(st.connects, 1); /* every request on one connection */
    assert_int_equal(gm_httpd_requests(f->srv), 5);

    free(g);
    gm_http_free(h);
    fx_free(f);
}

static void test_pipelined_and_close(void **state)
{
    (void)state;
    struct fx *f = fx_new(NULL);
    struct raw *r =
        raw_send(f,
                 "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                 "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
                 "GET /readyz HTTP/1.1\r\nConnection: close\r\n\r\n",
                 3000);
    assert_true(r->eof);
    assert_int_equal(count(r->in, "HTTP/1.1 "), 3);
    assert_non_null(strstr(r->in, "HTTP/1.1 200 OK\r\n"));
    /* HEAD: the length of what GET would send, and no body. */
    const char *head = strstr(r->in, "Content-Type: text/plain; version=0.0.4");
    assert_non_null(head);
    assert_null(strstr(r->in, "# HELP"));
    assert_non_null(strstr(r->in, "HTTP/1.1 503 Service Unavailable\r\n"));
    assert_non_null(strstr(r->in, "Connection: close\r\n"));
    raw_free(f, r);

    /* HTTP/1.0 closes unless asked to keep the connection. */
    r = raw_send(f, "GET /healthz HTTP/1.0\r\n\r\n", 3000);
    assert_true(r->eof);
    assert_non_null(strstr(r->in, "HTTP/1.1 200 OK\r\n"));
    raw_free(f, r);
    fx_free(f);
}

static void test_bad_requests(void **state)
{
    (void)state;
    struct fx *f = fx_new(NULL);

    struct raw *r = raw_send(
        f, "POST /metrics HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi", 3000);
    assert_true(r->eof);
    assert_non_null(strstr(r->in, "HTTP/1.1 405 Method Not Allowed\r\n"));
    assert_non_null(strstr(r->in, "Allow: GET, HEAD\r\n"));
    raw_free(f, r);

    r = raw_send(f, "DELETE /healthz HTTP/1.1\r\n\r\n", 300);
    assert_non_null(strstr(r->in, "HTTP/1.1 405 "));
    raw_free(f, r);

    r = raw_send(f, "GET /healthz HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
                 3000);
    assert_true(r->eof);
    assert_non_null(strstr(r->in, "HTTP/1.1 400 "));
    raw_free(f, r);

    r = raw_send(f, "garbage\r\n\r\n", 3000);
    assert_true(r->eof);
    assert_non_null(strstr(r->in, "HTTP/1.1 400 "));
    raw_free(f, r);

    r = raw_send(f, "GET / SPDY/3\r\n\r\n", 3000);
    assert_true(r->eof);
    assert_non_null(strstr(r->in, "HTTP/1.1 400 "));
    raw_free(f, r);

    /* A head that never ends within the cap. */
    char *big = malloc(10000);
    memset(big, 'a', 9999);
    memcpy(big, "GET /healthz HTTP/1.1\r\nX-Long: ", 31);
    big[9999] = '\0';
    r = raw_send(f, big, 3000);
    assert_true(r->eof);
    assert_non_null(strstr(r->in, "HTTP/1.1 431 "));
    raw_free(f, r);
    free(big);
    fx_free(f);
}

static void test_idle_and_conn_cap(void **state)
{
    (void)state;
    struct gm_httpd_opts o = {.idle_ms = 100, .max_conns = 1};
    struct fx *f = fx_new(&o);

    /* An unfinished head is cut after the idle time. */
    uint64_t t0 = uv_now(&f->loop);
    struct raw *r = raw_send(f, "GET /healthz HTTP/1.1\r\n", 3000);
    assert_true(r->eof);
    assert_int_equal(r->len, 0);
    assert_true(uv_now(&f->loop) - t0 < 2000);
    raw_free(f, r);

    /* At the cap, a connection idle between requests makes room for a
     * new client, which is served. */
    struct raw *held = raw_send(f, "", 20);
    assert_true(held->connected);
    assert_false(held->eof);
    r = raw_send(f, "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", 3000);
    assert_non_null(strstr(r->in, "HTTP/1.1 200 OK\r\n"));
    assert_true(held->eof);
    assert_int_equal(held->len, 0);
    raw_free(f, r);
    raw_free(f, held);

    /* Else one in the middle of a request makes room too: a client
     * holding an unfinished head cannot keep a probe out. */
    held = raw_send(f, "GET /healthz HTTP/1.1\r\n", 20);
    assert_false(held->eof);
    r = raw_send(f, "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", 3000);
    assert_non_null(strstr(r->in, "HTTP/1.1 200 OK\r\n"));
    assert_true(held->eof);
    assert_int_equal(held->len, 0);
    raw_free(f, r);
    raw_free(f, held);
    fx_free(f);
}

/* At the default cap of 64, every connection holding the first byte of a
 * request (the cheapest way to fill the server): the kubelet's probe is
 * still answered, and the connection that began first made room. */
static void test_probe_served_when_full_of_slow_heads(void **state)
{
    (void)state;
    struct fx *f = fx_new(NULL);
    struct raw *held[64];
    for (int i = 0; i < 64; i++) {
        held[i] = raw_send(f, "G", 5);
        assert_false(held[i]->eof);
    }
    struct raw *r =
        raw_send(f, "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", 3000);
    assert_non_null(strstr(r->in, "HTTP/1.1 200 OK\r\n"));
    raw_free(f, r);
    assert_true(held[0]->eof);
    for (int i = 1; i < 64; i++)
        assert_false(held[i]->eof);
    for (int i = 0; i < 64; i++)
        raw_free(f, held[i]);
    fx_free(f);
}

/* A client trickling a request head a byte at a time, each within the
 * idle time: the head's own deadline ends it. */
struct trickle {
    struct raw *r;
    uv_timer_t t;
    uv_write_t w;
    int sent;
};

static void trickle_written(uv_write_t *w, int status)
{
    (void)w;
    (void)status;
}

static void trickle_tick(uv_timer_t *t)
{
    struct trickle *k = t->data;
    static char byte[] = "x";
    if (k->r->eof) {
        uv_timer_stop(t);
        return;
    }
    uv_buf_t b = uv_buf_init(byte, 1);
    if (uv_write(&k->w, (uv_stream_t *)&k->r->tcp, &b, 1, trickle_written) == 0)
        k->sent++;
}

static void test_trickled_head_is_cut(void **state)
{
    (void)state;
    struct gm_httpd_opts o = {.idle_ms = 200, .head_ms = 400};
    struct fx *f = fx_new(&o);
    struct trickle k = {0};

    uint64_t t0 = uv_now(&f->loop);
    k.r = raw_send(f, "GET /healthz HTTP/1.1\r\nX-A: ", 20);
    uv_timer_init(&f->loop, &k.t);
    k.t.data = &k;
    uv_timer_start(&k.t, trickle_tick, 50, 50);
    th_run_until(&f->loop, &k.r->eof, 3000);
    uint64_t took = uv_now(&f->loop) - t0;
    uv_timer_stop(&k.t);
    uv_close((uv_handle_t *)&k.t, NULL);
    assert_true(k.r->eof);
    assert_true(k.sent >= 4); /* the idle time alone never fired */
    assert_true(took >= 350 && took < 1500);
    raw_free(f, k.r);
    fx_free(f);
}

struct gone {
    uv_tcp_t tcp; /* first: the handle's address is the struct's */
    uv_connect_t c;
    uv_write_t w;
};

static void gone_closed(uv_handle_t *h)
{
    free(h);
}

static void close_after_write(uv_write_t *w, int status)
{
    (void)status;
    uv_close((uv_handle_t *)w->handle, gone_closed);
}

/* Clients that pipeline requests and close without reading: the answers
 * meet a reset connection. The server (and this process) must live on;
 * SIGPIPE's default action would end it. */
static void test_client_gone_before_answers(void **state)
{
    (void)state;
    static char req[] = "GET /healthz HTTP/1.1\r\n\r\n"
                        "GET /metrics HTTP/1.1\r\n\r\n"
                        "GET /healthz HTTP/1.1\r\n\r\n";
    struct fx *f = fx_new(NULL);
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", gm_httpd_port(f->srv), &sa);

    for (int i = 0; i < 20; i++) {
        struct gone *g = calloc(1, sizeof(*g));
        uv_tcp_init(&f->loop, &g->tcp);
        g->tcp.data = g;
        assert_int_equal(
            uv_tcp_connect(&g->c, &g->tcp, (const struct sockaddr *)&sa, NULL),
            0);
        uv_run(&f->loop, UV_RUN_ONCE);
        uv_buf_t b = uv_buf_init(req, sizeof(req) - 1);
        assert_int_equal(
            uv_write(&g->w, (uv_stream_t *)&g->tcp, &b, 1, close_after_write),
            0);
        int never = 0;
        th_run_until(&f->loop, &never, 30);
    }
    struct raw *r =
        raw_send(f, "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", 3000);
    assert_non_null(strstr(r->in, "HTTP/1.1 200 OK\r\n"));
    raw_free(f, r);
    fx_free(f);
}

static void test_address_in_use(void **state)
{
    (void)state;
    struct fx *f = fx_new(NULL);
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", gm_httpd_port(f->srv));
    struct gm_httpd_opts o = {.addr = addr, .endpoints = GM_HTTPD_HEALTH};
    struct gm_httpd *other = NULL;
    assert_int_equal(gm_httpd_start(&f->loop, &o, &other), -EADDRINUSE);
    assert_null(other);
    o.addr = "nonsense";
    assert_int_equal(gm_httpd_start(&f->loop, &o, &other), -EINVAL);
    o.addr = "[::1:80";
    assert_int_equal(gm_httpd_start(&f->loop, &o, &other), -EINVAL);
    o.addr = "host:notaport";
    assert_int_equal(gm_httpd_start(&f->loop, &o, &other), -EINVAL);
    assert_null(other);
    fx_free(f);
}

/* Whether this machine can listen on ::1; containers and CI runners
 * sometimes have no IPv6 at all. */
static int have_ipv6_loopback(void)
{
    struct sockaddr_in6 sa;
    uv_ip6_addr("::1", 0, &sa);
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    int ok = bind(fd, (const struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

/* One GET /healthz to sa: the server must answer 200. */
static void expect_healthz_at(struct fx *f, const struct sockaddr *sa,
                              const char *where)
{
    struct raw *r = raw_send_to(
        f, sa, "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", 3000);
    if (r->conn_err)
        fail_msg("cannot connect to %s: %s", where, uv_strerror(r->conn_err));
    assert_non_null(strstr(r->in, "HTTP/1.1 200 OK\r\n"));
    raw_free(f, r);
}

/* The defaults (":8080", ":8081") on an IPv6-only or IPv6-first cluster:
 * the kubelet probes, and Prometheus scrapes, the pod's IPv6 address.
 * IPv4 clients must still get through. */
static void test_empty_host_serves_both_families(void **state)
{
    (void)state;
    struct gm_httpd_opts o = {.addr = ":0"};
    struct fx *f = fx_new(&o);
    int port = gm_httpd_port(f->srv);
    char want[32];

    struct sockaddr_in in4;
    uv_ip4_addr("127.0.0.1", port, &in4);
    expect_healthz_at(f, (const struct sockaddr *)&in4, "127.0.0.1");
    if (!have_ipv6_loopback()) {
        print_message("no IPv6 loopback (::1) here: IPv6 half skipped\n");
        fx_free(f);
        return;
    }
    struct sockaddr_in6 in6;
    uv_ip6_addr("::1", port, &in6);
    expect_healthz_at(f, (const struct sockaddr *)&in6, "[::1]");
    snprintf(want, sizeof(want), "[::]:%d", port);
    assert_string_equal(gm_httpd_addr(f->srv), want);
    fx_free(f);
}

static void test_ipv6_loopback(void **state)
{
    (void)state;
    if (!have_ipv6_loopback()) {
        print_message("no IPv6 loopback (::1) here: skipped\n");
        skip();
    }
    struct gm_httpd_opts o = {.addr = "[::1]:0"};
    struct fx *f = fx_new(&o);
    int port = gm_httpd_port(f->srv);
    char want[32];
    snprintf(want, sizeof(want), "[::1]:%d", port);
    assert_string_equal(gm_httpd_addr(f->srv), want);
    struct sockaddr_in6 in6;
    uv_ip6_addr("::1", port, &in6);
    expect_healthz_at(f, (const struct sockaddr *)&in6, "[::1]");
    fx_free(f);
}

/* ---- a host without IPv6 ---- */

static void fallback_connected(uv_connect_t *c, int status)
{
    *(int *)c->data = status < 0 ? status : 1;
}

/* Makes socket(AF_INET6, ...) fail with EAFNOSUPPORT in this process, as
 * on a kernel booted with ipv6.disable=1. Returns 0 or -errno. */
static int forbid_ipv6(void)
{
#if defined(__x86_64__) || defined(__aarch64__)
    struct sock_filter prog[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socket, 0, 3),
        /* The low half of the first argument (little-endian). */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                 offsetof(struct seccomp_data, args[0])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_INET6, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EAFNOSUPPORT),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog fp = {.len = sizeof(prog) / sizeof(prog[0]),
                            .filter = prog};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fp) != 0)
        return -errno;
    return 0;
#else
    return -ENOSYS;
#endif
}

/* Runs in a child, without cmocka's assertions (a failure there would
 * run the rest of the suite a second time): the exit code says what
 * went wrong. */
static int fallback_child(void)
{
    if (forbid_ipv6() != 0)
        return 77;
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    if (fd >= 0 || errno != EAFNOSUPPORT)
        return 78;

    uv_loop_t loop;
    uv_loop_init(&loop);
    struct gm_httpd_opts o = {.addr = ":0", .endpoints = GM_HTTPD_HEALTH};
    struct gm_httpd *srv = NULL;
    int rc = 0;
    char want[32];
    if (gm_httpd_start(&loop, &o, &srv) != 0) {
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        return 1;
    }
    snprintf(want, sizeof(want), "0.0.0.0:%d", gm_httpd_port(srv));
    if (strcmp(gm_httpd_addr(srv), want) != 0)
        rc = 2;

    uv_tcp_t tcp;
    uv_connect_t conn;
    struct sockaddr_in sa;
    int done = 0;
    uv_ip4_addr("127.0.0.1", gm_httpd_port(srv), &sa);
    uv_tcp_init(&loop, &tcp);
    conn.data = &done;
    if (uv_tcp_connect(&conn, &tcp, (const struct sockaddr *)&sa,
                       fallback_connected) != 0)
        rc = 3;
    else if (th_run_until(&loop, &done, 3000) != 1 && rc == 0)
        rc = 4;
    uv_close((uv_handle_t *)&tcp, NULL);
    gm_httpd_close(srv);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return rc;
}

/* ":P" on a host without IPv6 serves IPv4 rather than failing to start. */
static void test_no_ipv6_falls_back_to_ipv4(void **state)
{
    (void)state;
    fflush(NULL); /* the child must not write the parent's buffers again */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(fallback_child());
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    if (WEXITSTATUS(st) == 77 || WEXITSTATUS(st) == 78) {
        print_message("cannot filter socket() here (seccomp): skipped\n");
        skip();
    }
    if (WEXITSTATUS(st) != 0)
        fail_msg("fallback child failed at step %d", WEXITSTATUS(st));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_addr),
        cmocka_unit_test(test_endpoints_keepalive),
        cmocka_unit_test(test_pipelined_and_close),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_idle_and_conn_cap),
        cmocka_unit_test(test_probe_served_when_full_of_slow_heads),
        cmocka_unit_test(test_trickled_head_is_cut),
        cmocka_unit_test(test_client_gone_before_answers),
        cmocka_unit_test(test_address_in_use),
        cmocka_unit_test(test_empty_host_serves_both_families),
        cmocka_unit_test(test_ipv6_loopback),
        cmocka_unit_test(test_no_ipv6_falls_back_to_ipv4),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
