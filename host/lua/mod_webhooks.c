/* luar.webhooks (SPEC §4): webhooks.route and webhooks.on — being built (issue 5). */
#include "lua/mod_webhooks.h"
#include "lua/modules.h"

#include <lauxlib.h>

int luaopen_luar_webhooks(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"verify", luar_webhooks_verify},
        {"deliver", luar_webhooks_deliver},
        {NULL, NULL},
    };
    luaL_newlib(L, fns);
    return 1;
}
