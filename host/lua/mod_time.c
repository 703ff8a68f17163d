/*
 * luar.time: wall clock, monotonic clock and sleep. sleep is the reference use of the
 * coroutine bridge: a uv_timer in the op record, completed by the timer callback.
 */
#include "common/clock.h"
#include "lua/bridge.h"
#include "lua/modules.h"

#include <lauxlib.h>
#include <math.h>
#include <time.h>

#define SLEEP_MAX_SECONDS (365.0 * 86400)

struct sleep_op {
    uv_timer_t timer;
};

/* time.now() → unix seconds as a float. [-0, +1] */
static int time_now(lua_State *L)
{
    lua_pushnumber(L, luar_time_now());
    return 1;
}

/* time.monotonic() → seconds from an arbitrary origin, never going back. [-0, +1] */
static int time_monotonic(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)uv_hrtime() / 1e9);
    return 1;
}

static void sleep_fired(uv_timer_t *timer)
{
    luar_bridge_complete(timer->data);
}

static void sleep_closed(uv_handle_t *h)
{
    luar_bridge_op_free(h->data);
}

static void sleep_cleanup(luar_bridge_op_t *op, int canceled)
{
    (void)canceled;
    struct sleep_op *s = luar_bridge_op_data(op);
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, sleep_closed);
}

static int sleep_push(lua_State *L, luar_bridge_op_t *op)
{
    (void)L;
    (void)op;
    return 0;
}

/* time.sleep(seconds) ⏸ → nothing; yields the coroutine for `seconds`. [-1, +0] */
static int time_sleep(lua_State *L)
{
    double s = luaL_checknumber(L, 1);
    luaL_argcheck(L, s >= 0 && s <= SLEEP_MAX_SECONDS, 1, "expected 0 to 1 year of seconds");
    luar_bridge_op_t *op = luar_bridge_op_new(L, "time.sleep", sizeof(struct sleep_op));
    struct sleep_op *so = luar_bridge_op_data(op);
    uv_loop_t *loop = luar_bridge_loop(L);
    /* The loop's clock is cached per iteration; Lua may have run long since. */
    uv_update_time(loop);
    uv_timer_init(loop, &so->timer);
    so->timer.data = op;
    uv_timer_start(&so->timer, sleep_fired, (uint64_t)ceil(s * 1000.0), 0);
    luar_bridge_op_set_cleanup(op, sleep_cleanup);
    return luar_bridge_yield(L, op, sleep_push);
}

int luaopen_luar_time(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"now", time_now},
        {"monotonic", time_monotonic},
        {"sleep", time_sleep},
        {NULL, NULL},
    };
    luaL_newlib(L, funcs);
    return 1;
}
