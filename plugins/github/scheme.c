/*
 * The `github` webhook scheme: GitHub's webhook deliveries.
 *
 *   X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body with the webhook's secret>
 *   X-GitHub-Delivery:   72d3162e-cc78-11e3-81ab-4c9367dc0958   (the event id)
 *   X-GitHub-Event:      issues                                  (the event name)
 *
 * The type handlers match on is the event name, plus "." and the body's `action` when it
 * has one ("issues.opened", "pull_request.closed", "push"). Secrets are the bytes given.
 * GitHub sends no timestamp, so there is no tolerance to check: replays are caught by the
 * delivery id's deduplication. The legacy SHA-1 `X-Hub-Signature` is not accepted.
 *
 * A webhook whose content type is application/x-www-form-urlencoded carries the JSON in a
 * `payload` form field; the signature covers the form body, and handlers get the JSON.
 *
 * Option (used only when signing): event — the X-GitHub-Event to send (default "ping").
 */
#include "github.h"
#include "luar/plugin_keys.h"


#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SIG_HEADER "x-hub-signature-256"
#define SIG_PREFIX "sha256="
#define MAC_LEN 32
#define MAX_EVENT_NAME 64

typedef struct gh_cfg {
    char event[MAX_EVENT_NAME + 1]; /* X-GitHub-Event for sign() */
    luar_plugin_keys_t keys;
} gh_cfg_t;

static const char *const gh_signature_headers[] = {SIG_HEADER, "x-hub-signature", NULL};

static void gh_free(void *p)
{
    gh_cfg_t *cfg = p;
    if (cfg == NULL)
        return;
    luar_plugin_keys_free(&cfg->keys);
    free(cfg);
}

/* An event name as GitHub writes them: [a-z0-9_], 1 to 64 bytes. */
static int is_event_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MAX_EVENT_NAME)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return 0;
    return 1;
}

static int gh_configure(const char *const *secrets, const size_t *lens, size_t nsecrets,
                        const luar_webhook_opt_t *opts, size_t nopts, void **out,
                        luar_buf_t *err)
{
    const luar_host_t *h = github_host;
    gh_cfg_t *cfg = calloc(1, sizeof *cfg);
    if (cfg == NULL)
        return LUAR_PLUGIN_ENOMEM;
    strcpy(cfg->event, "ping");
    for (size_t i = 0; i < nopts; i++) {
        if (strcmp(opts[i].key, "event") != 0) {
            h->buf_printf(err, "scheme github: unknown option \"%s\" (known: event)",
                          opts[i].key);
            gh_free(cfg);
            return LUAR_PLUGIN_EINVAL;
        }
        if (!is_event_name(opts[i].value)) {
            h->buf_printf(err, "scheme github: option event \"%.64s\" is not an event name "
                               "(\"issues\", \"push\", …)", opts[i].value);
            gh_free(cfg);
            return LUAR_PLUGIN_EINVAL;
        }
        strcpy(cfg->event, opts[i].value);
    }
    int rc = luar_plugin_keys_copy(&cfg->keys, h, "github", secrets, lens, nsecrets, err);
    if (rc != 0) {
        gh_free(cfg);
        return rc;
    }
    *out = cfg;
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decodes "sha256=<64 hex>" (spaces around allowed) into mac; 1 when well-formed. */
static int parse_signature(const char *v, size_t len, unsigned char *mac)
{
    while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))
        len--;
    while (len > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        len--;
    }
    size_t plen = sizeof SIG_PREFIX - 1;
    if (len != plen + 2 * MAC_LEN || strncasecmp(v, SIG_PREFIX, plen) != 0)
        return 0;
    v += plen;
    for (size_t i = 0; i < MAC_LEN; i++) {
        int hi = hexval(v[2 * i]), lo = hexval(v[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return 0;
        mac[i] = (unsigned char)(hi << 4 | lo);
    }
    return 1;
}

static luar_webhook_verdict_t gh_verify(const void *p, const luar_webhook_msg_t *msg,
                                        double tolerance, double now, luar_buf_t *why)
{
    const gh_cfg_t *cfg = p;
    const luar_host_t *h = github_host;
    (void)tolerance;
    (void)now;
    size_t len = 0;
    const char *v = h->webhook_header(msg, SIG_HEADER, &len);
    if (v == NULL || len == 0) {
        size_t l1 = 0;
        int legacy = h->webhook_header(msg, "x-hub-signature", &l1) != NULL;
        h->buf_printf(why, "no %s header%s", SIG_HEADER,
                      legacy ? " (the SHA-1 x-hub-signature alone is not accepted)" : "");
        return LUAR_WEBHOOK_MISSING;
    }
    unsigned char got[MAC_LEN];
    if (!parse_signature(v, len, got)) {
        h->buf_printf(why, "%s is malformed (expected sha256=<64 hex digits>)", SIG_HEADER);
        return LUAR_WEBHOOK_INVALID;
    }
    int matched = 0;
    for (size_t k = 0; k < cfg->keys.n; k++) {
        unsigned char mac[64];
        size_t mac_len = 0;
        if (h->hmac("sha256", cfg->keys.key[k].data, cfg->keys.key[k].len, msg->body, msg->body_len,
                    mac, &mac_len) != 0 || mac_len != MAC_LEN) {
            h->buf_printf(why, "cannot compute the HMAC");
            return LUAR_WEBHOOK_INVALID;
        }
        matched |= h->equals(mac, got, MAC_LEN);
        luar_plugin_wipe(mac, sizeof mac);
    }
    if (!matched) {
        h->buf_printf(why, "the %s does not match (%zu secret%s)", SIG_HEADER, cfg->keys.n,
                      cfg->keys.n == 1 ? "" : "s");
        return LUAR_WEBHOOK_INVALID;
    }
    return LUAR_WEBHOOK_OK;
}

/* Appends the form-decoded value of field `payload` of an urlencoded body; 1 if found. */
static int form_payload(const char *body, size_t len, luar_buf_t *out)
{
    size_t i = 0;
    while (i < len) {
        size_t end = i;
        while (end < len && body[end] != '&')
            end++;
        if (end - i >= 8 && memcmp(body + i, "payload=", 8) == 0) {
            for (size_t j = i + 8; j < end; j++) {
                char c = body[j];
                if (c == '+') {
                    c = ' ';
                } else if (c == '%' && j + 2 < end && hexval(body[j + 1]) >= 0 &&
                           hexval(body[j + 2]) >= 0) {
                    c = (char)(hexval(body[j + 1]) << 4 | hexval(body[j + 2]));
                    j += 2;
                }
                if (github_host->buf_append(out, &c, 1) != 0)
                    return 0;
            }
            return 1;
        }
        i = end + 1;
    }
    return 0;
}

static int gh_events(const void *p, const luar_webhook_msg_t *msg, luar_webhook_event_t *out,
                     size_t max, size_t *n, luar_buf_t *scratch, luar_buf_t *why)
{
    (void)p;
    const luar_host_t *h = github_host;
    size_t id_len = 0, ev_len = 0, ct_len = 0;
    const char *id = h->webhook_header(msg, "x-github-delivery", &id_len);
    const char *ev = h->webhook_header(msg, "x-github-event", &ev_len);
    const char *ct = h->webhook_header(msg, "content-type", &ct_len);
    if (id == NULL || id_len == 0) {
        h->buf_printf(why, "no x-github-delivery header");
        return LUAR_PLUGIN_EPARSE;
    }
    if (ev == NULL || ev_len == 0) {
        h->buf_printf(why, "no x-github-event header");
        return LUAR_PLUGIN_EPARSE;
    }
    if (max < 1) {
        h->buf_printf(why, "too many events");
        return LUAR_PLUGIN_ETOOBIG;
    }
    luar_buf_t *local = h->buf_new(0), *reason = h->buf_new(512), *action = h->buf_new(0);
    int rc = 0;
    if (local == NULL || reason == NULL || action == NULL) {
        rc = LUAR_PLUGIN_ENOMEM;
        goto done;
    }
    /* The event's JSON: the body, or the decoded `payload` field of a form body. */
    const char *json = msg->body;
    size_t json_len = msg->body_len, json_off = 0;
    int form = ct != NULL && ct_len >= 33 &&
               strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0;
    if (form) {
        if (!form_payload(msg->body, msg->body_len, local)) {
            h->buf_printf(why, "form body without a payload field");
            rc = LUAR_PLUGIN_EPARSE;
            goto done;
        }
        json = h->buf_data(local, &json_len);
    }
    if (h->json_validate(json, json_len, 0, reason) != 0) {
        h->buf_printf(why, "%s is not JSON: %s", form ? "the payload field" : "body",
                      h->buf_data(reason, NULL));
        rc = LUAR_PLUGIN_EPARSE;
        goto done;
    }
    /* The action first: `json` may point into `local`, which the type's bytes may move. */
    const char *av;
    size_t av_len, action_len = 0;
    int has_action = h->json_member(json, json_len, "action", &av, &av_len) &&
                     av[0] == '"' && av_len > 2 && h->json_unquote(av, av_len, action) == 0;
    const char *action_text = h->buf_data(action, &action_len);
    /* type = event[.action], after the payload in `local`. */
    size_t type_off = 0;
    h->buf_data(local, &type_off);
    rc = h->buf_append(local, ev, ev_len);
    if (rc == 0 && has_action)
        rc = h->buf_append(local, ".", 1);
    if (rc == 0 && has_action)
        rc = h->buf_append(local, action_text, action_len);
    if (rc != 0) {
        rc = LUAR_PLUGIN_ENOMEM;
        goto done;
    }
    size_t base = 0, local_len = 0;
    h->buf_data(scratch, &base);
    const char *local_data = h->buf_data(local, &local_len);
    rc = h->buf_append(scratch, local_data, local_len);
    if (rc != 0)
        goto done;
    const char *s = h->buf_data(scratch, NULL) + base;
    out[0] = (luar_webhook_event_t){
        .id = id,
        .id_len = id_len,
        .type = s + type_off,
        .type_len = local_len - type_off,
        .json = form ? s + json_off : json,
        .json_len = json_len,
    };
    *n = 1;
done:
    h->buf_free(local);
    h->buf_free(reason);
    h->buf_free(action);
    return rc;
}

/* A random (version 4) UUID, as GitHub's delivery ids are. */
static int make_uuid(char out[37])
{
    unsigned char b[16];
    if (github_host->random_bytes(b, sizeof b) != 0)
        return -1;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
             b[13], b[14], b[15]);
    return 0;
}

static int gh_sign(const void *p, const char *id, double timestamp, const char *body,
                   size_t body_len, luar_buf_t *out, luar_buf_t *err)
{
    const gh_cfg_t *cfg = p;
    const luar_host_t *h = github_host;
    (void)timestamp;
    char uuid[37];
    if (id == NULL) {
        if (make_uuid(uuid) != 0) {
            h->buf_printf(err, "scheme github: no random bytes for a delivery id");
            return LUAR_PLUGIN_EINVAL;
        }
        id = uuid;
    }
    if (strpbrk(id, "\r\n") != NULL) {
        h->buf_printf(err, "scheme github: the delivery id holds a line break");
        return LUAR_PLUGIN_EINVAL;
    }
    unsigned char mac256[64], mac1[64];
    size_t len256 = 0, len1 = 0;
    if (h->hmac("sha256", cfg->keys.key[0].data, cfg->keys.key[0].len, body, body_len, mac256,
                &len256) != 0 ||
        h->hmac("sha1", cfg->keys.key[0].data, cfg->keys.key[0].len, body, body_len, mac1, &len1) != 0) {
        h->buf_printf(err, "scheme github: cannot compute the HMAC");
        return LUAR_PLUGIN_EINVAL;
    }
    /* GitHub still sends the SHA-1 header next to the SHA-256 one; so does sign(). */
    int rc = h->buf_printf(out, "X-GitHub-Event: %s\r\nX-GitHub-Delivery: %s\r\n"
                                "X-Hub-Signature: sha1=", cfg->event, id);
    if (rc == 0)
        rc = h->hex_encode(out, mac1, len1);
    if (rc == 0)
        rc = h->buf_printf(out, "\r\nX-Hub-Signature-256: sha256=");
    if (rc == 0)
        rc = h->hex_encode(out, mac256, len256);
    if (rc == 0)
        rc = h->buf_printf(out, "\r\n");
    luar_plugin_wipe(mac256, sizeof mac256);
    luar_plugin_wipe(mac1, sizeof mac1);
    return rc;
}

const luar_webhook_scheme_t github_scheme = {
    .name = "github",
    .signature_headers = gh_signature_headers,
    .configure = gh_configure,
    .free_cfg = gh_free,
    .verify = gh_verify,
    .events = gh_events,
    .sign = gh_sign,
};
