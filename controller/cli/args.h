/* kubectl-gpumode's command line: global flags anywhere, one command, its
 * arguments. Pure, so every usage error can be tested. */
#ifndef GM_CLI_ARGS_H
#define GM_CLI_ARGS_H

#include <stdbool.h>
#include <stddef.h>

enum gm_cli_cmd {
    GM_CLI_HELP = 0,
    GM_CLI_STATUS,
    GM_CLI_PLAN,
    GM_CLI_RETRY,
    GM_CLI_PAUSE,
    GM_CLI_RESUME,
    GM_CLI_VERSION,
};

/* Strings are borrowed from argv, or point into the struct. */
struct gm_cli_args {
    enum gm_cli_cmd cmd;
    /* NULL: $KUBECONFIG, else ~/.kube/config, else in-cluster */
    const char *kubeconfig;
    const char *context; /* NULL: current-context */
    bool no_color;
    bool help;        /* -h, --help or the help command */
    const char *name; /* POLICY (status, pause, resume) or NODE (retry) */
    bool watch;       /* status --watch */
    const char *file; /* plan -f */
    bool json;        /* plan -o json (-o, -f and --*-configmap: plan only) */
    /* plan --mig-configmap NS/NAME; empty: the controller's config's
     * (gpumode-config), else the default. */
    char mig_ns[254];
    char mig_name[254];
    /* plan --hami-configmap NS/NAME; empty: as --mig-configmap. */
    char hami_ns[254];
    char hami_name[254];
    /* plan --plugin-configmap NS/NAME; empty: the controller's
     * devicePluginConfigMap, else not checked (it is unset by default). */
    char plugin_ns[254];
    char plugin_name[254];
    const char *namespace; /* --namespace: the controller's own */
};

/* Returns 0, or -EINVAL with a message for the user in err (exit code 2). */
int gm_cli_parse_args(int argc, char *const *argv, struct gm_cli_args *out,
                      char *err, size_t err_len);

/* The help text. */
const char *gm_cli_usage(void);

#endif
