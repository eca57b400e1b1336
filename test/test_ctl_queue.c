/* The controller's work queue starts only once every cache it reads has
 * synced, whichever syncs last. A key queued while the HAMi ConfigMap was
 * still listing used to wait for some new key to wake the queue: a
 * controller restarted mid-switch then did nothing at all. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "support/ctlfx.h"

struct fx {
    struct th_ctl c;
    struct th_conn *cm_list; /* the ConfigMap list, answered late */
    uv_timer_t late;
    unsigned long reconciles_before_cm; /* when the ConfigMap answered */
    int cm_answered;
    int reconciled;
};

static void answer_cm(uv_timer_t *t);

static void handler(void *ud, const struct th_req *r, struct th_conn *c)
{
    struct fx *f = ud;
    if (strstr(r->path, "watch=1")) {
        th_stream_start(c, 200); /* open, quiet */
        return;
    }
    if (strncmp(r->path, "/api/v1/nodes?", 14) == 0) {
        th_respond(c, 200, NULL,
                   "{\"kind\":\"NodeList\",\"metadata\":{\"resourceVersion\":"
                   "\"10\"},\"items\":[{\"metadata\":{\"name\":\"gpu-001\","
                   "\"resourceVersion\":\"9\"}}]}");
        return;
    }
    if (strstr(r->path, "/configmaps?")) {
        /* Answered 300 ms after it arrives, whatever the machine's pace
         * (valgrind is slow). */
        f->cm_list = c;
        uv_timer_start(&f->late, answer_cm, 300, 0);
        return;
    }
    th_respond(c, 200, NULL,
               "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":"
               "\"10\"},\"items\":[]}");
}

static void answer_cm(uv_timer_t *t)
{
    struct fx *f = t->data;
    assert_non_null(f->cm_list);
    f->reconciles_before_cm = f->c.ctl->reconciles;
    th_respond(f->cm_list, 200, NULL,
               "{\"kind\":\"ConfigMapList\",\"metadata\":{"
               "\"resourceVersion\":\"10\"},\"items\":[]}");
    f->cm_answered = 1;
}

static void poll_reconciled(uv_timer_t *t)
{
    struct fx *f = t->data;
    if (f->c.ctl->reconciles > 0)
        f->reconciled = 1;
}

static void test_queue_waits_for_the_last_cache(void **state)
{
    (void)state;
    struct fx *f = calloc(1, sizeof(*f));
    uv_timer_t poll;

    /* Nodes and helper pods sync at once (the node's key is queued); the
     * ConfigMap answers 300 ms after its list arrives. */
    th_ctl_start(&f->c, handler, f);
    uv_timer_init(&f->c.loop, &f->late);
    f->late.data = f;
    uv_timer_init(&f->c.loop, &poll);
    poll.data = f;
    uv_timer_start(&poll, poll_reconciled, 10, 10);
    assert_true(th_run_until(&f->c.loop, &f->reconciled, 30000));
    assert_true(f->cm_answered);
    assert_int_equal(f->reconciles_before_cm, 0);
    assert_true(gm_ctl_synced(f->c.ctl));

    uv_close((uv_handle_t *)&poll, NULL);
    uv_close((uv_handle_t *)&f->late, NULL);
    th_ctl_stop(&f->c);
    free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_queue_waits_for_the_last_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
