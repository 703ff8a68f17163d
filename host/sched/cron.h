/*
 * Cron expressions and their next fire times in a time zone (SPEC §4 "Cron:", §8 "Cron").
 *
 * Syntax: five fields "min hour dom mon dow", or six with seconds first
 * ("sec min hour dom mon dow", as Quartz, Spring and croner); each field a list of `*`,
 * values, ranges `a-b` and steps (`*` / `a-b` / `a` followed by `/n`); month names JAN-DEC
 * and day names SUN-SAT in any case; day of week 0-7 with 0 and 7 both Sunday; `?` means `*`.
 * Aliases: @yearly @annually @monthly @weekly @daily @midnight @hourly.
 * When both day of month and day of week are restricted (neither is `*`), a day matches if
 * either matches (Vixie cron).
 *
 * Time zones and DST: a wall-clock time skipped by a forward jump fires at the first instant
 * after the gap (once); in a repeated hour a schedule with a fixed hour fires only in the
 * first occurrence, while one whose hour field is `*` or a step fires in both.
 */
#ifndef LUAR_SCHED_CRON_H
#define LUAR_SCHED_CRON_H

#include "common/buf.h"
#include "sched/tz.h"

#include <stdint.h>

/* A parsed expression: one bit per allowed value of each field. Plain data; copy freely. */
typedef struct luar_cron {
    uint64_t sec;          /* bits 0-59 */
    uint64_t min;          /* bits 0-59 */
    uint32_t hour;         /* bits 0-23 */
    uint32_t dom;          /* bits 1-31 */
    uint16_t mon;          /* bits 1-12 */
    uint8_t dow;           /* bits 0-6, Sunday is 0 */
    uint8_t dom_star : 1;  /* day of month was `*` (or `?`) */
    uint8_t dow_star : 1;  /* day of week was `*` (or `?`) */
    uint8_t hour_wild : 1; /* hour field has a `*` or a step: follows real time in DST */
} luar_cron_t;

/* The largest --count luar cron next accepts. */
#define LUAR_CRON_MAX_COUNT 1000

/*
 * Parses `expr` into *out. Returns 0, or LUAR_EPARSE and appends one line (no newline) to
 * `err` when not NULL, naming the field and quoting the expression, e.g.
 * `cron: field 2 (hour): 25 is out of range 0-23 in "0 25 * * *"`. Expressions that can
 * never fire (`0 0 30 2 *`) are refused here. The caller keeps `expr` and `err`.
 */
int luar_cron_parse(const char *expr, luar_cron_t *out, luar_buf_t *err);

/*
 * Sets *next to the first fire time of `c` strictly after unix time `after`, in zone `z`,
 * with the DST rules above. The search is bounded (about ten years of wall-clock time);
 * returns 0, or LUAR_ENOTFOUND when nothing fires within the bound (or past year 9999).
 */
int luar_cron_next_in(const luar_cron_t *c, const luar_tz_t *z, int64_t after, int64_t *next);

/*
 * luar_cron_next_in for a zone given by name (see luar_tz_load; NULL means UTC). Returns 0,
 * the error of luar_tz_load for an unknown zone, or LUAR_ENOTFOUND. Thread-safe.
 */
int luar_cron_next(const luar_cron_t *c, const char *tz, int64_t after, int64_t *next);

/*
 * The `luar cron next EXPR [--tz TZ] [--from ISO8601] [--count N]` command. `argv` holds
 * the arguments after "next" (argc of them); several positional arguments are joined with
 * spaces into one expression. Prints one "YYYY-MM-DDTHH:MM:SS±HH:MM" line per fire time to
 * stdout; errors go to stderr as one line naming the argument. Returns the exit status:
 * 0, or 2 for a usage error, a bad expression, zone or time, or no fire time.
 */
int luar_cron_cmd_next(int argc, char **argv);

#endif
