/* Tests for controller/kube/auth.c: token files, exec plugins on a real libuv
 * loop (test/fixtures/exec/plugin.sh), expiry with an injected clock. Run
 * from the repository root. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/log.h"
#include "kube/auth.h"

#define PLUGIN "test/fixtures/exec/plugin.sh"
#define API_V1 "client.authentication.k8s.io/v1"
/* 2030-01-01T00:00:00Z, the expiry the plugin reports in expiry tests. */
#define EXPIRY_MS INT64_C(1893456000000)

struct fixture {
    uv_loop_t loop;
    struct gm_kube_config cfg;
    struct gm_kube_exec exec;
    struct gm_auth *a;
    int64_t clock;
    char dir[32];
    char token_path[PATH_MAX];
    char count_path[PATH_MAX];
    char info_path[PATH_MAX];
    char cert_path[PATH_MAX];
    char key_path[PATH_MAX];
    char command[PATH_MAX];
    char api[64];
    char source[32];
    char arg1[16];
    char env_mode[64];
    char env_count[PATH_MAX + 16];
    char env_info[PATH_MAX + 16];
    char env_expiry[64];
    char env_cert[PATH_MAX + 16];
    char env_key[PATH_MAX + 16];
    char *args[3];
    char *env[7];
};

struct result {
    int called;
    int err;
    char msg[2048];
};

static int64_t fake_clock(void *data)
{
    return *(int64_t *)data;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/gm-auth-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->token_path, sizeof(f->token_path), "%s/token", f->dir);
    snprintf(f->count_path, sizeof(f->count_path), "%s/count", f->dir);
    snprintf(f->info_path, sizeof(f->info_path), "%s/info", f->dir);
    snprintf(f->cert_path, sizeof(f->cert_path), "%s/client.crt", f->dir);
    snprintf(f->key_path, sizeof(f->key_path), "%s/client.key", f->dir);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->clock = EXPIRY_MS - 3600 * 1000;
    f->cfg.namespace = "default";
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    gm_auth_free(f->a);
    /* Killed plugins and closing handles finish here. */
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    unlink(f->token_path);
    unlink(f->count_path);
    unlink(f->info_path);
    unlink(f->cert_path);
    unlink(f->key_path);
    rmdir(f->dir);
    free(f);
    return 0;
}

static void new_auth(struct fixture *f)
{
    assert_int_equal(gm_auth_new(&f->loop, &f->cfg, &f->a), 0);
    gm_auth_set_clock(f->a, fake_clock, &f->clock);
}

/* An exec config for plugin.sh in the given mode, counting runs. */
static void use_exec(struct fixture *f, const char *mode, const char *expiry)
{
    int i = 0;

    snprintf(f->command, sizeof(f->command), "%s", PLUGIN);
    snprintf(f->api, sizeof(f->api), "%s", API_V1);
    snprintf(f->source, sizeof(f->source), "test.kubeconfig");
    snprintf(f->arg1, sizeof(f->arg1), "arg1");
    snprintf(f->env_mode, sizeof(f->env_mode), "PLUGIN_MODE=%s", mode);
    snprintf(f->env_count, sizeof(f->env_count), "PLUGIN_COUNT=%s",
             f->count_path);
    snprintf(f->env_info, sizeof(f->env_info), "PLUGIN_INFO=%s", f->info_path);
    f->args[0] = f->command;
    f->args[1] = f->arg1;
    f->args[2] = NULL;
    f->env[i++] = f->env_mode;
    f->env[i++] = f->env_count;
    f->env[i++] = f->env_info;
    snprintf(f->env_cert, sizeof(f->env_cert), "PLUGIN_CERT=%s", f->cert_path);
    snprintf(f->env_key, sizeof(f->env_key), "PLUGIN_KEY=%s", f->key_path);
    f->env[i++] = f->env_cert;
    f->env[i++] = f->env_key;
    if (expiry) {
        snprintf(f->env_expiry, sizeof(f->env_expiry), "PLUGIN_EXPIRY=%s",
                 expiry);
        f->env[i++] = f->env_expiry;
    }
    f->env[i] = NULL;
    f->exec.api_version = f->api;
    f->exec.command = f->command;
    f->exec.args = f->args;
    f->exec.env = f->env;
    f->exec.source = f->source;
    f->cfg.exec = &f->exec;
    new_auth(f);
}

static void on_done(void *data, int err, const char *msg)
{
    struct result *r = data;

    r->called++;
    r->err = err;
    snprintf(r->msg, sizeof(r->msg), "%s", msg ? msg : "");
}

static void on_done_free(void *data, int err, const char *msg)
{
    struct fixture *f = data;

    gm_auth_free(f->a);
    f->a = NULL;
}

/* Runs the loop until *called reaches want (or nothing is left to run). */
static void wait_for(struct fixture *f, const int *called, int want)
{
    while (*called < want) {
        if (uv_run(&f->loop, UV_RUN_ONCE) == 0 && *called < want)
            break;
    }
    assert_int_equal(*called, want);
}

/* Runs the loop until a background plugin run has ended and closed. */
static void settle(struct fixture *f)
{
    uv_run(&f->loop, UV_RUN_DEFAULT);
}

static int count_runs(const struct fixture *f)
{
    char line[64];
    int n = 0;
    FILE *fp = fopen(f->count_path, "r");

    if (fp == NULL)
        return 0;
    while (fgets(line, sizeof(line), fp))
        n++;
    fclose(fp);
    return n;
}

static void write_token(const struct fixture *f, const char *text)
{
    FILE *fp = fopen(f->token_path, "w");

    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

/* Asks once, waits for the refresh, asks again; returns the final code. */
static int refresh(struct fixture *f, struct gm_cred *cred, struct result *r)
{
    memset(r, 0, sizeof(*r));
    int rc = gm_auth_current(f->a, cred, on_done, r);
    if (rc != GM_AUTH_PENDING)
        return rc;
    /* Never called from inside gm_auth_current. */
    assert_int_equal(r->called, 0);
    wait_for(f, &r->called, 1);
    if (r->err)
        return r->err;
    return gm_auth_current(f->a, cred, on_done, r);
}

static void test_static_token(void **state)
{
    struct fixture *f = *state;
    struct gm_cred cred;
    char token[] = "static";

    f->cfg.token = token;
    new_auth(f);
    assert_int_equal(gm_auth_current(f->a, &cred, on_done, NULL), 0);
    assert_string_equal(cred.token, "static");
    assert_null(cred.cert_pem);
    uint64_t gen = cred.generation;
    gm_auth_invalidate(f->a, 0);
    assert_int_equal(gm_auth_current(f->a, &cred, on_done, NULL), 0);
    assert_int_equal(cred.generation, gen);
}

static void test_token_file_invalidate(void **state)
{
    struct fixture *f = *state;
    struct gm_cred cred;

    write_token(f, "token-one\n");
    f->cfg.token_file = f->token_path;
    new_auth(f);
    assert_int_equal(gm_auth_current(f->a, &cred, NULL, NULL), 0);
    assert_string_equal(cred.token, "token-one");
    uint64_t gen = cred.generation;

    /* Within the minute the file is not read again... */
    write_token(f, "token-two");
    f->clock += 10 * 1000;
    assert_int_equal(gm_auth_current(f->a, &cred, NULL, NULL), 0);
    assert_string_equal(cred.token, "token-one");
    assert_int_equal(cred.generation, gen);

    /* ...unless a 401 said the token is bad. */
    gm_auth_invalidate(f->a, 0);
    assert_int_equal(gm_auth_current(f->a, &cred, NULL, NULL), 0);
    assert_string_equal(cred.token, "token-two");
    assert_true(cred.generation > gen);
}

static void test_token_file_after_60s(void **state)
{
    struct fixture *f = *state;
    struct gm_cred cred;

    write_token(f, "  token-one  \n");
    f->cfg.token_file = f->token_path;
    new_auth(f);
    assert_int_equal(gm_auth_current(f->a, &cred, NULL, NULL), 0);
    assert_string_equal(cred.token, "token-one");
    uint64_t gen = cred.generation;

    write_token(f, "token-one\n");
    f->clock += 61 * 1000;
    assert_int_equal(gm_auth_current(f->a, &cred, NULL, NULL), 0);
    assert_int_equal(cred.generation, gen); /* same text, same generation */

    write_token(f, "token-two\n");
    f->clock += 59 * 1000;
    assert_int_equal(gm_auth_current(f->a, &cred, NULL, NULL), 0);
    assert_string_equal(cred.token, "token-one");
    f->clock += 2 * 1000;
    assert_int_equal(gm_auth_current(f->a, &cred, NULL, NULL), 0);
    assert_string_equal(cred.token, "token-two");
    assert_int_equal(cred.generation, gen + 1);
}

static void test_token_file_missing(void **state)
{
    struct fixture *f = *state;
    struct gm_cred cred;

    f->cfg.token_file = f->token_path;
    new_auth(f);
    assert_int_equal(gm_auth_current(f->a, &cred, NULL, NULL), -ENOENT);
    assert_non_null(strstr(gm_auth_last_error(f->a), f->token_path));

    /* Once a token was read, a vanished file keeps the old one until a 401
     * says it is bad. */
    write_token(f, "kept\n");
    assert_int_equal(gm_auth_current(f->a, &cred, NULL, NULL), 0);
    unlink(f->token_path);
    f->clock += 120 * 1000;
    assert_int_equal(gm_auth_current(f->a, &cred, NULL, NULL), 0);
    assert_string_equal(cred.token, "kept");
    /* Not read again at every request (each would warn), but soon. */
    write_token(f, "back\n");
    f->clock += 1000;
    assert_int_equal(gm_auth_current(f->a, &cred, NULL, NULL), 0);
    assert_string_equal(cred.token, "kept");
    f->clock += 5000;
    assert_int_equal(gm_auth_current(f->a, &cred, NULL, NULL), 0);
    assert_string_equal(cred.token, "back");
    unlink(f->token_path);
    f->clock += 120 * 1000;
    assert_int_equal(gm_auth_current(f->a, &cred, NULL, NULL), 0);
    gm_auth_invalidate(f->a, 0);
    assert_int_equal(gm_auth_current(f->a, &cred, NULL, NULL), -ENOENT);
}

static void test_exec_token(void **state)
{
    struct fixture *f = *state;
    struct gm_cred cred;
    struct result r;

    /* The plugin's own env wins over ours. */
    setenv("PLUGIN_MODE", "fail", 1);
    use_exec(f, "token", NULL);
    assert_int_equal(refresh(f, &cred, &r), 0);
    unsetenv("PLUGIN_MODE");
    assert_string_equal(cred.token, "exec-token-1-arg1");
    assert_null(cred.cert_pem);
    assert_null(gm_auth_last_error(f->a));

    /* No expiry: used until a 401. */
    f->clock += 24 * 3600 * 1000;
    assert_int_equal(gm_auth_current(f->a, &cred, on_done, &r), 0);
    assert_int_equal(count_runs(f), 1);

    /* The plugin was told what we speak and that nobody can answer. */
    struct json_object *info = json_object_from_file(f->info_path);
    struct json_object *v, *spec;
    assert_non_null(info);
    assert_true(json_object_object_get_ex(info, "apiVersion", &v));
    assert_string_equal(json_object_get_string(v), API_V1);
    assert_true(json_object_object_get_ex(info, "kind", &v));
    assert_string_equal(json_object_get_string(v), "ExecCredential");
    assert_true(json_object_object_get_ex(info, "spec", &spec));
    assert_true(json_object_object_get_ex(spec, "interactive", &v));
    assert_true(json_object_is_type(v, json_type_boolean));
    assert_false(json_object_get_boolean(v));
    json_object_put(info);
}

static void assert_names_plugin(const char *msg, const char *detail)
{
    if (!strstr(msg, PLUGIN) || !strstr(msg, "test.kubeconfig") ||
        !strstr(msg, detail))
        print_error("message \"%s\" lacks \"%s\"\n", msg, detail);
    assert_non_null(strstr(msg, PLUGIN));
    assert_non_null(strstr(msg, "test.kubeconfig"));
    assert_non_null(strstr(msg, detail));
}

static void test_exec_failure(void **state)
{
    struct fixture *f = *state;
    struct gm_cred cred;
    struct result r;

    use_exec(f, "fail", NULL);
    assert_true(refresh(f, &cred, &r) < 0);
    assert_names_plugin(r.msg, "exit status 1");
    assert_names_plugin(r.msg, "stderr: error: could not get token: access "
                               "denied for user test");
    /* Asking again right away gives the error without another run. */
    int rc = gm_auth_current(f->a, &cred, on_done, &r);
    assert_int_equal(rc, r.err);
    assert_string_equal(gm_auth_last_error(f->a), r.msg);
    assert_int_equal(count_runs(f), 1);
    /* A little later it tries again. */
    f->clock += 10 * 1000;
    assert_true(refresh(f, &cred, &r) < 0);
    assert_int_equal(count_runs(f), 2);
}

static void test_exec_bad_json(void **state)
{
    struct fixture *f = *state;
    struct gm_cred cred;
    struct result r;

    use_exec(f, "badjson", NULL);
    assert_int_equal(refresh(f, &cred, &r), -EPROTO);
    assert_names_plugin(r.msg, "invalid ExecCredential JSON");
    assert_names_plugin(r.msg, "stderr: warning: cache is cold");
}

static void test_exec_wrong_api_version(void **state)
{
    struct fixture *f = *state;
    struct gm_cred cred;
    struct result r;

    use_exec(f, "wrongapi", NULL);
    assert_int_equal(refresh(f, &cred, &r), -EPROTO);
    assert_names_plugin(r.msg, "apiVersion \"client.authentication.k8s.io/"
                               "v1beta1\" does not match");
}

static void test_exec_timeout(void **state)
{
    struct fixture *f = *state;
    struct gm_cred cred;
    struct result r;

    use_exec(f, "sleep", NULL);
    gm_auth_set_exec_timeout(f->a, 1000);
    assert_int_equal(refresh(f, &cred, &r), -ETIMEDOUT);
    assert_names_plugin(r.msg, "timed out after 1000 ms");
    assert_names_plugin(r.msg, "waiting for browser login");
}

static void test_exec_output_cap(void **state)
{
    struct fixture *f = *state;
    struct gm_cred cred;
    struct result r;

    use_exec(f, "big", NULL);
    assert_int_equal(refresh(f, &cred, &r), -E2BIG);
    assert_names_plugin(r.msg, "output larger than");
}

static void test_exec_spawn_failure(void **state)
{
    struct fixture *f = *state;
    struct gm_cred cred;
    struct result r = {0};

    use_exec(f, "token", NULL);
    snprintf(f->command, sizeof(f->command), "%s", "/nonexistent/plugin");
    int rc = gm_auth_current(f->a, &cred, on_done, &r);
    assert_int_equal(rc, UV_ENOENT);
    assert_non_null(strstr(gm_auth_last_error(f->a), "/nonexistent/plugin"));
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(r.called, 0);
}

static void test_exec_expiry_reruns(void **state)
{
    struct fixture *f = *state;
    struct gm_cred cred;
    struct result r;

    use_exec(f, "token", "2030-01-01T00:00:00Z");
    assert_int_equal(refresh(f, &cred, &r), 0);
    assert_string_equal(cred.token, "exec-token-1-arg1");
    uint64_t gen = cred.generation;

    /* Half an hour later, with half an hour left: still fresh. */
    f->clock += 30 * 60 * 1000;
    assert_int_equal(gm_auth_current(f->a, &cred, on_done, &r), 0);
    assert_int_equal(count_runs(f), 1);

    /* Inside the last 10% of an hour's life: run again, in the background;
     * callers are not kept waiting while the old token is unexpired. */
    f->clock = EXPIRY_MS - 5 * 60 * 1000;
    assert_int_equal(gm_auth_current(f->a, &cred, on_done, &r), 0);
    assert_string_equal(cred.token, "exec-token-1-arg1");
    settle(f);
    assert_int_equal(count_runs(f), 2);
    assert_int_equal(gm_auth_current(f->a, &cred, on_done, &r), 0);
    assert_string_equal(cred.token, "exec-token-2-arg1");
    assert_true(cred.generation > gen);
}

/* Switches plugin.sh's behaviour for its next runs (the env is borrowed). */
static void set_mode(struct fixture *f, const char *mode)
{
    snprintf(f->env_mode, sizeof(f->env_mode), "PLUGIN_MODE=%s", mode);
}

/* Between refresh time and expiry a failing plugin costs nothing: the
 * current token is handed out at once, the failure is logged, and the
 * plugin is tried again after a back-off, not on every request. */
static void test_exec_early_refresh_failure_keeps_token(void **state)
{
    struct fixture *f = *state;
    struct gm_cred cred;
    struct result r;

    use_exec(f, "token", "2030-01-01T00:00:00Z");
    assert_int_equal(refresh(f, &cred, &r), 0);
    uint64_t gen = cred.generation;
    set_mode(f, "fail");

    f->clock = EXPIRY_MS - 5 * 60 * 1000;
    memset(&r, 0, sizeof(r));
    assert_int_equal(gm_auth_current(f->a, &cred, on_done, &r), 0);
    assert_string_equal(cred.token, "exec-token-1-arg1");
    settle(f);
    assert_int_equal(count_runs(f), 2);
    assert_int_equal(r.called, 0);
    assert_names_plugin(gm_auth_last_error(f->a), "exit status 1");

    /* Still the old token, with no new run inside the back-off... */
    f->clock += 1000;
    assert_int_equal(gm_auth_current(f->a, &cred, on_done, &r), 0);
    assert_string_equal(cred.token, "exec-token-1-arg1");
    assert_int_equal(cred.generation, gen);
    settle(f);
    assert_int_equal(count_runs(f), 2);

    /* ...and another try once it has passed. */
    f->clock += 10 * 1000;
    assert_int_equal(gm_auth_current(f->a, &cred, on_done, &r), 0);
    assert_string_equal(cred.token, "exec-token-1-arg1");
    settle(f);
    assert_int_equal(count_runs(f), 3);

    /* When the plugin works again, its token replaces the old one. */
    set_mode(f, "token");
    f->clock += 10 * 1000;
    assert_int_equal(gm_auth_current(f->a, &cred, on_done, &r), 0);
    settle(f);
    assert_int_equal(gm_auth_current(f->a, &cred, on_done, &r), 0);
    assert_string_equal(cred.token, "exec-token-4-arg1");
    assert_true(cred.generation > gen);
    assert_null(gm_auth_last_error(f->a));
    assert_int_equal(r.called, 0);
}

/* Once the token has expired, a failing plugin fails the callers: there is
 * nothing left to send. */
static void test_exec_expired_refresh_failure_fails(void **state)
{
    struct fixture *f = *state;
    struct gm_cred cred;
    struct result r;

    use_exec(f, "token", "2030-01-01T00:00:00Z");
    assert_int_equal(refresh(f, &cred, &r), 0);
    set_mode(f, "fail");

    f->clock = EXPIRY_MS;
    assert_int_equal(refresh(f, &cred, &r), -ECHILD);
    assert_int_equal(r.called, 1);
    assert_names_plugin(r.msg, "exit status 1");
    assert_int_equal(count_runs(f), 2);
    /* Asked again within the back-off: the error, without a run. */
    assert_int_equal(gm_auth_current(f->a, &cred, on_done, &r), -ECHILD);
    assert_null(cred.token);
    assert_int_equal(count_runs(f), 2);
}

/* A background refresh still running at expiry: callers from then on wait
 * for it, and its failure is theirs. */
static void test_exec_refresh_failing_past_expiry(void **state)
{
    struct fixture *f = *state;
    struct gm_cred cred;
    struct result r = {0};

    use_exec(f, "token", "2030-01-01T00:00:00Z");
    gm_auth_set_exec_timeout(f->a, 1000);
    assert_int_equal(refresh(f, &cred, &r), 0);
    set_mode(f, "sleep");

    f->clock = EXPIRY_MS - 5 * 60 * 1000;
    memset(&r, 0, sizeof(r));
    assert_int_equal(gm_auth_current(f->a, &cred, on_done, &r), 0);
    assert_string_equal(cred.token, "exec-token-1-arg1");
    f->clock = EXPIRY_MS;
    assert_int_equal(gm_auth_current(f->a, &cred, on_done, &r),
                     GM_AUTH_PENDING);
    assert_null(cred.token);
    wait_for(f, &r.called, 1);
    assert_int_equal(r.err, -ETIMEDOUT);
    assert_names_plugin(r.msg, "timed out after 1000 ms");
}

static void test_exec_expired_answer(void **state)
{
    struct fixture *f = *state;
    struct gm_cred cred;
    struct result r;

    use_exec(f, "token", "2020-01-01T00:00:00.5+02:00");
    assert_int_equal(refresh(f, &cred, &r), -EPROTO);
    assert_names_plugin(r.msg, "has passed");
}

static void test_exec_invalidate_reruns(void **state)
{
    struct fixture *f = *state;
    struct gm_cred cred;
    struct result r;

    use_exec(f, "token", NULL);
    assert_int_equal(refresh(f, &cred, &r), 0);
    uint64_t gen = cred.generation;
    gm_auth_invalidate(f->a, 0);
    assert_int_equal(refresh(f, &cred, &r), 0);
    assert_int_equal(count_runs(f), 2);
    assert_string_equal(cred.token, "exec-token-2-arg1");
    assert_int_equal(cred.generation, gen + 1);
}

/* Requests in flight when the token was revoked all come back 401, some
 * while the plugin runs for the first and some after: they answer the
 * credential already being replaced, so the plugin runs once more, not
 * once per 401. */
static void test_exec_stale_401s_run_once(void **state)
{
    struct fixture *f = *state;
    struct gm_cred cred;
    struct result r;

    use_exec(f, "token", NULL);
    assert_int_equal(refresh(f, &cred, &r), 0);
    uint64_t old = cred.generation;
    gm_auth_invalidate(f->a, old);
    memset(&r, 0, sizeof(r));
    assert_int_equal(gm_auth_current(f->a, &cred, on_done, &r),
                     GM_AUTH_PENDING);
    gm_auth_invalidate(f->a, old); /* during the run */
    wait_for(f, &r.called, 1);
    assert_int_equal(r.err, 0);
    gm_auth_invalidate(f->a, old); /* after it */
    memset(&r, 0, sizeof(r));
    assert_int_equal(gm_auth_current(f->a, &cred, on_done, &r), 0);
    assert_int_equal(count_runs(f), 2);
    assert_string_equal(cred.token, "exec-token-2-arg1");
    assert_int_equal(cred.generation, old + 1);

    /* A 401 to the new credential runs it again. */
    gm_auth_invalidate(f->a, cred.generation);
    assert_int_equal(refresh(f, &cred, &r), 0);
    assert_int_equal(count_runs(f), 3);
}

/* A 401 while a background refresh runs (the token was still usable):
 * callers wait for the run rather than get the refused token again, and
 * its success answers the 401 (no third run). */
static void test_exec_401_during_background_refresh(void **state)
{
    struct fixture *f = *state;
    struct gm_cred cred;
    struct result r;

    use_exec(f, "token", "2030-01-01T00:00:00Z");
    assert_int_equal(refresh(f, &cred, &r), 0);
    uint64_t old = cred.generation;
    f->clock = EXPIRY_MS - 5 * 60 * 1000;
    memset(&r, 0, sizeof(r));
    assert_int_equal(gm_auth_current(f->a, &cred, on_done, &r), 0);
    assert_string_equal(cred.token, "exec-token-1-arg1"); /* run started */
    gm_auth_invalidate(f->a, old);
    memset(&r, 0, sizeof(r));
    assert_int_equal(gm_auth_current(f->a, &cred, on_done, &r),
                     GM_AUTH_PENDING);
    wait_for(f, &r.called, 1);
    assert_int_equal(r.err, 0);
    assert_int_equal(gm_auth_current(f->a, &cred, on_done, &r), 0);
    assert_string_equal(cred.token, "exec-token-2-arg1");
    assert_int_equal(count_runs(f), 2);
}

static void test_exec_concurrent_waiters(void **state)
{
    struct fixture *f = *state;
    struct gm_cred cred;
    struct result r[3];
    int total = 0;

    memset(r, 0, sizeof(r));
    use_exec(f, "token", NULL);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(gm_auth_current(f->a, &cred, on_done, &r[i]),
                         GM_AUTH_PENDING);
        assert_null(cred.token);
    }
    while (total < 3 && uv_run(&f->loop, UV_RUN_ONCE) != 0)
        total = r[0].called + r[1].called + r[2].called;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r[i].called, 1);
        assert_int_equal(r[i].err, 0);
    }
    assert_int_equal(count_runs(f), 1);
    assert_int_equal(gm_auth_current(f->a, &cred, on_done, &r[0]), 0);
    assert_string_equal(cred.token, "exec-token-1-arg1");
}

static void test_free_cancels(void **state)
{
    struct fixture *f = *state;
    struct gm_cred cred;
    struct result r = {0};

    use_exec(f, "sleep", NULL);
    assert_int_equal(gm_auth_current(f->a, &cred, on_done, &r),
                     GM_AUTH_PENDING);
    gm_auth_free(f->a);
    f->a = NULL;
    /* The plugin is killed and every handle closes; nothing is called. */
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(r.called, 0);
}

static void test_free_from_callback(void **state)
{
    struct fixture *f = *state;
    struct gm_cred cred;
    struct result r = {0};

    use_exec(f, "token", NULL);
    assert_int_equal(gm_auth_current(f->a, &cred, on_done_free, f),
                     GM_AUTH_PENDING);
    assert_int_equal(gm_auth_current(f->a, &cred, on_done, &r),
                     GM_AUTH_PENDING);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_null(f->a);
    assert_int_equal(r.called, 0);
}

/* ---- client certificate files ---- */

static EVP_PKEY *new_key(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");

    assert_non_null(k);
    return k;
}

/* A self-signed certificate for k, as PEM in path. */
static void write_cert(const char *path, const char *cn, EVP_PKEY *k)
{
    X509 *x = X509_new();
    FILE *fp = fopen(path, "w");

    assert_non_null(x);
    assert_non_null(fp);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, name);
    X509_set_pubkey(x, k);
    assert_true(X509_sign(x, k, EVP_sha256()) > 0);
    assert_int_equal(PEM_write_X509(fp, x), 1);
    fclose(fp);
    X509_free(x);
}

static void write_key(const char *path, EVP_PKEY *k)
{
    FILE *fp = fopen(path, "w");

    assert_non_null(fp);
    assert_int_equal(PEM_write_PrivateKey(fp, k, NULL, NULL, 0, NULL, NULL), 1);
    fclose(fp);
}

/* Whether the PEM handed out is the file's text. */
static int holds_file(const char *pem, size_t len, const char *path)
{
    char buf[8192];
    FILE *fp = fopen(path, "r");

    assert_non_null(fp);
    size_t n = fread(buf, 1, sizeof(buf), fp);
    fclose(fp);
    return pem && len == n && memcmp(pem, buf, n) == 0;
}

/* Writes a pair for k: a certificate named cn and the key. */
static void write_pair(const struct fixture *f, const char *cn, EVP_PKEY *k)
{
    write_cert(f->cert_path, cn, k);
    write_key(f->key_path, k);
}

static void use_cert_files(struct fixture *f)
{
    f->cfg.cert_file = f->cert_path;
    f->cfg.key_file = f->key_path;
    new_auth(f);
}

/* A pair rotated on disk is handed out within the minute (the API server
 * refuses an expired certificate on an open connection), and at once after
 * a 401. */
static void test_cert_files_reloaded(void **state)
{
    struct fixture *f = *state;
    struct gm_cred cred;
    EVP_PKEY *one = new_key(), *two = new_key();

    write_pair(f, "one", one);
    use_cert_files(f);
    assert_int_equal(gm_auth_current(f->a, &cred, NULL, NULL), 0);
    assert_null(cred.token);
    assert_true(holds_file(cred.cert_pem, cred.cert_len, f->cert_path));
    assert_true(holds_file(cred.key_pem, cred.key_len, f->key_path));
    uint64_t gen = cred.generation;
    char first[8192];
    assert_true(cred.cert_len < sizeof(first));
    memcpy(first, cred.cert_pem, cred.cert_len);

    /* The same pair read again is not a change. */
    f->clock += 61 * 1000;
    assert_int_equal(gm_auth_current(f->a, &cred, NULL, NULL), 0);
    assert_int_equal(cred.generation, gen);

    write_pair(f, "two", two);
    f->clock += 30 * 1000;
    assert_int_equal(gm_auth_current(f->a, &cred, NULL, NULL), 0);
    assert_memory_equal(cred.cert_pem, first, cred.cert_len);
    assert_int_equal(cred.generation, gen);
    f->clock += 31 * 1000;
    assert_int_equal(gm_auth_current(f->a, &cred, NULL, NULL), 0);
    assert_true(holds_file(cred.cert_pem, cred.cert_len, f->cert_path));
    assert_true(holds_file(cred.key_pem, cred.key_len, f->key_path));
    assert_int_equal(cred.generation, gen + 1);

    write_pair(f, "three", one);
    f->clock += 1000;
    gm_auth_invalidate(f->a, 0);
    assert_int_equal(gm_auth_current(f->a, &cred, NULL, NULL), 0);
    assert_true(holds_file(cred.cert_pem, cred.cert_len, f->cert_path));
    assert_int_equal(cred.generation, gen + 2);
    EVP_PKEY_free(one);
    EVP_PKEY_free(two);
}

/* A certificate written before its key is not a pair: the pair read before
 * goes on until the key follows. */
static void test_cert_files_half_rotated(void **state)
{
    struct fixture *f = *state;
    struct gm_cred cred;
    EVP_PKEY *one = new_key(), *two = new_key();

    write_pair(f, "one", one);
    use_cert_files(f);
    assert_int_equal(gm_auth_current(f->a, &cred, NULL, NULL), 0);
    uint64_t gen = cred.generation;
    char first[8192];
    size_t first_len = cred.cert_len;
    memcpy(first, cred.cert_pem, first_len);

    write_cert(f->cert_path, "two", two);
    f->clock += 61 * 1000;
    assert_int_equal(gm_auth_current(f->a, &cred, NULL, NULL), 0);
    assert_int_equal(cred.cert_len, first_len);
    assert_memory_equal(cred.cert_pem, first, first_len);
    assert_int_equal(cred.generation, gen);
    assert_non_null(strstr(gm_auth_last_error(f->a), "does not match"));

    write_key(f->key_path, two);
    f->clock += 61 * 1000;
    assert_int_equal(gm_auth_current(f->a, &cred, NULL, NULL), 0);
    assert_true(holds_file(cred.cert_pem, cred.cert_len, f->cert_path));
    assert_int_equal(cred.generation, gen + 1);
    assert_null(gm_auth_last_error(f->a));
    EVP_PKEY_free(one);
    EVP_PKEY_free(two);
}

/* With nothing good read yet, a request fails with the file and the
 * reason. */
static void test_cert_files_unusable(void **state)
{
    struct fixture *f = *state;
    struct gm_cred cred;
    EVP_PKEY *k = new_key();

    write_cert(f->cert_path, "one", k);
    use_cert_files(f);
    assert_int_equal(gm_auth_current(f->a, &cred, NULL, NULL), -ENOENT);
    assert_non_null(strstr(gm_auth_last_error(f->a), f->key_path));

    FILE *fp = fopen(f->key_path, "w");
    assert_non_null(fp);
    fputs("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", fp);
    fclose(fp);
    assert_int_equal(gm_auth_current(f->a, &cred, NULL, NULL), -EINVAL);
    assert_non_null(strstr(gm_auth_last_error(f->a), "not an unencrypted PEM"));
    assert_non_null(strstr(gm_auth_last_error(f->a), f->cert_path));

    write_key(f->key_path, k);
    assert_int_equal(gm_auth_current(f->a, &cred, NULL, NULL), 0);
    assert_true(holds_file(cred.key_pem, cred.key_len, f->key_path));
    EVP_PKEY_free(k);
}

/* A token file and certificate files together: both go out. */
static void test_cert_files_with_token_file(void **state)
{
    struct fixture *f = *state;
    struct gm_cred cred;
    EVP_PKEY *k = new_key();

    write_pair(f, "one", k);
    write_token(f, "token-one\n");
    f->cfg.token_file = f->token_path;
    use_cert_files(f);
    assert_int_equal(gm_auth_current(f->a, &cred, NULL, NULL), 0);
    assert_string_equal(cred.token, "token-one");
    assert_true(holds_file(cred.cert_pem, cred.cert_len, f->cert_path));
    EVP_PKEY_free(k);
}

/* The pair a plugin prints is handed out as it printed it. */
static void test_exec_cert(void **state)
{
    struct fixture *f = *state;
    struct gm_cred cred;
    struct result r;
    EVP_PKEY *k = new_key();

    write_pair(f, "from-plugin", k);
    use_exec(f, "cert", NULL);
    assert_int_equal(refresh(f, &cred, &r), 0);
    assert_null(cred.token);
    assert_true(holds_file(cred.cert_pem, cred.cert_len, f->cert_path));
    assert_true(holds_file(cred.key_pem, cred.key_len, f->key_path));
    EVP_PKEY_free(k);
}

/* A pair that does not belong together is refused with the plugin named,
 * as client-go refuses it: taken, it would fail every TLS handshake, which
 * is no 401 and so would never run the plugin again. */
static void test_exec_cert_mismatched(void **state)
{
    struct fixture *f = *state;
    struct gm_cred cred;
    struct result r;
    EVP_PKEY *k = new_key(), *other = new_key();

    write_cert(f->cert_path, "from-plugin", k);
    write_key(f->key_path, other);
    use_exec(f, "cert", NULL);
    assert_true(refresh(f, &cred, &r) < 0);
    assert_names_plugin(r.msg, "the key does not match the certificate");
    EVP_PKEY_free(k);
    EVP_PKEY_free(other);
}

/* Empty certificate fields beside a token are absent, as client-go reads
 * them: the token alone is handed out, and the kubeconfig's own
 * certificate is not pushed aside by an empty one. */
static void test_exec_empty_cert_fields(void **state)
{
    struct fixture *f = *state;
    struct gm_cred cred;
    struct result r;

    use_exec(f, "emptycert", NULL);
    assert_int_equal(refresh(f, &cred, &r), 0);
    assert_string_equal(cred.token, "exec-token-1");
    assert_null(cred.cert_pem);
    assert_null(cred.key_pem);
}

/* A token, a token file or a client certificate beside an exec plugin is
 * used and the plugin never runs, as in client-go (and so in kubectl). */
static void test_token_or_cert_outranks_exec(void **state)
{
    struct fixture *f = *state;
    struct gm_cred cred;
    EVP_PKEY *k = new_key();

    f->cfg.token = "static";
    use_exec(f, "fail", NULL);
    assert_int_equal(gm_auth_current(f->a, &cred, NULL, NULL), 0);
    assert_string_equal(cred.token, "static");
    gm_auth_invalidate(f->a, 0);
    assert_int_equal(gm_auth_current(f->a, &cred, NULL, NULL), 0);
    assert_string_equal(cred.token, "static");
    gm_auth_free(f->a);
    f->cfg.token = NULL;

    write_pair(f, "one", k);
    f->cfg.cert_file = f->cert_path;
    f->cfg.key_file = f->key_path;
    use_exec(f, "fail", NULL);
    assert_int_equal(gm_auth_current(f->a, &cred, NULL, NULL), 0);
    assert_null(cred.token);
    assert_true(holds_file(cred.cert_pem, cred.cert_len, f->cert_path));
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(count_runs(f), 0);
    EVP_PKEY_free(k);
}

/* A token file that cannot be read beside a token: the token is used, as
 * client-go falls back to it. */
static void test_token_file_falls_back_to_token(void **state)
{
    struct fixture *f = *state;
    struct gm_cred cred;

    f->cfg.token_file = f->token_path; /* never written */
    f->cfg.token = "static";
    new_auth(f);
    assert_int_equal(gm_auth_current(f->a, &cred, NULL, NULL), 0);
    assert_string_equal(cred.token, "static");
    /* Once the file is there, it wins. */
    write_token(f, "from-file\n");
    gm_auth_invalidate(f->a, 0);
    assert_int_equal(gm_auth_current(f->a, &cred, NULL, NULL), 0);
    assert_string_equal(cred.token, "from-file");
}

/* provideClusterInfo: the plugin is told the cluster, its CA as base64
 * data (the kubeconfig's file read for it) and the cluster's exec
 * extension as config, as client-go tells it. */
static void test_exec_provide_cluster_info(void **state)
{
    struct fixture *f = *state;
    struct gm_cred cred;
    struct result r;
    FILE *fp = fopen(f->cert_path, "w");

    assert_non_null(fp);
    fputs("CA PEM\n", fp);
    fclose(fp);
    f->cfg.server = "https://10.0.0.1:6443";
    f->cfg.ca_file = f->cert_path;
    f->cfg.tls_server_name = "kube.internal";
    f->cfg.exec_extension = "{\"audience\":\"sts\",\"n\":[1,2]}";
    f->exec.provide_cluster_info = 1;
    use_exec(f, "token", NULL);
    assert_int_equal(refresh(f, &cred, &r), 0);
    json_object *info = json_object_from_file(f->info_path), *spec, *c, *v;
    assert_non_null(info);
    assert_true(json_object_object_get_ex(info, "spec", &spec));
    assert_true(json_object_object_get_ex(spec, "cluster", &c));
    assert_true(json_object_object_get_ex(c, "server", &v));
    assert_string_equal(json_object_get_string(v), "https://10.0.0.1:6443");
    assert_true(json_object_object_get_ex(c, "tls-server-name", &v));
    assert_string_equal(json_object_get_string(v), "kube.internal");
    assert_true(json_object_object_get_ex(c, "certificate-authority-data", &v));
    assert_string_equal(json_object_get_string(v), "Q0EgUEVNCg==");
    assert_false(json_object_object_get_ex(c, "insecure-skip-tls-verify", &v));
    /* The cluster's exec extension, as JSON, not as a string. */
    assert_true(json_object_object_get_ex(c, "config", &v));
    assert_string_equal(json_object_to_json_string_ext(v, 0),
                        "{\"audience\":\"sts\",\"n\":[1,2]}");
    json_object_put(info);

    /* As deep as the loader lets an extension be (65 levels), not cut to
     * null at json-c's default 32. */
    char deep[200];
    memset(deep, '[', 65);
    memset(deep + 65, ']', 65);
    deep[130] = '\0';
    f->cfg.exec_extension = deep;
    gm_auth_invalidate(f->a, 0);
    assert_int_equal(refresh(f, &cred, &r), 0);
    char text[4096] = {0};
    FILE *in = fopen(f->info_path, "r");
    assert_non_null(in);
    assert_true(fread(text, 1, sizeof(text) - 1, in) > 0);
    fclose(in);
    json_tokener *tok = json_tokener_new_ex(128);
    info = json_tokener_parse_ex(tok, text, -1);
    json_tokener_free(tok);
    assert_non_null(info);
    assert_true(json_object_object_get_ex(info, "spec", &spec));
    assert_true(json_object_object_get_ex(spec, "cluster", &c));
    assert_true(json_object_object_get_ex(c, "config", &v));
    assert_true(json_object_is_type(v, json_type_array));
    json_object_put(info);
    f->cfg.exec_extension = NULL;
}

/* A plugin that is not installed: the kubeconfig's installHint is said. */
static void test_exec_install_hint(void **state)
{
    struct fixture *f = *state;
    struct gm_cred cred;
    static char hint[] = "get it from https://example.com/plugin";

    use_exec(f, "token", NULL);
    snprintf(f->command, sizeof(f->command), "%s", "/nonexistent/plugin");
    f->exec.install_hint = hint;
    assert_int_equal(gm_auth_current(f->a, &cred, NULL, NULL), UV_ENOENT);
    assert_non_null(strstr(gm_auth_last_error(f->a), "/nonexistent/plugin"));
    assert_non_null(strstr(gm_auth_last_error(f->a), hint));
    f->exec.install_hint = NULL;
}

/* interactiveMode Always with nobody at a terminal (the controller): a
 * clear failure, and the plugin never runs. */
static void test_exec_always_interactive_needs_terminal(void **state)
{
    struct fixture *f = *state;
    struct gm_cred cred;

    f->exec.interactive = GM_EXEC_ALWAYS;
    use_exec(f, "token", NULL);
    assert_int_equal(gm_auth_current(f->a, &cred, NULL, NULL), -ENOTTY);
    assert_non_null(
        strstr(gm_auth_last_error(f->a), "interactiveMode is Always"));
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(count_runs(f), 0);
}

/* On a terminal (kubectl-gpumode run by a person) the plugin reads what
 * the person types, is told it may, and is not cut at the time limit,
 * which a person typing could pass. Never keeps it from the terminal. */
static void test_exec_prompts_on_terminal(void **state)
{
    struct fixture *f = *state;
    struct gm_cred cred;
    struct result r;
    int saved = dup(0), p[2];

    assert_true(saved >= 0);
    assert_int_equal(pipe(p), 0);
    assert_int_equal(write(p[1], "typed-token\n", 12), 12);
    close(p[1]);
    assert_int_equal(dup2(p[0], 0), 0);
    close(p[0]);
    use_exec(f, "prompt", NULL);
    gm_auth_set_terminal(f->a, 1);
    gm_auth_set_exec_timeout(f->a, 100); /* the plugin takes 300 ms */
    int rc = refresh(f, &cred, &r);
    assert_int_equal(dup2(saved, 0), 0);
    close(saved);
    assert_int_equal(rc, 0);
    assert_string_equal(cred.token, "typed-token");
    json_object *info = json_object_from_file(f->info_path), *spec, *v;
    assert_true(json_object_object_get_ex(info, "spec", &spec));
    assert_true(json_object_object_get_ex(spec, "interactive", &v));
    assert_true(json_object_get_boolean(v));
    json_object_put(info);

    /* interactiveMode Never: stdin stays /dev/null, so nothing is read
     * and the plugin answers no token. */
    gm_auth_free(f->a);
    f->exec.interactive = GM_EXEC_NEVER;
    use_exec(f, "prompt", NULL);
    gm_auth_set_terminal(f->a, 1);
    assert_true(refresh(f, &cred, &r) < 0);
    assert_names_plugin(r.msg, "no token");
}

static int exists(const char *path)
{
    return access(path, F_OK) == 0;
}

/* Runs plugin.sh in mode at a terminal until it says it is ready (its
 * TERM trap set), then frees the auth as the CLI does when it exits. */
static void free_while_at_terminal(struct fixture *f, const char *mode,
                                   const char *ready, struct result *r)
{
    struct gm_cred cred;

    use_exec(f, mode, NULL);
    gm_auth_set_terminal(f->a, 1);
    assert_int_equal(gm_auth_current(f->a, &cred, on_done, r), GM_AUTH_PENDING);
    for (int i = 0; i < 500 && !exists(ready); i++) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(10000);
    }
    assert_true(exists(ready));
    gm_auth_free(f->a);
    f->a = NULL;
}

/* The CLI ending while a plugin talks to the person (Ctrl-C during a
 * login) stops it with SIGTERM, so it can put the terminal back as it
 * found it; SIGKILL left a password prompt's echo off. */
static void test_exec_interactive_stopped_gently(void **state)
{
    struct fixture *f = *state;
    struct result r = {0};
    char ready[sizeof(f->info_path) + 16], restored[sizeof(f->info_path) + 16];

    snprintf(ready, sizeof(ready), "%s.ready", f->info_path);
    snprintf(restored, sizeof(restored), "%s.restored", f->info_path);
    free_while_at_terminal(f, "tty", ready, &r);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    for (int i = 0; i < 300 && !exists(restored); i++)
        usleep(10000);
    assert_true(exists(restored));
    assert_int_equal(r.called, 0); /* freed: nobody is told */
    unlink(ready);
    unlink(restored);

    /* One that ignores SIGTERM is killed after the grace, so the loop the
     * CLI closes ends rather than waiting on it. */
    free_while_at_terminal(f, "stubborn", ready, &r);
    uint64_t t0 = uv_hrtime();
    uv_run(&f->loop, UV_RUN_DEFAULT);
    uint64_t ms = (uv_hrtime() - t0) / 1000000;
    assert_true(ms >= 1500 && ms < 10000);
    unlink(ready);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_static_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_file_invalidate, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_token_file_after_60s, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_token_file_missing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_exec_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_cert, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_bad_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_wrong_api_version, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_exec_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_output_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_spawn_failure, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_exec_expiry_reruns, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_exec_early_refresh_failure_keeps_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_expired_refresh_failure_fails,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_refresh_failing_past_expiry,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_expired_answer, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_exec_invalidate_reruns, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_exec_stale_401s_run_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_exec_401_during_background_refresh,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_concurrent_waiters, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_free_cancels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_from_callback, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cert_files_reloaded, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cert_files_half_rotated, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cert_files_unusable, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cert_files_with_token_file, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_exec_cert_mismatched, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_exec_empty_cert_fields, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_token_or_cert_outranks_exec, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_token_file_falls_back_to_token,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_provide_cluster_info, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_exec_install_hint, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_exec_always_interactive_needs_terminal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_interactive_stopped_gently,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_prompts_on_terminal, setup,
                                        teardown),
    };
    /* Failures are asserted on; their warnings would only be noise. */
    gm_log_setup(GM_LOG_ERROR, 0);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
