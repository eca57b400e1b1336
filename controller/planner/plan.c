#include "planner/plan.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "planner/assign.h"
#include "planner/labels.h"
#include "planner/selector.h"
#include "planner/window.h"

/* What the planner reads from a gpumode.io/switch annotation. */
struct sw {
    char policy[254];
    char from[17];
    char to[17];
    char phase[65];
    char since[41];
    char message[1025];
    char reason[65];
    int attempt;
};

static void copy_field(json_object *o, const char *key, char *dst, size_t len)
{
    json_object *v = NULL;

    dst[0] = '\0';
    if (json_object_object_get_ex(o, key, &v) &&
        json_object_is_type(v, json_type_string))
        snprintf(dst, len, "%s", json_object_get_string(v));
}

/* A malformed annotation still means a switch is in flight (someone wrote
 * it); the planner keeps its hands off and reports what it can. */
static void parse_switch(const char *ann, struct sw *s)
{
    json_object *o = json_tokener_parse(ann);
    json_object *v = NULL;

    memset(s, 0, sizeof(*s));
    if (o == NULL || !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        snprintf(s->message, sizeof(s->message),
                 "gpumode.io/switch annotation is not a JSON object");
        return;
    }
    copy_field(o, "policy", s->policy, sizeof(s->policy));
    copy_field(o, "from", s->from, sizeof(s->from));
    copy_field(o, "to", s->to, sizeof(s->to));
    copy_field(o, "phase", s->phase, sizeof(s->phase));
    copy_field(o, "since", s->since, sizeof(s->since));
    copy_field(o, "message", s->message, sizeof(s->message));
    copy_field(o, "reason", s->reason, sizeof(s->reason));
    if (json_object_object_get_ex(o, "attempt", &v) &&
        json_object_is_type(v, json_type_int))
        s->attempt = json_object_get_int(v);
    json_object_put(o);
}

struct cand {
    const struct gm_node *node;
    enum gm_mode from;
    /* A mig node whose layout a reboot erased, re-laid under mig: not a
     * change someone scheduled but a repair, started first and also
     * outside the window (the reboot already took the node out of
     * service, and until its instances are back it serves none; a Hopper
     * GPU even comes back out of MIG mode and is offered whole). */
    bool repair;
    /* A person asked for this node's retry (gpumode.io/retry): maxFailures
     * does not hold it back (its stall asks for exactly that), though
     * pause, window and budget do. */
    bool retry;
    char *layout;   /* owned until moved into a start */
    char *settings; /* owned until moved into a start */
    size_t entry;   /* index into out->nodes */
};

/* Settings for one kind of node (GPU model and count): a pool is a few
 * kinds, so the layout is resolved a few times per plan, not per node. */
#define SETTINGS_CACHE 16
struct settings_memo {
    const char *product; /* borrowed label value (interned) or NULL */
    int gpus;
    bool capable;   /* nvidia.com/mig.capable=true: a model outside the
                       table resolves only then */
    char *settings; /* owned; NULL when the layout does not resolve */
};

struct ctx {
    const struct gm_plan_input *in;
    const struct gm_policy *p;
    struct gm_plan *out;
    struct cand *cands;
    size_t n_cands;
    int unavailable;
    /* Nodes this policy does not own (in conflict, owned by another
     * policy, or selected by none since their labels changed) whose switch
     * for this policy is still in flight: the switch goes on (a node is not
     * released mid-way), so it keeps its slot of this policy's budget.
     * Skipped nodes are not counted: their switch stops. */
    int elsewhere_in_flight;
    /* Failed nodes held cordoned (onFailure: Hold, or a rollback that
     * could not finish): out of service until a person acts. */
    int held_failed;
    /* Converged nodes out of service (cordoned by someone else, or not
     * Ready): they count against the budget though no switch holds them;
     * the first one's name, for the message of nodes waiting on them. */
    int idle_unavailable;
    char first_idle_unavailable[254];
    int layout_errors;
    char first_layout_error[1024];
    char first_layout_node[254]; /* whose error that is */
    int config_errors; /* pending nodes whose plugin config cannot load */
    char first_config_error[1100];
    /* The named layout, resolved once: NULL with layout_msg when missing
     * or unusable. */
    const struct gm_mig_layout *layout;
    char layout_what[300];
    char layout_msg[1024];
    struct settings_memo memo[SETTINGS_CACHE];
    size_t n_memo;
    /* Converged vgpu nodes whose HAMi entry differs from their settings,
     * and the first three by name (borrowed), for a message that does
     * not change with the node cache's order. */
    int entries_differ;
    const char *differ[3];
    /* Converged nodes that, for longer than the grace, advertise other GPU
     * resources than they were verified with (gpumode.io/resources): the
     * first three names, and the first node for the notice's detail. */
    int drifted;
    const char *drift[3];
    const struct gm_node *drift_first;
};

static char *xstrdup(const char *s)
{
    return strdup(s ? s : "");
}

__attribute__((format(printf, 7, 8))) static int
add_node(struct gm_plan *out, const char *name, enum gm_node_state st,
         const char *phase, const char *from, const char *to, const char *fmt,
         ...)
{
    char msg[1025];
    va_list ap;
    struct gm_plan_node *n =
        realloc(out->nodes, (out->n_nodes + 1) * sizeof(*out->nodes));

    if (n == NULL)
        return -ENOMEM;
    out->nodes = n;
    n = &out->nodes[out->n_nodes++];
    memset(n, 0, sizeof(*n));
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    n->name = xstrdup(name);
    n->state = st;
    n->phase = xstrdup(phase);
    n->from = xstrdup(from);
    n->to = xstrdup(to);
    n->message = xstrdup(msg);
    if (!n->name || !n->phase || !n->from || !n->to || !n->message)
        return -ENOMEM;
    return 0;
}

static bool unavailable(const struct gm_node *n)
{
    return n->unschedulable || !n->ready;
}

static enum gm_mode node_mode(const struct gm_node *n)
{
    enum gm_mode m = GM_MODE_UNKNOWN;

    if (gm_mode_parse(gm_node_label(n, GM_LABEL_MODE), &m))
        return GM_MODE_UNKNOWN;
    return m;
}

static bool streq(const char *a, const char *b)
{
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

static int gpu_count(const struct gm_node *n)
{
    const char *s = gm_node_label(n, GM_LABEL_GPU_COUNT);
    char *end = NULL;

    if (s == NULL)
        return 0;
    long v = strtol(s, &end, 10);
    if (*end != '\0' || v < 0 || v > 64)
        return 0;
    return (int)v;
}

/* The policy stalls with the layout error of the first node by name, so
 * its message does not change with the node cache's order. */
static void count_layout_error(struct ctx *c, const char *node, const char *msg)
{
    if (c->layout_errors++ == 0 || strcmp(node, c->first_layout_node) < 0) {
        snprintf(c->first_layout_error, sizeof(c->first_layout_error), "%s",
                 msg);
        snprintf(c->first_layout_node, sizeof(c->first_layout_node), "%s",
                 node);
    }
}

static bool mig_capable(const struct gm_node *n)
{
    const char *v = gm_node_label(n, "nvidia.com/mig.capable");
    return v && strcmp(v, "true") == 0;
}

/* Resolves the policy's layout for a node: 0 with *json (caller's),
 * -EINVAL with msg for the user, or -ENOMEM. */
static int resolve_layout(struct ctx *c, const struct gm_node *n, char **json,
                          char *msg, size_t len)
{
    *json = NULL;
    if (c->layout == NULL) {
        snprintf(msg, len, "%s", c->layout_msg);
        return -EINVAL;
    }
    int rc = gm_layout_resolve(c->layout, c->layout_what,
                               gm_node_label(n, GM_LABEL_PRODUCT),
                               mig_capable(n), gpu_count(n), json, msg, len);
    /* Under single, feature discovery counts MIG devices in gpu.count
     * (and gpu.product gains -MIG-<profile>): the GPUs are then the count
     * gpumode verified, or unknown. */
    const char *product = gm_node_label(n, GM_LABEL_PRODUCT);
    int gpus = product && strstr(product, "-MIG-") ? n->ann_gpus : gpu_count(n);
    if (rc == 0 && c->p->spec.mig_strategy == GM_MIG_SINGLE)
        rc = gm_layout_check_single(*json, gpus, c->layout_what, msg, len);
    if (rc) {
        free(*json);
        *json = NULL;
    }
    return rc;
}

/* The settings the node should carry, borrowed from the memo; NULL with
 * *err 0 when they cannot be known (the layout does not resolve: msg says
 * why, or is "" when the memo already knew), or *err -ENOMEM. */
static const char *want_settings(struct ctx *c, const struct gm_node *n,
                                 int *err, char *msg, size_t msg_len)
{
    const char *product = gm_node_label(n, GM_LABEL_PRODUCT);
    int gpus = gpu_count(n);
    bool capable = mig_capable(n);
    char *layout = NULL;
    char *set = NULL;

    *err = 0;
    msg[0] = '\0';
    for (size_t i = 0; i < c->n_memo; i++)
        if (c->memo[i].gpus == gpus && c->memo[i].capable == capable &&
            (c->memo[i].product == product ||
             (product && c->memo[i].product &&
              strcmp(c->memo[i].product, product) == 0)))
            return c->memo[i].settings;
    if (c->p->spec.mode == GM_MODE_MIG) {
        int rc = resolve_layout(c, n, &layout, msg, msg_len);
        if (rc == -ENOMEM) {
            *err = rc;
            return NULL;
        }
    }
    if (c->p->spec.mode != GM_MODE_MIG || layout != NULL) {
        *err = gm_plan_settings(&c->p->spec, layout, &set);
        free(layout);
        if (*err)
            return NULL;
    }
    if (c->n_memo == SETTINGS_CACHE) {
        /* More kinds than the memo holds: forget them all (rare). */
        for (size_t i = 0; i < c->n_memo; i++)
            free(c->memo[i].settings);
        c->n_memo = 0;
    }
    c->memo[c->n_memo].product = product;
    c->memo[c->n_memo].gpus = gpus;
    c->memo[c->n_memo].capable = capable;
    c->memo[c->n_memo].settings = set;
    return c->memo[c->n_memo++].settings;
}

/* Keeps the first three names by name order (borrowed), so a message that
 * names them does not change with the node cache's order. */
static void keep_first(const char **first, const char *name)
{
    const char *carry = name;
    for (size_t i = 0; i < 3 && carry; i++) {
        if (first[i] == NULL || strcmp(carry, first[i]) < 0) {
            const char *t = first[i];
            first[i] = carry;
            carry = t;
        }
    }
}

static void note_entry_differs(struct ctx *c, const char *name)
{
    c->entries_differ++;
    keep_first(c->differ, name);
}

static bool mode_resource(const char *name, const char *vgpu_resource)
{
    /* gpu.shared: full GPUs time-sliced under a renamed resource. */
    return strcmp(name, "nvidia.com/gpu") == 0 ||
           strcmp(name, "nvidia.com/gpu.shared") == 0 ||
           strncmp(name, "nvidia.com/mig-", 15) == 0 ||
           (vgpu_resource != NULL && strcmp(name, vgpu_resource) == 0);
}

static int cmp_quantity(const void *a, const void *b)
{
    const struct gm_quantity *x = *(const struct gm_quantity *const *)a;
    const struct gm_quantity *y = *(const struct gm_quantity *const *)b;
    return strcmp(x->name, y->name);
}

int gm_plan_resources(const struct gm_node *n, const char *vgpu_resource,
                      char *buf, size_t len)
{
    const struct gm_quantity *q[64];
    size_t k = 0, used = 0;

    if (len == 0)
        return -ENOSPC;
    for (size_t i = 0; i < n->n_allocatable; i++) {
        if (n->allocatable[i].value <= 0 ||
            !mode_resource(n->allocatable[i].name, vgpu_resource))
            continue;
        if (k == sizeof(q) / sizeof(q[0]))
            return -ENOSPC;
        q[k++] = &n->allocatable[i];
    }
    if (k > 1)
        qsort(q, k, sizeof(q[0]), cmp_quantity);
    buf[0] = '\0';
    for (size_t i = 0; i < k; i++) {
        int w = snprintf(buf + used, len - used, "%s%s=%lld", i ? "," : "",
                         q[i]->name, (long long)q[i]->value);
        if (w < 0 || (size_t)w >= len - used)
            return -ENOSPC;
        used += (size_t)w;
    }
    return 0;
}

/* A full node's own device plugin config is a person's to change (to
 * time-slice its GPUs, or to stop): the plugin then restarts and offers
 * the same GPUs with other replicas. That is no drift when the node has
 * the GPUs it was verified with (gpumode.io/gpus, and feature discovery
 * counts as many) and offers them as feature discovery, which reads the
 * same config, says it does. A GPU lost is still named, and so is MIG
 * turned on by hand (feature discovery then counts MIG devices). */
static bool own_config_explains(const struct gm_node *n, const char *have)
{
    const char *count = gm_node_label(n, "nvidia.com/gpu.count");
    const char *product = gm_node_label(n, GM_LABEL_PRODUCT);
    const char *renamed = "nvidia.com/gpu";
    char want[96];

    if (n->ann_gpus == 0 || node_mode(n) != GM_MODE_FULL || count == NULL ||
        atoi(count) != n->ann_gpus || (product && strstr(product, "-MIG-")))
        return false;
    int replicas = gm_plugin_config_replicas(n, &renamed);
    snprintf(want, sizeof(want), "%s=%lld", renamed,
             (long long)n->ann_gpus * replicas);
    return strcmp(have, want) == 0;
}

/* In service, and offering other GPU resources than gpumode.io/resources
 * says (or, in full, than its own config explains)? (Not when there is no
 * record, or too many to compare.) */
static bool offers_other(const struct gm_node *n, const char *vgpu_resource)
{
    char have[1024];

    if (n->ann_resources == NULL)
        return false;
    if (n->resources != GM_RES_UNKNOWN)
        return n->resources == GM_RES_OTHER;
    return gm_plan_resources(n, vgpu_resource, have, sizeof(have)) == 0 &&
           strcmp(have, n->ann_resources) != 0 && !own_config_explains(n, have);
}

void gm_plan_mark_resources(struct gm_node *n, const char *vgpu_resource)
{
    n->resources = GM_RES_UNKNOWN;
    n->resources = offers_other(n, vgpu_resource) ? GM_RES_OTHER : GM_RES_SAME;
}

static bool resources_differ(const struct gm_node *n, const char *vgpu_resource)
{
    return !unavailable(n) && offers_other(n, vgpu_resource);
}

void gm_plan_carry_resources_since(const struct gm_node *was,
                                   struct gm_node *now,
                                   const char *vgpu_resource)
{
    if (resources_differ(was, vgpu_resource) &&
        resources_differ(now, vgpu_resource) &&
        strcmp(was->ann_resources, now->ann_resources) == 0)
        now->resources_since = was->resources_since;
}

/* A converged node whose GPU resources are not what it was verified with
 * is named once the difference has lasted the grace; until then the plan
 * asks to be run again when the grace ends. */
static void check_resources(struct ctx *c, const struct gm_node *n)
{
    if (!resources_differ(n, c->in->vgpu_resource))
        return;
    time_t due = n->resources_since + c->in->resources_grace_s;
    if (n->resources_since != 0 && due > c->in->now) {
        if (c->out->recheck_at == 0 || due < c->out->recheck_at)
            c->out->recheck_at = due;
        return;
    }
    c->drifted++;
    keep_first(c->drift, n->name);
    if (c->drift_first == NULL || strcmp(n->name, c->drift_first->name) < 0)
        c->drift_first = n;
}

/* Instances never survive a reboot and Hopper loses MIG mode too: a node
 * verified in mig that booted since has lost its layout. */
static bool layout_lost(const struct gm_node *n)
{
    const char *state = gm_node_label(n, GM_LABEL_STATE);
    return node_mode(n) == GM_MODE_MIG &&
           (state == NULL || strcmp(state, "ready") == 0) &&
           n->ann_boot_id != NULL && n->boot_id != NULL &&
           strcmp(n->ann_boot_id, n->boot_id) != 0;
}

/* 1 converged, 0 not, or -ENOMEM. */
static int settings_converged(struct ctx *c, const struct gm_node *n)
{
    const struct gm_policy *p = c->p;
    const char *state = gm_node_label(n, GM_LABEL_STATE);

    if (node_mode(n) != p->spec.mode)
        return 0;
    if (state != NULL && strcmp(state, "ready") != 0)
        return 0;
    if (p->spec.mode == GM_MODE_MIG && layout_lost(n))
        return 0;
    /* Full mode has no settings: a switch removes the annotation, so one
     * there was put by a person (gpumode.io/settings=unknown) to have the
     * node switched again. */
    if (p->spec.mode == GM_MODE_FULL)
        return n->ann_settings == NULL;
    if (n->ann_settings == NULL)
        return 1;
    if (p->spec.mode == GM_MODE_VGPU &&
        (c->in->hami_config_absent || c->in->hami_config_unreadable))
        return 1; /* nothing a switch could write: see plan.h */
    int err;
    char msg[1024];
    const char *want = want_settings(c, n, &err, msg, sizeof(msg));
    if (err)
        return err;
    if (want == NULL) {
        /* What the policy wants here cannot be known (its layout is gone,
         * or does not fit the node as labelled now). The node stays as it
         * was verified and counts as converged; the policy is Stalled
         * with the reason, so nothing changes until a person fixes it. */
        count_layout_error(c, n->name, msg);
        return 1;
    }
    if (strcmp(want, n->ann_settings) != 0)
        return 0;
    if (p->spec.mode == GM_MODE_VGPU && c->in->hami_entries) {
        const char *entry = gm_map_get(c->in->hami_entries, n->name);
        if (strcmp(entry ? entry : "{}", n->ann_settings) != 0)
            note_entry_differs(c, n->name);
    }
    return 1;
}

static int converged(struct ctx *c, const struct gm_node *n)
{
    int rc = settings_converged(c, n);
    if (rc == 1)
        check_resources(c, n);
    return rc;
}

/* Finds the policy's layout once, so a missing or unusable config is one
 * message that names the ConfigMap rather than one per node. */
static void find_layout(struct ctx *c)
{
    const struct gm_policy_spec *s = &c->p->spec;
    const char *src =
        c->in->layouts_source ? c->in->layouts_source : "the layout ConfigMap";

    if (s->mode != GM_MODE_MIG)
        return;
    if (s->has_mig_layout) {
        c->layout = &s->mig_layout;
        snprintf(c->layout_what, sizeof(c->layout_what), "inline layout");
        return;
    }
    snprintf(c->layout_what, sizeof(c->layout_what), "layout \"%s\"",
             s->mig_config);
    if (c->in->layouts == NULL) {
        snprintf(c->layout_msg, sizeof(c->layout_msg), "%s: %s", c->layout_what,
                 c->in->layouts_error ? c->in->layouts_error
                                      : "the layout ConfigMap is not loaded");
        return;
    }
    const char *why = NULL;
    int rc =
        gm_migparted_lookup(c->in->layouts, s->mig_config, &c->layout, &why);
    if (rc == 0)
        return;
    if (rc == -EINVAL) {
        /* The config is there but gpumode cannot lay it out (the GPU
         * Operator ships some for profiles it does not support): the
         * policy fails as for a missing one, with the config's reason. */
        snprintf(c->layout_msg, sizeof(c->layout_msg), "%s: %s", c->layout_what,
                 why);
        return;
    }
    char names[256] = "";
    size_t off = 0;
    for (size_t i = 0; i < c->in->layouts->n && off < sizeof(names); i++)
        off += (size_t)snprintf(names + off, sizeof(names) - off, "%s%s",
                                i ? ", " : "", c->in->layouts->names[i]);
    snprintf(c->layout_msg, sizeof(c->layout_msg),
             "%s is not in %s (mig-configs has: %s)", c->layout_what, src,
             names);
}

static int note_layout_error(struct ctx *c, const struct gm_node *n,
                             enum gm_mode from, const char *msg)
{
    count_layout_error(c, n->name, msg);
    return add_node(c->out, n->name, GM_NODE_PENDING, "Pending",
                    gm_mode_name(from), gm_mode_name(c->p->spec.mode), "%s",
                    msg);
}

static const char *strategy_name(enum gm_mig_strategy s)
{
    return s == GM_MIG_SINGLE ? "single" : "mixed";
}

/* The device plugin config the node's switch would select, checked when
 * the configs are known: 0, or -EINVAL with msg. */
static int check_plugin_config(struct ctx *c, const struct gm_node *n,
                               char *msg, size_t len)
{
    const struct gm_policy_spec *s = &c->p->spec;
    if (c->in->plugin_configs == NULL)
        return 0;
    const char *strategy =
        s->mode == GM_MODE_MIG ? strategy_name(s->mig_strategy) : NULL;
    char buf[256];
    const char *key = gm_plugin_config_key(n, c->in->plugin_config_label,
                                           s->mode, strategy, buf, sizeof(buf));
    return gm_plugin_config_check(c->in->plugin_configs,
                                  c->in->plugin_configs_source, key, strategy,
                                  msg, len);
}

/* A retry mark counts only on a node whose switch failed: on any other
 * node it is no retry a person asked for, and maxFailures holds it back
 * like every new switch. A node with a record comes to classify_pending
 * only when the record is Failed. */
static bool failed_before(const struct gm_node *n)
{
    return n->ann_switch != NULL ||
           streq(gm_node_label(n, GM_LABEL_STATE), "failed");
}

static int classify_pending(struct ctx *c, const struct gm_node *n)
{
    enum gm_mode from = node_mode(n);
    char *layout = NULL;
    char *settings = NULL;
    int err;

    c->out->summary.pending++;
    if (c->p->spec.mode == GM_MODE_MIG) {
        char msg[1024];
        err = resolve_layout(c, n, &layout, msg, sizeof(msg));
        if (err == -EINVAL)
            return note_layout_error(c, n, from, msg);
        if (err)
            return err;
    }
    char why[1024];
    if (check_plugin_config(c, n, why, sizeof(why))) {
        free(layout);
        if (c->config_errors++ == 0)
            snprintf(c->first_config_error, sizeof(c->first_config_error),
                     "node %s: %s", n->name, why);
        return add_node(c->out, n->name, GM_NODE_PENDING, "Pending",
                        gm_mode_name(from), gm_mode_name(c->p->spec.mode), "%s",
                        why);
    }
    if (c->p->spec.mode == GM_MODE_VGPU && c->in->hami_config_unreadable)
        /* The policy stalls with the reason. */
        return add_node(c->out, n->name, GM_NODE_PENDING, "Pending",
                        gm_mode_name(from), gm_mode_name(c->p->spec.mode),
                        "waiting until the controller may read HAMi's "
                        "ConfigMap");
    if (!n->ready) {
        free(layout);
        return add_node(c->out, n->name, GM_NODE_PENDING, "Pending",
                        gm_mode_name(from), gm_mode_name(c->p->spec.mode),
                        "node is NotReady");
    }
    err = gm_plan_settings(&c->p->spec, layout, &settings);
    struct cand *cs =
        err ? NULL : realloc(c->cands, (c->n_cands + 1) * sizeof(*cs));
    if (cs == NULL) {
        free(layout);
        free(settings);
        return -ENOMEM;
    }
    c->cands = cs;
    c->cands[c->n_cands].node = n;
    c->cands[c->n_cands].from = from;
    c->cands[c->n_cands].layout = layout;
    c->cands[c->n_cands].settings = settings;
    c->cands[c->n_cands].repair = c->p->spec.mode == GM_MODE_MIG &&
                                  n->ann_switch == NULL && layout_lost(n);
    c->cands[c->n_cands].retry = n->ann_retry != NULL && failed_before(n);
    c->cands[c->n_cands].entry = c->out->n_nodes;
    c->n_cands++;
    /* The message is filled in once the budget is known. */
    return add_node(c->out, n->name, GM_NODE_PENDING, "Pending",
                    gm_mode_name(from), gm_mode_name(c->p->spec.mode), "%s",
                    "");
}

static int classify(struct ctx *c, const struct gm_node *n)
{
    const struct gm_policy *p = c->p;
    struct gm_plan *out = c->out;

    out->summary.matched++;
    if (n->ann_switch != NULL) {
        struct sw s;
        parse_switch(n->ann_switch, &s);
        /* A switch that failed keeps its record (so a retry resumes from
         * it); it counts as failed until a person asks for the retry. */
        if (strcmp(s.phase, "Failed") == 0 && n->ann_retry == NULL) {
            out->summary.failed++;
            /* Held (onFailure: Hold) it stays cordoned: unavailable, as
             * maxUnavailable counts every node out of service. */
            if (unavailable(n)) {
                c->unavailable++;
                c->held_failed++;
            }
            return add_node(out, n->name, GM_NODE_FAILED, "Failed",
                            s.from[0] ? s.from : gm_mode_name(node_mode(n)),
                            s.to[0] ? s.to : gm_mode_name(p->spec.mode),
                            "%s%s%s; annotate the node gpumode.io/retry to "
                            "try again",
                            s.reason, s.reason[0] ? ": " : "", s.message);
        }
        if (strcmp(s.phase, "Failed") == 0) {
            /* A person asked to retry a held node: it starts again like
             * any other switch, aimed at this policy's target as it is now
             * and under its pause, window and budget (a node still
             * cordoned takes no new slot). Its hardware may be anywhere
             * between the two modes, so it is never taken as converged. */
            if (unavailable(n))
                c->unavailable++;
            return classify_pending(c, n);
        }
        out->summary.switching++;
        if (s.policy[0] != '\0' && strcmp(s.policy, p->name) != 0 &&
            s.message[0] == '\0')
            snprintf(s.message, sizeof(s.message),
                     "a switch for policy %s is in flight", s.policy);
        int err = add_node(
            out, n->name, GM_NODE_SWITCHING, s.phase[0] ? s.phase : "Switching",
            s.from[0] ? s.from : gm_mode_name(node_mode(n)),
            s.to[0] ? s.to : gm_mode_name(p->spec.mode), "%s", s.message);
        if (err)
            return err;
        struct gm_plan_node *e = &out->nodes[out->n_nodes - 1];
        e->attempt = s.attempt;
        if (s.since[0] != '\0') {
            e->since = strdup(s.since);
            if (e->since == NULL)
                return -ENOMEM;
        }
        return 0;
    }
    if (unavailable(n))
        c->unavailable++;
    if (streq(gm_node_label(n, GM_LABEL_STATE), "failed") &&
        n->ann_retry == NULL) {
        out->summary.failed++;
        return add_node(out, n->name, GM_NODE_FAILED, "Failed",
                        gm_mode_name(node_mode(n)), gm_mode_name(p->spec.mode),
                        "switch failed; annotate the node gpumode.io/retry "
                        "to try again");
    }
    int conv = converged(c, n);
    if (conv < 0)
        return conv;
    if (conv) {
        out->summary.converged++;
        if (unavailable(n) && (c->idle_unavailable++ == 0 ||
                               strcmp(n->name, c->first_idle_unavailable) < 0))
            snprintf(c->first_idle_unavailable,
                     sizeof(c->first_idle_unavailable), "%s", n->name);
        return 0;
    }
    return classify_pending(c, n);
}

static int add_conflict(struct ctx *c, const struct gm_node *n,
                        const struct gm_assignment *a)
{
    char others[256] = "";
    size_t off = 0, listed = 0;
    size_t shown =
        a->n_tied < GM_ASSIGN_MAX_TIED ? a->n_tied : GM_ASSIGN_MAX_TIED;

    for (size_t i = 0; i < shown && off < sizeof(others); i++) {
        if (a->tied[i] == c->p)
            continue;
        off += (size_t)snprintf(others + off, sizeof(others) - off, "%s%s",
                                off ? ", " : "", a->tied[i]->name);
        listed++;
    }
    /* a->tied keeps the first few; this policy is one of the n_tied. */
    if (a->n_tied - 1 > listed && off < sizeof(others))
        snprintf(others + off, sizeof(others) - off, " and %zu more",
                 a->n_tied - 1 - listed);
    c->out->summary.conflicted++;
    return add_node(c->out, n->name, GM_NODE_CONFLICT, "Conflict",
                    gm_mode_name(node_mode(n)), gm_mode_name(c->p->spec.mode),
                    "also selected by %s with the same priority %d; neither "
                    "acts on this node",
                    others, c->p->spec.priority);
}

/* This policy is one of those tied for n. a->tied keeps only the first
 * GM_ASSIGN_MAX_TIED: the rest are known by their selector and priority. */
static bool tied(const struct ctx *c, const struct gm_node *n,
                 const struct gm_assignment *a)
{
    return c->p->spec.priority == a->tied[0]->spec.priority &&
           gm_selector_matches(&c->p->spec.selector, n);
}

/* n has a switch for this policy that has not failed. */
static bool own_switch_in_flight(const struct ctx *c, const struct gm_node *n)
{
    struct sw s;
    if (n->ann_switch == NULL)
        return false;
    parse_switch(n->ann_switch, &s);
    return strcmp(s.phase, "Failed") != 0 && strcmp(s.policy, c->p->name) == 0;
}

static int cmp_cand(const void *a, const void *b)
{
    const struct cand *x = a;
    const struct cand *y = b;

    if (x->repair != y->repair)
        return x->repair ? -1 : 1;
    return strcmp(x->node->name, y->node->name);
}

static int cmp_node(const void *a, const void *b)
{
    const struct gm_plan_node *x = a;
    const struct gm_plan_node *y = b;

    return strcmp(x->name, y->name);
}

static void format_utc(time_t t, char *buf, size_t len)
{
    struct tm tm;

    if (gmtime_r(&t, &tm) == NULL)
        snprintf(buf, len, "?");
    else
        strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int set_message(struct gm_plan_node *e, const char *msg)
{
    char *m = strdup(msg);

    if (m == NULL)
        return -ENOMEM;
    free(e->message);
    e->message = m;
    return 0;
}

static int set_stall(struct gm_plan *out, const char *reason, const char *msg)
{
    if (out->stall_reason != NULL)
        return 0; /* the first reason is the one to fix first */
    out->stall_reason = reason;
    out->stall_message = strdup(msg);
    return out->stall_message ? 0 : -ENOMEM;
}

/* Adds msg to a stall already set for another reason: other nodes wait
 * for something else too, and fixing only the first would not free them.
 * 0 or -ENOMEM. */
static int append_stall(struct gm_plan *out, const char *msg)
{
    size_t have = strlen(out->stall_message), add = strlen(msg);
    static const char sep[] = "; also ";
    char *m = realloc(out->stall_message, have + sizeof(sep) - 1 + add + 1);
    if (m == NULL)
        return -ENOMEM;
    memcpy(m + have, sep, sizeof(sep) - 1);
    memcpy(m + have + sizeof(sep) - 1, msg, add + 1);
    out->stall_message = m;
    return 0;
}

/* After a notice's first name (keep_first's first[0]): the other two, and
 * "..." when there are more than three of n. 0 or the buffer's error. */
static int append_more_names(struct gm_buf *b, const char *const *first, int n,
                             const char *sep)
{
    int err = 0;
    for (size_t i = 1; i < 3 && !err && first[i]; i++)
        err = gm_buf_appendf(b, "%s%s", sep, first[i]);
    if (!err && n > 3)
        err = gm_buf_appendf(b, "%s...", sep);
    return err;
}

/* The notice for converged vgpu nodes whose HAMi entry differs: what to
 * do first, then the first names (never cut). 0 or -ENOMEM. */
static int notice_entries_differ(struct ctx *c, struct gm_plan *out)
{
    int n = c->entries_differ;
    bool one = n == 1;
    const char *src = c->in->hami_config_source ? c->in->hami_config_source
                                                : "HAMi's per-node ConfigMap";
    struct gm_buf b;
    int err;

    gm_buf_init(&b, 4096);
    err = gm_buf_appendf(&b,
                         "%d node%s HAMi entr%s in %s differ%s from what %s "
                         "verified with (HAMi takes the entry when the plugin "
                         "restarts; annotating a node "
                         "gpumode.io/settings=unknown switches it again): %s",
                         n, one ? "'s" : "s'", one ? "y" : "ies", src,
                         one ? "s" : "", one ? "it was" : "they were",
                         c->differ[0]);
    if (!err)
        err = append_more_names(&b, c->differ, n, ", ");
    out->notice = err ? NULL : gm_buf_steal(&b);
    gm_buf_free(&b);
    return out->notice ? 0 : -ENOMEM;
}

/* Under the single MIG strategy, GPU feature discovery describes a MIG
 * node's devices in the labels that describe its GPUs elsewhere:
 * nvidia.com/gpu.product gains "-MIG-<profile>" and gpu.count and
 * gpu.memory count and size MIG devices. A policy selecting on them loses
 * its nodes as it switches them: they stay in MIG with no policy to bring
 * them back. The notice says so; the selector may still be meant (an In
 * that lists the MIG names too), so nothing stalls. 0 or -ENOMEM. */
static int notice_single_selector(const struct gm_policy_spec *spec,
                                  struct gm_plan *out)
{
    static const char *const rewritten[] = {
        GM_LABEL_PRODUCT, GM_LABEL_GPU_COUNT, "nvidia.com/gpu.memory"};
    const char *key = NULL;
    char msg[640];

    /* Only In (matchLabels) stops matching: Exists and DoesNotExist look
     * at the key, which stays, and NotIn matches more, not less. */
    for (size_t i = 0; i < spec->selector.n_reqs && key == NULL; i++)
        for (size_t j = 0; j < sizeof(rewritten) / sizeof(rewritten[0]); j++)
            if (spec->selector.reqs[i].op == GM_SEL_IN &&
                strcmp(spec->selector.reqs[i].key, rewritten[j]) == 0)
                key = rewritten[j];
    if (key == NULL)
        return 0;
    snprintf(msg, sizeof(msg),
             "spec.nodeSelector uses %s, which GPU feature discovery "
             "rewrites on nodes in MIG under the single strategy "
             "(gpu.product gains -MIG-<profile>, gpu.count and gpu.memory "
             "describe MIG devices): switched nodes may stop matching and "
             "stay in MIG with no policy; select on a label of your own",
             key);
    out->notice = strdup(msg);
    return out->notice ? 0 : -ENOMEM;
}

/* Why a converged node's NVIDIA device plugin may offer other resources:
 * the config its label selects now, when the configs are known and the
 * plugin cannot load it (a person relabelled the node, or edited the
 * ConfigMap; the plugin then crash-loops and offers nothing: given only
 * when the node offers none), or in mig one that sets another strategy.
 * 0, or -EINVAL with msg. An unreadable or absent ConfigMap says nothing
 * about the one node, so it is not given as the cause. */
static int drift_config_problem(const struct ctx *c, const struct gm_node *n,
                                bool offers_none, char *msg, size_t len)
{
    const struct gm_plugin_configs *pc = c->in->plugin_configs;
    enum gm_mode m = node_mode(n);
    if (pc == NULL || !pc->exists || pc->unreadable ||
        c->in->plugin_config_label == NULL ||
        (m != GM_MODE_FULL && m != GM_MODE_MIG))
        return 0;
    const char *src = c->in->plugin_configs_source;
    const char *key = gm_node_label(n, c->in->plugin_config_label);
    if (gm_plugin_config_check(pc, src, key, NULL, msg, len))
        return offers_none ? -EINVAL : 0;
    if (m != GM_MODE_MIG)
        return 0;
    return gm_plugin_config_check(
        pc, src, key, strategy_name(c->p->spec.mig_strategy), msg, len);
}

/* The notice for converged nodes whose GPU resources differ from what
 * they were verified with: what happened, what to do, then the first
 * names, the first with both lists and, when it is known, the cause. 0 or
 * -ENOMEM. */
static int notice_drift(struct ctx *c, struct gm_plan *out)
{
    int n = c->drifted;
    bool one = n == 1;
    char have[1024];
    struct gm_buf b;
    int err;

    if (gm_plan_resources(c->drift_first, c->in->vgpu_resource, have,
                          sizeof(have)) < 0)
        snprintf(have, sizeof(have), "(too many to list)");
    gm_buf_init(&b, 4096);
    err = gm_buf_appendf(
        &b,
        "%d node%s other GPU resources than %s verified with (the MIG "
        "layout, the device plugin or a GPU changed since; annotating a "
        "node gpumode.io/settings=unknown switches it again): %s offers %s, "
        "verified with %s",
        n, one ? " advertises" : "s advertise", one ? "it was" : "they were",
        c->drift[0], have[0] ? have : "none",
        c->drift_first->ann_resources[0] ? c->drift_first->ann_resources
                                         : "none");
    char why[1024];
    if (!err && drift_config_problem(c, c->drift_first, have[0] == '\0', why,
                                     sizeof(why)))
        err = gm_buf_appendf(&b, " (%s)", why);
    if (!err)
        err = append_more_names(&b, c->drift, n, "; ");
    out->drift_notice = err ? NULL : gm_buf_steal(&b);
    gm_buf_free(&b);
    return out->drift_notice ? 0 : -ENOMEM;
}

/* Decides the starts among the candidates and says why the others wait. */
static int schedule(struct ctx *c)
{
    const struct gm_policy_spec *s = &c->p->spec;
    struct gm_plan *out = c->out;
    struct gm_budget_input bi = {
        .matched = out->summary.matched,
        .unavailable = c->unavailable,
        .in_flight = out->summary.switching + c->elsewhere_in_flight,
        .failed = out->summary.failed,
    };
    char why[256];
    bool window_ok = true;
    int err;

    gm_budget_compute(s, &bi, &out->budget);
    out->window = -1;
    if (s->has_window) {
        int w = gm_window_open(&s->window, c->in->now);
        if (w < 0) {
            snprintf(why, sizeof(why),
                     "spec.rollout.window.timeZone: unknown time zone \"%s\"",
                     s->window.time_zone);
            err = set_stall(out, "InvalidTimeZone", why);
            if (err)
                return err;
            window_ok = false;
        } else {
            out->window = w;
            window_ok = w == 1;
        }
    }
    if (out->budget.stalled) {
        snprintf(why, sizeof(why),
                 "%d failed nodes reached spec.rollout.maxFailures (%d); "
                 "retry or fix them to continue",
                 out->summary.failed, s->max_failures);
        err = set_stall(out, "MaxFailuresReached", why);
        if (err)
            return err;
    }
    if (out->window == 0 && c->n_cands > 0) {
        time_t t;
        if (gm_window_next_open(&s->window, c->in->now, &t) == 0)
            out->requeue_at = t;
    }

    if (c->n_cands > 1)
        qsort(c->cands, c->n_cands, sizeof(*c->cands), cmp_cand);
    int slots = out->budget.slots;
    int used = out->budget.used; /* including the starts made here */
    bool waits_for_budget = false;
    /* maxFailures leaves no slot to new switches; the budget still bounds
     * the retries a person asked for, which alone may start. */
    if (out->budget.stalled && !out->budget.paused)
        slots = out->budget.limit > used ? out->budget.limit - used : 0;
    for (size_t i = 0; i < c->n_cands; i++) {
        struct cand *k = &c->cands[i];
        struct gm_plan_node *e = &out->nodes[k->entry];
        bool free_start = unavailable(k->node);
        if (out->budget.paused) {
            snprintf(why, sizeof(why), "rollout paused");
        } else if (out->budget.stalled && !k->retry) {
            snprintf(why, sizeof(why), "rollout stopped: maxFailures reached");
        } else if (!window_ok && out->window != 0) {
            snprintf(why, sizeof(why),
                     "rollout window has an unknown "
                     "time zone");
        } else if (!window_ok && !k->repair) {
            char at[32];
            format_utc(out->requeue_at, at, sizeof(at));
            snprintf(why, sizeof(why),
                     "waiting for the rollout window (opens %s)", at);
        } else if (!free_start && slots <= 0) {
            /* Name a node that holds the budget without a switch: nothing
             * of gpumode's will free its slot. */
            char idle[180] = ""; /* a long node name is cut to fit why */
            if (c->idle_unavailable == 1)
                snprintf(idle, sizeof(idle),
                         " (%.100s, converged, is cordoned or not Ready)",
                         c->first_idle_unavailable);
            else if (c->idle_unavailable > 1)
                snprintf(idle, sizeof(idle),
                         " (%.100s and %d other converged nodes are cordoned "
                         "or not Ready)",
                         c->first_idle_unavailable, c->idle_unavailable - 1);
            snprintf(why, sizeof(why),
                     "waiting for rollout budget: %d of %d nodes "
                     "unavailable%s",
                     used, out->budget.limit, idle);
            waits_for_budget = true;
        } else {
            if (!free_start) {
                slots--;
                used++;
            }
            struct gm_plan_start *st = realloc(
                out->starts, (out->n_starts + 1) * sizeof(*out->starts));
            if (st == NULL)
                return -ENOMEM;
            out->starts = st;
            st = &out->starts[out->n_starts++];
            st->node = k->node;
            st->from = k->from;
            st->to = s->mode;
            st->layout = k->layout;
            st->settings = k->settings;
            k->layout = NULL;
            k->settings = NULL;
            out->summary.pending--;
            out->summary.switching++;
            e->state = GM_NODE_SWITCHING;
            free(e->phase);
            e->phase = strdup("Starting");
            if (e->phase == NULL)
                return -ENOMEM;
            snprintf(why, sizeof(why), "%s",
                     k->repair ? "switch starting: a reboot erased the MIG "
                                 "layout"
                               : "switch starting");
        }
        err = set_message(e, why);
        if (err)
            return err;
    }
    /* Nothing moves and nothing will until a person acts: the slots the
     * rollout waits for are held by failed nodes left cordoned. Stalled,
     * so tools that wait on the policy stop waiting. */
    if (waits_for_budget && out->n_starts == 0 && out->stall_reason == NULL &&
        out->summary.switching + c->elsewhere_in_flight == 0 &&
        c->held_failed > 0 && used - c->held_failed < out->budget.limit) {
        snprintf(why, sizeof(why),
                 "%d failed node%s held cordoned use%s the rollout budget "
                 "(spec.rollout.maxUnavailable %d): retry %s, or uncordon "
                 "%s, to continue",
                 c->held_failed, c->held_failed == 1 ? "" : "s",
                 c->held_failed == 1 ? "s" : "", out->budget.limit,
                 c->held_failed == 1 ? "it" : "them",
                 c->held_failed == 1 ? "it" : "them");
        err = set_stall(out, "FailedNodesHoldBudget", why);
        if (err)
            return err;
    }
    return 0;
}

int gm_plan_policy(const struct gm_plan_input *in, struct gm_plan *out)
{
    struct ctx c;
    int err = 0;

    memset(out, 0, sizeof(*out));
    if (in->policy == NULL || !in->policy->valid)
        return -EINVAL;
    memset(&c, 0, sizeof(c));
    c.in = in;
    c.p = in->policy;
    c.out = out;
    find_layout(&c);

    for (size_t i = 0; i < in->n_nodes && !err; i++) {
        struct gm_assignment a;
        gm_assign_node(in->nodes[i], in->policies, in->n_policies, &a);
        if (a.kind == GM_ASSIGN_OWNED && a.owner == c.p) {
            err = classify(&c, in->nodes[i]);
            continue;
        }
        /* A node labelled gpumode.io/skip=true mid-switch is a person's to
         * finish (the switch stops there): it holds no slot. */
        if (a.kind != GM_ASSIGN_SKIPPED &&
            own_switch_in_flight(&c, in->nodes[i]))
            c.elsewhere_in_flight++;
        if (a.kind == GM_ASSIGN_CONFLICT && tied(&c, in->nodes[i], &a))
            err = add_conflict(&c, in->nodes[i], &a);
    }
    out->in_flight_elsewhere = c.elsewhere_in_flight;
    if (!err && c.layout_errors > 0) {
        char msg[1100];
        snprintf(msg, sizeof(msg), "%s%s", c.first_layout_error,
                 c.layout_errors > 1 ? " (and other nodes)" : "");
        err = set_stall(out, "InvalidLayout", msg);
    }
    if (!err && c.config_errors > 0) {
        char msg[1200];
        snprintf(msg, sizeof(msg), "%s%s", c.first_config_error,
                 c.config_errors > 1 ? " (and other nodes)" : "");
        err = out->stall_reason ? append_stall(out, msg)
                                : set_stall(out, "InvalidPluginConfig", msg);
    }
    const struct gm_policy_spec *spec = &c.p->spec;
    if (!err && spec->mode == GM_MODE_VGPU && in->hami_config_unreadable) {
        /* A switch could neither write the node's entry nor know HAMi's
         * defaults apply: it would drain, then wait in StartingClients
         * until clientsTimeoutSeconds and roll back. */
        char msg[1100];
        snprintf(msg, sizeof(msg), "%s: %s",
                 in->hami_config_source ? in->hami_config_source
                                        : "HAMi's per-node ConfigMap",
                 in->hami_config_unreadable);
        err = out->stall_reason ? append_stall(out, msg)
                                : set_stall(out, "HAMiConfigUnreadable", msg);
    }
    if (!err && spec->mode == GM_MODE_VGPU && spec->has_split_count &&
        in->hami_config_absent) {
        char msg[600];
        snprintf(msg, sizeof(msg),
                 "spec.vgpu.splitCount %d is not written: %s does not exist "
                 "(hamiConfigMap in the controller's config names it), so "
                 "HAMi runs with its defaults",
                 spec->split_count,
                 in->hami_config_source ? in->hami_config_source
                                        : "HAMi's per-node ConfigMap");
        out->notice = strdup(msg);
        if (out->notice == NULL)
            err = -ENOMEM;
    }
    if (!err && c.entries_differ > 0 && out->notice == NULL)
        err = notice_entries_differ(&c, out);
    if (!err && out->notice == NULL && spec->mode == GM_MODE_MIG &&
        spec->mig_strategy == GM_MIG_SINGLE)
        err = notice_single_selector(spec, out);
    out->drifted = c.drifted;
    if (!err && c.drifted > 0)
        err = notice_drift(&c, out);
    if (!err)
        err = schedule(&c);
    if (!err && out->summary.conflicted > 0) {
        char msg[128];
        snprintf(msg, sizeof(msg),
                 "%d nodes are also selected by another policy with the "
                 "same priority",
                 out->summary.conflicted);
        err = set_stall(out, "PolicyConflict", msg);
    }
    for (size_t i = 0; i < c.n_cands; i++) {
        free(c.cands[i].layout);
        free(c.cands[i].settings);
    }
    free(c.cands);
    for (size_t i = 0; i < c.n_memo; i++)
        free(c.memo[i].settings);
    if (err) {
        gm_plan_free(out);
        return err;
    }
    if (out->n_nodes > 1)
        qsort(out->nodes, out->n_nodes, sizeof(*out->nodes), cmp_node);
    return 0;
}

void gm_plan_free(struct gm_plan *p)
{
    for (size_t i = 0; i < p->n_starts; i++) {
        free(p->starts[i].layout);
        free(p->starts[i].settings);
    }
    free(p->starts);
    for (size_t i = 0; i < p->n_nodes; i++) {
        free(p->nodes[i].name);
        free(p->nodes[i].phase);
        free(p->nodes[i].from);
        free(p->nodes[i].to);
        free(p->nodes[i].since);
        free(p->nodes[i].message);
    }
    free(p->nodes);
    free(p->stall_message);
    free(p->notice);
    free(p->drift_notice);
    memset(p, 0, sizeof(*p));
}

int gm_plan_settings(const struct gm_policy_spec *s, const char *layout,
                     char **out)
{
    char buf[160];
    int n;

    *out = NULL;
    switch (s->mode) {
    case GM_MODE_MIG:
        n = snprintf(NULL, 0, "{\"strategy\":\"%s\",\"layout\":%s}",
                     s->mig_strategy == GM_MIG_SINGLE ? "single" : "mixed",
                     layout ? layout : "null");
        *out = malloc((size_t)n + 1);
        if (*out == NULL)
            return -ENOMEM;
        snprintf(*out, (size_t)n + 1, "{\"strategy\":\"%s\",\"layout\":%s}",
                 s->mig_strategy == GM_MIG_SINGLE ? "single" : "mixed",
                 layout ? layout : "null");
        return 0;
    case GM_MODE_VGPU:
        /* The defaults are the ones the switch writes to HAMi's config
         * (app/policyopts.c): an entry exists only with a splitCount. */
        gm_plan_vgpu_settings(s->has_split_count, s->split_count,
                              s->has_memory_scaling ? s->memory_scaling : 1.0,
                              s->has_core_scaling ? s->core_scaling : 1.0, buf,
                              sizeof(buf));
        *out = strdup(buf);
        return *out ? 0 : -ENOMEM;
    default:
        return 0;
    }
}

int gm_plan_vgpu_settings(bool split, int count, double memory, double core,
                          char *buf, size_t len)
{
    if (!split)
        return snprintf(buf, len, "{}");
    return snprintf(buf, len,
                    "{\"splitCount\":%d,\"memoryScaling\":%.17g,"
                    "\"coreScaling\":%.17g}",
                    count, memory, core);
}

int gm_plan_progress(const struct gm_plan *p, enum gm_mode mode, char *buf,
                     size_t len)
{
    const struct gm_summary *s = &p->summary;
    int n = snprintf(buf, len, "%d/%d nodes in %s", s->converged, s->matched,
                     gm_mode_name(mode));
    const struct {
        int count;
        const char *what;
    } parts[] = {
        {s->switching, "switching"},
        {s->pending, "pending"},
        {s->failed, "failed"},
        {s->conflicted, "in conflict"},
        {p->in_flight_elsewhere,
         "still switching on nodes the policy no longer governs"},
    };
    const char *sep = "; ";

    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        if (parts[i].count == 0 || n < 0 || (size_t)n >= len)
            continue;
        n += snprintf(buf + n, len - (size_t)n, "%s%d %s", sep, parts[i].count,
                      parts[i].what);
        sep = ", ";
    }
    return n < 0 ? -EINVAL : 0;
}
