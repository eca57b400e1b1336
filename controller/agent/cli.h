/* gpumode-agent's command line, as a library function so tests can run it
 * in-process against a fake nvidia-smi. The usage text in cli.c is the
 * reference for commands and flags. */
#ifndef GM_AGENT_CLI_H
#define GM_AGENT_CLI_H

#include "agent/smi_run.h"

/* Replaceable edges of the program; any NULL member means the real one. */
struct gm_agent_hooks {
    const struct gm_smi_runner *runner; /* borrowed */
    /* Reboots the node; returns only on failure, with a negative errno. */
    int (*reboot)(void);
    /* Writes the node's boot ID into buf; 0 or a negative errno. */
    int (*boot_id)(char *buf, size_t cap);
};

/* Runs one command: prints the result JSON on stdout, writes it to the
 * termination log, and returns the exit code (0 ok, 1 failed, 2 usage).
 * hooks may be NULL. */
int gm_agent_main(int argc, char **argv, const struct gm_agent_hooks *hooks);

/* The real reboot: sync(2), then "b" to /proc/sysrq-trigger, then
 * reboot(RB_AUTOBOOT) if the write failed. */
int gm_agent_reboot_node(void);

/* The real boot ID: /proc/sys/kernel/random/boot_id, the kubelet's source
 * of status.nodeInfo.bootID (not namespaced, so a pod reads the host's). */
int gm_agent_read_boot_id(char *buf, size_t cap);

#endif
