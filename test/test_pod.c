/* Decoding pods: fields of the wrong type are ignored, not followed. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_labels_of_the_wrong_type),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
