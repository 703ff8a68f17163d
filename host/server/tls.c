/*
 * TLS for server connections: OpenSSL with two memory BIOs per connection over the libuv
 * TCP stream. Ciphertext read from the socket goes into the read BIO; whatever OpenSSL
 * puts into the write BIO (handshake records, alerts, encrypted responses) is flushed to
 * the socket with one write.
 */
#include "server/conn.h"

#include "common/error.h"
#include "log/log.h"

#include <openssl/err.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>

static void log_tls_error(const char *what, const char *file)
{
    unsigned long e = ERR_peek_last_error();
    char reason[256];
    ERR_error_string_n(e, reason, sizeof reason);
    luar_logf(LUAR_LOG_ERROR, "tls: %s %s: %s", what, file, e ? reason : "unknown error");
    ERR_clear_error();
}

/*
 * Loads a server TLS context from PEM files. Returns 0 or LUAR_ETLS (logged);
 * the caller owns *out.
 */
int luar_tls_ctx_new(const char *cert, const char *key, const char *client_ca, SSL_CTX **out)
{
    *out = NULL;
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        log_tls_error("cannot create a context for", cert);
        return LUAR_ETLS;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"luar", 4);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        log_tls_error("cannot load certificate", cert);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        log_tls_error("cannot load private key", key);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        log_tls_error("private key does not match the certificate in", key);
        goto fail;
    }
    if (client_ca) {
        if (SSL_CTX_load_verify_locations(ctx, client_ca, NULL) != 1) {
            log_tls_error("cannot load client CA", client_ca);
            goto fail;
        }
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(client_ca);
        if (names == NULL) {
            log_tls_error("no CA names in", client_ca);
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    *out = ctx;
    return 0;
fail:
    SSL_CTX_free(ctx);
    return LUAR_ETLS;
}

/* Attaches an SSL with two memory BIOs to `c`. Returns 0 or LUAR_ENOMEM. */
int luar_tls_conn_init(luar_http_conn_t *c, SSL_CTX *ctx)
{
    c->ssl = SSL_new(ctx);
    if (c->ssl == NULL)
        return LUAR_ENOMEM;
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    if (c->rbio == NULL || c->wbio == NULL) {
        BIO_free(c->rbio);
        BIO_free(c->wbio);
        c->rbio = c->wbio = NULL;
        return LUAR_ENOMEM;
    }
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    SSL_set_accept_state(c->ssl);
    return 0;
}

/* Frees the connection's SSL (and its BIOs) and the client subject. */
void luar_tls_conn_free(luar_http_conn_t *c)
{
    if (c->ssl)
        SSL_free(c->ssl); /* frees both BIOs */
    c->ssl = NULL;
    free(c->tls_subject);
    c->tls_subject = NULL;
}

/*
 * Writes out whatever OpenSSL queued in the write BIO, through the server's shared
 * ciphertext buffer (BIO_reset would clear the BIO's whole allocation each time).
 */
static int flush(luar_http_conn_t *c)
{
    while (BIO_ctrl_pending(c->wbio) > 0) {
        int n = BIO_read(c->wbio, c->srv->tlsout, (int)sizeof c->srv->tlsout);
        if (n <= 0)
            break;
        int rc = luar_http_conn_write_raw(c, c->srv->tlsout, (size_t)n);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Keeps the verified client certificate's subject in RFC 2253 form. */
static void keep_subject(luar_http_conn_t *c)
{
    X509 *cert = SSL_get0_peer_certificate(c->ssl);
    if (cert == NULL || SSL_get_verify_result(c->ssl) != X509_V_OK)
        return;
    BIO *b = BIO_new(BIO_s_mem());
    if (b == NULL)
        return;
    if (X509_NAME_print_ex(b, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) >= 0) {
        char *data;
        long n = BIO_get_mem_data(b, &data);
        c->tls_subject = malloc((size_t)n + 1);
        if (c->tls_subject) {
            memcpy(c->tls_subject, data, (size_t)n);
            c->tls_subject[n] = '\0';
        }
    }
    BIO_free(b);
}

static void handshake_failed(luar_http_conn_t *c)
{
    long verify = SSL_get_verify_result(c->ssl);
    unsigned long e = ERR_peek_last_error();
    char reason[256];
    if (verify != X509_V_OK)
        snprintf(reason, sizeof reason, "%s", X509_verify_cert_error_string(verify));
    else if (e)
        ERR_error_string_n(e, reason, sizeof reason);
    else
        snprintf(reason, sizeof reason, "protocol error");
    ERR_clear_error();
    luar_logf(LUAR_LOG_WARN, "tls handshake failed from %s: %s", c->remote_addr, reason);
    flush(c); /* the alert, best effort */
    luar_http_conn_close(c);
}

/*
 * Feeds ciphertext: handshake, then decrypted plaintext to luar_http_conn_feed.
 * The caller keeps `data`.
 */
void luar_tls_conn_input(luar_http_conn_t *c, const char *data, size_t len)
{
    if (BIO_write(c->rbio, data, (int)len) != (int)len) {
        luar_http_conn_close(c);
        return;
    }
    if (!c->tls_ready) {
        ERR_clear_error();
        int r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            int err = SSL_get_error(c->ssl, r);
            if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
                flush(c);
                return;
            }
            handshake_failed(c);
            return;
        }
        c->tls_ready = 1;
        keep_subject(c);
        if (flush(c) < 0)
            return;
    }
    char *plain = c->srv->tlsbuf;
    for (;;) {
        if (c->closing || c->state == CONN_LINGER)
            break;
        ERR_clear_error();
        int n = SSL_read(c->ssl, plain, (int)sizeof c->srv->tlsbuf);
        if (n > 0) {
            luar_http_conn_feed(c, plain, (size_t)n);
            continue;
        }
        int err = SSL_get_error(c->ssl, n);
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
            break;
        ERR_clear_error();
        if (err == SSL_ERROR_ZERO_RETURN)
            luar_http_conn_eof(c);
        else
            luar_http_conn_close(c);
        return;
    }
    if (!c->closing)
        flush(c);
}

/*
 * Encrypts `len` bytes (the caller keeps them) and queues the records. Returns 0 or a
 * negative LUAR_E* code.
 */
int luar_tls_conn_write(luar_http_conn_t *c, const char *data, size_t len)
{
    if (c->closing)
        return LUAR_ECLOSED;
    if (!c->tls_ready)
        return LUAR_ETLS;
    ERR_clear_error();
    if (len > 0 && SSL_write(c->ssl, data, (int)len) != (int)len) {
        ERR_clear_error();
        luar_http_conn_close(c);
        return LUAR_ETLS;
    }
    return flush(c);
}

/* Queues a close_notify alert (best effort). */
void luar_tls_conn_shutdown(luar_http_conn_t *c)
{
    if (!c->tls_ready)
        return;
    ERR_clear_error();
    SSL_shutdown(c->ssl);
    ERR_clear_error();
    flush(c);
}
