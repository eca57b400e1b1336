#include "common/json.h"

#include <string.h>

json_object *gm_json_get(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (o && json_object_is_type(o, json_type_object) &&
        json_object_object_get_ex(o, key, &v))
        return v;
    return NULL;
}

const char *gm_json_str(json_object *o, const char *key)
{
    json_object *v = gm_json_get(o, key);
    return v && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v)
               : NULL;
}

size_t gm_json_len(json_object *o)
{
    return json_object_is_type(o, json_type_array) ? json_object_array_length(o)
                                                   : 0;
}

size_t gm_json_utf8_len(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    /* The last character's lead byte, at most three continuation bytes
     * back. */
    size_t lead = n;
    while (lead > 0 && n - lead < 3 &&
           ((unsigned char)s[lead - 1] & 0xC0) == 0x80)
        lead--;
    if (lead == 0)
        return n;
    unsigned char c = (unsigned char)s[lead - 1];
    size_t want = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    return n - (lead - 1) < want ? lead - 1 : n;
}
