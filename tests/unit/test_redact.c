/*
 * Redaction of watched secret values (host/secrets/redact.c) and where it is applied: log
 * lines (host/log) and metric label values (host/metrics).
 */
#include "common/buf.h"
#include "common/error.h"
#include "log/log.h"
#include "metrics/metrics.h"
#include "secrets/redact.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The log lines written during a test, captured by the log hook. */
static luar_buf_t captured;
static int captured_lines;

static int capture(void *ud, int level, const char *line, size_t len)
{
    (void)ud;
    (void)level;
    luar_buf_append(&captured, line, len);
    luar_buf_putc(&captured, '\n');
    captured_lines++;
    return 1;
}

static void start_capture(void)
{
    luar_buf_reset(&captured);
    captured_lines = 0;
    luar_log_set_level(LUAR_LOG_DEBUG);
    luar_log_set_hook(capture, NULL);
}

static const char *scrubbed(luar_buf_t *b, const char *s)
{
    luar_buf_reset(b);
    CHECK(luar_secret_scrub(b, s, strlen(s)) >= 0);
    return b->data;
}

TEST(test_redact_nothing_watched_changes_nothing)
{
    luar_buf_t b;
    luar_buf_init(&b, 0);
    size_t m;
    CHECK_EQ_INT(luar_secret_watching(), 0);
    CHECK_EQ_INT(luar_secret_find("anything at all", 15, &m), 15);
    CHECK_EQ_STR(scrubbed(&b, "anything at all"), "anything at all");
    CHECK_EQ_STR(scrubbed(&b, ""), "");
    luar_buf_free(&b);
}

TEST(test_redact_replaces_every_occurrence)
{
    luar_buf_t b;
    luar_buf_init(&b, 0);
    CHECK_EQ_INT(luar_secret_watch("test", "sk_live_123456", 14), 0);
    CHECK_EQ_INT(luar_secret_watch("test", "sk_live_123456", 14), 0); /* idempotent */
    CHECK_EQ_INT(luar_secret_watching(), 1);
    CHECK_EQ_STR(scrubbed(&b, "key=sk_live_123456"), "key=[REDACTED]");
    CHECK_EQ_STR(scrubbed(&b, "sk_live_123456sk_live_123456 and sk_live_123456."),
                 "[REDACTED][REDACTED] and [REDACTED].");
    CHECK_EQ_STR(scrubbed(&b, "sk_live_12345 is not it"), "sk_live_12345 is not it");
    luar_buf_reset(&b);
    CHECK_EQ_INT(luar_secret_scrub(&b, "a sk_live_123456 b sk_live_123456", 33), 2);
    luar_buf_t tmp;
    luar_buf_init(&tmp, 0);
    const char *clean = "nothing here";
    CHECK(luar_secret_clean(clean, &tmp) == clean);
    CHECK_EQ_STR(luar_secret_clean("x sk_live_123456", &tmp), "x [REDACTED]");
    luar_buf_free(&tmp);
    luar_buf_free(&b);
    luar_secret_unwatch_all();
}

/* The scan is strided: every start offset and every distance from the end must match. */
TEST(test_redact_finds_values_at_every_offset_and_length)
{
    luar_buf_t b;
    luar_buf_init(&b, 0);
    const char *alphabet = "QWERTYUIOPASDFGHJKLZ";
    for (size_t vlen = LUAR_SECRET_MIN_LEN; vlen <= 14; vlen++) {
        char value[32];
        memcpy(value, alphabet, vlen);
        luar_secret_watch(NULL, value, vlen);
        for (size_t before = 0; before < 8; before++) {
            for (size_t after = 0; after < 5; after++) {
                char text[64], want[64];
                memset(text, '.', before);
                memcpy(text + before, value, vlen);
                memset(text + before + vlen, ',', after);
                text[before + vlen + after] = '\0';
                snprintf(want, sizeof want, "%.*s[REDACTED]%.*s", (int)before, "........",
                         (int)after, ",,,,,");
                CHECK_EQ_STR(scrubbed(&b, text), want);
            }
        }
        luar_secret_unwatch_all();
    }
    /* Two values side by side, and overlapping candidates at one probe. */
    luar_secret_watch(NULL, "xxABCDEF", 8);
    luar_secret_watch(NULL, "ABCDEFGH", 8);
    CHECK_EQ_STR(scrubbed(&b, "xxABCDEFGH"), "[REDACTED]GH");
    CHECK_EQ_STR(scrubbed(&b, "-ABCDEFGHxxABCDEF"), "-[REDACTED][REDACTED]");
    luar_buf_free(&b);
    luar_secret_unwatch_all();
}

TEST(test_redact_longest_value_at_a_position_wins)
{
    luar_buf_t b;
    luar_buf_init(&b, 0);
    luar_secret_watch(NULL, "abcdef", 6);
    luar_secret_watch(NULL, "abcdefghij", 10);
    luar_secret_watch(NULL, "abcdxyz1", 8);
    CHECK_EQ_STR(scrubbed(&b, "<abcdefghij>"), "<[REDACTED]>");
    CHECK_EQ_STR(scrubbed(&b, "<abcdefgh>"), "<[REDACTED]gh>");
    CHECK_EQ_STR(scrubbed(&b, "<abcdxyz1>"), "<[REDACTED]>");
    CHECK_EQ_STR(scrubbed(&b, "abcde"), "abcde");
    luar_buf_free(&b);
    luar_secret_unwatch_all();
}

TEST(test_redact_short_values_are_refused_with_one_warning)
{
    start_capture();
    CHECK_EQ_INT(luar_secret_watch("secret PIN", "12345", 5), LUAR_EINVAL);
    CHECK_EQ_INT(luar_secret_watch("secret OTHER", "abc", 3), LUAR_EINVAL);
    CHECK_EQ_INT(luar_secret_watch("secret EMPTY", "", 0), 0);
    CHECK_EQ_INT(luar_secret_watching(), 0);
    CHECK_EQ_INT(captured_lines, 1);
    CHECK(strstr(captured.data, "secret PIN is shorter than 6 bytes") != NULL);
    CHECK(strstr(captured.data, "12345") == NULL);
    luar_log_set_hook(NULL, NULL);
}

/* A value containing JSON's special characters, as luar and lua-cjson escape it. */
TEST(test_redact_catches_json_escaped_spellings_in_log_lines)
{
    const char *secret = "pa\"ss/wo\\rd\n!";
    luar_secret_watch("test", secret, strlen(secret));
    start_capture();
    luar_buf_t fields;
    luar_buf_init(&fields, 0);
    luar_buf_puts(&fields, "\"luar_escaped\":");
    luar_buf_append_json_string(&fields, secret, strlen(secret));
    /* lua-cjson writes '/' as "\/". */
    luar_buf_puts(&fields, ",\"cjson_escaped\":\"pa\\\"ss\\/wo\\\\rd\\n!\"");
    luar_log_write(LUAR_LOG_INFO, secret, strlen(secret), fields.data, fields.len);
    CHECK(strstr(captured.data, "ss/wo") == NULL && strstr(captured.data, "ss\\/wo") == NULL);
    CHECK(strstr(captured.data, "\"msg\":\"[REDACTED]\"") != NULL);
    CHECK(strstr(captured.data, "\"luar_escaped\":\"[REDACTED]\"") != NULL);
    CHECK(strstr(captured.data, "\"cjson_escaped\":\"[REDACTED]\"") != NULL);
    luar_buf_free(&fields);
    luar_log_set_hook(NULL, NULL);
    luar_secret_unwatch_all();
}

TEST(test_redact_log_lines_through_logf_and_fields)
{
    luar_secret_watch("test", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 38);
    start_capture();
    luar_logf(LUAR_LOG_WARN, "verifying with %s failed", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    const char *f = "\"secret\":\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\",\"n\":1";
    luar_log_write(LUAR_LOG_INFO, "m", 1, f, strlen(f));
    CHECK_EQ_INT(captured_lines, 2);
    CHECK(strstr(captured.data, "MfKQ9r8G") == NULL);
    CHECK(strstr(captured.data, "verifying with [REDACTED] failed") != NULL);
    CHECK(strstr(captured.data, "\"secret\":\"[REDACTED]\",\"n\":1") != NULL);
    luar_log_set_hook(NULL, NULL);
    luar_secret_unwatch_all();
}

/* A message longer than the log's 64 KiB cut, with a secret across the cut. */
TEST(test_redact_a_cut_message_cannot_keep_half_a_secret)
{
    const char *secret = "CUTSECRET-0123456789";
    luar_secret_watch("test", secret, strlen(secret));
    start_capture();
    size_t n = 64 * 1024 + 100;
    char *msg = malloc(n + 1);
    memset(msg, 'a', n);
    memcpy(msg + 64 * 1024 - 8, secret, strlen(secret)); /* straddles byte 65536 */
    msg[n] = '\0';
    luar_log_write(LUAR_LOG_INFO, msg, n, NULL, 0);
    CHECK(strstr(captured.data, "CUTSECRE") == NULL);
    CHECK(strstr(captured.data, "aaaa[REDACT") != NULL); /* the marker itself may be cut */
    free(msg);
    luar_log_set_hook(NULL, NULL);
    luar_secret_unwatch_all();
}

TEST(test_redact_metric_label_values)
{
    luar_metric_t *m = NULL;
    static const char *const labels[] = {"key"};
    CHECK_EQ_INT(luar_metrics_register(LUAR_METRIC_COUNTER, "redact_test_total", "t", labels, 1,
                                       NULL, 0, &m, NULL),
                 0);
    const char *before[] = {"token-abcdef-123"};
    CHECK_EQ_INT(luar_metric_add(m, before, 1), 0); /* made before the value is a secret */
    luar_secret_watch("test", "abcdef-123", 10);
    luar_secret_watch("test", "api-key-zyx987", 14);
    const char *after[] = {"api-key-zyx987"};
    CHECK_EQ_INT(luar_metric_add(m, after, 2), 0);
    CHECK_EQ_INT(luar_metric_add(m, after, 3), 0);
    luar_buf_t out;
    luar_buf_init(&out, 0);
    CHECK_EQ_INT(luar_metrics_render(&out), 0);
    CHECK(strstr(out.data, "zyx987") == NULL && strstr(out.data, "abcdef-123") == NULL);
    CHECK(strstr(out.data, "redact_test_total{key=\"token-[REDACTED]\"} 1") != NULL);
    CHECK(strstr(out.data, "redact_test_total{key=\"[REDACTED]\"} 5") != NULL);
    luar_buf_free(&out);
    luar_metrics_reset();
    luar_secret_unwatch_all();
}

static int discard(void *ud, int level, const char *line, size_t len)
{
    (void)ud;
    (void)level;
    (void)line;
    (void)len;
    return 1;
}

/* Average ns of luar_log_write for one line (its fields are the bytes of `fields`). */
static double time_log_lines(const char *fields, size_t len)
{
    struct timespec t0, t1;
    int rounds = 100000;
    luar_log_set_hook(discard, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < rounds; i++)
        luar_log_write(LUAR_LOG_INFO, "request", 7, fields + 1, len - 2);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    luar_log_set_hook(NULL, NULL);
    return ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / rounds;
}

/* Not a pass/fail bound beyond "not absurd": prints the cost for the record. */
TEST(test_redact_cost_of_a_typical_log_line)
{
    const char *line =
        "{\"ts\":\"2026-01-02T03:04:05.678Z\",\"level\":\"info\",\"msg\":\"request\","
        "\"method\":\"POST\",\"path\":\"/hooks/stripe\",\"status\":200,\"ms\":0.84,"
        "\"request_id\":\"6f1c0a8e2b7d4f39-000000000000002a\",\"remote\":\"10.0.0.7\"}";
    size_t len = strlen(line), m;
    for (int i = 0; i < 100; i++) {
        char v[40];
        snprintf(v, sizeof v, "sk_live_%08dQwErTy%04d", i * 7919, i);
        luar_secret_watch(NULL, v, strlen(v));
    }
    struct timespec t0, t1;
    size_t hits = 0;
    int rounds = 200000;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < rounds; i++)
        hits += luar_secret_find(line, len, &m) < len;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ns =
        ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / rounds;
    printf("redaction pre-check: %.0f ns for a %zu-byte line with 100 watched values\n", ns, len);
    CHECK_EQ_INT(hits, 0);
    CHECK(ns < 20000);
    /* For scale: a whole log line (format + scrub check) with and without watched values. */
    double with = time_log_lines(line, len);
    luar_secret_unwatch_all();
    double without = time_log_lines(line, len);
    printf("luar_log_write of that line: %.0f ns with 100 watched values, %.0f ns with none\n",
           with, without);
}

int main(void)
{
    luar_buf_init(&captured, 0);
    RUN(test_redact_nothing_watched_changes_nothing);
    RUN(test_redact_replaces_every_occurrence);
    RUN(test_redact_finds_values_at_every_offset_and_length);
    RUN(test_redact_longest_value_at_a_position_wins);
    RUN(test_redact_short_values_are_refused_with_one_warning);
    RUN(test_redact_catches_json_escaped_spellings_in_log_lines);
    RUN(test_redact_log_lines_through_logf_and_fields);
    RUN(test_redact_a_cut_message_cannot_keep_half_a_secret);
    RUN(test_redact_metric_label_values);
    RUN(test_redact_cost_of_a_typical_log_line);
    luar_buf_free(&captured);
    luar_log_close();
    return DONE();
}
