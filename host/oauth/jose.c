/*
 * OpenID Connect ID-token signatures (oauth.h luar_oauth_verify_jws), by libcjose: the
 * JWS is parsed and its signature checked by the library against a key of the provider's
 * JWKS, never by hand. What this file adds is the choice of key and the refusal of what an
 * ID token must not be: unsigned ("alg": "none") or MAC-signed (HS256 with a public key
 * used as the secret, the classic confusion attack). The claims (iss, aud, exp, nonce)
 * are checked by the caller in oauth.lua on the payload returned here.
 */
#include "oauth/oauth.h"

#include "common/error.h"

#include <cjose/cjose.h>
#include <jansson.h>
#include <string.h>

/* The algorithms accepted, with the key type each needs. */
static const struct {
    const char *alg;
    cjose_jwk_kty_t kty;
} algs[] = {
    {"RS256", CJOSE_JWK_KTY_RSA}, {"RS384", CJOSE_JWK_KTY_RSA}, {"RS512", CJOSE_JWK_KTY_RSA},
    {"PS256", CJOSE_JWK_KTY_RSA}, {"PS384", CJOSE_JWK_KTY_RSA}, {"PS512", CJOSE_JWK_KTY_RSA},
    {"ES256", CJOSE_JWK_KTY_EC},  {"ES384", CJOSE_JWK_KTY_EC},  {"ES512", CJOSE_JWK_KTY_EC},
};

/* Tries one key of the set; 1 verified, 0 not this key, -1 when the key does not apply. */
static int try_key(cjose_jws_t *jws, json_t *jwk_json, cjose_jwk_kty_t kty, const char *kid,
                   luar_buf_t *why)
{
    cjose_err err;
    json_t *use = json_object_get(jwk_json, "use");
    if (json_is_string(use) && strcmp(json_string_value(use), "sig") != 0)
        return -1;
    json_t *jkid = json_object_get(jwk_json, "kid");
    if (kid != NULL && (!json_is_string(jkid) || strcmp(json_string_value(jkid), kid) != 0))
        return -1;
    cjose_jwk_t *jwk = cjose_jwk_import_json((cjose_header_t *)jwk_json, &err);
    if (jwk == NULL) {
        if (kid != NULL)
            luar_buf_appendf(why, "the JWKS key %s cannot be read: %s; ", kid, err.message);
        return -1;
    }
    int rc = -1;
    if (cjose_jwk_get_kty(jwk, &err) == kty) {
        rc = cjose_jws_verify(jws, jwk, &err) ? 1 : 0;
        if (rc == 0 && kid != NULL)
            luar_buf_appendf(why, "signature does not verify with key %s (%s)", kid, err.message);
    }
    cjose_jwk_release(jwk);
    return rc;
}

int luar_oauth_verify_jws(const char *jwt, size_t len, const char *jwks, size_t jwks_len,
                          luar_buf_t *payload, luar_buf_t *why)
{
    cjose_err err;
    int rc = LUAR_EPARSE;
    json_t *set = NULL;
    cjose_jws_t *jws = cjose_jws_import(jwt, len, &err);
    if (jws == NULL) {
        luar_buf_appendf(why, "not a signed JWT (%s)", err.message);
        return LUAR_EPARSE;
    }
    cjose_header_t *hdr = cjose_jws_get_protected(jws);
    const char *alg = hdr ? cjose_header_get(hdr, CJOSE_HDR_ALG, &err) : NULL;
    const char *kid = hdr ? cjose_header_get(hdr, CJOSE_HDR_KID, &err) : NULL;
    size_t a = 0, nalgs = sizeof algs / sizeof algs[0];
    while (a < nalgs && (alg == NULL || strcmp(alg, algs[a].alg) != 0))
        a++;
    if (a == nalgs) {
        luar_buf_appendf(why, "alg %s is not accepted for ID tokens (RS*, PS* or ES* only)",
                         alg ? alg : "(none)");
        goto done;
    }
    json_error_t jerr;
    set = json_loadb(jwks, jwks_len, 0, &jerr);
    json_t *keys = set ? json_object_get(set, "keys") : NULL;
    if (!json_is_array(keys)) {
        luar_buf_puts(why, "the JWKS is not a JSON object with a \"keys\" array");
        goto done;
    }
    int found = 0;
    for (size_t i = 0; i < json_array_size(keys); i++) {
        int r = try_key(jws, json_array_get(keys, i), algs[a].kty, kid, why);
        if (r >= 0)
            found = 1;
        if (r == 1) {
            uint8_t *plain = NULL;
            size_t plain_len = 0;
            if (!cjose_jws_get_plaintext(jws, &plain, &plain_len, &err)) {
                luar_buf_appendf(why, "no payload (%s)", err.message);
                goto done;
            }
            rc = luar_buf_append(payload, plain, plain_len);
            goto done;
        }
    }
    if (!found) {
        rc = LUAR_ENOTFOUND;
        luar_buf_appendf(why, "no key in the JWKS %s%s%s", kid ? "has kid " : "fits alg ",
                         kid ? kid : alg, "");
    } else if (kid == NULL) {
        luar_buf_puts(why, "the signature does not verify with any key of the JWKS");
    }
done:
    json_decref(set);
    cjose_jws_release(jws);
    return rc;
}
