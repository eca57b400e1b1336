/* What `kubectl gpumode status --watch` shows, kept current by list+watch
 * (the controller's own reflector) rather than by listing again on every
 * refresh: on a fleet of 5,000 nodes a two-second poll would move the whole
 * node list through the API server thirty times a minute per open
 * terminal. Nodes are kept in the slim form the status render reads: the
 * name and gpumode's mode and state labels. */
#ifndef GM_CLI_WATCH_H
#define GM_CLI_WATCH_H

#include <json-c/json.h>
#include <stdbool.h>

#include "cli/conn.h"

struct gm_cli_watch;

/* Starts watching every GPUModePolicy (or only the one named policy, when
 * policy is not NULL) and, when nodes is set, every node. c must outlive
 * the watch. Returns 0 with *out the caller's (gm_cli_watch_free), or a
 * negative errno. */
int gm_cli_watch_start(struct gm_cli_conn *c, const char *policy, bool nodes,
                       struct gm_cli_watch **out);

/* 1 once every cache has synced (listed at least once). */
int gm_cli_watch_synced(const struct gm_cli_watch *w);

/* Why a cache may be stale (its last list or watch failed, and it is
 * retrying), or NULL; the text is the watch's until the next loop run. */
const char *gm_cli_watch_trouble(const struct gm_cli_watch *w);

/* 1 when every cache has synced and something changed since the last call
 * that returned 1, else 0. */
int gm_cli_watch_take_change(struct gm_cli_watch *w);

/* Arrays of the cached policies and nodes (*nodes NULL when nodes are not
 * watched), new references the caller puts. Returns 0 or -ENOMEM. */
int gm_cli_watch_snapshot(const struct gm_cli_watch *w, json_object **policies,
                          json_object **nodes);

void gm_cli_watch_free(struct gm_cli_watch *w);

#endif
