/*
 * The queue backend interface. One contract, two backends: SQLite (embedded default, this
 * folder's sqlite.c) and Redis (a later issue). Everything above this header (the job
 * runner, luar.jobs, luar.events, webhooks, the CLI and the admin API) talks only to it,
 * so a new backend needs no change above it.
 *
 * Every operation is asynchronous: it is queued and its callback runs later on the loop
 * thread, once the work is durable (for writes: committed with fsync). A function that
 * fails synchronously returns a LUAR_E code and never calls its callback. Callbacks get
 * `rc` 0 or a LUAR_E code (LUAR_EIO when the backend cannot be reached or written: the
 * caller answers 503 and retries later). Pointers passed to a callback are valid only
 * during the call. Strings given to an operation are copied before it returns.
 *
 * Times are unix seconds (double). `now` is taken by the backend from the wall clock
 * unless an operation takes it explicitly (tests move time through luar_queue_set_clock).
 *
 * Loop thread only, except that a backend may do its work on threads of its own.
 */
#ifndef LUAR_QUEUE_H
#define LUAR_QUEUE_H

#include "common/buf.h"
#include "ratelimit/gcra.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct luar_queue luar_queue_t;

typedef enum luar_job_state {
    LUAR_JOB_QUEUED = 0,    /* due, waiting for a worker */
    LUAR_JOB_SCHEDULED = 1, /* waiting for run_at (delay, at, cron, retry_in) */
    LUAR_JOB_RUNNING = 2,   /* claimed under a lease */
    LUAR_JOB_SUCCEEDED = 3, /* finished; result kept until expires_at */
    LUAR_JOB_RETRYING = 4,  /* failed, waiting for run_at to run again */
    LUAR_JOB_DEAD = 5,      /* out of attempts; kept until expires_at */
} luar_job_state_t;

#define LUAR_JOB_STATES 6

/* "queued", "scheduled", "running", "succeeded", "retrying", "dead". */
const char *luar_job_state_name(luar_job_state_t s);
/* Parses a state name; returns 0 or LUAR_EINVAL. */
int luar_job_state_parse(const char *name, luar_job_state_t *out);

/* A job as stored. Strings are NUL-terminated; optional ones are NULL when absent. */
typedef struct luar_job {
    char id[40];          /* assigned by the backend at enqueue: time-ordered, unique */
    const char *name;     /* job definition name */
    const char *queue;    /* queue name ("default" when not given) */
    const char *args;     /* JSON text (an array or object); "null" when none */
    const char *key;      /* unique key, or NULL */
    int priority;         /* higher runs first among due jobs */
    luar_job_state_t state;
    int attempt;          /* attempts started so far (1 while the first attempt runs) */
    int max_attempts;     /* 1 + retries; 0 means unlimited */
    double enqueued_at;
    double run_at;        /* when due (also the cron tick / delayed time: job.scheduled_at) */
    double started_at;    /* last claim; 0 when never */
    double finished_at;   /* succeeded or dead; 0 otherwise */
    double lease_expires_at; /* while running */
    const char *owner;    /* lease owner while running, else NULL */
    const char *result;   /* JSON, once succeeded; NULL otherwise */
    const char *last_error;
    const char *traceback;
    const char *trace;    /* `traceparent` of the span that enqueued it (W3C), or NULL */
    double expires_at;    /* when a finished job is deleted; 0: never */
} luar_job_t;

/* What to enqueue. Strings are copied. */
typedef struct luar_job_spec {
    const char *name;      /* required */
    const char *queue;     /* NULL: "default" */
    const char *args;      /* JSON text; NULL: "null" */
    const char *key;       /* unique key: while a job with this key is not finished
                              (queued, scheduled, running, retrying), enqueue returns its id */
    int priority;
    double run_at;         /* 0: now (queued); in the future: scheduled; in the past:
                              queued, and kept as the job's run_at (a cron tick) */
    int max_attempts;      /* 1 + retries; 0: unlimited */
    const char *trace;     /* `traceparent` of the enqueuing span (trace/trace.h); NULL:
                              none. Each attempt is a span whose parent it names. */
} luar_job_spec_t;

/* Counts by queue and state, for stats and metrics. */
typedef struct luar_queue_count {
    const char *queue;
    int64_t counts[LUAR_JOB_STATES];
} luar_queue_count_t;

/*
 * Filter for list, bulk retry and purge. NULL, zero or negative fields match everything.
 * A job's time, for `since` and `until`, is finished_at for a finished job (succeeded,
 * dead: when it died) and enqueued_at otherwise.
 */
typedef struct luar_job_filter {
    int state;             /* a luar_job_state_t, or -1 */
    const char *queue;
    const char *name;
    size_t limit;          /* list only; 0: 100 */
    const char *cursor;    /* list only: continue after this job id (from next_cursor) */
    const char *error;     /* last_error contains this text (case-sensitive), or NULL */
    double since;          /* the job's time >= since (unix seconds); 0: no bound */
    double until;          /* the job's time < until; 0: no bound */
    size_t max;            /* retry_many, purge: at most this many jobs, oldest id first,
                              so a caller can work in bounded batches; 0: every match */
} luar_job_filter_t;

/* ---- opening ------------------------------------------------------------------------ */

/*
 * Opens the backend named by `url` ("sqlite:path/to/file.db"; "redis://…" later) on `loop`.
 * Creates or migrates the schema. Returns 0, LUAR_EINVAL (unknown scheme; message in
 * err), LUAR_EIO (cannot open or migrate; message in err naming the file). Synchronous:
 * called at start-up and by CLI commands before anything is served.
 */
int luar_queue_open(uv_loop_t *loop, const char *url, luar_queue_t **out, luar_buf_t *err);

/*
 * Copies `url` into out (at most size bytes, NUL-terminated) with the password of a
 * "scheme://user:password@host" URL replaced by "***", for messages and logs.
 */
void luar_queue_url_redact(const char *url, char *out, size_t size);

/*
 * Closes the backend after the operations already queued have completed (their callbacks
 * run), then calls done(arg) when not NULL. The queue must not be used afterwards.
 */
void luar_queue_close(luar_queue_t *q, void (*done)(void *arg), void *arg);

/* For tests: a clock returning unix seconds, used instead of the wall clock; NULL resets. */
void luar_queue_set_clock(luar_queue_t *q, double (*now)(void *arg), void *arg);

/* The backend's current time (its clock). */
double luar_queue_now(luar_queue_t *q);

/*
 * How long jobs that luar_queue_sweep buries as dead are kept (the `jobs.dead_ttl`
 * setting, seconds; default 2592000). Applies to sweeps called afterwards.
 */
void luar_queue_set_dead_ttl(luar_queue_t *q, double dead_ttl);

/*
 * The message of the most recent operation that failed (for a log line next to the 503),
 * e.g. "/data/luar.db: disk I/O error"; "" when none has. Owned by the queue; valid until
 * the next callback runs. Loop thread only.
 */
const char *luar_queue_last_error(luar_queue_t *q);

/* ---- writes ------------------------------------------------------------------------- */

/*
 * Enqueues `n` jobs atomically (one commit). With `dedupe_key` (NULL for none), the whole
 * batch is enqueued only if the key was not seen within its TTL; the key is recorded in
 * the same commit with expiry now + dedupe_ttl. This one mechanism serves webhook event
 * dedupe, events.publish (one job per subscriber), and cron tick claims (key
 * "cron:<name>:<tick>": the process whose commit records it fires the tick).
 * cb(arg, rc, ids, n, duplicate): ids[i] is the id of job i (an existing job's id when its
 * spec's key matched one not finished); duplicate = 1 when dedupe_key was already there
 * (nothing enqueued, ids NULL).
 */
typedef void (*luar_queue_enqueue_cb)(void *arg, int rc, const char *const *ids, size_t n,
                                      int duplicate);
int luar_queue_enqueue(luar_queue_t *q, const luar_job_spec_t *specs, size_t n,
                       const char *dedupe_key, double dedupe_ttl, luar_queue_enqueue_cb cb,
                       void *arg);

/*
 * Claims up to `max` due jobs (queued, or scheduled/retrying with run_at <= now) of
 * `queue` (NULL: any queue), highest priority first, then oldest run_at: each becomes
 * running with attempt + 1, owner = `owner`, lease_expires_at = now + `lease`. A job is
 * never handed to two claimers at once. cb(arg, rc, jobs, n).
 */
typedef void (*luar_queue_jobs_cb)(void *arg, int rc, const luar_job_t *jobs, size_t n);
int luar_queue_claim(luar_queue_t *q, const char *queue, size_t max, const char *owner,
                     double lease, luar_queue_jobs_cb cb, void *arg);

/*
 * Extends to now + `lease` the leases that `owner` still holds on `ids`.
 * cb(arg, rc, lost, nlost): the ids whose lease this owner no longer holds (reclaimed).
 */
typedef void (*luar_queue_ids_cb)(void *arg, int rc, const char *const *ids, size_t n);
int luar_queue_heartbeat(luar_queue_t *q, const char *const *ids, size_t n, const char *owner,
                         double lease, luar_queue_ids_cb cb, void *arg);

/* Completion callback of single-job writes: rc LUAR_ENOTFOUND when the job is gone or
 * its lease is no longer `owner`'s (the write is then not applied: fencing). */
typedef void (*luar_queue_done_cb)(void *arg, int rc);

/* running → succeeded with `result` (JSON or NULL), expires_at = now + result_ttl. */
int luar_queue_complete(luar_queue_t *q, const char *id, const char *owner, const char *result,
                        double result_ttl, luar_queue_done_cb cb, void *arg);

/*
 * running → retrying at `retry_at` (> 0), or → dead when retry_at == 0 (expires_at = now +
 * dead_ttl), recording `error` and `traceback` (either may be NULL).
 */
int luar_queue_fail(luar_queue_t *q, const char *id, const char *owner, const char *error,
                    const char *traceback, double retry_at, double dead_ttl,
                    luar_queue_done_cb cb, void *arg);

/*
 * running → scheduled at `run_at` without counting the attempt (attempt - 1): a job's
 * `return jobs.retry_in(s)`, a rate limit, or a graceful shutdown returning unfinished
 * work (run_at = now).
 */
int luar_queue_release(luar_queue_t *q, const char *id, const char *owner, double run_at,
                       luar_queue_done_cb cb, void *arg);

/*
 * Maintenance, run periodically by every process: running jobs whose lease ended become
 * retrying (run_at now) — or dead ("lease expired after the last attempt") when they had
 * used max_attempts; finished jobs, dedupe keys past expires_at and rate-limit state whose
 * TAT has passed are deleted (counted in `expired`).
 * cb(arg, rc, reclaimed, expired).
 */
typedef void (*luar_queue_sweep_cb)(void *arg, int rc, size_t reclaimed, size_t expired);
int luar_queue_sweep(luar_queue_t *q, luar_queue_sweep_cb cb, void *arg);

/* dead|retrying|scheduled|succeeded → queued now with attempt 0 (the CLI and admin retry). */
int luar_queue_retry(luar_queue_t *q, const char *id, luar_queue_done_cb cb, void *arg);

/* Retries every job matching `filter` (e.g. state dead). cb(arg, rc, count). */
typedef void (*luar_queue_count_cb)(void *arg, int rc, size_t count);
int luar_queue_retry_many(luar_queue_t *q, const luar_job_filter_t *filter,
                          luar_queue_count_cb cb, void *arg);

/* Deletes one job (any state; a running job's worker then fails its fenced writes). */
int luar_queue_delete(luar_queue_t *q, const char *id, luar_queue_done_cb cb, void *arg);

/* Deletes every job matching `filter` (state required). cb(arg, rc, count). */
int luar_queue_purge(luar_queue_t *q, const luar_job_filter_t *filter, luar_queue_count_cb cb,
                     void *arg);

/* ---- reads -------------------------------------------------------------------------- */

/* One job; rc LUAR_ENOTFOUND when absent. cb(arg, rc, &job, 1). */
int luar_queue_get(luar_queue_t *q, const char *id, luar_queue_jobs_cb cb, void *arg);

/*
 * Jobs matching `filter`, newest first (id descending), at most filter->limit.
 * cb(arg, rc, jobs, n, next_cursor): next_cursor is NULL at the end.
 */
typedef void (*luar_queue_list_cb)(void *arg, int rc, const luar_job_t *jobs, size_t n,
                                   const char *next_cursor);
int luar_queue_list(luar_queue_t *q, const luar_job_filter_t *filter, luar_queue_list_cb cb,
                    void *arg);

/* Counts by queue and state. cb(arg, rc, counts, n). */
typedef void (*luar_queue_counts_cb)(void *arg, int rc, const luar_queue_count_t *counts,
                                     size_t n);
int luar_queue_counts(luar_queue_t *q, luar_queue_counts_cb cb, void *arg);

/*
 * The earliest run_at among scheduled and retrying jobs (0 when none), so a dispatcher
 * can sleep until then. cb(arg, rc, when).
 */
typedef void (*luar_queue_time_cb)(void *arg, int rc, double when);
int luar_queue_next_due(luar_queue_t *q, luar_queue_time_cb cb, void *arg);

/* Checks the backend answers (readyz). cb(arg, rc). */
int luar_queue_ping(luar_queue_t *q, luar_queue_done_cb cb, void *arg);

/* ---- rate limits -------------------------------------------------------------------- */

/*
 * One GCRA step (ratelimit/gcra.h) on the state the backend keeps for `key`, atomically
 * with respect to every handle and process sharing the backend, so a limit is exact across
 * them: reads the key's TAT, runs luar_gcra_check at the backend's `now` with `limit` and
 * `cost` (1 <= cost <= limit->burst), and stores the new TAT when the result says so
 * (result->store: the request was allowed, or the clock had gone back).
 * `key` is opaque to the backend (callers hash what they were given: it may be a client's
 * address or API key). State whose TAT has passed is the same as no state; the sweep
 * deletes it. Rate-limit state is not durable like jobs: a backend may commit it without
 * waiting for the disk (after a power loss a client may get part of a burst again).
 * cb(arg, rc, result): result is NULL when rc != 0.
 */
typedef void (*luar_queue_rate_cb)(void *arg, int rc, const luar_gcra_result_t *result);
int luar_queue_rate_check(luar_queue_t *q, const char *key, const luar_gcra_t *limit,
                          int64_t cost, luar_queue_rate_cb cb, void *arg);

/* ---- cache (luar.cache) ------------------------------------------------------------- */

/*
 * A key-value cache with a time to live per entry, for luar.cache. Where it lives is the
 * backend's choice: the SQLite backend keeps it in process (a byte-bounded LRU per queue
 * handle, i.e. per process, answered on the loop thread without touching the file); the
 * Redis backend keeps it on the server, shared by every process and instance.
 *
 * Keys are C strings of 1 to LUAR_QUEUE_CACHE_MAX_KEY bytes, opaque to the backend (the
 * Redis backend prefixes them); values are bytes (any, NUL included) of at most the
 * queue's max_value, opaque to the backend too except for incr, which reads and writes the
 * canonical decimal text of a signed 64-bit integer (cache/lru.h; what Redis's INCRBY
 * reads and writes). A ttl is in seconds (> 0; fractions allowed, rounded up to the
 * millisecond by Redis), 0 for none: the entry then lasts until deleted, replaced or
 * evicted. Cache state is not durable: a backend may lose it at any
 * time (eviction, restart); a value larger than an in-process cache's whole bound is taken
 * and not kept, as if evicted at once. Bad arguments (an empty or too long key, a ttl < 0 or over
 * LUAR_QUEUE_CACHE_MAX_TTL) fail with LUAR_EINVAL and a value over max_value with LUAR_ETOOBIG,
 * synchronously.
 */
#define LUAR_QUEUE_CACHE_MAX_KEY 512
#define LUAR_QUEUE_CACHE_MAX_TTL 1e10 /* seconds, about 317 years */
#define LUAR_QUEUE_CACHE_DEFAULT_MAX_BYTES ((size_t)64 << 20)
#define LUAR_QUEUE_CACHE_DEFAULT_MAX_VALUE ((size_t)1 << 20)

/*
 * Sets the bound of an in-process cache (`max_bytes`, ignored by a backend that keeps the
 * cache elsewhere) and the largest value a set takes (`max_value`, every backend); 0 keeps
 * the current setting. Defaults: LUAR_QUEUE_CACHE_DEFAULT_MAX_BYTES and _MAX_VALUE.
 */
void luar_queue_set_cache_limits(luar_queue_t *q, size_t max_bytes, size_t max_value);

/* The largest value luar_queue_cache_set takes (bytes). */
size_t luar_queue_cache_max_value(luar_queue_t *q);

/* cb(arg, rc, value, len): value is NULL when the key is absent (or expired). */
typedef void (*luar_queue_cache_get_cb)(void *arg, int rc, const char *value, size_t len);
int luar_queue_cache_get(luar_queue_t *q, const char *key, luar_queue_cache_get_cb cb, void *arg);

/* Stores `len` bytes of `value` under `key` for `ttl` seconds (0: no expiry), replacing
 * what was there (its expiry included). cb(arg, rc). */
int luar_queue_cache_set(luar_queue_t *q, const char *key, const char *value, size_t len,
                         double ttl, luar_queue_done_cb cb, void *arg);

/* Removes `key` (absent is not an error). cb(arg, rc). */
int luar_queue_cache_delete(luar_queue_t *q, const char *key, luar_queue_done_cb cb, void *arg);

/*
 * Adds `delta` to the integer under `key`, atomically with respect to every handle sharing
 * the cache. An absent key starts at 0 and gets `ttl` (0: none); an existing key keeps its
 * expiry. cb(arg, rc, value): the new value; rc LUAR_EINVAL when the value there is not an
 * integer or the sum would overflow (nothing is changed).
 */
typedef void (*luar_queue_cache_incr_cb)(void *arg, int rc, int64_t value);
int luar_queue_cache_incr(luar_queue_t *q, const char *key, int64_t delta, double ttl,
                          luar_queue_cache_incr_cb cb, void *arg);

/* ---- durable key-value (luar.oauth) ------------------------------------------------- */

/*
 * Small durable records shared by every process and instance on the backend, with an
 * optional expiry: OAuth tokens (already encrypted by the caller), OAuth states, and the
 * locks that keep one token refresh in flight. Unlike the cache, what is written here stays
 * until deleted or expired (SQLite: the `kv` table of the queue's file; Redis: the key
 * <prefix>kv:<key>). Keys as the cache's; values up to the cache's max_value.
 *
 *   LUAR_KV_GET     cb(applied = 1 when found, value, len)
 *   LUAR_KV_PUT     replaces; applied = 1
 *   LUAR_KV_ADD     stores only when the key is absent (or expired): applied = 1 when it did
 *                   (a lock: set-if-absent with a ttl)
 *   LUAR_KV_DELETE  removes; with a value, only when the stored value equals it (releasing
 *                   a lock one still owns); applied = 1 when something was removed
 *   LUAR_KV_TAKE    removes and returns the value in one step (a one-time state): applied
 *                   = 1 with the value when it was there
 * `ttl` in seconds (0: no expiry) for PUT and ADD.
 */
typedef enum luar_kv_mode {
    LUAR_KV_GET = 0,
    LUAR_KV_PUT,
    LUAR_KV_ADD,
    LUAR_KV_DELETE,
    LUAR_KV_TAKE,
} luar_kv_mode_t;

typedef void (*luar_queue_kv_cb)(void *arg, int rc, int applied, const char *value, size_t len);
int luar_queue_kv(luar_queue_t *q, luar_kv_mode_t mode, const char *key, const char *value,
                  size_t len, double ttl, luar_queue_kv_cb cb, void *arg);

#endif
