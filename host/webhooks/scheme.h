/*
 * Webhook signature schemes: one registry that the host's schemes (`standard`, `hmac`)
 * and the plugins' (`stripe`, `github`, `sendgrid`, `slack`, `shopify`, …) add to. A
 * scheme knows where its provider puts the signature, the timestamp, the event id and the
 * event type; how to verify a request; and how to sign a body the way the provider would
 * (for `luar webhook sign|send`, `t.webhook` and outbound delivery).
 *
 * A scheme is configured once per route (or per CLI call) into a verifier holding the
 * decoded secrets and the scheme's options; verifying a request then allocates nothing but
 * the scratch buffers it is given. Every comparison of a signature is constant-time
 * (luar_crypto_equals). Reasons written to `why` never contain a secret or a signature.
 *
 * Registration happens at start-up (before the loop runs); lookups are read-only after.
 */
#ifndef LUAR_WEBHOOK_SCHEME_H
#define LUAR_WEBHOOK_SCHEME_H

#include "common/buf.h"
#include "server/http.h"

#include <luar/plugin.h>

#include <stddef.h>

#define LUAR_WEBHOOK_MAX_SCHEMES 64

/*
 * The scheme struct and the types around it (luar_webhook_verdict_t, luar_webhook_msg_t,
 * luar_webhook_opt_t, luar_webhook_event_t, luar_webhook_scheme_t,
 * LUAR_WEBHOOK_DEFAULT_TOLERANCE, LUAR_WEBHOOK_MAX_SECRETS) are the plugin ABI's, defined
 * in luar/plugin.h: the host's schemes and the plugins' are one struct in one registry.
 * A scheme returns the LUAR_E* codes of common/error.h, which equal LUAR_PLUGIN_E*.
 */

/* A configured scheme: its secrets (decoded) and options. Opaque to callers. */
typedef struct luar_webhook_verifier {
    const luar_webhook_scheme_t *scheme;
    void *cfg;          /* the scheme's own, from configure() */
    double tolerance;   /* seconds, past and future; 0: LUAR_WEBHOOK_DEFAULT_TOLERANCE */
} luar_webhook_verifier_t;

/*
 * Adds a scheme (static storage; not copied). Returns 0, LUAR_EEXISTS (name taken),
 * LUAR_EINVAL (missing name/configure/verify/events) or LUAR_ENOMEM (the registry holds
 * LUAR_WEBHOOK_MAX_SCHEMES). The host's schemes are registered first, so a plugin cannot
 * take the name `standard` or `hmac`.
 */
int luar_webhook_scheme_register(const luar_webhook_scheme_t *scheme);

/*
 * Removes a scheme a plugin registered (the plugin's fini ran: its callbacks must not be
 * reached any more). Routes configured with it must be gone (their VMs closed). Returns 0,
 * LUAR_ENOTFOUND, or LUAR_EINVAL for the host's own schemes, which are never removed.
 */
int luar_webhook_scheme_unregister(const luar_webhook_scheme_t *scheme);

/* The scheme named `name`, or NULL. The host's schemes are registered on first lookup. */
const luar_webhook_scheme_t *luar_webhook_scheme_find(const char *name);

/* Registered schemes, for listings: index 0..count-1 (registration order). */
size_t luar_webhook_scheme_count(void);
const luar_webhook_scheme_t *luar_webhook_scheme_at(size_t i);

/* Appends the registered schemes' names to `out` as "standard, hmac, …". */
int luar_webhook_scheme_list(luar_buf_t *out);

/*
 * Configures a verifier for scheme `name` (see configure in luar/plugin.h). `secret_lens` may be NULL
 * when every secret is NUL-terminated. `tolerance` 0 means the default; it must not be
 * negative. Returns 0, LUAR_ENOTFOUND (no such scheme: `err` lists the registered ones),
 * LUAR_EINVAL (no secret, too many, negative tolerance) or the scheme's error. On failure
 * `v` holds nothing to free. The caller keeps the secrets and options (the scheme copies
 * what it needs).
 */
int luar_webhook_verifier_init(luar_webhook_verifier_t *v, const char *name,
                               const char *const *secrets, const size_t *secret_lens,
                               size_t nsecrets, const luar_webhook_opt_t *opts, size_t nopts,
                               double tolerance, luar_buf_t *err);

/* Frees the scheme's configuration (secrets are wiped); `v` may be freed twice. */
void luar_webhook_verifier_free(luar_webhook_verifier_t *v);

/* The verifier's scheme->verify with its tolerance (the default when 0), at `now`. */
luar_webhook_verdict_t luar_webhook_verify(const luar_webhook_verifier_t *v,
                                           const luar_webhook_msg_t *msg, double now,
                                           luar_buf_t *why);

/* The verifier's scheme->events (see above). */
int luar_webhook_events(const luar_webhook_verifier_t *v, const luar_webhook_msg_t *msg,
                        luar_webhook_event_t *out, size_t max, size_t *n, luar_buf_t *scratch,
                        luar_buf_t *why);

/* The verifier's scheme->sign (see above); LUAR_EINVAL when the scheme has no sign. */
int luar_webhook_sign(const luar_webhook_verifier_t *v, const char *id, double timestamp,
                      const char *body, size_t body_len, luar_buf_t *out, luar_buf_t *err);

/*
 * Signs `body` for scheme `name` with one secret (and the scheme's options), as the
 * provider would: a verifier configured for the call, luar_webhook_sign, freed. Used by
 * `luar webhook sign|send` and `luar test`'s t.webhook. Returns as the two calls.
 */
int luar_webhook_sign_with_secret(const char *scheme, const char *secret,
                                  const luar_webhook_opt_t *opts, size_t nopts, const char *id,
                                  double timestamp, const char *body, size_t body_len,
                                  luar_buf_t *out, luar_buf_t *err);

/*
 * Nonzero when header `name` (`len` bytes, any case) carries a signature for the verifier's
 * scheme and configuration: such headers are removed from what handlers see.
 */
int luar_webhook_is_signature_header(const luar_webhook_verifier_t *v, const char *name,
                                     size_t len);

/* The `outcome` label of a verdict: "accepted" (OK), "invalid_signature" (MISSING,
 * INVALID), "expired". */
const char *luar_webhook_verdict_outcome(luar_webhook_verdict_t v);

/* ---- for schemes --------------------------------------------------------------------- */

/*
 * The value of the first header named `name` (lower-case; matched without regard to case)
 * in `msg`, with its length in *len; NULL when absent. Points into the message.
 */
const char *luar_webhook_header(const luar_webhook_msg_t *msg, const char *name, size_t *len);

/*
 * Checks a timestamp header value (decimal unix seconds, surrounding spaces allowed)
 * against `now` ± `tolerance`. `header` names the header in reasons. Returns OK (with the
 * value in *ts when `ts` is not NULL), INVALID (not a number) or EXPIRED, with a reason in
 * `why` ("webhook-timestamp 1700000000 is 3600 s in the past (tolerance 300 s)").
 */
luar_webhook_verdict_t luar_webhook_check_timestamp(const char *header, const char *value,
                                                    size_t len, double tolerance, double now,
                                                    long long *ts, luar_buf_t *why);

/* The host's own schemes (host/webhooks/standard.c, hmac.c), registered on first lookup. */
extern const luar_webhook_scheme_t luar_webhook_scheme_standard;
extern const luar_webhook_scheme_t luar_webhook_scheme_hmac;

#endif
