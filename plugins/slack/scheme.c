/*
 * The `slack` scheme: Slack's signed requests (Events API, interactivity, slash commands).
 * A request carries
 *
 *   X-Slack-Request-Timestamp: 1531420618
 *   X-Slack-Signature:         v0=<hex HMAC-SHA256 of "v0:<timestamp>:<body>">
 *
 * keyed with the app's signing secret (used as the bytes given; no options). Like the host's
 * schemes, the signature is checked before the timestamp's tolerance (Slack's own is five
 * minutes, the route's default 300 s, past and future), so "expired" is only reported for a
 * request that was genuinely signed. One matching signature against any configured secret
 * suffices (rotation).
 *
 * Events (SPEC §8), read by events():
 * - JSON bodies (Events API). `url_verification` is answered at once with
 *   {"challenge": …} and never enqueued. `event_callback` (and anything else carrying an
 *   `event_id`): id `event_id`, type `event.type` ("app_mention"); Slack's retries
 *   (X-Slack-Retry-Num) repeat the event_id, so the route's dedupe drops them. Other
 *   bodies (`app_rate_limited`): the top-level `type`, id a digest of the body.
 * - application/x-www-form-urlencoded bodies. `payload=<json>` (interactivity): the event
 *   is the decoded payload, type `payload.type` ("block_actions", "view_submission", …).
 *   `command=/name` (slash commands): the event is the form as a JSON object of strings,
 *   type "command.<name>" ("command.deploy"). Both: id the `trigger_id` (Slack's id of one
 *   user interaction) when present, else a digest of the body. `ssl_check=1` (Slack
 *   checking a slash command's URL) is answered 200 at once, like url_verification.
 */
#include "slack.h"
#include "luar/plugin_keys.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLACK_MAC_LEN 32 /* HMAC-SHA256 */
#define SLACK_TS_MAX 32  /* longest timestamp header signed or verified */

typedef struct slack_cfg {
    luar_plugin_keys_t keys;
} slack_cfg_t;

static const char *const slack_signature_headers[] = {"x-slack-signature", NULL};

/* Overwrites secret bytes in a way the compiler may not drop. */
static void slack_free(void *p)
{
    slack_cfg_t *cfg = p;
    if (cfg == NULL)
        return;
    luar_plugin_keys_free(&cfg->keys);
    free(cfg);
}

static int slack_configure(const char *const *secrets, const size_t *lens, size_t nsecrets,
                           const luar_webhook_opt_t *opts, size_t nopts, void **out,
                           luar_buf_t *err)
{
    const luar_host_t *H = slack_host;
    if (H == NULL)
        return LUAR_PLUGIN_EINVAL; /* not initialised: no table to write the reason with */
    if (nopts > 0) {
        H->buf_printf(err, "scheme slack: unknown option \"%s\" (the scheme takes none)",
                      opts[0].key);
        return LUAR_PLUGIN_EINVAL;
    }
    slack_cfg_t *cfg = calloc(1, sizeof *cfg);
    if (cfg == NULL)
        return LUAR_PLUGIN_ENOMEM;
    int rc = luar_plugin_keys_copy(&cfg->keys, H, "slack", secrets, lens, nsecrets, err);
    if (rc != 0) {
        slack_free(cfg);
        return rc;
    }
    *out = cfg;
    return 0;
}

/*
 * The signed text "v0:<ts>:<body>", in a new allocation the caller frees (NULL when out of
 * memory): the host's hmac takes one buffer, so the text is assembled once per request
 * (the body is at most the route's max_body) and MACed under each secret.
 */
static char *signed_text(const char *ts, size_t ts_len, const char *body, size_t body_len,
                         size_t *n)
{
    if (body_len > SIZE_MAX - SLACK_TS_MAX - 8)
        return NULL;
    *n = 3 + ts_len + 1 + body_len;
    char *text = malloc(*n);
    if (text == NULL)
        return NULL;
    memcpy(text, "v0:", 3);
    memcpy(text + 3, ts, ts_len);
    text[3 + ts_len] = ':';
    if (body_len)
        memcpy(text + 4 + ts_len, body, body_len);
    return text;
}

static int compute(const luar_plugin_key_t *key, const char *text, size_t n, unsigned char *mac)
{
    size_t mac_len = 0;
    int rc = slack_host->hmac("sha256", key->data, key->len, text, n, mac, &mac_len);
    return rc == 0 && mac_len == SLACK_MAC_LEN ? 0 : LUAR_PLUGIN_EINVAL;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decodes "v0=<64 hex>" into raw; 1 when well-formed. */
static int decode_entry(const char *e, size_t n, unsigned char *raw)
{
    if (n != 3 + 2 * SLACK_MAC_LEN || memcmp(e, "v0=", 3) != 0)
        return 0;
    for (size_t i = 0; i < SLACK_MAC_LEN; i++) {
        int hi = hexval(e[3 + 2 * i]), lo = hexval(e[4 + 2 * i]);
        if (hi < 0 || lo < 0)
            return 0;
        raw[i] = (unsigned char)(hi << 4 | lo);
    }
    return 1;
}

static luar_webhook_verdict_t slack_verify(const void *p, const luar_webhook_msg_t *msg,
                                           double tolerance, double now, luar_buf_t *why)
{
    const slack_cfg_t *cfg = p;
    const luar_host_t *H = slack_host;
    size_t sig_len = 0, ts_len = 0;
    const char *sig = H->webhook_header(msg, "x-slack-signature", &sig_len);
    if (sig == NULL || sig_len == 0) {
        H->buf_printf(why, "no x-slack-signature header");
        return LUAR_WEBHOOK_MISSING;
    }
    const char *ts = H->webhook_header(msg, "x-slack-request-timestamp", &ts_len);
    if (ts == NULL || ts_len == 0) {
        H->buf_printf(why, "no x-slack-request-timestamp header");
        return LUAR_WEBHOOK_MISSING;
    }
    luar_webhook_verdict_t v = H->webhook_check_timestamp("x-slack-request-timestamp", ts,
                                                          ts_len, INFINITY, now, NULL, why);
    if (v != LUAR_WEBHOOK_OK)
        return v;
    if (ts_len > SLACK_TS_MAX) {
        H->buf_printf(why, "x-slack-request-timestamp is longer than %d bytes", SLACK_TS_MAX);
        return LUAR_WEBHOOK_INVALID;
    }
    unsigned char expected[LUAR_WEBHOOK_MAX_SECRETS][SLACK_MAC_LEN];
    size_t text_len = 0;
    char *text = signed_text(ts, ts_len, msg->body, msg->body_len, &text_len);
    int rc = text == NULL ? LUAR_PLUGIN_ENOMEM : 0;
    for (size_t k = 0; rc == 0 && k < cfg->keys.n; k++)
        rc = compute(&cfg->keys.key[k], text, text_len, expected[k]);
    free(text);
    if (rc != 0) {
        luar_plugin_wipe(expected, sizeof expected);
        H->buf_printf(why, "cannot compute the HMAC");
        return LUAR_WEBHOOK_INVALID;
    }
    /* Slack sends one v0= value; entries separated by commas or spaces are each tried, so
     * a future "v1=…" beside it does not break verification. */
    size_t nwell = 0, i = 0;
    int matched = 0;
    while (i < sig_len) {
        while (i < sig_len && (sig[i] == ',' || sig[i] == ' ' || sig[i] == '\t'))
            i++;
        size_t start = i;
        while (i < sig_len && sig[i] != ',' && sig[i] != ' ' && sig[i] != '\t')
            i++;
        unsigned char raw[SLACK_MAC_LEN];
        if (i == start || !decode_entry(sig + start, i - start, raw))
            continue;
        nwell++;
        for (size_t k = 0; k < cfg->keys.n; k++)
            matched |= H->equals(raw, expected[k], SLACK_MAC_LEN);
    }
    luar_plugin_wipe(expected, sizeof expected);
    if (nwell == 0) {
        H->buf_printf(why, "x-slack-signature is malformed (expected v0=<hex HMAC-SHA256>)");
        return LUAR_WEBHOOK_INVALID;
    }
    if (!matched) {
        H->buf_printf(why, "no signature in x-slack-signature matches (%zu secret%s)",
                      cfg->keys.n, cfg->keys.n == 1 ? "" : "s");
        return LUAR_WEBHOOK_INVALID;
    }
    return H->webhook_check_timestamp("x-slack-request-timestamp", ts, ts_len, tolerance, now,
                                      NULL, why);
}

/* ---- events ----------------------------------------------------------------------------- */

/* A span of the scratch buffer, as offsets: the buffer may move while it grows. */
typedef struct span {
    size_t off, len;
} span_t;

static size_t scratch_len(const luar_buf_t *scratch)
{
    size_t len = 0;
    slack_host->buf_data(scratch, &len);
    return len;
}

/* Appends `text` to scratch as a span. */
static int put_span(luar_buf_t *scratch, const char *text, size_t n, span_t *out)
{
    out->off = scratch_len(scratch);
    out->len = n;
    return slack_host->buf_append(scratch, text, n) == 0 ? 0 : LUAR_PLUGIN_ENOMEM;
}

/* Decodes the JSON string member `key` of s[0..n) into scratch. 1 found, 0 not, < 0. */
static int string_member(const char *s, size_t n, const char *key, luar_buf_t *scratch,
                         span_t *out)
{
    const char *v;
    size_t vlen;
    if (!slack_json_member(s, n, key, &v, &vlen) || v[0] != '"')
        return 0;
    out->off = scratch_len(scratch);
    int rc = slack_json_unquote(v, vlen, scratch);
    if (rc != 0)
        return rc;
    out->len = scratch_len(scratch) - out->off;
    return out->len > 0;
}

/* "body:<hex>": a digest of the body, the id of a request that carries none. */
static int body_digest(const luar_webhook_msg_t *msg, luar_buf_t *scratch, span_t *out)
{
    const luar_host_t *H = slack_host;
    unsigned char mac[64];
    size_t mac_len = 0;
    out->off = scratch_len(scratch);
    if (H->hmac("sha256", "luar.slack", 10, msg->body, msg->body_len, mac, &mac_len) != 0 ||
        H->buf_append(scratch, "body:", 5) != 0 || H->hex_encode(scratch, mac, mac_len) != 0)
        return LUAR_PLUGIN_ENOMEM;
    out->len = scratch_len(scratch) - out->off;
    return 0;
}

static int span_is(const luar_buf_t *scratch, span_t s, const char *text)
{
    size_t len;
    const char *d = slack_host->buf_data(scratch, &len);
    return s.len == strlen(text) && memcmp(d + s.off, text, s.len) == 0;
}

/* The event of a JSON (Events API) body. */
static int json_event(const luar_webhook_msg_t *msg, luar_webhook_event_t *ev,
                      luar_buf_t *scratch, luar_buf_t *why, span_t *id, span_t *type,
                      span_t *json)
{
    const luar_host_t *H = slack_host;
    const char *b = msg->body;
    size_t n = msg->body_len;
    int rc = string_member(b, n, "type", scratch, type);
    if (rc <= 0) {
        H->buf_printf(why, rc < 0 ? "the body's type is not a valid JSON string"
                                  : "the body has no type");
        return LUAR_PLUGIN_EPARSE;
    }
    if (span_is(scratch, *type, "url_verification")) {
        const char *v;
        size_t vlen;
        if (!slack_json_member(b, n, "challenge", &v, &vlen) || v[0] != '"') {
            H->buf_printf(why, "url_verification without a challenge string");
            return LUAR_PLUGIN_EPARSE;
        }
        /* The challenge token as Slack wrote it: the same JSON string, echoed. */
        json->off = scratch_len(scratch);
        if (H->buf_append(scratch, "{\"challenge\":", 13) != 0 ||
            H->buf_append(scratch, v, vlen) != 0 || H->buf_append(scratch, "}", 1) != 0)
            return LUAR_PLUGIN_ENOMEM;
        json->len = scratch_len(scratch) - json->off;
        ev->reply = 1;
        return put_span(scratch, "url_verification", 16, id);
    }
    rc = string_member(b, n, "event_id", scratch, id);
    if (rc < 0) {
        H->buf_printf(why, "the body's event_id is not a valid JSON string");
        return LUAR_PLUGIN_EPARSE;
    }
    if (rc == 0) {
        if (span_is(scratch, *type, "event_callback")) {
            H->buf_printf(why, "event_callback without an event_id");
            return LUAR_PLUGIN_EPARSE;
        }
        rc = body_digest(msg, scratch, id);
    } else {
        const char *v;
        size_t vlen;
        span_t inner;
        if (slack_json_member(b, n, "event", &v, &vlen) && v[0] == '{' &&
            string_member(v, vlen, "type", scratch, &inner) > 0)
            *type = inner;
        rc = 0;
    }
    json->off = 0;
    json->len = SIZE_MAX; /* the body itself */
    return rc;
}

/* The interactive payload (decoded JSON) of a form body. */
static int payload_event(const luar_webhook_msg_t *msg, const char *v, size_t vlen,
                         luar_buf_t *scratch, luar_buf_t *why, span_t *id, span_t *type,
                         span_t *json)
{
    const luar_host_t *H = slack_host;
    char *payload;
    size_t plen;
    int rc = slack_form_decode(v, vlen, &payload, &plen);
    if (rc != 0) {
        if (rc == LUAR_PLUGIN_EPARSE)
            H->buf_printf(why, "the form's payload is not percent-encoded correctly");
        return rc;
    }
    /* Read from the decoded copy, never from scratch while scratch grows. */
    rc = string_member(payload, plen, "type", scratch, type);
    if (rc <= 0) {
        H->buf_printf(why, "the interactive payload has no type");
        rc = LUAR_PLUGIN_EPARSE;
    } else {
        rc = string_member(payload, plen, "trigger_id", scratch, id);
        rc = rc > 0 ? 0 : body_digest(msg, scratch, id);
    }
    if (rc == 0)
        rc = put_span(scratch, payload, plen, json);
    free(payload);
    return rc;
}

/* The event of a form body: an interactive payload, a slash command or an ssl_check. */
static int form_event(const luar_webhook_msg_t *msg, luar_webhook_event_t *ev,
                      luar_buf_t *scratch, luar_buf_t *why, span_t *id, span_t *type,
                      span_t *json)
{
    const luar_host_t *H = slack_host;
    const char *b = msg->body, *v;
    size_t n = msg->body_len, vlen;
    if (slack_form_find(b, n, "payload", &v, &vlen))
        return payload_event(msg, v, vlen, scratch, why, id, type, json);
    if (slack_form_find(b, n, "ssl_check", &v, &vlen)) {
        /* Slack's check of a slash command's URL: wants a 200, nothing to store. */
        ev->reply = 1;
        int rc = put_span(scratch, "{}", 2, json);
        if (rc == 0)
            rc = put_span(scratch, "ssl_check", 9, id);
        *type = *id;
        return rc;
    }
    if (!slack_form_find(b, n, "command", &v, &vlen)) {
        H->buf_printf(why, "a form body needs payload= (interactivity) or command= (a slash "
                           "command)");
        return LUAR_PLUGIN_EPARSE;
    }
    char *command;
    size_t clen;
    int rc = slack_form_decode(v, vlen, &command, &clen);
    if (rc != 0) {
        if (rc == LUAR_PLUGIN_EPARSE)
            H->buf_printf(why, "the form's command is not percent-encoded correctly");
        return rc;
    }
    /* "/deploy" → "command.deploy" */
    const char *name = command[0] == '/' ? command + 1 : command;
    size_t name_len = clen - (size_t)(name - command);
    type->off = scratch_len(scratch);
    type->len = 8 + name_len;
    rc = name_len == 0 ? LUAR_PLUGIN_EPARSE
         : H->buf_append(scratch, "command.", 8) != 0 || H->buf_append(scratch, name, name_len)
             ? LUAR_PLUGIN_ENOMEM
             : 0;
    free(command);
    if (rc == LUAR_PLUGIN_EPARSE)
        H->buf_printf(why, "the slash command's name is empty");
    if (rc != 0)
        return rc;
    json->off = scratch_len(scratch);
    rc = slack_form_to_json(b, n, scratch);
    if (rc != 0) {
        if (rc == LUAR_PLUGIN_EPARSE)
            H->buf_printf(why, "the form is not percent-encoded correctly");
        return rc;
    }
    json->len = scratch_len(scratch) - json->off;
    if (slack_form_find(b, n, "trigger_id", &v, &vlen) && vlen > 0) {
        char *trigger;
        size_t tlen;
        rc = slack_form_decode(v, vlen, &trigger, &tlen);
        if (rc == LUAR_PLUGIN_EPARSE)
            H->buf_printf(why, "the form's trigger_id is not percent-encoded correctly");
        if (rc != 0)
            return rc;
        rc = tlen > 0 ? put_span(scratch, trigger, tlen, id) : body_digest(msg, scratch, id);
        free(trigger);
        return rc;
    }
    return body_digest(msg, scratch, id);
}

static int slack_events(const void *p, const luar_webhook_msg_t *msg, luar_webhook_event_t *out,
                        size_t max, size_t *n, luar_buf_t *scratch, luar_buf_t *why)
{
    (void)p;
    if (max < 1)
        return LUAR_PLUGIN_ETOOBIG;
    size_t i = 0;
    while (i < msg->body_len && (msg->body[i] == ' ' || msg->body[i] == '\t' ||
                                 msg->body[i] == '\r' || msg->body[i] == '\n'))
        i++;
    luar_webhook_event_t ev = {0};
    span_t id = {0, 0}, type = {0, 0}, json = {0, 0};
    /* Events API bodies are JSON objects; interactivity and slash commands are forms,
     * which cannot start with '{' (Slack's field names are letters). */
    int rc = i < msg->body_len && msg->body[i] == '{'
                 ? json_event(msg, &ev, scratch, why, &id, &type, &json)
                 : form_event(msg, &ev, scratch, why, &id, &type, &json);
    if (rc != 0)
        return rc;
    size_t len;
    const char *d = slack_host->buf_data(scratch, &len);
    ev.id = d + id.off;
    ev.id_len = id.len;
    ev.type = d + type.off;
    ev.type_len = type.len;
    if (json.len == SIZE_MAX) {
        ev.json = msg->body;
        ev.json_len = msg->body_len;
    } else {
        ev.json = d + json.off;
        ev.json_len = json.len;
    }
    out[0] = ev;
    *n = 1;
    return 0;
}

static int slack_sign(const void *p, const char *id, double timestamp, const char *body,
                      size_t body_len, luar_buf_t *out, luar_buf_t *err)
{
    const slack_cfg_t *cfg = p;
    const luar_host_t *H = slack_host;
    (void)id; /* Slack's event id is in the body */
    if (!(timestamp >= 0) || timestamp > 1e15) {
        H->buf_printf(err, "scheme slack: the timestamp is not a unix time");
        return LUAR_PLUGIN_EINVAL;
    }
    char ts[SLACK_TS_MAX];
    int ts_len = snprintf(ts, sizeof ts, "%lld", (long long)floor(timestamp));
    unsigned char mac[SLACK_MAC_LEN];
    size_t text_len = 0;
    char *text = signed_text(ts, (size_t)ts_len, body, body_len, &text_len);
    int crc = text == NULL ? LUAR_PLUGIN_ENOMEM : compute(&cfg->keys.key[0], text, text_len, mac);
    free(text);
    if (crc != 0) {
        H->buf_printf(err, "scheme slack: cannot compute the HMAC");
        return LUAR_PLUGIN_EINVAL;
    }
    int rc = H->buf_printf(out, "X-Slack-Request-Timestamp: %s\r\nX-Slack-Signature: v0=", ts);
    if (rc == 0)
        rc = H->hex_encode(out, mac, sizeof mac);
    if (rc == 0)
        rc = H->buf_append(out, "\r\n", 2);
    luar_plugin_wipe(mac, sizeof mac);
    return rc == 0 ? 0 : LUAR_PLUGIN_ENOMEM;
}

const luar_webhook_scheme_t slack_scheme = {
    .name = "slack",
    .signature_headers = slack_signature_headers,
    .configure = slack_configure,
    .free_cfg = slack_free,
    .verify = slack_verify,
    .events = slack_events,
    .sign = slack_sign,
};
