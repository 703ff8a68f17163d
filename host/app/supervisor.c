/*
 * The supervisor for `workers = N`: spawns N copies of this executable (fresh processes,
 * so no loop or Lua state is shared across fork), each binding the listeners with
 * SO_REUSEPORT. A worker that dies is restarted with exponential backoff (0.5 s doubling
 * to 30 s; reset once it has run 10 s). Reloads are validated here by loading the scripts
 * once, then forwarded as SIGHUP, so `luar reload` can report a broken script without any
 * worker dropping its good state. SIGTERM/SIGINT are forwarded; exits 0 once all are gone.
 */
#include "app/app.h"
#include "common/error.h"
#include "log/log.h"
#include "lua/vm.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct worker {
    struct supervisor *sup;
    int id;
    uv_process_t proc;
    int running;
    uint64_t started_ms;
    unsigned crashes; /* consecutive quick deaths, for the backoff */
    uv_timer_t restart;
} worker_t;

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
} supervisor_t;

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
    for (int i = 0; i < sup->nworkers; i++)
        uv_close((uv_handle_t *)&sup->workers[i].restart, noop_closed);
    uv_close((uv_handle_t *)&sup->sigterm, noop_closed);
    uv_close((uv_handle_t *)&sup->sigint, noop_closed);
    uv_close((uv_handle_t *)&sup->sighup, noop_closed);
    uv_close((uv_handle_t *)&sup->sigusr1, noop_closed);
    uv_close((uv_handle_t *)&sup->prepare, noop_closed);
    luar_logf(LUAR_LOG_INFO, "supervisor: every worker has exited");
}

static void on_exit_cb(uv_process_t *p, int64_t status, int term_signal)
{
    worker_t *w = p->data;
    supervisor_t *sup = w->sup;
    w->running = 0;
    uv_close((uv_handle_t *)p, proc_closed);
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
    uv_stdio_container_t stdio[3];
    for (int i = 0; i < 3; i++) {
        stdio[i].flags = UV_INHERIT_FD;
        stdio[i].data.fd = i;
    }
    uv_process_options_t opt;
    memset(&opt, 0, sizeof opt);
    opt.file = sup->exe;
    opt.args = sup->argv;
    opt.exit_cb = on_exit_cb;
    opt.stdio = stdio;
    opt.stdio_count = 3;
    w->proc.data = w;
    int rc = uv_spawn(&sup->loop, &w->proc, &opt);
    sup->argv[sup->argc + 1] = NULL;
    if (rc) {
        luar_logf(LUAR_LOG_ERROR, "supervisor: cannot start worker %d: %s", w->id,
                  uv_strerror(rc));
        uv_close((uv_handle_t *)&w->proc, proc_closed);
        w->crashes++;
        uv_timer_start(&w->restart, on_restart, 1000, 0);
        return;
    }
    w->running = 1;
    w->started_ms = uv_now(&sup->loop);
    luar_logf(LUAR_LOG_INFO, "supervisor: worker %d started (pid %d)", w->id, w->proc.pid);
}

static void signal_workers(supervisor_t *sup, int signum)
{
    for (int i = 0; i < sup->nworkers; i++)
        if (sup->workers[i].running)
            uv_process_kill(&sup->workers[i].proc, signum);
}

/* Validates the scripts by loading them here, then tells the workers to reload. */
static int reload(void *ctx, luar_buf_t *err)
{
    supervisor_t *sup = ctx;
    luar_vm_config_t vc;
    luar_vm_t *vm = NULL;
    memset(&vc, 0, sizeof vc);
    vc.loop = &sup->loop;
    vc.scripts_dir = sup->cfg->scripts;
    vc.mem_limit = sup->cfg->lua_memory;
    vc.cpu_budget = sup->cfg->cpu_budget;
    int rc = luar_vm_new(&vc, &vm, err);
    if (rc) {
        luar_app_count_reload(0);
        luar_logf(LUAR_LOG_ERROR, "supervisor: reload refused, the scripts failed to load: %s",
                  err->data ? err->data : "");
        return rc;
    }
    luar_vm_retire(vm);
    luar_app_count_reload(1);
    signal_workers(sup, SIGHUP);
    luar_logf(LUAR_LOG_INFO, "supervisor: scripts load; reload sent to %d workers",
              running_workers(sup));
    return 0;
}

static void on_signal(uv_signal_t *s, int signum)
{
    supervisor_t *sup = s->data;
    luar_buf_t err;
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
        luar_buf_init(&err, 64 * 1024);
        reload(sup, &err);
        luar_buf_free(&err);
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

    /* Refuse a broken script before starting anything, as a lone process would. */
    luar_buf_t err;
    luar_buf_init(&err, 64 * 1024);
    luar_vm_config_t vc;
    luar_vm_t *vm = NULL;
    memset(&vc, 0, sizeof vc);
    vc.loop = &sup->loop;
    vc.scripts_dir = cfg->scripts;
    vc.mem_limit = cfg->lua_memory;
    vc.cpu_budget = cfg->cpu_budget;
    if (luar_vm_new(&vc, &vm, &err)) {
        fprintf(stderr, "%s", err.data ? err.data : "scripts failed to load\n");
        luar_buf_free(&err);
        uv_run(&sup->loop, UV_RUN_DEFAULT);
        uv_loop_close(&sup->loop);
        free(sup->argv);
        free(sup);
        return 2;
    }
    luar_vm_retire(vm);
    luar_buf_free(&err);

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
    start_signal(sup, &sup->sigterm, SIGTERM);
    start_signal(sup, &sup->sigint, SIGINT);
    start_signal(sup, &sup->sighup, SIGHUP);
    start_signal(sup, &sup->sigusr1, SIGUSR1);
    uv_prepare_init(&sup->loop, &sup->prepare);
    uv_prepare_start(&sup->prepare, on_prepare);
    uv_unref((uv_handle_t *)&sup->prepare);
    uv_run(&sup->loop, UV_RUN_DEFAULT);
    uv_loop_close(&sup->loop);
    luar_log_flush();
    free(sup->workers);
    free(sup->argv);
    free(sup);
    return 0;
}
