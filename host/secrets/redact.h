/*
 * The process-wide set of secret values that must never be written out (SPEC §4, §7.5).
 * Every value luar.secrets.get returns and every value in the encrypted store is watched;
 * other modules add their own (webhook route secrets, plugin API keys) with
 * luar_secret_watch. Log lines, metric label values, error response bodies and stored job
 * errors are scrubbed with luar_secret_scrub: each occurrence becomes "[REDACTED]".
 *
 * What is matched: the value's bytes as they are, and the value as a JSON string body
 * (luar's own escaping and lua-cjson's, which also escapes '/'), so a value containing a
 * quote or a slash is still caught inside a JSON log line. Not matched: encodings of the
 * value (base64, hex, URL-escaping), fragments of it, and text written by other means
 * (print, io.write).
 *
 * Values shorter than LUAR_SECRET_MIN_LEN bytes are not watched: redacting "abc" would
 * wreck every log line containing those three letters. The first one seen is reported by
 * one warning per process. A watched value stays watched for the life of the process
 * (a value that was a secret once is still sensitive after it is rotated out).
 *
 * Cost: nothing when the set is empty (one branch); otherwise one pass over the text with a
 * 64 Ki-bit filter on each 4-byte window, and a comparison only where the filter hits.
 * Loop thread only, like the log and the metrics registry.
 */
#ifndef LUAR_SECRETS_REDACT_H
#define LUAR_SECRETS_REDACT_H

#include "common/buf.h"

#include <stddef.h>

#define LUAR_SECRET_REDACTED "[REDACTED]"
#define LUAR_SECRET_MIN_LEN 6       /* shorter values cannot be redacted sensibly */
#define LUAR_SECRET_MAX_VALUES 4096 /* distinct values watched per process */

/*
 * Adds `value` (`len` bytes, copied) to the set. `what` names it for the one warning about
 * a value too short to redact ("secret STRIPE_KEY", "webhook route /hooks secret"; may be
 * NULL). Idempotent and cheap for a value already watched, so it may be called on every
 * lookup. Returns 0 (watched, or empty: nothing to hide), LUAR_EINVAL (shorter than
 * LUAR_SECRET_MIN_LEN: not watched), LUAR_ETOOBIG (the set is full; warned once) or
 * LUAR_ENOMEM.
 */
int luar_secret_watch(const char *what, const void *value, size_t len);

/* The number of values watched (0: scrubbing has nothing to do). */
size_t luar_secret_watching(void);

/*
 * Returns the offset of the first watched value in `s` (`len` bytes) and stores its length
 * in `*match_len`, or returns `len` when there is none.
 */
size_t luar_secret_find(const char *s, size_t len, size_t *match_len);

/*
 * Appends `s` to `out` with every watched value replaced by "[REDACTED]" (the longest one
 * at the leftmost position wins). Returns the number of replacements (>= 0) or a luar_buf
 * error (out is then left as it was).
 */
int luar_secret_scrub(luar_buf_t *out, const char *s, size_t len);

/*
 * Returns `s` when it holds no watched value, else its scrubbed copy in `scratch` (reset
 * first; the caller frees it), or "[REDACTED]" when memory ran out (failing closed).
 * For call sites that print or store a C string: `fputs(luar_secret_clean(msg, &tmp), f)`.
 */
const char *luar_secret_clean(const char *s, luar_buf_t *scratch);

/* A counter bumped whenever a value is added, for caches of scrubbed text (metrics). */
unsigned luar_secret_generation(void);

/* Forgets every value (tests, and process exit for leak checkers). */
void luar_secret_unwatch_all(void);

#endif
