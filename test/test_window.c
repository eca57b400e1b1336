/* Rollout windows: days, midnight crossing, time zones, DST, next opening.
 * Instants are Unix times; the comments give them in UTC. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "planner/window.h"

#define MON (1 << 1)
#define TUE (1 << 2)
#define WED (1 << 3)
#define THU (1 << 4)
#define FRI (1 << 5)
#define SAT (1 << 6)
#define WEEKDAYS (MON | TUE | WED | THU | FRI)

static struct gm_window win(int days, int sh, int sm, int eh, int em,
                            const char *tz)
{
    struct gm_window w;

    memset(&w, 0, sizeof(w));
    w.days = (uint8_t)days;
    w.start_minute = sh * 60 + sm;
    w.end_minute = eh * 60 + em;
    snprintf(w.time_zone, sizeof(w.time_zone), "%s", tz);
    return w;
}

static void test_crossing_midnight_belongs_to_start_day(void **state)
{
    struct gm_window w = win(MON, 22, 0, 6, 0, "UTC");

    assert_int_equal(gm_window_open(&w, 1715034600), 1); /* Mon 22:30 */
    assert_int_equal(gm_window_open(&w, 1715050800), 1); /* Tue 03:00 */
    assert_int_equal(gm_window_open(&w, 1714964400), 0); /* Mon 03:00 */
    assert_int_equal(gm_window_open(&w, 1715061600), 0); /* Tue 06:00 */
}

static void test_friday_night_runs_into_saturday(void **state)
{
    struct gm_window w = win(WEEKDAYS, 22, 0, 6, 0, "UTC");

    assert_int_equal(gm_window_open(&w, 1715382000), 1); /* Fri 23:00 */
    assert_int_equal(gm_window_open(&w, 1715407140), 1); /* Sat 05:59 */
    assert_int_equal(gm_window_open(&w, 1715464800), 0); /* Sat 22:00 */
}

static void test_new_york_across_dst(void **state)
{
    struct gm_window w = win(WEEKDAYS, 9, 0, 17, 0, "America/New_York");

    /* Fri 2024-03-08 is EST (UTC-5): 13:30Z is 08:30, 14:00Z is 09:00. */
    assert_int_equal(gm_window_open(&w, 1709904600), 0);
    assert_int_equal(gm_window_open(&w, 1709906400), 1);
    /* Mon 2024-03-11 is EDT (UTC-4): 13:00Z is 09:00. */
    assert_int_equal(gm_window_open(&w, 1710162000), 1);
}

static void test_next_open_across_dst(void **state)
{
    struct gm_window w = win(0x7f, 1, 0, 2, 0, "America/New_York");
    time_t t = 0;

    /* From Sun 2024-03-10 12:00Z (clocks went forward at 02:00 local), the
     * next 01:00 local is Mon 01:00 EDT = 05:00Z, not 06:00Z. */
    assert_int_equal(gm_window_next_open(&w, 1710072000, &t), 0);
    assert_int_equal(t, 1710133200);
}

/* An opening inside the spring-forward gap opens at the jump: 02:30 local
 * does not exist on Sun 2024-03-10 in New York, and 03:00 EDT (07:00Z),
 * the first minute after it, is already inside 02:30-03:15. */
static void test_next_open_in_dst_gap(void **state)
{
    struct gm_window w = win(0x7f, 2, 30, 3, 15, "America/New_York");
    time_t t = 0;

    /* From Sun 05:00Z (00:00 EST). */
    assert_int_equal(gm_window_next_open(&w, 1710046800, &t), 0);
    assert_int_equal(t, 1710054000);
    assert_int_equal(gm_window_open(&w, t), 1);
    assert_int_equal(gm_window_open(&w, t - 1), 0);
    /* On an ordinary day it is 02:30 itself: from Mon 08:00Z (04:00 EDT),
     * Tue 06:30Z (02:30 EDT). */
    assert_int_equal(gm_window_next_open(&w, 1710144000, &t), 0);
    assert_int_equal(t, 1710225000);
}

/* Dublin's tzdata has winter as the DST (negative offset), and mktime
 * moves a time in its spring gap back, not on: 01:30 on Sun 2027-03-28
 * does not exist (00:59 GMT is followed by 02:00 IST), and a 01:30-02:30
 * window opens at 02:00 IST (01:00Z) that day, not on Monday. */
static void test_next_open_in_dublin_gap(void **state)
{
    struct gm_window w = win(0x7f, 1, 30, 2, 30, "Europe/Dublin");
    time_t t = 0;

    assert_int_equal(gm_window_next_open(&w, 1806192000, &t), 0);
    assert_int_equal(t, 1806195600);
    assert_int_equal(gm_window_open(&w, t), 1);
}

/* A same-day window closes at its end minute; a Saturday-night window runs
 * into Sunday morning (the day before Sunday is Saturday, wday 6). */
static void test_end_minute_and_week_wrap(void **state)
{
    struct gm_window day = win(WEEKDAYS, 9, 0, 17, 0, "UTC");
    struct gm_window sat = win(SAT, 22, 0, 6, 0, "UTC");

    assert_int_equal(gm_window_open(&day, 1715360340), 1); /* Fri 16:59 */
    assert_int_equal(gm_window_open(&day, 1715360400), 0); /* Fri 17:00 */
    assert_int_equal(gm_window_open(&sat, 1715475600), 1); /* Sun 01:00 */
    assert_int_equal(gm_window_open(&sat, 1715497200), 0); /* Sun 07:00 */
    assert_int_equal(gm_window_open(&sat, 1715994000), 0); /* Sat 01:00 */
}

static void test_kolkata_half_hour_offset(void **state)
{
    struct gm_window w = win(MON, 22, 0, 6, 0, "Asia/Kolkata");

    assert_int_equal(gm_window_open(&w, 1715012940), 0); /* Mon 21:59 IST */
    assert_int_equal(gm_window_open(&w, 1715013000), 1); /* Mon 22:00 IST */
    assert_int_equal(gm_window_open(&w, 1715041740), 1); /* Tue 05:59 IST */
    assert_int_equal(gm_window_open(&w, 1715041800), 0); /* Tue 06:00 IST */
}

static void test_start_equals_end_is_all_day(void **state)
{
    struct gm_window w = win(SAT, 8, 0, 8, 0, "UTC");

    assert_int_equal(gm_window_open(&w, 1715385600), 1); /* Sat 00:00 */
    assert_int_equal(gm_window_open(&w, 1715471940), 1); /* Sat 23:59 */
    assert_int_equal(gm_window_open(&w, 1715472000), 0); /* Sun 00:00 */
}

static void test_next_open(void **state)
{
    struct gm_window w = win(MON, 22, 0, 6, 0, "UTC");
    struct gm_window sat = win(SAT, 8, 0, 8, 0, "UTC");
    time_t t = 0;

    /* Tue 07:00 -> next Monday 22:00. */
    assert_int_equal(gm_window_next_open(&w, 1715065200, &t), 0);
    assert_int_equal(t, 1715637600);
    /* Open now -> now. */
    assert_int_equal(gm_window_next_open(&w, 1715050800, &t), 0);
    assert_int_equal(t, 1715050800);
    /* An all-day window opens at midnight: Tue 07:00 -> Sat 00:00. */
    assert_int_equal(gm_window_next_open(&sat, 1715065200, &t), 0);
    assert_int_equal(t, 1715385600);
}

static void test_unknown_zone(void **state)
{
    struct gm_window w = win(MON, 22, 0, 6, 0, "Mars/Olympus_Mons");
    time_t t;

    assert_int_equal(gm_window_open(&w, 1715034600), -ENOENT);
    assert_int_equal(gm_window_next_open(&w, 1715034600, &t), -ENOENT);
    /* A directory of the zone database is not a zone. */
    struct gm_window d = win(MON, 22, 0, 6, 0, "America");
    assert_int_equal(gm_window_open(&d, 1715034600), -ENOENT);
}

static void test_tz_restored(void **state)
{
    struct gm_window w = win(MON, 22, 0, 6, 0, "Asia/Kolkata");

    setenv("TZ", "Europe/Paris", 1);
    assert_int_equal(gm_window_open(&w, 1715013000), 1);
    assert_string_equal(getenv("TZ"), "Europe/Paris");
    unsetenv("TZ");
    assert_int_equal(gm_window_open(&w, 1715013000), 1);
    assert_null(getenv("TZ"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crossing_midnight_belongs_to_start_day),
        cmocka_unit_test(test_friday_night_runs_into_saturday),
        cmocka_unit_test(test_new_york_across_dst),
        cmocka_unit_test(test_next_open_across_dst),
        cmocka_unit_test(test_next_open_in_dst_gap),
        cmocka_unit_test(test_next_open_in_dublin_gap),
        cmocka_unit_test(test_end_minute_and_week_wrap),
        cmocka_unit_test(test_kolkata_half_hour_offset),
        cmocka_unit_test(test_start_equals_end_is_all_day),
        cmocka_unit_test(test_next_open),
        cmocka_unit_test(test_unknown_zone),
        cmocka_unit_test(test_tz_restored),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
