#include "common/map.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static unsigned fnv1a(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h;
}

void gm_map_init(struct gm_map *m)
{
    m->buckets = NULL;
    m->n_buckets = 0;
    m->len = 0;
}

static int grow(struct gm_map *m)
{
    size_t n = m->n_buckets ? m->n_buckets * 2 : 16;
    struct gm_map_entry **b = calloc(n, sizeof(*b));
    if (b == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < m->n_buckets; i++) {
        struct gm_map_entry *e = m->buckets[i];
        while (e) {
            struct gm_map_entry *next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->n_buckets = n;
    return 0;
}

static struct gm_map_entry **find(const struct gm_map *m, const char *key,
                                  unsigned h)
{
    if (m->n_buckets == 0)
        return NULL;
    struct gm_map_entry **pp = &m->buckets[h & (m->n_buckets - 1)];
    while (*pp) {
        if ((*pp)->hash == h && strcmp((*pp)->key, key) == 0)
            return pp;
        pp = &(*pp)->next;
    }
    return pp;
}

int gm_map_put(struct gm_map *m, const char *key, void *value, void **old)
{
    unsigned h = fnv1a(key);
    struct gm_map_entry **pp = find(m, key, h);

    if (old)
        *old = NULL;
    if (pp && *pp) {
        if (old)
            *old = (*pp)->value;
        (*pp)->value = value;
        return 0;
    }
    if (m->len + 1 > m->n_buckets) {
        int err = grow(m);
        if (err)
            return err;
    }
    struct gm_map_entry *e = malloc(sizeof(*e));
    if (e == NULL)
        return -ENOMEM;
    e->key = strdup(key);
    if (e->key == NULL) {
        free(e);
        return -ENOMEM;
    }
    e->value = value;
    e->hash = h;
    size_t i = h & (m->n_buckets - 1);
    e->next = m->buckets[i];
    m->buckets[i] = e;
    m->len++;
    return 0;
}

void *gm_map_get(const struct gm_map *m, const char *key)
{
    struct gm_map_entry **pp = find(m, key, fnv1a(key));
    return pp && *pp ? (*pp)->value : NULL;
}

struct gm_map_entry *gm_map_entry_of(const struct gm_map *m, const char *key)
{
    struct gm_map_entry **pp = find(m, key, fnv1a(key));
    return pp ? *pp : NULL;
}

void *gm_map_del(struct gm_map *m, const char *key)
{
    struct gm_map_entry **pp = find(m, key, fnv1a(key));
    if (pp == NULL || *pp == NULL)
        return NULL;
    struct gm_map_entry *e = *pp;
    void *v = e->value;
    *pp = e->next;
    free(e->key);
    free(e);
    m->len--;
    return v;
}

void gm_map_free(struct gm_map *m)
{
    for (size_t i = 0; i < m->n_buckets; i++) {
        struct gm_map_entry *e = m->buckets[i];
        while (e) {
            struct gm_map_entry *next = e->next;
            free(e->key);
            free(e);
            e = next;
        }
    }
    free(m->buckets);
    gm_map_init(m);
}

struct gm_map_entry *gm_map_first(const struct gm_map *m)
{
    for (size_t i = 0; i < m->n_buckets; i++)
        if (m->buckets[i])
            return m->buckets[i];
    return NULL;
}

struct gm_map_entry *gm_map_next(const struct gm_map *m,
                                 const struct gm_map_entry *e)
{
    if (e->next)
        return e->next;
    for (size_t i = (e->hash & (m->n_buckets - 1)) + 1; i < m->n_buckets; i++)
        if (m->buckets[i])
            return m->buckets[i];
    return NULL;
}
