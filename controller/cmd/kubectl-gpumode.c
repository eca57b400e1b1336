/* kubectl-gpumode: the kubectl plugin. kubectl finds it on PATH and runs it
 * for `kubectl gpumode ...` with the remaining arguments. Each command is a
 * row of the table at the bottom; rendering and planning live in
 * controller/cli so they can be tested without a cluster. Exit codes: 0 ok,
 * 1 error, 2 usage. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "app/config.h"
#include "app/policyopts.h"
#include "app/rollout.h"
#include "cli/args.h"
#include "cli/conn.h"
#include "cli/dryrun.h"
#include "cli/retry.h"
#include "cli/status.h"
#include "cli/watch.h"
#include "common/buf.h"
#include "common/json.h"
#include "common/yaml.h"
#include "kube/node.h"
#include "kube/pod.h"
#include "nodeswitch/record.h"
#include "planner/layout.h"
#include "planner/policy.h"

#define EXIT_USAGE 2
#define OUT_MAX (64u << 20)

static const char crd_hint[] =
    "the GPUModePolicy CRD is not installed: kubectl apply -f "
    "crd/gpumodepolicy.yaml";

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
    va_list ap;

    fputs("error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int open_conn(const struct gm_cli_args *a, struct gm_cli_conn **c)
{
    char err[1024];

    if (gm_cli_connect(a->kubeconfig, a->context, c, err, sizeof(err))) {
        fail("%s", err);
        return 1;
    }
    return 0;
}

/* A 404 on a policy means either the policy or the whole API is missing;
 * asking for the collection tells which. */
static void explain_policy_error(struct gm_cli_conn *c,
                                 const struct gm_kube_error *e,
                                 const char *name)
{
    char what[300], msg[1024];

    if (e->code == 404) {
        struct gm_kube_error e2;
        if (gm_cli_get(c, GM_POLICY_API "?limit=1", NULL, &e2) != 0 &&
            e2.code == 404) {
            fail("%s", crd_hint);
            return;
        }
        if (name) {
            fail("GPUModePolicy %s not found (kubectl get gmp lists them)",
                 name);
            return;
        }
    }
    snprintf(what, sizeof(what), "GPUModePolicy %s", name ? name : "");
    gm_cli_describe(c, e, name ? what : NULL, msg, sizeof(msg));
    fail("%s", msg);
}

static void print_buf(struct gm_buf *b)
{
    if (b->data)
        fwrite(b->data, 1, b->len, stdout);
    fflush(stdout);
}

/* ---- status ---- */

static int fetch_status(struct gm_cli_conn *c, const struct gm_cli_args *a,
                        json_object **pols, json_object **nodes)
{
    struct gm_kube_error e;
    char msg[1024];
    int rc;

    *pols = NULL;
    *nodes = NULL;
    if (a->name) {
        char path[512];
        json_object *one = NULL;
        snprintf(path, sizeof(path), GM_POLICY_API "/%s", a->name);
        rc = gm_cli_get(c, path, &one, &e);
        if (rc == 0) {
            *pols = json_object_new_array();
            json_object_array_add(*pols, one);
        }
    } else {
        rc = gm_cli_list(c, GM_POLICY_API, pols, &e);
    }
    if (rc) {
        explain_policy_error(c, &e, a->name);
        return 1;
    }
    /* Nodes give each row its verified mode and state; without them
     * (RBAC) the status alone still says enough. */
    if (gm_cli_list(c, "/api/v1/nodes", nodes, &e) != 0) {
        gm_cli_describe(c, &e, "nodes", msg, sizeof(msg));
        if (e.code == 0) {
            fail("%s", msg);
            json_object_put(*pols);
            return 1;
        }
        *nodes = NULL;
    }
    return 0;
}

/* Renders and prints when the text differs from the last print. A
 * terminal is redrawn in place; a pipe gets each new snapshot after a
 * blank line. Takes the references to pols and nodes. */
/* trouble: why the watch's view may be stale, since lost (else NULL). */
static int show(const struct gm_cli_args *a, bool tty, json_object *pols,
                json_object *nodes, const char *trouble, time_t lost,
                struct gm_buf *prev, struct gm_buf *cur)
{
    /* NO_COLOR (no-color.org) as --no-color, set to anything but "". */
    const char *no_color = getenv("NO_COLOR");
    struct gm_status_opts o = {
        .color = tty && !a->no_color && !(no_color && no_color[0]),
        .now = time(NULL),
    };
    gm_buf_reset(cur);
    int err = gm_status_render(pols, nodes, &o, cur);
    json_object_put(pols);
    json_object_put(nodes);
    if (err == 0 && trouble) {
        /* The screen would go on ticking as if live. */
        char at[32];
        struct tm tm;
        localtime_r(&lost, &tm);
        strftime(at, sizeof(at), "%H:%M:%S", &tm);
        err = gm_buf_appendf(cur, "\nOut of date since %s, retrying: %s\n", at,
                             trouble);
    }
    if (err) {
        fail("rendering: %s", strerror(-err));
        return 1;
    }
    bool first = prev->data == NULL;
    if (!first && cur->len == prev->len &&
        memcmp(cur->data, prev->data, cur->len) == 0)
        return 0;
    if (a->watch && tty)
        fputs("\033[H\033[2J", stdout);
    else if (!first)
        fputs("\n", stdout);
    print_buf(cur);
    gm_buf_reset(prev);
    gm_buf_append(prev, cur->data, cur->len);
    return 0;
}

static int cmd_status(const struct gm_cli_args *a)
{
    struct gm_cli_conn *c;
    struct gm_cli_watch *w = NULL;
    struct gm_buf prev, cur;
    /* A dumb terminal can neither colour nor clear the screen. */
    const char *term = getenv("TERM");
    bool tty = isatty(STDOUT_FILENO) && !(term && strcmp(term, "dumb") == 0);
    json_object *pols, *nodes;
    int rc;

    if (open_conn(a, &c))
        return 1;
    gm_buf_init(&prev, OUT_MAX);
    gm_buf_init(&cur, OUT_MAX);
    /* One list first: its errors (no CRD, RBAC, a policy that does not
     * exist) are the ones worth a message. */
    rc = fetch_status(c, a, &pols, &nodes);
    bool with_nodes = nodes != NULL;
    if (rc == 0)
        rc = show(a, tty, pols, nodes, NULL, 0, &prev, &cur);
    if (rc == 0 && a->watch) {
        int err = gm_cli_watch_start(c, a->name, with_nodes, &w);
        if (err) {
            fail("cannot watch: %s", strerror(-err));
            rc = 1;
        }
    }
    /* Redraw on every change the watches bring; a terminal also once a
     * second, because "time in phase" ticks. */
    time_t drawn = time(NULL), lost = 0;
    bool was_lost = false;
    while (rc == 0 && w && !gm_cli_sleep(c, 200)) {
        const char *trouble = gm_cli_watch_trouble(w);
        if ((trouble != NULL) != was_lost) {
            /* Lost or back: a pipe is told too. */
            was_lost = trouble != NULL;
            lost = time(NULL);
            drawn = 0;
        }
        bool tick = (tty || drawn == 0) && time(NULL) != drawn &&
                    gm_cli_watch_synced(w);
        if (!gm_cli_watch_take_change(w) && !tick)
            continue;
        if (gm_cli_watch_snapshot(w, &pols, &nodes) != 0) {
            fail("out of memory");
            rc = 1;
            break;
        }
        if (a->name && json_object_array_length(pols) == 0) {
            /* As without --watch: a named policy that is not there is an
             * error, not an empty screen. */
            json_object_put(pols);
            json_object_put(nodes);
            fail("GPUModePolicy %s was deleted", a->name);
            rc = 1;
            break;
        }
        rc = show(a, tty, pols, nodes, trouble, lost, &prev, &cur);
        drawn = time(NULL);
    }
    gm_cli_watch_free(w);
    gm_buf_free(&prev);
    gm_buf_free(&cur);
    gm_cli_close(c);
    return rc;
}

/* ---- pause, resume ---- */

static int set_paused(const struct gm_cli_args *a, bool paused)
{
    struct gm_cli_conn *c;
    struct gm_kube_error e;
    char path[512];
    int rc;

    if (open_conn(a, &c))
        return 1;
    snprintf(path, sizeof(path), GM_POLICY_API "/%s", a->name);
    rc =
        gm_cli_merge_patch(c, path,
                           paused ? "{\"spec\":{\"rollout\":{\"paused\":true}}}"
                                  : "{\"spec\":{\"rollout\":{\"paused\":"
                                    "false}}}",
                           NULL, &e);
    if (rc)
        explain_policy_error(c, &e, a->name);
    else
        printf("gpumodepolicy/%s %s\n", a->name, paused ? "paused" : "resumed");
    gm_cli_close(c);
    return rc ? 1 : 0;
}

static int cmd_pause(const struct gm_cli_args *a)
{
    return set_paused(a, true);
}

static int cmd_resume(const struct gm_cli_args *a)
{
    return set_paused(a, false);
}

/* ---- retry ---- */

static int cmd_retry(const struct gm_cli_args *a)
{
    struct gm_cli_conn *c;
    struct gm_kube_error e;
    json_object *node = NULL;
    char path[512], msg[1024], what[300];
    int rc = 1;

    if (open_conn(a, &c))
        return 1;
    snprintf(path, sizeof(path), "/api/v1/nodes/%s", a->name);
    snprintf(what, sizeof(what), "node %s", a->name);
    if (gm_cli_get(c, path, &node, &e)) {
        gm_cli_describe(c, &e, what, msg, sizeof(msg));
        fail("%s", msg);
        goto out;
    }
    if (gm_cli_retry_check(node, msg, sizeof(msg))) {
        fail("%s", msg);
        goto out;
    }
    char ts[32], body[256];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(body, sizeof(body),
             "{\"metadata\":{\"annotations\":{\"" GM_ANN_RETRY "\":\"%s\"}}}",
             ts);
    if (gm_cli_merge_patch(c, path, body, NULL, &e)) {
        gm_cli_describe(c, &e, what, msg, sizeof(msg));
        fail("%s", msg);
        goto out;
    }
    printf("node/%s annotated %s=%s; the controller will retry the switch\n",
           a->name, GM_ANN_RETRY, ts);
    rc = 0;
out:
    json_object_put(node);
    gm_cli_close(c);
    return rc;
}

/* ---- plan ---- */

struct plan_ctx {
    struct gm_policy *file;     /* owned */
    json_object *file_obj;      /* owned: the file as read */
    struct gm_policy **cluster; /* owned, valid ones */
    size_t n_cluster;
    struct gm_node **nodes; /* owned */
    size_t n_nodes;
    struct gm_pod **pods; /* owned */
    size_t n_pods;
    struct gm_migparted *layouts; /* owned or NULL */
    char layouts_error[1400];
    char layouts_source[600];
    char hami_absent[600]; /* "ConfigMap NS/NAME" when it is not found */
    json_object *pdbs;     /* owned or NULL */
    char pdbs_unread[512]; /* why pdbs is NULL, or "" */
    /* the device plugin's configs (--plugin-configmap, else the
     * controller's devicePluginConfigMap): owned, read when have_plugin */
    struct gm_plugin_configs plugin;
    bool have_plugin;
    char plugin_source[600];
};

static void plan_ctx_free(struct plan_ctx *p)
{
    gm_policy_free(p->file);
    json_object_put(p->file_obj);
    for (size_t i = 0; i < p->n_cluster; i++)
        gm_policy_free(p->cluster[i]);
    free(p->cluster);
    for (size_t i = 0; i < p->n_nodes; i++)
        gm_node_free(p->nodes[i]);
    free(p->nodes);
    for (size_t i = 0; i < p->n_pods; i++)
        gm_pod_free(p->pods[i]);
    free(p->pods);
    gm_migparted_free(p->layouts);
    json_object_put(p->pdbs);
    if (p->have_plugin)
        gm_plugin_configs_free(&p->plugin);
}

/* Reads the policy file; errors name the file and the field. On success
 * *doc is the file as read, the caller's. */
static int read_policy(const char *file, struct gm_policy **out,
                       json_object **doc)
{
    json_object *obj = NULL;
    char err[600];

    *out = NULL;
    *doc = NULL;
    if (gm_yaml_parse_file(file, &obj, err, sizeof(err))) {
        fail("%s", err);
        return 1;
    }
    /* Both are required, as kubectl apply requires them. */
    const char *kind = json_object_get_string(gm_json_get(obj, "kind"));
    const char *api = json_object_get_string(gm_json_get(obj, "apiVersion"));
    if (obj == NULL || kind == NULL || strcmp(kind, "GPUModePolicy") != 0) {
        fail("%s: kind: expected GPUModePolicy, got %s", file,
             obj ? (kind ? kind : "nothing") : "an empty document");
        json_object_put(obj);
        return 1;
    }
    if (api == NULL || strcmp(api, "gpumode.io/v1alpha1") != 0) {
        fail("%s: apiVersion: expected gpumode.io/v1alpha1, got %s", file,
             api ? api : "nothing");
        json_object_put(obj);
        return 1;
    }
    int rc = gm_policy_decode(obj, out);
    if (rc == -EINVAL && *out == NULL) {
        fail("%s: metadata.name: required", file);
    } else if (*out && !gm_ctl_name_ok((*out)->name)) {
        fail("%s: metadata.name: \"%.64s%s\" is not a valid name (lower-case "
             "letters, digits, '-' and '.', at most 253)",
             file, (*out)->name, strlen((*out)->name) > 64 ? "..." : "");
        gm_policy_free(*out);
        *out = NULL;
    } else if (rc == -EINVAL) {
        fail("%s: %s", file, (*out)->error);
    } else if (rc) {
        fail("%s: %s", file, strerror(-rc));
    } else {
        *doc = obj;
        return 0;
    }
    json_object_put(obj);
    return 1;
}

/* One dry run of the file: a create, or a replace of the version read
 * when the policy exists. 0, or the call's error with *e filled. */
static int dry_run_once(struct gm_cli_conn *c, const struct gm_policy *pol,
                        json_object *doc, struct gm_kube_error *e)
{
    static const char query[] = "?dryRun=All&fieldValidation=Strict";
    char name[600], path[800];
    json_object *live = NULL;
    json_object *body = NULL;
    int rc;

    /* read_policy took only valid names, which always fit. */
    if (gm_url_escape(pol->name, name, sizeof(name)) != 0) {
        *e = (struct gm_kube_error){.err = -E2BIG};
        snprintf(e->message, sizeof(e->message), "metadata.name: too long");
        return -E2BIG;
    }
    snprintf(path, sizeof(path), GM_POLICY_API "/%s", name);
    rc = gm_cli_get(c, path, &live, e);
    if (rc != 0 && e->code != 404)
        return rc;
    if (json_object_deep_copy(doc, &body, NULL) != 0) {
        json_object_put(live);
        *e = (struct gm_kube_error){.err = -ENOMEM};
        snprintf(e->message, sizeof(e->message), "out of memory");
        return -ENOMEM;
    }
    json_object *paused = NULL;
    if (live &&
        json_object_get_boolean(gm_json_get(
            gm_json_get(gm_json_get(live, "spec"), "rollout"), "paused")) &&
        !json_object_object_get_ex(
            gm_json_get(gm_json_get(doc, "spec"), "rollout"), "paused",
            &paused))
        /* Set by `kubectl gpumode pause`, not by the file: kubectl apply
         * merges the file in and keeps it. */
        fprintf(stderr,
                "note: %s is paused in the cluster (spec.rollout.paused, as "
                "kubectl gpumode pause sets it) and this file does not set "
                "paused: kubectl apply keeps it paused, so nothing starts "
                "until kubectl gpumode resume %s; the plan below is as if "
                "resumed\n",
                pol->name, pol->name);
    if (live) {
        /* The version read makes it a replace: the server then judges the
         * file's fields, and every rule of the CRD, as kubectl apply's
         * request would be judged. */
        const char *rv = json_object_get_string(
            gm_json_get(gm_json_get(live, "metadata"), "resourceVersion"));
        json_object *meta = gm_json_get(body, "metadata");
        if (rv && json_object_is_type(meta, json_type_object))
            json_object_object_add(meta, "resourceVersion",
                                   json_object_new_string(rv));
        strncat(path, query, sizeof(path) - strlen(path) - 1);
        rc = gm_cli_update(c, path, body, NULL, e);
    } else {
        snprintf(path, sizeof(path), GM_POLICY_API "%s", query);
        rc = gm_cli_create(c, path, body, NULL, e);
    }
    json_object_put(body);
    json_object_put(live);
    return rc;
}

/* Asks the API server what kubectl apply would be told, with strict field
 * validation. So a misspelt field (which our decoder, like any client,
 * passes over) and every rule of the installed CRD fail the plan as they
 * would fail the apply. A user who may not write policies still gets the
 * plan, with a note that the server did not check the file. Returns 1
 * after printing a rejection, else 0. */
static int server_check(struct gm_cli_conn *c, const char *file,
                        const struct gm_policy *pol, json_object *doc)
{
    struct gm_kube_error e;
    char msg[1024];
    int rc;

    /* 409: the controller wrote the policy's status between our read and
     * the replace, or someone created it; read again. */
    for (int attempt = 0; attempt < 3; attempt++) {
        rc = dry_run_once(c, pol, doc, &e);
        if (rc == 0 || e.code != 409)
            break;
    }
    if (rc == 0)
        return 0;
    /* A 403 that is not RBAC's "cannot <verb>" is admission saying no (a
     * webhook, a ValidatingAdmissionPolicy, a quota): apply would fail. */
    bool rbac = e.code == 403 && strstr(e.message, "is forbidden: User \"") &&
                strstr(e.message, "\" cannot ");
    if (e.code == 400 || e.code == 422 || (e.code == 403 && !rbac)) {
        fail("%s: the API server rejects it: %s", file,
             e.message[0] ? e.message : e.reason);
        return 1;
    }
    if (e.code == 0 && e.err == -ENOMEM) {
        fail("out of memory");
        return 1;
    }
    gm_cli_describe(c, &e, NULL, msg, sizeof(msg));
    fprintf(stderr, "note: the API server did not check %s: %s\n", file, msg);
    return 0;
}

/* The controller's own config (manifests/config.yaml: ConfigMap
 * gpumode-config, key controller.yaml, in --namespace), so the plan reads
 * the ConfigMaps and preset the controller does. Without it the plan uses
 * the defaults, and says why: in *note (len bytes) when there is none
 * (404, no key), in *problem when there is one it could not read or that
 * is not valid (the plan then fails: it may not be the controller's).
 * Each "" otherwise. 0, or 1 after a message (transport, out of memory). */
static int read_controller_config(struct gm_cli_conn *c,
                                  const struct gm_cli_args *a,
                                  struct gm_ctl_config *cfg, char *note,
                                  char *problem, size_t len)
{
    /* A copy: loading the config replaces cfg->namespace. */
    char ns[256];
    char source[300], path[400], msg[1024], err[1024];
    struct gm_kube_error e;
    json_object *cm = NULL;
    static const char fallback[] =
        "planned with the default ConfigMaps and preset";

    note[0] = problem[0] = '\0';
    snprintf(ns, sizeof(ns), "%s",
             a->namespace ? a->namespace : cfg->namespace);
    snprintf(source, sizeof(source), "ConfigMap %s/gpumode-config", ns);
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/configmaps/%s", ns,
             "gpumode-config");
    if (gm_cli_get(c, path, &cm, &e)) {
        gm_cli_describe(c, &e, NULL, msg, sizeof(msg));
        if (e.code == 0) {
            fail("%s", msg);
            return 1;
        }
        if (e.code == 404)
            snprintf(note, len,
                     "the controller's config (%s) was not found: %s "
                     "(--namespace names the controller's)",
                     source, fallback);
        else
            snprintf(problem, len,
                     "the controller's config (%s) could not be read: %s; %s "
                     "(the plan needs get on it)",
                     source, msg, fallback);
        return 0;
    }
    json_object *text = gm_json_get(gm_json_get(cm, "data"), "controller.yaml");
    int rc = 0;
    if (!json_object_is_type(text, json_type_string)) {
        snprintf(note, len,
                 "the controller's config (%s) has no key controller.yaml: %s",
                 source, fallback);
    } else {
        strncat(source, ", key controller.yaml",
                sizeof(source) - strlen(source) - 1);
        rc = gm_ctl_config_load_text(cfg, json_object_get_string(text),
                                     (size_t)json_object_get_string_len(text),
                                     source, err, sizeof(err));
    }
    json_object_put(cm);
    if (rc == -ENOMEM) {
        fail("out of memory");
        return 1;
    }
    if (rc) {
        /* The controller would not start with it (or it is newer than
         * this plugin): plan with the defaults, and fail. */
        gm_ctl_config_free(cfg);
        if (gm_ctl_config_defaults(cfg)) {
            fail("out of memory");
            return 1;
        }
        snprintf(problem, len, "the controller's config is not valid: %s; %s",
                 err, fallback);
    }
    /* In-cluster the controller's namespace is its pod's
     * (--namespace=$(POD_NAMESPACE) in the Deployment), where its config
     * is, whatever the file's namespace field says. */
    char *own = strdup(ns);
    if (own == NULL) {
        fail("out of memory");
        return 1;
    }
    free(cfg->namespace);
    cfg->namespace = own;
    return 0;
}

static int fetch_plan_inputs(struct gm_cli_conn *c, const struct gm_cli_args *a,
                             const struct gm_ctl_config *cfg,
                             struct plan_ctx *p)
{
    struct gm_kube_error e;
    json_object *items = NULL;
    char msg[1024], path[1024];

    if (gm_cli_list(c, GM_POLICY_API, &items, &e)) {
        explain_policy_error(c, &e, NULL);
        return 1;
    }
    size_t n = json_object_array_length(items);
    p->cluster = calloc(n + 1, sizeof(*p->cluster));
    for (size_t i = 0; p->cluster && i < n; i++) {
        struct gm_policy *pol = NULL;
        gm_policy_decode(json_object_array_get_idx(items, i), &pol);
        if (pol && pol->valid)
            p->cluster[p->n_cluster++] = pol;
        else
            gm_policy_free(pol);
    }
    json_object_put(items);
    if (gm_cli_list(c, "/api/v1/nodes", &items, &e)) {
        gm_cli_describe(c, &e, "nodes", msg, sizeof(msg));
        fail("listing nodes: %s", msg);
        return 1;
    }
    n = json_object_array_length(items);
    p->nodes = calloc(n + 1, sizeof(*p->nodes));
    for (size_t i = 0; p->nodes && i < n; i++)
        if (gm_node_from_json(json_object_array_get_idx(items, i),
                              &p->nodes[p->n_nodes]) == 0)
            p->n_nodes++;
    json_object_put(items);
    if (p->cluster == NULL || p->nodes == NULL) {
        fail("out of memory");
        return 1;
    }

    const char *ns = a->mig_ns[0] ? a->mig_ns : cfg->mig_cm.namespace;
    const char *name = a->mig_name[0] ? a->mig_name : cfg->mig_cm.name;
    json_object *cm = NULL;
    snprintf(p->layouts_source, sizeof(p->layouts_source), "ConfigMap %s/%s",
             ns, name);
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/configmaps/%s", ns,
             name);
    if (gm_cli_get(c, path, &cm, &e)) {
        if (e.code == 0) {
            gm_cli_describe(c, &e, NULL, msg, sizeof(msg));
            fail("%s", msg);
            return 1;
        }
        snprintf(p->layouts_error, sizeof(p->layouts_error),
                 "%s: %s (--mig-configmap NS/NAME names another)",
                 p->layouts_source, e.code == 404 ? "not found" : e.message);
    } else {
        gm_layouts_from_configmap(cm, cfg->mig_cm.key, p->layouts_source,
                                  &p->layouts, p->layouts_error,
                                  sizeof(p->layouts_error));
        json_object_put(cm);
    }
    /* Only a 404 says HAMi's ConfigMap is absent; a user who may not read
     * it gets the plan without that note. */
    ns = a->hami_ns[0] ? a->hami_ns : cfg->hami_cm.namespace;
    name = a->hami_name[0] ? a->hami_name : cfg->hami_cm.name;
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/configmaps/%s", ns,
             name);
    cm = NULL;
    if (gm_cli_get(c, path, &cm, &e) && e.code == 404)
        snprintf(p->hami_absent, sizeof(p->hami_absent), "ConfigMap %s/%s", ns,
                 name);
    json_object_put(cm);
    /* The device plugin's configs only when named (--plugin-configmap,
     * else the controller's devicePluginConfigMap): the controller checks
     * them only then. A 404 is a ConfigMap that does not exist (every key
     * missing). */
    ns = a->plugin_name[0] ? a->plugin_ns : cfg->plugin_cm.namespace;
    name = a->plugin_name[0] ? a->plugin_name : cfg->plugin_cm.name;
    if (name && name[0]) {
        snprintf(p->plugin_source, sizeof(p->plugin_source), "ConfigMap %s/%s",
                 ns, name);
        snprintf(path, sizeof(path), "/api/v1/namespaces/%s/configmaps/%s", ns,
                 name);
        cm = NULL;
        if (gm_cli_get(c, path, &cm, &e) && e.code != 404) {
            gm_cli_describe(c, &e, NULL, msg, sizeof(msg));
            fail("reading %s: %s", p->plugin_source, msg);
            return 1;
        }
        int rc = gm_plugin_configs_parse(cm, &p->plugin);
        json_object_put(cm);
        p->have_plugin = true;
        if (rc) {
            fail("out of memory");
            return 1;
        }
    }
    /* PDBs are read across namespaces once; a cluster that forbids it
     * still gets a plan, without the protection column, and a note. */
    if (gm_cli_list(c, "/apis/policy/v1/poddisruptionbudgets", &p->pdbs, &e)) {
        p->pdbs = NULL;
        gm_cli_describe(c, &e, "PodDisruptionBudgets", p->pdbs_unread,
                        sizeof(p->pdbs_unread));
    }
    return 0;
}

static int fetch_pods(struct gm_cli_conn *c, const struct gm_dry_run *run,
                      struct plan_ctx *p)
{
    const char **names;
    size_t n;
    struct gm_kube_error e;

    if (gm_dry_run_switching(run, &names, &n))
        return 1;
    for (size_t i = 0; i < n; i++) {
        char sel[512], esc[1024], path[1200], msg[1024];
        json_object *items = NULL;
        snprintf(sel, sizeof(sel), "spec.nodeName=%s", names[i]);
        gm_url_escape(sel, esc, sizeof(esc));
        snprintf(path, sizeof(path), "/api/v1/pods?fieldSelector=%s", esc);
        if (gm_cli_list(c, path, &items, &e)) {
            gm_cli_describe(c, &e, "pods", msg, sizeof(msg));
            fail("listing pods on %s: %s", names[i], msg);
            free(names);
            return 1;
        }
        size_t m = json_object_array_length(items);
        struct gm_pod **ps =
            realloc(p->pods, (p->n_pods + m + 1) * sizeof(*ps));
        if (ps == NULL) {
            json_object_put(items);
            free(names);
            return 1;
        }
        p->pods = ps;
        for (size_t j = 0; j < m; j++)
            if (gm_pod_from_json(json_object_array_get_idx(items, j),
                                 &p->pods[p->n_pods]) == 0)
                p->n_pods++;
        json_object_put(items);
    }
    free(names);
    return 0;
}

static int cmd_plan(const struct gm_cli_args *a)
{
    struct plan_ctx p = {0};
    struct gm_ctl_config cfg;
    struct gm_cli_conn *c = NULL;
    struct gm_dry_run run = {0};
    int rc = 1;

    /* The file first: a typo should not wait for the network. */
    if (read_policy(a->file, &p.file, &p.file_obj))
        goto out_nocfg;
    if (gm_ctl_config_defaults(&cfg))
        goto out_nocfg;
    char config_note[1600], config_problem[1600];
    if (open_conn(a, &c))
        goto out;
    if (read_controller_config(c, a, &cfg, config_note, config_problem,
                               sizeof(config_note)))
        goto out;
    if (fetch_plan_inputs(c, a, &cfg, &p))
        goto out;
    if (server_check(c, a->file, p.file, p.file_obj))
        goto out;
    struct gm_dry_input in = {
        .policy = p.file,
        .existing = (const struct gm_policy *const *)p.cluster,
        .n_existing = p.n_cluster,
        .nodes = (const struct gm_node *const *)p.nodes,
        .n_nodes = p.n_nodes,
        .layouts = p.layouts,
        .layouts_source = p.layouts_source,
        .layouts_error = p.layouts ? NULL : p.layouts_error,
        .hami_config_absent = p.hami_absent[0] ? p.hami_absent : NULL,
        .plugin_configs = p.have_plugin ? &p.plugin : NULL,
        .plugin_configs_source = p.plugin_source,
        .vgpu_resource = cfg.profile->vgpu_resource,
        .config_note = config_note[0] ? config_note : NULL,
        .config_problem = config_problem[0] ? config_problem : NULL,
        .now = time(NULL),
    };
    /* Thousands of nodes under a small budget take seconds to simulate;
     * Ctrl-C must still stop it. */
    gm_cli_signals_default(c, true);
    int err = gm_dry_run_plan(&in, &run);
    gm_cli_signals_default(c, false);
    if (err) {
        fail("planning: %s", strerror(-err));
        goto out;
    }
    if (fetch_pods(c, &run, &p))
        goto out;
    err = gm_dry_run_pods(&run, p.file, (const struct gm_pod *const *)p.pods,
                          p.n_pods, p.pdbs,
                          p.pdbs_unread[0] ? p.pdbs_unread : NULL,
                          a->namespace ? a->namespace : cfg.namespace);
    if (err) {
        fail("classifying pods: %s", strerror(-err));
        goto out;
    }
    if (a->json) {
        json_object *o = gm_dry_run_json(&run);
        printf("%s\n", json_object_to_json_string_ext(
                           o, JSON_C_TO_STRING_PRETTY |
                                  JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
    } else {
        struct gm_buf b;
        gm_buf_init(&b, OUT_MAX);
        gm_dry_run_render(&run, &b);
        print_buf(&b);
        gm_buf_free(&b);
    }
    /* Problems the cluster would report as Stalled fail the command, so a
     * pipeline can gate on it. */
    rc = run.n_errors > 0 ? 1 : 0;
out:
    gm_ctl_config_free(&cfg);
out_nocfg:
    gm_dry_run_free(&run);
    plan_ctx_free(&p);
    gm_cli_close(c);
    return rc;
}

/* ---- dispatch ---- */

static int cmd_version(const struct gm_cli_args *a)
{
    (void)a;
    printf("kubectl-gpumode %s\n", GM_VERSION);
    return 0;
}

static int cmd_help(const struct gm_cli_args *a)
{
    (void)a;
    fputs(gm_cli_usage(), stdout);
    return 0;
}

static const struct {
    enum gm_cli_cmd cmd;
    int (*run)(const struct gm_cli_args *a);
} handlers[] = {
    {GM_CLI_HELP, cmd_help},       {GM_CLI_STATUS, cmd_status},
    {GM_CLI_PLAN, cmd_plan},       {GM_CLI_RETRY, cmd_retry},
    {GM_CLI_PAUSE, cmd_pause},     {GM_CLI_RESUME, cmd_resume},
    {GM_CLI_VERSION, cmd_version},
};

int main(int argc, char **argv)
{
    struct gm_cli_args a;
    char err[512];

    if (gm_cli_parse_args(argc, argv, &a, err, sizeof(err))) {
        fprintf(stderr, "error: %s\nsee: kubectl gpumode --help\n", err);
        return EXIT_USAGE;
    }
    for (size_t i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++) {
        if (handlers[i].cmd != a.cmd)
            continue;
        int rc = handlers[i].run(&a);
        /* Stopped by Ctrl-C or SIGTERM: 130 or 143, as a shell reports
         * it, whatever the command made of the interrupted calls (plan
         * goes on without the server's check, and would say 0). Ending
         * --watch so is how it is meant to end (0). */
        int sig = gm_cli_was_interrupted();
        if (sig && !(a.cmd == GM_CLI_STATUS && a.watch))
            return 128 + sig;
        /* Output that did not get out (a full disk, a closed pipe) is a
         * failure, or `plan -o json > file` would succeed truncated. */
        if ((fflush(stdout) != 0 || ferror(stdout)) && rc == 0) {
            fprintf(stderr, "error: writing the output: %s\n", strerror(errno));
            return 1;
        }
        return rc;
    }
    return EXIT_USAGE;
}
