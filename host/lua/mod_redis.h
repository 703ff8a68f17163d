/*
 * luar.redis (SPEC §4, docs/redis.md): redis.call, publish, subscribe/psubscribe and lock.
 *
 * Which Redis: `redis = { url = … }` in the configuration, else the queue's server when the
 * queue is Redis (same host, database, credentials, TLS and prefix), else none — calls then
 * fail with err.kind "backend" saying how to configure one. A process has two connections
 * of its own (host/redis/conn.h), never the queue's: one pipelined connection for commands
 * (call, publish, locks), opened when a script first requires the module, and one in
 * subscribe mode, opened when the serving scripts declare a subscription.
 *
 * Files: mod_redis.c (the module, the command connection, replies → Lua), redis_lock.c
 * (redis.lock), redis_pubsub.c (the subscriber). Loop thread only.
 */
#ifndef LUAR_LUA_MOD_REDIS_H
#define LUAR_LUA_MOD_REDIS_H

#include "common/buf.h"
#include "lua/bridge.h"
#include "lua/vm.h"
#include "redis/conn.h"

#include <lua.h>
#include <uv.h>

/* ---- for the host (serve, luar run, tests) -------------------------------------------- */

/*
 * Chooses the Redis of luar.redis for this process: `url` (redis.url; NULL when not
 * configured), else `queue_url` when it is a redis:// or rediss:// URL, else none. Strings
 * are copied; nothing connects yet. Returns 0, or LUAR_EINVAL with a message in `err`
 * (which never shows the password) when the chosen URL cannot be parsed.
 */
int luar_redis_module_setup(uv_loop_t *loop, const char *url, const char *queue_url,
                            luar_buf_t *err);

/*
 * Makes the subscriptions `vm` declared live (the serving generation; NULL: none, e.g. at
 * the start of a shutdown). The subscriber connection stays: channels of both generations
 * stay subscribed, new ones are subscribed and dropped ones unsubscribed, and messages go
 * to the new generation's handlers from then on. The module holds `vm` (luar_vm_hold)
 * until the next call.
 */
void luar_redis_module_use_vm(luar_vm_t *vm);

/*
 * Drops the subscriptions and closes both connections once the commands already sent have
 * their replies. Later calls fail with err.kind "backend". luar_redis_module_setup may be
 * called again afterwards (tests).
 */
void luar_redis_module_close(void);

/* Counters of the two connections (zeros for one not open), for tests. */
void luar_redis_module_stats(luar_redis_stats_t *commands, luar_redis_stats_t *subscriber);

/* ---- shared by mod_redis.c, redis_lock.c and redis_pubsub.c ---------------------------- */

/* The URL chosen by setup, or NULL when there is none. */
const luar_redis_url_t *luar_redis_module_url(void);

/*
 * The command connection, opened on first use. NULL when there is none, with the reason
 * (a full sentence naming what to do) in `why`.
 */
luar_redis_t *luar_redis_module_conn(luar_buf_t *why);

/* Why the command connection's last command failed with `rc` (never NULL). */
const char *luar_redis_module_error(int rc);

/* The loop of the module (NULL before setup). */
uv_loop_t *luar_redis_module_loop(void);

/* Flattens a reply into `out` (luar_redis_push_flat reads it back). Returns 0 or LUAR_ENOMEM. */
int luar_redis_flatten(const redisReply *reply, luar_buf_t *out);

/*
 * Pushes the flattened reply at `flat` as the results of a Lua call: the value (nil for a
 * nil reply), or nil, err{kind = "redis", message, code} for an error reply. Returns the
 * number of values. Raises on memory errors. [-0, +1|2]
 */
int luar_redis_push_flat(lua_State *L, const luar_buf_t *flat);

/*
 * The top of a flattened reply: its REDIS_REPLY_* type, and its string (status, error,
 * bulk; not NUL-terminated) or integer. Returns the type, or -1 when `flat` is empty.
 */
int luar_redis_flat_peek(const luar_buf_t *flat, const char **str, size_t *len, long long *integer);

/*
 * Sends a command on the command connection and yields until its reply; `push` then gets
 * the op, whose luar_redis_wait_of() has the outcome. Raises on misuse like
 * luar_bridge_op_new. `what` is a string literal. [-0, +0] then yields.
 */
typedef struct luar_redis_wait {
    int rc;           /* 0: `reply` holds the reply; else LUAR_EIO, LUAR_ENOMEM, ... */
    char why[640];    /* rc != 0: why, naming the server */
    luar_buf_t reply; /* flattened */
    void *udata;      /* the caller's, untouched */
} luar_redis_wait_t;

int luar_redis_yield(lua_State *L, const char *what, int argc, const char **argv,
                     const size_t *lens, void *udata, luar_bridge_push_fn push);
luar_redis_wait_t *luar_redis_wait_of(luar_bridge_op_t *op);

/*
 * The usual push: the reply as luar_redis_push_flat, or nil, err{kind = "backend"} naming
 * `what` and why when the command failed with the connection.
 */
int luar_redis_push_result(lua_State *L, luar_bridge_op_t *op);

/* redis_lock.c: adds `lock` to the module table at the top of the stack. [-0, +0] */
void luar_redis_lock_open(lua_State *L);

/* redis_pubsub.c: adds `subscribe` and `psubscribe` to the module table. [-0, +0] */
void luar_redis_pubsub_open(lua_State *L);

/* redis_pubsub.c: luar_redis_module_use_vm and the subscriber's part of close. */
void luar_redis_pubsub_use_vm(luar_vm_t *vm);
void luar_redis_pubsub_close(void);
void luar_redis_pubsub_stats(luar_redis_stats_t *out);

#endif
