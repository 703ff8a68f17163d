/*
 * luar_json_decode (lua/mod_json.c) against lua-cjson: the direct decoder must give the
 * values lua-cjson (plus the integral-number rule) gives, bit for bit and type for type,
 * except that integers which fit 64 bits are exact (lua-cjson rounds them through a
 * double: the reference protects them from it), for every valid text, and leave every text the strict validator refuses to lua-cjson,
 * errors and leniencies included. Fixed cases at the edges (numbers, escapes, duplicates,
 * depth), then random documents.
 */
#include "lua/util.h"
#include "test.h"

#include <lauxlib.h>
#include <lua-cjson.h>
#include <lualib.h>
#include <stdlib.h>

/* The reference and the comparison, in Lua. `same` tells integers from floats, -0.0 from
 * 0.0 and NaN from NaN, and compares tables key by key both ways. */
static const char helpers[] =
    "local cjson = ...\n"
    "local function integerize(v)\n"
    "  if type(v) == 'number' then return math.tointeger(v) or v end\n"
    "  if type(v) == 'table' then\n"
    "    local t = {}\n"
    "    for k, x in pairs(v) do t[k] = integerize(x) end\n"
    "    return t\n"
    "  end\n"
    "  return v\n"
    "end\n"
    "local function same(a, b, path)\n"
    "  if type(a) ~= type(b) then return false, path .. ': ' .. type(a) .. ' vs ' .. type(b) end\n"
    "  if type(a) == 'number' then\n"
    "    if math.type(a) ~= math.type(b) then\n"
    "      return false, path .. ': ' .. math.type(a) .. ' ' .. a .. ' vs ' .. math.type(b) .. ' ' "
    ".. b\n"
    "    end\n"
    "    if a ~= a and b ~= b then return true end\n"
    "    if a ~= b or (a == 0 and 1 / a ~= 1 / b) then\n"
    "      return false, path .. ': ' .. string.format('%.17g vs %.17g', a, b)\n"
    "    end\n"
    "    return true\n"
    "  end\n"
    "  if type(a) ~= 'table' then\n"
    "    if a ~= b then return false, path .. ': ' .. tostring(a) .. ' vs ' .. tostring(b) end\n"
    "    return true\n"
    "  end\n"
    "  for k, v in pairs(a) do\n"
    "    local ok, why = same(v, b[k], path .. '.' .. tostring(k))\n"
    "    if not ok then return false, why end\n"
    "  end\n"
    "  for k in pairs(b) do\n"
    "    if a[k] == nil then return false, path .. '.' .. tostring(k) .. ': extra key' end\n"
    "  end\n"
    "  return true\n"
    "end\n"
    "local c = cjson.new()\n"
    "c.decode_max_depth(128)\n"
    "-- Plain integer literals that fit 64 bits become marker strings for cjson, then the\n"
    "-- exact integers again: what luar.json promises beyond lua-cjson.\n"
    "local function protect(s)\n"
    "  local out, i, n = {}, 1, #s\n"
    "  while i <= n do\n"
    "    local ch = s:sub(i, i)\n"
    "    if ch == '\"' then\n"
    "      local j = i + 1\n"
    "      while j <= n and s:sub(j, j) ~= '\"' do j = j + (s:sub(j, j) == '\\\\' and 2 or 1) end\n"
    "      out[#out + 1] = s:sub(i, j); i = j + 1\n"
    "    elseif ch == '-' or ch:match('%d') then\n"
    "      local num = s:match('^%-?[%d%.eE+%-]+', i)\n"
    "      local int = num:match('^%-?%d+$')\n"
    "      if int and math.type(tonumber(int)) == 'integer' then\n"
    "        out[#out + 1] = '\"@@int:' .. int .. '@@\"'\n"
    "      else out[#out + 1] = num end\n"
    "      i = i + #num\n"
    "    else out[#out + 1] = ch; i = i + 1 end\n"
    "  end\n"
    "  return table.concat(out)\n"
    "end\n"
    "local function restore(v)\n"
    "  if type(v) == 'string' then\n"
    "    local int = v:match('^@@int:(%-?%d+)@@$')\n"
    "    if int then return math.tointeger(tonumber(int)) end\n"
    "  elseif type(v) == 'table' then\n"
    "    for k, x in pairs(v) do v[k] = restore(x) end\n"
    "  end\n"
    "  return v\n"
    "end\n"
    "local function reference(s)\n"
    "  local ok, v = pcall(c.decode, s)\n"
    "  if not ok then return nil end\n"
    "  local ok2, p = pcall(c.decode, protect(s))\n"
    "  if ok2 then v = restore(p) end\n"
    "  return integerize(v)\n"
    "end\n"
    "return same, reference\n";

static lua_State *L;
static int same_ref, reference_ref;

static int decode_fn(lua_State *l)
{
    return luar_json_decode(l, 1);
}

/* Decodes `s` both ways; nonzero when they agree (both failing counts as agreeing). */
static int agrees(const char *s, size_t len)
{
    int top = lua_gettop(L);
    lua_pushcfunction(L, decode_fn);
    lua_pushlstring(L, s, len);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        fprintf(stderr, "decode raised: %s\n", lua_tostring(L, -1));
        lua_settop(L, top);
        return 0;
    }
    int mine = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, reference_ref);
    lua_pushlstring(L, s, len);
    lua_call(L, 1, 1);
    int ref = lua_gettop(L);
    int ok;
    if (lua_isnil(L, ref) || lua_isnil(L, mine)) {
        ok = lua_isnil(L, ref) && lua_isnil(L, mine);
        if (!ok)
            fprintf(stderr, "one side failed on %.*s\n", (int)(len > 200 ? 200 : len), s);
    } else {
        lua_rawgeti(L, LUA_REGISTRYINDEX, same_ref);
        lua_pushvalue(L, mine);
        lua_pushvalue(L, ref);
        lua_pushliteral(L, "$");
        lua_call(L, 3, 2);
        ok = lua_toboolean(L, -2);
        if (!ok)
            fprintf(stderr, "differs at %s for %.*s\n", lua_tostring(L, -1),
                    (int)(len > 200 ? 200 : len), s);
    }
    lua_settop(L, top);
    return ok;
}

static int agrees_str(const char *s)
{
    return agrees(s, strlen(s));
}

TEST(test_decode_matches_cjson_on_numbers)
{
    static const char *const numbers[] = {
        "0",
        "-0",
        "7",
        "-7",
        "1.0",
        "-1.0",
        "0.5",
        "-1.5e3",
        "1E2",
        "1e-2",
        "2.5e-324",
        "1e308",
        "1e400",
        "-1e400",
        "123456789012345",
        "-123456789012345",
        "1234567890123456",
        "9007199254740993",
        "123456789012345678",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "-9223372036854775809",
        "100000000000000000000000000000000",
        "0.1",
        "3.141592653589793238462643383279",
        "1e0",
        "0e0",
        "-0.0",
        "4.35",
        "[0, -0, 1.0, 1e2, 12345678901234567890, 0.30000000000000004]",
    };
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++)
        CHECK(agrees_str(numbers[i]));
}

TEST(test_decode_matches_cjson_on_strings_and_structure)
{
    static const char *const texts[] = {
        "\"\"",
        "\"plain\"",
        "\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"",
        "\"\\u00e9\\u20ac\"",
        "\"\\uD83D\\uDE00 and \\ud83d\\ude00\"",
        "\"\\u0000 nul\"",
        "\"caf\xc3\xa9 \xf0\x9f\x98\x80\"",
        "{\"a\\u0062c\": 1, \"\\n\": [true, false, null]}",
        "{\"a\":1,\"a\":2,\"a\":3}",
        "[]",
        "{}",
        "[[], {}, [[]], {\"x\": {}}]",
        " \t\r\n{ \"k\" : [ 1 , 2 ] } \n",
        "[null, null, 3]",
        "{\"x\": null}",
        "true",
        "false",
        "null",
        "[1, \"two\", 3.5, {\"four\": [5]}]",
        "{\"id\":\"evt_1\",\"object\":\"event\",\"created\":1700000000,\"data\":{\"object\":{"
        "\"amount\":4999,\"currency\":\"eur\",\"metadata\":{\"order_id\":\"100234\"},"
        "\"fraud_details\":{},\"refunds\":[],\"paid\":true,\"application\":null}}}",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        CHECK(agrees_str(texts[i]));
    /* Duplicate keys: the last one wins, as in lua-cjson. */
    lua_pushcfunction(L, decode_fn);
    lua_pushliteral(L, "{\"a\":1,\"a\":2}");
    CHECK_EQ_INT(lua_pcall(L, 1, 1, 0), LUA_OK);
    CHECK_EQ_INT(lua_getfield(L, -1, "a"), LUA_TNUMBER);
    CHECK_EQ_INT(lua_tointeger(L, -1), 2);
    lua_settop(L, 0);
}

/* What the strict validator refuses goes to lua-cjson: its leniencies and its errors. */
TEST(test_decode_leaves_what_it_refuses_to_cjson)
{
    static const char *const texts[] = {
        "\"a\x01"
        "b\"",
        "\"\xff\"",
        "01",
        "Infinity",
        "-Infinity",
        "NaN",
        "0x10",
        "[1,]",
        "{",
        "",
        "   ",
        "[1 2]",
        "{\"a\" 1}",
        "\"\\ud800\"",
        "\"\\x\"",
        "tru",
        "[1]x",
        "1.",
        ".5",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        CHECK(agrees_str(texts[i]));
}

TEST(test_decode_depth_limit_is_cjsons)
{
    char deep[2 * 130 + 1];
    for (int depth = 126; depth <= 130; depth++) {
        for (int i = 0; i < depth; i++) {
            deep[i] = '[';
            deep[2 * depth - 1 - i] = ']';
        }
        CHECK(agrees(deep, (size_t)depth * 2));
    }
}

/* Random documents: nesting, every number form, strings of escapes and UTF-8. */
static void gen(luar_buf_t *b, int depth)
{
    static const char *const nums[] = {"0",   "-0",    "1",    "42",   "-17",
                                       "1.5", "-0.25", "1e3",  "2E-3", "123456789012345678",
                                       "3.0", "1e400", "7.0e1"};
    static const char *const strs[] = {"\"\"",
                                       "\"x\"",
                                       "\"\\n\\t\\\"\"",
                                       "\"\\u00e9x\"",
                                       "\"\\ud83d\\ude00\"",
                                       "\"\xc3\xa9\"",
                                       "\"a b c d e f g h i j\"",
                                       "\"\\\\\\/\""};
    int kind = depth > 6 ? rand() % 5 : rand() % 7;
    switch (kind) {
    case 0:
        luar_buf_puts(b, nums[rand() % (int)(sizeof nums / sizeof nums[0])]);
        break;
    case 1:
        luar_buf_puts(b, strs[rand() % (int)(sizeof strs / sizeof strs[0])]);
        break;
    case 2:
        luar_buf_puts(b, rand() % 2 ? "true" : "false");
        break;
    case 3:
        luar_buf_puts(b, "null");
        break;
    case 4:
        luar_buf_appendf(b, "%d", rand() - RAND_MAX / 2);
        break;
    case 5: {
        int n = rand() % 6;
        luar_buf_putc(b, '[');
        for (int i = 0; i < n; i++) {
            if (i)
                luar_buf_puts(b, rand() % 2 ? "," : " , ");
            gen(b, depth + 1);
        }
        luar_buf_putc(b, ']');
        break;
    }
    default: {
        int n = rand() % 6;
        luar_buf_putc(b, '{');
        for (int i = 0; i < n; i++) {
            if (i)
                luar_buf_putc(b, ',');
            luar_buf_appendf(b, "\"k%d\":", rand() % 8); /* duplicates now and then */
            gen(b, depth + 1);
        }
        luar_buf_putc(b, '}');
        break;
    }
    }
}

TEST(test_decode_matches_cjson_on_random_documents)
{
    srand(5);
    int bad = 0;
    for (int i = 0; i < 3000 && bad < 5; i++) {
        luar_buf_t b;
        luar_buf_init(&b, 0);
        gen(&b, 0);
        if (!agrees(b.data, b.len))
            bad++;
        luar_buf_free(&b);
    }
    CHECK_EQ_INT(bad, 0);
}

int main(void)
{
    L = luaL_newstate();
    luaL_openlibs(L);
    luaL_requiref(L, "cjson", luaopen_cjson, 0);
    if (luaL_loadstring(L, helpers) != LUA_OK) {
        fprintf(stderr, "%s\n", lua_tostring(L, -1));
        return 1;
    }
    lua_rotate(L, -2, 1);
    lua_call(L, 1, 2);
    reference_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    same_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    RUN(test_decode_matches_cjson_on_numbers);
    RUN(test_decode_matches_cjson_on_strings_and_structure);
    RUN(test_decode_leaves_what_it_refuses_to_cjson);
    RUN(test_decode_depth_limit_is_cjsons);
    RUN(test_decode_matches_cjson_on_random_documents);
    lua_close(L);
    return DONE();
}
