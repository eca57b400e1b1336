/* The CLI's connection to the cluster: a private libuv loop and the async
 * client, with "send and wait" calls on top. A command line tool does one
 * thing at a time, so blocking here keeps every command a plain sequence
 * of steps. Errors become messages that tell the user what to do. */
#ifndef GM_CLI_CONN_H
#define GM_CLI_CONN_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "kube/client.h"

struct gm_cli_conn;

/* Loads kubeconfig (paths NULL: $KUBECONFIG, else ~/.kube/config, else the
 * in-cluster service account, as kubectl does) and makes a client. Returns 0
 * with *out the caller's (gm_cli_close), or a negative errno with a message in
 * err. */
int gm_cli_connect(const char *paths, const char *context,
                   struct gm_cli_conn **out, char *err, size_t err_len);
void gm_cli_close(struct gm_cli_conn *c);
const char *gm_cli_server(const struct gm_cli_conn *c);
/* The connection's loop and client, borrowed, for watches (cli/watch.h).
 * An interrupted call frees the client, so no watch may be running while
 * one of the calls below waits. */
uv_loop_t *gm_cli_loop(struct gm_cli_conn *c);
struct gm_kube *gm_cli_kube(struct gm_cli_conn *c);

/* Each waits for the answer. On 2xx returns 0 with *out (when out is not
 * NULL) the caller's reference; otherwise returns -EIO (or the transport's
 * errno) with *kerr filled. SIGINT or SIGTERM cancels the call (and kills
 * an exec credential plugin still running): -EINTR, and every later call
 * returns -EINTR without being sent. */
int gm_cli_get(struct gm_cli_conn *c, const char *path, json_object **out,
               struct gm_kube_error *kerr);
/* Every page of a list: *items is a new array the caller owns. */
int gm_cli_list(struct gm_cli_conn *c, const char *path, json_object **items,
                struct gm_kube_error *kerr);
int gm_cli_merge_patch(struct gm_cli_conn *c, const char *path,
                       const char *body, json_object **out,
                       struct gm_kube_error *kerr);
/* POST and PUT of body (borrowed). */
int gm_cli_create(struct gm_cli_conn *c, const char *path, json_object *body,
                  json_object **out, struct gm_kube_error *kerr);
int gm_cli_update(struct gm_cli_conn *c, const char *path, json_object *body,
                  json_object **out, struct gm_kube_error *kerr);

/* Runs the loop for up to ms milliseconds, or until Ctrl-C. Returns 1 when
 * interrupted (SIGINT or SIGTERM), else 0. */
int gm_cli_sleep(struct gm_cli_conn *c, long ms);
int gm_cli_interrupted(const struct gm_cli_conn *c);
/* The signal that interrupted a connection of this process (SIGINT,
 * SIGTERM), or 0. */
int gm_cli_was_interrupted(void);
/* With on, Ctrl-C and SIGTERM end the program at once, as by default,
 * while it computes without running the loop (a large plan), where the
 * connection's handlers would hold the signal unseen until the end; off
 * puts the handlers back. */
void gm_cli_signals_default(struct gm_cli_conn *c, bool on);

/* A message for the user about a failed call: what is the matter and what
 * to do ("cannot reach the cluster at https://...: connection refused - is
 * KUBECONFIG right?"). what names the object ("GPUModePolicy inference"). */
void gm_cli_describe(const struct gm_cli_conn *c,
                     const struct gm_kube_error *kerr, const char *what,
                     char *buf, size_t len);

#endif
