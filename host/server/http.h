/*
 * The HTTP/1.1 server: libuv listeners (TCP, optionally TLS through OpenSSL memory BIOs),
 * http-parser, keep-alive, pipelining (requests of a connection are answered in order, one
 * at a time), chunked request bodies, Expect: 100-continue, limits, and an access log line
 * plus the HTTP metrics for every response. Loop thread only.
 */
#ifndef LUAR_HTTP_H
#define LUAR_HTTP_H

#include "trace/trace.h"

#include <luar/plugin.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct luar_http_server luar_http_server_t;

/*
 * luar_http_header_t (name, name_len, value, value_len) is the plugin ABI's type
 * (luar/plugin.h): requests hand their headers to webhook schemes, the host's and the
 * plugins', without a copy. Names are lower-case in requests; as given in responses.
 */

/*
 * One request. Everything it points to is owned by the server and stays valid until
 * luar_http_respond() is called for it; the handler must call that exactly once, even when
 * the client has gone away (luar_http_req_aborted() then returns nonzero and the response
 * is discarded).
 */
typedef struct luar_http_req {
    const char *method; /* "GET", "POST", ... NUL-terminated */
    const char *path;   /* percent-decoded path without the query, NUL-terminated */
    size_t path_len;
    const char *query; /* raw query string without '?', NUL-terminated; "" when none */
    size_t query_len;
    luar_http_header_t *headers; /* in arrival order; names lower-cased; NUL-terminated */
    size_t nheaders;
    const char *body; /* the whole body (de-chunked), NUL-terminated; "" when none */
    size_t body_len;
    char request_id[65];   /* X-Request-Id when valid (1-64 chars of [A-Za-z0-9._:-]), else generated */
    luar_trace_t trace;    /* this request's span: child of a valid `traceparent`, else a new trace */
    char remote_addr[64];  /* peer IP address, without the port */
    const char *tls_client_subject; /* verified client certificate subject (RFC 2253), or NULL */
    int tls;                        /* nonzero when the request came over TLS */
    uint64_t start_ns;              /* uv_hrtime() when the request line arrived */
    char route[128];                /* route pattern for logs and metrics; set by the router */
    void *conn;                     /* private to the server */
} luar_http_req_t;

/* Called for every complete request; must lead to exactly one luar_http_respond(). */
typedef void (*luar_http_handler_fn)(luar_http_req_t *req, void *udata);

typedef struct luar_http_limits {
    size_t max_body;          /* bytes; 413 beyond (announced or while reading) */
    size_t max_header;        /* bytes of request line + headers; 431 beyond */
    double header_timeout;    /* seconds to receive the whole head; 408 then close */
    double body_timeout;      /* seconds to receive the whole body; 408 then close */
    double keepalive_timeout; /* idle seconds between requests before closing */
    int max_connections;      /* open connections per process; more are refused */
} luar_http_limits_t;

typedef struct luar_listen {
    const char *addr;      /* "127.0.0.1:8080", "[::1]:8080", ":8080" (all v4 addresses) */
    const char *cert;      /* PEM certificate chain; NULL: plain TCP */
    const char *key;       /* PEM private key */
    const char *client_ca; /* PEM CA bundle; when set, clients must present a certificate it signs */
} luar_listen_t;

/* Fills `limits` with the defaults of SPEC §3 (1 MiB, 16 KiB, 10 s, 30 s, 75 s, 10000). */
void luar_http_limits_default(luar_http_limits_t *limits);

/*
 * Creates a server on `loop`. Copies `limits`. Returns 0 or LUAR_ENOMEM; the server is
 * freed by luar_http_server_close().
 */
int luar_http_server_new(uv_loop_t *loop, const luar_http_limits_t *limits,
                         luar_http_handler_fn handler, void *udata, luar_http_server_t **out);

/*
 * Binds and listens on `l` (strings are copied; TLS files are loaded now). With `reuseport`
 * the socket sets SO_REUSEPORT so several worker processes can bind the same address.
 * Returns 0, LUAR_EINVAL (bad address), LUAR_ETLS (certificate/key/CA unusable; a line
 * naming the file is logged) or LUAR_EIO (bind/listen failed, e.g. address in use).
 */
int luar_http_server_listen(luar_http_server_t *srv, const luar_listen_t *l, int reuseport);

/* The port actually bound by the first listener (useful with port 0). */
int luar_http_server_port(const luar_http_server_t *srv);

/*
 * Stops accepting new connections (graceful shutdown). Idle keep-alive connections are
 * closed; connections with a request in flight are closed after their response.
 */
void luar_http_server_stop_accepting(luar_http_server_t *srv);

/* Number of requests received and not yet answered. */
size_t luar_http_server_inflight(const luar_http_server_t *srv);

/* Number of open connections. */
size_t luar_http_server_connections(const luar_http_server_t *srv);

/*
 * Closes every listener and connection and frees the server once all handles have closed;
 * then calls `done(arg)` when not NULL. Requests still waiting for luar_http_respond()
 * are marked aborted and remain valid until responded to.
 */
void luar_http_server_close(luar_http_server_t *srv, void (*done)(void *), void *arg);

/*
 * Answers `req`: writes the status line, `headers` (the caller's; copied), Content-Length,
 * Connection, X-Request-Id, and `body` (copied). Writes the access log line and updates
 * luar_http_requests_total / luar_http_request_duration_seconds with req->route (or
 * "unmatched" when empty). Afterwards `req` is invalid. Returns 0, or LUAR_ECLOSED when the
 * client was gone (nothing is written, req is still released).
 */
int luar_http_respond(luar_http_req_t *req, int status, const luar_http_header_t *headers,
                      size_t nheaders, const char *body, size_t body_len);

/* Nonzero when the client has disconnected or the server is closing. */
int luar_http_req_aborted(const luar_http_req_t *req);

/* Finds a request header by lower-case name; NULL when absent. */
const luar_http_header_t *luar_http_req_header(const luar_http_req_t *req, const char *name);

/* The reason phrase for `status` ("OK", "Not Found", ...; "Unknown" when not known). */
const char *luar_http_status_text(int status);

#endif
