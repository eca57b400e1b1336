/* Lease leader election against a loopback API server that keeps one Lease
 * with resourceVersion checks (PUT with a stale version answers 409, POST
 * of an existing Lease answers 409). Durations are scaled down (1 s lease,
 * 500 ms renew deadline, 100 ms retry) so each case runs in about a
 * second. */
#include <errno.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kube/client.h"
#include "server/leader.h"
#include "support/httpd.h"

#define LEASE_PATH "/apis/coordination.k8s.io/v1/namespaces/gm/leases"
#define ME "me_0001"

struct fx {
    uv_loop_t loop;
    struct th_server *srv;
    struct gm_kube_config cfg;
    struct gm_kube *k;
    struct gm_leader *l;
    struct gm_metrics *metrics;
    /* the store */
    json_object *lease; /* NULL: absent */
    long rv;
    int other_renews; /* bump renewTime on every GET, as a live holder */
    int put_conflict; /* every PUT answers 409 */
    int put_busy;     /* every PUT answers 429, Retry-After: 1 */
    int get_refused;  /* every GET answers 403 */
    /* The next PUT finds the Lease edited (a new resourceVersion, the
     * holder unchanged: a label added) and, before its answer, the
     * controller is told to stop (gm_leader_release). */
    int edit_and_release_on_put;
    /* what was seen */
    int gets, posts, puts, conflicts;
    char last_put[4096];
    char last_post[4096];
    /* callbacks */
    int started, lost, released, release_err;
    int puts_at_start;
    uint64_t started_at, lost_at;
};

static const char *conflict =
    "{\"kind\":\"Status\",\"status\":\"Failure\",\"reason\":\"Conflict\","
    "\"message\":\"the object has been modified\",\"code\":409}";

static void store(struct fx *f, json_object *obj)
{
    char rv[32];
    json_object *md;
    snprintf(rv, sizeof(rv), "%ld", ++f->rv);
    json_object_object_get_ex(obj, "metadata", &md);
    json_object_object_add(md, "resourceVersion", json_object_new_string(rv));
    if (obj != f->lease) {
        json_object_put(f->lease);
        f->lease = obj;
    }
}

static const char *lease_text(struct fx *f)
{
    return json_object_to_json_string_ext(f->lease, JSON_C_TO_STRING_PLAIN);
}

static const char *rv_of(json_object *obj)
{
    json_object *md, *rv;
    if (!json_object_object_get_ex(obj, "metadata", &md) ||
        !json_object_object_get_ex(md, "resourceVersion", &rv))
        return "";
    return json_object_get_string(rv);
}

static void on_released(void *data, int err);

static void handler(void *ud, const struct th_req *r, struct th_conn *c)
{
    struct fx *f = ud;
    if (strcmp(r->method, "GET") == 0) {
        f->gets++;
        if (f->get_refused) {
            th_respond(c, 403, NULL,
                       "{\"kind\":\"Status\",\"reason\":\"Forbidden\","
                       "\"code\":403}");
            return;
        }
        if (f->lease == NULL) {
            th_respond(c, 404, NULL,
                       "{\"kind\":\"Status\",\"reason\":\"NotFound\","
                       "\"code\":404}");
            return;
        }
        if (f->other_renews) {
            json_object *spec;
            char t[64];
            json_object_object_get_ex(f->lease, "spec", &spec);
            snprintf(t, sizeof(t), "2026-01-01T00:00:%02d.000000Z",
                     f->gets % 60);
            json_object_object_add(spec, "renewTime",
                                   json_object_new_string(t));
            store(f, f->lease);
        }
        th_respond(c, 200, NULL, lease_text(f));
    } else if (strcmp(r->method, "POST") == 0) {
        f->posts++;
        snprintf(f->last_post, sizeof(f->last_post), "%s", r->body);
        assert_string_equal(r->path, LEASE_PATH);
        if (f->lease) {
            f->conflicts++;
            th_respond(c, 409, NULL, conflict);
            return;
        }
        store(f, json_tokener_parse(r->body));
        th_respond(c, 201, NULL, lease_text(f));
    } else if (strcmp(r->method, "PUT") == 0) {
        f->puts++;
        snprintf(f->last_put, sizeof(f->last_put), "%s", r->body);
        assert_string_equal(r->path, LEASE_PATH "/gpumode-controller");
        if (f->put_busy) {
            th_respond(c, 429, "Retry-After: 1\r\n",
                       "{\"kind\":\"Status\",\"reason\":\"TooManyRequests\","
                       "\"code\":429}");
            return;
        }
        if (f->lease == NULL) { /* no create on update for a Lease */
            th_respond(c, 404, NULL,
                       "{\"kind\":\"Status\",\"reason\":\"NotFound\","
                       "\"code\":404}");
            return;
        }
        if (f->edit_and_release_on_put) {
            f->edit_and_release_on_put = 0;
            store(f, f->lease);
            assert_int_equal(gm_leader_release(f->l, on_released, f), 0);
        }
        json_object *obj = json_tokener_parse(r->body);
        if (f->put_conflict || strcmp(rv_of(obj), rv_of(f->lease)) != 0) {
            f->conflicts++;
            json_object_put(obj);
            th_respond(c, 409, NULL, conflict);
            return;
        }
        store(f, obj);
        th_respond(c, 200, NULL, lease_text(f));
    } else {
        th_respond(c, 405, NULL, "{}");
    }
}

static void on_started(void *data)
{
    struct fx *f = data;
    f->started++;
    f->started_at = uv_now(&f->loop);
    f->puts_at_start = f->puts;
}

static void on_lost(void *data)
{
    struct fx *f = data;
    f->lost++;
    f->lost_at = uv_now(&f->loop);
}

static struct fx *fx_new(void)
{
    struct fx *f = calloc(1, sizeof(*f));
    uv_loop_init(&f->loop);
    assert_int_equal(th_start(&f->loop, handler, f, &f->srv), 0);
    f->cfg.server = strdup(th_url(f->srv));
    assert_int_equal(gm_kube_new(&f->loop, &f->cfg, NULL, &f->k), 0);
    assert_int_equal(gm_metrics_new(&f->metrics), 0);
    assert_int_equal(gm_metrics_define_gpumode(f->metrics, "t"), 0);
    struct gm_leader_opts o = {
        .namespace = "gm",
        .identity = ME,
        .lease_duration_ms = 1000,
        .renew_deadline_ms = 500,
        .retry_period_ms = 100,
        .on_started_leading = on_started,
        .on_lost = on_lost,
        .data = f,
        .metrics = f->metrics,
    };
    assert_int_equal(gm_leader_new(&f->loop, f->k, &o, &f->l), 0);
    return f;
}

static void fx_free(struct fx *f)
{
    gm_leader_free(f->l);
    gm_kube_free(f->k);
    th_stop(f->srv);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    json_object_put(f->lease);
    gm_metrics_free(f->metrics);
    free(f->cfg.server);
    free(f);
}

static void run_for(struct fx *f, int ms)
{
    int never = 0;
    th_run_until(&f->loop, &never, ms);
}

static const char *spec_field(const char *body, const char *field)
{
    static char out[256];
    json_object *o = json_tokener_parse(body), *spec, *v;
    out[0] = '\0';
    if (o && json_object_object_get_ex(o, "spec", &spec) &&
        json_object_object_get_ex(spec, field, &v))
        snprintf(out, sizeof(out), "%s", json_object_get_string(v));
    json_object_put(o);
    return out;
}

static void assert_microtime(const char *s)
{
    regex_t re;
    assert_int_equal(regcomp(&re,
                             "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:"
                             "[0-9]{2}\\.[0-9]{6}Z$",
                             REG_EXTENDED | REG_NOSUB),
                     0);
    if (regexec(&re, s, 0, NULL, 0) != 0)
        fail_msg("not a MicroTime: '%s'", s);
    regfree(&re);
}

static double leader_gauge(struct fx *f)
{
    double v = -1;
    assert_int_equal(gm_metrics_value(f->metrics, GM_METRIC_LEADER, &v, NULL),
                     0);
    return v;
}

static void other_holds(struct fx *f)
{
    store(f, json_tokener_parse(
                 "{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":"
                 "\"Lease\",\"metadata\":{\"name\":\"gpumode-controller\","
                 "\"namespace\":\"gm\",\"labels\":{\"keep\":\"me\"}},"
                 "\"spec\":{\"holderIdentity\":\"other\","
                 "\"leaseDurationSeconds\":1,\"acquireTime\":"
                 "\"2026-01-01T00:00:00.000000Z\",\"renewTime\":"
                 "\"2026-01-01T00:00:00.000000Z\",\"leaseTransitions\":4}}"));
}

static void test_acquire_new_and_renew(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    assert_int_equal(gm_leader_start(f->l), 0);
    assert_true(th_run_until(&f->loop, &f->started, 2000));
    assert_true(gm_leader_is_leader(f->l));
    assert_int_equal(f->posts, 1);
    assert_string_equal(spec_field(f->last_post, "holderIdentity"), ME);
    assert_string_equal(spec_field(f->last_post, "leaseDurationSeconds"), "1");
    assert_string_equal(spec_field(f->last_post, "leaseTransitions"), "0");
    assert_microtime(spec_field(f->last_post, "renewTime"));
    assert_microtime(spec_field(f->last_post, "acquireTime"));
    assert_true(leader_gauge(f) == 1);

    /* Renewals: PUTs straight away with the version last written, none of
     * them refused, and no re-reads while all goes well. */
    int gets = f->gets;
    run_for(f, 450);
    assert_true(f->puts >= 3);
    assert_int_equal(f->conflicts, 0);
    assert_int_equal(f->gets, gets);
    assert_int_equal(f->lost, 0);
    assert_string_equal(spec_field(f->last_put, "holderIdentity"), ME);
    /* acquireTime stays that of the acquisition. */
    assert_string_equal(spec_field(f->last_put, "acquireTime"),
                        spec_field(f->last_post, "acquireTime"));
    fx_free(f);
}

static void test_take_over_expired(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    other_holds(f);
    uint64_t t0 = uv_now(&f->loop);
    assert_int_equal(gm_leader_start(f->l), 0);
    run_for(f, 600);
    assert_false(gm_leader_is_leader(f->l));
    assert_string_equal(gm_leader_holder(f->l), "other");
    assert_int_equal(f->puts, 0);
    /* The holder never renewed: a lease duration after we first saw it,
     * measured on our clock, it is ours. */
    assert_true(th_run_until(&f->loop, &f->started, 3000));
    assert_true(f->started_at - t0 >= 1000);
    assert_string_equal(spec_field(lease_text(f), "holderIdentity"), ME);
    assert_string_equal(spec_field(lease_text(f), "leaseTransitions"), "5");
    assert_int_equal(f->posts, 0);
    /* Metadata we do not manage survives the update. */
    assert_non_null(strstr(lease_text(f), "\"keep\":\"me\""));
    fx_free(f);
}

static void test_live_lease_not_taken(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    other_holds(f);
    f->other_renews = 1;
    assert_int_equal(gm_leader_start(f->l), 0);
    run_for(f, 2500);
    assert_int_equal(f->started, 0);
    assert_false(gm_leader_is_leader(f->l));
    assert_int_equal(f->puts, 0);
    assert_int_equal(f->posts, 0);
    assert_true(f->gets >= 5);
    assert_true(leader_gauge(f) == 0);
    fx_free(f);
}

static void test_create_race_lost(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    assert_int_equal(gm_leader_start(f->l), 0);
    /* Another replica creates the Lease between our GET and POST: the
     * POST's 409 is not leadership. Simulated by storing a lease right
     * after the first GET. */
    while (f->gets == 0)
        uv_run(&f->loop, UV_RUN_ONCE);
    other_holds(f);
    f->other_renews = 1;
    run_for(f, 500);
    assert_int_equal(f->started, 0);
    /* The race did happen: one create, refused. */
    assert_int_equal(f->posts, 1);
    assert_true(f->conflicts >= 1);
    fx_free(f);
}

static void test_conflict_on_renew_is_lost(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    assert_int_equal(gm_leader_start(f->l), 0);
    assert_true(th_run_until(&f->loop, &f->started, 2000));
    run_for(f, 150);
    /* Someone else wrote the Lease: our renewals now fail. */
    f->put_conflict = 1;
    uint64_t t0 = uv_now(&f->loop);
    assert_true(th_run_until(&f->loop, &f->lost, 3000));
    uint64_t took = f->lost_at - t0;
    /* Lost once the renew deadline passed since the last good renewal:
     * within (deadline - retry, deadline + retry]. */
    assert_true(took >= 350);
    assert_true(took <= 700);
    assert_false(gm_leader_is_leader(f->l));
    assert_true(f->conflicts >= 1);
    assert_true(leader_gauge(f) == 0);
    /* After a conflict the Lease is read again before writing. */
    assert_true(f->gets >= 2);
    int puts = f->puts;
    run_for(f, 300);
    assert_int_equal(f->puts, puts); /* nothing more once lost */
    assert_int_equal(f->lost, 1);
    fx_free(f);
}

/* A renewal the API server keeps answering 429 (retried after its
 * Retry-After): the renew deadline still ends our term while that answer
 * is awaited, before another replica may take the Lease. */
static void test_deadline_kept_while_renewal_waits(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    assert_int_equal(gm_leader_start(f->l), 0);
    assert_true(th_run_until(&f->loop, &f->started, 2000));
    run_for(f, 150);
    f->put_busy = 1;
    uint64_t t0 = uv_now(&f->loop);
    assert_true(th_run_until(&f->loop, &f->lost, 3000));
    assert_true(f->lost_at - t0 <= 700);
    assert_false(gm_leader_is_leader(f->l));
    fx_free(f);
}

/* Another replica took the Lease over (our renewal meets its write): we
 * stop as soon as we read it, not at our renew deadline, so two leaders
 * never act at once for longer than one retry. */
static void test_taken_over_is_lost_at_once(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    assert_int_equal(gm_leader_start(f->l), 0);
    assert_true(th_run_until(&f->loop, &f->started, 2000));
    run_for(f, 150);
    uint64_t t0 = uv_now(&f->loop);
    other_holds(f); /* a new resourceVersion: our next PUT gets 409 */
    assert_true(th_run_until(&f->loop, &f->lost, 3000));
    /* One retry period (100 ms) to meet the 409, one GET: well inside the
     * 500 ms deadline, which a lost lease used to wait out. */
    assert_true(f->lost_at - t0 < 350);
    assert_false(gm_leader_is_leader(f->l));
    fx_free(f);
}

/* Someone deleted the Lease while we lead (kubectl delete lease): our
 * renewal of the stale copy answers 404; we read it again and create it
 * afresh, staying the leader, where the stale copy used to be sent until
 * the renew deadline ended our term. */
static void test_deleted_lease_is_created_again(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    assert_int_equal(gm_leader_start(f->l), 0);
    assert_true(th_run_until(&f->loop, &f->started, 2000));
    run_for(f, 150);
    int posts = f->posts;
    json_object_put(f->lease);
    f->lease = NULL;
    run_for(f, 1200); /* over two renew deadlines */
    assert_int_equal(f->lost, 0);
    assert_true(gm_leader_is_leader(f->l));
    assert_int_equal(f->posts, posts + 1);
    assert_non_null(f->lease);
    assert_string_equal(spec_field(lease_text(f), "holderIdentity"), ME);
    assert_int_equal(f->started, 1);
    fx_free(f);
}

static void on_released(void *data, int err)
{
    struct fx *f = data;
    f->released = 1;
    f->release_err = err;
}

static void test_release_on_stop(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    assert_int_equal(gm_leader_release(f->l, on_released, f), -ENOTCONN);
    gm_leader_free(f->l);
    struct gm_leader_opts o = {.namespace = "gm",
                               .identity = ME,
                               .lease_duration_ms = 1000,
                               .renew_deadline_ms = 500,
                               .retry_period_ms = 100,
                               .on_started_leading = on_started,
                               .on_lost = on_lost,
                               .data = f};
    assert_int_equal(gm_leader_new(&f->loop, f->k, &o, &f->l), 0);
    assert_int_equal(gm_leader_start(f->l), 0);
    assert_true(th_run_until(&f->loop, &f->started, 2000));
    run_for(f, 120);
    assert_int_equal(gm_leader_release(f->l, on_released, f), 0);
    assert_true(th_run_until(&f->loop, &f->released, 2000));
    assert_int_equal(f->release_err, 0);
    assert_false(gm_leader_is_leader(f->l));
    assert_string_equal(spec_field(lease_text(f), "holderIdentity"), "");
    assert_string_equal(spec_field(lease_text(f), "leaseDurationSeconds"), "1");
    int puts = f->puts;
    run_for(f, 300);
    assert_int_equal(f->puts, puts);
    assert_int_equal(f->lost, 0);
    fx_free(f);
}

/* A 409 on a renewal need not mean the Lease is someone else's: an edit
 * of its metadata alone changes its resourceVersion. A release after such
 * a 409 (no Lease cached), or while the renewal that meets it is out,
 * reads the Lease again and gives it back when it is still ours, so the
 * next replica need not wait out leaseDurationSeconds. */
static void test_release_after_conflict_reads_again(void **state)
{
    (void)state;
    for (int in_flight = 0; in_flight <= 1; in_flight++) {
        struct fx *f = fx_new();
        assert_int_equal(gm_leader_start(f->l), 0);
        assert_true(th_run_until(&f->loop, &f->started, 2000));
        run_for(f, 120);
        if (in_flight) {
            f->edit_and_release_on_put = 1;
        } else {
            int conflicts = f->conflicts;
            store(f, f->lease); /* edited: the holder is still us */
            for (int i = 0; i < 40 && f->conflicts == conflicts; i++)
                run_for(f, 25);
            assert_true(f->conflicts > conflicts);
            assert_int_equal(gm_leader_release(f->l, on_released, f), 0);
        }
        assert_true(th_run_until(&f->loop, &f->released, 2000));
        assert_int_equal(f->release_err, 0);
        assert_string_equal(spec_field(lease_text(f), "holderIdentity"), "");
        fx_free(f);
    }

    /* The Lease cannot be read again (403): an error, not "not ours". */
    struct fx *f = fx_new();
    assert_int_equal(gm_leader_start(f->l), 0);
    assert_true(th_run_until(&f->loop, &f->started, 2000));
    run_for(f, 120);
    int conflicts = f->conflicts;
    store(f, f->lease);
    for (int i = 0; i < 40 && f->conflicts == conflicts; i++)
        run_for(f, 25);
    f->get_refused = 1;
    assert_int_equal(gm_leader_release(f->l, on_released, f), 0);
    assert_true(th_run_until(&f->loop, &f->released, 2000));
    assert_true(f->release_err != 0 && f->release_err != -ENOTCONN);
    fx_free(f);
}

static void test_options_and_identity(void **state)
{
    (void)state;
    struct gm_leader *l;
    struct gm_leader_opts o = {.namespace = "gm", .identity = "x"};
    uv_loop_t loop;
    uv_loop_init(&loop);
    o.renew_deadline_ms = 20000; /* not below the lease duration */
    assert_int_equal(gm_leader_new(&loop, NULL, &o, &l), -EINVAL);
    o.renew_deadline_ms = 0;
    o.identity = NULL;
    assert_int_equal(gm_leader_new(&loop, NULL, &o, &l), -EINVAL);
    uv_loop_close(&loop);

    char id[300];
    setenv("POD_NAME", "gpumode-controller-7d9f-abcde", 1);
    assert_int_equal(gm_leader_default_identity(id, sizeof(id)), 0);
    assert_string_equal(id, "gpumode-controller-7d9f-abcde");
    unsetenv("POD_NAME");
    assert_int_equal(gm_leader_default_identity(id, sizeof(id)), 0);
    char *us = strrchr(id, '_');
    assert_non_null(us);
    assert_int_equal(strlen(us + 1), 8);
    assert_int_equal(strspn(us + 1, "0123456789abcdef"), 8);
    char other[300];
    assert_int_equal(gm_leader_default_identity(other, sizeof(other)), 0);
    assert_string_not_equal(id, other);
    assert_int_equal(gm_leader_default_identity(id, 4), -E2BIG);
    /* A pod name too long for the buffer is not cut: two replicas could
     * share the cut. */
    char name[200];
    memset(name, 'p', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    setenv("POD_NAME", name, 1);
    char small[100];
    assert_int_equal(gm_leader_default_identity(small, sizeof(small)), 0);
    assert_null(strstr(small, "pppp"));
    us = strrchr(small, '_');
    assert_non_null(us);
    assert_int_equal(strspn(us + 1, "0123456789abcdef"), 8);
    assert_int_equal(gm_leader_default_identity(id, sizeof(id)), 0);
    assert_string_equal(id, name);
    unsetenv("POD_NAME");
}

/* A Lease nobody holds (released), which the elector sets out to take;
 * its first write is answered 429 (Retry-After: 1 s), so the retry that
 * lands comes after the 500 ms renew deadline. Returns once that first
 * write was refused; the retry is still to come. */
static void take_free_lease_slowly(struct fx *f)
{
    store(f, json_tokener_parse(
                 "{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":"
                 "\"Lease\",\"metadata\":{\"name\":\"gpumode-controller\","
                 "\"namespace\":\"gm\"},\"spec\":{\"holderIdentity\":\"\","
                 "\"leaseDurationSeconds\":1,\"leaseTransitions\":4}}"));
    f->put_busy = 1;
    assert_int_equal(gm_leader_start(f->l), 0);
    while (f->puts == 0)
        uv_run(&f->loop, UV_RUN_ONCE);
    f->put_busy = 0;
}

/* The write that takes a free Lease meets a 429 and lands after the client
 * waits out Retry-After (1 s), past the 500 ms renew deadline counted from
 * the first send. Leading then would end at the next attempt, with work
 * just started: the elector writes again first and leads on that write. */
static void test_late_acquire_renews_before_leading(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    take_free_lease_slowly(f);
    assert_true(th_run_until(&f->loop, &f->started, 3000));
    /* the refused write, its late retry, then the write it leads on */
    assert_int_equal(f->puts_at_start, 3);
    assert_string_equal(spec_field(lease_text(f), "holderIdentity"), ME);
    assert_string_equal(spec_field(lease_text(f), "leaseTransitions"), "5");
    run_for(f, 600);
    assert_int_equal(f->lost, 0);
    assert_true(gm_leader_is_leader(f->l));
    fx_free(f);
}

/* A replica told to stop while its takeover write waits out a 429: the
 * write lands, and the elector gives the Lease straight back instead of
 * leading or leaving it held by a process about to exit. */
static void test_release_while_acquiring(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    take_free_lease_slowly(f);
    assert_int_equal(gm_leader_release(f->l, on_released, f), 0);
    assert_true(th_run_until(&f->loop, &f->released, 3000));
    assert_int_equal(f->release_err, 0);
    assert_int_equal(f->started, 0);
    assert_false(gm_leader_is_leader(f->l));
    assert_string_equal(spec_field(lease_text(f), "holderIdentity"), "");
    assert_string_equal(spec_field(lease_text(f), "leaseDurationSeconds"), "1");
    int puts = f->puts, gets = f->gets;
    run_for(f, 300);
    assert_int_equal(f->puts, puts);
    assert_int_equal(f->gets, gets);
    fx_free(f);
}

/* Told to stop after a late takeover landed and the read before its
 * renewal failed (the elector holds the Lease but does not lead, and has
 * nothing in flight while it waits to try again): the Lease is given
 * back. */
static void test_release_after_late_acquire(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    take_free_lease_slowly(f);
    f->get_refused = 1;
    int gets = f->gets; /* the read before the first write */
    while (f->gets == gets)
        uv_run(&f->loop, UV_RUN_ONCE);
    run_for(f, 50); /* the 403 read; the next try is 100 ms or more away */
    assert_string_equal(gm_leader_holder(f->l), ME);
    assert_false(gm_leader_is_leader(f->l));
    assert_int_equal(gm_leader_release(f->l, on_released, f), 0);
    assert_true(th_run_until(&f->loop, &f->released, 3000));
    assert_int_equal(f->release_err, 0);
    assert_int_equal(f->started, 0);
    assert_string_equal(spec_field(lease_text(f), "holderIdentity"), "");
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_acquire_new_and_renew),
        cmocka_unit_test(test_take_over_expired),
        cmocka_unit_test(test_live_lease_not_taken),
        cmocka_unit_test(test_create_race_lost),
        cmocka_unit_test(test_conflict_on_renew_is_lost),
        cmocka_unit_test(test_deadline_kept_while_renewal_waits),
        cmocka_unit_test(test_taken_over_is_lost_at_once),
        cmocka_unit_test(test_deleted_lease_is_created_again),
        cmocka_unit_test(test_release_on_stop),
        cmocka_unit_test(test_release_after_conflict_reads_again),
        cmocka_unit_test(test_options_and_identity),
        cmocka_unit_test(test_late_acquire_renews_before_leading),
        cmocka_unit_test(test_release_while_acquiring),
        cmocka_unit_test(test_release_after_late_acquire),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
