/* The node switch's pure parts: the switch record (the node annotation a
 * restarted controller resumes from), drain rules, helper pod names and
 * spec, and the resources a mode must advertise. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "app/profile.h"
#include "planner/pluginconfig.h"
#include "common/json.h"
#include "common/strsel.h"
#include "nodeswitch/drain.h"
#include "nodeswitch/helperpod.h"
#include "nodeswitch/record.h"
#include "nodeswitch/switch.h"
#include "support/planner_nodes.h"

static void test_record_round_trip(void **state)
{
    (void)state;
    struct gm_switch_record r, back;
    char err[256];

    memset(&r, 0, sizeof(r));
    r.from = GM_MODE_FULL;
    r.to = GM_MODE_MIG;
    r.phase = GM_PHASE_STOP_CLIENTS;
    r.since = 1795637433;
    r.started = 1795637400;
    r.attempt = 2;
    r.cordoned = true;
    r.reconfigured = true;
    r.releasing = true;
    r.reboot_drained = true;
    r.gpus = 8;
    assert_int_equal(gm_set_str(&r.policy, "inference"), 0);
    assert_int_equal(gm_set_str(&r.layout, "[{\"devices\":\"all\"}]"), 0);
    assert_int_equal(gm_set_str(&r.strategy, "mixed"), 0);
    assert_int_equal(gm_set_str(&r.gpu_uuids, "GPU-a,GPU-b"), 0);
    assert_int_equal(gm_set_str(&r.settings, "{\"strategy\":\"mixed\"}"), 0);
    assert_int_equal(
        gm_record_save_label(&r, "nvidia.com/gpu.deploy.dcgm", "true"), 0);
    assert_int_equal(gm_record_save_label(&r, "absent.example/x", NULL), 0);
    /* A second save keeps the first old value. */
    assert_int_equal(
        gm_record_save_label(&r, "nvidia.com/gpu.deploy.dcgm", "false"), 0);
    char *json = gm_record_format(&r);
    assert_non_null(strstr(json, "\"since\":\"2026-11-25T20:10:33Z\""));
    assert_int_equal(gm_record_parse(json, &back, err, sizeof(err)), 0);
    assert_string_equal(back.policy, "inference");
    assert_int_equal(back.from, GM_MODE_FULL);
    assert_int_equal(back.to, GM_MODE_MIG);
    assert_int_equal(back.phase, GM_PHASE_STOP_CLIENTS);
    assert_int_equal(back.since, 1795637433);
    assert_int_equal(back.started, 1795637400);
    assert_int_equal(back.attempt, 2);
    assert_true(back.cordoned);
    assert_true(back.reconfigured);
    assert_int_equal(back.gpus, 8);
    assert_string_equal(back.gpu_uuids, "GPU-a,GPU-b");
    assert_false(back.rolling_back);
    assert_true(back.releasing);
    assert_true(back.reboot_drained);
    assert_string_equal(back.layout, "[{\"devices\":\"all\"}]");
    assert_string_equal(back.settings, "{\"strategy\":\"mixed\"}");
    assert_int_equal(back.n_saved, 2);
    const struct gm_saved_label *l =
        gm_record_saved(&back, "nvidia.com/gpu.deploy.dcgm");
    assert_non_null(l);
    assert_string_equal(l->value, "true");
    l = gm_record_saved(&back, "absent.example/x");
    assert_non_null(l);
    assert_null(l->value);
    free(json);
    gm_record_clear(&r);
    gm_record_clear(&back);
}

static void test_record_errors_name_the_field(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        const char *expect;
    } cases[] = {
        {"not json", "switch: not a JSON object"},
        {"[1]", "switch: not a JSON object"},
        {"{\"to\":\"mig\",\"phase\":\"Draining\"}", "switch.policy: required"},
        {"{\"policy\":\"p\",\"to\":\"gpu\",\"phase\":\"Draining\"}",
         "switch.to: \"gpu\" is not full, vgpu or mig"},
        {"{\"policy\":\"p\",\"from\":\"x\",\"to\":\"mig\",\"phase\":"
         "\"Draining\"}",
         "switch.from"},
        {"{\"policy\":\"p\",\"to\":\"mig\",\"phase\":\"Sleeping\"}",
         "switch.phase: unknown phase \"Sleeping\""},
        {"{\"policy\":\"p\",\"to\":\"mig\"}", "switch.phase: required"},
        {"{\"policy\":7,\"to\":\"mig\",\"phase\":\"Draining\"}",
         "switch.policy: must be a string"},
        {"{\"policy\":\"p\",\"to\":\"mig\",\"phase\":\"Draining\","
         "\"labels\":[]}",
         "switch.labels: must be an object"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct gm_switch_record r;
        char err[256] = "";
        assert_int_equal(gm_record_parse(cases[i].json, &r, err, sizeof(err)),
                         -EINVAL);
        if (strstr(err, cases[i].expect) == NULL)
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err, cases[i].expect);
        assert_null(r.policy);
    }
}

static void test_record_unknown_from_is_allowed(void **state)
{
    (void)state;
    struct gm_switch_record r;
    char err[256];
    assert_int_equal(gm_record_parse("{\"policy\":\"p\",\"to\":\"vgpu\","
                                     "\"phase\":\"Failed\",\"since\":5}",
                                     &r, err, sizeof(err)),
                     0);
    assert_int_equal(r.from, GM_MODE_UNKNOWN);
    assert_int_equal(r.phase, GM_PHASE_FAILED);
    assert_int_equal(r.since, 5);
    assert_int_equal(r.attempt, 1);
    gm_record_clear(&r);
    /* Times RFC 3339 cannot write read as unknown (0), so what is written
     * reads back the same (found by fuzz_record). */
    assert_int_equal(gm_record_parse("{\"policy\":\"p\",\"to\":\"vgpu\","
                                     "\"phase\":\"Failed\",\"since\":"
                                     "122222222222222222}",
                                     &r, err, sizeof(err)),
                     0);
    assert_int_equal(r.since, 0);
    char *json = gm_record_format(&r);
    assert_non_null(strstr(json, "\"since\":\"1970-01-01T00:00:00Z\""));
    free(json);
    gm_record_clear(&r);
}

/* ---- drain ---- */

static struct gm_pod pod(const char *ns, const char *owner, bool gpu)
{
    struct gm_pod p;
    memset(&p, 0, sizeof(p));
    p.namespace = (char *)(uintptr_t)ns;
    p.name = (char *)(uintptr_t) "p";
    p.owner_kind = (char *)(uintptr_t)owner;
    p.uses_gpu = gpu;
    p.phase = GM_POD_RUNNING;
    return p;
}

static void test_drain_rules(void **state)
{
    (void)state;
    struct gm_drain_opts o = {.gpu_pods_only = true,
                              .own_namespace = "gpumode-system"};
    char why[256];
    struct gm_pod p;

    p = pod("default", "ReplicaSet", true);
    assert_int_equal(gm_drain_classify(&o, &p, why, sizeof(why)),
                     GM_DRAIN_EVICT);
    p = pod("default", "ReplicaSet", false);
    assert_int_equal(gm_drain_classify(&o, &p, why, sizeof(why)),
                     GM_DRAIN_SKIP);
    o.gpu_pods_only = false;
    assert_int_equal(gm_drain_classify(&o, &p, why, sizeof(why)),
                     GM_DRAIN_EVICT);
    p = pod("gpu-operator", "DaemonSet", true);
    assert_int_equal(gm_drain_classify(&o, &p, why, sizeof(why)),
                     GM_DRAIN_SKIP);
    p = pod("gpumode-system", NULL, true);
    assert_int_equal(gm_drain_classify(&o, &p, why, sizeof(why)),
                     GM_DRAIN_SKIP);
    p = pod("default", NULL, true);
    p.mirror = true;
    assert_int_equal(gm_drain_classify(&o, &p, why, sizeof(why)),
                     GM_DRAIN_SKIP);
    /* Unmanaged: blocked unless force. */
    p = pod("default", NULL, true);
    assert_int_equal(gm_drain_classify(&o, &p, why, sizeof(why)),
                     GM_DRAIN_BLOCKED);
    assert_non_null(strstr(why, "spec.rollout.drain.force"));
    o.force = true;
    assert_int_equal(gm_drain_classify(&o, &p, why, sizeof(why)),
                     GM_DRAIN_EVICT);
    /* emptyDir: blocked unless deleteEmptyDirData. */
    p = pod("default", "Job", true);
    p.empty_dir = true;
    assert_int_equal(gm_drain_classify(&o, &p, why, sizeof(why)),
                     GM_DRAIN_BLOCKED);
    assert_non_null(strstr(why, "deleteEmptyDirData"));
    o.delete_empty_dir = true;
    assert_int_equal(gm_drain_classify(&o, &p, why, sizeof(why)),
                     GM_DRAIN_EVICT);
    /* Finished pods go, terminating ones are waited for. */
    p = pod("default", NULL, true);
    p.phase = GM_POD_SUCCEEDED;
    o.force = false;
    assert_int_equal(gm_drain_classify(&o, &p, why, sizeof(why)),
                     GM_DRAIN_EVICT);
    p = pod("default", "ReplicaSet", true);
    p.deleting = true;
    assert_int_equal(gm_drain_classify(&o, &p, why, sizeof(why)),
                     GM_DRAIN_TERMINATING);
}

static void test_drain_selectors(void **state)
{
    (void)state;
    struct gm_strsel *narrow, *wait;
    char err[128], why[256];
    assert_int_equal(
        gm_strsel_parse("team in (a,b)", &narrow, err, sizeof(err)), 0);
    assert_int_equal(
        gm_strsel_parse("job-type=training", &wait, err, sizeof(err)), 0);
    struct gm_drain_opts o = {.gpu_pods_only = true, .pod_selector = narrow};
    struct gm_pod p = pod("default", "ReplicaSet", true);
    /* Without labels the pod is outside "team in (a,b)". */
    assert_int_equal(gm_drain_classify(&o, &p, why, sizeof(why)),
                     GM_DRAIN_SKIP);
    struct gm_label labels[] = {{"job-type=training"}, {"team=a"}};
    p.labels = labels;
    p.n_labels = 2;
    assert_int_equal(gm_drain_classify(&o, &p, why, sizeof(why)),
                     GM_DRAIN_EVICT);
    /* waitForCompletion pods are waited for, never evicted. */
    o.wait_selector = wait;
    assert_int_equal(gm_drain_classify(&o, &p, why, sizeof(why)),
                     GM_DRAIN_WAIT);
    assert_string_equal(why, "waiting for completion");
    labels[0].kv = "job-type=serving";
    assert_int_equal(gm_drain_classify(&o, &p, why, sizeof(why)),
                     GM_DRAIN_EVICT);
    /* The wait selector names its pods on its own: outside the drain's
     * podSelector, or using no GPU under gpuPodsOnly, they are still
     * waited for (not skipped, then killed by the agent's GPUInUse or the
     * reconfiguration). */
    labels[0].kv = "job-type=training";
    labels[1].kv = "team=c";
    p.uses_gpu = false;
    assert_int_equal(gm_drain_classify(&o, &p, why, sizeof(why)),
                     GM_DRAIN_WAIT);
    /* Finished, it is what was waited for: left alone, logs and all. */
    p.phase = GM_POD_SUCCEEDED;
    assert_int_equal(gm_drain_classify(&o, &p, why, sizeof(why)),
                     GM_DRAIN_SKIP);
    /* Deleted by its owner after a long run, it is still waited for under
     * waitForCompletion's limit: the drain's timeout counts from the
     * start of Draining and would fire at once. */
    p.phase = GM_POD_RUNNING;
    p.deleting = true;
    assert_int_equal(gm_drain_classify(&o, &p, why, sizeof(why)),
                     GM_DRAIN_WAIT);
    assert_string_equal(why, "terminating");
    gm_strsel_free(narrow);
    gm_strsel_free(wait);
}

/* ---- helper pods ---- */

static void test_helper_pod_name_is_deterministic(void **state)
{
    (void)state;
    const char *argv1[] = {"apply", "--mode", "mig"};
    const char *argv2[] = {"apply", "--mode", "full"};
    struct gm_helper_step a = {.node = "gpu-007.example.com",
                               .step = "apply",
                               .attempt = 1,
                               .argv = argv1,
                               .argc = 3};
    char n1[64], n2[64], n3[64];
    gm_helper_pod_name(&a, n1, sizeof(n1));
    gm_helper_pod_name(&a, n2, sizeof(n2));
    assert_string_equal(n1, n2);
    assert_non_null(strstr(n1, "gpumode-gpu-007-example-com-apply-"));
    assert_null(strchr(n1, '.'));
    a.argv = argv2;
    gm_helper_pod_name(&a, n3, sizeof(n3));
    assert_string_not_equal(n1, n3);
    a.argv = argv1;
    a.attempt = 2;
    gm_helper_pod_name(&a, n3, sizeof(n3));
    assert_string_not_equal(n1, n3);
    /* A 253-character node name still gives a DNS label. */
    char longname[254];
    memset(longname, 'a', 253);
    longname[253] = '\0';
    a.node = longname;
    gm_helper_pod_name(&a, n3, sizeof(n3));
    assert_true(strlen(n3) <= 63);
}

static void test_helper_pod_spec(void **state)
{
    (void)state;
    const char *argv[] = {"apply", "--mode", "vgpu", "--allow-reset"};
    struct gm_helper_config c = {.namespace = "gpumode-system",
                                 .image = "gpumode/agent:dev",
                                 .driver_root = "/run/nvidia/driver",
                                 .nvidia_smi = "/usr/bin/nvidia-smi"};
    struct gm_helper_step s = {
        .node = "n1", .step = "apply", .attempt = 1, .argv = argv, .argc = 4};
    json_object *p = gm_helper_pod(&c, &s);
    const char *js = json_object_to_json_string_ext(p, JSON_C_TO_STRING_PLAIN);
    assert_non_null(strstr(js, "\"nodeName\":\"n1\""));
    assert_non_null(strstr(js, "\"restartPolicy\":\"Never\""));
    assert_non_null(strstr(js, "\"tolerations\":[{\"operator\":\"Exists\"}]"));
    assert_non_null(strstr(js, "\"privileged\":true,\"runAsUser\":0,"
                               "\"runAsGroup\":0"));
    assert_non_null(strstr(js, "\"command\":[\"gpumode-agent\",\"apply\","
                               "\"--mode\",\"vgpu\",\"--allow-reset\"]"));
    assert_non_null(strstr(js, "\"path\":\"\\/run\\/nvidia\\/driver\""));
    /* nvidia-smi runs chrooted into the mounted driver root, so the path
     * is the one inside it. */
    assert_non_null(strstr(js, "{\"name\":\"NVIDIA_SMI\",\"value\":"
                               "\"\\/usr\\/bin\\/nvidia-smi\"}"));
    assert_non_null(strstr(js, "{\"name\":\"GPUMODE_DRIVER_ROOT\",\"value\":"
                               "\"\\/driver-root\"}"));
    assert_null(strstr(js, "NVIDIA_VISIBLE_DEVICES"));
    assert_non_null(strstr(js, "\"mountPropagation\":\"HostToContainer\""));
    /* The agent sees the host's processes on the GPUs. */
    assert_non_null(strstr(js, "\"hostPID\":true"));
    assert_non_null(strstr(js, "\"automountServiceAccountToken\":false"));
    /* An agent that leaves no result is failed with its log's tail. */
    assert_non_null(strstr(js, "\"terminationMessagePolicy\":"
                               "\"FallbackToLogsOnError\""));
    json_object_put(p);

    /* With the NVIDIA runtime class, no host path is mounted; a reboot
     * helper shares the host PID namespace too. */
    const char *rargv[] = {"reboot", "--confirm"};
    c.runtime_class = "nvidia";
    s.step = "reboot";
    s.argv = rargv;
    s.argc = 2;
    p = gm_helper_pod(&c, &s);
    js = json_object_to_json_string_ext(p, JSON_C_TO_STRING_PLAIN);
    assert_non_null(strstr(js, "\"runtimeClassName\":\"nvidia\""));
    assert_null(strstr(js, "hostPath"));
    assert_non_null(strstr(js, "\"hostPID\":true"));
    /* The runtime injects the tools, and MIG's capabilities on request. */
    assert_null(strstr(js, "GPUMODE_DRIVER_ROOT"));
    assert_non_null(strstr(js, "{\"name\":\"NVIDIA_VISIBLE_DEVICES\","
                               "\"value\":\"all\"}"));
    assert_non_null(strstr(js, "{\"name\":\"NVIDIA_MIG_CONFIG_DEVICES\","
                               "\"value\":\"all\"}"));
    assert_non_null(strstr(js, "{\"name\":\"NVIDIA_DRIVER_CAPABILITIES\","
                               "\"value\":\"utility\"}"));
    json_object_put(p);

    /* A node name longer than a label value's 63 characters (up to 253
     * are valid) is pinned whole and cut in the label, which must stay a
     * valid value (ending in an alphanumeric) or the API server refuses
     * the pod. */
    char longname[254];
    memset(longname, 'a', 253);
    longname[253] = '\0';
    memcpy(longname + 60, "-.-x", 4); /* characters 61-63 are "-.-" */
    s.node = longname;
    p = gm_helper_pod(&c, &s);
    json_object *spec = gm_json_get(p, "spec");
    json_object *lbl = gm_json_get(gm_json_get(p, "metadata"), "labels");
    assert_string_equal(gm_json_str(spec, "nodeName"), longname);
    const char *v = gm_json_str(lbl, GM_HELPER_NODE_LABEL);
    assert_non_null(v);
    assert_int_equal(strlen(v), 60);
    assert_memory_equal(v, longname, 60);
    json_object_put(p);
}

/* ---- expected resources ---- */

static void test_expected_resources(void **state)
{
    (void)state;
    const struct gm_profile *op = gm_profile_preset("gpu-operator-hami");
    const struct gm_profile *hami = gm_profile_preset("hami");
    const char *names[8];
    long long counts[8];
    char buf[512];

    assert_non_null(op);
    assert_non_null(hami);
    assert_null(gm_profile_preset("nope"));
    assert_int_equal(gm_switch_expected(op, GM_MODE_FULL, NULL, NULL, 8, 1,
                                        names, counts, 8, buf, sizeof(buf)),
                     1);
    assert_string_equal(names[0], "nvidia.com/gpu");
    assert_int_equal(counts[0], 8);
    /* Time-sliced with 4 replicas: the plugin advertises 4 per GPU. */
    gm_switch_expected(op, GM_MODE_FULL, NULL, NULL, 8, 4, names, counts, 8,
                       buf, sizeof(buf));
    assert_string_equal(names[0], "nvidia.com/gpu");
    assert_int_equal(counts[0], 32);
    assert_int_equal(gm_switch_expected(op, GM_MODE_VGPU, NULL, NULL, 8, 4,
                                        names, counts, 8, buf, sizeof(buf)),
                     1);
    assert_string_equal(names[0], "nvidia.com/vgpu");
    assert_int_equal(counts[0], 32);
    gm_switch_expected(hami, GM_MODE_VGPU, NULL, NULL, 2, 10, names, counts, 8,
                       buf, sizeof(buf));
    assert_string_equal(names[0], "nvidia.com/gpu");
    assert_int_equal(counts[0], 20);

    /* GPUs 0-1 seven 1g.10gb; every other GPU (6 of 8) two 3g.40gb and one
     * 1g.10gb. */
    const char *layout =
        "[{\"devices\":[0,1],\"migEnabled\":true,\"migDevices\":"
        "{\"1g.10gb\":7}},{\"devices\":\"all\",\"migEnabled\":true,"
        "\"migDevices\":{\"3g.40gb\":2,\"1g.10gb\":1}}]";
    size_t n = gm_switch_expected(op, GM_MODE_MIG, layout, "mixed", 8, 10,
                                  names, counts, 8, buf, sizeof(buf));
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(names[i], "nvidia.com/mig-1g.10gb") == 0)
            assert_int_equal(counts[i], 14 + 6);
        else if (strcmp(names[i], "nvidia.com/mig-3g.40gb") == 0)
            assert_int_equal(counts[i], 12);
        else
            fail_msg("unexpected resource %s", names[i]);
    }
    /* single strategy: every instance is an nvidia.com/gpu. */
    n = gm_switch_expected(op, GM_MODE_MIG, layout, "single", 8, 10, names,
                           counts, 8, buf, sizeof(buf));
    assert_int_equal(n, 1);
    assert_string_equal(names[0], "nvidia.com/gpu");
    assert_int_equal(counts[0], 14 + 18);
    /* +me profiles become .me in resource names; a broken layout gives
     * nothing to expect. */
    n = gm_switch_expected(op, GM_MODE_MIG,
                           "[{\"migEnabled\":true,\"migDevices\":{\"1g.10gb+"
                           "me\":1}}]",
                           "mixed", 2, 10, names, counts, 8, buf, sizeof(buf));
    assert_int_equal(n, 1);
    assert_string_equal(names[0], "nvidia.com/mig-1g.10gb.me");
    assert_int_equal(counts[0], 2);
    assert_int_equal(gm_switch_expected(op, GM_MODE_MIG, "{oops", "mixed", 2,
                                        10, names, counts, 8, buf, sizeof(buf)),
                     0);
}

/* Outside mig the config label is the node's own: the value saved while
 * in mig, else the current one unless it is a strategy gpumode wrote. */
static void test_profile_own_config(void **state)
{
    (void)state;
    const struct gm_profile *op = gm_profile_preset("gpu-operator-hami");
    const char *k[GM_PROFILE_MAX_LABELS + 1], *v[GM_PROFILE_MAX_LABELS + 1];
    const char *cfg = "unset";

    assert_string_equal(gm_plugin_config_own("ts-4", "mixed"), "ts-4");
    assert_string_equal(gm_plugin_config_own(NULL, "ts-4"), "ts-4");
    assert_null(gm_plugin_config_own(NULL, "mixed"));
    assert_null(gm_plugin_config_own(NULL, "single"));
    assert_null(gm_plugin_config_own(NULL, NULL));
    assert_true(gm_plugin_config_is_strategy("single"));
    assert_false(gm_plugin_config_is_strategy("single-ts"));
    assert_false(gm_plugin_config_is_strategy(NULL));
    size_t n = gm_profile_start_labels(op, GM_MODE_FULL, NULL, "ts-4", k, v);
    for (size_t i = 0; i < n; i++)
        if (strcmp(k[i], "nvidia.com/device-plugin.config") == 0)
            cfg = v[i];
    assert_non_null(cfg);
    assert_string_equal(cfg, "ts-4");
}

static void test_profile_start_labels(void **state)
{
    (void)state;
    const struct gm_profile *op = gm_profile_preset("gpu-operator-hami");
    const char *k[GM_PROFILE_MAX_LABELS + 1], *v[GM_PROFILE_MAX_LABELS + 1];
    size_t n = gm_profile_start_labels(op, GM_MODE_MIG, "single", "ts-4", k, v);
    int dp = 0, cfg = 0, mm = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(k[i], "nvidia.com/gpu.deploy.device-plugin") == 0)
            dp = strcmp(v[i], "true") == 0;
        if (strcmp(k[i], "nvidia.com/device-plugin.config") == 0)
            cfg = strcmp(v[i], "single") == 0;
        if (strcmp(k[i], "nvidia.com/gpu.deploy.mig-manager") == 0)
            mm = strcmp(v[i], "false") == 0;
    }
    assert_true(dp && cfg && mm);
    /* In vgpu HAMi's plugin runs instead of NVIDIA's, mig-manager stays
     * off, and with no config of its own the config label is removed
     * (null): each is seen, with its value. */
    n = gm_profile_start_labels(op, GM_MODE_VGPU, NULL, NULL, k, v);
    int vdp = 0;
    dp = cfg = mm = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(k[i], "nvidia.com/gpu.deploy.device-plugin") == 0)
            dp = v[i] && strcmp(v[i], "false") == 0;
        if (strcmp(k[i], "nvidia.com/vgpu.deploy.device-plugin") == 0)
            vdp = v[i] && strcmp(v[i], "true") == 0;
        if (strcmp(k[i], "nvidia.com/device-plugin.config") == 0)
            cfg = v[i] == NULL;
        if (strcmp(k[i], "nvidia.com/gpu.deploy.mig-manager") == 0)
            mm = v[i] && strcmp(v[i], "false") == 0;
    }
    assert_true(dp);
    assert_true(vdp);
    assert_true(cfg);
    assert_true(mm);
}

/* Both presets run under the GPU Operator (the NVIDIA plugin follows its
 * operand label), so both stop every GPU client the operator runs while
 * the hardware changes, and keep mig-manager off in every mode. */
static void test_profiles_stop_every_gpu_client(void **state)
{
    (void)state;
    static const char *const names[] = {"gpu-operator-hami", "hami"};
    static const char *const stopped[] = {
        "nvidia.com/gpu.deploy.device-plugin",
        "nvidia.com/gpu.deploy.gpu-feature-discovery",
        "nvidia.com/gpu.deploy.dcgm-exporter", "nvidia.com/gpu.deploy.dcgm",
        "nvidia.com/gpu.deploy.mig-manager"};
    for (size_t i = 0; i < 2; i++) {
        const struct gm_profile *p = gm_profile_preset(names[i]);
        assert_non_null(p);
        for (size_t j = 0; j < sizeof(stopped) / sizeof(*stopped); j++) {
            size_t k = 0;
            while (k < p->stop.n && strcmp(p->stop.key[k], stopped[j]) != 0)
                k++;
            if (k == p->stop.n || strcmp(p->stop.value[k], "false") != 0)
                fail_msg("%s: %s not stopped", names[i], stopped[j]);
        }
        assert_int_equal(p->n_clients, 6);
        for (int m = GM_MODE_FULL; m <= GM_MODE_MIG; m++) {
            const char *k[GM_PROFILE_MAX_LABELS + 1];
            const char *v[GM_PROFILE_MAX_LABELS + 1];
            size_t n = gm_profile_start_labels(p, (enum gm_mode)m, "mixed",
                                               NULL, k, v);
            size_t x = 0;
            while (x < n && strcmp(k[x], "nvidia.com/gpu.deploy.mig-manager"))
                x++;
            if (x == n || v[x] == NULL || strcmp(v[x], "false") != 0)
                fail_msg("%s: mig-manager not kept off in mode %d", names[i],
                         m);
        }
    }
}

/* A MIG node offering the other strategy's resources is told why: its
 * plugin runs another strategy (MIG_STRATEGY from the ClusterPolicy). */
static void test_strategy_hint(void **state)
{
    (void)state;
    char why[320] = ""; /* as step_verify's */
    struct gm_node *n = gmt_node("g", NULL);

    gmt_alloc(n, "nvidia.com/gpu", 14);
    gm_switch_strategy_hint(n, "mixed", why, sizeof(why));
    assert_non_null(strstr(why, "the plugin offers nvidia.com/gpu: it runs "
                                "another MIG strategy than mixed"));
    assert_non_null(strstr(why, "MIG_STRATEGY"));
    /* Whole, not cut by the buffer. */
    assert_string_equal(why + strlen(why) - 13, "migStrategy?)");
    why[0] = '\0';
    gm_switch_strategy_hint(n, "single", why, sizeof(why));
    assert_string_equal(why, ""); /* single offers nvidia.com/gpu */
    gmt_node_free(n);

    n = gmt_node("g", NULL);
    gmt_alloc(n, "nvidia.com/mig-1g.10gb", 14);
    gm_switch_strategy_hint(n, "single", why, sizeof(why));
    assert_non_null(strstr(why, "nvidia.com/mig-* resources"));
    assert_string_equal(why + strlen(why) - 13, "migStrategy?)");
    why[0] = '\0';
    /* mixed, offering mig resources (only not the counts): no hint */
    gm_switch_strategy_hint(n, "mixed", why, sizeof(why));
    assert_string_equal(why, "");
    gmt_node_free(n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strategy_hint),
        cmocka_unit_test(test_record_round_trip),
        cmocka_unit_test(test_record_errors_name_the_field),
        cmocka_unit_test(test_record_unknown_from_is_allowed),
        cmocka_unit_test(test_drain_rules),
        cmocka_unit_test(test_drain_selectors),
        cmocka_unit_test(test_helper_pod_name_is_deterministic),
        cmocka_unit_test(test_helper_pod_spec),
        cmocka_unit_test(test_expected_resources),
        cmocka_unit_test(test_profile_start_labels),
        cmocka_unit_test(test_profile_own_config),
        cmocka_unit_test(test_profiles_stop_every_gpu_client),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
