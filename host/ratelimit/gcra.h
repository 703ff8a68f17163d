/*
 * The Generic Cell Rate Algorithm (GCRA), the arithmetic behind luar.ratelimit and the
 * `rate` option of routes. Pure functions: no clock, no I/O, no state of their own. A
 * backend keeps one number per key, the theoretical arrival time (TAT), and calls
 * luar_gcra_check inside its own atomic step (a SQLite write transaction, a Redis script),
 * which is what makes a limit exact across every process sharing that backend.
 *
 * A limit "N/period" (SPEC §8) allows a burst of N requests and refills continuously at N
 * per period: one request costs the emission interval T = period / N, and the TAT may run
 * ahead of now by at most N * T. Starting from a full bucket, the requests allowed in the
 * first t seconds are exactly N + floor(t / T).
 *
 * Times are integer nanoseconds (unix time for `now` and the TAT) so the counts are exact:
 * no rounding drift can let one request more through at a window's edge.
 */
#ifndef LUAR_GCRA_H
#define LUAR_GCRA_H

#include <stdint.h>

#define LUAR_NS_PER_SEC INT64_C(1000000000)

/* A limit: the emission interval and the burst (both > 0). */
typedef struct luar_gcra {
    int64_t interval_ns; /* T: what one request costs, period / N */
    int64_t burst;       /* requests allowed at once: N rounded down, at least 1 */
} luar_gcra_t;

/* The outcome of one check. */
typedef struct luar_gcra_result {
    int allowed;
    int store;              /* the backend must write tat_ns: allowed, or a TAT pulled back */
    int64_t tat_ns;         /* the key's TAT after this check */
    int64_t retry_after_ns; /* refused: wait until the same request fits; 0 when allowed */
    int64_t reset_after_ns; /* how long until the bucket is full again */
    int64_t remaining;      /* requests (of cost 1) that would still be allowed right now */
} luar_gcra_result_t;

/*
 * Sets `g` for `per_second` requests a second with a burst of `burst` (as luar_parse_rate
 * returns them; the burst is rounded down, at least 1). Returns 0 or LUAR_EINVAL when the
 * interval would be under a nanosecond or over a year, or the numbers are not finite.
 */
int luar_gcra_init(luar_gcra_t *g, double per_second, double burst);

/* Sets `g` from "N/s", "N/m", "N/h" or "N/d" (luar_parse_rate). Returns 0 or LUAR_EINVAL. */
int luar_gcra_parse(luar_gcra_t *g, const char *limit);

/*
 * Checks a request of `cost` units (1 <= cost <= g->burst; a larger cost is clamped to the
 * burst) arriving at `now_ns`, against the stored TAT `tat_ns` (0 when the key has no state).
 * A TAT more than one bucket ahead of now (the clock went back, or another host's clock
 * runs ahead) is pulled back to an empty bucket and stored so (out->store), so a clock step
 * costs at most one interval of waiting, not the size of the step; it forgives at most the
 * step itself. A refusal otherwise changes nothing and needs no write.
 */
void luar_gcra_check(const luar_gcra_t *g, int64_t tat_ns, int64_t now_ns, int64_t cost,
                     luar_gcra_result_t *out);

/* Unix seconds (a double, as the queue's clock gives them) to nanoseconds. */
int64_t luar_gcra_ns(double seconds);

/* Nanoseconds to whole seconds, rounded up (a Retry-After value). */
int64_t luar_gcra_ceil_seconds(int64_t ns);

#endif
