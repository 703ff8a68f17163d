/*
 * The pure parts of the inbound webhook path (host/webhooks/ingest.h): the headers a
 * handler sees, the events of a route without a scheme, route configuration errors, and
 * the recent-deliveries ring with its counter. The path itself (verify → store → answer)
 * is checked against the real binary in tests/e2e/test_webhooks_ingest.py.
 */
#include "common/error.h"
#include "metrics/metrics.h"
#include "test.h"
#include "webhooks/ingest.h"

#include <stdlib.h>

#define H(n, v)                                                                                    \
    {                                                                                              \
        n, sizeof n - 1, v, sizeof v - 1                                                           \
    }

static const char *json_of_headers(const luar_http_header_t *h, size_t n,
                                   const luar_webhook_verifier_t *v, const char *const *strip,
                                   luar_buf_t *out)
{
    luar_buf_reset(out);
    CHECK_EQ_INT(luar_webhook_headers_json(h, n, v, strip, out), 0);
    return out->data;
}

TEST(test_headers_json_joins_repeats_and_strips_signatures_and_credentials)
{
    static const luar_http_header_t h[] = {
        H("content-type", "application/json"),
        H("x-tag", "a"),
        H("webhook-signature", "v1,c2lnbmF0dXJl"),
        H("authorization", "Bearer t0ken"),
        H("x-tag", "b"),
        H("webhook-id", "msg_1"),
        H("x-quote", "say \"hi\""),
        H("x-tag", "c"),
    };
    static const char *const strip[] = {"authorization", "cookie", NULL};
    luar_buf_t out;
    luar_buf_init(&out, 0);
    const char *secrets[] = {"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"};
    luar_webhook_verifier_t v;
    luar_buf_t err;
    luar_buf_init(&err, 0);
    CHECK_EQ_INT(luar_webhook_verifier_init(&v, "standard", secrets, NULL, 1, NULL, 0, 0, &err), 0);
    CHECK_EQ_STR(json_of_headers(h, 8, &v, strip, &out),
                 "{\"content-type\":\"application/json\",\"x-tag\":\"a, b, c\","
                 "\"webhook-id\":\"msg_1\",\"x-quote\":\"say \\\"hi\\\"\"}");
    /* Without a verifier only the listed names go. */
    CHECK_EQ_STR(json_of_headers(h + 2, 2, NULL, strip, &out),
                 "{\"webhook-signature\":\"v1,c2lnbmF0dXJl\"}");
    CHECK_EQ_STR(json_of_headers(h, 0, NULL, NULL, &out), "{}");
    luar_webhook_verifier_free(&v);
    luar_buf_free(&out);
    luar_buf_free(&err);
}

static void generic(const char *body, luar_webhook_event_t *ev, luar_buf_t *scratch,
                    luar_buf_t *why, int want_rc)
{
    luar_buf_reset(scratch);
    luar_buf_reset(why);
    CHECK_EQ_INT(luar_webhook_generic_event(body, strlen(body), ev, scratch, why), want_rc);
}

static int span_is(const char *p, size_t len, const char *want)
{
    return p != NULL && strlen(want) == len && memcmp(p, want, len) == 0;
}

TEST(test_generic_event_reads_id_and_type_from_the_body)
{
    luar_webhook_event_t ev;
    luar_buf_t scratch, why;
    luar_buf_init(&scratch, 0);
    luar_buf_init(&why, 0);
    generic("{\"id\":\"evt_\\u00e9\",\"type\":\"order.paid\"}", &ev, &scratch, &why, 0);
    CHECK(span_is(ev.id, ev.id_len, "evt_\xc3\xa9"));
    CHECK(span_is(ev.type, ev.type_len, "order.paid"));
    CHECK_EQ_INT(ev.json_len, strlen("{\"id\":\"evt_\\u00e9\",\"type\":\"order.paid\"}"));
    generic(" {\"id\": 12345, \"x\": 1} ", &ev, &scratch, &why, 0);
    CHECK(span_is(ev.id, ev.id_len, "12345"));
    CHECK(span_is(ev.type, ev.type_len, "webhook"));
    /* No id: the body's SHA-256, so the same body twice is one event. */
    generic("[1,2,3]", &ev, &scratch, &why, 0);
    CHECK(span_is(ev.id, ev.id_len,
                  "a615eeaee21de5179de080de8c3052c8da901138406ba71c38c032845f7d54f4"));
    CHECK(span_is(ev.type, ev.type_len, "webhook"));
    generic("{\"id\": null, \"type\": 7}", &ev, &scratch, &why, 0);
    CHECK_EQ_INT(ev.id_len, 64);
    CHECK(span_is(ev.type, ev.type_len, "webhook"));
    generic("{\"id\": \"x\",", &ev, &scratch, &why, LUAR_EPARSE);
    CHECK(why.data != NULL && strstr(why.data, "byte") != NULL);
    generic("", &ev, &scratch, &why, LUAR_EPARSE);
    luar_buf_free(&scratch);
    luar_buf_free(&why);
}

TEST(test_route_configuration_errors_never_show_a_secret)
{
    luar_webhook_route_t *r = NULL;
    luar_buf_t err;
    luar_buf_init(&err, 0);
    const char *secrets[] = {"whsec_bm90IGJhc2U2NCE*"};
    size_t lens[] = {strlen(secrets[0])};
    luar_webhook_route_config_t cfg = {.path = "/h",
                                       .scheme = "standard",
                                       .secrets = secrets,
                                       .secret_lens = lens,
                                       .nsecrets = 1,
                                       .verify = 1};
    CHECK_EQ_INT(luar_webhook_route_new(&cfg, &r, &err), LUAR_EINVAL);
    CHECK(r == NULL);
    CHECK(err.data != NULL && strstr(err.data, "secret 1") != NULL);
    CHECK(err.data != NULL && strstr(err.data, "bm90IGJhc2U2NCE") == NULL);
    luar_buf_reset(&err);
    cfg.scheme = "carrier-pigeon";
    CHECK_EQ_INT(luar_webhook_route_new(&cfg, &r, &err), LUAR_ENOTFOUND);
    CHECK(err.data != NULL && strstr(err.data, "standard") != NULL);
    luar_buf_reset(&err);
    /* A route without a scheme (verify = false) needs nothing else. */
    luar_webhook_route_config_t open = {.path = "/open", .dedupe = 60};
    CHECK_EQ_INT(luar_webhook_route_new(&open, &r, &err), 0);
    CHECK_EQ_STR(luar_webhook_route_path(r), "/open");
    CHECK_EQ_INT(luar_webhook_route_is_sync(r), 0);
    CHECK_EQ_INT(luar_webhook_route_add_handler(r, "#", "webhook:/open:#", "webhooks", 4, 0, 1), 0);
    luar_webhook_route_free(r);
    luar_buf_free(&err);
}

static double counter(const char *route, const char *outcome)
{
    luar_buf_t b;
    luar_buf_init(&b, 0);
    luar_metrics_render(&b);
    char want[256];
    snprintf(want, sizeof want, "luar_webhooks_total{route=\"%s\",outcome=\"%s\"} ", route,
             outcome);
    const char *p = b.data ? strstr(b.data, want) : NULL;
    double v = p ? atof(p + strlen(want)) : 0;
    luar_buf_free(&b);
    return v;
}

TEST(test_recent_ring_keeps_the_newest_and_counts_outcomes)
{
    luar_webhook_recent_clear();
    luar_metrics_reset();
    luar_webhook_delivery_t d[4];
    CHECK_EQ_INT(luar_webhook_recent(d, 4), 0);
    luar_webhook_record("/a", "evt_1", 5, "x.y", 3, "accepted", 200, "req1");
    luar_webhook_record("/a", NULL, 0, NULL, 0, "invalid_signature", 401, "req2");
    CHECK_EQ_INT(luar_webhook_recent(d, 4), 2);
    CHECK_EQ_STR(d[0].outcome, "invalid_signature");
    CHECK_EQ_STR(d[0].id, "");
    CHECK_EQ_INT(d[0].status, 401);
    CHECK_EQ_STR(d[1].id, "evt_1");
    CHECK_EQ_STR(d[1].type, "x.y");
    CHECK_EQ_STR(d[1].request_id, "req1");
    CHECK(d[1].at > 1.6e9);
    /* Bounded: after many more, the oldest are gone and the newest come first. */
    char id[32];
    for (int i = 0; i < LUAR_WEBHOOK_RECENT + 10; i++) {
        int n = snprintf(id, sizeof id, "evt_%d", i);
        luar_webhook_record("/b", id, (size_t)n, "t", 1, "duplicate", 200, "r");
    }
    luar_webhook_delivery_t *all = calloc(LUAR_WEBHOOK_RECENT + 5, sizeof *all);
    CHECK_EQ_INT(luar_webhook_recent(all, LUAR_WEBHOOK_RECENT + 5), LUAR_WEBHOOK_RECENT);
    snprintf(id, sizeof id, "evt_%d", LUAR_WEBHOOK_RECENT + 9);
    CHECK_EQ_STR(all[0].id, id);
    snprintf(id, sizeof id, "evt_%d", 10);
    CHECK_EQ_STR(all[LUAR_WEBHOOK_RECENT - 1].id, id);
    free(all);
    /* Long ids are cut, never overflow. */
    char longid[LUAR_WEBHOOK_MAX_ID * 2];
    memset(longid, 'i', sizeof longid);
    luar_webhook_record("/c", longid, sizeof longid, "t", 1, "malformed", 400, "r");
    CHECK_EQ_INT(luar_webhook_recent(d, 1), 1);
    CHECK_EQ_INT(strlen(d[0].id), LUAR_WEBHOOK_MAX_ID);
    /* The admin API's JSON. */
    luar_buf_t j;
    luar_buf_init(&j, 0);
    CHECK_EQ_INT(luar_webhook_recent_json(&j, 2), 0);
    CHECK(j.data != NULL && j.data[0] == '[' && strstr(j.data, "\"outcome\":\"malformed\"") &&
          strstr(j.data, "\"status\":400") && strstr(j.data, "\"route\":\"/b\""));
    luar_buf_free(&j);
    CHECK_EQ_INT(counter("/a", "accepted"), 1);
    CHECK_EQ_INT(counter("/a", "invalid_signature"), 1);
    CHECK_EQ_INT(counter("/b", "duplicate"), LUAR_WEBHOOK_RECENT + 10);
    luar_metrics_reset();
    luar_webhook_recent_clear();
}

int main(void)
{
    RUN(test_headers_json_joins_repeats_and_strips_signatures_and_credentials);
    RUN(test_generic_event_reads_id_and_type_from_the_body);
    RUN(test_route_configuration_errors_never_show_a_secret);
    RUN(test_recent_ring_keeps_the_newest_and_counts_outcomes);
    return DONE();
}
