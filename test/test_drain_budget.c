/* An eviction a PodDisruptionBudget refused (429) is asked again when the
 * budget allows a disruption, not only on the five-second timer: the
 * controller starts watching budgets at the first refusal and retries as
 * soon as one of the pod's namespace reports disruptionsAllowed > 0.
 *
 * Budgets of other namespaces and malformed ones change nothing.
 *
 * Real libcurl and libuv against the test server, which plays the API
 * server: one node in Draining with one GPU pod, a budget that allows
 * nothing until the test frees it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "nodeswitch/record.h"
#include "support/ctlfx.h"

struct fx {
    struct th_ctl c;
    char *record;              /* owned: the node's switch annotation */
    struct th_conn *pdb_watch; /* the budget watch, kept open */
    uv_timer_t free_timer;
    int evictions;
    int pdb_lists_before_429; /* budget lists before the first refusal */
    int pdb_lists;
    uint64_t refused_at, freed_at, retried_at; /* loop ms */
    int retried;
    /* The race case: the first retry is held while the budget changes
     * again, then refused. */
    uv_timer_t hold_timer;
    struct th_conn *held;
    int hold_stage;
    uint64_t refused_again_at;
};

static const char pdb_json[] =
    "{\"metadata\":{\"name\":\"work\",\"namespace\":\"default\","
    "\"resourceVersion\":\"%s\"},\"status\":{\"disruptionsAllowed\":%d}}";

/* What the budget watch delivers 300 ms after it opens (set per test). */
static const char *budget_events;
/* When set, the first retry is held; 100 ms in, the watch delivers this
 * event, and 200 ms later the retry is refused too (as when the API server
 * decided on the budget as it was before the event). */
static const char *race_event;

static const char refusal[] =
    "{\"kind\":\"Status\",\"status\":\"Failure\","
    "\"reason\":\"TooManyRequests\",\"code\":429,"
    "\"message\":\"Cannot evict pod as it would violate "
    "the pod's disruption budget.\"}";

static void hold_step(uv_timer_t *t)
{
    struct fx *f = t->data;
    if (f->hold_stage++ == 0) {
        th_stream_write(f->pdb_watch, race_event, strlen(race_event));
        uv_timer_start(t, hold_step, 200, 0);
        return;
    }
    f->refused_again_at = uv_now(&f->c.loop);
    th_respond(f->held, 429, NULL, refusal);
}

static void free_budget(uv_timer_t *t)
{
    struct fx *f = t->data;
    th_stream_write(f->pdb_watch, budget_events, strlen(budget_events));
    f->freed_at = uv_now(&f->c.loop);
}

static void handler(void *ud, const struct th_req *r, struct th_conn *c)
{
    struct fx *f = ud;
    int pdb = strncmp(r->path, "/apis/policy/v1/poddisruptionbudgets", 36) == 0;

    if (strstr(r->path, "watch=1")) {
        th_stream_start(c, 200); /* open, quiet */
        if (pdb) {
            f->pdb_watch = c;
            /* The disruption controller frees the budget a moment after
             * the watch opens: far sooner than the timer's 4-6 s. */
            uv_timer_start(&f->free_timer, free_budget, 300, 0);
        }
        return;
    }
    if (pdb) {
        char obj[256], body[512];
        f->pdb_lists++;
        snprintf(obj, sizeof(obj), pdb_json, "11", 0);
        snprintf(body, sizeof(body),
                 "{\"kind\":\"PodDisruptionBudgetList\",\"metadata\":{"
                 "\"resourceVersion\":\"11\"},\"items\":[%s]}",
                 obj);
        th_respond(c, 200, NULL, body);
        return;
    }
    if (strncmp(r->path, "/api/v1/nodes?", 14) == 0) {
        th_ctl_respond_switching_node(c, f->record);
        return;
    }
    if (strstr(r->path, "fieldSelector=spec.nodeName")) {
        th_respond(
            c, 200, NULL,
            "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"10\"},"
            "\"items\":[{\"metadata\":{\"name\":\"work-1\",\"namespace\":"
            "\"default\",\"uid\":\"u1\",\"resourceVersion\":\"8\","
            "\"ownerReferences\":[{\"kind\":\"ReplicaSet\",\"name\":\"work\","
            "\"controller\":true}]},\"spec\":{\"nodeName\":\"gpu-001\","
            "\"containers\":[{\"name\":\"c\",\"resources\":{\"limits\":{"
            "\"nvidia.com/gpu\":\"1\"}}}]},\"status\":{\"phase\":"
            "\"Running\"}}]}");
        return;
    }
    if (strcmp(r->method, "POST") == 0 && strstr(r->path, "/eviction")) {
        f->evictions++;
        if (f->evictions == 1) {
            f->refused_at = uv_now(&f->c.loop);
            f->pdb_lists_before_429 = f->pdb_lists;
            th_respond(c, 429, NULL, refusal);
        } else if (f->evictions == 2 && race_event != NULL) {
            f->held = c;
            uv_timer_start(&f->hold_timer, hold_step, 100, 0);
        } else {
            f->retried_at = uv_now(&f->c.loop);
            f->retried = 1;
            th_respond(c, 201, NULL,
                       "{\"kind\":\"Status\",\"status\":\"Success\"}");
        }
        return;
    }
    if (strcmp(r->method, "POST") == 0) {
        th_respond(c, 201, NULL, "{}"); /* events */
        return;
    }
    if (strstr(r->path, "/configmaps?")) {
        th_respond(c, 200, NULL,
                   "{\"kind\":\"ConfigMapList\",\"metadata\":{"
                   "\"resourceVersion\":\"10\"},\"items\":[]}");
        return;
    }
    th_respond(c, 200, NULL,
               "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":"
               "\"10\"},\"items\":[]}");
}

/* Runs the controller until the eviction is retried; the caller checks
 * and then calls fx_free. */
static struct fx *fx_run(int want_evictions)
{
    struct fx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    f->record = th_ctl_switch_record(GM_PHASE_DRAIN, NULL);

    th_ctl_start(&f->c, handler, f);
    uv_timer_init(&f->c.loop, &f->free_timer);
    f->free_timer.data = f;
    uv_timer_init(&f->c.loop, &f->hold_timer);
    f->hold_timer.data = f;
    assert_true(th_run_until(&f->c.loop, &f->retried, 30000));
    /* Budgets are watched only once an eviction was refused. */
    assert_int_equal(f->pdb_lists_before_429, 0);
    assert_int_equal(f->pdb_lists, 1);
    assert_int_equal(f->evictions, want_evictions);
    assert_true(f->freed_at > 0);
    return f;
}

static void fx_free(struct fx *f)
{
    uv_close((uv_handle_t *)&f->free_timer, NULL);
    uv_close((uv_handle_t *)&f->hold_timer, NULL);
    th_ctl_stop(&f->c);
    free(f->record);
    free(f);
}

static void test_refused_eviction_retried_when_budget_frees(void **state)
{
    (void)state;
    budget_events = "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{"
                    "\"name\":\"work\",\"namespace\":\"default\","
                    "\"resourceVersion\":\"12\"},\"status\":{"
                    "\"disruptionsAllowed\":1}}}\n";
    struct fx *f = fx_run(2);
    /* The retry followed the budget's change, not the timer (which asks
     * again 4 to 6 s after the refusal). */
    assert_true(f->retried_at >= f->freed_at);
    assert_true(f->retried_at - f->refused_at < 4000);
    fx_free(f);
}

/* Budgets that allow nothing for this pod, or that make no sense, leave
 * the retry to the timer: another namespace's, a negative count, a count
 * that is not a number, no status, no namespace. */
static void test_other_and_malformed_budgets_do_not_retry(void **state)
{
    (void)state;
    budget_events =
        "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":"
        "\"a\",\"namespace\":\"team-b\",\"resourceVersion\":\"12\"},"
        "\"status\":{\"disruptionsAllowed\":5}}}\n"
        "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":"
        "\"work\",\"namespace\":\"default\",\"resourceVersion\":\"13\"},"
        "\"status\":{\"disruptionsAllowed\":-1}}}\n"
        "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":"
        "\"work\",\"namespace\":\"default\",\"resourceVersion\":\"14\"},"
        "\"status\":{\"disruptionsAllowed\":\"lots\"}}}\n"
        "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":"
        "\"work\",\"namespace\":\"default\",\"resourceVersion\":\"15\"}}}\n"
        "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"x\","
        "\"resourceVersion\":\"16\"},\"status\":{\"disruptionsAllowed\":"
        "3}}}\n";
    struct fx *f = fx_run(2);
    assert_true(f->retried_at - f->refused_at >= 4000);
    fx_free(f);
}

/* A budget that frees while a retry is in flight: the refusal of that
 * retry may predate the change, so the controller asks once more at once
 * rather than waiting for the timer. */
static void test_budget_freed_during_retry_retries_again(void **state)
{
    (void)state;
    budget_events = "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{"
                    "\"name\":\"work\",\"namespace\":\"default\","
                    "\"resourceVersion\":\"12\"},\"status\":{"
                    "\"disruptionsAllowed\":1}}}\n";
    race_event = "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{"
                 "\"name\":\"work\",\"namespace\":\"default\","
                 "\"resourceVersion\":\"13\"},\"status\":{"
                 "\"disruptionsAllowed\":1}}}\n";
    struct fx *f = fx_run(3);
    race_event = NULL;
    assert_true(f->refused_again_at > 0);
    assert_true(f->retried_at >= f->refused_again_at);
    /* The timer would wait 4 to 6 s after the second refusal. */
    assert_true(f->retried_at - f->refused_again_at < 2000);
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refused_eviction_retried_when_budget_frees),
        cmocka_unit_test(test_other_and_malformed_budgets_do_not_retry),
        cmocka_unit_test(test_budget_freed_during_retry_retries_again),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
