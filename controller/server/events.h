/* An events.k8s.io/v1 Event recorder that cannot flood the API server.
 * The first occurrence of an event is created; repeats of the same event
 * (same object, type, reason, action and note) only raise a local count,
 * sent as a series {count, lastObservedTime} patch at most once per
 * series_interval per event. The table of recent events is bounded and
 * forgets events not seen for key_ttl.
 *
 * New events are rate-limited per object and type, as client-go's event
 * correlator does: each (kind, namespace, name, uid, Normal or Warning) has
 * its own token bucket, so a rollout that starts 50 switches at once
 * announces all 50, and one noisy object cannot silence the others, nor
 * its Normal events its Warnings. A wider bucket over all objects is a
 * backstop against a bug that makes events for every object in a loop.
 * Repeats (series patches) cost no token. A dropped event is logged at
 * warn level (at most one line a second, the rest counted in the next).
 *
 * Events about cluster-scoped objects (Nodes, GPUModePolicies) are written
 * to namespace "default", as kubectl and the kubelet do for Nodes. */
#ifndef GM_SERVER_EVENTS_H
#define GM_SERVER_EVENTS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "kube/client.h"

/* Reasons (SPEC.md, "Controller surface"). */
#define GM_REASON_SWITCH_STARTED "SwitchStarted"
#define GM_REASON_EVICTION_BLOCKED "EvictionBlocked"
#define GM_REASON_CLIENTS_STOPPED "ClientsStopped"
#define GM_REASON_RECONFIGURED "Reconfigured"
#define GM_REASON_SWITCH_COMPLETED "SwitchCompleted"
#define GM_REASON_SWITCH_FAILED "SwitchFailed"
#define GM_REASON_ROLLED_BACK "RolledBack"
#define GM_REASON_REBOOT_REQUIRED "RebootRequired"
#define GM_REASON_POLICY_CONFLICT "PolicyConflict"
#define GM_REASON_INVALID_POLICY "InvalidPolicy"
/* A write for a switch refused other than with a conflict (a Role without
 * patch on nodes, an admission webhook), as Kubernetes' own controllers
 * name theirs. */
#define GM_REASON_FAILED_UPDATE "FailedUpdate"
#define GM_REASON_FAILED_CREATE "FailedCreate"

#define GM_EVENTS_CONTROLLER "gpumode.io/controller"

/* The object an event is about. Strings are borrowed for the call. */
struct gm_event_ref {
    const char *api_version; /* "v1", "gpumode.io/v1alpha1" */
    const char *kind;        /* "Node", "GPUModePolicy" */
    const char *namespace;   /* NULL or "" for cluster-scoped objects */
    const char *name;
    const char *uid; /* may be NULL */
};

enum gm_event_type {
    GM_EVENT_NORMAL,
    GM_EVENT_WARNING,
};

struct gm_recorder_opts {
    const char *identity;        /* reportingInstance; copied; required */
    const char *controller;      /* NULL: GM_EVENTS_CONTROLLER */
    uint64_t series_interval_ms; /* 0: 30 s between patches of one event */
    uint64_t key_ttl_ms;         /* 0: 10 min; forgotten after that */
    size_t max_keys;             /* 0: 1024 distinct recent events */
    /* Per object and type, client-go's defaults: a burst of 25 new
     * events, then one more per 5 minutes. Up to max_objects buckets are
     * kept; one is forgotten once it would be full again, or, when the
     * table is full, the least recently used one is (it starts full). */
    int object_burst;          /* 0: 25 */
    uint64_t object_refill_ms; /* 0: 300 s per token */
    size_t max_objects;        /* 0: 4096 (client-go's LRU size) */
    /* The backstop over all objects (before per-object limits existed
     * these were the only limit, at 1 and 25). Normal events leave the
     * last quarter of burst to Warnings. */
    double qps; /* new events per second; 0: 10 */
    int burst;  /* 0: 200 */
};

struct gm_recorder;

/* k is borrowed and must outlive the recorder or be freed first. *out is
 * the caller's (gm_recorder_free). */
int gm_recorder_new(uv_loop_t *loop, struct gm_kube *k,
                    const struct gm_recorder_opts *opts,
                    struct gm_recorder **out);

/* Records an event; the note is formatted like printf and cut to 1 KiB
 * (the API's limit). action is what the controller did or tried, in
 * CamelCase ("Drain", "Reconfigure"). Returns 0 when recorded or counted,
 * -EAGAIN when dropped by a rate limit or a full table (and logged),
 * -EINVAL for missing fields. It never blocks and never calls back:
 * failures to write are logged. */
int gm_event(struct gm_recorder *r, const struct gm_event_ref *regarding,
             enum gm_event_type type, const char *reason, const char *action,
             const char *fmt, ...) __attribute__((format(printf, 6, 7)));

struct gm_recorder_stats {
    unsigned long created; /* Events POSTed */
    unsigned long patched; /* series patches sent */
    unsigned long dropped; /* refused by a rate limit or the table */
    unsigned long failed;  /* API errors */
    size_t keys;           /* events currently remembered */
    size_t objects;        /* per-object buckets currently kept */
};
void gm_recorder_get_stats(const struct gm_recorder *r,
                           struct gm_recorder_stats *out);

/* Sends no more; pending series patches are dropped (an event count is a
 * hint, not a ledger); drops not yet logged are. The memory goes once the
 * loop has closed the timer. */
void gm_recorder_free(struct gm_recorder *r);

#endif
