/* Status building, kstatus conditions, and diffing against the last write. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "planner/status.h"
#include "support/planner_nodes.h"

#define T0 1715000000 /* 2024-05-06T12:53:20Z */
#define T1 (T0 + 3600)

/* A policy whose last written status is `status` (JSON text or NULL). */
static struct gm_policy *policy_with(const char *status, int generation)
{
    char json[8192];

    snprintf(json, sizeof(json),
             "{\"metadata\":{\"name\":\"p\",\"generation\":%d},\"spec\":"
             "{\"mode\":\"mig\",\"nodeSelector\":{\"matchLabels\":"
             "{\"pool\":\"a\"}},\"mig\":{\"config\":\"x\"}}%s%s}",
             generation, status ? ",\"status\":" : "", status ? status : "");
    return gmt_policy(json, 0);
}

static json_object *cond(json_object *st, const char *type)
{
    json_object *arr = json_object_object_get(st, "conditions");

    for (size_t i = 0; i < json_object_array_length(arr); i++) {
        json_object *c = json_object_array_get_idx(arr, i);
        if (strcmp(json_object_get_string(json_object_object_get(c, "type")),
                   type) == 0)
            return c;
    }
    fail_msg("no condition %s", type);
    return NULL;
}

static const char *cs(json_object *st, const char *type, const char *field)
{
    return json_object_get_string(
        json_object_object_get(cond(st, type), field));
}

static struct gm_plan converged_plan(int n)
{
    struct gm_plan pl;

    memset(&pl, 0, sizeof(pl));
    pl.summary.matched = n;
    pl.summary.converged = n;
    pl.window = -1;
    return pl;
}

static void test_converged_fleet_writes_nothing(void **state)
{
    struct gm_policy *p = policy_with(NULL, 4);
    struct gm_plan pl = converged_plan(10);
    json_object *st = NULL;

    assert_int_equal(gm_status_build(p, &pl, T0, &st), 0);
    assert_true(gm_status_changed(p, st));
    assert_string_equal(cs(st, "Ready", "status"), "True");
    assert_string_equal(cs(st, "Ready", "reason"), "Converged");
    assert_string_equal(cs(st, "Ready", "message"), "10/10 nodes in mig");
    assert_string_equal(cs(st, "Ready", "lastTransitionTime"),
                        "2024-05-06T12:53:20Z");
    assert_string_equal(cs(st, "Reconciling", "status"), "False");
    assert_string_equal(cs(st, "Stalled", "status"), "False");
    assert_string_equal(cs(st, "Stalled", "reason"), "AsExpected");
    assert_int_equal(
        json_object_get_int(json_object_object_get(st, "observedGeneration")),
        4);
    assert_null(json_object_object_get(st, "nodes"));

    /* Written, read back an hour later: the same object, no write. */
    struct gm_policy *q = policy_with(json_object_to_json_string(st), 4);
    json_object *again = NULL;
    assert_int_equal(gm_status_build(q, &pl, T1, &again), 0);
    assert_false(gm_status_changed(q, again));
    json_object_put(again);

    /* A new generation is a change even when nothing else is. */
    gm_policy_free(q);
    q = policy_with(json_object_to_json_string(st), 5);
    assert_int_equal(gm_status_build(q, &pl, T1, &again), 0);
    assert_true(gm_status_changed(q, again));
    assert_string_equal(cs(again, "Ready", "lastTransitionTime"),
                        "2024-05-06T12:53:20Z");
    json_object_put(again);
    json_object_put(st);
    gm_policy_free(p);
    gm_policy_free(q);
}

static void test_transitions_stamp_only_changed_conditions(void **state)
{
    struct gm_policy *p = policy_with(NULL, 1);
    struct gm_plan pl = converged_plan(10);
    json_object *st = NULL;

    pl.summary.converged = 7;
    pl.summary.switching = 1;
    pl.summary.pending = 1;
    pl.summary.failed = 1;
    assert_int_equal(gm_status_build(p, &pl, T0, &st), 0);
    assert_string_equal(cs(st, "Ready", "status"), "False");
    assert_string_equal(cs(st, "Ready", "reason"), "Progressing");
    assert_string_equal(cs(st, "Ready", "message"),
                        "7/10 nodes in mig; 1 switching, 1 pending, 1 "
                        "failed");
    assert_string_equal(cs(st, "Reconciling", "status"), "True");
    assert_string_equal(cs(st, "Reconciling", "reason"), "Switching");

    struct gm_policy *q = policy_with(json_object_to_json_string(st), 1);
    struct gm_plan done = converged_plan(10);
    json_object *st2 = NULL;
    assert_int_equal(gm_status_build(q, &done, T1, &st2), 0);
    assert_true(gm_status_changed(q, st2));
    assert_string_equal(cs(st2, "Ready", "status"), "True");
    assert_string_equal(cs(st2, "Ready", "lastTransitionTime"),
                        "2024-05-06T13:53:20Z");
    assert_string_equal(cs(st2, "Reconciling", "lastTransitionTime"),
                        "2024-05-06T13:53:20Z");
    /* Stalled stayed False: its time is kept. */
    assert_string_equal(cs(st2, "Stalled", "lastTransitionTime"),
                        "2024-05-06T12:53:20Z");
    json_object_put(st);
    json_object_put(st2);
    gm_policy_free(p);
    gm_policy_free(q);
}

static void test_stalled(void **state)
{
    struct gm_policy *p = policy_with(NULL, 1);
    struct gm_plan pl = converged_plan(3);
    json_object *st = NULL;

    pl.summary.converged = 1;
    pl.summary.pending = 2;
    pl.stall_reason = "InvalidLayout";
    pl.stall_message = strdup("layout \"x\" is not in ConfigMap a/b");
    assert_int_equal(gm_status_build(p, &pl, T0, &st), 0);
    assert_string_equal(cs(st, "Stalled", "status"), "True");
    assert_string_equal(cs(st, "Stalled", "reason"), "InvalidLayout");
    assert_string_equal(cs(st, "Stalled", "message"),
                        "layout \"x\" is not in ConfigMap a/b");
    assert_string_equal(cs(st, "Ready", "reason"), "InvalidLayout");
    /* Nothing in flight and nothing can start: not reconciling. */
    assert_string_equal(cs(st, "Reconciling", "status"), "False");
    assert_string_equal(cs(st, "Reconciling", "reason"), "Stalled");
    json_object_put(st);
    free(pl.stall_message);
    gm_policy_free(p);
}

/* Failed nodes below maxFailures, everything else converged: nothing more
 * will happen without a person, so Stalled, not a quiet "Current". */
static void test_failed_nodes_left_stall(void **state)
{
    struct gm_policy *p = policy_with(NULL, 1);
    struct gm_plan pl = converged_plan(3);
    struct gm_plan_node nodes[1] = {{.name = "gpu-07",
                                     .state = GM_NODE_FAILED,
                                     .phase = "Failed",
                                     .from = "full",
                                     .to = "mig",
                                     .message = "PluginNotReady"}};
    json_object *st = NULL;

    pl.summary.converged = 2;
    pl.summary.failed = 1;
    pl.nodes = nodes;
    pl.n_nodes = 1;
    assert_int_equal(gm_status_build(p, &pl, T0, &st), 0);
    assert_string_equal(cs(st, "Stalled", "status"), "True");
    assert_string_equal(cs(st, "Stalled", "reason"), "NodesFailed");
    assert_string_equal(cs(st, "Stalled", "message"),
                        "1 node failed (first: gpu-07); annotate a node "
                        "gpumode.io/retry to try it again");
    assert_string_equal(cs(st, "Ready", "status"), "False");
    assert_string_equal(cs(st, "Ready", "reason"), "NodesFailed");
    assert_string_equal(cs(st, "Reconciling", "status"), "False");
    json_object_put(st);

    /* While others still switch it is reconciling, not stalled. */
    pl.summary.converged = 1;
    pl.summary.switching = 1;
    assert_int_equal(gm_status_build(p, &pl, T0, &st), 0);
    assert_string_equal(cs(st, "Stalled", "status"), "False");
    assert_string_equal(cs(st, "Reconciling", "status"), "True");
    json_object_put(st);
    gm_policy_free(p);
}

/* A notice (a split HAMi's ConfigMap cannot take) rides on the progress
 * line after ". ", and does not make a converged policy less Ready. */
static void test_notice_in_messages(void **state)
{
    struct gm_policy *p = policy_with(NULL, 1);
    struct gm_plan pl = converged_plan(2);
    json_object *st = NULL;
    (void)state;

    pl.notice = strdup("spec.vgpu.splitCount 4 is not written");
    assert_int_equal(gm_status_build(p, &pl, T0, &st), 0);
    assert_string_equal(cs(st, "Ready", "status"), "True");
    assert_string_equal(cs(st, "Ready", "message"),
                        "2/2 nodes in mig. spec.vgpu.splitCount 4 is not "
                        "written");
    assert_string_equal(cs(st, "Stalled", "status"), "False");
    json_object_put(st);
    free(pl.notice);
    gm_policy_free(p);
}

/* The policy's switch runs on a node it no longer governs (relabelled, or
 * taken by a policy of higher priority): every node it governs has
 * converged, but the policy is not Ready until that switch ends, or
 * kubectl wait and GitOps tools would call it done mid-switch. */
static void test_switch_elsewhere_is_not_done(void **state)
{
    struct gm_policy *p = policy_with(NULL, 1);
    struct gm_plan pl = converged_plan(1);
    json_object *st = NULL;
    (void)state;

    pl.in_flight_elsewhere = 1;
    assert_int_equal(gm_status_build(p, &pl, T0, &st), 0);
    assert_string_equal(cs(st, "Ready", "status"), "False");
    assert_string_equal(cs(st, "Ready", "reason"), "Progressing");
    assert_string_equal(cs(st, "Reconciling", "status"), "True");
    assert_string_equal(cs(st, "Reconciling", "reason"), "Switching");
    assert_string_equal(cs(st, "Reconciling", "message"),
                        "1/1 nodes in mig; 1 still switching on nodes the "
                        "policy no longer governs");
    assert_string_equal(cs(st, "Stalled", "status"), "False");
    json_object_put(st);
    gm_policy_free(p);
}

static void test_waiting_reasons(void **state)
{
    struct gm_policy *p = policy_with(NULL, 1);
    struct gm_plan pl = converged_plan(2);
    json_object *st = NULL;

    pl.summary.converged = 1;
    pl.summary.pending = 1;
    pl.window = 0;
    assert_int_equal(gm_status_build(p, &pl, T0, &st), 0);
    assert_string_equal(cs(st, "Reconciling", "reason"), "WaitingForWindow");
    json_object_put(st);
    pl.budget.paused = true;
    assert_int_equal(gm_status_build(p, &pl, T0, &st), 0);
    assert_string_equal(cs(st, "Reconciling", "reason"), "Paused");
    json_object_put(st);
    gm_policy_free(p);
}

static void test_nodes_capped_and_sorted(void **state)
{
    struct gm_policy *p = policy_with(NULL, 1);
    struct gm_plan pl = converged_plan(300);
    json_object *st = NULL;
    char name[32];

    pl.summary.converged = 0;
    pl.summary.pending = 300;
    pl.n_nodes = 300;
    pl.nodes = calloc(300, sizeof(*pl.nodes));
    for (size_t i = 0; i < 300; i++) {
        snprintf(name, sizeof(name), "gpu-%03zu", i);
        pl.nodes[i].name = strdup(name);
        pl.nodes[i].phase = strdup("Pending");
        pl.nodes[i].from = strdup("full");
        pl.nodes[i].to = strdup("mig");
        pl.nodes[i].message = strdup(i == 0 ? "rollout paused" : "");
        if (i == 1) {
            pl.nodes[i].since = strdup("not a time");
            pl.nodes[i].attempt = 2;
        }
    }
    assert_int_equal(gm_status_build(p, &pl, T0, &st), 0);
    json_object *nodes = json_object_object_get(st, "nodes");
    assert_int_equal(json_object_array_length(nodes), 256);
    assert_int_equal(
        json_object_get_int(json_object_object_get(st, "nodesOmitted")), 44);
    json_object *n0 = json_object_array_get_idx(nodes, 0);
    json_object *n1 = json_object_array_get_idx(nodes, 1);
    assert_string_equal(
        json_object_get_string(json_object_object_get(n0, "name")), "gpu-000");
    assert_string_equal(
        json_object_get_string(json_object_object_get(n0, "message")),
        "rollout paused");
    assert_null(json_object_object_get(n1, "message"));
    assert_null(json_object_object_get(n1, "since")); /* not RFC 3339 */
    assert_int_equal(json_object_get_int(json_object_object_get(n1, "attempt")),
                     2);
    json_object_put(st);
    gm_plan_free(&pl);
    gm_policy_free(p);
}

/* A node's since is written only when the API server's date-time check
 * (Go's RFC 3339) would take it: one it refuses fails the whole status
 * write, every time. */
static void test_since_is_rfc3339(void **state)
{
    static const struct {
        const char *since;
        bool kept;
    } cases[] = {
        {"2024-05-06T22:30:00Z", true},
        {"2024-05-06T22:30:00.123Z", true},
        {"2024-05-06T22:30:00+02:00", true},
        {"2024-02-29T00:00:00Z", true},
        {"2024-13-45T99:99:99Z", false},
        {"2023-02-29T00:00:00Z", false},
        {"2024-04-31T00:00:00Z", false},
        {"2024-05-06T24:00:00Z", false},
        {"2024-05-06T22:30:60Z", false},
        {"2024-05-06T22:30:00Zjunk", false},
        {" 2024-05-06T22:30:00Z", false},
        {"2024-05-06T22:30:00+", false},
        {"2024-05-06T22:30:00+2:00", false},
        {"2024-05-06T22:30:00.Z", false},
        {"2024-05-06 22:30:00Z", false},
        {"2024-5-06T22:30:00Z", false},
        {"2024-05-06T22:30:00", false},
        {"", false},
    };
    struct gm_policy *p = policy_with(NULL, 1);
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct gm_plan pl = converged_plan(1);
        json_object *st = NULL;
        pl.summary.converged = 0;
        pl.summary.switching = 1;
        pl.n_nodes = 1;
        pl.nodes = calloc(1, sizeof(*pl.nodes));
        pl.nodes[0].name = strdup("gpu-1");
        pl.nodes[0].phase = strdup("Draining");
        pl.nodes[0].from = strdup("full");
        pl.nodes[0].to = strdup("mig");
        pl.nodes[0].message = strdup("");
        pl.nodes[0].since = strdup(cases[i].since);
        assert_int_equal(gm_status_build(p, &pl, T0, &st), 0);
        json_object *n =
            json_object_array_get_idx(json_object_object_get(st, "nodes"), 0);
        json_object *since = json_object_object_get(n, "since");
        if (cases[i].kept != (since != NULL))
            fail_msg("since \"%s\": %s", cases[i].since,
                     since ? "kept" : "dropped");
        json_object_put(st);
        gm_plan_free(&pl);
    }
    gm_policy_free(p);
}

static void test_invalid_spec_status(void **state)
{
    struct gm_policy *p = gmt_policy(
        "{\"metadata\":{\"name\":\"p\",\"generation\":2},\"spec\":{\"mode\":"
        "\"full\",\"nodeSelector\":{\"matchLabels\":{\"a\":\"b\"}},"
        "\"rollout\":{\"maxUnavailable\":\"150%\"}}}",
        -EINVAL);
    json_object *st = NULL;

    assert_int_equal(gm_status_build_invalid(p, T0, &st), 0);
    assert_string_equal(cs(st, "Stalled", "status"), "True");
    assert_string_equal(cs(st, "Stalled", "reason"), "InvalidSpec");
    assert_string_equal(cs(st, "Stalled", "message"),
                        "spec.rollout.maxUnavailable: \"150%\" is not a "
                        "valid percentage (an integer from 1% to 100%)");
    assert_string_equal(cs(st, "Ready", "status"), "False");
    json_object_put(st);
    gm_policy_free(p);
}

static void test_reasons(void **state)
{
    const char *good[] = {"Ready",           "AsExpected",
                          "InvalidLayout",   "MaxFailuresReached",
                          "PolicyConflict",  "WaitingForWindow",
                          "Paused",          "Converged",
                          "Progressing",     "Switching",
                          "Stalled",         "InvalidSpec",
                          "InvalidTimeZone", "a_b:c,d"};
    const char *bad[] = {"",          "1Bad",    "Has space",
                         "Trailing:", "dash-ed", "Trailing,"};

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (!gm_condition_reason_valid(good[i]))
            fail_msg("%s should be valid", good[i]);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (gm_condition_reason_valid(bad[i]))
            fail_msg("%s should be invalid", bad[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_converged_fleet_writes_nothing),
        cmocka_unit_test(test_transitions_stamp_only_changed_conditions),
        cmocka_unit_test(test_stalled),
        cmocka_unit_test(test_failed_nodes_left_stall),
        cmocka_unit_test(test_notice_in_messages),
        cmocka_unit_test(test_switch_elsewhere_is_not_done),
        cmocka_unit_test(test_waiting_reasons),
        cmocka_unit_test(test_nodes_capped_and_sorted),
        cmocka_unit_test(test_since_is_rfc3339),
        cmocka_unit_test(test_invalid_spec_status),
        cmocka_unit_test(test_reasons),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
