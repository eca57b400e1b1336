#include "ctlfx.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "common/json.h"
#include "nodeswitch/record.h"

void th_ctl_start(struct th_ctl *c, th_handler h, void *ud)
{
    uv_loop_init(&c->loop);
    assert_int_equal(th_start(&c->loop, h, ud, &c->srv), 0);
    c->kcfg.server = strdup(th_url(c->srv));
    assert_non_null(c->kcfg.server);
    assert_int_equal(gm_kube_new(&c->loop, &c->kcfg, NULL, &c->k), 0);
    assert_int_equal(gm_ctl_config_defaults(&c->cfg), 0);
    assert_int_equal(gm_ctl_new(&c->loop, c->k, &c->cfg, &c->ctl), 0);
    assert_int_equal(gm_ctl_start(c->ctl), 0);
    gm_ctl_lead(c->ctl);
}

void th_ctl_stop(struct th_ctl *c)
{
    gm_ctl_free(c->ctl);
    gm_kube_free(c->k);
    th_stop(c->srv);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&c->loop), 0);
    gm_ctl_config_free(&c->cfg);
    free(c->kcfg.server);
}

/* Adds the members of JSON object text more (NULL: none) to o. */
static void merge(json_object *o, const char *more)
{
    json_object *m = more ? json_tokener_parse(more) : NULL;
    if (m == NULL)
        return;
    json_object_object_foreach(m, k, v)
    {
        json_object_object_add(o, k, json_object_get(v));
    }
    json_object_put(m);
}

/* n nodes with record, and gpumode.io/retry when retry is set; labels,
 * annotations and allocatable (JSON objects, or NULL) are added to each. */
static void respond_nodes(struct th_conn *c, const char *record, int n,
                          bool retry, bool uncordoned, const char *boot_id,
                          const char *labels, const char *annotations,
                          const char *allocatable)
{
    json_object *items = json_object_new_array();
    for (int i = 1; i <= n; i++) {
        json_object *node = json_tokener_parse(
            "{\"metadata\":{\"resourceVersion\":\"9\","
            "\"labels\":{\"gpumode.io/mode\":\"full\","
            "\"gpumode.io/state\":\"switching\"},\"annotations\":{}},"
            "\"spec\":{\"unschedulable\":true},"
            "\"status\":{\"allocatable\":{\"cpu\":\"63\","
            "\"nvidia.com/vgpu\":\"32\",\"nvidia.com/gpumem\":\"655360\","
            "\"nvidia.com/gpu\":\"0\"}}}");
        json_object *meta = gm_json_get(node, "metadata");
        char name[32];
        snprintf(name, sizeof(name), "gpu-%03d", i);
        json_object_object_add(meta, "name", json_object_new_string(name));
        json_object_object_add(gm_json_get(meta, "annotations"), GM_ANN_SWITCH,
                               json_object_new_string(record));
        if (retry)
            json_object_object_add(gm_json_get(meta, "annotations"),
                                   GM_ANN_RETRY, json_object_new_string("1"));
        merge(gm_json_get(meta, "labels"), labels);
        merge(gm_json_get(meta, "annotations"), annotations);
        merge(gm_json_get(gm_json_get(node, "status"), "allocatable"),
              allocatable);
        if (uncordoned)
            json_object_object_add(gm_json_get(node, "spec"), "unschedulable",
                                   json_object_new_boolean(0));
        if (boot_id) {
            json_object *info = json_object_new_object();
            json_object_object_add(info, "bootID",
                                   json_object_new_string(boot_id));
            json_object_object_add(gm_json_get(node, "status"), "nodeInfo",
                                   info);
        }
        json_object_array_add(items, node);
    }
    json_object *list = json_tokener_parse(
        "{\"kind\":\"NodeList\",\"metadata\":{\"resourceVersion\":\"10\"}}");
    json_object_object_add(list, "items", items);
    th_respond(c, 200, NULL,
               json_object_to_json_string_ext(list, JSON_C_TO_STRING_PLAIN));
    json_object_put(list);
}

void th_ctl_respond_switching_nodes(struct th_conn *c, const char *record,
                                    int n)
{
    respond_nodes(c, record, n, false, false, NULL, NULL, NULL, NULL);
}

void th_ctl_respond_switching_node(struct th_conn *c, const char *record)
{
    respond_nodes(c, record, 1, false, false, NULL, NULL, NULL, NULL);
}

void th_ctl_respond_node_with(struct th_conn *c, const char *record,
                              const char *labels, const char *annotations)
{
    respond_nodes(c, record, 1, false, false, NULL, labels, annotations, NULL);
}

void th_ctl_respond_booted_node(struct th_conn *c, const char *record,
                                const char *boot_id)
{
    respond_nodes(c, record, 1, false, false, boot_id, NULL, NULL, NULL);
}

char *th_ctl_switch_record(enum gm_phase phase, const char *settings)
{
    struct gm_switch_record rec = {0};
    rec.policy = "p";
    rec.from = GM_MODE_FULL;
    rec.to = GM_MODE_VGPU;
    rec.phase = phase;
    rec.since = rec.started = (long long)time(NULL);
    rec.attempt = 1;
    rec.cordoned = true;
    rec.settings = (char *)(uintptr_t)settings;
    char *out = gm_record_format(&rec);
    assert_non_null(out);
    return out;
}

char *th_ctl_switch_record_retry(enum gm_phase phase, bool reconfigured,
                                 bool rolling_back)
{
    struct gm_switch_record rec = {0};
    char err[256];
    char *text = th_ctl_switch_record(phase, NULL);
    assert_int_equal(gm_record_parse(text, &rec, err, sizeof(err)), 0);
    free(text);
    rec.reconfigured = reconfigured;
    rec.rolling_back = rolling_back;
    rec.attempt = reconfigured ? 2 : 1;
    text = gm_record_format(&rec);
    assert_non_null(text);
    gm_record_clear(&rec);
    return text;
}

void th_ctl_respond_default(const struct th_req *r, struct th_conn *c)
{
    if (strstr(r->path, "watch=1"))
        th_stream_start(c, 200); /* open, quiet */
    else if (strcmp(r->method, "POST") == 0)
        th_respond(c, 201, NULL, "{}"); /* events */
    else if (strstr(r->path, "/configmaps?"))
        th_respond(c, 200, NULL,
                   "{\"kind\":\"ConfigMapList\",\"metadata\":{"
                   "\"resourceVersion\":\"10\"},\"items\":[]}");
    else
        th_respond(c, 200, NULL,
                   "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":"
                   "\"10\"},\"items\":[]}");
}

int th_ctl_policy_split4(void *data, const char *name,
                         struct gm_switch_policy *o)
{
    (void)data;
    (void)name;
    o->has_vgpu_config = true;
    o->split_count = 4;
    o->memory_scaling = 1;
    o->core_scaling = 1;
    return 0;
}

void th_node_fx_handler(void *ud, const struct th_req *r, struct th_conn *c)
{
    struct th_node_fx *f = ud;

    if (strncmp(r->path, "/api/v1/nodes?", 14) == 0) {
        respond_nodes(c, f->record, 1, f->retry, f->uncordoned, f->boot_id,
                      f->labels, f->annotations, f->allocatable);
    } else if (strcmp(r->method, "PATCH") == 0 &&
               strcmp(r->path, "/api/v1/nodes/gpu-001") == 0) {
        if (f->patch == NULL)
            f->patch = strdup(r->body);
        f->done = 1;
        f->patches++;
        th_respond(c, 200, NULL, f->patch_answer ? f->patch_answer : "{}");
    } else {
        th_ctl_respond_default(r, c);
    }
}

void th_node_fx_stop(struct th_node_fx *f)
{
    th_ctl_stop(&f->c);
    free(f->record);
    free(f->patch);
    f->record = f->patch = NULL;
}
