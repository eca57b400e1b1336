/* Inputs of gpumode-controller: its config file, its flags and
 * environment, and string label selectors. Each bad value fails with a
 * message naming the file or flag and the field. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "app/config.h"
#include "app/options.h"
#include "common/strsel.h"

static void test_config_defaults_and_file(void **state)
{
    (void)state;
    struct gm_ctl_config c;
    char err[512];
    assert_int_equal(gm_ctl_config_defaults(&c), 0);
    assert_string_equal(c.namespace, "gpumode-system");
    assert_string_equal(c.profile->name, "gpu-operator-hami");
    assert_string_equal(c.mig_cm.name, "default-mig-parted-config");
    assert_int_equal(c.resources_grace_s, 600);
    assert_int_equal(c.watch_idle_s, 120);
    assert_string_equal(c.plugin_cm.name, ""); /* not checked */
    assert_int_equal(gm_ctl_config_load(&c, "test/fixtures/config/good.yaml",
                                        err, sizeof(err)),
                     0);
    assert_string_equal(c.namespace, "gpu-ops");
    assert_string_equal(c.profile->name, "hami");
    assert_string_equal(c.agent_image, "registry.example/gpumode:1.2.3");
    assert_string_equal(c.mig_cm.name, "my-layouts");
    assert_string_equal(c.hami_cm.name, "hami-device-plugin");
    assert_true(c.qps == 20);
    assert_int_equal(c.burst, 40);
    assert_int_equal(c.helper_timeout_s, 120);
    assert_int_equal(c.clients_timeout_s, 300);
    assert_int_equal(c.resources_grace_s, 900);
    gm_ctl_config_free(&c);
}

/* The same config read from a ConfigMap's text (kubectl gpumode plan):
 * errors name the ConfigMap, not a file. */
static void test_config_from_text(void **state)
{
    (void)state;
    struct gm_ctl_config c;
    char err[512];
    static const char good[] =
        "profile: hami\n"
        "devicePluginConfigMap: {name: device-plugin-config}\n"
        "migConfigMap: {namespace: ops, name: layouts, key: l.yaml}\n"
        "watchIdleSeconds: 75\n"
        "hamiDefaultSplitCount: 4\n";
    assert_int_equal(gm_ctl_config_defaults(&c), 0);
    assert_int_equal(gm_ctl_config_load_text(&c, good, sizeof(good) - 1,
                                             "ConfigMap gpumode-system/x", err,
                                             sizeof(err)),
                     0);
    assert_string_equal(c.profile->vgpu_resource, "nvidia.com/gpu");
    assert_string_equal(c.plugin_cm.namespace, "gpu-operator");
    assert_string_equal(c.plugin_cm.name, "device-plugin-config");
    assert_string_equal(c.mig_cm.key, "l.yaml");
    assert_int_equal(c.watch_idle_s, 75);
    assert_int_equal(c.hami_default_split, 4);
    gm_ctl_config_free(&c);

    static const struct {
        const char *text, *err;
    } bad[] = {
        {"qps: [", "ConfigMap gpumode-system/x: line "},
        {"profle: hami\n", "ConfigMap gpumode-system/x: profle: unknown field"},
        {"profile: fancy\n",
         "ConfigMap gpumode-system/x: profile: unknown preset \"fancy\""},
        {"hamiConfigMap: {namepsace: hami-system, name: hami}\n",
         "ConfigMap gpumode-system/x: hamiConfigMap.namepsace: unknown field "
         "(known: namespace, name, key)"},
        {"namespace: GPUmode-system\n",
         "ConfigMap gpumode-system/x: namespace: not a namespace name"},
        {"migConfigMap: {namespace: \"gpu operator\"}\n",
         "migConfigMap.namespace: not a namespace name"},
        {"hamiConfigMap: {namespace: Kube-System}\n",
         "hamiConfigMap.namespace: not a namespace name"},
        {"hamiDefaultSplitCount: 0\n",
         "hamiDefaultSplitCount: 0 is out of range [1, 1000]"},
        {"hamiDefaultSplitCount: 2.5\n",
         "hamiDefaultSplitCount: 2.5 is not a whole number"},
        /* Counts and seconds are whole: not cut without a word. */
        {"burst: 1.5\n", "burst: 1.5 is not a whole number"},
        {"clientsTimeoutSeconds: 10.9\n",
         "clientsTimeoutSeconds: 10.9 is not a whole number"},
        {"helperTimeoutSeconds: 30.5\n",
         "helperTimeoutSeconds: 30.5 is not a whole number"},
        {"rebootTimeoutSeconds: 600.25\n",
         "rebootTimeoutSeconds: 600.25 is not a whole number"},
        {"resourcesGraceSeconds: 0.5\n",
         "resourcesGraceSeconds: 0.5 is not a whole number"},
        {"watchIdleSeconds: 70.99\n",
         "watchIdleSeconds: 70.99 is not a whole number"},
        {"watchIdleSeconds: 5\n",
         "ConfigMap gpumode-system/x: watchIdleSeconds: 5 is out of range "
         "[10, 3600]"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        assert_int_equal(gm_ctl_config_defaults(&c), 0);
        assert_int_equal(gm_ctl_config_load_text(
                             &c, bad[i].text, strlen(bad[i].text),
                             "ConfigMap gpumode-system/x", err, sizeof(err)),
                         -EINVAL);
        assert_non_null(strstr(err, bad[i].err));
        gm_ctl_config_free(&c);
    }
}

/* The GPU Operator and HAMi in namespaces of their own (OpenShift's
 * nvidia-gpu-operator, hami-system): the preset looks for their pods
 * there; the built-in preset itself is left as it was. */
static void test_config_plugin_namespaces(void **state)
{
    (void)state;
    struct gm_ctl_config c;
    char err[512];
    assert_int_equal(gm_ctl_config_defaults(&c), 0);
    assert_string_equal(c.profile->modes[GM_MODE_FULL].plugins[0].namespace,
                        "gpu-operator");
    assert_int_equal(gm_ctl_config_load(&c,
                                        "test/fixtures/config/operator-ns.yaml",
                                        err, sizeof(err)),
                     0);
    const struct gm_profile *p = c.profile;
    assert_string_equal(p->name, "gpu-operator-hami");
    assert_string_equal(p->modes[GM_MODE_FULL].plugins[0].namespace,
                        "nvidia-gpu-operator");
    assert_string_equal(p->modes[GM_MODE_MIG].plugins[0].namespace,
                        "nvidia-gpu-operator");
    assert_string_equal(p->modes[GM_MODE_VGPU].plugins[0].namespace,
                        "hami-system");
    /* The device plugin's configs live with the operator by default. */
    assert_string_equal(c.plugin_cm.namespace, "nvidia-gpu-operator");
    assert_string_equal(c.plugin_cm.name, "plugin-configs");
    size_t operator= 0, hami = 0;
    for (size_t i = 0; i < p->n_clients; i++) {
        if (strcmp(p->clients[i].namespace, "nvidia-gpu-operator") == 0)
            operator++;
        else if (strcmp(p->clients[i].namespace, "hami-system") == 0)
            hami++;
        else
            fail_msg("client %zu in %s", i, p->clients[i].namespace);
    }
    assert_int_equal(operator, p->n_clients - 1);
    assert_int_equal(hami, 1);
    assert_string_equal(gm_profile_preset("gpu-operator-hami")
                            ->modes[GM_MODE_FULL]
                            .plugins[0]
                            .namespace,
                        "gpu-operator");
    gm_ctl_config_free(&c);
}

static void test_config_errors(void **state)
{
    (void)state;
    static const struct {
        const char *file;
        const char *expect;
    } cases[] = {
        {"unknown.yaml", "unknown.yaml: unknownKey: unknown field"},
        {"badprofile.yaml", "profile: unknown preset \"nvidia-only\""},
        {"badqps.yaml", "qps: 0 is out of range"},
        {"badgrace.yaml",
         "resourcesGraceSeconds: -5 is out of range [0, 86400]"},
        {"qpsstring.yaml", "qps: must be a number"},
        {"relsmi.yaml", "nvidiaSmiPath: must be an absolute path"},
        {"emptyimage.yaml", "agentImage: must be an image reference"},
        {"reldriver.yaml", "driverRoot: must be an absolute path"},
        {"badruntime.yaml", "runtimeClassName: must be an object name"},
        {"emptyhaminame.yaml", "hamiConfigMap.name: must be an object name"},
        {"badmigkey.yaml", "migConfigMap.key: must be a ConfigMap key"},
        {"badns.yaml", "operatorNamespace: not a namespace name"},
        {"badcm.yaml", "migConfigMap: must be a mapping"},
        {"badplugincm.yaml", "devicePluginConfigMap.key: not used: every "
                             "key of the ConfigMap is one device plugin "
                             "config"},
        {"badpluginns.yaml",
         "devicePluginConfigMap.namespace: not a namespace name"},
        {"pluginnoname.yaml", "devicePluginConfigMap.name: required"},
        {"broken.yaml", "broken.yaml: line 2"},
        {"list.yaml", "list.yaml: must be a mapping"},
        {"missing.yaml", "missing.yaml: No such file"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct gm_ctl_config c;
        char path[256], err[512] = "";
        snprintf(path, sizeof(path), "test/fixtures/config/%s", cases[i].file);
        assert_int_equal(gm_ctl_config_defaults(&c), 0);
        assert_true(gm_ctl_config_load(&c, path, err, sizeof(err)) < 0);
        if (strstr(err, cases[i].expect) == NULL)
            fail_msg("%s: \"%s\" lacks \"%s\"", cases[i].file, err,
                     cases[i].expect);
        gm_ctl_config_free(&c);
    }
}

static void test_options(void **state)
{
    (void)state;
    struct gm_options o;
    char err[256];
    char *ok[] = {"prog",
                  "--kubeconfig=/k",
                  "--leader-elect",
                  "--log-level",
                  "debug",
                  "--log-format=json",
                  "--metrics-addr",
                  "0",
                  "--dry-run=false",
                  NULL};
    unsetenv("KUBECONFIG");
    setenv("GPUMODE_NAMESPACE", "from-env", 1);
    assert_int_equal(gm_options_parse(9, ok, &o, err, sizeof(err)), 0);
    assert_string_equal(o.kubeconfig, "/k");
    assert_true(o.leader_elect);
    assert_false(o.dry_run);
    assert_true(o.log_json);
    assert_int_equal(o.log_level, GM_LOG_DEBUG);
    assert_string_equal(o.metrics_addr, "0");
    assert_string_equal(o.health_addr, ":8081");
    assert_string_equal(o.namespace, "from-env");
    /* A flag beats the environment. */
    char *flag[] = {"prog", "--namespace", "from-flag", NULL};
    assert_int_equal(gm_options_parse(3, flag, &o, err, sizeof(err)), 0);
    assert_string_equal(o.namespace, "from-flag");
    unsetenv("GPUMODE_NAMESPACE");

    static const struct {
        const char *args[3];
        const char *expect;
    } bad[] = {
        {{"--bogus"}, "unknown flag --bogus"},
        {{"--config"}, "--config needs a value"},
        {{"--log-level", "loud"}, "--log-level: \"loud\" is not debug"},
        {{"--log-format=xml"}, "--log-format: \"xml\" is not text or json"},
        {{"--dry-run=maybe"}, "--dry-run: \"maybe\" is not true or false"},
        {{"--namespace=$(POD_NAMESPACE)"},
         "--namespace: \"$(POD_NAMESPACE)\" is not a namespace name"},
        {{"stray"}, "unexpected argument \"stray\""},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *argv[4] = {"prog", (char *)(uintptr_t)bad[i].args[0],
                         (char *)(uintptr_t)bad[i].args[1], NULL};
        int argc = bad[i].args[1] ? 3 : 2;
        err[0] = '\0';
        assert_int_equal(gm_options_parse(argc, argv, &o, err, sizeof(err)),
                         -EINVAL);
        if (strstr(err, bad[i].expect) == NULL)
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err, bad[i].expect);
    }
    setenv("GPUMODE_NAMESPACE", "GPUmode", 1);
    char *none0[] = {"prog", NULL};
    assert_int_equal(gm_options_parse(1, none0, &o, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "$GPUMODE_NAMESPACE: \"GPUmode\" is not a "
                                "namespace name"));
    unsetenv("GPUMODE_NAMESPACE");
    setenv("GPUMODE_LEADER_ELECT", "yes", 1);
    char *none[] = {"prog", NULL};
    assert_int_equal(gm_options_parse(1, none, &o, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "$GPUMODE_LEADER_ELECT"));
    unsetenv("GPUMODE_LEADER_ELECT");
}

static const char *lookup(const void *obj, const char *key)
{
    const char *const *kv = obj;
    for (; kv[0]; kv += 2)
        if (strcmp(kv[0], key) == 0)
            return kv[1];
    return NULL;
}

static int matches(const char *sel, const char *const *labels)
{
    struct gm_strsel *s;
    char err[256];
    if (gm_strsel_parse(sel, &s, err, sizeof(err)) != 0)
        fail_msg("%s: %s", sel, err);
    int m = gm_strsel_match(s, lookup, labels);
    gm_strsel_free(s);
    return m;
}

static void test_string_selectors(void **state)
{
    (void)state;
    const char *const l[] = {"app", "web", "tier", "gpu", "env", "prod", NULL};
    assert_true(matches("", l));
    assert_true(matches("app=web", l));
    assert_true(matches("app==web,tier=gpu", l));
    assert_false(matches("app=db", l));
    assert_true(matches("app!=db", l));
    assert_true(matches("missing!=x", l));
    assert_true(matches("env in (prod, staging)", l));
    assert_false(matches("env notin (prod)", l));
    assert_true(matches("app", l));
    assert_false(matches("!app", l));
    assert_true(matches("!missing", l));
    assert_true(matches(" app = web , env in (prod) ", l));

    static const struct {
        const char *sel;
        const char *expect;
    } bad[] = {
        {"a=b,,c", "empty key"},
        {"env in prod", "expected (v1,v2)"},
        {"env in ()", "empty value set"},
        {"a=b;rm", "invalid value"},
        {"env in (a", "unbalanced parentheses"},
        {"a b", "unknown operator"},
        {"=x", "empty key"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct gm_strsel *s = NULL;
        char err[256] = "";
        assert_int_equal(gm_strsel_parse(bad[i].sel, &s, err, sizeof(err)),
                         -EINVAL);
        assert_null(s);
        if (strstr(err, bad[i].expect) == NULL)
            fail_msg("\"%s\": \"%s\" lacks \"%s\"", bad[i].sel, err,
                     bad[i].expect);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_defaults_and_file),
        cmocka_unit_test(test_config_plugin_namespaces),
        cmocka_unit_test(test_config_from_text),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_string_selectors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
