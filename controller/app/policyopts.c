#include "app/policyopts.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/json.h"

int gm_policy_sels_parse(const struct gm_policy *p, struct gm_policy_sels *out)
{
    char err[200];
    int rc = 0;

    memset(out, 0, sizeof(*out));
    const char *ps = p->spec.drain_pod_selector;
    if (ps && ps[0] && gm_strsel_parse(ps, &out->pod_sel, err, sizeof(err))) {
        snprintf(out->error, sizeof(out->error),
                 "spec.rollout.drain.podSelector: %s", err);
        rc = -EINVAL;
    }
    const char *ws = p->spec.wait_pod_selector;
    if (p->spec.has_wait && ws && ws[0] &&
        gm_strsel_parse(ws, &out->wait_sel, err, sizeof(err))) {
        snprintf(out->error, sizeof(out->error),
                 "spec.rollout.waitForCompletion.podSelector: %s", err);
        rc = -EINVAL;
    }
    return rc;
}

void gm_policy_sels_clear(struct gm_policy_sels *s)
{
    gm_strsel_free(s->pod_sel);
    gm_strsel_free(s->wait_sel);
    memset(s, 0, sizeof(*s));
}

void gm_policy_switch_opts(const struct gm_policy *p,
                           const struct gm_policy_sels *sels,
                           struct gm_switch_policy *o)
{
    const struct gm_policy_spec *s = &p->spec;

    o->uid = p->uid && p->uid[0] ? p->uid : NULL;
    o->drain.gpu_pods_only = s->drain_gpu_pods_only;
    o->drain.pod_selector = sels->pod_sel;
    o->drain.wait_selector = sels->wait_sel;
    o->drain.timeout_s = (long)s->drain_timeout_seconds;
    o->drain.wait_timeout_s = s->has_wait ? (long)s->wait_timeout_seconds : 0;
    o->drain.grace_s = (long)s->drain_grace_period_seconds;
    o->drain.delete_empty_dir = s->drain_delete_empty_dir_data;
    o->drain.force = s->drain_force;
    o->hold_on_failure = s->on_failure == GM_ON_FAILURE_HOLD;
    o->allow_reboot = s->allow_reboot;
    o->has_vgpu_config = s->has_split_count;
    o->split_count = s->has_split_count ? s->split_count : 10;
    o->memory_scaling = s->has_memory_scaling ? s->memory_scaling : 1;
    o->core_scaling = s->has_core_scaling ? s->core_scaling : 1;
}

int gm_layouts_from_configmap(json_object *cm, const char *key,
                              const char *source, struct gm_migparted **out,
                              char *err, size_t err_len)
{
    *out = NULL;
    json_object *v = gm_json_get(gm_json_get(cm, "data"), key);
    if (v == NULL || !json_object_is_type(v, json_type_string)) {
        snprintf(err, err_len, "%s has no key %s", source, key);
        return -ENOENT;
    }
    const char *yaml = json_object_get_string(v);
    int rc = gm_migparted_parse(yaml, strlen(yaml), source, out, err, err_len);
    if (rc)
        *out = NULL;
    return rc;
}
