/* A GPUModePolicy decoded from JSON text and, when its spec is valid,
 * planned against a small fixed fleet (every node state the planner
 * classifies) alongside a second, fixed policy, then turned into a status;
 * an invalid spec goes to gm_status_build_invalid. The status is diffed
 * against the one the input carried. */
#include <errno.h>

#include "fuzz.h"
#include "planner/plan.h"
#include "planner/status.h"
#include "support/planner_nodes.h"

#define NOW 1715034600 /* Mon 2024-05-06 22:30Z */
#define WEEK (7 * 24 * 3600)

static struct gm_node *fleet[10];
static size_t n_fleet;
static struct gm_policy *other;
static struct gm_migparted *layouts;

static const char layouts_yaml[] = "version: v1\n"
                                   "mig-configs:\n"
                                   "  all-disabled:\n"
                                   "    - devices: all\n"
                                   "      mig-enabled: false\n"
                                   "  all-1g.10gb:\n"
                                   "    - devices: all\n"
                                   "      mig-enabled: true\n"
                                   "      mig-devices: {\"1g.10gb\": 7}\n"
                                   "  mixed:\n"
                                   "    - devices: [0, 1]\n"
                                   "      mig-enabled: true\n"
                                   "      mig-devices: {\"3g.40gb\": 2}\n"
                                   "    - devices: all\n"
                                   "      mig-enabled: false\n";

static struct gm_node *add(struct gm_node *n)
{
    fleet[n_fleet++] = n;
    return n;
}

static void setup(void)
{
    char err[256];
    struct gm_node *n;

    add(gmt_node("a-full", "pool=a", "gpumode.io/mode=full",
                 "gpumode.io/state=ready",
                 "nvidia.com/gpu.product=NVIDIA-A100-SXM4-80GB",
                 "nvidia.com/gpu.count=8", NULL));
    n = add(gmt_node("b-mig", "pool=a", "gpumode.io/mode=mig",
                     "gpumode.io/state=ready",
                     "nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3",
                     "nvidia.com/gpu.count=2", NULL));
    gmt_set(&n->ann_boot_id, "boot-1");
    gmt_set(&n->boot_id, "boot-1");
    /* Settings as a switch would have written them (a literal: the fleet
     * lives as long as the fuzzer). */
    n->ann_settings = "{\"strategy\":\"mixed\",\"layout\":[{\"devices\":"
                      "\"all\",\"migEnabled\":true,\"migDevices\":"
                      "{\"1g.10gb\":7}}]}";
    add(gmt_node("c-unknown", "pool=a", "tier=gold",
                 "nvidia.com/gpu.product=NVIDIA-A100-SXM4-40GB", NULL));
    n = add(gmt_node("d-switching", "pool=a", "gpumode.io/mode=full", NULL));
    gmt_set(&n->ann_switch,
            "{\"policy\":\"other\",\"from\":\"full\",\"to\":\"vgpu\","
            "\"phase\":\"Drain\",\"since\":1715030000,\"attempt\":2}");
    add(gmt_node("e-failed", "pool=a", "gpumode.io/mode=vgpu",
                 "gpumode.io/state=failed", NULL));
    n = add(gmt_node("f-retry", "pool=b", "gpumode.io/state=failed", NULL));
    gmt_set(&n->ann_retry, "1");
    n = add(gmt_node("g-cordoned", "pool=b", "gpumode.io/mode=vgpu", NULL));
    n->unschedulable = true;
    n->ann_settings = "{}";
    n = add(gmt_node("h-notready", "pool=b", "nvidia.com/gpu.product=Tesla-T4",
                     NULL));
    n->ready = false;
    n = add(gmt_node("i-bad-switch", "pool=a", "gpumode.io/skip=true", NULL));
    gmt_set(&n->ann_switch, "not json");
    add(gmt_node("j-other", "pool=c", NULL));

    other = gmt_policy("{\"metadata\":{\"name\":\"other\",\"generation\":3},"
                       "\"spec\":{\"mode\":\"vgpu\",\"nodeSelector\":"
                       "{\"matchLabels\":{\"pool\":\"b\"}}}}",
                       0);
    if (gm_migparted_parse(layouts_yaml, strlen(layouts_yaml), "ConfigMap f/l",
                           &layouts, err, sizeof(err)) != 0)
        abort();
}

/* A clock that differs between inputs, so windows open and close. */
static time_t clock_for(const uint8_t *data, size_t size)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 16777619u;
    return NOW + (time_t)(h % WEEK);
}

static void plan_and_status(struct gm_policy *p, time_t now)
{
    const struct gm_policy *all[2] = {p, other};
    struct gm_plan plan;
    json_object *st = NULL;
    char line[128];
    /* Every other input plans without layouts, as when the ConfigMap is
     * missing, and (independently) every other without HAMi's. */
    int with_layouts = (now & 1) == 0;
    struct gm_plan_input in = {
        .policy = p,
        .policies = all,
        .n_policies = 2,
        .nodes = (const struct gm_node *const *)fleet,
        .n_nodes = n_fleet,
        .now = now,
        .layouts = with_layouts ? layouts : NULL,
        .layouts_source = "ConfigMap f/l",
        .layouts_error = with_layouts ? NULL : "ConfigMap not found",
        .hami_config_absent = (now & 2) != 0,
    };

    memset(&plan, 0, sizeof(plan));
    int rc = gm_plan_policy(&in, &plan);
    gmf_assert(rc == 0);
    gmf_assert(plan.n_starts <= n_fleet && plan.n_nodes <= n_fleet);
    gmf_assert(plan.summary.matched <= (int)n_fleet);
    (void)gm_plan_progress(&plan, p->spec.mode, line, sizeof(line));
    if (gm_status_build(p, &plan, now, &st) == 0) {
        (void)gm_status_changed(p, st);
        json_object_put(st);
    }
    gm_plan_free(&plan);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gm_policy *p = NULL;
    json_object *st = NULL;

    if (n_fleet == 0)
        setup();
    char *text = gmf_cstr(data, size);
    json_object *o = json_tokener_parse(text);
    free(text);
    if (o == NULL)
        return 0;
    time_t now = clock_for(data, size);
    int rc = gm_policy_decode(o, &p);
    json_object_put(o);
    if (rc == 0) {
        gmf_assert(p != NULL && p->valid && p->error == NULL);
        plan_and_status(p, now);
    } else if (rc == -EINVAL && p != NULL) {
        gmf_assert(!p->valid && p->error != NULL);
        if (gm_status_build_invalid(p, now, &st) == 0) {
            (void)gm_status_changed(p, st);
            json_object_put(st);
        }
    } else {
        gmf_assert(p == NULL);
    }
    for (size_t i = 0; p && i < p->n_conditions; i++)
        (void)gm_condition_reason_valid(p->conditions[i].reason);
    gm_policy_free(p);
    return 0;
}
