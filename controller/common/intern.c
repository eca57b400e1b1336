#include "common/intern.h"

#include <stdint.h>
#include <string.h>

#include "common/map.h"

/* Process-wide: the controller is single-threaded by design. The value of
 * each entry is its reference count. */
static struct gm_map g_table;
static size_t g_bytes;

const char *gm_intern(const char *s)
{
    struct gm_map_entry *e = gm_map_entry_of(&g_table, s);
    if (e) {
        e->value = (void *)((uintptr_t)e->value + 1);
        return e->key;
    }
    if (gm_map_put(&g_table, s, (void *)(uintptr_t)1, NULL) != 0)
        return NULL;
    g_bytes += strlen(s) + 1;
    return gm_map_entry_of(&g_table, s)->key;
}

void gm_intern_release(const char *s)
{
    if (s == NULL)
        return;
    struct gm_map_entry *e = gm_map_entry_of(&g_table, s);
    if (e == NULL)
        return;
    uintptr_t refs = (uintptr_t)e->value - 1;
    if (refs > 0) {
        e->value = (void *)refs;
        return;
    }
    g_bytes -= strlen(s) + 1;
    gm_map_del(&g_table, s);
    if (g_table.len == 0)
        gm_map_free(&g_table);
}

size_t gm_intern_count(void)
{
    return g_table.len;
}

size_t gm_intern_bytes(void)
{
    return g_bytes;
}
