/* watchcheck: keeps a node cache with the product's reflector and reports
 * it, for end-to-end tests and benchmarks of the kube client against a real
 * API server. Prints one JSON line per report:
 *   {"event":"synced","nodes":N,"ms":T,"peak_rss_kb":R,"anon_rss_kb":A,...}
 * on every completed list, and on SIGUSR1 a dump with the node names and
 * resourceVersions it holds (so a test can compare with the server). Exits
 * on SIGTERM/SIGINT. Usage: watchcheck KUBECONFIG [LABEL_SELECTOR] */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common/intern.h"
#include "common/log.h"
#include "kube/client.h"
#include "kube/config.h"
#include "kube/node.h"
#include "kube/reflector.h"

struct state {
    uv_loop_t *loop;
    struct gm_kube *kube;
    struct gm_reflector *r;
    uint64_t start_ms;
    unsigned long adds, updates, deletes;
};

/* A "Key:" line of /proc/self/status in kB, or -1. */
static long status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t n = strlen(key);
    long kb = -1;
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, key, n) == 0)
            kb = strtol(line + n, NULL, 10);
    if (f)
        fclose(f);
    return kb;
}

static void report(struct state *s, const char *event)
{
    struct gm_reflector_stats st;
    struct gm_http_stats hs;
    gm_reflector_get_stats(s->r, &st);
    gm_http_get_stats(gm_kube_http(s->kube), &hs);
    printf("{\"event\":\"%s\",\"http_version\":%ld,\"connects\":%lu,"
           "\"requests\":%lu,",
           event, hs.last_http_version, hs.connects, hs.requests);
    printf("\"nodes\":%zu,\"ms\":%llu,\"peak_rss_kb\":%ld,\"anon_rss_kb\":%ld,"
           "\"lists\":%lu,\"watches\":%lu,\"events\":%lu,\"bookmarks\":%lu,"
           "\"gone\":%lu,\"errors\":%lu,\"adds\":%lu,\"updates\":%lu,"
           "\"deletes\":%lu,\"interned\":%zu,\"rv\":\"%s\"}\n",
           gm_reflector_items(s->r)->len,
           (unsigned long long)(uv_now(s->loop) - s->start_ms),
           status_kb("VmHWM:"), status_kb("RssAnon:"), st.lists, st.watches,
           st.events, st.bookmarks, st.gone, st.errors, s->adds, s->updates,
           s->deletes, gm_intern_count(), gm_reflector_resource_version(s->r));
    fflush(stdout);
}

static void *decode(void *ud, json_object *obj)
{
    struct gm_node *n = NULL;
    (void)ud;
    gm_node_from_json(obj, &n);
    return n;
}

static void free_obj(void *ud, void *obj)
{
    (void)ud;
    gm_node_free(obj);
}

static const char *rv(const void *obj)
{
    return ((const struct gm_node *)obj)->resource_version;
}

static void on_add(void *ud, const char *k, const void *o)
{
    (void)k;
    (void)o;
    ((struct state *)ud)->adds++;
}

static void on_update(void *ud, const char *k, const void *a, const void *b)
{
    (void)k;
    (void)a;
    (void)b;
    ((struct state *)ud)->updates++;
}

static void on_delete(void *ud, const char *k, const void *o)
{
    (void)k;
    (void)o;
    ((struct state *)ud)->deletes++;
}

static void on_synced(void *ud)
{
    report(ud, "synced");
}

static const struct gm_reflector_ops ops = {
    .decode = decode,
    .free_obj = free_obj,
    .resource_version = rv,
    .on_add = on_add,
    .on_update = on_update,
    .on_delete = on_delete,
    .on_synced = on_synced,
};

static void on_dump(uv_signal_t *h, int sig)
{
    struct state *s = h->data;
    const struct gm_map *m = gm_reflector_items(s->r);
    (void)sig;
    report(s, "dump");
    for (struct gm_map_entry *e = gm_map_first(m); e; e = gm_map_next(m, e))
        printf("{\"node\":\"%s\",\"rv\":\"%s\"}\n", e->key,
               ((const struct gm_node *)e->value)->resource_version);
    printf("{\"event\":\"end\"}\n");
    fflush(stdout);
}

static void on_stop(uv_signal_t *h, int sig)
{
    (void)sig;
    uv_stop(h->loop);
}

int main(int argc, char **argv)
{
    struct state s = {0};
    struct gm_kube_config *cfg;
    char *err = NULL;
    uv_signal_t usr1, term, intr;

    if (argc < 2) {
        fprintf(stderr, "usage: watchcheck KUBECONFIG [LABEL_SELECTOR]\n");
        return 2;
    }
    gm_log_setup(GM_LOG_INFO, 0);
    if (gm_kubeconfig_load(argv[1], NULL, &cfg, &err) != 0) {
        fprintf(stderr, "watchcheck: %s\n", err);
        return 2;
    }
    s.loop = uv_default_loop();
    s.start_ms = uv_now(s.loop);
    struct gm_kube_opts ko = {.qps = 50, .burst = 100, .stream_idle_s = 90};
    if (gm_kube_new(s.loop, cfg, &ko, &s.kube) != 0)
        return 1;
    struct gm_reflector_opts ro = {
        .path = "/api/v1/nodes",
        .label_selector = argc > 2 ? argv[2] : NULL,
        .backoff_max_ms = 2000,
    };
    if (gm_reflector_start(s.kube, s.loop, &ro, &ops, &s, &s.r) != 0)
        return 1;
    uv_signal_init(s.loop, &usr1);
    uv_signal_init(s.loop, &term);
    uv_signal_init(s.loop, &intr);
    usr1.data = &s;
    uv_signal_start(&usr1, on_dump, SIGUSR1);
    uv_signal_start(&term, on_stop, SIGTERM);
    uv_signal_start(&intr, on_stop, SIGINT);
    uv_run(s.loop, UV_RUN_DEFAULT);
    report(&s, "exit");
    gm_reflector_free(s.r);
    gm_kube_free(s.kube);
    uv_close((uv_handle_t *)&usr1, NULL);
    uv_close((uv_handle_t *)&term, NULL);
    uv_close((uv_handle_t *)&intr, NULL);
    uv_run(s.loop, UV_RUN_DEFAULT);
    gm_kube_config_free(cfg);
    return 0;
}
