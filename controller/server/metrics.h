/* A small metrics registry rendered in the Prometheus text exposition format
 * (version 0.0.4). Metrics are defined once with their help text and type;
 * series are created on first use and identified by their label set, given
 * as key, value pairs ending with NULL. Everything runs on the loop thread,
 * so there is no locking.
 *
 * The controller's metrics (defined by gm_metrics_define_gpumode):
 *
 * - gpumode_nodes{mode,state}: gauge, nodes per mode and state.
 * - gpumode_nodes_resources_differ{policy}: gauge, converged nodes of the
 *   policy that have offered other GPU resources than gpumode.io/resources
 *   for longer than resourcesGraceSeconds, as its last plan counted them
 *   (something to alert on: MIG instances changed by hand, a plugin that
 *   did not come back, a lost GPU). Only the leader plans.
 * - gpumode_switches_total{from,to,result}: counter, finished switches;
 *   result is succeeded, failed, rolledback or cancelled (its policy went
 *   away while the node drained).
 * - gpumode_switch_duration_seconds: histogram, a whole switch, cordon to
 *   uncordon.
 * - gpumode_phase_duration_seconds{phase}: histogram, one switch phase.
 * - gpumode_api_requests_total{verb,code}: counter, API requests by verb
 *   and HTTP status ("error": no answer).
 * - gpumode_watch_restarts_total{resource}: counter, watches started again.
 * - gpumode_leader: gauge, 1 while this replica leads.
 * - gpumode_queue_depth: gauge, keys waiting in the queue.
 * - gpumode_build_info{version}: gauge, always 1.
 */
#ifndef GM_SERVER_METRICS_H
#define GM_SERVER_METRICS_H

#include <stddef.h>

#include "common/buf.h"

#define GM_METRIC_NODES "gpumode_nodes"
#define GM_METRIC_RESOURCES_DIFFER "gpumode_nodes_resources_differ"
#define GM_METRIC_SWITCHES "gpumode_switches_total"
#define GM_METRIC_SWITCH_DURATION "gpumode_switch_duration_seconds"
#define GM_METRIC_PHASE_DURATION "gpumode_phase_duration_seconds"
#define GM_METRIC_API_REQUESTS "gpumode_api_requests_total"
#define GM_METRIC_WATCH_RESTARTS "gpumode_watch_restarts_total"
#define GM_METRIC_LEADER "gpumode_leader"
#define GM_METRIC_QUEUE_DEPTH "gpumode_queue_depth"
#define GM_METRIC_BUILD_INFO "gpumode_build_info"

/* Label pairs per series at most, and series per metric at most: a bound on
 * cardinality so a bug that puts a pod name in a label cannot grow the
 * registry without limit. */
#define GM_METRICS_MAX_LABELS 8
#define GM_METRICS_MAX_SERIES 4096
#define GM_METRICS_MAX_BUCKETS 32

enum gm_metric_type {
    GM_METRIC_COUNTER,
    GM_METRIC_GAUGE,
    GM_METRIC_HISTOGRAM,
};

struct gm_metric_def {
    const char *name; /* [a-zA-Z_:][a-zA-Z0-9_:]* */
    const char *help; /* one line; escaped when rendered */
    enum gm_metric_type type;
    /* Histograms: upper bounds, strictly increasing, +Inf implied. Copied. */
    const double *buckets;
    size_t n_buckets;
};

struct gm_metrics;

/* *out is the caller's (gm_metrics_free). Returns 0 or -ENOMEM. */
int gm_metrics_new(struct gm_metrics **out);
void gm_metrics_free(struct gm_metrics *m);

/* Defines a metric; the strings are copied. Defining the same name again
 * with the same type is a no-op (0); with another type, -EEXIST. A bad name
 * or bucket list gives -EINVAL. */
int gm_metrics_define(struct gm_metrics *m, const struct gm_metric_def *def);
/* Defines every gpumode_* metric above and sets gpumode_build_info. */
int gm_metrics_define_gpumode(struct gm_metrics *m, const char *version);

/* The variadic arguments are label key, value pairs (const char *), ended by
 * NULL. Label order does not matter: {a,b} and {b,a} are one series. Errors:
 * -ENOENT for an undefined metric, -EINVAL for a type mismatch, a bad label
 * name, an odd number of label strings or a negative counter increment,
 * -E2BIG past the cardinality bounds, -ENOMEM. */
int gm_metrics_counter_add(struct gm_metrics *m, const char *name, double v,
                           ...) __attribute__((sentinel));
int gm_metrics_gauge_set(struct gm_metrics *m, const char *name, double v, ...)
    __attribute__((sentinel));
int gm_metrics_gauge_add(struct gm_metrics *m, const char *name, double v, ...)
    __attribute__((sentinel));
int gm_metrics_observe(struct gm_metrics *m, const char *name, double v, ...)
    __attribute__((sentinel));

/* Drops every series of a metric, for gauges recomputed from scratch (node
 * counts per mode and state) so a combination that went away stops being
 * reported. Returns -ENOENT for an undefined metric. */
int gm_metrics_clear(struct gm_metrics *m, const char *name);

/* Reads one series' value (a histogram's count). For tests and for callers
 * that mirror a value elsewhere. -ENOENT when the series does not exist. */
int gm_metrics_value(const struct gm_metrics *m, const char *name, double *out,
                     ...) __attribute__((sentinel));

/* Appends the exposition text to out: metrics sorted by name, series sorted
 * by their label text, histogram buckets in increasing order. A metric with
 * no series still gets its HELP and TYPE lines. Returns 0 or the buffer's
 * error (-E2BIG past its cap, -ENOMEM). */
int gm_metrics_render(const struct gm_metrics *m, struct gm_buf *out);

/* The content type to serve the text with. */
#define GM_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif
