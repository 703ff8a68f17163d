/*
 * luar.oauth's C half (docs/oauth.md): the process's OAuth settings (public_url and the key
 * tokens are encrypted under), sealing token records with AES-256-GCM, and OpenID Connect
 * ID-token signatures checked by libcjose against a provider's JWKS. The flows themselves
 * (routes, token requests, refresh, locks) are Lua, in oauth.lua, on luar.http, the
 * backend's key-value records (queue.h) and luar.events. Loop thread only.
 */
#ifndef LUAR_OAUTH_H
#define LUAR_OAUTH_H

#include "common/buf.h"
#include "crypto/crypto.h"

#include <stddef.h>
#include <stdint.h>

/*
 * Records the configuration's public_url (may be NULL) and the secrets key (NULL or
 * unset: no key, and tokens cannot be stored). Copies both; called once per process after
 * the configuration is read, before scripts load.
 */
void luar_oauth_configure(const char *public_url, const uint8_t *key, int key_set);

/* public_url without a trailing slash, or NULL when none is configured. */
const char *luar_oauth_public_url(void);

/* 1 when a key is configured. */
int luar_oauth_has_key(void);

/*
 * Encrypts `len` bytes under the secrets key bound to `aad` (blob layout: crypto.h),
 * appending to `out`. LUAR_ECONFIG when no key is configured.
 */
int luar_oauth_seal(const void *plain, size_t len, const char *aad, luar_buf_t *out);

/*
 * Decrypts a blob made by luar_oauth_seal with the same aad. Returns 0, LUAR_ECONFIG (no
 * key), or LUAR_EPARSE with a reason appended to `why`.
 */
int luar_oauth_open(const void *blob, size_t len, const char *aad, luar_buf_t *out,
                    luar_buf_t *why);

/*
 * Verifies the compact JWS `jwt` against the JSON Web Key Set `jwks` ({"keys": [...]}):
 * the header's alg must be an asymmetric one (RS, PS, ES 256/384/512, EdDSA), the key
 * is the one whose kid matches (every key of a fitting type when the token names none).
 * On success appends the payload (the claims, JSON text) to `payload` and returns 0.
 * Else LUAR_ENOTFOUND when no key of the set has the token's kid (the set may be stale:
 * fetch it again), LUAR_EPARSE for anything else; the reason is appended to `why`.
 */
int luar_oauth_verify_jws(const char *jwt, size_t len, const char *jwks, size_t jwks_len,
                          luar_buf_t *payload, luar_buf_t *why);

#endif
