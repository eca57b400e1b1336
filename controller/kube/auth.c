/* Credentials that change while we run. Three sources, by precedence the way
 * client-go picks them: an exec plugin, a token file, a static token. Client
 * certificate and key files are read here too, whatever the source of the
 * token, and re-read like a token file: the API server checks a client
 * certificate's dates on every request, so a pair rotated on disk must reach
 * new connections before the old certificate expires (client-go reloads
 * them for the same reason). A changed pair goes out as a different blob,
 * and libcurl does not reuse a connection made with another certificate.
 *
 * Token files are read synchronously: they are a few bytes on a local
 * tmpfs (service-account projection), cheaper than a thread-pool round trip.
 * Exec plugins run through uv_spawn. A run that starts before expiry runs in
 * the background: callers keep the current credential, and a failure only
 * matters once it expires. A caller with no usable credential (none yet,
 * expired, or refused with a 401) is queued and called back once when the
 * run ends. */
#include "kube/auth.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/base64.h"
#include "common/buf.h"
#include "common/log.h"

/* kubelet rotates projected tokens well before they expire; client-go
 * re-reads the file once a minute, and so do we. */
#define TOKEN_FILE_TTL_MS 60000
#define TOKEN_RETRY_MS 5000 /* after the file could not be read */
#define TOKEN_FILE_MAX (1u << 20)
/* A client certificate file may hold a chain; a MiB is far more. */
#define CERT_FILE_MAX (1u << 20)
/* client-go checks the pair every 5 minutes; two small reads a minute cost
 * nothing and leave more of a short-lived certificate's life. */
#define CERT_FILES_TTL_MS 60000
#define EXEC_TIMEOUT_MS 30000
/* A plugin at the terminal told to stop (SIGTERM) is killed after this. */
#define EXEC_TERM_GRACE_MS 2000
/* A credential is a few KiB; anything far larger is a broken plugin. */
#define EXEC_STDOUT_MAX (64u << 10)
/* Only the end of stderr is kept: that is where the error usually is. */
#define EXEC_STDERR_KEEP 4096
#define EXEC_SNIPPET 512
/* After a failed run, the plugin is not started again for this long:
 * callers get the current credential while it is unexpired, else the error,
 * rather than a new run on every request. */
#define EXEC_RETRY_MS 5000
/* Refresh this long (or 10% of the lifetime, if larger) before expiry. */
#define EXEC_EXPIRY_SLACK_MS 30000

enum auth_kind {
    AUTH_NONE,
    AUTH_TOKEN,
    AUTH_TOKEN_FILE,
    AUTH_EXEC,
};

struct waiter {
    gm_auth_cb cb;
    void *data;
    struct waiter *next;
};

/* One plugin run. It owns its handles and outlives its gm_auth when that is
 * freed mid-run: then a is NULL and the run only cleans up after itself. */
struct exec_run {
    uv_process_t proc;
    uv_pipe_t out;
    uv_pipe_t err;
    uv_timer_t timer;
    struct gm_auth *a;
    struct gm_buf out_buf; /* owned; may hold secrets, wiped on free */
    struct gm_buf err_buf; /* owned; the last EXEC_STDERR_KEEP bytes */
    int open;              /* initialised handles not yet closed */
    int exited;
    int out_done;
    int err_done;
    int finished;
    int64_t status;
    int term_signal;
    int fail;        /* -ETIMEDOUT or -E2BIG when we stopped it */
    int interactive; /* it has the terminal and is in our process group */
    int term_sent;   /* told to stop with SIGTERM */
    char rbuf[16384];
};

struct gm_auth {
    uv_loop_t *loop;
    const struct gm_kube_config *cfg; /* borrowed; outlives us */
    enum auth_kind kind;
    char *token; /* owned, wiped on free */
    char *cert;  /* owned; from an exec plugin */
    size_t cert_len;
    char *key; /* owned, wiped on free */
    size_t key_len;
    uint64_t generation;
    int have_cred;
    int invalid;        /* a 401 was seen since the last refresh started */
    int64_t fetched_ms; /* when the token file was last read */
    char *file_cert;    /* owned PEM from cfg->cert_file, or NULL */
    size_t file_cert_len;
    char *file_key; /* owned, wiped on free; from cfg->key_file */
    size_t file_key_len;
    int64_t files_read_ms; /* when the pair was last read */
    int files_invalid;     /* a 401 was seen since then */
    int files_failed;      /* last_error is about the files */
    int64_t expiry_ms;     /* exec credential expiry, 0 when none */
    int64_t refresh_ms;    /* when to run the plugin again, 0 when never */
    int64_t failed_ms;     /* when the last exec refresh failed */
    int last_err;          /* negative errno of that failure, 0 after success */
    char *last_error;      /* owned message, or NULL */
    struct exec_run *run;
    struct waiter *waiters; /* owned list, called in order */
    struct waiter **tail;
    int dispatching; /* inside callbacks: gm_auth_free must wait */
    int free_requested;
    gm_auth_clock now;
    void *now_data;
    uint64_t exec_timeout_ms;
    int terminal; /* a person at stdin and stderr (gm_auth_set_terminal) */
};

static int64_t real_clock(void *data)
{
    struct timespec ts;

    (void)data;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t now_ms(const struct gm_auth *a)
{
    return a->now(a->now_data);
}

static void wipe_free(char *p, size_t n)
{
    if (p)
        OPENSSL_cleanse(p, n);
    free(p);
}

static void set_error(struct gm_auth *a, int err, char *msg)
{
    free(a->last_error);
    a->last_error = msg;
    a->last_err = err;
}

/* Takes ownership of the new credentials and bumps the generation when they
 * differ from what callers saw before. */
static void set_cred(struct gm_auth *a, char *token, char *cert,
                     size_t cert_len, char *key, size_t key_len)
{
    int same = a->have_cred;

    if ((token == NULL) != (a->token == NULL) ||
        (token && strcmp(token, a->token) != 0))
        same = 0;
    if (cert_len != a->cert_len ||
        (cert && memcmp(cert, a->cert, cert_len) != 0))
        same = 0;
    if (key_len != a->key_len || (key && memcmp(key, a->key, key_len) != 0))
        same = 0;
    wipe_free(a->token, a->token ? strlen(a->token) : 0);
    free(a->cert);
    wipe_free(a->key, a->key_len);
    a->token = token;
    a->cert = cert;
    a->cert_len = cert_len;
    a->key = key;
    a->key_len = key_len;
    a->have_cred = 1;
    if (!same)
        a->generation++;
}

static void fill(const struct gm_auth *a, struct gm_cred *cred)
{
    cred->token = a->token;
    cred->cert_pem = a->cert;
    cred->cert_len = a->cert_len;
    cred->key_pem = a->key;
    cred->key_len = a->key_len;
    cred->generation = a->generation;
}

int gm_auth_new(uv_loop_t *loop, const struct gm_kube_config *cfg,
                struct gm_auth **out)
{
    struct gm_auth *a = calloc(1, sizeof(*a));

    *out = NULL;
    if (a == NULL)
        return -ENOMEM;
    a->loop = loop;
    a->cfg = cfg;
    a->tail = &a->waiters;
    a->now = real_clock;
    a->exec_timeout_ms = EXEC_TIMEOUT_MS;
    a->generation = 1;
    /* client-go's order: a token, a token file or a client certificate in
     * the kubeconfig is used, and the exec plugin beside it never runs. */
    bool has_cert =
        (cfg->cert_file || cfg->cert_data) && (cfg->key_file || cfg->key_data);
    if (cfg->exec && (cfg->token_file || cfg->token || has_cert))
        gm_warn("%s: the user has a %s, so its exec plugin %s is not run, "
                "as kubectl does not run it",
                cfg->exec->source ? cfg->exec->source : "kubeconfig",
                has_cert && !cfg->token && !cfg->token_file
                    ? "client certificate"
                    : "token",
                cfg->exec->command);
    if (cfg->token_file) {
        a->kind = AUTH_TOKEN_FILE;
    } else if (cfg->token) {
        a->kind = AUTH_TOKEN;
        a->token = strdup(cfg->token);
        if (a->token == NULL) {
            free(a);
            return -ENOMEM;
        }
        a->have_cred = 1;
    } else if (cfg->exec && !has_cert) {
        a->kind = AUTH_EXEC;
    } else {
        a->kind = AUTH_NONE;
        a->have_cred = 1;
    }
    *out = a;
    return 0;
}

void gm_auth_set_clock(struct gm_auth *a, gm_auth_clock now, void *data)
{
    a->now = now ? now : real_clock;
    a->now_data = data;
}

void gm_auth_set_exec_timeout(struct gm_auth *a, uint64_t ms)
{
    a->exec_timeout_ms = ms;
}

void gm_auth_set_terminal(struct gm_auth *a, int on)
{
    a->terminal = on;
}

/* Whether the plugin talks to the person at the terminal this run. */
static int exec_interactive(const struct gm_auth *a)
{
    return a->terminal && a->cfg->exec->interactive != GM_EXEC_NEVER;
}

const char *gm_auth_last_error(const struct gm_auth *a)
{
    return a->last_error;
}

void gm_auth_invalidate(struct gm_auth *a, uint64_t generation)
{
    /* A 401 is about the credentials its request was sent with: once
     * they have been replaced it asks for nothing more (client-go
     * compares the credentials the same way). Without this, 401s of
     * requests sent before a refresh ran the plugin again and again. One
     * that comes while a run goes on marks the credential bad, so callers
     * wait for the run, whose success answers it. */
    if (generation != 0 && generation != a->generation)
        return;
    /* A static token cannot get better by asking again. */
    if (a->kind == AUTH_TOKEN_FILE || a->kind == AUTH_EXEC)
        a->invalid = 1;
    /* An expired client certificate is refused with a 401 too. */
    a->files_invalid = 1;
}

int gm_auth_has_cert_files(const struct gm_kube_config *cfg)
{
    return cfg->cert_file && cfg->key_file;
}

/* ---- token file ---- */

static char *msgf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *msgf(const char *fmt, ...)
{
    char small[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    return strdup(small);
}

/* Reads a whole file of at most max bytes into *b (wiped by the caller). */
static int read_whole(const char *path, size_t max, struct gm_buf *b)
{
    char chunk[4096];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int err = 0;

    gm_buf_init(b, max);
    if (fd < 0)
        return -errno;
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof(chunk));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            err = r < 0 ? -errno : 0;
            break;
        }
        err = gm_buf_append(b, chunk, (size_t)r);
        if (err)
            break;
    }
    close(fd);
    OPENSSL_cleanse(chunk, sizeof(chunk));
    return err;
}

static int read_token_file(const char *path, char **out)
{
    struct gm_buf b;
    int err = read_whole(path, TOKEN_FILE_MAX, &b);

    if (err) {
        wipe_free(b.data, b.cap);
        return err;
    }
    /* Files written by editors end in a newline; a token never has
     * whitespace at either end. */
    size_t start = 0, end = b.len;
    while (start < end && isspace((unsigned char)b.data[start]))
        start++;
    while (end > start && isspace((unsigned char)b.data[end - 1]))
        end--;
    if (start == end) {
        wipe_free(b.data, b.cap);
        return -ENODATA;
    }
    *out = strndup(b.data + start, end - start);
    wipe_free(b.data, b.cap);
    return *out ? 0 : -ENOMEM;
}

static int refresh_token_file(struct gm_auth *a)
{
    const char *path = a->cfg->token_file;
    char *token = NULL;
    int err = read_token_file(path, &token);

    if (err) {
        const char *why = err == -ENODATA ? "file is empty" : strerror(-err);
        set_error(a, err, msgf("%s: cannot read token: %s", path, why));
        return err;
    }
    set_cred(a, token, NULL, 0, NULL, 0);
    a->fetched_ms = now_ms(a);
    a->invalid = 0;
    set_error(a, 0, NULL);
    return 0;
}

static int current_token_file(struct gm_auth *a, struct gm_cred *cred)
{
    int64_t age = now_ms(a) - a->fetched_ms;

    /* A clock that went backwards makes the age negative: re-read too. */
    if (a->have_cred && !a->invalid && age >= 0 && age < TOKEN_FILE_TTL_MS) {
        fill(a, cred);
        return 0;
    }
    int err = refresh_token_file(a);
    if (err && a->cfg->token && (!a->have_cred || a->invalid)) {
        /* Both in the kubeconfig: client-go falls back to the token when
         * the file cannot be read. */
        char *t = strdup(a->cfg->token);
        if (t == NULL)
            return -ENOMEM;
        gm_warn("%s; using the kubeconfig's token", a->last_error);
        set_cred(a, t, NULL, 0, NULL, 0);
        a->fetched_ms = now_ms(a);
        a->invalid = 0;
        fill(a, cred);
        return 0;
    }
    if (err && (!a->have_cred || a->invalid))
        return err;
    if (err) {
        /* kubelet swaps the file atomically, so this is rare; the old token
         * is likely still valid for a while, as client-go also assumes.
         * The file is tried again in TOKEN_RETRY_MS, not at every request
         * (each would warn). */
        gm_warn("%s; keeping the previous token", a->last_error);
        a->fetched_ms = now_ms(a) - TOKEN_FILE_TTL_MS + TOKEN_RETRY_MS;
    }
    fill(a, cred);
    return 0;
}

/* ---- client certificate files ---- */

static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1; /* kubeconfig keys are never encrypted; never prompt */
}

/* NULL when the PEM certificate and key are a pair, else why not. */
static const char *pair_problem(const struct gm_buf *cert,
                                const struct gm_buf *key)
{
    const char *why = NULL;
    BIO *cb = BIO_new_mem_buf(cert->data ? cert->data : "", (int)cert->len);
    BIO *kb = BIO_new_mem_buf(key->data ? key->data : "", (int)key->len);
    X509 *x = cb ? PEM_read_bio_X509(cb, NULL, no_passphrase, NULL) : NULL;
    EVP_PKEY *k =
        kb ? PEM_read_bio_PrivateKey(kb, NULL, no_passphrase, NULL) : NULL;

    if (cb == NULL || kb == NULL)
        why = "out of memory";
    else if (x == NULL)
        why = "the certificate is not a PEM certificate";
    else if (k == NULL)
        why = "the key is not an unencrypted PEM private key";
    else if (X509_check_private_key(x, k) != 1)
        why = "the key does not match the certificate";
    EVP_PKEY_free(k);
    X509_free(x);
    BIO_free(kb);
    BIO_free(cb);
    ERR_clear_error();
    return why;
}

static int same_bytes(const char *a, size_t alen, const struct gm_buf *b)
{
    return a && alen == b->len && memcmp(a, b->data, alen) == 0;
}

/* Reads the pair again; adopts it when it changed and is a pair. */
static int refresh_cert_files(struct gm_auth *a)
{
    const struct gm_kube_config *cfg = a->cfg;
    struct gm_buf cert, key;
    const char *path = cfg->cert_file;
    int err = read_whole(cfg->cert_file, CERT_FILE_MAX, &cert);

    if (!err) {
        path = cfg->key_file;
        err = read_whole(cfg->key_file, CERT_FILE_MAX, &key);
    } else {
        gm_buf_init(&key, 0);
    }
    if (err) {
        set_error(a, err, msgf("%s: cannot read: %s", path, strerror(-err)));
    } else if (!same_bytes(a->file_cert, a->file_cert_len, &cert) ||
               !same_bytes(a->file_key, a->file_key_len, &key)) {
        const char *why = pair_problem(&cert, &key);
        if (why) {
            err = -EINVAL;
            set_error(a, err,
                      msgf("client certificate %s and key %s: %s%s",
                           cfg->cert_file, cfg->key_file, why,
                           strstr(why, "match") ? " (one of the two files not "
                                                  "rotated yet?)"
                                                : ""));
        } else {
            free(a->file_cert);
            wipe_free(a->file_key, a->file_key_len);
            a->file_cert = cert.data;
            a->file_cert_len = cert.len;
            a->file_key = key.data;
            a->file_key_len = key.len;
            cert.data = key.data = NULL;
            key.cap = 0;
            a->generation++;
        }
    }
    /* The error slot is shared with the token file's reading: a good read
     * clears only an error of ours. */
    if (err == 0 && a->files_failed)
        set_error(a, 0, NULL);
    a->files_failed = err != 0;
    free(cert.data);
    wipe_free(key.data, key.cap);
    a->files_read_ms = now_ms(a);
    a->files_invalid = 0;
    return err;
}

/* Puts the file pair in *cred. */
static int current_cert_files(struct gm_auth *a, struct gm_cred *cred)
{
    int64_t age = now_ms(a) - a->files_read_ms;

    if (a->file_cert == NULL || a->files_invalid || age < 0 ||
        age >= CERT_FILES_TTL_MS) {
        int err = refresh_cert_files(a);
        if (err && a->file_cert == NULL)
            return err;
        /* A pair half rotated, or a file briefly missing: the pair we
         * have was good when read; a 401 will say if it no longer is. */
        if (err)
            gm_warn("%s; keeping the certificate read before", a->last_error);
    }
    cred->cert_pem = a->file_cert;
    cred->cert_len = a->file_cert_len;
    cred->key_pem = a->file_key;
    cred->key_len = a->file_key_len;
    cred->generation = a->generation;
    return 0;
}

/* ---- exec plugin: running it ---- */

static void run_on_close(uv_handle_t *h)
{
    struct exec_run *r = h->data;

    if (--r->open > 0)
        return;
    wipe_free(r->out_buf.data, r->out_buf.cap);
    gm_buf_free(&r->err_buf);
    OPENSSL_cleanse(r->rbuf, sizeof(r->rbuf));
    free(r);
}

static void run_close(struct exec_run *r, uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, run_on_close);
}

static int exec_fresh(const struct gm_auth *a, int64_t now)
{
    return a->have_cred && !a->invalid &&
           (a->refresh_ms == 0 || now < a->refresh_ms);
}

/* Still good to send: no 401 has condemned it and it has not expired. */
static int exec_usable(const struct gm_auth *a, int64_t now)
{
    return a->have_cred && !a->invalid &&
           (a->expiry_ms == 0 || now < a->expiry_ms);
}

/* A run failed less than EXEC_RETRY_MS ago: not yet time to try again. */
static int exec_backing_off(const struct gm_auth *a, int64_t now)
{
    return a->last_err && now >= a->failed_ms &&
           now - a->failed_ms < EXEC_RETRY_MS;
}

static void exec_complete(struct gm_auth *a, struct exec_run *r);

static void run_maybe_finish(struct exec_run *r)
{
    if (r->finished || !r->exited || !r->out_done || !r->err_done)
        return;
    r->finished = 1;
    run_close(r, (uv_handle_t *)&r->timer);
    if (r->a) {
        struct gm_auth *a = r->a;
        a->run = NULL;
        r->a = NULL;
        exec_complete(a, r);
    }
}

static void run_stop_pipe(struct exec_run *r, uv_pipe_t *p, int *done)
{
    if (*done)
        return;
    *done = 1;
    uv_read_stop((uv_stream_t *)p);
    run_close(r, (uv_handle_t *)p);
}

/* Kills the plugin and everything it started (it leads its own process
 * group), and stops listening to it; the exit callback still comes. One
 * talking to the person is in our process group and gets SIGTERM alone:
 * it may have changed the terminal's settings (a password prompt turns
 * echo off) and must be let put them back. */
static void run_on_timer(uv_timer_t *t);

static void run_kill(struct exec_run *r)
{
    if (!r->exited && r->interactive && !r->term_sent) {
        /* SIGKILL follows if it does not end: whoever closes the loop
         * waits for its exit. */
        r->term_sent = 1;
        uv_process_kill(&r->proc, SIGTERM);
        uv_timer_start(&r->timer, run_on_timer, EXEC_TERM_GRACE_MS, 0);
    } else if (!r->exited) {
        if (kill(-r->proc.pid, SIGKILL) != 0)
            uv_process_kill(&r->proc, SIGKILL);
    }
    run_stop_pipe(r, &r->out, &r->out_done);
    run_stop_pipe(r, &r->err, &r->err_done);
}

static void run_on_exit(uv_process_t *p, int64_t status, int term_signal)
{
    struct exec_run *r = p->data;

    r->exited = 1;
    r->status = status;
    r->term_signal = term_signal;
    run_close(r, (uv_handle_t *)p);
    run_maybe_finish(r);
}

static void run_on_timer(uv_timer_t *t)
{
    struct exec_run *r = t->data;

    /* The grace after SIGTERM ends here too: keep what stopped it. */
    if (r->fail == 0)
        r->fail = -ETIMEDOUT;
    run_kill(r);
    run_maybe_finish(r);
}

static void run_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct exec_run *r = h->data;

    /* Reads are delivered before the next alloc, so one buffer serves both
     * pipes. */
    buf->base = r->rbuf;
    buf->len = sizeof(r->rbuf);
}

static void keep_tail(struct gm_buf *b, const char *p, size_t n)
{
    if (n > EXEC_STDERR_KEEP) {
        p += n - EXEC_STDERR_KEEP;
        n = EXEC_STDERR_KEEP;
    }
    if (gm_buf_append(b, p, n) == 0 && b->len > EXEC_STDERR_KEEP)
        gm_buf_consume(b, b->len - EXEC_STDERR_KEEP);
}

static void run_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct exec_run *r = s->data;
    int is_out = s == (uv_stream_t *)&r->out;

    if (n > 0 && is_out) {
        if (gm_buf_append(&r->out_buf, buf->base, (size_t)n) != 0) {
            r->fail = -E2BIG;
            run_kill(r);
        }
    } else if (n > 0) {
        keep_tail(&r->err_buf, buf->base, (size_t)n);
    } else if (n < 0) {
        if (is_out)
            run_stop_pipe(r, &r->out, &r->out_done);
        else
            run_stop_pipe(r, &r->err, &r->err_done);
    }
    run_maybe_finish(r);
}

/* JSON nested as deep as the kubeconfig loader lets an extension be
 * (json_tokener_parse stops at 32 levels). NULL when out of memory. */
static json_object *parse_deep(const char *text)
{
    json_tokener *tok = json_tokener_new_ex(128);
    json_object *o;

    if (tok == NULL)
        return NULL;
    o = json_tokener_parse_ex(tok, text, -1);
    json_tokener_free(tok);
    return o;
}

/* spec.cluster for provideClusterInfo: the cluster as the kubeconfig has
 * it, the CA as data even when the kubeconfig names a file (as client-go
 * hands it). NULL when out of memory. */
static json_object *exec_cluster(const struct gm_kube_config *cfg)
{
    json_object *c = json_object_new_object();
    char *ca64 = NULL;
    struct gm_buf file = {0};

    if (c == NULL)
        return NULL;
    json_object_object_add(c, "server", json_object_new_string(cfg->server));
    if (cfg->tls_server_name)
        json_object_object_add(c, "tls-server-name",
                               json_object_new_string(cfg->tls_server_name));
    if (cfg->insecure)
        json_object_object_add(c, "insecure-skip-tls-verify",
                               json_object_new_boolean(1));
    if (cfg->proxy_url)
        json_object_object_add(c, "proxy-url",
                               json_object_new_string(cfg->proxy_url));
    /* A CA file that cannot be read is left out: the connection itself
     * then says what is wrong with it. */
    if (cfg->ca_data)
        gm_base64_encode(cfg->ca_data, cfg->ca_data_len, &ca64);
    else if (cfg->ca_file && read_whole(cfg->ca_file, 1u << 20, &file) == 0)
        gm_base64_encode(file.data ? file.data : "", file.len, &ca64);
    gm_buf_free(&file);
    if (ca64)
        json_object_object_add(c, "certificate-authority-data",
                               json_object_new_string(ca64));
    free(ca64);
    if (cfg->exec_extension)
        json_object_object_add(c, "config", parse_deep(cfg->exec_extension));
    return c;
}

/* KUBERNETES_EXEC_INFO tells the plugin which API we speak, whether a
 * person can answer prompts, and, when the kubeconfig asks, the cluster. */
static char *exec_info(const struct gm_kube_config *cfg, int interactive)
{
    struct json_object *o = json_object_new_object();
    struct json_object *spec = json_object_new_object();
    char *s = NULL;

    if (o && spec) {
        json_object_object_add(o, "apiVersion",
                               json_object_new_string(cfg->exec->api_version));
        json_object_object_add(o, "kind",
                               json_object_new_string("ExecCredential"));
        json_object_object_add(spec, "interactive",
                               json_object_new_boolean(interactive));
        if (cfg->exec->provide_cluster_info)
            json_object_object_add(spec, "cluster", exec_cluster(cfg));
        json_object_object_add(o, "spec", spec);
        spec = NULL;
        s = msgf("KUBERNETES_EXEC_INFO=%s",
                 json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    }
    json_object_put(spec);
    json_object_put(o);
    return s;
}

static size_t name_len(const char *kv)
{
    const char *eq = strchr(kv, '=');
    return eq ? (size_t)(eq - kv) : strlen(kv);
}

static int env_overridden(const char *kv, char **extra)
{
    size_t n = name_len(kv);

    for (size_t i = 0; extra[i]; i++) {
        if (name_len(extra[i]) == n && strncmp(kv, extra[i], n) == 0)
            return 1;
    }
    return 0;
}

/* Our environment, then the plugin's additions (which win, as in client-go),
 * then KUBERNETES_EXEC_INFO. Only the vector is allocated; the strings are
 * borrowed. */
static char **exec_env(char **plugin_env, char *info)
{
    extern char **environ;
    size_t n = 0, m = 0, k = 0;

    for (; environ && environ[n]; n++)
        ;
    for (; plugin_env && plugin_env[m]; m++)
        ;
    char **extra = calloc(m + 2, sizeof(char *));
    char **env = calloc(n + m + 2, sizeof(char *));
    if (extra == NULL || env == NULL) {
        free(extra);
        free(env);
        return NULL;
    }
    for (size_t i = 0; i < m; i++)
        extra[i] = plugin_env[i];
    extra[m] = info;
    for (size_t i = 0; i < n; i++) {
        if (!env_overridden(environ[i], extra))
            env[k++] = environ[i];
    }
    for (size_t i = 0; i <= m; i++)
        env[k++] = extra[i];
    free(extra);
    return env;
}

static int exec_start(struct gm_auth *a)
{
    const struct gm_kube_exec *x = a->cfg->exec;
    struct exec_run *r = calloc(1, sizeof(*r));
    uv_process_options_t opts = {0};
    uv_stdio_container_t stdio[3];
    char *info = NULL;
    char **env = NULL;
    int err;

    if (r == NULL)
        return -ENOMEM;
    gm_buf_init(&r->out_buf, EXEC_STDOUT_MAX);
    gm_buf_init(&r->err_buf, EXEC_STDERR_KEEP * 2);
    int interactive = exec_interactive(a);
    info = exec_info(a->cfg, interactive);
    env = info ? exec_env(x->env, info) : NULL;
    if (env == NULL) {
        free(info);
        free(r);
        return -ENOMEM;
    }
    uv_pipe_init(a->loop, &r->out, 0);
    uv_pipe_init(a->loop, &r->err, 0);
    uv_timer_init(a->loop, &r->timer);
    r->out.data = r->err.data = r->timer.data = r->proc.data = r;
    r->open = 3;

    /* A person at the terminal sees the plugin's prompts and answers them
     * (a device-code login, a password), as with kubectl; otherwise stdin
     * is /dev/null and stderr is kept for messages. */
    if (interactive) {
        stdio[0].flags = UV_INHERIT_FD;
        stdio[0].data.fd = 0;
        stdio[2].flags = UV_INHERIT_FD;
        stdio[2].data.fd = 2;
    } else {
        stdio[0].flags = UV_IGNORE;
        stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
        stdio[2].data.stream = (uv_stream_t *)&r->err;
    }
    stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[1].data.stream = (uv_stream_t *)&r->out;
    opts.exit_cb = run_on_exit;
    opts.file = x->command;
    opts.args = x->args;
    opts.env = env;
    opts.stdio = stdio;
    opts.stdio_count = 3;
    /* Its own session and process group, so a timeout kills the plugin's
     * children too. Not when it talks to the person: it stays in our
     * session, with the terminal as its controlling one (a password prompt
     * opens /dev/tty) and Ctrl-C reaching it too; such a run has no time
     * limit to enforce. */
    opts.flags = interactive ? 0 : UV_PROCESS_DETACHED;

    err = uv_spawn(a->loop, &r->proc, &opts);
    /* uv_spawn has returned after the child exec'd; it keeps no pointer. */
    free(env);
    free(info);
    r->open++; /* the process handle is initialised even on failure */
    if (err) {
        /* No exit callback will come; close everything now. */
        r->exited = r->out_done = r->err_done = r->finished = 1;
        run_close(r, (uv_handle_t *)&r->proc);
        run_close(r, (uv_handle_t *)&r->out);
        run_close(r, (uv_handle_t *)&r->err);
        run_close(r, (uv_handle_t *)&r->timer);
        return err;
    }
    r->interactive = interactive;
    uv_read_start((uv_stream_t *)&r->out, run_alloc, run_on_read);
    if (interactive) {
        /* No limit while a person types, as in client-go; the stderr
         * pipe was never connected. */
        run_stop_pipe(r, &r->err, &r->err_done);
    } else {
        uv_read_start((uv_stream_t *)&r->err, run_alloc, run_on_read);
        uv_timer_start(&r->timer, run_on_timer, a->exec_timeout_ms, 0);
    }
    r->a = a;
    a->run = r;
    return 0;
}

/* ---- exec plugin: reading its answer ---- */

/* RFC 3339 as Go's time.Time marshals it: 2006-01-02T15:04:05[.frac]Z or
 * with a numeric offset. */
static int parse_rfc3339(const char *s, int64_t *out)
{
    int y, mo, d, h, mi, sec, n = 0;
    int64_t frac_ms = 0, off_s = 0;

    if (sscanf(s, "%4d-%2d-%2d%*1[Tt]%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec,
               &n) != 6 ||
        n != 19)
        return -EINVAL;
    const char *p = s + n;
    if (*p == '.') {
        int digits = 0;
        for (p++; isdigit((unsigned char)*p); p++, digits++) {
            if (digits < 3)
                frac_ms = frac_ms * 10 + (*p - '0');
        }
        if (digits == 0)
            return -EINVAL;
        for (; digits < 3; digits++)
            frac_ms *= 10;
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om, k = 0;
        if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &k) != 2 || k != 5)
            return -EINVAL;
        off_s = (int64_t)(oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
        p += 6;
    } else {
        return -EINVAL;
    }
    if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
        sec > 60)
        return -EINVAL;
    struct tm tm = {
        .tm_year = y - 1900,
        .tm_mon = mo - 1,
        .tm_mday = d,
        .tm_hour = h,
        .tm_min = mi,
        .tm_sec = sec,
    };
    time_t t = timegm(&tm);
    *out = ((int64_t)t - off_s) * 1000 + frac_ms;
    return 0;
}

static const char *obj_str(struct json_object *o, const char *key, int *bad)
{
    struct json_object *v;

    if (!json_object_object_get_ex(o, key, &v) || v == NULL)
        return NULL;
    if (!json_object_is_type(v, json_type_string)) {
        *bad = 1;
        return NULL;
    }
    return json_object_get_string(v);
}

/* Parses stdout into a credential. On failure returns -EPROTO and a reason
 * in why (static or in buf). */
static int exec_parse(struct gm_auth *a, const char *text, size_t len,
                      char *why, size_t why_len)
{
    const char *want = a->cfg->exec->api_version;
    struct json_tokener *tok = json_tokener_new();
    struct json_object *root = NULL, *status;
    const char *api, *kind, *token, *cert, *key, *exp;
    int bad = 0, err = -EPROTO;
    int64_t expiry = 0, now = now_ms(a);

    if (tok == NULL)
        return -ENOMEM;
    root = json_tokener_parse_ex(tok, text, (int)len);
    if (root == NULL || json_tokener_get_error(tok) != json_tokener_success) {
        enum json_tokener_error e = json_tokener_get_error(tok);
        snprintf(why, why_len, "invalid ExecCredential JSON: %s",
                 e == json_tokener_continue ? "unexpected end of input"
                                            : json_tokener_error_desc(e));
        goto out;
    }
    if (!json_object_is_type(root, json_type_object)) {
        snprintf(why, why_len, "invalid ExecCredential JSON: not an object");
        goto out;
    }
    api = obj_str(root, "apiVersion", &bad);
    kind = obj_str(root, "kind", &bad);
    if (api == NULL || strcmp(api, want) != 0) {
        snprintf(why, why_len, "apiVersion \"%s\" does not match \"%s\"",
                 api ? api : "", want);
        goto out;
    }
    if (kind == NULL || strcmp(kind, "ExecCredential") != 0) {
        snprintf(why, why_len, "kind \"%s\" is not ExecCredential",
                 kind ? kind : "");
        goto out;
    }
    if (!json_object_object_get_ex(root, "status", &status) ||
        !json_object_is_type(status, json_type_object)) {
        snprintf(why, why_len, "status: missing");
        goto out;
    }
    token = obj_str(status, "token", &bad);
    cert = obj_str(status, "clientCertificateData", &bad);
    key = obj_str(status, "clientKeyData", &bad);
    exp = obj_str(status, "expirationTimestamp", &bad);
    if (bad) {
        snprintf(why, why_len, "status: fields must be strings");
        goto out;
    }
    /* Empty is absent, as client-go reads them (plugins not written in Go
     * print "" for what they do not give). */
    if (token && token[0] == '\0')
        token = NULL;
    if (cert && cert[0] == '\0')
        cert = NULL;
    if (key && key[0] == '\0')
        key = NULL;
    if ((cert == NULL) != (key == NULL)) {
        snprintf(why, why_len,
                 "status: clientCertificateData and "
                 "clientKeyData must come together");
        goto out;
    }
    if (cert) {
        /* Checked here, as client-go does: a bad pair would otherwise fail
         * every TLS handshake, which is no 401 and so never re-runs the
         * plugin. */
        struct gm_buf cb = {.data = (char *)(uintptr_t)cert,
                            .len = strlen(cert)};
        struct gm_buf kb = {.data = (char *)(uintptr_t)key, .len = strlen(key)};
        const char *problem = pair_problem(&cb, &kb);
        if (problem) {
            snprintf(why, why_len,
                     "status: clientCertificateData and clientKeyData: %s",
                     problem);
            goto out;
        }
    }
    if (token == NULL && cert == NULL) {
        snprintf(why, why_len, "status: no token and no client certificate");
        goto out;
    }
    if (exp && parse_rfc3339(exp, &expiry) != 0) {
        snprintf(why, why_len,
                 "status.expirationTimestamp: \"%.64s\" is not "
                 "RFC 3339",
                 exp);
        goto out;
    }
    if (exp && expiry <= now) {
        snprintf(why, why_len, "status.expirationTimestamp: %.64s has passed",
                 exp);
        goto out;
    }
    char *t = token ? strdup(token) : NULL;
    char *c = cert ? strdup(cert) : NULL;
    char *k = key ? strdup(key) : NULL;
    if ((token && !t) || (cert && !c) || (key && !k)) {
        free(t);
        free(c);
        wipe_free(k, k ? strlen(k) : 0);
        err = -ENOMEM;
        snprintf(why, why_len, "out of memory");
        goto out;
    }
    set_cred(a, t, c, c ? strlen(c) : 0, k, k ? strlen(k) : 0);
    a->expiry_ms = exp ? expiry : 0;
    a->refresh_ms = 0;
    if (exp) {
        int64_t life = expiry - now;
        int64_t slack = life / 10;
        if (slack < EXEC_EXPIRY_SLACK_MS)
            slack = EXEC_EXPIRY_SLACK_MS;
        /* A short-lived credential is still used for half its life, so a
         * 20 s token does not make every request run the plugin. */
        if (slack > life / 2)
            slack = life / 2;
        a->refresh_ms = expiry - slack;
    }
    err = 0;
out:
    json_object_put(root);
    json_tokener_free(tok);
    return err;
}

/* Copies the end of stderr into out as one printable line. */
static void stderr_snippet(const struct gm_buf *b, char *out, size_t n)
{
    size_t start = 0, end = b->len, k = 0;

    while (end > 0 && isspace((unsigned char)b->data[end - 1]))
        end--;
    if (end > EXEC_SNIPPET)
        start = end - EXEC_SNIPPET;
    while (start < end && isspace((unsigned char)b->data[start]))
        start++;
    for (size_t i = start; i < end && k + 1 < n; i++) {
        unsigned char c = (unsigned char)b->data[i];
        out[k++] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
    }
    out[k] = '\0';
}

/* Calls every queued waiter once. A callback may call back into a, even
 * gm_auth_free, which then waits until we are done here. */
static void dispatch(struct gm_auth *a, int err, const char *msg)
{
    struct waiter *w = a->waiters;
    char *copy = msg ? strdup(msg) : NULL;

    a->waiters = NULL;
    a->tail = &a->waiters;
    a->dispatching++;
    while (w) {
        struct waiter *next = w->next;
        if (!a->free_requested)
            w->cb(w->data, err, err ? (copy ? copy : "out of memory") : NULL);
        free(w);
        w = next;
    }
    a->dispatching--;
    free(copy);
    if (a->free_requested && a->dispatching == 0)
        gm_auth_free(a);
}

static void exec_complete(struct gm_auth *a, struct exec_run *r)
{
    const struct gm_kube_exec *x = a->cfg->exec;
    char why[512], snippet[EXEC_SNIPPET + 1];
    int err = 0;

    why[0] = '\0';
    stderr_snippet(&r->err_buf, snippet, sizeof(snippet));
    if (r->fail == -ETIMEDOUT) {
        err = -ETIMEDOUT;
        snprintf(why, sizeof(why), "timed out after %" PRIu64 " ms",
                 a->exec_timeout_ms);
    } else if (r->fail == -E2BIG) {
        err = -E2BIG;
        snprintf(why, sizeof(why), "output larger than %u bytes",
                 EXEC_STDOUT_MAX);
    } else if (r->term_signal) {
        err = -ECHILD;
        snprintf(why, sizeof(why), "killed by signal %d", r->term_signal);
    } else if (r->status != 0) {
        err = -ECHILD;
        snprintf(why, sizeof(why), "exit status %" PRId64, r->status);
    } else {
        err = exec_parse(a, r->out_buf.data ? r->out_buf.data : "",
                         r->out_buf.len, why, sizeof(why));
    }
    if (err) {
        a->failed_ms = now_ms(a);
        set_error(a, err,
                  msgf("exec plugin \"%s\" (from %s): %s%s%s", x->command,
                       x->source ? x->source : "kubeconfig", why,
                       snippet[0] ? "; stderr: " : "", snippet));
        gm_warn("%s%s", a->last_error,
                exec_usable(a, a->failed_ms) ? "; keeping the current "
                                               "credential until it expires"
                                             : "");
    } else {
        set_error(a, 0, NULL);
        a->invalid = 0; /* the 401s seen during the run were about the old */
    }
    dispatch(a, err, a->last_error);
}

static int exec_begin(struct gm_auth *a, int64_t now)
{
    const struct gm_kube_exec *x = a->cfg->exec;
    char why[256];
    int err;

    /* This run answers any 401 seen so far. */
    a->invalid = 0;
    if (x->interactive == GM_EXEC_ALWAYS && !a->terminal) {
        err = -ENOTTY;
        snprintf(why, sizeof(why),
                 "its interactiveMode is Always, and "
                 "nobody is at a terminal to answer it");
    } else {
        err = exec_start(a);
        snprintf(why, sizeof(why), "%s", err ? uv_strerror(err) : "");
    }
    if (err) {
        /* The kubeconfig's installHint says how to get a missing plugin. */
        const char *hint =
            err == UV_ENOENT && x->install_hint ? x->install_hint : NULL;
        a->failed_ms = now;
        set_error(a, err,
                  msgf("exec plugin \"%s\" (from %s): cannot run: %s%s%s",
                       x->command, x->source ? x->source : "kubeconfig", why,
                       hint ? "; " : "", hint ? hint : ""));
    }
    return err;
}

static int current_exec(struct gm_auth *a, struct gm_cred *cred, gm_auth_cb cb,
                        void *data)
{
    int64_t now = now_ms(a);

    if (exec_fresh(a, now)) {
        fill(a, cred);
        return 0;
    }
    if (exec_usable(a, now)) {
        /* Refresh time, but the credential has not expired: refresh in the
         * background and keep answering with it, so a slow or failing
         * plugin (an IdP that is down) costs nothing until expiry; the
         * lease client would otherwise lose its renewals, and with them
         * leadership, to a plugin the cluster did not need yet. A failure
         * is retried after EXEC_RETRY_MS, by the first caller after that.
         * Running early still beats client-go's run-at-expiry: when the
         * plugin works, no request ever waits for it. */
        if (a->run == NULL && !exec_backing_off(a, now) &&
            exec_begin(a, now) != 0)
            gm_warn("%s; keeping the current credential", a->last_error);
        fill(a, cred);
        return 0;
    }
    if (a->run == NULL && exec_backing_off(a, now))
        return a->last_err;
    if (a->run == NULL) {
        int err = exec_begin(a, now);
        if (err)
            return err;
    }
    if (cb) {
        struct waiter *w = calloc(1, sizeof(*w));
        if (w == NULL)
            return -ENOMEM;
        w->cb = cb;
        w->data = data;
        *a->tail = w;
        a->tail = &w->next;
    }
    return GM_AUTH_PENDING;
}

int gm_auth_current(struct gm_auth *a, struct gm_cred *cred, gm_auth_cb cb,
                    void *data)
{
    int rc = -EINVAL;

    memset(cred, 0, sizeof(*cred));
    switch (a->kind) {
    case AUTH_EXEC:
        rc = current_exec(a, cred, cb, data);
        break;
    case AUTH_TOKEN_FILE:
        rc = current_token_file(a, cred);
        break;
    case AUTH_TOKEN:
    case AUTH_NONE:
        fill(a, cred);
        rc = 0;
        break;
    }
    /* The files' pair, beside a token or token file if any (an exec plugin
     * never runs beside them: gm_auth_new). */
    if (rc != 0 || !gm_auth_has_cert_files(a->cfg))
        return rc;
    return current_cert_files(a, cred);
}

void gm_auth_free(struct gm_auth *a)
{
    if (a == NULL)
        return;
    if (a->dispatching) {
        a->free_requested = 1;
        return;
    }
    for (struct waiter *w = a->waiters, *next; w; w = next) {
        next = w->next;
        free(w);
    }
    if (a->run) {
        a->run->a = NULL;
        run_kill(a->run);
        a->run = NULL;
    }
    wipe_free(a->token, a->token ? strlen(a->token) : 0);
    free(a->cert);
    wipe_free(a->key, a->key_len);
    free(a->file_cert);
    wipe_free(a->file_key, a->file_key_len);
    free(a->last_error);
    free(a);
}
