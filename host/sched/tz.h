/*
 * Time zones for schedules: IANA zones read from the system's compiled tzdata (TZif files
 * under /usr/share/zoneinfo, or $TZDIR), UTC, and fixed offsets ("+05:30"). The reader takes
 * the 64-bit transition table and, past its last entry, the POSIX TZ rule of the file's
 * footer, so no lookup ever switches the process-wide TZ. Loaded zones are immutable and
 * cached for the life of the process, so they may be shared between threads.
 */
#ifndef LUAR_SCHED_TZ_H
#define LUAR_SCHED_TZ_H

#include "common/buf.h"

#include <stddef.h>
#include <stdint.h>

/* A loaded zone; opaque. Owned by the zone cache, never freed by callers. */
typedef struct luar_tz luar_tz_t;

/*
 * The stretch of time around an instant in which a zone's UTC offset stays the same:
 * [start, end). Offsets are seconds east of UTC.
 */
typedef struct luar_tz_span {
    int64_t start;      /* the transition that began the span; INT64_MIN when none */
    int64_t end;        /* the next transition; INT64_MAX when none */
    int32_t off;        /* the offset within the span */
    int32_t off_before; /* the offset just before `start` (equal to `off` when none) */
    int32_t off_after;  /* the offset from `end` on (equal to `off` when none) */
} luar_tz_span_t;

/* Longest accepted zone name, in bytes. */
#define LUAR_TZ_NAME_MAX 128

/* Room for a timestamp formatted by luar_tz_format, NUL included. */
#define LUAR_TZ_ISO_SIZE 40

/*
 * Finds the zone `name`: "UTC" (also "Z", "Etc/UTC"), a fixed offset "+HH:MM", "-HHMM" or
 * "+HH", or an IANA name such as "Europe/London". The first use of a name reads its TZif
 * file; later uses return the cached zone. Thread-safe.
 * Returns 0 and sets *out (owned by the cache), LUAR_EINVAL for a malformed name,
 * LUAR_ENOTFOUND for an unknown zone, LUAR_EPARSE for an unreadable file, or LUAR_ENOMEM.
 * On failure appends one line (without newline) naming the zone to `err` when not NULL.
 */
int luar_tz_load(const char *name, const luar_tz_t **out, luar_buf_t *err);

/* Returns the zone's name as given to luar_tz_load. The string belongs to the zone. */
const char *luar_tz_name(const luar_tz_t *z);

/* Returns the zone's UTC offset in seconds east of UTC at unix time `t`. */
int32_t luar_tz_offset(const luar_tz_t *z, int64_t t);

/* Fills *span with the constant-offset stretch of `z` that contains unix time `t`. */
void luar_tz_span(const luar_tz_t *z, int64_t t, luar_tz_span_t *span);

/*
 * Converts a local wall-clock time of `z`, given as seconds since 1970-01-01T00:00:00 in
 * local time, to a unix time. A time repeated by a backward jump gives its first occurrence;
 * a time skipped by a forward jump gives the first instant after the gap.
 */
int64_t luar_tz_local_to_utc(const luar_tz_t *z, int64_t wall);

/*
 * Writes unix time `t` as seen in `z` to `out` as "YYYY-MM-DDTHH:MM:SS±HH:MM" (with
 * ":SS" appended to the offset only for offsets that are not whole minutes). `size` must be
 * at least LUAR_TZ_ISO_SIZE. Returns 0, or LUAR_EINVAL when the year is outside 0000-9999
 * or `size` is too small.
 */
int luar_tz_format(const luar_tz_t *z, int64_t t, char *out, size_t size);

/*
 * Parses an ISO 8601 time: "YYYY-MM-DD", "YYYY-MM-DDTHH:MM", "YYYY-MM-DDTHH:MM:SS" with an
 * optional fraction (dropped: the result is the whole second at or before the time), and an
 * optional offset "Z", "±HH", "±HH:MM" or "±HHMM"; a space may replace the "T". A time
 * without an offset is local time in `z`, converted as luar_tz_local_to_utc does.
 * Returns 0 and sets *out, or LUAR_EINVAL with a reason appended to `err` (when not NULL).
 */
int luar_tz_parse_iso(const char *s, const luar_tz_t *z, int64_t *out, luar_buf_t *err);

/*
 * Parses a point in time given by a person: unix seconds (a non-negative decimal number,
 * fractions kept) or ISO 8601 as luar_tz_parse_iso reads it, UTC unless it has an offset.
 * For the `since`/`until` filters of `luar jobs` and the admin API. Returns 0 and sets
 * *out, or LUAR_EINVAL.
 */
int luar_tz_parse_time(const char *s, double *out);

/*
 * Frees every cached zone. Only for tests and process exit: no thread may hold a zone
 * pointer or call into this module while it runs.
 */
void luar_tz_cache_clear(void);

/* Civil calendar helpers shared with the cron code (proleptic Gregorian, UTC-like). */

/* Returns the number of days from 1970-01-01 to y-m-d (negative before). */
int64_t luar_days_from_civil(int64_t y, int m, int d);

/* Splits a day number from 1970-01-01 into year, month (1-12) and day (1-31). */
void luar_civil_from_days(int64_t days, int64_t *y, int *m, int *d);

/* Returns the number of days in month `m` (1-12) of year `y`. */
int luar_days_in_month(int64_t y, int m);

#endif
