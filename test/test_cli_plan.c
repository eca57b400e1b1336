/* kubectl gpumode plan: batches, pods, PodDisruptionBudgets, conflicts and
 * file errors, on a canned fleet (test/fixtures/cli). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/dryrun.h"
#include "common/yaml.h"
#include "support/testutil.h"

#define NOW 1715034600 /* Mon 2024-05-06 22:30Z */

struct fleet {
    struct gm_node *nodes[16];
    size_t n;
    struct gm_pod *pods[16];
    size_t n_pods;
    json_object *pdbs;
};

static json_object *load(const char *path)
{
    char *text = tu_read_file(path, NULL);
    json_object *o = json_tokener_parse(text);
    free(text);
    assert_non_null(o);
    return o;
}

/* When set, fleet_load_rec's switching node also has this label, =x. */
static const char *switching_label;

/* The fleet: nodes a..e in pool a (full), x elsewhere. switching names a
 * node that carries the switch record rec (gpumode.io/switch), cordoned,
 * or NULL. */
static void fleet_load_rec(struct fleet *f, const char *switching,
                           const char *rec)
{
    json_object *nodes = load("test/fixtures/cli/fleet.json");
    json_object *pods = load("test/fixtures/cli/pods.json");

    memset(f, 0, sizeof(*f));
    for (size_t i = 0; i < json_object_array_length(nodes); i++) {
        json_object *n = json_object_array_get_idx(nodes, i);
        json_object *md = json_object_object_get(n, "metadata");
        const char *name =
            json_object_get_string(json_object_object_get(md, "name"));
        if (switching && strcmp(name, switching) == 0) {
            if (switching_label)
                json_object_object_add(json_object_object_get(md, "labels"),
                                       switching_label,
                                       json_object_new_string("x"));
            json_object *ann = json_object_new_object();
            json_object_object_add(ann, "gpumode.io/switch",
                                   json_object_new_string(rec));
            json_object_object_add(md, "annotations", ann);
            /* Draining: gpumode cordoned it. */
            json_object *spec = json_object_new_object();
            json_object_object_add(spec, "unschedulable",
                                   json_object_new_boolean(1));
            json_object_object_add(n, "spec", spec);
        }
        assert_int_equal(gm_node_from_json(n, &f->nodes[f->n++]), 0);
    }
    for (size_t i = 0; i < json_object_array_length(pods); i++)
        assert_int_equal(gm_pod_from_json(json_object_array_get_idx(pods, i),
                                          &f->pods[f->n_pods++]),
                         0);
    f->pdbs = load("test/fixtures/cli/pdbs.json");
    json_object_put(nodes);
    json_object_put(pods);
}

/* fleet_load_rec with a switch of policy shared to vgpu, draining. */
static void fleet_load(struct fleet *f, const char *switching)
{
    fleet_load_rec(f, switching,
                   "{\"policy\":\"shared\",\"from\":\"full\",\"to\":"
                   "\"vgpu\",\"phase\":\"Draining\",\"attempt\":1,"
                   "\"cordoned\":true}");
}

static void fleet_free(struct fleet *f)
{
    for (size_t i = 0; i < f->n; i++)
        gm_node_free(f->nodes[i]);
    for (size_t i = 0; i < f->n_pods; i++)
        gm_pod_free(f->pods[i]);
    json_object_put(f->pdbs);
}

static struct gm_policy *policy_file(const char *path, int expect)
{
    json_object *o = NULL;
    struct gm_policy *p = NULL;
    char err[256];

    assert_int_equal(gm_yaml_parse_file(path, &o, err, sizeof(err)), 0);
    assert_int_equal(gm_policy_decode(o, &p), expect);
    json_object_put(o);
    assert_non_null(p);
    return p;
}

static struct gm_policy *policy_json(const char *name, const char *spec)
{
    char json[1024];
    struct gm_policy *p = NULL;

    snprintf(json, sizeof(json), "{\"metadata\":{\"name\":\"%s\"},\"spec\":%s}",
             name, spec);
    json_object *o = json_tokener_parse(json);
    assert_non_null(o);
    assert_int_equal(gm_policy_decode(o, &p), 0);
    json_object_put(o);
    return p;
}

/* What run_plan says of HAMi's ConfigMap: NULL present, else its name. */
static const char *hami_absent;

/* Plans p against the policies in the cluster, existing[0..n). */
static void run_plan_among(struct fleet *f, const struct gm_policy *p,
                           const struct gm_policy *const *existing, size_t n,
                           struct gm_dry_run *out)
{
    struct gm_dry_input in = {
        .policy = p,
        .existing = existing,
        .n_existing = n,
        .nodes = (const struct gm_node *const *)f->nodes,
        .n_nodes = f->n,
        .layouts_source = "ConfigMap gpu-operator/default-mig-parted-config",
        .layouts_error = "ConfigMap gpu-operator/default-mig-parted-config: "
                         "not found",
        .hami_config_absent = hami_absent,
        .now = NOW,
    };
    assert_int_equal(gm_dry_run_plan(&in, out), 0);
}

static void run_plan(struct fleet *f, const struct gm_policy *p,
                     const struct gm_policy *other, struct gm_dry_run *out)
{
    const struct gm_policy *existing[1] = {other};
    run_plan_among(f, p, existing, other ? 1 : 0, out);
}

/* "a,b|c,d|e": the batches, as the text output lists them. */
static void batches(const struct gm_dry_run *r, char *buf, size_t len)
{
    size_t off = 0;

    buf[0] = '\0';
    for (int b = 1; b <= r->n_batches; b++) {
        const char *sep = b > 1 ? "|" : "";
        for (size_t i = 0; i < r->n_nodes; i++) {
            if (r->nodes[i].batch != b)
                continue;
            off += (size_t)snprintf(buf + off, len - off, "%s%s", sep,
                                    r->nodes[i].name);
            sep = ",";
        }
    }
}

static const struct gm_dry_node *node(const struct gm_dry_run *r,
                                      const char *name)
{
    for (size_t i = 0; i < r->n_nodes; i++)
        if (strcmp(r->nodes[i].name, name) == 0)
            return &r->nodes[i];
    return NULL;
}

static void test_batches_by_count(void **state)
{
    struct fleet f;
    struct gm_dry_run r;
    char b[128];
    (void)state;

    fleet_load(&f, NULL);
    struct gm_policy *p = policy_file("test/fixtures/cli/policy-vgpu.yaml", 0);
    run_plan(&f, p, NULL, &r);
    batches(&r, b, sizeof(b));
    assert_string_equal(b, "a,b|c,d|e");
    assert_int_equal(r.matched, 5);
    assert_int_equal(r.limit, 2);
    assert_int_equal(r.n_nodes, 5); /* x is not selected */
    assert_null(node(&r, "x"));
    assert_int_equal(r.n_errors, 0);

    struct gm_buf out;
    gm_buf_init(&out, 1 << 20);
    assert_int_equal(gm_dry_run_render(&r, &out), 0);
    assert_non_null(strstr(out.data,
                           "Batches (maxUnavailable 2 of 5 matched "
                           "nodes):\n  1: a, b\n  2: c, d\n  3: e\n"));
    assert_non_null(strstr(out.data, "a     full     pending    1"));
    gm_buf_free(&out);

    json_object *j = gm_dry_run_json(&r);
    assert_string_equal(
        json_object_to_json_string_ext(json_object_object_get(j, "batches"),
                                       JSON_C_TO_STRING_PLAIN),
        "[[\"a\",\"b\"],[\"c\",\"d\"],[\"e\"]]");
    json_object_put(j);
    gm_dry_run_free(&r);
    gm_policy_free(p);
    fleet_free(&f);
}

static void test_batches_by_percent(void **state)
{
    struct fleet f;
    struct gm_dry_run r;
    char b[128];
    (void)state;

    fleet_load(&f, NULL);
    struct gm_policy *p =
        policy_json("p", "{\"mode\":\"full\",\"nodeSelector\":{\"matchLabels\""
                         ":{\"pool\":\"a\"}},\"rollout\":{\"maxUnavailable\":"
                         "\"40%\"}}");
    run_plan(&f, p, NULL, &r);
    batches(&r, b, sizeof(b));
    /* Every node is already full: nothing to do. */
    assert_string_equal(b, "");
    assert_int_equal(r.n_batches, 0);
    assert_string_equal(node(&r, "a")->note, "already converged");
    gm_dry_run_free(&r);
    gm_policy_free(p);

    p = policy_json("p", "{\"mode\":\"vgpu\",\"nodeSelector\":{\"matchLabels\""
                         ":{\"pool\":\"a\"}},\"rollout\":{\"maxUnavailable\":"
                         "\"40%\"}}");
    run_plan(&f, p, NULL, &r);
    batches(&r, b, sizeof(b));
    assert_string_equal(b, "a,b|c,d|e"); /* 40% of 5 = 2 */
    gm_dry_run_free(&r);
    gm_policy_free(p);

    p = policy_json("p", "{\"mode\":\"vgpu\",\"nodeSelector\":{\"matchLabels\""
                         ":{\"pool\":\"a\"}},\"rollout\":{\"maxUnavailable\":"
                         "\"10%\"}}");
    run_plan(&f, p, NULL, &r);
    batches(&r, b, sizeof(b));
    assert_string_equal(b, "a|b|c|d|e"); /* rounds down, never below 1 */
    gm_dry_run_free(&r);
    gm_policy_free(p);
    fleet_free(&f);
}

static void test_in_flight_and_paused(void **state)
{
    struct fleet f;
    struct gm_dry_run r;
    char b[128];
    (void)state;

    fleet_load(&f, "a");
    struct gm_policy *p =
        policy_json("shared", "{\"mode\":\"vgpu\",\"nodeSelector\":{"
                              "\"matchLabels\":{\"pool\":\"a\"}},\"rollout\":{"
                              "\"maxUnavailable\":2,\"paused\":true}}");
    run_plan(&f, p, NULL, &r);
    batches(&r, b, sizeof(b));
    /* a's switch holds one slot of two, so batch 1 is b alone. */
    assert_string_equal(b, "b|c,d|e");
    assert_int_equal(node(&r, "a")->batch, 0);
    assert_int_equal(node(&r, "a")->state, GM_NODE_SWITCHING);
    assert_int_equal(r.n_notes, 1);
    assert_non_null(strstr(r.notes[0], "paused"));
    gm_dry_run_free(&r);
    gm_policy_free(p);
    fleet_free(&f);
}

/* A split that cannot be written is said before anything switches; a
 * policy without one, or a cluster with the ConfigMap, hears nothing. */
static void test_split_without_hami_configmap(void **state)
{
    struct fleet f;
    struct gm_dry_run r;
    const char *sel = "\"nodeSelector\":{\"matchLabels\":{\"pool\":\"a\"}}";
    char spec[256];
    (void)state;

    fleet_load(&f, "a");
    snprintf(spec, sizeof(spec),
             "{\"mode\":\"vgpu\",%s,\"vgpu\":{"
             "\"splitCount\":4}}",
             sel);
    struct gm_policy *split = policy_json("v", spec);
    snprintf(spec, sizeof(spec), "{\"mode\":\"vgpu\",%s}", sel);
    struct gm_policy *plain = policy_json("v", spec);

    hami_absent = "ConfigMap kube-system/hami-device-plugin";
    run_plan(&f, split, NULL, &r);
    assert_int_equal(r.n_notes, 1);
    assert_string_equal(
        r.notes[0],
        "spec.vgpu.splitCount 4 is not written: ConfigMap "
        "kube-system/hami-device-plugin does not exist "
        "(hamiConfigMap in the controller's config names it), so "
        "HAMi runs with its defaults; if the controller uses another "
        "ConfigMap, pass --hami-configmap NS/NAME");
    gm_dry_run_free(&r);
    run_plan(&f, plain, NULL, &r);
    assert_int_equal(r.n_notes, 0);
    gm_dry_run_free(&r);
    hami_absent = NULL;
    run_plan(&f, split, NULL, &r);
    assert_int_equal(r.n_notes, 0);
    gm_dry_run_free(&r);
    gm_policy_free(split);
    gm_policy_free(plain);
    fleet_free(&f);
}

static void test_pods_and_pdbs(void **state)
{
    struct fleet f;
    struct gm_dry_run r;
    (void)state;

    fleet_load(&f, NULL);
    struct gm_policy *p = policy_file("test/fixtures/cli/policy-vgpu.yaml", 0);
    run_plan(&f, p, NULL, &r);
    assert_int_equal(gm_dry_run_pods(&r, p,
                                     (const struct gm_pod *const *)f.pods,
                                     f.n_pods, f.pdbs, NULL, "gpumode-system"),
                     0);
    const struct gm_dry_node *a = node(&r, "a");
    assert_int_equal(a->n_pods, 3);
    /* Sorted by action: evict, protected, ..., skip. */
    assert_string_equal(a->pods[0].name, "train-0"); /* PDB allows 1 */
    assert_int_equal(a->pods[0].action, GM_DRY_EVICT);
    assert_string_equal(a->pods[1].name, "serve-0");
    assert_int_equal(a->pods[1].action, GM_DRY_PROTECTED);
    assert_non_null(strstr(a->pods[1].why, "PodDisruptionBudget team-b/serve"));
    assert_string_equal(a->pods[2].name, "logger-x"); /* DaemonSet */
    assert_int_equal(a->pods[2].action, GM_DRY_SKIP);

    const struct gm_dry_node *b = node(&r, "b");
    assert_int_equal(b->n_pods, 2);
    assert_string_equal(b->pods[0].name, "bare-gpu"); /* no controller */
    assert_int_equal(b->pods[0].action, GM_DRY_BLOCKED);
    /* The switch would fail on it: a problem that fails the command. */
    assert_int_equal(r.n_errors, 1);
    assert_non_null(strstr(r.errors[0], "DrainBlocked: node b: pod "));
    assert_non_null(strstr(r.errors[0], "/bare-gpu "));
    assert_string_equal(b->pods[1].name, "web-0"); /* not a GPU pod */
    assert_int_equal(b->pods[1].action, GM_DRY_SKIP);
    assert_int_equal(node(&r, "c")->n_pods, 0);

    struct gm_buf out;
    gm_buf_init(&out, 1 << 20);
    assert_int_equal(gm_dry_run_render(&r, &out), 0);
    assert_non_null(strstr(out.data, "  a     protected  team-b/serve-0: "
                                     "PodDisruptionBudget"));
    assert_non_null(strstr(out.data, "  c: no pods\n"));
    gm_buf_free(&out);

    json_object *j = gm_dry_run_json(&r);
    json_object *n0 =
        json_object_array_get_idx(json_object_object_get(j, "nodes"), 0);
    json_object *pod1 =
        json_object_array_get_idx(json_object_object_get(n0, "pods"), 1);
    assert_string_equal(
        json_object_get_string(json_object_object_get(pod1, "action")),
        "protected");
    json_object_put(j);
    /* Budgets were read: no note about them. */
    for (size_t i = 0; i < r.n_notes; i++)
        assert_null(strstr(r.notes[i], "PodDisruptionBudgets"));
    gm_dry_run_free(&r);
    gm_policy_free(p);
    fleet_free(&f);
}

/* A user who may not list PodDisruptionBudgets still gets a plan, and a
 * note that its evictions were not checked against them. */
static void test_pdbs_unread_are_noted(void **state)
{
    struct fleet f;
    struct gm_dry_run r;
    (void)state;

    fleet_load(&f, NULL);
    struct gm_policy *p = policy_file("test/fixtures/cli/policy-vgpu.yaml", 0);
    run_plan(&f, p, NULL, &r);
    size_t notes = r.n_notes;
    assert_int_equal(
        gm_dry_run_pods(&r, p, (const struct gm_pod *const *)f.pods, f.n_pods,
                        NULL, "forbidden: may not list poddisruptionbudgets",
                        "gpumode-system"),
        0);
    /* serve-0, protected when its budget is known, shows as an eviction */
    const struct gm_dry_node *a = node(&r, "a");
    assert_string_equal(a->pods[1].name, "serve-0");
    assert_int_equal(a->pods[1].action, GM_DRY_EVICT);
    assert_int_equal(r.n_notes, notes + 1);
    assert_non_null(strstr(r.notes[notes], "PodDisruptionBudgets could not "
                                           "be read (forbidden: may not "
                                           "list poddisruptionbudgets)"));
    gm_dry_run_free(&r);

    /* Nothing to evict (the pods fixture without its GPU pods' node): no
     * note, the budgets would not have mattered. */
    run_plan(&f, p, NULL, &r);
    notes = r.n_notes;
    assert_int_equal(
        gm_dry_run_pods(&r, p, NULL, 0, NULL, "forbidden", "gpumode-system"),
        0);
    assert_int_equal(r.n_notes, notes);
    gm_dry_run_free(&r);
    gm_policy_free(p);
    fleet_free(&f);
}

/* A selector that also matches a CPU node: plan lists it as left alone
 * and neither counts nor batches it. */
static void test_cpu_node_listed_not_planned(void **state)
{
    struct fleet f;
    struct gm_dry_run r;
    (void)state;

    fleet_load(&f, NULL);
    json_object *cpu = json_tokener_parse(
        "{\"metadata\":{\"name\":\"cpu-1\",\"uid\":\"c\",\"labels\":{"
        "\"pool\":\"web\"}},\"status\":{\"allocatable\":{\"cpu\":\"64\"},"
        "\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}}");
    assert_non_null(cpu);
    assert_int_equal(gm_node_from_json(cpu, &f.nodes[f.n++]), 0);
    json_object_put(cpu);
    struct gm_policy *p =
        policy_json("wide", "{\"mode\":\"vgpu\",\"nodeSelector\":{"
                            "\"matchExpressions\":[{\"key\":\"pool\","
                            "\"operator\":\"NotIn\",\"values\":["
                            "\"training\"]}]},\"rollout\":{"
                            "\"maxUnavailable\":\"100%\"}}");
    run_plan(&f, p, NULL, &r);
    assert_int_equal(r.matched, 6); /* a..e and x */
    assert_null(node(&r, "cpu-1"));
    assert_int_equal(r.n_elsewhere, 1);
    assert_non_null(strstr(r.elsewhere[0], "cpu-1: shows no GPU"));
    gm_dry_run_free(&r);
    gm_policy_free(p);
    fleet_free(&f);
}

static void test_pdb_selectors(void **state)
{
    struct fleet f;
    const char *which = NULL;
    (void)state;

    fleet_load(&f, NULL);
    /* team-c's {} selects every pod in team-c, none elsewhere. */
    free(f.pods[0]->namespace);
    f.pods[0]->namespace = strdup("team-c");
    assert_true(gm_dry_pdb_blocks(f.pdbs, f.pods[0], &which));
    assert_string_equal(which, "all");
    assert_false(gm_dry_pdb_blocks(f.pdbs, f.pods[3], &which));
    assert_false(gm_dry_pdb_blocks(NULL, f.pods[1], &which));
    /* The API server evicts a pod that does not run, or is being
     * deleted, without asking its budget. */
    static const enum gm_pod_phase free_phases[] = {
        GM_POD_PENDING, GM_POD_SUCCEEDED, GM_POD_FAILED};
    for (size_t i = 0; i < 3; i++) {
        f.pods[0]->phase = free_phases[i];
        assert_false(gm_dry_pdb_blocks(f.pdbs, f.pods[0], &which));
    }
    f.pods[0]->phase = GM_POD_UNKNOWN;
    assert_true(gm_dry_pdb_blocks(f.pdbs, f.pods[0], &which));
    f.pods[0]->phase = GM_POD_RUNNING;
    f.pods[0]->deleting = true;
    assert_false(gm_dry_pdb_blocks(f.pdbs, f.pods[0], &which));
    fleet_free(&f);
}

static void test_conflicts_and_priority(void **state)
{
    struct fleet f;
    struct gm_dry_run r;
    (void)state;

    fleet_load(&f, NULL);
    struct gm_policy *p = policy_file("test/fixtures/cli/policy-vgpu.yaml", 0);
    struct gm_policy *tie =
        policy_json("training", "{\"mode\":\"full\",\"nodeSelector\":{"
                                "\"matchExpressions\":[{\"key\":\"pool\","
                                "\"operator\":\"In\",\"values\":[\"a\"]}]}}");
    run_plan(&f, p, tie, &r);
    assert_int_equal(r.n_batches, 0);
    assert_int_equal(node(&r, "c")->state, GM_NODE_CONFLICT);
    assert_non_null(strstr(node(&r, "c")->note, "training"));
    assert_int_equal(r.n_errors, 1);
    assert_non_null(strstr(r.errors[0], "PolicyConflict"));
    gm_dry_run_free(&r);
    gm_policy_free(tie);

    struct gm_policy *high =
        policy_json("training", "{\"mode\":\"full\",\"priority\":5,"
                                "\"nodeSelector\":{\"matchLabels\":{\"pool\":"
                                "\"a\"}}}");
    run_plan(&f, p, high, &r);
    assert_int_equal(r.n_nodes, 0);
    assert_int_equal(r.n_elsewhere, 5);
    assert_string_equal(r.elsewhere[0],
                        "e: governed by policy training (priority 5)");
    gm_dry_run_free(&r);
    gm_policy_free(high);

    /* The same name as the file's is the old version: replaced, not a
     * conflict. */
    struct gm_policy *old =
        policy_json("shared", "{\"mode\":\"full\",\"nodeSelector\":{"
                              "\"matchLabels\":{\"pool\":\"a\"}}}");
    run_plan(&f, p, old, &r);
    assert_int_equal(r.n_batches, 3);
    assert_int_equal(r.n_errors, 0);
    gm_dry_run_free(&r);
    gm_policy_free(old);
    gm_policy_free(p);
    fleet_free(&f);
}

/* Two policies of a higher priority tie over pool a: none of them acts
 * there, and neither may the file's. Each node says so; none is shown
 * as converged. */
static void test_tie_above_is_said(void **state)
{
    struct fleet f;
    struct gm_dry_run r;
    (void)state;

    fleet_load(&f, NULL);
    struct gm_policy *p = policy_file("test/fixtures/cli/policy-vgpu.yaml", 0);
    const char *spec = "{\"mode\":\"full\",\"priority\":5,\"nodeSelector\":"
                       "{\"matchLabels\":{\"pool\":\"a\"}}}";
    struct gm_policy *t1 = policy_json("t1", spec);
    struct gm_policy *t2 = policy_json("t2", spec);
    const struct gm_policy *existing[] = {t1, t2};
    run_plan_among(&f, p, existing, 2, &r);
    assert_int_equal(r.n_nodes, 0);
    assert_int_equal(r.n_batches, 0);
    assert_int_equal(r.n_elsewhere, 5);
    int found = 0;
    for (size_t i = 0; i < r.n_elsewhere; i++)
        found += strcmp(r.elsewhere[i],
                        "e: policies t1 and t2 tie on it at priority 5, so "
                        "none of them acts on it, nor does this one "
                        "(priority 0)") == 0;
    assert_int_equal(found, 1);
    gm_dry_run_free(&r);
    gm_policy_free(t1);
    gm_policy_free(t2);
    gm_policy_free(p);
    fleet_free(&f);
}

/* Policy shared: vgpu on pool a, one node at a time. */
static struct gm_policy *shared_vgpu_one_at_a_time(void)
{
    return policy_json("shared", "{\"mode\":\"vgpu\",\"nodeSelector\":{"
                                 "\"matchLabels\":{\"pool\":\"a\"}},"
                                 "\"rollout\":{\"maxUnavailable\":1}}");
}

/* The policy's selector was narrowed mid-rollout: x, no longer selected,
 * is still switching for it and holds the one slot. The switch ends, as
 * in the cluster, and the rollout goes on after it. */
static void test_in_flight_outside_selector_ends(void **state)
{
    struct fleet f;
    struct gm_dry_run r;
    char b[128];
    (void)state;

    fleet_load_rec(&f, "x",
                   "{\"policy\":\"shared\",\"from\":\"full\",\"to\":"
                   "\"vgpu\",\"phase\":\"Reconfiguring\",\"attempt\":1,"
                   "\"cordoned\":true}");
    struct gm_policy *p = shared_vgpu_one_at_a_time();
    run_plan(&f, p, NULL, &r);
    batches(&r, b, sizeof(b));
    assert_string_equal(b, "a|b|c|d|e");
    assert_int_equal(r.n_errors, 0);
    assert_int_equal(r.n_notes, 1);
    assert_non_null(strstr(r.notes[0], "x is no longer governed by this "
                                       "policy, but its switch for it is in "
                                       "flight"));
    gm_dry_run_free(&r);
    gm_policy_free(p);
    fleet_free(&f);
}

/* Another policy of the same priority now selects a too: a tie, so
 * neither acts there, but the switch of this policy in flight on it goes
 * on and holds the one slot until it ends; then the rollout goes on. */
static void test_in_flight_on_a_tie_ends(void **state)
{
    struct fleet f;
    struct gm_dry_run r;
    char b[128];
    (void)state;

    switching_label = "slot";
    fleet_load_rec(&f, "a",
                   "{\"policy\":\"shared\",\"from\":\"full\",\"to\":"
                   "\"vgpu\",\"phase\":\"Reconfiguring\",\"attempt\":1,"
                   "\"cordoned\":true}");
    switching_label = NULL;
    struct gm_policy *p = shared_vgpu_one_at_a_time();
    struct gm_policy *tie =
        policy_json("other", "{\"mode\":\"full\",\"nodeSelector\":{"
                             "\"matchLabels\":{\"slot\":\"x\"}}}");
    run_plan(&f, p, tie, &r);
    batches(&r, b, sizeof(b));
    assert_string_equal(b, "b|c|d|e");
    assert_int_equal(node(&r, "a")->state, GM_NODE_CONFLICT);
    gm_dry_run_free(&r);
    gm_policy_free(tie);
    gm_policy_free(p);
    fleet_free(&f);
}

/* a is rolling back: it ends failed, which reaches maxFailures (1 by
 * default) and stops the rollout. That is a problem the plan must report
 * (and exit 1 on), though it comes only after the first round. */
static void test_stall_after_in_flight_is_reported(void **state)
{
    struct fleet f;
    struct gm_dry_run r;
    (void)state;

    fleet_load_rec(&f, "a",
                   "{\"policy\":\"shared\",\"from\":\"full\",\"to\":"
                   "\"vgpu\",\"phase\":\"Reconfiguring\",\"attempt\":1,"
                   "\"cordoned\":true,\"rollingBack\":true,"
                   "\"reconfigured\":true}");
    struct gm_policy *p = shared_vgpu_one_at_a_time();
    run_plan(&f, p, NULL, &r);
    assert_int_equal(r.n_batches, 0);
    assert_int_equal(r.n_errors, 1);
    assert_non_null(strstr(r.errors[0], "MaxFailuresReached once the "
                                        "switches in flight end: "));
    assert_string_equal(node(&r, "a")->note,
                        "switch in flight now, rolling back: it ends failed");
    gm_dry_run_free(&r);
    gm_policy_free(p);
    fleet_free(&f);
}

static void test_invalid_layout(void **state)
{
    struct fleet f;
    struct gm_dry_run r;
    (void)state;

    fleet_load(&f, NULL);
    struct gm_policy *p =
        policy_json("m", "{\"mode\":\"mig\",\"mig\":{\"config\":\"all-1g."
                         "10gb\"},\"nodeSelector\":{\"matchLabels\":{\"pool\""
                         ":\"a\"}}}");
    run_plan(&f, p, NULL, &r);
    assert_int_equal(r.n_batches, 0);
    assert_int_equal(r.n_errors, 1);
    assert_non_null(strstr(r.errors[0], "InvalidLayout: layout "
                                        "\"all-1g.10gb\""));
    assert_non_null(strstr(node(&r, "a")->note, "not found"));
    gm_dry_run_free(&r);
    gm_policy_free(p);
    fleet_free(&f);
}

/* --plugin-configmap: a node whose own device plugin config is not in it
 * would not be switched; the plan says why and exits 1. With the key
 * there it is batch 1. */
static void test_missing_plugin_config(void **state)
{
    (void)state;
    json_object *o = json_tokener_parse(
        "{\"metadata\":{\"name\":\"a\",\"labels\":{\"pool\":\"a\","
        "\"gpumode.io/mode\":\"mig\",\"nvidia.com/device-plugin.config\":"
        "\"mixed\"},\"annotations\":{\"gpumode.io/plugin-config\":"
        "\"time-slicing\"}},\"status\":{\"conditions\":[{\"type\":"
        "\"Ready\",\"status\":\"True\"}]}}");
    struct gm_node *n = NULL;
    assert_int_equal(gm_node_from_json(o, &n), 0);
    json_object_put(o);
    struct gm_policy *p = policy_json(
        "f", "{\"mode\":\"full\",\"nodeSelector\":{\"matchLabels\":{"
             "\"pool\":\"a\"}}}");
    const char *data[] = {"{\"data\":{\"mixed\":\"\"}}",
                          "{\"data\":{\"time-slicing\":\"version: v1\"}}"};
    for (int i = 0; i < 2; i++) {
        struct gm_plugin_configs c;
        struct gm_dry_run r;
        json_object *cm = json_tokener_parse(data[i]);
        assert_int_equal(gm_plugin_configs_parse(cm, &c), 0);
        json_object_put(cm);
        struct gm_dry_input in = {
            .policy = p,
            .nodes = (const struct gm_node *const *)&n,
            .n_nodes = 1,
            .layouts_error = "not needed",
            .plugin_configs = &c,
            .plugin_configs_source = "ConfigMap gpu-operator/dp",
            .now = NOW,
        };
        assert_int_equal(gm_dry_run_plan(&in, &r), 0);
        if (i == 0) {
            assert_int_equal(r.n_batches, 0);
            assert_int_equal(r.n_errors, 1);
            assert_string_equal(r.errors[0],
                                "InvalidPluginConfig: node a: the device "
                                "plugin config time-slicing is not in "
                                "ConfigMap gpu-operator/dp: the plugin would "
                                "not start (add the key, or change the "
                                "node's config)");
            assert_non_null(strstr(node(&r, "a")->note, "time-slicing"));
        } else {
            assert_int_equal(r.n_batches, 1);
            assert_int_equal(r.n_errors, 0);
            assert_int_equal(node(&r, "a")->batch, 1);
        }
        gm_dry_run_free(&r);
        gm_plugin_configs_free(&c);
    }
    gm_policy_free(p);
    gm_node_free(n);
}

static void test_file_errors_name_the_field(void **state)
{
    (void)state;
    struct gm_policy *p =
        policy_file("test/fixtures/cli/policy-bad-mode.yaml", -EINVAL);
    assert_false(p->valid);
    assert_non_null(strstr(p->error, "spec.mode"));
    struct gm_dry_run r;
    struct gm_dry_input in = {.policy = p};
    assert_int_equal(gm_dry_run_plan(&in, &r), -EINVAL);
    gm_policy_free(p);

    p = policy_file("test/fixtures/cli/policy-bad-selector.yaml", -EINVAL);
    assert_non_null(
        strstr(p->error, "spec.nodeSelector.matchExpressions[0].operator"));
    gm_policy_free(p);

    /* A drain selector the schema cannot check is a problem, not a crash. */
    struct fleet f;
    fleet_load(&f, NULL);
    p = policy_json("s", "{\"mode\":\"vgpu\",\"nodeSelector\":{\"matchLabels\""
                         ":{\"pool\":\"a\"}},\"rollout\":{\"drain\":{"
                         "\"podSelector\":\"app in (x\"}}}");
    run_plan(&f, p, NULL, &r);
    assert_int_equal(r.n_errors, 1);
    assert_non_null(strstr(r.errors[0], "spec.rollout.drain.podSelector"));
    gm_dry_run_free(&r);
    gm_policy_free(p);
    fleet_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batches_by_count),
        cmocka_unit_test(test_batches_by_percent),
        cmocka_unit_test(test_in_flight_and_paused),
        cmocka_unit_test(test_split_without_hami_configmap),
        cmocka_unit_test(test_pods_and_pdbs),
        cmocka_unit_test(test_pdbs_unread_are_noted),
        cmocka_unit_test(test_cpu_node_listed_not_planned),
        cmocka_unit_test(test_pdb_selectors),
        cmocka_unit_test(test_conflicts_and_priority),
        cmocka_unit_test(test_tie_above_is_said),
        cmocka_unit_test(test_in_flight_outside_selector_ends),
        cmocka_unit_test(test_stall_after_in_flight_is_reported),
        cmocka_unit_test(test_in_flight_on_a_tie_ends),
        cmocka_unit_test(test_invalid_layout),
        cmocka_unit_test(test_missing_plugin_config),
        cmocka_unit_test(test_file_errors_name_the_field),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
