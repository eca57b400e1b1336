#include "kube/http.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/log.h"

#define DEFAULT_TIMEOUT_MS 30000L
#define DEFAULT_MAX_BODY (64u * 1024 * 1024)
#define DEFAULT_STREAM_IDLE_S 120L
#define MAX_RETRIES 5

/* Every watch and request shares one HTTP/2 connection, and libcurl times
 * out a stream but keeps its connection, so a peer that vanished without a
 * reset (node powered off, conntrack pointing at nothing) would blind us
 * until tcp_retries2 gives up, some 15 minutes. The kernel closes it sooner
 * (libcurl then reconnects) in GM_HTTP_DEAD_PEER_MS, whichever way the
 * connection died: idle, keepalive waits 15 s, then 3 probes 5 s apart go
 * unanswered; busy, Linux sends no probes while data waits for an ACK, and
 * TCP_USER_TIMEOUT ends the connection when data has gone unacknowledged that
 * long (with keepalive on it also caps the probing at the same figure).
 * 30 s matches client-go's HTTP/2 health check (ReadIdleTimeout,
 * kubernetes#95981); a live API server's kernel ACKs in milliseconds however
 * loaded it is, so only a dead path gets near it. */
#define KEEPALIVE_IDLE_S 15L
#define KEEPALIVE_INTVL_S 5L
#define KEEPALIVE_CNT 3
_Static_assert(GM_HTTP_DEAD_PEER_MS ==
                   (KEEPALIVE_IDLE_S + KEEPALIVE_CNT * KEEPALIVE_INTVL_S) *
                       1000,
               "keepalive probes must end inside the user timeout");

/* The kernel cannot tell a peer whose process stopped answering (an API
 * server wedged, a proxy in front of it that lost its backend but still
 * ACKs): TCP stays healthy and libcurl goes on multiplexing new requests
 * onto the connection, each timing out, and re-opens watches cut for
 * silence on it (libcurl 7.88 picks the first connection that has room,
 * and neither closes one that times out a stream nor checks an HTTP/2
 * PING's answer). So, like client-go's health check, a call that times out
 * makes the transport ask GET /livez, which multiplexes onto the same
 * connection; any answer, even 401, proves it alive (every user may read
 * it, and API Priority and Fairness exempts it: kubernetes#100678). No
 * answer within PROBE_TIMEOUT_MS (or the request timeout, when shorter)
 * and every connection opened before the probe is shut down: their calls
 * fail at once (watches resume from their resourceVersion) and the next
 * ones get a new connection. */
#define PROBE_TIMEOUT_MS 10000L
#define PROBE_PATH "/livez"

enum call_state {
    CALL_WAIT_TOKEN, /* waiting on the rate limiter or a retry delay */
    CALL_WAIT_CRED,  /* waiting for a credential refresh */
    CALL_ACTIVE,     /* its easy handle is in the multi */
};

struct gm_http_call {
    uv_timer_t timer; /* delays; the call is freed in its close callback */
    struct gm_http *h;
    struct gm_http_call *prev, *next; /* h->calls */
    struct gm_http_call *cred_next;   /* h->cred_waiters */
    enum call_state state;
    int cancelled;
    CURL *easy;                 /* owned while active */
    struct curl_slist *headers; /* owned while active */
    char *method;               /* owned */
    char *url;                  /* owned */
    char *content_type;         /* owned or NULL */
    char *req_body;             /* owned or NULL */
    size_t req_body_len;
    int stream;
    long timeout_ms;
    long idle_s; /* streams: the silence that cuts them */
    int retry;
    int attempts;
    int tried_401;
    uint64_t cred_gen;  /* generation of the credentials last sent */
    int body_err;       /* -E2BIG when the body passed the cap */
    int aborted;        /* on_data asked to stop */
    long retry_after_s; /* from the last response's Retry-After, or -1 */
    /* libcurl's own words for a failure (which host, which certificate
     * check), more than curl_easy_strerror's */
    char curl_err[CURL_ERROR_SIZE];
    struct gm_buf body;
    gm_http_done_cb done;
    gm_http_data_cb on_data;
    void *data;
};

/* A connection's socket, from libcurl's sockopt callback to its close
 * callback: when it was opened, for the probe's verdict. libcurl 7.88
 * closes a connect attempt that never won (happy eyeballs, a connect
 * timeout) without the close callback, so a record may outlive its
 * socket and the number be reused: the socket's inode tells. */
struct conn_rec {
    curl_socket_t fd;
    ino_t ino;
    uint64_t opened_ms;
};

struct sock_ctx {
    uv_poll_t poll; /* freed in its close callback */
    curl_socket_t fd;
    struct gm_http *h;
};

struct gm_http {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t *timer; /* curl's timeout; heap so it can outlive h */
    struct gm_http_opts opts;
    char *user_agent; /* owned */
    char *connect_to; /* owned; for tls-server-name, or NULL */
    struct curl_slist *connect_to_list;
    char *server; /* owned; URL base, host swapped for tls name */
    struct gm_http_call *calls;
    struct gm_http_call *cred_waiters;
    int cred_pending;
    double tokens;
    uint64_t tokens_at_ms;
    int depth;   /* >0 while we are inside our own callbacks */
    int freeing; /* gm_http_free was called inside a callback */
    struct gm_http_stats stats;
    /* owned: the sockets libcurl opened and has not closed through
     * closesocket_cb (a record may be stale: see conn_rec) */
    struct conn_rec *conns;
    size_t n_conns, cap_conns;
    struct gm_http_call *probe; /* the liveness probe in flight, or NULL */
    uint64_t probe_at_ms;       /* when it was sent */
};

static void call_activate(struct gm_http_call *c);
static void check_multi_info(struct gm_http *h);
static void teardown(struct gm_http *h);

/* ---- calls ---- */

static void call_free_cb(uv_handle_t *handle)
{
    struct gm_http_call *c = handle->data;

    gm_buf_free(&c->body);
    free(c->method);
    free(c->url);
    free(c->content_type);
    free(c->req_body);
    free(c);
}

static void call_unlink(struct gm_http_call *c)
{
    struct gm_http *h = c->h;

    if (c->prev)
        c->prev->next = c->next;
    else
        h->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void call_release_easy(struct gm_http_call *c)
{
    if (c->easy) {
        curl_multi_remove_handle(c->h->multi, c->easy);
        curl_easy_cleanup(c->easy);
        c->easy = NULL;
    }
    curl_slist_free_all(c->headers);
    c->headers = NULL;
}

/* Frees a call; when it waits for credentials it stays on the waiter list
 * (marked cancelled) until the refresh ends, since auth holds no handle. */
static void call_destroy(struct gm_http_call *c)
{
    c->cancelled = 1;
    call_release_easy(c);
    if (c->state == CALL_WAIT_CRED)
        return;
    call_unlink(c);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, call_free_cb);
}

static void call_finish(struct gm_http_call *c, int err, long status,
                        const char *errmsg)
{
    struct gm_http_result res = {
        .err = err,
        .status = status,
        .body = c->body.data ? c->body.data : "",
        .body_len = c->body.len,
        .errmsg = errmsg,
    };
    struct gm_http *h = c->h;

    call_release_easy(c);
    gm_http_done_cb done = c->cancelled ? NULL : c->done;
    /* From here the call is over: a gm_http_cancel of it from inside
     * done finds it cancelled and leaves it to the line below. */
    c->cancelled = 1;
    h->depth++;
    if (done)
        done(c->data, &res);
    h->depth--;
    call_destroy(c);
}

/* ---- rate limiting: a token bucket that lets tokens go negative, so each
 * call learns at once how long to wait (golang.org/x/time/rate's reserve). */

static uint64_t reserve_token_ms(struct gm_http *h)
{
    double qps = h->opts.qps;
    if (qps <= 0)
        return 0;
    uint64_t now = uv_now(h->loop);
    double burst = h->opts.burst > 0 ? h->opts.burst : 1;
    h->tokens += (double)(now - h->tokens_at_ms) * qps / 1000.0;
    if (h->tokens > burst)
        h->tokens = burst;
    h->tokens_at_ms = now;
    h->tokens -= 1;
    if (h->tokens >= 0)
        return 0;
    return (uint64_t)(-h->tokens * 1000.0 / qps + 0.999);
}

static void call_timer_cb(uv_timer_t *t)
{
    struct gm_http_call *c = t->data;
    call_activate(c);
}

static void call_schedule(struct gm_http_call *c, uint64_t delay_ms)
{
    c->state = CALL_WAIT_TOKEN;
    delay_ms += reserve_token_ms(c->h);
    if (delay_ms == 0) {
        call_activate(c);
        return;
    }
    uv_timer_start(&c->timer, call_timer_cb, delay_ms, 0);
}

static void call_start_cb(uv_timer_t *t)
{
    call_schedule(t->data, 0);
}

/* ---- credentials ---- */

/* Only calls that had no usable credential wait here (auth hands out an
 * unexpired one while it refreshes), so a failed refresh is theirs. */
static void cred_ready_cb(void *data, int err, const char *msg)
{
    struct gm_http *h = data;
    struct gm_http_call *list = h->cred_waiters;

    h->cred_waiters = NULL;
    h->cred_pending = 0;
    while (list) {
        struct gm_http_call *c = list;
        list = c->cred_next;
        c->cred_next = NULL;
        c->state = CALL_WAIT_TOKEN;
        if (c->cancelled) {
            call_destroy(c);
        } else if (err) {
            call_finish(c, err, 0, msg ? msg : "credential refresh failed");
        } else {
            call_activate(c);
        }
    }
}

static int add_header(struct curl_slist **list, const char *name,
                      const char *val)
{
    char line[8192];
    /* "Name:" with nothing after it tells curl to drop its own header. */
    int n = val[0] ? snprintf(line, sizeof(line), "%s: %s", name, val)
                   : snprintf(line, sizeof(line), "%s:", name);
    if (n < 0 || (size_t)n >= sizeof(line))
        return -E2BIG;
    struct curl_slist *l = curl_slist_append(*list, line);
    if (l == NULL)
        return -ENOMEM;
    *list = l;
    return 0;
}

/* ---- easy handle callbacks ---- */

static size_t write_cb(char *p, size_t size, size_t nmemb, void *userdata)
{
    struct gm_http_call *c = userdata;
    size_t n = size * nmemb;

    if (c->cancelled)
        return 0;
    if (c->stream && c->on_data) {
        long code = 0;
        curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &code);
        /* Error answers to a watch are ordinary bodies; keep them whole. */
        if (code == 200) {
            c->h->depth++;
            int stop = c->on_data(c->data, p, n);
            c->h->depth--;
            if (stop || c->cancelled) {
                c->aborted = 1;
                return 0;
            }
            return n;
        }
    }
    int err = gm_buf_append(&c->body, p, n);
    if (err) {
        c->body_err = err;
        return 0;
    }
    return n;
}

static size_t header_cb(char *p, size_t size, size_t nmemb, void *userdata)
{
    struct gm_http_call *c = userdata;
    size_t n = size * nmemb;
    static const char name[] = "retry-after:";

    /* The blank line that ends a header block (libcurl gives one for
     * HTTP/2 too): a stream answered 200 is open. */
    if (c->stream && c->on_data && !c->cancelled &&
        ((n == 2 && p[0] == '\r' && p[1] == '\n') ||
         (n == 1 && p[0] == '\n'))) {
        long code = 0;
        curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &code);
        if (code == 200) {
            c->h->depth++;
            int stop = c->on_data(c->data, NULL, 0);
            c->h->depth--;
            if (stop || c->cancelled) {
                c->aborted = 1;
                return 0;
            }
        }
        return n;
    }

    if (n > sizeof(name) - 1 && strncasecmp(p, name, sizeof(name) - 1) == 0) {
        char tmp[32];
        size_t len = n - (sizeof(name) - 1);
        if (len >= sizeof(tmp))
            len = sizeof(tmp) - 1;
        memcpy(tmp, p + sizeof(name) - 1, len);
        tmp[len] = '\0';
        char *end;
        long v = strtol(tmp, &end, 10);
        if (end != tmp && v >= 0 && v <= 3600)
            c->retry_after_s = v;
    }
    return n;
}

/* ---- sockets ---- */

int gm_http_tune_socket(int fd)
{
    /* libcurl 7.88 opens its sockets without close-on-exec: an exec
     * credential plugin (or a daemon it leaves behind) would inherit the
     * connections to the API server and hold them open. */
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) != 0)
        return -errno;
        /* libcurl sets SO_KEEPALIVE, TCP_KEEPIDLE and TCP_KEEPINTVL itself; it
         * has no option for these two (CURLOPT_TCP_KEEPCNT came in 8.9). */
#ifdef TCP_KEEPCNT
    int cnt = KEEPALIVE_CNT;
    if (setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt)) != 0)
        return -errno;
#endif
#ifdef TCP_USER_TIMEOUT
    unsigned int ms = GM_HTTP_DEAD_PEER_MS;
    if (setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof(ms)) != 0)
        return -errno;
#endif
    return 0;
}

static void forget_socket(struct gm_http *h, curl_socket_t fd)
{
    for (size_t i = 0; i < h->n_conns; i++)
        if (h->conns[i].fd == fd) {
            h->conns[i] = h->conns[--h->n_conns];
            return;
        }
}

static int sockopt_cb(void *clientp, curl_socket_t fd, curlsocktype purpose)
{
    struct gm_http *h = clientp;
    struct stat st;
    if (purpose != CURLSOCKTYPE_IPCXN)
        return CURL_SOCKOPT_OK;
    forget_socket(h, fd); /* a stale record of the number */
    if (fstat(fd, &st) != 0)
        return CURL_SOCKOPT_ERROR;
    if (h->n_conns == h->cap_conns) {
        size_t cap = h->cap_conns ? h->cap_conns * 2 : 8;
        struct conn_rec *m = realloc(h->conns, cap * sizeof(*m));
        if (m == NULL)
            return CURL_SOCKOPT_ERROR; /* this connection fails, reported */
        h->conns = m;
        h->cap_conns = cap;
    }
    h->conns[h->n_conns++] = (struct conn_rec){
        .fd = fd, .ino = st.st_ino, .opened_ms = uv_now(h->loop)};
    int err = gm_http_tune_socket(fd);
    /* The connection still works; it would only notice a dead peer late,
     * which is no reason to refuse to talk to the API server at all. */
    if (err)
        gm_warn("API server connection: dead peers may go unnoticed for "
                "minutes: %s",
                strerror(-err));
    return CURL_SOCKOPT_OK;
}

/* libcurl closes every socket it opened through here (the connection
 * outlives the easy handle that made it, but not the multi). */
static int closesocket_cb(void *clientp, curl_socket_t fd)
{
    forget_socket(clientp, fd);
    return close(fd);
}

/* The probe had no answer: the connections it was meant to test, every
 * one opened before it went out, are shut down, not closed (libcurl owns
 * the descriptors and closes them itself once it reads the end). */
static void drop_connections(struct gm_http *h, const char *why)
{
    size_t n = 0;
    struct stat st;
    for (size_t i = 0; i < h->n_conns; i++)
        if (h->conns[i].opened_ms <= h->probe_at_ms &&
            fstat(h->conns[i].fd, &st) == 0 && st.st_ino == h->conns[i].ino &&
            shutdown(h->conns[i].fd, SHUT_RDWR) == 0)
            n++;
    h->stats.dropped += n;
    if (n == 0) {
        gm_warn("API server: %s did not answer after a call timed out (%s); "
                "no connection was open to drop",
                PROBE_PATH, why);
        return;
    }
    gm_warn("API server: %s did not answer after a call timed out (%s): "
            "%zu connection%s dropped, calls and watches on %s go again on "
            "a new one",
            PROBE_PATH, why, n, n == 1 ? "" : "s", n == 1 ? "it" : "them");
}

static void probe_done(void *data, const struct gm_http_result *res)
{
    struct gm_http *h = data;
    h->probe = NULL;
    /* Any answer is a live connection. Only silence condemns it: not a
     * refused connect (the kernel tells those) nor a credential that
     * could not be had, nor the transport going (cancelled). */
    if (res->err != -ETIMEDOUT)
        return;
    drop_connections(h, res->errmsg ? res->errmsg : "no answer");
}

/* A call timed out: is the connection alive? One probe at a time. */
static void probe(struct gm_http *h)
{
    /* No longer than a request may take (tests make that short). */
    struct gm_http_req req = {
        .method = "GET",
        .path = PROBE_PATH,
        .timeout_ms = h->opts.timeout_ms < PROBE_TIMEOUT_MS ? h->opts.timeout_ms
                                                            : PROBE_TIMEOUT_MS};
    if (h->probe || h->freeing)
        return;
    h->probe_at_ms = uv_now(h->loop);
    if (gm_http_send(h, &req, probe_done, NULL, h, &h->probe) != 0)
        h->probe = NULL; /* out of memory: the next timeout asks again */
}

/* e2e/tests/tls_test.go checks this against a CA the machine trusts. */
static void set_trust(CURL *e, const struct gm_kube_config *cfg)
{
    if (cfg->ca_data == NULL && cfg->ca_file == NULL)
        return; /* the system's CAs, as client-go uses then */
    /* The cluster's CA is the only root, as in client-go. libcurl keeps
     * its built-in CA path (/etc/ssl/certs) beside CAINFO unless told not
     * to, and a CA installed on the machine (a TLS-inspecting proxy's)
     * would then be trusted to speak for the API server. */
    curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
    if (cfg->ca_data) {
        struct curl_blob b = {cfg->ca_data, cfg->ca_data_len, CURL_BLOB_NOCOPY};
        curl_easy_setopt(e, CURLOPT_CAINFO, NULL);
        curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &b);
    } else {
        curl_easy_setopt(e, CURLOPT_CAINFO, cfg->ca_file);
    }
}

/* socks5:// as socks5h://: Go's transport, and so kubectl, hands the API
 * server's name to a SOCKS proxy, which resolves it on its side (an SSH -D
 * tunnel into a network whose names only resolve there). */
static void set_proxy(CURL *e, const char *url)
{
    static const char socks5[] = "socks5://";
    char buf[1024];
    if (strncasecmp(url, socks5, sizeof(socks5) - 1) == 0 &&
        (size_t)snprintf(buf, sizeof(buf), "socks5h://%s",
                         url + sizeof(socks5) - 1) < sizeof(buf))
        url = buf;
    curl_easy_setopt(e, CURLOPT_PROXY, url);
}

static int setup_easy(struct gm_http_call *c, const struct gm_cred *cred)
{
    struct gm_http *h = c->h;
    const struct gm_kube_config *cfg = h->opts.cfg;
    CURL *e = curl_easy_init();
    int err;

    if (e == NULL)
        return -ENOMEM;
    c->easy = e;
    curl_easy_setopt(e, CURLOPT_URL, c->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, c);
    c->curl_err[0] = '\0';
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->curl_err);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, h->user_agent);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    /* Wait for the first connection to say whether it multiplexes, so the
     * calls of a start share one. Only TLS can (HTTP/2 by ALPN, whose
     * answer wakes the waiters); over cleartext (kubectl proxy) it is
     * HTTP/1.1, and libcurl 7.88 wakes a waiter only when some transfer
     * ends: watches sent together would wait on the first one's end. */
    if (strncasecmp(h->server, "https:", 6) == 0)
        curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, KEEPALIVE_IDLE_S);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, KEEPALIVE_INTVL_S);
    curl_easy_setopt(e, CURLOPT_SOCKOPTFUNCTION, sockopt_cb);
    curl_easy_setopt(e, CURLOPT_SOCKOPTDATA, h);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, closesocket_cb);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, h);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    if (c->stream) {
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, c->idle_s);
        if (c->timeout_ms > 0)
            curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    } else {
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    }

    if (strcmp(c->method, "GET") != 0)
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, c->method);
    if (c->req_body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->req_body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)c->req_body_len);
    }

    /* TLS: key material stays in memory (blobs), never in temp files. */
    set_trust(e, cfg);
    if (cfg->insecure) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (h->connect_to_list)
        curl_easy_setopt(e, CURLOPT_CONNECT_TO, h->connect_to_list);
    if (cfg->proxy_url)
        set_proxy(e, cfg->proxy_url);

    const char *cert = cred && cred->cert_pem ? cred->cert_pem : cfg->cert_data;
    size_t cert_len =
        cred && cred->cert_pem ? cred->cert_len : cfg->cert_data_len;
    const char *key = cred && cred->key_pem ? cred->key_pem : cfg->key_data;
    size_t key_len = cred && cred->key_pem ? cred->key_len : cfg->key_data_len;
    if (cert && key) {
        struct curl_blob cb = {(void *)(uintptr_t)cert, cert_len,
                               CURL_BLOB_COPY};
        struct curl_blob kb = {(void *)(uintptr_t)key, key_len, CURL_BLOB_COPY};
        curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &cb);
        curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
        curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &kb);
        curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
    } else if (cfg->cert_file && cfg->key_file) {
        curl_easy_setopt(e, CURLOPT_SSLCERT, cfg->cert_file);
        curl_easy_setopt(e, CURLOPT_SSLKEY, cfg->key_file);
    }

    err = add_header(&c->headers, "Accept", "application/json");
    if (!err && c->req_body)
        err =
            add_header(&c->headers, "Content-Type",
                       c->content_type ? c->content_type : "application/json");
    const char *token = cred && cred->token ? cred->token : cfg->token;
    if (!err && token) {
        char bearer[8192];
        int n = snprintf(bearer, sizeof(bearer), "Bearer %s", token);
        err = n < 0 || (size_t)n >= sizeof(bearer)
                  ? -E2BIG
                  : add_header(&c->headers, "Authorization", bearer);
    }
    /* An empty Expect stops curl pausing a second for 100-continue. */
    if (!err)
        err = add_header(&c->headers, "Expect", "");
    if (err)
        return err;
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
    return 0;
}

static void call_activate(struct gm_http_call *c)
{
    struct gm_http *h = c->h;
    struct gm_cred cred;
    struct gm_cred *credp = NULL;

    if (h->opts.cred) {
        memset(&cred, 0, sizeof(cred));
        if (h->cred_pending) {
            c->state = CALL_WAIT_CRED;
            c->cred_next = h->cred_waiters;
            h->cred_waiters = c;
            return;
        }
        int rc = h->opts.cred(h->opts.cred_src, &cred, cred_ready_cb, h);
        if (rc == GM_AUTH_PENDING) {
            h->cred_pending = 1;
            c->state = CALL_WAIT_CRED;
            c->cred_next = h->cred_waiters;
            h->cred_waiters = c;
            return;
        }
        if (rc < 0) {
            const char *why = h->opts.cred_error
                                  ? h->opts.cred_error(h->opts.cred_src)
                                  : NULL;
            call_finish(c, rc, 0, why ? why : "no usable credentials");
            return;
        }
        credp = &cred;
        c->cred_gen = cred.generation;
    }

    gm_buf_reset(&c->body);
    c->body_err = 0;
    c->aborted = 0;
    c->retry_after_s = -1;
    int err = setup_easy(c, credp);
    if (err) {
        call_finish(c, err, 0, "could not set up the request");
        return;
    }
    c->state = CALL_ACTIVE;
    c->attempts++;
    h->stats.requests++;
    CURLMcode mc = curl_multi_add_handle(h->multi, c->easy);
    if (mc != CURLM_OK)
        call_finish(c, -EIO, 0, curl_multi_strerror(mc));
}

static int is_retryable_status(const struct gm_http_call *c, long status)
{
    if (!c->retry || c->attempts >= MAX_RETRIES)
        return 0;
    if (status == 429)
        return 1;
    return status >= 500 && strcmp(c->method, "GET") == 0;
}

static uint64_t backoff_ms(const struct gm_http_call *c)
{
    if (c->retry_after_s >= 0)
        return (uint64_t)c->retry_after_s * 1000 + 50;
    uint64_t ms = 200u << (c->attempts > 5 ? 5 : c->attempts);
    return ms + (uint64_t)(rand() % 100);
}

static int curl_err_to_errno(CURLcode rc)
{
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_COULDNT_CONNECT:
        return -ECONNREFUSED;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return -EHOSTUNREACH;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
        return -EPROTO;
    default:
        return -EIO;
    }
}

static void on_easy_done(struct gm_http *h, CURL *e, CURLcode rc)
{
    struct gm_http_call *c = NULL;
    long status = 0;
    long conns = 0;
    long version = 0;

    curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&c);
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &conns);
    curl_easy_getinfo(e, CURLINFO_HTTP_VERSION, &version);
    h->stats.connects += (unsigned long)conns;
    if (c->cancelled) {
        /* Cancelled from a callback while its transfer ran on (see
         * gm_http_cancel): it ends here, never retried, never told. */
        call_destroy(c);
        return;
    }
    if (h->opts.on_response) {
        h->opts.on_response(h->opts.on_response_data, c->method,
                            rc == CURLE_OK ? status : 0);
        if (c->cancelled) {
            /* The hook cancelled it (a shutdown it set off): a retry
             * would replace the timer that frees it. */
            call_destroy(c);
            return;
        }
    }
    if (version)
        h->stats.last_http_version = version;

    if (c->aborted) {
        call_finish(c, -EPIPE, status, "stopped by the reader");
        return;
    }
    if (c->body_err) {
        call_finish(c, c->body_err, status, "response body over the cap");
        return;
    }
    if (rc != CURLE_OK) {
        if (c->retry && !c->stream && c->attempts < MAX_RETRIES &&
            strcmp(c->method, "GET") == 0 && rc != CURLE_OPERATION_TIMEDOUT) {
            call_release_easy(c);
            h->stats.retries++;
            call_schedule(c, backoff_ms(c));
            return;
        }
        /* Timeouts are never retried: the call has had its time. Its
         * connection may be dead with other streams on it: the probe
         * tells (PROBE_PATH), and a peer gone altogether the kernel
         * (gm_http_tune_socket). A stream keeps its status: 200 says it
         * had started (a watch cut for silence), 0 that it never
         * answered. */
        if (rc == CURLE_OPERATION_TIMEDOUT && c != h->probe)
            probe(h);
        call_finish(c, curl_err_to_errno(rc), c->stream ? status : 0,
                    c->curl_err[0] ? c->curl_err : curl_easy_strerror(rc));
        return;
    }
    if (status == 401 && !c->tried_401 && h->opts.cred_invalidate) {
        /* Tokens rotate under us (projected tokens, exec plugins): refresh
         * once and replay the request before reporting 401. */
        c->tried_401 = 1;
        call_release_easy(c);
        h->stats.auth_refreshes++;
        h->opts.cred_invalidate(h->opts.cred_src, c->cred_gen);
        call_schedule(c, 0);
        return;
    }
    if (is_retryable_status(c, status)) {
        call_release_easy(c);
        h->stats.retries++;
        call_schedule(c, backoff_ms(c));
        return;
    }
    call_finish(c, 0, status, NULL);
}

static void check_multi_info(struct gm_http *h)
{
    CURLMsg *msg;
    int pending;

    h->depth++;
    while ((msg = curl_multi_info_read(h->multi, &pending)) != NULL) {
        if (msg->msg == CURLMSG_DONE)
            on_easy_done(h, msg->easy_handle, msg->data.result);
        if (h->freeing)
            break;
    }
    h->depth--;
    if (h->freeing && h->depth == 0)
        teardown(h);
}

/* ---- libuv glue ---- */

static void poll_close_cb(uv_handle_t *handle)
{
    free(handle->data);
}

static void poll_cb(uv_poll_t *p, int status, int events)
{
    struct sock_ctx *s = p->data;
    struct gm_http *h = s->h;
    int flags = 0;
    int running;

    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    h->depth++;
    curl_multi_socket_action(h->multi, s->fd, flags, &running);
    h->depth--;
    check_multi_info(h);
}

static int socket_cb(CURL *e, curl_socket_t fd, int what, void *userp,
                     void *socketp)
{
    struct gm_http *h = userp;
    struct sock_ctx *s = socketp;
    int events = 0;

    if (what == CURL_POLL_REMOVE) {
        if (s) {
            uv_poll_stop(&s->poll);
            uv_close((uv_handle_t *)&s->poll, poll_close_cb);
            curl_multi_assign(h->multi, fd, NULL);
        }
        return 0;
    }
    if (s == NULL) {
        s = calloc(1, sizeof(*s));
        if (s == NULL)
            return -1;
        s->fd = fd;
        s->h = h;
        s->poll.data = s;
        if (uv_poll_init_socket(h->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        curl_multi_assign(h->multi, fd, s);
    }
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    uv_poll_start(&s->poll, events, poll_cb);
    return 0;
}

static void timeout_cb(uv_timer_t *t)
{
    struct gm_http *h = t->data;
    int running;

    h->depth++;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    h->depth--;
    check_multi_info(h);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct gm_http *h = userp;

    if (timeout_ms < 0)
        uv_timer_stop(h->timer);
    else
        uv_timer_start(h->timer, timeout_cb, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---- public ---- */

static void timer_free_cb(uv_handle_t *handle)
{
    free(handle);
}

/* tls-server-name: the URL carries the TLS name (for SNI and verification)
 * and CONNECT_TO sends the connection to the real host. */
static int setup_server(struct gm_http *h)
{
    const struct gm_kube_config *cfg = h->opts.cfg;
    const char *server = cfg->server;

    if (server == NULL)
        return -EINVAL;
    if (cfg->tls_server_name == NULL || strncmp(server, "https://", 8) != 0) {
        h->server = strdup(server);
        return h->server ? 0 : -ENOMEM;
    }
    const char *hostport = server + 8;
    const char *slash = strchr(hostport, '/');
    size_t hp_len = slash ? (size_t)(slash - hostport) : strlen(hostport);
    const char *colon = memchr(hostport, ']', hp_len);
    colon = memchr(colon ? colon : hostport, ':',
                   hp_len - (size_t)((colon ? colon : hostport) - hostport));
    const char *port = colon ? colon + 1 : "443";
    size_t port_len = colon ? hp_len - (size_t)(colon + 1 - hostport) : 3;
    size_t host_len = colon ? (size_t)(colon - hostport) : hp_len;
    char buf[1024];

    int n =
        snprintf(buf, sizeof(buf), "https://%s:%.*s%s", cfg->tls_server_name,
                 (int)port_len, port, slash ? slash : "");
    if (n < 0 || (size_t)n >= sizeof(buf))
        return -E2BIG;
    h->server = strdup(buf);
    n = snprintf(buf, sizeof(buf), "%s:%.*s:%.*s:%.*s", cfg->tls_server_name,
                 (int)port_len, port, (int)host_len, hostport, (int)port_len,
                 port);
    if (n < 0 || (size_t)n >= sizeof(buf))
        return -E2BIG;
    h->connect_to = strdup(buf);
    if (!h->server || !h->connect_to)
        return -ENOMEM;
    h->connect_to_list = curl_slist_append(NULL, h->connect_to);
    return h->connect_to_list ? 0 : -ENOMEM;
}

int gm_http_new(uv_loop_t *loop, const struct gm_http_opts *opts,
                struct gm_http **out)
{
    static int curl_ready;
    struct gm_http *h;
    char ua[64];
    int err;

    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return -EIO;
        curl_ready = 1;
    }
    h = calloc(1, sizeof(*h));
    if (h == NULL)
        return -ENOMEM;
    h->loop = loop;
    h->opts = *opts;
    if (h->opts.timeout_ms <= 0)
        h->opts.timeout_ms = DEFAULT_TIMEOUT_MS;
    if (h->opts.max_body == 0)
        h->opts.max_body = DEFAULT_MAX_BODY;
    if (h->opts.stream_idle_s <= 0)
        h->opts.stream_idle_s = DEFAULT_STREAM_IDLE_S;
    snprintf(ua, sizeof(ua), "gpumode/%s", GM_VERSION);
    h->user_agent = strdup(opts->user_agent ? opts->user_agent : ua);
    h->tokens = opts->burst > 0 ? opts->burst : 1;
    h->tokens_at_ms = uv_now(loop);
    h->timer = calloc(1, sizeof(*h->timer));
    h->multi = curl_multi_init();
    if (!h->user_agent || !h->timer || !h->multi) {
        err = -ENOMEM;
        goto fail;
    }
    err = setup_server(h);
    if (err)
        goto fail;
    uv_timer_init(loop, h->timer);
    h->timer->data = h;
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    /* HTTP/2 servers (the apiserver) allow 100+ streams per connection;
     * keep a few spare connections for HTTP/1.1 test servers. */
    curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
    *out = h;
    return 0;
fail:
    if (h->multi)
        curl_multi_cleanup(h->multi);
    free(h->timer);
    free(h->user_agent);
    free(h->server);
    free(h->connect_to);
    curl_slist_free_all(h->connect_to_list);
    free(h);
    return err;
}

int gm_http_send(struct gm_http *h, const struct gm_http_req *req,
                 gm_http_done_cb done, gm_http_data_cb on_data, void *data,
                 struct gm_http_call **out)
{
    struct gm_http_call *c;
    size_t url_len;

    if (h->freeing || req->method == NULL || req->path == NULL)
        return -EINVAL;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    c->h = h;
    c->method = strdup(req->method);
    url_len = strlen(h->server) + strlen(req->path) + 1;
    c->url = malloc(url_len);
    if (c->url)
        snprintf(c->url, url_len, "%s%s", h->server, req->path);
    if (req->content_type)
        c->content_type = strdup(req->content_type);
    if (req->body) {
        c->req_body = malloc(req->body_len + 1);
        if (c->req_body) {
            memcpy(c->req_body, req->body, req->body_len);
            c->req_body[req->body_len] = '\0';
        }
        c->req_body_len = req->body_len;
    }
    if (!c->method || !c->url || (req->content_type && !c->content_type) ||
        (req->body && !c->req_body)) {
        free(c->method);
        free(c->url);
        free(c->content_type);
        free(c->req_body);
        free(c);
        return -ENOMEM;
    }
    c->stream = req->stream;
    c->idle_s = req->idle_s > 0 ? req->idle_s : h->opts.stream_idle_s;
    c->timeout_ms = req->timeout_ms > 0
                        ? req->timeout_ms
                        : (req->stream ? 0 : h->opts.timeout_ms);
    c->retry = req->retry;
    c->done = done;
    c->on_data = on_data;
    c->data = data;
    gm_buf_init(&c->body, h->opts.max_body);
    uv_timer_init(h->loop, &c->timer);
    c->timer.data = c;
    c->next = h->calls;
    if (h->calls)
        h->calls->prev = c;
    h->calls = c;
    if (out)
        *out = c;
    /* The first attempt starts from the loop, never from here: done must
     * not run before the caller holds the call (a failure to set up a
     * request finishes it at once), and a send from inside a libcurl
     * callback (a watch event's handler) may not add a handle to the
     * multi, which refuses recursive calls. */
    c->state = CALL_WAIT_TOKEN;
    uv_timer_start(&c->timer, call_start_cb, 0, 0);
    return 0;
}

static void cancel_cb(uv_timer_t *t)
{
    call_destroy(t->data);
}

void gm_http_cancel(struct gm_http_call *call)
{
    if (call == NULL || call->cancelled)
        return;
    if (call->easy && call->h->depth > 0) {
        /* Inside one of our callbacks, perhaps inside libcurl itself,
         * which refuses to let go of a transfer from there (its own or
         * another's: curl_multi_remove_handle answers
         * CURLM_RECURSIVE_API_CALL, and curl_easy_cleanup would free a
         * handle the multi still holds). Marked, the call's callbacks do
         * nothing and its transfer stops at its next byte; the handle
         * goes on the next turn of the loop, or when libcurl reports it
         * done, whichever is first. */
        call->cancelled = 1;
        uv_timer_start(&call->timer, cancel_cb, 0, 0);
        return;
    }
    call_destroy(call);
}

void gm_http_get_stats(const struct gm_http *h, struct gm_http_stats *out)
{
    *out = h->stats;
}

size_t gm_http_pending(const struct gm_http *h)
{
    size_t n = 0;
    for (const struct gm_http_call *c = h->calls; c; c = c->next)
        if (!c->stream && !c->cancelled)
            n++;
    return n;
}

static void teardown(struct gm_http *h)
{
    /* Every call still open learns it was cancelled, so whoever owns its
     * data can free it; callbacks may not start new calls (h->freeing). */
    h->depth++;
    while (h->calls) {
        struct gm_http_call *c = h->calls;
        c->state = CALL_WAIT_TOKEN;
        if (!c->cancelled) {
            struct gm_http_result res = {
                .err = -ECANCELED, .body = "", .errmsg = "client closed"};
            c->cancelled = 1;
            call_release_easy(c);
            if (c->done)
                c->done(c->data, &res);
        }
        call_destroy(c);
    }
    h->depth--;
    /* Calls waiting for credentials are on the list above too; nothing is
     * left for cred_ready_cb, which the caller must not let run after this
     * (free the credential source together with the transport). */
    h->cred_waiters = NULL;
    curl_multi_cleanup(h->multi); /* closes the sockets: closesocket_cb */
    free(h->conns);
    uv_timer_stop(h->timer);
    uv_close((uv_handle_t *)h->timer, timer_free_cb);
    free(h->user_agent);
    free(h->server);
    free(h->connect_to);
    curl_slist_free_all(h->connect_to_list);
    free(h);
}

void gm_http_free(struct gm_http *h)
{
    if (h == NULL)
        return;
    h->freeing = 1;
    if (h->depth == 0)
        teardown(h);
}
