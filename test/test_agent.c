/* The apply logic against an in-process fake nvidia-smi that keeps GPU
 * state (modes, instances, processes), answers with the texts in FACTS.md
 * and records every invocation; plus the real runner and the built binary
 * against a fixture script. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "agent/agent.h"
#include "agent/cli.h"
#include "agent/layout.h"
#include "agent/smi_run.h"
#include "common/buf.h"
#include "common/log.h"

/* ---- the fake ---- */

struct fprofile {
    const char *name;
    int id;
    int total;
    int nstarts;
    int starts[8];
    int size; /* memory slices */
};

static const struct fprofile a100_40[] = {
    {"1g.5gb", 19, 7, 7, {0, 1, 2, 3, 4, 5, 6}, 1},
    {"1g.5gb+me", 20, 1, 7, {0, 1, 2, 3, 4, 5, 6}, 1},
    {"1g.10gb", 15, 4, 4, {0, 2, 4, 6}, 2},
    {"2g.10gb", 14, 3, 3, {0, 2, 4}, 2},
    {"3g.20gb", 9, 2, 2, {0, 4}, 4},
    {"4g.20gb", 5, 1, 1, {0}, 4},
    {"7g.40gb", 0, 1, 1, {0}, 8},
    {NULL, 0, 0, 0, {0}, 0},
};

static const struct fprofile h100_80[] = {
    {"1g.10gb", 19, 7, 7, {0, 1, 2, 3, 4, 5, 6}, 1},
    {"1g.10gb+me", 20, 1, 7, {0, 1, 2, 3, 4, 5, 6}, 1},
    {"1g.20gb", 15, 4, 4, {0, 2, 4, 6}, 2},
    {"2g.20gb", 14, 3, 3, {0, 2, 4}, 2},
    {"3g.40gb", 9, 2, 2, {0, 4}, 4},
    {"4g.40gb", 5, 1, 1, {0}, 4},
    {"7g.80gb", 0, 1, 1, {0}, 8},
    {NULL, 0, 0, 0, {0}, 0},
};

struct fgi {
    int id;
    const struct fprofile *p;
    int start;
    int ci; /* has its full compute instance */
};

struct fgpu {
    const char *name;
    const char *devid;
    const struct fprofile *profiles; /* NULL: no MIG */
    int hopper;                      /* mode changes without a reset */
    int reset_ok;
    int cur, pend; /* MIG mode: 0 off, 1 on */
    int ngis;
    struct fgi gis[8];
    int next_id;
};

#define LOG_MAX 64

struct fake {
    int ngpus;
    struct fgpu g[4];
    int nprocs;
    int proc_gpu[4];
    const char *huge; /* when set, every mode change fails with this */
    /* Held by something other than a compute process (persistenced, DCGM,
     * fabric manager): mode changes stay pending, resets are refused. */
    int held[4];
    /* When set, a command whose line contains it runs into the timeout
     * after acting, as a hung nvidia-smi killed midway may have. */
    const char *hang;
    int nlog;
    char log[LOG_MAX][160];
};

static void uuid_of(int i, char *dst, size_t cap)
{
    snprintf(dst, cap, "GPU-0000000%d-6756-fd30-cd4a-1e6da3caf9b0", i);
}

static void bus_of(int i, char *dst, size_t cap)
{
    snprintf(dst, cap, "00000000:%02X:00.0", 7 + 8 * i);
}

static const struct fprofile *find_profile(const struct fgpu *g,
                                           const char *name)
{
    for (const struct fprofile *p = g->profiles; p && p->name; p++) {
        if (strcmp(p->name, name) == 0)
            return p;
    }
    return NULL;
}

static int slots_used(const struct fgpu *g)
{
    int m = 0;
    for (int i = 0; i < g->ngis; i++)
        m |= ((1 << g->gis[i].p->size) - 1) << g->gis[i].start;
    return m;
}

static void out_query(struct fake *f, struct gm_buf *o)
{
    static const char *const mode[] = {"Disabled", "Enabled"};
    for (int i = 0; i < f->ngpus; i++) {
        const struct fgpu *g = &f->g[i];
        char uuid[64], bus[32];
        uuid_of(i, uuid, sizeof(uuid));
        bus_of(i, bus, sizeof(bus));
        gm_buf_appendf(o, "%d, %s, %s, %s, %s, %s, %s, 40960\n", i, uuid,
                       g->name, bus, g->devid,
                       g->profiles ? mode[g->cur] : "[N/A]",
                       g->profiles ? mode[g->pend] : "[N/A]");
    }
}

static int any_enabled(const struct fake *f)
{
    for (int i = 0; i < f->ngpus; i++) {
        if (f->g[i].profiles && f->g[i].cur)
            return 1;
    }
    return 0;
}

static int out_lgi(struct fake *f, struct gm_buf *o, int cis)
{
    int n = 0;
    if (!any_enabled(f)) {
        gm_buf_appendf(o, "No MIG-enabled devices found.\n");
        return 6;
    }
    gm_buf_appendf(o, "+----------------------------------------------------"
                      "+\n| GPU instances:   |\n|======|\n");
    for (int i = 0; i < f->ngpus; i++) {
        for (int k = 0; k < f->g[i].ngis; k++) {
            const struct fgi *gi = &f->g[i].gis[k];
            if (cis && !gi->ci)
                continue;
            if (cis)
                gm_buf_appendf(o,
                               "|   %d      %d       MIG %s   %d   0   "
                               "0:%c |\n",
                               i, gi->id, gi->p->name, gi->p->id,
                               gi->p->name[0]);
            else
                gm_buf_appendf(o,
                               "|   %d  MIG %s       %d        %d   %d:%d "
                               "|\n",
                               i, gi->p->name, gi->p->id, gi->id, gi->start,
                               gi->p->size);
            n++;
        }
    }
    gm_buf_appendf(o, "+---------+\n");
    if (n == 0) {
        gm_buf_reset(o);
        gm_buf_appendf(o, cis ? "No compute instances found: Not Found\n"
                              : "No GPU instances found: Not Found\n");
        return 6;
    }
    return 0;
}

static void out_lgip(struct fake *f, struct gm_buf *o, int placements)
{
    for (int i = 0; i < f->ngpus; i++) {
        const struct fgpu *g = &f->g[i];
        if (!g->profiles || !g->cur)
            continue;
        for (const struct fprofile *p = g->profiles; p->name; p++) {
            if (placements) {
                gm_buf_appendf(o, "GPU  %d Profile ID %2d Placements: {", i,
                               p->id);
                for (int k = 0; k < p->nstarts; k++)
                    gm_buf_appendf(o, "%s%d", k ? "," : "", p->starts[k]);
                gm_buf_appendf(o, "}:%d\n", p->size);
                continue;
            }
            gm_buf_appendf(o,
                           "|   %d  MIG %-12s %3d     %d/%d        9.75  "
                           "     No     16     1     0   |\n"
                           "|                        1     1     0   |\n",
                           i, p->name, p->id, p->total, p->total);
        }
    }
}

static void out_list(struct fake *f, struct gm_buf *o)
{
    for (int i = 0; i < f->ngpus; i++) {
        char uuid[64];
        uuid_of(i, uuid, sizeof(uuid));
        gm_buf_appendf(o, "GPU %d: %s (UUID: %s)\n", i, f->g[i].name, uuid);
        for (int k = 0; k < f->g[i].ngis; k++) {
            if (f->g[i].gis[k].ci)
                gm_buf_appendf(o, "  MIG %s Device %d: (UUID: MIG-%d-%d-x)\n",
                               f->g[i].gis[k].p->name, k, i, k);
        }
    }
}

static int gpu_busy(const struct fake *f, int i)
{
    for (int k = 0; k < f->nprocs; k++) {
        if (f->proc_gpu[k] == i)
            return 1;
    }
    return 0;
}

static int do_mig_mode(struct fake *f, int i, int on, struct gm_buf *o)
{
    struct fgpu *g = &f->g[i];
    char bus[32];
    bus_of(i, bus, sizeof(bus));
    if (f->huge) {
        gm_buf_appendf(o, "%s\n", f->huge);
        return 255;
    }
    if (!g->profiles) {
        gm_buf_appendf(o, "Unable to %s MIG Mode for GPU %s: Not Supported\n",
                       on ? "enable" : "disable", bus);
        return 3;
    }
    if (!on && g->ngis > 0) {
        gm_buf_appendf(o,
                       "Unable to disable MIG Mode for GPU %s: In use by "
                       "another client\n",
                       bus);
        return 255;
    }
    if (f->held[i] && g->cur != on) {
        /* FACTS: pending, with this warning, and still exit 0. */
        g->pend = on;
        gm_buf_appendf(o,
                       "Warning: MIG mode is in pending %s state for GPU "
                       "%s:In use by another client\n%s is currently being "
                       "used by one or more other processes (e.g. CUDA "
                       "application or a monitoring application such as "
                       "another instance of nvidia-smi). Please first kill "
                       "all processes using the device and retry the "
                       "command or reboot the system to make MIG mode "
                       "effective.\nAll done.\n",
                       on ? "enable" : "disable", bus, bus);
        return 0;
    }
    g->pend = on;
    if (g->hopper) {
        g->cur = on;
        gm_buf_appendf(o, "%s MIG Mode for GPU %s\nAll done.\n",
                       on ? "Enabled" : "Disabled", bus);
        return 0;
    }
    if (g->cur != on)
        gm_buf_appendf(o,
                       "Warning: MIG mode is in pending %s state for GPU "
                       "%s:Not Supported\nReboot the system or try "
                       "nvidia-smi --gpu-reset to make MIG mode effective "
                       "on GPU %s\n",
                       on ? "enable" : "disable", bus, bus);
    gm_buf_appendf(o, "All done.\n");
    return 0;
}

static int do_create(struct fake *f, int i, const char *list, struct gm_buf *o)
{
    struct fgpu *g = &f->g[i];
    char copy[256];
    snprintf(copy, sizeof(copy), "%s", list);
    for (char *save = NULL, *name = strtok_r(copy, ",", &save); name;
         name = strtok_r(NULL, ",", &save)) {
        const struct fprofile *p = find_profile(g, name);
        if (p == NULL) {
            gm_buf_appendf(o, "Invalid GPU instance profile %s\n", name);
            return 2;
        }
        int start = -1;
        for (int k = 0; k < p->nstarts && start < 0; k++) {
            int m = ((1 << p->size) - 1) << p->starts[k];
            if ((slots_used(g) & m) == 0)
                start = p->starts[k];
        }
        if (start < 0 || g->ngis == 7) {
            gm_buf_appendf(o,
                           "Unable to create a GPU instance on GPU  %d "
                           "using profile %s: Insufficient Resources\n"
                           "Failed to create GPU instances: Insufficient "
                           "Resources\n",
                           i, name);
            return 255;
        }
        struct fgi *gi = &g->gis[g->ngis++];
        gi->id = ++g->next_id;
        gi->p = p;
        gi->start = start;
        gi->ci = 1;
        gm_buf_appendf(o,
                       "Successfully created GPU instance ID  %d on GPU  "
                       "%d using profile MIG %s (ID  %d)\n"
                       "Successfully created compute instance ID  0 on "
                       "GPU  %d GPU instance ID  %d using profile MIG %s "
                       "(ID  %d)\n",
                       gi->id, i, p->name, p->id, i, gi->id, p->name, 7);
    }
    return 0;
}

static int fake_dispatch(struct fake *f, const char *const *a, int n,
                         struct gm_buf *o, struct gm_buf *e)
{
    char bus[32];
    if (n == 2 && strncmp(a[0], "--query-gpu=", 12) == 0) {
        out_query(f, o);
        return 0;
    }
    if (n == 2 && strncmp(a[0], "--query-compute-apps=", 21) == 0) {
        for (int k = 0; k < f->nprocs; k++) {
            char uuid[64];
            uuid_of(f->proc_gpu[k], uuid, sizeof(uuid));
            gm_buf_appendf(o, "%d, %s, 512 MiB\n", 1000 + k, uuid);
        }
        return 0;
    }
    if (n == 1 && strcmp(a[0], "-L") == 0) {
        out_list(f, o);
        return 0;
    }
    if (n == 2 && strcmp(a[0], "mig") == 0) {
        if (strcmp(a[1], "-lgi") == 0)
            return out_lgi(f, o, 0);
        if (strcmp(a[1], "-lci") == 0)
            return out_lgi(f, o, 1);
        if (strcmp(a[1], "-lgip") == 0 || strcmp(a[1], "-lgipp") == 0) {
            if (!any_enabled(f)) {
                gm_buf_appendf(o, "No MIG-supported devices found.\n");
                return 6;
            }
            out_lgip(f, o, strcmp(a[1], "-lgipp") == 0);
            return 0;
        }
    }
    int i = -1;
    if (n >= 3 && strcmp(a[0], "-i") == 0)
        i = atoi(a[1]);
    if (n >= 4 && strcmp(a[0], "mig") == 0 && strcmp(a[1], "-i") == 0)
        i = atoi(a[2]);
    if (i < 0 || i >= f->ngpus) {
        gm_buf_appendf(e, "Invalid combination of input arguments.\n");
        return 2;
    }
    struct fgpu *g = &f->g[i];
    bus_of(i, bus, sizeof(bus));
    if (n == 4 && strcmp(a[2], "-mig") == 0)
        return do_mig_mode(f, i, strcmp(a[3], "1") == 0, o);
    if (n == 3 && strcmp(a[2], "-r") == 0) {
        if (f->held[i]) { /* wording not in FACTS */
            gm_buf_appendf(o,
                           "Unable to reset GPU %s: In use by another "
                           "client\n",
                           bus);
            return 255;
        }
        if (!g->reset_ok) {
            gm_buf_appendf(o, "Resetting GPU %s is not supported.\n", bus);
            return 3;
        }
        g->cur = g->pend;
        g->ngis = 0;
        gm_buf_appendf(o, "GPU %s was successfully reset.\n", bus);
        return 0;
    }
    if (n == 4 && strcmp(a[3], "-dci") == 0) {
        for (int k = 0; k < g->ngis; k++) {
            if (gpu_busy(f, i)) {
                gm_buf_appendf(o, "Unable to destroy compute instance: In "
                                  "use by another client\n");
                return 255;
            }
            g->gis[k].ci = 0;
            gm_buf_appendf(o,
                           "Successfully destroyed compute instance ID  "
                           "0 from GPU  %d GPU instance ID  %d\n",
                           i, g->gis[k].id);
        }
        return 0;
    }
    if (n == 4 && strcmp(a[3], "-dgi") == 0) {
        for (int k = 0; k < g->ngis; k++) {
            if (g->gis[k].ci) {
                gm_buf_appendf(o,
                               "Unable to destroy GPU instance ID  %d "
                               "from GPU  %d: In use by another client\n",
                               g->gis[k].id, i);
                return 255;
            }
        }
        for (int k = 0; k < g->ngis; k++)
            gm_buf_appendf(o,
                           "Successfully destroyed GPU instance ID  %d "
                           "from GPU  %d\n",
                           g->gis[k].id, i);
        g->ngis = 0;
        return 0;
    }
    if (n == 6 && strcmp(a[3], "-cgi") == 0 && strcmp(a[5], "-C") == 0)
        return do_create(f, i, a[4], o);
    gm_buf_appendf(e, "Invalid combination of input arguments.\n");
    return 2;
}

static int fake_run(void *ctx, const char *const *args, struct gm_smi_out *out)
{
    struct fake *f = ctx;
    struct gm_buf o, e;
    int n = 0;
    size_t len = 0;

    gm_buf_init(&o, 1 << 20);
    gm_buf_init(&e, 1 << 20);
    memset(out, 0, sizeof(*out));
    if (f->nlog < LOG_MAX) {
        char *l = f->log[f->nlog++];
        l[0] = '\0';
        for (; args[n]; n++)
            len += (size_t)snprintf(l + len, len < 160 ? 160 - len : 0, "%s%s",
                                    n ? " " : "", args[n]);
    }
    while (args[n])
        n++;
    out->status = fake_dispatch(f, args, n, &o, &e);
    out->out = gm_buf_steal(&o);
    out->err = gm_buf_steal(&e);
    if (f->hang && f->nlog <= LOG_MAX && strstr(f->log[f->nlog - 1], f->hang))
        out->timed_out = 1;
    return 0;
}

static struct fake *fake_new(int ngpus, int hopper, int reset_ok)
{
    struct fake *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->ngpus = ngpus;
    for (int i = 0; i < ngpus; i++) {
        f->g[i].name =
            hopper ? "NVIDIA H100 80GB HBM3" : "NVIDIA A100-SXM4-40GB";
        f->g[i].devid = hopper ? "0x233010DE" : "0x20B010DE";
        f->g[i].profiles = hopper ? h100_80 : a100_40;
        f->g[i].hopper = hopper;
        f->g[i].reset_ok = reset_ok;
    }
    return f;
}

/* Index of the first log line starting with prefix at or after from; -1. */
static int logged(const struct fake *f, const char *prefix, int from)
{
    for (int i = from; i < f->nlog; i++) {
        if (strncmp(f->log[i], prefix, strlen(prefix)) == 0)
            return i;
    }
    return -1;
}

/* Commands that change state: none may appear when apply must not act. */
static int mutations(const struct fake *f)
{
    int n = 0;
    for (int i = 0; i < f->nlog; i++) {
        const char *l = f->log[i];
        if (strstr(l, " -mig ") || strstr(l, " -r") || strstr(l, "-dci") ||
            strstr(l, "-dgi") || strstr(l, "-cgi"))
            n++;
    }
    return n;
}

static void dump_log(const struct fake *f)
{
    for (int i = 0; i < f->nlog; i++)
        print_message("  [%d] nvidia-smi %s\n", i, f->log[i]);
}

struct apply_case {
    struct fake *f;
    struct gm_agent_result *res;
    struct gm_layout layout;
    int rc;
};

/* Runs apply with req (its layout parsed from layout when set) against
 * c's fake. */
static int run_apply_req(struct apply_case *c, struct gm_agent_req *req,
                         const char *layout)
{
    char msg[256];
    struct gm_smi_runner r = {.run = fake_run, .ctx = c->f};
    if (layout) {
        if (gm_layout_parse(layout, &c->layout, msg, sizeof(msg)) != 0)
            fail_msg("layout: %s", msg);
        req->layout = &c->layout;
    }
    if (c->res == NULL)
        c->res = malloc(sizeof(*c->res));
    assert_non_null(c->res);
    gm_agent_result_init(c->res, "apply");
    c->f->nlog = 0;
    c->rc = gm_agent_apply(&r, req, c->res);
    if (c->rc != 0)
        print_message("  -> %s: %s\n", c->res->reason, c->res->message);
    return c->rc;
}

static void run_apply(struct apply_case *c, enum gm_agent_mode mode,
                      const char *layout, int allow_reset)
{
    struct gm_agent_req req = {.mode = mode, .allow_reset = allow_reset};
    run_apply_req(c, &req, layout);
}

static void case_free(struct apply_case *c)
{
    free(c->res);
    free(c->f);
}

static int instances_of(const struct gm_agent_result *r, int gpu,
                        const char *profile)
{
    int n = 0;
    for (size_t i = 0; i < r->snap.ngis; i++) {
        if (r->snap.gis[i].gpu == gpu &&
            strcmp(r->snap.gis[i].profile, profile) == 0)
            n++;
    }
    return n;
}

/* ---- apply paths ---- */

static void test_a100_enable_reset_create(void **state)
{
    struct apply_case c = {.f = fake_new(1, 0, 1)};
    run_apply(&c, GM_AGENT_MIG, "[{\"migDevices\":{\"1g.5gb\":7}}]", 1);
    dump_log(c.f);
    assert_int_equal(c.rc, 0);
    assert_true(c.res->ok);
    assert_true(c.res->changed);
    assert_int_equal(c.res->needs, GM_NEEDS_NONE);
    int mig = logged(c.f, "-i 0 -mig 1", 0);
    int reset = logged(c.f, "-i 0 -r", 0);
    int create = logged(c.f,
                        "mig -i 0 -cgi 1g.5gb,1g.5gb,1g.5gb,1g.5gb,"
                        "1g.5gb,1g.5gb,1g.5gb -C",
                        0);
    assert_true(mig >= 0 && reset > mig && create > reset);
    assert_true(logged(c.f, "-L", create) > create);
    assert_int_equal(instances_of(c.res, 0, "1g.5gb"), 7);
    assert_int_equal(c.res->snap.gpus[0].mig_current, GM_MIG_ENABLED);
    case_free(&c);
}

static void test_a100_reset_not_allowed(void **state)
{
    struct apply_case c = {.f = fake_new(1, 0, 1)};
    run_apply(&c, GM_AGENT_MIG, "[{\"migDevices\":{\"1g.5gb\":7}}]", 0);
    assert_int_not_equal(c.rc, 0);
    assert_false(c.res->ok);
    assert_string_equal(c.res->reason, "ResetRequired");
    assert_int_equal(c.res->needs, GM_NEEDS_RESET);
    assert_non_null(strstr(c.res->message, "pending enable state"));
    assert_int_equal(logged(c.f, "-i 0 -r", 0), -1);
    assert_int_equal(logged(c.f, "mig -i 0 -cgi", 0), -1);
    /* The pending mode is what the result reports. */
    assert_int_equal(c.res->snap.gpus[0].mig_current, GM_MIG_DISABLED);
    assert_int_equal(c.res->snap.gpus[0].mig_pending, GM_MIG_ENABLED);

    /* Resuming after the reset (done by someone else) finishes the job. */
    c.f->g[0].cur = 1;
    run_apply(&c, GM_AGENT_MIG, "[{\"migDevices\":{\"1g.5gb\":7}}]", 0);
    assert_int_equal(c.rc, 0);
    assert_int_equal(logged(c.f, "-i 0 -mig", 0), -1);
    case_free(&c);
}

static void test_a100_reset_unsupported(void **state)
{
    struct apply_case c = {.f = fake_new(1, 0, 0)};
    run_apply(&c, GM_AGENT_MIG, "[{\"migDevices\":{\"1g.5gb\":7}}]", 1);
    assert_false(c.res->ok);
    assert_string_equal(c.res->reason, "RebootRequired");
    assert_int_equal(c.res->needs, GM_NEEDS_REBOOT);
    assert_non_null(strstr(c.res->message, "is not supported"));
    assert_true(logged(c.f, "-i 0 -r", 0) >= 0);
    assert_int_equal(logged(c.f, "mig -i 0 -cgi", 0), -1);
    case_free(&c);
}

static void test_h100_immediate(void **state)
{
    struct apply_case c = {.f = fake_new(2, 1, 0)};
    run_apply(&c, GM_AGENT_MIG,
              "[{\"devices\":\"all\",\"migEnabled\":true,\"migDevices\":"
              "{\"1g.10gb\":1,\"2g.20gb\":1,\"3g.40gb\":1}}]",
              0);
    dump_log(c.f);
    assert_int_equal(c.rc, 0);
    assert_int_equal(logged(c.f, "-i 0 -r", 0), -1);
    /* Largest placement first. */
    assert_true(logged(c.f, "mig -i 0 -cgi 3g.40gb,2g.20gb,1g.10gb -C", 0) >=
                0);
    assert_true(logged(c.f, "mig -i 1 -cgi 3g.40gb,2g.20gb,1g.10gb -C", 0) >=
                0);
    for (int g = 0; g < 2; g++) {
        assert_int_equal(instances_of(c.res, g, "3g.40gb"), 1);
        assert_int_equal(instances_of(c.res, g, "1g.10gb"), 1);
    }
    case_free(&c);
}

/* The process of a pod deleted with --force outlives its API object until
 * the kubelet has stopped it: apply looks again each second, for up to
 * in_use_wait_ms, before it refuses. */
struct in_use_wait {
    struct fake *f;
    int sleeps;
    int exit_after; /* the process exits after this many sleeps; 0: never */
    int slept_ms;
};

static void in_use_sleep(void *ctx, int ms)
{
    struct in_use_wait *w = ctx;
    w->sleeps++;
    w->slept_ms += ms;
    if (w->exit_after && w->sleeps >= w->exit_after)
        w->f->nprocs = 0;
}

static int apply_waiting(struct apply_case *c, struct in_use_wait *w,
                         int wait_ms)
{
    struct gm_agent_req req = {.mode = GM_AGENT_MIG,
                               .allow_reset = 1,
                               .in_use_wait_ms = wait_ms,
                               .sleep_ms = in_use_sleep,
                               .sleep_ctx = w};
    w->f = c->f;
    return run_apply_req(c, &req, "[{\"migDevices\":{\"1g.10gb\":7}}]");
}

static void test_gpu_in_use_waits_for_exit(void **state)
{
    struct apply_case c = {.f = fake_new(2, 1, 1)};
    struct in_use_wait w = {.exit_after = 3};
    c.f->nprocs = 1;
    c.f->proc_gpu[0] = 1;
    assert_int_equal(apply_waiting(&c, &w, 10000), 0);
    assert_true(c.res->ok);
    assert_int_equal(w.sleeps, 3);
    assert_int_equal(w.slept_ms, 3000);
    assert_true(logged(c.f, "mig -i 1 -cgi", 0) >= 0);
    /* Looked at again after each sleep, before anything changed. */
    int first_change = logged(c.f, "-i 0 -mig 1", 0);
    assert_true(first_change >= 0);
    int looks = 0;
    for (int i = 0; i < first_change; i++)
        looks += strstr(c.f->log[i], "--query-compute-apps") != NULL;
    assert_int_equal(looks, 4);
    case_free(&c);
}

static void test_gpu_in_use_after_wait(void **state)
{
    struct apply_case c = {.f = fake_new(2, 1, 1)};
    struct in_use_wait w = {0};
    c.f->nprocs = 1;
    c.f->proc_gpu[0] = 1;
    assert_int_not_equal(apply_waiting(&c, &w, 3000), 0);
    assert_string_equal(c.res->reason, "GPUInUse");
    assert_non_null(strstr(c.res->message, "still after waiting 3 s"));
    assert_int_equal(w.sleeps, 3);
    assert_int_equal(mutations(c.f), 0);
    assert_false(c.res->changed);
    case_free(&c);
}

static void test_gpu_in_use(void **state)
{
    struct apply_case c = {.f = fake_new(2, 1, 1)};
    c.f->nprocs = 1;
    c.f->proc_gpu[0] = 1;
    run_apply(&c, GM_AGENT_MIG, "[{\"migDevices\":{\"1g.10gb\":7}}]", 1);
    assert_false(c.res->ok);
    assert_string_equal(c.res->reason, "GPUInUse");
    assert_non_null(strstr(c.res->message, "1000"));
    assert_int_equal(mutations(c.f), 0);

    /* A process on a GPU the layout leaves alone does not block. */
    run_apply(&c, GM_AGENT_MIG,
              "[{\"devices\":[0],\"migDevices\":{\"1g.10gb\":7}}]", 1);
    assert_int_equal(c.rc, 0);
    assert_int_equal(c.res->snap.gpus[1].mig_current, GM_MIG_DISABLED);
    case_free(&c);
}

/* Something outside the stopped clients holds the GPU: nvidia-smi leaves
 * the mode pending and exits 0. A reset is tried when allowed (refused
 * while held). On Hopper the answer is then GPUInUse, not RebootRequired
 * (a reboot loses the pending mode and the holders start again at boot);
 * an A100 keeps the pending mode and applies it at boot, so it needs a
 * reboot. */
static void test_held_gpu_is_in_use(void **state)
{
    for (int hopper = 0; hopper <= 1; hopper++) {
        struct apply_case c = {.f = fake_new(1, hopper, 1)};
        c.f->held[0] = 1;
        run_apply(&c, GM_AGENT_MIG,
                  hopper ? "[{\"migDevices\":{\"1g.10gb\":7}}]"
                         : "[{\"migDevices\":{\"1g.5gb\":7}}]",
                  1);
        assert_false(c.res->ok);
        assert_string_equal(c.res->reason,
                            hopper ? "GPUInUse" : "RebootRequired");
        assert_int_equal(c.res->needs,
                         hopper ? GM_NEEDS_NONE : GM_NEEDS_REBOOT);
        assert_non_null(strstr(c.res->message, "In use by another client"));
        /* The reset was tried (a short-lived holder would have gone), and
         * refused. */
        assert_true(logged(c.f, "-i 0 -r", 0) >= 0);
        assert_int_equal(logged(c.f, "mig -i 0 -cgi", 0), -1);
        assert_int_equal(c.res->snap.gpus[0].mig_pending, GM_MIG_ENABLED);
        case_free(&c);
        /* Without leave to reset, GPUInUse too, not ResetRequired. */
        struct apply_case d = {.f = fake_new(1, hopper, 1)};
        d.f->held[0] = 1;
        run_apply(&d, GM_AGENT_MIG,
                  hopper ? "[{\"migDevices\":{\"1g.10gb\":7}}]"
                         : "[{\"migDevices\":{\"1g.5gb\":7}}]",
                  0);
        assert_string_equal(d.res->reason, "GPUInUse");
        assert_int_equal(logged(d.f, "-i 0 -r", 0), -1);
        case_free(&d);
    }
}

/* An earlier run set MIG mode on an H100 while something held it, so the
 * mode was left pending; the holder has gone since. Hopper applies a mode
 * without a reset: this run sets it again, and neither resets (which a VM
 * may not support: that was GPUInUse, "held", with nothing holding it) nor
 * asks for one. Both ways. */
static void test_h100_pending_set_again(void **state)
{
    for (int on = 1; on >= 0; on--) {
        for (int allow_reset = 0; allow_reset <= 1; allow_reset++) {
            struct apply_case c = {.f = fake_new(1, 1, 0)};
            c.f->g[0].cur = !on;
            c.f->g[0].pend = on;
            run_apply(&c, on ? GM_AGENT_MIG : GM_AGENT_FULL,
                      on ? "[{\"migDevices\":{\"1g.10gb\":7}}]" : NULL,
                      allow_reset);
            dump_log(c.f);
            assert_int_equal(c.rc, 0);
            assert_true(c.res->ok);
            assert_true(logged(c.f, on ? "-i 0 -mig 1" : "-i 0 -mig 0", 0) >=
                        0);
            assert_int_equal(logged(c.f, "-i 0 -r", 0), -1);
            assert_int_equal(c.res->snap.gpus[0].mig_current,
                             on ? GM_MIG_ENABLED : GM_MIG_DISABLED);
            assert_int_equal(instances_of(c.res, 0, "1g.10gb"), on ? 7 : 0);
            case_free(&c);
        }
    }
}

/* Which names keep a pending mode across a reboot: the Ampere MIG GPUs,
 * matched as words ("RTX A3000" is not an A30). */
static void test_held_gpu_reboot_by_name(void **state)
{
    static const struct {
        const char *name;
        const char *reason;
    } cases[] = {
        {"NVIDIA A30", "RebootRequired"},
        {"NVIDIA A800-SXM4-80GB", "RebootRequired"},
        {"NVIDIA A100X", "RebootRequired"},
        {"NVIDIA RTX A3000", "GPUInUse"},
        {"NVIDIA H200", "GPUInUse"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct apply_case c = {.f = fake_new(1, 0, 1)};
        c.f->g[0].name = cases[i].name;
        c.f->held[0] = 1;
        run_apply(&c, GM_AGENT_MIG, "[{\"migDevices\":{\"1g.5gb\":7}}]", 1);
        assert_string_equal(c.res->reason, cases[i].reason);
        case_free(&c);
    }
}

/* -lgip lists the profiles of MIG-enabled GPUs only: a list read while
 * only GPU 0 had MIG on must be read again once GPU 1 is enabled, or GPU 1
 * would fail with UnknownProfile after its mode had changed. */
static void test_profiles_read_again_after_enabling(void **state)
{
    struct apply_case c = {.f = fake_new(2, 0, 1)};
    c.f->g[0].cur = c.f->g[0].pend = 1;
    run_apply(&c, GM_AGENT_MIG, "[{\"migDevices\":{\"1g.5gb\":7}}]", 1);
    dump_log(c.f);
    assert_int_equal(c.rc, 0);
    assert_int_equal(instances_of(c.res, 0, "1g.5gb"), 7);
    assert_int_equal(instances_of(c.res, 1, "1g.5gb"), 7);
    case_free(&c);
}

/* An earlier run enabled MIG on both GPUs and reset only GPU 0 (its pod
 * ended before GPU 1's reset): this run sets no mode, so only the reset
 * puts GPU 1 in -lgip, which must be read again after it. */
static void test_profiles_read_again_after_reset(void **state)
{
    struct apply_case c = {.f = fake_new(2, 0, 1)};
    c.f->g[0].cur = c.f->g[0].pend = 1;
    c.f->g[1].pend = 1;
    run_apply(&c, GM_AGENT_MIG, "[{\"migDevices\":{\"1g.5gb\":7}}]", 1);
    dump_log(c.f);
    assert_int_equal(c.rc, 0);
    assert_int_equal(logged(c.f, "-mig 1", 0), -1);
    assert_true(logged(c.f, "-i 1 -r", 0) >= 0);
    assert_int_equal(instances_of(c.res, 1, "1g.5gb"), 7);
    case_free(&c);
}

static void test_insufficient_resources(void **state)
{
    struct apply_case c = {.f = fake_new(1, 1, 0)};
    /* More than the profile's total: refused after enabling, before any
     * instance is created. */
    run_apply(&c, GM_AGENT_MIG, "[{\"migDevices\":{\"1g.20gb\":5}}]", 0);
    assert_string_equal(c.res->reason, "InsufficientResources");
    assert_int_equal(logged(c.f, "mig -i 0 -cgi", 0), -1);

    /* Fits by counts, not by placements: refused before destroying. */
    c.f->g[0].cur = c.f->g[0].pend = 1;
    run_apply(&c, GM_AGENT_MIG,
              "[{\"migDevices\":{\"4g.40gb\":1,\"3g.40gb\":1,\"1g.10gb\":1}}]",
              0);
    assert_string_equal(c.res->reason, "InsufficientResources");
    assert_non_null(strstr(c.res->message, "placements"));
    assert_int_equal(mutations(c.f), 0);

    /* nvidia-smi's own refusal at create time. */
    run_apply(&c, GM_AGENT_MIG,
              "[{\"migDevices\":{\"3g.40gb\":1,\"1g.10gb\":4}}]", 0);
    assert_string_equal(c.res->reason, "InsufficientResources");
    assert_non_null(strstr(c.res->message, "Insufficient Resources"));
    case_free(&c);
}

static void test_unknown_profile(void **state)
{
    struct apply_case c = {.f = fake_new(1, 0, 1)};
    c.f->g[0].cur = c.f->g[0].pend = 1;
    run_apply(&c, GM_AGENT_MIG, "[{\"migDevices\":{\"1g.20gb\":2}}]", 1);
    assert_string_equal(c.res->reason, "UnknownProfile");
    assert_non_null(strstr(c.res->message, "1g.20gb"));
    assert_non_null(strstr(c.res->message, "3g.20gb"));
    assert_int_equal(mutations(c.f), 0);
    case_free(&c);
}

static void test_unsupported_gpu(void **state)
{
    struct apply_case c = {.f = fake_new(1, 0, 1)};
    c.f->g[0].profiles = NULL;
    c.f->g[0].name = "Tesla T4";
    run_apply(&c, GM_AGENT_MIG, "[{\"migDevices\":{\"1g.5gb\":7}}]", 1);
    assert_string_equal(c.res->reason, "UnsupportedGPU");
    assert_int_equal(mutations(c.f), 0);
    run_apply(&c, GM_AGENT_MIG,
              "[{\"devices\":[0],\"migDevices\":{\"1g.5gb\":7}}]", 1);
    assert_string_equal(c.res->reason, "UnsupportedGPU");
    /* full on a GPU without MIG has nothing to do. */
    run_apply(&c, GM_AGENT_FULL, NULL, 1);
    assert_int_equal(c.rc, 0);
    assert_false(c.res->changed);
    case_free(&c);
}

/* A command that changes the GPUs and runs into the timeout may have
 * acted before it was killed: the result says changed, so the controller
 * never takes the hardware for untouched. */
static void test_timed_out_change_counts_as_changed(void **state)
{
    struct apply_case c = {.f = fake_new(1, 0, 1)};
    c.f->hang = "-mig 1";
    run_apply(&c, GM_AGENT_MIG, "[{\"migDevices\":{\"3g.20gb\":2}}]", 1);
    assert_int_not_equal(c.rc, 0);
    assert_string_equal(c.res->reason, "NvidiaSmiFailed");
    assert_non_null(strstr(c.res->message, "timed out"));
    assert_true(c.res->changed);
    case_free(&c);
}

static void test_full_mode_destroys_in_order(void **state)
{
    struct apply_case c = {.f = fake_new(1, 0, 1)};
    run_apply(&c, GM_AGENT_MIG, "[{\"migDevices\":{\"3g.20gb\":2}}]", 1);
    assert_int_equal(c.rc, 0);
    run_apply(&c, GM_AGENT_FULL, NULL, 1);
    dump_log(c.f);
    assert_int_equal(c.rc, 0);
    int dci = logged(c.f, "mig -i 0 -dci", 0);
    int dgi = logged(c.f, "mig -i 0 -dgi", 0);
    int off = logged(c.f, "-i 0 -mig 0", 0);
    int reset = logged(c.f, "-i 0 -r", 0);
    assert_true(dci >= 0 && dgi > dci && off > dgi && reset > off);
    assert_int_equal(c.res->snap.gpus[0].mig_current, GM_MIG_DISABLED);
    assert_int_equal(c.res->snap.ngis, 0);

    /* vgpu wants the same hardware state: nothing to do. */
    run_apply(&c, GM_AGENT_VGPU, NULL, 1);
    assert_int_equal(c.rc, 0);
    assert_false(c.res->changed);
    assert_int_equal(mutations(c.f), 0);
    case_free(&c);
}

static void test_idempotent_reapply(void **state)
{
    const char *layout = "[{\"devices\":[0],\"migDevices\":{\"1g.5gb\":7}},"
                         "{\"migDevices\":{\"3g.20gb\":2}}]";
    struct apply_case c = {.f = fake_new(2, 0, 1)};
    run_apply(&c, GM_AGENT_MIG, layout, 1);
    assert_int_equal(c.rc, 0);
    assert_int_equal(instances_of(c.res, 0, "1g.5gb"), 7);
    assert_int_equal(instances_of(c.res, 1, "3g.20gb"), 2);
    run_apply(&c, GM_AGENT_MIG, layout, 1);
    assert_int_equal(c.rc, 0);
    assert_false(c.res->changed);
    assert_int_equal(mutations(c.f), 0);
    assert_non_null(strstr(c.res->message, "nothing changed"));

    /* A lost compute instance is repaired: GPU 1 only. */
    c.f->g[1].gis[0].ci = 0;
    run_apply(&c, GM_AGENT_MIG, layout, 1);
    assert_int_equal(c.rc, 0);
    assert_int_equal(logged(c.f, "mig -i 0", 0), -1);
    assert_true(logged(c.f, "mig -i 1 -dci", 0) >= 0);
    assert_true(logged(c.f, "mig -i 1 -cgi 3g.20gb,3g.20gb -C", 0) >= 0);
    case_free(&c);
}

static void test_layout_beyond_node(void **state)
{
    struct apply_case c = {.f = fake_new(1, 1, 1)};
    run_apply(&c, GM_AGENT_MIG,
              "[{\"devices\":[3],\"migDevices\":{\"1g.10gb\":1}}]", 1);
    assert_string_equal(c.res->reason, "InvalidArgument");
    assert_int_equal(mutations(c.f), 0);
    case_free(&c);
}

static void test_mode_change_refused(void **state)
{
    struct apply_case c = {.f = fake_new(1, 1, 1)};
    c.f->huge = "Unable to enable MIG Mode for GPU 00000000:07:00.0: Unknown "
                "Error";
    run_apply(&c, GM_AGENT_MIG, "[{\"migDevices\":{\"1g.10gb\":1}}]", 1);
    assert_string_equal(c.res->reason, "NvidiaSmiFailed");
    assert_non_null(strstr(c.res->message, "exit 255"));
    assert_non_null(strstr(c.res->message, "Unknown Error"));
    case_free(&c);
}

/* ---- result JSON ---- */

static json_object *parse_result(const char *js)
{
    json_object *o = json_tokener_parse(js);
    if (o == NULL)
        fail_msg("not JSON: %s", js);
    return o;
}

static void test_result_size_cap(void **state)
{
    struct gm_agent_result *res = calloc(1, sizeof(*res));
    char buf[GM_AGENT_RESULT_MAX];
    assert_non_null(res);
    gm_agent_result_init(res, "probe");
    res->detail = 1;
    res->snap.ngpus = GM_AGENT_MAX_GPUS;
    for (size_t i = 0; i < res->snap.ngpus; i++) {
        struct gm_smi_gpu *g = &res->snap.gpus[i];
        g->index = (int)i;
        memset(g->name, 'N', sizeof(g->name) - 1);
        memset(g->uuid, 'U', sizeof(g->uuid) - 1);
        g->mig_current = g->mig_pending = GM_MIG_ENABLED;
        for (int k = 0; k < 7; k++) {
            struct gm_smi_gi *gi = &res->snap.gis[res->snap.ngis++];
            gi->gpu = (int)i;
            gi->id = k;
            snprintf(gi->profile, sizeof(gi->profile), "1g.%dgb", k + 5);
        }
    }
    /* A message full of characters JSON must escape. */
    char huge[10000];
    for (size_t i = 0; i < sizeof(huge) - 1; i++)
        huge[i] = "\"\\\n\x01\xff"[i % 5];
    huge[sizeof(huge) - 1] = '\0';
    gm_agent_fail(res, "NvidiaSmiFailed", GM_NEEDS_NONE, "%s", huge);

    size_t len = gm_agent_result_json(res, buf, sizeof(buf));
    assert_true(len < GM_AGENT_RESULT_MAX);
    assert_int_equal(strlen(buf), len);
    json_object *o = parse_result(buf);
    json_object *v;
    assert_true(json_object_object_get_ex(o, "reason", &v));
    assert_string_equal(json_object_get_string(v), "NvidiaSmiFailed");
    assert_true(json_object_object_get_ex(o, "message", &v));
    const char *m = json_object_get_string(v);
    assert_string_equal(m + strlen(m) - 3, "...");
    json_object_put(o);

    /* A short message keeps every detail. */
    gm_agent_result_init(res, "apply");
    res->has_mode = 1;
    res->mode = GM_AGENT_MIG;
    res->snap.ngpus = 1;
    res->snap.gpus[0].index = 0;
    res->snap.gpus[0].mig_current = GM_MIG_ENABLED;
    res->snap.gpus[0].mig_pending = GM_MIG_ENABLED;
    res->snap.ngis = 2;
    res->snap.gis[0].gpu = 0;
    snprintf(res->snap.gis[0].profile, GM_SMI_PROFILE_MAX, "1g.10gb");
    res->snap.gis[1] = res->snap.gis[0];
    len = gm_agent_result_json(res, buf, sizeof(buf));
    assert_true(len < GM_AGENT_RESULT_MAX);
    assert_non_null(strstr(buf, "\"instances\":{\"1g.10gb\":2}"));
    assert_non_null(strstr(buf, "\"mode\":\"mig\""));
    assert_non_null(strstr(buf, "\"needs\":\"none\""));
    assert_null(strstr(buf, "\"reason\""));
    free(res);
}

/* ---- layout and arguments ---- */

static void test_layout_rules(void **state)
{
    struct gm_layout l;
    char m[256];
    static const char *const bad[] = {
        "",
        "{}",
        "[]",
        "[{\"migDevices\":{\"1g.10gb;rm\":1}}]",
        "[{\"migDevices\":{\"1g.10gb\":8}}]",
        "[{\"migDevices\":{\"1g.10gb\":4,\"2g.20gb\":4}}]",
        "[{\"migDevices\":{\"1g.10gb\":-1}}]",
        "[{\"migDevices\":{\"1g.10gb\":1.5}}]",
        "[{\"migDevices\":{\"1g.10gb\":\"1\"}}]",
        "[{\"devices\":[-1],\"migDevices\":{\"1g.10gb\":1}}]",
        "[{\"devices\":[64],\"migDevices\":{\"1g.10gb\":1}}]",
        "[{\"devices\":[0,0],\"migDevices\":{\"1g.10gb\":1}}]",
        "[{\"devices\":[],\"migDevices\":{\"1g.10gb\":1}}]",
        "[{\"devices\":\"some\",\"migDevices\":{\"1g.10gb\":1}}]",
        "[{\"devices\":[\"0\"],\"migDevices\":{\"1g.10gb\":1}}]",
        "[{\"devices\":[0],\"migDevices\":{\"1g.10gb\":1}},"
        "{\"devices\":[0],\"migDevices\":{\"1g.10gb\":1}}]",
        "[{\"migDevices\":{\"1g.10gb\":1}},{\"devices\":\"all\","
        "\"migDevices\":{\"1g.10gb\":1}}]",
        "[{\"migEnabled\":true}]",
        "[{\"migEnabled\":false,\"migDevices\":{\"1g.10gb\":1}}]",
        "[{\"migEnabled\":\"yes\",\"migDevices\":{\"1g.10gb\":1}}]",
        "[{\"device-filter\":[\"0x20B010DE\"],\"migDevices\":{\"1g.10gb\":1}}]",
        "[{\"migDevices\":{\"1g.10gb\":1}}] trailing",
        "[{\"migDevices\":{\"1g.10gb\":1}}",
        "[1]",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (gm_layout_parse(bad[i], &l, m, sizeof(m)) != -EINVAL)
            fail_msg("accepted layout %s", bad[i]);
        assert_true(strlen(m) > 0);
    }
    assert_int_equal(gm_layout_parse(NULL, &l, m, sizeof(m)), -EINVAL);

    assert_int_equal(
        gm_layout_parse("[{\"devices\":[1,2],\"migEnabled\":true,"
                        "\"migDevices\":{\"1g.10gb\":2,\"3g.40gb\":1,"
                        "\"2g.20gb\":0}},{\"migEnabled\":false}]",
                        &l, m, sizeof(m)),
        0);
    assert_int_equal(l.nentries, 2);
    assert_int_equal(l.entries[0].nprofiles, 2);
    int expl = -1;
    assert_ptr_equal(gm_layout_for_gpu(&l, 2, &expl), &l.entries[0]);
    assert_int_equal(expl, 1);
    assert_ptr_equal(gm_layout_for_gpu(&l, 0, &expl), &l.entries[1]);
    assert_int_equal(expl, 0);
    assert_false(l.entries[1].mig_enabled);

    assert_int_equal(gm_layout_parse("[{\"devices\":[0],\"migDevices\":"
                                     "{\"1g.10gb\":1}}]",
                                     &l, m, sizeof(m)),
                     0);
    assert_null(gm_layout_for_gpu(&l, 1, NULL));
}

static int fake_reboot_calls;

static int fake_reboot(void)
{
    fake_reboot_calls++;
    return -EPERM;
}

/* The node's boot ID as the fake kernel reports it; NULL: unreadable. */
static const char *fake_boot = "7f0c9a6e-0d2b-4bd1-a3c2-5e1f00000001";

static int fake_boot_id(char *buf, size_t cap)
{
    if (fake_boot == NULL)
        return -ENOENT;
    snprintf(buf, cap, "%s", fake_boot);
    return 0;
}

/* Runs gm_agent_main in-process with the fake and returns the exit code;
 * the result lands in *json (caller frees). */
static int run_main(struct fake *f, const char *const *argv_in, char **json)
{
    char tl[] = "/tmp/gm-agent-test-XXXXXX";
    int fd = mkstemp(tl);
    assert_true(fd >= 0);
    close(fd);
    char *argv[32];
    char tlarg[64];
    int argc = 0;
    snprintf(tlarg, sizeof(tlarg), "--termination-log=%s", tl);
    argv[argc++] = (char *)(uintptr_t) "gpumode-agent";
    for (; argv_in[argc - 1]; argc++)
        argv[argc] = (char *)(uintptr_t)argv_in[argc - 1];
    argv[argc++] = tlarg;
    argv[argc++] = (char *)(uintptr_t) "--log-level=error";
    argv[argc] = NULL;
    struct gm_smi_runner r = {.run = fake_run, .ctx = f};
    struct gm_agent_hooks h = {
        .runner = &r, .reboot = fake_reboot, .boot_id = fake_boot_id};
    int rc = gm_agent_main(argc, argv, &h);
    FILE *fp = fopen(tl, "r");
    assert_non_null(fp);
    *json = calloc(1, GM_AGENT_RESULT_MAX + 1);
    assert_non_null(*json);
    size_t n = fread(*json, 1, GM_AGENT_RESULT_MAX, fp);
    assert_true(n < GM_AGENT_RESULT_MAX);
    fclose(fp);
    unlink(tl);
    return rc;
}

static void expect_usage(struct fake *f, const char *const *argv)
{
    char *js;
    int rc = run_main(f, argv, &js);
    if (rc != 2)
        fail_msg("%s ...: exit %d, want 2: %s", argv[0], rc, js);
    assert_non_null(strstr(js, "\"reason\":\"InvalidArgument\""));
    json_object_put(parse_result(js));
    free(js);
}

static void test_cli_validation(void **state)
{
    struct fake *f = fake_new(1, 1, 1);
    const char *const c1[] = {"apply",
                              "--mode",
                              "mig",
                              "--layout",
                              "[{\"migDevices\":{\"1g.10gb;rm\":1}}]",
                              NULL};
    const char *const c2[] = {"apply",
                              "--mode",
                              "mig",
                              "--layout",
                              "[{\"devices\":[-1],\"migDevices\":"
                              "{\"1g.10gb\":1}}]",
                              NULL};
    const char *const c3[] = {"apply", "--mode", "bogus", NULL};
    const char *const c4[] = {"apply", NULL};
    const char *const c5[] = {"apply",    "--mode", "full",
                              "--layout", "[]",     NULL};
    const char *const c6[] = {"apply", "--mode", "mig", NULL};
    const char *const c7[] = {"probe", "--mode", "mig", NULL};
    const char *const c8[] = {"probe", "--frobnicate", NULL};
    const char *const c9[] = {"dance", NULL};
    const char *const c10[] = {"probe", "--timeout", "0", NULL};
    const char *const c11[] = {"probe", "--nvidia-smi", NULL};
    const char *const c12[] = {"reboot", NULL};
    const char *const c13[] = {"probe", "--in-use-wait", "5", NULL};
    const char *const c14[] = {"apply",         "--mode", "full",
                               "--in-use-wait", "-1",     NULL};
    const char *const c15[] = {"apply",         "--mode", "full",
                               "--in-use-wait", "3601",   NULL};
    const char *const *all[] = {c1, c2,  c3,  c4,  c5,  c6,  c7, c8,
                                c9, c10, c11, c12, c13, c14, c15};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        expect_usage(f, all[i]);
    assert_int_equal(f->nlog, 0);

    char *js;
    const char *const ok[] = {"apply",
                              "--mode=mig",
                              "--allow-reset",
                              "--allow-reboot",
                              "--layout",
                              "[{\"migDevices\":{\"1g.10gb\":7}}]",
                              NULL};
    assert_int_equal(run_main(f, ok, &js), 0);
    assert_non_null(strstr(js, "\"ok\":true"));
    assert_non_null(strstr(js, "\"instances\":{\"1g.10gb\":7}"));
    free(js);

    const char *const probe[] = {"probe", NULL};
    assert_int_equal(run_main(f, probe, &js), 0);
    assert_non_null(strstr(js, "\"gpuInstances\":[{"));
    assert_non_null(strstr(js, "\"pciDeviceId\":\"0x233010DE\""));
    free(js);
    free(f);
}

static void test_cli_reboot(void **state)
{
    struct gm_agent_hooks h = {.reboot = fake_reboot};
    char *argv[] = {
        (char *)(uintptr_t) "gpumode-agent", (char *)(uintptr_t) "reboot",
        (char *)(uintptr_t) "--confirm",
        (char *)(uintptr_t) "--termination-log=/nonexistent/x", NULL};
    fake_reboot_calls = 0;
    assert_int_equal(gm_agent_main(4, argv, &h), 1);
    assert_int_equal(fake_reboot_calls, 1);
}

/* A reboot helper carries the boot it is meant to end: started again on
 * the next boot (restartPolicy Never is at least once), it must not
 * reboot the node a second time. */
static void test_cli_reboot_once_per_boot(void **state)
{
    struct fake *f = fake_new(1, 0, 1);
    char *js;
    const char *const same[] = {"reboot", "--confirm", "--boot-id",
                                "7f0c9a6e-0d2b-4bd1-a3c2-5e1f00000001", NULL};
    const char *const older[] = {"reboot", "--confirm", "--boot-id",
                                 "7f0c9a6e-0d2b-4bd1-a3c2-5e1f00000000", NULL};

    fake_reboot_calls = 0;
    assert_int_equal(run_main(f, same, &js), 1);
    assert_int_equal(fake_reboot_calls, 1);
    assert_non_null(strstr(js, "\"reason\":\"RebootFailed\""));
    free(js);

    assert_int_equal(run_main(f, older, &js), 0);
    assert_int_equal(fake_reboot_calls, 1);
    assert_non_null(strstr(js, "\"ok\":true"));
    assert_non_null(strstr(js, "rebooted since"));
    assert_non_null(strstr(js, "5e1f00000000"));
    free(js);

    /* Unable to tell the boots apart, it does not reboot at all. */
    fake_boot = NULL;
    assert_int_equal(run_main(f, same, &js), 1);
    fake_boot = "7f0c9a6e-0d2b-4bd1-a3c2-5e1f00000001";
    assert_int_equal(fake_reboot_calls, 1);
    assert_non_null(strstr(js, "cannot read the node's boot ID"));
    free(js);

    const char *const bad[] = {"reboot", "--confirm", "--boot-id", "x;reboot",
                               NULL};
    expect_usage(f, bad);
    const char *const probe[] = {"probe", "--boot-id", "abc", NULL};
    expect_usage(f, probe);
    assert_int_equal(fake_reboot_calls, 1);

    /* The real source is the kernel's, one UUID. */
    char real[128];
    assert_int_equal(gm_agent_read_boot_id(real, sizeof(real)), 0);
    assert_int_equal(strlen(real), 36);
    free(f);
}

/* ---- the real runner and the built binary ---- */

static void test_exec_runner(void **state)
{
    struct gm_smi_exec ex = {.path = "/bin/sh", .timeout_ms = 5000};
    struct gm_smi_out o;
    const char *const echo[] = {"-c", "printf 'a b'; printf err >&2; exit 3",
                                NULL};
    assert_int_equal(gm_smi_exec_run(&ex, echo, &o), 0);
    assert_int_equal(o.status, 3);
    assert_string_equal(o.out, "a b");
    assert_string_equal(o.err, "err");
    gm_smi_out_free(&o);

    /* Arguments arrive intact: no shell splitting or globbing. */
    const char *const argv[] = {
        "-c", "printf '%s|' \"$@\"", "x", "a b", "*", "$(id)", NULL};
    assert_int_equal(gm_smi_exec_run(&ex, argv, &o), 0);
    assert_string_equal(o.out, "a b|*|$(id)|");
    gm_smi_out_free(&o);

    const char *const flood[] = {"-c", "head -c 3000000 /dev/zero | tr '\\0' x",
                                 NULL};
    assert_int_equal(gm_smi_exec_run(&ex, flood, &o), 0);
    assert_true(o.truncated);
    assert_int_equal(strlen(o.out), GM_SMI_OUTPUT_MAX);
    gm_smi_out_free(&o);

    ex.timeout_ms = 300;
    const char *const slow[] = {"-c", "sleep 5", NULL};
    assert_int_equal(gm_smi_exec_run(&ex, slow, &o), 0);
    assert_true(o.timed_out);
    gm_smi_out_free(&o);

    ex.path = "/nonexistent/nvidia-smi";
    assert_int_equal(gm_smi_exec_run(&ex, slow, &o), -ENOENT);

    char p[64];
    unsetenv("NVIDIA_SMI");
    assert_int_equal(gm_smi_resolve_path("/x/smi", "/run/d", p, sizeof(p)), 0);
    assert_string_equal(p, "/x/smi");
    /* With a driver root the path is inside it: the runner chroots. */
    assert_int_equal(gm_smi_resolve_path(NULL, "/run/d/", p, sizeof(p)), 0);
    assert_string_equal(p, "/usr/bin/nvidia-smi");
    setenv("NVIDIA_SMI", "/opt/bin/nvidia-smi", 1);
    assert_int_equal(gm_smi_resolve_path(NULL, "/run/d", p, sizeof(p)), 0);
    assert_string_equal(p, "/opt/bin/nvidia-smi");
    assert_int_equal(gm_smi_resolve_path(NULL, "/run/d", p, 8), -ENAMETOOLONG);
    unsetenv("NVIDIA_SMI");
}

/* A driver root runs nvidia-smi chrooted there (as the GPU Operator's
 * `chroot /run/nvidia/driver nvidia-smi`), with the path inside it. */
static void test_exec_runner_chroot(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip(); /* chroot needs root, as in the privileged helper pod */
    char dir[] = "/tmp/gm-agent-root-XXXXXX";
    assert_non_null(mkdtemp(dir));
    /* The program must exist inside the root, not outside it. */
    struct gm_smi_exec ex = {
        .path = "/bin/sh", .root = dir, .timeout_ms = 5000};
    struct gm_smi_out o;
    const char *const pwd[] = {"-c", "pwd; test -d /tmp && echo whole", NULL};
    assert_int_equal(gm_smi_exec_run(&ex, pwd, &o), -ENOENT);
    /* A root that holds the whole system ("/usr/.." is "/" by another
     * name): the child starts in the root's top directory. */
    ex.root = "/usr/..";
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(dir), 0);
    assert_int_equal(gm_smi_exec_run(&ex, pwd, &o), 0);
    assert_int_equal(o.status, 0);
    assert_string_equal(o.out, "/\nwhole\n");
    gm_smi_out_free(&o);
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(rmdir(dir), 0);
}

/* In a driver root, nvidia-smi may be an absolute symlink that resolves
 * only inside it (Debian: /usr/bin/nvidia-smi -> /etc/alternatives/...):
 * it runs, where a check from outside the root called it missing. A shell
 * with its libraries stands in for nvidia-smi. */
static void test_exec_runner_chroot_symlink(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip(); /* chroot needs root, as in the privileged helper pod */
    char dir[] = "/tmp/gm-agent-root-XXXXXX", cmd[1024], link[256];
    assert_non_null(mkdtemp(dir));
    snprintf(cmd, sizeof(cmd),
             "set -e; cd %s; for f in /usr/bin/dash $(ldd /usr/bin/dash | "
             "grep -o '/[^ ]*'); do mkdir -p .$(dirname $f); cp $f .$f; done; "
             "mkdir -p etc/alternatives usr/local/bin; "
             "mv usr/bin/dash etc/alternatives/gm-smi",
             dir);
    assert_int_equal(system(cmd), 0);
    snprintf(link, sizeof(link), "%s/usr/local/bin/nvidia-smi", dir);
    assert_int_equal(symlink("/etc/alternatives/gm-smi", link), 0);
    struct gm_smi_exec ex = {
        .path = "/usr/local/bin/nvidia-smi", .root = dir, .timeout_ms = 5000};
    struct gm_smi_out o;
    const char *const hi[] = {"-c", "echo inside", NULL};
    assert_int_equal(gm_smi_exec_run(&ex, hi, &o), 0);
    assert_int_equal(o.status, 0);
    assert_string_equal(o.out, "inside\n");
    gm_smi_out_free(&o);
    /* A path missing inside the root is still told as missing. */
    ex.path = "/usr/bin/nvidia-smi";
    assert_int_equal(gm_smi_exec_run(&ex, hi, &o), -ENOENT);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    char *buf = calloc(1, 65536);
    assert_non_null(buf);
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void test_binary_end_to_end(void **state)
{
    const char *build = getenv("GM_BUILD");
    char bin[256], smi[512], cwd[256], tl[] = "/tmp/gm-agent-tl-XXXXXX";
    char argslog[] = "/tmp/gm-agent-args-XXXXXX";
    char tlarg[64], env[128];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    snprintf(bin, sizeof(bin), "%s/gpumode-agent", build ? build : "build");
    snprintf(smi, sizeof(smi), "%s/test/fixtures/smi/fake-nvidia-smi.sh", cwd);
    close(mkstemp(tl));
    close(mkstemp(argslog));
    snprintf(tlarg, sizeof(tlarg), "--termination-log=%s", tl);
    snprintf(env, sizeof(env), "FAKE_SMI_ARGS=%s", argslog);
    if (access(bin, X_OK) != 0)
        fail_msg("%s is not built", bin);

    const char *const extra[] = {env, NULL};
    struct gm_smi_exec ex = {
        .path = bin, .timeout_ms = 20000, .extra_env = extra};
    struct gm_smi_out o;
    const char *const probe[] = {"probe", "--nvidia-smi", smi, tlarg, NULL};
    assert_int_equal(gm_smi_exec_run(&ex, probe, &o), 0);
    if (o.status != 0)
        fail_msg("probe exit %d: %s %s", o.status, o.out, o.err);
    char *t = slurp(tl);
    assert_non_null(t);
    /* Stdout is the same JSON plus a newline. */
    assert_int_equal(strlen(o.out), strlen(t) + 1);
    assert_memory_equal(o.out, t, strlen(t));
    assert_non_null(strstr(t, "\"name\":\"NVIDIA A100-SXM4-40GB\""));
    assert_non_null(strstr(t, "\"instances\":{\"3g.20gb\":1}"));
    json_object_put(parse_result(t));
    free(t);
    gm_smi_out_free(&o);

    /* The script saw each argument as one word. */
    t = slurp(argslog);
    assert_non_null(t);
    assert_non_null(strstr(t, "<--query-gpu=" GM_SMI_GPU_FIELDS ">"
                              "<--format=csv,noheader,nounits>"));
    assert_non_null(strstr(t, "<mig><-lgi>"));
    free(t);

    /* A refusal exits 1 with a reason. */
    const char *const apply[] = {
        "apply", "--mode", "full", "--nvidia-smi", smi, "--in-use-wait",
        "0",     tlarg,    NULL};
    setenv("FAKE_SMI_BUSY", "1", 1);
    assert_int_equal(gm_smi_exec_run(&ex, apply, &o), 0);
    unsetenv("FAKE_SMI_BUSY");
    assert_int_equal(o.status, 1);
    t = slurp(tl);
    assert_non_null(strstr(t, "\"reason\":\"GPUInUse\""));
    free(t);
    gm_smi_out_free(&o);

    const char *const missing[] = {"probe", "--nvidia-smi", "/nonexistent",
                                   tlarg, NULL};
    assert_int_equal(gm_smi_exec_run(&ex, missing, &o), 0);
    assert_int_equal(o.status, 1);
    assert_non_null(strstr(o.out, "\"reason\":\"NvidiaSmiNotFound\""));
    gm_smi_out_free(&o);
    unlink(tl);
    unlink(argslog);
}

int main(void)
{
    gm_log_setup(GM_LOG_ERROR, 0);
    /* Never let a test write the real /dev/termination-log. */
    setenv("GPUMODE_TERMINATION_LOG", "/tmp/gm-agent-test-termination-log", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a100_enable_reset_create),
        cmocka_unit_test(test_a100_reset_not_allowed),
        cmocka_unit_test(test_a100_reset_unsupported),
        cmocka_unit_test(test_h100_immediate),
        cmocka_unit_test(test_gpu_in_use),
        cmocka_unit_test(test_gpu_in_use_waits_for_exit),
        cmocka_unit_test(test_gpu_in_use_after_wait),
        cmocka_unit_test(test_held_gpu_is_in_use),
        cmocka_unit_test(test_h100_pending_set_again),
        cmocka_unit_test(test_held_gpu_reboot_by_name),
        cmocka_unit_test(test_profiles_read_again_after_enabling),
        cmocka_unit_test(test_profiles_read_again_after_reset),
        cmocka_unit_test(test_insufficient_resources),
        cmocka_unit_test(test_unknown_profile),
        cmocka_unit_test(test_unsupported_gpu),
        cmocka_unit_test(test_timed_out_change_counts_as_changed),
        cmocka_unit_test(test_full_mode_destroys_in_order),
        cmocka_unit_test(test_idempotent_reapply),
        cmocka_unit_test(test_layout_beyond_node),
        cmocka_unit_test(test_mode_change_refused),
        cmocka_unit_test(test_result_size_cap),
        cmocka_unit_test(test_layout_rules),
        cmocka_unit_test(test_cli_validation),
        cmocka_unit_test(test_cli_reboot),
        cmocka_unit_test(test_cli_reboot_once_per_boot),
        cmocka_unit_test(test_exec_runner),
        cmocka_unit_test(test_exec_runner_chroot),
        cmocka_unit_test(test_exec_runner_chroot_symlink),
        cmocka_unit_test(test_binary_end_to_end),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
