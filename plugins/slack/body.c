/*
 * Reading Slack's request bodies without a JSON library: the scheme needs a handful of
 * top-level members (type, event_id, event.type, challenge, trigger_id) and the fields of
 * form posts (payload=, command=). The scanner only skips values to find a member; the host
 * validates the whole event with its own JSON parser before anything is stored, so a body
 * that scans but is not JSON is still refused (400).
 *
 * Every loop is bounded by the text's length; nesting is skipped by counting brackets, not
 * by recursion, so a deep body cannot exhaust the stack.
 */
#include "slack.h"

#include <stdlib.h>
#include <string.h>

static size_t skip_ws(const char *s, size_t n, size_t i)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

/* The end of the string token starting at s[i] == '"', or 0 when unterminated. */
static size_t string_end(const char *s, size_t n, size_t i)
{
    for (i++; i < n; i++) {
        if (s[i] == '\\')
            i++;
        else if (s[i] == '"')
            return i + 1;
    }
    return 0;
}

/* The end of the value starting at s[i], or 0 when it is not one. */
static size_t value_end(const char *s, size_t n, size_t i)
{
    if (i >= n)
        return 0;
    if (s[i] == '"')
        return string_end(s, n, i);
    if (s[i] == '{' || s[i] == '[') {
        size_t depth = 0;
        for (; i < n; i++) {
            char c = s[i];
            if (c == '"') {
                size_t e = string_end(s, n, i);
                if (e == 0)
                    return 0;
                i = e - 1;
            } else if (c == '{' || c == '[') {
                depth++;
            } else if (c == '}' || c == ']') {
                if (--depth == 0)
                    return i + 1;
            }
        }
        return 0;
    }
    size_t start = i;
    while (i < n && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' &&
           s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
        i++;
    return i > start ? i : 0;
}

int slack_json_member(const char *s, size_t n, const char *key, const char **v, size_t *vlen)
{
    size_t klen = strlen(key);
    size_t i = skip_ws(s, n, 0);
    if (i >= n || s[i] != '{')
        return 0;
    i = skip_ws(s, n, i + 1);
    while (i < n && s[i] == '"') {
        size_t kend = string_end(s, n, i);
        if (kend == 0)
            return 0;
        /* Keys are compared as written: Slack never escapes the ASCII names read here. */
        int match = kend - i - 2 == klen && memcmp(s + i + 1, key, klen) == 0;
        i = skip_ws(s, n, kend);
        if (i >= n || s[i] != ':')
            return 0;
        i = skip_ws(s, n, i + 1);
        size_t vend = value_end(s, n, i);
        if (vend == 0)
            return 0;
        if (match) {
            *v = s + i;
            *vlen = vend - i;
            return 1;
        }
        i = skip_ws(s, n, vend);
        if (i >= n || s[i] != ',')
            return 0;
        i = skip_ws(s, n, i + 1);
    }
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Appends code point cp as UTF-8. */
static int put_utf8(luar_buf_t *out, unsigned long cp)
{
    unsigned char b[4];
    size_t n;
    if (cp < 0x80) {
        b[0] = (unsigned char)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (unsigned char)(0xc0 | cp >> 6);
        b[1] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (unsigned char)(0xe0 | cp >> 12);
        b[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
        b[2] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        b[0] = (unsigned char)(0xf0 | cp >> 18);
        b[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
        b[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
        b[3] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    return slack_host->buf_append(out, b, n);
}

/* Four hex digits at s (at least 4 bytes), or -1. */
static long hex4(const char *s)
{
    long v = 0;
    for (int k = 0; k < 4; k++) {
        int h = hexval(s[k]);
        if (h < 0)
            return -1;
        v = v << 4 | h;
    }
    return v;
}

int slack_json_unquote(const char *v, size_t vlen, luar_buf_t *out)
{
    const luar_host_t *H = slack_host;
    if (vlen < 2 || v[0] != '"' || v[vlen - 1] != '"')
        return LUAR_PLUGIN_EPARSE;
    size_t i = 1, end = vlen - 1;
    while (i < end) {
        size_t run = i;
        while (run < end && v[run] != '\\')
            run++;
        if (run > i && H->buf_append(out, v + i, run - i) != 0)
            return LUAR_PLUGIN_ENOMEM;
        i = run;
        if (i >= end)
            break;
        if (i + 1 >= end)
            return LUAR_PLUGIN_EPARSE;
        char c = v[i + 1], lit;
        i += 2;
        switch (c) {
        case '"': lit = '"'; break;
        case '\\': lit = '\\'; break;
        case '/': lit = '/'; break;
        case 'b': lit = '\b'; break;
        case 'f': lit = '\f'; break;
        case 'n': lit = '\n'; break;
        case 'r': lit = '\r'; break;
        case 't': lit = '\t'; break;
        case 'u': {
            if (end - i < 4)
                return LUAR_PLUGIN_EPARSE;
            long cp = hex4(v + i);
            if (cp < 0)
                return LUAR_PLUGIN_EPARSE;
            i += 4;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                long lo = end - i >= 6 && v[i] == '\\' && v[i + 1] == 'u' ? hex4(v + i + 2) : -1;
                if (lo < 0xdc00 || lo > 0xdfff)
                    return LUAR_PLUGIN_EPARSE;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                i += 6;
            } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                return LUAR_PLUGIN_EPARSE;
            }
            if (put_utf8(out, (unsigned long)cp) != 0)
                return LUAR_PLUGIN_ENOMEM;
            continue;
        }
        default:
            return LUAR_PLUGIN_EPARSE;
        }
        if (H->buf_append(out, &lit, 1) != 0)
            return LUAR_PLUGIN_ENOMEM;
    }
    return 0;
}

/* Appends byte c, escaped for a JSON string. */
static int put_byte(luar_buf_t *out, unsigned char c)
{
    const luar_host_t *H = slack_host;
    if (c >= 0x20 && c != '"' && c != '\\')
        return H->buf_append(out, &c, 1);
    switch (c) {
    case '"': return H->buf_append(out, "\\\"", 2);
    case '\\': return H->buf_append(out, "\\\\", 2);
    case '\n': return H->buf_append(out, "\\n", 2);
    case '\r': return H->buf_append(out, "\\r", 2);
    case '\t': return H->buf_append(out, "\\t", 2);
    default: return H->buf_printf(out, "\\u%04x", c);
    }
}

/*
 * Appends the percent-decoding of s[0..n) ('+' is a space) JSON-escaped: decoding and
 * quoting in one pass, straight from the body into the host's buffer.
 */
static int form_decode_json(const char *s, size_t n, luar_buf_t *out)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            int hi = i + 2 < n ? hexval(s[i + 1]) : -1;
            int lo = hi >= 0 ? hexval(s[i + 2]) : -1;
            if (lo < 0)
                return LUAR_PLUGIN_EPARSE;
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
        }
        if (put_byte(out, c) != 0)
            return LUAR_PLUGIN_ENOMEM;
    }
    return 0;
}

/* The next "k=v" field of s[0..n) from *pos: its key and value spans (still encoded). */
static int next_field(const char *s, size_t n, size_t *pos, const char **k, size_t *klen,
                      const char **v, size_t *vlen)
{
    size_t i = *pos;
    while (i < n && s[i] == '&')
        i++;
    if (i >= n)
        return 0;
    size_t start = i;
    while (i < n && s[i] != '&')
        i++;
    *pos = i;
    const char *eq = memchr(s + start, '=', i - start);
    *k = s + start;
    *klen = eq ? (size_t)(eq - (s + start)) : i - start;
    *v = eq ? eq + 1 : s + i;
    *vlen = eq ? (size_t)(s + i - (eq + 1)) : 0;
    return 1;
}

int slack_form_find(const char *s, size_t n, const char *key, const char **v, size_t *vlen)
{
    size_t klen = strlen(key), pos = 0, fklen;
    const char *fk;
    while (next_field(s, n, &pos, &fk, &fklen, v, vlen)) {
        /* The names Slack uses are plain ASCII, never percent-encoded. */
        if (fklen == klen && memcmp(fk, key, klen) == 0)
            return 1;
    }
    return 0;
}

int slack_form_decode(const char *v, size_t vlen, char **out, size_t *out_len)
{
    char *d = malloc(vlen + 1);
    if (d == NULL)
        return LUAR_PLUGIN_ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < vlen; i++) {
        char c = v[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            int hi = i + 2 < vlen ? hexval(v[i + 1]) : -1;
            int lo = hi >= 0 ? hexval(v[i + 2]) : -1;
            if (lo < 0) {
                free(d);
                return LUAR_PLUGIN_EPARSE;
            }
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        d[n++] = c;
    }
    d[n] = '\0';
    *out = d;
    *out_len = n;
    return 0;
}

int slack_form_to_json(const char *s, size_t n, luar_buf_t *out)
{
    const luar_host_t *H = slack_host;
    size_t pos = 0, klen, vlen, nfields = 0;
    const char *k, *v;
    int rc = H->buf_append(out, "{", 1);
    while (rc == 0 && next_field(s, n, &pos, &k, &klen, &v, &vlen)) {
        if (nfields++)
            rc = H->buf_append(out, ",", 1);
        if (rc == 0)
            rc = H->buf_append(out, "\"", 1);
        if (rc == 0)
            rc = form_decode_json(k, klen, out);
        if (rc == 0)
            rc = H->buf_append(out, "\":\"", 3);
        if (rc == 0)
            rc = form_decode_json(v, vlen, out);
        if (rc == 0)
            rc = H->buf_append(out, "\"", 1);
    }
    if (rc == 0)
        rc = H->buf_append(out, "}", 1);
    return rc == LUAR_PLUGIN_EPARSE ? rc : rc != 0 ? LUAR_PLUGIN_ENOMEM : 0;
}
