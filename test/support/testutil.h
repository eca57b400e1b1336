/* Small helpers shared by the unit tests. */
#ifndef GM_TEST_UTIL_H
#define GM_TEST_UTIL_H

#include <stddef.h>

/* Reads a whole file (NUL-terminated, caller frees) or fails the test. */
char *tu_read_file(const char *path, size_t *len);
/* Under valgrind, exhaustive loops take a stride instead of every step. */
int tu_under_valgrind(void);
/* Writes a kubeconfig of one context, for server and the user given as a
 * YAML flow mapping ("{token: t}"), into a new temporary directory; path
 * (PATH_MAX) receives the file's path. tu_kubeconfig_remove removes both. */
void tu_kubeconfig(const char *server, const char *user, char *path);
void tu_kubeconfig_remove(const char *path);

#endif
