/*
 * The github plugin's descriptor: `require "luar.github"` (the Lua module embedded from
 * github.lua, a REST client on top of luar.http) and the `github` webhook scheme
 * (scheme.c).
 *
 * Configuration (`plugins.github` in the config file), all optional: the defaults of
 * clients made without them.
 *   token        API token (watched: never logged)
 *   base_url     default "https://api.github.com" (GitHub Enterprise: https://HOST/api/v3)
 *   api_version  X-GitHub-Api-Version (default "2022-11-28")
 *   user_agent   default "luar-github/<version>"
 *   max_wait     seconds a call may wait for a rate limit (default 60)
 */
#include "github.h"

#include "github_lua.h"

#include <lauxlib.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <string.h>

#define MAX_KEY_PEM 16384

const luar_host_t *github_host;

static const char *const github_config_keys[] = {"token", "base_url", "api_version",
                                                 "user_agent", "max_wait", NULL};

typedef struct github_ctx {
    const char *values[sizeof github_config_keys / sizeof *github_config_keys];
} github_ctx_t;

static github_ctx_t github_ctx;

static int github_init(const luar_host_t *host, const luar_plugin_config_t *config, void **ctx,
                       char *err, size_t err_size)
{
    github_host = host;
    for (size_t i = 0; github_config_keys[i] != NULL; i++)
        github_ctx.values[i] = config ? host->config_string(config, github_config_keys[i]) : NULL;
    const char *token = github_ctx.values[0];
    if (token != NULL && host->secret_watch(host, "plugins.github.token", token,
                                            strlen(token)) != 0) {
        snprintf(err, err_size, "cannot register plugins.github.token as a secret");
        return LUAR_PLUGIN_ENOMEM;
    }
    *ctx = &github_ctx;
    return 0;
}

static void github_fini(void *ctx)
{
    (void)ctx;
    github_host = NULL;
}

/*
 * rs256(pem, data) → the RSASSA-PKCS1-v1_5 SHA-256 signature of `data` with the PEM private
 * key `pem` (raw bytes), for GitHub App JWTs; or nil, reason when the key is unusable.
 * Not exported to users: the chunk gets it as an argument. [-2, +1|2]
 */
static int github_rs256(lua_State *L)
{
    size_t pem_len, data_len;
    const char *pem = luaL_checklstring(L, 1, &pem_len);
    const char *data = luaL_checklstring(L, 2, &data_len);
    if (pem_len > MAX_KEY_PEM) {
        lua_pushnil(L);
        lua_pushliteral(L, "the private key is too long");
        return 2;
    }
    BIO *bio = BIO_new_mem_buf(pem, (int)pem_len);
    EVP_PKEY *pkey = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (pkey == NULL || EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA) {
        EVP_PKEY_free(pkey);
        ERR_clear_error();
        lua_pushnil(L);
        lua_pushliteral(L, "the private key is not a PEM RSA private key");
        return 2;
    }
    unsigned char sig[1024];
    size_t sig_len = sizeof sig;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL && (size_t)EVP_PKEY_get_size(pkey) <= sizeof sig &&
             EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, pkey) == 1 &&
             EVP_DigestSign(ctx, sig, &sig_len, (const unsigned char *)data, data_len) == 1;
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(pkey);
    if (!ok) {
        ERR_clear_error();
        lua_pushnil(L);
        lua_pushliteral(L, "RS256 signing failed");
        return 2;
    }
    lua_pushlstring(L, (const char *)sig, sig_len);
    return 1;
}

/* require "luar.github": runs the embedded chunk with the configured defaults. [-0, +1] */
static int github_open(lua_State *L, void *ctx)
{
    const github_ctx_t *c = ctx;
    if (luaL_loadbuffer(L, github_lua, sizeof github_lua - 1, "=luar.github") != LUA_OK)
        return lua_error(L);
    lua_createtable(L, 0, 6);
    for (size_t i = 0; c != NULL && github_config_keys[i] != NULL; i++) {
        if (c->values[i] != NULL) {
            lua_pushstring(L, c->values[i]);
            lua_setfield(L, -2, github_config_keys[i]);
        }
    }
    lua_pushstring(L, GITHUB_VERSION);
    lua_setfield(L, -2, "version");
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, github_rs256);
    lua_setfield(L, -2, "rs256");
    lua_call(L, 2, 1);
    return 1;
}

static const luar_webhook_scheme_t *const github_schemes[] = {&github_scheme, NULL};

LUAR_PLUGIN_DEFINE = {
    .abi = LUAR_PLUGIN_ABI,
    .name = "github",
    .version = GITHUB_VERSION,
    .description = "GitHub: REST client (pagination, rate limits) and the webhook scheme",
    .init = github_init,
    .fini = github_fini,
    .open = github_open,
    .schemes = github_schemes,
};
