/*
 * Jobs: the definitions scripts declare (jobs.define, events.subscribe, jobs.cron/every),
 * kept per VM in a registry, and the runner that claims due jobs from the queue backend
 * and runs each in its own coroutine of the current VM, with retries, backoff, timeouts,
 * rate limits, leases and heartbeats. Loop thread only.
 */
#ifndef LUAR_JOBS_H
#define LUAR_JOBS_H

#include "config/config.h"
#include "lua/bridge.h"
#include "lua/vm.h"
#include "queue/queue.h"

#include <lua.h>
#include <stddef.h>
#include <stdio.h>
#include <uv.h>

typedef enum {
    LUAR_BACKOFF_EXPONENTIAL, /* uniform(0, min(cap, 2^attempt)) seconds: full jitter */
    LUAR_BACKOFF_FIXED,       /* `base` seconds */
    LUAR_BACKOFF_FUNCTION,    /* a Lua function of the attempt, in the VM's registry */
} luar_backoff_kind_t;

/* Retries after the first attempt when a definition (or an enqueue without one) gives none. */
#define LUAR_JOBS_DEFAULT_RETRIES 3

/* One jobs.define (or one events.subscribe, which defines a job "event:<name>"). */
typedef struct luar_job_def {
    char *name;
    char *queue;
    int retries;           /* retries after the first attempt (max_attempts = retries + 1) */
    luar_backoff_kind_t backoff;
    double backoff_base;   /* FIXED: the delay */
    double backoff_cap;    /* EXPONENTIAL: the cap (3600) */
    int backoff_ref;       /* FUNCTION: registry reference */
    double timeout;        /* seconds; 0: none */
    double unique_for;     /* seconds; 0: off */
    double rate;           /* jobs per second in one worker; 0: unlimited */
    double rate_burst;
    int priority;
    int fn_ref;            /* registry reference of the function */
    int is_event;          /* fn(payload, meta) instead of fn(args, job) */
    char *pattern;         /* events: the AMQP-style topic pattern */
} luar_job_def_t;

/* A schedule: jobs.cron or jobs.every. */
typedef struct luar_schedule {
    char *name;
    char *expr;            /* cron expression, or NULL for every */
    double every;          /* seconds, for jobs.every */
    char *tz;
    char *job;
    char *args;            /* JSON */
    int catch_up;
    void *cron;            /* the parsed expression (sched/cron.h), owned */
} luar_schedule_t;

typedef struct luar_jobs_registry luar_jobs_registry_t;

/* The registry of `vm`, created on first use; NULL only when out of memory. */
luar_jobs_registry_t *luar_jobs_registry(luar_vm_t *vm);

/* Frees a registry (the VM's close does it). Registry references die with the state. */
void luar_jobs_registry_free(luar_jobs_registry_t *r);

/*
 * Adds a definition. Takes ownership of `def`'s strings, also when it fails: LUAR_EEXISTS
 * for a taken name, LUAR_ENOMEM.
 */
int luar_jobs_define(luar_jobs_registry_t *r, luar_job_def_t *def);

/* The definition named `name`, or NULL. */
const luar_job_def_t *luar_jobs_find(const luar_jobs_registry_t *r, const char *name);

/* The definitions (for the queues to claim from, and events matching a topic). */
size_t luar_jobs_count(const luar_jobs_registry_t *r);
const luar_job_def_t *luar_jobs_at(const luar_jobs_registry_t *r, size_t i);

/* Adds a schedule; takes ownership of its strings also when it fails (LUAR_EEXISTS, ENOMEM). */
int luar_jobs_add_schedule(luar_jobs_registry_t *r, luar_schedule_t *s);
size_t luar_jobs_schedules(const luar_jobs_registry_t *r);
const luar_schedule_t *luar_jobs_schedule_at(const luar_jobs_registry_t *r, size_t i);

/*
 * For luar.events (implemented with luar.jobs in mod_jobs.c): defines the job
 * "event:<name>" running the function at stack index `fn` for topics matching `pattern`,
 * with the options table at index `opts` (0: none). Raises on misuse. [-0, +0]
 */
void luar_jobs_define_subscriber(lua_State *L, const char *pattern, const char *name, int opts,
                                 int fn);

/*
 * Reads the options of a definition (queue, retries, backoff, backoff_cap, timeout,
 * unique_for, rate, priority) from the table at `t` (0: none, the defaults) into `d`,
 * which the caller zeroed; the queue name is copied (default "default"). Raises on misuse,
 * having allocated nothing then: the queue is copied once every option has been read. A
 * backoff function is referenced in the registry (d->backoff_ref). Used by jobs.define,
 * events.subscribe and webhooks.on. [-0, +0]
 */
void luar_jobs_read_options(lua_State *L, int t, luar_job_def_t *d);

/* events.publish(topic, payload) ⏸: one job per matching subscriber, in one commit. */
int luar_events_publish(lua_State *L);

/*
 * What an enqueue made through luar_jobs_enqueue_wait() returns to its push function: the
 * backend's code (0 or LUAR_E*), whether the dedupe key was a duplicate, the new ids, and
 * the caller's note (a string it wanted back, e.g. a delivery's message id).
 */
typedef struct luar_jobs_enqueued {
    int rc;
    int duplicate;
    size_t n;
    char **ids;
    char note[256];
} luar_jobs_enqueued_t;

/*
 * The one way a Lua function enqueues and waits (jobs.enqueue, events.publish,
 * webhooks.deliver): enqueues `n` specs in one commit (with `dedupe` and its ttl, see
 * luar_queue_enqueue), yields until the backend answers, then `push` reads the outcome with
 * luar_jobs_enqueued(op). A task cancelled meanwhile loses nothing: the jobs are enqueued
 * anyway. Runners are kicked after a success. `what` is a string literal. Use as
 * `return luar_jobs_enqueue_wait(...)`.
 */
int luar_jobs_enqueue_wait(lua_State *L, const char *what, const luar_job_spec_t *specs,
                           size_t n, const char *dedupe, double dedupe_ttl, const char *note,
                           luar_bridge_push_fn push);
const luar_jobs_enqueued_t *luar_jobs_enqueued(luar_bridge_op_t *op);

/* jobs.cron(name, expr, job[, args[, opts]]) and jobs.every(name, seconds, job[, args[, opts]]). */
int luar_jobs_cron(lua_State *L);
int luar_jobs_every(lua_State *L);

/* The registry key of the metatable marking the value of jobs.retry_in (mod_jobs.c). */
extern const char luar_jobs_retry_key;

/*
 * Pushes what jobs.retry_in(seconds) returns: a job body (Lua or C, such as the built-in
 * webhooks.deliver) returning it is put back to run again in `seconds` without counting the
 * attempt. Works whether or not luar.jobs was required. [-0, +1]
 */
void luar_jobs_push_retry_in(lua_State *L, double seconds);

/* AMQP topic match: words split on '.', '*' one word, '#' zero or more words. */
int luar_topic_match(const char *pattern, const char *topic);

/* ---- the process's queue and runner ------------------------------------------------ */

typedef struct luar_runner luar_runner_t;

/*
 * The queue backend and runner of this process, for the Lua modules (luar.jobs,
 * luar.events). Set once by the command that opened the queue; NULL in commands without
 * one. The caller keeps ownership.
 */
void luar_jobs_set_host(luar_queue_t *queue, luar_runner_t *runner,
                        const luar_jobs_config_t *cfg);
luar_queue_t *luar_jobs_queue(void);
const luar_jobs_config_t *luar_jobs_config(void);

/* Tells the runner (if any) that due work may be waiting: a local enqueue committed. */
void luar_jobs_kick(void);

/*
 * Creates the runner: it claims jobs from `queue` for the definitions of the VM returned
 * by current_vm(arg) (the current generation; NULL while none), runs them, and renews
 * leases. `owner` names this process in leases (copied). Returns 0 or LUAR_ENOMEM.
 */
int luar_runner_new(uv_loop_t *loop, luar_queue_t *queue, const luar_jobs_config_t *cfg,
                    const char *owner, luar_vm_t *(*current_vm)(void *arg), void *arg,
                    luar_runner_t **out);

/* Starts claiming and the timers. */
void luar_runner_start(luar_runner_t *r);

/* Looks for due work now (luar_jobs_kick calls it after a local enqueue). */
void luar_runner_kick(luar_runner_t *r);

/* Jobs running now. */
size_t luar_runner_running(const luar_runner_t *r);

/*
 * Graceful stop: claims nothing more; lets running jobs finish; after `grace` seconds
 * cancels the rest and returns them to the queue (not counted as attempts); then frees the
 * runner once every queue write is done and calls done(arg).
 */
void luar_runner_stop(luar_runner_t *r, double grace, void (*done)(void *arg), void *arg);

/*
 * Cancels every running job at once and returns it to the queue (not counted as an
 * attempt); claims nothing more. The end of a shutdown's grace period.
 */
void luar_runner_abort(luar_runner_t *r);

/*
 * `luar test` (t.jobs.drain): a manual runner claims nothing on its own, starts no timer,
 * and runs jobs only while draining. Set before luar_runner_start.
 */
void luar_runner_set_manual(luar_runner_t *r);

/* What a drain did: attempts that ended, by outcome, and each failure's error. */
typedef struct luar_runner_drained {
    size_t ran, succeeded, failed;
    const char *errors_json; /* `{"id":…,"name":…,"error":…}` objects joined by commas */
    int full;                /* stopped at `max` with work perhaps left */
} luar_runner_drained_t;

/*
 * Runs every due job (and the jobs they enqueue, once due) through the runner's own path
 * — retries, dead letter, errors — until none is due and none runs, or `max` attempts
 * (0: 1000) ended; then calls done(arg, report) (the report lives during the call).
 * Returns 0, or LUAR_EBUSY while a drain runs. Needs luar_runner_set_manual.
 */
int luar_runner_drain(luar_runner_t *r, size_t max,
                      void (*done)(void *arg, const luar_runner_drained_t *report), void *arg);

typedef struct luar_scheduler luar_scheduler_t;

/*
 * Creates the scheduler that fires the schedules of the VM returned by current_vm(arg),
 * each tick once across every process sharing `queue`. Returns 0 or LUAR_ENOMEM.
 */
int luar_scheduler_new(uv_loop_t *loop, luar_queue_t *queue,
                       luar_vm_t *(*current_vm)(void *arg), void *arg, luar_scheduler_t **out);
void luar_scheduler_start(luar_scheduler_t *sc);

/* Stops firing; frees the scheduler once its writes are done, then calls done(arg). */
void luar_scheduler_stop(luar_scheduler_t *sc, void (*done)(void *arg), void *arg);

/*
 * `luar test` (t.clock): enqueues every tick in (after, until] of every schedule of `vm`,
 * each with its scheduler dedupe key (so once), as the scheduler would (not run). Calls
 * done(arg, rc) once every enqueue answered (rc: the first error, else 0); at once (inside
 * the call) when there is nothing to enqueue. Returns 0 or LUAR_ENOMEM.
 */
int luar_scheduler_fire_range(luar_queue_t *queue, luar_vm_t *vm, double after, double until,
                              void (*done)(void *arg, int rc), void *arg);

/* Prints the schedules of `vm` with their next three fire times (`luar cron list`). */
void luar_jobs_print_schedules(luar_vm_t *vm, FILE *out);

/* Registers the job metrics (luar_jobs_total, luar_job_duration_seconds, luar_queue_jobs). */
void luar_jobs_metrics_init(void);

/* Updates luar_queue_jobs{queue,state} from backend counts. */
void luar_jobs_metrics_counts(const luar_queue_count_t *counts, size_t n);

#endif
