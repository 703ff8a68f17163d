/*
 * Tasks: the coroutines the host runs, their resume queue and the CPU budget hook.
 * A task is resumed only from the loop (the VM's idle handle), never from inside another
 * resume, so completion callbacks and module code never re-enter Lua.
 */
#include "common/error.h"
#include "lua/coverage.h"
#include "lua/vm_internal.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int luar_task_hook_mask(void)
{
    return LUA_MASKCOUNT | (luar_coverage_on() ? LUA_MASKLINE : 0);
}

void luar_task_hook(lua_State *L, lua_Debug *ar)
{
    if (ar->event == LUA_HOOKLINE) {
        luar_coverage_line(L, ar);
        return;
    }
    luar_vm_t *vm = luar_vm_of(L);
    luar_task_t *t = vm->current;
    if (t == NULL)
        return;
    if (t->kill == TASK_KILL_NONE) {
        uint64_t now = uv_hrtime();
        if (t->deadline_ns != 0 && now >= t->deadline_ns) {
            /* A job's timeout, reached by code that never yields. */
            t->kill = TASK_KILL_BUDGET;
            snprintf(t->kill_msg, sizeof t->kill_msg, "%s", t->deadline_msg);
        } else if (now - t->resume_ns < vm->budget_ns) {
            return;
        } else {
            t->kill = TASK_KILL_BUDGET;
            snprintf(t->kill_msg, sizeof t->kill_msg,
                     "CPU budget exceeded (%g s without yielding)", vm->cpu_budget);
        }
    }
    /*
     * Raise again at every instruction of this thread until the coroutine is dead: a pcall
     * in the script catches one error, not the next one.
     */
    lua_sethook(L, luar_task_hook, LUA_MASKCOUNT, 1);
    lua_pushstring(L, t->kill_msg);
    lua_error(L);
}

static void idle_cb(uv_idle_t *idle)
{
    luar_task_run_queue(idle->data);
}

void luar_task_schedule(luar_task_t *t)
{
    luar_vm_t *vm = t->vm;
    if (t->qnext != NULL || vm->queue_tail == t)
        return;
    if (t->state == TASK_WAITING)
        t->state = TASK_QUEUED;
    if (vm->queue_tail != NULL)
        vm->queue_tail->qnext = t;
    else
        vm->queue_head = t;
    vm->queue_tail = t;
    if (!vm->idle_inited) {
        uv_idle_init(vm->loop, &vm->idle);
        vm->idle.data = vm;
        vm->idle_inited = 1;
    }
    if (!uv_is_active((uv_handle_t *)&vm->idle))
        uv_idle_start(&vm->idle, idle_cb);
}

static void unqueue(luar_task_t *t)
{
    luar_vm_t *vm = t->vm;
    luar_task_t *prev = NULL;
    for (luar_task_t *q = vm->queue_head; q != NULL; prev = q, q = q->qnext) {
        if (q != t)
            continue;
        if (prev != NULL)
            prev->qnext = t->qnext;
        else
            vm->queue_head = t->qnext;
        if (vm->queue_tail == t)
            vm->queue_tail = prev;
        t->qnext = NULL;
        return;
    }
}

static void task_free(luar_task_t *t)
{
    luar_vm_t *vm = t->vm;
    if (t->prev != NULL)
        t->prev->next = t->next;
    else
        vm->tasks = t->next;
    if (t->next != NULL)
        t->next->prev = t->prev;
    vm->ntasks--;
    if (t->co_ref != LUA_NOREF)
        luaL_unref(vm->L, LUA_REGISTRYINDEX, t->co_ref);
    free(t->error);
    free(t->traceback);
    free(t);
    luar_vm_task_ended(vm);
}

static void task_finish(luar_task_t *t, int status)
{
    t->state = TASK_DONE;
    if (t->error == NULL && status != 0)
        t->error = strdup("error");
    if (t->traceback == NULL && status != 0)
        t->traceback = strdup("");
    while (t->on_end != NULL) {
        luar_task_end_t *e = t->on_end;
        t->on_end = e->next;
        e->next = NULL;
        e->fn(e, t);
    }
    if (t->done != NULL)
        t->done(t, status, t->done_arg);
    task_free(t);
}

struct capture {
    luar_task_t *task;
    int status;
};

/* Moves the error object of the dead coroutine to L and renders message and traceback. */
static int capture_error(lua_State *L)
{
    struct capture *c = lua_touserdata(L, 1);
    luar_task_t *t = c->task;
    const char *msg;
    if (t->kill != TASK_KILL_NONE) {
        msg = t->kill_msg;
    } else {
        lua_xmove(t->co, L, 1);
        msg = luaL_tolstring(L, -1, NULL);
        if (c->status == LUA_ERRMEM)
            msg = lua_pushfstring(L, "%s (the VM's memory limit is %I bytes)", msg,
                                  (lua_Integer)t->vm->mem_limit);
    }
    t->error = strdup(msg);
    luaL_traceback(L, t->co, NULL, 0);
    t->traceback = strdup(lua_tostring(L, -1));
    return 0;
}

static void task_failed(luar_task_t *t, int status)
{
    struct capture c = {t, status};
    if (luar_vm_pcall(t->vm, capture_error, &c, NULL) != 0 || t->error == NULL) {
        free(t->error);
        t->error =
            strdup(t->kill != TASK_KILL_NONE ? t->kill_msg : "error (no message: out of memory)");
    }
    if (t->kill == TASK_KILL_EXIT) {
        t->nres = 0;
        task_finish(t, 0);
    } else {
        task_finish(t, t->kill == TASK_KILL_CANCEL ? LUAR_ECANCELED : LUAR_ELUA);
    }
}

static void task_resume(luar_task_t *t)
{
    luar_vm_t *vm = t->vm;
    int nargs = 0;
    if (t->state == TASK_NEW) {
        nargs = t->nargs;
    } else if (t->state == TASK_QUEUED) {
        if (luar_bridge_is_wait(t->co, 1))
            lua_pop(t->co, 1);
    } else {
        return;
    }
    t->state = TASK_RUNNING;
    vm->current = t;
    vm->chain_yieldable = 1;
    t->resume_ns = uv_hrtime();
    int nres = 0;
    int st = lua_resume(t->co, NULL, nargs, &nres);
    vm->current = NULL;
    if (st == LUA_YIELD) {
        if (t->kill == TASK_KILL_NONE && t->op != NULL && luar_bridge_is_wait(t->co, nres)) {
            t->state = TASK_WAITING;
            if (t->op->completed)
                luar_task_schedule(t);
            return;
        }
        luar_bridge_cancel(t);
        if (t->kill == TASK_KILL_NONE) {
            t->kill = TASK_KILL_ERROR;
            snprintf(t->kill_msg, sizeof t->kill_msg, "attempt to yield from outside a coroutine");
        }
        task_failed(t, LUA_ERRRUN);
        return;
    }
    if (st == LUA_OK) {
        t->nres = nres;
        task_finish(t, 0);
        return;
    }
    luar_bridge_cancel(t);
    task_failed(t, st);
}

void luar_task_run_queue(luar_vm_t *vm)
{
    size_t n = 0;
    for (luar_task_t *q = vm->queue_head; q != NULL; q = q->qnext)
        n++;
    /* Only what was queued before this pass, so a task that re-queues cannot starve I/O. */
    while (n-- > 0 && vm->queue_head != NULL && !vm->closing) {
        luar_task_t *t = vm->queue_head;
        vm->queue_head = t->qnext;
        if (vm->queue_head == NULL)
            vm->queue_tail = NULL;
        t->qnext = NULL;
        task_resume(t);
    }
    if (!vm->closing && vm->queue_head == NULL && vm->idle_inited)
        uv_idle_stop(&vm->idle);
}

struct spawn {
    luar_task_t *task;
    luar_task_setup_fn setup;
    void *arg;
};

static int spawn_protected(lua_State *L)
{
    struct spawn *s = lua_touserdata(L, 1);
    lua_settop(L, 0);
    lua_State *co = lua_newthread(L);
    lua_sethook(co, luar_task_hook, luar_task_hook_mask(), LUAR_TASK_HOOK_COUNT);
    int nargs = s->setup(L, s->arg);
    luaL_checkstack(co, nargs + 1, "too many arguments");
    lua_xmove(L, co, nargs + 1);
    s->task->co = co;
    s->task->nargs = nargs;
    s->task->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

int luar_task_spawn(luar_vm_t *vm, const luar_task_opts_t *opts, luar_task_setup_fn setup,
                    void *setup_arg, luar_task_done_fn done, void *done_arg, luar_task_t **out,
                    luar_buf_t *err)
{
    if (out != NULL)
        *out = NULL;
    if (vm->retired || vm->closing)
        return LUAR_ECLOSED;
    luar_task_t *t = calloc(1, sizeof *t);
    if (t == NULL)
        return LUAR_ENOMEM;
    static uint64_t serials;
    t->vm = vm;
    t->serial = ++serials;
    t->co_ref = LUA_NOREF;
    t->exit_status = -1;
    if (opts != NULL && opts->request_id != NULL)
        snprintf(t->request_id, sizeof t->request_id, "%s", opts->request_id);
    if (opts != NULL && opts->job_id != NULL)
        snprintf(t->job_id, sizeof t->job_id, "%s", opts->job_id);
    if (opts != NULL && opts->trace != NULL)
        t->trace = *opts->trace;
    struct spawn s = {t, setup, setup_arg};
    int rc = luar_vm_pcall(vm, spawn_protected, &s, err);
    if (rc != 0) {
        free(t);
        return rc;
    }
    t->done = done;
    t->done_arg = done_arg;
    t->state = TASK_NEW;
    t->next = vm->tasks;
    if (vm->tasks != NULL)
        vm->tasks->prev = t;
    vm->tasks = t;
    vm->ntasks++;
    luar_task_schedule(t);
    if (out != NULL)
        *out = t;
    return 0;
}

void luar_task_on_end(luar_task_t *t, luar_task_end_t *node)
{
    node->next = t->on_end;
    t->on_end = node;
}

void luar_task_on_end_remove(luar_task_t *t, luar_task_end_t *node)
{
    for (luar_task_end_t **pp = &t->on_end; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == node) {
            *pp = node->next;
            node->next = NULL;
            return;
        }
    }
}

void luar_task_cancel(luar_task_t *t, const char *reason)
{
    if (t->state == TASK_DONE || t->kill != TASK_KILL_NONE)
        return;
    t->kill = TASK_KILL_CANCEL;
    snprintf(t->kill_msg, sizeof t->kill_msg, "%s", reason);
    if (t->state == TASK_RUNNING) {
        /* Called from the task's own code: the hook stops it at its next instruction. */
        lua_sethook(t->co, luar_task_hook, LUA_MASKCOUNT, 1);
        return;
    }
    unqueue(t);
    luar_bridge_cancel(t);
    t->error = strdup(reason);
    t->traceback = strdup("");
    task_finish(t, LUAR_ECANCELED);
}

void luar_task_cancel_all(luar_vm_t *vm, const char *reason)
{
    luar_task_t *t = vm->tasks;
    while (t != NULL) {
        luar_task_t *next = t->next;
        luar_task_cancel(t, reason);
        t = next;
    }
}

int luar_task_exit(lua_State *L, int exit_status)
{
    luar_vm_t *vm = luar_vm_of(L);
    luar_task_t *t = vm->current;
    if (t == NULL || t->pseudo)
        return luaL_error(L, "exit outside a task");
    t->kill = TASK_KILL_EXIT;
    t->exit_status = exit_status;
    snprintf(t->kill_msg, sizeof t->kill_msg, "exit %d", exit_status);
    lua_sethook(L, luar_task_hook, LUA_MASKCOUNT, 1);
    lua_pushstring(L, t->kill_msg);
    return lua_error(L);
}

lua_State *luar_task_thread(const luar_task_t *t)
{
    return t->co;
}

luar_vm_t *luar_task_vm(const luar_task_t *t)
{
    return t->vm;
}

int luar_task_results(const luar_task_t *t)
{
    return t->nres;
}

const char *luar_task_error(const luar_task_t *t)
{
    return t->error != NULL ? t->error : "";
}

const char *luar_task_traceback(const luar_task_t *t)
{
    return t->traceback != NULL ? t->traceback : "";
}

const char *luar_task_request_id(const luar_task_t *t)
{
    return t->request_id;
}

const char *luar_task_job_id(const luar_task_t *t)
{
    return t->job_id;
}

const luar_trace_t *luar_task_trace(const luar_task_t *t)
{
    return &t->trace;
}

int luar_task_exit_status(const luar_task_t *t)
{
    return t->exit_status;
}

int luar_task_alive(luar_vm_t *vm, const luar_task_t *t, uint64_t serial)
{
    for (const luar_task_t *q = vm->tasks; q != NULL; q = q->next)
        if (q == t)
            return q->serial == serial && q->state != TASK_DONE;
    return 0;
}

uint64_t luar_task_serial(const luar_task_t *t)
{
    return t->serial;
}

luar_task_t *luar_task_current(lua_State *L)
{
    luar_task_t *t = luar_vm_of(L)->current;
    return (t != NULL && !t->pseudo) ? t : NULL;
}

void luar_task_set_deadline(luar_task_t *task, double seconds, const char *message)
{
    task->deadline_ns = uv_hrtime() + (uint64_t)(seconds * 1e9);
    snprintf(task->deadline_msg, sizeof task->deadline_msg, "%s", message);
}
