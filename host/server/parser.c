/*
 * http-parser glue: copies the request line and headers into the connection's head buffer
 * (names lower-cased), enforces the header and body limits, answers Expect: 100-continue,
 * rejects request-smuggling shapes, percent-decodes the path and fills luar_http_req_t.
 */
#include "server/conn.h"

#include "common/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static luar_http_conn_t *conn_of(http_parser *p)
{
    return p->data;
}

/* Records why the request is refused; the callback then returns -1 to stop the parser. */
static int fail(luar_http_conn_t *c, int status, const char *msg)
{
    c->error_status = status;
    snprintf(c->error_msg, sizeof c->error_msg, "%s", msg);
    return -1;
}

static int head_append(luar_http_conn_t *c, const char *data, size_t len)
{
    if (luar_buf_append(&c->head, data, len) < 0)
        return fail(c, 431, "request header too large");
    return 0;
}

static int head_nul(luar_http_conn_t *c)
{
    return head_append(c, "", 1);
}

/* Resets the connection's http-parser for a new connection. */
void luar_http_parser_init(luar_http_conn_t *c)
{
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
}

/*
 * Counts head bytes against max_header and rejects obs-fold before http-parser sees
 * them. Returns 0, or -1 with c->error_status set.
 */
int luar_http_parser_scan(luar_http_conn_t *c, const char *data, size_t len)
{
    size_t max = c->srv->limits.max_header;
    const char *p = data;
    const char *end = data + len;
    while (p < end) {
        if (!c->scan_line_len) {
            char ch = *p;
            if (ch == '\n' || ch == '\r') {
                p++;
                c->head_bytes++;
                if (ch == '\n' && c->scan_lines > 0) {
                    c->scan_done = 1;
                    break;
                }
                continue;
            }
            if ((ch == ' ' || ch == '\t') && c->scan_lines > 0) {
                fail(c, 400, "obsolete line folding in request header");
                return -1;
            }
            c->scan_line_len = 1;
        }
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *stop = nl ? nl + 1 : end;
        c->head_bytes += (size_t)(stop - p);
        p = stop;
        if (nl) {
            c->scan_lines++;
            c->scan_line_len = 0;
        }
        if (max && c->head_bytes > max)
            break;
    }
    if (max && c->head_bytes > max) {
        fail(c, 431, "request header too large");
        return -1;
    }
    return 0;
}

static int on_message_begin(http_parser *p)
{
    luar_http_conn_t *c = conn_of(p);
    luar_buf_reset(&c->head);
    luar_buf_reset(&c->body);
    c->nhdrs = 0;
    c->url_len = 0;
    c->last_cb_was_value = -1;
    c->expect_continue = 0;
    c->req.start_ns = uv_hrtime();
    if (c->state == CONN_IDLE)
        c->state = CONN_HEAD;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    luar_http_conn_t *c = conn_of(p);
    c->url_len += len;
    return head_append(c, at, len);
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    luar_http_conn_t *c = conn_of(p);
    if (c->last_cb_was_value != 0) {
        /* A new header: terminate the URL or the previous value. */
        if (head_nul(c) < 0)
            return -1;
        if (c->nhdrs == c->hdrs_cap) {
            if (c->hdrs_cap >= LUAR_HTTP_MAX_HEADERS)
                return fail(c, 431, "too many request headers");
            size_t cap = c->hdrs_cap ? c->hdrs_cap * 2 : 16;
            luar_http_hdr_off_t *offs = realloc(c->hdr_offs, cap * sizeof *offs);
            if (offs == NULL)
                return fail(c, 500, "out of memory");
            c->hdr_offs = offs;
            luar_http_header_t *hdrs = realloc(c->hdrs, cap * sizeof *hdrs);
            if (hdrs == NULL)
                return fail(c, 500, "out of memory");
            c->hdrs = hdrs;
            c->hdrs_cap = cap;
        }
        luar_http_hdr_off_t *h = &c->hdr_offs[c->nhdrs++];
        h->name_off = c->head.len;
        h->name_len = 0;
        h->value_off = 0;
        h->value_len = 0;
        c->last_cb_was_value = 0;
    }
    luar_http_hdr_off_t *h = &c->hdr_offs[c->nhdrs - 1];
    size_t off = c->head.len;
    if (head_append(c, at, len) < 0)
        return -1;
    char *s = c->head.data + off;
    for (size_t i = 0; i < len; i++) {
        if (s[i] >= 'A' && s[i] <= 'Z')
            s[i] = (char)(s[i] | 0x20);
    }
    h->name_len += len;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    luar_http_conn_t *c = conn_of(p);
    if (c->nhdrs == 0)
        return fail(c, 400, "malformed request header");
    luar_http_hdr_off_t *h = &c->hdr_offs[c->nhdrs - 1];
    if (c->last_cb_was_value != 1) {
        if (head_nul(c) < 0)
            return -1;
        h->value_off = c->head.len;
        c->last_cb_was_value = 1;
    }
    h->value_len += len;
    return head_append(c, at, len);
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/*
 * Appends the percent-decoded bytes at head offset `off` plus a NUL to the head buffer.
 * Reads through offsets because appending may move the buffer.
 */
static int append_decoded(luar_http_conn_t *c, size_t off, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char ch = c->head.data[off + i];
        if (ch == '%') {
            int hi = i + 1 < len ? hexval(c->head.data[off + i + 1]) : -1;
            int lo = i + 2 < len ? hexval(c->head.data[off + i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return fail(c, 400, "invalid percent-encoding in path");
            ch = (char)(hi * 16 + lo);
            i += 2;
        }
        if (luar_buf_putc(&c->head, ch) < 0)
            return fail(c, 431, "request header too large");
    }
    return head_nul(c);
}

/* Appends a copy of head bytes [off, off+len) plus a NUL. */
static int append_copy(luar_http_conn_t *c, size_t off, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (luar_buf_putc(&c->head, c->head.data[off + i]) < 0)
            return fail(c, 431, "request header too large");
    }
    return head_nul(c);
}

/* Splits the URL (at head offset 0) into the decoded path and the raw query. */
static int split_url(luar_http_conn_t *c, size_t *path_off, size_t *query_off)
{
    size_t plen = c->url_len, poff = 0, qoff = 0, qlen = 0;
    const char *url = c->head.data;
    if (c->url_len == 0)
        return fail(c, 400, "missing request target");
    if (url[0] != '/' && !(c->url_len == 1 && url[0] == '*')) {
        struct http_parser_url u;
        http_parser_url_init(&u);
        if (http_parser_parse_url(url, c->url_len, c->parser.method == HTTP_CONNECT, &u) != 0)
            return fail(c, 400, "invalid request target");
        poff = u.field_set & (1 << UF_PATH) ? u.field_data[UF_PATH].off : 0;
        plen = u.field_set & (1 << UF_PATH) ? u.field_data[UF_PATH].len : 0;
        if (u.field_set & (1 << UF_QUERY)) {
            qoff = u.field_data[UF_QUERY].off;
            qlen = u.field_data[UF_QUERY].len;
        }
    } else {
        const char *q = memchr(url, '?', c->url_len);
        const char *h = memchr(url, '#', c->url_len);
        size_t end = h ? (size_t)(h - url) : c->url_len;
        if (q && (size_t)(q - url) < end) {
            plen = (size_t)(q - url);
            qoff = plen + 1;
            qlen = end - qoff;
        } else {
            plen = end;
        }
    }
    *path_off = c->head.len;
    if (plen == 0) {
        if (head_append(c, "/", 2) < 0)
            return -1;
    } else if (append_decoded(c, poff, plen) < 0) {
        return -1;
    }
    c->req.path_len = c->head.len - *path_off - 1;
    *query_off = c->head.len;
    if (append_copy(c, qoff, qlen) < 0)
        return -1;
    c->req.query_len = qlen;
    return 0;
}

/* Case-insensitive comparison of a counted token with a lower-case literal. */
static int token_is(const char *s, size_t len, const char *lit)
{
    size_t n = strlen(lit);
    return len == n && strncasecmp(s, lit, n) == 0;
}

/*
 * Checks the framing headers against request smuggling: one Content-Length value (repeats
 * must agree), never together with Transfer-Encoding, and a Transfer-Encoding whose final
 * (and only) chunked coding is the last one.
 */
static int check_framing(luar_http_conn_t *c)
{
    const luar_http_header_t *cl = NULL;
    int te_seen = 0, chunked = 0, last_chunked = 0, hosts = 0;
    for (size_t i = 0; i < c->nhdrs; i++) {
        const luar_http_header_t *h = &c->hdrs[i];
        if (token_is(h->name, h->name_len, "content-length")) {
            if (cl &&
                (cl->value_len != h->value_len || memcmp(cl->value, h->value, h->value_len) != 0))
                return fail(c, 400, "conflicting Content-Length headers");
            cl = h;
        } else if (token_is(h->name, h->name_len, "transfer-encoding")) {
            te_seen = 1;
            const char *v = h->value, *end = h->value + h->value_len;
            while (v < end) {
                const char *comma = memchr(v, ',', (size_t)(end - v));
                const char *tok_end = comma ? comma : end;
                while (v < tok_end && (*v == ' ' || *v == '\t'))
                    v++;
                const char *t = tok_end;
                while (t > v && (t[-1] == ' ' || t[-1] == '\t'))
                    t--;
                if (t > v) {
                    last_chunked = token_is(v, (size_t)(t - v), "chunked");
                    chunked += last_chunked;
                }
                v = comma ? comma + 1 : end;
            }
        } else if (token_is(h->name, h->name_len, "host")) {
            hosts++;
        }
    }
    if (te_seen && cl)
        return fail(c, 400, "both Content-Length and Transfer-Encoding");
    if (te_seen && (!last_chunked || chunked != 1))
        return fail(c, 400, "unsupported Transfer-Encoding (only a final chunked)");
    if (hosts > 1 || (hosts == 0 && c->parser.http_minor >= 1))
        return fail(c, 400, hosts ? "several Host headers" : "missing Host header");
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    luar_http_conn_t *c = conn_of(p);
    const luar_http_limits_t *lim = &c->srv->limits;
    if (p->http_major != 1)
        return fail(c, 505, "HTTP version not supported");
    /* Terminate the URL (no headers), the last value, or a name that had no value. */
    if (head_nul(c) < 0)
        return -1;
    if (c->last_cb_was_value == 0) {
        c->hdr_offs[c->nhdrs - 1].value_off = c->head.len;
        if (head_nul(c) < 0)
            return -1;
    }
    size_t path_off, query_off;
    if (split_url(c, &path_off, &query_off) < 0)
        return -1;
    /* The head buffer does not move any more: turn offsets into pointers. */
    const char *base = c->head.data;
    for (size_t i = 0; i < c->nhdrs; i++) {
        const luar_http_hdr_off_t *o = &c->hdr_offs[i];
        c->hdrs[i].name = base + o->name_off;
        c->hdrs[i].name_len = o->name_len;
        c->hdrs[i].value = base + o->value_off;
        c->hdrs[i].value_len = o->value_len;
    }
    luar_http_req_t *req = &c->req;
    req->method = http_method_str((enum http_method)p->method);
    req->path = base + path_off;
    req->query = base + query_off;
    req->headers = c->hdrs;
    req->nheaders = c->nhdrs;
    req->tls = c->ssl != NULL;
    req->tls_client_subject = c->tls_subject;
    memcpy(req->remote_addr, c->remote_addr, sizeof req->remote_addr);
    /* Protocol upgrades (and CONNECT) are not supported: answer, then close. */
    c->keep_alive = http_should_keep_alive(p) && !p->upgrade;
    c->http10 = p->http_minor == 0;
    luar_http_request_id(c);
    if (check_framing(c) < 0)
        return -1;

    int has_body = (p->flags & F_CHUNKED) || ((p->flags & F_CONTENTLENGTH) && p->content_length);
    if ((p->flags & F_CONTENTLENGTH) && lim->max_body && p->content_length > lim->max_body) {
        snprintf(c->error_msg, sizeof c->error_msg, "body too large (limit %zu bytes)",
                 lim->max_body);
        c->error_status = 413;
        return -1;
    }
    const luar_http_header_t *expect = luar_http_req_header(req, "expect");
    if (expect && !c->http10) {
        if (!token_is(expect->value, expect->value_len, "100-continue"))
            return fail(c, 417, "unsupported expectation");
        if (has_body)
            luar_http_send_continue(c);
    }
    if (has_body)
        c->state = CONN_BODY;
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    luar_http_conn_t *c = conn_of(p);
    int rc = luar_buf_append(&c->body, at, len);
    if (rc == LUAR_ETOOBIG) {
        snprintf(c->error_msg, sizeof c->error_msg, "body too large (limit %zu bytes)",
                 c->srv->limits.max_body);
        c->error_status = 413;
        return -1;
    }
    if (rc < 0)
        return fail(c, 500, "out of memory");
    return 0;
}

static int on_message_complete(http_parser *p)
{
    luar_http_conn_t *c = conn_of(p);
    c->req.body = c->body.data ? c->body.data : "";
    c->req.body_len = c->body.len;
    c->scan_done = 0;
    c->scan_lines = 0;
    c->scan_line_len = 0;
    c->head_bytes = 0;
    http_parser_pause(p, 1);
    return 0;
}

const http_parser_settings luar_http_parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};
