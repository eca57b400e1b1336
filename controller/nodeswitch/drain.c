#include "nodeswitch/drain.h"

#include <stdio.h>
#include <string.h>

enum gm_drain_action gm_drain_classify(const struct gm_drain_opts *o,
                                       const struct gm_pod *p, char *why,
                                       size_t why_len)
{
    why[0] = '\0';
    if (p->mirror)
        return GM_DRAIN_SKIP;
    if (p->owner_kind && strcmp(p->owner_kind, "DaemonSet") == 0)
        return GM_DRAIN_SKIP;
    if (o->own_namespace && p->namespace &&
        strcmp(p->namespace, o->own_namespace) == 0)
        return GM_DRAIN_SKIP;
    bool finished = p->phase == GM_POD_SUCCEEDED || p->phase == GM_POD_FAILED;
    /* The pods to wait for are named by their own selector: gpuPodsOnly
     * and drain.podSelector narrow only the evicted ones. Once finished
     * they are what was waited for, and stay (with their logs). */
    if (o->wait_selector &&
        gm_strsel_match(o->wait_selector, gm_pod_label_lookup, p)) {
        if (finished)
            return GM_DRAIN_SKIP;
        /* Deleted by someone else (a cancelled job), it is still theirs:
         * waitForCompletion's limit applies, not the drain's. */
        snprintf(why, why_len,
                 p->deleting ? "terminating" : "waiting for completion");
        return GM_DRAIN_WAIT;
    }
    if (o->gpu_pods_only && !p->uses_gpu)
        return GM_DRAIN_SKIP;
    if (o->pod_selector &&
        !gm_strsel_match(o->pod_selector, gm_pod_label_lookup, p))
        return GM_DRAIN_SKIP;
    if (p->deleting) {
        snprintf(why, why_len, "terminating");
        return GM_DRAIN_TERMINATING;
    }
    /* Finished pods hold nothing; evicting them is how kubectl clears
     * them, and no budget counts them. */
    if (finished)
        return GM_DRAIN_EVICT;
    if (p->owner_kind == NULL && !o->force) {
        snprintf(why, why_len,
                 "not managed by a controller (set "
                 "spec.rollout.drain.force to delete it)");
        return GM_DRAIN_BLOCKED;
    }
    if (p->empty_dir && !o->delete_empty_dir) {
        snprintf(why, why_len,
                 "uses emptyDir local storage (set "
                 "spec.rollout.drain.deleteEmptyDirData to evict it)");
        return GM_DRAIN_BLOCKED;
    }
    return GM_DRAIN_EVICT;
}
