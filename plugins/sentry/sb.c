/* The plugin's string builder and JSON helpers (sb.h). */
#include "sb.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sentry_sb_init(sentry_sb_t *b)
{
    memset(b, 0, sizeof *b);
}

void sentry_sb_free(sentry_sb_t *b)
{
    free(b->data);
    sentry_sb_init(b);
}

void sentry_sb_reset(sentry_sb_t *b)
{
    b->len = 0;
    b->oom = 0;
    if (b->data)
        b->data[0] = '\0';
}

static int grow(sentry_sb_t *b, size_t n)
{
    if (b->oom)
        return -1;
    if (b->len + n + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (p == NULL) {
        b->oom = 1;
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

void sentry_sb_add(sentry_sb_t *b, const void *p, size_t n)
{
    if (n == 0 || grow(b, n))
        return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void sentry_sb_puts(sentry_sb_t *b, const char *s)
{
    sentry_sb_add(b, s, strlen(s));
}

void sentry_sb_printf(sentry_sb_t *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof tmp) {
        sentry_sb_add(b, tmp, (size_t)n);
        return;
    }
    if (grow(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* The length of the valid UTF-8 sequence at s (at most `left` bytes), 0 when invalid. */
static size_t utf8_len(const unsigned char *s, size_t left)
{
    size_t n;
    unsigned min;
    unsigned cp;
    if (s[0] < 0x80)
        return 1;
    if ((s[0] & 0xe0) == 0xc0)
        n = 2, min = 0x80, cp = s[0] & 0x1f;
    else if ((s[0] & 0xf0) == 0xe0)
        n = 3, min = 0x800, cp = s[0] & 0x0f;
    else if ((s[0] & 0xf8) == 0xf0)
        n = 4, min = 0x10000, cp = s[0] & 0x07;
    else
        return 0;
    if (n > left)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

void sentry_sb_json(sentry_sb_t *b, const char *s, size_t len, size_t max)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    if (s == NULL)
        len = 0;
    int cut = 0;
    if (max && len > max) {
        len = max;
        cut = 1;
    }
    sentry_sb_add(b, "\"", 1);
    size_t i = 0, run = 0;
    while (i < len) {
        unsigned char c = p[i];
        const char *esc = NULL;
        char u[8];
        size_t n = 1;
        if (c == '"')
            esc = "\\\"";
        else if (c == '\\')
            esc = "\\\\";
        else if (c == '\n')
            esc = "\\n";
        else if (c == '\r')
            esc = "\\r";
        else if (c == '\t')
            esc = "\\t";
        else if (c < 0x20 || c == 0x7f) {
            snprintf(u, sizeof u, "\\u%04x", c);
            esc = u;
        } else if (c >= 0x80) {
            n = utf8_len(p + i, len - i);
            if (n == 0) {
                if (cut && len - i < 4 && (c & 0xc0) != 0x80)
                    break; /* a sequence the cut split: drop it */
                esc = "\\ufffd";
                n = 1;
            }
        }
        if (esc == NULL) {
            run += n;
            i += n;
            continue;
        }
        sentry_sb_add(b, p + i - run, run);
        run = 0;
        sentry_sb_puts(b, esc);
        i += n;
    }
    sentry_sb_add(b, p + i - run, run);
    if (cut)
        sentry_sb_puts(b, "...");
    sentry_sb_add(b, "\"", 1);
}

char *sentry_sb_take(sentry_sb_t *b, size_t *len)
{
    char *s = b->oom ? NULL : b->data;
    if (b->oom)
        free(b->data);
    else if (s == NULL)
        s = calloc(1, 1);
    if (len)
        *len = s ? b->len : 0;
    sentry_sb_init(b);
    return s;
}
