/* kubectl gpumode retry's check of the node: what it lets through, and
 * what it refuses with a message naming the node and the reason. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "cli/retry.h"

/* A node named gpu-1 with labels and the switch record rec (or none), as
 * JSON; the caller puts it. */
static json_object *node(const char *labels, const char *rec)
{
    char text[1024];
    json_object *ann = json_object_new_object();
    if (rec)
        json_object_object_add(ann, "gpumode.io/switch",
                               json_object_new_string(rec));
    snprintf(text, sizeof(text),
             "{\"metadata\":{\"name\":\"gpu-1\",\"labels\":%s}}", labels);
    json_object *n = json_tokener_parse(text);
    assert_non_null(n);
    json_object_object_add(json_object_object_get(n, "metadata"), "annotations",
                           ann);
    return n;
}

static int check(const char *labels, const char *rec, char *msg, size_t cap)
{
    json_object *n = node(labels, rec);
    msg[0] = '\0';
    int rc = gm_cli_retry_check(n, msg, cap);
    json_object_put(n);
    return rc;
}

static void test_failed_is_retried(void **state)
{
    (void)state;
    char msg[512];
    /* Held failed, with its record; and failed with the record gone. */
    assert_int_equal(check("{\"gpumode.io/state\":\"failed\"}",
                           "{\"policy\":\"a\",\"phase\":\"Failed\"}", msg,
                           sizeof(msg)),
                     0);
    assert_int_equal(
        check("{\"gpumode.io/state\":\"failed\"}", NULL, msg, sizeof(msg)), 0);
    /* A skip label set to anything but true is no skip. */
    assert_int_equal(check("{\"gpumode.io/state\":\"failed\","
                           "\"gpumode.io/skip\":\"false\"}",
                           NULL, msg, sizeof(msg)),
                     0);
}

static void test_not_failed_is_refused(void **state)
{
    (void)state;
    char msg[512];
    assert_int_equal(check("{\"gpumode.io/state\":\"switching\"}",
                           "{\"policy\":\"a\",\"phase\":\"Draining\"}", msg,
                           sizeof(msg)),
                     -EINVAL);
    assert_string_equal(msg, "node gpu-1 is not failed: its switch is in "
                             "phase Draining; retry is only for a failed "
                             "switch");
    assert_int_equal(check("{}", NULL, msg, sizeof(msg)), -EINVAL);
    assert_string_equal(msg, "node gpu-1 is not failed (gpumode.io/state="
                             "unset); retry is only for a failed switch");
}

/* The controller never touches a node labelled gpumode.io/skip=true: the
 * annotation would sit there unread while the CLI said a retry would
 * come. */
static void test_skipped_is_refused(void **state)
{
    (void)state;
    char msg[512];
    assert_int_equal(check("{\"gpumode.io/state\":\"failed\","
                           "\"gpumode.io/skip\":\"true\"}",
                           "{\"policy\":\"a\",\"phase\":\"Failed\"}", msg,
                           sizeof(msg)),
                     -EINVAL);
    assert_string_equal(msg, "node gpu-1 is labelled gpumode.io/skip=true, "
                             "so the controller never touches it: remove "
                             "the label (kubectl label node gpu-1 "
                             "gpumode.io/skip-) to let it retry the switch");
    /* Cut to the buffer, terminated. */
    char small[16];
    assert_int_equal(check("{\"gpumode.io/state\":\"failed\","
                           "\"gpumode.io/skip\":\"true\"}",
                           NULL, small, sizeof(small)),
                     -EINVAL);
    assert_int_equal(strlen(small), sizeof(small) - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failed_is_retried),
        cmocka_unit_test(test_not_failed_is_refused),
        cmocka_unit_test(test_skipped_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
