/*
 * The admin API's queue endpoints: stats, jobs by filter, one job, and the repairs (retry,
 * delete, purge, dead-letter replay in bulk, replay of one dead job with edited arguments).
 * Every queue call is asynchronous; each endpoint keeps a job_op_t until its last callback
 * answers. Every repair is appended to the audit log once its outcome is known. The JSON
 * shapes are those of `luar jobs … --json` (cli/jobs_format.c).
 */
#include "admin/api.h"
#include "cli/jobs_format.h"
#include "common/error.h"
#include "common/json.h"
#include "luar_version.h"
#include "webhooks/deliver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LIST_DEFAULT 50
#define LIST_MAX 500
#define REPLAY_BATCH 500 /* jobs per retry_many: a commit stays short */
#define REPLAY_DEFAULT_MAX 10000
#define REPLAY_MAX 1000000
#define PURGE_BATCH 1000
#define PURGE_MAX_BATCHES 1000
#define REPLAY_DEDUPE_TTL 86400.0

/* One endpoint's state across its queue callbacks. */
typedef struct job_op {
    luar_admin_call_t *c;
    const char *id;      /* the job of /jobs/:id (in the call) */
    luar_job_filter_t f; /* strings in the call's parameters */
    luar_buf_t args;     /* replay: the new arguments */
    char new_id[40];     /* replay: the job enqueued */
    size_t total;        /* bulk: jobs touched so far */
    size_t batches;
    size_t max; /* bulk replay: at most this many */
} job_op_t;

static job_op_t *op_new(luar_admin_call_t *c)
{
    job_op_t *op = calloc(1, sizeof *op);
    if (op == NULL) {
        luar_admin_error(c, 500, "out of memory");
        return NULL;
    }
    op->c = c;
    op->id = c->path_params[0];
    luar_buf_init(&op->args, 0);
    return op;
}

static void op_free(job_op_t *op)
{
    luar_buf_free(&op->args);
    free(op);
}

/* Answers a failed queue call and ends the operation. */
static void op_fail(job_op_t *op, int rc)
{
    luar_admin_queue_error(op->c, rc, op->id);
    op_free(op);
}

/* Answers 200 with `b` and ends the operation. */
static void op_done(job_op_t *op, luar_buf_t *b)
{
    luar_admin_respond_buf(op->c, 200, b);
    op_free(op);
}

/* The queue, or a 503 (shutting down). */
static int have_queue(luar_admin_call_t *c)
{
    if (c->env.queue != NULL)
        return 1;
    luar_admin_error(c, 503, "the queue backend is closed (shutting down)");
    return 0;
}

/* The state of an endpoint that needs the queue; NULL when it has answered already. */
static job_op_t *op_start(luar_admin_call_t *c)
{
    return have_queue(c) ? op_new(c) : NULL;
}

/* Ends a started queue call that failed synchronously. */
static void op_started(job_op_t *op, int rc)
{
    if (rc)
        op_fail(op, rc);
}

/* The outcome of a luar_queue_get: 1 with the job there; else answered (404, 503) and 0. */
static int op_got(job_op_t *op, int rc, size_t n)
{
    if (rc == 0 && n == 0)
        rc = LUAR_ENOTFOUND;
    if (rc == 0)
        return 1;
    op_fail(op, rc);
    return 0;
}

/* ---- GET /admin/api/stats ------------------------------------------------------------ */

static void on_counts(void *arg, int rc, const luar_queue_count_t *counts, size_t n)
{
    luar_admin_call_t *c = arg;
    if (rc) {
        luar_admin_queue_error(c, rc, NULL);
        return;
    }
    int64_t totals[LUAR_JOB_STATES] = {0};
    luar_buf_t b;
    luar_buf_init(&b, 0);
    double uptime = (double)(uv_hrtime() - c->env.started_ns) / 1e9;
    luar_buf_appendf(&b,
                     "{\"version\":\"%s\",\"pid\":%d,\"worker\":%d,\"uptime_seconds\":%.3f,"
                     "\"scripts_generation\":%u,\"jobs_running\":%zu,\"queues\":{",
                     LUAR_VERSION, (int)getpid(), c->env.worker_id, uptime, c->env.generation,
                     c->env.jobs_running);
    for (size_t i = 0; i < n; i++) {
        if (i)
            luar_buf_putc(&b, ',');
        luar_buf_append_json_string(&b, counts[i].queue, strlen(counts[i].queue));
        luar_buf_putc(&b, ':');
        for (int s = 0; s < LUAR_JOB_STATES; s++) {
            luar_buf_appendf(&b, "%c\"%s\":%lld", s ? ',' : '{',
                             luar_job_state_name((luar_job_state_t)s),
                             (long long)counts[i].counts[s]);
            totals[s] += counts[i].counts[s];
        }
        luar_buf_putc(&b, '}');
    }
    luar_buf_puts(&b, "},\"totals\":");
    for (int s = 0; s < LUAR_JOB_STATES; s++)
        luar_buf_appendf(&b, "%c\"%s\":%lld", s ? ',' : '{',
                         luar_job_state_name((luar_job_state_t)s), (long long)totals[s]);
    luar_buf_puts(&b, "}}");
    luar_admin_respond_buf(c, 200, &b);
}

void luar_admin_get_stats(luar_admin_call_t *c)
{
    if (!have_queue(c))
        return;
    int rc = luar_queue_counts(c->env.queue, on_counts, c);
    if (rc)
        luar_admin_queue_error(c, rc, NULL);
}

/* ---- GET /admin/api/jobs ------------------------------------------------------------- */

static void on_list(void *arg, int rc, const luar_job_t *jobs, size_t n, const char *next)
{
    luar_admin_call_t *c = arg;
    if (rc) {
        luar_admin_queue_error(c, rc, NULL);
        return;
    }
    luar_buf_t b;
    luar_buf_init(&b, 0);
    luar_buf_puts(&b, "{\"jobs\":[");
    for (size_t i = 0; i < n; i++) {
        luar_buf_puts(&b, i ? "," : "");
        luar_jobs_fmt_json_job(&b, &jobs[i]);
    }
    luar_buf_puts(&b, "],\"next_cursor\":");
    luar_jobs_fmt_json_str(&b, next);
    luar_buf_putc(&b, '}');
    luar_admin_respond_buf(c, 200, &b);
}

void luar_admin_list_jobs(luar_admin_call_t *c)
{
    luar_job_filter_t f;
    if (luar_admin_read_filter(c, &f, -1, LIST_DEFAULT, LIST_MAX) || !have_queue(c))
        return;
    int rc = luar_queue_list(c->env.queue, &f, on_list, c);
    if (rc)
        luar_admin_queue_error(c, rc, NULL);
}

/* ---- GET /admin/api/jobs/:id --------------------------------------------------------- */

static void on_show(void *arg, int rc, const luar_job_t *jobs, size_t n)
{
    job_op_t *op = arg;
    if (!op_got(op, rc, n))
        return;
    luar_buf_t b;
    luar_buf_init(&b, 0);
    luar_jobs_fmt_json_job(&b, &jobs[0]);
    op_done(op, &b);
}

void luar_admin_show_job(luar_admin_call_t *c)
{
    job_op_t *op = op_start(c);
    if (op == NULL)
        return;
    op_started(op, luar_queue_get(c->env.queue, op->id, on_show, op));
}

/* ---- POST /admin/api/jobs/:id/retry -------------------------------------------------- */

/* Audits a one-job action and answers {"<verb>":1,"id":…}. */
static void one_done(job_op_t *op, const char *action, const char *verb)
{
    luar_buf_t f, b;
    luar_buf_init(&f, 0);
    luar_buf_init(&b, 0);
    luar_buf_puts(&f, "\"job\":");
    luar_buf_append_json_string(&f, op->id, strlen(op->id));
    luar_buf_puts(&f, ",\"count\":1");
    luar_admin_audit(op->c, action, &f);
    luar_buf_free(&f);
    luar_buf_appendf(&b, "{\"%s\":1,\"id\":", verb);
    luar_buf_append_json_string(&b, op->id, strlen(op->id));
    luar_buf_putc(&b, '}');
    op_done(op, &b);
}

static void on_retried(void *arg, int rc)
{
    job_op_t *op = arg;
    if (rc)
        op_fail(op, rc);
    else
        one_done(op, "jobs.retry", "retried");
}

static void on_retry_state(void *arg, int rc, const luar_job_t *jobs, size_t n)
{
    job_op_t *op = arg;
    if (!op_got(op, rc, n))
        return;
    /* A queued job is already waiting and a running one holds a lease: nothing to retry. */
    if (jobs[0].state == LUAR_JOB_RUNNING || jobs[0].state == LUAR_JOB_QUEUED) {
        luar_admin_error(op->c, 409,
                         "job %s is %s; only dead, retrying, scheduled or succeeded jobs can "
                         "be retried",
                         op->id, luar_job_state_name(jobs[0].state));
        op_free(op);
        return;
    }
    rc = luar_queue_retry(op->c->env.queue, op->id, on_retried, op);
    if (rc)
        op_fail(op, rc);
}

void luar_admin_retry_job(luar_admin_call_t *c)
{
    job_op_t *op = op_start(c);
    if (op == NULL)
        return;
    op_started(op, luar_queue_get(c->env.queue, op->id, on_retry_state, op));
}

/* ---- DELETE /admin/api/jobs/:id ------------------------------------------------------ */

static void on_deleted(void *arg, int rc)
{
    job_op_t *op = arg;
    if (rc)
        op_fail(op, rc);
    else
        one_done(op, "jobs.delete", "deleted");
}

void luar_admin_delete_job(luar_admin_call_t *c)
{
    job_op_t *op = op_start(c);
    if (op == NULL)
        return;
    op_started(op, luar_queue_delete(c->env.queue, op->id, on_deleted, op));
}

/* ---- POST /admin/api/jobs/:id/replay ------------------------------------------------- */
/*
 * A dead job run again with edited arguments: a new job with the dead one's name, queue,
 * priority, attempts and key, and the given `args` (the dead job's own when none are
 * given); then the dead job is deleted, so a later bulk replay cannot run it a second
 * time. The link between the two is the audit record ("job" and "new_job") and the
 * answer's "replayed_from". The enqueue carries the dedupe key "admin-replay:<id>", so a
 * second replay of the same job (a double click) enqueues nothing and answers 409.
 */

static void replay_answer(job_op_t *op, int delete_rc)
{
    luar_buf_t f, b;
    luar_buf_init(&f, 0);
    luar_buf_init(&b, 0);
    luar_buf_puts(&f, "\"job\":");
    luar_buf_append_json_string(&f, op->id, strlen(op->id));
    luar_buf_puts(&f, ",\"new_job\":");
    luar_buf_append_json_string(&f, op->new_id, strlen(op->new_id));
    luar_buf_puts(&f, ",\"count\":1");
    if (delete_rc != 0 && delete_rc != LUAR_ENOTFOUND)
        luar_buf_puts(&f, ",\"dead_job_kept\":true");
    luar_admin_audit(op->c, "jobs.replay_edited", &f);
    luar_buf_free(&f);
    luar_buf_puts(&b, "{\"replayed\":1,\"id\":");
    luar_buf_append_json_string(&b, op->new_id, strlen(op->new_id));
    luar_buf_puts(&b, ",\"replayed_from\":");
    luar_buf_append_json_string(&b, op->id, strlen(op->id));
    if (delete_rc != 0 && delete_rc != LUAR_ENOTFOUND)
        luar_buf_puts(&b, ",\"dead_job_kept\":true");
    luar_buf_putc(&b, '}');
    op_done(op, &b);
}

static void on_replay_deleted(void *arg, int rc)
{
    replay_answer(arg, rc);
}

static void on_replay_enqueued(void *arg, int rc, const char *const *ids, size_t n, int duplicate)
{
    job_op_t *op = arg;
    if (rc) {
        op_fail(op, rc);
        return;
    }
    if (duplicate || n != 1) {
        luar_admin_error(op->c, 409, "job %s was already replayed", op->id);
        op_free(op);
        return;
    }
    snprintf(op->new_id, sizeof op->new_id, "%s", ids[0]);
    rc = luar_queue_delete(op->c->env.queue, op->id, on_replay_deleted, op);
    if (rc)
        replay_answer(op, rc);
}

static void on_replay_got(void *arg, int rc, const luar_job_t *jobs, size_t n)
{
    job_op_t *op = arg;
    if (!op_got(op, rc, n))
        return;
    const luar_job_t *j = &jobs[0];
    if (j->state != LUAR_JOB_DEAD) {
        luar_admin_error(op->c, 409, "job %s is %s; only dead jobs are replayed with new args",
                         op->id, luar_job_state_name(j->state));
        op_free(op);
        return;
    }
    const char *args = op->args.len ? op->args.data : j->args;
    /* A delivery's secret is shown as "[REDACTED]" (jobs_format.c): sent back as it was
     * shown, it would sign every attempt with that word. */
    const char *val;
    size_t vlen;
    if (op->args.len && j->name && strcmp(j->name, LUAR_DELIVER_JOB) == 0 &&
        luar_json_member(args, strlen(args), "secret", &val, &vlen) && vlen == 12 &&
        memcmp(val, "\"[REDACTED]\"", 12) == 0) {
        luar_admin_error(op->c, 400,
                         "args: secret: give the endpoint's secret, not the "
                         "\"[REDACTED]\" shown in its place");
        op_free(op);
        return;
    }
    luar_job_spec_t spec;
    memset(&spec, 0, sizeof spec);
    spec.name = j->name;
    spec.queue = j->queue;
    spec.args = args;
    spec.key = j->key;
    spec.priority = j->priority;
    spec.max_attempts = j->max_attempts;
    char dedupe[80];
    snprintf(dedupe, sizeof dedupe, "admin-replay:%s", op->id);
    rc = luar_queue_enqueue(op->c->env.queue, &spec, 1, dedupe, REPLAY_DEDUPE_TTL,
                            on_replay_enqueued, op);
    if (rc)
        op_fail(op, rc);
}

void luar_admin_replay_job(luar_admin_call_t *c)
{
    job_op_t *op = op_start(c);
    if (op == NULL)
        return;
    const char *val;
    size_t vlen;
    if (c->body_is_object &&
        luar_json_member(c->req->body, c->req->body_len, "args", &val, &vlen)) {
        if (val[0] != '{' && val[0] != '[') {
            luar_admin_error(c, 400, "args: expected a JSON object or array");
            op_free(op);
            return;
        }
        if (luar_buf_append(&op->args, val, vlen) || luar_buf_putc(&op->args, '\0')) {
            luar_admin_error(c, 500, "out of memory");
            op_free(op);
            return;
        }
        op->args.len--; /* NUL-terminated, not counted */
    }
    op_started(op, luar_queue_get(c->env.queue, op->id, on_replay_got, op));
}

/* ---- bulk: POST /admin/api/jobs/purge, POST /admin/api/dead/replay -------------------- */

/* Audits a bulk action and answers {"<verb>":N,"batches":B[,…]}. */
static void bulk_done(job_op_t *op, const char *action, const char *verb)
{
    luar_buf_t f, b;
    luar_buf_init(&f, 0);
    luar_buf_init(&b, 0);
    luar_admin_filter_json(&f, &op->f);
    luar_buf_appendf(&f, ",\"count\":%zu", op->total);
    if (op->max)
        luar_buf_appendf(&f, ",\"max\":%zu", op->max);
    luar_admin_audit(op->c, action, &f);
    luar_buf_free(&f);
    luar_buf_appendf(&b, "{\"%s\":%zu,\"batches\":%zu", verb, op->total, op->batches);
    if (op->max)
        luar_buf_appendf(&b, ",\"max_reached\":%s", op->total >= op->max ? "true" : "false");
    luar_buf_putc(&b, '}');
    op_done(op, &b);
}

/* A batch failed after others went through: what was done is audited, then the error. */
static void bulk_fail(job_op_t *op, int rc, const char *action)
{
    if (op->total > 0) {
        luar_buf_t f;
        luar_buf_init(&f, 0);
        luar_admin_filter_json(&f, &op->f);
        luar_buf_appendf(&f, ",\"count\":%zu,\"error\":", op->total);
        const char *why = luar_strerror(rc);
        luar_buf_append_json_string(&f, why, strlen(why));
        luar_admin_audit(op->c, action, &f);
        luar_buf_free(&f);
    }
    op_fail(op, rc);
}

static void purge_next(job_op_t *op);

static void on_purged(void *arg, int rc, size_t count)
{
    job_op_t *op = arg;
    if (rc) {
        bulk_fail(op, rc, "jobs.purge");
        return;
    }
    op->total += count;
    op->batches++;
    if (count < PURGE_BATCH || op->batches >= PURGE_MAX_BATCHES)
        bulk_done(op, "jobs.purge", "purged");
    else
        purge_next(op);
}

static void purge_next(job_op_t *op)
{
    int rc = luar_queue_purge(op->c->env.queue, &op->f, on_purged, op);
    if (rc)
        bulk_fail(op, rc, "jobs.purge");
}

void luar_admin_purge_jobs(luar_admin_call_t *c)
{
    job_op_t *op = op_start(c);
    if (op == NULL)
        return;
    op->id = NULL;
    if (luar_admin_read_filter(c, &op->f, -1, 0, 0)) {
        op_free(op);
        return;
    }
    if (op->f.state < 0 || op->f.state == LUAR_JOB_RUNNING) {
        luar_admin_error(c, 400,
                         "state: %s (queued, scheduled, succeeded, retrying or dead; a purge "
                         "never deletes every state at once, nor running jobs)",
                         op->f.state < 0 ? "required" : "running jobs cannot be purged");
        op_free(op);
        return;
    }
    op->f.max = PURGE_BATCH;
    purge_next(op);
}

static void replay_next(job_op_t *op);

static void on_replayed(void *arg, int rc, size_t count)
{
    job_op_t *op = arg;
    if (rc) {
        bulk_fail(op, rc, "jobs.replay");
        return;
    }
    op->total += count;
    op->batches++;
    /* Until a batch finds nothing more (or the most asked for is reached). A batch can
     * retry fewer than it was given when a job's unique key is held by a newer job. */
    if (count == 0 || op->total >= op->max)
        bulk_done(op, "jobs.replay", "replayed");
    else
        replay_next(op);
}

static void replay_next(job_op_t *op)
{
    size_t left = op->max - op->total;
    op->f.max = left < REPLAY_BATCH ? left : REPLAY_BATCH;
    int rc = luar_queue_retry_many(op->c->env.queue, &op->f, on_replayed, op);
    if (rc)
        bulk_fail(op, rc, "jobs.replay");
}

void luar_admin_replay_dead(luar_admin_call_t *c)
{
    job_op_t *op = op_start(c);
    long max;
    if (op == NULL)
        return;
    op->id = NULL;
    if (luar_admin_read_filter(c, &op->f, LUAR_JOB_DEAD, 0, 0)) {
        op_free(op);
        return;
    }
    if (op->f.state != LUAR_JOB_DEAD) {
        luar_admin_error(c, 400,
                         "state: only dead jobs are replayed in bulk (retry others "
                         "one by one: POST /admin/api/jobs/ID/retry)");
        op_free(op);
        return;
    }
    if (luar_admin_read_count(c, "max", REPLAY_DEFAULT_MAX, 1, REPLAY_MAX, &max)) {
        op_free(op);
        return;
    }
    op->max = (size_t)max;
    /* Only jobs dead before now: one that dies again while the batches run is not
     * replayed a second time by the same request. */
    double now = luar_queue_now(c->env.queue);
    if (op->f.until <= 0 || op->f.until > now)
        op->f.until = now;
    replay_next(op);
}
