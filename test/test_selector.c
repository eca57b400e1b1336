/* Selector matching and node assignment: each operator, missing labels,
 * priority, conflicts and the skip label. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "planner/assign.h"
#include "planner/selector.h"
#include "support/planner_nodes.h"

static bool matches(const char *selector, const struct gm_node *n)
{
    char json[1024];

    snprintf(json, sizeof(json),
             "{\"metadata\":{\"name\":\"p\"},\"spec\":{\"mode\":\"full\","
             "\"nodeSelector\":%s}}",
             selector);
    struct gm_policy *p = gmt_policy(json, 0);
    bool m = gm_selector_matches(&p->spec.selector, n);
    gm_policy_free(p);
    return m;
}

static void test_match_labels(void **state)
{
    struct gm_node *n = gmt_node("n1", "pool=a", "zone=x", NULL);

    assert_true(matches("{\"matchLabels\":{\"pool\":\"a\"}}", n));
    assert_true(
        matches("{\"matchLabels\":{\"pool\":\"a\",\"zone\":\"x\"}}", n));
    assert_false(matches("{\"matchLabels\":{\"pool\":\"b\"}}", n));
    assert_false(
        matches("{\"matchLabels\":{\"pool\":\"a\",\"gpu\":\"y\"}}", n));
    gmt_node_free(n);
}

static void test_in_notin(void **state)
{
    struct gm_node *n = gmt_node("n1", "pool=a", NULL);
    struct gm_node *bare = gmt_node("n2", NULL);
    const char *in = "{\"matchExpressions\":[{\"key\":\"pool\",\"operator\":"
                     "\"In\",\"values\":[\"b\",\"a\"]}]}";
    const char *notin = "{\"matchExpressions\":[{\"key\":\"pool\",\"operator\":"
                        "\"NotIn\",\"values\":[\"a\"]}]}";

    assert_true(matches(in, n));
    assert_false(matches(in, bare)); /* In needs the label */
    assert_false(matches(notin, n));
    assert_true(matches(notin, bare)); /* NotIn holds without the label */
    gmt_node_free(n);
    gmt_node_free(bare);
}

static void test_exists(void **state)
{
    struct gm_node *n = gmt_node("n1", "gpu=", NULL);
    struct gm_node *bare = gmt_node("n2", "other=1", NULL);
    const char *ex =
        "{\"matchExpressions\":[{\"key\":\"gpu\",\"operator\":\"Exists\"}]}";
    const char *dne = "{\"matchExpressions\":[{\"key\":\"gpu\",\"operator\":"
                      "\"DoesNotExist\"}]}";

    assert_true(matches(ex, n)); /* an empty value still exists */
    assert_false(matches(ex, bare));
    assert_false(matches(dne, n));
    assert_true(matches(dne, bare));
    gmt_node_free(n);
    gmt_node_free(bare);
}

static void test_labels_and_expressions_combine(void **state)
{
    struct gm_node *n = gmt_node("n1", "pool=a", "maint=yes", NULL);
    const char *sel = "{\"matchLabels\":{\"pool\":\"a\"},\"matchExpressions\":"
                      "[{\"key\":\"maint\",\"operator\":\"DoesNotExist\"}]}";

    assert_false(matches(sel, n));
    gmt_node_free(n);
}

static void test_empty_selector_refused(void **state)
{
    struct gm_policy *p =
        gmt_policy("{\"metadata\":{\"name\":\"p\"},\"spec\":{\"mode\":\"full\","
                   "\"nodeSelector\":{\"matchLabels\":{}}}}",
                   -EINVAL);
    struct gm_selector empty = {NULL, 0};
    struct gm_node *n = gmt_node("n1", "pool=a", NULL);

    assert_false(p->valid);
    assert_non_null(strstr(p->error, "spec.nodeSelector: must not be empty"));
    assert_false(gm_selector_matches(&empty, n));
    gm_policy_free(p);
    gmt_node_free(n);
}

static struct gm_policy *pol(const char *name, int prio, const char *pool)
{
    char json[512];

    snprintf(json, sizeof(json),
             "{\"metadata\":{\"name\":\"%s\"},\"spec\":{\"mode\":\"full\","
             "\"priority\":%d,\"nodeSelector\":{\"matchLabels\":"
             "{\"pool\":\"%s\"}}}}",
             name, prio, pool);
    return gmt_policy(json, 0);
}

static void test_priority_wins(void **state)
{
    struct gm_policy *lo = pol("lo", 0, "a");
    struct gm_policy *hi = pol("hi", 5, "a");
    const struct gm_policy *all[] = {lo, hi};
    struct gm_node *n = gmt_node("n1", "pool=a", NULL);
    struct gm_assignment a;

    gm_assign_node(n, all, 2, &a);
    assert_int_equal(a.kind, GM_ASSIGN_OWNED);
    assert_ptr_equal(a.owner, hi);
    gm_policy_free(lo);
    gm_policy_free(hi);
    gmt_node_free(n);
}

static void test_tie_is_conflict(void **state)
{
    struct gm_policy *a1 = pol("a1", 3, "a");
    struct gm_policy *a2 = pol("a2", 3, "a");
    struct gm_policy *lo = pol("lo", 1, "a");
    const struct gm_policy *all[] = {lo, a1, a2};
    struct gm_node *n = gmt_node("n1", "pool=a", NULL);
    struct gm_assignment a;

    gm_assign_node(n, all, 3, &a);
    assert_int_equal(a.kind, GM_ASSIGN_CONFLICT);
    assert_null(a.owner);
    assert_int_equal(a.n_tied, 2);
    assert_ptr_equal(a.tied[0], a1);
    assert_ptr_equal(a.tied[1], a2);
    gm_policy_free(a1);
    gm_policy_free(a2);
    gm_policy_free(lo);
    gmt_node_free(n);
}

static void test_tie_below_top_is_not_conflict(void **state)
{
    struct gm_policy *a1 = pol("a1", 1, "a");
    struct gm_policy *a2 = pol("a2", 1, "a");
    struct gm_policy *hi = pol("hi", 2, "a");
    const struct gm_policy *all[] = {a1, a2, hi};
    struct gm_node *n = gmt_node("n1", "pool=a", NULL);
    struct gm_assignment a;

    gm_assign_node(n, all, 3, &a);
    assert_int_equal(a.kind, GM_ASSIGN_OWNED);
    assert_ptr_equal(a.owner, hi);
    gm_policy_free(a1);
    gm_policy_free(a2);
    gm_policy_free(hi);
    gmt_node_free(n);
}

static void test_skip_and_none(void **state)
{
    struct gm_policy *p = pol("p", 0, "a");
    const struct gm_policy *all[] = {p};
    struct gm_node *skip =
        gmt_node("n1", "pool=a", "gpumode.io/skip=true", NULL);
    struct gm_node *notskip =
        gmt_node("n2", "pool=a", "gpumode.io/skip=false", NULL);
    struct gm_node *other = gmt_node("n3", "pool=b", NULL);
    struct gm_assignment a;

    gm_assign_node(skip, all, 1, &a);
    assert_int_equal(a.kind, GM_ASSIGN_SKIPPED);
    gm_assign_node(notskip, all, 1, &a);
    assert_int_equal(a.kind, GM_ASSIGN_OWNED);
    gm_assign_node(other, all, 1, &a);
    assert_int_equal(a.kind, GM_ASSIGN_NONE);
    gm_policy_free(p);
    gmt_node_free(skip);
    gmt_node_free(notskip);
    gmt_node_free(other);
}

/* A node that shows no GPU is never assigned, whatever selects it; what
 * counts as showing one. */
static void test_cpu_node_is_never_assigned(void **state)
{
    struct gm_policy *p = pol("p", 0, "a");
    const struct gm_policy *all[] = {p};
    struct gm_node *cpu =
        gmt_node("c1", "pool=a", "nvidia.com/gpu.present=false", NULL);
    struct gm_assignment a;
    (void)state;

    assert_false(gm_node_shows_gpu(cpu));
    gm_assign_node(cpu, all, 1, &a);
    assert_int_equal(a.kind, GM_ASSIGN_NO_GPU);
    assert_null(a.owner);

    static const char *const shows[] = {
        "nvidia.com/gpu.present=true",
        "nvidia.com/gpu.count=8",
        "nvidia.com/gpu.product=NVIDIA-A100-SXM4-80GB",
        "feature.node.kubernetes.io/pci-10de.present=true",
        "gpumode.io/mode=full",
        "gpumode.io/state=failed",
    };
    for (size_t i = 0; i < sizeof(shows) / sizeof(shows[0]); i++) {
        struct gm_node *n = gmt_node(
            "g", "pool=a", "nvidia.com/gpu.present=false", shows[i], NULL);
        if (strncmp(shows[i], "nvidia.com/gpu.present=", 23) == 0) {
            gmt_node_free(n);
            n = gmt_node("g", "pool=a", shows[i], NULL);
        }
        gm_assign_node(n, all, 1, &a);
        if (a.kind != GM_ASSIGN_OWNED)
            fail_msg("%s: kind %d", shows[i], (int)a.kind);
        gmt_node_free(n);
    }
    /* NFD's flag must say true. */
    struct gm_node *n =
        gmt_node("g", "pool=a", "nvidia.com/gpu.present=false",
                 "feature.node.kubernetes.io/pci-10de.present=false", NULL);
    assert_false(gm_node_shows_gpu(n));
    /* A GPU resource offered, or a switch record. */
    gmt_alloc(n, "nvidia.com/gpu", 0);
    assert_false(gm_node_shows_gpu(n));
    gmt_alloc(n, "nvidia.com/mig-1g.10gb", 7);
    assert_true(gm_node_shows_gpu(n));
    gmt_node_free(n);
    n = gmt_node("g", "pool=a", "nvidia.com/gpu.present=false", NULL);
    gmt_set(&n->ann_switch, "{\"policy\":\"p\",\"phase\":\"Failed\"}");
    assert_true(gm_node_shows_gpu(n));
    gmt_node_free(n);
    gm_policy_free(p);
    gmt_node_free(cpu);
}

static void test_invalid_policy_selects_nothing(void **state)
{
    struct gm_policy *bad = gmt_policy(
        "{\"metadata\":{\"name\":\"bad\"},\"spec\":{\"mode\":\"mig\","
        "\"priority\":9,\"nodeSelector\":{\"matchLabels\":{\"pool\":\"a\"}}}}",
        -EINVAL);
    struct gm_policy *p = pol("p", 0, "a");
    const struct gm_policy *all[] = {bad, p};
    struct gm_node *n = gmt_node("n1", "pool=a", NULL);
    struct gm_assignment a;

    gm_assign_node(n, all, 2, &a);
    assert_int_equal(a.kind, GM_ASSIGN_OWNED);
    assert_ptr_equal(a.owner, p);
    gm_policy_free(bad);
    gm_policy_free(p);
    gmt_node_free(n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match_labels),
        cmocka_unit_test(test_in_notin),
        cmocka_unit_test(test_exists),
        cmocka_unit_test(test_labels_and_expressions_combine),
        cmocka_unit_test(test_empty_selector_refused),
        cmocka_unit_test(test_priority_wins),
        cmocka_unit_test(test_tie_is_conflict),
        cmocka_unit_test(test_tie_below_top_is_not_conflict),
        cmocka_unit_test(test_skip_and_none),
        cmocka_unit_test(test_cpu_node_is_never_assigned),
        cmocka_unit_test(test_invalid_policy_selects_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
