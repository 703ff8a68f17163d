#include "client/cache.h"
#include "common/buf.h"
#include "common/error.h"
#include "metrics/metrics.h"
#include "test.h"

#include <stdlib.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* Value of luar_cache_requests_total{result="<result>"}, 0 when absent. */
static long counted(const char *result)
{
    luar_buf_t b;
    luar_buf_init(&b, 0);
    luar_metrics_render(&b);
    char prefix[128];
    snprintf(prefix, sizeof prefix, "luar_cache_requests_total{result=\"%s\"} ", result);
    long v = 0;
    const char *p = b.data != NULL ? strstr(b.data, prefix) : NULL;
    if (p != NULL)
        v = strtol(p + strlen(prefix), NULL, 10);
    luar_buf_free(&b);
    return v;
}

static const luar_cache_header_t etag_headers[] = {
    {"Content-Type", "application/json"},
    {"ETag", "\"v1\""},
    {"Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT"},
};

/* Stores a 200 for GET url with `body`, no Vary, ttl 60 at `now`. */
static int put(luar_cache_t *c, const char *url, const char *body, double now)
{
    return luar_cache_store(c, "GET", url, NULL, 0, 200, etag_headers, N(etag_headers), body,
                            strlen(body), 60, now);
}

TEST(test_cache_hit_then_ttl_expiry_gives_stale_with_validators)
{
    luar_cache_t *c = luar_cache_new(0);
    luar_cache_entry_t *e = (luar_cache_entry_t *)1;
    CHECK_EQ_INT(luar_cache_lookup(c, "GET", "https://a/x", NULL, 0, 0, &e), LUAR_CACHE_MISS);
    CHECK(e == NULL);
    CHECK_EQ_INT(put(c, "https://a/x", "{\"n\":1}", 100), 1);
    CHECK_EQ_INT(luar_cache_lookup(c, "get", "https://a/x", NULL, 0, 159.9, &e), LUAR_CACHE_FRESH);
    CHECK_EQ_INT(e->status, 200);
    CHECK_EQ_INT(e->body_len, 7);
    CHECK_EQ_STR(e->body, "{\"n\":1}");
    CHECK_EQ_INT(e->nheaders, 3);
    CHECK_EQ_STR(e->headers[0].name, "Content-Type");
    CHECK_EQ_STR(e->headers[0].value, "application/json");
    luar_cache_entry_release(e);
    CHECK_EQ_INT(luar_cache_lookup(c, "GET", "https://a/x", NULL, 0, 160, &e), LUAR_CACHE_STALE);
    CHECK_EQ_STR(e->etag, "\"v1\"");
    CHECK_EQ_STR(e->last_modified, "Sun, 06 Nov 1994 08:49:37 GMT");
    luar_cache_entry_release(e);
    /* other methods and URLs are other keys */
    CHECK_EQ_INT(luar_cache_lookup(c, "HEAD", "https://a/x", NULL, 0, 100, &e), LUAR_CACHE_MISS);
    CHECK_EQ_INT(luar_cache_lookup(c, "GET", "https://a/x?y", NULL, 0, 100, &e), LUAR_CACHE_MISS);
    CHECK_EQ_INT(luar_cache_lookup(c, "POST", "https://a/x", NULL, 0, 100, &e), LUAR_CACHE_MISS);
    CHECK_EQ_INT(counted("hit"), 1);
    CHECK_EQ_INT(counted("miss"), 3); /* the POST is not counted */
    luar_cache_free(c);
    luar_metrics_reset();
}

TEST(test_cache_304_revalidation_refreshes_entry)
{
    luar_cache_t *c = luar_cache_new(0);
    luar_cache_entry_t *e;
    CHECK_EQ_INT(put(c, "u", "body", 0), 1);
    CHECK_EQ_INT(luar_cache_lookup(c, "GET", "u", NULL, 0, 61, &e), LUAR_CACHE_STALE);
    luar_cache_revalidated(c, e, 70, 30);
    luar_cache_entry_release(e);
    CHECK_EQ_INT(luar_cache_lookup(c, "GET", "u", NULL, 0, 99.9, &e), LUAR_CACHE_FRESH);
    CHECK(e->stored_at == 70 && e->ttl == 30);
    CHECK_EQ_STR(e->body, "body");
    luar_cache_entry_release(e);
    CHECK_EQ_INT(luar_cache_lookup(c, "GET", "u", NULL, 0, 100, &e), LUAR_CACHE_STALE);
    /* a 200 instead of a 304: the new response replaces the stale one (counted miss) */
    CHECK_EQ_INT(luar_cache_store(c, "GET", "u", NULL, 0, 200, NULL, 0, "new", 3, 10, 101), 1);
    CHECK_EQ_STR(e->body, "body"); /* the caller's reference outlives the replacement */
    luar_cache_entry_release(e);
    CHECK_EQ_INT(luar_cache_lookup(c, "GET", "u", NULL, 0, 102, &e), LUAR_CACHE_FRESH);
    CHECK_EQ_STR(e->body, "new");
    CHECK(e->etag == NULL && e->last_modified == NULL);
    luar_cache_entry_release(e);
    CHECK_EQ_INT(luar_cache_count(c), 1);
    CHECK_EQ_INT(counted("revalidated"), 1);
    CHECK_EQ_INT(counted("hit"), 2);
    CHECK_EQ_INT(counted("miss"), 1);
    luar_cache_free(c);
    luar_metrics_reset();
}

TEST(test_cache_vary_keys_on_request_header_values)
{
    luar_cache_t *c = luar_cache_new(0);
    const luar_cache_header_t vary[] = {{"Vary", "Accept-Encoding, X-Tenant"}};
    const luar_cache_header_t gzip_a[] = {{"accept-encoding", "gzip"}, {"X-Tenant", "a"}};
    const luar_cache_header_t gzip_b[] = {{"Accept-Encoding", "gzip"}, {"x-tenant", "b"}};
    const luar_cache_header_t gzip_only[] = {{"Accept-Encoding", "gzip"}};
    const luar_cache_header_t gzip_a_extra[] = {
        {"X-Tenant", "a"}, {"Authorization", "Bearer t"}, {"Accept-Encoding", "gzip"}};
    const luar_cache_header_t gzip_empty[] = {{"Accept-Encoding", "gzip"}, {"X-Tenant", ""}};
    luar_cache_entry_t *e;
    CHECK_EQ_INT(
        luar_cache_store(c, "GET", "u", gzip_a, N(gzip_a), 200, vary, N(vary), "A", 1, 60, 0), 1);
    CHECK_EQ_INT(
        luar_cache_store(c, "GET", "u", gzip_b, N(gzip_b), 200, vary, N(vary), "B", 1, 60, 0), 1);
    CHECK_EQ_INT(luar_cache_count(c), 2);
    CHECK_EQ_INT(luar_cache_lookup(c, "GET", "u", gzip_a_extra, N(gzip_a_extra), 1, &e),
                 LUAR_CACHE_FRESH);
    CHECK_EQ_STR(e->body, "A");
    luar_cache_entry_release(e);
    CHECK_EQ_INT(luar_cache_lookup(c, "GET", "u", gzip_b, N(gzip_b), 1, &e), LUAR_CACHE_FRESH);
    CHECK_EQ_STR(e->body, "B");
    luar_cache_entry_release(e);
    /* an absent header and an empty one are different from each other and from "a" */
    CHECK_EQ_INT(luar_cache_lookup(c, "GET", "u", gzip_only, N(gzip_only), 1, &e), LUAR_CACHE_MISS);
    CHECK_EQ_INT(luar_cache_lookup(c, "GET", "u", gzip_empty, N(gzip_empty), 1, &e),
                 LUAR_CACHE_MISS);
    CHECK_EQ_INT(luar_cache_lookup(c, "GET", "u", NULL, 0, 1, &e), LUAR_CACHE_MISS);
    CHECK_EQ_INT(luar_cache_store(c, "GET", "u", gzip_only, N(gzip_only), 200, vary, N(vary),
                                  "none", 4, 60, 0),
                 1);
    CHECK_EQ_INT(luar_cache_lookup(c, "GET", "u", gzip_only, N(gzip_only), 1, &e),
                 LUAR_CACHE_FRESH);
    CHECK_EQ_STR(e->body, "none");
    luar_cache_entry_release(e);
    /* storing the same variant again replaces it */
    CHECK_EQ_INT(
        luar_cache_store(c, "GET", "u", gzip_a, N(gzip_a), 200, vary, N(vary), "A2", 2, 60, 0), 1);
    CHECK_EQ_INT(luar_cache_count(c), 3);
    /* Vary: * is never cached */
    const luar_cache_header_t star[] = {{"Vary", "*"}};
    CHECK_EQ_INT(luar_cache_store(c, "GET", "v", NULL, 0, 200, star, N(star), "x", 1, 60, 0), 0);
    /* invalidation drops every variant of the URL */
    CHECK_EQ_INT(luar_cache_invalidate(c, "u"), 3);
    CHECK_EQ_INT(luar_cache_count(c), 0);
    CHECK_EQ_INT(luar_cache_bytes(c), 0);
    luar_cache_free(c);
    luar_metrics_reset();
}

TEST(test_cache_lru_eviction_by_bytes)
{
    /* each entry with a 1000-byte body costs a little over 1000 bytes; 4 fit in 5000 */
    luar_cache_t *c = luar_cache_new(5000);
    char body[1001];
    memset(body, 'x', 1000);
    body[1000] = '\0';
    char url[16];
    luar_cache_entry_t *e;
    for (int i = 0; i < 5; i++) {
        snprintf(url, sizeof url, "u%d", i);
        CHECK_EQ_INT(luar_cache_store(c, "GET", url, NULL, 0, 200, NULL, 0, body, 1000, 60, 0), 1);
        if (i == 3) {
            /* touch u0 so u1 becomes the least recently used */
            CHECK_EQ_INT(luar_cache_lookup(c, "GET", "u0", NULL, 0, 1, &e), LUAR_CACHE_FRESH);
            luar_cache_entry_release(e);
        }
        CHECK(luar_cache_bytes(c) <= 5000);
    }
    CHECK_EQ_INT(luar_cache_count(c), 4);
    CHECK_EQ_INT(luar_cache_lookup(c, "GET", "u1", NULL, 0, 1, &e), LUAR_CACHE_MISS);
    static const char *const kept[] = {"u0", "u2", "u3", "u4"};
    size_t total = 0;
    for (size_t i = 0; i < N(kept); i++) {
        CHECK_EQ_INT(luar_cache_lookup(c, "GET", kept[i], NULL, 0, 1, &e), LUAR_CACHE_FRESH);
        if (e != NULL) {
            CHECK(e->size > 1000 && e->size < 1500);
            total += e->size;
        }
        luar_cache_entry_release(e);
    }
    CHECK_EQ_INT(luar_cache_bytes(c), total);
    /* larger than a quarter of the cap: not cached, nothing evicted */
    char big[1600];
    memset(big, 'y', sizeof big);
    CHECK_EQ_INT(luar_cache_store(c, "GET", "big", NULL, 0, 200, NULL, 0, big, sizeof big, 60, 0),
                 0);
    CHECK_EQ_INT(luar_cache_count(c), 4);
    luar_cache_free(c);
    luar_metrics_reset();
}

TEST(test_cache_evicted_entry_stays_valid_while_referenced)
{
    luar_cache_t *c = luar_cache_new(8000);
    char body[900];
    memset(body, 'z', sizeof body);
    luar_cache_entry_t *held;
    CHECK_EQ_INT(luar_cache_store(c, "GET", "a", NULL, 0, 200, NULL, 0, body, sizeof body, 0, 0),
                 1);
    CHECK_EQ_INT(luar_cache_lookup(c, "GET", "a", NULL, 0, 0, &held), LUAR_CACHE_STALE);
    for (int i = 0; i < 10; i++) {
        char url[8];
        snprintf(url, sizeof url, "b%d", i);
        luar_cache_store(c, "GET", url, NULL, 0, 200, NULL, 0, body, sizeof body, 60, 0);
    }
    CHECK_EQ_INT(luar_cache_lookup(c, "GET", "a", NULL, 0, 0, &(luar_cache_entry_t *){NULL}),
                 LUAR_CACHE_MISS);
    /* the 304 arrives after eviction: the held entry is still readable and refreshable */
    luar_cache_revalidated(c, held, 1, 60);
    CHECK_EQ_INT(held->body_len, sizeof body);
    CHECK(held->body[0] == 'z');
    luar_cache_entry_release(held);
    luar_cache_free(c);
    luar_metrics_reset();
}

TEST(test_cache_stale_if_error_within_max_staleness)
{
    luar_cache_t *c = luar_cache_new(0);
    luar_cache_entry_t *e;
    CHECK_EQ_INT(put(c, "u", "good", 0), 1); /* fresh until 60 */
    CHECK_EQ_INT(luar_cache_lookup(c, "GET", "u", NULL, 0, 100, &e), LUAR_CACHE_STALE);
    luar_cache_entry_release(e);
    /* upstream failed at 100: 40 s past the ttl, max staleness 300 */
    e = luar_cache_stale_if_error(c, "GET", "u", NULL, 0, 100, 300);
    CHECK(e != NULL);
    if (e != NULL)
        CHECK_EQ_STR(e->body, "good");
    luar_cache_entry_release(e);
    CHECK_EQ_INT(counted("stale"), 1);
    e = luar_cache_stale_if_error(c, "GET", "u", NULL, 0, 360, 300);
    CHECK(e != NULL);
    luar_cache_entry_release(e);
    luar_cache_entry_release(luar_cache_stale_if_error(c, "GET", "u", NULL, 0, 0, 0));
    /* too old */
    CHECK_EQ_INT(luar_cache_lookup(c, "GET", "u", NULL, 0, 361, &e), LUAR_CACHE_STALE);
    luar_cache_entry_release(e);
    CHECK(luar_cache_stale_if_error(c, "GET", "u", NULL, 0, 361, 300) == NULL);
    CHECK(luar_cache_stale_if_error(c, "GET", "absent", NULL, 0, 0, 300) == NULL);
    CHECK_EQ_INT(counted("stale"), 3);
    CHECK_EQ_INT(counted("miss"), 1); /* the too-old stale lookup resolved as a miss */
    luar_cache_free(c);
    luar_metrics_reset();
}

TEST(test_cache_error_answers_keep_the_last_good_response)
{
    luar_cache_t *c = luar_cache_new(0);
    luar_cache_entry_t *e;
    CHECK_EQ_INT(put(c, "u", "good", 0), 1);
    /* stale at 100; the upstream answers 503: stale-if-error first (counted stale) */
    CHECK_EQ_INT(luar_cache_lookup(c, "GET", "u", NULL, 0, 100, &e), LUAR_CACHE_STALE);
    luar_cache_entry_release(e);
    e = luar_cache_stale_if_error(c, "GET", "u", NULL, 0, 100, 300);
    CHECK(e != NULL);
    luar_cache_entry_release(e);
    /* offering the 503 to the cache neither stores it nor drops the good entry */
    CHECK_EQ_INT(luar_cache_store(c, "GET", "u", NULL, 0, 503, NULL, 0, "down", 4, 60, 100), 0);
    /* a 404 after a stale lookup: not stored, counted miss, the good entry stays */
    CHECK_EQ_INT(luar_cache_lookup(c, "GET", "u", NULL, 0, 101, &e), LUAR_CACHE_STALE);
    luar_cache_entry_release(e);
    CHECK_EQ_INT(luar_cache_store(c, "GET", "u", NULL, 0, 404, NULL, 0, "gone", 4, 60, 101), 0);
    e = luar_cache_stale_if_error(c, "GET", "u", NULL, 0, 102, 300);
    CHECK(e != NULL);
    if (e != NULL)
        CHECK_EQ_STR(e->body, "good");
    luar_cache_entry_release(e);
    CHECK_EQ_INT(counted("stale"), 2);
    CHECK_EQ_INT(counted("miss"), 1);
    CHECK_EQ_INT(counted("hit"), 0);
    luar_cache_free(c);
    luar_metrics_reset();
}

TEST(test_cache_what_is_not_stored)
{
    luar_cache_t *c = luar_cache_new(0);
    luar_cache_entry_t *e;
    static const luar_cache_header_t no_store[] = {{"Cache-Control", "private, No-Store"}};
    static const luar_cache_header_t max_age[] = {{"Cache-Control", "max-age=10, no-store-ish"}};
    static const luar_cache_header_t private_only[] = {{"cache-control", "private, no-cache"}};
    static const struct {
        const char *method;
        int status;
        const luar_cache_header_t *h;
        size_t nh;
        int want;
    } cases[] = {
        {"GET", 200, NULL, 0, 1},    {"HEAD", 200, NULL, 0, 1},        {"GET", 203, NULL, 0, 1},
        {"GET", 301, NULL, 0, 1},    {"GET", 308, NULL, 0, 1},         {"GET", 404, NULL, 0, 0},
        {"GET", 500, NULL, 0, 0},    {"GET", 206, NULL, 0, 0},         {"GET", 304, NULL, 0, 0},
        {"POST", 200, NULL, 0, 0},   {"PUT", 200, NULL, 0, 0},         {"GET", 200, no_store, 1, 0},
        {"GET", 200, max_age, 1, 1}, {"GET", 200, private_only, 1, 1}, /* a private cache: private
                                                                          and no-cache are fine */
    };
    for (size_t i = 0; i < N(cases); i++) {
        int got = luar_cache_store(c, cases[i].method, "u", NULL, 0, cases[i].status, cases[i].h,
                                   cases[i].nh, "b", 1, 60, 0);
        if (got != cases[i].want)
            fprintf(stderr, "case %zu\n", i);
        CHECK_EQ_INT(got, cases[i].want);
    }
    /* a no-store answer removes what was cached for the request */
    CHECK_EQ_INT(luar_cache_lookup(c, "GET", "u", NULL, 0, 1, &e), LUAR_CACHE_FRESH);
    luar_cache_entry_release(e);
    CHECK_EQ_INT(luar_cache_store(c, "GET", "u", NULL, 0, 200, no_store, 1, "b", 1, 60, 2), 0);
    CHECK_EQ_INT(luar_cache_lookup(c, "GET", "u", NULL, 0, 3, &e), LUAR_CACHE_MISS);
    /* so does a request with no-store */
    const luar_cache_header_t req_no_store[] = {{"Cache-Control", "no-store"}};
    CHECK_EQ_INT(luar_cache_store(c, "GET", "w", req_no_store, 1, 200, NULL, 0, "b", 1, 60, 0), 0);
    /* bounds: URL, header count and header bytes */
    char *url = malloc(LUAR_CACHE_MAX_URL + 2);
    memset(url, 'u', LUAR_CACHE_MAX_URL + 1);
    url[LUAR_CACHE_MAX_URL + 1] = '\0';
    CHECK_EQ_INT(luar_cache_store(c, "GET", url, NULL, 0, 200, NULL, 0, "b", 1, 60, 0), 0);
    url[LUAR_CACHE_MAX_URL] = '\0';
    CHECK_EQ_INT(luar_cache_store(c, "GET", url, NULL, 0, 200, NULL, 0, "b", 1, 60, 0), 1);
    free(url);
    luar_cache_header_t many[LUAR_CACHE_MAX_HEADERS + 1];
    for (size_t i = 0; i < N(many); i++)
        many[i] = (luar_cache_header_t){"X-H", "v"};
    CHECK_EQ_INT(luar_cache_store(c, "GET", "m", NULL, 0, 200, many, N(many), "b", 1, 60, 0), 0);
    CHECK_EQ_INT(luar_cache_store(c, "GET", "m", NULL, 0, 200, many, N(many) - 1, "b", 1, 60, 0),
                 1);
    char *huge = malloc(LUAR_CACHE_MAX_HEADER_BYTES + 1);
    memset(huge, 'h', LUAR_CACHE_MAX_HEADER_BYTES);
    huge[LUAR_CACHE_MAX_HEADER_BYTES] = '\0';
    const luar_cache_header_t fat[] = {{"X-Fat", huge}};
    CHECK_EQ_INT(luar_cache_store(c, "GET", "f", NULL, 0, 200, fat, 1, "b", 1, 60, 0), 0);
    free(huge);
    /* too many Vary names */
    const luar_cache_header_t wide[] = {{"Vary", "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q"}};
    CHECK_EQ_INT(luar_cache_store(c, "GET", "v", NULL, 0, 200, wide, 1, "b", 1, 60, 0), 0);
    /* misuse */
    CHECK_EQ_INT(luar_cache_store(c, "GET", "u", NULL, 0, 200, NULL, 0, "b", 1, -1, 0),
                 LUAR_EINVAL);
    CHECK_EQ_INT(luar_cache_store(c, "GET", NULL, NULL, 0, 200, NULL, 0, "b", 1, 1, 0),
                 LUAR_EINVAL);
    CHECK_EQ_INT(luar_cache_lookup(c, "GET", NULL, NULL, 0, 0, &e), LUAR_EINVAL);
    luar_cache_free(c);
    luar_metrics_reset();
}

TEST(test_cache_body_with_nul_bytes_round_trips)
{
    luar_cache_t *c = luar_cache_new(0);
    luar_cache_entry_t *e;
    const char body[] = {'a', '\0', 'b'};
    CHECK_EQ_INT(luar_cache_store(c, "GET", "bin", NULL, 0, 200, NULL, 0, body, 3, 60, 0), 1);
    CHECK_EQ_INT(luar_cache_store(c, "GET", "empty", NULL, 0, 200, NULL, 0, NULL, 0, 60, 0), 1);
    CHECK_EQ_INT(luar_cache_lookup(c, "GET", "bin", NULL, 0, 0, &e), LUAR_CACHE_FRESH);
    CHECK_EQ_INT(e->body_len, 3);
    CHECK(memcmp(e->body, body, 3) == 0);
    luar_cache_entry_release(e);
    CHECK_EQ_INT(luar_cache_lookup(c, "GET", "empty", NULL, 0, 0, &e), LUAR_CACHE_FRESH);
    CHECK_EQ_INT(e->body_len, 0);
    CHECK_EQ_STR(e->body, "");
    luar_cache_entry_release(e);
    luar_cache_free(c);
    luar_metrics_reset();
}

int main(void)
{
    RUN(test_cache_hit_then_ttl_expiry_gives_stale_with_validators);
    RUN(test_cache_304_revalidation_refreshes_entry);
    RUN(test_cache_vary_keys_on_request_header_values);
    RUN(test_cache_lru_eviction_by_bytes);
    RUN(test_cache_evicted_entry_stays_valid_while_referenced);
    RUN(test_cache_stale_if_error_within_max_staleness);
    RUN(test_cache_error_answers_keep_the_last_good_response);
    RUN(test_cache_what_is_not_stored);
    RUN(test_cache_body_with_nul_bytes_round_trips);
    return DONE();
}
