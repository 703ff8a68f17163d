/* What other files of host/lua use of luar.http's server side (mod_http.c). */
#ifndef LUAR_MOD_HTTP_H
#define LUAR_MOD_HTTP_H

#include "server/http.h"

#include <lua.h>

/*
 * Pushes the request table a handler receives (method, path, query, headers, body, id,
 * remote_addr, route, tls, and the json method), with an empty `params`: the router adds
 * those. `req` must stay valid during the call only. Stack [-0, +1].
 */
void luar_http_push_request(lua_State *L, luar_http_req_t *req);

#endif
