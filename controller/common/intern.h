/* Interned strings: one shared, reference-counted copy of each distinct
 * string. Label keys, label values and resource names repeat across
 * thousands of nodes; interning them is most of the node cache's economy. */
#ifndef GM_INTERN_H
#define GM_INTERN_H

#include <stddef.h>

/* Returns the shared copy (a reference the caller releases), or NULL on
 * allocation failure. */
const char *gm_intern(const char *s);
void gm_intern_release(const char *s);
/* Distinct strings held and their bytes, for the memory benchmark. */
size_t gm_intern_count(void);
size_t gm_intern_bytes(void);

#endif
