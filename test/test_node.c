/* The compact node: what is kept from a real Node payload, label lookup,
 * GPU allocatable, and the memory each cached node costs. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/intern.h"
#include "common/json.h"
#include "kube/node.h"
#include "support/testutil.h"

static json_object *load_node(void)
{
    char *text = tu_read_file("test/fixtures/nodes/gpu-node.json", NULL);
    json_object *o = json_tokener_parse(text);
    free(text);
    assert_non_null(o);
    return o;
}

static void test_decodes_what_the_controller_reads(void **state)
{
    (void)state;
    json_object *o = load_node();
    struct gm_node *n;

    assert_int_equal(gm_node_from_json(o, &n), 0);
    assert_string_equal(n->name, "gpu-a100-07");
    assert_string_equal(n->resource_version, "918273");
    assert_true(n->ready);
    assert_false(n->unschedulable);
    assert_string_equal(n->boot_id, "0c9b3d63-2b0b-4b1e-8a36-8f0b1f9f3f11");
    assert_string_equal(n->ann_boot_id, n->boot_id);
    assert_null(n->ann_switch);
    assert_string_equal(gm_node_label(n, "nvidia.com/gpu.product"),
                        "NVIDIA-A100-SXM4-40GB");
    assert_string_equal(gm_node_label(n, "pool"), "inference");
    assert_string_equal(gm_node_label(n, "beta.kubernetes.io/arch"), "amd64");
    assert_null(gm_node_label(n, "missing"));
    /* Only GPU resources are kept. */
    assert_int_equal(n->n_allocatable, 1);
    assert_int_equal(gm_node_allocatable(n, "nvidia.com/gpu"), 8);
    assert_int_equal(gm_node_allocatable(n, "cpu"), -1);
    assert_int_equal(n->n_taints, 1);
    assert_string_equal(n->taints[0].effect, "NoSchedule");
    gm_node_free(n);
    json_object_put(o);
    assert_int_equal(gm_intern_count(), 0);
}

/* gpumode.io/settings repeats on every node of a pool: one shared copy. */
static void test_settings_annotation_is_shared(void **state)
{
    (void)state;
#define SETTINGS_NODE(name)                                                    \
    "{\"metadata\":{\"name\":\"" name "\",\"annotations\":"                    \
    "{\"gpumode.io/settings\":\"{\\\"splitCount\\\":4}\","                     \
    "\"gpumode.io/resources\":\"nvidia.com/vgpu=32\"}},"                       \
    "\"status\":{\"allocatable\":{\"nvidia.com/vgpu\":\"32\"}}}"
    struct gm_node *a, *b, *c;

    json_object *oa = json_tokener_parse(SETTINGS_NODE("a"));
    json_object *ob = json_tokener_parse(SETTINGS_NODE("b"));
    json_object *oc = json_tokener_parse("{\"metadata\":{\"name\":\"c\"}}");
    assert_int_equal(gm_node_from_json(oa, &a), 0);
    assert_int_equal(gm_node_from_json(ob, &b), 0);
    assert_int_equal(gm_node_from_json(oc, &c), 0);
    assert_string_equal(a->ann_settings, "{\"splitCount\":4}");
    assert_ptr_equal(a->ann_settings, b->ann_settings);
    assert_null(c->ann_settings);
    /* So is gpumode.io/resources; and two nodes offering the same count
     * of the same resource offer the same. */
    assert_string_equal(a->ann_resources, "nvidia.com/vgpu=32");
    assert_ptr_equal(a->ann_resources, b->ann_resources);
    assert_null(c->ann_resources);
    assert_true(gm_node_same_allocatable(a, b));
    assert_false(gm_node_same_allocatable(a, c));
    b->allocatable[0].value = 31;
    assert_false(gm_node_same_allocatable(a, b));
    gm_node_free(a);
    gm_node_free(b);
    gm_node_free(c);
    json_object_put(oa);
    json_object_put(ob);
    json_object_put(oc);
    assert_int_equal(gm_intern_count(), 0);
}

/* gpumode.io/gpus: a count, or nothing recorded (0) for anything else. */
static void test_gpus_annotation(void **state)
{
    (void)state;
    static const struct {
        const char *value;
        int want;
    } cases[] = {{"8", 8},  {"1", 1}, {"0", 0},    {"-2", 0},
                 {"8x", 0}, {"", 0},  {"1024", 0}, {NULL, 0}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        json_object *o = json_tokener_parse("{\"metadata\":{\"name\":\"a\","
                                            "\"annotations\":{}}}");
        if (cases[i].value)
            json_object_object_add(
                gm_json_get(gm_json_get(o, "metadata"), "annotations"),
                "gpumode.io/gpus", json_object_new_string(cases[i].value));
        struct gm_node *n;
        assert_int_equal(gm_node_from_json(o, &n), 0);
        assert_int_equal(n->ann_gpus, cases[i].want);
        gm_node_free(n);
        json_object_put(o);
    }
}

/* A label is one interned "key=value": the same label on two nodes is one
 * pointer, lookups order by the key alone ("a" before "a.b", although '.'
 * sorts before '='), and a value may itself hold '=' or be long. */
static void test_labels_are_shared_pairs(void **state)
{
    (void)state;
    char big[700];
    memset(big, 'v', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    json_object *labels = json_object_new_object();
    json_object_object_add(labels, "a.b", json_object_new_string("2"));
    json_object_object_add(labels, "a", json_object_new_string("1"));
    json_object_object_add(labels, "a-c", json_object_new_string("x=y"));
    json_object_object_add(labels, "big", json_object_new_string(big));
    json_object_object_add(labels, "empty", json_object_new_string(""));
    json_object *meta = json_object_new_object();
    json_object_object_add(meta, "name", json_object_new_string("n1"));
    json_object_object_add(meta, "labels", labels);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "metadata", meta);
    struct gm_node *n1, *n2;

    assert_int_equal(gm_node_from_json(o, &n1), 0);
    json_object_object_add(meta, "name", json_object_new_string("n2"));
    assert_int_equal(gm_node_from_json(o, &n2), 0);
    assert_int_equal(n1->n_labels, 5);
    assert_string_equal(n1->labels[0].kv, "a=1");
    assert_string_equal(n1->labels[1].kv, "a-c=x=y");
    assert_string_equal(n1->labels[2].kv, "a.b=2");
    assert_string_equal(gm_node_label(n1, "a"), "1");
    assert_string_equal(gm_node_label(n1, "a.b"), "2");
    assert_string_equal(gm_node_label(n1, "a-c"), "x=y");
    assert_string_equal(gm_node_label(n1, "big"), big);
    assert_string_equal(gm_node_label(n1, "empty"), "");
    assert_null(gm_node_label(n1, "a.b.c"));
    assert_null(gm_node_label(n1, ""));
    /* A looked-up key keeps its '=': "a=1" is not the key "a". */
    assert_null(gm_node_label(n1, "a=1"));
    assert_null(gm_node_label(n1, "a="));
    for (size_t i = 0; i < n1->n_labels; i++)
        assert_ptr_equal(n1->labels[i].kv, n2->labels[i].kv);
    /* Five distinct labels (node names are not interned). */
    assert_int_equal(gm_intern_count(), 5);
    gm_node_free(n1);
    gm_node_free(n2);
    json_object_put(o);
    assert_int_equal(gm_intern_count(), 0);
}

static void test_rejects_non_nodes(void **state)
{
    (void)state;
    struct gm_node *n = NULL;
    json_object *pod =
        json_tokener_parse("{\"kind\":\"Pod\",\"metadata\":{\"name\":\"p\"}}");
    json_object *noname = json_tokener_parse("{\"metadata\":{}}");
    assert_int_equal(gm_node_from_json(pod, &n), -EINVAL);
    assert_int_equal(gm_node_from_json(noname, &n), -EINVAL);
    assert_null(n);
    json_object_put(pod);
    json_object_put(noname);
}

/* Found by fuzz_watch: labels or allocatable that are not objects made
 * json_object_object_foreach read through a NULL table. They are ignored
 * now, like missing fields. */
static void test_fields_of_the_wrong_type(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "{\"metadata\":{\"name\":\"n\",\"labels\":\"x\"}}",
        "{\"metadata\":{\"name\":\"n\",\"labels\":[1,2]}}",
        "{\"metadata\":{\"name\":\"n\"},\"status\":{\"allocatable\":7}}",
        "{\"metadata\":{\"name\":\"n\"},\"status\":"
        "{\"allocatable\":[\"nvidia.com/gpu\"]}}",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct gm_node *n = NULL;
        json_object *o = json_tokener_parse(cases[i]);
        assert_non_null(o);
        assert_int_equal(gm_node_from_json(o, &n), 0);
        assert_int_equal(n->n_labels, 0);
        assert_int_equal(n->n_allocatable, 0);
        gm_node_free(n);
        json_object_put(o);
    }
}

static void test_ready_false_and_cordoned(void **state)
{
    (void)state;
    struct gm_node *n;
    json_object *o = json_tokener_parse(
        "{\"metadata\":{\"name\":\"x\",\"annotations\":{\"gpumode.io/"
        "switch\":\"{}\",\"gpumode.io/retry\":\"1\"}},"
        "\"spec\":{\"unschedulable\":true},"
        "\"status\":{\"conditions\":[{\"type\":\"Ready\",\"status\":"
        "\"Unknown\"}],\"allocatable\":{\"nvidia.com/mig-1g.10gb\":\"7\","
        "\"nvidia.com/gpumem\":\"40k\"}}}");
    assert_int_equal(gm_node_from_json(o, &n), 0);
    assert_false(n->ready);
    assert_true(n->unschedulable);
    assert_string_equal(n->ann_switch, "{}");
    assert_string_equal(n->ann_retry, "1");
    assert_int_equal(gm_node_allocatable(n, "nvidia.com/mig-1g.10gb"), 7);
    assert_int_equal(gm_node_allocatable(n, "nvidia.com/gpumem"), 40000);
    gm_node_free(n);
    json_object_put(o);
}

/* 1,000 nodes like the fixture: each costs well under 2 KiB beyond the
 * strings they share. */
static void test_footprint_per_node(void **state)
{
    (void)state;
    json_object *o = load_node();
    json_object *meta;
    enum { N = 1000 };
    struct gm_node **nodes = calloc(N, sizeof(*nodes));
    size_t total = 0;
    char name[32];

    json_object_object_get_ex(o, "metadata", &meta);
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "gpu-%05d", i);
        json_object_object_add(meta, "name", json_object_new_string(name));
        assert_int_equal(gm_node_from_json(o, &nodes[i]), 0);
        total += gm_node_footprint(nodes[i]);
    }
    size_t per_node = (total + gm_intern_bytes()) / N;
    print_message("bytes per cached node: %zu (interned strings: %zu)\n",
                  per_node, gm_intern_count());
    assert_true(per_node < 2048);
    /* Label strings are shared, not copied per node. */
    assert_ptr_equal(gm_node_label(nodes[0], "pool"),
                     gm_node_label(nodes[N - 1], "pool"));
    for (int i = 0; i < N; i++)
        gm_node_free(nodes[i]);
    free(nodes);
    json_object_put(o);
    assert_int_equal(gm_intern_count(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decodes_what_the_controller_reads),
        cmocka_unit_test(test_settings_annotation_is_shared),
        cmocka_unit_test(test_gpus_annotation),
        cmocka_unit_test(test_labels_are_shared_pairs),
        cmocka_unit_test(test_rejects_non_nodes),
        cmocka_unit_test(test_fields_of_the_wrong_type),
        cmocka_unit_test(test_ready_false_and_cordoned),
        cmocka_unit_test(test_footprint_per_node),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
