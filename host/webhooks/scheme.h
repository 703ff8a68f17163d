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

#include <stddef.h>

#define LUAR_WEBHOOK_DEFAULT_TOLERANCE 300.0
#define LUAR_WEBHOOK_MAX_SECRETS 8
#define LUAR_WEBHOOK_MAX_SCHEMES 64

/* Outcome of a verification (also the `outcome` label of luar_webhooks_total). */
typedef enum luar_webhook_verdict {
    LUAR_WEBHOOK_OK = 0,
    LUAR_WEBHOOK_MISSING,   /* no signature (or no timestamp where one is required): 401 */
    LUAR_WEBHOOK_INVALID,   /* malformed signature header or no signature matches: 401 */
    LUAR_WEBHOOK_EXPIRED,   /* timestamp outside the tolerance, past or future: 401 */
} luar_webhook_verdict_t;

/* A request as a scheme sees it. Header names are lower-case. */
typedef struct luar_webhook_msg {
    const luar_http_header_t *headers;
    size_t nheaders;
    const char *body;
    size_t body_len;
} luar_webhook_msg_t;

/* A scheme option (`header = "X-Signature"`, `algorithm = "sha256"`, …) as text. */
typedef struct luar_webhook_opt {
    const char *key;
    const char *value;
} luar_webhook_opt_t;

/*
 * One event of a request. A request carries one event for most providers; SendGrid posts
 * an array of them. Pointers may point into the message or into the `scratch` buffer given
 * to events(); they stay valid while both do.
 */
typedef struct luar_webhook_event {
    const char *id;     /* provider's event id (dedupe key); never NULL */
    size_t id_len;
    const char *type;   /* event type ("charge.succeeded"); never NULL */
    size_t type_len;
    const char *json;   /* the event as JSON text (the whole body, or one array element) */
    size_t json_len;
    int reply;          /* nonzero: answer 200 with `json` as the body and enqueue nothing
                           (Slack's url_verification challenge) */
} luar_webhook_event_t;

typedef struct luar_webhook_scheme luar_webhook_scheme_t;

/* A configured scheme: its secrets (decoded) and options. Opaque to callers. */
typedef struct luar_webhook_verifier {
    const luar_webhook_scheme_t *scheme;
    void *cfg;          /* the scheme's own, from configure() */
    double tolerance;   /* seconds, past and future; 0: LUAR_WEBHOOK_DEFAULT_TOLERANCE */
} luar_webhook_verifier_t;

struct luar_webhook_scheme {
    const char *name;
    /*
     * Headers holding signatures (lower-case, NULL-terminated list): removed from the
     * headers handlers see in meta.headers. May be NULL.
     */
    const char *const *signature_headers;
    /*
     * Builds the scheme's configuration from the route's secrets (as the user wrote them,
     * e.g. "whsec_…"; at least one, at most LUAR_WEBHOOK_MAX_SECRETS) and options. Unknown
     * option keys are errors. Returns 0 or LUAR_EINVAL with a line in `err` naming the
     * option or the secret's position (never its value).
     */
    int (*configure)(const char *const *secrets, const size_t *secret_lens, size_t nsecrets,
                     const luar_webhook_opt_t *opts, size_t nopts, void **cfg, luar_buf_t *err);
    void (*free_cfg)(void *cfg);
    /*
     * Verifies `msg` against every configured secret, at time `now` (unix seconds) with
     * `tolerance` seconds. Returns a verdict; on failure appends a reason to `why`
     * ("no webhook-signature header", "timestamp 1700000000 is 3600 s in the past", …).
     */
    luar_webhook_verdict_t (*verify)(const void *cfg, const luar_webhook_msg_t *msg,
                                     double tolerance, double now, luar_buf_t *why);
    /*
     * After a successful verify: the events of the request, at most `max`, into `out`;
     * `*n` set to their count. `scratch` may hold decoded ids/types. Returns 0, or
     * LUAR_EPARSE with a reason in `why` (not JSON, no id, …: a 400), or LUAR_ETOOBIG when
     * there are more than `max` events.
     */
    int (*events)(const void *cfg, const luar_webhook_msg_t *msg, luar_webhook_event_t *out,
                  size_t max, size_t *n, luar_buf_t *scratch, luar_buf_t *why);
    /*
     * Signs `body` with the first secret as the provider would, for event `id` (may be
     * NULL when the scheme has no id header; the scheme then makes one) at `timestamp`
     * (unix seconds). Appends the headers as "Name: value\r\n" lines to `out`. Returns 0 or
     * LUAR_EINVAL (the scheme cannot sign, e.g. SendGrid's public keys) with `err` set.
     */
    int (*sign)(const void *cfg, const char *id, double timestamp, const char *body,
                size_t body_len, luar_buf_t *out, luar_buf_t *err);
    /*
     * Optional: signature headers that depend on the configuration (hmac's `header`
     * option), NULL-terminated, owned by `cfg`; added to signature_headers. May be NULL.
     */
    const char *const *(*cfg_signature_headers)(const void *cfg);
};

/*
 * Adds a scheme (static storage; not copied). Returns 0, LUAR_EEXISTS (name taken),
 * LUAR_EINVAL (missing name/configure/verify/events) or LUAR_ENOMEM (the registry holds
 * LUAR_WEBHOOK_MAX_SCHEMES). The host's schemes are registered first, so a plugin cannot
 * take the name `standard` or `hmac`.
 */
int luar_webhook_scheme_register(const luar_webhook_scheme_t *scheme);

/* The scheme named `name`, or NULL. The host's schemes are registered on first lookup. */
const luar_webhook_scheme_t *luar_webhook_scheme_find(const char *name);

/* Registered schemes, for listings: index 0..count-1 (registration order). */
size_t luar_webhook_scheme_count(void);
const luar_webhook_scheme_t *luar_webhook_scheme_at(size_t i);

/* Appends the registered schemes' names to `out` as "standard, hmac, …". */
int luar_webhook_scheme_list(luar_buf_t *out);

/*
 * Configures a verifier for scheme `name` (see configure above). `secret_lens` may be NULL
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
