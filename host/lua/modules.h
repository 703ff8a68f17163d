/*
 * The registry of Lua modules the host provides: every `luar.*` module (and lua-cjson,
 * linked into the host) is registered here, in one table, as a package.preload entry.
 * Later modules and plugins add themselves in one place.
 */
#ifndef LUAR_LUA_MODULES_H
#define LUAR_LUA_MODULES_H

#include <lua.h>

int luaopen_luar_http(lua_State *L);
int luaopen_luar_json(lua_State *L);
int luaopen_luar_log(lua_State *L);
int luaopen_luar_time(lua_State *L);
int luaopen_luar_metrics(lua_State *L);
int luaopen_luar_crypto(lua_State *L);
int luaopen_luar_jobs(lua_State *L);
int luaopen_luar_events(lua_State *L);
int luaopen_luar_webhooks(lua_State *L);
int luaopen_luar_secrets(lua_State *L);
int luaopen_luar_ratelimit(lua_State *L);
int luaopen_luar_cache(lua_State *L);
int luaopen_luar_redis(lua_State *L);

/* Sets package.preload[name] = open for every module of the table. Stack [-0, +0]. */
void luar_lua_open_modules(lua_State *L);

/* Adds one preload entry (a plugin's module opener). Stack [-0, +0]. */
void luar_lua_preload(lua_State *L, const char *name, lua_CFunction open);

/*
 * Applies the sandbox to the standard library of `L`: os.execute, io.popen, os.exit,
 * reading stdin and debug.sethook raise a clear error; the coroutine library is replaced
 * by the bridge-aware one. Stack [-0, +0].
 */
void luar_lua_sandbox(lua_State *L);

#endif
