/* A retry of a held failure (onFailure: Hold, or a failure with no mode to
 * roll back to): the node keeps its Failed record and its cordon until a
 * person annotates gpumode.io/retry. When a policy selects the node, the
 * switch leaves the retry to that policy's plan, which honours pause,
 * window and budget and starts it with gm_switch_start, aimed where the
 * policy points now; the record's history (the mode before, the labels it
 * changed, its cordon) carries over. With no policy selecting the node,
 * the retry releases it: put back as it was if its hardware never changed,
 * else rolled back to the mode before, and then put back the same way.
 *
 * Real libcurl and libuv against the test server, which plays the API
 * server: one node, cordoned by gpumode, held after a failed full -> vgpu
 * switch whose hardware step had run. */
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
#include "kube/reflector.h"
#include "nodeswitch/record.h"
#include "nodeswitch/switch.h"
#include "support/ctlfx.h"

struct fx {
    struct th_node_fx n; /* first: the handler's ud */
    int governed;        /* what the governed hook answers */
};

/* The mode before the held switch, for start_hw: full unless a test
 * says otherwise. */
static enum gm_mode held_from = GM_MODE_FULL;

static int governed(void *data, const struct gm_node *node)
{
    (void)node;
    return ((const struct fx *)data)->governed;
}

/* Starts the controller on the held node with the governed hook answering
 * g; hw: whether the failed attempt may have changed the hardware. */
static void start_hw(struct fx *f, int g, bool hw, bool uncordoned)
{
    struct gm_switch_record rec = {0};
    char err[256];
    char *text = th_ctl_switch_record(GM_PHASE_FAILED, NULL);
    assert_int_equal(gm_record_parse(text, &rec, err, sizeof(err)), 0);
    free(text);
    rec.reconfigured = hw;
    rec.from = held_from;
    /* The failed attempt had rebooted the node once. */
    assert_int_equal(gm_set_str(&rec.boot_id, "boot-0"), 0);
    assert_int_equal(gm_set_str(&rec.reason, "PluginNotReady"), 0);
    assert_int_equal(gm_set_str(&rec.message, "the vgpu plugin never came"), 0);
    assert_int_equal(gm_record_save_label(
                         &rec, "nvidia.com/gpu.deploy.device-plugin", "true"),
                     0);
    memset(f, 0, sizeof(*f));
    f->governed = g;
    f->n.retry = true;
    f->n.uncordoned = uncordoned;
    f->n.record = gm_record_format(&rec);
    gm_record_clear(&rec);
    th_ctl_start(&f->n.c, th_node_fx_handler, f);
    f->n.c.ctl->policy_for = th_ctl_policy_split4;
    f->n.c.ctl->governed = governed;
    f->n.c.ctl->policy_data = f;
}

static void start(struct fx *f, int g)
{
    start_hw(f, g, true, false);
}

static void stop(struct fx *f)
{
    th_node_fx_stop(&f->n);
}

/* The patch's record, parsed into rec; asserts the retry mark is removed
 * and the state label says switching. */
static void patched_record(const char *body, struct gm_switch_record *rec)
{
    char err[256];
    json_object *p = json_tokener_parse(body);
    json_object *ann = gm_json_get(gm_json_get(p, "metadata"), "annotations");
    json_object *retry = NULL;
    assert_non_null(p);
    assert_true(json_object_object_get_ex(ann, GM_ANN_RETRY, &retry));
    assert_null(retry);
    assert_string_equal(
        json_object_get_string(gm_json_get(
            gm_json_get(gm_json_get(p, "metadata"), "labels"), GM_LABEL_STATE)),
        "switching");
    /* Still cordoned: nothing to write to spec. */
    assert_null(gm_json_get(p, "spec"));
    assert_int_equal(
        gm_record_parse(json_object_get_string(gm_json_get(ann, GM_ANN_SWITCH)),
                        rec, err, sizeof(err)),
        0);
    json_object_put(p);
}

/* What the failed attempt recorded, kept by any restart (its reboot is
 * not: each attempt may reboot once). */
static void assert_history_kept(const struct gm_switch_record *rec)
{
    assert_int_equal(rec->attempt, 2);
    assert_int_equal(rec->phase, GM_PHASE_DRAIN);
    assert_int_equal(rec->from, GM_MODE_FULL);
    assert_true(rec->cordoned);
    assert_true(rec->reconfigured);
    assert_false(rec->rolling_back);
    assert_null(rec->reason);
    assert_null(rec->message);
    assert_null(rec->boot_id); /* a new attempt may reboot once more */
    assert_int_equal(rec->n_saved, 1);
    assert_string_equal(rec->saved[0].key,
                        "nvidia.com/gpu.deploy.device-plugin");
    assert_string_equal(rec->saved[0].value, "true");
}

/* Governed, or not known (policies not listed yet, or the lookup failed):
 * nothing is written. */
static void test_governed_node_waits_for_its_plan(void **state)
{
    (void)state;
    const int answers[] = {1, -EAGAIN, -ENOMEM};
    for (size_t i = 0; i < sizeof(answers) / sizeof(answers[0]); i++) {
        struct fx f;
        start(&f, answers[i]);
        th_run_until(&f.n.c.loop, &f.n.done, 1500);
        assert_null(f.n.patch);
        stop(&f);
    }
}

/* No policy selects the node: the retry releases it. Its hardware changed,
 * so it is rolled back to full (the record's mode before), one attempt
 * later, the mark used up. */
static void test_ungoverned_node_is_rolled_back(void **state)
{
    (void)state;
    struct fx f;
    struct gm_switch_record rec = {0};
    char err[256];
    start(&f, 0);
    th_run_until(&f.n.c.loop, &f.n.done, 5000);
    assert_non_null(f.n.patch);
    json_object *p = json_tokener_parse(f.n.patch);
    json_object *ann = gm_json_get(gm_json_get(p, "metadata"), "annotations");
    json_object *retry = NULL;
    assert_true(json_object_object_get_ex(ann, GM_ANN_RETRY, &retry));
    assert_null(retry);
    assert_int_equal(
        gm_record_parse(json_object_get_string(gm_json_get(ann, GM_ANN_SWITCH)),
                        &rec, err, sizeof(err)),
        0);
    assert_int_equal(rec.attempt, 2);
    assert_string_equal(rec.reason, "PolicyGone");
    assert_true(rec.rolling_back);
    assert_true(rec.releasing); /* the rollback ends with no record */
    /* Pods may have landed on the held node since: they are drained, and
     * the clients stopped, before the hardware goes back. */
    assert_int_equal(rec.phase, GM_PHASE_DRAIN);
    assert_int_equal(rec.from, GM_MODE_FULL);
    assert_null(rec.boot_id);
    gm_record_clear(&rec);
    json_object_put(p);
    stop(&f);
}

/* A patch the API server took without a change (the node's
 * resourceVersion is what it was) brings no watch event: the node is
 * looked at again two seconds on rather than left waiting for one. Here
 * the cache still holds the old record, so the same patch goes again,
 * once, not in a loop. */
static void test_unchanged_patch_is_not_waited_for(void **state)
{
    (void)state;
    struct fx f;
    start_hw(&f, 0, true, false);
    f.n.patch_answer = "{\"metadata\":{\"resourceVersion\":\"9\"}}";
    int never = 0;
    th_run_until(&f.n.c.loop, &never, 3000);
    assert_int_equal(f.n.patches, 2);
    stop(&f);
}

/* A person uncordoned the held node: its release cordons it again before
 * the GPUs are laid again, and records the cordon as its own so the end
 * of the rollback uncordons it. */
static void test_release_cordons_an_uncordoned_node(void **state)
{
    (void)state;
    struct fx f;
    struct gm_switch_record rec = {0};
    char err[256];
    start_hw(&f, 0, true, true);
    th_run_until(&f.n.c.loop, &f.n.done, 5000);
    assert_non_null(f.n.patch);
    json_object *p = json_tokener_parse(f.n.patch);
    assert_true(json_object_get_boolean(
        gm_json_get(gm_json_get(p, "spec"), "unschedulable")));
    assert_int_equal(gm_record_parse(json_object_get_string(gm_json_get(
                                         gm_json_get(gm_json_get(p, "metadata"),
                                                     "annotations"),
                                         GM_ANN_SWITCH)),
                                     &rec, err, sizeof(err)),
                     0);
    assert_true(rec.releasing);
    assert_true(rec.rolling_back);
    assert_true(rec.cordoned);
    gm_record_clear(&rec);
    json_object_put(p);
    stop(&f);
}

/* A node gpumode had never switched (no mode before), held once its
 * hardware changed, that no policy selects any more: nothing is known to
 * roll it back to, so the retry is not taken. The mark is used up and the
 * record says what to do; the node is not cordoned again (a person
 * uncordoned it) nor held anew, which every retry used to do. */
static void test_unknown_mode_release_is_not_taken(void **state)
{
    (void)state;
    struct fx f;
    struct gm_switch_record rec = {0};
    char err[256];
    held_from = GM_MODE_UNKNOWN;
    start_hw(&f, 0, true, true);
    held_from = GM_MODE_FULL;
    th_run_until(&f.n.c.loop, &f.n.done, 5000);
    assert_non_null(f.n.patch);
    json_object *p = json_tokener_parse(f.n.patch);
    json_object *ann = gm_json_get(gm_json_get(p, "metadata"), "annotations");
    json_object *retry = NULL;
    assert_true(json_object_object_get_ex(ann, GM_ANN_RETRY, &retry));
    assert_null(retry);
    assert_null(gm_json_get(p, "spec")); /* not cordoned again */
    assert_null(gm_json_get(gm_json_get(p, "metadata"), "labels"));
    assert_int_equal(
        gm_record_parse(json_object_get_string(gm_json_get(ann, GM_ANN_SWITCH)),
                        &rec, err, sizeof(err)),
        0);
    assert_int_equal(rec.phase, GM_PHASE_FAILED);
    assert_int_equal(rec.attempt, 1);
    assert_false(rec.rolling_back);
    assert_false(rec.releasing);
    assert_string_equal(rec.reason, "PolicyGone");
    assert_non_null(strstr(rec.message, "select it with a policy"));
    gm_record_clear(&rec);
    json_object_put(p);
    stop(&f);
}

/* Its hardware never changed (it failed in the drain): the node is put
 * back at once, record gone, uncordoned, labels restored. */
static void test_ungoverned_node_untouched_is_put_back(void **state)
{
    (void)state;
    struct fx f;
    json_object *rec = NULL;
    start_hw(&f, 0, false, false);
    th_run_until(&f.n.c.loop, &f.n.done, 5000);
    assert_non_null(f.n.patch);
    json_object *p = json_tokener_parse(f.n.patch);
    json_object *meta = gm_json_get(p, "metadata");
    assert_true(json_object_object_get_ex(gm_json_get(meta, "annotations"),
                                          GM_ANN_SWITCH, &rec));
    assert_null(rec);
    assert_false(json_object_get_boolean(
        gm_json_get(gm_json_get(p, "spec"), "unschedulable")));
    assert_non_null(gm_json_get(p, "spec"));
    assert_string_equal(json_object_get_string(
                            gm_json_get(gm_json_get(meta, "labels"),
                                        "nvidia.com/gpu.deploy.device-plugin")),
                        "true");
    json_object_put(p);
    stop(&f);
}

/* The released node's rollback reached Finish (the old plugin verified):
 * the node is put back in service, not left Failed for good, since no
 * policy would ever retry it: record gone, state ready, uncordoned, the
 * labels the switch changed restored, and this boot recorded. */
static void test_release_ends_with_no_record(void **state)
{
    (void)state;
    struct fx f;
    struct gm_switch_record rec = {0};
    char err[256];
    json_object *gone = NULL;
    char *text = th_ctl_switch_record(GM_PHASE_FINISH, NULL);
    assert_int_equal(gm_record_parse(text, &rec, err, sizeof(err)), 0);
    free(text);
    rec.rolling_back = rec.releasing = true;
    assert_int_equal(gm_set_str(&rec.reason, "PolicyGone"), 0);
    assert_int_equal(gm_record_save_label(
                         &rec, "nvidia.com/gpu.deploy.device-plugin", "true"),
                     0);
    memset(&f, 0, sizeof(f));
    f.n.record = gm_record_format(&rec);
    f.n.boot_id = "boot-1";
    gm_record_clear(&rec);
    th_ctl_start(&f.n.c, th_node_fx_handler, &f);
    f.n.c.ctl->policy_for = th_ctl_policy_split4;
    f.n.c.ctl->governed = governed;
    f.n.c.ctl->policy_data = &f;
    th_run_until(&f.n.c.loop, &f.n.done, 5000);
    assert_non_null(f.n.patch);
    json_object *p = json_tokener_parse(f.n.patch);
    json_object *meta = gm_json_get(p, "metadata");
    json_object *labels = gm_json_get(meta, "labels");
    assert_true(json_object_object_get_ex(gm_json_get(meta, "annotations"),
                                          GM_ANN_SWITCH, &gone));
    assert_null(gone);
    assert_string_equal(
        json_object_get_string(gm_json_get(labels, GM_LABEL_STATE)), "ready");
    assert_string_equal(json_object_get_string(gm_json_get(
                            labels, "nvidia.com/gpu.deploy.device-plugin")),
                        "true");
    assert_null(gm_json_get(labels, GM_LABEL_MODE)); /* it never changed */
    /* Laid again on this boot: no reboot to re-lay it for. */
    assert_string_equal(json_object_get_string(gm_json_get(
                            gm_json_get(meta, "annotations"), GM_ANN_BOOT_ID)),
                        "boot-1");
    assert_false(json_object_get_boolean(
        gm_json_get(gm_json_get(p, "spec"), "unschedulable")));
    assert_non_null(gm_json_get(p, "spec"));
    json_object_put(p);
    stop(&f);
}

static void started(void *ctx, long requeue_ms, int failed)
{
    (void)ctx;
    (void)requeue_ms;
    assert_false(failed);
}

/* The plan starts the retry: the policy was changed to mig since the
 * failure, and the record now aims there. */
static void test_plan_start_retargets_the_record(void **state)
{
    (void)state;
    struct fx f;
    struct gm_switch_record rec = {0};
    int never = 0;
    start(&f, 1);
    for (int i = 0; i < 100 && !gm_ctl_synced(f.n.c.ctl); i++)
        th_run_until(&f.n.c.loop, &never, 20);
    const struct gm_node *n = gm_reflector_get(f.n.c.ctl->nodes, "gpu-001");
    assert_non_null(n);
    /* The failed attempt's eviction of a pod was answered 500 (budgets a
     * person has fixed since): the retry asks afresh, rather than fail at
     * once on the old answer. */
    struct gm_node_rt *ns = gm_ctl_node_state(f.n.c.ctl, "gpu-001");
    struct gm_eviction *ev = calloc(1, sizeof(*ev));
    assert_non_null(ns);
    assert_non_null(ev);
    ev->blocked = GM_EVICT_BROKEN;
    ev->next_try_ms = UINT64_MAX;
    assert_int_equal(gm_map_put(&ns->evictions, "pod-uid", ev, NULL), 0);
    int rc = gm_switch_start(f.n.c.ctl, n, "q", GM_MODE_MIG,
                             "[{\"migDevices\":{\"3g.40gb\":2}}]", "mixed",
                             "{\"layout\":\"3g\"}", started, &f);
    assert_true(rc == 0 || rc == GM_SWITCH_ASYNC);
    th_run_until(&f.n.c.loop, &f.n.done, 5000);
    assert_non_null(f.n.patch);
    patched_record(f.n.patch, &rec);
    assert_history_kept(&rec);
    assert_string_equal(rec.policy, "q");
    assert_int_equal(rec.to, GM_MODE_MIG);
    assert_string_equal(rec.layout, "[{\"migDevices\":{\"3g.40gb\":2}}]");
    assert_string_equal(rec.strategy, "mixed");
    assert_string_equal(rec.settings, "{\"layout\":\"3g\"}");
    assert_int_equal(ev->blocked, 0);
    assert_true(ev->next_try_ms == 0);
    gm_record_clear(&rec);
    stop(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_governed_node_waits_for_its_plan),
        cmocka_unit_test(test_ungoverned_node_is_rolled_back),
        cmocka_unit_test(test_unchanged_patch_is_not_waited_for),
        cmocka_unit_test(test_ungoverned_node_untouched_is_put_back),
        cmocka_unit_test(test_unknown_mode_release_is_not_taken),
        cmocka_unit_test(test_release_ends_with_no_record),
        cmocka_unit_test(test_release_cordons_an_uncordoned_node),
        cmocka_unit_test(test_plan_start_retargets_the_record),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
