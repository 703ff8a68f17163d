/*
 * The Redis queue backend: the whole backend contract (test_queue_contract.c) against a
 * real redis-server this test starts on a free port, then what is Redis's own:
 * pipelining, the function library reloaded after FUNCTION FLUSH, a connection lost mid-pipeline
 * and a restarted server, ACL users and wrong passwords, TLS with certificates made here with the
 * openssl CLI, SELECT and prefix isolation, the GCRA script against the C arithmetic, URLs.
 *
 * No redis-server on the machine is a failure, not a skip.
 */
#define QUEUE_CONTRACT_NO_MAIN
#include "test_queue_contract.c"

#include "queue/redis.h"
#include "redis/conn.h"
#include "redis/url.h"
#include "redis_server.h"

#include <math.h>

static redis_server_t server; /* the one the contract runs against */
static char url_now[512];     /* the URL of the last fresh backend */
static int prefix_seq;

static luar_queue_t *open_url(const char *url, int *rc_out, luar_buf_t *err_out)
{
    luar_buf_t err;
    luar_buf_init(&err, 4096);
    luar_queue_t *q = NULL;
    int rc = luar_queue_open(&loop, url, &q, &err);
    if (rc_out)
        *rc_out = rc;
    if (err_out)
        luar_buf_puts(err_out, err.data ? err.data : "");
    else if (rc)
        fprintf(stderr, "open %s: %s\n", url, err.data ? err.data : luar_strerror(rc));
    luar_buf_free(&err);
    if (q)
        luar_queue_set_clock(q, test_clock, NULL);
    return q;
}

/* The factory: a fresh backend is a new key prefix on the test's server. */
static luar_queue_t *redis_fresh(void)
{
    snprintf(url_now, sizeof url_now, "redis://127.0.0.1:%d/0?prefix=t%d:", server.port,
             ++prefix_seq);
    luar_queue_t *q = open_url(url_now, NULL, NULL);
    if (q == NULL)
        exit(2);
    return q;
}

static luar_queue_t *redis_again(void)
{
    luar_queue_t *q = open_url(url_now, NULL, NULL);
    if (q == NULL)
        exit(2);
    return q;
}

static const backend_t redis_backend = {"redis", redis_fresh, redis_again, 0};

/* ---- a raw connection, for what the tests do to the server -------------------------- */

typedef struct raw {
    int done, rc, type;
    long long integer;
    size_t elements;
    char str[4096];
} raw_t;

static void on_raw(void *arg, int rc, const redisReply *r)
{
    raw_t *out = arg;
    out->rc = rc;
    if (r) {
        out->type = r->type;
        out->integer = r->integer;
        out->elements = r->elements;
        if (r->str)
            snprintf(out->str, sizeof out->str, "%.*s", (int)r->len, r->str);
    }
    out->done = 1;
}

static luar_redis_t *open_raw(const char *url)
{
    luar_redis_url_t u;
    luar_buf_t err;
    luar_buf_init(&err, 0);
    CHECK_EQ_INT(luar_redis_url_parse(url, &u, &err), 0);
    luar_redis_t *r = NULL;
    CHECK_EQ_INT(luar_redis_open(&loop, &u, &r, &err), 0);
    luar_redis_url_free(&u);
    luar_buf_free(&err);
    return r;
}

static void close_raw(luar_redis_t *r)
{
    int closed = 0;
    luar_redis_close(r, on_closed, &closed);
    CHECK(wait_for(&closed));
}

/* Runs one command on a new connection to `url`; the reply lands in *out. */
static void raw_cmd(const char *url, int argc, const char **argv, raw_t *out)
{
    memset(out, 0, sizeof *out);
    luar_redis_t *r = open_raw(url);
    if (r == NULL)
        return;
    CHECK_EQ_INT(luar_redis_send(r, argc, argv, NULL, on_raw, out), 0);
    CHECK(wait_for(&out->done));
    close_raw(r);
}

static void admin(const char *cmd1, const char *cmd2, const char *a3, const char *a4, raw_t *out)
{
    char url[128];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", server.port);
    const char *argv[4] = {cmd1, cmd2, a3, a4};
    int argc = a4 ? 4 : a3 ? 3 : cmd2 ? 2 : 1;
    raw_cmd(url, argc, argv, out);
}

static int ping(luar_queue_t *q)
{
    res_t r = {0};
    int rc = luar_queue_ping(q, on_done, &r);
    if (rc == 0 && wait_for(&r.done))
        rc = r.rc;
    return rc;
}

static void on_timer_flag(uv_timer_t *t)
{
    *(int *)t->data = 1;
}

/* Runs the loop for `ms` milliseconds (letting writes go out, or a backoff pass). */
static void run_for(uint64_t ms)
{
    int fired = 0;
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    t.data = &fired;
    uv_timer_start(&t, on_timer_flag, ms, 0);
    CHECK(wait_for(&fired));
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
}

/* Pings until the backend answers (it reconnects by itself), for at most `secs` seconds. */
static int ping_within(luar_queue_t *q, double secs)
{
    for (int i = 0; i < (int)(secs * 20); i++) {
        if (ping(q) == 0)
            return 1;
        run_for(50);
    }
    return 0;
}

/* ---- Redis-specific tests ----------------------------------------------------------- */

TEST(redis_url_forms_and_errors)
{
    luar_redis_url_t u;
    luar_buf_t err;
    luar_buf_init(&err, 0);
    CHECK_EQ_INT(luar_redis_url_parse("redis://localhost", &u, &err), 0);
    CHECK_EQ_STR(u.host, "localhost");
    CHECK_EQ_INT(u.port, 6379);
    CHECK_EQ_INT(u.db, 0);
    CHECK_EQ_STR(u.prefix, "luar:");
    CHECK(u.user == NULL && u.password == NULL && !u.tls);
    luar_redis_url_free(&u);
    CHECK_EQ_INT(luar_redis_url_parse("rediss://al%69ce:p%40ss:w@rd@[::1]:6380/3?prefix=app%3A"
                                      "&ca=/c.pem&server_name=r.internal&timeout=2.5",
                                      &u, &err),
                 0);
    CHECK(u.tls);
    CHECK_EQ_STR(u.user, "alice");
    CHECK_EQ_STR(u.password, "p@ss:w@rd");
    CHECK_EQ_STR(u.host, "::1");
    CHECK_EQ_INT(u.port, 6380);
    CHECK_EQ_INT(u.db, 3);
    CHECK_EQ_STR(u.prefix, "app:");
    CHECK_EQ_STR(u.ca_file, "/c.pem");
    CHECK_EQ_STR(u.server_name, "r.internal");
    CHECK(u.timeout == 2.5);
    luar_redis_url_free(&u);
    CHECK_EQ_INT(luar_redis_url_parse("redis://:only@h/1", &u, &err), 0);
    CHECK(u.user == NULL);
    CHECK_EQ_STR(u.password, "only");
    luar_redis_url_free(&u);

    const char *bad[] = {"redis://",
                         "redis://h:0",
                         "redis://h:99999",
                         "redis://h/x",
                         "redis://user@h",
                         "redis://h?ca=/x",
                         "redis://h?nope=1",
                         "rediss://h?key=/k",
                         "redis://h?timeout=0",
                         "redis://h?prefix=%zz",
                         "redis://[::1",
                         NULL};
    for (int i = 0; bad[i]; i++) {
        luar_buf_reset(&err);
        int rc = luar_redis_url_parse(bad[i], &u, &err);
        if (rc != LUAR_EINVAL)
            fprintf(stderr, "  accepted %s\n", bad[i]);
        CHECK_EQ_INT(rc, LUAR_EINVAL);
        CHECK(err.len > 0);
    }
    /* A password never appears in a message. */
    luar_buf_reset(&err);
    CHECK_EQ_INT(luar_redis_url_parse("redis://u:sekrit@h:1:2", &u, &err), LUAR_EINVAL);
    CHECK(err.data && strstr(err.data, "sekrit") == NULL);
    luar_buf_free(&err);

    /* Through luar_queue_open: a bad URL is a configuration error. */
    luar_buf_t e2;
    luar_buf_init(&e2, 0);
    int rc = 0;
    CHECK(open_url("redis://127.0.0.1:1/0?bogus=1", &rc, &e2) == NULL);
    CHECK_EQ_INT(rc, LUAR_EINVAL);
    CHECK(e2.data && strstr(e2.data, "bogus"));
    luar_buf_free(&e2);
}

/* Thousands of operations in flight share writes (and enqueues share commands: batches);
 * every reply reaches its own caller. */
TEST(redis_pipelining_matches_replies_in_order)
{
    luar_queue_t *q = redis_fresh();
    luar_redis_t *conn = luar_queue_redis_conn(q);
    CHECK(conn != NULL);
    CHECK_EQ_INT(ping(q), 0);
    enum { N = 2000 };
    res_t *r = calloc(N, sizeof *r);
    char(*names)[16] = calloc(N, sizeof *names);
    luar_redis_stats_t before, after;
    luar_redis_stats(conn, &before);
    uint64_t t0 = uv_hrtime();
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "job%d", i);
        luar_job_spec_t s = {.name = names[i], .queue = i % 2 ? "odd" : "even", .priority = i};
        CHECK_EQ_INT(luar_queue_enqueue(q, &s, 1, NULL, 0, on_enqueued, &r[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        CHECK(wait_for(&r[i].done));
        CHECK_EQ_INT(r[i].rc, 0);
        CHECK_EQ_INT(r[i].n, 1);
    }
    double secs = (double)(uv_hrtime() - t0) / 1e9;
    /* Now read every job back at once: each get must see its own job. */
    res_t *g = calloc(N, sizeof *g);
    for (int i = 0; i < N; i++)
        CHECK_EQ_INT(luar_queue_get(q, r[i].n ? r[i].ids[0] : "x", on_jobs, &g[i]), 0);
    for (int i = 0; i < N; i++) {
        CHECK(wait_for(&g[i].done));
        CHECK_EQ_INT(g[i].rc, 0);
        if (g[i].n == 1) {
            CHECK_EQ_STR(g[i].jobs[0].name, names[i]);
            CHECK_EQ_INT(g[i].jobs[0].priority, i);
            CHECK_EQ_STR(g[i].jobs[0].id, r[i].ids[0]);
        }
        res_free(&g[i]);
        res_free(&r[i]);
    }
    luar_redis_stats(conn, &after);
    uint64_t cmds = after.commands - before.commands, writes = after.writes - before.writes;
    fprintf(stderr, "  %d enqueues in %.3f s (%.0f/s); %llu commands in %llu writes\n", N, secs,
            N / secs, (unsigned long long)cmds, (unsigned long long)writes);
    /* The enqueues of one loop iteration go as batches of up to 512 (one FCALL each);
     * gets are not batched: one command each. */
    CHECK_EQ_INT(cmds, (N + 511) / 512 + N);
    CHECK(writes < N / 10);
    CHECK_EQ_INT(count_of(q, "odd", LUAR_JOB_QUEUED), N / 2);
    /* Priorities: the claim takes the highest first. */
    res_t c;
    CHECK_EQ_INT(claim(q, "even", 3, "w", 30, &c), 0);
    CHECK_EQ_INT(c.n, 3);
    if (c.n == 3) {
        CHECK_EQ_INT(c.jobs[0].priority, N - 2);
        CHECK_EQ_INT(c.jobs[2].priority, N - 6);
    }
    res_free(&c);
    free(g);
    free(r);
    free(names);
    close_q(q);
}

/*
 * While a batch is out, the operations of the next loop iterations gather and leave as one
 * batch when it is answered (group commit). The server is made to hold the first batch
 * (CLIENT PAUSE WRITE), so it is out for certain while ten iterations each submit one
 * enqueue: they go as one command once it is answered, not as ten.
 */
TEST(redis_batches_gather_while_one_is_out)
{
    luar_queue_t *q = redis_fresh();
    luar_redis_t *conn = luar_queue_redis_conn(q);
    CHECK_EQ_INT(ping(q), 0);
    raw_t rr;
    admin("CLIENT", "PAUSE", "20000", "WRITE", &rr);
    CHECK_EQ_STR(rr.str, "OK");
    enum { N = 12 };
    res_t r[N];
    memset(r, 0, sizeof r);
    luar_job_spec_t s = {.name = "gathered"};
    luar_redis_stats_t before, after;
    luar_redis_stats(conn, &before);
    /* Two in one iteration: a batch, held by the server. */
    CHECK_EQ_INT(luar_queue_enqueue(q, &s, 1, NULL, 0, on_enqueued, &r[0]), 0);
    CHECK_EQ_INT(luar_queue_enqueue(q, &s, 1, NULL, 0, on_enqueued, &r[1]), 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    luar_redis_stats(conn, &after);
    CHECK_EQ_INT(after.commands - before.commands, 1);
    /* Then one an iteration. */
    for (int i = 2; i < N; i++) {
        CHECK_EQ_INT(luar_queue_enqueue(q, &s, 1, NULL, 0, on_enqueued, &r[i]), 0);
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    luar_redis_stats(conn, &after);
    CHECK_EQ_INT(after.commands - before.commands, 1); /* held while the first is out */
    CHECK_EQ_INT(r[0].done, 0);
    admin("CLIENT", "UNPAUSE", NULL, NULL, &rr);
    CHECK_EQ_STR(rr.str, "OK");
    for (int i = 0; i < N; i++) {
        CHECK(wait_for(&r[i].done));
        CHECK_EQ_INT(r[i].rc, 0);
        CHECK_EQ_INT(r[i].n, 1);
        res_free(&r[i]);
    }
    luar_redis_stats(conn, &after);
    CHECK_EQ_INT(after.commands - before.commands, 2);
    CHECK_EQ_INT(count_of(q, "default", LUAR_JOB_QUEUED), N);
    /* An operation that is not batched does not wait: it sends what was held before it. */
    admin("CLIENT", "PAUSE", "20000", "WRITE", &rr);
    CHECK_EQ_INT(luar_queue_enqueue(q, &s, 1, NULL, 0, on_enqueued, &r[0]), 0);
    CHECK_EQ_INT(luar_queue_enqueue(q, &s, 1, NULL, 0, on_enqueued, &r[1]), 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    CHECK_EQ_INT(luar_queue_enqueue(q, &s, 1, NULL, 0, on_enqueued, &r[2]), 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    luar_redis_stats(conn, &before);
    res_t c;
    memset(&c, 0, sizeof c);
    CHECK_EQ_INT(luar_queue_claim(q, "default", 1, "w", 30, on_jobs, &c), 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    luar_redis_stats(conn, &after);
    CHECK_EQ_INT(after.commands - before.commands, 2); /* the held enqueue, then the claim */
    admin("CLIENT", "UNPAUSE", NULL, NULL, &rr);
    for (int i = 0; i < 3; i++) {
        CHECK(wait_for(&r[i].done));
        CHECK_EQ_INT(r[i].rc, 0);
        res_free(&r[i]);
    }
    CHECK(wait_for(&c.done));
    CHECK_EQ_INT(c.rc, 0);
    CHECK_EQ_INT(c.n, 1);
    res_free(&c);
    close_q(q);
}

/*
 * Completions of one loop iteration go in its batch as runs (one entry per run of one
 * prefix and owner, see completion_run): each keeps its own fence, result, time and answer,
 * also when runs of two owners interleave, a wrong owner's completion sits in a run and a
 * failure splits one.
 */
TEST(redis_completion_runs_keep_each_fence_and_answer)
{
    luar_queue_t *q = redis_fresh();
    luar_redis_t *conn = luar_queue_redis_conn(q);
    CHECK_EQ_INT(ping(q), 0);
    char ids[6][40];
    for (int i = 0; i < 6; i++)
        CHECK_EQ_INT(enqueue_named(q, "run", NULL, ids[i]), 0);
    res_t ca, cb; /* jobs 0-2 to wa, 3-5 to wb (claim order is id order) */
    CHECK_EQ_INT(claim(q, NULL, 3, "wa", 30, &ca), 0);
    CHECK_EQ_INT(claim(q, NULL, 3, "wb", 30, &cb), 0);
    CHECK_EQ_INT(ca.n, 3);
    CHECK_EQ_INT(cb.n, 3);
    res_free(&ca);
    res_free(&cb);

    struct {
        int job;
        const char *owner, *result; /* result "fail": a failure (retry) instead */
        int want;
    } ops[] = {
        {0, "wa", "r0", 0},   {1, "wa", NULL, 0},
        {3, "wb", "r3", 0},   {2, "wb", "x", LUAR_ENOTFOUND},
        {4, "wb", "fail", 0}, {5, "wb", "r5", 0},
        {2, "wa", "r2", 0},   {2, "wa", "again", LUAR_ENOTFOUND},
    };
    enum { NOPS = sizeof ops / sizeof *ops };
    res_t r[NOPS];
    luar_redis_stats_t before, after;
    luar_redis_stats(conn, &before);
    for (int i = 0; i < NOPS; i++) {
        memset(&r[i], 0, sizeof r[i]);
        const char *id = ids[ops[i].job];
        if (ops[i].result && strcmp(ops[i].result, "fail") == 0)
            CHECK_EQ_INT(luar_queue_fail(q, id, ops[i].owner, "boom", NULL, test_now + 60, 0,
                                         on_done, &r[i]),
                         0);
        else
            CHECK_EQ_INT(
                luar_queue_complete(q, id, ops[i].owner, ops[i].result, 100, on_done, &r[i]), 0);
    }
    for (int i = 0; i < NOPS; i++) {
        CHECK(wait_for(&r[i].done));
        CHECK_EQ_INT(r[i].rc, ops[i].want);
    }
    luar_redis_stats(conn, &after);
    CHECK_EQ_INT(after.commands - before.commands, 1); /* one batch, one FCALL */

    const char *results[6] = {"r0", NUL_STR, "r2", "r3", NUL_STR, "r5"};
    for (int i = 0; i < 6; i++) {
        tjob_t j;
        CHECK_EQ_INT(get(q, ids[i], &j), 0);
        CHECK_EQ_INT(j.state, i == 4 ? LUAR_JOB_RETRYING : LUAR_JOB_SUCCEEDED);
        CHECK_EQ_STR(j.result, results[i]);
        if (i != 4)
            CHECK(j.finished_at == test_now && j.expires_at == test_now + 100);
        else
            CHECK_EQ_STR(j.last_error, "boom");
    }
    CHECK_EQ_INT(count_of(q, "default", LUAR_JOB_SUCCEEDED), 5);
    CHECK_EQ_INT(count_of(q, "default", LUAR_JOB_RUNNING), 0);
    close_q(q);
}

/*
 * Finished jobs wait for the sweep in per-second lists (expiry:<second>) that keep an entry
 * when its job moves on. The sweep deletes a job only if it is still finished with that
 * expiry: a job retried and finished again with a longer ttl stays until its new expiry, a
 * deleted job's entry is only popped, and emptied seconds leave no keys behind.
 */
TEST(redis_expiry_lists_delete_only_jobs_still_expired)
{
    luar_queue_t *q = redis_fresh();
    char url[128], key[64], set[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", server.port);
    test_now = floor(test_now) + 1; /* a whole second: expiries fall at known seconds */
    double t0 = test_now;
    snprintf(key, sizeof key, "t%d:expiry:%.0f", prefix_seq, t0 + 10);
    snprintf(set, sizeof set, "t%d:expiry", prefix_seq);
    char again[40], gone[40], plain[40];
    res_t r;
    tjob_t j;
    CHECK_EQ_INT(enqueue_named(q, "again", NULL, again), 0);
    CHECK_EQ_INT(enqueue_named(q, "gone", NULL, gone), 0);
    CHECK_EQ_INT(enqueue_named(q, "plain", NULL, plain), 0);
    CHECK_EQ_INT(claim(q, NULL, 3, "w", 30, &r), 0);
    CHECK_EQ_INT(r.n, 3);
    res_free(&r);
    CHECK_EQ_INT(complete(q, again, "w", "1", 10), 0); /* filed under t0 + 10 */
    CHECK_EQ_INT(complete(q, gone, "w", "2", 10), 0);
    CHECK_EQ_INT(complete(q, plain, "w", "3", 10), 0);
    CHECK_EQ_INT(delete_job(q, gone), 0);
    /* Retried, run again and finished with a longer ttl: filed again, under t0 + 1000. */
    CHECK_EQ_INT(retry(q, again), 0);
    CHECK_EQ_INT(claim(q, NULL, 1, "w", 30, &r), 0);
    CHECK_EQ_INT(r.n, 1);
    res_free(&r);
    CHECK_EQ_INT(complete(q, again, "w", "4", 1000), 0);

    size_t reclaimed, expired;
    test_now = t0 + 10.5; /* t0 + 10's second is not over: nothing yet */
    CHECK_EQ_INT(sweep(q, &reclaimed, &expired), 0);
    CHECK_EQ_INT(expired, 0);
    CHECK_EQ_INT(get(q, plain, &j), 0);
    test_now = t0 + 11;
    CHECK_EQ_INT(sweep(q, &reclaimed, &expired), 0);
    CHECK_EQ_INT(expired, 1); /* plain; gone's entry popped, again's old one skipped */
    CHECK_EQ_INT(get(q, plain, &j), LUAR_ENOTFOUND);
    CHECK_EQ_INT(get(q, again, &j), 0);
    CHECK_EQ_STR(j.result, "4");
    raw_t rr;
    const char *exists[] = {"EXISTS", key};
    raw_cmd(url, 2, exists, &rr);
    CHECK_EQ_INT(rr.integer, 0);
    const char *card[] = {"ZCARD", set};
    raw_cmd(url, 2, card, &rr);
    CHECK_EQ_INT(rr.integer, 1); /* t0 + 1000 */

    test_now = t0 + 1001;
    CHECK_EQ_INT(sweep(q, &reclaimed, &expired), 0);
    CHECK_EQ_INT(expired, 1);
    CHECK_EQ_INT(get(q, again, &j), LUAR_ENOTFOUND);
    raw_cmd(url, 2, card, &rr);
    CHECK_EQ_INT(rr.integer, 0);
    test_now = t0;
    close_q(q);
}

/* The library vanishes from a live server (FUNCTION FLUSH): operations load it and go on. */
TEST(redis_lost_function_reloads_the_library_and_retries)
{
    luar_queue_t *q = redis_fresh();
    char id[40];
    CHECK_EQ_INT(enqueue_named(q, "before", NULL, id), 0);
    raw_t rr;
    admin("FUNCTION", "FLUSH", NULL, NULL, &rr);
    CHECK_EQ_INT(rr.rc, 0);
    CHECK_EQ_STR(rr.str, "OK");
    enum { N = 50 };
    res_t r[N];
    memset(r, 0, sizeof r);
    luar_job_spec_t s = {.name = "after"};
    for (int i = 0; i < N; i++)
        CHECK_EQ_INT(luar_queue_enqueue(q, &s, 1, NULL, 0, on_enqueued, &r[i]), 0);
    for (int i = 0; i < N; i++) {
        CHECK(wait_for(&r[i].done));
        CHECK_EQ_INT(r[i].rc, 0);
        res_free(&r[i]);
    }
    CHECK_EQ_INT(count_of(q, "default", LUAR_JOB_QUEUED), N + 1);
    close_q(q);
}

/* The calls and failed calls of FUNCTION LOAD since the last CONFIG RESETSTAT. */
static void function_loads(long *calls, long *failed)
{
    raw_t rr;
    admin("INFO", "commandstats", NULL, NULL, &rr);
    CHECK_EQ_INT(rr.rc, 0);
    const char *line = strstr(rr.str, "cmdstat_function|load:");
    *calls = *failed = 0;
    if (line) {
        const char *c = strstr(line, "calls="), *f = strstr(line, "failed_calls=");
        CHECK(c && f);
        *calls = strtol(c + 6, NULL, 10);
        *failed = strtol(f + 13, NULL, 10);
    }
}

/*
 * A new connection loads the library only when the server lacks it: one that is there (it
 * has this very text: its name is the text's SHA-1) is kept, not replaced — a replacement
 * recompiles it and writes the whole library to the AOF and the replicas each time.
 */
TEST(redis_connections_keep_the_library_the_server_has)
{
    luar_queue_t *q = redis_fresh();
    CHECK_EQ_INT(ping(q), 0); /* the library is loaded now */
    raw_t rr;
    admin("CONFIG", "RESETSTAT", NULL, NULL, &rr);
    CHECK_EQ_STR(rr.str, "OK");
    luar_queue_t *q2 = redis_again(), *q3 = redis_fresh();
    CHECK_EQ_INT(ping(q2), 0);
    CHECK_EQ_INT(ping(q3), 0);
    char id[40];
    CHECK_EQ_INT(enqueue_named(q3, "kept", NULL, id), 0); /* the function answers */
    long calls, failed;
    function_loads(&calls, &failed);
    CHECK_EQ_INT(calls, 2);
    CHECK_EQ_INT(failed, 2); /* "already exists": nothing loaded again */
    /* Gone (FUNCTION FLUSH, a restart without persistence): the next connection loads it. */
    admin("FUNCTION", "FLUSH", NULL, NULL, &rr);
    CHECK_EQ_STR(rr.str, "OK");
    admin("CONFIG", "RESETSTAT", NULL, NULL, &rr);
    luar_queue_t *q4 = redis_again();
    CHECK_EQ_INT(ping(q4), 0);
    function_loads(&calls, &failed);
    CHECK_EQ_INT(calls, 1);
    CHECK_EQ_INT(failed, 0);
    CHECK_EQ_INT(enqueue_named(q4, "loaded", NULL, id), 0);
    close_q(q);
    close_q(q2);
    close_q(q3);
    close_q(q4);
}

/*
 * The server stops answering with commands in flight, then dies: every pending operation
 * fails with LUAR_EIO at once, operations during the outage fail fast, and after a restart
 * on the same port the same handle works again (the script is loaded anew).
 */
TEST(redis_connection_loss_fails_pending_ops_and_recovers)
{
    redis_server_t s;
    memset(&s, 0, sizeof s);
    if (redis_start(&s, NULL)) {
        CHECK(!"redis-server did not start");
        return;
    }
    char url[128];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0?prefix=loss:", s.port);
    luar_queue_t *q = open_url(url, NULL, NULL);
    CHECK(q != NULL);
    if (q == NULL)
        return;
    char id[40];
    CHECK_EQ_INT(enqueue_named(q, "first", NULL, id), 0);

    kill(s.pid, SIGSTOP); /* answers nothing from now on */
    enum { N = 200 };
    res_t r[N];
    memset(r, 0, sizeof r);
    luar_job_spec_t spec = {.name = "in_flight"};
    for (int i = 0; i < N; i++)
        CHECK_EQ_INT(luar_queue_enqueue(q, &spec, 1, NULL, 0, on_enqueued, &r[i]), 0);
    run_for(100); /* written, unanswered */
    for (int i = 0; i < N; i++)
        CHECK_EQ_INT(r[i].done, 0);
    redis_kill(&s);
    uint64_t t0 = uv_hrtime();
    for (int i = 0; i < N; i++) {
        CHECK(wait_for(&r[i].done));
        CHECK_EQ_INT(r[i].rc, LUAR_EIO);
        res_free(&r[i]);
    }
    double took = (double)(uv_hrtime() - t0) / 1e9;
    char want[64];
    snprintf(want, sizeof want, "redis 127.0.0.1:%d: ", s.port);
    const char *msg = luar_queue_last_error(q);
    fprintf(stderr, "  lost: %s (all %d failed in %.3f s)\n", msg, N, took);
    CHECK(strstr(msg, want) == msg);
    CHECK(took < 1.0);

    /* Down: operations fail fast, saying why. */
    run_for(150); /* past the first reconnect attempt */
    t0 = uv_hrtime();
    CHECK_EQ_INT(ping(q), LUAR_EIO);
    CHECK((double)(uv_hrtime() - t0) / 1e9 < 0.5);
    msg = luar_queue_last_error(q);
    fprintf(stderr, "  down: %s\n", msg);
    CHECK(strstr(msg, "connection refused") != NULL);

    /* Back on the same port: the handle reconnects by itself (backoff at most 5 s). */
    if (redis_start(&s, NULL)) {
        CHECK(!"redis-server did not restart");
        close_q(q);
        return;
    }
    CHECK(ping_within(q, 7.5));
    CHECK_EQ_INT(enqueue_named(q, "after_restart", NULL, id), 0);
    CHECK_EQ_INT(state_of(q, id), LUAR_JOB_QUEUED);
    luar_redis_stats_t st;
    luar_redis_stats(luar_queue_redis_conn(q), &st);
    CHECK(st.connects >= 2);
    close_q(q);
    redis_stop(&s);
}

/* The server drops an idle connection (its `timeout`, a proxy): the next operation does
 * not see it. */
TEST(redis_idle_connection_dropped_by_the_server_reconnects_unseen)
{
    luar_queue_t *q = redis_fresh();
    CHECK_EQ_INT(ping(q), 0);
    raw_t rr;
    admin("CLIENT", "KILL", "TYPE", "normal", &rr);
    CHECK_EQ_INT(rr.type, REDIS_REPLY_INTEGER);
    CHECK(rr.integer >= 1);
    run_for(50); /* the loop sees the close while idle, as a running process would */
    char id[40];
    CHECK_EQ_INT(enqueue_named(q, "after_kill", NULL, id), 0);
    CHECK_EQ_INT(state_of(q, id), LUAR_JOB_QUEUED);
    luar_redis_stats_t st;
    luar_redis_stats(luar_queue_redis_conn(q), &st);
    CHECK_EQ_INT(st.failures, 1);
    CHECK_EQ_INT(st.connects, 2);
    close_q(q);
}

static struct {
    luar_redis_t *waiting[2];
    raw_t pong[2];
    int sent;
} sib;

/* C's link is up: at that moment, A and B (backing off for seconds) are asked for PING. */
static void on_sibling_ready(void *arg)
{
    (void)arg;
    const char *argv[1] = {"PING"};
    for (int i = 0; i < 2 && !sib.sent; i++)
        CHECK_EQ_INT(luar_redis_send(sib.waiting[i], 1, argv, NULL, on_raw, &sib.pong[i]), 0);
    sib.sent = 1;
}

/*
 * Two connections back off through an outage; when a third to the same server connects,
 * they try at once and commands sent to them meanwhile wait for that attempt instead of
 * failing fast. (What a subscription's handler needs: woken by the first connection to
 * come back, its redis.call goes through another.)
 */
TEST(redis_a_connection_coming_back_wakes_its_siblings)
{
    redis_server_t s;
    memset(&s, 0, sizeof s);
    if (redis_start(&s, NULL)) {
        CHECK(!"redis-server did not start");
        return;
    }
    char url[128];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", s.port);
    memset(&sib, 0, sizeof sib);
    luar_redis_t *a = open_raw(url), *b = open_raw(url);
    if (a == NULL || b == NULL)
        return;
    raw_t p;
    const char *argv[1] = {"PING"};
    memset(&p, 0, sizeof p);
    CHECK_EQ_INT(luar_redis_send(a, 1, argv, NULL, on_raw, &p), 0);
    CHECK(wait_for(&p.done));
    redis_kill(&s);
    /* Four failed attempts each: the next is 1.6 s away. */
    luar_redis_stats_t sa, sb;
    for (int i = 0; i < 100; i++) {
        luar_redis_stats(a, &sa);
        luar_redis_stats(b, &sb);
        if (sa.failures >= 5 && sb.failures >= 5)
            break;
        run_for(50);
    }
    CHECK(sa.failures >= 5 && sb.failures >= 5);
    memset(&p, 0, sizeof p);
    CHECK_EQ_INT(luar_redis_send(a, 1, argv, NULL, on_raw, &p), 0);
    CHECK(wait_for(&p.done));
    CHECK_EQ_INT(p.rc, LUAR_EIO); /* down: fails fast */
    if (redis_start(&s, NULL)) {
        CHECK(!"redis-server did not restart");
        return;
    }
    sib.waiting[0] = a;
    sib.waiting[1] = b;
    luar_redis_t *c = open_raw(url);
    luar_redis_set_on_ready(c, on_sibling_ready, NULL);
    for (int i = 0; i < 2; i++) {
        CHECK(wait_for(&sib.pong[i].done));
        CHECK_EQ_INT(sib.pong[i].rc, 0);
        CHECK_EQ_STR(sib.pong[i].str, "PONG");
    }
    close_raw(c);
    close_raw(b);
    close_raw(a);
    redis_stop(&s);
}

/* An open against a port nobody listens on succeeds; operations fail with the reason. */
/*
 * A burst of webhook-like enqueues (a dedupe key each, some repeated) submitted before the
 * connection is up — what a worker sees when traffic arrives as it starts — waits for the
 * first connection and lands whole: every one answered, duplicates exactly the repeated
 * keys, in a few batched commands. Past the bound of what may wait (64 MiB), the rest fail
 * at once naming why, and those that fit still land.
 */
TEST(redis_burst_sent_while_connecting_waits_then_lands)
{
    luar_queue_t *q = redis_fresh();
    luar_redis_t *conn = luar_queue_redis_conn(q);
    CHECK(!luar_redis_ready(conn));
    enum { N = 20000 };
    res_t *r = calloc(N, sizeof *r);
    char(*keys)[24] = calloc(N, sizeof *keys);
    luar_job_spec_t s = {.name = "hook", .queue = "in", .args = "{\"type\":\"charge.succeeded\"}"};
    for (int i = 0; i < N; i++) {
        /* Every tenth delivery repeats the one before it (a provider's retry). */
        snprintf(keys[i], sizeof keys[i], "evt-%d", i % 10 == 9 ? i - 1 : i);
        CHECK_EQ_INT(luar_queue_enqueue(q, &s, 1, keys[i], 3600, on_enqueued, &r[i]), 0);
    }
    int dups = 0, failed = 0;
    for (int i = 0; i < N; i++) {
        CHECK(wait_for(&r[i].done));
        failed += r[i].rc != 0;
        dups += r[i].duplicate;
        if (r[i].duplicate != (i % 10 == 9))
            fprintf(stderr, "  enqueue %d: duplicate %d\n", i, r[i].duplicate);
        res_free(&r[i]);
    }
    CHECK_EQ_INT(failed, 0);
    CHECK_EQ_INT(dups, N / 10);
    CHECK_EQ_INT(count_of(q, "in", LUAR_JOB_QUEUED), N - N / 10);
    luar_redis_stats_t st;
    luar_redis_stats(conn, &st);
    fprintf(stderr, "  %d enqueues sent while connecting: %llu commands, %llu writes\n", N,
            (unsigned long long)st.commands, (unsigned long long)st.writes);
    CHECK(st.commands <= N / 512 + 8);
    close_q(q);

    /* 80 MiB submitted at once to a connection not up yet: 64 MiB wait, the rest fail. */
    q = redis_fresh();
    enum { BIG = 160, BIG_LEN = 512 * 1024 };
    char *args = malloc(BIG_LEN + 1);
    memset(args, '7', BIG_LEN);
    args[BIG_LEN] = '\0';
    luar_job_spec_t b = {.name = "big", .queue = "big", .args = args};
    res_t *br = calloc(BIG, sizeof *br);
    for (int i = 0; i < BIG; i++)
        CHECK_EQ_INT(luar_queue_enqueue(q, &b, 1, NULL, 0, on_enqueued, &br[i]), 0);
    int ok = 0, refused = 0;
    for (int i = 0; i < BIG; i++) {
        CHECK(wait_for(&br[i].done));
        ok += br[i].rc == 0;
        refused += br[i].rc == LUAR_EIO;
        res_free(&br[i]);
    }
    fprintf(stderr, "  %d x 512 KiB while connecting: %d stored, %d refused\n", BIG, ok, refused);
    CHECK(ok >= 100 && ok <= 128); /* 64 MiB of 512 KiB, give or take a batch */
    CHECK_EQ_INT(ok + refused, BIG);
    CHECK(strstr(luar_queue_last_error(q), "too many commands waiting for the connection"));
    CHECK_EQ_INT(count_of(q, "big", LUAR_JOB_QUEUED), ok);
    close_q(q);
    free(br);
    free(args);
    free(keys);
    free(r);
}

/* Times travel as text (a fast formatter, checked, else %.17g): each reads back as the very
 * same double — random times with every fraction bit set, integral ones, and edge cases. */
TEST(redis_times_read_back_exactly)
{
    luar_queue_t *q = redis_fresh();
    enum { N = 2000 };
    double *t = calloc(N, sizeof *t);
    res_t *r = calloc(N, sizeof *r);
    uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < N; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        /* from 2001 to 2128, any fraction; every 7th integral, every 11th .5, a few large */
        t[i] = 1e9 + (double)(x >> 11) / (double)(1ULL << 53) * 4e9;
        if (i % 7 == 0)
            t[i] = floor(t[i]);
        if (i % 11 == 0)
            t[i] = floor(t[i]) + 0.5;
        if (i % 101 == 0)
            t[i] = 123456789012.0 + (double)(x & 1023) / 1024.0;
        if (i == 1)
            t[i] = 9999999999.9999999; /* rounds up to the next integer in 17 digits */
        luar_job_spec_t s = {.name = "t", .queue = "times", .run_at = t[i]};
        CHECK_EQ_INT(luar_queue_enqueue(q, &s, 1, NULL, 0, on_enqueued, &r[i]), 0);
    }
    int bad = 0;
    for (int i = 0; i < N; i++) {
        CHECK(wait_for(&r[i].done));
        tjob_t j;
        if (r[i].n == 1 && get(q, r[i].ids[0], &j) == 0 && j.run_at != t[i]) {
            if (bad++ < 5)
                fprintf(stderr, "  %.17g came back as %.17g\n", t[i], j.run_at);
        }
        res_free(&r[i]);
    }
    CHECK_EQ_INT(bad, 0);
    free(r);
    free(t);
    close_q(q);
}

/*
 * The time-ordered sets keep whole microseconds as scores (a listpack compares those without
 * parsing text); the times themselves stay exact. A job due at a time with more decimals
 * than that is claimable at its run_at and not 2 µs before; a lease is reclaimed only after
 * it ended; next_due gives the exact run_at.
 */
TEST(redis_microsecond_scores_keep_times_exact)
{
    luar_queue_t *q = redis_fresh();
    double saved = test_now;
    double due = test_now + 123.4567891234;
    luar_job_spec_t s = {.name = "at", .queue = "us", .run_at = due};
    char id[40];
    CHECK_EQ_INT(enqueue1(q, &s, id), 0);
    CHECK(next_due(q) == due);
    res_t r;
    test_now = due - 2e-6;
    CHECK_EQ_INT(claim(q, "us", 5, "w", 30, &r), 0);
    CHECK_EQ_INT(r.n, 0);
    res_free(&r);
    test_now = due;
    CHECK_EQ_INT(claim(q, "us", 5, "w", 30, &r), 0);
    CHECK_EQ_INT(r.n, 1);
    double lease = r.n == 1 ? r.jobs[0].lease_expires_at : 0;
    CHECK(lease == due + 30);
    res_free(&r);
    size_t reclaimed = 0, expired = 0;
    test_now = lease;
    CHECK_EQ_INT(sweep(q, &reclaimed, &expired), 0);
    CHECK_EQ_INT(reclaimed, 0); /* ends at `lease`: not yet past it */
    test_now = lease + 2e-6;
    CHECK_EQ_INT(sweep(q, &reclaimed, &expired), 0);
    CHECK_EQ_INT(reclaimed, 1);
    /* The scores are integers: what Redis stores for the reclaimed job's ready entry. */
    char key[128];
    snprintf(key, sizeof key, "t%d:ready:us:0", prefix_seq);
    raw_t rr;
    admin("ZSCORE", key, id, NULL, &rr);
    CHECK_EQ_INT(rr.rc, 0);
    CHECK(rr.str[0] != '\0' && strspn(rr.str, "0123456789") == strlen(rr.str));
    test_now = saved;
    close_q(q);
}

TEST(redis_unreachable_server_is_eio_naming_it)
{
    char url[128];
    int port = redis_free_port();
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", port);
    luar_queue_t *q = open_url(url, NULL, NULL);
    CHECK(q != NULL);
    if (q == NULL)
        return;
    CHECK_EQ_INT(ping(q), LUAR_EIO);
    char want[96];
    snprintf(want, sizeof want, "redis 127.0.0.1:%d: connection refused", port);
    CHECK_EQ_STR(luar_queue_last_error(q), want);
    res_t r;
    luar_job_spec_t s = {.name = "x"};
    CHECK_EQ_INT(enqueue_batch(q, &s, 1, NULL, 0, &r), LUAR_EIO);
    res_free(&r);
    close_q(q);
}

TEST(redis_acl_user_and_wrong_password)
{
    raw_t rr;
    admin("ACL", "SETUSER", "alice", "on", &rr); /* created, then given rights below */
    CHECK_EQ_STR(rr.str, "OK");
    char url[256];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", server.port);
    const char *setuser[] = {"ACL",       "SETUSER", "alice", "on",    ">s3cret",
                             "resetkeys", "~acl:*",  "&*",    "+@all", "-flushall"};
    raw_cmd(url, 10, setuser, &rr);
    CHECK_EQ_STR(rr.str, "OK");
    const char *bob[] = {"ACL", "SETUSER", "bob", "on", ">p@ss:w/rd", "~*", "&*", "+@all"};
    raw_cmd(url, 8, bob, &rr);
    CHECK_EQ_STR(rr.str, "OK");

    snprintf(url, sizeof url, "redis://alice:s3cret@127.0.0.1:%d/0?prefix=acl:", server.port);
    luar_queue_t *q = open_url(url, NULL, NULL);
    char id[40];
    CHECK_EQ_INT(enqueue_named(q, "as_alice", NULL, id), 0);
    tjob_t j;
    CHECK_EQ_INT(claim1(q, "w", &j), 0);
    CHECK_EQ_STR(j.id, id);
    close_q(q);

    /* The ACL confines alice to her prefix: another one is refused, saying so. */
    snprintf(url, sizeof url, "redis://alice:s3cret@127.0.0.1:%d/0?prefix=other:", server.port);
    q = open_url(url, NULL, NULL);
    res_t r;
    luar_job_spec_t s = {.name = "x"};
    CHECK_EQ_INT(enqueue_batch(q, &s, 1, NULL, 0, &r), LUAR_EIO);
    res_free(&r);
    fprintf(stderr, "  other prefix: %s\n", luar_queue_last_error(q));
    CHECK(strstr(luar_queue_last_error(q), "NOPERM") != NULL ||
          strstr(luar_queue_last_error(q), "can't access") != NULL);
    close_q(q);

    /* A wrong password: every operation fails with a message that names AUTH, not the
     * password; nothing runs as another user. */
    snprintf(url, sizeof url, "redis://alice:wrong-pass@127.0.0.1:%d/0?prefix=acl:", server.port);
    q = open_url(url, NULL, NULL);
    CHECK_EQ_INT(ping(q), LUAR_EIO);
    const char *msg = luar_queue_last_error(q);
    fprintf(stderr, "  wrong password: %s\n", msg);
    CHECK(strstr(msg, "AUTH failed: WRONGPASS") != NULL);
    CHECK(strstr(msg, "wrong-pass") == NULL);
    close_q(q);

    /* Reserved characters percent-encoded in the URL. */
    snprintf(url, sizeof url,
             "redis://bob:p%%40ss%%3Aw%%2Frd@127.0.0.1:%d/0?prefix=bob:", server.port);
    q = open_url(url, NULL, NULL);
    CHECK_EQ_INT(ping(q), 0);
    CHECK_EQ_INT(enqueue_named(q, "as_bob", NULL, id), 0);
    close_q(q);
}

TEST(redis_select_isolates_databases)
{
    char u1[128], u2[128];
    snprintf(u1, sizeof u1, "redis://127.0.0.1:%d/1?prefix=sel:", server.port);
    snprintf(u2, sizeof u2, "redis://127.0.0.1:%d/2?prefix=sel:", server.port);
    luar_queue_t *q1 = open_url(u1, NULL, NULL), *q2 = open_url(u2, NULL, NULL);
    char id[40];
    CHECK_EQ_INT(enqueue_named(q1, "in_db1", "s", id), 0);
    tjob_t j;
    CHECK_EQ_INT(get(q1, id, &j), 0);
    CHECK_EQ_INT(get(q2, id, &j), LUAR_ENOTFOUND);
    CHECK_EQ_INT(count_of(q1, "s", LUAR_JOB_QUEUED), 1);
    CHECK_EQ_INT(count_of(q2, "s", LUAR_JOB_QUEUED), 0);
    raw_t rr;
    const char *dbsize[] = {"DBSIZE"}, *layout[] = {"EXISTS", "sel:layout"};
    raw_cmd(u2, 1, dbsize, &rr);
    CHECK_EQ_INT(rr.integer, 1); /* only the layout stamp */
    raw_cmd(u2, 2, layout, &rr);
    CHECK_EQ_INT(rr.integer, 1);
    raw_cmd(u1, 1, dbsize, &rr);
    CHECK(rr.integer > 0);
    close_q(q1);
    close_q(q2);
}

/*
 * A prefix written in another key layout is refused before any operation reads it, with
 * the reason as the queue's error, until it is mended: then the handle goes on by itself.
 */
TEST(redis_refuses_another_key_layout)
{
    char url[128];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0?prefix=old:", server.port);
    raw_t rr;
    const char *old_counts[] = {"HSET", "old:counts", "3:default", "7"};
    raw_cmd(url, 4, old_counts, &rr); /* a layout-1 build's data: counts, no stamp */
    luar_queue_t *q = open_url(url, NULL, NULL);
    char id[40];
    CHECK_EQ_INT(ping(q), LUAR_EIO);
    CHECK_EQ_INT(enqueue_named(q, "never", NULL, id), LUAR_EIO);
    const char *msg = luar_queue_last_error(q);
    fprintf(stderr, "  old layout: %s\n", msg);
    CHECK(strstr(msg, "under prefix old: were written with key layout 1, this build uses 4") !=
          NULL);
    const char *get_counts[] = {"HGET", "old:counts", "3:default"};
    raw_cmd(url, 3, get_counts, &rr);
    CHECK_EQ_STR(rr.str, "7"); /* untouched */

    const char *del[] = {"DEL", "old:counts"};
    raw_cmd(url, 2, del, &rr);
    CHECK(ping_within(q, 7.5));
    CHECK_EQ_INT(enqueue_named(q, "now", NULL, id), 0);
    close_q(q);

    /* The earlier layouts (2: jobs without `spec`; 3: finished jobs in one sorted set), and
     * one from a future build. */
    const char *const others[] = {"2", "3", "99"};
    for (size_t i = 0; i < sizeof others / sizeof *others; i++) {
        const char *stamp[] = {"SET", "old:layout", others[i]};
        raw_cmd(url, 3, stamp, &rr);
        q = open_url(url, NULL, NULL);
        CHECK_EQ_INT(ping(q), LUAR_EIO);
        char want[64];
        snprintf(want, sizeof want, "written with key layout %s, this build uses 4", others[i]);
        CHECK(strstr(luar_queue_last_error(q), want) != NULL);
        close_q(q);
    }
}

/*
 * A full Redis (maxmemory reached, noeviction) refuses writes, and a function that may
 * write before it runs: the reads still answer — on the connection that was open and on a
 * new one, whose FUNCTION LOAD is refused too — so `luar jobs list`, show, stats and the
 * dashboard keep working while enqueues fail naming the reason. Then room again: writes go on.
 */
TEST(redis_full_server_still_answers_reads)
{
    luar_queue_t *q = redis_fresh();
    char id[40], other[40];
    CHECK_EQ_INT(enqueue_named(q, "stored_before", NULL, id), 0);
    raw_t rr;
    admin("CONFIG", "SET", "maxmemory-policy", "noeviction", &rr);
    CHECK_EQ_STR(rr.str, "OK");
    admin("CONFIG", "SET", "maxmemory", "1", &rr); /* every byte is over */
    CHECK_EQ_STR(rr.str, "OK");

    luar_queue_t *fresh = redis_again(); /* a new connection: its FUNCTION LOAD is refused */
    luar_queue_t *both[2] = {q, fresh};
    for (int i = 0; i < 2; i++) {
        luar_queue_t *h = both[i];
        CHECK_EQ_INT(ping(h), 0);
        tjob_t j;
        CHECK_EQ_INT(get(h, id, &j), 0);
        CHECK_EQ_STR(j.name, "stored_before");
        res_t r;
        luar_job_filter_t f = {.state = -1, .limit = 10};
        CHECK_EQ_INT(list(h, &f, &r), 0);
        CHECK_EQ_INT(r.n, 1);
        res_free(&r);
        CHECK_EQ_INT(count_of(h, "default", LUAR_JOB_QUEUED), 1);
        CHECK_EQ_INT(enqueue_named(h, "refused", NULL, other), LUAR_EIO);
        fprintf(stderr, "  full: %s\n", luar_queue_last_error(h));
        CHECK(strstr(luar_queue_last_error(h), "OOM") != NULL);
    }

    /* A full Redis that lost the library (restarted without persistence, flushed): the
     * calls name why it could not be loaded again, not only that it is missing. */
    admin("FUNCTION", "FLUSH", NULL, NULL, &rr);
    CHECK_EQ_STR(rr.str, "OK");
    CHECK_EQ_INT(enqueue_named(fresh, "refused", NULL, other), LUAR_EIO);
    fprintf(stderr, "  full, no library: %s\n", luar_queue_last_error(fresh));
    CHECK(strstr(luar_queue_last_error(fresh), "Function not found (loading it failed: OOM") !=
          NULL);

    admin("CONFIG", "SET", "maxmemory", "0", &rr);
    CHECK_EQ_STR(rr.str, "OK");
    CHECK_EQ_INT(enqueue_named(fresh, "after", NULL, other), 0); /* loads it, goes on */
    CHECK_EQ_INT(count_of(q, "default", LUAR_JOB_QUEUED), 2);
    close_q(fresh);
    close_q(q);
}

/* Two apps on one database: neither sees the other's jobs, and every key is prefixed. */
TEST(redis_prefix_isolates_apps)
{
    char ua[128], ub[128];
    snprintf(ua, sizeof ua, "redis://127.0.0.1:%d/5?prefix=pa:", server.port);
    snprintf(ub, sizeof ub, "redis://127.0.0.1:%d/5?prefix=pb:", server.port);
    luar_queue_t *qa = open_url(ua, NULL, NULL), *qb = open_url(ub, NULL, NULL);
    char id[40], other[40];
    luar_job_spec_t keyed = {.name = "k", .key = "same-key"};
    CHECK_EQ_INT(enqueue1(qa, &keyed, id), 0);
    CHECK_EQ_INT(enqueue1(qb, &keyed, other), 0);
    CHECK(strcmp(id, other) != 0); /* the unique key is per app */
    res_t r;
    CHECK_EQ_INT(enqueue_batch(qa, NULL, 0, "evt:1", 60, &r), 0);
    CHECK_EQ_INT(r.duplicate, 0);
    res_free(&r);
    CHECK_EQ_INT(enqueue_batch(qb, NULL, 0, "evt:1", 60, &r), 0);
    CHECK_EQ_INT(r.duplicate, 0);
    res_free(&r);
    CHECK_EQ_INT(rate_burst(&qa, 1, "r", "2/m", 3, NULL), 2);
    CHECK_EQ_INT(rate_burst(&qb, 1, "r", "2/m", 3, NULL), 2);
    tjob_t j;
    CHECK_EQ_INT(get(qb, id, &j), LUAR_ENOTFOUND);
    CHECK_EQ_INT(claim1(qb, "w", &j), 0);
    CHECK_EQ_STR(j.id, other);
    CHECK_EQ_INT(claim1(qb, "w", &j), LUAR_ENOTFOUND);
    CHECK_EQ_INT(state_of(qa, id), LUAR_JOB_QUEUED);
    close_q(qa);
    close_q(qb);

    raw_t rr;
    const char *scan_a[] = {"EVAL",
                            "local n = 0 for _, k in ipairs(redis.call('KEYS', '*')) do "
                            "if k:sub(1, 3) ~= 'pa:' and k:sub(1, 3) ~= 'pb:' then n = n + 1 "
                            "end end return n",
                            "0"};
    raw_cmd(ua, 3, scan_a, &rr);
    CHECK_EQ_INT(rr.rc, 0);
    CHECK_EQ_INT(rr.type, REDIS_REPLY_INTEGER);
    CHECK_EQ_INT(rr.integer, 0);
}

/* The script's GCRA (integer nanoseconds split into seconds and nanoseconds) gives exactly
 * what luar_gcra_check gives, field by field, over a random walk of limits, costs and
 * clock steps (including backwards). */
TEST(redis_rate_script_matches_the_c_arithmetic)
{
    luar_queue_t *q = redis_fresh();
    const char *limits[] = {"7/s", "100/m", "3/h", "1000/d", "5/m", "1/d", "250/s"};
    enum { NK = 7, STEPS = 600 };
    int64_t tat[NK] = {0};
    uint64_t x = 0x9E3779B97F4A7C15ull;
    const double steps[] = {0, 0, 0.001, 0.1234567, 1, 7.5, 37.1, -0.5, -120, 3600.25, 1e-6};
    int mismatches = 0, allowed = 0;
    for (int i = 0; i < STEPS; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int k = (int)(x % NK);
        test_now += steps[(x >> 8) % (sizeof steps / sizeof steps[0])];
        luar_gcra_t g;
        CHECK_EQ_INT(luar_gcra_parse(&g, limits[k]), 0);
        int64_t cost = 1 + (int64_t)((x >> 20) % (uint64_t)(g.burst < 3 ? g.burst : 3));
        char key[16];
        snprintf(key, sizeof key, "k%d", k);
        rate_res_t r = {0};
        CHECK_EQ_INT(luar_queue_rate_check(q, key, &g, cost, on_rate, &r), 0);
        CHECK(wait_for(&r.done));
        CHECK_EQ_INT(r.rc, 0);
        luar_gcra_result_t c;
        luar_gcra_check(&g, tat[k], luar_gcra_ns(test_now), cost, &c);
        if (c.store)
            tat[k] = c.tat_ns;
        allowed += c.allowed;
        if (r.r.allowed != c.allowed || r.r.store != c.store || r.r.tat_ns != c.tat_ns ||
            r.r.retry_after_ns != c.retry_after_ns || r.r.reset_after_ns != c.reset_after_ns ||
            r.r.remaining != c.remaining) {
            if (mismatches++ < 5)
                fprintf(stderr,
                        "  step %d %s cost %lld: redis %d/%d tat %lld retry %lld reset %lld "
                        "rem %lld; C %d/%d tat %lld retry %lld reset %lld rem %lld\n",
                        i, limits[k], (long long)cost, r.r.allowed, r.r.store,
                        (long long)r.r.tat_ns, (long long)r.r.retry_after_ns,
                        (long long)r.r.reset_after_ns, (long long)r.r.remaining, c.allowed, c.store,
                        (long long)c.tat_ns, (long long)c.retry_after_ns,
                        (long long)c.reset_after_ns, (long long)c.remaining);
        }
    }
    fprintf(stderr, "  %d checks, %d allowed, %d mismatches\n", STEPS, allowed, mismatches);
    CHECK_EQ_INT(mismatches, 0);
    CHECK(allowed > 0 && allowed < STEPS);
    /* A limit whose bucket spans more than the script's exact range is refused. */
    luar_gcra_t huge = {.interval_ns = INT64_C(86400) * 1000000000 * 30, .burst = 3};
    rate_res_t r = {0};
    CHECK_EQ_INT(luar_queue_rate_check(q, "huge", &huge, 1, on_rate, &r), 0);
    CHECK(wait_for(&r.done));
    CHECK_EQ_INT(r.rc, LUAR_EINVAL);
    close_q(q);
}

/* A cron tick claimed from two handles at once (two instances): one fires it. */
TEST(redis_tick_claims_race_once_across_handles)
{
    luar_queue_t *q1 = redis_fresh(), *q2 = redis_again();
    int wins = 0;
    for (int i = 0; i < 50; i++) {
        char key[64];
        snprintf(key, sizeof key, "cron:report:%d", 1700000000 + i);
        res_t a = {0}, b = {0};
        CHECK_EQ_INT(luar_queue_enqueue(q1, NULL, 0, key, 3600, on_enqueued, &a), 0);
        CHECK_EQ_INT(luar_queue_enqueue(q2, NULL, 0, key, 3600, on_enqueued, &b), 0);
        CHECK(wait_for(&a.done) && wait_for(&b.done));
        CHECK_EQ_INT(a.rc, 0);
        CHECK_EQ_INT(b.rc, 0);
        CHECK_EQ_INT(a.duplicate + b.duplicate, 1);
        wins += !a.duplicate;
        res_free(&a);
        res_free(&b);
    }
    fprintf(stderr, "  handle 1 won %d of 50 ticks\n", wins);
    close_q(q1);
    close_q(q2);
}

/* Lists bounded per call: a filter that matches little still pages to the end. */
TEST(redis_list_with_a_sparse_filter_pages_to_the_end)
{
    luar_queue_t *q = redis_fresh();
    enum { N = 12000 };
    luar_job_spec_t *specs = calloc(N, sizeof *specs);
    for (int i = 0; i < N; i++)
        specs[i] = (luar_job_spec_t){.name = i % 5000 == 7 ? "rare" : "common"};
    res_t r;
    CHECK_EQ_INT(enqueue_batch(q, specs, N, NULL, 0, &r), 0);
    res_free(&r);
    free(specs);
    luar_job_filter_t f = {.state = -1, .name = "rare", .limit = 10};
    size_t found = 0;
    int calls = 0;
    static char cursor[40];
    do {
        CHECK_EQ_INT(list(q, &f, &r), 0);
        found += r.n;
        for (size_t i = 0; i < r.n; i++)
            CHECK_EQ_STR(r.jobs[i].name, "rare");
        memcpy(cursor, r.cursor, sizeof cursor);
        f.cursor = cursor;
        res_free(&r);
        calls++;
    } while (cursor[0] && calls < 100);
    fprintf(stderr, "  found %zu rare jobs in %d list calls\n", found, calls);
    CHECK_EQ_INT(found, 3);
    CHECK(calls >= 2);
    /* Bulk repairs run in bounded calls too, and count every job. */
    luar_job_filter_t all = {.state = LUAR_JOB_QUEUED, .name = "common"};
    size_t n = 0;
    CHECK_EQ_INT(count_op(luar_queue_purge, q, &all, &n), 0);
    CHECK_EQ_INT(n, N - 3);
    CHECK_EQ_INT(count_of(q, "default", LUAR_JOB_QUEUED), 3);
    close_q(q);
}

/* ---- TLS ------------------------------------------------------------------------------ */

static char tlsdir[256];

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "command failed (%d): %s\n", rc, cmd);
    return rc;
}

/* A CA, a server certificate for 127.0.0.1/localhost and a client certificate, plus a
 * second CA that signed nothing of this server's. */
static int make_certs(const char *d)
{
    const char *ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    return sh("cd %s && printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.ext && "
              "openssl req -x509 %s -keyout ca.key -out ca.crt -days 2 -subj /CN=luar-test-ca "
              "2>/dev/null && "
              "openssl req %s -keyout other.key -out other.crt -x509 -days 2 "
              "-subj /CN=other-ca 2>/dev/null && "
              "openssl req %s -keyout server.key -out server.csr -subj /CN=localhost "
              "2>/dev/null && "
              "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
              "-out server.crt -days 2 -extfile san.ext 2>/dev/null && "
              "openssl req %s -keyout client.key -out client.csr -subj /CN=luar-client "
              "2>/dev/null && "
              "openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
              "-out client.crt -days 2 2>/dev/null",
              d, ec, ec, ec, ec);
}

TEST(redis_tls_with_certificates_made_here)
{
    redis_server_t s;
    memset(&s, 0, sizeof s);
    snprintf(s.dir, sizeof s.dir, "/tmp/luar-redis-tls-XXXXXX");
    if (mkdtemp(s.dir) == NULL || make_certs(s.dir) != 0) {
        CHECK(!"cannot make certificates with the openssl CLI");
        return;
    }
    snprintf(tlsdir, sizeof tlsdir, "%s", s.dir);
    int tls_port = redis_free_port();
    char tport[16], cert[300], key[300], ca[300];
    snprintf(tport, sizeof tport, "%d", tls_port);
    snprintf(cert, sizeof cert, "%s/server.crt", s.dir);
    snprintf(key, sizeof key, "%s/server.key", s.dir);
    snprintf(ca, sizeof ca, "%s/ca.crt", s.dir);
    const char *extra[] = {"--tls-port",
                           tport,
                           "--tls-cert-file",
                           cert,
                           "--tls-key-file",
                           key,
                           "--tls-ca-cert-file",
                           ca,
                           "--tls-auth-clients",
                           "yes",
                           NULL};
    if (redis_start(&s, extra)) {
        CHECK(!"redis-server with TLS did not start");
        redis_stop(&s);
        return;
    }
    char url[1024];
    snprintf(url, sizeof url,
             "rediss://127.0.0.1:%d/0?prefix=tls:&ca=%s/ca.crt&cert=%s/client.crt"
             "&key=%s/client.key",
             tls_port, s.dir, s.dir, s.dir);
    luar_queue_t *q = open_url(url, NULL, NULL);
    CHECK(q != NULL);
    char id[40];
    if (q) {
        CHECK_EQ_INT(enqueue_named(q, "over_tls", NULL, id), 0);
        tjob_t j;
        CHECK_EQ_INT(claim1(q, "w", &j), 0);
        CHECK_EQ_STR(j.id, id);
        CHECK_EQ_INT(complete(q, id, "w", "{\"tls\":true}", 60), 0);
        CHECK_EQ_INT(get(q, id, &j), 0);
        CHECK_EQ_STR(j.result, "{\"tls\":true}");
        /* Many at once through the TLS pipeline. */
        enum { N = 500 };
        res_t *r = calloc(N, sizeof *r);
        luar_job_spec_t sp = {.name = "bulk"};
        for (int i = 0; i < N; i++)
            CHECK_EQ_INT(luar_queue_enqueue(q, &sp, 1, NULL, 0, on_enqueued, &r[i]), 0);
        for (int i = 0; i < N; i++) {
            CHECK(wait_for(&r[i].done));
            CHECK_EQ_INT(r[i].rc, 0);
            res_free(&r[i]);
        }
        free(r);
        CHECK_EQ_INT(count_of(q, "default", LUAR_JOB_QUEUED), N);
        close_q(q);
    }

    /* The certificate's DNS name, checked against server_name. */
    snprintf(url, sizeof url,
             "rediss://127.0.0.1:%d/0?prefix=tls:&ca=%s/ca.crt&cert=%s/client.crt"
             "&key=%s/client.key&server_name=localhost",
             tls_port, s.dir, s.dir, s.dir);
    q = open_url(url, NULL, NULL);
    CHECK_EQ_INT(ping(q), 0);
    close_q(q);

    /* A name the certificate does not carry. */
    snprintf(url, sizeof url,
             "rediss://127.0.0.1:%d/0?ca=%s/ca.crt&cert=%s/client.crt&key=%s/client.key"
             "&server_name=redis.example",
             tls_port, s.dir, s.dir, s.dir);
    q = open_url(url, NULL, NULL);
    CHECK_EQ_INT(ping(q), LUAR_EIO);
    fprintf(stderr, "  wrong name: %s\n", luar_queue_last_error(q));
    CHECK(strstr(luar_queue_last_error(q), "certificate verify failed") != NULL);
    close_q(q);

    /* A CA that did not sign the server's certificate. */
    snprintf(url, sizeof url,
             "rediss://127.0.0.1:%d/0?ca=%s/other.crt&cert=%s/client.crt&key=%s/client.key",
             tls_port, s.dir, s.dir, s.dir);
    q = open_url(url, NULL, NULL);
    CHECK_EQ_INT(ping(q), LUAR_EIO);
    fprintf(stderr, "  wrong CA: %s\n", luar_queue_last_error(q));
    CHECK(strstr(luar_queue_last_error(q), "certificate verify failed") != NULL);
    close_q(q);

    /* No client certificate: the server (tls-auth-clients yes) refuses. */
    snprintf(url, sizeof url, "rediss://127.0.0.1:%d/0?ca=%s/ca.crt", tls_port, s.dir);
    q = open_url(url, NULL, NULL);
    CHECK_EQ_INT(ping(q), LUAR_EIO);
    fprintf(stderr, "  no client certificate: %s\n", luar_queue_last_error(q));
    close_q(q);

    /* A file that cannot be loaded is a configuration error naming it. */
    snprintf(url, sizeof url, "rediss://127.0.0.1:%d/0?ca=%s/missing.crt", tls_port, s.dir);
    luar_buf_t err;
    luar_buf_init(&err, 0);
    int rc = 0;
    CHECK(open_url(url, &rc, &err) == NULL);
    CHECK_EQ_INT(rc, LUAR_EINVAL);
    CHECK(err.data && strstr(err.data, "missing.crt"));
    luar_buf_free(&err);

    /* TLS on the plain port: Redis waits for the end of an inline command that never
     * comes; the URL's timeout ends the attempt. */
    snprintf(url, sizeof url, "rediss://127.0.0.1:%d/0?ca=%s/ca.crt&timeout=0.5", s.port, s.dir);
    q = open_url(url, NULL, NULL);
    uint64_t t0 = uv_hrtime();
    CHECK_EQ_INT(ping(q), LUAR_EIO);
    CHECK((double)(uv_hrtime() - t0) / 1e9 < 3);
    CHECK(strstr(luar_queue_last_error(q), "could not connect within 0.5 s") != NULL);
    fprintf(stderr, "  TLS to a plain port: %s\n", luar_queue_last_error(q));
    close_q(q);
    redis_stop(&s);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&loop);
    if (redis_start(&server, NULL)) {
        fprintf(stderr, "FAIL: no redis-server to test the Redis backend against\n");
        return 1;
    }
    fprintf(stderr, "redis-server on 127.0.0.1:%d\n", server.port);
    RUN(redis_url_forms_and_errors);
    run_contract(&redis_backend);
    RUN(redis_pipelining_matches_replies_in_order);
    RUN(redis_batches_gather_while_one_is_out);
    RUN(redis_completion_runs_keep_each_fence_and_answer);
    RUN(redis_expiry_lists_delete_only_jobs_still_expired);
    RUN(redis_lost_function_reloads_the_library_and_retries);
    RUN(redis_connections_keep_the_library_the_server_has);
    RUN(redis_full_server_still_answers_reads);
    RUN(redis_connection_loss_fails_pending_ops_and_recovers);
    RUN(redis_idle_connection_dropped_by_the_server_reconnects_unseen);
    RUN(redis_a_connection_coming_back_wakes_its_siblings);
    RUN(redis_burst_sent_while_connecting_waits_then_lands);
    RUN(redis_times_read_back_exactly);
    RUN(redis_microsecond_scores_keep_times_exact);
    RUN(redis_unreachable_server_is_eio_naming_it);
    RUN(redis_acl_user_and_wrong_password);
    RUN(redis_select_isolates_databases);
    RUN(redis_refuses_another_key_layout);
    RUN(redis_prefix_isolates_apps);
    RUN(redis_rate_script_matches_the_c_arithmetic);
    RUN(redis_tick_claims_race_once_across_handles);
    RUN(redis_list_with_a_sparse_filter_pages_to_the_end);
    RUN(redis_tls_with_certificates_made_here);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
    redis_stop(&server);
    return DONE();
}
