/*
 * luar.secrets (SPEC §4): get(name) → the value from the encrypted store, else from the
 * environment, else nil. The store is read when the process starts and on every reload
 * (host/secrets/secrets.c); every value returned is redacted from logs from then on.
 */
#include "lua/modules.h"
#include "secrets/secrets.h"

#include <lauxlib.h>

/* secrets.get(name) → string | nil. Raises when name is not a string. [-1, +1] */
static int secrets_get(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    size_t len = 0;
    const char *value = luar_secrets_get(name, &len);
    if (value == NULL)
        lua_pushnil(L);
    else
        lua_pushlstring(L, value, len);
    return 1;
}

int luaopen_luar_secrets(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"get", secrets_get},
        {NULL, NULL},
    };
    luaL_newlib(L, funcs);
    return 1;
}
