/*
 * Structured logging: one JSON object a line,
 *   {"ts":"2026-01-02T03:04:05.678Z","level":"info","msg":"...", ...fields}
 * to stdout or to a file with size rotation. Lines are buffered and flushed once per loop
 * iteration (luar_log_flush), when the buffer passes 64 KiB, and at once for warn/error,
 * so a busy server does not pay one write(2) per request.
 * Not thread-safe: called from the loop thread only.
 */
#ifndef LUAR_LOG_H
#define LUAR_LOG_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    LUAR_LOG_DEBUG = 0,
    LUAR_LOG_INFO = 1,
    LUAR_LOG_WARN = 2,
    LUAR_LOG_ERROR = 3,
} luar_log_level_t;

typedef struct luar_log_config {
    int level;          /* lowest level written */
    const char *file;   /* NULL: stdout. The string is copied. */
    uint64_t max_bytes; /* rotate the file when it would pass this size; 0: never */
    int backups;        /* rotated files kept: file.1 (newest) .. file.N */
} luar_log_config_t;

/*
 * Opens the log with `cfg` (may be called again to change it; the previous file is
 * closed). Returns 0, or LUAR_EIO when the file cannot be opened (the log stays on stdout).
 */
int luar_log_open(const luar_log_config_t *cfg);

/* Flushes and closes the log file; later lines go to stdout. */
void luar_log_close(void);

/* Reopens the log file by name (after an external rotation; SIGUSR1). Returns 0 or LUAR_EIO. */
int luar_log_reopen(void);

/* Writes out buffered lines. */
void luar_log_flush(void);

/* Sets the lowest level written. */
void luar_log_set_level(int level);

/* Returns nonzero when lines of `level` are written. */
int luar_log_enabled(int level);

/* Parses "debug"|"info"|"warn"|"warning"|"error". Returns 0 or LUAR_EINVAL. */
int luar_log_level_parse(const char *name, int *level);

/* Returns "debug", "info", "warn" or "error". */
const char *luar_log_level_name(int level);

/*
 * Writes one line. `fields` is a JSON object's members without braces, e.g.
 * "\"status\":200,\"path\":\"/x\"" (NULL or empty for none); it is appended after "msg".
 * The caller keeps both strings.
 */
void luar_log_write(int level, const char *msg, size_t msg_len, const char *fields,
                    size_t fields_len);

/* Writes one line whose message is printf-formatted, with no fields. */
void luar_logf(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Called with every line that passes the level filter, before it is written: `line` is the
 * JSON object without the trailing newline and is valid only during the call. Returning
 * nonzero consumes the line (it is not written). Used by `luar test` to capture records.
 */
typedef int (*luar_log_hook_fn)(void *ud, int level, const char *line, size_t len);

/* Installs `fn` (NULL removes it); `ud` is passed back and stays owned by the caller. */
void luar_log_set_hook(luar_log_hook_fn fn, void *ud);

/*
 * Taps observe lines without consuming them (the plugins' on_log hooks): each tap is
 * called with every line that passes the level filter, scrubbed, after the line was
 * written (or consumed by the hook above). `line` (no newline) is valid only during the
 * call and must be copied before the tap logs anything itself; lines logged from inside
 * a tap are written but not tapped, so a tap cannot recurse. At most LUAR_LOG_MAX_TAPS.
 * luar_log_add_tap returns 0 or LUAR_ETOOBIG; adding a (fn, ud) pair twice is a no-op.
 */
#define LUAR_LOG_MAX_TAPS 8
typedef void (*luar_log_tap_fn)(void *ud, int level, const char *line, size_t len);
int luar_log_add_tap(luar_log_tap_fn fn, void *ud);
void luar_log_remove_tap(luar_log_tap_fn fn, void *ud);

#endif
