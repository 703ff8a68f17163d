/*
 * A growable byte buffer with a hard cap (curl's dynbuf). Every buffer that grows with
 * input has a cap, so request bodies, headers and script output stay bounded.
 */
#ifndef LUAR_BUF_H
#define LUAR_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct luar_buf {
    char *data;  /* NULL until the first append; always NUL-terminated after one */
    size_t len;  /* bytes used, not counting the terminating NUL */
    size_t cap;  /* bytes allocated */
    size_t max;  /* hard cap on len; 0 means unbounded */
} luar_buf_t;

/* Initialises an empty buffer that may hold at most `max` bytes (0: no cap). */
void luar_buf_init(luar_buf_t *b, size_t max);

/* Frees the storage; the buffer is empty and reusable afterwards. */
void luar_buf_free(luar_buf_t *b);

/* Empties the buffer and keeps its storage. */
void luar_buf_reset(luar_buf_t *b);

/*
 * Appends `len` bytes. Returns 0, LUAR_ETOOBIG when the cap would be exceeded (nothing is
 * appended), or LUAR_ENOMEM.
 */
int luar_buf_append(luar_buf_t *b, const void *data, size_t len);

/* Appends a NUL-terminated string. Same returns as luar_buf_append. */
int luar_buf_puts(luar_buf_t *b, const char *s);

/* Appends one byte. Same returns as luar_buf_append. */
int luar_buf_putc(luar_buf_t *b, char c);

/* Appends printf-style formatted text. Same returns as luar_buf_append. */
int luar_buf_appendf(luar_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int luar_buf_vappendf(luar_buf_t *b, const char *fmt, va_list ap);

/*
 * Appends `s` as a JSON string: quoted, with quotes, backslashes and control characters
 * escaped. Invalid UTF-8 bytes are replaced by U+FFFD so the output is always valid JSON.
 */
int luar_buf_append_json_string(luar_buf_t *b, const char *s, size_t len);

/*
 * Returns the length (1-4) of the valid UTF-8 sequence at `s`, reading at most `n` bytes,
 * or 0 when the bytes there start no valid sequence (overlong forms and surrogates are
 * invalid).
 */
size_t luar_utf8_seq(const unsigned char *s, size_t n);

/* Writes the UTF-8 encoding of code point `cp` (at most 0x10FFFF) to `out`; returns its
 * length, 1 to 4. */
size_t luar_utf8_put(char out[4], unsigned long cp);

/*
 * A heap copy of `len` bytes followed by a NUL (binary-safe, unlike strndup: the bytes may
 * hold NULs); NULL when out of memory. The caller frees it.
 */
char *luar_memdup(const void *p, size_t len);

/* Takes the buffer's storage; the caller frees it with free(). The buffer becomes empty. */
char *luar_buf_detach(luar_buf_t *b, size_t *len);

#endif
