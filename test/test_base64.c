/* gm_base64_decode: strict standard base64, as kubeconfig *-data fields
 * and ConfigMap binaryData carry bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/base64.h"

static void test_decodes_with_whitespace_and_nul(void **state)
{
    (void)state;
    char *out = NULL;
    size_t len = 0;

    assert_int_equal(gm_base64_decode("aGk=", &out, &len), 0);
    assert_int_equal(len, 2);
    assert_string_equal(out, "hi");
    free(out);
    /* A folded YAML scalar may carry spaces and line breaks. */
    assert_int_equal(gm_base64_decode(" aG\nk=\n", &out, &len), 0);
    assert_string_equal(out, "hi");
    free(out);
    /* Bytes, not text: a NUL inside is kept and the length says so. */
    assert_int_equal(gm_base64_decode("AGEA", &out, &len), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(out, "\0a\0", 4);
    free(out);
}

static void test_refuses_what_is_not_base64(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", "aGk", "a=Gk", "aGk==a==", "!!!!", "aGk=aGk=", "aGk===="};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        char *out = NULL;
        size_t len = 0;
        if (gm_base64_decode(bad[i], &out, &len) != -EINVAL)
            fail_msg("%s: decoded", bad[i]);
        assert_null(out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decodes_with_whitespace_and_nul),
        cmocka_unit_test(test_refuses_what_is_not_base64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
