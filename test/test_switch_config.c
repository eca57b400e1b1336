/* The node's own device plugin config (nvidia.com/device-plugin.config,
 * say a time-slicing config) across a trip through mig: in mig the label
 * names the strategy, so Finish keeps the value the node had in
 * gpumode.io/plugin-config; the switch that takes the node out of mig
 * puts it back and Finish drops the annotation. Outside mig a value that
 * is not a strategy is the node's and is left as it is.
 *
 * Real libcurl and libuv against the test server, which plays the API
 * server: one cordoned node whose record is at StartingClients or Finish. */
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
#include "nodeswitch/switch.h"
#include "support/ctlfx.h"

#define CONFIG "nvidia.com/device-plugin.config"
#define GFD "nvidia.com/gpu.deploy.gpu-feature-discovery"

/* As saved: the record saved the label as absent. */
static const char ABSENT[] = "(absent)";

/* Runs the switch of a node whose record is at phase, from -> to, with
 * saved key's value the record saved (NULL: it saved none; ABSENT: it
 * saved the label as absent),
 * and the node's extra labels and annotations (JSON objects or NULL).
 * Returns the first node patch, parsed (caller's); with patch false,
 * asserts that none comes within 1.5 s and returns NULL. */
static json_object *run_saved(enum gm_phase phase, enum gm_mode from,
                              enum gm_mode to, const char *key,
                              const char *saved, const char *labels,
                              const char *annotations, bool patch)
{
    struct th_node_fx f;
    struct gm_switch_record rec = {0};
    char err[256];
    char *text = th_ctl_switch_record(phase, NULL);
    assert_int_equal(gm_record_parse(text, &rec, err, sizeof(err)), 0);
    free(text);
    rec.from = from;
    rec.to = to;
    if (to == GM_MODE_MIG)
        assert_int_equal(gm_set_str(&rec.strategy, "mixed"), 0);
    if (saved)
        assert_int_equal(
            gm_record_save_label(&rec, key, saved == ABSENT ? NULL : saved), 0);
    memset(&f, 0, sizeof(f));
    f.record = gm_record_format(&rec);
    f.labels = labels;
    f.annotations = annotations;
    gm_record_clear(&rec);
    th_ctl_start(&f.c, th_node_fx_handler, &f);
    th_run_until(&f.c.loop, &f.done, patch ? 5000 : 1500);
    json_object *p = NULL;
    if (patch) {
        assert_non_null(f.patch);
        p = json_tokener_parse(f.patch);
        assert_non_null(p);
    } else {
        assert_null(f.patch);
    }
    th_node_fx_stop(&f);
    return p;
}

static json_object *run(enum gm_phase phase, enum gm_mode from, enum gm_mode to,
                        const char *saved, const char *labels,
                        const char *annotations)
{
    return run_saved(phase, from, to, CONFIG, saved, labels, annotations, true);
}

/* Is key in obj, and with what value (NULL for null)? */
static bool has(json_object *obj, const char *key, const char **value)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(obj, key, &v))
        return false;
    *value = v ? json_object_get_string(v) : NULL;
    return true;
}

static json_object *meta(json_object *p, const char *what)
{
    return gm_json_get(gm_json_get(p, "metadata"), what);
}

/* A rollback that ends (back in full after a failed full -> vgpu) has put
 * every label back: its record, kept as Failed for a retry, forgets the
 * values it saved, so a retry saves the node's labels as a person may
 * have set them since rather than restore those from before the first
 * attempt. */
static void test_rollback_end_forgets_saved_labels(void **state)
{
    (void)state;
    struct th_node_fx f;
    struct gm_switch_record rec = {0};
    char err[256];
    char *text = th_ctl_switch_record(GM_PHASE_FINISH, NULL);
    assert_int_equal(gm_record_parse(text, &rec, err, sizeof(err)), 0);
    free(text);
    rec.rolling_back = true;
    rec.reconfigured = true;
    assert_int_equal(gm_set_str(&rec.reason, "PluginNotReady"), 0);
    assert_int_equal(gm_record_save_label(&rec, GFD, "true"), 0);
    memset(&f, 0, sizeof(f));
    f.record = gm_record_format(&rec);
    gm_record_clear(&rec);
    th_ctl_start(&f.c, th_node_fx_handler, &f);
    th_run_until(&f.c.loop, &f.done, 5000);
    assert_non_null(f.patch);
    json_object *p = json_tokener_parse(f.patch);
    const char *v = NULL;
    assert_true(has(meta(p, "labels"), GM_LABEL_STATE, &v));
    assert_string_equal(v, "failed");
    assert_true(has(meta(p, "annotations"), GM_ANN_SWITCH, &v));
    assert_non_null(v);
    assert_int_equal(gm_record_parse(v, &rec, err, sizeof(err)), 0);
    assert_int_equal(rec.phase, GM_PHASE_FAILED);
    assert_int_equal(rec.n_saved, 0);
    gm_record_clear(&rec);
    json_object_put(p);
    th_node_fx_stop(&f);
}

/* full -> mig, Finish: the value the switch replaced is kept. */
static void test_into_mig_keeps_the_own_value(void **state)
{
    (void)state;
    const char *v = NULL;
    json_object *p = run(GM_PHASE_FINISH, GM_MODE_FULL, GM_MODE_MIG, "ts-4",
                         "{\"" CONFIG "\":\"mixed\"}", NULL);
    assert_true(has(meta(p, "annotations"), GM_ANN_PLUGIN_CONFIG, &v));
    assert_string_equal(v, "ts-4");
    /* The target sets the label: Finish does not restore it. */
    assert_false(has(meta(p, "labels"), CONFIG, &v));
    json_object_put(p);
}

/* A node that had no config, and a switch within mig (which saved a
 * strategy): nothing to keep, and a kept value stays. */
static void test_strategy_or_nothing_is_not_kept(void **state)
{
    (void)state;
    const char *v = NULL;
    json_object *p = run(GM_PHASE_FINISH, GM_MODE_FULL, GM_MODE_MIG, NULL,
                         "{\"" CONFIG "\":\"mixed\"}", NULL);
    assert_false(has(meta(p, "annotations"), GM_ANN_PLUGIN_CONFIG, &v));
    json_object_put(p);
    p = run(GM_PHASE_FINISH, GM_MODE_MIG, GM_MODE_MIG, "single",
            "{\"" CONFIG "\":\"mixed\"}",
            "{\"" GM_ANN_PLUGIN_CONFIG "\":\"ts-4\"}");
    assert_false(has(meta(p, "annotations"), GM_ANN_PLUGIN_CONFIG, &v));
    json_object_put(p);
}

/* mig -> full, StartingClients: the kept value comes back. */
static void test_out_of_mig_puts_it_back(void **state)
{
    (void)state;
    const char *v = NULL;
    json_object *p = run(GM_PHASE_START_CLIENTS, GM_MODE_MIG, GM_MODE_FULL,
                         NULL, "{\"" CONFIG "\":\"mixed\"}",
                         "{\"" GM_ANN_PLUGIN_CONFIG "\":\"ts-4\"}");
    assert_true(has(meta(p, "labels"), CONFIG, &v));
    assert_string_equal(v, "ts-4");
    json_object_put(p);
    /* Nothing kept: the strategy goes, the plugin runs plain. */
    p = run(GM_PHASE_START_CLIENTS, GM_MODE_MIG, GM_MODE_VGPU, NULL,
            "{\"" CONFIG "\":\"single\"}", NULL);
    assert_true(has(meta(p, "labels"), CONFIG, &v));
    assert_null(v);
    json_object_put(p);
}

/* A node's own value outside mig (adopted with time-slicing, or vgpu ->
 * full) is left alone. */
static void test_own_value_outside_mig_is_left(void **state)
{
    (void)state;
    const char *v = NULL;
    json_object *p = run(GM_PHASE_START_CLIENTS, GM_MODE_VGPU, GM_MODE_FULL,
                         NULL, "{\"" CONFIG "\":\"ts-4\"}", NULL);
    assert_false(has(meta(p, "labels"), CONFIG, &v));
    json_object_put(p);
}

/* mig -> full, Finish: the annotation has served. */
static void test_finish_out_of_mig_drops_the_annotation(void **state)
{
    (void)state;
    const char *v = "unset";
    json_object *p = run(GM_PHASE_FINISH, GM_MODE_MIG, GM_MODE_FULL, "mixed",
                         "{\"" CONFIG "\":\"ts-4\"}",
                         "{\"" GM_ANN_PLUGIN_CONFIG "\":\"ts-4\"}");
    assert_true(has(meta(p, "annotations"), GM_ANN_PLUGIN_CONFIG, &v));
    assert_null(v);
    /* The label the target set is not rolled back to the strategy. */
    assert_false(has(meta(p, "labels"), CONFIG, &v));
    json_object_put(p);
}

/* Feature discovery returns with the plugin, so its labels describe the
 * new layout by verification (a time-sliced node is verified from them). */
static void test_clients_return_with_the_plugin(void **state)
{
    (void)state;
    const char *v = NULL;
    json_object *p =
        run_saved(GM_PHASE_START_CLIENTS, GM_MODE_MIG, GM_MODE_FULL, GFD,
                  "true", "{\"" GFD "\":\"false\"}", NULL, true);
    assert_true(has(meta(p, "labels"), GFD, &v));
    assert_string_equal(v, "true");
    json_object_put(p);
    /* Already back: not written again. */
    p = run_saved(GM_PHASE_START_CLIENTS, GM_MODE_MIG, GM_MODE_FULL, GFD,
                  "true", "{\"" GFD "\":\"true\"}", NULL, true);
    assert_false(has(meta(p, "labels"), GFD, &v));
    json_object_put(p);
}

/* A held full -> mig switch that reached StartingClients, retried towards
 * full: Finish never kept the node's value, the record has it. */
static void test_retry_out_of_a_failed_mig_switch_puts_it_back(void **state)
{
    (void)state;
    const char *v = NULL;
    json_object *p = run(GM_PHASE_START_CLIENTS, GM_MODE_FULL, GM_MODE_FULL,
                         "ts-4", "{\"" CONFIG "\":\"mixed\"}", NULL);
    assert_true(has(meta(p, "labels"), CONFIG, &v));
    assert_string_equal(v, "ts-4");
    json_object_put(p);
    /* It had none: the strategy goes. */
    p = run(GM_PHASE_START_CLIENTS, GM_MODE_FULL, GM_MODE_FULL, ABSENT,
            "{\"" CONFIG "\":\"mixed\"}", NULL);
    assert_true(has(meta(p, "labels"), CONFIG, &v));
    assert_null(v);
    json_object_put(p);
}

/* What is kept is not overwritten by a value someone set while the node
 * was in mig, nor on a node whose mode before was not known; with nothing
 * kept, the latter keeps what it replaced. */
static void test_kept_value_is_not_overwritten(void **state)
{
    (void)state;
    const char *v = NULL;
    json_object *p = run(GM_PHASE_FINISH, GM_MODE_MIG, GM_MODE_MIG, "mig-ts",
                         "{\"" CONFIG "\":\"mixed\"}",
                         "{\"" GM_ANN_PLUGIN_CONFIG "\":\"ts-4\"}");
    assert_false(has(meta(p, "annotations"), GM_ANN_PLUGIN_CONFIG, &v));
    json_object_put(p);
    p = run(GM_PHASE_FINISH, GM_MODE_UNKNOWN, GM_MODE_MIG, "ts-2",
            "{\"" CONFIG "\":\"mixed\"}",
            "{\"" GM_ANN_PLUGIN_CONFIG "\":\"ts-4\"}");
    assert_false(has(meta(p, "annotations"), GM_ANN_PLUGIN_CONFIG, &v));
    json_object_put(p);
    p = run(GM_PHASE_FINISH, GM_MODE_UNKNOWN, GM_MODE_MIG, "ts-2",
            "{\"" CONFIG "\":\"mixed\"}", NULL);
    assert_true(has(meta(p, "annotations"), GM_ANN_PLUGIN_CONFIG, &v));
    assert_string_equal(v, "ts-2");
    json_object_put(p);
    /* Saved as absent: nothing to keep. */
    p = run(GM_PHASE_FINISH, GM_MODE_FULL, GM_MODE_MIG, ABSENT,
            "{\"" CONFIG "\":\"mixed\"}", NULL);
    assert_false(has(meta(p, "annotations"), GM_ANN_PLUGIN_CONFIG, &v));
    json_object_put(p);
}

/* A record an older gpumode took past StartingClients: feature discovery
 * comes back before the counts are compared. */
static void test_verify_restores_the_clients_first(void **state)
{
    (void)state;
    const char *v = NULL;
    json_object *p = run_saved(GM_PHASE_VERIFY, GM_MODE_MIG, GM_MODE_FULL, GFD,
                               "true", "{\"" GFD "\":\"false\"}", NULL, true);
    assert_true(has(meta(p, "labels"), GFD, &v));
    assert_string_equal(v, "true");
    json_object_put(p);
}

/* A label someone else set meanwhile (neither the old value nor the
 * stopped one) is not fought over in Verify: nothing is written while the
 * plugin is awaited. */
static void test_verify_leaves_a_label_someone_set(void **state)
{
    (void)state;
    run_saved(GM_PHASE_VERIFY, GM_MODE_MIG, GM_MODE_FULL, GFD, "true",
              "{\"" GFD "\":\"later\"}", NULL, false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rollback_end_forgets_saved_labels),
        cmocka_unit_test(test_into_mig_keeps_the_own_value),
        cmocka_unit_test(test_strategy_or_nothing_is_not_kept),
        cmocka_unit_test(test_out_of_mig_puts_it_back),
        cmocka_unit_test(test_own_value_outside_mig_is_left),
        cmocka_unit_test(test_finish_out_of_mig_drops_the_annotation),
        cmocka_unit_test(test_clients_return_with_the_plugin),
        cmocka_unit_test(test_retry_out_of_a_failed_mig_switch_puts_it_back),
        cmocka_unit_test(test_kept_value_is_not_overwritten),
        cmocka_unit_test(test_verify_restores_the_clients_first),
        cmocka_unit_test(test_verify_leaves_a_label_someone_set),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
