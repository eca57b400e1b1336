/* A string-keyed hash map (chained, FNV-1a, doubling). Keys are copied;
 * values are borrowed pointers the caller owns. */
#ifndef GM_MAP_H
#define GM_MAP_H

#include <stddef.h>

struct gm_map_entry {
    char *key; /* owned by the map */
    void *value;
    struct gm_map_entry *next;
    unsigned hash;
};

struct gm_map {
    struct gm_map_entry **buckets; /* owned */
    size_t n_buckets;
    size_t len;
};

void gm_map_init(struct gm_map *m);
/* Sets key to value; *old receives the value replaced (or NULL). Returns 0
 * or -ENOMEM. */
int gm_map_put(struct gm_map *m, const char *key, void *value, void **old);
void *gm_map_get(const struct gm_map *m, const char *key);
/* The entry holding key (its key pointer is stable until deleted), or NULL. */
struct gm_map_entry *gm_map_entry_of(const struct gm_map *m, const char *key);
/* Removes key and returns its value, or NULL. */
void *gm_map_del(struct gm_map *m, const char *key);
/* Frees the map's own memory; values are the caller's. */
void gm_map_free(struct gm_map *m);

/* Iteration: for (it = gm_map_first(m); it; it = gm_map_next(m, it)). Do
 * not put or delete while iterating. */
struct gm_map_entry *gm_map_first(const struct gm_map *m);
struct gm_map_entry *gm_map_next(const struct gm_map *m,
                                 const struct gm_map_entry *e);

#endif
