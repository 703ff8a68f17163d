/*
 * Webhook routes: the inbound path of SPEC §1 (router → verify → dedupe → enqueue → 2xx),
 * done in C so that a delivery never enters a Lua state before it is stored.
 *
 *   body size (the route's max_body, under the server's limits.max_body)       413
 *   → the scheme's verifier (signature, timestamp tolerance)                     401
 *   → the scheme's events (id, type, JSON text; JSON checked here too)           400
 *   → per event: one job per matching handler (AMQP topic patterns) and the
 *     dedupe record "webhook:<route>:<event id>" in ONE luar_queue_enqueue,
 *     i.e. one commit, waited for (fsync)                                        503
 *   → only then 200 {"received":true, …}; a duplicate id: 200 {"duplicate":true}
 *
 * A job's arguments are {"event": <the event's JSON text, as received>, "meta": {id, type,
 * route, scheme, received_at, request_id, headers}}; mod_webhooks.c defines the handler
 * jobs and turns those into fn(event, meta) when they run.
 *
 * A route belongs to the VM whose scripts declared it (mod_http.c's router owns it) and
 * is freed with that VM. A request in flight copies what it needs, so a reload or a VM
 * closing while its enqueue waits on the disk changes nothing for it. Loop thread only.
 */
#ifndef LUAR_WEBHOOK_INGEST_H
#define LUAR_WEBHOOK_INGEST_H

#include "common/buf.h"
#include "server/http.h"
#include "webhooks/scheme.h"

#include <stddef.h>

/* Dedupe window when the route gives none: 7 days, longer than any provider retries. */
#define LUAR_WEBHOOK_DEFAULT_DEDUPE (7 * 86400.0)
/* Events one request may carry (SendGrid batches); more is a 413. */
#define LUAR_WEBHOOK_MAX_EVENTS 1000
/* Longest event id and type accepted (bytes); longer is a 400. */
#define LUAR_WEBHOOK_MAX_ID 256
#define LUAR_WEBHOOK_MAX_TYPE 256
/* Seconds a 503 asks the provider to wait (Retry-After). */
#define LUAR_WEBHOOK_RETRY_AFTER 5

/* One webhooks.on: a pattern and the job that runs for the events it matches. */
typedef struct luar_webhook_handler {
    char *pattern;    /* AMQP topic pattern ("charge.*", "#") */
    char *job;        /* the job's name in the VM's jobs registry */
    char *queue;      /* the job's queue */
    int max_attempts; /* 1 + retries */
    int priority;
    int fn_ref; /* the job's function (VM registry); sync routes call it inline */
} luar_webhook_handler_t;

typedef struct luar_webhook_route luar_webhook_route_t;

/*
 * Runs handler `h` inline for a sync route (mod_webhooks.c provides it): `args` is the
 * job-argument JSON described above. Must lead to exactly one luar_http_respond(req).
 */
typedef void (*luar_webhook_sync_fn)(void *arg, const luar_webhook_handler_t *h,
                                     luar_http_req_t *req, const char *args, size_t args_len);

/* What webhooks.route was given, checked by mod_webhooks.c. Strings are copied. */
typedef struct luar_webhook_route_config {
    const char *path;           /* the route pattern ("/hooks/stripe") */
    const char *scheme;         /* NULL only with verify == 0 */
    const char *const *secrets; /* as written ("whsec_…"); nsecrets 0 only without verify */
    const size_t *secret_lens;
    size_t nsecrets;
    const luar_webhook_opt_t *opts; /* the scheme's own options, as text */
    size_t nopts;
    double tolerance; /* seconds; 0: the scheme's default (300) */
    int verify;       /* 0: the explicit opt-out, no signature checked */
    double dedupe;    /* seconds an event id is remembered; 0: no dedupe */
    size_t max_body;  /* bytes; 0: the server's limit only */
    int sync;         /* handlers run inline and answer */
} luar_webhook_route_config_t;

/*
 * Creates a route: configures the scheme's verifier (its errors name the option or the
 * secret's position, never a value). Returns 0, LUAR_ENOTFOUND (no such scheme: `err`
 * lists the registered ones), LUAR_EINVAL (the scheme refused an option or a secret) or
 * LUAR_ENOMEM. The caller frees the route with luar_webhook_route_free (the router does).
 */
int luar_webhook_route_new(const luar_webhook_route_config_t *cfg, luar_webhook_route_t **out,
                           luar_buf_t *err);
void luar_webhook_route_free(luar_webhook_route_t *r);

/* The route's pattern, and whether it is sync. */
const char *luar_webhook_route_path(const luar_webhook_route_t *r);
int luar_webhook_route_is_sync(const luar_webhook_route_t *r);
/* The route's configured verifier (its scheme and secrets), or NULL without one. */
const luar_webhook_verifier_t *luar_webhook_route_verifier(const luar_webhook_route_t *r);

/* Sets the inline runner of a sync route. */
void luar_webhook_route_set_sync(luar_webhook_route_t *r, luar_webhook_sync_fn fn, void *arg);

/*
 * Adds a handler (strings copied). Returns 0 or LUAR_ENOMEM. Handlers are matched in the
 * order they were added.
 */
int luar_webhook_route_add_handler(luar_webhook_route_t *r, const char *pattern, const char *job,
                                   const char *queue, int max_attempts, int priority, int fn_ref);

/*
 * Answers `req` (a POST matched to the route; req->route set): the whole path above.
 * Always leads to exactly one luar_http_respond(req), possibly after the queue's callback.
 */
void luar_webhook_ingest(luar_webhook_route_t *r, luar_http_req_t *req);

/*
 * Appends the JSON object of the headers a handler sees (meta.headers) to `out`: names
 * lower-case as the server gives them, repeated headers joined with ", ", without the
 * verifier's signature headers (`v` may be NULL) and the names in `strip` (lower-case,
 * NULL-terminated, may be NULL): signatures and credentials are never stored with a job.
 * Returns 0 or a luar_buf error.
 */
int luar_webhook_headers_json(const luar_http_header_t *headers, size_t n,
                              const luar_webhook_verifier_t *v, const char *const *strip,
                              luar_buf_t *out);

/*
 * Events of a request to a route without a scheme (verify = false): one event, the whole
 * body, which must be JSON; id = its "id" member when it is a string or a number, else the
 * hex SHA-256 of the body; type = its "type" string, else "webhook". `scratch` holds the
 * decoded id and type. Returns 0 or LUAR_EPARSE with the reason in `why`.
 */
int luar_webhook_generic_event(const char *body, size_t len, luar_webhook_event_t *ev,
                               luar_buf_t *scratch, luar_buf_t *why);

/* ---- the recent-deliveries log (recent.c) ---------------------------------------------- */

/* One delivery as the admin API lists it: no bodies, no headers. */
typedef struct luar_webhook_delivery {
    double at;                            /* unix seconds, when answered */
    char route[128];                      /* route pattern */
    char id[LUAR_WEBHOOK_MAX_ID + 1];     /* event id; "" when rejected before verification */
    char type[LUAR_WEBHOOK_MAX_TYPE + 1]; /* event type; "" when unknown */
    const char *outcome; /* accepted, duplicate, invalid_signature, expired, malformed,
                            rejected (static strings) */
    int status;          /* the HTTP status answered */
    char request_id[65];
} luar_webhook_delivery_t;

/* Deliveries remembered per process; older ones are overwritten. */
#define LUAR_WEBHOOK_RECENT 512

/*
 * Records a delivery in the ring and counts it in luar_webhooks_total{route,outcome}.
 * `id` and `type` may be NULL; longer values are cut. `outcome` must be a static string.
 */
void luar_webhook_record(const char *route, const char *id, size_t id_len, const char *type,
                         size_t type_len, const char *outcome, int status, const char *request_id);

/* Copies up to `max` deliveries, newest first, into `out`; returns how many. */
size_t luar_webhook_recent(luar_webhook_delivery_t *out, size_t max);

/*
 * Appends up to `limit` deliveries (newest first) as a JSON array of {at, route, id, type,
 * outcome, status, request_id} to `out`, for GET /admin/api/webhooks. Returns 0 or a
 * luar_buf error.
 */
int luar_webhook_recent_json(luar_buf_t *out, size_t limit);

/* Empties the ring (tests). */
void luar_webhook_recent_clear(void);

#endif
