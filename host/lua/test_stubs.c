/*
 * t.http under `luar test`: the outbound client's stub (client.h) matching every attempt
 * against the stubs the specs added, recording each request, and answering from the
 * stub's responder — a Lua function test.lua builds for each stub (response tables in
 * order, the last repeating, or the spec's own function). Matching runs inside
 * luar_client_request, where no Lua may run, so it is C: method and a glob on the URL,
 * the most recently added stub first. The responder runs one loop turn later, from the
 * loop, on the VM's main thread. A request that matches nothing fails with kind
 * "no_stub" (luar.http raises it) and is remembered so the running test fails at its end
 * even when the caller caught the error.
 */
#include "lua/mod_test.h"
#include "client/client.h"
#include "common/error.h"
#include "lua/vm_internal.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct stub {
    char *method;  /* upper case, or "*" */
    char *pattern; /* '*' matches any run of characters */
    long times;    /* answers left; -1: no limit */
    int responder; /* registry reference of fn(method, url, headers, body) */
} stub_t;

typedef struct recorded {
    char *method, *url, *body;
    size_t body_len;
    char **names, **values; /* names lower-case */
    size_t nheaders;
} recorded_t;

typedef struct token {
    unsigned generation; /* the stubs' generation it was matched in */
    int responder; /* LUA_NOREF: unmatched */
    size_t index;  /* the recorded request */
    char message[600];
} token_t;

static struct {
    luar_vm_t *vm;
    char own_base[64]; /* "http://127.0.0.1:PORT/": t.webhook and t.request, never stubbed */
    stub_t *stubs;
    size_t nstubs;
    char **pass;
    size_t npass;
    recorded_t *reqs;
    size_t nreqs;
    luar_buf_t unmatched; /* one line per request that matched no stub */
    unsigned generation;  /* +1 at every reset: answers of an earlier test are refused */
} S;

/* '*' matches any run of characters (also none); everything else itself. */
static int glob(const char *p, const char *s)
{
    const char *star = NULL, *back = NULL;
    while (*s) {
        if (*p == '*') {
            star = p++;
            back = s;
        } else if (*p == *s) {
            p++;
            s++;
        } else if (star) {
            p = star + 1;
            s = ++back;
        } else {
            return 0;
        }
    }
    while (*p == '*')
        p++;
    return *p == '\0';
}

static void record(const luar_client_req_t *req, const char *method)
{
    recorded_t *grown = realloc(S.reqs, (S.nreqs + 1) * sizeof *grown);
    if (grown == NULL)
        return;
    S.reqs = grown;
    recorded_t *r = &S.reqs[S.nreqs++];
    memset(r, 0, sizeof *r);
    r->method = strdup(method);
    r->url = strdup(req->url);
    r->body_len = req->body ? req->body_len : 0;
    r->body = luar_memdup(req->body ? req->body : "", r->body_len);
    r->names = calloc(req->nheaders + 1, sizeof *r->names);
    r->values = calloc(req->nheaders + 1, sizeof *r->values);
    for (size_t i = 0; r->names && r->values && i < req->nheaders; i++) {
        char *n = strdup(req->headers[i].name);
        for (char *c = n; c && *c; c++)
            if (*c >= 'A' && *c <= 'Z')
                *c = (char)(*c - 'A' + 'a');
        r->names[r->nheaders] = n;
        r->values[r->nheaders++] = strdup(req->headers[i].value ? req->headers[i].value : "");
    }
}

static int on_match(void *arg, const luar_client_req_t *req, void **out)
{
    (void)arg;
    const char *method = req->method ? req->method : "GET";
    if (S.own_base[0] && strncmp(req->url, S.own_base, strlen(S.own_base)) == 0)
        return 0;
    record(req, method);
    for (size_t i = 0; i < S.npass; i++)
        if (glob(S.pass[i], req->url))
            return 0;
    token_t *t = calloc(1, sizeof *t);
    if (t == NULL)
        return 0;
    t->responder = LUA_NOREF;
    t->generation = S.generation;
    t->index = S.nreqs ? S.nreqs - 1 : 0;
    for (size_t i = S.nstubs; i-- > 0;) {
        stub_t *s = &S.stubs[i];
        if (s->times == 0 || (strcmp(s->method, "*") && strcasecmp(s->method, method)) ||
            !glob(s->pattern, req->url))
            continue;
        if (s->times > 0)
            s->times--;
        t->responder = s->responder;
        break;
    }
    if (t->responder == LUA_NOREF) {
        snprintf(t->message, sizeof t->message, "luar.test: no stub for %s %s", method,
                 req->url);
        luar_buf_appendf(&S.unmatched, "%s\n", t->message);
    }
    *out = t;
    return 1;
}

static void drop(void *arg, void *token)
{
    (void)arg;
    free(token);
}

struct answer {
    token_t *t;
    luar_client_res_t *res;
};

static void set_error(luar_client_res_t *res, const char *kind, const char *msg)
{
    res->rc = LUAR_EINVAL;
    res->kind = kind;
    size_t n = strlen(msg);
    if (n >= sizeof res->message)
        n = sizeof res->message - 1; /* the whole line is in the test's failure */
    memcpy(res->message, msg, n);
    res->message[n] = '\0';
}

/* Calls the responder → status, body, headers {name = value}; fills the response. */
static int call_responder(lua_State *L)
{
    struct answer *a = lua_touserdata(L, 1);
    const recorded_t *r = &S.reqs[a->t->index];
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->t->responder);
    lua_pushstring(L, r->method);
    lua_pushstring(L, r->url);
    lua_createtable(L, 0, (int)r->nheaders);
    for (size_t i = 0; i < r->nheaders; i++) {
        lua_pushstring(L, r->values[i]);
        lua_setfield(L, -2, r->names[i]);
    }
    lua_pushlstring(L, r->body, r->body_len);
    lua_call(L, 4, 3);
    luar_client_res_t *res = a->res;
    res->status = (long)luaL_optinteger(L, -3, 200);
    size_t len = 0;
    const char *body = lua_tolstring(L, -2, &len);
    if (body)
        luar_buf_append(&res->body, body, len);
    if (lua_istable(L, -1)) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            if (lua_type(L, -2) == LUA_TSTRING) {
                luar_client_header_t *h =
                    realloc(res->headers, (res->nheaders + 1) * sizeof *res->headers);
                if (h == NULL)
                    return luaL_error(L, "out of memory");
                res->headers = h;
                char *name = strdup(lua_tostring(L, -2));
                for (char *c = name; c && *c; c++)
                    if (*c >= 'A' && *c <= 'Z')
                        *c = (char)(*c - 'A' + 'a');
                h[res->nheaders].name = name;
                h[res->nheaders].value = strdup(luaL_tolstring(L, -1, NULL));
                res->nheaders++;
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
    }
    return 0;
}

static void answer(void *arg, void *token, luar_client_res_t *res)
{
    (void)arg;
    token_t *t = token;
    if (t->responder == LUA_NOREF) {
        set_error(res, "no_stub", t->message);
    } else if (S.vm == NULL || t->generation != S.generation || t->index >= S.nreqs) {
        set_error(res, "invalid", "luar.test: the stubs were reset before this answer");
    } else {
        struct answer a = {t, res};
        luar_buf_t err;
        luar_buf_init(&err, 4096);
        if (luar_vm_pcall(S.vm, call_responder, &a, &err)) {
            char msg[600];
            snprintf(msg, sizeof msg, "luar.test: the stub for %s %s failed: %s",
                     S.reqs[t->index].method, S.reqs[t->index].url,
                     err.data ? err.data : "error");
            set_error(res, "invalid", msg);
        }
        luar_buf_free(&err);
    }
    free(t);
}

/* ---- the Lua side ---------------------------------------------------------------------- */

/* core.stub(method, pattern, times, responder) */
static int core_stub(lua_State *L)
{
    const char *method = luaL_checkstring(L, 1);
    const char *pattern = luaL_checkstring(L, 2);
    lua_Integer times = luaL_optinteger(L, 3, -1);
    luaL_checktype(L, 4, LUA_TFUNCTION);
    stub_t *grown = realloc(S.stubs, (S.nstubs + 1) * sizeof *grown);
    if (grown == NULL)
        return luaL_error(L, "out of memory");
    S.stubs = grown;
    lua_settop(L, 4);
    stub_t *s = &S.stubs[S.nstubs++];
    s->method = strdup(method);
    s->pattern = strdup(pattern);
    s->times = times < 0 ? -1 : (long)times;
    s->responder = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

/* core.passthrough(pattern) */
static int core_passthrough(lua_State *L)
{
    const char *pattern = luaL_checkstring(L, 1);
    char **grown = realloc(S.pass, (S.npass + 1) * sizeof *grown);
    if (grown == NULL)
        return luaL_error(L, "out of memory");
    S.pass = grown;
    S.pass[S.npass++] = strdup(pattern);
    return 0;
}

/* core.requests() → { {method, url, headers, body}, … } */
static int core_requests(lua_State *L)
{
    lua_createtable(L, (int)S.nreqs, 0);
    for (size_t i = 0; i < S.nreqs; i++) {
        const recorded_t *r = &S.reqs[i];
        lua_createtable(L, 0, 4);
        lua_pushstring(L, r->method);
        lua_setfield(L, -2, "method");
        lua_pushstring(L, r->url);
        lua_setfield(L, -2, "url");
        lua_pushlstring(L, r->body, r->body_len);
        lua_setfield(L, -2, "body");
        lua_createtable(L, 0, (int)r->nheaders);
        for (size_t k = 0; k < r->nheaders; k++) {
            lua_pushstring(L, r->values[k]);
            lua_setfield(L, -2, r->names[k]);
        }
        lua_setfield(L, -2, "headers");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

/* core.glob(pattern, s) → boolean */
static int core_glob(lua_State *L)
{
    lua_pushboolean(L, glob(luaL_checkstring(L, 1), luaL_checkstring(L, 2)));
    return 1;
}

/* core.unmatched() → the lines of the requests no stub matched since the reset, or nil */
static int core_unmatched(lua_State *L)
{
    if (S.unmatched.len == 0)
        return 0;
    lua_pushlstring(L, S.unmatched.data, S.unmatched.len);
    return 1;
}

void luar_test_stubs_open(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"stub", core_stub},         {"passthrough", core_passthrough},
        {"requests", core_requests}, {"glob", core_glob},
        {"unmatched", core_unmatched}, {NULL, NULL},
    };
    luaL_setfuncs(L, fns, 0);
}

void luar_test_stubs_reset(luar_vm_t *vm)
{
    for (size_t i = 0; i < S.nstubs; i++) {
        if (vm && vm->L)
            luaL_unref(vm->L, LUA_REGISTRYINDEX, S.stubs[i].responder);
        free(S.stubs[i].method);
        free(S.stubs[i].pattern);
    }
    free(S.stubs);
    S.stubs = NULL;
    S.nstubs = 0;
    for (size_t i = 0; i < S.npass; i++)
        free(S.pass[i]);
    free(S.pass);
    S.pass = NULL;
    S.npass = 0;
    for (size_t i = 0; i < S.nreqs; i++) {
        recorded_t *r = &S.reqs[i];
        for (size_t k = 0; k < r->nheaders; k++) {
            free(r->names[k]);
            free(r->values[k]);
        }
        free(r->names);
        free(r->values);
        free(r->method);
        free(r->url);
        free(r->body);
    }
    free(S.reqs);
    S.reqs = NULL;
    S.nreqs = 0;
    luar_buf_reset(&S.unmatched);
    S.generation++;
}

void luar_test_stubs_set_vm(luar_vm_t *vm)
{
    S.vm = vm;
}

int luar_test_stubs_install(int listener_port)
{
    snprintf(S.own_base, sizeof S.own_base, "http://127.0.0.1:%d/", listener_port);
    luar_buf_init(&S.unmatched, 0);
    static const luar_client_stub_t hook = {on_match, answer, drop, NULL};
    luar_client_set_stub(&hook);
    return 0;
}

void luar_test_stubs_remove(void)
{
    luar_client_set_stub(NULL);
    luar_test_stubs_reset(NULL);
    luar_buf_free(&S.unmatched);
    S.vm = NULL;
}
