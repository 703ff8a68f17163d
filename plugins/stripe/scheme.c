/*
 * The `stripe` webhook scheme (https://docs.stripe.com/webhooks#verify-manually). Stripe
 * signs each delivery with
 *
 *   Stripe-Signature: t=1700000000,v1=<hex HMAC-SHA256>[,v1=<…>][,v0=<…>]
 *
 * over the signed payload "<t>.<body>", keyed by the endpoint's signing secret exactly as
 * the dashboard shows it ("whsec_…": the bytes of the string, not decoded). While a secret
 * is being rolled Stripe sends one v1 per active secret; a route may also hold several
 * secrets (an old and a new endpoint). One v1 matching one secret suffices. v0 (test-mode
 * HMAC-SHA1 signatures) and unknown elements are ignored, as the official libraries do.
 *
 * As in the host's `standard` scheme, the signature is checked before the timestamp's
 * tolerance, so "expired" is only reported for a request Stripe really signed (a replay or
 * a skewed clock), never for a forgery. The tolerance applies both ways (the official
 * libraries only refuse old timestamps; a timestamp from the future is as suspicious).
 *
 * Event id and type are the body's "id" and "type" (SPEC §8).
 */
#include "stripe.h"
#include "luar/plugin_keys.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAC_LEN 32       /* HMAC-SHA256 */
#define MAC_HEX_LEN 64
#define STACK_PAYLOAD 8192

typedef struct stripe_cfg {
    luar_plugin_keys_t keys;
} stripe_cfg_t;

static const char *const signature_headers[] = {"stripe-signature", NULL};

static void scheme_free(void *p)
{
    stripe_cfg_t *cfg = p;
    if (cfg == NULL)
        return;
    luar_plugin_keys_free(&cfg->keys);
    free(cfg);
}

static int scheme_configure(const char *const *secrets, const size_t *lens, size_t nsecrets,
                            const luar_webhook_opt_t *opts, size_t nopts, void **out,
                            luar_buf_t *err)
{
    const luar_host_t *h = stripe_host;
    if (h == NULL)
        return LUAR_PLUGIN_EINVAL; /* the loader always runs init first */
    if (nopts > 0) {
        h->buf_printf(err, "scheme stripe: unknown option \"%s\" (the scheme takes none)",
                      opts[0].key);
        return LUAR_PLUGIN_EINVAL;
    }
    if (nsecrets == 0 || nsecrets > LUAR_WEBHOOK_MAX_SECRETS) {
        h->buf_printf(err, "scheme stripe: give 1 to %d secrets, not %zu",
                      LUAR_WEBHOOK_MAX_SECRETS, nsecrets);
        return LUAR_PLUGIN_EINVAL;
    }
    stripe_cfg_t *cfg = calloc(1, sizeof *cfg);
    if (cfg == NULL)
        return LUAR_PLUGIN_ENOMEM;
    int rc = luar_plugin_keys_copy(&cfg->keys, h, "stripe", secrets, lens, nsecrets, err);
    if (rc != 0) {
        scheme_free(cfg);
        return rc;
    }
    *out = cfg;
    return 0;
}

/* Lower-case hex of HMAC-SHA256(secret, payload) into hex (65 bytes). */
static int mac_hex(const luar_plugin_key_t *s, const char *payload, size_t len,
                   char hex[MAC_HEX_LEN + 1])
{
    static const char digits[] = "0123456789abcdef";
    unsigned char mac[64];
    size_t mac_len = 0;
    int rc = stripe_host->hmac("sha256", s->data, s->len, payload, len, mac, &mac_len);
    if (rc == 0 && mac_len != MAC_LEN)
        rc = LUAR_PLUGIN_EINVAL;
    if (rc == 0) {
        for (size_t i = 0; i < MAC_LEN; i++) {
            hex[2 * i] = digits[mac[i] >> 4];
            hex[2 * i + 1] = digits[mac[i] & 15];
        }
        hex[MAC_HEX_LEN] = '\0';
    }
    luar_plugin_wipe(mac, sizeof mac);
    return rc;
}

/*
 * The signed payload "<t>.<body>": in `stack` when it fits, else in a heap block (*heap,
 * freed by the caller). The ABI's hmac takes one buffer, so the two parts are joined here.
 */
static const char *signed_payload(long long t, const char *body, size_t body_len,
                                  char stack[STACK_PAYLOAD], char **heap, size_t *len)
{
    char ts[24];
    int tl = snprintf(ts, sizeof ts, "%lld.", t);
    *len = (size_t)tl + body_len;
    char *p = stack;
    *heap = NULL;
    if (*len > STACK_PAYLOAD) {
        p = *heap = malloc(*len);
        if (p == NULL)
            return NULL;
    }
    memcpy(p, ts, (size_t)tl);
    if (body_len)
        memcpy(p + tl, body, body_len);
    return p;
}

/* One "key=value" element of the header, trimmed. */
typedef struct element {
    const char *key, *val;
    size_t key_len, val_len;
} element_t;

/* Reads the element starting at *i (up to the next ','); returns 0, or -1 when it has no
 * '=' or an empty key. Advances *i past the comma. */
static int next_element(const char *s, size_t len, size_t *i, element_t *e)
{
    size_t start = *i, end = start;
    while (end < len && s[end] != ',')
        end++;
    *i = end < len ? end + 1 : end;
    while (start < end && (s[start] == ' ' || s[start] == '\t'))
        start++;
    while (end > start && (s[end - 1] == ' ' || s[end - 1] == '\t'))
        end--;
    const char *eq = memchr(s + start, '=', end - start);
    if (eq == NULL || eq == s + start)
        return -1;
    e->key = s + start;
    e->key_len = (size_t)(eq - e->key);
    e->val = eq + 1;
    e->val_len = (size_t)(s + end - e->val);
    return 0;
}

static int is_key(const element_t *e, const char *k)
{
    return e->key_len == strlen(k) && memcmp(e->key, k, e->key_len) == 0;
}

static luar_webhook_verdict_t scheme_verify(const void *p, const luar_webhook_msg_t *msg,
                                            double tolerance, double now, luar_buf_t *why)
{
    const stripe_cfg_t *cfg = p;
    const luar_host_t *h = stripe_host;
    size_t len = 0;
    const char *sig = h->webhook_header(msg, "stripe-signature", &len);
    if (sig == NULL || len == 0) {
        h->buf_printf(why, "no stripe-signature header");
        return LUAR_WEBHOOK_MISSING;
    }
    /* First pass: the shape of the header, the timestamp, how many v1 there are. */
    const char *t = NULL;
    size_t t_len = 0, nv1 = 0, nelem = 0;
    for (size_t i = 0; i < len;) {
        element_t e;
        nelem++;
        if (next_element(sig, len, &i, &e) != 0) {
            h->buf_printf(why, "stripe-signature is malformed: element %zu is not key=value",
                          nelem);
            return LUAR_WEBHOOK_INVALID;
        }
        if (is_key(&e, "t")) {
            if (t != NULL) {
                h->buf_printf(why, "stripe-signature is malformed: more than one t=");
                return LUAR_WEBHOOK_INVALID;
            }
            t = e.val;
            t_len = e.val_len;
        } else if (is_key(&e, "v1")) {
            nv1++;
        }
    }
    if (t == NULL) {
        h->buf_printf(why, "stripe-signature has no t= timestamp");
        return LUAR_WEBHOOK_MISSING;
    }
    long long ts = 0;
    luar_webhook_verdict_t v = h->webhook_check_timestamp("stripe-signature t", t, t_len,
                                                          INFINITY, now, &ts, why);
    if (v != LUAR_WEBHOOK_OK)
        return v;
    if (nv1 == 0) {
        h->buf_printf(why, "stripe-signature holds no v1 signature");
        return LUAR_WEBHOOK_INVALID;
    }

    char stack[STACK_PAYLOAD], *heap = NULL;
    size_t plen = 0;
    const char *payload = signed_payload(ts, msg->body, msg->body_len, stack, &heap, &plen);
    if (payload == NULL) {
        h->buf_printf(why, "out of memory for the signed payload");
        return LUAR_WEBHOOK_INVALID;
    }
    char expected[LUAR_WEBHOOK_MAX_SECRETS][MAC_HEX_LEN + 1];
    int failed = 0;
    for (size_t k = 0; k < cfg->keys.n && !failed; k++)
        failed = mac_hex(&cfg->keys.key[k], payload, plen, expected[k]) != 0;
    free(heap);
    if (failed) {
        luar_plugin_wipe(expected, sizeof expected);
        h->buf_printf(why, "cannot compute HMAC-SHA256");
        return LUAR_WEBHOOK_INVALID;
    }
    /* Second pass: every v1 against every secret, all compared (no early exit). */
    int matched = 0;
    for (size_t i = 0; i < len;) {
        element_t e;
        next_element(sig, len, &i, &e);
        if (!is_key(&e, "v1"))
            continue;
        for (size_t k = 0; k < cfg->keys.n; k++) {
            if (e.val_len == MAC_HEX_LEN)
                matched |= h->equals(e.val, expected[k], MAC_HEX_LEN);
        }
    }
    luar_plugin_wipe(expected, sizeof expected);
    if (!matched) {
        h->buf_printf(why, "no signature in stripe-signature matches (%zu v1 signature%s, "
                           "%zu secret%s)",
                      nv1, nv1 == 1 ? "" : "s", cfg->keys.n, cfg->keys.n == 1 ? "" : "s");
        return LUAR_WEBHOOK_INVALID;
    }
    return h->webhook_check_timestamp("stripe-signature t", t, t_len, tolerance, now, NULL, why);
}

/* Appends the decoded string member `name` of the body to scratch; its offset and length
 * in *off / *n. Returns 0 or LUAR_PLUGIN_EPARSE with a reason. */
static int string_member(const luar_webhook_msg_t *msg, const char *name, luar_buf_t *scratch,
                         size_t *off, size_t *n, luar_buf_t *why)
{
    const luar_host_t *h = stripe_host;
    const char *raw = NULL;
    size_t raw_len = 0;
    if (!h->json_member(msg->body, msg->body_len, name, &raw, &raw_len)) {
        h->buf_printf(why, "the event has no \"%s\"", name);
        return LUAR_PLUGIN_EPARSE;
    }
    h->buf_data(scratch, off);
    int rc = raw[0] == '"' ? h->json_unquote(raw, raw_len, scratch) : LUAR_PLUGIN_EPARSE;
    size_t end = 0;
    h->buf_data(scratch, &end);
    if (rc == 0 && end == *off)
        rc = LUAR_PLUGIN_EPARSE;
    if (rc) {
        h->buf_printf(why, "the event's \"%s\" is not a non-empty string", name);
        return rc == LUAR_PLUGIN_ENOMEM ? rc : LUAR_PLUGIN_EPARSE;
    }
    *n = end - *off;
    return 0;
}

static int scheme_events(const void *p, const luar_webhook_msg_t *msg, luar_webhook_event_t *out,
                         size_t max, size_t *n, luar_buf_t *scratch, luar_buf_t *why)
{
    (void)p;
    const luar_host_t *h = stripe_host;
    luar_buf_t *reason = h->buf_new(512);
    if (reason == NULL)
        return LUAR_PLUGIN_ENOMEM;
    int invalid = h->json_validate(msg->body, msg->body_len, 0, reason) != 0;
    if (invalid)
        h->buf_printf(why, "the body is not JSON: %s", h->buf_data(reason, NULL));
    h->buf_free(reason);
    if (invalid)
        return LUAR_PLUGIN_EPARSE;
    size_t i = 0;
    while (i < msg->body_len && strchr(" \t\r\n", msg->body[i]) != NULL)
        i++;
    if (i == msg->body_len || msg->body[i] != '{') {
        h->buf_printf(why, "the body is not a JSON object");
        return LUAR_PLUGIN_EPARSE;
    }
    size_t id_off, id_len, type_off, type_len;
    int rc = string_member(msg, "id", scratch, &id_off, &id_len, why);
    if (rc == 0)
        rc = string_member(msg, "type", scratch, &type_off, &type_len, why);
    if (rc)
        return rc;
    if (max < 1) {
        stripe_host->buf_printf(why, "too many events");
        return LUAR_PLUGIN_ETOOBIG;
    }
    /* Pointers only now: appending may have moved the scratch buffer. */
    const char *base = stripe_host->buf_data(scratch, NULL);
    out[0] = (luar_webhook_event_t){
        .id = base + id_off,
        .id_len = id_len,
        .type = base + type_off,
        .type_len = type_len,
        .json = msg->body,
        .json_len = msg->body_len,
    };
    *n = 1;
    return 0;
}

static int scheme_sign(const void *p, const char *id, double timestamp, const char *body,
                       size_t body_len, luar_buf_t *out, luar_buf_t *err)
{
    (void)id; /* a Stripe event carries its id in the body */
    const stripe_cfg_t *cfg = p;
    const luar_host_t *h = stripe_host;
    if (!(timestamp >= 0) || timestamp > 1e15) {
        h->buf_printf(err, "scheme stripe: the timestamp is not a unix time");
        return LUAR_PLUGIN_EINVAL;
    }
    long long ts = (long long)floor(timestamp);
    char stack[STACK_PAYLOAD], *heap = NULL, hex[MAC_HEX_LEN + 1];
    size_t plen = 0;
    const char *payload = signed_payload(ts, body, body_len, stack, &heap, &plen);
    if (payload == NULL)
        return LUAR_PLUGIN_ENOMEM;
    int rc = mac_hex(&cfg->keys.key[0], payload, plen, hex);
    free(heap);
    if (rc) {
        h->buf_printf(err, "scheme stripe: cannot compute HMAC-SHA256");
        return rc;
    }
    return h->buf_printf(out, "Stripe-Signature: t=%lld,v1=%s\r\n", ts, hex);
}

const luar_webhook_scheme_t stripe_scheme = {
    .name = "stripe",
    .signature_headers = signature_headers,
    .configure = scheme_configure,
    .free_cfg = scheme_free,
    .verify = scheme_verify,
    .events = scheme_events,
    .sign = scheme_sign,
};
