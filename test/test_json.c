/* gm_json_utf8_len: how much of a string fits a bounded API field without
 * a broken UTF-8 character, which the API server would read as U+FFFD
 * per byte (status messages, event notes). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "common/json.h"

static void test_cuts_on_a_character_boundary(void **state)
{
    (void)state;
    /* "é" is c3 a9, "€" e2 82 ac, "😀" f0 9f 98 80. */
    assert_int_equal(gm_json_utf8_len("abc", 10), 3);
    assert_int_equal(gm_json_utf8_len("abc", 2), 2);
    assert_int_equal(gm_json_utf8_len("", 0), 0);
    assert_int_equal(gm_json_utf8_len("a\xc3\xa9", 3), 3);
    assert_int_equal(gm_json_utf8_len("a\xc3\xa9", 2), 1);
    assert_int_equal(gm_json_utf8_len("a\xe2\x82\xac", 3), 1);
    assert_int_equal(gm_json_utf8_len("\xf0\x9f\x98\x80x", 4), 4);
    assert_int_equal(gm_json_utf8_len("\xf0\x9f\x98\x80x", 3), 0);
}

/* A string some snprintf already cut inside a character. */
static void test_drops_a_character_cut_short(void **state)
{
    (void)state;
    assert_int_equal(gm_json_utf8_len("ab\xc3", 100), 2);
    assert_int_equal(gm_json_utf8_len("ab\xe2\x82", 100), 2);
    assert_int_equal(gm_json_utf8_len("ab\xf0\x9f\x98", 100), 2);
    assert_int_equal(gm_json_utf8_len("\xe2\x82", 100), 0);
    /* Whole characters at the end stay. */
    assert_int_equal(gm_json_utf8_len("ab\xe2\x82\xac", 100), 5);
    assert_int_equal(gm_json_utf8_len("\xc3\xa9\xc3\xa9", 100), 4);
    /* Stray continuation bytes are not ours to mend: left as they are. */
    assert_int_equal(gm_json_utf8_len("a\x80\x80\x80\x80", 100), 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cuts_on_a_character_boundary),
        cmocka_unit_test(test_drops_a_character_cut_short),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
