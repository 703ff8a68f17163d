/*
 * The one rate-limit wait of the Lua side: luar.ratelimit.check (mod_ratelimit.c) and the
 * `rate` option of routes (route_guard.c) both yield on luar_queue_rate_check through it.
 */
#ifndef LUAR_MOD_RATELIMIT_H
#define LUAR_MOD_RATELIMIT_H

#include "lua/bridge.h"
#include "ratelimit/gcra.h"

#include <lua.h>

/* What a push function finds in the op (luar_ratelimit_wait_of). */
typedef struct luar_ratelimit_wait {
    int rc;                    /* 0, or the backend's LUAR_E code */
    luar_gcra_result_t result; /* when rc == 0 */
    const void *udata;         /* the caller's, as given to luar_ratelimit_yield */
} luar_ratelimit_wait_t;

/*
 * Checks `limit` (cost units) for backend key `key` (luar_ratelimit_key) on the process's
 * queue backend and yields; `push` then supplies the Lua results, reading the outcome from
 * luar_ratelimit_wait_of(op). With no backend (a command without a queue) or a check the
 * backend refuses at once, push sees that rc. `what` is a string literal naming the call
 * for messages. Use as `return luar_ratelimit_yield(...)`. Raises where a coroutine cannot
 * wait (see luar_bridge_op_new).
 */
int luar_ratelimit_yield(lua_State *L, const char *what, const char *key, const luar_gcra_t *limit,
                         int64_t cost, const void *udata, luar_bridge_push_fn push);

/* The outcome of the wait `op` started by luar_ratelimit_yield. */
luar_ratelimit_wait_t *luar_ratelimit_wait_of(luar_bridge_op_t *op);

#endif
