/* kubectl-gpumode's command line, and what Ctrl-C does to a command's
 * calls (cli/conn.c, which has no test of its own). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "cli/args.h"
#include "cli/conn.h"
#include "support/testutil.h"

static int parse(struct gm_cli_args *a, char *err, const char *const *argv)
{
    int argc = 0;
    while (argv[argc])
        argc++;
    return gm_cli_parse_args(argc, (char *const *)(uintptr_t)argv, a, err, 256);
}

static void test_commands(void **state)
{
    struct gm_cli_args a;
    char err[256];
    (void)state;

    const char *st[] = {
        "kubectl-gpumode", "--kubeconfig=/k", "status", "inference",
        "--watch",         "--no-color",      NULL};
    assert_int_equal(parse(&a, err, st), 0);
    assert_int_equal(a.cmd, GM_CLI_STATUS);
    assert_string_equal(a.kubeconfig, "/k");
    assert_string_equal(a.name, "inference");
    assert_true(a.watch);
    assert_true(a.no_color);

    const char *pl[] = {"x",    "plan",      "-f",   "p.yaml",          "-o",
                        "json", "--context", "prod", "--mig-configmap", "ns/cm",
                        NULL};
    assert_int_equal(parse(&a, err, pl), 0);
    assert_int_equal(a.cmd, GM_CLI_PLAN);
    assert_string_equal(a.file, "p.yaml");
    assert_true(a.json);
    assert_string_equal(a.context, "prod");
    assert_string_equal(a.mig_ns, "ns");
    assert_string_equal(a.mig_name, "cm");
    assert_string_equal(a.hami_ns, "");
    const char *hc[] = {"x", "plan", "-f", "p.yaml", "--hami-configmap=hs/hc",
                        NULL};
    assert_int_equal(parse(&a, err, hc), 0);
    assert_string_equal(a.hami_ns, "hs");
    assert_string_equal(a.hami_name, "hc");
    assert_string_equal(a.plugin_name, "");
    const char *pc[] = {
        "x", "plan", "-f", "p.yaml", "--plugin-configmap", "gpu-operator/dp",
        NULL};
    assert_int_equal(parse(&a, err, pc), 0);
    assert_string_equal(a.plugin_ns, "gpu-operator");
    assert_string_equal(a.plugin_name, "dp");

    /* One-letter flags take their value attached, as kubectl's do. */
    const char *att[] = {"x", "plan", "-fp.yaml", "-ojson", "-nteam-a", NULL};
    assert_int_equal(parse(&a, err, att), 0);
    assert_string_equal(a.file, "p.yaml");
    assert_true(a.json);
    assert_string_equal(a.namespace, "team-a");
    const char *eq[] = {"x", "plan", "-f=p.yaml", NULL};
    assert_int_equal(parse(&a, err, eq), 0);
    assert_string_equal(a.file, "p.yaml");

    const char *rt[] = {"x", "retry", "gpu-1", NULL};
    assert_int_equal(parse(&a, err, rt), 0);
    assert_int_equal(a.cmd, GM_CLI_RETRY);
    assert_string_equal(a.name, "gpu-1");

    const char *help[] = {"x", "status", "--help", NULL};
    assert_int_equal(parse(&a, err, help), 0);
    assert_int_equal(a.cmd, GM_CLI_HELP);
    const char *ver[] = {"x", "version", NULL};
    assert_int_equal(parse(&a, err, ver), 0);
    assert_int_equal(a.cmd, GM_CLI_VERSION);
}

static void expect_error(const char *const *argv, const char *msg)
{
    struct gm_cli_args a;
    char err[256];

    assert_int_equal(parse(&a, err, argv), -EINVAL);
    if (strstr(err, msg) == NULL)
        fail_msg("\"%s\" does not contain \"%s\"", err, msg);
}

static void test_usage_errors(void **state)
{
    (void)state;
    const char *none[] = {"x", NULL};
    expect_error(none, "a command is required");
    const char *unknown[] = {"x", "frobnicate", NULL};
    expect_error(unknown, "unknown command \"frobnicate\"");
    const char *flag[] = {"x", "status", "--colour", NULL};
    expect_error(flag, "unknown flag --colour");
    const char *nofile[] = {"x", "plan", NULL};
    expect_error(nofile, "plan: -f FILE is required");
    const char *novalue[] = {"x", "plan", "-f", NULL};
    expect_error(novalue, "-f needs a value");
    const char *noderq[] = {"x", "retry", NULL};
    expect_error(noderq, "retry: NODE is required");
    const char *pauserq[] = {"x", "pause", NULL};
    expect_error(pauserq, "pause: POLICY is required");
    const char *extra[] = {"x", "resume", "a", "b", NULL};
    expect_error(extra, "resume: unexpected argument \"b\"");
    const char *out[] = {"x", "plan", "-f", "p", "-o", "yaml", NULL};
    expect_error(out, "--output: \"yaml\" is not json or text");
    const char *cm[] = {"x", "plan", "-f", "p", "--mig-configmap", "cm", NULL};
    expect_error(cm, "is not NAMESPACE/NAME");
    const char *hcm[] = {"x",     "plan", "-f", "p", "--hami-configmap",
                         "a/b/c", NULL};
    expect_error(hcm, "--hami-configmap: \"a/b/c\" is not NAMESPACE/NAME");
    const char *pcm[] = {"x",  "plan", "-f", "p", "--plugin-configmap",
                         "/b", NULL};
    expect_error(pcm, "--plugin-configmap: \"/b\" is not NAMESPACE/NAME");
    const char *watch[] = {"x", "retry", "n", "--watch", NULL};
    expect_error(watch, "--watch is only for status");
    const char *fstatus[] = {"x", "status", "-f", "p", NULL};
    expect_error(fstatus, "status: --filename (-f) is only for plan");
    /* Names go in the request path: one the API server could not hold is
     * refused, before a '?' or '/' in it could change the request. */
    const char *query[] = {"x", "pause", "training?dryRun=All", NULL};
    expect_error(query, "pause: \"training?dryRun=All\" is not a valid name");
    const char *slash[] = {"x", "retry", "gpu-001/status", NULL};
    expect_error(slash, "retry: \"gpu-001/status\" is not a valid name");
    const char *empty[] = {"x", "status", "", NULL};
    expect_error(empty, "status: \"\" is not a valid name");
    const char *upper[] = {"x", "resume", "Training", NULL};
    expect_error(upper, "resume: \"Training\" is not a valid name");
    const char *ns[] = {"x", "status", "--namespace", "GPU mode", NULL};
    expect_error(ns, "--namespace: \"GPU mode\" is not a namespace name");
    const char *cmname[] = {"x",      "plan", "-f", "p", "--mig-configmap",
                            "ns/a?b", NULL};
    expect_error(cmname, "--mig-configmap: \"ns/a?b\" is not NAMESPACE/NAME");
}

/* Flags only plan reads are refused elsewhere, not silently ignored. */
static void test_plan_only_flags(void **state)
{
    (void)state;
    const char *sj[] = {"x", "status", "-o", "json", NULL};
    expect_error(sj, "status: --output (-o) is only for plan");
    const char *wj[] = {"x", "status", "--watch", "--output=json", NULL};
    expect_error(wj, "status: --output (-o) is only for plan");
    const char *vt[] = {"x", "-o", "text", "version", NULL};
    expect_error(vt, "version: --output (-o) is only for plan");
    const char *rm[] = {"x", "retry", "n", "--mig-configmap", "a/b", NULL};
    expect_error(rm, "retry: --mig-configmap is only for plan");
    const char *ph[] = {"x", "--hami-configmap=a/b", "pause", "p", NULL};
    expect_error(ph, "pause: --hami-configmap is only for plan");
    const char *rp[] = {"x", "resume", "p", "--plugin-configmap", "a/b", NULL};
    expect_error(rp, "resume: --plugin-configmap is only for plan");

    /* The global flags stay global. */
    struct gm_cli_args a;
    char err[256];
    const char *ok[] = {"x",         "status", "-n",         "ns",
                        "--context", "c",      "--no-color", NULL};
    assert_int_equal(parse(&a, err, ok), 0);
    assert_string_equal(a.namespace, "ns");
}

static void raise_sigint(uv_timer_t *t)
{
    (void)t;
    raise(SIGINT);
}

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Ctrl-C while a call waits on an exec credential plugin that hangs: the
 * call ends at once with -EINTR (the plugin is killed), and the command's
 * next call is not sent. */
static void test_interrupt_stops_call(void **state)
{
    char path[PATH_MAX], err[1024], msg[256];
    struct gm_cli_conn *c = NULL;
    struct gm_kube_error kerr;
    json_object *obj = NULL;
    uv_timer_t t;
    (void)state;

    tu_kubeconfig("https://127.0.0.1:1",
                  "{exec: {apiVersion: client.authentication.k8s.io/v1, "
                  "command: sleep, args: ['10']}}",
                  path);
    assert_int_equal(gm_cli_connect(path, NULL, &c, err, sizeof(err)), 0);

    uv_timer_init(gm_cli_loop(c), &t);
    uv_timer_start(&t, raise_sigint, 100, 0);
    uint64_t start = now_ms();
    int rc = gm_cli_get(c, "/api/v1/nodes", &obj, &kerr);
    uint64_t took = now_ms() - start;
    assert_int_equal(rc, -EINTR);
    assert_null(obj);
    if (took > 5000)
        fail_msg("the call took %llu ms after Ctrl-C",
                 (unsigned long long)took);
    assert_true(gm_cli_interrupted(c));
    assert_int_equal(gm_cli_was_interrupted(), SIGINT); /* exit 130 */
    gm_cli_describe(c, &kerr, NULL, msg, sizeof(msg));
    assert_string_equal(msg, "interrupted");

    json_object *items = NULL;
    assert_int_equal(gm_cli_list(c, "/api/v1/nodes", &items, &kerr), -EINTR);
    assert_null(items);
    assert_int_equal(
        gm_cli_merge_patch(c, "/api/v1/nodes/n", "{}", NULL, &kerr), -EINTR);

    uv_close((uv_handle_t *)&t, NULL);
    gm_cli_close(c);
    tu_kubeconfig_remove(path);
}

/* A call that never reached the cluster says why in the transport's or
 * the credential plugin's words, not an errno's. */
static void describe_failure(const char *user, const char *want)
{
    char path[PATH_MAX], err[1024], msg[1024];
    struct gm_cli_conn *c = NULL;
    struct gm_kube_error kerr;
    json_object *obj = NULL;

    tu_kubeconfig("https://127.0.0.1:1", user, path);
    assert_int_equal(gm_cli_connect(path, NULL, &c, err, sizeof(err)), 0);
    assert_true(gm_cli_get(c, "/api/v1/nodes", &obj, &kerr) < 0);
    gm_cli_describe(c, &kerr, NULL, msg, sizeof(msg));
    if (strstr(msg, "cannot reach the cluster at https://127.0.0.1:1: ") !=
            msg ||
        strstr(msg, want) == NULL)
        fail_msg("message %s lacks %s", msg, want);
    gm_cli_close(c);
    tu_kubeconfig_remove(path);
}

static void test_failures_say_why(void **state)
{
    (void)state;
    /* libcurl names the address it could not connect to */
    describe_failure("{token: t}", "127.0.0.1 port 1");
    /* the exec plugin's stderr */
    describe_failure("{exec: {apiVersion: client.authentication.k8s.io/v1, "
                     "command: sh, args: ['-c', 'echo no token for you >&2; "
                     "exit 1']}}",
                     "no token for you");
}

static void stop_loop(uv_timer_t *t)
{
    uv_stop(t->loop);
}

/* While a plan computes without running the loop, Ctrl-C ends the
 * program as by default; afterwards the connection's handler takes it
 * again. */
static void test_signals_default_while_computing(void **state)
{
    char path[PATH_MAX], err[1024];
    (void)state;

    tu_kubeconfig("https://127.0.0.1:1", "{token: t}", path);
    for (int on = 0; on <= 1; on++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            struct gm_cli_conn *c = NULL;
            if (gm_cli_connect(path, NULL, &c, err, sizeof(err)))
                _exit(3);
            gm_cli_signals_default(c, true);
            if (!on)
                gm_cli_signals_default(c, false);
            raise(SIGINT);
            /* The handles are unreferenced: a timer keeps the loop
             * polling long enough to see the signal. */
            uv_timer_t t;
            uv_timer_init(gm_cli_loop(c), &t);
            uv_timer_start(&t, stop_loop, 100, 0);
            uv_run(gm_cli_loop(c), UV_RUN_DEFAULT);
            _exit(gm_cli_interrupted(c) ? 0 : 4);
        }
        int st = 0;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        if (on) {
            assert_true(WIFSIGNALED(st));
            assert_int_equal(WTERMSIG(st), SIGINT);
        } else {
            assert_true(WIFEXITED(st));
            assert_int_equal(WEXITSTATUS(st), 0);
        }
    }
    tu_kubeconfig_remove(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commands),
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_plan_only_flags),
        cmocka_unit_test(test_interrupt_stops_call),
        cmocka_unit_test(test_signals_default_while_computing),
        cmocka_unit_test(test_failures_say_why),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
