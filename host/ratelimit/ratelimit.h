/*
 * What luar.ratelimit and the route guards (lua/route_guard.c) share above the queue's
 * luar_queue_rate_check: the key a limit is stored under, and the rejection counter.
 */
#ifndef LUAR_RATELIMIT_H
#define LUAR_RATELIMIT_H

#include "ratelimit/gcra.h"

#include <stddef.h>

#define LUAR_RATELIMIT_KEY_SIZE 65 /* hex SHA-256 and a NUL */

/*
 * Writes into `out` the backend key of `key` (key_len bytes, any bytes) limited by `limit`
 * in `scope` (a NUL-terminated namespace: "lua" for luar.ratelimit.check, "route:<name>"
 * for a route), as hex SHA-256. Hashed because the key is often a client's IP address or
 * API key, which have no business in the database; the limit is part of it so one key
 * under two limits ("10/m" and "1000/d") keeps two states, and changing a limit starts it
 * afresh. Thread-safe.
 */
void luar_ratelimit_key(const char *scope, const char *key, size_t key_len,
                        const luar_gcra_t *limit, char out[LUAR_RATELIMIT_KEY_SIZE]);

/*
 * Counts one refused request in luar_ratelimit_rejected_total{key=`name`}. `name` is the
 * limit's name (a route pattern by default), never a client's address or header value:
 * those would make one series per client. Loop thread only.
 */
void luar_ratelimit_count_rejected(const char *name);

/* Registers luar_ratelimit_rejected_total, so it is listed before the first refusal. */
void luar_ratelimit_metrics_init(void);

#endif
