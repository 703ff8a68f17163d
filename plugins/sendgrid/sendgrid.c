/*
 * The sendgrid plugin's descriptor: `require "luar.sendgrid"` (the Lua module embedded from
 * sendgrid.lua, a client on top of luar.http) and the `sendgrid` webhook scheme (scheme.c).
 *
 * Configuration (`plugins.sendgrid` in the config file), both optional:
 *   api_key   default API key of clients made without one (watched: never logged)
 *   base_url  default API base URL (default "https://api.sendgrid.com")
 */
#include "sendgrid.h"

#include "sendgrid_lua.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

const luar_host_t *sendgrid_host;

typedef struct sendgrid_ctx {
    const char *api_key;  /* owned by the host's configuration; NULL when unset */
    const char *base_url; /* idem */
} sendgrid_ctx_t;

static sendgrid_ctx_t sendgrid_ctx;

static int sendgrid_init(const luar_host_t *host, const luar_plugin_config_t *config,
                         void **ctx, char *err, size_t err_size)
{
    sendgrid_host = host;
    sendgrid_ctx.api_key = config ? host->config_string(config, "api_key") : NULL;
    sendgrid_ctx.base_url = config ? host->config_string(config, "base_url") : NULL;
    if (sendgrid_ctx.api_key != NULL) {
        int rc = host->secret_watch(host, "plugins.sendgrid.api_key", sendgrid_ctx.api_key,
                                    strlen(sendgrid_ctx.api_key));
        if (rc != 0) {
            snprintf(err, err_size, "cannot register plugins.sendgrid.api_key as a secret");
            return rc;
        }
    }
    *ctx = &sendgrid_ctx;
    return 0;
}

static void sendgrid_fini(void *ctx)
{
    (void)ctx;
    sendgrid_host = NULL;
}

/* require "luar.sendgrid": runs the embedded chunk with the configured defaults. [-0, +1] */
static int sendgrid_open(lua_State *L, void *ctx)
{
    const sendgrid_ctx_t *c = ctx;
    if (luaL_loadbuffer(L, sendgrid_lua, sizeof sendgrid_lua - 1, "=luar.sendgrid") != LUA_OK)
        return lua_error(L);
    lua_createtable(L, 0, 3);
    if (c != NULL && c->api_key != NULL) {
        lua_pushstring(L, c->api_key);
        lua_setfield(L, -2, "api_key");
    }
    if (c != NULL && c->base_url != NULL) {
        lua_pushstring(L, c->base_url);
        lua_setfield(L, -2, "base_url");
    }
    lua_pushstring(L, SENDGRID_VERSION);
    lua_setfield(L, -2, "version");
    lua_call(L, 1, 1);
    return 1;
}

static const luar_webhook_scheme_t *const sendgrid_schemes[] = {&sendgrid_scheme, NULL};

LUAR_PLUGIN_DEFINE = {
    .abi = LUAR_PLUGIN_ABI,
    .name = "sendgrid",
    .version = SENDGRID_VERSION,
    .description = "SendGrid: mail/send client and the signed Event Webhook scheme",
    .init = sendgrid_init,
    .fini = sendgrid_fini,
    .open = sendgrid_open,
    .schemes = sendgrid_schemes,
};
