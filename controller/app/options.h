/* Command-line flags of gpumode-controller, each also settable through an
 * environment variable GPUMODE_<NAME> (flags win). */
#ifndef GM_APP_OPTIONS_H
#define GM_APP_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>

#include "common/log.h"

struct gm_options {
    const char *kubeconfig; /* borrowed from argv/env; NULL: in-cluster */
    const char *context;
    const char *namespace; /* overrides the config file's */
    const char *config;    /* path of the controller config file */
    bool leader_elect;
    const char *metrics_addr; /* ":8080"; "0" disables */
    const char *health_addr;  /* ":8081"; "0" disables */
    bool dry_run;
    bool log_json;
    enum gm_log_level log_level;
    bool help;
    bool version;
};

/* Returns 0, or -EINVAL with a message naming the flag in err. */
int gm_options_parse(int argc, char **argv, struct gm_options *o, char *err,
                     size_t err_len);
void gm_options_usage(const char *prog);

#endif
