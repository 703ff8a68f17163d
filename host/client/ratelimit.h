/*
 * The client-side rate limiter of the outbound HTTP client (SPEC §4, §8): a token bucket per
 * client. "N/period" allows a burst of N and refills continuously at N per period. Callers
 * reserve a token and are told how long to wait for it, so concurrent callers queue in
 * arrival order; a caller whose wait would exceed `max_wait` is refused without consuming
 * anything (err.kind = "rate_limited"). Pure arithmetic: no clock, no I/O; `now` is in
 * seconds. Not thread-safe: loop thread only.
 */
#ifndef LUAR_CLIENT_RATELIMIT_H
#define LUAR_CLIENT_RATELIMIT_H

#define LUAR_TOKENBUCKET_DEFAULT_MAX_WAIT 30.0
/* Returned by luar_tokenbucket_reserve() when the wait would exceed max_wait. */
#define LUAR_TOKENBUCKET_REFUSED (-1.0)

/*
 * A token bucket. The fields are the bucket's state; read them, change only max_wait.
 * `tokens` goes negative while callers are queued: -k means k reservations wait.
 */
typedef struct luar_tokenbucket {
    double rate;     /* tokens per second */
    double burst;    /* capacity */
    double tokens;   /* available now (as of `last`); may be negative */
    double last;     /* time of the last refill; negative before the first reserve */
    double max_wait; /* longest wait granted, seconds; negative = unlimited */
} luar_tokenbucket_t;

/*
 * Initialises a full bucket refilling at `rate_per_sec` (> 0) up to `burst` (>= 1), with the
 * default max_wait of 30 s. Returns 0 or LUAR_EINVAL (the bucket is then untouched).
 */
int luar_tokenbucket_init(luar_tokenbucket_t *b, double rate_per_sec, double burst);

/*
 * Initialises a bucket from a rate string ("10/s", "5000/h", "0.5/s") through
 * luar_parse_rate. Returns 0 or LUAR_EINVAL. The caller keeps `rate`.
 */
int luar_tokenbucket_init_rate(luar_tokenbucket_t *b, const char *rate);

/*
 * Reserves one token at `now`. Returns the seconds the caller must wait before sending (0:
 * send now), the token being consumed already so later callers queue behind it; or
 * LUAR_TOKENBUCKET_REFUSED (negative) when that wait would exceed max_wait, nothing being
 * consumed. Times earlier than a previous call are treated as that call's time.
 */
double luar_tokenbucket_reserve(luar_tokenbucket_t *b, double now);

/*
 * Returns the wait a reservation at `now` would get, without reserving (for err.retry_after
 * after a refusal). Does not change the bucket's accounting beyond refilling it.
 */
double luar_tokenbucket_peek(luar_tokenbucket_t *b, double now);

/*
 * Gives back the token of a reservation whose caller gave up (canceled, timed out while
 * waiting), so the next caller can use it. The bucket never exceeds its burst.
 */
void luar_tokenbucket_cancel(luar_tokenbucket_t *b, double now);

#endif
