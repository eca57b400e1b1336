/* Rollout windows: the times new switches may start.
 *
 * A window is open on each listed day from start to end, local time in its
 * IANA zone. When end is before start the window crosses midnight and
 * belongs to the day it starts on: days [mon], 22:00-06:00 is open from
 * Monday 22:00 to Tuesday 06:00, and not on Monday 03:00. start == end
 * means the whole of each listed day (00:00 to 24:00).
 *
 * Local time comes from the C library: TZ is switched to the window's zone
 * around the computation and restored after, so these functions are not
 * thread-safe (the controller is one libuv loop; call them from it only).
 * Zone files are read from $TZDIR or /usr/share/zoneinfo, so the image must
 * ship tzdata; "UTC" works without it. */
#ifndef GM_PLANNER_WINDOW_H
#define GM_PLANNER_WINDOW_H

#include <time.h>

#include "planner/policy.h"

/* Returns 1 when the window is open at now, 0 when closed, -ENOENT when the
 * zone is unknown (a policy error to report, not a closed window). */
int gm_window_open(const struct gm_window *w, time_t now);

/* The first time >= now at which the window is open (now itself when open),
 * for the requeue. Returns 0, -ENOENT for an unknown zone, or -ERANGE when
 * the window never opens (no day listed). */
int gm_window_next_open(const struct gm_window *w, time_t now, time_t *out);

#endif
