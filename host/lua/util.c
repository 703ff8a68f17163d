#include "lua/util.h"

#include <lauxlib.h>

#define BUF_MT "luar.buf"

static int buf_gc(lua_State *L)
{
    luar_buf_free(luaL_checkudata(L, 1, BUF_MT));
    return 0;
}

luar_buf_t *luar_lua_newbuf(lua_State *L, size_t max)
{
    luar_buf_t *b = lua_newuserdatauv(L, sizeof *b, 0);
    luar_buf_init(b, max);
    if (luaL_newmetatable(L, BUF_MT)) {
        lua_pushcfunction(L, buf_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return b;
}
