#include "agent/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/reboot.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/layout.h"
#include "common/log.h"

#define DEFAULT_TERMINATION_LOG "/dev/termination-log"

static const char usage_text[] =
    "usage: gpumode-agent probe [options]\n"
    "       gpumode-agent apply --mode full|vgpu|mig [--layout JSON]\n"
    "                           [--allow-reset] [--allow-reboot] [options]\n"
    "       gpumode-agent reboot --confirm [--boot-id ID] [options]\n"
    "       gpumode-agent version\n"
    "options:\n"
    "  --nvidia-smi PATH       nvidia-smi to run (env NVIDIA_SMI; else PATH,\n"
    "                          else /usr/bin/nvidia-smi)\n"
    "  --driver-root DIR       driver installed under DIR: run nvidia-smi\n"
    "                          chrooted there, so with DIR's libraries; the\n"
    "                          nvidia-smi path is inside DIR (env\n"
    "                          GPUMODE_DRIVER_ROOT)\n"
    "  --termination-log PATH  also write the result here (env\n"
    "                          GPUMODE_TERMINATION_LOG; default\n"
    "                          /dev/termination-log; skipped if unwritable)\n"
    "  --timeout SECONDS       kill an nvidia-smi run after this (1..3600,\n"
    "                          default 60)\n"
    "  --in-use-wait SECONDS   apply: wait this long for compute processes\n"
    "                          on the GPUs to change to exit before\n"
    "                          GPUInUse (0..3600, default 60: a pod deleted\n"
    "                          with --force still stops its containers)\n"
    "  --boot-id ID            reboot: only while this is the node's boot ID\n"
    "                          (/proc/sys/kernel/random/boot_id); on a later\n"
    "                          boot say so and exit 0 (a pod can run twice)\n"
    "  --log-level LEVEL       debug|info|warn|error (stderr; default info)\n"
    "  --log-format FORMAT     text|json\n";

struct opts {
    const char *command;
    const char *mode;
    const char *layout;
    const char *smi;
    const char *driver_root;
    const char *term_log;
    const char *boot_id; /* reboot: the boot it is meant to end */
    int timeout_s;
    int in_use_wait_s;
    int in_use_wait_set;
    int allow_reset;
    int allow_reboot;
    int confirm;
    enum gm_log_level level;
    int json_log;
};

static void write_term_log(const char *path, const char *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        buf += w;
        len -= (size_t)w;
    }
    close(fd);
}

/* Renders the result; the kubelet drops what passes 4096 bytes and a cut
 * JSON object would be unreadable, so the size is a promise, not a hope. */
static size_t render(const struct gm_agent_result *res, char *buf, size_t cap)
{
    size_t len = gm_agent_result_json(res, buf, cap);
    if (len >= GM_AGENT_RESULT_MAX)
        abort();
    return len;
}

/* Writes the result to stdout and the termination log; the log is best
 * effort because outside a pod it usually does not exist. */
static void emit(const struct gm_agent_result *res, const char *term_log)
{
    char buf[GM_AGENT_RESULT_MAX];
    size_t len = render(res, buf, sizeof(buf));
    fprintf(stdout, "%s\n", buf);
    fflush(stdout);
    write_term_log(term_log, buf, len);
}

/* Accepts "--name value" and "--name=value". Returns 1 and sets *val when
 * argv[*i] is this option, 0 when it is another, -EINVAL when the value is
 * missing. */
static int opt_value(int argc, char **argv, int *i, const char *name,
                     const char **val)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *val = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    /* "--nvidia-smi --allow-reset" is a forgotten value, not a path. */
    if (*i + 1 >= argc || strncmp(argv[*i + 1], "--", 2) == 0)
        return -EINVAL;
    *val = argv[++(*i)];
    return 1;
}

static int parse_seconds(const char *s, long min, long max, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < min || v > max)
        return -EINVAL;
    *out = (int)v;
    return 0;
}

/* Records the first usage error and keeps parsing, so options after a bad
 * one (--termination-log above all) still take effect. */
static void usage_note(char *why, size_t cap, int *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void usage_note(char *why, size_t cap, int *err, const char *fmt, ...)
{
    va_list ap;
    if (*err)
        return;
    *err = -EINVAL;
    va_start(ap, fmt);
    vsnprintf(why, cap, fmt, ap);
    va_end(ap);
}

/* Fills o from argv; on a usage error writes why into why. */
static int parse_args(int argc, char **argv, struct opts *o, char *why,
                      size_t cap)
{
    static const char *const value_opts[] = {
        "--mode",        "--layout",    "--nvidia-smi", "--driver-root",
        "--timeout",     "--log-level", "--log-format", "--termination-log",
        "--in-use-wait", "--boot-id"};
    enum { NVALS = sizeof(value_opts) / sizeof(value_opts[0]) };
    const char *vals[NVALS] = {NULL};
    int err = 0;

    if (argc < 2) {
        snprintf(why, cap, "missing command");
        return -EINVAL;
    }
    o->command = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        int hit = 0;
        if (strcmp(a, "--allow-reset") == 0) {
            o->allow_reset = 1;
            continue;
        }
        if (strcmp(a, "--allow-reboot") == 0) {
            o->allow_reboot = 1;
            continue;
        }
        if (strcmp(a, "--confirm") == 0) {
            o->confirm = 1;
            continue;
        }
        for (size_t k = 0; k < NVALS && !hit; k++) {
            int r = opt_value(argc, argv, &i, value_opts[k], &vals[k]);
            if (r < 0)
                usage_note(why, cap, &err, "%s needs a value", value_opts[k]);
            hit = r != 0;
        }
        if (!hit)
            usage_note(why, cap, &err, "unknown argument \"%.64s\"", a);
    }
    if (vals[7])
        o->term_log = vals[7];
    o->mode = vals[0];
    o->layout = vals[1];
    if (vals[2])
        o->smi = vals[2];
    if (vals[3])
        o->driver_root = vals[3];
    if (vals[4] && parse_seconds(vals[4], 1, 3600, &o->timeout_s) != 0)
        usage_note(why, cap, &err, "--timeout: want 1..3600 seconds");
    o->in_use_wait_set = vals[8] != NULL;
    if (vals[8] && parse_seconds(vals[8], 0, 3600, &o->in_use_wait_s) != 0)
        usage_note(why, cap, &err, "--in-use-wait: want 0..3600 seconds");
    o->boot_id = vals[9];
    if (vals[9] && !gm_agent_boot_id_valid(vals[9]))
        usage_note(why, cap, &err, "--boot-id: want a boot ID (hex and -)");
    if (vals[5] && gm_log_parse_level(vals[5], &o->level) != 0)
        usage_note(why, cap, &err, "--log-level: want debug|info|warn|error");
    if (vals[6]) {
        if (strcmp(vals[6], "json") != 0 && strcmp(vals[6], "text") != 0)
            usage_note(why, cap, &err, "--log-format: want text|json");
        o->json_log = strcmp(vals[6], "json") == 0;
    }
    return err;
}

/* Checks what each command accepts, so a flag meant for another command is
 * an error instead of being silently ignored. */
static int check_command(const struct opts *o, char *why, size_t cap)
{
    int apply = strcmp(o->command, "apply") == 0;
    if (strcmp(o->command, "probe") != 0 && !apply &&
        strcmp(o->command, "reboot") != 0) {
        snprintf(why, cap, "unknown command \"%.32s\"", o->command);
        return -EINVAL;
    }
    if (!apply && (o->mode || o->layout || o->allow_reset || o->allow_reboot ||
                   o->in_use_wait_set)) {
        snprintf(why, cap,
                 "--mode, --layout, --allow-* and --in-use-wait are for apply");
        return -EINVAL;
    }
    if ((o->confirm || o->boot_id) && strcmp(o->command, "reboot") != 0) {
        snprintf(why, cap, "--confirm and --boot-id are for reboot");
        return -EINVAL;
    }
    if (!apply)
        return 0;
    if (o->mode == NULL) {
        snprintf(why, cap, "apply needs --mode full|vgpu|mig");
        return -EINVAL;
    }
    return 0;
}

int gm_agent_read_boot_id(char *buf, size_t cap)
{
    if (cap == 0)
        return -EINVAL;
    buf[0] = '\0';
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
    if (f == NULL)
        return -errno;
    bool got = fgets(buf, (int)cap, f) != NULL;
    fclose(f);
    size_t n = got ? strlen(buf) : 0;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    /* Anything else could never match the node's: refuse, not reboot. */
    if (!gm_agent_boot_id_valid(buf)) {
        buf[0] = '\0';
        return -EIO;
    }
    return 0;
}

static void usage_error(struct gm_agent_result *res, const char *why)
{
    fprintf(stderr, "gpumode-agent: %s (see gpumode-agent help)\n", why);
    gm_agent_fail(res, "InvalidArgument", GM_NEEDS_NONE, "%s", why);
}

int gm_agent_reboot_node(void)
{
    /* sync(2) is system-wide, so it flushes the host's file systems from
     * inside the pod. reboot(2) in a pod's own PID namespace would only
     * end that namespace, so the host is reached through sysrq, which a
     * privileged container may write whatever kernel.sysrq says. */
    sync();
    int fd = open("/proc/sysrq-trigger", O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t w = write(fd, "b", 1);
        close(fd);
        if (w == 1)
            sleep(30);
    }
    /* With hostPID this reboots the host; otherwise it fails or ends only
     * the pod, and the controller sees no boot-id change and says so. */
    if (reboot(RB_AUTOBOOT) != 0)
        return -errno;
    return -EIO;
}

static int run_reboot(const struct opts *o, const struct gm_agent_hooks *h,
                      struct gm_agent_result *res)
{
    if (!o->confirm) {
        usage_error(res, "reboot restarts the node at once; it needs "
                         "--confirm");
        return 2;
    }
    /* restartPolicy Never is at least once: a kubelet that lost the pod's
     * state in the reboot may start its container again on the new boot,
     * which must not reboot the node a second time. */
    if (o->boot_id) {
        char now[128] = "";
        int err = h && h->boot_id ? h->boot_id(now, sizeof(now))
                                  : gm_agent_read_boot_id(now, sizeof(now));
        if (err) {
            gm_agent_fail(res, "RebootFailed", GM_NEEDS_REBOOT,
                          "cannot read the node's boot ID (%s), so this "
                          "boot cannot be told from the next; not rebooting",
                          strerror(-err));
            return 1;
        }
        if (strcmp(now, o->boot_id) != 0) {
            snprintf(res->message, sizeof(res->message),
                     "the node has rebooted since (boot ID %.64s, not "
                     "%.64s); not rebooting again",
                     now, o->boot_id);
            return 0;
        }
    }
    char buf[GM_AGENT_RESULT_MAX];
    snprintf(res->message, sizeof(res->message), "rebooting the node");
    /* Only the termination log hears of it first: if the reboot works,
     * nothing after it runs; if not, stdout gets the one failure result. */
    write_term_log(o->term_log, buf, render(res, buf, sizeof(buf)));
    int err = h && h->reboot ? h->reboot() : gm_agent_reboot_node();
    gm_agent_fail(res, "RebootFailed", GM_NEEDS_REBOOT,
                  "reboot did not happen: %s", strerror(-err));
    return 1;
}

static int run_apply(const struct opts *o, const struct gm_smi_runner *r,
                     struct gm_agent_result *res, char *why, size_t cap)
{
    struct gm_agent_req req = {.allow_reset = o->allow_reset,
                               .allow_reboot = o->allow_reboot,
                               .in_use_wait_ms = o->in_use_wait_s * 1000};
    struct gm_layout *layout = NULL;
    int rc = 1;

    if (gm_agent_parse_mode(o->mode, &req.mode) != 0) {
        snprintf(why, cap, "--mode: want full|vgpu|mig");
        return 2;
    }
    res->has_mode = 1;
    res->mode = req.mode;
    if ((req.mode == GM_AGENT_MIG) != (o->layout != NULL)) {
        snprintf(why, cap,
                 req.mode == GM_AGENT_MIG ? "--mode mig needs --layout"
                                          : "--layout is only for --mode mig");
        return 2;
    }
    if (o->layout) {
        layout = calloc(1, sizeof(*layout));
        if (layout == NULL) {
            snprintf(why, cap, "out of memory");
            return 2;
        }
        if (gm_layout_parse(o->layout, layout, why, cap) != 0) {
            rc = 2;
            goto out;
        }
        req.layout = layout;
    }
    rc = gm_agent_apply(r, &req, res) == 0 ? 0 : 1;
out:
    free(layout);
    return rc;
}

int gm_agent_main(int argc, char **argv, const struct gm_agent_hooks *hooks)
{
    struct opts o = {.level = GM_LOG_INFO,
                     .in_use_wait_s = GM_AGENT_IN_USE_WAIT_S};
    struct gm_agent_result *res = calloc(1, sizeof(*res));
    char why[512] = "";
    char path[4096];
    int rc;

    if (res == NULL) {
        fprintf(stderr, "gpumode-agent: out of memory\n");
        return 1;
    }
    o.term_log = getenv("GPUMODE_TERMINATION_LOG");
    if (o.term_log == NULL || *o.term_log == '\0')
        o.term_log = DEFAULT_TERMINATION_LOG;
    o.driver_root = getenv("GPUMODE_DRIVER_ROOT");
    if (argc >= 2 && (strcmp(argv[1], "version") == 0 ||
                      strcmp(argv[1], "--version") == 0)) {
        printf("gpumode-agent %s\n", GM_VERSION);
        free(res);
        return 0;
    }
    if (argc >= 2 &&
        (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
         strcmp(argv[1], "-h") == 0)) {
        fputs(usage_text, stdout);
        free(res);
        return 0;
    }
    gm_agent_result_init(res, argc >= 2 ? argv[1] : "");
    if (parse_args(argc, argv, &o, why, sizeof(why)) != 0 ||
        check_command(&o, why, sizeof(why)) != 0) {
        /* Keep only the three known command names in the result. */
        res->command = "";
        usage_error(res, why);
        rc = 2;
        goto out;
    }
    gm_log_setup(o.level, o.json_log);
    res->command = strcmp(o.command, "probe") == 0   ? "probe"
                   : strcmp(o.command, "apply") == 0 ? "apply"
                                                     : "reboot";
    if (strcmp(o.command, "reboot") == 0) {
        rc = run_reboot(&o, hooks, res);
        goto out;
    }

    struct gm_smi_exec ex = {
        .path = path, .root = o.driver_root, .timeout_ms = o.timeout_s * 1000};
    struct gm_smi_runner real = {.run = gm_smi_exec_run, .ctx = &ex};
    const struct gm_smi_runner *r =
        hooks && hooks->runner ? hooks->runner : &real;
    if (gm_smi_resolve_path(o.smi, o.driver_root, path, sizeof(path)) != 0) {
        usage_error(res, "nvidia-smi path too long");
        rc = 2;
        goto out;
    }
    gm_debug("nvidia-smi is %s", path);
    if (strcmp(o.command, "probe") == 0) {
        rc = gm_agent_probe(r, res) == 0 ? 0 : 1;
    } else {
        rc = run_apply(&o, r, res, why, sizeof(why));
        if (rc == 2)
            usage_error(res, why);
    }
out:
    emit(res, o.term_log);
    free(res);
    return rc;
}
