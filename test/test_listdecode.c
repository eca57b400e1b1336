/* The streamed List decoder: items handed over one at a time, whatever the
 * chunking, and the list's metadata kept. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "kube/listdecode.h"

static const char *const list =
    "{\"kind\":\"NodeList\",\"apiVersion\":\"v1\",\"metadata\":{"
    "\"resourceVersion\":\"77\",\"continue\":\"tok/2\"},\"items\":[{"
    "\"metadata\":{\"name\":\"a\",\"labels\":{\"x\":\"}]{[\\\"\"}}},"
    "{\"metadata\":{\"name\":\"b\"},\"spec\":{\"taints\":[{\"k\":1}]}},\n"
    " {\"metadata\":{\"name\":\"c\"}}]}";

struct seen {
    int n;
    char names[8];
};

static int on_item(void *data, json_object *one)
{
    struct seen *s = data;
    json_object *meta, *name;
    assert_int_equal(json_object_array_length(one), 1);
    json_object_object_get_ex(json_object_array_get_idx(one, 0), "metadata",
                              &meta);
    json_object_object_get_ex(meta, "name", &name);
    s->names[s->n++] = json_object_get_string(name)[0];
    return 0;
}

static void check(struct gm_list_decoder *d, const struct seen *s)
{
    json_object *meta = gm_list_decoder_metadata(d), *v;
    assert_true(gm_list_decoder_complete(d));
    assert_int_equal(s->n, 3);
    assert_memory_equal(s->names, "abc", 3);
    assert_non_null(meta);
    assert_true(json_object_object_get_ex(meta, "continue", &v));
    assert_string_equal(json_object_get_string(v), "tok/2");
}

static void test_every_split(void **state)
{
    (void)state;
    size_t len = strlen(list);
    for (size_t cut = 0; cut <= len; cut++) {
        struct seen s = {0};
        struct gm_list_decoder *d;
        assert_int_equal(gm_list_decoder_new(4096, on_item, &s, &d), 0);
        assert_int_equal(gm_list_decoder_feed(d, list, cut), 0);
        assert_int_equal(gm_list_decoder_feed(d, list + cut, len - cut), 0);
        check(d, &s);
        gm_list_decoder_free(d);
    }
    struct seen s = {0};
    struct gm_list_decoder *d;
    assert_int_equal(gm_list_decoder_new(4096, on_item, &s, &d), 0);
    for (size_t i = 0; i < len; i++)
        assert_int_equal(gm_list_decoder_feed(d, list + i, 1), 0);
    check(d, &s);
    gm_list_decoder_free(d);
}

static void test_bad_input(void **state)
{
    (void)state;
    struct seen s = {0};
    struct gm_list_decoder *d;
    /* An item that is not JSON. */
    const char *bad = "{\"items\":[{\"a\":tru}]}";
    assert_int_equal(gm_list_decoder_new(4096, on_item, &s, &d), 0);
    assert_int_equal(gm_list_decoder_feed(d, bad, strlen(bad)), -EPROTO);
    gm_list_decoder_free(d);
    /* An item over the cap. */
    char big[300];
    memset(big, ' ', sizeof(big));
    memcpy(big, "{\"items\":[{\"a\":\"", 16);
    memset(big + 16, 'x', sizeof(big) - 16);
    assert_int_equal(gm_list_decoder_new(100, on_item, &s, &d), 0);
    assert_int_equal(gm_list_decoder_feed(d, big, sizeof(big)), -E2BIG);
    gm_list_decoder_free(d);
    /* Unbalanced, and bytes after the end. */
    assert_int_equal(gm_list_decoder_new(100, on_item, &s, &d), 0);
    assert_int_equal(gm_list_decoder_feed(d, "}", 1), -EPROTO);
    gm_list_decoder_free(d);
    assert_int_equal(gm_list_decoder_new(100, on_item, &s, &d), 0);
    assert_int_equal(gm_list_decoder_feed(d, "{}{}", 4), -EPROTO);
    gm_list_decoder_free(d);
    /* Incomplete: no metadata reported. */
    assert_int_equal(gm_list_decoder_new(100, on_item, &s, &d), 0);
    assert_int_equal(gm_list_decoder_feed(d, "{\"metadata\":{}", 14), 0);
    assert_false(gm_list_decoder_complete(d));
    assert_null(gm_list_decoder_metadata(d));
    gm_list_decoder_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_split),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
