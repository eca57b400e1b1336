/* HAMi's per-node ConfigMap is one object: switches that reach their
 * entry together must not each write it against the same resourceVersion
 * (all but one would meet a 409 and try again). The writer sends their
 * entries in as few PATCHes as the cache allows, keeps what others wrote,
 * recovers from a 409 and from a refused write, and lets each switch go on
 * once the cache shows its entry.
 *
 * Real libcurl and libuv against the test server, which plays the API
 * server: five nodes in StartingClients to vgpu with splitCount 4, and a
 * ConfigMap that answers 409 to a stale resourceVersion, as the API server
 * does, and sends every change on its watch. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "app/hami.h"
#include "common/json.h"
#include "nodeswitch/record.h"
#include "support/ctlfx.h"

#define NODES 5

enum first_write {
    FIRST_OK,
    FIRST_CONFLICT,
    FIRST_FORBIDDEN,
    FIRST_HELD,
    ALWAYS_FORBIDDEN, /* every write refused: the switches must give up */
    BAD_CONFIG,       /* config.json holds text HAMi cannot read */
    BAD_TYPES,        /* JSON, but a field of a type HAMi refuses */
    PERSON_KEYS,      /* entries of the nodes' own, with a person's keys */
    NODE_DELETED,     /* gpu-005 is deleted once every node went on */
    LIST_FORBIDDEN,   /* the ConfigMap may not even be listed (RBAC) */
    MARKED,           /* marks name a node deleted while none ran */
    SEED,             /* every entry written before marks existed */
    SEED_REFUSED,     /* ... and every ConfigMap PATCH refused (403) */
    MARKS_INVALID,    /* any PATCH that sets the marks refused (422) */
    BAD_MARKS,        /* marks that are no node name */
};

/* The five nodes' entries as their switches want them, written by a
 * gpumode from before the marks: nothing to write but the marks. */
static const char seed_config[] =
    "{\"nodeconfig\":[{\"name\":\"other\",\"devicesplitcount\":2},"
    "{\"name\":\"gpu-001\",\"operatingmode\":\"hami-core\","
    "\"devicesplitcount\":4,\"devicememoryscaling\":1,"
    "\"devicecorescaling\":1},"
    "{\"name\":\"gpu-002\",\"operatingmode\":\"hami-core\","
    "\"devicesplitcount\":4,\"devicememoryscaling\":1,"
    "\"devicecorescaling\":1},"
    "{\"name\":\"gpu-003\",\"operatingmode\":\"hami-core\","
    "\"devicesplitcount\":4,\"devicememoryscaling\":1,"
    "\"devicecorescaling\":1},"
    "{\"name\":\"gpu-004\",\"operatingmode\":\"hami-core\","
    "\"devicesplitcount\":4,\"devicememoryscaling\":1,"
    "\"devicecorescaling\":1},"
    "{\"name\":\"gpu-005\",\"operatingmode\":\"hami-core\","
    "\"devicesplitcount\":4,\"devicememoryscaling\":1,"
    "\"devicecorescaling\":1}]}";

/* gone's node was deleted while no controller ran: gpumode's keys in its
 * entry go, a person's stay. alive's node is not in the cache, but the
 * API server has it (the cache lags): it stays; so does refused's, which
 * the API server will not list (RBAC). cleared's entry holds none of
 * gpumode's keys any more: its node is not even asked for. "other" is no node
 * either, but not marked: its entry is someone else's and stays. */
static const char marked_config[] =
    "{\"chartKey\":true,\"nodeconfig\":[{\"name\":\"other\","
    "\"devicesplitcount\":2},{\"name\":\"gone\",\"operatingmode\":"
    "\"hami-core\",\"devicesplitcount\":4,\"migstrategy\":\"none\"},"
    "{\"name\":\"alive\",\"devicesplitcount\":3},"
    "{\"name\":\"refused\",\"devicesplitcount\":5},"
    "{\"name\":\"cleared\",\"migstrategy\":\"none\"}]}";

/* Marks that are no node name (anyone may edit the annotation), on
 * entries with gpumode's keys: not asked for, and the entries stay. */
static const char bad_marks_config[] =
    "{\"nodeconfig\":[{\"name\":\"Bad_Name\",\"devicesplitcount\":6},"
    "{\"name\":\"..\",\"devicesplitcount\":6}]}";

/* gpu-001's entries by a person: a GPU left out and a MIG strategy, kept
 * (the later entry's empty ones do not replace them, for HAMi);
 * gpu-002 named twice; gpu-003 with the wanted values written other ways
 * (1 for 1.0), which HAMi reads alike. */
static const char person_config[] =
    "{\"chartKey\":true,\"nodeconfig\":[{\"name\":\"other\","
    "\"devicesplitcount\":2},{\"name\":\"gpu-001\",\"devicesplitcount\":2,"
    "\"migstrategy\":\"none\",\"filterdevices\":{\"index\":[1]}},"
    "{\"name\":\"gpu-001\",\"migstrategy\":\"\",\"filterdevices\":{"
    "\"index\":[]}},"
    "{\"name\":\"gpu-002\",\"devicesplitcount\":3},{\"name\":\"gpu-002\","
    "\"devicecorescaling\":2},{\"name\":\"gpu-003\",\"operatingmode\":"
    "\"hami-core\",\"devicesplitcount\":4,\"devicememoryscaling\":1,"
    "\"devicecorescaling\":1}]}";

/* A person's edit that left a trailing comma: json-c alone would read it,
 * HAMi's Go parser does not. */
static const char bad_config[] =
    "{\"nodeconfig\":[{\"name\":\"other\",\"devicesplitcount\":2}],}";

/* Another node's split of 4.0, which HAMi's decoder refuses: HAMi reads
 * none of the config. */
static const char bad_types[] =
    "{\"nodeconfig\":[{\"name\":\"other\",\"devicesplitcount\":4.0}]}";

struct fx {
    struct th_ctl c;
    char *record;           /* owned: every node's switch annotation */
    enum first_write first; /* what the first ConfigMap PATCH meets */
    int rv;                 /* the ConfigMap's resourceVersion */
    json_object *config;    /* owned: its config.json, parsed */
    char *marks;            /* owned: its gpumode.io/hami-nodes, or NULL */
    int asked_gone;         /* lists of marked nodes not in the cache */
    int asked_alive;
    int asked_refused;
    int asked_cleared;
    int asked_bad;         /* lists of marks that are no node name */
    int marks_only;        /* PATCHes of the marks alone */
    struct th_conn *watch; /* the ConfigMap watch, or NULL */
    struct th_conn *nodes; /* the node watch, or NULL */
    bool deleted;          /* NODE_DELETED: the DELETED event went */
    int patches;           /* ConfigMap PATCHes */
    int stale;             /* of which sent against an old version */
    unsigned advanced;     /* bit i: gpu-00<i+1> went on to Verifying */
    char reason[64];       /* the first failure reason a record named */
    char message[512];     /* gpu-002's status line once it says why */
    char failed[1024];     /* the message of the first failure */
    int done;
};

static char *cm_object(struct fx *f)
{
    json_object *o =
        json_tokener_parse("{\"metadata\":{\"name\":\"hami-device-plugin\","
                           "\"namespace\":\"kube-system\"},\"data\":{}}");
    char rv[16];
    snprintf(rv, sizeof(rv), "%d", f->rv);
    json_object_object_add(gm_json_get(o, "metadata"), "resourceVersion",
                           json_object_new_string(rv));
    if (f->marks) {
        json_object *ann = json_object_new_object();
        json_object_object_add(ann, GM_HAMI_MARKS,
                               json_object_new_string(f->marks));
        json_object_object_add(gm_json_get(o, "metadata"), "annotations", ann);
    }
    json_object_object_add(
        gm_json_get(o, "data"), "config.json",
        json_object_new_string(f->first == BAD_CONFIG ? bad_config
                               : f->first == BAD_TYPES
                                   ? bad_types
                                   : json_object_to_json_string_ext(
                                         f->config, JSON_C_TO_STRING_PLAIN)));
    char *s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
    assert_non_null(s);
    return s;
}

/* The ConfigMap changed: tell its watch, as the API server does. */
static void cm_event(struct fx *f)
{
    if (f->watch == NULL)
        return;
    char *obj = cm_object(f);
    char ev[8192];
    snprintf(ev, sizeof(ev), "{\"type\":\"MODIFIED\",\"object\":%s}\n", obj);
    free(obj);
    th_stream_write(f->watch, ev, strlen(ev));
}

/* Another writer (HAMi's chart, a person) adds an entry of its own. */
static void intrude(struct fx *f)
{
    json_object_array_add(gm_json_get(f->config, "nodeconfig"),
                          json_tokener_parse("{\"name\":\"intruder\","
                                             "\"devicesplitcount\":3}"));
    f->rv++;
    cm_event(f);
}

static void cm_patch(struct fx *f, const struct th_req *r, struct th_conn *c)
{
    json_object *patch = json_tokener_parse(r->body);
    const char *rv =
        gm_json_str(gm_json_get(patch, "metadata"), "resourceVersion");
    const char *text = gm_json_str(gm_json_get(patch, "data"), "config.json");
    json_object *ann =
        gm_json_get(gm_json_get(patch, "metadata"), "annotations");
    char cur[16];
    snprintf(cur, sizeof(cur), "%d", f->rv);
    f->patches++;
    const struct gm_node_rt *ns = gm_map_get(&f->c.ctl->node_states, "gpu-002");
    if (f->patches >= 2 && f->message[0] == '\0' && ns &&
        strstr(ns->message, "failed"))
        snprintf(f->message, sizeof(f->message), "%s", ns->message);
    if ((f->patches <= 2 && f->first == FIRST_FORBIDDEN) ||
        f->first == ALWAYS_FORBIDDEN || f->first == SEED_REFUSED) {
        th_respond(c, 403, NULL,
                   "{\"kind\":\"Status\",\"status\":\"Failure\",\"reason\":"
                   "\"Forbidden\",\"message\":\"configmaps is forbidden\","
                   "\"code\":403}");
    } else if (f->patches == 1 && f->first == FIRST_CONFLICT) {
        /* Someone wrote first; our answer comes before their event. */
        f->stale++;
        th_respond(c, 409, NULL,
                   "{\"kind\":\"Status\",\"status\":\"Failure\",\"reason\":"
                   "\"Conflict\",\"message\":\"the object has been "
                   "modified\",\"code\":409}");
        intrude(f);
    } else if (f->first == MARKS_INVALID && ann) {
        /* An admission policy, or the annotations' size limit. */
        th_respond(c, 422, NULL,
                   "{\"kind\":\"Status\",\"status\":\"Failure\",\"reason\":"
                   "\"Invalid\",\"message\":\"metadata.annotations: Too "
                   "long\",\"code\":422}");
    } else if (rv == NULL || strcmp(rv, cur) != 0 ||
               (text == NULL && ann == NULL)) {
        f->stale++;
        th_respond(c, 409, NULL,
                   "{\"kind\":\"Status\",\"status\":\"Failure\",\"reason\":"
                   "\"Conflict\",\"code\":409}");
    } else {
        if (text == NULL) {
            f->marks_only++;
        } else {
            json_object_put(f->config);
            f->config = json_tokener_parse(text);
            assert_non_null(f->config);
        }
        /* A merge patch: null takes the annotation out. */
        json_object *m = NULL;
        if (json_object_object_get_ex(ann, GM_HAMI_MARKS, &m)) {
            free(f->marks);
            f->marks = m ? strdup(json_object_get_string(m)) : NULL;
        }
        f->rv++;
        char *obj = cm_object(f);
        th_respond(c, 200, NULL, obj);
        free(obj);
        cm_event(f);
        if (f->first == FIRST_HELD || f->deleted)
            f->done = 1; /* stop before the answer is read */
        if (f->first == MARKED && f->advanced == (1u << NODES) - 1)
            f->done = f->marks && strstr(f->marks, "gone") == NULL;
        if (f->first == SEED && f->advanced == (1u << NODES) - 1)
            f->done = f->marks != NULL;
        if (f->first == BAD_MARKS && f->advanced == (1u << NODES) - 1)
            f->done = f->marks && strstr(f->marks, "gpu-005");
    }
    json_object_put(patch);
}

static void node_patch(struct fx *f, const struct th_req *r, struct th_conn *c)
{
    json_object *patch = json_tokener_parse(r->body);
    const char *rec = json_object_get_string(
        gm_json_get(gm_json_get(gm_json_get(patch, "metadata"), "annotations"),
                    GM_ANN_SWITCH));
    struct gm_switch_record out = {0};
    char err[256];
    int i = atoi(r->path + strlen("/api/v1/nodes/gpu-"));
    if (rec && gm_record_parse(rec, &out, err, sizeof(err)) == 0) {
        if (out.phase == GM_PHASE_VERIFY && i >= 1 && i <= NODES)
            f->advanced |= 1u << (i - 1);
        if (out.reason && f->reason[0] == '\0') {
            snprintf(f->reason, sizeof(f->reason), "%s", out.reason);
            snprintf(f->failed, sizeof(f->failed), "%s",
                     out.message ? out.message : "");
            f->done = 1;
        }
    }
    gm_record_clear(&out);
    json_object_put(patch);
    th_respond(c, 200, NULL, "{}");
    if (f->advanced != (1u << NODES) - 1 || f->deleted)
        return;
    if (f->first == MARKED) {
        /* The sweep's write may come after the switches'. */
        f->done = f->marks && strstr(f->marks, "gone") == NULL;
        return;
    }
    if (f->first == SEED || f->first == SEED_REFUSED) {
        f->done = f->marks != NULL;
        return;
    }
    if (f->first == BAD_MARKS) {
        f->done = f->marks && strstr(f->marks, "gpu-005");
        return;
    }
    if (f->first != NODE_DELETED || f->nodes == NULL) {
        f->done = 1;
        return;
    }
    /* The node is gone (scaled down): the API server tells the watch. */
    static const char ev[] =
        "{\"type\":\"DELETED\",\"object\":{\"kind\":\"Node\",\"metadata\":"
        "{\"name\":\"gpu-005\",\"resourceVersion\":\"30\"}}}\n";
    th_stream_write(f->nodes, ev, strlen(ev));
    f->deleted = true;
}

static void handler(void *ud, const struct th_req *r, struct th_conn *c)
{
    struct fx *f = ud;

    if (strstr(r->path, "/configmaps?") && strstr(r->path, "watch=1")) {
        th_stream_start(c, 200);
        f->watch = c;
        /* Changes since the list (version 5), as the API server sends. */
        if (f->rv != 5)
            cm_event(f);
    } else if (strcmp(r->path, "/api/v1/nodes?fieldSelector=metadata.name%3D"
                               "gone") == 0) {
        f->asked_gone++;
        th_respond(c, 200, NULL,
                   "{\"kind\":\"NodeList\",\"metadata\":{\"resourceVersion\":"
                   "\"40\"},\"items\":[]}");
    } else if (strcmp(r->path, "/api/v1/nodes?fieldSelector=metadata.name%3D"
                               "alive") == 0) {
        f->asked_alive++;
        th_respond(c, 200, NULL,
                   "{\"kind\":\"NodeList\",\"metadata\":{\"resourceVersion\":"
                   "\"40\"},\"items\":[{\"metadata\":{\"name\":\"alive\"}}]}");
    } else if (strstr(r->path, "metadata.name%3DBad_Name") ||
               strstr(r->path, "metadata.name%3D..")) {
        f->asked_bad++;
        th_respond(c, 200, NULL,
                   "{\"kind\":\"NodeList\",\"metadata\":{\"resourceVersion\":"
                   "\"40\"},\"items\":[]}");
    } else if (strstr(r->path, "metadata.name%3Dcleared")) {
        f->asked_cleared++;
        th_respond(c, 200, NULL,
                   "{\"kind\":\"NodeList\",\"metadata\":{\"resourceVersion\":"
                   "\"40\"},\"items\":[]}");
    } else if (strcmp(r->path, "/api/v1/nodes?fieldSelector=metadata.name%3D"
                               "refused") == 0) {
        f->asked_refused++;
        th_respond(c, 403, NULL,
                   "{\"kind\":\"Status\",\"status\":\"Failure\",\"reason\":"
                   "\"Forbidden\",\"message\":\"nodes is forbidden\","
                   "\"code\":403}");
    } else if (strncmp(r->path, "/api/v1/nodes?", 14) == 0 &&
               strstr(r->path, "watch=1")) {
        th_stream_start(c, 200);
        f->nodes = c;
    } else if (strstr(r->path, "watch=1")) {
        th_stream_start(c, 200); /* open, quiet */
    } else if (strncmp(r->path, "/api/v1/nodes?", 14) == 0) {
        th_ctl_respond_switching_nodes(c, f->record, NODES);
    } else if (strcmp(r->method, "PATCH") == 0 &&
               strncmp(r->path, "/api/v1/nodes/", 14) == 0) {
        node_patch(f, r, c);
    } else if (strcmp(r->method, "PATCH") == 0 &&
               strstr(r->path, "/configmaps/hami-device-plugin")) {
        cm_patch(f, r, c);
    } else if (strcmp(r->method, "POST") == 0) {
        th_respond(c, 201, NULL, "{}"); /* events */
    } else if (strstr(r->path, "/configmaps?") && f->first == LIST_FORBIDDEN) {
        th_respond(c, 403, NULL,
                   "{\"kind\":\"Status\",\"status\":\"Failure\",\"reason\":"
                   "\"Forbidden\",\"message\":\"configmaps is forbidden\","
                   "\"code\":403}");
    } else if (strstr(r->path, "/configmaps?")) {
        char *obj = cm_object(f);
        char body[8192];
        snprintf(body, sizeof(body),
                 "{\"kind\":\"ConfigMapList\",\"metadata\":{"
                 "\"resourceVersion\":\"%d\"},\"items\":[%s]}",
                 f->rv, obj);
        free(obj);
        th_respond(c, 200, NULL, body);
    } else {
        th_respond(c, 200, NULL,
                   "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":"
                   "\"10\"},\"items\":[]}");
    }
}

/* Runs the five switches until each has gone on to Verifying (or, with
 * FIRST_HELD, until the first write is answered). f->config ends as the
 * ConfigMap's config; the caller puts it. */
/* Runs until done or ms have passed; whether done. */
static bool run_for(struct fx *f, enum first_write first, bool dry_run,
                    uint64_t ms)
{
    memset(f, 0, sizeof(*f));
    f->first = first;
    f->rv = 5;
    /* HAMi's chart has keys of its own, and an entry gpumode never made. */
    if (first == MARKED)
        f->marks = strdup("alive,cleared,gone,gpu-001,refused");
    if (first == BAD_MARKS)
        f->marks = strdup("Bad_Name,,..");
    f->config = json_tokener_parse(
        first == PERSON_KEYS                     ? person_config
        : first == MARKED                        ? marked_config
        : first == SEED || first == SEED_REFUSED ? seed_config
        : first == BAD_MARKS
            ? bad_marks_config
            : "{\"chartKey\":true,\"nodeconfig\":[{\"name\":\"other\","
              "\"devicesplitcount\":2}]}");
    f->record = th_ctl_switch_record(GM_PHASE_START_CLIENTS, NULL);
    th_ctl_start(&f->c, handler, f);
    f->c.ctl->policy_for = th_ctl_policy_split4;
    f->c.ctl->dry_run = dry_run;
    if (first == ALWAYS_FORBIDDEN || first == BAD_CONFIG ||
        first == BAD_TYPES || first == LIST_FORBIDDEN)
        f->c.cfg.clients_timeout_s = 1;
    bool done = th_run_until(&f->c.loop, &f->done, ms);
    th_ctl_stop(&f->c);
    free(f->record);
    return done;
}

static void run(struct fx *f, enum first_write first)
{
    assert_true(run_for(f, first, false, 20000));
}

static void fx_clear(struct fx *f)
{
    json_object_put(f->config);
    free(f->marks);
}

/* Every node's entry, splitCount 4, once; the others' kept. */
static void assert_entries(json_object *config, bool intruder, bool person)
{
    json_object *list = gm_json_get(config, "nodeconfig");
    assert_true(json_object_is_type(list, json_type_array));
    assert_true(json_object_get_boolean(gm_json_get(config, "chartKey")));
    size_t n = json_object_array_length(list);
    int seen[NODES] = {0}, other = 0, intr = 0;
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(list, i);
        const char *name = gm_json_str(e, "name");
        assert_non_null(name);
        if (strcmp(name, "other") == 0) {
            other++;
        } else if (strcmp(name, "intruder") == 0) {
            intr++;
        } else {
            int k = atoi(name + strlen("gpu-"));
            assert_true(k >= 1 && k <= NODES);
            seen[k - 1]++;
            assert_int_equal(
                json_object_get_int(gm_json_get(e, "devicesplitcount")), 4);
            assert_string_equal(gm_json_str(e, "operatingmode"), "hami-core");
            if (!person || k != 3) /* gpu-003: as the person wrote it */
                assert_true(json_object_is_type(
                    gm_json_get(e, "devicememoryscaling"), json_type_double));
            /* Nothing but the keys gpumode sets and the name. */
            if (!person || k != 1)
                assert_int_equal(json_object_object_length(e), 5);
        }
        if (person && strcmp(name, "gpu-001") == 0) {
            assert_string_equal(gm_json_str(e, "migstrategy"), "none");
            assert_string_equal(
                json_object_to_json_string_ext(gm_json_get(e, "filterdevices"),
                                               JSON_C_TO_STRING_PLAIN),
                "{\"index\":[1]}");
            assert_int_equal(json_object_object_length(e), 7);
        }
    }
    for (int k = 0; k < NODES; k++)
        assert_int_equal(seen[k], 1);
    assert_int_equal(other, 1);
    assert_int_equal(intr, intruder ? 1 : 0);
}

/* Five switches at once: no write against an old version, and fewer
 * writes than switches (one each met 409s before). */
static void test_entries_batched(void **state)
{
    struct fx f;
    (void)state;
    run(&f, FIRST_OK);
    assert_int_equal(f.advanced, (1u << NODES) - 1);
    assert_int_equal(f.stale, 0);
    /* The entries gpumode wrote are marked as its, in the same writes;
     * "other" is not. */
    assert_string_equal(f.marks, "gpu-001,gpu-002,gpu-003,gpu-004,gpu-005");
    assert_in_range(f.patches, 1, NODES - 1);
    assert_entries(f.config, false, false);
    fx_clear(&f);
}

/* Another writer got in first: the entries go in on top of its version,
 * which is kept. */
static void test_conflict_keeps_the_other_write(void **state)
{
    struct fx f;
    (void)state;
    run(&f, FIRST_CONFLICT);
    assert_int_equal(f.advanced, (1u << NODES) - 1);
    assert_int_equal(f.stale, 1); /* only the one the server forced */
    assert_in_range(f.patches, 2, NODES);
    assert_entries(f.config, true, false);
    fx_clear(&f);
}

/* A refused write is tried again, and the waiting nodes say why. */
static void test_refused_write_is_retried_and_shown(void **state)
{
    struct fx f;
    (void)state;
    run(&f, FIRST_FORBIDDEN);
    assert_int_equal(f.advanced, (1u << NODES) - 1);
    assert_non_null(strstr(f.message, "writing HAMi's per-node config "
                                      "failed: Forbidden: configmaps is "
                                      "forbidden"));
    assert_entries(f.config, false, false);
    fx_clear(&f);
}

/* A ConfigMap that can never be written (RBAC): the switches do not wait
 * for ever with every GPU client stopped; after clientsTimeoutSeconds they
 * fail, naming the ConfigMap and the refusal, and roll back. */
static void test_unwritable_configmap_fails_the_switch(void **state)
{
    struct fx f;
    (void)state;
    run(&f, ALWAYS_FORBIDDEN);
    assert_string_equal(f.reason, "HAMiConfigNotWritten");
    assert_int_equal(f.advanced, 0);
    fx_clear(&f);
}

/* A config.json HAMi cannot read is never written over (that would keep
 * only gpumode's entries and lose every other node's): the switches wait,
 * say why, and fail at their timeout. */
static void test_unreadable_config_is_not_overwritten(void **state)
{
    struct fx f;
    (void)state;
    run(&f, BAD_CONFIG);
    assert_int_equal(f.patches, 0);
    assert_string_equal(f.reason, "HAMiConfigNotWritten");
    assert_non_null(strstr(f.failed, "is not HAMi's config"));
    fx_clear(&f);
}

/* A ConfigMap the controller may not list is neither there nor absent:
 * the switches neither write an entry nor take HAMi's defaults as what
 * the node gets; they wait, and fail at their timeout saying why. */
static void test_unlistable_configmap_fails_the_switch(void **state)
{
    struct fx f;
    (void)state;
    run(&f, LIST_FORBIDDEN);
    assert_int_equal(f.patches, 0);
    assert_int_equal(f.advanced, 0);
    assert_string_equal(f.reason, "HAMiConfigNotWritten");
    if (!strstr(f.failed, "was not written in 1s: the controller may not "
                          "read it (403 Forbidden: configmaps is forbidden"))
        fail_msg("failed: %s", f.failed);
    fx_clear(&f);
}

/* The keys of a node's entry gpumode does not set (a GPU left out, a MIG
 * strategy) are someone else's and stay; a node named twice ends named
 * once; an entry that already says what is wanted, in other words, is not
 * written again. */
static void test_entries_keep_what_others_set(void **state)
{
    struct fx f;
    (void)state;
    run(&f, PERSON_KEYS);
    assert_int_equal(f.advanced, (1u << NODES) - 1);
    assert_entries(f.config, false, true);
    /* gpu-003's entry is as the person wrote it: 1, not 1.0. */
    json_object *list = gm_json_get(f.config, "nodeconfig");
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        json_object *e = json_object_array_get_idx(list, i);
        if (strcmp(gm_json_str(e, "name"), "gpu-003") == 0)
            assert_true(json_object_is_type(gm_json_get(e, "devicecorescaling"),
                                            json_type_int));
    }
    fx_clear(&f);
}

/* What HAMi takes from a node's entries: each in turn, a value above 0 or
 * a filter replacing the one before; and how many GPUs the filter leaves
 * out, by index or by uuid. */
static void test_view_as_hami_reads_it(void **state)
{
    struct gm_hami_view v;
    (void)state;
    assert_int_equal(
        gm_hami_view_parse(
            "{\"nodeconfig\":[{\"name\":\"n\",\"devicesplitcount\":3,"
            "\"devicecorescaling\":0.5,\"filterdevices\":{\"index\":[0,7]}},"
            "{\"name\":\"m\",\"devicesplitcount\":9},"
            "{\"name\":\"n\",\"devicesplitcount\":0,\"devicememoryscaling\":"
            "2,\"filterdevices\":{\"index\":[]}},"
            "{\"name\":\"n\",\"filterdevices\":{\"uuid\":[\"GPU-b\"],"
            "\"index\":[3]}}]}",
            "n", &v),
        0);
    assert_true(v.named);
    assert_int_equal(v.split, 3);
    assert_true(v.memory == 2.0);
    assert_true(v.core == 0.5);
    const char *uuids[4] = {"GPU-a", "GPU-b", "GPU-c", "GPU-d"};
    /* Index 3 and GPU-b (index 1); index 0 was the earlier filter's. */
    assert_int_equal(gm_hami_filtered(&v, 4, uuids), 2);
    /* Uuids unknown: each listed counts as one. */
    assert_int_equal(gm_hami_filtered(&v, 4, NULL), 2);
    assert_int_equal(gm_hami_filtered(&v, 1, NULL), 1);
    gm_hami_view_clear(&v);

    assert_int_equal(gm_hami_view_parse(NULL, "n", &v), 0);
    assert_false(v.named);
    assert_int_equal(gm_hami_filtered(&v, 4, uuids), 0);
    gm_hami_view_clear(&v);
    /* A value of a type HAMi's decoder refuses, in any entry, fails the
     * whole config: HAMi runs every node with its defaults. */
    static const char *const unreadable[] = {
        "{\"nodeconfig\":[{\"name\":\"m\",\"devicesplitcount\":4.0}]}",
        "{\"nodeconfig\":[{\"name\":\"m\",\"devicesplitcount\":-1}]}",
        "{\"nodeconfig\":[{\"name\":\"m\",\"devicecorescaling\":\"1\"}]}",
        "{\"nodeconfig\":[{\"name\":\"m\",\"filterdevices\":{\"index\":"
        "[\"0\"]}}]}",
        "{\"nodeconfig\":[{\"name\":1}]}",
        "{\"nodeconfig\":[7]}",
        "{\"nodeconfig\":{}}",
        "{\"nodeconfig\":[]},",
    };
    for (size_t i = 0; i < sizeof(unreadable) / sizeof(unreadable[0]); i++)
        assert_int_equal(gm_hami_view_parse(unreadable[i], "n", &v), -EINVAL);
    /* Go's decoder matches keys without regard to case, the last of
     * several winning, and reads a null config as an empty one. */
    assert_int_equal(gm_hami_view_parse(
                         "{\"NodeConfig\":[{\"Name\":\"n\",\"DEVICESPLITCOUNT\""
                         ":3,\"devicesplitcount\":5,\"FilterDevices\":{"
                         "\"Index\":[2]}}]}",
                         "n", &v),
                     0);
    assert_int_equal(v.split, 5);
    assert_int_equal(gm_hami_filtered(&v, 4, uuids), 1);
    gm_hami_view_clear(&v);
    assert_int_equal(gm_hami_view_parse("null", "n", &v), 0);
    assert_false(v.named);
    gm_hami_view_clear(&v);
    assert_int_equal(
        gm_hami_view_parse(
            "{\"nodeconfig\":[{\"name\":\"m\",\"DeviceSplitCount\":4.0}]}", "n",
            &v),
        -EINVAL);
    /* The writer takes out a key HAMi reads as one of gpumode's, whatever
     * its case, and keeps the others. */
    json_object *list = json_tokener_parse(
        "[{\"Name\":\"n\",\"DeviceSplitCount\":2,\"migstrategy\":\"none\"}]");
    assert_int_equal(gm_hami_set_entry(list, "n", NULL), 0);
    assert_int_equal(json_object_array_length(list), 1);
    assert_string_equal(
        json_object_to_json_string_ext(list, JSON_C_TO_STRING_PLAIN),
        "[{\"Name\":\"n\",\"migstrategy\":\"none\",\"name\":\"n\"}]");
    assert_true(gm_hami_has_entry(list, "n", NULL));
    json_object_put(list);
    /* A null after a value changes nothing for Go: the split is still
     * there, and the writer takes both out. */
    list = json_tokener_parse("[{\"name\":\"n\",\"devicesplitcount\":4,"
                              "\"DeviceSplitCount\":null}]");
    assert_false(gm_hami_has_entry(list, "n", NULL));
    assert_int_equal(gm_hami_set_entry(list, "n", NULL), 0);
    assert_int_equal(json_object_array_length(list), 0);
    json_object_put(list);
    /* null leaves a field unset, as in Go. */
    assert_int_equal(
        gm_hami_view_parse("{\"nodeconfig\":[null,{\"name\":\"n\","
                           "\"devicesplitcount\":null,\"filterdevices\":"
                           "null,\"devicememoryscaling\":3}]}",
                           "n", &v),
        0);
    assert_int_equal(v.split, 0);
    assert_true(v.memory == 3.0);
    gm_hami_view_clear(&v);
}

/* A node gpumode switched is deleted: what gpumode wrote in its entry
 * goes (here the whole entry, nothing else being in it), so the entries
 * of an autoscaled pool do not pile up; the other nodes' stay. */
static void test_deleted_node_entry_goes(void **state)
{
    struct fx f;
    (void)state;
    run(&f, NODE_DELETED);
    assert_true(f.deleted);
    json_object *list = gm_json_get(f.config, "nodeconfig");
    int found = 0;
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        const char *name =
            gm_json_str(json_object_array_get_idx(list, i), "name");
        assert_string_not_equal(name, "gpu-005");
        found++;
    }
    assert_int_equal(found, NODES); /* gpu-001..004 and "other" */
    fx_clear(&f);
}

/* A marked node the cache does not hold, and the API server does not
 * list, was deleted while no controller ran: the controller that leads
 * next takes gpumode's keys out of its entry, keeping a person's
 * (migstrategy), and its mark. One the API server has stays marked, with
 * its entry; an entry of no node that is not marked is someone else's,
 * and stays. */
static void test_marked_deleted_node_swept(void **state)
{
    struct fx f;
    (void)state;
    run(&f, MARKED);
    assert_string_equal(
        f.marks, "alive,gpu-001,gpu-002,gpu-003,gpu-004,gpu-005,refused");
    assert_int_equal(f.asked_gone, 1);
    assert_true(f.asked_alive >= 1);
    assert_true(f.asked_refused >= 1);
    assert_int_equal(f.asked_cleared, 0);
    json_object *list = gm_json_get(f.config, "nodeconfig");
    int gone = 0, other = 0, alive = 0, refused = 0;
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        json_object *e = json_object_array_get_idx(list, i);
        const char *name = gm_json_str(e, "name");
        if (strcmp(name, "gone") == 0) {
            gone++;
            assert_string_equal(
                json_object_to_json_string_ext(e, JSON_C_TO_STRING_PLAIN),
                "{\"name\":\"gone\",\"migstrategy\":\"none\"}");
        } else if (strcmp(name, "other") == 0) {
            other++;
            assert_int_equal(
                json_object_get_int(gm_json_get(e, "devicesplitcount")), 2);
        } else if (strcmp(name, "alive") == 0) {
            alive++;
            assert_int_equal(
                json_object_get_int(gm_json_get(e, "devicesplitcount")), 3);
        } else if (strcmp(name, "refused") == 0) {
            refused++;
            assert_int_equal(
                json_object_get_int(gm_json_get(e, "devicesplitcount")), 5);
        }
    }
    assert_int_equal(gone, 1);
    assert_int_equal(other, 1);
    assert_int_equal(alive, 1);
    assert_int_equal(refused, 1);
    fx_clear(&f);
}

static int mark_table(void *ud, const char *node)
{
    (void)ud;
    if (strcmp(node, "d") == 0)
        return -1; /* a node gpumode leaves alone */
    if (strcmp(node, "e") == 0 || strcmp(node, "f") == 0)
        return 0; /* not in the cache */
    return 1;
}

static int mark_all(void *ud, const char *node)
{
    (void)ud;
    (void)node;
    return 1;
}

/* The marks: sorted, each node once, only entries with a key gpumode sets;
 * a node not in the cache only when marked before; none past the cap. */
static void test_marks(void **state)
{
    (void)state;
    json_object *list =
        json_tokener_parse("[{\"name\":\"b\",\"devicesplitcount\":2},"
                           "{\"name\":\"a\",\"DeviceCoreScaling\":2},"
                           "{\"name\":\"a\",\"devicesplitcount\":3},"
                           "{\"name\":\"c\",\"migstrategy\":\"none\"},"
                           "{\"name\":\"d\",\"devicesplitcount\":2},"
                           "{\"name\":\"e\",\"operatingmode\":\"hami-core\"},"
                           "{\"name\":\"f\",\"devicesplitcount\":2},"
                           "{\"name\":\"x,y\",\"devicesplitcount\":2},"
                           "{\"devicesplitcount\":2}]");
    char *out = NULL;
    assert_int_equal(gm_hami_marks(list, "d,e,zz", mark_table, NULL, &out), 0);
    assert_string_equal(out, "a,b,e");
    free(out);
    assert_int_equal(gm_hami_marks(list, NULL, mark_table, NULL, &out), 0);
    assert_string_equal(out, "a,b");
    free(out);
    json_object_put(list);

    /* 300 names of 250 bytes, with their commas: 261 fit in 65,536 bytes
     * (261 x 251 - 1 = 65,510), 262 do not (65,761). */
    list = json_object_new_array();
    char name[251];
    for (int i = 0; i < 300; i++) {
        memset(name, 'n', 250);
        snprintf(name, sizeof(name), "%03d", i);
        name[3] = 'n';
        name[250] = '\0';
        json_object *e = json_object_new_object();
        json_object_object_add(e, "name", json_object_new_string(name));
        json_object_object_add(e, "devicesplitcount", json_object_new_int(2));
        json_object_array_add(list, e);
    }
    assert_int_equal(gm_hami_marks(list, NULL, mark_all, NULL, &out), 39);
    assert_true(strlen(out) <= GM_HAMI_MARKS_MAX);
    assert_int_equal(strlen(out), 261 * 251 - 1);
    assert_true(strncmp(out, "000n", 4) == 0);
    free(out);
    json_object_put(list);
}

/* Entries written before there were marks (an upgrade), with nothing
 * else to write: the leader writes the marks alone, once, and leaves the
 * config as it is. */
static void test_marks_seeded(void **state)
{
    struct fx f;
    (void)state;
    run(&f, SEED);
    assert_string_equal(f.marks, "gpu-001,gpu-002,gpu-003,gpu-004,gpu-005");
    assert_int_equal(f.patches, 1);
    assert_int_equal(f.marks_only, 1);
    json_object *want = json_tokener_parse(seed_config);
    assert_true(json_object_equal(f.config, want));
    json_object_put(want);
    fx_clear(&f);
}

/* Marks that are no node name are not asked for, and their entries keep
 * gpumode's keys. */
static void test_bad_marks_not_asked_for(void **state)
{
    struct fx f;
    (void)state;
    run(&f, BAD_MARKS);
    assert_int_equal(f.asked_bad, 0);
    json_object *list = gm_json_get(f.config, "nodeconfig");
    int kept = 0;
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        json_object *e = json_object_array_get_idx(list, i);
        const char *name = gm_json_str(e, "name");
        if (strcmp(name, "Bad_Name") == 0 || strcmp(name, "..") == 0)
            kept +=
                json_object_get_int(gm_json_get(e, "devicesplitcount")) == 6;
    }
    assert_int_equal(kept, 2);
    fx_clear(&f);
}

/* A dry run writes no marks either. */
static void test_marks_not_written_in_dry_run(void **state)
{
    struct fx f;
    (void)state;
    assert_false(run_for(&f, SEED, true, 1500));
    assert_int_equal(f.patches, 0);
    assert_null(f.marks);
    fx_clear(&f);
}

/* A refused write of the marks alone is not retried on a timer (that was
 * a write every 30 s, for ever, on a converged fleet): the next sweep
 * tries again. */
static void test_refused_marks_not_retried(void **state)
{
    struct fx f;
    (void)state;
    assert_false(run_for(&f, SEED_REFUSED, false, 4000));
    assert_int_equal(f.patches, 1);
    fx_clear(&f);
}

/* Marks the API server refuses (an admission policy, the annotations'
 * size limit) do not hold the switches: the entries go without them. */
static void test_entries_written_without_refused_marks(void **state)
{
    struct fx f;
    (void)state;
    run(&f, MARKS_INVALID);
    assert_int_equal(f.advanced, (1u << NODES) - 1);
    assert_null(f.marks);
    assert_entries(f.config, false, false);
    fx_clear(&f);
}

/* Nor is one HAMi's decoder refuses for a field's type: the switches say
 * which field. */
static void test_config_of_wrong_types_is_not_overwritten(void **state)
{
    struct fx f;
    (void)state;
    run(&f, BAD_TYPES);
    assert_int_equal(f.patches, 0);
    assert_string_equal(f.reason, "HAMiConfigNotWritten");
    assert_non_null(strstr(f.failed, "nodeconfig[0].devicesplitcount is not "
                                     "of HAMi's type for it"));
    fx_clear(&f);
}

/* Newer HAMi's fields are typed too: a wrong type fails the whole config
 * for HAMi, so it is not taken as read. */
static void test_newer_fields_typed(void **state)
{
    static const struct {
        const char *text;
        int rc;
    } cases[] = {
        {"{\"nodeconfig\":[{\"name\":\"n\",\"libcudaloglevel\":\"3\","
         "\"preconfigureddevicememory\":81920,"
         "\"enablegetpreferredallocation\":true}]}",
         0},
        {"{\"nodeconfig\":[{\"name\":\"n\",\"libcudaloglevel\":3}]}", -EINVAL},
        {"{\"nodeconfig\":[{\"name\":\"n\","
         "\"preconfigureddevicememory\":\"80Gi\"}]}",
         -EINVAL},
        {"{\"nodeconfig\":[{\"name\":\"n\","
         "\"enablegetpreferredallocation\":\"true\"}]}",
         -EINVAL},
        {"{\"nodeconfig\":[{\"name\":\"n\",\"enablenumatopology\":false}]}", 0},
        {"{\"nodeconfig\":[{\"name\":\"n\",\"enablenumatopology\":\"yes\"}]}",
         -EINVAL},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_object *cfg = NULL;
        char why[512] = "";
        int rc = gm_hami_config_parse(cases[i].text, &cfg, why, sizeof(why));
        if (rc != cases[i].rc)
            fail_msg("case %zu: rc %d (%s), want %d", i, rc, why, cases[i].rc);
        if (rc)
            assert_non_null(strstr(why, "is not of HAMi's type for it"));
        json_object_put(cfg);
    }
}

/* The controller is freed with a write's answer unread: the answer must
 * not touch it (ASan and valgrind check). */
static void test_freed_with_a_write_in_flight(void **state)
{
    struct fx f;
    (void)state;
    run(&f, FIRST_HELD);
    assert_int_equal(f.patches, 1);
    fx_clear(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_entries_batched),
        cmocka_unit_test(test_conflict_keeps_the_other_write),
        cmocka_unit_test(test_refused_write_is_retried_and_shown),
        cmocka_unit_test(test_unlistable_configmap_fails_the_switch),
        cmocka_unit_test(test_unwritable_configmap_fails_the_switch),
        cmocka_unit_test(test_freed_with_a_write_in_flight),
        cmocka_unit_test(test_unreadable_config_is_not_overwritten),
        cmocka_unit_test(test_entries_keep_what_others_set),
        cmocka_unit_test(test_view_as_hami_reads_it),
        cmocka_unit_test(test_deleted_node_entry_goes),
        cmocka_unit_test(test_marked_deleted_node_swept),
        cmocka_unit_test(test_marks),
        cmocka_unit_test(test_marks_seeded),
        cmocka_unit_test(test_bad_marks_not_asked_for),
        cmocka_unit_test(test_marks_not_written_in_dry_run),
        cmocka_unit_test(test_refused_marks_not_retried),
        cmocka_unit_test(test_entries_written_without_refused_marks),
        cmocka_unit_test(test_config_of_wrong_types_is_not_overwritten),
        cmocka_unit_test(test_newer_fields_typed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
