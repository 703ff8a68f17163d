/*
 * The Sentry plugin: uncaught Lua errors (handlers, jobs, cron ticks' jobs, pub/sub
 * handlers) and error-level log lines become Sentry events, with the last log lines as
 * breadcrumbs; `require "luar.sentry"` captures exceptions and messages from scripts.
 * Configured by plugins.sentry = { dsn = …, environment, release, … } (README.md).
 * Without a dsn the plugin does nothing: no hooks, and the Lua functions return nil.
 */
#include "sentry.h"

#include <lauxlib.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static sentry_t *S; /* the process's state; NULL when not configured */

/* ---- hooks ---------------------------------------------------------------------------------- */

static void on_error(void *arg, const luar_plugin_error_t *e)
{
    sentry_error_event(arg, e);
}

static void on_span(void *arg, const luar_plugin_span_t *span)
{
    sentry_span_ended(arg, span);
}

static void on_stop(void *arg)
{
    sentry_transport_drain(arg);
}

static void on_log(void *arg, int level, const char *line, size_t len, int flags)
{
    sentry_t *s = arg;
    /* Our own lines (sending failed) neither become events nor breadcrumbs. */
    static const char own[] = "\"plugin\":\"sentry\"";
    if (memmem(line, len, own, sizeof own - 1) != NULL)
        return;
    if (level >= LUAR_PLUGIN_LOG_ERROR && s->log_events && !(flags & LUAR_PLUGIN_LOG_REPORTED))
        sentry_log_event(s, line, len);
    sentry_breadcrumb_add(s, level, line, len);
}

/* ---- Lua: luar.sentry -------------------------------------------------------------------- */

/* Appends Lua value `idx` as JSON (strings, numbers, booleans, tables to depth 4). */
static void lua_json(lua_State *L, int idx, sentry_sb_t *b, int depth)
{
    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
        size_t len;
        const char *str = lua_tolstring(L, idx, &len);
        sentry_sb_json(b, str, len, SENTRY_MAX_VALUE);
        return;
    }
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            sentry_sb_printf(b, "%lld", (long long)lua_tointeger(L, idx));
        else {
            double d = lua_tonumber(L, idx);
            if (d != d || d > 1e300 || d < -1e300)
                sentry_sb_puts(b, "null");
            else
                sentry_sb_printf(b, "%.17g", d);
        }
        return;
    case LUA_TBOOLEAN:
        sentry_sb_puts(b, lua_toboolean(L, idx) ? "true" : "false");
        return;
    case LUA_TTABLE:
        if (depth < 4) {
            lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
            if (n > 0) {
                sentry_sb_puts(b, "[");
                for (lua_Integer i = 1; i <= n && i <= 100; i++) {
                    if (i > 1)
                        sentry_sb_puts(b, ",");
                    lua_rawgeti(L, idx, i);
                    lua_json(L, -1, b, depth + 1);
                    lua_pop(L, 1);
                }
                sentry_sb_puts(b, "]");
                return;
            }
            sentry_sb_puts(b, "{");
            int first = 1, count = 0;
            lua_pushnil(L);
            while (lua_next(L, idx) != 0) {
                if (lua_type(L, -2) == LUA_TSTRING && count++ < 100) {
                    size_t klen;
                    const char *k = lua_tolstring(L, -2, &klen);
                    if (!first)
                        sentry_sb_puts(b, ",");
                    sentry_sb_json(b, k, klen, 200);
                    sentry_sb_puts(b, ":");
                    lua_json(L, -1, b, depth + 1);
                    first = 0;
                }
                lua_pop(L, 1);
            }
            sentry_sb_puts(b, "}");
            return;
        }
        /* fall through */
    default: {
        size_t len;
        const char *str = luaL_tolstring(L, idx, &len);
        sentry_sb_json(b, str, len, 200);
        lua_pop(L, 1);
    }
    }
}

/* A Lua table of tags (name = value) as rendered pairs into tags/store. */
static size_t opt_tags(lua_State *L, int opts, const char **tags, size_t max, char (*store)[200])
{
    size_t nt = 0;
    if (opts == 0 || lua_getfield(L, opts, "tags") != LUA_TTABLE) {
        if (opts)
            lua_pop(L, 1);
        return 0;
    }
    int t = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, t) != 0) {
        if (nt + 2 > max) {
            lua_pop(L, 2);
            break;
        }
        luaL_checkstack(L, 4, "sentry: too many tags");
        if (lua_type(L, -2) == LUA_TSTRING) {
            /* keys: kept on the stack under the table until the event is built */
            size_t klen;
            const char *k = lua_tolstring(L, -2, &klen);
            sentry_sb_t kb, vb;
            sentry_sb_init(&kb);
            sentry_sb_init(&vb);
            for (size_t i = 0; i < klen && i < 32; i++)
                sentry_sb_add(
                    &kb, (k[i] == '"' || k[i] == '\\' || (unsigned char)k[i] < 0x20) ? "_" : &k[i],
                    1);
            lua_json(L, -1, &vb, 4); /* depth 4: a table becomes its tostring */
            if (!kb.oom && !vb.oom && vb.len < 200 && kb.len > 0) {
                snprintf(store[nt / 2], 200, "%s", vb.data);
                lua_pushstring(L, kb.data);
                lua_insert(L, t); /* anchor the key below the table */
                t++;
                tags[nt] = lua_tostring(L, t - 1);
                tags[nt + 1] = store[nt / 2];
                nt += 2;
            }
            sentry_sb_free(&kb);
            sentry_sb_free(&vb);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1); /* the tags table; the anchored keys stay until the function returns */
    return nt;
}

static int not_configured(lua_State *L)
{
    lua_pushnil(L);
    lua_pushliteral(L, "sentry is not configured (plugins.sentry.dsn)");
    return 2;
}

static int push_outcome(lua_State *L, const char *id, int outcome)
{
    if (outcome == SENTRY_SENT) {
        lua_pushstring(L, id);
        return 1;
    }
    lua_pushnil(L);
    lua_pushstring(L, outcome == SENTRY_RATE_LIMITED ? "rate limited by Sentry"
                                                     : "dropped: the send queue is full");
    return 2;
}

/* Common to capture_exception and capture_message: everything after the event's body. */
static int finish_capture(lua_State *L, sentry_t *s, sentry_sb_t *b, const char *id, int opts)
{
    const luar_host_t *h = s->h;
    luar_plugin_context_t ctx = {0};
    if (h->size >= offsetof(luar_host_t, context) + sizeof(void *))
        h->context(L, &ctx);
    if (ctx.trace_id && strlen(ctx.trace_id) == 32) {
        sentry_sb_printf(b,
                         ",\"contexts\":{\"trace\":{\"trace_id\":\"%s\",\"span_id\":\"%s\","
                         "\"type\":\"trace\"}}",
                         ctx.trace_id,
                         ctx.span_id && strlen(ctx.span_id) == 16 ? ctx.span_id
                                                                  : "0000000000000001");
    }
    int has_extra = 0;
    if (opts && lua_getfield(L, opts, "extra") == LUA_TTABLE) {
        sentry_sb_puts(b, ",\"extra\":");
        lua_json(L, -1, b, 1);
        has_extra = 1;
    }
    if (opts)
        lua_pop(L, 1);
    if (!has_extra && ctx.job_id) {
        sentry_sb_puts(b, ",\"extra\":{\"job_id\":");
        sentry_sb_json(b, ctx.job_id, strlen(ctx.job_id), 64);
        sentry_sb_puts(b, "}");
    }
    sentry_sb_t user;
    sentry_sb_init(&user);
    if (opts && lua_getfield(L, opts, "user") == LUA_TTABLE)
        lua_json(L, -1, &user, 2);
    if (opts)
        lua_pop(L, 1);
    const char *tags[2 * 24 + 3];
    char store[24][200];
    size_t nt = opt_tags(L, opts, tags, 2 * 24, store);
    char rid[200];
    if (ctx.request_id) {
        snprintf(rid, sizeof rid, "\"%.64s\"", ctx.request_id);
        tags[nt++] = "request_id";
        tags[nt++] = rid;
    }
    tags[nt] = NULL;
    sentry_event_end(s, b, tags, user.len && !user.oom ? user.data : NULL, 1);
    sentry_sb_free(&user);
    return push_outcome(L, id, sentry_transport_submit(s, id, SENTRY_CAT_ERROR, b));
}

/* A new event of capture_exception or capture_message: its id and common members. */
static void begin_capture(sentry_t *s, sentry_sb_t *b, char id[33], const char *level)
{
    sentry_event_id(s, id);
    sentry_sb_init(b);
    sentry_event_begin(s, b, id, s->h->now(s->h), level, "luar.capture");
}

static const char *const levels[] = {"debug", "info", "warning", "error", "fatal", NULL};

/* sentry.capture_exception(err [, {tags=, extra=, user=, level=}]) -> event id | nil, why */
static int l_capture_exception(lua_State *L)
{
    sentry_t *s = S;
    luaL_checkany(L, 1);
    int opts = lua_istable(L, 2) ? 2 : 0;
    if (s == NULL)
        return not_configured(L);
    const char *type = "LuaError", *message, *traceback = NULL;
    if (lua_istable(L, 1)) {
        if (lua_getfield(L, 1, "kind") == LUA_TSTRING)
            type = lua_tostring(L, -1);
        if (lua_getfield(L, 1, "message") != LUA_TSTRING) {
            lua_pop(L, 1);
            luaL_tolstring(L, 1, NULL);
        }
        message = lua_tostring(L, -1);
        if (lua_getfield(L, 1, "traceback") == LUA_TSTRING)
            traceback = lua_tostring(L, -1);
    } else {
        message = luaL_tolstring(L, 1, NULL);
    }
    if (traceback == NULL) {
        luaL_traceback(L, L, NULL, 1); /* the caller's stack */
        traceback = lua_tostring(L, -1);
    }
    const char *level = "error";
    if (opts && lua_getfield(L, opts, "level") == LUA_TSTRING)
        level = levels[luaL_checkoption(L, -1, NULL, levels)];
    char id[33];
    sentry_sb_t b;
    begin_capture(s, &b, id, level);
    sentry_sb_puts(&b, ",\"exception\":{\"values\":[");
    sentry_exception_json(&b, type, message, traceback, "luar.capture", 1);
    sentry_sb_puts(&b, "]}");
    return finish_capture(L, s, &b, id, opts);
}

/* sentry.capture_message(msg [, level [, opts]]) -> event id | nil, why */
static int l_capture_message(lua_State *L)
{
    sentry_t *s = S;
    size_t len;
    const char *msg = luaL_checklstring(L, 1, &len);
    const char *level = levels[luaL_checkoption(L, 2, "info", levels)];
    int opts = lua_istable(L, 3) ? 3 : 0;
    if (s == NULL)
        return not_configured(L);
    char id[33];
    sentry_sb_t b;
    begin_capture(s, &b, id, level);
    sentry_sb_puts(&b, ",\"logentry\":{\"formatted\":");
    sentry_sb_json(&b, msg, len, SENTRY_MAX_VALUE);
    sentry_sb_puts(&b, "}");
    return finish_capture(L, s, &b, id, opts);
}

/* sentry.set_tag(name, value | nil): a tag on every later event of this process. */
static int l_set_tag(lua_State *L)
{
    sentry_t *s = S;
    const char *key = luaL_checkstring(L, 1);
    const char *value = luaL_optstring(L, 2, NULL);
    luaL_argcheck(L, strlen(key) > 0 && strlen(key) <= 32, 1, "tag names are 1 to 32 bytes");
    luaL_argcheck(L, value == NULL || strlen(value) <= 200, 2, "tag values are at most 200 bytes");
    if (s == NULL)
        return 0;
    for (size_t i = 0; i < s->ntags; i++) {
        if (strcmp(s->tags[i].key, key) != 0)
            continue;
        free(s->tags[i].value);
        if (value == NULL || (s->tags[i].value = strdup(value)) == NULL) {
            free(s->tags[i].key);
            s->tags[i] = s->tags[--s->ntags];
        }
        return 0;
    }
    if (value == NULL)
        return 0;
    if (s->ntags == SENTRY_MAX_TAGS)
        return luaL_error(L, "sentry.set_tag: at most %d tags", SENTRY_MAX_TAGS);
    char *k = strdup(key), *v = strdup(value);
    if (k == NULL || v == NULL) {
        free(k);
        free(v);
        return luaL_error(L, "sentry.set_tag: out of memory");
    }
    s->tags[s->ntags++] = (sentry_tag_t){k, v};
    return 0;
}

/* sentry.set_user({id=, email=, username=, ...} | nil): the user of every later event. */
static int l_set_user(lua_State *L)
{
    sentry_t *s = S;
    if (!lua_isnoneornil(L, 1))
        luaL_checktype(L, 1, LUA_TTABLE);
    if (s == NULL)
        return 0;
    free(s->user);
    s->user = NULL;
    if (lua_istable(L, 1)) {
        sentry_sb_t b;
        sentry_sb_init(&b);
        lua_json(L, 1, &b, 2);
        s->user = sentry_sb_take(&b, NULL);
    }
    return 0;
}

/* sentry.enabled() -> true when a dsn is configured */
static int l_enabled(lua_State *L)
{
    lua_pushboolean(L, S != NULL);
    return 1;
}

static int sentry_open(lua_State *L, void *ctx)
{
    (void)ctx;
    static const luaL_Reg fns[] = {{"capture_exception", l_capture_exception},
                                   {"capture_message", l_capture_message},
                                   {"set_tag", l_set_tag},
                                   {"set_user", l_set_user},
                                   {"enabled", l_enabled},
                                   {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}

/* ---- init and fini ---------------------------------------------------------------------- */

static char *config_dup(const luar_host_t *h, const luar_plugin_config_t *c, const char *key,
                        const char *dflt)
{
    const char *v = h->config_string(c, key);
    if (v == NULL || v[0] == '\0')
        v = dflt;
    return v ? strdup(v) : NULL;
}

static double config_num(const luar_host_t *h, const luar_plugin_config_t *c, const char *key,
                         double dflt, double min, double max, int *bad)
{
    double d = dflt;
    if (h->config_string(c, key) != NULL && (!h->config_number(c, key, &d) || d < min || d > max))
        *bad = 1;
    return d;
}

static void sentry_free(sentry_t *s)
{
    if (s == NULL)
        return;
    sentry_transport_stop(s);
    sentry_breadcrumbs_free(s);
    free(s->crumbs);
    for (size_t i = 0; i < s->ntags; i++) {
        free(s->tags[i].key);
        free(s->tags[i].value);
    }
    free(s->user);
    free(s->dsn);
    free(s->url);
    free(s->auth);
    free(s->environment);
    free(s->release);
    free(s->server_name);
    free(s);
}

static int sentry_init(const luar_host_t *h, const luar_plugin_config_t *config, void **ctx,
                       char *err, size_t err_size)
{
    const char *dsn = h->config_string(config, "dsn");
    *ctx = NULL;
    if (dsn == NULL || dsn[0] == '\0')
        return 0; /* not configured: nothing to do, and nothing costs anything */
    if (h->size < offsetof(luar_host_t, on_stop) + sizeof(void *)) {
        snprintf(err, err_size,
                 "this host has no error hooks (on_error, on_log, on_span, "
                 "on_stop): a newer luar is needed");
        return LUAR_PLUGIN_ECONFIG;
    }
    sentry_t *s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(err, err_size, "out of memory");
        return LUAR_PLUGIN_ENOMEM;
    }
    s->h = h;
    int rc = sentry_dsn_parse(s, dsn, err, err_size);
    if (rc) {
        sentry_free(s);
        return rc;
    }
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    s->environment = config_dup(h, config, "environment", "production");
    s->release = config_dup(h, config, "release", NULL);
    s->server_name = config_dup(h, config, "server_name", host[0] ? host : "luar");
    int bad = 0;
    const char *badkey = NULL;
    s->max_breadcrumbs =
        (size_t)config_num(h, config, "max_breadcrumbs", 50, 0, SENTRY_MAX_BREADCRUMBS, &bad);
    if (bad && !badkey)
        badkey = "max_breadcrumbs must be a number from 0 to 100";
    s->queue_size = (size_t)config_num(h, config, "queue_size", 100, 1, 10000, &bad);
    if (bad && !badkey)
        badkey = "queue_size must be a number from 1 to 10000";
    s->timeout = config_num(h, config, "timeout", 5, 0.1, 60, &bad);
    if (bad && !badkey)
        badkey = "timeout must be a number of seconds from 0.1 to 60";
    s->shutdown_timeout = config_num(h, config, "shutdown_timeout", 2, 0, 30, &bad);
    if (bad && !badkey)
        badkey = "shutdown_timeout must be a number of seconds from 0 to 30";
    s->traces_sample_rate = config_num(h, config, "traces_sample_rate", 0, 0, 1, &bad);
    if (bad && !badkey)
        badkey = "traces_sample_rate must be a number from 0 to 1";
    s->log_events =
        h->config_string(config, "log_events") == NULL || h->config_bool(config, "log_events");
    if (badkey) {
        snprintf(err, err_size, "plugins.sentry.%s", badkey);
        sentry_free(s);
        return LUAR_PLUGIN_ECONFIG;
    }
    if (s->environment == NULL || s->server_name == NULL ||
        (s->max_breadcrumbs && (s->crumbs = calloc(s->max_breadcrumbs, sizeof(char *))) == NULL)) {
        snprintf(err, err_size, "out of memory");
        sentry_free(s);
        return LUAR_PLUGIN_ENOMEM;
    }
    static const char *const labels[] = {"outcome"};
    if (h->metric_register(h, LUAR_PLUGIN_COUNTER, "luar_sentry_events_total",
                           "Sentry events by outcome: sent, dropped (queue full), "
                           "rate_limited (by Sentry), failed (Sentry unreachable or refusing)",
                           labels, 1, &s->events) == 0) {
        static const char *const names[] = {"sent", "dropped", "rate_limited", "failed"};
        for (int i = 0; i < SENTRY_NOUTCOMES; i++) {
            const char *v[] = {names[i]};
            h->metric_add(s->events, v, 0);
        }
    }
    if (h->on_error(h, on_error, s) || h->on_log(h, on_log, s) || h->on_stop(h, on_stop, s) ||
        (s->traces_sample_rate > 0 && h->on_span(h, on_span, s))) {
        snprintf(err, err_size, "the host refused the error, log and span hooks");
        h->on_error(h, NULL, NULL);
        h->on_log(h, NULL, NULL);
        h->on_span(h, NULL, NULL);
        h->on_stop(h, NULL, NULL);
        sentry_free(s);
        return LUAR_PLUGIN_ENOMEM;
    }
    S = s;
    *ctx = s;
    h->log(h, LUAR_PLUGIN_LOG_INFO, "sending errors to %s (environment %s%s%s)", s->url,
           s->environment, s->release ? ", release " : "", s->release ? s->release : "");
    return 0;
}

static void sentry_fini(void *ctx)
{
    sentry_t *s = ctx;
    if (s == NULL)
        return;
    s->h->on_error(s->h, NULL, NULL);
    s->h->on_log(s->h, NULL, NULL);
    s->h->on_span(s->h, NULL, NULL);
    s->h->on_stop(s->h, NULL, NULL);
    sentry_transactions_free();
    if (S == s)
        S = NULL;
    sentry_free(s);
}

LUAR_PLUGIN_DEFINE = {
    .abi = LUAR_PLUGIN_ABI,
    .name = "sentry",
    .version = SENTRY_VERSION,
    .description = "uncaught Lua errors and error log lines as Sentry events",
    .init = sentry_init,
    .fini = sentry_fini,
    .open = sentry_open,
    .schemes = NULL,
};
