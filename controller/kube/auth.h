/* Credentials that change while we run: a token file, and client
 * certificate and key files, re-read at least every minute and after a 401;
 * exec plugins re-run before expirationTimestamp (in the background, while
 * the current credential is still handed out) and after a 401. Exec plugins
 * run through uv_spawn so the loop never blocks. */
#ifndef GM_KUBE_AUTH_H
#define GM_KUBE_AUTH_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "kube/config.h"

struct gm_auth;

/* A snapshot of the current credentials. Pointers stay valid until the next
 * call into the same gm_auth or until the loop runs, since a refresh running
 * in the background replaces them (they are owned by it): copy them before
 * returning to the loop. */
struct gm_cred {
    const char *token;    /* bearer token or NULL */
    const char *cert_pem; /* PEM from an exec plugin, else from the */
    size_t cert_len;      /* client-certificate file; or NULL */
    const char *key_pem;
    size_t key_len;
    uint64_t generation; /* bumps whenever any credential changes */
};

#define GM_AUTH_PENDING 1

/* cb is called with err 0 (cred valid) or a negative errno and *msg text. */
typedef void (*gm_auth_cb)(void *data, int err, const char *msg);

/* cfg must outlive the auth object. */
int gm_auth_new(uv_loop_t *loop, const struct gm_kube_config *cfg,
                struct gm_auth **out);

/* Fills *cred and returns 0 when credentials are usable: fresh, or due for
 * a refresh but not yet expired (an exec plugin then runs in the background;
 * if it fails, the current credential is still handed out until it expires,
 * and the plugin is tried again at most every few seconds). Returns
 * GM_AUTH_PENDING when there is no usable credential and a refresh is
 * running: cb(data, ...) runs when it ends and the caller then calls
 * gm_auth_current again. Returns a negative errno on failure (with the
 * message available from gm_auth_last_error). */
int gm_auth_current(struct gm_auth *a, struct gm_cred *cred, gm_auth_cb cb,
                    void *data);

/* After a 401 to a request sent with credentials of this generation (0:
 * not known): the next gm_auth_current re-reads the token file and the
 * certificate files, or re-runs the exec plugin. A 401 to credentials
 * already replaced changes nothing. */
void gm_auth_invalidate(struct gm_auth *a, uint64_t generation);

/* Whether cfg names client certificate and key files, which gm_auth then
 * reads (the HTTP layer needs a gm_auth for them). */
int gm_auth_has_cert_files(const struct gm_kube_config *cfg);

/* The text of the last failure, owned by a; NULL when the last refresh
 * worked. */
const char *gm_auth_last_error(const struct gm_auth *a);

/* Cancels pending callbacks (they are never called). A running plugin is
 * killed; its handles close on the loop and their memory is freed in the
 * close callbacks, so run the loop once more before uv_loop_close. Safe to
 * call from inside a gm_auth_cb. */
void gm_auth_free(struct gm_auth *a);

/* Wall clock in milliseconds since the epoch. Token-file age and exec
 * credential expiry are both measured with it, so tests can move time. */
typedef int64_t (*gm_auth_clock)(void *data);

/* For tests: replaces the clock (NULL restores the real one). */
void gm_auth_set_clock(struct gm_auth *a, gm_auth_clock now, void *data);

/* For tests: how long an exec plugin may run before it is killed (default
 * 30 s). */
void gm_auth_set_exec_timeout(struct gm_auth *a, uint64_t ms);

/* on: a person is at stdin and stderr (kubectl-gpumode on a terminal). An
 * exec plugin whose interactiveMode is not Never then gets both, and no
 * time limit; one whose interactiveMode is Always fails without it. */
void gm_auth_set_terminal(struct gm_auth *a, int on);

#endif
