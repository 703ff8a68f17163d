/* The outbound client functions of luar.http (host/lua/mod_http_client.c). */
#ifndef LUAR_LUA_MOD_HTTP_CLIENT_H
#define LUAR_LUA_MOD_HTTP_CLIENT_H

#include <lua.h>

/*
 * Adds request, get, post, put, patch, delete, head and client to the luar.http module
 * table at the top of the stack. Raises only on memory errors. Stack effect [-0, +0].
 */
void luar_http_client_open(lua_State *L);

#endif
