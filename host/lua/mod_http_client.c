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

static const char *opt_str(lua_State *L, int t, const char *k)
{
    const char *v = NULL;
    if (lua_getfield(L, t, k) == LUA_TSTRING)
        v = lua_tostring(L, -1); /* alive: the table holds it */
    else if (!lua_isnil(L, -1))
        luaL_error(L, "http.request: option %s must be a string", k);
    lua_pop(L, 1);
    return v;
}

static double opt_num(lua_State *L, int t, const char *k)
{
    double v = 0;
    if (lua_getfield(L, t, k) == LUA_TNUMBER) {
        v = lua_tonumber(L, -1);
        if (v <= 0)
            luaL_error(L, "http.request: option %s must be positive", k);
    } else if (!lua_isnil(L, -1)) {
        luaL_error(L, "http.request: option %s must be a number", k);
    }
    lua_pop(L, 1);
    return v;
}

/* Reads the headers table at `t` into a userdata array pushed on the stack. */
static luar_client_header_t *read_headers(lua_State *L, int t, size_t *n)
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
            luaL_error(L, "http.request: headers must map names to strings");
        if (*n == MAX_HEADERS)
            luaL_error(L, "http.request: more than %d headers", MAX_HEADERS);
        size_t nlen, vlen;
        const char *name = lua_tolstring(L, -2, &nlen), *value = lua_tolstring(L, -1, &vlen);
        if (nlen == 0 || strpbrk(name, ":\r\n \t") || memchr(value, '\r', vlen) ||
            memchr(value, '\n', vlen) || strlen(name) != nlen || strlen(value) != vlen)
            luaL_error(L, "http.request: invalid header %s", name);
        h[*n].name = name; /* alive: the headers table holds them */
        h[*n].value = value;
        (*n)++;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return h;
}

/*
 * Reads the resilience options of the normalized table at index 1 into `ro`: retry
 * (default on: SPEC's policy; false: one attempt; {attempts, backoff, backoff_cap, on,
 * max_retry_after}), breaker (default on per host; false; {failures, reset}), rate ("N/s"
 * with rate_key naming the bucket, rate_max_wait), cache ({ttl, stale_if_error}; off by
 * default). Raises on misuse. [-0, +0]
 */
static void read_policy(lua_State *L, luar_client_policy_t *p)
{
    luar_client_policy_init(p);
    int t = lua_getfield(L, 1, "retry");
    if (t == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
        p->retry.attempts = 1;
    } else if (t == LUA_TTABLE) {
        int rt = lua_gettop(L);
        double v;
        if ((v = opt_num(L, rt, "attempts")) > 0)
            p->retry.attempts = (int)v;
        if ((v = opt_num(L, rt, "backoff")) > 0)
            p->retry.backoff = v;
        if ((v = opt_num(L, rt, "backoff_cap")) > 0)
            p->retry.backoff_cap = v;
        if ((v = opt_num(L, rt, "max_retry_after")) > 0)
            p->retry.max_retry_after = v;
        if (lua_getfield(L, rt, "on") == LUA_TTABLE) {
            int st[LUAR_RETRY_MAX_STATUSES];
            size_t n = 0;
            for (lua_Integer i = 1; n < LUAR_RETRY_MAX_STATUSES; i++, n++) {
                if (lua_geti(L, -1, i) != LUA_TNUMBER) {
                    lua_pop(L, 1);
                    break;
                }
                st[n] = (int)lua_tointeger(L, -1);
                lua_pop(L, 1);
            }
            luar_retry_policy_set_statuses(&p->retry, st, n);
        }
        lua_pop(L, 1);
    } else if (t != LUA_TNIL && t != LUA_TBOOLEAN) {
        luaL_error(L, "http.request: retry must be false or a table");
    }
    lua_pop(L, 1);

    t = lua_getfield(L, 1, "breaker");
    p->breaker = !(t == LUA_TBOOLEAN && !lua_toboolean(L, -1));
    if (t == LUA_TTABLE) {
        double v;
        if ((v = opt_num(L, lua_gettop(L), "failures")) > 0)
            p->breaker_settings.failures = (int)v;
        if ((v = opt_num(L, lua_gettop(L), "reset")) > 0)
            p->breaker_settings.reset = v;
    }
    lua_pop(L, 1);

    p->rate = opt_str(L, 1, "rate");
    double per_second, burst;
    if (p->rate && luar_parse_rate(p->rate, &per_second, &burst))
        luaL_error(L, "http.request: rate must look like \"10/s\", \"100/m\" or \"5000/h\"");
    p->rate_key = opt_str(L, 1, "rate_key");
    p->rate_max_wait = opt_num(L, 1, "rate_max_wait");

    if (lua_getfield(L, 1, "cache") == LUA_TTABLE) {
        int ct = lua_gettop(L);
        p->cache = 1;
        if (lua_getfield(L, ct, "ttl") == LUA_TNUMBER && lua_tonumber(L, -1) >= 0)
            p->cache_ttl = lua_tonumber(L, -1); /* 0: revalidate every time */
        else if (!lua_isnil(L, -1))
            luaL_error(L, "http.request: cache.ttl must be a number of seconds >= 0");
        lua_pop(L, 1);
        if (lua_getfield(L, ct, "stale_if_error") == LUA_TBOOLEAN)
            p->stale_if_error = lua_toboolean(L, -1) ? 86400 : 0;
        else if (lua_isnumber(L, -1))
            p->stale_if_error = lua_tonumber(L, -1);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
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
    req.method = opt_str(L, 1, "method");
    req.url = opt_str(L, 1, "url");
    if (req.url == NULL)
        return luaL_error(L, "http.request: url is required");
    req.headers = read_headers(L, 1, &req.nheaders); /* stays at index 2 */
    req.body = opt_str(L, 1, "body");
    if (lua_getfield(L, 1, "json") != LUA_TNIL) {
        size_t len;
        req.body = luar_json_encode(L, 3, &len); /* stays at index 4 */
        req.body_len = len;
    } else if (req.body) {
        lua_getfield(L, 1, "body");
        req.body_len = lua_rawlen(L, -1);
        lua_pop(L, 1);
    }
    req.connect_timeout = opt_num(L, 1, "connect_timeout");
    req.timeout = opt_num(L, 1, "timeout");
    req.max_body = (size_t)opt_num(L, 1, "max_body");
    req.ca_file = opt_str(L, 1, "ca");
    req.cert_file = opt_str(L, 1, "cert");
    req.key_file = opt_str(L, 1, "key");
    req.proxy = opt_str(L, 1, "proxy");
    lua_getfield(L, 1, "verify");
    req.insecure = lua_isboolean(L, -1) && !lua_toboolean(L, -1);
    lua_getfield(L, 1, "raise_for_status");
    int raise = lua_toboolean(L, -1);
    lua_pop(L, 2);

    luar_client_policy_t policy;
    read_policy(L, &policy);

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
"local send, M = ...\n"
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
"  if type(t) ~= 'table' then error('http.request: ' .. what .. ' must be a table', 0) end\n"
"  local keys = {}\n"
"  for k in pairs(t) do\n"
"    if type(k) ~= 'string' then\n"
"      error('http.request: ' .. what .. ' keys must be strings', 0)\n"
"    end\n"
"    keys[#keys + 1] = k\n"
"  end\n"
"  table.sort(keys)\n"
"  local out = {}\n"
"  for _, k in ipairs(keys) do\n"
"    local v = t[k]\n"
"    if type(v) == 'table' then\n"
"      for _, x in ipairs(v) do out[#out + 1] = esc(k) .. '=' .. esc(scalar(x, what)) end\n"
"    else\n"
"      out[#out + 1] = esc(k) .. '=' .. esc(scalar(v, what))\n"
"    end\n"
"  end\n"
"  return table.concat(out, '&')\n"
"end\n"
"local PASS = { 'ca', 'cert', 'key', 'proxy', 'verify', 'max_body', 'raise_for_status',\n"
"  'retry', 'breaker', 'rate', 'rate_key', 'rate_max_wait', 'cache' }\n"
"function M.request(opts)\n"
"  if type(opts) ~= 'table' then error('http.request: expected a table of options', 2) end\n"
"  local url = opts.url\n"
"  if type(url) ~= 'string' then error('http.request: url must be a string', 2) end\n"
"  local method = opts.method or 'GET'\n"
"  if type(method) ~= 'string' then error('http.request: method must be a string', 2) end\n"
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
"    if type(opts.headers) ~= 'table' then error('http.request: headers must be a table', 2) end\n"
"    for k, v in pairs(opts.headers) do\n"
"      if type(k) ~= 'string' then error('http.request: header names must be strings', 2) end\n"
"      headers[k] = scalar(v, 'http.request: headers')\n"
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
"    if type(opts.body) ~= 'string' then error('http.request: body must be a string', 2) end\n"
"    norm.body = opts.body\n"
"  end\n"
"  local t = opts.timeout\n"
"  if type(t) == 'number' then norm.timeout = t\n"
"  elseif type(t) == 'table' then norm.connect_timeout, norm.timeout = t.connect, t.total\n"
"  elseif t ~= nil then\n"
"    error('http.request: timeout must be seconds or {connect=, total=}', 2)\n"
"  end\n"
"  for _, k in ipairs(PASS) do norm[k] = opts[k] end\n"
"  local fallback = opts.fallback\n"
"  if fallback ~= nil and type(fallback) ~= 'function' then\n"
"    error('http.request: fallback must be a function', 2)\n"
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
"    error('http.client: base_url must be a string', 2) end\n"
"  local c = { defaults = {}, headers = {}, base_url = conf.base_url }\n"
"  -- One rate-limit bucket per client object.\n"
"  if conf.rate ~= nil and conf.rate_key == nil then c.defaults.rate_key = tostring(c) end\n"
"  for k, v in pairs(conf) do\n"
"    if k ~= 'base_url' and k ~= 'headers' and k ~= 'auth' then c.defaults[k] = v end\n"
"  end\n"
"  if conf.headers ~= nil then\n"
"    if type(conf.headers) ~= 'table' then error('http.client: headers must be a table', 2) end\n"
"    for k, v in pairs(conf.headers) do c.headers[k] = v end\n"
"  end\n"
"  local auth = conf.auth\n"
"  if auth ~= nil then\n"
"    if type(auth) ~= 'table' then error('http.client: auth must be a table', 2) end\n"
"    if auth.bearer ~= nil then\n"
"      c.headers.Authorization = 'Bearer ' .. scalar(auth.bearer, 'http.client: auth.bearer')\n"
"    elseif type(auth.basic) == 'table' then\n"
"      local user = auth.basic.user or auth.basic[1]\n"
"      local pass = auth.basic.pass or auth.basic.password or auth.basic[2] or ''\n"
"      if type(user) ~= 'string' then error('http.client: auth.basic needs a user', 2) end\n"
"      c.headers.Authorization = 'Basic ' .. base64(user .. ':' .. pass)\n"
"    else\n"
"      error('http.client: auth must be {bearer=...} or {basic={user, pass}}', 2)\n"
"    end\n"
"  end\n"
"  return setmetatable(c, Client)\n"
"end\n"
"function Client:request(opts)\n"
"  if type(opts) ~= 'table' then error('client:request: expected a table of options', 2) end\n"
"  local o = {}\n"
"  for k, v in pairs(self.defaults) do o[k] = v end\n"
"  for k, v in pairs(opts) do o[k] = v end\n"
"  local h = {}\n"
"  for k, v in pairs(self.headers) do h[k] = v end\n"
"  for k, v in pairs(opts.headers or {}) do\n"
"    for hk in pairs(h) do if hk:lower() == k:lower() then h[hk] = nil end end\n"
"    h[k] = v\n"
"  end\n"
"  o.headers = h\n"
"  local path = opts.url or opts.path or ''\n"
"  if type(path) ~= 'string' then error('client:request: url must be a string', 2) end\n"
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
    lua_call(L, 2, 0);
}
