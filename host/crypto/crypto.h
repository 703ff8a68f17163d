/*
 * Cryptographic helpers over OpenSSL 3: HMAC, digests, random bytes, constant-time
 * comparison, hex/base64/base64url codecs and UUIDs. Thread-safe.
 */
#ifndef LUAR_CRYPTO_H
#define LUAR_CRYPTO_H

#include "common/buf.h"

#include <stddef.h>
#include <stdint.h>

#define LUAR_CRYPTO_MAX_MD 64 /* largest digest: sha512 */

/*
 * Computes HMAC(alg, key, data) into `out` (at least LUAR_CRYPTO_MAX_MD bytes); stores the
 * length in `*out_len`. `alg`: "sha1", "sha256", "sha384", "sha512", "md5", "sha3-256"...
 * (any name OpenSSL's EVP_get_digestbyname knows). Returns 0 or LUAR_EINVAL (unknown alg).
 */
int luar_crypto_hmac(const char *alg, const void *key, size_t key_len, const void *data,
                     size_t data_len, uint8_t *out, size_t *out_len);

/* One piece of a message given in several parts. */
typedef struct luar_crypto_part {
    const void *data;
    size_t len;
} luar_crypto_part_t;

/*
 * Computes HMAC(alg, key, part[0] || part[1] || ...) like luar_crypto_hmac, without
 * joining the parts first (webhook schemes sign "id.timestamp.body" with the body where it
 * lies). Returns 0 or LUAR_EINVAL (unknown alg).
 */
int luar_crypto_hmac_parts(const char *alg, const void *key, size_t key_len,
                           const luar_crypto_part_t *parts, size_t nparts, uint8_t *out,
                           size_t *out_len);

/* Computes digest(alg, data) like luar_crypto_hmac. Returns 0 or LUAR_EINVAL. */
int luar_crypto_digest(const char *alg, const void *data, size_t len, uint8_t *out,
                       size_t *out_len);

/* Fills `buf` with `n` cryptographically secure random bytes. Returns 0 or LUAR_EIO. */
int luar_crypto_random(void *buf, size_t n);

/*
 * Compares two byte strings in time that depends only on their lengths, never on where
 * they differ. Returns 1 when equal, 0 otherwise.
 */
int luar_crypto_equals(const void *a, size_t a_len, const void *b, size_t b_len);

/* Appends lower-case hex of `data` to `out`. Returns 0 or a luar_buf error. */
int luar_hex_encode(luar_buf_t *out, const void *data, size_t len);

/* Decodes hex (either case) into `out`. Returns 0, LUAR_EPARSE (odd length or non-hex). */
int luar_hex_decode(luar_buf_t *out, const char *s, size_t len);

/*
 * Base64 (RFC 4648 §4, padded) and base64url (§5, no padding on output; padding optional
 * on input). Decoders reject characters outside the alphabet with LUAR_EPARSE.
 */
int luar_base64_encode(luar_buf_t *out, const void *data, size_t len);
int luar_base64_decode(luar_buf_t *out, const char *s, size_t len);
int luar_base64url_encode(luar_buf_t *out, const void *data, size_t len);
int luar_base64url_decode(luar_buf_t *out, const char *s, size_t len);

/* Writes a random (version 4) UUID, lower-case, NUL-terminated, into `out`. */
void luar_crypto_uuid(char out[37]);

#endif
