/* Which pods a drain evicts, waits for, leaves alone, or cannot move:
 * kubectl drain's rules (DaemonSet and mirror pods stay; emptyDir needs
 * deleteEmptyDirData; pods without a controller need force; finished pods
 * go) narrowed by the policy (GPU pods only, a pod selector), and
 * waitForCompletion pods waited for instead of evicted, whatever those
 * narrowings say: the selector names them. Pure: no I/O. */
#ifndef GM_NODESWITCH_DRAIN_H
#define GM_NODESWITCH_DRAIN_H

#include <stdbool.h>
#include <stddef.h>

#include "common/strsel.h"
#include "kube/pod.h"

struct gm_drain_opts {
    bool gpu_pods_only;
    const struct gm_strsel *pod_selector;  /* borrowed; NULL: all */
    const struct gm_strsel *wait_selector; /* borrowed; NULL: none */
    long timeout_s;                        /* 0: no limit */
    long wait_timeout_s; /* for waitForCompletion pods; 0: no limit */
    long grace_s;        /* -1: the pod's own */
    bool delete_empty_dir;
    bool force;
    const char *own_namespace; /* our helper pods are never drained */
};

enum gm_drain_action {
    GM_DRAIN_SKIP,        /* not ours to move */
    GM_DRAIN_EVICT,       /* ask the Eviction API */
    GM_DRAIN_TERMINATING, /* deleting already: wait for it to go (the
                             drain timeout covers it) */
    GM_DRAIN_WAIT,        /* waitForCompletion: wait for it to finish */
    GM_DRAIN_BLOCKED,     /* would need an option the policy did not give */
};

/* why receives a short human reason for WAIT and BLOCKED. */
enum gm_drain_action gm_drain_classify(const struct gm_drain_opts *o,
                                       const struct gm_pod *p, char *why,
                                       size_t why_len);

#endif
