#include "client/retry.h"
#include "common/error.h"
#include "test.h"

#include <math.h>

/* Sunday 1994-11-06 08:49:37 UTC, the example date of RFC 7231. */
#define RFC_DATE 784111777.0

static double fixed_random(void *ctx)
{
    return *(double *)ctx;
}

static luar_retry_policy_t policy_with_random(double *r)
{
    luar_retry_policy_t p;
    luar_retry_policy_init(&p);
    p.random = fixed_random;
    p.random_ctx = r;
    return p;
}

#define CHECK_NEAR(a, b)                                                                           \
    do {                                                                                           \
        double x_ = (a), y_ = (b);                                                                 \
        if (fabs(x_ - y_) > 1e-9) {                                                                \
            fprintf(stderr, "%s:%d: %s ~= %s failed: %.12g != %.12g\n", __FILE__, __LINE__, #a,    \
                    #b, x_, y_);                                                                   \
            test_failed_checks++;                                                                  \
        }                                                                                          \
    } while (0)

TEST(test_retry_defaults_match_spec)
{
    luar_retry_policy_t p;
    luar_retry_policy_init(&p);
    CHECK_EQ_INT(p.attempts, 3);
    CHECK_NEAR(p.backoff, 0.5);
    CHECK_NEAR(p.backoff_cap, 30);
    CHECK_NEAR(p.max_retry_after, 60);
    CHECK_EQ_INT(p.nstatuses, 5);
    CHECK_EQ_INT(p.statuses[0], 429);
    CHECK_EQ_INT(p.statuses[4], 504);
    CHECK_EQ_INT(p.on_transport_error, 1);
}

TEST(test_retry_backoff_full_jitter_bounds)
{
    /* the window for attempt n is min(cap, 0.5 * 2^(n-1)); r scales it */
    static const struct {
        int attempt;
        double r, want;
    } cases[] = {
        {1, 0.0, 0.0},   {1, 0.5, 0.25},  {1, 0.999, 0.4995}, {2, 1.0 - 1e-12, 1.0 - 2e-12},
        {2, 0.5, 0.5},   {3, 0.5, 1.0},   {4, 0.25, 1.0},     {7, 1.0 - 1e-12, 30.0 - 3e-11},
        {10, 0.5, 15.0}, {60, 0.5, 15.0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double r = cases[i].r, delay = -1;
        luar_retry_policy_t p = policy_with_random(&r);
        p.attempts = 100;
        CHECK_EQ_INT(luar_retry_should(&p, "GET", 0, cases[i].attempt, 503, NULL, NULL, 0, &delay),
                     1);
        CHECK_NEAR(delay, cases[i].want);
    }
}

TEST(test_retry_attempts_count_the_first)
{
    double r = 0.5, delay = -1;
    luar_retry_policy_t p = policy_with_random(&r);
    CHECK_EQ_INT(luar_retry_should(&p, "GET", 0, 1, 500, NULL, NULL, 0, &delay), 1);
    CHECK_EQ_INT(luar_retry_should(&p, "GET", 0, 2, 500, NULL, NULL, 0, &delay), 1);
    CHECK_EQ_INT(luar_retry_should(&p, "GET", 0, 3, 500, NULL, NULL, 0, &delay), 0);
    CHECK_NEAR(delay, 0);
    p.attempts = 1;
    CHECK_EQ_INT(luar_retry_should(&p, "GET", 0, 1, 500, NULL, NULL, 0, &delay), 0);
    CHECK_EQ_INT(luar_retry_should(&p, "GET", 0, 0, 500, NULL, NULL, 0, &delay), 0);
}

TEST(test_retry_idempotency_rules)
{
    static const struct {
        const char *method;
        int key, want;
    } cases[] = {
        {"GET", 0, 1},   {"HEAD", 0, 1},    {"OPTIONS", 0, 1}, {"PUT", 0, 1},   {"DELETE", 0, 1},
        {"TRACE", 0, 1}, {"get", 0, 1},     {"POST", 0, 0},    {"PATCH", 0, 0}, {"POST", 1, 1},
        {"PATCH", 1, 1}, {"CONNECT", 0, 0}, {"PURGE", 0, 0},   {NULL, 0, 0},    {"GETX", 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double r = 0.5, delay;
        luar_retry_policy_t p = policy_with_random(&r);
        int got =
            luar_retry_should(&p, cases[i].method, cases[i].key, 1, 503, NULL, NULL, 0, &delay);
        if (got != cases[i].want)
            fprintf(stderr, "case %zu (%s key=%d)\n", i, cases[i].method ? cases[i].method : "-",
                    cases[i].key);
        CHECK_EQ_INT(got, cases[i].want);
    }
}

TEST(test_retry_statuses_and_error_kinds)
{
    static const struct {
        int status;
        const char *kind;
        int want;
    } cases[] = {
        {429, NULL, 1},    {500, NULL, 1}, {502, NULL, 1},      {503, NULL, 1}, {504, NULL, 1},
        {501, NULL, 0},    {400, NULL, 0}, {404, NULL, 0},      {200, NULL, 0}, {0, "connect", 1},
        {0, "timeout", 1}, {0, "tls", 0},  {0, "too_large", 0}, {0, NULL, 0},   {0, "http", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double r = 0.5, delay;
        luar_retry_policy_t p = policy_with_random(&r);
        int got =
            luar_retry_should(&p, "GET", 0, 1, cases[i].status, cases[i].kind, NULL, 0, &delay);
        if (got != cases[i].want)
            fprintf(stderr, "case %zu\n", i);
        CHECK_EQ_INT(got, cases[i].want);
    }
    double r = 0.5;
    luar_retry_policy_t p = policy_with_random(&r);
    p.on_transport_error = 0;
    CHECK_EQ_INT(luar_retry_should(&p, "GET", 0, 1, 0, "connect", NULL, 0, NULL), 0);
    int only[] = {418};
    CHECK_EQ_INT(luar_retry_policy_set_statuses(&p, only, 1), 0);
    CHECK_EQ_INT(luar_retry_should(&p, "GET", 0, 1, 418, NULL, NULL, 0, NULL), 1);
    CHECK_EQ_INT(luar_retry_should(&p, "GET", 0, 1, 503, NULL, NULL, 0, NULL), 0);
    int bad[] = {42};
    CHECK_EQ_INT(luar_retry_policy_set_statuses(&p, bad, 1), LUAR_EINVAL);
    CHECK_EQ_INT(luar_retry_policy_set_statuses(&p, only, LUAR_RETRY_MAX_STATUSES + 1),
                 LUAR_EINVAL);
    CHECK_EQ_INT(p.statuses[0], 418);
}

TEST(test_retry_after_parse_forms)
{
    static const struct {
        const char *header;
        double now;
        int rc;
        double want;
    } cases[] = {
        {"0", 0, 0, 0},
        {"120", 0, 0, 120},
        {"  7\t", 0, 0, 7},
        {"007", 0, 0, 7},
        {"Sun, 06 Nov 1994 08:49:37 GMT", RFC_DATE - 30, 0, 30},
        {"Sunday, 06-Nov-94 08:49:37 GMT", RFC_DATE - 30, 0, 30},
        {"Sun Nov  6 08:49:37 1994", RFC_DATE - 30, 0, 30},
        {"Sun, 06 Nov 1994 08:49:37 GMT", RFC_DATE + 100, 0, 0}, /* past: now */
        {"Thu, 01 Jan 1970 00:00:00 GMT", 0, 0, 0},
        {"Tue, 29 Feb 2028 12:00:00 GMT", 1835438400.0 - 5, 0, 5},
        {"Tuesday, 29-Feb-28 12:00:00 GMT", 1835438400.0 - 5, 0, 5},
        {"Tue Feb 29 12:00:00 2028", 1835438400.0 - 5, 0, 5},
        {"Wed Dec 31 23:59:59 2025", 1767225599.0 - 1, 0, 1},
        {"", 0, LUAR_EPARSE, 0},
        {"   ", 0, LUAR_EPARSE, 0},
        {"-5", 0, LUAR_EPARSE, 0},
        {"1.5", 0, LUAR_EPARSE, 0},
        {"10 s", 0, LUAR_EPARSE, 0},
        {"soon", 0, LUAR_EPARSE, 0},
        {"Sun, 06 Nov 1994 08:49:37 UTC", 0, LUAR_EPARSE, 0},
        {"Sun, 6 Nov 1994 08:49:37 GMT", 0, LUAR_EPARSE, 0},
        {"Sun, 06 nov 1994 08:49:37 GMT", 0, LUAR_EPARSE, 0},
        {"Sun, 31 Nov 1994 08:49:37 GMT", 0, LUAR_EPARSE, 0},
        {"Sun, 29 Feb 1900 08:49:37 GMT", 0, LUAR_EPARSE, 0},
        {"Sun, 06 Nov 1994 24:00:00 GMT", 0, LUAR_EPARSE, 0},
        {"Sun, 06 Nov 1994 08:49:37 GMT junk", 0, LUAR_EPARSE, 0},
        {"Sun, 06 Nov 1994 08:49", 0, LUAR_EPARSE, 0},
        {"Xyz, 06 Nov 1994 08:49:37 GMT", 0, LUAR_EPARSE, 0},
        {"Sun Nov 6 08:49:37 1994", 0, LUAR_EPARSE, 0},
        {"Sun, 06-Nov-94 08:49:37 GMT", 0, LUAR_EPARSE, 0},
        {NULL, 0, LUAR_EPARSE, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double got = -1;
        int rc = luar_retry_after_parse(cases[i].header, cases[i].now, &got);
        if (rc != cases[i].rc)
            fprintf(stderr, "case %zu: \"%s\"\n", i, cases[i].header ? cases[i].header : "-");
        CHECK_EQ_INT(rc, cases[i].rc);
        if (cases[i].rc == 0)
            CHECK_NEAR(got, cases[i].want);
        else
            CHECK_NEAR(got, -1);
    }
    char longer[300];
    memset(longer, '1', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    double got = -1;
    CHECK_EQ_INT(luar_retry_after_parse(longer, 0, &got), LUAR_EPARSE);
}

TEST(test_retry_after_is_honoured_exactly_within_cap)
{
    double r = 0.5, delay = -1;
    luar_retry_policy_t p = policy_with_random(&r);
    CHECK_EQ_INT(luar_retry_should(&p, "GET", 0, 1, 429, NULL, "17", 0, &delay), 1);
    CHECK_NEAR(delay, 17);
    CHECK_EQ_INT(luar_retry_should(&p, "GET", 0, 1, 503, NULL, "60", 0, &delay), 1);
    CHECK_NEAR(delay, 60);
    /* over the cap: give up rather than retry early */
    CHECK_EQ_INT(luar_retry_should(&p, "GET", 0, 1, 503, NULL, "61", 0, &delay), 0);
    CHECK_NEAR(delay, 0);
    CHECK_EQ_INT(luar_retry_should(&p, "GET", 0, 1, 429, NULL, "99999999999999999999", 0, &delay),
                 0);
    /* HTTP-date form */
    CHECK_EQ_INT(luar_retry_should(&p, "GET", 0, 1, 503, NULL, "Sun, 06 Nov 1994 08:49:37 GMT",
                                   RFC_DATE - 12, &delay),
                 1);
    CHECK_NEAR(delay, 12);
    CHECK_EQ_INT(luar_retry_should(&p, "GET", 0, 1, 503, NULL, "Sun, 06 Nov 1994 08:49:37 GMT",
                                   RFC_DATE - 3600, &delay),
                 0);
    /* garbage: the jittered backoff applies */
    CHECK_EQ_INT(luar_retry_should(&p, "GET", 0, 1, 503, NULL, "later", 0, &delay), 1);
    CHECK_NEAR(delay, 0.25);
    /* the header does not make a non-retryable status retryable */
    CHECK_EQ_INT(luar_retry_should(&p, "GET", 0, 1, 400, NULL, "1", 0, &delay), 0);
    /* nor an exhausted or non-idempotent attempt */
    CHECK_EQ_INT(luar_retry_should(&p, "GET", 0, 3, 429, NULL, "1", 0, &delay), 0);
    CHECK_EQ_INT(luar_retry_should(&p, "POST", 0, 1, 429, NULL, "1", 0, &delay), 0);
    CHECK_EQ_INT(luar_retry_should(&p, "POST", 1, 1, 429, NULL, "1", 0, &delay), 1);
    CHECK_NEAR(delay, 1);
    p.max_retry_after = 5;
    CHECK_EQ_INT(luar_retry_should(&p, "GET", 0, 1, 429, NULL, "6", 0, &delay), 0);
}

TEST(test_retry_default_random_stays_in_window)
{
    luar_retry_policy_t p;
    luar_retry_policy_init(&p);
    p.attempts = 10;
    for (int attempt = 1; attempt < 10; attempt++) {
        double window = fmin(30, 0.5 * pow(2, attempt - 1));
        for (int i = 0; i < 200; i++) {
            double delay = -1;
            CHECK_EQ_INT(luar_retry_should(&p, "GET", 0, attempt, 0, "timeout", NULL, 0, &delay),
                         1);
            CHECK(delay >= 0 && delay < window);
        }
    }
}

int main(void)
{
    RUN(test_retry_defaults_match_spec);
    RUN(test_retry_backoff_full_jitter_bounds);
    RUN(test_retry_attempts_count_the_first);
    RUN(test_retry_idempotency_rules);
    RUN(test_retry_statuses_and_error_kinds);
    RUN(test_retry_after_parse_forms);
    RUN(test_retry_after_is_honoured_exactly_within_cap);
    RUN(test_retry_default_random_stays_in_window);
    return DONE();
}
