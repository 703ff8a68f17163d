/*
 * redis.subscribe(channel, fn) and redis.psubscribe(pattern, fn): the subscriber.
 *
 * Subscriptions are declared while the scripts load, like routes, and belong to that
 * generation of the scripts (a list in the VM's registry). The process has one subscriber
 * connection (host/redis/conn.c in subscribe mode), opened when a serving generation
 * declares a subscription. luar_redis_module_use_vm() makes a generation's list live: the
 * connection stays, channels of both generations stay subscribed (nothing is missed on
 * them), new ones are subscribed and dropped ones unsubscribed; from then on messages go
 * to the new generation's handlers. After a reconnect (Redis restarted, the network broke)
 * every channel is subscribed again on the new connection; messages published while no
 * connection was subscribed are lost: Redis pub/sub delivers at most once.
 *
 * Each message runs every handler declared for its channel (or pattern) in a task of its
 * own, fn(message, channel[, pattern]), started in the order the messages arrived. A
 * handler that raises is logged and counted (luar_lua_errors_total{where="redis"}); the
 * subscription goes on. At most MAX_INFLIGHT handlers run at once in a process; messages
 * past that are dropped and counted, since Redis would otherwise buffer them for us until
 * it disconnects a slow subscriber (client-output-buffer-limit pubsub).
 *
 * A PING every few seconds keeps a silent connection honest: the connection's reply
 * timeout then notices a server that went away without closing it.
 */
#include "common/error.h"
#include "log/log.h"
#include "plugin/hooks.h"
#include "lua/mod_redis.h"
#include "lua/vm_internal.h"
#include "metrics/metrics.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_INFLIGHT 10000
#define NAME_MAX_LEN 1024

/* One redis.subscribe / psubscribe of a generation. */
typedef struct sub {
    char *name;
    size_t len;
    int pattern;
    int fn_ref; /* registry reference of the handler */
} sub_t;

/* A generation's subscriptions: a userdata in its registry (freed with the state). */
typedef struct subs {
    sub_t *items;
    size_t n, cap;
} subs_t;

/* A channel or pattern subscribed on the current connection. */
typedef struct active {
    char *name;
    size_t len;
    int pattern;
} active_t;

static const char subs_key = 0; /* the registry key of a VM's subs_t */

static struct {
    luar_redis_t *conn;
    luar_vm_t *vm; /* the live generation, held */
    subs_t *subs;  /* its subscriptions */
    active_t *active;
    size_t nactive, cap;
    size_t pending; /* SUBSCRIBE replies still expected on this connection */
    unsigned epoch; /* +1 per connection: replies of an older one do not count */
    int announce;   /* log when they have all come */
    uv_timer_t ping;
    int ping_open;
    size_t inflight;
    luar_redis_stats_t last_stats;
} ps;

/* ---- counting -------------------------------------------------------------------------- */

static void count(const char *outcome)
{
    static const char *const labels[] = {"outcome"};
    luar_metric_t *m = NULL;
    if (luar_metrics_register(LUAR_METRIC_COUNTER, "luar_redis_messages_total",
                              "Redis pub/sub messages by outcome (handled, failed, dropped)",
                              labels, 1, NULL, 0, &m, NULL) != 0)
        return;
    const char *values[] = {outcome};
    luar_metric_add(m, values, 1);
}

/* ---- declaring ------------------------------------------------------------------------- */

static int subs_gc(lua_State *L)
{
    subs_t *s = lua_touserdata(L, 1);
    for (size_t i = 0; i < s->n; i++)
        free(s->items[i].name);
    free(s->items);
    s->items = NULL;
    s->n = s->cap = 0;
    return 0;
}

/* The subscriptions of the VM owning `L`, created on first use. [-0, +0] */
static subs_t *subs_here(lua_State *L)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &subs_key) == LUA_TUSERDATA) {
        subs_t *s = lua_touserdata(L, -1);
        lua_pop(L, 1);
        return s;
    }
    lua_pop(L, 1);
    subs_t *s = lua_newuserdatauv(L, sizeof *s, 0);
    memset(s, 0, sizeof *s);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, subs_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &subs_key);
    return s;
}

/* subscribe / psubscribe (upvalue 1: 1 for patterns). [-2, +0] */
static int declare(lua_State *L)
{
    int pattern = (int)lua_tointeger(L, lua_upvalueindex(1));
    const char *what = pattern ? "redis.psubscribe" : "redis.subscribe";
    size_t len;
    const char *name = luaL_checklstring(L, 1, &len);
    luaL_argcheck(L, len > 0 && len <= NAME_MAX_LEN, 1, "expected 1 to 1024 bytes");
    luaL_checktype(L, 2, LUA_TFUNCTION);
    luar_vm_t *vm = luar_vm_of(L);
    if (!vm->loading && !vm->scripting)
        return luaL_error(L,
                          "%s: subscriptions are declared while the scripts load (in "
                          "main.lua or a module it requires), like routes",
                          what);
    subs_t *s = subs_here(L);
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 8;
        sub_t *items = realloc(s->items, cap * sizeof *items);
        if (items == NULL)
            return luaL_error(L, "%s: not enough memory", what);
        s->items = items;
        s->cap = cap;
    }
    char *copy = luar_memdup(name, len);
    if (copy == NULL)
        return luaL_error(L, "%s: not enough memory", what);
    lua_pushvalue(L, 2);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    s->items[s->n++] = (sub_t){copy, len, pattern, ref};
    return 0;
}

void luar_redis_pubsub_open(lua_State *L)
{
    lua_pushinteger(L, 0);
    lua_pushcclosure(L, declare, 1);
    lua_setfield(L, -2, "subscribe");
    lua_pushinteger(L, 1);
    lua_pushcclosure(L, declare, 1);
    lua_setfield(L, -2, "psubscribe");
}

/* ---- handlers --------------------------------------------------------------------------- */

struct message {
    int fn_ref;
    const char *payload, *channel, *pattern;
    size_t payload_len, channel_len, pattern_len;
};

/* What a failing handler's log line names. */
struct handler_ctx {
    char channel[128];
    char pattern[128];
};

static int handler_setup(lua_State *L, void *arg)
{
    struct message *m = arg;
    lua_rawgeti(L, LUA_REGISTRYINDEX, m->fn_ref);
    lua_pushlstring(L, m->payload, m->payload_len);
    lua_pushlstring(L, m->channel, m->channel_len);
    if (m->pattern == NULL)
        return 2;
    lua_pushlstring(L, m->pattern, m->pattern_len);
    return 3;
}

static void handler_done(luar_task_t *task, int status, void *arg)
{
    struct handler_ctx *ctx = arg;
    ps.inflight--;
    if (status == LUAR_ELUA) {
        const char *error = luar_task_error(task), *tb = luar_task_traceback(task);
        luar_buf_t f;
        luar_buf_init(&f, 0);
        luar_buf_puts(&f, "\"channel\":");
        luar_buf_append_json_string(&f, ctx->channel, strlen(ctx->channel));
        if (ctx->pattern[0]) {
            luar_buf_puts(&f, ",\"pattern\":");
            luar_buf_append_json_string(&f, ctx->pattern, strlen(ctx->pattern));
        }
        luar_buf_puts(&f, ",\"error\":");
        luar_buf_append_json_string(&f, error, strlen(error));
        luar_buf_puts(&f, ",\"traceback\":");
        luar_buf_append_json_string(&f, tb, strlen(tb));
        luar_plugin_error_t e = {.where = "redis", .message = error, .traceback = tb};
        luar_plugin_report_error(&e, LUAR_LOG_ERROR, "redis handler error", f.data, f.len);
        luar_buf_free(&f);
        luar_vm_count_error("redis");
        count("failed");
    } else if (status == 0) {
        count("handled");
    }
    free(ctx);
}

static void run_handler(const sub_t *s, struct message *m)
{
    static uint64_t last_drop_log;
    if (ps.inflight >= MAX_INFLIGHT) {
        count("dropped");
        uint64_t now = uv_hrtime();
        if (now - last_drop_log > 1000000000ull) {
            last_drop_log = now;
            luar_logf(LUAR_LOG_WARN,
                      "redis: %d message handlers already run; dropping "
                      "messages on \"%.*s\" until some finish",
                      MAX_INFLIGHT, (int)(m->channel_len > 100 ? 100 : m->channel_len), m->channel);
        }
        return;
    }
    struct handler_ctx *ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL) {
        count("dropped");
        return;
    }
    snprintf(ctx->channel, sizeof ctx->channel, "%.*s", (int)m->channel_len, m->channel);
    if (m->pattern)
        snprintf(ctx->pattern, sizeof ctx->pattern, "%.*s", (int)m->pattern_len, m->pattern);
    m->fn_ref = s->fn_ref;
    luar_buf_t err;
    luar_buf_init(&err, 1024);
    int rc = luar_task_spawn(ps.vm, NULL, handler_setup, m, handler_done, ctx, NULL, &err);
    if (rc) {
        luar_logf(LUAR_LOG_ERROR, "redis: cannot run the handler of \"%s\": %s", ctx->channel,
                  err.len ? err.data : luar_strerror(rc));
        count("dropped");
        free(ctx);
    } else {
        ps.inflight++;
    }
    luar_buf_free(&err);
}

/* A message or pmessage from the server. */
static void on_push(void *arg, const redisReply *reply)
{
    (void)arg;
    if (ps.vm == NULL || ps.subs == NULL)
        return;
    struct message m = {0};
    int pattern = reply->elements == 4;
    const redisReply *ch = reply->element[pattern ? 2 : 1];
    const redisReply *payload = reply->element[pattern ? 3 : 2];
    if (ch->type != REDIS_REPLY_STRING || payload->type != REDIS_REPLY_STRING)
        return;
    m.channel = ch->str;
    m.channel_len = ch->len;
    m.payload = payload->str;
    m.payload_len = payload->len;
    const redisReply *pat = pattern ? reply->element[1] : NULL;
    if (pat != NULL) {
        if (pat->type != REDIS_REPLY_STRING)
            return;
        m.pattern = pat->str;
        m.pattern_len = pat->len;
    }
    const char *key = pattern ? m.pattern : m.channel;
    size_t key_len = pattern ? m.pattern_len : m.channel_len;
    /* Index, not pointer: spawning runs Lua, which leaves the list alone, but be plain. */
    for (size_t i = 0; i < ps.subs->n; i++) {
        const sub_t *s = &ps.subs->items[i];
        if (s->pattern == pattern && s->len == key_len && memcmp(s->name, key, key_len) == 0)
            run_handler(s, &m);
    }
}

/* ---- keeping the connection's subscriptions in step ------------------------------------ */

struct sub_cmd {
    unsigned epoch;
    int subscribe;
    int pattern;
    char name[128];
};

static void on_sub_reply(void *arg, int rc, const redisReply *reply)
{
    struct sub_cmd *c = arg;
    if (rc == 0 && reply->type == REDIS_REPLY_ERROR)
        luar_logf(LUAR_LOG_ERROR, "redis: %s \"%s\" failed: %.*s",
                  c->subscribe ? (c->pattern ? "PSUBSCRIBE" : "SUBSCRIBE")
                               : (c->pattern ? "PUNSUBSCRIBE" : "UNSUBSCRIBE"),
                  c->name, (int)(reply->len > 300 ? 300 : reply->len), reply->str);
    if (c->subscribe && c->epoch == ps.epoch && ps.pending > 0 && --ps.pending == 0 &&
        ps.announce) {
        ps.announce = 0;
        if (rc == 0) {
            char f[64];
            int n = snprintf(f, sizeof f, "\"subscriptions\":%zu", ps.nactive);
            luar_log_write(LUAR_LOG_INFO, "redis subscriptions active", 26, f, (size_t)n);
        }
    }
    free(c);
}

static void send_sub(int subscribe, const char *name, size_t len, int pattern)
{
    struct sub_cmd *c = calloc(1, sizeof *c);
    if (c == NULL)
        return;
    c->epoch = ps.epoch;
    c->subscribe = subscribe;
    c->pattern = pattern;
    snprintf(c->name, sizeof c->name, "%.*s", (int)len, name);
    const char *cmd = subscribe ? (pattern ? "PSUBSCRIBE" : "SUBSCRIBE")
                                : (pattern ? "PUNSUBSCRIBE" : "UNSUBSCRIBE");
    const char *argv[2] = {cmd, name};
    size_t lens[2] = {strlen(cmd), len};
    if (luar_redis_send(ps.conn, 2, argv, lens, on_sub_reply, c)) {
        free(c);
        return;
    }
    if (subscribe)
        ps.pending++;
}

static int wanted(const char *name, size_t len, int pattern)
{
    for (size_t i = 0; ps.subs && i < ps.subs->n; i++) {
        const sub_t *s = &ps.subs->items[i];
        if (s->pattern == pattern && s->len == len && memcmp(s->name, name, len) == 0)
            return 1;
    }
    return 0;
}

static int is_active(const char *name, size_t len, int pattern)
{
    for (size_t i = 0; i < ps.nactive; i++)
        if (ps.active[i].pattern == pattern && ps.active[i].len == len &&
            memcmp(ps.active[i].name, name, len) == 0)
            return 1;
    return 0;
}

static void clear_active(void)
{
    for (size_t i = 0; i < ps.nactive; i++)
        free(ps.active[i].name);
    ps.nactive = 0;
}

static void on_ping_reply(void *arg, int rc, const redisReply *reply)
{
    (void)arg;
    (void)rc;
    (void)reply;
}

static void on_ping(uv_timer_t *t)
{
    (void)t;
    if (ps.conn && ps.nactive > 0 && luar_redis_ready(ps.conn)) {
        const char *argv[1] = {"PING"};
        luar_redis_send(ps.conn, 1, argv, NULL, on_ping_reply, NULL);
    }
}

/* Subscribes what the live generation wants and is not subscribed, and the reverse. */
static void sync_subscriptions(void)
{
    if (ps.conn == NULL || !luar_redis_ready(ps.conn))
        return; /* on_ready does it once connected */
    size_t kept = 0;
    for (size_t i = 0; i < ps.nactive; i++) {
        active_t *a = &ps.active[i];
        if (wanted(a->name, a->len, a->pattern)) {
            ps.active[kept++] = *a;
        } else {
            send_sub(0, a->name, a->len, a->pattern);
            free(a->name);
        }
    }
    ps.nactive = kept;
    for (size_t i = 0; ps.subs && i < ps.subs->n; i++) {
        const sub_t *s = &ps.subs->items[i];
        if (is_active(s->name, s->len, s->pattern))
            continue;
        if (ps.nactive == ps.cap) {
            size_t cap = ps.cap ? 2 * ps.cap : 8;
            active_t *a = realloc(ps.active, cap * sizeof *a);
            if (a == NULL)
                return;
            ps.active = a;
            ps.cap = cap;
        }
        char *copy = luar_memdup(s->name, s->len);
        if (copy == NULL)
            return;
        ps.active[ps.nactive++] = (active_t){copy, s->len, s->pattern};
        send_sub(1, s->name, s->len, s->pattern);
        ps.announce = 1;
    }
}

static void on_ready(void *arg)
{
    (void)arg;
    clear_active(); /* a new connection subscribes to nothing */
    ps.pending = 0;
    ps.epoch++;
    sync_subscriptions();
}

/* Opens the subscriber connection; logs why not when it cannot. */
static void open_conn(void)
{
    const luar_redis_url_t *url = luar_redis_module_url();
    uv_loop_t *loop = luar_redis_module_loop();
    if (url == NULL || loop == NULL) {
        luar_logf(LUAR_LOG_ERROR,
                  "redis.subscribe: no Redis configured for luar.redis (set "
                  "redis = { url = \"redis://host:6379/0\" } in the configuration, or use a "
                  "redis:// queue): %zu subscriptions are inactive",
                  ps.subs->n);
        return;
    }
    luar_buf_t err;
    luar_buf_init(&err, 0);
    if (luar_redis_open(loop, url, &ps.conn, &err)) {
        luar_logf(LUAR_LOG_ERROR, "redis.subscribe: %s: subscriptions are inactive",
                  err.data ? err.data : "cannot open the connection");
        ps.conn = NULL;
        luar_buf_free(&err);
        return;
    }
    luar_buf_free(&err);
    luar_redis_set_push(ps.conn, on_push, NULL);
    luar_redis_set_on_ready(ps.conn, on_ready, NULL);
    double every = url->timeout / 2;
    every = every < 0.5 ? 0.5 : every > 30 ? 30 : every;
    uv_timer_init(loop, &ps.ping);
    ps.ping_open = 1;
    uv_timer_start(&ps.ping, on_ping, (uint64_t)(every * 1000), (uint64_t)(every * 1000));
    uv_unref((uv_handle_t *)&ps.ping);
}

void luar_redis_pubsub_use_vm(luar_vm_t *vm)
{
    luar_vm_t *old = ps.vm;
    ps.vm = vm;
    ps.subs = NULL;
    if (vm != NULL) {
        luar_vm_hold(vm);
        if (lua_rawgetp(vm->L, LUA_REGISTRYINDEX, &subs_key) == LUA_TUSERDATA)
            ps.subs = lua_touserdata(vm->L, -1);
        lua_pop(vm->L, 1);
    }
    if (ps.conn == NULL && ps.subs != NULL && ps.subs->n > 0)
        open_conn();
    sync_subscriptions();
    if (old != NULL)
        luar_vm_release(old); /* may close it: its list is no longer ours */
}

static void ping_closed(uv_handle_t *h)
{
    (void)h;
}

void luar_redis_pubsub_close(void)
{
    if (ps.vm != NULL)
        luar_vm_release(ps.vm);
    ps.vm = NULL;
    ps.subs = NULL;
    clear_active();
    free(ps.active);
    ps.active = NULL;
    ps.cap = 0;
    if (ps.ping_open)
        uv_close((uv_handle_t *)&ps.ping, ping_closed);
    ps.ping_open = 0;
    if (ps.conn != NULL) {
        luar_redis_stats(ps.conn, &ps.last_stats);
        luar_redis_close(ps.conn, NULL, NULL);
    }
    ps.conn = NULL;
    ps.pending = 0;
}

void luar_redis_pubsub_stats(luar_redis_stats_t *out)
{
    if (ps.conn != NULL)
        luar_redis_stats(ps.conn, out);
    else
        *out = ps.last_stats;
}
