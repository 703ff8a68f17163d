/*
 * WAL checkpoints off the commit path. SQLite's automatic checkpoint runs inside the commit
 * that crosses its threshold: the writer thread then copies megabytes from the WAL into the
 * database and fsyncs it while every operation waiting behind it waits too (200 ms stalls
 * were the webhook benchmark's p99). Here the writer's connection never checkpoints by
 * itself; a thread of its own, with a connection of its own, runs PASSIVE checkpoints
 * (which take no lock the writer needs) whenever the WAL passes CKPT_SOFT frames.
 *
 * A PASSIVE checkpoint copies the frames committed before it began. SQLite restarts the
 * WAL from its beginning (so it stops growing) only at a write transaction that finds every
 * frame copied and synced: a writer idle for the length of the checkpoint's fsync lets that
 * happen by itself, a busy one does not. So once the WAL passes CKPT_CATCHUP_AT frames and
 * the background passes have left at most CKPT_CATCHUP behind, the writer copies those
 * itself (one small copy and one fsync: the only checkpoint stall left, once per
 * CKPT_CATCHUP_AT frames at most) and its next transaction restarts the WAL. Should the
 * background thread fall behind, the writer checkpoints whatever is left once the WAL
 * reaches CKPT_HARD frames, as SQLite's own automatic checkpoint would: the WAL stays
 * bounded either way.
 *
 * The checkpoints keep SQLite's own durability order (the WAL synced before frames are
 * copied, the database synced before the WAL may be reused): synchronous is FULL on the
 * checkpointer's connection.
 */
#include "queue/sqlite.h"
#include "common/error.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

/* Frames (pages) in the WAL before a background pass is asked: 16 MiB of 4 KiB pages,
 * SQLite's own wal_autocheckpoint used to be set there. */
#define CKPT_SOFT 4000
/* Frames in the WAL from which the writer finishes what the background passes left, when
 * that is at most CKPT_CATCHUP frames. */
#define CKPT_CATCHUP_AT 8000
#define CKPT_CATCHUP 256
/* Frames at which the writer checkpoints whatever the background thread is doing. */
#define CKPT_HARD 16000

struct luar_sq_ckpt {
    sqlite3 *db; /* the checkpointer thread's own connection */
    uv_thread_t thread;
    uv_mutex_t lock;
    uv_cond_t wake;
    /* Under lock: */
    int asked, running, stopping;
    unsigned gen;      /* WAL restarts the writer has seen (it alone changes it) */
    unsigned done_gen; /* the restart generation of the last finished pass */
    int done_frames;   /* frames copied when that pass ended, in its generation */
    uint64_t passes;   /* background passes run */
    uint64_t catchups; /* checkpoints the writer ran itself */
    /* The writer thread's alone: */
    int wal_frames; /* frames in the WAL after its last commit (the WAL hook) */
    int prev_frames;
};

/* The writer connection's WAL hook: after each commit, the frames now in the WAL. */
static int on_wal_commit(void *arg, sqlite3 *db, const char *name, int frames)
{
    (void)db;
    (void)name;
    ((luar_sq_ckpt_t *)arg)->wal_frames = frames;
    return SQLITE_OK;
}

static void ckpt_main(void *arg)
{
    luar_sq_ckpt_t *c = arg;
    pthread_setname_np(pthread_self(), "luar-checkpoint");
    uv_mutex_lock(&c->lock);
    for (;;) {
        while (!c->asked && !c->stopping)
            uv_cond_wait(&c->wake, &c->lock);
        if (c->stopping)
            break;
        c->asked = 0;
        c->running = 1;
        unsigned gen = c->gen;
        uv_mutex_unlock(&c->lock);

        int log = 0, copied = 0;
        int src = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &copied);

        uv_mutex_lock(&c->lock);
        c->running = 0;
        c->passes++;
        if (src == SQLITE_OK) {
            c->done_gen = gen;
            c->done_frames = copied;
        }
    }
    uv_mutex_unlock(&c->lock);
}

int luar_sq_checkpointer_start(luar_sq_t *s, luar_buf_t *err)
{
    luar_sq_ckpt_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return LUAR_ENOMEM;
    int src = sqlite3_open_v2(s->path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (src == SQLITE_OK)
        src = sqlite3_exec(c->db, "PRAGMA synchronous = FULL", NULL, NULL, NULL);
    if (src != SQLITE_OK) {
        luar_buf_appendf(err, "%s: cannot open the checkpointer's connection: %s", s->path,
                         c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(src));
        sqlite3_close(c->db);
        free(c);
        return LUAR_EIO;
    }
    if (uv_mutex_init(&c->lock) != 0) {
        sqlite3_close(c->db);
        free(c);
        return LUAR_ENOMEM;
    }
    if (uv_cond_init(&c->wake) != 0 || uv_thread_create(&c->thread, ckpt_main, c) != 0) {
        luar_buf_appendf(err, "%s: cannot start the checkpointer thread", s->path);
        uv_mutex_destroy(&c->lock);
        sqlite3_close(c->db);
        free(c);
        return LUAR_EIO;
    }
    /* From now on the writer's connection checkpoints only when told to (this file). */
    sqlite3_wal_hook(s->db, on_wal_commit, c);
    s->ckpt = c;
    return 0;
}

/* The writer checkpoints itself: whatever is left, then its next transaction restarts the
 * WAL. */
static void catch_up(luar_sq_t *s, luar_sq_ckpt_t *c)
{
    int log = 0, copied = 0;
    int src = sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &copied);
    uv_mutex_lock(&c->lock);
    c->catchups++;
    if (src == SQLITE_OK) {
        c->done_gen = c->gen;
        c->done_frames = copied;
    }
    uv_mutex_unlock(&c->lock);
}

void luar_sq_checkpoint_after_commit(luar_sq_t *s)
{
    luar_sq_ckpt_t *c = s->ckpt;
    if (c == NULL)
        return;
    int frames = c->wal_frames;
    if (frames < c->prev_frames) {
        /* The WAL restarted: what earlier passes copied belongs to the old one. */
        uv_mutex_lock(&c->lock);
        c->gen++;
        uv_mutex_unlock(&c->lock);
    }
    c->prev_frames = frames;
    if (frames < CKPT_SOFT)
        return;
    uv_mutex_lock(&c->lock);
    int busy = c->running || c->asked;
    int left = c->done_gen == c->gen ? frames - c->done_frames : frames;
    int ask = !busy && left > CKPT_CATCHUP && frames < CKPT_HARD;
    if (ask) {
        c->asked = 1;
        uv_cond_signal(&c->wake);
    }
    uv_mutex_unlock(&c->lock);
    /* left == 0: all copied already; the next transaction restarts the WAL by itself. */
    if (!busy && !ask && left > 0 && frames >= CKPT_CATCHUP_AT)
        catch_up(s, c);
}

void luar_sq_checkpointer_stop(luar_sq_t *s)
{
    luar_sq_ckpt_t *c = s->ckpt;
    if (c == NULL)
        return;
    uv_mutex_lock(&c->lock);
    c->stopping = 1;
    uv_cond_signal(&c->wake);
    uv_mutex_unlock(&c->lock);
    uv_thread_join(&c->thread);
    if (s->db != NULL)
        sqlite3_wal_hook(s->db, NULL, NULL);
    uv_cond_destroy(&c->wake);
    uv_mutex_destroy(&c->lock);
    /* Closed before the writer's connection: the last one to close checkpoints the whole
     * WAL and removes it, as before. */
    sqlite3_close(c->db);
    free(c);
    s->ckpt = NULL;
}

void luar_sq_checkpoint_stats(luar_sq_t *s, uint64_t *passes, uint64_t *catchups)
{
    luar_sq_ckpt_t *c = s->ckpt;
    *passes = *catchups = 0;
    if (c == NULL)
        return;
    uv_mutex_lock(&c->lock);
    *passes = c->passes;
    *catchups = c->catchups;
    uv_mutex_unlock(&c->lock);
}
