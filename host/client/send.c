/*
 * A request under a resilience policy (host/client/send.h): the response cache, the host's
 * circuit breaker, the client's rate limit, then the attempt, the breaker's report and the
 * retry decision, in the order docs/client-resilience.md gives. luar.http's request and the
 * plugins' host API both go through it. Loop thread only.
 */
#include "client/send.h"
#include "client/breaker.h"
#include "client/cache.h"
#include "client/ratelimit.h"
#include "common/error.h"
#include "common/clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MAX_HEADERS 256

struct luar_client_send {
    uv_loop_t *loop;
    uv_timer_t wait; /* the waits between attempts (rate-limit turn, retry backoff) */
    luar_client_req_t req;        /* the caller's, with headers copied below */
    luar_client_header_t *headers; /* the request's headers and room for two validators */
    luar_client_call_t *call;      /* the attempt in flight, or NULL */
    int attempt;                   /* 1 for the first */
    luar_retry_policy_t retry;
    int use_breaker;
    luar_breaker_settings_t breaker;
    char host[LUAR_BREAKER_HOST_MAX]; /* "name:port" */
    char breaker_key[LUAR_BREAKER_HOST_MAX]; /* policy.breaker_key, else the host */
    uint64_t breaker_token;
    int breaker_held;           /* allowed for the current attempt, not yet reported */
    luar_tokenbucket_t *bucket; /* the client's rate limiter, or NULL */
    int rate_reserved;          /* this attempt's turn is taken */
    int use_cache;
    double cache_ttl;
    double stale_if_error;     /* seconds past ttl a stale answer may serve; 0: never */
    luar_cache_entry_t *stale; /* a stale entry being revalidated */
    int cached;                /* the outcome came from the cache */
    int has_idempotency_key;
    luar_client_send_fn cb;
    void *arg;
};

/* ---- process-wide state ---------------------------------------------------------------- */

/* One breaker registry and one response cache per process; buckets per client. */
static luar_breaker_registry_t *breakers;
static luar_cache_t *cache;

#define MAX_BUCKETS 256
static struct {
    char key[LUAR_BREAKER_HOST_MAX + 16];
    luar_tokenbucket_t bucket;
} buckets[MAX_BUCKETS];
static int nbuckets;

/* The bucket named `key` with `rate` ("10/s"), created on first use; NULL on a bad rate. */
static luar_tokenbucket_t *bucket_for(const char *key, const char *rate)
{
    for (int i = 0; i < nbuckets; i++)
        if (strcmp(buckets[i].key, key) == 0)
            return &buckets[i].bucket;
    if (nbuckets == MAX_BUCKETS)
        return NULL;
    luar_tokenbucket_t *b = &buckets[nbuckets].bucket;
    if (luar_tokenbucket_init_rate(b, rate) != 0)
        return NULL;
    snprintf(buckets[nbuckets].key, sizeof buckets[nbuckets].key, "%.300s", key);
    nbuckets++;
    return b;
}

/* "scheme://user@host:port/path" → "host:port" (default port by scheme). */
static void url_host(const char *url, char *out, size_t size)
{
    const char *p = strstr(url, "://");
    int https = strncmp(url, "https", 5) == 0;
    p = p ? p + 3 : url;
    const char *end = p + strcspn(p, "/?#");
    const char *at = memchr(p, '@', (size_t)(end - p));
    if (at)
        p = at + 1;
    size_t len = (size_t)(end - p);
    const char *colon = NULL;
    if (*p == '[') {
        const char *rb = memchr(p, ']', len);
        colon = rb && rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = memchr(p, ':', len);
    }
    if (colon)
        snprintf(out, size, "%.*s", (int)len, p);
    else
        snprintf(out, size, "%.*s:%d", (int)len, p, https ? 443 : 80);
}

/* A response made from a cached entry (the caller keeps the entry). */
static luar_client_res_t *res_from_entry(const luar_cache_entry_t *e)
{
    luar_client_res_t *res = calloc(1, sizeof *res);
    if (res == NULL)
        return NULL;
    res->status = e->status;
    res->headers = calloc(e->nheaders ? e->nheaders : 1, sizeof *res->headers);
    for (size_t i = 0; res->headers && i < e->nheaders; i++) {
        res->headers[i].name = strdup(e->headers[i].name);
        res->headers[i].value = strdup(e->headers[i].value);
        res->nheaders++;
    }
    luar_buf_init(&res->body, 0);
    luar_buf_append(&res->body, e->body ? e->body : "", e->body_len);
    return res;
}

static luar_client_res_t *local_error(int rc, const char *kind, const char *message);

/*
 * Before an attempt: on the first, the cache (a fresh entry answers; a stale one is
 * revalidated with If-None-Match / If-Modified-Since); then the host's breaker (refused:
 * kind "breaker_open", or a stale answer when stale_if_error allows), then the client's
 * rate limiter (a turn later: wait and come back; over max_wait: kind "rate_limited").
 * Returns 0 to send now, seconds to wait first, or -1 with `*out` set.
 */
static double resilience_before_attempt(struct luar_client_send *ro, luar_client_res_t **out)
{
    double now = luar_time_now();
    const char *method = ro->req.method ? ro->req.method : "GET";
    if (ro->attempt == 1 && ro->use_cache && cache && !ro->stale && !ro->breaker_held &&
        !ro->rate_reserved) {
        luar_cache_entry_t *e = NULL;
        int found = luar_cache_lookup(cache, method, ro->req.url,
                                      (const luar_cache_header_t *)ro->req.headers,
                                      ro->req.nheaders, now, &e);
        if (found == LUAR_CACHE_FRESH) {
            *out = res_from_entry(e);
            luar_cache_entry_release(e);
            ro->cached = 1;
            return -1;
        }
        if (found == LUAR_CACHE_STALE) {
            ro->stale = e;
            luar_client_header_t *h = (luar_client_header_t *)ro->req.headers;
            if (e->etag && ro->req.nheaders < MAX_HEADERS)
                h[ro->req.nheaders++] = (luar_client_header_t){"If-None-Match", e->etag};
            if (e->last_modified && ro->req.nheaders < MAX_HEADERS)
                h[ro->req.nheaders++] =
                    (luar_client_header_t){"If-Modified-Since", e->last_modified};
        }
    }
    if (ro->use_breaker && !ro->breaker_held) {
        int ok = luar_breaker_allow(breakers, ro->breaker_key, &ro->breaker, now,
                                    &ro->breaker_token);
        if (ok == 0) {
            luar_cache_entry_t *e = ro->stale_if_error > 0 && cache
                                        ? luar_cache_stale_if_error(
                                              cache, method, ro->req.url,
                                              (const luar_cache_header_t *)ro->req.headers,
                                              ro->req.nheaders, now, ro->stale_if_error)
                                        : NULL;
            if (e) {
                *out = res_from_entry(e);
                luar_cache_entry_release(e);
                ro->cached = 1;
                return -1;
            }
            char msg[240];
            snprintf(msg, sizeof msg, "circuit breaker open for %.200s", ro->breaker_key);
            *out = local_error(LUAR_EBUSY, "breaker_open", msg);
            if (*out)
                (*out)->retry_after = luar_breaker_retry_in(breakers, ro->breaker_key, now);
            return -1;
        }
        ro->breaker_held = ok == 1; /* ETOOBIG and friends: send untracked */
    }
    if (ro->bucket && !ro->rate_reserved) {
        double wait = luar_tokenbucket_reserve(ro->bucket, now);
        if (wait < 0) {
            if (ro->breaker_held)
                luar_breaker_report(breakers, ro->breaker_key, ro->breaker_token,
                                    LUAR_BREAKER_NEUTRAL, now);
            ro->breaker_held = 0;
            *out = local_error(LUAR_EBUSY, "rate_limited",
                               "client rate limit: the wait for a turn is over max_wait");
            if (*out)
                (*out)->retry_after = luar_tokenbucket_peek(ro->bucket, now);
            return -1;
        }
        ro->rate_reserved = 1;
        if (wait > 0)
            return wait;
    }
    return 0;
}

/* After an attempt: the breaker hears how the host did (5xx, connect, timeout: failure). */
static void resilience_after_attempt(struct luar_client_send *ro, luar_client_res_t **res)
{
    if (ro->breaker_held)
        luar_breaker_report(breakers, ro->breaker_key, ro->breaker_token,
                            luar_breaker_outcome((*res)->rc ? 0 : (int)(*res)->status,
                                                 (*res)->rc ? (*res)->kind : NULL),
                            luar_time_now());
    ro->breaker_held = 0;
    ro->rate_reserved = 0;
}

/* The retry decision (host/client/retry.c): seconds before the next attempt, or -1. */
static double resilience_retry_delay(struct luar_client_send *ro, const luar_client_res_t *res)
{
    double delay = -1;
    if (luar_retry_should(&ro->retry, ro->req.method ? ro->req.method : "GET",
                          ro->has_idempotency_key, ro->attempt, res->rc ? 0 : (int)res->status,
                          res->rc ? res->kind : NULL,
                          res->rc ? NULL : luar_client_res_header(res, "retry-after"),
                          luar_time_now(), &delay) == 1)
        return delay;
    return -1;
}

/*
 * The final outcome and the cache: a 304 to a revalidation answers from the entry; a
 * transport error or a 5xx answers stale when stale_if_error allows; other answers are
 * offered to the cache (it keeps what is cacheable); a successful unsafe request drops the
 * URL's entries.
 */
static luar_client_res_t *resilience_final(struct luar_client_send *ro, luar_client_res_t *res)
{
    if (!ro->use_cache || cache == NULL || res == NULL)
        goto done;
    double now = luar_time_now();
    const char *method = ro->req.method ? ro->req.method : "GET";
    if (res->rc == 0 && res->status == 304 && ro->stale) {
        luar_cache_revalidated(cache, ro->stale, now, ro->cache_ttl);
        luar_client_res_free(res);
        res = res_from_entry(ro->stale);
        ro->cached = 1;
    } else if ((res->rc || res->status >= 500) && ro->stale_if_error > 0) {
        luar_cache_entry_t *e = luar_cache_stale_if_error(
            cache, method, ro->req.url, (const luar_cache_header_t *)ro->req.headers,
            ro->req.nheaders, now, ro->stale_if_error);
        if (e) {
            luar_client_res_free(res);
            res = res_from_entry(e);
            luar_cache_entry_release(e);
            ro->cached = 1;
        }
    } else if (res->rc == 0) {
        luar_cache_store(cache, method, ro->req.url, (const luar_cache_header_t *)ro->req.headers,
                         ro->req.nheaders, (int)res->status,
                         (const luar_cache_header_t *)res->headers, res->nheaders,
                         res->body.data, res->body.len, ro->cache_ttl, now);
        if (res->status < 400 && strcmp(method, "GET") && strcmp(method, "HEAD"))
            luar_cache_invalidate(cache, ro->req.url);
    }
done:
    if (ro->stale)
        luar_cache_entry_release(ro->stale);
    ro->stale = NULL;
    return res;
}

/* ---- the attempt loop ------------------------------------------------------------------ */

static void start_attempt(struct luar_client_send *ro);

static void send_closed(uv_handle_t *h)
{
    free(h->data);
}

/* Delivers the outcome, then the send is gone (its timer closes, the struct is freed). */
static void finish(struct luar_client_send *ro, luar_client_res_t *res)
{
    if (ro->stale)
        luar_cache_entry_release(ro->stale);
    ro->stale = NULL;
    luar_client_send_fn cb = ro->cb;
    void *arg = ro->arg;
    int cached = ro->cached;
    uv_close((uv_handle_t *)&ro->wait, send_closed);
    cb(arg, res, cached);
}

static void on_wait_over(uv_timer_t *t)
{
    start_attempt(t->data);
}

static void wait_then_attempt(struct luar_client_send *ro, double seconds)
{
    uv_update_time(ro->loop);
    uv_timer_start(&ro->wait, on_wait_over, (uint64_t)(seconds * 1000.0 + 0.5), 0);
}

static void on_response(void *arg, luar_client_res_t *res)
{
    struct luar_client_send *ro = arg;
    ro->call = NULL;
    resilience_after_attempt(ro, &res);
    double delay = resilience_retry_delay(ro, res);
    if (delay >= 0) {
        luar_client_res_free(res);
        ro->attempt++;
        wait_then_attempt(ro, delay);
        return;
    }
    finish(ro, resilience_final(ro, res));
}

/* A failure before anything was sent, delivered like any other outcome. */
static luar_client_res_t *local_error(int rc, const char *kind, const char *message)
{
    luar_client_res_t *res = calloc(1, sizeof *res);
    if (res == NULL)
        return NULL;
    res->rc = rc;
    res->kind = kind;
    snprintf(res->message, sizeof res->message, "%s", message);
    return res;
}

static void start_attempt(struct luar_client_send *ro)
{
    luar_client_res_t *res = NULL;
    double wait = resilience_before_attempt(ro, &res);
    if (wait < 0) {
        finish(ro, res);
        return;
    }
    if (wait > 0) {
        wait_then_attempt(ro, wait);
        return;
    }
    int rc = luar_client_request(ro->loop, &ro->req, on_response, ro, &ro->call);
    if (rc) {
        ro->call = NULL;
        finish(ro, local_error(rc, rc == LUAR_EINVAL ? "invalid" : "connect",
                               rc == LUAR_EINVAL ? "invalid request" : luar_strerror(rc)));
    }
}


void luar_client_policy_init(luar_client_policy_t *p)
{
    memset(p, 0, sizeof *p);
    luar_retry_policy_init(&p->retry);
    p->breaker = 1;
    luar_breaker_settings_init(&p->breaker_settings);
}

int luar_client_send(uv_loop_t *loop, const luar_client_req_t *req,
                     const luar_client_policy_t *policy, luar_client_send_fn cb, void *arg,
                     luar_client_send_t **out)
{
    if (req->url == NULL || req->nheaders > MAX_HEADERS - 2)
        return LUAR_EINVAL;
    struct luar_client_send *ro = calloc(1, sizeof *ro + (req->nheaders + 2) * sizeof *ro->headers);
    if (ro == NULL)
        return LUAR_ENOMEM;
    ro->headers = (luar_client_header_t *)(ro + 1);
    memcpy(ro->headers, req->headers, req->nheaders * sizeof *ro->headers);
    ro->loop = loop;
    ro->req = *req;
    ro->req.headers = ro->headers;
    ro->attempt = 1;
    ro->retry = policy->retry;
    ro->breaker = policy->breaker_settings;
    ro->cb = cb;
    ro->arg = arg;
    url_host(req->url, ro->host, sizeof ro->host);
    snprintf(ro->breaker_key, sizeof ro->breaker_key, "%s",
             policy->breaker_key ? policy->breaker_key : ro->host);
    if (policy->breaker && breakers == NULL)
        breakers = luar_breaker_registry_new(LUAR_BREAKER_DEFAULT_MAX_HOSTS);
    ro->use_breaker = policy->breaker && breakers != NULL;
    if (policy->rate) {
        char def[LUAR_BREAKER_HOST_MAX + 8];
        snprintf(def, sizeof def, "host:%s", ro->host);
        ro->bucket = bucket_for(policy->rate_key ? policy->rate_key : def, policy->rate);
        if (ro->bucket == NULL) {
            free(ro);
            return LUAR_EINVAL;
        }
        if (policy->rate_max_wait > 0)
            ro->bucket->max_wait = policy->rate_max_wait;
    }
    if (policy->cache) {
        if (cache == NULL)
            cache = luar_cache_new(LUAR_CACHE_DEFAULT_MAX_BYTES);
        ro->use_cache = cache != NULL;
        ro->cache_ttl = policy->cache_ttl;
        ro->stale_if_error = policy->stale_if_error;
    }
    for (size_t i = 0; i < req->nheaders; i++)
        if (strcasecmp(req->headers[i].name, "idempotency-key") == 0)
            ro->has_idempotency_key = 1;
    uv_timer_init(loop, &ro->wait);
    ro->wait.data = ro;
    if (out)
        *out = ro;
    start_attempt(ro);
    return 0;
}

void luar_client_send_reset(void)
{
    luar_breaker_registry_reset(breakers);
    luar_cache_clear(cache);
    for (int i = 0; i < nbuckets; i++) {
        luar_tokenbucket_t *b = &buckets[i].bucket;
        b->tokens = b->burst;
        b->last = -1; /* refilled from the next reserve's time on */
    }
}

void luar_client_send_cancel(luar_client_send_t *ro)
{
    if (ro->call) /* mid-transfer: stop it now */
        luar_client_cancel(ro->call);
    ro->call = NULL;
    double now = luar_time_now();
    if (ro->breaker_held) /* cancelled: the host did nothing wrong */
        luar_breaker_report(breakers, ro->breaker_key, ro->breaker_token, LUAR_BREAKER_NEUTRAL,
                            now);
    ro->breaker_held = 0;
    if (ro->rate_reserved)
        luar_tokenbucket_cancel(ro->bucket, now);
    ro->rate_reserved = 0;
    if (ro->stale)
        luar_cache_entry_release(ro->stale);
    ro->stale = NULL;
    uv_timer_stop(&ro->wait);
    uv_close((uv_handle_t *)&ro->wait, send_closed);
}
