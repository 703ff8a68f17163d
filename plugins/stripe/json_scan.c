/*
 * Just enough JSON for the webhook scheme: find the top-level "id" and "type" of an event
 * without building a tree. The host validates the event's JSON fully before it enqueues
 * it (a plugin's scheme is not trusted to), so this scanner only has to be safe on any
 * input: bounded depth, no reads past the end, and honest about what it could not parse.
 *
 * The plugin ABI has no JSON helper (the host's own schemes use host/common/json.h), hence
 * this file.
 */
#include "stripe.h"

#include <string.h>

#define MAX_DEPTH 512

typedef struct scan {
    const char *p, *end;
    const char *why;
} scan_t;

static void skip_ws(scan_t *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int bad(scan_t *s, const char *why)
{
    if (s->why == NULL)
        s->why = why;
    return -1;
}

/* Skips a string starting at the quote. */
static int skip_string(scan_t *s)
{
    s->p++; /* the opening quote */
    while (s->p < s->end) {
        unsigned char c = (unsigned char)*s->p++;
        if (c == '"')
            return 0;
        if (c == '\\') {
            if (s->p >= s->end)
                break;
            s->p++;
        } else if (c < 0x20) {
            return bad(s, "a string holds a control character");
        }
    }
    return bad(s, "a string is not terminated");
}

static int skip_value(scan_t *s, int depth);

static int skip_container(scan_t *s, int depth, char close, int members)
{
    if (depth >= MAX_DEPTH)
        return bad(s, "the JSON nests too deep");
    s->p++; /* [ or { */
    skip_ws(s);
    if (s->p < s->end && *s->p == close) {
        s->p++;
        return 0;
    }
    for (;;) {
        skip_ws(s);
        if (members) {
            if (s->p >= s->end || *s->p != '"')
                return bad(s, "an object member has no string name");
            if (skip_string(s))
                return -1;
            skip_ws(s);
            if (s->p >= s->end || *s->p != ':')
                return bad(s, "an object member has no ':'");
            s->p++;
        }
        if (skip_value(s, depth + 1))
            return -1;
        skip_ws(s);
        if (s->p >= s->end)
            return bad(s, "the JSON ends inside an object or array");
        if (*s->p == ',') {
            s->p++;
            continue;
        }
        if (*s->p == close) {
            s->p++;
            return 0;
        }
        return bad(s, "expected ',' or the end of an object or array");
    }
}

static int skip_value(scan_t *s, int depth)
{
    skip_ws(s);
    if (s->p >= s->end)
        return bad(s, "a value is missing");
    char c = *s->p;
    if (c == '"')
        return skip_string(s);
    if (c == '{')
        return skip_container(s, depth, '}', 1);
    if (c == '[')
        return skip_container(s, depth, ']', 0);
    /* numbers and literals: a run of their characters */
    const char *start = s->p;
    while (s->p < s->end && (strchr("+-.eE", *s->p) || (*s->p >= '0' && *s->p <= '9') ||
                             (*s->p >= 'a' && *s->p <= 'z')))
        s->p++;
    if (s->p == start)
        return bad(s, "unexpected character");
    return 0;
}

int stripe_json_member(const char *text, size_t len, const char *key, const char **val,
                       size_t *val_len, const char **why)
{
    scan_t s = {text, text + len, NULL};
    size_t klen = strlen(key);
    int found = 0;
    skip_ws(&s);
    if (s.p >= s.end || *s.p != '{') {
        *why = "the body is not a JSON object";
        return -1;
    }
    s.p++;
    skip_ws(&s);
    if (s.p < s.end && *s.p == '}')
        return 0;
    for (;;) {
        skip_ws(&s);
        if (s.p >= s.end || *s.p != '"') {
            *why = "the body is not JSON: an object member has no string name";
            return -1;
        }
        const char *name = s.p + 1;
        if (skip_string(&s)) {
            *why = s.why;
            return -1;
        }
        size_t name_len = (size_t)(s.p - 1 - name);
        skip_ws(&s);
        if (s.p >= s.end || *s.p != ':') {
            *why = "the body is not JSON: an object member has no ':'";
            return -1;
        }
        s.p++;
        skip_ws(&s);
        const char *v = s.p;
        if (skip_value(&s, 1)) {
            *why = s.why;
            return -1;
        }
        /* The first occurrence wins, as in the host's JSON scanner. */
        if (!found && name_len == klen && memcmp(name, key, klen) == 0) {
            *val = v;
            *val_len = (size_t)(s.p - v);
            found = 1;
        }
        skip_ws(&s);
        if (s.p < s.end && *s.p == ',') {
            s.p++;
            continue;
        }
        if (s.p < s.end && *s.p == '}')
            return found;
        *why = "the body is not JSON: expected ',' or '}' in the top-level object";
        return -1;
    }
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static long read_u16(const char *p, const char *end)
{
    if (end - p < 4)
        return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

int stripe_json_unquote(const char *raw, size_t len, luar_buf_t *out)
{
    if (len < 2 || raw[0] != '"' || raw[len - 1] != '"')
        return LUAR_PLUGIN_EPARSE;
    const char *p = raw + 1, *end = raw + len - 1;
    while (p < end) {
        const char *run = p;
        while (p < end && *p != '\\' && (unsigned char)*p >= 0x20)
            p++;
        if (p > run && stripe_host->buf_append(out, run, (size_t)(p - run)))
            return LUAR_PLUGIN_ENOMEM;
        if (p >= end)
            break;
        if ((unsigned char)*p < 0x20 || p + 1 >= end)
            return LUAR_PLUGIN_EPARSE;
        char c = p[1];
        p += 2;
        char one = 0;
        switch (c) {
        case '"': one = '"'; break;
        case '\\': one = '\\'; break;
        case '/': one = '/'; break;
        case 'b': one = '\b'; break;
        case 'f': one = '\f'; break;
        case 'n': one = '\n'; break;
        case 'r': one = '\r'; break;
        case 't': one = '\t'; break;
        case 'u': {
            long cp = read_u16(p, end);
            if (cp < 0)
                return LUAR_PLUGIN_EPARSE;
            p += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) { /* a surrogate pair */
                long lo = end - p >= 6 && p[0] == '\\' && p[1] == 'u' ? read_u16(p + 2, end) : -1;
                if (lo < 0xDC00 || lo > 0xDFFF)
                    return LUAR_PLUGIN_EPARSE;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return LUAR_PLUGIN_EPARSE;
            }
            unsigned char u[4];
            size_t n;
            if (cp < 0x80) {
                u[0] = (unsigned char)cp;
                n = 1;
            } else if (cp < 0x800) {
                u[0] = (unsigned char)(0xC0 | (cp >> 6));
                u[1] = (unsigned char)(0x80 | (cp & 0x3F));
                n = 2;
            } else if (cp < 0x10000) {
                u[0] = (unsigned char)(0xE0 | (cp >> 12));
                u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
                u[2] = (unsigned char)(0x80 | (cp & 0x3F));
                n = 3;
            } else {
                u[0] = (unsigned char)(0xF0 | (cp >> 18));
                u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
                u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
                u[3] = (unsigned char)(0x80 | (cp & 0x3F));
                n = 4;
            }
            if (stripe_host->buf_append(out, u, n))
                return LUAR_PLUGIN_ENOMEM;
            continue;
        }
        default:
            return LUAR_PLUGIN_EPARSE;
        }
        if (stripe_host->buf_append(out, &one, 1))
            return LUAR_PLUGIN_ENOMEM;
    }
    return 0;
}
