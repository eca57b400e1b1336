/* Kubernetes requests on top of the transport: typed errors from the API's
 * Status, JSON bodies through json-c, paginated lists, patches of each kind,
 * deletes with preconditions, the Eviction subresource and watches. */
#ifndef GM_KUBE_CLIENT_H
#define GM_KUBE_CLIENT_H

#include <json-c/json.h>
#include <uv.h>

#include "kube/auth.h"
#include "kube/config.h"
#include "kube/http.h"
#include "kube/watch.h"

struct gm_kube;

/* What went wrong, as the API server said it (metav1.Status) or as the
 * transport saw it. code 0 means no HTTP answer (see err). */
struct gm_kube_error {
    int err;         /* 0 or negative errno (transport) */
    long code;       /* HTTP status */
    char reason[64]; /* Status.reason, e.g. "NotFound", "Conflict" */
    char message[512];
};

struct gm_kube_resp {
    long code;        /* HTTP status, 0 when the transport failed */
    json_object *obj; /* parsed body on 2xx (borrowed), else NULL */
    const struct gm_kube_error *error; /* NULL on 2xx */
};

/* Called once per request unless it was cancelled. */
typedef void (*gm_kube_cb)(void *data, const struct gm_kube_resp *resp);

struct gm_kube_opts {
    double qps; /* default 50 */
    int burst;  /* default 100 */
    long timeout_ms;
    size_t max_body;
    long stream_idle_s; /* watches with no byte for this long are cut */
    void (*on_response)(void *data, const char *method, long status);
    void *on_response_data;
    const char *user_agent; /* NULL: gpumode/<version> */
    /* A person is at stdin and stderr: exec credential plugins may prompt
     * (gm_auth_set_terminal). */
    int terminal;
};

/* cfg is borrowed and must outlive the client. Credentials (token files,
 * exec plugins) are refreshed by an internal gm_auth. */
int gm_kube_new(uv_loop_t *loop, const struct gm_kube_config *cfg,
                const struct gm_kube_opts *opts, struct gm_kube **out);
void gm_kube_free(struct gm_kube *k);
struct gm_http *gm_kube_http(struct gm_kube *k);

enum gm_patch_type {
    GM_PATCH_MERGE, /* application/merge-patch+json */
    GM_PATCH_JSON,  /* application/json-patch+json */
    GM_PATCH_APPLY, /* application/apply-patch+yaml (server-side apply) */
};

/* Paths are the API path with any query, e.g. "/api/v1/nodes/n1". GETs are
 * retried on 429/5xx; mutations only on 429. */
int gm_kube_get(struct gm_kube *k, const char *path, gm_kube_cb cb, void *data);
int gm_kube_create(struct gm_kube *k, const char *path, json_object *body,
                   gm_kube_cb cb, void *data);
int gm_kube_update(struct gm_kube *k, const char *path, json_object *body,
                   gm_kube_cb cb, void *data);
/* field_manager is required for GM_PATCH_APPLY; force applies to it only. */
int gm_kube_patch(struct gm_kube *k, const char *path, enum gm_patch_type t,
                  const char *body, const char *field_manager, int force,
                  gm_kube_cb cb, void *data);
/* uid and resource_version (either may be NULL) become preconditions; a
 * grace_seconds < 0 leaves the object's own. */
int gm_kube_delete(struct gm_kube *k, const char *path, const char *uid,
                   const char *resource_version, long grace_seconds,
                   gm_kube_cb cb, void *data);
/* POST policy/v1 Eviction. Not retried here: a 429 means a
 * PodDisruptionBudget said no, and the caller decides when to ask again.
 * uid (may be NULL) is a precondition: a pod of the same name made since
 * (elsewhere) is not evicted; the answer is then 409. */
int gm_kube_evict(struct gm_kube *k, const char *ns, const char *name,
                  const char *uid, long grace_seconds, gm_kube_cb cb,
                  void *data);

/* Paginated list, streamed: page_cb gets the items as they arrive, each in
 * a one-element array (borrowed), and may return non-zero to stop; done_cb
 * gets the final response whose obj is {"metadata": <the last page's
 * metadata>} (metadata.resourceVersion is the list's). Only one item is
 * parsed at a time, whatever the page size. */
typedef int (*gm_kube_page_cb)(void *data, json_object *items);
int gm_kube_list(struct gm_kube *k, const char *path, long limit,
                 gm_kube_page_cb page_cb, gm_kube_cb done_cb, void *data);

/* A watch: one streamed GET whose events are decoded as they arrive. */
struct gm_kube_watch;
/* obj is borrowed. Return non-zero to end the watch (end_cb then runs with
 * err -EPIPE). */
typedef int (*gm_kube_event_cb)(void *data, enum gm_watch_type type,
                                json_object *obj);
/* err is NULL when the server ended the stream normally (its timeout). */
typedef void (*gm_kube_watch_end_cb)(void *data,
                                     const struct gm_kube_error *err);
/* path carries the query (watch=1, resourceVersion, selectors...). The
 * stream is cut if no byte arrives for the transport's idle limit. */
int gm_kube_watch(struct gm_kube *k, const char *path, long timeout_s,
                  gm_kube_event_cb ev_cb, gm_kube_watch_end_cb end_cb,
                  void *data, struct gm_kube_watch **out);
/* Ends a watch; no callback runs afterwards. May be called from any
 * callback, this watch's own included. */
void gm_kube_watch_stop(struct gm_kube_watch *w);

/* Fills err from an HTTP answer: the Status body's reason and message when
 * present, else a generic text. */
void gm_kube_error_from(struct gm_kube_error *err, long code, int terr,
                        const char *body, size_t len, const char *errmsg);

/* URL-escapes s into out (for selectors in queries). Returns -E2BIG when
 * out is too small. */
int gm_url_escape(const char *s, char *out, size_t out_len);

#endif
