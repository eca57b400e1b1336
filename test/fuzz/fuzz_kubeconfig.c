/* gm_kubeconfig_load on fuzzed files. The input is one kubeconfig, or two
 * separated by a "\n---\n" line, loaded as "first:second" the way KUBECONFIG
 * merges them. A first line "#context=<name>" selects a context instead of
 * current-context. The files are memfds, created once and rewritten. */
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "kube/config.h"

static int fds[2] = {-1, -1};
static char paths[2][64];

static void put(int i, const uint8_t *p, size_t n)
{
    if (fds[i] < 0) {
        fds[i] = memfd_create("kubeconfig", 0);
        if (fds[i] < 0)
            abort();
        snprintf(paths[i], sizeof(paths[i]), "/proc/self/fd/%d", fds[i]);
    }
    if (ftruncate(fds[i], 0) != 0 || pwrite(fds[i], p, n, 0) != (ssize_t)n)
        abort();
}

static const uint8_t *find(const uint8_t *p, size_t n, const char *lit)
{
    size_t k = strlen(lit);

    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(p + i, lit, k) == 0)
            return p + i;
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gm_kube_config *c = NULL;
    char *err = NULL;
    char *context = NULL;
    char both[160];
    const char *sep = "\n---\n";
    const uint8_t *cut = find(data, size, sep);

    if (size > 9 && memcmp(data, "#context=", 9) == 0) {
        const uint8_t *nl = memchr(data, '\n', size);
        size_t end = nl ? (size_t)(nl - data) : size;
        context = gmf_cstr(data + 9, end - 9);
    }
    if (cut == NULL) {
        put(0, data, size);
        snprintf(both, sizeof(both), "%s", paths[0]);
    } else {
        size_t first = (size_t)(cut - data);
        size_t skip = first + strlen(sep);
        put(0, data, first);
        put(1, data + skip, size - skip);
        snprintf(both, sizeof(both), "%s:%s", paths[0], paths[1]);
    }
    int rc = gm_kubeconfig_load(both, context, &c, &err);
    if (rc == 0) {
        gmf_assert(c != NULL && err == NULL);
        gmf_assert(c->server != NULL && c->namespace != NULL);
        gm_kube_config_free(c);
    } else {
        gmf_assert(rc < 0 && c == NULL);
        /* Every error names the file and field. */
        gmf_assert(err != NULL);
        free(err);
    }
    free(context);
    return 0;
}
