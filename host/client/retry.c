/*
 * Retry decisions of the outbound HTTP client: idempotency, retryable outcomes, exponential
 * backoff with full jitter, and Retry-After in its three HTTP-date forms.
 */
#include "client/retry.h"
#include "sched/tz.h"

#include "common/error.h"
#include "crypto/crypto.h"

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

/* Longest header value looked at; real Retry-After values are under 40 bytes. */
#define RETRY_AFTER_MAX_LEN 128

void luar_retry_policy_init(luar_retry_policy_t *p)
{
    static const int defaults[] = {429, 500, 502, 503, 504};
    memset(p, 0, sizeof *p);
    p->attempts = LUAR_RETRY_DEFAULT_ATTEMPTS;
    p->backoff = LUAR_RETRY_DEFAULT_BACKOFF;
    p->backoff_cap = LUAR_RETRY_DEFAULT_BACKOFF_CAP;
    memcpy(p->statuses, defaults, sizeof defaults);
    p->nstatuses = sizeof defaults / sizeof defaults[0];
    p->on_transport_error = 1;
    p->max_retry_after = LUAR_RETRY_DEFAULT_MAX_RETRY_AFTER;
}

int luar_retry_policy_set_statuses(luar_retry_policy_t *p, const int *statuses, size_t n)
{
    if (n > LUAR_RETRY_MAX_STATUSES)
        return LUAR_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (statuses[i] < 100 || statuses[i] > 599)
            return LUAR_EINVAL;
    for (size_t i = 0; i < n; i++)
        p->statuses[i] = statuses[i];
    p->nstatuses = n;
    return 0;
}

int luar_retry_method_idempotent(const char *method)
{
    static const char *const idempotent[] = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"};
    if (method == NULL)
        return 0;
    for (size_t i = 0; i < sizeof idempotent / sizeof idempotent[0]; i++)
        if (strcasecmp(method, idempotent[i]) == 0)
            return 1;
    return 0;
}


static int days_in_month(int y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

/* Reads exactly `n` digits at *s into *out and advances. Returns 0 or -1. */
static int digits(const char **s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char ch = (*s)[i];
        if (ch < '0' || ch > '9')
            return -1;
        v = v * 10 + (ch - '0');
    }
    *s += n;
    *out = v;
    return 0;
}

static int expect(const char **s, const char *lit)
{
    size_t n = strlen(lit);
    if (strncmp(*s, lit, n) != 0)
        return -1;
    *s += n;
    return 0;
}

/* Reads a three-letter month name (case-sensitive, as RFC 7231 writes them) into 1..12. */
static int month(const char **s, int *out)
{
    static const char names[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    for (int i = 0; i < 12; i++) {
        if (strncmp(*s, names + 3 * i, 3) == 0) {
            *s += 3;
            *out = i + 1;
            return 0;
        }
    }
    return -1;
}

/* Reads a weekday name, short ("Sun") or long ("Sunday") as asked. */
static int weekday(const char **s, int long_form)
{
    static const char *const names[] = {"Monday", "Tuesday",  "Wednesday", "Thursday",
                                        "Friday", "Saturday", "Sunday"};
    for (int i = 0; i < 7; i++) {
        size_t n = long_form ? strlen(names[i]) : 3;
        if (strncmp(*s, names[i], n) == 0) {
            *s += n;
            return 0;
        }
    }
    return -1;
}

/* "HH:MM:SS" */
static int clock_time(const char **s, int *h, int *mi, int *sec)
{
    if (digits(s, 2, h) < 0 || expect(s, ":") < 0 || digits(s, 2, mi) < 0 || expect(s, ":") < 0 ||
        digits(s, 2, sec) < 0)
        return -1;
    return *h <= 23 && *mi <= 59 && *sec <= 60 ? 0 : -1;
}

/* Parses one of the three HTTP-date forms spanning exactly [s, end). Returns 0 or -1. */
static int http_date(const char *s, const char *end, double *epoch)
{
    int y, m, d, h, mi, sec;
    const char *p = s;
    if (weekday(&p, 0) < 0)
        return -1;
    if (*p == ',') {
        /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
        if (expect(&p, ", ") < 0 || digits(&p, 2, &d) < 0 || expect(&p, " ") < 0 ||
            month(&p, &m) < 0 || expect(&p, " ") < 0 || digits(&p, 4, &y) < 0 ||
            expect(&p, " ") < 0 || clock_time(&p, &h, &mi, &sec) < 0 || expect(&p, " GMT") < 0)
            return -1;
    } else if (*p == ' ') {
        /* asctime: "Sun Nov  6 08:49:37 1994" (day padded with a space) */
        p++;
        if (month(&p, &m) < 0 || expect(&p, " ") < 0)
            return -1;
        if (*p == ' ') {
            p++;
            if (digits(&p, 1, &d) < 0)
                return -1;
        } else if (digits(&p, 2, &d) < 0) {
            return -1;
        }
        if (expect(&p, " ") < 0 || clock_time(&p, &h, &mi, &sec) < 0 || expect(&p, " ") < 0 ||
            digits(&p, 4, &y) < 0)
            return -1;
    } else {
        /* RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT" */
        p = s;
        if (weekday(&p, 1) < 0 || expect(&p, ", ") < 0 || digits(&p, 2, &d) < 0 ||
            expect(&p, "-") < 0 || month(&p, &m) < 0 || expect(&p, "-") < 0 ||
            digits(&p, 2, &y) < 0 || expect(&p, " ") < 0 || clock_time(&p, &h, &mi, &sec) < 0 ||
            expect(&p, " GMT") < 0)
            return -1;
        y += y < 70 ? 2000 : 1900;
    }
    if (p != end || d < 1 || d > days_in_month(y, m))
        return -1;
    *epoch = (double)(luar_days_from_civil(y, m, d) * 86400 + h * 3600 + mi * 60 + sec);
    return 0;
}

int luar_retry_after_parse(const char *header, double now, double *seconds)
{
    if (header == NULL)
        return LUAR_EPARSE;
    size_t len = strnlen(header, RETRY_AFTER_MAX_LEN + 1);
    if (len > RETRY_AFTER_MAX_LEN)
        return LUAR_EPARSE;
    const char *s = header, *end = header + len;
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if (s == end)
        return LUAR_EPARSE;
    if (*s >= '0' && *s <= '9') {
        double v = 0;
        for (const char *p = s; p < end; p++) {
            if (*p < '0' || *p > '9')
                return LUAR_EPARSE;
            v = v * 10 + (*p - '0'); /* huge values stay huge as doubles: never retried */
        }
        *seconds = v;
        return 0;
    }
    double epoch;
    if (http_date(s, end, &epoch) < 0)
        return LUAR_EPARSE;
    *seconds = epoch > now ? epoch - now : 0;
    return 0;
}

/* The default random source: splitmix64 seeded once from OpenSSL (loop thread only). */
static double default_random(void *ctx)
{
    static uint64_t state;
    static int seeded;
    (void)ctx;
    if (!seeded) {
        if (luar_crypto_random(&state, sizeof state) < 0)
            state = (uint64_t)(uintptr_t)&state ^ 0x9e3779b97f4a7c15ULL;
        seeded = 1;
    }
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0; /* 53 bits → [0, 1) */
}

static int status_listed(const luar_retry_policy_t *p, int status)
{
    for (size_t i = 0; i < p->nstatuses && i < LUAR_RETRY_MAX_STATUSES; i++)
        if (p->statuses[i] == status)
            return 1;
    return 0;
}

int luar_retry_should(const luar_retry_policy_t *p, const char *method, int has_idempotency_key,
                      int attempt, int status_or_0, const char *error_kind_or_NULL,
                      const char *retry_after_header_or_NULL, double now, double *delay_out)
{
    double unused;
    if (delay_out == NULL)
        delay_out = &unused;
    *delay_out = 0;
    if (p == NULL || attempt < 1 || attempt >= p->attempts)
        return 0;
    if (!has_idempotency_key && !luar_retry_method_idempotent(method))
        return 0;
    if (status_or_0 != 0) {
        if (!status_listed(p, status_or_0))
            return 0;
        double ra;
        if (retry_after_header_or_NULL != NULL &&
            luar_retry_after_parse(retry_after_header_or_NULL, now, &ra) == 0) {
            if (ra > p->max_retry_after)
                return 0;
            *delay_out = ra;
            return 1;
        }
    } else {
        if (!p->on_transport_error || error_kind_or_NULL == NULL)
            return 0;
        if (strcmp(error_kind_or_NULL, "connect") != 0 &&
            strcmp(error_kind_or_NULL, "timeout") != 0)
            return 0;
    }
    /* attempt is bounded by p->attempts, but keep the exponent finite for absurd policies */
    double window = p->backoff * ldexp(1.0, attempt - 1 > 1000 ? 1000 : attempt - 1);
    if (window > p->backoff_cap)
        window = p->backoff_cap;
    if (window < 0)
        window = 0;
    double r = (p->random != NULL ? p->random : default_random)(p->random_ctx);
    if (r < 0)
        r = 0;
    if (r >= 1)
        r = 0.9999999999999999;
    *delay_out = r * window;
    return 1;
}
