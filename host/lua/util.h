/* Small helpers shared by the Lua modules of host/lua/. */
#ifndef LUAR_LUA_UTIL_H
#define LUAR_LUA_UTIL_H

#include "common/buf.h"

#include <lua.h>

/*
 * Pushes a userdata holding an empty luar_buf_t with cap `max` and returns the buffer. Its
 * storage is freed by the garbage collector (or earlier by luar_buf_free), so a Lua error
 * raised while the buffer is in use does not leak it. Stack effect [-0, +1].
 */
luar_buf_t *luar_lua_newbuf(lua_State *L, size_t max);

/*
 * Pushes the shared lua-cjson instance of luar.json (depth limits 128, created once per
 * state). Stack effect [-0, +1].
 */
void luar_json_push_instance(lua_State *L);

/*
 * Decodes the JSON string at `idx`: pushes the value and returns 1, or pushes nil and an
 * error {kind = "invalid"} and returns 2. Raises only when `idx` is not a string.
 */
int luar_json_decode(lua_State *L, int idx);

/*
 * Encodes the value at `idx` and pushes the JSON text; returns it (and its length in
 * `*len` when not NULL). Raises when the value cannot be encoded. Stack effect [-0, +1].
 */
const char *luar_json_encode(lua_State *L, int idx, size_t *len);

#endif
