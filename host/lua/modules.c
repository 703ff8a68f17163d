/* The one table of host-provided Lua modules, and the sandbox of the standard library. */
#include "lua/modules.h"

#include "lua/bridge.h"

#include <lauxlib.h>
#include <lua-cjson.h>
#include <lualib.h>

int luaopen_cjson_safe(lua_State *L);

typedef struct luar_lua_module {
    const char *name;
    lua_CFunction open;
} luar_lua_module_t;

static const luar_lua_module_t modules[] = {
    {"luar.http", luaopen_luar_http},
    {"luar.json", luaopen_luar_json},
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
    {"cjson", luaopen_cjson},
    {"cjson.safe", luaopen_cjson_safe},
    {NULL, NULL},
};

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
