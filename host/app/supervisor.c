/*
 * The supervisor for `workers = N`: spawns N copies of this executable (fresh processes,
 * so no loop or Lua state is shared across fork), each binding the listeners with
 * SO_REUSEPORT. A worker that dies is restarted with exponential backoff (0.5 s doubling
 * to 30 s; reset once it has run 10 s). Reloads are validated here by loading the scripts
 * once, then forwarded as SIGHUP, so `luar reload` can report a broken script without any
 * worker dropping its good state. Each worker answers a SIGHUP with one line on its fd 3
 * ("reload 0", or "reload <code> <JSON errors>"); a reload request completes when every
 * worker that was running has answered (or died), so `luar reload` returning 0 means every
 * worker serves the new scripts. Requests arriving during a round wait for the next one,
 * since two SIGHUPs to one process may merge into one.
 * SIGTERM/SIGINT are forwarded; exits 0 once all are gone.
 *
 * Plugins: each worker loads and inits them itself (a fresh process). The supervisor loads
 * them too, since it runs the scripts to check them and a script may require
 * "luar.<name>"; it serves nothing with them. A configured plugin that is refused stops
 * the supervisor before any worker starts.
 */
#include "app/app.h"
#include "common/error.h"
#include "log/log.h"
#include "lua/vm.h"
#include "plugin/hooks.h"
#include "plugin/loader.h"
#include "secrets/secrets.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ROUND_TIMEOUT_MS 120000

typedef struct worker {
    struct supervisor *sup;
    int id;
    uv_process_t proc;
    uv_pipe_t *status;   /* read end of the worker's fd 3; freed in its close callback */
    char line[1024];     /* partial status line */
    size_t line_len;
    int ack_pending;     /* a SIGHUP of the current round awaits this worker's answer */
    int running;
    uint64_t started_ms;
    unsigned crashes; /* consecutive quick deaths, for the backoff */
    uv_timer_t restart;
} worker_t;

/* A reload request waiting for its round to end. */
typedef struct waiter {
    luar_reload_done_fn done;
    void *arg;
    struct waiter *next;
} waiter_t;

typedef struct supervisor {
    uv_loop_t loop;
    const luar_config_t *cfg;
    char exe[4096];
    char **argv; /* argv of the workers, NULL-terminated; [argc] and [argc+1] are ours */
    int argc;
    worker_t *workers;
    int nworkers;
    int stopping;
    uv_signal_t sigterm, sigint, sighup, sigusr1;
    uv_prepare_t prepare; /* flushes the log before the loop blocks */
    luar_control_t *control;
    luar_watch_t *watch;
    waiter_t *current, *next; /* requests of the running round, of the next one */
    int round_active;
    int round_waiting;        /* workers yet to answer */
    luar_buf_t round_errors;
    uv_timer_t round_timer;
} supervisor_t;

static void start_round(supervisor_t *sup);
static void end_round(supervisor_t *sup);

static void spawn(worker_t *w);

static void on_restart(uv_timer_t *t)
{
    worker_t *w = t->data;
    if (!w->sup->stopping)
        spawn(w);
}

static void proc_closed(uv_handle_t *h)
{
    (void)h;
}

static void noop_closed(uv_handle_t *h)
{
    (void)h;
}

static int running_workers(const supervisor_t *sup)
{
    int n = 0;
    for (int i = 0; i < sup->nworkers; i++)
        n += sup->workers[i].running;
    return n;
}

static void finish(supervisor_t *sup)
{
    if (sup->stopping == 2)
        return;
    sup->stopping = 2;
    if (sup->round_active)
        end_round(sup);
    uv_close((uv_handle_t *)&sup->round_timer, noop_closed);
    for (int i = 0; i < sup->nworkers; i++)
        uv_close((uv_handle_t *)&sup->workers[i].restart, noop_closed);
    uv_close((uv_handle_t *)&sup->sigterm, noop_closed);
    uv_close((uv_handle_t *)&sup->sigint, noop_closed);
    uv_close((uv_handle_t *)&sup->sighup, noop_closed);
    uv_close((uv_handle_t *)&sup->sigusr1, noop_closed);
    uv_close((uv_handle_t *)&sup->prepare, noop_closed);
    luar_plugin_hooks_stopping();
    luar_logf(LUAR_LOG_INFO, "supervisor: every worker has exited");
}

static void status_closed(uv_handle_t *h)
{
    free(h);
}

static void close_status(worker_t *w)
{
    if (w->status)
        uv_close((uv_handle_t *)w->status, status_closed);
    w->status = NULL;
}

/* Ends the current round: answers its requests, then starts the next round if asked. */
static void end_round(supervisor_t *sup)
{
    waiter_t *list = sup->current;
    int rc = sup->round_errors.len ? LUAR_ELUA : 0;
    sup->current = NULL;
    sup->round_active = 0;
    uv_timer_stop(&sup->round_timer);
    if (rc)
        luar_logf(LUAR_LOG_ERROR, "supervisor: reload failed in some workers: %s",
                  sup->round_errors.data);
    else
        luar_logf(LUAR_LOG_INFO, "supervisor: every worker reloaded");
    while (list) {
        waiter_t *w = list;
        list = w->next;
        if (w->done)
            w->done(w->arg, rc, rc ? sup->round_errors.data : NULL);
        free(w);
    }
    luar_buf_reset(&sup->round_errors);
    if (sup->next)
        start_round(sup);
}

static void worker_answered(worker_t *w, int rc, const char *err)
{
    supervisor_t *sup = w->sup;
    if (!w->ack_pending)
        return;
    w->ack_pending = 0;
    if (rc)
        luar_buf_appendf(&sup->round_errors, "worker %d: %s\n", w->id, err);
    if (--sup->round_waiting == 0)
        end_round(sup);
}

static void on_round_timeout(uv_timer_t *t)
{
    supervisor_t *sup = t->data;
    for (int i = 0; i < sup->nworkers; i++)
        worker_answered(&sup->workers[i], LUAR_ETIMEOUT, "did not answer the reload in time");
}

/* One line from a worker: "reload 0" or "reload <code> <JSON string>". */
static void status_line(worker_t *w, char *line)
{
    int rc = 0, used = 0;
    if (sscanf(line, "reload %d %n", &rc, &used) < 1)
        return;
    const char *err = line + used;
    /* The JSON string is shown as sent; it is one escaped line, safe to log and return. */
    worker_answered(w, rc, rc ? err : NULL);
}

static void status_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    worker_t *w = h->data;
    (void)suggested;
    buf->base = w->line + w->line_len;
    buf->len = sizeof w->line - w->line_len - 1;
}

static void on_status(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    worker_t *w = s->data;
    (void)buf;
    if (n < 0) {
        close_status(w);
        return;
    }
    w->line_len += (size_t)n;
    w->line[w->line_len] = '\0';
    char *nl;
    while ((nl = strchr(w->line, '\n'))) {
        *nl = '\0';
        status_line(w, w->line);
        size_t rest = w->line_len - (size_t)(nl + 1 - w->line);
        memmove(w->line, nl + 1, rest + 1);
        w->line_len = rest;
    }
    if (w->line_len == sizeof w->line - 1)
        w->line_len = 0; /* an over-long line is dropped */
}

static void on_exit_cb(uv_process_t *p, int64_t status, int term_signal)
{
    worker_t *w = p->data;
    supervisor_t *sup = w->sup;
    w->running = 0;
    uv_close((uv_handle_t *)p, proc_closed);
    close_status(w);
    if (w->ack_pending)
        worker_answered(w, LUAR_ECLOSED, "exited during the reload (a restart loads the "
                                         "current scripts)");
    if (sup->stopping) {
        luar_logf(LUAR_LOG_INFO, "supervisor: worker %d exited (status %d)", w->id, (int)status);
        if (running_workers(sup) == 0)
            finish(sup);
        return;
    }
    uint64_t ran = uv_now(&sup->loop) - w->started_ms;
    w->crashes = ran >= 10000 ? 1 : w->crashes + 1;
    double delay = 0.5;
    for (unsigned i = 1; i < w->crashes && delay < 30; i++)
        delay *= 2;
    if (delay > 30)
        delay = 30;
    luar_logf(LUAR_LOG_WARN, "supervisor: worker %d (pid %d) died (%s %d); restarting in %.1fs",
              w->id, p->pid, term_signal ? "signal" : "status",
              term_signal ? term_signal : (int)status, delay);
    uv_timer_start(&w->restart, on_restart, (uint64_t)(delay * 1000), 0);
}

static void spawn(worker_t *w)
{
    supervisor_t *sup = w->sup;
    char id[16];
    snprintf(id, sizeof id, "%d", w->id);
    sup->argv[sup->argc + 1] = id;
    uv_stdio_container_t stdio[4];
    for (int i = 0; i < 3; i++) {
        stdio[i].flags = UV_INHERIT_FD;
        stdio[i].data.fd = i;
    }
    w->status = malloc(sizeof *w->status);
    uv_pipe_init(&sup->loop, w->status, 0);
    w->status->data = w;
    w->line_len = 0;
    stdio[3].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[3].data.stream = (uv_stream_t *)w->status;
    uv_process_options_t opt;
    memset(&opt, 0, sizeof opt);
    opt.file = sup->exe;
    opt.args = sup->argv;
    opt.exit_cb = on_exit_cb;
    opt.stdio = stdio;
    opt.stdio_count = 4;
    w->proc.data = w;
    int rc = uv_spawn(&sup->loop, &w->proc, &opt);
    sup->argv[sup->argc + 1] = NULL;
    if (rc) {
        luar_logf(LUAR_LOG_ERROR, "supervisor: cannot start worker %d: %s", w->id,
                  uv_strerror(rc));
        uv_close((uv_handle_t *)&w->proc, proc_closed);
        close_status(w);
        w->crashes++;
        uv_timer_start(&w->restart, on_restart, 1000, 0);
        return;
    }
    w->running = 1;
    w->started_ms = uv_now(&sup->loop);
    uv_read_start((uv_stream_t *)w->status, status_alloc, on_status);
    luar_logf(LUAR_LOG_INFO, "supervisor: worker %d started (pid %d)", w->id, w->proc.pid);
}

static void signal_workers(supervisor_t *sup, int signum)
{
    for (int i = 0; i < sup->nworkers; i++)
        if (sup->workers[i].running)
            uv_process_kill(&sup->workers[i].proc, signum);
}

/* Sends SIGHUP to every running worker and waits for their answers. */
static void start_round(supervisor_t *sup)
{
    sup->current = sup->next;
    sup->next = NULL;
    sup->round_active = 1;
    sup->round_waiting = 0;
    for (int i = 0; i < sup->nworkers; i++) {
        worker_t *w = &sup->workers[i];
        if (w->running && uv_process_kill(&w->proc, SIGHUP) == 0) {
            w->ack_pending = 1;
            sup->round_waiting++;
        }
    }
    luar_logf(LUAR_LOG_INFO, "supervisor: reload sent to %d workers", sup->round_waiting);
    if (sup->round_waiting == 0)
        end_round(sup);
    else
        uv_timer_start(&sup->round_timer, on_round_timeout, ROUND_TIMEOUT_MS, 0);
}

/* Validates the scripts by loading them here, then asks the workers to reload. */
static void reload(void *ctx, luar_reload_done_fn done, void *arg)
{
    supervisor_t *sup = ctx;
    luar_vm_config_t vc;
    luar_vm_t *vm = NULL;
    luar_buf_t err;
    luar_buf_init(&err, 64 * 1024);
    luar_config_vm(sup->cfg, &sup->loop, &vc);
    int rc = sup->stopping ? LUAR_EBUSY : luar_vm_new(&vc, &vm, &err);
    if (rc) {
        luar_app_count_reload(0);
        if (sup->stopping)
            luar_buf_puts(&err, "shutting down");
        luar_logf(LUAR_LOG_ERROR, "supervisor: reload refused, the scripts failed to load: %s",
                  err.data ? err.data : "");
        if (done)
            done(arg, rc, err.data);
        luar_buf_free(&err);
        return;
    }
    luar_buf_free(&err);
    luar_vm_retire(vm);
    luar_app_count_reload(1);
    waiter_t *w = calloc(1, sizeof *w);
    if (w == NULL) {
        if (done)
            done(arg, LUAR_ENOMEM, NULL);
        return;
    }
    w->done = done;
    w->arg = arg;
    w->next = sup->next;
    sup->next = w;
    if (!sup->round_active)
        start_round(sup);
}

static void on_signal(uv_signal_t *s, int signum)
{
    supervisor_t *sup = s->data;
    if (signum == SIGTERM || signum == SIGINT) {
        if (sup->stopping)
            return;
        sup->stopping = 1;
        luar_logf(LUAR_LOG_INFO, "supervisor: %s, stopping %d workers",
                  signum == SIGTERM ? "SIGTERM" : "SIGINT", running_workers(sup));
        if (sup->control)
            luar_control_close(sup->control);
        sup->control = NULL;
        if (sup->watch)
            luar_watch_close(sup->watch);
        sup->watch = NULL;
        for (int i = 0; i < sup->nworkers; i++)
            uv_timer_stop(&sup->workers[i].restart);
        signal_workers(sup, SIGTERM);
        if (running_workers(sup) == 0)
            finish(sup);
    } else if (signum == SIGHUP) {
        reload(sup, NULL, NULL);
    } else if (signum == SIGUSR1) {
        luar_log_reopen();
        signal_workers(sup, SIGUSR1);
    }
}

static void on_prepare(uv_prepare_t *h)
{
    (void)h;
    luar_log_flush();
}

static void start_signal(supervisor_t *sup, uv_signal_t *s, int signum)
{
    uv_signal_init(&sup->loop, s);
    s->data = sup;
    uv_signal_start(s, on_signal, signum);
}

int luar_app_supervise(const luar_config_t *cfg, int argc, char **argv)
{
    supervisor_t *sup = calloc(1, sizeof *sup);
    if (sup == NULL)
        return 1;
    sup->cfg = cfg;
    uv_loop_init(&sup->loop);
    luar_app_metrics_init();
    mkdir(cfg->data, 0700);
    size_t len = sizeof sup->exe;
    if (uv_exepath(sup->exe, &len)) {
        fprintf(stderr, "luar: cannot find its own executable\n");
        free(sup);
        return 1;
    }
    sup->argc = argc;
    sup->argv = calloc((size_t)argc + 3, sizeof *sup->argv);
    for (int i = 0; i < argc; i++)
        sup->argv[i] = argv[i];
    sup->argv[argc] = "--worker-id";

    /* Refuse a broken script (or plugin) before starting anything, as a lone process
     * would. */
    luar_buf_t err;
    luar_buf_init(&err, 64 * 1024);
    luar_vm_config_t vc;
    luar_vm_t *vm = NULL;
    luar_config_vm(cfg, &sup->loop, &vc);
    luar_secrets_load(cfg->secrets_file, &cfg->secrets_key, &err);
    luar_buf_reset(&err);
    int prc = luar_plugins_load(cfg, &sup->loop, &err);
    if (prc == 0)
        luar_buf_reset(&err); /* else err holds the plugins' reasons */
    if (prc != 0 || luar_vm_new(&vc, &vm, &err)) {
        if (prc)
            luar_plugins_print_errors(stderr, err.data);
        else
            fprintf(stderr, "%s", err.data ? err.data : "scripts failed to load\n");
        luar_buf_free(&err);
        uv_run(&sup->loop, UV_RUN_DEFAULT);
        luar_plugins_unload();
        uv_run(&sup->loop, UV_RUN_DEFAULT);
        luar_secrets_unload();
        uv_loop_close(&sup->loop);
        free(sup->argv);
        free(sup);
        return 2;
    }
    luar_vm_retire(vm);
    luar_buf_free(&err);

    luar_buf_init(&sup->round_errors, 64 * 1024);
    uv_timer_init(&sup->loop, &sup->round_timer);
    sup->round_timer.data = sup;
    /* Caught before the first worker starts (and before the warnings below): a SIGTERM
     * sent on seeing a worker's "listening" is forwarded to the workers once the loop
     * runs, never the default action (which would leave them without their supervisor). */
    start_signal(sup, &sup->sigterm, SIGTERM);
    start_signal(sup, &sup->sigint, SIGINT);
    start_signal(sup, &sup->sighup, SIGHUP);
    start_signal(sup, &sup->sigusr1, SIGUSR1);
    sup->nworkers = cfg->workers;
    sup->workers = calloc((size_t)sup->nworkers, sizeof *sup->workers);
    for (int i = 0; i < sup->nworkers; i++) {
        worker_t *w = &sup->workers[i];
        w->sup = sup;
        w->id = i + 1;
        uv_timer_init(&sup->loop, &w->restart);
        w->restart.data = w;
        spawn(w);
    }
    char *path = luar_config_control_path(cfg);
    int rc = luar_control_open(&sup->loop, path, reload, sup, &sup->control);
    if (rc)
        luar_logf(LUAR_LOG_WARN, "control socket %s unavailable (%s)", path, luar_strerror(rc));
    free(path);
    if (cfg->reload_watch &&
        luar_watch_open(&sup->loop, cfg->scripts, cfg->reload_debounce, reload, sup, &sup->watch))
        luar_logf(LUAR_LOG_WARN, "cannot watch %s for changes", cfg->scripts);
    uv_prepare_init(&sup->loop, &sup->prepare);
    uv_prepare_start(&sup->prepare, on_prepare);
    uv_unref((uv_handle_t *)&sup->prepare);
    uv_run(&sup->loop, UV_RUN_DEFAULT);
    luar_plugins_unload();
    uv_run(&sup->loop, UV_RUN_DEFAULT);
    luar_secrets_unload();
    uv_loop_close(&sup->loop);
    luar_log_flush();
    luar_buf_free(&sup->round_errors);
    free(sup->workers);
    free(sup->argv);
    free(sup);
    return 0;
}
