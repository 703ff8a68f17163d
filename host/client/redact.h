/*
 * Keeping secrets out of log lines (SPEC §4: secrets in headers never reach a log line).
 * Used by the outbound client's debug log; the webhooks' delivery log uses the same rules.
 */
#ifndef LUAR_CLIENT_REDACT_H
#define LUAR_CLIENT_REDACT_H

#include "common/buf.h"

#include <stddef.h>

#define LUAR_REDACTED "[redacted]"

/*
 * Returns nonzero when a header called `name` (`len` bytes, any case) carries a secret:
 * Authorization, Proxy-Authorization, Cookie, Set-Cookie, and any name ending in -key,
 * -token or -secret (X-Api-Key, X-Auth-Token, ...).
 */
int luar_redact_header_is_secret(const char *name, size_t len);

/*
 * Returns nonzero when a query parameter called `name` (`len` bytes, any case) carries a
 * secret: its name contains key, token, secret, signature, password, or is sig or auth.
 */
int luar_redact_param_is_secret(const char *name, size_t len);

/*
 * Appends `url` to `out` with the userinfo password and the values of secret query
 * parameters replaced by "[redacted]". Returns 0 or the luar_buf_append error.
 */
int luar_redact_url(luar_buf_t *out, const char *url);

/*
 * Appends `value` as a JSON string to `out`, or "[redacted]" when header `name` is secret.
 * Returns 0 or the luar_buf_append error.
 */
int luar_redact_header_json(luar_buf_t *out, const char *name, const char *value);

#endif
