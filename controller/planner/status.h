/* The policy's status subresource, built from a plan, and the test of
 * whether it needs writing. Conditions follow kstatus: Ready is the summary,
 * Reconciling=True while switches run or wait, Stalled=True when only a
 * person can unblock the policy. lastTransitionTime is carried over from the
 * last written status while a condition's status stays the same, so a
 * converged fleet builds the identical object and writes nothing. */
#ifndef GM_PLANNER_STATUS_H
#define GM_PLANNER_STATUS_H

#include <json-c/json.h>
#include <stdbool.h>
#include <time.h>

#include "planner/plan.h"
#include "planner/policy.h"

/* status.nodes holds at most this many entries; nodesOmitted counts the
 * rest. */
#define GM_STATUS_MAX_NODES 256

/* Builds the status for a valid policy. now stamps conditions whose status
 * changed. Returns 0 with *out the caller's (json_object_put), or -ENOMEM. */
int gm_status_build(const struct gm_policy *p, const struct gm_plan *plan,
                    time_t now, json_object **out);

/* For a policy whose spec did not decode: Stalled=True reason InvalidSpec
 * with p->error, Ready=False, Reconciling=False, no summary. */
int gm_status_build_invalid(const struct gm_policy *p, time_t now,
                            json_object **out);

/* True when status differs from the one last written (p->status), so it
 * must be written. */
bool gm_status_changed(const struct gm_policy *p, json_object *status);

/* Does reason match ^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$ ? */
bool gm_condition_reason_valid(const char *reason);

#endif
