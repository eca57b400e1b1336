/* The mig-parted config parser, then every layout it found resolved for a
 * few GPU products (known, aliased, unknown, absent) and GPU counts. */
#include <stdio.h>

#include "fuzz.h"
#include "planner/layout.h"

static const char *const products[] = {
    "NVIDIA-A100-SXM4-40GB",
    "NVIDIA-H100-80GB-HBM3",
    "nvidia a100 80gb pcie-SHARED",
    "Tesla-T4",
    NULL,
};
static const int counts[] = {8, 0, 1};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gm_migparted *m = NULL;
    char err[256];
    char *yaml = gmf_cstr(data, size);

    int rc = gm_migparted_parse(yaml, size, "ConfigMap fuzz/layouts", &m, err,
                                sizeof(err));
    if (rc != 0) {
        gmf_assert(m == NULL);
        gmf_assert(memchr(err, '\0', sizeof(err)) != NULL);
        free(yaml);
        return 0;
    }
    for (size_t i = 0; i < m->n; i++) {
        gmf_assert(gm_migparted_find(m, m->names[i]) != NULL);
        for (size_t p = 0; p < sizeof(products) / sizeof(*products); p++) {
            int c = counts[(i + p) % (sizeof(counts) / sizeof(*counts))];
            char *json = NULL;
            char what[128];
            snprintf(what, sizeof(what), "layout \"%s\"", m->names[i]);
            rc =
                gm_layout_resolve(&m->layouts[i], what, products[p],
                                  (i + p) % 2 == 0, c, &json, err, sizeof(err));
            if (rc == 0) {
                gmf_assert(json != NULL);
                free(json);
            }
        }
    }
    gm_migparted_free(m);
    free(yaml);
    return 0;
}
