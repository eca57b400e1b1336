/* List, then watch, keeping a cache of compact objects current: the
 * client-go reflector + informer in one. Watches resume from the last
 * resourceVersion (bookmarks advance it), relist on 410 Gone, back off 0.8 s
 * doubling to 30 s with jitter on errors, and after a relist report the
 * differences against the cache, deletes included. */
#ifndef GM_KUBE_REFLECTOR_H
#define GM_KUBE_REFLECTOR_H

#include <json-c/json.h>
#include <uv.h>

#include "common/map.h"
#include "kube/client.h"

struct gm_reflector_ops {
    /* The cached form of obj (caller-defined), or NULL to leave it out. */
    void *(*decode)(void *ud, json_object *obj);
    void (*free_obj)(void *ud, void *cached);
    /* metadata.resourceVersion of a cached object. */
    const char *(*resource_version)(const void *cached);
    /* May be NULL. obj, just decoded, replaces old (same key) in the
     * cache: carry over what only the cache's owner knows (e.g. since
     * when a value has been what it is). Runs before on_update. */
    void (*carry)(void *ud, const void *old, void *obj);
    /* Events; any may be NULL. Objects are the reflector's: old (update)
     * and obj (delete) are freed when the callback returns. */
    void (*on_add)(void *ud, const char *key, const void *obj);
    void (*on_update)(void *ud, const char *key, const void *old,
                      const void *obj);
    void (*on_delete)(void *ud, const char *key, const void *obj);
    /* After each completed list (first sync and every relist). */
    void (*on_synced)(void *ud);
    /* After each failed list (stats say why; list_refused for 401/403);
     * may be NULL. */
    void (*on_list_failed)(void *ud);
};

struct gm_reflector_opts {
    const char *path;           /* e.g. "/api/v1/nodes"; copied */
    const char *label_selector; /* copied; NULL for none */
    const char *field_selector; /* copied; NULL for none */
    long page_size;             /* default 500 */
    long min_watch_s;           /* default 300 */
    long max_watch_s;           /* default 600 */
    long backoff_min_ms;        /* default 800 */
    long backoff_max_ms;        /* default 30000 */
};

struct gm_reflector_stats {
    unsigned long lists;
    unsigned long watches;
    unsigned long events;
    unsigned long bookmarks;
    unsigned long gone; /* 410s that forced a relist */
    unsigned long errors;
    long list_refused; /* 401 or 403 of the last failed list, else 0 */
    /* The last list or watch failed and nothing came since (a list, an
     * event, a watch the server ended): the cache may be stale. */
    int failing;
    const char *last_error; /* why, while failing (the reflector's) */
};

struct gm_reflector;

/* k must outlive the reflector. ops and ud are borrowed. */
int gm_reflector_start(struct gm_kube *k, uv_loop_t *loop,
                       const struct gm_reflector_opts *opts,
                       const struct gm_reflector_ops *ops, void *ud,
                       struct gm_reflector **out);

/* Cached object by key ("name" or "namespace/name"), or NULL. */
const void *gm_reflector_get(const struct gm_reflector *r, const char *key);
/* The cache; values are cached objects. Do not modify. */
const struct gm_map *gm_reflector_items(const struct gm_reflector *r);
int gm_reflector_has_synced(const struct gm_reflector *r);
const char *gm_reflector_resource_version(const struct gm_reflector *r);
void gm_reflector_get_stats(const struct gm_reflector *r,
                            struct gm_reflector_stats *out);

/* Stops and frees; no callback but free_obj runs afterwards. May be called
 * from on_add, on_update, on_delete, on_synced and on_list_failed (a
 * handler that learns its cache is no longer wanted), not from decode or
 * carry; the cache is then freed once the handler has returned, through
 * free_obj, so ops and ud must stay valid until then. Memory tied to a
 * request in flight is released when that request ends. */
void gm_reflector_free(struct gm_reflector *r);

#endif
