/* `kubectl gpumode status`, rendered: pure functions from the policies (and
 * optionally the nodes) as the API returns them to text, so what a user
 * sees can be tested without a cluster. */
#ifndef GM_CLI_STATUS_H
#define GM_CLI_STATUS_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "common/buf.h"

struct gm_status_opts {
    bool color;    /* ANSI colours (only when stdout is a terminal) */
    time_t now;    /* for "time in phase" */
    int bar_width; /* cells in the progress bar; 0: 10 */
};

/* policies is an array of GPUModePolicy objects, nodes an array of Node
 * objects or NULL (then a node's mode and state come from the status
 * alone). Appends to out; returns 0 or -ENOMEM / -E2BIG. */
int gm_status_render(json_object *policies, json_object *nodes,
                     const struct gm_status_opts *o, struct gm_buf *out);

/* "[#######---]" for done of total in width cells (ASCII, so it survives
 * any terminal and log). */
void gm_status_bar(int done, int total, int width, char *buf, size_t len);

/* "45s", "3m12s", "2h05m", "3d4h"; "-" for a negative span. */
void gm_status_duration(long long seconds, char *buf, size_t len);

/* Seconds since the epoch of an RFC 3339 UTC time ("2024-05-06T22:30:00Z"),
 * or -1. */
long long gm_status_parse_time(const char *s);

#endif
