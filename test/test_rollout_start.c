/* A switch the policy reconcile starts whose first node write meets 409
 * (the kubelet's status update got there first) is started again: the
 * newer node comes through the watch, but a status-only change does not
 * re-plan, so the retry must come from the reconcile's own requeue.
 *
 * Real libcurl and libuv against the test server, which plays the API
 * server: policy "a" puts nodes labelled pool=a in full mode; gpu-001 is
 * in vgpu, Ready, with no switch; its first PATCH is answered 409. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "app/rollout.h"
#include "kube/reflector.h"
#include "support/ctlfx.h"

struct fx {
    struct th_ctl c;
    bool refuse_cms;   /* answer layout ConfigMap lists 403, as RBAC would */
    bool refuse_hami;  /* and HAMi's ConfigMap's */
    bool hold_hami;    /* the first HAMi list waits for the test to answer */
    int hami_refusals; /* refuse so many HAMi lists, then answer them */
    int hami_500s;     /* after the refusals, fail so many with 500 */
    struct th_conn *hami_list;  /* that list's connection, when held */
    char *m_status;             /* the last status patch of policy m (owned) */
    char *v_status;             /* of policy v (owned) */
    int v_patches;              /* PATCHes of gpu-003, v's node */
    int conflicts;              /* node PATCHes still to refuse with 409 */
    int patches;                /* node PATCHes seen */
    int taken;                  /* node PATCHes answered 200 */
    struct th_conn *node_watch; /* the nodes watch, when kept */
    int gpu000_patches;         /* PATCHes of gpu-000 */
};

static const char policies[] =
    "{\"kind\":\"GPUModePolicyList\",\"apiVersion\":\"gpumode.io/v1alpha1\","
    "\"metadata\":{\"resourceVersion\":\"5\"},\"items\":[{\"apiVersion\":"
    "\"gpumode.io/v1alpha1\",\"kind\":\"GPUModePolicy\",\"metadata\":{"
    "\"name\":\"a\",\"uid\":\"pu\",\"resourceVersion\":\"4\","
    "\"generation\":1},\"spec\":{\"nodeSelector\":{\"matchLabels\":{"
    "\"pool\":\"a\"}},\"mode\":\"full\"}},"
    /* b waits for training pods with a selector the parser refuses (more
     * values than it holds), a policy otherwise valid */
    "{\"apiVersion\":\"gpumode.io/v1alpha1\",\"kind\":\"GPUModePolicy\","
    "\"metadata\":{\"name\":\"b\",\"uid\":\"pb\",\"resourceVersion\":"
    "\"3\",\"generation\":1},\"spec\":{\"nodeSelector\":{\"matchLabels\":"
    "{\"pool\":\"b\"}},\"mode\":\"full\",\"rollout\":{"
    "\"waitForCompletion\":{\"podSelector\":\"job in (a,b,c,d,e,f,g,h,i,j,"
    "k,l,m,n,o,p,q)\"}}}},"
    /* m lays gpu-002 out by a named layout */
    "{\"apiVersion\":\"gpumode.io/v1alpha1\",\"kind\":\"GPUModePolicy\","
    "\"metadata\":{\"name\":\"m\",\"uid\":\"pm\",\"resourceVersion\":"
    "\"2\",\"generation\":1},\"spec\":{\"nodeSelector\":{\"matchLabels\":"
    "{\"pool\":\"m\"}},\"mode\":\"mig\",\"mig\":{\"config\":"
    "\"all-1g.10gb\"}}},"
    /* v puts gpu-003 in vgpu */
    "{\"apiVersion\":\"gpumode.io/v1alpha1\",\"kind\":\"GPUModePolicy\","
    "\"metadata\":{\"name\":\"v\",\"uid\":\"pv\",\"resourceVersion\":"
    "\"1\",\"generation\":1},\"spec\":{\"nodeSelector\":{\"matchLabels\":"
    "{\"pool\":\"v\"}},\"mode\":\"vgpu\"}}]}";

static const char nodes[] =
    "{\"kind\":\"NodeList\",\"metadata\":{\"resourceVersion\":\"10\"},"
    "\"items\":[{\"metadata\":{\"name\":\"gpu-001\",\"uid\":\"nu\","
    "\"resourceVersion\":\"9\",\"labels\":{\"pool\":\"a\","
    "\"gpumode.io/mode\":\"vgpu\",\"nvidia.com/gpu.count\":\"8\"}},"
    "\"spec\":{},\"status\":{\"conditions\":[{\"type\":\"Ready\","
    "\"status\":\"True\"}],\"allocatable\":{\"cpu\":\"63\","
    "\"nvidia.com/vgpu\":\"32\"}}},"
    "{\"metadata\":{\"name\":\"gpu-002\",\"uid\":\"nm\","
    "\"resourceVersion\":\"8\",\"labels\":{\"pool\":\"m\","
    "\"gpumode.io/mode\":\"full\",\"nvidia.com/gpu.count\":\"8\","
    "\"nvidia.com/gpu.product\":\"NVIDIA-A100-SXM4-80GB\"}},"
    "\"spec\":{},\"status\":{\"conditions\":[{\"type\":\"Ready\","
    "\"status\":\"True\"}],\"allocatable\":{\"nvidia.com/gpu\":\"8\"}}},"
    "{\"metadata\":{\"name\":\"gpu-003\",\"uid\":\"nv\","
    "\"resourceVersion\":\"7\",\"labels\":{\"pool\":\"v\","
    "\"gpumode.io/mode\":\"full\",\"nvidia.com/gpu.count\":\"8\"}},"
    "\"spec\":{},\"status\":{\"conditions\":[{\"type\":\"Ready\","
    "\"status\":\"True\"}],\"allocatable\":{\"nvidia.com/gpu\":\"8\"}}}]}";

static const char conflict[] =
    "{\"kind\":\"Status\",\"status\":\"Failure\",\"reason\":\"Conflict\","
    "\"code\":409,\"message\":\"the object has been modified\"}";

static void handler(void *ud, const struct th_req *r, struct th_conn *c)
{
    struct fx *f = ud;
    if (f->hold_hami && f->hami_list == NULL &&
        strstr(r->path, "hami-device-plugin") && !strstr(r->path, "watch=1")) {
        f->hami_list = c; /* answered by the test */
        return;
    }
    bool hami = strstr(r->path, "hami-device-plugin") != NULL &&
                !strstr(r->path, "watch=1");
    bool refuse = hami && (f->refuse_hami || f->hami_refusals > 0);
    if (refuse && f->hami_refusals > 0)
        f->hami_refusals--;
    else if (hami && f->hami_500s > 0) {
        f->hami_500s--;
        th_respond(c, 500, NULL,
                   "{\"kind\":\"Status\",\"status\":\"Failure\","
                   "\"reason\":\"InternalError\",\"code\":500}");
        return;
    }
    if (refuse ||
        (f->refuse_cms && strstr(r->path, "default-mig-parted-config") &&
         !strstr(r->path, "watch=1"))) {
        th_respond(c, 403, NULL,
                   "{\"kind\":\"Status\",\"status\":\"Failure\","
                   "\"reason\":\"Forbidden\",\"code\":403,\"message\":"
                   "\"configmaps is forbidden\"}");
    } else if (strncmp(r->path, "/api/v1/nodes?", 14) == 0 &&
               strstr(r->path, "watch=1")) {
        th_stream_start(c, 200);
        f->node_watch = c;
    } else if (strstr(r->path, "watch=1")) {
        th_ctl_respond_default(r, c);
    } else if (strncmp(r->path, "/api/v1/nodes?", 14) == 0) {
        th_respond(c, 200, NULL, nodes);
    } else if (strncmp(r->path, GM_POLICY_API "?", strlen(GM_POLICY_API) + 1) ==
               0) {
        th_respond(c, 200, NULL, policies);
    } else if (strcmp(r->method, "PATCH") == 0 &&
               strcmp(r->path, "/api/v1/nodes/gpu-001") == 0) {
        f->patches++;
        if (f->conflicts > 0) {
            f->conflicts--;
            th_respond(c, 409, NULL, conflict);
            return;
        }
        f->taken++;
        th_respond(c, 200, NULL, "{}");
    } else if (strcmp(r->method, "PATCH") == 0 &&
               strcmp(r->path, GM_POLICY_API "/m/status") == 0) {
        free(f->m_status);
        f->m_status = strdup(r->body);
        th_respond(c, 200, NULL, "{}");
    } else if (strcmp(r->method, "PATCH") == 0 &&
               strcmp(r->path, GM_POLICY_API "/v/status") == 0) {
        free(f->v_status);
        f->v_status = strdup(r->body);
        th_respond(c, 200, NULL, "{}");
    } else if (strcmp(r->method, "PATCH") == 0 &&
               strcmp(r->path, "/api/v1/nodes/gpu-000") == 0) {
        f->gpu000_patches++;
        th_respond(c, 200, NULL, "{}");
    } else if (strcmp(r->method, "PATCH") == 0 &&
               strcmp(r->path, "/api/v1/nodes/gpu-003") == 0) {
        f->v_patches++;
        th_respond(c, 200, NULL, "{}");
    } else if (strcmp(r->method, "PATCH") == 0) {
        th_respond(c, 200, NULL, "{}"); /* the policy's status */
    } else {
        th_ctl_respond_default(r, c);
    }
}

static void test_start_refused_with_409_is_retried(void **state)
{
    (void)state;
    struct fx f = {.conflicts = 1};
    struct gm_rollout *r = NULL;
    th_ctl_start(&f.c, handler, &f);
    assert_int_equal(gm_rollout_start(f.c.ctl, &r), 0);
    /* No watch event ever comes: only the requeue can try again. */
    th_run_until(&f.c.loop, &f.taken, 6000);
    assert_int_equal(f.patches, 2);
    assert_int_equal(f.taken, 1);
    gm_rollout_free(r);
    th_ctl_stop(&f.c);
    free(f.m_status);
    free(f.v_status);
}

/* A start not yet back through the watch leaves its node looking
 * pending: a node that sorts before it, arriving meanwhile, must not take
 * a second slot of policy a's budget (maxUnavailable 1). */
static void test_unseen_start_holds_its_slot(void **state)
{
    (void)state;
    struct fx f = {0};
    struct gm_rollout *r = NULL;
    th_ctl_start(&f.c, handler, &f);
    assert_int_equal(gm_rollout_start(f.c.ctl, &r), 0);
    th_run_until(&f.c.loop, &f.taken, 6000);
    assert_int_equal(f.taken, 1);
    assert_non_null(f.node_watch);
    static const char added[] =
        "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":"
        "\"gpu-000\",\"uid\":\"n0\",\"resourceVersion\":\"11\","
        "\"labels\":{\"pool\":\"a\",\"gpumode.io/mode\":\"vgpu\","
        "\"nvidia.com/gpu.count\":\"8\"}},\"spec\":{},\"status\":{"
        "\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}],"
        "\"allocatable\":{\"nvidia.com/vgpu\":\"32\"}}}}\n";
    th_stream_write(f.node_watch, added, strlen(added));
    int never = 0;
    th_run_until(&f.c.loop, &never, 1500);
    assert_int_equal(f.gpu000_patches, 0);
    assert_int_equal(f.taken, 1);
    gm_rollout_free(r);
    th_ctl_stop(&f.c);
    free(f.m_status);
    free(f.v_status);
}

/* A layout ConfigMap the controller may not read (RBAC not updated after
 * migConfigMap was moved) stalls only the mig policies that need it: a
 * full policy still starts its switch. */
static void test_unreadable_layouts_stop_only_mig(void **state)
{
    (void)state;
    struct fx f = {.refuse_cms = true};
    struct gm_rollout *r = NULL;
    th_ctl_start(&f.c, handler, &f);
    assert_int_equal(gm_rollout_start(f.c.ctl, &r), 0);
    th_run_until(&f.c.loop, &f.taken, 6000);
    assert_int_equal(f.taken, 1);
    assert_true(gm_rollout_synced(r));
    /* ... with the layouts refused indeed. */
    const struct gm_reflector *p, *l, *pc;
    struct gm_reflector_stats st;
    gm_rollout_reflectors(r, &p, &l, &pc);
    gm_reflector_get_stats(l, &st);
    assert_int_equal(st.list_refused, 403);
    assert_false(gm_reflector_has_synced(l));
    /* The mig policy says why it cannot lay its node out. */
    for (int i = 0; i < 150 && (f.m_status == NULL ||
                                !strstr(f.m_status, "may not read it"));
         i++) {
        int never = 0;
        th_run_until(&f.c.loop, &never, 20);
    }
    assert_non_null(f.m_status);
    if (!strstr(f.m_status, "InvalidLayout") ||
        !strstr(f.m_status, "the controller may not read it (403 Forbidden"))
        fail_msg("status of m: %s", f.m_status);
    gm_rollout_free(r);
    th_ctl_stop(&f.c);
    free(f.m_status);
    free(f.v_status);
}

/* HAMi's ConfigMap alike: refused, it used to keep the controller's
 * caches unsynced, so /readyz stayed 503 and no policy planned. Now only
 * the vgpu policy stalls, saying why, and starts nothing (a switch could
 * not write the node's entry); the full policy switches its node. */
static void test_unreadable_hami_config_stops_only_vgpu(void **state)
{
    (void)state;
    struct fx f = {.refuse_hami = true};
    struct gm_rollout *r = NULL;
    th_ctl_start(&f.c, handler, &f);
    assert_int_equal(gm_rollout_start(f.c.ctl, &r), 0);
    th_run_until(&f.c.loop, &f.taken, 6000);
    assert_int_equal(f.taken, 1);
    assert_true(gm_ctl_synced(f.c.ctl));
    char why[800];
    assert_true(gm_ctl_hami_refused(f.c.ctl, why, sizeof(why)));
    for (int i = 0; i < 150 && (f.v_status == NULL ||
                                !strstr(f.v_status, "may not read it"));
         i++) {
        int never = 0;
        th_run_until(&f.c.loop, &never, 20);
    }
    assert_non_null(f.v_status);
    if (!strstr(f.v_status, "HAMiConfigUnreadable") ||
        !strstr(f.v_status, "ConfigMap kube-system\\/hami-device-plugin: "
                            "the controller may not read it (403 Forbidden"))
        fail_msg("status of v: %s", f.v_status);
    if (!strstr(f.v_status, "\"pending\":1") ||
        !strstr(f.v_status, "waiting until the controller may read HAMi's"))
        fail_msg("status of v: %s", f.v_status);
    assert_int_equal(f.v_patches, 0);
    gm_rollout_free(r);
    th_ctl_stop(&f.c);
    free(f.m_status);
    free(f.v_status);
}

/* The refusal may be the last answer the controller waits for: with the
 * other caches synced and no event to come, it must start the work
 * itself (a refused list has no on_synced), or the full policy waited for
 * a new key, minutes in a quiet cluster. */
static void test_late_hami_refusal_starts_the_work(void **state)
{
    (void)state;
    struct fx f = {.refuse_hami = true, .hold_hami = true};
    struct gm_rollout *r = NULL;
    static const int never = 0;
    th_ctl_start(&f.c, handler, &f);
    assert_int_equal(gm_rollout_start(f.c.ctl, &r), 0);
    th_run_until(&f.c.loop, &never, 600);
    assert_non_null(f.hami_list);
    assert_int_equal(f.taken, 0);
    th_respond(f.hami_list, 403, NULL,
               "{\"kind\":\"Status\",\"status\":\"Failure\","
               "\"reason\":\"Forbidden\",\"code\":403,\"message\":"
               "\"configmaps is forbidden\"}");
    th_run_until(&f.c.loop, &f.taken, 3000);
    assert_int_equal(f.taken, 1);
    gm_rollout_free(r);
    th_ctl_stop(&f.c);
    free(f.m_status);
    free(f.v_status);
}

/* Readable again (the Role fixed) with no such ConfigMap: no object is
 * added, yet the stalled vgpu policy must plan again, and switches; also
 * when a list failed otherwise (a 500) between the refusal and then. */
static void test_hami_readable_again_resumes_vgpu(void **state)
{
    (void)state;
    struct fx f = {.hami_refusals = 1, .hami_500s = 1};
    struct gm_rollout *r = NULL;
    th_ctl_start(&f.c, handler, &f);
    assert_int_equal(gm_rollout_start(f.c.ctl, &r), 0);
    for (int i = 0; i < 150 && (f.v_status == NULL ||
                                !strstr(f.v_status, "HAMiConfigUnreadable"));
         i++) {
        int never = 0;
        th_run_until(&f.c.loop, &never, 20);
    }
    assert_non_null(f.v_status);
    assert_int_equal(f.v_patches, 0);
    /* The reflector lists again (0.8 s on, then 1.6 s), answered now. */
    int patched = 0;
    for (int i = 0; i < 500 && !patched; i++) {
        int never = 0;
        th_run_until(&f.c.loop, &never, 20);
        patched = f.v_patches > 0;
    }
    assert_true(patched);
    char why[800];
    assert_false(gm_ctl_hami_refused(f.c.ctl, why, sizeof(why)));
    gm_rollout_free(r);
    th_ctl_stop(&f.c);
    free(f.m_status);
    free(f.v_status);
}

/* A switch in flight for a policy whose pod selector no longer parses is
 * told so (-EBADMSG): with no selector its drain would evict every pod and
 * wait for none, so the switch cancels it; past the drain it keeps the
 * rest of the policy. */
static void test_unparsable_selector_is_told(void **state)
{
    (void)state;
    struct fx f = {0};
    struct gm_rollout *r = NULL;
    struct gm_switch_policy o;
    th_ctl_start(&f.c, handler, &f);
    assert_int_equal(gm_rollout_start(f.c.ctl, &r), 0);
    int rc = -EAGAIN;
    for (int i = 0; i < 100 && rc == -EAGAIN; i++) {
        int never = 0;
        th_run_until(&f.c.loop, &never, 20);
        memset(&o, 0, sizeof(o));
        rc = f.c.ctl->policy_for(f.c.ctl->policy_data, "a", &o);
    }
    assert_int_equal(rc, 0);
    memset(&o, 0, sizeof(o));
    assert_int_equal(f.c.ctl->policy_for(f.c.ctl->policy_data, "b", &o),
                     -EBADMSG);
    assert_string_equal(o.uid, "pb");
    assert_null(o.drain.wait_selector);
    gm_rollout_free(r);
    th_ctl_stop(&f.c);
    free(f.m_status);
    free(f.v_status);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_start_refused_with_409_is_retried),
        cmocka_unit_test(test_unseen_start_holds_its_slot),
        cmocka_unit_test(test_unparsable_selector_is_told),
        cmocka_unit_test(test_unreadable_layouts_stop_only_mig),
        cmocka_unit_test(test_unreadable_hami_config_stops_only_vgpu),
        cmocka_unit_test(test_late_hami_refusal_starts_the_work),
        cmocka_unit_test(test_hami_readable_again_resumes_vgpu),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
