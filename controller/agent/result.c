/* Rendering gm_agent_result as the one JSON object the controller reads
 * from the helper pod's termination message, which the kubelet cuts at
 * 4096 bytes: we shed detail in a fixed order until it fits, rather than
 * let the kubelet cut it mid-string. */
#include "agent/agent.h"

#include <assert.h>
#include <string.h>

#include <json-c/json.h>

enum level {
    LEVEL_FULL,      /* everything */
    LEVEL_COUNTS,    /* no per-instance or per-process detail */
    LEVEL_SHORT_GPU, /* GPUs without uuid, name, bus and device ids */
    LEVEL_NO_GPUS,   /* no GPU list at all */
};

static const char *const needs_names[] = {"none", "reset", "reboot"};

static void add_str(json_object *o, const char *k, const char *v)
{
    json_object_object_add(o, k, json_object_new_string(v));
}

static void add_int(json_object *o, const char *k, int64_t v)
{
    json_object_object_add(o, k, json_object_new_int64(v));
}

static json_object *instance_counts(const struct gm_agent_snapshot *s, int gpu)
{
    json_object *o = json_object_new_object();
    for (size_t i = 0; i < s->ngis; i++) {
        const struct gm_smi_gi *g = &s->gis[i];
        json_object *cur;
        if (g->gpu != gpu)
            continue;
        if (json_object_object_get_ex(o, g->profile, &cur)) {
            json_object_set_int64(cur, json_object_get_int64(cur) + 1);
            continue;
        }
        add_int(o, g->profile, 1);
    }
    return o;
}

static json_object *gpu_instances(const struct gm_agent_snapshot *s, int gpu)
{
    json_object *a = json_object_new_array();
    for (size_t i = 0; i < s->ngis; i++) {
        const struct gm_smi_gi *g = &s->gis[i];
        int cis = 0;
        if (g->gpu != gpu)
            continue;
        for (size_t k = 0; k < s->ncis; k++)
            cis += s->cis[k].gpu == gpu && s->cis[k].gi == g->id;
        json_object *o = json_object_new_object();
        add_int(o, "id", g->id);
        add_str(o, "profile", g->profile);
        add_int(o, "profileId", g->profile_id);
        add_int(o, "start", g->start);
        add_int(o, "size", g->size);
        add_int(o, "computeInstances", cis);
        json_object_array_add(a, o);
    }
    return a;
}

static json_object *gpu_json(const struct gm_agent_result *res, size_t i,
                             enum level lv)
{
    const struct gm_agent_snapshot *s = &res->snap;
    const struct gm_smi_gpu *g = &s->gpus[i];
    json_object *o = json_object_new_object();

    add_int(o, "index", g->index);
    if (lv < LEVEL_SHORT_GPU) {
        add_str(o, "uuid", g->uuid);
        add_str(o, "name", g->name);
        if (res->detail) {
            add_str(o, "busId", g->bus_id);
            add_str(o, "pciDeviceId", g->device_id);
            add_int(o, "memoryMiB", g->memory_mib);
        }
    }
    json_object_object_add(
        o, "migCapable",
        json_object_new_boolean(g->mig_current != GM_MIG_NA ||
                                g->mig_pending != GM_MIG_NA));
    add_str(o, "migCurrent", gm_mig_mode_name(g->mig_current));
    add_str(o, "migPending", gm_mig_mode_name(g->mig_pending));
    json_object_object_add(o, "instances", instance_counts(s, g->index));
    if (res->detail && lv == LEVEL_FULL)
        json_object_object_add(o, "gpuInstances", gpu_instances(s, g->index));
    return o;
}

static json_object *processes(const struct gm_agent_snapshot *s)
{
    json_object *a = json_object_new_array();
    for (size_t i = 0; i < s->nprocs; i++) {
        json_object *o = json_object_new_object();
        add_int(o, "pid", s->procs[i].pid);
        add_str(o, "gpuUuid", s->procs[i].gpu_uuid);
        add_int(o, "usedMemoryMiB", s->procs[i].used_mib);
        json_object_array_add(a, o);
    }
    return a;
}

/* Renders at a level with the message cut to msg_len bytes ("..." marks a
 * cut). Returns the length, which may exceed cap - 1; then buf holds
 * nothing useful. */
static size_t render(const struct gm_agent_result *res, enum level lv,
                     size_t msg_len, char *buf, size_t cap)
{
    char msg[GM_AGENT_MESSAGE_MAX + 4];
    json_object *o = json_object_new_object();
    size_t full = strlen(res->message);

    json_object_object_add(o, "ok", json_object_new_boolean(res->ok));
    add_str(o, "command", res->command ? res->command : "");
    if (res->has_mode)
        add_str(o, "mode", gm_agent_mode_name(res->mode));
    if (res->command && strcmp(res->command, "apply") == 0)
        json_object_object_add(o, "changed",
                               json_object_new_boolean(res->changed));
    if (lv < LEVEL_NO_GPUS) {
        json_object *a = json_object_new_array();
        for (size_t i = 0; i < res->snap.ngpus; i++)
            json_object_array_add(a, gpu_json(res, i, lv));
        json_object_object_add(o, "gpus", a);
    } else {
        json_object_object_add(o, "gpusOmitted", json_object_new_boolean(1));
    }
    if (res->detail) {
        if (lv == LEVEL_FULL)
            json_object_object_add(o, "processes", processes(&res->snap));
        add_int(o, "processCount", (int64_t)res->snap.nprocs);
    }
    add_str(o, "needs", needs_names[res->needs]);
    if (!res->ok)
        add_str(o, "reason", res->reason ? res->reason : "Unknown");
    if (msg_len >= full) {
        add_str(o, "message", res->message);
    } else {
        memcpy(msg, res->message, msg_len);
        memcpy(msg + msg_len, "...", 4);
        add_str(o, "message", msg);
    }
    const char *js = json_object_to_json_string_ext(
        o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    size_t len = strlen(js);
    if (len < cap)
        memcpy(buf, js, len + 1);
    json_object_put(o);
    return len;
}

size_t gm_agent_result_json(const struct gm_agent_result *res, char *buf,
                            size_t cap)
{
    const size_t max = GM_AGENT_RESULT_MAX - 1;
    size_t full = strlen(res->message);

    assert(cap >= GM_AGENT_RESULT_MAX);
    if (render(res, LEVEL_FULL, full, buf, cap) <= max)
        return strlen(buf);
    for (int lv = LEVEL_COUNTS; lv <= LEVEL_NO_GPUS; lv++) {
        size_t base = render(res, (enum level)lv, 0, buf, cap);
        if (base > max)
            continue;
        /* The message is printable ASCII, so escaping at most doubles a
         * byte; shrink by the overshoot until it fits. */
        size_t m = full;
        for (;;) {
            size_t len = render(res, (enum level)lv, m, buf, cap);
            if (len <= max)
                return len;
            size_t over = len - max;
            m = m > over ? m - over : 0;
        }
    }
    /* Unreachable with the limits in agent.h; kept so the size promise
     * holds even if they change. */
    static const char fallback[] =
        "{\"ok\":false,\"needs\":\"none\",\"reason\":\"ResultTooLarge\"}";
    memcpy(buf, fallback, sizeof(fallback));
    return sizeof(fallback) - 1;
}
