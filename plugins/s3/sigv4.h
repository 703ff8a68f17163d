/*
 * AWS Signature Version 4 for S3 (docs.aws.amazon.com/AmazonS3/latest/API/
 * sig-v4-authenticating-requests.html): the canonical request, the string to sign, the
 * signing key derived by the HMAC chain AWS4<secret> → date → region → service →
 * "aws4_request" (cached per credentials for one day/region/service), and the signature,
 * either as an Authorization header or as a presigned URL's query string.
 *
 * Paths and query parts are given raw (not percent-encoded): the encoding is S3's, done
 * here once, and the caller builds its URL with s3_uri_encode so that what is sent is
 * exactly what was signed.
 */
#ifndef S3_SIGV4_H
#define S3_SIGV4_H

#include <luar/plugin.h>
#include <stddef.h>

/* The host table (set by the plugin's init). */
extern const luar_host_t *s3_host;

typedef struct s3_creds {
    char *access_key;
    char *secret_key;
    size_t secret_len;
    char *token; /* session token; NULL when none */
    /* the last derived signing key and what it was derived for */
    char key_scope[128]; /* "<date>/<region>/<service>" */
    unsigned char key[32];
} s3_creds_t;

typedef struct s3_kv {
    const char *name;
    const char *value;
} s3_kv_t;

typedef struct s3_sign_req {
    const char *method;       /* "GET", "PUT", ... */
    const char *host;         /* the Host header: "bucket.s3.us-east-1.amazonaws.com", "127.0.0.1:9000" */
    const char *path;         /* raw path, starting with "/" */
    const s3_kv_t *query;     /* raw query parameters (value "" for a bare "?lifecycle") */
    size_t nquery;
    const s3_kv_t *headers;   /* headers to sign besides host and x-amz-* (any case) */
    size_t nheaders;
    const char *payload_hash; /* hex SHA-256 of the body, or "UNSIGNED-PAYLOAD" */
    const char *region;
    const char *service;      /* "s3" */
    const char *amz_date;     /* "20130524T000000Z" */
} s3_sign_req_t;

/* Appends the URI encoding of S3 to `out`: A-Z a-z 0-9 - _ . ~ as is, '/' as is when
 * keep_slash (object key paths), every other byte as %XY (upper-case hex). */
int s3_uri_encode(luar_buf_t *out, const char *s, size_t len, int keep_slash);

/* The lower-case hex SHA-256 of `data` into out (65 bytes with the NUL). */
int s3_sha256_hex(const void *data, size_t len, char out[65]);

/* Formats unix seconds as an ISO 8601 basic date-time, "20130524T000000Z". */
void s3_amz_date(double seconds, char out[17]);

/*
 * Signs a request for the Authorization header. Appends the header's value to `auth`,
 * and, when not NULL, the canonical request and the string to sign to `canonical` and
 * `sts` (what a test compares with AWS's examples). The caller sends the headers it gave
 * plus host, x-amz-date, x-amz-content-sha256 (the payload hash) and, with a session
 * token, x-amz-security-token: all of them signed. Returns 0 or LUAR_PLUGIN_E*.
 */
int s3_sign(s3_creds_t *c, const s3_sign_req_t *r, luar_buf_t *auth, luar_buf_t *canonical,
            luar_buf_t *sts);

/*
 * Presigns a request (query-string authentication) valid `expires` seconds (1..604800):
 * appends the whole canonical query string, X-Amz-Signature last, to `query` (ready to
 * follow "?"). The payload hash is normally "UNSIGNED-PAYLOAD".
 */
int s3_presign(s3_creds_t *c, const s3_sign_req_t *r, long expires, luar_buf_t *query,
               luar_buf_t *canonical, luar_buf_t *sts);

/* Frees and wipes credentials. */
void s3_creds_free(s3_creds_t *c);

#endif
