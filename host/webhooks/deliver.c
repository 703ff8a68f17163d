/*
 * Outbound webhook delivery: settings, schedule, message ids, bodies, one signed attempt,
 * and the record of attempts (see deliver.h).
 */
#include "webhooks/deliver.h"
#include "cli/jobs_format.h"
#include "client/addr.h"
#include "client/redact.h"
#include "client/send.h"
#include "common/clock.h"
#include "common/error.h"
#include "crypto/crypto.h"
#include "log/log.h"
#include "webhooks/scheme.h"

#include <curl/curl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DELIVER_MAX_RESPONSE (1u << 20) /* a bigger answer body counts as a failure */
#define DELIVER_CONNECT_TIMEOUT 10.0

/* ---- settings and schedule ----------------------------------------------------------- */

static luar_webhooks_config_t settings;
static int configured;

void luar_deliver_configure(const luar_webhooks_config_t *cfg)
{
    if (cfg)
        settings = *cfg;
    else
        luar_webhooks_config_init(&settings);
    configured = 1;
}

const luar_webhooks_config_t *luar_deliver_settings(void)
{
    if (!configured)
        luar_deliver_configure(NULL);
    return &settings;
}

double luar_deliver_delay(const luar_webhooks_config_t *w, int attempt)
{
    if (w->deliver_attempts <= 0)
        return 0;
    int i = attempt < 0 ? 0 : attempt;
    if (i >= w->deliver_attempts)
        i = w->deliver_attempts - 1;
    return w->deliver_schedule[i];
}

double luar_deliver_span(const luar_webhooks_config_t *w)
{
    double sum = 0;
    for (int i = 0; i < w->deliver_attempts; i++)
        sum += w->deliver_schedule[i];
    return sum;
}

/* ---- messages ------------------------------------------------------------------------ */

#define KSUID_EPOCH 1400000000LL /* KSUID's epoch (2014-05-13) */

void luar_deliver_format_id(const uint8_t raw[20], char out[LUAR_DELIVER_ID_SIZE])
{
    static const char digits[] =
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    uint8_t n[20];
    memcpy(n, raw, sizeof n);
    /* 160 bits in base 62 is 27 digits: divide the big-endian number by 62 repeatedly. */
    for (int pos = 26; pos >= 0; pos--) {
        unsigned rem = 0;
        for (int i = 0; i < 20; i++) {
            unsigned cur = rem * 256 + n[i];
            n[i] = (uint8_t)(cur / 62);
            rem = cur % 62;
        }
        out[4 + pos] = digits[rem];
    }
    memcpy(out, "msg_", 4);
    out[31] = '\0';
}

void luar_deliver_new_id(char out[LUAR_DELIVER_ID_SIZE])
{
    uint8_t raw[20];
    long long t = (long long)luar_time_now() - KSUID_EPOCH;
    raw[0] = (uint8_t)(t >> 24);
    raw[1] = (uint8_t)(t >> 16);
    raw[2] = (uint8_t)(t >> 8);
    raw[3] = (uint8_t)t;
    luar_crypto_random(raw + 4, 16);
    luar_deliver_format_id(raw, out);
}

int luar_deliver_body(luar_buf_t *out, const char *type, size_t type_len, double timestamp,
                      const char *data, size_t data_len)
{
    char when[40];
    luar_jobs_fmt_iso_time(timestamp, 1, when, sizeof when); /* RFC 3339, UTC, ms */
    int rc = luar_buf_puts(out, "{\"type\":");
    rc = rc ? rc : luar_buf_append_json_string(out, type, type_len);
    rc = rc ? rc : luar_buf_appendf(out, ",\"timestamp\":\"%s\",\"data\":", when);
    rc = rc ? rc : luar_buf_append(out, data, data_len);
    return rc ? rc : luar_buf_putc(out, '}');
}

/* Splits `url` into scheme, host and port (default port by scheme). Returns 0 or EINVAL. */
static int url_parts(const char *url, char *scheme, size_t ssize, char *host, size_t hsize,
                     long *port)
{
    CURLU *u = curl_url();
    char *s = NULL, *h = NULL, *p = NULL;
    int rc = LUAR_EINVAL;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &s, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &h, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PORT, &p, CURLU_DEFAULT_PORT) == CURLUE_OK && h[0] &&
        strlen(h) < hsize) {
        snprintf(scheme, ssize, "%s", s);
        snprintf(host, hsize, "%s", h);
        *port = strtol(p, NULL, 10);
        rc = 0;
    }
    curl_free(s);
    curl_free(h);
    curl_free(p);
    curl_url_cleanup(u);
    return rc;
}

int luar_deliver_check_url(const char *url, int allow_private, const char **kind,
                           luar_buf_t *why)
{
    char scheme[16], host[256];
    long port = 0;
    *kind = "invalid";
    if (url_parts(url, scheme, sizeof scheme, host, sizeof host, &port) != 0) {
        luar_buf_puts(why, "url: expected an absolute http:// or https:// URL with a host");
        return LUAR_EINVAL;
    }
    if (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0) {
        luar_buf_appendf(why, "url: only http and https are delivered to, not %s", scheme);
        return LUAR_EINVAL;
    }
    const char *range = NULL;
    if (!allow_private && luar_addr_classify(host, &range) == 0 && range != NULL) {
        *kind = "private_address";
        luar_buf_appendf(why, "url: %s is a %s address; deliveries go to public addresses "
                         "only (webhooks.deliver_allow_private = true allows it)", host, range);
        return LUAR_EINVAL;
    }
    return 0;
}

void luar_deliver_breaker_key(const char *url, char *out, size_t size)
{
    char scheme[16], host[256];
    long port = 0;
    uint8_t md[LUAR_CRYPTO_MAX_MD];
    size_t mdlen = 0;
    if (url_parts(url, scheme, sizeof scheme, host, sizeof host, &port) != 0)
        snprintf(host, sizeof host, "invalid");
    luar_crypto_digest("sha256", url, strlen(url), md, &mdlen);
    snprintf(out, size, "%.200s:%ld#%02x%02x%02x%02x%02x%02x", host, port, md[0], md[1], md[2],
             md[3], md[4], md[5]);
}

/* A verifier of the `standard` scheme holding `secret`. */
static int standard_verifier(luar_webhook_verifier_t *v, const char *secret, luar_buf_t *err)
{
    const char *secrets[1] = {secret};
    size_t lens[1] = {strlen(secret)};
    return luar_webhook_verifier_init(v, "standard", secrets, lens, 1, NULL, 0, 0, err);
}

int luar_deliver_check_secret(const char *secret, luar_buf_t *why)
{
    luar_webhook_verifier_t v;
    luar_buf_puts(why, "secret: ");
    size_t mark = why->len;
    int rc = standard_verifier(&v, secret, why);
    if (rc) {
        if (why->len == mark)
            luar_buf_puts(why, "not a Standard Webhooks secret (whsec_ and base64)");
        return LUAR_EINVAL;
    }
    luar_webhook_verifier_free(&v);
    luar_buf_reset(why);
    return 0;
}

/* ---- the record of attempts ---------------------------------------------------------- */

static luar_deliver_record_t *ring; /* LUAR_DELIVER_RING entries, allocated on first use */
static size_t ring_next, ring_count;

static void ring_add(const luar_deliver_record_t *r)
{
    if (ring == NULL && (ring = calloc(LUAR_DELIVER_RING, sizeof *ring)) == NULL)
        return;
    ring[ring_next] = *r;
    ring_next = (ring_next + 1) % LUAR_DELIVER_RING;
    if (ring_count < LUAR_DELIVER_RING)
        ring_count++;
}

size_t luar_deliver_recent(luar_deliver_record_t *out, size_t max)
{
    size_t n = 0;
    for (; n < max && n < ring_count; n++)
        out[n] = ring[(ring_next + LUAR_DELIVER_RING - 1 - n) % LUAR_DELIVER_RING];
    return n;
}

static void record_json(luar_buf_t *b, const luar_deliver_record_t *r)
{
    char when[40];
    luar_buf_appendf(b, "\"time\":\"%s\",\"msg_id\":",
                     luar_jobs_fmt_iso_time(r->time, 1, when, sizeof when));
    luar_buf_append_json_string(b, r->msg_id, strlen(r->msg_id));
    luar_buf_puts(b, ",\"job_id\":");
    luar_buf_append_json_string(b, r->job_id, strlen(r->job_id));
    luar_buf_puts(b, ",\"url\":");
    luar_buf_append_json_string(b, r->url, strlen(r->url));
    luar_buf_appendf(b, ",\"attempt\":%d,\"max_attempts\":%d,\"outcome\":\"%s\"", r->attempt,
                     r->max_attempts, r->outcome);
    if (r->status)
        luar_buf_appendf(b, ",\"status\":%d", r->status);
    else
        luar_buf_puts(b, ",\"status\":null");
    if (r->error[0])
        luar_buf_appendf(b, ",\"error\":\"%s\"", r->error);
    else
        luar_buf_puts(b, ",\"error\":null");
    luar_buf_appendf(b, ",\"duration_ms\":%.1f", r->duration * 1000.0);
}

int luar_deliver_recent_json(luar_buf_t *out, size_t max)
{
    luar_buf_putc(out, '[');
    for (size_t n = 0; n < max && n < ring_count; n++) {
        if (n)
            luar_buf_putc(out, ',');
        luar_buf_putc(out, '{');
        record_json(out, &ring[(ring_next + LUAR_DELIVER_RING - 1 - n) % LUAR_DELIVER_RING]);
        luar_buf_putc(out, '}');
    }
    return luar_buf_putc(out, ']');
}

/* Remembers the attempt and writes its log line (no secret, no signature, no body). */
static void record(const luar_deliver_record_t *r, const luar_deliver_outcome_t *o)
{
    ring_add(r);
    luar_buf_t f;
    luar_buf_init(&f, 8192);
    record_json(&f, r);
    if (o->kind && o->kind[0]) {
        luar_buf_puts(&f, ",\"message\":");
        luar_buf_append_json_string(&f, o->message, strlen(o->message));
    }
    if (o->postpone > 0)
        luar_buf_appendf(&f, ",\"retry_in\":%.3f", o->postpone);
    else if (!o->delivered && r->attempt < r->max_attempts)
        luar_buf_appendf(&f, ",\"retry_in\":%.3f",
                         luar_deliver_delay(luar_deliver_settings(), r->attempt));
    static const char msg[] = "webhook delivery attempt";
    int level = o->delivered || o->postpone > 0 ? LUAR_LOG_INFO
                : strcmp(r->outcome, "dead") == 0 ? LUAR_LOG_ERROR
                                                  : LUAR_LOG_WARN;
    luar_log_write(level, msg, sizeof msg - 1, f.data, f.len);
    luar_buf_free(&f);
}

/* ---- one attempt --------------------------------------------------------------------- */

struct luar_deliver_call {
    luar_client_send_t *send;
    luar_deliver_cb cb;
    void *arg;
    char *url;
    char *body;
    size_t body_len;
    char *strings; /* the header names and values, NUL-separated */
    luar_client_header_t headers[4 + LUAR_DELIVER_MAX_HEADERS];
    size_t nheaders;
    luar_deliver_record_t rec;
    double created_at;
    double span; /* the schedule's length when the attempt started */
};

static void call_free(struct luar_deliver_call *c)
{
    free(c->url);
    free(c->body);
    free(c->strings);
    free(c);
}

/* Uniform in [0, 1). */
static double uniform(void)
{
    uint32_t x = 0;
    luar_crypto_random(&x, sizeof x);
    return (double)x / 4294967296.0;
}

static void on_sent(void *arg, luar_client_res_t *res, int cached)
{
    struct luar_deliver_call *c = arg;
    luar_deliver_outcome_t o;
    (void)cached;
    memset(&o, 0, sizeof o);
    c->send = NULL;
    if (res == NULL) {
        o.kind = "internal";
        snprintf(o.message, sizeof o.message, "out of memory sending the delivery");
    } else if (res->rc == 0) {
        o.status = (int)res->status;
        o.delivered = res->status >= 200 && res->status < 300;
        if (!o.delivered)
            snprintf(o.message, sizeof o.message, "the endpoint answered %ld", res->status);
    } else {
        o.kind = res->kind ? res->kind : "connect";
        snprintf(o.message, sizeof o.message, "%s: %s", o.kind, res->message);
        /* Postponed while the message is younger than the schedule, and never past its
         * end: after that, refusals are spent attempts, so the delivery ends in time. */
        double left = c->created_at + c->span - luar_time_now();
        if (strcmp(o.kind, "breaker_open") == 0 && left > 0) {
            double wait = (res->retry_after > 1 ? res->retry_after : 1) * (1 + uniform());
            o.postpone = wait < left ? wait : left;
        }
    }
    o.duration = res && strcmp(o.kind ? o.kind : "", "breaker_open") ? res->duration : 0;
    c->rec.duration = o.duration;
    c->rec.status = o.status;
    snprintf(c->rec.error, sizeof c->rec.error, "%s", o.kind ? o.kind : "");
    c->rec.outcome = o.delivered         ? "delivered"
                     : o.postpone > 0    ? "postponed"
                     : c->rec.attempt >= c->rec.max_attempts ? "dead"
                                                             : "failed";
    record(&c->rec, &o);
    luar_client_res_free(res);
    luar_deliver_cb cb = c->cb;
    void *cbarg = c->arg;
    call_free(c);
    cb(cbarg, &o);
}

/*
 * Fills the call's headers: Content-Type, the signature headers of the `standard` scheme
 * (each "Name: value\r\n" line of sign()), then the caller's extra headers.
 */
static int build_headers(struct luar_deliver_call *c, const luar_deliver_msg_t *m,
                         double now, luar_buf_t *err)
{
    luar_webhook_verifier_t v;
    luar_buf_t lines;
    luar_buf_init(&lines, 64 * 1024);
    int rc = standard_verifier(&v, m->secret, err);
    if (rc)
        goto done;
    rc = v.scheme->sign ? v.scheme->sign(v.cfg, m->id, floor(now), c->body, c->body_len,
                                         &lines, err)
                        : LUAR_EINVAL;
    luar_webhook_verifier_free(&v);
    if (rc)
        goto done;
    size_t total = lines.len + 32;
    for (size_t i = 0; i < m->nheaders; i++)
        total += strlen(m->headers[i].name) + strlen(m->headers[i].value) + 2;
    char *p = c->strings = malloc(total);
    rc = LUAR_ENOMEM;
    if (p == NULL)
        goto done;
    c->headers[c->nheaders++] = (luar_client_header_t){"Content-Type", "application/json"};
    /* "Name: value\r\n" lines → NUL-terminated name and value in `strings`. */
    const char *s = lines.data ? lines.data : "", *end = s + lines.len;
    while (s < end && c->nheaders < 4) {
        const char *eol = memchr(s, '\n', (size_t)(end - s));
        const char *colon = memchr(s, ':', (size_t)((eol ? eol : end) - s));
        size_t linelen = (size_t)((eol ? eol : end) - s);
        if (colon == NULL)
            break;
        const char *val = colon + 1;
        while (*val == ' ')
            val++;
        size_t vlen = (size_t)(s + linelen - val);
        while (vlen && (val[vlen - 1] == '\r' || val[vlen - 1] == ' '))
            vlen--;
        c->headers[c->nheaders].name = p;
        memcpy(p, s, (size_t)(colon - s));
        p += colon - s;
        *p++ = '\0';
        c->headers[c->nheaders].value = p;
        memcpy(p, val, vlen);
        p += vlen;
        *p++ = '\0';
        c->nheaders++;
        s = eol ? eol + 1 : end;
    }
    for (size_t i = 0; i < m->nheaders && i < LUAR_DELIVER_MAX_HEADERS; i++) {
        size_t nl = strlen(m->headers[i].name) + 1, vl = strlen(m->headers[i].value) + 1;
        c->headers[c->nheaders].name = memcpy(p, m->headers[i].name, nl);
        p += nl;
        c->headers[c->nheaders].value = memcpy(p, m->headers[i].value, vl);
        p += vl;
        c->nheaders++;
    }
    rc = 0;
done:
    luar_buf_free(&lines);
    return rc;
}

int luar_deliver_attempt(uv_loop_t *loop, const luar_deliver_msg_t *m, luar_deliver_cb cb,
                         void *arg, luar_deliver_call_t **out, luar_buf_t *err)
{
    const luar_webhooks_config_t *w = luar_deliver_settings();
    struct luar_deliver_call *c = calloc(1, sizeof *c);
    if (c == NULL)
        return LUAR_ENOMEM;
    double now = luar_time_now();
    c->cb = cb;
    c->arg = arg;
    c->created_at = m->created_at;
    c->span = luar_deliver_span(w);
    c->url = strdup(m->url);
    c->body = luar_memdup(m->body, m->body_len);
    int rc = LUAR_ENOMEM;
    if (c->url == NULL || c->body == NULL)
        goto fail;
    c->body_len = m->body_len;
    rc = build_headers(c, m, now, err);
    if (rc)
        goto fail;

    luar_deliver_record_t *r = &c->rec;
    r->time = now;
    snprintf(r->msg_id, sizeof r->msg_id, "%s", m->id);
    snprintf(r->job_id, sizeof r->job_id, "%s", m->job_id ? m->job_id : "");
    luar_buf_t red;
    luar_buf_init(&red, sizeof r->url - 1);
    luar_redact_url(&red, m->url); /* clipped at the cap: the buffer refuses the rest */
    snprintf(r->url, sizeof r->url, "%s", red.data ? red.data : "");
    luar_buf_free(&red);
    r->attempt = m->attempt;
    r->max_attempts = m->max_attempts;

    char key[LUAR_BREAKER_HOST_MAX];
    luar_deliver_breaker_key(m->url, key, sizeof key);
    luar_client_policy_t policy;
    luar_client_policy_init(&policy);
    policy.retry.attempts = 1; /* the job retries, on the delivery schedule */
    policy.breaker_key = key;
    policy.breaker_settings.failures = w->deliver_breaker_failures;
    policy.breaker_settings.reset = w->deliver_breaker_reset;
    double timeout = m->timeout > 0 ? m->timeout : LUAR_DELIVER_DEFAULT_TIMEOUT;
    luar_client_req_t req = {
        .method = "POST",
        .url = c->url,
        .headers = c->headers,
        .nheaders = c->nheaders,
        .body = c->body,
        .body_len = c->body_len,
        .timeout = timeout,
        .connect_timeout = timeout < DELIVER_CONNECT_TIMEOUT ? timeout : DELIVER_CONNECT_TIMEOUT,
        .max_body = DELIVER_MAX_RESPONSE,
        .refuse_private = !w->deliver_allow_private,
    };
    /* Set before sending: an open breaker answers inside luar_client_send, and the
     * callback then clears the caller's pointer. */
    if (out)
        *out = c;
    rc = luar_client_send(loop, &req, &policy, on_sent, c, &c->send);
    if (rc) {
        if (out)
            *out = NULL;
        luar_buf_appendf(err, "cannot send to this URL: %s", luar_strerror(rc));
        goto fail;
    }
    return 0;
fail:
    call_free(c);
    return rc;
}

void luar_deliver_cancel(luar_deliver_call_t *c)
{
    if (c == NULL)
        return;
    if (c->send)
        luar_client_send_cancel(c->send);
    call_free(c);
}
