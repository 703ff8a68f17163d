/*
 * luar.redis: the module table, the command connection and the conversion of replies to
 * Lua (see mod_redis.h and docs/redis.md).
 *
 * Why a connection of its own rather than the queue's: a script's commands can be slow
 * (KEYS, a large SMEMBERS) or large, and the connection fails every command in flight when
 * one reply is late; on the queue's connection they would delay claims and enqueues, and a
 * script's slow command could fail a webhook's enqueue. One more connection per process is
 * the price. It is the same mechanism (host/redis/conn.c): pipelined, so the commands of
 * a thousand coroutines share a few round trips, TLS, AUTH/SELECT, reconnects with
 * backoff, and fast failures during an outage.
 *
 * Replies (like OpenResty's lua-resty-redis): status → string ("OK", "PONG"); bulk string →
 * string; integer → integer; nil → nil at the top, redis.null inside an array (so the
 * positions of MGET's answers stay put); array → sequence, nested; error → nil,
 * err{kind = "redis", message, code} at the top, an err table inside an array.
 */
#include "lua/mod_redis.h"
#include "common/error.h"
#include "lua/error.h"
#include "lua/modules.h"
#include "queue/queue.h"

#include <lauxlib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static struct {
    uv_loop_t *loop;
    int have_url;
    luar_redis_url_t url;
    char shown[512];    /* the URL for messages, password hidden */
    const char *source; /* "redis.url" or "queue" */
    luar_redis_t *conn; /* the command connection, once opened */
    int closed;         /* luar_redis_module_close ran: no new connection */
    luar_redis_stats_t last_stats;
} mod;

/* ---- setup and the command connection ------------------------------------------------ */

static int is_redis_url(const char *u)
{
    return u != NULL && (strncmp(u, "redis://", 8) == 0 || strncmp(u, "rediss://", 9) == 0);
}

int luar_redis_module_setup(uv_loop_t *loop, const char *url, const char *queue_url,
                            luar_buf_t *err)
{
    if (mod.conn != NULL || mod.have_url)
        luar_redis_module_close(); /* set up twice: the first connection goes */
    memset(&mod, 0, sizeof mod);
    mod.loop = loop;
    const char *chosen = url != NULL ? url : is_redis_url(queue_url) ? queue_url : NULL;
    if (chosen == NULL)
        return 0;
    mod.source = url != NULL ? "redis.url" : "queue";
    luar_queue_url_redact(chosen, mod.shown, sizeof mod.shown);
    luar_buf_t why;
    luar_buf_init(&why, 0);
    int rc = luar_redis_url_parse(chosen, &mod.url, &why);
    if (rc) {
        luar_buf_appendf(err, "%s %s: %s", mod.source, mod.shown,
                         why.data ? why.data : luar_strerror(rc));
        luar_buf_free(&why);
        return rc;
    }
    luar_buf_free(&why);
    mod.have_url = 1;
    return 0;
}

const luar_redis_url_t *luar_redis_module_url(void)
{
    return mod.have_url ? &mod.url : NULL;
}

const char *luar_redis_module_error(int rc)
{
    if (rc == LUAR_EIO && mod.conn != NULL && luar_redis_error(mod.conn)[0])
        return luar_redis_error(mod.conn);
    return luar_strerror(rc);
}

uv_loop_t *luar_redis_module_loop(void)
{
    return mod.loop;
}

luar_redis_t *luar_redis_module_conn(luar_buf_t *why)
{
    if (mod.conn != NULL)
        return mod.conn;
    if (mod.closed) {
        luar_buf_puts(why, "luar.redis is closed (the host is shutting down)");
        return NULL;
    }
    if (!mod.have_url || mod.loop == NULL) {
        luar_buf_puts(why, "no Redis configured for luar.redis: set redis = { url = "
                           "\"redis://host:6379/0\" } in the configuration, or use a "
                           "redis:// queue");
        return NULL;
    }
    luar_buf_t err;
    luar_buf_init(&err, 0);
    int rc = luar_redis_open(mod.loop, &mod.url, &mod.conn, &err);
    if (rc) {
        luar_buf_appendf(why, "%s %s: %s", mod.source, mod.shown,
                         err.data ? err.data : luar_strerror(rc));
        mod.conn = NULL;
    }
    luar_buf_free(&err);
    return mod.conn;
}

void luar_redis_module_use_vm(luar_vm_t *vm)
{
    luar_redis_pubsub_use_vm(vm);
}

void luar_redis_module_close(void)
{
    luar_redis_pubsub_close();
    if (mod.conn != NULL) {
        luar_redis_stats(mod.conn, &mod.last_stats);
        luar_redis_close(mod.conn, NULL, NULL);
    }
    mod.conn = NULL;
    mod.closed = 1;
    if (mod.have_url)
        luar_redis_url_free(&mod.url);
    mod.have_url = 0;
}

void luar_redis_module_stats(luar_redis_stats_t *commands, luar_redis_stats_t *subscriber)
{
    if (mod.conn != NULL)
        luar_redis_stats(mod.conn, commands);
    else
        *commands = mod.last_stats;
    luar_redis_pubsub_stats(subscriber);
}

/* ---- flattened replies --------------------------------------------------------------- */

/*
 * A reply is copied out of hiredis's tree (valid during the callback only) into one
 * buffer: a type byte, then an 8-byte length and the bytes (string, status, error), an
 * 8-byte integer, nothing (nil), or an 8-byte count followed by the elements (array).
 */
int luar_redis_flatten(const redisReply *r, luar_buf_t *out)
{
    unsigned char type = (unsigned char)r->type;
    if (luar_buf_append(out, &type, 1))
        return LUAR_ENOMEM;
    uint64_t n;
    int64_t i;
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
        n = (uint64_t)r->len;
        if (luar_buf_append(out, &n, sizeof n) || luar_buf_append(out, r->str, r->len))
            return LUAR_ENOMEM;
        return 0;
    case REDIS_REPLY_INTEGER:
        i = (int64_t)r->integer;
        return luar_buf_append(out, &i, sizeof i) ? LUAR_ENOMEM : 0;
    case REDIS_REPLY_ARRAY:
        n = (uint64_t)r->elements;
        if (luar_buf_append(out, &n, sizeof n))
            return LUAR_ENOMEM;
        for (size_t k = 0; k < r->elements; k++)
            if (luar_redis_flatten(r->element[k], out))
                return LUAR_ENOMEM;
        return 0;
    default: /* REDIS_REPLY_NIL */
        return 0;
    }
}

struct reader {
    const unsigned char *p, *end;
};

static uint64_t read_u64(struct reader *rd)
{
    uint64_t v = 0;
    if ((size_t)(rd->end - rd->p) >= sizeof v) {
        memcpy(&v, rd->p, sizeof v);
        rd->p += sizeof v;
    }
    return v;
}

int luar_redis_flat_peek(const luar_buf_t *flat, const char **str, size_t *len, long long *integer)
{
    if (flat->len == 0)
        return -1;
    struct reader rd = {(const unsigned char *)flat->data + 1,
                        (const unsigned char *)flat->data + flat->len};
    int type = (unsigned char)flat->data[0];
    *str = NULL;
    *len = 0;
    *integer = 0;
    if (type == REDIS_REPLY_STRING || type == REDIS_REPLY_STATUS || type == REDIS_REPLY_ERROR) {
        *len = (size_t)read_u64(&rd);
        *str = (const char *)rd.p;
    } else if (type == REDIS_REPLY_INTEGER) {
        *integer = (long long)(int64_t)read_u64(&rd);
    }
    return type;
}

/* The code of an error reply: its first word when upper case ("WRONGTYPE"), else "ERR". */
static void push_error_fields(lua_State *L, const char *s, size_t len)
{
    size_t n = 0;
    while (n < len && n < 32 && ((s[n] >= 'A' && s[n] <= 'Z') || s[n] == '_'))
        n++;
    if (n == 0 || (n < len && s[n] != ' '))
        n = 0;
    lua_pushlstring(L, n ? s : "ERR", n ? n : 3);
    lua_setfield(L, -2, "code");
}

/* Pushes one value (nested: `top` is 0). [-0, +1] */
static void push_value(lua_State *L, struct reader *rd, int top)
{
    luaL_checkstack(L, 4, "redis reply too deep");
    int type = rd->p < rd->end ? *rd->p++ : REDIS_REPLY_NIL;
    uint64_t n;
    switch (type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        n = read_u64(rd);
        lua_pushlstring(L, (const char *)rd->p, (size_t)n);
        rd->p += n;
        return;
    case REDIS_REPLY_ERROR:
        n = read_u64(rd);
        luar_lua_push_error(L, "redis", "%s", ""); /* the message may hold '%' or NULs */
        lua_pushlstring(L, (const char *)rd->p, (size_t)n);
        lua_setfield(L, -2, "message");
        push_error_fields(L, (const char *)rd->p, (size_t)n);
        rd->p += n;
        return;
    case REDIS_REPLY_INTEGER:
        lua_pushinteger(L, (lua_Integer)(int64_t)read_u64(rd));
        return;
    case REDIS_REPLY_ARRAY:
        n = read_u64(rd);
        lua_createtable(L, n < INT32_MAX ? (int)n : 0, 0);
        for (uint64_t k = 0; k < n; k++) {
            push_value(L, rd, 0);
            lua_rawseti(L, -2, (lua_Integer)k + 1);
        }
        return;
    default:
        if (top)
            lua_pushnil(L);
        else
            lua_pushlightuserdata(L, NULL); /* redis.null, which is also json.null */
        return;
    }
}

int luar_redis_push_flat(lua_State *L, const luar_buf_t *flat)
{
    struct reader rd = {(const unsigned char *)flat->data,
                        (const unsigned char *)flat->data + flat->len};
    int error = flat->len > 0 && (unsigned char)flat->data[0] == REDIS_REPLY_ERROR;
    if (error)
        lua_pushnil(L);
    push_value(L, &rd, 1);
    return error ? 2 : 1;
}

/* ---- one command, waited for through the bridge --------------------------------------- */

struct call_op {
    int canceled, fired;
    luar_redis_wait_t wait;
};

luar_redis_wait_t *luar_redis_wait_of(luar_bridge_op_t *op)
{
    return &((struct call_op *)luar_bridge_op_data(op))->wait;
}

static void call_cb(void *arg, int rc, const redisReply *reply)
{
    luar_bridge_op_t *op = arg;
    struct call_op *c = luar_bridge_op_data(op);
    c->fired = 1;
    if (c->canceled) { /* the task is gone; the command ran (or not) all the same */
        luar_bridge_op_free(op);
        return;
    }
    c->wait.rc = rc;
    if (rc == 0 && luar_redis_flatten(reply, &c->wait.reply)) {
        c->wait.rc = LUAR_ENOMEM;
        snprintf(c->wait.why, sizeof c->wait.why, "out of memory copying the reply");
    } else if (rc != 0) {
        snprintf(c->wait.why, sizeof c->wait.why, "%s", luar_redis_module_error(rc));
    }
    luar_bridge_complete(op);
}

static void call_cleanup(luar_bridge_op_t *op, int canceled)
{
    struct call_op *c = luar_bridge_op_data(op);
    luar_buf_free(&c->wait.reply);
    if (canceled && !c->fired) {
        c->canceled = 1; /* call_cb frees the op when the reply comes */
        return;
    }
    luar_bridge_op_free(op);
}

int luar_redis_yield(lua_State *L, const char *what, int argc, const char **argv,
                     const size_t *lens, void *udata, luar_bridge_push_fn push)
{
    luar_bridge_op_t *op = luar_bridge_op_new(L, what, sizeof(struct call_op));
    luar_bridge_op_set_cleanup(op, call_cleanup);
    struct call_op *c = luar_bridge_op_data(op);
    luar_buf_init(&c->wait.reply, 0);
    c->wait.udata = udata;
    luar_buf_t why;
    luar_buf_init(&why, 0);
    luar_redis_t *conn = luar_redis_module_conn(&why);
    int rc = conn ? luar_redis_send(conn, argc, argv, lens, call_cb, op) : LUAR_ECLOSED;
    if (rc) {
        c->fired = 1;
        c->wait.rc = rc;
        snprintf(c->wait.why, sizeof c->wait.why, "%s", why.len ? why.data : luar_strerror(rc));
        luar_bridge_complete(op);
    }
    luar_buf_free(&why);
    return luar_bridge_yield(L, op, push);
}

int luar_redis_push_result(lua_State *L, luar_bridge_op_t *op)
{
    luar_redis_wait_t *w = luar_redis_wait_of(op);
    if (w->rc)
        return luar_lua_fail(L, "backend", "%s", w->why);
    return luar_redis_push_flat(L, &w->reply);
}

/* ---- redis.call ----------------------------------------------------------------------- */

/*
 * Commands a shared pipelined connection cannot run for one coroutine: they change the
 * connection's state for every coroutine of the process, or hold it until something
 * happens. Refused with the reason and what to use instead.
 */
static const struct refused {
    const char *name;
    const char *why;
} refused[] = {
    {"MULTI", "a transaction would take in other coroutines' commands: use EVAL (a Lua "
              "script runs atomically)"},
    {"EXEC", "transactions are not available: use EVAL"},
    {"DISCARD", "transactions are not available: use EVAL"},
    {"WATCH", "transactions are not available: use EVAL"},
    {"UNWATCH", "transactions are not available: use EVAL"},
    {"SUBSCRIBE", "use redis.subscribe(channel, fn) while the scripts load"},
    {"PSUBSCRIBE", "use redis.psubscribe(pattern, fn) while the scripts load"},
    {"SSUBSCRIBE", "sharded pub/sub is not available"},
    {"UNSUBSCRIBE", "subscriptions live with the scripts that declared them"},
    {"PUNSUBSCRIBE", "subscriptions live with the scripts that declared them"},
    {"SUNSUBSCRIBE", "sharded pub/sub is not available"},
    {"MONITOR", "it would turn the shared connection into a monitor"},
    {"SELECT", "the database is the URL's (/db): it is shared by every coroutine"},
    {"AUTH", "credentials are the URL's"},
    {"HELLO", "the connection speaks RESP2"},
    {"RESET", "it would reset the shared connection"},
    {"QUIT", "it would close the shared connection"},
    {"BLPOP", "a blocking command would hold the connection every coroutine shares"},
    {"BRPOP", "a blocking command would hold the connection every coroutine shares"},
    {"BRPOPLPUSH", "a blocking command would hold the connection every coroutine shares"},
    {"BLMOVE", "a blocking command would hold the connection every coroutine shares"},
    {"BLMPOP", "a blocking command would hold the connection every coroutine shares"},
    {"BZPOPMIN", "a blocking command would hold the connection every coroutine shares"},
    {"BZPOPMAX", "a blocking command would hold the connection every coroutine shares"},
    {"BZMPOP", "a blocking command would hold the connection every coroutine shares"},
    {"WAIT", "a blocking command would hold the connection every coroutine shares"},
    {"WAITAOF", "a blocking command would hold the connection every coroutine shares"},
    {NULL, NULL},
};

/* Raises when the command at argv[0] may not run on the shared connection. */
static void check_command(lua_State *L, int argc, const char **argv, const size_t *lens)
{
    for (const struct refused *r = refused; r->name; r++)
        if (strlen(r->name) == lens[0] && strncasecmp(argv[0], r->name, lens[0]) == 0)
            luaL_error(L, "redis.call: %s is not allowed (%s)", r->name, r->why);
    if (lens[0] == 6 && strncasecmp(argv[0], "CLIENT", 6) == 0 && argc > 1 && lens[1] == 5 &&
        strncasecmp(argv[1], "REPLY", 5) == 0)
        luaL_error(L, "redis.call: CLIENT REPLY is not allowed (replies are matched to "
                      "callers in order)");
    if ((lens[0] == 5 && strncasecmp(argv[0], "XREAD", 5) == 0) ||
        (lens[0] == 10 && strncasecmp(argv[0], "XREADGROUP", 10) == 0)) {
        for (int i = 1; i < argc; i++)
            if (lens[i] == 5 && strncasecmp(argv[i], "BLOCK", 5) == 0)
                luaL_error(L,
                           "redis.call: %s BLOCK is not allowed (a blocking command would "
                           "hold the connection every coroutine shares)",
                           lens[0] == 5 ? "XREAD" : "XREADGROUP");
    }
}

/*
 * Reads the arguments from `first` to the top into argv/lens (strings on the stack; numbers
 * converted in place: integers as such, floats as the shortest text that reads back
 * exactly). The arrays live in a userdata pushed on the stack. Raises on other types.
 * [-0, +1]
 */
static int collect_args(lua_State *L, const char *what, int first, const char ***argv_out,
                        size_t **lens_out)
{
    int top = lua_gettop(L);
    int argc = top - first + 1;
    if (argc < 1)
        luaL_error(L, "%s: expected a command name", what);
    void *mem = lua_newuserdatauv(L, (size_t)argc * (sizeof(char *) + sizeof(size_t)), 0);
    const char **argv = mem;
    size_t *lens = (size_t *)(argv + argc);
    for (int i = 0; i < argc; i++) {
        int idx = first + i;
        switch (lua_type(L, idx)) {
        case LUA_TSTRING:
            break;
        case LUA_TNUMBER:
            if (lua_isinteger(L, idx)) {
                lua_pushfstring(L, "%I", (LUAI_UACINT)lua_tointeger(L, idx));
            } else {
                /* The shortest text that reads back as the same double: 0.1, not
                 * 0.10000000000000001, and never a rounded one. */
                double d = (double)lua_tonumber(L, idx);
                char b[64];
                for (int prec = 15; prec <= 17; prec++) {
                    snprintf(b, sizeof b, "%.*g", prec, d);
                    if (strtod(b, NULL) == d)
                        break;
                }
                lua_pushstring(L, b);
            }
            lua_replace(L, idx);
            break;
        default:
            return luaL_error(L, "%s: argument #%d: expected a string or number, got %s", what, idx,
                              luaL_typename(L, idx));
        }
        argv[i] = lua_tolstring(L, idx, &lens[i]);
    }
    *argv_out = argv;
    *lens_out = lens;
    return argc;
}

/* redis.call(command, ...) ⏸ → reply | nil, err. [-n, +(1|2)] */
static int redis_call(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TSTRING);
    const char **argv = NULL;
    size_t *lens = NULL;
    int argc = collect_args(L, "redis.call", 1, &argv, &lens);
    check_command(L, argc, argv, lens);
    return luar_redis_yield(L, "redis.call", argc, argv, lens, NULL, luar_redis_push_result);
}

/* redis.publish(channel, message) ⏸ → receivers | nil, err. [-2, +(1|2)] */
static int redis_publish(lua_State *L)
{
    size_t lens[3];
    const char *argv[3] = {"PUBLISH", NULL, NULL};
    lens[0] = 7;
    argv[1] = luaL_checklstring(L, 1, &lens[1]);
    argv[2] = luaL_checklstring(L, 2, &lens[2]);
    return luar_redis_yield(L, "redis.publish", 3, argv, lens, NULL, luar_redis_push_result);
}

int luaopen_luar_redis(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"call", redis_call},
        {"publish", redis_publish},
        {NULL, NULL},
    };
    luaL_newlib(L, fns);
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    luar_redis_lock_open(L);
    luar_redis_pubsub_open(L);
    /* Connect now, so the first call does not pay for it and a bad TLS file shows early. */
    luar_buf_t why;
    luar_buf_init(&why, 0);
    if (mod.have_url && luar_redis_module_conn(&why) == NULL && why.len) {
        lua_pushlstring(L, why.data, why.len);
        luar_buf_free(&why);
        return lua_error(L);
    }
    luar_buf_free(&why);
    return 1;
}
