#include "client/ratelimit.h"
#include "common/error.h"
#include "test.h"

#include <math.h>

#define CHECK_NEAR(a, b)                                                                           \
    do {                                                                                           \
        double x_ = (a), y_ = (b);                                                                 \
        if (fabs(x_ - y_) > 1e-9) {                                                                \
            fprintf(stderr, "%s:%d: %s ~= %s failed: %.12g != %.12g\n", __FILE__, __LINE__, #a,    \
                    #b, x_, y_);                                                                   \
            test_failed_checks++;                                                                  \
        }                                                                                          \
    } while (0)

TEST(test_tokenbucket_burst_then_spacing_for_10_per_s)
{
    luar_tokenbucket_t b;
    CHECK_EQ_INT(luar_tokenbucket_init_rate(&b, "10/s"), 0);
    CHECK_NEAR(b.rate, 10);
    CHECK_NEAR(b.burst, 10);
    /* the burst of 10 goes at once */
    for (int i = 0; i < 10; i++)
        CHECK_NEAR(luar_tokenbucket_reserve(&b, 1000), 0);
    /* then callers queue 0.1 s apart, in arrival order */
    for (int i = 1; i <= 5; i++)
        CHECK_NEAR(luar_tokenbucket_reserve(&b, 1000), 0.1 * i);
    /* time passes: the queue drains at the rate */
    CHECK_NEAR(luar_tokenbucket_reserve(&b, 1000.25), 0.35);
    /* at 1000.6 the queue has drained and the bucket is empty */
    CHECK_NEAR(luar_tokenbucket_peek(&b, 1000.6), 0.1);
    CHECK_NEAR(b.tokens, 0);
    /* half a second later it holds 5, one second later 10 again (refill is continuous) */
    CHECK_NEAR(luar_tokenbucket_peek(&b, 1001.1), 0);
    CHECK_NEAR(b.tokens, 5);
    CHECK_NEAR(luar_tokenbucket_peek(&b, 1001.6), 0);
    CHECK_NEAR(b.tokens, 10);
    for (int i = 0; i < 10; i++)
        CHECK_NEAR(luar_tokenbucket_reserve(&b, 1001.6), 0);
    CHECK_NEAR(luar_tokenbucket_reserve(&b, 1001.6), 0.1);
    /* refill never exceeds the burst */
    CHECK_NEAR(luar_tokenbucket_peek(&b, 5000), 0);
    CHECK_NEAR(b.tokens, 10);
}

TEST(test_tokenbucket_partial_refill)
{
    luar_tokenbucket_t b;
    CHECK_EQ_INT(luar_tokenbucket_init(&b, 2, 1), 0);
    CHECK_NEAR(luar_tokenbucket_reserve(&b, 0), 0);
    CHECK_NEAR(luar_tokenbucket_reserve(&b, 0.2), 0.3); /* 0.4 token there, 0.6 missing */
    CHECK_NEAR(luar_tokenbucket_reserve(&b, 0.5), 0.5);
    /* a clock going backwards counts as no time passing */
    CHECK_NEAR(luar_tokenbucket_peek(&b, 0.1), 1.0);
}

TEST(test_tokenbucket_slow_rates_from_strings)
{
    static const struct {
        const char *rate;
        double per_second, burst, second_wait;
    } cases[] = {
        {"5000/h", 5000.0 / 3600, 5000, 3600.0 / 5000},
        {"60/m", 1, 60, 1},
        {"1/d", 1.0 / 86400, 1, 86400},
        {"0.5/s", 0.5, 1, 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        luar_tokenbucket_t b;
        CHECK_EQ_INT(luar_tokenbucket_init_rate(&b, cases[i].rate), 0);
        CHECK_NEAR(b.rate, cases[i].per_second);
        CHECK_NEAR(b.burst, cases[i].burst);
        b.max_wait = -1;
        b.tokens = 1; /* drain the burst but one */
        CHECK_NEAR(luar_tokenbucket_reserve(&b, 0), 0);
        CHECK_NEAR(luar_tokenbucket_reserve(&b, 0), cases[i].second_wait);
    }
}

TEST(test_tokenbucket_max_wait_refuses_without_consuming)
{
    luar_tokenbucket_t b;
    CHECK_EQ_INT(luar_tokenbucket_init(&b, 10, 2), 0);
    b.max_wait = 0.25;
    CHECK_NEAR(luar_tokenbucket_reserve(&b, 0), 0);
    CHECK_NEAR(luar_tokenbucket_reserve(&b, 0), 0);
    CHECK_NEAR(luar_tokenbucket_reserve(&b, 0), 0.1);
    CHECK_NEAR(luar_tokenbucket_reserve(&b, 0), 0.2);
    /* 0.3 > 0.25: refused, and the refusal took nothing */
    CHECK(luar_tokenbucket_reserve(&b, 0) == LUAR_TOKENBUCKET_REFUSED);
    CHECK(luar_tokenbucket_reserve(&b, 0) == LUAR_TOKENBUCKET_REFUSED);
    CHECK_NEAR(b.tokens, -2);
    CHECK_NEAR(luar_tokenbucket_peek(&b, 0), 0.3);
    /* a moment later the wait fits again */
    CHECK_NEAR(luar_tokenbucket_reserve(&b, 0.05), 0.25);
    /* max_wait 0: only immediate tokens */
    luar_tokenbucket_t z;
    CHECK_EQ_INT(luar_tokenbucket_init(&z, 1, 1), 0);
    z.max_wait = 0;
    CHECK_NEAR(luar_tokenbucket_reserve(&z, 0), 0);
    CHECK(luar_tokenbucket_reserve(&z, 0) == LUAR_TOKENBUCKET_REFUSED);
    /* default: 30 s */
    luar_tokenbucket_t d;
    CHECK_EQ_INT(luar_tokenbucket_init(&d, 1, 1), 0);
    CHECK_NEAR(d.max_wait, 30);
    for (int i = 0; i <= 30; i++)
        CHECK_NEAR(luar_tokenbucket_reserve(&d, 0), i);
    CHECK(luar_tokenbucket_reserve(&d, 0) == LUAR_TOKENBUCKET_REFUSED);
}

TEST(test_tokenbucket_cancel_refunds_for_the_next_caller)
{
    luar_tokenbucket_t b;
    CHECK_EQ_INT(luar_tokenbucket_init(&b, 10, 1), 0);
    CHECK_NEAR(luar_tokenbucket_reserve(&b, 0), 0);
    CHECK_NEAR(luar_tokenbucket_reserve(&b, 0), 0.1);
    CHECK_NEAR(luar_tokenbucket_reserve(&b, 0), 0.2);
    luar_tokenbucket_cancel(&b, 0.01); /* the 0.2 caller gave up */
    CHECK_NEAR(luar_tokenbucket_reserve(&b, 0.01), 0.19);
    /* refunds never push past the burst */
    luar_tokenbucket_cancel(&b, 100);
    CHECK_NEAR(b.tokens, 1);
}

TEST(test_tokenbucket_rejects_bad_settings)
{
    luar_tokenbucket_t b = {0};
    CHECK_EQ_INT(luar_tokenbucket_init(&b, 0, 1), LUAR_EINVAL);
    CHECK_EQ_INT(luar_tokenbucket_init(&b, -1, 1), LUAR_EINVAL);
    CHECK_EQ_INT(luar_tokenbucket_init(&b, 1, 0.5), LUAR_EINVAL);
    CHECK_EQ_INT(luar_tokenbucket_init(&b, NAN, 1), LUAR_EINVAL);
    CHECK_EQ_INT(luar_tokenbucket_init(&b, INFINITY, 1), LUAR_EINVAL);
    CHECK_EQ_INT(luar_tokenbucket_init_rate(&b, "10/fortnight"), LUAR_EINVAL);
    CHECK_EQ_INT(luar_tokenbucket_init_rate(&b, "fast"), LUAR_EINVAL);
    CHECK_EQ_INT(luar_tokenbucket_init_rate(&b, NULL), LUAR_EINVAL);
    CHECK_NEAR(b.rate, 0);
}

int main(void)
{
    RUN(test_tokenbucket_burst_then_spacing_for_10_per_s);
    RUN(test_tokenbucket_partial_refill);
    RUN(test_tokenbucket_slow_rates_from_strings);
    RUN(test_tokenbucket_max_wait_refuses_without_consuming);
    RUN(test_tokenbucket_cancel_refunds_for_the_next_caller);
    RUN(test_tokenbucket_rejects_bad_settings);
    return DONE();
}
