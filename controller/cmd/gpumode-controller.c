/* gpumode-controller: watches GPUModePolicies and nodes and switches nodes
 * between full, vgpu and mig modes (SPEC.md). One libuv loop runs it all:
 * the caches, the work queue, leader election, metrics and health. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "app/config.h"
#include "app/controller.h"
#include "app/observe.h"
#include "app/options.h"
#include "app/rollout.h"
#include "common/log.h"
#include "kube/client.h"
#include "kube/config.h"
#include "server/events.h"
#include "server/httpserver.h"
#include "server/leader.h"
#include "server/metrics.h"
#include "server/shutdown.h"

#define SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

/* A lease request that takes longer fails and is tried again within the
 * renew deadline (10 s), instead of holding the elector past it. */
#define LEASE_REQUEST_TIMEOUT_MS 4000

struct app {
    uv_loop_t *loop;
    struct gm_options opts;
    struct gm_ctl_config cfg;
    struct gm_kube_config *kcfg;
    struct gm_kube *kube;
    /* Leader election's own client: its renewals must not queue behind a
     * rollout's requests in the shared rate limiter (client-go gives the
     * elector its own client too), and may not take longer than a
     * fraction of the renew deadline. */
    struct gm_kube *lease_kube;
    struct gm_metrics *metrics;
    struct gm_recorder *events;
    struct gm_leader *leader;
    struct gm_httpd *metrics_srv;
    struct gm_httpd *health_srv;
    struct gm_ctl *ctl;
    struct gm_rollout *rollout;
    struct gm_shutdown *shutdown;
    /* Also the Events' reportingInstance, which events.k8s.io/v1 caps at
     * 128 characters: a longer POD_NAME gives way to hostname + random. */
    char identity[128];
    int exit_code;
};

/* ---- leadership ---- */

static void on_lead(void *data)
{
    struct app *a = data;
    gm_info("became the leader (%s)", a->identity);
    gm_ctl_lead(a->ctl);
}

static void on_lost(void *data)
{
    struct app *a = data;
    /* Another replica may act from now on: stop at once, with nothing half
     * written that the node records do not already describe, and exit so
     * the pod restarts clean. */
    gm_ctl_stop_work(a->ctl);
    gm_error("lost the leader lease; exiting");
    fflush(stderr);
    _exit(1);
}

/* ---- health ---- */

static int ready(void *data, char *reason, size_t len)
{
    struct app *a = data;
    if (!gm_ctl_synced(a->ctl) || !gm_rollout_synced(a->rollout)) {
        snprintf(reason, len, "caches not synced");
        return 0;
    }
    return 1;
}

/* ---- shutdown ---- */

static void stop_new_work(void *data)
{
    struct app *a = data;
    gm_ctl_stop_work(a->ctl);
}

static size_t in_flight(void *data)
{
    struct app *a = data;
    return gm_http_pending(gm_kube_http(a->kube));
}

struct release_ctx {
    void (*done)(void *arg);
    void *arg;
};

static void released(void *data, int err)
{
    struct release_ctx *r = data;
    if (err && err != -ENOTCONN) /* -ENOTCONN: it was not ours */
        gm_warn("lease release: %s", strerror(-err));
    r->done(r->arg);
    free(r);
}

static int release(void *data, void (*done)(void *arg), void *arg)
{
    struct app *a = data;
    struct release_ctx *r;
    /* Called whether or not we lead: a standby must stop electing too, and
     * release what a takeover write in flight may still win. */
    if (a->leader == NULL)
        return 1;
    r = malloc(sizeof(*r));
    if (r == NULL)
        return 1;
    r->done = done;
    r->arg = arg;
    if (gm_leader_release(a->leader, released, r) != 0) {
        free(r);
        return 1;
    }
    return 0;
}

static void finish(void *data)
{
    struct app *a = data;
    uv_stop(a->loop);
}

/* ---- start-up ---- */

static int load_kube_config(struct app *a)
{
    char *err = NULL;
    int rc;
    if (a->opts.kubeconfig)
        rc = gm_kubeconfig_load(a->opts.kubeconfig, a->opts.context, &a->kcfg,
                                &err);
    else
        rc = gm_kubeconfig_in_cluster(SA_DIR, &a->kcfg, &err);
    if (rc) {
        gm_error("%s", err ? err : "cannot load cluster configuration");
        free(err);
    }
    return rc;
}

static int serve(struct app *a, const char *addr, unsigned endpoints,
                 struct gm_httpd **out)
{
    if (addr == NULL || strcmp(addr, "0") == 0 || addr[0] == '\0')
        return 0;
    struct gm_httpd_opts o = {.addr = addr,
                              .endpoints = endpoints,
                              .metrics = a->metrics,
                              .ready = ready,
                              .ready_data = a};
    int rc = gm_httpd_start(a->loop, &o, out);
    if (rc)
        gm_error("cannot serve on %s: %s", addr, strerror(-rc));
    return rc;
}

static int start(struct app *a)
{
    int rc;
    struct gm_kube_opts ko = {.qps = a->cfg.qps,
                              .burst = a->cfg.burst,
                              .stream_idle_s = a->cfg.watch_idle_s,
                              .on_response = gm_obs_api_response};

    /* No fallback: a name shared by replicas (gpumode-<pid>, pid 1 in
     * every container) would let each take the Lease as its own. */
    rc = gm_leader_default_identity(a->identity, sizeof(a->identity));
    if (rc) {
        gm_error("no leader election identity fits: %s", strerror(-rc));
        return rc;
    }
    rc = gm_metrics_new(&a->metrics);
    if (rc == 0)
        rc = gm_metrics_define_gpumode(a->metrics, GM_VERSION);
    if (rc)
        return rc;
    ko.on_response_data = a->metrics;
    rc = gm_kube_new(a->loop, a->kcfg, &ko, &a->kube);
    if (rc)
        return rc;
    struct gm_recorder_opts ro = {.identity = a->identity};
    rc = gm_recorder_new(a->loop, a->kube, &ro, &a->events);
    if (rc == 0)
        rc = gm_ctl_new(a->loop, a->kube, &a->cfg, &a->ctl);
    if (rc)
        return rc;
    a->ctl->dry_run = a->opts.dry_run;
    a->ctl->metrics = a->metrics;
    a->ctl->events = a->events;
    rc = gm_rollout_start(a->ctl, &a->rollout);
    if (rc == 0)
        rc = gm_ctl_start(a->ctl);
    if (rc == 0)
        rc = gm_obs_start(a->ctl, a->rollout, 5000);
    if (rc == 0 && a->opts.metrics_addr && a->opts.health_addr &&
        strcmp(a->opts.metrics_addr, a->opts.health_addr) == 0)
        rc = serve(a, a->opts.metrics_addr, GM_HTTPD_METRICS | GM_HTTPD_HEALTH,
                   &a->metrics_srv);
    else if (rc == 0) {
        rc = serve(a, a->opts.metrics_addr, GM_HTTPD_METRICS, &a->metrics_srv);
        if (rc == 0)
            rc = serve(a, a->opts.health_addr, GM_HTTPD_HEALTH, &a->health_srv);
    }
    if (rc)
        return rc;
    struct gm_shutdown_hooks hooks = {.stop_new_work = stop_new_work,
                                      .in_flight = in_flight,
                                      .release = release,
                                      .finish = finish,
                                      .data = a};
    rc = gm_shutdown_new(a->loop, &hooks, &a->shutdown);
    if (rc)
        return rc;
    if (!a->opts.leader_elect) {
        /* It acts as the leader does, and says so: an alert on no
         * replica leading must not fire on a single replica. */
        gm_metrics_gauge_set(a->metrics, GM_METRIC_LEADER, 1, NULL);
        gm_ctl_lead(a->ctl);
        return 0;
    }
    struct gm_leader_opts lo = {.namespace = a->cfg.namespace,
                                .identity = a->identity,
                                .on_started_leading = on_lead,
                                .on_lost = on_lost,
                                .data = a,
                                .metrics = a->metrics};
    struct gm_kube_opts lko = {.timeout_ms = LEASE_REQUEST_TIMEOUT_MS,
                               .on_response = gm_obs_api_response,
                               .on_response_data = a->metrics};
    rc = gm_kube_new(a->loop, a->kcfg, &lko, &a->lease_kube);
    if (rc == 0)
        rc = gm_leader_new(a->loop, a->lease_kube, &lo, &a->leader);
    if (rc == 0)
        rc = gm_leader_start(a->leader);
    return rc;
}

static void cleanup(struct app *a)
{
    gm_shutdown_free(a->shutdown);
    gm_leader_free(a->leader);
    gm_httpd_close(a->metrics_srv);
    gm_httpd_close(a->health_srv);
    gm_obs_stop(a->ctl);
    gm_rollout_free(a->rollout);
    gm_ctl_free(a->ctl);
    gm_recorder_free(a->events);
    gm_kube_free(a->lease_kube);
    gm_kube_free(a->kube);
    /* Let close callbacks and cancelled calls run before the loop goes. */
    uv_run(a->loop, UV_RUN_NOWAIT);
    uv_run(a->loop, UV_RUN_NOWAIT);
    gm_metrics_free(a->metrics);
    gm_kube_config_free(a->kcfg);
    gm_ctl_config_free(&a->cfg);
}

int main(int argc, char **argv)
{
    struct app a;
    char err[512];

    memset(&a, 0, sizeof(a));
    if (gm_options_parse(argc, argv, &a.opts, err, sizeof(err)) != 0) {
        fprintf(stderr, "gpumode-controller: %s\n", err);
        return 2;
    }
    if (a.opts.help) {
        gm_options_usage("gpumode-controller");
        return 0;
    }
    if (a.opts.version) {
        printf("gpumode-controller %s\n", GM_VERSION);
        return 0;
    }
    gm_log_setup(a.opts.log_level, a.opts.log_json);
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    if (gm_ctl_config_defaults(&a.cfg) != 0)
        return 1;
    if (a.opts.config &&
        gm_ctl_config_load(&a.cfg, a.opts.config, err, sizeof(err)) != 0) {
        gm_error("%s", err);
        gm_ctl_config_free(&a.cfg);
        return 2;
    }
    if (a.opts.namespace) {
        free(a.cfg.namespace);
        a.cfg.namespace = strdup(a.opts.namespace);
    }
    if (load_kube_config(&a) != 0) {
        gm_ctl_config_free(&a.cfg);
        return 2;
    }
    a.loop = uv_default_loop();
    int rc = start(&a);
    if (rc) {
        gm_error("cannot start: %s", strerror(-rc));
        a.exit_code = 1;
    } else {
        gm_info("gpumode-controller %s started as %s (namespace %s, profile "
                "%s%s%s)",
                GM_VERSION, a.identity, a.cfg.namespace, a.cfg.profile_name,
                a.opts.leader_elect ? ", leader election" : "",
                a.opts.dry_run ? ", dry run" : "");
        uv_run(a.loop, UV_RUN_DEFAULT);
        gm_info("stopped");
    }
    cleanup(&a);
    return a.exit_code;
}
