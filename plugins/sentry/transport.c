/*
 * Sending events to Sentry: the DSN, a bounded queue, one request in flight through the
 * host's http_request, Sentry's rate limits (429 with Retry-After, X-Sentry-Rate-Limits on
 * any answer) and a backoff while Sentry cannot be reached. Nothing here waits: an event
 * that cannot be queued is dropped and counted, and a rate-limited category drops events
 * at once until its time is up, so nothing is retried early.
 */
#include "sentry.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BACKOFF_MIN 1.0
#define BACKOFF_MAX 60.0
#define DEFAULT_RETRY_AFTER 60.0
#define WARN_EVERY 60.0

static const char *const outcome_names[SENTRY_NOUTCOMES] = {"sent", "dropped", "rate_limited",
                                                            "failed"};

void sentry_count(sentry_t *s, int outcome)
{
    if (s->events) {
        const char *v[] = {outcome_names[outcome]};
        s->h->metric_add(s->events, v, 1);
    }
}

/* ---- the DSN ------------------------------------------------------------------------------ */

/* <scheme>://<key>[:<secret>]@<host>[:<port>][/<path>]/<project> */
int sentry_dsn_parse(sentry_t *s, const char *dsn, char *err, size_t err_size)
{
    const char *p = strstr(dsn, "://");
    const char *scheme_end = p;
    if (p == NULL || (strncmp(dsn, "https", 5) != 0 && strncmp(dsn, "http", 4) != 0) ||
        (size_t)(scheme_end - dsn) > 5) {
        snprintf(err, err_size, "plugins.sentry.dsn must be https://<key>@<host>/<project>");
        return LUAR_PLUGIN_ECONFIG;
    }
    p += 3;
    const char *at = strchr(p, '@');
    const char *slash = strchr(p, '/');
    if (at == NULL || (slash && slash < at) || at == p) {
        snprintf(err, err_size,
                 "plugins.sentry.dsn has no public key (https://<key>@<host>/"
                 "<project>)");
        return LUAR_PLUGIN_ECONFIG;
    }
    const char *key_end = memchr(p, ':', (size_t)(at - p));
    if (key_end == NULL)
        key_end = at;
    const char *host = at + 1;
    slash = strchr(host, '/');
    const char *last = strrchr(host, '/');
    if (slash == NULL || slash == host || last[1] == '\0') {
        snprintf(err, err_size,
                 "plugins.sentry.dsn has no project id (https://<key>@<host>/"
                 "<project>)");
        return LUAR_PLUGIN_ECONFIG;
    }
    for (const char *c = p; c < key_end; c++) {
        if (!isalnum((unsigned char)*c)) {
            snprintf(err, err_size,
                     "plugins.sentry.dsn: the public key must be letters and "
                     "digits");
            return LUAR_PLUGIN_ECONFIG;
        }
    }
    sentry_sb_t url, auth;
    sentry_sb_init(&url);
    sentry_sb_init(&auth);
    sentry_sb_add(&url, dsn, (size_t)(scheme_end - dsn) + 3);
    sentry_sb_add(&url, host, (size_t)(last - host)); /* host[:port][/path] */
    sentry_sb_puts(&url, "/api/");
    sentry_sb_puts(&url, last + 1);
    sentry_sb_puts(&url, "/envelope/");
    sentry_sb_puts(&auth, "Sentry sentry_version=7, sentry_key=");
    sentry_sb_add(&auth, p, (size_t)(key_end - p));
    sentry_sb_puts(&auth, ", sentry_client=" SENTRY_CLIENT);
    s->url = sentry_sb_take(&url, NULL);
    s->auth = sentry_sb_take(&auth, NULL);
    s->dsn = strdup(dsn);
    if (s->url == NULL || s->auth == NULL || s->dsn == NULL) {
        snprintf(err, err_size, "out of memory");
        return LUAR_PLUGIN_ENOMEM;
    }
    return 0;
}

/* ---- rate limits ------------------------------------------------------------------------- */

static double retry_after_seconds(const char *v)
{
    if (v == NULL || *v == '\0')
        return DEFAULT_RETRY_AFTER;
    char *end;
    double d = strtod(v, &end);
    if (end != v && d >= 0 && d < 86400 * 7)
        return d;
    return DEFAULT_RETRY_AFTER; /* an HTTP date: Sentry sends seconds; be careful */
}

static void limit(sentry_t *s, int cat, double until)
{
    if (until > s->limited_until[cat])
        s->limited_until[cat] = until;
}

/*
 * X-Sentry-Rate-Limits: "<seconds>:<categories>:<scope>[:…], …"; categories are
 * ';'-separated ("error;transaction"), empty for all. Retry-After applies to all when
 * there is no such header.
 */
void sentry_rate_limits(sentry_t *s, double now, long status, const char *retry_after,
                        const char *limits)
{
    if (limits && *limits) {
        const char *q = limits;
        while (*q) {
            const char *end = strchr(q, ',');
            size_t qlen = end ? (size_t)(end - q) : strlen(q);
            char quota[512];
            snprintf(quota, sizeof quota, "%.*s", (int)(qlen < 511 ? qlen : 511), q);
            char *c1 = strchr(quota, ':');
            if (c1) {
                *c1 = '\0';
                double secs = retry_after_seconds(quota);
                char *cats = c1 + 1;
                char *c2 = strchr(cats, ':');
                if (c2)
                    *c2 = '\0';
                while (*cats == ' ')
                    cats++;
                if (*cats == '\0') {
                    for (int i = 0; i < SENTRY_NCATS; i++)
                        limit(s, i, now + secs);
                } else {
                    char *save = NULL;
                    for (char *t = strtok_r(cats, ";", &save); t; t = strtok_r(NULL, ";", &save)) {
                        if (strcmp(t, "error") == 0 || strcmp(t, "default") == 0)
                            limit(s, SENTRY_CAT_ERROR, now + secs);
                        else if (strcmp(t, "transaction") == 0)
                            limit(s, SENTRY_CAT_TRANSACTION, now + secs);
                    }
                }
            }
            q += qlen;
            while (*q == ',' || *q == ' ')
                q++;
        }
        return;
    }
    if (status == 429) {
        double secs = retry_after_seconds(retry_after);
        for (int i = 0; i < SENTRY_NCATS; i++)
            limit(s, i, now + secs);
    }
}

static int limited(sentry_t *s, int cat, double now)
{
    return now < s->limited_until[cat];
}

/* ---- the queue ---------------------------------------------------------------------------- */

static void pump(sentry_t *s);
static void drain_bound(sentry_t *s);
static void drain_over(void *arg);

static void free_pending(sentry_pending_t *p)
{
    free(p->body);
    free(p);
}

static sentry_pending_t *pop(sentry_t *s)
{
    sentry_pending_t *p = s->head;
    if (p) {
        s->head = p->next;
        if (s->head == NULL)
            s->tail = NULL;
        s->queued--;
    }
    return p;
}

int sentry_transport_submit(sentry_t *s, const char *event_id, int cat, sentry_sb_t *event)
{
    const luar_host_t *h = s->h;
    if (limited(s, cat, h->now(h))) {
        sentry_sb_free(event);
        sentry_count(s, SENTRY_RATE_LIMITED);
        return SENTRY_RATE_LIMITED;
    }
    if (s->queued >= s->queue_size || event->oom || s->drained) {
        sentry_sb_free(event);
        sentry_count(s, SENTRY_DROPPED);
        return SENTRY_DROPPED;
    }
    /* Whatever the event was built from, it leaves through the host's redaction: the same
     * secret values the log hides are replaced by "[REDACTED]" before the length is known. */
    luar_buf_t *clean = h->buf_new(0);
    sentry_pending_t *p = calloc(1, sizeof *p);
    int rc = clean && p ? h->redact(clean, event->data ? event->data : "", event->len) : -1;
    sentry_sb_free(event);
    size_t len = 0;
    const char *data = rc >= 0 ? h->buf_data(clean, &len) : NULL;
    if (data == NULL || (p->body = malloc(len + 1)) == NULL) {
        if (clean)
            h->buf_free(clean);
        free(p);
        sentry_count(s, SENTRY_DROPPED);
        return SENTRY_DROPPED;
    }
    memcpy(p->body, data, len);
    p->body[len] = '\0';
    p->len = len;
    h->buf_free(clean);
    snprintf(p->event_id, sizeof p->event_id, "%s", event_id);
    p->cat = cat;
    if (s->tail)
        s->tail->next = p;
    else
        s->head = p;
    s->tail = p;
    s->queued++;
    if (s->stopping && s->stop_timer == NULL)
        drain_bound(s); /* an event while the host drains: sent within the bound too */
    if (s->head)
        pump(s);
    return SENTRY_SENT;
}

static void failed(sentry_t *s, const char *why)
{
    const luar_host_t *h = s->h;
    double now = h->now(h);
    sentry_count(s, SENTRY_FAILED);
    s->backoff = s->backoff <= 0 ? BACKOFF_MIN : s->backoff * 2;
    if (s->backoff > BACKOFF_MAX)
        s->backoff = BACKOFF_MAX;
    s->backoff_until = now + s->backoff;
    s->unwarned_failures++;
    if (now - s->warned_at >= WARN_EVERY) {
        /* warn, never error: an error line would become an event about the events */
        h->log(h, LUAR_PLUGIN_LOG_WARN,
               "sending to Sentry failed: %s (%lu events failed "
               "since the last warning; next attempt in %.0f s; %zu waiting)",
               why, s->unwarned_failures, s->backoff, s->queued);
        s->warned_at = now;
        s->unwarned_failures = 0;
    }
}

static const char *header(const luar_plugin_http_res_t *res, const char *name)
{
    for (size_t i = 0; i < res->nheaders; i++)
        if (strcasecmp(res->headers[i].name, name) == 0)
            return res->headers[i].value;
    return NULL;
}

static void sent(void *arg, const luar_plugin_http_res_t *res)
{
    sentry_t *s = arg;
    const luar_host_t *h = s->h;
    s->call = NULL;
    if (res->rc != 0) {
        failed(s, res->message ? res->message : res->kind);
    } else {
        sentry_rate_limits(s, h->now(h), res->status, header(res, "retry-after"),
                           header(res, "x-sentry-rate-limits"));
        if (res->status >= 200 && res->status < 300) {
            s->backoff = 0;
            sentry_count(s, SENTRY_SENT);
        } else if (res->status == 429) {
            sentry_count(s, SENTRY_RATE_LIMITED);
        } else if (res->status >= 500) {
            char why[64];
            snprintf(why, sizeof why, "HTTP %ld", res->status);
            failed(s, why);
        } else {
            /* 400, 401, 413: this event (or the DSN) is wrong; another may pass */
            sentry_count(s, SENTRY_FAILED);
            h->log(h, LUAR_PLUGIN_LOG_WARN, "Sentry refused an event: HTTP %ld %.*s", res->status,
                   (int)(res->body_len > 200 ? 200 : res->body_len), res->body);
        }
    }
    pump(s);
}

static void wake(void *arg)
{
    sentry_t *s = arg;
    s->h->timer_stop(s->timer);
    s->timer = NULL;
    pump(s);
}

static void pump(sentry_t *s)
{
    const luar_host_t *h = s->h;
    while (s->call == NULL && s->head) {
        double now = h->now(h);
        if (now < s->backoff_until) {
            if (s->stopping) {
                drain_over(s); /* Sentry failing: no reason to wait */
                return;
            }
            if (s->timer == NULL)
                h->timer_start(h, s->backoff_until - now, 0, wake, s, &s->timer);
            return;
        }
        sentry_pending_t *p = pop(s);
        if (limited(s, p->cat, now)) {
            sentry_count(s, SENTRY_RATE_LIMITED);
            free_pending(p);
            continue;
        }
        char sent_at[32];
        sentry_iso_time(now, sent_at);
        sentry_sb_t env;
        sentry_sb_init(&env);
        sentry_sb_printf(&env, "{\"event_id\":\"%s\",\"dsn\":", p->event_id);
        sentry_sb_json(&env, s->dsn, strlen(s->dsn), 0);
        sentry_sb_printf(&env, ",\"sent_at\":\"%s\"}\n{\"type\":\"%s\",\"length\":%zu}\n", sent_at,
                         p->cat == SENTRY_CAT_TRANSACTION ? "transaction" : "event", p->len);
        sentry_sb_add(&env, p->body, p->len);
        sentry_sb_add(&env, "\n", 1);
        free_pending(p);
        if (env.oom) {
            sentry_sb_free(&env);
            sentry_count(s, SENTRY_DROPPED);
            continue;
        }
        luar_plugin_header_t headers[] = {
            {"Content-Type", "application/x-sentry-envelope"},
            {"X-Sentry-Auth", s->auth},
            {"User-Agent", SENTRY_CLIENT},
        };
        luar_plugin_http_req_t req = {
            .method = "POST",
            .url = s->url,
            .headers = headers,
            .nheaders = sizeof headers / sizeof headers[0],
            .body = env.data,
            .body_len = env.len,
            .connect_timeout = s->timeout < 5 ? s->timeout : 5,
            .timeout = s->timeout,
            .max_body = 64 * 1024,
        };
        int rc = h->http_request(h, &req, sent, s, &s->call);
        sentry_sb_free(&env);
        if (rc) {
            s->call = NULL;
            failed(s, "the request could not start");
        }
    }
}

void sentry_transport_stop(sentry_t *s)
{
    if (s->call) {
        s->h->http_cancel(s->call);
        sentry_count(s, SENTRY_DROPPED);
    }
    s->call = NULL;
    if (s->timer)
        s->h->timer_stop(s->timer);
    s->timer = NULL;
    if (s->stop_timer)
        s->h->timer_stop(s->stop_timer);
    s->stop_timer = NULL;
    sentry_pending_t *p;
    while ((p = pop(s)) != NULL) { /* shutdown does not wait for Sentry */
        free_pending(p);
        sentry_count(s, SENTRY_DROPPED);
    }
}

static void drain_over(void *arg)
{
    sentry_t *s = arg;
    size_t left = s->queued + (s->call != NULL);
    s->drained = 1;
    sentry_transport_stop(s);
    if (left)
        s->h->log(s->h, LUAR_PLUGIN_LOG_WARN,
                  "%zu events not sent to Sentry within %.1f s of "
                  "shutdown: dropped",
                  left, s->shutdown_timeout);
}

/* Starts the bound on the last sends (or ends them at once). */
static void drain_bound(sentry_t *s)
{
    const luar_host_t *h = s->h;
    /* Sentry failing (in backoff): waiting would only delay the exit. */
    if (h->now(h) < s->backoff_until || s->shutdown_timeout <= 0 ||
        h->timer_start(h, s->shutdown_timeout, 0, drain_over, s, &s->stop_timer) != 0)
        drain_over(s);
}

void sentry_transport_drain(sentry_t *s)
{
    s->stopping = 1;
    if (s->call != NULL || s->head != NULL)
        drain_bound(s);
}
