/*
 * The outbound HTTP client: libcurl's multi interface driven by the libuv loop (socket and
 * timer callbacks, no polling thread). One CURLM per loop holds the connection pool, so
 * every request of a process's loop reuses connections (and HTTP/2 streams).
 *
 * luar_client_request() starts one attempt and calls back once with the response or the
 * transport error; luar.http (host/lua/mod_http_client.c) bridges it to Lua coroutines and
 * plugins will reach it through the host API. Each attempt is counted in
 * luar_http_client_requests_total{host,status} and luar_http_client_duration_seconds{host}
 * and logged at debug level with secrets redacted (host/client/redact.h).
 *
 * Loop thread only, like libuv.
 */
#ifndef LUAR_CLIENT_H
#define LUAR_CLIENT_H

#include "common/buf.h"

#include <stddef.h>
#include <uv.h>

#define LUAR_CLIENT_DEFAULT_MAX_BODY (10u * 1024 * 1024)
#define LUAR_CLIENT_DEFAULT_CONNECT_TIMEOUT 10.0
#define LUAR_CLIENT_DEFAULT_TIMEOUT 30.0
#define LUAR_CLIENT_MAX_HEADER_BYTES (256u * 1024)

/* One header line; both strings are NUL-terminated. */
typedef struct luar_client_header {
    const char *name;
    const char *value;
} luar_client_header_t;

/*
 * What to send. Zero means the default for every numeric field, so a zeroed struct with a
 * method and a URL is a valid request with TLS verification on. Every pointer stays owned
 * by the caller and need only live until luar_client_request() returns (curl copies).
 */
typedef struct luar_client_req {
    const char *method;                  /* "GET", "POST", ...; NULL: GET */
    const char *url;                     /* absolute http:// or https:// URL */
    const luar_client_header_t *headers; /* nheaders entries, sent as given */
    size_t nheaders;
    const char *body; /* NULL: no body */
    size_t body_len;
    double connect_timeout; /* seconds; 0: LUAR_CLIENT_DEFAULT_CONNECT_TIMEOUT */
    double timeout;         /* whole attempt, seconds; 0: LUAR_CLIENT_DEFAULT_TIMEOUT */
    size_t max_body;        /* response body cap; 0: LUAR_CLIENT_DEFAULT_MAX_BODY */
    const char *ca_file;    /* PEM bundle trusted instead of the system's; NULL: system */
    const char *cert_file;  /* client certificate (PEM) for mTLS; NULL: none */
    const char *key_file;   /* its private key (PEM); NULL: in cert_file */
    const char *proxy;      /* "http://host:port", "socks5://..."; NULL: none (env ignored) */
    int insecure;           /* nonzero: do not verify the server's certificate and name */
    int refuse_private;     /* nonzero: refuse to talk to a loopback, private, link-local or
                               other non-public address (client/addr.h), judged on the
                               address curl actually connected to, so DNS cannot smuggle one
                               in; fails with kind "private_address" before any byte of the
                               request is sent (webhook delivery, SPEC §8) */
} luar_client_req_t;

/*
 * The outcome of an attempt. On success `rc` is 0 and status/headers/body are set (an HTTP
 * error status is a response, not an error). On failure `rc` is a LUAR_E* code, `kind` one
 * of "timeout", "connect" (refused, DNS, reset), "tls", "too_large", "invalid",
 * "private_address" (refuse_private) or "canceled", and `message` a readable line. Header
 * names are lower-case.
 */
typedef struct luar_client_res {
    int rc;
    const char *kind; /* static string; NULL when rc is 0 */
    char message[256];
    long status;
    luar_client_header_t *headers; /* nheaders entries, owned by the response */
    size_t nheaders;
    luar_buf_t body; /* capped at the request's max_body */
    double duration; /* seconds from start to completion */
    double retry_after; /* seconds, for errors that know it (breaker_open, rate_limited) */
    char *url;       /* the URL requested (for logs), owned by the response */
} luar_client_res_t;

typedef struct luar_client_call luar_client_call_t;

/*
 * Completion callback, called once per started request from the loop (never from inside
 * luar_client_request()). It takes ownership of `res` (free it with
 * luar_client_res_free). It may start new requests; the call it completes is gone.
 */
typedef void (*luar_client_done_fn)(void *arg, luar_client_res_t *res);

/*
 * Starts one request on `loop`'s shared multi handle. On success returns 0, stores the
 * call in `*out` (may be NULL when the caller will never cancel) and `cb(arg, res)` runs
 * later exactly once, unless luar_client_cancel() is called first. Fails synchronously
 * with LUAR_EINVAL (no URL, bad option), or LUAR_ENOMEM; `cb` is then never called.
 * The caller keeps `req` and everything it points to.
 */
int luar_client_request(uv_loop_t *loop, const luar_client_req_t *req, luar_client_done_fn cb,
                        void *arg, luar_client_call_t **out);

/*
 * Stops a call whose callback has not run yet and frees it; its callback will not run.
 * The connection it used is closed, never returned to the pool half-read.
 */
void luar_client_cancel(luar_client_call_t *call);

/* Frees a response handed to a luar_client_done_fn. NULL is ignored. */
void luar_client_res_free(luar_client_res_t *res);

/* Returns the value of header `name` (lower-case) in `res`, or NULL. */
const char *luar_client_res_header(const luar_client_res_t *res, const char *name);

/* ---- test doubles (`luar test`'s t.http) ------------------------------------------------ */

/*
 * A stub sees every attempt at its start, before curl does: this is the one entry point of
 * every outbound request (luar.http with its retries, breaker, cache and rate limit above
 * it; plugins' host->http_request; webhook delivery), so all of them meet the stubs.
 *
 * match(arg, req, &token) is called inside luar_client_request() and must not run Lua: it
 * returns 0 to let the request go to the network, or 1 to answer it itself. Then, from the
 * loop (never inside luar_client_request), answer(arg, token, res) fills `res` (status,
 * headers as malloc'd lower-case strings, body; or rc, kind and message for an error)
 * just before the caller's callback runs; drop(arg, token) instead when the call was
 * cancelled first. Loop thread only; NULL removes the stub.
 */
typedef struct luar_client_stub {
    int (*match)(void *arg, const luar_client_req_t *req, void **token);
    void (*answer)(void *arg, void *token, luar_client_res_t *res);
    void (*drop)(void *arg, void *token);
    void *arg;
} luar_client_stub_t;

void luar_client_set_stub(const luar_client_stub_t *stub);

/* ---- the multi handle of a loop (host/client/multi.c) --------------------------------- */

typedef struct luar_client_multi luar_client_multi_t;

/*
 * Returns the multi handle of `loop` with one more reference, creating it on first use.
 * A multi lives while references remain (transfers hold one each; the Lua VMs using
 * luar.http hold one until they close, which keeps the connection pool between requests).
 * Returns 0 or LUAR_ENOMEM.
 */
int luar_client_multi_acquire(uv_loop_t *loop, luar_client_multi_t **out);

/*
 * Drops a reference. At zero the pool is closed: idle connections are closed, every
 * libuv handle of the multi is closed (freed in its close callback), so the loop can
 * finish and uv_loop_close() succeeds after one more uv_run.
 */
void luar_client_multi_release(luar_client_multi_t *m);

/* The curl multi handle (owned by `m`). */
void *luar_client_multi_curlm(luar_client_multi_t *m);

/*
 * Adds an easy handle (a CURL *) whose CURLOPT_PRIVATE is a luar_client_call_t; returns 0
 * or LUAR_ENOMEM. Once the transfer is done multi.c calls luar_client_call_finished().
 */
int luar_client_multi_add(luar_client_multi_t *m, void *easy);

/* Removes an easy handle added with luar_client_multi_add (cancel or completion). */
void luar_client_multi_remove(luar_client_multi_t *m, void *easy);

/*
 * Internal to host/client: request.c's completion entry, called by multi.c with the easy
 * handle's private pointer and curl's result code (a CURLcode) after the handle was
 * removed from the multi.
 */
void luar_client_call_finished(luar_client_call_t *call, int curl_code);

#endif
