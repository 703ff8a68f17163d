/*
 * The SQLite backend's insides, shared by sqlite.c (the writer thread and group commit),
 * sqlite_schema.c (settings and migrations) and sqlite_ops.c (one function per operation),
 * and one function tests use to observe group commit.
 */
#ifndef LUAR_QUEUE_SQLITE_H
#define LUAR_QUEUE_SQLITE_H

#include "cache/lru.h"
#include "queue/backend.h"

#include <sqlite3.h>
#include <stdint.h>
#include <uv.h>

/* What luar_queue_sqlite_stats reports. */
typedef struct luar_queue_sqlite_stats {
    uint64_t commits;       /* write transactions committed */
    uint64_t lazy_commits;  /* of which committed without waiting for the disk */
    uint64_t batches;       /* transactions begun, reads included */
    uint64_t ops;           /* operations run */
    int schema_version;     /* PRAGMA user_version after open */
    int migrations_applied; /* migrations this handle ran at open (0 when already current) */
    luar_lru_stats_t cache; /* the in-process cache (sqlite_cache.c); zero before first use */
    uint64_t checkpoints;   /* WAL checkpoints run by the checkpointer thread */
    uint64_t catchups;      /* WAL checkpoints the writer thread ran itself */
} luar_queue_sqlite_stats_t;

/*
 * Copies the counters of a SQLite-backed queue into `out`. Returns 0, or LUAR_EINVAL when
 * `q` is not a SQLite queue. For tests and diagnostics; loop thread.
 */
int luar_queue_sqlite_stats(luar_queue_t *q, luar_queue_sqlite_stats_t *out);

/* The prepared statements, by purpose (their SQL is in sqlite_ops.c). */
enum {
    SQ_DEDUPE_PUT,
    SQ_FIND_KEY,
    SQ_INSERT,
    SQ_ARGS_PUT,
    SQ_ARGS_DROP,
    SQ_CLAIM_ANY,
    SQ_CLAIM_QUEUE,
    SQ_TAKE,
    SQ_HEARTBEAT,
    SQ_COMPLETE,
    SQ_FAIL_RETRY,
    SQ_FAIL_DEAD,
    SQ_RELEASE,
    SQ_SWEEP_LEASES,
    SQ_SWEEP_JOBS,
    SQ_SWEEP_DEDUPE,
    SQ_STATE,
    SQ_RETRY,
    SQ_RETRY_MANY,
    SQ_DELETE,
    SQ_PURGE,
    SQ_GET,
    SQ_LIST,
    SQ_LIST_STATE,
    SQ_COUNTS,
    SQ_NEXT_DUE,
    SQ_PING,
    SQ_RATE_GET,
    SQ_RATE_PUT,
    SQ_SWEEP_RATE,
    SQ_KV_GET,
    SQ_KV_PUT,
    SQ_KV_ADD,
    SQ_KV_DELETE,
    SQ_SWEEP_KV,
    SQ_SAVEPOINT,
    SQ_RELEASE_SAVEPOINT,
    SQ_ROLLBACK_SAVEPOINT,
    SQ_BEGIN_WRITE,
    SQ_BEGIN_READ,
    SQ_COMMIT,
    SQ_STMTS
};

/* The checkpointer of a queue's WAL (sqlite_checkpoint.c). */
typedef struct luar_sq_ckpt luar_sq_ckpt_t;

/*
 * One SQLite queue. The connection is used by the writer thread only (and by the loop
 * thread at open, before the thread starts, and at close, after it ended). `lock` guards
 * the two lists, `stopping`, `exited` and the stats; the fields marked (loop thread) are
 * the loop's alone. The async handle is referenced only while operations are in flight
 * or closing, so an idle queue does not keep uv_run from returning.
 */
typedef struct luar_sq {
    luar_queue_t *q;
    sqlite3 *db;
    char *path;
    sqlite3_stmt *stmts[SQ_STMTS];

    uv_thread_t thread;
    uv_mutex_t lock;
    uv_cond_t wake;
    uv_async_t async;
    luar_qop_t *pending, *pending_tail; /* submitted, not yet taken by the writer */
    luar_qop_t *done, *done_tail;       /* finished, waiting for the loop */
    int stopping;                       /* close asked: drain, then end the thread */
    int lazy;                           /* writer thread: PRAGMA synchronous is NORMAL now */
    int exited;                         /* the thread has ended */
    int closed;                         /* uv_close called on the async */
    int closing;                        /* sq_close was called (loop thread) */
    size_t inflight;                    /* submitted, callback not yet run (loop thread) */
    void (*close_done)(void *arg);
    void *close_arg;
    luar_lru_t *cache; /* luar.cache, created at first use (loop thread; sqlite_cache.c) */
    luar_sq_ckpt_t *ckpt; /* WAL checkpoints (sqlite_checkpoint.c) */
    /* Reads (get, list, counts, next_due) on a connection and thread of their own, so a
     * long one never holds up a commit: `reader` is that connection's own luar_sq_t (its
     * pending list, lock and statements); it hands results back through this one's done
     * list. reader_exited is under `lock`. */
    struct luar_sq *reader;
    uv_thread_t reader_thread;
    int reader_exited;

    luar_queue_sqlite_stats_t stats;
} luar_sq_t;

/*
 * Sets the connection's durability and locking settings and brings the schema to the
 * current version (sqlite_schema.c). Returns 0, or LUAR_EIO with a message in `err`
 * naming the file. Sets s->stats.schema_version and migrations_applied.
 */
int luar_sq_setup(luar_sq_t *s, luar_buf_t *err);

/* The current schema version (the number of migrations). */
/* The SQL of migration `version` (1-based), or NULL; for tests that build old files. */
const char *luar_sq_migration(int version);

int luar_sq_schema_version(void);

/*
 * Returns statement `which`, prepared once and kept, reset and with its bindings cleared;
 * NULL when it cannot be prepared (the error is in the connection). Writer thread.
 */
sqlite3_stmt *luar_sq_stmt(luar_sq_t *s, int which);

/* Finalizes every kept statement. */
void luar_sq_finalize(luar_sq_t *s);

/*
 * Runs one operation inside the open transaction (sqlite_ops.c). Sets op->rc and the
 * outputs. Returns SQLITE_OK, or the SQLite code of the statement that failed (the caller
 * decides whether the operation fails alone or the whole transaction rolls back).
 */
int luar_sq_exec(luar_sq_t *s, luar_qop_t *op);

/*
 * Runs a cache operation (luar_qop_is_cache) on the in-process cache at once, on the loop
 * thread, setting op->rc and the outputs (sqlite_cache.c). The caller hands the record
 * back afterwards, as for any operation.
 */
void luar_sq_cache_exec(luar_sq_t *s, luar_qop_t *op);

/*
 * WAL checkpoints off the commit path (sqlite_checkpoint.c). start opens the checkpointer's
 * connection and thread and takes over the writer connection's WAL hook (at open, before
 * the writer thread runs); returns 0, or LUAR_EIO/LUAR_ENOMEM with a message in `err`.
 * after_commit is called by the writer thread after each write commit: it asks for a
 * background checkpoint, or runs a small or overdue one itself. stop ends the thread and
 * closes its connection (after the writer thread ended, before its connection closes).
 * stats copies the counters (any thread).
 */
int luar_sq_checkpointer_start(luar_sq_t *s, luar_buf_t *err);
void luar_sq_checkpoint_after_commit(luar_sq_t *s);
void luar_sq_checkpointer_stop(luar_sq_t *s);
void luar_sq_checkpoint_stats(luar_sq_t *s, uint64_t *passes, uint64_t *catchups);

#endif
