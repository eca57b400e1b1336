/* The compact form of a Pod: what drain, client shutdown, plugin readiness
 * and helper pods need to read. Like nodes, label strings are interned. */
#ifndef GM_KUBE_POD_H
#define GM_KUBE_POD_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#include "kube/node.h"

enum gm_pod_phase {
    GM_POD_PENDING,
    GM_POD_RUNNING,
    GM_POD_SUCCEEDED,
    GM_POD_FAILED,
    GM_POD_UNKNOWN,
};

struct gm_pod {
    char *namespace;         /* owned */
    char *name;              /* owned */
    char *uid;               /* owned */
    char *resource_version;  /* owned */
    char *node_name;         /* owned, or NULL when unscheduled */
    struct gm_label *labels; /* owned array, sorted by key, interned */
    size_t n_labels;
    char *owner_kind; /* owned; kind of the controller owner, or NULL */
    enum gm_pod_phase phase;
    bool ready;         /* condition Ready is True */
    bool deleting;      /* metadata.deletionTimestamp is set */
    bool mirror;        /* a static pod's mirror */
    bool empty_dir;     /* has an emptyDir volume */
    bool uses_gpu;      /* a container asks for an nvidia.com/ or HAMi
                         * resource, or names GPUs in NVIDIA_VISIBLE_DEVICES */
    long grace_seconds; /* spec.terminationGracePeriodSeconds, or -1 */
    long long created;  /* metadata.creationTimestamp, epoch s; 0: none */
    /* status.reason DeadlineExceeded: the kubelet stopped the pod at its
     * activeDeadlineSeconds (helper pods). */
    bool deadline_exceeded;
    /* A container started: one is running, or one that ended has a
     * startedAt (a pod failed before its image was pulled has none). */
    bool ran;
    /* A container the runtime could not start (terminated with reason
     * StartError: no such executable, a mount that failed); its startedAt
     * is the Unix epoch, which does not count as ran. */
    bool start_error;
    /* First terminated container: exit code and message (helper pods). */
    int exit_code;
    char *term_message; /* owned or NULL */
};

int gm_pod_from_json(json_object *obj, struct gm_pod **out);
void gm_pod_free(struct gm_pod *p);
const char *gm_pod_label(const struct gm_pod *p, const char *key);
/* Fits gm_label_lookup (app/profile.h). */
const char *gm_pod_label_lookup(const void *pod, const char *key);

#endif
