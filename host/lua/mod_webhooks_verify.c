/*
 * webhooks.verify(scheme, opts): checks one request's signature with any registered scheme
 * (webhooks/scheme.h), for scripts that receive webhooks on their own http.route or read
 * them from elsewhere.
 *
 *   local ok, err = webhooks.verify("standard", { headers = req.headers, body = req.body,
 *                                                 secret = "whsec_…", tolerance = 300 })
 *
 * Every other key of `opts` is a scheme option (hmac's header, algorithm, …). A bad
 * signature is a run-time outcome: nil plus err{kind = "invalid_signature" | "expired",
 * message}. Misuse (unknown scheme, bad option, no secret) raises.
 *
 * Nothing C-allocated outlives a raise: the buffers are Lua userdata and the verifier's
 * configuration exists only between its init and free, where nothing raises.
 */
#include "common/clock.h"
#include "common/error.h"
#include "lua/error.h"
#include "lua/mod_webhooks.h"
#include "lua/util.h"
#include "webhooks/scheme.h"

#include <lauxlib.h>
#include <math.h>
#include <string.h>

#define VERIFY_MAX_OPTIONS 32
#define VERIFY_MAX_HEADERS 256

/* Keys of opts that are not scheme options. */
static int is_reserved(const char *key)
{
    static const char *const reserved[] = {"headers", "body", "secret", "secrets",
                                           "tolerance", "now", NULL};
    for (size_t i = 0; reserved[i]; i++) {
        if (strcmp(key, reserved[i]) == 0)
            return 1;
    }
    return 0;
}

/*
 * The string form of the value at the top of the stack (strings, numbers, booleans), kept
 * alive in the anchor table at `anchor`. Raises for other types. [-0, +0]
 */
static const char *option_string(lua_State *L, int anchor, const char *key, size_t *len)
{
    int t = lua_type(L, -1);
    if (t == LUA_TSTRING)
        return lua_tolstring(L, -1, len);
    if (t == LUA_TNUMBER || t == LUA_TBOOLEAN) {
        luaL_tolstring(L, -1, len); /* pushes the text */
        const char *s = lua_tostring(L, -1);
        lua_rawseti(L, anchor, (lua_Integer)lua_rawlen(L, anchor) + 1);
        return s;
    }
    luaL_error(L, "webhooks.verify: option %s must be a string, not a %s", key,
               lua_typename(L, t));
    return NULL;
}

/* Collects the secrets of opts (at `opts`): `secret` or `secrets`. [-0, +0] */
static size_t collect_secrets(lua_State *L, int opts, const char **secrets, size_t *lens)
{
    lua_getfield(L, opts, "secret");
    lua_getfield(L, opts, "secrets");
    int has_one = !lua_isnil(L, -2), has_many = !lua_isnil(L, -1);
    if (has_one && has_many)
        luaL_error(L, "webhooks.verify: give secret or secrets, not both");
    if (!has_one && !has_many)
        luaL_error(L, "webhooks.verify: secret (or secrets) is required");
    size_t n = 0;
    if (has_one) {
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "webhooks.verify: secret must be a string");
        secrets[0] = lua_tolstring(L, -2, &lens[0]);
        n = 1;
    } else {
        if (!lua_istable(L, -1))
            luaL_error(L, "webhooks.verify: secrets must be a list of strings");
        size_t count = lua_rawlen(L, -1);
        if (count == 0 || count > LUAR_WEBHOOK_MAX_SECRETS)
            luaL_error(L, "webhooks.verify: secrets must hold 1 to %d strings",
                       LUAR_WEBHOOK_MAX_SECRETS);
        for (size_t i = 0; i < count; i++) {
            lua_rawgeti(L, -1, (lua_Integer)i + 1);
            if (lua_type(L, -1) != LUA_TSTRING)
                luaL_error(L, "webhooks.verify: secrets[%d] must be a string", (int)i + 1);
            /* the string stays referenced by the secrets table, itself held by opts */
            secrets[i] = lua_tolstring(L, -1, &lens[i]);
            lua_pop(L, 1);
        }
        n = count;
    }
    lua_pop(L, 2);
    return n;
}

/*
 * Collects opts.headers (name → string, or name → list of strings for a repeated header)
 * into a userdata array of luar_http_header_t pushed on the stack. [-0, +1]
 */
static luar_http_header_t *collect_headers(lua_State *L, int opts, size_t *nheaders)
{
    lua_getfield(L, opts, "headers");
    int headers = lua_gettop(L);
    *nheaders = 0;
    if (lua_isnil(L, headers)) {
        lua_pop(L, 1);
        return lua_newuserdatauv(L, 1, 0);
    }
    if (!lua_istable(L, headers))
        luaL_error(L, "webhooks.verify: headers must be a table");
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, headers)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "webhooks.verify: header names must be strings");
        if (lua_type(L, -1) == LUA_TSTRING)
            n++;
        else if (lua_istable(L, -1))
            n += lua_rawlen(L, -1);
        else
            luaL_error(L, "webhooks.verify: header %s must be a string or a list of strings",
                       lua_tostring(L, -2));
        lua_pop(L, 1);
    }
    if (n > VERIFY_MAX_HEADERS)
        luaL_error(L, "webhooks.verify: more than %d headers", VERIFY_MAX_HEADERS);
    luar_http_header_t *h = lua_newuserdatauv(L, (n ? n : 1) * sizeof *h, 0);
    size_t k = 0;
    lua_pushnil(L);
    while (lua_next(L, headers)) {
        size_t name_len;
        const char *name = lua_tolstring(L, -2, &name_len);
        if (lua_type(L, -1) == LUA_TSTRING) {
            h[k].name = name;
            h[k].name_len = name_len;
            h[k].value = lua_tolstring(L, -1, &h[k].value_len);
            k++;
        } else {
            size_t count = lua_rawlen(L, -1);
            for (size_t i = 0; i < count && k < n; i++) {
                lua_rawgeti(L, -1, (lua_Integer)i + 1);
                if (lua_type(L, -1) != LUA_TSTRING)
                    luaL_error(L, "webhooks.verify: header %s must be a string or a list of "
                                  "strings", name);
                h[k].name = name;
                h[k].name_len = name_len;
                h[k].value = lua_tolstring(L, -1, &h[k].value_len);
                k++;
                lua_pop(L, 1);
            }
        }
        lua_pop(L, 1);
    }
    lua_remove(L, headers); /* the strings stay referenced by opts.headers */
    *nheaders = k;
    return h;
}

int luar_webhooks_verify(lua_State *L)
{
    const char *scheme = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    lua_newtable(L); /* 3: anchor for converted option strings */
    int anchor = 3;

    const char *secrets[LUAR_WEBHOOK_MAX_SECRETS];
    size_t lens[LUAR_WEBHOOK_MAX_SECRETS];
    size_t nsecrets = collect_secrets(L, 2, secrets, lens);

    lua_getfield(L, 2, "body");
    if (lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "webhooks.verify: body must be a string");
    size_t body_len;
    const char *body = lua_tolstring(L, -1, &body_len);
    lua_pop(L, 1); /* still referenced by opts */

    double tolerance = 0, now = luar_time_now();
    lua_getfield(L, 2, "tolerance");
    if (!lua_isnil(L, -1)) {
        if (!lua_isnumber(L, -1) || !(lua_tonumber(L, -1) > 0) || isinf(lua_tonumber(L, -1)))
            return luaL_error(L, "webhooks.verify: tolerance must be a number of seconds > 0");
        tolerance = lua_tonumber(L, -1);
    }
    lua_getfield(L, 2, "now");
    if (!lua_isnil(L, -1)) {
        if (!lua_isnumber(L, -1))
            return luaL_error(L, "webhooks.verify: now must be unix seconds");
        now = lua_tonumber(L, -1);
    }
    lua_pop(L, 2);

    luar_webhook_opt_t opts[VERIFY_MAX_OPTIONS];
    size_t nopts = 0;
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            return luaL_error(L, "webhooks.verify: option names must be strings");
        const char *key = lua_tostring(L, -2);
        if (!is_reserved(key)) {
            if (nopts == VERIFY_MAX_OPTIONS)
                return luaL_error(L, "webhooks.verify: more than %d options",
                                  VERIFY_MAX_OPTIONS);
            size_t vlen;
            opts[nopts].key = key;
            opts[nopts].value = option_string(L, anchor, key, &vlen);
            if (strlen(opts[nopts].value) != vlen)
                return luaL_error(L, "webhooks.verify: option %s holds a NUL byte", key);
            nopts++;
        }
        lua_pop(L, 1);
    }

    size_t nheaders;
    const luar_http_header_t *headers = collect_headers(L, 2, &nheaders);
    luar_buf_t *err = luar_lua_newbuf(L, 1024);
    luar_buf_t *why = luar_lua_newbuf(L, 1024);

    luar_webhook_verifier_t v;
    int rc = luar_webhook_verifier_init(&v, scheme, secrets, lens, nsecrets, opts, nopts,
                                        tolerance, err);
    if (rc)
        return luaL_error(L, "webhooks.verify: %s", err->data ? err->data : luar_strerror(rc));
    luar_webhook_msg_t msg = {headers, nheaders, body, body_len};
    luar_webhook_verdict_t verdict = luar_webhook_verify(&v, &msg, now, why);
    luar_webhook_verifier_free(&v);
    if (verdict == LUAR_WEBHOOK_OK) {
        lua_pushboolean(L, 1);
        return 1;
    }
    return luar_lua_fail(L, luar_webhook_verdict_outcome(verdict), "%s",
                         why->data ? why->data : "signature rejected");
}
