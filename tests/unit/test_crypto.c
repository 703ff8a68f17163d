#include "common/buf.h"
#include "common/error.h"
#include "crypto/crypto.h"
#include "test.h"

#include <stdint.h>
#include <string.h>

/* Hex of HMAC(alg, key, data), or "error" when the call failed. */
static const char *hmac_hex(luar_buf_t *b, const char *alg, const void *key, size_t key_len,
                            const void *data, size_t data_len)
{
    uint8_t md[LUAR_CRYPTO_MAX_MD];
    size_t n = 0;
    luar_buf_reset(b);
    if (luar_crypto_hmac(alg, key, key_len, data, data_len, md, &n) != 0)
        return "error";
    luar_hex_encode(b, md, n);
    return b->data;
}

static const char *digest_hex(luar_buf_t *b, const char *alg, const char *data)
{
    uint8_t md[LUAR_CRYPTO_MAX_MD];
    size_t n = 0;
    luar_buf_reset(b);
    if (luar_crypto_digest(alg, data, strlen(data), md, &n) != 0)
        return "error";
    luar_hex_encode(b, md, n);
    return b->data;
}

TEST(test_hmac_sha256_rfc4231_vectors)
{
    luar_buf_t b;
    uint8_t key[131], data[50];
    luar_buf_init(&b, 0);

    memset(key, 0x0b, 20);
    CHECK_EQ_STR(hmac_hex(&b, "sha256", key, 20, "Hi There", 8),
                 "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    const char *jefe = "what do ya want for nothing?";
    CHECK_EQ_STR(hmac_hex(&b, "sha256", "Jefe", 4, jefe, strlen(jefe)),
                 "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    memset(key, 0xaa, 20);
    memset(data, 0xdd, 50);
    CHECK_EQ_STR(hmac_hex(&b, "sha256", key, 20, data, 50),
                 "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
    for (int i = 0; i < 25; i++)
        key[i] = (uint8_t)(i + 1);
    memset(data, 0xcd, 50);
    CHECK_EQ_STR(hmac_hex(&b, "sha256", key, 25, data, 50),
                 "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");
    memset(key, 0xaa, 131);
    const char *big_key = "Test Using Larger Than Block-Size Key - Hash Key First";
    CHECK_EQ_STR(hmac_hex(&b, "sha256", key, 131, big_key, strlen(big_key)),
                 "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    const char *big_data = "This is a test using a larger than block-size key and a larger "
                           "than block-size data. The key needs to be hashed before being "
                           "used by the HMAC algorithm.";
    CHECK_EQ_STR(hmac_hex(&b, "sha256", key, 131, big_data, strlen(big_data)),
                 "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
    luar_buf_free(&b);
}

TEST(test_hmac_empty_key_and_unknown_alg)
{
    luar_buf_t b;
    luar_buf_init(&b, 0);
    /* HMAC-SHA256 with an empty key over empty data, a well-known value. */
    CHECK_EQ_STR(hmac_hex(&b, "sha256", NULL, 0, NULL, 0),
                 "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
    CHECK_EQ_STR(hmac_hex(&b, "no-such-hash", "k", 1, "d", 1), "error");
    luar_buf_free(&b);
}

TEST(test_hmac_parts_equals_one_shot)
{
    static const char *algs[] = {"sha1", "sha256", "sha512"};
    const char *msg = "msg_1.1700000000.{\"type\":\"x\"}";
    luar_crypto_part_t parts[] = {{"msg_1", 5}, {".", 1}, {"", 0}, {"1700000000.", 11},
                                  {msg + 17, strlen(msg) - 17}};
    for (size_t i = 0; i < 3; i++) {
        uint8_t one[LUAR_CRYPTO_MAX_MD], many[LUAR_CRYPTO_MAX_MD];
        size_t n1 = 0, n2 = 0;
        CHECK_EQ_INT(luar_crypto_hmac(algs[i], "key", 3, msg, strlen(msg), one, &n1), 0);
        CHECK_EQ_INT(luar_crypto_hmac_parts(algs[i], "key", 3, parts, 5, many, &n2), 0);
        CHECK(n1 == n2 && n1 > 0 && memcmp(one, many, n1) == 0);
    }
    uint8_t md[LUAR_CRYPTO_MAX_MD];
    size_t n = 0;
    CHECK_EQ_INT(luar_crypto_hmac_parts("sha256", NULL, 0, NULL, 0, md, &n), 0);
    CHECK_EQ_INT(n, 32);
    CHECK_EQ_INT(md[0], 0xb6);
    CHECK_EQ_INT(luar_crypto_hmac_parts("bogus", "k", 1, parts, 1, md, &n), LUAR_EINVAL);
}

TEST(test_digest_known_answers)
{
    luar_buf_t b;
    luar_buf_init(&b, 0);
    CHECK_EQ_STR(digest_hex(&b, "sha1", "abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
    CHECK_EQ_STR(digest_hex(&b, "sha256", "abc"),
                 "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK_EQ_STR(digest_hex(&b, "sha256", ""),
                 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK_EQ_STR(digest_hex(&b, "sha512", "abc"),
                 "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
                 "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f");
    CHECK_EQ_STR(digest_hex(&b, "bogus", "abc"), "error");
    luar_buf_free(&b);
}

/* Encodes with `fn` and returns the text. */
static const char *enc(luar_buf_t *b, int (*fn)(luar_buf_t *, const void *, size_t), const char *s,
                       size_t len)
{
    luar_buf_reset(b);
    if (fn(b, s, len) != 0)
        return "error";
    return b->data ? b->data : "";
}

/* Decodes with `fn`; returns the bytes as a string or "error". */
static const char *dec(luar_buf_t *b, int (*fn)(luar_buf_t *, const char *, size_t), const char *s)
{
    luar_buf_reset(b);
    int rc = fn(b, s, strlen(s));
    if (rc == LUAR_EPARSE)
        return "error";
    if (rc != 0)
        return "other error";
    return b->data ? b->data : "";
}

TEST(test_base64_rfc4648_vectors)
{
    static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const std[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                                      "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    static const char *const url[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
    luar_buf_t b;
    luar_buf_init(&b, 0);
    for (int i = 0; i < 7; i++) {
        CHECK_EQ_STR(enc(&b, luar_base64_encode, plain[i], strlen(plain[i])), std[i]);
        CHECK_EQ_STR(enc(&b, luar_base64url_encode, plain[i], strlen(plain[i])), url[i]);
        CHECK_EQ_STR(dec(&b, luar_base64_decode, std[i]), plain[i]);
        CHECK_EQ_STR(dec(&b, luar_base64url_decode, url[i]), plain[i]);
        /* base64url also accepts the padded form. */
        CHECK_EQ_STR(dec(&b, luar_base64url_decode, std[i]), plain[i]);
    }
    const char bytes[] = "\xfb\xff\xbf";
    CHECK_EQ_STR(enc(&b, luar_base64_encode, bytes, 3), "+/+/");
    CHECK_EQ_STR(enc(&b, luar_base64url_encode, bytes, 3), "-_-_");
    CHECK_EQ_STR(enc(&b, luar_base64_encode, bytes, 2), "+/8=");
    CHECK_EQ_STR(enc(&b, luar_base64url_encode, bytes, 2), "-_8");
    CHECK_EQ_STR(dec(&b, luar_base64_decode, "+/+/"), bytes);
    CHECK_EQ_STR(dec(&b, luar_base64url_decode, "-_-_"), bytes);
    luar_buf_free(&b);
}

TEST(test_base64_long_input_round_trips)
{
    uint8_t data[5000];
    luar_buf_t e, d;
    luar_buf_init(&e, 0);
    luar_buf_init(&d, 0);
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 7 + 3);
    CHECK_EQ_INT(luar_base64_encode(&e, data, sizeof data), 0);
    CHECK_EQ_INT(e.len, (sizeof data + 2) / 3 * 4);
    CHECK_EQ_INT(luar_base64_decode(&d, e.data, e.len), 0);
    CHECK(d.len == sizeof data && memcmp(d.data, data, sizeof data) == 0);
    luar_buf_reset(&e);
    luar_buf_reset(&d);
    CHECK_EQ_INT(luar_base64url_encode(&e, data, sizeof data - 1), 0);
    CHECK_EQ_INT(luar_base64url_decode(&d, e.data, e.len), 0);
    CHECK(d.len == sizeof data - 1 && memcmp(d.data, data, sizeof data - 1) == 0);
    luar_buf_reset(&e);
    luar_buf_reset(&d);
    CHECK_EQ_INT(luar_hex_encode(&e, data, sizeof data), 0);
    CHECK_EQ_INT(e.len, 2 * sizeof data);
    CHECK_EQ_INT(luar_hex_decode(&d, e.data, e.len), 0);
    CHECK(d.len == sizeof data && memcmp(d.data, data, sizeof data) == 0);
    luar_buf_free(&e);
    luar_buf_free(&d);
}

TEST(test_base64_decode_rejects_bad_input)
{
    static const char *const bad_std[] = {
        "Zg",     /* padding required */
        "Zg=",    /* length not a multiple of 4 */
        "Z===",   /* too much padding */
        "Zm9v=",  /* bad length */
        "Zm 9v",  /* whitespace */
        "Zm9v\n", /* newline */
        "Zg=a",   /* '=' inside */
        "Zh==",   /* non-zero unused bits */
        "Zm9-",   /* URL alphabet in the standard decoder */
        "Z",      /* lone digit */
    };
    static const char *const bad_url[] = {"Z", "Zg=", "Zm9v+", "Zm9v/", "Zh", "Zm9vY", "Zg==="};
    luar_buf_t b;
    luar_buf_init(&b, 0);
    for (size_t i = 0; i < sizeof bad_std / sizeof bad_std[0]; i++) {
        if (strcmp(dec(&b, luar_base64_decode, bad_std[i]), "error") != 0)
            fprintf(stderr, "accepted base64 \"%s\"\n", bad_std[i]);
        CHECK_EQ_STR(dec(&b, luar_base64_decode, bad_std[i]), "error");
    }
    for (size_t i = 0; i < sizeof bad_url / sizeof bad_url[0]; i++) {
        if (strcmp(dec(&b, luar_base64url_decode, bad_url[i]), "error") != 0)
            fprintf(stderr, "accepted base64url \"%s\"\n", bad_url[i]);
        CHECK_EQ_STR(dec(&b, luar_base64url_decode, bad_url[i]), "error");
    }
    /* A failed decode leaves what the buffer already held. */
    luar_buf_reset(&b);
    luar_buf_puts(&b, "keep");
    CHECK_EQ_INT(luar_base64_decode(&b, "Zm9v!", 5), LUAR_EPARSE);
    CHECK_EQ_STR(b.data, "keep");
    luar_buf_free(&b);
}

TEST(test_hex_codec)
{
    luar_buf_t b;
    luar_buf_init(&b, 0);
    CHECK_EQ_STR(enc(&b, luar_hex_encode, "\x00\x01\xab\xff", 4), "0001abff");
    CHECK_EQ_STR(dec(&b, luar_hex_decode, "666F6f"), "foo");
    CHECK_EQ_STR(dec(&b, luar_hex_decode, ""), "");
    CHECK_EQ_STR(dec(&b, luar_hex_decode, "abc"), "error");
    CHECK_EQ_STR(dec(&b, luar_hex_decode, "zz"), "error");
    CHECK_EQ_STR(dec(&b, luar_hex_decode, "0x"), "error");
    luar_buf_free(&b);
}

TEST(test_encode_respects_buffer_cap)
{
    luar_buf_t b;
    luar_buf_init(&b, 4);
    CHECK_EQ_INT(luar_base64_encode(&b, "foob", 4), LUAR_ETOOBIG);
    CHECK_EQ_INT(b.len, 0);
    CHECK_EQ_INT(luar_hex_encode(&b, "abc", 3), LUAR_ETOOBIG);
    CHECK_EQ_INT(b.len, 0);
    luar_buf_free(&b);
}

TEST(test_equals)
{
    CHECK_EQ_INT(luar_crypto_equals("abc", 3, "abc", 3), 1);
    CHECK_EQ_INT(luar_crypto_equals("abc", 3, "abd", 3), 0);
    CHECK_EQ_INT(luar_crypto_equals("abc", 3, "abcd", 4), 0);
    CHECK_EQ_INT(luar_crypto_equals("abcd", 4, "abc", 3), 0);
    CHECK_EQ_INT(luar_crypto_equals("", 0, "", 0), 1);
    CHECK_EQ_INT(luar_crypto_equals("", 0, "a", 1), 0);
}

TEST(test_uuid_format_and_version)
{
    char a[37], b[37];
    luar_crypto_uuid(a);
    luar_crypto_uuid(b);
    CHECK_EQ_INT(strlen(a), 36);
    CHECK(strcmp(a, b) != 0);
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            CHECK(a[i] == '-');
        else
            CHECK((a[i] >= '0' && a[i] <= '9') || (a[i] >= 'a' && a[i] <= 'f'));
    }
    CHECK(a[14] == '4');
    CHECK(a[19] == '8' || a[19] == '9' || a[19] == 'a' || a[19] == 'b');
}

TEST(test_random_differs)
{
    uint8_t a[32], b[32], zero[32];
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    memset(zero, 0, sizeof zero);
    CHECK_EQ_INT(luar_crypto_random(a, sizeof a), 0);
    CHECK_EQ_INT(luar_crypto_random(b, sizeof b), 0);
    CHECK(memcmp(a, b, sizeof a) != 0);
    CHECK(memcmp(a, zero, sizeof a) != 0);
    CHECK_EQ_INT(luar_crypto_random(a, 0), 0);
}

int main(void)
{
    RUN(test_hmac_sha256_rfc4231_vectors);
    RUN(test_hmac_empty_key_and_unknown_alg);
    RUN(test_hmac_parts_equals_one_shot);
    RUN(test_digest_known_answers);
    RUN(test_base64_rfc4648_vectors);
    RUN(test_base64_long_input_round_trips);
    RUN(test_base64_decode_rejects_bad_input);
    RUN(test_hex_codec);
    RUN(test_encode_respects_buffer_cap);
    RUN(test_equals);
    RUN(test_uuid_format_and_version);
    RUN(test_random_differs);
    return DONE();
}
