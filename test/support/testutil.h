/* Small helpers shared by the unit tests. */
#ifndef GM_TEST_UTIL_H
#define GM_TEST_UTIL_H

#include <stddef.h>
#include <stdio.h>

/* Reads a whole file (NUL-terminated, caller frees) or fails the test. */
char *tu_read_file(const char *path, size_t *len);
/* Under valgrind, exhaustive loops take a stride instead of every step. */
int tu_under_valgrind(void);
/* Writes a kubeconfig of one context, for server and the user given as a
 * YAML flow mapping ("{token: t}"), into a new temporary directory; path
 * (PATH_MAX) receives the file's path. tu_kubeconfig_remove removes both. */
void tu_kubeconfig(const char *server, const char *user, char *path);
void tu_kubeconfig_remove(const char *path);

/* Captures what the code under test logs: tu_log_begin sends stderr to a
 * temporary file and sets the log to level; tu_log_end puts stderr back,
 * the log at error level (the tests' default), and copies what was written
 * into text (cap bytes, NUL-terminated). */
struct tu_log {
    FILE *file; /* owned until tu_log_end */
    int saved;  /* the real stderr, dup'ed */
};
void tu_log_begin(struct tu_log *c, int level);
/* Bytes written so far, to tell which lines came before a point. */
long tu_log_pos(struct tu_log *c);
void tu_log_end(struct tu_log *c, char *text, size_t cap);

#endif
