#include "cli/conn.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "kube/config.h"

/* The first SIGINT or SIGTERM any connection saw: the command's exit
 * status then says so (128 + it), as a shell's does. */
static int g_interrupted;

struct gm_cli_conn {
    uv_loop_t loop;
    struct gm_kube_config *cfg; /* owned */
    struct gm_kube *kube;       /* owned; NULL once a call was interrupted */
    uv_signal_t sigint, sigterm;
    int have_signals;
    int interrupted;
};

/* One call in flight. */
struct wait {
    bool done;
    long code;
    json_object *obj; /* reference taken on 2xx */
    json_object *items;
    struct gm_kube_error err;
};

static void on_signal(uv_signal_t *h, int signum)
{
    struct gm_cli_conn *c = h->data;
    c->interrupted = 1;
    if (g_interrupted == 0)
        g_interrupted = signum;
}

int gm_cli_connect(const char *paths, const char *context,
                   struct gm_cli_conn **out, char *err, size_t err_len)
{
    struct gm_cli_conn *c = calloc(1, sizeof(*c));
    char *msg = NULL;
    int rc;

    *out = NULL;
    if (c == NULL)
        return -ENOMEM;
    rc = gm_kubeconfig_load(paths, context, &c->cfg, &msg);
    if (rc) {
        snprintf(err, err_len, "%s", msg ? msg : strerror(-rc));
        free(msg);
        free(c);
        return rc;
    }
    rc = uv_loop_init(&c->loop);
    if (rc) {
        gm_kube_config_free(c->cfg);
        free(c);
        snprintf(err, err_len, "event loop: %s", uv_strerror(rc));
        return rc;
    }
    /* An exec plugin may ask the person at the terminal (a device-code
     * login), as it may under kubectl. */
    struct gm_kube_opts o = {.qps = 50,
                             .burst = 100,
                             .timeout_ms = 15000,
                             .terminal = isatty(STDIN_FILENO)};
    rc = gm_kube_new(&c->loop, c->cfg, &o, &c->kube);
    if (rc) {
        snprintf(err, err_len, "cannot make a client for %s: %s",
                 c->cfg->server, strerror(-rc));
        c->kube = NULL;
        gm_cli_close(c);
        return rc;
    }
    /* Ctrl-C ends a --watch cleanly instead of killing it mid-write, and
     * stops a call in flight (wait_for). */
    c->have_signals = 1;
    uv_signal_init(&c->loop, &c->sigint);
    uv_signal_init(&c->loop, &c->sigterm);
    c->sigint.data = c;
    c->sigterm.data = c;
    uv_signal_start(&c->sigint, on_signal, SIGINT);
    uv_signal_start(&c->sigterm, on_signal, SIGTERM);
    uv_unref((uv_handle_t *)&c->sigint);
    uv_unref((uv_handle_t *)&c->sigterm);
    *out = c;
    return 0;
}

void gm_cli_close(struct gm_cli_conn *c)
{
    if (c == NULL)
        return;
    gm_kube_free(c->kube);
    if (c->have_signals) {
        uv_close((uv_handle_t *)&c->sigint, NULL);
        uv_close((uv_handle_t *)&c->sigterm, NULL);
    }
    /* Close callbacks free the transport's handles. */
    uv_run(&c->loop, UV_RUN_DEFAULT);
    uv_loop_close(&c->loop);
    gm_kube_config_free(c->cfg);
    free(c);
}

void gm_cli_signals_default(struct gm_cli_conn *c, bool on)
{
    if (!c->have_signals)
        return;
    /* libuv gives a signal back its default disposition when its last
     * watcher stops. */
    if (on) {
        uv_signal_stop(&c->sigint);
        uv_signal_stop(&c->sigterm);
    } else {
        uv_signal_start(&c->sigint, on_signal, SIGINT);
        uv_signal_start(&c->sigterm, on_signal, SIGTERM);
    }
}

const char *gm_cli_server(const struct gm_cli_conn *c)
{
    return c->cfg->server;
}

uv_loop_t *gm_cli_loop(struct gm_cli_conn *c)
{
    return &c->loop;
}

struct gm_kube *gm_cli_kube(struct gm_cli_conn *c)
{
    return c->kube;
}

int gm_cli_interrupted(const struct gm_cli_conn *c)
{
    return c->interrupted;
}

int gm_cli_was_interrupted(void)
{
    return g_interrupted;
}

static void on_done(void *data, const struct gm_kube_resp *resp)
{
    struct wait *w = data;

    w->done = true;
    w->code = resp->code;
    if (resp->error) {
        w->err = *resp->error;
        return;
    }
    if (resp->obj)
        w->obj = json_object_get(resp->obj);
}

static int on_page(void *data, json_object *items)
{
    struct wait *w = data;

    for (size_t i = 0; i < json_object_array_length(items); i++)
        json_object_array_add(
            w->items, json_object_get(json_object_array_get_idx(items, i)));
    return 0;
}

static int call_failed(int err, struct gm_kube_error *kerr)
{
    memset(kerr, 0, sizeof(*kerr));
    kerr->err = err;
    snprintf(kerr->message, sizeof(kerr->message), "%s",
             err == -EINTR ? "interrupted" : strerror(-err));
    return err;
}

/* Calls are refused once the user asked us to stop (the client is gone,
 * and a next step of the command is not what they want). */
static int check_live(const struct gm_cli_conn *c, struct gm_kube_error *kerr)
{
    return c->interrupted || c->kube == NULL ? call_failed(-EINTR, kerr) : 0;
}

/* Runs the loop until the call ends, or until SIGINT or SIGTERM: then the
 * client is freed, which cancels every call (on_done runs at once with
 * -ECANCELED, so w is not touched after we return) and kills an exec
 * plugin still running, and the result is -EINTR. Without this, Ctrl-C
 * could not stop a command outside --watch. UV_RUN_ONCE because the
 * client keeps handles (timers, pooled connections) alive between calls. */
static int wait_for(struct gm_cli_conn *c, struct wait *w, int started,
                    struct gm_kube_error *kerr)
{
    if (started)
        return call_failed(started, kerr);
    while (!w->done && !c->interrupted)
        uv_run(&c->loop, UV_RUN_ONCE);
    /* A call that ended as the signal came is reported as it ended: a
     * write that was made should not read "interrupted". */
    if (!w->done) {
        gm_kube_free(c->kube);
        c->kube = NULL;
        return call_failed(-EINTR, kerr);
    }
    if (w->code >= 200 && w->code < 300)
        return 0;
    *kerr = w->err;
    return w->err.err ? w->err.err : -EIO;
}

int gm_cli_get(struct gm_cli_conn *c, const char *path, json_object **out,
               struct gm_kube_error *kerr)
{
    struct wait w = {0};
    int rc = check_live(c, kerr);

    if (rc)
        return rc;
    rc = wait_for(c, &w, gm_kube_get(c->kube, path, on_done, &w), kerr);
    if (rc == 0 && out)
        *out = w.obj;
    else
        json_object_put(w.obj);
    return rc;
}

int gm_cli_list(struct gm_cli_conn *c, const char *path, json_object **items,
                struct gm_kube_error *kerr)
{
    struct wait w = {0};

    *items = NULL;
    if (check_live(c, kerr))
        return kerr->err;
    w.items = json_object_new_array();
    if (w.items == NULL)
        return -ENOMEM;
    int rc = wait_for(
        c, &w, gm_kube_list(c->kube, path, 500, on_page, on_done, &w), kerr);
    json_object_put(w.obj);
    if (rc) {
        json_object_put(w.items);
        return rc;
    }
    *items = w.items;
    return 0;
}

int gm_cli_merge_patch(struct gm_cli_conn *c, const char *path,
                       const char *body, json_object **out,
                       struct gm_kube_error *kerr)
{
    struct wait w = {0};
    int rc = check_live(c, kerr);

    if (rc)
        return rc;
    rc = wait_for(c, &w,
                  gm_kube_patch(c->kube, path, GM_PATCH_MERGE, body, NULL, 0,
                                on_done, &w),
                  kerr);
    if (rc == 0 && out)
        *out = w.obj;
    else
        json_object_put(w.obj);
    return rc;
}

static int send_body(struct gm_cli_conn *c, int put, const char *path,
                     json_object *body, json_object **out,
                     struct gm_kube_error *kerr)
{
    struct wait w = {0};
    int rc = check_live(c, kerr);

    if (rc)
        return rc;
    int started = put ? gm_kube_update(c->kube, path, body, on_done, &w)
                      : gm_kube_create(c->kube, path, body, on_done, &w);
    rc = wait_for(c, &w, started, kerr);
    if (rc == 0 && out)
        *out = w.obj;
    else
        json_object_put(w.obj);
    return rc;
}

int gm_cli_create(struct gm_cli_conn *c, const char *path, json_object *body,
                  json_object **out, struct gm_kube_error *kerr)
{
    return send_body(c, 0, path, body, out, kerr);
}

int gm_cli_update(struct gm_cli_conn *c, const char *path, json_object *body,
                  json_object **out, struct gm_kube_error *kerr)
{
    return send_body(c, 1, path, body, out, kerr);
}

static void on_timer(uv_timer_t *t)
{
    *(int *)t->data = 1;
}

int gm_cli_sleep(struct gm_cli_conn *c, long ms)
{
    uv_timer_t t;
    int fired = 0;

    uv_timer_init(&c->loop, &t);
    t.data = &fired;
    uv_timer_start(&t, on_timer, (uint64_t)ms, 0);
    while (!fired && !c->interrupted)
        uv_run(&c->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&c->loop, UV_RUN_NOWAIT);
    return c->interrupted;
}

void gm_cli_describe(const struct gm_cli_conn *c,
                     const struct gm_kube_error *kerr, const char *what,
                     char *buf, size_t len)
{
    const char *server = c ? c->cfg->server : "?";

    if (kerr->code == 0 && kerr->err == -EINTR) {
        snprintf(buf, len, "interrupted");
        return;
    }
    if (kerr->code == 0) {
        /* The transport's or the credential source's own words (the exec
         * plugin's stderr, the certificate check that failed) say more
         * than an errno. */
        const char *why = kerr->message[0] ? kerr->message
                          : kerr->err      ? strerror(-kerr->err)
                                           : "no answer";
        snprintf(buf, len,
                 "cannot reach the cluster at %s: %s - is KUBECONFIG "
                 "right?",
                 server, why);
        return;
    }
    if (kerr->code == 401) {
        snprintf(buf, len,
                 "the cluster at %s did not accept our credentials (401): "
                 "check the user in your kubeconfig",
                 server);
        return;
    }
    if (kerr->code == 403) {
        snprintf(buf, len, "not allowed: %s", kerr->message);
        return;
    }
    if (kerr->code == 404 && what) {
        snprintf(buf, len, "%s not found", what);
        return;
    }
    snprintf(buf, len, "%s%s%s (HTTP %ld)", what ? what : "", what ? ": " : "",
             kerr->message[0] ? kerr->message : kerr->reason, kerr->code);
}
