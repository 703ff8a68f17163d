/*
 * luar.cache (SPEC §4): get, set, delete, incr and remember ⏸ on the queue backend's cache
 * operations (queue.h "cache"): in process on SQLite, on the server on Redis. Each wait
 * goes through the bridge like every other.
 *
 * Values are stored as bytes with a one-character tag, so that a get gives back the type
 * that was set: "s…" a string, "f…" a float (%.17g), "b1"/"b0" a boolean, "j…" a table
 * (or luar.json.null) as JSON (lua-cjson, luar.json's instance); an integer is its bare
 * canonical decimal, which is what the backends' incr reads and writes. The cap on a value
 * (cache.max_value) applies to the stored bytes.
 *
 * remember is Lua (below) over a few private C functions. Its single flight is per VM: a
 * table from key to the flight of the call computing it, which later callers join instead
 * of running fn again. A flight ends when its leader stores the result or fn raises; and
 * when the leader's task ends without either (cancelled, out of budget), through a task
 * end callback, so that waiters never wait for nobody.
 */
#include "common/error.h"
#include "jobs/jobs.h"
#include "lua/error.h"
#include "lua/modules.h"
#include "lua/util.h"
#include "lua/vm_internal.h"
#include "metrics/metrics.h"
#include "queue/queue.h"
#include "cache/lru.h"

#include <inttypes.h>
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- metrics ------------------------------------------------------------------------- */

/*
 * luar_cache_operations_total{op, result}: one per call; results hit and miss (get,
 * remember: miss means fn ran), shared (remember: another call's result), ok (set, delete,
 * incr), error (remember: fn raised), too_large, invalid, backend. Separate from
 * luar_cache_requests_total, which counts the HTTP client's response cache.
 */
static void count(const char *op, const char *result)
{
    static const char *const labels[] = {"op", "result"};
    luar_metric_t *m = luar_metrics_find("luar_cache_operations_total");
    if (m == NULL)
        luar_metrics_register(LUAR_METRIC_COUNTER, "luar_cache_operations_total",
                              "luar.cache calls by operation and result.", labels, 2, NULL, 0, &m,
                              NULL);
    const char *values[] = {op, result};
    if (m)
        luar_metric_add(m, values, 1);
}

/* ---- values -------------------------------------------------------------------------- */

/* Encodes a table as JSON; run protected, as cjson raises. [-1, +1] */
static int encode_table(lua_State *L)
{
    luar_json_encode(L, 1, NULL);
    return 1;
}

/*
 * Pushes the stored form of the value at `idx` and returns 1; or pushes nil and an error
 * {kind = "invalid"} and returns 2 when it cannot be stored (a table lua-cjson refuses;
 * with `strict`, a type no cache holds raises an argument error for argument `idx`
 * instead). The value must not be nil.
 */
static int encode_value(lua_State *L, int idx, int strict, const char *what)
{
    idx = lua_absindex(L, idx);
    char num[40];
    switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN:
        lua_pushstring(L, lua_toboolean(L, idx) ? "b1" : "b0");
        return 1;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            snprintf(num, sizeof num, "%" PRId64, (int64_t)lua_tointeger(L, idx));
        else
            snprintf(num, sizeof num, "f%.17g", (double)lua_tonumber(L, idx));
        lua_pushstring(L, num);
        return 1;
    case LUA_TSTRING: {
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        luaL_addchar(&b, 's');
        lua_pushvalue(L, idx);
        luaL_addvalue(&b);
        luaL_pushresult(&b);
        return 1;
    }
    case LUA_TTABLE:
        lua_pushcfunction(L, encode_table);
        lua_pushvalue(L, idx);
        if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
            const char *msg = lua_tostring(L, -1);
            lua_pop(L, 1);
            return luar_lua_fail(L, "invalid", "%s: the table cannot be stored as JSON (%s)", what,
                                 msg ? msg : "unknown error");
        }
        lua_pushliteral(L, "j");
        lua_insert(L, -2);
        lua_concat(L, 2);
        return 1;
    case LUA_TLIGHTUSERDATA:
        /* luar.json.null, as JSON data decoded by a handler holds it. */
        if (lua_touserdata(L, idx) == NULL) {
            lua_pushliteral(L, "jnull");
            return 1;
        }
        /* fall through */
    default:
        if (strict)
            return luaL_typeerror(L, idx, "string, number, boolean, table or json.null");
        return luar_lua_fail(L, "invalid", "%s: a %s cannot be stored", what,
                             luaL_typename(L, idx));
    }
}

/*
 * Pushes the value stored as `s` (`len` bytes, NUL-terminated) and returns 1, or nil and
 * an error {kind = "invalid"} when the bytes are not what encode_value writes (a key
 * written by something else on a shared Redis). [-0, +1|2]
 */
static int decode_value(lua_State *L, const char *s, size_t len, const char *what)
{
    int64_t i;
    if (luar_lru_parse_int(s, len, &i) == 0) {
        lua_pushinteger(L, (lua_Integer)i);
        return 1;
    }
    if (len >= 1 && s[0] == 's') {
        lua_pushlstring(L, s + 1, len - 1);
        return 1;
    }
    if (len >= 2 && s[0] == 'f') {
        char *end;
        double d = strtod(s + 1, &end);
        if (end == s + len) {
            lua_pushnumber(L, d);
            return 1;
        }
    } else if (len == 2 && s[0] == 'b' && (s[1] == '0' || s[1] == '1')) {
        lua_pushboolean(L, s[1] == '1');
        return 1;
    } else if (len >= 1 && s[0] == 'j') {
        lua_pushlstring(L, s + 1, len - 1);
        int n = luar_json_decode(L, -1);
        lua_remove(L, -1 - n);
        if (n == 1)
            return 1;
        lua_pop(L, 2);
    }
    return luar_lua_fail(L, "invalid", "%s: the stored value was not written by luar.cache", what);
}

/* ---- arguments ----------------------------------------------------------------------- */

/* Argument `idx` as a key: a string (or number) of 1 to 512 bytes without NUL. */
static const char *check_key(lua_State *L, int idx)
{
    size_t len;
    const char *key = luaL_checklstring(L, idx, &len);
    if (len == 0)
        luaL_argerror(L, idx, "the key is empty");
    if (len > LUAR_QUEUE_CACHE_MAX_KEY)
        luaL_argerror(L, idx,
                      lua_pushfstring(L, "the key is %I bytes, more than %d", (lua_Integer)len,
                                      LUAR_QUEUE_CACHE_MAX_KEY));
    if (memchr(key, '\0', len) != NULL)
        luaL_argerror(L, idx, "the key holds a NUL byte");
    return key;
}

/* Argument `idx` as a ttl: nil or none (0: no expiry), else seconds > 0. */
static double check_ttl(lua_State *L, int idx)
{
    if (lua_isnoneornil(L, idx))
        return 0;
    double ttl = luaL_checknumber(L, idx);
    if (!(ttl > 0) || ttl > LUAR_QUEUE_CACHE_MAX_TTL)
        luaL_argerror(L, idx, "the ttl must be a positive number of seconds (nil: no expiry)");
    return ttl;
}

/* ---- the wait on the backend --------------------------------------------------------- */

enum { OP_GET, OP_SET, OP_DELETE, OP_INCR };

static const char *const op_names[] = {"get", "set", "delete", "incr"};
static const char *const op_whats[] = {"cache.get", "cache.set", "cache.delete", "cache.incr"};

struct cache_wait {
    int canceled, fired;
    int op;
    int rc;
    int count;        /* counts the call in the metric (not remember's own steps) */
    const char *what; /* the call for messages: "cache.get", or "cache.remember" */
    char *value;      /* get: a copy of the value (NUL-terminated), NULL when absent */
    size_t len;
    int64_t number; /* incr */
};

/* Records a callback's outcome; frees the op when its task is gone. Nonzero: go on. */
static int fired(luar_bridge_op_t *op, int rc)
{
    struct cache_wait *w = luar_bridge_op_data(op);
    w->fired = 1;
    if (w->canceled) {
        luar_bridge_op_free(op);
        return 0;
    }
    w->rc = rc;
    return 1;
}

static void on_get(void *arg, int rc, const char *value, size_t len)
{
    luar_bridge_op_t *op = arg;
    struct cache_wait *w = luar_bridge_op_data(op);
    if (!fired(op, rc))
        return;
    if (rc == 0 && value != NULL) {
        w->value = luar_memdup(value, len);
        w->len = len;
        if (w->value == NULL)
            w->rc = LUAR_ENOMEM;
    }
    luar_bridge_complete(op);
}

static void on_done(void *arg, int rc)
{
    luar_bridge_op_t *op = arg;
    if (fired(op, rc))
        luar_bridge_complete(op);
}

static void on_incr(void *arg, int rc, int64_t value)
{
    luar_bridge_op_t *op = arg;
    struct cache_wait *w = luar_bridge_op_data(op);
    if (!fired(op, rc))
        return;
    w->number = value;
    luar_bridge_complete(op);
}

static void wait_cleanup(luar_bridge_op_t *op, int canceled)
{
    struct cache_wait *w = luar_bridge_op_data(op);
    free(w->value);
    w->value = NULL;
    if (canceled && !w->fired) {
        w->canceled = 1; /* the callback frees the op when the backend answers */
        return;
    }
    luar_bridge_op_free(op);
}

/* Pushes nil and the error for a failed backend call, counting it. [-0, +2] */
static int fail_rc(lua_State *L, struct cache_wait *w)
{
    const char *what = w->what;
    const char *kind = "backend";
    if (w->rc == LUAR_EINVAL && w->op == OP_INCR)
        kind = "invalid";
    if (w->count)
        count(op_names[w->op], kind);
    if (w->rc == LUAR_EINVAL && w->op == OP_INCR)
        return luar_lua_fail(
            L, kind, "%s: the value there is not an integer, or the sum would overflow", what);
    luar_queue_t *q = luar_jobs_queue();
    const char *why = q == NULL ? "no queue backend in this command"
                      : w->rc == LUAR_EIO && luar_queue_last_error(q)[0] ? luar_queue_last_error(q)
                                                                         : luar_strerror(w->rc);
    return luar_lua_fail(L, kind, "%s: the backend did not answer (%s)", what, why);
}

/* get → value | nil | nil, err. [-0, +1|2] */
static int push_get(lua_State *L, luar_bridge_op_t *op)
{
    struct cache_wait *w = luar_bridge_op_data(op);
    if (w->rc)
        return fail_rc(L, w);
    if (w->value == NULL) {
        if (w->count)
            count("get", "miss");
        lua_pushnil(L);
        return 1;
    }
    int n = decode_value(L, w->value, w->len, w->what);
    if (w->count)
        count("get", n == 1 ? "hit" : "invalid");
    return n;
}

/* set, delete → true | nil, err; incr → integer | nil, err. [-0, +1|2] */
static int push_done(lua_State *L, luar_bridge_op_t *op)
{
    struct cache_wait *w = luar_bridge_op_data(op);
    if (w->rc)
        return fail_rc(L, w);
    if (w->count)
        count(op_names[w->op], "ok");
    if (w->op == OP_INCR)
        lua_pushinteger(L, (lua_Integer)w->number);
    else
        lua_pushboolean(L, 1);
    return 1;
}

/*
 * Starts operation `opk` on the backend and yields until it answers. `value`/`len` for
 * set, `delta` for incr, `ttl` for both. `counted`: a call of the API (counted in the
 * metric, named in messages), else a step of remember. Everything that may raise is done before:
 * once the op exists the call must yield.
 */
static int wait_backend(lua_State *L, int opk, int counted, const char *key, const char *value,
                        size_t len, int64_t delta, double ttl)
{
    const char *what = counted ? op_whats[opk] : "cache.remember";
    luar_bridge_op_t *op = luar_bridge_op_new(L, what, sizeof(struct cache_wait));
    luar_bridge_op_set_cleanup(op, wait_cleanup);
    struct cache_wait *w = luar_bridge_op_data(op);
    w->op = opk;
    w->count = counted;
    w->what = what;
    luar_queue_t *q = luar_jobs_queue();
    int rc = LUAR_ECLOSED;
    if (q != NULL) {
        switch (opk) {
        case OP_GET:
            rc = luar_queue_cache_get(q, key, on_get, op);
            break;
        case OP_SET:
            rc = luar_queue_cache_set(q, key, value, len, ttl, on_done, op);
            break;
        case OP_DELETE:
            rc = luar_queue_cache_delete(q, key, on_done, op);
            break;
        case OP_INCR:
            rc = luar_queue_cache_incr(q, key, delta, ttl, on_incr, op);
            break;
        }
    }
    if (rc) {
        w->fired = 1;
        w->rc = rc;
        luar_bridge_complete(op);
    }
    return luar_bridge_yield(L, op, opk == OP_GET ? push_get : push_done);
}

/*
 * Fails (nil, err too_large) when the stored form at the top of the stack is over the
 * queue's cap; returns 0 when it fits (or there is no queue: the wait then says so).
 */
static int too_large(lua_State *L, const char *what, const char *op)
{
    luar_queue_t *q = luar_jobs_queue();
    size_t len = lua_rawlen(L, -1);
    if (q == NULL || len <= luar_queue_cache_max_value(q))
        return 0;
    if (op)
        count(op, "too_large");
    return luar_lua_fail(
        L, "too_large", "%s: the value takes %d bytes, more than cache.max_value (%d)", what,
        len > INT32_MAX ? INT32_MAX : (int)len, (int)luar_queue_cache_max_value(q));
}

/* ---- the public functions ------------------------------------------------------------ */

/* cache.get(key) ⏸ → value | nil | nil, err. [-1, +1|2] */
static int cache_get(lua_State *L)
{
    const char *key = check_key(L, 1);
    return wait_backend(L, OP_GET, 1, key, NULL, 0, 0, 0);
}

/*
 * cache.set(key, value[, ttl]) ⏸ → true | nil, err. A nil value deletes the key. [-(2|3),
 * +(1|2)]
 */
static int cache_set(lua_State *L)
{
    const char *key = check_key(L, 1);
    luaL_checkany(L, 2);
    double ttl = check_ttl(L, 3);
    if (lua_isnil(L, 2))
        return wait_backend(L, OP_DELETE, 1, key, NULL, 0, 0, 0);
    lua_settop(L, 3);
    if (encode_value(L, 2, 1, "cache.set") != 1) {
        count("set", "invalid");
        return 2;
    }
    int n = too_large(L, "cache.set", "set");
    if (n)
        return n;
    size_t len;
    const char *value = lua_tolstring(L, -1, &len);
    return wait_backend(L, OP_SET, 1, key, value, len, 0, ttl);
}

/* cache.delete(key) ⏸ → true | nil, err. [-1, +1|2] */
static int cache_delete(lua_State *L)
{
    const char *key = check_key(L, 1);
    return wait_backend(L, OP_DELETE, 1, key, NULL, 0, 0, 0);
}

/* cache.incr(key[, n[, ttl]]) ⏸ → integer | nil, err. [-(1..3), +1|2] */
static int cache_incr(lua_State *L)
{
    const char *key = check_key(L, 1);
    lua_Integer delta = luaL_optinteger(L, 2, 1);
    double ttl = check_ttl(L, 3);
    return wait_backend(L, OP_INCR, 1, key, NULL, 0, (int64_t)delta, ttl);
}

/* ---- remember: private helpers of the Lua part --------------------------------------- */

enum { FLIGHT_VALUE, FLIGHT_NIL, FLIGHT_ERR, FLIGHT_RAISE, FLIGHT_ABANDONED };

#define FLIGHT_MT "luar.cache.flight"

/*
 * One remember call computing a key, as a userdata. User values: 1 the outcome's Lua value
 * (the stored form for FLIGHT_VALUE, the err table, the raised value), 2 the key.
 */
typedef struct flight {
    luar_task_end_t end; /* on the leader's task until landed */
    luar_task_t *leader; /* NULL once landed */
    int landed;
    int outcome;
    char *why;              /* FLIGHT_ABANDONED: how the leader's task ended */
    struct waiter *waiters; /* joined, not yet completed */
} flight_t;

/* A remember call waiting for another's flight: the data of its bridge op. */
struct waiter {
    flight_t *f;
    luar_bridge_op_t *op;
    struct waiter *next; /* the flight's waiters */
    int linked;          /* on the flight's list */
    int ref;             /* the flight userdata, in the registry, until the op ends */
    lua_State *main;     /* the VM's main thread, for the registry */
};

static const char flights_key = 0;

/* Pushes the VM's table of flights by key. Its values are weak: a flight nobody waits for
 * and whose leader is gone is collected. [-0, +1] */
static void push_flights(lua_State *L)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &flights_key) == LUA_TTABLE)
        return;
    lua_pop(L, 1);
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "v");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &flights_key);
}

/* Completes every waiter of a flight that just landed (their push reads the outcome). */
static void wake(flight_t *f)
{
    struct waiter *w = f->waiters;
    f->waiters = NULL;
    while (w) {
        struct waiter *next = w->next;
        w->linked = 0;
        w->next = NULL;
        luar_bridge_complete(w->op);
        w = next;
    }
}

/* The leader's task ended before the flight landed (cancelled while fn waited, over its
 * budget, ...): the flight lands as abandoned. Runs no Lua. */
static void on_leader_end(luar_task_end_t *node, luar_task_t *task)
{
    flight_t *f = (flight_t *)node;
    f->landed = 1;
    f->leader = NULL;
    f->outcome = FLIGHT_ABANDONED;
    const char *err = luar_task_error(task);
    f->why = strdup(err[0] ? err : "its task ended");
    wake(f);
}

static int flight_gc(lua_State *L)
{
    flight_t *f = luaL_checkudata(L, 1, FLIGHT_MT);
    /* Collected unlanded: its leader was a coroutine the script dropped inside a task that
     * lives on. Nobody waits (waiters hold the flight). */
    if (!f->landed && f->leader != NULL)
        luar_task_on_end_remove(f->leader, &f->end);
    f->landed = 1;
    f->leader = NULL;
    free(f->why);
    f->why = NULL;
    return 0;
}

/* Looks up the flight computing the key at `key_idx`: pushes it and returns it, or returns
 * NULL (nothing pushed) when there is none in flight. */
static flight_t *current_flight(lua_State *L, int key_idx)
{
    key_idx = lua_absindex(L, key_idx);
    push_flights(L);
    lua_pushvalue(L, key_idx);
    lua_rawget(L, -2);
    lua_remove(L, -2);
    flight_t *f = luaL_testudata(L, -1, FLIGHT_MT);
    if (f == NULL || f->landed) {
        lua_pop(L, 1);
        return NULL;
    }
    return f;
}

static void waiter_cleanup(luar_bridge_op_t *op, int canceled)
{
    (void)canceled;
    struct waiter *w = luar_bridge_op_data(op);
    if (w->linked) {
        for (struct waiter **pp = &w->f->waiters; *pp; pp = &(*pp)->next) {
            if (*pp == w) {
                *pp = w->next;
                break;
            }
        }
        w->linked = 0;
    }
    if (w->ref != LUA_NOREF)
        luaL_unref(w->main, LUA_REGISTRYINDEX, w->ref);
    luar_bridge_op_free(op);
}

/* A waiter's results: true, value | true, nil | true, nil, err; or raises what fn raised.
 * [-0, +(2|3)] */
static int push_waited(lua_State *L, luar_bridge_op_t *op)
{
    struct waiter *w = luar_bridge_op_data(op);
    flight_t *f = w->f;
    lua_rawgeti(L, LUA_REGISTRYINDEX, w->ref);
    int fi = lua_gettop(L);
    switch (f->outcome) {
    case FLIGHT_VALUE: {
        /* Each waiter decodes its own copy of the stored form, as a later get would. */
        lua_getiuservalue(L, fi, 1);
        size_t len;
        const char *stored = lua_tolstring(L, -1, &len);
        lua_pushboolean(L, 1);
        return 1 + decode_value(L, stored, len, "cache.remember");
    }
    case FLIGHT_NIL:
        lua_pushboolean(L, 1);
        lua_pushnil(L);
        return 2;
    case FLIGHT_ERR:
        lua_pushboolean(L, 1);
        lua_pushnil(L);
        lua_getiuservalue(L, fi, 1);
        return 3;
    case FLIGHT_RAISE:
        lua_getiuservalue(L, fi, 1);
        return lua_error(L);
    default:
        lua_getiuservalue(L, fi, 2);
        return luaL_error(L,
                          "cache.remember: the call computing key \"%s\" ended without a "
                          "value (%s)",
                          lua_tostring(L, -1), f->why ? f->why : "unknown");
    }
}

/* join(key) → false when no call computes the key; else waits for it and returns true and
 * its results (or raises its error). [-1, +(1..3)] */
static int remember_join(lua_State *L)
{
    flight_t *f = current_flight(L, 1);
    if (f == NULL) {
        lua_pushboolean(L, 0);
        return 1;
    }
    if (luar_task_current(L) == f->leader)
        return luaL_error(L,
                          "cache.remember: the function computing key \"%s\" asks for the same "
                          "key (it would wait for itself)",
                          lua_tostring(L, 1));
    count("remember", "shared");
    luar_bridge_op_t *op = luar_bridge_op_new(L, "cache.remember", sizeof(struct waiter));
    luar_bridge_op_set_cleanup(op, waiter_cleanup);
    struct waiter *w = luar_bridge_op_data(op);
    w->f = f;
    w->op = op;
    w->ref = LUA_NOREF;
    w->main = luar_vm_of(L)->L;
    w->ref = luaL_ref(L, LUA_REGISTRYINDEX); /* pops the flight */
    w->next = f->waiters;
    f->waiters = w;
    w->linked = 1;
    return luar_bridge_yield(L, op, push_waited);
}

/* lead(key) → flight: this call computes the key; later ones join it. [-1, +1] */
static int remember_lead(lua_State *L)
{
    luar_task_t *t = luar_task_current(L);
    if (t == NULL || t->pseudo)
        return luaL_error(L, "cache.remember must be called from a request handler, job or "
                             "luar run script");
    flight_t *f = lua_newuserdatauv(L, sizeof *f, 2);
    memset(f, 0, sizeof *f);
    luaL_setmetatable(L, FLIGHT_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 2);
    push_flights(L);
    lua_pushvalue(L, 1);
    lua_pushvalue(L, -3);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    f->leader = t;
    f->end.fn = on_leader_end;
    luar_task_on_end(t, &f->end);
    return 1;
}

/* land(flight, how, value): "value" (value: the stored form), "nil", "err" (value: the err
 * table) or "raise" (value: what fn raised). Wakes the waiters. [-3, +0] */
static int remember_land(lua_State *L)
{
    flight_t *f = luaL_checkudata(L, 1, FLIGHT_MT);
    const char *how = luaL_checkstring(L, 2);
    lua_settop(L, 3);
    if (f->landed)
        return 0;
    f->outcome = strcmp(how, "value") == 0 ? FLIGHT_VALUE
                 : strcmp(how, "nil") == 0 ? FLIGHT_NIL
                 : strcmp(how, "err") == 0 ? FLIGHT_ERR
                                           : FLIGHT_RAISE;
    lua_pushvalue(L, 3);
    lua_setiuservalue(L, 1, 1);
    push_flights(L);
    lua_getiuservalue(L, 1, 2);
    if (lua_rawget(L, -2) == LUA_TUSERDATA && lua_touserdata(L, -1) == f) {
        lua_getiuservalue(L, 1, 2);
        lua_pushnil(L);
        lua_rawset(L, -4);
    }
    lua_pop(L, 2);
    if (f->leader)
        luar_task_on_end_remove(f->leader, &f->end);
    f->leader = NULL;
    f->landed = 1;
    wake(f);
    return 0;
}

/* get(key) → as cache.get, uncounted. [-1, +(1|2)] */
static int remember_get(lua_State *L)
{
    return wait_backend(L, OP_GET, 0, lua_tostring(L, 1), NULL, 0, 0, 0);
}

/* encode(value) → stored form | nil, err (invalid, too_large). [-1, +(1|2)] */
static int remember_encode(lua_State *L)
{
    lua_settop(L, 1);
    if (encode_value(L, 1, 0, "cache.remember") != 1)
        return 2;
    int n = too_large(L, "cache.remember", NULL);
    return n ? n : 1;
}

/* put(key, stored, ttl) → true | nil, err. [-3, +(1|2)] */
static int remember_put(lua_State *L)
{
    size_t len;
    const char *stored = lua_tolstring(L, 2, &len);
    return wait_backend(L, OP_SET, 0, lua_tostring(L, 1), stored, len, 0, lua_tonumber(L, 3));
}

/* count(result): one remember call in the metric. [-1, +0] */
static int remember_count(lua_State *L)
{
    count("remember", luaL_checkstring(L, 1));
    return 0;
}

/* clang-format off */
static const char remember_lua[] =
"local join, get, lead, land, encode, put, count = ...\n"
"return function(key, ttl, fn)\n"
"  local waited, v, e = join(key)\n"
"  if waited then return v, e end\n"
"  v, e = get(key)\n"
"  if e ~= nil then count(e.kind) return nil, e end\n"
"  if v ~= nil then count('hit') return v end\n"
"  waited, v, e = join(key)\n" /* another call began while the get waited */
"  if waited then return v, e end\n"
"  local flight = lead(key)\n"
"  local ok, value = pcall(fn)\n"
"  if not ok then\n"
"    land(flight, 'raise', value)\n"
"    count('error')\n"
"    error(value, 0)\n"
"  end\n"
"  if value == nil then land(flight, 'nil') count('miss') return nil end\n"
"  local stored, err = encode(value)\n"
"  if stored ~= nil then\n"
"    local _\n"
"    _, err = put(key, stored, ttl)\n"
"  end\n"
"  if err ~= nil then land(flight, 'err', err) count(err.kind) return nil, err end\n"
"  land(flight, 'value', stored)\n"
"  count('miss')\n"
"  return value\n"
"end\n";
/* clang-format on */

static int remember_done(lua_State *L, int status, lua_KContext base)
{
    (void)status;
    return lua_gettop(L) - (int)base;
}

/*
 * cache.remember(key, ttl, fn) ⏸ → value | nil | nil, err: the cached value, else fn()'s
 * result, stored for ttl seconds (nil: no expiry). Raises what fn raised. [-3, +(1|2)]
 */
static int cache_remember(lua_State *L)
{
    check_key(L, 1);
    double ttl = check_ttl(L, 2);
    luaL_checktype(L, 3, LUA_TFUNCTION);
    lua_settop(L, 3);
    int base = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushstring(L, lua_tostring(L, 1)); /* a number key as its string */
    lua_pushnumber(L, ttl);
    lua_pushvalue(L, 3);
    lua_callk(L, 3, LUA_MULTRET, base, remember_done);
    return remember_done(L, LUA_OK, base);
}

int luaopen_luar_cache(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"get", cache_get},   {"set", cache_set}, {"delete", cache_delete},
        {"incr", cache_incr}, {NULL, NULL},
    };
    if (luaL_newmetatable(L, FLIGHT_MT)) {
        lua_pushcfunction(L, flight_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    luaL_newlib(L, fns);
    if (luaL_loadbuffer(L, remember_lua, sizeof remember_lua - 1, "=luar.cache") != LUA_OK)
        return lua_error(L);
    lua_pushcfunction(L, remember_join);
    lua_pushcfunction(L, remember_get);
    lua_pushcfunction(L, remember_lead);
    lua_pushcfunction(L, remember_land);
    lua_pushcfunction(L, remember_encode);
    lua_pushcfunction(L, remember_put);
    lua_pushcfunction(L, remember_count);
    lua_call(L, 7, 1);
    lua_pushcclosure(L, cache_remember, 1);
    lua_setfield(L, -2, "remember");
    return 1;
}
