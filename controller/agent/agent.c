#include "agent/agent.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"

#define MAX_GIP 256

/* What apply wants for one GPU. */
struct target {
    int touch; /* 0: no entry covers it, or full/vgpu on a non-MIG GPU */
    int mig;   /* wanted MIG mode */
    int nprofiles;
    struct gm_layout_profile profiles[GM_LAYOUT_MAX_PROFILES];
    int change; /* does not match yet */
};

/* One apply or probe run; heap-allocated because the tables are large. */
struct run {
    const struct gm_smi_runner *r;
    const struct gm_agent_req *req;
    struct gm_agent_result *res;
    struct target tgt[GM_AGENT_MAX_GPUS];
    int procs_overflow;
    int have_profiles;
    size_t ngip;
    struct gm_smi_gip gip[MAX_GIP];
    size_t ngipp;
    struct gm_smi_gipp gipp[MAX_GIP];
    char smimsg[GM_AGENT_MESSAGE_MAX]; /* nvidia-smi's words, for results */
    /* nvidia-smi said this GPU is held ("In use by another client") while
     * changing its mode or resetting it, even when it exited 0; -1: none. */
    int in_use_gpu;
    char in_use_msg[GM_AGENT_MESSAGE_MAX];
};

static const char *const mode_names[] = {"full", "vgpu", "mig"};

const char *gm_agent_mode_name(enum gm_agent_mode m)
{
    return (unsigned)m < 3 ? mode_names[m] : "unknown";
}

int gm_agent_parse_mode(const char *s, enum gm_agent_mode *out)
{
    for (int i = 0; i < 3; i++) {
        if (s && strcmp(s, mode_names[i]) == 0) {
            *out = (enum gm_agent_mode)i;
            return 0;
        }
    }
    return -EINVAL;
}

void gm_agent_result_init(struct gm_agent_result *res, const char *command)
{
    memset(res, 0, sizeof(*res));
    res->command = command;
    res->ok = 1;
}

bool gm_agent_boot_id_valid(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    return n > 0 && n <= 64 && strspn(id, "0123456789abcdefABCDEF-") == n;
}

static void printable(char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
            *s = '?';
    }
}

int gm_agent_fail(struct gm_agent_result *res, const char *reason,
                  enum gm_agent_needs needs, const char *fmt, ...)
{
    va_list ap;
    res->ok = 0;
    res->reason = reason;
    res->needs = needs;
    va_start(ap, fmt);
    vsnprintf(res->message, sizeof(res->message), fmt, ap);
    va_end(ap);
    printable(res->message);
    return -EIO;
}

/* ---- running nvidia-smi ---- */

static void join_args(const char *const *args, char *dst, size_t cap)
{
    size_t len = 0;
    dst[0] = '\0';
    for (size_t i = 0; args[i] && len + 1 < cap; i++) {
        int n = snprintf(dst + len, cap - len, "%s%s", i ? " " : "", args[i]);
        if (n < 0)
            break;
        len += (size_t)n;
    }
}

static void out_message(const struct gm_smi_out *o, char *dst, size_t cap)
{
    gm_smi_message(o->out, o->err, dst, cap);
    if (dst[0] == '\0')
        snprintf(dst, cap, "(no output)");
}

static void note(struct run *c, const struct gm_smi_out *o)
{
    char msg[GM_AGENT_MESSAGE_MAX];
    size_t len = strlen(c->smimsg);
    gm_smi_message(o->out, o->err, msg, sizeof(msg));
    if (msg[0] == '\0')
        return;
    snprintf(c->smimsg + len, sizeof(c->smimsg) - len, "%s%s", len ? " " : "",
             msg);
}

/* Runs nvidia-smi with args. Returns 0 with *o to be freed by the caller,
 * whatever the exit status; fails the result when the program is missing,
 * could not start, or ran past its timeout. */
static int smi(struct run *c, const char *const *args, struct gm_smi_out *o)
{
    char line[256];
    join_args(args, line, sizeof(line));
    int err = c->r->run(c->r->ctx, args, o);
    if (err == -ENOENT)
        return gm_agent_fail(c->res, "NvidiaSmiNotFound", GM_NEEDS_NONE,
                             "nvidia-smi not found or not executable");
    if (err)
        return gm_agent_fail(c->res, "NvidiaSmiFailed", GM_NEEDS_NONE,
                             "nvidia-smi %s: cannot run: %s", line,
                             strerror(-err));
    gm_info("nvidia-smi %s: exit %d", line, o->status);
    if (o->timed_out) {
        gm_smi_out_free(o);
        return gm_agent_fail(c->res, "NvidiaSmiFailed", GM_NEEDS_NONE,
                             "nvidia-smi %s: timed out", line);
    }
    return 0;
}

/* Runs a command that changes the GPUs: the result says changed from
 * before it runs, so one that times out or is killed midway, which may have
 * acted, is never reported as having left the hardware as it was (the
 * controller then rolls back or holds rather than trusting it untouched). */
static int smi_change(struct run *c, const char *const *args,
                      struct gm_smi_out *o)
{
    c->res->changed = 1;
    return smi(c, args, o);
}

/* The generic failure for an exit status we have no better word for. */
static int smi_failed(struct run *c, const char *const *args,
                      const struct gm_smi_out *o)
{
    char line[256];
    char msg[GM_AGENT_MESSAGE_MAX];
    join_args(args, line, sizeof(line));
    out_message(o, msg, sizeof(msg));
    return gm_agent_fail(c->res, "NvidiaSmiFailed", GM_NEEDS_NONE,
                         "nvidia-smi %s: exit %d: %s", line, o->status, msg);
}

static int bad_output(struct run *c, const char *const *args, int perr)
{
    char line[256];
    join_args(args, line, sizeof(line));
    return gm_agent_fail(c->res, "NvidiaSmiFailed", GM_NEEDS_NONE,
                         "nvidia-smi %s: unexpected output (%s)", line,
                         strerror(-perr));
}

/* ---- reading state ---- */

static int read_gpus(struct run *c, struct gm_agent_snapshot *s)
{
    static const char *const args[] = {"--query-gpu=" GM_SMI_GPU_FIELDS,
                                       "--format=csv,noheader,nounits", NULL};
    struct gm_smi_out o;
    int err = smi(c, args, &o);
    if (err)
        return err;
    if (o.status != 0) {
        err = smi_failed(c, args, &o);
        goto out;
    }
    err = gm_smi_parse_gpus(o.out, GM_SMI_GPU_FIELDS, s->gpus,
                            GM_AGENT_MAX_GPUS, &s->ngpus);
    if (err) {
        s->ngpus = 0;
        err = bad_output(c, args, err);
        goto out;
    }
    for (size_t i = 0; i < s->ngpus; i++) {
        for (size_t k = 0; k < i; k++) {
            if (s->gpus[i].index == s->gpus[k].index) {
                err = bad_output(c, args, -EBADMSG);
                goto out;
            }
        }
    }
out:
    gm_smi_out_free(&o);
    return err;
}

static int read_procs(struct run *c, struct gm_agent_snapshot *s)
{
    static const char *const args[] = {
        "--query-compute-apps=" GM_SMI_PROC_FIELDS, "--format=csv,noheader",
        NULL};
    struct gm_smi_out o;
    int err = smi(c, args, &o);
    if (err)
        return err;
    if (o.status != 0) {
        err = smi_failed(c, args, &o);
        goto out;
    }
    err = gm_smi_parse_procs(o.out, s->procs, GM_AGENT_MAX_PROCS, &s->nprocs);
    if (err == -E2BIG) {
        /* More processes than we keep: enough to know the GPUs are busy. */
        c->procs_overflow = 1;
        err = 0;
    } else if (err) {
        s->nprocs = 0;
        err = bad_output(c, args, err);
    }
out:
    gm_smi_out_free(&o);
    return err;
}

static int any_mig_enabled(const struct gm_agent_snapshot *s)
{
    for (size_t i = 0; i < s->ngpus; i++) {
        if (s->gpus[i].mig_current == GM_MIG_ENABLED)
            return 1;
    }
    return 0;
}

/* -lgi and -lci exit non-zero when there is nothing to list; their words
 * tell that apart from a failure. */
static int list_ok(const struct gm_smi_out *o)
{
    unsigned f = gm_smi_scan(o->out) | gm_smi_scan(o->err);
    if (o->status == 0)
        return 1;
    if (f & GM_SMI_F_NOT_FOUND)
        return 1;
    return strstr(o->out, "No MIG-enabled devices found") != NULL ||
           strstr(o->err, "No MIG-enabled devices found") != NULL;
}

static int read_instances(struct run *c, struct gm_agent_snapshot *s)
{
    static const char *const gi_args[] = {"mig", "-lgi", NULL};
    static const char *const ci_args[] = {"mig", "-lci", NULL};
    struct gm_smi_out o;
    int err;

    s->ngis = 0;
    s->ncis = 0;
    if (!any_mig_enabled(s))
        return 0;
    err = smi(c, gi_args, &o);
    if (err)
        return err;
    if (!list_ok(&o))
        err = smi_failed(c, gi_args, &o);
    else if ((err = gm_smi_parse_gi(o.out, s->gis, GM_AGENT_MAX_INSTANCES,
                                    &s->ngis)) != 0)
        err = bad_output(c, gi_args, err);
    gm_smi_out_free(&o);
    if (err)
        return err;
    err = smi(c, ci_args, &o);
    if (err)
        return err;
    if (!list_ok(&o))
        err = smi_failed(c, ci_args, &o);
    else if ((err = gm_smi_parse_ci(o.out, s->cis, GM_AGENT_MAX_INSTANCES,
                                    &s->ncis)) != 0)
        err = bad_output(c, ci_args, err);
    gm_smi_out_free(&o);
    return err;
}

static int read_list(struct run *c, struct gm_agent_snapshot *s)
{
    static const char *const args[] = {"-L", NULL};
    struct gm_smi_list_gpu gpus[GM_AGENT_MAX_GPUS];
    size_t ngpus;
    struct gm_smi_out o;
    int err = smi(c, args, &o);
    if (err)
        return err;
    if (o.status != 0)
        err = smi_failed(c, args, &o);
    else if ((err = gm_smi_parse_list(o.out, gpus, GM_AGENT_MAX_GPUS, &ngpus,
                                      s->devs, GM_AGENT_MAX_INSTANCES,
                                      &s->ndevs)) != 0)
        err = bad_output(c, args, err);
    gm_smi_out_free(&o);
    return err;
}

static int read_state(struct run *c, int procs)
{
    struct gm_agent_snapshot *s = &c->res->snap;
    int err = read_gpus(c, s);
    if (err)
        return err;
    if (procs) {
        err = read_procs(c, s);
        if (err)
            return err;
    }
    return read_instances(c, s);
}

/* ---- deciding ---- */

static int capable(const struct gm_smi_gpu *g)
{
    return g->mig_current != GM_MIG_NA || g->mig_pending != GM_MIG_NA;
}

/* The compute slices of a profile: the digit before "g". */
static int gslices(const char *profile)
{
    return profile[0] >= '1' && profile[0] <= '9' ? profile[0] - '0' : 0;
}

static int gi_count(const struct gm_agent_snapshot *s, int gpu,
                    const char *profile)
{
    int n = 0;
    for (size_t i = 0; i < s->ngis; i++) {
        if (s->gis[i].gpu == gpu &&
            (profile == NULL || strcmp(s->gis[i].profile, profile) == 0))
            n++;
    }
    return n;
}

static int ci_count(const struct gm_agent_snapshot *s, int gpu)
{
    int n = 0;
    for (size_t i = 0; i < s->ncis; i++) {
        if (s->cis[i].gpu == gpu)
            n++;
    }
    return n;
}

/* Each GPU instance must hold exactly one compute instance spanning all
 * of it, which is what `-cgi ... -C` makes and what the device plugin
 * expects. Compute placements count compute slices from 0. */
static int cis_match(const struct gm_agent_snapshot *s, int gpu)
{
    for (size_t i = 0; i < s->ngis; i++) {
        const struct gm_smi_gi *g = &s->gis[i];
        int n = 0;
        if (g->gpu != gpu)
            continue;
        for (size_t k = 0; k < s->ncis; k++) {
            const struct gm_smi_ci *ci = &s->cis[k];
            if (ci->gpu != gpu || ci->gi != g->id)
                continue;
            if (ci->start != 0 || ci->size != gslices(g->profile))
                return 0;
            n++;
        }
        if (n != 1)
            return 0;
    }
    return ci_count(s, gpu) == gi_count(s, gpu, NULL);
}

static int target_total(const struct target *t)
{
    int n = 0;
    for (int i = 0; i < t->nprofiles; i++)
        n += t->profiles[i].count;
    return n;
}

static int layout_matches(const struct gm_agent_snapshot *s, int gpu,
                          const struct target *t)
{
    if (gi_count(s, gpu, NULL) != target_total(t))
        return 0;
    for (int i = 0; i < t->nprofiles; i++) {
        if (gi_count(s, gpu, t->profiles[i].name) != t->profiles[i].count)
            return 0;
    }
    return cis_match(s, gpu);
}

static int gpu_matches(const struct gm_agent_snapshot *s, size_t i,
                       const struct target *t)
{
    const struct gm_smi_gpu *g = &s->gpus[i];
    enum gm_mig_mode want = t->mig ? GM_MIG_ENABLED : GM_MIG_DISABLED;
    if (!t->touch)
        return 1;
    if (g->mig_current != want || g->mig_pending != want)
        return 0;
    return !t->mig || layout_matches(s, g->index, t);
}

static int plan(struct run *c)
{
    const struct gm_agent_snapshot *s = &c->res->snap;
    const struct gm_layout *l = c->req->layout;
    int any_capable = 0;

    for (size_t i = 0; i < s->ngpus; i++) {
        const struct gm_smi_gpu *g = &s->gpus[i];
        struct target *t = &c->tgt[i];
        memset(t, 0, sizeof(*t));
        any_capable |= capable(g);
        if (c->req->mode != GM_AGENT_MIG) {
            t->touch = capable(g);
            continue;
        }
        int expl = 0;
        const struct gm_layout_entry *e = gm_layout_for_gpu(l, g->index, &expl);
        if (e == NULL)
            continue;
        if (!capable(g)) {
            if (expl && e->mig_enabled)
                return gm_agent_fail(c->res, "UnsupportedGPU", GM_NEEDS_NONE,
                                     "GPU %d (%s) does not support MIG",
                                     g->index, g->name);
            continue;
        }
        t->touch = 1;
        t->mig = e->mig_enabled;
        t->nprofiles = e->nprofiles;
        memcpy(t->profiles, e->profiles, sizeof(t->profiles));
    }
    if (c->req->mode == GM_AGENT_MIG) {
        for (int k = 0; k < l->nentries; k++) {
            const struct gm_layout_entry *e = &l->entries[k];
            for (int d = 0; d < e->ndevices; d++) {
                size_t i;
                for (i = 0; i < s->ngpus; i++) {
                    if (s->gpus[i].index == e->devices[d])
                        break;
                }
                if (i == s->ngpus)
                    return gm_agent_fail(
                        c->res, "InvalidArgument", GM_NEEDS_NONE,
                        "layout names GPU %d but the node has %zu GPUs",
                        e->devices[d], s->ngpus);
            }
        }
        if (!any_capable)
            return gm_agent_fail(c->res, "UnsupportedGPU", GM_NEEDS_NONE,
                                 "No MIG-supported devices found.");
    }
    for (size_t i = 0; i < s->ngpus; i++)
        c->tgt[i].change = !gpu_matches(s, i, &c->tgt[i]);
    return 0;
}

static int any_change(const struct run *c)
{
    for (size_t i = 0; i < c->res->snap.ngpus; i++) {
        if (c->tgt[i].change)
            return 1;
    }
    return 0;
}

/* Maps a process to a GPU position by uuid; a MIG device uuid is looked up
 * in the -L list. -1 when unknown. */
static int proc_gpu(const struct gm_agent_snapshot *s,
                    const struct gm_smi_proc *p)
{
    for (size_t i = 0; i < s->ngpus; i++) {
        if (strcmp(s->gpus[i].uuid, p->gpu_uuid) == 0)
            return (int)i;
    }
    for (size_t d = 0; d < s->ndevs; d++) {
        if (strcmp(s->devs[d].uuid, p->gpu_uuid) != 0)
            continue;
        for (size_t i = 0; i < s->ngpus; i++) {
            if (s->gpus[i].index == s->devs[d].gpu)
                return (int)i;
        }
    }
    return -1;
}

/* 1 when a compute process runs on a GPU that must change, 0 when none
 * does; with fail, GPUInUse instead of 1. A process we cannot place counts
 * as using every GPU: being wrong that way costs a retry, the other way a
 * crashed job. */
static int check_in_use(struct run *c, int fail)
{
    struct gm_agent_snapshot *s = &c->res->snap;
    int listed = 0;

    if (c->procs_overflow)
        return !fail ? 1
                     : gm_agent_fail(c->res, "GPUInUse", GM_NEEDS_NONE,
                                     "more than %d compute processes are "
                                     "running",
                                     GM_AGENT_MAX_PROCS);
    for (size_t k = 0; k < s->nprocs; k++) {
        const struct gm_smi_proc *p = &s->procs[k];
        int i = proc_gpu(s, p);
        if (i < 0 && !listed) {
            int err = read_list(c, s);
            if (err)
                return err;
            listed = 1;
            i = proc_gpu(s, p);
        }
        if ((i < 0 || c->tgt[i].change) && !fail)
            return 1;
        if (i < 0 || c->tgt[i].change)
            return gm_agent_fail(
                c->res, "GPUInUse", GM_NEEDS_NONE,
                "compute process %d is using %s%d (%s); %zu process(es) in "
                "all",
                p->pid, i < 0 ? "an unknown GPU " : "GPU ",
                i < 0 ? -1 : s->gpus[i].index, p->gpu_uuid, s->nprocs);
    }
    return 0;
}

/* How often processes are looked at again while waiting for them. */
#define IN_USE_POLL_MS 1000

static void agent_sleep(struct run *c, int ms)
{
    if (c->req->sleep_ms) {
        c->req->sleep_ms(c->req->sleep_ctx, ms);
        return;
    }
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Refuses (GPUInUse) while a compute process still runs on a GPU that
 * must change after req->in_use_wait_ms. The processes of a pod deleted
 * with --force outlive its API object by up to its grace period; the
 * controller sees it gone and starts us meanwhile. The wait is measured on
 * the monotonic clock (each look runs nvidia-smi too), or as the sum of
 * the sleeps when a test sleeps for us. */
static int wait_not_in_use(struct run *c)
{
    int waited = 0, slept = 0, limit = c->req->in_use_wait_ms;
    long start = mono_ms();

    for (;;) {
        int busy = check_in_use(c, waited >= limit);
        if (busy < 0 && waited > 0 && c->res->reason &&
            strcmp(c->res->reason, "GPUInUse") == 0) {
            size_t len = strlen(c->res->message);
            snprintf(c->res->message + len, sizeof(c->res->message) - len,
                     "; still after waiting %d s for it to exit",
                     waited / 1000);
        }
        if (busy <= 0)
            return busy;
        if (waited == 0)
            gm_info("%zu compute process(es) on the GPUs to change; waiting "
                    "up to %d s for them to exit",
                    c->res->snap.nprocs, limit / 1000);
        agent_sleep(c, IN_USE_POLL_MS);
        slept += IN_USE_POLL_MS;
        waited = c->req->sleep_ms ? slept : (int)(mono_ms() - start);
        c->procs_overflow = 0;
        int err = read_procs(c, &c->res->snap);
        if (err)
            return err;
    }
}

/* ---- profiles and placements ---- */

static int load_profiles(struct run *c)
{
    static const char *const gip_args[] = {"mig", "-lgip", NULL};
    static const char *const gipp_args[] = {"mig", "-lgipp", NULL};
    struct gm_smi_out o;
    int err;

    if (c->have_profiles)
        return 0;
    err = smi(c, gip_args, &o);
    if (err)
        return err;
    err = gm_smi_parse_gip(o.out, c->gip, MAX_GIP, &c->ngip);
    if (err == -ENODEV || (gm_smi_scan(o.out) & GM_SMI_F_NO_MIG_DEVICES)) {
        char msg[GM_AGENT_MESSAGE_MAX];
        out_message(&o, msg, sizeof(msg));
        err = gm_agent_fail(c->res, "UnsupportedGPU", GM_NEEDS_NONE, "%s", msg);
    } else if (o.status != 0) {
        err = smi_failed(c, gip_args, &o);
    } else if (err) {
        err = bad_output(c, gip_args, err);
    }
    gm_smi_out_free(&o);
    if (err)
        return err;
    /* Placements only sharpen the fit check; without them nvidia-smi's own
     * answer at create time still decides. */
    err = smi(c, gipp_args, &o);
    if (err)
        return err;
    if (o.status != 0 ||
        gm_smi_parse_gipp(o.out, c->gipp, MAX_GIP, &c->ngipp) != 0) {
        gm_warn("nvidia-smi mig -lgipp: unusable output; placement check "
                "skipped");
        c->ngipp = 0;
    }
    gm_smi_out_free(&o);
    c->have_profiles = 1;
    return 0;
}

static const struct gm_smi_gip *find_gip(const struct run *c, int gpu,
                                         const char *profile)
{
    for (size_t i = 0; i < c->ngip; i++) {
        if (c->gip[i].gpu == gpu && strcmp(c->gip[i].profile, profile) == 0)
            return &c->gip[i];
    }
    return NULL;
}

static const struct gm_smi_gipp *find_gipp(const struct run *c, int gpu,
                                           int profile_id)
{
    for (size_t i = 0; i < c->ngipp; i++) {
        if (c->gipp[i].gpu == gpu && c->gipp[i].profile_id == profile_id)
            return &c->gipp[i];
    }
    return NULL;
}

/* One instance to place, in creation order. */
struct item {
    char profile[GM_SMI_PROFILE_MAX];
    int size; /* memory slices from -lgipp, else compute slices */
    const struct gm_smi_gipp *pl;
};

static int memory_gb(const char *profile)
{
    const char *p = strchr(profile, '.');
    return p ? atoi(p + 1) : 0;
}

/* Largest first: big instances have the fewest aligned starts, so they
 * must claim them before small ones fragment the GPU. */
static int item_cmp(const void *a, const void *b)
{
    const struct item *x = a;
    const struct item *y = b;
    if (x->size != y->size)
        return y->size - x->size;
    if (gslices(x->profile) != gslices(y->profile))
        return gslices(y->profile) - gslices(x->profile);
    if (memory_gb(x->profile) != memory_gb(y->profile))
        return memory_gb(y->profile) - memory_gb(x->profile);
    return strcmp(x->profile, y->profile);
}

/* Exhaustive search over placements: at most 7 items with at most 8
 * starts each, over an 8-slice bit mask. */
static int fits(const struct item *it, int n, unsigned used)
{
    if (n == 0)
        return 1;
    for (int k = 0; k < it->pl->nstarts; k++) {
        int st = it->pl->starts[k];
        if (st < 0 || st + it->pl->size > 16)
            continue;
        unsigned m = ((1u << it->pl->size) - 1u) << st;
        if ((used & m) == 0 && fits(it + 1, n - 1, used | m))
            return 1;
    }
    return 0;
}

static void offered(const struct run *c, int gpu, char *dst, size_t cap)
{
    size_t len = 0;
    dst[0] = '\0';
    for (size_t i = 0; i < c->ngip; i++) {
        if (c->gip[i].gpu != gpu)
            continue;
        int n = snprintf(dst + len, cap - len, "%s%s", len ? ", " : "",
                         c->gip[i].profile);
        if (n < 0 || (size_t)n >= cap - len)
            break;
        len += (size_t)n;
    }
}

/* Checks the target against what the GPU offers and builds the creation
 * order into items. Returns the item count or a failure. */
static int check_layout(struct run *c, size_t gi, struct item *items)
{
    const struct gm_smi_gpu *g = &c->res->snap.gpus[gi];
    const struct target *t = &c->tgt[gi];
    int n = 0;
    int placed = 1;

    for (int p = 0; p < t->nprofiles; p++) {
        const struct gm_layout_profile *lp = &t->profiles[p];
        const struct gm_smi_gip *gip = find_gip(c, g->index, lp->name);
        if (gip == NULL) {
            char list[512];
            offered(c, g->index, list, sizeof(list));
            return gm_agent_fail(c->res, "UnknownProfile", GM_NEEDS_NONE,
                                 "GPU %d (%s) has no MIG profile %s; it "
                                 "offers: %s",
                                 g->index, g->name, lp->name, list);
        }
        if (lp->count > gip->total)
            return gm_agent_fail(c->res, "InsufficientResources", GM_NEEDS_NONE,
                                 "GPU %d (%s) fits at most %d x %s, layout "
                                 "wants %d",
                                 g->index, g->name, gip->total, lp->name,
                                 lp->count);
        const struct gm_smi_gipp *pl = find_gipp(c, g->index, gip->id);
        for (int k = 0; k < lp->count; k++) {
            struct item *it = &items[n++];
            snprintf(it->profile, sizeof(it->profile), "%s", lp->name);
            it->pl = pl;
            it->size = pl ? pl->size : gslices(lp->name);
            if (pl == NULL)
                placed = 0;
        }
    }
    qsort(items, (size_t)n, sizeof(*items), item_cmp);
    if (placed && !fits(items, n, 0))
        return gm_agent_fail(c->res, "InsufficientResources", GM_NEEDS_NONE,
                             "GPU %d (%s): the layout does not fit its MIG "
                             "placements (see nvidia-smi mig -lgipp)",
                             g->index, g->name);
    return n;
}

/* ---- changing ---- */

static int destroy(struct run *c, size_t gi)
{
    const struct gm_agent_snapshot *s = &c->res->snap;
    const struct gm_smi_gpu *g = &s->gpus[gi];
    char idx[8];
    snprintf(idx, sizeof(idx), "%d", g->index);
    const char *ci_args[] = {"mig", "-i", idx, "-dci", NULL};
    const char *gi_args[] = {"mig", "-i", idx, "-dgi", NULL};
    const char *const *steps[2] = {ci_args, gi_args};
    int have[2] = {ci_count(s, g->index), gi_count(s, g->index, NULL)};

    /* Compute instances live inside GPU instances: they go first. */
    for (int k = 0; k < 2; k++) {
        struct gm_smi_out o;
        if (have[k] == 0)
            continue;
        int err = smi_change(c, steps[k], &o);
        if (err)
            return err;
        unsigned f = gm_smi_scan(o.out) | gm_smi_scan(o.err);
        if (o.status != 0 && (f & GM_SMI_F_IN_USE)) {
            char msg[GM_AGENT_MESSAGE_MAX];
            out_message(&o, msg, sizeof(msg));
            err = gm_agent_fail(c->res, "GPUInUse", GM_NEEDS_NONE, "%s", msg);
        } else if (o.status != 0 && !(f & GM_SMI_F_NOT_FOUND)) {
            err = smi_failed(c, steps[k], &o);
        }
        gm_smi_out_free(&o);
        if (err)
            return err;
    }
    return 0;
}

/* Remembers that nvidia-smi found GPU index held: a pending mode then
 * waits for whatever holds it, which a reset (refused while held) cannot
 * get past, nor on Hopper a reboot (the pending mode is lost, and holders
 * that start at boot hold it again). */
static void held(struct run *c, int index, const struct gm_smi_out *o)
{
    if (c->in_use_gpu >= 0)
        return;
    c->in_use_gpu = index;
    out_message(o, c->in_use_msg, sizeof(c->in_use_msg));
}

static int set_mode(struct run *c, size_t gi)
{
    const struct gm_smi_gpu *g = &c->res->snap.gpus[gi];
    char idx[8];
    snprintf(idx, sizeof(idx), "%d", g->index);
    const char *args[] = {"-i", idx, "-mig", c->tgt[gi].mig ? "1" : "0", NULL};
    struct gm_smi_out o;
    int err = smi_change(c, args, &o);
    if (err)
        return err;
    note(c, &o);
    unsigned f = gm_smi_scan(o.out) | gm_smi_scan(o.err);
    if (o.status == 0 && (f & GM_SMI_F_IN_USE))
        held(c, g->index, &o);
    if (o.status != 0) {
        char msg[GM_AGENT_MESSAGE_MAX];
        out_message(&o, msg, sizeof(msg));
        if (f & GM_SMI_F_IN_USE)
            err = gm_agent_fail(c->res, "GPUInUse", GM_NEEDS_NONE, "%s", msg);
        else if (o.status == 3 || (f & GM_SMI_F_NOT_SUPPORTED))
            err = gm_agent_fail(c->res, "UnsupportedGPU", GM_NEEDS_NONE, "%s",
                                msg);
        else
            err = smi_failed(c, args, &o);
    }
    gm_smi_out_free(&o);
    return err;
}

static int pending(const struct run *c, size_t gi)
{
    const struct gm_smi_gpu *g = &c->res->snap.gpus[gi];
    enum gm_mig_mode want = c->tgt[gi].mig ? GM_MIG_ENABLED : GM_MIG_DISABLED;
    return c->tgt[gi].touch && g->mig_current != want;
}

/* Resets every GPU whose mode is pending. A failed or refused reset is not
 * an error of its own: the re-query that follows decides. */
static int reset_pending(struct run *c)
{
    const struct gm_agent_snapshot *s = &c->res->snap;
    for (size_t i = 0; i < s->ngpus; i++) {
        if (!pending(c, i))
            continue;
        char idx[8];
        snprintf(idx, sizeof(idx), "%d", s->gpus[i].index);
        const char *args[] = {"-i", idx, "-r", NULL};
        struct gm_smi_out o;
        int err = smi_change(c, args, &o);
        if (err)
            return err;
        note(c, &o);
        if ((gm_smi_scan(o.out) | gm_smi_scan(o.err)) & GM_SMI_F_IN_USE)
            held(c, s->gpus[i].index, &o);
        gm_smi_out_free(&o);
    }
    return 0;
}

static int first_pending(const struct run *c)
{
    for (size_t i = 0; i < c->res->snap.ngpus; i++) {
        if (pending(c, i))
            return c->res->snap.gpus[i].index;
    }
    return -1;
}

static const struct gm_smi_gpu *find_gpu(const struct gm_agent_snapshot *s,
                                         int index)
{
    for (size_t i = 0; i < s->ngpus; i++) {
        if (s->gpus[i].index == index)
            return &s->gpus[i];
    }
    return &s->gpus[0];
}

/* Ampere GPUs (A100, A30, A800) keep a pending MIG mode across a reboot and
 * apply it as the GPU initialises, before anything can hold it (FACTS:
 * "reboot the system to make MIG mode effective"); Hopper and later drop
 * it. Matched as a word of the name, so "A3000" is not an A30. */
static bool pending_survives_reboot(const struct gm_smi_gpu *g)
{
    static const char *const models[] = {"A100", "A30", "A800"};
    for (size_t i = 0; i < sizeof(models) / sizeof(models[0]); i++) {
        size_t n = strlen(models[i]);
        for (const char *p = strstr(g->name, models[i]); p;
             p = strstr(p + 1, models[i])) {
            bool start = p == g->name || !isalnum((unsigned char)p[-1]);
            if (start && !isdigit((unsigned char)p[n]))
                return true;
        }
    }
    return false;
}

/* Something outside the stopped GPU clients holds the GPU, so its mode
 * stays pending: GPUInUse. Once a reset was refused, an Ampere GPU needs a
 * reboot instead, which applies its pending mode (done with allowReboot);
 * on Hopper only freeing the GPU helps. */
static int held_failure(struct run *c, int gpu, bool reset_refused)
{
    const struct gm_smi_gpu *g = find_gpu(&c->res->snap, gpu);
    bool reboot = reset_refused && pending_survives_reboot(g);
    return gm_agent_fail(c->res, reboot ? "RebootRequired" : "GPUInUse",
                         reboot ? GM_NEEDS_REBOOT : GM_NEEDS_NONE,
                         "MIG mode of GPU %d is %s, pending %s: something "
                         "outside the stopped GPU clients holds the GPU "
                         "(nvidia-persistenced, DCGM, fabric manager, a "
                         "process on the host)%s: %s",
                         gpu, gm_mig_mode_name(g->mig_current),
                         gm_mig_mode_name(g->mig_pending),
                         reboot ? ", so no reset can apply it; this GPU "
                                  "keeps the pending mode and a reboot "
                                  "applies it"
                                : "",
                         c->in_use_msg);
}

static int set_modes(struct run *c)
{
    struct gm_agent_snapshot *s = &c->res->snap;
    int ran = 0;
    int err;

    for (size_t i = 0; i < s->ngpus; i++) {
        const struct target *t = &c->tgt[i];
        const struct gm_smi_gpu *g = &s->gpus[i];
        enum gm_mig_mode want = t->mig ? GM_MIG_ENABLED : GM_MIG_DISABLED;
        /* A mode already pending is left to the reset on Ampere. Hopper
         * applies a mode without one: a pending mode there is one an
         * earlier run set while the GPU was held, and setting it again
         * once it is free applies it (a reset would be needless, and may
         * be unsupported). */
        bool pending_ok =
            g->mig_pending == want &&
            (g->mig_current == want || pending_survives_reboot(g));
        if (!t->change || pending_ok)
            continue;
        err = set_mode(c, i);
        if (err)
            return err;
        ran = 1;
    }
    if (ran) {
        /* -lgip lists only MIG-enabled GPUs: a list read before this is
         * missing the GPUs just enabled. */
        c->have_profiles = 0;
        err = read_gpus(c, s);
        if (err)
            return err;
    }
    int gpu = first_pending(c);
    if (gpu < 0)
        return 0;
    /* A reset, when allowed, is still tried: it gets past a holder that
     * has gone since (nvidia-smi names another nvidia-smi as one). */
    if (gpu == c->in_use_gpu && !c->req->allow_reset)
        return held_failure(c, gpu, false);
    if (!c->req->allow_reset) {
        const struct gm_smi_gpu *g = find_gpu(s, gpu);
        return gm_agent_fail(c->res, "ResetRequired", GM_NEEDS_RESET,
                             "MIG mode of GPU %d is %s, pending %s, until a "
                             "GPU reset or reboot: %s",
                             gpu, gm_mig_mode_name(g->mig_current),
                             gm_mig_mode_name(g->mig_pending),
                             c->smimsg[0] ? c->smimsg : "(no output)");
    }
    c->smimsg[0] = '\0';
    err = reset_pending(c);
    if (err)
        return err;
    /* A reset applies a pending enable (one an earlier run set and did not
     * reset): the GPU is now MIG-enabled, and in -lgip, only now. */
    c->have_profiles = 0;
    err = read_gpus(c, s);
    if (err)
        return err;
    gpu = first_pending(c);
    /* Still pending after a reset: held by something, unless the GPU needs
     * a reboot (a reset refused in a VM). A Hopper GPU, which applies its
     * mode without a reset and loses MIG mode at a reboot, is held. */
    if (gpu >= 0 &&
        (gpu == c->in_use_gpu || !pending_survives_reboot(find_gpu(s, gpu))))
        return held_failure(c, gpu, true);
    if (gpu >= 0)
        return gm_agent_fail(c->res, "RebootRequired", GM_NEEDS_REBOOT,
                             "MIG mode of GPU %d is still pending after a "
                             "reset attempt: %s",
                             gpu, c->smimsg[0] ? c->smimsg : "(no output)");
    return 0;
}

/* Drops the "Successfully ..." lines in place, so a failed create reports
 * what went wrong rather than what went right before it. */
static void drop_success_lines(char *text)
{
    char *w = text;
    const char *r = text;
    while (*r) {
        const char *e = strchr(r, '\n');
        size_t len = e ? (size_t)(e - r) + 1 : strlen(r);
        const char *p = r;
        while (*p == ' ' || *p == '\t')
            p++;
        if (strncmp(p, "Successfully", 12) != 0) {
            memmove(w, r, len);
            w += len;
        }
        r += len;
    }
    *w = '\0';
}

static int create(struct run *c, size_t gi, const struct item *items, int n)
{
    const struct gm_smi_gpu *g = &c->res->snap.gpus[gi];
    char idx[8];
    char list[GM_LAYOUT_MAX_INSTANCES * (GM_SMI_PROFILE_MAX + 1)];
    size_t len = 0;

    if (n == 0)
        return 0;
    list[0] = '\0';
    for (int k = 0; k < n; k++) {
        int w = snprintf(list + len, sizeof(list) - len, "%s%s", k ? "," : "",
                         items[k].profile);
        if (w < 0 || (size_t)w >= sizeof(list) - len)
            return gm_agent_fail(c->res, "InvalidArgument", GM_NEEDS_NONE,
                                 "layout too long");
        len += (size_t)w;
    }
    snprintf(idx, sizeof(idx), "%d", g->index);
    const char *args[] = {"mig", "-i", idx, "-cgi", list, "-C", NULL};
    struct gm_smi_out o;
    int err = smi_change(c, args, &o);
    if (err)
        return err;
    unsigned f = gm_smi_scan(o.out) | gm_smi_scan(o.err);
    char msg[GM_AGENT_MESSAGE_MAX];
    if (o.status != 0 ||
        (f & (GM_SMI_F_INSUFFICIENT | GM_SMI_F_INVALID_PROFILE)))
        drop_success_lines(o.out);
    out_message(&o, msg, sizeof(msg));
    if (f & GM_SMI_F_INSUFFICIENT)
        err = gm_agent_fail(c->res, "InsufficientResources", GM_NEEDS_NONE,
                            "GPU %d: %s", g->index, msg);
    else if (f & GM_SMI_F_INVALID_PROFILE)
        err = gm_agent_fail(c->res, "UnknownProfile", GM_NEEDS_NONE,
                            "GPU %d: %s", g->index, msg);
    else if (o.status != 0)
        err = smi_failed(c, args, &o);
    gm_smi_out_free(&o);
    return err;
}

static int create_layouts(struct run *c)
{
    struct gm_agent_snapshot *s = &c->res->snap;
    struct item items[GM_LAYOUT_MAX_INSTANCES];

    for (size_t i = 0; i < s->ngpus; i++) {
        const struct target *t = &c->tgt[i];
        if (!t->touch || !t->mig || !t->change)
            continue;
        int err = load_profiles(c);
        if (err)
            return err;
        int n = check_layout(c, i, items);
        if (n < 0)
            return n;
        err = create(c, i, items, n);
        if (err)
            return err;
    }
    return 0;
}

static size_t describe(const struct gm_agent_snapshot *s, int gpu, char *dst,
                       size_t cap)
{
    size_t len = 0;
    dst[0] = '\0';
    for (size_t i = 0; i < s->ngis; i++) {
        const char *p = s->gis[i].profile;
        int seen = 0;
        if (s->gis[i].gpu != gpu)
            continue;
        for (size_t k = 0; k < i; k++) {
            if (s->gis[k].gpu == gpu && strcmp(s->gis[k].profile, p) == 0)
                seen = 1;
        }
        if (seen)
            continue;
        int n = snprintf(dst + len, cap - len, "%s%s:%d", len ? "," : "", p,
                         gi_count(s, gpu, p));
        if (n < 0 || (size_t)n >= cap - len)
            break;
        len += (size_t)n;
    }
    if (len == 0)
        snprintf(dst, cap, "none");
    return len;
}

static int mig_devices(const struct gm_agent_snapshot *s, int gpu)
{
    int n = 0;
    for (size_t i = 0; i < s->ndevs; i++) {
        if (s->devs[i].gpu == gpu)
            n++;
    }
    return n;
}

static int verify(struct run *c)
{
    struct gm_agent_snapshot *s = &c->res->snap;
    int need_list = 0;
    int err = read_state(c, 0);
    if (err)
        return err;
    for (size_t i = 0; i < s->ngpus; i++)
        need_list |= c->tgt[i].touch && c->tgt[i].mig;
    s->ndevs = 0;
    if (need_list) {
        err = read_list(c, s);
        if (err)
            return err;
    }
    for (size_t i = 0; i < s->ngpus; i++) {
        const struct target *t = &c->tgt[i];
        const struct gm_smi_gpu *g = &s->gpus[i];
        char have[256];
        if (gpu_matches(s, i, t) &&
            (!t->touch || !t->mig ||
             mig_devices(s, g->index) == target_total(t)))
            continue;
        describe(s, g->index, have, sizeof(have));
        return gm_agent_fail(c->res, "VerifyFailed", GM_NEEDS_NONE,
                             "GPU %d after apply: MIG %s (pending %s), "
                             "instances %s, %d compute instances, %d MIG "
                             "devices listed; wanted MIG %s with %d "
                             "instances",
                             g->index, gm_mig_mode_name(g->mig_current),
                             gm_mig_mode_name(g->mig_pending), have,
                             ci_count(s, g->index), mig_devices(s, g->index),
                             t->mig ? "Enabled" : "Disabled", target_total(t));
    }
    return 0;
}

static void success_message(struct run *c)
{
    const struct gm_agent_snapshot *s = &c->res->snap;
    size_t len = 0;
    char *m = c->res->message;
    size_t cap = sizeof(c->res->message);

    if (!c->res->changed) {
        snprintf(m, cap, "already in mode %s; nothing changed",
                 gm_agent_mode_name(c->req->mode));
        return;
    }
    len = (size_t)snprintf(m, cap, "mode %s applied",
                           gm_agent_mode_name(c->req->mode));
    for (size_t i = 0; i < s->ngpus && len < cap; i++) {
        char have[256];
        if (!c->tgt[i].touch || !c->tgt[i].mig)
            continue;
        describe(s, s->gpus[i].index, have, sizeof(have));
        int n =
            snprintf(m + len, cap - len, "; GPU %d %s", s->gpus[i].index, have);
        if (n < 0)
            break;
        len += (size_t)n;
    }
}

int gm_agent_apply(const struct gm_smi_runner *r,
                   const struct gm_agent_req *req, struct gm_agent_result *res)
{
    struct run *c = calloc(1, sizeof(*c));
    int err;

    res->has_mode = 1;
    res->mode = req->mode;
    if (c == NULL)
        return gm_agent_fail(res, "NvidiaSmiFailed", GM_NEEDS_NONE,
                             "out of memory");
    c->r = r;
    c->req = req;
    c->res = res;
    c->in_use_gpu = -1;
    if (req->mode == GM_AGENT_MIG && req->layout == NULL) {
        err = gm_agent_fail(res, "InvalidArgument", GM_NEEDS_NONE,
                            "mode mig needs a layout");
        goto out;
    }
    err = read_state(c, 1);
    if (err)
        goto out;
    err = plan(c);
    if (err || !any_change(c))
        goto done;
    err = wait_not_in_use(c);
    if (err)
        goto out;
    /* With MIG already on, a layout the GPU cannot hold is refused before
     * anything is destroyed. */
    for (size_t i = 0; i < res->snap.ngpus; i++) {
        struct item items[GM_LAYOUT_MAX_INSTANCES];
        const struct gm_smi_gpu *g = &res->snap.gpus[i];
        const struct target *t = &c->tgt[i];
        if (!t->change || !t->mig || g->mig_current != GM_MIG_ENABLED)
            continue;
        err = load_profiles(c);
        if (err)
            goto out;
        err = check_layout(c, i, items);
        if (err < 0)
            goto out;
        err = 0;
    }
    for (size_t i = 0; i < res->snap.ngpus; i++) {
        if (!c->tgt[i].change ||
            res->snap.gpus[i].mig_current != GM_MIG_ENABLED)
            continue;
        err = destroy(c, i);
        if (err)
            goto out;
    }
    err = set_modes(c);
    if (err)
        goto out;
    err = create_layouts(c);
    if (err)
        goto out;
    err = verify(c);
done:
    if (err == 0)
        success_message(c);
out:
    free(c);
    return err;
}

int gm_agent_probe(const struct gm_smi_runner *r, struct gm_agent_result *res)
{
    struct run *c = calloc(1, sizeof(*c));
    int err;
    if (c == NULL)
        return gm_agent_fail(res, "NvidiaSmiFailed", GM_NEEDS_NONE,
                             "out of memory");
    c->r = r;
    c->res = res;
    res->detail = 1;
    err = read_state(c, 1);
    if (err == 0 && c->procs_overflow)
        snprintf(res->message, sizeof(res->message),
                 "more than %d compute processes; list cut",
                 GM_AGENT_MAX_PROCS);
    free(c);
    return err;
}
