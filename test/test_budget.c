/* Rollout budget arithmetic. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "planner/budget.h"

static struct gm_policy_spec spec(int max, bool pct, int failures)
{
    struct gm_policy_spec s = {0};

    s.max_unavailable = max;
    s.max_unavailable_percent = pct;
    s.max_failures = failures;
    return s;
}

static void test_limit(void **state)
{
    struct gm_policy_spec n3 = spec(3, false, 1);
    struct gm_policy_spec p25 = spec(25, true, 1);
    struct gm_policy_spec p100 = spec(100, true, 1);

    assert_int_equal(gm_budget_limit(&n3, 10), 3);
    assert_int_equal(gm_budget_limit(&n3, 1), 3);   /* an int is taken as is */
    assert_int_equal(gm_budget_limit(&p25, 10), 2); /* 2.5 rounds down */
    assert_int_equal(gm_budget_limit(&p25, 8), 2);
    assert_int_equal(gm_budget_limit(&p25, 3), 1); /* 0.75: at least 1 */
    assert_int_equal(gm_budget_limit(&p25, 0), 1);
    assert_int_equal(gm_budget_limit(&p100, 7), 7);
}

static void test_slots(void **state)
{
    struct gm_policy_spec s = spec(3, false, 2);
    struct gm_budget b;
    struct gm_budget_input in = {.matched = 10};

    gm_budget_compute(&s, &in, &b);
    assert_int_equal(b.slots, 3);
    in.unavailable = 1; /* cordoned by someone else */
    in.in_flight = 1;
    gm_budget_compute(&s, &in, &b);
    assert_int_equal(b.used, 2);
    assert_int_equal(b.slots, 1);
    in.unavailable = 4;
    gm_budget_compute(&s, &in, &b);
    assert_int_equal(b.slots, 0); /* over budget never goes negative */
}

static void test_failures_stall(void **state)
{
    struct gm_policy_spec s = spec(5, false, 2);
    struct gm_budget b;
    struct gm_budget_input in = {.matched = 10, .failed = 1};

    gm_budget_compute(&s, &in, &b);
    assert_false(b.stalled);
    assert_int_equal(b.slots, 5);
    in.failed = 2;
    gm_budget_compute(&s, &in, &b);
    assert_true(b.stalled);
    assert_int_equal(b.slots, 0);
}

static void test_paused(void **state)
{
    struct gm_policy_spec s = spec(5, false, 1);
    struct gm_budget b;
    struct gm_budget_input in = {.matched = 10};

    s.paused = true;
    gm_budget_compute(&s, &in, &b);
    assert_true(b.paused);
    assert_int_equal(b.slots, 0);
    assert_int_equal(b.limit, 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit),
        cmocka_unit_test(test_slots),
        cmocka_unit_test(test_failures_stall),
        cmocka_unit_test(test_paused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
