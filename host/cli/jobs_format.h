/*
 * Output helpers of `luar jobs` (jobs_cmd.c): times, clipped and padded columns,
 * indented JSON, and one job as a JSON object. All append to the caller's buffer.
 */
#ifndef LUAR_CLI_JOBS_FORMAT_H
#define LUAR_CLI_JOBS_FORMAT_H

#include "common/buf.h"
#include "queue/queue.h"

#include <stddef.h>

/* Formats unix time `t` as ISO 8601 UTC ("-" for 0) into buf; returns buf. */
const char *luar_jobs_fmt_iso_time(double t, int ms, char *buf, size_t size);
/* Column helpers: text clipped or padded to `width` display characters. */
void luar_jobs_fmt_put_clipped(luar_buf_t *b, const char *s, size_t width);
size_t luar_jobs_fmt_text_width(const char *s, size_t width);
void luar_jobs_fmt_put_padded(luar_buf_t *b, const char *s, size_t width);
/* Multi-line output: JSON re-indented keeping key order, text blocks, each line prefixed. */
void luar_jobs_fmt_put_pretty_json(luar_buf_t *b, const char *s, const char *prefix);
void luar_jobs_fmt_put_block(luar_buf_t *b, const char *s, const char *prefix);
/*
 * Appends a job's stored arguments (JSON) for display: as stored, except that the endpoint
 * secret of a webhook delivery shows as "[REDACTED]".
 */
void luar_jobs_fmt_args(luar_buf_t *b, const luar_job_t *j);

/* JSON output: a quoted string (null for NULL), one job as an object, "attempt/max". */
void luar_jobs_fmt_json_str(luar_buf_t *b, const char *s);
void luar_jobs_fmt_json_job(luar_buf_t *b, const luar_job_t *j);
void luar_jobs_fmt_attempts_text(const luar_job_t *j, char *buf, size_t size);

#endif
