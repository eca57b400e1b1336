/* Hardware an earlier attempt changed is never laid back under workloads.
 * A retry of a held node drains it again; if that drain fails, the pods it
 * could not move are still there, so the node is held as it was rather
 * than rolled back under them. A rollback of such hardware (a released
 * node, a retry whose policy went) drains before the GPUs go back: a
 * person may have uncordoned the held node, and pods landed.
 *
 * A rollback that never touched the GPUs puts back a node as it was, and
 * takes what it advertises as it is.
 *
 * Real libcurl and libuv against the test server, which plays the API
 * server: one node in Draining of a full -> vgpu switch, cordoned by
 * gpumode, with one GPU pod (bare, so the drain refuses it, or owned by a
 * ReplicaSet, so it is evicted) or none; or in its rollback's Verifying,
 * with the full mode's device plugin pod. */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/json.h"
#include "common/strsel.h"
#include "nodeswitch/record.h"
#include "nodeswitch/switch.h"
#include "support/ctlfx.h"

enum pod {
    NO_POD,
    BARE_POD,
    OWNED_POD,
    OWNED_CPU_POD,
    OWNED_AND_BARE,
    PLUGIN_POD
};

struct fx {
    struct th_node_fx n; /* first: the handler's ud */
    enum pod pod;
    int evictions;             /* eviction POSTs seen */
    int evicted;               /* set once an eviction POST came */
    bool gone;                 /* the pod went: lists leave it out */
    struct th_conn *pod_watch; /* the node's pod watch, or NULL */
};

static const char pod_fmt[] =
    "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"10\"},"
    "\"items\":[{\"metadata\":{\"name\":\"work-1\",\"namespace\":"
    "\"default\",\"uid\":\"u1\",\"resourceVersion\":\"8\","
    "\"labels\":{\"app\":\"work\"}%s},"
    "\"spec\":{\"nodeName\":\"gpu-001\",\"containers\":[{\"name\":\"c\""
    "%s}]},\"status\":{\"phase\":\"Running\"}}]}";

/* Two GPU pods: one a ReplicaSet owns (evictable), one bare. */
static const char two_pods[] =
    "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"10\"},"
    "\"items\":[{\"metadata\":{\"name\":\"serve-1\",\"namespace\":"
    "\"default\",\"uid\":\"u2\",\"resourceVersion\":\"9\","
    "\"ownerReferences\":[{\"kind\":\"ReplicaSet\",\"name\":\"serve\","
    "\"controller\":true}]},"
    "\"spec\":{\"nodeName\":\"gpu-001\",\"containers\":[{\"name\":\"c\","
    "\"resources\":{\"limits\":{\"nvidia.com/gpu\":\"1\"}}}]},"
    "\"status\":{\"phase\":\"Running\"}},"
    "{\"metadata\":{\"name\":\"work-1\",\"namespace\":"
    "\"default\",\"uid\":\"u1\",\"resourceVersion\":\"8\"},"
    "\"spec\":{\"nodeName\":\"gpu-001\",\"containers\":[{\"name\":\"c\","
    "\"resources\":{\"limits\":{\"nvidia.com/gpu\":\"1\"}}}]},"
    "\"status\":{\"phase\":\"Running\"}}]}";

/* The full mode's device plugin, Running and Ready. */
static const char plugin_pod[] =
    "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"10\"},"
    "\"items\":[{\"metadata\":{\"name\":\"nvidia-device-plugin-x\","
    "\"namespace\":\"gpu-operator\",\"uid\":\"u3\",\"resourceVersion\":\"7\","
    "\"labels\":{\"app\":\"nvidia-device-plugin-daemonset\"}},"
    "\"spec\":{\"nodeName\":\"gpu-001\",\"containers\":[{\"name\":\"p\"}]},"
    "\"status\":{\"phase\":\"Running\",\"conditions\":[{\"type\":"
    "\"Ready\",\"status\":\"True\"}]}}]}";

/* The policy behind the record: when set, it evicts every pod (not only
 * GPU ones) and waits, with no limit, for pods labelled app=work to
 * complete, as waitForCompletion without timeoutSeconds does. */
static struct gm_strsel *wait_work;

/* When set, the answer to every eviction: an admission webhook's 403. */
static bool evict_refused;

/* When set, the node's pods may not be listed (403), and the drain and
 * the GPU clients time out after 1 s. */
static bool pods_refused;

/* When set, the policy's drain.gracePeriodSeconds is grace; the last
 * eviction's body is kept in evicted_body (owned). */
static bool set_grace;
static long grace;
static char *evicted_body;

static int policy_for(void *data, const char *name, struct gm_switch_policy *o)
{
    (void)data;
    (void)name;
    if (pods_refused)
        o->drain.timeout_s = 1;
    if (set_grace)
        o->drain.grace_s = grace;
    if (wait_work) {
        o->drain.gpu_pods_only = false;
        o->drain.wait_selector = wait_work;
        o->drain.wait_timeout_s = 0;
    }
    return 0;
}

static void handler(void *ud, const struct th_req *r, struct th_conn *c)
{
    struct fx *f = ud;
    if (pods_refused && strstr(r->path, "fieldSelector=spec.nodeName")) {
        th_respond(c, 403, NULL,
                   "{\"kind\":\"Status\",\"status\":\"Failure\","
                   "\"reason\":\"Forbidden\",\"code\":403,\"message\":"
                   "\"pods is forbidden: User \\\"gpumode\\\" cannot list "
                   "resource \\\"pods\\\"\"}");
        return;
    }
    if (strstr(r->path, "fieldSelector=spec.nodeName") &&
        strstr(r->path, "watch=1")) {
        th_stream_start(c, 200); /* open, quiet until the pod goes */
        f->pod_watch = c;
        return;
    }
    if (f->pod != NO_POD && !f->gone &&
        strstr(r->path, "fieldSelector=spec.nodeName")) {
        if (f->pod == OWNED_AND_BARE || f->pod == PLUGIN_POD) {
            th_respond(c, 200, NULL,
                       f->pod == PLUGIN_POD ? plugin_pod : two_pods);
            return;
        }
        char body[1024];
        snprintf(body, sizeof(body), pod_fmt,
                 f->pod != BARE_POD
                     ? ",\"ownerReferences\":[{\"kind\":\"ReplicaSet\","
                       "\"name\":\"work\",\"controller\":true}]"
                     : "",
                 f->pod != OWNED_CPU_POD
                     ? ",\"resources\":{\"limits\":{\"nvidia.com/gpu\":\"1\"}}"
                     : "");
        th_respond(c, 200, NULL, body);
        return;
    }
    if (strcmp(r->method, "POST") == 0 && strstr(r->path, "/eviction")) {
        f->evictions++;
        free(evicted_body);
        evicted_body = r->body ? strdup(r->body) : NULL;
        if (evict_refused) {
            th_respond(c, 403, NULL,
                       "{\"kind\":\"Status\",\"status\":\"Failure\","
                       "\"reason\":\"Forbidden\",\"code\":403,\"message\":"
                       "\"admission webhook \\\"no-evict.example.com\\\" "
                       "denied the request: GPU jobs may not be evicted\"}");
            return;
        }
        f->evicted = 1;
        th_respond(c, 201, NULL,
                   "{\"kind\":\"Status\",\"status\":\"Success\"}");
        return;
    }
    th_node_fx_handler(ud, r, c);
}

/* What one run did: the first node patch (p and its record rec, when
 * patched), the evictions sent and, for run_evicted, whether the pod had
 * gone when that patch came. */
struct outcome {
    json_object *p; /* owned or NULL */
    struct gm_switch_record rec;
    int evictions;
    bool pod_gone;
};

/* Starts the controller on the node in Draining (attempt 2 after a
 * hardware change when reconfigured; rolling back when back) with pod on
 * it; the loop has not run yet. */
static void start(struct fx *f, bool reconfigured, bool back, enum pod pod)
{
    memset(f, 0, sizeof(*f));
    f->pod = pod;
    f->n.record =
        th_ctl_switch_record_retry(GM_PHASE_DRAIN, reconfigured, back);
    th_ctl_start(&f->n.c, handler, f);
    f->n.c.ctl->policy_for = policy_for;
}

/* Takes what the run did into o and stops the controller. */
static void finish(struct fx *f, struct outcome *o)
{
    char err[256];
    memset(o, 0, sizeof(*o));
    o->evictions = f->evictions;
    o->pod_gone = f->gone;
    if (f->n.patch) {
        o->p = json_tokener_parse(f->n.patch);
        assert_non_null(o->p);
        const char *r = json_object_get_string(gm_json_get(
            gm_json_get(gm_json_get(o->p, "metadata"), "annotations"),
            GM_ANN_SWITCH));
        assert_non_null(r);
        assert_int_equal(gm_record_parse(r, &o->rec, err, sizeof(err)), 0);
    }
    th_node_fx_stop(&f->n);
}

/* Runs the node in Draining as start says until the first node patch (or
 * 5 s). Free with outcome_free. */
static void run(struct outcome *o, bool reconfigured, bool back, enum pod pod)
{
    struct fx f;
    start(&f, reconfigured, back, pod);
    th_run_until(&f.n.c.loop, &f.n.done, 5000);
    finish(&f, o);
}

/* The pod work-1 is deleted (evicted, its containers stopped): the API
 * server tells the node's pod watch, and lists leave it out. */
static void pod_deleted(struct fx *f)
{
    static const char ev[] =
        "{\"type\":\"DELETED\",\"object\":{\"kind\":\"Pod\","
        "\"metadata\":{\"name\":\"work-1\",\"namespace\":\"default\","
        "\"uid\":\"u1\",\"resourceVersion\":\"11\"},"
        "\"spec\":{\"nodeName\":\"gpu-001\"}}}\n";
    f->gone = true;
    th_stream_write(f->pod_watch, ev, strlen(ev));
}

/* Runs the rollback of changed hardware (attempt 2, rolling back) with
 * the GPU pod work-1, which its drain evicts, on the node: until the
 * eviction, then 1.5 s more with the pod still listed (passes of the
 * drain run on the eviction's answer and each second); unless a node
 * patch came by then, the pod goes (pod_deleted) and the run goes on
 * until the first node patch (or 5 s). o->pod_gone says whether that
 * patch came after the pod went. Free with outcome_free. */
static void run_evicted(struct outcome *o)
{
    struct fx f;
    start(&f, true, true, OWNED_POD);
    th_run_until(&f.n.c.loop, &f.evicted, 5000);
    if (f.evicted)
        th_run_until(&f.n.c.loop, &f.n.done, 1500);
    if (f.evicted && !f.n.done && f.pod_watch) {
        pod_deleted(&f);
        th_run_until(&f.n.c.loop, &f.n.done, 5000);
    }
    finish(&f, o);
}

static void outcome_free(struct outcome *o)
{
    gm_record_clear(&o->rec);
    json_object_put(o->p);
}

static const char *label(json_object *p, const char *key)
{
    return json_object_get_string(
        gm_json_get(gm_json_get(gm_json_get(p, "metadata"), "labels"), key));
}

/* The retry's drain fails on a pod it may not evict: held, not rolled
 * back, still cordoned, the message saying why. */
static void test_retry_drain_failure_holds(void **state)
{
    (void)state;
    struct outcome o;
    run(&o, true, false, BARE_POD);
    assert_non_null(o.p);
    assert_int_equal(o.rec.phase, GM_PHASE_FAILED);
    assert_false(o.rec.rolling_back);
    assert_true(o.rec.reconfigured);
    assert_string_equal(o.rec.reason, "DrainBlocked");
    assert_non_null(strstr(o.rec.message, "default/work-1"));
    assert_non_null(strstr(o.rec.message, "not laid back under the pods"));
    assert_string_equal(label(o.p, GM_LABEL_STATE), "failed");
    assert_null(gm_json_get(o.p, "spec")); /* stays cordoned */
    assert_int_equal(o.evictions, 0);
    outcome_free(&o);
}

/* As kubectl drain does, every pod is checked before any is evicted: a
 * pod the drain may not move fails the switch with no workload evicted
 * for it, whichever order the pods come in. */
static void test_blocked_pod_fails_before_any_eviction(void **state)
{
    (void)state;
    struct outcome o;
    run(&o, false, false, OWNED_AND_BARE);
    assert_int_equal(o.evictions, 0);
    assert_non_null(o.p);
    assert_string_equal(o.rec.reason, "DrainBlocked");
    assert_non_null(strstr(o.rec.message, "default/work-1"));
    outcome_free(&o);
}

/* An eviction refused (an admission webhook, RBAC without
 * pods/eviction) fails the drain, naming the refusal, as kubectl drain
 * does: asked again it would only hold the node cordoned until the
 * timeout, or for ever without one. */
static void test_refused_eviction_fails_the_drain(void **state)
{
    (void)state;
    struct outcome o;
    evict_refused = true;
    run(&o, false, false, OWNED_POD);
    evict_refused = false;
    assert_int_equal(o.evictions, 1);
    assert_non_null(o.p);
    assert_string_equal(o.rec.reason, "EvictionFailed");
    assert_non_null(strstr(o.rec.message,
                           "eviction of default/work-1 refused: Forbidden: "
                           "admission webhook"));
    outcome_free(&o);
}

/* A first attempt's drain failure changed nothing on the GPUs: it rolls
 * back as before (the old clients start again, then the uncordon). */
static void test_first_drain_failure_rolls_back(void **state)
{
    (void)state;
    struct outcome o;
    run(&o, false, false, BARE_POD);
    assert_non_null(o.p);
    assert_int_equal(o.rec.phase, GM_PHASE_START_CLIENTS);
    assert_true(o.rec.rolling_back);
    assert_string_equal(o.rec.reason, "DrainBlocked");
    assert_null(strstr(o.rec.message, "not laid back"));
    outcome_free(&o);
}

/* The node's pods cannot be listed (RBAC narrowed: 403). The drain
 * cannot tell whether a pod is left, so it says why in the status line
 * and, past drain.timeoutSeconds, fails (DrainTimeout, quoting the API
 * server) and rolls back, rather than hold the node cordoned for ever
 * with no word. So do the phases that wait for the GPU clients. */
static void test_unlistable_pods_fail_at_the_timeout(void **state)
{
    (void)state;
    struct outcome drain, clients;
    pods_refused = true;
    run(&drain, false, false, NO_POD);

    /* Past clientsTimeoutSeconds (1 s here), stopping the clients fails
     * the same way. */
    struct fx f;
    memset(&f, 0, sizeof(f));
    f.n.record =
        th_ctl_switch_record_retry(GM_PHASE_STOP_CLIENTS, false, false);
    f.n.labels = "{\"nvidia.com/gpu.deploy.device-plugin\":\"false\","
                 "\"nvidia.com/vgpu.deploy.device-plugin\":\"false\","
                 "\"nvidia.com/gpu.deploy.gpu-feature-discovery\":\"false\","
                 "\"nvidia.com/gpu.deploy.dcgm-exporter\":\"false\","
                 "\"nvidia.com/gpu.deploy.dcgm\":\"false\","
                 "\"nvidia.com/gpu.deploy.mig-manager\":\"false\"}";
    th_ctl_start(&f.n.c, handler, &f);
    f.n.c.ctl->policy_for = policy_for;
    f.n.c.cfg.clients_timeout_s = 1;
    th_run_until(&f.n.c.loop, &f.n.done, 5000);
    finish(&f, &clients);
    pods_refused = false;

    assert_non_null(drain.p);
    assert_true(drain.rec.rolling_back);
    assert_string_equal(drain.rec.reason, "DrainTimeout");
    assert_non_null(strstr(drain.rec.message, "the node's pods could not be "
                                              "listed in 1s: "));
    assert_non_null(strstr(drain.rec.message, "cannot list resource"));
    assert_non_null(clients.p);
    assert_string_equal(clients.rec.reason, "ClientsStuck");
    assert_non_null(strstr(clients.rec.message, "cannot list resource"));
    outcome_free(&drain);
    outcome_free(&clients);
}

/* drain.gracePeriodSeconds 0 is asked as 1: with 0 the API server
 * removes the pod at once, while its containers may still hold a GPU.
 * Other values, and -1 (the pod's own: none sent), are asked as they
 * are. */
static void test_grace_zero_is_asked_as_one(void **state)
{
    (void)state;
    static const struct {
        long grace;
        const char *want; /* in the eviction's body; NULL: no grace */
    } cases[] = {
        {0, "\"gracePeriodSeconds\":1"},
        {30, "\"gracePeriodSeconds\":30"},
        {-1, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct outcome o;
        struct fx f;
        set_grace = true;
        grace = cases[i].grace;
        start(&f, false, false, OWNED_POD);
        th_run_until(&f.n.c.loop, &f.evicted, 5000);
        finish(&f, &o);
        set_grace = false;
        assert_non_null(evicted_body);
        if (cases[i].want)
            assert_non_null(strstr(evicted_body, cases[i].want));
        else
            assert_null(strstr(evicted_body, "gracePeriodSeconds"));
        free(evicted_body);
        evicted_body = NULL;
        outcome_free(&o);
    }
}

/* The rollback of changed hardware evicts the GPU pod it finds before
 * anything else: no patch moves it on while the pod is there. Once the
 * pod is gone it stops the GPU clients and goes on to lay the GPUs back. */
static void test_rollback_evicts_first(void **state)
{
    (void)state;
    struct outcome o;
    run_evicted(&o);
    assert_int_equal(o.evictions, 1);
    assert_true(o.pod_gone); /* no node patch while the pod was listed */
    assert_non_null(o.p);
    assert_int_equal(o.rec.phase, GM_PHASE_STOP_CLIENTS);
    assert_true(o.rec.rolling_back);
    assert_string_equal(label(o.p, "nvidia.com/gpu.deploy.device-plugin"),
                        "false");
    outcome_free(&o);
}

/* Drained, it stops the GPU clients (their stop labels in the same write)
 * and goes on to lay the GPUs back. */
static void test_rollback_drained_stops_clients(void **state)
{
    (void)state;
    struct outcome o;
    run(&o, true, true, NO_POD);
    assert_non_null(o.p);
    assert_int_equal(o.rec.phase, GM_PHASE_STOP_CLIENTS);
    assert_true(o.rec.rolling_back);
    assert_string_equal(label(o.p, "nvidia.com/gpu.deploy.device-plugin"),
                        "false");
    outcome_free(&o);
}

/* A rollback's drain that fails holds the node, as any failed rollback. */
static void test_rollback_drain_failure_holds(void **state)
{
    (void)state;
    struct outcome o;
    run(&o, true, true, BARE_POD);
    assert_non_null(o.p);
    assert_int_equal(o.rec.phase, GM_PHASE_FAILED);
    assert_true(o.rec.rolling_back);
    assert_string_equal(o.rec.reason, "DrainBlocked");
    assert_null(gm_json_get(o.p, "spec"));
    outcome_free(&o);
}

/* The policy's drain options narrow a rollback's drain to GPU pods, and
 * nothing is waited for: a GPU pod its waitForCompletion names (no limit)
 * is evicted, a CPU pod its gpuPodsOnly: false would evict stays. */
static void test_rollback_drains_gpu_pods_only_and_waits_for_none(void **state)
{
    (void)state;
    char err[128];
    struct outcome o;
    assert_int_equal(gm_strsel_parse("app=work", &wait_work, err, sizeof(err)),
                     0);
    run_evicted(&o);
    assert_int_equal(o.evictions, 1);
    assert_true(o.pod_gone); /* no node patch while the pod was listed */
    assert_non_null(o.p);
    assert_int_equal(o.rec.phase, GM_PHASE_STOP_CLIENTS);
    assert_true(o.rec.rolling_back);
    outcome_free(&o);
    run(&o, true, true, OWNED_CPU_POD);
    assert_non_null(o.p);
    assert_int_equal(o.rec.phase, GM_PHASE_STOP_CLIENTS);
    assert_int_equal(o.evictions, 0);
    outcome_free(&o);
    /* The same policy's forward drain waits for the GPU pod. */
    run(&o, true, false, OWNED_POD);
    assert_null(o.p);
    assert_int_equal(o.evictions, 0);
    outcome_free(&o);
    gm_strsel_free(wait_work);
    wait_work = NULL;
}

/* A rollback with the hardware as it was does not drain: the old clients
 * start again at once. */
static void test_rollback_untouched_does_not_drain(void **state)
{
    (void)state;
    struct outcome o;
    run(&o, false, true, OWNED_POD);
    assert_non_null(o.p);
    assert_int_equal(o.rec.phase, GM_PHASE_START_CLIENTS);
    assert_int_equal(o.evictions, 0);
    outcome_free(&o);
}

/* Runs the rollback of a full -> vgpu switch in Verifying (the hardware
 * changed when reconfigured) on a node of 8 GPUs whose device plugin is
 * Ready but advertises 7 (one GPU unhealthy), until the first node patch
 * or ms. msg gets the switch's message at the end. */
static void run_verify_with(struct outcome *o, bool reconfigured, int ms,
                            char *msg, size_t len, const char *allocatable,
                            long long since_ago)
{
    struct fx f;
    memset(&f, 0, sizeof(f));
    f.pod = PLUGIN_POD;
    f.n.record =
        th_ctl_switch_record_retry(GM_PHASE_VERIFY, reconfigured, true);
    if (since_ago) {
        struct gm_switch_record rec = {0};
        char err[256];
        assert_int_equal(gm_record_parse(f.n.record, &rec, err, sizeof(err)),
                         0);
        rec.since -= since_ago;
        free(f.n.record);
        f.n.record = gm_record_format(&rec);
        gm_record_clear(&rec);
    }
    f.n.labels = "{\"nvidia.com/gpu.count\":\"8\"}";
    f.n.allocatable = allocatable;
    th_ctl_start(&f.n.c, handler, &f);
    f.n.c.ctl->policy_for = policy_for;
    th_run_until(&f.n.c.loop, &f.n.done, ms);
    snprintf(msg, len, "%s", gm_switch_message(f.n.c.ctl, "gpu-001"));
    finish(&f, o);
}

static void run_verify(struct outcome *o, bool reconfigured, int ms, char *msg,
                       size_t len)
{
    run_verify_with(o, reconfigured, ms, msg, len, "{\"nvidia.com/gpu\":\"7\"}",
                    0);
}

/* A rollback that never touched the GPUs and fails anyway (its plugin
 * advertises nothing within clientsTimeoutSeconds) is held, but as a node
 * whose GPUs were not changed: a retry or a release then treats it as
 * such (a failed drain rolls back rather than holds). */
static void test_untouched_rollback_failing_stays_untouched(void **state)
{
    (void)state;
    struct outcome o;
    char msg[256];
    run_verify_with(&o, false, 5000, msg, sizeof(msg),
                    "{\"nvidia.com/gpu\":\"0\"}", 3600);
    assert_non_null(o.p);
    assert_int_equal(o.rec.phase, GM_PHASE_FAILED);
    assert_string_equal(o.rec.reason, "PluginNotReady");
    assert_false(o.rec.reconfigured);
    outcome_free(&o);
}

/* A rollback that never touched the GPUs (the drain failed) finds the
 * node offering what it offered before the switch: fewer GPUs than its
 * count, one being unhealthy, is not a failed rollback. With the plugin
 * Ready it ends (back, state failed, uncordoned) rather than hold the
 * node cordoned once clientsTimeoutSeconds pass. */
static void test_untouched_rollback_takes_what_is_advertised(void **state)
{
    (void)state;
    struct outcome o;
    char msg[256];
    run_verify(&o, false, 5000, msg, sizeof(msg));
    assert_non_null(o.p);
    assert_int_equal(o.rec.phase, GM_PHASE_FAILED);
    assert_false(o.rec.rolling_back);
    assert_string_equal(label(o.p, GM_LABEL_STATE), "failed");
    json_object *u = NULL;
    assert_true(json_object_object_get_ex(gm_json_get(o.p, "spec"),
                                          "unschedulable", &u));
    assert_false(json_object_get_boolean(u)); /* uncordoned */
    outcome_free(&o);
}

/* GPUs a rollback laid again must advertise the expected count: the same
 * node waits (and fails after clientsTimeoutSeconds). */
static void test_relaid_rollback_waits_for_the_count(void **state)
{
    (void)state;
    struct outcome o;
    char msg[256];
    run_verify(&o, true, 1500, msg, sizeof(msg));
    assert_null(o.p);
    assert_string_equal(msg, "node advertises nvidia.com/gpu=7, expected 8");
    outcome_free(&o);
}

/* A rollback to mig, its GPUs laid back (one GPU, seven 1g.10gb), with the
 * node's old strategy put back: the config label (label, or NULL for none)
 * and gpumode.io/settings (settings, or NULL) as the node had them. to and
 * strategy are the switch's own. */
static void run_mig_rollback(struct outcome *o, enum gm_mode to,
                             const char *strategy, const char *label,
                             const char *settings, const char *allocatable)
{
    struct fx f;
    struct gm_switch_record rec = {0};
    char err[256], labels[256], anns[512];
    memset(&f, 0, sizeof(f));
    f.pod = PLUGIN_POD;
    char *t = th_ctl_switch_record_retry(GM_PHASE_VERIFY, true, true);
    assert_int_equal(gm_record_parse(t, &rec, err, sizeof(err)), 0);
    free(t);
    rec.from = GM_MODE_MIG;
    rec.to = to;
    rec.gpus = 1;
    rec.since -= 3600; /* past clientsTimeoutSeconds: no waiting */
    assert_int_equal(gm_set_str(&rec.strategy, strategy), 0);
    assert_int_equal(gm_set_str(&rec.from_layout,
                                "[{\"devices\":[0],\"migEnabled\":true,"
                                "\"migDevices\":{\"1g.10gb\":7}}]"),
                     0);
    if (label)
        assert_int_equal(gm_record_save_label(
                             &rec, "nvidia.com/device-plugin.config", label),
                         0);
    f.n.record = gm_record_format(&rec);
    gm_record_clear(&rec);
    snprintf(labels, sizeof(labels), "{\"gpumode.io/mode\":\"mig\"%s%s%s}",
             label ? ",\"nvidia.com/device-plugin.config\":\"" : "",
             label ? label : "", label ? "\"" : "");
    f.n.labels = labels;
    if (settings) {
        json_object *a = json_object_new_object();
        json_object_object_add(a, "gpumode.io/settings",
                               json_object_new_string(settings));
        snprintf(anns, sizeof(anns), "%s",
                 json_object_to_json_string_ext(a, JSON_C_TO_STRING_PLAIN));
        json_object_put(a);
        f.n.annotations = anns;
    }
    f.n.allocatable = allocatable;
    th_ctl_start(&f.n.c, handler, &f);
    f.n.c.ctl->policy_for = policy_for;
    th_run_until(&f.n.c.loop, &f.n.done, 5000);
    finish(&f, o);
}

/* The rollback ended well: back, held as failed, uncordoned. */
static void assert_back(struct outcome *o)
{
    assert_non_null(o->p);
    assert_int_equal(o->rec.phase, GM_PHASE_FAILED);
    assert_false(o->rec.rolling_back);
    assert_string_equal(label(o->p, GM_LABEL_STATE), "failed");
    json_object *u = NULL;
    assert_true(json_object_object_get_ex(gm_json_get(o->p, "spec"),
                                          "unschedulable", &u));
    assert_false(json_object_get_boolean(u));
}

/* A rollback to mig is verified under the strategy the node had, not the
 * switch's: a single-strategy node offers nvidia.com/gpu, not
 * nvidia.com/mig-1g.10gb, and checked as mixed it would be held cordoned
 * though back and serving. The strategy is read from the config label the
 * rollback put back, else from gpumode.io/settings. */
static void test_mig_rollback_verifies_the_old_strategy(void **state)
{
    (void)state;
    struct outcome o;
    const char *gpu7 = "{\"nvidia.com/gpu\":\"7\"}";
    const char *mig7 = "{\"nvidia.com/mig-1g.10gb\":\"7\"}";

    /* mig (single) -> full */
    run_mig_rollback(&o, GM_MODE_FULL, NULL, "single", NULL, gpu7);
    assert_back(&o);
    outcome_free(&o);
    /* mig (single) -> mig (mixed) */
    run_mig_rollback(&o, GM_MODE_MIG, "mixed", "single", NULL, gpu7);
    assert_back(&o);
    outcome_free(&o);
    /* mig (mixed) -> mig (single) */
    run_mig_rollback(&o, GM_MODE_MIG, "single", "mixed", NULL, mig7);
    assert_back(&o);
    outcome_free(&o);
    /* no strategy label: the settings the node converged with */
    run_mig_rollback(&o, GM_MODE_FULL, NULL, NULL,
                     "{\"strategy\":\"single\",\"layout\":[]}", gpu7);
    assert_back(&o);
    outcome_free(&o);
    /* and a node that does not offer what its strategy names is held */
    run_mig_rollback(&o, GM_MODE_FULL, NULL, "single", NULL, mig7);
    assert_non_null(o.p);
    assert_int_equal(o.rec.phase, GM_PHASE_FAILED);
    assert_true(o.rec.rolling_back);
    assert_string_equal(o.rec.reason, "PluginNotReady");
    outcome_free(&o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retry_drain_failure_holds),
        cmocka_unit_test(test_first_drain_failure_rolls_back),
        cmocka_unit_test(test_blocked_pod_fails_before_any_eviction),
        cmocka_unit_test(test_refused_eviction_fails_the_drain),
        cmocka_unit_test(test_unlistable_pods_fail_at_the_timeout),
        cmocka_unit_test(test_grace_zero_is_asked_as_one),
        cmocka_unit_test(test_rollback_evicts_first),
        cmocka_unit_test(test_rollback_drained_stops_clients),
        cmocka_unit_test(test_rollback_drain_failure_holds),
        cmocka_unit_test(test_rollback_untouched_does_not_drain),
        cmocka_unit_test(test_rollback_drains_gpu_pods_only_and_waits_for_none),
        cmocka_unit_test(test_untouched_rollback_takes_what_is_advertised),
        cmocka_unit_test(test_relaid_rollback_waits_for_the_count),
        cmocka_unit_test(test_untouched_rollback_failing_stays_untouched),
        cmocka_unit_test(test_mig_rollback_verifies_the_old_strategy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
