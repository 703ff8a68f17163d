/*
 * `luar test`: the session around the VM (mod_test.h) and the C core of the module
 * luar.test (host/lua/test.lua is the glue the specs see). Each double is the real
 * mechanism with one switch: the wall clock's offset (common/clock.h), the runner in
 * manual mode (t.jobs.drain), the scheduler's own tick logic over (old, new]
 * (t.clock.advance), the client's stub hook (test_stubs.c), the log module's hook
 * (t.logs), the webhook scheme registry's signing (t.webhook) and a real listener on
 * 127.0.0.1 in front of the VM's router (t.webhook, t.request).
 */
#include "lua/mod_test.h"
#include "client/send.h"
#include "common/clock.h"
#include "common/error.h"
#include "jobs/jobs.h"
#include "log/log.h"
#include "lua/bridge.h"
#include "lua/modules.h"
#include "lua/util.h"
#include "lua/vm_internal.h"
#include "queue/queue.h"
#include "server/http.h"
#include "webhooks/ingest.h"
#include "webhooks/scheme.h"

#include "luar_test_lua.h" /* generated from host/lua/test.lua: luar_test_lua[] */

#include <errno.h>
#include <lauxlib.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOG_CAPTURE_MAX (16u * 1024 * 1024) /* bytes of captured records per test */

static struct {
    uv_loop_t *loop;
    char dir[4096];     /* the temporary folder of the queue */
    char db[4200];      /* its SQLite file */
    luar_queue_t *queue;
    luar_runner_t *runner;
    luar_http_server_t *server;
    int port;
    luar_vm_t *vm;
    luar_buf_t logs; /* captured records, one JSON object a line */
    size_t cache_max_bytes;
    int open;
} T;

static luar_vm_t *current_vm(void *arg)
{
    (void)arg;
    return T.vm;
}

/* ---- logs ------------------------------------------------------------------------------ */

/* The log module's hook: every record is kept for t.logs, none is printed. */
static int capture(void *ud, int level, const char *line, size_t len)
{
    (void)ud;
    (void)level;
    if (luar_buf_append(&T.logs, line, len) == 0)
        luar_buf_append(&T.logs, "\n", 1);
    return 1;
}

/* core.logs() → the captured lines (JSON objects, one a line) */
static int core_logs(lua_State *L)
{
    lua_pushlstring(L, T.logs.data ? T.logs.data : "", T.logs.len);
    return 1;
}

/* ---- the listener ---------------------------------------------------------------------- */

static void on_request(luar_http_req_t *req, void *udata)
{
    (void)udata;
    if (T.vm == NULL) {
        const char *body = "{\"error\":\"scripts not loaded\"}";
        luar_http_respond(req, 503, NULL, 0, body, strlen(body));
        return;
    }
    luar_vm_handle_http(T.vm, req);
}

/* core.base() → "http://127.0.0.1:PORT" */
static int core_base(lua_State *L)
{
    lua_pushfstring(L, "http://127.0.0.1:%d", T.port);
    return 1;
}

/* ---- operations that wait: one shape, a JSON answer ------------------------------------- */

typedef struct json_op {
    luar_bridge_op_t *op;
    int fired, canceled, rc;
    char *json;
    char error[256];
    /* for t.jobs lists: the states still to list */
    luar_buf_t acc;
    int states[3];
    int nstates, next;
    char name[256];
    char cursor[64]; /* the page to continue from, within the current state */
} json_op_t;

static void json_cleanup(luar_bridge_op_t *op, int canceled)
{
    json_op_t *j = luar_bridge_op_data(op);
    if (canceled && !j->fired) {
        j->canceled = 1; /* the callback still comes: it frees */
        return;
    }
    free(j->json);
    luar_buf_free(&j->acc);
    luar_bridge_op_free(op);
}

/* The answer came: hand it to the waiting coroutine, or free it when that one is gone. */
static void json_fire(json_op_t *j)
{
    j->fired = 1;
    if (j->canceled) {
        free(j->json);
        luar_buf_free(&j->acc);
        luar_bridge_op_free(j->op);
        return;
    }
    luar_bridge_complete(j->op);
}

static int json_push(lua_State *L, luar_bridge_op_t *op)
{
    json_op_t *j = luar_bridge_op_data(op);
    if (j->rc)
        return luaL_error(L, "luar.test: %s", j->error[0] ? j->error : luar_strerror(j->rc));
    if (j->json == NULL)
        return 0;
    lua_pushstring(L, j->json);
    return luar_json_decode(L, lua_gettop(L));
}

static json_op_t *json_op_new(lua_State *L, const char *what)
{
    luar_bridge_op_t *op = luar_bridge_op_new(L, what, sizeof(json_op_t));
    luar_bridge_op_set_cleanup(op, json_cleanup);
    json_op_t *j = luar_bridge_op_data(op);
    j->op = op;
    luar_buf_init(&j->acc, 0);
    return j;
}

/* ---- t.clock ------------------------------------------------------------------------- */

static void on_ticks(void *arg, int rc)
{
    json_op_t *j = arg;
    j->rc = rc;
    if (rc)
        snprintf(j->error, sizeof j->error, "enqueueing the cron ticks failed: %s",
                 rc == LUAR_EIO ? luar_queue_last_error(T.queue) : luar_strerror(rc));
    json_fire(j);
}

/*
 * core.move(offset, ticks) ⏸: the clock becomes real time + offset; with `ticks`, the
 * ticks of every schedule the move passed forward over are enqueued before it returns.
 */
static int core_move(lua_State *L)
{
    double offset = luaL_checknumber(L, 1);
    int ticks = lua_toboolean(L, 2);
    double before = luar_time_now();
    luar_time_set_offset(offset);
    double after = luar_time_now();
    if (!ticks || after <= before || T.vm == NULL)
        return 0;
    json_op_t *j = json_op_new(L, "t.clock");
    if (luar_scheduler_fire_range(T.queue, T.vm, before, after, on_ticks, j)) {
        j->rc = LUAR_ENOMEM;
        json_fire(j);
    }
    return luar_bridge_yield(L, j->op, json_push);
}

/* core.offset() → the clock's offset in seconds */
static int core_offset(lua_State *L)
{
    lua_pushnumber(L, luar_time_offset());
    return 1;
}

/* ---- t.jobs ---------------------------------------------------------------------------- */

static void on_drained(void *arg, const luar_runner_drained_t *d)
{
    json_op_t *j = arg;
    if (asprintf(&j->json, "{\"ran\":%zu,\"succeeded\":%zu,\"failed\":%zu,\"errors\":[%s]}",
                 d->ran, d->succeeded, d->failed, d->errors_json) < 0)
        j->json = NULL;
    json_fire(j);
}

/* core.drain(max) ⏸ → {ran, succeeded, failed, errors} */
static int core_drain(lua_State *L)
{
    lua_Integer max = luaL_optinteger(L, 1, 1000);
    luaL_argcheck(L, max > 0, 1, "max must be positive");
    json_op_t *j = json_op_new(L, "t.jobs.drain");
    int rc = luar_runner_drain(T.runner, (size_t)max, on_drained, j);
    if (rc) {
        j->rc = rc;
        snprintf(j->error, sizeof j->error, "t.jobs.drain: %s",
                 rc == LUAR_EBUSY ? "a drain is already running (called from a job?)"
                                  : luar_strerror(rc));
        json_fire(j);
    }
    return luar_bridge_yield(L, j->op, json_push);
}

static void list_next(json_op_t *j);

static void on_listed(void *arg, int rc, const luar_job_t *jobs, size_t n, const char *cursor)
{
    json_op_t *j = arg;
    if (rc) {
        j->rc = rc;
        snprintf(j->error, sizeof j->error, "listing jobs failed: %s",
                 rc == LUAR_EIO ? luar_queue_last_error(T.queue) : luar_strerror(rc));
        json_fire(j);
        return;
    }
    luar_buf_t *b = &j->acc;
    for (size_t i = 0; i < n; i++) {
        const luar_job_t *job = &jobs[i];
        luar_buf_puts(b, b->len > 1 ? ",{\"id\":" : "{\"id\":");
        luar_buf_append_json_string(b, job->id, strlen(job->id));
        luar_buf_puts(b, ",\"name\":");
        luar_buf_append_json_string(b, job->name, strlen(job->name));
        luar_buf_puts(b, ",\"queue\":");
        luar_buf_append_json_string(b, job->queue, strlen(job->queue));
        luar_buf_appendf(b, ",\"args\":%s,\"run_at\":%.6f,\"attempts\":%d,\"state\":\"%s\"",
                         job->args ? job->args : "null", job->run_at, job->attempt,
                         luar_job_state_name(job->state));
        if (job->last_error) {
            luar_buf_puts(b, ",\"error\":");
            luar_buf_append_json_string(b, job->last_error, strlen(job->last_error));
        }
        luar_buf_puts(b, "}");
    }
    if (cursor && *cursor && n > 0) {
        snprintf(j->cursor, sizeof j->cursor, "%s", cursor);
        j->next--; /* the same state again, from the next page */
    } else {
        j->cursor[0] = '\0';
    }
    list_next(j);
}

static void list_next(json_op_t *j)
{
    if (j->next == j->nstates) {
        luar_buf_puts(&j->acc, "]");
        j->json = j->acc.data ? strdup(j->acc.data) : NULL;
        json_fire(j);
        return;
    }
    luar_job_filter_t f;
    memset(&f, 0, sizeof f);
    f.state = j->states[j->next++];
    f.name = j->name[0] ? j->name : NULL;
    f.cursor = j->cursor[0] ? j->cursor : NULL;
    f.limit = 10000;
    int rc = luar_queue_list(T.queue, &f, on_listed, j);
    if (rc)
        on_listed(j, rc, NULL, 0, NULL);
}

/* core.jobs(kind[, name]) ⏸ → waiting ("waiting") or dead ("dead") jobs, by state */
static int core_jobs(lua_State *L)
{
    const char *kind = luaL_checkstring(L, 1);
    const char *name = luaL_optstring(L, 2, NULL);
    json_op_t *j = json_op_new(L, "t.jobs");
    if (strcmp(kind, "dead") == 0) {
        j->states[j->nstates++] = LUAR_JOB_DEAD;
    } else {
        j->states[j->nstates++] = LUAR_JOB_QUEUED;
        j->states[j->nstates++] = LUAR_JOB_SCHEDULED;
        j->states[j->nstates++] = LUAR_JOB_RETRYING;
    }
    if (name)
        snprintf(j->name, sizeof j->name, "%s", name);
    luar_buf_puts(&j->acc, "[");
    list_next(j);
    return luar_bridge_yield(L, j->op, json_push);
}

/* ---- t.webhook ------------------------------------------------------------------------- */

/*
 * core.sign(route, scheme, body, secret|nil, id|nil, timestamp) → { "Name: value", … }:
 * the signature headers of the scheme, with the route's configured secrets unless a
 * secret is given.
 */
static int core_sign(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    const char *scheme = luaL_checkstring(L, 2);
    size_t len;
    const char *body = luaL_checklstring(L, 3, &len);
    const char *secret = luaL_optstring(L, 4, NULL);
    const char *id = luaL_optstring(L, 5, NULL);
    double ts = luaL_optnumber(L, 6, luar_time_now());
    luar_buf_t *out = luar_lua_newbuf(L, 64 * 1024);
    luar_buf_t *err = luar_lua_newbuf(L, 4096);
    int rc;
    if (secret) {
        rc = luar_webhook_sign_with_secret(scheme, secret, NULL, 0, id, ts, body, len, out, err);
    } else {
        struct luar_webhook_route *r = T.vm ? luar_http_webhook_find(T.vm, path) : NULL;
        if (r == NULL)
            return luaL_error(L, "t.webhook: no webhooks.route %s in the scripts", path);
        const luar_webhook_verifier_t *v = luar_webhook_route_verifier(r);
        if (v == NULL || strcmp(v->scheme->name, scheme) != 0)
            return luaL_error(L, "t.webhook: the route %s verifies with %s, not %s (give "
                              "opts.secret to sign for another scheme)",
                              path, v ? v->scheme->name : "no scheme", scheme);
        rc = luar_webhook_sign(v, id, ts, body, len, out, err);
    }
    if (rc)
        return luaL_error(L, "t.webhook: signing for %s failed: %s", scheme,
                          err->data ? err->data : luar_strerror(rc));
    lua_newtable(L);
    const char *p = out->data ? out->data : "";
    for (lua_Integer i = 1; *p;) {
        const char *eol = strstr(p, "\r\n");
        size_t n = eol ? (size_t)(eol - p) : strlen(p);
        if (n) {
            lua_pushlstring(L, p, n);
            lua_rawseti(L, -2, i++);
        }
        p += n + (eol ? 2 : 0);
    }
    return 1;
}

/* ---- the reset before every test ---------------------------------------------------------- */

/* Empties every table of the queue's file (jobs, dedupe records, rate limits, kv). */
static int empty_queue(luar_buf_t *err)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(T.db, &db, SQLITE_OPEN_READWRITE, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(db, 5000);
        rc = sqlite3_exec(db,
                          "BEGIN IMMEDIATE; DELETE FROM jobs; DELETE FROM dedupe; "
                          "DELETE FROM job_args; DELETE FROM ratelimit; DELETE FROM kv; COMMIT;",
                          NULL, NULL, NULL);
    }
    if (rc != SQLITE_OK)
        luar_buf_appendf(err, "emptying the test queue %s failed: %s", T.db,
                         db ? sqlite3_errmsg(db) : "cannot open");
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : LUAR_EIO;
}

static void cache_emptied(void *arg, int rc)
{
    (void)arg;
    (void)rc;
}

/*
 * luar.cache lives in the SQLite backend's in-process LRU, not in the file: a bound of one
 * byte for one operation (run at once, on the loop thread) evicts every entry; the next
 * operation restores the configured bound.
 */
static void empty_cache(void)
{
    luar_queue_set_cache_limits(T.queue, 1, 0);
    luar_queue_cache_delete(T.queue, "luar.test:reset", cache_emptied, NULL);
    luar_queue_set_cache_limits(T.queue, T.cache_max_bytes, 0);
}

/* core.reset(): stubs, recorded requests, logs, the clock, the queue and the cache, as new */
static int core_reset(lua_State *L)
{
    luar_test_stubs_reset(T.vm);
    luar_client_send_reset();
    luar_buf_reset(&T.logs);
    luar_time_set_offset(0);
    luar_buf_t *err = luar_lua_newbuf(L, 1024);
    if (empty_queue(err))
        return luaL_error(L, "luar.test: %s", err->data);
    empty_cache();
    return 0;
}

static int open_test(lua_State *L, void *ctx)
{
    (void)ctx;
    static const luaL_Reg core[] = {
        {"move", core_move},   {"offset", core_offset}, {"drain", core_drain},
        {"jobs", core_jobs},   {"sign", core_sign},
        {"logs", core_logs},   {"base", core_base},     {"reset", core_reset},
        {NULL, NULL},
    };
    if (luaL_loadbuffer(L, luar_test_lua, sizeof luar_test_lua - 1, "=luar.test") != LUA_OK)
        return lua_error(L);
    luaL_newlib(L, core);
    luar_test_stubs_open(L);
    lua_call(L, 1, 1);
    return 1;
}

/* ---- the session ----------------------------------------------------------------------- */

int luar_test_session_open(uv_loop_t *loop, const luar_config_t *cfg, luar_buf_t *err)
{
    memset(&T, 0, sizeof T);
    T.loop = loop;
    const char *tmp = getenv("TMPDIR");
    snprintf(T.dir, sizeof T.dir, "%s/luar-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(T.dir) == NULL) {
        luar_buf_appendf(err, "cannot create a temporary folder for the test queue in %s: %s",
                         tmp && *tmp ? tmp : "/tmp", strerror(errno));
        return LUAR_EIO;
    }
    T.open = 1;
    snprintf(T.db, sizeof T.db, "%s/luar.db", T.dir);
    char url[4300];
    snprintf(url, sizeof url, "sqlite:%s", T.db);
    int rc = luar_queue_open(loop, url, &T.queue, err);
    if (rc)
        return rc;
    luar_queue_set_cache_limits(T.queue, cfg->cache.max_bytes, cfg->cache.max_value);
    T.cache_max_bytes = cfg->cache.max_bytes;
    rc = luar_runner_new(loop, T.queue, &cfg->jobs, "luar-test", current_vm, NULL, &T.runner);
    if (rc)
        return rc;
    luar_runner_set_manual(T.runner);
    luar_runner_start(T.runner);
    luar_jobs_set_host(T.queue, T.runner, &cfg->jobs);
    rc = luar_http_server_new(loop, &cfg->limits, on_request, NULL, &T.server);
    if (rc)
        return rc;
    luar_listen_t l = {"127.0.0.1:0", NULL, NULL, NULL};
    rc = luar_http_server_listen(T.server, &l, 0);
    if (rc) {
        luar_buf_appendf(err, "cannot listen on 127.0.0.1 for t.webhook: %s",
                         luar_strerror(rc));
        return rc;
    }
    T.port = luar_http_server_port(T.server);
    luar_test_stubs_install(T.port);
    luar_buf_init(&T.logs, LOG_CAPTURE_MAX);
    luar_log_set_hook(capture, NULL);
    return luar_lua_modules_add("luar.test", open_test, NULL);
}

void luar_test_session_set_vm(luar_vm_t *vm)
{
    T.vm = vm;
    luar_test_stubs_set_vm(vm);
}

static void remove_dir(void)
{
    static const char *const files[] = {"luar.db", "luar.db-wal", "luar.db-shm",
                                        "luar.db-journal"};
    char path[4300];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", T.dir, files[i]);
        unlink(path);
    }
    rmdir(T.dir);
}

static void queue_closed(void *arg)
{
    (void)arg;
    remove_dir();
}

static void runner_stopped(void *arg)
{
    (void)arg;
    if (T.queue)
        luar_queue_close(T.queue, queue_closed, NULL);
    else
        remove_dir();
    T.queue = NULL;
}

void luar_test_session_close(void)
{
    if (!T.open)
        return;
    T.open = 0;
    luar_log_set_hook(NULL, NULL);
    luar_buf_free(&T.logs);
    luar_test_stubs_remove();
    luar_lua_modules_remove("luar.test");
    luar_jobs_set_host(NULL, NULL, NULL);
    luar_time_set_offset(0);
    if (T.server)
        luar_http_server_close(T.server, NULL, NULL);
    T.server = NULL;
    T.vm = NULL;
    if (T.runner)
        luar_runner_stop(T.runner, 0, runner_stopped, NULL);
    else
        runner_stopped(NULL);
    T.runner = NULL;
}
