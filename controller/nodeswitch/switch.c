#include "nodeswitch/switch.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/agent.h"
#include "app/budgets.h"
#include "app/controller.h"
#include "app/hami.h"
#include "app/observe.h"
#include "common/json.h"
#include "common/log.h"
#include "kube/pod.h"
#include "nodeswitch/helperpod.h"
#include "planner/labels.h"
#include "planner/plan.h"
#include "planner/pluginconfig.h"

/* How long after its phase began the first apply pod is made at most
 * (clock skew between us and the API server included). */
#define HELPER_CREATE_SLACK_S 60
#define EVICT_RETRY_MS 5000
#define WAIT_POLL_MS 2000
/* How often a retry left to its policy's plan checks that a policy still
 * selects its node (policy changes requeue policies, not nodes). */
#define RETRY_RECHECK_MS 30000

/* An event announcing what a node write records (SwitchStarted,
 * ClientsStopped, SwitchFailed, ...), on the node or on its policy. */
struct obs_event {
    bool on_policy;
    enum gm_event_type type;
    const char *reason; /* static */
    char name[254];     /* the node's or the policy's */
    char uid[64];
    char note[1024];
};

/* What a step observed for the metrics and the events: a phase that
 * ended, a switch that ended, what it announces. Sent with the node write
 * that records it and counted or recorded only once that write succeeds:
 * a write refused with 409 (another writer's newer node, such as the node
 * lifecycle controller's taint right after a cordon) is redone by the next
 * reconcile, which observes it again. The strings are static (phase and
 * mode names, results). */
struct obs {
    const char *phase[2]; /* a step may leave two phases (enter, advance) */
    double phase_s[2];
    int n_phase;
    const char *from, *to, *result; /* result NULL: no switch ended */
    double switch_s;
    /* A failure tells the node and the policy, after at most one other. */
    struct obs_event ev[3];
    int n_ev;
    /* The step's log lines (its start, two phases, its end), logged when
     * the write that records them lands: a write that met a newer node
     * (409) is made again, and would log them twice. */
    char log[3][512];
    int n_log;
    char node[254], policy[254];
};

/* One reconcile of one node. */
struct sw {
    struct gm_ctl *ctl;
    const struct gm_node *node;
    struct gm_switch_record rec;
    struct gm_switch_policy pol;
    struct gm_node_rt *ns;
    gm_switch_done_cb done;
    void *ctx;
    long requeue_ms;
    long long now;
    bool hw_untouched; /* a failure now leaves the hardware as it was */
    bool clear_retry;  /* this write starts a switch: use up a retry mark */
    bool cordon;       /* this write cordons the node (a release) */
    bool pods_left;    /* the drain failed: workload pods are still there */
    bool entered;      /* rec.phase was entered here, not yet written */
    struct obs obs;    /* counted when the node write succeeds */
};

/* A step either waits (for an event or a requeue) or has a write in
 * flight. STEP_PENDING is internal to one step: "not ready, wait". */
enum { STEP_WAIT = 0, STEP_ASYNC = 1, STEP_PENDING = 2 };

void gm_switch_policy_defaults(struct gm_switch_policy *p)
{
    memset(p, 0, sizeof(*p));
    p->drain.gpu_pods_only = true;
    p->drain.timeout_s = 600;
    p->drain.grace_s = -1;
    p->split_count = 10;
    p->memory_scaling = 1;
    p->core_scaling = 1;
}

static const char *node_name(const struct sw *s)
{
    return s->node->name;
}

static enum gm_mode target_mode(const struct sw *s)
{
    return s->rec.rolling_back ? s->rec.from : s->rec.to;
}

static const char *target_layout(const struct sw *s)
{
    return s->rec.rolling_back ? s->rec.from_layout : s->rec.layout;
}

/* ---- writing the node ---- */

struct write {
    char from_rv[32];  /* the node resourceVersion this write started from */
    struct obs obs;    /* counted if the write succeeds */
    int helper_create; /* the create of ns->created_helper */
    struct gm_ctl *ctl;
    struct gm_node_rt *ns;
    gm_switch_done_cb done;
    void *ctx;
    char *node;   /* owned */
    char uid[64]; /* the node's, for the event on a refusal */
};

static void obs_emit(struct gm_ctl *ctl, const struct obs *o)
{
    for (int i = 0; i < o->n_log; i++)
        gm_log_kv(GM_LOG_INFO, o->node, o->policy[0] ? o->policy : NULL, "%s",
                  o->log[i]);
    for (int i = 0; i < o->n_phase; i++)
        gm_obs_phase_done(ctl, o->phase[i], o->phase_s[i]);
    if (o->result)
        gm_obs_switch_done(ctl, o->from, o->to, o->result, o->switch_s);
    for (int i = 0; i < o->n_ev; i++) {
        const struct obs_event *e = &o->ev[i];
        struct gm_event_ref ref = {
            .api_version = e->on_policy ? "gpumode.io/v1alpha1" : "v1",
            .kind = e->on_policy ? "GPUModePolicy" : "Node",
            .name = e->name,
            .uid = e->uid[0] ? e->uid : NULL,
        };
        gm_obs_event(ctl, &ref, e->type, e->reason, e->note);
    }
}

/* A Warning event on the node, so `kubectl describe node` shows why its
 * switch does not move, as the status line does. The recorder counts the
 * retries refused alike into one event's series. */
static void refused_event(const struct write *w, const struct gm_kube_error *e)
{
    struct gm_event_ref ref = {.api_version = "v1",
                               .kind = "Node",
                               .name = w->node,
                               .uid = w->uid[0] ? w->uid : NULL};
    char note[1024];
    snprintf(note, sizeof(note), "%s was refused (%s): %s; gpumode retries it",
             w->helper_create ? "Creating the helper pod" : "Updating the node",
             e->reason[0] ? e->reason : "Error", e->message);
    gm_obs_event(w->ctl, &ref, GM_EVENT_WARNING,
                 w->helper_create ? GM_REASON_FAILED_CREATE
                                  : GM_REASON_FAILED_UPDATE,
                 note);
}

/* Our last write to the node has not come back through the watch: the
 * cache still shows the node as it was before it. */
static bool write_unseen(const struct gm_node_rt *ns,
                         const struct gm_node *node)
{
    return ns->written_from_rv[0] != '\0' && node && node->resource_version &&
           strcmp(node->resource_version, ns->written_from_rv) == 0;
}

static void write_done(void *data, const struct gm_kube_resp *resp)
{
    struct write *w = data;
    /* A patch that changed nothing keeps the node's resourceVersion: what
     * it says was there already (its lines and events went out then), and
     * no watch event comes. */
    const char *rv =
        resp->error == NULL && !w->helper_create
            ? json_object_get_string(gm_json_get(
                  gm_json_get(resp->obj, "metadata"), "resourceVersion"))
            : NULL;
    bool unchanged = rv && strcmp(rv, w->from_rv) == 0;
    if (resp->error == NULL && !unchanged)
        obs_emit(w->ctl, &w->obs);
    /* No answer (a timeout, the call cancelled at shutdown): the write may
     * have landed, and the next look would find the switch moved on with
     * no line saying so. The lines go out, said to be unconfirmed; the
     * counts and events wait for a write known to land. */
    if (resp->error && resp->code == 0)
        for (int i = 0; i < w->obs.n_log; i++)
            gm_log_kv(GM_LOG_INFO, w->obs.node,
                      w->obs.policy[0] ? w->obs.policy : NULL,
                      "%s (write unconfirmed: %s)", w->obs.log[i],
                      resp->error->message[0] ? resp->error->message
                                              : "no answer");
    if (resp->error == NULL && w->helper_create)
        w->ns->helper_refused = false;
    if (resp->error == NULL && w->ns->write_refused) {
        w->ns->write_refused = false;
        w->ns->message[0] = '\0';
    }
    /* After a success the watch brings the change, which requeues us. */
    long requeue = -1;
    int failed = 0;

    /* Unchanged, the cache is not stale after all; the node is looked at
     * again (not at once: the same patch would go again and again). */
    if (unchanged && strcmp(w->ns->written_from_rv, w->from_rv) == 0) {
        w->ns->written_from_rv[0] = '\0';
        requeue = 2000;
    }

    if (resp->error) {
        /* Nothing was written: unless a later write started meanwhile, the
         * cached node is not stale after all. */
        if (strcmp(w->ns->written_from_rv, w->from_rv) == 0)
            w->ns->written_from_rv[0] = '\0';
        /* A helper that does not exist may be posted again at once (409
         * AlreadyExists means it does). */
        if (w->helper_create && resp->error->code != 409)
            w->ns->created_helper[0] = '\0';
        /* Refused (admission, quota, a bad field; a 500 is what a pod
         * webhook that is down or failing answers, until a person fixes
         * it): what HelperNotCreated waits out. Not a conflict, nor the
         * API server busy (429) or out of reach (502-504, no answer):
         * those end when it is back. */
        int code = resp->error->code;
        if (w->helper_create)
            w->ns->helper_refused =
                (code >= 400 && code < 500 && code != 409 && code != 429) ||
                code == 500;
        if (resp->error->code == 409) {
            /* Our cache was behind: another writer changed the node first
             * (e.g. the node lifecycle controller's taint), or the helper
             * pod exists already. The newer object is on its way through
             * a watch whose event requeues us; the timer only covers a
             * watch that is down. */
            requeue = 2000;
        } else if (resp->error->err != -ECANCELED) {
            gm_log_kv(GM_LOG_WARN, w->node, NULL, "%s failed: %s: %s",
                      w->helper_create ? "helper pod create" : "node update",
                      resp->error->reason, resp->error->message);
            /* The status says why the switch does not move (a Role
             * without patch on nodes, an admission webhook); it is
             * tried again, backing off. */
            snprintf(w->ns->message, sizeof(w->ns->message),
                     "%s failed, retrying: %.60s: %.380s",
                     w->helper_create ? "creating the helper pod"
                                      : "updating the node",
                     resp->error->reason[0] ? resp->error->reason : "Error",
                     resp->error->message);
            w->ns->write_refused = true;
            refused_event(w, resp->error);
            failed = 1;
        }
    }
    if (resp->error == NULL || resp->error->err != -ECANCELED)
        w->done(w->ctx, requeue, failed);
    else
        w->done(w->ctx, -1, 0);
    gm_ctl_node_state_release(w->ns);
    free(w->node);
    free(w);
}

/* Sends one write (a merge patch, or a create when create is set) on
 * behalf of this reconcile: done(ctx, ...) runs when it ends. body is
 * consumed. Returns STEP_ASYNC or a negative errno. */
static int send_write(struct sw *s, const char *path, json_object *body,
                      int create, struct write **out)
{
    struct write *w = calloc(1, sizeof(*w));
    int err;

    if (w == NULL) {
        json_object_put(body);
        return -ENOMEM;
    }
    w->ctl = s->ctl;
    w->ns = s->ns;
    w->done = s->done;
    w->ctx = s->ctx;
    w->node = strdup(node_name(s));
    snprintf(w->uid, sizeof(w->uid), "%s", s->node->uid ? s->node->uid : "");
    if (w->node == NULL) {
        /* Before sending: a sent request owns w until write_done. */
        json_object_put(body);
        free(w);
        return -ENOMEM;
    }
    if (create)
        err = gm_kube_create(s->ctl->kube, path, body, write_done, w);
    else
        err = gm_kube_patch(
            s->ctl->kube, path, GM_PATCH_MERGE,
            json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN), NULL,
            0, write_done, w);
    json_object_put(body);
    if (err) {
        free(w->node);
        free(w);
        return err;
    }
    s->ns->inflight++;
    if (out)
        *out = w;
    return STEP_ASYNC;
}

/* A merge patch of the node carrying its resourceVersion: a stale cache
 * gets 409 instead of overwriting a newer node. labels and annotations are
 * consumed (may be NULL); unschedulable < 0 leaves it. */
static int patch_node(struct sw *s, json_object *labels, json_object *ann,
                      int unschedulable)
{
    json_object *patch = json_object_new_object();
    json_object *meta = json_object_new_object();
    char path[320];

    json_object_object_add(
        meta, "resourceVersion",
        json_object_new_string(
            s->node->resource_version ? s->node->resource_version : ""));
    if (labels)
        json_object_object_add(meta, "labels", labels);
    if (ann)
        json_object_object_add(meta, "annotations", ann);
    json_object_object_add(patch, "metadata", meta);
    if (unschedulable >= 0) {
        json_object *spec = json_object_new_object();
        json_object_object_add(spec, "unschedulable",
                               json_object_new_boolean(unschedulable));
        json_object_object_add(patch, "spec", spec);
    }
    snprintf(path, sizeof(path), "/api/v1/nodes/%s", node_name(s));
    const char *body =
        json_object_to_json_string_ext(patch, JSON_C_TO_STRING_PLAIN);
    if (s->ctl->dry_run) {
        for (int i = 0; i < s->obs.n_log; i++)
            gm_log_kv(GM_LOG_INFO, node_name(s), s->rec.policy, "dry run: %s",
                      s->obs.log[i]);
        s->obs.n_log = 0;
        gm_log_kv(GM_LOG_INFO, node_name(s), s->rec.policy,
                  "dry run: would patch node: %s", body);
        json_object_put(patch);
        s->requeue_ms = -1;
        return STEP_WAIT;
    }
    struct write *w;
    int rc = send_write(s, path, patch, 0, &w);
    if (rc != STEP_ASYNC)
        return rc;
    w->obs = s->obs;
    memset(&s->obs, 0, sizeof(s->obs));
    snprintf(s->ns->written_from_rv, sizeof(s->ns->written_from_rv), "%s",
             s->node->resource_version ? s->node->resource_version : "");
    s->ns->start_written = s->clear_retry;
    memcpy(w->from_rv, s->ns->written_from_rv, sizeof(w->from_rv));
    return STEP_ASYNC;
}

static long long elapsed_since(const struct sw *s)
{
    return s->now - s->rec.since;
}

/* The phase the record is in ends now: counted with the next node write. */
static void note_phase_done(struct sw *s)
{
    if (s->obs.n_phase < 2) {
        s->obs.phase[s->obs.n_phase] = gm_phase_name(s->rec.phase);
        s->obs.phase_s[s->obs.n_phase++] = (double)elapsed_since(s);
    }
}

/* An event on the node (or, with on_policy, on its policy) sent once the
 * next node write succeeds (struct obs). A fourth in one step, which no
 * step makes, is sent at once rather than lost. */
static void note_event(struct sw *s, bool on_policy, enum gm_event_type type,
                       const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void note_event(struct sw *s, bool on_policy, enum gm_event_type type,
                       const char *reason, const char *fmt, ...)
{
    struct obs_event one;
    struct obs_event *e = s->obs.n_ev < 3 ? &s->obs.ev[s->obs.n_ev] : &one;
    const char *uid = on_policy ? s->pol.uid : s->node->uid;
    va_list ap;

    e->on_policy = on_policy;
    e->type = type;
    e->reason = reason;
    snprintf(e->name, sizeof(e->name), "%s",
             on_policy ? s->rec.policy : node_name(s));
    snprintf(e->uid, sizeof(e->uid), "%s", uid ? uid : "");
    va_start(ap, fmt);
    vsnprintf(e->note, sizeof(e->note), fmt, ap);
    va_end(ap);
    if (e == &one) {
        struct obs o = {.n_ev = 1};
        o.ev[0] = one;
        obs_emit(s->ctl, &o);
        return;
    }
    s->obs.n_ev++;
}

/* An info line logged once the next node write succeeds (struct obs); a
 * fourth in one step, which no step makes, is logged at once. */
static void note_log(struct sw *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void note_log(struct sw *s, const char *fmt, ...)
{
    char line[sizeof(s->obs.log[0])];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (s->obs.n_log == 3) {
        gm_log_kv(GM_LOG_INFO, node_name(s), s->rec.policy, "%s", line);
        return;
    }
    snprintf(s->obs.node, sizeof(s->obs.node), "%s", node_name(s));
    snprintf(s->obs.policy, sizeof(s->obs.policy), "%s",
             s->rec.policy ? s->rec.policy : "");
    memcpy(s->obs.log[s->obs.n_log++], line, sizeof(line));
}

/* The switch ends with result: counted with the next node write. */
static void note_switch_done(struct sw *s, const char *result)
{
    s->obs.from = gm_mode_name(s->rec.from);
    s->obs.to = gm_mode_name(s->rec.to);
    s->obs.result = result;
    s->obs.switch_s = (double)(s->now - s->rec.started);
}

/* Writes the record (and optional label changes and cordon) at once. */
static int write_record(struct sw *s, json_object *labels, int unschedulable)
{
    json_object *ann = json_object_new_object();
    char *rec = gm_record_format(&s->rec);
    if (rec == NULL) {
        json_object_put(ann);
        json_object_put(labels);
        return -ENOMEM;
    }
    json_object_object_add(ann, GM_ANN_SWITCH, json_object_new_string(rec));
    free(rec);
    /* A retry mark is used up by the write that acts on it, also when it
     * starts a switch of a node marked failed with no record; left in
     * place it would retry that node's next failure at once. Other writes
     * leave it (a mark set during a rollback is for the Failed phase). */
    if (s->clear_retry && s->node->ann_retry)
        json_object_object_add(ann, GM_ANN_RETRY, NULL);
    return patch_node(s, labels, ann, s->cordon ? 1 : unschedulable);
}

static int advance(struct sw *s, enum gm_phase next, json_object *labels,
                   int unschedulable)
{
    if (next != s->rec.phase)
        note_phase_done(s);
    note_log(s, "%s -> %s%s", gm_phase_name(s->rec.phase), gm_phase_name(next),
             s->rec.rolling_back ? " (rolling back)" : "");
    s->rec.phase = next;
    s->rec.since = s->now;
    return write_record(s, labels, unschedulable);
}

static void set_message(struct sw *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void set_message(struct sw *s, const char *fmt, ...)
{
    char msg[sizeof(s->ns->message)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (strcmp(msg, s->ns->message) == 0)
        return;
    memcpy(s->ns->message, msg, sizeof(msg));
    /* The policy's status shows this line: let it be rebuilt. */
    if (s->ctl->on_node_change)
        s->ctl->on_node_change(s->ctl->policy_data, node_name(s));
}

/* Failure: record why, then roll back (the default) or hold the node as it
 * is for a person. A failure while rolling back always holds. */
static int fail(struct sw *s, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(struct sw *s, const char *reason, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    enum gm_phase at = s->rec.phase;
    /* A rollback past its hardware step without `reconfigured` never laid
     * the GPUs (see step_verify): failing there leaves them as they were,
     * and a retry or release must know it. */
    bool back_untouched = s->rec.rolling_back && !s->rec.reconfigured &&
                          at >= GM_PHASE_START_CLIENTS;
    bool touched = s->rec.reconfigured || (at >= GM_PHASE_RECONFIGURE &&
                                           !s->hw_untouched && !back_untouched);
    /* A node first switched by gpumode has no recorded mode: after the
     * hardware changed there is nothing known to put back, and restoring
     * only the old plugin labels would uncordon a node whose plugin cannot
     * serve the new hardware. It is held for a person instead. */
    bool unknown_from = !s->rec.rolling_back && touched &&
                        s->rec.from == GM_MODE_UNKNOWN &&
                        !s->pol.hold_on_failure;
    /* A drain that fails after the hardware changed (a retry whose
     * earlier attempt changed it, or the drain before a reboot): the
     * workloads it could not move are still on the node, and laying the
     * GPUs back under them would break them. It is held instead. */
    bool under_pods = !s->rec.rolling_back && s->pods_left && touched &&
                      !unknown_from && !s->pol.hold_on_failure;
    /* Why the node is held rather than rolled back. */
    const char *held_why =
        under_pods
            ? "; the hardware was changed, and it is not laid back under "
              "the pods still on the node: the node stays cordoned as it is "
              "(annotate gpumode.io/retry to try again)"
        : unknown_from
            ? "; the mode before the switch is not known (the node had no "
              "gpumode.io/mode label), so it cannot be rolled back: the node "
              "stays cordoned as it is (annotate gpumode.io/retry to try the "
              "switch again)"
            : NULL;
    if (held_why) {
        size_t n = strlen(msg);
        snprintf(msg + n, sizeof(msg) - n, "%s", held_why);
    }
    gm_log_kv(GM_LOG_WARN, node_name(s), s->rec.policy, "%s in %s: %s", reason,
              gm_phase_name(s->rec.phase), msg);
    snprintf(s->ns->message, sizeof(s->ns->message), "%.60s: %.440s", reason,
             msg);
    if (gm_set_str(&s->rec.reason, reason) || gm_set_str(&s->rec.message, msg))
        return -ENOMEM;
    const char *ev = strcmp(reason, "RebootRequired") == 0
                         ? GM_REASON_REBOOT_REQUIRED
                         : GM_REASON_SWITCH_FAILED;
    note_event(s, false, GM_EVENT_WARNING, ev,
               "%s %s -> %s failed in %s: %s: %s", node_name(s),
               gm_mode_name(s->rec.from), gm_mode_name(s->rec.to),
               gm_phase_name(s->rec.phase), reason, msg);
    /* Failures are rare and need a person: `kubectl describe gmp` shows
     * them too (the routine events stay on the nodes). */
    if (s->pol.uid)
        note_event(s, true, GM_EVENT_WARNING, ev,
                   "%s %s -> %s failed in %s: %s: %s", node_name(s),
                   gm_mode_name(s->rec.from), gm_mode_name(s->rec.to),
                   gm_phase_name(s->rec.phase), reason, msg);
    /* An entry for HAMi still queued is this switch's target (or, rolling
     * back, its restore): not to be written behind a rollback or a person
     * handling a held node (restore_hami_entry asks for the old). */
    gm_hami_forget(s->ctl->hami, node_name(s));
    if (s->pol.hold_on_failure || s->rec.rolling_back || unknown_from ||
        under_pods) {
        /* Held as it is: whatever acts on the record next (a retry, its
         * release) must know the hardware may have changed. */
        if (touched)
            s->rec.reconfigured = true;
        note_switch_done(s, "failed");
        json_object *labels = json_object_new_object();
        json_object_object_add(labels, GM_LABEL_STATE,
                               json_object_new_string("failed"));
        return advance(s, GM_PHASE_FAILED, labels, -1);
    }
    s->rec.rolling_back = true;
    /* Recorded, not left to the phase: a rollback that fails before its
     * own hardware step (or whose agent changes nothing) must still hold
     * the node as changed. */
    if (touched)
        s->rec.reconfigured = true;
    if (!touched || s->rec.from == GM_MODE_UNKNOWN)
        return advance(s, GM_PHASE_START_CLIENTS, NULL, -1);
    /* Hardware an earlier attempt changed (a held node released, or a
     * retry whose policy went while it drained): workloads may have
     * landed since (a person uncordons a held node), so the rollback
     * drains before the GPUs are laid back (step_drain). */
    if (at <= GM_PHASE_DRAIN || at == GM_PHASE_FAILED)
        return advance(s, GM_PHASE_DRAIN, NULL, -1);
    /* The hardware goes back with the GPU clients stopped: a failure from
     * StartingClients on left the target's plugin and feature discovery
     * running, and they hold the GPUs. With them stopped already,
     * StoppingClients moves straight on; when stopping them is what
     * failed, waiting for them again would not help, and the rollback
     * tries the hardware as before. */
    return advance(s,
                   at == GM_PHASE_STOP_CLIENTS ? GM_PHASE_RECONFIGURE
                                               : GM_PHASE_STOP_CLIENTS,
                   NULL, -1);
}

static int wait_for(struct sw *s, long ms)
{
    s->requeue_ms = ms;
    return STEP_WAIT;
}

/* A helper pod the kubelet stopped at its activeDeadlineSeconds. */
#define DEADLINE_MSG                                                           \
    "%s pod %s ran past its activeDeadlineSeconds and the kubelet stopped it"
#define NEVER_STARTED_MSG                                                      \
    "agent pod %s never started in %lds (image pull, volumes or "              \
    "scheduling: see its events)"

static long long elapsed(const struct sw *s)
{
    return s->now - s->rec.since;
}

/* Waits for a helper pod of this phase: its events requeue the node, and
 * the timer is for a node whose kubelet stopped reporting, when none come
 * and the pod's own deadline is never acted on. */
static int wait_helper(struct sw *s)
{
    long long left = s->ctl->cfg->helper_timeout_s - elapsed(s) + 1;
    return wait_for(s, (long)(left > 0 ? left : 1) * 1000);
}

/* The phase's first apply pod, made as the phase began: one made later
 * replaced a pod that may have run (the node rebooted under it and the
 * new boot ID names another pod, or a person deleted it). Not a
 * rollback's: the attempt before it changed the GPUs. */
static bool first_apply_pod(const struct sw *s, const struct gm_pod *p)
{
    return !s->rec.rolling_back && p->created > 0 &&
           p->created <= s->rec.since + HELPER_CREATE_SLACK_S;
}

/* ---- label sets ---- */

/* Adds key=value to labels when the node differs, saving the old value in
 * the record the first time we touch the key. Returns 1 when added. */
static int want_label(struct sw *s, json_object *labels, const char *key,
                      const char *value)
{
    const char *cur = gm_node_label(s->node, key);
    if ((cur == NULL && value == NULL) ||
        (cur && value && strcmp(cur, value) == 0))
        return 0;
    gm_record_save_label(&s->rec, key, cur);
    json_object_object_add(labels, key,
                           value ? json_object_new_string(value) : NULL);
    return 1;
}

/* ---- pods on the node ---- */

static const struct gm_map *node_pods(struct sw *s)
{
    struct gm_reflector *r = gm_ctl_node_pods(s->ctl, s->ns);
    if (r == NULL || !gm_reflector_has_synced(r))
        return NULL;
    s->ns->pods_failing_ms = 0;
    return gm_reflector_items(r);
}

/* How long the node's pod list must have failed before a phase past its
 * timeout fails on it: a list refused (401, 403) fails at once, as
 * retrying does not fix it; anything else (a timeout, a 5xx) may be a
 * moment's trouble, as just after a restart. */
#define PODS_FAILING_MS 30000

/* The node's pods are not cached (node_pods gave NULL). While their list
 * is first in flight this only waits; once it fails the status line says
 * why, and a phase past timeout_s (> 0) fails with reason: a switch that
 * cannot see the node's pods must not hold it cordoned for ever. A drain
 * passes left_matters as drain_pass does: pods may be there. */
static int pods_unlisted(struct sw *s, const char *reason, long timeout_s,
                         bool left_matters)
{
    struct gm_reflector *r = gm_ctl_node_pods(s->ctl, s->ns);
    struct gm_reflector_stats st = {0};
    uint64_t now_ms = uv_now(s->ctl->loop);

    if (r)
        gm_reflector_get_stats(r, &st);
    const char *why = r == NULL    ? "the watch could not be started"
                      : st.failing ? st.last_error
                                   : NULL;
    if (why == NULL) {
        s->ns->pods_failing_ms = 0;
        return wait_for(s, 500);
    }
    if (s->ns->pods_failing_ms == 0)
        s->ns->pods_failing_ms = now_ms;
    set_message(s, "the node's pods cannot be listed: %s", why);
    if (timeout_s > 0 && elapsed(s) > timeout_s &&
        (st.list_refused != 0 ||
         now_ms - s->ns->pods_failing_ms >= PODS_FAILING_MS)) {
        s->pods_left = left_matters;
        return fail(s, reason,
                    "the node's pods could not be listed in %lds: %s",
                    timeout_s, why);
    }
    return wait_for(s, 1000);
}

static int pod_matches(const struct gm_pod *p, const struct gm_plugin_ref *ref)
{
    struct gm_strsel *sel;
    char err[128];
    int ok = 0;
    if (p->namespace == NULL || strcmp(p->namespace, ref->namespace) != 0)
        return 0;
    if (gm_strsel_parse(ref->selector, &sel, err, sizeof(err)) != 0)
        return 0;
    ok = gm_strsel_match(sel, gm_pod_label_lookup, p);
    gm_strsel_free(sel);
    return ok;
}

/* ---- evictions ---- */

struct evict_call {
    struct gm_ctl *ctl;
    struct gm_node_rt *ns;
    char *uid; /* owned */
};

static void evict_done(void *data, const struct gm_kube_resp *resp)
{
    struct evict_call *c = data;
    /* A doomed node state outlived the controller (gm_ctl_free with this
     * call in flight): nothing but the state itself may be touched. */
    struct gm_eviction *e =
        c->ns->doomed ? NULL : gm_map_get(&c->ns->evictions, c->uid);

    if (e) {
        uint64_t now = uv_now(c->ctl->loop);
        int freed = e->freed_in_flight;
        e->sent = 0;
        e->blocked = GM_EVICT_ASKED;
        e->freed_in_flight = 0;
        e->error[0] = '\0';
        long code = resp->error ? resp->error->code : 0;
        if (resp->error && code != 404 && code != 429)
            snprintf(e->error, sizeof(e->error), "%.40s: %.150s",
                     resp->error->reason[0] ? resp->error->reason : "Error",
                     resp->error->message);
        if (resp->error == NULL || code == 404) {
            /* Accepted, or already gone: wait for the pod to go. (A 409
             * is asked again below: a pod of the name made since fails
             * the uid precondition, but so may a budget's status update
             * that kept conflicting; the first leaves the cache, and is
             * never asked for again.) */
            e->next_try_ms = now + 60000;
        } else if (code == 429) {
            /* A PodDisruptionBudget (or the rate limit) said no: ask again
             * when a budget of the namespace allows a disruption (watched
             * from now on), or else in about five seconds, jittered so
             * many nodes spread out. */
            e->blocked = GM_EVICT_BUDGET;
            e->next_try_ms =
                freed ? now
                      : now + EVICT_RETRY_MS - 1000 + (uint64_t)(rand() % 2000);
            if (gm_ctl_watch_budgets(c->ctl) != 0)
                gm_warn("cannot watch PodDisruptionBudgets; refused "
                        "evictions are retried every %d s",
                        EVICT_RETRY_MS / 1000);
        } else if (code == 500) {
            e->blocked = GM_EVICT_BROKEN; /* the step fails */
        } else if ((code == 403 &&
                    !strstr(resp->error->message, "being terminated") &&
                    !strstr(resp->error->message, "DisruptedPods")) ||
                   code == 400 || code == 422) {
            /* Refused, as kubectl drain takes it (RBAC without
             * pods/eviction, an admission webhook): asking again would
             * only leave the node drained of the rest for nothing. A
             * namespace being deleted (403 too) ends its pods anyway. */
            e->blocked = GM_EVICT_REFUSED;
        } else {
            /* Asked again, and the status line says why. */
            e->next_try_ms = now + EVICT_RETRY_MS;
        }
        if (!c->ctl->stopping)
            gm_ctl_enqueue_node(c->ctl, c->ns->name);
    }
    gm_ctl_node_state_release(c->ns);
    free(c->uid);
    free(c);
}

static int send_eviction(struct sw *s, const struct gm_pod *p,
                         struct gm_eviction *e)
{
    if (s->ctl->dry_run) {
        gm_log_kv(GM_LOG_INFO, node_name(s), s->rec.policy,
                  "dry run: would evict %s/%s", p->namespace, p->name);
        e->next_try_ms = uv_now(s->ctl->loop) + 60000;
        return 0;
    }
    struct evict_call *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    c->ctl = s->ctl;
    c->ns = s->ns;
    c->uid = strdup(p->uid);
    /* A grace period of 0 removes the pod from the API at once ("zero
     * means delete immediately"), before its containers have stopped:
     * the drain would take it as gone while it may still hold a GPU. As
     * kubectl delete does without --force, 0 is sent as 1. */
    long grace = s->pol.drain.grace_s == 0 ? 1 : s->pol.drain.grace_s;
    int err = c->uid ? gm_kube_evict(s->ctl->kube, p->namespace, p->name,
                                     p->uid, grace, evict_done, c)
                     : -ENOMEM;
    if (err) {
        free(c->uid);
        free(c);
        return err;
    }
    e->sent = 1;
    s->ns->inflight++;
    return 0;
}

/* ---- phases ---- */

static int step_cordon(struct sw *s)
{
    return advance(s, GM_PHASE_DRAIN, NULL, s->node->unschedulable ? -1 : 1);
}

static int step_start_clients(struct sw *s);
static int step_finish(struct sw *s);

/* Adds the profile's stop labels to labels; returns how many differ. */
static int stop_labels(struct sw *s, json_object *labels)
{
    const struct gm_profile *prof = s->ctl->cfg->profile;
    int changed = 0;
    for (size_t i = 0; i < prof->stop.n; i++)
        changed +=
            want_label(s, labels, prof->stop.key[i], prof->stop.value[i]);
    return changed;
}

/* Moves straight on to the next phase without writing the record in
 * between: the next phase's own write carries it. Saves an API call and a
 * watch round trip per phase. */
static void enter(struct sw *s, enum gm_phase next)
{
    note_phase_done(s);
    note_log(s, "%s -> %s%s", gm_phase_name(s->rec.phase), gm_phase_name(next),
             s->rec.rolling_back ? " (rolling back)" : "");
    s->rec.phase = next;
    s->rec.since = s->now;
    s->entered = true;
}

/* A rollback drains only what the hardware going back would break: GPU
 * pods, none waited for (waitForCompletion may have no limit, and the node
 * is out of service meanwhile), within the policy's timeout or 600 s, and
 * never less than the grace it gives evicted pods plus a minute. The
 * policy's force and deleteEmptyDirData still say which may go. */
static struct gm_drain_opts rollback_drain(const struct gm_drain_opts *o)
{
    struct gm_drain_opts r = *o;
    r.gpu_pods_only = true;
    r.pod_selector = NULL;
    r.wait_selector = NULL;
    r.wait_timeout_s = 0;
    if (r.timeout_s <= 0)
        r.timeout_s = 600;
    /* gracePeriodSeconds has no upper bound in the CRD. */
    long with_grace = r.grace_s > LONG_MAX - 60 ? LONG_MAX : r.grace_s + 60;
    if (r.grace_s > 0 && r.timeout_s < with_grace)
        r.timeout_s = with_grace;
    return r;
}

/* One pass of a drain of the node's pods under opts: fails the switch
 * (DrainBlocked, EvictionFailed, DrainTimeout, WaitTimeout, the timeouts
 * counted from the phase's start) or sends the evictions due and says how
 * many pods are left. A failure marks pods left (s->pods_left) when
 * left_matters: laying the GPUs back under them could break them. Returns
 * a step result with *drained false, or 0 with *drained true when no pod
 * is left. */
static int drain_pass(struct sw *s, const struct gm_drain_opts *opts,
                      bool left_matters, bool *drained)
{
    const struct gm_map *pods = node_pods(s);
    int evicting = 0, terminating = 0, waiting = 0;
    const struct gm_pod *first_blocked = NULL;
    const struct gm_eviction *first_error = NULL;
    uint64_t now_ms = uv_now(s->ctl->loop);
    char why[256];

    *drained = false;
    if (pods == NULL)
        return pods_unlisted(s, "DrainTimeout", opts->timeout_s, left_matters);
    /* As kubectl drain does, every pod is looked at before any is evicted:
     * a drain that cannot finish disrupts no workload on the way. */
    for (struct gm_map_entry *it = gm_map_first(pods); it;
         it = gm_map_next(pods, it)) {
        const struct gm_pod *p = it->value;
        enum gm_drain_action a = gm_drain_classify(opts, p, why, sizeof(why));
        if (a == GM_DRAIN_BLOCKED) {
            s->pods_left = left_matters;
            return fail(s, "DrainBlocked", "pod %s/%s %s", p->namespace,
                        p->name, why);
        }
        const struct gm_eviction *e =
            a == GM_DRAIN_EVICT ? gm_map_get(&s->ns->evictions, p->uid) : NULL;
        if (e && e->blocked == GM_EVICT_BROKEN) {
            s->pods_left = left_matters;
            return fail(s, "EvictionFailed",
                        "eviction of %s/%s answered 500 (%s): the "
                        "PodDisruptionBudgets for it may be misconfigured",
                        p->namespace, p->name, e->error);
        }
        if (e && e->blocked == GM_EVICT_REFUSED) {
            s->pods_left = left_matters;
            return fail(s, "EvictionFailed", "eviction of %s/%s refused: %s",
                        p->namespace, p->name, e->error);
        }
    }
    for (struct gm_map_entry *it = gm_map_first(pods); it;
         it = gm_map_next(pods, it)) {
        const struct gm_pod *p = it->value;
        enum gm_drain_action a = gm_drain_classify(opts, p, why, sizeof(why));
        if (a == GM_DRAIN_SKIP)
            continue;
        if (a == GM_DRAIN_TERMINATING) {
            terminating++;
            continue;
        }
        if (a == GM_DRAIN_WAIT) {
            waiting++;
            continue;
        }
        evicting++;
        struct gm_eviction *e = gm_map_get(&s->ns->evictions, p->uid);
        if (e == NULL) {
            e = calloc(1, sizeof(*e));
            if (e == NULL || gm_map_put(&s->ns->evictions, p->uid, e, NULL)) {
                free(e);
                return -ENOMEM;
            }
            snprintf(e->namespace, sizeof(e->namespace), "%s",
                     p->namespace ? p->namespace : "");
        }
        if (e->error[0] && first_error == NULL)
            first_error = e;
        if (e->blocked == GM_EVICT_BUDGET && first_blocked == NULL) {
            first_blocked = p;
            gm_obs_node_event(s->ctl, s->node, GM_EVENT_WARNING,
                              GM_REASON_EVICTION_BLOCKED,
                              "eviction of %s/%s blocked by a "
                              "PodDisruptionBudget",
                              p->namespace, p->name);
        }
        if (!e->sent && e->next_try_ms <= now_ms) {
            int err = send_eviction(s, p, e);
            if (err)
                return err;
        }
    }
    int left = evicting + terminating + waiting;
    if (left == 0) {
        *drained = true;
        return 0;
    }
    if (first_blocked)
        set_message(s,
                    "%d pods left; eviction of %s/%s blocked by "
                    "PodDisruptionBudget",
                    left, first_blocked->namespace, first_blocked->name);
    else if (first_error)
        set_message(s, "%d pods left; an eviction failed, retrying: %s", left,
                    first_error->error);
    else if (terminating > 0)
        set_message(s, "%d pods left, %d of them terminating", left,
                    terminating);
    else
        set_message(s, "%d pods left", left);
    /* An evicted pod that never goes (a finalizer, a kubelet that is gone)
     * is the drain's to time out too, as with kubectl drain --timeout. */
    if (evicting + terminating > 0 && opts->timeout_s > 0 &&
        elapsed(s) > opts->timeout_s) {
        s->pods_left = left_matters;
        return fail(s, "DrainTimeout", "drain did not finish in %lds: %s",
                    opts->timeout_s, s->ns->message);
    }
    if (evicting + terminating == 0 && opts->wait_timeout_s > 0 &&
        elapsed(s) > opts->wait_timeout_s) {
        s->pods_left = left_matters;
        return fail(s, "WaitTimeout",
                    "pods to wait for did not complete in %lds",
                    opts->wait_timeout_s);
    }
    return wait_for(s, 1000);
}

static int step_drain(struct sw *s)
{
    bool drained;

    /* A rollback drains only to lay back hardware an earlier attempt
     * changed (see fail); otherwise the hardware is as it was and the old
     * clients start again. */
    if (s->rec.rolling_back &&
        !(s->rec.reconfigured && s->rec.from != GM_MODE_UNKNOWN))
        return advance(s, GM_PHASE_START_CLIENTS, NULL, -1);
    const struct gm_drain_opts opts =
        s->rec.rolling_back ? rollback_drain(&s->pol.drain) : s->pol.drain;
    int rc = drain_pass(s, &opts, true, &drained);
    if (!drained)
        return rc;
    /* Drained: stop the GPU clients in the same write. */
    json_object *labels = json_object_new_object();
    s->ns->message[0] = '\0';
    stop_labels(s, labels);
    return advance(s, GM_PHASE_STOP_CLIENTS, labels, -1);
}

static int step_stop_clients(struct sw *s)
{
    const struct gm_profile *prof = s->ctl->cfg->profile;
    json_object *labels = json_object_new_object();

    if (stop_labels(s, labels))
        return write_record(s, labels, -1);
    json_object_put(labels);

    const struct gm_map *pods = node_pods(s);
    if (pods == NULL)
        return pods_unlisted(s, "ClientsStuck", s->ctl->cfg->clients_timeout_s,
                             false);
    int left = 0;
    for (struct gm_map_entry *it = gm_map_first(pods); it;
         it = gm_map_next(pods, it)) {
        const struct gm_pod *p = it->value;
        if (p->phase == GM_POD_SUCCEEDED || p->phase == GM_POD_FAILED)
            continue;
        for (size_t i = 0; i < prof->n_clients; i++)
            if (pod_matches(p, &prof->clients[i]))
                left++;
    }
    if (left == 0) {
        note_event(s, false, GM_EVENT_NORMAL, GM_REASON_CLIENTS_STOPPED,
                   "GPU clients stopped on %s%s", node_name(s),
                   s->rec.rolling_back ? " (rolling back)" : "");
        return advance(s, GM_PHASE_RECONFIGURE, NULL, -1);
    }
    set_message(s, "waiting for %d GPU client pods to stop", left);
    if (elapsed(s) > s->ctl->cfg->clients_timeout_s)
        return fail(s, "ClientsStuck", "%d GPU client pods still on the node",
                    left);
    return wait_for(s, WAIT_POLL_MS);
}

/* A helper pod's DELETE. */
struct helper_delete {
    struct gm_ctl *ctl;
    struct gm_node_rt *ns; /* borrowed, held (inflight) */
    char name[64];
};

static void helper_deleted(void *data, const struct gm_kube_resp *resp)
{
    struct helper_delete *d = data;
    /* Refused or lost (not gone already): the next reconcile asks again,
     * as a helper that goes on running holds up the next one. */
    if (resp->error && resp->error->code != 404 &&
        resp->error->err != -ECANCELED && !d->ns->doomed &&
        strcmp(d->ns->deleted_helper, d->name) == 0) {
        gm_log_kv(GM_LOG_WARN, d->ns->name, NULL,
                  "deleting helper pod %s failed: %s: %s", d->name,
                  resp->error->reason, resp->error->message);
        d->ns->deleted_helper[0] = '\0';
        gm_ctl_enqueue_node_after(d->ctl, d->ns->name, 2000);
    }
    gm_ctl_node_state_release(d->ns);
    free(d);
}

/* Whether helper pod p is pinned to node. By spec.nodeName, which holds
 * the whole name: the gpumode.io/node label is cut to a label value's 63
 * characters. */
static bool helper_of(const struct gm_pod *p, const char *node)
{
    return p->node_name && strcmp(p->node_name, node) == 0;
}

/* Helper pods of this node other than `keep` are from finished steps (or a
 * crash between reading a result and deleting the pod), or ones whose step
 * timed out: remove them. */
static void collect_helpers_of(struct gm_ctl *ctl, const char *node,
                               const char *keep)
{
    const struct gm_map *m = gm_reflector_items(ctl->helpers);
    for (struct gm_map_entry *it = gm_map_first(m); it;
         it = gm_map_next(m, it)) {
        const struct gm_pod *p = it->value;
        if (!helper_of(p, node) || p->deleting)
            continue;
        if (keep && strcmp(p->name, keep) == 0)
            continue;
        if (ctl->dry_run)
            continue;
        struct gm_node_rt *ns = gm_map_get(&ctl->node_states, node);
        if (ns && strcmp(ns->deleted_helper, p->name) == 0)
            continue;
        if (ns)
            snprintf(ns->deleted_helper, sizeof(ns->deleted_helper), "%s",
                     p->name);
        char path[512];
        snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods/%s",
                 p->namespace, p->name);
        /* A finished pod goes at once. One that may still run goes with
         * its grace period: its object stays until the kubelet has ended
         * it, which the next helper waits for (running_helper). */
        long grace =
            p->phase == GM_POD_SUCCEEDED || p->phase == GM_POD_FAILED ? 0 : -1;
        struct helper_delete *d = ns ? calloc(1, sizeof(*d)) : NULL;
        if (d) {
            d->ctl = ctl;
            d->ns = ns;
            snprintf(d->name, sizeof(d->name), "%s", p->name);
        }
        if (gm_kube_delete(ctl->kube, path, p->uid, NULL, grace,
                           d ? helper_deleted : NULL, d) == 0) {
            if (d)
                ns->inflight++;
        } else {
            free(d);
            if (ns)
                ns->deleted_helper[0] = '\0';
        }
    }
}

static void collect_helpers(struct sw *s, const char *keep)
{
    collect_helpers_of(s->ctl, node_name(s), keep);
}

/* A helper pod of this node other than keep that may still be running:
 * one whose step timed out, being deleted. Or NULL. */
static const struct gm_pod *running_helper(struct sw *s, const char *keep)
{
    const struct gm_map *m = gm_reflector_items(s->ctl->helpers);
    for (struct gm_map_entry *it = gm_map_first(m); it;
         it = gm_map_next(m, it)) {
        const struct gm_pod *p = it->value;
        if (helper_of(p, node_name(s)) && strcmp(p->name, keep) != 0 &&
            p->phase != GM_POD_SUCCEEDED && p->phase != GM_POD_FAILED)
            return p;
    }
    return NULL;
}

/* How long a helper pod we posted may take to reach the helper cache
 * before we post it again (it may have been deleted before we saw it). */
#define HELPER_SEEN_MS 10000

/* Creates the helper pod if it is not there; returns it when it is. Its
 * name hashes the first named of its argc arguments and salt, so a
 * restarted (or upgraded) controller finds the pod again. */
static int helper(struct sw *s, const char *step, const char *salt,
                  const char *const *argv, size_t argc, size_t named,
                  const struct gm_pod **out)
{
    const char *hash_argv[16];
    char name[64], key[320];
    size_t n = 0;

    for (size_t i = 0; i < named && i < argc && n < 15; i++)
        hash_argv[n++] = argv[i];
    hash_argv[n++] = salt ? salt : "";
    struct gm_helper_step st = {.node = node_name(s),
                                .step = step,
                                .attempt = s->rec.attempt,
                                .argv = hash_argv,
                                .argc = n};
    gm_helper_pod_name(&st, name, sizeof(name));
    collect_helpers(s, name);
    snprintf(key, sizeof(key), "%s/%s", s->ctl->cfg->namespace, name);
    *out = gm_reflector_get(s->ctl->helpers, key);
    if (*out) {
        snprintf(s->ns->seen_helper, sizeof(s->ns->seen_helper), "%s", name);
        return STEP_WAIT;
    }
    uint64_t now_ms = uv_now(s->ctl->loop);
    if (strcmp(s->ns->created_helper, name) == 0 &&
        now_ms - s->ns->created_at_ms < HELPER_SEEN_MS)
        return wait_for(s, 1000); /* posted; its watch event wakes us */
    /* An agent whose step timed out may still be running nvidia-smi while
     * its pod goes: the next one waits, so two never work on the GPUs at
     * once. Its deletion's events wake us; the phase's timeout covers a
     * node whose kubelet no longer ends it. */
    const struct gm_pod *busy = running_helper(s, name);
    if (busy && elapsed(s) > s->ctl->cfg->helper_timeout_s)
        return fail(s, "HelperTimeout",
                    "helper pod %s of an earlier step did not end in %lds",
                    busy->name, s->ctl->cfg->helper_timeout_s);
    if (busy) {
        set_message(s, "waiting for helper pod %s to end", busy->name);
        return wait_helper(s);
    }
    /* A create the API server keeps refusing (an admission policy against
     * privileged pods, a full quota) gets the phase the time a helper
     * would, then fails the switch: retried for ever, it held the node
     * cordoned with its GPU clients stopped. A pod refused every time
     * never ran, so the hardware is as it was, unless this helper was
     * seen before (it may have been deleted midway). */
    if (s->ns->helper_refused && elapsed(s) > s->ctl->cfg->helper_timeout_s) {
        char why[sizeof(s->ns->message)];
        snprintf(why, sizeof(why), "%s", s->ns->message);
        /* A rollback's helper: the attempt before it changed them. */
        if (strcmp(s->ns->seen_helper, name) != 0 && !s->rec.rolling_back)
            s->hw_untouched = true;
        return fail(s, "HelperNotCreated",
                    "helper pod %s could not be created in %lds (%s)", name,
                    s->ctl->cfg->helper_timeout_s, why);
    }

    const struct gm_ctl_config *c = s->ctl->cfg;
    struct gm_helper_config hc = {.namespace = c->namespace,
                                  .image = c->agent_image,
                                  .driver_root = c->driver_root,
                                  .nvidia_smi = c->nvidia_smi,
                                  .runtime_class = c->runtime_class,
                                  .deadline_s = c->helper_timeout_s};
    st.argv = argv;
    st.argc = argc;
    json_object *pod = gm_helper_pod(&hc, &st);
    /* The name must hash the salt too: rebuild it with the full set. */
    json_object *meta;
    json_object_object_get_ex(pod, "metadata", &meta);
    json_object_object_add(meta, "name", json_object_new_string(name));
    if (s->ctl->dry_run) {
        gm_log_kv(GM_LOG_INFO, node_name(s), s->rec.policy,
                  "dry run: would create helper pod %s", name);
        json_object_put(pod);
        return wait_for(s, -1);
    }
    char path[256];
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods", c->namespace);
    gm_log_kv(GM_LOG_INFO, node_name(s), s->rec.policy,
              "starting helper pod %s (%s)", name, step);
    struct write *w;
    int rc = send_write(s, path, pod, 1, &w);
    if (rc != STEP_ASYNC)
        return rc;
    w->helper_create = 1;
    snprintf(s->ns->created_helper, sizeof(s->ns->created_helper), "%s", name);
    s->ns->created_at_ms = now_ms;
    return STEP_ASYNC;
}

/* What a helper said without a result of the agent's, into out (cap
 * bytes): none when it said nothing; a result of the agent's (an object
 * with "ok") as it is; else what its container said, as a rule the tail
 * of its log, which the kubelet hands out as the termination message of
 * a container that failed without writing one (FallbackToLogsOnError: up
 * to 80 lines; the runtime's words for one that never started). The last
 * lines say most, so the start is what goes, at a character's boundary;
 * lines are joined with " | ". */
static void log_tail(const char *term, const char *none, char *out, size_t cap)
{
    size_t len = term ? strlen(term) : 0;
    while (len > 0 && isspace((unsigned char)term[len - 1]))
        len--;
    if (len == 0) {
        snprintf(out, cap, "%s", none);
        return;
    }
    json_object *res = term[0] == '{' ? json_tokener_parse(term) : NULL;
    bool result = gm_json_get(res, "ok") != NULL;
    json_object_put(res);
    if (result) {
        snprintf(out, cap, "%s", term);
        return;
    }
    size_t at = (size_t)snprintf(out, cap, "%s; its container said: ", none);
    char *flat = malloc(len * 3 + 1); /* a line break takes 3 for 1 */
    if (flat == NULL || at + 4 >= cap) {
        free(flat);
        snprintf(out, cap, "%s", none);
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (term[i] == '\n') {
            memcpy(flat + n, " | ", 3);
            n += 3;
        } else if (term[i] != '\r') {
            flat[n++] = term[i];
        }
    }
    flat[n] = '\0';
    size_t from = 0, room = cap - at - 1;
    if (n > room) {
        from = n - (room - 3);
        while (from < n && ((unsigned char)flat[from] & 0xC0) == 0x80)
            from++;
    }
    snprintf(out + at, cap - at, "%s%s", from ? "..." : "", flat + from);
    free(flat);
}

/* The layout a probe found, in the agent's layout form: one entry per GPU
 * so a rollback restores exactly what was there. NULL when the result
 * cannot be read. */
static char *layout_from_probe(const char *result)
{
    json_object *r = result ? json_tokener_parse(result) : NULL;
    json_object *gpus = gm_json_get(r, "gpus");
    json_object *out = json_object_new_array();
    char *text = NULL;

    if (gpus == NULL || !json_object_is_type(gpus, json_type_array) ||
        !json_object_get_boolean(gm_json_get(r, "ok")))
        goto done;
    for (size_t i = 0; i < json_object_array_length(gpus); i++) {
        json_object *g = json_object_array_get_idx(gpus, i);
        json_object *inst = gm_json_get(g, "instances");
        const char *cur = json_object_get_string(gm_json_get(g, "migCurrent"));
        json_object *e = json_object_new_object();
        json_object *dev = json_object_new_array();
        json_object_array_add(dev, json_object_new_int(json_object_get_int(
                                       gm_json_get(g, "index"))));
        json_object_object_add(e, "devices", dev);
        int enabled = cur && strcmp(cur, "Enabled") == 0;
        if (enabled && (inst == NULL || json_object_object_length(inst) == 0)) {
            /* MIG on without instances serves nothing; leave the GPU. */
            json_object_put(e);
            continue;
        }
        json_object_object_add(e, "migEnabled",
                               json_object_new_boolean(enabled));
        if (enabled)
            json_object_object_add(e, "migDevices", json_object_get(inst));
        json_object_array_add(out, e);
    }
    text = strdup(json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN));
done:
    json_object_put(out);
    json_object_put(r);
    return text;
}

/* Before a MIG node changes, a probe writes its current layout into the
 * record, so a rollback can put back exactly that. Returns 0 once it is
 * there. */
static int record_from_layout(struct sw *s)
{
    const char *argv[] = {"probe"};
    const struct gm_pod *p;

    if (s->rec.rolling_back || s->rec.from != GM_MODE_MIG ||
        (s->rec.from_layout && s->rec.from_layout[0]))
        return 0;
    int rc = helper(s, "probe", s->node->boot_id, argv, 1, 1, &p);
    if (rc != STEP_WAIT)
        return rc;
    if (p == NULL)
        return STEP_PENDING; /* posted, or a dry run: helper() set when */
    if (p->phase != GM_POD_SUCCEEDED && p->phase != GM_POD_FAILED) {
        set_message(s, "probing the GPUs in pod %s", p->name);
        if (elapsed(s) > s->ctl->cfg->helper_timeout_s) {
            s->hw_untouched = true;
            return fail(s, "HelperTimeout",
                        "probe pod %s did not finish in %lds", p->name,
                        s->ctl->cfg->helper_timeout_s);
        }
        wait_helper(s);
        return STEP_PENDING;
    }
    char *layout = layout_from_probe(p->term_message);
    if (layout == NULL) {
        s->hw_untouched = true;
        if (p->deadline_exceeded)
            return fail(s, "HelperTimeout", DEADLINE_MSG, "probe", p->name);
        char said[440];
        log_tail(p->term_message, "no result", said, sizeof(said));
        return fail(s, "ProbeFailed", "could not read the GPUs: %s", said);
    }
    int err = gm_set_str(&s->rec.from_layout, layout);
    free(layout);
    if (err)
        return err;
    /* The apply helper gets the whole helperTimeoutSeconds from here, as
     * its pod's own deadline counts from its start: judged from the
     * phase's start, it lost the probe's time (the node's first helper,
     * which pays the image pull), and a switch failed while its agent
     * still ran, the rollback deleting the pod midway. */
    s->rec.since = s->now;
    return write_record(s, NULL, -1);
}

/* Keeps the uuids of the GPUs the agent listed, in index order, when
 * HAMi runs on either side of the switch: its filterdevices may leave
 * GPUs out by uuid, and verification counts without them. Unknown (NULL)
 * when the list lacks one (the agent shortens a long result). 0 or
 * -ENOMEM. */
static int note_gpu_uuids(struct sw *s, json_object *gpus)
{
    size_t n = gm_json_len(gpus);
    const char *by_index[64] = {0};
    char text[64 * 96];
    size_t off = 0;
    bool known = s->rec.to == GM_MODE_VGPU || s->rec.from == GM_MODE_VGPU;

    for (size_t i = 0; known && i < n && i < 64; i++) {
        json_object *g = json_object_array_get_idx(gpus, i);
        int idx = json_object_get_int(gm_json_get(g, "index"));
        const char *u = gm_json_str(g, "uuid");
        known = idx >= 0 && (size_t)idx < n && u && u[0] && !strchr(u, ',') &&
                strlen(u) < 90 && by_index[idx] == NULL;
        if (known)
            by_index[idx] = u;
    }
    for (size_t i = 0; known && i < n; i++)
        off += (size_t)snprintf(text + off, sizeof(text) - off, "%s%s",
                                i ? "," : "", by_index[i]);
    return gm_set_str(&s->rec.gpu_uuids, known ? text : NULL);
}

/* The agent's nvidia-smi needs the GPU driver. Where the GPU Operator
 * runs it in a pod on the node, the node is Ready after a reboot well
 * before that pod has built and loaded the driver: no helper starts
 * until the pod is Ready, within rebootTimeoutSeconds of the phase's
 * start. Sets *go when the agent may run (no such pod: a driver on the
 * host); otherwise returns the step's result. */
static int driver_wait(struct sw *s, bool *go)
{
    const struct gm_profile *prof = s->ctl->cfg->profile;
    const struct gm_map *pods;
    const struct gm_pod *waiting = NULL;

    *go = false;
    if (prof->n_drivers == 0) {
        *go = true;
        return 0;
    }
    pods = node_pods(s);
    if (pods == NULL)
        return pods_unlisted(s, "DriverNotReady", s->ctl->cfg->reboot_timeout_s,
                             false);
    for (struct gm_map_entry *it = gm_map_first(pods); it && !waiting;
         it = gm_map_next(pods, it)) {
        const struct gm_pod *p = it->value;
        if (p->phase == GM_POD_SUCCEEDED || p->phase == GM_POD_FAILED)
            continue;
        for (size_t i = 0; i < prof->n_drivers && !waiting; i++)
            if (pod_matches(p, &prof->drivers[i]) &&
                !(p->phase == GM_POD_RUNNING && p->ready && !p->deleting))
                waiting = p;
    }
    if (waiting == NULL && s->ns->driver_waited) {
        /* The agent gets the whole helperTimeoutSeconds from here, as
         * after the probe: the wait is not its time. */
        s->ns->driver_waited = false;
        s->rec.since = s->now;
        return write_record(s, NULL, -1);
    }
    if (waiting == NULL) {
        *go = true;
        return 0;
    }
    s->ns->driver_waited = true;
    if (elapsed(s) > s->ctl->cfg->reboot_timeout_s)
        return fail(s, "DriverNotReady",
                    "the GPU driver pod %s/%s is not Ready after %lds: the "
                    "agent needs the driver (see that pod's logs)",
                    waiting->namespace, waiting->name,
                    s->ctl->cfg->reboot_timeout_s);
    set_message(s, "waiting for the GPU driver pod %s/%s to be Ready",
                waiting->namespace, waiting->name);
    return wait_for(s, WAIT_POLL_MS);
}

static int step_reconfigure(struct sw *s)
{
    enum gm_mode mode = target_mode(s);
    const char *layout = target_layout(s);
    const char *argv[10];
    size_t argc = 0;
    const struct gm_pod *p;
    char wait[24];

    if (mode == GM_MODE_UNKNOWN)
        return advance(s, GM_PHASE_START_CLIENTS, NULL, -1);
    if (mode == GM_MODE_MIG && (layout == NULL || layout[0] == '\0'))
        return fail(s, "NoLayout",
                    "no MIG layout is known to restore on this node");
    /* The probe found every GPU with MIG on and no instance (mig-parted's
     * all-enabled, or instances destroyed behind gpumode's back), which it
     * leaves out: the device plugin refuses a MIG-enabled GPU without MIG
     * devices, so the node served nothing before. Held for a person,
     * saying so, rather than the agent refusing an empty layout. */
    if (mode == GM_MODE_MIG && s->rec.rolling_back && strcmp(layout, "[]") == 0)
        return fail(s, "NoLayout",
                    "before the switch every GPU had MIG on and no instance, "
                    "which the device plugin does not serve: there is no "
                    "layout to put back, so the node stays cordoned as it is "
                    "(while a policy selects it, annotate gpumode.io/retry "
                    "to try the switch again)");
    bool go;
    int drc = driver_wait(s, &go);
    if (!go)
        return drc;
    int prc = record_from_layout(s);
    if (prc == STEP_PENDING)
        return STEP_WAIT; /* when to look again is set */
    if (prc != 0)
        return prc;
    argv[argc++] = "apply";
    argv[argc++] = "--mode";
    argv[argc++] = gm_mode_name(mode);
    if (mode == GM_MODE_MIG) {
        argv[argc++] = "--layout";
        argv[argc++] = layout;
    }
    argv[argc++] = "--allow-reset";
    /* The agent waits for compute processes on the GPUs to exit before
     * GPUInUse; under a short helperTimeoutSeconds it gets a third of it,
     * so its answer (and whether it changed anything) comes before the
     * deadline. Passed only then, as the pod's name hashes its arguments. */
    long in_use_wait = s->ctl->cfg->helper_timeout_s / 3;
    if (in_use_wait < GM_AGENT_IN_USE_WAIT_S) {
        snprintf(wait, sizeof(wait), "%ld", in_use_wait);
        argv[argc++] = "--in-use-wait";
        argv[argc++] = wait;
    }
    /* No --allow-reboot: the agent never reboots in apply (it answers
     * needs=reboot, and the policy's allowReboot decides here), and the
     * pod's name hashes its arguments, so an edit of allowReboot while
     * the agent ran deleted it midway to start it anew. */
    int rc = helper(s, s->rec.rolling_back ? "rollback" : "apply",
                    s->node->boot_id, argv, argc, argc, &p);
    if (rc != STEP_WAIT || p == NULL)
        return rc;
    if (p->phase != GM_POD_SUCCEEDED && p->phase != GM_POD_FAILED) {
        bool pending = p->phase == GM_POD_PENDING;
        set_message(s,
                    pending ? "agent pod %s not started yet"
                            : "agent running in pod %s",
                    p->name);
        if (elapsed(s) <= s->ctl->cfg->helper_timeout_s)
            return wait_helper(s);
        /* Still Pending, the pod never ran its agent (an image that cannot
         * be pulled, a volume that does not mount): the GPUs are as they
         * were, and a rollback need not hold the node, if no pod before
         * it ran (first_apply_pod). */
        if (pending && first_apply_pod(s, p))
            s->hw_untouched = true;
        return fail(s, "HelperTimeout",
                    pending ? NEVER_STARTED_MSG
                            : "agent pod %s did not finish in %lds",
                    p->name, s->ctl->cfg->helper_timeout_s);
    }
    json_object *res =
        p->term_message ? json_tokener_parse(p->term_message) : NULL;
    const char *reason = json_object_get_string(gm_json_get(res, "reason"));
    const char *msg = json_object_get_string(gm_json_get(res, "message"));
    const char *needs = json_object_get_string(gm_json_get(res, "needs"));
    int ok = json_object_get_boolean(gm_json_get(res, "ok"));
    char reason_c[64], msg_c[768];
    snprintf(reason_c, sizeof(reason_c), "%s", reason ? reason : "AgentFailed");
    if (msg)
        snprintf(msg_c, sizeof(msg_c), "%s", msg);
    else /* 440: the node's status line shows it whole (see fail) */
        log_tail(p->term_message, "the agent left no result", msg_c, 440);
    /* No result of its own: the kubelet ended it at the pod's deadline
     * (while no controller watched; one that did fails it first). */
    if (reason == NULL && p->phase == GM_POD_FAILED && p->deadline_exceeded) {
        snprintf(reason_c, sizeof(reason_c), "HelperTimeout");
        if (p->ran) {
            snprintf(msg_c, sizeof(msg_c), DEADLINE_MSG, "agent", p->name);
        } else {
            /* Its container never started (an image never pulled): it
             * never ran its agent, as a pod still Pending at the timeout. */
            snprintf(msg_c, sizeof(msg_c), NEVER_STARTED_MSG, p->name,
                     s->ctl->cfg->helper_timeout_s);
            if (first_apply_pod(s, p))
                s->hw_untouched = true;
        }
    } else if (reason == NULL && p->phase == GM_POD_FAILED && p->start_error &&
               !p->ran) {
        /* The runtime could not start its container (an image without
         * the agent, a mount that failed): the agent never ran, as for a
         * pod still Pending at the timeout. */
        log_tail(p->term_message, "the agent never started", msg_c, 440);
        if (first_apply_pod(s, p))
            s->hw_untouched = true;
    }
    int reboot = needs && strcmp(needs, "reboot") == 0;
    /* The agent says whether it ran any command that changes the GPUs. A
     * refusal before the first one (GPUInUse: a process found on a GPU)
     * left the hardware as it was, so the node is rolled back rather than
     * held, even when its mode before the switch is unknown. No result
     * (the pod killed midway) counts as changed. A rollback's agent that
     * changed nothing leaves the hardware as the failed attempt left it,
     * changed or not, so it says nothing there. */
    json_object *changed = gm_json_get(res, "changed");
    if (!ok && changed && json_object_is_type(changed, json_type_boolean) &&
        !json_object_get_boolean(changed) && !s->rec.rolling_back)
        s->hw_untouched = true;
    json_object *gpus = gm_json_get(res, "gpus");
    int n_gpus = (int)gm_json_len(gpus);
    /* Any result that lists the GPUs counts them, a failed one too: the
     * rollback verifies with it. */
    if (n_gpus > 0 && n_gpus <= 64) {
        s->rec.gpus = n_gpus;
        if (note_gpu_uuids(s, gpus) != 0) {
            json_object_put(res);
            return -ENOMEM;
        }
    }
    json_object_put(res);
    if (ok && p->phase == GM_POD_SUCCEEDED) {
        note_event(s, false, GM_EVENT_NORMAL, GM_REASON_RECONFIGURED,
                   "GPUs of %s set for %s", node_name(s), gm_mode_name(mode));
        s->rec.reconfigured = true;
        s->ns->message[0] = '\0';
        /* Start the clients in the same write that records the result;
         * the helper pod goes once the record has left this phase. */
        enter(s, GM_PHASE_START_CLIENTS);
        return step_start_clients(s);
    }
    /* One reboot per attempt: a GPU that still needs one after the node
     * rebooted would otherwise reboot it for ever. */
    if (reboot && s->pol.allow_reboot && !s->rec.rolling_back &&
        s->rec.boot_id == NULL && !gm_agent_boot_id_valid(s->node->boot_id))
        return fail(s, "RebootRequired",
                    "%s (the node reports no status.nodeInfo.bootID in the "
                    "kernel's form, so gpumode could not tell when it has "
                    "rebooted; reboot it by hand, then retry)",
                    msg_c);
    if (reboot && s->pol.allow_reboot && !s->rec.rolling_back &&
        s->rec.boot_id == NULL) {
        if (gm_set_str(&s->rec.boot_id, s->node->boot_id))
            return -ENOMEM;
        s->rec.reconfigured = true;
        return advance(s, GM_PHASE_REBOOT, NULL, -1);
    }
    if (reboot && s->rec.boot_id && !s->rec.rolling_back)
        return fail(s, "RebootRequired",
                    "%s (still so after the node rebooted for this switch)",
                    msg_c);
    if (reboot && s->rec.rolling_back)
        return fail(s, "RebootRequired", "%s (a rollback does not reboot)",
                    msg_c);
    if (reboot)
        return fail(s, "RebootRequired",
                    "%s (set spec.rollout.allowReboot to let gpumode reboot "
                    "the node)",
                    msg_c);
    return fail(s, reason_c, "%s", msg_c);
}

static int step_reboot(struct sw *s)
{
    const struct gm_pod *p;
    /* The agent reboots only while the node is on this boot: restartPolicy
     * Never is at least once, and a kubelet that lost the pod's state in
     * the reboot may run it again on the next boot. */
    const char *argv[] = {"reboot", "--confirm", "--boot-id", s->rec.boot_id};

    if (s->node->boot_id && s->rec.boot_id &&
        strcmp(s->node->boot_id, s->rec.boot_id) != 0) {
        if (!s->node->ready && elapsed(s) > s->ctl->cfg->reboot_timeout_s)
            return fail(s, "RebootTimeout",
                        "node rebooted (bootID %s) but is not Ready after "
                        "%lds",
                        s->node->boot_id, s->ctl->cfg->reboot_timeout_s);
        if (!s->node->ready) {
            set_message(s, "rebooted; waiting for the node to be Ready");
            return wait_for(s, WAIT_POLL_MS);
        }
        note_log(s, "node rebooted (bootID %s)", s->node->boot_id);
        s->ns->reboot_ended_ms = 0;
        return advance(s, GM_PHASE_RECONFIGURE, NULL, -1);
    }
    /* Not rebooted yet: without a boot the agent takes, none may start. */
    if (!gm_agent_boot_id_valid(s->rec.boot_id))
        return fail(s, "RebootRequired",
                    "the switch record names no boot to end (bootID), so "
                    "gpumode could not tell when the node has rebooted");
    /* A reboot ends every pod on the node, not only those the drain
     * moved (gpuPodsOnly, podSelector): the others are evicted first,
     * under their PodDisruptionBudgets and by kubectl drain's rules, and
     * pods to wait for are waited for, within the drain's timeouts. Once
     * drained, the record says so and the phase starts again, so the
     * reboot's own timeout counts from there and nothing is drained twice
     * (a pod that tolerates the cordon is not evicted again and again,
     * one behind the rebooting node's dead kubelet is not waited for). The
     * pods left use no GPU the drain knew of: a failure here rolls back
     * rather than holds. */
    if (!s->rec.reboot_drained && !s->pol.allow_reboot)
        return fail(s, "RebootRequired",
                    "spec.rollout.allowReboot was turned off before the "
                    "node rebooted");
    if (!s->rec.reboot_drained) {
        struct gm_drain_opts all = s->pol.drain;
        all.gpu_pods_only = false;
        all.pod_selector = NULL;
        bool drained;
        int rc = drain_pass(s, &all, false, &drained);
        if (!drained)
            return rc;
        s->rec.reboot_drained = true;
        s->ns->message[0] = '\0';
        return advance(s, GM_PHASE_REBOOT, NULL, -1);
    }
    if (elapsed(s) > s->ctl->cfg->reboot_timeout_s)
        return fail(s, "RebootTimeout", "node did not come back in %lds",
                    s->ctl->cfg->reboot_timeout_s);
    set_message(s, "rebooting");
    /* Named as before --boot-id was passed (the boot is the salt), so a
     * controller upgraded while a node reboots finds the pod it made. */
    int rc = helper(s, "reboot", s->rec.boot_id, argv, 4, 2, &p);
    if (rc != STEP_WAIT)
        return rc;
    /* An agent that could not reboot says so and exits: fail now rather
     * than wait out rebootTimeoutSeconds for a boot that is not coming.
     * One that did reboot never ends by itself, so anything else waits. */
    /* The runtime could not start it: no reboot is coming either. */
    if (p && p->phase == GM_POD_FAILED && p->start_error && !p->ran) {
        char said[440];
        log_tail(p->term_message, "never started", said, sizeof(said));
        return fail(s, "RebootFailed", "the reboot helper %s %s", p->name,
                    said);
    }
    if (p && p->phase == GM_POD_FAILED && p->term_message) {
        json_object *res = json_tokener_parse(p->term_message);
        json_object *ok = gm_json_get(res, "ok");
        if (ok && !json_object_get_boolean(ok)) {
            const char *reason =
                json_object_get_string(gm_json_get(res, "reason"));
            const char *msg =
                json_object_get_string(gm_json_get(res, "message"));
            char why[768];
            snprintf(why, sizeof(why), "the reboot helper %s failed: %s: %s",
                     p->name, reason ? reason : "AgentFailed",
                     msg ? msg : "no message");
            json_object_put(res);
            return fail(s, "RebootFailed", "%s", why);
        }
        json_object_put(res);
    }
    /* A reboot that happens never lets its agent end. One that ended
     * well did not reboot: it read another boot ID than the node reports.
     * Past the kubelet's delay in reporting a boot it ran the pod again
     * on, that is a boot ID the agent reads differently (a sandboxed
     * runtime's own kernel), and no reboot is coming. */
    if (p == NULL || p->phase != GM_POD_SUCCEEDED) {
        s->ns->reboot_ended_ms = 0;
        return wait_for(s, WAIT_POLL_MS);
    }
    uint64_t now_ms = uv_now(s->ctl->loop);
    if (s->ns->reboot_ended_ms == 0)
        s->ns->reboot_ended_ms = now_ms;
    if (now_ms - s->ns->reboot_ended_ms <
        (uint64_t)s->ctl->cfg->reboot_unseen_s * 1000)
        return wait_for(s, 1000);
    s->ns->reboot_ended_ms = 0;
    char said[440];
    log_tail(p->term_message, "no result", said, sizeof(said));
    return fail(s, "RebootFailed",
                "the reboot helper %s ended without rebooting the node, which "
                "still reports bootID %s: %s",
                p->name, s->rec.boot_id, said);
}

/* What HAMi gives this node, from its entries in the ConfigMap rather
 * than the policy, because a rollback restores the vgpu mode the node
 * had, whose split the current policy may not know: *split vGPUs (HAMi's
 * default 10) on each of the gpus GPUs its filterdevices does not leave
 * out (*filtered). A config HAMi cannot read leaves its defaults. */
static int hami_gpus(struct sw *s, int gpus, int *split, int *filtered)
{
    const char *rv = "";
    bool exists;
    const char *cur = gm_ctl_hami_config(s->ctl, &rv, &exists);
    struct gm_hami_view v;
    const char *uuids[64];
    char *list = NULL;
    size_t n = 0;

    if (gm_hami_view_parse(cur, node_name(s), &v) != 0)
        memset(&v, 0, sizeof(v));
    if (s->rec.gpu_uuids && gpus <= 64)
        list = strdup(s->rec.gpu_uuids);
    for (char *tok = list, *next; tok && n < 64; tok = next) {
        next = strchr(tok, ',');
        if (next)
            *next++ = '\0';
        uuids[n++] = tok;
    }
    *split = v.split > 0 ? v.split : s->ctl->cfg->hami_default_split;
    *filtered =
        gm_hami_filtered(&v, gpus, list && n == (size_t)gpus ? uuids : NULL);
    gm_hami_view_clear(&v);
    free(list);
    return gpus - *filtered;
}

/* The record keeps what HAMi's entry got, for gpumode.io/settings: not
 * what the plan asked, which the ConfigMap's absence or a policy edit
 * since may have changed. The record is written with the next phase, so a
 * restarted controller still knows. 0 or -ENOMEM. */
static int note_hami_entry(struct sw *s, bool written)
{
    char text[160];
    gm_plan_vgpu_settings(written && s->pol.has_vgpu_config, s->pol.split_count,
                          s->pol.memory_scaling, s->pol.core_scaling, text,
                          sizeof(text));
    return gm_set_str(&s->rec.settings, text);
}

/* The node's entry in HAMi's per-node config (the caller's). */
static json_object *hami_entry(struct sw *s, int split, double memory,
                               double core)
{
    json_object *e = json_object_new_object();
    json_object_object_add(e, "name", json_object_new_string(node_name(s)));
    json_object_object_add(e, "operatingmode",
                           json_object_new_string("hami-core"));
    json_object_object_add(e, "devicesplitcount", json_object_new_int(split));
    json_object_object_add(e, "devicememoryscaling",
                           json_object_new_double(memory));
    json_object_object_add(e, "devicecorescaling",
                           json_object_new_double(core));
    return e;
}

/* Asks for want (consumed; NULL: none of the keys gpumode sets, so
 * HAMi's defaults) as the node's entry. One writer for the whole
 * controller batches the entries of switches that get here together; it
 * wakes us when the cache shows ours, and our requeue timer covers a
 * write that failed or a watch that is down.
 * Returns 0 when the cache has it, STEP_PENDING while it is written (the
 * status line says so, doing what), or -ENOMEM. */
static int want_hami_entry(struct sw *s, json_object *want, const char *doing)
{
    int rc = gm_hami_want(s->ctl->hami, node_name(s), want);
    if (rc < 0)
        return rc;
    if (rc == 1)
        return 0;
    const char *err = gm_hami_error(s->ctl->hami);
    if (err[0])
        set_message(s, "%s HAMi's per-node config failed: %s", doing, err);
    else
        set_message(s, "%s HAMi's per-node config", doing);
    return STEP_PENDING;
}

/* While the controller may not read HAMi's ConfigMap (why, from
 * gm_ctl_hami_refused) it can neither write the node's entry nor tell
 * that HAMi runs its defaults: the step waits, saying so, and fails as an
 * entry not written once clientsTimeoutSeconds passed. Returns
 * STEP_PENDING or what failing returns. */
static int hami_refused(struct sw *s, const char *why)
{
    const struct gm_cm_ref *cm = &s->ctl->cfg->hami_cm;
    if (elapsed(s) > s->ctl->cfg->clients_timeout_s)
        return fail(s, "HAMiConfigNotWritten",
                    "the node's entry in ConfigMap %s/%s was not written in "
                    "%lds: %s",
                    cm->namespace, cm->name, s->ctl->cfg->clients_timeout_s,
                    why);
    set_message(s, "waiting to read HAMi's ConfigMap %s/%s: %s", cm->namespace,
                cm->name, why);
    return STEP_PENDING;
}

/* The rollback of a vgpu -> vgpu switch (other settings) puts back the
 * entry the node was verified with, its gpumode.io/settings: the old
 * clients read it when they start, and the rollback verifies with it. A
 * node with no such record ({}: HAMi's defaults) gets no entry. Returns as
 * want_hami_entry does, or what failing returns once clientsTimeoutSeconds
 * passed. */
static int restore_hami_entry(struct sw *s)
{
    const char *rv = "";
    bool exists;
    char why[800];
    gm_ctl_hami_config(s->ctl, &rv, &exists);
    json_object *old = s->node->ann_settings
                           ? json_tokener_parse(s->node->ann_settings)
                           : NULL;
    if (s->ctl->dry_run || old == NULL ||
        !json_object_is_type(old, json_type_object)) {
        json_object_put(old);
        return 0; /* nothing known to put back */
    }
    if (gm_ctl_hami_refused(s->ctl, why, sizeof(why))) {
        /* A rollback goes on without it rather than hold the node: its
         * verification then asks only that vGPUs be offered. */
        json_object_put(old);
        gm_log_kv(GM_LOG_WARN, node_name(s), s->rec.policy,
                  "the node's entry in ConfigMap %s/%s is not put back: %s",
                  s->ctl->cfg->hami_cm.namespace, s->ctl->cfg->hami_cm.name,
                  why);
        return 0;
    }
    if (!exists) {
        json_object_put(old);
        return 0; /* the entry went with the ConfigMap */
    }
    json_object *split = gm_json_get(old, "splitCount");
    json_object *memory = gm_json_get(old, "memoryScaling");
    json_object *core = gm_json_get(old, "coreScaling");
    json_object *want =
        split ? hami_entry(s, json_object_get_int(split),
                           memory ? json_object_get_double(memory) : 1.0,
                           core ? json_object_get_double(core) : 1.0)
              : NULL;
    json_object_put(old);
    int rc = want_hami_entry(s, want, "putting back");
    if (rc == STEP_PENDING && elapsed(s) > s->ctl->cfg->clients_timeout_s) {
        const char *err = gm_hami_error(s->ctl->hami);
        return fail(s, "HAMiConfigNotWritten",
                    "the node's entry in ConfigMap %s/%s was not put back in "
                    "%lds: %s",
                    s->ctl->cfg->hami_cm.namespace, s->ctl->cfg->hami_cm.name,
                    s->ctl->cfg->clients_timeout_s, err[0] ? err : "no answer");
    }
    return rc;
}

/* HAMi reads its per-node config only when its plugin starts, so the
 * node's entry (splitCount and scaling from the policy) must be right
 * before the vgpu labels start the plugin. Returns 0 when it is (or the
 * ConfigMap does not exist), STEP_PENDING while it is written, or -ENOMEM. */
static int ensure_hami_config(struct sw *s)
{
    const char *rv = "";
    bool exists;
    char why[800];
    if (gm_ctl_hami_refused(s->ctl, why, sizeof(why)))
        return hami_refused(s, why);
    gm_ctl_hami_config(s->ctl, &rv, &exists);
    if (!exists) {
        if (s->pol.has_vgpu_config)
            gm_log_kv(GM_LOG_WARN, node_name(s), s->rec.policy,
                      "ConfigMap %s/%s does not exist: splitCount %d is not "
                      "written, HAMi starts with its defaults",
                      s->ctl->cfg->hami_cm.namespace, s->ctl->cfg->hami_cm.name,
                      s->pol.split_count);
        return note_hami_entry(s, false);
    }
    json_object *want =
        s->pol.has_vgpu_config
            ? hami_entry(s, s->pol.split_count, s->pol.memory_scaling,
                         s->pol.core_scaling)
            : NULL;
    if (s->ctl->dry_run) {
        gm_log_kv(
            GM_LOG_INFO, node_name(s), s->rec.policy,
            "dry run: would set HAMi's entry for the node in %s/%s: %s",
            s->ctl->cfg->hami_cm.namespace, s->ctl->cfg->hami_cm.name,
            want ? json_object_to_json_string_ext(want, JSON_C_TO_STRING_PLAIN)
                 : "none");
        json_object_put(want);
        return note_hami_entry(s, true);
    }
    int rc = want_hami_entry(s, want, "writing");
    if (rc == 0)
        return note_hami_entry(s, true);
    if (rc < 0)
        return rc;
    const char *err = gm_hami_error(s->ctl->hami);
    if (elapsed(s) > s->ctl->cfg->clients_timeout_s)
        return fail(s, "HAMiConfigNotWritten",
                    "the node's entry in ConfigMap %s/%s was not written in "
                    "%lds: %s",
                    s->ctl->cfg->hami_cm.namespace, s->ctl->cfg->hami_cm.name,
                    s->ctl->cfg->clients_timeout_s, err[0] ? err : "no answer");
    return STEP_PENDING;
}

/* The node's own device plugin config, which the mode's labels carry
 * outside mig (borrowed from the node or the record): kept in
 * gpumode.io/plugin-config, else the value this switch (or a failed
 * attempt before it, which never reached Finish) replaced, else the
 * label's. */
static const char *own_config(struct sw *s)
{
    const char *key = s->ctl->cfg->profile->mig_config_label;
    if (key == NULL)
        return NULL;
    const struct gm_saved_label *l = gm_record_saved(&s->rec, key);
    if (s->node->ann_plugin_config == NULL && l &&
        !gm_plugin_config_is_strategy(l->value))
        return l->value;
    return gm_plugin_config_own(s->node->ann_plugin_config,
                                gm_node_label(s->node, key));
}

/* In mig the config label names the strategy, so the value the node had
 * before (a time-slicing config, say) is kept in gpumode.io/plugin-config
 * until a switch takes the node out of mig and puts it back. A switch
 * within mig replaced a strategy, or a value someone set in mig (a mig
 * config, not the node's own outside it): what is kept stays, and so does
 * what is kept on a node whose mode before was not known. */
static void keep_own_config(struct sw *s, json_object *ann)
{
    const char *key = s->ctl->cfg->profile->mig_config_label;
    if (key == NULL)
        return;
    if (s->rec.to == GM_MODE_MIG) {
        const struct gm_saved_label *l = gm_record_saved(&s->rec, key);
        bool keep =
            s->rec.from != GM_MODE_MIG && (s->rec.from != GM_MODE_UNKNOWN ||
                                           s->node->ann_plugin_config == NULL);
        if (keep && l && l->value && !gm_plugin_config_is_strategy(l->value))
            json_object_object_add(ann, GM_ANN_PLUGIN_CONFIG,
                                   json_object_new_string(l->value));
    } else if (s->node->ann_plugin_config) {
        json_object_object_add(ann, GM_ANN_PLUGIN_CONFIG, NULL);
    }
}

/* Adds to labels every label we changed that the target does not set,
 * back to its old value: feature discovery, DCGM and the exporter return
 * with the plugin, so feature discovery's labels describe the new layout
 * by the time the switch is verified (gm_plugin_config_replicas reads
 * them).
 * only_stopped: only labels that still have the value the stop set gave
 * them. */
static void restore_others(struct sw *s, json_object *labels, bool only_stopped)
{
    const struct gm_label_set *stop = &s->ctl->cfg->profile->stop;
    const char *keys[GM_PROFILE_MAX_LABELS + 1];
    const char *vals[GM_PROFILE_MAX_LABELS + 1];
    size_t n =
        gm_profile_start_labels(s->ctl->cfg->profile, s->rec.to,
                                s->rec.strategy, own_config(s), keys, vals);

    for (size_t i = 0; i < s->rec.n_saved; i++) {
        const struct gm_saved_label *l = &s->rec.saved[i];
        const char *cur = gm_node_label(s->node, l->key);
        size_t k;
        for (k = 0; k < n; k++)
            if (strcmp(keys[k], l->key) == 0)
                break;
        if (k < n || (cur == NULL && l->value == NULL) ||
            (cur && l->value && strcmp(cur, l->value) == 0))
            continue;
        if (only_stopped) {
            size_t j;
            for (j = 0; j < stop->n; j++)
                if (strcmp(stop->key[j], l->key) == 0)
                    break;
            if (j == stop->n || (stop->value[j] == NULL) != (cur == NULL) ||
                (cur && strcmp(cur, stop->value[j]) != 0))
                continue;
        }
        json_object_object_add(
            labels, l->key, l->value ? json_object_new_string(l->value) : NULL);
    }
}

static int step_start_clients(struct sw *s)
{
    /* Only a switch past its hardware step can have written the entry: an
     * earlier failure leaves it alone, as a person may have written it. */
    bool vgpu_back = s->rec.rolling_back && s->rec.reconfigured &&
                     s->rec.from == GM_MODE_VGPU && s->rec.to == GM_MODE_VGPU;
    if ((!s->rec.rolling_back && s->rec.to == GM_MODE_VGPU) || vgpu_back) {
        int rc = vgpu_back ? restore_hami_entry(s) : ensure_hami_config(s);
        /* The writer wakes us. A phase entered just now (the hardware
         * done) is written first: the wait's timeout counts from the
         * phase's start, which every reconcile would otherwise set anew. */
        if (rc == STEP_PENDING && s->entered)
            return write_record(s, NULL, -1);
        if (rc == STEP_PENDING)
            return wait_for(s, 2000);
        if (rc != 0)
            return rc;
    }
    const struct gm_profile *prof = s->ctl->cfg->profile;
    json_object *labels = json_object_new_object();

    if (s->rec.rolling_back) {
        /* Put back every label we changed: the old clients return. */
        for (size_t i = 0; i < s->rec.n_saved; i++) {
            const struct gm_saved_label *l = &s->rec.saved[i];
            const char *cur = gm_node_label(s->node, l->key);
            if ((cur == NULL) != (l->value == NULL) ||
                (cur && strcmp(cur, l->value) != 0))
                json_object_object_add(
                    labels, l->key,
                    l->value ? json_object_new_string(l->value) : NULL);
        }
    } else {
        const char *keys[GM_PROFILE_MAX_LABELS + 1];
        const char *vals[GM_PROFILE_MAX_LABELS + 1];
        size_t n = gm_profile_start_labels(prof, s->rec.to, s->rec.strategy,
                                           own_config(s), keys, vals);
        for (size_t i = 0; i < n; i++)
            want_label(s, labels, keys[i], vals[i]);
        restore_others(s, labels, false);
    }
    return advance(s, GM_PHASE_VERIFY, labels, -1);
}

/* Counts GPU instances per profile in an agent layout for a node with gpus
 * GPUs: entries with devices count for those, "all" for the rest. */
size_t gm_switch_expected(const struct gm_profile *p, enum gm_mode m,
                          const char *layout, const char *strategy, int gpus,
                          int split, const char **names, long long *counts,
                          size_t max, char *buf, size_t buf_len)
{
    size_t n = 0, used = 0;

    if (max == 0)
        return 0;
    if (m == GM_MODE_FULL) {
        names[0] = "nvidia.com/gpu";
        counts[0] = (long long)gpus * (split > 1 ? split : 1);
        return 1;
    }
    if (m == GM_MODE_VGPU) {
        names[0] = p->vgpu_resource;
        counts[0] = (long long)gpus * (split > 0 ? split : 10);
        return 1;
    }
    json_object *l = layout ? json_tokener_parse(layout) : NULL;
    size_t ne = l && json_object_is_type(l, json_type_array)
                    ? json_object_array_length(l)
                    : 0;
    int explicit_gpus = 0;
    for (size_t i = 0; i < ne; i++) {
        json_object *d =
            gm_json_get(json_object_array_get_idx(l, i), "devices");
        if (d && json_object_is_type(d, json_type_array))
            explicit_gpus += (int)json_object_array_length(d);
    }
    int single = strategy && strcmp(strategy, "single") == 0;
    for (size_t i = 0; i < ne; i++) {
        json_object *e = json_object_array_get_idx(l, i);
        json_object *d = gm_json_get(e, "devices");
        json_object *md = gm_json_get(e, "migDevices");
        int ngpu = d && json_object_is_type(d, json_type_array)
                       ? (int)json_object_array_length(d)
                       : gpus - explicit_gpus;
        if (!json_object_get_boolean(gm_json_get(e, "migEnabled")) ||
            md == NULL || ngpu <= 0)
            continue;
        json_object_object_foreach(md, prof, cnt)
        {
            char res[96];
            if (single)
                snprintf(res, sizeof(res), "nvidia.com/gpu");
            else
                snprintf(res, sizeof(res), "nvidia.com/mig-%s", prof);
            for (char *c = res; *c; c++)
                if (*c == '+')
                    *c = '.';
            size_t k;
            for (k = 0; k < n; k++)
                if (strcmp(names[k], res) == 0)
                    break;
            if (k == n) {
                size_t len = strlen(res) + 1;
                if (n == max || used + len > buf_len)
                    continue;
                memcpy(buf + used, res, len);
                names[n] = buf + used;
                counts[n++] = 0;
                used += len;
            }
            counts[k] += (long long)json_object_get_int(cnt) * ngpu;
        }
    }
    json_object_put(l);
    return n;
}

static int gpu_count(const struct gm_node *n)
{
    const char *c = gm_node_label(n, "nvidia.com/gpu.count");
    return c ? atoi(c) : 0;
}

/* The GPUs a switch verifies: the agent's count, else feature
 * discovery's. */
static int verified_gpus(struct sw *s)
{
    return s->rec.gpus > 0 ? s->rec.gpus : gpu_count(s->node);
}

void gm_switch_strategy_hint(const struct gm_node *n, const char *strategy,
                             char *why, size_t len)
{
    bool mixed_offered = false;
    for (size_t i = 0; i < n->n_allocatable; i++)
        if (n->allocatable[i].value > 0 &&
            strncmp(n->allocatable[i].name, "nvidia.com/mig-", 15) == 0)
            mixed_offered = true;
    int64_t gpu = gm_node_allocatable(n, "nvidia.com/gpu");
    bool single = strategy && strcmp(strategy, "single") == 0;
    if ((single && mixed_offered) || (!single && !mixed_offered && gpu > 0))
        snprintf(why, len,
                 " (the plugin offers %s: it runs another MIG strategy than "
                 "%s; is MIG_STRATEGY set on its DaemonSet, as the "
                 "ClusterPolicy's mig.strategy sets it, or does the config "
                 "set no flags.migStrategy?)",
                 single ? "nvidia.com/mig-* resources" : "nvidia.com/gpu",
                 single ? "single" : "mixed");
}

/* The MIG strategy the plugin runs under once the clients are back: the
 * switch's own, or in a rollback the one the node had before. That one is
 * named by the config label the rollback just put back (in mig gpumode
 * writes the strategy there), else by the gpumode.io/settings the node
 * converged with, which stays until a switch finishes. The record keeps
 * only the target's: a rollback from single checked as mixed would hold a
 * node that is back and serving cordoned. buf holds the settings' value. */
static const char *verify_strategy(struct sw *s, char *buf, size_t len)
{
    const char *key = s->ctl->cfg->profile->mig_config_label;
    const char *label = key ? gm_node_label(s->node, key) : NULL;
    const char *found = NULL;

    if (!s->rec.rolling_back)
        return s->rec.strategy;
    if (gm_plugin_config_is_strategy(label))
        return label;
    json_object *o = s->node->ann_settings
                         ? json_tokener_parse(s->node->ann_settings)
                         : NULL,
                *v;
    if (json_object_is_type(o, json_type_object) &&
        json_object_object_get_ex(o, "strategy", &v) &&
        gm_plugin_config_is_strategy(json_object_get_string(v))) {
        snprintf(buf, len, "%s", json_object_get_string(v));
        found = buf;
    }
    json_object_put(o);
    return found ? found : s->rec.strategy;
}

static int step_verify(struct sw *s)
{
    const struct gm_profile *prof = s->ctl->cfg->profile;
    enum gm_mode mode = target_mode(s);

    if (mode == GM_MODE_UNKNOWN)
        return advance(s, GM_PHASE_FINISH, NULL, -1);
    if (!s->rec.rolling_back && elapsed(s) <= s->ctl->cfg->clients_timeout_s) {
        /* A record an older gpumode took past StartingClients left feature
         * discovery off until Finish, and verification reads its labels.
         * Only labels still at their stopped value: one someone else sets
         * meanwhile is not fought over (Finish restores it). */
        json_object *labels = json_object_new_object();
        restore_others(s, labels, true);
        if (json_object_object_length(labels) > 0)
            return write_record(s, labels, -1);
        json_object_put(labels);
    }
    const struct gm_map *pods = node_pods(s);
    if (pods == NULL)
        return pods_unlisted(s, "PluginNotReady",
                             s->ctl->cfg->clients_timeout_s, false);
    const struct gm_mode_profile *mp = &prof->modes[mode];
    for (size_t i = 0; i < mp->n_plugins; i++) {
        int ready = 0;
        for (struct gm_map_entry *it = gm_map_first(pods); it && !ready;
             it = gm_map_next(pods, it)) {
            const struct gm_pod *p = it->value;
            ready = pod_matches(p, &mp->plugins[i]) &&
                    p->phase == GM_POD_RUNNING && p->ready && !p->deleting;
        }
        if (!ready) {
            set_message(s, "waiting for %s pods (%s) to be ready",
                        mp->plugins[i].namespace, mp->plugins[i].selector);
            goto not_ready;
        }
    }
    const char *names[16];
    long long counts[16];
    char buf[1024];
    /* A full node's own device plugin config may time-slice its GPUs:
     * feature discovery, which reads the same config, says how. A label
     * from before the plugin restarted only delays verification: the
     * counts must agree with what the plugin advertises. */
    const char *shared = NULL;
    int gpus = verified_gpus(s), split = 1, filtered = 0;
    bool as_before = s->rec.rolling_back && !s->rec.reconfigured;
    char refused[800];
    if (mode == GM_MODE_VGPU && !as_before &&
        gm_ctl_hami_refused(s->ctl, refused, sizeof(refused))) {
        /* The node's entry says how many vGPUs HAMi offers. A switch
         * waits to read it; a rollback, which failing would hold the
         * node cordoned, asks only that vGPUs be offered. */
        if (!s->rec.rolling_back) {
            set_message(s, "waiting to read HAMi's ConfigMap %s/%s: %s",
                        s->ctl->cfg->hami_cm.namespace,
                        s->ctl->cfg->hami_cm.name, refused);
            goto not_ready;
        }
        as_before = true;
    }
    if (mode == GM_MODE_VGPU)
        gpus = hami_gpus(s, gpus, &split, &filtered);
    else if (mode == GM_MODE_FULL)
        split = gm_plugin_config_replicas(s->node, &shared);
    char strategy_buf[8];
    const char *strategy =
        verify_strategy(s, strategy_buf, sizeof(strategy_buf));
    size_t n = gm_switch_expected(prof, mode, target_layout(s), strategy, gpus,
                                  split, names, counts, 16, buf, sizeof(buf));
    if (n > 0 && shared)
        names[0] = shared;
    /* A rollback that never laid the GPUs (the drain or the stop of the
     * clients failed, or the agent changed nothing) leaves the node as it
     * was before the switch, offering what it offered then, which need not
     * be the expected count: a GPU its plugin finds unhealthy is not
     * advertised. Demanding the count would hold, cordoned, a node nothing
     * was done to, so each resource need only be advertised. Every
     * hardware step that succeeds sets `reconfigured` (a rollback's too,
     * in every version), and a rollback of changed hardware records it
     * when it starts, so without it the GPUs were not touched. */
    for (size_t i = 0; i < n; i++) {
        int64_t have = gm_node_allocatable(s->node, names[i]);
        if (as_before && have <= 0) {
            set_message(s, "node advertises no %s", names[i]);
            goto not_ready;
        }
        if (!as_before && have != counts[i]) {
            char why[320] = "";
            if (filtered)
                snprintf(why, sizeof(why),
                         " (HAMi's filterdevices leaves out %d GPU%s)",
                         filtered, filtered == 1 ? "" : "s");
            else if (mode == GM_MODE_MIG)
                gm_switch_strategy_hint(s->node, strategy, why, sizeof(why));
            set_message(s, "node advertises %s=%lld, expected %lld%s", names[i],
                        (long long)(have < 0 ? 0 : have), counts[i], why);
            goto not_ready;
        }
    }
    s->ns->message[0] = '\0';
    enter(s, GM_PHASE_FINISH);
    return step_finish(s);
not_ready:
    if (elapsed(s) > s->ctl->cfg->clients_timeout_s)
        return fail(s, "PluginNotReady", "%s", s->ns->message);
    return wait_for(s, WAIT_POLL_MS);
}

static int put_back(struct sw *s, bool relaid);

static int step_finish(struct sw *s)
{
    const struct gm_profile *prof = s->ctl->cfg->profile;
    int uncordon = s->rec.cordoned && s->node->unschedulable ? 0 : -1;

    if (s->rec.rolling_back && s->rec.releasing) {
        /* No policy wants the node: nothing would retry it, and a Failed
         * record would keep it state=failed for good. */
        note_log(s, "released: back in %s%s", gm_mode_name(s->rec.from),
                 uncordon == 0 ? " and uncordoned" : "");
        note_event(s, false, GM_EVENT_NORMAL, GM_REASON_ROLLED_BACK,
                   "released: back in %s, no policy selects the "
                   "node%s",
                   gm_mode_name(s->rec.from),
                   uncordon == 0 ? "; uncordoned" : "");
        note_switch_done(s, "rolledback");
        return put_back(s, true);
    }
    json_object *labels = json_object_new_object();
    json_object *ann = json_object_new_object();
    if (s->rec.rolling_back) {
        /* Labels were restored before the old clients were verified; the
         * record stays (phase Failed) so the failure counts and a person
         * can retry. */
        json_object_object_add(labels, GM_LABEL_STATE,
                               json_object_new_string("failed"));
        json_object_put(ann);
        note_event(s, false, GM_EVENT_WARNING, GM_REASON_ROLLED_BACK,
                   "back in %s after %s%s", gm_mode_name(s->rec.from),
                   s->rec.reason ? s->rec.reason : "a failure",
                   uncordon == 0 ? "; uncordoned" : "");
        if (s->pol.uid)
            note_event(s, true, GM_EVENT_WARNING, GM_REASON_ROLLED_BACK,
                       "%s back in %s after %s%s", node_name(s),
                       gm_mode_name(s->rec.from),
                       s->rec.reason ? s->rec.reason : "a failure",
                       uncordon == 0 ? "; uncordoned" : "");
        note_switch_done(s, "rolledback");
        s->rec.rolling_back = false;
        s->rec.reconfigured = false;
        s->rec.cordoned = false; /* uncordoned in this same write */
        /* Every label is back: a retry saves what the node has then, so
         * a person's edit made meanwhile (gpu.deploy.dcgm-exporter=false,
         * another device-plugin.config) is what it restores, not the
         * values from before the first attempt. */
        gm_record_forget_labels(&s->rec);
        return advance(s, GM_PHASE_FAILED, labels, uncordon);
    }
    /* StartingClients restored them; a record from an older gpumode may
     * not have. */
    restore_others(s, labels, false);
    json_object_object_add(labels, GM_LABEL_MODE,
                           json_object_new_string(gm_mode_name(s->rec.to)));
    json_object_object_add(labels, GM_LABEL_STATE,
                           json_object_new_string("ready"));
    json_object_object_add(ann, GM_ANN_SWITCH, NULL);
    keep_own_config(s, ann);
    if (s->node->boot_id)
        json_object_object_add(ann, GM_ANN_BOOT_ID,
                               json_object_new_string(s->node->boot_id));
    /* What the planner compares to decide that a layout, strategy or split
     * change needs another switch. A rollback leaves it alone: the node
     * went back to what the old value describes. In vgpu it is what
     * ensure_hami_config wrote: {} when HAMi's ConfigMap was missing, so
     * the node switches again once the ConfigMap exists. A ConfigMap
     * missing now says {} too: our entry went with it (and a switch that
     * an older gpumode took past StartingClients recorded the plan). One
     * the controller may no longer read is not known missing. */
    const char *settings = s->rec.settings;
    if (s->rec.to == GM_MODE_VGPU) {
        const char *rv;
        bool exists;
        char why[800];
        gm_ctl_hami_config(s->ctl, &rv, &exists);
        if (!exists && !gm_ctl_hami_refused(s->ctl, why, sizeof(why)))
            settings = "{}";
    }
    json_object_object_add(ann, GM_ANN_SETTINGS,
                           settings ? json_object_new_string(settings) : NULL);
    /* What the node offers now that it is verified: the planner names a
     * converged node that later offers something else. */
    char offered[1024];
    bool listed = gm_plan_resources(s->node, prof->vgpu_resource, offered,
                                    sizeof(offered)) == 0;
    /* Too many to list: no record, rather than the last mode's. */
    json_object_object_add(ann, GM_ANN_RESOURCES,
                           listed ? json_object_new_string(offered) : NULL);
    /* And in full, how many GPUs: a later change of the node's own
     * config (time-slicing) re-offers them, which is not drift. */
    char gpus[16];
    snprintf(gpus, sizeof(gpus), "%d", verified_gpus(s));
    json_object_object_add(ann, GM_ANN_GPUS,
                           s->rec.to == GM_MODE_FULL && verified_gpus(s) > 0
                               ? json_object_new_string(gpus)
                               : NULL);
    char defaults[400] = "";
    if (s->rec.to == GM_MODE_VGPU && s->pol.has_vgpu_config && settings &&
        strcmp(settings, "{}") == 0)
        snprintf(defaults, sizeof(defaults),
                 " with HAMi's defaults, not splitCount %d: ConfigMap %s/%s "
                 "was not found",
                 s->pol.split_count, s->ctl->cfg->hami_cm.namespace,
                 s->ctl->cfg->hami_cm.name);
    note_log(s, "switch to %s complete%s", gm_mode_name(s->rec.to), defaults);
    note_event(s, false, GM_EVENT_NORMAL, GM_REASON_SWITCH_COMPLETED,
               "%s is in %s mode%s", node_name(s), gm_mode_name(s->rec.to),
               defaults);
    note_switch_done(s, "succeeded");
    s->ns->message[0] = '\0';
    return patch_node(s, labels, ann, uncordon);
}

/* Starts a failed record over, one attempt later (so helper pod names
 * differ), from the drain, cordoning the node again if a person uncordoned
 * it, and uses up the retry mark. What the failed attempt recorded stays:
 * the mode and layout before it (for a rollback), the labels it changed
 * and whether it cordoned the node. */
/* A new attempt asks each eviction afresh: a 500 (budgets a person has
 * fixed since) or a refusal answered to the last one says nothing about
 * this one, and would otherwise fail it at once. */
static void forget_evictions(struct sw *s)
{
    for (struct gm_map_entry *e = gm_map_first(&s->ns->evictions); e;
         e = gm_map_next(&s->ns->evictions, e)) {
        struct gm_eviction *ev = e->value;
        ev->blocked = GM_EVICT_ASKED;
        ev->next_try_ms = 0;
        ev->error[0] = '\0';
    }
}

static int restart_failed(struct sw *s)
{
    json_object *labels = json_object_new_object();

    s->rec.attempt++;
    s->rec.phase = GM_PHASE_DRAIN;
    s->rec.since = s->now;
    s->rec.started = s->now;
    s->rec.rolling_back = false;
    s->rec.releasing = false;
    gm_set_str(&s->rec.reason, NULL);
    gm_set_str(&s->rec.message, NULL);
    gm_set_str(&s->rec.boot_id, NULL); /* this attempt may reboot again */
    s->rec.reboot_drained = false;
    forget_evictions(s);
    if (!s->node->unschedulable)
        s->rec.cordoned = true;
    json_object_object_add(labels, GM_LABEL_STATE,
                           json_object_new_string("switching"));
    s->clear_retry = true;
    note_log(s, "retry, attempt %d: -> %s", s->rec.attempt,
             gm_mode_name(s->rec.to));
    return write_record(s, labels, s->node->unschedulable ? -1 : 1);
}

static int cancel_drain(struct sw *s, const char *why);

/* A retry of a node no policy selects any more releases it: with the
 * hardware as it was, the node is put back (cancel_drain); otherwise it is
 * rolled back to the mode before, as a switch that lost its policy is,
 * whatever the policy that made the record (if it still exists) says. */
static int release_failed(struct sw *s)
{
    gm_switch_policy_defaults(&s->pol);
    s->pol.drain.own_namespace = s->ctl->cfg->namespace;
    if (!s->rec.reconfigured)
        return cancel_drain(s, "no policy selects the node any more");
    if (s->rec.from == GM_MODE_UNKNOWN) {
        /* Nothing is known to roll the hardware back to (the node had no
         * gpumode.io/mode label), and no policy says where it should go:
         * the node stays held as it is, with the mark used up and a
         * message that says what a person can do, rather than cordoned
         * again and held anew by every retry. */
        static const char msg[] =
            "no policy selects the node any more, and its mode before the "
            "switch is not known (it had no gpumode.io/mode label), so it "
            "cannot be rolled back: select it with a policy (the next retry "
            "switches it to that policy's mode)";
        s->clear_retry = true;
        if (gm_set_str(&s->rec.reason, "PolicyGone") ||
            gm_set_str(&s->rec.message, msg))
            return -ENOMEM;
        snprintf(s->ns->message, sizeof(s->ns->message), "PolicyGone: %.480s",
                 msg);
        gm_log_kv(GM_LOG_WARN, node_name(s), s->rec.policy,
                  "retry not taken: %s", msg);
        note_event(s, false, GM_EVENT_WARNING, GM_REASON_SWITCH_FAILED,
                   "retry of %s not taken: %s", node_name(s), msg);
        return write_record(s, NULL, -1);
    }
    s->rec.attempt++; /* new helper pod names */
    s->rec.since = s->rec.started = s->now;
    s->rec.rolling_back = false;
    s->rec.releasing = true;
    gm_set_str(&s->rec.boot_id, NULL);
    s->rec.reboot_drained = false;
    forget_evictions(s);
    s->clear_retry = true;
    /* A person may have uncordoned the held node: nothing new lands on it
     * while its GPUs are laid again, and put_back uncordons it. */
    if (!s->node->unschedulable) {
        s->rec.cordoned = true;
        s->cordon = true;
    }
    return fail(s, "PolicyGone",
                "no policy selects the node any more: the retry rolls it "
                "back to %s",
                gm_mode_name(s->rec.from));
}

static int step_failed(struct sw *s)
{
    if (s->node->ann_retry == NULL)
        return wait_for(s, -1);
    /* A person asked for a retry. When a policy governs the node, its plan
     * starts the retry (gm_switch_start): with the policy's target as it
     * is now, and under its pause, window and budget. Policy changes do
     * not requeue nodes, so look again now and then: the policy may go. */
    int governed =
        s->ctl->governed ? s->ctl->governed(s->ctl->policy_data, s->node) : 0;
    if (governed == -EAGAIN)
        return wait_for(s, 500);
    if (governed < 0)
        return governed;
    if (governed > 0)
        return wait_for(s, RETRY_RECHECK_MS);
    return release_failed(s);
}

/* The switch's policy is gone (deleted, or edited into an invalid spec)
 * while the node drains: the drain's options (which pods to wait for,
 * which to leave) are not known any more, and nothing has changed yet but
 * the cordon and evictions already made. The node is put back as it was
 * and the record removed; a policy that selects it later starts afresh. */
static int cancel_drain(struct sw *s, const char *why)
{
    int uncordon = s->rec.cordoned && s->node->unschedulable ? 0 : -1;

    gm_log_kv(GM_LOG_WARN, node_name(s), s->rec.policy,
              "%s: switch cancelled, node put back%s", why,
              uncordon == 0 ? " and uncordoned" : "");
    note_event(s, false, GM_EVENT_WARNING, GM_REASON_ROLLED_BACK,
               "switch to %s cancelled: %s%s", gm_mode_name(s->rec.to), why,
               uncordon == 0 ? "; uncordoned" : "");
    note_switch_done(s, "cancelled");
    return put_back(s, false);
}

/* Ends a switch no policy wants any more with the node as it was before
 * it: every label it changed restored, the record and any retry mark
 * removed, state ready (or no state on a node gpumode never switched) and
 * uncordoned if the switch cordoned it. The hardware must already be as
 * it was: untouched, or rolled back (relaid: the boot ID is recorded, as
 * Finish does). */
static int put_back(struct sw *s, bool relaid)
{
    json_object *labels = json_object_new_object();
    json_object *ann = json_object_new_object();
    int uncordon = s->rec.cordoned && s->node->unschedulable ? 0 : -1;

    for (size_t i = 0; i < s->rec.n_saved; i++) {
        const struct gm_saved_label *l = &s->rec.saved[i];
        json_object_object_add(
            labels, l->key, l->value ? json_object_new_string(l->value) : NULL);
    }
    json_object_object_add(labels, GM_LABEL_STATE,
                           gm_node_label(s->node, GM_LABEL_MODE)
                               ? json_object_new_string("ready")
                               : NULL);
    json_object_object_add(ann, GM_ANN_SWITCH, NULL);
    if (s->node->ann_retry)
        json_object_object_add(ann, GM_ANN_RETRY, NULL);
    /* Laid again on this boot: the planner must not take an older boot ID
     * for a reboot that lost the layout. */
    if (relaid && s->node->boot_id)
        json_object_object_add(ann, GM_ANN_BOOT_ID,
                               json_object_new_string(s->node->boot_id));
    s->ns->message[0] = '\0';
    return patch_node(s, labels, ann, uncordon);
}

static int (*const steps[GM_PHASE_COUNT])(struct sw *) = {
    [GM_PHASE_CORDON] = step_cordon,
    [GM_PHASE_DRAIN] = step_drain,
    [GM_PHASE_STOP_CLIENTS] = step_stop_clients,
    [GM_PHASE_RECONFIGURE] = step_reconfigure,
    [GM_PHASE_REBOOT] = step_reboot,
    [GM_PHASE_START_CLIENTS] = step_start_clients,
    [GM_PHASE_VERIFY] = step_verify,
    [GM_PHASE_FINISH] = step_finish,
    [GM_PHASE_FAILED] = step_failed,
};

int gm_switch_reconcile(struct gm_ctl *ctl, const struct gm_node *node,
                        gm_switch_done_cb done, void *ctx, long *requeue_ms)
{
    struct sw s = {.ctl = ctl,
                   .node = node,
                   .done = done,
                   .ctx = ctx,
                   .requeue_ms = -1,
                   .now = (long long)time(NULL)};
    char err[256];
    int rc;

    *requeue_ms = -1;
    if (node->ann_switch == NULL) {
        /* Nothing in flight: drop any per-node state and stray helpers. */
        if (gm_map_get(&ctl->node_states, node->name))
            gm_ctl_node_done(ctl, node->name);
        collect_helpers_of(ctl, node->name, NULL);
        return 0;
    }
    const char *skip = gm_node_label(node, GM_LABEL_SKIP);
    if (skip && strcmp(skip, "true") == 0)
        return 0;
    rc = gm_record_parse(node->ann_switch, &s.rec, err, sizeof(err));
    if (rc) {
        gm_log_kv(GM_LOG_ERROR, node->name, NULL,
                  "unreadable switch record, leaving the node alone: %s", err);
        return 0;
    }
    s.ns = gm_ctl_node_state(ctl, node->name);
    if (s.ns == NULL) {
        gm_record_clear(&s.rec);
        return -ENOMEM;
    }
    if (write_unseen(s.ns, node)) {
        /* Our last write has not reached the cache yet; its watch event
         * will requeue the node. Acting now would repeat the step. */
        gm_record_clear(&s.rec);
        *requeue_ms = 2000;
        return 0;
    }
    gm_switch_policy_defaults(&s.pol);
    s.pol.drain.own_namespace = ctl->cfg->namespace;
    int prc = ctl->policy_for
                  ? ctl->policy_for(ctl->policy_data, s.rec.policy, &s.pol)
                  : 0;
    if (prc == -EAGAIN) {
        /* The policies are not known yet: act on no guess. */
        gm_record_clear(&s.rec);
        *requeue_ms = 500;
        return 0;
    }
    /* Past the drain the defaults are safe enough to finish with (the
     * workloads are gone; a failure rolls back); in it they are not, nor
     * is a policy whose pod selectors are missing. The drain before a
     * reboot is a drain too. */
    bool draining = s.rec.phase == GM_PHASE_CORDON ||
                    s.rec.phase == GM_PHASE_DRAIN ||
                    (s.rec.phase == GM_PHASE_REBOOT && !s.rec.reboot_drained);
    int have_policy = prc == 0 || (prc == -EBADMSG && !draining);
    if (s.rec.phase != GM_PHASE_RECONFIGURE && s.rec.phase != GM_PHASE_REBOOT)
        collect_helpers(&s, NULL);
    if (!have_policy && !s.rec.rolling_back && draining && !s.rec.reconfigured)
        rc = cancel_drain(&s, "its policy is gone or invalid while the "
                              "node drains");
    else if (!have_policy && !s.rec.rolling_back && draining) {
        /* A retry of a node an earlier attempt left with changed hardware:
         * putting labels back would not put the hardware back, so it goes
         * the way of a failure (roll back the hardware, or hold), and once
         * back it is released as a cancelled drain is. */
        s.rec.releasing = true;
        rc = fail(&s, "PolicyGone", "policy %s is gone or invalid while %s",
                  s.rec.policy,
                  s.rec.phase == GM_PHASE_REBOOT
                      ? "the node drains before its reboot"
                      : "a retry drains the node");
    } else
        rc = steps[s.rec.phase](&s);
    if (rc == STEP_WAIT)
        *requeue_ms = s.requeue_ms;
    gm_record_clear(&s.rec);
    return rc == STEP_ASYNC ? GM_SWITCH_ASYNC : rc;
}

int gm_switch_start(struct gm_ctl *ctl, const struct gm_node *node,
                    const char *policy, enum gm_mode to, const char *layout,
                    const char *strategy, const char *settings,
                    gm_switch_done_cb done, void *ctx)
{
    struct sw s = {.ctl = ctl,
                   .node = node,
                   .done = done,
                   .ctx = ctx,
                   .requeue_ms = -1,
                   .now = (long long)time(NULL)};
    enum gm_mode from = GM_MODE_UNKNOWN;
    json_object *labels = json_object_new_object();

    gm_mode_parse(gm_node_label(node, GM_LABEL_MODE), &from);
    s.ns = gm_ctl_node_state(ctl, node->name);
    if (s.ns == NULL) {
        json_object_put(labels);
        return -ENOMEM;
    }
    if (write_unseen(s.ns, node)) {
        /* We wrote to this node and the cache has not caught up: the start
         * (or a step) is already on its way. */
        json_object_put(labels);
        return 0;
    }
    if (node->ann_switch) {
        /* A failed switch (held, or rolled back: the record stays either
         * way) a person asked to retry: the same record goes on, aimed
         * where the policy points now (it may have been fixed since). */
        char err[256];
        int rc = gm_record_parse(node->ann_switch, &s.rec, err, sizeof(err));
        if (rc == 0 && s.rec.phase == GM_PHASE_FAILED && node->ann_retry) {
            rc = gm_set_str(&s.rec.policy, policy) ||
                         gm_set_str(&s.rec.layout, layout) ||
                         gm_set_str(&s.rec.strategy,
                                    to == GM_MODE_MIG ? strategy : NULL) ||
                         gm_set_str(&s.rec.settings, settings)
                     ? -ENOMEM
                     : 0;
            s.rec.to = to;
            if (rc == 0)
                rc = restart_failed(&s);
        } else if (rc == 0) {
            rc = -EBUSY; /* a switch in flight is not started again */
        }
        gm_record_clear(&s.rec);
        json_object_put(labels);
        return rc;
    }
    memset(&s.rec, 0, sizeof(s.rec));
    s.rec.from = from;
    s.rec.to = to;
    s.rec.attempt = 1;
    s.rec.phase = GM_PHASE_DRAIN;
    s.rec.since = s.now;
    s.rec.started = s.now;
    /* Only a node we cordon is one we uncordon. */
    s.rec.cordoned = !node->unschedulable;
    if (gm_set_str(&s.rec.policy, policy) ||
        gm_set_str(&s.rec.layout, layout) ||
        gm_set_str(&s.rec.strategy, to == GM_MODE_MIG ? strategy : NULL) ||
        gm_set_str(&s.rec.settings, settings)) {
        gm_record_clear(&s.rec);
        json_object_put(labels);
        return -ENOMEM;
    }
    json_object_object_add(labels, GM_LABEL_STATE,
                           json_object_new_string("switching"));
    s.clear_retry = true;
    note_log(&s, "switch %s -> %s starts", gm_mode_name(from),
             gm_mode_name(to));
    note_event(&s, false, GM_EVENT_NORMAL, GM_REASON_SWITCH_STARTED,
               "%s: %s -> %s for policy %s", node->name, gm_mode_name(from),
               gm_mode_name(to), policy);
    int rc = write_record(&s, labels, node->unschedulable ? -1 : 1);
    gm_record_clear(&s.rec);
    return rc;
}

const char *gm_switch_message(struct gm_ctl *ctl, const char *node)
{
    struct gm_node_rt *ns = gm_map_get(&ctl->node_states, node);
    return ns ? ns->message : "";
}

bool gm_switch_start_unseen(struct gm_ctl *ctl, const char *node)
{
    const struct gm_node_rt *ns = gm_map_get(&ctl->node_states, node);
    return ns && ns->start_written && ctl->nodes &&
           write_unseen(ns, gm_reflector_get(ctl->nodes, node));
}
