/* webhooks.deliver: being built (issue 5). */
#include "lua/mod_webhooks.h"

#include <lauxlib.h>

int luar_webhooks_deliver(lua_State *L)
{
    return luaL_error(L, "webhooks.deliver is not implemented yet");
}
