/*
 * The process's Prometheus registry, shared by C and Lua: counters, gauges and histograms
 * with labels, rendered in text exposition format 0.0.4. Not thread-safe: loop thread only.
 * Each metric keeps at most LUAR_METRICS_MAX_SERIES label combinations; updates for new
 * combinations past that are dropped (and counted in luar_metrics_dropped_series_total) so
 * a label fed from user input cannot exhaust memory.
 */
#ifndef LUAR_METRICS_H
#define LUAR_METRICS_H

#include "common/buf.h"

#include <stddef.h>

#define LUAR_METRICS_MAX_LABELS 8
#define LUAR_METRICS_MAX_SERIES 10000

typedef enum {
    LUAR_METRIC_COUNTER,
    LUAR_METRIC_GAUGE,
    LUAR_METRIC_HISTOGRAM,
} luar_metric_type_t;

typedef struct luar_metric luar_metric_t;

/*
 * Registers a metric family, or returns the existing one when a family of the same name,
 * type and label names exists (so scripts reloaded register again without error).
 * `name` must match [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]* and not
 * "le". `buckets` (histograms only; NULL for the default 0.005..10 s) must be increasing.
 * All strings are copied. Returns 0, LUAR_EINVAL (bad name/labels/buckets, message in
 * `err` when not NULL), or LUAR_EEXISTS (same name, another type or label set).
 * The registry owns the metric; it lives until luar_metrics_reset().
 */
int luar_metrics_register(luar_metric_type_t type, const char *name, const char *help,
                          const char *const *labels, size_t nlabels, const double *buckets,
                          size_t nbuckets, luar_metric_t **out, luar_buf_t *err);

/* Looks a family up by name; NULL when absent. */
luar_metric_t *luar_metrics_find(const char *name);

/* Type and label count of a family. */
luar_metric_type_t luar_metric_type(const luar_metric_t *m);
size_t luar_metric_nlabels(const luar_metric_t *m);

/*
 * Updates the series for `values` (one string per label name, in order; NULL when the
 * family has no labels). add: counters (v >= 0, else LUAR_EINVAL) and gauges; set: gauges;
 * observe: histograms. Returns 0, LUAR_EINVAL (wrong type or value), LUAR_ETOOBIG (series
 * cap reached), or LUAR_ENOMEM.
 */
int luar_metric_add(luar_metric_t *m, const char *const *values, double v);
int luar_metric_set(luar_metric_t *m, const char *const *values, double v);
int luar_metric_observe(luar_metric_t *m, const char *const *values, double v);

/* Appends the whole registry in Prometheus text format 0.0.4 to `out`. */
int luar_metrics_render(luar_buf_t *out);

/* Frees every family (tests and exit). */
void luar_metrics_reset(void);

#endif
