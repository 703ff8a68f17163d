/*
 * The slack plugin's descriptor: the `slack` webhook scheme (scheme.c) and
 * `require "luar.slack"`, a Lua module on top of luar.http (slack.lua, embedded in the .so
 * at build time) with the Web API client and the incoming-webhook helper.
 */
#include "slack.h"

#include "slack_lua.h"

#include <lauxlib.h>
#include <stddef.h>
#include <stdio.h>

const luar_host_t *slack_host;

/* The last member of luar_host_t this plugin calls: a host without it is too old. */
#define SLACK_HOST_NEEDS (offsetof(luar_host_t, now) + sizeof(((luar_host_t *)0)->now))

static int slack_init(const luar_host_t *host, const luar_plugin_config_t *config, void **ctx,
                      char *err, size_t err_size)
{
    (void)config;
    (void)ctx;
    if (host->size < SLACK_HOST_NEEDS) {
        snprintf(err, err_size, "the host's API table is too small (%zu bytes, the plugin "
                                "needs %zu)", host->size, (size_t)SLACK_HOST_NEEDS);
        return LUAR_PLUGIN_EINVAL;
    }
    slack_host = host;
    return 0;
}

static void slack_fini(void *ctx)
{
    (void)ctx;
    slack_host = NULL;
}

/* watch_secret(value): the host scrubs `value` (a token, a webhook URL's secret) from
 * logs, metrics and errors. [-0, +0] */
static int slack_watch_secret(lua_State *L)
{
    size_t len;
    const char *value = luaL_checklstring(L, 1, &len);
    if (slack_host != NULL)
        slack_host->secret_watch(slack_host, "slack credential", value, len);
    return 0;
}

/* require "luar.slack": runs the embedded module, which returns its table. [-0, +1] */
static int slack_open(lua_State *L, void *ctx)
{
    (void)ctx;
    if (luaL_loadbuffer(L, slack_lua, sizeof slack_lua - 1, "=luar.slack") != LUA_OK)
        return lua_error(L);
    lua_pushcfunction(L, slack_watch_secret);
    lua_call(L, 1, 1);
    return 1;
}

static const luar_webhook_scheme_t *const slack_schemes[] = {&slack_scheme, NULL};

LUAR_PLUGIN_DEFINE = {
    .abi = LUAR_PLUGIN_ABI,
    .name = "slack",
    .version = "1.0.0",
    .description = "Slack: the slack webhook scheme, chat.postMessage and incoming webhooks",
    .init = slack_init,
    .fini = slack_fini,
    .open = slack_open,
    .schemes = slack_schemes,
};
