/*
 * The webhook scheme registry and the host's schemes, `standard` and `hmac`. Expected
 * signatures come from a published test vector (Svix / Standard Webhooks) or are computed
 * here with plain HMAC over the documented signed content, not with the scheme's sign();
 * sign() is then checked by round trips. tests/e2e/test_webhook_schemes.py checks both
 * against independent implementations (the standardwebhooks npm package, openssl).
 */
#include "common/error.h"
#include "crypto/crypto.h"
#include "test.h"
#include "webhooks/scheme.h"

#include <ctype.h>
#include <stdlib.h>

/* The cases build header values with snprintf from strings of known, short lengths. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

#define NOW 1700000000.0
#define BODY "{\"type\":\"invoice.paid\",\"id\":\"evt_42\",\"data\":{\"type\":\"inner\"}}"
#define STD_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define STD_OTHER "whsec_dGhpcyBpcyBhbm90aGVyIHNlY3JldCEh"

typedef struct msg {
    luar_http_header_t h[12];
    char names[12][64];
    char values[12][512];
    size_t n;
    luar_webhook_msg_t m;
} msg_t;

static void msg_init(msg_t *m, const char *body)
{
    memset(m, 0, sizeof *m);
    m->m.headers = m->h;
    m->m.body = body;
    m->m.body_len = strlen(body);
}

static void msg_header(msg_t *m, const char *name, const char *value)
{
    size_t i = m->n++;
    snprintf(m->names[i], sizeof m->names[i], "%s", name);
    for (char *c = m->names[i]; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    snprintf(m->values[i], sizeof m->values[i], "%s", value);
    m->h[i] = (luar_http_header_t){m->names[i], strlen(m->names[i]), m->values[i],
                                   strlen(m->values[i])};
    m->m.nheaders = m->n;
}

/* Adds the "Name: value\r\n" lines of a sign() output as headers. */
static void msg_headers_from_sign(msg_t *m, const char *lines)
{
    const char *p = lines;
    while (*p) {
        const char *colon = strstr(p, ": ");
        const char *eol = strstr(p, "\r\n");
        if (colon == NULL || eol == NULL || colon > eol)
            break;
        char name[64], value[512];
        snprintf(name, sizeof name, "%.*s", (int)(colon - p), p);
        snprintf(value, sizeof value, "%.*s", (int)(eol - colon - 2), colon + 2);
        msg_header(m, name, value);
        p = eol + 2;
    }
}

/* Configures `scheme` with secrets and options; verifies `m` at `now`. */
static luar_webhook_verdict_t check(const char *scheme, const char *const *secrets, size_t ns,
                                    const luar_webhook_opt_t *opts, size_t nopts,
                                    const msg_t *m, double now, luar_buf_t *why)
{
    luar_webhook_verifier_t v;
    luar_buf_t err;
    luar_buf_init(&err, 0);
    int rc = luar_webhook_verifier_init(&v, scheme, secrets, NULL, ns, opts, nopts, 0, &err);
    if (rc) {
        fprintf(stderr, "verifier_init: %s\n", err.data ? err.data : "?");
        luar_buf_free(&err);
        return (luar_webhook_verdict_t)-1;
    }
    luar_buf_reset(why);
    luar_webhook_verdict_t verdict = luar_webhook_verify(&v, &m->m, now, why);
    luar_webhook_verifier_free(&v);
    luar_buf_free(&err);
    return verdict;
}

/* base64 of HMAC-SHA256(key, content), the Standard Webhooks v1 signature. */
static void std_sig(const char *whsec, const char *content, char *out, size_t outsz)
{
    luar_buf_t key, b64;
    luar_buf_init(&key, 0);
    luar_buf_init(&b64, 0);
    luar_base64_decode(&key, whsec + 6, strlen(whsec) - 6);
    uint8_t mac[LUAR_CRYPTO_MAX_MD];
    size_t n = 0;
    luar_crypto_hmac("sha256", key.data, key.len, content, strlen(content), mac, &n);
    luar_base64_encode(&b64, mac, n);
    snprintf(out, outsz, "%s", b64.data);
    luar_buf_free(&key);
    luar_buf_free(&b64);
}

/* A standard request for BODY with id msg_1 at `ts`, signed with `whsec`. */
static void std_msg(msg_t *m, const char *body, const char *whsec, long long ts)
{
    char content[1024], sig[128], sighdr[160], tsbuf[32];
    snprintf(content, sizeof content, "msg_1.%lld.%s", ts, body);
    std_sig(whsec, content, sig, sizeof sig);
    snprintf(sighdr, sizeof sighdr, "v1,%s", sig);
    snprintf(tsbuf, sizeof tsbuf, "%lld", ts);
    msg_init(m, body);
    msg_header(m, "webhook-id", "msg_1");
    msg_header(m, "webhook-timestamp", tsbuf);
    msg_header(m, "webhook-signature", sighdr);
}

static const char *const std_secrets[] = {STD_SECRET};

/* ---- registry ------------------------------------------------------------------------ */

static luar_webhook_verdict_t dummy_verify(const void *cfg, const luar_webhook_msg_t *msg,
                                           double tolerance, double now, luar_buf_t *why)
{
    return LUAR_WEBHOOK_OK;
}

static int dummy_configure(const char *const *secrets, const size_t *lens, size_t n,
                           const luar_webhook_opt_t *opts, size_t nopts, void **cfg,
                           luar_buf_t *err)
{
    *cfg = NULL;
    return 0;
}

static int dummy_events(const void *cfg, const luar_webhook_msg_t *msg,
                        luar_webhook_event_t *out, size_t max, size_t *n, luar_buf_t *scratch,
                        luar_buf_t *why)
{
    return 0;
}

TEST(test_registry_has_host_schemes_and_takes_plugins)
{
    CHECK(luar_webhook_scheme_find("standard") == &luar_webhook_scheme_standard);
    CHECK(luar_webhook_scheme_find("hmac") == &luar_webhook_scheme_hmac);
    CHECK(luar_webhook_scheme_find("stripe") == NULL);
    CHECK(luar_webhook_scheme_find(NULL) == NULL);
    size_t before = luar_webhook_scheme_count();
    CHECK(before >= 2);
    static const luar_webhook_scheme_t plugin = {
        .name = "acme", .configure = dummy_configure, .verify = dummy_verify,
        .events = dummy_events};
    static const luar_webhook_scheme_t taken = {
        .name = "standard", .configure = dummy_configure, .verify = dummy_verify,
        .events = dummy_events};
    static const luar_webhook_scheme_t incomplete = {.name = "half", .verify = dummy_verify};
    CHECK_EQ_INT(luar_webhook_scheme_register(&plugin), 0);
    CHECK_EQ_INT(luar_webhook_scheme_register(&plugin), LUAR_EEXISTS);
    CHECK_EQ_INT(luar_webhook_scheme_register(&taken), LUAR_EEXISTS);
    CHECK_EQ_INT(luar_webhook_scheme_register(&incomplete), LUAR_EINVAL);
    CHECK(luar_webhook_scheme_find("acme") == &plugin);
    CHECK_EQ_INT(luar_webhook_scheme_count(), before + 1);
    CHECK(luar_webhook_scheme_at(before) == &plugin);
    CHECK(luar_webhook_scheme_at(before + 1) == NULL);
    luar_buf_t list;
    luar_buf_init(&list, 0);
    luar_webhook_scheme_list(&list);
    CHECK_EQ_STR(list.data, "standard, hmac, acme");
    luar_buf_free(&list);
}

TEST(test_verifier_init_errors_name_the_problem)
{
    luar_webhook_verifier_t v;
    luar_buf_t err;
    luar_buf_init(&err, 0);
    CHECK_EQ_INT(luar_webhook_verifier_init(&v, "nope", std_secrets, NULL, 1, NULL, 0, 0, &err),
                 LUAR_ENOTFOUND);
    CHECK(err.data && strstr(err.data, "unknown webhook scheme \"nope\"") &&
          strstr(err.data, "standard") && strstr(err.data, "hmac"));
    luar_buf_reset(&err);
    CHECK_EQ_INT(luar_webhook_verifier_init(&v, "standard", NULL, NULL, 0, NULL, 0, 0, &err),
                 LUAR_EINVAL);
    CHECK(err.data && strstr(err.data, "no secret"));
    luar_buf_reset(&err);
    const char *many[LUAR_WEBHOOK_MAX_SECRETS + 1];
    for (size_t i = 0; i <= LUAR_WEBHOOK_MAX_SECRETS; i++)
        many[i] = STD_SECRET;
    CHECK_EQ_INT(luar_webhook_verifier_init(&v, "standard", many, NULL,
                                            LUAR_WEBHOOK_MAX_SECRETS + 1, NULL, 0, 0, &err),
                 LUAR_EINVAL);
    luar_buf_reset(&err);
    CHECK_EQ_INT(luar_webhook_verifier_init(&v, "standard", std_secrets, NULL, 1, NULL, 0, -1,
                                            &err),
                 LUAR_EINVAL);
    luar_buf_free(&err);
    CHECK_EQ_STR(luar_webhook_verdict_outcome(LUAR_WEBHOOK_OK), "accepted");
    CHECK_EQ_STR(luar_webhook_verdict_outcome(LUAR_WEBHOOK_MISSING), "invalid_signature");
    CHECK_EQ_STR(luar_webhook_verdict_outcome(LUAR_WEBHOOK_INVALID), "invalid_signature");
    CHECK_EQ_STR(luar_webhook_verdict_outcome(LUAR_WEBHOOK_EXPIRED), "expired");
}

/* ---- standard ------------------------------------------------------------------------ */

TEST(test_standard_published_test_vector)
{
    /* The vector of the Svix / Standard Webhooks libraries' own test suites. */
    msg_t m;
    msg_init(&m, "{\"test\": 2432232314}");
    msg_header(&m, "webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek");
    msg_header(&m, "webhook-timestamp", "1614265330");
    msg_header(&m, "webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    luar_buf_t why;
    luar_buf_init(&why, 0);
    CHECK_EQ_INT(check("standard", std_secrets, 1, NULL, 0, &m, 1614265330, &why),
                 LUAR_WEBHOOK_OK);
    /* the same secret without its prefix is the same key */
    const char *bare[] = {STD_SECRET + 6};
    CHECK_EQ_INT(check("standard", bare, 1, NULL, 0, &m, 1614265330, &why), LUAR_WEBHOOK_OK);
    luar_buf_free(&why);
}

TEST(test_standard_valid_and_events)
{
    msg_t m;
    std_msg(&m, BODY, STD_SECRET, (long long)NOW);
    luar_buf_t why, scratch;
    luar_buf_init(&why, 0);
    luar_buf_init(&scratch, 0);
    luar_webhook_verifier_t v;
    CHECK_EQ_INT(luar_webhook_verifier_init(&v, "standard", std_secrets, NULL, 1, NULL, 0, 0,
                                            &why),
                 0);
    CHECK_EQ_INT(luar_webhook_verify(&v, &m.m, NOW, &why), LUAR_WEBHOOK_OK);
    luar_webhook_event_t ev[2];
    size_t n = 0;
    CHECK_EQ_INT(luar_webhook_events(&v, &m.m, ev, 2, &n, &scratch, &why), 0);
    CHECK_EQ_INT(n, 1);
    CHECK(ev[0].id_len == 5 && memcmp(ev[0].id, "msg_1", 5) == 0);
    CHECK(ev[0].type_len == 12 && memcmp(ev[0].type, "invoice.paid", 12) == 0);
    CHECK(ev[0].json == m.m.body && ev[0].json_len == m.m.body_len);
    CHECK_EQ_INT(ev[0].reply, 0);
    CHECK(luar_webhook_is_signature_header(&v, "webhook-signature", 17));
    CHECK(luar_webhook_is_signature_header(&v, "Svix-Signature", 14));
    CHECK(!luar_webhook_is_signature_header(&v, "webhook-id", 10));
    luar_webhook_verifier_free(&v);
    luar_webhook_verifier_free(&v);
    luar_buf_free(&why);
    luar_buf_free(&scratch);
}

TEST(test_standard_events_need_a_json_object_with_a_string_type)
{
    static const struct {
        const char *body;
        const char *reason;
    } cases[] = {
        {"not json", "body is not JSON: at byte 0"},
        {"[{\"type\":\"a\"}]", "not a JSON object"},
        {"{\"data\":{\"type\":\"a\"}}", "no \"type\""},
        {"{\"type\":42}", "\"type\" is not a non-empty string"},
        {"{\"type\":\"\"}", "\"type\" is not a non-empty string"},
        {"{\"type\":\"a\"} trailing", "not JSON"},
    };
    luar_webhook_verifier_t v;
    luar_buf_t why, scratch;
    luar_buf_init(&why, 0);
    luar_buf_init(&scratch, 0);
    CHECK_EQ_INT(luar_webhook_verifier_init(&v, "standard", std_secrets, NULL, 1, NULL, 0, 0,
                                            &why),
                 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        msg_t m;
        std_msg(&m, cases[i].body, STD_SECRET, (long long)NOW);
        luar_buf_reset(&why);
        CHECK_EQ_INT(luar_webhook_verify(&v, &m.m, NOW, &why), LUAR_WEBHOOK_OK);
        luar_webhook_event_t ev[1];
        size_t n = 9;
        luar_buf_reset(&why);
        CHECK_EQ_INT(luar_webhook_events(&v, &m.m, ev, 1, &n, &scratch, &why), LUAR_EPARSE);
        CHECK_EQ_INT(n, 0);
        CHECK(why.data && strstr(why.data, cases[i].reason));
        if (!(why.data && strstr(why.data, cases[i].reason)))
            fprintf(stderr, "  case %zu: %s\n", i, why.data ? why.data : "(none)");
    }
    luar_webhook_verifier_free(&v);
    luar_buf_free(&why);
    luar_buf_free(&scratch);
}

/* The reason of a failure names neither the secret nor any signature. */
static void check_reason_is_clean(const luar_buf_t *why, const msg_t *m)
{
    CHECK(why->data && why->len > 0);
    if (why->data == NULL)
        return;
    CHECK(strstr(why->data, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw") == NULL);
    CHECK(strstr(why->data, "topsecret") == NULL);
    for (size_t i = 0; i < m->n; i++) {
        if (strstr(m->names[i], "signature") && strlen(m->values[i]) > 8)
            CHECK(strstr(why->data, m->values[i] + 3) == NULL);
    }
}

TEST(test_standard_tampered_body_and_wrong_secret_are_invalid)
{
    msg_t m;
    luar_buf_t why;
    luar_buf_init(&why, 0);
    std_msg(&m, BODY, STD_SECRET, (long long)NOW);
    m.m.body = "{\"type\":\"invoice.paid\",\"id\":\"evt_43\"}";
    m.m.body_len = strlen(m.m.body);
    CHECK_EQ_INT(check("standard", std_secrets, 1, NULL, 0, &m, NOW, &why),
                 LUAR_WEBHOOK_INVALID);
    CHECK(strstr(why.data, "no signature in webhook-signature matches") != NULL);
    check_reason_is_clean(&why, &m);
    std_msg(&m, BODY, STD_OTHER, (long long)NOW);
    CHECK_EQ_INT(check("standard", std_secrets, 1, NULL, 0, &m, NOW, &why),
                 LUAR_WEBHOOK_INVALID);
    check_reason_is_clean(&why, &m);
    /* the id and the timestamp are signed too */
    std_msg(&m, BODY, STD_SECRET, (long long)NOW);
    snprintf(m.values[0], sizeof m.values[0], "msg_2");
    CHECK_EQ_INT(check("standard", std_secrets, 1, NULL, 0, &m, NOW, &why),
                 LUAR_WEBHOOK_INVALID);
    std_msg(&m, BODY, STD_SECRET, (long long)NOW);
    snprintf(m.values[1], sizeof m.values[1], "%lld", (long long)NOW + 1);
    CHECK_EQ_INT(check("standard", std_secrets, 1, NULL, 0, &m, NOW, &why),
                 LUAR_WEBHOOK_INVALID);
    luar_buf_free(&why);
}

TEST(test_standard_rotated_second_secret_matches)
{
    msg_t m;
    luar_buf_t why;
    luar_buf_init(&why, 0);
    std_msg(&m, BODY, STD_SECRET, (long long)NOW);
    const char *rotation[] = {STD_OTHER, STD_SECRET};
    CHECK_EQ_INT(check("standard", rotation, 2, NULL, 0, &m, NOW, &why), LUAR_WEBHOOK_OK);
    const char *neither[] = {STD_OTHER, "whsec_bm9wZQ=="};
    CHECK_EQ_INT(check("standard", neither, 2, NULL, 0, &m, NOW, &why), LUAR_WEBHOOK_INVALID);
    CHECK(strstr(why.data, "2 secrets") != NULL);
    luar_buf_free(&why);
}

TEST(test_standard_missing_headers)
{
    static const char *names[] = {"webhook-id", "webhook-timestamp", "webhook-signature"};
    luar_buf_t why;
    luar_buf_init(&why, 0);
    for (size_t drop = 0; drop < 3; drop++) {
        msg_t m;
        std_msg(&m, BODY, STD_SECRET, (long long)NOW);
        snprintf(m.names[drop], sizeof m.names[drop], "x-other");
        m.h[drop].name_len = 7;
        CHECK_EQ_INT(check("standard", std_secrets, 1, NULL, 0, &m, NOW, &why),
                     LUAR_WEBHOOK_MISSING);
        CHECK(strstr(why.data, names[drop]) != NULL);
    }
    /* an empty header counts as missing */
    msg_t m;
    std_msg(&m, BODY, STD_SECRET, (long long)NOW);
    m.h[2].value_len = 0;
    CHECK_EQ_INT(check("standard", std_secrets, 1, NULL, 0, &m, NOW, &why),
                 LUAR_WEBHOOK_MISSING);
    luar_buf_free(&why);
}

TEST(test_standard_malformed_headers_are_invalid)
{
    static const char *bad_sigs[] = {"garbage", "v1", "v1,", "v1,%%%%", "v2,abc v1a,xyz",
                                     "   "};
    luar_buf_t why;
    luar_buf_init(&why, 0);
    for (size_t i = 0; i < sizeof bad_sigs / sizeof bad_sigs[0]; i++) {
        msg_t m;
        std_msg(&m, BODY, STD_SECRET, (long long)NOW);
        snprintf(m.values[2], sizeof m.values[2], "%s", bad_sigs[i]);
        m.h[2].value_len = strlen(bad_sigs[i]);
        CHECK_EQ_INT(check("standard", std_secrets, 1, NULL, 0, &m, NOW, &why),
                     LUAR_WEBHOOK_INVALID);
    }
    static const char *bad_ts[] = {"soon", "17000000x0", "-1700000000", "1.7e9",
                                   "1700000000000000000000"};
    for (size_t i = 0; i < sizeof bad_ts / sizeof bad_ts[0]; i++) {
        msg_t m;
        std_msg(&m, BODY, STD_SECRET, (long long)NOW);
        snprintf(m.values[1], sizeof m.values[1], "%s", bad_ts[i]);
        m.h[1].value_len = strlen(bad_ts[i]);
        CHECK_EQ_INT(check("standard", std_secrets, 1, NULL, 0, &m, NOW, &why),
                     LUAR_WEBHOOK_INVALID);
        CHECK(strstr(why.data, "webhook-timestamp is not a unix timestamp") != NULL);
    }
    luar_buf_free(&why);
}

TEST(test_standard_expired_and_future_timestamps)
{
    msg_t m;
    luar_buf_t why;
    luar_buf_init(&why, 0);
    std_msg(&m, BODY, STD_SECRET, (long long)NOW - 301);
    CHECK_EQ_INT(check("standard", std_secrets, 1, NULL, 0, &m, NOW, &why),
                 LUAR_WEBHOOK_EXPIRED);
    CHECK(strstr(why.data, "301 s in the past (tolerance 300 s)") != NULL);
    std_msg(&m, BODY, STD_SECRET, (long long)NOW + 301);
    CHECK_EQ_INT(check("standard", std_secrets, 1, NULL, 0, &m, NOW, &why),
                 LUAR_WEBHOOK_EXPIRED);
    CHECK(strstr(why.data, "301 s in the future") != NULL);
    std_msg(&m, BODY, STD_SECRET, (long long)NOW - 299);
    CHECK_EQ_INT(check("standard", std_secrets, 1, NULL, 0, &m, NOW, &why), LUAR_WEBHOOK_OK);
    std_msg(&m, BODY, STD_SECRET, (long long)NOW + 299);
    CHECK_EQ_INT(check("standard", std_secrets, 1, NULL, 0, &m, NOW, &why), LUAR_WEBHOOK_OK);
    /* a forged request is "invalid" whatever its timestamp */
    std_msg(&m, BODY, STD_OTHER, (long long)NOW - 3600);
    CHECK_EQ_INT(check("standard", std_secrets, 1, NULL, 0, &m, NOW, &why),
                 LUAR_WEBHOOK_INVALID);
    /* a verifier's own tolerance */
    luar_webhook_verifier_t v;
    CHECK_EQ_INT(luar_webhook_verifier_init(&v, "standard", std_secrets, NULL, 1, NULL, 0, 10,
                                            &why),
                 0);
    std_msg(&m, BODY, STD_SECRET, (long long)NOW - 11);
    CHECK_EQ_INT(luar_webhook_verify(&v, &m.m, NOW, &why), LUAR_WEBHOOK_EXPIRED);
    std_msg(&m, BODY, STD_SECRET, (long long)NOW - 9);
    CHECK_EQ_INT(luar_webhook_verify(&v, &m.m, NOW, &why), LUAR_WEBHOOK_OK);
    luar_webhook_verifier_free(&v);
    luar_buf_free(&why);
}

TEST(test_standard_several_signatures_one_matches)
{
    msg_t m;
    luar_buf_t why;
    luar_buf_init(&why, 0);
    std_msg(&m, BODY, STD_SECRET, (long long)NOW);
    char good[512];
    snprintf(good, sizeof good, "%s", m.values[2]);
    snprintf(m.values[2], sizeof m.values[2],
             "v1a,c2lnbmF0dXJl v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= %s v9,x", good);
    m.h[2].value_len = strlen(m.values[2]);
    CHECK_EQ_INT(check("standard", std_secrets, 1, NULL, 0, &m, NOW, &why), LUAR_WEBHOOK_OK);
    /* the same without the good one */
    snprintf(m.values[2], sizeof m.values[2],
             "v1a,c2lnbmF0dXJl v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= v9,x");
    m.h[2].value_len = strlen(m.values[2]);
    CHECK_EQ_INT(check("standard", std_secrets, 1, NULL, 0, &m, NOW, &why),
                 LUAR_WEBHOOK_INVALID);
    CHECK(strstr(why.data, "1 v1 signature") != NULL);
    luar_buf_free(&why);
}

TEST(test_standard_svix_header_names)
{
    msg_t m;
    luar_buf_t why;
    luar_buf_init(&why, 0);
    std_msg(&m, BODY, STD_SECRET, (long long)NOW);
    snprintf(m.names[0], sizeof m.names[0], "svix-id");
    snprintf(m.names[1], sizeof m.names[1], "svix-timestamp");
    snprintf(m.names[2], sizeof m.names[2], "svix-signature");
    for (size_t i = 0; i < 3; i++)
        m.h[i].name_len = strlen(m.names[i]);
    CHECK_EQ_INT(check("standard", std_secrets, 1, NULL, 0, &m, NOW, &why), LUAR_WEBHOOK_OK);
    luar_buf_free(&why);
}

TEST(test_standard_secret_formats)
{
    luar_webhook_verifier_t v;
    luar_buf_t err;
    luar_buf_init(&err, 0);
    const char *bad[] = {"whsec_not base64!"};
    CHECK_EQ_INT(luar_webhook_verifier_init(&v, "standard", bad, NULL, 1, NULL, 0, 0, &err),
                 LUAR_EINVAL);
    CHECK(strstr(err.data, "secret 1 is not \"whsec_\" followed by base64") != NULL);
    CHECK(strstr(err.data, "not base64!") == NULL);
    luar_buf_reset(&err);
    const char *empty[] = {"whsec_"};
    CHECK_EQ_INT(luar_webhook_verifier_init(&v, "standard", empty, NULL, 1, NULL, 0, 0, &err),
                 LUAR_EINVAL);
    CHECK(strstr(err.data, "secret 1 is empty") != NULL);
    luar_buf_reset(&err);
    const luar_webhook_opt_t unknown[] = {{"header", "X-Sig"}};
    CHECK_EQ_INT(luar_webhook_verifier_init(&v, "standard", std_secrets, NULL, 1, unknown, 1, 0,
                                            &err),
                 LUAR_EINVAL);
    CHECK(strstr(err.data, "unknown option \"header\"") != NULL);
    luar_buf_reset(&err);
    /* secret_format = "raw": the bytes as given (the libraries' format: "raw") */
    const luar_webhook_opt_t raw[] = {{"secret_format", "raw"}};
    const char *raw_secret[] = {"topsecret not base64"};
    CHECK_EQ_INT(luar_webhook_verifier_init(&v, "standard", raw_secret, NULL, 1, raw, 1, 0,
                                            &err),
                 0);
    luar_buf_t out;
    luar_buf_init(&out, 0);
    CHECK_EQ_INT(luar_webhook_sign(&v, "msg_1", NOW, BODY, strlen(BODY), &out, &err), 0);
    luar_webhook_verifier_free(&v);
    /* the same key written as whsec_ base64 verifies what was signed */
    luar_buf_t b64;
    luar_buf_init(&b64, 0);
    luar_buf_puts(&b64, "whsec_");
    luar_base64_encode(&b64, raw_secret[0], strlen(raw_secret[0]));
    const char *as_whsec[] = {b64.data};
    msg_t m;
    msg_init(&m, BODY);
    msg_headers_from_sign(&m, out.data);
    luar_buf_t why;
    luar_buf_init(&why, 0);
    CHECK_EQ_INT(check("standard", as_whsec, 1, NULL, 0, &m, NOW, &why), LUAR_WEBHOOK_OK);
    luar_buf_free(&why);
    luar_buf_free(&b64);
    luar_buf_free(&out);
    luar_buf_free(&err);
}

TEST(test_standard_sign_round_trip)
{
    luar_webhook_verifier_t v;
    luar_buf_t out, err, why;
    luar_buf_init(&out, 0);
    luar_buf_init(&err, 0);
    luar_buf_init(&why, 0);
    CHECK_EQ_INT(luar_webhook_verifier_init(&v, "standard", std_secrets, NULL, 1, NULL, 0, 0,
                                            &err),
                 0);
    /* the published vector again, now from sign() */
    const char *vec = "{\"test\": 2432232314}";
    CHECK_EQ_INT(luar_webhook_sign(&v, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330.9, vec,
                                   strlen(vec), &out, &err),
                 0);
    CHECK_EQ_STR(out.data, "webhook-id: msg_p5jXN8AQM9LWM0D4loKWxJek\r\n"
                           "webhook-timestamp: 1614265330\r\n"
                           "webhook-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
                           "\r\n");
    /* no id: one is made, msg_ and 27 base62 characters, different each time */
    luar_buf_reset(&out);
    CHECK_EQ_INT(luar_webhook_sign(&v, NULL, NOW, BODY, strlen(BODY), &out, &err), 0);
    msg_t m;
    msg_init(&m, BODY);
    msg_headers_from_sign(&m, out.data);
    CHECK_EQ_INT(m.n, 3);
    CHECK_EQ_INT(strlen(m.values[0]), 31);
    CHECK(strncmp(m.values[0], "msg_", 4) == 0);
    CHECK_EQ_INT(luar_webhook_verify(&v, &m.m, NOW, &why), LUAR_WEBHOOK_OK);
    char first_id[64];
    snprintf(first_id, sizeof first_id, "%s", m.values[0]);
    luar_buf_reset(&out);
    CHECK_EQ_INT(luar_webhook_sign(&v, NULL, NOW, BODY, strlen(BODY), &out, &err), 0);
    CHECK(strstr(out.data, first_id) == NULL);
    /* ids that would break a header line are refused */
    CHECK_EQ_INT(luar_webhook_sign(&v, "a\r\nX-Evil: 1", NOW, BODY, strlen(BODY), &out, &err),
                 LUAR_EINVAL);
    CHECK_EQ_INT(luar_webhook_sign(&v, "", NOW, BODY, strlen(BODY), &out, &err), LUAR_EINVAL);
    luar_webhook_verifier_free(&v);
    luar_buf_free(&out);
    luar_buf_free(&err);
    luar_buf_free(&why);
}

/* ---- hmac ---------------------------------------------------------------------------- */

static const luar_webhook_opt_t github_opts[] = {
    {"header", "X-Hub-Signature-256"}, {"algorithm", "sha256"}, {"prefix", "sha256="}};
static const char *const hmac_secrets[] = {"topsecret"};

/* HMAC(alg, key, content) in `encoding` ("hex", "HEX" for upper case, "base64"). */
static void hmac_sig(const char *alg, const char *key, const char *content,
                     const char *encoding, char *out, size_t outsz)
{
    uint8_t mac[LUAR_CRYPTO_MAX_MD];
    size_t n = 0;
    luar_crypto_hmac(alg, key, strlen(key), content, strlen(content), mac, &n);
    luar_buf_t b;
    luar_buf_init(&b, 0);
    if (strcmp(encoding, "base64") == 0)
        luar_base64_encode(&b, mac, n);
    else
        luar_hex_encode(&b, mac, n);
    if (strcmp(encoding, "HEX") == 0) {
        for (char *c = b.data; *c; c++)
            *c = (char)toupper((unsigned char)*c);
    }
    snprintf(out, outsz, "%s", b.data);
    luar_buf_free(&b);
}

static void github_msg(msg_t *m, const char *body, const char *key)
{
    char sig[160], hdr[200];
    hmac_sig("sha256", key, body, "hex", sig, sizeof sig);
    snprintf(hdr, sizeof hdr, "sha256=%s", sig);
    msg_init(m, body);
    msg_header(m, "X-GitHub-Delivery", "d-1");
    msg_header(m, "X-Hub-Signature-256", hdr);
}

TEST(test_hmac_valid_tampered_wrong_secret_rotated)
{
    msg_t m;
    luar_buf_t why;
    luar_buf_init(&why, 0);
    github_msg(&m, BODY, "topsecret");
    CHECK_EQ_INT(check("hmac", hmac_secrets, 1, github_opts, 3, &m, NOW, &why),
                 LUAR_WEBHOOK_OK);
    /* hex digits in either case */
    for (char *c = m.values[1] + 7; *c; c++)
        *c = (char)toupper((unsigned char)*c);
    CHECK_EQ_INT(check("hmac", hmac_secrets, 1, github_opts, 3, &m, NOW, &why),
                 LUAR_WEBHOOK_OK);
    /* timestamps play no part without timestamp_header */
    CHECK_EQ_INT(check("hmac", hmac_secrets, 1, github_opts, 3, &m, 0, &why), LUAR_WEBHOOK_OK);
    github_msg(&m, BODY, "topsecret");
    m.m.body = "{\"type\":\"invoice.paid\",\"id\":\"evt_43\"}";
    m.m.body_len = strlen(m.m.body);
    CHECK_EQ_INT(check("hmac", hmac_secrets, 1, github_opts, 3, &m, NOW, &why),
                 LUAR_WEBHOOK_INVALID);
    CHECK(strstr(why.data, "no signature in X-Hub-Signature-256 matches") != NULL);
    check_reason_is_clean(&why, &m);
    github_msg(&m, BODY, "wrong");
    CHECK_EQ_INT(check("hmac", hmac_secrets, 1, github_opts, 3, &m, NOW, &why),
                 LUAR_WEBHOOK_INVALID);
    check_reason_is_clean(&why, &m);
    const char *rotation[] = {"old-secret", "wrong"};
    CHECK_EQ_INT(check("hmac", rotation, 2, github_opts, 3, &m, NOW, &why), LUAR_WEBHOOK_OK);
    luar_buf_free(&why);
}

TEST(test_hmac_missing_and_malformed_headers)
{
    msg_t m;
    luar_buf_t why;
    luar_buf_init(&why, 0);
    github_msg(&m, BODY, "topsecret");
    snprintf(m.names[1], sizeof m.names[1], "x-hub-signature");
    m.h[1].name_len = strlen(m.names[1]);
    CHECK_EQ_INT(check("hmac", hmac_secrets, 1, github_opts, 3, &m, NOW, &why),
                 LUAR_WEBHOOK_MISSING);
    CHECK_EQ_STR(why.data, "no X-Hub-Signature-256 header");
    char good[512];
    github_msg(&m, BODY, "topsecret");
    snprintf(good, sizeof good, "%s", m.values[1] + 7);
    const char *bad[5];
    char nopfx[200], shortsig[200], nonhex[200];
    snprintf(nopfx, sizeof nopfx, "%s", good);                 /* prefix missing */
    snprintf(shortsig, sizeof shortsig, "sha256=%.62s", good); /* one byte short */
    snprintf(nonhex, sizeof nonhex, "sha256=%.62szz", good);
    bad[0] = nopfx;
    bad[1] = shortsig;
    bad[2] = nonhex;
    bad[3] = "sha1=abc";
    bad[4] = ",, ,";
    for (size_t i = 0; i < 5; i++) {
        snprintf(m.values[1], sizeof m.values[1], "%s", bad[i]);
        m.h[1].value_len = strlen(bad[i]);
        CHECK_EQ_INT(check("hmac", hmac_secrets, 1, github_opts, 3, &m, NOW, &why),
                     LUAR_WEBHOOK_INVALID);
        CHECK_EQ_STR(why.data, "X-Hub-Signature-256 is malformed (expected sha256=<hex sha256 "
                               "HMAC>)");
    }
    luar_buf_free(&why);
}

TEST(test_hmac_several_signatures_and_repeated_headers)
{
    msg_t m;
    luar_buf_t why;
    luar_buf_init(&why, 0);
    github_msg(&m, BODY, "topsecret");
    char good[512];
    snprintf(good, sizeof good, "%s", m.values[1]);
    char wrong[512];
    github_msg(&m, BODY, "wrong");
    snprintf(wrong, sizeof wrong, "%s", m.values[1]);
    snprintf(m.values[1], sizeof m.values[1], "%s, garbage,%s", wrong, good);
    m.h[1].value_len = strlen(m.values[1]);
    CHECK_EQ_INT(check("hmac", hmac_secrets, 1, github_opts, 3, &m, NOW, &why),
                 LUAR_WEBHOOK_OK);
    snprintf(m.values[1], sizeof m.values[1], "%s %s", wrong, wrong);
    m.h[1].value_len = strlen(m.values[1]);
    CHECK_EQ_INT(check("hmac", hmac_secrets, 1, github_opts, 3, &m, NOW, &why),
                 LUAR_WEBHOOK_INVALID);
    CHECK(strstr(why.data, "(2 signatures, 1 secret)") != NULL);
    msg_header(&m, "x-hub-signature-256", good);
    CHECK_EQ_INT(check("hmac", hmac_secrets, 1, github_opts, 3, &m, NOW, &why),
                 LUAR_WEBHOOK_OK);
    luar_buf_free(&why);
}

TEST(test_hmac_algorithms_and_encodings)
{
    static const struct {
        const char *alg, *encoding, *sig_encoding;
    } cases[] = {
        {"sha1", "hex", "hex"},       {"sha256", "hex", "HEX"},
        {"sha512", "hex", "hex"},     {"sha1", "base64", "base64"},
        {"sha256", "base64", "base64"}, {"sha512", "base64", "base64"},
    };
    luar_buf_t why;
    luar_buf_init(&why, 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const luar_webhook_opt_t opts[] = {
            {"header", "X-Signature"}, {"algorithm", cases[i].alg},
            {"encoding", cases[i].encoding}};
        char sig[200];
        hmac_sig(cases[i].alg, "topsecret", BODY, cases[i].sig_encoding, sig, sizeof sig);
        msg_t m;
        msg_init(&m, BODY);
        msg_header(&m, "X-Signature", sig);
        CHECK_EQ_INT(check("hmac", hmac_secrets, 1, opts, 3, &m, NOW, &why), LUAR_WEBHOOK_OK);
        /* the other algorithms' signatures do not pass */
        const char *other = strcmp(cases[i].alg, "sha1") == 0 ? "sha256" : "sha1";
        hmac_sig(other, "topsecret", BODY, cases[i].sig_encoding, sig, sizeof sig);
        msg_init(&m, BODY);
        msg_header(&m, "X-Signature", sig);
        CHECK_EQ_INT(check("hmac", hmac_secrets, 1, opts, 3, &m, NOW, &why),
                     LUAR_WEBHOOK_INVALID);
    }
    luar_buf_free(&why);
}

static const luar_webhook_opt_t ts_opts[] = {
    {"header", "X-Signature"}, {"encoding", "base64"}, {"prefix", "v0="},
    {"timestamp_header", "X-Timestamp"}, {"signed_content", "v0:{timestamp}:{body}"}};

static void ts_msg(msg_t *m, const char *key, long long ts)
{
    char content[1024], sig[160], hdr[200], tsbuf[32];
    snprintf(content, sizeof content, "v0:%lld:%s", ts, BODY);
    hmac_sig("sha256", key, content, "base64", sig, sizeof sig);
    snprintf(hdr, sizeof hdr, "v0=%s", sig);
    snprintf(tsbuf, sizeof tsbuf, "%lld", ts);
    msg_init(m, BODY);
    msg_header(m, "X-Signature", hdr);
    msg_header(m, "X-Timestamp", tsbuf);
}

TEST(test_hmac_timestamp_header_and_template)
{
    msg_t m;
    luar_buf_t why;
    luar_buf_init(&why, 0);
    ts_msg(&m, "topsecret", (long long)NOW);
    CHECK_EQ_INT(check("hmac", hmac_secrets, 1, ts_opts, 5, &m, NOW, &why), LUAR_WEBHOOK_OK);
    ts_msg(&m, "topsecret", (long long)NOW - 301);
    CHECK_EQ_INT(check("hmac", hmac_secrets, 1, ts_opts, 5, &m, NOW, &why),
                 LUAR_WEBHOOK_EXPIRED);
    CHECK(strstr(why.data, "X-Timestamp") && strstr(why.data, "in the past"));
    ts_msg(&m, "topsecret", (long long)NOW + 301);
    CHECK_EQ_INT(check("hmac", hmac_secrets, 1, ts_opts, 5, &m, NOW, &why),
                 LUAR_WEBHOOK_EXPIRED);
    CHECK(strstr(why.data, "in the future") != NULL);
    /* the timestamp is signed: changing it breaks the signature */
    ts_msg(&m, "topsecret", (long long)NOW);
    snprintf(m.values[1], sizeof m.values[1], "%lld", (long long)NOW - 1);
    CHECK_EQ_INT(check("hmac", hmac_secrets, 1, ts_opts, 5, &m, NOW, &why),
                 LUAR_WEBHOOK_INVALID);
    ts_msg(&m, "topsecret", (long long)NOW);
    m.n = 1;
    m.m.nheaders = 1;
    CHECK_EQ_INT(check("hmac", hmac_secrets, 1, ts_opts, 5, &m, NOW, &why),
                 LUAR_WEBHOOK_MISSING);
    CHECK_EQ_STR(why.data, "no X-Timestamp header");
    ts_msg(&m, "topsecret", (long long)NOW);
    snprintf(m.values[1], sizeof m.values[1], "yesterday");
    m.h[1].value_len = 9;
    CHECK_EQ_INT(check("hmac", hmac_secrets, 1, ts_opts, 5, &m, NOW, &why),
                 LUAR_WEBHOOK_INVALID);
    luar_buf_free(&why);
}

TEST(test_hmac_configuration_errors)
{
    static const struct {
        luar_webhook_opt_t opts[3];
        size_t n;
        const char *reason;
    } cases[] = {
        {{{"algorithm", "sha256"}}, 1, "option header is required"},
        {{{"header", "X-S"}, {"algorithm", "md5"}}, 2, "algorithm must be"},
        {{{"header", "X-S"}, {"encoding", "base32"}}, 2, "encoding must be"},
        {{{"header", "X-S"}, {"colour", "blue"}}, 2, "unknown option \"colour\""},
        {{{"header", "X Sig"}}, 1, "not a header name"},
        {{{"header", "X-S"}, {"signed_content", "{timestamp}.{body}"}}, 2,
         "no timestamp_header"},
        {{{"header", "X-S"}, {"signed_content", "{id}.{body}"}}, 2, "placeholder \"{id}\""},
        {{{"header", "X-S"}, {"signed_content", "{timestamp}"}, {"timestamp_header", "X-T"}},
         3, "must contain {body} once"},
    };
    luar_buf_t err;
    luar_buf_init(&err, 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        luar_webhook_verifier_t v;
        luar_buf_reset(&err);
        CHECK_EQ_INT(luar_webhook_verifier_init(&v, "hmac", hmac_secrets, NULL, 1,
                                                cases[i].opts, cases[i].n, 0, &err),
                     LUAR_EINVAL);
        CHECK(err.data && strstr(err.data, cases[i].reason));
        if (!(err.data && strstr(err.data, cases[i].reason)))
            fprintf(stderr, "  case %zu: %s\n", i, err.data ? err.data : "(none)");
    }
    const char *empty[] = {""};
    luar_webhook_verifier_t v;
    luar_buf_reset(&err);
    CHECK_EQ_INT(luar_webhook_verifier_init(&v, "hmac", empty, NULL, 1, github_opts, 3, 0, &err),
                 LUAR_EINVAL);
    CHECK(strstr(err.data, "secret 1 is empty") != NULL);
    luar_buf_free(&err);
}

TEST(test_hmac_events_id_and_type)
{
    luar_webhook_verifier_t v;
    luar_buf_t why, scratch;
    luar_buf_init(&why, 0);
    luar_buf_init(&scratch, 0);
    CHECK_EQ_INT(luar_webhook_verifier_init(&v, "hmac", hmac_secrets, NULL, 1, github_opts, 3,
                                            0, &why),
                 0);
    CHECK(luar_webhook_is_signature_header(&v, "x-hub-signature-256", 19));
    CHECK(!luar_webhook_is_signature_header(&v, "x-github-delivery", 17));
    static const struct {
        const char *body, *id, *type;
    } cases[] = {
        {BODY, "evt_42", "invoice.paid"},
        {"{\"id\": 12345, \"type\": \"a.b\"}", "12345", "a.b"},
        {"{\"id\": \"\\u0065vt\", \"data\": {\"type\": \"x\"}}", "evt", "webhook"},
        {"{\"id\": null, \"type\": 7}", NULL, "webhook"},
        {"[1, 2]", NULL, "webhook"},
        {"\"just text\"", NULL, "webhook"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        msg_t m;
        github_msg(&m, cases[i].body, "topsecret");
        luar_webhook_event_t ev[1];
        size_t n = 0;
        luar_buf_reset(&scratch);
        CHECK_EQ_INT(luar_webhook_verify(&v, &m.m, NOW, &why), LUAR_WEBHOOK_OK);
        CHECK_EQ_INT(luar_webhook_events(&v, &m.m, ev, 1, &n, &scratch, &why), 0);
        CHECK_EQ_INT(n, 1);
        /* no id in the body: the signature (without its prefix) names the event */
        const char *want_id = cases[i].id ? cases[i].id : m.values[1] + 7;
        CHECK(ev[0].id_len == strlen(want_id) && memcmp(ev[0].id, want_id, ev[0].id_len) == 0);
        CHECK(ev[0].type_len == strlen(cases[i].type) &&
              memcmp(ev[0].type, cases[i].type, ev[0].type_len) == 0);
        CHECK(ev[0].json == m.m.body);
    }
    msg_t m;
    github_msg(&m, "id=1&type=x", "topsecret");
    luar_webhook_event_t ev[1];
    size_t n = 0;
    luar_buf_reset(&why);
    CHECK_EQ_INT(luar_webhook_events(&v, &m.m, ev, 1, &n, &scratch, &why), LUAR_EPARSE);
    CHECK(strstr(why.data, "body is not JSON") != NULL);
    luar_webhook_verifier_free(&v);
    luar_buf_free(&why);
    luar_buf_free(&scratch);
}

TEST(test_hmac_sign_round_trip)
{
    const luar_webhook_opt_t variants[][5] = {
        {{"header", "X-Hub-Signature-256"}, {"prefix", "sha256="}},
        {{"header", "X-Signature"}, {"algorithm", "sha512"}, {"encoding", "base64"}},
        {{"header", "X-Signature"}, {"algorithm", "sha1"}},
        {ts_opts[0], ts_opts[1], ts_opts[2], ts_opts[3], ts_opts[4]},
    };
    const size_t nopts[] = {2, 3, 2, 5};
    for (size_t i = 0; i < 4; i++) {
        luar_webhook_verifier_t v;
        luar_buf_t out, err, why;
        luar_buf_init(&out, 0);
        luar_buf_init(&err, 0);
        luar_buf_init(&why, 0);
        CHECK_EQ_INT(luar_webhook_verifier_init(&v, "hmac", hmac_secrets, NULL, 1, variants[i],
                                                nopts[i], 0, &err),
                     0);
        CHECK_EQ_INT(luar_webhook_sign(&v, NULL, NOW, BODY, strlen(BODY), &out, &err), 0);
        msg_t m;
        msg_init(&m, BODY);
        msg_headers_from_sign(&m, out.data);
        CHECK_EQ_INT(m.n, i == 3 ? 2 : 1);
        CHECK_EQ_INT(luar_webhook_verify(&v, &m.m, NOW, &why), LUAR_WEBHOOK_OK);
        luar_webhook_verifier_free(&v);
        luar_buf_free(&out);
        luar_buf_free(&err);
        luar_buf_free(&why);
    }
    /* and the exact output for GitHub's shape, computed independently */
    luar_webhook_verifier_t v;
    luar_buf_t out, err;
    luar_buf_init(&out, 0);
    luar_buf_init(&err, 0);
    CHECK_EQ_INT(luar_webhook_verifier_init(&v, "hmac", hmac_secrets, NULL, 1, github_opts, 3,
                                            0, &err),
                 0);
    CHECK_EQ_INT(luar_webhook_sign(&v, NULL, NOW, BODY, strlen(BODY), &out, &err), 0);
    char sig[160], want[256];
    hmac_sig("sha256", "topsecret", BODY, "hex", sig, sizeof sig);
    snprintf(want, sizeof want, "X-Hub-Signature-256: sha256=%s\r\n", sig);
    CHECK_EQ_STR(out.data, want);
    luar_webhook_verifier_free(&v);
    luar_buf_free(&out);
    luar_buf_free(&err);
}

int main(void)
{
    RUN(test_registry_has_host_schemes_and_takes_plugins);
    RUN(test_verifier_init_errors_name_the_problem);
    RUN(test_standard_published_test_vector);
    RUN(test_standard_valid_and_events);
    RUN(test_standard_events_need_a_json_object_with_a_string_type);
    RUN(test_standard_tampered_body_and_wrong_secret_are_invalid);
    RUN(test_standard_rotated_second_secret_matches);
    RUN(test_standard_missing_headers);
    RUN(test_standard_malformed_headers_are_invalid);
    RUN(test_standard_expired_and_future_timestamps);
    RUN(test_standard_several_signatures_one_matches);
    RUN(test_standard_svix_header_names);
    RUN(test_standard_secret_formats);
    RUN(test_standard_sign_round_trip);
    RUN(test_hmac_valid_tampered_wrong_secret_rotated);
    RUN(test_hmac_missing_and_malformed_headers);
    RUN(test_hmac_several_signatures_and_repeated_headers);
    RUN(test_hmac_algorithms_and_encodings);
    RUN(test_hmac_timestamp_header_and_template);
    RUN(test_hmac_configuration_errors);
    RUN(test_hmac_events_id_and_type);
    RUN(test_hmac_sign_round_trip);
    return DONE();
}
