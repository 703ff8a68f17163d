/*
 * The VM: a lua_State with a capped allocator, the sandboxed standard library, the luar.*
 * modules, and the entry file; reference-counted retirement; `luar run` and `luar test`.
 */
#include "lua/vm.h"

#include "common/error.h"
#include "log/log.h"
#include "lua/mod_webhooks.h"
#include "lua/modules.h"
#include "lua/vm_internal.h"
#include "jobs/jobs.h"
#include "metrics/metrics.h"
#include "secrets/redact.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_MEM_LIMIT ((size_t)256 * 1024 * 1024)
#define DEFAULT_CPU_BUDGET 5.0

/* Fails allocations that would take the state past its cap; Lua then raises ERRMEM. */
static void *vm_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    luar_vm_t *vm = ud;
    size_t old = ptr != NULL ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        vm->mem_used -= old;
        return NULL;
    }
    if (nsize > old && vm->mem_used + (nsize - old) > vm->mem_limit && !vm->closing)
        return NULL;
    void *p = realloc(ptr, nsize);
    if (p == NULL)
        return NULL;
    vm->mem_used = vm->mem_used - old + nsize;
    return p;
}

static int vm_panic(lua_State *L)
{
    const char *msg = lua_tostring(L, -1);
    luar_logf(LUAR_LOG_ERROR, "unprotected Lua error: %s", msg != NULL ? msg : "?");
    luar_log_flush();
    abort();
    return 0;
}

luar_vm_t *luar_vm_of(lua_State *L)
{
    void *ud = NULL;
    lua_getallocf(L, &ud);
    return ud;
}

int luar_vm_pcall(luar_vm_t *vm, lua_CFunction fn, void *ud, luar_buf_t *err)
{
    lua_State *L = vm->L;
    luar_task_t *saved = vm->current;
    if (saved == NULL) {
        vm->current = &vm->host_task;
        vm->host_task.kill = TASK_KILL_NONE;
        vm->host_task.resume_ns = uv_hrtime();
    }
    int top = lua_gettop(L);
    lua_pushcfunction(L, fn);
    lua_pushlightuserdata(L, ud);
    int rc = lua_pcall(L, 1, 0, 0);
    if (rc != LUA_OK && err != NULL) {
        const char *msg = lua_tostring(L, -1);
        if (vm->current == &vm->host_task && vm->host_task.kill != TASK_KILL_NONE)
            msg = vm->host_task.kill_msg;
        luar_buf_appendf(err, "%s\n", msg != NULL ? msg : "(error object is not a string)");
    }
    lua_settop(L, top);
    if (saved == NULL) {
        if (vm->host_task.kill != TASK_KILL_NONE)
            lua_sethook(L, luar_task_hook, luar_task_hook_mask(), LUAR_TASK_HOOK_COUNT);
        vm->current = NULL;
    }
    if (rc == LUA_ERRMEM)
        return LUAR_ENOMEM;
    return rc == LUA_OK ? 0 : LUAR_ELUA;
}

void luar_vm_count_error(const char *where)
{
    static const char *const labels[] = {"where"};
    luar_metric_t *m = NULL;
    if (luar_metrics_register(LUAR_METRIC_COUNTER, "luar_lua_errors_total",
                              "Lua errors by where they happened", labels, 1, NULL, 0, &m,
                              NULL) != 0)
        return;
    const char *values[] = {where};
    luar_metric_add(m, values, 1);
}

static void set_package_path(lua_State *L, const char *scripts_dir)
{
    lua_getglobal(L, "package");
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    if (scripts_dir != NULL && scripts_dir[0] != '\0') {
        lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", scripts_dir, scripts_dir);
        luaL_addvalue(&b);
    }
    lua_getfield(L, -2, "path");
    luaL_addvalue(&b);
    luaL_pushresult(&b);
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
}

/* Opens the libraries, the sandbox and the modules. [-0, +0] */
static int vm_open(lua_State *L)
{
    luar_vm_t *vm = lua_touserdata(L, 1);
    luaL_openlibs(L);
    luar_lua_sandbox(L);
    set_package_path(L, vm->scripts_dir);
    luar_lua_open_modules(L);
    /* Built-in jobs exist in every generation, whatever the scripts require. */
    luar_webhooks_deliver_define(L);
    return 0;
}

/* Message handler: "file:line: message" for strings, __tostring for others. */
static int load_msgh(lua_State *L)
{
    if (lua_type(L, 1) != LUA_TSTRING)
        luaL_tolstring(L, 1, NULL);
    return 1;
}

/* Loads and runs the entry file on the main thread, where nothing may yield. [-0, +0] */
static int vm_load_main(lua_State *L)
{
    luar_vm_t *vm = lua_touserdata(L, 1);
    if (luaL_loadfile(L, vm->main_file) != LUA_OK)
        return lua_error(L);
    lua_pushcfunction(L, load_msgh);
    lua_insert(L, -2);
    if (lua_pcall(L, 0, 0, -2) != LUA_OK)
        return lua_error(L);
    return 0;
}

static void vm_free(luar_vm_t *vm)
{
    free(vm->scripts_dir);
    free(vm->main_file);
    free(vm);
}

static void idle_closed(uv_handle_t *h)
{
    vm_free(h->data);
}

static void vm_close(luar_vm_t *vm)
{
    vm->closing = 1;
    luar_task_cancel_all(vm, "the VM is closing");
    /* Finalizers run now; keep them under the CPU budget too. */
    vm->current = &vm->host_task;
    vm->host_task.kill = TASK_KILL_NONE;
    vm->host_task.resume_ns = uv_hrtime();
    lua_close(vm->L);
    vm->L = NULL;
    vm->current = NULL;
    luar_http_router_free(vm);
    luar_jobs_registry_free(vm->jobs);
    vm->jobs = NULL;
    if (vm->close_cb != NULL)
        vm->close_cb(vm->close_arg);
    if (vm->idle_inited)
        uv_close((uv_handle_t *)&vm->idle, idle_closed);
    else
        vm_free(vm);
}

int luar_vm_new(const luar_vm_config_t *cfg, luar_vm_t **out, luar_buf_t *err)
{
    *out = NULL;
    int rc = LUAR_ENOMEM;
    luar_vm_t *vm = calloc(1, sizeof *vm);
    if (vm == NULL)
        return LUAR_ENOMEM;
    vm->loop = cfg->loop;
    vm->mem_limit = cfg->mem_limit != 0 ? cfg->mem_limit : DEFAULT_MEM_LIMIT;
    vm->cpu_budget = cfg->cpu_budget > 0 ? cfg->cpu_budget : DEFAULT_CPU_BUDGET;
    vm->budget_ns = (uint64_t)(vm->cpu_budget * 1e9);
    vm->generation = cfg->generation;
    vm->host_task.vm = vm;
    vm->host_task.pseudo = 1;
    vm->host_task.exit_status = -1;
    if (cfg->scripts_dir != NULL) {
        vm->scripts_dir = strdup(cfg->scripts_dir);
        if (vm->scripts_dir == NULL)
            goto fail;
    }
    if (cfg->main_file != NULL)
        vm->main_file = strdup(cfg->main_file);
    else if (cfg->scripts_dir != NULL &&
             asprintf(&vm->main_file, "%s/main.lua", cfg->scripts_dir) < 0)
        vm->main_file = NULL;
    if ((cfg->main_file != NULL || cfg->scripts_dir != NULL) && vm->main_file == NULL)
        goto fail;
    vm->L = lua_newstate(vm_alloc, vm);
    if (vm->L == NULL)
        goto fail;
    lua_atpanic(vm->L, vm_panic);
    lua_sethook(vm->L, luar_task_hook, luar_task_hook_mask(), LUAR_TASK_HOOK_COUNT);
    rc = luar_vm_pcall(vm, vm_open, vm, err);
    if (rc != 0)
        goto fail;
    if (vm->main_file != NULL && vm->main_file[0] != '\0') {
        vm->loading = 1;
        rc = luar_vm_pcall(vm, vm_load_main, vm, err);
        vm->loading = 0;
        if (rc != 0)
            goto fail;
    }
    *out = vm;
    return 0;
fail:
    if (vm->L != NULL) {
        vm->retired = 1;
        vm_close(vm);
    } else {
        vm_free(vm);
    }
    if (rc == 0)
        rc = LUAR_ENOMEM;
    return rc == LUAR_ENOMEM ? LUAR_ENOMEM : LUAR_ELUA;
}

/* Closes a retired VM once nothing runs in it and nothing holds it. */
static void close_if_done(luar_vm_t *vm)
{
    if (vm->retired && vm->ntasks == 0 && vm->holds == 0 && !vm->closing)
        vm_close(vm);
}

void luar_vm_retire(luar_vm_t *vm)
{
    vm->retired = 1;
    close_if_done(vm);
}

void luar_vm_shutdown(luar_vm_t *vm, const char *reason)
{
    vm->retired = 1;
    luar_task_cancel_all(vm, reason != NULL ? reason : "the host is shutting down");
    close_if_done(vm);
}

void luar_vm_task_ended(luar_vm_t *vm)
{
    close_if_done(vm);
}

void luar_vm_hold(luar_vm_t *vm)
{
    vm->holds++;
}

void luar_vm_release(luar_vm_t *vm)
{
    vm->holds--;
    close_if_done(vm);
}

void luar_vm_set_close_cb(luar_vm_t *vm, void (*cb)(void *arg), void *arg)
{
    vm->close_cb = cb;
    vm->close_arg = arg;
}

size_t luar_vm_tasks(const luar_vm_t *vm)
{
    return vm->ntasks;
}

size_t luar_vm_memory(const luar_vm_t *vm)
{
    return vm->mem_used;
}

/* ---- luar run ---- */

struct run {
    const char *path;
    int argc;
    char **argv;
    void (*done)(int status, void *arg);
    void *arg;
};

/* Pushes the script's chunk and its arguments; sets the global `arg`. */
static int run_file_setup(lua_State *L, void *arg)
{
    struct run *r = arg;
    lua_createtable(L, r->argc, 1);
    lua_pushstring(L, r->path);
    lua_rawseti(L, -2, 0);
    for (int i = 0; i < r->argc; i++) {
        lua_pushstring(L, r->argv[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setglobal(L, "arg");
    if (luaL_loadfile(L, r->path) != LUA_OK)
        return lua_error(L);
    luaL_checkstack(L, r->argc, "too many arguments");
    for (int i = 0; i < r->argc; i++)
        lua_pushstring(L, r->argv[i]);
    return r->argc;
}

static void run_done(luar_task_t *task, int status, void *arg)
{
    struct run *r = arg;
    int exit_status = 0;
    fflush(stdout);
    if (luar_task_exit_status(task) >= 0) {
        exit_status = luar_task_exit_status(task);
    } else if (status != 0) {
        luar_buf_t e, t;
        luar_buf_init(&e, 0);
        luar_buf_init(&t, 0);
        fprintf(stderr, "luar: %s\n%s\n", luar_secret_clean(luar_task_error(task), &e),
                luar_secret_clean(luar_task_traceback(task), &t));
        luar_buf_free(&e);
        luar_buf_free(&t);
        luar_vm_count_error("run");
        exit_status = 1;
    }
    r->done(exit_status, r->arg);
    free(r);
}

/* Starts `setup` in a script task (`luar run`, `luar test`); errors go to stderr. */
static int spawn_script(luar_vm_t *vm, const char *name, luar_task_setup_fn setup,
                        int argc, char **argv, void (*done)(int status, void *arg), void *arg)
{
    struct run *r = calloc(1, sizeof *r);
    if (r == NULL)
        return LUAR_ENOMEM;
    *r = (struct run){name, argc, argv, done, arg};
    luar_buf_t err;
    luar_buf_init(&err, 4096);
    vm->scripting = 1;
    int rc = luar_task_spawn(vm, NULL, setup, r, run_done, r, NULL, &err);
    if (rc != 0) {
        fprintf(stderr, "luar: %s", err.len > 0 ? err.data : luar_strerror(rc));
        if (err.len == 0)
            fputc('\n', stderr);
        free(r);
    }
    luar_buf_free(&err);
    return rc;
}

int luar_vm_run_file(luar_vm_t *vm, const char *path, int argc, char **argv,
                     void (*done)(int status, void *arg), void *arg)
{
    return spawn_script(vm, path, run_file_setup, argc, argv, done, arg);
}

/* ---- luar test ---- */

/* busted's exit(code[, force]), handed to the runner only: records the status and stops. */
static int test_exit(lua_State *L)
{
    int status = lua_isboolean(L, 1) ? !lua_toboolean(L, 1) : (luaL_optinteger(L, 1, 0) != 0);
    fflush(stdout);
    return luar_task_exit(L, status);
}

/* Starts a new CPU budget period for the runner: each spec gets the whole budget. */
static int test_reset_budget(lua_State *L)
{
    luar_task_t *t = luar_task_current(L);
    if (t != NULL && t->kill == TASK_KILL_NONE)
        t->resume_ns = uv_hrtime();
    return 0;
}

/* The runner: busted with a private exit and a budget period per test. */
static const char test_runner[] =
    "local exit, reset_budget = ...\n"
    "require('busted.compatibility').exit = exit\n"
    "local new_core = require('busted.core')\n"
    "package.loaded['busted.core'] = function(...)\n"
    "  local busted = new_core(...)\n"
    "  if package.preload['luar.test'] then require('luar.test')._attach(busted) end\n"
    "  busted.subscribe({ 'test', 'start' }, function() reset_budget() return nil, true end)\n"
    "  return busted\n"
    "end\n"
    "require('busted.runner')({ standalone = false })\n";

static int run_tests_setup(lua_State *L, void *arg)
{
    struct run *r = arg;
    lua_createtable(L, r->argc, 1);
    lua_pushliteral(L, "luar test");
    lua_rawseti(L, -2, 0);
    for (int i = 0; i < r->argc; i++) {
        lua_pushstring(L, r->argv[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setglobal(L, "arg");
    if (luaL_loadbuffer(L, test_runner, sizeof test_runner - 1, "=luar test") != LUA_OK)
        return lua_error(L);
    lua_pushcfunction(L, test_exit);
    lua_pushcfunction(L, test_reset_budget);
    return 2;
}

int luar_vm_run_tests(luar_vm_t *vm, int argc, char **argv, void (*done)(int status, void *arg),
                      void *arg)
{
    return spawn_script(vm, "luar test", run_tests_setup, argc, argv, done, arg);
}
