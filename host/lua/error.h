/*
 * The one error shape of the Lua API (SPEC §4): a table {kind, message[, status]
 * [, retry_after]} whose metatable gives tostring(err) a readable line. Every module that
 * returns `nil, err` builds `err` here.
 */
#ifndef LUAR_LUA_ERROR_H
#define LUAR_LUA_ERROR_H

#include <lua.h>

/*
 * Pushes a new error table with `kind` (a short word: "timeout", "invalid", ...) and a
 * printf-formatted `message`. The caller may add "status" / "retry_after" fields with
 * lua_setfield afterwards. Stack effect [-0, +1]; raises only on memory errors.
 */
void luar_lua_push_error(lua_State *L, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Pushes nil and a new error table (as luar_lua_push_error) and returns 2, so a Lua-facing
 * function can end with `return luar_lua_fail(L, "invalid", "...")`. Stack effect [-0, +2].
 */
int luar_lua_fail(lua_State *L, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Returns nonzero when the value at `idx` is an error table built by this file. */
int luar_lua_is_error(lua_State *L, int idx);

/* require "luar.error": new(fields) → err, fail(kind, message[, fields]) → nil, err,
 * is(v) → boolean (the same errors, from Lua). */
int luaopen_luar_error(lua_State *L);

#endif
