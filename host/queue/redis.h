/*
 * The Redis queue backend (redis.c, redis_queue.lua): what tests and diagnostics may see.
 */
#ifndef LUAR_QUEUE_REDIS_H
#define LUAR_QUEUE_REDIS_H

#include "queue/backend.h"
#include "redis/conn.h"

/* The Redis backend (redis.c). */
extern const luar_queue_backend_t luar_queue_redis_backend;

/* The connection of a Redis-backed queue (for its counters), or NULL for another backend. */
luar_redis_t *luar_queue_redis_conn(luar_queue_t *q);

#endif
