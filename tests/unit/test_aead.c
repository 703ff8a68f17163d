/* AES-256-GCM blobs (host/crypto/aead.c): round trips and every way a blob is refused. */
#include "common/buf.h"
#include "common/error.h"
#include "crypto/crypto.h"
#include "test.h"

#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint8_t key[32], other_key[32];

static void make_keys(void)
{
    for (int i = 0; i < 32; i++) {
        key[i] = (uint8_t)(i * 7 + 1);
        other_key[i] = (uint8_t)(i * 7 + 2);
    }
}

/* Encrypts `len` bytes into a fresh buffer the caller frees. */
static luar_buf_t seal(const uint8_t *k, const void *pt, size_t len, const char *aad)
{
    luar_buf_t b;
    luar_buf_init(&b, 0);
    int rc = luar_aead_encrypt(k, pt, len, aad, aad ? strlen(aad) : 0, &b);
    CHECK_EQ_INT(rc, 0);
    return b;
}

/* Decrypts; returns the failure (LUAR_AEAD_OK on success) and leaves plaintext in `out`. */
static luar_aead_failure_t open_blob(const uint8_t *k, const void *blob, size_t len,
                                     const char *aad, luar_buf_t *out)
{
    luar_aead_failure_t why = LUAR_AEAD_OK;
    int rc = luar_aead_decrypt(k, blob, len, aad, aad ? strlen(aad) : 0, out, &why);
    CHECK(rc == 0 ? why == LUAR_AEAD_OK : (rc == LUAR_EPARSE && why != LUAR_AEAD_OK));
    return why;
}

TEST(test_aead_round_trip_of_many_sizes)
{
    static const size_t sizes[] = {0, 1, 15, 16, 17, 1000, 16384, 16385, 100000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        uint8_t *pt = malloc(n + 1);
        for (size_t j = 0; j < n; j++)
            pt[j] = (uint8_t)(j * 31 + i);
        luar_buf_t blob = seal(key, pt, n, "ctx");
        CHECK_EQ_INT(blob.len, n + LUAR_AEAD_OVERHEAD);
        CHECK_EQ_INT((uint8_t)blob.data[0], LUAR_AEAD_VERSION);
        if (n >= 16)
            CHECK(memcmp(blob.data + LUAR_AEAD_HEADER_LEN, pt, 16) != 0); /* not in clear */
        luar_buf_t out;
        luar_buf_init(&out, 0);
        CHECK_EQ_INT(open_blob(key, blob.data, blob.len, "ctx", &out), LUAR_AEAD_OK);
        CHECK_EQ_INT(out.len, n);
        CHECK(n == 0 || memcmp(out.data, pt, n) == 0);
        luar_buf_free(&out);
        luar_buf_free(&blob);
        free(pt);
    }
}

TEST(test_aead_large_value_round_trips)
{
    size_t n = 5u << 20; /* several chunks, past any small-buffer path */
    uint8_t *pt = malloc(n);
    CHECK(luar_crypto_random(pt, n) == 0);
    luar_buf_t blob = seal(key, pt, n, NULL);
    luar_buf_t out;
    luar_buf_init(&out, 0);
    CHECK_EQ_INT(open_blob(key, blob.data, blob.len, NULL, &out), LUAR_AEAD_OK);
    CHECK(out.len == n && memcmp(out.data, pt, n) == 0);
    luar_buf_free(&out);
    luar_buf_free(&blob);
    free(pt);
}

TEST(test_aead_nonce_is_fresh_for_each_blob)
{
    luar_buf_t a = seal(key, "same", 4, NULL), b = seal(key, "same", 4, NULL);
    CHECK(a.len == b.len);
    CHECK(memcmp(a.data + 13, b.data + 13, 12) != 0); /* nonce */
    CHECK(memcmp(a.data + LUAR_AEAD_HEADER_LEN, b.data + LUAR_AEAD_HEADER_LEN, 4) != 0);
    luar_buf_free(&a);
    luar_buf_free(&b);
}

TEST(test_aead_empty_plaintext_is_authenticated_too)
{
    luar_buf_t blob = seal(key, "", 0, "aad");
    luar_buf_t out;
    luar_buf_init(&out, 0);
    CHECK_EQ_INT(open_blob(key, blob.data, blob.len, "aad", &out), LUAR_AEAD_OK);
    CHECK_EQ_INT(out.len, 0);
    blob.data[blob.len - 1] ^= 1;
    CHECK_EQ_INT(open_blob(key, blob.data, blob.len, "aad", &out), LUAR_AEAD_MODIFIED);
    luar_buf_free(&out);
    luar_buf_free(&blob);
}

TEST(test_aead_wrong_key_is_named_with_the_blob_key_id)
{
    luar_buf_t blob = seal(key, "secret value", 12, NULL);
    luar_buf_t out, msg;
    luar_buf_init(&out, 0);
    luar_buf_init(&msg, 0);
    CHECK_EQ_INT(open_blob(other_key, blob.data, blob.len, NULL, &out), LUAR_AEAD_WRONG_KEY);
    CHECK_EQ_INT(out.len, 0);
    char id[9], blob_id[9];
    luar_aead_key_id(key, id);
    CHECK_EQ_INT(luar_aead_blob_key_id(blob.data, blob.len, blob_id), 0);
    CHECK_EQ_STR(id, blob_id);
    luar_aead_explain(LUAR_AEAD_WRONG_KEY, blob.data, blob.len, &msg);
    CHECK(strstr(msg.data, "wrong key") != NULL && strstr(msg.data, id) != NULL);
    luar_buf_free(&msg);
    luar_buf_free(&out);
    luar_buf_free(&blob);
}

TEST(test_aead_wrong_aad_is_refused_as_such)
{
    luar_buf_t blob = seal(key, "payload", 7, "user:1");
    luar_buf_t out;
    luar_buf_init(&out, 0);
    CHECK_EQ_INT(open_blob(key, blob.data, blob.len, "user:2", &out), LUAR_AEAD_WRONG_AAD);
    CHECK_EQ_INT(open_blob(key, blob.data, blob.len, NULL, &out), LUAR_AEAD_WRONG_AAD);
    CHECK_EQ_INT(out.len, 0);
    /* No aad and an empty aad are the same thing. */
    luar_buf_t none = seal(key, "payload", 7, NULL);
    CHECK_EQ_INT(open_blob(key, none.data, none.len, "", &out), LUAR_AEAD_OK);
    luar_buf_free(&none);
    luar_buf_free(&out);
    luar_buf_free(&blob);
}

TEST(test_aead_every_truncation_is_refused)
{
    luar_buf_t blob = seal(key, "0123456789abcdef0123", 20, NULL);
    luar_buf_t out;
    luar_buf_init(&out, 0);
    for (size_t n = 0; n < blob.len; n++) {
        luar_aead_failure_t why = open_blob(key, blob.data, n, NULL, &out);
        CHECK_EQ_INT(why, LUAR_AEAD_TRUNCATED);
    }
    CHECK_EQ_INT(out.len, 0);
    luar_buf_t msg;
    luar_buf_init(&msg, 0);
    luar_aead_explain(LUAR_AEAD_TRUNCATED, blob.data, blob.len - 3, &msg);
    CHECK(strstr(msg.data, "truncated: 58 bytes, its header says 61") != NULL);
    luar_buf_free(&msg);
    luar_buf_free(&out);
    luar_buf_free(&blob);
}

TEST(test_aead_a_modified_byte_anywhere_is_refused)
{
    luar_buf_t blob = seal(key, "attack at dawn, bring snacks", 28, "aad");
    luar_buf_t out;
    luar_buf_init(&out, 0);
    luar_buf_append(&out, "kept", 4); /* decrypt appends: earlier content must survive */
    for (size_t i = 0; i < blob.len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            blob.data[i] ^= (char)(1 << bit);
            luar_aead_failure_t why = open_blob(key, blob.data, blob.len, "aad", &out);
            CHECK(why != LUAR_AEAD_OK);
            /* The nonce, ciphertext and tag are GCM's to check. */
            if (i >= 13)
                CHECK_EQ_INT(why, LUAR_AEAD_MODIFIED);
            blob.data[i] ^= (char)(1 << bit);
        }
    }
    CHECK_EQ_STR(out.data, "kept");
    CHECK_EQ_INT(open_blob(key, blob.data, blob.len, "aad", &out), LUAR_AEAD_OK);
    CHECK_EQ_STR(out.data, "keptattack at dawn, bring snacks");
    /* A byte added at the end is a modification, not a truncation. */
    luar_buf_putc(&blob, 'x');
    CHECK_EQ_INT(open_blob(key, blob.data, blob.len, "aad", &out), LUAR_AEAD_MODIFIED);
    luar_buf_free(&out);
    luar_buf_free(&blob);
}

TEST(test_aead_unknown_version_is_refused)
{
    luar_buf_t blob = seal(key, "v", 1, NULL);
    luar_buf_t out, msg;
    luar_buf_init(&out, 0);
    luar_buf_init(&msg, 0);
    blob.data[0] = 2;
    CHECK_EQ_INT(open_blob(key, blob.data, blob.len, NULL, &out), LUAR_AEAD_BAD_VERSION);
    luar_aead_explain(LUAR_AEAD_BAD_VERSION, blob.data, blob.len, &msg);
    CHECK_EQ_STR(msg.data, "unknown blob version 2 (this build reads version 1)");
    /* A short blob of another version is about its version, not its length. */
    CHECK_EQ_INT(open_blob(key, "\x07xyz", 4, NULL, &out), LUAR_AEAD_BAD_VERSION);
    luar_buf_free(&msg);
    luar_buf_free(&out);
    luar_buf_free(&blob);
}

/*
 * The documented layout, checked with OpenSSL's EVP API called directly: a reader that
 * knows only crypto.h's table (raw key, nonce at 13, associated data = header || aad)
 * decrypts a luar blob.
 */
TEST(test_aead_layout_is_plain_aes_256_gcm)
{
    const char *aad = "order:42";
    luar_buf_t blob = seal(key, "interoperable", 13, aad);
    const uint8_t *b = (const uint8_t *)blob.data;
    uint8_t pt[64];
    int n = 0, m = 0;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    CHECK(EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, b + 13) == 1);
    CHECK(EVP_DecryptUpdate(ctx, NULL, &n, b, 25) == 1);
    CHECK(EVP_DecryptUpdate(ctx, NULL, &n, (const uint8_t *)aad, (int)strlen(aad)) == 1);
    CHECK(EVP_DecryptUpdate(ctx, pt, &n, b + 25, 13) == 1);
    CHECK(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, (void *)(b + 38)) == 1);
    CHECK(EVP_DecryptFinal_ex(ctx, pt + n, &m) == 1);
    CHECK(n + m == 13 && memcmp(pt, "interoperable", 13) == 0);
    CHECK(b[9] == 0 && b[10] == 0 && b[11] == 0 && b[12] == 13); /* length, big-endian */
    EVP_CIPHER_CTX_free(ctx);
    luar_buf_free(&blob);
}

int main(void)
{
    make_keys();
    RUN(test_aead_round_trip_of_many_sizes);
    RUN(test_aead_large_value_round_trips);
    RUN(test_aead_nonce_is_fresh_for_each_blob);
    RUN(test_aead_empty_plaintext_is_authenticated_too);
    RUN(test_aead_wrong_key_is_named_with_the_blob_key_id);
    RUN(test_aead_wrong_aad_is_refused_as_such);
    RUN(test_aead_every_truncation_is_refused);
    RUN(test_aead_a_modified_byte_anywhere_is_refused);
    RUN(test_aead_unknown_version_is_refused);
    RUN(test_aead_layout_is_plain_aes_256_gcm);
    return DONE();
}
