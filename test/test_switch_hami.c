/* The switch records in gpumode.io/settings what HAMi's per-node config
 * got, not what the plan asked: with HAMi's ConfigMap absent when the
 * node's entry is due, nothing is written and the record says {} (so the
 * node is switched again once the ConfigMap exists); with the entry in
 * place, the split. The record is written with the next phase, so a
 * restarted controller finishes with the same value.
 *
 * Real libcurl and libuv against the test server, which plays the API
 * server: one node in StartingClients to vgpu. Each case stops the
 * controller with the node write in flight, as a shutdown past its grace
 * period does: the write's end must not touch the freed controller (run
 * under ASan or valgrind, as make test does). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "common/json.h"
#include "nodeswitch/record.h"
#include "support/ctlfx.h"

#define SPLIT4 "{\"splitCount\":4,\"memoryScaling\":1,\"coreScaling\":1}"

struct fx {
    struct th_ctl c;
    char *record;      /* owned: the node's switch annotation */
    const char *cms;   /* the ConfigMapList's items */
    char *patched;     /* owned: the switch annotation the node patch wrote */
    char *settings;    /* owned: the gpumode.io/settings it wrote, or NULL */
    char *resources;   /* owned: the gpumode.io/resources it wrote, or NULL */
    bool gpus_removed; /* it wrote gpumode.io/gpus null (only full has it) */
    int done;
    int cm_writes;        /* ConfigMap PATCHes with config.json */
    const char *node_ann; /* JSON object added to the node's annotations */
    bool refuse_cms;      /* answer ConfigMap lists 403, as RBAC would */
    bool plugin_ready;    /* HAMi's plugin pod runs, ready */
    char *cm_patch;       /* owned: the first ConfigMap PATCH's body */
};

static void handler(void *ud, const struct th_req *r, struct th_conn *c)
{
    struct fx *f = ud;

    if (strstr(r->path, "watch=1")) {
        th_stream_start(c, 200); /* open, quiet */
        return;
    }
    if (strncmp(r->path, "/api/v1/nodes?", 14) == 0) {
        th_ctl_respond_node_with(c, f->record, NULL, f->node_ann);
        return;
    }
    if (strcmp(r->method, "PATCH") == 0 &&
        strcmp(r->path, "/api/v1/nodes/gpu-001") == 0) {
        json_object *patch = json_tokener_parse(r->body);
        const char *rec = json_object_get_string(gm_json_get(
            gm_json_get(gm_json_get(patch, "metadata"), "annotations"),
            GM_ANN_SWITCH));
        const char *set = json_object_get_string(gm_json_get(
            gm_json_get(gm_json_get(patch, "metadata"), "annotations"),
            GM_ANN_SETTINGS));
        if (rec && f->patched == NULL)
            f->patched = strdup(rec);
        if (set && f->settings == NULL)
            f->settings = strdup(set);
        const char *res = json_object_get_string(gm_json_get(
            gm_json_get(gm_json_get(patch, "metadata"), "annotations"),
            GM_ANN_RESOURCES));
        if (res && f->resources == NULL)
            f->resources = strdup(res);
        json_object *gpus = NULL;
        f->gpus_removed |=
            json_object_object_get_ex(
                gm_json_get(gm_json_get(patch, "metadata"), "annotations"),
                GM_ANN_GPUS, &gpus) &&
            gpus == NULL;
        json_object_put(patch);
        f->done = 1;
        th_respond(c, 200, NULL, "{}");
        return;
    }
    if (strcmp(r->method, "PATCH") == 0 && strstr(r->path, "/configmaps/")) {
        /* Entry writes; a leader also writes gpumode.io/hami-nodes alone
         * when it is not what the entries say (app/hami.h). */
        json_object *patch = json_tokener_parse(r->body);
        bool data = gm_json_get(patch, "data") != NULL;
        json_object_put(patch);
        f->cm_writes += data;
        if (f->cm_patch == NULL && data)
            f->cm_patch = strdup(r->body);
        th_respond(c, 200, NULL, "{}");
        return;
    }
    if (strcmp(r->method, "POST") == 0) {
        th_respond(c, 201, NULL, "{}"); /* events */
        return;
    }
    if (strstr(r->path, "/configmaps?") && f->refuse_cms) {
        th_respond(c, 403, NULL,
                   "{\"kind\":\"Status\",\"status\":\"Failure\",\"reason\":"
                   "\"Forbidden\",\"message\":\"configmaps is forbidden\","
                   "\"code\":403}");
        return;
    }
    if (strstr(r->path, "/configmaps?")) {
        char body[2048];
        snprintf(body, sizeof(body),
                 "{\"kind\":\"ConfigMapList\",\"metadata\":{"
                 "\"resourceVersion\":\"10\"},\"items\":[%s]}",
                 f->cms);
        th_respond(c, 200, NULL, body);
        return;
    }
    /* HAMi's plugin runs, ready, for the cases that verify. */
    th_respond(c, 200, NULL,
               f->refuse_cms || f->plugin_ready
                   ? "{\"kind\":\"PodList\",\"metadata\":{"
                     "\"resourceVersion\":\"10\"},\"items\":[{\"metadata\":{"
                     "\"name\":\"hami-plugin-1\",\"namespace\":\"kube-system\","
                     "\"uid\":\"hp\",\"labels\":{\"app.kubernetes.io/"
                     "component\":\"hami-device-plugin\"}},\"spec\":{"
                     "\"nodeName\":\"gpu-001\"},\"status\":{\"phase\":"
                     "\"Running\",\"conditions\":[{\"type\":\"Ready\","
                     "\"status\":\"True\"}]}}]}"
                   : "{\"kind\":\"PodList\",\"metadata\":{"
                     "\"resourceVersion\":\"10\"},\"items\":[]}");
}

/* Frees what the handler and the test kept of a run. */
static void fx_clear(struct fx *f)
{
    free(f->patched);
    free(f->settings);
    free(f->resources);
    free(f->cm_patch);
    free(f->record);
}

/* The HAMi ConfigMap with gpu-001's entry at split 4. */
static const char cm_with_entry[] =
    "{\"metadata\":{\"name\":\"hami-device-plugin\",\"namespace\":"
    "\"kube-system\",\"resourceVersion\":\"5\"},\"data\":{\"config.json\":"
    "\"{\\\"nodeconfig\\\":[{\\\"name\\\":\\\"gpu-001\\\","
    "\\\"operatingmode\\\":\\\"hami-core\\\",\\\"devicesplitcount\\\":4,"
    "\\\"devicememoryscaling\\\":1.0,\\\"devicecorescaling\\\":1.0}]}\"}}";

/* HAMi entries as the controller read them (the planner's view) in the
 * last run, for these names: "" when unknown (no ConfigMap, or a config
 * that does not parse), "none" when the name has no entry. */
static const char *const entry_names[] = {"gpu-001", "x", "y", "z", "w"};
static char last_entries[5][200];
#define last_entry last_entries[0]

/* Runs the switch from phase, planned with settings planned, until it
 * writes the node; returns the settings it wrote to gpumode.io/settings
 * (Finish) or else in its record (caller's). */
/* When set, the controller's hamiDefaultSplitCount for run. */
static int default_split;

static char *run(enum gm_phase phase, const char *planned, const char *cms,
                 int *cm_writes)
{
    struct fx f = {.cms = cms};
    struct gm_switch_record out = {0};
    char err[256];

    f.record = th_ctl_switch_record(phase, planned);

    th_ctl_start(&f.c, handler, &f);
    f.c.ctl->policy_for = th_ctl_policy_split4;
    if (default_split)
        f.c.cfg.hami_default_split = default_split;
    default_split = 0; /* for this run only, whatever happens next */
    assert_true(th_run_until(&f.c.loop, &f.done, 30000));
    const struct gm_map *entries = gm_ctl_hami_entries(f.c.ctl);
    for (size_t i = 0; i < 5; i++) {
        const char *e = entries ? gm_map_get(entries, entry_names[i]) : NULL;
        snprintf(last_entries[i], sizeof(last_entries[i]), "%s",
                 entries ? (e ? e : "none") : "");
    }
    th_ctl_stop(&f.c);
    char *settings = f.settings;
    if (phase == GM_PHASE_FINISH) {
        assert_null(f.patched); /* the record goes: null, not a string */
        /* What the verified node offers, for the planner to compare
         * later: the mode's resources, not HAMi's gpumem or a zero. */
        assert_non_null(f.resources);
        assert_string_equal(f.resources, "nvidia.com/vgpu=32");
        assert_true(f.gpus_removed);
    } else {
        assert_null(f.resources);
        assert_non_null(f.patched);
        assert_int_equal(gm_record_parse(f.patched, &out, err, sizeof(err)), 0);
        assert_int_equal(out.phase, GM_PHASE_VERIFY);
        assert_null(f.settings);
        settings = out.settings ? strdup(out.settings) : NULL;
        gm_record_clear(&out);
    }
    free(f.patched);
    free(f.resources);
    free(f.record);
    *cm_writes = f.cm_writes;
    return settings;
}

static void test_no_configmap_records_nothing_written(void **state)
{
    int writes;
    (void)state;
    char *s = run(GM_PHASE_START_CLIENTS, SPLIT4, "", &writes);
    assert_string_equal(s, "{}");
    assert_int_equal(writes, 0);
    assert_string_equal(last_entry, "");
    free(s);
}

/* The plan said no split (the policy gained one since): the record follows
 * the entry, which already has the policy's split. */
static void test_entry_in_place_records_the_split(void **state)
{
    int writes;
    (void)state;
    char *s = run(GM_PHASE_START_CLIENTS, "{}", cm_with_entry, &writes);
    assert_string_equal(s, SPLIT4);
    assert_int_equal(writes, 0);
    /* The planner compares the entry, read back, with the same text. */
    assert_string_equal(last_entry, SPLIT4);
    free(s);
}

/* Finish writes the recorded settings, unless HAMi's ConfigMap is gone by
 * then (our entry went with it; or an older gpumode recorded the plan). */
static void test_finish_writes_the_record_or_nothing_written(void **state)
{
    int writes;
    (void)state;
    char *s = run(GM_PHASE_FINISH, SPLIT4, cm_with_entry, &writes);
    assert_string_equal(s, SPLIT4);
    free(s);
    s = run(GM_PHASE_FINISH, SPLIT4, "", &writes);
    assert_string_equal(s, "{}");
    free(s);
}

/* What the planner compares with nodes' settings, read from entries as
 * people and HAMi's chart write them: other scalings, integers for
 * numbers, missing, null or non-positive fields (HAMi's defaults), a name
 * twice (each entry in turn, as HAMi reads them); and nothing from a
 * config HAMi cannot read. */
static void test_entries_as_the_planner_reads_them(void **state)
{
    int writes;
    (void)state;
    /* Finish reads no entry, so any config lets the run end. */
    char *s = run(
        GM_PHASE_FINISH, SPLIT4,
        "{\"metadata\":{\"name\":\"hami-device-plugin\",\"namespace\":"
        "\"kube-system\",\"resourceVersion\":\"5\"},\"data\":{\"config.json\":"
        "\"{\\\"nodeconfig\\\":["
        "{\\\"name\\\":\\\"x\\\",\\\"devicesplitcount\\\":2,"
        "\\\"devicememoryscaling\\\":1.5,\\\"devicecorescaling\\\":0.1},"
        "{\\\"name\\\":\\\"y\\\",\\\"devicesplitcount\\\":0,"
        "\\\"devicecorescaling\\\":null},"
        "{\\\"name\\\":\\\"z\\\",\\\"devicesplitcount\\\":3,"
        "\\\"devicecorescaling\\\":0.5},"
        "{\\\"name\\\":\\\"z\\\",\\\"devicesplitcount\\\":5,"
        "\\\"devicememoryscaling\\\":2},"
        "{\\\"devicesplitcount\\\":7}]}\"}}",
        &writes);
    free(s);
    assert_string_equal(last_entries[0], "none"); /* gpu-001 */
    assert_string_equal(last_entries[1],
                        "{\"splitCount\":2,\"memoryScaling\":1.5,"
                        "\"coreScaling\":0.10000000000000001}");
    /* Nothing HAMi takes: its defaults, as a node with no entry. */
    assert_string_equal(last_entries[2], "{}");
    /* Both of z's entries, the later's values over the earlier's. */
    assert_string_equal(
        last_entries[3],
        "{\"splitCount\":5,\"memoryScaling\":2,\"coreScaling\":0.5}");
    assert_string_equal(last_entries[4], "none");

    /* An entry with a scaling and no split runs with HAMi's default
     * split, which the controller's config says. */
    default_split = 4; /* run() takes it back */
    s = run(GM_PHASE_FINISH, SPLIT4,
            "{\"metadata\":{\"name\":\"hami-device-plugin\",\"namespace\":"
            "\"kube-system\",\"resourceVersion\":\"5\"},\"data\":{"
            "\"config.json\":\"{\\\"nodeconfig\\\":[{\\\"name\\\":\\\"x\\\","
            "\\\"devicememoryscaling\\\":1.5}]}\"}}",
            &writes);
    free(s);
    assert_string_equal(last_entries[1],
                        "{\"splitCount\":4,\"memoryScaling\":1.5,"
                        "\"coreScaling\":1}");

    s = run(GM_PHASE_FINISH, SPLIT4,
            "{\"metadata\":{\"name\":\"hami-device-plugin\",\"namespace\":"
            "\"kube-system\",\"resourceVersion\":\"5\"},\"data\":{"
            "\"config.json\":\"{not json\"}}",
            &writes);
    free(s);
    assert_string_equal(last_entries[0], "");
    /* JSON, but a type HAMi's decoder refuses: HAMi reads none of it. */
    s = run(GM_PHASE_FINISH, SPLIT4,
            "{\"metadata\":{\"name\":\"hami-device-plugin\",\"namespace\":"
            "\"kube-system\",\"resourceVersion\":\"5\"},\"data\":{"
            "\"config.json\":\"{\\\"nodeconfig\\\":[{\\\"name\\\":"
            "\\\"x\\\",\\\"devicecorescaling\\\":\\\"lots\\\"}]}\"}}",
            &writes);
    free(s);
    assert_string_equal(last_entries[1], "");
}

/* The node's entry a ConfigMap patch writes: "none" when the patch
 * leaves the node out, NULL when it is not a patch of config.json. */
static const char *patched_split(const char *body, char *buf, size_t len)
{
    json_object *p = json_tokener_parse(body);
    const char *text = json_object_get_string(
        gm_json_get(gm_json_get(p, "data"), "config.json"));
    json_object *cfg = text ? json_tokener_parse(text) : NULL;
    json_object *list = gm_json_get(cfg, "nodeconfig");
    const char *out = NULL;
    if (list) {
        snprintf(buf, len, "none");
        for (size_t i = 0; i < json_object_array_length(list); i++) {
            json_object *e = json_object_array_get_idx(list, i);
            if (strcmp(json_object_get_string(gm_json_get(e, "name")),
                       "gpu-001") == 0)
                snprintf(
                    buf, len, "%d",
                    json_object_get_int(gm_json_get(e, "devicesplitcount")));
        }
        out = buf;
    }
    json_object_put(cfg);
    json_object_put(p);
    return out;
}

/* The last ConfigMap patch run_back saw (owned). */
static char *last_patch;

/* gpu-001's entry with a GPU left out by a person, at split 4. */
static const char cm_with_filter[] =
    "{\"metadata\":{\"name\":\"hami-device-plugin\",\"namespace\":"
    "\"kube-system\",\"resourceVersion\":\"5\"},\"data\":{\"config.json\":"
    "\"{\\\"nodeconfig\\\":[{\\\"name\\\":\\\"gpu-001\\\","
    "\\\"filterdevices\\\":{\\\"uuid\\\":[\\\"GPU-x\\\"]},"
    "\\\"operatingmode\\\":\\\"hami-core\\\",\\\"devicesplitcount\\\":4,"
    "\\\"devicememoryscaling\\\":1.0,\\\"devicecorescaling\\\":1.0}]}\"}}";

/* A vgpu -> vgpu switch to split 4 that failed after the entry was
 * written rolls back: it puts back the entry the node was verified with
 * (its gpumode.io/settings) before the old clients start, or takes ours
 * out when the node had none. */
static void run_back(const char *verified_with, const char *cms, char *split,
                     size_t len)
{
    struct fx f = {.cms = cms};
    struct gm_switch_record rec = {0};
    char err[256], ann[256];
    char *text = th_ctl_switch_record(GM_PHASE_START_CLIENTS, SPLIT4);
    assert_int_equal(gm_record_parse(text, &rec, err, sizeof(err)), 0);
    free(text);
    rec.from = GM_MODE_VGPU;
    rec.rolling_back = true;
    rec.reconfigured = true;
    f.record = gm_record_format(&rec);
    gm_record_clear(&rec);
    json_object *a = json_object_new_object();
    json_object_object_add(a, GM_ANN_SETTINGS,
                           json_object_new_string(verified_with));
    snprintf(ann, sizeof(ann), "%s",
             json_object_to_json_string_ext(a, JSON_C_TO_STRING_PLAIN));
    json_object_put(a);
    f.node_ann = ann;
    th_ctl_start(&f.c, handler, &f);
    f.c.ctl->policy_for = th_ctl_policy_split4;
    assert_true(th_run_until(&f.c.loop, &f.cm_writes, 5000));
    th_ctl_stop(&f.c);
    /* The old clients wait for it: the node is not written before. */
    assert_int_equal(f.done, 0);
    assert_non_null(patched_split(f.cm_patch, split, len));
    free(last_patch);
    last_patch = f.cm_patch;
    free(f.patched);
    free(f.settings);
    free(f.resources);
    free(f.record);
}

static void test_rollback_puts_the_entry_back(void **state)
{
    (void)state;
    char split[16];
    run_back("{\"splitCount\":10,\"memoryScaling\":1,\"coreScaling\":1}",
             cm_with_entry, split, sizeof(split));
    assert_string_equal(split, "10");
    run_back("{}", cm_with_entry, split, sizeof(split));
    assert_string_equal(split, "none");
    /* What gpumode did not set stays: only its keys go. */
    run_back("{}", cm_with_filter, split, sizeof(split));
    assert_string_equal(split, "0");
    assert_non_null(strstr(last_patch, "filterdevices"));
    assert_null(strstr(last_patch, "hami-core"));
    free(last_patch);
    last_patch = NULL;
}

/* Verification counts the vGPUs the node's entry gives. While the
 * controller may not read HAMi's ConfigMap it does not count HAMi's
 * defaults instead: it waits, saying why, and fails at its timeout. */
static void test_verify_waits_to_read_the_entry(void **state)
{
    (void)state;
    struct fx f = {.refuse_cms = true};
    struct gm_switch_record out = {0};
    char err[256];
    f.record = th_ctl_switch_record(GM_PHASE_VERIFY, SPLIT4);
    th_ctl_start(&f.c, handler, &f);
    f.c.ctl->policy_for = th_ctl_policy_split4;
    f.c.cfg.clients_timeout_s = 1;
    assert_true(th_run_until(&f.c.loop, &f.done, 30000));
    th_ctl_stop(&f.c);
    assert_non_null(f.patched);
    assert_int_equal(gm_record_parse(f.patched, &out, err, sizeof(err)), 0);
    assert_string_equal(out.reason, "PluginNotReady");
    if (!strstr(out.message, "waiting to read HAMi's ConfigMap "
                             "kube-system/hami-device-plugin: the controller "
                             "may not read it (403 Forbidden"))
        fail_msg("message: %s", out.message);
    gm_record_clear(&out);
    fx_clear(&f);
}

/* A vgpu policy without splitCount: the node has no split of its own in
 * HAMi's ConfigMap, so HAMi's own deviceSplitCount applies, which the
 * controller is told (hamiDefaultSplitCount): 8 GPUs offered as 32 vGPUs
 * verify at 4, and do not at HAMi's shipped 10. */
static int policy_no_split(void *data, const char *name,
                           struct gm_switch_policy *o)
{
    (void)data;
    (void)name;
    o->has_vgpu_config = false;
    return 0;
}

static void verify_default_split(int split, struct gm_switch_record *out)
{
    struct fx f = {.plugin_ready = true,
                   .cms = "{\"metadata\":{\"name\":\"hami-device-plugin\","
                          "\"namespace\":\"kube-system\",\"resourceVersion\":"
                          "\"5\"},\"data\":{\"config.json\":"
                          "\"{\\\"nodeconfig\\\":[]}\"}}"};
    char err[256];
    struct gm_switch_record rec = {0};
    char *text = th_ctl_switch_record(GM_PHASE_VERIFY, "{}");
    assert_int_equal(gm_record_parse(text, &rec, err, sizeof(err)), 0);
    free(text);
    rec.gpus = 8; /* as the agent's result gave them */
    f.record = gm_record_format(&rec);
    gm_record_clear(&rec);
    f.node_ann = "{}";
    th_ctl_start(&f.c, handler, &f);
    f.c.ctl->policy_for = policy_no_split;
    f.c.cfg.clients_timeout_s = 1;
    f.c.cfg.hami_default_split = split;
    assert_true(th_run_until(&f.c.loop, &f.done, 30000));
    th_ctl_stop(&f.c);
    memset(out, 0, sizeof(*out));
    if (f.patched)
        assert_int_equal(gm_record_parse(f.patched, out, err, sizeof(err)), 0);
    else
        out->phase = GM_PHASE_FINISH; /* the record went: verified */
    fx_clear(&f);
}

static void test_verify_with_hami_default_split(void **state)
{
    (void)state;
    struct gm_switch_record out;
    verify_default_split(4, &out);
    if (out.phase != GM_PHASE_FINISH)
        fail_msg("phase %d reason %s message %s", out.phase,
                 out.reason ? out.reason : "-",
                 out.message ? out.message : "-");
    gm_record_clear(&out);
    verify_default_split(10, &out);
    assert_string_equal(out.reason, "PluginNotReady");
    if (!strstr(out.message, "nvidia.com/vgpu=32, expected 80"))
        fail_msg("message: %s", out.message);
    gm_record_clear(&out);
}

/* A rollback into vgpu (a vgpu -> full switch failed after the GPUs
 * changed) under a refused HAMi ConfigMap does not wait for the entry:
 * failing, a rollback holds the node cordoned. It asks only that vGPUs
 * be offered, and finishes rolled back with the first failure's reason. */
static void test_rollback_into_vgpu_goes_on_unread(void **state)
{
    (void)state;
    struct fx f = {.refuse_cms = true};
    struct gm_switch_record rec = {0}, out = {0};
    char err[256];
    char *text = th_ctl_switch_record(GM_PHASE_VERIFY, NULL);
    assert_int_equal(gm_record_parse(text, &rec, err, sizeof(err)), 0);
    free(text);
    rec.from = GM_MODE_VGPU;
    rec.to = GM_MODE_FULL;
    rec.rolling_back = true;
    rec.reconfigured = true;
    assert_int_equal(gm_set_str(&rec.reason, "NvidiaSmiFailed"), 0);
    f.record = gm_record_format(&rec);
    gm_record_clear(&rec);
    f.node_ann = "{\"gpumode.io/settings\":"
                 "\"{\\\"splitCount\\\":4}\"}";
    th_ctl_start(&f.c, handler, &f);
    f.c.ctl->policy_for = th_ctl_policy_split4;
    f.c.cfg.clients_timeout_s = 1;
    assert_true(th_run_until(&f.c.loop, &f.done, 30000));
    th_ctl_stop(&f.c);
    assert_non_null(f.patched);
    assert_int_equal(gm_record_parse(f.patched, &out, err, sizeof(err)), 0);
    assert_int_equal(out.phase, GM_PHASE_FAILED);
    assert_string_equal(out.reason, "NvidiaSmiFailed");
    gm_record_clear(&out);
    fx_clear(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_configmap_records_nothing_written),
        cmocka_unit_test(test_entry_in_place_records_the_split),
        cmocka_unit_test(test_finish_writes_the_record_or_nothing_written),
        cmocka_unit_test(test_entries_as_the_planner_reads_them),
        cmocka_unit_test(test_rollback_puts_the_entry_back),
        cmocka_unit_test(test_verify_waits_to_read_the_entry),
        cmocka_unit_test(test_verify_with_hami_default_split),
        cmocka_unit_test(test_rollback_into_vgpu_goes_on_unread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
