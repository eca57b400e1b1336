/* mig-parted parsing and layout resolution per GPU model. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "planner/layout.h"
#include "support/planner_nodes.h"

#define SRC "ConfigMap gpumode-system/layouts"

static const char config[] =
    "version: v1\n"
    "mig-configs:\n"
    "  all-disabled:\n"
    "    - devices: all\n"
    "      mig-enabled: false\n"
    "  all-1g.10gb:\n"
    "    - device-filter: [\"0x20B210DE\", \"0x233010DE\"]\n"
    "      devices: all\n"
    "      mig-enabled: true\n"
    "      mig-devices:\n"
    "        \"1g.10gb\": 7\n"
    "    - device-filter: \"0x20B010DE\"\n"
    "      devices: all\n"
    "      mig-enabled: true\n"
    "      mig-devices: {\"1g.10gb\": 4}\n"
    "  all-1g.5gb:\n"
    "    - devices: all\n"
    "      mig-enabled: true\n"
    "      mig-devices: {\"1g.5gb\": 7}\n"
    "  split:\n"
    "    - devices: [0, 1]\n"
    "      mig-enabled: true\n"
    "      mig-devices: {\"3g.40gb\": 2}\n"
    "    - devices: [2, 3]\n"
    "      mig-enabled: false\n"
    "  too-many:\n"
    "    - devices: all\n"
    "      mig-enabled: true\n"
    "      mig-devices: {\"3g.40gb\": 2, \"1g.10gb\": 2}\n"
    "  over-max:\n"
    "    - devices: all\n"
    "      mig-enabled: true\n"
    "      mig-devices: {\"3g.40gb\": 3}\n"
    "  h100-only:\n"
    "    - device-filter: [\"0x233010DE\"]\n"
    "      devices: all\n"
    "      mig-enabled: true\n"
    "      mig-devices: {\"7g.80gb\": 1}\n";

static struct gm_migparted *parse_ok(void)
{
    struct gm_migparted *m = NULL;
    char err[512] = "";

    int rc =
        gm_migparted_parse(config, strlen(config), SRC, &m, err, sizeof(err));
    if (rc != 0)
        fail_msg("parse: %s", err);
    return m;
}

/* What resolve() says of the node's nvidia.com/mig.capable label. */
static bool capable;

static void resolve(const struct gm_migparted *m, const char *name,
                    const char *product, int count, int want_rc,
                    const char *want)
{
    char what[128];
    char err[512] = "";
    char *json = NULL;
    const struct gm_mig_layout *l = gm_migparted_find(m, name);

    assert_non_null(l);
    snprintf(what, sizeof(what), "layout \"%s\"", name);
    int rc = gm_layout_resolve(l, what, product, capable, count, &json, err,
                               sizeof(err));
    if (rc != want_rc)
        fail_msg("%s on %s: rc %d (%s), want %d", name, product, rc, err,
                 want_rc);
    if (rc == 0)
        assert_string_equal(json, want);
    else
        assert_string_equal(err, want);
    free(json);
}

static void test_parse_and_find(void **state)
{
    struct gm_migparted *m = parse_ok();

    assert_int_equal(m->n, 7);
    assert_string_equal(m->names[0], "all-disabled");
    assert_null(gm_migparted_find(m, "nope"));
    const struct gm_mig_layout *l = gm_migparted_find(m, "all-1g.10gb");
    assert_int_equal(l->n_entries, 2);
    assert_int_equal(l->entries[0].n_device_filter, 2);
    assert_int_equal(l->entries[1].n_device_filter, 1);
    gm_migparted_free(m);
}

static void test_device_filter_picks_entry(void **state)
{
    struct gm_migparted *m = parse_ok();

    resolve(m, "all-1g.10gb", "NVIDIA-H100-80GB-HBM3", 8, 0,
            "[{\"devices\":\"all\",\"migEnabled\":true,\"migDevices\":"
            "{\"1g.10gb\":7}}]");
    resolve(m, "all-1g.10gb", "NVIDIA-A100-SXM4-40GB", 8, 0,
            "[{\"devices\":\"all\",\"migEnabled\":true,\"migDevices\":"
            "{\"1g.10gb\":4}}]");
    /* Without the NVIDIA- prefix, as older feature discovery wrote it. */
    resolve(m, "all-1g.10gb", "A100-SXM4-80GB", 8, 0,
            "[{\"devices\":\"all\",\"migEnabled\":true,\"migDevices\":"
            "{\"1g.10gb\":7}}]");
    resolve(m, "h100-only", "NVIDIA-A100-SXM4-40GB", 8, -EINVAL,
            "layout \"h100-only\": no entry applies to "
            "NVIDIA-A100-SXM4-40GB (device id 0x20B010DE)");
    gm_migparted_free(m);
}

static void test_lists_and_disabled(void **state)
{
    struct gm_migparted *m = parse_ok();

    resolve(m, "split", "NVIDIA-A100-SXM4-80GB", 4, 0,
            "[{\"devices\":[0,1],\"migEnabled\":true,\"migDevices\":"
            "{\"3g.40gb\":2}},{\"devices\":[2,3],\"migEnabled\":false}]");
    resolve(m, "split", "NVIDIA-A100-SXM4-80GB", 2, -EINVAL,
            "layout \"split\": GPU 2 does not exist on a node with 2 GPUs");
    resolve(m, "all-disabled", "NVIDIA-H200", 8, -EINVAL,
            "layout \"all-disabled\": enables MIG on no GPU of NVIDIA-H200; "
            "a node with MIG off is mode full");
    gm_migparted_free(m);
}

static void test_profile_checks(void **state)
{
    struct gm_migparted *m = parse_ok();

    resolve(m, "all-1g.5gb", "NVIDIA-H100-80GB-HBM3", 8, -EINVAL,
            "layout \"all-1g.5gb\": profile 1g.5gb is not available on "
            "NVIDIA-H100-80GB-HBM3 (available: 1g.10gb, 1g.10gb+me, "
            "1g.20gb, 2g.20gb, 3g.40gb, 4g.40gb, 7g.80gb)");
    resolve(m, "too-many", "NVIDIA-H100-80GB-HBM3", 8, -EINVAL,
            "layout \"too-many\": the instances need 8 compute and 10 "
            "memory slices per GPU; NVIDIA-H100-80GB-HBM3 has 7 and 8");
    resolve(m, "over-max", "NVIDIA-A100-SXM4-80GB", 8, -EINVAL,
            "layout \"over-max\": 3 instances of 3g.40gb requested per GPU; "
            "NVIDIA-A100-SXM4-80GB holds at most 2");
    resolve(m, "all-1g.5gb", "Tesla-T4", 1, -EINVAL,
            "layout \"all-1g.5gb\": GPU model Tesla-T4 is not known to "
            "support MIG (and the node is not labelled "
            "nvidia.com/mig.capable=true)");
    resolve(m, "all-1g.5gb", NULL, 1, -EINVAL,
            "layout \"all-1g.5gb\": the node has no nvidia.com/gpu.product "
            "label, so its GPU model is unknown");
    gm_migparted_free(m);
}

/* A model missing from gpumode's table (an H20, say) on a node feature
 * discovery labels MIG-capable: the layout goes through, its profile counts
 * left to the node's own nvidia-smi; an entry with a device-filter cannot
 * be matched to it. Without the label it stays refused. */
static void test_unknown_model_when_mig_capable(void **state)
{
    struct gm_migparted *m = parse_ok();

    capable = true;
    resolve(m, "all-1g.5gb", "NVIDIA-H20", 8, 0,
            "[{\"devices\":\"all\",\"migEnabled\":true,\"migDevices\":"
            "{\"1g.5gb\":7}}]");
    resolve(m, "h100-only", "NVIDIA-H20", 8, -EINVAL,
            "layout \"h100-only\": no entry without a device-filter applies "
            "to NVIDIA-H20, a model gpumode has no device id for");
    resolve(m, "split", "NVIDIA-H20", 2, -EINVAL,
            "layout \"split\": GPU 2 does not exist on a node with 2 GPUs");
    capable = false;
    resolve(m, "all-1g.5gb", "NVIDIA-H20", 8, -EINVAL,
            "layout \"all-1g.5gb\": GPU model NVIDIA-H20 is not known to "
            "support MIG (and the node is not labelled "
            "nvidia.com/mig.capable=true)");
    gm_migparted_free(m);
}

static void test_inline_layout(void **state)
{
    struct gm_policy *p = gmt_policy(
        "{\"metadata\":{\"name\":\"p\"},\"spec\":{\"mode\":\"mig\","
        "\"nodeSelector\":{\"matchLabels\":{\"a\":\"b\"}},\"mig\":{\"layout\":"
        "[{\"devices\":[0,1],\"migDevices\":{\"1g.10gb\":7}},"
        "{\"migDevices\":{\"3g.40gb\":2}}]}}}",
        0);
    char err[512] = "";
    char *json = NULL;

    assert_int_equal(gm_layout_resolve(&p->spec.mig_layout, "inline layout",
                                       "NVIDIA-H100-80GB-HBM3", true, 8, &json,
                                       err, sizeof(err)),
                     0);
    assert_string_equal(json, "[{\"devices\":[0,1],\"migEnabled\":true,"
                              "\"migDevices\":{\"1g.10gb\":7}},{\"devices\":"
                              "\"all\",\"migEnabled\":true,\"migDevices\":"
                              "{\"3g.40gb\":2}}]");
    free(json);
    gm_policy_free(p);
}

static void test_models(void **state)
{
    const struct gm_gpu_model *a = gm_gpu_model_find("NVIDIA-A100-SXM4-40GB");

    assert_non_null(a);
    assert_int_equal(a->device_id, 0x20B010DE);
    assert_ptr_equal(gm_gpu_model_find("A100-SXM4-40GB"), a);
    assert_ptr_equal(gm_gpu_model_find("NVIDIA A100-SXM4-40GB"), a);
    assert_ptr_equal(gm_gpu_model_find("NVIDIA-A100-SXM4-40GB-MIG-1g.5gb"), a);
    assert_ptr_equal(gm_gpu_model_find("NVIDIA-A100-SXM4-40GB-SHARED"), a);
    assert_int_equal(gm_gpu_model_find("NVIDIA-H100-80GB-HBM3")->device_id,
                     0x233010DE);
    assert_int_equal(gm_gpu_model_find("nvidia-h200")->device_id, 0x233510DE);
    assert_int_equal(gm_gpu_model_find("A100-SXM4-80GB")->device_id,
                     0x20B210DE);
    assert_null(gm_gpu_model_find("NVIDIA-GeForce-RTX-4090"));
    assert_null(gm_gpu_model_find(NULL));
}

static void expect_parse_error(const char *yaml, const char *want)
{
    struct gm_migparted *m = (struct gm_migparted *)1;
    char err[512] = "";

    assert_int_equal(
        gm_migparted_parse(yaml, strlen(yaml), SRC, &m, err, sizeof(err)),
        -EINVAL);
    assert_null(m);
    if (strstr(err, want) == NULL)
        fail_msg("got \"%s\", want \"%s\"", err, want);
}

/* Errors of the document as a whole still fail the parse. */
static void test_parse_errors(void **state)
{
    expect_parse_error("version: v1\nmig-configs:\n  a: [\n",
                       SRC ": config.yaml line 4:");
    expect_parse_error("version: v2\nmig-configs: {}\n",
                       SRC ": config.yaml line 1: version must be v1");
    expect_parse_error("version: v1\n", "mig-configs must be a mapping");
    expect_parse_error("- a\n", "the document must be a mapping");
    expect_parse_error("version: v1\nmig-configs:\n  [a]: []\n",
                       SRC ": config.yaml line 3: mig-configs keys must be "
                           "config names");
}

/* Parses yaml, which must succeed, and checks that its config "a" is kept
 * as one gpumode cannot use, its message containing want. */
static void expect_config_invalid(const char *yaml, const char *want)
{
    struct gm_migparted *m = NULL;
    const struct gm_mig_layout *l = (const struct gm_mig_layout *)1;
    const char *why = NULL;
    char err[512] = "";

    if (gm_migparted_parse(yaml, strlen(yaml), SRC, &m, err, sizeof(err)))
        fail_msg("parse: %s", err);
    assert_int_equal(m->n, 0);
    assert_int_equal(gm_migparted_lookup(m, "a", &l, &why), -EINVAL);
    assert_null(l);
    assert_null(gm_migparted_find(m, "a"));
    if (strstr(why, want) == NULL)
        fail_msg("got \"%s\", want \"%s\"", why, want);
    gm_migparted_free(m);
}

/* What failed the whole document before now fails only its config. */
static void test_config_errors(void **state)
{
    expect_config_invalid("version: v1\nmig-configs:\n  a:\n"
                          "    - devices: all\n      mig-enabled: true\n",
                          SRC
                          ": config.yaml line 4: config \"a\": "
                          "mig-devices is required when mig-enabled is true");
    expect_config_invalid("version: v1\nmig-configs:\n  a:\n"
                          "    - devices: all\n      mig-enabled: false\n"
                          "      mig-devices: {\"1g.10gb\": 1}\n",
                          "line 6: config \"a\": mig-devices is not allowed");
    expect_config_invalid("version: v1\nmig-configs:\n  a:\n"
                          "    - devices: [0, 99]\n      mig-enabled: false\n",
                          "line 4: config \"a\": devices[1] is not a GPU "
                          "index");
    expect_config_invalid("version: v1\nmig-configs:\n  a:\n"
                          "    - devices: all\n      device-filter: {x: 1}\n"
                          "      mig-enabled: false\n",
                          "line 5: config \"a\": device-filter must be a "
                          "list");
    expect_config_invalid("version: v1\nmig-configs:\n  a:\n"
                          "    - devices: all\n",
                          "line 4: config \"a\": mig-enabled is required");
    expect_config_invalid("version: v1\nmig-configs:\n  a: []\n",
                          "line 3: config \"a\" has no entries");
    expect_config_invalid("version: v1\nmig-configs:\n  a: all\n",
                          "line 3: config \"a\" must be a list of entries");
    expect_config_invalid("version: v1\nmig-configs:\n  a:\n"
                          "    - devices: all\n      mig-enabled: true\n"
                          "      mig-devices: {\"1g.10GB\": 1}\n",
                          "line 6: config \"a\": profile \"1g.10GB\" is not "
                          "one gpumode can lay out");
    /* go-nvlib's attributes, in the GPU Operator's RTX PRO 6000 configs. */
    expect_config_invalid("version: v1\nmig-configs:\n  a:\n"
                          "    - devices: all\n      mig-enabled: true\n"
                          "      mig-devices: {\"1g.24gb+me.all\": 1}\n",
                          "profile \"1g.24gb+me.all\" is not one gpumode");
    expect_config_invalid("version: v1\nmig-configs:\n  a:\n"
                          "    - devices: all\n      mig-enabled: true\n"
                          "      mig-devices: {\"1g.24gb-me\": 1}\n",
                          "profile \"1g.24gb-me\" is not one gpumode");
}

/* The GPU Operator's ConfigMap holds configs gpumode cannot use beside
 * ones it can: those stay usable, the others say why. */
static const char mixed_config[] = "version: v1\n"
                                   "mig-configs:\n"
                                   "  all-1g.24gb.gfx:\n"
                                   "    - devices: all\n"
                                   "      mig-enabled: true\n"
                                   "      mig-devices:\n"
                                   "        \"1g.24gb+gfx\": 4\n"
                                   "  all-1g.10gb:\n"
                                   "    - devices: all\n"
                                   "      mig-enabled: true\n"
                                   "      mig-devices:\n"
                                   "        \"1g.10gb\": 7\n"
                                   "  bad-count:\n"
                                   "    - devices: all\n"
                                   "      mig-enabled: true\n"
                                   "      mig-devices: {\"1g.10gb\": seven}\n";

static void test_invalid_config_kept_apart(void **state)
{
    struct gm_migparted *m = NULL;
    const struct gm_mig_layout *l = NULL;
    const char *why = NULL;
    char err[512] = "";

    if (gm_migparted_parse(mixed_config, strlen(mixed_config), SRC, &m, err,
                           sizeof(err)))
        fail_msg("parse: %s", err);
    assert_int_equal(m->n, 1);
    assert_string_equal(m->names[0], "all-1g.10gb");
    assert_int_equal(m->n_invalid, 2);
    assert_string_equal(m->invalid[0].name, "all-1g.24gb.gfx");
    assert_string_equal(m->invalid[1].name, "bad-count");

    assert_int_equal(gm_migparted_lookup(m, "all-1g.10gb", &l, &why), 0);
    assert_ptr_equal(l, gm_migparted_find(m, "all-1g.10gb"));
    assert_null(why);
    resolve(m, "all-1g.10gb", "NVIDIA-H100-80GB-HBM3", 8, 0,
            "[{\"devices\":\"all\",\"migEnabled\":true,\"migDevices\":"
            "{\"1g.10gb\":7}}]");

    assert_int_equal(gm_migparted_lookup(m, "all-1g.24gb.gfx", &l, &why),
                     -EINVAL);
    assert_null(l);
    assert_string_equal(why, SRC ": config.yaml line 7: config "
                                 "\"all-1g.24gb.gfx\": profile \"1g.24gb+gfx\" "
                                 "is not one gpumode can lay out (it supports "
                                 "<n>g.<m>gb and <n>g.<m>gb+me)");
    assert_null(gm_migparted_find(m, "all-1g.24gb.gfx"));

    assert_int_equal(gm_migparted_lookup(m, "bad-count", &l, &why), -EINVAL);
    assert_string_equal(why, SRC ": config.yaml line 16: config "
                                 "\"bad-count\": the count of 1g.10gb must be "
                                 "an integer from 0 to 7");

    assert_int_equal(gm_migparted_lookup(m, "nope", &l, &why), -ENOENT);
    assert_null(l);
    assert_null(why);
    gm_migparted_free(m);
}

/* Layouts the agent would refuse are refused when planned, for a model
 * outside the table too: there nothing else checks the counts. */
static void test_unknown_model_agent_rules(void **state)
{
    static const char yaml[] =
        "version: v1\nmig-configs:\n"
        "  zeros:\n    - devices: all\n      mig-enabled: true\n"
        "      mig-devices: {\"1g.6gb\": 0}\n"
        "  eight:\n    - devices: all\n      mig-enabled: true\n"
        "      mig-devices: {\"1g.6gb\": 7, \"1g.12gb\": 1}\n"
        "  long-name:\n    - devices: all\n      mig-enabled: true\n"
        "      mig-devices: {\"1g.10000000000000000000000000000000000000gb\": "
        "1}\n"
        "  ok:\n    - devices: all\n      mig-enabled: true\n"
        "      mig-devices: {\"1g.6gb\": 4}\n";
    struct gm_migparted *m = NULL;
    char err[512] = "";

    if (gm_migparted_parse(yaml, strlen(yaml), SRC, &m, err, sizeof(err)))
        fail_msg("parse: %s", err);
    capable = true;
    resolve(m, "zeros", "NVIDIA-A30", 4, -EINVAL,
            "layout \"zeros\": an entry enables MIG without instances, "
            "which leaves the GPU unusable to the device plugin");
    resolve(m, "eight", "NVIDIA-A30", 4, -EINVAL,
            "layout \"eight\": gpumode-agent would refuse it: "
            "layout[0].migDevices: 8 instances, a GPU has at most 7");
    resolve(m, "ok", "NVIDIA-A30", 4, 0,
            "[{\"devices\":\"all\",\"migEnabled\":true,\"migDevices\":"
            "{\"1g.6gb\":4}}]");
    char what[64], *json = (char *)1;
    snprintf(what, sizeof(what), "layout \"long-name\"");
    assert_int_equal(gm_layout_resolve(gm_migparted_find(m, "long-name"), what,
                                       "NVIDIA-A30", true, 4, &json, err,
                                       sizeof(err)),
                     -EINVAL);
    assert_null(json);
    assert_non_null(strstr(err, "gpumode-agent would refuse it"));
    capable = false;
    gm_migparted_free(m);
}

/* 2,000 profile counts behind one anchor, referenced 60 times: 120,000
 * items from a 40 KiB document. The walk stops at its budget with the
 * whole document refused, instead of copying every reference. */
static void test_alias_expansion_capped(void **state)
{
    size_t cap = 64 * 1024, off = 0;
    char *yaml = malloc(cap);
    assert_non_null(yaml);
    off += (size_t)snprintf(yaml + off, cap - off,
                            "version: v1\nx: &e {devices: all, mig-enabled: "
                            "true, mig-devices: {");
    for (int i = 1; i <= 2000; i++)
        off += (size_t)snprintf(yaml + off, cap - off, "%s1g.%dgb: 1",
                                i > 1 ? ", " : "", i);
    off += (size_t)snprintf(yaml + off, cap - off, "}}\nmig-configs:\n  a: [");
    for (int i = 0; i < 60; i++)
        off += (size_t)snprintf(yaml + off, cap - off, "%s*e", i ? ", " : "");
    off += (size_t)snprintf(yaml + off, cap - off, "]\n");
    assert_true(off < cap);
    expect_parse_error(yaml, SRC ": config.yaml line 2: the document "
                                 "expands, through its aliases, to more than "
                                 "100000 entries, devices and profiles");
    /* Within the budget the same document parses: 40 references. */
    char *cut = strstr(yaml, "  a: [");
    off = (size_t)(cut - yaml);
    off += (size_t)snprintf(yaml + off, cap - off, "  a: [");
    for (int i = 0; i < 40; i++)
        off += (size_t)snprintf(yaml + off, cap - off, "%s*e", i ? ", " : "");
    snprintf(yaml + off, cap - off, "]\n");
    struct gm_migparted *m = NULL;
    char err[512] = "";
    if (gm_migparted_parse(yaml, strlen(yaml), SRC, &m, err, sizeof(err)))
        fail_msg("parse: %s", err);
    assert_int_equal(m->layouts[0].n_entries, 40);
    gm_migparted_free(m);
    free(yaml);
}

/* What strategy single serves: every GPU a layout covers with MIG on,
 * one profile across the node. */
static void test_check_single(void **state)
{
    static const struct {
        const char *json;
        int gpus;        /* on the node; 0: unknown */
        const char *err; /* NULL: fine */
    } cases[] = {
        {"[{\"devices\":\"all\",\"migEnabled\":true,\"migDevices\":"
         "{\"1g.10gb\":7}}]",
         8, NULL},
        {"[{\"devices\":[0,1],\"migEnabled\":true,\"migDevices\":"
         "{\"3g.40gb\":2}},{\"devices\":\"all\",\"migEnabled\":true,"
         "\"migDevices\":{\"3g.40gb\":1}}]",
         8, NULL},
        {"[{\"devices\":[0,1],\"migEnabled\":true,\"migDevices\":"
         "{\"3g.40gb\":2}},{\"devices\":\"all\",\"migEnabled\":false}]",
         8,
         "layout \"x\": leaves MIG off on some GPUs, which strategy single "
         "does not serve (every GPU must have MIG on with one profile); use "
         "strategy mixed"},
        {"[{\"devices\":\"all\",\"migEnabled\":true,\"migDevices\":"
         "{\"1g.10gb\":1,\"1g.10gb+me\":1}}]",
         8,
         "layout \"x\": has 1g.10gb and 1g.10gb+me on one node, which "
         "strategy single does not serve (the device plugin takes one MIG "
         "profile a node); use strategy mixed"},
        /* GPUs 2..7 in no entry: left as they are, MIG off. */
        {"[{\"devices\":[0,1],\"migEnabled\":true,\"migDevices\":"
         "{\"3g.40gb\":2}}]",
         8,
         "layout \"x\": has no entry for GPU 2 of 8, which keeps MIG as "
         "it is: strategy single needs every GPU with MIG on and one "
         "profile; use strategy mixed"},
        /* The GPU count unknown: only the entries are checked. */
        {"[{\"devices\":[0,1],\"migEnabled\":true,\"migDevices\":"
         "{\"3g.40gb\":2}}]",
         0, NULL},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[512] = "";
        int rc = gm_layout_check_single(cases[i].json, cases[i].gpus,
                                        "layout \"x\"", err, sizeof(err));
        if (cases[i].err == NULL) {
            assert_int_equal(rc, 0);
        } else {
            assert_int_equal(rc, -EINVAL);
            assert_string_equal(err, cases[i].err);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_and_find),
        cmocka_unit_test(test_device_filter_picks_entry),
        cmocka_unit_test(test_lists_and_disabled),
        cmocka_unit_test(test_profile_checks),
        cmocka_unit_test(test_unknown_model_when_mig_capable),
        cmocka_unit_test(test_inline_layout),
        cmocka_unit_test(test_models),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_invalid_config_kept_apart),
        cmocka_unit_test(test_unknown_model_agent_rules),
        cmocka_unit_test(test_alias_expansion_capped),
        cmocka_unit_test(test_check_single),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
