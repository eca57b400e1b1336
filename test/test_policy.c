/* Policy decoding: defaults, every field, and errors that name the field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "planner/policy.h"
#include "support/planner_nodes.h"

#define META                                                                   \
    "\"metadata\":{\"name\":\"p\",\"uid\":\"u1\",\"generation\":3,"            \
    "\"resourceVersion\":\"42\"}"
#define SEL "\"nodeSelector\":{\"matchLabels\":{\"pool\":\"a\"}}"

static void test_defaults(void **state)
{
    struct gm_policy *p =
        gmt_policy("{" META ",\"spec\":{\"mode\":\"full\"," SEL "}}", 0);
    const struct gm_policy_spec *s = &p->spec;

    assert_true(p->valid);
    assert_string_equal(p->name, "p");
    assert_string_equal(p->uid, "u1");
    assert_string_equal(p->resource_version, "42");
    assert_int_equal(p->generation, 3);
    assert_int_equal(s->mode, GM_MODE_FULL);
    assert_int_equal(s->priority, 0);
    assert_int_equal(s->max_unavailable, 1);
    assert_false(s->max_unavailable_percent);
    assert_int_equal(s->max_failures, 1);
    assert_false(s->paused);
    assert_false(s->has_window);
    assert_true(s->drain_gpu_pods_only);
    assert_string_equal(s->drain_pod_selector, "");
    assert_int_equal(s->drain_timeout_seconds, 600);
    assert_int_equal(s->drain_grace_period_seconds, -1);
    assert_false(s->drain_force);
    assert_false(s->has_wait);
    assert_int_equal(s->on_failure, GM_ON_FAILURE_ROLLBACK);
    assert_false(s->allow_reboot);
    assert_null(p->status);
    gm_policy_free(p);
}

static void test_full_spec(void **state)
{
    struct gm_policy *p = gmt_policy(
        "{" META ",\"spec\":{\"mode\":\"mig\",\"priority\":-7," SEL ","
        "\"mig\":{\"layout\":[{\"devices\":[0,1],\"migDevices\":"
        "{\"1g.10gb\":7}},{\"migDevices\":{\"3g.40gb\":2}}],"
        "\"strategy\":\"single\"},"
        "\"rollout\":{\"maxUnavailable\":\"25%\",\"maxFailures\":3,"
        "\"paused\":true,\"window\":{\"days\":[\"mon\",\"sun\"],\"start\":"
        "\"22:00\",\"end\":\"06:30\",\"timeZone\":\"Asia/Kolkata\"},"
        "\"drain\":{\"gpuPodsOnly\":false,\"podSelector\":\"a=b\","
        "\"timeoutSeconds\":0,\"gracePeriodSeconds\":30,"
        "\"deleteEmptyDirData\":true,\"force\":true},"
        "\"waitForCompletion\":{\"podSelector\":\"job-type=training\","
        "\"timeoutSeconds\":3600},\"onFailure\":\"Hold\","
        "\"allowReboot\":true}}}",
        0);
    const struct gm_policy_spec *s = &p->spec;

    assert_int_equal(s->priority, -7);
    assert_true(s->has_mig_layout);
    assert_null(s->mig_config);
    assert_int_equal(s->mig_strategy, GM_MIG_SINGLE);
    assert_int_equal(s->mig_layout.n_entries, 2);
    assert_int_equal(s->mig_layout.entries[0].n_devices, 2);
    assert_int_equal(s->mig_layout.entries[0].devices[1], 1);
    assert_string_equal(s->mig_layout.entries[0].counts[0].profile, "1g.10gb");
    assert_int_equal(s->mig_layout.entries[0].counts[0].count, 7);
    assert_true(s->mig_layout.entries[1].all_devices);
    assert_true(s->max_unavailable_percent);
    assert_int_equal(s->max_unavailable, 25);
    assert_int_equal(s->max_failures, 3);
    assert_true(s->paused);
    assert_true(s->has_window);
    assert_int_equal(s->window.days, (1 << 1) | (1 << 0));
    assert_int_equal(s->window.start_minute, 22 * 60);
    assert_int_equal(s->window.end_minute, 6 * 60 + 30);
    assert_string_equal(s->window.time_zone, "Asia/Kolkata");
    assert_false(s->drain_gpu_pods_only);
    assert_string_equal(s->drain_pod_selector, "a=b");
    assert_int_equal(s->drain_timeout_seconds, 0);
    assert_int_equal(s->drain_grace_period_seconds, 30);
    assert_true(s->drain_delete_empty_dir_data);
    assert_true(s->drain_force);
    assert_true(s->has_wait);
    assert_string_equal(s->wait_pod_selector, "job-type=training");
    assert_int_equal(s->wait_timeout_seconds, 3600);
    assert_int_equal(s->on_failure, GM_ON_FAILURE_HOLD);
    assert_true(s->allow_reboot);
    gm_policy_free(p);
}

static void test_vgpu(void **state)
{
    struct gm_policy *p =
        gmt_policy("{" META ",\"spec\":{\"mode\":\"vgpu\"," SEL ",\"vgpu\":"
                   "{\"splitCount\":10,\"memoryScaling\":1.5}}}",
                   0);

    assert_true(p->spec.has_split_count);
    assert_int_equal(p->spec.split_count, 10);
    assert_true(p->spec.has_memory_scaling);
    assert_true(p->spec.memory_scaling == 1.5);
    assert_false(p->spec.has_core_scaling);
    assert_true(p->spec.core_scaling == 1.0);
    gm_policy_free(p);
}

static void test_window_defaults(void **state)
{
    struct gm_policy *p =
        gmt_policy("{" META ",\"spec\":{\"mode\":\"full\"," SEL ",\"rollout\":"
                   "{\"window\":{\"start\":\"01:00\",\"end\":\"02:00\"}}}}",
                   0);

    assert_int_equal(p->spec.window.days, GM_DAYS_ALL);
    assert_string_equal(p->spec.window.time_zone, "UTC");
    gm_policy_free(p);
}

/* The CRD bounds maxUnavailable only below: a count above any fleet is
 * every node at once, not an error that would give the nodes away. */
static void test_huge_max_unavailable(void **state)
{
    struct gm_policy *p =
        gmt_policy("{" META ",\"spec\":{\"mode\":\"full\"," SEL ",\"rollout\":"
                   "{\"maxUnavailable\":5000000000}}}",
                   0);

    (void)state;
    assert_true(p->valid);
    assert_int_equal(p->spec.max_unavailable, 1000000);
    gm_policy_free(p);
}

static void test_status_decoded(void **state)
{
    struct gm_policy *p = gmt_policy(
        "{" META ",\"spec\":{\"mode\":\"full\"," SEL "},\"status\":"
        "{\"observedGeneration\":2,\"conditions\":[{\"type\":\"Ready\","
        "\"status\":\"False\",\"reason\":\"Progressing\",\"message\":\"m\","
        "\"lastTransitionTime\":\"2024-01-01T00:00:00Z\"}],\"summary\":"
        "{\"matched\":10,\"converged\":7,\"switching\":1,\"pending\":1,"
        "\"failed\":1}}}",
        0);
    const struct gm_condition *c = gm_policy_condition(p, "Ready");

    assert_non_null(p->status);
    assert_int_equal(p->status_observed_generation, 2);
    assert_int_equal(p->summary.matched, 10);
    assert_int_equal(p->summary.failed, 1);
    assert_non_null(c);
    assert_string_equal(c->status, "False");
    assert_string_equal(c->last_transition_time, "2024-01-01T00:00:00Z");
    assert_null(gm_policy_condition(p, "Stalled"));
    gm_policy_free(p);
}

/* Each case: a spec fragment and the start of the message it must give. */
static const struct {
    const char *spec;
    const char *msg;
} bad[] = {
    {"\"mode\":\"full\"", "spec.nodeSelector: required"},
    {"\"mode\":\"gpu\"," SEL, "spec.mode: \"gpu\" is not one of"},
    {SEL, "spec.mode: required"},
    {"\"mode\":\"mig\"," SEL, "spec.mig: required when spec.mode is mig"},
    {"\"mode\":\"full\"," SEL ",\"mig\":{\"config\":\"x\"}",
     "spec.mig: only allowed when spec.mode is mig"},
    {"\"mode\":\"mig\"," SEL ",\"mig\":{\"config\":\"x\",\"layout\":"
     "[{\"migDevices\":{\"1g.10gb\":1}}]}",
     "spec.mig: set exactly one of config or layout"},
    {"\"mode\":\"mig\"," SEL ",\"mig\":{\"layout\":[{\"migDevices\":"
     "{\"1g.10GB\":1}}]}",
     "spec.mig.layout[0].migDevices: \"1g.10GB\" is not a MIG profile"},
    {"\"mode\":\"mig\"," SEL ",\"mig\":{\"layout\":[{\"devices\":[64],"
     "\"migDevices\":{\"1g.10gb\":1}}]}",
     "spec.mig.layout[0].devices[0]: must be a GPU index"},
    {"\"mode\":\"mig\"," SEL ",\"mig\":{\"layout\":[{\"migDevices\":"
     "{\"1g.10gb\":1}},{\"migDevices\":{\"1g.10gb\":1}}]}",
     "spec.mig.layout: at most one entry may omit devices"},
    {"\"mode\":\"full\"," SEL ",\"vgpu\":{}",
     "spec.vgpu: only allowed when spec.mode is vgpu"},
    {"\"mode\":\"vgpu\"," SEL ",\"vgpu\":{\"splitCount\":0}",
     "spec.vgpu.splitCount: 0 is out of range"},
    {"\"mode\":\"vgpu\"," SEL ",\"vgpu\":{\"coreScaling\":0}",
     "spec.vgpu.coreScaling: 0 must be greater than 0"},
    {"\"mode\":\"full\"," SEL ",\"priority\":1001",
     "spec.priority: 1001 is out of range"},
    {"\"mode\":\"full\"," SEL ",\"rollout\":{\"maxUnavailable\":\"150%\"}",
     "spec.rollout.maxUnavailable: \"150%\" is not a valid percentage"},
    {"\"mode\":\"full\"," SEL ",\"rollout\":{\"maxUnavailable\":\"0%\"}",
     "spec.rollout.maxUnavailable: \"0%\" is not a valid percentage"},
    {"\"mode\":\"full\"," SEL ",\"rollout\":{\"maxUnavailable\":\"ten\"}",
     "spec.rollout.maxUnavailable: \"ten\" is not a valid percentage"},
    {"\"mode\":\"full\"," SEL ",\"rollout\":{\"maxUnavailable\":0}",
     "spec.rollout.maxUnavailable: 0 must be at least 1"},
    {"\"mode\":\"full\"," SEL ",\"rollout\":{\"maxFailures\":0}",
     "spec.rollout.maxFailures: 0 is out of range"},
    {"\"mode\":\"full\"," SEL ",\"rollout\":{\"paused\":\"yes\"}",
     "spec.rollout.paused: must be true or false"},
    {"\"mode\":\"full\"," SEL ",\"rollout\":{\"window\":{\"start\":"
     "\"24:00\",\"end\":\"01:00\"}}",
     "spec.rollout.window.start: \"24:00\" is not a time"},
    {"\"mode\":\"full\"," SEL ",\"rollout\":{\"window\":{\"start\":"
     "\"22:00\"}}",
     "spec.rollout.window.end: \"\" is not a time"},
    {"\"mode\":\"full\"," SEL ",\"rollout\":{\"window\":{\"days\":"
     "[\"monday\"],\"start\":\"22:00\",\"end\":\"01:00\"}}",
     "spec.rollout.window.days[0]: \"monday\" is not one of"},
    {"\"mode\":\"full\"," SEL ",\"rollout\":{\"window\":{\"start\":"
     "\"22:00\",\"end\":\"01:00\",\"timeZone\":\"../../etc/passwd\"}}",
     "spec.rollout.window.timeZone: \"../../etc/passwd\" is not an IANA"},
    {"\"mode\":\"full\"," SEL ",\"rollout\":{\"drain\":"
     "{\"gracePeriodSeconds\":-2}}",
     "spec.rollout.drain.gracePeriodSeconds: -2 is out of range"},
    {"\"mode\":\"full\"," SEL ",\"rollout\":{\"drain\":"
     "{\"timeoutSeconds\":-1}}",
     "spec.rollout.drain.timeoutSeconds: -1 is out of range"},
    {"\"mode\":\"full\"," SEL ",\"rollout\":{\"waitForCompletion\":{}}",
     "spec.rollout.waitForCompletion.podSelector: required"},
    {"\"mode\":\"full\"," SEL ",\"rollout\":{\"onFailure\":\"Retry\"}",
     "spec.rollout.onFailure: \"Retry\" is not Rollback or Hold"},
    {"\"mode\":\"full\",\"nodeSelector\":{\"matchExpressions\":[{\"key\":"
     "\"a\",\"operator\":\"In\"}]}",
     "spec.nodeSelector.matchExpressions[0].values: must be non-empty"},
    {"\"mode\":\"full\",\"nodeSelector\":{\"matchExpressions\":[{\"key\":"
     "\"a\",\"operator\":\"Exists\",\"values\":[\"x\"]}]}",
     "spec.nodeSelector.matchExpressions[0].values: must be empty"},
    {"\"mode\":\"full\",\"nodeSelector\":{\"matchExpressions\":[{\"key\":"
     "\"a\",\"operator\":\"Gt\",\"values\":[\"1\"]}]}",
     "spec.nodeSelector.matchExpressions[0].operator: \"Gt\" is not one"},
    {"\"mode\":\"full\",\"nodeSelector\":{\"matchExpressions\":[{\"key\":"
     "\"pool=b\",\"operator\":\"Exists\"}]}",
     "spec.nodeSelector.matchExpressions[0].key: \"pool=b\" is not a label "
     "key: its name may hold only"},
    {"\"mode\":\"full\",\"nodeSelector\":{\"matchLabels\":{\"Example.com/"
     "pool\":\"a\"}}",
     "spec.nodeSelector.matchLabels: \"Example.com/pool\" is not a label "
     "key: its prefix must begin"},
    {"\"mode\":\"full\",\"nodeSelector\":{\"matchLabels\":{\"a/b/c\":"
     "\"x\"}}",
     "spec.nodeSelector.matchLabels: \"a/b/c\" is not a label key: its name "
     "may hold only"},
    {"\"mode\":\"full\",\"nodeSelector\":{\"matchLabels\":{\"-pool\":"
     "\"x\"}}",
     "spec.nodeSelector.matchLabels: \"-pool\" is not a label key: its name "
     "must begin"},
    /* the CRD's rules, for files kubectl gpumode plan reads itself */
    {"\"mode\":\"full\",\"nodeSelector\":{\"matchLabels\":{\"pool\":"
     "\"b c\"}}",
     "spec.nodeSelector.matchLabels.pool: \"b c\" is not a label value"},
    {"\"mode\":\"full\",\"nodeSelector\":{\"matchExpressions\":[{\"key\":"
     "\"a\",\"operator\":\"In\",\"values\":[\"x\",\"-b\"]}]}",
     "spec.nodeSelector.matchExpressions[0].values[1]: \"-b\" is not a "
     "label value"},
    {"\"mode\":\"mig\"," SEL ",\"mig\":{\"layout\":[{\"devices\":[0],"
     "\"migDevices\":{\"1g.10gb\":7}},{\"devices\":[1,0],\"migDevices\":"
     "{\"3g.40gb\":2}}]}",
     "spec.mig.layout: a GPU index may appear in only one layout entry (0"},
    {"\"mode\":\"mig\"," SEL ",\"mig\":{\"layout\":[{\"migDevices\":"
     "{\"1g.5gb\":7,\"3g.20gb\":2}}]}",
     "spec.mig.layout[0].migDevices: the instances need more than the 7 "
     "compute slices"},
};

static void test_errors_name_the_field(void **state)
{
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char json[1024];
        snprintf(json, sizeof(json), "{" META ",\"spec\":{%s}}", bad[i].spec);
        struct gm_policy *p = gmt_policy(json, -EINVAL);
        assert_false(p->valid);
        assert_non_null(p->error);
        if (strncmp(p->error, bad[i].msg, strlen(bad[i].msg)) != 0)
            fail_msg("case %zu: got \"%s\", want \"%s...\"", i, p->error,
                     bad[i].msg);
        /* Metadata survives, so the status can say what is wrong. */
        assert_string_equal(p->name, "p");
        assert_int_equal(p->generation, 3);
        gm_policy_free(p);
    }
}

/* What the rules above must still take: label values empty or with '_',
 * '.' and '-'; 7 compute slices exactly; disjoint device lists. */
static void test_limits_taken(void **state)
{
    (void)state;
    struct gm_policy *p = gmt_policy(
        "{" META ",\"spec\":{\"mode\":\"mig\",\"nodeSelector\":{"
        "\"matchLabels\":{\"pool\":\"a_b.c-1\",\"empty\":\"\"},"
        "\"matchExpressions\":[{\"key\":\"t\",\"operator\":\"NotIn\","
        "\"values\":[\"\",\"x.y_z\"]}]},\"mig\":{\"layout\":["
        "{\"devices\":[0,1],\"migDevices\":{\"4g.40gb\":1,\"3g.40gb\":1}},"
        "{\"devices\":[2],\"migDevices\":{\"1g.10gb+me\":1,\"1g.10gb\":6}},"
        "{\"migDevices\":{\"7g.80gb\":1}}]}}}",
        0);
    assert_true(p->valid);
    gm_policy_free(p);
}

static void test_no_name(void **state)
{
    json_object *o = json_tokener_parse("{\"spec\":{}}");
    struct gm_policy *p = (struct gm_policy *)1;

    assert_int_equal(gm_policy_decode(o, &p), -EINVAL);
    assert_null(p);
    json_object_put(o);
}

static void test_modes(void **state)
{
    enum gm_mode m;

    assert_int_equal(gm_mode_parse("vgpu", &m), 0);
    assert_int_equal(m, GM_MODE_VGPU);
    assert_int_equal(gm_mode_parse("unknown", &m), -EINVAL);
    assert_int_equal(gm_mode_parse(NULL, &m), -EINVAL);
    assert_string_equal(gm_mode_name(GM_MODE_UNKNOWN), "unknown");
    assert_string_equal(gm_mode_name(GM_MODE_MIG), "mig");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_full_spec),
        cmocka_unit_test(test_vgpu),
        cmocka_unit_test(test_window_defaults),
        cmocka_unit_test(test_huge_max_unavailable),
        cmocka_unit_test(test_status_decoded),
        cmocka_unit_test(test_errors_name_the_field),
        cmocka_unit_test(test_limits_taken),
        cmocka_unit_test(test_no_name),
        cmocka_unit_test(test_modes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
