/* Running nvidia-smi. The agent talks to the hardware only through a
 * gm_smi_runner, so the apply logic can be driven by an in-process fake in
 * tests and by gm_smi_exec_run in the helper pod. */
#ifndef GM_AGENT_SMI_RUN_H
#define GM_AGENT_SMI_RUN_H

#include <stddef.h>

/* Captured stdout and stderr are cut at this many bytes each; nvidia-smi
 * never prints that much, and a runaway one must not grow us without
 * bound. */
#define GM_SMI_OUTPUT_MAX (1024 * 1024)
#define GM_SMI_TIMEOUT_MS_DEFAULT 60000

/* What one run produced. out and err are owned by the struct, always
 * NUL-terminated after a successful run; free them with gm_smi_out_free. */
struct gm_smi_out {
    int status;    /* exit code 0..255; -1 when killed by a signal */
    int timed_out; /* killed by us after the timeout */
    int truncated; /* some output past GM_SMI_OUTPUT_MAX was dropped */
    char *out;
    char *err;
};

void gm_smi_out_free(struct gm_smi_out *o);

/* args is NULL-terminated and excludes the program name, e.g.
 * {"-i", "0", "-mig", "1", NULL}. run returns 0 when the program ran (look
 * at out->status), -ENOENT when it does not exist or is not executable, or
 * another negative errno when it could not be started. On error *out holds
 * nothing that needs freeing. */
struct gm_smi_runner {
    int (*run)(void *ctx, const char *const *args, struct gm_smi_out *out);
    void *ctx;
};

/* The real runner: posix_spawn with an argument vector (never a shell),
 * stdin from /dev/null, both output streams captured, the child in its own
 * process group so a timeout kills everything it started. With a root, the
 * child is chrooted there first (fork, chroot, execve): a driver installed
 * under a root (the host's, mounted in the helper pod, or the GPU
 * Operator's driver container) runs with its own libraries, as
 * `chroot /run/nvidia/driver nvidia-smi` does, never the image's. */
struct gm_smi_exec {
    const char *path; /* borrowed; inside root when root is set */
    const char *root; /* borrowed; NULL, "" or "/": no chroot */
    int timeout_ms;
    /* Extra "NAME=value" strings for the child; borrowed, NULL-terminated,
     * may be NULL. */
    const char *const *extra_env;
};

int gm_smi_exec_run(void *ctx, const char *const *args, struct gm_smi_out *out);

/* Chooses the nvidia-smi binary: `flag` (--nvidia-smi) if given, else
 * $NVIDIA_SMI, else with a driver root (other than "/") the path inside it,
 * /usr/bin/nvidia-smi, else the first executable "nvidia-smi" on $PATH, else
 * /usr/bin/nvidia-smi. With a driver root the path is inside it (the runner
 * chroots there). Writes into dst (cap bytes); -ENAMETOOLONG if it does not
 * fit. */
int gm_smi_resolve_path(const char *flag, const char *driver_root, char *dst,
                        size_t cap);

#endif
