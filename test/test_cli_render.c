/* kubectl gpumode status, rendered from canned policies and nodes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/status.h"
#include "support/testutil.h"

#define NOW 1715034600 /* 2024-05-06T22:30:00Z */

static json_object *load(const char *path)
{
    char *text = tu_read_file(path, NULL);
    json_object *o = json_tokener_parse(text);
    free(text);
    assert_non_null(o);
    return o;
}

static char *render(bool color, bool with_nodes)
{
    json_object *pols = load("test/fixtures/cli/policies.json");
    json_object *nodes =
        with_nodes ? load("test/fixtures/cli/nodes.json") : NULL;
    struct gm_status_opts o = {.color = color, .now = NOW};
    struct gm_buf b;

    gm_buf_init(&b, 1 << 20);
    assert_int_equal(gm_status_render(pols, nodes, &o, &b), 0);
    json_object_put(pols);
    json_object_put(nodes);
    return gm_buf_steal(&b);
}

static void test_bar(void **state)
{
    char buf[64];
    (void)state;
    gm_status_bar(7, 10, 10, buf, sizeof(buf));
    assert_string_equal(buf, "[#######---]");
    gm_status_bar(0, 10, 10, buf, sizeof(buf));
    assert_string_equal(buf, "[----------]");
    gm_status_bar(1, 100, 10, buf, sizeof(buf)); /* some progress shows */
    assert_string_equal(buf, "[#---------]");
    gm_status_bar(4, 4, 5, buf, sizeof(buf));
    assert_string_equal(buf, "[#####]");
    gm_status_bar(0, 0, 0, buf, sizeof(buf));
    assert_string_equal(buf, "[----------]");
}

static void test_duration_and_time(void **state)
{
    char buf[32];
    (void)state;
    gm_status_duration(45, buf, sizeof(buf));
    assert_string_equal(buf, "45s");
    gm_status_duration(192, buf, sizeof(buf));
    assert_string_equal(buf, "3m12s");
    gm_status_duration(7500, buf, sizeof(buf));
    assert_string_equal(buf, "2h05m");
    gm_status_duration(3 * 86400 + 4 * 3600, buf, sizeof(buf));
    assert_string_equal(buf, "3d4h");
    gm_status_duration(-5, buf, sizeof(buf));
    assert_string_equal(buf, "-");
    assert_int_equal(gm_status_parse_time("2024-05-06T22:30:00Z"), NOW);
    assert_int_equal(gm_status_parse_time("1970-01-01T00:00:00Z"), 0);
    assert_int_equal(gm_status_parse_time("yesterday"), -1);
    assert_int_equal(gm_status_parse_time(NULL), -1);
}

static void test_policy_lines(void **state)
{
    char *s = render(false, true);
    (void)state;
    /* Sorted by name: batch before inference. */
    const char *batch = strstr(s, "batch  full  [##########] 4/4  Ready=True "
                                  "Converged\n");
    const char *inf = strstr(s, "inference  mig  [#######---] 7/10  "
                                "Ready=False Progressing\n");
    assert_non_null(batch);
    assert_non_null(inf);
    assert_true(batch < inf);
    assert_non_null(strstr(s, "  matched 10  converged 7  switching 1  "
                              "pending 1  failed 1\n"));
    assert_non_null(strstr(s, "  10 nodes governed, 7 converged\n"));
    assert_non_null(strstr(s, "  4 nodes governed, 4 converged (all)\n"));
    free(s);
}

/* What the controller cannot do though nothing stalls follows ". " in
 * Ready's message; status shows it as a note. */
static void test_note_from_ready_message(void **state)
{
    json_object *pols = json_tokener_parse(
        "[{\"metadata\":{\"name\":\"dev\",\"generation\":1},\"spec\":{"
        "\"mode\":\"vgpu\",\"nodeSelector\":{\"matchLabels\":{\"pool\":"
        "\"a\"}}},\"status\":{\"observedGeneration\":1,\"summary\":{"
        "\"matched\":2,\"converged\":2},\"conditions\":[{\"type\":"
        "\"Ready\",\"status\":\"True\",\"reason\":\"Converged\","
        "\"message\":\"2/2 nodes in vgpu. spec.vgpu.splitCount 4 is not "
        "written. 1 node advertises other GPU resources than it was "
        "verified with: n1 offers none\"}]}}]");
    struct gm_status_opts o = {.now = NOW};
    struct gm_buf b;
    (void)state;

    assert_non_null(pols);
    gm_buf_init(&b, 1 << 20);
    assert_int_equal(gm_status_render(pols, NULL, &o, &b), 0);
    char *s = gm_buf_steal(&b);
    assert_non_null(strstr(s, "  note: spec.vgpu.splitCount 4 is not written\n"
                              "  note: 1 node advertises other GPU resources "
                              "than it was verified with: n1 offers none\n"));
    free(s);
    json_object_put(pols);
    /* The fixtures' plain progress lines carry no note. */
    s = render(false, true);
    assert_null(strstr(s, "note:"));
    free(s);
    /* An invalid spec's message is the error, quoting what the user
     * typed: no note made of it. */
    pols = json_tokener_parse(
        "[{\"metadata\":{\"name\":\"bad\",\"generation\":1},\"spec\":{"
        "\"mode\":\"vgpu\",\"nodeSelector\":{\"matchLabels\":{\"pool\":"
        "\"a\"}}},\"status\":{\"observedGeneration\":1,\"conditions\":[{"
        "\"type\":\"Ready\",\"status\":\"False\",\"reason\":"
        "\"InvalidSpec\",\"message\":\"selector term \\\"a. spec.b\\\": "
        "unknown operator\"}]}}]");
    assert_non_null(pols);
    gm_buf_init(&b, 1 << 20);
    assert_int_equal(gm_status_render(pols, NULL, &o, &b), 0);
    s = gm_buf_steal(&b);
    assert_null(strstr(s, "note:"));
    free(s);
    json_object_put(pols);
}

static void test_node_rows(void **state)
{
    char *s = render(false, true);
    (void)state;
    assert_non_null(strstr(s, "  NODE    MODE       STATE      PHASE     "
                              "SINCE  MESSAGE\n"));
    /* Time in phase from since: 22:27:48 to 22:30:00. */
    assert_non_null(strstr(s, "  gpu-07  full->mig  switching  Draining  "
                              "2m12s  2 pods left; eviction of "
                              "team-a/train-0 blocked by "
                              "PodDisruptionBudget\n"));
    /* No node object for gpu-08: the state is unknown, since absent. */
    assert_non_null(strstr(s, "  gpu-08  full->mig  -          Pending   -"
                              "      waiting for rollout budget"));
    assert_non_null(strstr(s, "  gpu-09  full->mig  failed     Failed    -"));
    free(s);
}

static void test_colour_only_when_asked(void **state)
{
    char *plain = render(false, false);
    char *colour = render(true, false);
    (void)state;
    assert_null(strchr(plain, '\033'));
    assert_non_null(strstr(colour, "\033[31m")); /* failed node in red */
    assert_non_null(strstr(colour, "\033[32m")); /* converged policy */
    /* Without nodes the failed row still says failed (from the phase). */
    assert_non_null(strstr(plain, "  gpu-09  full->mig  failed"));
    free(plain);
    free(colour);
}

static void test_empty_and_no_status(void **state)
{
    struct gm_status_opts o = {.now = NOW};
    struct gm_buf b;
    json_object *none = json_object_new_array();
    json_object *fresh = json_tokener_parse(
        "[{\"metadata\":{\"name\":\"new\"},\"spec\":{\"mode\":\"full\","
        "\"nodeSelector\":{\"matchLabels\":{\"a\":\"b\"}},\"rollout\":"
        "{\"paused\":true}}}]");
    json_object *bad = json_tokener_parse(
        "[{\"metadata\":{\"name\":\"bad\"},\"spec\":{\"mode\":\"x\","
        "\"nodeSelector\":{\"matchLabels\":{\"a\":\"b\"}}},\"status\":{"
        "\"conditions\":[{\"type\":\"Stalled\",\"status\":\"True\","
        "\"reason\":\"InvalidSpec\",\"message\":\"m\"}]}}]");
    (void)state;

    gm_buf_init(&b, 1 << 20);
    assert_int_equal(gm_status_render(none, NULL, &o, &b), 0);
    assert_string_equal(b.data, "no GPUModePolicies\n");
    gm_buf_reset(&b);
    assert_int_equal(gm_status_render(fresh, NULL, &o, &b), 0);
    assert_non_null(strstr(b.data, "new  full  [----------] 0/0  "
                                   "Ready=Unknown NotObserved  (paused)\n"));
    assert_non_null(strstr(b.data, "no status yet"));
    gm_buf_reset(&b);
    assert_int_equal(gm_status_render(bad, NULL, &o, &b), 0);
    assert_non_null(strstr(b.data, "invalid spec: spec.mode:"));
    gm_buf_free(&b);
    json_object_put(none);
    json_object_put(fresh);
    json_object_put(bad);
}

/* A status written for an older spec (the spec changed since, the
 * controller has not caught up or is not running): not shown as Ready,
 * and said so, as kstatus reads it. */
static void test_status_of_an_older_generation(void **state)
{
    json_object *pols = json_tokener_parse(
        "[{\"metadata\":{\"name\":\"training\",\"generation\":2},"
        "\"spec\":{\"mode\":\"vgpu\",\"nodeSelector\":{\"matchLabels\":"
        "{\"pool\":\"a\"}}},\"status\":{\"observedGeneration\":1,"
        "\"summary\":{\"matched\":2,\"converged\":2},\"conditions\":[{"
        "\"type\":\"Ready\",\"status\":\"True\",\"reason\":\"Converged\","
        "\"message\":\"2/2 nodes in full\"}]}}]");
    struct gm_status_opts o = {.now = NOW, .color = true};
    struct gm_buf b;
    (void)state;

    assert_non_null(pols);
    gm_buf_init(&b, 1 << 20);
    assert_int_equal(gm_status_render(pols, NULL, &o, &b), 0);
    assert_non_null(strstr(b.data, "Ready=Unknown NotObserved"));
    assert_null(strstr(b.data, "Ready=True"));
    assert_null(strstr(b.data, "\033[32m")); /* no green */
    assert_non_null(strstr(b.data, "the status below is for generation 1; "
                                   "the spec is at generation 2"));
    gm_buf_free(&b);
    json_object_put(pols);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bar),
        cmocka_unit_test(test_duration_and_time),
        cmocka_unit_test(test_policy_lines),
        cmocka_unit_test(test_note_from_ready_message),
        cmocka_unit_test(test_node_rows),
        cmocka_unit_test(test_colour_only_when_asked),
        cmocka_unit_test(test_empty_and_no_status),
        cmocka_unit_test(test_status_of_an_older_generation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
