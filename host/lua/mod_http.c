/*
 * luar.http, server side: http.route() declares routes while the scripts load; the router
 * matches requests (literal segments beat `:params`, which beat a trailing `*splat`; 405
 * with Allow when only the method differs, else 404), builds the request table and runs
 * the handler in a task; the handler's return value becomes the response. The outbound
 * client (http.request, http.client) will live beside this file.
 */
#include "common/error.h"
#include "log/log.h"
#include "plugin/hooks.h"
#include "lua/error.h"
#include "lua/mod_http.h"
#include "lua/mod_http_client.h"
#include "lua/modules.h"
#include "lua/route_guard.h"
#include "lua/util.h"
#include "lua/vm_internal.h"
#include "webhooks/ingest.h"

#include <ctype.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_SEGS 64
#define MAX_METHOD 16
#define REQ_MT "luar.http.request"
#define TEXT_PLAIN "text/plain; charset=utf-8"
#define APP_JSON "application/json"

enum seg_kind { SEG_SPLAT = 1, SEG_PARAM = 2, SEG_LIT = 3 };

struct span {
    const char *p;
    size_t len;
};

struct seg {
    int kind;
    size_t off, len; /* in the route's pattern; for params and splats, the name */
};

struct route {
    char method[MAX_METHOD];
    char *pattern;
    struct seg *segs;
    int nsegs;
    int fn_ref;
    luar_webhook_route_t *webhook; /* a webhooks.route: answered in C (webhooks/ingest.c) */
    luar_route_guard_t *guard;     /* rate, require_client_cert; NULL when neither */
};

struct http_router {
    struct route *routes;
    size_t n, cap;
};

void luar_http_router_free(luar_vm_t *vm)
{
    struct http_router *r = vm->router;
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n; i++) {
        free(r->routes[i].pattern);
        free(r->routes[i].segs);
        luar_webhook_route_free(r->routes[i].webhook);
        luar_route_guard_free(NULL, r->routes[i].guard); /* the state is closed already */
    }
    free(r->routes);
    free(r);
    vm->router = NULL;
}

size_t luar_vm_routes(const luar_vm_t *vm)
{
    return vm->router != NULL ? vm->router->n : 0;
}

/* Splits "/a/b" into its segments; "/" has none. Returns the count or -1 (too many). */
static int split_path(const char *s, size_t len, struct span *out)
{
    int n = 0;
    if (len == 0 || s[0] != '/')
        return -1;
    if (len == 1)
        return 0;
    size_t start = 1;
    for (size_t i = 1; i <= len; i++) {
        if (i < len && s[i] != '/')
            continue;
        if (n == MAX_SEGS)
            return -1;
        out[n].p = s + start;
        out[n].len = i - start;
        n++;
        start = i + 1;
    }
    return n;
}

/* Matches `path`; fills ranks (one per route segment). Returns 1 on a match. */
static int route_match(const struct route *r, const struct span *ps, int np, int *ranks)
{
    for (int i = 0; i < r->nsegs; i++) {
        const struct seg *sg = &r->segs[i];
        ranks[i] = sg->kind;
        if (sg->kind == SEG_SPLAT)
            return 1;
        if (i >= np)
            return 0;
        if (sg->kind == SEG_PARAM) {
            if (ps[i].len == 0)
                return 0;
        } else if (sg->len != ps[i].len || memcmp(r->pattern + sg->off, ps[i].p, sg->len) != 0) {
            return 0;
        }
    }
    return np == r->nsegs;
}

/* >0 when route a (ranks ra) is more specific than b. */
static int compare_ranks(const int *ra, int na, const int *rb, int nb)
{
    for (int i = 0; i < na && i < nb; i++)
        if (ra[i] != rb[i])
            return ra[i] - rb[i];
    return na - nb;
}

struct match {
    struct route *route;
    int any_path; /* some route matched the path, maybe not the method */
};

static void find_route(struct http_router *router, const char *method, const struct span *ps,
                       int np, struct match *m)
{
    int ranks[MAX_SEGS], best_ranks[MAX_SEGS];
    m->route = NULL;
    m->any_path = 0;
    if (router == NULL)
        return;
    for (size_t i = 0; i < router->n; i++) {
        struct route *r = &router->routes[i];
        if (!route_match(r, ps, np, ranks))
            continue;
        m->any_path = 1;
        int exact = strcmp(r->method, method) == 0;
        if (!exact && strcmp(r->method, "*") != 0)
            continue;
        if (m->route != NULL) {
            int c = compare_ranks(ranks, r->nsegs, best_ranks, m->route->nsegs);
            int best_exact = strcmp(m->route->method, method) == 0;
            if (c < 0 || (c == 0 && (!exact || best_exact)))
                continue;
        }
        m->route = r;
        memcpy(best_ranks, ranks, sizeof(int) * (size_t)r->nsegs);
    }
}

/* ---- http.route ---- */

static int parse_pattern(lua_State *L, const char *pattern, struct seg *segs)
{
    struct span ps[MAX_SEGS];
    int n = split_path(pattern, strlen(pattern), ps);
    if (n < 0)
        return luaL_argerror(L, 2, "a pattern starts with '/' and has at most 64 segments");
    for (int i = 0; i < n; i++) {
        segs[i].kind = SEG_LIT;
        segs[i].off = (size_t)(ps[i].p - pattern);
        segs[i].len = ps[i].len;
        if (ps[i].len > 0 && (ps[i].p[0] == ':' || ps[i].p[0] == '*')) {
            segs[i].kind = ps[i].p[0] == ':' ? SEG_PARAM : SEG_SPLAT;
            segs[i].off++;
            segs[i].len--;
            if (segs[i].kind == SEG_PARAM && segs[i].len == 0)
                return luaL_argerror(L, 2, "a ':' segment needs a name");
            if (segs[i].kind == SEG_SPLAT && i != n - 1)
                return luaL_argerror(L, 2, "a '*' segment must be the last one");
        }
    }
    return n;
}

/*
 * Checks a new route: the method (upper-cased into `method`), the pattern (its segments
 * into `segs`) and that no route has the same method and pattern. Raises on misuse, having
 * allocated nothing. Returns the number of segments.
 */
static int check_route(lua_State *L, const char *method_arg, size_t mlen, const char *pattern,
                       char *method, struct seg *segs)
{
    luar_vm_t *vm = luar_vm_of(L);
    luaL_argcheck(L, mlen > 0 && mlen < MAX_METHOD, 1, "expected an HTTP method or \"*\"");
    for (size_t i = 0; i <= mlen; i++)
        method[i] = (char)toupper((unsigned char)method_arg[i]);
    for (size_t i = 0; i < mlen; i++)
        luaL_argcheck(L, isupper((unsigned char)method[i]) || (mlen == 1 && method[0] == '*'), 1,
                      "expected an HTTP method or \"*\"");
    int nsegs = parse_pattern(L, pattern, segs);
    struct http_router *router = vm->router;
    for (size_t i = 0; router != NULL && i < router->n; i++)
        if (strcmp(router->routes[i].method, method) == 0 &&
            strcmp(router->routes[i].pattern, pattern) == 0)
            luaL_error(L, "route %s %s is already defined", method, pattern);
    return nsegs;
}

/*
 * Adds a checked route with the handler at `fn_idx` (0: none) or the webhook route
 * `webhook`, and its `guard` (may be NULL); the router owns both from then on (freed here
 * when memory runs out). Raises only when out of memory. [-0, +0]
 */
static void insert_route(lua_State *L, const char *method, const char *pattern,
                         const struct seg *segs, int nsegs, int fn_idx,
                         luar_webhook_route_t *webhook, luar_route_guard_t *guard)
{
    luar_vm_t *vm = luar_vm_of(L);
    struct http_router *router = vm->router;
    if (router == NULL) {
        router = calloc(1, sizeof *router);
        if (router == NULL)
            goto nomem;
        vm->router = router;
    }
    if (router->n == router->cap) {
        size_t cap = router->cap ? router->cap * 2 : 16;
        struct route *grown = realloc(router->routes, cap * sizeof *grown);
        if (grown == NULL)
            goto nomem;
        router->routes = grown;
        router->cap = cap;
    }
    struct route *r = &router->routes[router->n];
    memset(r, 0, sizeof *r);
    snprintf(r->method, sizeof r->method, "%s", method);
    r->pattern = strdup(pattern);
    r->segs = malloc(sizeof(struct seg) * (size_t)(nsegs > 0 ? nsegs : 1));
    if (r->pattern == NULL || r->segs == NULL) {
        free(r->pattern);
        free(r->segs);
        goto nomem;
    }
    memcpy(r->segs, segs, sizeof(struct seg) * (size_t)nsegs);
    r->nsegs = nsegs;
    r->fn_ref = LUA_NOREF;
    if (fn_idx != 0) {
        lua_pushvalue(L, fn_idx);
        r->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    r->webhook = webhook;
    r->guard = guard;
    router->n++;
    return;
nomem:
    luar_webhook_route_free(webhook);
    luar_route_guard_free(L, guard);
    luaL_error(L, "not enough memory");
}

/*
 * http.route(method, pattern, handler[, opts]): declares a route. opts: the guards of
 * route_guard.h (rate, require_client_cert). [-4, +0]
 */
static int http_route(lua_State *L)
{
    luar_vm_t *vm = luar_vm_of(L);
    size_t mlen;
    const char *method = luaL_checklstring(L, 1, &mlen);
    const char *pattern = luaL_checkstring(L, 2);
    luaL_checktype(L, 3, LUA_TFUNCTION);
    if (!lua_isnoneornil(L, 4))
        luaL_checktype(L, 4, LUA_TTABLE);
    if (!vm->loading && !vm->scripting)
        return luaL_error(L, "http.route must be called while the scripts load");
    char upper[MAX_METHOD];
    struct seg segs[MAX_SEGS];
    int nsegs = check_route(L, method, mlen, pattern, upper, segs);
    /* Raises on a bad option before anything is allocated. */
    luar_route_guard_t *guard = luar_route_guard_parse(L, lua_istable(L, 4) ? 4 : 0, pattern);
    insert_route(L, upper, pattern, segs, nsegs, 3, NULL, guard);
    return 0;
}

void luar_http_route_check(lua_State *L, const char *method, const char *pattern)
{
    char upper[MAX_METHOD];
    struct seg segs[MAX_SEGS];
    check_route(L, method, strlen(method), pattern, upper, segs);
}

void luar_http_route_webhook(lua_State *L, const char *pattern, luar_webhook_route_t *webhook,
                             luar_route_guard_t *guard)
{
    char upper[MAX_METHOD];
    struct seg segs[MAX_SEGS];
    int nsegs = check_route(L, "POST", 4, pattern, upper, segs);
    insert_route(L, upper, pattern, segs, nsegs, 0, webhook, guard);
}

luar_webhook_route_t *luar_http_webhook_find(luar_vm_t *vm, const char *pattern)
{
    struct http_router *router = vm->router;
    for (size_t i = 0; router != NULL && i < router->n; i++)
        if (router->routes[i].webhook != NULL && strcmp(router->routes[i].pattern, pattern) == 0)
            return router->routes[i].webhook;
    return NULL;
}

/* ---- the request table ---- */

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

/* Pushes the form-decoded (%XX and '+') string. [-0, +1] */
static void push_form_decoded(lua_State *L, const char *s, size_t len)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < len; i++) {
        int hi, lo;
        if (s[i] == '+') {
            luaL_addchar(&b, ' ');
        } else if (s[i] == '%' && i + 2 < len && (hi = hexval((unsigned char)s[i + 1])) >= 0 &&
                   (lo = hexval((unsigned char)s[i + 2])) >= 0) {
            luaL_addchar(&b, (char)(hi * 16 + lo));
            i += 2;
        } else {
            luaL_addchar(&b, s[i]);
        }
    }
    luaL_pushresult(&b);
}

/* Pushes the query string as a table; a repeated key keeps its last value. [-0, +1] */
static void push_query(lua_State *L, const char *q, size_t len)
{
    lua_newtable(L);
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && q[i] != '&')
            continue;
        if (i > start) {
            const char *pair = q + start;
            size_t plen = i - start;
            const char *eq = memchr(pair, '=', plen);
            size_t klen = eq != NULL ? (size_t)(eq - pair) : plen;
            push_form_decoded(L, pair, klen);
            if (eq != NULL)
                push_form_decoded(L, eq + 1, plen - klen - 1);
            else
                lua_pushliteral(L, "");
            lua_rawset(L, -3);
        }
        start = i + 1;
    }
}

/* req:json() → value | nil, err{kind="invalid"}. [-1, +1|2] */
static int req_json(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    if (lua_getfield(L, 1, "body") != LUA_TSTRING)
        return luar_lua_fail(L, "invalid", "the request has no body");
    return luar_json_decode(L, -1);
}

struct http_setup {
    luar_http_req_t *req;
    struct route *route;
    struct span *ps;
    int np;
};

void luar_http_push_request(lua_State *L, luar_http_req_t *req)
{
    lua_createtable(L, 0, 12);
    lua_pushstring(L, req->method);
    lua_setfield(L, -2, "method");
    lua_pushlstring(L, req->path, req->path_len);
    lua_setfield(L, -2, "path");
    lua_pushlstring(L, req->query, req->query_len);
    lua_setfield(L, -2, "query_string");
    push_query(L, req->query, req->query_len);
    lua_setfield(L, -2, "query");
    lua_createtable(L, 0, (int)req->nheaders);
    for (size_t i = 0; i < req->nheaders; i++) {
        const luar_http_header_t *h = &req->headers[i];
        lua_pushlstring(L, h->name, h->name_len);
        if (lua_rawget(L, -2) == LUA_TSTRING) {
            lua_pushliteral(L, ", ");
            lua_pushlstring(L, h->value, h->value_len);
            lua_concat(L, 3);
        } else {
            lua_pop(L, 1);
            lua_pushlstring(L, h->value, h->value_len);
        }
        lua_pushlstring(L, h->name, h->name_len);
        lua_insert(L, -2);
        lua_rawset(L, -3);
    }
    lua_setfield(L, -2, "headers");
    lua_newtable(L);
    lua_setfield(L, -2, "params");
    lua_pushlstring(L, req->body, req->body_len);
    lua_setfield(L, -2, "body");
    lua_pushstring(L, req->request_id);
    lua_setfield(L, -2, "id");
    lua_pushstring(L, req->remote_addr);
    lua_setfield(L, -2, "remote_addr");
    lua_pushstring(L, req->route);
    lua_setfield(L, -2, "route");
    if (req->tls) {
        lua_createtable(L, 0, 1);
        if (req->tls_client_subject != NULL) {
            lua_pushstring(L, req->tls_client_subject);
            lua_setfield(L, -2, "client_subject");
        }
        lua_setfield(L, -2, "tls");
    }
    if (luaL_newmetatable(L, REQ_MT)) {
        lua_createtable(L, 0, 1);
        lua_pushcfunction(L, req_json);
        lua_setfield(L, -2, "json");
        lua_setfield(L, -2, "__index");
    }
    lua_setmetatable(L, -2);
}

/* Pushes the request table with the route's params. [-0, +1] */
static void push_request(lua_State *L, struct http_setup *s)
{
    luar_http_req_t *req = s->req;
    luar_http_push_request(L, req);
    lua_getfield(L, -1, "params");
    const struct route *r = s->route;
    for (int i = 0; i < r->nsegs; i++) {
        const struct seg *sg = &r->segs[i];
        if (sg->kind == SEG_LIT)
            continue;
        if (sg->len > 0)
            lua_pushlstring(L, r->pattern + sg->off, sg->len);
        else
            lua_pushliteral(L, "*");
        if (sg->kind == SEG_PARAM) {
            lua_pushlstring(L, s->ps[i].p, s->ps[i].len);
        } else if (i < s->np) {
            const char *end = req->path + req->path_len;
            lua_pushlstring(L, s->ps[i].p, (size_t)(end - s->ps[i].p));
        } else {
            lua_pushliteral(L, "");
        }
        lua_rawset(L, -3);
    }
    lua_pop(L, 1);
}

static int http_setup(lua_State *L, void *arg)
{
    struct http_setup *s = arg;
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->route->fn_ref);
    if (luar_route_guard_has_rate(s->route->guard)) {
        /* The task runs the guard's entry, which checks the limit and calls the handler. */
        luar_route_guard_push_entry(L, s->route->guard, -1, s->req);
        lua_remove(L, -2);
    }
    push_request(L, s);
    return 1;
}

/* ---- responses ---- */

static void respond_json_error(luar_http_req_t *req, int status, const char *error)
{
    luar_buf_t body;
    luar_buf_init(&body, 0);
    luar_buf_puts(&body, "{\"error\":");
    luar_buf_append_json_string(&body, error, strlen(error));
    if (status == 500) {
        luar_buf_puts(&body, ",\"request_id\":");
        luar_buf_append_json_string(&body, req->request_id, strlen(req->request_id));
    }
    luar_buf_putc(&body, '}');
    luar_http_header_t ct = {"Content-Type", 12, APP_JSON, sizeof APP_JSON - 1};
    luar_http_respond(req, status, &ct, 1, body.data != NULL ? body.data : "", body.len);
    luar_buf_free(&body);
}

static void handler_failed(luar_http_req_t *req, const char *error, const char *traceback)
{
    luar_buf_t f;
    luar_buf_init(&f, 0);
    luar_buf_puts(&f, "\"route\":");
    luar_buf_append_json_string(&f, req->route, strlen(req->route));
    luar_buf_puts(&f, ",\"request_id\":");
    luar_buf_append_json_string(&f, req->request_id, strlen(req->request_id));
    luar_buf_appendf(&f, ",\"trace_id\":\"%s\"", req->trace.trace_id);
    luar_buf_puts(&f, ",\"error\":");
    luar_buf_append_json_string(&f, error, strlen(error));
    luar_buf_puts(&f, ",\"traceback\":");
    luar_buf_append_json_string(&f, traceback, strlen(traceback));
    luar_plugin_error_t e = {.where = "http",
                             .message = error,
                             .traceback = traceback,
                             .route = req->route,
                             .method = req->method,
                             .status = 500,
                             .request_id = req->request_id,
                             .trace_id = req->trace.trace_id,
                             .span_id = req->trace.span_id};
    luar_plugin_report_error(&e, LUAR_LOG_ERROR, "handler error", f.data, f.len);
    luar_buf_free(&f);
    luar_vm_count_error("http");
    respond_json_error(req, 500, "internal error");
}

struct respond {
    luar_task_t *task;
    luar_http_req_t *req;
    int responded;
};

static int valid_header(const char *name, size_t nlen, const char *value, size_t vlen)
{
    if (nlen == 0)
        return 0;
    for (size_t i = 0; i < nlen; i++)
        if (!isalnum((unsigned char)name[i]) && strchr("!#$%&'*+-.^_`|~", name[i]) == NULL)
            return 0;
    for (size_t i = 0; i < vlen; i++)
        if (value[i] == '\r' || value[i] == '\n' || value[i] == '\0')
            return 0;
    return 1;
}

/* Collects headers= of the result at index 1 into an array (a userdata on the stack). */
static luar_http_header_t *collect_headers(lua_State *L, int *n, int *has_ctype)
{
    *n = 0;
    *has_ctype = 0;
    if (lua_getfield(L, 1, "headers") == LUA_TNIL)
        return NULL;
    if (!lua_istable(L, -1))
        luaL_error(L, "response headers must be a table");
    int h = lua_gettop(L);
    int count = 0;
    lua_pushnil(L);
    while (lua_next(L, h) != 0) {
        count++;
        lua_pop(L, 1);
    }
    luar_http_header_t *arr = lua_newuserdatauv(L, sizeof *arr * (size_t)(count + 1), 0);
    lua_newtable(L); /* keeps converted values alive */
    int keep = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, h) != 0) {
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "response header names must be strings");
        if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
            luaL_error(L, "response header '%s' must be a string", lua_tostring(L, -2));
        size_t nlen, vlen;
        const char *name = lua_tolstring(L, -2, &nlen);
        lua_pushvalue(L, -1);
        const char *value = lua_tolstring(L, -1, &vlen);
        lua_rawseti(L, keep, (lua_Integer)lua_rawlen(L, keep) + 1);
        if (!valid_header(name, nlen, value, vlen))
            luaL_error(L, "invalid response header '%s'", name);
        lua_pop(L, 1);
        if (strcasecmp(name, "content-length") == 0 || strcasecmp(name, "connection") == 0 ||
            strcasecmp(name, "transfer-encoding") == 0)
            continue;
        if (strcasecmp(name, "content-type") == 0)
            *has_ctype = 1;
        arr[*n] = (luar_http_header_t){name, nlen, value, vlen};
        (*n)++;
    }
    return arr;
}

static int respond_protected(lua_State *L)
{
    struct respond *r = lua_touserdata(L, 1);
    lua_State *co = luar_task_thread(r->task);
    int n = luar_task_results(r->task);
    lua_settop(L, 0);
    if (n > 0) {
        luaL_checkstack(L, n, "too many results");
        lua_xmove(co, L, n);
        lua_settop(L, 1);
    } else {
        lua_pushnil(L);
    }
    if (luar_route_guard_answer(L, 1, r->req)) { /* refused by the route's rate limit */
        r->responded = 1;
        return 0;
    }
    int status = 200;
    const char *body = "", *ctype = NULL;
    size_t blen = 0;
    luar_http_header_t *hdrs = NULL;
    int nh = 0, has_ctype = 0;
    switch (lua_type(L, 1)) {
    case LUA_TNIL:
        status = 204;
        break;
    case LUA_TSTRING:
        body = lua_tolstring(L, 1, &blen);
        ctype = TEXT_PLAIN;
        break;
    case LUA_TTABLE:
        if (lua_getfield(L, 1, "status") != LUA_TNIL) {
            int ok = 0;
            lua_Integer s = lua_tointegerx(L, -1, &ok);
            if (!ok || s < 100 || s > 599)
                return luaL_error(L, "invalid response status (expected 100 to 599)");
            status = (int)s;
        }
        if (lua_getfield(L, 1, "json") != LUA_TNIL) {
            body = luar_json_encode(L, -1, &blen);
            ctype = APP_JSON;
        } else if (lua_getfield(L, 1, "body") != LUA_TNIL) {
            if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
                return luaL_error(L, "response body must be a string");
            body = lua_tolstring(L, -1, &blen);
            ctype = TEXT_PLAIN;
        }
        hdrs = collect_headers(L, &nh, &has_ctype);
        break;
    default:
        return luaL_error(L, "handler returned a %s (expected a table, a string or nil)",
                          luaL_typename(L, 1));
    }
    luar_http_header_t one[1];
    if (ctype != NULL && !has_ctype) {
        if (hdrs == NULL)
            hdrs = one;
        hdrs[nh++] = (luar_http_header_t){"Content-Type", 12, ctype, strlen(ctype)};
    }
    r->responded = 1;
    luar_http_respond(r->req, status, hdrs, (size_t)nh, body, blen);
    return 0;
}

void luar_http_task_done(luar_task_t *task, int status, void *arg)
{
    luar_http_req_t *req = arg;
    if (status == LUAR_ECANCELED) {
        luar_logf(LUAR_LOG_WARN, "request %s cancelled: %s", req->request_id,
                  luar_task_error(task));
        respond_json_error(req, 503, "service unavailable");
        return;
    }
    if (status != 0) {
        handler_failed(req, luar_task_error(task), luar_task_traceback(task));
        return;
    }
    struct respond r = {task, req, 0};
    luar_buf_t err;
    luar_buf_init(&err, 4096);
    if (luar_vm_pcall(luar_task_vm(task), respond_protected, &r, &err) != 0 && !r.responded) {
        if (err.len > 0 && err.data[err.len - 1] == '\n')
            err.data[--err.len] = '\0';
        handler_failed(req, err.data != NULL ? err.data : "invalid response", "");
    }
    luar_buf_free(&err);
}

/* A webhook route's request waiting for its guard's rate check. */
struct webhook_wait {
    luar_webhook_route_t *webhook;
    luar_http_req_t *req;
};

static void webhook_guarded(void *arg, int outcome)
{
    struct webhook_wait *w = arg;
    /* The guard holds the VM until this returns, so its routes (and w->webhook) live. */
    if (outcome == LUAR_GUARD_CONTINUE)
        luar_webhook_ingest(w->webhook, w->req);
    free(w);
}

/* A webhooks.route: its guard (client certificate, rate), then ingest, all in C. */
static void handle_webhook(luar_vm_t *vm, const struct route *r, luar_http_req_t *req)
{
    if (r->guard == NULL) {
        luar_webhook_ingest(r->webhook, req); /* in C: no Lua before it is stored */
        return;
    }
    struct webhook_wait *w = malloc(sizeof *w);
    if (w == NULL) {
        respond_json_error(req, 503, "service unavailable");
        return;
    }
    w->webhook = r->webhook;
    w->req = req;
    int outcome = luar_route_guard_run(r->guard, vm, req, webhook_guarded, w);
    if (outcome == LUAR_GUARD_PENDING)
        return;
    webhook_guarded(w, outcome);
}

void luar_vm_handle_http(luar_vm_t *vm, luar_http_req_t *req)
{
    struct span ps[MAX_SEGS];
    req->route[0] = '\0';
    if (vm->retired || vm->closing) {
        respond_json_error(req, 503, "service unavailable");
        return;
    }
    int np = split_path(req->path, req->path_len, ps);
    struct match m = {NULL, 0};
    if (np >= 0)
        find_route(vm->router, req->method, ps, np, &m);
    if (m.route == NULL && m.any_path) {
        luar_buf_t allow;
        luar_buf_init(&allow, 1024);
        for (size_t i = 0; i < vm->router->n; i++) {
            int ranks[MAX_SEGS];
            struct route *r = &vm->router->routes[i];
            if (!route_match(r, ps, np, ranks))
                continue;
            if (allow.len == 0 && req->route[0] == '\0')
                snprintf(req->route, sizeof req->route, "%s", r->pattern);
            if (allow.data != NULL && strstr(allow.data, r->method) != NULL)
                continue;
            luar_buf_appendf(&allow, "%s%s", allow.len > 0 ? ", " : "", r->method);
        }
        luar_http_header_t h[2] = {{"Allow", 5, allow.data, allow.len},
                                   {"Content-Type", 12, APP_JSON, sizeof APP_JSON - 1}};
        static const char body[] = "{\"error\":\"method not allowed\"}";
        luar_http_respond(req, 405, h, 2, body, sizeof body - 1);
        luar_buf_free(&allow);
        return;
    }
    if (m.route == NULL) {
        respond_json_error(req, 404, "not found");
        return;
    }
    snprintf(req->route, sizeof req->route, "%s", m.route->pattern);
    if (m.route->webhook != NULL) {
        handle_webhook(vm, m.route, req);
        return;
    }
    if (luar_route_guard_check_cert(m.route->guard, req) == LUAR_GUARD_ANSWERED)
        return;
    struct http_setup s = {req, m.route, ps, np};
    luar_task_opts_t opts = {req->request_id, NULL, &req->trace};
    luar_buf_t err;
    luar_buf_init(&err, 4096);
    int rc = luar_task_spawn(vm, &opts, http_setup, &s, luar_http_task_done, req, NULL, &err);
    if (rc == LUAR_ECLOSED)
        respond_json_error(req, 503, "service unavailable");
    else if (rc != 0)
        handler_failed(req, err.data != NULL ? err.data : luar_strerror(rc), "");
    luar_buf_free(&err);
}

int luaopen_luar_http(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"route", http_route},
        {NULL, NULL},
    };
    luaL_newlib(L, funcs);
    luar_http_client_open(L);
    return 1;
}
