/* YAML to json-c: any input must give a tree or an error, never a crash,
 * a leak, or a tree that cannot be printed. */
#include <errno.h>

#include "common/yaml.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_object *o = NULL;
    char err[256];
    char *text = gmf_cstr(data, size);

    int rc = gm_yaml_parse(text, size, &o, err, sizeof(err));
    if (rc == 0) {
        const char *s =
            json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        gmf_assert(s != NULL);
        json_object_put(o);
    } else {
        gmf_assert(rc == -EINVAL || rc == -ENOMEM);
        gmf_assert(o == NULL && memchr(err, '\0', sizeof(err)) != NULL);
    }
    free(text);
    return 0;
}
