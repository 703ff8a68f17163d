/*
 * Internals of the HTTP server shared by listener.c, conn.c, parser.c, response.c and
 * tls.c. Nothing here is part of the server's public contract (server/http.h).
 * Loop thread only.
 */
#ifndef LUAR_SERVER_CONN_H
#define LUAR_SERVER_CONN_H

#include "common/buf.h"
#include "server/http.h"

#include <http_parser.h>
#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define LUAR_HTTP_MAX_LISTENERS 8
#define LUAR_HTTP_READ_SIZE (64 * 1024)
/* Pipelined bytes buffered while a request is in flight before reading pauses. */
#define LUAR_HTTP_PENDING_PAUSE (64 * 1024)
/* Response bytes queued in the kernel-refused write queue before parsing pauses. */
#define LUAR_HTTP_WRITE_PAUSE (256 * 1024)
/* Seconds a closing connection keeps reading (and discarding) before it is closed. */
#define LUAR_HTTP_LINGER_SECONDS 2.0
#define LUAR_HTTP_MAX_HEADERS 256

typedef struct luar_http_conn luar_http_conn_t;

/* One listening socket: a TCP handle plus its optional TLS context. */
typedef struct luar_http_listener {
    uv_tcp_t tcp;
    luar_http_server_t *srv;
    SSL_CTX *tls; /* NULL for plain TCP; owned */
    int port;
    int open; /* the handle has been initialised and not yet closed */
} luar_http_listener_t;

/*
 * The server: its listeners, the list of open connections, counters, and one read buffer
 * shared by every connection (reads are consumed before the read callback returns).
 */
struct luar_http_server {
    uv_loop_t *loop;
    luar_http_limits_t limits;
    luar_http_handler_fn handler;
    void *udata;
    luar_http_listener_t listeners[LUAR_HTTP_MAX_LISTENERS];
    size_t nlisteners;
    luar_http_conn_t *conns; /* doubly linked through conn->next/prev */
    size_t nconns;
    size_t inflight;
    size_t handles; /* open handles (listeners, connections, refused sockets) */
    int stopping;   /* stop_accepting was called */
    int closing;    /* close was called */
    void (*done)(void *);
    void *done_arg;
    char rbuf[LUAR_HTTP_READ_SIZE];   /* shared read buffer (ciphertext or plaintext) */
    char tlsbuf[LUAR_HTTP_READ_SIZE]; /* shared decrypted-plaintext buffer */
    char tlsout[LUAR_HTTP_READ_SIZE]; /* shared ciphertext buffer for writes */
};

typedef enum {
    CONN_IDLE,    /* waiting for the first byte of a request */
    CONN_HEAD,    /* receiving a request head */
    CONN_BODY,    /* receiving a request body */
    CONN_HANDLER, /* request dispatched; waiting for luar_http_respond */
    CONN_LINGER,  /* final response queued; draining input until EOF or the linger timer */
} luar_http_conn_state_t;

typedef enum {
    TIMER_NONE,
    TIMER_IDLE,
    TIMER_HEAD,
    TIMER_BODY,
    TIMER_LINGER,
} luar_http_timer_kind_t;

/* One header while it is being parsed: offsets into conn->head (which may move). */
typedef struct luar_http_hdr_off {
    size_t name_off, name_len, value_off, value_len;
} luar_http_hdr_off_t;

/*
 * One client connection. Allocated on accept; freed once both its handles have closed and
 * no request of it is waiting for luar_http_respond(). All buffers are reused across the
 * requests of the connection.
 */
struct luar_http_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    luar_http_server_t *srv; /* NULL once the handles have closed */
    luar_http_conn_t *next, *prev;
    http_parser parser;
    luar_http_conn_state_t state;
    luar_http_timer_kind_t timer_kind;

    luar_buf_t in;      /* plaintext received and not yet parsed */
    size_t in_off;      /* parse position in `in` */
    luar_buf_t head;    /* method/url/header strings of the current request */
    luar_buf_t body;    /* de-chunked body of the current request */
    luar_buf_t out;     /* response being built / ciphertext being flushed */
    luar_buf_t scratch; /* access-log fields */

    luar_http_hdr_off_t *hdr_offs;
    luar_http_header_t *hdrs;
    size_t nhdrs, hdrs_cap;
    size_t url_len;
    int last_cb_was_value;

    /* head scanner: byte count of the head and obs-fold / end-of-head detection */
    size_t head_bytes;
    int scan_line_len; /* nonzero once the current line has content */
    int scan_lines;    /* non-empty lines seen (the request line is the first) */
    int scan_done;

    int error_status;   /* set by parser callbacks to reject the request */
    char error_msg[96]; /* message for the JSON error body */
    int expect_continue;
    int keep_alive;   /* the current request allows keep-alive */
    int http10;       /* the current request is HTTP/1.0 */
    int closing;      /* the handles are being closed */
    int handles_open; /* 0..2 */
    int aborted;      /* the client went away or the server closed */
    int close_after;  /* close once the current response is written */
    int peer_eof;     /* the client sent EOF; answer what was received, then close */
    int reading;      /* uv_read_start is active */
    int in_dispatch;  /* inside the parse/dispatch loop (re-entrancy guard) */
    int inflight;     /* a request is waiting for luar_http_respond */
    uint64_t nrequests;
    size_t write_queued; /* bytes handed to uv_write and not yet completed */

    uv_shutdown_t shutdown_req;
    SSL *ssl;          /* NULL for plain TCP */
    BIO *rbio, *wbio;  /* memory BIOs owned by ssl */
    int tls_ready;     /* handshake complete */
    char *tls_subject; /* verified client subject (RFC 2253), owned */

    char remote_addr[64];
    luar_http_req_t req;
};

/* --- listener.c --- */

/* Marks one handle of the server closed; frees the server when the last one closes. */
void luar_http_server_handle_closed(luar_http_server_t *srv);

/* --- conn.c --- */

/*
 * Accepts one pending connection from `listener` into a new connection and starts
 * reading. Returns 0, or a negative LUAR_E* code (the socket is then closed).
 */
int luar_http_conn_accept(luar_http_listener_t *listener);

/* Starts closing the connection's handles (idempotent); an in-flight request is aborted. */
void luar_http_conn_close(luar_http_conn_t *c);

/* Closes an idle connection (stop_accepting); others close after their response. */
void luar_http_conn_stop(luar_http_conn_t *c);

/*
 * Queues `len` bytes of plaintext for the client (encrypted first on TLS). The caller
 * keeps `data`. Returns 0 or a negative LUAR_E* code (the connection is then closing).
 */
int luar_http_conn_send(luar_http_conn_t *c, const char *data, size_t len);

/* Queues `len` raw bytes on the socket. The caller keeps `data`. Returns 0 or LUAR_EIO. */
int luar_http_conn_write_raw(luar_http_conn_t *c, const char *data, size_t len);

/*
 * Called by luar_http_respond after the response is queued: closes the connection or
 * resets it for the next request and parses what is already buffered.
 */
void luar_http_conn_request_done(luar_http_conn_t *c);

/*
 * Feeds `len` bytes of received plaintext: parses and dispatches requests, or buffers the
 * bytes while a request is in flight. The caller keeps `data`.
 */
void luar_http_conn_feed(luar_http_conn_t *c, const char *data, size_t len);

/* The client sent EOF (or a TLS close_notify). */
void luar_http_conn_eof(luar_http_conn_t *c);

/* Nonzero when the connection will close after the response to the current request. */
int luar_http_conn_will_close(const luar_http_conn_t *c);

/*
 * Queues the final response's end: TLS close_notify, shutdown of the write side, then
 * reads and discards input until EOF or the linger timer, and closes.
 */
void luar_http_conn_finish(luar_http_conn_t *c);

/* Frees a connection whose handles have closed and whose request (if any) was answered. */
void luar_http_conn_free(luar_http_conn_t *c);

/* --- parser.c --- */

/* The http-parser callbacks (one table for all connections). */
extern const http_parser_settings luar_http_parser_settings;

/* Prepares the connection's parser for a new connection. */
void luar_http_parser_init(luar_http_conn_t *c);

/*
 * Scans head bytes before they reach http-parser: counts them against max_header and
 * rejects obs-fold. Returns 0, or sets c->error_status and returns -1.
 */
int luar_http_parser_scan(luar_http_conn_t *c, const char *data, size_t len);

/* --- response.c --- */

/*
 * Answers the request being received with a server-generated JSON error
 * `{"error":"<msg>"}` and closes the connection after it. `msg` is copied.
 */
void luar_http_respond_error(luar_http_conn_t *c, int status, const char *msg);

/* Writes the interim "HTTP/1.1 100 Continue" response. */
void luar_http_send_continue(luar_http_conn_t *c);

/* Fills c->req.request_id from X-Request-Id when valid, else with a generated id. */
void luar_http_request_id(luar_http_conn_t *c);

/* Registers the HTTP metrics (idempotent) and seeds the request-id generator. */
int luar_http_response_init(void);

/* --- tls.c --- */

/*
 * Creates a server TLS context from PEM files (TLS >= 1.2; client certificates required
 * and verified against `client_ca` when not NULL). Returns 0 or LUAR_ETLS (a line naming
 * the file is logged). The caller owns *out (SSL_CTX_free).
 */
int luar_tls_ctx_new(const char *cert, const char *key, const char *client_ca, SSL_CTX **out);

/* Attaches a server-side SSL with memory BIOs to `c`. Returns 0 or LUAR_ENOMEM. */
int luar_tls_conn_init(luar_http_conn_t *c, SSL_CTX *ctx);

/*
 * Takes `len` bytes of ciphertext from the socket: drives the handshake, flushes what
 * OpenSSL wants to send, and feeds the decrypted plaintext to luar_http_conn_feed.
 * A handshake failure logs one line and closes the connection.
 */
void luar_tls_conn_input(luar_http_conn_t *c, const char *data, size_t len);

/* Encrypts `len` bytes and queues the ciphertext. Returns 0 or LUAR_ETLS/LUAR_EIO. */
int luar_tls_conn_write(luar_http_conn_t *c, const char *data, size_t len);

/* Queues a close_notify alert (best effort). */
void luar_tls_conn_shutdown(luar_http_conn_t *c);

/* Frees the SSL object and the client subject. */
void luar_tls_conn_free(luar_http_conn_t *c);

#endif
