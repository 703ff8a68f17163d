/*
 * Responses: luar_http_respond (status line, headers, Content-Length, Connection,
 * X-Request-Id, Date, body in one buffer and one write), the server's own JSON error
 * answers, request ids, the access log line and the HTTP metrics.
 */
#include "server/conn.h"
#include "common/clock.h"

#include "common/error.h"
#include "crypto/crypto.h"
#include "log/log.h"
#include "metrics/metrics.h"
#include "secrets/redact.h"
#include "trace/export.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static luar_metric_t *requests_total;
static luar_metric_t *request_duration;
static char id_prefix[17];
static uint64_t id_counter;
static time_t date_sec = -1;
static char date_line[64];
static size_t date_len;

static const char hexdigits[] = "0123456789abcdef";

/*
 * Registers the HTTP metrics (idempotent) and seeds request ids. Returns 0 or a
 * luar_metrics_register error.
 */
int luar_http_response_init(void)
{
    static const char *const req_labels[] = {"route", "method", "status"};
    static const char *const dur_labels[] = {"route"};
    int rc = luar_metrics_register(LUAR_METRIC_COUNTER, "luar_http_requests_total",
                                   "HTTP requests answered by the server.", req_labels, 3, NULL, 0,
                                   &requests_total, NULL);
    if (rc < 0)
        return rc;
    rc = luar_metrics_register(LUAR_METRIC_HISTOGRAM, "luar_http_request_duration_seconds",
                               "Time from the request line to the response being queued.",
                               dur_labels, 1, NULL, 0, &request_duration, NULL);
    if (rc < 0)
        return rc;
    if (id_prefix[0] == '\0') {
        unsigned char rnd[8];
        rc = luar_crypto_random(rnd, sizeof rnd);
        if (rc < 0)
            return rc;
        for (size_t i = 0; i < sizeof rnd; i++) {
            id_prefix[2 * i] = hexdigits[rnd[i] >> 4];
            id_prefix[2 * i + 1] = hexdigits[rnd[i] & 15];
        }
        id_prefix[16] = '\0';
    }
    return 0;
}

static int request_id_valid(const char *s, size_t len)
{
    if (len == 0 || len > 64)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 ch == '.' || ch == '_' || ch == ':' || ch == '-';
        if (!ok)
            return 0;
    }
    return 1;
}

/* Writes a generated id: a random per-process prefix and a counter, 32 hex digits. */
static void generate_id(char out[65])
{
    uint64_t n = ++id_counter;
    memcpy(out, id_prefix, 16);
    for (int i = 15; i >= 0; i--) {
        out[16 + i] = hexdigits[n & 15];
        n >>= 4;
    }
    out[32] = '\0';
}

/* Sets c->req.request_id from a valid X-Request-Id, else a generated id, and starts the
 * request's span under a valid `traceparent` (else a new trace). */
void luar_http_request_id(luar_http_conn_t *c)
{
    const luar_http_header_t *tp = luar_http_req_header(&c->req, "traceparent");
    c->req.trace.trace_id[0] = '\0';
    if (tp == NULL || luar_trace_parse(tp->value, tp->value_len, &c->req.trace) != 0)
        c->req.trace.trace_id[0] = '\0';
    luar_trace_child(&c->req.trace, &c->req.trace);
    const luar_http_header_t *h = luar_http_req_header(&c->req, "x-request-id");
    if (h && request_id_valid(h->value, h->value_len)) {
        memcpy(c->req.request_id, h->value, h->value_len);
        c->req.request_id[h->value_len] = '\0';
        return;
    }
    generate_id(c->req.request_id);
}

/* Returns the first header named `name` (lower-case), or NULL. The server owns it. */
const luar_http_header_t *luar_http_req_header(const luar_http_req_t *req, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < req->nheaders; i++) {
        const luar_http_header_t *h = &req->headers[i];
        if (h->name_len == len && memcmp(h->name, name, len) == 0)
            return h;
    }
    return NULL;
}

static const struct reason {
    int status;
    const char *text;
} reasons[] = {
    {200, "OK"},
    {204, "No Content"},
    {404, "Not Found"},
    {400, "Bad Request"},
    {100, "Continue"},
    {101, "Switching Protocols"},
    {201, "Created"},
    {202, "Accepted"},
    {206, "Partial Content"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {303, "See Other"},
    {304, "Not Modified"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {401, "Unauthorized"},
    {403, "Forbidden"},
    {405, "Method Not Allowed"},
    {406, "Not Acceptable"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {411, "Length Required"},
    {412, "Precondition Failed"},
    {413, "Content Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {417, "Expectation Failed"},
    {422, "Unprocessable Content"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
};

/* The most frequent codes come first in `reasons`. */
const char *luar_http_status_text(int status)
{
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++) {
        if (reasons[i].status == status)
            return reasons[i].text;
    }
    return "Unknown";
}

/* Appends the decimal form of `v`. */
static int put_uint(luar_buf_t *b, uint64_t v)
{
    char tmp[24];
    int i = sizeof tmp;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return luar_buf_append(b, tmp + i, sizeof tmp - (size_t)i);
}

/* The Date header line, formatted once per second. */
static void put_date(luar_buf_t *b)
{
    time_t now = (time_t)luar_time_now(); /* the test clock moves it too */
    if (now != date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        date_len =
            strftime(date_line, sizeof date_line, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
        date_sec = now;
    }
    luar_buf_append(b, date_line, date_len);
}

static int is_name(const luar_http_header_t *h, const char *lower, size_t len)
{
    return h->name_len == len && strncasecmp(h->name, lower, len) == 0;
}

static int has_crlf(const char *s, size_t len)
{
    return memchr(s, '\r', len) != NULL || memchr(s, '\n', len) != NULL;
}

/* Builds the whole response into c->out. */
static int build(luar_http_conn_t *c, int status, const luar_http_header_t *headers,
                 size_t nheaders, const char *body, size_t body_len, int head_only)
{
    luar_buf_t *b = &c->out;
    luar_buf_reset(b);
    if (status < 100 || status > 999)
        status = 500;
    char line[16] = "HTTP/1.1 000 ";
    line[9] = (char)('0' + status / 100);
    line[10] = (char)('0' + status / 10 % 10);
    line[11] = (char)('0' + status % 10);
    luar_buf_append(b, line, 13);
    luar_buf_puts(b, luar_http_status_text(status));
    luar_buf_append(b, "\r\n", 2);
    put_date(b);
    int own_id = 0;
    for (size_t i = 0; i < nheaders; i++) {
        const luar_http_header_t *h = &headers[i];
        if (h->name_len == 0 || has_crlf(h->name, h->name_len) ||
            has_crlf(h->value, h->value_len) || is_name(h, "content-length", 14) ||
            is_name(h, "connection", 10) || is_name(h, "transfer-encoding", 17))
            continue;
        own_id |= is_name(h, "x-request-id", 12);
        luar_buf_append(b, h->name, h->name_len);
        luar_buf_append(b, ": ", 2);
        luar_buf_append(b, h->value, h->value_len);
        luar_buf_append(b, "\r\n", 2);
    }
    if (!own_id && c->req.request_id[0]) {
        luar_buf_append(b, "X-Request-Id: ", 14);
        luar_buf_puts(b, c->req.request_id);
        luar_buf_append(b, "\r\n", 2);
    }
    int no_body = status < 200 || status == 204 || status == 304;
    if (!no_body) {
        luar_buf_append(b, "Content-Length: ", 16);
        put_uint(b, body_len);
        luar_buf_append(b, "\r\n", 2);
    }
    if (c->close_after)
        luar_buf_append(b, "Connection: close\r\n", 19);
    else if (c->http10)
        luar_buf_append(b, "Connection: keep-alive\r\n", 24);
    luar_buf_append(b, "\r\n", 2);
    if (!no_body && !head_only && body_len)
        return luar_buf_append(b, body, body_len);
    return b->data ? 0 : LUAR_ENOMEM;
}

/* Writes the access log line and updates the metrics for one response. */
static void account(luar_http_conn_t *c, int status, size_t bytes)
{
    luar_http_req_t *req = &c->req;
    double seconds = req->start_ns ? (double)(uv_hrtime() - req->start_ns) / 1e9 : 0.0;
    const char *method = req->method ? req->method : "-";
    const char *route = req->route[0] ? req->route : "unmatched";
    char status_s[4] = {(char)('0' + status / 100 % 10), (char)('0' + status / 10 % 10),
                        (char)('0' + status % 10), '\0'};
    if (requests_total) {
        const char *labels[] = {route, method, status_s};
        luar_metric_add(requests_total, labels, 1);
    }
    if (request_duration) {
        const char *labels[] = {route};
        luar_metric_observe(request_duration, labels, seconds);
    }
    if (luar_trace_exporting()) {
        char name[160];
        snprintf(name, sizeof name, "%s %s", method, route);
        luar_span_attr_t attrs[] = {{"http.request.method", method, 0},
                                    {"http.route", route, 0},
                                    {"http.response.status_code", NULL, status}};
        luar_span_end(&req->trace, name, LUAR_SPAN_SERVER,
                      luar_trace_unix_ns(req->start_ns ? req->start_ns : uv_hrtime()), attrs, 3,
                      status >= 500, NULL);
    }
    if (!luar_log_enabled(LUAR_LOG_INFO))
        return;
    luar_buf_t *f = &c->scratch;
    luar_buf_reset(f);
    luar_buf_appendf(f, "\"method\":\"%s\",\"path\":", method);
    if (req->path)
        luar_buf_append_json_string(f, req->path, req->path_len);
    else
        luar_buf_puts(f, "\"-\"");
    luar_buf_appendf(f,
                     ",\"status\":%d,\"duration_ms\":%.3f,\"bytes\":%zu,\"request_id\":\"%s\","
                     "\"remote_addr\":\"%s\",\"trace_id\":\"%s\"",
                     status, seconds * 1000.0, bytes, req->request_id, c->remote_addr,
                     req->trace.trace_id);
    if (f->data)
        luar_log_write(LUAR_LOG_INFO, "request", 7, f->data, f->len);
}

/*
 * Builds and queues the response, logs it and updates the metrics; see http.h.
 * The caller keeps `headers` and `body`. Returns 0, LUAR_ECLOSED or LUAR_EINVAL.
 */
int luar_http_respond(luar_http_req_t *req, int status, const luar_http_header_t *headers,
                      size_t nheaders, const char *body, size_t body_len)
{
    luar_http_conn_t *c = req ? req->conn : NULL;
    if (c == NULL || !c->inflight)
        return LUAR_EINVAL;
    if (body == NULL)
        body_len = 0;
    if (status < 100 || status > 999)
        status = 500;
    int head_only = req->method && strcmp(req->method, "HEAD") == 0;
    int rc = 0;
    /* Error bodies never echo a secret value (SPEC §4, §7.5); 2xx/3xx bodies are the
     * script's own business (it may mean to hand a token out). */
    luar_buf_t clean;
    luar_buf_init(&clean, 0);
    size_t match;
    if (status >= 400 && body_len > 0 && luar_secret_watching() &&
        luar_secret_find(body, body_len, &match) < body_len &&
        luar_secret_scrub(&clean, body, body_len) > 0) {
        body = clean.data;
        body_len = clean.len;
    }
    if (c->closing || c->aborted) {
        rc = LUAR_ECLOSED;
    } else {
        c->close_after = luar_http_conn_will_close(c);
        rc = build(c, status, headers, nheaders, body, body_len, head_only);
        if (rc == 0)
            rc = luar_http_conn_send(c, c->out.data, c->out.len) < 0 ? LUAR_ECLOSED : 0;
        else
            luar_http_conn_close(c);
        /* The bytes are with the kernel or a write request: do not keep a big buffer. */
        if (c->out.cap > 64 * 1024)
            luar_buf_free(&c->out);
    }
    account(c, status, head_only || rc ? 0 : body_len);
    luar_buf_free(&clean);
    luar_http_conn_request_done(c);
    return rc;
}

/* Returns nonzero when the response to `req` would be discarded. */
int luar_http_req_aborted(const luar_http_req_t *req)
{
    const luar_http_conn_t *c = req->conn;
    return c->aborted || c->closing || c->srv == NULL || c->srv->closing;
}

/* Answers with the server's own JSON error and closes the connection after it. */
void luar_http_respond_error(luar_http_conn_t *c, int status, const char *msg)
{
    if (c->closing || c->state == CONN_LINGER)
        return;
    if (!c->req.request_id[0])
        generate_id(c->req.request_id);
    luar_buf_t *f = &c->scratch;
    luar_buf_reset(f);
    luar_buf_puts(f, "{\"error\":");
    luar_buf_append_json_string(f, msg, strlen(msg));
    luar_buf_putc(f, '}');
    static const luar_http_header_t json = {"Content-Type", 12, "application/json", 16};
    c->close_after = 1;
    size_t len = f->len;
    int rc = f->data ? build(c, status, &json, 1, f->data, len, 0) : LUAR_ENOMEM;
    if (rc == 0)
        rc = luar_http_conn_send(c, c->out.data, c->out.len);
    account(c, status, rc ? 0 : len);
    if (rc == 0)
        luar_http_conn_finish(c);
    else
        luar_http_conn_close(c);
}

/* Queues the interim 100 Continue response. */
void luar_http_send_continue(luar_http_conn_t *c)
{
    static const char line[] = "HTTP/1.1 100 Continue\r\n\r\n";
    luar_http_conn_send(c, line, sizeof line - 1);
}
