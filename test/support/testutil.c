#include "testutil.h"

#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/log.h"

char *tu_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    if (fread(p, 1, (size_t)n, f) != (size_t)n)
        fail_msg("cannot read %s", path);
    fclose(f);
    p[n] = '\0';
    if (len)
        *len = (size_t)n;
    return p;
}

int tu_under_valgrind(void)
{
    return getenv("GM_VALGRIND") != NULL;
}

void tu_kubeconfig(const char *server, const char *user, char *path)
{
    char dir[] = "/tmp/gm-kubeconfig-XXXXXX";
    if (mkdtemp(dir) == NULL)
        fail_msg("mkdtemp: %s", strerror(errno));
    snprintf(path, PATH_MAX, "%s/config", dir);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        fail_msg("cannot write %s", path);
    fprintf(f,
            "current-context: c\n"
            "clusters: [{name: c, cluster: {server: '%s'}}]\n"
            "users: [{name: u, user: %s}]\n"
            "contexts: [{name: c, context: {cluster: c, user: u}}]\n",
            server, user);
    fclose(f);
}

void tu_kubeconfig_remove(const char *path)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    unlink(path);
    if (slash) {
        *slash = '\0';
        rmdir(dir);
    }
}

void tu_log_begin(struct tu_log *c, int level)
{
    c->file = tmpfile();
    assert_non_null(c->file);
    fflush(stderr);
    c->saved = dup(2);
    assert_true(c->saved >= 0);
    assert_int_equal(dup2(fileno(c->file), 2), 2);
    gm_log_setup(level, 0);
}

long tu_log_pos(struct tu_log *c)
{
    fflush(stderr);
    return ftell(c->file);
}

void tu_log_end(struct tu_log *c, char *text, size_t cap)
{
    fflush(stderr);
    dup2(c->saved, 2);
    close(c->saved);
    gm_log_setup(GM_LOG_ERROR, 0);
    rewind(c->file);
    size_t n = fread(text, 1, cap - 1, c->file);
    text[n] = '\0';
    fclose(c->file);
    c->file = NULL;
}
