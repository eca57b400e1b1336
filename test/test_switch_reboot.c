/* A reboot helper whose agent could not reboot the node (its result says
 * ok: false, and the pod failed) fails the switch at once with the agent's
 * reason, instead of waiting rebootTimeoutSeconds (20 min) for a boot that
 * is not coming. A helper still running, or one that ended without a
 * failed result, is waited for. And an apply that asks for a reboot gets
 * one per attempt: asking again after it fails the switch rather than
 * rebooting the node for ever. An apply into vgpu that succeeded while
 * HAMi's per-node entry cannot be written yet records StartingClients
 * before it waits, so that wait has a start and times out.
 *
 * Real libcurl and libuv against the test server, which plays the API
 * server: one node in Rebooting, its reboot helper pod in the helper
 * cache. */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "common/json.h"
#include "nodeswitch/helperpod.h"
#include "nodeswitch/record.h"
#include "support/ctlfx.h"

struct fx {
    struct th_ctl c;
    char *record; /* owned: the node's switch annotation */
    /* The helper pod: its step and arguments (the salt last), phase and
     * termination message. */
    const char *step;
    const char *const *argv;
    size_t argc;
    const char *phase;      /* the helper pod's phase */
    const char *term;       /* its termination message, or NULL */
    const char *pod_reason; /* the helper pod's status.reason, or NULL */
    bool ran;         /* its container started (terminated with a startedAt) */
    bool start_error; /* the runtime could not start it (StartError) */
    char *patched;    /* owned: the first switch record the node got */
    int node_patches;
    int done;
    /* HAMi's ConfigMap exists and every write to it is refused (403). */
    bool hami_forbidden;
    const char *boot_id; /* the node's bootID, or NULL */
    int helper_posts;    /* helper pods created */
    long long created;   /* the helper's creationTimestamp; 0: none */
    bool keep_posted;    /* keep the first helper pod created: */
    char *posted;        /* owned; that pod, or NULL */
    int deletes;         /* helper pod DELETEs; the first answers 500 */
    bool grace_zero;     /* one of them asked for gracePeriodSeconds 0 */
    bool no_helper;      /* the helper cache is empty */
    bool other_pod;      /* a pod of no GPU, by a ReplicaSet, on the node */
    /* The GPU Operator's driver pod is on the node: "ready" or "building"
     * (Running, not Ready), or NULL: none. */
    const char *driver_pod;
    struct th_conn *pod_watch; /* the node's pod watch, when driver_pod */
    bool pods_forbidden;       /* every helper pod create answers 403 */
    bool pods_unavailable;     /* every helper pod create answers 503 */
    bool webhook_down;         /* every helper pod create answers 500 */
    int evictions;             /* its evictions asked for */
    int acted;                 /* an eviction or a helper pod was asked for */
};

/* The node's pods: default/web-1, of a ReplicaSet, requesting no GPU. */
static const char node_pods[] =
    "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"10\"},"
    "\"items\":[{\"metadata\":{\"name\":\"web-1\",\"namespace\":"
    "\"default\",\"uid\":\"w1\",\"resourceVersion\":\"7\","
    "\"ownerReferences\":[{\"apiVersion\":\"apps/v1\",\"kind\":"
    "\"ReplicaSet\",\"name\":\"web-5d\",\"uid\":\"rs\",\"controller\":"
    "true}]},\"spec\":{\"nodeName\":\"gpu-001\",\"containers\":[{"
    "\"name\":\"c\",\"image\":\"x\"}]},\"status\":{\"phase\":"
    "\"Running\"}}]}";

/* The GPU Operator's driver pod on the node, Running; %s: its Ready. */
static const char driver_pod_fmt[] =
    "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"10\"},"
    "\"items\":[{\"metadata\":{\"name\":\"nvidia-driver-daemonset-x\","
    "\"namespace\":\"gpu-operator\",\"uid\":\"d1\",\"resourceVersion\":"
    "\"7\",\"labels\":{\"app\":\"nvidia-driver-daemonset\"}},\"spec\":{"
    "\"nodeName\":\"gpu-001\",\"containers\":[{\"name\":\"nvidia-driver-"
    "ctr\",\"image\":\"x\"}]},\"status\":{\"phase\":\"Running\","
    "\"conditions\":[{\"type\":\"Ready\",\"status\":\"%s\"}]}}]}";

static char *helper_list(const struct fx *f)
{
    struct gm_helper_step st = {.node = "gpu-001",
                                .step = f->step,
                                .attempt = 1,
                                .argv = f->argv,
                                .argc = f->argc};
    char name[64];
    gm_helper_pod_name(&st, name, sizeof(name));
    json_object *pod = json_tokener_parse(
        "{\"metadata\":{\"namespace\":\"gpumode-system\",\"resourceVersion\":"
        "\"3\",\"uid\":\"u1\",\"labels\":{\"" GM_HELPER_LABEL_KEY
        "\":\"" GM_HELPER_LABEL_VALUE "\",\"" GM_HELPER_NODE_LABEL
        "\":\"gpu-001\"}},\"spec\":{\"nodeName\":"
        "\"gpu-001\"},\"status\":{}}");
    json_object *meta = gm_json_get(pod, "metadata");
    json_object *status = gm_json_get(pod, "status");
    json_object_object_add(meta, "name", json_object_new_string(name));
    if (f->created) {
        char when[32];
        time_t t = (time_t)f->created;
        struct tm tm;
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
        json_object_object_add(meta, "creationTimestamp",
                               json_object_new_string(when));
    }
    json_object_object_add(status, "phase", json_object_new_string(f->phase));
    if (f->pod_reason)
        json_object_object_add(status, "reason",
                               json_object_new_string(f->pod_reason));
    if (f->term) {
        json_object *cs =
            json_tokener_parse("[{\"name\":\"agent\",\"state\":{\"terminated\":"
                               "{\"exitCode\":1}}}]");
        json_object *t =
            gm_json_get(gm_json_get(json_object_array_get_idx(cs, 0), "state"),
                        "terminated");
        json_object_object_add(t, "message", json_object_new_string(f->term));
        if (f->ran)
            json_object_object_add(
                t, "startedAt", json_object_new_string("2026-01-01T00:00:00Z"));
        if (f->start_error) {
            /* As the kubelet reports it: startedAt at the Unix epoch. */
            json_object_object_add(
                t, "startedAt", json_object_new_string("1970-01-01T00:00:00Z"));
            json_object_object_add(t, "reason",
                                   json_object_new_string("StartError"));
        }
        json_object_object_add(status, "containerStatuses", cs);
    }
    json_object *list = json_tokener_parse(
        "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"10\"}}");
    json_object *items = json_object_new_array();
    json_object_array_add(items, pod);
    json_object_object_add(list, "items", items);
    char *s =
        strdup(json_object_to_json_string_ext(list, JSON_C_TO_STRING_PLAIN));
    json_object_put(list);
    return s;
}

static void handler(void *ud, const struct th_req *r, struct th_conn *c)
{
    struct fx *f = ud;

    if (strncmp(r->path, "/api/v1/nodes?", 14) == 0) {
        th_ctl_respond_booted_node(c, f->record, f->boot_id);
    } else if (strcmp(r->method, "PATCH") == 0 &&
               strcmp(r->path, "/api/v1/nodes/gpu-001") == 0) {
        json_object *patch = json_tokener_parse(r->body);
        const char *rec = json_object_get_string(gm_json_get(
            gm_json_get(gm_json_get(patch, "metadata"), "annotations"),
            GM_ANN_SWITCH));
        if (rec && f->patched == NULL)
            f->patched = strdup(rec);
        json_object_put(patch);
        f->node_patches++;
        f->done = 1;
        th_respond(c, 200, NULL, "{}");
    } else if (strcmp(r->method, "DELETE") == 0 &&
               strstr(r->path, "/namespaces/gpumode-system/pods/")) {
        f->grace_zero |= r->body && strstr(r->body, "\"gracePeriodSeconds\":0");
        if (f->deletes++ == 0)
            th_respond(c, 500, NULL,
                       "{\"kind\":\"Status\",\"reason\":"
                       "\"InternalError\",\"code\":500}");
        else
            th_respond(c, 200, NULL, "{}");
    } else if (strcmp(r->method, "POST") == 0 &&
               strcmp(r->path, "/api/v1/namespaces/gpumode-system/pods") == 0) {
        f->helper_posts++;
        f->acted = 1;
        if (f->keep_posted && f->posted == NULL && r->body)
            f->posted = strdup(r->body);
        if (f->webhook_down)
            th_respond(c, 500, NULL,
                       "{\"kind\":\"Status\",\"status\":\"Failure\","
                       "\"reason\":\"InternalError\",\"message\":"
                       "\"Internal error occurred: failed calling webhook "
                       "\\\"validate.kyverno.svc-fail\\\": context "
                       "deadline exceeded\",\"code\":500}");
        else if (f->pods_unavailable)
            th_respond(c, 503, NULL,
                       "{\"kind\":\"Status\",\"status\":\"Failure\","
                       "\"reason\":\"ServiceUnavailable\",\"code\":503}");
        else if (f->pods_forbidden)
            th_respond(c, 403, NULL,
                       "{\"kind\":\"Status\",\"status\":\"Failure\","
                       "\"reason\":\"Forbidden\",\"message\":\"pods is "
                       "forbidden: violates PodSecurity "
                       "\\\"restricted:latest\\\": privileged\","
                       "\"code\":403}");
        else
            th_respond(c, 201, NULL, "{}");
    } else if (f->driver_pod && strcmp(r->method, "GET") == 0 &&
               strncmp(r->path, "/api/v1/pods?", 13) == 0 &&
               strstr(r->path, "watch=1")) {
        th_stream_start(c, 200); /* open, quiet until the test speaks */
        f->pod_watch = c;
    } else if (f->driver_pod && strcmp(r->method, "GET") == 0 &&
               strncmp(r->path, "/api/v1/pods?", 13) == 0 &&
               !strstr(r->path, "watch=1")) {
        char body[1024];
        snprintf(body, sizeof(body), driver_pod_fmt,
                 strcmp(f->driver_pod, "ready") == 0 ? "True" : "False");
        th_respond(c, 200, NULL, body);
    } else if (f->other_pod && strcmp(r->method, "GET") == 0 &&
               strncmp(r->path, "/api/v1/pods?", 13) == 0 &&
               !strstr(r->path, "watch=1")) {
        th_respond(c, 200, NULL, node_pods);
    } else if (strcmp(r->method, "POST") == 0 &&
               strstr(r->path, "/pods/web-1/eviction")) {
        f->evictions++;
        f->acted = 1;
        th_respond(c, 201, NULL, "{}");
    } else if (f->no_helper && strcmp(r->method, "GET") == 0 &&
               strstr(r->path, "/namespaces/gpumode-system/pods?") &&
               !strstr(r->path, "watch=1")) {
        th_respond(c, 200, NULL,
                   "{\"kind\":\"PodList\",\"metadata\":{"
                   "\"resourceVersion\":\"10\"},\"items\":[]}");
    } else if (strcmp(r->method, "GET") == 0 &&
               strstr(r->path, "/namespaces/gpumode-system/pods?") &&
               !strstr(r->path, "watch=1")) {
        char *body = helper_list(f);
        th_respond(c, 200, NULL, body);
        free(body);
    } else if (f->hami_forbidden && strcmp(r->method, "GET") == 0 &&
               strstr(r->path, "/namespaces/kube-system/configmaps?") &&
               !strstr(r->path, "watch=1")) {
        th_respond(c, 200, NULL,
                   "{\"kind\":\"ConfigMapList\",\"metadata\":{"
                   "\"resourceVersion\":\"5\"},\"items\":[{\"metadata\":{"
                   "\"name\":\"hami-device-plugin\",\"namespace\":"
                   "\"kube-system\",\"resourceVersion\":\"5\"},\"data\":{"
                   "\"config.json\":\"{\\\"nodeconfig\\\":[]}\"}}]}");
    } else if (f->hami_forbidden && strcmp(r->method, "GET") != 0 &&
               strstr(r->path, "/namespaces/kube-system/configmaps/")) {
        th_respond(c, 403, NULL,
                   "{\"kind\":\"Status\",\"status\":\"Failure\",\"reason\":"
                   "\"Forbidden\",\"message\":\"configmaps is forbidden\","
                   "\"code\":403}");
    } else {
        th_ctl_respond_default(r, c);
    }
}

/* A record in Rebooting on b007-0 (caller frees), the rest of the node
 * drained already when drained. */
static char *reboot_record(bool drained)
{
    struct gm_switch_record rec = {0};
    char err[256];
    char *text = th_ctl_switch_record(GM_PHASE_REBOOT, NULL);
    assert_int_equal(gm_record_parse(text, &rec, err, sizeof(err)), 0);
    free(text);
    rec.reboot_drained = drained;
    rec.reconfigured = true; /* as the switch records it on the way in */
    assert_int_equal(gm_set_str(&rec.boot_id, "b007-0"), 0);
    text = gm_record_format(&rec);
    gm_record_clear(&rec);
    return text;
}

/* Runs the node in Rebooting for up to ms; returns the reason of the first
 * record written (caller frees), or NULL when nothing was written. */
static char *run_as(const char *phase, const char *term, bool start_error,
                    int ms)
{
    static const char *const argv[] = {"reboot", "--confirm", "b007-0"};
    struct fx f = {.step = "reboot",
                   .argv = argv,
                   .argc = 3,
                   .phase = phase,
                   .term = term,
                   .start_error = start_error};
    f.record = reboot_record(true);
    th_ctl_start(&f.c, handler, &f);
    th_run_until(&f.c.loop, &f.done, ms);
    th_ctl_stop(&f.c);
    char *reason = NULL;
    if (f.patched) {
        struct gm_switch_record out = {0};
        char err[256];
        assert_int_equal(gm_record_parse(f.patched, &out, err, sizeof(err)), 0);
        reason = strdup(out.reason ? out.reason : "");
        gm_record_clear(&out);
    }
    free(f.patched);
    free(f.record);
    return reason;
}

static char *run(const char *phase, const char *term, int ms)
{
    return run_as(phase, term, false, ms);
}

static void test_failed_reboot_fails_at_once(void **state)
{
    (void)state;
    char *reason = run("Failed",
                       "{\"ok\":false,\"command\":\"reboot\",\"needs\":"
                       "\"none\",\"reason\":\"RebootFailed\",\"message\":"
                       "\"reboot: Operation not permitted\"}",
                       5000);
    assert_non_null(reason);
    assert_string_equal(reason, "RebootFailed");
    free(reason);

    /* Nor does one the runtime could not start: no boot is coming. */
    reason = run_as("Failed", "failed to create containerd task", true, 5000);
    assert_non_null(reason);
    assert_string_equal(reason, "RebootFailed");
    free(reason);
}

/* What the agent answers when it runs on another boot than it was given. */
#define REBOOTED_SINCE                                                         \
    "{\"ok\":true,\"command\":\"reboot\",\"gpus\":[],\"needs\":\"none\","      \
    "\"message\":\"the node has rebooted since (boot ID 0f00, not b007-0); "   \
    "not rebooting again\"}"

/* Running (the node goes down under it) or gone without a failed result:
 * the boot may still come, so nothing is written. */
static void test_other_helpers_wait(void **state)
{
    (void)state;
    char *reason = run("Running", NULL, 1500);
    assert_null(reason);
    reason = run("Failed", NULL, 1500);
    assert_null(reason);
    reason = run("Failed", "{\"ok\":true,\"command\":\"reboot\"}", 1500);
    assert_null(reason);
    /* Ended well: the node may have rebooted and not said so yet. */
    reason = run("Succeeded", REBOOTED_SINCE, 1500);
    assert_null(reason);
}

/* A reboot helper that ended well did not reboot (its agent read another
 * boot ID than the node reports): once the node has had its time to
 * report a new boot and has not, no reboot is coming, and the switch
 * fails at once with the agent's words rather than at rebootTimeout. */
static void patched_record(const struct fx *f, struct gm_switch_record *out);

static void test_reboot_that_did_not_happen_fails(void **state)
{
    (void)state;
    static const char *const argv[] = {"reboot", "--confirm", "b007-0"};
    struct fx f = {.step = "reboot",
                   .argv = argv,
                   .argc = 3,
                   .phase = "Succeeded",
                   .term = REBOOTED_SINCE,
                   .boot_id = "b007-0"};
    struct gm_switch_record rec = {0};
    f.record = reboot_record(true);
    th_ctl_start(&f.c, handler, &f);
    f.c.cfg.reboot_unseen_s = 1;
    th_run_until(&f.c.loop, &f.done, 6000);
    th_ctl_stop(&f.c);
    patched_record(&f, &rec);
    assert_string_equal(rec.reason, "RebootFailed");
    assert_non_null(strstr(rec.message, "ended without rebooting the node"));
    assert_non_null(strstr(rec.message, "bootID b007-0"));
    assert_non_null(strstr(rec.message, "not rebooting again"));
    gm_record_clear(&rec);
    free(f.patched);
    free(f.record);
}

static int allow_reboot(void *data, const char *name,
                        struct gm_switch_policy *o)
{
    (void)data;
    (void)name;
    o->allow_reboot = true;
    return 0;
}

/* Runs f's switch until its first node write (5 s at most), under
 * policy_for when given, and parses that record into *out. Frees f's
 * record and patch. */
static void run_to_first_write(struct fx *f,
                               int (*policy_for)(void *, const char *,
                                                 struct gm_switch_policy *),
                               struct gm_switch_record *out)
{
    char err[256];
    th_ctl_start(&f->c, handler, f);
    if (policy_for)
        f->c.ctl->policy_for = policy_for;
    th_run_until(&f->c.loop, &f->done, 5000);
    th_ctl_stop(&f->c);
    assert_non_null(f->patched);
    assert_int_equal(gm_record_parse(f->patched, out, err, sizeof(err)), 0);
    free(f->patched);
    free(f->record);
}

/* A record in Rebooting that names no boot (written by hand, or for a
 * node that reported none): the reboot could never be seen, so no helper
 * starts and the switch fails at once rather than at rebootTimeout. */
static void test_reboot_needs_the_boot_it_ends(void **state)
{
    (void)state;
    static const char *const argv[] = {"reboot", "--confirm", ""};
    struct fx f = {.step = "reboot",
                   .argv = argv,
                   .argc = 3,
                   .phase = "Running",
                   .no_helper = true};
    struct gm_switch_record rec = {0};
    char err[256];
    char *text = reboot_record(true);
    assert_int_equal(gm_record_parse(text, &rec, err, sizeof(err)), 0);
    free(text);
    assert_int_equal(gm_set_str(&rec.boot_id, NULL), 0);
    f.record = gm_record_format(&rec);
    gm_record_clear(&rec);
    run_to_first_write(&f, allow_reboot, &rec);
    assert_string_equal(rec.reason, "RebootRequired");
    assert_non_null(strstr(rec.message, "names no boot"));
    assert_int_equal(f.helper_posts, 0);
    gm_record_clear(&rec);
}

/* A full -> vgpu switch in Reconfiguring whose apply helper failed asking
 * for a reboot, under a policy that allows one: the apply pod is the same
 * as without allowReboot (its arguments, which name it, leave it out), so
 * an edit of allowReboot never replaces a running agent. rebooted_from is
 * the record's bootID (set once this
 * attempt rebooted the node) or NULL. Fills *out with the first record
 * written. */
static void run_apply_on(const char *rebooted_from, const char *boot_id,
                         struct gm_switch_record *out)
{
    const char *const argv[] = {"apply", "--mode", "vgpu", "--allow-reset",
                                boot_id ? boot_id : ""};
    struct fx f = {.step = "apply",
                   .argv = argv,
                   .argc = 5,
                   .boot_id = boot_id,
                   .phase = "Failed",
                   .term = "{\"ok\":false,\"command\":\"apply\",\"needs\":"
                           "\"reboot\",\"reason\":\"RebootRequired\","
                           "\"message\":\"MIG mode of GPU 0 is still "
                           "pending\",\"gpus\":[{\"index\":1,\"uuid\":"
                           "\"GPU-b\"},{\"index\":0,\"uuid\":\"GPU-a\"}]}"};
    struct gm_switch_record rec = {0};
    char err[256];
    char *text = th_ctl_switch_record(GM_PHASE_RECONFIGURE, NULL);
    assert_int_equal(gm_record_parse(text, &rec, err, sizeof(err)), 0);
    free(text);
    assert_int_equal(gm_set_str(&rec.boot_id, rebooted_from), 0);
    f.record = gm_record_format(&rec);
    gm_record_clear(&rec);
    run_to_first_write(&f, allow_reboot, out);
}

/* The node on b007-0 unless it has rebooted for this attempt. */
static void run_apply(const char *rebooted_from, struct gm_switch_record *out)
{
    run_apply_on(rebooted_from, rebooted_from ? "b007-1" : "b007-0", out);
}

static void test_one_reboot_per_attempt(void **state)
{
    (void)state;
    struct gm_switch_record rec = {0};
    run_apply(NULL, &rec);
    assert_int_equal(rec.phase, GM_PHASE_REBOOT);
    assert_string_equal(rec.boot_id, "b007-0");
    assert_null(rec.reason);
    /* The GPUs the agent listed, their uuids in index order (HAMi's
     * filterdevices may name them). */
    assert_int_equal(rec.gpus, 2);
    assert_string_equal(rec.gpu_uuids, "GPU-a,GPU-b");
    gm_record_clear(&rec);

    run_apply("b007-0", &rec);
    assert_int_not_equal(rec.phase, GM_PHASE_REBOOT);
    assert_string_equal(rec.reason, "RebootRequired");
    assert_non_null(strstr(rec.message, "after the node rebooted"));
    gm_record_clear(&rec);

    /* A node that reports no bootID could reboot unseen: none starts. */
    run_apply_on(NULL, NULL, &rec);
    assert_int_not_equal(rec.phase, GM_PHASE_REBOOT);
    assert_string_equal(rec.reason, "RebootRequired");
    assert_non_null(strstr(rec.message, "no status.nodeInfo.bootID"));
    gm_record_clear(&rec);

    /* Nor one whose bootID the agent could never match (not the kernel's
     * UUID form): it would drain the whole node, then fail. */
    run_apply_on(NULL, "vk node 1", &rec);
    assert_int_not_equal(rec.phase, GM_PHASE_REBOOT);
    assert_string_equal(rec.reason, "RebootRequired");
    gm_record_clear(&rec);
}

static char *reconfiguring(enum gm_mode from, bool rolling_back);

/* A first switch's apply pod, made as the phase began, that ended with
 * no result of the agent's (term, its log's tail, as the message); ran
 * says its container started. */
static void run_stopped_apply_as(const char *pod_reason, bool ran,
                                 bool start_error, const char *term,
                                 struct gm_switch_record *out)
{
    static const char *const argv[] = {"apply", "--mode", "vgpu",
                                       "--allow-reset", ""};
    struct fx f = {.step = "apply",
                   .argv = argv,
                   .argc = 5,
                   .phase = "Failed",
                   .term = term,
                   .pod_reason = pod_reason,
                   .ran = ran,
                   .start_error = start_error,
                   .created = (long long)time(NULL)};
    f.record = reconfiguring(GM_MODE_UNKNOWN, false);
    run_to_first_write(&f, NULL, out);
}

static void run_stopped_apply_said(const char *pod_reason, bool ran,
                                   const char *term,
                                   struct gm_switch_record *out)
{
    run_stopped_apply_as(pod_reason, ran, false, term, out);
}

static void run_stopped_apply(const char *pod_reason, bool ran,
                              struct gm_switch_record *out)
{
    run_stopped_apply_said(pod_reason, ran, "creating GPU instances on GPU 3\n",
                           out);
}

/* An agent killed midway leaves the kubelet's tail of its log
 * (FallbackToLogsOnError): its last lines are what the failure says,
 * joined on one line, the start cut at a character's boundary when it
 * is too long for the node's status line, before what the switch adds (a
 * first switch is held); an empty tail says there was no result. */
static void test_agent_log_tail_quoted(void **state)
{
    (void)state;
    struct gm_switch_record rec = {0};
    /* Lines of 3-byte characters, so that one of three cuts a byte apart
     * falls inside one. */
    char euros[60 * 3 + 1] = "";
    for (int i = 0; i < 60; i++)
        strcat(euros, "\xe2\x82\xac");
    for (int pad = 0; pad < 3; pad++) {
        char tail[2048 + 1];
        size_t at = 0;
        for (int i = 0; at + 250 < sizeof(tail); i++)
            at += (size_t)snprintf(tail + at, sizeof(tail) - at,
                                   "nvidia-smi -i %d %s: exit 0\n", i, euros);
        at += (size_t)snprintf(tail + at, sizeof(tail) - at,
                               "nvidia-smi mig -cgi 19 -C: exit 0%.*s\r\n", pad,
                               "...");
        run_stopped_apply_said(NULL, true, tail, &rec);
        assert_string_equal(rec.reason, "AgentFailed");
        const char *m = rec.message;
        assert_non_null(
            strstr(m, "the agent left no result; its container said: ..."));
        /* The last line is there, whole, and no line break is left. */
        const char *last = "| nvidia-smi mig -cgi 19 -C: exit 0";
        assert_non_null(strstr(m, last));
        assert_null(strchr(m, '\n'));
        assert_null(strchr(m, '\r'));
        assert_non_null(strstr(m, ": exit 0 | nvidia-smi -i "));
        /* No character cut in two: no continuation byte after "...". */
        const char *cut = strstr(m, "...") + 3;
        assert_true(((unsigned char)*cut & 0xC0) != 0x80);
        assert_true(strstr(m, last) - m < 440);
        gm_record_clear(&rec);
    }

    /* A tail that starts inside a JSON line is no result of the agent's
     * (no "ok"): it is put on one line too. */
    run_stopped_apply_said(NULL, true, "{\"level\":\"info\"}\nkilled\n", &rec);
    assert_non_null(strstr(rec.message,
                           "the agent left no result; its container said: "
                           "{\"level\":\"info\"} | killed"));
    gm_record_clear(&rec);

    run_stopped_apply_said(NULL, true, " \n", &rec);
    assert_string_equal(rec.reason, "AgentFailed");
    assert_non_null(strstr(rec.message, "the agent left no result; the mode"));
    gm_record_clear(&rec);
}

/* The runtime could not start the apply pod's container (StartError,
 * whose startedAt is the Unix epoch): the agent never ran, so a first
 * switch rolls back as for a pod never started, rather than being held
 * as one whose GPUs may have changed; the runtime's words are quoted. */
static void test_apply_start_error_is_untouched(void **state)
{
    (void)state;
    struct gm_switch_record rec = {0};
    run_stopped_apply_as(NULL, false, true,
                         "failed to create containerd task: exec: "
                         "\"gpumode-agent\": executable file not found",
                         &rec);
    assert_string_equal(rec.reason, "AgentFailed");
    assert_non_null(strstr(rec.message,
                           "the agent never started; its container said: "
                           "failed to create containerd task"));
    assert_int_equal(rec.phase, GM_PHASE_START_CLIENTS);
    assert_true(rec.rolling_back);
    gm_record_clear(&rec);
}

/* The kubelet stopped the apply pod at its deadline, as happens while no
 * controller runs: HelperTimeout, saying so, rather than the log tail as
 * an agent failure; the GPUs may have changed, so a first switch is
 * held. One whose container never started (its image never pulled)
 * never ran its agent: the switch rolls back as for a pod still Pending
 * at the timeout. Without the pod's reason, the log tail is what is
 * said. */
static void test_apply_past_its_deadline(void **state)
{
    (void)state;
    struct gm_switch_record rec = {0};
    run_stopped_apply("DeadlineExceeded", true, &rec);
    assert_string_equal(rec.reason, "HelperTimeout");
    assert_non_null(strstr(rec.message, "ran past its activeDeadlineSeconds"));
    assert_int_equal(rec.phase, GM_PHASE_FAILED);
    gm_record_clear(&rec);

    run_stopped_apply("DeadlineExceeded", false, &rec);
    assert_string_equal(rec.reason, "HelperTimeout");
    assert_non_null(strstr(rec.message, "never started"));
    assert_int_equal(rec.phase, GM_PHASE_START_CLIENTS);
    assert_true(rec.rolling_back);
    gm_record_clear(&rec);

    run_stopped_apply(NULL, true, &rec);
    assert_string_equal(rec.reason, "AgentFailed");
    assert_non_null(strstr(rec.message, "creating GPU instances on GPU 3"));
    gm_record_clear(&rec);
}

/* A full -> vgpu record in Reconfiguring (caller frees), with the mode
 * before and whether it is a rollback's. */
static char *reconfiguring(enum gm_mode from, bool rolling_back)
{
    struct gm_switch_record rec = {0};
    char err[256];
    char *text = th_ctl_switch_record(GM_PHASE_RECONFIGURE, NULL);
    assert_int_equal(gm_record_parse(text, &rec, err, sizeof(err)), 0);
    free(text);
    rec.from = from;
    rec.rolling_back = rolling_back;
    text = gm_record_format(&rec);
    gm_record_clear(&rec);
    return text;
}

/* Runs the apply step of f's switch with a helper timeout of 1 s, until
 * the first node write or ms. The helper cache is empty. */
static void run_unposted(struct fx *f, int ms)
{
    static const char *const argv[] = {"apply", "--mode", "vgpu",
                                       "--allow-reset", ""};
    f->step = "apply";
    f->argv = argv;
    f->argc = 5;
    f->phase = "Running";
    f->no_helper = true;
    th_ctl_start(&f->c, handler, f);
    f->c.cfg.helper_timeout_s = 1;
    th_run_until(&f->c.loop, &f->done, ms);
    th_ctl_stop(&f->c);
}

/* A first switch (no gpumode.io/mode: the mode before is unknown) whose
 * agent refused before changing anything (a process on a GPU; changed:
 * false) rolls back, putting the plugins back and uncordoning, rather than
 * holding a node whose hardware never changed; one whose agent changed
 * something before failing is held. */
static void run_first_switch(bool changed, struct gm_switch_record *out)
{
    static const char *const argv[] = {"apply", "--mode", "vgpu",
                                       "--allow-reset", ""};
    char term[512];
    snprintf(term, sizeof(term),
             "{\"ok\":false,\"command\":\"apply\",\"changed\":%s,"
             "\"needs\":\"none\",\"reason\":\"GPUInUse\",\"message\":"
             "\"GPU 0 is in use by 1 compute process\",\"gpus\":[{"
             "\"index\":0,\"uuid\":\"GPU-a\"}]}",
             changed ? "true" : "false");
    struct fx f = {.step = "apply",
                   .argv = argv,
                   .argc = 5,
                   .phase = "Failed",
                   .term = term};
    f.record = reconfiguring(GM_MODE_UNKNOWN, false);
    run_to_first_write(&f, NULL, out);
}

static void test_untouched_refusal_is_not_held(void **state)
{
    (void)state;
    struct gm_switch_record rec = {0};
    run_first_switch(false, &rec);
    assert_string_equal(rec.reason, "GPUInUse");
    assert_int_equal(rec.phase, GM_PHASE_START_CLIENTS);
    assert_true(rec.rolling_back);
    assert_false(rec.reconfigured);
    assert_null(strstr(rec.message, "cannot be rolled back"));
    gm_record_clear(&rec);

    run_first_switch(true, &rec);
    assert_string_equal(rec.reason, "GPUInUse");
    assert_int_equal(rec.phase, GM_PHASE_FAILED);
    assert_true(rec.reconfigured);
    assert_non_null(strstr(rec.message, "cannot be rolled back"));
    gm_record_clear(&rec);
}

/* A first switch whose apply pod is in phase at the end of
 * helperTimeoutSeconds (900 s), made created_after seconds after the
 * phase began; *out is the first record written. */
static void run_timed_out(const char *phase, long long created_after,
                          struct gm_switch_record *out)
{
    static const char *const argv[] = {"apply", "--mode", "vgpu",
                                       "--allow-reset", ""};
    struct fx f = {.step = "apply", .argv = argv, .argc = 5, .phase = phase};
    struct gm_switch_record rec = {0};
    char err[256];
    char *text = reconfiguring(GM_MODE_UNKNOWN, false);
    assert_int_equal(gm_record_parse(text, &rec, err, sizeof(err)), 0);
    free(text);
    rec.since -= 1000;
    f.created = rec.since + created_after;
    f.record = gm_record_format(&rec);
    gm_record_clear(&rec);
    run_to_first_write(&f, NULL, out);
}

/* An apply pod still Pending when helperTimeoutSeconds ends, made as the
 * phase began, never ran its agent (its image could not be pulled, a
 * volume not mounted): the GPUs are as they were, so even a first switch
 * rolls back and uncordons rather than hold the node. One that ran
 * (Running) may have changed them, and a Pending one made late replaced a
 * pod that may have run (the node rebooted under the agent; its new boot
 * ID names a new pod): both held, as before. */
static void test_never_started_helper_is_untouched(void **state)
{
    (void)state;
    struct gm_switch_record rec = {0};
    run_timed_out("Pending", 2, &rec);
    assert_string_equal(rec.reason, "HelperTimeout");
    assert_non_null(strstr(rec.message, "never started"));
    assert_int_equal(rec.phase, GM_PHASE_START_CLIENTS);
    assert_true(rec.rolling_back);
    assert_false(rec.reconfigured);
    gm_record_clear(&rec);

    run_timed_out("Running", 2, &rec);
    assert_string_equal(rec.reason, "HelperTimeout");
    assert_int_equal(rec.phase, GM_PHASE_FAILED);
    assert_true(rec.reconfigured);
    gm_record_clear(&rec);

    run_timed_out("Pending", 600, &rec);
    assert_string_equal(rec.reason, "HelperTimeout");
    assert_int_equal(rec.phase, GM_PHASE_FAILED);
    assert_true(rec.reconfigured);
    gm_record_clear(&rec);
}

/* vgpu's hardware is done, and HAMi's entry cannot be written: the first
 * write records StartingClients (and the result), not a wait that would
 * start again at every reconcile and never time out. */
static void test_hami_wait_is_recorded(void **state)
{
    (void)state;
    static const char *const argv[] = {"apply", "--mode", "vgpu",
                                       "--allow-reset", ""};
    struct fx f = {.step = "apply",
                   .argv = argv,
                   .argc = 5,
                   .phase = "Succeeded",
                   .term = "{\"ok\":true,\"command\":\"apply\"}",
                   .hami_forbidden = true};
    f.record = th_ctl_switch_record(GM_PHASE_RECONFIGURE, NULL);
    th_ctl_start(&f.c, handler, &f);
    f.c.ctl->policy_for = th_ctl_policy_split4;
    th_run_until(&f.c.loop, &f.done, 5000);
    th_ctl_stop(&f.c);
    assert_non_null(f.patched);
    struct gm_switch_record rec = {0};
    char err[256];
    assert_int_equal(gm_record_parse(f.patched, &rec, err, sizeof(err)), 0);
    assert_int_equal(rec.phase, GM_PHASE_START_CLIENTS);
    assert_true(rec.reconfigured);
    assert_null(rec.reason);
    gm_record_clear(&rec);
    free(f.patched);
    free(f.record);
}

/* A reboot ends every pod on the node, not only the GPU pods the drain
 * moved: the others are evicted first (through the Eviction API, so under
 * their budgets), and no reboot helper starts meanwhile. Once none is
 * left, the record says so (the phase starting again, so the reboot's
 * timeout counts from there); from then on the reboot goes, and nothing
 * is drained again. */
/* run_reboot_drain's policy: allow_reboot, unless set. */
static int (*reboot_policy)(void *data, const char *name,
                            struct gm_switch_policy *o);

static void run_reboot_drain(bool other, bool drained, struct fx *f)
{
    static const char *const argv[] = {"reboot", "--confirm", "b007-0"};
    memset(f, 0, sizeof(*f));
    f->step = "reboot";
    f->argv = argv;
    f->argc = 3;
    f->phase = "Running";
    f->no_helper = true;
    f->other_pod = other;
    f->keep_posted = true;
    f->record = reboot_record(drained);
    th_ctl_start(&f->c, handler, f);
    f->c.ctl->policy_for = reboot_policy ? reboot_policy : allow_reboot;
    /* Until the step acts (an eviction, a helper, a record), then a while
     * longer for anything it should not do: past the drain's next look,
     * a second later, where a mistake of timing would first show. */
    for (int i = 0; i < 250 && !f->acted && !f->done; i++) {
        int never = 0;
        th_run_until(&f->c.loop, &never, 20);
    }
    int never = 0;
    th_run_until(&f->c.loop, &never, 1500);
    th_ctl_stop(&f->c);
}

static void test_other_pods_evicted_before_reboot(void **state)
{
    (void)state;
    struct fx f;
    struct gm_switch_record rec = {0};
    char err[256];

    run_reboot_drain(true, false, &f);
    assert_true(f.evictions >= 1);
    assert_int_equal(f.helper_posts, 0);
    assert_null(f.patched);
    free(f.record);

    /* Nothing left: the record says drained, still no helper. */
    run_reboot_drain(false, false, &f);
    assert_int_equal(f.evictions, 0);
    assert_int_equal(f.helper_posts, 0);
    assert_non_null(f.patched);
    assert_int_equal(gm_record_parse(f.patched, &rec, err, sizeof(err)), 0);
    assert_int_equal(rec.phase, GM_PHASE_REBOOT);
    assert_true(rec.reboot_drained);
    gm_record_clear(&rec);
    free(f.patched);
    free(f.record);

    /* Drained already: the reboot goes, a pod come since is left to it.
     * Its agent is told the boot to end (a second run on the next boot
     * leaves the node alone); its name is as before that was passed. */
    run_reboot_drain(true, true, &f);
    assert_int_equal(f.evictions, 0);
    assert_true(f.helper_posts >= 1);
    assert_non_null(f.posted);
    assert_non_null(strstr(f.posted, "\"reboot\",\"--confirm\",\"--boot-id\","
                                     "\"b007-0\""));
    free(f.posted);
    free(f.patched);
    free(f.record);
}

static int policy_gone(void *data, const char *name, struct gm_switch_policy *o)
{
    (void)data;
    (void)name;
    (void)o;
    return -ENOENT;
}

static int reboot_not_allowed(void *data, const char *name,
                              struct gm_switch_policy *o)
{
    (void)data;
    (void)name;
    o->allow_reboot = false;
    return 0;
}

/* The drain before a reboot is a drain: the policy deleted meanwhile
 * evicts nothing more (its drain options went with it), and
 * allowReboot turned off before the reboot stops it. Either fails the
 * switch, with a pod still on the node, rather than go on. */
static void test_reboot_drain_follows_the_policy(void **state)
{
    (void)state;
    static const struct {
        int (*policy)(void *, const char *, struct gm_switch_policy *);
        const char *reason;
        const char *message; /* in the record's message */
    } cases[] = {
        {policy_gone, "PolicyGone",
         "is gone or invalid while the node drains before its reboot"},
        {reboot_not_allowed, "RebootRequired", "allowReboot was turned off"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fx f;
        struct gm_switch_record rec = {0};
        char err[256];
        reboot_policy = cases[i].policy;
        run_reboot_drain(true, false, &f);
        reboot_policy = NULL;
        assert_int_equal(f.evictions, 0);
        assert_int_equal(f.helper_posts, 0);
        assert_non_null(f.patched);
        assert_int_equal(gm_record_parse(f.patched, &rec, err, sizeof(err)), 0);
        assert_string_equal(rec.reason, cases[i].reason);
        assert_non_null(strstr(rec.message, cases[i].message));
        assert_true(rec.rolling_back);
        gm_record_clear(&rec);
        free(f.patched);
        free(f.record);
    }
}

/* Parses the first record the node got (caller clears). */
static void patched_record(const struct fx *f, struct gm_switch_record *out)
{
    char err[256];
    assert_non_null(f->patched);
    assert_int_equal(gm_record_parse(f->patched, out, err, sizeof(err)), 0);
}

/* An agent pod that stays Running and nothing more comes about it (the
 * node's kubelet stopped reporting, so neither its deadline nor any event
 * is seen): the controller's own timeout still ends the wait. */
static void test_running_agent_times_out_without_events(void **state)
{
    (void)state;
    static const char *const argv[] = {"apply", "--mode", "vgpu",
                                       "--allow-reset", ""};
    struct fx f = {
        .step = "apply", .argv = argv, .argc = 5, .phase = "Running"};
    f.record = th_ctl_switch_record(GM_PHASE_RECONFIGURE, NULL);
    th_ctl_start(&f.c, handler, &f);
    f.c.cfg.helper_timeout_s = 1;
    f.c.ctl->policy_for = th_ctl_policy_split4;
    th_run_until(&f.c.loop, &f.done, 6000);
    th_ctl_stop(&f.c);
    struct gm_switch_record rec = {0};
    patched_record(&f, &rec);
    assert_string_equal(rec.reason, "HelperTimeout");
    assert_true(rec.rolling_back);
    gm_record_clear(&rec);
    free(f.patched);
    free(f.record);
}

/* Every create of the apply helper is refused (Pod Security on the
 * namespace): after helperTimeoutSeconds the switch fails quoting the
 * refusal, and, the agent never having run, rolls back without touching
 * the GPUs, a first switch (mode before unknown) too, where it used to
 * retry the create for ever with the node cordoned. */
static void test_refused_helper_fails_in_time(void **state)
{
    (void)state;
    struct fx f = {.pods_forbidden = true};
    struct gm_switch_record rec = {0};
    f.record = reconfiguring(GM_MODE_UNKNOWN, false);
    run_unposted(&f, 8000);
    assert_true(f.helper_posts >= 1);
    patched_record(&f, &rec);
    assert_string_equal(rec.reason, "HelperNotCreated");
    assert_non_null(strstr(rec.message, "violates PodSecurity"));
    assert_true(rec.rolling_back);
    assert_false(rec.reconfigured);
    assert_int_equal(rec.phase, GM_PHASE_START_CLIENTS);
    gm_record_clear(&rec);
    free(f.patched);
    free(f.record);
}

/* A pod webhook that is down (failurePolicy Fail) answers 500 until a
 * person fixes it: a refusal, failed in time like a 403. */
static void test_failing_webhook_is_a_refusal(void **state)
{
    (void)state;
    struct fx f = {.webhook_down = true};
    struct gm_switch_record rec = {0};
    f.record = reconfiguring(GM_MODE_FULL, false);
    run_unposted(&f, 8000);
    patched_record(&f, &rec);
    assert_string_equal(rec.reason, "HelperNotCreated");
    assert_non_null(strstr(rec.message, "failed calling webhook"));
    gm_record_clear(&rec);
    free(f.patched);
    free(f.record);
}

/* The API server out of reach (503) past helperTimeoutSeconds is not a
 * refusal: the create goes on being tried, and the switch waits. */
static void test_unavailable_api_is_not_a_refusal(void **state)
{
    (void)state;
    struct fx f = {.pods_unavailable = true};
    f.record = reconfiguring(GM_MODE_FULL, false);
    run_unposted(&f, 3500);
    assert_true(f.helper_posts >= 1);
    assert_null(f.patched);
    free(f.record);
}

/* A rollback whose own agent refuses before changing anything leaves the
 * hardware as the failed attempt left it: the node is held as changed
 * (reconfigured), never released later as if untouched. */
static void test_rollback_refusal_keeps_it_changed(void **state)
{
    (void)state;
    static const char *const argv[] = {"apply", "--mode", "full",
                                       "--allow-reset", ""};
    struct fx f = {.step = "rollback",
                   .argv = argv,
                   .argc = 5,
                   .phase = "Failed",
                   .term = "{\"ok\":false,\"command\":\"apply\","
                           "\"changed\":false,\"needs\":\"none\","
                           "\"reason\":\"GPUInUse\",\"message\":\"GPU 0 "
                           "is in use\"}"};
    struct gm_switch_record rec = {0};
    f.record = reconfiguring(GM_MODE_FULL, true);
    th_ctl_start(&f.c, handler, &f);
    th_run_until(&f.c.loop, &f.done, 5000);
    th_ctl_stop(&f.c);
    patched_record(&f, &rec);
    assert_string_equal(rec.reason, "GPUInUse");
    assert_int_equal(rec.phase, GM_PHASE_FAILED);
    assert_true(rec.reconfigured);
    gm_record_clear(&rec);
    free(f.patched);
    free(f.record);
}

/* The node came back with a new bootID but never becomes Ready: the
 * reboot timeout still fails the switch, rather than a wait for ever. */
static void test_rebooted_node_never_ready_times_out(void **state)
{
    (void)state;
    static const char *const argv[] = {"reboot", "--confirm", "b007-0"};
    struct fx f = {.step = "reboot",
                   .argv = argv,
                   .argc = 3,
                   .phase = "Running",
                   .boot_id = "b007-1"};
    struct gm_switch_record rec = {0};
    f.record = reboot_record(true);
    th_ctl_start(&f.c, handler, &f);
    f.c.cfg.reboot_timeout_s = 1;
    th_run_until(&f.c.loop, &f.done, 6000);
    th_ctl_stop(&f.c);
    patched_record(&f, &rec);
    assert_string_equal(rec.reason, "RebootTimeout");
    assert_non_null(strstr(rec.message, "bootID b007-1"));
    assert_non_null(strstr(rec.message, "not Ready"));
    gm_record_clear(&rec);
    free(f.patched);
    free(f.record);
}

/* The apply agent timed out and the rollback begins while its pod still
 * runs: the pod is deleted with its grace period (its object stays until
 * the kubelet ended it; a DELETE that failed is sent again), and the
 * rollback's agent is not posted until it ended, so two agents never run
 * nvidia-smi on the GPUs at once. */
static void test_next_helper_waits_for_a_running_one(void **state)
{
    (void)state;
    static const int never = 0;
    static const char *const argv[] = {"apply", "--mode", "vgpu",
                                       "--allow-reset", ""};
    struct fx f = {
        .step = "apply", .argv = argv, .argc = 5, .phase = "Running"};
    struct gm_switch_record rec = {0};
    char err[256];
    char *text = th_ctl_switch_record(GM_PHASE_RECONFIGURE, NULL);
    assert_int_equal(gm_record_parse(text, &rec, err, sizeof(err)), 0);
    free(text);
    rec.rolling_back = true;
    rec.reconfigured = true;
    f.record = gm_record_format(&rec);
    gm_record_clear(&rec);
    th_ctl_start(&f.c, handler, &f);
    f.c.ctl->policy_for = th_ctl_policy_split4;
    th_run_until(&f.c.loop, &never, 3000);
    assert_int_equal(f.helper_posts, 0);
    assert_int_equal(f.deletes, 2);
    assert_false(f.grace_zero);
    assert_non_null(strstr(gm_ctl_node_state(f.c.ctl, "gpu-001")->message,
                           "waiting for helper pod gpumode-"));
    th_ctl_stop(&f.c);
    free(f.patched);
    free(f.record);
}

/* A mig -> vgpu switch records the layout its probe found before the
 * apply helper starts. The probe is the node's first helper and pays the
 * image pull; its time is its own: the record it writes starts the
 * apply's helperTimeoutSeconds afresh, as the apply pod's own deadline
 * counts from its start. Judged from the phase's start instead, an agent
 * its deadline still allowed was failed (HelperTimeout) and deleted
 * midway by the rollback. */
static void test_probe_result_restarts_the_helper_timeout(void **state)
{
    (void)state;
    static const char *const probe_argv[] = {"probe", ""};
    static const char *const apply_argv[] = {"apply", "--mode", "vgpu",
                                             "--allow-reset", ""};
    struct fx f = {.step = "probe",
                   .argv = probe_argv,
                   .argc = 2,
                   .phase = "Succeeded",
                   .term = "{\"ok\":true,\"command\":\"probe\",\"gpus\":[{"
                           "\"index\":0,\"migCurrent\":\"Enabled\","
                           "\"instances\":{\"1g.10gb\":7}}]}"};
    struct gm_switch_record rec = {0};
    char err[256];
    char *text = reconfiguring(GM_MODE_MIG, false);
    assert_int_equal(gm_record_parse(text, &rec, err, sizeof(err)), 0);
    free(text);
    /* The probe took all but 10 s of helperTimeoutSeconds (900). */
    long long before = (long long)time(NULL);
    rec.since = before - (900 - 10);
    f.record = gm_record_format(&rec);
    gm_record_clear(&rec);
    run_to_first_write(&f, th_ctl_policy_split4, &rec);
    assert_int_equal(rec.phase, GM_PHASE_RECONFIGURE);
    assert_null(rec.reason);
    assert_non_null(rec.from_layout);
    assert_non_null(strstr(rec.from_layout, "1g.10gb"));
    assert_true(rec.since >= before);

    /* 20 s later the apply agent still runs: it is waited for, not failed
     * 10 s into its run. */
    rec.since -= 20;
    memset(&f, 0, sizeof(f));
    f.step = "apply";
    f.argv = apply_argv;
    f.argc = 5;
    f.phase = "Running";
    f.record = gm_record_format(&rec);
    gm_record_clear(&rec);
    static const int never = 0;
    th_ctl_start(&f.c, handler, &f);
    f.c.ctl->policy_for = th_ctl_policy_split4;
    th_run_until(&f.c.loop, &never, 1500);
    assert_null(f.patched);
    assert_int_equal(f.helper_posts, 0);
    assert_non_null(strstr(gm_ctl_node_state(f.c.ctl, "gpu-001")->message,
                           "agent running in pod gpumode-"));
    th_ctl_stop(&f.c);
    free(f.patched);
    free(f.record);
}

/* A rollback to mig whose probe found every GPU with MIG on and no
 * instance (recorded as []) has nothing to put back: the node is held,
 * saying why, with no helper made (the agent refused [] as an argument
 * error, and the status said nothing of the node's state). */
static void test_rollback_to_no_instances_holds(void **state)
{
    (void)state;
    static const char *const argv[] = {"rollback", ""};
    struct fx f = {.step = "rollback",
                   .argv = argv,
                   .argc = 2,
                   .phase = "Running",
                   .no_helper = true};
    struct gm_switch_record rec = {0};
    char err[256];
    char *text = reconfiguring(GM_MODE_MIG, true);
    assert_int_equal(gm_record_parse(text, &rec, err, sizeof(err)), 0);
    free(text);
    rec.reconfigured = true;
    assert_int_equal(gm_set_str(&rec.from_layout, "[]"), 0);
    f.record = gm_record_format(&rec);
    gm_record_clear(&rec);
    run_to_first_write(&f, th_ctl_policy_split4, &rec);
    assert_int_equal(f.helper_posts, 0);
    assert_int_equal(rec.phase, GM_PHASE_FAILED);
    assert_string_equal(rec.reason, "NoLayout");
    assert_non_null(strstr(rec.message, "every GPU had MIG on and no "
                                        "instance"));
    gm_record_clear(&rec);
}

/* Starts the switch of a node in Reconfiguring (the apply step, the
 * helper cache empty), with the GPU Operator's driver pod on it in state
 * driver ("ready" or "building") or none (NULL); the loop has not run
 * yet. */
static void start_apply(struct fx *f, const char *driver)
{
    static const char *const argv[] = {"apply", "--mode", "vgpu",
                                       "--allow-reset", ""};
    memset(f, 0, sizeof(*f));
    f->step = "apply";
    f->argv = argv;
    f->argc = 5;
    f->phase = "Running";
    f->no_helper = true;
    f->driver_pod = driver;
    f->record = th_ctl_switch_record(GM_PHASE_RECONFIGURE, NULL);
    th_ctl_start(&f->c, handler, f);
    f->c.ctl->policy_for = th_ctl_policy_split4;
}

/* Creates the apply helper of f's switch (start_apply, no driver pod)
 * under helperTimeoutSeconds timeout_s; f->posted is its pod. */
static void run_posting(struct fx *f, long timeout_s)
{
    start_apply(f, NULL);
    f->keep_posted = true;
    f->c.cfg.helper_timeout_s = timeout_s;
    th_run_until(&f->c.loop, &f->helper_posts, 3000);
    th_ctl_stop(&f->c);
    assert_non_null(f->posted);
}

/* After a reboot the node is Ready well before the GPU Operator's driver
 * container has built and loaded the driver, which the agent's
 * nvidia-smi needs: no helper starts while the node's driver pod is not
 * Ready, and the wait says why; once it is Ready the agent goes. */
static void test_agent_waits_for_the_driver_pod(void **state)
{
    (void)state;
    const char *states[] = {"building", "ready"};
    for (size_t i = 0; i < 2; i++) {
        struct fx f;
        start_apply(&f, states[i]);
        th_run_until(&f.c.loop, &f.helper_posts, 2500);
        char msg[512];
        snprintf(msg, sizeof(msg), "%s",
                 gm_ctl_node_state(f.c.ctl, "gpu-001")->message);
        th_ctl_stop(&f.c);
        if (i == 0) {
            assert_int_equal(f.helper_posts, 0);
            assert_string_equal(msg, "waiting for the GPU driver pod "
                                     "gpu-operator/nvidia-driver-daemonset-x "
                                     "to be Ready");
        } else {
            assert_true(f.helper_posts >= 1);
        }
        free(f.patched);
        free(f.record);
    }

    /* The driver pod becomes Ready after a wait: the phase's clock starts
     * again (a record written before the agent goes), so the wait is not
     * taken from the agent's helperTimeoutSeconds. */
    {
        struct fx g;
        struct gm_switch_record before = {0}, after = {0};
        char err[256];
        start_apply(&g, "building");
        assert_int_equal(gm_record_parse(g.record, &before, err, sizeof(err)),
                         0);
        int never = 0;
        th_run_until(&g.c.loop, &never, 2200); /* waits past a second */
        assert_int_equal(g.helper_posts, 0);
        assert_non_null(g.pod_watch);
        char ev[1024], obj[900];
        snprintf(obj, sizeof(obj), driver_pod_fmt, "True");
        /* The list's one item, as a MODIFIED event. */
        const char *item = strstr(obj, "{\"metadata\"");
        snprintf(ev, sizeof(ev), "{\"type\":\"MODIFIED\",\"object\":%.*s}\n",
                 (int)(strlen(item) - 2), item);
        th_stream_write(g.pod_watch, ev, strlen(ev));
        th_run_until(&g.c.loop, &g.done, 4000);
        th_ctl_stop(&g.c);
        assert_int_equal(g.helper_posts, 0);
        patched_record(&g, &after);
        assert_int_equal(after.phase, GM_PHASE_RECONFIGURE);
        assert_true(after.since > before.since);
        gm_record_clear(&before);
        gm_record_clear(&after);
        free(g.patched);
        free(g.record);
    }

    /* A driver that never comes: the switch fails at rebootTimeoutSeconds
     * (0 here), naming the pod, rather than wait for ever. */
    struct fx f;
    struct gm_switch_record rec = {0};
    start_apply(&f, "building");
    f.c.cfg.reboot_timeout_s = 0;
    th_run_until(&f.c.loop, &f.done, 4000);
    th_ctl_stop(&f.c);
    assert_int_equal(f.helper_posts, 0);
    patched_record(&f, &rec);
    assert_string_equal(rec.reason, "DriverNotReady");
    assert_non_null(strstr(rec.message,
                           "the GPU driver pod "
                           "gpu-operator/nvidia-driver-daemonset-x "
                           "is not Ready after 0s"));
    gm_record_clear(&rec);
    free(f.patched);
    free(f.record);
}

/* The agent waits up to 60 s for compute processes to exit before it
 * answers GPUInUse. Under a short helperTimeoutSeconds it gets a third of
 * it, so the answer (GPUs untouched) comes before the deadline rather than
 * a HelperTimeout that counts the hardware as changed; under the default
 * the flag is left out, as the pod's name hashes its arguments. */
static void test_short_helper_timeout_shortens_the_in_use_wait(void **state)
{
    (void)state;
    struct fx f = {0};
    run_posting(&f, 60);
    assert_non_null(strstr(f.posted, "\"--in-use-wait\",\"20\""));
    free(f.posted);
    free(f.record);

    struct fx d = {0};
    run_posting(&d, 900);
    assert_null(strstr(d.posted, "--in-use-wait"));
    assert_non_null(strstr(d.posted, "\"--allow-reset\""));
    free(d.posted);
    free(d.record);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failed_reboot_fails_at_once),
        cmocka_unit_test(test_other_helpers_wait),
        cmocka_unit_test(test_reboot_that_did_not_happen_fails),
        cmocka_unit_test(test_one_reboot_per_attempt),
        cmocka_unit_test(test_reboot_needs_the_boot_it_ends),
        cmocka_unit_test(test_apply_past_its_deadline),
        cmocka_unit_test(test_agent_log_tail_quoted),
        cmocka_unit_test(test_apply_start_error_is_untouched),
        cmocka_unit_test(test_other_pods_evicted_before_reboot),
        cmocka_unit_test(test_reboot_drain_follows_the_policy),
        cmocka_unit_test(test_hami_wait_is_recorded),
        cmocka_unit_test(test_untouched_refusal_is_not_held),
        cmocka_unit_test(test_refused_helper_fails_in_time),
        cmocka_unit_test(test_failing_webhook_is_a_refusal),
        cmocka_unit_test(test_unavailable_api_is_not_a_refusal),
        cmocka_unit_test(test_rollback_refusal_keeps_it_changed),
        cmocka_unit_test(test_running_agent_times_out_without_events),
        cmocka_unit_test(test_rebooted_node_never_ready_times_out),
        cmocka_unit_test(test_next_helper_waits_for_a_running_one),
        cmocka_unit_test(test_probe_result_restarts_the_helper_timeout),
        cmocka_unit_test(test_rollback_to_no_instances_holds),
        cmocka_unit_test(test_short_helper_timeout_shortens_the_in_use_wait),
        cmocka_unit_test(test_agent_waits_for_the_driver_pod),
        cmocka_unit_test(test_never_started_helper_is_untouched),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
