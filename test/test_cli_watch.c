/* `status --watch` redraws when what it shows changes (cli/watch): a
 * node's status post, which changes nothing on the screen, is no change;
 * a new state label is. A watch that keeps failing is told as trouble. Real
 * libcurl and libuv against the test server. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli/conn.h"
#include "cli/watch.h"
#include "support/httpd.h"
#include "support/testutil.h"

struct fx {
    struct th_conn *node_watch; /* the open node watch, or NULL */
    int refuse_watches;         /* answer node watches 500 */
};

static void handler(void *ud, const struct th_req *r, struct th_conn *c)
{
    struct fx *f = ud;
    if (strncmp(r->path, "/api/v1/nodes?", 14) == 0 &&
        strstr(r->path, "watch=1") && f->refuse_watches) {
        th_respond(c, 500, NULL,
                   "{\"kind\":\"Status\",\"code\":500,\"reason\":"
                   "\"InternalError\",\"message\":\"etcd is down\"}");
    } else if (strncmp(r->path, "/api/v1/nodes?", 14) == 0 &&
               strstr(r->path, "watch=1")) {
        th_stream_start(c, 200);
        f->node_watch = c;
    } else if (strstr(r->path, "watch=1")) {
        th_stream_start(c, 200);
    } else if (strncmp(r->path, "/api/v1/nodes?", 14) == 0) {
        th_respond(
            c, 200, NULL,
            "{\"kind\":\"NodeList\",\"metadata\":{\"resourceVersion\":"
            "\"5\"},\"items\":[{\"metadata\":{\"name\":\"gpu-1\","
            "\"resourceVersion\":\"5\",\"labels\":{\"gpumode.io/mode\":"
            "\"full\",\"gpumode.io/state\":\"ready\",\"pool\":\"a\"}}}]}");
    } else {
        th_respond(c, 200, NULL,
                   "{\"kind\":\"GPUModePolicyList\",\"metadata\":{"
                   "\"resourceVersion\":\"5\"},\"items\":[]}");
    }
}

static void send_node(struct fx *f, const char *rv, const char *state)
{
    char ev[512];
    snprintf(ev, sizeof(ev),
             "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":"
             "\"gpu-1\",\"resourceVersion\":\"%s\",\"labels\":{"
             "\"gpumode.io/mode\":\"full\",\"gpumode.io/state\":\"%s\","
             "\"pool\":\"a\"}}}}\n",
             rv, state);
    th_stream_write(f->node_watch, ev, strlen(ev));
}

/* Runs the loop for ms and says whether a change was taken. */
static int change_within(struct gm_cli_conn *c, struct gm_cli_watch *w, int ms)
{
    int never = 0;
    th_run_until(gm_cli_loop(c), &never, ms);
    return gm_cli_watch_take_change(w);
}

static void test_status_post_is_no_change(void **state)
{
    (void)state;
    struct fx f = {0};
    struct th_server *srv = NULL;
    struct gm_cli_conn *c = NULL;
    struct gm_cli_watch *w = NULL;
    char path[PATH_MAX], err[1024], server[64];
    int port = th_free_port();

    assert_true(port > 0);
    snprintf(server, sizeof(server), "http://127.0.0.1:%d", port);
    tu_kubeconfig(server, "{token: t}", path);
    assert_int_equal(gm_cli_connect(path, NULL, &c, err, sizeof(err)), 0);
    assert_int_equal(th_start_at(gm_cli_loop(c), port, handler, &f, &srv), 0);
    assert_int_equal(gm_cli_watch_start(c, NULL, true, &w), 0);
    for (int i = 0;
         i < 100 && (f.node_watch == NULL || !gm_cli_watch_synced(w)); i++) {
        int never = 0;
        th_run_until(gm_cli_loop(c), &never, 20);
    }
    assert_non_null(f.node_watch);
    assert_true(gm_cli_watch_take_change(w)); /* the first view */
    assert_false(gm_cli_watch_take_change(w));

    /* The kubelet's status post: the labels shown are the same. */
    send_node(&f, "6", "ready");
    assert_false(change_within(c, w, 200));
    /* ... and it did arrive. */
    json_object *pols = NULL, *nodes = NULL;
    assert_int_equal(gm_cli_watch_snapshot(w, &pols, &nodes), 0);
    json_object *md =
        json_object_object_get(json_object_array_get_idx(nodes, 0), "metadata");
    assert_string_equal(
        json_object_get_string(json_object_object_get(md, "resourceVersion")),
        "6");
    json_object_put(pols);
    json_object_put(nodes);
    /* gpumode starts a switch: the state shown changes. */
    send_node(&f, "7", "switching");
    assert_true(change_within(c, w, 200));

    /* The watch fails and keeps failing: the view is told stale, with
     * the server's reason. */
    assert_null(gm_cli_watch_trouble(w));
    f.refuse_watches = 1;
    th_stream_end(f.node_watch);
    f.node_watch = NULL;
    for (int i = 0; i < 100 && gm_cli_watch_trouble(w) == NULL; i++) {
        int never = 0;
        th_run_until(gm_cli_loop(c), &never, 20);
    }
    const char *why = gm_cli_watch_trouble(w);
    assert_non_null(why);
    assert_non_null(strstr(why, "etcd is down"));
    /* Back: once something comes, it is live again. */
    f.refuse_watches = 0;
    for (int i = 0; i < 200 && f.node_watch == NULL; i++) {
        int never = 0;
        th_run_until(gm_cli_loop(c), &never, 20);
    }
    assert_non_null(f.node_watch);
    /* The watch is answered: live again, before any event comes. */
    for (int i = 0; i < 100 && gm_cli_watch_trouble(w) != NULL; i++) {
        int never = 0;
        th_run_until(gm_cli_loop(c), &never, 20);
    }
    assert_null(gm_cli_watch_trouble(w));

    gm_cli_watch_free(w);
    th_stop(srv);
    gm_cli_close(c);
    tu_kubeconfig_remove(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_post_is_no_change),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
