/* gpumode-controller: watches GPUModePolicies and nodes and switches nodes
 * between full, vgpu and mig modes (SPEC.md). One libuv loop runs it all. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "app/config.h"
#include "app/controller.h"
#include "app/options.h"
#include "common/log.h"
#include "kube/client.h"
#include "kube/config.h"

#define SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

struct app {
    uv_loop_t *loop;
    struct gm_options opts;
    struct gm_ctl_config cfg;
    struct gm_kube_config *kcfg;
    struct gm_kube *kube;
    struct gm_ctl *ctl;
    uv_signal_t sigterm, sigint;
    int exit_code;
};

static void on_signal(uv_signal_t *h, int signum)
{
    struct app *a = h->data;
    gm_info("received %s: stopping", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    /* All progress is already on the nodes; closing the handles lets the
     * loop end once in-flight writes complete or are cancelled. */
    uv_signal_stop(&a->sigterm);
    uv_signal_stop(&a->sigint);
    uv_stop(a->loop);
}

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
    struct gm_kube_opts ko = {.qps = a.cfg.qps, .burst = a.cfg.burst};
    int rc = gm_kube_new(a.loop, a.kcfg, &ko, &a.kube);
    if (rc == 0)
        rc = gm_ctl_new(a.loop, a.kube, &a.cfg, &a.ctl);
    if (rc == 0) {
        a.ctl->dry_run = a.opts.dry_run;
        rc = gm_ctl_start(a.ctl);
    }
    if (rc) {
        gm_error("cannot start: %s", strerror(-rc));
        a.exit_code = 1;
    } else {
        uv_signal_init(a.loop, &a.sigterm);
        uv_signal_init(a.loop, &a.sigint);
        a.sigterm.data = a.sigint.data = &a;
        uv_signal_start(&a.sigterm, on_signal, SIGTERM);
        uv_signal_start(&a.sigint, on_signal, SIGINT);
        gm_info("gpumode-controller %s started (namespace %s, profile %s%s)",
                GM_VERSION, a.cfg.namespace, a.cfg.profile_name,
                a.opts.dry_run ? ", dry run" : "");
        uv_run(a.loop, UV_RUN_DEFAULT);
        uv_close((uv_handle_t *)&a.sigterm, NULL);
        uv_close((uv_handle_t *)&a.sigint, NULL);
    }
    gm_ctl_free(a.ctl);
    gm_kube_free(a.kube);
    /* Let close callbacks and cancelled calls run before the loop goes. */
    uv_run(a.loop, UV_RUN_NOWAIT);
    uv_run(a.loop, UV_RUN_NOWAIT);
    gm_kube_config_free(a.kcfg);
    gm_ctl_config_free(&a.cfg);
    return a.exit_code;
}
