/* NULL-safe lookups in json-c trees: a missing key, a NULL or a value of
 * another type anywhere along a path gives NULL, so paths chain without
 * checks in between: gm_json_str(gm_json_get(obj, "metadata"), "name"). */
#ifndef GM_COMMON_JSON_H
#define GM_COMMON_JSON_H

#include <json-c/json.h>
#include <stddef.h>

/* The member key of object o (borrowed), or NULL. */
json_object *gm_json_get(json_object *o, const char *key);
/* The member key of o when it is a string (borrowed), or NULL. */
const char *gm_json_str(json_object *o, const char *key);
/* How many elements o has when it is an array, else 0. */
size_t gm_json_len(json_object *o);

/* How much of s to send in a field of at most max bytes: cut on a UTF-8
 * character boundary, and without a character a caller's own buffer cut
 * short at its end. The API server reads each byte of a broken sequence
 * as U+FFFD (three bytes, one character), which can take the field past
 * its bound and the whole write with it. */
size_t gm_json_utf8_len(const char *s, size_t max);

#endif
