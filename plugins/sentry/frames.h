/*
 * Lua tracebacks as Sentry stack frames. Lua writes a traceback newest call first:
 *
 *   stack traceback:
 *   	[C]: in function 'error'
 *   	handlers/orders.lua:12: in upvalue 'check'
 *   	handlers/orders.lua:30: in function <handlers/orders.lua:25>
 *   	(...tail calls...)
 *   	...	(skipping 3 levels)
 *   	[C]: in ?
 *
 * Sentry wants frames oldest first, the frame that raised last. Each frame has the file
 * ("[C]" for C functions), the function ("error", "check", "<anonymous>" for a function
 * known only by its position, "<main>" for a chunk's body, "?" when Lua does not know),
 * the line (0: none) and in_app (Lua code of the application: not C, not a string chunk).
 * Pointers point into the traceback text.
 */
#ifndef SENTRY_FRAMES_H
#define SENTRY_FRAMES_H

#include "sb.h"

#include <stddef.h>

#define SENTRY_MAX_FRAMES 64

typedef struct sentry_frame {
    const char *file;
    size_t file_len;
    const char *func;
    size_t func_len;
    long line;
    int in_app;
} sentry_frame_t;

/*
 * Parses `tb` into at most `max` frames in `out`, oldest first (when there are more, the
 * newest `max` are kept). Lines that are not frames (the heading, tail calls, skipped
 * levels) are left out. Returns the number of frames.
 */
size_t sentry_frames_parse(const char *tb, size_t len, sentry_frame_t *out, size_t max);

/*
 * The position at the start of an error message ("handlers/orders.lua:12: boom") as a
 * frame with function "?". Returns 1 when the message starts with one, else 0.
 */
int sentry_frames_from_message(const char *msg, size_t len, sentry_frame_t *out);

/* Appends {"frames":[{"filename":…,"function":…,"lineno":…,"in_app":…},…]}. */
void sentry_frames_json(sentry_sb_t *b, const sentry_frame_t *f, size_t n);

#endif
