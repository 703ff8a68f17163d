/*
 * The shopify plugin's descriptor: the `shopify` webhook scheme (scheme.c) and
 * `require "luar.shopify"` (shopify.lua, embedded at build time), which verifies the signed
 * query strings Shopify sends to OAuth callbacks and app proxies.
 */
#include "shopify.h"

#include "shopify_lua.h"

#include <lauxlib.h>
#include <stddef.h>
#include <stdio.h>

const luar_host_t *shopify_host;

/* The last member of luar_host_t this plugin calls (buf_reset, appended within ABI 1): a
 * host without it is too old. */
#define SHOPIFY_HOST_NEEDS                                                                     \
    (offsetof(luar_host_t, buf_reset) + sizeof(((luar_host_t *)0)->buf_reset))

static int shopify_init(const luar_host_t *host, const luar_plugin_config_t *config,
                        void **ctx, char *err, size_t err_size)
{
    (void)config;
    (void)ctx;
    if (host->size < SHOPIFY_HOST_NEEDS) {
        snprintf(err, err_size, "the host's API table is too small (%zu bytes, the plugin "
                                "needs %zu)", host->size, (size_t)SHOPIFY_HOST_NEEDS);
        return LUAR_PLUGIN_EINVAL;
    }
    shopify_host = host;
    return 0;
}

static void shopify_fini(void *ctx)
{
    (void)ctx;
    shopify_host = NULL;
}

/* require "luar.shopify": runs the embedded module, which returns its table. [-0, +1] */
static int shopify_open(lua_State *L, void *ctx)
{
    (void)ctx;
    if (luaL_loadbuffer(L, shopify_lua, sizeof shopify_lua - 1, "=luar.shopify") !=
        LUA_OK)
        return lua_error(L);
    lua_call(L, 0, 1);
    return 1;
}

static const luar_webhook_scheme_t *const shopify_schemes[] = {&shopify_scheme, NULL};

LUAR_PLUGIN_DEFINE = {
    .abi = LUAR_PLUGIN_ABI,
    .name = "shopify",
    .version = "1.0.0",
    .description = "Shopify: the shopify webhook scheme and signed query (OAuth, app proxy) "
                   "checks",
    .init = shopify_init,
    .fini = shopify_fini,
    .open = shopify_open,
    .schemes = shopify_schemes,
};
