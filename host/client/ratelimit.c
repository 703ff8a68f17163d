/*
 * Token bucket with reservations: a negative balance is the queue of callers already
 * promised a token, each one 1/rate seconds after the previous.
 */
#include "client/ratelimit.h"

#include "common/error.h"
#include "common/units.h"

#include <math.h>

int luar_tokenbucket_init(luar_tokenbucket_t *b, double rate_per_sec, double burst)
{
    if (!(rate_per_sec > 0) || !(burst >= 1) || !isfinite(rate_per_sec) || !isfinite(burst))
        return LUAR_EINVAL;
    b->rate = rate_per_sec;
    b->burst = burst;
    b->tokens = burst;
    b->last = -1;
    b->max_wait = LUAR_TOKENBUCKET_DEFAULT_MAX_WAIT;
    return 0;
}

int luar_tokenbucket_init_rate(luar_tokenbucket_t *b, const char *rate)
{
    double per_second, burst;
    if (luar_parse_rate(rate, &per_second, &burst) < 0)
        return LUAR_EINVAL;
    return luar_tokenbucket_init(b, per_second, burst);
}

static void refill(luar_tokenbucket_t *b, double now)
{
    if (b->last < 0) {
        b->last = now;
        return;
    }
    if (now <= b->last)
        return;
    b->tokens += (now - b->last) * b->rate;
    if (b->tokens > b->burst)
        b->tokens = b->burst;
    b->last = now;
}

/* The wait for the next token given the current balance. */
static double wait_for_next(const luar_tokenbucket_t *b)
{
    return b->tokens >= 1 ? 0 : (1 - b->tokens) / b->rate;
}

double luar_tokenbucket_reserve(luar_tokenbucket_t *b, double now)
{
    refill(b, now);
    double wait = wait_for_next(b);
    if (b->max_wait >= 0 && wait > b->max_wait)
        return LUAR_TOKENBUCKET_REFUSED;
    b->tokens -= 1;
    return wait;
}

double luar_tokenbucket_peek(luar_tokenbucket_t *b, double now)
{
    refill(b, now);
    return wait_for_next(b);
}

void luar_tokenbucket_cancel(luar_tokenbucket_t *b, double now)
{
    refill(b, now);
    b->tokens += 1;
    if (b->tokens > b->burst)
        b->tokens = b->burst;
}
