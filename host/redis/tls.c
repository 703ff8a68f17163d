/*
 * The client side of TLS to Redis: a context from the URL's files and sessions over two
 * memory BIOs, which conn.c pumps between the socket and the protocol (the same shape as
 * the server's host/server/tls.c, whose functions are bound to HTTP connections; what the
 * two share is the BIO pair, a handful of lines).
 */
#include "redis/conn.h"
#include "common/error.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>

/* Appends "what FILE: reason" (OpenSSL's last error) to err; returns LUAR_EINVAL. */
static int ssl_fail(luar_buf_t *err, const char *what, const char *file)
{
    unsigned long e = ERR_peek_last_error();
    char reason[256];
    ERR_error_string_n(e, reason, sizeof reason);
    luar_buf_appendf(err, "queue: rediss: %s %s: %s", what, file, e ? reason : "unknown error");
    ERR_clear_error();
    return LUAR_EINVAL;
}

int luar_redis_tls_ctx(const luar_redis_url_t *url, luar_ssl_ctx_t **out, luar_buf_t *err)
{
    *out = NULL;
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        return ssl_fail(err, "cannot create a context for", url->host);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int rc = 0;
    if (url->ca_file) {
        if (SSL_CTX_load_verify_locations(ctx, url->ca_file, NULL) != 1)
            rc = ssl_fail(err, "cannot load CA file", url->ca_file);
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        rc = ssl_fail(err, "cannot load the system CAs for", url->host);
    }
    if (rc == 0 && url->cert_file) {
        const char *key = url->key_file ? url->key_file : url->cert_file;
        if (SSL_CTX_use_certificate_chain_file(ctx, url->cert_file) != 1)
            rc = ssl_fail(err, "cannot load certificate", url->cert_file);
        else if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
            rc = ssl_fail(err, "cannot load private key", key);
        else if (SSL_CTX_check_private_key(ctx) != 1)
            rc = ssl_fail(err, "private key does not match the certificate in", key);
    }
    if (rc) {
        SSL_CTX_free(ctx);
        return rc;
    }
    *out = ctx;
    return 0;
}

static int is_ip(const char *name)
{
    unsigned char addr[16];
    return inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1;
}

luar_ssl_t *luar_redis_tls_session(luar_ssl_ctx_t *ctx, const char *name)
{
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL)
        return NULL;
    BIO *rbio = BIO_new(BIO_s_mem());
    BIO *wbio = BIO_new(BIO_s_mem());
    if (rbio == NULL || wbio == NULL) {
        BIO_free(rbio);
        BIO_free(wbio);
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_bio(ssl, rbio, wbio);
    SSL_set_connect_state(ssl);
    X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
    int ok;
    if (is_ip(name)) {
        ok = X509_VERIFY_PARAM_set1_ip_asc(param, name) == 1;
    } else {
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        ok = SSL_set1_host(ssl, name) == 1 && SSL_set_tlsext_host_name(ssl, name) == 1;
    }
    if (!ok) {
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    return ssl;
}

void luar_redis_tls_error(luar_ssl_t *ssl, char *buf, size_t size)
{
    long verify = SSL_get_verify_result(ssl);
    unsigned long e = ERR_peek_last_error();
    if (verify != X509_V_OK)
        snprintf(buf, size, "certificate verify failed: %s", X509_verify_cert_error_string(verify));
    else if (e)
        ERR_error_string_n(e, buf, size);
    else
        snprintf(buf, size, "protocol error");
    ERR_clear_error();
}
