/*
 * redis.lock(name, ttl | {ttl, wait}, fn) ⏸: a lock across every process sharing the Redis,
 * held while fn runs (docs/redis.md "Locks").
 *
 * Acquire: SET <prefix>lock:<name> <token> NX PX <ttl>, the token 16 random bytes in hex;
 * when taken, try again after 10 ms doubling to 200 ms (with jitter) until `wait` seconds
 * have passed (default: ttl), then nil, err{kind = "locked"}.
 * Hold: a watchdog timer extends the key's expiry every ttl/3 while fn runs, with a script
 * that checks the token first, so a lock held by a long fn does not expire under it. The
 * watchdog also notices when the holder's task ended without releasing (cancelled by a job
 * timeout or shutdown) and releases the lock then.
 * Release: a script deletes the key only while it still holds our token (fencing): a holder
 * whose lock expired — Redis unreachable for longer than the ttl, the process frozen —
 * cannot delete another holder's lock. fn's errors release the lock and are raised again.
 *
 * The sequence is a few lines of Lua (below) over four C functions, so fn may yield and its
 * results stay on its own stack.
 */
#include "common/error.h"
#include "crypto/crypto.h"
#include "log/log.h"
#include "lua/error.h"
#include "lua/mod_redis.h"
#include "lua/modules.h"
#include "lua/vm_internal.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOCK_MT "luar.redis.lock"
#define NAME_MAX_LEN 1024
#define TTL_MIN 0.1
#define TTL_MAX (30.0 * 86400)
#define BACKOFF_FIRST_MS 10
#define BACKOFF_MAX_MS 200

static const char release_script[] =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) "
    "else return 0 end";
static const char extend_script[] =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], "
    "ARGV[2]) else return 0 end";

typedef struct watchdog watchdog_t;

/* The handle the Lua part holds for one lock call (a userdata). */
typedef struct lock_handle {
    char *key; /* <prefix>lock:<name>, malloc'ed */
    size_t key_len;
    const char *name; /* inside key */
    char token[33];
    long long ttl_ms;
    double wait; /* seconds */
    uint64_t started_ms, backoff_ms;
    int held;       /* acquired and not yet released */
    watchdog_t *wd; /* while held */
} lock_handle_t;

/* Extends a held lock; outlives the handle when a command is in flight. */
struct watchdog {
    uv_timer_t timer;
    lock_handle_t *handle; /* NULL once the handle is gone */
    luar_vm_t *vm;
    luar_task_t *task;
    uint64_t serial;
    char *key;
    size_t key_len;
    char token[33];
    long long ttl_ms;
    int inflight; /* an extend or release command waits for its reply */
    int closing;  /* the timer is closed or closing */
    int closed;
};

/* ---- sending without waiting (release from C, extend) -------------------------------- */

static void ignore_reply(void *arg, int rc, const redisReply *reply)
{
    (void)arg;
    (void)rc;
    (void)reply;
}

/* EVAL `script` 1 key token [extra]; returns 0 or the reason it could not be sent. */
static int send_script(const char *script, const char *key, size_t key_len, const char *token,
                       const char *extra, luar_redis_cb cb, void *arg)
{
    luar_buf_t why;
    luar_buf_init(&why, 0);
    luar_redis_t *conn = luar_redis_module_conn(&why);
    luar_buf_free(&why);
    if (conn == NULL)
        return LUAR_ECLOSED;
    const char *argv[6] = {"EVAL", script, "1", key, token, extra};
    size_t lens[6] = {4, strlen(script), 1, key_len, strlen(token), extra ? strlen(extra) : 0};
    return luar_redis_send(conn, extra ? 6 : 5, argv, lens, cb, arg);
}

/* ---- the watchdog --------------------------------------------------------------------- */

static void wd_maybe_free(watchdog_t *wd)
{
    if (wd->closed && !wd->inflight && wd->handle == NULL) {
        free(wd->key);
        free(wd);
    }
}

static void wd_closed(uv_handle_t *h)
{
    watchdog_t *wd = h->data;
    wd->closed = 1;
    wd_maybe_free(wd);
}

static void wd_stop(watchdog_t *wd)
{
    if (wd->closing)
        return;
    wd->closing = 1;
    uv_timer_stop(&wd->timer);
    uv_close((uv_handle_t *)&wd->timer, wd_closed);
}

/* Detaches the watchdog from its handle (released, or the handle is collected). */
static void wd_detach(lock_handle_t *h)
{
    watchdog_t *wd = h->wd;
    if (wd == NULL)
        return;
    h->wd = NULL;
    wd->handle = NULL;
    wd_stop(wd);
    wd_maybe_free(wd);
}

static void wd_reply(void *arg, int rc, const redisReply *reply)
{
    watchdog_t *wd = arg;
    wd->inflight = 0;
    if (rc == 0 && reply->type == REDIS_REPLY_INTEGER && reply->integer == 0 && !wd->closing) {
        /* The key expired or was deleted, or someone else took it: nothing to extend. */
        luar_logf(LUAR_LOG_WARN,
                  "redis.lock: lost the lock \"%.*s\" while holding it (it expired or was "
                  "deleted); another holder may run at the same time",
                  (int)(wd->key_len > 200 ? 200 : wd->key_len), wd->key);
        wd_stop(wd);
    } else if (rc == 0 && reply->type == REDIS_REPLY_ERROR && !wd->closing) {
        luar_logf(LUAR_LOG_WARN, "redis.lock: cannot extend \"%.*s\": %.*s",
                  (int)(wd->key_len > 200 ? 200 : wd->key_len), wd->key,
                  (int)(reply->len > 200 ? 200 : reply->len), reply->str);
    }
    wd_maybe_free(wd);
}

static void wd_tick(uv_timer_t *t)
{
    watchdog_t *wd = t->data;
    if (!luar_task_alive(wd->vm, wd->task, wd->serial)) {
        /* The holder was cancelled (job timeout, shutdown): fn will never finish. */
        if (send_script(release_script, wd->key, wd->key_len, wd->token, NULL, ignore_reply,
                        NULL) == 0)
            luar_logf(LUAR_LOG_WARN,
                      "redis.lock: released \"%.*s\": its holder ended "
                      "without releasing it",
                      (int)(wd->key_len > 200 ? 200 : wd->key_len), wd->key);
        if (wd->handle)
            wd->handle->held = 0;
        wd_stop(wd);
        return;
    }
    if (wd->inflight)
        return; /* the last extension has not answered: Redis is slow or unreachable */
    char ttl[32];
    snprintf(ttl, sizeof ttl, "%lld", wd->ttl_ms);
    if (send_script(extend_script, wd->key, wd->key_len, wd->token, ttl, wd_reply, wd) == 0)
        wd->inflight = 1;
}

static int wd_start(lua_State *L, lock_handle_t *h)
{
    watchdog_t *wd = calloc(1, sizeof *wd);
    luar_task_t *task = luar_task_current(L);
    if (wd == NULL || task == NULL || (wd->key = malloc(h->key_len + 1)) == NULL) {
        free(wd);
        return LUAR_ENOMEM;
    }
    memcpy(wd->key, h->key, h->key_len + 1);
    wd->key_len = h->key_len;
    memcpy(wd->token, h->token, sizeof wd->token);
    wd->ttl_ms = h->ttl_ms;
    wd->vm = luar_task_vm(task);
    wd->task = task;
    wd->serial = luar_task_serial(task);
    wd->handle = h;
    uv_timer_init(luar_bridge_loop(L), &wd->timer);
    wd->timer.data = wd;
    uint64_t every = (uint64_t)(h->ttl_ms / 3);
    uv_timer_start(&wd->timer, wd_tick, every, every);
    uv_unref((uv_handle_t *)&wd->timer);
    h->wd = wd;
    return 0;
}

/* ---- the handle ----------------------------------------------------------------------- */

/* __gc: the coroutine that held the handle is gone; a lock still held is released. */
static int handle_gc(lua_State *L)
{
    lock_handle_t *h = luaL_checkudata(L, 1, LOCK_MT);
    wd_detach(h);
    if (h->held && h->key)
        send_script(release_script, h->key, h->key_len, h->token, NULL, ignore_reply, NULL);
    h->held = 0;
    free(h->key);
    h->key = NULL;
    return 0;
}

/* new(name, ttl | opts, fn) → handle, info. Raises on misuse. [-3, +5] */
static int lock_new(lua_State *L)
{
    size_t name_len;
    const char *name = luaL_checklstring(L, 1, &name_len);
    luaL_argcheck(L, name_len > 0 && name_len <= NAME_MAX_LEN, 1,
                  "expected a name of 1 to 1024 bytes");
    double ttl, wait = 0;
    int wait_given = 0;
    if (lua_type(L, 2) == LUA_TTABLE) {
        if (lua_getfield(L, 2, "ttl") != LUA_TNUMBER)
            return luaL_error(L, "redis.lock: option ttl: expected seconds (a number)");
        ttl = lua_tonumber(L, -1);
        int t = lua_getfield(L, 2, "wait");
        if (t == LUA_TNUMBER) {
            wait = lua_tonumber(L, -1);
            wait_given = 1;
        } else if (t != LUA_TNIL) {
            return luaL_error(L, "redis.lock: option wait: expected seconds (a number)");
        }
        lua_pop(L, 2);
    } else if (lua_type(L, 2) == LUA_TNUMBER) {
        ttl = lua_tonumber(L, 2);
    } else {
        return luaL_argerror(L, 2, "expected the ttl in seconds or { ttl = s, wait = s }");
    }
    if (!(ttl >= TTL_MIN && ttl <= TTL_MAX))
        return luaL_error(L, "redis.lock: ttl: expected %f to %f seconds", TTL_MIN, TTL_MAX);
    if (!wait_given)
        wait = ttl;
    if (!(wait >= 0 && wait <= TTL_MAX))
        return luaL_error(L, "redis.lock: wait: expected 0 to %f seconds", TTL_MAX);
    luaL_checktype(L, 3, LUA_TFUNCTION);
    const luar_redis_url_t *url = luar_redis_module_url();
    const char *prefix = url && url->prefix ? url->prefix : "luar:";

    lock_handle_t *h = lua_newuserdatauv(L, sizeof *h, 0);
    memset(h, 0, sizeof *h);
    luaL_setmetatable(L, LOCK_MT);
    size_t plen = strlen(prefix);
    h->key_len = plen + 5 + name_len;
    h->key = malloc(h->key_len + 1);
    if (h->key == NULL)
        return luaL_error(L, "redis.lock: not enough memory");
    memcpy(h->key, prefix, plen);
    memcpy(h->key + plen, "lock:", 5);
    memcpy(h->key + plen + 5, name, name_len);
    h->key[h->key_len] = '\0';
    h->name = h->key + plen + 5;
    unsigned char rnd[16];
    if (luar_crypto_random(rnd, sizeof rnd))
        return luaL_error(L, "redis.lock: no random bytes for the token");
    for (size_t i = 0; i < sizeof rnd; i++)
        snprintf(h->token + 2 * i, 3, "%02x", rnd[i]);
    h->ttl_ms = (long long)ceil(ttl * 1000.0);
    h->wait = wait;
    uv_loop_t *loop = luar_bridge_loop(L);
    uv_update_time(loop);
    h->started_ms = uv_now(loop);
    lua_createtable(L, 0, 3);
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "name");
    lua_pushlstring(L, h->key, h->key_len);
    lua_setfield(L, -2, "key");
    lua_pushstring(L, h->token);
    lua_setfield(L, -2, "token");
    return 2;
}

/* ---- try: one SET NX PX ---------------------------------------------------------------- */

struct try_op {
    int canceled, fired, rc;
    int acquired; /* the reply was OK */
    char why[640];
    char *key; /* copies, to release a lock acquired after its task was cancelled */
    size_t key_len;
    char token[33];
    lock_handle_t *h;
};

static void try_cb(void *arg, int rc, const redisReply *reply)
{
    luar_bridge_op_t *op = arg;
    struct try_op *t = luar_bridge_op_data(op);
    t->fired = 1;
    t->rc = rc;
    if (rc == 0 && reply->type == REDIS_REPLY_STATUS)
        t->acquired = 1;
    else if (rc == 0 && reply->type == REDIS_REPLY_ERROR)
        snprintf(t->why, sizeof t->why, "%.*s", (int)reply->len, reply->str);
    else if (rc != 0)
        snprintf(t->why, sizeof t->why, "%s", luar_redis_module_error(rc));
    if (t->canceled) { /* nobody will hold it: let it go at once */
        if (t->acquired)
            send_script(release_script, t->key, t->key_len, t->token, NULL, ignore_reply, NULL);
        free(t->key);
        luar_bridge_op_free(op);
        return;
    }
    luar_bridge_complete(op);
}

static void try_cleanup(luar_bridge_op_t *op, int canceled)
{
    struct try_op *t = luar_bridge_op_data(op);
    if (canceled && !t->fired) {
        t->canceled = 1; /* try_cb releases and frees */
        return;
    }
    free(t->key);
    luar_bridge_op_free(op);
}

static int try_push(lua_State *L, luar_bridge_op_t *op)
{
    struct try_op *t = luar_bridge_op_data(op);
    lock_handle_t *h = t->h;
    if (t->rc)
        return luar_lua_fail(L, "backend", "redis.lock: %s", t->why);
    if (t->why[0])
        return luar_lua_fail(L, "redis", "redis.lock: %s", t->why);
    if (!t->acquired) {
        lua_pushboolean(L, 0);
        return 1;
    }
    h->held = 1;
    if (wd_start(L, h)) {
        send_script(release_script, h->key, h->key_len, h->token, NULL, ignore_reply, NULL);
        h->held = 0;
        return luaL_error(L, "redis.lock: not enough memory");
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* try(handle) ⏸ → true (acquired) | false (taken) | nil, err. [-1, +(1|2)] */
static int lock_try(lua_State *L)
{
    lock_handle_t *h = luaL_checkudata(L, 1, LOCK_MT);
    luar_bridge_op_t *op = luar_bridge_op_new(L, "redis.lock", sizeof(struct try_op));
    luar_bridge_op_set_cleanup(op, try_cleanup);
    struct try_op *t = luar_bridge_op_data(op);
    t->h = h;
    t->key = luar_memdup(h->key, h->key_len);
    t->key_len = h->key_len;
    memcpy(t->token, h->token, sizeof t->token);
    char ttl[32];
    snprintf(ttl, sizeof ttl, "%lld", h->ttl_ms);
    const char *argv[6] = {"SET", h->key, h->token, "NX", "PX", ttl};
    size_t lens[6] = {3, h->key_len, strlen(h->token), 2, 2, strlen(ttl)};
    luar_buf_t why;
    luar_buf_init(&why, 0);
    luar_redis_t *conn = t->key ? luar_redis_module_conn(&why) : NULL;
    int rc = t->key == NULL ? LUAR_ENOMEM
             : conn         ? luar_redis_send(conn, 6, argv, lens, try_cb, op)
                            : LUAR_ECLOSED;
    if (rc) {
        t->fired = 1;
        t->rc = rc;
        snprintf(t->why, sizeof t->why, "%s", why.len ? why.data : luar_strerror(rc));
        luar_bridge_complete(op);
    }
    luar_buf_free(&why);
    return luar_bridge_yield(L, op, try_push);
}

/* backoff(handle) → seconds to sleep before the next try | nil, err{kind = "locked"}. */
static int lock_backoff(lua_State *L)
{
    lock_handle_t *h = luaL_checkudata(L, 1, LOCK_MT);
    uv_loop_t *loop = luar_bridge_loop(L);
    uv_update_time(loop);
    uint64_t waited = uv_now(loop) - h->started_ms, limit = (uint64_t)(h->wait * 1000.0);
    if (waited >= limit) {
        char secs[32]; /* lua_pushfstring has no %g */
        snprintf(secs, sizeof secs, "%.3g", (double)waited / 1000.0);
        return luar_lua_fail(L, "locked",
                             "redis.lock: \"%s\" is held by another holder "
                             "(waited %s s)",
                             h->name, secs);
    }
    h->backoff_ms = h->backoff_ms == 0 ? BACKOFF_FIRST_MS : h->backoff_ms * 2;
    if (h->backoff_ms > BACKOFF_MAX_MS)
        h->backoff_ms = BACKOFF_MAX_MS;
    /* Half to all of the step, so waiters that collided do not collide again. */
    uint32_t r = 0;
    luar_crypto_random(&r, sizeof r);
    uint64_t delay = h->backoff_ms / 2 + r % (h->backoff_ms / 2 + 1);
    if (delay > limit - waited)
        delay = limit - waited;
    lua_pushnumber(L, (lua_Number)delay / 1000.0);
    return 1;
}

/* ---- release -------------------------------------------------------------------------- */

static int release_push(lua_State *L, luar_bridge_op_t *op)
{
    luar_redis_wait_t *w = luar_redis_wait_of(op);
    lock_handle_t *h = w->udata;
    const char *str;
    size_t len;
    long long n;
    if (w->rc) {
        luar_logf(LUAR_LOG_WARN,
                  "redis.lock: cannot release \"%s\" (%s); it expires in "
                  "at most %lld ms",
                  h->name, w->why, h->ttl_ms);
    } else {
        int type = luar_redis_flat_peek(&w->reply, &str, &len, &n);
        if (type == REDIS_REPLY_INTEGER && n == 0)
            luar_logf(LUAR_LOG_WARN,
                      "redis.lock: \"%s\" was no longer held at release (it "
                      "expired or was deleted while its holder ran)",
                      h->name);
        else if (type == REDIS_REPLY_ERROR)
            luar_logf(LUAR_LOG_WARN, "redis.lock: cannot release \"%s\": %.*s", h->name, (int)len,
                      str);
    }
    lua_pushboolean(L, w->rc == 0);
    return 1;
}

/* release(handle) ⏸ → true when Redis answered. [-1, +1] */
static int lock_release(lua_State *L)
{
    lock_handle_t *h = luaL_checkudata(L, 1, LOCK_MT);
    wd_detach(h);
    if (!h->held) {
        lua_pushboolean(L, 1);
        return 1;
    }
    h->held = 0;
    const char *argv[5] = {"EVAL", release_script, "1", h->key, h->token};
    size_t lens[5] = {4, sizeof release_script - 1, 1, h->key_len, strlen(h->token)};
    return luar_redis_yield(L, "redis.lock", 5, argv, lens, h, release_push);
}

/* The sequence; its upvalues are passed as the chunk's arguments. */
static const char lock_lua[] =
    "local new, try, backoff, release, sleep = ...\n"
    "local pack, unpack, pcall, error = table.pack, table.unpack, pcall, error\n"
    "return function(name, ttl, fn)\n"
    "  local h, info = new(name, ttl, fn)\n"
    "  while true do\n"
    "    local got, err = try(h)\n"
    "    if got then break end\n"
    "    if got == nil then return nil, err end\n"
    "    local delay, locked = backoff(h)\n"
    "    if not delay then return nil, locked end\n"
    "    sleep(delay)\n"
    "  end\n"
    "  local r = pack(pcall(fn, info))\n"
    "  release(h)\n"
    "  if not r[1] then error(r[2], 0) end\n"
    "  return unpack(r, 2, r.n)\n"
    "end\n";

void luar_redis_lock_open(lua_State *L)
{
    if (luaL_newmetatable(L, LOCK_MT)) {
        lua_pushcfunction(L, handle_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    if (luaL_loadbuffer(L, lock_lua, sizeof lock_lua - 1, "=luar.redis.lock") != LUA_OK)
        lua_error(L);
    lua_pushcfunction(L, lock_new);
    lua_pushcfunction(L, lock_try);
    lua_pushcfunction(L, lock_backoff);
    lua_pushcfunction(L, lock_release);
    luaopen_luar_time(L);
    lua_getfield(L, -1, "sleep");
    lua_remove(L, -2);
    lua_call(L, 5, 1);
    lua_setfield(L, -2, "lock");
}
