/*
 * Parsing redis:// and rediss:// URLs (see url.h).
 */
#include "redis/url.h"
#include "common/error.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_PORT 6379
#define DEFAULT_PREFIX "luar:"
#define DEFAULT_TIMEOUT 10.0

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* A percent-decoded copy of s[0..n), or NULL (out of memory, or a bad or NUL escape). */
static char *decode(const char *s, size_t n, int *bad)
{
    char *out = malloc(n + 1);
    if (out == NULL)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi = i + 2 < n ? hexval((unsigned char)s[i + 1]) : -1;
            int lo = i + 2 < n ? hexval((unsigned char)s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                *bad = 1;
                free(out);
                return NULL;
            }
            out[k++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            out[k++] = s[i];
        }
    }
    out[k] = '\0';
    return out;
}

static int fail(luar_buf_t *err, const char *scheme, const char *what)
{
    luar_buf_appendf(err, "%s URL: %s", scheme, what);
    return LUAR_EINVAL;
}

/* Parses a whole decimal integer in [lo, hi]. */
static int parse_int(const char *s, size_t n, long lo, long hi, long *out)
{
    if (n == 0 || n > 10)
        return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* Sets one query option; returns 0 or LUAR_EINVAL/LUAR_ENOMEM with a message. */
static int set_option(luar_redis_url_t *u, const char *scheme, const char *name, char *value,
                      luar_buf_t *err)
{
    char **slot = NULL;
    if (strcmp(name, "prefix") == 0)
        slot = &u->prefix;
    else if (strcmp(name, "ca") == 0)
        slot = &u->ca_file;
    else if (strcmp(name, "cert") == 0)
        slot = &u->cert_file;
    else if (strcmp(name, "key") == 0)
        slot = &u->key_file;
    else if (strcmp(name, "server_name") == 0)
        slot = &u->server_name;
    if (slot) {
        if (slot != &u->prefix && !u->tls) {
            luar_buf_appendf(err, "%s URL: option \"%s\" needs rediss:// (TLS)", scheme,
                             name);
            free(value);
            return LUAR_EINVAL;
        }
        free(*slot);
        *slot = value;
        return 0;
    }
    if (strcmp(name, "timeout") == 0) {
        char *end = NULL;
        errno = 0;
        double t = strtod(value, &end);
        int ok = errno == 0 && end != value && *end == '\0' && isfinite(t) && t > 0 && t <= 3600;
        free(value);
        if (!ok)
            return fail(err, scheme, "option \"timeout\" must be seconds in (0, 3600]");
        u->timeout = t;
        return 0;
    }
    luar_buf_appendf(err,
                     "%s URL: unknown option \"%s\" (expected prefix, ca, cert, key, "
                     "server_name or timeout)",
                     scheme, name);
    free(value);
    return LUAR_EINVAL;
}

static int parse_query(luar_redis_url_t *u, const char *scheme, const char *q, luar_buf_t *err)
{
    while (*q) {
        size_t len = strcspn(q, "&");
        const char *eq = memchr(q, '=', len);
        if (len == 0) {
            q++;
            continue;
        }
        if (eq == NULL)
            return fail(err, scheme, "query options are name=value pairs");
        int bad = 0;
        char *name = decode(q, (size_t)(eq - q), &bad);
        char *value = name ? decode(eq + 1, len - (size_t)(eq - q) - 1, &bad) : NULL;
        if (name == NULL || value == NULL) {
            free(name);
            free(value);
            return bad ? fail(err, scheme, "bad percent escape in the query") : LUAR_ENOMEM;
        }
        int rc = set_option(u, scheme, name, value, err);
        free(name);
        if (rc)
            return rc;
        q += len;
        if (*q == '&')
            q++;
    }
    return 0;
}

int luar_redis_url_parse(const char *url, luar_redis_url_t *out, luar_buf_t *err)
{
    memset(out, 0, sizeof *out);
    luar_redis_url_t *u = out;
    const char *scheme = "redis";
    const char *p;
    int rc = LUAR_EINVAL;
    if (strncmp(url, "redis://", 8) == 0) {
        p = url + 8;
    } else if (strncmp(url, "rediss://", 9) == 0) {
        p = url + 9;
        u->tls = 1;
        scheme = "rediss";
    } else {
        luar_buf_puts(err, "a Redis URL starts with redis:// or rediss://");
        return LUAR_EINVAL;
    }
    u->port = DEFAULT_PORT;
    u->timeout = DEFAULT_TIMEOUT;

    /* authority = [userinfo@]host[:port]; the userinfo ends at the LAST '@' before the path,
     * so a password may hold an unescaped '@'. */
    size_t alen = strcspn(p, "/?");
    const char *auth = p, *host = p;
    const char *at = NULL;
    for (size_t i = 0; i < alen; i++) {
        if (p[i] == '@')
            at = p + i;
    }
    int bad = 0;
    if (at) {
        const char *colon = memchr(auth, ':', (size_t)(at - auth));
        if (colon == NULL) {
            rc = fail(err, scheme, "a user needs a password (user:password@host)");
            goto fail;
        }
        if (colon > auth) {
            u->user = decode(auth, (size_t)(colon - auth), &bad);
            if (u->user == NULL)
                goto decode_failed;
        }
        u->password = decode(colon + 1, (size_t)(at - colon - 1), &bad);
        if (u->password == NULL)
            goto decode_failed;
        host = at + 1;
    }
    size_t hlen = (size_t)(p + alen - host);
    const char *port = NULL;
    if (hlen > 0 && host[0] == '[') {
        const char *close = memchr(host, ']', hlen);
        if (close == NULL) {
            rc = fail(err, scheme, "unclosed [ in an IPv6 address");
            goto fail;
        }
        u->host = decode(host + 1, (size_t)(close - host - 1), &bad);
        if (close + 1 < host + hlen) {
            if (close[1] != ':') {
                rc = fail(err, scheme, "expected :port after ]");
                goto fail;
            }
            port = close + 2;
        }
    } else {
        const char *colon = memchr(host, ':', hlen);
        u->host = decode(host, colon ? (size_t)(colon - host) : hlen, &bad);
        if (colon)
            port = colon + 1;
    }
    if (u->host == NULL)
        goto decode_failed;
    if (u->host[0] == '\0') {
        rc = fail(err, scheme, "no host (redis://host:port/db)");
        goto fail;
    }
    if (port) {
        long v;
        if (parse_int(port, (size_t)(p + alen - port), 1, 65535, &v)) {
            rc = fail(err, scheme, "port must be a number from 1 to 65535");
            goto fail;
        }
        u->port = (int)v;
    }
    p += alen;
    if (*p == '/') {
        p++;
        size_t dlen = strcspn(p, "?");
        long v = 0;
        if (dlen > 0 && parse_int(p, dlen, 0, INT_MAX, &v)) {
            rc = fail(err, scheme, "the path is a database number (redis://host:port/0)");
            goto fail;
        }
        u->db = (int)v;
        p += dlen;
    }
    if (*p == '?') {
        rc = parse_query(u, scheme, p + 1, err);
        if (rc)
            goto fail;
    }
    if (u->prefix == NULL) {
        u->prefix = strdup(DEFAULT_PREFIX);
        if (u->prefix == NULL) {
            rc = LUAR_ENOMEM;
            goto fail;
        }
    }
    if (u->key_file && u->cert_file == NULL) {
        rc = fail(err, scheme, "option \"key\" needs \"cert\"");
        goto fail;
    }
    return 0;

decode_failed:
    rc = bad ? fail(err, scheme, "bad percent escape") : LUAR_ENOMEM;
fail:
    luar_redis_url_free(u);
    return rc;
}

void luar_redis_url_free(luar_redis_url_t *u)
{
    free(u->host);
    free(u->user);
    free(u->password);
    free(u->prefix);
    free(u->ca_file);
    free(u->cert_file);
    free(u->key_file);
    free(u->server_name);
    memset(u, 0, sizeof *u);
}
