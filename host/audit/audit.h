/*
 * The audit log: one JSON object a line in its own file (default <data>/audit.log, config
 * `audit = { file = … }`), recording admin actions and secret-store changes. Each line
 * carries the SHA-256 of the line before it, so editing, deleting, inserting or reordering
 * lines breaks the chain where it happened (luar_audit_verify, `luar audit verify`):
 *
 *   {"prev":"<64 hex>","ts":"2026-01-02T03:04:05.678Z","who":"cli","action":"secret.set",…}
 *
 * - `prev` is always the first member, exactly as shown, so the chain can be checked
 *   without a JSON parser (and by `head -c 74`). It is the lower-case hex SHA-256 of the
 *   previous line's bytes, without its newline. The first line's `prev` is the SHA-256 of
 *   the empty string (LUAR_AUDIT_GENESIS).
 * - Lines are appended under an exclusive flock, so several processes (the CLI and every
 *   worker) extend one chain; each line is fsynced before the call returns.
 * - Values of watched secrets are scrubbed from every line (redact.h); callers must not
 *   pass secret values in the first place.
 * - What a chain cannot show: removing lines at the end, or editing the last line. Keep the
 *   head hash `luar audit verify` prints somewhere else (or ship the lines off the machine)
 *   to close that gap.
 * Blocking (a write and an fsync per line): meant for rare events. Loop thread or CLI.
 */
#ifndef LUAR_AUDIT_H
#define LUAR_AUDIT_H

#include "common/buf.h"

#include <stddef.h>

#define LUAR_AUDIT_GENESIS "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define LUAR_AUDIT_MAX_LINE (1u << 20)

/* Sets the file luar_audit_append writes to (copied; NULL: none). */
void luar_audit_set_file(const char *path);

/* The file set by luar_audit_set_file, or NULL. */
const char *luar_audit_file(void);

/*
 * Appends one record to the configured file: `who` (e.g. "cli", "admin"), `action`
 * (e.g. "secret.set", "jobs.retry") and `fields`, the JSON members to add without braces
 * ("\"name\":\"X\""; NULL or empty for none). Returns 0, LUAR_EINVAL (no file configured,
 * or a line over LUAR_AUDIT_MAX_LINE), or LUAR_EIO with "path: reason" appended to `err`.
 * The caller keeps every string.
 */
int luar_audit_append(const char *who, const char *action, const char *fields, size_t fields_len,
                      luar_buf_t *err);

/* The same, to the file `path`. */
int luar_audit_append_to(const char *path, const char *who, const char *action, const char *fields,
                         size_t fields_len, luar_buf_t *err);

/*
 * Checks the chain of the file `path`. Returns 0 with the number of records in *records
 * and the hex SHA-256 of the last line in `head` (the genesis hash for an empty file);
 * LUAR_EPARSE with "path:LINE: reason" appended to `err` for the first line that breaks the
 * chain (*bad_line set to LINE); LUAR_ENOTFOUND or LUAR_EIO ("path: reason").
 */
int luar_audit_verify(const char *path, size_t *records, char head[65], size_t *bad_line,
                      luar_buf_t *err);

#endif
