/*
 * What a queue backend implements, below the public interface of queue.h.
 *
 * The generic layer (queue.c) checks the arguments of every luar_queue_* call, copies them
 * into one operation record (luar_qop_t) with the caller's callback and the queue's `now`,
 * and hands the record to the backend's `submit`. The backend does the work however it
 * likes (SQLite: a writer thread committing batches; Redis: pipelined commands on the
 * loop), fills in the record's results, and hands the record back on the loop thread with
 * luar_qop_complete, which calls the callback and frees the record.
 *
 * A new backend is one file defining a luar_queue_backend_t and one line in the scheme
 * table of queue.c. Nothing above queue.h changes.
 */
#ifndef LUAR_QUEUE_BACKEND_H
#define LUAR_QUEUE_BACKEND_H

#include "queue/queue.h"

#include <stddef.h>

/* The operations of queue.h, one kind each. */
typedef enum luar_qop_kind {
    LUAR_QOP_ENQUEUE = 0,
    LUAR_QOP_CLAIM,
    LUAR_QOP_HEARTBEAT,
    LUAR_QOP_COMPLETE,
    LUAR_QOP_FAIL,
    LUAR_QOP_RELEASE,
    LUAR_QOP_SWEEP,
    LUAR_QOP_RETRY,
    LUAR_QOP_RETRY_MANY,
    LUAR_QOP_DELETE,
    LUAR_QOP_PURGE,
    LUAR_QOP_GET,
    LUAR_QOP_LIST,
    LUAR_QOP_COUNTS,
    LUAR_QOP_NEXT_DUE,
    LUAR_QOP_PING,
    LUAR_QOP_RATE,
    LUAR_QOP_CACHE_GET,
    LUAR_QOP_CACHE_SET,
    LUAR_QOP_CACHE_DELETE,
    LUAR_QOP_CACHE_INCR,
    LUAR_QOP_KV,
} luar_qop_kind_t;

#define LUAR_QOP_KINDS 22

/* A block of the per-operation arena (see luar_qop_alloc). */
typedef struct luar_qop_block luar_qop_block_t;

/*
 * One operation in flight. Inputs are set by the generic layer and are read-only for the
 * backend; outputs are set by the backend. Every string and array hanging off the record
 * lives in the record's arena (luar_qop_alloc/luar_qop_strdup) and is freed with it.
 */
typedef struct luar_qop {
    struct luar_qop *next; /* free for the backend's own lists */
    luar_queue_t *q;
    luar_qop_kind_t kind;
    double now;       /* the queue's clock when the operation was called */
    void (*cb)(void); /* the caller's callback, cast back by kind in luar_qop_complete */
    void *arg;

    /* ---- inputs ---- */
    luar_job_spec_t *specs; /* enqueue: nspecs specs, queue and args defaulted */
    size_t nspecs;
    const char *dedupe_key; /* enqueue, or NULL */
    double dedupe_ttl;
    const char *id;         /* complete, fail, release, retry, delete, get */
    const char *owner;      /* claim, heartbeat, complete, fail, release */
    const char *queue;      /* claim: NULL for any */
    const char *text;       /* complete: result; fail: error (either may be NULL) */
    const char *traceback;  /* fail, or NULL */
    const char *const *ids; /* heartbeat */
    size_t nids;
    size_t max;               /* claim */
    double lease;             /* claim, heartbeat */
    double when;              /* fail: retry_at (0: dead); release: run_at */
    double ttl;               /* complete: result_ttl; fail: dead_ttl; sweep: dead_ttl */
    luar_job_filter_t filter; /* retry_many, purge, list; limit defaulted for list */
    const char *rate_key;     /* rate */
    luar_gcra_t limit;        /* rate */
    int64_t cost;             /* rate: 1 <= cost <= limit.burst */
    const char *cache_key;    /* cache_*: 1..LUAR_QUEUE_CACHE_MAX_KEY bytes, no NUL */
    const char *value;        /* cache_set: value_len bytes (NUL-terminated in the arena) */
    size_t value_len;
    int64_t delta; /* cache_incr */
    luar_kv_mode_t kv_mode; /* kv: cache_key, value (NULL: none), ttl */
    /* cache_set, cache_incr: `ttl` above, seconds, 0 for none */

    /* ---- outputs ---- */
    int rc;               /* 0 or a LUAR_E code */
    const char *error;    /* a message for rc != 0 (naming the file), or NULL */
    const char **out_ids; /* enqueue: nspecs ids; heartbeat: lost ids */
    size_t nout_ids;
    int duplicate;    /* enqueue: the dedupe key was already there */
    luar_job_t *jobs; /* claim, get, list */
    size_t njobs;
    const char *cursor; /* list: next cursor or NULL */
    luar_queue_count_t *counts;
    size_t ncounts;
    size_t count;  /* retry_many, purge; sweep: reclaimed */
    size_t count2; /* sweep: expired */
    double time;   /* next_due */
    luar_gcra_result_t rate; /* rate */
    const char *out_value;   /* cache_get: the value (in the arena), NULL when absent */
    size_t out_value_len;
    int64_t number; /* cache_incr: the new value; kv: applied (0 or 1) */

    luar_qop_block_t *arena;
} luar_qop_t;

/*
 * A backend. `open` parses the part of the URL after the scheme, sets q->impl and returns
 * 0, or LUAR_EINVAL/LUAR_EIO with a message in `err` (synchronous). `submit` takes
 * ownership of `op` and must hand it back with luar_qop_complete on the loop thread,
 * never from inside submit itself (callbacks never run before the call returns).
 * `close` completes every submitted operation, releases the backend's resources and then
 * calls done(arg) on the loop thread.
 */
typedef struct luar_queue_backend {
    const char *scheme; /* matched against the start of the URL, e.g. "sqlite:" */
    int (*open)(luar_queue_t *q, const char *rest, luar_buf_t *err);
    void (*submit)(luar_queue_t *q, luar_qop_t *op);
    void (*close)(luar_queue_t *q, void (*done)(void *arg), void *arg);
} luar_queue_backend_t;

/*
 * A queue handle: the generic part. `impl` belongs to the backend. Fields are read by
 * backends; only queue.c writes them (except impl).
 */
struct luar_queue {
    const luar_queue_backend_t *backend;
    uv_loop_t *loop;
    void *impl;
    double (*clock)(void *arg);
    void *clock_arg;
    double dead_ttl; /* for jobs buried by sweep (luar_queue_set_dead_ttl) */
    int closing;
    void (*close_done)(void *arg); /* luar_queue_close's callback */
    void *close_arg;
    char last_error[256]; /* luar_queue_last_error */
    size_t cache_max_bytes; /* luar_queue_set_cache_limits: an in-process cache's bound */
    size_t cache_max_value; /* and the largest value (checked by queue.c) */
};

/* The SQLite backend (sqlite.c). */
extern const luar_queue_backend_t luar_queue_sqlite_backend;

/* The Redis backend (redis.c). */
extern const luar_queue_backend_t luar_queue_redis_backend;

/*
 * Allocates `size` bytes (zeroed, aligned for any type) from `op`'s arena. Returns NULL
 * when out of memory. The memory lives as long as the record. Safe on any thread that
 * currently owns the record.
 */
void *luar_qop_alloc(luar_qop_t *op, size_t size);

/* Copies `s` into `op`'s arena; NULL stays NULL. Returns the copy, or NULL when out of
 * memory (check with s != NULL). */
char *luar_qop_strdup(luar_qop_t *op, const char *s);

/*
 * Calls the operation's callback with its results (rc != 0: no results) and frees the
 * record. Loop thread only. Records op->error as the queue's last error when rc != 0.
 */
void luar_qop_complete(luar_qop_t *op);

/* Frees a record without calling its callback. */
void luar_qop_free(luar_qop_t *op);

/* Nonzero when the kind only reads (a backend may run it without a write lock). */
int luar_qop_is_read(luar_qop_kind_t kind);

/* Nonzero for the cache kinds (LUAR_QOP_CACHE_*). */
int luar_qop_is_cache(luar_qop_kind_t kind);

/*
 * Writes a new job id for time `now` into out (27 bytes: 26 characters and a NUL): 48 bits
 * of milliseconds then 80 bits that make it unique, in Crockford base32, so ids sort as
 * strings by creation time. Ids made in one process are strictly increasing even when the
 * clock stands still or goes back. Thread-safe.
 */
void luar_queue_new_id(double now, char out[27]);

#endif
