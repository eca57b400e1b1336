/* String label selectors: parse, then match against a few label sets. An
 * empty selector must match everything. */
#include <errno.h>

#include "common/strsel.h"
#include "fuzz.h"

/* Objects are NULL-terminated arrays of "key", "value" pairs. */
static const char *const none[] = {NULL};
static const char *const gpu_pod[] = {
    "app",  "cuda",  "tier", "gold", "nvidia.com/gpu.present",
    "true", "empty", "",     NULL};
static const char *const other_pod[] = {"app", "web", "role", "x", NULL};
static const char *const *const objects[] = {none, gpu_pod, other_pod};

static const char *lookup(const void *obj, const char *key)
{
    const char *const *kv = obj;
    for (; kv[0] != NULL; kv += 2)
        if (strcmp(kv[0], key) == 0)
            return kv[1];
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gm_strsel *sel = NULL;
    char err[256];
    char *text = gmf_cstr(data, size);

    int rc = gm_strsel_parse(text, &sel, err, sizeof(err));
    free(text);
    if (rc != 0) {
        gmf_assert(rc == -EINVAL || rc == -ENOMEM);
        return 0;
    }
    int empty = gm_strsel_empty(sel);
    for (size_t i = 0; i < sizeof(objects) / sizeof(*objects); i++) {
        int m = gm_strsel_match(sel, lookup, objects[i]);
        gmf_assert(!empty || m);
    }
    gm_strsel_free(sel);
    return 0;
}
