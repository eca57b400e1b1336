/* The watch stream decoder: a recorded stream fed split at every byte
 * boundary must give the same events as fed whole. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "kube/watch.h"
#include "support/testutil.h"

struct seen {
    int n;
    enum gm_watch_type types[16];
    char names[16][64];
    char rvs[16][32];
};

static int record(void *data, enum gm_watch_type type, json_object *obj)
{
    struct seen *s = data;
    json_object *meta, *v;
    if (s->n >= 16)
        return -1;
    s->types[s->n] = type;
    s->names[s->n][0] = s->rvs[s->n][0] = '\0';
    if (json_object_object_get_ex(obj, "metadata", &meta)) {
        if (json_object_object_get_ex(meta, "name", &v))
            snprintf(s->names[s->n], 64, "%s", json_object_get_string(v));
        if (json_object_object_get_ex(meta, "resourceVersion", &v))
            snprintf(s->rvs[s->n], 32, "%s", json_object_get_string(v));
    }
    s->n++;
    return 0;
}

static void check_recorded(const struct seen *s)
{
    assert_int_equal(s->n, 5);
    assert_int_equal(s->types[0], GM_WATCH_ADDED);
    assert_string_equal(s->names[0], "n1");
    assert_string_equal(s->rvs[0], "101");
    assert_int_equal(s->types[1], GM_WATCH_MODIFIED);
    assert_string_equal(s->names[1], "n2");
    assert_int_equal(s->types[2], GM_WATCH_BOOKMARK);
    assert_string_equal(s->rvs[2], "150");
    assert_int_equal(s->types[3], GM_WATCH_DELETED);
    assert_int_equal(s->types[4], GM_WATCH_ERROR);
}

static void test_whole_stream(void **state)
{
    (void)state;
    size_t len;
    char *stream = tu_read_file("test/fixtures/watch/nodes-stream.json", &len);
    struct seen s = {0};
    struct gm_watch_decoder *d;

    assert_int_equal(gm_watch_decoder_new(1 << 20, record, &s, &d), 0);
    assert_int_equal(gm_watch_decoder_feed(d, stream, len), 0);
    check_recorded(&s);
    gm_watch_decoder_free(d);
    free(stream);
}

static void test_every_split_point(void **state)
{
    (void)state;
    size_t len;
    char *stream = tu_read_file("test/fixtures/watch/nodes-stream.json", &len);
    size_t step = tu_under_valgrind() ? 97 : 1;

    for (size_t cut = 0; cut <= len; cut += step) {
        struct seen s = {0};
        struct gm_watch_decoder *d;
        assert_int_equal(gm_watch_decoder_new(1 << 20, record, &s, &d), 0);
        assert_int_equal(gm_watch_decoder_feed(d, stream, cut), 0);
        assert_int_equal(gm_watch_decoder_feed(d, stream + cut, len - cut), 0);
        check_recorded(&s);
        gm_watch_decoder_free(d);
    }
    free(stream);
}

static void test_byte_by_byte(void **state)
{
    (void)state;
    size_t len;
    char *stream = tu_read_file("test/fixtures/watch/nodes-stream.json", &len);
    struct seen s = {0};
    struct gm_watch_decoder *d;

    assert_int_equal(gm_watch_decoder_new(1 << 20, record, &s, &d), 0);
    for (size_t i = 0; i < len; i++)
        assert_int_equal(gm_watch_decoder_feed(d, stream + i, 1), 0);
    check_recorded(&s);
    gm_watch_decoder_free(d);
    free(stream);
}

static void test_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "{\"type\":\"ADDED\",\"object\":{]}\n",
        "{\"type\":\"EXPLODED\",\"object\":{}}\n",
        "{\"object\":{}}\n",
        "[1,2,3]\n",
        "{\"type\":\"ADDED\"}\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct seen s = {0};
        struct gm_watch_decoder *d;
        assert_int_equal(gm_watch_decoder_new(1 << 20, record, &s, &d), 0);
        assert_int_equal(gm_watch_decoder_feed(d, bad[i], strlen(bad[i])),
                         -EPROTO);
        assert_int_equal(s.n, 0);
        gm_watch_decoder_free(d);
    }
}

static void test_event_over_cap(void **state)
{
    (void)state;
    char big[4096];
    struct seen s = {0};
    struct gm_watch_decoder *d;

    memset(big, ' ', sizeof(big));
    memcpy(big, "{\"type\":\"ADDED\",\"object\":{\"x\":\"", 31);
    memset(big + 31, 'a', sizeof(big) - 31);
    assert_int_equal(gm_watch_decoder_new(1024, record, &s, &d), 0);
    assert_int_equal(gm_watch_decoder_feed(d, big, 1000), 0);
    assert_int_equal(gm_watch_decoder_feed(d, big + 1000, 1000), -E2BIG);
    gm_watch_decoder_free(d);
}

static int stop_at_first(void *data, enum gm_watch_type t, json_object *o)
{
    (void)t;
    (void)o;
    (*(int *)data)++;
    return 7;
}

static void test_callback_stops(void **state)
{
    (void)state;
    const char *two = "{\"type\":\"ADDED\",\"object\":{}}\n"
                      "{\"type\":\"ADDED\",\"object\":{}}\n";
    int calls = 0;
    struct gm_watch_decoder *d;
    assert_int_equal(gm_watch_decoder_new(1024, stop_at_first, &calls, &d), 0);
    assert_int_equal(gm_watch_decoder_feed(d, two, strlen(two)), 7);
    assert_int_equal(calls, 1);
    gm_watch_decoder_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole_stream),
        cmocka_unit_test(test_every_split_point),
        cmocka_unit_test(test_byte_by_byte),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_event_over_cap),
        cmocka_unit_test(test_callback_stops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
