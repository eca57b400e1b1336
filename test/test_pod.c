/* Decoding pods: fields of the wrong type are ignored, not followed; a pod
 * uses GPUs when it asks for them or names them to the NVIDIA runtime. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "kube/pod.h"

/* The same shape fuzz_watch found in node.c: labels that are not an object
 * made json_object_object_foreach read through a NULL table. */
static void test_labels_of_the_wrong_type(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "{\"metadata\":{\"name\":\"p\",\"namespace\":\"d\",\"labels\":\"x\"}}",
        "{\"metadata\":{\"name\":\"p\",\"namespace\":\"d\",\"labels\":[1]}}",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct gm_pod *p = NULL;
        json_object *o = json_tokener_parse(cases[i]);
        assert_non_null(o);
        assert_int_equal(gm_pod_from_json(o, &p), 0);
        assert_int_equal(p->n_labels, 0);
        assert_null(gm_pod_label(p, "app"));
        gm_pod_free(p);
        json_object_put(o);
    }
}

/* creationTimestamp as the API server writes it; absent or malformed: 0. */
static void test_creation_time(void **state)
{
    (void)state;
    static const struct {
        const char *meta;
        long long want;
    } cases[] = {
        {"\"creationTimestamp\":\"2026-11-28T01:02:03Z\"", 1795827723LL},
        {"\"creationTimestamp\":\"yesterday\"", 0},
        {"\"creationTimestamp\":17", 0},
        {"\"uid\":\"u\"", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[256];
        struct gm_pod *p = NULL;
        snprintf(text, sizeof(text),
                 "{\"metadata\":{\"name\":\"p\",\"namespace\":\"d\",%s}}",
                 cases[i].meta);
        json_object *o = json_tokener_parse(text);
        assert_non_null(o);
        assert_int_equal(gm_pod_from_json(o, &p), 0);
        assert_int_equal(p->created, cases[i].want);
        gm_pod_free(p);
        json_object_put(o);
    }
}

static bool uses_gpu(const char *spec)
{
    char text[1024];
    struct gm_pod *p = NULL;
    snprintf(text, sizeof(text),
             "{\"metadata\":{\"name\":\"p\",\"namespace\":\"d\"},"
             "\"spec\":%s}",
             spec);
    json_object *o = json_tokener_parse(text);
    assert_non_null(o);
    assert_int_equal(gm_pod_from_json(o, &p), 0);
    bool out = p->uses_gpu;
    gm_pod_free(p);
    json_object_put(o);
    return out;
}

/* A pod can hold GPUs without a request: NVIDIA_VISIBLE_DEVICES in its
 * spec names them to the NVIDIA container runtime. Such a pod is drained
 * with gpuPodsOnly, or the GPUs stay busy under the switch. */
static void test_gpu_use_without_a_request(void **state)
{
    (void)state;
    assert_true(uses_gpu("{\"containers\":[{\"name\":\"c\",\"resources\":"
                         "{\"limits\":{\"nvidia.com/gpu\":1}}}]}"));
    assert_true(uses_gpu("{\"containers\":[{\"name\":\"c\",\"env\":[{"
                         "\"name\":\"X\",\"value\":\"1\"},{\"name\":"
                         "\"NVIDIA_VISIBLE_DEVICES\",\"value\":\"all\"}]}]}"));
    assert_true(uses_gpu("{\"initContainers\":[{\"name\":\"i\",\"env\":[{"
                         "\"name\":\"NVIDIA_VISIBLE_DEVICES\",\"value\":"
                         "\"0,GPU-fef8089b\"}]}],\"containers\":[{\"name\":"
                         "\"c\"}]}"));
    /* Read from a ConfigMap: cannot be known here, so it counts. */
    assert_true(uses_gpu("{\"containers\":[{\"name\":\"c\",\"env\":[{"
                         "\"name\":\"NVIDIA_VISIBLE_DEVICES\",\"valueFrom\":"
                         "{\"configMapKeyRef\":{\"name\":\"g\",\"key\":"
                         "\"k\"}}}]}]}"));
    /* none, void and empty give no GPU; nor do other resources. */
    static const char *const none[] = {"none", "void", ""};
    for (size_t i = 0; i < 3; i++) {
        char spec[256];
        snprintf(spec, sizeof(spec),
                 "{\"containers\":[{\"name\":\"c\",\"env\":[{\"name\":"
                 "\"NVIDIA_VISIBLE_DEVICES\",\"value\":\"%s\"}]}]}",
                 none[i]);
        /* The last of a name is the one the container gets. */
        assert_false(
            uses_gpu("{\"containers\":[{\"name\":\"c\",\"env\":[{\"name\":"
                     "\"NVIDIA_VISIBLE_DEVICES\",\"value\":\"all\"},{\"name\":"
                     "\"NVIDIA_VISIBLE_DEVICES\",\"value\":\"none\"}]}]}"));
        assert_true(uses_gpu(
            "{\"containers\":[{\"name\":\"c\"}],\"ephemeralContainers\":[{"
            "\"name\":\"d\",\"env\":[{\"name\":\"NVIDIA_VISIBLE_DEVICES\","
            "\"value\":\"0\"}]}]}"));
        assert_false(uses_gpu(spec));
    }
    assert_false(uses_gpu("{\"containers\":[{\"name\":\"c\",\"resources\":"
                          "{\"limits\":{\"cpu\":1}},\"env\":\"x\"}]}"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_labels_of_the_wrong_type),
        cmocka_unit_test(test_creation_time),
        cmocka_unit_test(test_gpu_use_without_a_request),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
