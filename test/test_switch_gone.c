/* A switch whose policy is gone (deleted, or edited into an invalid spec)
 * while its node drains: with nothing changed but the cordon, it is
 * cancelled and the node put back; a retry whose earlier attempt left the
 * hardware changed goes the way of a failure instead (labels alone would
 * not put the hardware back); and before the policies are listed nothing
 * is taken for gone.
 *
 * Real libcurl and libuv against the test server, which plays the API
 * server: one node in Draining to vgpu, cordoned by gpumode. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/json.h"
#include "nodeswitch/record.h"
#include "support/ctlfx.h"

struct fx {
    struct th_node_fx n; /* first: the handler's ud */
    int policy_rc;       /* what policy_for answers */
};

static int policy_for(void *data, const char *name, struct gm_switch_policy *o)
{
    const struct fx *f = data;
    (void)name;
    (void)o;
    return f->policy_rc;
}

/* Runs the node in Draining (after a hardware change when reconfigured)
 * with policy_for answering rc, for up to ms; returns the first node patch
 * (caller frees) or NULL. */
static char *run(bool reconfigured, int rc, int ms)
{
    struct fx f = {.policy_rc = rc};
    f.n.record =
        th_ctl_switch_record_retry(GM_PHASE_DRAIN, reconfigured, false);

    th_ctl_start(&f.n.c, th_node_fx_handler, &f);
    f.n.c.ctl->policy_for = policy_for;
    f.n.c.ctl->policy_data = &f;
    th_run_until(&f.n.c.loop, &f.n.done, ms);
    char *patch = f.n.patch;
    f.n.patch = NULL;
    th_node_fx_stop(&f.n);
    return patch;
}

static json_object *meta(json_object *patch, const char *field)
{
    return gm_json_get(gm_json_get(patch, "metadata"), field);
}

static void expect_cancelled(int policy_rc)
{
    char *body = run(false, policy_rc, 5000);
    assert_non_null(body);
    json_object *p = json_tokener_parse(body);
    json_object *ann = meta(p, "annotations");
    json_object *rec = NULL;
    /* The record goes (null), the node is uncordoned, the mode label
     * (full) stays and so does its state. */
    assert_true(json_object_object_get_ex(ann, GM_ANN_SWITCH, &rec));
    assert_null(rec);
    assert_false(json_object_get_boolean(
        gm_json_get(gm_json_get(p, "spec"), "unschedulable")));
    assert_non_null(gm_json_get(p, "spec"));
    assert_string_equal(
        json_object_get_string(gm_json_get(meta(p, "labels"), GM_LABEL_STATE)),
        "ready");
    /* The mode label is left out of the patch, or written as it was:
     * neither set to the switch's target (vgpu) nor removed (null). */
    json_object *mode = NULL;
    if (json_object_object_get_ex(meta(p, "labels"), GM_LABEL_MODE, &mode)) {
        assert_non_null(mode);
        assert_string_equal(json_object_get_string(mode), "full");
    }
    json_object_put(p);
    free(body);
}

static void test_gone_while_draining_cancels(void **state)
{
    (void)state;
    expect_cancelled(-ENOENT);
}

/* A policy whose pod selector no longer parses gives the switch no
 * selectors: a drain would evict every pod and wait for none. */
static void test_broken_selector_while_draining_cancels(void **state)
{
    (void)state;
    expect_cancelled(-EBADMSG);
}

static void test_gone_in_a_retry_after_hardware_changed_rolls_back(void **state)
{
    (void)state;
    char *body = run(true, -ENOENT, 5000);
    assert_non_null(body);
    json_object *p = json_tokener_parse(body);
    const char *text = json_object_get_string(
        gm_json_get(meta(p, "annotations"), GM_ANN_SWITCH));
    struct gm_switch_record rec = {0};
    char err[256];
    assert_non_null(text);
    assert_int_equal(gm_record_parse(text, &rec, err, sizeof(err)), 0);
    assert_string_equal(rec.reason, "PolicyGone");
    assert_true(rec.rolling_back);
    assert_true(rec.releasing); /* back in its mode, it is put back */
    /* The drain goes on (and then the clients stop) before the hardware
     * goes back. */
    assert_int_equal(rec.phase, GM_PHASE_DRAIN);
    /* Still cordoned: the rollback uncordons once the hardware is back. */
    assert_null(gm_json_get(p, "spec"));
    gm_record_clear(&rec);
    json_object_put(p);
    free(body);
}

static void test_policies_not_listed_yet_wait(void **state)
{
    (void)state;
    char *body = run(false, -EAGAIN, 1500);
    assert_null(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gone_while_draining_cancels),
        cmocka_unit_test(test_broken_selector_while_draining_cancels),
        cmocka_unit_test(
            test_gone_in_a_retry_after_hardware_changed_rolls_back),
        cmocka_unit_test(test_policies_not_listed_yet_wait),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
