/*
 * The `sendgrid` webhook scheme: SendGrid's signed Event Webhook. SendGrid POSTs a JSON
 * array of events with
 *
 *   X-Twilio-Email-Event-Webhook-Timestamp: 1700000000
 *   X-Twilio-Email-Event-Webhook-Signature: <base64 DER ECDSA P-256 signature>
 *
 * where the signature is ECDSA with SHA-256 over "<timestamp><body>" made with the
 * account's private key. The route's secret is the verification key the SendGrid console
 * shows (base64 DER SubjectPublicKeyInfo, "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE…") or the
 * same key in PEM. A PEM *private* key is accepted too: it verifies with its public half
 * and is the only way sign() can work (`luar webhook sign --scheme sendgrid --secret
 * "$(cat key.pem)"`, tests), since SendGrid never hands out its private key.
 *
 * Each element of the array is one event: id = its `sg_event_id`, type = its `event`
 * ("delivered", "open", "bounce", …), so a redelivered batch is deduplicated event by event.
 *
 * Like the host's schemes, the signature is checked before the timestamp's tolerance, so
 * "expired" is only reported for a request that was genuinely signed. Verification
 * allocates one EVP_MD_CTX per key tried (OpenSSL has no stack-allocated context).
 */
#include "sendgrid.h"


#include <math.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIG_HEADER "x-twilio-email-event-webhook-signature"
#define TS_HEADER "x-twilio-email-event-webhook-timestamp"
#define MAX_SIG_B64 256 /* a P-256 DER signature is at most 72 bytes: 96 in base64 */
#define MAX_KEY_TEXT 16384

typedef struct sg_cfg {
    size_t nkeys;
    EVP_PKEY *keys[LUAR_WEBHOOK_MAX_SECRETS];
    int private_first; /* keys[0] holds a private key: sign() can work */
} sg_cfg_t;

static const char *const sg_signature_headers[] = {SIG_HEADER, NULL};

static void sg_free(void *p)
{
    sg_cfg_t *cfg = p;
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < cfg->nkeys; i++)
        EVP_PKEY_free(cfg->keys[i]); /* frees (and clears) private key material */
    free(cfg);
}

/*
 * Decodes base64 `text` (spaces and line breaks around it ignored) into `out` (at most
 * `cap` bytes) with the host's decoder. Returns the length, or -1 when it is not base64 or
 * too long.
 */
static int b64_decode(const char *text, size_t len, unsigned char *out, size_t cap)
{
    const luar_host_t *h = sendgrid_host;
    while (len > 0 && strchr(" \t\r\n", text[len - 1]) != NULL)
        len--;
    while (len > 0 && strchr(" \t\r\n", *text) != NULL) {
        text++;
        len--;
    }
    luar_buf_t *b = h->buf_new(cap);
    if (b == NULL)
        return -1;
    int n = -1;
    size_t got = 0;
    if (len > 0 && h->base64_decode(b, text, len) == 0) {
        const char *data = h->buf_data(b, &got);
        if (got > 0 && got <= cap) {
            memcpy(out, data, got);
            n = (int)got;
        }
    }
    h->buf_free(b);
    return n;
}

/* 1 when `pkey` is an EC key on P-256 (prime256v1), the curve SendGrid signs with. */
static int is_p256(EVP_PKEY *pkey)
{
    char group[64];
    size_t glen = 0;
    if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_EC)
        return 0;
    if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                       &glen) != 1)
        return 0;
    return strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0;
}

/*
 * Reads secret `i` (1-based in messages): PEM (public or private key) or base64 DER
 * SubjectPublicKeyInfo. Returns the key or NULL with a reason in `err`.
 */
static EVP_PKEY *read_key(const char *text, size_t len, size_t i, int *is_private,
                          luar_buf_t *err)
{
    const luar_host_t *h = sendgrid_host;
    EVP_PKEY *pkey = NULL;
    *is_private = 0;
    if (len == 0 || len > MAX_KEY_TEXT) {
        h->buf_printf(err, "scheme sendgrid: secret %zu is %s", i,
                      len == 0 ? "empty" : "too long to be a key");
        return NULL;
    }
    if (memmem(text, len, "-----BEGIN", 10) != NULL) {
        BIO *bio = BIO_new_mem_buf(text, (int)len);
        if (bio == NULL)
            return NULL;
        if (memmem(text, len, "PRIVATE KEY-----", 16) != NULL) {
            pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
            *is_private = pkey != NULL;
        } else {
            pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
        }
        BIO_free(bio);
        if (pkey == NULL) {
            h->buf_printf(err, "scheme sendgrid: secret %zu is PEM but not a readable EC "
                               "public or private key", i);
            ERR_clear_error();
            return NULL;
        }
    } else {
        unsigned char der[1024];
        int n = b64_decode(text, len, der, sizeof der);
        const unsigned char *p = der;
        if (n > 0)
            pkey = d2i_PUBKEY(NULL, &p, n);
        if (pkey == NULL) {
            h->buf_printf(err, "scheme sendgrid: secret %zu is not a verification key (expected "
                               "the base64 public key SendGrid shows, \"MFkwEwYH…\", or PEM)", i);
            ERR_clear_error();
            return NULL;
        }
    }
    if (!is_p256(pkey)) {
        h->buf_printf(err, "scheme sendgrid: secret %zu is not an ECDSA P-256 key", i);
        EVP_PKEY_free(pkey);
        ERR_clear_error();
        return NULL;
    }
    return pkey;
}

static int sg_configure(const char *const *secrets, const size_t *lens, size_t nsecrets,
                        const luar_webhook_opt_t *opts, size_t nopts, void **out,
                        luar_buf_t *err)
{
    const luar_host_t *h = sendgrid_host;
    if (nopts > 0) {
        h->buf_printf(err, "scheme sendgrid: unknown option \"%s\" (the scheme has none)",
                      opts[0].key);
        return LUAR_PLUGIN_EINVAL;
    }
    sg_cfg_t *cfg = calloc(1, sizeof *cfg);
    if (cfg == NULL)
        return LUAR_PLUGIN_ENOMEM;
    for (size_t i = 0; i < nsecrets && i < LUAR_WEBHOOK_MAX_SECRETS; i++) {
        int is_private = 0;
        EVP_PKEY *pkey = read_key(secrets[i], lens[i], i + 1, &is_private, err);
        if (pkey == NULL) {
            sg_free(cfg);
            return LUAR_PLUGIN_EINVAL;
        }
        if (i == 0)
            cfg->private_first = is_private;
        cfg->keys[cfg->nkeys++] = pkey;
    }
    *out = cfg;
    return 0;
}

/* 1 when `sig` verifies "<ts><body>" under `pkey`. */
static int verify_one(EVP_PKEY *pkey, const char *ts, size_t ts_len, const char *body,
                      size_t body_len, const unsigned char *sig, size_t sig_len)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL && EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pkey) == 1 &&
             EVP_DigestVerifyUpdate(ctx, ts, ts_len) == 1 &&
             EVP_DigestVerifyUpdate(ctx, body, body_len) == 1 &&
             EVP_DigestVerifyFinal(ctx, sig, sig_len) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        ERR_clear_error(); /* a bad signature leaves DER or verify errors queued */
    return ok;
}

static luar_webhook_verdict_t sg_verify(const void *p, const luar_webhook_msg_t *msg,
                                        double tolerance, double now, luar_buf_t *why)
{
    const sg_cfg_t *cfg = p;
    const luar_host_t *h = sendgrid_host;
    size_t sig_len = 0, ts_len = 0;
    const char *sig_b64 = h->webhook_header(msg, SIG_HEADER, &sig_len);
    const char *ts = h->webhook_header(msg, TS_HEADER, &ts_len);
    if (sig_b64 == NULL || sig_len == 0) {
        h->buf_printf(why, "no %s header", SIG_HEADER);
        return LUAR_WEBHOOK_MISSING;
    }
    if (ts == NULL || ts_len == 0) {
        h->buf_printf(why, "no %s header", TS_HEADER);
        return LUAR_WEBHOOK_MISSING;
    }
    luar_webhook_verdict_t v =
        h->webhook_check_timestamp(TS_HEADER, ts, ts_len, INFINITY, now, NULL, why);
    if (v != LUAR_WEBHOOK_OK)
        return v;
    unsigned char sig[MAX_SIG_B64];
    int n = sig_len <= MAX_SIG_B64 ? b64_decode(sig_b64, sig_len, sig, sizeof sig) : -1;
    if (n <= 0) {
        h->buf_printf(why, "%s is malformed (expected a base64 DER ECDSA signature)",
                      SIG_HEADER);
        return LUAR_WEBHOOK_INVALID;
    }
    /* The signed timestamp is the header's text as sent, not a reformatted number. */
    int matched = 0;
    for (size_t k = 0; k < cfg->nkeys && !matched; k++)
        matched = verify_one(cfg->keys[k], ts, ts_len, msg->body, msg->body_len, sig,
                             (size_t)n);
    if (!matched) {
        h->buf_printf(why, "the %s does not verify with %s configured key%s", SIG_HEADER,
                      cfg->nkeys == 1 ? "the" : "any", cfg->nkeys == 1 ? "" : "s");
        return LUAR_WEBHOOK_INVALID;
    }
    return h->webhook_check_timestamp(TS_HEADER, ts, ts_len, tolerance, now, NULL, why);
}

static size_t buf_len(const luar_buf_t *b)
{
    size_t len = 0;
    sendgrid_host->buf_data(b, &len);
    return len;
}

/* Decodes member `key` of the object `el` when it is a non-empty string; 1 if so. */
static int string_member(const char *el, size_t ellen, const char *key, luar_buf_t *into)
{
    const luar_host_t *h = sendgrid_host;
    const char *v;
    size_t vlen;
    size_t before = buf_len(into);
    if (!h->json_member(el, ellen, key, &v, &vlen) || v[0] != '"')
        return 0;
    return h->json_unquote(v, vlen, into) == 0 && buf_len(into) > before;
}

static int sg_events(const void *p, const luar_webhook_msg_t *msg, luar_webhook_event_t *out,
                     size_t max, size_t *n, luar_buf_t *scratch, luar_buf_t *why)
{
    (void)p;
    const luar_host_t *h = sendgrid_host;
    luar_buf_t *local = h->buf_new(0), *reason = h->buf_new(512);
    int rc = 0;
    size_t count = 0;
    /* Offsets into `local` of each event's id and type; turned into pointers once `local`
     * has been copied into `scratch` in one piece (scratch may move while it grows). */
    size_t *offs = NULL;
    if (local == NULL || reason == NULL) {
        rc = LUAR_PLUGIN_ENOMEM;
        goto done;
    }
    if (h->json_validate(msg->body, msg->body_len, 0, reason) != 0) {
        h->buf_printf(why, "body is not JSON: %s", h->buf_data(reason, NULL));
        rc = LUAR_PLUGIN_EPARSE;
        goto done;
    }
    size_t i = 0;
    while (i < msg->body_len && strchr(" \t\r\n", msg->body[i]) != NULL)
        i++;
    if (i == msg->body_len || msg->body[i] != '[') {
        h->buf_printf(why, "body is not a JSON array of events");
        rc = LUAR_PLUGIN_EPARSE;
        goto done;
    }
    offs = calloc(max ? 4 * max : 1, sizeof *offs);
    if (offs == NULL) {
        rc = LUAR_PLUGIN_ENOMEM;
        goto done;
    }
    size_t pos = 0, ellen;
    const char *el;
    while (h->json_array_next(msg->body, msg->body_len, &pos, &el, &ellen)) {
        if (count == max) {
            h->buf_printf(why, "more than %zu events", max);
            rc = LUAR_PLUGIN_ETOOBIG;
            goto done;
        }
        size_t id_off = buf_len(local);
        if (el[0] != '{' || !string_member(el, ellen, "sg_event_id", local)) {
            h->buf_printf(why, "event %zu has no sg_event_id", count + 1);
            rc = LUAR_PLUGIN_EPARSE;
            goto done;
        }
        size_t type_off = buf_len(local);
        if (!string_member(el, ellen, "event", local)) {
            h->buf_printf(why, "event %zu has no \"event\" type", count + 1);
            rc = LUAR_PLUGIN_EPARSE;
            goto done;
        }
        offs[4 * count] = id_off;
        offs[4 * count + 1] = type_off - id_off;
        offs[4 * count + 2] = type_off;
        offs[4 * count + 3] = buf_len(local) - type_off;
        out[count] = (luar_webhook_event_t){.json = el, .json_len = ellen};
        count++;
    }
    if (count == 0) {
        h->buf_printf(why, "the array holds no events");
        rc = LUAR_PLUGIN_EPARSE;
        goto done;
    }
    size_t base = 0;
    h->buf_data(scratch, &base);
    size_t local_len = 0;
    const char *local_data = h->buf_data(local, &local_len);
    rc = h->buf_append(scratch, local_data, local_len);
    if (rc != 0)
        goto done;
    const char *s = h->buf_data(scratch, NULL) + base;
    for (size_t e = 0; e < count; e++) {
        out[e].id = s + offs[4 * e];
        out[e].id_len = offs[4 * e + 1];
        out[e].type = s + offs[4 * e + 2];
        out[e].type_len = offs[4 * e + 3];
    }
    *n = count;
done:
    free(offs);
    h->buf_free(local);
    h->buf_free(reason);
    return rc;
}

static int sg_sign(const void *p, const char *id, double timestamp, const char *body,
                   size_t body_len, luar_buf_t *out, luar_buf_t *err)
{
    const sg_cfg_t *cfg = p;
    const luar_host_t *h = sendgrid_host;
    (void)id;
    if (!cfg->private_first) {
        h->buf_printf(err, "scheme sendgrid: cannot sign with a public key (SendGrid keeps "
                           "the private one); give a PEM EC private key as the secret to "
                           "sign test events");
        return LUAR_PLUGIN_EINVAL;
    }
    if (!(timestamp >= 0) || timestamp > 1e15) {
        h->buf_printf(err, "scheme sendgrid: the timestamp is not a unix time");
        return LUAR_PLUGIN_EINVAL;
    }
    char ts[24];
    int ts_len = snprintf(ts, sizeof ts, "%lld", (long long)floor(timestamp));
    unsigned char sig[128];
    size_t sig_len = sizeof sig;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL &&
             EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, cfg->keys[0]) == 1 &&
             EVP_DigestSignUpdate(ctx, ts, (size_t)ts_len) == 1 &&
             EVP_DigestSignUpdate(ctx, body, body_len) == 1 &&
             EVP_DigestSignFinal(ctx, sig, &sig_len) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok) {
        ERR_clear_error();
        h->buf_printf(err, "scheme sendgrid: ECDSA signing failed");
        return LUAR_PLUGIN_EINVAL;
    }
    int rc = h->buf_printf(out, "X-Twilio-Email-Event-Webhook-Signature: ");
    if (rc == 0)
        rc = h->base64_encode(out, sig, sig_len);
    if (rc == 0)
        rc = h->buf_printf(out, "\r\nX-Twilio-Email-Event-Webhook-Timestamp: %s\r\n", ts);
    return rc;
}

const luar_webhook_scheme_t sendgrid_scheme = {
    .name = "sendgrid",
    .signature_headers = sg_signature_headers,
    .configure = sg_configure,
    .free_cfg = sg_free,
    .verify = sg_verify,
    .events = sg_events,
    .sign = sg_sign,
};
