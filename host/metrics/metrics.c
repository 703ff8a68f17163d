/*
 * The Prometheus registry (see metrics.h). Families live in a list in registration order;
 * each family keeps its series in a chained hash table keyed by the label values (the
 * per-request lookup) and in a list in creation order (rendering). Each series carries its
 * label set pre-rendered and escaped, so rendering does no escaping work.
 *
 * Label values never show a watched secret value (secrets/redact.h): the rendered label set
 * is scrubbed when it is built, and built again at the next scrape when secrets were added
 * since. The lookup key keeps the raw values, so updates cost nothing extra.
 */
#include "metrics/metrics.h"
#include "common/error.h"
#include "secrets/redact.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DROPPED_NAME "luar_metrics_dropped_series_total"

/* One label combination of a family and its value(s). */
struct series {
    struct series *hash_next; /* chain in the family's table */
    struct series *next;      /* creation order */
    uint64_t hash;
    char *key;               /* label values, each NUL-terminated, back to back */
    size_t key_len;          /* bytes of `key` including the NULs */
    char *labels;            /* `a="x",b="y"` escaped, "" when the family has no labels */
    unsigned redact_gen;     /* luar_secret_generation() when `labels` was scrubbed */
    double value;            /* counters and gauges; the sum for histograms */
    uint64_t count;          /* histograms: observations */
    uint64_t *bucket_counts; /* histograms: per-bucket (not cumulative) counts */
};

/* A metric family: name, type, label names, buckets and its series. */
struct luar_metric {
    struct luar_metric *next; /* registration order */
    luar_metric_type_t type;
    char *name;
    char *help;
    char *label_names[LUAR_METRICS_MAX_LABELS];
    size_t nlabels;
    double *buckets; /* upper bounds without +Inf */
    size_t nbuckets;
    struct series **table;
    size_t table_size; /* power of two */
    size_t nseries;
    struct series *first, *last;
};

static const double default_buckets[] = {.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10};

static struct {
    luar_metric_t *first, *last;
    luar_metric_t *dropped; /* luar_metrics_dropped_series_total{metric}, made on first drop */
} g_reg;

static void set_err(luar_buf_t *err, const char *what, const char *name)
{
    if (err)
        luar_buf_appendf(err, "%s: %s", what, name ? name : "(null)");
}

static int valid_name(const char *s, int allow_colon)
{
    if (s == NULL || s[0] == '\0')
        return 0;
    for (const char *p = s; *p; p++) {
        char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                 (allow_colon && c == ':') || (p != s && c >= '0' && c <= '9');
        if (!ok)
            return 0;
    }
    return 1;
}

/* Nonzero when `name` equals `base` followed by `suffix`. */
static int is_suffixed(const char *name, const char *base, const char *suffix)
{
    size_t n = strlen(base);
    return strncmp(name, base, n) == 0 && strcmp(name + n, suffix) == 0;
}

/* Nonzero when a histogram's generated series names would clash between `a` and `b`. */
static int names_clash(const luar_metric_t *a, luar_metric_type_t btype, const char *bname)
{
    static const char *const sfx[] = {"_bucket", "_sum", "_count"};
    for (int i = 0; i < 3; i++) {
        if (a->type == LUAR_METRIC_HISTOGRAM && is_suffixed(bname, a->name, sfx[i]))
            return 1;
        if (btype == LUAR_METRIC_HISTOGRAM && is_suffixed(a->name, bname, sfx[i]))
            return 1;
    }
    return 0;
}

static void free_series(struct series *s)
{
    free(s->key);
    free(s->labels);
    free(s->bucket_counts);
    free(s);
}

static void free_metric(luar_metric_t *m)
{
    if (m == NULL)
        return;
    struct series *s = m->first;
    while (s) {
        struct series *next = s->next;
        free_series(s);
        s = next;
    }
    for (size_t i = 0; i < m->nlabels; i++)
        free(m->label_names[i]);
    free(m->table);
    free(m->buckets);
    free(m->name);
    free(m->help);
    free(m);
}

/* Checks the label names and buckets of a registration. Returns 0 or LUAR_EINVAL. */
static int check_shape(luar_metric_type_t type, const char *const *labels, size_t nlabels,
                       const double *buckets, size_t nbuckets, luar_buf_t *err)
{
    if (nlabels > LUAR_METRICS_MAX_LABELS || (nlabels > 0 && labels == NULL)) {
        set_err(err, "too many labels or no label names", "");
        return LUAR_EINVAL;
    }
    for (size_t i = 0; i < nlabels; i++) {
        if (!valid_name(labels[i], 0) || strcmp(labels[i], "le") == 0 ||
            strncmp(labels[i], "__", 2) == 0) {
            set_err(err, "invalid label name", labels[i]);
            return LUAR_EINVAL;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(labels[i], labels[j]) == 0) {
                set_err(err, "duplicate label name", labels[i]);
                return LUAR_EINVAL;
            }
        }
    }
    if (type != LUAR_METRIC_HISTOGRAM && buckets != NULL && nbuckets > 0) {
        set_err(err, "buckets given for a metric that is not a histogram", "");
        return LUAR_EINVAL;
    }
    for (size_t i = 0; type == LUAR_METRIC_HISTOGRAM && buckets && i < nbuckets; i++) {
        if (isnan(buckets[i]) || (i > 0 && !(buckets[i] > buckets[i - 1])) ||
            (isinf(buckets[i]) && (buckets[i] < 0 || i + 1 < nbuckets))) {
            set_err(err, "histogram buckets must be increasing", "");
            return LUAR_EINVAL;
        }
    }
    return 0;
}

/* Nonzero when an existing family has exactly this shape. */
static int same_shape(const luar_metric_t *m, luar_metric_type_t type, const char *const *labels,
                      size_t nlabels, const double *buckets, size_t nbuckets)
{
    if (m->type != type || m->nlabels != nlabels)
        return 0;
    for (size_t i = 0; i < nlabels; i++) {
        if (strcmp(m->label_names[i], labels[i]) != 0)
            return 0;
    }
    if (type != LUAR_METRIC_HISTOGRAM)
        return 1;
    if (m->nbuckets != nbuckets)
        return 0;
    return nbuckets == 0 || memcmp(m->buckets, buckets, nbuckets * sizeof(double)) == 0;
}

static struct series *get_series(luar_metric_t *m, const char *const *values, int *rc);

int luar_metrics_register(luar_metric_type_t type, const char *name, const char *help,
                          const char *const *labels, size_t nlabels, const double *buckets,
                          size_t nbuckets, luar_metric_t **out, luar_buf_t *err)
{
    luar_metric_t *m = NULL;
    int rc;
    if (type != LUAR_METRIC_COUNTER && type != LUAR_METRIC_GAUGE && type != LUAR_METRIC_HISTOGRAM) {
        set_err(err, "invalid metric type", name);
        return LUAR_EINVAL;
    }
    if (!valid_name(name, 1)) {
        set_err(err, "invalid metric name", name);
        return LUAR_EINVAL;
    }
    rc = check_shape(type, labels, nlabels, buckets, nbuckets, err);
    if (rc)
        return rc;
    if (type == LUAR_METRIC_HISTOGRAM && (buckets == NULL || nbuckets == 0)) {
        buckets = default_buckets;
        nbuckets = sizeof default_buckets / sizeof default_buckets[0];
    }
    if (type == LUAR_METRIC_HISTOGRAM && buckets[nbuckets - 1] == INFINITY)
        nbuckets--; /* +Inf is always added */
    for (luar_metric_t *e = g_reg.first; e; e = e->next) {
        if (strcmp(e->name, name) == 0) {
            if (!same_shape(e, type, labels, nlabels, buckets, nbuckets)) {
                set_err(err, "metric already registered with another type or labels", name);
                return LUAR_EEXISTS;
            }
            *out = e;
            return 0;
        }
        if (names_clash(e, type, name)) {
            set_err(err, "metric name clashes with a histogram's series", name);
            return LUAR_EEXISTS;
        }
    }

    rc = LUAR_ENOMEM;
    m = calloc(1, sizeof *m);
    if (m == NULL)
        goto fail;
    m->type = type;
    m->name = strdup(name);
    m->help = strdup(help ? help : "");
    if (m->name == NULL || m->help == NULL)
        goto fail;
    for (size_t i = 0; i < nlabels; i++) {
        m->label_names[i] = strdup(labels[i]);
        if (m->label_names[i] == NULL)
            goto fail;
        m->nlabels++;
    }
    if (type == LUAR_METRIC_HISTOGRAM && nbuckets > 0) {
        m->buckets = malloc(nbuckets * sizeof(double));
        if (m->buckets == NULL)
            goto fail;
        memcpy(m->buckets, buckets, nbuckets * sizeof(double));
        m->nbuckets = nbuckets;
    }
    m->table_size = 16;
    m->table = calloc(m->table_size, sizeof *m->table);
    if (m->table == NULL)
        goto fail;
    /* A family without labels has its one series from the start, so it renders as 0. */
    if (nlabels == 0 && get_series(m, NULL, &rc) == NULL)
        goto fail;
    if (g_reg.last)
        g_reg.last->next = m;
    else
        g_reg.first = m;
    g_reg.last = m;
    *out = m;
    return 0;
fail:
    free_metric(m);
    return rc;
}

luar_metric_t *luar_metrics_find(const char *name)
{
    for (luar_metric_t *m = g_reg.first; m; m = m->next) {
        if (strcmp(m->name, name) == 0)
            return m;
    }
    return NULL;
}

luar_metric_type_t luar_metric_type(const luar_metric_t *m)
{
    return m->type;
}

size_t luar_metric_nlabels(const luar_metric_t *m)
{
    return m->nlabels;
}

/* FNV-1a over the label values, with a separator so ("ab","c") != ("a","bc"). */
static uint64_t hash_values(const char *const *values, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        for (const unsigned char *p = (const unsigned char *)values[i]; *p; p++)
            h = (h ^ *p) * 1099511628211ULL;
        h = (h ^ 0xffu) * 1099511628211ULL;
    }
    return h;
}

static int key_matches(const struct series *s, const char *const *values, size_t n)
{
    const char *p = s->key;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(p, values[i]) != 0)
            return 0;
        p += strlen(p) + 1;
    }
    return 1;
}

/*
 * Appends a label value escaped for the text format (backslash, quote, newline); invalid
 * UTF-8 becomes U+FFFD, since one bad byte would make the whole scrape unparsable.
 */
static int append_label_value(luar_buf_t *b, const char *v)
{
    const unsigned char *p = (const unsigned char *)v;
    const unsigned char *end = p + strlen(v);
    int rc = 0;
    while (rc == 0 && *p) {
        size_t n = luar_utf8_seq(p, (size_t)(end - p));
        if (*p == '\\')
            rc = luar_buf_puts(b, "\\\\");
        else if (*p == '"')
            rc = luar_buf_puts(b, "\\\"");
        else if (*p == '\n')
            rc = luar_buf_puts(b, "\\n");
        else if (n == 0)
            rc = luar_buf_puts(b, "\xef\xbf\xbd");
        else
            rc = luar_buf_append(b, p, n);
        p += n ? n : 1;
    }
    return rc;
}

/*
 * Renders `a="x",b="y"` for `values` into `lab`, each value scrubbed of watched secrets
 * before it is escaped. Returns 0 or a luar_buf error.
 */
static int render_labels(const luar_metric_t *m, luar_buf_t *lab, const char *const *values)
{
    luar_buf_t clean;
    int rc = 0;
    luar_buf_init(&clean, 0);
    for (size_t i = 0; rc == 0 && i < m->nlabels; i++) {
        const char *v = values[i];
        size_t match;
        if (luar_secret_watching() && luar_secret_find(v, strlen(v), &match) < strlen(v)) {
            luar_buf_reset(&clean);
            rc = luar_secret_scrub(&clean, v, strlen(v)) < 0 ? LUAR_ENOMEM : 0;
            v = clean.data;
        }
        if (rc == 0)
            rc = luar_buf_appendf(lab, "%s%s=\"", i ? "," : "", m->label_names[i]);
        if (rc == 0)
            rc = append_label_value(lab, v);
        if (rc == 0)
            rc = luar_buf_putc(lab, '"');
    }
    luar_buf_free(&clean);
    return rc;
}

/* Builds the key and escaped label text of a new series. Returns 0 or a luar_buf error. */
static int build_series(const luar_metric_t *m, struct series *s, const char *const *values)
{
    luar_buf_t key, lab;
    int rc = 0;
    luar_buf_init(&key, 0);
    luar_buf_init(&lab, 0);
    for (size_t i = 0; rc == 0 && i < m->nlabels; i++)
        rc = luar_buf_append(&key, values[i], strlen(values[i]) + 1);
    if (rc == 0)
        rc = render_labels(m, &lab, values);
    if (rc)
        goto fail;
    s->key = luar_buf_detach(&key, &s->key_len);
    s->labels = luar_buf_detach(&lab, NULL);
    s->redact_gen = luar_secret_generation();
    if (s->key == NULL || s->labels == NULL) {
        rc = LUAR_ENOMEM;
        goto fail;
    }
    return 0;
fail:
    luar_buf_free(&key);
    luar_buf_free(&lab);
    return rc;
}

/* Rebuilds the label text of `s` from its key when secrets were watched since it was made. */
static void refresh_labels(const luar_metric_t *m, struct series *s)
{
    const char *values[LUAR_METRICS_MAX_LABELS];
    if (s->redact_gen == luar_secret_generation() || m->nlabels == 0)
        return;
    const char *p = s->key;
    for (size_t i = 0; i < m->nlabels; i++) {
        values[i] = p;
        p += strlen(p) + 1;
    }
    luar_buf_t lab;
    luar_buf_init(&lab, 0);
    if (render_labels(m, &lab, values) == 0 && lab.data != NULL) {
        free(s->labels);
        s->labels = luar_buf_detach(&lab, NULL);
        s->redact_gen = luar_secret_generation();
    }
    luar_buf_free(&lab);
}

static void grow_table(luar_metric_t *m)
{
    size_t size = m->table_size * 2;
    struct series **table = calloc(size, sizeof *table);
    if (table == NULL)
        return; /* longer chains, still correct */
    for (struct series *s = m->first; s; s = s->next) {
        size_t i = (size_t)(s->hash & (size - 1));
        s->hash_next = table[i];
        table[i] = s;
    }
    free(m->table);
    m->table = table;
    m->table_size = size;
}

/* Counts a refused series in luar_metrics_dropped_series_total{metric=<family>}. */
static void count_dropped(const luar_metric_t *m)
{
    static const char *const label[] = {"metric"};
    if (m == g_reg.dropped)
        return;
    if (g_reg.dropped == NULL &&
        luar_metrics_register(LUAR_METRIC_COUNTER, DROPPED_NAME,
                              "Label combinations refused because a metric reached its cap.", label,
                              1, NULL, 0, &g_reg.dropped, NULL) != 0)
        return;
    const char *values[] = {m->name};
    luar_metric_add(g_reg.dropped, values, 1);
}

/*
 * Finds or creates the series for `values`. Returns it, or NULL with *rc set to
 * LUAR_EINVAL (missing values), LUAR_ETOOBIG (cap) or LUAR_ENOMEM.
 */
static struct series *get_series(luar_metric_t *m, const char *const *values, int *rc)
{
    struct series *s = NULL;
    if (m->nlabels > 0) {
        if (values == NULL)
            goto invalid;
        for (size_t i = 0; i < m->nlabels; i++) {
            if (values[i] == NULL)
                goto invalid;
        }
    }
    uint64_t h = hash_values(values, m->nlabels);
    for (s = m->table[h & (m->table_size - 1)]; s; s = s->hash_next) {
        if (s->hash == h && key_matches(s, values, m->nlabels))
            return s;
    }
    if (m->nseries >= LUAR_METRICS_MAX_SERIES) {
        count_dropped(m);
        *rc = LUAR_ETOOBIG;
        return NULL;
    }
    *rc = LUAR_ENOMEM;
    s = calloc(1, sizeof *s);
    if (s == NULL)
        goto fail;
    s->hash = h;
    if (m->type == LUAR_METRIC_HISTOGRAM) {
        s->bucket_counts = calloc(m->nbuckets ? m->nbuckets : 1, sizeof(uint64_t));
        if (s->bucket_counts == NULL)
            goto fail;
    }
    *rc = build_series(m, s, values);
    if (*rc)
        goto fail;
    if (m->nseries + 1 > m->table_size / 4 * 3)
        grow_table(m);
    size_t i = (size_t)(h & (m->table_size - 1));
    s->hash_next = m->table[i];
    m->table[i] = s;
    if (m->last)
        m->last->next = s;
    else
        m->first = s;
    m->last = s;
    m->nseries++;
    *rc = 0;
    return s;
invalid:
    *rc = LUAR_EINVAL;
    return NULL;
fail:
    if (s)
        free_series(s);
    return NULL;
}

int luar_metric_add(luar_metric_t *m, const char *const *values, double v)
{
    int rc = 0;
    if (m == NULL || m->type == LUAR_METRIC_HISTOGRAM || isnan(v))
        return LUAR_EINVAL;
    if (m->type == LUAR_METRIC_COUNTER && !(v >= 0))
        return LUAR_EINVAL;
    struct series *s = get_series(m, values, &rc);
    if (s == NULL)
        return rc;
    s->value += v;
    return 0;
}

int luar_metric_set(luar_metric_t *m, const char *const *values, double v)
{
    int rc = 0;
    if (m == NULL || m->type != LUAR_METRIC_GAUGE)
        return LUAR_EINVAL;
    struct series *s = get_series(m, values, &rc);
    if (s == NULL)
        return rc;
    s->value = v;
    return 0;
}

int luar_metric_observe(luar_metric_t *m, const char *const *values, double v)
{
    int rc = 0;
    if (m == NULL || m->type != LUAR_METRIC_HISTOGRAM || isnan(v))
        return LUAR_EINVAL;
    struct series *s = get_series(m, values, &rc);
    if (s == NULL)
        return rc;
    for (size_t i = 0; i < m->nbuckets; i++) {
        if (v <= m->buckets[i]) {
            s->bucket_counts[i]++;
            break;
        }
    }
    s->count++;
    s->value += v;
    return 0;
}

/*
 * Appends a sample value the way Prometheus parses it: integers without exponent while
 * exact, otherwise the shortest "%g" form that reads back to the same double.
 */
static int append_number(luar_buf_t *b, double v)
{
    char tmp[32];
    if (isnan(v))
        return luar_buf_puts(b, "NaN");
    if (isinf(v))
        return luar_buf_puts(b, v > 0 ? "+Inf" : "-Inf");
    if (v == floor(v) && fabs(v) <= 9007199254740992.0)
        return luar_buf_appendf(b, "%.0f", v);
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    return luar_buf_puts(b, tmp);
}

static int render_help(luar_buf_t *out, const luar_metric_t *m)
{
    static const char *const types[] = {"counter", "gauge", "histogram"};
    int rc = 0;
    if (m->help[0] != '\0') {
        rc = luar_buf_appendf(out, "# HELP %s ", m->name);
        for (const char *p = m->help; rc == 0 && *p; p++) {
            if (*p == '\\')
                rc = luar_buf_puts(out, "\\\\");
            else if (*p == '\n')
                rc = luar_buf_puts(out, "\\n");
            else
                rc = luar_buf_putc(out, *p);
        }
        if (rc == 0)
            rc = luar_buf_putc(out, '\n');
    }
    if (rc == 0)
        rc = luar_buf_appendf(out, "# TYPE %s %s\n", m->name, types[m->type]);
    return rc;
}

/* Appends `name_suffix{labels[,le="bound"]} value\n`. */
static int render_sample(luar_buf_t *out, const luar_metric_t *m, const char *suffix,
                         const struct series *s, const double *le, double v)
{
    int has_labels = s->labels[0] != '\0';
    int rc = luar_buf_appendf(out, "%s%s", m->name, suffix);
    if (rc == 0 && (has_labels || le))
        rc = luar_buf_appendf(out, "{%s", s->labels);
    if (rc == 0 && le) {
        rc = luar_buf_puts(out, has_labels ? ",le=\"" : "le=\"");
        if (rc == 0)
            rc = append_number(out, *le);
        if (rc == 0)
            rc = luar_buf_putc(out, '"');
    }
    if (rc == 0 && (has_labels || le))
        rc = luar_buf_putc(out, '}');
    if (rc == 0)
        rc = luar_buf_putc(out, ' ');
    if (rc == 0)
        rc = append_number(out, v);
    if (rc == 0)
        rc = luar_buf_putc(out, '\n');
    return rc;
}

static int render_histogram(luar_buf_t *out, const luar_metric_t *m, const struct series *s)
{
    static const double inf = INFINITY;
    uint64_t cumulative = 0;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < m->nbuckets; i++) {
        cumulative += s->bucket_counts[i];
        rc = render_sample(out, m, "_bucket", s, &m->buckets[i], (double)cumulative);
    }
    if (rc == 0)
        rc = render_sample(out, m, "_bucket", s, &inf, (double)s->count);
    if (rc == 0)
        rc = render_sample(out, m, "_sum", s, NULL, s->value);
    if (rc == 0)
        rc = render_sample(out, m, "_count", s, NULL, (double)s->count);
    return rc;
}

int luar_metrics_render(luar_buf_t *out)
{
    int rc = 0;
    for (const luar_metric_t *m = g_reg.first; rc == 0 && m; m = m->next) {
        rc = render_help(out, m);
        for (struct series *s = m->first; rc == 0 && s; s = s->next) {
            refresh_labels(m, s);
            if (m->type == LUAR_METRIC_HISTOGRAM)
                rc = render_histogram(out, m, s);
            else
                rc = render_sample(out, m, "", s, NULL, s->value);
        }
    }
    return rc;
}

void luar_metrics_reset(void)
{
    luar_metric_t *m = g_reg.first;
    while (m) {
        luar_metric_t *next = m->next;
        free_metric(m);
        m = next;
    }
    g_reg.first = g_reg.last = NULL;
    g_reg.dropped = NULL;
}
