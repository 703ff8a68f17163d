/*
 * The outbound half of luar.http (SPEC §4): http.request, http.get/post/put/patch/delete/
 * head and http.client{...}. The option handling that is plain table work (query and form
 * encoding, merging a client's defaults, joining base_url and path, auth headers) is a
 * short Lua chunk below, where it reads as what it is; it ends in `send`, the C function
 * that waits through the coroutine bridge for host/client's luar_client_request().
 *
 * Retries, the circuit breaker, the rate limit and the cache are not here: the options are
 * read into a luar_client_policy_t and the request goes through luar_client_send()
 * (host/client/send.c), the same entry point plugins use.
 */
#include "client/client.h"
#include "client/redact.h"
#include "client/send.h"
#include "common/error.h"
#include "common/units.h"
#include "lua/bridge.h"
#include "lua/error.h"
#include "lua/mod_http_client.h"
#include "lua/task.h"
#include "trace/export.h"
#include "lua/util.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define POOL_KEY "luar.http.client.pool"
#define RESPONSE_MT "luar.http.response"
#define MAX_HEADERS 256

/* The loop's multi handle held by a VM: keeps the connection pool while the VM lives. */
struct pool_ref {
    luar_client_multi_t *multi;
};

/*
 * One http.request wait. `req` points into the normalized options table and the values
 * pushed after it, which stay on the yielded coroutine's stack until the call returns, so
 * every attempt can send it again.
 */
struct req_op {
    luar_bridge_op_t *op;
    luar_client_req_t req;
    luar_client_send_t *send; /* the request under its policy, until it answers */
    luar_client_res_t *res;   /* the final outcome, handed to push */
    int cached;               /* the outcome came from the response cache */
    int raise_for_status;
    luar_trace_t span;        /* the call's span, child of the calling task's */
    char traceparent[LUAR_TRACEPARENT_LEN + 1];
    uint64_t start_unix_ns;   /* when the call began, for its exported span */
};

/* ---- the wait --------------------------------------------------------------------------- */

/* The send's outcome: hand it to push (from the loop, never inside another resume). */
/* Exports the call's span (client kind) when the calling task's trace is exported. */
static void end_span(struct req_op *ro, const luar_client_res_t *res)
{
    if (!luar_trace_exporting() || !luar_trace_active(&ro->span))
        return;
    const char *method = ro->req.method ? ro->req.method : "GET";
    luar_buf_t url;
    luar_buf_init(&url, 8192);
    luar_redact_url(&url, ro->req.url);
    luar_span_attr_t attrs[4] = {{"http.request.method", method, 0},
                                 {"url.full", url.data ? url.data : "", 0}};
    size_t n = 2;
    if (res && res->rc == 0)
        attrs[n++] = (luar_span_attr_t){"http.response.status_code", NULL, res->status};
    else
        attrs[n++] = (luar_span_attr_t){"error.type", res && res->kind ? res->kind : "error", 0};
    int failed = res == NULL || res->rc != 0 || res->status >= 500;
    luar_span_end(&ro->span, method, LUAR_SPAN_CLIENT, ro->start_unix_ns, attrs, n, failed,
                  res && res->rc ? res->message : NULL);
    luar_buf_free(&url);
}

static void on_sent(void *arg, luar_client_res_t *res, int cached)
{
    struct req_op *ro = arg;
    ro->send = NULL;
    end_span(ro, res);
    ro->res = res;
    ro->cached = cached;
    luar_bridge_complete(ro->op);
}

static void req_cleanup(luar_bridge_op_t *op, int canceled)
{
    (void)canceled;
    struct req_op *ro = luar_bridge_op_data(op);
    if (ro->send) /* the task was cancelled mid-request: stop it now */
        luar_client_send_cancel(ro->send);
    ro->send = NULL;
    luar_client_res_free(ro->res);
    ro->res = NULL;
    luar_bridge_op_free(op);
}

/* res:json() → the decoded body, or nil, err{kind="invalid"}. [-0, +1|2] */
static int response_json(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "body");
    if (lua_type(L, -1) != LUA_TSTRING)
        return luar_lua_fail(L, "invalid", "the response has no body");
    return luar_json_decode(L, lua_gettop(L));
}

static double retry_after_seconds(const luar_client_res_t *res)
{
    const char *v = luar_client_res_header(res, "retry-after");
    if (v == NULL || *v < '0' || *v > '9')
        return -1;
    return strtod(v, NULL);
}

/* Pushes the response table, or nil, err. [-0, +1|2] */
static int req_push(lua_State *L, luar_bridge_op_t *op)
{
    struct req_op *ro = luar_bridge_op_data(op);
    luar_client_res_t *res = ro->res;
    if (res == NULL)
        return luar_lua_fail(L, "connect", "out of memory");
    if (res->rc && strcmp(res->kind, "no_stub") == 0) /* luar test: raises, naming it */
        return luaL_error(L, "%s", res->message);
    if (res->rc) {
        luar_lua_fail(L, res->kind, "%s", res->message);
        if (res->retry_after > 0) {
            lua_pushnumber(L, res->retry_after);
            lua_setfield(L, -2, "retry_after");
        }
        return 2;
    }
    if (ro->raise_for_status && res->status >= 400) {
        luar_buf_t url;
        luar_buf_init(&url, 2048);
        luar_redact_url(&url, ro->req.url);
        char line[2200];
        snprintf(line, sizeof line, "%s %s answered %ld", ro->req.method ? ro->req.method : "GET",
                 url.data ? url.data : "", res->status);
        luar_buf_free(&url);
        luar_lua_fail(L, "http", "%s", line);
        lua_pushinteger(L, res->status);
        lua_setfield(L, -2, "status");
        double ra = retry_after_seconds(res);
        if (ra >= 0) {
            if (ra == (double)(lua_Integer)ra)
                lua_pushinteger(L, (lua_Integer)ra);
            else
                lua_pushnumber(L, ra);
            lua_setfield(L, -2, "retry_after");
        }
        return 2;
    }
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, res->status);
    lua_setfield(L, -2, "status");
    lua_createtable(L, 0, (int)res->nheaders);
    for (size_t i = 0; i < res->nheaders; i++) {
        /* A repeated header reads as one, its values joined (RFC 9110 5.3). */
        if (lua_getfield(L, -1, res->headers[i].name) == LUA_TSTRING) {
            lua_pushliteral(L, ", ");
            lua_pushstring(L, res->headers[i].value);
            lua_concat(L, 3);
        } else {
            lua_pop(L, 1);
            lua_pushstring(L, res->headers[i].value);
        }
        lua_setfield(L, -2, res->headers[i].name);
    }
    lua_setfield(L, -2, "headers");
    lua_pushlstring(L, res->body.data ? res->body.data : "", res->body.len);
    lua_setfield(L, -2, "body");
    lua_pushboolean(L, ro->cached);
    lua_setfield(L, -2, "cached");
    luaL_getmetatable(L, RESPONSE_MT);
    lua_setmetatable(L, -2);
    return 1;
}

/* ---- send: the normalized request ------------------------------------------------------- */

static int pool_gc(lua_State *L)
{
    struct pool_ref *p = lua_touserdata(L, 1);
    if (p->multi)
        luar_client_multi_release(p->multi);
    p->multi = NULL;
    return 0;
}

/* Makes this VM hold the loop's multi (once), so connections stay pooled between calls. */
static void hold_pool(lua_State *L, uv_loop_t *loop)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, POOL_KEY) != LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    lua_pop(L, 1);
    struct pool_ref *p = lua_newuserdatauv(L, sizeof *p, 0);
    p->multi = NULL;
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, pool_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    if (luar_client_multi_acquire(loop, &p->multi) != 0) {
        lua_pop(L, 1);
        return; /* each request holds the multi itself; only pooling is lost */
    }
    lua_setfield(L, LUA_REGISTRYINDEX, POOL_KEY);
}

/*
 * The option checks. Every misuse raises "<what>: option <name> must be …" (what is
 * "http.request" or "http.client"; a field of a table option is named "retry.attempts"):
 * SPEC §4, a wrong type is a programming error, never silently taken as a default.
 */
static const char *opt_name(lua_State *L, const char *parent, const char *k)
{
    return parent ? lua_pushfstring(L, "%s.%s", parent, k) : k;
}

static const char *opt_str_in(lua_State *L, const char *what, int t, const char *parent,
                              const char *k)
{
    const char *v = NULL;
    if (lua_getfield(L, t, k) == LUA_TSTRING)
        v = lua_tostring(L, -1); /* alive: the table holds it */
    else if (!lua_isnil(L, -1))
        luaL_error(L, "%s: option %s must be a string", what, opt_name(L, parent, k));
    lua_pop(L, 1);
    return v;
}

/*
 * Raises for a field the table option `parent` (at index t) does not take: a misspelt
 * field (`retry = {attempt = 5}`) would otherwise leave the default silently in force.
 */
static void opt_fields(lua_State *L, const char *what, int t, const char *parent,
                       const char *const *known)
{
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        int ok = 0;
        for (size_t i = 0; known[i] && !ok && lua_type(L, -1) == LUA_TSTRING; i++)
            ok = strcmp(known[i], lua_tostring(L, -1)) == 0;
        if (!ok) {
            luaL_Buffer b;
            luaL_buffinit(L, &b);
            for (size_t i = 0; known[i]; i++) {
                luaL_addstring(&b, i ? ", " : "");
                luaL_addstring(&b, known[i]);
            }
            luaL_pushresult(&b);
            luaL_error(L, "%s: option %s.%s is unknown (%s takes %s)", what, parent,
                       luaL_tolstring(L, -2, NULL), parent, lua_tostring(L, -1));
        }
    }
}

static const char *opt_str(lua_State *L, const char *what, int t, const char *k)
{
    return opt_str_in(L, what, t, NULL, k);
}

/* A number > 0 (0 when absent). */
static double opt_num_in(lua_State *L, const char *what, int t, const char *parent,
                         const char *k)
{
    double v = 0;
    if (lua_getfield(L, t, k) == LUA_TNUMBER) {
        v = lua_tonumber(L, -1);
        if (!(v > 0))
            luaL_error(L, "%s: option %s must be positive", what, opt_name(L, parent, k));
    } else if (!lua_isnil(L, -1)) {
        luaL_error(L, "%s: option %s must be a number", what, opt_name(L, parent, k));
    }
    lua_pop(L, 1);
    return v;
}

static double opt_num(lua_State *L, const char *what, int t, const char *k)
{
    return opt_num_in(L, what, t, NULL, k);
}

/* An integer >= 1 (0 when absent): counts (attempts, failures). */
static int opt_count_in(lua_State *L, const char *what, int t, const char *parent,
                        const char *k)
{
    lua_Integer v = 0;
    int isint = 0;
    if (lua_getfield(L, t, k) != LUA_TNIL) {
        v = lua_tointegerx(L, -1, &isint);
        if (lua_type(L, -1) != LUA_TNUMBER || !isint || v < 1 || v > 1000)
            luaL_error(L, "%s: option %s must be an integer from 1 to 1000", what,
                       opt_name(L, parent, k));
    }
    lua_pop(L, 1);
    return (int)v;
}

/* nil → `dflt`, a boolean → its value; anything else raises. */
static int opt_bool(lua_State *L, const char *what, int t, const char *k, int dflt)
{
    int v = dflt, type = lua_getfield(L, t, k);
    if (type == LUA_TBOOLEAN)
        v = lua_toboolean(L, -1);
    else if (type != LUA_TNIL)
        luaL_error(L, "%s: option %s must be a boolean", what, k);
    lua_pop(L, 1);
    return v;
}

/* Reads the headers table at `t` into a userdata array pushed on the stack. */
static luar_client_header_t *read_headers(lua_State *L, const char *what, int t, size_t *n)
{
    luar_client_header_t *h = lua_newuserdatauv(L, (MAX_HEADERS + 1) * sizeof *h, 0);
    *n = 0;
    if (lua_getfield(L, t, "headers") != LUA_TTABLE) {
        lua_pop(L, 1);
        return h;
    }
    int ht = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, ht)) {
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "%s: option headers must map names to strings", what);
        if (*n == MAX_HEADERS)
            luaL_error(L, "%s: option headers: more than %d headers", what, MAX_HEADERS);
        size_t nlen, vlen;
        const char *name = lua_tolstring(L, -2, &nlen), *value = lua_tolstring(L, -1, &vlen);
        if (nlen == 0 || strpbrk(name, ":\r\n \t") || memchr(value, '\r', vlen) ||
            memchr(value, '\n', vlen) || strlen(name) != nlen || strlen(value) != vlen)
            luaL_error(L, "%s: option headers: invalid header %s", what, name);
        h[*n].name = name; /* alive: the headers table holds them */
        h[*n].value = value;
        (*n)++;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return h;
}

/*
 * Reads the resilience options of the table at index 1 into `p`: retry (default on: SPEC's
 * policy; true: the same; false: one attempt; {attempts, backoff, backoff_cap, on,
 * max_retry_after}), breaker (default on per host; true; false; {failures, reset}), rate
 * ("N/s" with rate_key naming the bucket, rate_max_wait), cache ({ttl, stale_if_error}; off
 * by default or false). Raises on misuse, naming the option. [-0, +0]
 */
static void read_policy(lua_State *L, const char *what, luar_client_policy_t *p)
{
    luar_client_policy_init(p);
    int t = lua_getfield(L, 1, "retry");
    if (t == LUA_TBOOLEAN) {
        if (!lua_toboolean(L, -1))
            p->retry.attempts = 1;
    } else if (t == LUA_TTABLE) {
        static const char *const fields[] = {"attempts", "backoff", "backoff_cap",
                                             "max_retry_after", "on", NULL};
        int rt = lua_gettop(L);
        double v;
        int n;
        opt_fields(L, what, rt, "retry", fields);
        if ((n = opt_count_in(L, what, rt, "retry", "attempts")) > 0)
            p->retry.attempts = n;
        if ((v = opt_num_in(L, what, rt, "retry", "backoff")) > 0)
            p->retry.backoff = v;
        if ((v = opt_num_in(L, what, rt, "retry", "backoff_cap")) > 0)
            p->retry.backoff_cap = v;
        if ((v = opt_num_in(L, what, rt, "retry", "max_retry_after")) > 0)
            p->retry.max_retry_after = v;
        int ot = lua_getfield(L, rt, "on");
        if (ot == LUA_TTABLE) {
            int st[LUAR_RETRY_MAX_STATUSES];
            size_t len = lua_rawlen(L, -1);
            if (len > LUAR_RETRY_MAX_STATUSES)
                luaL_error(L, "%s: option retry.on lists more than %d statuses", what,
                           LUAR_RETRY_MAX_STATUSES);
            for (size_t i = 0; i < len; i++) {
                lua_geti(L, -1, (lua_Integer)i + 1);
                int isint;
                lua_Integer code = lua_tointegerx(L, -1, &isint);
                if (lua_type(L, -1) != LUA_TNUMBER || !isint || code < 100 || code > 599)
                    luaL_error(L, "%s: option retry.on must list HTTP statuses (100-599)",
                               what);
                st[i] = (int)code;
                lua_pop(L, 1);
            }
            luar_retry_policy_set_statuses(&p->retry, st, len); /* checked above */
        } else if (ot != LUA_TNIL) {
            luaL_error(L, "%s: option retry.on must be a list of HTTP statuses", what);
        }
        lua_pop(L, 1);
    } else if (t != LUA_TNIL) {
        luaL_error(L, "%s: option retry must be false or a table", what);
    }
    lua_pop(L, 1);

    t = lua_getfield(L, 1, "breaker");
    if (t == LUA_TBOOLEAN) {
        p->breaker = lua_toboolean(L, -1);
    } else if (t == LUA_TTABLE) {
        static const char *const fields[] = {"failures", "reset", NULL};
        int n;
        double v;
        opt_fields(L, what, lua_gettop(L), "breaker", fields);
        if ((n = opt_count_in(L, what, lua_gettop(L), "breaker", "failures")) > 0)
            p->breaker_settings.failures = n;
        if ((v = opt_num_in(L, what, lua_gettop(L), "breaker", "reset")) > 0)
            p->breaker_settings.reset = v;
    } else if (t != LUA_TNIL) {
        luaL_error(L, "%s: option breaker must be a boolean or a table", what);
    }
    lua_pop(L, 1);

    p->rate = opt_str(L, what, 1, "rate");
    double per_second, burst;
    if (p->rate && luar_parse_rate(p->rate, &per_second, &burst))
        luaL_error(L, "%s: option rate must look like \"10/s\", \"100/m\" or \"5000/h\"",
                   what);
    p->rate_key = opt_str(L, what, 1, "rate_key");
    p->rate_max_wait = opt_num(L, what, 1, "rate_max_wait");

    t = lua_getfield(L, 1, "cache");
    if (t == LUA_TTABLE) {
        static const char *const fields[] = {"ttl", "stale_if_error", NULL};
        int ct = lua_gettop(L);
        opt_fields(L, what, ct, "cache", fields);
        p->cache = 1;
        if (lua_getfield(L, ct, "ttl") == LUA_TNUMBER && lua_tonumber(L, -1) >= 0)
            p->cache_ttl = lua_tonumber(L, -1); /* 0: revalidate every time */
        else if (!lua_isnil(L, -1))
            luaL_error(L, "%s: option cache.ttl must be a number of seconds >= 0", what);
        lua_pop(L, 1);
        int st = lua_getfield(L, ct, "stale_if_error");
        if (st == LUA_TBOOLEAN)
            p->stale_if_error = lua_toboolean(L, -1) ? 86400 : 0;
        else if (st == LUA_TNUMBER && lua_tonumber(L, -1) >= 0)
            p->stale_if_error = lua_tonumber(L, -1);
        else if (st != LUA_TNIL)
            luaL_error(L, "%s: option cache.stale_if_error must be a boolean or seconds >= 0",
                       what);
        lua_pop(L, 1);
    } else if (!(t == LUA_TNIL || (t == LUA_TBOOLEAN && !lua_toboolean(L, -1)))) {
        luaL_error(L, "%s: option cache must be a table ({ttl = seconds, stale_if_error = …})"
                   " or false", what);
    }
    lua_pop(L, 1);
}

/*
 * The options send() reads besides the policy, checked without sending: the table at `t`
 * (index 1) as send() would get it. Returns raise_for_status. [-0, +0]
 */
static int read_transport(lua_State *L, const char *what, luar_client_req_t *req)
{
    req->connect_timeout = opt_num(L, what, 1, "connect_timeout");
    req->timeout = opt_num(L, what, 1, "timeout");
    req->max_body = (size_t)opt_num(L, what, 1, "max_body");
    req->ca_file = opt_str(L, what, 1, "ca");
    req->cert_file = opt_str(L, what, 1, "cert");
    req->key_file = opt_str(L, what, 1, "key");
    req->proxy = opt_str(L, what, 1, "proxy");
    req->insecure = !opt_bool(L, what, 1, "verify", 1);
    return opt_bool(L, what, 1, "raise_for_status", 0);
}

/*
 * check(what, t): raises when an option of `t` (a normalized table) has the wrong type or
 * value, as send() would; http.client checks its defaults with it when it is made. [-2, +0]
 */
static int client_check(lua_State *L)
{
    luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    lua_rotate(L, 1, 1); /* the table at 1, as send() has it; `what` stays alive at 2 */
    const char *what = lua_tostring(L, 2);
    luar_client_req_t req;
    memset(&req, 0, sizeof req);
    read_transport(L, what, &req);
    luar_client_policy_t policy;
    read_policy(L, what, &policy);
    return 0;
}

/*
 * The call is a span of the calling task's trace: unless the caller set its own, the
 * request carries `traceparent` naming it (W3C Trace Context), so the upstream's spans join
 * the trace. The headers array (read_headers) has room: MAX_HEADERS counts callers' only.
 */
static void add_traceparent(lua_State *L, struct req_op *ro)
{
    luar_task_t *task = luar_task_current(L);
    if (task == NULL || !luar_trace_active(luar_task_trace(task)))
        return;
    for (size_t i = 0; i < ro->req.nheaders; i++)
        if (strcasecmp(ro->req.headers[i].name, "traceparent") == 0)
            return;
    luar_trace_child(&ro->span, luar_task_trace(task));
    luar_trace_format(&ro->span, ro->traceparent);
    ro->start_unix_ns = luar_trace_now_ns();
    luar_client_header_t *h = (luar_client_header_t *)ro->req.headers;
    h[ro->req.nheaders].name = "traceparent";
    h[ro->req.nheaders].value = ro->traceparent;
    ro->req.nheaders++;
}

/*
 * send(norm) ⏸ → res | nil, err. `norm` is the table the Lua part built: method (upper
 * case), url, headers (name → string), body or json, connect_timeout, timeout, max_body,
 * raise_for_status, ca, cert, key, proxy, verify (and the resilience options, for later).
 * [-1, +1|2]
 */
static int client_send(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    luar_client_req_t req;
    memset(&req, 0, sizeof req);
    const char *what = "http.request";
    req.method = opt_str(L, what, 1, "method");
    req.url = opt_str(L, what, 1, "url");
    if (req.url == NULL)
        return luaL_error(L, "http.request: url is required");
    req.headers = read_headers(L, what, 1, &req.nheaders); /* stays at index 2 */
    req.body = opt_str(L, what, 1, "body");
    if (lua_getfield(L, 1, "json") != LUA_TNIL) {
        size_t len;
        req.body = luar_json_encode(L, 3, &len); /* stays at index 4 */
        req.body_len = len;
    } else if (req.body) {
        lua_getfield(L, 1, "body");
        req.body_len = lua_rawlen(L, -1);
        lua_pop(L, 1);
    }
    int raise = read_transport(L, what, &req);

    luar_client_policy_t policy;
    read_policy(L, what, &policy);

    uv_loop_t *loop = luar_bridge_loop(L);
    hold_pool(L, loop);
    luar_bridge_op_t *op = luar_bridge_op_new(L, "http.request", sizeof(struct req_op));
    struct req_op *ro = luar_bridge_op_data(op);
    ro->op = op;
    ro->req = req;
    ro->raise_for_status = raise;
    luar_bridge_op_set_cleanup(op, req_cleanup);
    add_traceparent(L, ro);
    int rc = luar_client_send(loop, &ro->req, &policy, on_sent, ro, &ro->send);
    if (rc) {
        ro->send = NULL;
        ro->res = calloc(1, sizeof *ro->res);
        if (ro->res) {
            ro->res->rc = rc;
            ro->res->kind = rc == LUAR_EINVAL ? "invalid" : "connect";
            snprintf(ro->res->message, sizeof ro->res->message, "%s", luar_strerror(rc));
        }
        luar_bridge_complete(op);
    }
    return luar_bridge_yield(L, op, req_push);
}

/* clang-format off */
static const char client_lua[] =
"local send, M, check = ...\n"
"local function esc(s)\n"
"  return (string.gsub(s, '[^%w%-%._~]', function(c)\n"
"    return string.format('%%%02X', string.byte(c)) end))\n"
"end\n"
"local function scalar(v, what)\n"
"  local t = type(v)\n"
"  if t == 'string' then return v end\n"
"  if t == 'number' or t == 'boolean' then return tostring(v) end\n"
"  error(what .. ': expected strings, numbers or booleans, got ' .. t, 0)\n"
"end\n"
"local function encode_pairs(t, what)\n"
"  if type(t) ~= 'table' then error('http.request: option ' .. what .. ' must be a table', 0) end\n"
"  local keys = {}\n"
"  for k in pairs(t) do\n"
"    if type(k) ~= 'string' then\n"
"      error('http.request: option ' .. what .. ': keys must be strings', 0)\n"
"    end\n"
"    keys[#keys + 1] = k\n"
"  end\n"
"  table.sort(keys)\n"
"  local out = {}\n"
"  for _, k in ipairs(keys) do\n"
"    local v = t[k]\n"
"    if type(v) == 'table' then\n"
"      for _, x in ipairs(v) do\n"
"        out[#out + 1] = esc(k) .. '=' .. esc(scalar(x, 'http.request: option ' .. what))\n"
"      end\n"
"    else\n"
"      out[#out + 1] = esc(k) .. '=' .. esc(scalar(v, 'http.request: option ' .. what))\n"
"    end\n"
"  end\n"
"  return table.concat(out, '&')\n"
"end\n"
"-- timeout: seconds, or {connect =, total =}; returns connect, total.\n"
"local function timeouts(t, what)\n"
"  if type(t) == 'number' or t == nil then return nil, t end\n"
"  if type(t) ~= 'table' then\n"
"    error(what .. ': option timeout must be seconds or {connect=, total=}', 3)\n"
"  end\n"
"  for _, k in ipairs({ 'connect', 'total' }) do\n"
"    if t[k] ~= nil and type(t[k]) ~= 'number' then\n"
"      error(what .. ': option timeout.' .. k .. ' must be a number', 3)\n"
"    end\n"
"  end\n"
"  return t.connect, t.total\n"
"end\n"
"local PASS = { 'ca', 'cert', 'key', 'proxy', 'verify', 'max_body', 'raise_for_status',\n"
"  'retry', 'breaker', 'rate', 'rate_key', 'rate_max_wait', 'cache' }\n"
"function M.request(opts)\n"
"  if type(opts) ~= 'table' then error('http.request: expected a table of options', 2) end\n"
"  local url = opts.url\n"
"  if type(url) ~= 'string' then error('http.request: option url must be a string', 2) end\n"
"  local method = opts.method or 'GET'\n"
"  if type(method) ~= 'string' then error('http.request: option method must be a string', 2) end\n"
"  if opts.query ~= nil then\n"
"    local q = encode_pairs(opts.query, 'query')\n"
"    url = url:gsub('#.*$', '')\n"
"    if q ~= '' then\n"
"      local sep = url:find('?', 1, true) and '&' or '?'\n"
"      if url:sub(-1) == '?' or url:sub(-1) == '&' then sep = '' end\n"
"      url = url .. sep .. q\n"
"    end\n"
"  end\n"
"  local headers, has = {}, {}\n"
"  if opts.headers ~= nil then\n"
"    if type(opts.headers) ~= 'table' then\n"
"      error('http.request: option headers must be a table', 2)\n"
"    end\n"
"    for k, v in pairs(opts.headers) do\n"
"      if type(k) ~= 'string' then\n"
"        error('http.request: option headers: names must be strings', 2)\n"
"      end\n"
"      headers[k] = scalar(v, 'http.request: option headers')\n"
"      has[k:lower()] = true\n"
"    end\n"
"  end\n"
"  local given = (opts.body ~= nil and 1 or 0) + (opts.json ~= nil and 1 or 0)\n"
"    + (opts.form ~= nil and 1 or 0)\n"
"  if given > 1 then error('http.request: give one of json=, form= and body=', 2) end\n"
"  local norm = { method = method:upper(), url = url, headers = headers }\n"
"  if opts.form ~= nil then\n"
"    norm.body = encode_pairs(opts.form, 'form')\n"
"    if not has['content-type'] then\n"
"      headers['Content-Type'] = 'application/x-www-form-urlencoded'\n"
"    end\n"
"  elseif opts.json ~= nil then\n"
"    norm.json = opts.json\n"
"    if not has['content-type'] then headers['Content-Type'] = 'application/json' end\n"
"  elseif opts.body ~= nil then\n"
"    if type(opts.body) ~= 'string' then\n"
"      error('http.request: option body must be a string', 2)\n"
"    end\n"
"    norm.body = opts.body\n"
"  end\n"
"  norm.connect_timeout, norm.timeout = timeouts(opts.timeout, 'http.request')\n"
"  for _, k in ipairs(PASS) do norm[k] = opts[k] end\n"
"  local fallback = opts.fallback\n"
"  if fallback ~= nil and type(fallback) ~= 'function' then\n"
"    error('http.request: option fallback must be a function', 2)\n"
"  end\n"
"  local res, err = send(norm)\n"
"  if res == nil and fallback then return fallback(err) end\n"
"  return res, err\n"
"end\n"
"local METHODS = { 'get', 'post', 'put', 'patch', 'delete', 'head' }\n"
"for _, m in ipairs(METHODS) do\n"
"  local method = m:upper()\n"
"  M[m] = function(url, opts)\n"
"    if opts ~= nil and type(opts) ~= 'table' then\n"
"      error('http.' .. m .. ': opts must be a table', 2)\n"
"    end\n"
"    local o = {}\n"
"    for k, v in pairs(opts or {}) do o[k] = v end\n"
"    o.method, o.url = method, url\n"
"    return M.request(o)\n"
"  end\n"
"end\n"
"local base64 = require('luar.crypto').base64\n"
"local function join(base, path)\n"
"  if base == nil or path:match('^%a[%w+.-]*://') then return path end\n"
"  base, path = base:gsub('/+$', ''), path:gsub('^/+', '')\n"
"  if path == '' then return base end\n"
"  return base .. '/' .. path\n"
"end\n"
"local Client = {}\n"
"Client.__index = Client\n"
"function M.client(conf)\n"
"  if type(conf) ~= 'table' then error('http.client: expected a table of options', 2) end\n"
"  if conf.base_url ~= nil and type(conf.base_url) ~= 'string' then\n"
"    error('http.client: option base_url must be a string', 2) end\n"
"  local c = { defaults = {}, headers = {}, base_url = conf.base_url }\n"
"  -- One rate-limit bucket per client object.\n"
"  if conf.rate ~= nil and conf.rate_key == nil then c.defaults.rate_key = tostring(c) end\n"
"  for k, v in pairs(conf) do\n"
"    if k ~= 'base_url' and k ~= 'headers' and k ~= 'auth' then c.defaults[k] = v end\n"
"  end\n"
"  if conf.headers ~= nil then\n"
"    if type(conf.headers) ~= 'table' then\n"
"      error('http.client: option headers must be a table', 2)\n"
"    end\n"
"    for k, v in pairs(conf.headers) do\n"
"      if type(k) ~= 'string' then\n"
"        error('http.client: option headers: names must be strings', 2)\n"
"      end\n"
"      c.headers[k] = scalar(v, 'http.client: option headers')\n"
"    end\n"
"  end\n"
"  -- The options every call will carry are checked now, where the mistake is.\n"
"  local norm = {}\n"
"  for _, k in ipairs(PASS) do norm[k] = c.defaults[k] end\n"
"  norm.connect_timeout, norm.timeout = timeouts(conf.timeout, 'http.client')\n"
"  check('http.client', norm)\n"
"  if conf.fallback ~= nil and type(conf.fallback) ~= 'function' then\n"
"    error('http.client: option fallback must be a function', 2)\n"
"  end\n"
"  local auth = conf.auth\n"
"  if auth ~= nil then\n"
"    if type(auth) ~= 'table' then error('http.client: option auth must be a table', 2) end\n"
"    if auth.bearer ~= nil then\n"
"      c.headers.Authorization = 'Bearer ' ..\n"
"        scalar(auth.bearer, 'http.client: option auth.bearer')\n"
"    elseif type(auth.basic) == 'table' then\n"
"      local user = auth.basic.user or auth.basic[1]\n"
"      local pass = auth.basic.pass or auth.basic.password or auth.basic[2] or ''\n"
"      if type(user) ~= 'string' then error('http.client: option auth.basic needs a user', 2) end\n"
"      if type(pass) ~= 'string' then\n"
"        error('http.client: option auth.basic password must be a string', 2)\n"
"      end\n"
"      c.headers.Authorization = 'Basic ' .. base64(user .. ':' .. pass)\n"
"    else\n"
"      error('http.client: option auth must be {bearer=...} or {basic={user, pass}}', 2)\n"
"    end\n"
"  end\n"
"  return setmetatable(c, Client)\n"
"end\n"
"function Client:request(opts)\n"
"  if type(opts) ~= 'table' then error('client:request: expected a table of options', 2) end\n"
"  local o = {}\n"
"  for k, v in pairs(self.defaults) do o[k] = v end\n"
"  for k, v in pairs(opts) do o[k] = v end\n"
"  if opts.headers ~= nil and type(opts.headers) ~= 'table' then\n"
"    error('client:request: option headers must be a table', 2)\n"
"  end\n"
"  local h = {}\n"
"  for k, v in pairs(self.headers) do h[k] = v end\n"
"  for k, v in pairs(opts.headers or {}) do\n"
"    if type(k) ~= 'string' then\n"
"      error('client:request: option headers: names must be strings', 2)\n"
"    end\n"
"    for hk in pairs(h) do if hk:lower() == k:lower() then h[hk] = nil end end\n"
"    h[k] = v\n"
"  end\n"
"  o.headers = h\n"
"  local path = opts.url or opts.path or ''\n"
"  if type(path) ~= 'string' then error('client:request: option url must be a string', 2) end\n"
"  o.url, o.path = join(self.base_url, path), nil\n"
"  return M.request(o)\n"
"end\n"
"for _, m in ipairs(METHODS) do\n"
"  local method = m:upper()\n"
"  Client[m] = function(self, path, opts)\n"
"    if opts ~= nil and type(opts) ~= 'table' then\n"
"      error('client:' .. m .. ': opts must be a table', 2)\n"
"    end\n"
"    local o = {}\n"
"    for k, v in pairs(opts or {}) do o[k] = v end\n"
"    o.method, o.url = method, path\n"
"    return self:request(o)\n"
"  end\n"
"end\n";
/* clang-format on */

void luar_http_client_open(lua_State *L)
{
    int mod = lua_gettop(L);
    if (luaL_newmetatable(L, RESPONSE_MT)) {
        lua_createtable(L, 0, 1);
        lua_pushcfunction(L, response_json);
        lua_setfield(L, -2, "json");
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    if (luaL_loadbuffer(L, client_lua, sizeof client_lua - 1, "=luar.http") != LUA_OK)
        lua_error(L);
    lua_pushcfunction(L, client_send);
    lua_pushvalue(L, mod);
    lua_pushcfunction(L, client_check);
    lua_call(L, 3, 0);
}
