/*
 * Outbound webhook delivery (webhooks.deliver, SPEC §4 and §8; docs/sending-webhooks.md),
 * the machinery under the Lua binding (lua/mod_webhooks_deliver.c):
 *
 *  - the settings (`webhooks = { … }` of the configuration), the retry schedule and the
 *    message ids ("msg_" + a KSUID, as Svix makes them);
 *  - the body (`{"type", "timestamp", "data"}`) and its Standard Webhooks signature, made
 *    with the `standard` scheme of host/webhooks/scheme.h;
 *  - one attempt: signed, sent with luar_client_send (the one outbound path) with no retries
 *    of its own, through the endpoint's circuit breaker, refusing non-public addresses;
 *  - the record of every attempt: one log line each and a bounded in-memory ring read by
 *    the admin API.
 *
 * The retries themselves are the job runner's: each delivery is one durable job
 * (LUAR_DELIVER_JOB), failed attempts are job failures retried after luar_deliver_delay(),
 * and the last one leaves the job dead (the dead letter). Loop thread only.
 */
#ifndef LUAR_WEBHOOKS_DELIVER_H
#define LUAR_WEBHOOKS_DELIVER_H

#include "client/client.h"
#include "common/buf.h"
#include "config/config.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define LUAR_DELIVER_JOB "webhooks.deliver" /* the built-in job of every VM */
#define LUAR_DELIVER_QUEUE "deliveries"
#define LUAR_DELIVER_DEFAULT_TIMEOUT 15.0   /* seconds per attempt, as Svix */
#define LUAR_DELIVER_MAX_TIMEOUT 300.0
#define LUAR_DELIVER_ID_MAX 200             /* bytes of a message id given by the caller */
#define LUAR_DELIVER_ID_SIZE 32             /* "msg_" + 27 base62 characters + NUL */
#define LUAR_DELIVER_MAX_HEADERS 32         /* extra headers of one delivery */
#define LUAR_DELIVER_RING 1000              /* attempts remembered for the admin API */

/* ---- settings and schedule ----------------------------------------------------------- */

/*
 * Sets the process's delivery settings (copied); NULL restores the defaults
 * (luar_webhooks_config_init). Called by the commands that run jobs, before they do.
 */
void luar_deliver_configure(const luar_webhooks_config_t *cfg);

/* The process's delivery settings. */
const luar_webhooks_config_t *luar_deliver_settings(void);

/*
 * Seconds to wait after attempt `attempt` (1 for the first) failed, before the next:
 * schedule[attempt], or the last entry of the schedule for attempts past its end (a job
 * enqueued under a longer schedule). The first entry is the wait before the first attempt.
 */
double luar_deliver_delay(const luar_webhooks_config_t *w, int attempt);

/* The whole schedule in seconds (the sum of its entries). */
double luar_deliver_span(const luar_webhooks_config_t *w);

/* ---- messages ------------------------------------------------------------------------ */

/*
 * Writes a new message id to `out`: "msg_" and a KSUID (27 base62 characters: a 32-bit
 * timestamp then 128 random bits), so ids sort by creation second like Svix's.
 */
void luar_deliver_new_id(char out[LUAR_DELIVER_ID_SIZE]);

/* "msg_" and the 27 base62 digits of the 20-byte KSUID `raw` (big-endian), zero-padded. */
void luar_deliver_format_id(const uint8_t raw[20], char out[LUAR_DELIVER_ID_SIZE]);

/*
 * Appends the body of a delivery: {"type":<type>,"timestamp":"<RFC 3339, UTC, ms>",
 * "data":<data>} (Standard Webhooks' recommended shape). `data` is JSON text, copied as
 * is. Returns 0 or the luar_buf_append error.
 */
int luar_deliver_body(luar_buf_t *out, const char *type, size_t type_len, double timestamp,
                      const char *data, size_t data_len);

/*
 * Checks a delivery URL before it is enqueued: an absolute http:// or https:// URL with a
 * host. When the host is an IP address it must be public unless `allow_private`; a host
 * name is judged at connect time on the address it resolves to (client/client.h,
 * refuse_private). Returns 0, or LUAR_EINVAL with `*kind` set to "invalid" or
 * "private_address" and a reason appended to `why` (naming the host, never the URL's
 * path or query, which may hold a token).
 */
int luar_deliver_check_url(const char *url, int allow_private, const char **kind,
                           luar_buf_t *why);

/*
 * Checks that `secret` is one the `standard` scheme can sign with ("whsec_" + base64).
 * Returns 0, or LUAR_EINVAL with a reason appended to `why` (never the secret).
 */
int luar_deliver_check_secret(const char *secret, luar_buf_t *why);

/*
 * The name of `url`'s circuit breaker: "<host>:<port>#<12 hex digits of SHA-256(url)>", so
 * each endpoint has its own breaker (two customers on one host do not trip each other's)
 * while the gauge luar_circuit_state{host} names the host and never the path or query.
 */
void luar_deliver_breaker_key(const char *url, char *out, size_t size);

/* ---- one attempt --------------------------------------------------------------------- */

/* What to send. Every string is copied by luar_deliver_attempt. */
typedef struct luar_deliver_msg {
    const char *url;
    const char *secret;                  /* "whsec_…" */
    const char *id;                      /* the message id (webhook-id) */
    const char *body;                    /* the JSON body (luar_deliver_body) */
    size_t body_len;
    const luar_client_header_t *headers; /* extra headers */
    size_t nheaders;
    double timeout;                      /* seconds for the attempt; 0: the default */
    double created_at;                   /* when webhooks.deliver was called */
    const char *job_id;                  /* for the log and the ring */
    int attempt;                         /* 1 for the first */
    int max_attempts;
} luar_deliver_msg_t;

/* How an attempt went. */
typedef struct luar_deliver_outcome {
    int delivered;      /* a 2xx answer */
    int status;         /* the HTTP status, 0 when none came */
    const char *kind;   /* NULL when an answer came, else the error kind ("timeout",
                           "connect", "tls", "private_address", "breaker_open", …) */
    char message[320];  /* a readable line for the job's last_error (names the host at
                           most: no secret, no path) */
    double duration;    /* seconds */
    double postpone;    /* > 0: the endpoint's breaker is open and the network was not
                           touched; run again in this many seconds, not counting the attempt */
} luar_deliver_outcome_t;

typedef struct luar_deliver_call luar_deliver_call_t;

/* Called once with the outcome (valid during the call). */
typedef void (*luar_deliver_cb)(void *arg, const luar_deliver_outcome_t *outcome);

/*
 * Makes one attempt: signs the body for this moment (webhook-timestamp is the attempt's
 * time), POSTs it under the endpoint's breaker with no client retries, refusing non-public
 * addresses unless the settings allow them, then records it (log line, ring) and calls
 * cb(arg, outcome). The callback may run inside this call when the outcome is known at once
 * (an open breaker). Returns 0 and sets `*out` (valid until the callback), or LUAR_EINVAL
 * (the secret cannot sign: reason in `err`) / LUAR_ENOMEM without calling `cb`.
 *
 * While the breaker is open the attempt is postponed (outcome.postpone) until the breaker
 * lets a probe through, plus a jitter of up to as long again so waiting deliveries do not
 * all come back at once, but never past the end of the message's schedule (created_at +
 * the sum of the delays); from then on a refusal by the open breaker counts as a failed
 * attempt, so every delivery ends (delivered or dead) within twice the schedule.
 */
int luar_deliver_attempt(uv_loop_t *loop, const luar_deliver_msg_t *msg, luar_deliver_cb cb,
                         void *arg, luar_deliver_call_t **out, luar_buf_t *err);

/* Stops an attempt whose callback has not run: nothing is recorded, `cb` is not called. */
void luar_deliver_cancel(luar_deliver_call_t *call);

/* ---- the record of attempts ---------------------------------------------------------- */

/* One attempt as remembered for the admin API. */
typedef struct luar_deliver_record {
    double time;             /* unix seconds the attempt started */
    double duration;         /* seconds; 0 when the network was not touched */
    char msg_id[LUAR_DELIVER_ID_MAX + 1];
    char job_id[40];
    char url[256];           /* secrets redacted (client/redact.h), clipped */
    int attempt;
    int max_attempts;
    int status;              /* HTTP status, 0 when none */
    char error[24];          /* error kind, "" when an answer came */
    const char *outcome;     /* "delivered", "failed", "dead" (failed, last attempt) or
                                "postponed" (breaker open, not counted) */
} luar_deliver_record_t;

/*
 * Copies up to `max` of the most recent attempts to `out`, newest first; returns how many.
 * At most LUAR_DELIVER_RING are remembered.
 */
size_t luar_deliver_recent(luar_deliver_record_t *out, size_t max);

/*
 * Appends the most recent attempts (at most `max`) as a JSON array, newest first:
 * [{"time":…,"msg_id":…,"job_id":…,"url":…,"attempt":…,"max_attempts":…,"status":…|null,
 * "error":…|null,"outcome":…,"duration_ms":…}, …]. For the admin API (GET deliveries).
 * Returns 0 or the luar_buf_append error.
 */
int luar_deliver_recent_json(luar_buf_t *out, size_t max);

#endif
