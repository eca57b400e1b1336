/* String label selectors as kubectl takes them: "a=b,c!=d,e,!f,
 * g in (x,y),h notin (z)". Parsed once, matched many times. */
#ifndef GM_STRSEL_H
#define GM_STRSEL_H

#include <stddef.h>

struct gm_strsel;

/* "" or NULL parses to a selector that matches everything. On a syntax
 * error returns -EINVAL with a message naming the term. *out is the
 * caller's (gm_strsel_free). */
int gm_strsel_parse(const char *s, struct gm_strsel **out, char *err,
                    size_t err_len);
/* lookup returns the value of a label of obj, or NULL when absent. */
int gm_strsel_match(const struct gm_strsel *sel,
                    const char *(*lookup)(const void *obj, const char *key),
                    const void *obj);
int gm_strsel_empty(const struct gm_strsel *sel);
void gm_strsel_free(struct gm_strsel *sel);

#endif
