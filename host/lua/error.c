#include "lua/error.h"

#include <lauxlib.h>
#include <stdarg.h>

#define ERROR_MT "luar.error"

/* __tostring: "kind: message (status 503, retry after 2 s)". [-0, +1] */
static int error_tostring(lua_State *L)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    lua_getfield(L, 1, "kind");
    const char *kind = lua_tostring(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, 1, "message");
    const char *message = lua_tostring(L, -1);
    lua_pop(L, 1);
    luaL_addstring(&b, kind ? kind : "error");
    if (message != NULL) {
        luaL_addstring(&b, ": ");
        luaL_addstring(&b, message);
    }
    lua_getfield(L, 1, "status");
    if (lua_isinteger(L, -1)) {
        lua_pushfstring(L, " (status %I)", lua_tointeger(L, -1));
        lua_remove(L, -2);
        luaL_addvalue(&b);
    } else {
        lua_pop(L, 1);
    }
    lua_getfield(L, 1, "retry_after");
    if (lua_isnumber(L, -1)) {
        lua_pushfstring(L, " (retry after %f s)", lua_tonumber(L, -1));
        lua_remove(L, -2);
        luaL_addvalue(&b);
    } else {
        lua_pop(L, 1);
    }
    luaL_pushresult(&b);
    return 1;
}

/* Gives the table at the top of the stack the errors' metatable. [-0, +0] */
static void set_error_mt(lua_State *L)
{
    if (luaL_newmetatable(L, ERROR_MT)) {
        lua_pushcfunction(L, error_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushliteral(L, "luar.error");
        lua_setfield(L, -2, "__name");
    }
    lua_setmetatable(L, -2);
}

static void push_error_va(lua_State *L, const char *kind, const char *fmt, va_list ap)
{
    lua_createtable(L, 0, 4);
    lua_pushstring(L, kind);
    lua_setfield(L, -2, "kind");
    lua_pushvfstring(L, fmt, ap);
    lua_setfield(L, -2, "message");
    set_error_mt(L);
}

void luar_lua_push_error(lua_State *L, const char *kind, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    push_error_va(L, kind, fmt, ap);
    va_end(ap);
}

int luar_lua_fail(lua_State *L, const char *kind, const char *fmt, ...)
{
    va_list ap;
    lua_pushnil(L);
    va_start(ap, fmt);
    push_error_va(L, kind, fmt, ap);
    va_end(ap);
    return 2;
}

int luar_lua_is_error(lua_State *L, int idx)
{
    if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx))
        return 0;
    luaL_getmetatable(L, ERROR_MT);
    int same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return same;
}

/*
 * luar.error: the same errors for Lua code, so a script's or a plugin's module returns
 * what every host module returns. new(fields) makes the table `fields` (kind and message
 * strings required, any other fields kept) an error and returns it; is(v) tells one.
 */
static int error_new(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    if (lua_getmetatable(L, 1))
        return luaL_argerror(L, 1, "the table already has a metatable");
    if (lua_getfield(L, 1, "kind") != LUA_TSTRING)
        return luaL_argerror(L, 1, "kind must be a string (\"invalid\", \"http\", ...)");
    if (lua_getfield(L, 1, "message") != LUA_TSTRING)
        return luaL_argerror(L, 1, "message must be a string");
    lua_settop(L, 1);
    set_error_mt(L);
    return 1;
}

/* fail(kind, message[, fields]) → nil, err: a new error holding a copy of `fields`. */
static int error_fail(lua_State *L)
{
    luaL_checkstring(L, 1);
    luaL_checkstring(L, 2);
    if (!lua_isnoneornil(L, 3))
        luaL_checktype(L, 3, LUA_TTABLE);
    lua_settop(L, 3);
    lua_pushnil(L);
    lua_newtable(L);
    if (lua_istable(L, 3)) {
        lua_pushnil(L);
        while (lua_next(L, 3)) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, 5);
        }
    }
    lua_pushvalue(L, 1);
    lua_setfield(L, 5, "kind");
    lua_pushvalue(L, 2);
    lua_setfield(L, 5, "message");
    set_error_mt(L);
    return 2;
}

static int error_is(lua_State *L)
{
    lua_pushboolean(L, luar_lua_is_error(L, 1));
    return 1;
}

int luaopen_luar_error(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"new", error_new}, {"fail", error_fail}, {"is", error_is}, {NULL, NULL}};
    luaL_newlib(L, funcs);
    return 1;
}
