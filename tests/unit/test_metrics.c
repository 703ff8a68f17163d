#include "common/buf.h"
#include "common/error.h"
#include "metrics/metrics.h"
#include "test.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Renders the registry into `b` (emptied first) and returns the text. */
static const char *render(luar_buf_t *b)
{
    luar_buf_reset(b);
    if (luar_metrics_render(b) != 0)
        return "render failed";
    return b->data ? b->data : "";
}

TEST(test_counter_with_labels_renders_exactly)
{
    static const char *const labels[] = {"method", "path"};
    luar_metric_t *m = NULL;
    luar_buf_t b;
    luar_buf_init(&b, 0);
    CHECK_EQ_INT(luar_metrics_register(LUAR_METRIC_COUNTER, "http_requests_total",
                                       "Requests served.", labels, 2, NULL, 0, &m, NULL),
                 0);
    const char *get_a[] = {"GET", "/a"};
    const char *post_b[] = {"POST", "/b"};
    CHECK_EQ_INT(luar_metric_add(m, get_a, 1), 0);
    CHECK_EQ_INT(luar_metric_add(m, post_b, 2.5), 0);
    CHECK_EQ_INT(luar_metric_add(m, get_a, 2), 0);
    CHECK_EQ_INT(luar_metric_add(m, get_a, -1), LUAR_EINVAL);
    CHECK_EQ_INT(luar_metric_add(m, get_a, NAN), LUAR_EINVAL);
    CHECK_EQ_INT(luar_metric_set(m, get_a, 1), LUAR_EINVAL);
    CHECK_EQ_INT(luar_metric_observe(m, get_a, 1), LUAR_EINVAL);
    CHECK_EQ_INT(luar_metric_add(m, NULL, 1), LUAR_EINVAL);
    CHECK_EQ_STR(render(&b), "# HELP http_requests_total Requests served.\n"
                             "# TYPE http_requests_total counter\n"
                             "http_requests_total{method=\"GET\",path=\"/a\"} 3\n"
                             "http_requests_total{method=\"POST\",path=\"/b\"} 2.5\n");
    CHECK(luar_metrics_find("http_requests_total") == m);
    CHECK(luar_metrics_find("nope") == NULL);
    CHECK_EQ_INT(luar_metric_type(m), LUAR_METRIC_COUNTER);
    CHECK_EQ_INT(luar_metric_nlabels(m), 2);
    luar_metrics_reset();
    CHECK_EQ_STR(render(&b), "");
    luar_buf_free(&b);
}

TEST(test_gauge_without_labels_and_number_formats)
{
    luar_metric_t *m = NULL;
    luar_buf_t b;
    luar_buf_init(&b, 0);
    CHECK_EQ_INT(
        luar_metrics_register(LUAR_METRIC_GAUGE, "queue_depth", "", NULL, 0, NULL, 0, &m, NULL), 0);
    /* A family without labels exists as 0 before the first update; no HELP when empty. */
    CHECK_EQ_STR(render(&b), "# TYPE queue_depth gauge\nqueue_depth 0\n");
    CHECK_EQ_INT(luar_metric_set(m, NULL, 1234567890123.0), 0);
    CHECK_EQ_STR(render(&b), "# TYPE queue_depth gauge\nqueue_depth 1234567890123\n");
    CHECK_EQ_INT(luar_metric_add(m, NULL, -1234567890124.5), 0);
    CHECK_EQ_STR(render(&b), "# TYPE queue_depth gauge\nqueue_depth -1.5\n");
    CHECK_EQ_INT(luar_metric_set(m, NULL, 0.1), 0);
    CHECK_EQ_STR(render(&b), "# TYPE queue_depth gauge\nqueue_depth 0.1\n");
    CHECK_EQ_INT(luar_metric_set(m, NULL, 1e-7), 0);
    CHECK_EQ_STR(render(&b), "# TYPE queue_depth gauge\nqueue_depth 1e-07\n");
    CHECK_EQ_INT(luar_metric_set(m, NULL, INFINITY), 0);
    CHECK_EQ_STR(render(&b), "# TYPE queue_depth gauge\nqueue_depth +Inf\n");
    CHECK_EQ_INT(luar_metric_set(m, NULL, -INFINITY), 0);
    CHECK_EQ_STR(render(&b), "# TYPE queue_depth gauge\nqueue_depth -Inf\n");
    CHECK_EQ_INT(luar_metric_set(m, NULL, NAN), 0);
    CHECK_EQ_STR(render(&b), "# TYPE queue_depth gauge\nqueue_depth NaN\n");
    CHECK_EQ_INT(luar_metric_observe(m, NULL, 1), LUAR_EINVAL);
    luar_metrics_reset();
    luar_buf_free(&b);
}

TEST(test_histogram_renders_cumulative_buckets)
{
    static const char *const labels[] = {"route"};
    static const double buckets[] = {0.1, 1, 5};
    luar_metric_t *m = NULL;
    luar_buf_t b;
    luar_buf_init(&b, 0);
    CHECK_EQ_INT(luar_metrics_register(LUAR_METRIC_HISTOGRAM, "req_seconds", "Latency.", labels, 1,
                                       buckets, 3, &m, NULL),
                 0);
    const char *users[] = {"/users/:id"};
    CHECK_EQ_INT(luar_metric_observe(m, users, 0.05), 0);
    CHECK_EQ_INT(luar_metric_observe(m, users, 0.1), 0);
    CHECK_EQ_INT(luar_metric_observe(m, users, 3), 0);
    CHECK_EQ_INT(luar_metric_observe(m, users, 7), 0);
    CHECK_EQ_INT(luar_metric_observe(m, users, NAN), LUAR_EINVAL);
    CHECK_EQ_INT(luar_metric_add(m, users, 1), LUAR_EINVAL);
    CHECK_EQ_STR(render(&b), "# HELP req_seconds Latency.\n"
                             "# TYPE req_seconds histogram\n"
                             "req_seconds_bucket{route=\"/users/:id\",le=\"0.1\"} 2\n"
                             "req_seconds_bucket{route=\"/users/:id\",le=\"1\"} 2\n"
                             "req_seconds_bucket{route=\"/users/:id\",le=\"5\"} 3\n"
                             "req_seconds_bucket{route=\"/users/:id\",le=\"+Inf\"} 4\n"
                             "req_seconds_sum{route=\"/users/:id\"} 10.15\n"
                             "req_seconds_count{route=\"/users/:id\"} 4\n");
    luar_metrics_reset();
    luar_buf_free(&b);
}

TEST(test_histogram_default_buckets_without_labels)
{
    luar_metric_t *m = NULL;
    luar_buf_t b;
    luar_buf_init(&b, 0);
    CHECK_EQ_INT(luar_metrics_register(LUAR_METRIC_HISTOGRAM, "job_seconds", "Jobs.", NULL, 0, NULL,
                                       0, &m, NULL),
                 0);
    CHECK_EQ_INT(luar_metric_observe(m, NULL, 0.3), 0);
    CHECK_EQ_STR(render(&b), "# HELP job_seconds Jobs.\n"
                             "# TYPE job_seconds histogram\n"
                             "job_seconds_bucket{le=\"0.005\"} 0\n"
                             "job_seconds_bucket{le=\"0.01\"} 0\n"
                             "job_seconds_bucket{le=\"0.025\"} 0\n"
                             "job_seconds_bucket{le=\"0.05\"} 0\n"
                             "job_seconds_bucket{le=\"0.1\"} 0\n"
                             "job_seconds_bucket{le=\"0.25\"} 0\n"
                             "job_seconds_bucket{le=\"0.5\"} 1\n"
                             "job_seconds_bucket{le=\"1\"} 1\n"
                             "job_seconds_bucket{le=\"2.5\"} 1\n"
                             "job_seconds_bucket{le=\"5\"} 1\n"
                             "job_seconds_bucket{le=\"10\"} 1\n"
                             "job_seconds_bucket{le=\"+Inf\"} 1\n"
                             "job_seconds_sum 0.3\n"
                             "job_seconds_count 1\n");
    luar_metrics_reset();
    luar_buf_free(&b);
}

TEST(test_escaping_of_label_values_and_help)
{
    static const char *const labels[] = {"v"};
    luar_metric_t *m = NULL;
    luar_buf_t b;
    luar_buf_init(&b, 0);
    CHECK_EQ_INT(luar_metrics_register(LUAR_METRIC_COUNTER, "esc_total",
                                       "Back\\slash, \"quotes\"\nand newline.", labels, 1, NULL, 0,
                                       &m, NULL),
                 0);
    const char *v[] = {"a\\b\"c\nd\xff"};
    CHECK_EQ_INT(luar_metric_add(m, v, 1), 0);
    CHECK_EQ_STR(render(&b), "# HELP esc_total Back\\\\slash, \"quotes\"\\nand newline.\n"
                             "# TYPE esc_total counter\n"
                             "esc_total{v=\"a\\\\b\\\"c\\nd\xef\xbf\xbd\"} 1\n");
    luar_metrics_reset();
    luar_buf_free(&b);
}

TEST(test_families_render_in_registration_order)
{
    luar_metric_t *a = NULL, *z = NULL;
    luar_buf_t b;
    luar_buf_init(&b, 0);
    CHECK_EQ_INT(luar_metrics_register(LUAR_METRIC_GAUGE, "zeta", "Z.", NULL, 0, NULL, 0, &z, NULL),
                 0);
    CHECK_EQ_INT(
        luar_metrics_register(LUAR_METRIC_COUNTER, "alpha_total", "A.", NULL, 0, NULL, 0, &a, NULL),
        0);
    CHECK_EQ_STR(render(&b), "# HELP zeta Z.\n# TYPE zeta gauge\nzeta 0\n"
                             "# HELP alpha_total A.\n# TYPE alpha_total counter\nalpha_total 0\n");
    luar_metrics_reset();
    luar_buf_free(&b);
}

TEST(test_reregister_same_shape_returns_same_family)
{
    static const char *const labels[] = {"a", "b"};
    static const char *const other[] = {"a", "c"};
    static const double buckets[] = {1, 2};
    static const double buckets2[] = {1, 3};
    luar_metric_t *m1 = NULL, *m2 = NULL, *h1 = NULL, *h2 = NULL;
    luar_buf_t err;
    luar_buf_init(&err, 0);
    CHECK_EQ_INT(
        luar_metrics_register(LUAR_METRIC_COUNTER, "x_total", "X.", labels, 2, NULL, 0, &m1, NULL),
        0);
    CHECK_EQ_INT(luar_metrics_register(LUAR_METRIC_COUNTER, "x_total", "Other help.", labels, 2,
                                       NULL, 0, &m2, NULL),
                 0);
    CHECK(m1 == m2);
    CHECK_EQ_INT(
        luar_metrics_register(LUAR_METRIC_GAUGE, "x_total", "X.", labels, 2, NULL, 0, &m2, &err),
        LUAR_EEXISTS);
    CHECK(err.len > 0);
    CHECK_EQ_INT(
        luar_metrics_register(LUAR_METRIC_COUNTER, "x_total", "X.", other, 2, NULL, 0, &m2, NULL),
        LUAR_EEXISTS);
    CHECK_EQ_INT(
        luar_metrics_register(LUAR_METRIC_COUNTER, "x_total", "X.", labels, 1, NULL, 0, &m2, NULL),
        LUAR_EEXISTS);
    CHECK_EQ_INT(
        luar_metrics_register(LUAR_METRIC_HISTOGRAM, "h", "H.", NULL, 0, buckets, 2, &h1, NULL), 0);
    CHECK_EQ_INT(
        luar_metrics_register(LUAR_METRIC_HISTOGRAM, "h", "H.", NULL, 0, buckets, 2, &h2, NULL), 0);
    CHECK(h1 == h2);
    CHECK_EQ_INT(
        luar_metrics_register(LUAR_METRIC_HISTOGRAM, "h", "H.", NULL, 0, buckets2, 2, &h2, NULL),
        LUAR_EEXISTS);
    /* A counter named like a histogram's series would make the exposition ambiguous. */
    CHECK_EQ_INT(
        luar_metrics_register(LUAR_METRIC_COUNTER, "h_count", "C.", NULL, 0, NULL, 0, &m2, NULL),
        LUAR_EEXISTS);
    CHECK_EQ_INT(
        luar_metrics_register(LUAR_METRIC_HISTOGRAM, "x", "X.", NULL, 0, NULL, 0, &m2, NULL), 0);
    CHECK_EQ_INT(
        luar_metrics_register(LUAR_METRIC_COUNTER, "x_sum", "S.", NULL, 0, NULL, 0, &m2, NULL),
        LUAR_EEXISTS);
    luar_metrics_reset();
    luar_buf_free(&err);
}

TEST(test_bad_names_are_einval)
{
    static const char *const bad_label[] = {"9lives"};
    static const char *const le_label[] = {"le"};
    static const char *const reserved[] = {"__name"};
    static const char *const dup[] = {"a", "a"};
    static const char *const dashed[] = {"a-b"};
    static const char *const colon[] = {"a:b"};
    static const char *const many[] = {"a", "b", "c", "d", "e", "f", "g", "h", "i"};
    static const double decreasing[] = {1, 0.5};
    static const double equal[] = {1, 1};
    static const double with_inf[] = {1, INFINITY};
    static const double inf_first[] = {INFINITY, 1};
    luar_metric_t *m = NULL;
    luar_buf_t err;
    luar_buf_init(&err, 0);
    const luar_metric_type_t c = LUAR_METRIC_COUNTER, h = LUAR_METRIC_HISTOGRAM;
    CHECK_EQ_INT(luar_metrics_register(c, "", "", NULL, 0, NULL, 0, &m, NULL), LUAR_EINVAL);
    CHECK_EQ_INT(luar_metrics_register(c, NULL, "", NULL, 0, NULL, 0, &m, NULL), LUAR_EINVAL);
    CHECK_EQ_INT(luar_metrics_register(c, "1abc", "", NULL, 0, NULL, 0, &m, NULL), LUAR_EINVAL);
    CHECK_EQ_INT(luar_metrics_register(c, "a-b", "", NULL, 0, NULL, 0, &m, &err), LUAR_EINVAL);
    CHECK(err.len > 0);
    CHECK_EQ_INT(luar_metrics_register(c, "a b", "", NULL, 0, NULL, 0, &m, NULL), LUAR_EINVAL);
    CHECK_EQ_INT(luar_metrics_register(c, "ok", "", bad_label, 1, NULL, 0, &m, NULL), LUAR_EINVAL);
    CHECK_EQ_INT(luar_metrics_register(c, "ok", "", le_label, 1, NULL, 0, &m, NULL), LUAR_EINVAL);
    CHECK_EQ_INT(luar_metrics_register(c, "ok", "", reserved, 1, NULL, 0, &m, NULL), LUAR_EINVAL);
    CHECK_EQ_INT(luar_metrics_register(c, "ok", "", dup, 2, NULL, 0, &m, NULL), LUAR_EINVAL);
    CHECK_EQ_INT(luar_metrics_register(c, "ok", "", dashed, 1, NULL, 0, &m, NULL), LUAR_EINVAL);
    CHECK_EQ_INT(luar_metrics_register(c, "ok", "", colon, 1, NULL, 0, &m, NULL), LUAR_EINVAL);
    CHECK_EQ_INT(luar_metrics_register(c, "ok", "", many, 9, NULL, 0, &m, NULL), LUAR_EINVAL);
    CHECK_EQ_INT(luar_metrics_register(c, "ok", "", NULL, 0, equal, 1, &m, NULL), LUAR_EINVAL);
    CHECK_EQ_INT(luar_metrics_register(h, "ok", "", NULL, 0, decreasing, 2, &m, NULL), LUAR_EINVAL);
    CHECK_EQ_INT(luar_metrics_register(h, "ok", "", NULL, 0, equal, 2, &m, NULL), LUAR_EINVAL);
    CHECK_EQ_INT(luar_metrics_register(h, "ok", "", NULL, 0, inf_first, 2, &m, NULL), LUAR_EINVAL);
    CHECK(luar_metrics_find("ok") == NULL);
    /* Colons are allowed in metric names; a trailing +Inf bucket is implied anyway. */
    CHECK_EQ_INT(luar_metrics_register(c, "ns:ok_total", "", NULL, 0, NULL, 0, &m, NULL), 0);
    CHECK_EQ_INT(luar_metrics_register(h, "inf_ok", "", NULL, 0, with_inf, 2, &m, NULL), 0);
    luar_buf_t b;
    luar_buf_init(&b, 0);
    luar_metrics_render(&b);
    CHECK(strstr(b.data, "inf_ok_bucket{le=\"1\"} 0\ninf_ok_bucket{le=\"+Inf\"} 0\n") != NULL);
    luar_buf_free(&b);
    luar_metrics_reset();
    luar_buf_free(&err);
}

TEST(test_series_cap_drops_and_counts)
{
    static const char *const labels[] = {"id"};
    luar_metric_t *m = NULL;
    char id[32];
    const char *values[] = {id};
    luar_buf_t b;
    luar_buf_init(&b, 0);
    CHECK_EQ_INT(luar_metrics_register(LUAR_METRIC_COUNTER, "by_user_total", "U.", labels, 1, NULL,
                                       0, &m, NULL),
                 0);
    int failures = 0;
    for (int i = 0; i < LUAR_METRICS_MAX_SERIES; i++) {
        snprintf(id, sizeof id, "u%d", i);
        if (luar_metric_add(m, values, 1) != 0)
            failures++;
    }
    CHECK_EQ_INT(failures, 0);
    snprintf(id, sizeof id, "one-too-many");
    CHECK_EQ_INT(luar_metric_add(m, values, 1), LUAR_ETOOBIG);
    CHECK_EQ_INT(luar_metric_add(m, values, 1), LUAR_ETOOBIG);
    /* Existing series still update, and lookups find each of them. */
    snprintf(id, sizeof id, "u%d", 4321);
    CHECK_EQ_INT(luar_metric_add(m, values, 1), 0);
    render(&b);
    CHECK(strstr(b.data, "by_user_total{id=\"u4321\"} 2\n") != NULL);
    CHECK(strstr(b.data, "one-too-many") == NULL);
    CHECK(strstr(b.data,
                 "# TYPE luar_metrics_dropped_series_total counter\n"
                 "luar_metrics_dropped_series_total{metric=\"by_user_total\"} 2\n") != NULL);
    luar_metrics_reset();
    luar_buf_free(&b);
}

TEST(test_label_values_hash_distinguishes_boundaries)
{
    static const char *const labels[] = {"a", "b"};
    luar_metric_t *m = NULL;
    luar_buf_t b;
    luar_buf_init(&b, 0);
    CHECK_EQ_INT(luar_metrics_register(LUAR_METRIC_GAUGE, "g", "G.", labels, 2, NULL, 0, &m, NULL),
                 0);
    const char *v1[] = {"ab", "c"};
    const char *v2[] = {"a", "bc"};
    CHECK_EQ_INT(luar_metric_set(m, v1, 1), 0);
    CHECK_EQ_INT(luar_metric_set(m, v2, 2), 0);
    CHECK_EQ_STR(render(&b), "# HELP g G.\n# TYPE g gauge\n"
                             "g{a=\"ab\",b=\"c\"} 1\n"
                             "g{a=\"a\",b=\"bc\"} 2\n");
    luar_metrics_reset();
    luar_buf_free(&b);
}

int main(void)
{
    RUN(test_counter_with_labels_renders_exactly);
    RUN(test_gauge_without_labels_and_number_formats);
    RUN(test_histogram_renders_cumulative_buckets);
    RUN(test_histogram_default_buckets_without_labels);
    RUN(test_escaping_of_label_values_and_help);
    RUN(test_families_render_in_registration_order);
    RUN(test_reregister_same_shape_returns_same_family);
    RUN(test_bad_names_are_einval);
    RUN(test_series_cap_drops_and_counts);
    RUN(test_label_values_hash_distinguishes_boundaries);
    return DONE();
}
