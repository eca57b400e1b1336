#include "cli/dryrun.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/policyopts.h"
#include "common/json.h"
#include "nodeswitch/drain.h"
#include "nodeswitch/record.h"
#include "planner/assign.h"
#include "planner/labels.h"
#include "planner/selector.h"

const char *gm_dry_action_name(enum gm_dry_action a)
{
    static const char *const names[] = {
        [GM_DRY_EVICT] = "evict", [GM_DRY_PROTECTED] = "protected",
        [GM_DRY_WAIT] = "wait",   [GM_DRY_BLOCKED] = "blocked",
        [GM_DRY_SKIP] = "skip",
    };
    return names[a];
}

__attribute__((format(printf, 3, 4))) static int push(char ***list, size_t *n,
                                                      const char *fmt, ...)
{
    char buf[1200];
    va_list ap;
    char **l = realloc(*list, (*n + 1) * sizeof(**list));

    if (l == NULL)
        return -ENOMEM;
    *list = l;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    l[*n] = strdup(buf);
    if (l[*n] == NULL)
        return -ENOMEM;
    (*n)++;
    return 0;
}

static int cmp_node(const void *a, const void *b)
{
    const struct gm_dry_node *x = a;
    const struct gm_dry_node *y = b;
    return strcmp(x->name, y->name);
}

/* r->nodes is sorted by name once the first plan is seen (first_view):
 * the simulation looks nodes up once per plan node and round, so a
 * linear search made a 5,000-node plan take minutes. */
static int cmp_name_node(const void *name, const void *node)
{
    const struct gm_dry_node *n = node;
    return strcmp(name, n->name);
}

static struct gm_dry_node *find(struct gm_dry_run *r, const char *name)
{
    return bsearch(name, r->nodes, r->n_nodes, sizeof(*r->nodes),
                   cmp_name_node);
}

static int add_node(struct gm_dry_run *r, const char *name, const char *from,
                    enum gm_node_state st, const char *note)
{
    struct gm_dry_node *n = realloc(r->nodes, (r->n_nodes + 1) * sizeof(*n));

    if (n == NULL)
        return -ENOMEM;
    r->nodes = n;
    n = &r->nodes[r->n_nodes++];
    memset(n, 0, sizeof(*n));
    n->name = strdup(name);
    n->from = strdup(from);
    n->note = strdup(note ? note : "");
    n->state = st;
    n->batch = st == GM_NODE_SWITCHING ? 0 : -1;
    return n->name && n->from && n->note ? 0 : -ENOMEM;
}

static int set_note(struct gm_dry_node *n, const char *note)
{
    char *s = strdup(note ? note : "");

    if (s == NULL)
        return -ENOMEM;
    free(n->note);
    n->note = s;
    return 0;
}

/* ---- simulated nodes ---- */

/* The mode label a converged node carries ("gpumode.io/mode=mig"). */
static const char *mode_label(enum gm_mode m)
{
    switch (m) {
    case GM_MODE_FULL:
        return GM_LABEL_MODE "=full";
    case GM_MODE_VGPU:
        return GM_LABEL_MODE "=vgpu";
    case GM_MODE_MIG:
        return GM_LABEL_MODE "=mig";
    case GM_MODE_UNKNOWN:
        break;
    }
    return GM_LABEL_MODE "=unknown";
}

/* A node as it would be once its switch is done: the mode label set, state
 * ready (failed for a switch rolling back), no switch or retry annotation,
 * uncordoned when gpumode cordoned it and Ready (a node rebooting for the
 * switch comes back). Strings are borrowed from the original (which
 * outlives the simulation) or static; only the struct and the label array
 * are ours. */
static struct gm_node *converged_copy(const struct gm_node *orig,
                                      enum gm_mode to, bool failed)
{
    struct gm_node *n = malloc(sizeof(*n));
    struct gm_label *labels = calloc(orig->n_labels + 2, sizeof(*labels));
    size_t k = 0;

    if (n == NULL || labels == NULL) {
        free(n);
        free(labels);
        return NULL;
    }
    *n = *orig;
    for (size_t i = 0; i < orig->n_labels; i++)
        if (gm_label_key_cmp(&orig->labels[i], GM_LABEL_MODE) != 0 &&
            gm_label_key_cmp(&orig->labels[i], GM_LABEL_STATE) != 0)
            labels[k++] = orig->labels[i];
    labels[k++].kv = mode_label(to);
    labels[k++].kv =
        failed ? GM_LABEL_STATE "=failed" : GM_LABEL_STATE "=ready";
    /* gm_node_label searches by bisection: keep the order it needs. */
    qsort(labels, k, sizeof(*labels), gm_label_order);
    n->labels = labels;
    n->n_labels = k;
    struct gm_switch_record rec = {0};
    char why[128];
    if (orig->ann_switch &&
        gm_record_parse(orig->ann_switch, &rec, why, sizeof(why)) == 0) {
        if (rec.cordoned)
            n->unschedulable = false;
        n->ready = true;
        gm_record_clear(&rec);
    }
    n->ann_switch = NULL;
    n->ann_retry = NULL;
    n->ann_boot_id = orig->boot_id;
    /* Unknown settings count as current: the switch would write them;
     * what it would offer is not known, so nothing is compared. */
    n->ann_settings = NULL;
    n->ann_resources = NULL;
    n->ann_gpus = 0;
    return n;
}

struct sim {
    const struct gm_node **nodes; /* current view */
    struct gm_node **owned;       /* copies we made, by index, or NULL */
    size_t n;
};

static void sim_free(struct sim *s)
{
    for (size_t i = 0; s->owned && i < s->n; i++) {
        if (s->owned[i]) {
            free(s->owned[i]->labels);
            free(s->owned[i]);
        }
    }
    free(s->owned);
    free(s->nodes);
}

static int sim_converge(struct sim *s, const struct gm_node *which,
                        enum gm_mode to, bool failed)
{
    for (size_t i = 0; i < s->n; i++) {
        if (s->nodes[i] != which)
            continue;
        struct gm_node *c = converged_copy(which, to, failed);
        if (c == NULL)
            return -ENOMEM;
        if (s->owned[i]) {
            free(s->owned[i]->labels);
            free(s->owned[i]);
        }
        s->owned[i] = c;
        s->nodes[i] = c;
        return 0;
    }
    return 0;
}

/* Where the switch in flight on n ends: *to its target, or its mode
 * before when it rolls back, with *failed set unless the rollback only
 * releases the node (no policy selects it: it goes back into service).
 * Left as they are without a record that parses. */
static void in_flight_end(const struct gm_node *n, enum gm_mode *to,
                          bool *failed)
{
    struct gm_switch_record rec = {0};
    char why[128];
    if (n->ann_switch == NULL ||
        gm_record_parse(n->ann_switch, &rec, why, sizeof(why)) != 0)
        return;
    *failed = rec.rolling_back && !rec.releasing;
    *to = rec.rolling_back ? rec.from : rec.to;
    gm_record_clear(&rec);
}

/* n carries a switch of the policy named that has not failed. Like the
 * planner, which counts such a switch against the policy's budget even
 * on a node the policy no longer governs (its selector changed, or a
 * policy of higher priority took the node): the switch goes on. */
static bool in_flight_for(const struct gm_node *n, const char *policy)
{
    struct gm_switch_record rec = {0};
    char why[128];
    if (n->ann_switch == NULL ||
        gm_record_parse(n->ann_switch, &rec, why, sizeof(why)) != 0)
        return false;
    bool yes = rec.policy && strcmp(rec.policy, policy) == 0 &&
               rec.phase != GM_PHASE_FAILED;
    gm_record_clear(&rec);
    return yes;
}

/* Whether the plan shows node name as one of its own to act on: a
 * switch of this policy there that the plan does not list, or lists as
 * in conflict (a tie: the switch goes on), is one the planner counts
 * against the budget without ending it. */
static bool in_plan(const struct gm_plan *pl, const char *name)
{
    for (size_t i = 0; i < pl->n_nodes; i++)
        if (strcmp(pl->nodes[i].name, name) == 0)
            return pl->nodes[i].state != GM_NODE_CONFLICT;
    return false;
}

/* "a, b and 2 more": the tied policies' names, for a conflict this
 * policy is not part of. */
static void tied_names(const struct gm_assignment *a, char *buf, size_t cap)
{
    size_t shown =
        a->n_tied < GM_ASSIGN_MAX_TIED ? a->n_tied : GM_ASSIGN_MAX_TIED;
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < shown && off < cap; i++)
        off += (size_t)snprintf(buf + off, cap - off, "%s%s",
                                i == 0               ? ""
                                : i + 1 == a->n_tied ? " and "
                                                     : ", ",
                                a->tied[i]->name);
    if (a->n_tied > shown && off < cap)
        snprintf(buf + off, cap - off, " and %zu more", a->n_tied - shown);
}

/* ---- the plan ---- */

static int first_view(struct gm_dry_run *r, const struct gm_dry_input *in,
                      const struct gm_policy *sim_pol,
                      const struct gm_policy *const *pols, size_t n_pols,
                      const struct gm_plan *pl)
{
    int err = 0;

    for (size_t i = 0; i < in->n_nodes && !err; i++) {
        const struct gm_node *n = in->nodes[i];
        struct gm_assignment a;
        const char *mode = gm_node_label(n, GM_LABEL_MODE);

        if (!gm_selector_matches(&sim_pol->spec.selector, n))
            continue;
        gm_assign_node(n, pols, n_pols, &a);
        if (a.kind == GM_ASSIGN_SKIPPED) {
            err = push(&r->elsewhere, &r->n_elsewhere,
                       "%s: gpumode.io/skip=true, never touched", n->name);
            continue;
        }
        if (a.kind == GM_ASSIGN_NO_GPU) {
            err = push(&r->elsewhere, &r->n_elsewhere,
                       "%s: shows no GPU (no feature-discovery label, no "
                       "GPU resource), never touched",
                       n->name);
            continue;
        }
        if (a.kind == GM_ASSIGN_OWNED && a.owner != sim_pol) {
            err = push(&r->elsewhere, &r->n_elsewhere,
                       "%s: governed by policy %s (priority %d)", n->name,
                       a.owner->name, a.owner->spec.priority);
            continue;
        }
        /* Policies of a higher priority than this one tie on the node:
         * none of them acts on it, and this one may not either. (A tie
         * this policy is part of is in the plan, as a conflict.) */
        if (a.kind == GM_ASSIGN_CONFLICT &&
            a.tied[0]->spec.priority != sim_pol->spec.priority) {
            char names[400];
            tied_names(&a, names, sizeof(names));
            err = push(&r->elsewhere, &r->n_elsewhere,
                       "%s: policies %s tie on it at priority %d, so none "
                       "of them acts on it, nor does this one (priority %d)",
                       n->name, names, a.tied[0]->spec.priority,
                       sim_pol->spec.priority);
            continue;
        }
        const struct gm_plan_node *pn = NULL;
        for (size_t j = 0; j < pl->n_nodes; j++)
            if (strcmp(pl->nodes[j].name, n->name) == 0)
                pn = &pl->nodes[j];
        if (pn == NULL) {
            err = add_node(r, n->name, mode ? mode : "unknown",
                           GM_NODE_CONVERGED, "already converged");
            continue;
        }
        /* A start of the first plan shows as switching; it is batch 1. */
        enum gm_node_state st = pn->state;
        if (st == GM_NODE_SWITCHING && strcmp(pn->phase, "Starting") == 0)
            st = GM_NODE_PENDING;
        enum gm_mode to = GM_MODE_UNKNOWN;
        bool failed = false;
        if (st == GM_NODE_SWITCHING)
            in_flight_end(n, &to, &failed);
        err = add_node(r, n->name, mode ? mode : "unknown", st,
                       st != GM_NODE_SWITCHING ? pn->message
                       : failed ? "switch in flight now, rolling back: "
                                  "it ends failed"
                                : "switch in flight now");
    }
    /* Switches of this policy in flight on nodes it no longer governs:
     * each holds a slot of the budget until it ends. */
    for (size_t i = 0; i < in->n_nodes && !err; i++) {
        const struct gm_node *n = in->nodes[i];
        if (!gm_node_skipped(n) && in_flight_for(n, sim_pol->name) &&
            !in_plan(pl, n->name))
            err = push(&r->notes, &r->n_notes,
                       "%s is no longer governed by this policy, but its "
                       "switch for it is in flight: it holds a slot of the "
                       "rollout budget until it ends",
                       n->name);
    }
    if (!err && r->n_nodes > 1)
        qsort(r->nodes, r->n_nodes, sizeof(*r->nodes), cmp_node);
    return err;
}

static int simulate(struct gm_dry_run *r, const struct gm_dry_input *in,
                    const struct gm_policy *sim_pol,
                    const struct gm_policy *const *pols, size_t n_pols)
{
    struct sim s = {0};
    time_t now = in->now;
    bool window_moved = false;
    int err = 0;

    s.n = in->n_nodes;
    s.nodes = calloc(s.n + 1, sizeof(*s.nodes));
    s.owned = calloc(s.n + 1, sizeof(*s.owned));
    if (s.nodes == NULL || s.owned == NULL) {
        sim_free(&s);
        return -ENOMEM;
    }
    memcpy(s.nodes, in->nodes, s.n * sizeof(*s.nodes));

    /* Every round moves a node, and a node moves at most twice (a switch
     * in flight ends, then the file's switch), so a fleet of any size and
     * budget is planned whole; a plan that kept moving nodes past that
     * would be a planner bug, not a reason to hang. */
    size_t max_rounds = 2 * s.n + 2, round;
    bool moved = false;
    /* The last stall reported: one that comes in a later round (the
     * switches in flight end failed, and maxFailures is reached) stops
     * the rollout as surely as one now. */
    char stall[64] = "";
    for (round = 0; round <= max_rounds && !err; round++) {
        struct gm_plan pl;
        struct gm_plan_input pi = {
            .policy = sim_pol,
            .policies = pols,
            .n_policies = n_pols,
            .nodes = s.nodes,
            .n_nodes = s.n,
            .now = now,
            .layouts = in->layouts,
            .layouts_source = in->layouts_source,
            .layouts_error = in->layouts_error,
            .hami_config_absent = in->hami_config_absent != NULL,
            .hami_config_source = in->hami_config_absent,
            /* The controller's preset's. No grace: the plan shows the
             * present. */
            .vgpu_resource =
                in->vgpu_resource ? in->vgpu_resource : "nvidia.com/vgpu",
            .plugin_configs = in->plugin_configs,
            .plugin_configs_source = in->plugin_configs_source,
            /* Both presets select the config with this label. */
            .plugin_config_label = "nvidia.com/device-plugin.config",
        };
        err = gm_plan_policy(&pi, &pl);
        if (err)
            break;
        if (round == 0 && !window_moved && pl.window == 0 &&
            pl.requeue_at > now) {
            /* Simulate from the window's opening rather than show that
             * nothing starts now. */
            char at[32];
            struct tm tm;
            gmtime_r(&pl.requeue_at, &tm);
            strftime(at, sizeof(at), "%Y-%m-%dT%H:%MZ", &tm);
            err = push(&r->notes, &r->n_notes,
                       "the rollout window is closed now; batch 1 starts "
                       "when it opens (%s)",
                       at);
            now = pl.requeue_at;
            window_moved = true;
            gm_plan_free(&pl);
            round = (size_t)-1; /* the loop's ++ makes it 0 again */
            continue;
        }
        if (round == 0) {
            r->matched = pl.summary.matched;
            r->limit = pl.budget.limit;
            err = first_view(r, in, sim_pol, pols, n_pols, &pl);
            if (!err && pl.stall_reason != NULL)
                err = push(&r->errors, &r->n_errors, "%s: %s", pl.stall_reason,
                           pl.stall_message);
            /* A notice about HAMi's ConfigMap, which plan looked up by the
             * name in the controller's config (or the default), says how
             * to name another. */
            if (!err && pl.notice != NULL)
                err = push(&r->notes, &r->n_notes, "%s%s", pl.notice,
                           strstr(pl.notice, "HAMi")
                               ? "; if the controller uses another "
                                 "ConfigMap, pass --hami-configmap NS/NAME"
                               : "");
            if (!err && pl.drift_notice != NULL)
                err = push(&r->notes, &r->n_notes, "%s", pl.drift_notice);
        }
        if (!err && pl.stall_reason != NULL &&
            strcmp(pl.stall_reason, stall) != 0) {
            if (round > 0 && r->n_batches == 0)
                err = push(&r->errors, &r->n_errors,
                           "%s once the switches in flight end: %s",
                           pl.stall_reason, pl.stall_message);
            else if (round > 0)
                err = push(&r->errors, &r->n_errors, "%s after batch %d: %s",
                           pl.stall_reason, r->n_batches, pl.stall_message);
            snprintf(stall, sizeof(stall), "%s", pl.stall_reason);
        }
        moved = false;
        /* Nodes in flight finish first: they hold budget in round 1. */
        for (size_t i = 0; i < pl.n_nodes && !err; i++) {
            const struct gm_plan_node *pn = &pl.nodes[i];
            struct gm_dry_node *dn = find(r, pn->name);
            if (pn->state == GM_NODE_PENDING && dn && dn->batch < 0)
                err = set_note(dn, pn->message);
            if (pn->state != GM_NODE_SWITCHING ||
                strcmp(pn->phase, "Starting") == 0)
                continue;
            for (size_t j = 0; j < s.n && !err; j++)
                if (strcmp(s.nodes[j]->name, pn->name) == 0) {
                    /* It ends where its record heads: the mode it
                     * switches to (another than the file's, after an
                     * edit, needs a second switch), or back, failed. */
                    enum gm_mode to = sim_pol->spec.mode;
                    bool failed = false;
                    in_flight_end(s.nodes[j], &to, &failed);
                    err = sim_converge(&s, s.nodes[j], to, failed);
                    moved = true;
                }
        }
        /* The budget's slots held by switches of this policy on nodes it
         * no longer governs are freed when those end, as in the cluster. */
        for (size_t j = 0; j < s.n && !err; j++) {
            const struct gm_node *n = s.nodes[j];
            if (gm_node_skipped(n) || !in_flight_for(n, sim_pol->name) ||
                in_plan(&pl, n->name))
                continue;
            enum gm_mode to = GM_MODE_UNKNOWN;
            bool failed = false;
            in_flight_end(n, &to, &failed);
            err = sim_converge(&s, n, to, failed);
            moved = true;
        }
        for (size_t i = 0; i < pl.n_starts && !err; i++) {
            struct gm_dry_node *dn = find(r, pl.starts[i].node->name);
            if (dn) {
                dn->batch = r->n_batches + 1;
                err = set_note(dn, "");
            }
            if (!err)
                err =
                    sim_converge(&s, pl.starts[i].node, pl.starts[i].to, false);
            moved = true;
        }
        if (pl.n_starts > 0)
            r->n_batches++;
        gm_plan_free(&pl);
        if (!moved)
            break;
    }
    if (!err && moved && round > max_rounds)
        err = push(&r->errors, &r->n_errors,
                   "the plan stopped after %zu rounds with nodes still "
                   "switching (a gpumode bug: please report it); batches "
                   "after %d are not shown",
                   max_rounds + 1, r->n_batches);
    sim_free(&s);
    return err;
}

void gm_dry_run_free(struct gm_dry_run *r)
{
    for (size_t i = 0; i < r->n_nodes; i++) {
        struct gm_dry_node *n = &r->nodes[i];
        for (size_t j = 0; j < n->n_pods; j++) {
            free(n->pods[j].namespace);
            free(n->pods[j].name);
            free(n->pods[j].why);
        }
        free(n->pods);
        free(n->name);
        free(n->from);
        free(n->note);
    }
    free(r->nodes);
    char **lists[] = {r->elsewhere, r->notes, r->errors};
    size_t lens[] = {r->n_elsewhere, r->n_notes, r->n_errors};
    for (size_t k = 0; k < 3; k++) {
        for (size_t i = 0; i < lens[k]; i++)
            free(lists[k][i]);
        free(lists[k]);
    }
    free(r->policy);
    memset(r, 0, sizeof(*r));
}

int gm_dry_run_plan(const struct gm_dry_input *in, struct gm_dry_run *out)
{
    memset(out, 0, sizeof(*out));
    if (in->policy == NULL || !in->policy->valid)
        return -EINVAL;

    /* The simulation plans an unpaused copy, so a paused policy still
     * shows what resuming it would do. Strings stay the file policy's. */
    struct gm_policy sim_pol = *in->policy;
    sim_pol.spec.paused = false;
    const struct gm_policy **pols = calloc(in->n_existing + 1, sizeof(*pols));
    size_t n_pols = 0;
    int err;

    if (pols == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < in->n_existing; i++)
        if (strcmp(in->existing[i]->name, in->policy->name) != 0)
            pols[n_pols++] = in->existing[i];
    pols[n_pols++] = &sim_pol;

    out->policy = strdup(in->policy->name);
    out->mode = in->policy->spec.mode;
    out->priority = in->policy->spec.priority;
    err = out->policy ? 0 : -ENOMEM;
    if (!err && in->config_note)
        err = push(&out->notes, &out->n_notes, "%s", in->config_note);
    if (!err && in->config_problem)
        err = push(&out->errors, &out->n_errors, "%s", in->config_problem);
    if (!err && in->policy->spec.paused)
        err = push(&out->notes, &out->n_notes,
                   "spec.rollout.paused is true: nothing starts until it "
                   "is resumed; the batches show what resuming would do");
    struct gm_policy_sels sels;
    if (!err && gm_policy_sels_parse(in->policy, &sels) == -EINVAL)
        err = push(&out->errors, &out->n_errors, "%s", sels.error);
    gm_policy_sels_clear(&sels);
    if (!err)
        err = simulate(out, in, &sim_pol, pols, n_pols);
    free(pols);
    if (err) {
        gm_dry_run_free(out);
        return err;
    }
    return 0;
}

/* ---- pods ---- */

static const char *pod_lookup(const void *obj, const char *key)
{
    return gm_pod_label(obj, key);
}

bool gm_dry_pdb_blocks(json_object *pdbs, const struct gm_pod *pod,
                       const char **which)
{
    /* The API server evicts these without asking their budgets
     * (canIgnorePDB): not running, or already being deleted. */
    if (pod->phase == GM_POD_PENDING || pod->phase == GM_POD_SUCCEEDED ||
        pod->phase == GM_POD_FAILED || pod->deleting)
        return false;
    for (size_t i = 0; pdbs && i < json_object_array_length(pdbs); i++) {
        json_object *pdb = json_object_array_get_idx(pdbs, i);
        json_object *md = gm_json_get(pdb, "metadata");
        const char *ns = json_object_get_string(gm_json_get(md, "namespace"));
        json_object *sel = gm_json_get(gm_json_get(pdb, "spec"), "selector");
        struct gm_selector s;
        char err[128];

        if (ns == NULL || strcmp(ns, pod->namespace) != 0)
            continue;
        /* policy/v1: a null selector selects nothing, {} every pod. */
        if (sel == NULL || json_object_is_type(sel, json_type_null))
            continue;
        if (gm_selector_decode(sel, "spec.selector", true, &s, err,
                               sizeof(err)))
            continue;
        bool match =
            s.n_reqs == 0 || gm_selector_matches_fn(&s, pod_lookup, pod);
        gm_selector_clear(&s);
        if (!match)
            continue;
        json_object *allowed =
            gm_json_get(gm_json_get(pdb, "status"), "disruptionsAllowed");
        if (allowed == NULL || json_object_get_int64(allowed) <= 0) {
            *which = json_object_get_string(gm_json_get(md, "name"));
            return true;
        }
    }
    return false;
}

static int add_pod(struct gm_dry_node *n, const struct gm_pod *p,
                   enum gm_dry_action a, const char *why)
{
    struct gm_dry_pod *ps = realloc(n->pods, (n->n_pods + 1) * sizeof(*ps));

    if (ps == NULL)
        return -ENOMEM;
    n->pods = ps;
    ps = &n->pods[n->n_pods++];
    ps->namespace = strdup(p->namespace);
    ps->name = strdup(p->name);
    ps->why = strdup(why);
    ps->action = a;
    return ps->namespace && ps->name && ps->why ? 0 : -ENOMEM;
}

static int cmp_pod(const void *a, const void *b)
{
    const struct gm_dry_pod *x = a;
    const struct gm_dry_pod *y = b;
    int c = (int)x->action - (int)y->action;
    if (c == 0)
        c = strcmp(x->namespace, y->namespace);
    if (c == 0)
        c = strcmp(x->name, y->name);
    return c;
}

int gm_dry_run_pods(struct gm_dry_run *run, const struct gm_policy *p,
                    const struct gm_pod *const *pods, size_t n_pods,
                    json_object *pdbs, const char *pdbs_unread,
                    const char *own_namespace)
{
    struct gm_policy_sels sels;
    struct gm_switch_policy o;
    int err = 0;
    bool evicts = false;

    gm_policy_sels_parse(p, &sels);
    gm_switch_policy_defaults(&o);
    gm_policy_switch_opts(p, &sels, &o);
    o.drain.own_namespace = own_namespace;
    for (size_t i = 0; i < n_pods && !err; i++) {
        const struct gm_pod *pod = pods[i];
        struct gm_dry_node *n =
            pod->node_name ? find(run, pod->node_name) : NULL;
        char why[256] = "";
        if (n == NULL || n->batch < 1)
            continue;
        enum gm_drain_action a =
            gm_drain_classify(&o.drain, pod, why, sizeof(why));
        enum gm_dry_action d = GM_DRY_SKIP;
        const char *pdb = NULL;
        switch (a) {
        case GM_DRAIN_EVICT:
            d = GM_DRY_EVICT;
            evicts = true;
            if (gm_dry_pdb_blocks(pdbs, pod, &pdb)) {
                d = GM_DRY_PROTECTED;
                snprintf(why, sizeof(why),
                         "PodDisruptionBudget %s/%s allows no disruption "
                         "now; the drain waits for it",
                         pod->namespace, pdb ? pdb : "?");
            }
            break;
        case GM_DRAIN_TERMINATING:
        case GM_DRAIN_WAIT:
            d = GM_DRY_WAIT;
            break;
        case GM_DRAIN_BLOCKED:
            d = GM_DRY_BLOCKED;
            /* The switch would fail on it (DrainBlocked): a problem, so a
             * pipeline gating on plan stops here. */
            err = push(&run->errors, &run->n_errors,
                       "DrainBlocked: node %s: pod %s/%s %s", n->name,
                       pod->namespace, pod->name, why);
            break;
        case GM_DRAIN_SKIP:
            d = GM_DRY_SKIP;
            /* The classifier says nothing for a skip; the user asks why. */
            if (why[0] == '\0' && pod->owner_kind &&
                strcmp(pod->owner_kind, "DaemonSet") == 0)
                snprintf(why, sizeof(why), "DaemonSet pod");
            else if (why[0] == '\0' && o.drain.gpu_pods_only && !pod->uses_gpu)
                snprintf(why, sizeof(why), "uses no GPU");
            break;
        }
        err = add_pod(n, pod, d, why);
    }
    /* Without the budgets an "evict" may yet wait: say so rather than
     * let the plan look surer than it is. */
    if (!err && evicts && pdbs == NULL && pdbs_unread)
        err = push(&run->notes, &run->n_notes,
                   "PodDisruptionBudgets could not be read (%s): evictions "
                   "were not checked against them, and one that allows no "
                   "disruption makes the drain wait",
                   pdbs_unread);
    for (size_t i = 0; i < run->n_nodes; i++)
        if (run->nodes[i].n_pods > 1)
            qsort(run->nodes[i].pods, run->nodes[i].n_pods,
                  sizeof(*run->nodes[i].pods), cmp_pod);
    gm_policy_sels_clear(&sels);
    return err;
}

int gm_dry_run_switching(const struct gm_dry_run *r, const char ***out,
                         size_t *n)
{
    *n = 0;
    *out = calloc(r->n_nodes + 1, sizeof(**out));
    if (*out == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < r->n_nodes; i++)
        if (r->nodes[i].batch >= 1)
            (*out)[(*n)++] = r->nodes[i].name;
    return 0;
}

/* ---- output ---- */

static const char *state_name(enum gm_node_state s)
{
    switch (s) {
    case GM_NODE_CONVERGED:
        return "converged";
    case GM_NODE_SWITCHING:
        return "switching";
    case GM_NODE_PENDING:
        return "pending";
    case GM_NODE_FAILED:
        return "failed";
    case GM_NODE_CONFLICT:
        return "conflict";
    }
    return "?";
}

static size_t width(const struct gm_dry_run *r, size_t min)
{
    size_t w = min;
    for (size_t i = 0; i < r->n_nodes; i++)
        if (strlen(r->nodes[i].name) > w)
            w = strlen(r->nodes[i].name);
    return w;
}

static int render_batches(const struct gm_dry_run *r, struct gm_buf *out)
{
    int err = gm_buf_appendf(out,
                             "\nBatches (maxUnavailable %d of %d "
                             "matched nodes):\n",
                             r->limit, r->matched);
    if (!err && r->n_batches == 0)
        err = gm_buf_appendf(out, "  none: no node would switch\n");
    for (int b = 1; b <= r->n_batches && !err; b++) {
        const char *sep = "";
        err = gm_buf_appendf(out, "  %d: ", b);
        for (size_t i = 0; i < r->n_nodes && !err; i++) {
            if (r->nodes[i].batch != b)
                continue;
            err = gm_buf_appendf(out, "%s%s", sep, r->nodes[i].name);
            sep = ", ";
        }
        if (!err)
            err = gm_buf_appendf(out, "\n");
    }
    return err;
}

static int render_pods(const struct gm_dry_run *r, struct gm_buf *out)
{
    int err = 0;
    bool any = false;

    for (size_t i = 0; i < r->n_nodes && !err; i++) {
        const struct gm_dry_node *n = &r->nodes[i];
        if (n->batch < 1)
            continue;
        if (!any)
            err = gm_buf_appendf(out, "\nPods on the nodes that would "
                                      "switch:\n");
        any = true;
        if (!err && n->n_pods == 0)
            err = gm_buf_appendf(out, "  %s: no pods\n", n->name);
        for (size_t j = 0; j < n->n_pods && !err; j++) {
            const struct gm_dry_pod *p = &n->pods[j];
            err = gm_buf_appendf(out, "  %-*s  %-9s  %s/%s%s%s\n",
                                 (int)width(r, 4), n->name,
                                 gm_dry_action_name(p->action), p->namespace,
                                 p->name, p->why[0] ? ": " : "", p->why);
        }
    }
    return err;
}

static int render_list(const char *title, char *const *l, size_t n,
                       struct gm_buf *out)
{
    int err = 0;

    if (n == 0)
        return 0;
    err = gm_buf_appendf(out, "\n%s:\n", title);
    for (size_t i = 0; i < n && !err; i++)
        err = gm_buf_appendf(out, "  %s\n", l[i]);
    return err;
}

int gm_dry_run_render(const struct gm_dry_run *r, struct gm_buf *out)
{
    size_t w = width(r, 4);
    int err = gm_buf_appendf(out,
                             "Policy %s: mode %s, priority %d; %d nodes "
                             "matched\n",
                             r->policy, gm_mode_name(r->mode), r->priority,
                             r->matched);

    if (!err && r->n_nodes > 0)
        err = gm_buf_appendf(out, "\n%-*s  %-7s  %-9s  %-5s  %s\n", (int)w,
                             "NODE", "FROM", "STATE", "BATCH", "NOTE");
    for (size_t i = 0; i < r->n_nodes && !err; i++) {
        const struct gm_dry_node *n = &r->nodes[i];
        char batch[16];
        if (n->batch >= 1)
            snprintf(batch, sizeof(batch), "%d", n->batch);
        else
            snprintf(batch, sizeof(batch), "-");
        err =
            gm_buf_appendf(out, "%-*s  %-7s  %-9s  %-5s  %s\n", (int)w, n->name,
                           n->from, state_name(n->state), batch, n->note);
    }
    if (!err)
        err = render_batches(r, out);
    if (!err)
        err = render_pods(r, out);
    if (!err)
        err = render_list("Selected but not governed by this policy",
                          r->elsewhere, r->n_elsewhere, out);
    if (!err)
        err = render_list("Notes", r->notes, r->n_notes, out);
    if (!err)
        err = render_list("Problems (fix before applying)", r->errors,
                          r->n_errors, out);
    return err;
}

static json_object *strings(char *const *l, size_t n)
{
    json_object *a = json_object_new_array();
    for (size_t i = 0; a && i < n; i++)
        json_object_array_add(a, json_object_new_string(l[i]));
    return a;
}

json_object *gm_dry_run_json(const struct gm_dry_run *r)
{
    json_object *o = json_object_new_object();
    json_object *nodes = json_object_new_array();
    json_object *batches = json_object_new_array();

    if (o == NULL || nodes == NULL || batches == NULL) {
        json_object_put(o);
        json_object_put(nodes);
        json_object_put(batches);
        return NULL;
    }
    json_object_object_add(o, "policy", json_object_new_string(r->policy));
    json_object_object_add(o, "mode",
                           json_object_new_string(gm_mode_name(r->mode)));
    json_object_object_add(o, "priority", json_object_new_int(r->priority));
    json_object_object_add(o, "matched", json_object_new_int(r->matched));
    json_object_object_add(o, "maxUnavailable", json_object_new_int(r->limit));
    for (size_t i = 0; i < r->n_nodes; i++) {
        const struct gm_dry_node *n = &r->nodes[i];
        json_object *no = json_object_new_object();
        json_object *pods = json_object_new_array();
        json_object_object_add(no, "name", json_object_new_string(n->name));
        json_object_object_add(no, "from", json_object_new_string(n->from));
        json_object_object_add(no, "state",
                               json_object_new_string(state_name(n->state)));
        if (n->batch >= 1)
            json_object_object_add(no, "batch", json_object_new_int(n->batch));
        json_object_object_add(no, "note", json_object_new_string(n->note));
        for (size_t j = 0; j < n->n_pods; j++) {
            json_object *po = json_object_new_object();
            json_object_object_add(
                po, "namespace", json_object_new_string(n->pods[j].namespace));
            json_object_object_add(po, "name",
                                   json_object_new_string(n->pods[j].name));
            json_object_object_add(
                po, "action",
                json_object_new_string(gm_dry_action_name(n->pods[j].action)));
            json_object_object_add(po, "reason",
                                   json_object_new_string(n->pods[j].why));
            json_object_array_add(pods, po);
        }
        if (n->batch >= 1)
            json_object_object_add(no, "pods", pods);
        else
            json_object_put(pods);
        json_object_array_add(nodes, no);
    }
    for (int b = 1; b <= r->n_batches; b++) {
        json_object *batch = json_object_new_array();
        for (size_t i = 0; i < r->n_nodes; i++)
            if (r->nodes[i].batch == b)
                json_object_array_add(batch,
                                      json_object_new_string(r->nodes[i].name));
        json_object_array_add(batches, batch);
    }
    json_object_object_add(o, "nodes", nodes);
    json_object_object_add(o, "batches", batches);
    json_object_object_add(o, "notGoverned",
                           strings(r->elsewhere, r->n_elsewhere));
    json_object_object_add(o, "notes", strings(r->notes, r->n_notes));
    json_object_object_add(o, "errors", strings(r->errors, r->n_errors));
    return o;
}
