/*
 * A pipelined Redis connection on the libuv loop (see conn.h): hiredis for the protocol,
 * uv_tcp_t for the I/O, OpenSSL memory BIOs for TLS, a FIFO of callbacks for the replies.
 *
 * A `link_t` is one TCP connection attempt; the `luar_redis_t` outlives its links. A link
 * that fails is detached (link->r = NULL) and closed, and freed in its close callback, so
 * the connection can start the next attempt at once while the old handle finishes closing.
 */
#include "redis/conn.h"
#include "common/error.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 5000
/* Commands that may wait for the first connection attempt; more fail at once. */
#define WAIT_MAX_COMMANDS 100000
#define WAIT_MAX_BYTES ((size_t)64 << 20)
#define READ_SIZE 65536
#define SETUP_MAX 16

typedef struct cmd {
    struct cmd *next;
    luar_redis_cb cb;
    void *arg;
    uint64_t queued_ms; /* uv_now when sent, for the reply timeout */
} cmd_t;

typedef struct link {
    luar_redis_t *r;     /* NULL once detached */
    luar_redis_t *owner; /* never cleared: counts live links for the final close */
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_getaddrinfo_t resolve;
    uv_write_t write;
    int resolving, tcp_open, writing, tls_ready, ready;
    size_t setup_left; /* setup replies still expected */
    SSL *ssl;
    redisReader *reader;
    luar_buf_t obuf; /* bytes to write next (ciphertext with TLS) */
    luar_buf_t wbuf; /* the bytes of the write in flight */
    char rbuf[READ_SIZE];
} link_t;

struct luar_redis {
    uv_loop_t *loop;
    luar_redis_url_t url;
    char address[300];
    SSL_CTX *ssl_ctx;
    luar_buf_t setup; /* formatted setup commands, sent on every new link */
    size_t nsetup;
    char *setup_what[SETUP_MAX]; /* what each is, for messages ("AUTH", "SELECT 2", …) */
    char *setup_ok[SETUP_MAX];   /* error replies starting with one of these ('\n' between
                                  * them) are no failure */
    link_t *link;
    int failures; /* consecutive failed attempts; 0 after a ready link */
    uint64_t connect_started_ms;
    cmd_t *head, *tail; /* waiting for replies, in the order sent */
    size_t npending;
    luar_buf_t out;              /* caller commands not yet handed to the link */
    cmd_t *failed, *failed_tail; /* to call back with LUAR_EIO from the defer timer */
    uv_timer_t backoff, watchdog, defer;
    uv_prepare_t flush;
    int closing, finishing;
    int handles_open, links_alive;
    void (*done)(void *arg);
    void *done_arg;
    char error[600];
    luar_redis_stats_t stats;
    luar_redis_push_cb push; /* subscribe mode: messages the server pushes */
    void *push_arg;
    void (*on_ready)(void *arg);
    void *on_ready_arg;
    void (*before_flush)(void *arg);
    void *before_flush_arg;
    struct luar_redis *prev_open, *next_open; /* every open connection, for siblings */
};

/*
 * Every open connection of the process. When one link becomes ready, the others to the
 * same server on the same loop that are waiting out a backoff try again at once: the
 * server is back, and a handler woken by the first (a subscription's message) must not
 * find the second still failing fast. Touched only at open, ready and free.
 */
static luar_redis_t *open_conns;
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;

static void link_start(luar_redis_t *r);
static void pump(link_t *link);

/* ---- small helpers ------------------------------------------------------------------ */

static void set_error(luar_redis_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_error(luar_redis_t *r, const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(r->error, sizeof r->error, "redis %s: %s", r->address, what);
}

static char *dup_or_null(const char *s, int *nomem)
{
    if (s == NULL)
        return NULL;
    char *d = strdup(s);
    if (d == NULL)
        *nomem = 1;
    return d;
}

static int url_copy(luar_redis_url_t *d, const luar_redis_url_t *s)
{
    int nomem = 0;
    *d = *s;
    d->host = dup_or_null(s->host, &nomem);
    d->user = dup_or_null(s->user, &nomem);
    d->password = dup_or_null(s->password, &nomem);
    d->prefix = dup_or_null(s->prefix, &nomem);
    d->ca_file = dup_or_null(s->ca_file, &nomem);
    d->cert_file = dup_or_null(s->cert_file, &nomem);
    d->key_file = dup_or_null(s->key_file, &nomem);
    d->server_name = dup_or_null(s->server_name, &nomem);
    return nomem ? LUAR_ENOMEM : 0;
}

/* Keeps the loop alive only while callers wait for something (or while closing). */
static void update_ref(luar_redis_t *r)
{
    link_t *link = r->link;
    if (link == NULL || !link->tcp_open)
        return;
    if (r->npending > 0 || r->closing)
        uv_ref((uv_handle_t *)&link->tcp);
    else
        uv_unref((uv_handle_t *)&link->tcp);
}

static uint64_t timeout_ms(const luar_redis_t *r)
{
    return (uint64_t)(r->url.timeout * 1000.0);
}

/* ---- closing ------------------------------------------------------------------------ */

static void free_redis(luar_redis_t *r)
{
    void (*done)(void *) = r->done;
    void *arg = r->done_arg;
    luar_redis_url_free(&r->url);
    if (r->ssl_ctx)
        SSL_CTX_free(r->ssl_ctx);
    luar_buf_free(&r->setup);
    luar_buf_free(&r->out);
    for (size_t i = 0; i < r->nsetup && i < SETUP_MAX; i++) {
        free(r->setup_what[i]);
        free(r->setup_ok[i]);
    }
    pthread_mutex_lock(&open_lock);
    if (r->prev_open)
        r->prev_open->next_open = r->next_open;
    else
        open_conns = r->next_open;
    if (r->next_open)
        r->next_open->prev_open = r->prev_open;
    pthread_mutex_unlock(&open_lock);
    free(r);
    if (done)
        done(arg);
}

static void maybe_free(luar_redis_t *r)
{
    if (r->finishing && r->handles_open == 0 && r->links_alive == 0)
        free_redis(r);
}

static void link_free(link_t *link)
{
    luar_redis_t *owner = link->owner;
    if (link->ssl)
        SSL_free(link->ssl); /* frees both BIOs */
    if (link->reader)
        redisReaderFree(link->reader);
    luar_buf_free(&link->obuf);
    luar_buf_free(&link->wbuf);
    free(link);
    owner->links_alive--;
    maybe_free(owner);
}

static void on_link_closed(uv_handle_t *h)
{
    link_t *link = h->data;
    link->tcp_open = 0;
    if (!link->resolving)
        link_free(link);
}

/* Detaches `link` from its connection and closes it; it frees itself when done. */
static void link_close(link_t *link)
{
    luar_redis_t *r = link->r;
    if (r && r->link == link)
        r->link = NULL;
    link->r = NULL;
    if (link->resolving)
        uv_cancel((uv_req_t *)&link->resolve); /* on_resolved frees it */
    if (link->tcp_open) {
        uv_read_stop((uv_stream_t *)&link->tcp);
        uv_close((uv_handle_t *)&link->tcp, on_link_closed);
    } else if (!link->resolving) {
        link_free(link);
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    luar_redis_t *r = h->data;
    r->handles_open--;
    maybe_free(r);
}

/* Ends the connection once closing and nothing waits for a reply or a callback. */
static void maybe_finish(luar_redis_t *r)
{
    if (!r->closing || r->finishing || r->head || r->failed)
        return;
    r->finishing = 1;
    if (r->link)
        link_close(r->link);
    uv_close((uv_handle_t *)&r->backoff, on_handle_closed);
    uv_close((uv_handle_t *)&r->watchdog, on_handle_closed);
    uv_close((uv_handle_t *)&r->defer, on_handle_closed);
    uv_close((uv_handle_t *)&r->flush, on_handle_closed);
}

/* ---- failing ------------------------------------------------------------------------ */

static void on_defer(uv_timer_t *t)
{
    luar_redis_t *r = t->data;
    cmd_t *c = r->failed;
    r->failed = r->failed_tail = NULL;
    while (c) {
        cmd_t *next = c->next;
        c->cb(c->arg, LUAR_EIO, NULL);
        free(c);
        c = next;
    }
    maybe_finish(r);
}

/* Moves commands onto the failed list and arms the timer that calls them back (callbacks
 * never run from inside luar_redis_send). */
static void fail_later(luar_redis_t *r, cmd_t *first, cmd_t *last)
{
    if (first == NULL)
        return;
    if (r->failed_tail)
        r->failed_tail->next = first;
    else
        r->failed = first;
    r->failed_tail = last;
    uv_timer_start(&r->defer, on_defer, 0, 0);
}

static void on_backoff(uv_timer_t *t)
{
    link_start(t->data);
}

/*
 * The link failed (or broke): say why, fail every command waiting for a reply, and start
 * the next attempt after the backoff unless closing.
 */
static void link_fail(link_t *link, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void link_fail(link_t *link, const char *fmt, ...)
{
    luar_redis_t *r = link->r;
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    link_close(link);
    if (r == NULL)
        return;
    set_error(r, "%s", what);
    r->stats.failures++;
    cmd_t *first = r->head, *last = r->tail;
    /* A working connection that broke while idle (a server's idle `timeout`, a proxy)
     * reconnects at once, and commands sent meanwhile wait for that attempt: nobody saw
     * an outage yet. Anything else is one: back off, and fail fast until connected. */
    int idle = link->ready && first == NULL && r->out.len == 0;
    if (!idle)
        r->failures++;
    r->head = r->tail = NULL;
    r->npending = 0;
    luar_buf_reset(&r->out);
    fail_later(r, first, last);
    if (!r->closing) {
        uint64_t delay = BACKOFF_FIRST_MS;
        for (int i = 1; i < r->failures && delay < BACKOFF_MAX_MS; i++)
            delay *= 2;
        if (delay > BACKOFF_MAX_MS)
            delay = BACKOFF_MAX_MS;
        if (idle)
            link_start(r);
        else
            uv_timer_start(&r->backoff, on_backoff, delay, 0);
    }
    maybe_finish(r);
}

/* ---- writing ------------------------------------------------------------------------ */

static void on_written(uv_write_t *req, int status)
{
    link_t *link = req->data;
    link->writing = 0;
    luar_buf_reset(&link->wbuf);
    if (link->r == NULL)
        return;
    if (status < 0) {
        link_fail(link, "write failed: %s", uv_strerror(status));
        return;
    }
    pump(link);
}

/* Hands plaintext to the link: encrypted into the write BIO, or queued as it is. */
static int link_put(link_t *link, const char *data, size_t len)
{
    if (len == 0)
        return 0;
    if (link->ssl) {
        ERR_clear_error();
        if (SSL_write(link->ssl, data, (int)len) != (int)len) {
            char reason[200];
            luar_redis_tls_error(link->ssl, reason, sizeof reason);
            link_fail(link, "TLS write failed: %s", reason);
            return -1;
        }
        return 0;
    }
    if (luar_buf_append(&link->obuf, data, len)) {
        link_fail(link, "out of memory");
        return -1;
    }
    return 0;
}

/* Starts a write of whatever is queued, unless one is in flight. */
static void pump(link_t *link)
{
    if (link->writing || link->r == NULL)
        return;
    if (link->ssl) {
        BIO *wbio = SSL_get_wbio(link->ssl);
        char chunk[16384];
        while (BIO_ctrl_pending(wbio) > 0) {
            int n = BIO_read(wbio, chunk, (int)sizeof chunk);
            if (n <= 0)
                break;
            if (luar_buf_append(&link->obuf, chunk, (size_t)n)) {
                link_fail(link, "out of memory");
                return;
            }
        }
    }
    if (link->obuf.len == 0)
        return;
    luar_buf_t tmp = link->wbuf;
    link->wbuf = link->obuf;
    link->obuf = tmp;
    uv_buf_t b = uv_buf_init(link->wbuf.data, (unsigned)link->wbuf.len);
    link->write.data = link;
    int rc = uv_write(&link->write, (uv_stream_t *)&link->tcp, &b, 1, on_written);
    if (rc < 0) {
        link_fail(link, "write failed: %s", uv_strerror(rc));
        return;
    }
    link->writing = 1;
    link->r->stats.writes++;
}

/* Sends the callers' queued commands (from the prepare handle: once per loop iteration). */
static void on_flush(uv_prepare_t *p)
{
    luar_redis_t *r = p->data;
    if (r->before_flush)
        r->before_flush(r->before_flush_arg); /* may send: the handle is still active */
    uv_prepare_stop(p);
    link_t *link = r->link;
    if (link == NULL || !link->ready || r->out.len == 0)
        return;
    if (link->ssl || link->obuf.len > 0) {
        if (link_put(link, r->out.data, r->out.len))
            return;
        luar_buf_reset(&r->out);
    } else {
        luar_buf_t tmp = link->obuf; /* empty: swap instead of copying */
        link->obuf = r->out;
        r->out = tmp;
    }
    pump(link);
}

/* ---- reading ------------------------------------------------------------------------ */

/* The server r reaches answers again: siblings in backoff try now, and wait for it. */
static void wake_siblings(luar_redis_t *r)
{
    pthread_mutex_lock(&open_lock);
    for (luar_redis_t *s = open_conns; s; s = s->next_open) {
        if (s == r || s->loop != r->loop || s->closing || (s->link && s->link->ready) ||
            s->url.port != r->url.port || strcmp(s->url.host, r->url.host) != 0)
            continue;
        s->failures = 0; /* commands sent meanwhile wait for this attempt */
        if (s->link == NULL) {
            uv_timer_stop(&s->backoff);
            link_start(s);
        }
    }
    pthread_mutex_unlock(&open_lock);
}

static void link_ready(link_t *link)
{
    luar_redis_t *r = link->r;
    link->ready = 1;
    r->failures = 0;
    r->stats.connects++;
    wake_siblings(r);
    if (r->on_ready)
        r->on_ready(r->on_ready_arg); /* may send: its commands queue like any other */
    if (link->r == NULL)
        return;
    if (r->out.len > 0)
        uv_prepare_start(&r->flush, on_flush);
}

/* In subscribe mode: ["message", channel, payload] or ["pmessage", pattern, channel, payload]. */
static int is_push(const redisReply *reply)
{
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3)
        return 0;
    const redisReply *kind = reply->element[0];
    if (kind->type != REDIS_REPLY_STRING)
        return 0;
    if (reply->elements == 3 && kind->len == 7 && memcmp(kind->str, "message", 7) == 0)
        return 1;
    return reply->elements == 4 && kind->len == 8 && memcmp(kind->str, "pmessage", 8) == 0;
}

/* Whether an error reply starts with one of the prefixes of `list` ('\n' between them). */
static int tolerated(const char *list, const char *str, size_t len)
{
    while (list && *list) {
        const char *end = strchr(list, '\n');
        size_t n = end ? (size_t)(end - list) : strlen(list);
        if (n <= len && strncmp(str, list, n) == 0)
            return 1;
        list = end ? end + 1 : NULL;
    }
    return 0;
}

/* Takes the replies the reader has whole: setup replies first, then the callers'. */
static void take_replies(link_t *link)
{
    for (;;) {
        luar_redis_t *r = link->r;
        if (r == NULL)
            return;
        void *obj = NULL;
        if (redisReaderGetReply(link->reader, &obj) != REDIS_OK) {
            link_fail(link, "protocol error: %s", link->reader->errstr);
            return;
        }
        if (obj == NULL)
            return;
        redisReply *reply = obj;
        if (link->setup_left > 0) {
            size_t i = r->nsetup - link->setup_left;
            const char *ok = i < SETUP_MAX ? r->setup_ok[i] : NULL;
            if (reply->type == REDIS_REPLY_ERROR && !tolerated(ok, reply->str, reply->len)) {
                /* Of the setup commands only FUNCTION is recent: unknown before Redis 7.0.
                 * Its refusal echoes the arguments (the whole library): cut them off. */
                size_t len = reply->len < 200 ? reply->len : 200;
                int old = len > 19 && strncmp(reply->str, "ERR unknown command", 19) == 0;
                const char *echo = old ? strstr(reply->str, ", with args") : NULL;
                if (echo && (size_t)(echo - reply->str) < len)
                    len = (size_t)(echo - reply->str);
                link_fail(link, "%s failed: %.*s%s", i < SETUP_MAX ? r->setup_what[i] : "setup",
                          (int)len, reply->str,
                          old ? " (is the server older than Redis 7.0?)" : "");
                freeReplyObject(reply);
                return;
            }
            freeReplyObject(reply);
            if (--link->setup_left == 0)
                link_ready(link);
            continue;
        }
        if (r->push && is_push(reply)) {
            r->push(r->push_arg, reply);
            freeReplyObject(reply);
            continue;
        }
        cmd_t *c = r->head;
        if (c == NULL) {
            freeReplyObject(reply);
            link_fail(link, "protocol error: a reply to no command");
            return;
        }
        r->head = c->next;
        if (r->head == NULL)
            r->tail = NULL;
        r->npending--;
        c->cb(c->arg, 0, reply);
        freeReplyObject(reply);
        free(c);
        if (r->closing && r->head == NULL) {
            maybe_finish(r); /* detaches the link */
            return;
        }
        update_ref(r);
    }
}

static void send_setup(link_t *link)
{
    luar_redis_t *r = link->r;
    link->setup_left = r->nsetup;
    if (r->nsetup == 0) {
        link_ready(link);
        return;
    }
    if (link_put(link, r->setup.data, r->setup.len) == 0)
        pump(link);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    link_t *link = h->data;
    (void)suggested;
    *buf = uv_buf_init(link->rbuf, sizeof link->rbuf);
}

/* Decrypts what arrived (finishing the handshake first) into the reader. */
static int tls_input(link_t *link, const char *data, size_t len)
{
    if (BIO_write(SSL_get_rbio(link->ssl), data, (int)len) != (int)len) {
        link_fail(link, "out of memory");
        return -1;
    }
    if (!link->tls_ready) {
        ERR_clear_error();
        int rc = SSL_do_handshake(link->ssl);
        if (rc != 1) {
            int e = SSL_get_error(link->ssl, rc);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                pump(link);
                return -1;
            }
            char reason[200];
            luar_redis_tls_error(link->ssl, reason, sizeof reason);
            link_fail(link, "TLS handshake failed: %s", reason);
            return -1;
        }
        link->tls_ready = 1;
        send_setup(link);
        if (link->r == NULL)
            return -1;
    }
    char plain[16384];
    for (;;) {
        ERR_clear_error();
        int n = SSL_read(link->ssl, plain, (int)sizeof plain);
        if (n > 0) {
            if (redisReaderFeed(link->reader, plain, (size_t)n) != REDIS_OK) {
                link_fail(link, "out of memory");
                return -1;
            }
            continue;
        }
        int e = SSL_get_error(link->ssl, n);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            break;
        if (e == SSL_ERROR_ZERO_RETURN) {
            link_fail(link, "connection closed by the server");
        } else {
            char reason[200];
            luar_redis_tls_error(link->ssl, reason, sizeof reason);
            link_fail(link, "TLS error: %s", reason);
        }
        return -1;
    }
    pump(link); /* TLS may have something to say back (key updates) */
    return 0;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    link_t *link = s->data;
    if (link->r == NULL || nread == 0)
        return;
    if (nread < 0) {
        if (nread == UV_EOF)
            link_fail(link, "connection closed by the server");
        else
            link_fail(link, "connection lost: %s", uv_strerror((int)nread));
        return;
    }
    if (link->ssl) {
        if (tls_input(link, buf->base, (size_t)nread))
            return;
    } else if (redisReaderFeed(link->reader, buf->base, (size_t)nread) != REDIS_OK) {
        link_fail(link, "out of memory");
        return;
    }
    take_replies(link);
}

/* ---- connecting --------------------------------------------------------------------- */

static void on_connected(uv_connect_t *req, int status)
{
    link_t *link = req->data;
    if (link->r == NULL)
        return;
    if (status < 0) {
        link_fail(link, "%s", uv_strerror(status));
        return;
    }
    int rc = uv_read_start((uv_stream_t *)&link->tcp, on_alloc, on_read);
    if (rc < 0) {
        link_fail(link, "%s", uv_strerror(rc));
        return;
    }
    if (link->ssl) {
        ERR_clear_error();
        SSL_do_handshake(link->ssl); /* queues the ClientHello */
        pump(link);
    } else {
        send_setup(link);
    }
}

static void connect_to(link_t *link, const struct sockaddr *addr)
{
    luar_redis_t *r = link->r;
    int rc = uv_tcp_init(r->loop, &link->tcp);
    if (rc < 0) {
        link_fail(link, "%s", uv_strerror(rc));
        return;
    }
    link->tcp.data = link;
    link->tcp_open = 1;
    uv_tcp_nodelay(&link->tcp, 1);
    uv_tcp_keepalive(&link->tcp, 1, 60);
    link->connect.data = link;
    update_ref(r);
    rc = uv_tcp_connect(&link->connect, &link->tcp, addr, on_connected);
    if (rc < 0)
        link_fail(link, "%s", uv_strerror(rc));
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    link_t *link = req->data;
    link->resolving = 0;
    if (link->r == NULL) {
        if (res)
            uv_freeaddrinfo(res);
        if (!link->tcp_open)
            link_free(link);
        return;
    }
    if (status < 0 || res == NULL) {
        link_fail(link, "cannot resolve %s: %s", link->r->url.host,
                  status < 0 ? uv_strerror(status) : "no address");
        if (res)
            uv_freeaddrinfo(res);
        return;
    }
    connect_to(link, res->ai_addr);
    uv_freeaddrinfo(res);
}

/* Starts a connection attempt (at open, and from the backoff timer). */
static void link_start(luar_redis_t *r)
{
    if (r->closing || r->link)
        return;
    link_t *link = calloc(1, sizeof *link);
    if (link == NULL) {
        set_error(r, "out of memory");
        return;
    }
    link->r = link->owner = r;
    r->link = link;
    r->links_alive++;
    r->connect_started_ms = uv_now(r->loop);
    luar_buf_init(&link->obuf, 0);
    luar_buf_init(&link->wbuf, 0);
    link->reader = redisReaderCreate();
    if (link->reader == NULL) {
        link_fail(link, "out of memory");
        return;
    }
    if (r->ssl_ctx) {
        const char *name = r->url.server_name ? r->url.server_name : r->url.host;
        link->ssl = luar_redis_tls_session(r->ssl_ctx, name);
        if (link->ssl == NULL) {
            link_fail(link, "cannot start a TLS session for %s", name);
            return;
        }
    }
    struct sockaddr_storage ss;
    if (uv_ip4_addr(r->url.host, r->url.port, (struct sockaddr_in *)&ss) == 0 ||
        uv_ip6_addr(r->url.host, r->url.port, (struct sockaddr_in6 *)&ss) == 0) {
        connect_to(link, (struct sockaddr *)&ss);
        return;
    }
    char port[16];
    snprintf(port, sizeof port, "%d", r->url.port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    link->resolve.data = link;
    int rc = uv_getaddrinfo(r->loop, &link->resolve, on_resolved, r->url.host, port, &hints);
    if (rc < 0) {
        link_fail(link, "cannot resolve %s: %s", r->url.host, uv_strerror(rc));
        return;
    }
    link->resolving = 1;
}

/* Fails a link that takes too long to connect or to answer. */
static void on_watchdog(uv_timer_t *t)
{
    luar_redis_t *r = t->data;
    link_t *link = r->link;
    if (link == NULL)
        return;
    uint64_t now = uv_now(r->loop), limit = timeout_ms(r);
    if (!link->ready && now - r->connect_started_ms > limit)
        link_fail(link, "could not connect within %g s", r->url.timeout);
    else if (link->ready && r->head && now - r->head->queued_ms > limit)
        link_fail(link, "no reply within %g s", r->url.timeout);
}

/* ---- the public functions ----------------------------------------------------------- */

/* Appends a RESP length line: `kind` ('*' or '$'), n, CRLF. */
static int put_len(luar_buf_t *b, char kind, size_t n)
{
    char tmp[24], *p = tmp + sizeof tmp;
    *--p = '\n';
    *--p = '\r';
    do {
        *--p = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    *--p = kind;
    return luar_buf_append(b, p, (size_t)(tmp + sizeof tmp - p));
}

/*
 * Formats a command in RESP and appends it to `b`; returns 0 or LUAR_ENOMEM/LUAR_ETOOBIG,
 * and then `b` is as it was. Written in place: hiredis's redisFormatCommandArgv built each
 * in a heap string of its own (a length printed with sprintf per argument) that was then
 * copied here — a webhook's 2 KB enqueue twice.
 */
static int format_into(luar_buf_t *b, int argc, const char **argv, const size_t *lens)
{
    size_t start = b->len;
    int rc = put_len(b, '*', (size_t)argc);
    for (int i = 0; i < argc && rc == 0; i++) {
        size_t len = lens ? lens[i] : strlen(argv[i]);
        rc = put_len(b, '$', len);
        if (rc == 0)
            rc = luar_buf_append(b, argv[i], len);
        if (rc == 0)
            rc = luar_buf_append(b, "\r\n", 2);
    }
    if (rc && b->data) {
        b->len = start;
        b->data[start] = '\0';
    }
    return rc;
}

int luar_redis_setup_tolerate(luar_redis_t *r, const char *prefix)
{
    if (r->nsetup == 0 || r->nsetup > SETUP_MAX || strchr(prefix, '\n'))
        return LUAR_EINVAL;
    char **list = &r->setup_ok[r->nsetup - 1];
    size_t had = *list ? strlen(*list) + 1 : 0, len = strlen(prefix);
    char *grown = realloc(*list, had + len + 1);
    if (grown == NULL)
        return LUAR_ENOMEM;
    if (had)
        grown[had - 1] = '\n';
    memcpy(grown + had, prefix, len + 1);
    *list = grown;
    return 0;
}

int luar_redis_add_setup(luar_redis_t *r, int argc, const char **argv, const size_t *lens)
{
    if (r->nsetup >= SETUP_MAX || argc < 1)
        return LUAR_EINVAL;
    char what[64];
    if (strcmp(argv[0], "SCRIPT") == 0)
        snprintf(what, sizeof what, "SCRIPT LOAD");
    else if (strcmp(argv[0], "FUNCTION") == 0)
        snprintf(what, sizeof what, "FUNCTION LOAD");
    else
        snprintf(what, sizeof what, "%s", argv[0]);
    r->setup_what[r->nsetup] = strdup(what);
    if (r->setup_what[r->nsetup] == NULL)
        return LUAR_ENOMEM;
    int rc = format_into(&r->setup, argc, argv, lens);
    if (rc) {
        free(r->setup_what[r->nsetup]);
        return rc;
    }
    r->nsetup++;
    return 0;
}

int luar_redis_open(uv_loop_t *loop, const luar_redis_url_t *url, luar_redis_t **out,
                    luar_buf_t *err)
{
    *out = NULL;
    luar_redis_t *r = calloc(1, sizeof *r);
    if (r == NULL)
        return LUAR_ENOMEM;
    r->loop = loop;
    luar_buf_init(&r->setup, 0);
    luar_buf_init(&r->out, 0);
    int rc = url_copy(&r->url, url);
    if (rc)
        goto fail;
    if (strchr(url->host, ':'))
        snprintf(r->address, sizeof r->address, "[%s]:%d", url->host, url->port);
    else
        snprintf(r->address, sizeof r->address, "%s:%d", url->host, url->port);
    if (url->tls) {
        rc = luar_redis_tls_ctx(url, &r->ssl_ctx, err);
        if (rc)
            goto fail;
    }
    if (url->password) {
        const char *argv[3] = {"AUTH", url->user ? url->user : url->password, url->password};
        rc = luar_redis_add_setup(r, url->user ? 3 : 2, argv, NULL);
        if (rc)
            goto fail;
    }
    if (url->db != 0) {
        char db[16];
        snprintf(db, sizeof db, "%d", url->db);
        const char *argv[2] = {"SELECT", db};
        rc = luar_redis_add_setup(r, 2, argv, NULL);
        if (rc)
            goto fail;
        free(r->setup_what[r->nsetup - 1]);
        r->setup_what[r->nsetup - 1] = malloc(32);
        if (r->setup_what[r->nsetup - 1])
            snprintf(r->setup_what[r->nsetup - 1], 32, "SELECT %d", url->db);
    }
    uv_timer_init(loop, &r->backoff);
    uv_timer_init(loop, &r->watchdog);
    uv_timer_init(loop, &r->defer);
    uv_prepare_init(loop, &r->flush);
    r->backoff.data = r->watchdog.data = r->defer.data = r->flush.data = r;
    r->handles_open = 4;
    /* Neither the backoff nor the watchdog keeps an idle process running. */
    uv_unref((uv_handle_t *)&r->backoff);
    uv_unref((uv_handle_t *)&r->watchdog);
    uint64_t tick = timeout_ms(r) / 4;
    if (tick < 10)
        tick = 10;
    if (tick > 1000)
        tick = 1000;
    uv_timer_start(&r->watchdog, on_watchdog, tick, tick);
    pthread_mutex_lock(&open_lock);
    r->next_open = open_conns;
    if (open_conns)
        open_conns->prev_open = r;
    open_conns = r;
    pthread_mutex_unlock(&open_lock);
    link_start(r);
    *out = r;
    return 0;
fail:
    luar_redis_url_free(&r->url);
    if (r->ssl_ctx)
        SSL_CTX_free(r->ssl_ctx);
    luar_buf_free(&r->setup);
    for (size_t i = 0; i < r->nsetup; i++) {
        free(r->setup_what[i]);
        free(r->setup_ok[i]);
    }
    free(r);
    return rc;
}

int luar_redis_send(luar_redis_t *r, int argc, const char **argv, const size_t *lens,
                    luar_redis_cb cb, void *arg)
{
    if (r == NULL || argc < 1 || argv == NULL || cb == NULL)
        return LUAR_EINVAL;
    if (r->closing)
        return LUAR_ECLOSED;
    cmd_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return LUAR_ENOMEM;
    c->cb = cb;
    c->arg = arg;
    c->queued_ms = uv_now(r->loop);
    link_t *link = r->link;
    int ready = link && link->ready;
    int may_wait = link && !link->ready && r->failures == 0;
    if (!ready && !may_wait) {
        if (r->error[0] == '\0')
            set_error(r, "not connected");
        fail_later(r, c, c);
        return 0;
    }
    size_t before = r->out.len;
    int rc = format_into(&r->out, argc, argv, lens);
    if (rc == 0 && !ready && (r->npending >= WAIT_MAX_COMMANDS || r->out.len > WAIT_MAX_BYTES)) {
        r->out.len = before;
        set_error(r, "too many commands waiting for the connection");
        fail_later(r, c, c);
        return 0;
    }
    if (rc) {
        r->out.len = before;
        free(c);
        return rc == LUAR_ETOOBIG ? LUAR_ENOMEM : rc;
    }
    if (r->tail)
        r->tail->next = c;
    else
        r->head = c;
    r->tail = c;
    r->npending++;
    r->stats.commands++;
    if (ready)
        uv_prepare_start(&r->flush, on_flush);
    update_ref(r);
    return 0;
}

const char *luar_redis_error(const luar_redis_t *r)
{
    return r->error;
}

const char *luar_redis_address(const luar_redis_t *r)
{
    return r->address;
}

int luar_redis_ready(const luar_redis_t *r)
{
    return r->link && r->link->ready;
}

void luar_redis_set_push(luar_redis_t *r, luar_redis_push_cb cb, void *arg)
{
    r->push = cb;
    r->push_arg = arg;
}

void luar_redis_set_on_ready(luar_redis_t *r, void (*cb)(void *arg), void *arg)
{
    r->on_ready = cb;
    r->on_ready_arg = arg;
}

void luar_redis_set_before_flush(luar_redis_t *r, void (*cb)(void *arg), void *arg)
{
    r->before_flush = cb;
    r->before_flush_arg = arg;
}

void luar_redis_flush_soon(luar_redis_t *r)
{
    if (!r->finishing)
        uv_prepare_start(&r->flush, on_flush);
}

void luar_redis_stats(const luar_redis_t *r, luar_redis_stats_t *out)
{
    *out = r->stats;
}

void luar_redis_close(luar_redis_t *r, void (*done)(void *arg), void *arg)
{
    r->closing = 1;
    r->done = done;
    r->done_arg = arg;
    uv_timer_stop(&r->backoff);
    update_ref(r);
    maybe_finish(r);
}
