#include "agent/smi_run.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"

extern char **environ;

void gm_smi_out_free(struct gm_smi_out *o)
{
    free(o->out);
    free(o->err);
    o->out = NULL;
    o->err = NULL;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads what is available; returns 1 at end of stream. Output past the cap
 * is read and dropped so the child never blocks on a full pipe. */
static int drain(int fd, struct gm_buf *b, int *truncated)
{
    char chunk[4096];
    ssize_t r = read(fd, chunk, sizeof(chunk));
    if (r < 0)
        return (errno == EINTR || errno == EAGAIN) ? 0 : 1;
    if (r == 0)
        return 1;
    size_t room = b->max - b->len;
    size_t take = (size_t)r < room ? (size_t)r : room;
    if (take < (size_t)r)
        *truncated = 1;
    if (take > 0 && gm_buf_append(b, chunk, take) != 0)
        *truncated = 1;
    return 0;
}

static char **build_env(const char *const *extra)
{
    size_t n = 0;
    size_t k = 0;
    while (environ && environ[n])
        n++;
    while (extra && extra[k])
        k++;
    char **env = calloc(n + k + 1, sizeof(*env));
    if (env == NULL)
        return NULL;
    size_t j = 0;
    /* Extra entries come first: glibc's getenv returns the first match. */
    for (size_t i = 0; i < k; i++)
        env[j++] = (char *)(uintptr_t)extra[i];
    for (size_t i = 0; i < n; i++)
        env[j++] = environ[i];
    return env;
}

/* Builds argv = {path, args..., NULL}. The casts drop const because
 * posix_spawn's prototype predates it; the strings are not modified. */
static char **build_argv(const char *path, const char *const *args)
{
    size_t n = 0;
    while (args[n])
        n++;
    char **argv = calloc(n + 2, sizeof(*argv));
    if (argv == NULL)
        return NULL;
    argv[0] = (char *)(uintptr_t)path;
    for (size_t i = 0; i < n; i++)
        argv[i + 1] = (char *)(uintptr_t)args[i];
    return argv;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* How long a killed nvidia-smi may take to be reaped. */
#define KILL_GRACE_MS 5000

/* Waits for output and exit, killing the process group at the deadline. */
static int collect(pid_t pid, int ofd, int efd, int timeout_ms,
                   struct gm_smi_out *res, struct gm_buf *ob, struct gm_buf *eb)
{
    long long deadline = now_ms() + timeout_ms;
    int open_fds = 2;
    int wstatus = 0;

    while (open_fds > 0) {
        struct pollfd pfd[2] = {{.fd = ofd, .events = POLLIN},
                                {.fd = efd, .events = POLLIN}};
        long long left = deadline - now_ms();
        if (left <= 0) {
            res->timed_out = 1;
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            break;
        }
        int r = poll(pfd, 2, (int)(left > 1000 ? 1000 : left));
        if (r < 0 && errno != EINTR)
            break;
        if (r <= 0)
            continue;
        if (ofd >= 0 && (pfd[0].revents & (POLLIN | POLLHUP | POLLERR))) {
            if (drain(ofd, ob, &res->truncated)) {
                close_fd(&ofd);
                open_fds--;
            }
        }
        if (efd >= 0 && (pfd[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            if (drain(efd, eb, &res->truncated)) {
                close_fd(&efd);
                open_fds--;
            }
        }
    }
    close_fd(&ofd);
    close_fd(&efd);
    /* Output is closed; the process may still be exiting, or it closed its
     * streams and kept running: bound that wait by the deadline too. An
     * nvidia-smi stuck in the driver (uninterruptible sleep) outlives even
     * SIGKILL: past a short grace it is left behind, and the timeout is
     * reported rather than never anything. */
    long long give_up = deadline + KILL_GRACE_MS;
    for (;;) {
        pid_t w = waitpid(pid, &wstatus, WNOHANG);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR)
            return -errno;
        if (now_ms() >= deadline && !res->timed_out) {
            res->timed_out = 1;
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
        }
        if (res->timed_out && now_ms() >= give_up) {
            res->status = -1;
            return 0;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (WIFEXITED(wstatus))
        res->status = WEXITSTATUS(wstatus);
    else
        res->status = -1;
    return 0;
}

static int put_path(char *dst, size_t cap, const char *a, const char *b)
{
    int n = snprintf(dst, cap, "%s%s", a, b);
    return (n < 0 || (size_t)n >= cap) ? -ENAMETOOLONG : 0;
}

/* What the chrooted child writes when nvidia-smi cannot start there: with
 * exit status 127 the parent takes it for a missing program. */
#define NO_EXEC_MARK                                                           \
    "gpumode-agent: cannot run nvidia-smi inside the driver root"
#define NO_ROOT_MARK "gpumode-agent: cannot chroot into the driver root"

/* fork + chroot + execve: posix_spawn cannot chroot. The child only
 * makes async-signal-safe calls; 127 tells the parent it never ran. */
static int spawn_chrooted(const struct gm_smi_exec *ex, char **argv, char **env,
                          int ofd, int efd, pid_t *pid)
{
    pid_t p = fork();
    if (p < 0)
        return -errno;
    if (p == 0) {
        static const char no_root[] = NO_ROOT_MARK "\n";
        static const char no_exec[] = NO_EXEC_MARK "\n";
        int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
        setpgid(0, 0);
        if (in < 0 || dup2(in, 0) < 0 || dup2(ofd, 1) < 0 || dup2(efd, 2) < 0)
            _exit(127);
        if (chroot(ex->root) != 0 || chdir("/") != 0) {
            ssize_t w = write(2, no_root, sizeof(no_root) - 1);
            (void)w;
            _exit(127);
        }
        execve(ex->path, argv, env);
        ssize_t w = write(2, no_exec, sizeof(no_exec) - 1);
        (void)w;
        _exit(127);
    }
    /* Also from the parent, so a timeout's kill(-pid) finds the group
     * even before the child ran setpgid. */
    setpgid(p, p);
    *pid = p;
    return 0;
}

int gm_smi_exec_run(void *ctx, const char *const *args, struct gm_smi_out *out)
{
    const struct gm_smi_exec *ex = ctx;
    int opipe[2] = {-1, -1};
    int epipe[2] = {-1, -1};
    char **argv = NULL;
    char **env = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    int fa_init = 0;
    int attr_init = 0;
    struct gm_buf ob;
    struct gm_buf eb;
    pid_t pid;
    int err;

    memset(out, 0, sizeof(*out));
    gm_buf_init(&ob, GM_SMI_OUTPUT_MAX);
    gm_buf_init(&eb, GM_SMI_OUTPUT_MAX);
    bool chrooted = ex->root && *ex->root && strcmp(ex->root, "/") != 0;
    char full[4096];
    if (put_path(full, sizeof(full), chrooted ? ex->root : "", ex->path)) {
        err = -ENOENT;
        goto out;
    }
    /* posix_spawn reports a missing program as ENOENT too, but checking
     * first gives one clear error without a fork. Not in a driver root:
     * there the path may be an absolute symlink (Debian's alternatives:
     * /usr/bin/nvidia-smi -> /etc/alternatives/...), which only resolves
     * inside the chroot; the child says so if execve fails there. */
    if (!chrooted && access(full, X_OK) != 0) {
        err = -ENOENT;
        goto out;
    }
    argv = build_argv(ex->path, args);
    env = build_env(ex->extra_env);
    if (argv == NULL || env == NULL) {
        err = -ENOMEM;
        goto out;
    }
    if (pipe2(opipe, O_CLOEXEC) != 0 || pipe2(epipe, O_CLOEXEC) != 0) {
        err = -errno;
        goto out;
    }
    if (chrooted) {
        err = spawn_chrooted(ex, argv, env, opipe[1], epipe[1], &pid);
        if (err)
            goto out;
        goto spawned;
    }
    posix_spawn_file_actions_init(&fa);
    fa_init = 1;
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, opipe[1], 1);
    posix_spawn_file_actions_adddup2(&fa, epipe[1], 2);
    posix_spawnattr_init(&attr);
    attr_init = 1;
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    err = posix_spawn(&pid, ex->path, &fa, &attr, argv, env);
    if (err) {
        err = err == ENOENT || err == EACCES ? -ENOENT : -err;
        goto out;
    }
spawned:
    close_fd(&opipe[1]);
    close_fd(&epipe[1]);
    int timeout =
        ex->timeout_ms > 0 ? ex->timeout_ms : GM_SMI_TIMEOUT_MS_DEFAULT;
    err = collect(pid, opipe[0], epipe[0], timeout, out, &ob, &eb);
    opipe[0] = -1;
    epipe[0] = -1;
    if (err == 0) {
        out->out = gm_buf_steal(&ob);
        out->err = gm_buf_steal(&eb);
        if (out->out == NULL || out->err == NULL) {
            gm_smi_out_free(out);
            err = -ENOMEM;
        } else if (chrooted && out->status == 127 &&
                   (strncmp(out->err, NO_EXEC_MARK, strlen(NO_EXEC_MARK)) ==
                        0 ||
                    strncmp(out->err, NO_ROOT_MARK, strlen(NO_ROOT_MARK)) ==
                        0)) {
            gm_smi_out_free(out);
            err = -ENOENT; /* it never ran: not there, or no root */
        }
    }
out:
    if (fa_init)
        posix_spawn_file_actions_destroy(&fa);
    if (attr_init)
        posix_spawnattr_destroy(&attr);
    close_fd(&opipe[0]);
    close_fd(&opipe[1]);
    close_fd(&epipe[0]);
    close_fd(&epipe[1]);
    gm_buf_free(&ob);
    gm_buf_free(&eb);
    free(argv);
    free(env);
    return err;
}

int gm_smi_resolve_path(const char *flag, const char *driver_root, char *dst,
                        size_t cap)
{
    if (flag && *flag)
        return put_path(dst, cap, flag, "");
    const char *env = getenv("NVIDIA_SMI");
    if (env && *env)
        return put_path(dst, cap, env, "");
    if (driver_root && *driver_root && strcmp(driver_root, "/") != 0)
        return put_path(dst, cap, "/usr/bin/nvidia-smi", "");
    const char *path = getenv("PATH");
    while (path && *path) {
        const char *e = strchr(path, ':');
        size_t len = e ? (size_t)(e - path) : strlen(path);
        char cand[4096];
        if (len > 0 && len < sizeof(cand) - 16) {
            memcpy(cand, path, len);
            memcpy(cand + len, "/nvidia-smi", sizeof("/nvidia-smi"));
            if (access(cand, X_OK) == 0)
                return put_path(dst, cap, cand, "");
        }
        path += len;
        if (*path == ':')
            path++;
    }
    return put_path(dst, cap, "/usr/bin/nvidia-smi", "");
}
