/*
 * luar.crypto over host/crypto: HMAC, digests, random bytes, constant-time comparison,
 * hex / base64 / base64url codecs, UUIDs and AES-256-GCM. Bad arguments raise; decoders
 * and decrypt return nil, err on input that does not decode or authenticate.
 */
#include "common/error.h"
#include "crypto/crypto.h"
#include "lua/error.h"
#include "lua/modules.h"
#include "lua/util.h"

#include <lauxlib.h>
#include <string.h>

#define RANDOM_MAX (1024 * 1024)

/* Pushes `len` bytes encoded as `enc` (none: raw, "hex", "base64"). [-0, +1] */
static int push_encoded(lua_State *L, const uint8_t *data, size_t len, int enc_idx)
{
    static const char *const encs[] = {"raw", "hex", "base64", "base64url", NULL};
    int enc = luaL_checkoption(L, enc_idx, "raw", encs);
    if (enc == 0) {
        lua_pushlstring(L, (const char *)data, len);
        return 1;
    }
    luar_buf_t *b = luar_lua_newbuf(L, 0);
    int rc = enc == 1   ? luar_hex_encode(b, data, len)
             : enc == 2 ? luar_base64_encode(b, data, len)
                        : luar_base64url_encode(b, data, len);
    if (rc != 0)
        return luaL_error(L, "encoding failed: %s", luar_strerror(rc));
    lua_pushlstring(L, b->data != NULL ? b->data : "", b->len);
    luar_buf_free(b);
    return 1;
}

/* crypto.hmac(alg, key, data[, enc]) → digest (raw bytes unless enc). [-4, +1] */
static int crypto_hmac(lua_State *L)
{
    const char *alg = luaL_checkstring(L, 1);
    size_t klen, dlen;
    const char *key = luaL_checklstring(L, 2, &klen);
    const char *data = luaL_checklstring(L, 3, &dlen);
    uint8_t md[LUAR_CRYPTO_MAX_MD];
    size_t mdlen = 0;
    if (luar_crypto_hmac(alg, key, klen, data, dlen, md, &mdlen) != 0)
        return luaL_argerror(L, 1, lua_pushfstring(L, "unknown algorithm '%s'", alg));
    return push_encoded(L, md, mdlen, 4);
}

/* crypto.digest(alg, data[, enc]) → digest. [-3, +1] */
static int crypto_digest(lua_State *L)
{
    const char *alg = luaL_checkstring(L, 1);
    size_t dlen;
    const char *data = luaL_checklstring(L, 2, &dlen);
    uint8_t md[LUAR_CRYPTO_MAX_MD];
    size_t mdlen = 0;
    if (luar_crypto_digest(alg, data, dlen, md, &mdlen) != 0)
        return luaL_argerror(L, 1, lua_pushfstring(L, "unknown algorithm '%s'", alg));
    return push_encoded(L, md, mdlen, 3);
}

/* crypto.random(n) → n random bytes (n ≤ 1 MiB). [-1, +1] */
static int crypto_random(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 0 && n <= RANDOM_MAX, 1, "expected 0 to 1048576 bytes");
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, (size_t)n);
    if (luar_crypto_random(p, (size_t)n) != 0)
        return luaL_error(L, "crypto.random: no random bytes available");
    luaL_pushresultsize(&b, (size_t)n);
    return 1;
}

/* crypto.equals(a, b) → boolean, in time independent of where they differ. [-2, +1] */
static int crypto_equals(lua_State *L)
{
    size_t alen, blen;
    const char *a = luaL_checklstring(L, 1, &alen);
    const char *b = luaL_checklstring(L, 2, &blen);
    lua_pushboolean(L, luar_crypto_equals(a, alen, b, blen));
    return 1;
}

typedef int (*codec_fn)(luar_buf_t *out, const char *s, size_t len);

static int run_codec(lua_State *L, codec_fn fn, const char *what)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    luar_buf_t *b = luar_lua_newbuf(L, 0);
    int rc = fn(b, s, len);
    if (rc == LUAR_EPARSE)
        return luar_lua_fail(L, "invalid", "%s: malformed input", what);
    if (rc != 0)
        return luaL_error(L, "%s: %s", what, luar_strerror(rc));
    lua_pushlstring(L, b->data != NULL ? b->data : "", b->len);
    luar_buf_free(b);
    return 1;
}

static int hex_enc(luar_buf_t *out, const char *s, size_t len)
{
    return luar_hex_encode(out, s, len);
}

static int b64_enc(luar_buf_t *out, const char *s, size_t len)
{
    return luar_base64_encode(out, s, len);
}

static int b64url_enc(luar_buf_t *out, const char *s, size_t len)
{
    return luar_base64url_encode(out, s, len);
}

/* crypto.hex(s) / base64(s) / base64url(s) → encoded string. [-1, +1] */
static int crypto_hex(lua_State *L)
{
    return run_codec(L, hex_enc, "crypto.hex");
}

static int crypto_base64(lua_State *L)
{
    return run_codec(L, b64_enc, "crypto.base64");
}

static int crypto_base64url(lua_State *L)
{
    return run_codec(L, b64url_enc, "crypto.base64url");
}

/* crypto.unhex(s) / unbase64(s) / unbase64url(s) → bytes | nil, err. [-1, +1|2] */
static int crypto_unhex(lua_State *L)
{
    return run_codec(L, luar_hex_decode, "crypto.unhex");
}

static int crypto_unbase64(lua_State *L)
{
    return run_codec(L, luar_base64_decode, "crypto.unbase64");
}

static int crypto_unbase64url(lua_State *L)
{
    return run_codec(L, luar_base64url_decode, "crypto.unbase64url");
}

/* The 32-byte key at `idx`; a key of another length is a programming error and raises. */
static const uint8_t *check_key(lua_State *L, int idx)
{
    size_t len;
    const char *key = luaL_checklstring(L, idx, &len);
    if (len != LUAR_AEAD_KEY_LEN)
        luaL_argerror(L, idx, lua_pushfstring(L, "the key must be 32 raw bytes, got %d (use "
                                                 "crypto.random(32), or crypto.unhex on 64 hex "
                                                 "digits)", (int)len));
    return (const uint8_t *)key;
}

/* crypto.encrypt(key, plaintext[, aad]) → blob (AES-256-GCM, see crypto.h). [-3, +1] */
static int crypto_encrypt(lua_State *L)
{
    const uint8_t *key = check_key(L, 1);
    size_t len, aad_len = 0;
    const char *plaintext = luaL_checklstring(L, 2, &len);
    const char *aad = luaL_optlstring(L, 3, NULL, &aad_len);
    luar_buf_t *b = luar_lua_newbuf(L, 0);
    int rc = luar_aead_encrypt(key, plaintext, len, aad, aad_len, b);
    if (rc == LUAR_ETOOBIG)
        return luaL_argerror(L, 2, "plaintext longer than 4 GiB - 1");
    if (rc != 0)
        return luaL_error(L, "crypto.encrypt: %s", luar_strerror(rc));
    lua_pushlstring(L, b->data, b->len);
    luar_buf_free(b);
    return 1;
}

/* crypto.decrypt(key, blob[, aad]) → plaintext | nil, err{kind="invalid"}. [-3, +1|2] */
static int crypto_decrypt(lua_State *L)
{
    const uint8_t *key = check_key(L, 1);
    size_t len, aad_len = 0;
    const char *blob = luaL_checklstring(L, 2, &len);
    const char *aad = luaL_optlstring(L, 3, NULL, &aad_len);
    luar_buf_t *b = luar_lua_newbuf(L, 0);
    luar_aead_failure_t why = LUAR_AEAD_OK;
    int rc = luar_aead_decrypt(key, blob, len, aad, aad_len, b, &why);
    if (rc == LUAR_EPARSE) {
        luar_aead_explain(why, blob, len, b);
        return luar_lua_fail(L, "invalid", "crypto.decrypt: %s", b->data);
    }
    if (rc != 0)
        return luaL_error(L, "crypto.decrypt: %s", luar_strerror(rc));
    lua_pushlstring(L, b->data != NULL ? b->data : "", b->len);
    luar_buf_free(b);
    return 1;
}

/* crypto.uuid() → a random (v4) UUID, lower-case. [-0, +1] */
static int crypto_uuid(lua_State *L)
{
    char out[37];
    luar_crypto_uuid(out);
    lua_pushstring(L, out);
    return 1;
}

int luaopen_luar_crypto(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"hmac", crypto_hmac},
        {"digest", crypto_digest},
        {"random", crypto_random},
        {"equals", crypto_equals},
        {"hex", crypto_hex},
        {"unhex", crypto_unhex},
        {"base64", crypto_base64},
        {"unbase64", crypto_unbase64},
        {"base64url", crypto_base64url},
        {"unbase64url", crypto_unbase64url},
        {"uuid", crypto_uuid},
        {"encrypt", crypto_encrypt},
        {"decrypt", crypto_decrypt},
        {NULL, NULL},
    };
    luaL_newlib(L, funcs);
    return 1;
}
