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
#include "client/breaker.h"
#include "client/cache.h"
#include "client/client.h"
#include "client/ratelimit.h"
#include "client/redact.h"
#include "client/retry.h"
#include "common/error.h"
#include "lua/bridge.h"
#include "lua/error.h"
#include "lua/mod_http_client.h"
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
    uv_loop_t *loop;
    uv_timer_t wait; /* the waits between attempts (rate-limit turn, retry backoff) */
    luar_client_req_t req;
    luar_client_call_t *call; /* the attempt in flight, or NULL */
    luar_client_res_t *res;   /* the final outcome, handed to push */
    int attempt;              /* 1 for the first */
    int raise_for_status;
    /* resilience (read from the options at send) */
    luar_retry_policy_t retry;
    int use_breaker;
    luar_breaker_settings_t breaker;
    char host[LUAR_BREAKER_HOST_MAX]; /* "name:port", the breaker's key */
    uint64_t breaker_token;
    int breaker_held;         /* allowed for the current attempt, not yet reported */
    luar_tokenbucket_t *bucket; /* the client's rate limiter, or NULL */
    int rate_reserved;        /* this attempt's turn is taken */
    int use_cache;
    double cache_ttl;
    double stale_if_error;    /* seconds past ttl a stale answer may serve; 0: never */
    luar_cache_entry_t *stale; /* a stale entry being revalidated */
    int cached;               /* the outcome came from the cache */
    int has_idempotency_key;
};

/* ---- Resilience: retry, breaker, rate limit, cache (host/client) ----------------------- */

/* One breaker registry and one response cache per process; buckets per client. */
static luar_breaker_registry_t *breakers;
static luar_cache_t *cache;

#define MAX_BUCKETS 256
static struct {
    char key[LUAR_BREAKER_HOST_MAX + 16];
    luar_tokenbucket_t bucket;
} buckets[MAX_BUCKETS];
static int nbuckets;

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The bucket named `key` with `rate` ("10/s"), created on first use; NULL on a bad rate. */
static luar_tokenbucket_t *bucket_for(const char *key, const char *rate)
{
    for (int i = 0; i < nbuckets; i++)
        if (strcmp(buckets[i].key, key) == 0)
            return &buckets[i].bucket;
    if (nbuckets == MAX_BUCKETS)
        return NULL;
    luar_tokenbucket_t *b = &buckets[nbuckets].bucket;
    if (luar_tokenbucket_init_rate(b, rate) != 0)
        return NULL;
    snprintf(buckets[nbuckets].key, sizeof buckets[nbuckets].key, "%.300s", key);
    nbuckets++;
    return b;
}

/* "scheme://user@host:port/path" → "host:port" (default port by scheme). */
static void url_host(const char *url, char *out, size_t size)
{
    const char *p = strstr(url, "://");
    int https = strncmp(url, "https", 5) == 0;
    p = p ? p + 3 : url;
    const char *end = p + strcspn(p, "/?#");
    const char *at = memchr(p, '@', (size_t)(end - p));
    if (at)
        p = at + 1;
    size_t len = (size_t)(end - p);
    const char *colon = NULL;
    if (*p == '[') {
        const char *rb = memchr(p, ']', len);
        colon = rb && rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = memchr(p, ':', len);
    }
    if (colon)
        snprintf(out, size, "%.*s", (int)len, p);
    else
        snprintf(out, size, "%.*s:%d", (int)len, p, https ? 443 : 80);
}

/* A response made from a cached entry (the caller keeps the entry). */
static luar_client_res_t *res_from_entry(const luar_cache_entry_t *e)
{
    luar_client_res_t *res = calloc(1, sizeof *res);
    if (res == NULL)
        return NULL;
    res->status = e->status;
    res->headers = calloc(e->nheaders ? e->nheaders : 1, sizeof *res->headers);
    for (size_t i = 0; res->headers && i < e->nheaders; i++) {
        res->headers[i].name = strdup(e->headers[i].name);
        res->headers[i].value = strdup(e->headers[i].value);
        res->nheaders++;
    }
    luar_buf_init(&res->body, 0);
    luar_buf_append(&res->body, e->body ? e->body : "", e->body_len);
    return res;
}

static luar_client_res_t *local_error(int rc, const char *kind, const char *message);

/*
 * Before an attempt: on the first, the cache (a fresh entry answers; a stale one is
 * revalidated with If-None-Match / If-Modified-Since); then the host's breaker (refused:
 * kind "breaker_open", or a stale answer when stale_if_error allows), then the client's
 * rate limiter (a turn later: wait and come back; over max_wait: kind "rate_limited").
 * Returns 0 to send now, seconds to wait first, or -1 with `*out` set.
 */
static double resilience_before_attempt(struct req_op *ro, luar_client_res_t **out)
{
    double now = wall_now();
    const char *method = ro->req.method ? ro->req.method : "GET";
    if (ro->attempt == 1 && ro->use_cache && cache && !ro->stale && !ro->breaker_held &&
        !ro->rate_reserved) {
        luar_cache_entry_t *e = NULL;
        int found = luar_cache_lookup(cache, method, ro->req.url,
                                      (const luar_cache_header_t *)ro->req.headers,
                                      ro->req.nheaders, now, &e);
        if (found == LUAR_CACHE_FRESH) {
            *out = res_from_entry(e);
            luar_cache_entry_release(e);
            ro->cached = 1;
            return -1;
        }
        if (found == LUAR_CACHE_STALE) {
            ro->stale = e;
            luar_client_header_t *h = (luar_client_header_t *)ro->req.headers;
            if (e->etag && ro->req.nheaders < MAX_HEADERS)
                h[ro->req.nheaders++] = (luar_client_header_t){"If-None-Match", e->etag};
            if (e->last_modified && ro->req.nheaders < MAX_HEADERS)
                h[ro->req.nheaders++] =
                    (luar_client_header_t){"If-Modified-Since", e->last_modified};
        }
    }
    if (ro->use_breaker && !ro->breaker_held) {
        int ok = luar_breaker_allow(breakers, ro->host, &ro->breaker, now, &ro->breaker_token);
        if (ok == 0) {
            luar_cache_entry_t *e = ro->stale_if_error > 0 && cache
                                        ? luar_cache_stale_if_error(
                                              cache, method, ro->req.url,
                                              (const luar_cache_header_t *)ro->req.headers,
                                              ro->req.nheaders, now, ro->stale_if_error)
                                        : NULL;
            if (e) {
                *out = res_from_entry(e);
                luar_cache_entry_release(e);
                ro->cached = 1;
                return -1;
            }
            char msg[240];
            snprintf(msg, sizeof msg, "circuit breaker open for %.200s", ro->host);
            *out = local_error(LUAR_EBUSY, "breaker_open", msg);
            if (*out)
                (*out)->retry_after = luar_breaker_retry_in(breakers, ro->host, now);
            return -1;
        }
        ro->breaker_held = ok == 1; /* ETOOBIG and friends: send untracked */
    }
    if (ro->bucket && !ro->rate_reserved) {
        double wait = luar_tokenbucket_reserve(ro->bucket, now);
        if (wait < 0) {
            if (ro->breaker_held)
                luar_breaker_report(breakers, ro->host, ro->breaker_token,
                                    LUAR_BREAKER_NEUTRAL, now);
            ro->breaker_held = 0;
            *out = local_error(LUAR_EBUSY, "rate_limited",
                               "client rate limit: the wait for a turn is over max_wait");
            if (*out)
                (*out)->retry_after = luar_tokenbucket_peek(ro->bucket, now);
            return -1;
        }
        ro->rate_reserved = 1;
        if (wait > 0)
            return wait;
    }
    return 0;
}

/* After an attempt: the breaker hears how the host did (5xx, connect, timeout: failure). */
static void resilience_after_attempt(struct req_op *ro, luar_client_res_t **res)
{
    if (ro->breaker_held)
        luar_breaker_report(breakers, ro->host, ro->breaker_token,
                            luar_breaker_outcome((*res)->rc ? 0 : (int)(*res)->status,
                                                 (*res)->rc ? (*res)->kind : NULL),
                            wall_now());
    ro->breaker_held = 0;
    ro->rate_reserved = 0;
}

/* The retry decision (host/client/retry.c): seconds before the next attempt, or -1. */
static double resilience_retry_delay(struct req_op *ro, const luar_client_res_t *res)
{
    double delay = -1;
    if (luar_retry_should(&ro->retry, ro->req.method ? ro->req.method : "GET",
                          ro->has_idempotency_key, ro->attempt, res->rc ? 0 : (int)res->status,
                          res->rc ? res->kind : NULL,
                          res->rc ? NULL : luar_client_res_header(res, "retry-after"),
                          wall_now(), &delay) == 1)
        return delay;
    return -1;
}

/*
 * The final outcome and the cache: a 304 to a revalidation answers from the entry; a
 * transport error or a 5xx answers stale when stale_if_error allows; other answers are
 * offered to the cache (it keeps what is cacheable); a successful unsafe request drops the
 * URL's entries.
 */
static luar_client_res_t *resilience_final(struct req_op *ro, luar_client_res_t *res)
{
    if (!ro->use_cache || cache == NULL || res == NULL)
        goto done;
    double now = wall_now();
    const char *method = ro->req.method ? ro->req.method : "GET";
    if (res->rc == 0 && res->status == 304 && ro->stale) {
        luar_cache_revalidated(cache, ro->stale, now, ro->cache_ttl);
        luar_client_res_free(res);
        res = res_from_entry(ro->stale);
        ro->cached = 1;
    } else if ((res->rc || res->status >= 500) && ro->stale_if_error > 0) {
        luar_cache_entry_t *e = luar_cache_stale_if_error(
            cache, method, ro->req.url, (const luar_cache_header_t *)ro->req.headers,
            ro->req.nheaders, now, ro->stale_if_error);
        if (e) {
            luar_client_res_free(res);
            res = res_from_entry(e);
            luar_cache_entry_release(e);
            ro->cached = 1;
        }
    } else if (res->rc == 0) {
        luar_cache_store(cache, method, ro->req.url, (const luar_cache_header_t *)ro->req.headers,
                         ro->req.nheaders, (int)res->status,
                         (const luar_cache_header_t *)res->headers, res->nheaders,
                         res->body.data, res->body.len, ro->cache_ttl, now);
        if (res->status < 400 && strcmp(method, "GET") && strcmp(method, "HEAD"))
            luar_cache_invalidate(cache, ro->req.url);
    }
done:
    if (ro->stale)
        luar_cache_entry_release(ro->stale);
    ro->stale = NULL;
    return res;
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
    finish(ro, resilience_final(ro, res));
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
    double now = wall_now();
    if (ro->breaker_held) /* cancelled: the host did nothing wrong */
        luar_breaker_report(breakers, ro->host, ro->breaker_token, LUAR_BREAKER_NEUTRAL, now);
    ro->breaker_held = 0;
    if (ro->rate_reserved && canceled)
        luar_tokenbucket_cancel(ro->bucket, now);
    ro->rate_reserved = 0;
    if (ro->stale)
        luar_cache_entry_release(ro->stale);
    ro->stale = NULL;
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
 * Reads the resilience options of the normalized table at index 1 into `ro`: retry
 * (default on: SPEC's policy; false: one attempt; {attempts, backoff, backoff_cap, on,
 * max_retry_after}), breaker (default on per host; false; {failures, reset}), rate ("N/s"
 * with rate_key naming the bucket, rate_max_wait), cache ({ttl, stale_if_error}; off by
 * default). Raises on misuse. [-0, +0]
 */
static void read_resilience(lua_State *L, const luar_client_req_t *req, struct req_op *ro)
{
    luar_retry_policy_init(&ro->retry);
    int t = lua_getfield(L, 1, "retry");
    if (t == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
        ro->retry.attempts = 1;
    } else if (t == LUA_TTABLE) {
        int rt = lua_gettop(L);
        double v;
        if ((v = opt_num(L, rt, "attempts")) > 0)
            ro->retry.attempts = (int)v;
        if ((v = opt_num(L, rt, "backoff")) > 0)
            ro->retry.backoff = v;
        if ((v = opt_num(L, rt, "backoff_cap")) > 0)
            ro->retry.backoff_cap = v;
        if ((v = opt_num(L, rt, "max_retry_after")) > 0)
            ro->retry.max_retry_after = v;
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
            luar_retry_policy_set_statuses(&ro->retry, st, n);
        }
        lua_pop(L, 1);
    } else if (t != LUA_TNIL && t != LUA_TBOOLEAN) {
        luaL_error(L, "http.request: retry must be false or a table");
    }
    lua_pop(L, 1);

    luar_breaker_settings_init(&ro->breaker);
    t = lua_getfield(L, 1, "breaker");
    ro->use_breaker = !(t == LUA_TBOOLEAN && !lua_toboolean(L, -1));
    if (t == LUA_TTABLE) {
        double v;
        if ((v = opt_num(L, lua_gettop(L), "failures")) > 0)
            ro->breaker.failures = (int)v;
        if ((v = opt_num(L, lua_gettop(L), "reset")) > 0)
            ro->breaker.reset = v;
    }
    lua_pop(L, 1);
    url_host(req->url, ro->host, sizeof ro->host);
    if (ro->use_breaker && breakers == NULL)
        breakers = luar_breaker_registry_new(LUAR_BREAKER_DEFAULT_MAX_HOSTS);
    ro->use_breaker = ro->use_breaker && breakers != NULL;

    const char *rate = opt_str(L, 1, "rate");
    if (rate) {
        const char *key = opt_str(L, 1, "rate_key");
        char def[LUAR_BREAKER_HOST_MAX + 8];
        snprintf(def, sizeof def, "host:%s", ro->host);
        ro->bucket = bucket_for(key ? key : def, rate);
        if (ro->bucket == NULL)
            luaL_error(L, "http.request: rate must look like \"10/s\", \"100/m\" or \"5000/h\"");
        double mw = opt_num(L, 1, "rate_max_wait");
        if (mw > 0)
            ro->bucket->max_wait = mw;
    }

    if (lua_getfield(L, 1, "cache") == LUA_TTABLE) {
        int ct = lua_gettop(L);
        ro->use_cache = 1;
        if (lua_getfield(L, ct, "ttl") == LUA_TNUMBER && lua_tonumber(L, -1) >= 0)
            ro->cache_ttl = lua_tonumber(L, -1); /* 0: revalidate every time */
        else if (!lua_isnil(L, -1))
            luaL_error(L, "http.request: cache.ttl must be a number of seconds >= 0");
        lua_pop(L, 1);
        if (lua_getfield(L, ct, "stale_if_error") == LUA_TBOOLEAN)
            ro->stale_if_error = lua_toboolean(L, -1) ? 86400 : 0;
        else if (lua_isnumber(L, -1))
            ro->stale_if_error = lua_tonumber(L, -1);
        lua_pop(L, 1);
        if (cache == NULL)
            cache = luar_cache_new(LUAR_CACHE_DEFAULT_MAX_BYTES);
        ro->use_cache = cache != NULL;
    }
    lua_pop(L, 1);
    for (size_t i = 0; i < req->nheaders; i++)
        if (strcasecmp(req->headers[i].name, "idempotency-key") == 0)
            ro->has_idempotency_key = 1;
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

    struct req_op res_opts;
    memset(&res_opts, 0, sizeof res_opts);
    read_resilience(L, &req, &res_opts);

    uv_loop_t *loop = luar_bridge_loop(L);
    hold_pool(L, loop);
    luar_bridge_op_t *op = luar_bridge_op_new(L, "http.request", sizeof(struct req_op));
    struct req_op *ro = luar_bridge_op_data(op);
    *ro = res_opts;
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
