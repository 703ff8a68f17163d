/*
 * The `hmac` scheme: the generic "HMAC of the body in a header" that many providers use
 * (SPEC §8). Options:
 *
 *   header            the signature header, e.g. "X-Signature" (required)
 *   algorithm         "sha1", "sha256" (default) or "sha512"
 *   encoding          "hex" (default; either case accepted) or "base64"
 *   prefix            text before the signature, e.g. "sha256=" (default none)
 *   timestamp_header  a header holding unix seconds, checked against the tolerance
 *   signed_content    what is signed: a template of {body} and {timestamp} (default
 *                     "{body}"); {timestamp} needs timestamp_header
 *
 * Secrets are used as the bytes given. A header may hold several signatures separated by
 * commas or spaces, and the header may be repeated; one match against any secret suffices.
 * Like `standard`, the signature is checked before the timestamp's tolerance.
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
#include <strings.h>

#define HMAC_MAX_SEGMENTS 16

enum { SEG_TEXT, SEG_BODY, SEG_TIMESTAMP };

typedef struct hmac_seg {
    int kind;
    const char *text; /* SEG_TEXT: into cfg->signed_content */
    size_t len;
} hmac_seg_t;

typedef struct hmac_key {
    unsigned char *data;
    size_t len;
} hmac_key_t;

typedef struct hmac_cfg {
    char *header;           /* as the user wrote it (sign() prints it so) */
    char *signature_headers[2]; /* {header, NULL}, for cfg_signature_headers */
    char *timestamp_header; /* NULL: none */
    char *prefix;           /* "" when none */
    size_t prefix_len;
    char *signed_content;
    const char *alg; /* "sha1", "sha256", "sha512" */
    size_t mac_len;
    int base64;
    size_t nsegs;
    hmac_seg_t segs[HMAC_MAX_SEGMENTS];
    size_t nkeys;
    hmac_key_t keys[LUAR_WEBHOOK_MAX_SECRETS];
} hmac_cfg_t;

static void hmac_free(void *p)
{
    hmac_cfg_t *cfg = p;
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < cfg->nkeys; i++) {
        OPENSSL_cleanse(cfg->keys[i].data, cfg->keys[i].len);
        free(cfg->keys[i].data);
    }
    free(cfg->header);
    free(cfg->timestamp_header);
    free(cfg->prefix);
    free(cfg->signed_content);
    free(cfg);
}

/* A header name is an RFC 9110 token. */
static int is_token(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 0x20 || c >= 0x7f || strchr("\"(),/:;<=>?@[\\]{}", c))
            return 0;
    }
    return 1;
}

/* Splits cfg->signed_content into text, {body} and {timestamp} segments. */
static int parse_template(hmac_cfg_t *cfg, luar_buf_t *err)
{
    const char *s = cfg->signed_content;
    size_t nbody = 0, nts = 0;
    while (*s) {
        int kind = SEG_TEXT;
        size_t len;
        if (strncmp(s, "{body}", 6) == 0) {
            kind = SEG_BODY;
            len = 6;
            nbody++;
        } else if (strncmp(s, "{timestamp}", 11) == 0) {
            kind = SEG_TIMESTAMP;
            len = 11;
            nts++;
        } else if (*s == '{') {
            size_t n = strcspn(s + 1, "}");
            luar_buf_appendf(err, "scheme hmac: option signed_content has an unknown "
                                  "placeholder \"%.*s\" (known: {body}, {timestamp})",
                             (int)(n + 2 > 40 ? 40 : n + 2), s);
            return LUAR_EINVAL;
        } else {
            len = strcspn(s, "{");
        }
        if (cfg->nsegs == HMAC_MAX_SEGMENTS) {
            luar_buf_puts(err, "scheme hmac: option signed_content has too many parts");
            return LUAR_EINVAL;
        }
        cfg->segs[cfg->nsegs++] = (hmac_seg_t){kind, s, len};
        s += len;
    }
    if (nbody != 1) {
        luar_buf_puts(err, "scheme hmac: option signed_content must contain {body} once");
        return LUAR_EINVAL;
    }
    if (nts && cfg->timestamp_header == NULL) {
        luar_buf_puts(err, "scheme hmac: option signed_content uses {timestamp} but no "
                           "timestamp_header is set");
        return LUAR_EINVAL;
    }
    return 0;
}

static int set_string(char **slot, const char *value, luar_buf_t *err)
{
    free(*slot);
    *slot = strdup(value);
    return *slot ? 0 : LUAR_ENOMEM;
}

static int hmac_configure(const char *const *secrets, const size_t *lens, size_t nsecrets,
                          const luar_webhook_opt_t *opts, size_t nopts, void **out,
                          luar_buf_t *err)
{
    hmac_cfg_t *cfg = calloc(1, sizeof *cfg);
    if (cfg == NULL)
        return LUAR_ENOMEM;
    cfg->alg = "sha256";
    int rc = 0;
    for (size_t i = 0; i < nopts && rc == 0; i++) {
        const char *k = opts[i].key, *v = opts[i].value;
        if (strcmp(k, "header") == 0) {
            if (!is_token(v)) {
                luar_buf_appendf(err, "scheme hmac: option header \"%s\" is not a header "
                                      "name", v);
                rc = LUAR_EINVAL;
            } else {
                rc = set_string(&cfg->header, v, err);
            }
        } else if (strcmp(k, "timestamp_header") == 0) {
            if (!is_token(v)) {
                luar_buf_appendf(err, "scheme hmac: option timestamp_header \"%s\" is not a "
                                      "header name", v);
                rc = LUAR_EINVAL;
            } else {
                rc = set_string(&cfg->timestamp_header, v, err);
            }
        } else if (strcmp(k, "algorithm") == 0) {
            if (strcmp(v, "sha1") == 0 || strcmp(v, "sha256") == 0 ||
                strcmp(v, "sha512") == 0) {
                cfg->alg = strcmp(v, "sha1") == 0     ? "sha1"
                           : strcmp(v, "sha256") == 0 ? "sha256"
                                                      : "sha512";
            } else {
                luar_buf_appendf(err, "scheme hmac: option algorithm must be \"sha1\", "
                                      "\"sha256\" or \"sha512\", not \"%s\"", v);
                rc = LUAR_EINVAL;
            }
        } else if (strcmp(k, "encoding") == 0) {
            if (strcmp(v, "hex") == 0 || strcmp(v, "base64") == 0) {
                cfg->base64 = strcmp(v, "base64") == 0;
            } else {
                luar_buf_appendf(err, "scheme hmac: option encoding must be \"hex\" or "
                                      "\"base64\", not \"%s\"", v);
                rc = LUAR_EINVAL;
            }
        } else if (strcmp(k, "prefix") == 0) {
            rc = set_string(&cfg->prefix, v, err);
        } else if (strcmp(k, "signed_content") == 0) {
            rc = set_string(&cfg->signed_content, v, err);
        } else {
            luar_buf_appendf(err, "scheme hmac: unknown option \"%s\" (known: header, "
                                  "algorithm, encoding, prefix, timestamp_header, "
                                  "signed_content)", k);
            rc = LUAR_EINVAL;
        }
    }
    if (rc == 0 && cfg->header == NULL) {
        luar_buf_puts(err, "scheme hmac: option header is required (e.g. \"X-Signature\")");
        rc = LUAR_EINVAL;
    }
    cfg->signature_headers[0] = cfg->header;
    if (rc == 0 && cfg->prefix == NULL)
        rc = set_string(&cfg->prefix, "", err);
    if (rc == 0 && cfg->signed_content == NULL)
        rc = set_string(&cfg->signed_content, "{body}", err);
    if (rc == 0)
        rc = parse_template(cfg, err);
    if (rc == 0) {
        cfg->prefix_len = strlen(cfg->prefix);
        uint8_t md[LUAR_CRYPTO_MAX_MD];
        rc = luar_crypto_hmac(cfg->alg, "k", 1, "", 0, md, &cfg->mac_len);
    }
    for (size_t i = 0; i < nsecrets && rc == 0; i++) {
        if (lens[i] == 0) {
            luar_buf_appendf(err, "scheme hmac: secret %zu is empty", i + 1);
            rc = LUAR_EINVAL;
            break;
        }
        cfg->keys[i].data = malloc(lens[i]);
        if (cfg->keys[i].data == NULL) {
            rc = LUAR_ENOMEM;
            break;
        }
        memcpy(cfg->keys[i].data, secrets[i], lens[i]);
        cfg->keys[i].len = lens[i];
        cfg->nkeys = i + 1;
    }
    if (rc) {
        hmac_free(cfg);
        return rc;
    }
    *out = cfg;
    return 0;
}

/* HMAC of the signed content for `key` and timestamp text `ts`. */
static int compute(const hmac_cfg_t *cfg, const hmac_key_t *key, const char *ts,
                   size_t ts_len, const char *body, size_t body_len, uint8_t *mac)
{
    luar_crypto_part_t parts[HMAC_MAX_SEGMENTS];
    for (size_t i = 0; i < cfg->nsegs; i++) {
        const hmac_seg_t *s = &cfg->segs[i];
        if (s->kind == SEG_BODY)
            parts[i] = (luar_crypto_part_t){body, body_len};
        else if (s->kind == SEG_TIMESTAMP)
            parts[i] = (luar_crypto_part_t){ts, ts_len};
        else
            parts[i] = (luar_crypto_part_t){s->text, s->len};
    }
    size_t n = 0;
    return luar_crypto_hmac_parts(cfg->alg, key->data, key->len, parts, cfg->nsegs, mac, &n);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/*
 * Decodes one signature entry (after its prefix) into `raw` (mac_len bytes). Returns 1 when
 * it is well-formed: 2*mac_len hex digits, or the padded base64 of mac_len bytes.
 */
static int decode_entry(const hmac_cfg_t *cfg, const char *s, size_t n, uint8_t *raw)
{
    if (!cfg->base64) {
        if (n != 2 * cfg->mac_len)
            return 0;
        for (size_t i = 0; i < cfg->mac_len; i++) {
            int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
            if (hi < 0 || lo < 0)
                return 0;
            raw[i] = (uint8_t)(hi << 4 | lo);
        }
        return 1;
    }
    /* EVP_DecodeBlock wants whole quanta and counts padding as zero bytes. */
    size_t want = 4 * ((cfg->mac_len + 2) / 3);
    unsigned char tmp[4 * ((LUAR_CRYPTO_MAX_MD + 2) / 3)];
    if (n != want)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '+' || c == '/' || (c == '=' && i >= n - 2);
        if (!ok || (c != '=' && i > 0 && s[i - 1] == '='))
            return 0;
    }
    int got = EVP_DecodeBlock(tmp, (const unsigned char *)s, (int)n);
    if (got < (int)cfg->mac_len)
        return 0;
    memcpy(raw, tmp, cfg->mac_len);
    return 1;
}

/* The next entry of a signature header value from *pos: separated by ',' or spaces. */
static int next_entry(const char *v, size_t len, size_t *pos, const char **e, size_t *elen)
{
    size_t i = *pos;
    while (i < len && (v[i] == ',' || v[i] == ' ' || v[i] == '\t'))
        i++;
    size_t start = i;
    while (i < len && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
        i++;
    *pos = i;
    *e = v + start;
    *elen = i - start;
    return i > start;
}

/* Strips the configured prefix (compared without regard to case); 0 when it is absent. */
static int strip_prefix(const hmac_cfg_t *cfg, const char **e, size_t *elen)
{
    if (*elen < cfg->prefix_len || strncasecmp(*e, cfg->prefix, cfg->prefix_len) != 0)
        return 0;
    *e += cfg->prefix_len;
    *elen -= cfg->prefix_len;
    return 1;
}

static luar_webhook_verdict_t hmac_verify(const void *p, const luar_webhook_msg_t *msg,
                                          double tolerance, double now, luar_buf_t *why)
{
    const hmac_cfg_t *cfg = p;
    size_t hlen = strlen(cfg->header);
    size_t nheaders = 0;
    for (size_t i = 0; i < msg->nheaders; i++) {
        const luar_http_header_t *h = &msg->headers[i];
        if (h->name_len == hlen && strncasecmp(h->name, cfg->header, hlen) == 0 &&
            h->value_len > 0)
            nheaders++;
    }
    if (nheaders == 0) {
        luar_buf_appendf(why, "no %s header", cfg->header);
        return LUAR_WEBHOOK_MISSING;
    }
    const char *ts = "";
    size_t ts_len = 0;
    if (cfg->timestamp_header) {
        ts = luar_webhook_header(msg, cfg->timestamp_header, &ts_len);
        if (ts == NULL || ts_len == 0) {
            luar_buf_appendf(why, "no %s header", cfg->timestamp_header);
            return LUAR_WEBHOOK_MISSING;
        }
        luar_webhook_verdict_t v = luar_webhook_check_timestamp(
            cfg->timestamp_header, ts, ts_len, INFINITY, now, NULL, why);
        if (v != LUAR_WEBHOOK_OK)
            return v;
    }
    uint8_t expected[LUAR_WEBHOOK_MAX_SECRETS][LUAR_CRYPTO_MAX_MD];
    for (size_t k = 0; k < cfg->nkeys; k++) {
        if (compute(cfg, &cfg->keys[k], ts, ts_len, msg->body, msg->body_len, expected[k])) {
            luar_buf_puts(why, "cannot compute the HMAC");
            return LUAR_WEBHOOK_INVALID;
        }
    }
    size_t nwell = 0;
    int matched = 0;
    for (size_t i = 0; i < msg->nheaders; i++) {
        const luar_http_header_t *h = &msg->headers[i];
        if (h->name_len != hlen || strncasecmp(h->name, cfg->header, hlen) != 0)
            continue;
        size_t pos = 0, elen;
        const char *e;
        while (next_entry(h->value, h->value_len, &pos, &e, &elen)) {
            uint8_t raw[LUAR_CRYPTO_MAX_MD];
            if (!strip_prefix(cfg, &e, &elen) || !decode_entry(cfg, e, elen, raw))
                continue;
            nwell++;
            for (size_t k = 0; k < cfg->nkeys; k++)
                matched |= luar_crypto_equals(raw, cfg->mac_len, expected[k], cfg->mac_len);
        }
    }
    OPENSSL_cleanse(expected, sizeof expected);
    if (nwell == 0) {
        luar_buf_appendf(why, "%s is malformed (expected %s<%s %s HMAC>)", cfg->header,
                         cfg->prefix, cfg->base64 ? "base64" : "hex", cfg->alg);
        return LUAR_WEBHOOK_INVALID;
    }
    if (!matched) {
        luar_buf_appendf(why, "no signature in %s matches (%zu signature%s, %zu secret%s)",
                         cfg->header, nwell, nwell == 1 ? "" : "s", cfg->nkeys,
                         cfg->nkeys == 1 ? "" : "s");
        return LUAR_WEBHOOK_INVALID;
    }
    if (cfg->timestamp_header)
        return luar_webhook_check_timestamp(cfg->timestamp_header, ts, ts_len, tolerance, now,
                                            NULL, why);
    return LUAR_WEBHOOK_OK;
}

/* The body's member `key` when it is a non-empty string (decoded into scratch) or a number. */
static int body_member(const luar_webhook_msg_t *msg, const char *key, int numbers,
                       luar_buf_t *scratch, size_t *off, size_t *len)
{
    const char *v;
    size_t vlen;
    if (!luar_json_member(msg->body, msg->body_len, key, &v, &vlen))
        return 0;
    *off = scratch->len;
    if (v[0] == '"') {
        if (luar_json_unquote(v, vlen, scratch) != 0 || scratch->len == *off)
            return 0;
    } else if (numbers && (v[0] == '-' || (v[0] >= '0' && v[0] <= '9'))) {
        if (luar_buf_append(scratch, v, vlen) != 0)
            return 0;
    } else {
        return 0;
    }
    *len = scratch->len - *off;
    return 1;
}

static int hmac_events(const void *p, const luar_webhook_msg_t *msg, luar_webhook_event_t *out,
                       size_t max, size_t *n, luar_buf_t *scratch, luar_buf_t *why)
{
    const hmac_cfg_t *cfg = p;
    if (luar_json_validate(msg->body, msg->body_len, LUAR_JSON_MAX_DEPTH, NULL) != 0) {
        luar_buf_puts(why, "body is not JSON: ");
        luar_json_validate(msg->body, msg->body_len, LUAR_JSON_MAX_DEPTH, why);
        return LUAR_EPARSE;
    }
    if (max < 1) {
        luar_buf_puts(why, "too many events");
        return LUAR_ETOOBIG;
    }
    /* Offsets first: scratch may move while it grows. */
    size_t id_off = 0, id_len = 0, type_off = 0, type_len = 0;
    int have_id = body_member(msg, "id", 1, scratch, &id_off, &id_len);
    int have_type = body_member(msg, "type", 0, scratch, &type_off, &type_len);
    const char *id = NULL;
    if (!have_id) {
        /* No id in the body: the first well-formed signature names the event. */
        size_t hlen = 0, pos = 0, elen = 0;
        const char *h = luar_webhook_header(msg, cfg->header, &hlen);
        const char *e = NULL;
        while (h && next_entry(h, hlen, &pos, &e, &elen)) {
            if (strip_prefix(cfg, &e, &elen))
                break;
            e = NULL;
        }
        if (e == NULL || elen == 0) {
            luar_buf_appendf(why, "no %s header to name the event", cfg->header);
            return LUAR_EPARSE;
        }
        id = e;
        id_len = elen;
    }
    out[0] = (luar_webhook_event_t){
        .id = have_id ? scratch->data + id_off : id,
        .id_len = id_len,
        .type = have_type ? scratch->data + type_off : "webhook",
        .type_len = have_type ? type_len : 7,
        .json = msg->body,
        .json_len = msg->body_len,
    };
    *n = 1;
    return 0;
}

static int hmac_sign(const void *p, const char *id, double timestamp, const char *body,
                     size_t body_len, luar_buf_t *out, luar_buf_t *err)
{
    const hmac_cfg_t *cfg = p;
    (void)id;
    if (!(timestamp >= 0) || timestamp > 1e15) {
        luar_buf_puts(err, "scheme hmac: the timestamp is not a unix time");
        return LUAR_EINVAL;
    }
    char ts[24];
    int ts_len = snprintf(ts, sizeof ts, "%lld", (long long)floor(timestamp));
    uint8_t mac[LUAR_CRYPTO_MAX_MD];
    if (compute(cfg, &cfg->keys[0], ts, (size_t)ts_len, body, body_len, mac)) {
        luar_buf_puts(err, "scheme hmac: cannot compute the HMAC");
        return LUAR_EINVAL;
    }
    int rc = luar_buf_appendf(out, "%s: %s", cfg->header, cfg->prefix);
    if (rc == 0)
        rc = cfg->base64 ? luar_base64_encode(out, mac, cfg->mac_len)
                         : luar_hex_encode(out, mac, cfg->mac_len);
    if (rc == 0)
        rc = luar_buf_puts(out, "\r\n");
    if (rc == 0 && cfg->timestamp_header)
        rc = luar_buf_appendf(out, "%s: %s\r\n", cfg->timestamp_header, ts);
    OPENSSL_cleanse(mac, sizeof mac);
    return rc;
}

static const char *const *hmac_cfg_signature_headers(const void *p)
{
    const hmac_cfg_t *cfg = p;
    return (const char *const *)cfg->signature_headers;
}

const luar_webhook_scheme_t luar_webhook_scheme_hmac = {
    .name = "hmac",
    .signature_headers = NULL, /* the header is an option: known per configuration */
    .cfg_signature_headers = hmac_cfg_signature_headers,
    .configure = hmac_configure,
    .free_cfg = hmac_free,
    .verify = hmac_verify,
    .events = hmac_events,
    .sign = hmac_sign,
};
