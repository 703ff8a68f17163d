#include "client/breaker.h"
#include "common/buf.h"
#include "common/error.h"
#include "metrics/metrics.h"
#include "test.h"

#include <stdio.h>

/* Returns 1 when the exposition has luar_circuit_state{host="<host>"} <value>. */
static int gauge_is(const char *host, int value)
{
    luar_buf_t b;
    luar_buf_init(&b, 0);
    luar_metrics_render(&b);
    char line[400];
    snprintf(line, sizeof line, "luar_circuit_state{host=\"%s\"} %d\n", host, value);
    int found = b.data != NULL && strstr(b.data, line) != NULL;
    luar_buf_free(&b);
    return found;
}

static luar_breaker_settings_t settings(int failures, double reset)
{
    luar_breaker_settings_t s;
    luar_breaker_settings_init(&s);
    s.failures = failures;
    s.reset = reset;
    return s;
}

/* Allows then reports a failure `n` times at `now`. */
static void fail_n(luar_breaker_registry_t *reg, const char *host, const luar_breaker_settings_t *s,
                   int n, double now)
{
    for (int i = 0; i < n; i++) {
        uint64_t tok = 99;
        CHECK_EQ_INT(luar_breaker_allow(reg, host, s, now, &tok), 1);
        CHECK_EQ_INT(tok, 0);
        luar_breaker_report(reg, host, tok, LUAR_BREAKER_FAILURE, now);
    }
}

TEST(test_breaker_defaults)
{
    luar_breaker_settings_t s;
    luar_breaker_settings_init(&s);
    CHECK_EQ_INT(s.failures, 5);
    CHECK(s.reset == 30.0);
    luar_breaker_registry_t *reg = luar_breaker_registry_new(0);
    uint64_t tok;
    /* default settings: the fifth consecutive failure opens */
    fail_n(reg, "a.example", NULL, 4, 0);
    CHECK_EQ_INT(luar_breaker_state(reg, "a.example"), LUAR_BREAKER_CLOSED);
    fail_n(reg, "a.example", NULL, 1, 0);
    CHECK_EQ_INT(luar_breaker_state(reg, "a.example"), LUAR_BREAKER_OPEN);
    CHECK_EQ_INT(luar_breaker_allow(reg, "a.example", NULL, 29.9, &tok), 0);
    CHECK_EQ_INT(luar_breaker_allow(reg, "a.example", NULL, 30.0, &tok), 1);
    CHECK(tok != 0);
    luar_breaker_registry_free(reg);
    luar_metrics_reset();
}

TEST(test_breaker_opens_after_consecutive_failures_only)
{
    luar_breaker_registry_t *reg = luar_breaker_registry_new(8);
    luar_breaker_settings_t s = settings(3, 10);
    uint64_t tok;
    fail_n(reg, "api.example", &s, 2, 0);
    /* a success in between resets the count */
    CHECK_EQ_INT(luar_breaker_allow(reg, "api.example", &s, 1, &tok), 1);
    CHECK_EQ_INT(luar_breaker_report(reg, "api.example", tok, LUAR_BREAKER_SUCCESS, 1),
                 LUAR_BREAKER_CLOSED);
    fail_n(reg, "api.example", &s, 2, 2);
    /* neutral outcomes neither count nor reset */
    CHECK_EQ_INT(luar_breaker_allow(reg, "api.example", &s, 2, &tok), 1);
    CHECK_EQ_INT(luar_breaker_report(reg, "api.example", tok, LUAR_BREAKER_NEUTRAL, 2),
                 LUAR_BREAKER_CLOSED);
    CHECK(gauge_is("api.example", 0));
    fail_n(reg, "api.example", &s, 1, 3);
    CHECK_EQ_INT(luar_breaker_state(reg, "api.example"), LUAR_BREAKER_OPEN);
    CHECK(gauge_is("api.example", 2));
    /* refused without touching the network; retry_in counts down */
    CHECK_EQ_INT(luar_breaker_allow(reg, "api.example", &s, 5, &tok), 0);
    CHECK(luar_breaker_retry_in(reg, "api.example", 5) == 8.0);
    /* another host is independent; host names compare case-insensitively */
    CHECK_EQ_INT(luar_breaker_allow(reg, "other.example", &s, 5, &tok), 1);
    CHECK_EQ_INT(luar_breaker_allow(reg, "API.Example", &s, 5, &tok), 0);
    CHECK_EQ_INT(luar_breaker_count(reg), 2);
    luar_breaker_registry_free(reg);
    luar_metrics_reset();
}

TEST(test_breaker_half_open_single_probe_then_close)
{
    luar_breaker_registry_t *reg = luar_breaker_registry_new(8);
    luar_breaker_settings_t s = settings(2, 10);
    fail_n(reg, "h", &s, 2, 100);
    CHECK_EQ_INT(luar_breaker_state(reg, "h"), LUAR_BREAKER_OPEN);
    uint64_t probe = 0, tok = 0;
    CHECK_EQ_INT(luar_breaker_allow(reg, "h", &s, 109.99, &tok), 0);
    CHECK_EQ_INT(luar_breaker_allow(reg, "h", &s, 110, &probe), 1);
    CHECK(probe != 0);
    CHECK_EQ_INT(luar_breaker_state(reg, "h"), LUAR_BREAKER_HALF_OPEN);
    CHECK(gauge_is("h", 1));
    /* concurrent callers while the probe is in flight are refused */
    for (int i = 0; i < 5; i++) {
        tok = 7;
        CHECK_EQ_INT(luar_breaker_allow(reg, "h", &s, 111 + i, &tok), 0);
        CHECK_EQ_INT(tok, 0);
    }
    CHECK(luar_breaker_retry_in(reg, "h", 111) == 10.0);
    /* a late report from a request allowed before opening changes nothing */
    CHECK_EQ_INT(luar_breaker_report(reg, "h", 0, LUAR_BREAKER_SUCCESS, 112),
                 LUAR_BREAKER_HALF_OPEN);
    /* a forged or stale token changes nothing */
    CHECK_EQ_INT(luar_breaker_report(reg, "h", probe + 1, LUAR_BREAKER_SUCCESS, 112),
                 LUAR_BREAKER_HALF_OPEN);
    CHECK_EQ_INT(luar_breaker_report(reg, "h", probe, LUAR_BREAKER_SUCCESS, 113),
                 LUAR_BREAKER_CLOSED);
    CHECK(gauge_is("h", 0));
    CHECK_EQ_INT(luar_breaker_allow(reg, "h", &s, 113, &tok), 1);
    CHECK_EQ_INT(tok, 0);
    /* the failure count starts afresh: one failure does not reopen */
    luar_breaker_report(reg, "h", tok, LUAR_BREAKER_FAILURE, 113);
    CHECK_EQ_INT(luar_breaker_state(reg, "h"), LUAR_BREAKER_CLOSED);
    luar_breaker_registry_free(reg);
    luar_metrics_reset();
}

TEST(test_breaker_probe_failure_reopens_for_reset)
{
    luar_breaker_registry_t *reg = luar_breaker_registry_new(8);
    luar_breaker_settings_t s = settings(1, 10);
    fail_n(reg, "h", &s, 1, 0);
    uint64_t probe, tok;
    CHECK_EQ_INT(luar_breaker_allow(reg, "h", &s, 10, &probe), 1);
    CHECK_EQ_INT(luar_breaker_report(reg, "h", probe, LUAR_BREAKER_FAILURE, 12), LUAR_BREAKER_OPEN);
    CHECK(gauge_is("h", 2));
    /* open again from the probe's failure, not from the first opening */
    CHECK_EQ_INT(luar_breaker_allow(reg, "h", &s, 21.9, &tok), 0);
    CHECK_EQ_INT(luar_breaker_allow(reg, "h", &s, 22, &tok), 1);
    CHECK(tok != 0 && tok != probe);
    /* the old probe's token is stale now */
    CHECK_EQ_INT(luar_breaker_report(reg, "h", probe, LUAR_BREAKER_SUCCESS, 22),
                 LUAR_BREAKER_HALF_OPEN);
    CHECK_EQ_INT(luar_breaker_report(reg, "h", tok, LUAR_BREAKER_SUCCESS, 23), LUAR_BREAKER_CLOSED);
    luar_breaker_registry_free(reg);
    luar_metrics_reset();
}

TEST(test_breaker_neutral_or_lost_probe_frees_the_slot)
{
    luar_breaker_registry_t *reg = luar_breaker_registry_new(8);
    luar_breaker_settings_t s = settings(1, 5);
    s.probe_timeout = 60;
    fail_n(reg, "h", &s, 1, 0);
    uint64_t p1, p2, p3, tok;
    CHECK_EQ_INT(luar_breaker_allow(reg, "h", &s, 5, &p1), 1);
    /* canceled probe: the slot frees, state stays half-open */
    CHECK_EQ_INT(luar_breaker_report(reg, "h", p1, LUAR_BREAKER_NEUTRAL, 6),
                 LUAR_BREAKER_HALF_OPEN);
    CHECK_EQ_INT(luar_breaker_allow(reg, "h", &s, 6, &p2), 1);
    CHECK(p2 != 0 && p2 != p1);
    CHECK_EQ_INT(luar_breaker_allow(reg, "h", &s, 65.9, &tok), 0);
    /* p2 never reports: after probe_timeout another probe goes */
    CHECK_EQ_INT(luar_breaker_allow(reg, "h", &s, 66, &p3), 1);
    CHECK(p3 != 0 && p3 != p2);
    CHECK_EQ_INT(luar_breaker_report(reg, "h", p2, LUAR_BREAKER_FAILURE, 67),
                 LUAR_BREAKER_HALF_OPEN);
    CHECK_EQ_INT(luar_breaker_report(reg, "h", p3, LUAR_BREAKER_SUCCESS, 67), LUAR_BREAKER_CLOSED);
    luar_breaker_registry_free(reg);
    luar_metrics_reset();
}

TEST(test_breaker_outcome_classification)
{
    static const struct {
        int status;
        const char *kind;
        int want;
    } cases[] = {
        {500, NULL, LUAR_BREAKER_FAILURE},      {503, NULL, LUAR_BREAKER_FAILURE},
        {599, NULL, LUAR_BREAKER_FAILURE},      {429, NULL, LUAR_BREAKER_SUCCESS},
        {404, NULL, LUAR_BREAKER_SUCCESS},      {200, NULL, LUAR_BREAKER_SUCCESS},
        {301, NULL, LUAR_BREAKER_SUCCESS},      {0, "connect", LUAR_BREAKER_FAILURE},
        {0, "timeout", LUAR_BREAKER_FAILURE},   {0, "tls", LUAR_BREAKER_NEUTRAL},
        {0, "too_large", LUAR_BREAKER_NEUTRAL}, {0, NULL, LUAR_BREAKER_NEUTRAL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK_EQ_INT(luar_breaker_outcome(cases[i].status, cases[i].kind), cases[i].want);
}

TEST(test_breaker_registry_evicts_lru_closed_only)
{
    luar_breaker_registry_t *reg = luar_breaker_registry_new(3);
    luar_breaker_settings_t s = settings(1, 100);
    uint64_t tok;
    fail_n(reg, "open.example", &s, 1, 0); /* oldest, but open: never evicted */
    CHECK_EQ_INT(luar_breaker_allow(reg, "b.example", &s, 1, &tok), 1);
    CHECK_EQ_INT(luar_breaker_allow(reg, "c.example", &s, 2, &tok), 1);
    CHECK_EQ_INT(luar_breaker_allow(reg, "b.example", &s, 3, &tok), 1); /* b is now newer */
    CHECK_EQ_INT(luar_breaker_allow(reg, "d.example", &s, 4, &tok), 1); /* evicts c */
    CHECK_EQ_INT(luar_breaker_count(reg), 3);
    CHECK_EQ_INT(luar_breaker_state(reg, "open.example"), LUAR_BREAKER_OPEN);
    /* c was forgotten: a report for it is ignored, and it comes back closed */
    CHECK_EQ_INT(luar_breaker_report(reg, "c.example", 0, LUAR_BREAKER_FAILURE, 5),
                 LUAR_BREAKER_CLOSED);
    fail_n(reg, "b.example", &s, 1, 5);
    fail_n(reg, "d.example", &s, 1, 5);
    /* every breaker is open now: a new host is refused, not tracked */
    CHECK_EQ_INT(luar_breaker_allow(reg, "e.example", &s, 6, &tok), LUAR_ETOOBIG);
    CHECK_EQ_INT(luar_breaker_count(reg), 3);
    luar_breaker_registry_free(reg);
    luar_metrics_reset();
}

TEST(test_breaker_rejects_bad_input)
{
    luar_breaker_registry_t *reg = luar_breaker_registry_new(4);
    uint64_t tok;
    luar_breaker_settings_t bad = settings(0, 10);
    CHECK_EQ_INT(luar_breaker_allow(reg, "h", &bad, 0, &tok), LUAR_EINVAL);
    bad = settings(1, 0);
    CHECK_EQ_INT(luar_breaker_allow(reg, "h", &bad, 0, &tok), LUAR_EINVAL);
    CHECK_EQ_INT(luar_breaker_allow(reg, "", NULL, 0, &tok), LUAR_EINVAL);
    CHECK_EQ_INT(luar_breaker_allow(reg, NULL, NULL, 0, &tok), LUAR_EINVAL);
    char longhost[LUAR_BREAKER_HOST_MAX + 2];
    memset(longhost, 'x', sizeof longhost - 1);
    longhost[sizeof longhost - 1] = '\0';
    CHECK_EQ_INT(luar_breaker_allow(reg, longhost, NULL, 0, &tok), LUAR_EINVAL);
    longhost[LUAR_BREAKER_HOST_MAX] = '\0';
    CHECK_EQ_INT(luar_breaker_allow(reg, longhost, NULL, 0, &tok), 1);
    CHECK_EQ_INT(luar_breaker_state(reg, "unknown"), LUAR_BREAKER_CLOSED);
    CHECK(luar_breaker_retry_in(reg, "unknown", 0) == 0);
    luar_breaker_registry_free(reg);
    luar_breaker_registry_free(NULL);
    luar_metrics_reset();
}

int main(void)
{
    RUN(test_breaker_defaults);
    RUN(test_breaker_opens_after_consecutive_failures_only);
    RUN(test_breaker_half_open_single_probe_then_close);
    RUN(test_breaker_probe_failure_reopens_for_reset);
    RUN(test_breaker_neutral_or_lost_probe_frees_the_slot);
    RUN(test_breaker_outcome_classification);
    RUN(test_breaker_registry_evicts_lru_closed_only);
    RUN(test_breaker_rejects_bad_input);
    return DONE();
}
