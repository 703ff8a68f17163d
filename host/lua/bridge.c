/*
 * The coroutine bridge (see bridge.h) and the bridge-aware coroutine library.
 *
 * A bridge wait yields a private sentinel (the address of `wait_sentinel`, which scripts
 * cannot forge). When the waiting coroutine is a user coroutine, the coroutine.resume or
 * wrap call that resumed it sees the sentinel and yields it in turn, up to the task's own
 * coroutine, which the host resumes once the operation completes; each level's
 * continuation then resumes the level below. While it waits, the sentinel stays on the
 * yielded coroutine's stack, which marks it busy: nobody else may resume or close it.
 */
#include "common/error.h"
#include "lua/vm_internal.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

static const char wait_sentinel;

#define WAIT_PROPAGATE (-2)

int luar_bridge_is_wait(lua_State *co, int nres)
{
    return nres >= 1 && lua_type(co, -1) == LUA_TLIGHTUSERDATA &&
           lua_touserdata(co, -1) == (void *)&wait_sentinel;
}

static int is_busy(lua_State *co)
{
    return lua_status(co) == LUA_YIELD && lua_gettop(co) > 0 && luar_bridge_is_wait(co, 1);
}

luar_bridge_op_t *luar_bridge_op_new(lua_State *L, const char *what, size_t data_size)
{
    luar_vm_t *vm = luar_vm_of(L);
    luar_task_t *t = vm->current;
    if (t == NULL || t->pseudo || !vm->chain_yieldable || !lua_isyieldable(L)) {
        luaL_error(L,
                   "cannot wait here: %s must be called from a request handler, job or luar "
                   "run script",
                   what);
        return NULL;
    }
    if (t->kill != TASK_KILL_NONE) {
        lua_pushstring(L, t->kill_msg);
        lua_error(L);
    }
    if (t->op != NULL) {
        luaL_error(L, "%s: the task already waits for %s", what, t->op->what);
        return NULL;
    }
    luar_bridge_op_t *op = calloc(1, sizeof *op + data_size);
    if (op == NULL) {
        luaL_error(L, "%s: not enough memory", what);
        return NULL;
    }
    op->task = t;
    op->L = L;
    op->what = what;
    t->op = op;
    return op;
}

void *luar_bridge_op_data(luar_bridge_op_t *op)
{
    return op->data;
}

void luar_bridge_op_set_cleanup(luar_bridge_op_t *op, luar_bridge_cleanup_fn cleanup)
{
    op->cleanup = cleanup;
}

void luar_bridge_op_free(luar_bridge_op_t *op)
{
    if (op == NULL)
        return;
    if (op->task != NULL && op->task->op == op)
        op->task->op = NULL;
    free(op);
}

uv_loop_t *luar_bridge_loop(lua_State *L)
{
    return luar_vm_of(L)->loop;
}

static void op_release(luar_bridge_op_t *op, int canceled)
{
    if (op->task != NULL && op->task->op == op)
        op->task->op = NULL;
    op->task = NULL;
    if (op->cleanup != NULL)
        op->cleanup(op, canceled);
    else
        luar_bridge_op_free(op);
}

void luar_bridge_cancel(luar_task_t *task)
{
    if (task->op != NULL)
        op_release(task->op, 1);
}

void luar_bridge_complete(luar_bridge_op_t *op)
{
    if (op == NULL || op->completed || op->task == NULL)
        return;
    op->completed = 1;
    /* Still running (completed before it yielded): task_resume queues it after the yield. */
    if (op->task->state == TASK_WAITING)
        luar_task_schedule(op->task);
}

static int push_protected(lua_State *L)
{
    luar_bridge_op_t *op = lua_touserdata(L, 1);
    lua_settop(L, 0);
    return op->push(L, op);
}

/* Continuation: runs in the waiting coroutine once the op completed. */
static int bridge_continue(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    luar_bridge_op_t *op = (luar_bridge_op_t *)ctx;
    int base = lua_gettop(L);
    if (op->task != NULL && op->task->op == op)
        op->task->op = NULL;
    op->task = NULL;
    /* push may raise (memory): run it protected so the op is released either way. */
    lua_pushcfunction(L, push_protected);
    lua_pushlightuserdata(L, op);
    int rc = lua_pcall(L, 1, LUA_MULTRET, 0);
    op_release(op, 0);
    if (rc != LUA_OK)
        return lua_error(L);
    return lua_gettop(L) - base;
}

int luar_bridge_yield(lua_State *L, luar_bridge_op_t *op, luar_bridge_push_fn push)
{
    op->push = push;
    op->yielded = 1;
    lua_pushlightuserdata(L, (void *)&wait_sentinel);
    return lua_yieldk(L, 1, (lua_KContext)op, bridge_continue);
}

/* ---- the coroutine library, bridge-aware ---- */

static lua_State *check_co(lua_State *L, int idx)
{
    lua_State *co = lua_tothread(L, idx);
    luaL_argexpected(L, co != NULL, idx, "coroutine");
    return co;
}

/*
 * Resumes `co` with the `narg` values at the top of L. Returns the number of results moved
 * to L, -1 with the error object on L, or WAIT_PROPAGATE when `co` waits in the bridge.
 */
static int aux_resume(lua_State *L, lua_State *co, int narg)
{
    luar_vm_t *vm = luar_vm_of(L);
    if (is_busy(co)) {
        lua_pop(L, narg);
        lua_pushliteral(L, "cannot resume non-suspended coroutine");
        return -1;
    }
    if (!lua_checkstack(co, narg)) {
        lua_pop(L, narg);
        lua_pushliteral(L, "too many arguments to resume");
        return -1;
    }
    lua_xmove(L, co, narg);
    int saved = vm->chain_yieldable;
    vm->chain_yieldable = saved && lua_isyieldable(L);
    int nres = 0;
    int st = lua_resume(co, L, narg, &nres);
    vm->chain_yieldable = saved;
    if (st == LUA_YIELD && luar_bridge_is_wait(co, nres))
        return WAIT_PROPAGATE;
    if (st == LUA_OK || st == LUA_YIELD) {
        if (!lua_checkstack(L, nres + 1)) {
            lua_pop(co, nres);
            lua_pushliteral(L, "too many results to resume");
            return -1;
        }
        lua_xmove(co, L, nres);
        return nres;
    }
    lua_xmove(co, L, 1);
    return -1;
}

static int resume_continue(lua_State *L, int status, lua_KContext ctx);

/* Turns aux_resume's outcome into the results of coroutine.resume (wrap == 0) or a wrap. */
static int resume_finish(lua_State *L, int r, int wrap)
{
    if (r == WAIT_PROPAGATE) {
        if (!lua_isyieldable(L))
            return luaL_error(L, "cannot wait here: a coroutine waits for I/O inside code "
                                 "that cannot yield");
        lua_pushlightuserdata(L, (void *)&wait_sentinel);
        return lua_yieldk(L, 1, (lua_KContext)wrap, resume_continue);
    }
    if (r < 0) {
        if (wrap) {
            if (lua_type(L, -1) == LUA_TSTRING) {
                luaL_where(L, 1);
                lua_insert(L, -2);
                lua_concat(L, 2);
            }
            return lua_error(L);
        }
        lua_pushboolean(L, 0);
        lua_insert(L, -2);
        return 2;
    }
    if (wrap)
        return r;
    lua_pushboolean(L, 1);
    lua_insert(L, -(r + 1));
    return r + 1;
}

static int resume_continue(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    int wrap = (int)ctx;
    lua_State *co = wrap ? lua_tothread(L, lua_upvalueindex(1)) : lua_tothread(L, 1);
    if (is_busy(co))
        lua_pop(co, 1);
    return resume_finish(L, aux_resume(L, co, 0), wrap);
}

/* coroutine.resume(co, ...) → true, ... | false, err. [-n, +r] */
static int co_resume(lua_State *L)
{
    lua_State *co = check_co(L, 1);
    return resume_finish(L, aux_resume(L, co, lua_gettop(L) - 1), 0);
}

/* The function coroutine.wrap returns. [-n, +r] */
static int co_wrap_call(lua_State *L)
{
    lua_State *co = lua_tothread(L, lua_upvalueindex(1));
    return resume_finish(L, aux_resume(L, co, lua_gettop(L)), 1);
}

/* coroutine.wrap(f) → function. [-1, +1] */
static int co_wrap(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_State *co = lua_newthread(L);
    lua_pushvalue(L, 1);
    lua_xmove(L, co, 1);
    lua_pushcclosure(L, co_wrap_call, 1);
    return 1;
}

static int is_task_root(lua_State *L, lua_State *co)
{
    luar_task_t *t = luar_task_current(L);
    return t != NULL && t->co == co;
}

/* coroutine.isyieldable([co]) → false at the top of a task, as at a main chunk. [-0, +1] */
static int co_isyieldable(lua_State *L)
{
    lua_State *co = lua_isnone(L, 1) ? L : check_co(L, 1);
    lua_pushboolean(L, !is_task_root(L, co) && lua_isyieldable(co));
    return 1;
}

/* coroutine.running() → co, ismain (true for the task's own coroutine). [-0, +2] */
static int co_running(lua_State *L)
{
    int ismain = lua_pushthread(L);
    lua_pushboolean(L, ismain || is_task_root(L, L));
    return 2;
}

static const char *co_status_name(lua_State *L, lua_State *co)
{
    if (L == co)
        return "running";
    if (is_busy(co))
        return "normal";
    switch (lua_status(co)) {
    case LUA_YIELD:
        return "suspended";
    case LUA_OK: {
        lua_Debug ar;
        if (lua_getstack(co, 0, &ar))
            return "normal";
        return lua_gettop(co) == 0 ? "dead" : "suspended";
    }
    default:
        return "dead";
    }
}

/* coroutine.status(co): "normal" while co waits in the bridge. [-0, +1] */
static int co_status(lua_State *L)
{
    lua_pushstring(L, co_status_name(L, check_co(L, 1)));
    return 1;
}

/* coroutine.close(co): refuses a coroutine that waits in the bridge. [-1, +r] */
static int co_close(lua_State *L)
{
    lua_State *co = check_co(L, 1);
    if (is_busy(co) || is_task_root(L, co))
        return luaL_error(L, "cannot close a %s coroutine", co_status_name(L, co));
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

void luar_bridge_open_coroutine(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"resume", co_resume},   {"wrap", co_wrap},     {"isyieldable", co_isyieldable},
        {"running", co_running}, {"status", co_status}, {NULL, NULL},
    };
    luaL_setfuncs(L, funcs, 0);
    lua_getfield(L, -1, "close");
    lua_pushcclosure(L, co_close, 1);
    lua_setfield(L, -2, "close");
}
