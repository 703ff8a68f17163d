/*
 * One outbound HTTP attempt: builds the easy handle from a luar_client_req_t, collects the
 * response (headers lower-cased, body capped at max_body), maps curl's result to an error
 * kind, counts it in the client metrics, logs it at debug level with secrets redacted,
 * and calls back. Retries, the breaker, the rate limiter and the cache sit above this
 * (each attempt passes here once), in the Lua binding today and the host API later.
 */
#include "client/client.h"
#include "client/addr.h"
#include "client/redact.h"
#include "common/error.h"
#include "log/log.h"
#include "luar_version.h"
#include "metrics/metrics.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/*
 * A request in flight: owns the easy handle, the header list sent and the response being
 * built, and holds one reference on the loop's multi.
 */
struct luar_client_call {
    CURL *easy;
    struct curl_slist *sent;
    luar_client_multi_t *multi;
    luar_client_done_fn cb;
    void *arg;
    luar_client_res_t *res;
    size_t header_bytes;
    int too_large;
    int head; /* a HEAD: its Content-Length announces a body that never comes */
    char refused[96]; /* refuse_private: "127.0.0.1 (loopback)" once refused */
    uint64_t started_ns;
    char method[16];
    char host[256];
    char errbuf[CURL_ERROR_SIZE];
    luar_buf_t log_headers; /* the request headers as redacted JSON members (debug only) */
    uv_timer_t *stub_timer; /* answered by the test stub (client.h), not by curl */
    void *stub_token;
};

static luar_client_stub_t g_stub; /* `luar test` only: every field NULL otherwise */

void luar_client_set_stub(const luar_client_stub_t *stub)
{
    if (stub)
        g_stub = *stub;
    else
        memset(&g_stub, 0, sizeof g_stub);
}

/* ---- the response ---------------------------------------------------------------------- */

static void free_headers(luar_client_res_t *res)
{
    for (size_t i = 0; i < res->nheaders; i++) {
        free((char *)res->headers[i].name);
        free((char *)res->headers[i].value);
    }
    free(res->headers);
    res->headers = NULL;
    res->nheaders = 0;
}

void luar_client_res_free(luar_client_res_t *res)
{
    if (res == NULL)
        return;
    free_headers(res);
    luar_buf_free(&res->body);
    free(res->url);
    free(res);
}

const char *luar_client_res_header(const luar_client_res_t *res, const char *name)
{
    for (size_t i = 0; i < res->nheaders; i++) {
        if (strcmp(res->headers[i].name, name) == 0)
            return res->headers[i].value;
    }
    return NULL;
}

static void trim(const char **s, size_t *len)
{
    while (*len > 0 && ((*s)[0] == ' ' || (*s)[0] == '\t')) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && isspace((unsigned char)(*s)[*len - 1]))
        (*len)--;
}

/* CURLOPT_HEADERFUNCTION: one header line of the response (or of an interim one). */
static size_t on_header(char *data, size_t size, size_t n, void *userp)
{
    struct luar_client_call *c = userp;
    luar_client_res_t *res = c->res;
    size_t len = size * n;
    c->header_bytes += len;
    if (c->header_bytes > LUAR_CLIENT_MAX_HEADER_BYTES) {
        c->too_large = 1;
        return 0;
    }
    if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        free_headers(res); /* a new response (after 100 Continue or a redirect) */
        return len;
    }
    const char *colon = memchr(data, ':', len);
    if (colon == NULL)
        return len;
    const char *name = data, *value = colon + 1;
    size_t nlen = (size_t)(colon - data), vlen = len - nlen - 1;
    trim(&name, &nlen);
    trim(&value, &vlen);
    if (!c->head && nlen == 14 && strncasecmp(name, "content-length", 14) == 0 &&
        strtoull(value, NULL, 10) > c->res->body.max) {
        c->too_large = 1; /* refuse before reading a byte of it */
        return 0;
    }
    luar_client_header_t *grown = realloc(res->headers, (res->nheaders + 1) * sizeof *grown);
    if (grown == NULL)
        return 0;
    res->headers = grown;
    char *lname = strndup(name, nlen), *lvalue = strndup(value, vlen);
    if (lname == NULL || lvalue == NULL) {
        free(lname);
        free(lvalue);
        return 0;
    }
    for (char *p = lname; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    res->headers[res->nheaders].name = lname;
    res->headers[res->nheaders].value = lvalue;
    res->nheaders++;
    return len;
}

/* CURLOPT_WRITEFUNCTION: body bytes, refused past max_body. */
static size_t on_body(char *data, size_t size, size_t n, void *userp)
{
    struct luar_client_call *c = userp;
    int rc = luar_buf_append(&c->res->body, data, size * n);
    if (rc == LUAR_ETOOBIG)
        c->too_large = 1;
    return rc ? 0 : size * n;
}

/* ---- errors, metrics and the log line -------------------------------------------------- */

static void set_error(luar_client_res_t *res, int rc, const char *kind, const char *msg)
{
    res->rc = rc;
    res->kind = kind;
    size_t n = strlen(msg);
    if (n >= sizeof res->message)
        n = sizeof res->message - 1;
    memcpy(res->message, msg, n);
    res->message[n] = '\0';
}

static void map_error(struct luar_client_call *c, CURLcode code)
{
    luar_client_res_t *res = c->res;
    const char *detail = c->errbuf[0] ? c->errbuf : curl_easy_strerror(code);
    char msg[512];
    snprintf(msg, sizeof msg, "%s %.200s: %.200s", c->method, c->host, detail);
    if (c->refused[0]) {
        snprintf(msg, sizeof msg, "%s %.200s: refused to connect to %s, which is not a public "
                 "address", c->method, c->host, c->refused);
        set_error(res, LUAR_EINVAL, "private_address", msg);
        return;
    }
    if (c->too_large) {
        snprintf(msg, sizeof msg, "%s %.200s: the response is larger than max_body (%zu bytes)",
                 c->method, c->host, res->body.max);
        set_error(res, LUAR_ETOOBIG, "too_large", msg);
        return;
    }
    switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
        set_error(res, LUAR_ETIMEOUT, "timeout", msg);
        return;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
        set_error(res, LUAR_EIO, "connect", msg);
        return;
    case CURLE_FILESIZE_EXCEEDED:
        set_error(res, LUAR_ETOOBIG, "too_large", msg);
        return;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_BAD_FUNCTION_ARGUMENT:
    case CURLE_BAD_CONTENT_ENCODING:
        set_error(res, LUAR_EINVAL, "invalid", msg);
        return;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_SHUTDOWN_FAILED:
        set_error(res, LUAR_ETLS, "tls", msg);
        return;
    default:
        break;
    }
    /* A TLS alert read after the handshake (TLS 1.3 refuses a missing client certificate
     * that way) surfaces as a receive error whose text names the SSL layer. */
    if ((code == CURLE_RECV_ERROR || code == CURLE_SEND_ERROR) && strstr(detail, "SSL"))
        set_error(res, LUAR_ETLS, "tls", msg);
    else
        set_error(res, LUAR_EIO, "connect", msg); /* reset, closed early, nothing answered */
}

static void count(struct luar_client_call *c)
{
    static const char *const labels[] = {"host", "status"};
    static luar_metric_t *requests, *duration; /* registered once */
    if (requests || luar_metrics_register(LUAR_METRIC_COUNTER,
                                          "luar_http_client_requests_total",
                                          "Outbound HTTP attempts by host and status (error: "
                                          "no answer)",
                                          labels, 2, NULL, 0, &requests, NULL) == 0) {
        char status[16];
        if (c->res->rc)
            snprintf(status, sizeof status, "error");
        else
            snprintf(status, sizeof status, "%ld", c->res->status);
        const char *values[] = {c->host, status};
        luar_metric_add(requests, values, 1);
    }
    if (duration || luar_metrics_register(LUAR_METRIC_HISTOGRAM,
                                          "luar_http_client_duration_seconds",
                                          "Outbound HTTP attempt duration by host", labels, 1,
                                          NULL, 0, &duration, NULL) == 0) {
        const char *values[] = {c->host};
        luar_metric_observe(duration, values, c->res->duration);
    }
}

static void log_attempt(struct luar_client_call *c)
{
    static const char msg[] = "http client request";
    luar_client_res_t *res = c->res;
    luar_buf_t f;
    luar_buf_init(&f, 64 * 1024);
    luar_buf_appendf(&f, "\"method\":");
    luar_buf_append_json_string(&f, c->method, strlen(c->method));
    luar_buf_t url;
    luar_buf_init(&url, 16 * 1024);
    luar_redact_url(&url, res->url ? res->url : "");
    luar_buf_puts(&f, ",\"url\":");
    luar_buf_append_json_string(&f, url.data ? url.data : "", url.len);
    luar_buf_free(&url);
    if (res->rc) {
        luar_buf_appendf(&f, ",\"status\":\"error\",\"error\":\"%s\",\"message\":", res->kind);
        luar_buf_append_json_string(&f, res->message, strlen(res->message));
    } else {
        luar_buf_appendf(&f, ",\"status\":%ld", res->status);
    }
    luar_buf_appendf(&f, ",\"duration_ms\":%.1f,\"bytes\":%zu,\"headers\":{%s}",
                     res->duration * 1000.0, res->body.len,
                     c->log_headers.data ? c->log_headers.data : "");
    if (f.data)
        luar_log_write(LUAR_LOG_DEBUG, msg, sizeof msg - 1, f.data, f.len);
    luar_buf_free(&f);
}

/* ---- the call -------------------------------------------------------------------------- */

/*
 * Easy handles are kept for the next request (after curl_easy_reset) instead of being
 * freed and allocated again for every call; the multi keeps the connections either way.
 * Loop thread only, like everything here.
 */
#define EASY_POOL_MAX 64
static CURL *easy_pool[EASY_POOL_MAX];
static int easy_pooled;

static CURL *easy_get(void)
{
    return easy_pooled ? easy_pool[--easy_pooled] : curl_easy_init();
}

static void easy_put(CURL *e)
{
    if (easy_pooled == EASY_POOL_MAX) {
        curl_easy_cleanup(e);
        return;
    }
    curl_easy_reset(e);
    easy_pool[easy_pooled++] = e;
}

static void call_free(struct luar_client_call *c)
{
    if (c->easy)
        easy_put(c->easy);
    curl_slist_free_all(c->sent);
    luar_client_res_free(c->res);
    luar_buf_free(&c->log_headers);
    if (c->multi)
        luar_client_multi_release(c->multi);
    free(c);
}

/* An attempt's end, answered by curl or by the test stub: metrics, the debug line, then
 * the response to the caller (the call is freed first: the callback may start another). */
static void finish(struct luar_client_call *c)
{
    luar_client_res_t *res = c->res;
    res->duration = (double)(uv_hrtime() - c->started_ns) / 1e9;
    count(c);
    if (luar_log_enabled(LUAR_LOG_DEBUG))
        log_attempt(c);
    c->res = NULL;
    luar_client_done_fn cb = c->cb;
    void *arg = c->arg;
    call_free(c);
    cb(arg, res);
}

void luar_client_call_finished(luar_client_call_t *c, int curl_code)
{
    if (curl_code == CURLE_OK) {
        curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &c->res->status);
    } else {
        map_error(c, (CURLcode)curl_code);
        luar_buf_reset(&c->res->body);
        free_headers(c->res);
    }
    finish(c);
}

static void stub_timer_closed(uv_handle_t *h)
{
    free(h);
}

/* The stub's answer, one loop turn after the request started (as curl's would come). */
static void on_stub_answer(uv_timer_t *t)
{
    struct luar_client_call *c = t->data;
    c->stub_timer = NULL;
    uv_close((uv_handle_t *)t, stub_timer_closed);
    g_stub.answer(g_stub.arg, c->stub_token, c->res);
    finish(c);
}

/* Answers `c` through the stub instead of curl. Returns 0 or LUAR_ENOMEM. */
static int stub_start(struct luar_client_call *c, uv_loop_t *loop)
{
    c->stub_timer = malloc(sizeof *c->stub_timer);
    if (c->stub_timer == NULL)
        return LUAR_ENOMEM;
    uv_timer_init(loop, c->stub_timer);
    c->stub_timer->data = c;
    c->started_ns = uv_hrtime();
    uv_timer_start(c->stub_timer, on_stub_answer, 0, 0);
    return 0;
}

void luar_client_cancel(luar_client_call_t *c)
{
    if (c == NULL)
        return;
    if (c->stub_timer) {
        uv_timer_stop(c->stub_timer);
        uv_close((uv_handle_t *)c->stub_timer, stub_timer_closed);
        if (g_stub.drop)
            g_stub.drop(g_stub.arg, c->stub_token);
        call_free(c);
        return;
    }
    luar_client_multi_remove(c->multi, c->easy);
    call_free(c);
}

static int valid_method(const char *m)
{
    size_t n = strlen(m);
    if (n == 0 || n >= 16)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (!isupper((unsigned char)m[i]) && m[i] != '-' && m[i] != '_')
            return 0;
    }
    return 1;
}

static int has_header(const luar_client_req_t *req, const char *name)
{
    for (size_t i = 0; i < req->nheaders; i++) {
        if (strcasecmp(req->headers[i].name, name) == 0)
            return 1;
    }
    return 0;
}

/* Builds the header list (and its redacted log form). Returns 0 or LUAR_ENOMEM/EINVAL. */
static int build_headers(struct luar_client_call *c, const luar_client_req_t *req)
{
    int debug = luar_log_enabled(LUAR_LOG_DEBUG);
    luar_buf_t line;
    luar_buf_init(&line, 64 * 1024);
    int rc = 0;
    for (size_t i = 0; i < req->nheaders && rc == 0; i++) {
        const char *name = req->headers[i].name, *value = req->headers[i].value;
        if (name[0] == '\0' || strpbrk(name, ":\r\n ") || strpbrk(value, "\r\n")) {
            rc = LUAR_EINVAL; /* no header injection */
            break;
        }
        luar_buf_reset(&line);
        if (value[0] == '\0')
            rc = luar_buf_appendf(&line, "%s;", name); /* curl's way to send an empty one */
        else
            rc = luar_buf_appendf(&line, "%s: %s", name, value);
        struct curl_slist *l = rc ? NULL : curl_slist_append(c->sent, line.data);
        if (l == NULL) {
            rc = rc ? rc : LUAR_ENOMEM;
            break;
        }
        c->sent = l;
        if (debug) {
            if (c->log_headers.len)
                luar_buf_putc(&c->log_headers, ',');
            luar_buf_append_json_string(&c->log_headers, name, strlen(name));
            luar_buf_putc(&c->log_headers, ':');
            luar_redact_header_json(&c->log_headers, name, value);
        }
    }
    luar_buf_free(&line);
    if (rc)
        return rc;
    /* No "Expect: 100-continue" round trip; no invented form content type for body=. */
    struct curl_slist *l = curl_slist_append(c->sent, "Expect:");
    if (l && req->body && !has_header(req, "content-type"))
        l = curl_slist_append(l, "Content-Type:");
    if (l == NULL)
        return LUAR_ENOMEM;
    c->sent = l;
    return 0;
}

/*
 * CURLOPT_PREREQFUNCTION, for requests with refuse_private: curl calls it once the
 * connection is made (or taken from the pool) and before it sends the request, with the
 * address it is actually connected to. Checking here rather than the URL's host name holds
 * against every DNS trick (a name resolving to 127.0.0.1, rebinding between a check and the
 * connect, a pooled connection made for another request): what is judged is the peer of
 * this very socket. No byte of the request (headers, body, signature) has left when it
 * refuses; curl then ends the transfer with CURLE_ABORTED_BY_CALLBACK, mapped to
 * kind "private_address" above.
 */
static int on_prereq(void *clientp, char *primary_ip, char *local_ip, int primary_port,
                     int local_port)
{
    struct luar_client_call *c = clientp;
    (void)local_ip;
    (void)primary_port;
    (void)local_port;
    const char *kind = NULL;
    if (luar_addr_classify(primary_ip, &kind) != 0)
        kind = "not an IP address"; /* never expected from curl: refuse rather than guess */
    if (kind == NULL)
        return CURL_PREREQFUNC_OK;
    snprintf(c->refused, sizeof c->refused, "%.*s (%s)", INET6_ADDRSTRLEN - 1, primary_ip,
             kind);
    return CURL_PREREQFUNC_ABORT;
}

static void set_host(struct luar_client_call *c, const char *url)
{
    CURLU *u = curl_url();
    char *host = NULL;
    snprintf(c->host, sizeof c->host, "unknown");
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK)
        snprintf(c->host, sizeof c->host, "%s", host);
    curl_free(host);
    curl_url_cleanup(u);
}

static long ms(double seconds, double dflt)
{
    double s = seconds > 0 ? seconds : dflt;
    long v = (long)(s * 1000.0 + 0.5);
    return v > 0 ? v : 1;
}

/* Sets the method and body options of the easy handle. */
static void set_method(CURL *e, const char *method, const luar_client_req_t *req)
{
    int is_get = strcmp(method, "GET") == 0, is_head = strcmp(method, "HEAD") == 0;
    if (is_head) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
        return;
    }
    if (is_get && req->body == NULL) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        return;
    }
    int sends_body = req->body != NULL || strcmp(method, "POST") == 0 ||
                     strcmp(method, "PUT") == 0 || strcmp(method, "PATCH") == 0;
    if (sends_body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, req->body ? req->body : "");
    }
    if (strcmp(method, "POST") != 0)
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
}

int luar_client_request(uv_loop_t *loop, const luar_client_req_t *req, luar_client_done_fn cb,
                        void *arg, luar_client_call_t **out)
{
    const char *method = req->method ? req->method : "GET";
    if (req->url == NULL || cb == NULL || !valid_method(method))
        return LUAR_EINVAL;
    int rc = LUAR_ENOMEM;
    struct luar_client_call *c = calloc(1, sizeof *c);
    if (c == NULL)
        return LUAR_ENOMEM;
    luar_buf_init(&c->log_headers, 64 * 1024);
    c->cb = cb;
    c->arg = arg;
    snprintf(c->method, sizeof c->method, "%s", method);
    set_host(c, req->url);
    c->res = calloc(1, sizeof *c->res);
    c->easy = easy_get();
    if (c->res == NULL || c->easy == NULL)
        goto fail;
    c->res->url = strdup(req->url);
    if (c->res->url == NULL)
        goto fail;
    size_t max_body = req->max_body ? req->max_body : LUAR_CLIENT_DEFAULT_MAX_BODY;
    luar_buf_init(&c->res->body, max_body);
    rc = build_headers(c, req);
    if (rc)
        goto fail;
    if (g_stub.match && g_stub.match(g_stub.arg, req, &c->stub_token)) {
        rc = stub_start(c, loop);
        if (rc) {
            if (g_stub.drop)
                g_stub.drop(g_stub.arg, c->stub_token);
            goto fail;
        }
        if (out)
            *out = c;
        return 0;
    }

    CURL *e = c->easy;
    curl_easy_setopt(e, CURLOPT_PRIVATE, c);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "luar/" LUAR_VERSION);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     ms(req->connect_timeout, LUAR_CLIENT_DEFAULT_CONNECT_TIMEOUT));
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, ms(req->timeout, LUAR_CLIENT_DEFAULT_TIMEOUT));
    /* A HEAD's Content-Length announces a body that never comes: no cap on it (curl and
     * on_header would refuse a HEAD of any resource larger than max_body). */
    c->head = strcmp(method, "HEAD") == 0;
    if (!c->head)
        curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)max_body);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->sent);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, req->insecure ? 0L : 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, req->insecure ? 0L : 2L);
    /* An explicit empty proxy: the environment's *_proxy variables do not apply. */
    curl_easy_setopt(e, CURLOPT_PROXY, req->proxy ? req->proxy : "");
    if (req->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, req->ca_file);
    if (req->cert_file)
        curl_easy_setopt(e, CURLOPT_SSLCERT, req->cert_file);
    if (req->key_file)
        curl_easy_setopt(e, CURLOPT_SSLKEY, req->key_file);
    if (req->refuse_private) {
        curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
        curl_easy_setopt(e, CURLOPT_PREREQDATA, c);
    }
    set_method(e, method, req);
    if (curl_easy_setopt(e, CURLOPT_URL, req->url) != CURLE_OK) {
        rc = LUAR_EINVAL;
        goto fail;
    }
    rc = luar_client_multi_acquire(loop, &c->multi);
    if (rc)
        goto fail;
    c->started_ns = uv_hrtime();
    rc = luar_client_multi_add(c->multi, e);
    if (rc)
        goto fail;
    if (out)
        *out = c;
    return 0;

fail:
    call_free(c);
    return rc;
}
