/*
 * One pipelined connection to a Redis server on the libuv loop.
 *
 * hiredis does the protocol only: redisFormatCommandArgv builds each command and a
 * redisReader parses the replies. The I/O is ours, on a uv_tcp_t, with TLS through
 * OpenSSL memory BIOs (tls.c) — Debian's hiredis 0.14 has no TLS and its libuv adapter
 * could not add it.
 *
 * Pipelining: every command of every caller goes out on the one connection in the order it
 * was sent, and the commands sent during one loop iteration leave in one write (flushed from
 * a prepare handle). Replies come back in the same order, so they are matched to callers
 * first in, first out, and concurrent callers share round trips.
 *
 * Connecting: the connection connects at open, then sends AUTH (user and password, for
 * ACLs, or the password alone), SELECT db and the setup commands the owner registered
 * (FUNCTION LOAD …), and sends no caller's command before every one of them has answered
 * without an error: a failed AUTH must not let later commands run as another user.
 *
 * Failures: when the connection breaks (EOF, reset, a protocol error, no reply within the
 * URL's timeout), every command waiting for a reply fails at once with LUAR_EIO — whether
 * the server ran it is unknown, which callers treat like any failed write — and the
 * connection reconnects in the background with exponential backoff (100 ms doubling, at
 * most 5 s). Commands sent while there is no connection fail fast with LUAR_EIO, except
 * during the first attempt after open or after a working connection broke, when they wait
 * for it (bounded in number and bytes). luar_redis_error says why: "redis 127.0.0.1:6379:
 * connection refused".
 *
 * Loop thread only. An idle connection does not keep uv_run from returning; one with
 * commands in flight does.
 */
#ifndef LUAR_REDIS_CONN_H
#define LUAR_REDIS_CONN_H

#include "common/buf.h"
#include "redis/url.h"

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct luar_redis luar_redis_t;

/*
 * A reply: rc 0 and `reply` (which may be an error reply; owned by the connection, valid
 * during the call only), or rc LUAR_EIO and reply NULL when the command failed with the
 * connection (luar_redis_error says why). Called on the loop thread, never from inside
 * luar_redis_send.
 */
typedef void (*luar_redis_cb)(void *arg, int rc, const redisReply *reply);

/*
 * Subscribe mode (luar.redis's subscriber): a reply the server sends on its own — an array
 * ["message", channel, payload] or ["pmessage", pattern, channel, payload] — is handed to
 * this callback instead of being matched to a command. The reply is owned by the
 * connection and valid during the call only; the callback may send, not close.
 */
typedef void (*luar_redis_push_cb)(void *arg, const redisReply *reply);

/* Counters for tests and diagnostics. */
typedef struct luar_redis_stats {
    uint64_t commands; /* caller commands sent */
    uint64_t writes;   /* socket writes (one per flush, pipelined commands share one) */
    uint64_t connects; /* connections that became ready */
    uint64_t failures; /* connections that failed or broke */
} luar_redis_stats_t;

/*
 * Creates a connection to the server of `url` (copied) and starts connecting. With
 * rediss://, loads the CA, certificate and key files now: a file that cannot be loaded is
 * LUAR_EINVAL with a message in `err` naming it. Returns 0, LUAR_EINVAL or LUAR_ENOMEM.
 * Setup commands may be added until the loop next runs.
 */
int luar_redis_open(uv_loop_t *loop, const luar_redis_url_t *url, luar_redis_t **out,
                    luar_buf_t *err);

/*
 * Adds a command sent on every new connection after AUTH and SELECT (e.g. FUNCTION LOAD).
 * Arguments are copied. Returns 0 or LUAR_ENOMEM.
 */
int luar_redis_add_setup(luar_redis_t *r, int argc, const char **argv, const size_t *lens);

/*
 * An error reply to the setup command added last that starts with `prefix` does not fail
 * the connection (e.g. "OOM" for a FUNCTION LOAD on a full server that has the library
 * already). Each call adds a prefix. Returns 0, LUAR_EINVAL (no setup command yet, or a
 * prefix holding a newline) or LUAR_ENOMEM.
 */
int luar_redis_setup_tolerate(luar_redis_t *r, const char *prefix);

/*
 * Puts the connection in subscribe mode (see luar_redis_push_cb). Every command must then
 * get exactly one reply: send SUBSCRIBE and UNSUBSCRIBE one channel at a time, and PING.
 */
void luar_redis_set_push(luar_redis_t *r, luar_redis_push_cb cb, void *arg);

/*
 * Calls cb(arg) each time a new connection has become ready (after AUTH, SELECT and the
 * setup commands), so that state the server keeps per connection (subscriptions) is made
 * again there. The callback may send; its commands queue behind those that waited for the
 * connection.
 */
void luar_redis_set_on_ready(luar_redis_t *r, void (*cb)(void *arg), void *arg);

/*
 * Calls cb(arg) when the commands of this loop iteration are about to be written (from
 * the prepare handle, before the write), so that an owner gathering work into one command
 * (the queue's batches) can send it there and still share the iteration's write. Ask for
 * the call with luar_redis_flush_soon; cb may send.
 */
void luar_redis_set_before_flush(luar_redis_t *r, void (*cb)(void *arg), void *arg);

/* Asks for this iteration's flush (and the before_flush callback). */
void luar_redis_flush_soon(luar_redis_t *r);

/*
 * Sends one command (arguments copied; `lens` NULL: NUL-terminated strings). Returns 0 and
 * calls cb later exactly once, or LUAR_EINVAL / LUAR_ENOMEM / LUAR_ECLOSED without calling
 * it.
 */
int luar_redis_send(luar_redis_t *r, int argc, const char **argv, const size_t *lens,
                    luar_redis_cb cb, void *arg);

/* Why the connection last failed ("" when it never has). Valid until the next callback. */
const char *luar_redis_error(const luar_redis_t *r);

/* "host:port", as messages name the server. */
const char *luar_redis_address(const luar_redis_t *r);

/* Nonzero while connected and set up. */
int luar_redis_ready(const luar_redis_t *r);

/* Copies the counters into `out`. */
void luar_redis_stats(const luar_redis_t *r, luar_redis_stats_t *out);

/*
 * Closes the connection once every command already sent has its reply (or has failed),
 * then calls done(arg) (when not NULL) after every handle is closed. Nothing may be sent
 * afterwards.
 */
void luar_redis_close(luar_redis_t *r, void (*done)(void *arg), void *arg);

/* ---- tls.c: the client side of TLS over memory BIOs --------------------------------- */

typedef struct ssl_ctx_st luar_ssl_ctx_t;
typedef struct ssl_st luar_ssl_t;

/*
 * A client TLS context verifying the server with `ca_file` (NULL: the system's CAs),
 * presenting `cert_file`/`key_file` when given. Returns 0 or LUAR_EINVAL with a message in
 * `err` naming the file at fault.
 */
int luar_redis_tls_ctx(const luar_redis_url_t *url, luar_ssl_ctx_t **out, luar_buf_t *err);

/* A client session over two memory BIOs, checking the certificate names `name` (a host
 * name, or an IP address checked against IP SANs) and sending it as SNI when a name.
 * NULL when out of memory. */
luar_ssl_t *luar_redis_tls_session(luar_ssl_ctx_t *ctx, const char *name);

/*
 * Why a handshake failed, into buf (the verification error when there is one, else
 * OpenSSL's last error). Clears OpenSSL's error queue.
 */
void luar_redis_tls_error(luar_ssl_t *ssl, char *buf, size_t size);

#endif
