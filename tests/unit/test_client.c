/*
 * host/client: curl-multi on a libuv loop against a tiny libuv HTTP server in the same
 * loop (real loopback sockets), cancellation, connection reuse, a clean loop close, and
 * the redaction rules.
 */
#include "client/client.h"
#include "client/redact.h"
#include "common/error.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

/* ---- a one-route upstream: answers every request "200 hello", keeps connections ---- */

struct upstream {
    uv_tcp_t listener;
    int port;
    int accepted; /* connections */
    int answered; /* requests */
    int silent;   /* nonzero: read requests, never answer */
};

struct conn {
    uv_tcp_t tcp;
    struct upstream *up;
    char buf[8192];
    size_t len;
};

static void conn_closed(uv_handle_t *h)
{
    free(h->data);
}

static void write_done(uv_write_t *w, int status)
{
    (void)status;
    free(w);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    struct conn *c = h->data;
    buf->base = c->buf + c->len;
    buf->len = sizeof c->buf - c->len - 1;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    struct conn *c = s->data;
    if (n < 0) {
        uv_close((uv_handle_t *)s, conn_closed);
        return;
    }
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    char *end = strstr(c->buf, "\r\n\r\n");
    while (end) {
        if (!c->up->silent) {
            static const char reply[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                                        "X-Thing: Yes\r\n\r\nhello";
            uv_write_t *w = malloc(sizeof *w);
            uv_buf_t b = uv_buf_init((char *)reply, sizeof reply - 1);
            uv_write(w, s, &b, 1, write_done);
            c->up->answered++;
        }
        size_t used = (size_t)(end + 4 - c->buf);
        memmove(c->buf, end + 4, c->len - used + 1);
        c->len -= used;
        end = strstr(c->buf, "\r\n\r\n");
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    struct upstream *up = server->data;
    if (status < 0)
        return;
    struct conn *c = calloc(1, sizeof *c);
    c->up = up;
    uv_tcp_init(server->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) == 0) {
        up->accepted++;
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    } else {
        uv_close((uv_handle_t *)&c->tcp, conn_closed);
    }
}

static void upstream_start(uv_loop_t *loop, struct upstream *up)
{
    struct sockaddr_in addr;
    memset(up, 0, sizeof *up);
    uv_ip4_addr("127.0.0.1", 0, &addr);
    uv_tcp_init(loop, &up->listener);
    up->listener.data = up;
    uv_tcp_bind(&up->listener, (const struct sockaddr *)&addr, 0);
    uv_listen((uv_stream_t *)&up->listener, 128, on_connection);
    struct sockaddr_in got;
    int len = sizeof got;
    uv_tcp_getsockname(&up->listener, (struct sockaddr *)&got, &len);
    up->port = ntohs(got.sin_port);
}

static void close_any(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, h->data && h->type == UV_TCP && h != arg ? conn_closed : NULL);
}

/* Closes the upstream's handles and checks the loop closes with nothing left open. */
static int finish_loop(uv_loop_t *loop, struct upstream *up)
{
    uv_close((uv_handle_t *)&up->listener, NULL);
    up->listener.data = NULL;
    uv_walk(loop, close_any, &up->listener);
    uv_run(loop, UV_RUN_DEFAULT);
    return uv_loop_close(loop);
}

/* ---- the client ------------------------------------------------------------------------- */

struct outcome {
    int calls;
    luar_client_res_t *res;
};

static void on_done(void *arg, luar_client_res_t *res)
{
    struct outcome *o = arg;
    o->calls++;
    luar_client_res_free(o->res);
    o->res = res;
}

static void url_of(char *buf, size_t n, struct upstream *up, const char *path)
{
    snprintf(buf, n, "http://127.0.0.1:%d%s", up->port, path);
}

TEST(test_requests_complete_and_reuse_one_connection)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct upstream up;
    upstream_start(&loop, &up);
    char url[128];
    url_of(url, sizeof url, &up, "/a");
    luar_client_multi_t *pool;
    CHECK_EQ_INT(luar_client_multi_acquire(&loop, &pool), 0);
    for (int i = 0; i < 3; i++) {
        struct outcome o = {0, NULL};
        luar_client_req_t req = {.method = "GET", .url = url};
        CHECK_EQ_INT(luar_client_request(&loop, &req, on_done, &o, NULL), 0);
        while (o.calls == 0 && uv_run(&loop, UV_RUN_ONCE))
            ;
        CHECK_EQ_INT(o.calls, 1);
        CHECK(o.res != NULL && o.res->rc == 0);
        if (o.res && o.res->rc == 0) {
            CHECK_EQ_INT(o.res->status, 200);
            CHECK_EQ_STR(o.res->body.data, "hello");
            CHECK_EQ_STR(luar_client_res_header(o.res, "x-thing"), "Yes");
        }
        luar_client_res_free(o.res);
    }
    CHECK_EQ_INT(up.answered, 3);
    CHECK_EQ_INT(up.accepted, 1); /* the pool kept the connection */
    luar_client_multi_release(pool);
    CHECK_EQ_INT(finish_loop(&loop, &up), 0);
}

TEST(test_cancel_never_calls_back_and_the_loop_closes)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct upstream up;
    upstream_start(&loop, &up);
    up.silent = 1;
    char url[128];
    url_of(url, sizeof url, &up, "/slow");
    struct outcome o = {0, NULL};
    luar_client_call_t *call = NULL;
    luar_client_req_t req = {.url = url, .timeout = 30};
    CHECK_EQ_INT(luar_client_request(&loop, &req, on_done, &o, &call), 0);
    while (up.accepted == 0 || up.silent == 1) {
        uv_run(&loop, UV_RUN_ONCE);
        if (up.accepted > 0)
            up.silent = 2; /* the request was read by now or soon; cancel mid-flight */
    }
    luar_client_cancel(call);
    CHECK_EQ_INT(finish_loop(&loop, &up), 0);
    CHECK_EQ_INT(o.calls, 0);
}

TEST(test_errors_are_mapped_and_sync_failures_never_call_back)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct upstream up;
    upstream_start(&loop, &up);
    struct outcome o = {0, NULL};
    luar_client_req_t bad = {.method = "get me", .url = "http://127.0.0.1/"};
    CHECK_EQ_INT(luar_client_request(&loop, &bad, on_done, &o, NULL), LUAR_EINVAL);
    luar_client_header_t inject[] = {{"X-A", "1\r\nX-B: 2"}};
    luar_client_req_t bad2 = {.url = "http://127.0.0.1/", .headers = inject, .nheaders = 1};
    CHECK_EQ_INT(luar_client_request(&loop, &bad2, on_done, &o, NULL), LUAR_EINVAL);
    CHECK_EQ_INT(o.calls, 0);

    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:1/"); /* nothing listens on port 1 */
    luar_client_req_t refused = {.url = url};
    CHECK_EQ_INT(luar_client_request(&loop, &refused, on_done, &o, NULL), 0);
    while (o.calls == 0 && uv_run(&loop, UV_RUN_ONCE))
        ;
    CHECK(o.res && o.res->rc != 0);
    if (o.res)
        CHECK_EQ_STR(o.res->kind, "connect");

    up.silent = 1;
    url_of(url, sizeof url, &up, "/hang");
    luar_client_req_t slow = {.url = url, .timeout = 0.2};
    CHECK_EQ_INT(luar_client_request(&loop, &slow, on_done, &o, NULL), 0);
    while (o.calls == 1 && uv_run(&loop, UV_RUN_ONCE))
        ;
    CHECK(o.res && o.res->rc == LUAR_ETIMEOUT);
    if (o.res)
        CHECK_EQ_STR(o.res->kind, "timeout");

    up.silent = 0;
    url_of(url, sizeof url, &up, "/big");
    luar_client_req_t small = {.url = url, .max_body = 3};
    CHECK_EQ_INT(luar_client_request(&loop, &small, on_done, &o, NULL), 0);
    while (o.calls == 2 && uv_run(&loop, UV_RUN_ONCE))
        ;
    CHECK(o.res && o.res->rc == LUAR_ETOOBIG);
    if (o.res)
        CHECK_EQ_STR(o.res->kind, "too_large");
    luar_client_res_free(o.res);
    CHECK_EQ_INT(finish_loop(&loop, &up), 0);
}

TEST(test_redaction_rules)
{
    CHECK(luar_redact_header_is_secret("Authorization", 13));
    CHECK(luar_redact_header_is_secret("proxy-authorization", 19));
    CHECK(luar_redact_header_is_secret("Cookie", 6));
    CHECK(luar_redact_header_is_secret("SET-COOKIE", 10));
    CHECK(luar_redact_header_is_secret("X-Api-Key", 9));
    CHECK(luar_redact_header_is_secret("X-Auth-Token", 12));
    CHECK(luar_redact_header_is_secret("X-Webhook-Secret", 16));
    CHECK(!luar_redact_header_is_secret("Content-Type", 12));
    CHECK(!luar_redact_header_is_secret("X-Keyboard", 10));
    luar_buf_t b;
    luar_buf_init(&b, 0);
    luar_redact_url(&b, "https://u:pw@h.example/p?api_key=K1&page=2&Signature=S&x#frag");
    CHECK_EQ_STR(b.data, "https://u:[redacted]@h.example/p?api_key=[redacted]&page=2"
                         "&Signature=[redacted]&x#frag");
    luar_buf_reset(&b);
    luar_redact_url(&b, "http://h/plain");
    CHECK_EQ_STR(b.data, "http://h/plain");
    luar_buf_reset(&b);
    luar_redact_header_json(&b, "X-Api-Key", "SECRET");
    CHECK_EQ_STR(b.data, "\"[redacted]\"");
    luar_buf_free(&b);
}

int main(void)
{
    RUN(test_requests_complete_and_reuse_one_connection);
    RUN(test_cancel_never_calls_back_and_the_loop_closes);
    RUN(test_errors_are_mapped_and_sync_failures_never_call_back);
    RUN(test_redaction_rules);
    return DONE();
}
