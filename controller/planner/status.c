#include "planner/status.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"

struct cond {
    const char *type;
    bool status;
    const char *reason;
    const char *message;
};

bool gm_condition_reason_valid(const char *r)
{
    size_t len = r ? strlen(r) : 0;

    if (len == 0 || len > 1024)
        return false;
    if (!((r[0] >= 'A' && r[0] <= 'Z') || (r[0] >= 'a' && r[0] <= 'z')))
        return false;
    for (size_t i = 1; i < len; i++) {
        char c = r[i];
        bool alnum = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                     (c >= '0' && c <= '9') || c == '_';
        bool inner = c == ',' || c == ':';
        if (!alnum && !(inner && i + 1 < len))
            return false;
    }
    return true;
}

static void format_time(time_t t, char *buf, size_t len)
{
    struct tm tm;

    if (gmtime_r(&t, &tm) == NULL)
        t = 0, gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Adds a string cut to max bytes on a UTF-8 character boundary: the CRD
 * bounds these fields and the apiserver refuses the whole write otherwise. */
static int add_str(json_object *o, const char *key, const char *s, size_t max)
{
    json_object *v =
        json_object_new_string_len(s, (int)gm_json_utf8_len(s, max));
    if (v == NULL)
        return -ENOMEM;
    return json_object_object_add(o, key, v) ? -ENOMEM : 0;
}

static int add_int(json_object *o, const char *key, int64_t x)
{
    json_object *v = json_object_new_int64(x);

    if (v == NULL)
        return -ENOMEM;
    return json_object_object_add(o, key, v) ? -ENOMEM : 0;
}

static int add_conditions(json_object *st, const struct gm_policy *p,
                          const struct cond *cs, size_t n, time_t now)
{
    json_object *arr = json_object_new_array();
    char stamp[32];
    int err = 0;

    if (arr == NULL || json_object_object_add(st, "conditions", arr)) {
        json_object_put(arr);
        return -ENOMEM;
    }
    format_time(now, stamp, sizeof(stamp));
    for (size_t i = 0; i < n && !err; i++) {
        const char *status = cs[i].status ? "True" : "False";
        const struct gm_condition *prev = gm_policy_condition(p, cs[i].type);
        const char *ltt = stamp;
        if (prev != NULL && strcmp(prev->status, status) == 0 &&
            prev->last_transition_time[0] != '\0')
            ltt = prev->last_transition_time;
        json_object *c = json_object_new_object();
        if (c == NULL || json_object_array_add(arr, c)) {
            json_object_put(c);
            return -ENOMEM;
        }
        err = add_str(c, "type", cs[i].type, 316);
        if (!err)
            err = add_str(c, "status", status, 16);
        if (!err)
            err = add_int(c, "observedGeneration", p->generation);
        if (!err)
            err = add_str(c, "lastTransitionTime", ltt, 64);
        if (!err)
            err = add_str(c, "reason", cs[i].reason, 1024);
        if (!err)
            err = add_str(c, "message", cs[i].message, 32768);
    }
    return err;
}

static bool two_digits(const char *s, int max)
{
    return isdigit((unsigned char)s[0]) && isdigit((unsigned char)s[1]) &&
           (s[0] - '0') * 10 + (s[1] - '0') <= max;
}

/* RFC 3339 as the CRD's date-time format checks it (Go's time.Parse):
 * "YYYY-MM-DDTHH:MM:SS", a fraction, then Z or an offset, every field in
 * its range and the day in its month. Anything else, from a hand-edited
 * annotation, is dropped: the API server refuses a status with it whole,
 * so every later status write of the policy would fail. */
static bool looks_like_time(const char *s)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd";
    static const int days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    for (size_t i = 0; i < sizeof(shape) - 1; i++)
        if (shape[i] == 'd' ? !isdigit((unsigned char)s[i]) : s[i] != shape[i])
            return false;
    int y = atoi(s), mo = atoi(s + 5), d = atoi(s + 8);
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo < 1 || mo > 12 || d < 1 || d > days[mo - 1] ||
        (mo == 2 && d == 29 && !leap) || !two_digits(s + 11, 23) ||
        !two_digits(s + 14, 59) || !two_digits(s + 17, 59))
        return false;
    const char *t = s + 19;
    if (*t == '.') {
        if (!isdigit((unsigned char)*++t))
            return false;
        while (isdigit((unsigned char)*t))
            t++;
    }
    if (*t == 'Z')
        return t[1] == '\0';
    return (*t == '+' || *t == '-') && two_digits(t + 1, 23) && t[3] == ':' &&
           two_digits(t + 4, 59) && t[6] == '\0';
}

static int add_nodes(json_object *st, const struct gm_plan *plan)
{
    size_t shown = plan->n_nodes < GM_STATUS_MAX_NODES ? plan->n_nodes
                                                       : GM_STATUS_MAX_NODES;
    int err = 0;

    if (plan->n_nodes == 0)
        return 0;
    json_object *arr = json_object_new_array();
    if (arr == NULL || json_object_object_add(st, "nodes", arr)) {
        json_object_put(arr);
        return -ENOMEM;
    }
    for (size_t i = 0; i < shown && !err; i++) {
        const struct gm_plan_node *n = &plan->nodes[i];
        json_object *o = json_object_new_object();
        if (o == NULL || json_object_array_add(arr, o)) {
            json_object_put(o);
            return -ENOMEM;
        }
        err = add_str(o, "name", n->name, 253);
        if (!err)
            err = add_str(o, "phase", n->phase, 64);
        if (!err)
            err = add_str(o, "from", n->from, 16);
        if (!err)
            err = add_str(o, "to", n->to, 16);
        if (!err && n->since != NULL && looks_like_time(n->since))
            err = add_str(o, "since", n->since, 64);
        if (!err && n->attempt > 0)
            err = add_int(o, "attempt", n->attempt);
        if (!err && n->message[0] != '\0')
            err = add_str(o, "message", n->message, 1024);
    }
    if (!err && plan->n_nodes > shown)
        err = add_int(st, "nodesOmitted", (int64_t)(plan->n_nodes - shown));
    return err;
}

static int add_summary(json_object *st, const struct gm_summary *s)
{
    json_object *o = json_object_new_object();
    int err;

    if (o == NULL || json_object_object_add(st, "summary", o)) {
        json_object_put(o);
        return -ENOMEM;
    }
    err = add_int(o, "matched", s->matched);
    if (!err)
        err = add_int(o, "converged", s->converged);
    if (!err)
        err = add_int(o, "switching", s->switching);
    if (!err)
        err = add_int(o, "pending", s->pending);
    if (!err)
        err = add_int(o, "failed", s->failed);
    if (!err)
        err = add_int(o, "conflicted", s->conflicted);
    return err;
}

/* Why pending nodes wait when nothing runs: the Reconciling reason. */
static const char *waiting_reason(const struct gm_plan *plan)
{
    if (plan->budget.paused)
        return "Paused";
    if (plan->window == 0)
        return "WaitingForWindow";
    return "Pending";
}

int gm_status_build(const struct gm_policy *p, const struct gm_plan *plan,
                    time_t now, json_object **out)
{
    const struct gm_summary *s = &plan->summary;
    char progress[4096]; /* the progress line and the notices */
    bool stalled = plan->stall_reason != NULL;
    /* A switch of the policy on a node it no longer governs runs on: the
     * policy is not done (nor Ready) until it ends. */
    int switching = s->switching + plan->in_flight_elsewhere;
    bool done = s->converged == s->matched && !stalled && switching == 0;
    bool working = switching > 0 || (s->pending > 0 && !stalled);
    const char *stall_reason = plan->stall_reason;
    const char *stall_message = plan->stall_message;
    char failed_msg[512];
    int err;

    /* Failed nodes below maxFailures, and nothing left to do: the policy
     * cannot finish without a person, so it is Stalled (GitOps tools and
     * kstatus would otherwise report it healthy). */
    if (!stalled && !working && s->failed > 0) {
        const char *first = "";
        for (size_t i = 0; i < plan->n_nodes && !first[0]; i++)
            if (plan->nodes[i].state == GM_NODE_FAILED)
                first = plan->nodes[i].name;
        snprintf(failed_msg, sizeof(failed_msg),
                 "%d node%s failed (first: %s); annotate a node "
                 "gpumode.io/retry to try it again",
                 s->failed, s->failed == 1 ? "" : "s", first);
        stalled = true;
        stall_reason = "NodesFailed";
        stall_message = failed_msg;
    }

    *out = NULL;
    gm_plan_progress(plan, p->spec.mode, progress, sizeof(progress));
    /* ". " sets each notice apart from the progress line and the others
     * (cli/status.c prints each as a note). */
    const char *notices[2] = {plan->notice, plan->drift_notice};
    for (size_t i = 0; i < 2; i++) {
        size_t n = strlen(progress);
        if (notices[i])
            snprintf(progress + n, sizeof(progress) - n, ". %s", notices[i]);
    }
    struct cond cs[3] = {
        {"Ready", done,
         done      ? "Converged"
         : stalled ? stall_reason
                   : "Progressing",
         progress},
        {"Reconciling", working,
         !working        ? (stalled ? "Stalled" : "Converged")
         : switching > 0 ? "Switching"
                         : waiting_reason(plan),
         working ? progress : ""},
        {"Stalled", stalled, stalled ? stall_reason : "AsExpected",
         stalled ? stall_message : ""},
    };
    json_object *st = json_object_new_object();
    if (st == NULL)
        return -ENOMEM;
    err = add_int(st, "observedGeneration", p->generation);
    if (!err)
        err = add_conditions(st, p, cs, 3, now);
    if (!err)
        err = add_summary(st, s);
    if (!err)
        err = add_nodes(st, plan);
    if (err) {
        json_object_put(st);
        return err;
    }
    *out = st;
    return 0;
}

int gm_status_build_invalid(const struct gm_policy *p, time_t now,
                            json_object **out)
{
    const char *msg = p->error ? p->error : "the spec is not valid";
    struct cond cs[3] = {
        {"Ready", false, "InvalidSpec", msg},
        {"Reconciling", false, "Stalled", ""},
        {"Stalled", true, "InvalidSpec", msg},
    };
    int err;

    *out = NULL;
    json_object *st = json_object_new_object();
    if (st == NULL)
        return -ENOMEM;
    err = add_int(st, "observedGeneration", p->generation);
    if (!err)
        err = add_conditions(st, p, cs, 3, now);
    if (err) {
        json_object_put(st);
        return err;
    }
    *out = st;
    return 0;
}

bool gm_status_changed(const struct gm_policy *p, json_object *status)
{
    if (p->status == NULL)
        return status != NULL;
    return !json_object_equal(p->status, status);
}
