/*
 * JSON scanning without Lua (json.h): a validator that follows RFC 8259 to the letter
 * (strict number grammar, escapes, UTF-8, no lone surrogates, nothing after the value) and
 * readers that take slices of an already validated text.
 *
 * The validator recurses once per nesting level; the depth bound keeps that recursion (and
 * the stack it uses) small whatever the input. The readers never recurse: they skip values
 * by counting brackets outside strings, which is enough once the text is known valid, and
 * they stay inside `len` even when it is not.
 */
#include "common/json.h"
#include "common/error.h"

#include <stdint.h>
#include <string.h>

/* Keeps the validator's recursion bounded even when a caller asks for a huge depth. */
#define JSON_DEPTH_CEILING 4096

typedef struct scan {
    const unsigned char *s;
    size_t len;
    size_t pos;
    int max_depth;
    luar_buf_t *why;
} scan_t;

static int fail(scan_t *sc, const char *what)
{
    if (sc->why) {
        if (sc->pos >= sc->len)
            luar_buf_appendf(sc->why, "at byte %zu: %s (end of text)", sc->pos, what);
        else
            luar_buf_appendf(sc->why, "at byte %zu: %s", sc->pos, what);
    }
    return LUAR_EPARSE;
}

static int is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void skip_ws(scan_t *sc)
{
    while (sc->pos < sc->len && is_ws(sc->s[sc->pos]))
        sc->pos++;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Reads the 4 hex digits after "\u" at `p` (bounds checked by the caller). -1 if not hex. */
static long read_u4(const unsigned char *p)
{
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0)
            return -1;
        v = (v << 4) | h;
    }
    return v;
}

/* Eight bytes with the same value `b` in each. */
#define BYTES8(b) (0x0101010101010101ULL * (uint64_t)(b))

/*
 * Nonzero when one of the eight bytes of `x` is not plain: below 0x20, at or above 0x80,
 * '"' or '\\'. Exact as a yes/no (the classic "has a zero byte" tests: a byte compared
 * equal is zeroed by the xor; a byte below 0x20 borrows when 0x20 is subtracted).
 */
static int has_special8(uint64_t x)
{
    uint64_t high = BYTES8(0x80);
    uint64_t quote = x ^ BYTES8('"'), bslash = x ^ BYTES8('\\');
    uint64_t below = (x - BYTES8(0x20)) & ~x;
    uint64_t zq = (quote - BYTES8(1)) & ~quote, zb = (bslash - BYTES8(1)) & ~bslash;
    return ((x | below | zq | zb) & high) != 0;
}

/*
 * The length of the run of plain bytes at `p` (printable ASCII other than '"' and '\\'):
 * most of a JSON text's bytes, which need no check beyond being such a byte. Eight at a
 * time while it can; the byte that ends the run takes the exact path of scan_string.
 */
static size_t plain_run(const unsigned char *p, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, p + i, 8);
        if (has_special8(x))
            break;
    }
    while (i < n && p[i] >= 0x20 && p[i] < 0x80 && p[i] != '"' && p[i] != '\\')
        i++;
    return i;
}

/* A string starting at the opening quote; leaves pos after the closing quote. */
static int scan_string(scan_t *sc)
{
    sc->pos++; /* the opening quote */
    while (sc->pos < sc->len) {
        sc->pos += plain_run(sc->s + sc->pos, sc->len - sc->pos);
        if (sc->pos >= sc->len)
            break;
        unsigned char c = sc->s[sc->pos];
        if (c == '"') {
            sc->pos++;
            return 0;
        }
        if (c < 0x20)
            return fail(sc, "control character in string");
        if (c == '\\') {
            if (sc->pos + 1 >= sc->len)
                break;
            unsigned char e = sc->s[sc->pos + 1];
            if (strchr("\"\\/bfnrt", e) != NULL && e != '\0') {
                sc->pos += 2;
                continue;
            }
            if (e != 'u') {
                sc->pos++;
                return fail(sc, "invalid escape in string");
            }
            if (sc->pos + 6 > sc->len)
                return fail(sc, "truncated \\u escape");
            long u = read_u4(sc->s + sc->pos + 2);
            if (u < 0)
                return fail(sc, "invalid \\u escape");
            if (u >= 0xDC00 && u <= 0xDFFF)
                return fail(sc, "lone low surrogate \\u escape");
            if (u >= 0xD800 && u <= 0xDBFF) {
                long lo = -1;
                if (sc->pos + 12 <= sc->len && sc->s[sc->pos + 6] == '\\' &&
                    sc->s[sc->pos + 7] == 'u')
                    lo = read_u4(sc->s + sc->pos + 8);
                if (lo < 0xDC00 || lo > 0xDFFF)
                    return fail(sc, "lone high surrogate \\u escape");
                sc->pos += 12;
            } else {
                sc->pos += 6;
            }
            continue;
        }
        size_t n = luar_utf8_seq(sc->s + sc->pos, sc->len - sc->pos);
        if (n == 0)
            return fail(sc, "invalid UTF-8 in string");
        sc->pos += n;
    }
    return fail(sc, "unterminated string");
}

static int scan_digits(scan_t *sc)
{
    size_t start = sc->pos;
    while (sc->pos < sc->len && sc->s[sc->pos] >= '0' && sc->s[sc->pos] <= '9')
        sc->pos++;
    return sc->pos > start;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int scan_number(scan_t *sc)
{
    if (sc->s[sc->pos] == '-')
        sc->pos++;
    if (sc->pos < sc->len && sc->s[sc->pos] == '0') {
        sc->pos++;
    } else if (!scan_digits(sc)) {
        return fail(sc, "expected a digit");
    }
    if (sc->pos < sc->len && sc->s[sc->pos] == '.') {
        sc->pos++;
        if (!scan_digits(sc))
            return fail(sc, "expected a digit after '.'");
    }
    if (sc->pos < sc->len && (sc->s[sc->pos] == 'e' || sc->s[sc->pos] == 'E')) {
        sc->pos++;
        if (sc->pos < sc->len && (sc->s[sc->pos] == '+' || sc->s[sc->pos] == '-'))
            sc->pos++;
        if (!scan_digits(sc))
            return fail(sc, "expected a digit in exponent");
    }
    return 0;
}

static int scan_literal(scan_t *sc, const char *word)
{
    size_t n = strlen(word);
    if (sc->len - sc->pos < n || memcmp(sc->s + sc->pos, word, n) != 0)
        return fail(sc, "expected a value");
    sc->pos += n;
    return 0;
}

static int scan_value(scan_t *sc, int depth);

/* An object or array starting at its bracket; `close` is '}' or ']'. */
static int scan_container(scan_t *sc, int depth, unsigned char close)
{
    if (depth >= sc->max_depth)
        return fail(sc, "nesting too deep");
    sc->pos++;
    skip_ws(sc);
    if (sc->pos < sc->len && sc->s[sc->pos] == close) {
        sc->pos++;
        return 0;
    }
    for (;;) {
        int rc;
        if (close == '}') {
            if (sc->pos >= sc->len || sc->s[sc->pos] != '"')
                return fail(sc, "expected a string key");
            if ((rc = scan_string(sc)) != 0)
                return rc;
            skip_ws(sc);
            if (sc->pos >= sc->len || sc->s[sc->pos] != ':')
                return fail(sc, "expected ':'");
            sc->pos++;
        }
        rc = scan_value(sc, depth + 1);
        if (rc)
            return rc;
        skip_ws(sc);
        if (sc->pos < sc->len && sc->s[sc->pos] == ',') {
            sc->pos++;
            skip_ws(sc);
            continue;
        }
        if (sc->pos < sc->len && sc->s[sc->pos] == close) {
            sc->pos++;
            return 0;
        }
        return fail(sc, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

/* A value after optional whitespace; `depth` is the number of enclosing containers. */
static int scan_value(scan_t *sc, int depth)
{
    skip_ws(sc);
    if (sc->pos >= sc->len)
        return fail(sc, "expected a value");
    switch (sc->s[sc->pos]) {
    case '{':
        return scan_container(sc, depth, '}');
    case '[':
        return scan_container(sc, depth, ']');
    case '"':
        return scan_string(sc);
    case 't':
        return scan_literal(sc, "true");
    case 'f':
        return scan_literal(sc, "false");
    case 'n':
        return scan_literal(sc, "null");
    default:
        if (sc->s[sc->pos] == '-' || (sc->s[sc->pos] >= '0' && sc->s[sc->pos] <= '9'))
            return scan_number(sc);
        return fail(sc, "expected a value");
    }
}

int luar_json_validate(const char *s, size_t len, int max_depth, luar_buf_t *why)
{
    scan_t sc = {(const unsigned char *)s, s ? len : 0, 0, max_depth, why};
    if (sc.max_depth <= 0)
        sc.max_depth = LUAR_JSON_MAX_DEPTH;
    if (sc.max_depth > JSON_DEPTH_CEILING)
        sc.max_depth = JSON_DEPTH_CEILING;
    int rc = scan_value(&sc, 0);
    if (rc)
        return rc;
    skip_ws(&sc);
    if (sc.pos != sc.len)
        return fail(&sc, "unexpected text after the JSON value");
    return 0;
}

/* ---- readers of validated text -------------------------------------------------------- */

/*
 * Skips the value at `pos` (no leading whitespace) and returns the position after it.
 * Brackets are counted outside strings only; never reads past `len`.
 */
static size_t skip_value(const char *s, size_t len, size_t pos)
{
    int depth = 0;
    while (pos < len) {
        char c = s[pos];
        if (c == '"') {
            pos++;
            while (pos < len && s[pos] != '"')
                pos += s[pos] == '\\' ? 2 : 1;
            pos++;
            if (depth == 0)
                return pos > len ? len : pos;
            continue;
        }
        if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (depth == 0)
                return pos; /* the end of the enclosing container: a scalar ended here */
            if (--depth == 0)
                return pos + 1;
        } else if (depth == 0 && (c == ',' || c == ':' || is_ws((unsigned char)c))) {
            return pos;
        }
        pos++;
    }
    return len;
}

static size_t skip_ws_at(const char *s, size_t len, size_t pos)
{
    while (pos < len && is_ws((unsigned char)s[pos]))
        pos++;
    return pos;
}

/* Compares the raw JSON string `raw` (with quotes) to `key` after decoding escapes. */
static int key_equals(const char *raw, size_t rawlen, const char *key)
{
    size_t klen = strlen(key);
    if (memchr(raw, '\\', rawlen) == NULL)
        return rawlen == klen + 2 && memcmp(raw + 1, key, klen) == 0;
    luar_buf_t b;
    luar_buf_init(&b, klen + 8);
    int eq = luar_json_unquote(raw, rawlen, &b) == 0 && b.len == klen &&
             (klen == 0 || memcmp(b.data, key, klen) == 0);
    luar_buf_free(&b);
    return eq;
}

int luar_json_member(const char *s, size_t len, const char *key, const char **val,
                     size_t *vlen)
{
    size_t pos = skip_ws_at(s, len, 0);
    if (pos >= len || s[pos] != '{')
        return 0;
    pos++;
    for (;;) {
        pos = skip_ws_at(s, len, pos);
        if (pos >= len || s[pos] != '"')
            return 0; /* '}' of an empty object, or not valid text */
        size_t kstart = pos;
        pos = skip_value(s, len, pos);
        size_t kend = pos;
        pos = skip_ws_at(s, len, pos);
        if (pos >= len || s[pos] != ':')
            return 0;
        pos = skip_ws_at(s, len, pos + 1);
        size_t vstart = pos;
        pos = skip_value(s, len, pos);
        if (pos == vstart)
            return 0;
        if (key_equals(s + kstart, kend - kstart, key)) {
            *val = s + vstart;
            *vlen = pos - vstart;
            return 1;
        }
        pos = skip_ws_at(s, len, pos);
        if (pos >= len || s[pos] != ',')
            return 0;
        pos++;
    }
}

int luar_json_array_next(const char *s, size_t len, size_t *pos, const char **el,
                         size_t *ellen)
{
    size_t p = *pos;
    if (p == 0) {
        p = skip_ws_at(s, len, 0);
        if (p >= len || s[p] != '[') {
            *pos = len;
            return 0;
        }
        p = skip_ws_at(s, len, p + 1);
        if (p >= len || s[p] == ']') {
            *pos = len;
            return 0;
        }
    } else {
        p = skip_ws_at(s, len, p);
        if (p >= len || s[p] != ',') {
            *pos = len;
            return 0;
        }
        p = skip_ws_at(s, len, p + 1);
    }
    size_t end = skip_value(s, len, p);
    if (end == p) {
        *pos = len;
        return 0;
    }
    *el = s + p;
    *ellen = end - p;
    *pos = end;
    return 1;
}

static int put_utf8(luar_buf_t *out, unsigned long cp)
{
    char u[4];
    return luar_buf_append(out, u, luar_utf8_put(u, cp));
}

int luar_json_unquote(const char *val, size_t vlen, luar_buf_t *out)
{
    if (vlen < 2 || val[0] != '"' || val[vlen - 1] != '"')
        return LUAR_EPARSE;
    const unsigned char *p = (const unsigned char *)val + 1;
    const unsigned char *end = (const unsigned char *)val + vlen - 1;
    int rc = 0;
    while (p < end && rc == 0) {
        const unsigned char *run = p;
        while (p < end && *p != '\\')
            p++;
        if (p > run)
            rc = luar_buf_append(out, run, (size_t)(p - run));
        if (p >= end || rc)
            break;
        if (end - p < 2)
            return LUAR_EPARSE;
        unsigned char e = p[1];
        static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
        const char *hit = e ? strchr(from, e) : NULL;
        if (hit) {
            rc = luar_buf_putc(out, to[hit - from]);
            p += 2;
            continue;
        }
        if (e != 'u' || end - p < 6)
            return LUAR_EPARSE;
        long cp = read_u4(p + 2);
        p += 6;
        if (cp < 0 || (cp >= 0xDC00 && cp <= 0xDFFF))
            return LUAR_EPARSE;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            long lo = -1;
            if (end - p >= 6 && p[0] == '\\' && p[1] == 'u')
                lo = read_u4(p + 2);
            if (lo < 0xDC00 || lo > 0xDFFF)
                return LUAR_EPARSE;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            p += 6;
        }
        rc = put_utf8(out, (unsigned long)cp);
    }
    return rc;
}
