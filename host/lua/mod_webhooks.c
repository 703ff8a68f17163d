/*
 * luar.webhooks, inbound side (SPEC §4): webhooks.route declares a route whose requests
 * are verified, deduplicated and stored in C (host/webhooks/ingest.c, wired into the
 * router of mod_http.c), and webhooks.on attaches handlers that run as durable jobs.
 *
 * A handler is a job named "webhook:<route>:<pattern>" (or "webhook:<name>" with the
 * `name` option): the name depends only on what the scripts say, so a job enqueued before
 * a reload runs on the new scripts' handler of the same name. The job's function is a
 * small Lua wrapper that turns the stored {event, meta} into fn(event, meta) with
 * meta.attempt and meta.job_id added; sync routes call the same wrapper inline.
 */
#include "common/error.h"
#include "common/units.h"
#include "jobs/jobs.h"
#include "log/log.h"
#include "lua/mod_webhooks.h"
#include "lua/modules.h"
#include "lua/route_guard.h"
#include "lua/util.h"
#include "lua/vm_internal.h"
#include "secrets/redact.h"
#include "webhooks/ingest.h"

#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Registry field: path → the route's job options (defaults for its handlers). */
#define ROUTE_OPTS "luar.webhooks.route_options"

/* The options of webhooks.route that are the route's own (the rest go to the scheme). */
static const char *const route_keys[] = {
    "scheme", "secret", "secrets", "tolerance", "dedupe", "max_body", "sync", "verify",
    "rate", "require_client_cert", NULL, /* the last two: route_guard.h, as on http.route */
};
/* Job options: on webhooks.route as defaults for its handlers, on webhooks.on per handler. */
static const char *const job_keys[] = {
    "queue", "retries", "backoff", "backoff_cap", "timeout", "priority", NULL,
};

static int listed(const char *const *list, const char *k)
{
    for (; *list != NULL; list++)
        if (strcmp(*list, k) == 0)
            return 1;
    return 0;
}

/* The stored arguments {event, meta} → fn(event, meta), with the attempt and job id. */
static const char wrapper_src[] = "local fn = ...\n"
                                  "return function(args, job)\n"
                                  "  local meta = args.meta\n"
                                  "  meta.attempt = job.attempt\n"
                                  "  meta.job_id = job.id\n"
                                  "  return fn(args.event, meta)\n"
                                  "end\n";

/* ---- webhooks.route ------------------------------------------------------------------ */

/* Reads `secret` or `secrets` into arrays (pointers into the options table). */
static size_t read_secrets(lua_State *L, int t, const char **secrets, size_t *lens)
{
    int single = lua_getfield(L, t, "secret") != LUA_TNIL;
    int list = lua_getfield(L, t, "secrets") != LUA_TNIL;
    size_t n = 0;
    if (single && list)
        luaL_error(L, "webhooks.route: give `secret` or `secrets`, not both");
    if (single) {
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "webhooks.route: option secret: expected a string, got %s",
                       luaL_typename(L, -2));
        secrets[0] = lua_tolstring(L, -2, &lens[0]);
        n = 1;
    } else if (list) {
        if (!lua_istable(L, -1))
            luaL_error(L, "webhooks.route: option secrets: expected a list of strings, got %s",
                       luaL_typename(L, -1));
        lua_Integer count = luaL_len(L, -1);
        if (count > LUAR_WEBHOOK_MAX_SECRETS)
            luaL_error(L, "webhooks.route: option secrets: at most %d secrets",
                       LUAR_WEBHOOK_MAX_SECRETS);
        for (lua_Integer i = 1; i <= count; i++) {
            if (lua_rawgeti(L, -1, i) != LUA_TSTRING)
                luaL_error(L,
                           "webhooks.route: option secrets: secret %d is a %s, not a string "
                           "(an unset environment variable?)",
                           (int)i, luaL_typename(L, -1));
            secrets[n] = lua_tolstring(L, -1, &lens[n]);
            n++;
            lua_pop(L, 1); /* the string stays alive: the table holds it */
        }
    }
    for (size_t i = 0; i < n; i++)
        if (lens[i] == 0)
            luaL_error(L, "webhooks.route: secret %d is empty (an unset environment variable?)",
                       (int)i + 1);
    lua_pop(L, 2);
    return n;
}

/* An option as a number >= min; `dflt` when absent. */
static double opt_num(lua_State *L, int t, const char *k, double dflt, double min)
{
    double v = dflt;
    if (lua_getfield(L, t, k) != LUA_TNIL) {
        if (lua_type(L, -1) != LUA_TNUMBER)
            luaL_error(L, "webhooks.route: option %s: expected a number, got %s", k,
                       luaL_typename(L, -1));
        v = lua_tonumber(L, -1);
        if (!(v >= min) || !isfinite(v))
            luaL_error(L, "webhooks.route: option %s: expected a number >= %d", k, (int)min);
    }
    lua_pop(L, 1);
    return v;
}

static int opt_bool(lua_State *L, int t, const char *k, int dflt)
{
    int v = dflt;
    int type = lua_getfield(L, t, k);
    if (type != LUA_TNIL) {
        if (type != LUA_TBOOLEAN)
            luaL_error(L, "webhooks.route: option %s: expected true or false, got %s", k,
                       luaL_typename(L, -1));
        v = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

/* max_body: bytes as a number, or a size such as "64KiB". */
static size_t opt_size(lua_State *L, int t, const char *k)
{
    size_t v = 0;
    int type = lua_getfield(L, t, k);
    if (type == LUA_TNUMBER) {
        double d = lua_tonumber(L, -1);
        if (!(d >= 1) || !isfinite(d))
            luaL_error(L, "webhooks.route: option %s: expected a size of at least 1 byte", k);
        v = (size_t)d;
    } else if (type == LUA_TSTRING) {
        uint64_t u = 0;
        if (luar_parse_size(lua_tostring(L, -1), &u) != 0 || u == 0)
            luaL_error(L, "webhooks.route: option %s: expected a size such as \"64KiB\", got %s", k,
                       lua_tostring(L, -1));
        v = (size_t)u;
    } else if (type != LUA_TNIL) {
        luaL_error(L, "webhooks.route: option %s: expected a size, got %s", k,
                   luaL_typename(L, -1));
    }
    lua_pop(L, 1);
    return v;
}

/* Copies the job options of the table at `t` into a new table, stored for `path`. */
static void store_job_options(lua_State *L, const char *path, int t)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, ROUTE_OPTS);
    lua_createtable(L, 0, 6);
    for (const char *const *k = job_keys; *k != NULL; k++) {
        lua_getfield(L, t, *k);
        lua_setfield(L, -2, *k);
    }
    lua_setfield(L, -2, path);
    lua_pop(L, 1);
}

/*
 * Checks the job options of the table at `t` now, so that a mistake raises at the line
 * that made it. Only job_keys are read: on webhooks.route, `rate` is the route's guard,
 * not the handlers' job rate.
 */
static void check_job_options(lua_State *L, int t)
{
    t = lua_absindex(L, t);
    lua_createtable(L, 0, 6);
    for (const char *const *k = job_keys; *k != NULL; k++) {
        lua_getfield(L, t, *k);
        lua_setfield(L, -2, *k);
    }
    luar_job_def_t d;
    memset(&d, 0, sizeof d);
    luar_jobs_read_options(L, lua_gettop(L), &d);
    lua_pop(L, 1);
    free(d.queue);
    if (d.backoff_ref != LUA_NOREF)
        luaL_unref(L, LUA_REGISTRYINDEX, d.backoff_ref);
}

static void run_sync(void *arg, const luar_webhook_handler_t *h, luar_http_req_t *req,
                     const char *args, size_t args_len);

/* webhooks.route(path, opts) → path. [-2, +1] */
static int webhooks_route(lua_State *L)
{
    luar_vm_t *vm = luar_vm_of(L);
    const char *path = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    if (!vm->loading && !vm->scripting)
        return luaL_error(L, "webhooks.route must be called while the scripts load");
    if (strlen(path) >= sizeof(((luar_http_req_t *)0)->route))
        return luaL_argerror(L, 1, "a webhook route's path is at most 127 bytes");
    luar_http_route_check(L, "POST", path);

    /* Every key is a route option, a job option, or the scheme's (passed as text). */
    size_t nkeys = 0;
    lua_pushnil(L);
    while (lua_next(L, 2) != 0) {
        nkeys++;
        lua_pop(L, 1);
    }
    luar_webhook_opt_t *sopts = lua_newuserdatauv(L, (nkeys + 1) * sizeof *sopts, 0);
    size_t nsopts = 0;
    lua_newtable(L); /* keeps the options' text alive (the table may not grow while walked) */
    int keep = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, 2) != 0) {
        if (lua_type(L, -2) != LUA_TSTRING)
            return luaL_error(L, "webhooks.route: option names must be strings");
        const char *k = lua_tostring(L, -2);
        if (!listed(route_keys, k) && !listed(job_keys, k)) {
            int type = lua_type(L, -1);
            if (type != LUA_TSTRING && type != LUA_TNUMBER && type != LUA_TBOOLEAN)
                return luaL_error(L, "webhooks.route: option %s: expected a string, got %s", k,
                                  luaL_typename(L, -1));
            if (type == LUA_TBOOLEAN)
                lua_pushstring(L, lua_toboolean(L, -1) ? "true" : "false");
            else
                lua_pushstring(L, lua_tostring(L, -1)); /* numbers as text, not in place */
            sopts[nsopts].key = k;
            sopts[nsopts].value = lua_tostring(L, -1);
            nsopts++;
            lua_rawseti(L, keep, (lua_Integer)nsopts);
        }
        lua_pop(L, 1);
    }

    luar_webhook_route_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    const char *secrets[LUAR_WEBHOOK_MAX_SECRETS];
    size_t lens[LUAR_WEBHOOK_MAX_SECRETS];
    cfg.path = path;
    cfg.verify = opt_bool(L, 2, "verify", 1);
    cfg.sync = opt_bool(L, 2, "sync", 0);
    if (lua_getfield(L, 2, "scheme") != LUA_TNIL) {
        if (lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "webhooks.route: option scheme: expected a string, got %s",
                              luaL_typename(L, -1));
        cfg.scheme = lua_tostring(L, -1); /* alive: the options table holds it */
    }
    lua_pop(L, 1);
    cfg.nsecrets = read_secrets(L, 2, secrets, lens);
    cfg.secrets = secrets;
    cfg.secret_lens = lens;
    cfg.opts = sopts;
    cfg.nopts = nsopts;
    cfg.tolerance = opt_num(L, 2, "tolerance", 0, 0);
    if (lua_getfield(L, 2, "tolerance") != LUA_TNIL && cfg.tolerance <= 0)
        return luaL_error(L, "webhooks.route: option tolerance: expected seconds > 0");
    lua_pop(L, 1);
    if (lua_getfield(L, 2, "dedupe") == LUA_TBOOLEAN) {
        if (lua_toboolean(L, -1))
            return luaL_error(L, "webhooks.route: option dedupe: expected seconds or false");
        cfg.dedupe = 0;
    } else {
        cfg.dedupe = opt_num(L, 2, "dedupe", LUAR_WEBHOOK_DEFAULT_DEDUPE, 1);
    }
    lua_pop(L, 1);
    cfg.max_body = opt_size(L, 2, "max_body");
    check_job_options(L, 2);

    if (cfg.verify) {
        if (cfg.scheme == NULL)
            return luaL_error(L,
                              "webhooks.route %s: option scheme is required (\"standard\", "
                              "\"hmac\", or a plugin's); `verify = false` opts out of "
                              "signature checks",
                              path);
        if (cfg.nsecrets == 0)
            return luaL_error(L,
                              "webhooks.route %s: no secret: give secret = \"…\" or "
                              "secrets = {…}",
                              path);
    } else if (cfg.scheme == NULL && nsopts > 0) {
        return luaL_error(L, "webhooks.route %s: unknown option %s", path, sopts[0].key);
    } else if (cfg.scheme != NULL && cfg.nsecrets == 0) {
        return luaL_error(L,
                          "webhooks.route %s: verify = false with a scheme needs its "
                          "secrets too (the scheme reads the event id and type); give no "
                          "scheme to read them from the body",
                          path);
    }
    if (cfg.sync && lua_getfield(L, 2, "dedupe") != LUA_TNIL)
        return luaL_error(L,
                          "webhooks.route %s: a sync route does not deduplicate (its "
                          "handler answers every delivery); remove `dedupe`",
                          path);
    if (cfg.sync) {
        lua_pop(L, 1);
        cfg.dedupe = 0;
    }

    for (size_t i = 0; i < cfg.nsecrets; i++)
        luar_secret_watch("webhook route secret", secrets[i], lens[i]);
    store_job_options(L, path, 2); /* before the route exists: raising here leaks nothing */
    luar_buf_t *err = luar_lua_newbuf(L, 4096);
    /* Raises on a bad rate/require_client_cert having allocated nothing; freed below. */
    luar_route_guard_t *guard = luar_route_guard_parse(L, 2, path);
    luar_webhook_route_t *route = NULL;
    int rc = luar_webhook_route_new(&cfg, &route, err);
    if (rc != 0)
        luar_route_guard_free(L, guard);
    if (rc == LUAR_ENOMEM)
        return luaL_error(L, "webhooks.route %s: not enough memory", path);
    if (rc != 0)
        return luaL_error(L, "webhooks.route %s: %s", path,
                          err->len > 0 ? err->data : luar_strerror(rc));
    if (cfg.sync)
        luar_webhook_route_set_sync(route, run_sync, vm);
    luar_http_route_webhook(L, path, route, guard); /* the router owns both now */
    if (!cfg.verify) {
        lua_Debug ar;
        char where[256] = "";
        if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "Sl", &ar) && ar.currentline > 0)
            snprintf(where, sizeof where, "%s:%d: ", ar.short_src, ar.currentline);
        luar_logf(LUAR_LOG_WARN,
                  "%swebhook route %s does not verify signatures (verify = "
                  "false): anyone who can reach it can post events",
                  where, path);
    }
    lua_pushstring(L, path);
    return 1;
}

/* ---- webhooks.on --------------------------------------------------------------------- */

/* webhooks.on(route, pattern, [opts,] fn) [-n, +0] */
static int webhooks_on(lua_State *L)
{
    luar_vm_t *vm = luar_vm_of(L);
    const char *path = luaL_checkstring(L, 1);
    const char *pattern = luaL_checkstring(L, 2);
    int opts = lua_istable(L, 3) ? 3 : 0;
    int fn = opts ? 4 : 3;
    luaL_checktype(L, fn, LUA_TFUNCTION);
    if (!vm->loading && !vm->scripting)
        return luaL_error(L, "webhooks.on must be called while the scripts load");
    luar_webhook_route_t *route = luar_http_webhook_find(vm, path);
    if (route == NULL)
        return luaL_error(L,
                          "webhooks.on: no webhook route %s (declare it with "
                          "webhooks.route first)",
                          path);
    if (*pattern == '\0' || strlen(pattern) > LUAR_WEBHOOK_MAX_TYPE)
        return luaL_argerror(L, 2, "expected a type pattern such as \"charge.*\" or \"#\"");

    /* The handler's job options: the route's, then this call's. */
    const char *name = NULL;
    lua_createtable(L, 0, 6);
    int merged = lua_gettop(L);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, ROUTE_OPTS);
    lua_getfield(L, -1, path);
    for (const char *const *k = job_keys; lua_istable(L, -1) && *k != NULL; k++) {
        lua_getfield(L, -1, *k);
        lua_setfield(L, merged, *k);
    }
    lua_pop(L, 2);
    if (opts) {
        lua_pushnil(L);
        while (lua_next(L, opts) != 0) {
            const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
            if (k != NULL && strcmp(k, "name") == 0) {
                if (lua_type(L, -1) != LUA_TSTRING || lua_rawlen(L, -1) == 0 ||
                    lua_rawlen(L, -1) > 120)
                    return luaL_error(L, "webhooks.on: option name: expected a name of 1 to "
                                         "120 characters");
                name = lua_tostring(L, -1);
            } else if (k == NULL || !listed(job_keys, k)) {
                return luaL_error(L,
                                  "webhooks.on: unknown option %s (expected name, queue, "
                                  "retries, backoff, backoff_cap, timeout or priority)",
                                  k != NULL ? k : luaL_typename(L, -2));
            } else {
                lua_pushvalue(L, -2);
                lua_pushvalue(L, -2);
                lua_rawset(L, merged);
            }
            lua_pop(L, 1);
        }
    }
    if (lua_getfield(L, merged, "queue") == LUA_TNIL) {
        lua_pushliteral(L, "webhooks");
        lua_setfield(L, merged, "queue");
    }
    lua_pop(L, 1);

    luar_buf_t *job = luar_lua_newbuf(L, 512);
    if (name != NULL)
        luar_buf_appendf(job, "webhook:%s", name);
    else
        luar_buf_appendf(job, "webhook:%s:%s", path, pattern);

    if (luaL_loadbuffer(L, wrapper_src, sizeof wrapper_src - 1, "=luar.webhooks") != LUA_OK)
        return lua_error(L);
    lua_pushvalue(L, fn);
    lua_call(L, 1, 1);
    int wrapper = lua_gettop(L);

    luar_job_def_t d;
    memset(&d, 0, sizeof d);
    luar_jobs_read_options(L, merged, &d); /* raises having allocated nothing */
    int max_attempts = d.retries + 1, priority = d.priority;
    lua_pushstring(L, d.queue); /* a copy: the registry takes d's strings */
    const char *queue = lua_tostring(L, -1);
    lua_pushvalue(L, wrapper);
    d.fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (luar_webhook_route_is_sync(route)) {
        /* Runs inline, never enqueued: no job definition (the runner has nothing to claim
         * for it), and no name to collide. */
        free(d.queue);
        if (d.backoff_ref != LUA_NOREF)
            luaL_unref(L, LUA_REGISTRYINDEX, d.backoff_ref);
    } else {
        d.name = strdup(job->data);
        luar_jobs_registry_t *reg = luar_jobs_registry(vm);
        int rc = LUAR_ENOMEM;
        if (reg != NULL && d.name != NULL) {
            rc = luar_jobs_define(reg, &d); /* takes d's strings either way */
        } else {
            free(d.name);
            free(d.queue);
        }
        if (rc == LUAR_EEXISTS)
            return luaL_error(L,
                              "webhooks.on: a job named %s is already defined (another "
                              "handler for %s on %s? give one a `name`)",
                              job->data, pattern, path);
        if (rc != 0)
            return luaL_error(L, "webhooks.on: %s", luar_strerror(rc));
    }
    if (luar_webhook_route_add_handler(route, pattern, job->data, queue, max_attempts, priority,
                                       d.fn_ref) != 0)
        return luaL_error(L, "webhooks.on: not enough memory");
    return 0;
}

/* ---- sync routes --------------------------------------------------------------------- */

struct sync_setup {
    const luar_webhook_handler_t *h;
    const char *args;
    size_t args_len;
};

/* Pushes wrapper(args, {attempt = 1}). */
static int sync_setup(lua_State *L, void *arg)
{
    struct sync_setup *s = arg;
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->h->fn_ref);
    lua_pushlstring(L, s->args, s->args_len);
    if (luar_json_decode(L, -1) != 1)
        return luaL_error(L, "webhook event is not valid JSON");
    lua_remove(L, -2);
    lua_createtable(L, 0, 1);
    lua_pushinteger(L, 1);
    lua_setfield(L, -2, "attempt");
    return 2;
}

static void run_sync(void *arg, const luar_webhook_handler_t *h, luar_http_req_t *req,
                     const char *args, size_t args_len)
{
    luar_vm_t *vm = arg;
    struct sync_setup s = {h, args, args_len};
    luar_task_opts_t opts = {req->request_id, NULL, &req->trace};
    luar_buf_t err;
    luar_buf_init(&err, 4096);
    int rc = luar_task_spawn(vm, &opts, sync_setup, &s, luar_http_task_done, req, NULL, &err);
    if (rc != 0) {
        static const luar_http_header_t ct = {"Content-Type", 12, "application/json", 16};
        luar_logf(LUAR_LOG_ERROR, "webhook %s: the sync handler could not start: %s", req->route,
                  err.len > 0 ? err.data : luar_strerror(rc));
        if (rc == LUAR_ECLOSED) {
            static const char body[] = "{\"error\":\"service unavailable\"}";
            luar_http_respond(req, 503, &ct, 1, body, sizeof body - 1);
        } else {
            static const char body[] = "{\"error\":\"internal error\"}";
            luar_http_respond(req, 500, &ct, 1, body, sizeof body - 1);
        }
    }
    luar_buf_free(&err);
}

int luaopen_luar_webhooks(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"route", webhooks_route},          {"on", webhooks_on}, {"verify", luar_webhooks_verify},
        {"deliver", luar_webhooks_deliver}, {NULL, NULL},
    };
    luaL_newlib(L, fns);
    return 1;
}
