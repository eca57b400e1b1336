#include "app/observe.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/rollout.h"
#include "planner/assign.h"
#include "planner/labels.h"

static void vevent(struct gm_ctl *ctl, const struct gm_event_ref *ref,
                   enum gm_event_type type, const char *reason, const char *fmt,
                   va_list ap) __attribute__((format(printf, 5, 0)));
static void vevent(struct gm_ctl *ctl, const struct gm_event_ref *ref,
                   enum gm_event_type type, const char *reason, const char *fmt,
                   va_list ap)
{
    char msg[1024];
    if (ctl->events == NULL || ctl->dry_run)
        return;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    gm_obs_event(ctl, ref, type, reason, msg);
}

void gm_obs_event(struct gm_ctl *ctl, const struct gm_event_ref *ref,
                  enum gm_event_type type, const char *reason, const char *note)
{
    if (ctl->events == NULL || ctl->dry_run)
        return;
    gm_event(ctl->events, ref, type, reason, reason, "%s", note);
}

void gm_obs_node_event(struct gm_ctl *ctl, const struct gm_node *node,
                       enum gm_event_type type, const char *reason,
                       const char *fmt, ...)
{
    struct gm_event_ref ref = {.api_version = "v1",
                               .kind = "Node",
                               .name = node->name,
                               .uid = node->uid};
    va_list ap;
    va_start(ap, fmt);
    vevent(ctl, &ref, type, reason, fmt, ap);
    va_end(ap);
}

void gm_obs_policy_event(struct gm_ctl *ctl, const char *policy,
                         const char *uid, enum gm_event_type type,
                         const char *reason, const char *fmt, ...)
{
    struct gm_event_ref ref = {.api_version = "gpumode.io/v1alpha1",
                               .kind = "GPUModePolicy",
                               .name = policy,
                               .uid = uid};
    va_list ap;
    va_start(ap, fmt);
    vevent(ctl, &ref, type, reason, fmt, ap);
    va_end(ap);
}

void gm_obs_switch_done(struct gm_ctl *ctl, const char *from, const char *to,
                        const char *result, double seconds)
{
    if (ctl->metrics == NULL)
        return;
    gm_metrics_counter_add(ctl->metrics, GM_METRIC_SWITCHES, 1, "from", from,
                           "to", to, "result", result, NULL);
    if (strcmp(result, "succeeded") == 0)
        gm_metrics_observe(ctl->metrics, GM_METRIC_SWITCH_DURATION, seconds,
                           NULL);
}

void gm_obs_phase_done(struct gm_ctl *ctl, const char *phase, double seconds)
{
    if (ctl->metrics)
        gm_metrics_observe(ctl->metrics, GM_METRIC_PHASE_DURATION, seconds,
                           "phase", phase, NULL);
}

void gm_obs_api_response(void *metrics, const char *method, long status)
{
    char code[16];
    snprintf(code, sizeof(code), "%ld", status);
    gm_metrics_counter_add(metrics, GM_METRIC_API_REQUESTS, 1, "verb", method,
                           "code", status ? code : "error", NULL);
}

void gm_obs_resources_differ(struct gm_ctl *ctl, const struct gm_map *counts)
{
    if (ctl->metrics == NULL)
        return;
    /* Recomputed whole, so a deleted policy's series goes. */
    gm_metrics_clear(ctl->metrics, GM_METRIC_RESOURCES_DIFFER);
    for (struct gm_map_entry *e = gm_map_first(counts); e;
         e = gm_map_next(counts, e))
        gm_metrics_gauge_set(ctl->metrics, GM_METRIC_RESOURCES_DIFFER,
                             *(const int *)e->value, "policy", e->key, NULL);
}

/* ---- periodic gauges ---- */

/* The long-lived reflectors, by the resource label: the controller's and
 * the rollout layer's (policies, the mig-parted and device plugin
 * ConfigMaps). The three ConfigMap watches add to one series. */
enum {
    W_NODES,
    W_HELPERS,
    W_HAMI,
    W_BUDGETS,
    W_POLICIES,
    W_LAYOUTS,
    W_PLUGIN_CMS,
    W_N
};
static const char *const watch_names[W_N] = {
    "nodes",           "pods",       "configmaps", "poddisruptionbudgets",
    "gpumodepolicies", "configmaps", "configmaps"};

struct obs_timer {
    uv_timer_t timer; /* freed in its close callback */
    struct gm_ctl *ctl;
    const struct gm_rollout *rollout; /* borrowed, may be NULL */
    /* per reflector: the one last seen (borrowed, compared only) and its
     * watches counted so far */
    const struct gm_reflector *seen[W_N];
    unsigned long restarts[W_N];
};

/* Adds the watch restarts of r since the last look. The budgets'
 * reflector appears after the first refused eviction; one that replaced
 * another would start from zero (none does today). */
static void count_restarts(struct obs_timer *o, int i,
                           const struct gm_reflector *r)
{
    struct gm_reflector_stats st;

    if (r == NULL)
        return;
    if (r != o->seen[i]) {
        o->seen[i] = r;
        o->restarts[i] = 0;
    }
    gm_reflector_get_stats(r, &st);
    /* The first watch is a start, not a restart. */
    unsigned long restarts = st.watches > 0 ? st.watches - 1 : 0;
    if (restarts > o->restarts[i]) {
        gm_metrics_counter_add(o->ctl->metrics, GM_METRIC_WATCH_RESTARTS,
                               (double)(restarts - o->restarts[i]), "resource",
                               watch_names[i], NULL);
        o->restarts[i] = restarts;
    }
}

static struct obs_timer *g_timer;

static void refresh(uv_timer_t *t)
{
    struct obs_timer *o = t->data;
    struct gm_ctl *ctl = o->ctl;
    static const char *const states[] = {"ready", "switching", "failed", ""};
    static const char *const modes[] = {"full", "vgpu", "mig", "unknown"};
    int counts[4][4] = {{0}};

    if (ctl->metrics == NULL || ctl->nodes == NULL)
        return;
    const struct gm_map *m = gm_reflector_items(ctl->nodes);
    for (struct gm_map_entry *e = gm_map_first(m); e; e = gm_map_next(m, e)) {
        const struct gm_node *n = e->value;
        /* The cache holds every node, and on a cluster of mostly CPU
         * nodes counting them all buried the unverified GPU nodes in
         * mode="unknown". */
        if (!gm_node_shows_gpu(n))
            continue;
        const char *mode = gm_node_label(n, GM_LABEL_MODE);
        const char *state = gm_node_label(n, GM_LABEL_STATE);
        int mi = 3, si = 3;
        for (int i = 0; i < 3; i++) {
            if (mode && strcmp(mode, modes[i]) == 0)
                mi = i;
            if (state && strcmp(state, states[i]) == 0)
                si = i;
        }
        counts[mi][si]++;
    }
    gm_metrics_clear(ctl->metrics, GM_METRIC_NODES);
    for (int mi = 0; mi < 4; mi++)
        for (int si = 0; si < 4; si++)
            if (counts[mi][si])
                gm_metrics_gauge_set(ctl->metrics, GM_METRIC_NODES,
                                     counts[mi][si], "mode", modes[mi], "state",
                                     si == 3 ? "none" : states[si], NULL);
    /* A standby's queue fills with every node and is never run (leading
     * enqueues them all again): only work waiting to be done counts, or
     * every healthy standby would look stuck. */
    gm_metrics_gauge_set(ctl->metrics, GM_METRIC_QUEUE_DEPTH,
                         ctl->leading ? (double)gm_wq_len(ctl->queue) : 0,
                         NULL);
    count_restarts(o, W_NODES, ctl->nodes);
    count_restarts(o, W_HELPERS, ctl->helpers);
    count_restarts(o, W_HAMI, ctl->hami_cm);
    count_restarts(o, W_BUDGETS, ctl->budgets);
    if (o->rollout) {
        const struct gm_reflector *p, *l, *pc;
        gm_rollout_reflectors(o->rollout, &p, &l, &pc);
        count_restarts(o, W_POLICIES, p);
        count_restarts(o, W_LAYOUTS, l);
        count_restarts(o, W_PLUGIN_CMS, pc);
    }
}

int gm_obs_start(struct gm_ctl *ctl, const struct gm_rollout *rollout,
                 uint64_t interval_ms)
{
    struct obs_timer *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return -1;
    o->ctl = ctl;
    o->rollout = rollout;
    uv_timer_init(ctl->loop, &o->timer);
    o->timer.data = o;
    uv_timer_start(&o->timer, refresh, interval_ms, interval_ms);
    /* The gauges' timer must not keep the loop alive on its own. */
    uv_unref((uv_handle_t *)&o->timer);
    g_timer = o;
    return 0;
}

static void close_cb(uv_handle_t *h)
{
    free(h->data);
}

void gm_obs_stop(struct gm_ctl *ctl)
{
    (void)ctl;
    if (g_timer == NULL)
        return;
    uv_timer_stop(&g_timer->timer);
    uv_close((uv_handle_t *)&g_timer->timer, close_cb);
    g_timer = NULL;
}
