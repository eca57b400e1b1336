/* Planning one policy: classification, budget, gates, conflicts, layouts. */
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
#include "support/planner_nodes.h"

#define NOW 1715034600 /* Mon 2024-05-06 22:30Z */

static struct gm_policy *policy(const char *name, const char *mode,
                                const char *extra)
{
    char json[2048];

    snprintf(json, sizeof(json),
             "{\"metadata\":{\"name\":\"%s\",\"generation\":1},\"spec\":"
             "{\"mode\":\"%s\",\"nodeSelector\":{\"matchLabels\":"
             "{\"pool\":\"a\"}}%s}}",
             name, mode, extra);
    return gmt_policy(json, 0);
}

struct fleet {
    struct gm_node *n[400];
    size_t len;
};

static struct gm_node *add(struct fleet *f, struct gm_node *n)
{
    f->n[f->len++] = n;
    return n;
}

static void fleet_free(struct fleet *f)
{
    for (size_t i = 0; i < f->len; i++)
        gmt_node_free(f->n[i]);
}

/* What plan() tells the planner of HAMi's ConfigMap; tests that set it
 * put it back. */
static bool hami_absent;
static const char *hami_unreadable;
static const struct gm_map *hami_entries;

static void plan(const struct gm_policy *p, const struct gm_policy *other,
                 struct fleet *f, const struct gm_migparted *layouts,
                 struct gm_plan *out)
{
    const struct gm_policy *all[2] = {p, other};
    struct gm_plan_input in = {
        .policy = p,
        .policies = all,
        .n_policies = other ? 2 : 1,
        .nodes = (const struct gm_node *const *)f->n,
        .n_nodes = f->len,
        .now = NOW,
        .layouts = layouts,
        .layouts_source = "ConfigMap gpumode-system/layouts",
        .layouts_error = layouts ? NULL : "ConfigMap not found",
        .hami_config_absent = hami_absent,
        .hami_config_unreadable = hami_unreadable,
        .hami_config_source = "ConfigMap kube-system/hami-device-plugin",
        .hami_entries = hami_entries,
        .vgpu_resource = "nvidia.com/vgpu",
        .resources_grace_s = 120,
    };
    assert_int_equal(gm_plan_policy(&in, out), 0);
}

static const struct gm_plan_node *entry(const struct gm_plan *pl,
                                        const char *name)
{
    for (size_t i = 0; i < pl->n_nodes; i++)
        if (strcmp(pl->nodes[i].name, name) == 0)
            return &pl->nodes[i];
    return NULL;
}

static void test_classify_and_budget(void **state)
{
    struct gm_policy *p = policy("p", "full",
                                 ",\"rollout\":{\"maxUnavailable\":2,"
                                 "\"maxFailures\":2}");
    struct fleet f = {0};
    struct gm_plan pl;

    add(&f, gmt_node("n1", "pool=a", "gpumode.io/mode=full",
                     "gpumode.io/state=ready", NULL));
    struct gm_node *sw = add(&f, gmt_node("n2", "pool=a", NULL));
    gmt_set(&sw->ann_switch,
            "{\"policy\":\"p\",\"from\":\"mig\",\"to\":\"full\",\"phase\":"
            "\"Draining\",\"since\":\"2024-05-06T22:00:00Z\",\"attempt\":1,"
            "\"message\":\"2 pods left\"}");
    sw->unschedulable = true;
    add(&f, gmt_node("n3", "pool=a", "gpumode.io/mode=mig",
                     "gpumode.io/state=failed", NULL));
    add(&f, gmt_node("n6", "pool=a", "gpumode.io/mode=mig", NULL));
    add(&f, gmt_node("n5", "pool=a", "gpumode.io/mode=vgpu", NULL));
    add(&f, gmt_node("n4", "pool=a", NULL));
    add(&f, gmt_node("x1", "pool=b", NULL));
    plan(p, NULL, &f, NULL, &pl);

    assert_int_equal(pl.summary.matched, 6);
    assert_int_equal(pl.summary.converged, 1);
    assert_int_equal(pl.summary.switching, 2);
    assert_int_equal(pl.summary.pending, 2);
    assert_int_equal(pl.summary.failed, 1);
    assert_int_equal(pl.budget.limit, 2);
    assert_int_equal(pl.budget.used, 1); /* the switch in flight */
    assert_null(pl.stall_reason);
    /* One slot, taken by name: n4 (no mode label: unknown). */
    assert_int_equal(pl.n_starts, 1);
    assert_string_equal(pl.starts[0].node->name, "n4");
    assert_int_equal(pl.starts[0].from, GM_MODE_UNKNOWN);
    assert_int_equal(pl.starts[0].to, GM_MODE_FULL);
    assert_null(pl.starts[0].layout);
    /* The list is sorted and leaves out the converged node. */
    assert_int_equal(pl.n_nodes, 5);
    assert_string_equal(pl.nodes[0].name, "n2");
    assert_string_equal(pl.nodes[0].phase, "Draining");
    assert_string_equal(pl.nodes[0].from, "mig");
    assert_string_equal(pl.nodes[0].since, "2024-05-06T22:00:00Z");
    assert_int_equal(pl.nodes[0].attempt, 1);
    assert_string_equal(pl.nodes[0].message, "2 pods left");
    assert_string_equal(entry(&pl, "n3")->phase, "Failed");
    assert_string_equal(entry(&pl, "n4")->phase, "Starting");
    assert_string_equal(entry(&pl, "n5")->message,
                        "waiting for rollout budget: 2 of 2 nodes "
                        "unavailable");
    gm_plan_free(&pl);
    gm_policy_free(p);
    fleet_free(&f);
}

/* A selector of NotIn matches CPU and control-plane nodes too: they are
 * not the policy's (neither counted nor started), the GPU nodes are. */
static void test_notin_selector_leaves_cpu_nodes(void **state)
{
    struct gm_policy *p = gmt_policy(
        "{\"metadata\":{\"name\":\"p\",\"generation\":1},\"spec\":{"
        "\"mode\":\"full\",\"nodeSelector\":{\"matchExpressions\":[{"
        "\"key\":\"pool\",\"operator\":\"NotIn\",\"values\":["
        "\"training\"]}]},\"rollout\":{\"maxUnavailable\":\"100%\"}}}",
        0);
    struct fleet f = {0};
    struct gm_plan pl;
    (void)state;

    add(&f, gmt_node("cp-1", "node-role.kubernetes.io/control-plane=",
                     "nvidia.com/gpu.present=false", NULL));
    add(&f, gmt_node("cpu-1", "nvidia.com/gpu.present=false", NULL));
    add(&f, gmt_node("gpu-1", "gpumode.io/mode=vgpu", NULL));
    struct gm_node *plain =
        add(&f, gmt_node("gpu-2", "nvidia.com/gpu.present=false", NULL));
    gmt_alloc(plain, "nvidia.com/gpu", 8);
    plan(p, NULL, &f, NULL, &pl);

    assert_int_equal(pl.summary.matched, 2);
    assert_int_equal(pl.n_starts, 2);
    assert_string_equal(pl.starts[0].node->name, "gpu-1");
    assert_string_equal(pl.starts[1].node->name, "gpu-2");
    assert_null(entry(&pl, "cp-1"));
    assert_null(entry(&pl, "cpu-1"));
    gm_plan_free(&pl);
    gm_policy_free(p);
    fleet_free(&f);
}

static void test_cordoned_start_free_and_notready_waits(void **state)
{
    struct gm_policy *p = policy("p", "vgpu", "");
    struct fleet f = {0};
    struct gm_plan pl;

    add(&f, gmt_node("a", "pool=a", NULL))->ready = false;
    add(&f, gmt_node("b", "pool=a", NULL))->unschedulable = true;
    add(&f, gmt_node("c", "pool=a", NULL));
    plan(p, NULL, &f, NULL, &pl);

    /* a NotReady and b cordoned use the budget of 1 twice over; b starts
     * anyway because it is unavailable already, c waits. */
    assert_int_equal(pl.budget.used, 2);
    assert_int_equal(pl.n_starts, 1);
    assert_string_equal(pl.starts[0].node->name, "b");
    assert_string_equal(entry(&pl, "a")->message, "node is NotReady");
    assert_string_equal(entry(&pl, "c")->message,
                        "waiting for rollout budget: 2 of 1 nodes "
                        "unavailable");
    gm_plan_free(&pl);
    gm_policy_free(p);
    fleet_free(&f);
}

/* A converged node someone cordoned holds a slot of the budget that no
 * switch of gpumode's will free: the nodes waiting for it name it. */
static void test_wait_names_a_converged_node_out_of_service(void **state)
{
    struct gm_policy *p = policy("p", "full", "");
    struct fleet f = {0};
    struct gm_plan pl;

    add(&f, gmt_node("a", "pool=a", "gpumode.io/mode=full",
                     "gpumode.io/state=ready", NULL))
        ->unschedulable = true;
    add(&f, gmt_node("b", "pool=a", "gpumode.io/mode=mig", NULL));
    plan(p, NULL, &f, NULL, &pl);
    assert_int_equal(pl.summary.converged, 1);
    assert_int_equal(pl.n_starts, 0);
    assert_string_equal(entry(&pl, "b")->message,
                        "waiting for rollout budget: 1 of 1 nodes "
                        "unavailable (a, converged, is cordoned or not "
                        "Ready)");
    gm_plan_free(&pl);

    add(&f, gmt_node("c", "pool=a", "gpumode.io/mode=full",
                     "gpumode.io/state=ready", NULL))
        ->ready = false;
    plan(p, NULL, &f, NULL, &pl);
    assert_string_equal(entry(&pl, "b")->message,
                        "waiting for rollout budget: 2 of 1 nodes "
                        "unavailable (a and 1 other converged nodes are "
                        "cordoned or not Ready)");
    gm_plan_free(&pl);

    /* Named by name, not by where the node cache has it. */
    add(&f, gmt_node("0a", "pool=a", "gpumode.io/mode=full",
                     "gpumode.io/state=ready", NULL))
        ->unschedulable = true;
    plan(p, NULL, &f, NULL, &pl);
    assert_string_equal(entry(&pl, "b")->message,
                        "waiting for rollout budget: 3 of 1 nodes "
                        "unavailable (0a and 2 other converged nodes are "
                        "cordoned or not Ready)");
    gm_plan_free(&pl);
    gm_policy_free(p);
    fleet_free(&f);
}

static void test_max_failures_stalls(void **state)
{
    struct gm_policy *p = policy("p", "full", "");
    struct fleet f = {0};
    struct gm_plan pl;

    add(&f, gmt_node("a", "pool=a", "gpumode.io/state=failed", NULL));
    add(&f, gmt_node("b", "pool=a", NULL));
    plan(p, NULL, &f, NULL, &pl);
    assert_int_equal(pl.n_starts, 0);
    assert_string_equal(pl.stall_reason, "MaxFailuresReached");
    assert_string_equal(entry(&pl, "b")->message,
                        "rollout stopped: maxFailures reached");
    gm_plan_free(&pl);

    /* A retry annotation makes the failed node a candidate again. */
    gmt_set(&f.n[0]->ann_retry, "1");
    plan(p, NULL, &f, NULL, &pl);
    assert_null(pl.stall_reason);
    assert_int_equal(pl.n_starts, 1);
    assert_string_equal(pl.starts[0].node->name, "a");
    gm_plan_free(&pl);

    /* With another failed node still over maxFailures, the retried one
     * starts all the same (the stall asks for retries); the rest wait. */
    add(&f, gmt_node("c", "pool=a", "gpumode.io/state=failed", NULL));
    plan(p, NULL, &f, NULL, &pl);
    assert_string_equal(pl.stall_reason, "MaxFailuresReached");
    assert_int_equal(pl.n_starts, 1);
    assert_string_equal(pl.starts[0].node->name, "a");
    assert_string_equal(entry(&pl, "b")->message,
                        "rollout stopped: maxFailures reached");
    gm_plan_free(&pl);

    /* A retry mark on a node that never failed is no retry: it waits
     * like any new switch (kubectl annotate, not kubectl gpumode retry,
     * can put one there). */
    gmt_set(&f.n[1]->ann_retry, "1");
    plan(p, NULL, &f, NULL, &pl);
    assert_string_equal(pl.stall_reason, "MaxFailuresReached");
    assert_int_equal(pl.n_starts, 1);
    assert_string_equal(pl.starts[0].node->name, "a");
    assert_string_equal(entry(&pl, "b")->message,
                        "rollout stopped: maxFailures reached");
    gm_plan_free(&pl);
    gm_policy_free(p);
    fleet_free(&f);
}

/* A node held after a failure (onFailure: Hold keeps the record and the
 * cordon) is out of service: it uses the budget, so maxUnavailable 2 with
 * one held node starts one switch, not two. */
static void test_held_failure_uses_the_budget(void **state)
{
    struct gm_policy *p = policy("p", "full",
                                 ",\"rollout\":{\"maxUnavailable\":2,"
                                 "\"maxFailures\":3,\"onFailure\":\"Hold\"}");
    struct fleet f = {0};
    struct gm_plan pl;

    struct gm_node *held = add(&f, gmt_node("a", "pool=a", NULL));
    gmt_set(&held->ann_switch,
            "{\"policy\":\"p\",\"from\":\"mig\",\"to\":\"full\","
            "\"phase\":\"Failed\",\"since\":\"2024-05-06T22:00:00Z\","
            "\"attempt\":1,\"reason\":\"PluginNotReady\"}");
    held->unschedulable = true;
    add(&f, gmt_node("b", "pool=a", "gpumode.io/mode=mig", NULL));
    add(&f, gmt_node("c", "pool=a", "gpumode.io/mode=mig", NULL));
    plan(p, NULL, &f, NULL, &pl);
    assert_int_equal(pl.summary.failed, 1);
    assert_int_equal(pl.budget.used, 1); /* the held node */
    assert_int_equal(pl.n_starts, 1);
    assert_string_equal(pl.starts[0].node->name, "b");
    assert_null(pl.stall_reason);
    gm_plan_free(&pl);
    gm_policy_free(p);

    /* With one slot, the held node takes it and nothing else will move
     * until a person acts: stalled, saying so. */
    p = policy("p", "full",
               ",\"rollout\":{\"maxUnavailable\":1,"
               "\"maxFailures\":3,\"onFailure\":\"Hold\"}");
    plan(p, NULL, &f, NULL, &pl);
    assert_int_equal(pl.n_starts, 0);
    assert_string_equal(pl.stall_reason, "FailedNodesHoldBudget");
    assert_string_equal(pl.stall_message,
                        "1 failed node held cordoned uses the rollout budget "
                        "(spec.rollout.maxUnavailable 1): retry it, or "
                        "uncordon it, to continue");
    gm_plan_free(&pl);
    /* Uncordoned by a person: b starts, no stall. */
    held->unschedulable = false;
    plan(p, NULL, &f, NULL, &pl);
    assert_int_equal(pl.n_starts, 1);
    assert_null(pl.stall_reason);
    gm_plan_free(&pl);
    gm_policy_free(p);
    fleet_free(&f);
}

/* A retry of a held node goes through the plan like any start: a paused
 * policy or a closed window holds it, and it starts aimed at the policy's
 * target as it is now (here full, where the failed attempt went to vgpu),
 * taking no new slot while the node is still cordoned. Its mode label
 * already says full, but the hardware is not trusted to be. */
static void test_retry_of_a_held_node_follows_the_policy(void **state)
{
    struct gm_policy *paused = policy(
        "p", "full", ",\"rollout\":{\"paused\":true,\"maxUnavailable\":1}");
    struct gm_policy *win = policy(
        "p", "full",
        ",\"rollout\":{\"window\":{\"start\":\"01:00\",\"end\":\"05:00\"}}");
    struct gm_policy *open = policy("p", "full", "");
    struct fleet f = {0};
    struct gm_plan pl;

    struct gm_node *held =
        add(&f, gmt_node("a", "pool=a", "gpumode.io/mode=full",
                         "gpumode.io/state=failed", NULL));
    gmt_set(&held->ann_switch,
            "{\"policy\":\"old\",\"from\":\"full\",\"to\":\"vgpu\","
            "\"phase\":\"Failed\",\"since\":\"2024-05-06T22:00:00Z\","
            "\"attempt\":1,\"reason\":\"PluginNotReady\"}");
    held->unschedulable = true;
    gmt_set(&held->ann_retry, "1");
    add(&f, gmt_node("b", "pool=a", "gpumode.io/mode=vgpu", NULL));

    plan(paused, NULL, &f, NULL, &pl);
    assert_int_equal(pl.n_starts, 0);
    assert_int_equal(pl.summary.failed, 0);
    assert_int_equal(pl.summary.pending, 2);
    assert_string_equal(entry(&pl, "a")->message, "rollout paused");
    gm_plan_free(&pl);

    plan(win, NULL, &f, NULL, &pl);
    assert_int_equal(pl.n_starts, 0);
    assert_string_equal(entry(&pl, "a")->message,
                        "waiting for the rollout window (opens "
                        "2024-05-07T01:00:00Z)");
    gm_plan_free(&pl);

    /* maxUnavailable 1, used by the cordoned node: it starts, b waits. */
    plan(open, NULL, &f, NULL, &pl);
    assert_int_equal(pl.n_starts, 1);
    assert_string_equal(pl.starts[0].node->name, "a");
    assert_int_equal(pl.starts[0].to, GM_MODE_FULL);
    assert_string_equal(entry(&pl, "b")->message,
                        "waiting for rollout budget: 1 of 1 nodes "
                        "unavailable");
    gm_plan_free(&pl);
    gm_policy_free(paused);
    gm_policy_free(win);
    gm_policy_free(open);
    fleet_free(&f);
}

static void test_paused_and_window(void **state)
{
    struct gm_policy *paused =
        policy("p", "full", ",\"rollout\":{\"paused\":true}");
    /* Closed at Mon 22:30Z: opens Tue 01:00Z. */
    struct gm_policy *win = policy(
        "p", "full",
        ",\"rollout\":{\"window\":{\"start\":\"01:00\",\"end\":\"05:00\"}}");
    struct fleet f = {0};
    struct gm_plan pl;

    add(&f, gmt_node("a", "pool=a", NULL));
    plan(paused, NULL, &f, NULL, &pl);
    assert_int_equal(pl.n_starts, 0);
    assert_true(pl.budget.paused);
    assert_string_equal(entry(&pl, "a")->message, "rollout paused");
    gm_plan_free(&pl);

    plan(win, NULL, &f, NULL, &pl);
    assert_int_equal(pl.n_starts, 0);
    assert_int_equal(pl.window, 0);
    assert_int_equal(pl.requeue_at, 1715043600);
    assert_string_equal(entry(&pl, "a")->message,
                        "waiting for the rollout window (opens "
                        "2024-05-07T01:00:00Z)");
    gm_plan_free(&pl);
    gm_policy_free(paused);
    gm_policy_free(win);
    fleet_free(&f);
}

static void test_conflict_reported(void **state)
{
    struct gm_policy *p = policy("p", "full", "");
    struct gm_policy *q = policy("q", "mig", ",\"mig\":{\"config\":\"x\"}");
    struct fleet f = {0};
    struct gm_plan pl;

    add(&f, gmt_node("a", "pool=a", NULL));
    plan(p, q, &f, NULL, &pl);
    assert_int_equal(pl.summary.matched, 0);
    assert_int_equal(pl.summary.conflicted, 1);
    assert_int_equal(pl.n_starts, 0);
    assert_string_equal(pl.nodes[0].phase, "Conflict");
    assert_string_equal(pl.nodes[0].message,
                        "also selected by q with the same priority 0; "
                        "neither acts on this node");
    assert_string_equal(pl.stall_reason, "PolicyConflict");
    gm_plan_free(&pl);
    gm_policy_free(p);
    gm_policy_free(q);
    fleet_free(&f);
}

/* A node whose switch for p is in flight when q, of the same priority,
 * starts selecting it too: the switch goes on, so the node keeps its slot
 * of p's budget and p starts no other node beyond maxUnavailable. */
static void test_conflict_mid_switch_keeps_its_slot(void **state)
{
    struct gm_policy *p = policy("p", "full", "");
    struct gm_policy *q =
        gmt_policy("{\"metadata\":{\"name\":\"q\",\"generation\":1},\"spec\":"
                   "{\"mode\":\"full\",\"nodeSelector\":{\"matchLabels\":"
                   "{\"x\":\"1\"}}}}",
                   0);
    struct fleet f = {0};
    struct gm_plan pl;

    (void)state;
    struct gm_node *a = add(&f, gmt_node("a", "pool=a", "x=1", NULL));
    a->unschedulable = true;
    gmt_set(&a->ann_switch, "{\"policy\":\"p\",\"from\":\"vgpu\","
                            "\"to\":\"full\",\"phase\":\"Draining\","
                            "\"attempt\":1,\"cordoned\":true}");
    add(&f, gmt_node("b", "pool=a", "gpumode.io/mode=vgpu", NULL));
    plan(p, q, &f, NULL, &pl);
    assert_int_equal(pl.summary.conflicted, 1);
    assert_int_equal(pl.budget.used, 1);
    assert_int_equal(pl.n_starts, 0);
    gm_plan_free(&pl);
    gm_policy_free(p);
    gm_policy_free(q);
    fleet_free(&f);
}

/* p's switch goes on where p no longer owns the node: its labels changed
 * so that no policy selects it (feature discovery relabels a single-
 * strategy node's product, a pool is renamed), or a policy of higher
 * priority took it. It keeps its slot of p's budget until it ends. */
static void test_switch_elsewhere_keeps_its_slot(void **state)
{
    struct gm_policy *p = policy("p", "full", "");
    struct gm_policy *q =
        gmt_policy("{\"metadata\":{\"name\":\"q\",\"generation\":1},\"spec\":"
                   "{\"mode\":\"full\",\"priority\":5,\"nodeSelector\":"
                   "{\"matchLabels\":{\"x\":\"1\"}}}}",
                   0);
    const char *labels[] = {"pool=b", "x=1"};
    (void)state;
    for (size_t i = 0; i < 2; i++) {
        struct fleet f = {0};
        struct gm_plan pl;
        struct gm_node *a = add(&f, gmt_node("a", "pool=a", labels[i], NULL));
        if (i == 0) { /* pool=a replaced, not added to */
            gmt_node_free(a);
            f.len = 0;
            a = add(&f, gmt_node("a", labels[i], NULL));
        }
        a->unschedulable = true;
        gmt_set(&a->ann_switch, "{\"policy\":\"p\",\"from\":\"vgpu\","
                                "\"to\":\"full\",\"phase\":\"Draining\","
                                "\"attempt\":1,\"cordoned\":true}");
        add(&f, gmt_node("b", "pool=a", "gpumode.io/mode=vgpu", NULL));
        plan(p, q, &f, NULL, &pl);
        assert_int_equal(pl.summary.matched, 1);
        assert_int_equal(pl.budget.used, 1);
        assert_int_equal(pl.n_starts, 0);
        assert_int_equal(pl.in_flight_elsewhere, 1);
        gm_plan_free(&pl);
        /* A failed switch keeps no slot here: the node is not p's. */
        gmt_set(&a->ann_switch, "{\"policy\":\"p\",\"from\":\"vgpu\","
                                "\"to\":\"full\",\"phase\":\"Failed\","
                                "\"attempt\":1,\"cordoned\":true}");
        plan(p, q, &f, NULL, &pl);
        assert_int_equal(pl.budget.used, 0);
        assert_int_equal(pl.n_starts, 1);
        assert_int_equal(pl.in_flight_elsewhere, 0);
        gm_plan_free(&pl);
        fleet_free(&f);
    }
    gm_policy_free(p);
    gm_policy_free(q);
}

/* A node labelled gpumode.io/skip=true in the middle of p's switch: the
 * switch stops there, a person's to finish, so it holds no slot of p's
 * budget and p goes on with its other nodes. */
static void test_skipped_mid_switch_holds_no_slot(void **state)
{
    struct gm_policy *p = policy("p", "full", "");
    struct fleet f = {0};
    struct gm_plan pl;

    (void)state;
    struct gm_node *a =
        add(&f, gmt_node("a", "pool=a", "gpumode.io/skip=true", NULL));
    a->unschedulable = true;
    gmt_set(&a->ann_switch, "{\"policy\":\"p\",\"from\":\"vgpu\","
                            "\"to\":\"full\",\"phase\":\"Draining\","
                            "\"attempt\":1,\"cordoned\":true}");
    add(&f, gmt_node("b", "pool=a", "gpumode.io/mode=vgpu", NULL));
    plan(p, NULL, &f, NULL, &pl);
    assert_int_equal(pl.budget.used, 0);
    assert_int_equal(pl.n_starts, 1);
    gm_plan_free(&pl);
    gm_policy_free(p);
    fleet_free(&f);
}

/* Nine policies of one priority select a node: each of them, not only the
 * eight the assignment lists, reports the conflict. */
static void test_nine_tied_all_report(void **state)
{
    struct gm_policy *ps[9];
    const struct gm_policy *all[9];
    struct fleet f = {0};
    (void)state;
    for (int i = 0; i < 9; i++) {
        char name[16];
        snprintf(name, sizeof(name), "p%d", i);
        ps[i] = policy(name, "full", "");
        all[i] = ps[i];
    }
    add(&f, gmt_node("a", "pool=a", NULL));
    for (int k = 0; k < 9; k++) {
        struct gm_plan pl;
        struct gm_plan_input in = {
            .policy = ps[k],
            .policies = all,
            .n_policies = 9,
            .nodes = (const struct gm_node *const *)f.n,
            .n_nodes = f.len,
            .now = NOW,
            .vgpu_resource = "nvidia.com/vgpu",
        };
        assert_int_equal(gm_plan_policy(&in, &pl), 0);
        assert_int_equal(pl.summary.conflicted, 1);
        assert_int_equal(pl.n_nodes, 1);
        /* Eight others: the first eight listed, less this one. */
        const char *more = k < 8 ? " and 1 more with" : "p7 with";
        if (strstr(pl.nodes[0].message, more) == NULL)
            fail_msg("p%d: \"%s\" lacks \"%s\"", k, pl.nodes[0].message, more);
        gm_plan_free(&pl);
    }
    for (int i = 0; i < 9; i++)
        gm_policy_free(ps[i]);
    fleet_free(&f);
}

/* Two nodes of a model outside gpumode's table, only one labelled
 * nvidia.com/mig.capable=true: the layout resolves for that one only,
 * whichever the planner sees first (the memo of settings per model keys on
 * the label too). */
static void test_unknown_model_capable_not_shared(void **state)
{
    struct gm_policy *p = policy(
        "p", "mig", ",\"mig\":{\"layout\":[{\"migDevices\":{\"1g.10gb\":7}}]}");
    (void)state;
    for (int order = 0; order < 2; order++) {
        struct fleet f = {0};
        struct gm_plan pl;
        struct gm_node *yes =
            gmt_node("a", "pool=a", "nvidia.com/gpu.product=Foo-GPU",
                     "nvidia.com/gpu.count=8", "nvidia.com/mig.capable=true",
                     "gpumode.io/mode=full", NULL);
        struct gm_node *no =
            gmt_node("b", "pool=a", "nvidia.com/gpu.product=Foo-GPU",
                     "nvidia.com/gpu.count=8", "gpumode.io/mode=full", NULL);
        add(&f, order ? no : yes);
        add(&f, order ? yes : no);
        plan(p, NULL, &f, NULL, &pl);
        assert_non_null(pl.stall_reason);
        assert_string_equal(pl.stall_reason, "InvalidLayout");
        if (strstr(pl.stall_message, "not known to support MIG") == NULL)
            fail_msg("order %d: %s", order, pl.stall_message);
        gm_plan_free(&pl);
        fleet_free(&f);
    }
    gm_policy_free(p);
}

/* Strategy single serves every MIG instance as nvidia.com/gpu, and the
 * device plugin refuses a node whose GPUs are not uniform: two profiles
 * (a GPU left without MIG: test_layout). Such a policy stalls
 * (InvalidLayout) before
 * any node is drained, rather than crash-loop the plugin after it. One
 * profile everywhere starts; so does the same mix under mixed. */
static void test_single_strategy_needs_one_profile(void **state)
{
    static const struct {
        const char *mig;
        const char *stall; /* in the stall message; NULL: starts */
    } cases[] = {
        {"{\"strategy\":\"single\",\"layout\":[{\"migDevices\":"
         "{\"1g.10gb\":2,\"2g.20gb\":1,\"3g.40gb\":1}}]}",
         "has 1g.10gb and 2g.20gb on one node, which strategy single does "
         "not serve"},
        {"{\"strategy\":\"single\",\"layout\":[{\"devices\":[0,1,2,3],"
         "\"migDevices\":{\"1g.10gb\":7}},{\"devices\":[4,5,6,7],"
         "\"migDevices\":{\"3g.40gb\":2}}]}",
         "has 1g.10gb and 3g.40gb on one node"},
        {"{\"strategy\":\"single\",\"layout\":[{\"migDevices\":"
         "{\"1g.10gb\":7}}]}",
         NULL},
        {"{\"strategy\":\"mixed\",\"layout\":[{\"migDevices\":"
         "{\"1g.10gb\":2,\"2g.20gb\":1,\"3g.40gb\":1}}]}",
         NULL},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char extra[512];
        snprintf(extra, sizeof(extra), ",\"mig\":%s", cases[i].mig);
        struct gm_policy *p = policy("p", "mig", extra);
        struct fleet f = {0};
        struct gm_plan pl;
        add(&f,
            gmt_node("a", "pool=a",
                     "nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3",
                     "nvidia.com/gpu.count=8", "gpumode.io/mode=full", NULL));
        plan(p, NULL, &f, NULL, &pl);
        if (cases[i].stall) {
            assert_int_equal(pl.n_starts, 0);
            assert_non_null(pl.stall_reason);
            assert_string_equal(pl.stall_reason, "InvalidLayout");
            if (strstr(pl.stall_message, cases[i].stall) == NULL)
                fail_msg("case %zu: %s", i, pl.stall_message);
        } else {
            assert_null(pl.stall_reason);
            assert_int_equal(pl.n_starts, 1);
        }
        gm_plan_free(&pl);
        fleet_free(&f);
        gm_policy_free(p);
    }

    /* A node in MIG under single already: feature discovery counts its
     * 56 MIG devices in gpu.count; its GPUs are the 8 gpumode verified,
     * all of which the layout covers. */
    struct gm_policy *p = policy(
        "p", "mig",
        ",\"mig\":{\"strategy\":\"single\",\"layout\":[{\"devices\":"
        "[0,1,2,3],\"migDevices\":{\"1g.10gb\":7}},{\"devices\":[4,5,6,7],"
        "\"migDevices\":{\"1g.10gb\":7}}]}");
    struct fleet f = {0};
    struct gm_plan pl;
    struct gm_node *n = add(
        &f, gmt_node("a", "pool=a",
                     "nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3-MIG-1g.10gb",
                     "nvidia.com/gpu.count=56", "gpumode.io/mode=full", NULL));
    n->ann_gpus = 8;
    plan(p, NULL, &f, NULL, &pl);
    assert_null(pl.stall_reason);
    assert_int_equal(pl.n_starts, 1);
    gm_plan_free(&pl);
    fleet_free(&f);
    gm_policy_free(p);
}

static const char layouts_yaml[] =
    "version: v1\nmig-configs:\n  all-3g.40gb:\n    - devices: all\n"
    "      mig-enabled: true\n      mig-devices: {\"3g.40gb\": 2}\n";

static void test_mig_layouts(void **state)
{
    struct gm_policy *p = policy("p", "mig",
                                 ",\"mig\":{\"config\":"
                                 "\"all-3g.40gb\"}");
    struct gm_policy *missing =
        policy("p", "mig", ",\"mig\":{\"config\":\"all-1g.10gb\"}");
    struct gm_migparted *m = NULL;
    char err[256];
    struct fleet f = {0};
    struct gm_plan pl;

    assert_int_equal(gm_migparted_parse(layouts_yaml, strlen(layouts_yaml),
                                        "cm", &m, err, sizeof(err)),
                     0);
    add(&f, gmt_node("a", "pool=a",
                     "nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3", NULL));
    add(&f, gmt_node("b", "pool=a",
                     "nvidia.com/gpu.product=NVIDIA-A100-SXM4-40GB", NULL));
    plan(p, NULL, &f, m, &pl);
    assert_int_equal(pl.n_starts, 1);
    assert_string_equal(pl.starts[0].layout,
                        "[{\"devices\":\"all\",\"migEnabled\":true,"
                        "\"migDevices\":{\"3g.40gb\":2}}]");
    assert_string_equal(pl.stall_reason, "InvalidLayout");
    assert_non_null(strstr(pl.stall_message, "profile 3g.40gb is not "
                                             "available on "
                                             "NVIDIA-A100-SXM4-40GB"));
    gm_plan_free(&pl);

    plan(missing, NULL, &f, m, &pl);
    assert_int_equal(pl.n_starts, 0);
    assert_string_equal(pl.stall_reason, "InvalidLayout");
    assert_string_equal(pl.stall_message,
                        "layout \"all-1g.10gb\" is not in ConfigMap "
                        "gpumode-system/layouts (mig-configs has: "
                        "all-3g.40gb) (and other nodes)");
    gm_plan_free(&pl);
    gm_migparted_free(m);
    gm_policy_free(p);
    gm_policy_free(missing);
    fleet_free(&f);
}

/* The GPU Operator's ConfigMap holds configs gpumode cannot lay out (RTX
 * PRO 6000 profiles with go-nvlib attributes): a policy naming one is
 * InvalidLayout with that config's message, while a policy naming a
 * usable config of the same document plans its nodes. */
static const char mixed_layouts_yaml[] =
    "version: v1\nmig-configs:\n"
    "  all-1g.24gb.gfx:\n    - devices: all\n      mig-enabled: true\n"
    "      mig-devices:\n        \"1g.24gb+gfx\": 4\n"
    "  all-3g.40gb:\n    - devices: all\n"
    "      mig-enabled: true\n      mig-devices: {\"3g.40gb\": 2}\n";

static void test_invalid_config_fails_only_its_policies(void **state)
{
    struct gm_policy *good = gmt_policy(
        "{\"metadata\":{\"name\":\"good\",\"generation\":1},\"spec\":"
        "{\"mode\":\"mig\",\"nodeSelector\":{\"matchLabels\":"
        "{\"pool\":\"a\"}},\"mig\":{\"config\":\"all-3g.40gb\"}}}",
        0);
    struct gm_policy *gfx = gmt_policy(
        "{\"metadata\":{\"name\":\"gfx\",\"generation\":1},\"spec\":"
        "{\"mode\":\"mig\",\"nodeSelector\":{\"matchLabels\":"
        "{\"pool\":\"b\"}},\"mig\":{\"config\":\"all-1g.24gb.gfx\"}}}",
        0);
    struct gm_migparted *m = NULL;
    char err[512];
    struct fleet f = {0};
    struct gm_plan pl;

    assert_int_equal(gm_migparted_parse(mixed_layouts_yaml,
                                        strlen(mixed_layouts_yaml), "cm", &m,
                                        err, sizeof(err)),
                     0);
    add(&f, gmt_node("a1", "pool=a",
                     "nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3", NULL));
    add(&f, gmt_node("b1", "pool=b",
                     "nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3", NULL));

    plan(good, gfx, &f, m, &pl);
    assert_int_equal(pl.summary.matched, 1);
    assert_int_equal(pl.n_starts, 1);
    assert_string_equal(pl.starts[0].node->name, "a1");
    assert_string_equal(pl.starts[0].layout,
                        "[{\"devices\":\"all\",\"migEnabled\":true,"
                        "\"migDevices\":{\"3g.40gb\":2}}]");
    assert_null(pl.stall_reason);
    gm_plan_free(&pl);

    plan(gfx, good, &f, m, &pl);
    assert_int_equal(pl.summary.matched, 1);
    assert_int_equal(pl.n_starts, 0);
    assert_string_equal(pl.stall_reason, "InvalidLayout");
    assert_string_equal(pl.stall_message,
                        "layout \"all-1g.24gb.gfx\": cm: config.yaml line 7: "
                        "config \"all-1g.24gb.gfx\": profile \"1g.24gb+gfx\" "
                        "is not one gpumode can lay out (it supports "
                        "<n>g.<m>gb and <n>g.<m>gb+me)");
    gm_plan_free(&pl);
    gm_migparted_free(m);
    gm_policy_free(good);
    gm_policy_free(gfx);
    fleet_free(&f);
}

static void test_reboot_reapplies_mig(void **state)
{
    struct gm_policy *p = policy("p", "mig",
                                 ",\"mig\":{\"layout\":"
                                 "[{\"migDevices\":"
                                 "{\"7g.80gb\":1}}]}");
    struct fleet f = {0};
    struct gm_plan pl;
    struct gm_node *n =
        add(&f, gmt_node("a", "pool=a", "gpumode.io/mode=mig",
                         "gpumode.io/state=ready",
                         "nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3", NULL));

    gmt_set(&n->ann_boot_id, "boot-1");
    gmt_set(&n->boot_id, "boot-1");
    plan(p, NULL, &f, NULL, &pl);
    assert_int_equal(pl.summary.converged, 1);
    gm_plan_free(&pl);
    gmt_set(&n->boot_id, "boot-2");
    plan(p, NULL, &f, NULL, &pl);
    assert_int_equal(pl.summary.converged, 0);
    assert_int_equal(pl.n_starts, 1);
    assert_int_equal(pl.starts[0].from, GM_MODE_MIG);
    gm_plan_free(&pl);
    gm_policy_free(p);
    fleet_free(&f);
}

/* A reboot that erased a mig node's layout is repaired, not scheduled: it
 * starts outside the window and before other candidates for the budget;
 * a pause still holds it. */
static void test_reboot_relay_is_a_repair(void **state)
{
    const char *layout = ",\"mig\":{\"layout\":[{\"migDevices\":"
                         "{\"7g.80gb\":1}}]}";
    char extra[512];
    /* Closed at Mon 22:30Z: opens Tue 01:00Z. */
    snprintf(extra, sizeof(extra),
             "%s,\"rollout\":{\"window\":{\"start\":\"01:00\","
             "\"end\":\"05:00\"}}",
             layout);
    struct gm_policy *closed = policy("p", "mig", extra);
    snprintf(extra, sizeof(extra), "%s,\"rollout\":{\"maxUnavailable\":1}",
             layout);
    struct gm_policy *open = policy("p", "mig", extra);
    snprintf(extra, sizeof(extra), "%s,\"rollout\":{\"paused\":true}", layout);
    struct gm_policy *paused = policy("p", "mig", extra);
    struct fleet f = {0};
    struct gm_plan pl;
    const char *h100 = "nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3";

    add(&f, gmt_node("a", "pool=a", "gpumode.io/mode=full", h100, NULL));
    struct gm_node *z = add(&f, gmt_node("z", "pool=a", "gpumode.io/mode=mig",
                                         "gpumode.io/state=ready", h100, NULL));
    gmt_set(&z->ann_boot_id, "boot-1");
    gmt_set(&z->boot_id, "boot-2");

    plan(closed, NULL, &f, NULL, &pl);
    assert_int_equal(pl.n_starts, 1);
    assert_string_equal(pl.starts[0].node->name, "z");
    assert_string_equal(entry(&pl, "z")->message,
                        "switch starting: a reboot erased the MIG layout");
    assert_string_equal(entry(&pl, "a")->message,
                        "waiting for the rollout window (opens "
                        "2024-05-07T01:00:00Z)");
    gm_plan_free(&pl);

    /* One slot: the repair takes it although "a" sorts first by name. */
    plan(open, NULL, &f, NULL, &pl);
    assert_int_equal(pl.n_starts, 1);
    assert_string_equal(pl.starts[0].node->name, "z");
    gm_plan_free(&pl);

    plan(paused, NULL, &f, NULL, &pl);
    assert_int_equal(pl.n_starts, 0);
    assert_string_equal(entry(&pl, "z")->message, "rollout paused");
    gm_plan_free(&pl);
    gm_policy_free(closed);
    gm_policy_free(open);
    gm_policy_free(paused);
    fleet_free(&f);
}

/* A node's gpumode.io/settings, as gm_plan_settings gives it for p with the
 * layout the plan resolved (the caller frees it). */
static char *settings_of(const struct gm_policy *p, const char *layout)
{
    char *out = NULL;
    assert_int_equal(gm_plan_settings(&p->spec, layout, &out), 0);
    return out;
}

static void test_mig_settings_change_relays(void **state)
{
    const char *h100 = "nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3";
    struct gm_policy *one = policy("p", "mig",
                                   ",\"mig\":{\"layout\":[{\"migDevices\":"
                                   "{\"7g.80gb\":1}}]}");
    struct gm_policy *two = policy("p", "mig",
                                   ",\"mig\":{\"layout\":[{\"migDevices\":"
                                   "{\"3g.40gb\":2}}]}");
    struct gm_policy *single = policy("p", "mig",
                                      ",\"mig\":{\"strategy\":\"single\","
                                      "\"layout\":[{\"migDevices\":"
                                      "{\"7g.80gb\":1}}]}");
    struct gm_policy *named =
        policy("p", "mig", ",\"mig\":{\"config\":\"all-1g.10gb\"}");
    struct fleet f = {0};
    struct gm_plan pl;
    struct gm_node *n = add(&f, gmt_node("a", "pool=a", "gpumode.io/mode=mig",
                                         "gpumode.io/state=ready", h100, NULL));

    /* Verified before gpumode wrote settings: taken as current. */
    plan(two, NULL, &f, NULL, &pl);
    assert_int_equal(pl.summary.converged, 1);
    gm_plan_free(&pl);

    char *seven = settings_of(one, "[{\"devices\":\"all\",\"migEnabled\":"
                                   "true,\"migDevices\":{\"7g.80gb\":1}}]");
    assert_string_equal(seven,
                        "{\"strategy\":\"mixed\",\"layout\":[{\"devices\":"
                        "\"all\",\"migEnabled\":true,\"migDevices\":"
                        "{\"7g.80gb\":1}}]}");
    n->ann_settings = seven;
    plan(one, NULL, &f, NULL, &pl);
    assert_int_equal(pl.summary.converged, 1);
    assert_int_equal(pl.n_starts, 0);
    gm_plan_free(&pl);

    /* Another layout: the node switches mig -> mig and the start carries
     * the settings the switch will write when it completes. */
    plan(two, NULL, &f, NULL, &pl);
    assert_int_equal(pl.summary.converged, 0);
    assert_int_equal(pl.n_starts, 1);
    assert_int_equal(pl.starts[0].from, GM_MODE_MIG);
    assert_int_equal(pl.starts[0].to, GM_MODE_MIG);
    assert_non_null(strstr(pl.starts[0].layout, "\"3g.40gb\":2"));
    char *want = settings_of(two, pl.starts[0].layout);
    assert_string_equal(pl.starts[0].settings, want);
    free(want);
    gm_plan_free(&pl);

    /* The same layout served with the other strategy is a change too. */
    plan(single, NULL, &f, NULL, &pl);
    assert_int_equal(pl.n_starts, 1);
    assert_non_null(strstr(pl.starts[0].settings, "\"strategy\":\"single\""));
    gm_plan_free(&pl);

    /* Settings that cannot be computed (the named layout is missing) leave
     * the node as it is, converged, and stall the policy with the reason;
     * nothing starts. */
    plan(named, NULL, &f, NULL, &pl);
    assert_int_equal(pl.summary.converged, 1);
    assert_int_equal(pl.n_starts, 0);
    assert_string_equal(pl.stall_reason, "InvalidLayout");
    assert_non_null(strstr(pl.stall_message, "all-1g.10gb"));
    gm_plan_free(&pl);

    n->ann_settings = NULL;
    free(seven);
    gm_policy_free(one);
    gm_policy_free(two);
    gm_policy_free(single);
    gm_policy_free(named);
    fleet_free(&f);
}

/* More kinds of node (GPU model and count) than the planner memoises: the
 * memo starts over and every node is still judged right. */
static void test_settings_for_many_kinds_of_node(void **state)
{
    struct gm_policy *one = policy("p", "mig",
                                   ",\"mig\":{\"layout\":[{\"migDevices\":"
                                   "{\"7g.80gb\":1}}]}");
    struct gm_policy *two = policy("p", "mig",
                                   ",\"mig\":{\"layout\":[{\"migDevices\":"
                                   "{\"3g.40gb\":2}}]}");
    char *seven = settings_of(one, "[{\"devices\":\"all\",\"migEnabled\":"
                                   "true,\"migDevices\":{\"7g.80gb\":1}}]");
    struct fleet f = {0};
    struct gm_plan pl;

    for (int i = 1; i <= 40; i++) {
        char name[16], count[48];
        snprintf(name, sizeof(name), "n%02d", i);
        snprintf(count, sizeof(count), "nvidia.com/gpu.count=%d", i);
        struct gm_node *n = add(
            &f, gmt_node(name, "pool=a", "gpumode.io/mode=mig",
                         "gpumode.io/state=ready", count,
                         "nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3", NULL));
        n->ann_settings = seven;
    }
    plan(one, NULL, &f, NULL, &pl);
    assert_int_equal(pl.summary.converged, 40);
    gm_plan_free(&pl);
    plan(two, NULL, &f, NULL, &pl);
    assert_int_equal(pl.summary.converged, 0);
    assert_int_equal(pl.summary.pending + pl.summary.switching, 40);
    gm_plan_free(&pl);
    for (size_t i = 0; i < f.len; i++)
        f.n[i]->ann_settings = NULL;
    free(seven);
    gm_policy_free(one);
    gm_policy_free(two);
    fleet_free(&f);
}

static void test_vgpu_settings_change_switches(void **state)
{
    struct gm_policy *split4 =
        policy("p", "vgpu", ",\"vgpu\":{\"splitCount\":4}");
    struct gm_policy *plain = policy("p", "vgpu", "");
    struct gm_policy *full = policy("p", "full", "");
    struct fleet f = {0};
    struct gm_plan pl;
    struct gm_node *n = add(&f, gmt_node("a", "pool=a", "gpumode.io/mode=vgpu",
                                         "gpumode.io/state=ready", NULL));
    char *s4 = settings_of(split4, NULL);
    char *none = settings_of(plain, NULL);
    char *nothing = settings_of(full, NULL);

    assert_string_equal(
        s4, "{\"splitCount\":4,\"memoryScaling\":1,\"coreScaling\":1}");
    assert_string_equal(none, "{}");
    assert_null(nothing);

    n->ann_settings = none;
    plan(plain, NULL, &f, NULL, &pl);
    assert_int_equal(pl.summary.converged, 1);
    gm_plan_free(&pl);
    plan(split4, NULL, &f, NULL, &pl);
    assert_int_equal(pl.n_starts, 1);
    assert_int_equal(pl.starts[0].from, GM_MODE_VGPU);
    assert_null(pl.starts[0].layout);
    assert_string_equal(pl.starts[0].settings, s4);
    gm_plan_free(&pl);
    n->ann_settings = s4;
    plan(split4, NULL, &f, NULL, &pl);
    assert_int_equal(pl.summary.converged, 1);
    gm_plan_free(&pl);

    n->ann_settings = NULL;
    free(s4);
    free(none);
    gm_policy_free(split4);
    gm_policy_free(plain);
    gm_policy_free(full);
    fleet_free(&f);
}

/* Without HAMi's ConfigMap no split can be written: a split change must not
 * drain vgpu nodes for nothing, a node in another mode still switches, and
 * the ConfigMap's arrival makes the {} nodes switch to apply the split. */
static void test_vgpu_split_without_hami_configmap(void **state)
{
    struct gm_policy *split4 = policy(
        "p", "vgpu",
        ",\"vgpu\":{\"splitCount\":4},\"rollout\":{\"maxUnavailable\":2}");
    struct gm_policy *plain = policy("p", "vgpu", "");
    struct fleet f = {0};
    struct gm_plan pl;
    struct gm_node *v = add(&f, gmt_node("a", "pool=a", "gpumode.io/mode=vgpu",
                                         "gpumode.io/state=ready", NULL));
    add(&f, gmt_node("b", "pool=a", "gpumode.io/mode=full",
                     "gpumode.io/state=ready", NULL));
    char *s4 = settings_of(split4, NULL);
    char *none = settings_of(plain, NULL);
    (void)state;

    v->ann_settings = none;
    hami_absent = true;
    plan(split4, NULL, &f, NULL, &pl);
    assert_int_equal(pl.summary.converged, 1);
    assert_int_equal(pl.n_starts, 1);
    assert_string_equal(pl.starts[0].node->name, "b");
    assert_null(pl.stall_reason);
    assert_string_equal(pl.notice,
                        "spec.vgpu.splitCount 4 is not written: ConfigMap "
                        "kube-system/hami-device-plugin does not exist "
                        "(hamiConfigMap in the controller's config names "
                        "it), so HAMi runs with its defaults");
    gm_plan_free(&pl);
    /* Any settings count as current, the split ones too. */
    v->ann_settings = s4;
    plan(plain, NULL, &f, NULL, &pl);
    assert_int_equal(pl.summary.converged, 1);
    assert_null(pl.notice); /* no split asked */
    gm_plan_free(&pl);

    hami_absent = false;
    v->ann_settings = none;
    plan(split4, NULL, &f, NULL, &pl);
    assert_int_equal(pl.summary.converged, 0);
    assert_int_equal(pl.n_starts, 2);
    assert_string_equal(pl.starts[0].node->name, "a");
    assert_string_equal(pl.starts[0].settings, s4);
    assert_null(pl.notice);
    gm_plan_free(&pl);

    v->ann_settings = NULL;
    free(s4);
    free(none);
    gm_policy_free(split4);
    gm_policy_free(plain);
    fleet_free(&f);
}

/* A ConfigMap the controller may not read is neither there nor absent: a
 * vgpu policy stalls, saying why, and starts nothing (its converged nodes
 * stay converged, their settings not compared); other modes go on. */
static void test_vgpu_stalls_while_hami_configmap_unreadable(void **state)
{
    struct gm_policy *split4 = policy(
        "p", "vgpu",
        ",\"vgpu\":{\"splitCount\":4},\"rollout\":{\"maxUnavailable\":2}");
    struct gm_policy *full = policy("p", "full", "");
    struct fleet f = {0};
    struct gm_plan pl;
    struct gm_node *v = add(&f, gmt_node("a", "pool=a", "gpumode.io/mode=vgpu",
                                         "gpumode.io/state=ready", NULL));
    add(&f, gmt_node("b", "pool=a", "gpumode.io/mode=full",
                     "gpumode.io/state=ready", NULL));
    (void)state;

    v->ann_settings = "{}"; /* borrowed: put back before the node goes */
    hami_unreadable = "the controller may not read it (403 Forbidden)";
    plan(split4, NULL, &f, NULL, &pl);
    assert_int_equal(pl.summary.converged, 1);
    assert_int_equal(pl.summary.pending, 1);
    assert_int_equal(pl.n_starts, 0);
    assert_string_equal(pl.stall_reason, "HAMiConfigUnreadable");
    assert_string_equal(pl.stall_message,
                        "ConfigMap kube-system/hami-device-plugin: the "
                        "controller may not read it (403 Forbidden)");
    assert_string_equal(entry(&pl, "b")->message,
                        "waiting until the controller may read HAMi's "
                        "ConfigMap");
    assert_null(pl.notice); /* not "does not exist" */
    gm_plan_free(&pl);

    plan(full, NULL, &f, NULL, &pl);
    assert_null(pl.stall_reason);
    assert_int_equal(pl.n_starts, 1);
    assert_string_equal(pl.starts[0].node->name, "a");
    gm_plan_free(&pl);

    hami_unreadable = NULL;
    v->ann_settings = NULL;
    gm_policy_free(split4);
    gm_policy_free(full);
    fleet_free(&f);
}

/* A single-strategy policy that selects on a label feature discovery
 * rewrites in MIG is told that its nodes may leave it; mixed, or a label of
 * the user's own, is not. */
static void test_single_strategy_selector_notice(void **state)
{
    static const char *const fmt =
        "{\"metadata\":{\"name\":\"p\",\"generation\":1},\"spec\":"
        "{\"mode\":\"mig\",\"nodeSelector\":%s,\"mig\":{\"strategy\":"
        "\"%s\",\"layout\":[{\"migDevices\":{\"1g.10gb\":7}}]}}}";
    static const struct {
        const char *selector, *strategy, *key; /* key: NULL, no notice */
    } cases[] = {
        {"{\"matchLabels\":{\"nvidia.com/gpu.product\":"
         "\"NVIDIA-H100-80GB-HBM3\"}}",
         "single", "nvidia.com/gpu.product"},
        {"{\"matchLabels\":{\"pool\":\"a\"},\"matchExpressions\":[{"
         "\"key\":\"nvidia.com/gpu.count\",\"operator\":\"In\","
         "\"values\":[\"8\"]}]}",
         "single", "nvidia.com/gpu.count"},
        {"{\"matchLabels\":{\"nvidia.com/gpu.product\":"
         "\"NVIDIA-H100-80GB-HBM3\"}}",
         "mixed", NULL},
        {"{\"matchLabels\":{\"pool\":\"a\"}}", "single", NULL},
        {"{\"matchLabels\":{\"pool\":\"a\"},\"matchExpressions\":[{"
         "\"key\":\"nvidia.com/gpu.product\",\"operator\":\"Exists\"}]}",
         "single", NULL},
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char json[1024];
        struct fleet f = {0};
        struct gm_plan pl;
        snprintf(json, sizeof(json), fmt, cases[i].selector, cases[i].strategy);
        struct gm_policy *p = gmt_policy(json, 0);
        add(&f, gmt_node("a", "pool=a", "nvidia.com/gpu.count=8",
                         "nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3", NULL));
        plan(p, NULL, &f, NULL, &pl);
        assert_null(pl.stall_reason);
        if (cases[i].key == NULL) {
            assert_null(pl.notice);
        } else {
            char want[128];
            snprintf(want, sizeof(want), "spec.nodeSelector uses %s, ",
                     cases[i].key);
            assert_non_null(pl.notice);
            assert_non_null(strstr(pl.notice, want));
            assert_non_null(strstr(pl.notice, "stay in MIG with no policy"));
        }
        assert_int_equal(pl.n_starts, 1); /* it warns, it does not stall */
        gm_plan_free(&pl);
        gm_policy_free(p);
        fleet_free(&f);
    }
}

/* A converged vgpu node whose HAMi entry no longer says what it was
 * verified with (the ConfigMap re-created without it, or edited) stays
 * converged and is named in the notice; nodes whose entry agrees, and
 * nodes without a split and without an entry, are not. */
static void test_hami_entries_that_differ(void **state)
{
    struct gm_policy *split4 =
        policy("p", "vgpu", ",\"vgpu\":{\"splitCount\":4}");
    struct gm_policy *plain = policy("p", "vgpu", "");
    struct fleet f = {0};
    struct gm_plan pl;
    struct gm_map entries;
    char *s4 = settings_of(split4, NULL);
    char *none = settings_of(plain, NULL);
    const char *names[] = {"a", "b", "c", "d", "e"};
    (void)state;

    for (size_t i = 5; i-- > 0;) /* e first: the cache's order is any */
        add(&f, gmt_node(names[i], "pool=a", "gpumode.io/mode=vgpu",
                         "gpumode.io/state=ready", NULL))
            ->ann_settings = s4;
    gm_map_init(&entries);
    assert_int_equal(gm_map_put(&entries, "a", s4, NULL), 0);
    assert_int_equal(gm_map_put(&entries, "c",
                                (char *)"{\"splitCount\":10,"
                                        "\"memoryScaling\":1,"
                                        "\"coreScaling\":1}",
                                NULL),
                     0);
    hami_entries = &entries;
    plan(split4, NULL, &f, NULL, &pl);
    assert_int_equal(pl.summary.converged, 5);
    assert_int_equal(pl.n_starts, 0);
    /* The first three by name, whatever the order of the nodes. */
    assert_string_equal(
        pl.notice, "4 nodes' HAMi entries in ConfigMap "
                   "kube-system/hami-device-plugin differ from what they were "
                   "verified with (HAMi takes the entry when the plugin "
                   "restarts; annotating a node gpumode.io/settings=unknown "
                   "switches it again): b, c, d, ...");
    gm_plan_free(&pl);

    /* Without a split the nodes want no entry; one that has one differs. */
    for (size_t i = 0; i < 5; i++)
        f.n[i]->ann_settings = none;
    plan(plain, NULL, &f, NULL, &pl);
    assert_int_equal(pl.summary.converged, 5);
    assert_non_null(strstr(pl.notice, "2 nodes' HAMi entries in ConfigMap "
                                      "kube-system/hami-device-plugin differ "
                                      "from what they were verified with"));
    assert_non_null(strstr(pl.notice, "switches it again): a, c"));
    gm_plan_free(&pl);
    gm_map_del(&entries, "a");
    plan(plain, NULL, &f, NULL, &pl);
    assert_non_null(strstr(pl.notice, "1 node's HAMi entry in ConfigMap "
                                      "kube-system/hami-device-plugin differs "
                                      "from what it was verified with (HAMi"));
    assert_non_null(strstr(pl.notice, "switches it again): c"));
    gm_plan_free(&pl);
    gm_map_del(&entries, "c");
    plan(plain, NULL, &f, NULL, &pl);
    assert_null(pl.notice);
    gm_plan_free(&pl);

    hami_entries = NULL;
    for (size_t i = 0; i < 5; i++)
        f.n[i]->ann_settings = NULL;
    gm_map_free(&entries);
    free(s4);
    free(none);
    gm_policy_free(split4);
    gm_policy_free(plain);
    fleet_free(&f);
}

/* gpumode.io/resources is what a node offered when verified, in one form
 * whatever the order of its allocatable: the GPU mode's resources only. */
static void test_resources_text(void **state)
{
    struct gm_node *n = gmt_node("n1", NULL);
    char buf[256];
    (void)state;

    assert_int_equal(gm_plan_resources(n, "nvidia.com/vgpu", buf, sizeof(buf)),
                     0);
    assert_string_equal(buf, "");
    gmt_alloc(n, "nvidia.com/mig-3g.40gb", 2);
    gmt_alloc(n, "nvidia.com/rdma_shared_device_a", 63); /* not a mode's */
    gmt_alloc(n, "nvidia.com/gpu", 0);                   /* offers none */
    gmt_alloc(n, "nvidia.com/mig-1g.10gb", 14);
    gmt_alloc(n, "nvidia.com/gpumem", 81920);
    gmt_alloc(n, "nvidia.com/vgpu", 40);
    assert_int_equal(gm_plan_resources(n, "nvidia.com/vgpu", buf, sizeof(buf)),
                     0);
    assert_string_equal(buf, "nvidia.com/mig-1g.10gb=14,"
                             "nvidia.com/mig-3g.40gb=2,nvidia.com/vgpu=40");
    assert_int_equal(gm_plan_resources(n, NULL, buf, sizeof(buf)), 0);
    assert_string_equal(buf,
                        "nvidia.com/mig-1g.10gb=14,nvidia.com/mig-3g.40gb=2");
    assert_int_equal(gm_plan_resources(n, NULL, buf, 20), -ENOSPC);
    gmt_node_free(n);
    /* Time-sliced full GPUs, renamed by the device plugin's config. */
    n = gmt_node("n2", NULL);
    gmt_alloc(n, "nvidia.com/gpu.shared", 32);
    assert_int_equal(gm_plan_resources(n, NULL, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "nvidia.com/gpu.shared=32");
    gmt_node_free(n);
}

/* A person time-slices a converged full node's GPUs through its own
 * device plugin config, or stops: the plugin re-offers the GPUs it was
 * verified with, as feature discovery says, which is no drift. A GPU
 * lost, an offer the labels do not explain, or no gpumode.io/gpus (an
 * older gpumode verified it) still is. */
static void test_own_config_change_is_not_drift(void **state)
{
    struct gm_policy *p = policy("p", "full", "");
    struct fleet f = {0};
    struct gm_plan pl;
    static const struct {
        const char *name, *replicas, *product, *verified, *resource;
        int gpus, count, offers;
    } nodes[] = {
        /* 4 replicas each, offered as nvidia.com/gpu */
        {"a", "4", "NVIDIA-H100-80GB-HBM3-SHARED", "nvidia.com/gpu=8",
         "nvidia.com/gpu", 8, 8, 32},
        /* renamed (renameByDefault: no -SHARED) */
        {"b", "4", "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu=8",
         "nvidia.com/gpu.shared", 8, 8, 32},
        /* verified time-sliced, no longer shared */
        {"c", "1", "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu=32",
         "nvidia.com/gpu", 8, 8, 8},
        /* a GPU lost: feature discovery counts 7 */
        {"d", "4", "NVIDIA-H100-80GB-HBM3-SHARED", "nvidia.com/gpu=8",
         "nvidia.com/gpu", 8, 7, 28},
        /* verified by a gpumode that did not record the GPUs */
        {"e", "4", "NVIDIA-H100-80GB-HBM3-SHARED", "nvidia.com/gpu=8",
         "nvidia.com/gpu", 0, 8, 32},
        /* the labels say 4 replicas, the plugin offers 2 */
        {"f", "4", "NVIDIA-H100-80GB-HBM3-SHARED", "nvidia.com/gpu=8",
         "nvidia.com/gpu", 8, 8, 16},
        /* feature discovery saw a GPU go, the plugin did not yet */
        {"g", "4", "NVIDIA-H100-80GB-HBM3-SHARED", "nvidia.com/gpu=8",
         "nvidia.com/gpu", 8, 7, 32},
        /* MIG on by hand, one instance a GPU, single, time-sliced */
        {"h", "4", "NVIDIA-H100-80GB-HBM3-MIG-7g.80gb-SHARED",
         "nvidia.com/gpu=8", "nvidia.com/gpu", 8, 8, 32},
        /* 2 replicas, 14 offered: two GPUs gone from the plugin, not a
         * config sharing six (the plugin shares every GPU, whatever the
         * config's devices say) */
        {"i", "2", "NVIDIA-H100-80GB-HBM3-SHARED", "nvidia.com/gpu=16",
         "nvidia.com/gpu", 8, 8, 14},
    };
    (void)state;

    for (size_t i = 0; i < sizeof(nodes) / sizeof(*nodes); i++) {
        char replicas[64], product[96], count[64];
        snprintf(replicas, sizeof(replicas), "nvidia.com/gpu.replicas=%s",
                 nodes[i].replicas);
        snprintf(product, sizeof(product), "nvidia.com/gpu.product=%s",
                 nodes[i].product);
        snprintf(count, sizeof(count), "nvidia.com/gpu.count=%d",
                 nodes[i].count);
        struct gm_node *n =
            add(&f, gmt_node(nodes[i].name, "pool=a", "gpumode.io/mode=full",
                             "gpumode.io/state=ready", replicas, product, count,
                             NULL));
        n->ann_resources = nodes[i].verified;
        n->ann_gpus = nodes[i].gpus;
        n->resources_since = NOW - 3600;
        gmt_alloc(n, nodes[i].resource, nodes[i].offers);
    }
    plan(p, NULL, &f, NULL, &pl);
    assert_int_equal(pl.summary.converged, 9);
    assert_int_equal(pl.n_starts, 0);
    assert_int_equal(pl.drifted, 6);
    assert_non_null(pl.drift_notice);
    assert_non_null(strstr(pl.drift_notice, "6 nodes advertise"));
    assert_non_null(strstr(pl.drift_notice,
                           "d offers nvidia.com/gpu=28, verified with "
                           "nvidia.com/gpu=8; e; f"));
    gm_plan_free(&pl);
    for (size_t i = 0; i < f.len; i++) {
        gm_plan_mark_resources(f.n[i], "nvidia.com/vgpu");
        assert_int_equal(f.n[i]->resources,
                         f.n[i]->name[0] < 'd' ? GM_RES_SAME : GM_RES_OTHER);
    }
    /* In another mode gpumode.io/gpus explains nothing. */
    gmt_node_free(f.n[0]);
    f.n[0] = gmt_node("a", "pool=a", "gpumode.io/mode=vgpu",
                      "gpumode.io/state=ready", "nvidia.com/gpu.count=8",
                      "nvidia.com/gpu.replicas=1", NULL);
    f.n[0]->ann_resources = "nvidia.com/vgpu=80";
    f.n[0]->ann_gpus = 8;
    gmt_alloc(f.n[0], "nvidia.com/gpu", 8);
    gm_plan_mark_resources(f.n[0], "nvidia.com/vgpu");
    assert_int_equal(f.n[0]->resources, GM_RES_OTHER);
    fleet_free(&f);
    gm_policy_free(p);
}

/* A converged node that offers other GPU resources than it was verified
 * with stays converged (gpumode does not drain on its own for it) and is
 * named once the difference outlasts the grace; until then the plan asks
 * to look again when the grace ends. */
static void test_resources_that_differ(void **state)
{
    struct gm_policy *p = policy("p", "full", "");
    struct fleet f = {0};
    struct gm_plan pl;
    const char *names[] = {"a", "b", "c", "d", "e"};
    (void)state;

    for (size_t i = 5; i-- > 0;) { /* e first: the cache's order is any */
        struct gm_node *n =
            add(&f, gmt_node(names[i], "pool=a", "gpumode.io/mode=full",
                             "gpumode.io/state=ready", NULL));
        n->ann_resources = "nvidia.com/gpu=8";
        n->resources_since = NOW - 3600;
        gmt_alloc(n, "nvidia.com/gpu", 8);
    }
    plan(p, NULL, &f, NULL, &pl);
    assert_int_equal(pl.summary.converged, 5);
    assert_null(pl.drift_notice);
    assert_int_equal(pl.recheck_at, 0);
    gm_plan_free(&pl);

    /* e: a GPU fell off the bus an hour ago; d: MIG turned on by hand
     * just now; c: cordoned (unavailable nodes are already in view). */
    struct gm_node *e = f.n[0], *d = f.n[1], *c = f.n[2];
    e->allocatable[0].value = 7;
    d->allocatable[0].value = 0;
    gmt_alloc(d, "nvidia.com/mig-1g.10gb", 56);
    d->resources_since = NOW - 10;
    c->allocatable[0].value = 0;
    c->unschedulable = true;
    plan(p, NULL, &f, NULL, &pl);
    assert_int_equal(pl.summary.converged, 5);
    assert_int_equal(pl.n_starts, 0);
    assert_int_equal(pl.recheck_at, NOW + 110);
    assert_int_equal(pl.drifted, 1);
    assert_string_equal(
        pl.drift_notice,
        "1 node advertises other GPU resources than it was verified with "
        "(the MIG layout, the device plugin or a GPU changed since; "
        "annotating a node gpumode.io/settings=unknown switches it again): "
        "e offers nvidia.com/gpu=7, verified with nvidia.com/gpu=8");
    gm_plan_free(&pl);

    /* Past the grace d is named first; a cache that does not know since
     * when (0) does not wait. */
    d->resources_since = NOW - 120;
    f.n[3]->resources_since = 0;
    f.n[3]->allocatable[0].value = 0;
    plan(p, NULL, &f, NULL, &pl);
    assert_int_equal(pl.recheck_at, 0);
    assert_int_equal(pl.drifted, 3);
    assert_string_equal(
        pl.drift_notice,
        "3 nodes advertise other GPU resources than they were verified with "
        "(the MIG layout, the device plugin or a GPU changed since; "
        "annotating a node gpumode.io/settings=unknown switches it again): "
        "b offers none, verified with nvidia.com/gpu=8; d; e");
    gm_plan_free(&pl);

    /* What the cache worked out is taken as it is (the plan does not
     * format every node's resources again). */
    f.n[3]->resources = GM_RES_SAME;
    plan(p, NULL, &f, NULL, &pl);
    assert_int_equal(pl.drifted, 2);
    gm_plan_free(&pl);
    f.n[3]->resources = GM_RES_UNKNOWN;
    gm_plan_mark_resources(f.n[3], "nvidia.com/vgpu");
    assert_int_equal(f.n[3]->resources, GM_RES_OTHER);
    gm_plan_mark_resources(f.n[4], "nvidia.com/vgpu"); /* a: as verified */
    assert_int_equal(f.n[4]->resources, GM_RES_SAME);

    /* gpumode.io/settings=unknown on a full node switches it again (a
     * switch to full removes the annotation). c, uncordoned, leaves it
     * the budget. */
    c->unschedulable = false;
    e->ann_settings = "unknown";
    plan(p, NULL, &f, NULL, &pl);
    assert_int_equal(pl.summary.converged, 4);
    assert_int_equal(pl.n_starts, 1);
    assert_string_equal(pl.starts[0].node->name, "e");
    assert_int_equal(pl.starts[0].from, GM_MODE_FULL);
    gm_plan_free(&pl);

    /* A node verified before gpumode recorded resources is not compared. */
    for (size_t i = 0; i < f.len; i++) {
        f.n[i]->ann_resources = NULL;
        f.n[i]->ann_settings = NULL;
    }
    plan(p, NULL, &f, NULL, &pl);
    assert_null(pl.drift_notice);
    gm_plan_free(&pl);
    gm_policy_free(p);
    fleet_free(&f);
}

/* The node cache keeps since when a node has differed, without a break
 * and in service: a count that changes while it differs keeps the time; a
 * node back to its recorded resources, out of service, or re-verified
 * (another record) starts again. */
static void test_resources_since_carried(void **state)
{
    struct gm_node *was = gmt_node("n1", NULL);
    struct gm_node *now = gmt_node("n1", NULL);
    (void)state;

    was->ann_resources = now->ann_resources = "nvidia.com/mig-1g.10gb=56";
    gmt_alloc(was, "nvidia.com/mig-1g.10gb", 49);
    gmt_alloc(now, "nvidia.com/mig-1g.10gb", 42);
    was->resources_since = 100;
    now->resources_since = 200;
    gm_plan_carry_resources_since(was, now, "nvidia.com/vgpu");
    assert_int_equal(now->resources_since, 100);

    now->resources_since = 200;
    now->allocatable[0].value = 56; /* back to what was verified */
    gm_plan_carry_resources_since(was, now, "nvidia.com/vgpu");
    assert_int_equal(now->resources_since, 200);

    now->allocatable[0].value = 42;
    was->allocatable[0].value = 56; /* differs from now on */
    gm_plan_carry_resources_since(was, now, "nvidia.com/vgpu");
    assert_int_equal(now->resources_since, 200);

    was->allocatable[0].value = 49;
    was->unschedulable = true; /* out of service until now */
    gm_plan_carry_resources_since(was, now, "nvidia.com/vgpu");
    assert_int_equal(now->resources_since, 200);

    was->unschedulable = false;
    now->ann_resources = "nvidia.com/mig-1g.10gb=42"; /* verified again */
    gm_plan_carry_resources_since(was, now, "nvidia.com/vgpu");
    assert_int_equal(now->resources_since, 200);

    gmt_node_free(was);
    gmt_node_free(now);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify_and_budget),
        cmocka_unit_test(test_notin_selector_leaves_cpu_nodes),
        cmocka_unit_test(test_cordoned_start_free_and_notready_waits),
        cmocka_unit_test(test_wait_names_a_converged_node_out_of_service),
        cmocka_unit_test(test_max_failures_stalls),
        cmocka_unit_test(test_held_failure_uses_the_budget),
        cmocka_unit_test(test_retry_of_a_held_node_follows_the_policy),
        cmocka_unit_test(test_paused_and_window),
        cmocka_unit_test(test_conflict_reported),
        cmocka_unit_test(test_conflict_mid_switch_keeps_its_slot),
        cmocka_unit_test(test_single_strategy_needs_one_profile),
        cmocka_unit_test(test_switch_elsewhere_keeps_its_slot),
        cmocka_unit_test(test_skipped_mid_switch_holds_no_slot),
        cmocka_unit_test(test_nine_tied_all_report),
        cmocka_unit_test(test_unknown_model_capable_not_shared),
        cmocka_unit_test(test_mig_layouts),
        cmocka_unit_test(test_invalid_config_fails_only_its_policies),
        cmocka_unit_test(test_reboot_reapplies_mig),
        cmocka_unit_test(test_reboot_relay_is_a_repair),
        cmocka_unit_test(test_mig_settings_change_relays),
        cmocka_unit_test(test_settings_for_many_kinds_of_node),
        cmocka_unit_test(test_vgpu_settings_change_switches),
        cmocka_unit_test(test_vgpu_split_without_hami_configmap),
        cmocka_unit_test(test_vgpu_stalls_while_hami_configmap_unreadable),
        cmocka_unit_test(test_single_strategy_selector_notice),
        cmocka_unit_test(test_hami_entries_that_differ),
        cmocka_unit_test(test_resources_text),
        cmocka_unit_test(test_own_config_change_is_not_drift),
        cmocka_unit_test(test_resources_that_differ),
        cmocka_unit_test(test_resources_since_carried),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
