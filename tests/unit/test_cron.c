/*
 * Cron parsing, next-fire times and time zones (host/sched/). The expected values are
 * hand-checked (and cross-checked against Python's zoneinfo for the zone offsets); the
 * comparison with a reference implementation (croner) is tests/e2e/test_cron_reference.py.
 */
#include "common/buf.h"
#include "common/error.h"
#include "sched/cron.h"
#include "sched/tz.h"
#include "test.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_WANT 8

/* One next-fire case: expression, zone, start, then the wanted fire times in order. */
#define NEXT(expr, tz, from, ...)                                                                  \
    {                                                                                              \
        __LINE__, expr, tz, from,                                                                  \
        {                                                                                          \
            __VA_ARGS__                                                                            \
        }                                                                                          \
    }

typedef struct next_case {
    int line;
    const char *expr, *tz, *from;
    const char *want[MAX_WANT];
} next_case_t;

static uint64_t bits(const int *v, int n)
{
    uint64_t m = 0;
    for (int i = 0; i < n; i++)
        m |= (uint64_t)1 << v[i];
    return m;
}
#define BITS(...) bits((const int[]){__VA_ARGS__}, sizeof((int[]){__VA_ARGS__}) / sizeof(int))

static uint64_t range_bits(int lo, int hi, int step)
{
    uint64_t m = 0;
    for (int v = lo; v <= hi; v += step)
        m |= (uint64_t)1 << v;
    return m;
}

static luar_cron_t parse_ok(const char *expr, int line)
{
    luar_cron_t c;
    luar_buf_t err;
    luar_buf_init(&err, 0);
    int rc = luar_cron_parse(expr, &c, &err);
    if (rc) {
        fprintf(stderr, "%s:%d: parse \"%s\" failed: %s\n", __FILE__, line, expr,
                err.data ? err.data : "?");
        test_failed_checks++;
    }
    luar_buf_free(&err);
    return c;
}

static int same_cron(const luar_cron_t *a, const luar_cron_t *b)
{
    return a->sec == b->sec && a->min == b->min && a->hour == b->hour && a->dom == b->dom &&
           a->mon == b->mon && a->dow == b->dow && a->dom_star == b->dom_star &&
           a->dow_star == b->dow_star && a->hour_wild == b->hour_wild;
}

/* Runs one next-fire case: each wanted time in order, each strictly after the previous. */
static void run_next_case(const next_case_t *k)
{
    luar_cron_t c = parse_ok(k->expr, k->line);
    const luar_tz_t *z;
    luar_buf_t err;
    luar_buf_init(&err, 0);
    int64_t after = 0;
    if (luar_tz_load(k->tz, &z, &err) || luar_tz_parse_iso(k->from, z, &after, &err)) {
        fprintf(stderr, "%s:%d: %s\n", __FILE__, k->line, err.data ? err.data : "?");
        test_failed_checks++;
        luar_buf_free(&err);
        return;
    }
    luar_buf_free(&err);
    for (int i = 0; i < MAX_WANT && k->want[i]; i++) {
        int64_t next = 0;
        char got[LUAR_TZ_ISO_SIZE] = "(none)";
        if (luar_cron_next_in(&c, z, after, &next) == 0)
            luar_tz_format(z, next, got, sizeof got);
        if (strcmp(got, k->want[i]) != 0) {
            fprintf(stderr, "%s:%d: \"%s\" in %s, fire %d after %s: got %s, want %s\n", __FILE__,
                    k->line, k->expr, k->tz, i + 1, k->from, got, k->want[i]);
            test_failed_checks++;
            return;
        }
        after = next;
    }
}

TEST(test_parse_each_syntax_form)
{
    luar_cron_t c = parse_ok("*/5 * * * *", __LINE__);
    CHECK(c.sec == 1 && c.min == range_bits(0, 59, 5) && c.hour == range_bits(0, 23, 1));
    CHECK(c.dom == range_bits(1, 31, 1) && c.mon == range_bits(1, 12, 1) && c.dow == 0x7f);
    CHECK(c.dom_star && c.dow_star && c.hour_wild);

    c = parse_ok("1-30/2 9-17 1,15 * 1-5", __LINE__);
    CHECK(c.min == range_bits(1, 30, 2) && c.hour == range_bits(9, 17, 1));
    CHECK(c.dom == BITS(1, 15) && c.dow == range_bits(1, 5, 1));
    CHECK(!c.dom_star && !c.dow_star && !c.hour_wild);

    c = parse_ok("5/15 0/6 * * *", __LINE__);
    CHECK(c.min == BITS(5, 20, 35, 50) && c.hour == BITS(0, 6, 12, 18) && c.hour_wild);

    c = parse_ok("0 0 * JAN,mar-May sun-TUE", __LINE__);
    CHECK(c.mon == BITS(1, 3, 4, 5) && c.dow == BITS(0, 1, 2));

    c = parse_ok("0 0 * dec FRI-SUN", __LINE__);
    CHECK(c.mon == BITS(12) && c.dow == BITS(5, 6, 0));

    c = parse_ok("0 0 * * 7", __LINE__);
    CHECK(c.dow == BITS(0) && !c.dow_star);
    c = parse_ok("0 0 * * 5-7", __LINE__);
    CHECK(c.dow == BITS(5, 6, 0));

    c = parse_ok("30 15 10 * * *", __LINE__); /* six fields: seconds first */
    CHECK(c.sec == BITS(30) && c.min == BITS(15) && c.hour == BITS(10));
    c = parse_ok("*/10 * * * * *", __LINE__);
    CHECK(c.sec == range_bits(0, 59, 10) && c.min == range_bits(0, 59, 1));

    c = parse_ok("0 9 ? * MON", __LINE__);
    CHECK(c.dom_star && !c.dow_star && c.dow == BITS(1));

    c = parse_ok("  0\t9  *   * *  ", __LINE__);
    CHECK(c.min == BITS(0) && c.hour == BITS(9));

    c = parse_ok("0 0 */10 * MON", __LINE__); /* a step is a restriction: OR rule */
    CHECK(!c.dom_star && c.dom == BITS(1, 11, 21, 31));
}

TEST(test_parse_aliases_equal_their_expansions)
{
    static const char *const pairs[][2] = {
        {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
        {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
        {"@hourly", "0 * * * *"}, {"@DAILY", "0 0 * * *"},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        luar_cron_t a = parse_ok(pairs[i][0], __LINE__), b = parse_ok(pairs[i][1], __LINE__);
        CHECK(same_cron(&a, &b));
    }
}

TEST(test_parse_errors_name_the_field_and_the_text)
{
    static const char *const cases[][2] = {
        {"0 25 * * *", "cron: field 2 (hour): 25 is out of range 0-23 in \"0 25 * * *\""},
        {"60 * * * *", "cron: field 1 (minute): 60 is out of range 0-59 in \"60 * * * *\""},
        {"61 0 0 * * *", "cron: field 1 (second): 61 is out of range 0-59 in \"61 0 0 * * *\""},
        {"0 0 0 * *", "cron: field 3 (day of month): 0 is out of range 1-31 in \"0 0 0 * *\""},
        {"0 0 * 13 *", "cron: field 4 (month): 13 is out of range 1-12 in \"0 0 * 13 *\""},
        {"0 0 0 * * 8", "cron: field 6 (day of week): 8 is out of range 0-7 in \"0 0 0 * * 8\""},
        {"0 0 * FOO *", "cron: field 4 (month): \"FOO\" is not a number or a month name "
                        "(JAN-DEC) in \"0 0 * FOO *\""},
        {"0 0 * * MOND", "cron: field 5 (day of week): \"MOND\" is not a number or a day "
                         "name (SUN-SAT) in \"0 0 * * MOND\""},
        {"a * * * *", "cron: field 1 (minute): \"a\" is not a number in \"a * * * *\""},
        {"0 1x * * *", "cron: field 2 (hour): \"1x\" is not a number in \"0 1x * * *\""},
        {"*/0 * * * *",
         "cron: field 1 (minute): step in \"*/0\" must be from 1 to 60 in \"*/0 * * * *\""},
        {"0 */x * * *", "cron: field 2 (hour): step in \"*/x\" is not a number in \"0 */x * * *\""},
        {"1/ * * * *",
         "cron: field 1 (minute): step missing after \"/\" in \"1/\" in \"1/ * * * *\""},
        {"30-5 * * * *", "cron: field 1 (minute): range \"30-5\" goes backwards (30 is after "
                         "5) in \"30-5 * * * *\""},
        {"0 0 1,,2 * *", "cron: field 3 (day of month): empty list item in \"0 0 1,,2 * *\""},
        {"-5 * * * *", "cron: field 1 (minute): \"-5\" is not a number (negative values are "
                       "not allowed) in \"-5 * * * *\""},
        {"0 0 * * 1-", "cron: field 5 (day of week): missing value in \"0 0 * * 1-\""},
        {"* * * *", "cron: expected 5 fields (min hour dom mon dow) or 6 (sec first), found 4 "
                    "in \"* * * *\""},
        {"", "cron: expected 5 fields (min hour dom mon dow) or 6 (sec first), found 0 in "
             "\"\""},
        {"* * * * * * *", "cron: expected 5 fields (min hour dom mon dow) or 6 (sec first), "
                          "found more than 6 in \"* * * * * * *\""},
        {"@reboot", "cron: field 1: unknown alias \"@reboot\" (use @yearly, @annually, "
                    "@monthly, @weekly, @daily, @midnight or @hourly) in \"@reboot\""},
        {"@daily 5", "cron: field 1: unknown alias \"@daily\" (use @yearly, @annually, "
                     "@monthly, @weekly, @daily, @midnight or @hourly) in \"@daily 5\""},
        {"0 0 30 2 *", "cron: field 3 (day of month): never fires: no month of field 4 has "
                       "day 30 in \"0 0 30 2 *\""},
        {"0 0 31 4,6,9,11 *", "cron: field 3 (day of month): never fires: no month of field "
                              "4 has day 31 in \"0 0 31 4,6,9,11 *\""},
        {"0 0 0 31 FEB *", "cron: field 4 (day of month): never fires: no month of field 5 "
                           "has day 31 in \"0 0 0 31 FEB *\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        luar_cron_t c;
        luar_buf_t err;
        luar_buf_init(&err, 0);
        CHECK_EQ_INT(luar_cron_parse(cases[i][0], &c, &err), LUAR_EPARSE);
        CHECK_EQ_STR(err.data, cases[i][1]);
        luar_buf_free(&err);
    }
    /* Day 30 of February never comes, but with a day of week the OR rule can fire. */
    luar_cron_t c;
    CHECK_EQ_INT(luar_cron_parse("0 0 30 2 MON", &c, NULL), 0);
    CHECK_EQ_INT(luar_cron_parse("0 0 29 2 *", &c, NULL), 0);
}

static const next_case_t utc_cases[] = {
    /* strictly after */
    NEXT("0 9 * * *", "UTC", "2026-05-05T09:00:00Z", "2026-05-06T09:00:00+00:00",
         "2026-05-07T09:00:00+00:00"),
    NEXT("*/5 * * * *", "UTC", "2026-01-01T23:58:30Z", "2026-01-02T00:00:00+00:00",
         "2026-01-02T00:05:00+00:00"),
    /* months without day 31 */
    NEXT("0 0 31 * *", "UTC", "2026-01-31T00:00:00Z", "2026-03-31T00:00:00+00:00",
         "2026-05-31T00:00:00+00:00", "2026-07-31T00:00:00+00:00", "2026-08-31T00:00:00+00:00",
         "2026-10-31T00:00:00+00:00", "2026-12-31T00:00:00+00:00", "2027-01-31T00:00:00+00:00"),
    NEXT("0 0 29 2 *", "UTC", "2026-01-01T00:00:00Z", "2028-02-29T00:00:00+00:00",
         "2032-02-29T00:00:00+00:00"),
    /* 2100 is not a leap year */
    NEXT("0 0 29 2 *", "UTC", "2096-03-01T00:00:00Z", "2104-02-29T00:00:00+00:00"),
    NEXT("0 0 30 * *", "UTC", "2026-01-30T12:00:00Z", "2026-03-30T00:00:00+00:00",
         "2026-04-30T00:00:00+00:00"),
    /* Vixie OR rule */
    NEXT("0 0 13 * FRI", "UTC", "2026-02-01T00:00:00Z", "2026-02-06T00:00:00+00:00",
         "2026-02-13T00:00:00+00:00", "2026-02-20T00:00:00+00:00", "2026-02-27T00:00:00+00:00",
         "2026-03-06T00:00:00+00:00", "2026-03-13T00:00:00+00:00", "2026-03-20T00:00:00+00:00"),
    /* dom `*`: weekday only */
    NEXT("0 0 * 2 FRI", "UTC", "2026-01-01T00:00:00Z", "2026-02-06T00:00:00+00:00",
         "2026-02-13T00:00:00+00:00"),
    NEXT("0 0 1,15 * *", "UTC", "2026-02-02T00:00:00Z", "2026-02-15T00:00:00+00:00",
         "2026-03-01T00:00:00+00:00"),
    NEXT("*/10 * * * * *", "UTC", "2026-01-01T00:00:05Z", "2026-01-01T00:00:10+00:00",
         "2026-01-01T00:00:20+00:00"),
    NEXT("30 15 10 * * *", "UTC", "2026-01-01T10:15:30Z", "2026-01-02T10:15:30+00:00"),
    NEXT("59 59 23 31 12 *", "UTC", "2026-06-01T00:00:00Z", "2026-12-31T23:59:59+00:00",
         "2027-12-31T23:59:59+00:00"),
    NEXT("5/15 * * * *", "UTC", "2026-01-01T00:50:00Z", "2026-01-01T01:05:00+00:00",
         "2026-01-01T01:20:00+00:00"),
    /* 2026-01-04 is a Sunday */
    NEXT("@weekly", "UTC", "2026-01-01T00:00:00Z", "2026-01-04T00:00:00+00:00",
         "2026-01-11T00:00:00+00:00"),
    NEXT("@monthly", "UTC", "2026-12-15T00:00:00Z", "2027-01-01T00:00:00+00:00",
         "2027-02-01T00:00:00+00:00"),
    NEXT("@yearly", "UTC", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00+00:00"),
    NEXT("@hourly", "UTC", "2026-01-01T00:59:59Z", "2026-01-01T01:00:00+00:00"),
    NEXT("0 9 * * *", "+05:30", "2026-01-01T00:00:00Z", "2026-01-01T09:00:00+05:30",
         "2026-01-02T09:00:00+05:30"),
    NEXT("0 9 * * *", "Asia/Kolkata", "2026-01-01T09:00:00+05:30", "2026-01-02T09:00:00+05:30"),
    NEXT("0 12 * * *", "Pacific/Chatham", "2026-05-31T12:00:00Z", "2026-06-01T12:00:00+12:45",
         "2026-06-02T12:00:00+12:45"),
};

TEST(test_next_fire_table)
{
    for (size_t i = 0; i < sizeof utc_cases / sizeof utc_cases[0]; i++)
        run_next_case(&utc_cases[i]);
}

static const next_case_t dst_cases[] = {
    /* America/New_York, 2026-03-08: 02:00 EST -> 03:00 EDT (07:00Z). */
    NEXT("30 2 * * *", "America/New_York", "2026-03-07T12:00:00Z", "2026-03-08T03:00:00-04:00",
         "2026-03-09T02:30:00-04:00"),
    NEXT("0 2 * * *", "America/New_York", "2026-03-07T12:00:00Z", "2026-03-08T03:00:00-04:00",
         "2026-03-09T02:00:00-04:00"),
    NEXT("*/30 * * * *", "America/New_York", "2026-03-08T06:00:00Z", "2026-03-08T01:30:00-05:00",
         "2026-03-08T03:00:00-04:00", "2026-03-08T03:30:00-04:00"),
    /* once */
    NEXT("*/20 2 * * *", "America/New_York", "2026-03-08T06:00:00Z", "2026-03-08T03:00:00-04:00",
         "2026-03-09T02:00:00-04:00"),
    NEXT("0 30 2 * * *", "America/New_York", "2026-03-08T06:59:59Z", "2026-03-08T03:00:00-04:00"),
    /* America/New_York, 2026-11-01: 02:00 EDT -> 01:00 EST (06:00Z). */
    NEXT("30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z", "2026-11-01T01:30:00-04:00",
         "2026-11-02T01:30:00-05:00"),
    NEXT("0 1 * * *", "America/New_York", "2026-11-01T05:00:00Z", "2026-11-02T01:00:00-05:00"),
    /* in 2nd pass */
    NEXT("30 1 * * *", "America/New_York", "2026-11-01T06:10:00Z", "2026-11-02T01:30:00-05:00"),
    NEXT("*/30 * * * *", "America/New_York", "2026-11-01T05:00:00Z", "2026-11-01T01:30:00-04:00",
         "2026-11-01T01:00:00-05:00", "2026-11-01T01:30:00-05:00", "2026-11-01T02:00:00-05:00"),
    NEXT("15 * * * *", "America/New_York", "2026-11-01T06:10:00Z", "2026-11-01T01:15:00-05:00",
         "2026-11-01T02:15:00-05:00"),
    /* a range */
    NEXT("0 1-3 * * *", "America/New_York", "2026-11-01T03:30:00Z", "2026-11-01T01:00:00-04:00",
         "2026-11-01T02:00:00-05:00", "2026-11-01T03:00:00-05:00", "2026-11-02T01:00:00-05:00"),
    /* a step */
    NEXT("0 */1 * * *", "America/New_York", "2026-11-01T04:30:00Z", "2026-11-01T01:00:00-04:00",
         "2026-11-01T01:00:00-05:00", "2026-11-01T02:00:00-05:00"),
    /* Europe/London, 2026-03-29: 01:00 GMT -> 02:00 BST (01:00Z). */
    NEXT("30 1 * * *", "Europe/London", "2026-03-28T12:00:00Z", "2026-03-29T02:00:00+01:00",
         "2026-03-30T01:30:00+01:00"),
    NEXT("0 * * * *", "Europe/London", "2026-03-28T23:30:00Z", "2026-03-29T00:00:00+00:00",
         "2026-03-29T02:00:00+01:00", "2026-03-29T03:00:00+01:00"),
    /* Europe/London, 2026-10-25: 02:00 BST -> 01:00 GMT (01:00Z). */
    NEXT("30 1 * * *", "Europe/London", "2026-10-24T12:00:00Z", "2026-10-25T01:30:00+01:00",
         "2026-10-26T01:30:00+00:00"),
    NEXT("0 * * * *", "Europe/London", "2026-10-24T23:30:00Z", "2026-10-25T01:00:00+01:00",
         "2026-10-25T01:00:00+00:00", "2026-10-25T02:00:00+00:00"),
    /* Australia/Sydney, 2026-04-05: 03:00 AEDT -> 02:00 AEST (16:00Z on the 4th). */
    NEXT("30 2 * * *", "Australia/Sydney", "2026-04-04T12:00:00Z", "2026-04-05T02:30:00+11:00",
         "2026-04-06T02:30:00+10:00"),
    NEXT("*/30 * * * *", "Australia/Sydney", "2026-04-04T15:00:00Z", "2026-04-05T02:30:00+11:00",
         "2026-04-05T02:00:00+10:00", "2026-04-05T02:30:00+10:00", "2026-04-05T03:00:00+10:00"),
    /* Australia/Sydney, 2026-10-04: 02:00 AEST -> 03:00 AEDT (16:00Z on the 3rd). */
    NEXT("30 2 * * *", "Australia/Sydney", "2026-10-03T12:00:00Z", "2026-10-04T03:00:00+11:00",
         "2026-10-05T02:30:00+11:00"),
    /* America/Santiago, 2026-09-06: midnight does not exist (00:00 -04 -> 01:00 -03). */
    NEXT("0 0 * * *", "America/Santiago", "2026-09-05T12:00:00Z", "2026-09-06T01:00:00-03:00",
         "2026-09-07T00:00:00-03:00"),
    /* Past the TZif table (2037): the footer rule EST5EDT,M3.2.0,M11.1.0. */
    NEXT("30 2 * * *", "America/New_York", "2090-03-11T12:00:00Z", "2090-03-12T03:00:00-04:00",
         "2090-03-13T02:30:00-04:00"),
};

TEST(test_next_fire_dst_table)
{
    for (size_t i = 0; i < sizeof dst_cases / sizeof dst_cases[0]; i++)
        run_next_case(&dst_cases[i]);
}

TEST(test_next_fire_search_is_bounded)
{
    luar_cron_t c = parse_ok("0 0 29 2 *", __LINE__);
    int64_t next = 0;
    /* From 9997-01-01: 9996 was the last leap year before 10000, so nothing to find. */
    CHECK_EQ_INT(luar_cron_next(&c, "UTC", 253307692800LL, &next), LUAR_ENOTFOUND);
    CHECK_EQ_INT(luar_cron_next(&c, "UTC", 400000000000LL, &next), LUAR_ENOTFOUND);
    CHECK_EQ_INT(luar_cron_next(&c, "No/Such_Zone", 0, &next), LUAR_ENOTFOUND);
    c = parse_ok("* * * * * *", __LINE__);
    int64_t t = 1767225600; /* 2026-01-01T00:00:00Z */
    for (int i = 0; i < 100000; i++)
        CHECK_EQ_INT(luar_cron_next(&c, "Europe/London", t, &t), 0);
    CHECK_EQ_INT(t, 1767225600 + 100000);
}

TEST(test_zone_names_and_errors)
{
    const luar_tz_t *z, *again;
    luar_buf_t err;
    luar_buf_init(&err, 0);
    CHECK_EQ_INT(luar_tz_load("Europe/London", &z, NULL), 0);
    CHECK_EQ_INT(luar_tz_load("Europe/London", &again, NULL), 0);
    CHECK(z == again);
    CHECK_EQ_STR(luar_tz_name(z), "Europe/London");
    CHECK_EQ_INT(luar_tz_load("Mars/Olympus_Mons", &z, &err), LUAR_ENOTFOUND);
    CHECK(err.data && strstr(err.data, "unknown time zone \"Mars/Olympus_Mons\""));
    luar_buf_reset(&err);
    CHECK_EQ_INT(luar_tz_load("../../etc/passwd", &z, &err), LUAR_EINVAL);
    CHECK_EQ_STR(err.data, "invalid time zone name \"../../etc/passwd\"");
    CHECK_EQ_INT(luar_tz_load("/etc/passwd", &z, NULL), LUAR_EINVAL);
    CHECK_EQ_INT(luar_tz_load("+25:00", &z, NULL), LUAR_EINVAL);
    CHECK_EQ_INT(luar_tz_load("", &z, NULL), LUAR_EINVAL);
    CHECK_EQ_INT(luar_tz_load("-08:00", &z, NULL), 0);
    CHECK_EQ_INT(luar_tz_offset(z, 0), -8 * 3600);
    CHECK_EQ_INT(luar_tz_load("UTC", &z, NULL), 0);
    CHECK_EQ_INT(luar_tz_offset(z, 1767225600), 0);
    luar_buf_free(&err);
}

TEST(test_parse_time_takes_seconds_or_iso_utc)
{
    double t = -1;
    CHECK_EQ_INT(luar_tz_parse_time("1767225600", &t), 0);
    CHECK(t == 1767225600.0);
    CHECK_EQ_INT(luar_tz_parse_time("1767225600.25", &t), 0);
    CHECK(t == 1767225600.25);
    CHECK_EQ_INT(luar_tz_parse_time("2026-01-01T00:00Z", &t), 0);
    CHECK(t == 1767225600.0);
    CHECK_EQ_INT(luar_tz_parse_time("2026-01-01T00:00", &t), 0); /* UTC without an offset */
    CHECK(t == 1767225600.0);
    CHECK_EQ_INT(luar_tz_parse_time("2026-01-01T01:00+01:00", &t), 0);
    CHECK(t == 1767225600.0);
    static const char *const bad[] = {"", "soon", "-5", "inf", "nan", "0x10", "1e3", "1.2.3",
                                      "2026-13-01", "99999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_EQ_INT(luar_tz_parse_time(bad[i], &t), LUAR_EINVAL);
}

TEST(test_iso_parse_and_format)
{
    const luar_tz_t *ny, *utc;
    CHECK_EQ_INT(luar_tz_load("America/New_York", &ny, NULL), 0);
    CHECK_EQ_INT(luar_tz_load("UTC", &utc, NULL), 0);
    int64_t t = 0;
    char s[LUAR_TZ_ISO_SIZE];
    CHECK_EQ_INT(luar_tz_parse_iso("2026-01-01T00:00:00Z", ny, &t, NULL), 0);
    CHECK_EQ_INT(t, 1767225600);
    CHECK_EQ_INT(luar_tz_parse_iso("2026-01-01T05:30:00+05:30", ny, &t, NULL), 0);
    CHECK_EQ_INT(t, 1767225600);
    CHECK_EQ_INT(luar_tz_parse_iso("2025-12-31 16:00:00.999-0800", ny, &t, NULL), 0);
    CHECK_EQ_INT(t, 1767225600);
    CHECK_EQ_INT(luar_tz_parse_iso("2026-01-01T01:00+01", ny, &t, NULL), 0);
    CHECK_EQ_INT(t, 1767225600);
    CHECK_EQ_INT(luar_tz_parse_iso("2025-12-31T19:00:00", ny, &t, NULL), 0); /* local */
    CHECK_EQ_INT(t, 1767225600);
    CHECK_EQ_INT(luar_tz_parse_iso("2026-01-01", utc, &t, NULL), 0);
    CHECK_EQ_INT(t, 1767225600);
    /* local times in a gap or an overlap */
    CHECK_EQ_INT(luar_tz_parse_iso("2026-03-08T02:30:00", ny, &t, NULL), 0);
    CHECK_EQ_INT(t, 1772953200); /* 07:00Z, 03:00 EDT: the first instant after the gap */
    CHECK_EQ_INT(luar_tz_parse_iso("2026-11-01T01:30:00", ny, &t, NULL), 0);
    CHECK_EQ_INT(t, 1793511000); /* 05:30Z, the first 01:30 (EDT) */

    static const char *const bad[] = {"2026-02-30",         "2026-13-01",
                                      "yesterday",          "2026-01-01T25:00",
                                      "2026-01-01T10",      "2026-01-01T10:00:00+1",
                                      "2026-01-01T10:00Zx", "2026-01-01T10:00:00 UTC"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        luar_buf_t err;
        luar_buf_init(&err, 0);
        CHECK_EQ_INT(luar_tz_parse_iso(bad[i], utc, &t, &err), LUAR_EINVAL);
        CHECK(err.data && strstr(err.data, bad[i]) && strstr(err.data, "is not an ISO 8601"));
        luar_buf_free(&err);
    }

    CHECK_EQ_INT(luar_tz_format(ny, 1767225600, s, sizeof s), 0);
    CHECK_EQ_STR(s, "2025-12-31T19:00:00-05:00");
    CHECK_EQ_INT(luar_tz_format(utc, 1767225600, s, sizeof s), 0);
    CHECK_EQ_STR(s, "2026-01-01T00:00:00+00:00");
    CHECK_EQ_INT(luar_tz_format(ny, -5364662400LL, s, sizeof s), 0); /* LMT */
    CHECK_EQ_STR(s, "1799-12-31T19:03:58-04:56:02");
    CHECK_EQ_INT(luar_tz_format(utc, 0, s, 10), LUAR_EINVAL);
}

TEST(test_cmd_next_exit_codes)
{
    /* Output goes to the test's stdout/stderr; only the statuses are checked here (the e2e
     * tests check the text through the real binary). */
    char *ok[] = {"0 9 * * *", "--tz", "Europe/London", "--from", "2026-03-29T00:00:00Z",
                  "--count",   "2"};
    CHECK_EQ_INT(luar_cron_cmd_next(7, ok), 0);
    char *joined[] = {"0", "9", "*", "*", "*", "--tz=UTC", "--from=2026-01-01"};
    CHECK_EQ_INT(luar_cron_cmd_next(7, joined), 0);
    char *none[] = {"--tz", "UTC"};
    CHECK_EQ_INT(luar_cron_cmd_next(2, none), 2);
    char *bad_count[] = {"@daily", "--count", "1001"};
    CHECK_EQ_INT(luar_cron_cmd_next(3, bad_count), 2);
    char *bad_tz[] = {"@daily", "--tz", "Nowhere/Land"};
    CHECK_EQ_INT(luar_cron_cmd_next(3, bad_tz), 2);
    char *bad_from[] = {"@daily", "--from", "tomorrow"};
    CHECK_EQ_INT(luar_cron_cmd_next(3, bad_from), 2);
    char *bad_expr[] = {"0 25 * * *"};
    CHECK_EQ_INT(luar_cron_cmd_next(1, bad_expr), 2);
    char *no_value[] = {"@daily", "--tz"};
    CHECK_EQ_INT(luar_cron_cmd_next(2, no_value), 2);
    char *unknown[] = {"@daily", "--zone", "UTC"};
    CHECK_EQ_INT(luar_cron_cmd_next(3, unknown), 2);
}

int main(void)
{
    RUN(test_parse_each_syntax_form);
    RUN(test_parse_aliases_equal_their_expansions);
    RUN(test_parse_errors_name_the_field_and_the_text);
    RUN(test_next_fire_table);
    RUN(test_next_fire_dst_table);
    RUN(test_next_fire_search_is_bounded);
    RUN(test_zone_names_and_errors);
    RUN(test_iso_parse_and_format);
    RUN(test_parse_time_takes_seconds_or_iso_utc);
    RUN(test_cmd_next_exit_codes);
    luar_tz_cache_clear();
    return DONE();
}
