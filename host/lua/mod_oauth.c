/*
 * luar.oauth (docs/oauth.md): the module is Lua (host/oauth/oauth.lua, embedded), given a
 * small table of C functions for what must be C or must not be Lua's to hold:
 *
 *   kv(mode, key[, value[, ttl]]) ⏸ → applied, value | nil, err   durable records (queue.h)
 *   seal(plain, aad) → blob | nil, err         AES-256-GCM under the secrets key
 *   open(blob, aad) → plain | nil, err
 *   verify_jws(jwt, jwks) → claims_json | nil, why, stale   libcjose (oauth/jose.c)
 *   public_url() → string | nil
 *
 * The secrets key stays in C: scripts can ask for tokens, never for the key that seals them.
 */
#include "common/error.h"
#include "jobs/jobs.h"
#include "lua/bridge.h"
#include "lua/error.h"
#include "lua/modules.h"
#include "oauth/oauth.h"
#include "queue/queue.h"

#include "luar_oauth_lua.h" /* generated from host/oauth/oauth.lua: luar_oauth_lua[] */

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

struct kv_wait {
    int canceled, fired;
    int rc;
    int applied;
    char *value; /* a copy, NULL when none */
    size_t len;
};

static void on_kv(void *arg, int rc, int applied, const char *value, size_t len)
{
    luar_bridge_op_t *op = arg;
    struct kv_wait *w = luar_bridge_op_data(op);
    w->fired = 1;
    if (w->canceled) {
        luar_bridge_op_free(op);
        return;
    }
    w->rc = rc;
    w->applied = applied;
    if (rc == 0 && value != NULL) {
        w->value = luar_memdup(value, len);
        w->len = len;
        if (w->value == NULL)
            w->rc = LUAR_ENOMEM;
    }
    luar_bridge_complete(op);
}

static void kv_cleanup(luar_bridge_op_t *op, int canceled)
{
    struct kv_wait *w = luar_bridge_op_data(op);
    free(w->value);
    w->value = NULL;
    if (canceled && !w->fired) {
        w->canceled = 1; /* the callback frees the op when the backend answers */
        return;
    }
    luar_bridge_op_free(op);
}

static int backend_fail(lua_State *L, int rc)
{
    luar_queue_t *q = luar_jobs_queue();
    const char *why = q == NULL ? "no queue backend in this command"
                      : rc == LUAR_EIO && luar_queue_last_error(q)[0] ? luar_queue_last_error(q)
                                                                      : luar_strerror(rc);
    return luar_lua_fail(L, "backend", "oauth: the backend did not answer (%s)", why);
}

static int push_kv(lua_State *L, luar_bridge_op_t *op)
{
    struct kv_wait *w = luar_bridge_op_data(op);
    if (w->rc)
        return backend_fail(L, w->rc);
    lua_pushboolean(L, w->applied);
    if (w->value == NULL)
        return 1;
    lua_pushlstring(L, w->value, w->len);
    return 2;
}

/* kv(mode, key[, value[, ttl]]) ⏸ → applied[, value] | nil, err. */
static int core_kv(lua_State *L)
{
    static const char *const modes[] = {"get", "put", "add", "delete", "take", NULL};
    luar_kv_mode_t mode = (luar_kv_mode_t)luaL_checkoption(L, 1, NULL, modes);
    const char *key = luaL_checkstring(L, 2);
    size_t len = 0;
    const char *value = luaL_optlstring(L, 3, NULL, &len);
    double ttl = luaL_optnumber(L, 4, 0);
    luar_queue_t *q = luar_jobs_queue();
    if (q == NULL)
        return backend_fail(L, LUAR_EINVAL);
    luar_bridge_op_t *op = luar_bridge_op_new(L, "luar.oauth", sizeof(struct kv_wait));
    luar_bridge_op_set_cleanup(op, kv_cleanup);
    int rc = luar_queue_kv(q, mode, key, value, len, ttl, on_kv, op);
    if (rc != 0) {
        struct kv_wait *w = luar_bridge_op_data(op);
        w->fired = 1;
        w->rc = rc;
        luar_bridge_complete(op);
    }
    return luar_bridge_yield(L, op, push_kv);
}

static int no_key(lua_State *L)
{
    return luar_lua_fail(L, "oauth",
                         "oauth: tokens are stored encrypted under the secrets key, and none is "
                         "configured (set LUAR_SECRETS_KEY; luar secrets gen-key makes one)");
}

/* seal(plain, aad) → blob | nil, err */
static int core_seal(lua_State *L)
{
    size_t len;
    const char *plain = luaL_checklstring(L, 1, &len);
    const char *aad = luaL_checkstring(L, 2);
    luar_buf_t out;
    luar_buf_init(&out, 0);
    int rc = luar_oauth_seal(plain, len, aad, &out);
    if (rc == LUAR_ECONFIG) {
        luar_buf_free(&out);
        return no_key(L);
    }
    if (rc != 0) {
        luar_buf_free(&out);
        return luar_lua_fail(L, "oauth", "oauth: cannot encrypt the token record (%s)",
                             luar_strerror(rc));
    }
    lua_pushlstring(L, out.data, out.len);
    luar_buf_free(&out);
    return 1;
}

/* open(blob, aad) → plain | nil, err */
static int core_open(lua_State *L)
{
    size_t len;
    const char *blob = luaL_checklstring(L, 1, &len);
    const char *aad = luaL_checkstring(L, 2);
    luar_buf_t out, why;
    luar_buf_init(&out, 0);
    luar_buf_init(&why, 0);
    int rc = luar_oauth_open(blob, len, aad, &out, &why);
    int n;
    if (rc == LUAR_ECONFIG) {
        n = no_key(L);
    } else if (rc != 0) {
        n = luar_lua_fail(L, "oauth", "oauth: the stored token record cannot be decrypted: %s",
                          why.data ? why.data : luar_strerror(rc));
    } else {
        lua_pushlstring(L, out.data ? out.data : "", out.len);
        n = 1;
    }
    if (out.data)
        memset(out.data, 0, out.len);
    luar_buf_free(&out);
    luar_buf_free(&why);
    return n;
}

/* verify_jws(jwt, jwks) → claims_json | nil, why, stale */
static int core_verify_jws(lua_State *L)
{
    size_t len, jlen;
    const char *jwt = luaL_checklstring(L, 1, &len);
    const char *jwks = luaL_checklstring(L, 2, &jlen);
    luar_buf_t payload, why;
    luar_buf_init(&payload, 0);
    luar_buf_init(&why, 0);
    int rc = luar_oauth_verify_jws(jwt, len, jwks, jlen, &payload, &why);
    int n;
    if (rc == 0) {
        lua_pushlstring(L, payload.data ? payload.data : "", payload.len);
        n = 1;
    } else {
        lua_pushnil(L);
        lua_pushstring(L, why.data ? why.data : luar_strerror(rc));
        lua_pushboolean(L, rc == LUAR_ENOTFOUND);
        n = 3;
    }
    luar_buf_free(&payload);
    luar_buf_free(&why);
    return n;
}

static int core_public_url(lua_State *L)
{
    const char *u = luar_oauth_public_url();
    if (u == NULL)
        lua_pushnil(L);
    else
        lua_pushstring(L, u);
    return 1;
}

int luaopen_luar_oauth(lua_State *L)
{
    static const luaL_Reg core[] = {
        {"kv", core_kv},
        {"seal", core_seal},
        {"open", core_open},
        {"verify_jws", core_verify_jws},
        {"public_url", core_public_url},
        {NULL, NULL},
    };
    if (luaL_loadbuffer(L, luar_oauth_lua, sizeof luar_oauth_lua - 1, "=luar.oauth") != LUA_OK)
        return lua_error(L);
    luaL_newlib(L, core);
    lua_call(L, 1, 1);
    return 1;
}
