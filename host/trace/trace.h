/*
 * W3C Trace Context (https://www.w3.org/TR/trace-context/): the `traceparent` of an inbound
 * request is taken (or a trace started), carried into the jobs that request enqueues and
 * into its outbound HTTP calls, and named as `trace_id` on every log line of the work. Each
 * request, job attempt and outbound call is a span of its own: a new span id whose parent is
 * the span that caused it. Spans may be exported (trace/export.h).
 *
 * Ids are hex text, lower-case, NUL-terminated, so they go to logs, headers and the queue
 * as they are. New ids come from a per-process generator seeded from the system's random
 * source (they identify, they do not protect).
 */
#ifndef LUAR_TRACE_H
#define LUAR_TRACE_H

#include <stddef.h>
#include <stdint.h>

#define LUAR_TRACEPARENT_LEN 55 /* "00-" 32 "-" 16 "-" 2 */

typedef struct luar_trace {
    char trace_id[33];  /* "" when there is no trace */
    char span_id[17];   /* this span */
    char parent_id[17]; /* the span that caused it; "" for the root of a trace */
    uint8_t flags;      /* trace-flags: bit 0 = sampled */
} luar_trace_t;

/*
 * Parses a `traceparent` value into the remote parent: *out gets its trace id, its span id
 * as parent_id, its flags, and no span id yet. Returns 0, or -1 (out untouched) when the
 * value is not a valid version-00 traceparent (or a later version's first 55 characters
 * followed by '-'), has an all-zero id or version ff: the caller then starts a new trace.
 */
int luar_trace_parse(const char *value, size_t len, luar_trace_t *out);

/*
 * Starts a span in `t`: the child of `parent` (same trace, parent_id = parent's span id,
 * same flags) when `parent` has a trace id; else the root of a new trace (sampled).
 * `parent` may be NULL or equal to `t` (a remote parent from luar_trace_parse).
 */
void luar_trace_child(luar_trace_t *t, const luar_trace_t *parent);

/* The share of new traces marked sampled (0..1; 1 by default; set from the configuration's
 * tracing.sample_rate). */
extern double luar_trace_sample_rate;

/* Writes the `traceparent` naming span `t` (out: LUAR_TRACEPARENT_LEN + 1 bytes). */
void luar_trace_format(const luar_trace_t *t, char *out);

/* Nonzero when `t` belongs to a trace. */
static inline int luar_trace_active(const luar_trace_t *t)
{
    return t != NULL && t->trace_id[0] != '\0';
}

#endif
