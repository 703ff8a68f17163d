/*
 * An outbound request under a resilience policy: the response cache, the per-host circuit
 * breaker, the client's rate limit and retries with backoff (host/client/{cache,breaker,
 * ratelimit,retry}.c), around luar_client_request(). The one way luar.http and plugins send
 * with retries. Loop thread only.
 */
#ifndef LUAR_CLIENT_SEND_H
#define LUAR_CLIENT_SEND_H

#include "client/client.h"
#include "client/breaker.h"
#include "client/retry.h"

#include <uv.h>

typedef struct luar_client_policy {
    luar_retry_policy_t retry;  /* retry.attempts = 1: never retry */
    int breaker;                /* nonzero: the host's circuit breaker */
    luar_breaker_settings_t breaker_settings;
    const char *breaker_key;    /* the breaker's name (copied); NULL: the URL's "host:port".
                                   Webhook delivery keeps one breaker per endpoint URL */
    const char *rate;           /* "N/s", "N/m", "N/h", "N/d", or NULL for no limit */
    const char *rate_key;       /* the bucket's name (one per client); NULL: per host */
    double rate_max_wait;       /* seconds a caller may wait its turn; 0: the default 30 */
    int cache;                  /* nonzero: the in-process response cache */
    double cache_ttl;           /* seconds fresh; 0: revalidate every time */
    double stale_if_error;      /* seconds past ttl a stale copy may answer a failure */
} luar_client_policy_t;

/* Fills `p` with the defaults of SPEC §4: retries and breaker on, no rate limit, no cache. */
void luar_client_policy_init(luar_client_policy_t *p);

typedef struct luar_client_send luar_client_send_t;

/*
 * Called once with the outcome (owned by the callee: free with luar_client_res_free);
 * `cached` is nonzero when it came from the cache (fresh, revalidated or stale).
 */
typedef void (*luar_client_send_fn)(void *arg, luar_client_res_t *res, int cached);

/*
 * Sends `req` under `policy` (both read now; the strings `req` points to must stay valid
 * until the callback or luar_client_send_cancel, the headers array is copied). Returns 0
 * and sets `*out` (valid until the callback), or LUAR_EINVAL (no url, bad rate, too many
 * headers) / LUAR_ENOMEM without calling `cb`. The callback never runs inside this call
 * unless the outcome is known at once (a cache hit, an open breaker, a refused turn).
 */
int luar_client_send(uv_loop_t *loop, const luar_client_req_t *req,
                     const luar_client_policy_t *policy, luar_client_send_fn cb, void *arg,
                     luar_client_send_t **out);

/* Stops a send: its transfer is cancelled, `cb` is never called, and it frees itself. */
void luar_client_send_cancel(luar_client_send_t *s);

/*
 * Forgets what the process learnt from earlier sends (`luar test`, before each spec):
 * every breaker closed, every rate-limit bucket full, the response cache empty.
 */
void luar_client_send_reset(void);

#endif
