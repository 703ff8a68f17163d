/*
 * Schedules (jobs.cron, jobs.every): every process computes the same tick times and tries
 * to enqueue each tick's job with the dedupe key "cron:<name>:<tick>"; the backend records
 * the key in the same commit as the job, so exactly one process fires each tick, however
 * many workers and instances share the backend. The job's run_at is the tick
 * (job.scheduled_at). Ticks missed while no process ran are skipped; with catch_up the
 * most recent missed one fires once at start.
 */
#include "jobs/jobs.h"
#include "common/clock.h"
#include "common/error.h"
#include "log/log.h"
#include "lua/error.h"
#include "lua/util.h"
#include "lua/vm_internal.h"
#include "sched/cron.h"
#include "sched/tz.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_WAIT_MS 1000 /* look at least once a second: reloads change the schedules */
#define DEDUPE_MIN_TTL 3600.0

typedef struct tick_state {
    char *sig;   /* name|expr|every|tz: a changed schedule starts afresh */
    double next; /* next tick to fire */
    int seen;    /* present in the current VM (mark and sweep on each look) */
} tick_state_t;

struct luar_scheduler {
    uv_loop_t *loop;
    luar_queue_t *queue;
    luar_vm_t *(*current_vm)(void *);
    void *vm_arg;
    uv_timer_t timer;
    tick_state_t *states;
    size_t nstates;
    int writes;
    int stopping;
    void (*stopped)(void *);
    void *stopped_arg;
};

/* The first tick strictly after `after` (0 when none within the search bounds). */
static double next_tick(const luar_schedule_t *s, double after)
{
    if (s->expr == NULL) {
        double iv = s->every;
        return (floor(after / iv) + 1) * iv;
    }
    int64_t next = 0;
    if (luar_cron_next(s->cron, s->tz, (int64_t)floor(after), &next))
        return 0;
    return (double)next;
}

/* The last tick at or before `now` (0 when none found), for catch_up. */
static double last_tick(const luar_schedule_t *s, double now)
{
    if (s->expr == NULL)
        return floor(now / s->every) * s->every;
    static const double back[] = {60, 3600, 86400, 31 * 86400.0, 366 * 86400.0};
    for (size_t i = 0; i < sizeof back / sizeof back[0]; i++) {
        double t = next_tick(s, now - back[i]), last = 0;
        for (int n = 0; t > 0 && t <= now && n < 100000; n++) {
            last = t;
            t = next_tick(s, t);
        }
        if (last > 0)
            return last;
    }
    return 0;
}

static void scheduler_closed(uv_handle_t *h);

static void on_fired(void *arg, int rc, const char *const *ids, size_t n, int duplicate)
{
    luar_scheduler_t *sc = arg;
    (void)ids;
    (void)n;
    sc->writes--;
    if (rc)
        luar_logf(LUAR_LOG_ERROR, "schedules: enqueueing a tick failed: %s (next look retries "
                  "the following tick)",
                  rc == LUAR_EIO ? luar_queue_last_error(sc->queue) : luar_strerror(rc));
    else if (!duplicate)
        luar_jobs_kick();
    if (sc->stopping && sc->writes == 0)
        uv_close((uv_handle_t *)&sc->timer, scheduler_closed);
}

/* Enqueues the job of schedule `s` for `tick` under the tick's dedupe key. */
static int enqueue_tick(luar_queue_t *queue, luar_vm_t *vm, const luar_schedule_t *s,
                        double tick, luar_queue_enqueue_cb cb, void *arg)
{
    const luar_job_def_t *def = luar_jobs_find(vm->jobs, s->job);
    luar_job_spec_t spec;
    memset(&spec, 0, sizeof spec);
    spec.name = s->job;
    spec.queue = def ? def->queue : "default";
    spec.priority = def ? def->priority : 0;
    spec.max_attempts = (def ? def->retries : LUAR_JOBS_DEFAULT_RETRIES) + 1;
    spec.args = s->args;
    spec.run_at = tick;
    char key[300];
    snprintf(key, sizeof key, "cron:%s:%.0f", s->name, tick);
    spec.key = key; /* also the job's own key: its runs name their schedule (error reports) */
    double interval = next_tick(s, tick) - tick;
    double ttl = interval * 4 > DEDUPE_MIN_TTL ? interval * 4 : DEDUPE_MIN_TTL;
    return luar_queue_enqueue(queue, &spec, 1, key, ttl, cb, arg);
}

static void fire(luar_scheduler_t *sc, luar_vm_t *vm, const luar_schedule_t *s, double tick)
{
    sc->writes++;
    if (enqueue_tick(sc->queue, vm, s, tick, on_fired, sc))
        sc->writes--;
}

/* ---- luar test: the ticks a moved clock passed --------------------------------------- */

#define RANGE_MAX_TICKS 10000 /* per schedule and move: a year of minutes is not a test */

typedef struct tick_range {
    int writes;
    int rc;
    int kick;
    void (*done)(void *arg, int rc);
    void *arg;
} tick_range_t;

static void range_finish(tick_range_t *tr)
{
    if (tr->kick)
        luar_jobs_kick();
    tr->done(tr->arg, tr->rc);
    free(tr);
}

static void on_range_fired(void *arg, int rc, const char *const *ids, size_t n, int duplicate)
{
    tick_range_t *tr = arg;
    (void)ids;
    (void)n;
    if (rc && tr->rc == 0)
        tr->rc = rc;
    if (!rc && !duplicate)
        tr->kick = 1;
    if (--tr->writes == 0)
        range_finish(tr);
}

int luar_scheduler_fire_range(luar_queue_t *queue, luar_vm_t *vm, double after, double until,
                              void (*done)(void *arg, int rc), void *arg)
{
    tick_range_t *tr = calloc(1, sizeof *tr);
    if (tr == NULL)
        return LUAR_ENOMEM;
    tr->done = done;
    tr->arg = arg;
    tr->writes = 1; /* held until every tick is asked for */
    size_t n = vm && vm->jobs ? luar_jobs_schedules(vm->jobs) : 0;
    for (size_t i = 0; i < n; i++) {
        const luar_schedule_t *s = luar_jobs_schedule_at(vm->jobs, i);
        double t = next_tick(s, after);
        int k = 0;
        for (; t > 0 && t <= until && k < RANGE_MAX_TICKS; k++) {
            tr->writes++;
            int rc = enqueue_tick(queue, vm, s, t, on_range_fired, tr);
            if (rc) {
                tr->writes--;
                if (tr->rc == 0)
                    tr->rc = rc;
            }
            t = next_tick(s, t);
        }
        if (k == RANGE_MAX_TICKS)
            luar_logf(LUAR_LOG_WARN, "luar.test: schedule %s has more than %d ticks in this "
                      "clock move; only the first %d were enqueued", s->name, RANGE_MAX_TICKS,
                      RANGE_MAX_TICKS);
    }
    if (--tr->writes == 0)
        range_finish(tr);
    return 0;
}

static tick_state_t *state_for(luar_scheduler_t *sc, const luar_schedule_t *s)
{
    char sig[512];
    snprintf(sig, sizeof sig, "%s|%s|%g|%s|%s", s->name, s->expr ? s->expr : "", s->every,
             s->tz ? s->tz : "", s->job);
    for (size_t i = 0; i < sc->nstates; i++)
        if (strcmp(sc->states[i].sig, sig) == 0)
            return &sc->states[i];
    tick_state_t *st = realloc(sc->states, (sc->nstates + 1) * sizeof *st);
    if (st == NULL)
        return NULL;
    sc->states = st;
    st = &sc->states[sc->nstates++];
    st->sig = strdup(sig);
    st->next = 0;
    st->seen = 0;
    return st;
}

static void look(uv_timer_t *t)
{
    luar_scheduler_t *sc = t->data;
    luar_vm_t *vm = sc->current_vm(sc->vm_arg);
    double now = luar_queue_now(sc->queue);
    double wake = now + MAX_WAIT_MS / 1000.0;
    size_t n = vm ? luar_jobs_schedules(vm->jobs) : 0;
    for (size_t i = 0; i < sc->nstates; i++)
        sc->states[i].seen = 0;
    for (size_t i = 0; i < n; i++) {
        const luar_schedule_t *s = luar_jobs_schedule_at(vm->jobs, i);
        tick_state_t *st = state_for(sc, s);
        if (st == NULL)
            continue;
        st->seen = 1;
        if (st->next == 0) {
            double last = s->catch_up ? last_tick(s, now) : 0;
            if (last > 0)
                fire(sc, vm, s, last); /* a no-op when that tick already fired */
            st->next = next_tick(s, now);
        }
        if (st->next > 0 && st->next <= now) {
            /* Fire the latest due tick; older ones were missed (the loop was held up). */
            double due = st->next, t2 = next_tick(s, due);
            for (int k = 0; t2 > 0 && t2 <= now && k < 100000; k++) {
                due = t2;
                t2 = next_tick(s, t2);
            }
            fire(sc, vm, s, due);
            st->next = t2;
        }
        if (st->next > 0 && st->next < wake)
            wake = st->next;
    }
    /* Forget schedules the scripts no longer declare. */
    for (size_t i = 0; i < sc->nstates;) {
        if (!sc->states[i].seen) {
            free(sc->states[i].sig);
            sc->states[i] = sc->states[--sc->nstates];
        } else {
            i++;
        }
    }
    double ms = (wake - now) * 1000;
    uv_timer_start(&sc->timer, look, ms < 1 ? 1 : (uint64_t)ceil(ms), 0);
}

int luar_scheduler_new(uv_loop_t *loop, luar_queue_t *queue,
                       luar_vm_t *(*current_vm)(void *arg), void *arg, luar_scheduler_t **out)
{
    luar_scheduler_t *sc = calloc(1, sizeof *sc);
    if (sc == NULL)
        return LUAR_ENOMEM;
    sc->loop = loop;
    sc->queue = queue;
    sc->current_vm = current_vm;
    sc->vm_arg = arg;
    uv_timer_init(loop, &sc->timer);
    sc->timer.data = sc;
    *out = sc;
    return 0;
}

void luar_scheduler_start(luar_scheduler_t *sc)
{
    uv_timer_start(&sc->timer, look, 0, 0);
}

static void scheduler_closed(uv_handle_t *h)
{
    luar_scheduler_t *sc = h->data;
    for (size_t i = 0; i < sc->nstates; i++)
        free(sc->states[i].sig);
    free(sc->states);
    if (sc->stopped)
        sc->stopped(sc->stopped_arg);
    free(sc);
}

void luar_scheduler_stop(luar_scheduler_t *sc, void (*done)(void *arg), void *arg)
{
    sc->stopping = 1;
    sc->stopped = done;
    sc->stopped_arg = arg;
    uv_timer_stop(&sc->timer);
    if (sc->writes == 0)
        uv_close((uv_handle_t *)&sc->timer, scheduler_closed);
}

/* ---- jobs.cron / jobs.every ---------------------------------------------------------- */

/*
 * Registers schedule `name` (a cron expression `cron`/`expr`, or every `every` seconds)
 * firing job argument 3 with arguments 4 and options 5 (tz, catch_up). Everything that can
 * raise is read before anything is allocated, so a misuse leaks nothing.
 */
static int add_schedule(lua_State *L, const char *name, const char *expr,
                        const luar_cron_t *cron, double every)
{
    const char *job = luaL_checkstring(L, 3);
    const char *args = lua_isnoneornil(L, 4) ? "{}" : luar_json_encode(L, 4, NULL);
    const char *tz = "UTC";
    int catch_up = 0;
    if (lua_istable(L, 5)) {
        if (lua_getfield(L, 5, "tz") != LUA_TNIL) {
            tz = luaL_checkstring(L, -1);
            const luar_tz_t *z;
            luar_buf_t *err = luar_lua_newbuf(L, 1024);
            if (luar_tz_load(tz, &z, err))
                return luaL_error(L, "schedule %s: %s", name, err->data ? err->data : "bad tz");
            lua_pop(L, 1);
        }
        lua_getfield(L, 5, "catch_up");
        catch_up = lua_toboolean(L, -1);
        lua_pop(L, 1); /* tz stays on the stack until the copy below */
    }
    luar_schedule_t s;
    memset(&s, 0, sizeof s);
    if (cron) {
        s.cron = malloc(sizeof *cron);
        if (s.cron == NULL)
            return luaL_error(L, "schedule %s: out of memory", name);
        memcpy(s.cron, cron, sizeof *cron);
    }
    s.name = strdup(name);
    s.expr = expr ? strdup(expr) : NULL;
    s.every = every;
    s.tz = strdup(tz);
    s.job = strdup(job);
    s.args = strdup(args);
    s.catch_up = catch_up;
    luar_jobs_registry_t *r = luar_jobs_registry(luar_vm_of(L));
    int rc = r ? luar_jobs_add_schedule(r, &s) : LUAR_ENOMEM; /* takes s's strings either way */
    if (rc)
        return luaL_error(L, rc == LUAR_EEXISTS ? "a schedule named %s is already declared"
                                                : "schedule %s: %s",
                          name, luar_strerror(rc));
    return 0;
}

int luar_jobs_cron(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    const char *expr = luaL_checkstring(L, 2);
    luaL_checkstring(L, 3);
    luar_cron_t c;
    luar_buf_t *err = luar_lua_newbuf(L, 1024);
    if (luar_cron_parse(expr, &c, err))
        return luaL_error(L, "jobs.cron %s: %s", name, err->data ? err->data : "invalid");
    lua_pop(L, 1);
    return add_schedule(L, name, expr, &c, 0);
}

int luar_jobs_every(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    double every = luaL_checknumber(L, 2);
    luaL_argcheck(L, every >= 1 && isfinite(every), 2, "expected at least 1 second");
    luaL_checkstring(L, 3);
    return add_schedule(L, name, NULL, NULL, every);
}

void luar_jobs_print_schedules(luar_vm_t *vm, FILE *out)
{
    size_t n = luar_jobs_schedules(vm->jobs);
    if (n == 0) {
        fprintf(out, "no schedules\n");
        return;
    }
    double now = luar_time_now();
    fprintf(out, "%-24s %-20s %-20s %-20s %s\n", "NAME", "SCHEDULE", "ZONE", "JOB",
            "NEXT FIRE TIMES");
    for (size_t i = 0; i < n; i++) {
        const luar_schedule_t *s = luar_jobs_schedule_at(vm->jobs, i);
        char when[64];
        if (s->expr)
            snprintf(when, sizeof when, "%s", s->expr);
        else
            snprintf(when, sizeof when, "every %gs", s->every);
        fprintf(out, "%-24s %-20s %-20s %-20s", s->name, when, s->tz, s->job);
        const luar_tz_t *z = NULL;
        luar_tz_load(s->tz, &z, NULL);
        double t = now;
        for (int k = 0; k < 3; k++) {
            t = next_tick(s, t);
            char iso[LUAR_TZ_ISO_SIZE];
            if (t <= 0 || z == NULL || luar_tz_format(z, (int64_t)t, iso, sizeof iso))
                break;
            fprintf(out, "%s%s", k ? ", " : " ", iso);
        }
        fputc('\n', out);
    }
}
