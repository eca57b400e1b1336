/* Tests for controller/kube/config.c: kubeconfig parsing, KUBECONFIG merging
 * and in-cluster configuration. Run from the repository root. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "kube/config.h"

#define FX "test/fixtures/kubeconfig/"

static struct gm_kube_config *load_ok(const char *paths, const char *context)
{
    struct gm_kube_config *c = NULL;
    char *err = NULL;
    int rc = gm_kubeconfig_load(paths, context, &c, &err);

    if (rc != 0)
        print_error("unexpected error %d: %s\n", rc, err ? err : "(none)");
    assert_int_equal(rc, 0);
    assert_null(err);
    assert_non_null(c);
    return c;
}

/* Loads expecting failure; every message must name the file and field. */
static void load_fails(const char *paths, const char *context, const char *file,
                       const char *field)
{
    struct gm_kube_config *c = NULL;
    char *err = NULL;
    int rc = gm_kubeconfig_load(paths, context, &c, &err);

    assert_true(rc < 0);
    assert_null(c);
    assert_non_null(err);
    if (strstr(err, file) == NULL || strstr(err, field) == NULL)
        print_error("message \"%s\" lacks \"%s\" or \"%s\"\n", err, file,
                    field);
    assert_non_null(strstr(err, file));
    assert_non_null(strstr(err, field));
    free(err);
}

/* The absolute form of a fixture path, as relative paths resolve to. */
static void fixture_abs(char *out, size_t n, const char *name)
{
    char cwd[PATH_MAX];

    assert_non_null(getcwd(cwd, sizeof(cwd)));
    snprintf(out, n, "%s/" FX "%s", cwd, name);
}

static void test_single_file(void **state)
{
    char ca[PATH_MAX * 2];
    struct gm_kube_config *c = load_ok(FX "basic.yaml", NULL);

    fixture_abs(ca, sizeof(ca), "ca.crt");
    assert_string_equal(c->server, "https://127.0.0.1:6443");
    assert_string_equal(c->ca_file, ca);
    assert_null(c->ca_data);
    assert_string_equal(c->token, "static-token");
    assert_null(c->token_file);
    assert_null(c->exec);
    assert_string_equal(c->namespace, "team-a");
    assert_string_equal(c->context, "dev");
    assert_false(c->insecure);
    assert_null(c->cert_file);
    assert_null(c->key_data);
    gm_kube_config_free(c);
}

static void test_explicit_context(void **state)
{
    struct gm_kube_config *c = load_ok(FX "basic.yaml", "other");

    assert_string_equal(c->context, "other");
    assert_string_equal(c->namespace, "default");
    gm_kube_config_free(c);
}

static void test_missing_context(void **state)
{
    load_fails(FX "basic.yaml", "nope", FX "basic.yaml",
               "context \"nope\" not found");
    load_fails(FX "basic.yaml", "dangling", FX "basic.yaml",
               "contexts[2].context.cluster: cluster \"nowhere\" not found");
    load_fails(FX "no-current.yaml", NULL, FX "no-current.yaml",
               "current-context: not set");
}

static void test_merge_first_wins(void **state)
{
    /* a first: its current-context and its "shared" entries win. */
    struct gm_kube_config *c = load_ok(FX "a.yaml:" FX "b.yaml", NULL);

    assert_string_equal(c->context, "shared");
    assert_string_equal(c->server, "https://a.example:6443");
    assert_string_equal(c->token, "token-a");
    assert_string_equal(c->namespace, "ns-a");
    gm_kube_config_free(c);

    /* A context only b has still resolves clusters and users by name
     * through the merged maps, where a's entries won. */
    c = load_ok(FX "a.yaml:" FX "b.yaml", "only-b");
    assert_string_equal(c->server, "https://a.example:6443");
    assert_string_equal(c->token, "token-a");
    gm_kube_config_free(c);

    /* b first: everything flips. */
    c = load_ok(FX "b.yaml:" FX "a.yaml", NULL);
    assert_string_equal(c->context, "only-b");
    assert_string_equal(c->server, "https://b.example:6443");
    assert_string_equal(c->token, "token-b");
    gm_kube_config_free(c);

    c = load_ok(FX "b.yaml:" FX "a.yaml", "shared");
    assert_string_equal(c->server, "https://only-b.example:6443");
    assert_string_equal(c->token, "token-only-b");
    assert_string_equal(c->namespace, "ns-b");
    gm_kube_config_free(c);

    /* Each file is checked on its own, as client-go loads each: a name
     * given twice in a later file is refused though an earlier file's
     * entry of that name wins the merge. */
    load_fails(FX "a.yaml:" FX "dup-shared.yaml", NULL, FX "dup-shared.yaml",
               "clusters[1].name: \"shared\" is also clusters[0]");
}

static void test_merge_skips_missing_and_empty(void **state)
{
    struct gm_kube_config *c =
        load_ok(":" FX "missing.yaml::" FX "b.yaml:" FX "a.yaml:", NULL);

    assert_string_equal(c->context, "only-b");
    gm_kube_config_free(c);

    load_fails(FX "missing-1.yaml:" FX "missing-2.yaml", NULL,
               FX "missing-1.yaml", "no kubeconfig file found");
}

static void test_kubeconfig_env(void **state)
{
    setenv("KUBECONFIG", FX "b.yaml:" FX "a.yaml", 1);
    struct gm_kube_config *c = load_ok(NULL, NULL);
    assert_string_equal(c->context, "only-b");
    gm_kube_config_free(c);
    unsetenv("KUBECONFIG");
}

/* A file named alone (--kubeconfig) must exist, as for kubectl, even
 * where a service account would do. */
static void test_missing_single_file(void **state)
{
    load_fails(FX "missing.yaml", NULL, FX "missing.yaml",
               "No such file or directory");
    /* Also when the list has one real entry among empty ones. */
    load_fails("::" FX "missing.yaml:", NULL, FX "missing.yaml", "cannot read");
}

/* Writes text to dir/name. */
static void write_file(const char *dir, const char *name, const char *text)
{
    char path[PATH_MAX];

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void remove_file(const char *dir, const char *name)
{
    char path[PATH_MAX];

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    unlink(path);
}

/* The default rules read the environment: each test of them starts from a
 * HOME with no .kube, no KUBECONFIG and no in-cluster service. */
struct env {
    char home[32];
    char *saved_home;
};

static void env_setup(struct env *e)
{
    const char *h = getenv("HOME");

    e->saved_home = h ? strdup(h) : NULL;
    snprintf(e->home, sizeof(e->home), "/tmp/gm-home-XXXXXX");
    assert_non_null(mkdtemp(e->home));
    setenv("HOME", e->home, 1);
    unsetenv("KUBECONFIG");
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
}

static void env_teardown(struct env *e)
{
    char kube[64];

    snprintf(kube, sizeof(kube), "%s/.kube", e->home);
    remove_file(kube, "config");
    rmdir(kube);
    rmdir(e->home);
    if (e->saved_home)
        setenv("HOME", e->saved_home, 1);
    else
        unsetenv("HOME");
    free(e->saved_home);
    unsetenv("KUBECONFIG");
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
}

/* A service-account directory as the kubelet mounts it. */
static void sa_make(char *dir)
{
    assert_non_null(mkdtemp(dir));
    write_file(dir, "token", "sa-token\n");
    write_file(dir, "ca.crt", "-----BEGIN CERTIFICATE-----\n");
    write_file(dir, "namespace", "ci\n");
}

static void sa_remove(const char *dir)
{
    remove_file(dir, "token");
    remove_file(dir, "ca.crt");
    remove_file(dir, "namespace");
    rmdir(dir);
}

static void load_sa_fails(const char *paths, const char *context,
                          const char *sa_dir, const char *want1,
                          const char *want2)
{
    struct gm_kube_config *c = NULL;
    char *err = NULL;
    int rc = gm_kubeconfig_load_sa(paths, context, sa_dir, &c, &err);

    assert_true(rc < 0);
    assert_null(c);
    assert_non_null(err);
    if (strstr(err, want1) == NULL || strstr(err, want2) == NULL)
        print_error("message \"%s\" lacks \"%s\" or \"%s\"\n", err, want1,
                    want2);
    assert_non_null(strstr(err, want1));
    assert_non_null(strstr(err, want2));
    free(err);
}

/* KUBECONFIG's missing files are skipped, even one named alone there. */
static void test_kubeconfig_env_skips_missing(void **state)
{
    struct env e;

    env_setup(&e);
    setenv("KUBECONFIG", FX "missing.yaml:" FX "b.yaml", 1);
    struct gm_kube_config *c = load_ok(NULL, NULL);
    assert_string_equal(c->context, "only-b");
    gm_kube_config_free(c);

    /* Nothing there and no service: the message says what was tried. */
    setenv("KUBECONFIG", FX "missing.yaml", 1);
    load_sa_fails(NULL, NULL, "/nonexistent",
                  FX "missing.yaml: no kubeconfig found",
                  "in-cluster config: KUBERNETES_SERVICE_HOST and "
                  "KUBERNETES_SERVICE_PORT must be set");
    setenv("KUBECONFIG", FX "missing-1.yaml:" FX "missing-2.yaml", 1);
    load_sa_fails(NULL, NULL, "/nonexistent",
                  FX "missing-1.yaml:" FX "missing-2.yaml: no kubeconfig found",
                  "KUBERNETES_SERVICE_HOST");
    env_teardown(&e);
}

static void test_no_home_config(void **state)
{
    struct env e;
    char want[PATH_MAX + 64];

    env_setup(&e);
    snprintf(want, sizeof(want), "%s/.kube/config: no kubeconfig found",
             e.home);
    load_sa_fails(NULL, NULL, "/nonexistent", want, "KUBERNETES_SERVICE_HOST");
    /* With a context named there is nothing to fall back on. */
    load_sa_fails(NULL, "prod", "/nonexistent", e.home,
                  "no kubeconfig file found");
    env_teardown(&e);
}

/* When no file gives a configuration, the pod's service account does
 * (client-go's in-cluster fallback); a file that exists comes first. */
static void test_in_cluster_fallback(void **state)
{
    struct env e;
    char sa[] = "/tmp/gm-sa-XXXXXX";
    char kube[64], path[PATH_MAX];
    struct gm_kube_config *c = NULL;
    char *err = NULL;

    env_setup(&e);
    sa_make(sa);
    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);

    assert_int_equal(gm_kubeconfig_load_sa(NULL, NULL, sa, &c, &err), 0);
    assert_null(err);
    assert_string_equal(c->server, "https://10.96.0.1:443");
    snprintf(path, sizeof(path), "%s/token", sa);
    assert_string_equal(c->token_file, path);
    assert_string_equal(c->namespace, "ci");
    gm_kube_config_free(c);

    /* KUBECONFIG naming only missing or empty files: the same. */
    setenv("KUBECONFIG", FX "missing-1.yaml:" FX "missing-2.yaml", 1);
    assert_int_equal(gm_kubeconfig_load_sa(NULL, NULL, sa, &c, &err), 0);
    assert_string_equal(c->server, "https://10.96.0.1:443");
    gm_kube_config_free(c);
    snprintf(kube, sizeof(kube), "%s/.kube", e.home);
    assert_int_equal(mkdir(kube, 0700), 0);
    write_file(kube, "config", "");
    snprintf(path, sizeof(path), "%s/config", kube);
    setenv("KUBECONFIG", path, 1);
    assert_int_equal(gm_kubeconfig_load_sa(NULL, NULL, sa, &c, &err), 0);
    assert_string_equal(c->server, "https://10.96.0.1:443");
    gm_kube_config_free(c);
    unsetenv("KUBECONFIG");

    /* A ~/.kube/config with a configuration wins. */
    write_file(kube, "config",
               "current-context: c\n"
               "clusters: [{name: c, cluster: {server: 'https://home:6443'}}]\n"
               "contexts: [{name: c, context: {cluster: c}}]\n");
    assert_int_equal(gm_kubeconfig_load_sa(NULL, NULL, sa, &c, &err), 0);
    assert_string_equal(c->server, "https://home:6443");
    gm_kube_config_free(c);
    remove_file(kube, "config");

    /* A missing --kubeconfig is an error, service account or not. */
    load_sa_fails(FX "missing.yaml", NULL, sa, FX "missing.yaml",
                  "cannot read");

    /* A service account without its token names the token file. */
    remove_file(sa, "token");
    snprintf(path, sizeof(path), "%s/token", sa);
    load_sa_fails(NULL, NULL, sa, "no kubeconfig found", path);

    sa_remove(sa);
    env_teardown(&e);
}

static void test_unreadable_file(void **state)
{
    /* A directory cannot be read even by root, which tests may run as. */
    load_fails(FX "dir-not-file:" FX "a.yaml", NULL, FX "dir-not-file",
               "cannot read");
    if (geteuid() != 0) {
        char path[] = "/tmp/gm-kubeconfig-XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        close(fd);
        chmod(path, 0);
        load_fails(path, NULL, path, "Permission denied");
        unlink(path);
    }
}

static void test_token_file(void **state)
{
    char tok[PATH_MAX * 2];
    struct gm_kube_config *c = load_ok(FX "tokenfile.yaml", NULL);

    fixture_abs(tok, sizeof(tok), "token");
    assert_string_equal(c->token_file, tok);
    assert_null(c->token);
    assert_string_equal(c->namespace, "default");
    gm_kube_config_free(c);
}

static void test_cert_files_insecure_sni_proxy(void **state)
{
    char crt[PATH_MAX * 2];
    struct gm_kube_config *c = load_ok(FX "certfiles.yaml", NULL);

    fixture_abs(crt, sizeof(crt), "client.crt");
    assert_string_equal(c->cert_file, crt);
    assert_string_equal(c->key_file, "/abs/client.key");
    assert_null(c->cert_data);
    assert_true(c->insecure);
    assert_null(c->ca_file);
    assert_string_equal(c->tls_server_name, "api.internal");
    assert_string_equal(c->proxy_url, "http://proxy.example:3128");
    assert_null(c->token);
    gm_kube_config_free(c);
}

static void test_cert_data_json(void **state)
{
    struct gm_kube_config *c = load_ok(FX "certdata.json", NULL);
    const char *ca = "-----BEGIN CERTIFICATE-----\nRkFLRSBDQSBGT1IgVEVTVFM=\n"
                     "-----END CERTIFICATE-----\n";
    const char *key = "-----BEGIN PRIVATE KEY-----\nRkFLRSBDTElFTlQgS0VZ\n"
                      "-----END PRIVATE KEY-----\n";

    assert_non_null(c->ca_data);
    assert_int_equal(c->ca_data_len, strlen(ca));
    assert_memory_equal(c->ca_data, ca, strlen(ca));
    assert_null(c->ca_file);
    assert_int_equal(c->key_data_len, strlen(key));
    assert_memory_equal(c->key_data, key, strlen(key));
    assert_non_null(c->cert_data);
    assert_non_null(strstr(c->cert_data, "BEGIN CERTIFICATE"));
    assert_null(c->cert_file);
    assert_null(c->key_file);
    gm_kube_config_free(c);
}

static void test_exec(void **state)
{
    char cmd[PATH_MAX * 2];
    struct gm_kube_config *c = load_ok(FX "exec.yaml", NULL);
    struct gm_kube_exec *x = c->exec;

    fixture_abs(cmd, sizeof(cmd), "../exec/plugin.sh");
    assert_non_null(x);
    assert_string_equal(x->api_version, "client.authentication.k8s.io/v1");
    assert_string_equal(x->command, cmd);
    assert_string_equal(x->args[0], cmd);
    assert_string_equal(x->args[1], "get-token");
    assert_string_equal(x->args[2], "--cluster");
    assert_string_equal(x->args[3], "c");
    assert_null(x->args[4]);
    assert_string_equal(x->env[0], "PLUGIN_MODE=token");
    assert_string_equal(x->env[1], "EMPTY=");
    assert_null(x->env[2]);
    assert_string_equal(x->source, FX "exec.yaml");
    assert_int_equal(x->interactive, GM_EXEC_NEVER);
    assert_false(x->provide_cluster_info);
    assert_null(x->install_hint);
    gm_kube_config_free(c);

    /* A bare name is looked up in PATH when run, not resolved here. */
    c = load_ok(FX "exec.yaml", "lookup");
    assert_string_equal(c->exec->command, "aws");
    assert_string_equal(c->exec->args[0], "aws");
    assert_null(c->exec->args[1]);
    assert_null(c->exec->env[0]);
    assert_int_equal(c->exec->interactive, GM_EXEC_IF_AVAILABLE);
    assert_true(c->exec->provide_cluster_info);
    assert_string_equal(c->exec->install_hint,
                        "install the AWS CLI: https://aws.amazon.com/cli/");
    gm_kube_config_free(c);

    load_fails(FX "exec.yaml", "bad-mode", FX "exec.yaml",
               "users[2].user.exec.interactiveMode: \"Sometimes\" is not "
               "Never, IfAvailable or Always");
}

/* The cluster's client.authentication.k8s.io/exec extension is kept as
 * JSON for provideClusterInfo (spec.cluster.config): plain scalars typed
 * by YAML 1.2's core schema, as every YAML gpumode reads (client-go's YAML
 * 1.1 reader also makes yes/no/on/off booleans and 0x1F a number; the
 * cases in this file type alike in both), aliases resolved, other
 * extensions ignored; a name given twice is refused, as client-go
 * refuses it. */
static void test_exec_extension(void **state)
{
    struct gm_kube_config *c = load_ok(FX "extensions.yaml", NULL);

    assert_non_null(c->exec_extension);
    assert_string_equal(
        c->exec_extension,
        "{\"audience\":\"sts.example.com\",\"audiences\":[\"sts.example."
        "com\",\"42\"],\"retries\":3,\"ratio\":0.5,\"debug\":false,"
        "\"unset\":null,\"nested\":{\"deep\":{\"list\":[1,\"two\"]}}}");
    gm_kube_config_free(c);

    c = load_ok(FX "extensions.yaml", "null-extension");
    assert_null(c->exec_extension);
    gm_kube_config_free(c);
    c = load_ok(FX "exec.yaml", NULL);
    assert_null(c->exec_extension);
    gm_kube_config_free(c);

    load_fails(FX "extensions.yaml", "not-a-list", FX "extensions.yaml",
               "clusters[1].cluster.extensions: expected a list");
    /* A nameless extension is named "", as client-go names it. */
    c = load_ok(FX "extensions.yaml", "no-name");
    assert_null(c->exec_extension);
    gm_kube_config_free(c);
    /* 10^5 scalars once the aliases are expanded: refused, not copied. */
    load_fails(FX "extensions.yaml", "bomb", FX "extensions.yaml",
               "clusters[3].cluster.extensions[0].extension: nested too "
               "deeply or too large");
    load_fails(FX "extensions.yaml", "twice", FX "extensions.yaml",
               "clusters[4].cluster.extensions[2].name: \"example.com/other\" "
               "is also extensions[0]");
}

static void test_malformed_yaml(void **state)
{
    load_fails(FX "bad-yaml.yaml", NULL, FX "bad-yaml.yaml",
               "line 4: mapping values are not allowed");
}

static void test_bad_base64(void **state)
{
    load_fails(FX "bad-base64.yaml", NULL, FX "bad-base64.yaml",
               "users[1].user.client-key-data: invalid base64");
    load_fails(FX "bad-ca.yaml", NULL, FX "bad-ca.yaml",
               "clusters[0].cluster.certificate-authority-data: invalid "
               "base64");
}

/* Quoted empty strings are unset, not empty data or empty paths. */
static void test_empty_fields_are_unset(void **state)
{
    struct gm_kube_config *c = load_ok(FX "empty-fields.yaml", NULL);

    assert_string_equal(c->server, "https://127.0.0.1:6443");
    assert_null(c->ca_data);
    assert_null(c->ca_file);
    assert_null(c->cert_data);
    assert_null(c->key_data);
    assert_null(c->token);
    assert_null(c->token_file);
    assert_null(c->proxy_url);
    assert_null(c->tls_server_name);
    assert_string_equal(c->namespace, "default");
    gm_kube_config_free(c);
}

static void test_missing_server(void **state)
{
    load_fails(FX "no-server.yaml", NULL, FX "no-server.yaml",
               "clusters[1].cluster.server: missing");
}

static void test_auth_provider_rejected(void **state)
{
    load_fails(FX "auth-provider.yaml", NULL, FX "auth-provider.yaml",
               "users[0].user.auth-provider: not supported");
}

static void test_in_cluster(void **state)
{
    char dir[] = "/tmp/gm-sa-XXXXXX";
    char path[PATH_MAX];
    struct gm_kube_config *c = NULL;
    char *err = NULL;

    assert_non_null(mkdtemp(dir));
    write_file(dir, "token", "sa-token\n");
    write_file(dir, "ca.crt", "-----BEGIN CERTIFICATE-----\n");
    write_file(dir, "namespace", "gpumode-system\n");
    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);

    assert_int_equal(gm_kubeconfig_in_cluster(dir, &c, &err), 0);
    assert_string_equal(c->server, "https://10.96.0.1:443");
    snprintf(path, sizeof(path), "%s/token", dir);
    assert_string_equal(c->token_file, path);
    assert_null(c->token);
    snprintf(path, sizeof(path), "%s/ca.crt", dir);
    assert_string_equal(c->ca_file, path);
    assert_string_equal(c->namespace, "gpumode-system");
    gm_kube_config_free(c);

    /* IPv6 hosts go in brackets; no namespace file means "default". */
    setenv("KUBERNETES_SERVICE_HOST", "fd00:10:96::1", 1);
    remove_file(dir, "namespace");
    assert_int_equal(gm_kubeconfig_in_cluster(dir, &c, &err), 0);
    assert_string_equal(c->server, "https://[fd00:10:96::1]:443");
    assert_string_equal(c->namespace, "default");
    gm_kube_config_free(c);

    /* No token file: the message names it. */
    remove_file(dir, "token");
    assert_true(gm_kubeconfig_in_cluster(dir, &c, &err) < 0);
    assert_null(c);
    snprintf(path, sizeof(path), "%s/token", dir);
    assert_non_null(strstr(err, path));
    free(err);
    err = NULL;

    /* No service environment: the message names the variables. */
    unsetenv("KUBERNETES_SERVICE_HOST");
    assert_true(gm_kubeconfig_in_cluster(dir, &c, &err) < 0);
    assert_non_null(strstr(err, "KUBERNETES_SERVICE_HOST"));
    free(err);

    unsetenv("KUBERNETES_SERVICE_PORT");
    remove_file(dir, "ca.crt");
    rmdir(dir);
}

/* An inline certificate with a key file, or the reverse, comes out as two
 * inline PEMs: the transport sends a certificate only for a matching pair. */
static void test_mixed_cert_forms(void **state)
{
    char dir[] = "/tmp/gm-kc-XXXXXX";
    char path[PATH_MAX], key[PATH_MAX];
    struct gm_kube_config *c;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/config", dir);
    write_file(dir, "client.key", "KEY PEM\n");
    write_file(dir, "client.crt", "CERT PEM\n");
    /* Q0VSVA== is "CERT", S0VZ is "KEY". */
    write_file(dir, "config",
               "current-context: c\n"
               "clusters: [{name: c, cluster: {server: 'https://x'}}]\n"
               "users:\n"
               "- {name: u, user: {client-certificate-data: Q0VSVA==, "
               "client-key: client.key}}\n"
               "- {name: v, user: {client-certificate: client.crt, "
               "client-key-data: S0VZ}}\n"
               "- {name: w, user: {client-certificate-data: Q0VSVA==, "
               "client-key: gone.key}}\n"
               "contexts:\n"
               "- {name: c, context: {cluster: c, user: u}}\n"
               "- {name: d, context: {cluster: c, user: v}}\n"
               "- {name: e, context: {cluster: c, user: w}}\n");

    c = load_ok(path, "c");
    assert_null(c->cert_file);
    assert_null(c->key_file);
    assert_int_equal(c->cert_data_len, 4);
    assert_memory_equal(c->cert_data, "CERT", 4);
    assert_int_equal(c->key_data_len, 8);
    assert_memory_equal(c->key_data, "KEY PEM\n", 8);
    gm_kube_config_free(c);

    c = load_ok(path, "d");
    assert_null(c->cert_file);
    assert_null(c->key_file);
    assert_int_equal(c->cert_data_len, 9);
    assert_memory_equal(c->cert_data, "CERT PEM\n", 9);
    assert_int_equal(c->key_data_len, 3);
    assert_memory_equal(c->key_data, "KEY", 3);
    gm_kube_config_free(c);

    /* The file half must be readable now; the message names it. */
    snprintf(key, sizeof(key), "%s/gone.key", dir);
    load_fails(path, "e", path, "users[2].user.client-key");
    load_fails(path, "e", path, key);

    remove_file(dir, "config");
    remove_file(dir, "client.key");
    remove_file(dir, "client.crt");
    rmdir(dir);
}

/* Field-level errors, one small kubeconfig each: {text, expected field}. */
static const struct {
    const char *yaml;
    const char *field;
} field_errors[] = {
    /* A name given twice in one file: client-go refuses the file, even
     * for an entry the context does not use. */
    {"current-context: c\n"
     "clusters: [{name: c, cluster: {server: 'https://x'}},\n"
     "           {name: c, cluster: {server: 'https://y'}}]\n"
     "contexts: [{name: c, context: {cluster: c}}]\n",
     "clusters[1].name: \"c\" is also clusters[0]"},
    {"current-context: c\n"
     "clusters: [{name: c, cluster: {server: 'https://x'}}]\n"
     "users: [{name: u, user: {token: a}}, {name: v, user: {}},\n"
     "        {name: u, user: {token: b}}]\n"
     "contexts: [{name: c, context: {cluster: c, user: u}}]\n",
     "users[2].name: \"u\" is also users[0]"},
    {"current-context: c\n"
     "clusters: [{name: c, cluster: {server: 'https://x'}}]\n"
     "contexts: [{name: c, context: {cluster: c}},\n"
     "           {name: c, context: {cluster: d}}]\n",
     "contexts[1].name: \"c\" is also contexts[0]"},
    {"current-context: c\n"
     "clusters: [{name: c, cluster: {server: [a]}}]\n"
     "contexts: [{name: c, context: {cluster: c}}]\n",
     "clusters[0].cluster.server: expected a string"},
    {"current-context: c\n"
     "clusters: [{name: c, cluster: {server: 'https://x', "
     "insecure-skip-tls-verify: maybe}}]\n"
     "contexts: [{name: c, context: {cluster: c}}]\n",
     "clusters[0].cluster.insecure-skip-tls-verify: expected true or false"},
    {"current-context: c\n"
     "clusters: [{name: c, cluster: {server: 'https://x', "
     "insecure-skip-tls-verify: true, certificate-authority: ca.crt}}]\n"
     "contexts: [{name: c, context: {cluster: c}}]\n",
     "clusters[0].cluster.insecure-skip-tls-verify: cannot be combined"},
    {"current-context: c\n"
     "clusters: [{name: c, cluster: {server: 'https://x'}}]\n"
     "users: [{name: u, user: {client-certificate: a.crt}}]\n"
     "contexts: [{name: c, context: {cluster: c, user: u}}]\n",
     "users[0].user.client-key: missing"},
    {"current-context: c\n"
     "clusters: [{name: c, cluster: {server: 'https://x'}}]\n"
     "users: [{name: u, user: {exec: {command: x}}}]\n"
     "contexts: [{name: c, context: {cluster: c, user: u}}]\n",
     "users[0].user.exec.apiVersion: missing"},
    {"current-context: c\n"
     "clusters: [{name: c, cluster: {server: 'https://x'}}]\n"
     "users: [{name: u, user: {exec: {apiVersion: "
     "client.authentication.k8s.io/v1, command: x, env: [{value: v}]}}}]\n"
     "contexts: [{name: c, context: {cluster: c, user: u}}]\n",
     "users[0].user.exec.env[0].name: missing"},
    {"current-context: c\n"
     "clusters: [{name: c, cluster: {server: 'https://x'}}]\n"
     "users: [{name: u, user: {username: admin, password: secret}}]\n"
     "contexts: [{name: c, context: {cluster: c, user: u}}]\n",
     "users[0].user.username: basic auth is not supported"},
    {"current-context: c\n"
     "clusters: [{name: c, cluster: {server: 'https://x'}}]\n"
     "contexts: [{name: c, context: {cluster: c, user: ghost}}]\n",
     "contexts[0].context.user: user \"ghost\" not found"},
    {"contexts: [{context: {cluster: c}}]\n", "contexts[0].name: missing"},
    {"- just\n- a list\n", "expected a mapping at the top level"},
    {"clusters: {a: 1}\n", "clusters: expected a list"},
};

static void test_field_errors(void **state)
{
    char dir[] = "/tmp/gm-kc-XXXXXX";
    char path[PATH_MAX];

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/config", dir);
    for (size_t i = 0; i < sizeof(field_errors) / sizeof(field_errors[0]);
         i++) {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(field_errors[i].yaml, f);
        fclose(f);
        load_fails(path, NULL, path, field_errors[i].field);
    }
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_file),
        cmocka_unit_test(test_explicit_context),
        cmocka_unit_test(test_missing_context),
        cmocka_unit_test(test_merge_first_wins),
        cmocka_unit_test(test_merge_skips_missing_and_empty),
        cmocka_unit_test(test_kubeconfig_env),
        cmocka_unit_test(test_missing_single_file),
        cmocka_unit_test(test_kubeconfig_env_skips_missing),
        cmocka_unit_test(test_no_home_config),
        cmocka_unit_test(test_in_cluster_fallback),
        cmocka_unit_test(test_unreadable_file),
        cmocka_unit_test(test_token_file),
        cmocka_unit_test(test_cert_files_insecure_sni_proxy),
        cmocka_unit_test(test_cert_data_json),
        cmocka_unit_test(test_exec),
        cmocka_unit_test(test_exec_extension),
        cmocka_unit_test(test_malformed_yaml),
        cmocka_unit_test(test_bad_base64),
        cmocka_unit_test(test_empty_fields_are_unset),
        cmocka_unit_test(test_missing_server),
        cmocka_unit_test(test_auth_provider_rejected),
        cmocka_unit_test(test_in_cluster),
        cmocka_unit_test(test_mixed_cert_forms),
        cmocka_unit_test(test_field_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
