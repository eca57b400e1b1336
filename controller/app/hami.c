#include "app/hami.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/json.h"
#include "common/log.h"

/* How long a stale cache is waited for before it is trusted again. */
#define AWAIT_MS 2000
#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 30000

struct want {
    json_object *entry; /* owned; NULL: no entry for the node */
    bool prune;         /* the node was deleted (gm_hami_prune) */
};

struct gm_hami {
    struct gm_ctl *ctl;  /* borrowed; NULL once freed with a write out */
    struct gm_map wants; /* node -> struct want* (owned): not yet cached */
    bool sending;        /* a PATCH is in flight; its answer uses us */
    char sent_rv[32];    /* the resourceVersion it was sent against */
    /* A cached resourceVersion known to be old: a write was answered
     * against it (our own newer one, or a 409 for someone else's). A write
     * sent against it would only meet a 409, so none is sent until the
     * cache moves on, or AWAIT_MS passed (a relist may skip a version). */
    char stale_rv[32];
    uint64_t stale_since; /* loop ms */
    uint64_t retry_at;    /* after a failed write: no write before */
    uint64_t backoff_ms;
    char error[600]; /* why the last write failed, or "" */
    bool marks_full; /* GM_HAMI_MARKS left nodes out (logged once) */
    /* GM_HAMI_MARKS is to be checked, and written if it is not what the
     * entries say, with no entry to write (gm_hami_sweep) */
    bool remark;
    /* A write that changed GM_HAMI_MARKS was refused (not a 409): an
     * admission policy, the annotations' size limit. Entries go without
     * the marks, which the next sweep tries again, so vgpu switches are
     * not held for them. */
    bool marks_refused;
    bool sent_entries; /* the write in flight has entries */
    bool sent_marks;   /* ... changes GM_HAMI_MARKS */
    bool bad_config;   /* error says the cached config does not parse */
    /* Flushes again when a wait above ends: a deleted node's want has no
     * switch of its own to ask again. */
    uv_timer_t timer;
    bool timer_closed; /* gm_hami_free closed it */
    /* node -> struct check* (owned by its list): marked nodes not in the
     * cache, asked of the API server before their keys go (gm_hami_sweep) */
    struct gm_map checks;
};

/* A list of a marked node, by name, in flight. */
struct check {
    struct gm_hami *h; /* borrowed */
    char node[256];
};

static void want_free(struct want *w)
{
    if (w == NULL)
        return;
    json_object_put(w->entry);
    free(w);
}

int gm_hami_new(struct gm_ctl *ctl, struct gm_hami **out)
{
    struct gm_hami *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return -ENOMEM;
    h->ctl = ctl;
    gm_map_init(&h->wants);
    gm_map_init(&h->checks);
    uv_timer_init(ctl->loop, &h->timer);
    h->timer.data = h;
    /* It must not keep the loop alive on its own. */
    uv_unref((uv_handle_t *)&h->timer);
    *out = h;
    return 0;
}

static void destroy(struct gm_hami *h)
{
    for (struct gm_map_entry *e = gm_map_first(&h->wants); e;
         e = gm_map_next(&h->wants, e))
        want_free(e->value);
    gm_map_free(&h->wants);
    gm_map_free(&h->checks);
    free(h);
}

/* Freed, with the timer closed and no request out: nothing uses h. */
static void destroy_when_idle(struct gm_hami *h)
{
    if (h->ctl == NULL && h->timer_closed && !h->sending && h->checks.len == 0)
        destroy(h);
}

static void timer_closed(uv_handle_t *t)
{
    struct gm_hami *h = t->data;
    h->timer_closed = true;
    destroy_when_idle(h);
}

void gm_hami_free(struct gm_hami *h)
{
    if (h == NULL)
        return;
    h->ctl = NULL;
    uv_close((uv_handle_t *)&h->timer, timer_closed);
}

const char *gm_hami_error(const struct gm_hami *h)
{
    return h->error;
}

static bool is_number(json_object *v)
{
    return json_object_is_type(v, json_type_int) ||
           json_object_is_type(v, json_type_double);
}

/* The value Go's decoder takes for key from object o: it matches keys
 * without regard to ASCII case, and of several the last wins; a null
 * changes nothing in a string or number field, and resets a filter or
 * its lists. */
static json_object *field(json_object *o, const char *key)
{
    bool nullable = strcasecmp(key, "filterdevices") == 0 ||
                    strcasecmp(key, "uuid") == 0 ||
                    strcasecmp(key, "index") == 0;
    json_object *v = NULL;
    if (!json_object_is_type(o, json_type_object))
        return NULL;
    json_object_object_foreach(o, k, val)
    {
        if (strcasecmp(k, key) == 0 && (val || nullable))
            v = val;
    }
    return v;
}

/* Whether one value of an entry's field has the type HAMi decodes it
 * into; null leaves a field unset in Go. */
static bool typed(const char *key, json_object *v)
{
    if (v == NULL)
        return true;
    if (strcasecmp(key, "name") == 0 || strcasecmp(key, "operatingmode") == 0 ||
        strcasecmp(key, "migstrategy") == 0 ||
        strcasecmp(key, "libcudaloglevel") == 0)
        return json_object_is_type(v, json_type_string);
    /* Newer HAMi's: an int64 and two bools. */
    if (strcasecmp(key, "preconfigureddevicememory") == 0)
        return json_object_is_type(v, json_type_int);
    if (strcasecmp(key, "enablegetpreferredallocation") == 0 ||
        strcasecmp(key, "enablenumatopology") == 0)
        return json_object_is_type(v, json_type_boolean);
    if (strcasecmp(key, "devicememoryscaling") == 0 ||
        strcasecmp(key, "devicecorescaling") == 0)
        return is_number(v);
    if (strcasecmp(key, "devicesplitcount") == 0)
        return json_object_is_type(v, json_type_int) &&
               json_object_get_int64(v) >= 0;
    if (strcasecmp(key, "filterdevices") != 0)
        return true; /* not HAMi's: Go passes over it */
    if (!json_object_is_type(v, json_type_object))
        return false;
    json_object_object_foreach(v, k, list)
    {
        bool uuid = strcasecmp(k, "uuid") == 0;
        if (!uuid && strcasecmp(k, "index") != 0)
            continue;
        if (list && !json_object_is_type(list, json_type_array))
            return false;
        for (size_t j = 0; j < gm_json_len(list); j++) {
            json_object *x = json_object_array_get_idx(list, j);
            if (x && !(uuid ? json_object_is_type(x, json_type_string)
                            : json_object_is_type(x, json_type_int) &&
                                  json_object_get_int64(x) >= 0))
                return false;
        }
    }
    return true;
}

/* HAMi decodes the config into typed fields (Go's encoding/json): a
 * value of another type there, under any of its keys, fails the whole
 * config, and HAMi then runs every node with its defaults. Sets why. */
static bool typed_as_hami(json_object *list, char *why, size_t len)
{
    size_t n = gm_json_len(list);
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(list, i);
        if (e == NULL)
            continue;
        if (!json_object_is_type(e, json_type_object)) {
            snprintf(why, len, "nodeconfig[%zu] is not an object", i);
            return false;
        }
        json_object_object_foreach(e, key, v)
        {
            if (typed(key, v))
                continue;
            snprintf(why, len,
                     "nodeconfig[%zu].%s is not of HAMi's type for it (a "
                     "string for name, operatingmode, migstrategy and "
                     "libcudaloglevel; a number for the scalings; a whole "
                     "number for preconfigureddevicememory, and one of 0 or "
                     "more for devicesplitcount, where HAMi refuses 4.0; "
                     "true or false for enablegetpreferredallocation; "
                     "{\"uuid\": [strings], \"index\": [whole numbers]} for "
                     "filterdevices)",
                     i, key);
            return false;
        }
    }
    return true;
}

json_object *gm_hami_list(json_object *cfg)
{
    return field(cfg, "nodeconfig");
}

const char *gm_hami_entry_name(json_object *entry)
{
    json_object *v = field(entry, "name");
    return json_object_is_type(v, json_type_string) ? json_object_get_string(v)
                                                    : NULL;
}

int gm_hami_config_parse(const char *text, json_object **out, char *why,
                         size_t len)
{
    *out = NULL;
    snprintf(why, len, "not one object in strict JSON");
    if (text == NULL || text[strspn(text, " \t\r\n")] == '\0') {
        /* No key, or an empty one: nothing in it to lose. */
        *out = json_object_new_object();
        return *out ? 0 : -ENOMEM;
    }
    struct json_tokener *tok = json_tokener_new();
    if (tok == NULL)
        return -ENOMEM;
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    size_t n = strlen(text);
    /* With the terminating NUL: json-c waits for more after a bare
     * literal otherwise. */
    json_object *o = json_tokener_parse_ex(tok, text, (int)n + 1);
    bool ok = json_tokener_get_error(tok) == json_tokener_success;
    if (ok && o == NULL)
        o = json_object_new_object(); /* null: Go decodes it as empty */
    for (size_t i = ok ? json_tokener_get_parse_end(tok) : n; i < n; i++)
        if (text[i] != ' ' && text[i] != '\n' && text[i] != '\t' &&
            text[i] != '\r')
            ok = false;
    json_tokener_free(tok);
    ok = ok && json_object_is_type(o, json_type_object);
    if (ok) {
        json_object_object_foreach(o, key, v)
        {
            if (strcasecmp(key, "nodeconfig") != 0)
                continue;
            if (v && !json_object_is_type(v, json_type_array)) {
                snprintf(why, len, "%s is not a list", key);
                ok = false;
            } else if (ok && !typed_as_hami(v, why, len)) {
                ok = false;
            }
        }
    }
    if (!ok) {
        json_object_put(o);
        return -EINVAL;
    }
    *out = o;
    return 0;
}

/* The keys of a node's entry gpumode sets, and takes out when the node
 * is to run with HAMi's defaults. Any other key (filterdevices,
 * migstrategy, ...) is someone else's and kept. */
static const char *const managed[] = {"operatingmode", "devicesplitcount",
                                      "devicememoryscaling",
                                      "devicecorescaling"};
#define N_MANAGED (sizeof(managed) / sizeof(managed[0]))

static bool named(json_object *e, const char *node)
{
    const char *name = gm_hami_entry_name(e);
    return name && strcmp(name, node) == 0;
}

/* Whether a managed key's value says what want's does, as HAMi reads it:
 * the scalings are numbers (1 and 1.0 alike), the split an unsigned
 * integer (HAMi's parser refuses 4.0 there, and every entry with it). */
static bool same_value(const char *key, json_object *have, json_object *want)
{
    if (have == NULL || want == NULL)
        return have == want;
    if (strcmp(key, "devicesplitcount") == 0)
        return json_object_is_type(have, json_type_int) &&
               json_object_get_int64(have) == json_object_get_int64(want);
    bool num = json_object_is_type(have, json_type_int) ||
               json_object_is_type(have, json_type_double);
    if (num && (json_object_is_type(want, json_type_int) ||
                json_object_is_type(want, json_type_double)))
        return json_object_get_double(have) == json_object_get_double(want);
    return json_object_equal(have, want);
}

/* See hami.h. */
bool gm_hami_has_entry(json_object *list, const char *node, json_object *want)
{
    size_t n = gm_json_len(list);
    json_object *found = NULL;
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(list, i);
        if (!named(e, node))
            continue;
        count++;
        found = e;
        for (size_t k = 0; want == NULL && k < N_MANAGED; k++)
            if (field(e, managed[k]))
                return false;
    }
    if (want == NULL)
        return true;
    if (count != 1)
        return false;
    for (size_t k = 0; k < N_MANAGED; k++)
        if (!same_value(managed[k], field(found, managed[k]),
                        field(want, managed[k])))
            return false;
    return true;
}

/* Whether key's value in a later entry of a node replaces an earlier
 * one's, as HAMi reads them: not a null, an empty string, a number not
 * above 0, or a filter naming no GPU. */
static bool takes_over(const char *key, json_object *val)
{
    if (val == NULL)
        return false;
    if (json_object_is_type(val, json_type_string))
        return json_object_get_string_len(val) > 0 ||
               strcasecmp(key, "name") == 0;
    if (is_number(val))
        return json_object_get_double(val) > 0;
    if (strcasecmp(key, "filterdevices") == 0)
        return gm_json_len(field(val, "uuid")) > 0 ||
               gm_json_len(field(val, "index")) > 0;
    return true;
}

/* Deletes every key of o that Go's decoder takes for key. */
static void del_field(json_object *o, const char *key)
{
    for (;;) {
        const char *found = NULL;
        json_object_object_foreach(o, k, v)
        {
            (void)v;
            if (strcasecmp(k, key) == 0)
                found = k;
        }
        if (found == NULL)
            return;
        json_object_object_del(o, found);
    }
}

/* See hami.h. */
int gm_hami_set_entry(json_object *list, const char *node, json_object *want)
{
    json_object *merged = json_object_new_object();
    if (merged == NULL)
        return -ENOMEM;
    size_t n = json_object_array_length(list), at = n;
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(list, i);
        if (!named(e, node))
            continue;
        json_object_object_foreach(e, key, val)
        {
            if (!takes_over(key, val))
                continue;
            if (json_object_object_add(merged, key, json_object_get(val))) {
                json_object_put(merged);
                return -ENOMEM;
            }
        }
        if (at == n)
            at = i;
    }
    int err =
        json_object_object_add(merged, "name", json_object_new_string(node));
    for (size_t k = 0; k < N_MANAGED && !err; k++) {
        json_object *v = field(want, managed[k]);
        del_field(merged, managed[k]);
        if (v)
            err =
                json_object_object_add(merged, managed[k], json_object_get(v));
    }
    if (err) {
        json_object_put(merged);
        return -ENOMEM;
    }
    /* The others go; the merged entry takes the first one's place, so a
     * diff of the config stays small. */
    for (size_t i = n; i-- > at + 1;)
        if (named(json_object_array_get_idx(list, i), node))
            json_object_array_del_idx(list, i, 1);
    if (json_object_object_length(merged) == 1) {
        json_object_put(merged);
        if (at < n)
            json_object_array_del_idx(list, at, 1);
        return 0;
    }
    if ((at == n ? json_object_array_add(list, merged)
                 : json_object_array_put_idx(list, at, merged)) != 0) {
        json_object_put(merged);
        return -ENOMEM;
    }
    return 0;
}

static bool node_cached(struct gm_hami *h, const char *node)
{
    return gm_map_get(gm_reflector_items(h->ctl->nodes), node) != NULL;
}

static bool has_managed(json_object *e)
{
    for (size_t k = 0; k < N_MANAGED; k++)
        if (field(e, managed[k]))
            return true;
    return false;
}

/* The next name of a GM_HAMI_MARKS value at *p into name (size bytes),
 * moving *p past it; false at the end. An empty name, or one too long for
 * name, comes back as "". */
static bool next_mark(const char **p, char *name, size_t size)
{
    if (**p == '\0')
        return false;
    size_t len = strcspn(*p, ",");
    name[0] = '\0';
    if (len < size) {
        memcpy(name, *p, len);
        name[len] = '\0';
    }
    *p += len + ((*p)[len] == ',');
    return true;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* See hami.h. */
int gm_hami_marks(json_object *list, const char *old,
                  int (*mark)(void *ud, const char *node), void *ud, char **out)
{
    struct gm_map was, names; /* sets: values are only not NULL */
    const char **sorted = NULL;
    char *text = NULL;
    int err = 0, left = 0;
    gm_map_init(&was);
    gm_map_init(&names);
    *out = NULL;
    char mark_name[256];
    for (const char *p = old ? old : "";
         !err && next_mark(&p, mark_name, sizeof(mark_name));)
        if (mark_name[0])
            err = gm_map_put(&was, mark_name, &was, NULL);
    size_t n = gm_json_len(list);
    for (size_t i = 0; i < n && !err; i++) {
        json_object *e = json_object_array_get_idx(list, i);
        const char *name = gm_hami_entry_name(e);
        if (name == NULL || name[0] == '\0' || strchr(name, ',') ||
            !has_managed(e))
            continue;
        int m = mark(ud, name);
        if (m > 0 || (m == 0 && gm_map_get(&was, name)))
            err = gm_map_put(&names, name, &names, NULL);
    }
    if (!err) {
        sorted = malloc((names.len + 1) * sizeof(*sorted));
        text = malloc(GM_HAMI_MARKS_MAX + 1);
        err = sorted && text ? 0 : -ENOMEM;
    }
    if (!err) {
        size_t k = 0, at = 0;
        for (struct gm_map_entry *e = gm_map_first(&names); e;
             e = gm_map_next(&names, e))
            sorted[k++] = e->key;
        qsort(sorted, k, sizeof(*sorted), by_name);
        text[0] = '\0';
        for (size_t i = 0; i < k; i++) {
            size_t len = strlen(sorted[i]) + (at > 0);
            if (at + len > GM_HAMI_MARKS_MAX) {
                left++;
                continue;
            }
            at += (size_t)snprintf(text + at, GM_HAMI_MARKS_MAX + 1 - at,
                                   "%s%s", at > 0 ? "," : "", sorted[i]);
        }
        *out = text;
        text = NULL;
    }
    free(text);
    free(sorted);
    gm_map_free(&was);
    gm_map_free(&names);
    return err ? err : left;
}

/* gm_hami_marks's mark: a node in the cache is gpumode's or not; one not
 * in it is kept as marked before (it was deleted: gm_hami_sweep). */
static int mark_node(void *ud, const char *node)
{
    struct gm_hami *h = ud;
    const struct gm_node *n =
        gm_map_get(gm_reflector_items(h->ctl->nodes), node);
    if (n == NULL)
        return 0;
    return gm_ctl_node_ours(n) ? 1 : -1;
}

/* Nodes whose entry the cache shows are woken and forgotten (all of them
 * when cfg is NULL: the ConfigMap is gone, and switches go on without
 * it); the others go into list. A deleted node's want is forgotten too
 * when the node is back. Returns how many went in (0 when one could not,
 * for want of memory: list is then not to be sent). */
static size_t settle(struct gm_hami *h, json_object *cfg, json_object *list)
{
    json_object *cached = gm_hami_list(cfg);
    /* Deleting while iterating is not allowed: collect first. */
    char **done = calloc(h->wants.len, sizeof(*done));
    bool *wake = calloc(h->wants.len, sizeof(*wake));
    size_t n_done = 0, n_set = 0;
    int err = 0;

    for (struct gm_map_entry *e = gm_map_first(&h->wants); e;
         e = gm_map_next(&h->wants, e)) {
        const struct want *w = e->value;
        if (cfg == NULL || (w->prune && node_cached(h, e->key)) ||
            gm_hami_has_entry(cached, e->key, w->entry)) {
            /* Out of memory: woken on a later change instead. */
            if (done && wake) {
                wake[n_done] = !w->prune;
                done[n_done++] = e->key;
            }
        } else if (err == 0) {
            /* Out of memory half-way: nothing is sent (it might lack an
             * entry of someone else's), and the next change tries again. */
            err = gm_hami_set_entry(list, e->key, w->entry);
            n_set++;
        }
    }
    for (size_t i = 0; i < n_done; i++) {
        if (wake[i])
            gm_ctl_enqueue_node(h->ctl, done[i]);
        /* done[i] is the map's key: freed by the delete. */
        want_free(gm_map_del(&h->wants, done[i]));
    }
    free(done);
    free(wake);
    return err ? 0 : n_set;
}

static void flush(struct gm_hami *h);

static void on_timer(uv_timer_t *t)
{
    struct gm_hami *h = t->data;
    if (h->ctl)
        flush(h);
}

/* Flushes again in ms, unless something flushes first. */
static void flush_later(struct gm_hami *h, uint64_t ms)
{
    uv_timer_start(&h->timer, on_timer, ms ? ms : 1, 0);
}

static void write_done(void *data, const struct gm_kube_resp *resp)
{
    struct gm_hami *h = data;
    h->sending = false;
    if (h->ctl == NULL) {
        destroy_when_idle(h);
        return;
    }
    uint64_t now = uv_now(h->ctl->loop);
    if (resp->error && resp->error->err == -ECANCELED)
        return;
    if (resp->error == NULL || resp->error->code == 409) {
        /* Ours or another writer's newer ConfigMap is on its way through
         * the watch, which calls gm_hami_changed. */
        memcpy(h->stale_rv, h->sent_rv, sizeof(h->stale_rv));
        h->stale_since = now;
    }
    if (resp->error && resp->error->code == 409 && h->sent_marks)
        h->remark = true; /* sent again against the newer version */
    if (resp->error && resp->error->code != 409 && h->sent_marks &&
        !h->marks_refused) {
        gm_log_kv(GM_LOG_WARN, NULL, NULL,
                  "writing ConfigMap %s/%s's annotation %s failed (%s: %s); "
                  "%s",
                  h->ctl->cfg->hami_cm.namespace, h->ctl->cfg->hami_cm.name,
                  GM_HAMI_MARKS, resp->error->reason, resp->error->message,
                  h->sent_entries ? "entries are written without it until "
                                    "a replica starts leading or relists"
                                  : "tried again when a replica starts "
                                    "leading or relists");
        h->marks_refused = true;
    }
    if (resp->error == NULL) {
        h->backoff_ms = 0;
        h->retry_at = 0;
        h->error[0] = '\0';
    } else if (resp->error->code != 409 && !h->sent_entries) {
        /* The marks alone: not retried before the next sweep, and no
         * switch waits for them. */
    } else if (resp->error->code != 409) {
        /* Retried with backoff, by the timer or a switch asking again. */
        h->backoff_ms = h->backoff_ms ? h->backoff_ms * 2 : BACKOFF_MIN_MS;
        if (h->backoff_ms > BACKOFF_MAX_MS)
            h->backoff_ms = BACKOFF_MAX_MS;
        h->retry_at = now + h->backoff_ms;
        snprintf(h->error, sizeof(h->error), "%s: %s", resp->error->reason,
                 resp->error->message);
        gm_log_kv(GM_LOG_WARN, NULL, NULL,
                  "writing HAMi's per-node config failed: %s", h->error);
    }
    flush(h);
}

/* Sends one PATCH with every queued entry the cache does not show yet,
 * unless a write is in flight or its result has not reached the cache. */
static void flush(struct gm_hami *h)
{
    struct gm_ctl *ctl = h->ctl;
    uint64_t now = uv_now(ctl->loop);
    const char *rv = "";
    bool exists;

    /* A standby keeps deleted nodes' wants until it leads; an unsynced
     * cache would read as no ConfigMap. */
    bool wants = gm_map_first(&h->wants) != NULL;
    if (h->sending || !(wants || h->remark) || !ctl->leading ||
        ctl->hami_cm == NULL || !gm_reflector_has_synced(ctl->hami_cm))
        return;
    const char *cur = gm_ctl_hami_config(ctl, &rv, &exists);
    if (!exists) {
        settle(h, NULL, NULL);
        h->remark = false;
        return;
    }
    if (strcmp(rv, h->stale_rv) == 0 && now - h->stale_since < AWAIT_MS) {
        flush_later(h, AWAIT_MS - (now - h->stale_since));
        return;
    }
    json_object *cfg = NULL;
    char why[400];
    int perr = gm_hami_config_parse(cur, &cfg, why, sizeof(why));
    if (perr == -EINVAL && !wants) {
        h->remark = false; /* the first write that needs it says why */
        return;
    }
    if (perr == -EINVAL) {
        /* Written back, it would lose every other node's entry, or keep
         * what makes HAMi run every node with its defaults: left for a
         * person to fix; the switches waiting say why, and go on once the
         * fixed config comes through the watch. */
        if (!h->bad_config)
            gm_log_kv(GM_LOG_WARN, NULL, NULL,
                      "%s in ConfigMap %s/%s is not HAMi's config (%s); not "
                      "writing over it",
                      ctl->cfg->hami_cm.key, ctl->cfg->hami_cm.namespace,
                      ctl->cfg->hami_cm.name, why);
        snprintf(h->error, sizeof(h->error),
                 "%s in ConfigMap %s/%s is not HAMi's config (%s): HAMi "
                 "reads none of it, and gpumode does not write over it; fix "
                 "it by hand",
                 ctl->cfg->hami_cm.key, ctl->cfg->hami_cm.namespace,
                 ctl->cfg->hami_cm.name, why);
        h->bad_config = true;
        return;
    }
    if (perr)
        return;
    if (h->bad_config) {
        h->bad_config = false;
        h->error[0] = '\0';
    }
    /* What we send: the cached config with our entries in. */
    json_object *out = NULL;
    if (json_object_deep_copy(cfg, &out, NULL) != 0) {
        json_object_put(cfg);
        return;
    }
    json_object *list = gm_hami_list(out);
    if (!json_object_is_type(list, json_type_array)) {
        list = json_object_new_array();
        json_object_object_add(out, "nodeconfig", list);
    }
    size_t n = settle(h, cfg, list);
    json_object_put(cfg);
    if ((n == 0 && !h->remark) || now < h->retry_at) {
        if (n > 0 || h->remark)
            flush_later(h, h->retry_at - now);
        json_object_put(out);
        return;
    }
    /* The marks go in the same write as the entries: neither is seen
     * without the other. */
    const char *was = gm_ctl_hami_marks(ctl);
    char *marks = NULL;
    int left = gm_hami_marks(list, was, mark_node, h, &marks);
    if (left < 0) {
        json_object_put(out);
        flush_later(h, BACKOFF_MIN_MS);
        return;
    }
    bool remark = !h->marks_refused && strcmp(was ? was : "", marks) != 0;
    /* The marks sent are the entries' as of now. */
    h->remark = false;
    if (n == 0 && !remark) {
        free(marks);
        json_object_put(out);
        return;
    }
    if (left > 0 && !h->marks_full)
        gm_log_kv(GM_LOG_WARN, NULL, NULL,
                  "%d node%s left out of ConfigMap %s/%s's annotation %s "
                  "(over %d bytes): their keys are taken out of HAMi's "
                  "config only when a controller sees the node deleted",
                  left, left == 1 ? "" : "s", ctl->cfg->hami_cm.namespace,
                  ctl->cfg->hami_cm.name, GM_HAMI_MARKS, GM_HAMI_MARKS_MAX);
    h->marks_full = left > 0;
    json_object *patch = json_object_new_object();
    json_object *meta = json_object_new_object();
    json_object *data = json_object_new_object();
    json_object_object_add(meta, "resourceVersion", json_object_new_string(rv));
    if (remark) {
        json_object *ann = json_object_new_object();
        json_object_object_add(ann, GM_HAMI_MARKS,
                               marks[0] ? json_object_new_string(marks) : NULL);
        json_object_object_add(meta, "annotations", ann);
    }
    json_object_object_add(patch, "metadata", meta);
    /* No entry to write: only the marks go, the config as it is. */
    if (n > 0) {
        json_object_object_add(
            data, ctl->cfg->hami_cm.key,
            json_object_new_string(json_object_to_json_string_ext(
                out, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)));
        json_object_object_add(patch, "data", data);
    } else {
        json_object_put(data);
    }
    json_object_put(out);
    char path[320];
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/configmaps/%s",
             ctl->cfg->hami_cm.namespace, ctl->cfg->hami_cm.name);
    if (n > 0)
        gm_log_kv(GM_LOG_INFO, NULL, NULL,
                  "writing HAMi's per-node config: %zu node entr%s", n,
                  n == 1 ? "y" : "ies");
    else
        gm_log_kv(GM_LOG_INFO, NULL, NULL,
                  "writing ConfigMap %s/%s's annotation %s: \"%s\"",
                  ctl->cfg->hami_cm.namespace, ctl->cfg->hami_cm.name,
                  GM_HAMI_MARKS, marks);
    free(marks);
    int err = gm_kube_patch(
        ctl->kube, path, GM_PATCH_MERGE,
        json_object_to_json_string_ext(patch, JSON_C_TO_STRING_PLAIN), NULL, 0,
        write_done, h);
    json_object_put(patch);
    if (err) {
        gm_log_kv(GM_LOG_WARN, NULL, NULL, "writing HAMi's per-node config: %s",
                  strerror(-err));
        h->retry_at = now + BACKOFF_MIN_MS;
        flush_later(h, BACKOFF_MIN_MS);
        return;
    }
    snprintf(h->sent_rv, sizeof(h->sent_rv), "%s", rv);
    h->sending = true;
    h->sent_entries = n > 0;
    h->sent_marks = remark;
}

/* Queues node's want (entry consumed), replacing one queued before, and
 * flushes. 0 or -ENOMEM. */
static int put_want(struct gm_hami *h, const char *node, json_object *entry,
                    bool prune)
{
    struct want *w = calloc(1, sizeof(*w));
    void *old = NULL;
    if (w == NULL) {
        json_object_put(entry);
        return -ENOMEM;
    }
    w->entry = entry;
    w->prune = prune;
    if (gm_map_put(&h->wants, node, w, &old) != 0) {
        want_free(w);
        return -ENOMEM;
    }
    want_free(old);
    flush(h);
    return 0;
}

int gm_hami_want(struct gm_hami *h, const char *node, json_object *entry)
{
    const char *rv = "";
    bool exists;
    const char *cur = gm_ctl_hami_config(h->ctl, &rv, &exists);
    json_object *cfg = NULL;
    /* HAMi runs a config it cannot read with its defaults, as if the node
     * had no entry: that much is there already; any entry is not. */
    char why[400];
    bool bad = cur && gm_hami_config_parse(cur, &cfg, why, sizeof(why)) != 0;
    bool have =
        bad ? entry == NULL : gm_hami_has_entry(gm_hami_list(cfg), node, entry);
    json_object_put(cfg);
    if (have) {
        want_free(gm_map_del(&h->wants, node));
        json_object_put(entry);
        return 1;
    }
    return put_want(h, node, entry, false);
}

int gm_hami_prune(struct gm_hami *h, const char *node)
{
    return put_want(h, node, NULL, true);
}

/* The API server's answer for a marked node the cache does not hold: only
 * an empty list says it is gone (the cache may lag: a new leader's watch
 * may not have seen a node its predecessor switched); anything else leaves
 * it for the next sweep. */
static void check_done(void *data, const struct gm_kube_resp *resp)
{
    struct check *c = data;
    struct gm_hami *h = c->h;
    gm_map_del(&h->checks, c->node);
    struct gm_ctl *ctl = h->ctl;
    json_object *items = gm_json_get(resp->obj, "items");
    if (ctl && resp->error && resp->error->err != -ECANCELED)
        gm_log_kv(GM_LOG_WARN, c->node, NULL,
                  "listing the node, named in ConfigMap %s/%s's annotation "
                  "%s and not in the cache, failed (%s: %s): its keys in "
                  "HAMi's per-node config stay",
                  ctl->cfg->hami_cm.namespace, ctl->cfg->hami_cm.name,
                  GM_HAMI_MARKS, resp->error->reason, resp->error->message);
    if (ctl && resp->code == 200 &&
        json_object_is_type(items, json_type_array) &&
        json_object_array_length(items) == 0 && !node_cached(h, c->node)) {
        gm_log_kv(GM_LOG_INFO, c->node, NULL,
                  "%sdeleted while no controller ran: %s its keys out of "
                  "HAMi's per-node config",
                  ctl->dry_run ? "dry run: " : "",
                  ctl->dry_run ? "would take" : "taking");
        /* Out of memory: it stays marked, for the next sweep. */
        if (!ctl->dry_run)
            put_want(h, c->node, NULL, true);
    }
    free(c);
    destroy_when_idle(h);
}

void gm_hami_sweep(struct gm_hami *h)
{
    struct gm_ctl *ctl = h ? h->ctl : NULL;
    if (ctl == NULL || !ctl->leading || ctl->nodes == NULL ||
        !gm_reflector_has_synced(ctl->nodes) || ctl->hami_cm == NULL ||
        !gm_reflector_has_synced(ctl->hami_cm))
        return;
    /* The marks themselves: nodes switched before there were any (an
     * upgrade), or since left alone, or whose entries a person cleared.
     * A dry run writes nothing. */
    if (!ctl->dry_run) {
        h->marks_refused = false;
        h->remark = true;
        flush(h);
    }
    const char *marks = gm_ctl_hami_marks(ctl), *rv = "";
    bool exists;
    json_object *cfg = NULL;
    char why[400];
    if (marks == NULL ||
        gm_hami_config_parse(gm_ctl_hami_config(ctl, &rv, &exists), &cfg, why,
                             sizeof(why)) != 0)
        return; /* one HAMi cannot read is not written over (flush) */
    json_object *list = gm_hami_list(cfg);
    char name[256];
    for (const char *p = marks; next_mark(&p, name, sizeof(name));) {
        /* Only an object name goes into the query (anyone may edit the
         * annotation); a mark left on an entry that holds none of
         * gpumode's keys any more has nothing to take out. */
        if (!gm_ctl_name_ok(name) || gm_hami_has_entry(list, name, NULL))
            continue;
        struct check *c = calloc(1, sizeof(*c));
        if (c == NULL)
            continue; /* it stays marked, for the next sweep */
        memcpy(c->node, name, sizeof(c->node));
        c->h = h;
        /* A list by name, which the ClusterRole allows (no get): read
         * from the API server, not a cache of ours. */
        char path[320];
        snprintf(path, sizeof(path),
                 "/api/v1/nodes?fieldSelector=metadata.name%%3D%s", c->node);
        /* Out of memory, or no request: it stays marked, for the next
         * sweep. */
        if (node_cached(h, c->node) || gm_map_get(&h->wants, c->node) ||
            gm_map_get(&h->checks, c->node) ||
            gm_map_put(&h->checks, c->node, c, NULL) != 0) {
            free(c);
        } else if (gm_kube_get(ctl->kube, path, check_done, c) != 0) {
            gm_map_del(&h->checks, c->node);
            free(c);
        }
    }
    json_object_put(cfg);
}

void gm_hami_changed(struct gm_hami *h)
{
    flush(h);
}

void gm_hami_forget(struct gm_hami *h, const char *node)
{
    const struct want *w = h ? gm_map_get(&h->wants, node) : NULL;
    /* A deleted node's want is no switch's: its handling ends with this. */
    if (w && !w->prune)
        want_free(gm_map_del(&h->wants, node));
}

void gm_hami_view_apply(struct gm_hami_view *v, json_object *e)
{
    json_object *split = field(e, "devicesplitcount");
    json_object *memory = field(e, "devicememoryscaling");
    json_object *core = field(e, "devicecorescaling");
    json_object *filter = field(e, "filterdevices");
    v->named = true;
    /* A split of a fraction is not HAMi's (its parser refuses the whole
     * config): not counted as set. */
    if (json_object_is_type(split, json_type_int) &&
        json_object_get_int64(split) > 0 &&
        json_object_get_int64(split) <= INT32_MAX)
        v->split = (int)json_object_get_int64(split);
    if ((json_object_is_type(memory, json_type_int) ||
         json_object_is_type(memory, json_type_double)) &&
        json_object_get_double(memory) > 0)
        v->memory = json_object_get_double(memory);
    if ((json_object_is_type(core, json_type_int) ||
         json_object_is_type(core, json_type_double)) &&
        json_object_get_double(core) > 0)
        v->core = json_object_get_double(core);
    if (gm_json_len(field(filter, "uuid")) > 0 ||
        gm_json_len(field(filter, "index")) > 0) {
        json_object_put(v->filter);
        v->filter = json_object_get(filter);
    }
}

int gm_hami_view_parse(const char *text, const char *node,
                       struct gm_hami_view *out)
{
    json_object *cfg = NULL;
    memset(out, 0, sizeof(*out));
    char why[400];
    int err = gm_hami_config_parse(text, &cfg, why, sizeof(why));
    if (err)
        return err;
    json_object *list = gm_hami_list(cfg);
    size_t n = gm_json_len(list);
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(list, i);
        if (named(e, node))
            gm_hami_view_apply(out, e);
    }
    json_object_put(cfg);
    return 0;
}

void gm_hami_view_clear(struct gm_hami_view *v)
{
    json_object_put(v->filter);
    memset(v, 0, sizeof(*v));
}

int gm_hami_filtered(const struct gm_hami_view *v, int gpus,
                     const char *const *uuids)
{
    json_object *idx = field(v->filter, "index");
    json_object *ids = field(v->filter, "uuid");
    size_t n_idx = gm_json_len(idx);
    size_t n_ids = gm_json_len(ids);
    int out = 0, unknown = 0;
    for (int g = 0; g < gpus; g++) {
        bool hidden = false;
        for (size_t i = 0; i < n_idx && !hidden; i++) {
            json_object *x = json_object_array_get_idx(idx, i);
            hidden = json_object_is_type(x, json_type_int) &&
                     json_object_get_int64(x) == g;
        }
        for (size_t i = 0; uuids && uuids[g] && i < n_ids && !hidden; i++) {
            const char *u =
                json_object_get_string(json_object_array_get_idx(ids, i));
            hidden = u && strcmp(u, uuids[g]) == 0;
        }
        out += hidden;
    }
    if (uuids == NULL)
        unknown = (int)n_ids;
    return out + unknown > gpus ? gpus : out + unknown;
}
