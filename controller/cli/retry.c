#include "cli/retry.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/json.h"
#include "nodeswitch/record.h"
#include "planner/labels.h"

int gm_cli_retry_check(json_object *node, char *msg, size_t cap)
{
    json_object *md = gm_json_get(node, "metadata");
    json_object *labels = gm_json_get(md, "labels");
    const char *name = json_object_get_string(gm_json_get(md, "name"));
    const char *sw = json_object_get_string(
        gm_json_get(gm_json_get(md, "annotations"), GM_ANN_SWITCH));
    const char *state =
        json_object_get_string(gm_json_get(labels, GM_LABEL_STATE));
    const char *skip =
        json_object_get_string(gm_json_get(labels, GM_LABEL_SKIP));
    json_object *rec = sw ? json_tokener_parse(sw) : NULL;
    const char *phase =
        rec ? json_object_get_string(gm_json_get(rec, "phase")) : NULL;
    bool failed = (phase && strcmp(phase, "Failed") == 0) ||
                  (sw == NULL && state && strcmp(state, "failed") == 0);
    int err = -EINVAL;

    if (name == NULL)
        name = "?";
    if (!failed && sw)
        snprintf(msg, cap,
                 "node %s is not failed: its switch is in phase %s; retry "
                 "is only for a failed switch",
                 name, phase ? phase : "?");
    else if (!failed)
        snprintf(msg, cap,
                 "node %s is not failed (" GM_LABEL_STATE "=%s); retry is "
                 "only for a failed switch",
                 name, state ? state : "unset");
    else if (skip && strcmp(skip, "true") == 0)
        snprintf(msg, cap,
                 "node %s is labelled " GM_LABEL_SKIP "=true, so the "
                 "controller never touches it: remove the label (kubectl "
                 "label node %s " GM_LABEL_SKIP "-) to let it retry the "
                 "switch",
                 name, name);
    else
        err = 0;
    json_object_put(rec);
    return err;
}
