/* W3C Trace Context ids (host/trace/trace.c): parsing traceparent as the recommendation's
 * test cases do, starting child and root spans, formatting. */
#include "test.h"
#include "trace/trace.h"

#include <string.h>

static const char *const TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

static int parses(const char *v)
{
    luar_trace_t t;
    memset(&t, 0, sizeof t);
    return luar_trace_parse(v, strlen(v), &t) == 0;
}

static int is_hex(const char *s, size_t n)
{
    if (strlen(s) != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

TEST(test_trace_parse_takes_the_remote_parent)
{
    luar_trace_t t;
    memset(&t, 0, sizeof t);
    CHECK_EQ_INT(luar_trace_parse(TP, strlen(TP), &t), 0);
    CHECK_EQ_STR(t.trace_id, "0af7651916cd43dd8448eb211c80319c");
    CHECK_EQ_STR(t.parent_id, "b7ad6b7169203331");
    CHECK_EQ_STR(t.span_id, "");
    CHECK_EQ_INT(t.flags, 1);
    /* Surrounding blanks are allowed (OWS); flags other than sampled are kept. */
    CHECK(parses("  00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00\t"));
    /* A later version may carry more fields after a dash. */
    CHECK(parses("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra"));
}

TEST(test_trace_parse_refuses_what_the_recommendation_refuses)
{
    static const char *const bad[] = {
        "",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0",    /* short */
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x", /* 00 with extra */
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",   /* version ff */
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",   /* zero trace id */
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",   /* zero parent id */
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",   /* upper case */
        "00-0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331-01",   /* separator */
        "0g-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",   /* version not hex */
        "00-0af7651916cd43dd8448eb211c80319z-b7ad6b7169203331-01",   /* id not hex */
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0x",   /* flags not hex */
        "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x",  /* later version, no dash */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (parses(bad[i]))
            fprintf(stderr, "accepted: \"%s\"\n", bad[i]);
        CHECK(!parses(bad[i]));
    }
}

TEST(test_trace_child_of_a_remote_parent_and_of_a_local_span)
{
    luar_trace_t req;
    memset(&req, 0, sizeof req);
    CHECK_EQ_INT(luar_trace_parse(TP, strlen(TP), &req), 0);
    luar_trace_child(&req, &req); /* the request's span under the remote parent */
    CHECK_EQ_STR(req.trace_id, "0af7651916cd43dd8448eb211c80319c");
    CHECK_EQ_STR(req.parent_id, "b7ad6b7169203331");
    CHECK(is_hex(req.span_id, 16));
    CHECK(strcmp(req.span_id, "b7ad6b7169203331") != 0);

    luar_trace_t call;
    luar_trace_child(&call, &req); /* an outbound call made by the request */
    CHECK_EQ_STR(call.trace_id, req.trace_id);
    CHECK_EQ_STR(call.parent_id, req.span_id);
    CHECK(strcmp(call.span_id, req.span_id) != 0);

    char tp[LUAR_TRACEPARENT_LEN + 1];
    luar_trace_format(&call, tp);
    CHECK_EQ_INT(strlen(tp), LUAR_TRACEPARENT_LEN);
    CHECK(strncmp(tp, "00-0af7651916cd43dd8448eb211c80319c-", 36) == 0);
    CHECK(strncmp(tp + 36, call.span_id, 16) == 0);
    CHECK(strcmp(tp + 52, "-01") == 0);
    luar_trace_t back;
    CHECK_EQ_INT(luar_trace_parse(tp, strlen(tp), &back), 0); /* round trip */
    CHECK_EQ_STR(back.parent_id, call.span_id);
}

TEST(test_trace_root_spans_are_new_sampled_traces)
{
    luar_trace_t a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    luar_trace_child(&a, NULL);
    luar_trace_child(&b, &b); /* no trace id: a root too */
    CHECK(is_hex(a.trace_id, 32) && is_hex(a.span_id, 16));
    CHECK(is_hex(b.trace_id, 32));
    CHECK(strcmp(a.trace_id, b.trace_id) != 0);
    CHECK_EQ_STR(a.parent_id, "");
    CHECK_EQ_INT(a.flags, 1);
    CHECK(luar_trace_active(&a));
    /* 10,000 spans, no repeated id among a sample of neighbours. */
    char prev[17] = "";
    for (int i = 0; i < 10000; i++) {
        luar_trace_t c;
        luar_trace_child(&c, &a);
        CHECK(strcmp(c.span_id, prev) != 0);
        memcpy(prev, c.span_id, sizeof prev);
    }
}

int main(void)
{
    RUN(test_trace_parse_takes_the_remote_parent);
    RUN(test_trace_parse_refuses_what_the_recommendation_refuses);
    RUN(test_trace_child_of_a_remote_parent_and_of_a_local_span);
    RUN(test_trace_root_spans_are_new_sampled_traces);
    return DONE();
}
