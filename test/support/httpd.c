#include "httpd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

struct th_conn {
    uv_tcp_t tcp; /* freed in its close callback */
    struct th_server *s;
    struct th_conn *next;
    char *in;
    size_t in_len, in_cap;
    struct th_req req;
    int closing;
};

struct th_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    th_handler handler;
    void *ud;
    struct th_conn *conns;
    int port;
    int count;
    char url[64];
};

struct wreq {
    uv_write_t w;
    char *data;
};

static void write_done(uv_write_t *w, int status)
{
    struct wreq *r = (struct wreq *)w;
    (void)status;
    free(r->data);
    free(r);
}

static void send_bytes(struct th_conn *c, const char *p, size_t n)
{
    if (c->closing)
        return;
    struct wreq *r = calloc(1, sizeof(*r));
    r->data = malloc(n ? n : 1);
    memcpy(r->data, p, n);
    uv_buf_t b = uv_buf_init(r->data, (unsigned)n);
    if (uv_write(&r->w, (uv_stream_t *)&c->tcp, &b, 1, write_done) != 0) {
        free(r->data);
        free(r);
    }
}

static void conn_close_cb(uv_handle_t *h)
{
    struct th_conn *c = h->data;
    free(c->in);
    free(c->req.body);
    free(c);
}

void th_close(struct th_conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    struct th_conn **pp = &c->s->conns;
    while (*pp && *pp != c)
        pp = &(*pp)->next;
    if (*pp)
        *pp = c->next;
    uv_close((uv_handle_t *)&c->tcp, conn_close_cb);
}

static const char *reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 401:
        return "Unauthorized";
    case 404:
        return "Not Found";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    default:
        return "Status";
    }
}

void th_respond(struct th_conn *c, int status, const char *extra,
                const char *body)
{
    char head[1024];
    size_t blen = body ? strlen(body) : 0;
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n%s\r\n",
                     status, reason(status), blen, extra ? extra : "");
    send_bytes(c, head, (size_t)n);
    if (blen)
        send_bytes(c, body, blen);
}

void th_stream_start(struct th_conn *c, int status)
{
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n",
                     status, reason(status));
    send_bytes(c, head, (size_t)n);
}

void th_stream_write(struct th_conn *c, const char *data, size_t len)
{
    char head[32];
    int n = snprintf(head, sizeof(head), "%zx\r\n", len);
    send_bytes(c, head, (size_t)n);
    send_bytes(c, data, len);
    send_bytes(c, "\r\n", 2);
}

void th_stream_end(struct th_conn *c)
{
    send_bytes(c, "0\r\n\r\n", 5);
}

static void header_value(const char *head, const char *name, char *out,
                         size_t n)
{
    size_t nl = strlen(name);
    const char *p = head;
    out[0] = '\0';
    while ((p = strstr(p, "\r\n")) != NULL) {
        p += 2;
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            const char *e = strstr(v, "\r\n");
            size_t len = e ? (size_t)(e - v) : strlen(v);
            if (len >= n)
                len = n - 1;
            memcpy(out, v, len);
            out[len] = '\0';
            return;
        }
    }
}

/* Handles every complete request in the input buffer. */
static void process(struct th_conn *c)
{
    for (;;) {
        if (c->in_len == 0)
            return;
        c->in[c->in_len] = '\0';
        char *end = strstr(c->in, "\r\n\r\n");
        if (end == NULL)
            return;
        size_t head_len = (size_t)(end - c->in) + 4;
        char cl[32];
        header_value(c->in, "Content-Length", cl, sizeof(cl));
        size_t body_len = cl[0] ? strtoul(cl, NULL, 10) : 0;
        if (c->in_len < head_len + body_len)
            return;
        struct th_req *r = &c->req;
        free(r->body);
        memset(r, 0, sizeof(*r));
        sscanf(c->in, "%15s %2047s", r->method, r->path);
        header_value(c->in, "Authorization", r->authorization,
                     sizeof(r->authorization));
        header_value(c->in, "Content-Type", r->content_type,
                     sizeof(r->content_type));
        header_value(c->in, "User-Agent", r->user_agent, sizeof(r->user_agent));
        r->body = malloc(body_len + 1);
        memcpy(r->body, c->in + head_len, body_len);
        r->body[body_len] = '\0';
        r->body_len = body_len;
        memmove(c->in, c->in + head_len + body_len,
                c->in_len - head_len - body_len);
        c->in_len -= head_len + body_len;
        c->s->count++;
        c->s->handler(c->s->ud, r, c);
        if (c->closing)
            return;
    }
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct th_conn *c = h->data;
    if (c->in_cap - c->in_len < 65537) {
        c->in_cap = c->in_cap * 2 + 65537;
        c->in = realloc(c->in, c->in_cap);
    }
    (void)suggested;
    *buf =
        uv_buf_init(c->in + c->in_len, (unsigned)(c->in_cap - c->in_len - 1));
}

static void read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct th_conn *c = st->data;
    (void)buf;
    if (n < 0) {
        th_close(c);
        return;
    }
    c->in_len += (size_t)n;
    process(c);
}

static void on_connection(uv_stream_t *l, int status)
{
    struct th_server *s = l->data;
    if (status < 0)
        return;
    struct th_conn *c = calloc(1, sizeof(*c));
    c->s = s;
    uv_tcp_init(s->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(l, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, conn_close_cb);
        return;
    }
    c->next = s->conns;
    s->conns = c;
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
}

int th_start(uv_loop_t *loop, th_handler h, void *ud, struct th_server **out)
{
    return th_start_at(loop, 0, h, ud, out);
}

int th_free_port(void)
{
    struct sockaddr_in addr;
    socklen_t len = sizeof(addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int port = -1;

    if (fd < 0)
        return -1;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0 &&
        getsockname(fd, (struct sockaddr *)&addr, &len) == 0)
        port = ntohs(addr.sin_port);
    close(fd);
    return port;
}

int th_start_at(uv_loop_t *loop, int port, th_handler h, void *ud,
                struct th_server **out)
{
    struct th_server *s = calloc(1, sizeof(*s));
    struct sockaddr_in addr;
    struct sockaddr_storage bound;
    int len = sizeof(bound);

    s->loop = loop;
    s->handler = h;
    s->ud = ud;
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    uv_ip4_addr("127.0.0.1", port, &addr);
    int err = uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0);
    if (!err)
        err = uv_listen((uv_stream_t *)&s->listener, 64, on_connection);
    if (err) {
        uv_close((uv_handle_t *)&s->listener, NULL);
        return err;
    }
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &len);
    s->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    snprintf(s->url, sizeof(s->url), "http://127.0.0.1:%d", s->port);
    *out = s;
    return 0;
}

int th_port(const struct th_server *s)
{
    return s->port;
}

const char *th_url(const struct th_server *s)
{
    return s->url;
}

int th_count(const struct th_server *s)
{
    return s->count;
}

static void server_close_cb(uv_handle_t *h)
{
    free(h->data);
}

void th_stop(struct th_server *s)
{
    while (s->conns)
        th_close(s->conns);
    uv_close((uv_handle_t *)&s->listener, server_close_cb);
}

static void flag_timer_cb(uv_timer_t *t)
{
    (void)t;
}

int th_run_until(uv_loop_t *loop, const int *flag, int ms)
{
    uv_timer_t t;
    uint64_t end = uv_now(loop) + (uint64_t)ms;

    uv_timer_init(loop, &t);
    /* A repeating timer keeps the loop turning so the flag is rechecked. */
    uv_timer_start(&t, flag_timer_cb, 5, 5);
    while (!*flag && uv_now(loop) < end)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return *flag;
}
