/*
 * luar.metrics: counters, gauges and histograms in the process registry (host/metrics),
 * shared with the host's own metrics and exposed on /metrics.
 */
#include "common/error.h"
#include "lua/modules.h"
#include "lua/util.h"
#include "metrics/metrics.h"

#include <lauxlib.h>
#include <string.h>

#define METRIC_MT "luar.metric"

typedef struct lmetric {
    luar_metric_t *m;
    int nlabels;
} lmetric_t;

/* Reads the label values of `labels_idx` in declaration order onto the stack. */
static void label_values(lua_State *L, lmetric_t *lm, int labels_idx, const char **values)
{
    if (lm->nlabels == 0)
        return;
    if (lua_type(L, labels_idx) != LUA_TTABLE)
        luaL_argerror(L, labels_idx, "expected a table of label values");
    lua_getiuservalue(L, 1, 1);
    int names = lua_gettop(L);
    luaL_checkstack(L, lm->nlabels * 2, "too many labels");
    for (int i = 0; i < lm->nlabels; i++) {
        lua_rawgeti(L, names, i + 1);
        const char *name = lua_tostring(L, -1);
        int t = lua_getfield(L, labels_idx, name);
        if (t == LUA_TBOOLEAN) {
            lua_pushstring(L, lua_toboolean(L, -1) ? "true" : "false");
            lua_replace(L, -2);
        } else if (t != LUA_TSTRING && t != LUA_TNUMBER) {
            luaL_error(L, "missing label '%s'", name);
        }
        values[i] = lua_tostring(L, -1);
    }
}

/* m:inc / dec / set / observe: kind 0 adds sign * v, 1 sets, 2 observes. [-3, +0] */
static int update(lua_State *L, int kind, int sign)
{
    lmetric_t *lm = luaL_checkudata(L, 1, METRIC_MT);
    int l_idx = 3;
    double v = 1;
    if (kind == 0 && lua_type(L, 2) == LUA_TTABLE)
        l_idx = 2;
    else if (kind != 0 || !lua_isnoneornil(L, 2))
        v = luaL_checknumber(L, 2);
    const char *values[LUAR_METRICS_MAX_LABELS];
    label_values(L, lm, l_idx, values);
    const char *const *vals = lm->nlabels > 0 ? values : NULL;
    int rc;
    if (kind == 0)
        rc = luar_metric_add(lm->m, vals, sign * v);
    else if (kind == 1)
        rc = luar_metric_set(lm->m, vals, v);
    else
        rc = luar_metric_observe(lm->m, vals, v);
    /* A full series table drops the update silently (counted by the registry). */
    if (rc == LUAR_EINVAL)
        return luaL_error(L, "invalid update for this metric (wrong type or value %f)", v);
    return 0;
}

/* m:inc([n][, labels]) — counters and gauges; n defaults to 1, must be ≥ 0 on counters. */
static int metric_inc(lua_State *L)
{
    return update(L, 0, 1);
}

/* m:dec([n][, labels]) — gauges. */
static int metric_dec(lua_State *L)
{
    return update(L, 0, -1);
}

/* m:set(v[, labels]) — gauges. */
static int metric_set(lua_State *L)
{
    return update(L, 1, 1);
}

/* m:observe(v[, labels]) — histograms. */
static int metric_observe(lua_State *L)
{
    return update(L, 2, 1);
}

/* Registers (or finds) a metric family and pushes its object. [-n, +1] */
static int make_metric(lua_State *L, luar_metric_type_t type)
{
    const char *name = luaL_checkstring(L, 1);
    const char *help = luaL_optstring(L, 2, "");
    const char *labels[LUAR_METRICS_MAX_LABELS];
    double buckets[64];
    size_t nlabels = 0, nbuckets = 0;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        nlabels = lua_rawlen(L, 3);
        luaL_argcheck(L, nlabels <= LUAR_METRICS_MAX_LABELS, 3, "at most 8 labels");
        for (size_t i = 0; i < nlabels; i++) {
            lua_rawgeti(L, 3, (lua_Integer)i + 1);
            labels[i] = lua_tostring(L, -1);
            luaL_argcheck(L, labels[i] != NULL, 3, "label names must be strings");
        }
    }
    if (type == LUAR_METRIC_HISTOGRAM && !lua_isnoneornil(L, 4)) {
        luaL_checktype(L, 4, LUA_TTABLE);
        nbuckets = lua_rawlen(L, 4);
        luaL_argcheck(L, nbuckets > 0 && nbuckets <= 64, 4, "1 to 64 buckets");
        for (size_t i = 0; i < nbuckets; i++) {
            lua_rawgeti(L, 4, (lua_Integer)i + 1);
            int ok = 0;
            buckets[i] = lua_tonumberx(L, -1, &ok);
            luaL_argcheck(L, ok, 4, "buckets must be numbers");
            lua_pop(L, 1);
        }
    }
    luar_buf_t *err = luar_lua_newbuf(L, 1024);
    luar_metric_t *m = NULL;
    int rc = luar_metrics_register(type, name, help, labels, nlabels, nbuckets > 0 ? buckets : NULL,
                                   nbuckets, &m, err);
    if (rc == LUAR_EEXISTS)
        return luaL_error(L, "metric '%s' already exists with another type or labels", name);
    if (rc != 0)
        return luaL_error(L, "metric '%s': %s", name, err->len > 0 ? err->data : luar_strerror(rc));
    lmetric_t *lm = lua_newuserdatauv(L, sizeof *lm, 1);
    lm->m = m;
    lm->nlabels = (int)nlabels;
    lua_createtable(L, (int)nlabels, 0);
    for (size_t i = 0; i < nlabels; i++) {
        lua_pushstring(L, labels[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setiuservalue(L, -2, 1);
    luaL_setmetatable(L, METRIC_MT);
    return 1;
}

/* metrics.counter(name, help[, labels]) → metric. */
static int metrics_counter(lua_State *L)
{
    return make_metric(L, LUAR_METRIC_COUNTER);
}

/* metrics.gauge(name, help[, labels]) → metric. */
static int metrics_gauge(lua_State *L)
{
    return make_metric(L, LUAR_METRIC_GAUGE);
}

/* metrics.histogram(name, help[, labels][, buckets]) → metric. */
static int metrics_histogram(lua_State *L)
{
    return make_metric(L, LUAR_METRIC_HISTOGRAM);
}

int luaopen_luar_metrics(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"inc", metric_inc},         {"dec", metric_dec}, {"set", metric_set},
        {"observe", metric_observe}, {NULL, NULL},
    };
    static const luaL_Reg funcs[] = {
        {"counter", metrics_counter},
        {"gauge", metrics_gauge},
        {"histogram", metrics_histogram},
        {NULL, NULL},
    };
    if (luaL_newmetatable(L, METRIC_MT)) {
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    luaL_newlib(L, funcs);
    return 1;
}
