/* String label selectors as kubectl takes them: "a=b,c!=d,e,!f,
 * g in (x,y),h notin (z)". Parsed once, matched many times. */
#ifndef GM_SELECTOR_H
#define GM_SELECTOR_H

#include <stddef.h>

struct gm_selector;

/* "" or NULL parses to a selector that matches everything. On a syntax
 * error returns -EINVAL with a message naming the term. *out is the
 * caller's (gm_selector_free). */
int gm_selector_parse(const char *s, struct gm_selector **out, char *err,
                      size_t err_len);
/* lookup returns the value of a label of obj, or NULL when absent. */
int gm_selector_match(const struct gm_selector *sel,
                      const char *(*lookup)(const void *obj, const char *key),
                      const void *obj);
int gm_selector_empty(const struct gm_selector *sel);
void gm_selector_free(struct gm_selector *sel);

#endif
