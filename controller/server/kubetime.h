/* Kubernetes time stamps as the API server writes them. Leases and
 * events.k8s.io Events use MicroTime: RFC 3339 in UTC with exactly six
 * fractional digits, e.g. "2026-11-25T20:00:00.000000Z". */
#ifndef GM_SERVER_KUBETIME_H
#define GM_SERVER_KUBETIME_H

#include <stddef.h>
#include <time.h>

#define GM_MICROTIME_LEN 28 /* with the NUL */

/* Formats ts (CLOCK_REALTIME) into out, which holds GM_MICROTIME_LEN
 * bytes. Returns 0 or -EINVAL when the time does not fit the format. */
int gm_microtime_format(const struct timespec *ts, char *out, size_t n);
/* The wall clock now. */
int gm_microtime_now(char *out, size_t n);

#endif
