/*
 * Line coverage: the code lines read from a compiled chunk must be exactly the lines Lua
 * itself reports as active (debug.getinfo "L") for the chunk and every nested function,
 * including the cases its line table encodes differently (absolute lines after long jumps
 * and every 128 instructions, vararg functions).
 */
#include "common/buf.h"
#include "common/error.h"
#include "lua/coverage.h"
#include "test.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>

#define NLINES 2000

static int writer(lua_State *L, const void *p, size_t sz, void *ud)
{
    (void)L;
    return luar_buf_append(ud, p, sz) == 0 ? 0 : 1;
}

/* A chunk whose functions return every nested function, so Lua can list their lines. */
static void build_chunk(luar_buf_t *src)
{
    luar_buf_appendf(src, "local t = {}\n"
                          "t[1] = function(a)\n  local x = a\n  if x then\n    x = x + 1\n"
                          "  end\n  return x\nend\n");
    for (int i = 0; i < 200; i++) /* a gap of more than 127 lines: an absolute line */
        luar_buf_appendf(src, "\n");
    luar_buf_appendf(src, "t[2] = function(...)\n  local n = select('#', ...)\n  return n\nend\n");
    luar_buf_appendf(src, "t[3] = function()\n  local s = 0\n");
    for (int i = 0; i < 300; i++) /* more than 128 instructions: absolute lines on the way */
        luar_buf_appendf(src, "  s = s + %d\n", i);
    luar_buf_appendf(src, "  return s\nend\n"
                          "t[4] = function()\n  return function()\n    return 1\n  end\nend\n"
                          "local function never_called(y)\n  local z = y * 2\n"
                          "  return z\nend\n"
                          "t[5] = never_called\n"
                          "return t\n");
}

static void add_active_lines(lua_State *L, int fn, unsigned char *want)
{
    lua_Debug ar;
    lua_pushvalue(L, fn);
    CHECK(lua_getinfo(L, ">L", &ar));
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        lua_Integer line = lua_tointeger(L, -2);
        if (line > 0 && line < NLINES)
            want[line] = 1;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

TEST(test_coverage_code_lines_are_luas_active_lines)
{
    luar_buf_t src, dump;
    luar_buf_init(&src, 0);
    luar_buf_init(&dump, 0);
    build_chunk(&src);
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    CHECK_EQ_INT(luaL_loadbuffer(L, src.data, src.len, "=chunk"), LUA_OK);
    CHECK_EQ_INT(lua_dump(L, writer, &dump, 0), 0);

    unsigned char *want = calloc(NLINES, 1), *got = calloc(NLINES, 1);
    add_active_lines(L, -1, want);
    lua_call(L, 0, 1); /* the table of functions */
    for (int i = 1; i <= 5; i++) {
        lua_rawgeti(L, -1, i);
        add_active_lines(L, lua_gettop(L), want);
        lua_pop(L, 1);
    }
    lua_rawgeti(L, -1, 4);
    lua_call(L, 0, 1); /* the function nested twice */
    add_active_lines(L, lua_gettop(L), want);
    lua_close(L);

    CHECK_EQ_INT(luar_coverage_code_lines((unsigned char *)dump.data, dump.len, got, NLINES), 0);
    int nwant = 0, same = 1;
    for (int line = 0; line < NLINES; line++) {
        nwant += want[line];
        if (want[line] != got[line]) {
            fprintf(stderr, "line %d: Lua says %d, the dump reader %d\n", line, want[line],
                    got[line]);
            same = 0;
        }
    }
    CHECK(same);
    CHECK(nwant > 300); /* the chunk really has its 300-line function */
    free(want);
    free(got);
    luar_buf_free(&src);
    luar_buf_free(&dump);
}

TEST(test_coverage_refuses_what_it_cannot_read)
{
    unsigned char code[16];
    const unsigned char junk[] = "not a chunk at all";
    CHECK_EQ_INT(luar_coverage_code_lines(junk, sizeof junk, code, sizeof code), LUAR_EINVAL);

    /* a real dump cut short: the reader stops at the end, never past it */
    luar_buf_t dump;
    luar_buf_init(&dump, 0);
    lua_State *L = luaL_newstate();
    const char *src = "local a = 1\nreturn function() return a end\n";
    CHECK_EQ_INT(luaL_loadbuffer(L, src, strlen(src), "=cut"), LUA_OK);
    CHECK_EQ_INT(lua_dump(L, writer, &dump, 0), 0);
    lua_close(L);
    for (size_t n = 0; n + 1 < dump.len; n++)
        CHECK_EQ_INT(luar_coverage_code_lines((unsigned char *)dump.data, n, code, sizeof code),
                     LUAR_EINVAL);
    CHECK_EQ_INT(luar_coverage_code_lines((unsigned char *)dump.data, dump.len, code,
                                          sizeof code),
                 0);
    luar_buf_free(&dump);
}

int main(void)
{
    RUN(test_coverage_code_lines_are_luas_active_lines);
    RUN(test_coverage_refuses_what_it_cannot_read);
    return DONE();
}
