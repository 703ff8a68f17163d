/*
 * luar.ratelimit (SPEC §4): check(key, "N/period"[, opts]) ⏸ → allowed, retry_after,
 * remaining. GCRA (ratelimit/gcra.h) on the queue backend's shared state, so a limit is
 * exact across every process and instance sharing the backend. The wait goes through the
 * bridge like every other: the backend answers on the loop and the task resumes.
 */
#include "lua/mod_ratelimit.h"
#include "common/error.h"
#include "jobs/jobs.h"
#include "lua/error.h"
#include "lua/modules.h"
#include "queue/queue.h"
#include "ratelimit/ratelimit.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

/* ---- the wait ------------------------------------------------------------------------ */

struct rate_op {
    int canceled, fired;
    luar_ratelimit_wait_t wait;
};

static void rate_cb(void *arg, int rc, const luar_gcra_result_t *result)
{
    luar_bridge_op_t *op = arg;
    struct rate_op *r = luar_bridge_op_data(op);
    r->fired = 1;
    if (r->canceled) { /* the task is gone; the check counted anyway */
        luar_bridge_op_free(op);
        return;
    }
    r->wait.rc = rc;
    if (rc == 0)
        r->wait.result = *result;
    luar_bridge_complete(op);
}

static void rate_cleanup(luar_bridge_op_t *op, int canceled)
{
    struct rate_op *r = luar_bridge_op_data(op);
    if (canceled && !r->fired) {
        r->canceled = 1; /* rate_cb frees the op when the backend answers */
        return;
    }
    luar_bridge_op_free(op);
}

int luar_ratelimit_yield(lua_State *L, const char *what, const char *key, const luar_gcra_t *limit,
                         int64_t cost, const void *udata, luar_bridge_push_fn push)
{
    luar_bridge_op_t *op = luar_bridge_op_new(L, what, sizeof(struct rate_op));
    luar_bridge_op_set_cleanup(op, rate_cleanup);
    struct rate_op *r = luar_bridge_op_data(op);
    r->wait.udata = udata;
    luar_queue_t *q = luar_jobs_queue();
    int rc = q ? luar_queue_rate_check(q, key, limit, cost, rate_cb, op) : LUAR_ECLOSED;
    if (rc) {
        r->fired = 1;
        r->wait.rc = rc;
        luar_bridge_complete(op);
    }
    return luar_bridge_yield(L, op, push);
}

luar_ratelimit_wait_t *luar_ratelimit_wait_of(luar_bridge_op_t *op)
{
    return &((struct rate_op *)luar_bridge_op_data(op))->wait;
}

/* ---- ratelimit.check ------------------------------------------------------------------ */

#define NAME_MAX_LEN 127

/* The metric label of a check, kept in the op (udata) until push runs. */
struct check_name {
    char name[NAME_MAX_LEN + 1];
};

static int check_push(lua_State *L, luar_bridge_op_t *op)
{
    luar_ratelimit_wait_t *w = luar_ratelimit_wait_of(op);
    if (w->rc) {
        luar_queue_t *q = luar_jobs_queue();
        const char *why = q == NULL ? "no queue backend in this command"
                          : w->rc == LUAR_EIO && luar_queue_last_error(q)[0]
                              ? luar_queue_last_error(q)
                              : luar_strerror(w->rc);
        return luar_lua_fail(L, "backend", "ratelimit.check: the backend did not answer (%s)", why);
    }
    const luar_gcra_result_t *r = &w->result;
    if (!r->allowed) {
        const struct check_name *n = w->udata;
        luar_ratelimit_count_rejected(n->name);
    }
    lua_pushboolean(L, r->allowed);
    lua_pushnumber(L, (double)r->retry_after_ns / 1e9);
    lua_pushinteger(L, (lua_Integer)r->remaining);
    return 3;
}

/*
 * ratelimit.check(key, limit[, opts]) ⏸ → allowed, retry_after, remaining | nil, err
 * key: a string (or number); limit: "N/s", "N/m", "N/h", "N/d"; opts: { cost = 1,
 * name = "check" } (name labels luar_ratelimit_rejected_total). [-(2|3), +(3|2)]
 */
static int ratelimit_check(lua_State *L)
{
    size_t key_len;
    const char *key = luaL_checklstring(L, 1, &key_len);
    const char *limit_s = luaL_checkstring(L, 2);
    luar_gcra_t limit;
    if (luar_gcra_parse(&limit, limit_s))
        return luaL_argerror(L, 2,
                             lua_pushfstring(L,
                                             "expected a limit \"N/s\", \"N/m\", "
                                             "\"N/h\" or \"N/d\", got \"%s\"",
                                             limit_s));
    lua_Integer cost = 1;
    const char *name = "check";
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        if (lua_getfield(L, 3, "cost") != LUA_TNIL) {
            int ok = 0;
            cost = lua_tointegerx(L, -1, &ok);
            if (!ok || cost < 1)
                return luaL_error(L, "option cost: expected a whole number >= 1");
            if (cost > limit.burst)
                return luaL_error(L,
                                  "option cost: %d is more than the limit's burst (%d): "
                                  "it could never be allowed",
                                  (int)cost, (int)limit.burst);
        }
        if (lua_getfield(L, 3, "name") != LUA_TNIL) {
            name = luaL_checkstring(L, -1);
            if (name[0] == '\0' || strlen(name) > NAME_MAX_LEN)
                return luaL_error(L, "option name: expected 1 to %d characters", NAME_MAX_LEN);
        }
    }
    struct check_name *n = lua_newuserdatauv(L, sizeof *n, 0); /* lives in the frame */
    snprintf(n->name, sizeof n->name, "%s", name);
    char backend_key[LUAR_RATELIMIT_KEY_SIZE];
    luar_ratelimit_key("lua", key, key_len, &limit, backend_key);
    return luar_ratelimit_yield(L, "ratelimit.check", backend_key, &limit, cost, n, check_push);
}

int luaopen_luar_ratelimit(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"check", ratelimit_check},
        {NULL, NULL},
    };
    luaL_newlib(L, fns);
    return 1;
}
