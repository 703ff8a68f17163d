/*
 * One client connection: reading, the parse/dispatch loop, writing, timers, keep-alive and
 * pipelining.
 *
 * Design notes (what the hot path does, for whoever benchmarks it against nginx):
 * - Reads land in one 64 KiB buffer owned by the server and shared by every connection;
 *   http-parser runs straight over it. Everything a request keeps (method, URL, headers,
 *   body) is copied into per-connection buffers (head, body) that are reset, not freed,
 *   between requests, so a keep-alive connection does no malloc per request once warm.
 *   Only bytes that arrive while a request is in flight (pipelining) are copied into the
 *   connection's `in` buffer; reading pauses when more than 64 KiB wait there.
 * - One request at a time: the parser is paused in on_message_complete, the handler runs,
 *   and parsing resumes after luar_http_respond(). Responses are therefore in order.
 *   A synchronous respond inside the handler does not recurse: the dispatch loop notices
 *   the connection is idle again and parses the next buffered request.
 * - A response is built in the connection's reusable `out` buffer (status line, headers,
 *   body) and handed to the kernel with one uv_try_write(); only when the kernel takes
 *   part of it is the rest copied into a uv_write request. No syscalls other than
 *   read/write per request: the remote address and TCP_NODELAY are set once per
 *   connection, timers are libuv heap operations, the Date header is cached per second,
 *   and the access log is buffered by log.c.
 * - One uv_timer per connection, re-armed only when the phase changes (idle, head, body,
 *   linger). A request that arrives in one read never arms the head timer.
 * - A closing connection shuts down its write side and keeps reading (discarding) until
 *   EOF or 2 s, so an error response is not destroyed by a TCP reset on unread input.
 */
#include "server/conn.h"

#include "common/error.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>

typedef struct write_req {
    uv_write_t req;
    luar_http_conn_t *conn;
    size_t len;
    char data[];
} write_req_t;

static void process(luar_http_conn_t *c);
static void arm(luar_http_conn_t *c);

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    luar_http_conn_t *c = handle->data;
    buf->base = c->srv->rbuf;
    buf->len = sizeof c->srv->rbuf;
}

static void reading_start(luar_http_conn_t *c);

static void on_close(uv_handle_t *handle)
{
    luar_http_conn_t *c = handle->data;
    if (--c->handles_open > 0)
        return;
    luar_http_server_t *srv = c->srv;
    c->srv = NULL;
    if (c->inflight)
        srv->inflight--;
    luar_http_server_handle_closed(srv);
    if (!c->inflight)
        luar_http_conn_free(c);
}

/* Frees `c` and everything it owns; its handles must have closed. See conn.h. */
void luar_http_conn_free(luar_http_conn_t *c)
{
    luar_buf_free(&c->in);
    luar_buf_free(&c->head);
    luar_buf_free(&c->body);
    luar_buf_free(&c->out);
    luar_buf_free(&c->scratch);
    free(c->hdr_offs);
    free(c->hdrs);
    luar_tls_conn_free(c);
    free(c);
}

/*
 * Starts closing both handles; the connection is freed in on_close (or by the late
 * luar_http_respond of its in-flight request). Idempotent.
 */
void luar_http_conn_close(luar_http_conn_t *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    if (c->inflight)
        c->aborted = 1;
    luar_http_server_t *srv = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->next = c->prev = NULL;
    srv->nconns--;
    uv_close((uv_handle_t *)&c->tcp, on_close);
    uv_close((uv_handle_t *)&c->timer, on_close);
}

static void on_timer(uv_timer_t *timer)
{
    luar_http_conn_t *c = timer->data;
    luar_http_timer_kind_t kind = c->timer_kind;
    c->timer_kind = TIMER_NONE;
    switch (kind) {
    case TIMER_HEAD:
    case TIMER_BODY:
        if (c->head_bytes > 0 || kind == TIMER_BODY) {
            luar_http_respond_error(c, 408, "request timeout");
            return;
        }
        luar_http_conn_close(c);
        return;
    default:
        luar_http_conn_close(c);
        return;
    }
}

static void timer_set(luar_http_conn_t *c, luar_http_timer_kind_t kind, double seconds)
{
    if (c->timer_kind == kind)
        return;
    c->timer_kind = kind;
    if (kind == TIMER_NONE) {
        uv_timer_stop(&c->timer);
        return;
    }
    uint64_t ms = seconds > 0 ? (uint64_t)(seconds * 1000.0 + 0.5) : 1;
    uv_timer_start(&c->timer, on_timer, ms ? ms : 1, 0);
}

/* Arms the timer of the current phase and pauses or resumes reading. */
static void arm(luar_http_conn_t *c)
{
    if (c->closing)
        return;
    const luar_http_limits_t *lim = &c->srv->limits;
    switch (c->state) {
    case CONN_IDLE:
        timer_set(c, TIMER_IDLE, c->nrequests ? lim->keepalive_timeout : lim->header_timeout);
        break;
    case CONN_HEAD:
        timer_set(c, TIMER_HEAD, lim->header_timeout);
        break;
    case CONN_BODY:
        timer_set(c, TIMER_BODY, lim->body_timeout);
        break;
    case CONN_HANDLER:
        timer_set(c, TIMER_NONE, 0);
        break;
    case CONN_LINGER:
        return;
    }
    if (c->in.len - c->in_off > LUAR_HTTP_PENDING_PAUSE) {
        if (c->reading) {
            uv_read_stop((uv_stream_t *)&c->tcp);
            c->reading = 0;
        }
    } else if (!c->reading && !c->peer_eof) {
        reading_start(c);
    }
}

static void on_write(uv_write_t *req, int status)
{
    write_req_t *w = (write_req_t *)req;
    luar_http_conn_t *c = w->conn;
    c->write_queued -= w->len;
    free(w);
    if (c->closing)
        return;
    if (status < 0) {
        if (c->inflight)
            c->aborted = 1;
        luar_http_conn_close(c);
        return;
    }
    if (c->write_queued < LUAR_HTTP_WRITE_PAUSE && c->in_off < c->in.len &&
        (c->state == CONN_IDLE || c->state == CONN_HEAD || c->state == CONN_BODY))
        process(c);
}

/*
 * Writes with one uv_try_write; copies only what the kernel did not take into a
 * uv_write request. The caller keeps `data`. Returns 0, LUAR_ECLOSED, LUAR_EIO or LUAR_ENOMEM.
 */
int luar_http_conn_write_raw(luar_http_conn_t *c, const char *data, size_t len)
{
    if (c->closing)
        return LUAR_ECLOSED;
    size_t off = 0;
    if (c->write_queued == 0) {
        uv_buf_t b = uv_buf_init((char *)data, (unsigned int)len);
        int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (n >= 0) {
            off = (size_t)n;
        } else if (n != UV_EAGAIN) {
            luar_http_conn_close(c);
            return LUAR_EIO;
        }
        if (off == len)
            return 0;
    }
    size_t rest = len - off;
    write_req_t *w = malloc(sizeof *w + rest);
    if (w == NULL) {
        luar_http_conn_close(c);
        return LUAR_ENOMEM;
    }
    w->conn = c;
    w->len = rest;
    memcpy(w->data, data + off, rest);
    uv_buf_t b = uv_buf_init(w->data, (unsigned int)rest);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) < 0) {
        free(w);
        luar_http_conn_close(c);
        return LUAR_EIO;
    }
    c->write_queued += rest;
    return 0;
}

/*
 * Sends plaintext, through TLS when the connection has it. The caller keeps `data`.
 * Returns 0 or a negative LUAR_E* code.
 */
int luar_http_conn_send(luar_http_conn_t *c, const char *data, size_t len)
{
    if (c->ssl)
        return luar_tls_conn_write(c, data, len);
    return luar_http_conn_write_raw(c, data, len);
}

/* Resets the per-request state so the next request can be parsed. */
static void reset_request(luar_http_conn_t *c)
{
    c->state = CONN_IDLE;
    c->inflight = 0;
    c->close_after = 0;
    c->error_status = 0;
    luar_buf_reset(&c->head);
    /* A large body's storage is not kept around for the life of the connection. */
    if (c->body.cap > 64 * 1024)
        luar_buf_free(&c->body);
    else
        luar_buf_reset(&c->body);
    memset(&c->req, 0, offsetof(luar_http_req_t, conn));
}

/* Calls the handler for the request the parser just completed. */
static void dispatch(luar_http_conn_t *c)
{
    c->state = CONN_HANDLER;
    c->inflight = 1;
    c->nrequests++;
    c->srv->inflight++;
    timer_set(c, TIMER_NONE, 0);
    c->srv->handler(&c->req, c->srv->udata);
}

/*
 * Parses `data` and dispatches the requests it completes, one at a time, until the data
 * is used up or a request is in flight. Returns the number of bytes consumed.
 */
static size_t run(luar_http_conn_t *c, const char *data, size_t len)
{
    size_t off = 0;
    c->in_dispatch++;
    while (off < len) {
        if (c->closing || c->state == CONN_HANDLER || c->state == CONN_LINGER ||
            c->write_queued >= LUAR_HTTP_WRITE_PAUSE)
            break;
        if (c->state == CONN_IDLE)
            c->state = CONN_HEAD;
        if (!c->scan_done && luar_http_parser_scan(c, data + off, len - off) < 0) {
            luar_http_respond_error(c, c->error_status, c->error_msg);
            break;
        }
        size_t n =
            http_parser_execute(&c->parser, &luar_http_parser_settings, data + off, len - off);
        off += n;
        if (c->error_status) {
            luar_http_respond_error(c, c->error_status, c->error_msg);
            break;
        }
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (e == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
            dispatch(c);
            continue;
        }
        if (e != HPE_OK) {
            int status = e == HPE_HEADER_OVERFLOW ? 431 : 400;
            const char *msg;
            switch (e) {
            case HPE_HEADER_OVERFLOW:
                msg = "request header too large";
                break;
            case HPE_UNEXPECTED_CONTENT_LENGTH:
                msg = "conflicting Content-Length or Transfer-Encoding headers";
                break;
            case HPE_INVALID_TRANSFER_ENCODING:
                msg = "unsupported Transfer-Encoding";
                break;
            case HPE_INVALID_CHUNK_SIZE:
                msg = "invalid chunk size";
                break;
            case HPE_INVALID_CONTENT_LENGTH:
                msg = "invalid Content-Length";
                break;
            default:
                msg = http_errno_description(e);
                break;
            }
            luar_http_respond_error(c, status, msg);
            break;
        }
    }
    c->in_dispatch--;
    return off;
}

/* Appends pending input; closes the connection when it passes the cap. */
static int buffer_input(luar_http_conn_t *c, const char *data, size_t len)
{
    if (c->in_off > 0 && c->in_off == c->in.len) {
        luar_buf_reset(&c->in);
        c->in_off = 0;
    } else if (c->in_off > 0 && (c->in_off > c->in.len / 2 || c->in.len + len > c->in.max)) {
        memmove(c->in.data, c->in.data + c->in_off, c->in.len - c->in_off);
        c->in.len -= c->in_off;
        c->in.data[c->in.len] = '\0';
        c->in_off = 0;
    }
    if (luar_buf_append(&c->in, data, len) < 0) {
        luar_http_conn_close(c);
        return -1;
    }
    return 0;
}

/* Parses and dispatches what is buffered in `in`. */
static void process(luar_http_conn_t *c)
{
    if (c->in_dispatch || c->closing)
        return;
    while (c->in_off < c->in.len && !c->closing) {
        size_t before = c->in_off;
        size_t n = run(c, c->in.data + c->in_off, c->in.len - c->in_off);
        c->in_off += n;
        if (c->in_off == before || c->state == CONN_HANDLER || c->state == CONN_LINGER)
            break;
    }
    if (c->closing)
        return;
    if (c->in_off == c->in.len) {
        luar_buf_reset(&c->in);
        c->in_off = 0;
    }
    if (c->peer_eof && c->state != CONN_HANDLER && c->state != CONN_LINGER &&
        c->in_off == c->in.len) {
        luar_http_conn_finish(c);
        return;
    }
    arm(c);
}

/*
 * Parses received plaintext straight from `data` (the caller keeps it) unless bytes are
 * already waiting, in which case they are appended to `in` first.
 */
void luar_http_conn_feed(luar_http_conn_t *c, const char *data, size_t len)
{
    if (c->closing || c->state == CONN_LINGER)
        return;
    if (c->in_off < c->in.len || c->state == CONN_HANDLER ||
        c->write_queued >= LUAR_HTTP_WRITE_PAUSE) {
        if (buffer_input(c, data, len) == 0)
            process(c);
        return;
    }
    size_t n = run(c, data, len);
    if (c->closing || c->state == CONN_LINGER)
        return;
    if (n < len && buffer_input(c, data + n, len - n) < 0)
        return;
    arm(c);
}

/*
 * Handles the client's EOF: a request in flight is still answered, then the connection
 * closes; a partial request is dropped.
 */
void luar_http_conn_eof(luar_http_conn_t *c)
{
    if (c->closing)
        return;
    c->peer_eof = 1;
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
    if (c->state == CONN_LINGER) {
        luar_http_conn_close(c);
        return;
    }
    if (c->state == CONN_HANDLER)
        return; /* answer it, then close */
    if (c->in_off < c->in.len && c->write_queued >= LUAR_HTTP_WRITE_PAUSE)
        return; /* buffered requests are answered once the writes drain */
    if (c->write_queued > 0)
        luar_http_conn_finish(c);
    else
        luar_http_conn_close(c);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    luar_http_conn_t *c = stream->data;
    if (nread > 0) {
        if (c->state == CONN_LINGER)
            return;
        if (c->ssl)
            luar_tls_conn_input(c, buf->base, (size_t)nread);
        else
            luar_http_conn_feed(c, buf->base, (size_t)nread);
    } else if (nread == UV_EOF) {
        luar_http_conn_eof(c);
    } else if (nread < 0) {
        luar_http_conn_close(c);
    }
}

static void reading_start(luar_http_conn_t *c)
{
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
        c->reading = 1;
    else
        luar_http_conn_close(c);
}

/* Returns nonzero when the response being written must carry Connection: close. */
int luar_http_conn_will_close(const luar_http_conn_t *c)
{
    return c->close_after || !c->keep_alive || c->srv == NULL || c->srv->stopping ||
           c->srv->closing || (c->peer_eof && c->in_off == c->in.len);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    luar_http_conn_t *c = req->data;
    if (c->closing)
        return;
    if (status < 0 || c->peer_eof) {
        luar_http_conn_close(c);
        return;
    }
    if (!c->reading)
        reading_start(c);
    c->timer_kind = TIMER_LINGER;
    uv_timer_start(&c->timer, on_timer, (uint64_t)(LUAR_HTTP_LINGER_SECONDS * 1000), 0);
}

/* Graceful close after the final response: close_notify, shutdown, linger. */
void luar_http_conn_finish(luar_http_conn_t *c)
{
    if (c->closing || c->state == CONN_LINGER)
        return;
    c->state = CONN_LINGER;
    timer_set(c, TIMER_NONE, 0);
    if (c->ssl)
        luar_tls_conn_shutdown(c);
    if (c->closing)
        return;
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) < 0)
        luar_http_conn_close(c);
}

/*
 * Called once the response of the in-flight request is queued: closes, or resets
 * the connection for the next request and parses what is buffered.
 */
void luar_http_conn_request_done(luar_http_conn_t *c)
{
    if (c->closing) {
        if (c->srv && c->inflight)
            c->srv->inflight--;
        c->inflight = 0;
        if (c->handles_open == 0)
            luar_http_conn_free(c);
        return;
    }
    if (c->srv && c->inflight)
        c->srv->inflight--;
    c->inflight = 0;
    if (c->close_after) {
        luar_http_conn_finish(c);
        return;
    }
    reset_request(c);
    if (c->in_dispatch)
        return; /* the dispatch loop goes on with the next buffered request */
    if (c->in_off < c->in.len)
        process(c);
    else
        arm(c);
}

/* stop_accepting: closes the connection now only when it is idle. */
void luar_http_conn_stop(luar_http_conn_t *c)
{
    if (c->state == CONN_IDLE && c->in_off == c->in.len && c->write_queued == 0)
        luar_http_conn_close(c);
}

/*
 * Accepts one connection from `l`. Returns 0 or a negative LUAR_E* code; on failure the
 * socket is closed (an allocation failure leaves the pending socket to the caller).
 */
int luar_http_conn_accept(luar_http_listener_t *l)
{
    luar_http_server_t *srv = l->srv;
    luar_http_conn_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return LUAR_ENOMEM;
    c->srv = srv;
    c->tcp.data = c;
    c->timer.data = c;
    uv_tcp_init(srv->loop, &c->tcp);
    uv_timer_init(srv->loop, &c->timer);
    c->handles_open = 2;
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->nconns++;
    srv->handles++;
    if (uv_accept((uv_stream_t *)&l->tcp, (uv_stream_t *)&c->tcp) < 0) {
        luar_http_conn_close(c);
        return LUAR_EIO;
    }
    uv_tcp_nodelay(&c->tcp, 1);

    struct sockaddr_storage ss;
    int sslen = sizeof ss;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sslen) == 0) {
        if (ss.ss_family == AF_INET6)
            uv_ip6_name((struct sockaddr_in6 *)&ss, c->remote_addr, sizeof c->remote_addr);
        else
            uv_ip4_name((struct sockaddr_in *)&ss, c->remote_addr, sizeof c->remote_addr);
    }
    size_t max_header = srv->limits.max_header ? srv->limits.max_header : 16384;
    luar_buf_init(&c->in, LUAR_HTTP_PENDING_PAUSE + 2 * LUAR_HTTP_READ_SIZE);
    luar_buf_init(&c->head, 2 * max_header + 1024);
    luar_buf_init(&c->body, srv->limits.max_body);
    luar_buf_init(&c->out, 0);
    luar_buf_init(&c->scratch, 0);
    c->req.conn = c;
    luar_http_parser_init(c);
    if (l->tls && luar_tls_conn_init(c, l->tls) < 0) {
        luar_http_conn_close(c);
        return LUAR_EIO; /* the socket was accepted: nothing left for the caller */
    }
    c->state = CONN_IDLE;
    arm(c);
    return 0;
}
