/* Output helpers of `luar jobs`: see jobs_format.h. */
#include "cli/jobs_format.h"

#include "common/json.h"
#include "webhooks/deliver.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- formatting --------------------------------------------------------------------- */

/* ISO 8601 UTC ("2026-01-02T03:04:05Z", with milliseconds when `ms`), or "-" for 0. */
const char *luar_jobs_fmt_iso_time(double t, int ms, char *buf, size_t size)
{
    if (!(t > 0)) {
        snprintf(buf, size, "-");
        return buf;
    }
    /* Rounded to the millisecond first, as %.3f rounds in the JSON output. */
    long long total_ms = llround(t * 1000.0);
    time_t secs = (time_t)(total_ms / 1000);
    int millis = (int)(total_ms % 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    if (ms)
        snprintf(buf + n, size - n, ".%03dZ", millis);
    else
        snprintf(buf + n, size - n, "Z");
    return buf;
}

/* Characters (UTF-8 sequences; a stray byte counts as one) in the first `len` bytes of `s`. */
static size_t count_chars(const char *s, size_t len)
{
    size_t w = 0;
    for (size_t i = 0; i < len; w++) {
        size_t n = luar_utf8_seq((const unsigned char *)s + i, len - i);
        i += n ? n : 1;
    }
    return w;
}

/*
 * Appends the first line of `s` ("-" when empty), cut to `width` characters with "..." as
 * the last three when longer, and "..." after it when more lines follow. Cuts fall only
 * between UTF-8 sequences; control characters become spaces, invalid bytes '?'.
 */
void luar_jobs_fmt_put_clipped(luar_buf_t *b, const char *s, size_t width)
{
    if (s == NULL || *s == '\0') {
        luar_buf_putc(b, '-');
        return;
    }
    size_t len = strcspn(s, "\r\n");
    int more_lines = s[len] != '\0';
    size_t keep = count_chars(s, len) > width ? (width > 3 ? width - 3 : 0) : (size_t)-1;
    size_t i = 0;
    for (size_t shown = 0; i < len && shown < keep; shown++) {
        size_t n = luar_utf8_seq((const unsigned char *)s + i, len - i);
        if (n == 0) {
            luar_buf_putc(b, '?');
            n = 1;
        } else if (n == 1 && ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)) {
            luar_buf_putc(b, ' ');
        } else {
            luar_buf_append(b, s + i, n);
        }
        i += n;
    }
    if (i < len || more_lines)
        luar_buf_puts(b, "...");
}

/* Characters put_clipped shows for `s` within `width` (without a trailing "..." of lines). */
size_t luar_jobs_fmt_text_width(const char *s, size_t width)
{
    if (s == NULL || *s == '\0')
        return 1;
    size_t w = count_chars(s, strcspn(s, "\r\n"));
    return w < width ? w : width;
}

/* put_clipped, then spaces up to `width`. */
void luar_jobs_fmt_put_padded(luar_buf_t *b, const char *s, size_t width)
{
    luar_jobs_fmt_put_clipped(b, s, width);
    for (size_t w = luar_jobs_fmt_text_width(s, width); w < width; w++)
        luar_buf_putc(b, ' ');
}

static void put_indent(luar_buf_t *b, const char *prefix, int depth)
{
    luar_buf_putc(b, '\n');
    luar_buf_puts(b, prefix);
    for (int i = 0; i < depth; i++)
        luar_buf_puts(b, "  ");
}

/*
 * Appends JSON text re-indented two spaces a level, each line after the first starting
 * with `prefix`. Works on the text token by token, so key order and number spelling stay
 * as stored.
 */
void luar_jobs_fmt_put_pretty_json(luar_buf_t *b, const char *s, const char *prefix)
{
    int depth = 0;
    for (const char *p = s; *p; p++) {
        char c = *p;
        if (c == '"') {
            const char *q = p + 1;
            while (*q && *q != '"')
                q += (*q == '\\' && q[1]) ? 2 : 1;
            luar_buf_append(b, p, (size_t)(q - p) + (*q ? 1 : 0));
            p = *q ? q : q - 1;
        } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            continue;
        } else if (c == '{' || c == '[') {
            const char *q = p + 1;
            while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')
                q++;
            luar_buf_putc(b, c);
            if (*q == (c == '{' ? '}' : ']')) {
                luar_buf_putc(b, *q);
                p = q;
            } else {
                put_indent(b, prefix, ++depth);
            }
        } else if (c == '}' || c == ']') {
            put_indent(b, prefix, depth > 0 ? --depth : 0);
            luar_buf_putc(b, c);
        } else if (c == ',') {
            luar_buf_putc(b, c);
            put_indent(b, prefix, depth);
        } else if (c == ':') {
            luar_buf_puts(b, ": ");
        } else {
            luar_buf_putc(b, c);
        }
    }
}

/* Appends every line of `s` after `prefix`. */
void luar_jobs_fmt_put_block(luar_buf_t *b, const char *s, const char *prefix)
{
    while (*s) {
        size_t n = strcspn(s, "\n");
        luar_buf_puts(b, prefix);
        luar_buf_append(b, s, n);
        luar_buf_putc(b, '\n');
        s += n;
        if (*s == '\n')
            s++;
    }
}

void luar_jobs_fmt_json_str(luar_buf_t *b, const char *s)
{
    if (s == NULL)
        luar_buf_puts(b, "null");
    else
        luar_buf_append_json_string(b, s, strlen(s));
}

static void json_time(luar_buf_t *b, double t)
{
    if (t > 0)
        luar_buf_appendf(b, "%.3f", t);
    else
        luar_buf_puts(b, "null");
}

/* Stored JSON (args, result) goes out as it is: enqueue and complete only store valid JSON. */
static void json_raw(luar_buf_t *b, const char *s)
{
    luar_buf_puts(b, s != NULL && *s != '\0' ? s : "null");
}

/*
 * A job's arguments, except that a delivery's endpoint secret (stored with the job so any
 * later process can sign the next attempt) is shown as "[REDACTED]": `luar jobs show`
 * output and the admin API end up in terminals, tickets and screenshots.
 */
void luar_jobs_fmt_args(luar_buf_t *b, const luar_job_t *j)
{
    const char *val;
    size_t vlen;
    if (j->args == NULL || j->name == NULL || strcmp(j->name, LUAR_DELIVER_JOB) != 0 ||
        !luar_json_member(j->args, strlen(j->args), "secret", &val, &vlen)) {
        json_raw(b, j->args);
        return;
    }
    luar_buf_append(b, j->args, (size_t)(val - j->args));
    luar_buf_puts(b, "\"[REDACTED]\"");
    luar_buf_puts(b, val + vlen);
}

void luar_jobs_fmt_json_job(luar_buf_t *b, const luar_job_t *j)
{
    luar_buf_puts(b, "{\"id\":");
    luar_jobs_fmt_json_str(b, j->id);
    luar_buf_puts(b, ",\"name\":");
    luar_jobs_fmt_json_str(b, j->name);
    luar_buf_puts(b, ",\"queue\":");
    luar_jobs_fmt_json_str(b, j->queue);
    luar_buf_appendf(b, ",\"state\":\"%s\",\"priority\":%d,\"attempt\":%d,\"max_attempts\":%d",
                     luar_job_state_name(j->state), j->priority, j->attempt, j->max_attempts);
    luar_buf_puts(b, ",\"args\":");
    luar_jobs_fmt_args(b, j);
    luar_buf_puts(b, ",\"key\":");
    luar_jobs_fmt_json_str(b, j->key);
    luar_buf_puts(b, ",\"enqueued_at\":");
    json_time(b, j->enqueued_at);
    luar_buf_puts(b, ",\"run_at\":");
    json_time(b, j->run_at);
    luar_buf_puts(b, ",\"started_at\":");
    json_time(b, j->started_at);
    luar_buf_puts(b, ",\"finished_at\":");
    json_time(b, j->finished_at);
    luar_buf_puts(b, ",\"lease_expires_at\":");
    json_time(b, j->lease_expires_at);
    luar_buf_puts(b, ",\"owner\":");
    luar_jobs_fmt_json_str(b, j->owner);
    luar_buf_puts(b, ",\"result\":");
    if (j->result != NULL)
        json_raw(b, j->result);
    else
        luar_buf_puts(b, "null");
    luar_buf_puts(b, ",\"last_error\":");
    luar_jobs_fmt_json_str(b, j->last_error);
    luar_buf_puts(b, ",\"traceback\":");
    luar_jobs_fmt_json_str(b, j->traceback);
    luar_buf_puts(b, ",\"expires_at\":");
    json_time(b, j->expires_at);
    luar_buf_putc(b, '}');
}

void luar_jobs_fmt_attempts_text(const luar_job_t *j, char *buf, size_t size)
{
    if (j->max_attempts > 0)
        snprintf(buf, size, "%d/%d", j->attempt, j->max_attempts);
    else
        snprintf(buf, size, "%d/-", j->attempt);
}

