/*
 * The SQLite backend's operations: one function per kind, each run by the writer thread
 * inside the batch's transaction (see sqlite.c). They read their inputs from the record,
 * write results into it (strings copied into its arena), and return the SQLite code of a
 * failed statement, or SQLITE_OK with op->rc saying how the operation went.
 */
#include "queue/sqlite.h"
#include "common/error.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* A job's arguments are in job_args (migration 7), read with the row by its args_id, and
 * so is its trace (migration 8): both are written once, at enqueue. */
#define JOB_COLUMNS                                                                                \
    "id, name, queue, (SELECT args FROM job_args WHERE job_args.id = jobs.args_id), key, "         \
    "priority, state, attempt, max_attempts, enqueued_at, run_at, started_at, finished_at, "       \
    "lease_expires_at, owner, result, last_error, traceback, expires_at, "                         \
    "(SELECT trace FROM job_args WHERE job_args.id = jobs.args_id)"

/* State predicates, written exactly as in the partial indexes of the schema (without IN
 * lists, which cost an ephemeral table per evaluation) so the planner can use them. */
#define UNFINISHED "(state <= 2 OR state = 4)"
#define CLAIMABLE "(state <= 1 OR state = 4)"
#define WAITING "(state = 1 OR state = 4)"
#define RETRYABLE "(1, 3, 4, 5)"
#define LEASE_EXPIRED "lease expired (the worker running it stopped)"
#define DEAD_WHEN "(max_attempts > 0 AND attempt >= max_attempts)"
#define RETRY_SET                                                                                  \
    "state = 0, attempt = 0, run_at = ?2, finished_at = 0, expires_at = 0, owner = NULL, "         \
    "lease_expires_at = 0, result = NULL"
/* ?3 queue, ?4 name, ?6 error text, ?7 since, ?8 until (0: none); a job's time is when it
 * finished, else when it was enqueued (queue.h). */
#define JOB_TIME "(CASE WHEN finished_at > 0 THEN finished_at ELSE enqueued_at END)"
#define FILTER                                                                                     \
    "(?3 IS NULL OR queue = ?3) AND (?4 IS NULL OR name = ?4) AND "                                \
    "(?6 IS NULL OR instr(last_error, ?6) > 0) AND (?7 <= 0 OR " JOB_TIME " >= ?7) AND "           \
    "(?8 <= 0 OR " JOB_TIME " < ?8)"

/*
 * The statements. INDEXED BY pins the partial indexes of the schema where the planner,
 * without statistics, would rather take jobs_state and sort every due job at each claim.
 */
static const char *const sql[SQ_STMTS] = {
    [SQ_DEDUPE_PUT] = "INSERT INTO dedupe (key, expires_at) VALUES (?1, ?2) "
                      "ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at "
                      "WHERE dedupe.expires_at <= ?3",
    [SQ_FIND_KEY] = "SELECT id FROM jobs WHERE key = ?1 AND " UNFINISHED,
    [SQ_INSERT] = "INSERT INTO jobs (id, name, queue, args_id, key, priority, state, "
                  "max_attempts, enqueued_at, run_at) "
                  "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    [SQ_ARGS_PUT] = "INSERT INTO job_args (args, trace) VALUES (?1, ?2)",
    [SQ_ARGS_DROP] = "DELETE FROM job_args WHERE id = ?1",
    [SQ_CLAIM_ANY] = "SELECT " JOB_COLUMNS " FROM jobs INDEXED BY jobs_claim_queue WHERE " CLAIMABLE
                     " AND run_at <= ?1 ORDER BY priority DESC, run_at, id LIMIT ?2",
    [SQ_CLAIM_QUEUE] =
        "SELECT " JOB_COLUMNS " FROM jobs INDEXED BY jobs_claim_queue WHERE " CLAIMABLE
        " AND queue = ?3 AND run_at <= ?1 ORDER BY priority DESC, run_at, id LIMIT ?2",
    [SQ_TAKE] = "UPDATE jobs SET state = 2, attempt = attempt + 1, owner = ?2, "
                "started_at = ?3, lease_expires_at = ?4 WHERE id = ?1 AND " CLAIMABLE,
    [SQ_HEARTBEAT] = "UPDATE jobs SET lease_expires_at = ?3 "
                     "WHERE id = ?1 AND state = 2 AND owner = ?2",
    [SQ_COMPLETE] = "UPDATE jobs SET state = 3, result = ?3, finished_at = ?4, "
                    "expires_at = ?5, owner = NULL, lease_expires_at = 0 "
                    "WHERE id = ?1 AND state = 2 AND owner = ?2",
    [SQ_FAIL_RETRY] = "UPDATE jobs SET state = 4, run_at = ?3, last_error = ?4, "
                      "traceback = ?5, owner = NULL, lease_expires_at = 0 "
                      "WHERE id = ?1 AND state = 2 AND owner = ?2",
    [SQ_FAIL_DEAD] = "UPDATE jobs SET state = 5, finished_at = ?3, expires_at = ?6, "
                     "last_error = ?4, traceback = ?5, owner = NULL, lease_expires_at = 0 "
                     "WHERE id = ?1 AND state = 2 AND owner = ?2",
    [SQ_RELEASE] = "UPDATE jobs SET state = CASE WHEN ?3 > ?4 THEN 1 ELSE 0 END, run_at = ?3, "
                   "attempt = max(attempt - 1, 0), owner = NULL, lease_expires_at = 0 "
                   "WHERE id = ?1 AND state = 2 AND owner = ?2",
    [SQ_SWEEP_LEASES] = "UPDATE jobs INDEXED BY jobs_lease SET state = CASE WHEN " DEAD_WHEN
                        " THEN 5 ELSE 4 END, run_at = ?1, "
                        "finished_at = CASE WHEN " DEAD_WHEN " THEN ?1 ELSE 0 END, "
                        "expires_at = CASE WHEN " DEAD_WHEN " THEN ?1 + ?2 ELSE 0 END, "
                        "owner = NULL, lease_expires_at = 0, last_error = '" LEASE_EXPIRED "', "
                        "traceback = NULL WHERE state = 2 AND lease_expires_at < ?1",
    [SQ_SWEEP_JOBS] =
        "DELETE FROM jobs INDEXED BY jobs_expires WHERE expires_at > 0 AND expires_at < ?1 "
        "AND state IN (3, 5)",
    [SQ_SWEEP_DEDUPE] = "DELETE FROM dedupe WHERE expires_at < ?1",
    [SQ_STATE] = "SELECT state FROM jobs WHERE id = ?1",
    [SQ_RETRY] = "UPDATE jobs SET " RETRY_SET " WHERE id = ?1",
    /* Oldest first, at most ?9 (-1: all): bulk replays go in bounded batches. */
    [SQ_RETRY_MANY] = "UPDATE OR IGNORE jobs SET " RETRY_SET " WHERE id IN (SELECT id FROM jobs "
                      "WHERE state IN " RETRYABLE " AND (?1 < 0 OR state = ?1) AND " FILTER
                      " ORDER BY id LIMIT ?9)",
    [SQ_DELETE] = "DELETE FROM jobs WHERE id = ?1",
    [SQ_PURGE] = "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE state = ?1 AND " FILTER
                 " ORDER BY id LIMIT ?9)",
    [SQ_GET] = "SELECT " JOB_COLUMNS " FROM jobs WHERE id = ?1",
    [SQ_LIST] = "SELECT " JOB_COLUMNS " FROM jobs WHERE id < ?2 AND ?1 < 0 AND " FILTER
                " ORDER BY id DESC LIMIT ?5",
    /* Newest first along the primary key, filtered (there is no index by state). */
    [SQ_LIST_STATE] = "SELECT " JOB_COLUMNS " FROM jobs "
                      "WHERE state = ?1 AND id < ?2 AND " FILTER " ORDER BY id DESC LIMIT ?5",
    [SQ_COUNTS] = "SELECT queue, state, count(*) FROM jobs GROUP BY queue, state "
                  "ORDER BY queue",
    [SQ_NEXT_DUE] = "SELECT min(run_at) FROM jobs INDEXED BY jobs_due WHERE " WAITING,
    [SQ_PING] = "SELECT count(*) FROM (SELECT 1 FROM jobs LIMIT 1)",
    [SQ_RATE_GET] = "SELECT tat FROM ratelimit WHERE key = ?1",
    [SQ_RATE_PUT] = "INSERT INTO ratelimit (key, tat) VALUES (?1, ?2) "
                    "ON CONFLICT (key) DO UPDATE SET tat = excluded.tat",
    [SQ_SWEEP_RATE] = "DELETE FROM ratelimit WHERE tat < ?1",
    [SQ_KV_GET] = "SELECT value FROM kv WHERE key = ?1 AND (expires_at = 0 OR expires_at > ?2)",
    [SQ_KV_PUT] = "INSERT INTO kv (key, value, expires_at) VALUES (?1, ?2, ?3) "
                  "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                  "expires_at = excluded.expires_at",
    /* Takes the place of an expired row only. */
    [SQ_KV_ADD] = "INSERT INTO kv (key, value, expires_at) VALUES (?1, ?2, ?3) "
                  "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                  "expires_at = excluded.expires_at "
                  "WHERE kv.expires_at > 0 AND kv.expires_at <= ?4",
    [SQ_KV_DELETE] = "DELETE FROM kv WHERE key = ?1 AND (?2 IS NULL OR value = ?2) "
                     "AND (expires_at = 0 OR expires_at > ?3)",
    [SQ_SWEEP_KV] =
        "DELETE FROM kv INDEXED BY kv_expires WHERE expires_at > 0 AND expires_at < ?1",
    [SQ_SAVEPOINT] = "SAVEPOINT op",
    [SQ_RELEASE_SAVEPOINT] = "RELEASE op",
    [SQ_ROLLBACK_SAVEPOINT] = "ROLLBACK TO op",
    [SQ_BEGIN_WRITE] = "BEGIN IMMEDIATE",
    [SQ_BEGIN_READ] = "BEGIN",
    [SQ_COMMIT] = "COMMIT",
};

/* A cursor above every id, for the first page of a list. */
#define LIST_START "~"

sqlite3_stmt *luar_sq_stmt(luar_sq_t *s, int which)
{
    sqlite3_stmt *st = s->stmts[which];
    if (st == NULL) {
        if (sqlite3_prepare_v3(s->db, sql[which], -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) !=
            SQLITE_OK)
            return NULL;
        s->stmts[which] = st;
        return st;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return st;
}

void luar_sq_finalize(luar_sq_t *s)
{
    for (int i = 0; i < SQ_STMTS; i++) {
        sqlite3_finalize(s->stmts[i]);
        s->stmts[i] = NULL;
    }
}

/* ---- helpers ------------------------------------------------------------------------ */

static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

/* The error of a statement that could not be prepared (never SQLITE_OK). */
static int prepare_error(luar_sq_t *s)
{
    int src = sqlite3_errcode(s->db);
    return src == SQLITE_OK ? SQLITE_ERROR : src;
}

/* Declares `var` as kept statement `which`; returns the connection's error from the
 * calling function when it cannot be prepared. */
#define STMT(var, which)                                                                           \
    sqlite3_stmt *var = luar_sq_stmt(s, which);                                                    \
    if ((var) == NULL) {                                                                           \
        return prepare_error(s);                                                                   \
    }

/* Steps a statement to its end; returns SQLITE_OK or the error. Resets it. */
static int step_done(sqlite3_stmt *st)
{
    int src = sqlite3_step(st);
    sqlite3_reset(st);
    return src == SQLITE_DONE ? SQLITE_OK : src;
}

/* Copies a text column into the arena (NULL stays NULL). Sets *nomem on failure. */
static const char *col_text(luar_qop_t *op, sqlite3_stmt *st, int i, int *nomem)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    if (t == NULL)
        return NULL;
    const char *copy = luar_qop_strdup(op, (const char *)t);
    if (copy == NULL)
        *nomem = 1;
    return copy;
}

/* Reads a row of JOB_COLUMNS into `job`. Returns SQLITE_OK or SQLITE_NOMEM. */
static int read_job(luar_qop_t *op, sqlite3_stmt *st, luar_job_t *job)
{
    int nomem = 0;
    const unsigned char *id = sqlite3_column_text(st, 0);
    snprintf(job->id, sizeof job->id, "%s", id ? (const char *)id : "");
    job->name = col_text(op, st, 1, &nomem);
    job->queue = col_text(op, st, 2, &nomem);
    job->args = col_text(op, st, 3, &nomem);
    job->key = col_text(op, st, 4, &nomem);
    job->priority = sqlite3_column_int(st, 5);
    job->state = (luar_job_state_t)sqlite3_column_int(st, 6);
    job->attempt = sqlite3_column_int(st, 7);
    job->max_attempts = sqlite3_column_int(st, 8);
    job->enqueued_at = sqlite3_column_double(st, 9);
    job->run_at = sqlite3_column_double(st, 10);
    job->started_at = sqlite3_column_double(st, 11);
    job->finished_at = sqlite3_column_double(st, 12);
    job->lease_expires_at = sqlite3_column_double(st, 13);
    job->owner = col_text(op, st, 14, &nomem);
    job->result = col_text(op, st, 15, &nomem);
    job->last_error = col_text(op, st, 16, &nomem);
    job->traceback = col_text(op, st, 17, &nomem);
    job->expires_at = sqlite3_column_double(st, 18);
    job->trace = col_text(op, st, 19, &nomem);
    return nomem ? SQLITE_NOMEM : SQLITE_OK;
}

static sqlite3_int64 clamp_limit(size_t n)
{
    return n > (size_t)INT64_MAX ? INT64_MAX : (sqlite3_int64)n;
}

/* Fencing: a single-job write that changed no row did not find its job under `owner`. */
static int fenced(luar_sq_t *s, luar_qop_t *op, int src)
{
    if (src == SQLITE_OK && sqlite3_changes(s->db) == 0)
        op->rc = LUAR_ENOTFOUND;
    return src;
}

/* ---- writes ------------------------------------------------------------------------- */

static int do_enqueue(luar_sq_t *s, luar_qop_t *op)
{
    int src;
    if (op->dedupe_key) {
        STMT(st, SQ_DEDUPE_PUT);
        sqlite3_bind_text(st, 1, op->dedupe_key, -1, SQLITE_STATIC);
        sqlite3_bind_double(st, 2, op->now + op->dedupe_ttl);
        sqlite3_bind_double(st, 3, op->now);
        src = step_done(st);
        if (src != SQLITE_OK)
            return src;
        if (sqlite3_changes(s->db) == 0) {
            op->duplicate = 1;
            return SQLITE_OK;
        }
    }
    if (op->nspecs > 0) {
        op->out_ids = luar_qop_alloc(op, op->nspecs * sizeof *op->out_ids);
        if (op->out_ids == NULL)
            return SQLITE_NOMEM;
    }
    for (size_t i = 0; i < op->nspecs; i++) {
        const luar_job_spec_t *spec = &op->specs[i];
        if (spec->key) {
            STMT(find, SQ_FIND_KEY);
            sqlite3_bind_text(find, 1, spec->key, -1, SQLITE_STATIC);
            src = sqlite3_step(find);
            if (src == SQLITE_ROW) {
                op->out_ids[i] = luar_qop_strdup(op, (const char *)sqlite3_column_text(find, 0));
                sqlite3_reset(find);
                if (op->out_ids[i] == NULL)
                    return SQLITE_NOMEM;
                continue;
            }
            sqlite3_reset(find);
            if (src != SQLITE_DONE)
                return src;
        }
        char *id = luar_qop_alloc(op, 27);
        if (id == NULL)
            return SQLITE_NOMEM;
        luar_queue_new_id(op->now, id);
        int later = spec->run_at > op->now;
        STMT(put, SQ_ARGS_PUT);
        sqlite3_bind_text(put, 1, spec->args, -1, SQLITE_STATIC);
        bind_text(put, 2, spec->trace);
        src = step_done(put);
        if (src != SQLITE_OK)
            return src;
        sqlite3_int64 args_id = sqlite3_last_insert_rowid(s->db);
        STMT(st, SQ_INSERT);
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, spec->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, spec->queue, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, args_id);
        bind_text(st, 5, spec->key);
        sqlite3_bind_int(st, 6, spec->priority);
        sqlite3_bind_int(st, 7, later ? LUAR_JOB_SCHEDULED : LUAR_JOB_QUEUED);
        sqlite3_bind_int(st, 8, spec->max_attempts);
        sqlite3_bind_double(st, 9, op->now);
        /* A past run_at (a cron tick, a catch-up) is kept: it is job.scheduled_at. */
        sqlite3_bind_double(st, 10, spec->run_at > 0 ? spec->run_at : op->now);
        src = step_done(st);
        if (src != SQLITE_OK) {
            /* The job was refused alone (its statement rolled back): so are its arguments.
             * An enqueue of several jobs has a savepoint for the whole; this covers one. */
            STMT(drop, SQ_ARGS_DROP);
            sqlite3_bind_int64(drop, 1, args_id);
            int dsrc = step_done(drop);
            return dsrc != SQLITE_OK ? dsrc : src;
        }
        op->out_ids[i] = id;
    }
    op->nout_ids = op->nspecs;
    return SQLITE_OK;
}

static int do_claim(luar_sq_t *s, luar_qop_t *op)
{
    int src;
    STMT(pick, op->queue ? SQ_CLAIM_QUEUE : SQ_CLAIM_ANY);
    sqlite3_bind_double(pick, 1, op->now);
    sqlite3_bind_int64(pick, 2, clamp_limit(op->max));
    if (op->queue)
        sqlite3_bind_text(pick, 3, op->queue, -1, SQLITE_STATIC);
    /* Read the candidates whole first (the updates below would disturb the index scan),
     * then take each one; the fields the take changes are set here rather than read back
     * (UPDATE ... RETURNING would cost an ephemeral table per row). */
    size_t cap = op->max < 16 ? op->max : 16;
    op->jobs = luar_qop_alloc(op, (cap ? cap : 1) * sizeof *op->jobs);
    const char *owner = luar_qop_strdup(op, op->owner);
    if (op->jobs == NULL || owner == NULL) {
        sqlite3_reset(pick);
        return SQLITE_NOMEM;
    }
    size_t n = 0;
    while ((src = sqlite3_step(pick)) == SQLITE_ROW) {
        if (n == cap) {
            luar_job_t *more = luar_qop_alloc(op, 2 * cap * sizeof *more);
            if (more == NULL) {
                sqlite3_reset(pick);
                return SQLITE_NOMEM;
            }
            memcpy(more, op->jobs, n * sizeof *more);
            op->jobs = more;
            cap *= 2;
        }
        if (read_job(op, pick, &op->jobs[n++]) != SQLITE_OK) {
            sqlite3_reset(pick);
            return SQLITE_NOMEM;
        }
    }
    sqlite3_reset(pick);
    if (src != SQLITE_DONE)
        return src;
    for (size_t i = 0; i < n; i++) {
        luar_job_t *job = &op->jobs[i];
        STMT(take, SQ_TAKE);
        sqlite3_bind_text(take, 1, job->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(take, 2, op->owner, -1, SQLITE_STATIC);
        sqlite3_bind_double(take, 3, op->now);
        sqlite3_bind_double(take, 4, op->now + op->lease);
        src = step_done(take);
        if (src != SQLITE_OK)
            return src;
        if (sqlite3_changes(s->db) == 0)
            continue;
        job->state = LUAR_JOB_RUNNING;
        job->attempt++;
        job->owner = owner;
        job->started_at = op->now;
        job->lease_expires_at = op->now + op->lease;
        if (op->njobs != i)
            op->jobs[op->njobs] = *job;
        op->njobs++;
    }
    return SQLITE_OK;
}

static int do_heartbeat(luar_sq_t *s, luar_qop_t *op)
{
    if (op->nids > 0) {
        op->out_ids = luar_qop_alloc(op, op->nids * sizeof *op->out_ids);
        if (op->out_ids == NULL)
            return SQLITE_NOMEM;
    }
    for (size_t i = 0; i < op->nids; i++) {
        STMT(st, SQ_HEARTBEAT);
        sqlite3_bind_text(st, 1, op->ids[i], -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, op->owner, -1, SQLITE_STATIC);
        sqlite3_bind_double(st, 3, op->now + op->lease);
        int src = step_done(st);
        if (src != SQLITE_OK)
            return src;
        if (sqlite3_changes(s->db) == 0)
            op->out_ids[op->nout_ids++] = op->ids[i];
    }
    return SQLITE_OK;
}

static int do_complete(luar_sq_t *s, luar_qop_t *op)
{
    STMT(st, SQ_COMPLETE);
    sqlite3_bind_text(st, 1, op->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, op->owner, -1, SQLITE_STATIC);
    bind_text(st, 3, op->text);
    sqlite3_bind_double(st, 4, op->now);
    sqlite3_bind_double(st, 5, op->now + op->ttl);
    return fenced(s, op, step_done(st));
}

static int do_fail(luar_sq_t *s, luar_qop_t *op)
{
    int dead = op->when <= 0;
    STMT(st, dead ? SQ_FAIL_DEAD : SQ_FAIL_RETRY);
    sqlite3_bind_text(st, 1, op->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, op->owner, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 3, dead ? op->now : op->when);
    bind_text(st, 4, op->text);
    bind_text(st, 5, op->traceback);
    if (dead)
        sqlite3_bind_double(st, 6, op->now + op->ttl);
    return fenced(s, op, step_done(st));
}

static int do_release(luar_sq_t *s, luar_qop_t *op)
{
    STMT(st, SQ_RELEASE);
    sqlite3_bind_text(st, 1, op->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, op->owner, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 3, op->when);
    sqlite3_bind_double(st, 4, op->now);
    return fenced(s, op, step_done(st));
}

static int do_sweep(luar_sq_t *s, luar_qop_t *op)
{
    STMT(leases, SQ_SWEEP_LEASES);
    sqlite3_bind_double(leases, 1, op->now);
    sqlite3_bind_double(leases, 2, op->ttl);
    int src = step_done(leases);
    if (src != SQLITE_OK)
        return src;
    op->count = (size_t)sqlite3_changes(s->db);
    STMT(jobs, SQ_SWEEP_JOBS);
    sqlite3_bind_double(jobs, 1, op->now);
    src = step_done(jobs);
    if (src != SQLITE_OK)
        return src;
    op->count2 = (size_t)sqlite3_changes(s->db);
    STMT(keys, SQ_SWEEP_DEDUPE);
    sqlite3_bind_double(keys, 1, op->now);
    src = step_done(keys);
    if (src != SQLITE_OK)
        return src;
    op->count2 += (size_t)sqlite3_changes(s->db);
    STMT(rates, SQ_SWEEP_RATE);
    sqlite3_bind_int64(rates, 1, luar_gcra_ns(op->now));
    src = step_done(rates);
    if (src != SQLITE_OK)
        return src;
    op->count2 += (size_t)sqlite3_changes(s->db);
    STMT(kv, SQ_SWEEP_KV);
    sqlite3_bind_double(kv, 1, op->now);
    src = step_done(kv);
    if (src != SQLITE_OK)
        return src;
    op->count2 += (size_t)sqlite3_changes(s->db);
    return SQLITE_OK;
}

static int do_retry(luar_sq_t *s, luar_qop_t *op)
{
    STMT(get, SQ_STATE);
    sqlite3_bind_text(get, 1, op->id, -1, SQLITE_STATIC);
    int src = sqlite3_step(get);
    int state = src == SQLITE_ROW ? sqlite3_column_int(get, 0) : -1;
    sqlite3_reset(get);
    if (src != SQLITE_ROW && src != SQLITE_DONE)
        return src;
    if (state < 0) {
        op->rc = LUAR_ENOTFOUND;
        return SQLITE_OK;
    }
    if (state == LUAR_JOB_RUNNING) {
        op->rc = LUAR_EBUSY; /* its worker holds it; retrying would run it twice */
        return SQLITE_OK;
    }
    if (state == LUAR_JOB_QUEUED)
        return SQLITE_OK;
    STMT(st, SQ_RETRY);
    sqlite3_bind_text(st, 1, op->id, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 2, op->now);
    return step_done(st);
}

/* Binds the filter of retry_many, purge and list: ?1 state, ?3 queue, ?4 name, ?6 error,
 * ?7 since, ?8 until; and ?9, the most retry_many and purge touch (-1: no limit). */
static void bind_filter(sqlite3_stmt *st, const luar_job_filter_t *f)
{
    sqlite3_bind_int(st, 1, f->state);
    bind_text(st, 3, f->queue);
    bind_text(st, 4, f->name);
    bind_text(st, 6, f->error);
    sqlite3_bind_double(st, 7, f->since);
    sqlite3_bind_double(st, 8, f->until);
    if (sqlite3_bind_parameter_count(st) >= 9)
        sqlite3_bind_int64(st, 9, f->max > 0 ? clamp_limit(f->max) : -1);
}

static int do_retry_many(luar_sq_t *s, luar_qop_t *op)
{
    STMT(st, SQ_RETRY_MANY);
    bind_filter(st, &op->filter);
    sqlite3_bind_double(st, 2, op->now);
    int src = step_done(st);
    op->count = src == SQLITE_OK ? (size_t)sqlite3_changes(s->db) : 0;
    return src;
}

static int do_delete(luar_sq_t *s, luar_qop_t *op)
{
    STMT(st, SQ_DELETE);
    sqlite3_bind_text(st, 1, op->id, -1, SQLITE_STATIC);
    return fenced(s, op, step_done(st));
}

static int do_purge(luar_sq_t *s, luar_qop_t *op)
{
    STMT(st, SQ_PURGE);
    bind_filter(st, &op->filter);
    int src = step_done(st);
    op->count = src == SQLITE_OK ? (size_t)sqlite3_changes(s->db) : 0;
    return src;
}

/* ---- reads -------------------------------------------------------------------------- */

static int do_get(luar_sq_t *s, luar_qop_t *op)
{
    STMT(st, SQ_GET);
    sqlite3_bind_text(st, 1, op->id, -1, SQLITE_STATIC);
    int src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        op->jobs = luar_qop_alloc(op, sizeof *op->jobs);
        src = op->jobs ? read_job(op, st, op->jobs) : SQLITE_NOMEM;
        op->njobs = 1;
    } else if (src == SQLITE_DONE) {
        op->rc = LUAR_ENOTFOUND;
        src = SQLITE_OK;
    }
    sqlite3_reset(st);
    return src;
}

static int do_list(luar_sq_t *s, luar_qop_t *op)
{
    size_t limit = op->filter.limit;
    STMT(st, op->filter.state < 0 ? SQ_LIST : SQ_LIST_STATE);
    bind_filter(st, &op->filter);
    sqlite3_bind_text(st, 2, op->filter.cursor ? op->filter.cursor : LIST_START, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, clamp_limit(limit + 1));
    op->jobs = luar_qop_alloc(op, limit * sizeof *op->jobs);
    if (op->jobs == NULL)
        return SQLITE_NOMEM;
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        if (op->njobs == limit) {
            /* One row more than asked: there is a next page, after the last one kept. */
            op->cursor = op->jobs[limit - 1].id;
            break;
        }
        src = read_job(op, st, &op->jobs[op->njobs++]);
        if (src != SQLITE_OK)
            break;
    }
    sqlite3_reset(st);
    return src == SQLITE_ROW || src == SQLITE_DONE ? SQLITE_OK : src;
}

static int do_counts(luar_sq_t *s, luar_qop_t *op)
{
    STMT(st, SQ_COUNTS);
    size_t cap = 0;
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        const char *queue = (const char *)sqlite3_column_text(st, 0);
        int state = sqlite3_column_int(st, 1);
        if (queue == NULL || state < 0 || state >= LUAR_JOB_STATES)
            continue;
        luar_queue_count_t *c = op->ncounts ? &op->counts[op->ncounts - 1] : NULL;
        if (c == NULL || strcmp(c->queue, queue) != 0) {
            if (op->ncounts == cap) {
                size_t ncap = cap ? 2 * cap : 8;
                luar_queue_count_t *more = luar_qop_alloc(op, ncap * sizeof *more);
                if (more == NULL) {
                    src = SQLITE_NOMEM;
                    break;
                }
                if (op->ncounts)
                    memcpy(more, op->counts, op->ncounts * sizeof *more);
                op->counts = more;
                cap = ncap;
            }
            c = &op->counts[op->ncounts++];
            c->queue = luar_qop_strdup(op, queue);
            if (c->queue == NULL) {
                src = SQLITE_NOMEM;
                break;
            }
        }
        c->counts[state] = sqlite3_column_int64(st, 2);
    }
    sqlite3_reset(st);
    return src == SQLITE_DONE ? SQLITE_OK : src;
}

static int do_next_due(luar_sq_t *s, luar_qop_t *op)
{
    STMT(st, SQ_NEXT_DUE);
    int src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        op->time = sqlite3_column_type(st, 0) == SQLITE_NULL ? 0 : sqlite3_column_double(st, 0);
        src = SQLITE_OK;
    }
    sqlite3_reset(st);
    return src == SQLITE_DONE ? SQLITE_OK : src;
}

static int do_ping(luar_sq_t *s, luar_qop_t *op)
{
    STMT(st, SQ_PING);
    int src = sqlite3_step(st);
    sqlite3_reset(st);
    return src == SQLITE_ROW || src == SQLITE_DONE ? SQLITE_OK : src;
}

/* ---- rate limits -------------------------------------------------------------------- */

/*
 * Read, decide, write back, inside the batch's write transaction: BEGIN IMMEDIATE holds
 * the file's write lock, so no other process reads the TAT between this read and this
 * write, and checks of one batch see each other's writes in order. A refused request
 * writes nothing (unless the clock went back, see gcra.h).
 */
static int do_rate(luar_sq_t *s, luar_qop_t *op)
{
    STMT(get, SQ_RATE_GET);
    sqlite3_bind_text(get, 1, op->rate_key, -1, SQLITE_STATIC);
    int src = sqlite3_step(get);
    int64_t tat = src == SQLITE_ROW ? sqlite3_column_int64(get, 0) : 0;
    sqlite3_reset(get);
    if (src != SQLITE_ROW && src != SQLITE_DONE)
        return src;
    luar_gcra_check(&op->limit, tat, luar_gcra_ns(op->now), op->cost, &op->rate);
    if (!op->rate.store)
        return SQLITE_OK;
    STMT(put, SQ_RATE_PUT);
    sqlite3_bind_text(put, 1, op->rate_key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(put, 2, op->rate.tat_ns);
    return step_done(put);
}

/* ---- durable key-value -------------------------------------------------------------- */

/* Reads the live value of op->cache_key into op->out_value (NULL when absent). */
static int kv_read(luar_sq_t *s, luar_qop_t *op)
{
    STMT(get, SQ_KV_GET);
    sqlite3_bind_text(get, 1, op->cache_key, -1, SQLITE_STATIC);
    sqlite3_bind_double(get, 2, op->now);
    int src = sqlite3_step(get);
    if (src == SQLITE_ROW) {
        size_t n = (size_t)sqlite3_column_bytes(get, 0);
        const void *v = sqlite3_column_blob(get, 0);
        char *copy = luar_qop_alloc(op, n + 1);
        if (copy == NULL) {
            op->rc = LUAR_ENOMEM;
        } else {
            if (n)
                memcpy(copy, v, n);
            op->out_value = copy;
            op->out_value_len = n;
            op->number = 1;
        }
        src = SQLITE_DONE;
    }
    sqlite3_reset(get);
    return src == SQLITE_DONE ? SQLITE_OK : src;
}

/* Every mode runs in the writer's transaction, so ADD and TAKE are atomic across processes. */
static int do_kv(luar_sq_t *s, luar_qop_t *op)
{
    double expires = op->ttl > 0 ? op->now + op->ttl : 0;
    int src;
    op->number = 0;
    switch (op->kv_mode) {
    case LUAR_KV_GET:
        return kv_read(s, op);
    case LUAR_KV_PUT:
    case LUAR_KV_ADD: {
        int add = op->kv_mode == LUAR_KV_ADD;
        STMT(put, add ? SQ_KV_ADD : SQ_KV_PUT);
        sqlite3_bind_text(put, 1, op->cache_key, -1, SQLITE_STATIC);
        sqlite3_bind_blob(put, 2, op->value, (int)op->value_len, SQLITE_STATIC);
        sqlite3_bind_double(put, 3, expires);
        if (add)
            sqlite3_bind_double(put, 4, op->now);
        src = step_done(put);
        if (src == SQLITE_OK)
            op->number = sqlite3_changes(s->db) > 0;
        return src;
    }
    case LUAR_KV_TAKE:
        src = kv_read(s, op);
        if (src != SQLITE_OK || op->number == 0)
            return src;
        __attribute__((fallthrough)); /* delete what was read */
    case LUAR_KV_DELETE: {
        STMT(del, SQ_KV_DELETE);
        sqlite3_bind_text(del, 1, op->cache_key, -1, SQLITE_STATIC);
        if (op->kv_mode == LUAR_KV_DELETE && op->value != NULL)
            sqlite3_bind_blob(del, 2, op->value, (int)op->value_len, SQLITE_STATIC);
        else
            sqlite3_bind_null(del, 2);
        sqlite3_bind_double(del, 3, op->now);
        src = step_done(del);
        if (src == SQLITE_OK)
            op->number = sqlite3_changes(s->db) > 0;
        return src;
    }
    }
    return SQLITE_OK;
}

int luar_sq_exec(luar_sq_t *s, luar_qop_t *op)
{
    static int (*const run[LUAR_QOP_KINDS])(luar_sq_t *, luar_qop_t *) = {
        [LUAR_QOP_ENQUEUE] = do_enqueue,
        [LUAR_QOP_CLAIM] = do_claim,
        [LUAR_QOP_HEARTBEAT] = do_heartbeat,
        [LUAR_QOP_COMPLETE] = do_complete,
        [LUAR_QOP_FAIL] = do_fail,
        [LUAR_QOP_RELEASE] = do_release,
        [LUAR_QOP_SWEEP] = do_sweep,
        [LUAR_QOP_RETRY] = do_retry,
        [LUAR_QOP_RETRY_MANY] = do_retry_many,
        [LUAR_QOP_DELETE] = do_delete,
        [LUAR_QOP_PURGE] = do_purge,
        [LUAR_QOP_GET] = do_get,
        [LUAR_QOP_LIST] = do_list,
        [LUAR_QOP_COUNTS] = do_counts,
        [LUAR_QOP_NEXT_DUE] = do_next_due,
        [LUAR_QOP_PING] = do_ping,
        [LUAR_QOP_RATE] = do_rate,
        [LUAR_QOP_KV] = do_kv,
    };
    op->rc = 0;
    return run[op->kind](s, op);
}
