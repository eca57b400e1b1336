/* YAML to json-c: types, nesting, anchors, and errors with positions. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/yaml.h"

static json_object *parse_ok(const char *text)
{
    json_object *o = NULL;
    char err[256];
    int rc = gm_yaml_parse(text, strlen(text), &o, err, sizeof(err));
    if (rc)
        fail_msg("parse failed: %s", err);
    return o;
}

static void test_types(void **state)
{
    (void)state;
    json_object *o = parse_ok("a: 1\nb: true\nc: \"1\"\nd: 1.5\ne: ~\n"
                              "f: hello world\ng: '22:00'\nh: 22:00\n"
                              "i: -3\nj: 0x20B010DE\n");
    assert_string_equal(
        json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN),
        "{\"a\":1,\"b\":true,\"c\":\"1\",\"d\":1.5,\"e\":null,"
        "\"f\":\"hello world\",\"g\":\"22:00\",\"h\":\"22:00\","
        "\"i\":-3,\"j\":\"0x20B010DE\"}");
    json_object_put(o);
}

static void test_nesting_and_flow(void **state)
{
    (void)state;
    json_object *o = parse_ok(
        "version: v1\nmig-configs:\n  all-1g.10gb:\n    - devices: all\n"
        "      mig-enabled: true\n      mig-devices: {\"1g.10gb\": 7}\n"
        "  mixed:\n    - devices: [0, 1]\n      mig-enabled: false\n");
    assert_string_equal(
        json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN),
        "{\"version\":\"v1\",\"mig-configs\":{\"all-1g.10gb\":[{\"devices\":"
        "\"all\",\"mig-enabled\":true,\"mig-devices\":{\"1g.10gb\":7}}],"
        "\"mixed\":[{\"devices\":[0,1],\"mig-enabled\":false}]}}");
    json_object_put(o);
}

static void test_anchors(void **state)
{
    (void)state;
    json_object *o = parse_ok("base: &b {x: 1}\ncopy: *b\n");
    assert_string_equal(
        json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN),
        "{\"base\":{\"x\":1},\"copy\":{\"x\":1}}");
    json_object_put(o);
}

/* Found by fuzz_yaml: an alias inside its own anchor made a reference cycle
 * (leaked, and printing it never ended); nested aliases multiplied the
 * tree. Both are errors now; aliases of aliases still work. */
static void test_alias_cycles_and_bombs(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *expect;
    } cases[] = {
        {"list: &l [a, *l]\n", "unknown alias"},
        {"m: &m {x: {y: *m}}\n", "unknown alias"},
        {"a: &a [x, x, x, x, x, x, x, x, x, x]\n"
         "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
         "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
         "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
         "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
         "f: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
         "aliases expand too much"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_object *o = NULL;
        char err[256];
        assert_int_equal(gm_yaml_parse(cases[i].text, strlen(cases[i].text), &o,
                                       err, sizeof(err)),
                         -EINVAL);
        assert_null(o);
        if (strstr(err, cases[i].expect) == NULL)
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err, cases[i].expect);
    }

    /* A chain of aliases deeper than the nesting limit. */
    char deep[8192];
    size_t len = (size_t)snprintf(deep, sizeof(deep), "a0: &a0 [x]\n");
    for (int i = 1; i < 80; i++)
        len += (size_t)snprintf(deep + len, sizeof(deep) - len,
                                "a%d: &a%d [*a%d]\n", i, i, i - 1);
    json_object *o = NULL;
    char err[256];
    assert_int_equal(gm_yaml_parse(deep, len, &o, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "nest too deeply"));

    o = parse_ok("a: &a {x: 1}\nb: &b [*a, *a]\nc: [*b, *a]\n");
    assert_string_equal(
        json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN),
        "{\"a\":{\"x\":1},\"b\":[{\"x\":1},{\"x\":1}],"
        "\"c\":[[{\"x\":1},{\"x\":1}],{\"x\":1}]}");
    json_object_put(o);
}

static void test_json_is_yaml(void **state)
{
    (void)state;
    json_object *o = parse_ok("{\"kind\": \"Config\", \"n\": [1, 2]}");
    assert_string_equal(
        json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN),
        "{\"kind\":\"Config\",\"n\":[1,2]}");
    json_object_put(o);
}

static void test_errors_name_the_position(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *expect;
    } cases[] = {
        {"a: b: c\n", "line 1, column 5"},
        {"a:\n  - x\n  y: 1\n", "line 3"},
        {"a: *nope\n", "unknown alias"},
        {"a: 1\n---\nb: 2\n", "only one YAML document"},
        {"a: 1\n---\n---\nb: 2\n", "line 4"},
        {"key: [1, 2\n", "line 2"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_object *o = NULL;
        char err[256];
        assert_int_equal(gm_yaml_parse(cases[i].text, strlen(cases[i].text), &o,
                                       err, sizeof(err)),
                         -EINVAL);
        assert_null(o);
        if (strstr(err, cases[i].expect) == NULL)
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err, cases[i].expect);
    }
}

/* Empty documents (a leading or trailing "---") are skipped, as kubectl
 * skips them. */
static void test_empty_documents_skipped(void **state)
{
    (void)state;
    static const char *const texts[] = {
        "a: 1\n---\n",
        "---\na: 1\n---\n",
        "---\n---\na: 1\n",
        "a: 1\n...\n---\n",
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        json_object *o = NULL;
        char err[256];
        if (gm_yaml_parse(texts[i], strlen(texts[i]), &o, err, sizeof(err)))
            fail_msg("case %zu: %s", i, err);
        assert_non_null(o);
        assert_int_equal(json_object_get_int(json_object_object_get(o, "a")),
                         1);
        json_object_put(o);
    }
}

/* gm_yaml_parse_first reads the first document and leaves the rest,
 * even a broken one, as go-yaml v2 does. */
static void test_first_document_only(void **state)
{
    (void)state;
    static const struct {
        const char *text, *json; /* json NULL: an empty document */
    } cases[] = {
        {"a: 1\n---\nb: 2\n", "{ \"a\": 1 }"},
        {"a: 1\n---\n", "{ \"a\": 1 }"},
        {"---\na: 1\n...\n---\nb: [\n", "{ \"a\": 1 }"},
        {"---\n---\na: 1\n", NULL},
        {"a: 1\n", "{ \"a\": 1 }"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_object *o = NULL;
        char err[256];
        if (gm_yaml_parse_first(cases[i].text, strlen(cases[i].text), &o, err,
                                sizeof(err)) != 0)
            fail_msg("case %zu: %s", i, err);
        if (cases[i].json == NULL)
            assert_null(o);
        else
            assert_string_equal(json_object_to_json_string(o), cases[i].json);
        json_object_put(o);
    }
    /* The first document's own errors still count. */
    json_object *o = NULL;
    char err[256];
    assert_int_equal(
        gm_yaml_parse_first("a: b: c\n---\n", 12, &o, err, sizeof(err)),
        -EINVAL);
    assert_null(o);
}

static void test_empty_and_missing_file(void **state)
{
    (void)state;
    json_object *o = (json_object *)1;
    char err[256];
    assert_int_equal(gm_yaml_parse("", 0, &o, err, sizeof(err)), 0);
    assert_null(o);
    assert_int_equal(
        gm_yaml_parse_file("/nonexistent/x.yaml", &o, err, sizeof(err)),
        -ENOENT);
    assert_non_null(strstr(err, "/nonexistent/x.yaml"));
}

/* "-" reads standard input, as kubectl's -f - does; errors say stdin. */
static void test_file_dash_is_stdin(void **state)
{
    (void)state;
    char path[] = "/tmp/gm-yaml-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char text[] = "---\nkind: GPUModePolicy\nspec: {mode: [\n";
    assert_int_equal(write(fd, text, sizeof(text) - 1), sizeof(text) - 1);
    close(fd);
    assert_non_null(freopen(path, "r", stdin));
    json_object *o = NULL;
    char err[256];
    assert_int_equal(gm_yaml_parse_file("-", &o, err, sizeof(err)), -EINVAL);
    assert_null(o);
    assert_true(strncmp(err, "stdin: ", 7) == 0);

    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("kind: GPUModePolicy\n---\n", f);
    fclose(f);
    assert_non_null(freopen(path, "r", stdin));
    assert_int_equal(gm_yaml_parse_file("-", &o, err, sizeof(err)), 0);
    assert_string_equal(
        json_object_get_string(json_object_object_get(o, "kind")),
        "GPUModePolicy");
    json_object_put(o);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_types),
        cmocka_unit_test(test_nesting_and_flow),
        cmocka_unit_test(test_anchors),
        cmocka_unit_test(test_alias_cycles_and_bombs),
        cmocka_unit_test(test_json_is_yaml),
        cmocka_unit_test(test_errors_name_the_position),
        cmocka_unit_test(test_empty_documents_skipped),
        cmocka_unit_test(test_first_document_only),
        cmocka_unit_test(test_empty_and_missing_file),
        cmocka_unit_test(test_file_dash_is_stdin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
