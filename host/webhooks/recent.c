/*
 * The recent-deliveries log of this process: a fixed ring of the last LUAR_WEBHOOK_RECENT
 * webhook requests (route, event id, type, outcome, status, time; never a body or a
 * header), for the admin API, and the luar_webhooks_total{route,outcome} counter beside
 * it so that both are fed from one call. In memory and per worker process by design: it
 * answers "what did Stripe just send us and what did we say", not an audit trail (the
 * jobs and their dedupe records in the backend are the durable side).
 */
#include "webhooks/ingest.h"
#include "common/clock.h"
#include "metrics/metrics.h"

#include <string.h>

static luar_webhook_delivery_t ring[LUAR_WEBHOOK_RECENT];
static size_t ring_next;  /* the slot written next */
static size_t ring_count; /* filled slots, up to LUAR_WEBHOOK_RECENT */

static void copy_cut(char *dst, size_t cap, const char *src, size_t len)
{
    if (src == NULL)
        len = 0;
    if (len > cap - 1)
        len = cap - 1;
    if (len > 0)
        memcpy(dst, src, len);
    dst[len] = '\0';
}

static void count(const char *route, const char *outcome)
{
    static const char *const labels[] = {"route", "outcome"};
    /* Looked up at each call: cheap (a handful of families), and it survives
     * luar_metrics_reset() in tests, which a cached pointer would not. */
    luar_metric_t *m = luar_metrics_find("luar_webhooks_total");
    if (m == NULL &&
        luar_metrics_register(LUAR_METRIC_COUNTER, "luar_webhooks_total",
                              "Webhook deliveries by route and outcome (accepted, duplicate, "
                              "invalid_signature, expired, malformed, rejected).",
                              labels, 2, NULL, 0, &m, NULL) != 0)
        return;
    const char *values[] = {route, outcome};
    luar_metric_add(m, values, 1);
}

void luar_webhook_record(const char *route, const char *id, size_t id_len, const char *type,
                         size_t type_len, const char *outcome, int status, const char *request_id)
{
    luar_webhook_delivery_t *d = &ring[ring_next];
    d->at = luar_time_now();
    copy_cut(d->route, sizeof d->route, route, route ? strlen(route) : 0);
    copy_cut(d->id, sizeof d->id, id, id_len);
    copy_cut(d->type, sizeof d->type, type, type_len);
    d->outcome = outcome;
    d->status = status;
    copy_cut(d->request_id, sizeof d->request_id, request_id, request_id ? strlen(request_id) : 0);
    ring_next = (ring_next + 1) % LUAR_WEBHOOK_RECENT;
    if (ring_count < LUAR_WEBHOOK_RECENT)
        ring_count++;
    count(d->route, outcome);
}

size_t luar_webhook_recent(luar_webhook_delivery_t *out, size_t max)
{
    size_t n = max < ring_count ? max : ring_count;
    for (size_t i = 0; i < n; i++)
        out[i] = ring[(ring_next + LUAR_WEBHOOK_RECENT - 1 - i) % LUAR_WEBHOOK_RECENT];
    return n;
}

int luar_webhook_recent_json(luar_buf_t *out, size_t limit)
{
    size_t n = limit < ring_count ? limit : ring_count;
    int rc = luar_buf_putc(out, '[');
    for (size_t i = 0; i < n && rc == 0; i++) {
        const luar_webhook_delivery_t *d =
            &ring[(ring_next + LUAR_WEBHOOK_RECENT - 1 - i) % LUAR_WEBHOOK_RECENT];
        rc = luar_buf_appendf(out, "%s{\"at\":%.3f,\"route\":", i ? "," : "", d->at);
        if (rc == 0)
            rc = luar_buf_append_json_string(out, d->route, strlen(d->route));
        if (rc == 0)
            rc = luar_buf_puts(out, ",\"id\":");
        if (rc == 0)
            rc = luar_buf_append_json_string(out, d->id, strlen(d->id));
        if (rc == 0)
            rc = luar_buf_puts(out, ",\"type\":");
        if (rc == 0)
            rc = luar_buf_append_json_string(out, d->type, strlen(d->type));
        if (rc == 0)
            rc = luar_buf_appendf(
                out, ",\"outcome\":\"%s\",\"status\":%d,\"request_id\":", d->outcome, d->status);
        if (rc == 0)
            rc = luar_buf_append_json_string(out, d->request_id, strlen(d->request_id));
        if (rc == 0)
            rc = luar_buf_putc(out, '}');
    }
    if (rc == 0)
        rc = luar_buf_putc(out, ']');
    return rc;
}

void luar_webhook_recent_clear(void)
{
    ring_next = 0;
    ring_count = 0;
}
