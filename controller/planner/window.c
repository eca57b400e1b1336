#include "planner/window.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct tz_saved {
    char *old; /* owned copy of TZ, NULL when TZ was unset */
};

/* glibc silently falls back to UTC for a zone it cannot load, which would
 * open a Berlin window an hour off without a word; look for the file first. */
static bool zone_known(const char *zone)
{
    char path[512];
    const char *dir = getenv("TZDIR");

    if (strcmp(zone, "UTC") == 0)
        return true;
    if (dir == NULL || dir[0] == '\0')
        dir = "/usr/share/zoneinfo";
    if (snprintf(path, sizeof(path), "%s/%s", dir, zone) >= (int)sizeof(path))
        return false;
    /* A directory such as "America" exists too, but is no zone: glibc
     * would fall back to UTC. */
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
           access(path, R_OK) == 0;
}

static int tz_enter(const char *zone, struct tz_saved *s)
{
    const char *old = getenv("TZ");

    s->old = NULL;
    if (!zone_known(zone))
        return -ENOENT;
    if (old != NULL) {
        s->old = strdup(old);
        if (s->old == NULL)
            return -ENOMEM;
    }
    if (setenv("TZ", zone, 1) != 0) {
        free(s->old);
        s->old = NULL;
        return -errno;
    }
    tzset();
    return 0;
}

static void tz_leave(struct tz_saved *s)
{
    if (s->old != NULL)
        setenv("TZ", s->old, 1);
    else
        unsetenv("TZ");
    tzset();
    free(s->old);
    s->old = NULL;
}

static bool day_listed(const struct gm_window *w, int wday)
{
    return (w->days >> ((wday % 7 + 7) % 7)) & 1u;
}

static bool open_at(const struct gm_window *w, const struct tm *tm)
{
    int minute = tm->tm_hour * 60 + tm->tm_min;
    int start = w->start_minute;
    int end = w->end_minute;

    if (start == end)
        return day_listed(w, tm->tm_wday);
    if (start < end)
        return day_listed(w, tm->tm_wday) && minute >= start && minute < end;
    /* Crossing midnight: the evening part belongs to today, the morning
     * part to the window that started yesterday. */
    if (minute >= start)
        return day_listed(w, tm->tm_wday);
    if (minute < end)
        return day_listed(w, tm->tm_wday - 1);
    return false;
}

int gm_window_open(const struct gm_window *w, time_t now)
{
    struct tz_saved saved;
    struct tm tm;
    int err = tz_enter(w->time_zone, &saved);

    if (err)
        return err;
    bool ok = localtime_r(&now, &tm) != NULL;
    bool open = ok && open_at(w, &tm);
    tz_leave(&saved);
    if (!ok)
        return -EOVERFLOW;
    return open ? 1 : 0;
}

/* Candidates are each listed day's opening time over the next eight days,
 * resolved in the zone by mktime. An opening inside a spring-forward gap
 * does not exist: mktime moves it by the gap's length, on (02:30 to 03:30
 * EDT, past the jump at 03:00 where the window already opens, maybe past
 * its end) or, in a zone whose tzdata marks winter as the DST (Dublin),
 * back. So on such a day the window opens at the first open minute within
 * three hours either side (none: not that day). */
static time_t gap_open(const struct gm_window *w, time_t t, time_t now)
{
    struct tm tm;
    for (time_t b = t - 3 * 3600; b <= t + 3 * 3600; b += 60)
        if (b > now && localtime_r(&b, &tm) && open_at(w, &tm))
            return b;
    return (time_t)-1;
}

static int next_open_locked(const struct gm_window *w, time_t now, time_t *out)
{
    struct tm today;

    if (localtime_r(&now, &today) == NULL)
        return -EOVERFLOW;
    if (open_at(w, &today)) {
        *out = now;
        return 0;
    }
    int start = w->start_minute == w->end_minute ? 0 : w->start_minute;
    for (int k = 0; k <= 8; k++) {
        struct tm c = today;
        c.tm_mday += k;
        c.tm_hour = start / 60;
        c.tm_min = start % 60;
        c.tm_sec = 0;
        c.tm_isdst = -1;
        int wday = (today.tm_wday + k) % 7;
        if (!day_listed(w, wday))
            continue;
        time_t t = mktime(&c);
        if (t != (time_t)-1 && c.tm_hour * 60 + c.tm_min != start)
            t = gap_open(w, t, now);
        if (t == (time_t)-1 || t <= now)
            continue;
        *out = t;
        return 0;
    }
    return -ERANGE;
}

int gm_window_next_open(const struct gm_window *w, time_t now, time_t *out)
{
    struct tz_saved saved;
    int err;

    if ((w->days & GM_DAYS_ALL) == 0)
        return -ERANGE;
    err = tz_enter(w->time_zone, &saved);
    if (err)
        return err;
    err = next_open_locked(w, now, out);
    tz_leave(&saved);
    return err;
}
