/*
 * Route guards (see route_guard.h): the `rate` and `require_client_cert` options of a route,
 * their parsing, and the check before a handler, for Lua routes (inside the route's task)
 * and for requests handled in C (a callback).
 */
#include "lua/route_guard.h"
#include "common/buf.h"
#include "common/error.h"
#include "jobs/jobs.h"
#include "log/log.h"
#include "lua/mod_http.h"
#include "lua/mod_ratelimit.h"
#include "lua/vm_internal.h"
#include "queue/queue.h"
#include "ratelimit/ratelimit.h"

#include <ctype.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#define REFUSAL_MT "luar.route_guard.refusal"
#define NAME_MAX_LEN 120
#define HEADER_MAX_LEN 64
#define APP_JSON "application/json"

enum key_kind { KEY_IP, KEY_HEADER, KEY_FUNCTION };

struct luar_route_guard {
    int require_client_cert;
    int has_rate;
    luar_gcra_t limit;
    int key_kind;
    int key_ref;                     /* KEY_FUNCTION: the function, in the registry */
    int deny_on_error;               /* on_error = "deny" */
    char header[HEADER_MAX_LEN + 1]; /* KEY_HEADER: the name, lower-case */
    char name[NAME_MAX_LEN + 1];     /* metric label */
    char scope[NAME_MAX_LEN + 8];    /* "route:<name>": the backend keys' namespace */
};

/* ---- options ------------------------------------------------------------------------- */

static int token_char(int c)
{
    return isalnum(c) || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Reads the `rate` table at `t` into `g` (nothing allocated); raises on misuse. */
static void parse_rate(lua_State *L, int t, luar_route_guard_t *g)
{
    static const char *const known[] = {"limit", "key", "name", "on_error", NULL};
    lua_pushnil(L);
    while (lua_next(L, t) != 0) {
        int ok = 0;
        for (int i = 0; known[i] && lua_type(L, -2) == LUA_TSTRING; i++)
            ok |= strcmp(lua_tostring(L, -2), known[i]) == 0;
        if (!ok)
            luaL_error(L, "option rate: unknown field %s (expected limit, key, name, on_error)",
                       lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?");
        lua_pop(L, 1);
    }
    if (lua_getfield(L, t, "limit") != LUA_TSTRING ||
        luar_gcra_parse(&g->limit, lua_tostring(L, -1)))
        luaL_error(L, "option rate.limit: expected \"N/s\", \"N/m\", \"N/h\" or \"N/d\"%s%s",
                   lua_type(L, -1) == LUA_TSTRING ? ", got " : "",
                   lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "");
    lua_pop(L, 1);
    g->key_kind = KEY_IP;
    switch (lua_getfield(L, t, "key")) {
    case LUA_TNIL:
        break;
    case LUA_TFUNCTION:
        g->key_kind = KEY_FUNCTION;
        break;
    case LUA_TSTRING: {
        const char *k = lua_tostring(L, -1);
        if (strcmp(k, "ip") == 0)
            break;
        size_t n = strncmp(k, "header:", 7) == 0 ? strlen(k + 7) : 0;
        for (size_t i = 0; i < n; i++)
            if (!token_char((unsigned char)k[7 + i]))
                n = 0;
        if (n == 0 || n > HEADER_MAX_LEN)
            luaL_error(L,
                       "option rate.key: expected \"ip\", \"header:<Name>\" or a function, "
                       "got \"%s\"",
                       k);
        g->key_kind = KEY_HEADER;
        for (size_t i = 0; i <= n; i++)
            g->header[i] = (char)tolower((unsigned char)k[7 + i]);
        break;
    }
    default:
        luaL_error(L, "option rate.key: expected \"ip\", \"header:<Name>\" or a function");
    }
    lua_pop(L, 1);
    if (lua_getfield(L, t, "name") != LUA_TNIL) {
        size_t n = 0;
        const char *name = lua_tolstring(L, -1, &n);
        if (lua_type(L, -1) != LUA_TSTRING || n == 0 || n > NAME_MAX_LEN)
            luaL_error(L, "option rate.name: expected a string of 1 to %d characters",
                       NAME_MAX_LEN);
        memcpy(g->name, name, n + 1);
    }
    lua_pop(L, 1);
    if (lua_getfield(L, t, "on_error") != LUA_TNIL) {
        const char *v = lua_tostring(L, -1);
        if (lua_type(L, -1) != LUA_TSTRING || (strcmp(v, "allow") && strcmp(v, "deny")))
            luaL_error(L, "option rate.on_error: expected \"allow\" or \"deny\"");
        g->deny_on_error = strcmp(v, "deny") == 0;
    }
    lua_pop(L, 1);
    g->has_rate = 1;
}

luar_route_guard_t *luar_route_guard_parse(lua_State *L, int opts, const char *route)
{
    if (opts == 0)
        return NULL;
    luar_route_guard_t g;
    memset(&g, 0, sizeof g);
    g.key_ref = LUA_NOREF;
    snprintf(g.name, sizeof g.name, "%s", route);
    int type = lua_getfield(L, opts, "require_client_cert");
    if (type != LUA_TNIL && type != LUA_TBOOLEAN)
        luaL_error(L, "option require_client_cert: expected a boolean");
    g.require_client_cert = lua_toboolean(L, -1);
    lua_pop(L, 1);
    type = lua_getfield(L, opts, "rate");
    if (type == LUA_TSTRING) { /* rate = "100/m": keyed by IP */
        if (luar_gcra_parse(&g.limit, lua_tostring(L, -1)))
            luaL_error(L, "option rate: expected \"N/s\", \"N/m\", \"N/h\" or \"N/d\", got %s",
                       lua_tostring(L, -1));
        g.has_rate = 1;
    } else if (type == LUA_TTABLE) {
        parse_rate(L, lua_gettop(L), &g);
    } else if (type != LUA_TNIL) {
        luaL_error(L, "option rate: expected a table { limit = \"N/period\", key = … }");
    }
    int rate = lua_gettop(L);
    if (!g.has_rate && !g.require_client_cert) {
        lua_pop(L, 1);
        return NULL;
    }
    snprintf(g.scope, sizeof g.scope, "route:%s", g.name);
    luar_route_guard_t *out = malloc(sizeof *out);
    if (out == NULL)
        luaL_error(L, "not enough memory");
    *out = g;
    if (g.key_kind == KEY_FUNCTION) {
        lua_getfield(L, rate, "key");
        out->key_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_pop(L, 1);
    return out;
}

void luar_route_guard_free(lua_State *L, luar_route_guard_t *g)
{
    if (g == NULL)
        return;
    if (L != NULL && g->key_ref != LUA_NOREF)
        luaL_unref(L, LUA_REGISTRYINDEX, g->key_ref);
    free(g);
}

int luar_route_guard_has_rate(const luar_route_guard_t *g)
{
    return g != NULL && g->has_rate;
}

/* ---- answers ------------------------------------------------------------------------- */

/* Answers a refused request: 403, 429 or 503 (with Retry-After for the last two). */
static void answer(luar_http_req_t *req, int status, long long retry_after)
{
    const char *error = status == 403   ? "client certificate required"
                        : status == 429 ? "rate limit exceeded"
                        : status == 500 ? "internal error"
                                        : "rate limit unavailable";
    char body[160], seconds[24];
    int blen;
    if (status == 429)
        blen = snprintf(body, sizeof body, "{\"error\":\"%s\",\"retry_after\":%lld}", error,
                        retry_after);
    else if (status == 500)
        blen = snprintf(body, sizeof body, "{\"error\":\"%s\",\"request_id\":\"%s\"}", error,
                        req->request_id); /* the id is [A-Za-z0-9._:-] only */
    else
        blen = snprintf(body, sizeof body, "{\"error\":\"%s\"}", error);
    int slen = snprintf(seconds, sizeof seconds, "%lld", retry_after);
    luar_http_header_t h[2] = {{"Content-Type", 12, APP_JSON, sizeof APP_JSON - 1},
                               {"Retry-After", 11, seconds, (size_t)slen}};
    luar_http_respond(req, status, h, status == 429 || status == 503 ? 2 : 1, body, (size_t)blen);
}

int luar_route_guard_check_cert(const luar_route_guard_t *g, luar_http_req_t *req)
{
    if (g == NULL || !g->require_client_cert || (req->tls && req->tls_client_subject != NULL))
        return LUAR_GUARD_CONTINUE;
    answer(req, 403, 0);
    return LUAR_GUARD_ANSWERED;
}

/* Logs a check the backend could not answer, at most once a second. */
static void log_backend_failure(const char *name, int deny, int rc)
{
    static uint64_t last_ns;
    static unsigned long suppressed;
    uint64_t now = uv_hrtime();
    if (last_ns != 0 && now - last_ns < 1000000000u) {
        suppressed++;
        return;
    }
    luar_queue_t *q = luar_jobs_queue();
    const char *why = q == NULL                                       ? "no queue backend"
                      : rc == LUAR_EIO && luar_queue_last_error(q)[0] ? luar_queue_last_error(q)
                                                                      : luar_strerror(rc);
    luar_logf(LUAR_LOG_WARN,
              "rate limit %s: the backend did not answer (%s): %s (%lu more since the last "
              "such line)",
              name, why, deny ? "answering 503 (on_error = \"deny\")" : "letting requests through",
              suppressed);
    last_ns = now;
    suppressed = 0;
}

/*
 * What a check's outcome means for the request: 0 to go on, else the status to answer
 * (429, or 503 when the backend failed and on_error is "deny") with *retry_after seconds.
 */
static int verdict(const char *name, int deny_on_error, int rc, const luar_gcra_result_t *r,
                   long long *retry_after)
{
    if (rc) {
        log_backend_failure(name, deny_on_error, rc);
        *retry_after = 1;
        return deny_on_error ? 503 : 0;
    }
    if (r->allowed)
        return 0;
    luar_ratelimit_count_rejected(name);
    *retry_after = luar_gcra_ceil_seconds(r->retry_after_ns);
    if (*retry_after < 1)
        *retry_after = 1;
    return 429;
}

/* Builds the client key ("ip:…", "h:…" or "fn:…") and hashes it into the backend key. */
static void backend_key(const luar_route_guard_t *g, const luar_http_req_t *req, const char *fn_key,
                        size_t fn_len, char out[LUAR_RATELIMIT_KEY_SIZE])
{
    luar_buf_t k;
    luar_buf_init(&k, 0);
    const luar_http_header_t *h = NULL;
    if (g->key_kind == KEY_FUNCTION) {
        luar_buf_puts(&k, "fn:");
        luar_buf_append(&k, fn_key, fn_len);
    } else if (g->key_kind == KEY_HEADER && (h = luar_http_req_header(req, g->header)) != NULL &&
               h->value_len > 0) {
        luar_buf_puts(&k, "h:");
        luar_buf_append(&k, h->value, h->value_len);
    } else { /* by IP, also when the header is missing: those clients are told apart so */
        luar_buf_puts(&k, "ip:");
        luar_buf_puts(&k, req->remote_addr);
    }
    luar_ratelimit_key(g->scope, k.data ? k.data : "", k.len, &g->limit, out);
    luar_buf_free(&k);
}

/* ---- Lua routes: the entry the task runs ---------------------------------------------- */

enum { STEP_KEY = 1, STEP_WAIT, STEP_HANDLER };

struct refusal {
    int status;
    long long retry_after;
};

static int wait_push(lua_State *L, luar_bridge_op_t *op)
{
    luar_ratelimit_wait_t *w = luar_ratelimit_wait_of(op);
    const luar_route_guard_t *g = w->udata;
    long long retry_after = 0;
    int status = verdict(g->name, g->deny_on_error, w->rc, &w->result, &retry_after);
    if (status == 0)
        return 0;
    struct refusal *r = lua_newuserdatauv(L, sizeof *r, 0);
    r->status = status;
    r->retry_after = retry_after;
    luaL_setmetatable(L, REFUSAL_MT);
    return 1;
}

/* guard_wait(guard, req, key) ⏸ → nil | refusal. Only ever called by the entry. */
static int guard_wait(lua_State *L)
{
    const luar_route_guard_t *g = lua_touserdata(L, 1);
    const luar_http_req_t *req = lua_touserdata(L, 2);
    size_t len = 0;
    const char *fn_key = lua_tolstring(L, 3, &len);
    char key[LUAR_RATELIMIT_KEY_SIZE];
    backend_key(g, req, fn_key, len, key);
    return luar_ratelimit_yield(L, "http.route rate limit", key, &g->limit, 1, g, wait_push);
}

/* Upvalues: 1 handler, 2 guard, 3 request (light userdata), 4 key function or nil. */
static int entry_k(lua_State *L, int status, lua_KContext step)
{
    (void)status;
    switch (step) {
    case STEP_KEY: { /* stack: req, key */
        int has_fn = !lua_isnil(L, lua_upvalueindex(4));
        if (has_fn && !lua_toboolean(L, 2)) { /* nil or false: this request is not limited */
            lua_settop(L, 1);
            break;
        }
        if (has_fn && lua_type(L, 2) != LUA_TSTRING && lua_type(L, 2) != LUA_TNUMBER)
            return luaL_error(L,
                              "rate key function returned a %s (expected a string, a number, "
                              "or nil to leave the request unlimited)",
                              luaL_typename(L, 2));
        lua_pushcfunction(L, guard_wait);
        lua_pushvalue(L, lua_upvalueindex(2));
        lua_pushvalue(L, lua_upvalueindex(3));
        lua_pushvalue(L, 2);
        lua_callk(L, 3, 1, STEP_WAIT, entry_k);
        return entry_k(L, LUA_OK, STEP_WAIT);
    }
    case STEP_WAIT: /* stack: req, key, refusal or nil */
        if (!lua_isnil(L, 3))
            return 1;
        lua_settop(L, 1);
        break;
    default: /* STEP_HANDLER: the handler's results */
        return lua_gettop(L);
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_callk(L, 1, LUA_MULTRET, STEP_HANDLER, entry_k);
    return entry_k(L, LUA_OK, STEP_HANDLER);
}

/* The task's function: entry(req). [-1, +n] */
static int entry(lua_State *L)
{
    lua_settop(L, 1);
    if (lua_isnil(L, lua_upvalueindex(4))) {
        lua_pushnil(L); /* the key comes from the request: IP or header */
    } else {
        lua_pushvalue(L, lua_upvalueindex(4));
        lua_pushvalue(L, 1);
        lua_callk(L, 1, 1, STEP_KEY, entry_k);
    }
    return entry_k(L, LUA_OK, STEP_KEY);
}

void luar_route_guard_push_entry(lua_State *L, const luar_route_guard_t *g, int handler,
                                 luar_http_req_t *req)
{
    handler = lua_absindex(L, handler);
    if (luaL_newmetatable(L, REFUSAL_MT)) {
        lua_pushliteral(L, "luar.http refusal");
        lua_setfield(L, -2, "__name");
    }
    lua_pop(L, 1);
    lua_pushvalue(L, handler);
    lua_pushlightuserdata(L, (void *)g);
    lua_pushlightuserdata(L, req);
    if (g->key_kind == KEY_FUNCTION)
        lua_rawgeti(L, LUA_REGISTRYINDEX, g->key_ref);
    else
        lua_pushnil(L);
    lua_pushcclosure(L, entry, 4);
}

int luar_route_guard_answer(lua_State *L, int idx, luar_http_req_t *req)
{
    const struct refusal *r = luaL_testudata(L, idx, REFUSAL_MT);
    if (r == NULL)
        return 0;
    answer(req, r->status, r->retry_after);
    return 1;
}

/* ---- requests handled in C ------------------------------------------------------------ */

struct pending {
    luar_vm_t *vm;
    luar_http_req_t *req;
    luar_route_guard_done_fn done;
    void *arg;
    int deny_on_error;
    char name[NAME_MAX_LEN + 1];
};

static void run_cb(void *arg, int rc, const luar_gcra_result_t *result)
{
    struct pending *p = arg;
    long long retry_after = 0;
    int status = verdict(p->name, p->deny_on_error, rc, result, &retry_after);
    if (status)
        answer(p->req, status, retry_after);
    p->done(p->arg, status ? LUAR_GUARD_ANSWERED : LUAR_GUARD_CONTINUE);
    luar_vm_release(p->vm);
    free(p);
}

struct key_call {
    const luar_route_guard_t *g;
    luar_http_req_t *req;
    luar_buf_t *key;
    int skip;
};

/* Calls the key function with the request table, on the VM's main thread. [-1, +0] */
static int call_key(lua_State *L)
{
    struct key_call *c = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->g->key_ref);
    luar_http_push_request(L, c->req);
    lua_call(L, 1, 1);
    if (!lua_toboolean(L, -1)) {
        c->skip = 1;
        return 0;
    }
    if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
        return luaL_error(L,
                          "rate key function returned a %s (expected a string, a number, "
                          "or nil to leave the request unlimited)",
                          luaL_typename(L, -1));
    size_t n;
    const char *s = lua_tolstring(L, -1, &n);
    if (luar_buf_append(c->key, s, n))
        return luaL_error(L, "not enough memory");
    return 0;
}

int luar_route_guard_run(const luar_route_guard_t *g, luar_vm_t *vm, luar_http_req_t *req,
                         luar_route_guard_done_fn done, void *arg)
{
    if (luar_route_guard_check_cert(g, req) == LUAR_GUARD_ANSWERED)
        return LUAR_GUARD_ANSWERED;
    if (!luar_route_guard_has_rate(g))
        return LUAR_GUARD_CONTINUE;
    char key[LUAR_RATELIMIT_KEY_SIZE];
    if (g->key_kind == KEY_FUNCTION) {
        luar_buf_t fn_key, err;
        luar_buf_init(&fn_key, 0);
        luar_buf_init(&err, 4096);
        struct key_call c = {g, req, &fn_key, 0};
        int rc = luar_vm_pcall(vm, call_key, &c, &err);
        if (rc) {
            luar_logf(LUAR_LOG_ERROR, "route %s: rate key function failed: %s", req->route,
                      err.data ? err.data : luar_strerror(rc));
            luar_vm_count_error("http");
            answer(req, 500, 0);
        } else if (!c.skip) {
            backend_key(g, req, fn_key.data ? fn_key.data : "", fn_key.len, key);
        }
        luar_buf_free(&fn_key);
        luar_buf_free(&err);
        if (rc)
            return LUAR_GUARD_ANSWERED;
        if (c.skip)
            return LUAR_GUARD_CONTINUE;
    } else {
        backend_key(g, req, NULL, 0, key);
    }
    struct pending *p = calloc(1, sizeof *p);
    luar_queue_t *q = luar_jobs_queue();
    int rc = p == NULL ? LUAR_ENOMEM : q == NULL ? LUAR_ECLOSED : 0;
    if (rc == 0) {
        p->vm = vm;
        p->req = req;
        p->done = done;
        p->arg = arg;
        p->deny_on_error = g->deny_on_error;
        memcpy(p->name, g->name, sizeof p->name);
        rc = luar_queue_rate_check(q, key, &g->limit, 1, run_cb, p);
    }
    if (rc) { /* the check could not even start: as if the backend had failed */
        free(p);
        long long retry_after = 0;
        int status = verdict(g->name, g->deny_on_error, rc, NULL, &retry_after);
        if (status == 0)
            return LUAR_GUARD_CONTINUE;
        answer(req, status, retry_after);
        return LUAR_GUARD_ANSWERED;
    }
    luar_vm_hold(vm);
    return LUAR_GUARD_PENDING;
}
