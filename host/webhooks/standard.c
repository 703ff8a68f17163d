/*
 * The `standard` scheme: Standard Webhooks (https://www.standardwebhooks.com), which is
 * also what Svix sends. A request carries
 *
 *   webhook-id:        msg_2KWPBgLlAfxdpx2AI54pPJ85f4W     (or svix-id)
 *   webhook-timestamp: 1700000000                          (or svix-timestamp)
 *   webhook-signature: v1,<base64 HMAC-SHA256> [v1,<…> …]  (or svix-signature)
 *
 * and the signed content is "<id>.<timestamp>.<body>". Secrets are "whsec_<base64>"; like
 * the reference libraries (standardwebhooks, svix), the prefix is optional and what follows
 * is base64-decoded, unless the option secret_format = "raw" says to use the bytes as
 * given (the libraries' `format: "raw"`). Signatures with another version tag ("v1a" for
 * the asymmetric variant) are skipped; one matching v1 signature suffices.
 *
 * The signature is checked before the timestamp's tolerance, so "expired" is only ever
 * reported for a request that was genuinely signed (a replay or a skewed clock), never for
 * a forgery.
 */
#include "common/error.h"
#include "common/json.h"
#include "crypto/crypto.h"
#include "webhooks/scheme.h"

#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define STD_MAC_LEN 32                          /* HMAC-SHA256 */
#define STD_SIG_B64_LEN 44                      /* its padded base64 */
#define STD_ID_RANDOM 27                        /* like a KSUID, as Svix's msg_ ids */

typedef struct std_key {
    unsigned char *data;
    size_t len;
} std_key_t;

typedef struct std_cfg {
    size_t nkeys;
    std_key_t keys[LUAR_WEBHOOK_MAX_SECRETS];
} std_cfg_t;

static const char *const std_signature_headers[] = {"webhook-signature", "svix-signature",
                                                    NULL};

static void std_free(void *p)
{
    std_cfg_t *cfg = p;
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < cfg->nkeys; i++) {
        OPENSSL_cleanse(cfg->keys[i].data, cfg->keys[i].len);
        free(cfg->keys[i].data);
    }
    free(cfg);
}

static int std_configure(const char *const *secrets, const size_t *lens, size_t nsecrets,
                         const luar_webhook_opt_t *opts, size_t nopts, void **out,
                         luar_buf_t *err)
{
    int raw = 0;
    for (size_t i = 0; i < nopts; i++) {
        if (strcmp(opts[i].key, "secret_format") == 0 && strcmp(opts[i].value, "raw") == 0) {
            raw = 1;
        } else if (strcmp(opts[i].key, "secret_format") == 0 &&
                   strcmp(opts[i].value, "base64") == 0) {
            raw = 0;
        } else if (strcmp(opts[i].key, "secret_format") == 0) {
            luar_buf_appendf(err, "scheme standard: option secret_format must be \"base64\" "
                                  "or \"raw\", not \"%s\"", opts[i].value);
            return LUAR_EINVAL;
        } else {
            luar_buf_appendf(err, "scheme standard: unknown option \"%s\" (known: "
                                  "secret_format)", opts[i].key);
            return LUAR_EINVAL;
        }
    }
    std_cfg_t *cfg = calloc(1, sizeof *cfg);
    if (cfg == NULL)
        return LUAR_ENOMEM;
    luar_buf_t key;
    luar_buf_init(&key, 0);
    for (size_t i = 0; i < nsecrets; i++) {
        const char *s = secrets[i];
        size_t n = lens[i];
        int rc = 0;
        if (raw) {
            rc = luar_buf_append(&key, s, n);
        } else {
            if (n >= 6 && memcmp(s, "whsec_", 6) == 0) {
                s += 6;
                n -= 6;
            }
            rc = luar_base64_decode(&key, s, n);
            if (rc == LUAR_EPARSE) {
                luar_buf_appendf(err, "scheme standard: secret %zu is not \"whsec_\" followed "
                                      "by base64 (for a raw secret set secret_format = "
                                      "\"raw\")", i + 1);
                rc = LUAR_EINVAL;
            }
        }
        if (rc == 0 && key.len == 0) {
            luar_buf_appendf(err, "scheme standard: secret %zu is empty", i + 1);
            rc = LUAR_EINVAL;
        }
        if (rc) {
            if (key.data)
                OPENSSL_cleanse(key.data, key.len);
            luar_buf_free(&key);
            std_free(cfg);
            return rc;
        }
        cfg->keys[i].len = key.len;
        cfg->keys[i].data = (unsigned char *)luar_buf_detach(&key, NULL);
        cfg->nkeys = i + 1;
    }
    *out = cfg;
    return 0;
}

/* The header `a`, else `b` (the svix- name); sets *used to the name found. */
static const char *pick(const luar_webhook_msg_t *msg, const char *a, const char *b,
                        const char **used, size_t *len)
{
    const char *v = luar_webhook_header(msg, a, len);
    *used = a;
    if (v == NULL || *len == 0) {
        v = luar_webhook_header(msg, b, len);
        if (v && *len)
            *used = b;
    }
    return v && *len ? v : NULL;
}

/* HMAC-SHA256(key, id "." ts "." body) as padded base64 into `b64` (45 bytes). */
static int mac_b64(const std_key_t *key, const char *id, size_t id_len, long long ts,
                   const char *body, size_t body_len, char b64[STD_SIG_B64_LEN + 1])
{
    char tsbuf[24];
    int tslen = snprintf(tsbuf, sizeof tsbuf, "%lld", ts);
    luar_crypto_part_t parts[] = {
        {id, id_len}, {".", 1}, {tsbuf, (size_t)tslen}, {".", 1}, {body, body_len},
    };
    uint8_t mac[LUAR_CRYPTO_MAX_MD];
    size_t mac_len = 0;
    int rc = luar_crypto_hmac_parts("sha256", key->data, key->len, parts, 5, mac, &mac_len);
    if (rc)
        return rc;
    EVP_EncodeBlock((unsigned char *)b64, mac, (int)mac_len);
    OPENSSL_cleanse(mac, sizeof mac);
    return 0;
}

static luar_webhook_verdict_t std_verify(const void *p, const luar_webhook_msg_t *msg,
                                         double tolerance, double now, luar_buf_t *why)
{
    const std_cfg_t *cfg = p;
    const char *id_name, *ts_name, *sig_name;
    size_t id_len, ts_len, sig_len;
    const char *id = pick(msg, "webhook-id", "svix-id", &id_name, &id_len);
    const char *ts = pick(msg, "webhook-timestamp", "svix-timestamp", &ts_name, &ts_len);
    const char *sig = pick(msg, "webhook-signature", "svix-signature", &sig_name, &sig_len);
    if (sig == NULL) {
        luar_buf_puts(why, "no webhook-signature (or svix-signature) header");
        return LUAR_WEBHOOK_MISSING;
    }
    if (id == NULL) {
        luar_buf_puts(why, "no webhook-id (or svix-id) header");
        return LUAR_WEBHOOK_MISSING;
    }
    if (ts == NULL) {
        luar_buf_puts(why, "no webhook-timestamp (or svix-timestamp) header");
        return LUAR_WEBHOOK_MISSING;
    }
    long long t = 0;
    luar_webhook_verdict_t v =
        luar_webhook_check_timestamp(ts_name, ts, ts_len, INFINITY, now, &t, why);
    if (v != LUAR_WEBHOOK_OK)
        return v;

    char expected[LUAR_WEBHOOK_MAX_SECRETS][STD_SIG_B64_LEN + 1];
    for (size_t k = 0; k < cfg->nkeys; k++) {
        if (mac_b64(&cfg->keys[k], id, id_len, t, msg->body, msg->body_len, expected[k])) {
            luar_buf_puts(why, "cannot compute HMAC-SHA256");
            return LUAR_WEBHOOK_INVALID;
        }
    }
    /* Space-separated "v<N>,<signature>" entries; only v1 is HMAC-SHA256. */
    size_t i = 0, nv1 = 0;
    int matched = 0;
    while (i < sig_len) {
        while (i < sig_len && sig[i] == ' ')
            i++;
        size_t start = i;
        while (i < sig_len && sig[i] != ' ')
            i++;
        if (i == start)
            break;
        const char *tok = sig + start;
        size_t tok_len = i - start;
        if (tok_len < 3 || memcmp(tok, "v1,", 3) != 0)
            continue;
        nv1++;
        for (size_t k = 0; k < cfg->nkeys; k++) {
            matched |= luar_crypto_equals(tok + 3, tok_len - 3, expected[k],
                                          STD_SIG_B64_LEN);
        }
    }
    OPENSSL_cleanse(expected, sizeof expected);
    if (nv1 == 0) {
        luar_buf_appendf(why, "%s holds no v1 signature", sig_name);
        return LUAR_WEBHOOK_INVALID;
    }
    if (!matched) {
        luar_buf_appendf(why, "no signature in %s matches (%zu v1 signature%s, %zu secret%s)",
                         sig_name, nv1, nv1 == 1 ? "" : "s", cfg->nkeys,
                         cfg->nkeys == 1 ? "" : "s");
        return LUAR_WEBHOOK_INVALID;
    }
    return luar_webhook_check_timestamp(ts_name, ts, ts_len, tolerance, now, NULL, why);
}

static int std_events(const void *p, const luar_webhook_msg_t *msg, luar_webhook_event_t *out,
                      size_t max, size_t *n, luar_buf_t *scratch, luar_buf_t *why)
{
    (void)p;
    const char *id_name;
    size_t id_len = 0;
    const char *id = pick(msg, "webhook-id", "svix-id", &id_name, &id_len);
    if (id == NULL) {
        luar_buf_puts(why, "no webhook-id header");
        return LUAR_EPARSE;
    }
    if (luar_json_validate(msg->body, msg->body_len, LUAR_JSON_MAX_DEPTH, NULL) != 0) {
        luar_buf_puts(why, "body is not JSON: ");
        luar_json_validate(msg->body, msg->body_len, LUAR_JSON_MAX_DEPTH, why);
        return LUAR_EPARSE;
    }
    const char *type;
    size_t type_len;
    if (!luar_json_member(msg->body, msg->body_len, "type", &type, &type_len)) {
        size_t k = 0;
        while (k < msg->body_len && strchr(" \t\r\n", msg->body[k]))
            k++;
        luar_buf_puts(why, k < msg->body_len && msg->body[k] == '{'
                               ? "body has no \"type\" member"
                               : "body is not a JSON object");
        return LUAR_EPARSE;
    }
    size_t off = scratch->len;
    if (type[0] != '"' || luar_json_unquote(type, type_len, scratch) != 0 ||
        scratch->len == off) {
        luar_buf_puts(why, "body's \"type\" is not a non-empty string");
        return LUAR_EPARSE;
    }
    if (max < 1) {
        luar_buf_puts(why, "too many events");
        return LUAR_ETOOBIG;
    }
    out[0] = (luar_webhook_event_t){
        .id = id,
        .id_len = id_len,
        .type = scratch->data + off,
        .type_len = scratch->len - off,
        .json = msg->body,
        .json_len = msg->body_len,
    };
    *n = 1;
    return 0;
}

/* "msg_" and 27 random base62 characters, like the ids Svix gives its messages. */
static int make_id(char out[4 + STD_ID_RANDOM + 1])
{
    static const char alphabet[] =
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    unsigned char rnd[STD_ID_RANDOM];
    if (luar_crypto_random(rnd, sizeof rnd))
        return LUAR_EIO;
    memcpy(out, "msg_", 4);
    for (size_t i = 0; i < STD_ID_RANDOM; i++)
        out[4 + i] = alphabet[rnd[i] % 62];
    out[4 + STD_ID_RANDOM] = '\0';
    return 0;
}

static int std_sign(const void *p, const char *id, double timestamp, const char *body,
                    size_t body_len, luar_buf_t *out, luar_buf_t *err)
{
    const std_cfg_t *cfg = p;
    char made[4 + STD_ID_RANDOM + 1];
    if (id == NULL) {
        if (make_id(made)) {
            luar_buf_puts(err, "scheme standard: no random bytes for a message id");
            return LUAR_EIO;
        }
        id = made;
    }
    if (id[0] == '\0') {
        luar_buf_puts(err, "scheme standard: the message id is empty");
        return LUAR_EINVAL;
    }
    for (const char *c = id; *c; c++) {
        if ((unsigned char)*c < 0x20 || *c == 0x7f) {
            luar_buf_puts(err, "scheme standard: the message id holds a control character");
            return LUAR_EINVAL;
        }
    }
    if (!(timestamp >= 0) || timestamp > 1e15) {
        luar_buf_puts(err, "scheme standard: the timestamp is not a unix time");
        return LUAR_EINVAL;
    }
    long long ts = (long long)floor(timestamp);
    char sig[STD_SIG_B64_LEN + 1];
    int rc = mac_b64(&cfg->keys[0], id, strlen(id), ts, body, body_len, sig);
    if (rc) {
        luar_buf_puts(err, "scheme standard: cannot compute HMAC-SHA256");
        return rc;
    }
    return luar_buf_appendf(out, "webhook-id: %s\r\nwebhook-timestamp: %lld\r\n"
                                 "webhook-signature: v1,%s\r\n", id, ts, sig);
}

const luar_webhook_scheme_t luar_webhook_scheme_standard = {
    .name = "standard",
    .signature_headers = std_signature_headers,
    .configure = std_configure,
    .free_cfg = std_free,
    .verify = std_verify,
    .events = std_events,
    .sign = std_sign,
};
