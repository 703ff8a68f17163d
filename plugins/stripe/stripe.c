/*
 * The stripe plugin: `require "luar.stripe"` (a Lua module embedded in the .so, built on
 * luar.http, with Stripe's form encoding in C) and the `stripe` webhook scheme.
 *
 * Configuration (`plugins.stripe` in the config file), all optional:
 *   api_key             the secret key (sk_…); else the secret store / environment
 *   api_key_secret      the name looked up there (default "STRIPE_API_KEY")
 *   api_version         Stripe-Version sent with every request (default: STRIPE_API_VERSION)
 *   base_url            default "https://api.stripe.com" (no /v1)
 *   timeout             seconds per attempt (default 80, as Stripe's libraries)
 *   max_network_retries retries after the first attempt (default 2)
 */
#include "stripe.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#include "stripe_lua.h"

#define STRIPE_VERSION "0.1.0"
/* The API version the client pins unless told otherwise: the one the official libraries
 * of this date pin (stripe-node 23.1.0), so response shapes match their documentation. */
#define STRIPE_API_VERSION "2026-10-28.endive"
const luar_host_t *stripe_host;

static const luar_plugin_config_t *stripe_config;

static int valid_url(const char *u)
{
    return strncmp(u, "https://", 8) == 0 || strncmp(u, "http://", 7) == 0;
}

static int stripe_init(const luar_host_t *host, const luar_plugin_config_t *config, void **ctx,
                       char *err, size_t err_size)
{
    (void)ctx;
    stripe_host = host;
    stripe_config = config;
    const char *base = host->config_string(config, "base_url");
    if (base != NULL && !valid_url(base)) {
        snprintf(err, err_size, "plugins.stripe.base_url must start with https:// or http://");
        return LUAR_PLUGIN_ECONFIG;
    }
    static const char *const numbers[] = {"timeout", "max_network_retries"};
    for (size_t i = 0; i < sizeof numbers / sizeof *numbers; i++) {
        double v;
        if (host->config_string(config, numbers[i]) != NULL &&
            (!host->config_number(config, numbers[i], &v) || v < 0)) {
            snprintf(err, err_size, "plugins.stripe.%s must be a number >= 0", numbers[i]);
            return LUAR_PLUGIN_ECONFIG;
        }
    }
    const char *key = host->config_string(config, "api_key");
    if (key != NULL)
        host->secret_watch(host, "plugins.stripe.api_key", key, strlen(key));
    return 0;
}

static void stripe_fini(void *ctx)
{
    (void)ctx;
    stripe_host = NULL;
    stripe_config = NULL;
}

/* native.watch(value): keeps an API key given in Lua out of logs and errors. */
static int l_watch(lua_State *L)
{
    size_t len;
    const char *v = luaL_checklstring(L, 1, &len);
    if (stripe_host != NULL)
        stripe_host->secret_watch(stripe_host, "luar.stripe api_key", v, len);
    return 0;
}

static void set_config_string(lua_State *L, const char *key, const char *fallback)
{
    const char *v = stripe_config ? stripe_host->config_string(stripe_config, key) : NULL;
    if (v == NULL)
        v = fallback;
    if (v == NULL)
        return;
    lua_pushstring(L, v);
    lua_setfield(L, -2, key);
}

static void set_config_number(lua_State *L, const char *key, double fallback)
{
    double v = fallback;
    if (stripe_config)
        stripe_host->config_number(stripe_config, key, &v);
    lua_pushnumber(L, v);
    lua_setfield(L, -2, key);
}

static int stripe_open(lua_State *L, void *ctx)
{
    (void)ctx;
    if (luaL_loadbuffer(L, stripe_lua, sizeof stripe_lua - 1, "=luar.stripe") != LUA_OK)
        return lua_error(L);
    lua_createtable(L, 0, 6);
    lua_pushcfunction(L, stripe_l_encode);
    lua_setfield(L, -2, "encode");
    lua_pushcfunction(L, stripe_l_escape);
    lua_setfield(L, -2, "escape");
    lua_pushcfunction(L, l_watch);
    lua_setfield(L, -2, "watch");
    lua_pushliteral(L, STRIPE_VERSION);
    lua_setfield(L, -2, "version");
    lua_createtable(L, 0, 6); /* the plugin's configuration, defaults filled in */
    set_config_string(L, "api_key", NULL);
    set_config_string(L, "api_key_secret", "STRIPE_API_KEY");
    set_config_string(L, "api_version", STRIPE_API_VERSION);
    set_config_string(L, "base_url", "https://api.stripe.com");
    set_config_number(L, "timeout", 80);
    set_config_number(L, "max_network_retries", 2);
    lua_setfield(L, -2, "config");
    lua_call(L, 1, 1);
    return 1;
}

static const luar_webhook_scheme_t *const stripe_schemes[] = {&stripe_scheme, NULL};

LUAR_PLUGIN_DEFINE = {
    .abi = LUAR_PLUGIN_ABI,
    .name = "stripe",
    .version = STRIPE_VERSION,
    .description = "Stripe API client (luar.stripe) and the stripe webhook scheme",
    .init = stripe_init,
    .fini = stripe_fini,
    .open = stripe_open,
    .schemes = stripe_schemes,
};
