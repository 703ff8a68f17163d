/*
 * A task: one coroutine run by the host (a request handler, a `luar run` script, a job, a
 * timer callback) with a completion callback, a context (request id, job id) and a CPU
 * budget. A task that runs longer than the budget without yielding is stopped by a count
 * hook whose error a pcall in the script cannot swallow. Loop thread only.
 */
#ifndef LUAR_TASK_H
#define LUAR_TASK_H

#include "lua/vm.h"

#include "trace/trace.h"

#include <lua.h>

typedef struct luar_task luar_task_t;

/*
 * Called once when the task ends. `status` is 0 when the function returned (its results
 * are on luar_task_thread(task), see luar_task_results), LUAR_ELUA when it raised, ran over
 * its CPU budget or the memory cap (luar_task_error / luar_task_traceback say why), or
 * LUAR_ECANCELED when it was cancelled. The callback may call luar_vm_pcall; the task is
 * freed after it returns.
 */
typedef void (*luar_task_done_fn)(luar_task_t *task, int status, void *arg);

/*
 * Pushes the task's function and its arguments onto `L` (the VM's main thread, in
 * protected mode, so it may raise) and returns the number of arguments.
 */
typedef int (*luar_task_setup_fn)(lua_State *L, void *arg);

typedef struct luar_task_opts {
    const char *request_id;     /* copied; NULL: none */
    const char *job_id;         /* copied; NULL: none */
    const luar_trace_t *trace;  /* the task's span, copied; NULL: none */
} luar_task_opts_t;

/*
 * Creates a task in `vm`: runs `setup` protected, then schedules the first resume on the
 * next loop iteration (never inside this call). Returns 0 and sets `*out` when not NULL
 * (valid until `done` returns); LUAR_ECLOSED when the VM is retired; LUAR_ELUA when setup
 * raised (the message is appended to `err` when not NULL); LUAR_ENOMEM. On failure `done`
 * is never called.
 */
int luar_task_spawn(luar_vm_t *vm, const luar_task_opts_t *opts, luar_task_setup_fn setup,
                    void *setup_arg, luar_task_done_fn done, void *done_arg, luar_task_t **out,
                    luar_buf_t *err);

/*
 * Cancels a task: when it waits, its pending operation is cancelled and the coroutine is
 * never resumed; `done` is called at once with LUAR_ECANCELED and `reason` (copied). When
 * it is running (called from its own Lua code) it is stopped at the next hook check.
 */
void luar_task_cancel(luar_task_t *task, const char *reason);

/*
 * Gives the task a deadline `seconds` from now (a job's timeout): code that is still
 * running then without yielding is stopped by the count hook with `message` as its error,
 * the same end as a CPU budget overrun. A task waiting at the deadline is cancelled by its
 * owner's timer (luar_task_cancel), not by this.
 */
void luar_task_set_deadline(luar_task_t *task, double seconds, const char *message);

/*
 * A callback run once when a task ends, however it ends (returned, raised, over its budget,
 * cancelled while it waits, its VM closed), just before the task's `done`: for C state
 * that must not outlive the task's work, such as luar.cache's single-flight, whose
 * waiters would otherwise wait for a result nobody computes any more. `fn` must not run
 * Lua code (it may complete bridge ops). The caller owns the node and keeps it alive
 * until `fn` has run or luar_task_on_end_remove() took it back.
 */
typedef struct luar_task_end {
    struct luar_task_end *next; /* the task's */
    void (*fn)(struct luar_task_end *node, luar_task_t *task);
} luar_task_end_t;

/* Registers `node` on `task` (which must not have ended). */
void luar_task_on_end(luar_task_t *task, luar_task_end_t *node);

/* Takes `node` back before the task ends; no-op when it is not registered. */
void luar_task_on_end_remove(luar_task_t *task, luar_task_end_t *node);

/* The task's coroutine. */
lua_State *luar_task_thread(const luar_task_t *task);

/* The VM of the task. */
luar_vm_t *luar_task_vm(const luar_task_t *task);

/* In `done` with status 0: the number of results, at the top of luar_task_thread(task). */
int luar_task_results(const luar_task_t *task);

/* In `done` with a nonzero status: the error message / traceback (never NULL). */
const char *luar_task_error(const luar_task_t *task);
const char *luar_task_traceback(const luar_task_t *task);

/* The request id / job id of the task ("" when none). */
const char *luar_task_request_id(const luar_task_t *task);
const char *luar_task_job_id(const luar_task_t *task);

/* The task's span (trace_id "" when it has none). */
const luar_trace_t *luar_task_trace(const luar_task_t *task);

/* The task whose code runs now in the VM of `L` (from a Lua-facing function); NULL outside. */
luar_task_t *luar_task_current(lua_State *L);

/*
 * Stops the running task as if it had ended with status `exit_status` (`luar test`'s exit
 * hook). Raises an error that unwinds the coroutine; pcalls in the script cannot stop it.
 * Only for the host's own runners, never exposed to scripts.
 */
int luar_task_exit(lua_State *L, int exit_status);

/* In `done`: the status given to luar_task_exit, or -1 when it was not called. */
int luar_task_exit_status(const luar_task_t *task);

#endif
