/* The one table of host-provided Lua modules, and the sandbox of the standard library. */
#include "lua/modules.h"

#include "common/error.h"
#include "lua/bridge.h"
#include "lua/error.h"

#include <lauxlib.h>
#include <lua-cjson.h>
#include <lualib.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int luaopen_cjson_safe(lua_State *L);

typedef struct luar_lua_module {
    const char *name;
    lua_CFunction open;
} luar_lua_module_t;

static const luar_lua_module_t modules[] = {
    {"luar.http", luaopen_luar_http},
    {"luar.json", luaopen_luar_json},
    {"luar.error", luaopen_luar_error},
    {"luar.log", luaopen_luar_log},
    {"luar.time", luaopen_luar_time},
    {"luar.metrics", luaopen_luar_metrics},
    {"luar.crypto", luaopen_luar_crypto},
    {"luar.jobs", luaopen_luar_jobs},
    {"luar.events", luaopen_luar_events},
    {"luar.webhooks", luaopen_luar_webhooks},
    {"luar.secrets", luaopen_luar_secrets},
    {"luar.ratelimit", luaopen_luar_ratelimit},
    {"luar.cache", luaopen_luar_cache},
    {"luar.redis", luaopen_luar_redis},
    {"luar.oauth", luaopen_luar_oauth},
    {"cjson", luaopen_cjson},
    {"cjson.safe", luaopen_cjson_safe},
    {NULL, NULL},
};

/* Modules added at run time (plugins): a list, since a few at most are loaded. */
typedef struct added_module {
    struct added_module *next;
    char *name;
    luar_lua_open_ctx_fn open;
    void *ctx;
} added_module_t;

static added_module_t *added;

int luar_lua_module_exists(const char *name)
{
    for (const luar_lua_module_t *m = modules; m->name != NULL; m++)
        if (strcmp(m->name, name) == 0)
            return 1;
    for (const added_module_t *a = added; a != NULL; a = a->next)
        if (strcmp(a->name, name) == 0)
            return 1;
    return 0;
}

int luar_lua_modules_add(const char *name, luar_lua_open_ctx_fn open, void *ctx)
{
    if (luar_lua_module_exists(name))
        return LUAR_EEXISTS;
    added_module_t *a = calloc(1, sizeof *a);
    if (a == NULL || (a->name = strdup(name)) == NULL) {
        free(a);
        return LUAR_ENOMEM;
    }
    a->open = open;
    a->ctx = ctx;
    /* Appended: VMs preload modules in the order they were added. */
    added_module_t **tail = &added;
    while (*tail != NULL)
        tail = &(*tail)->next;
    *tail = a;
    return 0;
}

int luar_lua_modules_remove(const char *name)
{
    for (added_module_t **p = &added; *p != NULL; p = &(*p)->next) {
        if (strcmp((*p)->name, name) == 0) {
            added_module_t *a = *p;
            *p = a->next;
            free(a->name);
            free(a);
            return 0;
        }
    }
    return LUAR_ENOTFOUND;
}

/*
 * The preload function of an added module. Upvalues: the opener and its context (light
 * userdata), copied when the VM preloads, so a VM never reads the list again.
 */
static int open_added(lua_State *L)
{
    luar_lua_open_ctx_fn open = (luar_lua_open_ctx_fn)(uintptr_t)lua_touserdata(
        L, lua_upvalueindex(1));
    void *ctx = lua_touserdata(L, lua_upvalueindex(2));
    lua_settop(L, 0); /* require's (name, loader data): open() sees an empty stack */
    int n = open(L, ctx);
    return n < 0 ? 0 : n;
}

void luar_lua_preload(lua_State *L, const char *name, lua_CFunction open)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, open);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

void luar_lua_open_modules(lua_State *L)
{
    for (const luar_lua_module_t *m = modules; m->name != NULL; m++)
        luar_lua_preload(L, m->name, m->open);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    for (const added_module_t *a = added; a != NULL; a = a->next) {
        lua_pushlightuserdata(L, (void *)(uintptr_t)a->open);
        lua_pushlightuserdata(L, a->ctx);
        lua_pushcclosure(L, open_added, 2);
        lua_setfield(L, -2, a->name);
    }
    lua_pop(L, 1);
}

/* Raises "<name> is not allowed in luar scripts (<why>)" at the caller's line. [-0, +0] */
static int forbidden(lua_State *L)
{
    luaL_where(L, 1);
    lua_pushfstring(L, "%s is not allowed in luar scripts (%s)",
                    lua_tostring(L, lua_upvalueindex(1)), lua_tostring(L, lua_upvalueindex(2)));
    lua_concat(L, 2);
    return lua_error(L);
}

static void forbid(lua_State *L, const char *lib, const char *name, const char *why)
{
    lua_getglobal(L, lib);
    lua_pushfstring(L, "%s.%s", lib, name);
    lua_pushstring(L, why);
    lua_pushcclosure(L, forbidden, 2);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

/* io.lines(file, ...) is allowed; io.lines() reads stdin. Upvalue 1: the original. */
static int io_lines(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) {
        luaL_where(L, 1);
        lua_pushliteral(L, "io.lines without a file name is not allowed in luar scripts "
                           "(reading stdin would block the host)");
        lua_concat(L, 2);
        return lua_error(L);
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

/* file:read / file:lines on io.stdin raise; other files go to the original (upvalue 1). */
static int file_method(lua_State *L)
{
    if (lua_rawequal(L, 1, lua_upvalueindex(2))) {
        luaL_where(L, 1);
        lua_pushliteral(L, "reading stdin is not allowed in luar scripts "
                           "(it would block the host)");
        lua_concat(L, 2);
        return lua_error(L);
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

static void guard_stdin(lua_State *L)
{
    luaL_getmetatable(L, LUA_FILEHANDLE);
    lua_getfield(L, -1, "__index");
    lua_getglobal(L, "io");
    lua_getfield(L, -1, "stdin");
    lua_remove(L, -2);
    const char *methods[] = {"read", "lines"};
    for (int i = 0; i < 2; i++) {
        lua_getfield(L, -2, methods[i]);
        lua_pushvalue(L, -2);
        lua_pushcclosure(L, file_method, 2);
        lua_setfield(L, -3, methods[i]);
    }
    lua_pop(L, 3);
}

void luar_lua_sandbox(lua_State *L)
{
    forbid(L, "os", "execute", "it would block the host");
    forbid(L, "os", "exit", "it would stop the host");
    forbid(L, "io", "popen", "it would block the host");
    forbid(L, "io", "read", "reading stdin would block the host");
    forbid(L, "debug", "sethook", "the host's hook enforces the CPU budget");
    lua_getglobal(L, "io");
    lua_getfield(L, -1, "lines");
    lua_pushcclosure(L, io_lines, 1);
    lua_setfield(L, -2, "lines");
    lua_pop(L, 1);
    guard_stdin(L);
    lua_getglobal(L, "coroutine");
    luar_bridge_open_coroutine(L);
    lua_pop(L, 1);
}
