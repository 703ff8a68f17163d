/* webhooks.verify: being built (issue 5). */
#include "lua/mod_webhooks.h"

#include <lauxlib.h>

int luar_webhooks_verify(lua_State *L)
{
    return luaL_error(L, "webhooks.verify is not implemented yet");
}
