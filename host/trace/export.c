/*
 * OTLP/HTTP JSON span export (see export.h). Spans are encoded as they end into one JSON
 * array text; a timer (or a full batch) wraps the array in the resourceSpans envelope and
 * posts it with the outbound client. One post at a time: spans ending meanwhile wait in the
 * next batch, up to MAX_WAITING, beyond which they are dropped and counted.
 *
 * The OTLP JSON encoding: ids are hex strings, times are integers in strings (uint64 would
 * lose precision as JSON numbers), enums are integers.
 */
#include "trace/export.h"
#include "client/client.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/error.h"
#include "log/log.h"
#include "luar_version.h"
#include "metrics/metrics.h"
#include "secrets/redact.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH_SPANS 256
#define MAX_WAITING 4096
#define FLUSH_MS 1000
#define POST_TIMEOUT 10.0
#define FINAL_POST_TIMEOUT 2.0 /* at shutdown: the drain does not wait longer for a collector */

static struct {
    uv_loop_t *loop;
    luar_tracing_config_t cfg;
    int on;
    luar_buf_t spans;   /* the encoded spans waiting, comma-separated */
    size_t nspans;
    int posting;        /* a post in flight */
    int stopping;       /* the last post is bounded by FINAL_POST_TIMEOUT */
    int timer_ready;
    uv_timer_t timer;
    luar_metric_t *counter;
    double last_error_log; /* wall time of the last "export failed" line */
} ex;

static luar_span_listener_fn g_listener;

void luar_trace_set_listener(luar_span_listener_fn fn)
{
    g_listener = fn;
}

int luar_trace_exporting(void)
{
    return ex.on || g_listener != NULL;
}

uint64_t luar_trace_now_ns(void)
{
    return (uint64_t)(luar_time_now() * 1e9);
}

uint64_t luar_trace_unix_ns(uint64_t hrtime_ns)
{
    uint64_t now = uv_hrtime();
    uint64_t ago = now > hrtime_ns ? now - hrtime_ns : 0;
    uint64_t unix_now = luar_trace_now_ns();
    return unix_now > ago ? unix_now - ago : 0;
}

static void count(const char *outcome, double n)
{
    static const char *const labels[] = {"outcome"};
    if (ex.counter == NULL &&
        luar_metrics_register(LUAR_METRIC_COUNTER, "luar_trace_spans_total",
                              "Spans exported to the OTLP collector, or dropped (collector "
                              "down or slow).",
                              labels, 1, NULL, 0, &ex.counter, NULL))
        return;
    const char *v[] = {outcome};
    luar_metric_add(ex.counter, v, n);
}

void luar_tracing_config_free(luar_tracing_config_t *c)
{
    free(c->endpoint);
    free(c->service_name);
    for (size_t i = 0; i < c->nheaders; i++) {
        free(c->header_names[i]);
        free(c->header_values[i]);
    }
    memset(c, 0, sizeof *c);
    c->sample_rate = 1.0;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void flush(void);

static void on_timer(uv_timer_t *t)
{
    (void)t;
    flush();
}

int luar_trace_export_start(uv_loop_t *loop, const luar_tracing_config_t *cfg)
{
    luar_trace_sample_rate = cfg->sample_rate;
    if (cfg->endpoint == NULL)
        return 0;
    if (strncmp(cfg->endpoint, "http://", 7) != 0 && strncmp(cfg->endpoint, "https://", 8) != 0)
        return LUAR_EINVAL;
    luar_tracing_config_free(&ex.cfg);
    ex.cfg.endpoint = dup_or_null(cfg->endpoint);
    ex.cfg.service_name = dup_or_null(cfg->service_name ? cfg->service_name : "luar");
    ex.cfg.sample_rate = cfg->sample_rate;
    for (size_t i = 0; i < cfg->nheaders && i < LUAR_TRACE_MAX_HEADERS; i++) {
        ex.cfg.header_names[i] = dup_or_null(cfg->header_names[i]);
        ex.cfg.header_values[i] = dup_or_null(cfg->header_values[i]);
        ex.cfg.nheaders++;
        if (cfg->header_values[i])
            luar_secret_watch("tracing header", cfg->header_values[i],
                              strlen(cfg->header_values[i]));
    }
    if (ex.cfg.endpoint == NULL || ex.cfg.service_name == NULL)
        return LUAR_ENOMEM;
    ex.loop = loop;
    if (!ex.timer_ready) {
        uv_timer_init(loop, &ex.timer);
        uv_unref((uv_handle_t *)&ex.timer); /* an idle exporter never keeps the loop alive */
        ex.timer_ready = 1;
    }
    uv_timer_start(&ex.timer, on_timer, FLUSH_MS, FLUSH_MS);
    luar_buf_init(&ex.spans, 0);
    count("exported", 0);
    count("dropped", 0);
    ex.on = 1;
    return 0;
}

static void on_timer_closed(uv_handle_t *h)
{
    (void)h;
    ex.timer_ready = 0;
}

void luar_trace_export_stop(void)
{
    if (!ex.on)
        return;
    ex.stopping = 1;
    flush(); /* the last batch leaves now */
    ex.on = 0;
    ex.stopping = 0;
    if (ex.timer_ready) {
        uv_timer_stop(&ex.timer);
        uv_close((uv_handle_t *)&ex.timer, on_timer_closed);
    }
    if (!ex.posting)
        luar_buf_free(&ex.spans);
}

static int put_string_attr(luar_buf_t *b, const char *key, const char *value)
{
    int rc = luar_buf_puts(b, "{\"key\":");
    rc |= luar_buf_append_json_string(b, key, strlen(key));
    rc |= luar_buf_puts(b, ",\"value\":{\"stringValue\":");
    rc |= luar_buf_append_json_string(b, value, strlen(value) > 1024 ? 1024 : strlen(value));
    rc |= luar_buf_puts(b, "}}");
    return rc;
}

/* Encodes one span into `b` (OTLP JSON); nonzero when an append failed. */
static int encode_span(luar_buf_t *b, const luar_trace_t *t, const char *name, int kind,
                       uint64_t start, uint64_t end, const luar_span_attr_t *attrs,
                       size_t nattrs, int error, const char *message)
{
    int rc = luar_buf_appendf(b, "{\"traceId\":\"%s\",\"spanId\":\"%s\",", t->trace_id,
                              t->span_id);
    if (t->parent_id[0])
        rc |= luar_buf_appendf(b, "\"parentSpanId\":\"%s\",", t->parent_id);
    rc |= luar_buf_puts(b, "\"name\":");
    rc |= luar_buf_append_json_string(b, name, strlen(name));
    rc |= luar_buf_appendf(b,
                           ",\"kind\":%d,\"startTimeUnixNano\":\"%llu\",\"endTimeUnixNano\":"
                           "\"%llu\",\"attributes\":[",
                           kind, (unsigned long long)start,
                           (unsigned long long)(end > start ? end : start));
    for (size_t i = 0; i < nattrs; i++) {
        if (i)
            rc |= luar_buf_puts(b, ",");
        if (attrs[i].str) {
            rc |= put_string_attr(b, attrs[i].key, attrs[i].str);
        } else {
            rc |= luar_buf_puts(b, "{\"key\":");
            rc |= luar_buf_append_json_string(b, attrs[i].key, strlen(attrs[i].key));
            rc |= luar_buf_appendf(b, ",\"value\":{\"intValue\":\"%lld\"}}", attrs[i].num);
        }
    }
    rc |= luar_buf_puts(b, "],\"status\":{");
    if (error) {
        rc |= luar_buf_puts(b, "\"code\":2");
        if (message && *message) {
            luar_buf_t clean;
            luar_buf_init(&clean, 0);
            const char *m = luar_secret_clean(message, &clean);
            rc |= luar_buf_puts(b, ",\"message\":");
            rc |= luar_buf_append_json_string(b, m, strlen(m) > 1024 ? 1024 : strlen(m));
            luar_buf_free(&clean);
        }
    }
    rc |= luar_buf_puts(b, "}}");
    return rc;
}

void luar_span_end(const luar_trace_t *t, const char *name, int kind, uint64_t start_unix_ns,
                   const luar_span_attr_t *attrs, size_t nattrs, int error, const char *message)
{
    if (t == NULL || !luar_trace_active(t))
        return;
    if (g_listener)
        g_listener(t, name, kind, start_unix_ns, luar_trace_now_ns(), attrs, nattrs, error,
                   message);
    if (!ex.on || !(t->flags & 1))
        return;
    if (ex.nspans >= MAX_WAITING) {
        count("dropped", 1);
        return;
    }
    luar_buf_t *b = &ex.spans;
    size_t before = b->len;
    int rc = ex.nspans > 0 ? luar_buf_puts(b, ",") : 0;
    rc |= encode_span(b, t, name, kind, start_unix_ns, luar_trace_now_ns(), attrs, nattrs,
                      error, message);
    if (rc) { /* out of memory: take the partial span back out */
        b->len = before;
        if (b->data)
            b->data[before] = '\0';
        count("dropped", 1);
        return;
    }
    ex.nspans++;
    if (ex.nspans >= BATCH_SPANS)
        flush();
}

typedef struct post {
    size_t nspans;
    char *body;
} post_t;

static void on_posted(void *arg, luar_client_res_t *res)
{
    post_t *p = arg;
    ex.posting = 0;
    int ok = res->rc == 0 && res->status >= 200 && res->status < 300;
    count(ok ? "exported" : "dropped", (double)p->nspans);
    if (!ok) {
        double now = luar_time_now();
        if (now - ex.last_error_log >= 60) { /* one line a minute, not one a batch */
            ex.last_error_log = now;
            if (res->rc)
                luar_logf(LUAR_LOG_WARN, "trace export to %s failed: %s; %zu spans dropped",
                          ex.cfg.endpoint ? ex.cfg.endpoint : "?", res->message, p->nspans);
            else
                luar_logf(LUAR_LOG_WARN, "trace export to %s answered %ld; %zu spans dropped",
                          ex.cfg.endpoint ? ex.cfg.endpoint : "?", res->status, p->nspans);
        }
    }
    luar_client_res_free(res);
    free(p->body);
    free(p);
    if (!ex.on)
        luar_buf_free(&ex.spans);
    else if (ex.nspans >= BATCH_SPANS)
        flush();
}

static void flush(void)
{
    if (!ex.on || ex.posting || ex.nspans == 0)
        return;
    luar_buf_t body;
    luar_buf_init(&body, 0);
    int rc = luar_buf_puts(&body, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[");
    rc |= put_string_attr(&body, "service.name", ex.cfg.service_name);
    rc |= luar_buf_puts(&body, ",");
    rc |= put_string_attr(&body, "service.version", LUAR_VERSION);
    rc |= luar_buf_puts(&body, "]},\"scopeSpans\":[{\"scope\":{\"name\":\"luar\",\"version\":\"" LUAR_VERSION
                               "\"},\"spans\":[");
    rc |= luar_buf_append(&body, ex.spans.data, ex.spans.len);
    rc |= luar_buf_puts(&body, "]}]}]}");
    post_t *p = calloc(1, sizeof *p);
    if (rc || p == NULL) {
        count("dropped", (double)ex.nspans);
        luar_buf_free(&body);
        free(p);
        luar_buf_reset(&ex.spans);
        ex.nspans = 0;
        return;
    }
    p->nspans = ex.nspans;
    size_t len = body.len;
    p->body = luar_buf_detach(&body, NULL);
    luar_buf_reset(&ex.spans);
    ex.nspans = 0;

    luar_client_header_t headers[LUAR_TRACE_MAX_HEADERS + 1];
    size_t nh = 0;
    headers[nh].name = "Content-Type";
    headers[nh++].value = "application/json";
    for (size_t i = 0; i < ex.cfg.nheaders; i++) {
        headers[nh].name = ex.cfg.header_names[i];
        headers[nh++].value = ex.cfg.header_values[i];
    }
    luar_client_req_t req;
    memset(&req, 0, sizeof req);
    req.method = "POST";
    req.url = ex.cfg.endpoint;
    req.headers = headers;
    req.nheaders = nh;
    req.body = p->body;
    req.body_len = len;
    req.timeout = ex.stopping ? FINAL_POST_TIMEOUT : POST_TIMEOUT;
    req.max_body = 64 * 1024;
    ex.posting = 1;
    if (luar_client_request(ex.loop, &req, on_posted, p, NULL) != 0) {
        ex.posting = 0;
        count("dropped", (double)p->nspans);
        free(p->body);
        free(p);
    }
}
