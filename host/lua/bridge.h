/*
 * The coroutine bridge: the one way a Lua call waits (STYLE "One way to wait"). A module's
 * Lua-facing function that waits follows five steps:
 *
 *   static int time_sleep(lua_State *L)
 *   {
 *       double s = luaL_checknumber(L, 1);                        (1) check the arguments
 *       luar_bridge_op_t *op =
 *           luar_bridge_op_new(L, "time.sleep", sizeof(struct sleep)); (2) refuse / (3) record
 *       struct sleep *sl = luar_bridge_op_data(op);
 *       uv_timer_init(luar_bridge_loop(L), &sl->timer);            (4) start the I/O and
 *       uv_timer_start(&sl->timer, on_timer, ms, 0);                   register the cleanup
 *       luar_bridge_op_set_cleanup(op, sleep_cleanup);
 *       return luar_bridge_yield(L, op, sleep_push);               (5) yield
 *   }
 *
 * The completion callback (a libuv/curl callback) never touches a Lua stack: it stores the
 * result in the op's data and calls luar_bridge_complete(op). The task is then resumed from
 * the loop (never from inside another resume); `push` runs inside the coroutine, pushes the
 * results (`value` or `nil, err`) and returns their number. The bridge then calls the
 * cleanup (or frees the op when there is none).
 *
 * When the task is cancelled while it waits (CPU budget, job timeout, host shutdown) the
 * coroutine is never resumed: the bridge calls cleanup(op, 1), which must stop the I/O so
 * that luar_bridge_complete() is not called any more, and release the op.
 *
 * Bridge calls work inside user coroutines (coroutine.wrap / coroutine.resume): the wait
 * propagates up to the host task and the inner coroutine is resumed with the results.
 * Loop thread only.
 */
#ifndef LUAR_BRIDGE_H
#define LUAR_BRIDGE_H

#include <lua.h>
#include <stddef.h>
#include <uv.h>

typedef struct luar_bridge_op luar_bridge_op_t;

/* Pushes the results of a completed op onto `L` (the waiting coroutine); returns their count. */
typedef int (*luar_bridge_push_fn)(lua_State *L, luar_bridge_op_t *op);

/*
 * Releases what the op holds. `canceled` is 1 when the task was cancelled before the
 * completion was delivered (stop the I/O now), 0 after `push` ran. Must end with
 * luar_bridge_op_free(op), at once or later (e.g. from a uv_close callback).
 */
typedef void (*luar_bridge_cleanup_fn)(luar_bridge_op_t *op, int canceled);

/*
 * Steps 2 and 3: refuses with a Lua error "cannot wait here: <what> must be called from a
 * request handler, job or luar run script" when the running code cannot yield up to a host
 * task (top level of a script being loaded, inside a metamethod called from C, ...), and
 * otherwise allocates an op record with `data_size` zeroed bytes of module data. The op is
 * owned by the task, which keeps the coroutine referenced until the op is done. `what` must
 * be a string literal (kept by pointer). Raises on misuse or memory exhaustion; never
 * returns NULL. Stack effect [-0, +0].
 */
luar_bridge_op_t *luar_bridge_op_new(lua_State *L, const char *what, size_t data_size);

/* The module data area of `op` (data_size bytes, maximally aligned). */
void *luar_bridge_op_data(luar_bridge_op_t *op);

/* Sets the cleanup called once the bridge is done with `op` (see luar_bridge_cleanup_fn). */
void luar_bridge_op_set_cleanup(luar_bridge_op_t *op, luar_bridge_cleanup_fn cleanup);

/*
 * Step 5: yields the running coroutine until luar_bridge_complete(op); `push` then supplies
 * the results of the Lua call. Use as `return luar_bridge_yield(L, op, push);`. When the op
 * cannot be waited for (the task was killed meanwhile) the op is cancelled and an error is
 * raised.
 */
int luar_bridge_yield(lua_State *L, luar_bridge_op_t *op, luar_bridge_push_fn push);

/*
 * Called by the completion callback after storing the results in the op data: schedules
 * the task to resume on the next loop iteration. Safe to call once per op, from any
 * callback of the loop thread (even before luar_bridge_yield ran). Never calls Lua.
 */
void luar_bridge_complete(luar_bridge_op_t *op);

/* Frees the op record (from the cleanup, at once or later). */
void luar_bridge_op_free(luar_bridge_op_t *op);

/* The loop the VM of `L` runs on. */
uv_loop_t *luar_bridge_loop(lua_State *L);

/*
 * Replaces coroutine.resume, wrap, isyieldable, running, status and close in the table at
 * the top of the stack (the coroutine library) with bridge-aware versions. Stack [-0, +0].
 */
void luar_bridge_open_coroutine(lua_State *L);

#endif
