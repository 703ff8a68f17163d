/*
 * AWS Signature Version 4 for S3 (see sigv4.h). HMAC-SHA256 is the host's
 * (host->hmac); the plain SHA-256 of payloads and canonical requests comes from OpenSSL's
 * libcrypto, which the plugin links because the host API table has no digest function.
 */
#include "sigv4.h"

#include <openssl/evp.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const luar_host_t *s3_host;

#define ALGORITHM "AWS4-HMAC-SHA256"

/* ---- small helpers ------------------------------------------------------------------ */

static int unreserved(unsigned char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '_' || ch == '.' || ch == '~';
}

/* The encoding of s as a new NUL-terminated string (NULL when out of memory). */
static char *encode(const char *s, size_t len, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = malloc(len * 3 + 1), *p = out;
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (unreserved(ch) || (keep_slash && ch == '/')) {
            *p++ = (char)ch;
        } else {
            *p++ = '%';
            *p++ = hex[ch >> 4];
            *p++ = hex[ch & 15];
        }
    }
    *p = '\0';
    return out;
}

int s3_uri_encode(luar_buf_t *out, const char *s, size_t len, int keep_slash)
{
    char *e = encode(s, len, keep_slash);
    if (e == NULL)
        return LUAR_PLUGIN_ENOMEM;
    int rc = s3_host->buf_append(out, e, strlen(e));
    free(e);
    return rc;
}

int s3_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int n = 0;
    if (EVP_Digest(data, len, md, &n, EVP_sha256(), NULL) != 1 || n != 32)
        return LUAR_PLUGIN_EIO;
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return 0;
}

void s3_amz_date(double seconds, char out[17])
{
    time_t t = (time_t)seconds;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

static int hmac(const unsigned char *key, size_t key_len, const char *data, unsigned char out[32])
{
    unsigned char mac[64];
    size_t n = 0;
    int rc = s3_host->hmac("sha256", key, key_len, data, strlen(data), mac, &n);
    if (rc == 0 && n != 32)
        rc = LUAR_PLUGIN_EIO;
    if (rc == 0)
        memcpy(out, mac, 32);
    return rc;
}

/* The signing key for date/region/service: HMAC chain from "AWS4" + secret, kept in the
 * credentials until another day, region or service asks for one. */
static int signing_key(s3_creds_t *c, const char *date, const char *region, const char *service)
{
    char scope[sizeof c->key_scope];
    int n = snprintf(scope, sizeof scope, "%s/%s/%s", date, region, service);
    if (n < 0 || (size_t)n >= sizeof scope)
        return LUAR_PLUGIN_EINVAL;
    if (strcmp(scope, c->key_scope) == 0)
        return 0;
    size_t klen = 4 + c->secret_len;
    unsigned char *k0 = malloc(klen);
    if (k0 == NULL)
        return LUAR_PLUGIN_ENOMEM;
    memcpy(k0, "AWS4", 4);
    memcpy(k0 + 4, c->secret_key, c->secret_len);
    unsigned char k1[32], k2[32], k3[32];
    int rc = hmac(k0, klen, date, k1);
    if (rc == 0)
        rc = hmac(k1, 32, region, k2);
    if (rc == 0)
        rc = hmac(k2, 32, service, k3);
    if (rc == 0)
        rc = hmac(k3, 32, "aws4_request", c->key);
    OPENSSL_cleanse(k0, klen);
    OPENSSL_cleanse(k1, 32);
    OPENSSL_cleanse(k2, 32);
    OPENSSL_cleanse(k3, 32);
    free(k0);
    if (rc == 0)
        memcpy(c->key_scope, scope, sizeof scope);
    else
        c->key_scope[0] = '\0';
    return rc;
}

/* ---- the canonical request --------------------------------------------------------- */

typedef struct pair {
    char *name;
    char *value;
} pair_t;

static int cmp_pair(const void *a, const void *b)
{
    const pair_t *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->value, y->value);
}

static void free_pairs(pair_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(p[i].name);
        free(p[i].value);
    }
    free(p);
}

/* A header value as signed: leading and trailing spaces trimmed, runs of spaces one. */
static char *header_value(const char *v)
{
    size_t len = strlen(v);
    char *out = malloc(len + 1), *p = out;
    if (out == NULL)
        return NULL;
    while (*v == ' ' || *v == '\t')
        v++;
    int space = 0;
    for (; *v; v++) {
        if (*v == ' ' || *v == '\t') {
            space = 1;
            continue;
        }
        if (space && p > out)
            *p++ = ' ';
        space = 0;
        *p++ = *v;
    }
    *p = '\0';
    return out;
}

static char *lower(const char *s)
{
    char *out = strdup(s);
    for (char *p = out; p && *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    return out;
}

static int has_header(const pair_t *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(h[i].name, name) == 0)
            return 1;
    return 0;
}

static int add_pair(pair_t *p, size_t *n, char *name, char *value)
{
    if (name == NULL || value == NULL) {
        free(name);
        free(value);
        return LUAR_PLUGIN_ENOMEM;
    }
    p[*n].name = name;
    p[*n].value = value;
    (*n)++;
    return 0;
}

/*
 * Builds the canonical request into `out` and the signed header list into `signed_hdrs`.
 * `extra_query` (presigning's X-Amz-* parameters, already raw) join the request's query;
 * `header_auth` adds x-amz-date, x-amz-content-sha256 and x-amz-security-token to the
 * signed headers when the caller did not give them.
 */
static int canonical_request(const s3_creds_t *c, const s3_sign_req_t *r,
                             const s3_kv_t *extra_query, size_t nextra, int header_auth,
                             luar_buf_t *out, luar_buf_t *signed_hdrs)
{
    const luar_host_t *h = s3_host;
    int rc = 0;
    size_t nq = 0, nh = 0;
    pair_t *q = calloc(r->nquery + nextra + 1, sizeof *q);
    pair_t *hd = calloc(r->nheaders + 4, sizeof *hd);
    if (q == NULL || hd == NULL) {
        rc = LUAR_PLUGIN_ENOMEM;
        goto done;
    }
    for (size_t i = 0; i < r->nquery + nextra && rc == 0; i++) {
        const s3_kv_t *kv = i < r->nquery ? &r->query[i] : &extra_query[i - r->nquery];
        const char *v = kv->value ? kv->value : "";
        rc = add_pair(q, &nq, encode(kv->name, strlen(kv->name), 0), encode(v, strlen(v), 0));
    }
    for (size_t i = 0; i < r->nheaders && rc == 0; i++) {
        char *name = lower(r->headers[i].name);
        if (name != NULL && (strcmp(name, "host") == 0 || has_header(hd, nh, name))) {
            free(name); /* host is ours; a name given twice is signed once */
            continue;
        }
        rc = add_pair(hd, &nh, name, header_value(r->headers[i].value));
    }
    if (rc == 0)
        rc = add_pair(hd, &nh, strdup("host"), strdup(r->host));
    if (rc == 0 && header_auth && !has_header(hd, nh, "x-amz-date"))
        rc = add_pair(hd, &nh, strdup("x-amz-date"), strdup(r->amz_date));
    if (rc == 0 && header_auth && !has_header(hd, nh, "x-amz-content-sha256"))
        rc = add_pair(hd, &nh, strdup("x-amz-content-sha256"), strdup(r->payload_hash));
    if (rc == 0 && header_auth && c->token && !has_header(hd, nh, "x-amz-security-token"))
        rc = add_pair(hd, &nh, strdup("x-amz-security-token"), strdup(c->token));
    if (rc)
        goto done;
    qsort(q, nq, sizeof *q, cmp_pair);
    qsort(hd, nh, sizeof *hd, cmp_pair);

    const char *path = r->path && r->path[0] ? r->path : "/";
    rc = h->buf_printf(out, "%s\n", r->method);
    if (rc == 0)
        rc = s3_uri_encode(out, path, strlen(path), 1);
    if (rc == 0)
        rc = h->buf_append(out, "\n", 1);
    for (size_t i = 0; i < nq && rc == 0; i++)
        rc = h->buf_printf(out, "%s%s=%s", i ? "&" : "", q[i].name, q[i].value);
    if (rc == 0)
        rc = h->buf_append(out, "\n", 1);
    for (size_t i = 0; i < nh && rc == 0; i++)
        rc = h->buf_printf(out, "%s:%s\n", hd[i].name, hd[i].value);
    if (rc == 0)
        rc = h->buf_append(out, "\n", 1);
    for (size_t i = 0; i < nh && rc == 0; i++)
        rc = h->buf_printf(signed_hdrs, "%s%s", i ? ";" : "", hd[i].name);
    if (rc == 0) {
        size_t len;
        const char *s = h->buf_data(signed_hdrs, &len);
        rc = h->buf_append(out, s, len);
    }
    if (rc == 0)
        rc = h->buf_printf(out, "\n%s", r->payload_hash);
done:
    if (q)
        free_pairs(q, nq);
    if (hd)
        free_pairs(hd, nh);
    return rc;
}

/* The string to sign for `canonical` into `sts`, and the hex signature into sig. */
static int signature(s3_creds_t *c, const s3_sign_req_t *r, luar_buf_t *canonical,
                     luar_buf_t *sts, char sig[65])
{
    const luar_host_t *h = s3_host;
    char date[9], hash[65];
    snprintf(date, sizeof date, "%.8s", r->amz_date);
    size_t len;
    const char *cr = h->buf_data(canonical, &len);
    int rc = s3_sha256_hex(cr, len, hash);
    if (rc == 0)
        rc = h->buf_printf(sts, ALGORITHM "\n%s\n%s/%s/%s/aws4_request\n%s", r->amz_date, date,
                           r->region, r->service, hash);
    if (rc == 0)
        rc = signing_key(c, date, r->region, r->service);
    if (rc)
        return rc;
    const char *s = h->buf_data(sts, &len);
    unsigned char mac[64];
    size_t n = 0;
    rc = h->hmac("sha256", c->key, 32, s, len, mac, &n);
    for (size_t i = 0; rc == 0 && i < n && i < 32; i++)
        snprintf(sig + 2 * i, 3, "%02x", mac[i]);
    return rc;
}

static int check_req(const s3_sign_req_t *r)
{
    if (r->method == NULL || r->host == NULL || r->region == NULL || r->service == NULL ||
        r->amz_date == NULL || strlen(r->amz_date) != 16 || r->payload_hash == NULL)
        return LUAR_PLUGIN_EINVAL;
    return 0;
}

/* Scratch buffers for one signing; the caller's when given. */
typedef struct scratch {
    luar_buf_t *canonical, *sts, *signed_hdrs;
    int own_canonical, own_sts;
} scratch_t;

static int scratch_init(scratch_t *s, luar_buf_t *canonical, luar_buf_t *sts)
{
    memset(s, 0, sizeof *s);
    s->own_canonical = canonical == NULL;
    s->own_sts = sts == NULL;
    s->canonical = canonical ? canonical : s3_host->buf_new(0);
    s->sts = sts ? sts : s3_host->buf_new(0);
    s->signed_hdrs = s3_host->buf_new(0);
    return s->canonical && s->sts && s->signed_hdrs ? 0 : LUAR_PLUGIN_ENOMEM;
}

static void scratch_free(scratch_t *s)
{
    if (s->own_canonical && s->canonical)
        s3_host->buf_free(s->canonical);
    if (s->own_sts && s->sts)
        s3_host->buf_free(s->sts);
    if (s->signed_hdrs)
        s3_host->buf_free(s->signed_hdrs);
}

int s3_sign(s3_creds_t *c, const s3_sign_req_t *r, luar_buf_t *auth, luar_buf_t *canonical,
            luar_buf_t *sts)
{
    int rc = check_req(r);
    if (rc)
        return rc;
    scratch_t s;
    char sig[65] = "";
    rc = scratch_init(&s, canonical, sts);
    if (rc == 0)
        rc = canonical_request(c, r, NULL, 0, 1, s.canonical, s.signed_hdrs);
    if (rc == 0)
        rc = signature(c, r, s.canonical, s.sts, sig);
    if (rc == 0) {
        size_t len;
        const char *sh = s3_host->buf_data(s.signed_hdrs, &len);
        rc = s3_host->buf_printf(auth,
                                 ALGORITHM " Credential=%s/%.8s/%s/%s/aws4_request,"
                                           "SignedHeaders=%.*s,Signature=%s",
                                 c->access_key, r->amz_date, r->region, r->service, (int)len,
                                 sh, sig);
    }
    scratch_free(&s);
    return rc;
}

int s3_presign(s3_creds_t *c, const s3_sign_req_t *r, long expires, luar_buf_t *query,
               luar_buf_t *canonical, luar_buf_t *sts)
{
    int rc = check_req(r);
    if (rc)
        return rc;
    if (expires < 1 || expires > 604800)
        return LUAR_PLUGIN_EINVAL;
    char credential[512], exp[24];
    int n = snprintf(credential, sizeof credential, "%s/%.8s/%s/%s/aws4_request",
                     c->access_key, r->amz_date, r->region, r->service);
    if (n < 0 || (size_t)n >= sizeof credential)
        return LUAR_PLUGIN_EINVAL;
    snprintf(exp, sizeof exp, "%ld", expires);

    /* The signed headers are known before the canonical request is built: every header
     * given plus host, sorted (computed again by canonical_request, which checks it). */
    scratch_t s;
    rc = scratch_init(&s, canonical, sts);
    luar_buf_t *names = s3_host->buf_new(0);
    if (names == NULL)
        rc = LUAR_PLUGIN_ENOMEM;
    if (rc == 0) {
        /* a dry run for the signed header list: the same code, discarded request */
        luar_buf_t *dry = s3_host->buf_new(0);
        rc = dry ? canonical_request(c, r, NULL, 0, 0, dry, names) : LUAR_PLUGIN_ENOMEM;
        if (dry)
            s3_host->buf_free(dry);
    }
    size_t nlen = 0;
    const char *signed_names = rc == 0 ? s3_host->buf_data(names, &nlen) : "";
    char *signed_copy = rc == 0 ? strndup(signed_names, nlen) : NULL;
    if (rc == 0 && signed_copy == NULL)
        rc = LUAR_PLUGIN_ENOMEM;
    s3_kv_t extra[6];
    size_t nextra = 0;
    if (rc == 0) {
        extra[nextra++] = (s3_kv_t){"X-Amz-Algorithm", ALGORITHM};
        extra[nextra++] = (s3_kv_t){"X-Amz-Credential", credential};
        extra[nextra++] = (s3_kv_t){"X-Amz-Date", r->amz_date};
        extra[nextra++] = (s3_kv_t){"X-Amz-Expires", exp};
        if (c->token)
            extra[nextra++] = (s3_kv_t){"X-Amz-Security-Token", c->token};
        extra[nextra++] = (s3_kv_t){"X-Amz-SignedHeaders", signed_copy};
        s3_host->buf_reset(names);
        rc = canonical_request(c, r, extra, nextra, 0, s.canonical, names);
    }
    char sig[65] = "";
    if (rc == 0)
        rc = signature(c, r, s.canonical, s.sts, sig);
    if (rc == 0) {
        /* the query as sent: the canonical query string (the line after the path) plus
         * the signature */
        size_t len;
        const char *cr = s3_host->buf_data(s.canonical, &len);
        const char *q = memchr(cr, '\n', len);
        q = q ? memchr(q + 1, '\n', len - (size_t)(q + 1 - cr)) : NULL;
        const char *qend = q ? memchr(q + 1, '\n', len - (size_t)(q + 1 - cr)) : NULL;
        if (q == NULL || qend == NULL)
            rc = LUAR_PLUGIN_EIO;
        else
            rc = s3_host->buf_printf(query, "%.*s&X-Amz-Signature=%s", (int)(qend - q - 1),
                                     q + 1, sig);
    }
    free(signed_copy);
    if (names)
        s3_host->buf_free(names);
    scratch_free(&s);
    return rc;
}

void s3_creds_free(s3_creds_t *c)
{
    if (c->secret_key)
        OPENSSL_cleanse(c->secret_key, c->secret_len);
    if (c->token)
        OPENSSL_cleanse(c->token, strlen(c->token));
    OPENSSL_cleanse(c->key, sizeof c->key);
    free(c->access_key);
    free(c->secret_key);
    free(c->token);
    memset(c, 0, sizeof *c);
}
