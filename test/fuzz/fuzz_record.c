/* The gpumode.io/switch annotation: parse, format, parse again. What the
 * controller writes it must read back unchanged, so formatting a parsed
 * record is a fixed point. */
#include <errno.h>

#include "fuzz.h"
#include "nodeswitch/record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gm_switch_record r;
    struct gm_switch_record again;
    char err[256];
    char *text = gmf_cstr(data, size);

    int rc = gm_record_parse(text, &r, err, sizeof(err));
    free(text);
    if (rc != 0) {
        /* -EINVAL, or -E2BIG for more labels than a record keeps. */
        gmf_assert(rc == -EINVAL || rc == -E2BIG || rc == -ENOMEM);
        return 0;
    }
    (void)gm_record_saved(&r, "nvidia.com/mig.config");
    char *first = gm_record_format(&r);
    gmf_assert(first != NULL);
    gmf_assert(gm_record_parse(first, &again, err, sizeof(err)) == 0);
    char *second = gm_record_format(&again);
    gmf_assert(second != NULL && strcmp(first, second) == 0);
    free(first);
    free(second);
    gm_record_clear(&again);
    gm_record_clear(&r);
    return 0;
}
