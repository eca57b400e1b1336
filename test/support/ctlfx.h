/* The controller (gm_ctl) with real libcurl and libuv against the test
 * server: the fixture of tests that drive the controller's caches, queue
 * and switches end to end. */
#ifndef GM_TEST_CTLFX_H
#define GM_TEST_CTLFX_H

#include <stdbool.h>
#include <uv.h>

#include "app/config.h"
#include "app/controller.h"
#include "kube/client.h"
#include "kube/config.h"
#include "nodeswitch/record.h"
#include "httpd.h"

struct th_ctl {
    uv_loop_t loop;
    struct th_server *srv;
    struct gm_kube_config kcfg; /* server owned */
    struct gm_kube *k;          /* owned */
    struct gm_ctl_config cfg;   /* defaults */
    struct gm_ctl *ctl;         /* owned; started and leading */
};

/* Starts the loop, the server (h answers with ud), the client and the
 * controller with the default config; fails the test on any error. The
 * loop has not run yet when it returns. */
void th_ctl_start(struct th_ctl *c, th_handler h, void *ud);
/* Frees the controller, the client and the server, runs the loop dry and
 * closes it: the caller closes its own handles on the loop first. */
void th_ctl_stop(struct th_ctl *c);

/* The record of a full -> vgpu switch of policy "p", started now, that
 * cordoned its node, in phase with settings (may be NULL). Caller frees. */
char *th_ctl_switch_record(enum gm_phase phase, const char *settings);
/* The same in phase with no settings, as a retry (attempt 2) after an
 * earlier attempt changed the hardware when reconfigured, and rolling back
 * when rolling_back. Caller frees. */
char *th_ctl_switch_record_retry(enum gm_phase phase, bool reconfigured,
                                 bool rolling_back);

/* Answers a node LIST with gpu-001 in full mode, cordoned, mid-switch:
 * record is its gpumode.io/switch annotation. */
void th_ctl_respond_switching_node(struct th_conn *c, const char *record);
/* The same with labels and annotations (JSON objects, or NULL) added. */
void th_ctl_respond_node_with(struct th_conn *c, const char *record,
                              const char *labels, const char *annotations);
/* The same with status.nodeInfo.bootID boot_id (and, as always, no Ready
 * condition: not Ready). */
void th_ctl_respond_booted_node(struct th_conn *c, const char *record,
                                const char *boot_id);
/* One node's switch against the test server: gpu-001 is listed cordoned
 * (unless uncordoned) with record (and a gpumode.io/retry mark when
 * retry), everything else as
 * th_ctl_respond_default answers, and the body of the node's first PATCH is
 * kept. Tests embed it first in their own fixture and pass
 * th_node_fx_handler to th_ctl_start with the fixture as ud. */
struct th_node_fx {
    struct th_ctl c;
    char *record; /* owned: the node's switch annotation */
    bool retry;
    bool uncordoned;     /* listed schedulable: a person uncordoned it */
    const char *boot_id; /* borrowed: listed status.nodeInfo.bootID, or NULL */
    const char *labels;  /* borrowed JSON object added to the labels */
    const char *annotations;  /* borrowed JSON object added to annotations */
    const char *allocatable;  /* borrowed JSON object merged into allocatable */
    char *patch;              /* owned: the first node patch's body, or NULL */
    int done;                 /* set once a node patch came */
    int patches;              /* node patches that came */
    const char *patch_answer; /* borrowed body they are answered; NULL: {} */
};
void th_node_fx_handler(void *ud, const struct th_req *r, struct th_conn *c);
/* Stops the controller and frees record and patch. */
void th_node_fx_stop(struct th_node_fx *f);

/* The rest of the API server for these tests: watches open and quiet,
 * events accepted, ConfigMap lists empty, any other list an empty list. */
void th_ctl_respond_default(const struct th_req *r, struct th_conn *c);

/* A policy_for that gives the policy as the rollout layer would for vgpu
 * with splitCount 4 (data and name unused). */
int th_ctl_policy_split4(void *data, const char *name,
                         struct gm_switch_policy *o);

/* The same for n nodes, gpu-001 to gpu-<n>, each with record. */
void th_ctl_respond_switching_nodes(struct th_conn *c, const char *record,
                                    int n);

#endif
