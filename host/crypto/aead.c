/*
 * AES-256-GCM in a versioned blob (see crypto.h for the layout). OpenSSL does the cipher;
 * this file adds what a bare GCM blob lacks for the people who have to debug it: a key id
 * and an AAD check in the header, so "wrong key", "wrong associated data", "truncated" and
 * "modified" are told apart instead of all reading "authentication failed".
 *
 * Why the AES key is also used as an HMAC key for the key id and the AAD check: the blob
 * stays readable by any AES-GCM implementation given the raw key (no private KDF), and
 * HMAC-SHA256 under a distinct label is an independent PRF whose truncated output reveals
 * nothing usable about the key. (A classic key check value, AES(key, 0), would be fatal
 * here: it is GCM's hash subkey H.)
 */
#include "common/error.h"
#include "crypto/crypto.h"

#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <string.h>

#define OFF_VERSION 0
#define OFF_KEY_ID 1
#define OFF_AAD_CHECK 5
#define OFF_LENGTH 9
#define OFF_NONCE 13
#define NONCE_LEN 12
#define TAG_LEN 16

static const char key_id_label[] = "luar aead v1 key id";
static const char aad_label[] = "luar aead v1 aad"; /* followed by a NUL, then the AAD */

static EVP_CIPHER *g_gcm;
static EVP_MAC *g_hmac;

static void fetch_algorithms(void)
{
    g_gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    g_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
}

/*
 * OpenSSL 3 looks an algorithm up in its providers on every implicit use (EVP_aes_256_gcm(),
 * HMAC()), about a microsecond each time; these are fetched once per process.
 */
static void fetch_once(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, fetch_algorithms);
}

/* The first LUAR_AEAD_ID_LEN bytes of HMAC-SHA256(key, label [NUL aad]). */
static int fingerprint(const uint8_t key[LUAR_AEAD_KEY_LEN], const char *label, int with_aad,
                       const void *aad, size_t aad_len, uint8_t out[LUAR_AEAD_ID_LEN])
{
    uint8_t md[LUAR_CRYPTO_MAX_MD];
    size_t n = 0;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    fetch_once();
    EVP_MAC_CTX *ctx = g_hmac ? EVP_MAC_CTX_new(g_hmac) : NULL;
    /* With aad, the label's NUL terminator separates it from the aad. */
    int ok = ctx != NULL && EVP_MAC_init(ctx, key, LUAR_AEAD_KEY_LEN, params) &&
             EVP_MAC_update(ctx, (const unsigned char *)label, strlen(label) + (with_aad != 0)) &&
             (!with_aad || aad_len == 0 || EVP_MAC_update(ctx, aad, aad_len)) &&
             EVP_MAC_final(ctx, md, &n, sizeof md) && n >= LUAR_AEAD_ID_LEN;
    EVP_MAC_CTX_free(ctx);
    if (ok)
        memcpy(out, md, LUAR_AEAD_ID_LEN);
    OPENSSL_cleanse(md, sizeof md);
    return ok ? 0 : LUAR_EIO;
}

void luar_aead_key_id(const uint8_t key[LUAR_AEAD_KEY_LEN], char out[2 * LUAR_AEAD_ID_LEN + 1])
{
    static const char digits[] = "0123456789abcdef";
    uint8_t id[LUAR_AEAD_ID_LEN] = {0};
    (void)fingerprint(key, key_id_label, 0, NULL, 0, id);
    for (int i = 0; i < LUAR_AEAD_ID_LEN; i++) {
        out[2 * i] = digits[id[i] >> 4];
        out[2 * i + 1] = digits[id[i] & 15];
    }
    out[2 * LUAR_AEAD_ID_LEN] = '\0';
}

int luar_aead_blob_key_id(const void *blob, size_t len, char out[2 * LUAR_AEAD_ID_LEN + 1])
{
    static const char digits[] = "0123456789abcdef";
    const uint8_t *b = blob;
    if (len < OFF_KEY_ID + LUAR_AEAD_ID_LEN || b[OFF_VERSION] != LUAR_AEAD_VERSION)
        return LUAR_EPARSE;
    for (int i = 0; i < LUAR_AEAD_ID_LEN; i++) {
        out[2 * i] = digits[b[OFF_KEY_ID + i] >> 4];
        out[2 * i + 1] = digits[b[OFF_KEY_ID + i] & 15];
    }
    out[2 * LUAR_AEAD_ID_LEN] = '\0';
    return 0;
}

/* The plaintext length a version 1 header (at least 13 bytes) declares. */
static size_t declared_length(const uint8_t *b)
{
    return (size_t)b[OFF_LENGTH] << 24 | (size_t)b[OFF_LENGTH + 1] << 16 |
           (size_t)b[OFF_LENGTH + 2] << 8 | b[OFF_LENGTH + 3];
}

/* Feeds `len` bytes to EVP_{En,De}cryptUpdate in int-sized pieces. */
static int cipher_update(EVP_CIPHER_CTX *ctx, int enc, uint8_t *out, const uint8_t *in, size_t len)
{
    while (len > 0) {
        int chunk = len > (size_t)INT_MAX / 2 ? INT_MAX / 2 : (int)len;
        int n = 0;
        int ok = enc ? EVP_EncryptUpdate(ctx, out, &n, in, chunk)
                     : EVP_DecryptUpdate(ctx, out, &n, in, chunk);
        if (!ok)
            return LUAR_EIO;
        if (out)
            out += n;
        in += chunk;
        len -= (size_t)chunk;
    }
    return 0;
}

/* AES-256-GCM as fetched once (or the implicit one should the fetch have failed). */
static const EVP_CIPHER *gcm(void)
{
    fetch_once();
    return g_gcm ? g_gcm : EVP_aes_256_gcm();
}

/* Starts AES-256-GCM with `key` and `nonce` and feeds header || aad as associated data. */
static EVP_CIPHER_CTX *start(int enc, const uint8_t key[LUAR_AEAD_KEY_LEN], const uint8_t *header,
                             const void *aad, size_t aad_len)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL)
        return NULL;
    const uint8_t *nonce = header + OFF_NONCE;
    /* The default GCM nonce length is the 12 bytes used here. */
    int ok = enc ? EVP_EncryptInit_ex(ctx, gcm(), NULL, key, nonce)
                 : EVP_DecryptInit_ex(ctx, gcm(), NULL, key, nonce);
    ok = ok && cipher_update(ctx, enc, NULL, header, LUAR_AEAD_HEADER_LEN) == 0;
    ok = ok && (aad_len == 0 || cipher_update(ctx, enc, NULL, aad, aad_len) == 0);
    if (!ok) {
        EVP_CIPHER_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

int luar_aead_encrypt(const uint8_t key[LUAR_AEAD_KEY_LEN], const void *plaintext, size_t len,
                      const void *aad, size_t aad_len, luar_buf_t *out)
{
    uint8_t header[LUAR_AEAD_HEADER_LEN];
    size_t orig = out->len;
    EVP_CIPHER_CTX *ctx = NULL;
    int rc, n = 0;
    if (len > UINT32_MAX)
        return LUAR_ETOOBIG;
    header[OFF_VERSION] = LUAR_AEAD_VERSION;
    header[OFF_LENGTH] = (uint8_t)(len >> 24);
    header[OFF_LENGTH + 1] = (uint8_t)(len >> 16);
    header[OFF_LENGTH + 2] = (uint8_t)(len >> 8);
    header[OFF_LENGTH + 3] = (uint8_t)len;
    rc = fingerprint(key, key_id_label, 0, NULL, 0, header + OFF_KEY_ID);
    if (rc == 0)
        rc = fingerprint(key, aad_label, 1, aad, aad_len, header + OFF_AAD_CHECK);
    if (rc == 0)
        rc = luar_crypto_random(header + OFF_NONCE, NONCE_LEN);
    if (rc != 0)
        return LUAR_EIO;
    /*
     * One append for the plaintext, encrypted in place before anything else is appended:
     * `out` may move while it grows, but never while it holds plaintext, so no copy of the
     * plaintext is left behind in freed memory.
     */
    rc = luar_buf_append(out, header, sizeof header);
    if (rc == 0)
        rc = luar_buf_append(out, len ? plaintext : "", len);
    if (rc != 0)
        goto fail;
    uint8_t *body = (uint8_t *)out->data + orig + LUAR_AEAD_HEADER_LEN;
    uint8_t tag[TAG_LEN];
    rc = LUAR_EIO;
    ctx = start(1, key, header, aad, aad_len);
    if (ctx == NULL || cipher_update(ctx, 1, body, body, len) != 0 ||
        !EVP_EncryptFinal_ex(ctx, body + len, &n) ||
        !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag)) {
        OPENSSL_cleanse(body, len);
        goto fail;
    }
    rc = luar_buf_append(out, tag, TAG_LEN);
    if (rc != 0)
        goto fail;
    EVP_CIPHER_CTX_free(ctx);
    return 0;
fail:
    EVP_CIPHER_CTX_free(ctx);
    if (out->data) {
        out->len = orig;
        out->data[orig] = '\0';
    }
    return rc;
}

int luar_aead_decrypt(const uint8_t key[LUAR_AEAD_KEY_LEN], const void *blob, size_t len,
                      const void *aad, size_t aad_len, luar_buf_t *out, luar_aead_failure_t *why)
{
    const uint8_t *b = blob;
    uint8_t check[LUAR_AEAD_ID_LEN];
    luar_aead_failure_t failure = LUAR_AEAD_OK;
    size_t orig = out->len;
    EVP_CIPHER_CTX *ctx = NULL;
    int rc = LUAR_EPARSE, n = 0;

    if (len == 0 || (b[OFF_VERSION] == LUAR_AEAD_VERSION && len < LUAR_AEAD_OVERHEAD)) {
        failure = LUAR_AEAD_TRUNCATED;
        goto refuse;
    }
    if (b[OFF_VERSION] != LUAR_AEAD_VERSION) {
        failure = LUAR_AEAD_BAD_VERSION;
        goto refuse;
    }
    size_t plain_len = declared_length(b);
    if (len - LUAR_AEAD_OVERHEAD != plain_len) {
        failure = len - LUAR_AEAD_OVERHEAD < plain_len ? LUAR_AEAD_TRUNCATED : LUAR_AEAD_MODIFIED;
        goto refuse;
    }
    if (fingerprint(key, key_id_label, 0, NULL, 0, check) != 0)
        return LUAR_EIO;
    if (CRYPTO_memcmp(check, b + OFF_KEY_ID, LUAR_AEAD_ID_LEN) != 0) {
        failure = LUAR_AEAD_WRONG_KEY;
        goto refuse;
    }
    if (fingerprint(key, aad_label, 1, aad, aad_len, check) != 0)
        return LUAR_EIO;
    if (CRYPTO_memcmp(check, b + OFF_AAD_CHECK, LUAR_AEAD_ID_LEN) != 0) {
        failure = LUAR_AEAD_WRONG_AAD;
        goto refuse;
    }
    /* One append sized for the whole plaintext, decrypted in place: it never moves. */
    rc = luar_buf_append(out, b + LUAR_AEAD_HEADER_LEN, plain_len);
    if (rc != 0)
        return rc;
    uint8_t *plain = (uint8_t *)out->data + orig;
    uint8_t tag[TAG_LEN];
    memcpy(tag, b + LUAR_AEAD_HEADER_LEN + plain_len, TAG_LEN);
    rc = LUAR_EIO;
    ctx = start(0, key, b, aad, aad_len);
    if (ctx == NULL || cipher_update(ctx, 0, plain, plain, plain_len) != 0 ||
        !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag))
        goto fail;
    if (EVP_DecryptFinal_ex(ctx, plain + plain_len, &n) != 1) {
        /* The tag does not match: nothing of the unauthenticated plaintext may escape. */
        failure = LUAR_AEAD_MODIFIED;
        rc = LUAR_EPARSE;
        goto fail;
    }
    EVP_CIPHER_CTX_free(ctx);
    if (why)
        *why = LUAR_AEAD_OK;
    return 0;
fail:
    EVP_CIPHER_CTX_free(ctx);
    OPENSSL_cleanse(out->data + orig, out->len - orig);
    out->len = orig;
    out->data[orig] = '\0';
refuse:
    if (why)
        *why = failure;
    return rc;
}

const char *luar_aead_strerror(luar_aead_failure_t why)
{
    switch (why) {
    case LUAR_AEAD_OK:
        return "ok";
    case LUAR_AEAD_TRUNCATED:
        return "truncated: the blob is shorter than its header says";
    case LUAR_AEAD_BAD_VERSION:
        return "unknown blob version (this build reads version 1)";
    case LUAR_AEAD_WRONG_KEY:
        return "wrong key: the blob was encrypted under another key";
    case LUAR_AEAD_WRONG_AAD:
        return "the associated data (aad) does not match the one it was encrypted with";
    case LUAR_AEAD_MODIFIED:
        return "the blob was modified: authentication failed";
    }
    return "unknown failure";
}

int luar_aead_explain(luar_aead_failure_t why, const void *blob, size_t len, luar_buf_t *out)
{
    const uint8_t *b = blob;
    char id[2 * LUAR_AEAD_ID_LEN + 1];
    switch (why) {
    case LUAR_AEAD_TRUNCATED:
        if (len < LUAR_AEAD_OVERHEAD)
            return luar_buf_appendf(out, "truncated: %zu bytes, a version %d blob has at least %d",
                                    len, LUAR_AEAD_VERSION, LUAR_AEAD_OVERHEAD);
        return luar_buf_appendf(out, "truncated: %zu bytes, its header says %zu", len,
                                LUAR_AEAD_OVERHEAD + declared_length(b));
    case LUAR_AEAD_BAD_VERSION:
        return luar_buf_appendf(out, "unknown blob version %u (this build reads version %d)",
                                len ? b[0] : 0u, LUAR_AEAD_VERSION);
    case LUAR_AEAD_WRONG_KEY:
        if (luar_aead_blob_key_id(blob, len, id) == 0)
            return luar_buf_appendf(out, "wrong key: the blob was encrypted under key id %s", id);
        break;
    default:
        break;
    }
    return luar_buf_puts(out, luar_aead_strerror(why));
}
