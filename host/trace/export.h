/*
 * Span export as OTLP/HTTP JSON (OpenTelemetry's protocol, JSON encoding) to a collector:
 * `tracing = { endpoint = "http://collector:4318/v1/traces" }` in the configuration.
 * Each HTTP request (server span), outbound call (client span) and job attempt (consumer
 * span) that belongs to a sampled trace is encoded when it ends, batched, and posted at most
 * once a second (or at 256 spans) with one request in flight. Exporting never blocks and
 * never delays the work: when the collector is slow or down, spans beyond a bound of 4,096
 * waiting are dropped and counted in luar_trace_spans_total{outcome="dropped"}.
 *
 * Without an endpoint nothing is recorded (luar_span_end returns at once). Loop thread only.
 */
#ifndef LUAR_TRACE_EXPORT_H
#define LUAR_TRACE_EXPORT_H

#include "trace/trace.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define LUAR_TRACE_MAX_HEADERS 8

typedef struct luar_tracing_config {
    char *endpoint;     /* NULL: no export */
    char *service_name; /* resource service.name; NULL: "luar" */
    double sample_rate; /* share of new traces sampled, 0..1 (default 1); remote parents'
                           own flag decides for theirs */
    char *header_names[LUAR_TRACE_MAX_HEADERS]; /* sent with every export (an API key) */
    char *header_values[LUAR_TRACE_MAX_HEADERS];
    size_t nheaders;
} luar_tracing_config_t;

enum { LUAR_SPAN_INTERNAL = 1, LUAR_SPAN_SERVER = 2, LUAR_SPAN_CLIENT = 3,
       LUAR_SPAN_PRODUCER = 4, LUAR_SPAN_CONSUMER = 5 };

/* An attribute: a string value, or an integer one when `str` is NULL. */
typedef struct luar_span_attr {
    const char *key;
    const char *str;
    long long num;
} luar_span_attr_t;

/*
 * Starts exporting on `loop` with `cfg` (copied); also sets the sample rate new traces use.
 * Returns 0, LUAR_EINVAL (endpoint not http(s)://) or LUAR_ENOMEM. Idempotent: a second call
 * replaces the settings.
 */
int luar_trace_export_start(uv_loop_t *loop, const luar_tracing_config_t *cfg);

/* Posts what is batched (bounded by `grace` seconds of waiting at most) and stops. */
void luar_trace_export_stop(void);

/* Nonzero when spans are being recorded. */
int luar_trace_exporting(void);

/*
 * Records the end of span `t` named `name`, from `start_unix_ns` to now, with `attrs`.
 * `error` nonzero sets the span's status to error with `message` (may be NULL). Does nothing
 * when not exporting or when the trace is not sampled.
 */
void luar_span_end(const luar_trace_t *t, const char *name, int kind, uint64_t start_unix_ns,
                   const luar_span_attr_t *attrs, size_t nattrs, int error, const char *message);

/*
 * A listener told of every span that ends, sampled or not, exported or not (the plugins'
 * on_span hooks, plugin/hooks.c). While one is set luar_trace_exporting() is nonzero, so
 * the call sites record their spans. NULL removes it.
 */
typedef void (*luar_span_listener_fn)(const luar_trace_t *t, const char *name, int kind,
                                      uint64_t start_unix_ns, uint64_t end_unix_ns,
                                      const luar_span_attr_t *attrs, size_t nattrs, int error,
                                      const char *message);
void luar_trace_set_listener(luar_span_listener_fn fn);

/* Wall-clock unix nanoseconds now, and the unix time of a uv_hrtime() value. */
uint64_t luar_trace_now_ns(void);
uint64_t luar_trace_unix_ns(uint64_t hrtime_ns);

void luar_tracing_config_free(luar_tracing_config_t *cfg);

#endif
