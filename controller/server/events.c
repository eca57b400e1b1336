#include "server/events.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/log.h"
#include "common/map.h"
#include "server/kubetime.h"

#define NOTE_MAX 1024    /* events.k8s.io validation: note <= 1 KiB */
#define DROP_LOG_MS 1000 /* at most one "event dropped" line a second */

/* One recent event. Entries are found by key only (never by pointer from a
 * request), so forgetting one while its request is out is safe. */
struct entry {
    char *key; /* owned; the map's key is its own copy */
    char ns[254];
    char name[254];
    int created;  /* the Event exists on the server */
    int failed;   /* its create failed (at last_sent): created anew when it
                     recurs a series interval later */
    int inflight; /* a create or patch is out */
    unsigned long count, sent_count;
    uint64_t last_seen, last_sent; /* loop clock */
    char last_observed[GM_MICROTIME_LEN];
};

/* One object's (and type's) token bucket. Found by key only. */
struct bucket {
    double tokens;
    uint64_t at; /* loop clock when tokens was last brought up to date */
};

enum verb { V_CREATE, V_PATCH };

struct call {
    struct gm_recorder *r; /* NULL once the recorder is freed */
    char *key;             /* owned */
    enum verb verb;
    unsigned long count; /* what a patch sent */
    struct call *prev, *next;
};

struct gm_recorder {
    uv_loop_t *loop;
    struct gm_kube *k;
    uv_timer_t timer; /* the recorder is freed in its close callback */
    char *identity, *controller;
    uint64_t interval_ms, ttl_ms;
    size_t max_keys;
    /* The backstop over all objects. */
    double qps, tokens;
    int burst;
    uint64_t refilled_at;
    /* Per object and type. */
    int obj_burst;
    uint64_t obj_refill_ms;
    size_t max_objects;
    struct gm_map objects; /* object key -> struct bucket * (owned) */
    /* Drops not logged yet (at most one line per DROP_LOG_MS); the last
     * one's description is what the next line shows. */
    unsigned long drops_unlogged;
    int drop_logged; /* drop_logged_at is set */
    uint64_t drop_logged_at;
    char drop_line[1024], drop_node[254], drop_policy[254];
    struct gm_map entries; /* key -> struct entry * */
    struct call *calls;    /* requests out */
    unsigned long seq;     /* makes Event names unique */
    struct gm_recorder_stats stats;
};

static void schedule_flush(struct gm_recorder *r);
static void flush(uv_timer_t *t);

/* ---- entries ---- */

static void entry_free(struct entry *e)
{
    free(e->key);
    free(e);
}

static void forget(struct gm_recorder *r, struct entry *e)
{
    gm_map_del(&r->entries, e->key);
    entry_free(e);
}

/* Forgets entries idle past the TTL; when the table is still full, the
 * least recently seen idle entry makes room. Returns 0 when there is room. */
static int make_room(struct gm_recorder *r)
{
    uint64_t now = uv_now(r->loop);
    struct entry *victims[64];
    size_t nv;

    do {
        nv = 0;
        struct gm_map_entry *it;
        for (it = gm_map_first(&r->entries); it && nv < 64;
             it = gm_map_next(&r->entries, it)) {
            struct entry *e = it->value;
            if (!e->inflight && now - e->last_seen >= r->ttl_ms)
                victims[nv++] = e;
        }
        for (size_t i = 0; i < nv; i++)
            forget(r, victims[i]);
    } while (nv == 64);
    if (r->entries.len < r->max_keys)
        return 0;
    struct entry *oldest = NULL;
    struct gm_map_entry *it;
    for (it = gm_map_first(&r->entries); it;
         it = gm_map_next(&r->entries, it)) {
        struct entry *e = it->value;
        if (!e->inflight && (!oldest || e->last_seen < oldest->last_seen))
            oldest = e;
    }
    if (oldest == NULL)
        return -EAGAIN;
    forget(r, oldest);
    return 0;
}

/* ---- rate limits ---- */

/* Brings a bucket up to now: one token per obj_refill_ms, up to the burst. */
static void bucket_refill(const struct gm_recorder *r, struct bucket *b,
                          uint64_t now)
{
    b->tokens += (double)(now - b->at) / (double)r->obj_refill_ms;
    if (b->tokens > r->obj_burst)
        b->tokens = r->obj_burst;
    b->at = now;
}

/* A bucket that would be full again by now is the same as no bucket. */
static int bucket_full(const struct gm_recorder *r, const struct bucket *b,
                       uint64_t now)
{
    double t = b->tokens + (double)(now - b->at) / (double)r->obj_refill_ms;
    return t >= r->obj_burst;
}

/* Makes room for one more bucket: the full ones go first, as they lose
 * nothing; if none is, the least recently used goes. That hands its object
 * a fresh burst early (client-go's LRU does the same), which the backstop
 * still bounds. */
static void forget_buckets(struct gm_recorder *r)
{
    uint64_t now = uv_now(r->loop);
    const char *victims[64]; /* the map's keys, freed by gm_map_del */
    size_t nv;

    do {
        nv = 0;
        struct gm_map_entry *it;
        for (it = gm_map_first(&r->objects); it && nv < 64;
             it = gm_map_next(&r->objects, it))
            if (bucket_full(r, it->value, now))
                victims[nv++] = it->key;
        for (size_t i = 0; i < nv; i++)
            free(gm_map_del(&r->objects, victims[i]));
    } while (nv == 64);
    if (r->objects.len < r->max_objects)
        return;
    struct gm_map_entry *oldest = NULL, *it;
    for (it = gm_map_first(&r->objects); it;
         it = gm_map_next(&r->objects, it)) {
        const struct bucket *b = it->value;
        if (!oldest || b->at < ((struct bucket *)oldest->value)->at)
            oldest = it;
    }
    if (oldest != NULL)
        free(gm_map_del(&r->objects, oldest->key));
}

/* Takes a token from the object's bucket and one from the backstop, or
 * neither, so that a refusal by one does not cost the other. Returns 0,
 * -EAGAIN with *why set, or -ENOMEM. */
static int take_tokens(struct gm_recorder *r, const char *okey,
                       enum gm_event_type type, const char **why)
{
    uint64_t now = uv_now(r->loop);
    struct bucket *b = gm_map_get(&r->objects, okey);
    if (b == NULL) {
        if (r->objects.len >= r->max_objects)
            forget_buckets(r);
        b = malloc(sizeof(*b));
        if (b == NULL)
            return -ENOMEM;
        b->tokens = r->obj_burst;
        b->at = now;
        void *old = NULL;
        if (gm_map_put(&r->objects, okey, b, &old) != 0) {
            free(b);
            return -ENOMEM;
        }
    }
    bucket_refill(r, b, now);
    r->tokens += (double)(now - r->refilled_at) / 1000.0 * r->qps;
    if (r->tokens > r->burst)
        r->tokens = r->burst;
    r->refilled_at = now;

    /* Warnings are what the README tells people to look for: when
     * something floods the backstop, routine Normal events run dry first. */
    double reserve = type == GM_EVENT_WARNING ? 0 : r->burst / 4;
    if (b->tokens < 1) {
        *why = "rate limit per object";
        return -EAGAIN;
    }
    if (r->tokens - reserve < 1) {
        *why = "rate limit over all objects";
        return -EAGAIN;
    }
    b->tokens -= 1;
    r->tokens -= 1;
    return 0;
}

/* ---- logging drops ---- */

static void log_drops(struct gm_recorder *r, uint64_t now)
{
    const char *node = r->drop_node[0] ? r->drop_node : NULL;
    const char *policy = r->drop_policy[0] ? r->drop_policy : NULL;
    if (r->drops_unlogged == 1)
        gm_log_kv(GM_LOG_WARN, node, policy, "event dropped: %s", r->drop_line);
    else
        gm_log_kv(GM_LOG_WARN, node, policy,
                  "%lu events dropped since the last such line; the last: %s",
                  r->drops_unlogged, r->drop_line);
    r->drops_unlogged = 0;
    r->drop_logged = 1;
    r->drop_logged_at = now;
}

/* A dropped event is never silent: it is logged now, or, within a second
 * of the last such line, counted and logged by flush() when the second is
 * up, so a storm of drops cannot become a storm of log lines. */
static void note_drop(struct gm_recorder *r, const struct gm_event_ref *ref,
                      enum gm_event_type type, const char *reason,
                      const char *note, const char *why)
{
    uint64_t now = uv_now(r->loop);
    int ns = ref->namespace && ref->namespace[0];

    snprintf(
        r->drop_line, sizeof(r->drop_line), "%s %s%s%s: %s %s: \"%.300s\" (%s)",
        ref->kind, ns ? ref->namespace : "", ns ? "/" : "", ref->name,
        type == GM_EVENT_WARNING ? "Warning" : "Normal", reason, note, why);
    snprintf(r->drop_node, sizeof(r->drop_node), "%s",
             strcmp(ref->kind, "Node") == 0 ? ref->name : "");
    snprintf(r->drop_policy, sizeof(r->drop_policy), "%s",
             strcmp(ref->kind, "GPUModePolicy") == 0 ? ref->name : "");
    r->drops_unlogged++;
    if (!r->drop_logged || now - r->drop_logged_at >= DROP_LOG_MS)
        log_drops(r, now);
    else if (r->drops_unlogged == 1)
        uv_timer_start(&r->timer, flush, 0, 0); /* it sets its next wake */
}

/* ---- requests ---- */

static void on_resp(void *data, const struct gm_kube_resp *resp);

static struct call *call_new(struct gm_recorder *r, const char *key,
                             enum verb verb)
{
    struct call *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->key = strdup(key);
    if (c->key == NULL) {
        free(c);
        return NULL;
    }
    c->r = r;
    c->verb = verb;
    c->next = r->calls;
    if (r->calls)
        r->calls->prev = c;
    r->calls = c;
    return c;
}

static void call_unlink(struct call *c)
{
    if (c->r == NULL)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        c->r->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
}

static void call_free(struct call *c)
{
    call_unlink(c);
    free(c->key);
    free(c);
}

static void events_path(char *out, size_t n, const char *ns)
{
    snprintf(out, n, "/apis/events.k8s.io/v1/namespaces/%s/events", ns);
}

static void send_patch(struct gm_recorder *r, struct entry *e)
{
    char path[640], body[160];
    int n = snprintf(path, sizeof(path),
                     "/apis/events.k8s.io/v1/namespaces/%s/events/%s", e->ns,
                     e->name);
    if (n < 0 || (size_t)n >= sizeof(path))
        return;
    snprintf(body, sizeof(body),
             "{\"series\":{\"count\":%lu,\"lastObservedTime\":\"%s\"}}",
             e->count, e->last_observed);
    struct call *c = call_new(r, e->key, V_PATCH);
    if (c == NULL)
        return;
    c->count = e->count;
    if (gm_kube_patch(r->k, path, GM_PATCH_MERGE, body, NULL, 0, on_resp, c)) {
        call_free(c);
        return;
    }
    e->inflight = 1;
    e->last_sent = uv_now(r->loop);
    r->stats.patched++;
}

static void created(struct gm_recorder *r, struct entry *e,
                    const struct gm_kube_resp *resp)
{
    if (resp->code / 100 != 2) {
        gm_warn("event %s: create failed: %s", e->name,
                resp->error ? resp->error->message : "");
        e->failed = 1;
        e->last_sent = uv_now(r->loop);
        r->stats.failed++;
        return;
    }
    e->created = 1;
    e->sent_count = 1;
    e->last_sent = uv_now(r->loop);
    if (e->count > e->sent_count)
        schedule_flush(r);
}

static void patched(struct gm_recorder *r, struct entry *e,
                    const struct gm_kube_resp *resp, unsigned long count)
{
    if (resp->code / 100 == 2) {
        if (count > e->sent_count)
            e->sent_count = count;
        if (e->count > e->sent_count)
            schedule_flush(r);
        return;
    }
    r->stats.failed++;
    gm_warn("event %s: series update failed: %s", e->name,
            resp->error ? resp->error->message : "");
    /* The Event is gone (the API server keeps them an hour) or refused:
     * forget it, so the next occurrence starts a new one. */
    forget(r, e);
}

static void on_resp(void *data, const struct gm_kube_resp *resp)
{
    struct call *c = data;
    struct gm_recorder *r = c->r;
    if (r != NULL) {
        struct entry *e = gm_map_get(&r->entries, c->key);
        if (e != NULL) {
            e->inflight = 0;
            if (c->verb == V_CREATE)
                created(r, e, resp);
            else
                patched(r, e, resp, c->count);
        }
    }
    call_free(c);
}

static json_object *event_body(struct gm_recorder *r, struct entry *e,
                               const struct gm_event_ref *ref,
                               enum gm_event_type type, const char *reason,
                               const char *action, const char *note)
{
    json_object *o = json_object_new_object();
    json_object *md = json_object_new_object();
    json_object *reg = json_object_new_object();

    json_object_object_add(o, "apiVersion",
                           json_object_new_string("events.k8s.io/v1"));
    json_object_object_add(o, "kind", json_object_new_string("Event"));
    json_object_object_add(md, "name", json_object_new_string(e->name));
    json_object_object_add(md, "namespace", json_object_new_string(e->ns));
    json_object_object_add(o, "metadata", md);
    json_object_object_add(o, "eventTime",
                           json_object_new_string(e->last_observed));
    json_object_object_add(o, "reportingController",
                           json_object_new_string(r->controller));
    json_object_object_add(o, "reportingInstance",
                           json_object_new_string(r->identity));
    json_object_object_add(o, "action", json_object_new_string(action));
    json_object_object_add(o, "reason", json_object_new_string(reason));
    json_object_object_add(o, "type",
                           json_object_new_string(type == GM_EVENT_WARNING
                                                      ? "Warning"
                                                      : "Normal"));
    json_object_object_add(o, "note", json_object_new_string(note));
    json_object_object_add(reg, "apiVersion",
                           json_object_new_string(ref->api_version));
    json_object_object_add(reg, "kind", json_object_new_string(ref->kind));
    if (ref->namespace && ref->namespace[0])
        json_object_object_add(reg, "namespace",
                               json_object_new_string(ref->namespace));
    json_object_object_add(reg, "name", json_object_new_string(ref->name));
    if (ref->uid && ref->uid[0])
        json_object_object_add(reg, "uid", json_object_new_string(ref->uid));
    json_object_object_add(o, "regarding", reg);
    return o;
}

/* ---- the flush timer ---- */

/* Sends the patches that are due, logs drops held back, and sleeps until
 * the next of either is due. */
static void flush(uv_timer_t *t)
{
    struct gm_recorder *r = t->data;
    uint64_t now = uv_now(r->loop), next = UINT64_MAX;
    struct gm_map_entry *it;

    for (it = gm_map_first(&r->entries); it;
         it = gm_map_next(&r->entries, it)) {
        struct entry *e = it->value;
        if (!e->created || e->inflight || e->count <= e->sent_count)
            continue;
        uint64_t due = e->last_sent + r->interval_ms;
        if (due <= now)
            send_patch(r, e);
        else if (due < next)
            next = due;
    }
    if (r->drops_unlogged > 0) {
        uint64_t due = r->drop_logged_at + DROP_LOG_MS;
        if (due <= now)
            log_drops(r, now);
        else if (due < next)
            next = due;
    }
    if (next != UINT64_MAX)
        uv_timer_start(&r->timer, flush, next - now, 0);
}

static void schedule_flush(struct gm_recorder *r)
{
    if (!uv_is_active((uv_handle_t *)&r->timer))
        uv_timer_start(&r->timer, flush, 0, 0);
}

/* ---- the API ---- */

int gm_recorder_new(uv_loop_t *loop, struct gm_kube *k,
                    const struct gm_recorder_opts *opts,
                    struct gm_recorder **out)
{
    if (opts->identity == NULL || opts->identity[0] == '\0')
        return -EINVAL;
    struct gm_recorder *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return -ENOMEM;
    r->loop = loop;
    r->k = k;
    r->identity = strdup(opts->identity);
    r->controller =
        strdup(opts->controller ? opts->controller : GM_EVENTS_CONTROLLER);
    if (!r->identity || !r->controller) {
        free(r->identity);
        free(r->controller);
        free(r);
        return -ENOMEM;
    }
    r->interval_ms =
        opts->series_interval_ms ? opts->series_interval_ms : 30000;
    r->ttl_ms = opts->key_ttl_ms ? opts->key_ttl_ms : 600000;
    r->max_keys = opts->max_keys ? opts->max_keys : 1024;
    r->obj_burst = opts->object_burst > 0 ? opts->object_burst : 25;
    r->obj_refill_ms = opts->object_refill_ms ? opts->object_refill_ms : 300000;
    r->max_objects = opts->max_objects ? opts->max_objects : 4096;
    /* The backstop is for bugs, not for shaping normal work: 200 at once
     * (150 for Normal events) covers a pass that starts 50 switches with
     * a couple of events each, twice over. 10 a second sustained is at
     * most 36,000 Events in the API server's one-hour event TTL, and a
     * fifth of the kube client's 50 QPS, which events share with the
     * node writes they describe. */
    r->qps = opts->qps > 0 ? opts->qps : 10;
    r->burst = opts->burst > 0 ? opts->burst : 200;
    r->tokens = r->burst;
    r->refilled_at = uv_now(loop);
    gm_map_init(&r->objects);
    gm_map_init(&r->entries);
    uv_timer_init(loop, &r->timer);
    r->timer.data = r;
    *out = r;
    return 0;
}

static int new_entry(struct gm_recorder *r, const char *key,
                     const struct gm_event_ref *ref, struct entry **out)
{
    struct entry *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return -ENOMEM;
    e->key = strdup(key);
    if (e->key == NULL) {
        free(e);
        return -ENOMEM;
    }
    snprintf(e->ns, sizeof(e->ns), "%s",
             ref->namespace && ref->namespace[0] ? ref->namespace : "default");
    /* client-go's name: the object's name, a dot, a unique hex suffix. The
     * name part is cut so the whole stays a valid 253-byte name. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned long long uniq = (unsigned long long)ts.tv_sec * 1000000000ull +
                              (unsigned long long)ts.tv_nsec +
                              (unsigned long long)++r->seq;
    snprintf(e->name, sizeof(e->name), "%.200s.%llx", ref->name, uniq);
    void *old = NULL;
    if (gm_map_put(&r->entries, key, e, &old) != 0) {
        entry_free(e);
        return -ENOMEM;
    }
    *out = e;
    return 0;
}

int gm_event(struct gm_recorder *r, const struct gm_event_ref *ref,
             enum gm_event_type type, const char *reason, const char *action,
             const char *fmt, ...)
{
    char note[NOTE_MAX + 8], key[2048]; /* room to see a rune cut */
    char okey[1024];                    /* the rate limit's: object, type */
    const char *why = NULL;
    va_list ap;

    if (!ref || !ref->kind || !ref->name || !ref->name[0] ||
        !ref->api_version || !reason || !reason[0] || !action || !action[0])
        return -EINVAL;
    va_start(ap, fmt);
    vsnprintf(note, sizeof(note), fmt, ap);
    va_end(ap);
    note[gm_json_utf8_len(note, NOTE_MAX)] = '\0';
    snprintf(key, sizeof(key), "%s\x1f%s\x1f%s\x1f%s\x1f%d\x1f%s\x1f%s\x1f%s",
             ref->kind, ref->namespace ? ref->namespace : "", ref->name,
             ref->uid ? ref->uid : "", (int)type, reason, action, note);
    snprintf(okey, sizeof(okey), "%s\x1f%s\x1f%s\x1f%s\x1f%d", ref->kind,
             ref->namespace ? ref->namespace : "", ref->name,
             ref->uid ? ref->uid : "", (int)type);

    uint64_t now = uv_now(r->loop);
    struct entry *e = gm_map_get(&r->entries, key);
    /* A create that failed (a 5xx, a connection lost) is tried again when
     * the event recurs, as a series patch would be: an event that goes on
     * happening must not stay unseen for as long as it does. */
    if (e != NULL && e->failed && !e->inflight &&
        now - e->last_sent >= r->interval_ms) {
        forget(r, e);
        e = NULL;
    }
    if (e != NULL) {
        e->count++;
        e->last_seen = now;
        gm_microtime_now(e->last_observed, sizeof(e->last_observed));
        if (e->created && !e->inflight)
            schedule_flush(r);
        return 0;
    }
    int err = make_room(r);
    if (err != 0)
        why = "table of recent events full";
    else
        err = take_tokens(r, okey, type, &why);
    if (err == -EAGAIN) {
        r->stats.dropped++;
        note_drop(r, ref, type, reason, note, why);
        return -EAGAIN;
    }
    if (err)
        return err;
    err = new_entry(r, key, ref, &e);
    if (err)
        return err;
    e->count = 1;
    e->last_seen = now;
    gm_microtime_now(e->last_observed, sizeof(e->last_observed));

    char path[512];
    events_path(path, sizeof(path), e->ns);
    json_object *body = event_body(r, e, ref, type, reason, action, note);
    struct call *c = call_new(r, key, V_CREATE);
    err = c ? gm_kube_create(r->k, path, body, on_resp, c) : -ENOMEM;
    json_object_put(body);
    if (err) {
        if (c)
            call_free(c);
        forget(r, e);
        return err;
    }
    e->inflight = 1;
    r->stats.created++;
    return 0;
}

void gm_recorder_get_stats(const struct gm_recorder *r,
                           struct gm_recorder_stats *out)
{
    *out = r->stats;
    out->keys = r->entries.len;
    out->objects = r->objects.len;
}

static void timer_closed(uv_handle_t *h)
{
    struct gm_recorder *r = h->data;
    struct gm_map_entry *it;
    for (it = gm_map_first(&r->entries); it; it = gm_map_next(&r->entries, it))
        entry_free(it->value);
    gm_map_free(&r->entries);
    for (it = gm_map_first(&r->objects); it; it = gm_map_next(&r->objects, it))
        free(it->value);
    gm_map_free(&r->objects);
    free(r->identity);
    free(r->controller);
    free(r);
}

void gm_recorder_free(struct gm_recorder *r)
{
    if (r == NULL)
        return;
    if (r->drops_unlogged > 0)
        log_drops(r, uv_now(r->loop));
    /* Requests still out finish on their own and find no recorder. */
    for (struct call *c = r->calls; c; c = c->next)
        c->r = NULL;
    r->calls = NULL;
    uv_close((uv_handle_t *)&r->timer, timer_closed);
}
