/*
 * Per-host circuit breakers of the outbound HTTP client (SPEC §4, §8). A registry maps a
 * host (compared case-insensitively) to a breaker: closed → open after `failures`
 * consecutive failures → half-open once `reset` seconds have passed, letting exactly one
 * probe through at a time → closed when the probe succeeds, open again when it fails.
 * Pure bookkeeping: no I/O, no clock (callers pass `now` in seconds). Loop thread only.
 * Each state change sets the gauge luar_circuit_state{host} (0 closed, 1 half-open, 2 open).
 */
#ifndef LUAR_CLIENT_BREAKER_H
#define LUAR_CLIENT_BREAKER_H

#include <stddef.h>
#include <stdint.h>

#define LUAR_BREAKER_DEFAULT_FAILURES 5
#define LUAR_BREAKER_DEFAULT_RESET 30.0
#define LUAR_BREAKER_DEFAULT_PROBE_TIMEOUT 300.0
#define LUAR_BREAKER_DEFAULT_MAX_HOSTS 1024
#define LUAR_BREAKER_HOST_MAX 300 /* bytes of a host key ("name:port"), longer is refused */

/* Breaker states; the values are those of the luar_circuit_state gauge. */
enum {
    LUAR_BREAKER_CLOSED = 0,
    LUAR_BREAKER_HALF_OPEN = 1,
    LUAR_BREAKER_OPEN = 2,
};

/* Outcomes reported for a request the breaker allowed. */
enum {
    LUAR_BREAKER_FAILURE = 0, /* connect error, timeout or 5xx answer */
    LUAR_BREAKER_SUCCESS = 1, /* any other answer, 4xx (429 included) too */
    LUAR_BREAKER_NEUTRAL = 2, /* says nothing about the host: canceled, tls, too_large … */
};

/*
 * Settings of one breaker. failures: consecutive failures that open it (>= 1). reset:
 * seconds open before a probe is let through (> 0). probe_timeout: a probe that has not
 * reported after this many seconds is presumed lost and another one is let through.
 */
typedef struct luar_breaker_settings {
    int failures;
    double reset;
    double probe_timeout;
} luar_breaker_settings_t;

typedef struct luar_breaker_registry luar_breaker_registry_t;

/* Fills `s` with the defaults: 5 failures, reset 30 s, probe timeout 300 s. */
void luar_breaker_settings_init(luar_breaker_settings_t *s);

/*
 * Creates a registry holding at most `max_hosts` breakers (0: the default 1024). When full,
 * the least recently used closed breaker is forgotten to make room. Returns NULL when out
 * of memory. Free with luar_breaker_registry_free().
 */
luar_breaker_registry_t *luar_breaker_registry_new(size_t max_hosts);

/* Frees the registry and its breakers; the gauges keep their last values. NULL is a no-op. */
void luar_breaker_registry_free(luar_breaker_registry_t *reg);

/*
 * Asks whether a request to `host` may go out at `now`. `settings` (NULL: the defaults)
 * apply to the breaker from this call on; the caller keeps it and `host`. Creates the
 * breaker on first use. Returns 1 (allowed) or 0 (refused: err.kind = "breaker_open"), or
 * LUAR_EINVAL (empty or overlong host, bad settings), LUAR_ENOMEM, or LUAR_ETOOBIG (the
 * registry is full of breakers that are not closed; the caller may send untracked).
 * When allowed, `*token` is 0 for an ordinary request or a non-zero probe id for the one
 * half-open probe; it must be passed back to luar_breaker_report().
 */
int luar_breaker_allow(luar_breaker_registry_t *reg, const char *host,
                       const luar_breaker_settings_t *settings, double now, uint64_t *token);

/*
 * Reports the outcome (LUAR_BREAKER_FAILURE, _SUCCESS or _NEUTRAL) of a request allowed
 * with `token`. In closed state a success resets the failure count and a failure counts
 * (opening the breaker at the threshold). A probe's success closes the breaker, its failure
 * opens it again for `reset` seconds, and a neutral outcome frees the probe slot. Reports of
 * ordinary requests while the breaker is open or half-open, of stale probe tokens, and for
 * unknown hosts are ignored. Returns the state after the report (0, 1 or 2).
 */
int luar_breaker_report(luar_breaker_registry_t *reg, const char *host, uint64_t token, int outcome,
                        double now);

/*
 * Classifies an attempt's result for luar_breaker_report: a status >= 500, or error kinds
 * "connect" and "timeout", are failures; any other status is a success; other error kinds
 * (NULL included) are neutral.
 */
int luar_breaker_outcome(int status_or_0, const char *error_kind_or_NULL);

/*
 * Returns the state of `host`'s breaker (0 closed, 1 half-open, 2 open); 0 for unknown hosts.
 * An open breaker whose reset time has passed still reads 2 until the next allow.
 */
int luar_breaker_state(const luar_breaker_registry_t *reg, const char *host);

/*
 * Returns the seconds until an open breaker of `host` lets a probe through, for
 * err.retry_after: 0 when closed, unknown, or due for a probe; the reset time when half-open
 * with a probe in flight (its outcome decides).
 */
double luar_breaker_retry_in(const luar_breaker_registry_t *reg, const char *host, double now);

/* Number of breakers held (tests, admin). */
size_t luar_breaker_count(const luar_breaker_registry_t *reg);

/*
 * Closes every breaker and forgets its failures (`luar test` between specs). A probe in
 * flight then reports to a closed breaker, which its token no longer matches: ignored.
 */
void luar_breaker_registry_reset(luar_breaker_registry_t *reg);

#endif
