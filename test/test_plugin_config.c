/* The device plugin's configs (devicePluginConfigMap): what the plugin
 * could not load is named, and the planner starts no switch whose node
 * would select such a config; it stalls the policy with
 * InvalidPluginConfig instead, naming the node, the key and the
 * ConfigMap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "planner/plan.h"
#include "planner/pluginconfig.h"
#include "support/planner_nodes.h"

#define NOW 1715034600
#define SOURCE "ConfigMap gpu-operator/plugin-configs"
#define LABEL "nvidia.com/device-plugin.config"
#define H100 "nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3"

/* The ConfigMap {"data": data} (NULL: it does not exist), parsed. */
static void configs(const char *data, struct gm_plugin_configs *out)
{
    json_object *cm = NULL;
    if (data) {
        char text[2048];
        snprintf(text, sizeof(text), "{\"data\":%s}", data);
        cm = json_tokener_parse(text);
        assert_non_null(cm);
    }
    assert_int_equal(gm_plugin_configs_parse(cm, out), 0);
    json_object_put(cm);
}

static struct gm_policy *policy(const char *mode, const char *extra)
{
    char json[1024];
    snprintf(json, sizeof(json),
             "{\"metadata\":{\"name\":\"p\",\"generation\":1},\"spec\":"
             "{\"mode\":\"%s\",\"nodeSelector\":{\"matchLabels\":"
             "{\"pool\":\"a\"}}%s}}",
             mode, extra);
    return gmt_policy(json, 0);
}

static struct gm_policy *mig(const char *strategy)
{
    char extra[256];
    snprintf(extra, sizeof(extra),
             ",\"mig\":{\"strategy\":\"%s\",\"layout\":[{\"migDevices\":"
             "{\"1g.10gb\":7}}]}",
             strategy);
    return policy("mig", extra);
}

/* Plans p over the nodes with the configs c (NULL: unchecked). */
static void plan_nodes(const struct gm_policy *p,
                       const struct gm_node *const *nodes, size_t n_nodes,
                       const struct gm_plugin_configs *c, struct gm_plan *out)
{
    const struct gm_policy *all[1] = {p};
    struct gm_plan_input in = {
        .policy = p,
        .policies = all,
        .n_policies = 1,
        .nodes = nodes,
        .n_nodes = n_nodes,
        .now = NOW,
        .layouts_source = "ConfigMap gpu-operator/default-mig-parted-config",
        .layouts_error = "not needed",
        .vgpu_resource = "nvidia.com/vgpu",
        .plugin_configs = c,
        .plugin_configs_source = SOURCE,
        .plugin_config_label = LABEL,
    };
    assert_int_equal(gm_plan_policy(&in, out), 0);
}

/* The same over the one node n. */
static void plan(const struct gm_policy *p, struct gm_node *n,
                 const struct gm_plugin_configs *c, struct gm_plan *out)
{
    const struct gm_node *nodes[1] = {n};
    plan_nodes(p, nodes, 1, c, out);
}

/* Asserts the plan started nothing and stalls with a message holding
 * want, which the node's own status line holds too. */
static void assert_refused(const struct gm_plan *pl, const char *want)
{
    assert_int_equal(pl->n_starts, 0);
    assert_string_equal(pl->stall_reason, "InvalidPluginConfig");
    assert_non_null(strstr(pl->stall_message, "node n1: "));
    assert_non_null(strstr(pl->stall_message, want));
    assert_int_equal(pl->n_nodes, 1);
    assert_string_equal(pl->nodes[0].phase, "Pending");
    assert_non_null(strstr(pl->nodes[0].message, want));
}

static void test_parse_names_what_the_plugin_refuses(void **state)
{
    (void)state;
    struct gm_plugin_configs c;
    configs("{\"mixed\":\"version: v1\\nflags:\\n  migStrategy: mixed\\n\","
            "\"empty\":\"\","
            "\"v2\":\"version: v2\\n\","
            "\"bad-strategy\":\"flags: {migStrategy: fancy}\","
            "\"list\":\"- a\\n- b\\n\","
            "\"broken\":\"flags: {migStrategy: [\"}",
            &c);
    assert_true(c.exists);
    const struct gm_plugin_config *pc = gm_map_get(&c.m, "mixed");
    assert_string_equal(pc->mig_strategy, "mixed");
    assert_string_equal(pc->error, "");
    pc = gm_map_get(&c.m, "empty");
    assert_string_equal(pc->mig_strategy, "");
    assert_string_equal(pc->error, "");
    pc = gm_map_get(&c.m, "v2");
    assert_non_null(strstr(pc->error, "version: unknown version v2"));
    pc = gm_map_get(&c.m, "bad-strategy");
    assert_non_null(strstr(pc->error, "flags.migStrategy: unknown strategy "
                                      "fancy"));
    pc = gm_map_get(&c.m, "list");
    assert_string_equal(pc->error, "not a mapping");
    pc = gm_map_get(&c.m, "broken");
    assert_non_null(strstr(pc->error, "not YAML: line 2, column 1"));
    gm_plugin_configs_free(&c);

    configs(NULL, &c);
    assert_false(c.exists);
    gm_plugin_configs_free(&c);
}

/* Time-slicing the plugin's loader refuses (it would crash-loop after the
 * drain) is named; what some plugin may load is left alone ("" below),
 * and so are strings, which YAML 1.1 may read as numbers. */
static void test_parse_names_sharing_the_plugin_refuses(void **state)
{
    (void)state;
    static const struct {
        const char *key, *yaml, *error; /* error "": loadable */
    } cases[] = {
        {"ts",
         "sharing: {timeSlicing: {resources: [{name: nvidia.com/gpu, "
         "replicas: 4}]}}",
         ""},
        {"ts-float",
         "sharing: {timeSlicing: {renameByDefault: true, "
         "resources: [{name: nvidia.com/gpu, replicas: 4.0, "
         "devices: all}]}}",
         ""},
        /* 0x4 reads as a string here, 4 to the plugin */
        {"ts-string",
         "sharing: {timeSlicing: {resources: [{name: "
         "nvidia.com/gpu, replicas: 0x4, devices: [0, '1:0']}]}}",
         ""},
        /* plugins before MPS ignore it */
        {"mps", "sharing: {mps: {resources: []}}", ""},
        /* merged by the plugin's YAML reader, not by ours */
        {"merge",
         "sharing: {timeSlicing: {resources: [&r {name: "
         "nvidia.com/gpu, replicas: 4}, {<<: *r, name: other}]}}",
         ""},
        {"merge-up",
         "x: &t {resources: [{name: nvidia.com/gpu, replicas: "
         "4}]}\nsharing: {timeSlicing: {<<: *t}}",
         ""},
        /* some GPUs only: loaded (and ignored: every GPU is shared) */
        {"count",
         "sharing: {timeSlicing: {resources: [{name: "
         "nvidia.com/gpu, replicas: 2, devices: 2.0}]}}",
         ""},
        {"some",
         "sharing: {timeSlicing: {resources: [{name: nvidia.com/gpu, "
         "replicas: 2, devices: [0, 1.0, '2', '0:1', ~, 0x3, "
         "GPU-b1028956-cfa2-0990-bf4a-5da9abb51763]}]}}",
         ""},
        /* the plugin reads an empty value as the string "" */
        {"null-devices",
         "sharing: {timeSlicing: {resources: [{name: "
         "nvidia.com/gpu, replicas: 2, devices: }]}}",
         "sharing.timeSlicing.resources[0].devices: must be \"all\", a "
         "count above 0 or a list"},
        /* loaded, then ignored like any devices: every GPU is shared */
        {"empty-devices",
         "sharing: {timeSlicing: {resources: [{name: "
         "nvidia.com/gpu, replicas: 2, devices: []}]}}",
         ""},
        {"device-name",
         "sharing: {timeSlicing: {resources: [{name: "
         "nvidia.com/gpu, replicas: 2, devices: [0, gpu1]}]}}",
         "sharing.timeSlicing.resources[0].devices: must list GPU indexes"},
        {"device-negative",
         "sharing: {timeSlicing: {resources: [{name: "
         "nvidia.com/gpu, replicas: 2, devices: [-1]}]}}",
         "sharing.timeSlicing.resources[0].devices: must list GPU indexes"},
        {"devices-half",
         "sharing: {timeSlicing: {resources: [{name: "
         "nvidia.com/gpu, replicas: 2, devices: 1.5}]}}",
         "sharing.timeSlicing.resources[0].devices: must be"},
        {"devices-bool",
         "sharing: {timeSlicing: {resources: [{name: "
         "other.com/x, replicas: 2, devices: true}]}}",
         "sharing.timeSlicing.resources[0].devices: must be"},
        {"no-sharing", "sharing: {}", ""},
        /* the plugin's reader takes the first document only */
        {"documents", "version: v1\n---\nversion: v2\n", ""},
        {"no-resources", "sharing: {timeSlicing: {renameByDefault: true}}",
         "sharing.timeSlicing.resources: none given"},
        {"empty-resources", "sharing: {timeSlicing: {resources: []}}",
         "sharing.timeSlicing.resources: none given"},
        {"null-time-slicing", "sharing:\n  timeSlicing:\n",
         "sharing.timeSlicing.resources: none given"},
        {"tilde-time-slicing", "sharing: {timeSlicing: ~}",
         "sharing.timeSlicing.resources: none given"},
        /* timeSlicing is a value field with its own decoder, which Go's
         * JSON runs for a null too: "no resources specified" */
        {"null-section", "sharing: {timeSlicing: }",
         "sharing.timeSlicing.resources: none given"},
        {"null-name",
         "sharing: {timeSlicing: {resources: [{name: ~, "
         "replicas: 4}]}}",
         "sharing.timeSlicing.resources[0].name: missing"},
        {"null-replicas",
         "sharing: {timeSlicing: {resources: [{name: "
         "nvidia.com/gpu, replicas: ~}]}}",
         "sharing.timeSlicing.resources[0].replicas: missing"},
        {"huge",
         "sharing: {timeSlicing: {resources: [{name: nvidia.com/gpu, "
         "replicas: 1e19}]}}",
         "sharing.timeSlicing.resources[0].replicas: must be a whole number"},
        {"not-mapping", "sharing: {timeSlicing: [a]}",
         "sharing.timeSlicing: not a mapping"},
        {"no-name", "sharing: {timeSlicing: {resources: [{replicas: 4}]}}",
         "sharing.timeSlicing.resources[0].name: missing"},
        {"typo",
         "sharing: {timeSlicing: {resources: [{name: nvidia.com/gpu, "
         "replicas: 2}, {name: nvidia.com/gpu, replica: 4}]}}",
         "sharing.timeSlicing.resources[1].replicas: missing"},
        {"zero",
         "sharing: {timeSlicing: {resources: [{name: nvidia.com/gpu, "
         "replicas: 0}]}}",
         "sharing.timeSlicing.resources[0].replicas: must be a whole number"},
        {"one",
         "sharing: {timeSlicing: {resources: [{name: nvidia.com/gpu, "
         "replicas: 1}]}}",
         "sharing.timeSlicing.resources[0].replicas: must be a whole number, "
         "at least 2 (the plugin refuses fewer; to share nothing, leave the "
         "resource out)"},
        {"half",
         "sharing: {timeSlicing: {resources: [{name: nvidia.com/gpu, "
         "replicas: 2.5}]}}",
         "sharing.timeSlicing.resources[0].replicas: must be a whole number"},
        {"devices",
         "sharing: {timeSlicing: {resources: [{name: "
         "nvidia.com/gpu, replicas: 2, devices: 0}]}}",
         "sharing.timeSlicing.resources[0].devices: must be"},
        {"resource", "sharing: {timeSlicing: {resources: [gpu]}}",
         "sharing.timeSlicing.resources[0]: not a mapping"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        struct gm_plugin_configs c;
        json_object *cm = json_object_new_object();
        json_object *data = json_object_new_object();
        json_object_object_add(data, cases[i].key,
                               json_object_new_string(cases[i].yaml));
        json_object_object_add(cm, "data", data);
        assert_int_equal(gm_plugin_configs_parse(cm, &c), 0);
        json_object_put(cm);
        const struct gm_plugin_config *pc = gm_map_get(&c.m, cases[i].key);
        assert_non_null(pc);
        if (cases[i].error[0] == '\0' && pc->error[0] != '\0')
            fail_msg("%s: refused: %s", cases[i].key, pc->error);
        if (cases[i].error[0] && strstr(pc->error, cases[i].error) == NULL)
            fail_msg("%s: %s, expected %s", cases[i].key, pc->error,
                     cases[i].error);
        gm_plugin_configs_free(&c);
    }
}

/* A ConfigMap volume holds binaryData keys as files too: the plugin can
 * select them, so they are read (decoded) like data keys. */
static void test_parse_reads_binary_data(void **state)
{
    (void)state;
    struct gm_plugin_configs c;
    json_object *cm = json_tokener_parse(
        "{\"data\":{\"mixed\":\"flags: {migStrategy: mixed}\"},"
        "\"binaryData\":{"
        "\"single\":\"dmVyc2lvbjogdjEKZmxhZ3M6CiAgbWlnU3RyYXRlZ3k6IHNpbmdsZQo="
        "\","
        "\"v2\":\"dmVyc2lvbjogdjIK\","
        "\"empty\":\"\","
        "\"nul\":\"ZmxhZ3M6IHt9CgB4\","
        "\"junk\":\"!!!\"}}");
    assert_non_null(cm);
    assert_int_equal(gm_plugin_configs_parse(cm, &c), 0);
    json_object_put(cm);
    assert_string_equal(
        ((const struct gm_plugin_config *)gm_map_get(&c.m, "mixed"))
            ->mig_strategy,
        "mixed");
    const struct gm_plugin_config *pc = gm_map_get(&c.m, "single");
    assert_non_null(pc);
    assert_string_equal(pc->mig_strategy, "single");
    assert_string_equal(pc->error, "");
    pc = gm_map_get(&c.m, "v2");
    assert_non_null(strstr(pc->error, "version: unknown version v2"));
    pc = gm_map_get(&c.m, "empty");
    assert_non_null(pc);
    assert_string_equal(pc->error, "");
    /* A NUL does not cut the file short: YAML refuses it. */
    pc = gm_map_get(&c.m, "nul");
    assert_non_null(strstr(pc->error, "not YAML"));
    pc = gm_map_get(&c.m, "junk");
    assert_string_equal(pc->error, "binaryData: not base64");

    char msg[512];
    assert_int_equal(gm_plugin_config_check(&c, SOURCE, "single", "single", msg,
                                            sizeof(msg)),
                     0);
    gm_plugin_configs_free(&c);
}

/* The key through the test's LABEL, into buf. */
static char buf[256];
#define KEY(n, to, strategy)                                                   \
    gm_plugin_config_key(n, LABEL, to, strategy, buf, sizeof(buf))

static void test_key_a_node_selects(void **state)
{
    (void)state;
    struct gm_node *in_mig =
        gmt_node("n1", "gpumode.io/mode=mig", LABEL "=mixed", NULL);
    struct gm_node *own = gmt_node("n2", LABEL "=time-slicing", NULL);
    struct gm_node *plain = gmt_node("n3", NULL);
    assert_string_equal(KEY(in_mig, GM_MODE_MIG, "single"), "single");
    /* Into full: the value kept while in mig, the node's own label, or
     * none (a strategy gpumode wrote is not the node's). */
    assert_null(KEY(in_mig, GM_MODE_FULL, NULL));
    gmt_set(&in_mig->ann_plugin_config, "time-slicing");
    assert_string_equal(KEY(in_mig, GM_MODE_FULL, NULL), "time-slicing");
    assert_string_equal(KEY(own, GM_MODE_FULL, NULL), "time-slicing");
    assert_null(KEY(plain, GM_MODE_FULL, NULL));
    /* vgpu runs HAMi's plugin; a profile without the label selects none. */
    assert_null(KEY(own, GM_MODE_VGPU, NULL));
    assert_null(
        gm_plugin_config_key(own, NULL, GM_MODE_FULL, NULL, buf, sizeof(buf)));
    gmt_node_free(in_mig);
    gmt_node_free(own);
    gmt_node_free(plain);
}

/* A held full -> mig attempt that got past StartingClients: the label says
 * mixed, nothing is kept in the annotation, and the record saved the
 * node's own value. A retry into full writes that value back, so that is
 * the key checked; the annotation, once there, wins. */
static void test_key_of_a_retry_from_its_record(void **state)
{
    (void)state;
    struct gm_node *n =
        gmt_node("n1", "gpumode.io/mode=full", LABEL "=mixed", NULL);
    gmt_set(&n->ann_switch,
            "{\"policy\":\"p\",\"from\":\"full\",\"to\":\"mig\",\"phase\":"
            "\"Failed\",\"labels\":{\"" LABEL "\":\"ts-a\"}}");
    assert_string_equal(KEY(n, GM_MODE_FULL, NULL), "ts-a");
    gmt_set(&n->ann_plugin_config, "ts-b");
    assert_string_equal(KEY(n, GM_MODE_FULL, NULL), "ts-b");
    gmt_node_free(n);
    /* The record saved the label's absence: the retry removes the label,
     * whatever someone set since. A saved strategy is not the node's: its
     * labels decide. */
    n = gmt_node("n1", "gpumode.io/mode=full", LABEL "=by-hand", NULL);
    gmt_set(&n->ann_switch, "{\"labels\":{\"" LABEL "\":null}}");
    assert_null(KEY(n, GM_MODE_FULL, NULL));
    gmt_set(&n->ann_switch, "{\"labels\":{\"" LABEL "\":\"single\"}}");
    assert_string_equal(KEY(n, GM_MODE_FULL, NULL), "by-hand");
    gmt_node_free(n);
}

static void test_mig_needs_its_strategy_key(void **state)
{
    (void)state;
    struct gm_policy *p = mig("single");
    struct gm_node *n = gmt_node("n1", "pool=a", H100, NULL);
    struct gm_plugin_configs c;
    struct gm_plan pl;

    configs("{\"mixed\":\"flags: {migStrategy: mixed}\"}", &c);
    plan(p, n, &c, &pl);
    assert_refused(&pl, "the device plugin config single is not in " SOURCE);
    gm_plan_free(&pl);
    gm_plugin_configs_free(&c);

    /* There, but for another strategy. */
    configs("{\"single\":\"flags: {migStrategy: mixed}\"}", &c);
    plan(p, n, &c, &pl);
    assert_refused(&pl, "sets flags.migStrategy mixed: the plugin would "
                        "not offer the single strategy's resources");
    gm_plan_free(&pl);
    gm_plugin_configs_free(&c);

    /* Silent on the strategy: the plugin's default, none. */
    configs("{\"single\":\"version: v1\"}", &c);
    plan(p, n, &c, &pl);
    assert_refused(&pl, "sets no flags.migStrategy: the plugin would run "
                        "its default, none");
    gm_plan_free(&pl);
    gm_plugin_configs_free(&c);

    /* Right. */
    configs("{\"single\":\"flags: {migStrategy: single}\"}", &c);
    plan(p, n, &c, &pl);
    assert_int_equal(pl.n_starts, 1);
    assert_null(pl.stall_reason);
    gm_plan_free(&pl);
    gm_plugin_configs_free(&c);
    /* Unchecked without the ConfigMap configured. */
    plan(p, n, NULL, &pl);
    assert_int_equal(pl.n_starts, 1);
    gm_plan_free(&pl);
    gm_policy_free(p);
    gmt_node_free(n);
}

static void test_full_needs_the_nodes_own_key(void **state)
{
    (void)state;
    struct gm_policy *p = policy("full", "");
    struct gm_node *n =
        gmt_node("n1", "pool=a", "gpumode.io/mode=mig", LABEL "=mixed", NULL);
    gmt_set(&n->ann_plugin_config, "time-slicing");
    struct gm_plugin_configs c;
    struct gm_plan pl;

    configs("{\"mixed\":\"\",\"time-slicing-renamed\":\"\"}", &c);
    plan(p, n, &c, &pl);
    assert_refused(&pl,
                   "the device plugin config time-slicing is not in " SOURCE
                   ": the plugin would not start");
    gm_plan_free(&pl);
    gm_plugin_configs_free(&c);

    configs("{\"time-slicing\":\"version: v2\"}", &c);
    plan(p, n, &c, &pl);
    assert_refused(&pl,
                   "time-slicing in " SOURCE ": version: unknown version v2");
    gm_plan_free(&pl);
    gm_plugin_configs_free(&c);

    /* Every GPU, some only (the plugin ignores devices and shares every
     * GPU, so the count is GPUs x replicas either way), or another
     * resource's subset: fine. */
    static const char *const whole[] = {
        "{\"time-slicing\":\"sharing: {timeSlicing: {resources: [{name: "
        "nvidia.com/gpu, replicas: 4, devices: all}]}}\"}",
        "{\"time-slicing\":\"sharing: {timeSlicing: {resources: [{name: "
        "nvidia.com/gpu, replicas: 4}, {name: other.com/x, replicas: 2, "
        "devices: 1}]}}\"}",
        "{\"time-slicing\":\"sharing: {timeSlicing: {resources: [{name: "
        "nvidia.com/gpu, replicas: 4, devices: 2}]}}\"}",
        "{\"time-slicing\":\"sharing: {timeSlicing: {resources: [{name: "
        "nvidia.com/gpu, replicas: 4, devices: [0, 1]}]}}\"}",
    };
    for (size_t i = 0; i < sizeof(whole) / sizeof(*whole); i++) {
        configs(whole[i], &c);
        plan(p, n, &c, &pl);
        assert_int_equal(pl.n_starts, 1);
        gm_plan_free(&pl);
        gm_plugin_configs_free(&c);
    }

    /* One the controller could not list (RBAC): nothing can be checked. */
    configs("{}", &c);
    c.unreadable = true;
    plan(p, n, &c, &pl);
    assert_refused(&pl, SOURCE " could not be read");
    gm_plan_free(&pl);
    gm_plugin_configs_free(&c);

    /* A ConfigMap that does not exist loads nothing. */
    configs(NULL, &c);
    plan(p, n, &c, &pl);
    assert_refused(&pl, SOURCE " does not exist");
    gm_plan_free(&pl);
    gm_plugin_configs_free(&c);

    /* Present: the switch starts. A node with no config of its own needs
     * none (the operator's default), even with no ConfigMap. */
    configs("{\"time-slicing\":\"version: v1\"}", &c);
    plan(p, n, &c, &pl);
    assert_int_equal(pl.n_starts, 1);
    assert_null(pl.stall_reason);
    gm_plan_free(&pl);
    gm_plugin_configs_free(&c);
    free(n->ann_plugin_config);
    n->ann_plugin_config = NULL;
    configs(NULL, &c);
    plan(p, n, &c, &pl);
    assert_int_equal(pl.n_starts, 1);
    gm_plan_free(&pl);
    gm_plugin_configs_free(&c);
    gm_policy_free(p);
    gmt_node_free(n);
}

/* One node waits for its layout, another for its device plugin config:
 * the stall names both, so fixing the first does not reveal the second
 * only then. */
static void test_stall_names_layout_and_config(void **state)
{
    (void)state;
    struct gm_policy *p = mig("mixed");
    /* 1g.10gb does not exist on an A100 40GB. */
    struct gm_node *a =
        gmt_node("a", "pool=a", "nvidia.com/gpu.product=NVIDIA-A100-SXM4-40GB",
                 "nvidia.com/gpu.count=8", NULL);
    struct gm_node *b = gmt_node("b", "pool=a", H100, NULL);
    const struct gm_node *nodes[2] = {a, b};
    struct gm_plugin_configs c;
    struct gm_plan pl;

    configs("{\"single\":\"\"}", &c);
    plan_nodes(p, nodes, 2, &c, &pl);
    assert_int_equal(pl.n_starts, 0);
    assert_string_equal(pl.stall_reason, "InvalidLayout");
    const char *layout = strstr(pl.stall_message, "NVIDIA-A100-SXM4-40GB");
    const char *config =
        strstr(pl.stall_message, "; also node b: the device plugin config "
                                 "mixed is not in " SOURCE);
    assert_non_null(layout);
    assert_non_null(config);
    assert_true(layout < config);
    gm_plan_free(&pl);
    gm_plugin_configs_free(&c);
    gm_policy_free(p);
    gmt_node_free(a);
    gmt_node_free(b);
}

/* vgpu runs HAMi's plugin: the NVIDIA plugin's configs are not asked. */
static void test_vgpu_is_not_checked(void **state)
{
    (void)state;
    struct gm_policy *p = policy("vgpu", "");
    struct gm_node *n = gmt_node("n1", "pool=a", LABEL "=time-slicing", NULL);
    struct gm_plugin_configs c;
    struct gm_plan pl;
    configs(NULL, &c);
    plan(p, n, &c, &pl);
    assert_int_equal(pl.n_starts, 1);
    assert_null(pl.stall_reason);
    gm_plan_free(&pl);
    gm_plugin_configs_free(&c);
    gm_policy_free(p);
    gmt_node_free(n);
}

/* A converged node that offers other resources than it was verified
 * with is named; when the config its label selects now is one the plugin
 * cannot load (it crash-loops, offering nothing), or in mig one for
 * another strategy, the notice says so. */
static void test_drift_names_a_config_the_plugin_refuses(void **state)
{
    (void)state;
    static const struct {
        const char *mode, *label;
        int offers;
        const char *because; /* NULL: no cause given */
        bool unreadable;
    } cases[] = {
        {"full", "broken", 0,
         "n1 offers none, verified with nvidia.com/gpu=8 (the device plugin "
         "config broken in " SOURCE
         ": sharing.timeSlicing.resources[0].replicas: missing)",
         false},
        {"full", "gone", 0,
         "(the device plugin config gone is not in " SOURCE
         ": the plugin would not start (add the key, or change the node's "
         "config))",
         false},
        {"mig", "single", 0,
         "(the device plugin config single in " SOURCE
         " sets flags.migStrategy single: the plugin would not offer the "
         "mixed strategy's resources)",
         false},
        /* The plugin offers what it is told, not the policy's strategy. */
        {"mig", "single", 8,
         "sets flags.migStrategy single: the plugin would not offer the "
         "mixed strategy's resources",
         false},
        /* It still runs (on a config it loaded before): something else
         * changed, a GPU lost, say. */
        {"full", "broken", 7, NULL, false},
        {"full", "time-slicing", 0, NULL, false}, /* loads */
        {"full", NULL, 0, NULL, false},           /* the operator's default */
        {"full", "broken", 0, NULL, true},        /* nothing known about it */
    };
    struct gm_plugin_configs c;
    configs("{\"time-slicing\":\"version: v1\\nsharing:\\n  timeSlicing:\\n "
            "   resources:\\n    - {name: nvidia.com/gpu, replicas: 4}\\n\","
            "\"single\":\"flags: {migStrategy: single}\","
            "\"broken\":\"version: v1\\nsharing:\\n  timeSlicing:\\n    "
            "resources:\\n    - {name: nvidia.com/gpu, replica: 4}\\n\"}",
            &c);
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        bool is_mig = strcmp(cases[i].mode, "mig") == 0;
        struct gm_policy *p = is_mig ? mig("mixed") : policy("full", "");
        char mode[64], label[128] = "pool=a";
        snprintf(mode, sizeof(mode), "gpumode.io/mode=%s", cases[i].mode);
        if (cases[i].label)
            snprintf(label, sizeof(label), LABEL "=%s", cases[i].label);
        struct gm_node *n = gmt_node("n1", "pool=a", mode,
                                     "gpumode.io/state=ready", label, NULL);
        n->ann_resources =
            is_mig ? "nvidia.com/mig-1g.10gb=56" : "nvidia.com/gpu=8";
        n->resources_since = NOW - 3600;
        gmt_alloc(n, "nvidia.com/gpu", cases[i].offers);
        c.unreadable = cases[i].unreadable;
        struct gm_plan pl;
        plan(p, n, &c, &pl);
        assert_int_equal(pl.drifted, 1);
        assert_non_null(pl.drift_notice);
        assert_non_null(strstr(pl.drift_notice, "n1 offers "));
        if (cases[i].because)
            assert_non_null(strstr(pl.drift_notice, cases[i].because));
        else
            assert_null(strstr(pl.drift_notice, "device plugin config"));
        gm_plan_free(&pl);
        gm_policy_free(p);
        gmt_node_free(n);
    }
    gm_plugin_configs_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_names_what_the_plugin_refuses),
        cmocka_unit_test(test_parse_names_sharing_the_plugin_refuses),
        cmocka_unit_test(test_parse_reads_binary_data),
        cmocka_unit_test(test_key_a_node_selects),
        cmocka_unit_test(test_key_of_a_retry_from_its_record),
        cmocka_unit_test(test_mig_needs_its_strategy_key),
        cmocka_unit_test(test_full_needs_the_nodes_own_key),
        cmocka_unit_test(test_vgpu_is_not_checked),
        cmocka_unit_test(test_stall_names_layout_and_config),
        cmocka_unit_test(test_drift_names_a_config_the_plugin_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
