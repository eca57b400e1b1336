/* kubectl-gpumode's command line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "cli/args.h"

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
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commands),
        cmocka_unit_test(test_usage_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
