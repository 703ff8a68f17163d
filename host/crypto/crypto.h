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

/*
 * AES-256-GCM authenticated encryption (aead.c) in a versioned blob. Version 1 layout:
 *
 *   offset  size  field
 *   0       1     version, 0x01
 *   1       4     key id: HMAC-SHA256(key, "luar aead v1 key id")[0..4]
 *   5       4     aad check: HMAC-SHA256(key, "luar aead v1 aad" NUL aad)[0..4]
 *   9       4     plaintext length n, big-endian
 *   13      12    nonce, random for every blob
 *   25      n     ciphertext
 *   25+n    16    GCM tag
 *
 * The GCM associated data is the 25-byte header followed by the caller's aad, so every
 * header byte is authenticated too. The key id and the aad check exist only to name the
 * failure (wrong key, wrong aad) before GCM's all-or-nothing tag check; any AES-256-GCM
 * implementation decrypts a blob with the raw key, the nonce and that associated data.
 * Random 96-bit nonces: keep it under 2^32 blobs per key (NIST SP 800-38D §8.3).
 */
#define LUAR_AEAD_KEY_LEN 32
#define LUAR_AEAD_VERSION 1
#define LUAR_AEAD_ID_LEN 4
#define LUAR_AEAD_HEADER_LEN 25
#define LUAR_AEAD_OVERHEAD 41 /* header + tag */

/* Why a blob was refused; each one has its own message (luar_aead_strerror). */
typedef enum luar_aead_failure {
    LUAR_AEAD_OK = 0,
    LUAR_AEAD_TRUNCATED,   /* shorter than 41 bytes or than its header's length */
    LUAR_AEAD_BAD_VERSION, /* first byte is not a version this build reads */
    LUAR_AEAD_WRONG_KEY,   /* the key id in the blob is not this key's */
    LUAR_AEAD_WRONG_AAD,   /* the aad check does not match this aad */
    LUAR_AEAD_MODIFIED,    /* the tag does not authenticate the bytes (or bytes were added) */
} luar_aead_failure_t;

/*
 * Appends the blob of `plaintext` (`len` bytes, up to 4 GiB - 1) under `key` with the
 * associated data `aad` (may be NULL when aad_len is 0) to `out`. Returns 0, LUAR_ETOOBIG
 * (plaintext too long, or out's cap), LUAR_ENOMEM or LUAR_EIO (no randomness / OpenSSL
 * failure); on failure `out` is left as it was. The caller keeps every input.
 */
int luar_aead_encrypt(const uint8_t key[LUAR_AEAD_KEY_LEN], const void *plaintext, size_t len,
                      const void *aad, size_t aad_len, luar_buf_t *out);

/*
 * Checks and decrypts `blob` under `key` and `aad`, appending the plaintext to `out` only
 * when the blob authenticates. Returns 0; LUAR_EPARSE when the blob is refused, with the
 * reason in `*why` (when `why` is not NULL); LUAR_ENOMEM / LUAR_ETOOBIG (out's cap) or
 * LUAR_EIO. On failure `out` is left as it was (unauthenticated bytes are wiped).
 */
int luar_aead_decrypt(const uint8_t key[LUAR_AEAD_KEY_LEN], const void *blob, size_t len,
                      const void *aad, size_t aad_len, luar_buf_t *out, luar_aead_failure_t *why);

/* A static one-line description of `why`. */
const char *luar_aead_strerror(luar_aead_failure_t why);

/*
 * Appends a description of `why` with the details the blob gives (its length, version or
 * key id) to `out`. Returns 0 or a luar_buf error.
 */
int luar_aead_explain(luar_aead_failure_t why, const void *blob, size_t len, luar_buf_t *out);

/* Writes the 8 hex digits of `key`'s key id (the id a blob made with it carries). */
void luar_aead_key_id(const uint8_t key[LUAR_AEAD_KEY_LEN], char out[2 * LUAR_AEAD_ID_LEN + 1]);

/* Writes the key id a version 1 `blob` carries. Returns 0, or LUAR_EPARSE for another blob. */
int luar_aead_blob_key_id(const void *blob, size_t len, char out[2 * LUAR_AEAD_ID_LEN + 1]);

#endif
