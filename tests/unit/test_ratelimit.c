/*
 * GCRA arithmetic (host/ratelimit/gcra.h): exact counts over windows for several limits,
 * Retry-After values, the burst, idle refill, costs, and clocks that go backwards. Pure
 * functions: time is whatever the test says it is.
 */
#include "common/error.h"
#include "ratelimit/gcra.h"
#include "test.h"

#include <stdint.h>

#define S LUAR_NS_PER_SEC
/* An arbitrary unix time (2023-11-14T22:13:20Z), so nothing depends on now being 0. */
#define T0 (INT64_C(1700000000) * S)

/* One step against a key's TAT kept in *tat, the way a backend does it. */
static int step(const luar_gcra_t *g, int64_t *tat, int64_t now, luar_gcra_result_t *r)
{
    luar_gcra_result_t local;
    if (r == NULL)
        r = &local;
    luar_gcra_check(g, *tat, now, 1, r);
    if (r->store)
        *tat = r->tat_ns;
    CHECK(r->store || !r->allowed);
    return r->allowed;
}

/*
 * Tries a request every `dt` from T0 through T0 + window (the last one exactly there) and
 * returns how many were allowed.
 */
static int64_t allowed_in_window(const luar_gcra_t *g, int64_t window, int64_t dt)
{
    int64_t tat = 0, n = 0;
    for (int64_t t = T0; t < T0 + window; t += dt)
        n += step(g, &tat, t, NULL);
    n += step(g, &tat, T0 + window, NULL);
    return n;
}

TEST(parse_limits)
{
    luar_gcra_t g;
    CHECK_EQ_INT(luar_gcra_parse(&g, "10/m"), 0);
    CHECK_EQ_INT(g.interval_ns, 6 * S);
    CHECK_EQ_INT(g.burst, 10);
    CHECK_EQ_INT(luar_gcra_parse(&g, "100/s"), 0);
    CHECK_EQ_INT(g.interval_ns, 10000000);
    CHECK_EQ_INT(g.burst, 100);
    CHECK_EQ_INT(luar_gcra_parse(&g, "5000/h"), 0);
    CHECK_EQ_INT(g.interval_ns, 720000000);
    CHECK_EQ_INT(luar_gcra_parse(&g, "3/d"), 0);
    CHECK_EQ_INT(g.interval_ns, 28800 * S);
    /* A fraction of a request: one every two seconds, burst of one. */
    CHECK_EQ_INT(luar_gcra_parse(&g, "0.5/s"), 0);
    CHECK_EQ_INT(g.interval_ns, 2 * S);
    CHECK_EQ_INT(g.burst, 1);
    CHECK_EQ_INT(luar_gcra_parse(&g, "2.5/s"), 0);
    CHECK_EQ_INT(g.interval_ns, 400000000);
    CHECK_EQ_INT(g.burst, 2);
    const char *bad[] = {"", "abc", "0/s", "-1/s", "10/x", "10", "10/", "1e-30/s", "1e12/s",
                         "5/m ", NULL};
    for (int i = 0; bad[i]; i++) {
        if (luar_gcra_parse(&g, bad[i]) != LUAR_EINVAL)
            fprintf(stderr, "accepted \"%s\"\n", bad[i]);
        CHECK_EQ_INT(luar_gcra_parse(&g, bad[i]), LUAR_EINVAL);
    }
    CHECK_EQ_INT(luar_gcra_parse(&g, NULL), LUAR_EINVAL);
}

/* N/period allows N at once, then exactly one per period / N: N + floor(W / T) in W. */
TEST(exact_count_in_a_window_for_several_limits)
{
    static const struct {
        const char *limit;
        int64_t window, dt, expected;
    } cases[] = {
        {"10/s", 1 * S, 1000000, 10 + 10},           /* T = 100 ms, tries every 1 ms */
        {"10/s", 1 * S - 1, 1000000, 10 + 9},        /* one ns short of the 10th refill */
        {"10/m", 60 * S, S / 7, 10 + 10},            /* T = 6 s, odd try spacing */
        {"10/m", 59 * S, S / 3, 10 + 9},
        {"100/m", 90 * S, 123456789, 100 + 150},     /* T = 600 ms */
        {"7/m", 600 * S, 997 * 1000000, 7 + 70},     /* T = 8.571428571 s, not whole ms */
        {"5/h", 2 * 3600 * S, 10 * S, 5 + 10},       /* T = 720 s */
        {"3/d", 86400 * S, 60 * S, 3 + 3},           /* T = 8 h */
        {"2.5/s", 10 * S, 50000000, 2 + 25},         /* burst rounds down, rate does not */
        {"0.5/s", 10 * S, 100000000, 1 + 5},
        {"1000/s", 1 * S, 100000, 1000 + 1000},      /* T = 1 ms, tries every 0.1 ms */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        luar_gcra_t g;
        CHECK_EQ_INT(luar_gcra_parse(&g, cases[i].limit), 0);
        int64_t got = allowed_in_window(&g, cases[i].window, cases[i].dt);
        if (got != cases[i].expected)
            fprintf(stderr, "limit %s over %lld ns: %lld allowed, expected %lld\n",
                    cases[i].limit, (long long)cases[i].window, (long long)got,
                    (long long)cases[i].expected);
        CHECK_EQ_INT(got, cases[i].expected);
    }
}

TEST(burst_then_retry_after)
{
    luar_gcra_t g;
    CHECK_EQ_INT(luar_gcra_parse(&g, "5/s"), 0); /* T = 200 ms */
    int64_t tat = 0;
    luar_gcra_result_t r;
    for (int i = 0; i < 5; i++) {
        CHECK(step(&g, &tat, T0, &r));
        CHECK_EQ_INT(r.remaining, 4 - i);
        CHECK_EQ_INT(r.retry_after_ns, 0);
        CHECK_EQ_INT(r.reset_after_ns, (i + 1) * 200000000);
    }
    /* Refused: one interval to wait, and a refusal changes nothing. */
    for (int i = 0; i < 3; i++) {
        CHECK(!step(&g, &tat, T0, &r));
        CHECK_EQ_INT(r.retry_after_ns, 200000000);
        CHECK_EQ_INT(r.remaining, 0);
        CHECK_EQ_INT(r.reset_after_ns, S);
    }
    CHECK(!step(&g, &tat, T0 + 50000000, &r));
    CHECK_EQ_INT(r.retry_after_ns, 150000000);
    CHECK_EQ_INT(luar_gcra_ceil_seconds(r.retry_after_ns), 1);
    /* Exactly when it said: allowed, and the next one waits a whole interval again. */
    CHECK(step(&g, &tat, T0 + 200000000, &r));
    CHECK_EQ_INT(r.remaining, 0);
    CHECK(!step(&g, &tat, T0 + 200000000, &r));
    CHECK_EQ_INT(r.retry_after_ns, 200000000);

    /* Slow limits give Retry-After in whole seconds, rounded up. */
    CHECK_EQ_INT(luar_gcra_parse(&g, "2/m"), 0); /* T = 30 s */
    tat = 0;
    CHECK(step(&g, &tat, T0, NULL));
    CHECK(step(&g, &tat, T0, NULL));
    CHECK(!step(&g, &tat, T0 + 1, &r));
    CHECK_EQ_INT(r.retry_after_ns, 30 * S - 1);
    CHECK_EQ_INT(luar_gcra_ceil_seconds(r.retry_after_ns), 30);
    CHECK(!step(&g, &tat, T0 + 29 * S + 1, &r));
    CHECK_EQ_INT(luar_gcra_ceil_seconds(r.retry_after_ns), 1);
}

/* Idle time refills up to the burst and no further. */
TEST(idle_refills_to_the_burst_only)
{
    luar_gcra_t g;
    CHECK_EQ_INT(luar_gcra_parse(&g, "4/m"), 0); /* T = 15 s */
    int64_t tat = 0, n = 0;
    for (int i = 0; i < 10; i++)
        n += step(&g, &tat, T0, NULL);
    CHECK_EQ_INT(n, 4);
    /* Half the bucket back after 30 s. */
    n = 0;
    for (int i = 0; i < 10; i++)
        n += step(&g, &tat, T0 + 30 * S, NULL);
    CHECK_EQ_INT(n, 2);
    /* A day idle is still one burst. */
    n = 0;
    for (int i = 0; i < 10; i++)
        n += step(&g, &tat, T0 + 86400 * S, NULL);
    CHECK_EQ_INT(n, 4);
}

TEST(cost_takes_several_units)
{
    luar_gcra_t g;
    CHECK_EQ_INT(luar_gcra_parse(&g, "5/s"), 0);
    luar_gcra_result_t r;
    luar_gcra_check(&g, 0, T0, 3, &r);
    CHECK(r.allowed);
    CHECK_EQ_INT(r.remaining, 2);
    int64_t tat = r.tat_ns;
    luar_gcra_check(&g, tat, T0, 3, &r);
    CHECK(!r.allowed);
    CHECK_EQ_INT(r.retry_after_ns, 200000000); /* one unit short */
    CHECK(step(&g, &tat, T0, NULL));
    CHECK(step(&g, &tat, T0, NULL));
    CHECK(!step(&g, &tat, T0, NULL));
    /* A cost above the burst counts as the burst (callers refuse it before). */
    luar_gcra_check(&g, 0, T0, 99, &r);
    CHECK(r.allowed);
    CHECK_EQ_INT(r.remaining, 0);
}

TEST(clock_going_backwards)
{
    luar_gcra_t g;
    CHECK_EQ_INT(luar_gcra_parse(&g, "10/m"), 0); /* T = 6 s */
    int64_t tat = 0;
    for (int i = 0; i < 10; i++)
        CHECK(step(&g, &tat, T0, NULL));
    luar_gcra_result_t r;
    /* Forward a little: the bucket refills by that much and no more. */
    CHECK(!step(&g, &tat, T0 + 2 * S, &r));
    CHECK_EQ_INT(r.retry_after_ns, 4 * S);
    CHECK(!r.store);
    /* Back a little (within the bucket): the wait is one interval; what it forgives is
     * the step, never more. */
    CHECK(!step(&g, &tat, T0 - 2 * S, &r));
    CHECK_EQ_INT(r.retry_after_ns, 6 * S);
    CHECK(r.store);
    /* Back an hour: one interval of waiting, not an hour, and then one per interval. */
    CHECK(!step(&g, &tat, T0 - 3600 * S, &r));
    CHECK_EQ_INT(r.retry_after_ns, 6 * S);
    CHECK(!step(&g, &tat, T0 - 3600 * S + 6 * S - 1, &r));
    CHECK(step(&g, &tat, T0 - 3600 * S + 6 * S, &r));
    CHECK(!step(&g, &tat, T0 - 3600 * S + 6 * S, &r));
    CHECK(!step(&g, &tat, T0 - 3600 * S + 12 * S - 1, &r));
    CHECK(step(&g, &tat, T0 - 3600 * S + 12 * S, &r));
    /* Time coming forward again past the stored TAT: a full bucket, never more. */
    int64_t n = 0;
    for (int i = 0; i < 20; i++)
        n += step(&g, &tat, T0 + 120 * S, NULL);
    CHECK_EQ_INT(n, 10);
    /* A TAT written by a host whose clock runs a minute ahead: one interval at most. */
    tat = T0 + 60 * S + 10 * 6 * S;
    CHECK(!step(&g, &tat, T0, &r));
    CHECK_EQ_INT(r.retry_after_ns, 6 * S);
}

TEST(seconds_conversions)
{
    CHECK_EQ_INT(luar_gcra_ns(1.5), 1500000000);
    CHECK_EQ_INT(luar_gcra_ns(0), 0);
    CHECK_EQ_INT(luar_gcra_ns(-3), 0);
    CHECK_EQ_INT(luar_gcra_ns(1700000000.5), INT64_C(1700000000500000000));
    CHECK_EQ_INT(luar_gcra_ceil_seconds(0), 0);
    CHECK_EQ_INT(luar_gcra_ceil_seconds(1), 1);
    CHECK_EQ_INT(luar_gcra_ceil_seconds(S), 1);
    CHECK_EQ_INT(luar_gcra_ceil_seconds(S + 1), 2);
    CHECK_EQ_INT(luar_gcra_ceil_seconds(-5), 0);
}

int main(void)
{
    RUN(parse_limits);
    RUN(exact_count_in_a_window_for_several_limits);
    RUN(burst_then_retry_after);
    RUN(idle_refills_to_the_burst_only);
    RUN(cost_takes_several_units);
    RUN(clock_going_backwards);
    RUN(seconds_conversions);
    return DONE();
}
