/* Redaction of header values, URL passwords and query parameters for log lines. */
#include "client/redact.h"

#include <string.h>
#include <strings.h>

static int ends_with_ci(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len >= n && strncasecmp(s + len - n, suffix, n) == 0;
}

static int equals_ci(const char *s, size_t len, const char *word)
{
    return strlen(word) == len && strncasecmp(s, word, len) == 0;
}

static int contains_ci(const char *s, size_t len, const char *word)
{
    size_t n = strlen(word);
    for (size_t i = 0; i + n <= len; i++) {
        if (strncasecmp(s + i, word, n) == 0)
            return 1;
    }
    return 0;
}

int luar_redact_header_is_secret(const char *name, size_t len)
{
    return equals_ci(name, len, "authorization") || equals_ci(name, len, "proxy-authorization") ||
           equals_ci(name, len, "cookie") || equals_ci(name, len, "set-cookie") ||
           ends_with_ci(name, len, "-key") || ends_with_ci(name, len, "-token") ||
           ends_with_ci(name, len, "-secret");
}

int luar_redact_param_is_secret(const char *name, size_t len)
{
    static const char *const words[] = {"key",       "token",    "secret",
                                        "signature", "password", "passwd"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        if (contains_ci(name, len, words[i]))
            return 1;
    }
    return equals_ci(name, len, "sig") || equals_ci(name, len, "auth");
}

/* Appends the query `q` (without '?', up to '#' or the end) with secret values replaced. */
static int redact_query(luar_buf_t *out, const char *q, size_t len)
{
    size_t i = 0;
    int rc = 0;
    while (i < len && rc == 0) {
        size_t end = i;
        while (end < len && q[end] != '&')
            end++;
        const char *eq = memchr(q + i, '=', end - i);
        if (eq && luar_redact_param_is_secret(q + i, (size_t)(eq - (q + i)))) {
            rc = luar_buf_append(out, q + i, (size_t)(eq - (q + i)) + 1);
            if (rc == 0)
                rc = luar_buf_puts(out, LUAR_REDACTED);
        } else {
            rc = luar_buf_append(out, q + i, end - i);
        }
        if (rc == 0 && end < len)
            rc = luar_buf_putc(out, '&');
        i = end + 1;
    }
    return rc;
}

int luar_redact_url(luar_buf_t *out, const char *url)
{
    size_t len = strlen(url);
    const char *start = url;
    const char *scheme = strstr(url, "://");
    int rc = 0;
    if (scheme) {
        /* user:password@host: the password goes. */
        const char *auth = scheme + 3;
        size_t alen = strcspn(auth, "/?#");
        const char *at = NULL;
        for (size_t i = 0; i < alen; i++) {
            if (auth[i] == '@')
                at = auth + i;
        }
        const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
        if (colon) {
            rc = luar_buf_append(out, url, (size_t)(colon - url) + 1);
            if (rc == 0)
                rc = luar_buf_puts(out, LUAR_REDACTED);
            start = at;
        }
    }
    const char *q = strchr(start, '?');
    if (rc || q == NULL)
        return rc ? rc : luar_buf_puts(out, start);
    rc = luar_buf_append(out, start, (size_t)(q - start) + 1);
    const char *frag = strchr(q, '#');
    size_t qlen = frag ? (size_t)(frag - q - 1) : (size_t)(url + len - q - 1);
    if (rc == 0)
        rc = redact_query(out, q + 1, qlen);
    if (rc == 0 && frag)
        rc = luar_buf_puts(out, frag);
    return rc;
}

int luar_redact_header_json(luar_buf_t *out, const char *name, const char *value)
{
    if (luar_redact_header_is_secret(name, strlen(name)))
        return luar_buf_append_json_string(out, LUAR_REDACTED, strlen(LUAR_REDACTED));
    return luar_buf_append_json_string(out, value, strlen(value));
}
