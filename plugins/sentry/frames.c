/* Lua tracebacks as Sentry stack frames (frames.h). */
#include "frames.h"

#include <string.h>

static int starts(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(s, prefix, n) == 0;
}

/* Finds `needle` in s[0..len); returns its offset or len. */
static size_t find(const char *s, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(s + i, needle, n) == 0)
            return i;
    return len;
}

/* "file:123" at the end of s[0..len): splits it. Returns 1 when there is a line number. */
static int split_position(const char *s, size_t len, size_t *file_len, long *line)
{
    size_t i = len;
    while (i > 0 && s[i - 1] >= '0' && s[i - 1] <= '9')
        i--;
    if (i == len || i < 2 || s[i - 1] != ':' || len - i > 9)
        return 0;
    long n = 0;
    for (size_t k = i; k < len; k++)
        n = n * 10 + (s[k] - '0');
    *file_len = i - 1;
    *line = n;
    return 1;
}

static int in_app(const char *file, size_t len)
{
    return !(starts(file, len, "[C]") || starts(file, len, "[string ") || len == 0);
}

/* One traceback line (without the tab and newline) into *f; 0 when it is not a frame. */
static int parse_line(const char *s, size_t len, sentry_frame_t *f)
{
    size_t at = find(s, len, ": in ");
    if (at == len)
        return 0;
    memset(f, 0, sizeof *f);
    f->file = s;
    f->file_len = at;
    long line = 0;
    size_t file_len;
    if (split_position(s, at, &file_len, &line)) {
        f->file_len = file_len;
        f->line = line;
    }
    f->in_app = in_app(f->file, f->file_len);
    const char *what = s + at + 5;
    size_t wlen = len - at - 5;
    /* "function 'name'", "local 'name'", "method 'name'", "field 'name'", "upvalue 'name'",
     * "for iterator 'for iterator'" (and 5.1's "function <file:1>"-less forms) */
    size_t q = find(what, wlen, "'");
    if (q < wlen && wlen >= 2 && what[wlen - 1] == '\'' && wlen - 1 > q) {
        f->func = what + q + 1;
        f->func_len = wlen - q - 2;
    } else if (starts(what, wlen, "function <")) {
        f->func = "<anonymous>";
        f->func_len = 11;
    } else if (starts(what, wlen, "main chunk")) {
        f->func = "<main>";
        f->func_len = 6;
    } else {
        f->func = "?";
        f->func_len = 1;
    }
    return 1;
}

size_t sentry_frames_parse(const char *tb, size_t len, sentry_frame_t *out, size_t max)
{
    size_t n = 0;
    size_t i = 0;
    if (tb == NULL || max == 0)
        return 0;
    /* Newest first into `out`, keeping the first `max` (the newest). */
    while (i < len) {
        size_t e = i;
        while (e < len && tb[e] != '\n')
            e++;
        const char *s = tb + i;
        size_t l = e - i;
        while (l > 0 && (*s == '\t' || *s == ' ')) {
            s++;
            l--;
        }
        while (l > 0 && (s[l - 1] == '\r' || s[l - 1] == ' '))
            l--;
        sentry_frame_t f;
        if (!starts(s, l, "stack traceback:") && !starts(s, l, "(...tail calls...)") &&
            !starts(s, l, "...") && parse_line(s, l, &f)) {
            if (n < max)
                out[n++] = f;
        }
        i = e + 1;
    }
    for (size_t a = 0, b = n ? n - 1 : 0; a < b; a++, b--) {
        sentry_frame_t t = out[a];
        out[a] = out[b];
        out[b] = t;
    }
    return n;
}

int sentry_frames_from_message(const char *msg, size_t len, sentry_frame_t *out)
{
    size_t at = find(msg, len, ": ");
    if (at == len)
        return 0;
    size_t file_len;
    long line;
    if (!split_position(msg, at, &file_len, &line) || file_len == 0)
        return 0;
    memset(out, 0, sizeof *out);
    out->file = msg;
    out->file_len = file_len;
    out->line = line;
    out->func = "?";
    out->func_len = 1;
    out->in_app = in_app(msg, file_len);
    return 1;
}

void sentry_frames_json(sentry_sb_t *b, const sentry_frame_t *f, size_t n)
{
    sentry_sb_puts(b, "{\"frames\":[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            sentry_sb_puts(b, ",");
        sentry_sb_puts(b, "{\"filename\":");
        sentry_sb_json(b, f[i].file, f[i].file_len, 512);
        sentry_sb_puts(b, ",\"function\":");
        sentry_sb_json(b, f[i].func, f[i].func_len, 256);
        if (f[i].line > 0)
            sentry_sb_printf(b, ",\"lineno\":%ld", f[i].line);
        sentry_sb_puts(b, f[i].in_app ? ",\"in_app\":true}" : ",\"in_app\":false}");
    }
    sentry_sb_puts(b, "]}");
}
