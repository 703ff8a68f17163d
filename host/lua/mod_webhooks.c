/* luar.webhooks (SPEC §4): being built (issue 5). */
#include "lua/modules.h"

#include <lauxlib.h>

int luaopen_luar_webhooks(lua_State *L)
{
    lua_newtable(L);
    return 1;
}
