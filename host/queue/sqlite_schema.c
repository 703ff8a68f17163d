/*
 * The SQLite backend's settings and schema. The schema's version is PRAGMA user_version:
 * migration i (counting from 1) brings the file from version i - 1 to i, and open applies
 * the missing ones in order inside one write transaction, so two processes opening a new
 * file at once cannot both migrate it.
 */
#include "queue/sqlite.h"
#include "common/error.h"

#include <stdio.h>

/*
 * States are stored as their luar_job_state_t numbers: 0 queued, 1 scheduled, 2 running,
 * 3 succeeded, 4 retrying, 5 dead. Times are unix seconds (REAL); 0 means unset.
 */
static const char *const migrations[] = {
    /* 1: jobs and dedupe keys. */
    "CREATE TABLE jobs ("
    "  id TEXT PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  queue TEXT NOT NULL,"
    "  args TEXT NOT NULL,"
    "  key TEXT,"
    "  priority INTEGER NOT NULL DEFAULT 0,"
    "  state INTEGER NOT NULL,"
    "  attempt INTEGER NOT NULL DEFAULT 0,"
    "  max_attempts INTEGER NOT NULL DEFAULT 0,"
    "  enqueued_at REAL NOT NULL,"
    "  run_at REAL NOT NULL,"
    "  started_at REAL NOT NULL DEFAULT 0,"
    "  finished_at REAL NOT NULL DEFAULT 0,"
    "  lease_expires_at REAL NOT NULL DEFAULT 0,"
    "  owner TEXT,"
    "  result TEXT,"
    "  last_error TEXT,"
    "  traceback TEXT,"
    "  expires_at REAL NOT NULL DEFAULT 0"
    ");"
    /* Claims: due jobs by priority then run_at, in any queue or in one. */
    "CREATE INDEX jobs_claim ON jobs(priority DESC, run_at, id) WHERE state IN (0, 1, 4);"
    "CREATE INDEX jobs_claim_queue ON jobs(queue, priority DESC, run_at, id)"
    "  WHERE state IN (0, 1, 4);"
    /* One unfinished job per key. */
    "CREATE UNIQUE INDEX jobs_key ON jobs(key) WHERE key IS NOT NULL AND state IN (0, 1, 2, 4);"
    /* Sweeps: expired leases, expired finished jobs; next_due. */
    "CREATE INDEX jobs_lease ON jobs(lease_expires_at) WHERE state = 2;"
    "CREATE INDEX jobs_expires ON jobs(expires_at) WHERE expires_at > 0;"
    "CREATE INDEX jobs_due ON jobs(run_at) WHERE state IN (1, 4);"
    /* Lists by state, newest first. */
    "CREATE INDEX jobs_state ON jobs(state, id);"
    "CREATE TABLE dedupe ("
    "  key TEXT PRIMARY KEY,"
    "  expires_at REAL NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE INDEX dedupe_expires ON dedupe(expires_at);",

    /* 2: the partial indexes' predicates without IN lists. SQLite evaluates a partial
     * index's predicate on every row change, and an IN list costs an ephemeral table
     * each time: claim and complete were spending most of their time there. */
    "DROP INDEX jobs_claim;"
    "DROP INDEX jobs_claim_queue;"
    "DROP INDEX jobs_key;"
    "DROP INDEX jobs_due;"
    "CREATE INDEX jobs_claim ON jobs(priority DESC, run_at, id) WHERE (state <= 1 OR state = 4);"
    "CREATE INDEX jobs_claim_queue ON jobs(queue, priority DESC, run_at, id)"
    "  WHERE (state <= 1 OR state = 4);"
    "CREATE UNIQUE INDEX jobs_key ON jobs(key)"
    "  WHERE key IS NOT NULL AND (state <= 2 OR state = 4);"
    "CREATE INDEX jobs_due ON jobs(run_at) WHERE (state = 1 OR state = 4);",

    /* 3: fewer index writes per job. Every claim and completion rewrote entries in
     * jobs_claim (claims in any queue, which workers never do: they claim per queue) and
     * jobs_state (which held every succeeded job, the bulk of the table). Claims in any
     * queue now read jobs_claim_queue; jobs_state no longer holds succeeded jobs, which
     * are listed by id. */
    "DROP INDEX jobs_claim;"
    "DROP INDEX jobs_state;"
    "CREATE INDEX jobs_state ON jobs(state, id) WHERE state <> 3;",

    /* 4: jobs as a WITHOUT ROWID table. Keyed by its text id, a rowid table kept a rowid
     * B-tree and a separate primary-key index: two writes per enqueue where one does. */
    "CREATE TABLE jobs_v4 ("
    "  id TEXT PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  queue TEXT NOT NULL,"
    "  args TEXT NOT NULL,"
    "  key TEXT,"
    "  priority INTEGER NOT NULL DEFAULT 0,"
    "  state INTEGER NOT NULL,"
    "  attempt INTEGER NOT NULL DEFAULT 0,"
    "  max_attempts INTEGER NOT NULL DEFAULT 0,"
    "  enqueued_at REAL NOT NULL,"
    "  run_at REAL NOT NULL,"
    "  started_at REAL NOT NULL DEFAULT 0,"
    "  finished_at REAL NOT NULL DEFAULT 0,"
    "  lease_expires_at REAL NOT NULL DEFAULT 0,"
    "  owner TEXT,"
    "  result TEXT,"
    "  last_error TEXT,"
    "  traceback TEXT,"
    "  expires_at REAL NOT NULL DEFAULT 0"
    ") WITHOUT ROWID;"
    "INSERT INTO jobs_v4 SELECT id, name, queue, args, key, priority, state, attempt,"
    "  max_attempts, enqueued_at, run_at, started_at, finished_at, lease_expires_at, owner,"
    "  result, last_error, traceback, expires_at FROM jobs;"
    "DROP TABLE jobs;"
    "ALTER TABLE jobs_v4 RENAME TO jobs;"
    "CREATE INDEX jobs_claim_queue ON jobs(queue, priority DESC, run_at, id)"
    "  WHERE (state <= 1 OR state = 4);"
    "CREATE UNIQUE INDEX jobs_key ON jobs(key)"
    "  WHERE key IS NOT NULL AND (state <= 2 OR state = 4);"
    "CREATE INDEX jobs_lease ON jobs(lease_expires_at) WHERE state = 2;"
    "CREATE INDEX jobs_expires ON jobs(expires_at) WHERE expires_at > 0;"
    "CREATE INDEX jobs_due ON jobs(run_at) WHERE (state = 1 OR state = 4);"
    "CREATE INDEX jobs_state ON jobs(state, id) WHERE state <> 3;",

    /* 5: no jobs_state. Each claim and each completion moved an entry in it, for the
     * benefit of listings by state only (the CLI and the admin API), which now read the
     * table newest first and filter: slower for a person, lighter for every job. */
    "DROP INDEX jobs_state;",

    /* 6: rate-limit state (luar_queue_rate_check): one GCRA theoretical arrival time per
     * key, unix nanoseconds. A row whose TAT has passed means nothing any more; the index
     * lets the sweep delete those without reading the whole table. */
    "CREATE TABLE ratelimit ("
    "  key TEXT PRIMARY KEY,"
    "  tat INTEGER NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE INDEX ratelimit_tat ON ratelimit(tat);",

    /* 7: arguments out of the rows that change state. A job's row is rewritten whole by
     * its claim, its completion, every heartbeat and failure, and a row of a WITHOUT ROWID
     * table longer than about 1 KB (a webhook event is 2) spills into overflow pages that
     * each rewrite frees and allocates again: a 2 KB job wrote ≈ 6 KB of pages to the WAL.
     * Arguments never change once enqueued, so they live in a rowid table (rows up to a
     * page long stay in their leaf, new ones append at its right edge) written once, read
     * with the claim, and deleted with their job by the trigger, whichever statement
     * deletes it (sweep, delete, purge). */
    "CREATE TABLE job_args ("
    "  id INTEGER PRIMARY KEY,"
    "  args TEXT NOT NULL"
    ");"
    "CREATE TABLE jobs_v7 ("
    "  id TEXT PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  queue TEXT NOT NULL,"
    "  args_id INTEGER NOT NULL,"
    "  key TEXT,"
    "  priority INTEGER NOT NULL DEFAULT 0,"
    "  state INTEGER NOT NULL,"
    "  attempt INTEGER NOT NULL DEFAULT 0,"
    "  max_attempts INTEGER NOT NULL DEFAULT 0,"
    "  enqueued_at REAL NOT NULL,"
    "  run_at REAL NOT NULL,"
    "  started_at REAL NOT NULL DEFAULT 0,"
    "  finished_at REAL NOT NULL DEFAULT 0,"
    "  lease_expires_at REAL NOT NULL DEFAULT 0,"
    "  owner TEXT,"
    "  result TEXT,"
    "  last_error TEXT,"
    "  traceback TEXT,"
    "  expires_at REAL NOT NULL DEFAULT 0"
    ") WITHOUT ROWID;"
    "INSERT INTO jobs_v7 SELECT id, name, queue, row_number() OVER (ORDER BY id), key, priority,"
    "  state, attempt, max_attempts, enqueued_at, run_at, started_at, finished_at,"
    "  lease_expires_at, owner, result, last_error, traceback, expires_at FROM jobs;"
    "INSERT INTO job_args (id, args) SELECT v.args_id, j.args FROM jobs_v7 v JOIN jobs j"
    "  ON j.id = v.id;"
    "DROP TABLE jobs;"
    "ALTER TABLE jobs_v7 RENAME TO jobs;"
    "CREATE INDEX jobs_claim_queue ON jobs(queue, priority DESC, run_at, id)"
    "  WHERE (state <= 1 OR state = 4);"
    "CREATE UNIQUE INDEX jobs_key ON jobs(key)"
    "  WHERE key IS NOT NULL AND (state <= 2 OR state = 4);"
    "CREATE INDEX jobs_lease ON jobs(lease_expires_at) WHERE state = 2;"
    "CREATE INDEX jobs_expires ON jobs(expires_at) WHERE expires_at > 0;"
    "CREATE INDEX jobs_due ON jobs(run_at) WHERE (state = 1 OR state = 4);"
    "CREATE TRIGGER jobs_args_delete AFTER DELETE ON jobs BEGIN"
    "  DELETE FROM job_args WHERE id = old.args_id;"
    "END;",
    /* 8: the trace context of the span that enqueued a job (W3C traceparent), written
     * once beside its arguments. */
    "ALTER TABLE job_args ADD COLUMN trace TEXT;",
    /* 9: durable key-value records (luar_queue_kv: OAuth tokens, states, refresh locks),
     * expires_at unix seconds, 0 for none. An expired row reads as absent; the sweep
     * deletes them through the partial index. */
    "CREATE TABLE kv ("
    "  key TEXT PRIMARY KEY,"
    "  value BLOB NOT NULL,"
    "  expires_at REAL NOT NULL DEFAULT 0"
    ") WITHOUT ROWID;"
    "CREATE INDEX kv_expires ON kv(expires_at) WHERE expires_at > 0;",
};

#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

int luar_sq_schema_version(void)
{
    return SCHEMA_VERSION;
}

const char *luar_sq_migration(int version)
{
    return version >= 1 && version <= SCHEMA_VERSION ? migrations[version - 1] : NULL;
}

/* Appends "path: what: sqlite's message" to err and returns LUAR_EIO. */
static int fail_msg(luar_sq_t *s, luar_buf_t *err, const char *what)
{
    luar_buf_appendf(err, "%s: %s: %s", s->path, what, sqlite3_errmsg(s->db));
    return LUAR_EIO;
}

/* Runs a statement returning one integer or text row into *out (either may be NULL). */
static int query_one(luar_sq_t *s, const char *sql, int *ival, char *text, size_t textlen)
{
    sqlite3_stmt *st = NULL;
    int src = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (src != SQLITE_OK)
        return src;
    src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        if (ival)
            *ival = sqlite3_column_int(st, 0);
        if (text) {
            const unsigned char *t = sqlite3_column_text(st, 0);
            snprintf(text, textlen, "%s", t ? (const char *)t : "");
        }
        src = SQLITE_OK;
    } else if (src == SQLITE_DONE) {
        src = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return src;
}

int luar_sq_setup(luar_sq_t *s, luar_buf_t *err)
{
    char mode[16] = "";
    int version = 0;
    int rc = 0;

    sqlite3_extended_result_codes(s->db, 1);
    /* Several processes share the file: wait for the write lock rather than fail. */
    sqlite3_busy_timeout(s->db, 5000);
    /* Two processes opening a new file at once (the workers of a supervisor) both switch it
     * to WAL; the loser is told SQLITE_BUSY at once, without the busy handler (it holds a
     * shared lock the winner waits on). Try again for up to 5 s, as the busy timeout would:
     * this is start-up, before the loop runs. */
    int src = SQLITE_BUSY;
    for (int i = 0; i < 500 && (src & 0xff) == SQLITE_BUSY; i++) {
        src = query_one(s, "PRAGMA journal_mode = WAL", NULL, mode, sizeof mode);
        if ((src & 0xff) == SQLITE_BUSY)
            sqlite3_sleep(10);
    }
    if (src != SQLITE_OK)
        return fail_msg(s, err, "cannot set WAL mode");
    if (sqlite3_stricmp(mode, "wal") != 0) {
        luar_buf_appendf(err, "%s: cannot set WAL mode (journal mode is %s)", s->path, mode);
        return LUAR_EIO;
    }
    /* FULL syncs the WAL at every commit: a committed write survives power loss. The WAL
     * is cut back to 64 MiB after checkpoints so a burst does not keep the disk. Statement
     * and savepoint journals stay in memory: spilled to temporary files they cost a write
     * per page touched (they need no durability; the WAL has it). */
    if (sqlite3_exec(s->db,
                     "PRAGMA synchronous = FULL; PRAGMA journal_size_limit = 67108864;"
                     "PRAGMA temp_store = MEMORY; PRAGMA foreign_keys = OFF;"
                     "PRAGMA cache_size = -65536; PRAGMA wal_autocheckpoint = 4000;",
                     NULL, NULL, NULL) != SQLITE_OK)
        return fail_msg(s, err, "cannot configure");

    if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return fail_msg(s, err, "cannot lock the schema");
    if (query_one(s, "PRAGMA user_version", &version, NULL, 0) != SQLITE_OK) {
        rc = fail_msg(s, err, "cannot read the schema version");
        goto fail;
    }
    if (version > SCHEMA_VERSION) {
        luar_buf_appendf(err, "%s: schema version %d is newer than this build's (%d)", s->path,
                         version, SCHEMA_VERSION);
        rc = LUAR_EIO;
        goto fail;
    }
    for (int i = version; i < SCHEMA_VERSION; i++) {
        char pragma[48];
        if (sqlite3_exec(s->db, migrations[i], NULL, NULL, NULL) != SQLITE_OK) {
            char what[48];
            snprintf(what, sizeof what, "migration %d failed", i + 1);
            rc = fail_msg(s, err, what);
            goto fail;
        }
        snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", i + 1);
        if (sqlite3_exec(s->db, pragma, NULL, NULL, NULL) != SQLITE_OK) {
            rc = fail_msg(s, err, "cannot record the schema version");
            goto fail;
        }
        s->stats.migrations_applied++;
    }
    if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        rc = fail_msg(s, err, "cannot commit the schema");
        goto fail;
    }
    s->stats.schema_version = SCHEMA_VERSION;
    return 0;
fail:
    if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    s->stats.migrations_applied = 0;
    return rc;
}
