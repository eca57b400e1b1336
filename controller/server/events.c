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

#define NOTE_MAX 1024 /* events.k8s.io validation: note <= 1 KiB */

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
    double qps, tokens;
    int burst;
    uint64_t refilled_at;
    struct gm_map entries; /* key -> struct entry * */
    struct call *calls;    /* requests out */
    unsigned long seq;     /* makes Event names unique */
    struct gm_recorder_stats stats;
};

static void schedule_flush(struct gm_recorder *r);

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

static int take_token(struct gm_recorder *r)
{
    uint64_t now = uv_now(r->loop);
    r->tokens += (double)(now - r->refilled_at) / 1000.0 * r->qps;
    if (r->tokens > r->burst)
        r->tokens = r->burst;
    r->refilled_at = now;
    if (r->tokens < 1)
        return -EAGAIN;
    r->tokens -= 1;
    return 0;
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

/* Sends the patches that are due and sleeps until the next one is. */
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
    r->qps = opts->qps > 0 ? opts->qps : 1;
    r->burst = opts->burst > 0 ? opts->burst : 25;
    r->tokens = r->burst;
    r->refilled_at = uv_now(loop);
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
    if (make_room(r) != 0 || take_token(r) != 0) {
        r->stats.dropped++;
        return -EAGAIN;
    }
    int err = new_entry(r, key, ref, &e);
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
}

static void timer_closed(uv_handle_t *h)
{
    struct gm_recorder *r = h->data;
    struct gm_map_entry *it;
    for (it = gm_map_first(&r->entries); it; it = gm_map_next(&r->entries, it))
        entry_free(it->value);
    gm_map_free(&r->entries);
    free(r->identity);
    free(r->controller);
    free(r);
}

void gm_recorder_free(struct gm_recorder *r)
{
    if (r == NULL)
        return;
    /* Requests still out finish on their own and find no recorder. */
    for (struct call *c = r->calls; c; c = c->next)
        c->r = NULL;
    r->calls = NULL;
    uv_close((uv_handle_t *)&r->timer, timer_closed);
}
