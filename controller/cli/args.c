#include "cli/args.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "app/config.h"

static const struct {
    const char *name;
    enum gm_cli_cmd cmd;
    int min_args;
    int max_args;
    const char *what; /* the positional argument, for messages */
} commands[] = {
    {"status", GM_CLI_STATUS, 0, 1, "POLICY"},
    {"plan", GM_CLI_PLAN, 0, 0, NULL},
    {"retry", GM_CLI_RETRY, 1, 1, "NODE"},
    {"pause", GM_CLI_PAUSE, 1, 1, "POLICY"},
    {"resume", GM_CLI_RESUME, 1, 1, "POLICY"},
    {"version", GM_CLI_VERSION, 0, 0, NULL},
    {"help", GM_CLI_HELP, 0, 0, NULL},
};

const char *gm_cli_usage(void)
{
    return "usage: kubectl gpumode [flags] COMMAND\n"
           "\n"
           "commands:\n"
           "  status [POLICY] [--watch]   progress of GPUModePolicies\n"
           "  plan -f FILE [-o json]      dry run of a policy against the "
           "cluster\n"
           "       (-f - reads standard input)\n"
           "       [--mig-configmap NS/NAME] [--hami-configmap NS/NAME]\n"
           "       [--plugin-configmap NS/NAME]\n"
           "  retry NODE                  retry a failed switch\n"
           "  pause POLICY                stop starting new switches\n"
           "  resume POLICY               start switches again\n"
           "  version\n"
           "\n"
           "flags:\n"
           "  --kubeconfig PATH   else $KUBECONFIG, else ~/.kube/config,\n"
           "                      else the pod's service account\n"
           "  --context NAME      else the current context\n"
           "  --no-color          plain text even on a terminal\n"
           "  --namespace NS      the controller's namespace "
           "(gpumode-system)\n";
}

__attribute__((format(printf, 3, 4))) static int
usage_error(char *err, size_t len, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* Matches --name, --name=value and --name value, and for a one-letter
 * name also -xvalue, as kubectl does (-ojson, -nteam-a). Returns 1 when
 * matched (value set, *i advanced past a separate value), 0 when not,
 * -EINVAL when the value is missing. */
static int take_value(int argc, char *const *argv, int *i, const char *name,
                      const char **value)
{
    const char *a = argv[*i];
    size_t n = strlen(name);

    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *value = a + n + 1;
        return 1;
    }
    if (a[n] != '\0' && n == 2 && name[1] != '-') {
        *value = a + n;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc)
        return -EINVAL;
    *value = argv[++*i];
    return 1;
}

/* NAMESPACE/NAME of a --*-configmap flag into ns and name (each 254
 * bytes, as struct gm_cli_args has them). */
_Static_assert(sizeof(((struct gm_cli_args *)0)->mig_name) ==
                       sizeof(((struct gm_cli_args *)0)->mig_ns) &&
                   sizeof(((struct gm_cli_args *)0)->hami_ns) ==
                       sizeof(((struct gm_cli_args *)0)->mig_ns) &&
                   sizeof(((struct gm_cli_args *)0)->hami_name) ==
                       sizeof(((struct gm_cli_args *)0)->mig_ns) &&
                   sizeof(((struct gm_cli_args *)0)->plugin_ns) ==
                       sizeof(((struct gm_cli_args *)0)->mig_ns) &&
                   sizeof(((struct gm_cli_args *)0)->plugin_name) ==
                       sizeof(((struct gm_cli_args *)0)->mig_ns),
               "split_cm sizes every NS/NAME field alike");

static int split_cm(const char *flag, const char *v, char *ns, char *name,
                    char *err, size_t len)
{
    const size_t cap = sizeof(((struct gm_cli_args *)0)->mig_ns);
    const char *slash = strchr(v, '/');

    if (slash == NULL || slash == v || slash[1] == '\0' ||
        strchr(slash + 1, '/') != NULL || (size_t)(slash - v) >= cap ||
        strlen(slash + 1) >= cap)
        return usage_error(err, len, "%s: \"%s\" is not NAMESPACE/NAME", flag,
                           v);
    snprintf(ns, cap, "%.*s", (int)(slash - v), v);
    snprintf(name, cap, "%s", slash + 1);
    if (!gm_ctl_namespace_ok(ns) || !gm_ctl_name_ok(name))
        return usage_error(err, len,
                           "%s: \"%s\" is not NAMESPACE/NAME (a namespace "
                           "and a name of lower-case letters, digits, '-' "
                           "and, in the name, '.')",
                           flag, v);
    return 0;
}

/* The table of value flags: where each one's value goes. */
enum flag_id {
    F_KUBECONFIG,
    F_CONTEXT,
    F_FILE,
    F_OUTPUT,
    F_MIGCM,
    F_HAMICM,
    F_PLUGINCM,
    F_NS
};

/* only_for names the one command that reads the flag; given to another,
 * it is refused rather than silently ignored ("status -o json" printing
 * text). NULL: every command. */
static const struct {
    const char *name;
    const char *alias;
    enum flag_id id;
    const char *only_for;
} value_flags[] = {
    {"--kubeconfig", NULL, F_KUBECONFIG, NULL},
    {"--context", NULL, F_CONTEXT, NULL},
    {"--filename", "-f", F_FILE, "plan"},
    {"--output", "-o", F_OUTPUT, "plan"},
    {"--mig-configmap", NULL, F_MIGCM, "plan"},
    {"--hami-configmap", NULL, F_HAMICM, "plan"},
    {"--plugin-configmap", NULL, F_PLUGINCM, "plan"},
    {"--namespace", "-n", F_NS, NULL},
};

static int set_flag(enum flag_id id, const char *v, struct gm_cli_args *o,
                    char *err, size_t len)
{
    switch (id) {
    case F_KUBECONFIG:
        o->kubeconfig = v;
        break;
    case F_CONTEXT:
        o->context = v;
        break;
    case F_FILE:
        o->file = v;
        break;
    case F_OUTPUT:
        if (strcmp(v, "json") == 0)
            o->json = true;
        else if (strcmp(v, "text") == 0 || strcmp(v, "wide") == 0)
            o->json = false;
        else
            return usage_error(err, len, "--output: \"%s\" is not json or text",
                               v);
        break;
    case F_MIGCM:
        return split_cm("--mig-configmap", v, o->mig_ns, o->mig_name, err, len);
    case F_HAMICM:
        return split_cm("--hami-configmap", v, o->hami_ns, o->hami_name, err,
                        len);
    case F_PLUGINCM:
        return split_cm("--plugin-configmap", v, o->plugin_ns, o->plugin_name,
                        err, len);
    case F_NS:
        if (!gm_ctl_namespace_ok(v))
            return usage_error(
                err, len, "--namespace: \"%s\" is not a namespace name", v);
        o->namespace = v;
        break;
    }
    return 0;
}

/* Returns 1 when argv[*i] was a flag (consumed), 0 when positional. A
 * value flag that only one command takes sets *limited (the first such
 * one given) to its index in value_flags. */
static int parse_flag(int argc, char *const *argv, int *i,
                      struct gm_cli_args *o, int *limited, char *err,
                      size_t len)
{
    const char *a = argv[*i];

    if (a[0] != '-' || a[1] == '\0')
        return 0;
    if (strcmp(a, "--no-color") == 0) {
        o->no_color = true;
        return 1;
    }
    if (strcmp(a, "--watch") == 0 || strcmp(a, "-w") == 0) {
        o->watch = true;
        return 1;
    }
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
        o->help = true;
        return 1;
    }
    for (size_t k = 0; k < sizeof(value_flags) / sizeof(value_flags[0]); k++) {
        const char *v = NULL;
        int rc = take_value(argc, argv, i, value_flags[k].name, &v);
        if (rc == 0 && value_flags[k].alias)
            rc = take_value(argc, argv, i, value_flags[k].alias, &v);
        if (rc < 0)
            return usage_error(err, len, "%s needs a value", a);
        if (rc == 1) {
            if (value_flags[k].only_for && *limited < 0)
                *limited = (int)k;
            rc = set_flag(value_flags[k].id, v, o, err, len);
            return rc ? rc : 1;
        }
    }
    return usage_error(err, len, "unknown flag %s", a);
}

int gm_cli_parse_args(int argc, char *const *argv, struct gm_cli_args *out,
                      char *err, size_t err_len)
{
    const char *pos[4];
    int n_pos = 0;
    int limited = -1;

    memset(out, 0, sizeof(*out));
    err[0] = '\0';
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            for (i++; i < argc && n_pos < 4; i++)
                pos[n_pos++] = argv[i];
            break;
        }
        int rc = parse_flag(argc, argv, &i, out, &limited, err, err_len);
        if (rc < 0)
            return rc;
        if (rc == 1)
            continue;
        if (n_pos == 4)
            return usage_error(err, err_len, "too many arguments");
        pos[n_pos++] = argv[i];
    }
    if (out->help || (n_pos > 0 && strcmp(pos[0], "help") == 0)) {
        out->cmd = GM_CLI_HELP;
        return 0;
    }
    if (n_pos == 0)
        return usage_error(err, err_len, "a command is required");
    size_t k;
    for (k = 0; k < sizeof(commands) / sizeof(commands[0]); k++)
        if (strcmp(commands[k].name, pos[0]) == 0)
            break;
    if (k == sizeof(commands) / sizeof(commands[0]))
        return usage_error(err, err_len, "unknown command \"%s\"", pos[0]);
    out->cmd = commands[k].cmd;
    int args = n_pos - 1;
    if (args < commands[k].min_args)
        return usage_error(err, err_len, "%s: %s is required", pos[0],
                           commands[k].what);
    if (args > commands[k].max_args)
        return usage_error(err, err_len, "%s: unexpected argument \"%s\"",
                           pos[0], pos[1 + commands[k].max_args]);
    if (args > 0)
        out->name = pos[1];
    /* Sent in the request path: a name the API server could not hold
     * (a '?' or '/' in it would even change the request) is refused. */
    if (out->name && !gm_ctl_name_ok(out->name))
        return usage_error(err, err_len,
                           "%s: \"%s\" is not a valid name (lower-case "
                           "letters, digits, '-' and '.', at most 253)",
                           pos[0], out->name);
    if (out->cmd == GM_CLI_PLAN && out->file == NULL)
        return usage_error(err, err_len, "plan: -f FILE is required");
    if (limited >= 0 && strcmp(value_flags[limited].only_for, pos[0]) != 0) {
        const char *alias = value_flags[limited].alias;
        return usage_error(err, err_len, "%s: %s%s%s%s is only for %s", pos[0],
                           value_flags[limited].name, alias ? " (" : "",
                           alias ? alias : "", alias ? ")" : "",
                           value_flags[limited].only_for);
    }
    if (out->watch && out->cmd != GM_CLI_STATUS)
        return usage_error(err, err_len, "%s: --watch is only for status",
                           pos[0]);
    return 0;
}
