/* Small helpers shared by the unit tests. */
#ifndef GM_TEST_UTIL_H
#define GM_TEST_UTIL_H

#include <stddef.h>

/* Reads a whole file (NUL-terminated, caller frees) or fails the test. */
char *tu_read_file(const char *path, size_t *len);
/* Under valgrind, exhaustive loops take a stride instead of every step. */
int tu_under_valgrind(void);

#endif
