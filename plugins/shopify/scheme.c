/*
 * The `shopify` scheme: Shopify's webhooks. A delivery carries
 *
 *   X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the raw body>   (the app's client secret)
 *   X-Shopify-Topic:       orders/create
 *   X-Shopify-Webhook-Id:  b54557e4-bdd9-4b37-8a5f-bf7d70bcd043
 *   X-Shopify-Shop-Domain, X-Shopify-Event-Id, X-Shopify-Triggered-At, X-Shopify-API-Version
 *
 * Secrets are used as the bytes given (no options for verifying). One matching signature
 * against any configured secret suffices (rotation).
 *
 * There is no signed timestamp, so the route's tolerance does not apply: replay protection
 * is the route's dedupe window on the webhook id. X-Shopify-Triggered-At is not checked: it
 * is not signed, and Shopify redelivers a failed webhook with its original trigger time for
 * hours, which a tolerance of minutes would refuse.
 *
 * Event (SPEC §8): id X-Shopify-Webhook-Id, Shopify's key for one delivery, which its
 * retries repeat (X-Shopify-Event-Id when it is absent). Not the Event-Id first: it names
 * the shop event, shared by every subscription it triggers, so two subscriptions delivering
 * to one route would dedupe each other. Type X-Shopify-Topic with '/' turned into '.'
 * ("orders.create"), so topic patterns such as "orders.*" work. The shop and the other
 * headers reach handlers in meta.headers.
 */
#include "shopify.h"
#include "luar/plugin_keys.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SHOPIFY_MAC_LEN 32 /* HMAC-SHA256 */
#define SHOPIFY_B64_LEN 44 /* its padded base64 */
#define SHOPIFY_OPT_MAX 256

typedef struct shopify_cfg {
    luar_plugin_keys_t keys;
    char topic[SHOPIFY_OPT_MAX]; /* what sign() writes as X-Shopify-Topic ("" none) */
    char shop[SHOPIFY_OPT_MAX];  /* ... as X-Shopify-Shop-Domain ("" none) */
} shopify_cfg_t;

static const char *const shopify_signature_headers[] = {"x-shopify-hmac-sha256", NULL};

static void shopify_free(void *p)
{
    shopify_cfg_t *cfg = p;
    if (cfg == NULL)
        return;
    luar_plugin_keys_free(&cfg->keys);
    free(cfg);
}

/* A header value: printable ASCII, no CR/LF (it is written into a header line). */
static int header_safe(const char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
            return 0;
    }
    return 1;
}

static int set_opt(char *slot, const luar_webhook_opt_t *o, luar_buf_t *err)
{
    size_t n = strlen(o->value);
    if (n == 0 || n >= SHOPIFY_OPT_MAX || !header_safe(o->value)) {
        shopify_host->buf_printf(err, "scheme shopify: option %s must be 1 to %d printable "
                                      "ASCII characters", o->key, SHOPIFY_OPT_MAX - 1);
        return LUAR_PLUGIN_EINVAL;
    }
    memcpy(slot, o->value, n + 1);
    return 0;
}

static int shopify_configure(const char *const *secrets, const size_t *lens, size_t nsecrets,
                             const luar_webhook_opt_t *opts, size_t nopts, void **out,
                             luar_buf_t *err)
{
    const luar_host_t *H = shopify_host;
    if (H == NULL)
        return LUAR_PLUGIN_EINVAL; /* not initialised: no table to write the reason with */
    shopify_cfg_t *cfg = calloc(1, sizeof *cfg);
    if (cfg == NULL)
        return LUAR_PLUGIN_ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < nopts && rc == 0; i++) {
        if (strcmp(opts[i].key, "topic") == 0) {
            rc = set_opt(cfg->topic, &opts[i], err);
        } else if (strcmp(opts[i].key, "shop") == 0) {
            rc = set_opt(cfg->shop, &opts[i], err);
        } else {
            H->buf_printf(err, "scheme shopify: unknown option \"%s\" (known, for signing: "
                               "topic, shop)", opts[i].key);
            rc = LUAR_PLUGIN_EINVAL;
        }
    }
    if (rc == 0)
        rc = luar_plugin_keys_copy(&cfg->keys, H, "shopify", secrets, lens, nsecrets, err);
    if (rc != 0) {
        shopify_free(cfg);
        return rc;
    }
    *out = cfg;
    return 0;
}

static int well_formed(const char *s, size_t n)
{
    if (n != SHOPIFY_B64_LEN || s[n - 1] != '=')
        return 0;
    for (size_t i = 0; i < n - 1; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/'))
            return 0;
    }
    return 1;
}

static luar_webhook_verdict_t shopify_verify(const void *p, const luar_webhook_msg_t *msg,
                                             double tolerance, double now, luar_buf_t *why)
{
    const shopify_cfg_t *cfg = p;
    const luar_host_t *H = shopify_host;
    (void)tolerance; /* nothing signed carries a time: see the comment at the top */
    (void)now;
    size_t sig_len = 0;
    const char *sig = H->webhook_header(msg, "x-shopify-hmac-sha256", &sig_len);
    while (sig != NULL && sig_len > 0 && (sig[sig_len - 1] == ' ' || sig[sig_len - 1] == '\t'))
        sig_len--;
    while (sig != NULL && sig_len > 0 && (sig[0] == ' ' || sig[0] == '\t')) {
        sig++;
        sig_len--;
    }
    if (sig == NULL || sig_len == 0) {
        H->buf_printf(why, "no x-shopify-hmac-sha256 header");
        return LUAR_WEBHOOK_MISSING;
    }
    if (!well_formed(sig, sig_len)) {
        H->buf_printf(why, "x-shopify-hmac-sha256 is malformed (expected the base64 of an "
                           "HMAC-SHA256)");
        return LUAR_WEBHOOK_INVALID;
    }
    luar_buf_t *text = H->buf_new(2 * SHOPIFY_B64_LEN);
    if (text == NULL) {
        H->buf_printf(why, "cannot compute the HMAC (out of memory)");
        return LUAR_WEBHOOK_INVALID;
    }
    int matched = 0;
    for (size_t k = 0; k < cfg->keys.n; k++) {
        unsigned char mac[SHOPIFY_MAC_LEN];
        size_t mac_len = 0, text_len = 0;
        H->buf_reset(text);
        int rc = H->hmac("sha256", cfg->keys.key[k].data, cfg->keys.key[k].len, msg->body,
                         msg->body_len, mac, &mac_len);
        if (rc == 0 && mac_len == SHOPIFY_MAC_LEN)
            rc = H->base64_encode(text, mac, mac_len);
        const char *expected = H->buf_data(text, &text_len);
        luar_plugin_wipe(mac, sizeof mac);
        if (rc != 0 || text_len != SHOPIFY_B64_LEN) {
            H->buf_free(text);
            H->buf_printf(why, "cannot compute the HMAC");
            return LUAR_WEBHOOK_INVALID;
        }
        matched |= H->equals(expected, sig, SHOPIFY_B64_LEN);
    }
    H->buf_free(text);
    if (!matched) {
        H->buf_printf(why, "x-shopify-hmac-sha256 does not match (%zu secret%s)", cfg->keys.n,
                      cfg->keys.n == 1 ? "" : "s");
        return LUAR_WEBHOOK_INVALID;
    }
    return LUAR_WEBHOOK_OK;
}

static int shopify_events(const void *p, const luar_webhook_msg_t *msg,
                          luar_webhook_event_t *out, size_t max, size_t *n,
                          luar_buf_t *scratch, luar_buf_t *why)
{
    const luar_host_t *H = shopify_host;
    (void)p;
    if (max < 1)
        return LUAR_PLUGIN_ETOOBIG;
    size_t id_len = 0, topic_len = 0, before = 0;
    const char *id = H->webhook_header(msg, "x-shopify-webhook-id", &id_len);
    if (id == NULL || id_len == 0)
        id = H->webhook_header(msg, "x-shopify-event-id", &id_len);
    if (id == NULL || id_len == 0) {
        H->buf_printf(why, "no x-shopify-webhook-id header");
        return LUAR_PLUGIN_EPARSE;
    }
    const char *topic = H->webhook_header(msg, "x-shopify-topic", &topic_len);
    if (topic == NULL || topic_len == 0) {
        H->buf_printf(why, "no x-shopify-topic header");
        return LUAR_PLUGIN_EPARSE;
    }
    /* "orders/create" → "orders.create", in scratch (the message is not ours to edit). */
    H->buf_data(scratch, &before);
    for (size_t i = 0; i < topic_len; i++) {
        char c = topic[i] == '/' ? '.' : topic[i];
        if (H->buf_append(scratch, &c, 1) != 0)
            return LUAR_PLUGIN_ENOMEM;
    }
    size_t len;
    const char *d = H->buf_data(scratch, &len);
    out[0] = (luar_webhook_event_t){
        .id = id,
        .id_len = id_len,
        .type = d + before,
        .type_len = topic_len,
        .json = msg->body,
        .json_len = msg->body_len,
    };
    *n = 1;
    return 0;
}

/* A random UUID (version 4), as Shopify's webhook ids look, for sign() without an id. */
static int random_uuid(char out[37])
{
    unsigned char b[16];
    if (shopify_host->random_bytes(b, sizeof b) != 0)
        return LUAR_PLUGIN_EIO;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
             b[13], b[14], b[15]);
    return 0;
}

static int shopify_sign(const void *p, const char *id, double timestamp, const char *body,
                        size_t body_len, luar_buf_t *out, luar_buf_t *err)
{
    const shopify_cfg_t *cfg = p;
    const luar_host_t *H = shopify_host;
    (void)timestamp; /* Shopify signs no time */
    char uuid[37];
    if (id == NULL) {
        if (random_uuid(uuid) != 0) {
            H->buf_printf(err, "scheme shopify: no random bytes for a webhook id");
            return LUAR_PLUGIN_EINVAL;
        }
        id = uuid;
    } else if (id[0] == '\0' || strlen(id) >= SHOPIFY_OPT_MAX || !header_safe(id)) {
        H->buf_printf(err, "scheme shopify: the id must be 1 to %d printable ASCII characters",
                      SHOPIFY_OPT_MAX - 1);
        return LUAR_PLUGIN_EINVAL;
    }
    unsigned char mac[SHOPIFY_MAC_LEN];
    size_t mac_len = 0;
    if (H->hmac("sha256", cfg->keys.key[0].data, cfg->keys.key[0].len, body, body_len, mac,
                &mac_len) != 0) {
        H->buf_printf(err, "scheme shopify: cannot compute the HMAC");
        return LUAR_PLUGIN_EINVAL;
    }
    int rc = H->buf_printf(out, "X-Shopify-Hmac-Sha256: ");
    if (rc == 0)
        rc = H->base64_encode(out, mac, mac_len);
    if (rc == 0)
        rc = H->buf_printf(out, "\r\nX-Shopify-Webhook-Id: %s\r\n", id);
    if (rc == 0 && cfg->topic[0])
        rc = H->buf_printf(out, "X-Shopify-Topic: %s\r\n", cfg->topic);
    if (rc == 0 && cfg->shop[0])
        rc = H->buf_printf(out, "X-Shopify-Shop-Domain: %s\r\n", cfg->shop);
    luar_plugin_wipe(mac, sizeof mac);
    return rc == 0 ? 0 : LUAR_PLUGIN_ENOMEM;
}

const luar_webhook_scheme_t shopify_scheme = {
    .name = "shopify",
    .signature_headers = shopify_signature_headers,
    .configure = shopify_configure,
    .free_cfg = shopify_free,
    .verify = shopify_verify,
    .events = shopify_events,
    .sign = shopify_sign,
};
