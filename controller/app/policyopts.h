/* What a policy means beyond planning, read the same way by the controller's
 * rollout and by `kubectl gpumode plan`: the drain options a switch uses
 * (selectors parsed once) and the MIG layout ConfigMap. Sharing them keeps
 * the dry run honest: it evicts exactly the pods the controller would. */
#ifndef GM_APP_POLICYOPTS_H
#define GM_APP_POLICYOPTS_H

#include <json-c/json.h>
#include <stddef.h>

#include "common/strsel.h"
#include "nodeswitch/switch.h"
#include "planner/layout.h"
#include "planner/policy.h"

/* A policy's drain selectors, parsed. */
struct gm_policy_sels {
    struct gm_strsel *pod_sel;  /* owned or NULL: every pod */
    struct gm_strsel *wait_sel; /* owned or NULL: none */
    char error[256]; /* set when one did not parse; names the field */
};

/* Parses spec.rollout.drain.podSelector and waitForCompletion.podSelector
 * of a valid policy. Returns 0, -EINVAL with out->error set (the other
 * selector may still be parsed), or -ENOMEM. Free with
 * gm_policy_sels_clear either way. */
int gm_policy_sels_parse(const struct gm_policy *p, struct gm_policy_sels *out);
void gm_policy_sels_clear(struct gm_policy_sels *s);

/* Fills the switch options from the spec, borrowing sels' selectors; what
 * the spec does not say keeps the value already in o (start from
 * gm_switch_policy_defaults). */
void gm_policy_switch_opts(const struct gm_policy *p,
                           const struct gm_policy_sels *sels,
                           struct gm_switch_policy *o);

/* Parses the mig-parted config under key in a ConfigMap object. source
 * names it in messages ("ConfigMap gpu-operator/default-mig-parted-config").
 * Returns 0 with *out the caller's (gm_migparted_free), -EINVAL (or
 * -ENOENT when the key is missing) with err for the user, or -ENOMEM. */
int gm_layouts_from_configmap(json_object *cm, const char *key,
                              const char *source, struct gm_migparted **out,
                              char *err, size_t err_len);

#endif
