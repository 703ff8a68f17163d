/*
 * luar_json_encode (lua/mod_json.c): lua-cjson's rules with exact 64-bit integers and
 * shortest round-tripping floats. Fixed cases, the errors, and round trips: decoding what
 * was encoded gives the value back, and lua-cjson reads the same values from it.
 */
#include "lua/util.h"
#include "test.h"

#include <lauxlib.h>
#include <lua-cjson.h>
#include <lualib.h>
#include <string.h>

static lua_State *L;

static int encode_fn(lua_State *l)
{
    luar_json_encode(l, 1, NULL);
    return 1;
}

static int decode_fn(lua_State *l)
{
    return luar_json_decode(l, 1);
}

/* Runs `expr` (a Lua expression) through luar_json_encode: the text, or "ERR: message". */
static const char *enc(const char *expr, char *out, size_t size)
{
    char code[512];
    snprintf(code, sizeof code, "local null = ...; return %s", expr);
    int top = lua_gettop(L);
    if (luaL_loadstring(L, code) != LUA_OK) {
        snprintf(out, size, "BAD TEST: %s", lua_tostring(L, -1));
        lua_settop(L, top);
        return out;
    }
    lua_pushlightuserdata(L, NULL);
    lua_call(L, 1, 1);
    lua_pushcfunction(L, encode_fn);
    lua_insert(L, -2);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK)
        snprintf(out, size, "ERR: %s", lua_tostring(L, -1));
    else
        snprintf(out, size, "%s", lua_tostring(L, -1));
    lua_settop(L, top);
    return out;
}

#define ENC(expr, want)                                                                   \
    do {                                                                                  \
        char got_[4096];                                                                  \
        CHECK_EQ_STR(enc(expr, got_, sizeof got_), want);                                 \
    } while (0)

TEST(test_encode_numbers_exactly)
{
    ENC("820982911946154508", "820982911946154508");
    ENC("math.maxinteger", "9223372036854775807");
    ENC("math.mininteger", "-9223372036854775808");
    ENC("5.0", "5");
    ENC("-3", "-3");
    ENC("0.1", "0.1");
    ENC("0.1 + 0.2", "0.30000000000000004");
    ENC("1e300", "1e+300");
    ENC("2^53 + 0.0", "9007199254740992"); /* exact in 16 digits */
    ENC("2^70 + 0.0", "1.1805916207174113e+21");
    ENC("1/3", "0.3333333333333333");
    ENC("{ id = 1234567890123456789 }", "{\"id\":1234567890123456789}");
}

TEST(test_encode_strings_and_structure)
{
    ENC("'a/b \"q\" \\\\ \\n\\t\\1'", "\"a/b \\\"q\\\" \\\\ \\n\\t\\u0001\"");
    ENC("'caf\\xc3\\xa9'", "\"caf\xc3\xa9\"");
    ENC("'bad \\xff byte'", "\"bad \xef\xbf\xbd byte\""); /* invalid UTF-8: U+FFFD */
    ENC("{}", "{}");
    ENC("{1, 2, 'x', true, false, null}", "[1,2,\"x\",true,false,null]");
    ENC("{[1] = 1, [3] = 3}", "[1,null,3]");
    ENC("{a = {b = {}}}", "{\"a\":{\"b\":{}}}");
    ENC("{[2.0] = 'two', [1] = 'one'}", "[\"one\",\"two\"]");
    ENC("{[5.5] = 1}", "{\"5.5\":1}");
    ENC("null", "null");
    ENC("nil", "null");
}

TEST(test_encode_refuses_what_json_cannot_hold)
{
    char got[512];
    CHECK(strstr(enc("0/0", got, sizeof got), "NaN or Infinity") != NULL);
    CHECK(strstr(enc("math.huge", got, sizeof got), "NaN or Infinity") != NULL);
    CHECK(strstr(enc("print", got, sizeof got), "function: type not supported") != NULL);
    CHECK(strstr(enc("{[{}] = 1}", got, sizeof got), "key must be a number or string") != NULL);
    CHECK(strstr(enc("{[20] = 1}", got, sizeof got), "excessively sparse") != NULL);
    CHECK(strstr(enc("{[-1] = 1}", got, sizeof got), "ERR") == NULL); /* an object then */
    /* 128 levels encode; 129 do not. */
    CHECK(strncmp(enc("(function() local t = {} for i = 1, 127 do t = {t} end return t end)()",
                      got, sizeof got), "[[[[", 4) == 0);
    CHECK(strstr(enc("(function() local t = {} for i = 1, 128 do t = {t} end return t end)()",
                     got, sizeof got), "excessive nesting") != NULL);
}

/* Decoding the encoding gives the value back; lua-cjson reads the same text the same way
 * (integers below 2^53, where it is exact). */
TEST(test_encode_round_trips)
{
    static const char *const texts[] = {
        "{\"id\":820982911946154508,\"total\":\"10.00\",\"items\":[{\"q\":2,\"p\":4.35}]}",
        "[0,-1,1.5,-0.25,1e-7,123456789,\"\\u00e9\",\"\\ud83d\\ude00\",null,true,{}]",
        "{\"nested\":{\"a\":[[],[[]],{\"b\":null}]},\"url\":\"https://x.test/a?b=c\"}",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        int top = lua_gettop(L);
        lua_pushcfunction(L, decode_fn);
        lua_pushstring(L, texts[i]);
        lua_call(L, 1, 1);
        lua_pushcfunction(L, encode_fn);
        lua_pushvalue(L, -2);
        lua_call(L, 1, 1); /* top - 1: the value, top: its encoding */
        if (i == 0)
            CHECK(strstr(lua_tostring(L, -1), "\"id\":820982911946154508") != NULL);
        lua_pushcfunction(L, decode_fn);
        lua_pushvalue(L, -2);
        lua_call(L, 1, 1);
        /* The value read back equals the first, type for type (integers stay integers). */
        lua_getglobal(L, "same");
        lua_pushvalue(L, -4);
        lua_pushvalue(L, -3);
        lua_call(L, 2, 1);
        CHECK(lua_toboolean(L, -1));
        lua_pop(L, 2);
        /* lua-cjson accepts it. */
        luaL_requiref(L, "cjson", luaopen_cjson, 0);
        lua_getfield(L, -1, "decode");
        lua_pushvalue(L, -3);
        CHECK(lua_pcall(L, 1, 1, 0) == LUA_OK);
        lua_settop(L, top);
    }
}

int main(void)
{
    L = luaL_newstate();
    luaL_openlibs(L);
    if (luaL_dostring(L, "function same(a, b)\n"
                         "  if type(a) ~= type(b) then return false end\n"
                         "  if type(a) == 'number' then return math.type(a) == math.type(b) and a == b end\n"
                         "  if type(a) ~= 'table' then return a == b end\n"
                         "  for k, v in pairs(a) do if not same(v, b[k]) then return false end end\n"
                         "  for k in pairs(b) do if a[k] == nil then return false end end\n"
                         "  return true\n"
                         "end") != LUA_OK)
        return 1;
    RUN(test_encode_numbers_exactly);
    RUN(test_encode_strings_and_structure);
    RUN(test_encode_refuses_what_json_cannot_hold);
    RUN(test_encode_round_trips);
    lua_close(L);
    return DONE();
}
