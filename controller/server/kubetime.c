#include "server/kubetime.h"

#include <errno.h>
#include <stdio.h>

int gm_microtime_format(const struct timespec *ts, char *out, size_t n)
{
    struct tm tm;
    if (n < GM_MICROTIME_LEN || gmtime_r(&ts->tv_sec, &tm) == NULL ||
        tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999)
        return -EINVAL;
    snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (long)(ts->tv_nsec / 1000));
    return 0;
}

int gm_microtime_now(char *out, size_t n)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return gm_microtime_format(&ts, out, n);
}
