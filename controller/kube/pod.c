#include "kube/pod.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/intern.h"

static json_object *get(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (o && json_object_object_get_ex(o, key, &v))
        return v;
    return NULL;
}

static char *dup_or_null(json_object *o)
{
    const char *s = o ? json_object_get_string(o) : NULL;
    return s ? strdup(s) : NULL;
}

static bool is_gpu_request(json_object *resources)
{
    static const char *const kinds[] = {"requests", "limits"};
    for (int i = 0; i < 2; i++) {
        json_object *m = get(resources, kinds[i]);
        if (m == NULL || !json_object_is_type(m, json_type_object))
            continue;
        json_object_object_foreach(m, k, v)
        {
            (void)v;
            if (gm_is_gpu_resource(k))
                return true;
        }
    }
    return false;
}

/* Whether a container gets GPUs without asking the scheduler: the NVIDIA
 * container runtime gives it those NVIDIA_VISIBLE_DEVICES names ("all",
 * indices or uuids); "none", "void" and "" give none. A value taken from
 * elsewhere (valueFrom) cannot be read here, so it counts. One set in the
 * image, as CUDA images do, is out of sight: the agent's check for GPU
 * processes catches those. */
static bool env_names_gpus(json_object *env)
{
    size_t n = env && json_object_is_type(env, json_type_array)
                   ? json_object_array_length(env)
                   : 0;
    bool gpus = false;
    /* The kubelet takes the last of a name (HAMi's webhook, with
     * overwriteEnv, appends NVIDIA_VISIBLE_DEVICES=none to containers that
     * ask for no GPU). */
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(env, i);
        const char *name = json_object_get_string(get(e, "name"));
        if (name == NULL || strcmp(name, "NVIDIA_VISIBLE_DEVICES") != 0)
            continue;
        const char *v = json_object_get_string(get(e, "value"));
        gpus = get(e, "valueFrom") != NULL ||
               (v && v[0] && strcmp(v, "none") != 0 && strcmp(v, "void") != 0);
    }
    return gpus;
}

static bool containers_use_gpu(json_object *list)
{
    size_t n = list && json_object_is_type(list, json_type_array)
                   ? json_object_array_length(list)
                   : 0;
    for (size_t i = 0; i < n; i++) {
        json_object *c = json_object_array_get_idx(list, i);
        if (is_gpu_request(get(c, "resources")) ||
            env_names_gpus(get(c, "env")))
            return true;
    }
    return false;
}

static enum gm_pod_phase parse_phase(const char *s)
{
    if (s == NULL)
        return GM_POD_PENDING;
    if (strcmp(s, "Running") == 0)
        return GM_POD_RUNNING;
    if (strcmp(s, "Succeeded") == 0)
        return GM_POD_SUCCEEDED;
    if (strcmp(s, "Failed") == 0)
        return GM_POD_FAILED;
    if (strcmp(s, "Pending") == 0)
        return GM_POD_PENDING;
    return GM_POD_UNKNOWN;
}

static void decode_status(struct gm_pod *p, json_object *status)
{
    p->phase = parse_phase(json_object_get_string(get(status, "phase")));
    const char *reason = json_object_get_string(get(status, "reason"));
    p->deadline_exceeded = reason && strcmp(reason, "DeadlineExceeded") == 0;
    json_object *conds = get(status, "conditions");
    size_t nc = conds && json_object_is_type(conds, json_type_array)
                    ? json_object_array_length(conds)
                    : 0;
    for (size_t i = 0; i < nc; i++) {
        json_object *c = json_object_array_get_idx(conds, i);
        const char *type = json_object_get_string(get(c, "type"));
        const char *st = json_object_get_string(get(c, "status"));
        if (type && st && strcmp(type, "Ready") == 0)
            p->ready = strcmp(st, "True") == 0;
    }
    json_object *cs = get(status, "containerStatuses");
    size_t n = cs && json_object_is_type(cs, json_type_array)
                   ? json_object_array_length(cs)
                   : 0;
    p->exit_code = -1;
    for (size_t i = 0; i < n; i++) {
        json_object *state = get(json_object_array_get_idx(cs, i), "state");
        json_object *term = get(state, "terminated");
        const char *began = json_object_get_string(get(term, "startedAt"));
        const char *why = json_object_get_string(get(term, "reason"));
        bool start_error = why && strcmp(why, "StartError") == 0;
        p->start_error = p->start_error || start_error;
        if (get(state, "running") ||
            (began && began[0] && !start_error &&
             strncmp(began, "1970-01-01T00:00:00", 19) != 0))
            p->ran = true;
    }
    for (size_t i = 0; i < n; i++) {
        json_object *term =
            get(get(json_object_array_get_idx(cs, i), "state"), "terminated");
        if (term == NULL)
            continue;
        p->exit_code = json_object_get_int(get(term, "exitCode"));
        p->term_message = dup_or_null(get(term, "message"));
        break;
    }
}

/* An RFC 3339 UTC time as the API server writes it, in seconds since the
 * epoch; 0 when absent or not one. */
static long long epoch_seconds(json_object *v)
{
    const char *s = v ? json_object_get_string(v) : NULL;
    struct tm tm;

    memset(&tm, 0, sizeof(tm));
    if (s == NULL || strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) == NULL)
        return 0;
    return (long long)timegm(&tm);
}

int gm_pod_from_json(json_object *obj, struct gm_pod **out)
{
    json_object *meta = get(obj, "metadata");
    json_object *spec = get(obj, "spec");
    json_object *name = get(meta, "name");
    int err;

    if (name == NULL)
        return -EINVAL;
    struct gm_pod *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return -ENOMEM;
    p->namespace = dup_or_null(get(meta, "namespace"));
    p->name = dup_or_null(name);
    p->uid = dup_or_null(get(meta, "uid"));
    p->resource_version = dup_or_null(get(meta, "resourceVersion"));
    p->node_name = dup_or_null(get(spec, "nodeName"));
    p->deleting = get(meta, "deletionTimestamp") != NULL;
    p->mirror =
        get(get(meta, "annotations"), "kubernetes.io/config.mirror") != NULL;
    json_object *owners = get(meta, "ownerReferences");
    size_t no = owners && json_object_is_type(owners, json_type_array)
                    ? json_object_array_length(owners)
                    : 0;
    for (size_t i = 0; i < no; i++) {
        json_object *o = json_object_array_get_idx(owners, i);
        if (json_object_get_boolean(get(o, "controller"))) {
            p->owner_kind = dup_or_null(get(o, "kind"));
            break;
        }
    }
    json_object *vols = get(spec, "volumes");
    size_t nv = vols && json_object_is_type(vols, json_type_array)
                    ? json_object_array_length(vols)
                    : 0;
    for (size_t i = 0; i < nv; i++)
        if (get(json_object_array_get_idx(vols, i), "emptyDir"))
            p->empty_dir = true;
    p->uses_gpu = containers_use_gpu(get(spec, "containers")) ||
                  containers_use_gpu(get(spec, "initContainers")) ||
                  containers_use_gpu(get(spec, "ephemeralContainers"));
    json_object *grace = get(spec, "terminationGracePeriodSeconds");
    p->grace_seconds = grace ? json_object_get_int64(grace) : -1;
    p->created = epoch_seconds(get(meta, "creationTimestamp"));
    decode_status(p, get(obj, "status"));
    err = p->name
              ? gm_labels_decode(get(meta, "labels"), &p->labels, &p->n_labels)
              : -ENOMEM;
    if (err) {
        gm_pod_free(p);
        return err;
    }
    *out = p;
    return 0;
}

void gm_pod_free(struct gm_pod *p)
{
    if (p == NULL)
        return;
    gm_labels_free(p->labels, p->n_labels);
    free(p->namespace);
    free(p->name);
    free(p->uid);
    free(p->resource_version);
    free(p->node_name);
    free(p->owner_kind);
    free(p->term_message);
    free(p);
}

const char *gm_pod_label(const struct gm_pod *p, const char *key)
{
    return gm_labels_get(p->labels, p->n_labels, key);
}

const char *gm_pod_label_lookup(const void *pod, const char *key)
{
    return gm_pod_label(pod, key);
}
