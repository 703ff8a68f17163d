/*
 * The registry of Lua modules the host provides: every `luar.*` module (and lua-cjson,
 * linked into the host) is registered here, in one table, as a package.preload entry.
 * Plugins add their `luar.<name>` modules to the same table (luar_lua_modules_add).
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
int luaopen_luar_oauth(lua_State *L);

/* Sets package.preload[name] = open for every module of the table. Stack [-0, +0]. */
void luar_lua_open_modules(lua_State *L);

/* Adds one preload entry. Stack [-0, +0]. */
void luar_lua_preload(lua_State *L, const char *name, lua_CFunction open);

/*
 * A module opener with a context: a plugin's open(L, ctx) (luar/plugin.h). Pushes the
 * module and returns 1, like a luaopen_* function.
 */
typedef int (*luar_lua_open_ctx_fn)(lua_State *L, void *ctx);

/*
 * Adds `name` (copied) to the table, for every VM created from now on: `require "<name>"`
 * calls open(L, ctx). Returns 0, LUAR_EEXISTS (a module of that name exists, built-in or
 * added) or LUAR_ENOMEM. Loop thread only, like the VMs.
 */
int luar_lua_modules_add(const char *name, luar_lua_open_ctx_fn open, void *ctx);

/* Removes an added module (its plugin is unloaded). Returns 0 or LUAR_ENOTFOUND. */
int luar_lua_modules_remove(const char *name);

/* Nonzero when `name` is a module of the table (built-in or added). */
int luar_lua_module_exists(const char *name);

/*
 * Applies the sandbox to the standard library of `L`: os.execute, io.popen, os.exit,
 * reading stdin and debug.sethook raise a clear error; the coroutine library is replaced
 * by the bridge-aware one. Stack [-0, +0].
 */
void luar_lua_sandbox(lua_State *L);

#endif
