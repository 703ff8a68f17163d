/*
 * luar.json: lua-cjson (a private cjson.new() instance, so settings changed by scripts on
 * `cjson` do not leak in), depth-limited to 128 levels both ways. decode returns nil, err
 * on invalid input instead of raising, so handlers need no pcall.
 */
#include "lua/error.h"
#include "lua/modules.h"
#include "lua/util.h"

#include <lauxlib.h>
#include <lua-cjson.h>

#define JSON_MAX_DEPTH 128

static const char instance_key = 0;

static void call_setting(lua_State *L, const char *name, int value)
{
    lua_getfield(L, -1, name);
    lua_pushinteger(L, value);
    lua_call(L, 1, 0);
}

void luar_json_push_instance(lua_State *L)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &instance_key) == LUA_TTABLE)
        return;
    lua_pop(L, 1);
    luaL_requiref(L, "cjson", luaopen_cjson, 0);
    lua_getfield(L, -1, "new");
    lua_call(L, 0, 1);
    lua_remove(L, -2);
    call_setting(L, "decode_max_depth", JSON_MAX_DEPTH);
    call_setting(L, "encode_max_depth", JSON_MAX_DEPTH);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &instance_key);
}

/*
 * lua-cjson 2.1 decodes every number as a float; JSON has one number type, and Lua 5.4
 * prints 5.0 for a float five. Turns integral floats that fit an integer into integers,
 * walking the decoded value (depth is already bounded by the decoder). [-0, +0]
 */
static int integral(lua_State *L, int idx, lua_Integer *out)
{
    if (lua_type(L, idx) != LUA_TNUMBER || lua_isinteger(L, idx))
        return 0;
    lua_Number n = lua_tonumber(L, idx);
    return lua_numbertointeger(n, out) && (lua_Number)*out == n;
}

static void integerize(lua_State *L, int t, int depth)
{
    if (depth > JSON_MAX_DEPTH + 1 || !lua_checkstack(L, 4))
        return;
    t = lua_absindex(L, t);
    lua_pushnil(L);
    while (lua_next(L, t) != 0) {
        lua_Integer i;
        if (integral(L, -1, &i)) {
            lua_pushvalue(L, -2);
            lua_pushinteger(L, i);
            lua_rawset(L, t);
        } else if (lua_type(L, -1) == LUA_TTABLE) {
            integerize(L, -1, depth + 1);
        }
        lua_pop(L, 1);
    }
}

int luar_json_decode(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    luaL_checktype(L, idx, LUA_TSTRING);
    luar_json_push_instance(L);
    lua_getfield(L, -1, "decode");
    lua_remove(L, -2);
    lua_pushvalue(L, idx);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK) {
        lua_Integer i;
        if (lua_type(L, -1) == LUA_TTABLE) {
            integerize(L, -1, 0);
        } else if (integral(L, -1, &i)) {
            lua_pop(L, 1);
            lua_pushinteger(L, i);
        }
        return 1;
    }
    const char *msg = lua_tostring(L, -1);
    lua_pop(L, 1);
    return luar_lua_fail(L, "invalid", "%s", msg != NULL ? msg : "invalid JSON");
}

const char *luar_json_encode(lua_State *L, int idx, size_t *len)
{
    idx = lua_absindex(L, idx);
    luar_json_push_instance(L);
    lua_getfield(L, -1, "encode");
    lua_remove(L, -2);
    lua_pushvalue(L, idx);
    lua_call(L, 1, 1);
    return lua_tolstring(L, -1, len);
}

/* json.encode(value) → string; raises on values JSON cannot hold. [-1, +1] */
static int json_encode(lua_State *L)
{
    luaL_checkany(L, 1);
    luar_json_encode(L, 1, NULL);
    return 1;
}

/* json.decode(text) → value | nil, err{kind="invalid"}. [-1, +1|2] */
static int json_decode(lua_State *L)
{
    luaL_checkstring(L, 1);
    lua_settop(L, 1);
    if (lua_type(L, 1) != LUA_TSTRING) {
        lua_pushstring(L, lua_tostring(L, 1));
        lua_replace(L, 1);
    }
    return luar_json_decode(L, 1);
}

int luaopen_luar_json(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"encode", json_encode},
        {"decode", json_decode},
        {NULL, NULL},
    };
    luaL_newlib(L, funcs);
    luar_json_push_instance(L);
    lua_getfield(L, -1, "null");
    lua_setfield(L, -3, "null");
    lua_pop(L, 1);
    return 1;
}
