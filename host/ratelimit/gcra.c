/*
 * GCRA arithmetic (see gcra.h). Written after the formulation of the ATM Forum's Traffic
 * Management specification ("virtual scheduling") as rate limiters such as redis-cell and
 * throttled use it: one TAT per key, no counters, no windows to align.
 */
#include "ratelimit/gcra.h"
#include "common/error.h"
#include "common/units.h"

#include <math.h>

/* A year: longer intervals are a typo, not a limit ("1/d" is the slowest period). */
#define MAX_INTERVAL_NS (INT64_C(366) * 86400 * LUAR_NS_PER_SEC)
/* Beyond this the products below could overflow; nobody means a burst of 10^9. */
#define MAX_BURST INT64_C(1000000000)

int luar_gcra_init(luar_gcra_t *g, double per_second, double burst)
{
    if (!isfinite(per_second) || !isfinite(burst) || per_second <= 0)
        return LUAR_EINVAL;
    double interval = 1e9 / per_second;
    if (!(interval >= 1) || interval > (double)MAX_INTERVAL_NS)
        return LUAR_EINVAL;
    double n = floor(burst);
    if (n < 1)
        n = 1;
    if (n > (double)MAX_BURST)
        return LUAR_EINVAL;
    g->interval_ns = llround(interval);
    g->burst = (int64_t)n;
    return 0;
}

int luar_gcra_parse(luar_gcra_t *g, const char *limit)
{
    double per_second, burst;
    if (luar_parse_rate(limit, &per_second, &burst))
        return LUAR_EINVAL;
    return luar_gcra_init(g, per_second, burst);
}

void luar_gcra_check(const luar_gcra_t *g, int64_t tat_ns, int64_t now_ns, int64_t cost,
                     luar_gcra_result_t *out)
{
    int64_t tolerance = g->burst * g->interval_ns; /* how far the TAT may run ahead of now */
    if (cost < 1)
        cost = 1;
    if (cost > g->burst)
        cost = g->burst;
    int64_t tat = tat_ns;
    int pulled_back = 0;
    if (tat < now_ns)
        tat = now_ns; /* idle since: the bucket is full */
    if (tat > now_ns + tolerance) {
        tat = now_ns + tolerance; /* a clock that went back: no deeper than an empty bucket */
        pulled_back = 1;
    }
    int64_t new_tat = tat + cost * g->interval_ns;
    int64_t allow_at = new_tat - tolerance; /* the earliest time this request fits */
    if (now_ns < allow_at) {
        out->allowed = 0;
        out->store = pulled_back;
        out->tat_ns = tat;
        out->retry_after_ns = allow_at - now_ns;
        out->reset_after_ns = tat - now_ns;
        out->remaining = 0;
        return;
    }
    out->allowed = 1;
    out->store = 1;
    out->tat_ns = new_tat;
    out->retry_after_ns = 0;
    out->reset_after_ns = new_tat - now_ns;
    out->remaining = (now_ns - allow_at) / g->interval_ns;
}

int64_t luar_gcra_ns(double seconds)
{
    if (!(seconds > 0))
        return 0;
    if (seconds > 9.2e9)
        return INT64_MAX / 2;
    return llround(seconds * 1e9);
}

int64_t luar_gcra_ceil_seconds(int64_t ns)
{
    if (ns <= 0)
        return 0;
    return (ns + LUAR_NS_PER_SEC - 1) / LUAR_NS_PER_SEC;
}
