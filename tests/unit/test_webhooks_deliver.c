/*
 * The pure parts of outbound webhook delivery: the private-address classifier, the retry
 * schedule, message ids (KSUID), the body, URL and secret checks, and breaker keys. The
 * attempts themselves are tested end to end (tests/e2e/test_webhooks_deliver.py).
 */
#include "client/addr.h"
#include "common/clock.h"
#include "common/error.h"
#include "config/config.h"
#include "webhooks/deliver.h"

#include "test.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

TEST(test_addr_classifies_non_public_ranges)
{
    static const struct {
        const char *ip;
        const char *kind; /* NULL: public */
    } cases[] = {
        {"8.8.8.8", NULL},
        {"1.1.1.1", NULL},
        {"172.15.255.255", NULL},
        {"172.32.0.1", NULL},
        {"100.63.255.255", NULL},
        {"11.0.0.1", NULL},
        {"127.0.0.1", "loopback"},
        {"127.255.255.254", "loopback"},
        {"0.0.0.0", "unspecified"},
        {"0.1.2.3", "unspecified"},
        {"10.0.0.1", "private"},
        {"172.16.0.1", "private"},
        {"172.31.255.255", "private"},
        {"192.168.1.20", "private"},
        {"169.254.169.254", "link-local"},
        {"100.64.0.1", "shared"},
        {"192.0.2.7", "documentation"},
        {"198.18.0.1", "benchmarking"},
        {"224.0.0.1", "multicast"},
        {"240.0.0.1", "reserved"},
        {"255.255.255.255", "broadcast"},
        {"::", "unspecified"},
        {"::1", "loopback"},
        {"[::1]", "loopback"},
        {"fe80::1", "link-local"},
        {"fe80::1%eth0", "link-local"},
        {"febf::1", "link-local"},
        {"fc00::1", "private"},
        {"fd12:3456::1", "private"},
        {"fec0::1", "private"},
        {"ff02::1", "multicast"},
        {"2001:db8::1", "documentation"},
        {"::ffff:127.0.0.1", "loopback"},
        {"::ffff:10.1.2.3", "private"},
        {"::ffff:8.8.8.8", NULL},
        {"64:ff9b::a9fe:a9fe", "link-local"},   /* NAT64 of 169.254.169.254 */
        {"2002:7f00:1::1", "loopback"},         /* 6to4 of 127.0.0.1 */
        {"2002:808:808::1", NULL},              /* 6to4 of 8.8.8.8 */
        {"2606:4700:4700::1111", NULL},
        {"2a00:1450:4001::200e", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *kind = "unset";
        int rc = luar_addr_classify(cases[i].ip, &kind);
        if (rc != 0 || (kind == NULL) != (cases[i].kind == NULL) ||
            (kind && strcmp(kind, cases[i].kind) != 0)) {
            fprintf(stderr, "  %s: rc %d, kind %s, expected %s\n", cases[i].ip, rc,
                    kind ? kind : "public", cases[i].kind ? cases[i].kind : "public");
            CHECK(0);
        }
    }
    const char *kind;
    /* Host names (and the resolver's shorthand forms) are for the connect-time check. */
    CHECK_EQ_INT(luar_addr_classify("localhost", &kind), LUAR_EINVAL);
    CHECK_EQ_INT(luar_addr_classify("example.com", &kind), LUAR_EINVAL);
    CHECK_EQ_INT(luar_addr_classify("127.1", &kind), LUAR_EINVAL);
    CHECK_EQ_INT(luar_addr_classify("", &kind), LUAR_EINVAL);
    CHECK_EQ_INT(luar_addr_classify("[]", &kind), LUAR_EINVAL);
}

TEST(test_default_schedule_is_svix_s)
{
    luar_webhooks_config_t w;
    luar_webhooks_config_init(&w);
    static const double svix[] = {0, 5, 300, 1800, 7200, 18000, 36000, 36000};
    CHECK_EQ_INT(w.deliver_attempts, 8);
    CHECK(w.deliver_allow_private == 0);
    CHECK_EQ_INT(w.deliver_breaker_failures, 5);
    CHECK(w.deliver_breaker_reset == 30);
    CHECK(luar_deliver_delay(&w, 0) == 0); /* the first attempt: immediately */
    for (int attempt = 1; attempt < 8; attempt++)
        CHECK(luar_deliver_delay(&w, attempt) == svix[attempt]);
    CHECK(luar_deliver_delay(&w, 8) == 36000); /* past the end: the last delay */
    CHECK(luar_deliver_delay(&w, 1000) == 36000);
    CHECK(luar_deliver_span(&w) == 99305); /* about 27.6 hours */
    w.deliver_attempts = 2;
    w.deliver_schedule[0] = 1.5;
    w.deliver_schedule[1] = 0.25;
    CHECK(luar_deliver_delay(&w, 0) == 1.5);
    CHECK(luar_deliver_delay(&w, 1) == 0.25);
    CHECK(luar_deliver_delay(&w, 5) == 0.25);
    CHECK(luar_deliver_span(&w) == 1.75);
}

TEST(test_settings_follow_configure)
{
    luar_webhooks_config_t w;
    luar_webhooks_config_init(&w);
    w.deliver_allow_private = 1;
    w.deliver_attempts = 1;
    luar_deliver_configure(&w);
    CHECK(luar_deliver_settings()->deliver_allow_private == 1);
    CHECK_EQ_INT(luar_deliver_settings()->deliver_attempts, 1);
    luar_deliver_configure(NULL);
    CHECK(luar_deliver_settings()->deliver_allow_private == 0);
    CHECK_EQ_INT(luar_deliver_settings()->deliver_attempts, 8);
}

/* Decodes the 27 base62 digits after "msg_" back into 20 bytes. */
static int ksuid_decode(const char *id, uint8_t raw[20])
{
    static const char digits[] =
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    memset(raw, 0, 20);
    for (int i = 4; i < 31; i++) {
        const char *d = strchr(digits, id[i]);
        if (d == NULL || id[i] == '\0')
            return -1;
        unsigned carry = (unsigned)(d - digits);
        for (int b = 19; b >= 0; b--) {
            unsigned cur = raw[b] * 62u + carry;
            raw[b] = (uint8_t)cur;
            carry = cur >> 8;
        }
        if (carry)
            return -1;
    }
    return 0;
}

TEST(test_message_ids_are_ksuids)
{
    /* segmentio/ksuid's documented example: 0ujtsYcgvSTl8PAuAdqWYSMnLOv. */
    static const uint8_t raw[20] = {0x06, 0x69, 0xF7, 0xEF, 0xB5, 0xA1, 0xCD, 0x34, 0xB5, 0xF9,
                                    0x9D, 0x11, 0x54, 0xFB, 0x68, 0x53, 0x34, 0x5C, 0x97, 0x35};
    char id[LUAR_DELIVER_ID_SIZE];
    luar_deliver_format_id(raw, id);
    CHECK_EQ_STR(id, "msg_0ujtsYcgvSTl8PAuAdqWYSMnLOv");
    static const uint8_t zero[20], ones[20] = {255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
                                               255, 255, 255, 255, 255, 255, 255, 255, 255, 255};
    luar_deliver_format_id(zero, id);
    CHECK_EQ_STR(id, "msg_000000000000000000000000000");
    luar_deliver_format_id(ones, id);
    CHECK_EQ_STR(id, "msg_aWgEPTl1tmebfsQzFP4bxwgy80V"); /* KSUID's documented maximum */

    char a[LUAR_DELIVER_ID_SIZE], b[LUAR_DELIVER_ID_SIZE];
    luar_deliver_new_id(a);
    luar_deliver_new_id(b);
    CHECK_EQ_INT(strlen(a), 31);
    CHECK(strncmp(a, "msg_", 4) == 0);
    CHECK(strcmp(a, b) != 0);
    uint8_t back[20];
    CHECK_EQ_INT(ksuid_decode(a, back), 0);
    long long t = ((long long)back[0] << 24 | back[1] << 16 | back[2] << 8 | back[3]) +
                  1400000000LL;
    CHECK(llabs(t - (long long)luar_time_now()) <= 2);
}

TEST(test_body_is_standard_webhooks_shape)
{
    luar_buf_t b;
    luar_buf_init(&b, 0);
    const char *data = "{\"id\":\"in_1\",\"amount\":4200}";
    CHECK_EQ_INT(luar_deliver_body(&b, "invoice.paid", 12, 1700000000.5, data, strlen(data)), 0);
    CHECK_EQ_STR(b.data, "{\"type\":\"invoice.paid\",\"timestamp\":\"2023-11-14T22:13:20.500Z\","
                         "\"data\":{\"id\":\"in_1\",\"amount\":4200}}");
    luar_buf_reset(&b);
    CHECK_EQ_INT(luar_deliver_body(&b, "a\"b", 3, 0.001, "[]", 2), 0);
    CHECK_EQ_STR(b.data, "{\"type\":\"a\\\"b\",\"timestamp\":\"1970-01-01T00:00:00.001Z\","
                         "\"data\":[]}");
    luar_buf_free(&b);
}

TEST(test_url_check)
{
    luar_buf_t why;
    luar_buf_init(&why, 0);
    const char *kind = NULL;
    CHECK_EQ_INT(luar_deliver_check_url("https://customer.example/hooks?t=1", 0, &kind, &why), 0);
    CHECK_EQ_INT(luar_deliver_check_url("http://203.0.114.9:8080/x", 0, &kind, &why), 0);
    CHECK_EQ_INT(luar_deliver_check_url("http://localhost:9/x", 0, &kind, &why), 0);
    CHECK_EQ_INT(luar_deliver_check_url("customer.example/hooks", 0, &kind, &why), LUAR_EINVAL);
    CHECK_EQ_STR(kind, "invalid");
    luar_buf_reset(&why);
    CHECK_EQ_INT(luar_deliver_check_url("ftp://customer.example/", 0, &kind, &why), LUAR_EINVAL);
    CHECK(strstr(why.data, "ftp") != NULL);
    luar_buf_reset(&why);
    CHECK_EQ_INT(luar_deliver_check_url("http://127.0.0.1:8080/secret-path", 0, &kind, &why),
                 LUAR_EINVAL);
    CHECK_EQ_STR(kind, "private_address");
    CHECK(strstr(why.data, "loopback") && !strstr(why.data, "secret-path"));
    luar_buf_reset(&why);
    CHECK_EQ_INT(luar_deliver_check_url("http://[fd00::1]/", 0, &kind, &why), LUAR_EINVAL);
    CHECK_EQ_STR(kind, "private_address");
    CHECK_EQ_INT(luar_deliver_check_url("http://127.0.0.1:8080/", 1, &kind, &why), 0);
    luar_buf_free(&why);
}

TEST(test_secret_check_names_no_secret)
{
    luar_buf_t why;
    luar_buf_init(&why, 0);
    CHECK_EQ_INT(luar_deliver_check_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &why), 0);
    CHECK_EQ_INT(luar_deliver_check_secret("whsec_%%%secretvalue%%%", &why), LUAR_EINVAL);
    CHECK(why.len > 0 && strstr(why.data, "secretvalue") == NULL);
    luar_buf_free(&why);
}

TEST(test_breaker_key_is_per_endpoint_and_names_only_the_host)
{
    char a[300], b[300], c[300];
    luar_deliver_breaker_key("https://hooks.example/services/T0/B0/xoxb?token=abc", a, sizeof a);
    luar_deliver_breaker_key("https://hooks.example/services/T1/B1/xoxb?token=abc", b, sizeof b);
    luar_deliver_breaker_key("https://hooks.example/services/T0/B0/xoxb?token=abc", c, sizeof c);
    CHECK(strncmp(a, "hooks.example:443#", 18) == 0 && strlen(a) == 18 + 12);
    CHECK(strcmp(a, b) != 0);
    CHECK_EQ_STR(a, c);
    CHECK(strstr(a, "token") == NULL && strstr(a, "services") == NULL);
    luar_deliver_breaker_key("http://127.0.0.1:8080/x", a, sizeof a);
    CHECK(strncmp(a, "127.0.0.1:8080#", 15) == 0);
}

TEST(test_no_attempts_recorded_is_an_empty_list)
{
    luar_buf_t b;
    luar_buf_init(&b, 0);
    luar_deliver_record_t r[2];
    CHECK_EQ_INT(luar_deliver_recent(r, 2), 0);
    CHECK_EQ_INT(luar_deliver_recent_json(&b, 10), 0);
    CHECK_EQ_STR(b.data, "[]");
    luar_buf_free(&b);
}

int main(void)
{
    RUN(test_addr_classifies_non_public_ranges);
    RUN(test_default_schedule_is_svix_s);
    RUN(test_settings_follow_configure);
    RUN(test_message_ids_are_ksuids);
    RUN(test_body_is_standard_webhooks_shape);
    RUN(test_url_check);
    RUN(test_secret_check_names_no_secret);
    RUN(test_breaker_key_is_per_endpoint_and_names_only_the_host);
    RUN(test_no_attempts_recorded_is_an_empty_list);
    return DONE();
}
