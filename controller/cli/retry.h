/* `kubectl gpumode retry`'s check of the node, before it annotates it:
 * pure, so what it refuses can be tested without a cluster. */
#ifndef GM_CLI_RETRY_H
#define GM_CLI_RETRY_H

#include <json-c/json.h>
#include <stddef.h>

/* Whether the controller would act on a gpumode.io/retry annotation on
 * node (a Node as the API returns it; borrowed): 0 when its switch has
 * failed (the record's phase Failed, or no record and the state label
 * failed); else -EINVAL with why, naming the node, in msg (cap bytes).
 * A node labelled gpumode.io/skip=true is refused too: the controller
 * never touches it, so the annotation would sit there unread. */
int gm_cli_retry_check(json_object *node, char *msg, size_t cap);

#endif
