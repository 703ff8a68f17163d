/*
 * The plugin loader in-process: plugins.* in the configuration, the fixture plugins
 * (tests/fixtures/plugins, LUAR_FIXTURE_PLUGINS) loaded, refused and unloaded, their
 * modules in the module table and their schemes in the registry, and a VM using one.
 */
#include "common/buf.h"
#include "common/error.h"
#include "config/config.h"
#include "log/log.h"
#include "lua/modules.h"
#include "lua/task.h"
#include "lua/vm.h"
#include "metrics/metrics.h"
#include "plugin/loader.h"
#include "test.h"
#include "webhooks/scheme.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef LUAR_FIXTURE_PLUGINS
#define LUAR_FIXTURE_PLUGINS "build/tests/fixtures/plugins"
#endif

static char tmpdir[64];

/* Loads a configuration file holding `text`. Returns luar_config_load's code. */
static int load_conf(const char *text, luar_config_t *cfg, luar_buf_t *err)
{
    char path[128];
    snprintf(path, sizeof path, "%s/luar.conf.lua", tmpdir);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return LUAR_EIO;
    fputs(text, f);
    fclose(f);
    luar_config_flags_t flags = {.config = path, .data = tmpdir};
    return luar_config_load(cfg, &flags, err);
}

static const char *value_of(const struct luar_plugin_config *p, const char *key, int *type)
{
    for (size_t i = 0; p && i < p->nvalues; i++) {
        if (strcmp(p->values[i].key, key) == 0) {
            if (type)
                *type = p->values[i].type;
            return p->values[i].value;
        }
    }
    return NULL;
}

TEST(test_config_flattens_plugin_tables)
{
    luar_config_t cfg;
    luar_buf_t err;
    luar_buf_init(&err, 0);
    int rc = load_conf("return { plugins = { dir = { 'a', 'b' },\n"
                       "  stripe = { api_key = 'sk', retry = { max = 3, on = true },\n"
                       "             hosts = { 'h1', 'h2' }, ratio = 0.5 },\n"
                       "  empty = {} } }\n",
                       &cfg, &err);
    CHECK_EQ_INT(rc, 0);
    if (rc == 0) {
        CHECK_EQ_INT(cfg.nplugin_dirs, 2);
        CHECK_EQ_STR(cfg.plugin_dirs[0], "a");
        CHECK_EQ_STR(cfg.plugin_dirs[1], "b");
        const struct luar_plugin_config *s = luar_config_plugin(&cfg, "stripe");
        int type = 0;
        CHECK_EQ_STR(value_of(s, "api_key", &type), "sk");
        CHECK_EQ_INT(type, LUA_TSTRING);
        CHECK_EQ_STR(value_of(s, "retry.max", &type), "3");
        CHECK_EQ_INT(type, LUA_TNUMBER);
        CHECK_EQ_STR(value_of(s, "retry.on", &type), "true");
        CHECK_EQ_INT(type, LUA_TBOOLEAN);
        CHECK_EQ_STR(value_of(s, "hosts.2", NULL), "h2");
        CHECK_EQ_STR(value_of(s, "ratio", NULL), "0.5");
        CHECK(luar_config_plugin(&cfg, "empty") != NULL);
        CHECK(luar_config_plugin(&cfg, "absent") == NULL);
        luar_config_free(&cfg);
    }
    luar_buf_free(&err);
}

TEST(test_config_rejects_bad_plugin_entries)
{
    static const struct {
        const char *text;
        const char *error;
    } cases[] = {
        {"return { plugins = { dir = 3 } }", "plugins.dir: expected a folder or a list of "
                                             "folders, got number"},
        {"return { plugins = { dir = { 'a', 4 } } }", "plugins.dir: entry 2: expected a "
                                                      "folder name, got number"},
        {"return { plugins = { Stripe = {} } }", "plugins.Stripe: plugin names are "
                                                 "[a-z][a-z0-9_]* (at most 64 characters)"},
        {"return { plugins = { stripe = 'sk' } }", "plugins.stripe: expected a table (the "
                                                   "plugin's settings), got string"},
        {"return { plugins = { stripe = { f = print } } }", "plugins.stripe.f: expected a "
                                                            "string, number, boolean or "
                                                            "table, got function"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        luar_config_t cfg;
        luar_buf_t err;
        luar_buf_init(&err, 0);
        CHECK_EQ_INT(load_conf(cases[i].text, &cfg, &err), LUAR_ECONFIG);
        if (err.data == NULL || strstr(err.data, cases[i].error) == NULL)
            fprintf(stderr, "case %zu: got %s\n", i, err.data ? err.data : "(nothing)");
        CHECK(err.data && strstr(err.data, cases[i].error));
        luar_buf_free(&err);
    }
    /* A key that does not fit (alone, or joined to its parents') is refused, not cut:
     * cut, it could name another setting. The path in the message is cut, with "…". */
    char text[1024], a[201], b[101];
    memset(a, 'a', 200), a[200] = 0;
    memset(b, 'b', 100), b[100] = 0;
    const char *fits = "return { plugins = { p = { %s = { x = 1 } } } }";
    const char *too_long = "return { plugins = { p = { %s = { %s = 1 } } } }";
    for (int i = 0; i < 2; i++) {
        luar_config_t cfg;
        luar_buf_t err;
        luar_buf_init(&err, 0);
        snprintf(text, sizeof text, i ? too_long : fits, a, b);
        int rc = load_conf(text, &cfg, &err);
        if (i == 0) {
            CHECK_EQ_INT(rc, 0);
            luar_config_free(&cfg);
        } else {
            CHECK_EQ_INT(rc, LUAR_ECONFIG);
            CHECK(err.data && strstr(err.data, "plugins.p.aaaa") &&
                  strstr(err.data, "\xe2\x80\xa6: key longer than 255 bytes"));
        }
        luar_buf_free(&err);
    }
}

static const luar_plugin_info_t *info_of(const char *file)
{
    for (size_t i = 0; i < luar_plugins_count(); i++) {
        const char *p = luar_plugins_at(i)->path;
        size_t n = strlen(p), m = strlen(file);
        if (n >= m && strcmp(p + n - m, file) == 0)
            return luar_plugins_at(i);
    }
    return NULL;
}

/* A chunk run as a task in `vm`, to completion; its string result in `out`. */
struct chunk {
    const char *code;
    int done, status;
    char out[256];
};

static int chunk_setup(lua_State *L, void *arg)
{
    struct chunk *c = arg;
    if (luaL_loadstring(L, c->code) != LUA_OK)
        return lua_error(L);
    return 0;
}

static void chunk_done(luar_task_t *task, int status, void *arg)
{
    struct chunk *c = arg;
    c->done = 1;
    c->status = status;
    const char *s = status == 0 && luar_task_results(task) > 0
                        ? lua_tostring(luar_task_thread(task), -luar_task_results(task))
                        : luar_task_error(task);
    snprintf(c->out, sizeof c->out, "%s", s ? s : "(nil)");
}

TEST(test_loader_loads_refuses_and_unloads)
{
    luar_config_t cfg;
    luar_buf_t err;
    luar_buf_init(&err, 0);
    char text[1024];
    snprintf(text, sizeof text,
             "return { plugins = { dir = { '%s/good', '%s/abi', '%s/dup', '%s/initfail' },\n"
             "  fixture = { greeting = 'unit' } } }\n",
             LUAR_FIXTURE_PLUGINS, LUAR_FIXTURE_PLUGINS, LUAR_FIXTURE_PLUGINS,
             LUAR_FIXTURE_PLUGINS);
    CHECK_EQ_INT(load_conf(text, &cfg, &err), 0);
    uv_loop_t loop;
    uv_loop_init(&loop);
    size_t schemes_before = luar_webhook_scheme_count();
    CHECK_EQ_INT(luar_plugins_load(&cfg, &loop, &err), 0);
    CHECK_EQ_INT(luar_plugins_load(&cfg, &loop, &err), LUAR_EBUSY);
    CHECK_EQ_INT(luar_plugins_count(), 5);
    const luar_plugin_info_t *good = info_of("/good/fixture.so");
    CHECK(good && good->refused == NULL && good->named && good->abi == 1);
    CHECK(good && strcmp(good->name, "fixture") == 0 && strcmp(good->version, "1.2.3") == 0);
    const luar_plugin_info_t *abi = info_of("/abi/wrong_abi.so");
    CHECK(abi && abi->abi == 999 && abi->name == NULL && !abi->named);
    CHECK(abi && abi->refused &&
          strcmp(abi->refused, "built for plugin ABI 999, this luar has plugin ABI 1") == 0);
    const luar_plugin_info_t *dup = info_of("/dup/dup_b.so");
    CHECK(dup && dup->refused && strstr(dup->refused, "duplicate plugin name \"dup\": already "
                                                      "loaded from ") == dup->refused);
    CHECK(info_of("/dup/dup_a.so") && info_of("/dup/dup_a.so")->refused == NULL);
    const luar_plugin_info_t *initfail = info_of("/initfail/initfail.so");
    CHECK(initfail && initfail->refused &&
          strcmp(initfail->refused, "init failed: plugins.initfail.token is not set") == 0);
    /* the fixture's scheme joined the registry; its module and dup's joined the table */
    CHECK(luar_webhook_scheme_find("fixture") != NULL);
    CHECK_EQ_INT(luar_webhook_scheme_count(), schemes_before + 1);
    CHECK(luar_lua_module_exists("luar.fixture") && luar_lua_module_exists("luar.dup"));
    CHECK(!luar_lua_module_exists("luar.initfail"));

    /* a VM created now can require it, and its functions reach the host */
    luar_vm_config_t vc = {.loop = &loop, .main_file = "", .generation = 1};
    luar_vm_t *vm = NULL;
    CHECK_EQ_INT(luar_vm_new(&vc, &vm, &err), 0);
    struct chunk c = {.code = "local fx = require 'luar.fixture'\n"
                              "assert(fx.sleep(0.01))\n"
                              "return fx.config('greeting') .. ' ' .. fx.host().plugin .. ' ' ..\n"
                              "       require('luar.dup').name"};
    if (vm) {
        CHECK_EQ_INT(luar_task_spawn(vm, NULL, chunk_setup, &c, chunk_done, &c, NULL, NULL), 0);
        while (!c.done && uv_run(&loop, UV_RUN_ONCE))
            ;
        CHECK_EQ_INT(c.status, 0);
        CHECK_EQ_STR(c.out, "unit fixture dup");
        luar_vm_retire(vm);
    }
    uv_run(&loop, UV_RUN_DEFAULT);

    luar_plugins_unload();
    CHECK_EQ_INT(luar_plugins_count(), 0);
    CHECK(luar_webhook_scheme_find("fixture") == NULL);
    CHECK_EQ_INT(luar_webhook_scheme_count(), schemes_before);
    CHECK(!luar_lua_module_exists("luar.fixture"));
    uv_run(&loop, UV_RUN_DEFAULT); /* the handles the plugin left close */
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
    luar_config_free(&cfg);
    luar_buf_free(&err);
}

TEST(test_named_refused_or_missing_plugins_fail_the_load)
{
    luar_config_t cfg;
    luar_buf_t err;
    luar_buf_init(&err, 0);
    char text[512];
    snprintf(text, sizeof text,
             "return { plugins = { dir = '%s/nosym', no_symbol = {}, ghost = {} } }\n",
             LUAR_FIXTURE_PLUGINS);
    CHECK_EQ_INT(load_conf(text, &cfg, &err), 0);
    uv_loop_t loop;
    uv_loop_init(&loop);
    CHECK_EQ_INT(luar_plugins_load(&cfg, &loop, &err), LUAR_ECONFIG);
    char expected[1024];
    snprintf(expected, sizeof expected,
             "plugins.no_symbol: %s/nosym/no_symbol.so: no \"luar_plugin\" symbol: not a luar "
             "plugin (export it with LUAR_PLUGIN_DEFINE)\n"
             "plugins.ghost: no plugin named ghost in %s/nosym\n",
             LUAR_FIXTURE_PLUGINS, LUAR_FIXTURE_PLUGINS);
    /* the configuration's table order is Lua's: compare as a set of lines */
    CHECK(err.data && strlen(err.data) == strlen(expected));
    char *line = strtok(expected, "\n");
    for (; line; line = strtok(NULL, "\n"))
        CHECK(err.data && strstr(err.data, line));
    luar_plugins_unload();
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
    luar_config_free(&cfg);
    luar_buf_free(&err);
}

TEST(test_modules_table_add_and_remove)
{
    CHECK_EQ_INT(luar_lua_modules_add("luar.http", NULL, NULL), LUAR_EEXISTS);
    CHECK_EQ_INT(luar_lua_modules_remove("luar.nothing"), LUAR_ENOTFOUND);
    CHECK_EQ_INT(luar_webhook_scheme_unregister(luar_webhook_scheme_find("standard")),
                 LUAR_EINVAL);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/luar-test-plugin-XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return 1;
    luar_log_set_level(LUAR_LOG_ERROR);
    RUN(test_config_flattens_plugin_tables);
    RUN(test_config_rejects_bad_plugin_entries);
    RUN(test_loader_loads_refuses_and_unloads);
    RUN(test_named_refused_or_missing_plugins_fail_the_load);
    RUN(test_modules_table_add_and_remove);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    luar_metrics_reset();
    return DONE();
}
