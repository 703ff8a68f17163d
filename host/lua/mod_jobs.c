/*
 * luar.jobs: define jobs, enqueue them durably, read their state, ask to run again later,
 * and declare schedules. Waiting calls (enqueue, get) go through the bridge; the queue
 * backend does the work off the loop and calls back once it is durable.
 */
#include "common/error.h"
#include "common/units.h"
#include "crypto/crypto.h"
#include "jobs/jobs.h"
#include "lua/bridge.h"
#include "lua/error.h"
#include "lua/modules.h"
#include "lua/task.h"
#include "lua/util.h"
#include "lua/vm_internal.h"

#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- jobs.define --------------------------------------------------------------------- */

/* `v` as "%g" would print it (lua_pushfstring, behind luaL_error, knows no %g). */
static const char *fmt_number(double v)
{
    static char buf[32];
    snprintf(buf, sizeof buf, "%g", v);
    return buf;
}

static double opt_number(lua_State *L, int t, const char *k, double dflt, double min)
{
    lua_getfield(L, t, k);
    double v = dflt;
    if (!lua_isnil(L, -1)) {
        if (!lua_isnumber(L, -1))
            luaL_error(L, "option %s: expected a number, got %s", k, luaL_typename(L, -1));
        v = lua_tonumber(L, -1);
        if (v < min)
            luaL_error(L, "option %s: must be at least %s", k, fmt_number(min));
    }
    lua_pop(L, 1);
    return v;
}

static const char *opt_string(lua_State *L, int t, const char *k, const char *dflt)
{
    lua_getfield(L, t, k);
    const char *v = dflt;
    if (!lua_isnil(L, -1))
        v = luaL_checkstring(L, -1); /* stays alive: it is in the options table */
    lua_pop(L, 1);
    return v;
}

/* Reads the options of a definition (see jobs.h). */
void luar_jobs_read_options(lua_State *L, int t, luar_job_def_t *d)
{
    d->backoff = LUAR_BACKOFF_EXPONENTIAL;
    d->backoff_cap = 3600;
    d->retries = LUAR_JOBS_DEFAULT_RETRIES;
    d->backoff_ref = LUA_NOREF;
    if (t == 0) {
        d->queue = strdup("default");
        return;
    }
    const char *queue = opt_string(L, t, "queue", "default"); /* alive: the table holds it */
    d->retries = (int)opt_number(L, t, "retries", LUAR_JOBS_DEFAULT_RETRIES, 0);
    d->timeout = opt_number(L, t, "timeout", 0, 0);
    d->unique_for = opt_number(L, t, "unique_for", 0, 0);
    d->priority = (int)opt_number(L, t, "priority", 0, -1e9);
    d->backoff_cap = opt_number(L, t, "backoff_cap", 3600, 0);
    const char *rate = opt_string(L, t, "rate", NULL);
    if (rate && luar_parse_rate(rate, &d->rate, &d->rate_burst))
        luaL_error(L, "option rate: expected \"N/s\", \"N/m\", \"N/h\" or \"N/d\", got %s", rate);
    lua_getfield(L, t, "backoff");
    if (lua_isfunction(L, -1)) {
        d->backoff = LUAR_BACKOFF_FUNCTION;
        d->backoff_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    } else if (lua_type(L, -1) == LUA_TNUMBER) {
        d->backoff = LUAR_BACKOFF_FIXED;
        d->backoff_base = lua_tonumber(L, -1);
    } else if (lua_type(L, -1) == LUA_TSTRING) {
        if (strcmp(lua_tostring(L, -1), "exponential") != 0)
            luaL_error(L, "option backoff: expected \"exponential\", a number of seconds or "
                          "a function of the attempt");
    } else if (!lua_isnil(L, -1)) {
        luaL_error(L, "option backoff: expected \"exponential\", a number or a function");
    }
    if (d->backoff != LUAR_BACKOFF_FUNCTION)
        lua_pop(L, 1);
    d->queue = strdup(queue);
}

/* Registers a definition built by the caller (fn at `fn_idx`); raises on a taken name. */
static void define(lua_State *L, luar_job_def_t *d, int fn_idx)
{
    luar_vm_t *vm = luar_vm_of(L);
    luar_jobs_registry_t *r = luar_jobs_registry(vm);
    char name[128];
    snprintf(name, sizeof name, "%s", d->name);
    lua_pushvalue(L, fn_idx);
    d->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    int rc = r ? luar_jobs_define(r, d) : LUAR_ENOMEM; /* takes d's strings either way */
    if (rc) {
        luaL_error(L, rc == LUAR_EEXISTS ? "a job named %s is already defined" : "%s: %s",
                   name, luar_strerror(rc));
    }
}

/* jobs.define(name, [opts,] fn) [-n, +0] */
static int jobs_define(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    int t = lua_istable(L, 2) ? 2 : 0;
    int fn = t ? 3 : 2;
    luaL_checktype(L, fn, LUA_TFUNCTION);
    if (strchr(name, ':') == name || strlen(name) == 0 || strlen(name) > 120)
        return luaL_error(L, "invalid job name '%s'", name);
    luar_job_def_t d;
    memset(&d, 0, sizeof d);
    luar_jobs_read_options(L, t, &d);
    d.name = strdup(name);
    define(L, &d, fn);
    return 0;
}

/* Used by luar.events: defines job "event:<name>" for a subscriber. [-0, +0] */
void luar_jobs_define_subscriber(lua_State *L, const char *pattern, const char *name, int opts,
                                 int fn)
{
    luar_job_def_t d;
    memset(&d, 0, sizeof d);
    luar_jobs_read_options(L, opts, &d);
    size_t n = strlen(name) + 7;
    d.name = malloc(n);
    snprintf(d.name, n, "event:%s", name);
    d.pattern = strdup(pattern);
    d.is_event = 1;
    if (opts == 0 || lua_getfield(L, opts, "queue") == LUA_TNIL) {
        free(d.queue);
        d.queue = strdup("events");
    }
    if (opts != 0)
        lua_pop(L, 1);
    define(L, &d, fn);
}

/* ---- jobs.enqueue -------------------------------------------------------------------- */

struct enqueue_op {
    int canceled, fired;
    luar_jobs_enqueued_t out;
};

static void enqueue_cb(void *arg, int rc, const char *const *ids, size_t n, int duplicate)
{
    luar_bridge_op_t *op = arg;
    struct enqueue_op *e = luar_bridge_op_data(op);
    e->fired = 1;
    if (e->canceled) { /* the task is gone; the work is done anyway */
        luar_bridge_op_free(op);
        return;
    }
    e->out.rc = rc;
    e->out.duplicate = duplicate;
    if (rc == 0 && ids) {
        e->out.ids = calloc(n, sizeof *e->out.ids);
        for (size_t i = 0; e->out.ids && i < n; i++)
            e->out.ids[i] = strdup(ids[i]);
        e->out.n = e->out.ids ? n : 0;
    }
    if (rc == 0)
        luar_jobs_kick();
    luar_bridge_complete(op);
}

static void enqueue_cleanup(luar_bridge_op_t *op, int canceled)
{
    struct enqueue_op *e = luar_bridge_op_data(op);
    for (size_t i = 0; i < e->out.n; i++)
        free(e->out.ids[i]);
    free(e->out.ids);
    e->out.ids = NULL;
    e->out.n = 0;
    if (canceled && !e->fired) {
        e->canceled = 1; /* enqueue_cb frees the op when the backend answers */
        return;
    }
    luar_bridge_op_free(op);
}

int luar_jobs_enqueue_wait(lua_State *L, const char *what, const luar_job_spec_t *specs,
                           size_t n, const char *dedupe, double dedupe_ttl, const char *note,
                           luar_bridge_push_fn push)
{
    luar_queue_t *q = luar_jobs_queue();
    if (q == NULL)
        return luar_lua_fail(L, "backend", "no queue backend in this command");
    /* The jobs carry the enqueuing span's trace: each attempt is a span under it. */
    luar_task_t *task = luar_task_current(L);
    if (task && luar_trace_active(luar_task_trace(task))) {
        char *tp = lua_newuserdatauv(L, LUAR_TRACEPARENT_LEN + 1, 0);
        luar_trace_format(luar_task_trace(task), tp);
        luar_job_spec_t *copy = lua_newuserdatauv(L, n * sizeof *copy, 0);
        for (size_t i = 0; i < n; i++) {
            copy[i] = specs[i];
            if (copy[i].trace == NULL)
                copy[i].trace = tp;
        }
        specs = copy; /* both stay on the stack until the call returns */
    }
    luar_bridge_op_t *op = luar_bridge_op_new(L, what, sizeof(struct enqueue_op));
    luar_bridge_op_set_cleanup(op, enqueue_cleanup);
    struct enqueue_op *e = luar_bridge_op_data(op);
    if (note)
        snprintf(e->out.note, sizeof e->out.note, "%s", note);
    int rc = luar_queue_enqueue(q, specs, n, dedupe, dedupe_ttl, enqueue_cb, op);
    if (rc) {
        e->fired = 1;
        e->out.rc = rc;
        luar_bridge_complete(op);
    }
    return luar_bridge_yield(L, op, push);
}

const luar_jobs_enqueued_t *luar_jobs_enqueued(luar_bridge_op_t *op)
{
    return &((struct enqueue_op *)luar_bridge_op_data(op))->out;
}

static int enqueue_push_one(lua_State *L, luar_bridge_op_t *op)
{
    const luar_jobs_enqueued_t *e = luar_jobs_enqueued(op);
    if (e->rc)
        return luar_lua_fail(L, "backend", "the queue backend could not take the job (%s)",
                             luar_strerror(e->rc));
    lua_pushstring(L, e->n ? e->ids[0] : "");
    return 1;
}

/* Builds the spec for job `name` with args at `args_idx` and options at `opts`. */
static void build_spec(lua_State *L, const char *name, int args_idx, int opts,
                       luar_job_spec_t *spec)
{
    luar_vm_t *vm = luar_vm_of(L);
    const luar_job_def_t *def = luar_jobs_find(vm->jobs, name);
    memset(spec, 0, sizeof *spec);
    spec->name = name;
    spec->queue = def ? def->queue : "default";
    spec->priority = def ? def->priority : 0;
    spec->max_attempts = (def ? def->retries : LUAR_JOBS_DEFAULT_RETRIES) + 1;
    if (lua_isnoneornil(L, args_idx) || lua_islightuserdata(L, args_idx))
        lua_pushliteral(L, "{}"); /* no arguments: the job gets an empty table */
    else
        luar_json_encode(L, args_idx, NULL);
    spec->args = lua_tostring(L, -1); /* left on the stack until the call returns */
    if (opts) {
        double now = luar_queue_now(luar_jobs_queue());
        double delay = opt_number(L, opts, "delay", 0, 0);
        double at = opt_number(L, opts, "at", 0, 0);
        spec->run_at = at > 0 ? at : (delay > 0 ? now + delay : 0);
        spec->key = opt_string(L, opts, "key", NULL);
        spec->queue = opt_string(L, opts, "queue", spec->queue);
        spec->priority = (int)opt_number(L, opts, "priority", spec->priority, -1e9);
    }
    if (spec->key == NULL && def && def->unique_for > 0) {
        /* Identical name and arguments: one job at a time (while not finished). */
        uint8_t md[LUAR_CRYPTO_MAX_MD];
        size_t mdlen = 0;
        luar_crypto_digest("sha256", spec->args, strlen(spec->args), md, &mdlen);
        luar_buf_t *b = luar_lua_newbuf(L, 256);
        luar_buf_appendf(b, "unique:%s:", name);
        luar_hex_encode(b, md, 16);
        lua_pushstring(L, b->data);
        spec->key = lua_tostring(L, -1);
    }
}

/* jobs.enqueue(name[, args[, opts]]) ⏸ → id | nil, err [-n, +1|2] */
static int jobs_enqueue(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    int opts = lua_istable(L, 3) ? 3 : 0;
    if (!lua_isnoneornil(L, 3) && !opts && !lua_islightuserdata(L, 3)) /* json.null: none */
        return luaL_argerror(L, 3, "expected an options table");
    luar_job_spec_t spec;
    if (luar_jobs_queue() == NULL)
        return luar_lua_fail(L, "backend", "no queue backend in this command");
    build_spec(L, name, 2, opts, &spec);
    return luar_jobs_enqueue_wait(L, "jobs.enqueue", &spec, 1, NULL, 0, NULL, enqueue_push_one);
}

/* For luar.events: enqueues one job per matching subscriber in one commit. */
static int publish_push(lua_State *L, luar_bridge_op_t *op)
{
    const luar_jobs_enqueued_t *e = luar_jobs_enqueued(op);
    if (e->rc)
        return luar_lua_fail(L, "backend", "the queue backend could not take the event (%s)",
                             luar_strerror(e->rc));
    lua_pushinteger(L, (lua_Integer)e->n);
    return 1;
}

/* events.publish(topic, payload) ⏸ → count | nil, err [-n, +1|2] */
int luar_events_publish(lua_State *L)
{
    const char *topic = luaL_checkstring(L, 1);
    luaL_checkany(L, 2);
    if (luar_jobs_queue() == NULL)
        return luar_lua_fail(L, "backend", "no queue backend in this command");
    luar_vm_t *vm = luar_vm_of(L);
    char event_id[37];
    luar_crypto_uuid(event_id);
    lua_createtable(L, 0, 4);
    lua_pushstring(L, topic);
    lua_setfield(L, -2, "topic");
    lua_pushvalue(L, 2);
    lua_setfield(L, -2, "payload");
    lua_pushnumber(L, luar_queue_now(luar_jobs_queue()));
    lua_setfield(L, -2, "published_at");
    lua_pushstring(L, event_id);
    lua_setfield(L, -2, "event_id");
    const char *args = luar_json_encode(L, -1, NULL);
    size_t ndefs = luar_jobs_count(vm->jobs), n = 0;
    luar_job_spec_t *specs = lua_newuserdatauv(L, (ndefs ? ndefs : 1) * sizeof *specs, 0);
    for (size_t i = 0; i < ndefs; i++) {
        const luar_job_def_t *d = luar_jobs_at(vm->jobs, i);
        if (!d->is_event || !luar_topic_match(d->pattern, topic))
            continue;
        memset(&specs[n], 0, sizeof specs[n]);
        specs[n].name = d->name;
        specs[n].queue = d->queue;
        specs[n].args = args;
        specs[n].priority = d->priority;
        specs[n].max_attempts = d->retries + 1;
        n++;
    }
    if (n == 0) {
        lua_pushinteger(L, 0);
        return 1;
    }
    return luar_jobs_enqueue_wait(L, "events.publish", specs, n, NULL, 0, NULL, publish_push);
}

/* ---- jobs.get ------------------------------------------------------------------------ */

struct get_op {
    int canceled, fired;
    int rc;
    luar_job_t job;
    char *strs[9];
};

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void get_cb(void *arg, int rc, const luar_job_t *jobs, size_t n)
{
    luar_bridge_op_t *op = arg;
    struct get_op *g = luar_bridge_op_data(op);
    g->fired = 1;
    if (g->canceled) {
        luar_bridge_op_free(op);
        return;
    }
    g->rc = rc ? rc : (n == 0 ? LUAR_ENOTFOUND : 0);
    if (g->rc == 0) {
        g->job = jobs[0];
        const char *src[9] = {jobs[0].name, jobs[0].queue, jobs[0].args, jobs[0].key,
                              jobs[0].owner, jobs[0].result, jobs[0].last_error,
                              jobs[0].traceback, NULL};
        for (int i = 0; i < 8; i++)
            g->strs[i] = dup_or_null(src[i]);
    }
    luar_bridge_complete(op);
}

static void get_cleanup(luar_bridge_op_t *op, int canceled)
{
    struct get_op *g = luar_bridge_op_data(op);
    for (int i = 0; i < 8; i++)
        free(g->strs[i]);
    if (canceled && !g->fired) {
        g->canceled = 1;
        return;
    }
    luar_bridge_op_free(op);
}

static void set_str(lua_State *L, const char *k, const char *v)
{
    if (v == NULL)
        return;
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

static void set_json(lua_State *L, const char *k, const char *v)
{
    if (v == NULL)
        return;
    lua_pushstring(L, v);
    if (luar_json_decode(L, -1) == 1) {
        lua_setfield(L, -3, k);
        lua_pop(L, 1);
    } else {
        lua_pop(L, 3);
    }
}

static void set_num(lua_State *L, const char *k, double v)
{
    if (v == 0)
        return;
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

static int get_push(lua_State *L, luar_bridge_op_t *op)
{
    struct get_op *g = luar_bridge_op_data(op);
    if (g->rc == LUAR_ENOTFOUND)
        return luar_lua_fail(L, "not_found", "no job with this id");
    if (g->rc)
        return luar_lua_fail(L, "backend", "the queue backend did not answer (%s)",
                             luar_strerror(g->rc));
    lua_createtable(L, 0, 16);
    set_str(L, "id", g->job.id);
    set_str(L, "name", g->strs[0]);
    set_str(L, "queue", g->strs[1]);
    set_json(L, "args", g->strs[2]);
    set_str(L, "key", g->strs[3]);
    set_str(L, "state", luar_job_state_name(g->job.state));
    lua_pushinteger(L, g->job.attempt);
    lua_setfield(L, -2, "attempts");
    lua_pushinteger(L, g->job.max_attempts);
    lua_setfield(L, -2, "max_attempts");
    lua_pushinteger(L, g->job.priority);
    lua_setfield(L, -2, "priority");
    set_json(L, "result", g->strs[5]);
    set_str(L, "last_error", g->strs[6]);
    set_str(L, "traceback", g->strs[7]);
    set_num(L, "enqueued_at", g->job.enqueued_at);
    set_num(L, "run_at", g->job.run_at);
    set_num(L, "started_at", g->job.started_at);
    set_num(L, "finished_at", g->job.finished_at);
    return 1;
}

/* jobs.get(id) ⏸ → job | nil, err [-1, +1|2] */
static int jobs_get(lua_State *L)
{
    const char *id = luaL_checkstring(L, 1);
    luar_queue_t *q = luar_jobs_queue();
    if (q == NULL)
        return luar_lua_fail(L, "backend", "no queue backend in this command");
    luar_bridge_op_t *op = luar_bridge_op_new(L, "jobs.get", sizeof(struct get_op));
    luar_bridge_op_set_cleanup(op, get_cleanup);
    int rc = luar_queue_get(q, id, get_cb, op);
    if (rc) {
        struct get_op *g = luar_bridge_op_data(op);
        g->fired = 1;
        g->rc = rc;
        luar_bridge_complete(op);
    }
    return luar_bridge_yield(L, op, get_push);
}

/* ---- jobs.retry_in ------------------------------------------------------------------- */

const char luar_jobs_retry_key = 0;

/* Pushes the metatable marking retry_in values, creating it on first use. [-0, +1] */
static void push_retry_meta(lua_State *L)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &luar_jobs_retry_key) == LUA_TTABLE)
        return;
    lua_pop(L, 1);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "luar.jobs.retry_in");
    lua_setfield(L, -2, "__name");
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &luar_jobs_retry_key);
}

void luar_jobs_push_retry_in(lua_State *L, double seconds)
{
    lua_createtable(L, 0, 1);
    lua_pushnumber(L, seconds);
    lua_setfield(L, -2, "seconds");
    push_retry_meta(L);
    lua_setmetatable(L, -2);
}

/* jobs.retry_in(seconds) → a value the job returns to run again later [-1, +1] */
static int jobs_retry_in(lua_State *L)
{
    double s = luaL_checknumber(L, 1);
    luaL_argcheck(L, s >= 0 && isfinite(s), 1, "expected a number of seconds >= 0");
    luar_jobs_push_retry_in(L, s);
    return 1;
}

int luaopen_luar_jobs(lua_State *L)
{
    push_retry_meta(L);
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {
        {"define", jobs_define},   {"enqueue", jobs_enqueue}, {"get", jobs_get},
        {"retry_in", jobs_retry_in}, {"cron", luar_jobs_cron}, {"every", luar_jobs_every},
        {NULL, NULL},
    };
    luaL_newlib(L, fns);
    return 1;
}
