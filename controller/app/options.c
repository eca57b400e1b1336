#include "app/options.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/config.h"

struct flag {
    const char *name; /* without the leading dashes */
    const char *env;
    int is_bool;
    const char *help;
};

static const struct flag flags[] = {
    {"kubeconfig", "KUBECONFIG", 0, "kubeconfig file (else in-cluster)"},
    {"context", "GPUMODE_CONTEXT", 0, "kubeconfig context"},
    {"namespace", "GPUMODE_NAMESPACE", 0,
     "namespace for helper pods and the leader lease"},
    {"config", "GPUMODE_CONFIG", 0, "controller config file (YAML)"},
    {"leader-elect", "GPUMODE_LEADER_ELECT", 1,
     "elect a leader among replicas"},
    {"metrics-addr", "GPUMODE_METRICS_ADDR", 0,
     "address for /metrics, e.g. :8080 (0 disables)"},
    {"health-addr", "GPUMODE_HEALTH_ADDR", 0,
     "address for /healthz and /readyz, e.g. :8081 (0 disables)"},
    {"dry-run", "GPUMODE_DRY_RUN", 1, "log what would change, change nothing"},
    {"log-format", "GPUMODE_LOG_FORMAT", 0, "text or json"},
    {"log-level", "GPUMODE_LOG_LEVEL", 0, "debug, info, warn or error"},
    {"help", NULL, 1, "show this help"},
    {"version", NULL, 1, "print the version"},
};

#define N_FLAGS (sizeof(flags) / sizeof(flags[0]))

void gm_options_usage(const char *prog)
{
    printf("usage: %s [flags]\n\n", prog);
    for (size_t i = 0; i < N_FLAGS; i++)
        printf("  --%-14s %s%s%s%s\n", flags[i].name, flags[i].help,
               flags[i].env ? " [$" : "", flags[i].env ? flags[i].env : "",
               flags[i].env ? "]" : "");
}

static int parse_bool(const char *v, bool *out)
{
    if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0) {
        *out = true;
        return 0;
    }
    if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0) {
        *out = false;
        return 0;
    }
    return -EINVAL;
}

static int apply(struct gm_options *o, size_t i, const char *v, char *err,
                 size_t err_len, const char *src)
{
    bool b = false;
    if (flags[i].is_bool && parse_bool(v, &b) != 0) {
        snprintf(err, err_len, "%s: \"%s\" is not true or false", src, v);
        return -EINVAL;
    }
    switch (i) {
    case 0:
        o->kubeconfig = v;
        break;
    case 1:
        o->context = v;
        break;
    case 2:
        if (!gm_ctl_namespace_ok(v)) {
            snprintf(err, err_len,
                     "%s: \"%s\" is not a namespace name (lower-case "
                     "letters, digits and '-', at most 63)",
                     src, v);
            return -EINVAL;
        }
        o->namespace = v;
        break;
    case 3:
        o->config = v;
        break;
    case 4:
        o->leader_elect = b;
        break;
    case 5:
        o->metrics_addr = v;
        break;
    case 6:
        o->health_addr = v;
        break;
    case 7:
        o->dry_run = b;
        break;
    case 8:
        if (strcmp(v, "json") != 0 && strcmp(v, "text") != 0) {
            snprintf(err, err_len, "%s: \"%s\" is not text or json", src, v);
            return -EINVAL;
        }
        o->log_json = strcmp(v, "json") == 0;
        break;
    case 9:
        if (gm_log_parse_level(v, &o->log_level) != 0) {
            snprintf(err, err_len,
                     "%s: \"%s\" is not debug, info, warn or error", src, v);
            return -EINVAL;
        }
        break;
    case 10:
        o->help = b;
        break;
    default:
        o->version = b;
        break;
    }
    return 0;
}

int gm_options_parse(int argc, char **argv, struct gm_options *o, char *err,
                     size_t err_len)
{
    char src[64];
    memset(o, 0, sizeof(*o));
    o->metrics_addr = ":8080";
    o->health_addr = ":8081";
    o->log_level = GM_LOG_INFO;

    for (size_t i = 0; i < N_FLAGS; i++) {
        const char *v = flags[i].env ? getenv(flags[i].env) : NULL;
        if (v && v[0]) {
            snprintf(src, sizeof(src), "$%s", flags[i].env);
            int rc = apply(o, i, v, err, err_len, src);
            if (rc)
                return rc;
        }
    }
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (strncmp(arg, "--", 2) != 0) {
            snprintf(err, err_len, "unexpected argument \"%s\"", arg);
            return -EINVAL;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        size_t i;
        for (i = 0; i < N_FLAGS; i++)
            if (strlen(flags[i].name) == len &&
                strncmp(flags[i].name, name, len) == 0)
                break;
        if (i == N_FLAGS) {
            snprintf(err, err_len, "unknown flag --%.*s", (int)len, name);
            return -EINVAL;
        }
        const char *v = eq ? eq + 1 : NULL;
        if (v == NULL && flags[i].is_bool) {
            v = "true";
        } else if (v == NULL) {
            if (a + 1 >= argc) {
                snprintf(err, err_len, "--%s needs a value", flags[i].name);
                return -EINVAL;
            }
            v = argv[++a];
        }
        snprintf(src, sizeof(src), "--%s", flags[i].name);
        int rc = apply(o, i, v, err, err_len, src);
        if (rc)
            return rc;
    }
    return 0;
}
