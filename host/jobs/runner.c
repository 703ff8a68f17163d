/*
 * The job runner of one worker process. It claims due jobs from the queue backend (per
 * queue, within the worker's concurrency limits), runs each job in its own coroutine of
 * the current VM (a reload lets running jobs finish on the old scripts while new claims use
 * the new ones), and writes the outcome back: complete, fail with a retry time (backoff
 * with full jitter) or dead, or release without counting the attempt (jobs.retry_in, rate
 * limit, shutdown). Leases are renewed every heartbeat; a job whose lease was lost (the
 * sweep of another process reclaimed it) is cancelled here, so it never runs twice at once.
 * So is a job whose lease this worker could not renew (the backend is down or does not
 * answer): it is stopped before the lease ends, since from then on another worker may claim
 * it (see lease_margin).
 *
 * When does it look for work: after a local enqueue commits (luar_jobs_kick), after a job
 * ends (a slot freed), after a sweep reclaimed something, and every `poll` seconds (work
 * enqueued by other processes, delayed jobs becoming due).
 */
#include "jobs/jobs.h"
#include "common/error.h"
#include "client/ratelimit.h"
#include "crypto/crypto.h"
#include "log/log.h"
#include "plugin/hooks.h"
#include "lua/task.h"
#include "lua/util.h"
#include "lua/vm_internal.h"
#include "metrics/metrics.h"
#include "secrets/redact.h"
#include "trace/export.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_QUEUES 64
#define MAX_BUCKETS 256

typedef struct qstate {
    char *name;
    int running;
    int limit;    /* 0: only the worker's concurrency */
    int claiming; /* a claim for this queue is in flight */
} qstate_t;

typedef struct bucket {
    char *job;
    luar_tokenbucket_t tb; /* host/client/ratelimit.h: the one token bucket */
} bucket_t;

typedef struct running_job {
    luar_runner_t *r;
    char id[40];
    char *name, *queue, *args;
    char *schedule; /* the schedule that enqueued it ("cron:<name>:<tick>" key), or NULL */
    int attempt, max_attempts;
    double enqueued_at, run_at;
    luar_task_t *task;
    uv_timer_t timeout;
    int timed_out, shutdown, lease_lost;
    double timeout_s;
    double lease_until; /* the lease this worker knows it holds (queue clock) */
    unsigned hb_round;  /* the last heartbeat that asked to renew it */
    uint64_t start_ns;
    luar_trace_t trace; /* the attempt's span */
    struct running_job *prev, *next;
} running_job_t;

struct luar_runner {
    uv_loop_t *loop;
    luar_queue_t *queue;
    luar_jobs_config_t cfg;
    char *owner;
    luar_vm_t *(*current_vm)(void *);
    void *vm_arg;
    qstate_t queues[MAX_QUEUES];
    int nqueues;
    bucket_t buckets[MAX_BUCKETS];
    int nbuckets;
    running_job_t *jobs;
    int running;
    int writes;      /* queue writes in flight (their callbacks touch the runner) */
    int closing_jobs; /* finished jobs whose timer handle is still closing */
    int stopping;
    int heartbeating;
    unsigned hb_round; /* heartbeats sent */
    double hb_sent;    /* when the heartbeat in flight was sent (queue clock) */
    int claim_failing; /* claims fail (backend down): logged once, then every 10 s */
    uint64_t claim_logged_ms;
    unsigned claim_failures;
    uv_timer_t poll, heartbeat, grace;
    uv_timer_t lease; /* stops jobs whose lease could not be renewed in time */
    double lease_armed; /* the lease_until the lease timer is armed for (0: not armed) */
    uv_timer_t due; /* the earliest retry/release time this worker wrote, to look then */
    double due_at;
    int closing;
    void (*stopped)(void *);
    void *stopped_arg;
    int manual; /* `luar test`: claims only while draining (luar_runner_drain) */
    struct {
        int active;
        size_t max;
        int round_open;     /* an eager claim round began while the runner was idle */
        size_t round_found; /* jobs claimed since that round began */
        luar_runner_drained_t report;
        luar_buf_t errors;  /* the report's errors: JSON objects joined by commas */
        void (*done)(void *arg, const luar_runner_drained_t *report);
        void *arg;
    } drain;
};

static luar_metric_t *m_jobs, *m_duration, *m_queue;

void luar_jobs_metrics_init(void)
{
    static const char *jl[] = {"queue", "job", "outcome"}, *dl[] = {"queue", "job"},
                      *ql[] = {"queue", "state"};
    luar_metrics_register(LUAR_METRIC_COUNTER, "luar_jobs_total",
                          "Job attempts by outcome (succeeded, failed, retried, dead).", jl, 3,
                          NULL, 0, &m_jobs, NULL);
    luar_metrics_register(LUAR_METRIC_HISTOGRAM, "luar_job_duration_seconds",
                          "Duration of job attempts.", dl, 2, NULL, 0, &m_duration, NULL);
    luar_metrics_register(LUAR_METRIC_GAUGE, "luar_queue_jobs", "Jobs in the backend by state.",
                          ql, 2, NULL, 0, &m_queue, NULL);
}

void luar_jobs_metrics_counts(const luar_queue_count_t *counts, size_t n)
{
    for (size_t i = 0; m_queue && i < n; i++) {
        for (int s = 0; s < LUAR_JOB_STATES; s++) {
            const char *v[] = {counts[i].queue, luar_job_state_name((luar_job_state_t)s)};
            luar_metric_set(m_queue, v, (double)counts[i].counts[s]);
        }
    }
}

static void count_outcome(const running_job_t *j, const char *outcome)
{
    const char *v[] = {j->queue, j->name, outcome};
    if (m_jobs)
        luar_metric_add(m_jobs, v, 1);
}

static qstate_t *qstate(luar_runner_t *r, const char *name)
{
    for (int i = 0; i < r->nqueues; i++)
        if (strcmp(r->queues[i].name, name) == 0)
            return &r->queues[i];
    if (r->nqueues == MAX_QUEUES)
        return NULL;
    qstate_t *q = &r->queues[r->nqueues++];
    memset(q, 0, sizeof *q);
    q->name = strdup(name);
    for (int i = 0; i < r->cfg.nqueues; i++)
        if (strcmp(r->cfg.queues[i].name, name) == 0)
            q->limit = r->cfg.queues[i].limit;
    return q;
}

static void pump(luar_runner_t *r);
static void maybe_stopped(luar_runner_t *r);
static void drain_check(luar_runner_t *r);

/* A drain counts what it ran: an attempt that ended (succeeded, failed, or asked to run
 * again), and the error of each failure. */
static void drain_count(luar_runner_t *r, int outcome, const char *id, const char *name,
                        const char *error)
{
    if (!r->drain.active)
        return;
    r->drain.report.ran++;
    if (outcome > 0) {
        r->drain.report.succeeded++;
    } else if (outcome < 0) {
        r->drain.report.failed++;
        luar_buf_t *b = &r->drain.errors;
        luar_buf_puts(b, b->len ? ",{\"id\":" : "{\"id\":");
        luar_buf_append_json_string(b, id, strlen(id));
        luar_buf_puts(b, ",\"name\":");
        luar_buf_append_json_string(b, name, strlen(name));
        luar_buf_puts(b, ",\"error\":");
        luar_buf_append_json_string(b, error ? error : "", error ? strlen(error) : 0);
        luar_buf_puts(b, "}");
    }
}

static void on_due(uv_timer_t *t)
{
    luar_runner_t *r = t->data;
    r->due_at = 0;
    pump(r);
}

/* A job this worker put back becomes due at `at`: look for work then, not at the next poll. */
static void wake_at(luar_runner_t *r, double at)
{
    if (r->stopping || (r->due_at > 0 && r->due_at <= at))
        return;
    double ms = (at - luar_queue_now(r->queue)) * 1000;
    if (ms > r->cfg.poll * 1000)
        return; /* the poll comes first anyway */
    r->due_at = at;
    uv_timer_start(&r->due, on_due, ms < 1 ? 1 : (uint64_t)ms + 1, 0);
}

/* ---- leases ------------------------------------------------------------------------- */

/*
 * How long before its lease ends a job whose lease could not be renewed is stopped. Other
 * workers' sweeps reclaim it once the lease has ended (by their clock), so it must be
 * stopped before, with room for a late timer and small clock differences. Half of what a
 * healthy heartbeat leaves: with heartbeats every `heartbeat` seconds a renewed lease never
 * has less than lease - heartbeat to run, so a job is only stopped after its heartbeats
 * failed (or went unanswered) for (lease - heartbeat) / 2 seconds — 10 s of the default
 * 30 s lease and 10 s heartbeat. (The backend fences writes by owner, and the owner is the
 * process: a run that outlived its lease would also pass the fence for a later attempt of
 * the same job claimed by this process, and write its outcome over that attempt's.)
 * The timer runs before a loop iteration's I/O, so after a stall the runs whose lease ran
 * out are stopped before any claim answer is read.
 */
static double lease_margin(const luar_runner_t *r)
{
    double m = (r->cfg.lease - r->cfg.heartbeat) / 2;
    return m > 0 ? m : r->cfg.lease / 4;
}

static void on_lease_timer(uv_timer_t *t);

/* Arms the lease timer for a job whose lease ends at `first` (0: none running). */
static void arm_lease_at(luar_runner_t *r, double first)
{
    r->lease_armed = first;
    if (first == 0) {
        uv_timer_stop(&r->lease);
        return;
    }
    double ms = (first - lease_margin(r) - luar_queue_now(r->queue)) * 1000;
    uv_timer_start(&r->lease, on_lease_timer, ms < 1 ? 1 : (uint64_t)ms + 1, 0);
}

/* Arms the lease timer for the earliest job that would have to stop. */
static void arm_lease_timer(luar_runner_t *r)
{
    if (r->closing)
        return;
    double first = 0;
    for (running_job_t *j = r->jobs; j; j = j->next)
        if (j->task && (first == 0 || j->lease_until < first))
            first = j->lease_until;
    arm_lease_at(r, first);
}

/* A job started: the timer moves only if its lease ends before the one armed (a scan of
 * every running job per start was 3-5 % of a worker draining no-op jobs, 256 at a time). */
static void lease_started(luar_runner_t *r, double lease_until)
{
    if (!r->closing && (r->lease_armed == 0 || lease_until < r->lease_armed))
        arm_lease_at(r, lease_until);
}

static void on_lease_timer(uv_timer_t *t)
{
    luar_runner_t *r = t->data;
    double now = luar_queue_now(r->queue), margin = lease_margin(r);
    running_job_t *j = r->jobs;
    while (j) {
        running_job_t *next = j->next; /* cancelling unlinks j */
        if (j->task && now >= j->lease_until - margin) {
            luar_logf(LUAR_LOG_WARN, "job %s (%s) stopped: its lease ends in %.3f s and could "
                      "not be renewed (%s); it runs again once the lease has ended",
                      j->id, j->name, j->lease_until - now,
                      *luar_queue_last_error(r->queue) ? luar_queue_last_error(r->queue)
                                                       : "no answer from the queue backend");
            j->lease_lost = 2; /* said here; job_done need not say it again */
            luar_task_cancel(j->task, "the job's lease could not be renewed");
        }
        j = next;
    }
    arm_lease_timer(r);
}

/* ---- writing outcomes ---------------------------------------------------------------- */

static void on_written(void *arg, int rc)
{
    luar_runner_t *r = arg;
    if (rc && rc != LUAR_ENOTFOUND)
        luar_logf(LUAR_LOG_ERROR, "jobs: writing a job outcome failed: %s (the lease will "
                  "expire and the job run again)",
                  rc == LUAR_EIO ? luar_queue_last_error(r->queue) : luar_strerror(rc));
    r->writes--;
    pump(r);
    maybe_stopped(r);
    drain_check(r);
}

/* Seconds before the next attempt after attempt `attempt` failed. */
static double backoff_delay(const luar_job_def_t *def, luar_vm_t *vm, int attempt)
{
    if (def == NULL)
        return 1;
    if (def->backoff == LUAR_BACKOFF_FIXED)
        return def->backoff_base;
    if (def->backoff == LUAR_BACKOFF_FUNCTION && vm && vm->L) {
        lua_State *L = vm->L;
        lua_rawgeti(L, LUA_REGISTRYINDEX, def->backoff_ref);
        lua_pushinteger(L, attempt);
        double d = 1;
        if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_isnumber(L, -1) && lua_tonumber(L, -1) >= 0)
            d = lua_tonumber(L, -1);
        else
            luar_logf(LUAR_LOG_WARN, "jobs: backoff function of %s failed; retrying in 1 s",
                      def->name);
        lua_pop(L, 1);
        return d;
    }
    double ceiling = ldexp(1.0, attempt > 60 ? 60 : attempt);
    double cap = def->backoff_cap > 0 ? def->backoff_cap : 3600;
    if (ceiling > cap)
        ceiling = cap;
    uint32_t x = 0;
    luar_crypto_random(&x, sizeof x);
    return ceiling * ((double)x / 4294967296.0); /* full jitter */
}

static void write_failure(running_job_t *j, const luar_job_def_t *def, luar_vm_t *vm,
                          const char *error, const char *traceback)
{
    luar_runner_t *r = j->r;
    double now = luar_queue_now(r->queue);
    double retry_at = 0;
    /* The stored error is shown by `luar jobs show` and the admin API: no secret values. */
    luar_buf_t clean_error, clean_traceback;
    luar_buf_init(&clean_error, 0);
    luar_buf_init(&clean_traceback, 0);
    error = luar_secret_clean(error, &clean_error);
    traceback = luar_secret_clean(traceback, &clean_traceback);
    count_outcome(j, "failed");
    drain_count(r, -1, j->id, j->name, error);
    if (j->max_attempts == 0 || j->attempt < j->max_attempts) {
        retry_at = now + backoff_delay(def, vm, j->attempt);
        if (retry_at <= 0)
            retry_at = now;
        count_outcome(j, "retried");
    } else {
        count_outcome(j, "dead");
    }
    luar_buf_t f;
    luar_buf_init(&f, 0);
    luar_buf_puts(&f, "\"job\":");
    luar_buf_append_json_string(&f, j->name, strlen(j->name));
    luar_buf_appendf(&f, ",\"job_id\":\"%s\",\"attempt\":%d,\"trace_id\":\"%s\",\"error\":", j->id,
                     j->attempt, j->trace.trace_id);
    luar_buf_append_json_string(&f, error, strlen(error));
    if (traceback && *traceback) {
        luar_buf_puts(&f, ",\"traceback\":");
        luar_buf_append_json_string(&f, traceback, strlen(traceback));
    }
    if (retry_at > 0)
        luar_buf_appendf(&f, ",\"retry_in\":%.3f", retry_at - now);
    const char *msg = retry_at > 0 ? "job failed, will retry" : "job failed, now dead";
    luar_plugin_error_t e = {.where = "job",
                             .message = error,
                             .traceback = traceback,
                             .job = j->name,
                             .job_id = j->id,
                             .queue = j->queue,
                             .schedule = j->schedule,
                             .attempt = j->attempt,
                             .final = retry_at <= 0,
                             .trace_id = j->trace.trace_id,
                             .span_id = j->trace.span_id};
    luar_plugin_report_error(&e, retry_at > 0 ? LUAR_LOG_WARN : LUAR_LOG_ERROR, msg, f.data, f.len);
    luar_buf_free(&f);
    r->writes++;
    if (luar_queue_fail(r->queue, j->id, r->owner, error, traceback, retry_at,
                        r->cfg.dead_ttl, on_written, r))
        r->writes--;
    else if (retry_at > 0)
        wake_at(r, retry_at);
    luar_buf_free(&clean_error);
    luar_buf_free(&clean_traceback);
}

static void write_release(running_job_t *j, double run_at)
{
    luar_runner_t *r = j->r;
    r->writes++;
    if (luar_queue_release(r->queue, j->id, r->owner, run_at, on_written, r))
        r->writes--;
    else
        wake_at(r, run_at);
}

/* ---- the end of a job ---------------------------------------------------------------- */

static void job_closed(uv_handle_t *h)
{
    running_job_t *j = h->data;
    luar_runner_t *r = j->r;
    r->closing_jobs--;
    free(j->name);
    free(j->queue);
    free(j->args);
    free(j->schedule);
    free(j);
    maybe_stopped(r);
}

static void job_release_slot(running_job_t *j)
{
    luar_runner_t *r = j->r;
    if (j->prev)
        j->prev->next = j->next;
    else
        r->jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
    r->running--;
    qstate_t *q = qstate(r, j->queue);
    if (q)
        q->running--;
    r->closing_jobs++;
    uv_close((uv_handle_t *)&j->timeout, job_closed);
}

/* What a finished job returned, read on the VM's main thread. */
struct outcome {
    luar_task_t *task;
    int retry;          /* jobs.retry_in(s) */
    double retry_in;
    char *result;       /* JSON, or NULL */
};


static int read_outcome(lua_State *L)
{
    struct outcome *o = lua_touserdata(L, 1);
    lua_State *co = luar_task_thread(o->task);
    int n = luar_task_results(o->task);
    if (n == 0)
        return 0;
    lua_pushvalue(co, -n);
    lua_xmove(co, L, 1);
    if (lua_getmetatable(L, -1)) {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &luar_jobs_retry_key);
        if (lua_rawequal(L, -1, -2)) {
            lua_getfield(L, -3, "seconds");
            o->retry = 1;
            o->retry_in = lua_tonumber(L, -1);
            return 0;
        }
        lua_pop(L, 2);
    }
    if (lua_isnil(L, -1))
        return 0;
    size_t len;
    const char *json = luar_json_encode(L, -1, &len);
    o->result = strdup(json);
    return 0;
}

static void job_done(luar_task_t *task, int status, void *arg)
{
    running_job_t *j = arg;
    luar_runner_t *r = j->r;
    luar_vm_t *vm = luar_task_vm(task);
    const luar_job_def_t *def = luar_jobs_find(vm->jobs, j->name);
    double secs = (double)(uv_hrtime() - j->start_ns) / 1e9;
    j->task = NULL;
    uv_timer_stop(&j->timeout);
    if (m_duration) {
        const char *v[] = {j->queue, j->name};
        luar_metric_observe(m_duration, v, secs);
    }
    if (status == 0) {
        struct outcome o = {task, 0, 0, NULL};
        luar_buf_t err;
        luar_buf_init(&err, 4096);
        if (luar_vm_pcall(vm, read_outcome, &o, &err)) {
            write_failure(j, def, vm, err.data ? err.data : "cannot store the result", "");
        } else if (o.retry) {
            luar_logf(LUAR_LOG_INFO, "job %s (%s) asked to run again in %.3f s", j->id, j->name,
                      o.retry_in);
            drain_count(r, 0, j->id, j->name, NULL);
            write_release(j, luar_queue_now(r->queue) + (o.retry_in > 0 ? o.retry_in : 0));
        } else {
            count_outcome(j, "succeeded");
            drain_count(r, 1, j->id, j->name, NULL);
            r->writes++;
            if (luar_queue_complete(r->queue, j->id, r->owner, o.result, r->cfg.result_ttl,
                                    on_written, r))
                r->writes--;
        }
        free(o.result);
        luar_buf_free(&err);
    } else if (status == LUAR_ECANCELED && (j->shutdown || j->lease_lost)) {
        if (j->shutdown)
            write_release(j, luar_queue_now(r->queue)); /* back to the queue, not an attempt */
        else if (j->lease_lost == 1)
            luar_logf(LUAR_LOG_WARN, "job %s (%s) stopped: its lease was lost", j->id, j->name);
    } else {
        char msg[128];
        const char *error = luar_task_error(task);
        if (j->timed_out) {
            snprintf(msg, sizeof msg, "timed out after %g s", j->timeout_s);
            error = msg;
        }
        write_failure(j, def, vm, error, luar_task_traceback(task));
    }
    if (luar_trace_exporting()) {
        char name[160];
        snprintf(name, sizeof name, "job %s", j->name);
        luar_span_attr_t attrs[] = {{"luar.job.id", j->id, 0},
                                    {"luar.job.name", j->name, 0},
                                    {"luar.job.queue", j->queue, 0},
                                    {"luar.job.attempt", NULL, j->attempt}};
        luar_span_end(&j->trace, name, LUAR_SPAN_CONSUMER, luar_trace_unix_ns(j->start_ns),
                      attrs, sizeof attrs / sizeof attrs[0], status != 0,
                      status ? luar_task_error(task) : NULL);
    }
    job_release_slot(j);
    pump(r);
    drain_check(r);
}

static void on_timeout(uv_timer_t *t)
{
    running_job_t *j = t->data;
    j->timed_out = 1;
    if (j->task) {
        char msg[96];
        snprintf(msg, sizeof msg, "timed out after %g s", j->timeout_s);
        luar_task_cancel(j->task, msg);
    }
}

/* ---- starting a job ------------------------------------------------------------------ */

struct setup {
    running_job_t *job;
    const luar_job_def_t *def;
};

/* Pushes fn(args, job) — or fn(payload, meta) for an event subscriber. */
static int job_setup(lua_State *L, void *arg)
{
    struct setup *s = arg;
    running_job_t *j = s->job;
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->def->fn_ref);
    lua_pushstring(L, j->args);
    if (luar_json_decode(L, -1) != 1)
        return luaL_error(L, "job %s: stored arguments are not valid JSON", j->id);
    lua_remove(L, -2);
    if (s->def->is_event) {
        /* args = {topic, payload, published_at, event_id}: unpack into payload, meta. */
        lua_getfield(L, -1, "payload");
        lua_createtable(L, 0, 5);
        lua_getfield(L, -3, "topic");
        lua_setfield(L, -2, "topic");
        lua_getfield(L, -3, "published_at");
        lua_setfield(L, -2, "published_at");
        lua_getfield(L, -3, "event_id");
        lua_setfield(L, -2, "id");
        lua_pushstring(L, j->id);
        lua_setfield(L, -2, "job_id");
        lua_pushinteger(L, j->attempt);
        lua_setfield(L, -2, "attempt");
        lua_remove(L, -3);
        return 2;
    }
    lua_createtable(L, 0, 7);
    lua_pushstring(L, j->id);
    lua_setfield(L, -2, "id");
    lua_pushstring(L, j->name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, j->queue);
    lua_setfield(L, -2, "queue");
    lua_pushinteger(L, j->attempt);
    lua_setfield(L, -2, "attempt");
    lua_pushinteger(L, j->max_attempts);
    lua_setfield(L, -2, "max_attempts");
    lua_pushnumber(L, j->enqueued_at);
    lua_setfield(L, -2, "enqueued_at");
    lua_pushnumber(L, j->run_at);
    lua_setfield(L, -2, "scheduled_at");
    return 2;
}

/* Takes a token from the job's rate bucket; returns 0, or the seconds until one is there. */
static double take_token(luar_runner_t *r, const luar_job_def_t *def)
{
    if (def->rate <= 0)
        return 0;
    double now = uv_hrtime() / 1e9;
    bucket_t *b = NULL;
    for (int i = 0; i < r->nbuckets; i++)
        if (strcmp(r->buckets[i].job, def->name) == 0)
            b = &r->buckets[i];
    if (b == NULL) {
        if (r->nbuckets == MAX_BUCKETS || luar_tokenbucket_init(&r->buckets[r->nbuckets].tb,
                                                                 def->rate, def->rate_burst))
            return 0;
        b = &r->buckets[r->nbuckets++];
        b->job = strdup(def->name);
        b->tb.max_wait = -1;
    }
    /* A job over the rate is put back until its turn, not made to hold a reservation. */
    double wait = luar_tokenbucket_peek(&b->tb, now);
    if (wait > 0)
        return wait;
    luar_tokenbucket_reserve(&b->tb, now);
    return 0;
}

static void start_job(luar_runner_t *r, luar_vm_t *vm, const luar_job_t *job, double lease_until)
{
    running_job_t *j = calloc(1, sizeof *j);
    if (j == NULL)
        return; /* the lease expires and another attempt follows */
    j->r = r;
    snprintf(j->id, sizeof j->id, "%s", job->id);
    j->name = strdup(job->name);
    j->queue = strdup(job->queue);
    j->args = strdup(job->args ? job->args : "null");
    if (job->key && strncmp(job->key, "cron:", 5) == 0 && strrchr(job->key, ':') > job->key + 4)
        j->schedule = strndup(job->key + 5, (size_t)(strrchr(job->key, ':') - job->key - 5));
    j->attempt = job->attempt;
    j->max_attempts = job->max_attempts;
    j->enqueued_at = job->enqueued_at;
    j->run_at = job->run_at;
    j->lease_until = job->lease_expires_at > 0 ? job->lease_expires_at : lease_until;
    j->start_ns = uv_hrtime();
    /* The attempt is a span under the one that enqueued the job, else a trace of its own. */
    luar_trace_t parent;
    memset(&parent, 0, sizeof parent);
    if (job->trace == NULL || luar_trace_parse(job->trace, strlen(job->trace), &parent) != 0)
        parent.trace_id[0] = '\0';
    else
        memcpy(parent.span_id, parent.parent_id, sizeof parent.span_id);
    luar_trace_child(&j->trace, &parent);
    uv_timer_init(r->loop, &j->timeout);
    j->timeout.data = j;
    j->next = r->jobs;
    if (r->jobs)
        r->jobs->prev = j;
    r->jobs = j;
    r->running++;
    qstate_t *q = qstate(r, j->queue);
    if (q)
        q->running++;

    const luar_job_def_t *def = vm ? luar_jobs_find(vm->jobs, j->name) : NULL;
    if (def == NULL) {
        write_failure(j, NULL, vm, "no job definition with this name in the current scripts",
                      "");
        job_release_slot(j);
        return;
    }
    double wait = take_token(r, def);
    if (wait > 0) {
        write_release(j, luar_queue_now(r->queue) + wait);
        job_release_slot(j);
        return;
    }
    struct setup s = {j, def};
    luar_task_opts_t opts = {.request_id = NULL, .job_id = j->id, .trace = &j->trace};
    luar_buf_t err;
    luar_buf_init(&err, 4096);
    int rc = luar_task_spawn(vm, &opts, job_setup, &s, job_done, j, &j->task, &err);
    if (rc) {
        write_failure(j, def, vm, err.data ? err.data : luar_strerror(rc), "");
        job_release_slot(j);
    } else if (def->timeout > 0) {
        char msg[96];
        j->timeout_s = def->timeout;
        snprintf(msg, sizeof msg, "timed out after %g s", def->timeout);
        luar_task_set_deadline(j->task, def->timeout, msg);
        uv_timer_start(&j->timeout, on_timeout, (uint64_t)(def->timeout * 1000), 0);
    }
    if (j->task)
        lease_started(r, j->lease_until);
    luar_buf_free(&err);
}

/* ---- claiming ------------------------------------------------------------------------ */

struct claim {
    luar_runner_t *r;
    qstate_t *q;
    size_t asked;
    double sent; /* the lease runs from here if the backend does not say */
};

static void on_claimed(void *arg, int rc, const luar_job_t *jobs, size_t n)
{
    struct claim *c = arg;
    luar_runner_t *r = c->r;
    c->q->claiming = 0;
    r->writes--;
    if (rc) {
        /* Every poll retries: while the backend is down, say so once, then every 10 s. */
        uint64_t now_ms = uv_now(r->loop);
        r->claim_failures++;
        if (!r->claim_failing || now_ms - r->claim_logged_ms >= 10000) {
            luar_logf(LUAR_LOG_ERROR, "jobs: claiming from queue %s failed: %s (%u failed "
                      "claims; retrying every %g s)", c->q->name,
                      rc == LUAR_EIO ? luar_queue_last_error(r->queue) : luar_strerror(rc),
                      r->claim_failures, r->cfg.poll);
            r->claim_logged_ms = now_ms;
        }
        r->claim_failing = 1;
    } else {
        if (r->claim_failing)
            luar_logf(LUAR_LOG_INFO, "jobs: the queue backend answers again; claiming resumes "
                      "(after %u failed claims)", r->claim_failures);
        r->claim_failing = 0;
        r->claim_failures = 0;
        luar_vm_t *vm = r->current_vm(r->vm_arg);
        r->drain.round_found += n;
        for (size_t i = 0; i < n; i++) {
            if (r->stopping) /* claimed as the stop began: give it straight back */
                luar_queue_release(r->queue, jobs[i].id, r->owner, luar_queue_now(r->queue),
                                   NULL, NULL);
            else
                start_job(r, vm, &jobs[i], c->sent + r->cfg.lease);
        }
    }
    size_t asked = c->asked;
    free(c);
    if (rc == 0 && n == asked)
        pump(r); /* there may be more */
    maybe_stopped(r);
    drain_check(r);
}

/*
 * Claims due jobs for free slots. Unless `eager`, a queue that still has jobs running is
 * only asked again once a quarter of the worker's slots are free, so a busy worker claims
 * in batches (one claim transaction for many jobs) instead of one claim per finished job.
 */
static void pump_some(luar_runner_t *r, int eager)
{
    if (r->stopping || r->closing || (r->manual && !r->drain.active))
        return;
    luar_vm_t *vm = r->current_vm(r->vm_arg);
    if (vm == NULL || vm->jobs == NULL)
        return;
    size_t ndefs = luar_jobs_count(vm->jobs);
    for (size_t i = 0; i < ndefs && r->running < r->cfg.concurrency; i++) {
        qstate_t *q = qstate(r, luar_jobs_at(vm->jobs, i)->queue);
        if (q == NULL || q->claiming)
            continue;
        int free_slots = r->cfg.concurrency - r->running;
        if (q->limit > 0 && q->limit - q->running < free_slots)
            free_slots = q->limit - q->running;
        if (r->drain.active) {
            size_t started = r->drain.report.ran + (size_t)r->running;
            if (started >= r->drain.max)
                return;
            if ((size_t)free_slots > r->drain.max - started)
                free_slots = (int)(r->drain.max - started);
        }
        if (free_slots <= 0)
            continue;
        int batch = q->limit > 0 && q->limit < r->cfg.concurrency ? q->limit : r->cfg.concurrency;
        if (!eager && q->running > 0 && free_slots < (batch + 3) / 4)
            continue;
        struct claim *c = malloc(sizeof *c);
        if (c == NULL)
            return;
        *c = (struct claim){r, q, (size_t)free_slots, luar_queue_now(r->queue)};
        q->claiming = 1;
        r->writes++;
        if (luar_queue_claim(r->queue, q->name, (size_t)free_slots, r->owner, r->cfg.lease,
                             on_claimed, c)) {
            q->claiming = 0;
            r->writes--;
            free(c);
        }
    }
}

static void pump(luar_runner_t *r)
{
    pump_some(r, 0);
}

/* ---- timers -------------------------------------------------------------------------- */

static void on_poll(uv_timer_t *t)
{
    pump_some(t->data, 1);
}

static void on_lost(void *arg, int rc, const char *const *ids, size_t n)
{
    luar_runner_t *r = arg;
    r->heartbeating = 0;
    r->writes--;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        for (running_job_t *j = r->jobs; j; j = j->next) {
            if (strcmp(j->id, ids[i]) == 0 && j->task) {
                j->lease_lost = 1;
                luar_task_cancel(j->task, "the job's lease was lost");
                break;
            }
        }
    }
    /* The others' leases now run from when the heartbeat was sent (the backend's `now`). */
    double until = r->hb_sent + r->cfg.lease;
    for (running_job_t *j = r->jobs; rc == 0 && j; j = j->next)
        if (j->task && j->hb_round == r->hb_round && until > j->lease_until)
            j->lease_until = until;
    arm_lease_timer(r);
    maybe_stopped(r);
}

static void on_swept(void *arg, int rc, size_t reclaimed, size_t expired)
{
    luar_runner_t *r = arg;
    r->writes--;
    if (rc == 0 && reclaimed)
        luar_logf(LUAR_LOG_WARN, "jobs: %zu jobs whose worker stopped were put back", reclaimed);
    (void)expired;
    if (rc == 0 && reclaimed)
        pump(r);
    maybe_stopped(r);
}

static void on_heartbeat(uv_timer_t *t)
{
    luar_runner_t *r = t->data;
    if (r->running && !r->heartbeating) {
        const char **ids = malloc((size_t)r->running * sizeof *ids);
        size_t n = 0;
        r->hb_round++;
        r->hb_sent = luar_queue_now(r->queue);
        for (running_job_t *j = r->jobs; ids && j; j = j->next) {
            ids[n++] = j->id;
            j->hb_round = r->hb_round;
        }
        r->heartbeating = 1;
        r->writes++;
        if (ids == NULL || luar_queue_heartbeat(r->queue, ids, n, r->owner, r->cfg.lease,
                                                on_lost, r)) {
            r->heartbeating = 0;
            r->writes--;
        }
        free(ids);
    }
    if (!r->stopping) {
        r->writes++;
        if (luar_queue_sweep(r->queue, on_swept, r))
            r->writes--;
    }
}

/* ---- life cycle ---------------------------------------------------------------------- */

int luar_runner_new(uv_loop_t *loop, luar_queue_t *queue, const luar_jobs_config_t *cfg,
                    const char *owner, luar_vm_t *(*current_vm)(void *arg), void *arg,
                    luar_runner_t **out)
{
    luar_runner_t *r = calloc(1, sizeof *r);
    if (r == NULL)
        return LUAR_ENOMEM;
    r->loop = loop;
    r->queue = queue;
    r->cfg = *cfg;
    r->cfg.nqueues = 0; /* names are looked up in cfg through qstate; keep a private copy */
    for (int i = 0; i < cfg->nqueues; i++) {
        r->cfg.queues[i].name = strdup(cfg->queues[i].name);
        r->cfg.queues[i].limit = cfg->queues[i].limit;
        r->cfg.nqueues++;
    }
    r->owner = strdup(owner);
    r->current_vm = current_vm;
    r->vm_arg = arg;
    uv_timer_init(loop, &r->poll);
    uv_timer_init(loop, &r->heartbeat);
    uv_timer_init(loop, &r->grace);
    uv_timer_init(loop, &r->due);
    uv_timer_init(loop, &r->lease);
    r->poll.data = r->heartbeat.data = r->grace.data = r->due.data = r->lease.data = r;
    luar_jobs_metrics_init();
    *out = r;
    return 0;
}

void luar_runner_start(luar_runner_t *r)
{
    if (r->manual)
        return; /* no poll, no heartbeat: luar_runner_drain does the work */
    uint64_t poll_ms = (uint64_t)(r->cfg.poll * 1000);
    uint64_t hb_ms = (uint64_t)(r->cfg.heartbeat * 1000);
    uv_timer_start(&r->poll, on_poll, poll_ms ? poll_ms : 1, poll_ms ? poll_ms : 1);
    uv_timer_start(&r->heartbeat, on_heartbeat, hb_ms ? hb_ms : 1, hb_ms ? hb_ms : 1);
    on_heartbeat(&r->heartbeat); /* sweep at start: reclaim what a crash left behind */
    pump(r);
}

size_t luar_runner_running(const luar_runner_t *r)
{
    return (size_t)r->running;
}

static void runner_handle_closed(uv_handle_t *h)
{
    luar_runner_t *r = h->data;
    if (--r->closing > 0)
        return;
    void (*done)(void *) = r->stopped;
    void *arg = r->stopped_arg;
    for (int i = 0; i < r->nqueues; i++)
        free(r->queues[i].name);
    for (int i = 0; i < r->nbuckets; i++)
        free(r->buckets[i].job);
    for (int i = 0; i < r->cfg.nqueues; i++)
        free(r->cfg.queues[i].name);
    free(r->owner);
    free(r);
    if (done)
        done(arg);
}

static void maybe_stopped(luar_runner_t *r)
{
    if (!r->stopping || r->closing || r->running || r->writes || r->closing_jobs)
        return;
    r->closing = 5;
    uv_close((uv_handle_t *)&r->lease, runner_handle_closed);
    uv_close((uv_handle_t *)&r->due, runner_handle_closed);
    uv_close((uv_handle_t *)&r->poll, runner_handle_closed);
    uv_close((uv_handle_t *)&r->heartbeat, runner_handle_closed);
    uv_close((uv_handle_t *)&r->grace, runner_handle_closed);
}

void luar_runner_abort(luar_runner_t *r)
{
    r->stopping = 1;
    uv_timer_stop(&r->poll);
    uv_timer_stop(&r->due);
    if (r->running)
        luar_logf(LUAR_LOG_WARN, "jobs: grace period over; returning %d running jobs to the "
                  "queue", r->running);
    running_job_t *j = r->jobs;
    while (j) {
        running_job_t *next = j->next;
        if (j->task) {
            j->shutdown = 1;
            luar_task_cancel(j->task, "the host is shutting down");
        }
        j = next;
    }
}

static void on_grace(uv_timer_t *t)
{
    luar_runner_abort(t->data);
}

void luar_runner_stop(luar_runner_t *r, double grace, void (*done)(void *arg), void *arg)
{
    r->stopping = 1;
    r->stopped = done;
    r->stopped_arg = arg;
    uv_timer_stop(&r->poll);
    uv_timer_stop(&r->due);
    if (r->running)
        uv_timer_start(&r->grace, on_grace, (uint64_t)(grace * 1000), 0);
    maybe_stopped(r);
}

/* Due work may be waiting (a local enqueue committed): look now rather than at the poll. */
void luar_runner_kick(luar_runner_t *r)
{
    pump(r);
}

/* ---- draining (`luar test`) ------------------------------------------------------------ */

void luar_runner_set_manual(luar_runner_t *r)
{
    r->manual = 1;
    /* A configuration that runs no jobs in its process (jobs.concurrency = 0, an ingest
     * node) still has its jobs run by the tests' drains, at the default concurrency. */
    if (r->cfg.concurrency < 1)
        r->cfg.concurrency = LUAR_JOBS_DEFAULT_CONCURRENCY;
}

/*
 * Called whenever something the drain waits for ended. Once nothing runs or is being
 * written, a claim round over every queue begins; a round that found nothing while idle
 * means no job is due: the drain is over.
 */
static void drain_check(luar_runner_t *r)
{
    if (!r->drain.active || r->running || r->writes)
        return;
    int full = r->drain.report.ran >= r->drain.max;
    if (!full && !(r->drain.round_open && r->drain.round_found == 0)) {
        r->drain.round_open = 1;
        r->drain.round_found = 0;
        pump_some(r, 1);
        if (r->writes)
            return; /* the claims answer later */
    }
    r->drain.active = 0;
    luar_buf_t errors = r->drain.errors;
    luar_buf_init(&r->drain.errors, 0);
    r->drain.report.errors_json = errors.data ? errors.data : "";
    r->drain.report.full = full;
    r->drain.done(r->drain.arg, &r->drain.report);
    luar_buf_free(&errors);
}

int luar_runner_drain(luar_runner_t *r, size_t max,
                      void (*done)(void *arg, const luar_runner_drained_t *report), void *arg)
{
    if (r->drain.active || r->stopping)
        return LUAR_EBUSY;
    memset(&r->drain.report, 0, sizeof r->drain.report);
    luar_buf_init(&r->drain.errors, 0);
    r->drain.active = 1;
    r->drain.round_open = 0;
    r->drain.round_found = 0;
    r->drain.max = max ? max : 1000;
    r->drain.done = done;
    r->drain.arg = arg;
    drain_check(r);
    return 0;
}
