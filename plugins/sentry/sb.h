/*
 * A growable string for building JSON, and the few JSON helpers the plugin needs: string
 * escaping (invalid UTF-8 becomes U+FFFD, so Sentry never rejects an event for one bad
 * byte of a Lua string). Reading JSON (log lines) is the host's json_member.
 * Out of memory is sticky: `oom` is set and later appends do nothing.
 */
#ifndef SENTRY_SB_H
#define SENTRY_SB_H

#include <stddef.h>

typedef struct sentry_sb {
    char *data; /* NUL-terminated when not NULL */
    size_t len, cap;
    int oom;
} sentry_sb_t;

void sentry_sb_init(sentry_sb_t *b);
void sentry_sb_free(sentry_sb_t *b);
void sentry_sb_reset(sentry_sb_t *b);
void sentry_sb_add(sentry_sb_t *b, const void *p, size_t n);
void sentry_sb_puts(sentry_sb_t *b, const char *s);
void sentry_sb_printf(sentry_sb_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends `s` as a quoted JSON string; at most `max` bytes of it (0: all), cut on a
 * character boundary. */
void sentry_sb_json(sentry_sb_t *b, const char *s, size_t len, size_t max);
/* Takes the text (the caller frees it) and leaves `b` empty; NULL when out of memory. */
char *sentry_sb_take(sentry_sb_t *b, size_t *len);

#endif
