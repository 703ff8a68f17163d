/*
 * Cron expressions: the parser, the search for the next matching wall-clock time, and its
 * mapping onto real time through a zone's constant-offset spans, which is where the DST
 * rules of SPEC §8 live (see luar_cron_next_in).
 */
#include "sched/cron.h"
#include "common/error.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define DAY 86400
#define MIN_UNIX (-62135596800LL) /* 0001-01-01T00:00:00Z */
#define MAX_UNIX 253402300799LL   /* 9999-12-31T23:59:59Z */
#define SEARCH_DAYS (366 * 12)    /* a Feb 29 can be eight years away (2096 to 2104) */
#define MAX_FIELDS 6

typedef struct field_def {
    const char *name;
    int lo, hi;
    const char *const *names; /* names[i] is value lo + i, or NULL */
} field_def_t;

static const char *const month_names[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL",
                                          "AUG", "SEP", "OCT", "NOV", "DEC", NULL};
static const char *const day_names[] = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", NULL};

/* Seconds first, as in six-field expressions; five-field ones start at index 1. */
static const field_def_t field_defs[MAX_FIELDS] = {
    {"second", 0, 59, NULL},       {"minute", 0, 59, NULL},       {"hour", 0, 23, NULL},
    {"day of month", 1, 31, NULL}, {"month", 1, 12, month_names}, {"day of week", 0, 7, day_names},
};

static const struct {
    const char *alias, *expr;
} aliases[] = {
    {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

/* What a field error needs to name its place: "field 2 (hour) … in \"expr\"". */
typedef struct parse_ctx {
    const char *expr;
    luar_buf_t *err;
    int number; /* 1-based position in the expression as written */
    const field_def_t *def;
} parse_ctx_t;

__attribute__((format(printf, 2, 3))) static int field_fail(const parse_ctx_t *cx, const char *fmt,
                                                            ...)
{
    if (cx->err) {
        va_list ap;
        va_start(ap, fmt);
        luar_buf_appendf(cx->err, "cron: field %d (%s): ", cx->number, cx->def->name);
        luar_buf_vappendf(cx->err, fmt, ap);
        luar_buf_appendf(cx->err, " in \"%s\"", cx->expr);
        va_end(ap);
    }
    return LUAR_EPARSE;
}

/*
 * Reads one value (a number or, where the field has them, a name) from [p, end). `range_end`
 * makes SUN mean 7 so "FRI-SUN" works. Returns 0 or LUAR_EPARSE after reporting.
 */
static int parse_value(const parse_ctx_t *cx, const char *p, const char *end, int range_end,
                       int *out)
{
    char tok[16];
    size_t n = (size_t)(end - p);
    snprintf(tok, sizeof tok, "%.*s", (int)(n < sizeof tok - 1 ? n : sizeof tok - 1), p);
    if (n == 0)
        return field_fail(cx, "missing value");
    if (isdigit((unsigned char)*p)) {
        long v = 0;
        for (const char *q = p; q < end; q++) {
            if (!isdigit((unsigned char)*q))
                return field_fail(cx, "\"%s\" is not a number", tok);
            if (v < 100000)
                v = v * 10 + (*q - '0');
        }
        if (v < cx->def->lo || v > cx->def->hi)
            return field_fail(cx, "%s is out of range %d-%d", tok, cx->def->lo, cx->def->hi);
        *out = (int)v;
        return 0;
    }
    if (cx->def->names && n == 3) {
        for (int i = 0; cx->def->names[i]; i++) {
            if (strncasecmp(p, cx->def->names[i], 3) == 0) {
                *out = cx->def->lo + i;
                if (cx->def->names == day_names && i == 0 && range_end)
                    *out = 7;
                return 0;
            }
        }
    }
    if (cx->def->names == month_names)
        return field_fail(cx, "\"%s\" is not a number or a month name (JAN-DEC)", tok);
    if (cx->def->names == day_names)
        return field_fail(cx, "\"%s\" is not a number or a day name (SUN-SAT)", tok);
    return field_fail(cx, "\"%s\" is not a number", tok);
}

/* Parses one list item ("*", "5", "1-30", "*\/5", "1-30/2", "5/15") into *mask. */
static int parse_item(const parse_ctx_t *cx, const char *p, const char *end, uint64_t *mask)
{
    const field_def_t *def = cx->def;
    char item[32];
    snprintf(item, sizeof item, "%.*s", (int)(end - p < 31 ? end - p : 31), p);
    const char *slash = memchr(p, '/', (size_t)(end - p));
    const char *base_end = slash ? slash : end;
    int lo, hi, step = 1;
    if (slash) {
        const char *s = slash + 1;
        long v = 0;
        if (s == end)
            return field_fail(cx, "step missing after \"/\" in \"%s\"", item);
        for (const char *q = s; q < end; q++) {
            if (!isdigit((unsigned char)*q))
                return field_fail(cx, "step in \"%s\" is not a number", item);
            if (v < 100000)
                v = v * 10 + (*q - '0');
        }
        if (v < 1 || v > def->hi - def->lo + 1)
            return field_fail(cx, "step in \"%s\" must be from 1 to %d", item,
                              def->hi - def->lo + 1);
        step = (int)v;
    }
    if (base_end - p == 1 && (*p == '*' || *p == '?')) {
        lo = def->lo;
        hi = def->hi;
    } else {
        const char *dash = memchr(p, '-', (size_t)(base_end - p));
        if (dash == p)
            return field_fail(cx, "\"%s\" is not a number (negative values are not allowed)", item);
        if (parse_value(cx, p, dash ? dash : base_end, 0, &lo))
            return LUAR_EPARSE;
        if (dash) {
            if (parse_value(cx, dash + 1, base_end, 1, &hi))
                return LUAR_EPARSE;
            if (hi < lo)
                return field_fail(cx, "range \"%s\" goes backwards (%d is after %d)", item, lo, hi);
        } else {
            hi = slash ? def->hi : lo; /* "5/15" means 5, 20, 35, 50 */
        }
    }
    for (int v = lo; v <= hi; v += step)
        *mask |= (uint64_t)1 << v;
    return 0;
}

/* Parses a comma-separated field into *mask. */
static int parse_field(const parse_ctx_t *cx, const char *p, const char *end, uint64_t *mask)
{
    *mask = 0;
    for (;;) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *item_end = comma ? comma : end;
        if (item_end == p)
            return field_fail(cx, "empty list item");
        if (parse_item(cx, p, item_end, mask))
            return LUAR_EPARSE;
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

/* Refuses a day-of-month set that no month of the month set ever has (`0 0 30 2 *`). */
static int check_fires(const luar_cron_t *c, const parse_ctx_t *cx)
{
    if (c->dom_star || !c->dow_star)
        return 0; /* either every day can match, or any weekday match is enough */
    for (int m = 1; m <= 12; m++) {
        if (!(c->mon >> m & 1))
            continue;
        int len = m == 2 ? 29 : luar_days_in_month(2001, m);
        for (int d = 1; d <= len; d++) {
            if (c->dom >> d & 1)
                return 0;
        }
    }
    return field_fail(cx, "never fires: no month of field %d has day %d", cx->number + 1,
                      __builtin_ctz(c->dom));
}

int luar_cron_parse(const char *expr, luar_cron_t *out, luar_buf_t *err)
{
    const char *src = expr;
    while (isspace((unsigned char)*src))
        src++;
    if (*src == '@') {
        size_t n = strcspn(src, " \t\r\n");
        const char *rest = src + n;
        while (isspace((unsigned char)*rest))
            rest++;
        const char *found = NULL;
        for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++) {
            if (strlen(aliases[i].alias) == n && strncasecmp(src, aliases[i].alias, n) == 0)
                found = aliases[i].expr;
        }
        if (!found || *rest) {
            if (err)
                luar_buf_appendf(err,
                                 "cron: field 1: unknown alias \"%.*s\" (use @yearly, "
                                 "@annually, @monthly, @weekly, @daily, @midnight or @hourly)"
                                 " in \"%s\"",
                                 (int)n, src, expr);
            return LUAR_EPARSE;
        }
        src = found;
    }

    const char *start[MAX_FIELDS + 1], *end[MAX_FIELDS + 1];
    int n = 0;
    for (const char *p = src; *p;) {
        while (isspace((unsigned char)*p))
            p++;
        if (!*p)
            break;
        if (n == MAX_FIELDS + 1) {
            n++;
            break;
        }
        start[n] = p;
        while (*p && !isspace((unsigned char)*p))
            p++;
        end[n++] = p;
    }
    if (n != 5 && n != 6) {
        if (err)
            luar_buf_appendf(err,
                             "cron: expected 5 fields (min hour dom mon dow) or 6 (sec "
                             "first), found %s%d in \"%s\"",
                             n > MAX_FIELDS ? "more than " : "", n > MAX_FIELDS ? 6 : n, expr);
        return LUAR_EPARSE;
    }

    memset(out, 0, sizeof *out);
    uint64_t mask[MAX_FIELDS];
    int first_def = n == 5 ? 1 : 0;
    mask[0] = 1; /* five fields: second 0 */
    parse_ctx_t cx = {expr, err, 0, NULL};
    for (int i = 0; i < n; i++) {
        cx.number = i + 1;
        cx.def = &field_defs[first_def + i];
        if (parse_field(&cx, start[i], end[i], &mask[first_def + i]))
            return LUAR_EPARSE;
    }
    int hour_at = 2 - first_def, dom_at = 3 - first_def, dow_at = 5 - first_def;
    out->sec = mask[0];
    out->min = mask[1];
    out->hour = (uint32_t)mask[2];
    out->dom = (uint32_t)mask[3];
    out->mon = (uint16_t)mask[4];
    out->dow = (uint8_t)((mask[5] | mask[5] >> 7) & 0x7f); /* 7 is Sunday too */
    out->dom_star = end[dom_at] - start[dom_at] == 1 && strchr("*?", *start[dom_at]);
    out->dow_star = end[dow_at] - start[dow_at] == 1 && strchr("*?", *start[dow_at]);
    out->hour_wild = 0;
    for (const char *q = start[hour_at]; q < end[hour_at]; q++) {
        if (*q == '*' || *q == '?' || *q == '/')
            out->hour_wild = 1;
    }
    cx.number = dom_at + 1;
    cx.def = &field_defs[3];
    return check_fires(out, &cx);
}

/* Returns the lowest set bit of `mask` at or above `from`, or -1. */
static int next_bit(uint64_t mask, int from)
{
    if (from > 63)
        return -1;
    uint64_t m = mask & (~(uint64_t)0 << from);
    return m ? __builtin_ctzll(m) : -1;
}

static int day_matches(const luar_cron_t *c, int d, int wday)
{
    int dm = (int)(c->dom >> d & 1), wm = c->dow >> wday & 1;
    return c->dom_star || c->dow_star ? dm && wm : dm || wm;
}

/*
 * Sets *out to the first wall-clock time (seconds since 1970-01-01 in local time) at or
 * after `lo` that matches `c`, ignoring zones. Returns 0 or LUAR_ENOTFOUND past the bound.
 */
static int civil_next(const luar_cron_t *c, int64_t lo, int64_t *out)
{
    int64_t days = lo / DAY - (lo % DAY < 0), y;
    int sod = (int)(lo - days * DAY), H = sod / 3600, M = sod / 60 % 60, S = sod % 60, mo, d;
    int64_t limit = days + SEARCH_DAYS;
    luar_civil_from_days(days, &y, &mo, &d);
    for (;;) {
        if (days > limit || y > 9999)
            return LUAR_ENOTFOUND;
        if (!(c->mon >> mo & 1)) {
            if (++mo > 12) {
                mo = 1;
                y++;
            }
            d = 1;
            days = luar_days_from_civil(y, mo, 1);
            H = M = S = 0;
            continue;
        }
        int wday = (int)((days % 7 + 11) % 7); /* 1970-01-01 was a Thursday */
        int h = day_matches(c, d, wday) ? next_bit(c->hour, H) : -1;
        if (h < 0)
            goto next_day;
        if (h != H) {
            H = h;
            M = S = 0;
        }
        int mi = next_bit(c->min, M);
        if (mi < 0) {
            M = S = 0;
            if (++H > 23)
                goto next_day;
            continue;
        }
        if (mi != M) {
            M = mi;
            S = 0;
        }
        int s = next_bit(c->sec, S);
        if (s < 0) {
            S = 0;
            if (++M > 59) {
                M = 0;
                if (++H > 23)
                    goto next_day;
            }
            continue;
        }
        *out = days * DAY + H * 3600 + M * 60 + s;
        return 0;
    next_day:
        days++;
        luar_civil_from_days(days, &y, &mo, &d);
        H = M = S = 0;
    }
}

int luar_cron_next_in(const luar_cron_t *c, const luar_tz_t *z, int64_t after, int64_t *next)
{
    if (after < MIN_UNIX || after >= MAX_UNIX)
        return LUAR_ENOTFOUND;
    /*
     * Walk the zone's constant-offset spans in order. Within a span wall time and real time
     * move together, so the first matching wall time in the span is the answer. A match
     * that falls in the gap of a forward jump fires at the jump when the hour is fixed; a
     * schedule with `*` or a step in the hour follows real time and has nothing due in the
     * gap (ISC/Vixie cron: 01:30, then 03:30, for `30 * * * *`). After a backward jump the
     * wall times up to the old span's end come again; a schedule with a fixed hour skips
     * them (it fired in the first occurrence), one with `*` or a step in the hour does not.
     */
    int64_t t = after + 1, skip = INT64_MIN, limit = after + (int64_t)SEARCH_DAYS * DAY;
    luar_tz_span_t sp;
    luar_tz_span(z, t, &sp);
    if (!c->hour_wild && sp.start != INT64_MIN && sp.off_before > sp.off)
        skip = sp.start + sp.off_before;
    if (!c->hour_wild && sp.start == t && sp.off > sp.off_before) {
        /* `after` is the last second before a forward jump: its gap is still due */
        int64_t wall;
        if (civil_next(c, t + sp.off_before, &wall) == 0 && wall < t + sp.off) {
            *next = t;
            return 0;
        }
    }
    for (int i = 0; i < 4 * SEARCH_DAYS; i++) {
        int64_t lo = t + sp.off, wall;
        if (lo < skip)
            lo = skip;
        if (civil_next(c, lo, &wall))
            return LUAR_ENOTFOUND;
        if (sp.end == INT64_MAX || wall < sp.end + sp.off) {
            *next = wall - sp.off;
            return *next <= MAX_UNIX ? 0 : LUAR_ENOTFOUND;
        }
        if (!c->hour_wild && sp.off_after > sp.off && wall < sp.end + sp.off_after) {
            *next = sp.end;
            return 0;
        }
        skip = !c->hour_wild && sp.off_after < sp.off ? sp.end + sp.off : INT64_MIN;
        t = sp.end;
        if (t > limit)
            return LUAR_ENOTFOUND;
        luar_tz_span(z, t, &sp);
    }
    return LUAR_ENOTFOUND;
}

int luar_cron_next(const luar_cron_t *c, const char *tz, int64_t after, int64_t *next)
{
    const luar_tz_t *z;
    int rc = luar_tz_load(tz ? tz : "UTC", &z, NULL);
    if (rc)
        return rc;
    return luar_cron_next_in(c, z, after, next);
}
