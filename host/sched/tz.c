/*
 * A small TZif reader (RFC 8536) with a process-wide cache of loaded zones. Lookups never
 * touch the process's TZ or the C library's local-time functions: they search the zone's
 * transition table, and past its end evaluate the POSIX TZ rule of the file's footer.
 */
#include "sched/tz.h"
#include "common/error.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TZIF_MAX_BYTES (1u << 20)
#define DAY 86400

/* One date of a POSIX TZ rule: "Jn", "n" or "Mm.w.d", plus the local time of day. */
typedef struct rule_date {
    char kind; /* 'J', 'N' or 'M' */
    int n, m, w, d;
    int32_t time; /* seconds after local midnight; may be negative or past 24 h */
} rule_date_t;

typedef struct posix_rule {
    int32_t std_off, dst_off; /* seconds east of UTC */
    int has_dst;
    rule_date_t start, end;
} posix_rule_t;

struct luar_tz {
    struct luar_tz *next_cached;
    char name[LUAR_TZ_NAME_MAX + 1];
    int64_t *trans; /* transition instants, ascending */
    int32_t *offs;  /* offset in effect from trans[i] on */
    size_t ntrans;
    int32_t initial; /* offset before the first transition (time type 0) */
    int has_rule;
    posix_rule_t rule;
};

/* One transition: at `at`, the offset changes from `before` to `after`. */
typedef struct trans {
    int64_t at;
    int32_t before, after;
} trans_t;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static luar_tz_t *cache_head;

/* --- civil calendar (Howard Hinnant's algorithms) --- */

int64_t luar_days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void luar_civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int luar_days_in_month(int64_t y, int m)
{
    static const int len[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : len[m - 1];
}

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

static int64_t year_of(int64_t t)
{
    int64_t y;
    int m, d;
    luar_civil_from_days(floor_div(t, DAY), &y, &m, &d);
    return y;
}

/* --- POSIX TZ rule strings ("EST5EDT,M3.2.0,M11.1.0", "<-03>3") --- */

static const char *parse_abbr(const char *p)
{
    if (*p == '<') {
        const char *q = strchr(p, '>');
        return q ? q + 1 : NULL;
    }
    const char *q = p;
    while (isalpha((unsigned char)*q))
        q++;
    return q - p >= 3 ? q : NULL;
}

/* Parses [+-]hh[:mm[:ss]] with hours up to `max_h`; stores signed seconds. */
static const char *parse_hms(const char *p, int max_h, int32_t *out)
{
    int sign = 1;
    if (*p == '+' || *p == '-')
        sign = *p++ == '-' ? -1 : 1;
    if (!isdigit((unsigned char)*p))
        return NULL;
    long h = strtol(p, (char **)&p, 10), mi = 0, s = 0;
    if (*p == ':') {
        mi = strtol(p + 1, (char **)&p, 10);
        if (*p == ':')
            s = strtol(p + 1, (char **)&p, 10);
    }
    if (h > max_h || mi > 59 || s > 59 || mi < 0 || s < 0)
        return NULL;
    *out = (int32_t)(sign * (h * 3600 + mi * 60 + s));
    return p;
}

static const char *parse_rule_date(const char *p, rule_date_t *rd)
{
    memset(rd, 0, sizeof *rd);
    if (*p == 'J' || *p == 'M' || isdigit((unsigned char)*p)) {
        rd->kind = isdigit((unsigned char)*p) ? 'N' : *p++;
    } else {
        return NULL;
    }
    if (rd->kind == 'M') {
        rd->m = (int)strtol(p, (char **)&p, 10);
        if (*p++ != '.')
            return NULL;
        rd->w = (int)strtol(p, (char **)&p, 10);
        if (*p++ != '.')
            return NULL;
        rd->d = (int)strtol(p, (char **)&p, 10);
        if (rd->m < 1 || rd->m > 12 || rd->w < 1 || rd->w > 5 || rd->d < 0 || rd->d > 6)
            return NULL;
    } else {
        rd->n = (int)strtol(p, (char **)&p, 10);
        if (rd->n < (rd->kind == 'J') || rd->n > 365)
            return NULL;
    }
    rd->time = 7200;
    if (*p == '/')
        p = parse_hms(p + 1, 167, &rd->time);
    return p;
}

static int parse_posix(const char *s, posix_rule_t *r)
{
    int32_t v;
    const char *p = parse_abbr(s);
    if (!p || !(p = parse_hms(p, 24, &v)))
        return LUAR_EPARSE;
    memset(r, 0, sizeof *r);
    r->std_off = -v;
    if (*p == '\0')
        return 0;
    if (!(p = parse_abbr(p)))
        return LUAR_EPARSE;
    r->has_dst = 1;
    r->dst_off = r->std_off + 3600;
    if (*p && *p != ',') {
        if (!(p = parse_hms(p, 24, &v)))
            return LUAR_EPARSE;
        r->dst_off = -v;
    }
    if (*p == '\0')
        p = ",M3.2.0,M11.1.0";
    if (*p++ != ',' || !(p = parse_rule_date(p, &r->start)) || *p++ != ',' ||
        !(p = parse_rule_date(p, &r->end)) || *p != '\0')
        return LUAR_EPARSE;
    return 0;
}

/* Returns the unix time at which `rd` happens in year `y`, given the offset before it. */
static int64_t rule_instant(const rule_date_t *rd, int64_t y, int32_t off_before)
{
    int64_t day;
    if (rd->kind == 'J') {
        day = luar_days_from_civil(y, 1, 1) + rd->n - 1 + (is_leap(y) && rd->n >= 60);
    } else if (rd->kind == 'N') {
        day = luar_days_from_civil(y, 1, 1) + rd->n;
    } else {
        int64_t first = luar_days_from_civil(y, rd->m, 1);
        int wd1 = (int)((first % 7 + 11) % 7); /* 1970-01-01 was a Thursday (4) */
        int dom = 1 + (rd->d - wd1 + 7) % 7 + (rd->w - 1) * 7;
        while (dom > luar_days_in_month(y, rd->m))
            dom -= 7;
        day = first + dom - 1;
    }
    return day * DAY + rd->time - off_before;
}

/* --- transitions around an instant --- */

static int trans_cmp(const void *a, const void *b)
{
    const trans_t *x = a, *y = b;
    return x->at < y->at ? -1 : x->at > y->at;
}

/*
 * Collects the transitions near `t`: the table's neighbours of `t` and, past the table,
 * the footer rule's transitions of the years around `t`. Sorted, with same-instant entries
 * merged and transitions that change nothing dropped. Returns the count.
 */
static size_t transitions_near(const luar_tz_t *z, int64_t t, trans_t *out)
{
    size_t n = 0;
    if (z->ntrans) {
        size_t lo = 0, hi = z->ntrans;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (z->trans[mid] <= t)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (size_t j = lo >= 2 ? lo - 2 : 0; j < z->ntrans && j <= lo + 1; j++)
            out[n++] = (trans_t){z->trans[j], j ? z->offs[j - 1] : z->initial, z->offs[j]};
    }
    if (z->has_rule && z->rule.has_dst) {
        int64_t last = z->ntrans ? z->trans[z->ntrans - 1] : INT64_MIN;
        const posix_rule_t *r = &z->rule;
        for (int64_t y = year_of(t) - 1; y <= year_of(t) + 1; y++) {
            trans_t pair[2] = {{rule_instant(&r->start, y, r->std_off), r->std_off, r->dst_off},
                               {rule_instant(&r->end, y, r->dst_off), r->dst_off, r->std_off}};
            if (pair[1].at < pair[0].at) {
                trans_t tmp = pair[0];
                pair[0] = pair[1];
                pair[1] = tmp;
            }
            for (int k = 0; k < 2; k++) {
                if (pair[k].at > last)
                    out[n++] = pair[k];
            }
        }
    }
    /* insertion sort keeps equal instants in order, so the later entry wins below */
    for (size_t i = 1; i < n; i++) {
        trans_t x = out[i];
        size_t j = i;
        while (j > 0 && trans_cmp(&out[j - 1], &x) > 0) {
            out[j] = out[j - 1];
            j--;
        }
        out[j] = x;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (m && out[m - 1].at == out[i].at) {
            out[m - 1].after = out[i].after;
            continue;
        }
        out[m++] = out[i];
    }
    n = m;
    m = 0;
    for (size_t i = 0; i < n; i++) {
        if (m)
            out[i].before = out[m - 1].after;
        if (out[i].before == out[i].after && m)
            continue;
        out[m++] = out[i];
    }
    return m;
}

void luar_tz_span(const luar_tz_t *z, int64_t t, luar_tz_span_t *span)
{
    trans_t near[16];
    size_t n = transitions_near(z, t, near);
    const trans_t *prev = NULL, *next = NULL;
    for (size_t i = 0; i < n; i++) {
        if (near[i].at <= t)
            prev = &near[i];
        else if (!next)
            next = &near[i];
    }
    int32_t off = z->initial;
    if (prev)
        off = prev->after;
    else if (next)
        off = next->before;
    span->off = off;
    span->start = prev ? prev->at : INT64_MIN;
    span->off_before = prev ? prev->before : off;
    span->end = next ? next->at : INT64_MAX;
    span->off_after = next ? next->after : off;
}

int32_t luar_tz_offset(const luar_tz_t *z, int64_t t)
{
    luar_tz_span_t s;
    luar_tz_span(z, t, &s);
    return s.off;
}

int64_t luar_tz_local_to_utc(const luar_tz_t *z, int64_t wall)
{
    /* Walk the spans from well before the wall time; the first span whose range contains
     * wall - off is the earliest occurrence. Offsets never exceed 26 hours. */
    int64_t t = wall - 2 * DAY;
    luar_tz_span_t s;
    for (int i = 0; i < 64; i++) {
        luar_tz_span(z, t, &s);
        int64_t cand = wall - s.off;
        if (cand >= s.start && cand < s.end)
            return cand;
        if (s.end == INT64_MAX)
            return cand;
        if (cand >= s.end && wall - s.off_after < s.end)
            return s.end; /* in the gap of a forward jump */
        t = s.end;
    }
    return wall - s.off;
}

/* --- formatting and parsing ISO 8601 --- */

int luar_tz_format(const luar_tz_t *z, int64_t t, char *out, size_t size)
{
    if (size < LUAR_TZ_ISO_SIZE || t < -62167219200LL || t > 253402300799LL + 2 * DAY)
        return LUAR_EINVAL;
    int32_t off = luar_tz_offset(z, t);
    int64_t wall = t + off, days = floor_div(wall, DAY), y;
    int m, d, sod = (int)(wall - days * DAY);
    luar_civil_from_days(days, &y, &m, &d);
    if (y < 0 || y > 9999)
        return LUAR_EINVAL;
    int a = off < 0 ? -off : off;
    int n =
        snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02d%c%02d:%02d", (int)y, m, d, sod / 3600,
                 sod / 60 % 60, sod % 60, off < 0 ? '-' : '+', a / 3600, a / 60 % 60);
    if (a % 60)
        snprintf(out + n, size - (size_t)n, ":%02d", a % 60);
    return 0;
}

/* Reads exactly `n` digits at *p; returns -1 when they are not there. */
static int digits(const char **p, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return -1;
        v = v * 10 + (*p)[i] - '0';
    }
    *p += n;
    return v;
}

static int iso_fail(luar_buf_t *err, const char *s, const char *why)
{
    if (err)
        luar_buf_appendf(err, "\"%s\" is not an ISO 8601 time (%s)", s, why);
    return LUAR_EINVAL;
}

int luar_tz_parse_iso(const char *s, const luar_tz_t *z, int64_t *out, luar_buf_t *err)
{
    const char *p = s;
    int y = digits(&p, 4), mo, d, h = 0, mi = 0, sec = 0;
    if (y < 0 || *p++ != '-' || (mo = digits(&p, 2)) < 0 || *p++ != '-' || (d = digits(&p, 2)) < 0)
        return iso_fail(err, s, "expected YYYY-MM-DD");
    if (mo < 1 || mo > 12 || d < 1 || d > luar_days_in_month(y, mo))
        return iso_fail(err, s, "no such date");
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if ((h = digits(&p, 2)) < 0 || *p++ != ':' || (mi = digits(&p, 2)) < 0)
            return iso_fail(err, s, "expected HH:MM after the date");
        if (*p == ':') {
            p++;
            if ((sec = digits(&p, 2)) < 0)
                return iso_fail(err, s, "expected two digits of seconds");
            if (*p == '.' || *p == ',') {
                p++;
                if (!isdigit((unsigned char)*p))
                    return iso_fail(err, s, "expected digits after the decimal mark");
                while (isdigit((unsigned char)*p))
                    p++;
            }
        }
        if (h > 23 || mi > 59 || sec > 59)
            return iso_fail(err, s, "no such time of day");
    }
    int64_t wall = luar_days_from_civil(y, mo, d) * DAY + h * 3600 + mi * 60 + sec;
    if (*p == '\0') {
        *out = luar_tz_local_to_utc(z, wall);
        return 0;
    }
    if (*p == 'Z' || *p == 'z') {
        if (p[1] != '\0')
            return iso_fail(err, s, "unexpected text after Z");
        *out = wall;
        return 0;
    }
    if (*p != '+' && *p != '-')
        return iso_fail(err, s, "unexpected text after the time");
    int sign = *p++ == '-' ? -1 : 1, oh, om = 0;
    if ((oh = digits(&p, 2)) < 0)
        return iso_fail(err, s, "expected an offset ±HH:MM");
    if (*p == ':')
        p++;
    if (*p && (om = digits(&p, 2)) < 0)
        return iso_fail(err, s, "expected an offset ±HH:MM");
    if (*p != '\0' || oh > 23 || om > 59)
        return iso_fail(err, s, "bad offset");
    *out = wall - sign * (oh * 3600 + om * 60);
    return 0;
}

int luar_tz_parse_time(const char *s, double *out)
{
    char *end;
    errno = 0;
    double t = strtod(s, &end);
    /* strtod also reads "inf", "nan" and hex: only plain decimals are seconds here. */
    if (*s != '\0' && *end == '\0' && errno == 0 && strspn(s, "0123456789.") == strlen(s) &&
        t >= 0 && t < 253402300800.0) {
        *out = t;
        return 0;
    }
    const luar_tz_t *utc;
    int64_t secs;
    if (luar_tz_load("UTC", &utc, NULL) || luar_tz_parse_iso(s, utc, &secs, NULL))
        return LUAR_EINVAL;
    *out = (double)secs;
    return 0;
}

/* --- loading zones --- */

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const unsigned char *p)
{
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

/* Parses a TZif image into `z`. Returns 0 or LUAR_EPARSE / LUAR_ENOMEM. */
static int parse_tzif(const unsigned char *buf, size_t len, luar_tz_t *z)
{
    if (len < 44 || memcmp(buf, "TZif", 4) != 0)
        return LUAR_EPARSE;
    int version = buf[4];
    const unsigned char *h = buf;
    size_t tsize = 4;
    uint32_t c[6]; /* isutcnt isstdcnt leapcnt timecnt typecnt charcnt */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < 6; i++)
            c[i] = be32(h + 20 + 4 * i);
        if (c[3] > 100000 || c[4] == 0 || c[4] > 256 || c[5] > 65536 || c[2] > 10000)
            return LUAR_EPARSE;
        size_t body = c[3] * tsize + c[3] + c[4] * 6 + c[5] + c[2] * (tsize + 4) + c[1] + c[0];
        if ((size_t)(h - buf) + 44 + body > len)
            return LUAR_EPARSE;
        if (pass == 1 || version < '2')
            break;
        h += 44 + body; /* skip the 32-bit block; the 64-bit one follows */
        if ((size_t)(h - buf) + 44 > len || memcmp(h, "TZif", 4) != 0)
            return LUAR_EPARSE;
        tsize = 8;
    }
    const unsigned char *times = h + 44, *idx = times + c[3] * tsize, *types = idx + c[3];
    z->ntrans = c[3];
    z->trans = calloc(c[3] ? c[3] : 1, sizeof *z->trans);
    z->offs = calloc(c[3] ? c[3] : 1, sizeof *z->offs);
    if (!z->trans || !z->offs)
        return LUAR_ENOMEM;
    z->initial = (int32_t)be32(types);
    for (uint32_t i = 0; i < c[3]; i++) {
        if (idx[i] >= c[4])
            return LUAR_EPARSE;
        z->trans[i] = tsize == 8 ? be64(times + 8 * i) : (int32_t)be32(times + 4 * i);
        z->offs[i] = (int32_t)be32(types + 6 * idx[i]);
        if (i && z->trans[i] <= z->trans[i - 1])
            return LUAR_EPARSE;
    }
    if (tsize == 8) {
        const unsigned char *foot = types + c[4] * 6 + c[5] + c[2] * 12 + c[1] + c[0];
        const unsigned char *end = buf + len;
        if (foot < end && *foot == '\n') {
            const unsigned char *nl = memchr(foot + 1, '\n', (size_t)(end - foot - 1));
            if (nl && nl > foot + 1 && nl - foot < 128) {
                char rule[128];
                memcpy(rule, foot + 1, (size_t)(nl - foot - 1));
                rule[nl - foot - 1] = '\0';
                if (parse_posix(rule, &z->rule) == 0)
                    z->has_rule = 1;
            }
        }
    }
    return 0;
}

/* Parses "+HH", "+HH:MM", "+HHMM" (or "-…"); returns 0 and the offset east of UTC. */
static int parse_fixed(const char *name, int32_t *off)
{
    const char *p = name;
    if (*p != '+' && *p != '-')
        return LUAR_EINVAL;
    int sign = *p++ == '-' ? -1 : 1, h, m = 0;
    if ((h = digits(&p, 2)) < 0)
        return LUAR_EINVAL;
    if (*p == ':')
        p++;
    if (*p && (m = digits(&p, 2)) < 0)
        return LUAR_EINVAL;
    if (*p || h > 18 || m > 59)
        return LUAR_EINVAL;
    *off = sign * (h * 3600 + m * 60);
    return 0;
}

static int valid_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > LUAR_TZ_NAME_MAX || name[0] == '/' || name[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (!isalnum(ch) && !strchr("/_+-.", ch))
            return 0;
        if (ch == '.' && name[i + 1] == '.')
            return 0;
    }
    return 1;
}

static void tz_free(luar_tz_t *z)
{
    if (z) {
        free(z->trans);
        free(z->offs);
        free(z);
    }
}

static int load_file(const char *name, luar_tz_t *z, luar_buf_t *err)
{
    const char *dir = getenv("TZDIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir && *dir ? dir : "/usr/share/zoneinfo", name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (err)
            luar_buf_appendf(err, "unknown time zone \"%s\" (%s: %s)", name, path, strerror(errno));
        return LUAR_ENOTFOUND;
    }
    unsigned char *buf = malloc(TZIF_MAX_BYTES);
    size_t len = buf ? fread(buf, 1, TZIF_MAX_BYTES, f) : 0;
    fclose(f);
    if (!buf)
        return LUAR_ENOMEM;
    int rc = parse_tzif(buf, len, z);
    free(buf);
    if (rc && err)
        luar_buf_appendf(err, "time zone \"%s\": %s is not a valid TZif file", name, path);
    return rc;
}

int luar_tz_load(const char *name, const luar_tz_t **out, luar_buf_t *err)
{
    if (!name || (name[0] != '+' && name[0] != '-' && !valid_name(name))) {
        if (err)
            luar_buf_appendf(err, "invalid time zone name \"%s\"", name ? name : "(null)");
        return LUAR_EINVAL;
    }
    pthread_mutex_lock(&cache_lock);
    for (luar_tz_t *c = cache_head; c; c = c->next_cached) {
        if (strcmp(c->name, name) == 0) {
            pthread_mutex_unlock(&cache_lock);
            *out = c;
            return 0;
        }
    }
    pthread_mutex_unlock(&cache_lock);

    luar_tz_t *z = calloc(1, sizeof *z);
    if (!z)
        return LUAR_ENOMEM;
    snprintf(z->name, sizeof z->name, "%s", name);
    int32_t fixed = 0;
    int rc = 0;
    if (strcmp(name, "UTC") == 0 || strcmp(name, "Z") == 0 || strcmp(name, "Etc/UTC") == 0) {
        z->initial = 0;
    } else if (parse_fixed(name, &fixed) == 0) {
        z->initial = fixed;
    } else if (name[0] == '+' || name[0] == '-') {
        if (err)
            luar_buf_appendf(err, "invalid UTC offset \"%s\" (expected ±HH:MM)", name);
        rc = LUAR_EINVAL;
    } else {
        rc = load_file(name, z, err);
    }
    if (rc) {
        tz_free(z);
        return rc;
    }

    /* Another thread may have loaded the same name meanwhile; keep the first. */
    pthread_mutex_lock(&cache_lock);
    for (luar_tz_t *c = cache_head; c; c = c->next_cached) {
        if (strcmp(c->name, name) == 0) {
            pthread_mutex_unlock(&cache_lock);
            tz_free(z);
            *out = c;
            return 0;
        }
    }
    z->next_cached = cache_head;
    cache_head = z;
    pthread_mutex_unlock(&cache_lock);
    *out = z;
    return 0;
}

const char *luar_tz_name(const luar_tz_t *z)
{
    return z->name;
}

void luar_tz_cache_clear(void)
{
    pthread_mutex_lock(&cache_lock);
    luar_tz_t *c = cache_head;
    cache_head = NULL;
    pthread_mutex_unlock(&cache_lock);
    while (c) {
        luar_tz_t *next = c->next_cached;
        tz_free(c);
        c = next;
    }
}
