/*
 * The outbound half of luar.http (SPEC §4): http.request, http.get/post/put/patch/delete/
 * head and http.client{...}. The option handling that is plain table work (query and form
 * encoding, merging a client's defaults, joining base_url and path, auth headers) is a
 * short Lua chunk below, where it reads as what it is; it ends in `send`, the C function
 * that waits through the coroutine bridge for host/client's luar_client_request().
 *
 * The resilience components (host/client/{retry,breaker,ratelimit,cache}) plug in at the
 * functions under "Resilience plug-in points": before each attempt, after each attempt,
 * and the retry decision; the op already has a timer for their waits (rate-limit turn,
 * backoff) and re-sends the same request on it.
 */
#include "client/client.h"
#include "client/redact.h"
#include "common/error.h"
#include "lua/bridge.h"
#include "lua/error.h"
#include "lua/mod_http_client.h"
#include "lua/util.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

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
    uv_loop_t *loop;
    uv_timer_t wait; /* the waits between attempts (rate-limit turn, retry backoff) */
    luar_client_req_t req;
    luar_client_call_t *call; /* the attempt in flight, or NULL */
    luar_client_res_t *res;   /* the final outcome, handed to push */
    int attempt;              /* 1 for the first */
    int raise_for_status;
};

/* ---- Resilience plug-in points ---------------------------------------------------------- */

/*
 * Before an attempt: the rate limiter's turn (return a delay in seconds to wait on
 * ro->wait, then come back here), the breaker's allow (fail with kind "breaker_open"
 * without touching the network), the cache lookup (complete with the cached response).
 * Returns 0 to send now; a positive number of seconds to wait first; -1 when `*out` was
 * set to the outcome (no attempt). Nothing is wired yet: every attempt goes out.
 */
static double resilience_before_attempt(struct req_op *ro, luar_client_res_t **out)
{
    (void)ro;
    (void)out;
    return 0;
}

/*
 * After an attempt: report success or failure to the host's breaker (connect errors,
 * timeouts and 5xx are failures; 4xx are not) and store cacheable responses (or serve
 * stale-if-error from the cache by replacing `*res`). Nothing is wired yet.
 */
static void resilience_after_attempt(struct req_op *ro, luar_client_res_t **res)
{
    (void)ro;
    (void)res;
}

/*
 * The retry decision: seconds to wait before attempt ro->attempt + 1 (backoff with full
 * jitter, Retry-After within its cap, idempotent methods or an Idempotency-Key only), or a
 * negative number for no retry. No retries until the retry policy is wired.
 */
static double resilience_retry_delay(struct req_op *ro, const luar_client_res_t *res)
{
    (void)ro;
    (void)res;
    return -1;
}

/* ---- the wait --------------------------------------------------------------------------- */

static void start_attempt(struct req_op *ro);

static void finish(struct req_op *ro, luar_client_res_t *res)
{
    ro->res = res;
    luar_bridge_complete(ro->op);
}

static void on_wait_over(uv_timer_t *t)
{
    start_attempt(t->data);
}

static void wait_then_attempt(struct req_op *ro, double seconds)
{
    uv_update_time(ro->loop);
    uv_timer_start(&ro->wait, on_wait_over, (uint64_t)(seconds * 1000.0 + 0.5), 0);
}

static void on_response(void *arg, luar_client_res_t *res)
{
    struct req_op *ro = arg;
    ro->call = NULL;
    resilience_after_attempt(ro, &res);
    double delay = resilience_retry_delay(ro, res);
    if (delay >= 0) {
        luar_client_res_free(res);
        ro->attempt++;
        wait_then_attempt(ro, delay);
        return;
    }
    finish(ro, res);
}

/* A failure before anything was sent, delivered like any other outcome. */
static luar_client_res_t *local_error(int rc, const char *kind, const char *message)
{
    luar_client_res_t *res = calloc(1, sizeof *res);
    if (res == NULL)
        return NULL;
    res->rc = rc;
    res->kind = kind;
    snprintf(res->message, sizeof res->message, "%s", message);
    return res;
}

static void start_attempt(struct req_op *ro)
{
    luar_client_res_t *res = NULL;
    double wait = resilience_before_attempt(ro, &res);
    if (wait < 0) {
        finish(ro, res);
        return;
    }
    if (wait > 0) {
        wait_then_attempt(ro, wait);
        return;
    }
    int rc = luar_client_request(ro->loop, &ro->req, on_response, ro, &ro->call);
    if (rc) {
        ro->call = NULL;
        finish(ro, local_error(rc, rc == LUAR_EINVAL ? "invalid" : "connect",
                               rc == LUAR_EINVAL ? "invalid request" : luar_strerror(rc)));
    }
}

static void op_closed(uv_handle_t *h)
{
    struct req_op *ro = h->data;
    luar_bridge_op_free(ro->op);
}

static void req_cleanup(luar_bridge_op_t *op, int canceled)
{
    (void)canceled;
    struct req_op *ro = luar_bridge_op_data(op);
    if (ro->call) /* the task was cancelled mid-transfer: stop it now */
        luar_client_cancel(ro->call);
    ro->call = NULL;
    luar_client_res_free(ro->res);
    ro->res = NULL;
    uv_timer_stop(&ro->wait);
    uv_close((uv_handle_t *)&ro->wait, op_closed);
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
    if (res->rc)
        return luar_lua_fail(L, res->kind, "%s", res->message);
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
    lua_pushboolean(L, 0);
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
    luar_client_header_t *h = lua_newuserdatauv(L, MAX_HEADERS * sizeof *h, 0);
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

    uv_loop_t *loop = luar_bridge_loop(L);
    hold_pool(L, loop);
    luar_bridge_op_t *op = luar_bridge_op_new(L, "http.request", sizeof(struct req_op));
    struct req_op *ro = luar_bridge_op_data(op);
    ro->op = op;
    ro->loop = loop;
    ro->req = req;
    ro->attempt = 1;
    ro->raise_for_status = raise;
    uv_timer_init(loop, &ro->wait);
    ro->wait.data = ro;
    luar_bridge_op_set_cleanup(op, req_cleanup);
    start_attempt(ro);
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
"  'retry', 'breaker', 'rate', 'cache', 'fallback' }\n"
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
"  return send(norm)\n"
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
"local B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'\n"
"local function base64(s)\n"
"  return ((s:gsub('.', function(c)\n"
"    local b, r = c:byte(), ''\n"
"    for i = 8, 1, -1 do r = r .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and '1' or '0') end\n"
"    return r\n"
"  end) .. '0000'):gsub('%d%d%d?%d?%d?%d?', function(x)\n"
"    if #x < 6 then return '' end\n"
"    local c = 0\n"
"    for i = 1, 6 do c = c + (x:sub(i, i) == '1' and 2 ^ (6 - i) or 0) end\n"
"    return B64:sub(c + 1, c + 1)\n"
"  end) .. ({ '', '==', '=' })[#s % 3 + 1])\n"
"end\n"
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
