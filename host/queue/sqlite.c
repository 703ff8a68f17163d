/*
 * The embedded queue backend: one SQLite file in WAL mode, shared by every process of an
 * instance.
 *
 * Group commit. Every operation of a queue goes to its one writer thread. The thread takes
 * all the operations submitted since its last round, runs them in ONE transaction (BEGIN
 * IMMEDIATE ... COMMIT: one fsync of the WAL), each of several statements under its own
 * SAVEPOINT so that one failing (a constraint) is rolled back alone (a single statement is
 * rolled back alone by SQLite itself), and hands them all back to the loop with
 * uv_async_send. A callback therefore runs only after its operation is committed, and a
 * thousand concurrent enqueues cost a handful of fsyncs instead of a thousand.
 *
 * Several processes share the file: BEGIN IMMEDIATE takes SQLite's write lock, waiting up
 * to the busy timeout (and retried up to BUSY_DEADLINE), so claims and other
 * read-modify-write steps of different processes never interleave.
 *
 * When the disk fails (full, I/O error, read-only) the whole transaction rolls back and
 * each of its operations gets LUAR_EIO with a message naming the file; the next round
 * tries again, so service resumes by itself when the disk does.
 */
#include "queue/sqlite.h"
#include "common/error.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Operations per transaction at most, so callbacks keep flowing under a flood. */
#define BATCH_MAX 8192
/* Attempts to take the write lock, each waiting up to the busy timeout (5 s), before a
 * batch fails with LUAR_EIO. */
#define BUSY_ROUNDS 6

static luar_sq_t *sq_of(luar_queue_t *q)
{
    return q->impl;
}

/* ---- the writer thread -------------------------------------------------------------- */

/* Nonzero for SQLite errors that fail one operation only (its savepoint rolls back). */
static int op_level_error(int src)
{
    int primary = src & 0xff;
    return primary == SQLITE_CONSTRAINT || primary == SQLITE_TOOBIG || primary == SQLITE_MISMATCH ||
           primary == SQLITE_RANGE;
}

/*
 * Nonzero when an operation runs several statements that could fail alone (a constraint)
 * after earlier ones changed rows: it then needs its own savepoint. A single statement is
 * rolled back by SQLite itself, and claim, heartbeat and sweep only move jobs between
 * states that no constraint tells apart, so only a multi-row enqueue pays for one.
 */
static int needs_savepoint(const luar_qop_t *op)
{
    return op->kind == LUAR_QOP_ENQUEUE && op->nspecs + (op->dedupe_key != NULL) > 1;
}

/* Steps a kept statement that returns no rows. */
static int run(luar_sq_t *s, int which)
{
    sqlite3_stmt *st = luar_sq_stmt(s, which);
    if (st == NULL)
        return sqlite3_errcode(s->db) != SQLITE_OK ? sqlite3_errcode(s->db) : SQLITE_ERROR;
    int src = sqlite3_step(st);
    sqlite3_reset(st);
    return src == SQLITE_DONE ? SQLITE_OK : src;
}

/* Marks every operation of a batch as failed with LUAR_EIO and `what`. */
static void fail_batch(luar_sq_t *s, luar_qop_t *batch, int src, const char *what)
{
    char msg[320];
    snprintf(msg, sizeof msg, "%s: %s: %s", s->path, what,
             src == SQLITE_NOMEM ? "out of memory" : sqlite3_errstr(src));
    for (luar_qop_t *op = batch; op; op = op->next) {
        op->rc = (src & 0xff) == SQLITE_NOMEM ? LUAR_ENOMEM : LUAR_EIO;
        op->error = luar_qop_strdup(op, msg);
    }
}

/* Begins the batch's transaction, retrying while another process holds the lock. */
static int begin(luar_sq_t *s, int write)
{
    int src = SQLITE_OK;
    for (int i = 0; i < BUSY_ROUNDS; i++) {
        src = run(s, write ? SQ_BEGIN_WRITE : SQ_BEGIN_READ);
        if ((src & 0xff) != SQLITE_BUSY && (src & 0xff) != SQLITE_LOCKED)
            break;
    }
    return src;
}

/*
 * Whether an operation may be committed without waiting for the disk: the job runner's
 * own bookkeeping, whose loss in a power failure (not a process crash: the WAL is written
 * either way) only makes a job run again, as at-least-once allows; and rate-limit checks,
 * whose loss only gives a client part of a burst again. A batch of checks alone thus costs
 * a WAL append and no fsync, which matters since every limited request makes one.
 * Enqueues, dedupe keys and repairs asked by a person always wait for the fsync; so does
 * everything committed before them, since the WAL is one sequential file.
 */
static int lazy_kind(int kind)
{
    return kind == LUAR_QOP_CLAIM || kind == LUAR_QOP_HEARTBEAT || kind == LUAR_QOP_COMPLETE ||
           kind == LUAR_QOP_FAIL || kind == LUAR_QOP_RELEASE || kind == LUAR_QOP_SWEEP ||
           kind == LUAR_QOP_RATE;
}

/* Runs a batch in one transaction; every operation ends with rc set. */
static void run_batch(luar_sq_t *s, luar_qop_t *batch)
{
    int write = 0, lazy = 1;
    size_t n = 0;
    for (luar_qop_t *op = batch; op; op = op->next) {
        write |= !luar_qop_is_read(op->kind);
        lazy &= luar_qop_is_read(op->kind) || lazy_kind(op->kind);
        n++;
    }
    if (write && lazy != s->lazy &&
        sqlite3_exec(s->db, lazy ? "PRAGMA synchronous = NORMAL" : "PRAGMA synchronous = FULL",
                     NULL, NULL, NULL) == SQLITE_OK)
        s->lazy = lazy;
    int src = begin(s, write);
    if (src != SQLITE_OK) {
        fail_batch(s, batch, src, "cannot begin a transaction");
        return;
    }
    const char *what = "cannot write";
    for (luar_qop_t *op = batch; op; op = op->next) {
        int savepoint = needs_savepoint(op);
        if (savepoint) {
            src = run(s, SQ_SAVEPOINT);
            if (src != SQLITE_OK)
                goto fail;
        }
        src = luar_sq_exec(s, op);
        if (src != SQLITE_OK && !op_level_error(src)) {
            what = luar_qop_is_read(op->kind) ? "cannot read" : "cannot write";
            goto fail;
        }
        if (src != SQLITE_OK)
            op->rc = (src & 0xff) == SQLITE_CONSTRAINT ? LUAR_EEXISTS : LUAR_EINVAL;
        if (savepoint && op->rc != 0) {
            src = run(s, SQ_ROLLBACK_SAVEPOINT);
            if (src != SQLITE_OK)
                goto fail;
        }
        if (savepoint) {
            src = run(s, SQ_RELEASE_SAVEPOINT);
            if (src != SQLITE_OK)
                goto fail;
        }
    }
    src = run(s, SQ_COMMIT);
    if (src != SQLITE_OK) {
        what = "cannot commit";
        goto fail;
    }
    if (write)
        luar_sq_checkpoint_after_commit(s);
    uv_mutex_lock(&s->lock);
    s->stats.batches++;
    s->stats.commits += write;
    s->stats.lazy_commits += write && s->lazy;
    s->stats.ops += n;
    uv_mutex_unlock(&s->lock);
    return;
fail:
    fail_batch(s, batch, src, what);
    if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

/* Appends the chain first..last to a list (head, tail). The caller holds its lock. */
static void chain_append(luar_qop_t **head, luar_qop_t **tail, luar_qop_t *first,
                         luar_qop_t *last)
{
    if (*tail)
        (*tail)->next = first;
    else
        *head = first;
    *tail = last;
}

/* Hands finished records to `home`'s done list and wakes its loop (any thread). */
static void hand_back(luar_sq_t *home, luar_qop_t *first, luar_qop_t *last)
{
    uv_mutex_lock(&home->lock);
    chain_append(&home->done, &home->done_tail, first, last);
    uv_mutex_unlock(&home->lock);
    uv_async_send(&home->async);
}

/* Queues `op` for the thread of `t` (the writer or the reader) and wakes it. */
static void hand_to(luar_sq_t *t, luar_qop_t *op)
{
    uv_mutex_lock(&t->lock);
    chain_append(&t->pending, &t->pending_tail, op, op);
    uv_cond_signal(&t->wake);
    uv_mutex_unlock(&t->lock);
}

/*
 * The rounds of a worker thread: take what was submitted to `self` (up to BATCH_MAX at a
 * time), run it as one batch on self's connection, and hand the records to `home`'s done
 * list, whose loop-side async completes them; once stopping, set *exited under home's lock.
 * The writer is its own home; the reader hands its results to the queue's.
 */
static void serve_rounds(luar_sq_t *self, luar_sq_t *home, int *exited)
{
    uv_mutex_lock(&self->lock);
    for (;;) {
        while (self->pending == NULL && !self->stopping)
            uv_cond_wait(&self->wake, &self->lock);
        if (self->pending == NULL)
            break;
        /* Take everything submitted so far (up to BATCH_MAX) as one batch. */
        luar_qop_t *batch = self->pending, *last = batch;
        for (size_t n = 1; n < BATCH_MAX && last->next; n++)
            last = last->next;
        self->pending = last->next;
        if (self->pending == NULL)
            self->pending_tail = NULL;
        last->next = NULL;
        uv_mutex_unlock(&self->lock);

        run_batch(self, batch);

        hand_back(home, batch, last);
        uv_mutex_lock(&self->lock);
    }
    uv_mutex_unlock(&self->lock);
    uv_mutex_lock(&home->lock);
    *exited = 1;
    uv_mutex_unlock(&home->lock);
    uv_async_send(&home->async);
}

static void writer_main(void *arg)
{
    luar_sq_t *s = arg;
    pthread_setname_np(pthread_self(), "luar-sqlite"); /* for top -H and perf */
    serve_rounds(s, s, &s->exited);
}

/*
 * The reader thread: the same rounds as the writer's, on reads only, with the reader's own
 * connection (a WAL reader: it neither waits for the writer nor holds it up). Results go to
 * the queue's done list like the writer's.
 */
static void reader_main(void *arg)
{
    luar_sq_t *s = arg;
    pthread_setname_np(pthread_self(), "luar-reader");
    serve_rounds(s->reader, s, &s->reader_exited);
}

/* Operations the reader takes: reads, but a ping, which answers for the writer. */
static int for_reader(const luar_sq_t *s, const luar_qop_t *op)
{
    return s->reader != NULL && luar_qop_is_read(op->kind) && op->kind != LUAR_QOP_PING;
}

/* Closes the reader's connection and frees it (its thread has ended or never started). */
static void reader_free(luar_sq_t *s)
{
    luar_sq_t *r = s->reader;
    if (r == NULL)
        return;
    luar_sq_finalize(r);
    sqlite3_close(r->db);
    uv_cond_destroy(&r->wake);
    uv_mutex_destroy(&r->lock);
    free(r); /* r->path is s->path */
    s->reader = NULL;
}

/* Opens the reader's connection (at open, after setup; its thread starts after the
 * writer's). */
static int reader_open(luar_sq_t *s, luar_buf_t *err)
{
    luar_sq_t *r = calloc(1, sizeof *r);
    if (r == NULL)
        return LUAR_ENOMEM;
    r->q = s->q;
    r->path = s->path;
    int src = sqlite3_open_v2(s->path, &r->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (src == SQLITE_OK) {
        sqlite3_extended_result_codes(r->db, 1);
        sqlite3_busy_timeout(r->db, 5000);
        src = sqlite3_exec(r->db, "PRAGMA query_only = ON; PRAGMA temp_store = MEMORY;", NULL, NULL,
                           NULL);
    }
    if (src != SQLITE_OK) {
        luar_buf_appendf(err, "%s: cannot open the reader's connection: %s", s->path,
                         r->db ? sqlite3_errmsg(r->db) : sqlite3_errstr(src));
        sqlite3_close(r->db);
        free(r);
        return LUAR_EIO;
    }
    if (uv_mutex_init(&r->lock) != 0) {
        sqlite3_close(r->db);
        free(r);
        return LUAR_ENOMEM;
    }
    if (uv_cond_init(&r->wake) != 0) {
        uv_mutex_destroy(&r->lock);
        sqlite3_close(r->db);
        free(r);
        return LUAR_ENOMEM;
    }
    s->reader = r;
    return 0;
}

/* Asks the reader thread to end once its pending reads are done. */
static void reader_stop(luar_sq_t *s)
{
    luar_sq_t *r = s->reader;
    if (r == NULL)
        return;
    uv_mutex_lock(&r->lock);
    r->stopping = 1;
    uv_cond_signal(&r->wake);
    uv_mutex_unlock(&r->lock);
}

/* ---- the loop side ------------------------------------------------------------------ */

static void free_sq(luar_sq_t *s)
{
    luar_lru_free(s->cache);
    free(s->path);
    free(s);
}

static void on_async_closed(uv_handle_t *h)
{
    luar_sq_t *s = h->data;
    void (*done)(void *) = s->close_done;
    void *arg = s->close_arg;
    uv_mutex_destroy(&s->lock);
    uv_cond_destroy(&s->wake);
    free_sq(s);
    if (done)
        done(arg);
}

/* Runs the callbacks of finished operations; ends the backend once closing is done. */
static void on_async(uv_async_t *h)
{
    luar_sq_t *s = h->data;
    for (;;) {
        uv_mutex_lock(&s->lock);
        luar_qop_t *op = s->done;
        s->done = s->done_tail = NULL;
        int finished = s->exited && s->pending == NULL && (s->reader == NULL || s->reader_exited);
        uv_mutex_unlock(&s->lock);
        if (op == NULL) {
            if (finished && !s->closed) {
                s->closed = 1;
                uv_thread_join(&s->thread);
                if (s->reader != NULL)
                    uv_thread_join(&s->reader_thread);
                reader_free(s);
                luar_sq_checkpointer_stop(s);
                luar_sq_finalize(s);
                sqlite3_close(s->db);
                s->db = NULL;
                uv_close((uv_handle_t *)&s->async, on_async_closed);
            }
            return;
        }
        while (op) {
            luar_qop_t *next = op->next;
            s->inflight--;
            luar_qop_complete(op);
            op = next;
        }
        /* An idle queue does not keep the loop running; one with work in flight does. */
        if (s->inflight == 0 && !s->closing)
            uv_unref((uv_handle_t *)&s->async);
    }
}

static void sq_submit(luar_queue_t *q, luar_qop_t *op)
{
    luar_sq_t *s = sq_of(q);
    op->next = NULL;
    if (s->inflight++ == 0)
        uv_ref((uv_handle_t *)&s->async);
    if (luar_qop_is_cache(op->kind)) {
        /* Done now, on this thread; handed back through the done list like the others,
         * so the callback still runs after submit returns. */
        luar_sq_cache_exec(s, op);
        hand_back(s, op, op);
        return;
    }
    hand_to(for_reader(s, op) ? s->reader : s, op);
}

static void sq_close(luar_queue_t *q, void (*done)(void *arg), void *arg)
{
    luar_sq_t *s = sq_of(q);
    s->close_done = done;
    s->close_arg = arg;
    s->closing = 1;
    uv_ref((uv_handle_t *)&s->async);
    uv_mutex_lock(&s->lock);
    s->stopping = 1;
    uv_cond_signal(&s->wake);
    uv_mutex_unlock(&s->lock);
    reader_stop(s);
}

/* ---- opening ------------------------------------------------------------------------ */

/* Creates the parent directories of `path` (mkdir -p of its dirname). */
static int make_parents(const char *path, luar_buf_t *err)
{
    char *dir = strdup(path);
    if (dir == NULL)
        return LUAR_ENOMEM;
    int rc = 0;
    char *slash = strrchr(dir, '/');
    if (slash == NULL || slash == dir)
        goto done;
    *slash = '\0';
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0755) != 0 && errno != EEXIST)
            break; /* reported below by the full path's mkdir */
        *p = '/';
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        luar_buf_appendf(err, "%s: cannot create directory %s: %s", path, dir, strerror(errno));
        rc = LUAR_EIO;
    }
done:
    free(dir);
    return rc;
}

static int sq_open(luar_queue_t *q, const char *rest, luar_buf_t *err)
{
    int rc = 0;
    if (rest[0] == '\0') {
        luar_buf_puts(err, "queue: sqlite: URL has no file path (sqlite:PATH)");
        return LUAR_EINVAL;
    }
    if (!sqlite3_threadsafe()) {
        luar_buf_puts(err, "queue: sqlite: the SQLite library was built without threads");
        return LUAR_EINVAL;
    }
    luar_sq_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return LUAR_ENOMEM;
    s->q = q;
    s->path = strdup(rest);
    if (s->path == NULL) {
        rc = LUAR_ENOMEM;
        goto fail;
    }
    rc = make_parents(s->path, err);
    if (rc)
        goto fail;
    int src = sqlite3_open_v2(
        s->path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (src != SQLITE_OK) {
        luar_buf_appendf(err, "%s: cannot open: %s", s->path,
                         s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(src));
        rc = src == SQLITE_NOMEM ? LUAR_ENOMEM : LUAR_EIO;
        goto fail;
    }
    rc = luar_sq_setup(s, err);
    if (rc == 0)
        rc = luar_sq_checkpointer_start(s, err);
    if (rc == 0)
        rc = reader_open(s, err);
    if (rc)
        goto fail;
    if (uv_mutex_init(&s->lock) != 0) {
        rc = LUAR_ENOMEM;
        goto fail;
    }
    if (uv_cond_init(&s->wake) != 0) {
        uv_mutex_destroy(&s->lock);
        rc = LUAR_ENOMEM;
        goto fail;
    }
    if (uv_async_init(q->loop, &s->async, on_async) != 0 ||
        uv_thread_create(&s->thread, writer_main, s) != 0) {
        /* The async may be initialised: it must then be closed, and freed in its callback. */
        luar_buf_appendf(err, "%s: cannot start the writer thread", s->path);
        if (uv_is_active((uv_handle_t *)&s->async)) {
            s->async.data = s;
            s->closed = 1;
            reader_free(s);
            luar_sq_checkpointer_stop(s);
            luar_sq_finalize(s);
            sqlite3_close(s->db);
            s->db = NULL;
            uv_close((uv_handle_t *)&s->async, on_async_closed);
            return LUAR_EIO;
        }
        uv_cond_destroy(&s->wake);
        uv_mutex_destroy(&s->lock);
        rc = LUAR_EIO;
        goto fail;
    }
    s->async.data = s;
    if (uv_thread_create(&s->reader_thread, reader_main, s) != 0) {
        luar_buf_appendf(err, "%s: cannot start the reader thread", s->path);
        uv_mutex_lock(&s->lock);
        s->stopping = 1;
        uv_cond_signal(&s->wake);
        uv_mutex_unlock(&s->lock);
        uv_thread_join(&s->thread);
        s->closed = 1;
        reader_free(s);
        luar_sq_checkpointer_stop(s);
        luar_sq_finalize(s);
        sqlite3_close(s->db);
        s->db = NULL;
        uv_close((uv_handle_t *)&s->async, on_async_closed);
        return LUAR_EIO;
    }
    uv_unref((uv_handle_t *)&s->async);
    q->impl = s;
    return 0;
fail:
    reader_free(s);
    luar_sq_checkpointer_stop(s);
    luar_sq_finalize(s);
    if (s->db)
        sqlite3_close(s->db);
    free_sq(s);
    return rc;
}

int luar_queue_sqlite_stats(luar_queue_t *q, luar_queue_sqlite_stats_t *out)
{
    if (q == NULL || q->backend != &luar_queue_sqlite_backend)
        return LUAR_EINVAL;
    luar_sq_t *s = sq_of(q);
    uv_mutex_lock(&s->lock);
    *out = s->stats;
    uv_mutex_unlock(&s->lock);
    if (s->cache)
        luar_lru_stats(s->cache, &out->cache);
    if (s->reader != NULL) {
        uv_mutex_lock(&s->reader->lock);
        out->batches += s->reader->stats.batches;
        out->ops += s->reader->stats.ops;
        uv_mutex_unlock(&s->reader->lock);
    }
    luar_sq_checkpoint_stats(s, &out->checkpoints, &out->catchups);
    return 0;
}

const luar_queue_backend_t luar_queue_sqlite_backend = {
    .scheme = "sqlite:",
    .open = sq_open,
    .submit = sq_submit,
    .close = sq_close,
};
