#include "server/leader.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "server/kubetime.h"

enum state {
    ST_IDLE,
    ST_ACQUIRING,
    ST_LEADING,
    ST_RELEASING,
    ST_DONE, /* lost, released or freed: no more requests */
};

enum verb { V_GET, V_CREATE, V_UPDATE, V_RELEASE };

/* One request in flight. It outlives the elector when gm_leader_free runs
 * first: l is then NULL and the answer is dropped. */
struct call {
    struct gm_leader *l;
    enum verb verb;
    uint64_t sent_at; /* loop ms */
};

struct gm_leader {
    uv_loop_t *loop;
    struct gm_kube *k;
    uv_timer_t timer; /* the elector is freed in its close callback */
    char *ns, *name, *identity;
    char path[512];      /* the Lease */
    char coll_path[512]; /* the namespace's leases, for create */
    uint64_t lease_ms, deadline_ms, retry_ms;
    struct gm_leader_opts o;
    enum state st;
    struct call *inflight;
    json_object *lease; /* owned; the last Lease seen or written */
    /* What we last observed of the record and when (our monotonic clock),
     * the basis of expiry. */
    char observed[512];
    uint64_t observed_at;
    char holder[256];
    uint64_t last_renew; /* our last successful write */
    void (*release_done)(void *data, int err);
    void *release_data;
    bool release_reread; /* a 409 while releasing made us read it again */
};

static void schedule(struct gm_leader *l, uint64_t ms);
static void attempt(struct gm_leader *l);

/* ---- the record ---- */

static const char *spec_str(json_object *lease, const char *field)
{
    json_object *spec, *v;
    if (!json_object_object_get_ex(lease, "spec", &spec) ||
        !json_object_object_get_ex(spec, field, &v))
        return "";
    const char *s = json_object_get_string(v);
    return s ? s : "";
}

static int64_t spec_int(json_object *lease, const char *field)
{
    json_object *spec, *v;
    if (!json_object_object_get_ex(lease, "spec", &spec) ||
        !json_object_object_get_ex(spec, field, &v))
        return 0;
    return json_object_get_int64(v);
}

static void set_leader_gauge(struct gm_leader *l, int on)
{
    if (l->o.metrics)
        gm_metrics_gauge_set(l->o.metrics, GM_METRIC_LEADER, on, NULL);
}

/* Notes the record in lease; a change restarts the expiry clock. */
static void observe(struct gm_leader *l, json_object *lease)
{
    char rec[512];
    const char *holder = spec_str(lease, "holderIdentity");
    snprintf(rec, sizeof(rec), "%s|%s|%s|%lld|%lld", holder,
             spec_str(lease, "renewTime"), spec_str(lease, "acquireTime"),
             (long long)spec_int(lease, "leaseDurationSeconds"),
             (long long)spec_int(lease, "leaseTransitions"));
    if (strcmp(rec, l->observed) != 0) {
        snprintf(l->observed, sizeof(l->observed), "%s", rec);
        l->observed_at = uv_now(l->loop);
    }
    if (strcmp(holder, l->holder) != 0) {
        snprintf(l->holder, sizeof(l->holder), "%s", holder);
        gm_info("leader election: lease %s/%s held by %s", l->ns, l->name,
                holder[0] ? holder : "(nobody)");
        if (l->o.on_new_leader)
            l->o.on_new_leader(l->o.data, holder);
    }
    json_object_put(l->lease);
    l->lease = json_object_get(lease);
}

enum fill { FILL_CREATE, FILL_UPDATE, FILL_RELEASE };

/* Fills lease's spec with our record. Fields we do not manage (strategy,
 * preferredHolder) and metadata (resourceVersion, labels) are kept. Taking
 * over from anyone else, nobody included, counts a transition, as in
 * client-go. */
static void fill_spec(struct gm_leader *l, json_object *lease, enum fill how)
{
    int release = how == FILL_RELEASE;
    char now[GM_MICROTIME_LEN];
    json_object *spec;
    int64_t transitions = spec_int(lease, "leaseTransitions");
    const char *old_holder = spec_str(lease, "holderIdentity");
    int ours = strcmp(old_holder, l->identity) == 0;
    char acquire[GM_MICROTIME_LEN];

    gm_microtime_now(now, sizeof(now));
    snprintf(acquire, sizeof(acquire), "%s",
             ours && !release ? spec_str(lease, "acquireTime") : now);
    if (!ours && how == FILL_UPDATE)
        transitions++;
    if (!json_object_object_get_ex(lease, "spec", &spec)) {
        spec = json_object_new_object();
        json_object_object_add(lease, "spec", spec);
    }
    json_object_object_add(spec, "holderIdentity",
                           json_object_new_string(release ? "" : l->identity));
    json_object_object_add(
        spec, "leaseDurationSeconds",
        json_object_new_int64(release ? 1 : (int64_t)(l->lease_ms / 1000)));
    json_object_object_add(spec, "acquireTime",
                           json_object_new_string(acquire[0] ? acquire : now));
    json_object_object_add(spec, "renewTime", json_object_new_string(now));
    json_object_object_add(spec, "leaseTransitions",
                           json_object_new_int64(transitions));
}

static json_object *new_lease(struct gm_leader *l)
{
    json_object *o = json_object_new_object();
    json_object *md = json_object_new_object();
    json_object_object_add(o, "apiVersion",
                           json_object_new_string("coordination.k8s.io/v1"));
    json_object_object_add(o, "kind", json_object_new_string("Lease"));
    json_object_object_add(md, "name", json_object_new_string(l->name));
    json_object_object_add(md, "namespace", json_object_new_string(l->ns));
    json_object_object_add(o, "metadata", md);
    fill_spec(l, o, FILL_CREATE);
    return o;
}

/* ---- outcomes ---- */

static void lose(struct gm_leader *l, const char *why)
{
    gm_error("leader election: lost lease %s/%s: %s", l->ns, l->name, why);
    l->st = ST_DONE;
    uv_timer_stop(&l->timer);
    set_leader_gauge(l, 0);
    if (l->o.on_lost)
        l->o.on_lost(l->o.data);
}

/* sent_at: when the write was sent. The lease counts from then, not from
 * the answer: another replica saw renewTime change at about that moment,
 * and an answer that was slow to arrive must not stretch our term. */
static void succeeded(struct gm_leader *l, json_object *lease, uint64_t sent_at)
{
    uint64_t now = uv_now(l->loop);
    uint64_t end = sent_at + l->deadline_ms;
    observe(l, lease);
    l->last_renew = sent_at;
    if (l->st == ST_ACQUIRING && now + l->retry_ms >= end) {
        /* The write landed, but so late (a 429 waited out, a slow server)
         * that our term would end, by our own clock, before the next
         * renewal: starting work now would mean stopping it a moment
         * later. Write again first; the record is ours, so that is a
         * renewal, not a transition. */
        gm_warn("leader election: lease %s/%s taken after %llu ms, past the "
                "renew deadline; renewing before leading",
                l->ns, l->name, (unsigned long long)(now - sent_at));
        schedule(l, 0);
        return;
    }
    if (l->st == ST_ACQUIRING) {
        l->st = ST_LEADING;
        gm_info("leader election: acquired lease %s/%s as %s", l->ns, l->name,
                l->identity);
        set_leader_gauge(l, 1);
        if (l->o.on_started_leading)
            l->o.on_started_leading(l->o.data);
    }
    if (l->st == ST_LEADING) {
        /* A renewal answered late leaves less than a retry period: try
         * again halfway to the deadline rather than after it. */
        uint64_t left = end > now ? end - now : 0;
        schedule(l, left / 2 < l->retry_ms ? left / 2 : l->retry_ms);
    }
}

/* A failed attempt: while leading, keep trying until the renew deadline,
 * never sleeping past it; while acquiring, try again a retry period later
 * with client-go's jitter (factor 1.2) so replicas do not step in lockstep. */
static void failed(struct gm_leader *l)
{
    uint64_t now = uv_now(l->loop);
    if (l->st == ST_LEADING) {
        uint64_t end = l->last_renew + l->deadline_ms;
        if (now >= end) {
            lose(l, "no renewal within the renew deadline");
            return;
        }
        schedule(l, end - now < l->retry_ms ? end - now : l->retry_ms);
    } else if (l->st == ST_ACQUIRING) {
        uint64_t jitter =
            (uint64_t)((double)l->retry_ms * 1.2 * ((double)rand() / RAND_MAX));
        schedule(l, l->retry_ms + jitter);
    }
}

static void release_finished(struct gm_leader *l, int err)
{
    l->st = ST_DONE;
    set_leader_gauge(l, 0);
    if (err == 0)
        gm_info("leader election: released lease %s/%s", l->ns, l->name);
    else if (err == -ENOTCONN)
        gm_info("leader election: lease %s/%s not ours to release", l->ns,
                l->name);
    else
        gm_warn("leader election: release of %s/%s failed: %s", l->ns, l->name,
                strerror(-err));
    if (l->release_done)
        l->release_done(l->release_data, err);
}

/* ---- requests ---- */

static void on_resp(void *data, const struct gm_kube_resp *resp);

static int send_call(struct gm_leader *l, enum verb verb)
{
    struct call *c = calloc(1, sizeof(*c));
    json_object *body = NULL;
    int err;

    if (c == NULL)
        return -ENOMEM;
    c->l = l;
    c->verb = verb;
    c->sent_at = uv_now(l->loop);
    switch (verb) {
    case V_GET:
        err = gm_kube_get(l->k, l->path, on_resp, c);
        break;
    case V_CREATE:
        body = new_lease(l);
        err = gm_kube_create(l->k, l->coll_path, body, on_resp, c);
        break;
    case V_UPDATE:
    case V_RELEASE:
        /* A copy: the cached Lease stays what the server last said. */
        body = NULL;
        err = json_object_deep_copy(l->lease, &body, NULL) ? -ENOMEM : 0;
        if (!err) {
            fill_spec(l, body, verb == V_RELEASE ? FILL_RELEASE : FILL_UPDATE);
            err = gm_kube_update(l->k, l->path, body, on_resp, c);
        }
        break;
    default:
        err = -EINVAL;
    }
    json_object_put(body);
    if (err) {
        free(c);
        return err;
    }
    l->inflight = c;
    return 0;
}

/* Gives the Lease back: written from the Lease as the server last said
 * it, or, with none cached (a 409 dropped it), read first (handle() then
 * releases it if it is still ours). */
static void start_release(struct gm_leader *l)
{
    int err = send_call(l, l->lease ? V_RELEASE : V_GET);
    if (err)
        release_finished(l, err);
}

/* A write of ours answered 409 while releasing. Someone else wrote the
 * Lease, which need not mean it is theirs now: an edit of its labels or
 * annotations alone changes its resourceVersion. Read it again, once,
 * and release it if it is still ours, so the next replica need not wait
 * out leaseDurationSeconds. */
static void release_after_conflict(struct gm_leader *l)
{
    if (l->release_reread) {
        release_finished(l, -ENOTCONN);
        return;
    }
    l->release_reread = true;
    json_object_put(l->lease);
    l->lease = NULL;
    start_release(l);
}

static void handle(struct gm_leader *l, enum verb verb, uint64_t sent_at,
                   const struct gm_kube_resp *resp)
{
    long code = resp->code;
    const char *why = resp->error ? resp->error->message : "";

    if (verb == V_RELEASE && code == 409) {
        release_after_conflict(l);
        return;
    }
    if (verb == V_RELEASE) {
        release_finished(
            l, resp->error ? (resp->error->err ? resp->error->err : -EIO) : 0);
        return;
    }
    if (l->st == ST_RELEASING) {
        /* Whatever this was, our record is whatever the server holds now;
         * refresh it if needed and give it up. */
        if ((verb == V_UPDATE || verb == V_CREATE) && code == 409) {
            release_after_conflict(l);
            return;
        }
        /* The Lease could not be read again (not a 404: it is there):
         * say why, rather than call it not ours. */
        if (verb == V_GET && l->lease == NULL && code != 404 &&
            code / 100 != 2) {
            gm_warn("leader election: get lease to release it: %s", why);
            release_finished(
                l, resp->error && resp->error->err ? resp->error->err : -EIO);
            return;
        }
        if (resp->obj && code / 100 == 2)
            observe(l, resp->obj);
        if (l->lease &&
            strcmp(spec_str(l->lease, "holderIdentity"), l->identity) == 0)
            start_release(l);
        else
            release_finished(l, -ENOTCONN);
        return;
    }
    if (l->st != ST_ACQUIRING && l->st != ST_LEADING)
        return;

    switch (verb) {
    case V_GET:
        if (code == 404) {
            int err = send_call(l, V_CREATE);
            if (err)
                failed(l);
            return;
        }
        if (code != 200 || resp->obj == NULL) {
            gm_warn("leader election: get lease: %s", why);
            failed(l);
            return;
        }
        observe(l, resp->obj);
        const char *holder = spec_str(resp->obj, "holderIdentity");
        int64_t dur = spec_int(resp->obj, "leaseDurationSeconds");
        if (holder[0] && strcmp(holder, l->identity) != 0 &&
            l->observed_at + (uint64_t)(dur > 0 ? dur : 0) * 1000 >
                uv_now(l->loop)) {
            /* Held and live. If we thought we led, another replica took
             * over: stop acting now, not at our renew deadline. */
            if (l->st == ST_LEADING) {
                lose(l, "another replica holds it");
                return;
            }
            failed(l);
            return;
        }
        if (send_call(l, V_UPDATE))
            failed(l);
        return;
    case V_CREATE:
    case V_UPDATE:
        if (code / 100 == 2 && resp->obj) {
            succeeded(l, resp->obj, sent_at);
            return;
        }
        if (code == 409 || code == 404) {
            /* Someone wrote the Lease since we read it, or deleted it:
             * read it again before the next attempt (a deleted Lease is
             * then created afresh, by us or by the replica that reads
             * first), rather than send the stale copy until the renew
             * deadline ends our term. */
            json_object_put(l->lease);
            l->lease = NULL;
        }
        gm_warn("leader election: %s lease: %s",
                verb == V_CREATE ? "create" : "update", why);
        failed(l);
        return;
    default:
        return;
    }
}

static void on_resp(void *data, const struct gm_kube_resp *resp)
{
    struct call *c = data;
    struct gm_leader *l = c->l;
    enum verb verb = c->verb;
    uint64_t sent_at = c->sent_at;
    free(c);
    if (l == NULL)
        return; /* the elector was freed */
    l->inflight = NULL;
    handle(l, verb, sent_at, resp);
}

/* One step: renew directly while we hold a fresh copy, else read first. */
static void attempt(struct gm_leader *l)
{
    uint64_t now = uv_now(l->loop);
    uint64_t end = l->last_renew + l->deadline_ms;
    if (l->st == ST_LEADING && now >= end) {
        lose(l, "no renewal within the renew deadline");
        return;
    }
    if (l->inflight) {
        /* An answer still awaited (a slow server, or a 429 the client
         * waits out before it asks again): keep the deadline meanwhile. */
        schedule(l, l->st == ST_LEADING ? end - now : l->retry_ms);
        return;
    }
    int use_cached =
        l->st == ST_LEADING && l->lease &&
        strcmp(spec_str(l->lease, "holderIdentity"), l->identity) == 0;
    int err = send_call(l, use_cached ? V_UPDATE : V_GET);
    if (err) {
        gm_warn("leader election: cannot send: %s", strerror(-err));
        failed(l);
    } else if (l->st == ST_LEADING) {
        /* Only the answer wakes us otherwise, and it may come after
         * another replica could take the Lease: we stop at the deadline
         * without it. */
        schedule(l, end - now);
    }
}

static void timer_cb(uv_timer_t *t)
{
    attempt(t->data);
}

static void schedule(struct gm_leader *l, uint64_t ms)
{
    uv_timer_start(&l->timer, timer_cb, ms, 0);
}

/* ---- lifecycle ---- */

int gm_leader_new(uv_loop_t *loop, struct gm_kube *k,
                  const struct gm_leader_opts *opts, struct gm_leader **out)
{
    if (opts->namespace == NULL || opts->namespace[0] == '\0' ||
        opts->identity == NULL || opts->identity[0] == '\0')
        return -EINVAL;
    struct gm_leader *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return -ENOMEM;
    l->loop = loop;
    l->k = k;
    l->o = *opts;
    l->lease_ms = opts->lease_duration_ms ? opts->lease_duration_ms : 15000;
    l->deadline_ms = opts->renew_deadline_ms ? opts->renew_deadline_ms : 10000;
    l->retry_ms = opts->retry_period_ms ? opts->retry_period_ms : 2000;
    if (l->lease_ms < 1000)
        l->lease_ms = 1000;
    l->ns = strdup(opts->namespace);
    l->name = strdup(opts->name ? opts->name : GM_LEADER_LEASE_NAME);
    l->identity = strdup(opts->identity);
    int bad = l->deadline_ms >= l->lease_ms || l->retry_ms >= l->deadline_ms;
    if (!bad && l->ns && l->name) {
        int n = snprintf(l->coll_path, sizeof(l->coll_path),
                         "/apis/coordination.k8s.io/v1/namespaces/%s/leases",
                         l->ns);
        int m =
            snprintf(l->path, sizeof(l->path), "%s/%s", l->coll_path, l->name);
        bad = n < 0 || (size_t)n >= sizeof(l->coll_path) || m < 0 ||
              (size_t)m >= sizeof(l->path);
    }
    if (bad || !l->ns || !l->name || !l->identity) {
        free(l->ns);
        free(l->name);
        free(l->identity);
        free(l);
        return bad ? -EINVAL : -ENOMEM;
    }
    l->o.namespace = l->o.name = l->o.identity = NULL;
    uv_timer_init(loop, &l->timer);
    l->timer.data = l;
    *out = l;
    return 0;
}

int gm_leader_start(struct gm_leader *l)
{
    if (l->st != ST_IDLE)
        return -EALREADY;
    l->st = ST_ACQUIRING;
    gm_info("leader election: trying to acquire %s/%s as %s", l->ns, l->name,
            l->identity);
    schedule(l, 0);
    return 0;
}

int gm_leader_is_leader(const struct gm_leader *l)
{
    return l->st == ST_LEADING;
}

const char *gm_leader_holder(const struct gm_leader *l)
{
    return l->holder;
}

const char *gm_leader_identity(const struct gm_leader *l)
{
    return l->identity;
}

int gm_leader_release(struct gm_leader *l, void (*done)(void *data, int err),
                      void *data)
{
    uv_timer_stop(&l->timer);
    /* While acquiring, a takeover write in flight may land (its answer
     * decides, as a renewal's does), or one that landed too late to lead
     * on may already hold the Lease: either way it is given back, not left
     * held by a process about to exit. */
    int ours = l->lease &&
               strcmp(spec_str(l->lease, "holderIdentity"), l->identity) == 0;
    if (l->st != ST_LEADING &&
        !(l->st == ST_ACQUIRING && (l->inflight || ours))) {
        l->st = ST_DONE;
        return -ENOTCONN;
    }
    l->st = ST_RELEASING;
    l->release_done = done;
    l->release_data = data;
    /* With a request in flight, its answer starts the release (handle()),
     * so the release carries the newest resourceVersion. */
    if (l->inflight == NULL)
        start_release(l);
    return 0;
}

static void timer_closed(uv_handle_t *h)
{
    struct gm_leader *l = h->data;
    json_object_put(l->lease);
    free(l->ns);
    free(l->name);
    free(l->identity);
    free(l);
}

void gm_leader_free(struct gm_leader *l)
{
    if (l == NULL)
        return;
    if (l->inflight)
        l->inflight->l = NULL;
    l->st = ST_DONE;
    uv_close((uv_handle_t *)&l->timer, timer_closed);
}

int gm_leader_default_identity(char *out, size_t n)
{
    const char *pod = getenv("POD_NAME");
    /* A name that does not fit is not cut (two replicas could share the
     * cut) but replaced by one unique to this process. */
    if (pod && pod[0] && strlen(pod) < n) {
        snprintf(out, n, "%s", pod);
        return 0;
    }
    char host[256];
    size_t hl = sizeof(host);
    if (uv_os_gethostname(host, &hl) != 0)
        snprintf(host, sizeof(host), "gpumode");
    unsigned char r[4] = {0};
    if (uv_random(NULL, NULL, r, sizeof(r), 0, NULL) != 0) {
        uint64_t t = uv_hrtime();
        memcpy(r, &t, sizeof(r));
    }
    if ((size_t)snprintf(out, n, "%s_%02x%02x%02x%02x", host, r[0], r[1], r[2],
                         r[3]) >= n)
        return -E2BIG;
    return 0;
}
