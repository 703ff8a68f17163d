/*
 * The queue backend contract suite (host/queue/queue.h).
 *
 * The contract tests are written once against luar_queue_t and a factory (backend_t):
 * `fresh` opens an empty backend, `again` opens a second handle on the same one (another
 * process would see the same). main() runs them against SQLite in a mkdtemp() directory;
 * the Redis backend runs the same run_contract() with its own factory: its test file
 * defines QUEUE_CONTRACT_NO_MAIN, includes this file and calls run_contract(&redis).
 * After them come the SQLite-only tests: group commit, schema version, several processes,
 * failing disks.
 *
 * Every wait runs the uv loop until a callback sets a flag, bounded by a deadline; time
 * moves only through the test clock (test_now), except for cache ttls, which a server
 * keeps by its own clock: those tests move the test clock and let as much real time pass
 * (let_time_pass).
 */
#include "common/buf.h"
#include "common/error.h"
#include "queue/queue.h"
#include "queue/sqlite.h"
#include "test.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

/* ---- world -------------------------------------------------------------------------- */

typedef struct backend {
    const char *name;
    luar_queue_t *(*fresh)(void); /* an empty backend */
    luar_queue_t *(*again)(void); /* another handle on the last fresh one */
    int cache_in_process;         /* each handle has its own cache (SQLite); 0: shared */
} backend_t;

static uv_loop_t loop;
static const backend_t *B;
static double test_now = 1700000000.0;

static double test_clock(void *arg)
{
    (void)arg;
    return test_now;
}

/* The factory's handles, on the test clock. */
static luar_queue_t *open_fresh(void)
{
    luar_queue_t *q = B->fresh();
    luar_queue_set_clock(q, test_clock, NULL);
    return q;
}

static luar_queue_t *open_again(void)
{
    luar_queue_t *q = B->again();
    luar_queue_set_clock(q, test_clock, NULL);
    return q;
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

/* Runs the loop until *flag is set or 20 s pass; returns the flag. */
static int wait_for(const int *flag)
{
    uv_timer_t tick;
    uv_timer_init(&loop, &tick);
    uv_timer_start(&tick, on_tick, 20, 20);
    uint64_t deadline = uv_hrtime() + 20000000000ull;
    while (!*flag && uv_hrtime() < deadline)
        uv_run(&loop, UV_RUN_ONCE);
    uv_timer_stop(&tick);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    if (!*flag)
        fprintf(stderr, "timed out waiting for a callback\n");
    return *flag;
}

static void on_closed(void *arg)
{
    *(int *)arg = 1;
}

static void close_q(luar_queue_t *q)
{
    int closed = 0;
    luar_queue_close(q, on_closed, &closed);
    CHECK(wait_for(&closed));
}

/* ---- results, copied out of callbacks ----------------------------------------------- */

#define NUL_STR "<null>"

typedef struct tjob {
    char id[40];
    char name[64], queue[64], args[256], key[64], owner[64];
    char result[256], last_error[256], traceback[256], trace[64];
    int priority, state, attempt, max_attempts;
    double enqueued_at, run_at, started_at, finished_at, lease_expires_at, expires_at;
} tjob_t;

typedef struct res {
    int done, rc, duplicate;
    size_t n; /* ids or jobs */
    char (*ids)[40];
    tjob_t *jobs;
    char cursor[40]; /* "" at the end */
    size_t count, count2;
    double when;
    int64_t counts[8][LUAR_JOB_STATES];
    char count_queues[8][32];
    size_t ncounts;
} res_t;

static void res_free(res_t *r)
{
    free(r->ids);
    free(r->jobs);
    memset(r, 0, sizeof *r);
}

static void cp(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src ? src : NUL_STR);
}

static void copy_job(tjob_t *d, const luar_job_t *j)
{
    cp(d->id, sizeof d->id, j->id);
    cp(d->name, sizeof d->name, j->name);
    cp(d->queue, sizeof d->queue, j->queue);
    cp(d->args, sizeof d->args, j->args);
    cp(d->key, sizeof d->key, j->key);
    cp(d->owner, sizeof d->owner, j->owner);
    cp(d->result, sizeof d->result, j->result);
    cp(d->last_error, sizeof d->last_error, j->last_error);
    cp(d->traceback, sizeof d->traceback, j->traceback);
    cp(d->trace, sizeof d->trace, j->trace);
    d->priority = j->priority;
    d->state = j->state;
    d->attempt = j->attempt;
    d->max_attempts = j->max_attempts;
    d->enqueued_at = j->enqueued_at;
    d->run_at = j->run_at;
    d->started_at = j->started_at;
    d->finished_at = j->finished_at;
    d->lease_expires_at = j->lease_expires_at;
    d->expires_at = j->expires_at;
}

static void keep_ids(res_t *r, const char *const *ids, size_t n)
{
    r->n = n;
    r->ids = calloc(n ? n : 1, sizeof *r->ids);
    for (size_t i = 0; i < n; i++)
        cp(r->ids[i], sizeof r->ids[i], ids[i]);
}

static void keep_jobs(res_t *r, const luar_job_t *jobs, size_t n)
{
    r->n = n;
    r->jobs = calloc(n ? n : 1, sizeof *r->jobs);
    for (size_t i = 0; i < n; i++)
        copy_job(&r->jobs[i], &jobs[i]);
}

static void on_enqueued(void *arg, int rc, const char *const *ids, size_t n, int duplicate)
{
    res_t *r = arg;
    r->rc = rc;
    r->duplicate = duplicate;
    keep_ids(r, ids, n);
    r->done = 1;
}

static void on_jobs(void *arg, int rc, const luar_job_t *jobs, size_t n)
{
    res_t *r = arg;
    r->rc = rc;
    keep_jobs(r, jobs, n);
    r->done = 1;
}

static void on_ids(void *arg, int rc, const char *const *ids, size_t n)
{
    res_t *r = arg;
    r->rc = rc;
    keep_ids(r, ids, n);
    r->done = 1;
}

static void on_done(void *arg, int rc)
{
    res_t *r = arg;
    r->rc = rc;
    r->done = 1;
}

static void on_swept(void *arg, int rc, size_t reclaimed, size_t expired)
{
    res_t *r = arg;
    r->rc = rc;
    r->count = reclaimed;
    r->count2 = expired;
    r->done = 1;
}

static void on_count(void *arg, int rc, size_t count)
{
    res_t *r = arg;
    r->rc = rc;
    r->count = count;
    r->done = 1;
}

static void on_list(void *arg, int rc, const luar_job_t *jobs, size_t n, const char *cursor)
{
    res_t *r = arg;
    r->rc = rc;
    keep_jobs(r, jobs, n);
    snprintf(r->cursor, sizeof r->cursor, "%s", cursor ? cursor : "");
    r->done = 1;
}

static void on_counts(void *arg, int rc, const luar_queue_count_t *counts, size_t n)
{
    res_t *r = arg;
    r->rc = rc;
    for (size_t i = 0; i < n && i < 8; i++) {
        cp(r->count_queues[i], sizeof r->count_queues[i], counts[i].queue);
        memcpy(r->counts[i], counts[i].counts, sizeof counts[i].counts);
    }
    r->ncounts = n;
    r->done = 1;
}

static void on_time(void *arg, int rc, double when)
{
    res_t *r = arg;
    r->rc = rc;
    r->when = when;
    r->done = 1;
}

/* ---- synchronous wrappers ----------------------------------------------------------- */

/* Enqueues specs; the ids land in r. Returns the rc (sync failure or callback rc). */
static int enqueue_batch(luar_queue_t *q, const luar_job_spec_t *specs, size_t n,
                         const char *dedupe, double ttl, res_t *r)
{
    memset(r, 0, sizeof *r);
    int rc = luar_queue_enqueue(q, specs, n, dedupe, ttl, on_enqueued, r);
    if (rc)
        return rc;
    CHECK(wait_for(&r->done));
    return r->rc;
}

/* Enqueues one job named `name` in `queue`; copies its id into id (40 bytes). */
static int enqueue1(luar_queue_t *q, const luar_job_spec_t *spec, char *id)
{
    res_t r;
    int rc = enqueue_batch(q, spec, 1, NULL, 0, &r);
    if (rc == 0 && r.n == 1)
        snprintf(id, 40, "%s", r.ids[0]);
    res_free(&r);
    return rc;
}

static int enqueue_named(luar_queue_t *q, const char *name, const char *queue, char *id)
{
    luar_job_spec_t s = {.name = name, .queue = queue};
    return enqueue1(q, &s, id);
}

static int claim(luar_queue_t *q, const char *queue, size_t max, const char *owner, double lease,
                 res_t *r)
{
    memset(r, 0, sizeof *r);
    int rc = luar_queue_claim(q, queue, max, owner, lease, on_jobs, r);
    if (rc)
        return rc;
    CHECK(wait_for(&r->done));
    return r->rc;
}

/* Claims exactly one job of any queue for `owner`, lease 30; copies it into *job. */
static int claim1(luar_queue_t *q, const char *owner, tjob_t *job)
{
    res_t r;
    int rc = claim(q, NULL, 1, owner, 30, &r);
    if (rc == 0 && r.n != 1)
        rc = LUAR_ENOTFOUND;
    if (rc == 0)
        *job = r.jobs[0];
    res_free(&r);
    return rc;
}

static int get(luar_queue_t *q, const char *id, tjob_t *job)
{
    res_t r = {0};
    int rc = luar_queue_get(q, id, on_jobs, &r);
    if (rc)
        return rc;
    CHECK(wait_for(&r.done));
    rc = r.rc;
    if (rc == 0 && r.n == 1)
        *job = r.jobs[0];
    res_free(&r);
    return rc;
}

/* The state of job `id`, or -1 when it is gone. */
static int state_of(luar_queue_t *q, const char *id)
{
    tjob_t j;
    return get(q, id, &j) == 0 ? j.state : -1;
}

static int complete(luar_queue_t *q, const char *id, const char *owner, const char *result,
                    double ttl)
{
    res_t r = {0};
    int rc = luar_queue_complete(q, id, owner, result, ttl, on_done, &r);
    if (rc == 0 && wait_for(&r.done))
        rc = r.rc;
    return rc;
}

static int fail(luar_queue_t *q, const char *id, const char *owner, const char *error,
                const char *tb, double retry_at, double dead_ttl)
{
    res_t r = {0};
    int rc = luar_queue_fail(q, id, owner, error, tb, retry_at, dead_ttl, on_done, &r);
    if (rc == 0 && wait_for(&r.done))
        rc = r.rc;
    return rc;
}

static int release(luar_queue_t *q, const char *id, const char *owner, double run_at)
{
    res_t r = {0};
    int rc = luar_queue_release(q, id, owner, run_at, on_done, &r);
    if (rc == 0 && wait_for(&r.done))
        rc = r.rc;
    return rc;
}

static int retry(luar_queue_t *q, const char *id)
{
    res_t r = {0};
    int rc = luar_queue_retry(q, id, on_done, &r);
    if (rc == 0 && wait_for(&r.done))
        rc = r.rc;
    return rc;
}

static int delete_job(luar_queue_t *q, const char *id)
{
    res_t r = {0};
    int rc = luar_queue_delete(q, id, on_done, &r);
    if (rc == 0 && wait_for(&r.done))
        rc = r.rc;
    return rc;
}

static int sweep(luar_queue_t *q, size_t *reclaimed, size_t *expired)
{
    res_t r = {0};
    int rc = luar_queue_sweep(q, on_swept, &r);
    if (rc == 0 && wait_for(&r.done))
        rc = r.rc;
    *reclaimed = r.count;
    *expired = r.count2;
    return rc;
}

static int heartbeat(luar_queue_t *q, const char *const *ids, size_t n, const char *owner,
                     double lease, res_t *r)
{
    memset(r, 0, sizeof *r);
    int rc = luar_queue_heartbeat(q, ids, n, owner, lease, on_ids, r);
    if (rc)
        return rc;
    CHECK(wait_for(&r->done));
    return r->rc;
}

static int list(luar_queue_t *q, const luar_job_filter_t *f, res_t *r)
{
    memset(r, 0, sizeof *r);
    int rc = luar_queue_list(q, f, on_list, r);
    if (rc)
        return rc;
    CHECK(wait_for(&r->done));
    return r->rc;
}

static int counts(luar_queue_t *q, res_t *r)
{
    memset(r, 0, sizeof *r);
    int rc = luar_queue_counts(q, on_counts, r);
    if (rc)
        return rc;
    CHECK(wait_for(&r->done));
    return r->rc;
}

/* Jobs of `queue` in `state` according to counts (0 when the queue is not listed). */
static int64_t count_of(luar_queue_t *q, const char *queue, int state)
{
    res_t r;
    int64_t v = 0;
    CHECK_EQ_INT(counts(q, &r), 0);
    for (size_t i = 0; i < r.ncounts && i < 8; i++) {
        if (strcmp(r.count_queues[i], queue) == 0)
            v = r.counts[i][state];
    }
    return v;
}

static double next_due(luar_queue_t *q)
{
    res_t r = {0};
    CHECK_EQ_INT(luar_queue_next_due(q, on_time, &r), 0);
    CHECK(wait_for(&r.done));
    CHECK_EQ_INT(r.rc, 0);
    return r.when;
}

static int count_op(int (*fn)(luar_queue_t *, const luar_job_filter_t *, luar_queue_count_cb,
                              void *),
                    luar_queue_t *q, const luar_job_filter_t *f, size_t *count)
{
    res_t r = {0};
    int rc = fn(q, f, on_count, &r);
    if (rc == 0 && wait_for(&r.done))
        rc = r.rc;
    *count = r.count;
    return rc;
}

/* Makes a job of `queue` dead (claimed by "w", failed with no retry); its id into id. */
static void make_dead(luar_queue_t *q, const char *queue, char *id)
{
    res_t r;
    CHECK_EQ_INT(enqueue_named(q, "doomed", queue, id), 0);
    CHECK_EQ_INT(claim(q, queue, 1, "w", 30, &r), 0);
    CHECK_EQ_INT(r.n, 1);
    if (r.n == 1)
        CHECK_EQ_STR(r.jobs[0].id, id);
    res_free(&r);
    CHECK_EQ_INT(fail(q, id, "w", "boom", NULL, 0, 1000), 0);
}

static int cmp_ids(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

/* Sorts n ids and returns how many appear more than once. */
static size_t duplicates(char (*ids)[40], size_t n)
{
    size_t dup = 0;
    qsort(ids, n, sizeof *ids, cmp_ids);
    for (size_t i = 1; i < n; i++)
        dup += strcmp(ids[i - 1], ids[i]) == 0;
    return dup;
}

/* ---- rate limits -------------------------------------------------------------------- */

typedef struct rate_res {
    int done, rc;
    luar_gcra_result_t r;
} rate_res_t;

static void on_rate(void *arg, int rc, const luar_gcra_result_t *result)
{
    rate_res_t *r = arg;
    r->rc = rc;
    if (result)
        r->r = *result;
    r->done = 1;
}

/* Submits `n` checks of `key` at once (they may share a batch), alternating between the
 * handles in qs[0..nq-1], waits for all, and returns how many were allowed (-1 on an
 * error). Results land in out[] when not NULL. */
static int rate_burst(luar_queue_t **qs, int nq, const char *key, const char *limit, int n,
                      rate_res_t *out)
{
    luar_gcra_t g;
    CHECK_EQ_INT(luar_gcra_parse(&g, limit), 0);
    rate_res_t *r = calloc((size_t)n, sizeof *r);
    int allowed = 0;
    for (int i = 0; i < n; i++)
        CHECK_EQ_INT(luar_queue_rate_check(qs[i % nq], key, &g, 1, on_rate, &r[i]), 0);
    for (int i = 0; i < n; i++) {
        CHECK(wait_for(&r[i].done));
        if (r[i].rc)
            allowed = -1;
        else if (allowed >= 0)
            allowed += r[i].r.allowed;
    }
    if (out)
        memcpy(out, r, (size_t)n * sizeof *r);
    free(r);
    return allowed;
}

/* ---- the contract ------------------------------------------------------------------- */

TEST(contract_enqueue_defaults_and_time_ordered_ids)
{
    luar_queue_t *q = open_fresh();
    double t0 = test_now;
    char ids[6][40];
    for (int i = 0; i < 5; i++) {
        if (i == 3)
            test_now += 0.5;
        CHECK_EQ_INT(enqueue_named(q, "send", NULL, ids[i]), 0);
        CHECK_EQ_INT(strlen(ids[i]) > 0 && strlen(ids[i]) < 40, 1);
    }
    for (int i = 1; i < 5; i++)
        CHECK(strcmp(ids[i - 1], ids[i]) < 0);

    luar_job_spec_t specs[3] = {{.name = "a"}, {.name = "b"}, {.name = "c"}};
    res_t r;
    CHECK_EQ_INT(enqueue_batch(q, specs, 3, NULL, 0, &r), 0);
    CHECK_EQ_INT(r.n, 3);
    CHECK_EQ_INT(r.duplicate, 0);
    if (r.n == 3) {
        CHECK(strcmp(ids[4], r.ids[0]) < 0);
        CHECK(strcmp(r.ids[0], r.ids[1]) < 0);
        CHECK(strcmp(r.ids[1], r.ids[2]) < 0);
    }
    res_free(&r);

    tjob_t j;
    CHECK_EQ_INT(get(q, ids[0], &j), 0);
    CHECK_EQ_STR(j.id, ids[0]);
    CHECK_EQ_STR(j.name, "send");
    CHECK_EQ_STR(j.queue, "default");
    CHECK_EQ_STR(j.args, "null");
    CHECK_EQ_STR(j.key, NUL_STR);
    CHECK_EQ_STR(j.owner, NUL_STR);
    CHECK_EQ_STR(j.result, NUL_STR);
    CHECK_EQ_STR(j.last_error, NUL_STR);
    CHECK_EQ_STR(j.traceback, NUL_STR);
    CHECK_EQ_STR(j.trace, NUL_STR);
    CHECK_EQ_INT(j.state, LUAR_JOB_QUEUED);
    CHECK_EQ_INT(j.priority, 0);
    CHECK_EQ_INT(j.attempt, 0);
    CHECK_EQ_INT(j.max_attempts, 0);
    CHECK(j.enqueued_at == t0);
    CHECK(j.run_at == t0);
    CHECK(j.started_at == 0 && j.finished_at == 0 && j.lease_expires_at == 0);
    CHECK(j.expires_at == 0);

    luar_job_spec_t s = {
        .name = "x", .queue = "mail", .args = "{\"to\":\"a@b\"}", .priority = 7, .max_attempts = 4};
    CHECK_EQ_INT(enqueue1(q, &s, ids[5]), 0);
    CHECK_EQ_INT(get(q, ids[5], &j), 0);
    CHECK_EQ_STR(j.queue, "mail");
    CHECK_EQ_STR(j.args, "{\"to\":\"a@b\"}");
    CHECK_EQ_INT(j.priority, 7);
    CHECK_EQ_INT(j.max_attempts, 4);
    CHECK_EQ_INT(get(q, "00000000000000000000000000", &j), LUAR_ENOTFOUND);
    close_q(q);
}

/* A job keeps the trace context of the span that enqueued it, through claims and retries. */
TEST(contract_job_keeps_the_trace_it_was_enqueued_with)
{
    static const char tp[] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    luar_queue_t *q = open_fresh();
    char id[40], plain[40];
    luar_job_spec_t s = {.name = "traced", .trace = tp};
    CHECK_EQ_INT(enqueue1(q, &s, id), 0);
    CHECK_EQ_INT(enqueue_named(q, "untraced", NULL, plain), 0);
    tjob_t j;
    CHECK_EQ_INT(get(q, id, &j), 0);
    CHECK_EQ_STR(j.trace, tp);
    CHECK_EQ_INT(get(q, plain, &j), 0);
    CHECK_EQ_STR(j.trace, NUL_STR);
    res_t r;
    CHECK_EQ_INT(claim(q, NULL, 2, "w", 30, &r), 0);
    CHECK_EQ_INT(r.n, 2);
    for (size_t i = 0; i < r.n; i++)
        CHECK_EQ_STR(r.jobs[i].trace, strcmp(r.jobs[i].id, id) == 0 ? tp : NUL_STR);
    res_free(&r);
    close_q(q);
}

TEST(contract_bad_arguments_fail_synchronously_without_callback)
{
    luar_queue_t *q = open_fresh();
    res_t r = {0};
    luar_job_spec_t noname = {.name = NULL};
    luar_job_spec_t negative = {.name = "x", .max_attempts = -1};
    luar_job_filter_t bad_state = {.state = 9};
    luar_job_filter_t no_state = {.state = -1};
    CHECK_EQ_INT(luar_queue_enqueue(q, &noname, 1, NULL, 0, on_enqueued, &r), LUAR_EINVAL);
    CHECK_EQ_INT(luar_queue_enqueue(q, &negative, 1, NULL, 0, on_enqueued, &r), LUAR_EINVAL);
    CHECK_EQ_INT(luar_queue_claim(q, NULL, 0, "w", 30, on_jobs, &r), LUAR_EINVAL);
    CHECK_EQ_INT(luar_queue_claim(q, NULL, 1, NULL, 30, on_jobs, &r), LUAR_EINVAL);
    CHECK_EQ_INT(luar_queue_claim(q, NULL, 1, "w", 0, on_jobs, &r), LUAR_EINVAL);
    CHECK_EQ_INT(luar_queue_complete(q, NULL, "w", NULL, 1, on_done, &r), LUAR_EINVAL);
    CHECK_EQ_INT(luar_queue_fail(q, "x", "w", NULL, NULL, -1, 1, on_done, &r), LUAR_EINVAL);
    CHECK_EQ_INT(luar_queue_list(q, &bad_state, on_list, &r), LUAR_EINVAL);
    CHECK_EQ_INT(luar_queue_purge(q, &no_state, on_count, &r), LUAR_EINVAL);
    CHECK_EQ_INT(luar_queue_purge(q, NULL, on_count, &r), LUAR_EINVAL);
    CHECK_EQ_INT(luar_queue_get(q, "x", NULL, NULL), LUAR_EINVAL);
    uv_run(&loop, UV_RUN_NOWAIT);
    CHECK_EQ_INT(r.done, 0);
    close_q(q);
}

TEST(contract_unique_key_returns_existing_job_until_finished)
{
    luar_queue_t *q = open_fresh();
    luar_job_spec_t s = {.name = "welcome", .queue = "w", .key = "welcome:1"};
    char a[40], b[40], c[40], d[40];
    CHECK_EQ_INT(enqueue1(q, &s, a), 0);
    CHECK_EQ_INT(enqueue1(q, &s, b), 0);
    CHECK_EQ_STR(a, b);
    tjob_t j;
    CHECK_EQ_INT(get(q, a, &j), 0);
    CHECK_EQ_STR(j.key, "welcome:1");

    /* Two specs with one key in one batch: one job. */
    luar_job_spec_t two[2] = {{.name = "x", .key = "k2"}, {.name = "x", .key = "k2"}};
    res_t r;
    CHECK_EQ_INT(enqueue_batch(q, two, 2, NULL, 0, &r), 0);
    CHECK_EQ_INT(r.n, 2);
    if (r.n == 2)
        CHECK_EQ_STR(r.ids[0], r.ids[1]);
    res_free(&r);

    /* Running is not finished; retrying neither. */
    CHECK_EQ_INT(claim(q, "w", 1, "w1", 30, &r), 0);
    CHECK_EQ_INT(r.n, 1);
    res_free(&r);
    CHECK_EQ_INT(enqueue1(q, &s, b), 0);
    CHECK_EQ_STR(a, b);
    CHECK_EQ_INT(fail(q, a, "w1", "e", NULL, test_now + 5, 0), 0);
    CHECK_EQ_INT(enqueue1(q, &s, b), 0);
    CHECK_EQ_STR(a, b);
    test_now += 5;
    CHECK_EQ_INT(claim(q, "w", 1, "w1", 30, &r), 0);
    res_free(&r);
    CHECK_EQ_INT(complete(q, a, "w1", NULL, 60), 0);

    /* Finished: a new job. */
    CHECK_EQ_INT(enqueue1(q, &s, c), 0);
    CHECK(strcmp(a, c) != 0);
    CHECK_EQ_INT(state_of(q, c), LUAR_JOB_QUEUED);
    CHECK_EQ_INT(state_of(q, a), LUAR_JOB_SUCCEEDED);

    /* Dead is finished too. */
    CHECK_EQ_INT(claim(q, "w", 1, "w2", 30, &r), 0);
    res_free(&r);
    CHECK_EQ_INT(fail(q, c, "w2", "e", NULL, 0, 60), 0);
    CHECK_EQ_INT(enqueue1(q, &s, d), 0);
    CHECK(strcmp(d, c) != 0 && strcmp(d, a) != 0);
    close_q(q);
}

TEST(contract_dedupe_key_enqueues_a_batch_once_per_ttl)
{
    luar_queue_t *q = open_fresh();
    luar_job_spec_t subs[3] = {{.name = "sub1"}, {.name = "sub2"}, {.name = "sub3"}};
    res_t r;
    CHECK_EQ_INT(enqueue_batch(q, subs, 3, "evt:1", 60, &r), 0);
    CHECK_EQ_INT(r.duplicate, 0);
    CHECK_EQ_INT(r.n, 3);
    res_free(&r);
    CHECK_EQ_INT(enqueue_batch(q, subs, 3, "evt:1", 60, &r), 0);
    CHECK_EQ_INT(r.duplicate, 1);
    CHECK_EQ_INT(r.n, 0);
    res_free(&r);
    CHECK_EQ_INT(count_of(q, "default", LUAR_JOB_QUEUED), 3);

    test_now += 30;
    CHECK_EQ_INT(enqueue_batch(q, subs, 3, "evt:1", 60, &r), 0);
    CHECK_EQ_INT(r.duplicate, 1);
    res_free(&r);
    CHECK_EQ_INT(enqueue_batch(q, subs, 1, "evt:2", 60, &r), 0);
    CHECK_EQ_INT(r.duplicate, 0);
    res_free(&r);

    test_now += 31; /* evt:1's TTL has passed */
    CHECK_EQ_INT(enqueue_batch(q, subs, 3, "evt:1", 60, &r), 0);
    CHECK_EQ_INT(r.duplicate, 0);
    CHECK_EQ_INT(r.n, 3);
    res_free(&r);
    CHECK_EQ_INT(count_of(q, "default", LUAR_JOB_QUEUED), 7);
    /* Taken again, the key holds for a new TTL from then. */
    test_now += 59;
    CHECK_EQ_INT(enqueue_batch(q, subs, 3, "evt:1", 60, &r), 0);
    CHECK_EQ_INT(r.duplicate, 1);
    res_free(&r);
    CHECK_EQ_INT(count_of(q, "default", LUAR_JOB_QUEUED), 7);

    /* A key alone, no jobs: the cron tick claim. The first caller wins. */
    CHECK_EQ_INT(enqueue_batch(q, NULL, 0, "cron:report:1700000100", 3600, &r), 0);
    CHECK_EQ_INT(r.duplicate, 0);
    res_free(&r);
    CHECK_EQ_INT(enqueue_batch(q, NULL, 0, "cron:report:1700000100", 3600, &r), 0);
    CHECK_EQ_INT(r.duplicate, 1);
    res_free(&r);
    close_q(q);
}

TEST(contract_delayed_job_is_not_claimable_before_run_at)
{
    luar_queue_t *q = open_fresh();
    double due = test_now + 30;
    luar_job_spec_t s = {.name = "later", .run_at = due};
    char id[40], past[40];
    CHECK_EQ_INT(enqueue1(q, &s, id), 0);
    tjob_t j;
    CHECK_EQ_INT(get(q, id, &j), 0);
    CHECK_EQ_INT(j.state, LUAR_JOB_SCHEDULED);
    CHECK(j.run_at == due);
    CHECK(next_due(q) == due);
    res_t r;
    CHECK_EQ_INT(claim(q, NULL, 10, "w", 30, &r), 0);
    CHECK_EQ_INT(r.n, 0);
    res_free(&r);
    test_now = due - 0.25;
    CHECK_EQ_INT(claim(q, NULL, 10, "w", 30, &r), 0);
    CHECK_EQ_INT(r.n, 0);
    res_free(&r);
    test_now = due;
    CHECK_EQ_INT(claim(q, NULL, 10, "w", 30, &r), 0);
    CHECK_EQ_INT(r.n, 1);
    if (r.n == 1) {
        CHECK_EQ_STR(r.jobs[0].id, id);
        CHECK_EQ_INT(r.jobs[0].state, LUAR_JOB_RUNNING);
        CHECK_EQ_INT(r.jobs[0].attempt, 1);
    }
    res_free(&r);
    CHECK(next_due(q) == 0);

    /* A run_at in the past is simply due. */
    s.run_at = test_now - 10;
    CHECK_EQ_INT(enqueue1(q, &s, past), 0);
    CHECK_EQ_INT(state_of(q, past), LUAR_JOB_QUEUED);
    close_q(q);
}

TEST(contract_claim_takes_highest_priority_then_oldest)
{
    luar_queue_t *q = open_fresh();
    char low[40], mid[40], high_old[40], high_new[40], urgent_later[40];
    luar_job_spec_t s = {.name = "p"};
    s.priority = 0;
    CHECK_EQ_INT(enqueue1(q, &s, low), 0);
    test_now += 1;
    s.priority = 5;
    CHECK_EQ_INT(enqueue1(q, &s, high_old), 0);
    test_now += 1;
    s.priority = 1;
    CHECK_EQ_INT(enqueue1(q, &s, mid), 0);
    test_now += 1;
    s.priority = 5;
    CHECK_EQ_INT(enqueue1(q, &s, high_new), 0);
    s.priority = 9;
    s.run_at = test_now + 100;
    CHECK_EQ_INT(enqueue1(q, &s, urgent_later), 0);
    res_t r;
    CHECK_EQ_INT(claim(q, NULL, 10, "w", 30, &r), 0);
    CHECK_EQ_INT(r.n, 4);
    if (r.n == 4) {
        CHECK_EQ_STR(r.jobs[0].id, high_old);
        CHECK_EQ_STR(r.jobs[1].id, high_new);
        CHECK_EQ_STR(r.jobs[2].id, mid);
        CHECK_EQ_STR(r.jobs[3].id, low);
    }
    res_free(&r);
    close_q(q);
}

TEST(contract_claim_respects_max_and_queue)
{
    luar_queue_t *q = open_fresh();
    char id[40];
    for (int i = 0; i < 5; i++)
        CHECK_EQ_INT(enqueue_named(q, "ja", "a", id), 0);
    for (int i = 0; i < 2; i++)
        CHECK_EQ_INT(enqueue_named(q, "jb", "b", id), 0);
    res_t r;
    CHECK_EQ_INT(claim(q, "b", 10, "wb", 45, &r), 0);
    CHECK_EQ_INT(r.n, 2);
    for (size_t i = 0; i < r.n; i++) {
        CHECK_EQ_STR(r.jobs[i].queue, "b");
        CHECK_EQ_STR(r.jobs[i].owner, "wb");
        CHECK_EQ_INT(r.jobs[i].state, LUAR_JOB_RUNNING);
        CHECK_EQ_INT(r.jobs[i].attempt, 1);
        CHECK(r.jobs[i].started_at == test_now);
        CHECK(r.jobs[i].lease_expires_at == test_now + 45);
    }
    res_free(&r);
    CHECK_EQ_INT(claim(q, "b", 10, "wb", 45, &r), 0);
    CHECK_EQ_INT(r.n, 0);
    res_free(&r);
    CHECK_EQ_INT(claim(q, NULL, 3, "w", 30, &r), 0);
    CHECK_EQ_INT(r.n, 3);
    res_free(&r);
    CHECK_EQ_INT(claim(q, NULL, 10, "w", 30, &r), 0);
    CHECK_EQ_INT(r.n, 2);
    res_free(&r);
    CHECK_EQ_INT(claim(q, NULL, 10, "w", 30, &r), 0);
    CHECK_EQ_INT(r.n, 0);
    res_free(&r);
    CHECK_EQ_INT(count_of(q, "a", LUAR_JOB_RUNNING), 5);
    close_q(q);
}

TEST(contract_two_claims_in_one_batch_never_share_a_job)
{
    luar_queue_t *q = open_fresh();
    luar_job_spec_t specs[20];
    for (int i = 0; i < 20; i++)
        specs[i] = (luar_job_spec_t){.name = "j"};
    res_t r, r1 = {0}, r2 = {0};
    CHECK_EQ_INT(enqueue_batch(q, specs, 20, NULL, 0, &r), 0);
    res_free(&r);
    /* Both submitted before the loop runs: they share a batch (or follow each other). */
    CHECK_EQ_INT(luar_queue_claim(q, NULL, 15, "w1", 30, on_jobs, &r1), 0);
    CHECK_EQ_INT(luar_queue_claim(q, NULL, 15, "w2", 30, on_jobs, &r2), 0);
    CHECK(wait_for(&r1.done) && wait_for(&r2.done));
    CHECK_EQ_INT(r1.rc, 0);
    CHECK_EQ_INT(r2.rc, 0);
    CHECK_EQ_INT(r1.n + r2.n, 20);
    char ids[40][40];
    size_t n = 0;
    for (size_t i = 0; i < r1.n; i++) {
        CHECK_EQ_STR(r1.jobs[i].owner, "w1");
        memcpy(ids[n++], r1.jobs[i].id, 40);
    }
    for (size_t i = 0; i < r2.n; i++) {
        CHECK_EQ_STR(r2.jobs[i].owner, "w2");
        memcpy(ids[n++], r2.jobs[i].id, 40);
    }
    CHECK_EQ_INT(duplicates(ids, n), 0);
    res_free(&r1);
    res_free(&r2);
    close_q(q);
}

TEST(contract_two_handles_share_jobs_and_never_claim_one_twice)
{
    luar_queue_t *q1 = open_fresh();
    luar_queue_t *q2 = open_again();
    char id[40];
    CHECK_EQ_INT(enqueue_named(q2, "from2", "x", id), 0);
    res_t r;
    CHECK_EQ_INT(claim(q1, "x", 5, "h1", 30, &r), 0);
    CHECK_EQ_INT(r.n, 1);
    if (r.n == 1)
        CHECK_EQ_STR(r.jobs[0].id, id);
    res_free(&r);
    CHECK_EQ_INT(complete(q2, id, "h1", "1", 60), 0);
    CHECK_EQ_INT(state_of(q1, id), LUAR_JOB_SUCCEEDED);

    enum { JOBS = 200, ROUNDS = 40 };
    luar_job_spec_t *specs = calloc(JOBS, sizeof *specs);
    for (int i = 0; i < JOBS; i++)
        specs[i].name = "race";
    CHECK_EQ_INT(enqueue_batch(q1, specs, JOBS, NULL, 0, &r), 0);
    res_free(&r);
    free(specs);
    /* Each round both handles claim at once, racing for the same jobs. */
    res_t *claims = calloc(2 * ROUNDS, sizeof *claims);
    char(*ids)[40] = calloc(2 * ROUNDS * 7, sizeof *ids);
    size_t n = 0, by[2] = {0, 0};
    for (int i = 0; i < 2 * ROUNDS; i++) {
        if (i % 2 == 0) {
            CHECK_EQ_INT(luar_queue_claim(q1, NULL, 7, "h1", 30, on_jobs, &claims[i]), 0);
            CHECK_EQ_INT(luar_queue_claim(q2, NULL, 7, "h2", 30, on_jobs, &claims[i + 1]), 0);
        }
        CHECK(wait_for(&claims[i].done));
        CHECK_EQ_INT(claims[i].rc, 0);
        for (size_t k = 0; k < claims[i].n; k++)
            memcpy(ids[n++], claims[i].jobs[k].id, 40);
        by[i % 2] += claims[i].n;
        res_free(&claims[i]);
    }
    CHECK_EQ_INT(n, JOBS);
    CHECK_EQ_INT(duplicates(ids, n), 0);
    fprintf(stderr, "  two handles claimed %zu and %zu of %d\n", by[0], by[1], JOBS);
    free(ids);
    free(claims);
    close_q(q1);
    close_q(q2);
}

TEST(contract_heartbeat_extends_leases_and_reports_lost_ones)
{
    luar_queue_t *q = open_fresh();
    char a[40], b[40];
    CHECK_EQ_INT(enqueue_named(q, "long", NULL, a), 0);
    CHECK_EQ_INT(enqueue_named(q, "long", NULL, b), 0);
    res_t r;
    CHECK_EQ_INT(claim(q, NULL, 2, "w", 30, &r), 0);
    CHECK_EQ_INT(r.n, 2);
    res_free(&r);
    const char *both[2] = {a, b};
    test_now += 20;
    CHECK_EQ_INT(heartbeat(q, both, 2, "w", 30, &r), 0);
    CHECK_EQ_INT(r.n, 0);
    res_free(&r);
    tjob_t j;
    CHECK_EQ_INT(get(q, a, &j), 0);
    CHECK(j.lease_expires_at == test_now + 30);

    /* Another owner holds nothing; an unknown id is lost too. */
    double lease = j.lease_expires_at;
    const char *mixed[2] = {a, "nope"};
    CHECK_EQ_INT(heartbeat(q, mixed, 2, "intruder", 60, &r), 0);
    CHECK_EQ_INT(r.n, 2);
    res_free(&r);
    CHECK_EQ_INT(get(q, a, &j), 0);
    CHECK(j.lease_expires_at == lease);

    /* After the lease ends and a sweep reclaims them, the owner has lost both. */
    test_now += 31;
    size_t reclaimed, expired;
    CHECK_EQ_INT(sweep(q, &reclaimed, &expired), 0);
    CHECK_EQ_INT(reclaimed, 2);
    CHECK_EQ_INT(heartbeat(q, both, 2, "w", 30, &r), 0);
    CHECK_EQ_INT(r.n, 2);
    if (r.n == 2) {
        CHECK_EQ_STR(r.ids[0], a);
        CHECK_EQ_STR(r.ids[1], b);
    }
    res_free(&r);
    CHECK_EQ_INT(heartbeat(q, NULL, 0, "w", 30, &r), 0);
    CHECK_EQ_INT(r.n, 0);
    res_free(&r);
    close_q(q);
}

/*
 * Writes submitted together (one loop iteration: what a busy worker does, and what the Redis
 * backend sends as one batch) each get their own answer, as if sent one by one in order:
 * the second of two completions of one job is refused, a dedupe key or unique key taken by
 * the first of two enqueues holds for the second, a read submitted after them sees them.
 */
TEST(contract_writes_submitted_together_answer_each_in_order)
{
    luar_queue_t *q = open_fresh();
    char ids[4][40];
    for (int i = 0; i < 4; i++)
        CHECK_EQ_INT(enqueue_named(q, "t", "together", ids[i]), 0);
    res_t c;
    CHECK_EQ_INT(claim(q, "together", 4, "w", 30, &c), 0);
    CHECK_EQ_INT(c.n, 4);
    res_free(&c);

    luar_job_spec_t s = {.name = "u", .queue = "together", .key = "k1"};
    res_t r[12];
    memset(r, 0, sizeof r);
    CHECK_EQ_INT(luar_queue_complete(q, ids[0], "w", "{\"n\":1}", 60, on_done, &r[0]), 0);
    CHECK_EQ_INT(luar_queue_complete(q, ids[0], "w", NULL, 60, on_done, &r[1]), 0);
    CHECK_EQ_INT(luar_queue_complete(q, ids[1], "intruder", NULL, 60, on_done, &r[2]), 0);
    CHECK_EQ_INT(luar_queue_fail(q, ids[1], "w", "boom", NULL, test_now + 10, 0, on_done, &r[3]),
                 0);
    CHECK_EQ_INT(luar_queue_release(q, ids[2], "w", test_now, on_done, &r[4]), 0);
    CHECK_EQ_INT(luar_queue_enqueue(q, &s, 1, "d1", 60, on_enqueued, &r[6]), 0);
    CHECK_EQ_INT(luar_queue_enqueue(q, &s, 1, "d1", 60, on_enqueued, &r[7]), 0);
    CHECK_EQ_INT(luar_queue_enqueue(q, &s, 1, "d2", 60, on_enqueued, &r[8]), 0);
    CHECK_EQ_INT(luar_queue_fail(q, ids[3], "w", "last", NULL, 0, 60, on_done, &r[9]), 0);
    CHECK_EQ_INT(luar_queue_complete(q, ids[3], "w", NULL, 60, on_done, &r[10]), 0);
    for (int i = 0; i < 12; i++)
        CHECK(i == 5 || i == 11 || wait_for(&r[i].done));
    /* Reads once the writes answered (the contract: a read submitted after a write's
     * callback sees it). */
    CHECK_EQ_INT(luar_queue_get(q, ids[0], on_jobs, &r[5]), 0);
    CHECK_EQ_INT(luar_queue_get(q, ids[1], on_jobs, &r[11]), 0);
    CHECK(wait_for(&r[5].done));
    CHECK(wait_for(&r[11].done));
    CHECK_EQ_INT(r[0].rc, 0);
    CHECK_EQ_INT(r[1].rc, LUAR_ENOTFOUND);
    CHECK_EQ_INT(r[2].rc, LUAR_ENOTFOUND);
    CHECK_EQ_INT(r[3].rc, 0);
    CHECK_EQ_INT(r[4].rc, 0);
    CHECK_EQ_INT(r[5].rc, 0);
    CHECK_EQ_INT(r[5].n, 1);
    if (r[5].n == 1) {
        CHECK_EQ_INT(r[5].jobs[0].state, LUAR_JOB_SUCCEEDED);
        CHECK_EQ_STR(r[5].jobs[0].result, "{\"n\":1}");
        CHECK_EQ_STR(r[5].jobs[0].owner, NUL_STR);
    }
    CHECK_EQ_INT(r[6].rc, 0);
    CHECK_EQ_INT(r[6].duplicate, 0);
    CHECK_EQ_INT(r[6].n, 1);
    CHECK_EQ_INT(r[7].rc, 0);
    CHECK_EQ_INT(r[7].duplicate, 1); /* the first one's dedupe key, in the same batch */
    CHECK_EQ_INT(r[8].rc, 0);
    CHECK_EQ_INT(r[8].duplicate, 0);
    CHECK_EQ_INT(r[8].n, 1);
    if (r[6].n == 1 && r[8].n == 1)
        CHECK_EQ_STR(r[8].ids[0], r[6].ids[0]); /* unique key k1 held by the first */
    CHECK_EQ_INT(r[9].rc, 0);
    CHECK_EQ_INT(r[10].rc, LUAR_ENOTFOUND); /* dead already */
    CHECK_EQ_INT(r[11].rc, 0);
    if (r[11].n == 1) {
        CHECK_EQ_INT(r[11].jobs[0].state, LUAR_JOB_RETRYING);
        CHECK_EQ_STR(r[11].jobs[0].last_error, "boom");
        CHECK_EQ_STR(r[11].jobs[0].owner, NUL_STR);
    }
    tjob_t j;
    CHECK_EQ_INT(get(q, ids[2], &j), 0);
    CHECK_EQ_INT(j.state, LUAR_JOB_QUEUED);
    CHECK_EQ_INT(j.attempt, 0);
    CHECK_EQ_INT(state_of(q, ids[3]), LUAR_JOB_DEAD);
    /* The counts moved once per change: u and the released job queued, one each of the rest. */
    CHECK_EQ_INT(count_of(q, "together", LUAR_JOB_QUEUED), 2);
    CHECK_EQ_INT(count_of(q, "together", LUAR_JOB_RUNNING), 0);
    CHECK_EQ_INT(count_of(q, "together", LUAR_JOB_SUCCEEDED), 1);
    CHECK_EQ_INT(count_of(q, "together", LUAR_JOB_RETRYING), 1);
    CHECK_EQ_INT(count_of(q, "together", LUAR_JOB_DEAD), 1);
    /* And what they made claimable is claimable: the released job now, u. */
    CHECK_EQ_INT(claim(q, "together", 10, "w2", 30, &c), 0);
    CHECK_EQ_INT(c.n, 2);
    res_free(&c);
    for (int i = 0; i < 12; i++)
        res_free(&r[i]);
    close_q(q);
}

TEST(contract_writes_are_fenced_by_owner)
{
    luar_queue_t *q = open_fresh();
    char id[40];
    CHECK_EQ_INT(enqueue_named(q, "fence", NULL, id), 0);
    tjob_t j;
    CHECK_EQ_INT(claim1(q, "w1", &j), 0);
    CHECK_EQ_INT(complete(q, id, "w2", "{}", 60), LUAR_ENOTFOUND);
    CHECK_EQ_INT(fail(q, id, "w2", "e", NULL, test_now + 1, 0), LUAR_ENOTFOUND);
    CHECK_EQ_INT(fail(q, id, "w2", "e", NULL, 0, 60), LUAR_ENOTFOUND);
    CHECK_EQ_INT(release(q, id, "w2", 0), LUAR_ENOTFOUND);
    CHECK_EQ_INT(get(q, id, &j), 0);
    CHECK_EQ_INT(j.state, LUAR_JOB_RUNNING);
    CHECK_EQ_STR(j.owner, "w1");

    CHECK_EQ_INT(complete(q, id, "w1", "{\"ok\":true}", 100), 0);
    CHECK_EQ_INT(get(q, id, &j), 0);
    CHECK_EQ_INT(j.state, LUAR_JOB_SUCCEEDED);
    CHECK_EQ_STR(j.result, "{\"ok\":true}");
    CHECK_EQ_STR(j.owner, NUL_STR);
    CHECK(j.finished_at == test_now);
    CHECK(j.expires_at == test_now + 100);
    CHECK(j.lease_expires_at == 0);

    /* Not running any more: every fenced write is refused, even by the last owner. */
    CHECK_EQ_INT(complete(q, id, "w1", NULL, 100), LUAR_ENOTFOUND);
    CHECK_EQ_INT(fail(q, id, "w1", "e", NULL, 0, 60), LUAR_ENOTFOUND);
    CHECK_EQ_INT(release(q, id, "w1", 0), LUAR_ENOTFOUND);
    CHECK_EQ_INT(complete(q, "missing", "w1", NULL, 100), LUAR_ENOTFOUND);
    CHECK_EQ_INT(state_of(q, id), LUAR_JOB_SUCCEEDED);
    close_q(q);
}

TEST(contract_fail_with_retry_at_makes_job_retrying_then_claimable)
{
    luar_queue_t *q = open_fresh();
    luar_job_spec_t s = {.name = "flaky", .max_attempts = 3};
    char id[40];
    CHECK_EQ_INT(enqueue1(q, &s, id), 0);
    tjob_t j;
    CHECK_EQ_INT(claim1(q, "w", &j), 0);
    CHECK_EQ_INT(j.attempt, 1);
    double at = test_now + 10;
    CHECK_EQ_INT(fail(q, id, "w", "HTTP 500", "stack 1", at, 0), 0);
    CHECK_EQ_INT(get(q, id, &j), 0);
    CHECK_EQ_INT(j.state, LUAR_JOB_RETRYING);
    CHECK(j.run_at == at);
    CHECK_EQ_STR(j.last_error, "HTTP 500");
    CHECK_EQ_STR(j.traceback, "stack 1");
    CHECK_EQ_STR(j.owner, NUL_STR);
    CHECK_EQ_INT(j.attempt, 1);
    CHECK(j.finished_at == 0 && j.expires_at == 0);
    CHECK(next_due(q) == at);
    CHECK_EQ_INT(claim1(q, "w", &j), LUAR_ENOTFOUND);
    test_now = at;
    CHECK_EQ_INT(claim1(q, "w", &j), 0);
    CHECK_EQ_STR(j.id, id);
    CHECK_EQ_INT(j.attempt, 2);
    CHECK_EQ_INT(j.state, LUAR_JOB_RUNNING);
    close_q(q);
}

TEST(contract_fail_without_retry_buries_job_as_dead)
{
    luar_queue_t *q = open_fresh();
    char id[40];
    CHECK_EQ_INT(enqueue_named(q, "hopeless", NULL, id), 0);
    tjob_t j;
    CHECK_EQ_INT(claim1(q, "w", &j), 0);
    CHECK_EQ_INT(fail(q, id, "w", "bad input", "at job.lua:3", 0, 2592000), 0);
    CHECK_EQ_INT(get(q, id, &j), 0);
    CHECK_EQ_INT(j.state, LUAR_JOB_DEAD);
    CHECK_EQ_STR(j.last_error, "bad input");
    CHECK_EQ_STR(j.traceback, "at job.lua:3");
    CHECK(j.finished_at == test_now);
    CHECK(j.expires_at == test_now + 2592000);
    CHECK_EQ_STR(j.owner, NUL_STR);
    CHECK_EQ_INT(claim1(q, "w", &j), LUAR_ENOTFOUND);
    CHECK(next_due(q) == 0);
    close_q(q);
}

TEST(contract_release_does_not_count_the_attempt)
{
    luar_queue_t *q = open_fresh();
    char id[40];
    CHECK_EQ_INT(enqueue_named(q, "rate_limited", NULL, id), 0);
    tjob_t j;
    CHECK_EQ_INT(claim1(q, "w", &j), 0);
    CHECK_EQ_INT(j.attempt, 1);
    double at = test_now + 5;
    CHECK_EQ_INT(release(q, id, "w", at), 0);
    CHECK_EQ_INT(get(q, id, &j), 0);
    CHECK_EQ_INT(j.state, LUAR_JOB_SCHEDULED);
    CHECK_EQ_INT(j.attempt, 0);
    CHECK(j.run_at == at);
    CHECK_EQ_STR(j.owner, NUL_STR);
    CHECK_EQ_INT(claim1(q, "w", &j), LUAR_ENOTFOUND);
    test_now = at;
    CHECK_EQ_INT(claim1(q, "w", &j), 0);
    CHECK_EQ_INT(j.attempt, 1);

    /* Released for now (a graceful shutdown): due at once. */
    CHECK_EQ_INT(release(q, id, "w", 0), 0);
    CHECK_EQ_INT(get(q, id, &j), 0);
    CHECK(j.state == LUAR_JOB_QUEUED || j.state == LUAR_JOB_SCHEDULED);
    CHECK(j.run_at == test_now);
    CHECK_EQ_INT(claim1(q, "w2", &j), 0);
    CHECK_EQ_INT(j.attempt, 1);
    close_q(q);
}

TEST(contract_sweep_reclaims_expired_leases_and_buries_out_of_attempts)
{
    luar_queue_t *q = open_fresh();
    luar_queue_set_dead_ttl(q, 500);
    luar_job_spec_t s = {.name = "crashy", .max_attempts = 2};
    char id[40], other[40];
    CHECK_EQ_INT(enqueue1(q, &s, id), 0);
    res_t r;
    CHECK_EQ_INT(claim(q, NULL, 1, "w", 10, &r), 0);
    res_free(&r);
    size_t reclaimed, expired;
    test_now += 10; /* the lease ends now, and is not yet past */
    CHECK_EQ_INT(sweep(q, &reclaimed, &expired), 0);
    CHECK_EQ_INT(reclaimed, 0);
    CHECK_EQ_INT(state_of(q, id), LUAR_JOB_RUNNING);
    test_now += 1;
    CHECK_EQ_INT(sweep(q, &reclaimed, &expired), 0);
    CHECK_EQ_INT(reclaimed, 1);
    tjob_t j;
    CHECK_EQ_INT(get(q, id, &j), 0);
    CHECK_EQ_INT(j.state, LUAR_JOB_RETRYING);
    CHECK_EQ_INT(j.attempt, 1);
    CHECK(j.run_at == test_now);
    CHECK_EQ_STR(j.owner, NUL_STR);
    CHECK_EQ_STR(j.last_error, "lease expired (the worker running it stopped)");

    CHECK_EQ_INT(claim(q, NULL, 1, "w2", 10, &r), 0);
    CHECK_EQ_INT(r.n, 1);
    if (r.n == 1)
        CHECK_EQ_INT(r.jobs[0].attempt, 2);
    res_free(&r);
    test_now += 11;
    CHECK_EQ_INT(sweep(q, &reclaimed, &expired), 0);
    CHECK_EQ_INT(reclaimed, 1);
    CHECK_EQ_INT(get(q, id, &j), 0);
    CHECK_EQ_INT(j.state, LUAR_JOB_DEAD);
    CHECK(j.finished_at == test_now);
    CHECK(j.expires_at == test_now + 500);
    CHECK_EQ_STR(j.last_error, "lease expired (the worker running it stopped)");

    /* Unlimited attempts: reclaimed again and again, never buried. */
    CHECK_EQ_INT(enqueue_named(q, "forever", NULL, other), 0);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(claim(q, NULL, 1, "w", 10, &r), 0);
        res_free(&r);
        test_now += 11;
        CHECK_EQ_INT(sweep(q, &reclaimed, &expired), 0);
        CHECK_EQ_INT(reclaimed, 1);
    }
    CHECK_EQ_INT(get(q, other, &j), 0);
    CHECK_EQ_INT(j.state, LUAR_JOB_RETRYING);
    CHECK_EQ_INT(j.attempt, 3);
    close_q(q);
}

TEST(contract_sweep_deletes_expired_results_dead_jobs_and_dedupe_keys)
{
    luar_queue_t *q = open_fresh();
    double t0 = test_now;
    char done_id[40], dead_id[40], kept[40];
    CHECK_EQ_INT(enqueue_named(q, "ok", "a", done_id), 0);
    res_t r;
    CHECK_EQ_INT(claim(q, "a", 1, "w", 30, &r), 0);
    res_free(&r);
    CHECK_EQ_INT(complete(q, done_id, "w", "42", 10), 0);
    CHECK_EQ_INT(enqueue_named(q, "ok", "a", kept), 0);
    CHECK_EQ_INT(claim(q, "a", 1, "w", 30, &r), 0);
    res_free(&r);
    CHECK_EQ_INT(complete(q, kept, "w", "43", 1000), 0);
    make_dead(q, "b", dead_id); /* expires at t0 + 1000 */
    CHECK_EQ_INT(enqueue_batch(q, NULL, 0, "evt:x", 5, &r), 0);
    res_free(&r);

    size_t reclaimed, expired;
    test_now = t0 + 6; /* the dedupe key is past */
    CHECK_EQ_INT(sweep(q, &reclaimed, &expired), 0);
    CHECK_EQ_INT(reclaimed, 0);
    CHECK_EQ_INT(expired, 1);
    CHECK_EQ_INT(enqueue_batch(q, NULL, 0, "evt:x", 1, &r), 0);
    CHECK_EQ_INT(r.duplicate, 0);
    res_free(&r);

    test_now = t0 + 11; /* the result is past; the new dedupe key too */
    CHECK_EQ_INT(sweep(q, &reclaimed, &expired), 0);
    CHECK_EQ_INT(expired, 2);
    tjob_t j;
    CHECK_EQ_INT(get(q, done_id, &j), LUAR_ENOTFOUND);
    CHECK_EQ_INT(state_of(q, kept), LUAR_JOB_SUCCEEDED);
    CHECK_EQ_INT(state_of(q, dead_id), LUAR_JOB_DEAD);

    test_now = t0 + 1001;
    CHECK_EQ_INT(sweep(q, &reclaimed, &expired), 0);
    CHECK_EQ_INT(expired, 2);
    CHECK_EQ_INT(get(q, dead_id, &j), LUAR_ENOTFOUND);
    CHECK_EQ_INT(get(q, kept, &j), LUAR_ENOTFOUND);
    CHECK_EQ_INT(sweep(q, &reclaimed, &expired), 0);
    CHECK_EQ_INT(reclaimed + expired, 0);
    close_q(q);
}

TEST(contract_retry_requeues_finished_and_waiting_jobs)
{
    luar_queue_t *q = open_fresh();
    char dead[40], running[40], waiting[40];
    make_dead(q, "a", dead);
    test_now += 3;
    CHECK_EQ_INT(retry(q, dead), 0);
    tjob_t j;
    CHECK_EQ_INT(get(q, dead, &j), 0);
    CHECK_EQ_INT(j.state, LUAR_JOB_QUEUED);
    CHECK_EQ_INT(j.attempt, 0);
    CHECK(j.run_at == test_now);
    CHECK(j.finished_at == 0 && j.expires_at == 0);
    CHECK_EQ_STR(j.owner, NUL_STR);
    CHECK_EQ_INT(claim1(q, "w", &j), 0);
    CHECK_EQ_STR(j.id, dead);
    CHECK_EQ_INT(j.attempt, 1);
    strcpy(running, dead);
    CHECK_EQ_INT(retry(q, running), LUAR_EBUSY);
    CHECK_EQ_INT(complete(q, running, "w", "1", 100), 0);
    CHECK_EQ_INT(retry(q, running), 0);
    CHECK_EQ_INT(get(q, running, &j), 0);
    CHECK_EQ_INT(j.state, LUAR_JOB_QUEUED);
    CHECK_EQ_STR(j.result, NUL_STR);

    luar_job_spec_t s = {.name = "w", .run_at = test_now + 3600};
    CHECK_EQ_INT(enqueue1(q, &s, waiting), 0);
    CHECK_EQ_INT(retry(q, waiting), 0);
    CHECK_EQ_INT(state_of(q, waiting), LUAR_JOB_QUEUED);
    CHECK_EQ_INT(retry(q, waiting), 0); /* already queued: nothing to do */
    CHECK_EQ_INT(retry(q, "missing"), LUAR_ENOTFOUND);
    close_q(q);
}

TEST(contract_retry_many_requeues_matching_jobs)
{
    luar_queue_t *q = open_fresh();
    char id[40];
    for (int i = 0; i < 3; i++)
        make_dead(q, "a", id);
    make_dead(q, "b", id);
    CHECK_EQ_INT(enqueue_named(q, "fresh", "a", id), 0);
    luar_job_filter_t f = {.state = LUAR_JOB_DEAD, .queue = "a"};
    size_t n = 0;
    CHECK_EQ_INT(count_op(luar_queue_retry_many, q, &f, &n), 0);
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_INT(count_of(q, "a", LUAR_JOB_QUEUED), 4);
    CHECK_EQ_INT(count_of(q, "a", LUAR_JOB_DEAD), 0);
    CHECK_EQ_INT(count_of(q, "b", LUAR_JOB_DEAD), 1);
    CHECK_EQ_INT(count_op(luar_queue_retry_many, q, NULL, &n), 0);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(count_of(q, "b", LUAR_JOB_QUEUED), 1);
    close_q(q);
}

/* A dead job of queue "a" named `name` failing with `error` at the current test time. */
static void make_dead_with(luar_queue_t *q, const char *name, const char *error, char *id)
{
    res_t r;
    CHECK_EQ_INT(enqueue_named(q, name, "a", id), 0);
    CHECK_EQ_INT(claim(q, "a", 1, "w", 30, &r), 0);
    CHECK_EQ_INT(r.n, 1);
    res_free(&r);
    CHECK_EQ_INT(fail(q, id, "w", error, NULL, 0, 100000), 0);
}

TEST(contract_filters_by_error_text_and_time_and_bulk_ops_take_a_max)
{
    luar_queue_t *q = open_fresh();
    double t0 = test_now;
    char id[40], late[40];
    for (int i = 0; i < 4; i++) {
        test_now = t0 + i * 10; /* dies at t0, t0 + 10, t0 + 20, t0 + 30 */
        make_dead_with(q, "sync", i % 2 ? "HTTP 502 from api.example" : "timeout", i == 3 ? late : id);
    }
    test_now = t0 + 100;
    char fresh[40];
    CHECK_EQ_INT(enqueue_named(q, "sync", "a", fresh), 0); /* its time is its enqueue, t0 + 100 */
    res_t r;
    luar_job_filter_t f = {.state = -1, .error = "502"};
    CHECK_EQ_INT(list(q, &f, &r), 0);
    CHECK_EQ_INT(r.n, 2);
    res_free(&r);
    f = (luar_job_filter_t){.state = LUAR_JOB_DEAD, .since = t0 + 10, .until = t0 + 30};
    CHECK_EQ_INT(list(q, &f, &r), 0);
    CHECK_EQ_INT(r.n, 2); /* t0 + 10 and t0 + 20: since inclusive, until exclusive */
    res_free(&r);
    f = (luar_job_filter_t){.state = -1, .since = t0 + 50};
    CHECK_EQ_INT(list(q, &f, &r), 0);
    CHECK_EQ_INT(r.n, 1);
    if (r.n == 1)
        CHECK_EQ_STR(r.jobs[0].id, fresh);
    res_free(&r);

    /* Bulk retry in batches of one, oldest first, by error text. */
    size_t n = 0;
    f = (luar_job_filter_t){.state = LUAR_JOB_DEAD, .error = "502", .max = 1};
    CHECK_EQ_INT(count_op(luar_queue_retry_many, q, &f, &n), 0);
    CHECK_EQ_INT(n, 1);
    tjob_t j;
    CHECK_EQ_INT(get(q, late, &j), 0);
    CHECK_EQ_INT(j.state, LUAR_JOB_DEAD); /* the newer one waits for the next batch */
    CHECK_EQ_INT(count_op(luar_queue_retry_many, q, &f, &n), 0);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(get(q, late, &j), 0);
    CHECK_EQ_INT(j.state, LUAR_JOB_QUEUED);
    CHECK_EQ_INT(count_op(luar_queue_retry_many, q, &f, &n), 0);
    CHECK_EQ_INT(n, 0);
    f = (luar_job_filter_t){.state = LUAR_JOB_DEAD, .until = t0 + 5, .max = 5};
    CHECK_EQ_INT(count_op(luar_queue_purge, q, &f, &n), 0);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(count_of(q, "a", LUAR_JOB_DEAD), 1);
    close_q(q);
}

TEST(contract_delete_removes_a_job_and_fences_its_worker)
{
    luar_queue_t *q = open_fresh();
    char a[40], b[40];
    CHECK_EQ_INT(enqueue_named(q, "x", "q1", a), 0);
    CHECK_EQ_INT(delete_job(q, a), 0);
    tjob_t j;
    CHECK_EQ_INT(get(q, a, &j), LUAR_ENOTFOUND);
    CHECK_EQ_INT(delete_job(q, a), LUAR_ENOTFOUND);
    CHECK_EQ_INT(enqueue_named(q, "x", "q1", b), 0);
    CHECK_EQ_INT(claim1(q, "w", &j), 0);
    CHECK_EQ_INT(delete_job(q, b), 0);
    CHECK_EQ_INT(complete(q, b, "w", NULL, 10), LUAR_ENOTFOUND);
    close_q(q);
}

TEST(contract_purge_deletes_jobs_in_a_state)
{
    luar_queue_t *q = open_fresh();
    char id[40];
    for (int i = 0; i < 2; i++) {
        CHECK_EQ_INT(enqueue_named(q, "ok", "a", id), 0);
        tjob_t j;
        CHECK_EQ_INT(claim1(q, "w", &j), 0);
        CHECK_EQ_INT(complete(q, j.id, "w", NULL, 100), 0);
    }
    make_dead(q, "a", id);
    CHECK_EQ_INT(enqueue_named(q, "waiting", "a", id), 0);
    luar_job_filter_t f = {.state = LUAR_JOB_SUCCEEDED};
    size_t n = 0;
    CHECK_EQ_INT(count_op(luar_queue_purge, q, &f, &n), 0);
    CHECK_EQ_INT(n, 2);
    f = (luar_job_filter_t){.state = LUAR_JOB_DEAD, .queue = "other"};
    CHECK_EQ_INT(count_op(luar_queue_purge, q, &f, &n), 0);
    CHECK_EQ_INT(n, 0);
    f.queue = "a";
    f.name = "doomed";
    CHECK_EQ_INT(count_op(luar_queue_purge, q, &f, &n), 0);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(count_of(q, "a", LUAR_JOB_QUEUED), 1);
    CHECK_EQ_INT(count_of(q, "a", LUAR_JOB_SUCCEEDED), 0);
    close_q(q);
}

TEST(contract_list_filters_and_pages_newest_first)
{
    luar_queue_t *q = open_fresh();
    char ids[25][40];
    for (int i = 0; i < 25; i++) {
        test_now += 0.001;
        CHECK_EQ_INT(enqueue_named(q, i % 2 ? "odd" : "even", i % 3 ? "b" : "a", ids[i]), 0);
    }
    luar_job_filter_t f = {.state = -1, .limit = 10};
    res_t r;
    char seen[25][40];
    size_t nseen = 0;
    for (int page = 0; page < 3; page++) {
        CHECK_EQ_INT(list(q, &f, &r), 0);
        CHECK_EQ_INT(r.n, page < 2 ? 10 : 5);
        for (size_t i = 0; i < r.n && nseen < 25; i++) {
            CHECK_EQ_STR(r.jobs[i].id, ids[24 - nseen]); /* newest first */
            memcpy(seen[nseen++], r.jobs[i].id, 40);
        }
        if (page < 2 && r.n == 10)
            CHECK_EQ_STR(r.cursor, r.jobs[9].id);
        else
            CHECK_EQ_STR(r.cursor, "");
        static char cursor[40];
        memcpy(cursor, r.cursor, 40);
        f.cursor = cursor;
        res_free(&r);
    }
    CHECK_EQ_INT(nseen, 25);
    CHECK_EQ_INT(duplicates(seen, nseen), 0);

    CHECK_EQ_INT(list(q, NULL, &r), 0);
    CHECK_EQ_INT(r.n, 25);
    CHECK_EQ_STR(r.cursor, "");
    res_free(&r);
    f = (luar_job_filter_t){.state = -1, .queue = "a"};
    CHECK_EQ_INT(list(q, &f, &r), 0);
    CHECK_EQ_INT(r.n, 9);
    for (size_t i = 0; i < r.n; i++)
        CHECK_EQ_STR(r.jobs[i].queue, "a");
    res_free(&r);
    f = (luar_job_filter_t){.state = -1, .name = "odd", .queue = "b"};
    CHECK_EQ_INT(list(q, &f, &r), 0);
    CHECK_EQ_INT(r.n, 8);
    res_free(&r);
    CHECK_EQ_INT(claim(q, "a", 2, "w", 30, &r), 0);
    res_free(&r);
    f = (luar_job_filter_t){.state = LUAR_JOB_RUNNING};
    CHECK_EQ_INT(list(q, &f, &r), 0);
    CHECK_EQ_INT(r.n, 2);
    for (size_t i = 0; i < r.n; i++)
        CHECK_EQ_INT(r.jobs[i].state, LUAR_JOB_RUNNING);
    res_free(&r);
    close_q(q);
}

TEST(contract_counts_by_queue_and_state)
{
    luar_queue_t *q = open_fresh();
    char id[40];
    CHECK_EQ_INT(enqueue_named(q, "x", "a", id), 0);
    CHECK_EQ_INT(enqueue_named(q, "x", "a", id), 0);
    CHECK_EQ_INT(enqueue_named(q, "x", "a", id), 0);
    res_t r;
    CHECK_EQ_INT(claim(q, "a", 1, "w", 30, &r), 0);
    res_free(&r);
    luar_job_spec_t later = {.name = "y", .queue = "b", .run_at = test_now + 60};
    CHECK_EQ_INT(enqueue1(q, &later, id), 0);
    make_dead(q, "b", id);
    CHECK_EQ_INT(counts(q, &r), 0);
    CHECK_EQ_INT(r.ncounts, 2);
    CHECK_EQ_STR(r.count_queues[0], "a");
    CHECK_EQ_STR(r.count_queues[1], "b");
    CHECK_EQ_INT(r.counts[0][LUAR_JOB_QUEUED], 2);
    CHECK_EQ_INT(r.counts[0][LUAR_JOB_RUNNING], 1);
    CHECK_EQ_INT(r.counts[0][LUAR_JOB_DEAD], 0);
    CHECK_EQ_INT(r.counts[1][LUAR_JOB_SCHEDULED], 1);
    CHECK_EQ_INT(r.counts[1][LUAR_JOB_DEAD], 1);
    CHECK_EQ_INT(r.counts[1][LUAR_JOB_QUEUED], 0);
    close_q(q);
}

TEST(contract_next_due_is_earliest_scheduled_or_retrying)
{
    luar_queue_t *q = open_fresh();
    CHECK(next_due(q) == 0);
    char id[40];
    CHECK_EQ_INT(enqueue_named(q, "now", NULL, id), 0);
    CHECK(next_due(q) == 0);
    luar_job_spec_t s = {.name = "later", .run_at = test_now + 50};
    CHECK_EQ_INT(enqueue1(q, &s, id), 0);
    CHECK(next_due(q) == test_now + 50);
    tjob_t j;
    CHECK_EQ_INT(claim1(q, "w", &j), 0);
    CHECK_EQ_INT(fail(q, j.id, "w", "e", NULL, test_now + 20, 0), 0);
    CHECK(next_due(q) == test_now + 20);
    close_q(q);
}

TEST(contract_ping_answers)
{
    luar_queue_t *q = open_fresh();
    res_t r = {0};
    CHECK_EQ_INT(luar_queue_ping(q, on_done, &r), 0);
    CHECK(wait_for(&r.done));
    CHECK_EQ_INT(r.rc, 0);
    close_q(q);
}

TEST(contract_close_completes_queued_operations_first)
{
    luar_queue_t *q = open_fresh();
    enum { N = 50 };
    res_t r[N + 1];
    memset(r, 0, sizeof r);
    luar_job_spec_t s = {.name = "last_words"};
    for (int i = 0; i < N; i++)
        CHECK_EQ_INT(luar_queue_enqueue(q, &s, 1, NULL, 0, on_enqueued, &r[i]), 0);
    CHECK_EQ_INT(luar_queue_claim(q, NULL, 5, "w", 30, on_jobs, &r[N]), 0);
    int closed = 0;
    luar_queue_close(q, on_closed, &closed);
    res_t late = {0};
    CHECK_EQ_INT(luar_queue_ping(q, on_done, &late), LUAR_ECLOSED);
    CHECK(wait_for(&closed));
    for (int i = 0; i <= N; i++) {
        CHECK_EQ_INT(r[i].done, 1);
        CHECK_EQ_INT(r[i].rc, 0);
        res_free(&r[i]);
    }
    /* Committed before the callbacks: a new handle sees them. */
    q = open_again();
    CHECK_EQ_INT(count_of(q, "default", LUAR_JOB_QUEUED), N - 5);
    CHECK_EQ_INT(count_of(q, "default", LUAR_JOB_RUNNING), 5);
    CHECK_EQ_INT(late.done, 0);
    close_q(q);
}

TEST(contract_state_names_round_trip)
{
    for (int s = 0; s < LUAR_JOB_STATES; s++) {
        luar_job_state_t back;
        CHECK_EQ_INT(luar_job_state_parse(luar_job_state_name((luar_job_state_t)s), &back), 0);
        CHECK_EQ_INT(back, s);
    }
    luar_job_state_t out;
    CHECK_EQ_STR(luar_job_state_name(LUAR_JOB_RETRYING), "retrying");
    CHECK_EQ_INT(luar_job_state_parse("zombie", &out), LUAR_EINVAL);
    CHECK_EQ_INT(luar_job_state_parse(NULL, &out), LUAR_EINVAL);
}

TEST(contract_rate_check_allows_the_burst_then_one_per_interval)
{
    luar_queue_t *q = open_fresh();
    rate_res_t r[8];
    CHECK_EQ_INT(rate_burst(&q, 1, "k1", "5/s", 8, r), 5);
    for (int i = 0; i < 5; i++) {
        CHECK(r[i].r.allowed);
        CHECK_EQ_INT(r[i].r.remaining, 4 - i); /* in submission order */
    }
    for (int i = 5; i < 8; i++) {
        CHECK(!r[i].r.allowed);
        CHECK_EQ_INT(r[i].r.retry_after_ns, 200000000);
    }
    /* Another key, another limit on the same key: their own state. */
    CHECK_EQ_INT(rate_burst(&q, 1, "k2", "5/s", 8, NULL), 5);
    /* Time moves: one interval gives one more; a second gives the whole burst back. */
    test_now += 0.2;
    CHECK_EQ_INT(rate_burst(&q, 1, "k1", "5/s", 3, NULL), 1);
    test_now += 1.0;
    CHECK_EQ_INT(rate_burst(&q, 1, "k1", "5/s", 9, NULL), 5);
    close_q(q);
}

TEST(contract_rate_check_is_exact_across_two_handles)
{
    luar_queue_t *qs[2];
    qs[0] = open_fresh();
    qs[1] = open_again();
    /* Interleaved, unawaited checks from two handles (two connections, two writer
     * threads for SQLite): together they get exactly the limit. */
    CHECK_EQ_INT(rate_burst(qs, 2, "shared", "10/m", 30, NULL), 10);
    test_now += 6; /* T = 6 s */
    CHECK_EQ_INT(rate_burst(qs, 2, "shared", "10/m", 10, NULL), 1);
    test_now += 30;
    CHECK_EQ_INT(rate_burst(qs, 2, "shared", "10/m", 10, NULL), 5);
    test_now += 3600;
    CHECK_EQ_INT(rate_burst(qs, 2, "shared", "10/m", 200, NULL), 10);
    close_q(qs[0]);
    close_q(qs[1]);
}

TEST(contract_rate_check_bad_arguments_fail_synchronously)
{
    luar_queue_t *q = open_fresh();
    luar_gcra_t g = {.interval_ns = 1000000, .burst = 3};
    rate_res_t r = {0};
    CHECK_EQ_INT(luar_queue_rate_check(q, "", &g, 1, on_rate, &r), LUAR_EINVAL);
    CHECK_EQ_INT(luar_queue_rate_check(q, NULL, &g, 1, on_rate, &r), LUAR_EINVAL);
    CHECK_EQ_INT(luar_queue_rate_check(q, "k", NULL, 1, on_rate, &r), LUAR_EINVAL);
    CHECK_EQ_INT(luar_queue_rate_check(q, "k", &g, 0, on_rate, &r), LUAR_EINVAL);
    CHECK_EQ_INT(luar_queue_rate_check(q, "k", &g, 4, on_rate, &r), LUAR_EINVAL);
    CHECK_EQ_INT(luar_queue_rate_check(q, "k", &g, 1, NULL, &r), LUAR_EINVAL);
    luar_gcra_t zero = {0, 0};
    CHECK_EQ_INT(luar_queue_rate_check(q, "k", &zero, 1, on_rate, &r), LUAR_EINVAL);
    CHECK_EQ_INT(r.done, 0);
    /* A cost of several units. */
    CHECK_EQ_INT(luar_queue_rate_check(q, "k", &g, 3, on_rate, &r), 0);
    CHECK(wait_for(&r.done));
    CHECK_EQ_INT(r.rc, 0);
    CHECK(r.r.allowed);
    CHECK_EQ_INT(r.r.remaining, 0);
    close_q(q);
}

TEST(contract_sweep_deletes_rate_state_whose_time_has_passed)
{
    luar_queue_t *q = open_fresh();
    size_t reclaimed = 0, expired = 0;
    CHECK_EQ_INT(rate_burst(&q, 1, "a", "2/m", 1, NULL), 1); /* TAT now + 30 s */
    CHECK_EQ_INT(rate_burst(&q, 1, "b", "2/m", 2, NULL), 2); /* TAT now + 60 s */
    CHECK_EQ_INT(sweep(q, &reclaimed, &expired), 0);
    CHECK_EQ_INT(expired, 0);
    test_now += 45;
    CHECK_EQ_INT(sweep(q, &reclaimed, &expired), 0);
    CHECK_EQ_INT(expired, 1);
    /* "b" is still remembered: half its bucket has come back, not all of it. */
    CHECK_EQ_INT(rate_burst(&q, 1, "b", "2/m", 3, NULL), 1);
    test_now += 3600;
    CHECK_EQ_INT(sweep(q, &reclaimed, &expired), 0);
    CHECK_EQ_INT(expired, 1);
    CHECK_EQ_INT(rate_burst(&q, 1, "a", "2/m", 3, NULL), 2);
    close_q(q);
}

/* ---- the cache ---------------------------------------------------------------------- */

typedef struct cache_res {
    int done, rc, found;
    char value[2048];
    size_t len;
    int64_t number;
} cache_res_t;

static void on_cache_get(void *arg, int rc, const char *value, size_t len)
{
    cache_res_t *r = arg;
    r->rc = rc;
    r->found = value != NULL;
    r->len = len;
    if (value)
        memcpy(r->value, value, len < sizeof r->value ? len : sizeof r->value);
    r->done = 1;
}

static void on_cache_done(void *arg, int rc)
{
    cache_res_t *r = arg;
    r->rc = rc;
    r->done = 1;
}

static void on_cache_incr(void *arg, int rc, int64_t value)
{
    cache_res_t *r = arg;
    r->rc = rc;
    r->number = value;
    r->done = 1;
}

/* The value of `key` as a string, "<absent>", or "<error N>". */
static const char *cache_get(luar_queue_t *q, const char *key)
{
    static char out[2100];
    cache_res_t r = {0};
    int rc = luar_queue_cache_get(q, key, on_cache_get, &r);
    if (rc == 0 && wait_for(&r.done))
        rc = r.rc;
    if (rc)
        snprintf(out, sizeof out, "<error %d>", rc);
    else if (!r.found)
        snprintf(out, sizeof out, "<absent>");
    else
        snprintf(out, sizeof out, "%.*s", (int)r.len, r.value);
    return out;
}

static int cache_set(luar_queue_t *q, const char *key, const char *value, double ttl)
{
    cache_res_t r = {0};
    int rc = luar_queue_cache_set(q, key, value, strlen(value), ttl, on_cache_done, &r);
    if (rc == 0 && wait_for(&r.done))
        rc = r.rc;
    return rc;
}

static int cache_delete(luar_queue_t *q, const char *key)
{
    cache_res_t r = {0};
    int rc = luar_queue_cache_delete(q, key, on_cache_done, &r);
    if (rc == 0 && wait_for(&r.done))
        rc = r.rc;
    return rc;
}

static int cache_incr(luar_queue_t *q, const char *key, int64_t delta, double ttl, int64_t *out)
{
    cache_res_t r = {0};
    int rc = luar_queue_cache_incr(q, key, delta, ttl, on_cache_incr, &r);
    if (rc == 0 && wait_for(&r.done))
        rc = r.rc;
    if (rc == 0)
        *out = r.number;
    return rc;
}

static void on_wait_timer(uv_timer_t *t)
{
    *(int *)t->data = 1;
}

/* Moves the test clock by `seconds` and lets as much real time pass on the loop. */
static void let_time_pass(double seconds)
{
    test_now += seconds;
    uv_timer_t t;
    int fired = 0;
    uv_timer_init(&loop, &t);
    t.data = &fired;
    uv_timer_start(&t, on_wait_timer, (uint64_t)(seconds * 1000) + 1, 0);
    wait_for(&fired);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
}

TEST(contract_cache_stores_replaces_and_deletes_bytes)
{
    luar_queue_t *q = open_fresh();
    CHECK_EQ_STR(cache_get(q, "a"), "<absent>");
    CHECK_EQ_INT(cache_set(q, "a", "one", 0), 0);
    CHECK_EQ_STR(cache_get(q, "a"), "one");
    CHECK_EQ_INT(cache_set(q, "a", "two", 0), 0);
    CHECK_EQ_STR(cache_get(q, "a"), "two");
    /* Values are bytes: NULs inside, and empty is not absent. */
    cache_res_t r = {0};
    CHECK_EQ_INT(luar_queue_cache_set(q, "bin", "x\0y\0", 4, 0, on_cache_done, &r), 0);
    CHECK(wait_for(&r.done));
    memset(&r, 0, sizeof r);
    CHECK_EQ_INT(luar_queue_cache_get(q, "bin", on_cache_get, &r), 0);
    CHECK(wait_for(&r.done));
    CHECK_EQ_INT(r.found, 1);
    CHECK_EQ_INT(r.len, 4);
    CHECK(memcmp(r.value, "x\0y\0", 4) == 0);
    CHECK_EQ_INT(cache_set(q, "empty", "", 0), 0);
    memset(&r, 0, sizeof r);
    CHECK_EQ_INT(luar_queue_cache_get(q, "empty", on_cache_get, &r), 0);
    CHECK(wait_for(&r.done));
    CHECK_EQ_INT(r.rc, 0);
    CHECK_EQ_INT(r.found, 1);
    CHECK_EQ_INT(r.len, 0);
    /* Keys are exact: case, prefixes and the longest key are their own. */
    CHECK_EQ_STR(cache_get(q, "A"), "<absent>");
    CHECK_EQ_STR(cache_get(q, "bi"), "<absent>");
    char longest[LUAR_QUEUE_CACHE_MAX_KEY + 1];
    memset(longest, 'k', LUAR_QUEUE_CACHE_MAX_KEY);
    longest[LUAR_QUEUE_CACHE_MAX_KEY] = '\0';
    CHECK_EQ_INT(cache_set(q, longest, "long", 0), 0);
    CHECK_EQ_STR(cache_get(q, longest), "long");
    /* Delete: gone; deleting what is absent is no error. */
    CHECK_EQ_INT(cache_delete(q, "a"), 0);
    CHECK_EQ_STR(cache_get(q, "a"), "<absent>");
    CHECK_EQ_INT(cache_delete(q, "a"), 0);
    CHECK_EQ_INT(cache_delete(q, "never-set"), 0);
    /* Close completes cache operations already submitted. */
    cache_res_t last = {0};
    CHECK_EQ_INT(luar_queue_cache_get(q, "empty", on_cache_get, &last), 0);
    int closed = 0;
    luar_queue_close(q, on_closed, &closed);
    CHECK(wait_for(&closed));
    CHECK_EQ_INT(last.done, 1);
    CHECK_EQ_INT(last.rc, 0);
}

TEST(contract_cache_bad_arguments_fail_synchronously)
{
    luar_queue_t *q = open_fresh();
    cache_res_t r = {0};
    char too_long[LUAR_QUEUE_CACHE_MAX_KEY + 2];
    memset(too_long, 'k', LUAR_QUEUE_CACHE_MAX_KEY + 1);
    too_long[LUAR_QUEUE_CACHE_MAX_KEY + 1] = '\0';
    CHECK_EQ_INT(luar_queue_cache_get(q, "", on_cache_get, &r), LUAR_EINVAL);
    CHECK_EQ_INT(luar_queue_cache_get(q, NULL, on_cache_get, &r), LUAR_EINVAL);
    CHECK_EQ_INT(luar_queue_cache_get(q, too_long, on_cache_get, &r), LUAR_EINVAL);
    CHECK_EQ_INT(luar_queue_cache_get(q, "k", NULL, &r), LUAR_EINVAL);
    CHECK_EQ_INT(luar_queue_cache_set(q, too_long, "v", 1, 0, on_cache_done, &r), LUAR_EINVAL);
    CHECK_EQ_INT(luar_queue_cache_set(q, "k", NULL, 1, 0, on_cache_done, &r), LUAR_EINVAL);
    CHECK_EQ_INT(luar_queue_cache_set(q, "k", "v", 1, -1, on_cache_done, &r), LUAR_EINVAL);
    CHECK_EQ_INT(luar_queue_cache_set(q, "k", "v", 1, 0.0 / 0.0, on_cache_done, &r), LUAR_EINVAL);
    CHECK_EQ_INT(
        luar_queue_cache_set(q, "k", "v", 1, 2 * LUAR_QUEUE_CACHE_MAX_TTL, on_cache_done, &r),
        LUAR_EINVAL);
    CHECK_EQ_INT(luar_queue_cache_delete(q, "", on_cache_done, &r), LUAR_EINVAL);
    CHECK_EQ_INT(luar_queue_cache_incr(q, "", 1, 0, on_cache_incr, &r), LUAR_EINVAL);
    CHECK_EQ_INT(luar_queue_cache_incr(q, "k", 1, -5, on_cache_incr, &r), LUAR_EINVAL);
    /* The cap on a value: at most max_value bytes, for every backend. */
    CHECK_EQ_INT(luar_queue_cache_max_value(q), LUAR_QUEUE_CACHE_DEFAULT_MAX_VALUE);
    luar_queue_set_cache_limits(q, 0, 100);
    CHECK_EQ_INT(luar_queue_cache_max_value(q), 100);
    char value[101];
    memset(value, 'v', sizeof value);
    CHECK_EQ_INT(luar_queue_cache_set(q, "k", value, 101, 0, on_cache_done, &r), LUAR_ETOOBIG);
    CHECK_EQ_INT(r.done, 0); /* no callback for any of them */
    CHECK_EQ_INT(luar_queue_cache_set(q, "k", value, 100, 0, on_cache_done, &r), 0);
    CHECK(wait_for(&r.done));
    CHECK_EQ_INT(r.rc, 0);
    CHECK_EQ_INT(strlen(cache_get(q, "k")), 100);
    close_q(q);
}

TEST(contract_cache_incr_creates_at_zero_and_refuses_non_integers)
{
    luar_queue_t *q = open_fresh();
    int64_t v = -1;
    CHECK_EQ_INT(cache_incr(q, "n", 5, 0, &v), 0);
    CHECK_EQ_INT(v, 5);
    CHECK_EQ_INT(cache_incr(q, "n", -7, 0, &v), 0);
    CHECK_EQ_INT(v, -2);
    CHECK_EQ_INT(cache_incr(q, "n", 0, 0, &v), 0);
    CHECK_EQ_INT(v, -2);
    CHECK_EQ_STR(cache_get(q, "n"), "-2"); /* the canonical decimal, as set by anyone */
    CHECK_EQ_INT(cache_set(q, "m", "41", 0), 0);
    CHECK_EQ_INT(cache_incr(q, "m", 1, 0, &v), 0);
    CHECK_EQ_INT(v, 42);
    /* Not an integer: refused, unchanged. */
    static const char *const not_int[] = {"s41", "f1.5", "4.0", "", " 1", "01"};
    for (size_t i = 0; i < sizeof not_int / sizeof not_int[0]; i++) {
        CHECK_EQ_INT(cache_set(q, "x", not_int[i], 0), 0);
        CHECK_EQ_INT(cache_incr(q, "x", 1, 0, &v), LUAR_EINVAL);
        CHECK_EQ_STR(cache_get(q, "x"), not_int[i]);
    }
    /* Overflow: refused, unchanged; the other way still works. */
    CHECK_EQ_INT(cache_set(q, "max", "9223372036854775807", 0), 0);
    CHECK_EQ_INT(cache_incr(q, "max", 1, 0, &v), LUAR_EINVAL);
    CHECK_EQ_STR(cache_get(q, "max"), "9223372036854775807");
    CHECK_EQ_INT(cache_incr(q, "max", -9223372036854775807LL, 0, &v), 0);
    CHECK_EQ_INT(v, 0);
    CHECK_EQ_INT(cache_set(q, "min", "-9223372036854775808", 0), 0);
    CHECK_EQ_INT(cache_incr(q, "min", -1, 0, &v), LUAR_EINVAL);
    close_q(q);
}

TEST(contract_cache_incr_in_flight_together_is_exact)
{
    /* 200 increments submitted at once (from two handles when they share the cache):
     * every one counted once, each sees its own value. */
    enum { N = 200 };
    luar_queue_t *qs[2];
    int nq = B->cache_in_process ? 1 : 2;
    qs[0] = open_fresh();
    if (nq == 2)
        qs[1] = open_again();
    cache_res_t *r = calloc(N, sizeof *r);
    for (int i = 0; i < N; i++)
        CHECK_EQ_INT(luar_queue_cache_incr(qs[i % nq], "hits", 1, 60, on_cache_incr, &r[i]), 0);
    int seen[N + 1];
    memset(seen, 0, sizeof seen);
    int bad = 0;
    for (int i = 0; i < N; i++) {
        CHECK(wait_for(&r[i].done));
        if (r[i].rc != 0 || r[i].number < 1 || r[i].number > N || seen[r[i].number]++)
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_STR(cache_get(qs[0], "hits"), "200");
    free(r);
    for (int i = 0; i < nq; i++)
        close_q(qs[i]);
}

TEST(contract_cache_is_shared_by_handles_unless_in_process)
{
    luar_queue_t *a = open_fresh();
    luar_queue_t *b = open_again();
    CHECK_EQ_INT(cache_set(a, "shared", "yes", 0), 0);
    int64_t v = 0;
    CHECK_EQ_INT(cache_incr(b, "count", 1, 0, &v), 0);
    if (B->cache_in_process) {
        /* SQLite: a cache per handle (per process); the file holds none of it. */
        CHECK_EQ_STR(cache_get(b, "shared"), "<absent>");
        CHECK_EQ_STR(cache_get(a, "count"), "<absent>");
    } else {
        CHECK_EQ_STR(cache_get(b, "shared"), "yes");
        CHECK_EQ_STR(cache_get(a, "count"), "1");
        CHECK_EQ_INT(cache_delete(b, "shared"), 0);
        CHECK_EQ_STR(cache_get(a, "shared"), "<absent>");
    }
    close_q(a);
    close_q(b);
}

TEST(contract_cache_entries_expire_after_their_ttl)
{
    luar_queue_t *q = open_fresh();
    CHECK_EQ_INT(cache_set(q, "short", "s", 0.4), 0);
    CHECK_EQ_INT(cache_set(q, "long", "l", 600), 0);
    CHECK_EQ_INT(cache_set(q, "none", "n", 0), 0);
    CHECK_EQ_INT(cache_set(q, "was_short", "w", 0.4), 0);
    CHECK_EQ_INT(cache_set(q, "was_short", "w2", 0), 0); /* a set replaces the expiry */
    int64_t v = 0;
    CHECK_EQ_INT(cache_incr(q, "counter", 1, 0.4, &v), 0); /* created with a ttl */
    CHECK_EQ_INT(cache_incr(q, "counter", 1, 600, &v), 0); /* kept: not extended */
    CHECK_EQ_INT(v, 2);
    CHECK_EQ_INT(cache_incr(q, "plain", 1, 0, &v), 0);
    CHECK_EQ_INT(cache_incr(q, "plain", 1, 0.4, &v), 0); /* exists: gets no ttl */
    CHECK_EQ_STR(cache_get(q, "short"), "s");
    let_time_pass(0.6);
    CHECK_EQ_STR(cache_get(q, "short"), "<absent>");
    CHECK_EQ_STR(cache_get(q, "counter"), "<absent>");
    CHECK_EQ_STR(cache_get(q, "long"), "l");
    CHECK_EQ_STR(cache_get(q, "none"), "n");
    CHECK_EQ_STR(cache_get(q, "was_short"), "w2");
    CHECK_EQ_STR(cache_get(q, "plain"), "2");
    /* An expired counter starts again at 0. */
    CHECK_EQ_INT(cache_incr(q, "counter", 1, 0, &v), 0);
    CHECK_EQ_INT(v, 1);
    close_q(q);
}

/* ---- the durable key-value (luar_queue_kv) ------------------------------------------- */

static void on_kv(void *arg, int rc, int applied, const char *value, size_t len)
{
    cache_res_t *r = arg;
    r->rc = rc;
    r->number = applied;
    r->found = value != NULL;
    r->len = len;
    if (value)
        memcpy(r->value, value, len < sizeof r->value ? len : sizeof r->value);
    r->done = 1;
}

/* Runs one kv call: "<error N>", else "<applied>" / "<not applied>" or "<applied>:value". */
static const char *kv(luar_queue_t *q, luar_kv_mode_t mode, const char *key, const char *value,
                      double ttl)
{
    static char out[2100];
    cache_res_t r = {0};
    int rc = luar_queue_kv(q, mode, key, value, value ? strlen(value) : 0, ttl, on_kv, &r);
    if (rc == 0 && wait_for(&r.done))
        rc = r.rc;
    if (rc)
        snprintf(out, sizeof out, "<error %d>", rc);
    else if (r.found)
        snprintf(out, sizeof out, "%s:%.*s", r.number ? "<applied>" : "<not applied>",
                 (int)r.len, r.value);
    else
        snprintf(out, sizeof out, "%s", r.number ? "<applied>" : "<not applied>");
    return out;
}

TEST(contract_kv_is_durable_shared_and_atomic)
{
    luar_queue_t *a = open_fresh();
    luar_queue_t *b = open_again();
    CHECK_EQ_STR(kv(a, LUAR_KV_GET, "k", NULL, 0), "<not applied>");
    CHECK_EQ_STR(kv(a, LUAR_KV_PUT, "k", "one", 0), "<applied>");
    /* Every handle sees it, SQLite's included (unlike its cache). */
    CHECK_EQ_STR(kv(b, LUAR_KV_GET, "k", NULL, 0), "<applied>:one");
    CHECK_EQ_STR(kv(b, LUAR_KV_PUT, "k", "two", 0), "<applied>");
    CHECK_EQ_STR(kv(a, LUAR_KV_GET, "k", NULL, 0), "<applied>:two");
    /* add: only when absent (a lock) */
    CHECK_EQ_STR(kv(a, LUAR_KV_ADD, "lock", "owner-a", 30), "<applied>");
    CHECK_EQ_STR(kv(b, LUAR_KV_ADD, "lock", "owner-b", 30), "<not applied>");
    CHECK_EQ_STR(kv(b, LUAR_KV_GET, "lock", NULL, 0), "<applied>:owner-a");
    /* delete with a value: only while it is still that value */
    CHECK_EQ_STR(kv(b, LUAR_KV_DELETE, "lock", "owner-b", 0), "<not applied>");
    CHECK_EQ_STR(kv(a, LUAR_KV_DELETE, "lock", "owner-a", 0), "<applied>");
    CHECK_EQ_STR(kv(b, LUAR_KV_ADD, "lock", "owner-b", 30), "<applied>");
    CHECK_EQ_STR(kv(a, LUAR_KV_DELETE, "lock", NULL, 0), "<applied>");
    CHECK_EQ_STR(kv(a, LUAR_KV_DELETE, "lock", NULL, 0), "<not applied>");
    /* take: read and delete in one step, once */
    CHECK_EQ_STR(kv(a, LUAR_KV_PUT, "state", "s1", 600), "<applied>");
    CHECK_EQ_STR(kv(b, LUAR_KV_TAKE, "state", NULL, 0), "<applied>:s1");
    CHECK_EQ_STR(kv(a, LUAR_KV_TAKE, "state", NULL, 0), "<not applied>");
    /* bad arguments fail synchronously */
    cache_res_t r = {0};
    CHECK_EQ_INT(luar_queue_kv(a, LUAR_KV_PUT, "", "v", 1, 0, on_kv, &r), LUAR_EINVAL);
    CHECK_EQ_INT(luar_queue_kv(a, LUAR_KV_PUT, "k", NULL, 0, 0, on_kv, &r), LUAR_EINVAL);
    CHECK_EQ_INT(luar_queue_kv(a, LUAR_KV_ADD, "k", "v", 1, -1, on_kv, &r), LUAR_EINVAL);
    CHECK_EQ_INT(r.done, 0);
    close_q(a);
    close_q(b);
}

TEST(contract_kv_records_expire_and_an_expired_lock_can_be_taken)
{
    luar_queue_t *q = open_fresh();
    CHECK_EQ_STR(kv(q, LUAR_KV_ADD, "lock", "dead-owner", 0.4), "<applied>");
    CHECK_EQ_STR(kv(q, LUAR_KV_PUT, "short", "s", 0.4), "<applied>");
    CHECK_EQ_STR(kv(q, LUAR_KV_PUT, "forever", "f", 0), "<applied>");
    CHECK_EQ_STR(kv(q, LUAR_KV_ADD, "lock", "other", 30), "<not applied>");
    let_time_pass(0.6);
    CHECK_EQ_STR(kv(q, LUAR_KV_GET, "short", NULL, 0), "<not applied>");
    CHECK_EQ_STR(kv(q, LUAR_KV_TAKE, "short", NULL, 0), "<not applied>");
    CHECK_EQ_STR(kv(q, LUAR_KV_GET, "forever", NULL, 0), "<applied>:f");
    CHECK_EQ_STR(kv(q, LUAR_KV_ADD, "lock", "other", 30), "<applied>");
    CHECK_EQ_STR(kv(q, LUAR_KV_GET, "lock", NULL, 0), "<applied>:other");
    close_q(q);
}

/* Runs the whole contract against backend `b`. */
static void run_contract(const backend_t *b)
{
    B = b;
    fprintf(stderr, "contract suite: %s\n", b->name);
    RUN(contract_state_names_round_trip);
    RUN(contract_enqueue_defaults_and_time_ordered_ids);
    RUN(contract_bad_arguments_fail_synchronously_without_callback);
    RUN(contract_unique_key_returns_existing_job_until_finished);
    RUN(contract_dedupe_key_enqueues_a_batch_once_per_ttl);
    RUN(contract_delayed_job_is_not_claimable_before_run_at);
    RUN(contract_claim_takes_highest_priority_then_oldest);
    RUN(contract_claim_respects_max_and_queue);
    RUN(contract_two_claims_in_one_batch_never_share_a_job);
    RUN(contract_two_handles_share_jobs_and_never_claim_one_twice);
    RUN(contract_heartbeat_extends_leases_and_reports_lost_ones);
    RUN(contract_writes_are_fenced_by_owner);
    RUN(contract_writes_submitted_together_answer_each_in_order);
    RUN(contract_fail_with_retry_at_makes_job_retrying_then_claimable);
    RUN(contract_fail_without_retry_buries_job_as_dead);
    RUN(contract_release_does_not_count_the_attempt);
    RUN(contract_sweep_reclaims_expired_leases_and_buries_out_of_attempts);
    RUN(contract_sweep_deletes_expired_results_dead_jobs_and_dedupe_keys);
    RUN(contract_retry_requeues_finished_and_waiting_jobs);
    RUN(contract_retry_many_requeues_matching_jobs);
    RUN(contract_filters_by_error_text_and_time_and_bulk_ops_take_a_max);
    RUN(contract_job_keeps_the_trace_it_was_enqueued_with);
    RUN(contract_delete_removes_a_job_and_fences_its_worker);
    RUN(contract_purge_deletes_jobs_in_a_state);
    RUN(contract_list_filters_and_pages_newest_first);
    RUN(contract_counts_by_queue_and_state);
    RUN(contract_next_due_is_earliest_scheduled_or_retrying);
    RUN(contract_ping_answers);
    RUN(contract_close_completes_queued_operations_first);
    RUN(contract_rate_check_allows_the_burst_then_one_per_interval);
    RUN(contract_rate_check_is_exact_across_two_handles);
    RUN(contract_rate_check_bad_arguments_fail_synchronously);
    RUN(contract_sweep_deletes_rate_state_whose_time_has_passed);
    RUN(contract_cache_stores_replaces_and_deletes_bytes);
    RUN(contract_cache_bad_arguments_fail_synchronously);
    RUN(contract_cache_incr_creates_at_zero_and_refuses_non_integers);
    RUN(contract_cache_incr_in_flight_together_is_exact);
    RUN(contract_cache_is_shared_by_handles_unless_in_process);
    RUN(contract_cache_entries_expire_after_their_ttl);
    RUN(contract_kv_is_durable_shared_and_atomic);
    RUN(contract_kv_records_expire_and_an_expired_lock_can_be_taken);
}

#ifndef QUEUE_CONTRACT_NO_MAIN

/* ---- the SQLite backend ------------------------------------------------------------- */

#include <ftw.h>
#include <sqlite3.h>

static char tmpdir[256];
static char last_path[512];
static int db_seq;

/* Opens sqlite:path with the test clock; NULL (and the message on stderr) on failure. */
static luar_queue_t *sqlite_open(const char *path, luar_buf_t *err_out, int *rc_out)
{
    luar_buf_t err;
    luar_buf_init(&err, 4096);
    char url[600];
    snprintf(url, sizeof url, "sqlite:%s", path);
    luar_queue_t *q = NULL;
    int rc = luar_queue_open(&loop, url, &q, &err);
    if (rc_out)
        *rc_out = rc;
    if (err_out)
        luar_buf_puts(err_out, err.data ? err.data : "");
    else if (rc)
        fprintf(stderr, "open %s: %s\n", url, err.data ? err.data : "?");
    luar_buf_free(&err);
    if (q)
        luar_queue_set_clock(q, test_clock, NULL);
    return q;
}

/* The factory: each fresh backend is a new file in a new subdirectory (made by open). */
static luar_queue_t *sqlite_fresh(void)
{
    snprintf(last_path, sizeof last_path, "%s/db%d/sub/queue.db", tmpdir, ++db_seq);
    luar_queue_t *q = sqlite_open(last_path, NULL, NULL);
    if (q == NULL)
        exit(2); /* every contract test needs a backend */
    return q;
}

static luar_queue_t *sqlite_again(void)
{
    luar_queue_t *q = sqlite_open(last_path, NULL, NULL);
    if (q == NULL)
        exit(2);
    return q;
}

static const backend_t sqlite_backend = {"sqlite", sqlite_fresh, sqlite_again, 1};

static luar_queue_sqlite_stats_t stats_of(luar_queue_t *q)
{
    luar_queue_sqlite_stats_t st;
    memset(&st, 0, sizeof st);
    CHECK_EQ_INT(luar_queue_sqlite_stats(q, &st), 0);
    return st;
}

TEST(sqlite_group_commit_shares_transactions)
{
    luar_queue_t *q = sqlite_fresh();
    enum { N = 1000 };
    res_t *r = calloc(N, sizeof *r);
    char names[N][16];
    luar_queue_sqlite_stats_t before = stats_of(q);
    uint64_t t0 = uv_hrtime();
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "job%d", i);
        luar_job_spec_t s = {.name = names[i]}; /* copied before enqueue returns */
        CHECK_EQ_INT(luar_queue_enqueue(q, &s, 1, NULL, 0, on_enqueued, &r[i]), 0);
    }
    char(*ids)[40] = calloc(N, sizeof *ids);
    for (int i = 0; i < N; i++) {
        CHECK(wait_for(&r[i].done));
        CHECK_EQ_INT(r[i].rc, 0);
        CHECK_EQ_INT(r[i].n, 1);
        if (r[i].n == 1)
            memcpy(ids[i], r[i].ids[0], 40);
        res_free(&r[i]);
    }
    double secs = (double)(uv_hrtime() - t0) / 1e9;
    luar_queue_sqlite_stats_t after = stats_of(q);
    uint64_t commits = after.commits - before.commits;
    fprintf(stderr, "  %d enqueues in %llu commits, %.0f/s\n", N, (unsigned long long)commits,
            N / secs);
    CHECK(commits >= 1);
    CHECK(commits < N / 10);
    CHECK_EQ_INT(after.ops - before.ops, N);
    CHECK_EQ_INT(duplicates(ids, N), 0);
    CHECK_EQ_INT(count_of(q, "default", LUAR_JOB_QUEUED), N);
    free(ids);
    free(r);
    close_q(q);
}

TEST(sqlite_one_failing_operation_does_not_fail_its_batch)
{
    luar_queue_t *q = sqlite_fresh();
    char dead[40], live[40];
    luar_job_spec_t s = {.name = "k", .key = "same"};
    /* A dead job with key "same" and a live one with it: retrying the dead one would give
     * the key two unfinished jobs, so that retry fails (alone) inside the batch. */
    CHECK_EQ_INT(enqueue1(q, &s, dead), 0);
    tjob_t j;
    CHECK_EQ_INT(claim1(q, "w", &j), 0);
    CHECK_EQ_INT(fail(q, dead, "w", "e", NULL, 0, 100), 0);
    CHECK_EQ_INT(enqueue1(q, &s, live), 0);
    CHECK(strcmp(dead, live) != 0);

    res_t a = {0}, b = {0}, c = {0};
    luar_job_spec_t other = {.name = "other"};
    CHECK_EQ_INT(luar_queue_enqueue(q, &other, 1, NULL, 0, on_enqueued, &a), 0);
    CHECK_EQ_INT(luar_queue_retry(q, dead, on_done, &b), 0);
    CHECK_EQ_INT(luar_queue_enqueue(q, &other, 1, NULL, 0, on_enqueued, &c), 0);
    CHECK(wait_for(&a.done) && wait_for(&b.done) && wait_for(&c.done));
    CHECK_EQ_INT(a.rc, 0);
    CHECK_EQ_INT(b.rc, LUAR_EEXISTS);
    CHECK_EQ_INT(c.rc, 0);
    CHECK_EQ_INT(state_of(q, dead), LUAR_JOB_DEAD);
    CHECK_EQ_INT(count_of(q, "default", LUAR_JOB_QUEUED), 3);
    res_free(&a);
    res_free(&c);
    close_q(q);
}

/* A file written by the first schema is migrated at open and keeps its jobs. */
TEST(sqlite_old_file_is_migrated_with_its_jobs)
{
    snprintf(last_path, sizeof last_path, "%s/v1.db", tmpdir);
    sqlite3 *db = NULL;
    CHECK_EQ_INT(sqlite3_open(last_path, &db), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_exec(db, luar_sq_migration(1), NULL, NULL, NULL), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_exec(db,
                              "INSERT INTO jobs (id, name, queue, args, state, max_attempts,"
                              " enqueued_at, run_at) VALUES ('00000000000000000000000001',"
                              " 'old', 'default', '{}', 0, 4, 1, 1);"
                              "PRAGMA user_version = 1;",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    sqlite3_close(db);
    luar_queue_t *q = sqlite_open(last_path, NULL, NULL);
    CHECK(q != NULL);
    if (q == NULL)
        return;
    luar_queue_sqlite_stats_t st = stats_of(q);
    CHECK_EQ_INT(st.schema_version, luar_sq_schema_version());
    CHECK_EQ_INT(st.migrations_applied, luar_sq_schema_version() - 1);
    CHECK_EQ_INT(state_of(q, "00000000000000000000000001"), LUAR_JOB_QUEUED);
    res_t r;
    CHECK_EQ_INT(claim(q, NULL, 5, "w", 30, &r), 0);
    CHECK_EQ_INT(r.n, 1);
    if (r.n == 1)
        CHECK_EQ_STR(r.jobs[0].args, "{}");
    res_free(&r);
    close_q(q);
}

/* ---- job arguments in a table of their own (migration 7) ------------------------------ */

/* Runs `sql` on the file at last_path through a connection of its own; the first column
 * of its first row as an integer (-1 when it fails). */
static long long sql_int(const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long long v = -1;
    if (sqlite3_open(last_path, &db) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    else
        fprintf(stderr, "%s: %s\n", sql, sqlite3_errmsg(db));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* Nonzero when job `id`'s stored arguments are exactly `args` (read in SQL: the copies the
 * callbacks make are cut at 255 bytes). */
static int stored_args_are(const char *id, const char *args)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int same = 0;
    if (sqlite3_open(last_path, &db) == SQLITE_OK &&
        sqlite3_prepare_v2(db,
                           "SELECT a.args = ?2 FROM jobs j JOIN job_args a ON a.id = j.args_id "
                           "WHERE j.id = ?1",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, args, -1, SQLITE_STATIC);
        same = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 1;
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return same;
}

/* Arguments of `n` bytes, a JSON string of digits: longer than a page's share of a row. */
static char *big_args(size_t n, char digit)
{
    char *a = malloc(n + 1);
    memset(a, digit, n);
    a[0] = a[n - 1] = '"';
    a[n] = '\0';
    return a;
}

/* A file of schema 6 (arguments inside the job rows, spilled to overflow pages when long)
 * keeps every job, its arguments, state and owner through migration 7. */
TEST(sqlite_v6_file_is_migrated_with_arguments_states_and_owners)
{
    snprintf(last_path, sizeof last_path, "%s/v6.db", tmpdir);
    sqlite3 *db = NULL;
    CHECK_EQ_INT(sqlite3_open(last_path, &db), SQLITE_OK);
    for (int v = 1; v <= 6; v++)
        CHECK_EQ_INT(sqlite3_exec(db, luar_sq_migration(v), NULL, NULL, NULL), SQLITE_OK);
    char *big = big_args(3000, '7');
    sqlite3_stmt *st = NULL;
    CHECK_EQ_INT(sqlite3_prepare_v2(db,
                                    "INSERT INTO jobs (id, name, queue, args, state, attempt,"
                                    " max_attempts, enqueued_at, run_at, owner, lease_expires_at,"
                                    " result) VALUES (?1, 'old', 'default', ?2, ?3, ?4, 4, 1, 1,"
                                    " ?5, ?6, ?7)",
                                    -1, &st, NULL),
                 SQLITE_OK);
    struct {
        const char *id, *args;
        int state, attempt;
        const char *owner;
        double lease;
        const char *result;
    } rows[] = {
        {"00000000000000000000000001", big, LUAR_JOB_QUEUED, 0, NULL, 0, NULL},
        {"00000000000000000000000002", "{\"n\":2}", LUAR_JOB_RUNNING, 1, "w", test_now + 60, NULL},
        {"00000000000000000000000003", "[3]", LUAR_JOB_SUCCEEDED, 1, NULL, 0, "\"done\""},
    };
    for (size_t i = 0; i < 3; i++) {
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, rows[i].id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, rows[i].args, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 3, rows[i].state);
        sqlite3_bind_int(st, 4, rows[i].attempt);
        if (rows[i].owner)
            sqlite3_bind_text(st, 5, rows[i].owner, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 5);
        sqlite3_bind_double(st, 6, rows[i].lease);
        if (rows[i].result)
            sqlite3_bind_text(st, 7, rows[i].result, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 7);
        CHECK_EQ_INT(sqlite3_step(st), SQLITE_DONE);
    }
    sqlite3_finalize(st);
    CHECK_EQ_INT(sqlite3_exec(db, "PRAGMA user_version = 6", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    luar_queue_t *q = sqlite_open(last_path, NULL, NULL);
    CHECK(q != NULL);
    if (q == NULL) {
        free(big);
        return;
    }
    luar_queue_sqlite_stats_t stats = stats_of(q);
    CHECK_EQ_INT(stats.schema_version, luar_sq_schema_version());
    CHECK_EQ_INT(stats.migrations_applied, luar_sq_schema_version() - 6);
    for (size_t i = 0; i < 3; i++) {
        tjob_t j;
        CHECK_EQ_INT(get(q, rows[i].id, &j), 0);
        CHECK_EQ_INT(j.state, rows[i].state);
        CHECK_EQ_INT(j.attempt, rows[i].attempt);
        CHECK_EQ_STR(j.owner, rows[i].owner ? rows[i].owner : NUL_STR);
        CHECK_EQ_STR(j.result, rows[i].result ? rows[i].result : NUL_STR);
        CHECK(strncmp(j.args, rows[i].args, sizeof j.args - 1) == 0);
        CHECK(stored_args_are(rows[i].id, rows[i].args));
    }
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM job_args"), 3);
    /* The running job is still fenced by its owner; the queued one is claimed with its
     * arguments. */
    CHECK_EQ_INT(complete(q, rows[1].id, "intruder", NULL, 10), LUAR_ENOTFOUND);
    CHECK_EQ_INT(complete(q, rows[1].id, "w", NULL, 10), 0);
    res_t r;
    CHECK_EQ_INT(claim(q, NULL, 5, "w2", 30, &r), 0);
    CHECK_EQ_INT(r.n, 1);
    if (r.n == 1) {
        CHECK_EQ_STR(r.jobs[0].id, rows[0].id);
        CHECK(strncmp(r.jobs[0].args, big, sizeof r.jobs[0].args - 1) == 0);
    }
    res_free(&r);
    close_q(q);
    free(big);
}

/* Arguments are written once, read whole by claim, get and list, and deleted with their job
 * however it goes (delete, purge, sweep); a duplicate delivery stores none. */
TEST(sqlite_arguments_live_and_die_with_their_jobs)
{
    luar_queue_t *q = sqlite_fresh();
    char *big = big_args(2300, '5');
    char ids[4][40];
    for (int i = 0; i < 4; i++) {
        luar_job_spec_t spec = {.name = "big", .queue = "a", .args = big};
        CHECK_EQ_INT(enqueue1(q, &spec, ids[i]), 0);
    }
    res_t r;
    luar_job_spec_t spec = {.name = "big", .queue = "a", .args = big};
    CHECK_EQ_INT(enqueue_batch(q, &spec, 1, "evt:1", 100, &r), 0);
    CHECK_EQ_INT(r.duplicate, 0);
    res_free(&r);
    CHECK_EQ_INT(enqueue_batch(q, &spec, 1, "evt:1", 100, &r), 0);
    CHECK_EQ_INT(r.duplicate, 1);
    res_free(&r);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM job_args"), 5);
    CHECK(stored_args_are(ids[0], big));

    CHECK_EQ_INT(claim(q, "a", 2, "w", 30, &r), 0);
    CHECK_EQ_INT(r.n, 2);
    for (size_t i = 0; i < r.n; i++)
        CHECK(strncmp(r.jobs[i].args, big, sizeof r.jobs[i].args - 1) == 0);
    /* Completion and failure rewrite the job's row, not its arguments. */
    if (r.n == 2) {
        CHECK_EQ_INT(complete(q, r.jobs[0].id, "w", "1", 10), 0);
        CHECK_EQ_INT(fail(q, r.jobs[1].id, "w", "boom", NULL, 0, 1000), 0);
        CHECK(stored_args_are(r.jobs[0].id, big));
        CHECK(stored_args_are(r.jobs[1].id, big));
    }
    res_free(&r);

    CHECK_EQ_INT(delete_job(q, ids[3]), 0);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM job_args"), 4);
    luar_job_filter_t f = {.state = LUAR_JOB_DEAD};
    size_t n = 0;
    CHECK_EQ_INT(count_op(luar_queue_purge, q, &f, &n), 0);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM job_args"), 3);
    size_t reclaimed = 0, expired = 0;
    test_now += 11; /* the completed job's result expires */
    CHECK_EQ_INT(sweep(q, &reclaimed, &expired), 0);
    CHECK_EQ_INT(expired, 1);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM job_args"), 2);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM jobs j JOIN job_args a ON a.id = j.args_id"), 2);
    close_q(q);
    free(big);
}

/* The WAL is checkpointed by the checkpointer thread and stays bounded under a writer that
 * never pauses: 512-byte pages make the thresholds (in frames) a few megabytes. */
TEST(sqlite_wal_is_checkpointed_off_the_writer_and_stays_bounded)
{
    snprintf(last_path, sizeof last_path, "%s/wal.db", tmpdir);
    sqlite3 *db = NULL;
    CHECK_EQ_INT(sqlite3_open(last_path, &db), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_exec(db, "PRAGMA page_size = 512; VACUUM;", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    luar_queue_t *q = sqlite_open(last_path, NULL, NULL);
    CHECK(q != NULL);
    if (q == NULL)
        return;
    enum { BATCHES = 60, PER = 500 };
    char args[400];
    memset(args, 'x', sizeof args);
    args[0] = args[sizeof args - 2] = '"';
    args[sizeof args - 1] = '\0';
    luar_job_spec_t *specs = calloc(PER, sizeof *specs);
    for (int i = 0; i < PER; i++)
        specs[i] = (luar_job_spec_t){.name = "w", .queue = "wal", .args = args};
    char wal[600];
    snprintf(wal, sizeof wal, "%s-wal", last_path);
    off_t most = 0;
    for (int b = 0; b < BATCHES; b++) {
        res_t r;
        CHECK_EQ_INT(enqueue_batch(q, specs, PER, NULL, 0, &r), 0);
        res_free(&r);
        struct stat st;
        if (stat(wal, &st) == 0 && st.st_size > most)
            most = st.st_size;
    }
    luar_queue_sqlite_stats_t stats = stats_of(q);
    CHECK(stats.checkpoints > 0);
    /* Every job is there; the WAL never held much more than the writer's hard limit (16000
     * frames of 536 bytes) although the jobs took far more frames than that. */
    CHECK_EQ_INT(count_of(q, "wal", LUAR_JOB_QUEUED), BATCHES * PER);
    long long pages = sql_int("PRAGMA page_count");
    CHECK(most > 0 && most <= 12 * 1024 * 1024);
    CHECK(pages * 536 > 3 * (long long)most / 2);
    fprintf(stderr,
            "  wal: %llu background checkpoints, %llu by the writer, at most %lld bytes "
            "for %lld pages\n",
            (unsigned long long)stats.checkpoints, (unsigned long long)stats.catchups,
            (long long)most, pages);
    free(specs);
    close_q(q);
}

TEST(sqlite_schema_is_versioned_and_migrated_once)
{
    luar_queue_t *q1 = sqlite_fresh();
    luar_queue_sqlite_stats_t st = stats_of(q1);
    CHECK_EQ_INT(st.schema_version, luar_sq_schema_version());
    CHECK(st.schema_version >= 1);
    CHECK_EQ_INT(st.migrations_applied, st.schema_version);
    char id[40];
    CHECK_EQ_INT(enqueue_named(q1, "kept", NULL, id), 0);
    close_q(q1);

    luar_queue_t *q2 = sqlite_again();
    st = stats_of(q2);
    CHECK_EQ_INT(st.schema_version, luar_sq_schema_version());
    CHECK_EQ_INT(st.migrations_applied, 0);
    CHECK_EQ_INT(state_of(q2, id), LUAR_JOB_QUEUED);
    close_q(q2);

    /* A file from a newer build is refused, not damaged. */
    sqlite3 *db = NULL;
    CHECK_EQ_INT(sqlite3_open(last_path, &db), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    luar_buf_t err;
    luar_buf_init(&err, 0);
    int rc = 0;
    CHECK(sqlite_open(last_path, &err, &rc) == NULL);
    CHECK_EQ_INT(rc, LUAR_EIO);
    CHECK(err.data && strstr(err.data, last_path) && strstr(err.data, "99"));
    luar_buf_free(&err);
}

/* Reads run on a connection of their own: a long one (counting a big table) does not hold
 * up a commit submitted after it. A read on the writer's thread would always answer first;
 * a disk stall could let it once, hence three tries. */
TEST(sqlite_a_long_read_does_not_hold_up_a_commit)
{
    luar_queue_t *q = sqlite_fresh();
    enum { PER = 10000, OPS = 10 };
    luar_job_spec_t *specs = calloc(PER, sizeof *specs);
    for (int i = 0; i < PER; i++)
        specs[i] = (luar_job_spec_t){.name = "bulk", .queue = "bulk"};
    for (int b = 0; b < OPS; b++) {
        res_t r;
        CHECK_EQ_INT(enqueue_batch(q, specs, PER, NULL, 0, &r), 0);
        res_free(&r);
    }
    free(specs);
    int write_first = 0;
    uint64_t read_ns = 0, write_ns = 0;
    for (int attempt = 0; attempt < 3 && !write_first; attempt++) {
        res_t counted = {0}, enqueued = {0};
        luar_job_spec_t one = {.name = "urgent"};
        uint64_t t0 = uv_hrtime();
        CHECK_EQ_INT(luar_queue_counts(q, on_counts, &counted), 0);
        CHECK_EQ_INT(luar_queue_enqueue(q, &one, 1, NULL, 0, on_enqueued, &enqueued), 0);
        CHECK(wait_for(&enqueued.done));
        write_ns = uv_hrtime() - t0;
        write_first = !counted.done;
        CHECK(wait_for(&counted.done));
        read_ns = uv_hrtime() - t0;
        CHECK_EQ_INT(counted.rc, 0);
        CHECK_EQ_INT(enqueued.rc, 0);
        res_free(&enqueued);
    }
    fprintf(stderr, "  a count of %d jobs answered in %.1f ms, an enqueue behind it in %.1f ms\n",
            PER * OPS, read_ns / 1e6, write_ns / 1e6);
    CHECK(write_first);
    close_q(q);
}

TEST(sqlite_durability_settings)
{
    luar_queue_t *q = sqlite_fresh();
    close_q(q);
    sqlite3 *db = NULL;
    CHECK_EQ_INT(sqlite3_open(last_path, &db), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    CHECK_EQ_INT(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_step(st), SQLITE_ROW);
    CHECK_EQ_STR((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* Enqueues wait for the disk; the runner's bookkeeping (claim, complete) does not. */
TEST(sqlite_enqueues_are_synchronous_and_bookkeeping_is_lazy)
{
    luar_queue_t *q = sqlite_fresh();
    char id[40];
    luar_queue_sqlite_stats_t before = stats_of(q);
    CHECK_EQ_INT(enqueue_named(q, "durable", NULL, id), 0);
    luar_queue_sqlite_stats_t st = stats_of(q);
    CHECK_EQ_INT(st.commits - before.commits, 1);
    CHECK_EQ_INT(st.lazy_commits - before.lazy_commits, 0);
    res_t r;
    CHECK_EQ_INT(claim(q, NULL, 1, "w", 30, &r), 0);
    CHECK_EQ_INT(r.n, 1);
    res_free(&r);
    CHECK_EQ_INT(complete(q, id, "w", NULL, 60), 0);
    luar_queue_sqlite_stats_t after = stats_of(q);
    CHECK_EQ_INT(after.lazy_commits - st.lazy_commits, 2);
    CHECK_EQ_INT(enqueue_named(q, "durable again", NULL, id), 0);
    CHECK_EQ_INT(stats_of(q).lazy_commits, after.lazy_commits);
    close_q(q);
}

/* Rate checks do not wait for the disk (gcra state is not worth an fsync each), and a
 * refused one writes nothing. */
TEST(sqlite_cache_is_in_process_bounded_and_never_touches_the_file)
{
    luar_queue_t *q = sqlite_fresh();
    luar_queue_sqlite_stats_t before = stats_of(q);
    CHECK_EQ_INT(before.cache.entries, 0);
    /* Room for about 10 entries of 1000 bytes. */
    size_t bound = 10 * luar_lru_entry_size(8, 1000) + 100;
    luar_queue_set_cache_limits(q, bound, 1000);
    char value[1001];
    memset(value, 'v', 1000);
    value[1000] = '\0';
    enum { N = 2000 };
    cache_res_t *r = calloc(N, sizeof *r);
    char key[16];
    uint64_t t0 = uv_hrtime();
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "k%07d", i);
        CHECK_EQ_INT(luar_queue_cache_set(q, key, value, 1000, 0, on_cache_done, &r[i]), 0);
    }
    for (int i = 0; i < N; i++)
        CHECK(wait_for(&r[i].done));
    double secs = (double)(uv_hrtime() - t0) / 1e9;
    luar_queue_sqlite_stats_t st = stats_of(q);
    fprintf(stderr, "  %d cache sets of 1000 bytes, %.0f/s, %zu held in %zu bytes\n", N, N / secs,
            st.cache.entries, st.cache.bytes);
    CHECK(st.cache.bytes <= bound);
    CHECK_EQ_INT(st.cache.entries, 10);
    CHECK_EQ_INT(st.cache.evictions, N - 10);
    /* The newest are there, the oldest were evicted first. */
    snprintf(key, sizeof key, "k%07d", N - 1);
    CHECK_EQ_INT(strlen(cache_get(q, key)), 1000);
    CHECK_EQ_STR(cache_get(q, "k0000000"), "<absent>");
    /* Not one of them reached the writer thread or the file. */
    CHECK_EQ_INT(st.ops, before.ops);
    CHECK_EQ_INT(st.commits, before.commits);
    /* A smaller bound set later applies at the next operation. */
    luar_queue_set_cache_limits(q, luar_lru_entry_size(8, 1000), 0);
    CHECK_EQ_INT(strlen(cache_get(q, key)), 1000);
    CHECK_EQ_INT(stats_of(q).cache.entries, 1);
    /* A value larger than the whole bound (but within max_value) is taken, not kept. */
    luar_queue_set_cache_limits(q, 100, 1000);
    CHECK_EQ_INT(cache_set(q, "big", value, 0), 0);
    CHECK_EQ_STR(cache_get(q, "big"), "<absent>");
    free(r);
    close_q(q);
}

TEST(sqlite_rate_checks_are_lazy)
{
    luar_queue_t *q = sqlite_fresh();
    luar_queue_sqlite_stats_t before = stats_of(q);
    CHECK_EQ_INT(rate_burst(&q, 1, "lazy", "1/h", 1, NULL), 1);
    luar_queue_sqlite_stats_t st = stats_of(q);
    CHECK_EQ_INT(st.commits - before.commits, 1);
    CHECK_EQ_INT(st.lazy_commits - before.lazy_commits, 1);
    CHECK_EQ_INT(rate_burst(&q, 1, "lazy", "1/h", 1, NULL), 0);
    /* Many checks in flight share transactions like enqueues do, without an fsync each. */
    enum { N = 5000 };
    char(*keys)[16] = calloc(N, sizeof *keys);
    rate_res_t *r = calloc(N, sizeof *r);
    luar_gcra_t g = {.interval_ns = 1000000, .burst = 10};
    before = stats_of(q);
    uint64_t t0 = uv_hrtime();
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "k%d", i % 1000);
        CHECK_EQ_INT(luar_queue_rate_check(q, keys[i], &g, 1, on_rate, &r[i]), 0);
    }
    for (int i = 0; i < N; i++)
        CHECK(wait_for(&r[i].done));
    double secs = (double)(uv_hrtime() - t0) / 1e9;
    st = stats_of(q);
    fprintf(stderr, "  %d rate checks in %llu commits (%llu lazy), %.0f/s\n", N,
            (unsigned long long)(st.commits - before.commits),
            (unsigned long long)(st.lazy_commits - before.lazy_commits), N / secs);
    CHECK_EQ_INT(st.commits - before.commits, st.lazy_commits - before.lazy_commits);
    CHECK(st.commits - before.commits < N / 10);
    free(keys);
    free(r);
    close_q(q);
    /* One row per key; the TAT is integer nanoseconds an hour ahead of the test clock. */
    sqlite3 *db = NULL;
    CHECK_EQ_INT(sqlite3_open(last_path, &db), SQLITE_OK);
    sqlite3_stmt *st2 = NULL;
    CHECK_EQ_INT(sqlite3_prepare_v2(db,
                                    "SELECT (SELECT count(*) FROM ratelimit), tat FROM ratelimit "
                                    "WHERE key = 'lazy'",
                                    -1, &st2, NULL),
                 SQLITE_OK);
    CHECK_EQ_INT(sqlite3_step(st2), SQLITE_ROW);
    CHECK_EQ_INT(sqlite3_column_int(st2, 0), 1 + 1000);
    CHECK_EQ_INT(sqlite3_column_int64(st2, 1), luar_gcra_ns(test_now) + 3600 * LUAR_NS_PER_SEC);
    sqlite3_finalize(st2);
    sqlite3_close(db);
}

TEST(sqlite_idle_queue_lets_the_loop_end_and_work_keeps_it_running)
{
    luar_queue_t *q = sqlite_fresh();
    CHECK_EQ_INT(uv_run(&loop, UV_RUN_DEFAULT), 0); /* returns at once: nothing to wait for */
    res_t r = {0};
    luar_job_spec_t s = {.name = "x"};
    CHECK_EQ_INT(luar_queue_enqueue(q, &s, 1, NULL, 0, on_enqueued, &r), 0);
    uv_run(&loop, UV_RUN_DEFAULT); /* runs until the callback, then ends */
    CHECK_EQ_INT(r.done, 1);
    CHECK_EQ_INT(r.rc, 0);
    res_free(&r);
    int closed = 0;
    luar_queue_close(q, on_closed, &closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(closed, 1);
}

/* A child process: claims until the queue stays empty, writing each id on a line. */
static int child_claims(int k, const char *out)
{
    uv_loop_fork(&loop);
    luar_queue_t *q = sqlite_open(last_path, NULL, NULL);
    if (q == NULL)
        return 2;
    FILE *f = fopen(out, "w");
    luar_job_spec_t specs[50];
    for (int i = 0; i < 50; i++)
        specs[i] = (luar_job_spec_t){.name = k ? "child1" : "child0"};
    res_t r;
    int bad = enqueue_batch(q, specs, 50, NULL, 0, &r) != 0;
    res_free(&r);
    char owner[16];
    snprintf(owner, sizeof owner, "proc%d", k);
    for (int empty_rounds = 0; empty_rounds < 5 && f && !bad;) {
        bad |= claim(q, NULL, 5, owner, 300, &r) != 0;
        for (size_t i = 0; i < r.n; i++)
            fprintf(f, "%s\n", r.jobs[i].id);
        empty_rounds = r.n ? 0 : empty_rounds + 1;
        if (r.n == 0)
            usleep(20000);
        res_free(&r);
    }
    if (f)
        fclose(f);
    close_q(q);
    return bad || f == NULL || test_failed_checks ? 1 : 0;
}

TEST(sqlite_two_processes_share_the_file_and_claim_each_job_once)
{
    enum { JOBS = 300 };
    luar_queue_t *q = sqlite_fresh();
    luar_job_spec_t *specs = calloc(JOBS, sizeof *specs);
    for (int i = 0; i < JOBS; i++)
        specs[i].name = "shared";
    res_t r;
    CHECK_EQ_INT(enqueue_batch(q, specs, JOBS, NULL, 0, &r), 0);
    res_free(&r);
    free(specs);
    close_q(q);

    char outs[2][600];
    pid_t pids[2];
    fflush(NULL);
    for (int k = 0; k < 2; k++) {
        snprintf(outs[k], sizeof outs[k], "%s/claims%d.txt", tmpdir, k);
        pids[k] = fork();
        if (pids[k] == 0)
            _exit(child_claims(k, outs[k]));
        CHECK(pids[k] > 0);
    }
    for (int k = 0; k < 2; k++) {
        int status = -1;
        CHECK_EQ_INT(waitpid(pids[k], &status, 0), pids[k]);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    char(*ids)[40] = calloc(JOBS + 100 + 1, sizeof *ids);
    size_t n = 0, by[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        FILE *f = fopen(outs[k], "r");
        CHECK(f != NULL);
        char line[64];
        while (f && n <= JOBS + 100 && fgets(line, sizeof line, f)) {
            line[strcspn(line, "\n")] = '\0';
            memcpy(ids[n++], line, 40);
            by[k]++;
        }
        if (f)
            fclose(f);
    }
    fprintf(stderr, "  processes claimed %zu and %zu of %d\n", by[0], by[1], JOBS + 100);
    CHECK_EQ_INT(n, JOBS + 100);
    CHECK_EQ_INT(duplicates(ids, n), 0);
    free(ids);
    q = sqlite_again();
    CHECK_EQ_INT(count_of(q, "default", LUAR_JOB_RUNNING), JOBS + 100);
    CHECK_EQ_INT(count_of(q, "default", LUAR_JOB_QUEUED), 0);
    close_q(q);
}

/* A child of the test below: waits on the pipe, then opens `path` at the same moment as
 * its siblings. */
static int child_opens(const char *path, int go)
{
    uv_loop_fork(&loop);
    char c;
    if (read(go, &c, 1) != 1)
        return 3;
    luar_buf_t err;
    luar_buf_init(&err, 0);
    int rc = 0;
    luar_queue_t *q = sqlite_open(path, &err, &rc);
    if (q == NULL)
        fprintf(stderr, "  child: %s\n", err.data ? err.data : "?");
    luar_buf_free(&err);
    if (q == NULL)
        return 2;
    close_q(q);
    return 0;
}

/*
 * The workers of a supervisor open a new database file at the same moment; each must get
 * it (one switches it to WAL and migrates, the others wait), never "database is locked".
 */
TEST(sqlite_processes_opening_a_new_file_together_all_succeed)
{
    enum { ROUNDS = 10, PROCS = 4 };
    int failed = 0;
    for (int round = 0; round < ROUNDS; round++) {
        char path[600];
        snprintf(path, sizeof path, "%s/together%d/queue.db", tmpdir, round);
        int go[2];
        CHECK_EQ_INT(pipe(go), 0);
        pid_t pids[PROCS];
        fflush(NULL);
        for (int k = 0; k < PROCS; k++) {
            pids[k] = fork();
            if (pids[k] == 0) {
                close(go[1]);
                _exit(child_opens(path, go[0]));
            }
        }
        close(go[0]);
        char start[PROCS] = {0};
        CHECK_EQ_INT(write(go[1], start, PROCS), PROCS); /* all at once */
        close(go[1]);
        for (int k = 0; k < PROCS; k++) {
            int status = -1;
            CHECK_EQ_INT(waitpid(pids[k], &status, 0), pids[k]);
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                failed++;
        }
    }
    CHECK_EQ_INT(failed, 0);
}

TEST(sqlite_open_failures_name_the_file)
{
    luar_buf_t err;
    int rc = 0;
    char path[700], plain[600];
    snprintf(plain, sizeof plain, "%s/plain", tmpdir);
    FILE *f = fopen(plain, "w");
    CHECK(f != NULL);
    if (f)
        fclose(f);

    /* The parent "directory" is a file. */
    luar_buf_init(&err, 0);
    snprintf(path, sizeof path, "%s/sub/q.db", plain);
    CHECK(sqlite_open(path, &err, &rc) == NULL);
    CHECK_EQ_INT(rc, LUAR_EIO);
    CHECK(err.data && strstr(err.data, path));
    luar_buf_free(&err);

    /* The file is a directory. */
    luar_buf_init(&err, 0);
    CHECK(sqlite_open(tmpdir, &err, &rc) == NULL);
    CHECK_EQ_INT(rc, LUAR_EIO);
    CHECK(err.data && strstr(err.data, tmpdir));
    luar_buf_free(&err);

    /* Not a database. */
    luar_buf_init(&err, 0);
    f = fopen(plain, "w");
    if (f) {
        fputs("this is not a database, just text long enough to be read as a header....", f);
        fclose(f);
    }
    CHECK(sqlite_open(plain, &err, &rc) == NULL);
    CHECK_EQ_INT(rc, LUAR_EIO);
    CHECK(err.data && strstr(err.data, plain));
    luar_buf_free(&err);

    luar_queue_t *q = NULL;
    luar_buf_init(&err, 0);
    CHECK_EQ_INT(luar_queue_open(&loop, "mysql://db/x", &q, &err), LUAR_EINVAL);
    CHECK(err.data && strstr(err.data, "mysql://db/x"));
    luar_buf_reset(&err);
    CHECK_EQ_INT(luar_queue_open(&loop, "sqlite:", &q, &err), LUAR_EINVAL);
    CHECK(q == NULL);
    luar_buf_free(&err);
}

TEST(sqlite_full_disk_is_eio_naming_the_file_and_service_resumes)
{
    luar_queue_t *q = sqlite_fresh();
    char id[40];
    CHECK_EQ_INT(enqueue_named(q, "before", NULL, id), 0);

    /* A file size limit stands in for a full disk: writes past it fail with EFBIG. */
    enum { BIG = 4 << 20 };
    char *args = malloc(BIG + 3);
    args[0] = '"';
    memset(args + 1, 'x', BIG);
    args[BIG + 1] = '"';
    args[BIG + 2] = '\0';
    struct rlimit old, lim;
    CHECK_EQ_INT(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = 1 << 20;
    fflush(NULL);
    CHECK_EQ_INT(setrlimit(RLIMIT_FSIZE, &lim), 0);
    luar_job_spec_t big = {.name = "huge", .args = args};
    res_t r;
    int rc = enqueue_batch(q, &big, 1, NULL, 0, &r);
    res_free(&r);
    CHECK_EQ_INT(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);
    free(args);
    CHECK_EQ_INT(rc, LUAR_EIO);
    const char *msg = luar_queue_last_error(q);
    CHECK(strstr(msg, last_path) != NULL);
    fprintf(stderr, "  full disk: %s\n", msg);

    /* The disk has room again: the same handle works, nothing half-written is left. */
    CHECK_EQ_INT(enqueue_named(q, "after", NULL, id), 0);
    CHECK_EQ_INT(count_of(q, "default", LUAR_JOB_QUEUED), 2);
    luar_job_filter_t f = {.state = -1, .name = "huge"};
    CHECK_EQ_INT(list(q, &f, &r), 0);
    CHECK_EQ_INT(r.n, 0);
    res_free(&r);
    close_q(q);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/luar-queue-XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    uv_loop_init(&loop);
    run_contract(&sqlite_backend);
    RUN(sqlite_group_commit_shares_transactions);
    RUN(sqlite_one_failing_operation_does_not_fail_its_batch);
    RUN(sqlite_schema_is_versioned_and_migrated_once);
    RUN(sqlite_old_file_is_migrated_with_its_jobs);
    RUN(sqlite_v6_file_is_migrated_with_arguments_states_and_owners);
    RUN(sqlite_arguments_live_and_die_with_their_jobs);
    RUN(sqlite_wal_is_checkpointed_off_the_writer_and_stays_bounded);
    RUN(sqlite_a_long_read_does_not_hold_up_a_commit);
    RUN(sqlite_durability_settings);
    RUN(sqlite_enqueues_are_synchronous_and_bookkeeping_is_lazy);
    RUN(sqlite_rate_checks_are_lazy);
    RUN(sqlite_cache_is_in_process_bounded_and_never_touches_the_file);
    RUN(sqlite_idle_queue_lets_the_loop_end_and_work_keeps_it_running);
    RUN(sqlite_two_processes_share_the_file_and_claim_each_job_once);
    RUN(sqlite_open_failures_name_the_file);
    RUN(sqlite_processes_opening_a_new_file_together_all_succeed);
    RUN(sqlite_full_disk_is_eio_naming_the_file_and_service_resumes);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return DONE();
}

#endif
