/*
 * The insides of a VM, shared by the files of host/lua/ only (vm.c, task.c, bridge.c and
 * the modules). Nothing outside host/lua/ includes this header.
 */
#ifndef LUAR_VM_INTERNAL_H
#define LUAR_VM_INTERNAL_H

#include "common/buf.h"
#include "lua/bridge.h"
#include "lua/task.h"
#include "lua/vm.h"

#include <lua.h>
#include <stdint.h>
#include <uv.h>

/* Instructions between two checks of the CPU budget. */
#define LUAR_TASK_HOOK_COUNT 10000

enum task_state {
    TASK_NEW,     /* created, first resume queued */
    TASK_RUNNING, /* inside lua_resume */
    TASK_WAITING, /* yielded on a bridge op */
    TASK_QUEUED,  /* op completed, resume queued */
    TASK_DONE,
};

enum task_kill {
    TASK_KILL_NONE,
    TASK_KILL_BUDGET, /* ran over its CPU budget */
    TASK_KILL_CANCEL, /* luar_task_cancel while running */
    TASK_KILL_EXIT,   /* luar_task_exit */
    TASK_KILL_ERROR,  /* ended by the host with the error in kill_msg */
};

/* A bridge operation: what a waiting coroutine waits for. Owned by its task. */
struct luar_bridge_op {
    luar_task_t *task; /* NULL once detached (completed and pushed, or cancelled) */
    lua_State *L;      /* the coroutine that yielded */
    const char *what;  /* "time.sleep", for messages */
    luar_bridge_push_fn push;
    luar_bridge_cleanup_fn cleanup;
    int completed;
    int yielded;
    max_align_t data[];
};

/* A task; see task.h. */
struct luar_task {
    luar_vm_t *vm;
    lua_State *co;
    int co_ref;
    int state;
    int kill;
    int pseudo;      /* the VM's host pseudo-task: budget only, no coroutine */
    int exit_status; /* luar_task_exit, or -1 */
    int nargs;       /* arguments waiting for the first resume */
    int nres;        /* results at the end */
    char kill_msg[160];
    uint64_t resume_ns;
    uint64_t deadline_ns;   /* luar_task_set_deadline; 0: none */
    char deadline_msg[96];
    luar_bridge_op_t *op;
    luar_task_done_fn done;
    void *done_arg;
    char *error;
    char *traceback;
    char request_id[65];
    char job_id[65];
    luar_trace_t trace;
    uint64_t serial;          /* unique in the process: tells a task from a later one at
                                 the same address (luar_task_alive) */
    luar_task_t *prev, *next; /* the VM's live tasks */
    luar_task_t *qnext;       /* the VM's resume queue */
    luar_task_end_t *on_end;  /* luar_task_on_end */
};

struct http_router; /* mod_http.c */

struct luar_vm {
    lua_State *L;
    uv_loop_t *loop;
    char *scripts_dir;
    char *main_file;
    size_t mem_limit;
    size_t mem_used;
    double cpu_budget;
    uint64_t budget_ns;
    unsigned generation;
    int loading; /* the entry file runs now (http.route allowed) */
    int retired;
    int closing;
    int chain_yieldable; /* every coroutine between the running one and the task can yield */
    size_t ntasks;
    size_t holds; /* luar_vm_hold: C work that continues with the VM's routes */
    luar_task_t *tasks;
    luar_task_t *queue_head, *queue_tail;
    luar_task_t *current; /* the task whose code runs, or &host_task, or NULL */
    luar_task_t host_task;
    uv_idle_t idle;
    int idle_inited;
    int scripting; /* a `luar run` / `luar test` task may declare routes */
    struct http_router *router;
    struct luar_jobs_registry *jobs; /* jobs.define, events.subscribe, schedules (host/jobs) */
    void (*close_cb)(void *arg);
    void *close_arg;
};

/* The VM owning `L` (any of its threads). */
luar_vm_t *luar_vm_of(lua_State *L);

/*
 * Runs `fn` in protected mode on the VM's main thread with `ud` as its only argument (a
 * light userdata), under the CPU budget. Returns 0, or LUAR_ELUA with the message appended
 * to `err` (when not NULL).
 */
int luar_vm_pcall(luar_vm_t *vm, lua_CFunction fn, void *ud, luar_buf_t *err);

/*
 * task.c: the hook that enforces the CPU budget (and counts lines for `luar test
 * --coverage`); installed on every thread with the mask luar_task_hook_mask() gives.
 */
void luar_task_hook(lua_State *L, lua_Debug *ar);
int luar_task_hook_mask(void);

/* task.c: resumes queued tasks (the VM's idle callback). */
void luar_task_run_queue(luar_vm_t *vm);

/* task.c: queues `task` for resumption on the next loop iteration. */
void luar_task_schedule(luar_task_t *task);

/*
 * task.c: nonzero while the task `t` with `serial` (luar_task_serial) has not ended. `t`
 * may point to freed memory; it is only compared, never read, unless it is live.
 */
int luar_task_alive(luar_vm_t *vm, const luar_task_t *t, uint64_t serial);

/* task.c: the serial of a live task. */
uint64_t luar_task_serial(const luar_task_t *t);

/* task.c: cancels every task of the VM (host shutdown). */
void luar_task_cancel_all(luar_vm_t *vm, const char *reason);

/* vm.c: a task ended; closes the VM when it is retired and this was its last task. */
void luar_vm_task_ended(luar_vm_t *vm);

/* bridge.c: the yield sentinel check, used by task.c after lua_resume. */
int luar_bridge_is_wait(lua_State *co, int nres);

/* bridge.c: cancels the pending op of `task` (cleanup(op, 1)); no-op when none. */
void luar_bridge_cancel(luar_task_t *task);

/* vm.c: counts luar_lua_errors_total{where}. */
void luar_vm_count_error(const char *where);

/* mod_http.c: frees the routes of the VM (at close). */
void luar_http_router_free(luar_vm_t *vm);

struct luar_webhook_route;
struct luar_route_guard;

/*
 * mod_http.c, for webhooks.route: raises when POST `pattern` cannot be added (bad pattern,
 * already defined), having allocated nothing. [-0, +0]
 */
void luar_http_route_check(lua_State *L, const char *method, const char *pattern);

/*
 * mod_http.c: adds POST `pattern` answered by the webhook route `webhook` behind `guard`
 * (route_guard.h; NULL for none), which the router owns from then on (freed with the VM).
 * Call luar_http_route_check first: then this raises only when out of memory (having
 * freed both). [-0, +0]
 */
void luar_http_route_webhook(lua_State *L, const char *pattern,
                             struct luar_webhook_route *webhook, struct luar_route_guard *guard);

/* mod_http.c: the webhook route declared for `pattern` in `vm`, or NULL. */
struct luar_webhook_route *luar_http_webhook_find(luar_vm_t *vm, const char *pattern);

/*
 * mod_http.c: the done callback of a request handler's task (`arg` is the request): turns
 * the handler's return value into the response, or answers 500 / 503. Sync webhook
 * handlers end the same way.
 */
void luar_http_task_done(luar_task_t *task, int status, void *arg);

#endif
