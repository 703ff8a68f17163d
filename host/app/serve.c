/*
 * One serving process: the loop, the HTTP server, the current Lua VM, the built-in
 * endpoints, signals, reload and graceful shutdown.
 *
 * Reload builds the new VM completely on the loop before it swaps in, so a request either
 * sees the old VM or the new one, never a half-loaded one; the old VM is retired and
 * closes itself when its last coroutine ends. Shutdown stops accepting, lets in-flight
 * requests finish (a uv_prepare notices the last one, no polling), then closes.
 */
#include "app/admin.h"
#include "app/app.h"
#include "audit/audit.h"
#include "common/error.h"
#include "common/json.h"
#include "jobs/jobs.h"
#include "log/log.h"
#include "lua/mod_redis.h"
#include "lua/vm.h"
#include "metrics/metrics.h"
#include "plugin/hooks.h"
#include "plugin/loader.h"
#include "queue/redis.h"
#include "secrets/redact.h"
#include "secrets/secrets.h"
#include "server/http.h"
#include "trace/export.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct app {
    uv_loop_t loop;
    const luar_config_t *cfg;
    int worker_id;
    luar_http_server_t *server;
    luar_vm_t *vm;
    unsigned generation;
    int stopping;      /* 0 serving, 1 draining, 2 closing */
    int grace_expired; /* the drain's grace period is over; Lua work was cancelled */
    uv_signal_t sigterm, sigint, sighup, sigusr1;
    int signals;          /* the four above are started (closed by the failure path) */
    uv_prepare_t prepare; /* before the loop blocks: flushes the log, notices the end of the drain */
    uv_timer_t grace;    /* ends the drain after shutdown.grace seconds */
    luar_control_t *control;
    luar_watch_t *watch;
    luar_queue_t *queue;
    luar_runner_t *runner;
    luar_scheduler_t *scheduler;
    luar_admin_t *admin; /* /admin/: the token gate and the admin API */
    uint64_t started_ns;
    int runner_done, scheduler_done; /* stopped during the drain */
    struct retired_vm **retired; /* older generations still finishing their coroutines */
    size_t nretired;
} app_t;

/* A retired generation, until its state closes. */
typedef struct retired_vm {
    app_t *app;
    luar_vm_t *vm;
} retired_vm_t;

static const luar_http_header_t json_type = {"Content-Type", 12, "application/json", 16};

static void respond_json(luar_http_req_t *req, int status, const char *body)
{
    luar_http_respond(req, status, &json_type, 1, body, strlen(body));
}

/* A /readyz waiting for the backend's answer to a ping. */
typedef struct ready_check {
    luar_http_req_t *req;
    luar_queue_t *queue;
} ready_check_t;

/* 503 naming why the backend does not answer ("redis 10.0.0.5:6379: connection refused",
 * a file that cannot be written): the operator reading a failed health check needs the
 * reason, not only that there is one. */
static void respond_not_ready(luar_http_req_t *req, luar_queue_t *q, int rc)
{
    const char *why = rc == LUAR_EIO && q ? luar_queue_last_error(q) : luar_strerror(rc);
    luar_buf_t b;
    luar_buf_init(&b, 0);
    luar_buf_puts(&b, "{\"error\":");
    char msg[700];
    snprintf(msg, sizeof msg, "the queue backend does not answer: %s",
             why && *why ? why : luar_strerror(rc));
    luar_buf_append_json_string(&b, msg, strlen(msg));
    luar_buf_puts(&b, "}");
    if (b.data)
        respond_json(req, 503, b.data);
    else
        respond_json(req, 503, "{\"error\":\"the queue backend does not answer\"}");
    luar_buf_free(&b);
}

static void on_ready_ping(void *arg, int rc)
{
    ready_check_t *c = arg;
    luar_http_req_t *req = c->req;
    luar_queue_t *q = c->queue;
    free(c);
    if (rc)
        respond_not_ready(req, q, rc);
    else
        respond_json(req, 200, "{\"status\":\"ready\"}");
}

static void respond_metrics(luar_http_req_t *req)
{
    static const luar_http_header_t prom = {"Content-Type", 12,
                                            "text/plain; version=0.0.4; charset=utf-8", 40};
    luar_buf_t b;
    luar_buf_init(&b, 0);
    if (luar_metrics_render(&b) == 0)
        luar_http_respond(req, 200, &prom, 1, b.data ? b.data : "", b.len);
    else
        respond_json(req, 500, "{\"error\":\"metrics rendering failed\"}");
    luar_buf_free(&b);
}

/* The queue gauges are read from the backend at each scrape. */
static void on_counts(void *arg, int rc, const luar_queue_count_t *counts, size_t n)
{
    if (rc == 0)
        luar_jobs_metrics_counts(counts, n);
    respond_metrics(arg);
}

static void ready_check(app_t *app, luar_http_req_t *req)
{
    ready_check_t *c = malloc(sizeof *c);
    if (c == NULL) {
        respond_json(req, 503, "{\"error\":\"out of memory\"}");
        return;
    }
    c->req = req;
    c->queue = app->queue;
    int rc = luar_queue_ping(app->queue, on_ready_ping, c);
    if (rc) {
        free(c);
        respond_not_ready(req, app->queue, rc);
    }
}

/* GET /healthz, /readyz, /metrics; returns 0 when `req` is not one of them. */
static int builtin(app_t *app, luar_http_req_t *req)
{
    const char *p = req->path;
    if (strcmp(p, "/healthz") && strcmp(p, "/readyz") && strcmp(p, "/metrics"))
        return 0;
    snprintf(req->route, sizeof req->route, "%s", p);
    if (strcmp(req->method, "GET") && strcmp(req->method, "HEAD")) {
        static const luar_http_header_t allow[] = {
            {"Content-Type", 12, "application/json", 16}, {"Allow", 5, "GET, HEAD", 9}};
        const char *body = "{\"error\":\"method not allowed\"}";
        luar_http_respond(req, 405, allow, 2, body, strlen(body));
        return 1;
    }
    if (strcmp(p, "/healthz") == 0) {
        respond_json(req, 200, "{\"status\":\"ok\"}");
    } else if (strcmp(p, "/readyz") == 0) {
        if (app->stopping)
            respond_json(req, 503, "{\"error\":\"shutting down\"}");
        else if (app->vm == NULL)
            respond_json(req, 503, "{\"error\":\"scripts not loaded\"}");
        else
            ready_check(app, req);
    } else {
        size_t lua_bytes = app->vm ? luar_vm_memory(app->vm) : 0;
        for (size_t i = 0; i < app->nretired; i++)
            lua_bytes += luar_vm_memory(app->retired[i]->vm);
        luar_app_metrics_sample(lua_bytes);
        if (luar_queue_counts(app->queue, on_counts, req))
            respond_metrics(req);
    }
    return 1;
}

static void admin_reload(void *ctx, luar_reload_done_fn done, void *arg);

static unsigned admin_generation(void *ctx)
{
    return ((app_t *)ctx)->generation;
}

static void on_request(luar_http_req_t *req, void *udata)
{
    app_t *app = udata;
    if (builtin(app, req))
        return;
    luar_admin_env_t env = {app->queue,
                            app->runner ? luar_runner_running(app->runner) : 0,
                            app->worker_id,
                            app->generation,
                            app->started_ns,
                            app->stopping ? NULL : app->vm,
                            app->cfg->jobs.dead_ttl,
                            admin_reload,
                            app,
                            admin_generation};
    if (luar_admin_handle(app->admin, req, &env))
        return;
    if (app->vm == NULL) {
        respond_json(req, 503, "{\"error\":\"scripts not loaded\"}");
        return;
    }
    luar_vm_handle_http(app->vm, req);
}

static void vm_config(const app_t *app, luar_vm_config_t *vc, unsigned generation)
{
    luar_config_vm(app->cfg, (uv_loop_t *)&app->loop, vc);
    vc->generation = generation;
}

/* A retired VM's state has closed: forget it. */
static void retired_closed(void *arg)
{
    retired_vm_t *r = arg;
    app_t *app = r->app;
    for (size_t i = 0; i < app->nretired; i++) {
        if (app->retired[i] == r) {
            app->retired[i] = app->retired[--app->nretired];
            break;
        }
    }
    free(r);
}

/* Retires `vm`: it takes no new work, and closes once its last coroutine has ended. */
static void retire(app_t *app, luar_vm_t *vm)
{
    retired_vm_t **list = realloc(app->retired, (app->nretired + 1) * sizeof *list);
    retired_vm_t *r = malloc(sizeof *r);
    if (list)
        app->retired = list;
    if (list && r) {
        r->app = app;
        r->vm = vm;
        list[app->nretired++] = r;
        luar_vm_set_close_cb(vm, retired_closed, r);
    } else {
        free(r);
    }
    luar_vm_retire(vm);
}

/* Builds a VM from the scripts and swaps it in; the old one finishes its work and closes. */
static int reload(void *ctx, luar_buf_t *err)
{
    app_t *app = ctx;
    luar_vm_config_t vc;
    luar_vm_t *vm = NULL;
    if (app->stopping) {
        luar_buf_puts(err, "shutting down");
        return LUAR_EBUSY;
    }
    vm_config(app, &vc, app->generation + 1);
    luar_buf_t lerr;
    luar_buf_init(&lerr, 64 * 1024);
    /* The secret store is read again with each reload, before the scripts that use it. */
    int rc = luar_secrets_load(app->cfg->secrets_file, &app->cfg->secrets_key, &lerr);
    if (rc == 0)
        rc = luar_vm_new(&vc, &vm, &lerr);
    luar_app_count_reload(rc == 0);
    if (rc) {
        luar_buf_t fields;
        luar_buf_init(&fields, 0);
        luar_buf_puts(&fields, "\"error\":");
        luar_buf_append_json_string(&fields, lerr.data ? lerr.data : "", lerr.len);
        luar_buf_appendf(&fields, ",\"generation\":%u", app->generation);
        const char *msg = "reload failed, the previous scripts keep serving";
        luar_log_write(LUAR_LOG_ERROR, msg, strlen(msg), fields.data, fields.len);
        luar_buf_free(&fields);
        luar_secret_scrub(err, lerr.data ? lerr.data : "", lerr.len); /* to `luar reload` */
        luar_buf_free(&lerr);
        return rc;
    }
    luar_buf_free(&lerr);
    luar_vm_t *old = app->vm;
    app->vm = vm;
    app->generation++;
    luar_redis_module_use_vm(vm); /* its redis.subscribe handlers take the messages */
    luar_plugins_use_vm(vm);      /* its job definitions: plugins' enqueue defaults */
    if (old)
        retire(app, old);
    char fields[96];
    int n = snprintf(fields, sizeof fields, "\"generation\":%u,\"routes\":%zu", app->generation,
                     luar_vm_routes(vm));
    luar_log_write(LUAR_LOG_INFO, "scripts reloaded", 16, fields, (size_t)n);
    return 0;
}

/* luar_reload_fn for the control socket and the watcher: a lone process reloads at once. */
static void reload_request(void *ctx, luar_reload_done_fn done, void *arg)
{
    luar_buf_t err;
    luar_buf_init(&err, 64 * 1024);
    int rc = reload(ctx, &err);
    if (done)
        done(arg, rc, err.data);
    luar_buf_free(&err);
}

/* A worker's reload asked by the admin API, waiting for the supervisor's answer. */
typedef struct admin_reload_req {
    luar_reload_done_fn done;
    void *arg;
} admin_reload_req_t;

/* The supervisor's answer line: {"ok":true} or {"ok":false,"error":"…"}. */
static void on_supervisor_reload(void *arg, int rc, const char *answer)
{
    admin_reload_req_t *r = arg;
    luar_buf_t why;
    luar_buf_init(&why, 64 * 1024);
    if (rc == 0 && strstr(answer, "\"ok\":true") == NULL) {
        const char *val;
        size_t vlen;
        rc = LUAR_ELUA;
        if (!luar_json_member(answer, strlen(answer), "error", &val, &vlen) ||
            luar_json_unquote(val, vlen, &why))
            luar_buf_puts(&why, answer);
    } else if (rc) {
        luar_buf_puts(&why, answer);
    }
    r->done(r->arg, rc, why.data);
    luar_buf_free(&why);
    free(r);
}

/*
 * Reload for the admin API: a lone process reloads at once; a supervisor's worker asks the
 * supervisor through the control socket, which validates the scripts and reloads every
 * worker (this one included), then answers.
 */
static void admin_reload(void *ctx, luar_reload_done_fn done, void *arg)
{
    app_t *app = ctx;
    if (app->worker_id == 0) {
        reload_request(ctx, done, arg);
        return;
    }
    admin_reload_req_t *r = malloc(sizeof *r);
    char *path = luar_config_control_path(app->cfg);
    if (r == NULL || path == NULL) {
        free(r);
        free(path);
        done(arg, LUAR_ENOMEM, NULL);
        return;
    }
    r->done = done;
    r->arg = arg;
    if (luar_control_request_async(&app->loop, path, "reload", on_supervisor_reload, r)) {
        free(r);
        done(arg, LUAR_ENOMEM, NULL);
    }
    free(path);
}

/*
 * A supervisor's worker answers each SIGHUP on fd 3 with one line, "reload 0" or
 * "reload <code> <JSON string of the errors>", so `luar reload` can report the outcome.
 */
static void report_reload(int rc, const luar_buf_t *err)
{
    luar_buf_t line;
    luar_buf_init(&line, 0);
    luar_buf_appendf(&line, "reload %d", rc);
    if (rc) {
        luar_buf_putc(&line, ' ');
        luar_buf_append_json_string(&line, err->data ? err->data : "", err->len);
    }
    luar_buf_putc(&line, '\n');
    size_t off = 0;
    while (off < line.len) {
        ssize_t n = write(3, line.data + off, line.len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    luar_buf_free(&line);
}

static void close_cb(uv_handle_t *h)
{
    (void)h;
}

static void on_server_closed(void *arg)
{
    app_t *app = arg;
    (void)app;
}

/* Ends the drain: close everything so uv_run returns. */
static void finish(app_t *app)
{
    if (app->stopping == 2)
        return;
    app->stopping = 2;
    luar_logf(LUAR_LOG_INFO, "shutdown complete");
    if (app->server)
        luar_http_server_close(app->server, on_server_closed, app);
    app->server = NULL;
    if (app->vm)
        luar_vm_retire(app->vm);
    app->vm = NULL;
    luar_jobs_set_host(NULL, NULL, NULL);
    luar_plugins_use_vm(NULL);
    luar_redis_module_close();
    luar_trace_export_stop(); /* the last spans leave; their post is bounded by 2 s */
    luar_plugin_hooks_stopping(); /* so do the plugins' last sends (Sentry's queue) */
    if (app->queue)
        luar_queue_close(app->queue, NULL, NULL); /* after pending writes complete */
    app->queue = NULL;
    uv_close((uv_handle_t *)&app->sigterm, close_cb);
    uv_close((uv_handle_t *)&app->sigint, close_cb);
    uv_close((uv_handle_t *)&app->sighup, close_cb);
    uv_close((uv_handle_t *)&app->sigusr1, close_cb);
    uv_close((uv_handle_t *)&app->grace, close_cb);
    uv_close((uv_handle_t *)&app->prepare, close_cb);
}

static void on_prepare(uv_prepare_t *h)
{
    app_t *app = h->data;
    luar_log_flush();
    if (app->stopping == 1 && luar_http_server_inflight(app->server) == 0 && app->runner_done &&
        app->scheduler_done)
        finish(app);
}

/* Cancels the coroutines of every generation; their requests are answered 503. */
static void cancel_lua_work(app_t *app)
{
    const char *why = "the host is shutting down (grace period over)";
    if (app->vm)
        luar_vm_shutdown(app->vm, why);
    app->vm = NULL;
    /* Shutting one down may close it and shrink the list: work on a copy. */
    size_t n = app->nretired;
    luar_vm_t **vms = n ? malloc(n * sizeof *vms) : NULL;
    for (size_t i = 0; vms && i < n; i++)
        vms[i] = app->retired[i]->vm;
    for (size_t i = 0; vms && i < n; i++)
        luar_vm_shutdown(vms[i], why);
    free(vms);
}

/*
 * The grace period is over: cancel what still runs in Lua, so its requests get a 503 and
 * the normal drain ends; one second later, close whatever is left regardless.
 */
static void on_grace(uv_timer_t *t)
{
    app_t *app = t->data;
    if (app->stopping == 1 && app->grace_expired) {
        finish(app);
        return;
    }
    app->grace_expired = 1;
    luar_logf(LUAR_LOG_WARN, "shutdown grace period over with %zu requests in flight; "
              "cancelling them", luar_http_server_inflight(app->server));
    if (app->runner)
        luar_runner_abort(app->runner); /* running jobs go back to the queue */
    cancel_lua_work(app);
    uv_timer_start(&app->grace, on_grace, 1000, 0);
}

static void runner_stopped(void *arg)
{
    app_t *app = arg;
    app->runner = NULL;
    app->runner_done = 1;
}

static void scheduler_stopped(void *arg)
{
    app_t *app = arg;
    app->scheduler = NULL;
    app->scheduler_done = 1;
}

static void begin_shutdown(app_t *app, const char *why)
{
    if (app->stopping)
        return;
    app->stopping = 1;
    luar_logf(LUAR_LOG_INFO, "%s: stopping, %zu requests in flight", why,
              luar_http_server_inflight(app->server));
    luar_http_server_stop_accepting(app->server);
    luar_redis_module_use_vm(NULL); /* no new message handlers either */
    if (app->scheduler)
        luar_scheduler_stop(app->scheduler, scheduler_stopped, app);
    if (app->runner)
        luar_runner_stop(app->runner, app->cfg->shutdown_grace, runner_stopped, app);
    if (app->control)
        luar_control_close(app->control);
    app->control = NULL;
    if (app->watch)
        luar_watch_close(app->watch);
    app->watch = NULL;
    /* The prepare step before the loop next blocks finishes at once when nothing is in flight. */
    uv_timer_start(&app->grace, on_grace, (uint64_t)(app->cfg->shutdown_grace * 1000), 0);
}

static void on_signal(uv_signal_t *s, int signum)
{
    app_t *app = s->data;
    luar_buf_t err;
    int rc;
    switch (signum) {
    case SIGTERM:
        begin_shutdown(app, "SIGTERM");
        break;
    case SIGINT:
        begin_shutdown(app, "SIGINT");
        break;
    case SIGHUP:
        luar_buf_init(&err, 64 * 1024);
        rc = reload(app, &err);
        if (app->worker_id > 0)
            report_reload(rc, &err);
        luar_buf_free(&err);
        break;
    case SIGUSR1:
        luar_log_reopen();
        break;
    }
}

static void start_signal(app_t *app, uv_signal_t *s, int signum)
{
    uv_signal_init(&app->loop, s);
    s->data = app;
    uv_signal_start(s, on_signal, signum);
}

static luar_vm_t *current_vm(void *arg)
{
    app_t *app = arg;
    return app->stopping ? NULL : app->vm;
}

/* The job runner and the scheduler of this process. */
static int start_jobs(app_t *app)
{
    char host[128] = "localhost", owner[200];
    gethostname(host, sizeof host - 1);
    snprintf(owner, sizeof owner, "%s:%d:%d", host, (int)getpid(), app->worker_id);
    if (luar_runner_new(&app->loop, app->queue, &app->cfg->jobs, owner, current_vm, app,
                        &app->runner) ||
        luar_scheduler_new(&app->loop, app->queue, current_vm, app, &app->scheduler))
        return LUAR_ENOMEM;
    luar_jobs_set_host(app->queue, app->runner, &app->cfg->jobs);
    luar_runner_start(app->runner);
    luar_scheduler_start(app->scheduler);
    /* Said once (the lone process or worker 1); a warning unless other machines share the
     * queue (the backend is Redis). */
    if (app->cfg->jobs.concurrency == 0 && app->worker_id <= 1)
        luar_logf(luar_queue_redis_conn(app->queue) ? LUAR_LOG_INFO : LUAR_LOG_WARN,
                  "jobs.concurrency = 0: this process runs no jobs; the jobs it enqueues "
                  "wait for a process with jobs.concurrency > 0 on the same queue");
    return 0;
}

static void log_listening(const luar_listen_t *l, int port, int worker_id)
{
    luar_buf_t f;
    luar_buf_init(&f, 0);
    luar_buf_puts(&f, "\"addr\":");
    luar_buf_append_json_string(&f, l->addr, strlen(l->addr));
    luar_buf_appendf(&f, ",\"port\":%d,\"tls\":%s,\"pid\":%d,\"worker\":%d", port,
                     l->cert ? "true" : "false", (int)getpid(), worker_id);
    luar_log_write(LUAR_LOG_INFO, "listening", 9, f.data, f.len);
    luar_buf_free(&f);
}

int luar_app_serve(const luar_config_t *cfg, int worker_id)
{
    app_t *app = calloc(1, sizeof *app);
    luar_buf_t err;
    int status = 1;
    luar_buf_init(&err, 64 * 1024);
    if (app == NULL)
        return 1;
    app->cfg = cfg;
    app->worker_id = worker_id;
    uv_loop_init(&app->loop);
    signal(SIGPIPE, SIG_IGN);
    /* Past a file size limit (ulimit -f) a write fails with EFBIG, which the queue turns
     * into 503s and retries like a full disk (guarantee 6); SIGXFSZ would end the process. */
    signal(SIGXFSZ, SIG_IGN);
    luar_app_metrics_init();
    mkdir(cfg->data, 0700);
    app->started_ns = uv_hrtime();
    app->admin = luar_admin_new(cfg->admin_token);
    if (app->admin == NULL)
        goto fail;
    luar_audit_set_file(cfg->audit_file);

    if (luar_queue_open(&app->loop, cfg->queue, &app->queue, &err)) {
        char shown[512];
        luar_queue_url_redact(cfg->queue, shown, sizeof shown);
        fprintf(stderr, "luar: queue %s: %s\n", shown, err.data ? err.data : "cannot open");
        status = 1;
        goto fail;
    }
    luar_queue_set_cache_limits(app->queue, cfg->cache.max_bytes, cfg->cache.max_value);
    if (luar_trace_export_start(&app->loop, &cfg->tracing)) {
        fprintf(stderr, "luar: tracing: cannot export to %s\n", cfg->tracing.endpoint);
        status = 2;
        goto fail;
    }
    luar_jobs_set_host(app->queue, NULL, &cfg->jobs);
    /* Plugins before the first VM; their init may read the secret store (read again by
     * each reload, which reports a store that cannot be read). */
    luar_secrets_load(cfg->secrets_file, &cfg->secrets_key, &err);
    luar_buf_reset(&err);
    if (luar_plugins_load(cfg, &app->loop, &err)) {
        luar_plugins_log();
        luar_plugins_print_errors(stderr, err.data ? err.data : "plugins failed to load");
        status = 2;
        goto fail;
    }
    luar_plugins_log();
    if (luar_redis_module_setup(&app->loop, cfg->redis_url, cfg->queue, &err)) {
        fprintf(stderr, "luar: %s\n", err.data);
        status = 2;
        goto fail;
    }
    if (reload(app, &err)) {
        fprintf(stderr, "%s", err.data ? err.data : "scripts failed to load\n");
        status = 2;
        goto fail;
    }
    if (luar_http_server_new(&app->loop, &cfg->limits, on_request, app, &app->server))
        goto fail;
    for (size_t i = 0; i < cfg->nlisten; i++) {
        int rc = luar_http_server_listen(app->server, &cfg->listen[i], worker_id > 0);
        if (rc) {
            fprintf(stderr, "luar: cannot listen on %s: %s\n", cfg->listen[i].addr,
                    luar_strerror(rc));
            status = rc == LUAR_EIO ? 1 : 2;
            goto fail;
        }
    }
    /* Signals are caught from here on, before the first line that says the process is
     * up: a SIGTERM sent as soon as "listening" (or the lines after it) is seen is a
     * graceful stop, handled once the loop runs. A worker blocked SIGHUP from its first
     * instruction (main.c); one that came while it loaded is delivered now, to the
     * watcher, and reloads once the loop runs. */
    start_signal(app, &app->sigterm, SIGTERM);
    start_signal(app, &app->sigint, SIGINT);
    start_signal(app, &app->sighup, SIGHUP);
    start_signal(app, &app->sigusr1, SIGUSR1);
    app->signals = 1;
    sigset_t hup;
    sigemptyset(&hup);
    sigaddset(&hup, SIGHUP);
    sigprocmask(SIG_UNBLOCK, &hup, NULL);
    log_listening(&cfg->listen[0], luar_http_server_port(app->server), worker_id);
    if (start_jobs(app))
        goto fail;

    if (worker_id == 0) {
        char *path = luar_config_control_path(cfg);
        int rc = luar_control_open(&app->loop, path, reload_request, app, &app->control);
        if (rc)
            luar_logf(LUAR_LOG_WARN, "control socket %s unavailable (%s): `luar reload` will "
                      "not reach this instance", path, luar_strerror(rc));
        free(path);
        if (cfg->reload_watch &&
            luar_watch_open(&app->loop, cfg->scripts, cfg->reload_debounce, reload_request,
                            app, &app->watch))
            luar_logf(LUAR_LOG_WARN, "cannot watch %s for changes", cfg->scripts);
    }
    uv_timer_init(&app->loop, &app->grace);
    app->grace.data = app;
    uv_prepare_init(&app->loop, &app->prepare);
    app->prepare.data = app;
    uv_prepare_start(&app->prepare, on_prepare);
    uv_unref((uv_handle_t *)&app->prepare);

    uv_run(&app->loop, UV_RUN_DEFAULT);
    status = 0;
    /* Every VM has closed: the plugins' fini, then the handles they left close. */
    luar_plugins_unload();
    uv_run(&app->loop, UV_RUN_DEFAULT);
    luar_log_flush();
    if (uv_loop_close(&app->loop) != 0)
        luar_logf(LUAR_LOG_WARN, "loop closed with handles still open");
    luar_log_flush();
    luar_buf_free(&err);
    luar_admin_free(app->admin);
    luar_secrets_unload();
    luar_audit_set_file(NULL);
    free(app->retired);
    free(app);
    return status;

fail:
    luar_trace_export_stop();
    luar_plugin_hooks_stopping();
    luar_jobs_set_host(NULL, NULL, NULL);
    luar_redis_module_close();
    if (app->control)
        luar_control_close(app->control);
    if (app->server)
        luar_http_server_close(app->server, NULL, NULL);
    if (app->vm)
        luar_vm_retire(app->vm);
    if (app->queue)
        luar_queue_close(app->queue, NULL, NULL);
    if (app->signals) {
        uv_close((uv_handle_t *)&app->sigterm, NULL);
        uv_close((uv_handle_t *)&app->sigint, NULL);
        uv_close((uv_handle_t *)&app->sighup, NULL);
        uv_close((uv_handle_t *)&app->sigusr1, NULL);
    }
    uv_run(&app->loop, UV_RUN_DEFAULT);
    luar_plugins_unload();
    uv_run(&app->loop, UV_RUN_DEFAULT);
    uv_loop_close(&app->loop);
    luar_log_flush();
    luar_buf_free(&err);
    luar_admin_free(app->admin);
    luar_secrets_unload();
    luar_audit_set_file(NULL);
    free(app->retired);
    free(app);
    return status;
}
