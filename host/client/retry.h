/*
 * The retry policy of the outbound HTTP client (SPEC §4, §8): which failed attempts are
 * tried again and after how long. Pure computation: no I/O, no clock; the caller passes
 * `now` (seconds since the Unix epoch, as a double) and the random source is injectable so
 * tests are deterministic.
 */
#ifndef LUAR_CLIENT_RETRY_H
#define LUAR_CLIENT_RETRY_H

#include <stddef.h>

#define LUAR_RETRY_MAX_STATUSES 16

#define LUAR_RETRY_DEFAULT_ATTEMPTS 3
#define LUAR_RETRY_DEFAULT_BACKOFF 0.5
#define LUAR_RETRY_DEFAULT_BACKOFF_CAP 30.0
#define LUAR_RETRY_DEFAULT_MAX_RETRY_AFTER 60.0

/*
 * A source of uniform random numbers in [0, 1). `ctx` is the policy's random_ctx. Used for
 * the full jitter of the backoff.
 */
typedef double (*luar_retry_random_fn)(void *ctx);

/*
 * A retry policy. Initialise with luar_retry_policy_init() and change fields as needed; the
 * policy holds no pointers it owns, so it can be copied by value.
 */
typedef struct luar_retry_policy {
    int attempts;                          /* every attempt, the first included; 1 = never retry */
    double backoff;                        /* base of the exponential backoff, seconds */
    double backoff_cap;                    /* the jitter window never exceeds this, seconds */
    int statuses[LUAR_RETRY_MAX_STATUSES]; /* HTTP statuses that are retried */
    size_t nstatuses;
    int on_transport_error;      /* retry error kinds "connect" and "timeout" */
    double max_retry_after;      /* longest Retry-After honoured; longer means give up */
    luar_retry_random_fn random; /* NULL: an internal generator seeded from OpenSSL */
    void *random_ctx;
} luar_retry_policy_t;

/*
 * Fills `p` with the defaults: 3 attempts, backoff 0.5 s capped at 30 s, statuses 429, 500,
 * 502, 503 and 504, transport errors retried, Retry-After honoured up to 60 s, internal
 * random source.
 */
void luar_retry_policy_init(luar_retry_policy_t *p);

/*
 * Replaces the statuses retried by `n` entries of `statuses`. Returns 0, or LUAR_EINVAL when
 * n exceeds LUAR_RETRY_MAX_STATUSES or a status is outside 100..599 (the policy is then
 * unchanged). The caller keeps `statuses`.
 */
int luar_retry_policy_set_statuses(luar_retry_policy_t *p, const int *statuses, size_t n);

/*
 * Returns 1 when `method` (compared case-insensitively) is idempotent per RFC 7231: GET, HEAD,
 * OPTIONS, PUT, DELETE, TRACE. 0 otherwise, including NULL.
 */
int luar_retry_method_idempotent(const char *method);

/*
 * Parses a Retry-After header value: delay-seconds (digits only) or an HTTP-date in the
 * IMF-fixdate form ("Sun, 06 Nov 1994 08:49:37 GMT"), the obsolete RFC 850 form
 * ("Sunday, 06-Nov-94 08:49:37 GMT"; two-digit years below 70 are 20xx) or the asctime form
 * ("Sun Nov  6 08:49:37 1994"). Surrounding spaces and tabs are ignored. Stores in `*seconds`
 * the delay from `now` (a date in the past gives 0). Returns 0, or LUAR_EPARSE for anything
 * else (then `*seconds` is untouched). The caller keeps `header`.
 */
int luar_retry_after_parse(const char *header, double now, double *seconds);

/*
 * Decides whether the attempt numbered `attempt` (1 for the first) is tried again, given
 * its outcome: an HTTP status (`status_or_0`), or a transport failure named by
 * `error_kind_or_NULL` (the err.kind strings of SPEC §4: "connect", "timeout", "tls" …).
 * A retry needs all of: attempt < p->attempts; the method idempotent, or
 * `has_idempotency_key`; the status in p->statuses, or (status 0) the error kind "connect" or
 * "timeout" with p->on_transport_error set. The delay is then the Retry-After value when
 * `retry_after_header_or_NULL` parses (only consulted for a status), and a Retry-After above
 * p->max_retry_after means no retry; otherwise full jitter:
 * uniform(0, min(backoff_cap, backoff * 2^(attempt-1))). An unparsable Retry-After is
 * ignored (the backoff applies).
 * Returns 1 with the delay in seconds in `*delay_out`, or 0 (then `*delay_out` is 0).
 * `delay_out` may be NULL. The caller keeps every string.
 */
int luar_retry_should(const luar_retry_policy_t *p, const char *method, int has_idempotency_key,
                      int attempt, int status_or_0, const char *error_kind_or_NULL,
                      const char *retry_after_header_or_NULL, double now, double *delay_out);

#endif
