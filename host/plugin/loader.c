/*
 * The plugin loader (loader.h): dlopen, the descriptor's checks, init, the registration of
 * modules and schemes, fini. Every refusal is one line naming what was wrong; the path is
 * kept beside it, so listings and errors read "<path>: <why>".
 */
#include "plugin/plugin_internal.h"

#include "common/error.h"
#include "log/log.h"
#include "lua/modules.h"
#include "webhooks/scheme.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef LUAR_PLUGIN_INSTALL_DIR
#define LUAR_PLUGIN_INSTALL_DIR "/usr/local/lib/luar/plugins"
#endif
#define LUAR_PLUGIN_BUILD_DIR "build/plugins"
#define MAX_PLUGIN_NAME 64

static plugin_rec_t **g_plugins; /* every file found, loaded and refused, in load order */
static size_t g_nplugins;
static int g_loaded;

/* ---- records -------------------------------------------------------------------------- */

static void sync_info(plugin_rec_t *p)
{
    p->info.path = p->path;
    p->info.name = p->name;
    p->info.version = p->version;
    p->info.description = p->description;
    p->info.refused = p->refused;
}

static void refuse(plugin_rec_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void refuse(plugin_rec_t *p, const char *fmt, ...)
{
    luar_buf_t b;
    luar_buf_init(&b, 1024);
    va_list ap;
    va_start(ap, fmt);
    luar_buf_vappendf(&b, fmt, ap);
    va_end(ap);
    /* One line: a plugin's reason (init's err) may hold a newline. */
    for (size_t i = 0; i < b.len; i++)
        if (b.data[i] == '\n' || b.data[i] == '\r')
            b.data[i] = ' ';
    free(p->refused);
    p->refused = luar_buf_detach(&b, NULL);
    if (p->refused == NULL)
        p->refused = strdup("refused");
    sync_info(p);
}

static void config_copy(struct luar_plugin_config *dst, const struct luar_plugin_config *src,
                        const char *name)
{
    memset(dst, 0, sizeof *dst);
    dst->name = strdup(name);
    if (src == NULL || src->nvalues == 0)
        return;
    dst->values = calloc(src->nvalues, sizeof *dst->values);
    for (size_t i = 0; dst->values && i < src->nvalues; i++) {
        dst->values[i].key = strdup(src->values[i].key);
        dst->values[i].value = strdup(src->values[i].value);
        dst->values[i].type = src->values[i].type;
        if (dst->values[i].key && dst->values[i].value)
            dst->nvalues++;
        else {
            free(dst->values[i].key);
            free(dst->values[i].value);
            break;
        }
    }
}

static void config_free(struct luar_plugin_config *c)
{
    for (size_t i = 0; i < c->nvalues; i++) {
        explicit_bzero(c->values[i].value, strlen(c->values[i].value));
        free(c->values[i].key);
        free(c->values[i].value);
    }
    free(c->values);
    free(c->name);
    memset(c, 0, sizeof *c);
}

static void rec_free(plugin_rec_t *p)
{
    config_free(&p->config);
    free(p->path);
    free(p->name);
    free(p->version);
    free(p->description);
    free(p->refused);
    free(p->log_fields);
    free(p);
}

static int name_ok(const char *s)
{
    if (!(s[0] >= 'a' && s[0] <= 'z') || strlen(s) > MAX_PLUGIN_NAME)
        return 0;
    for (const char *c = s; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_'))
            return 0;
    return 1;
}

/* The loaded plugin named `name`, or NULL. */
static plugin_rec_t *find_loaded(const char *name)
{
    for (size_t i = 0; i < g_nplugins; i++)
        if (g_plugins[i]->inited && strcmp(g_plugins[i]->name, name) == 0)
            return g_plugins[i];
    return NULL;
}

/* Who registered scheme `name`: "the host", "plugin x (path)"; NULL when free. */
static const char *scheme_owner(const char *name, char *buf, size_t size)
{
    const luar_webhook_scheme_t *s = luar_webhook_scheme_find(name);
    if (s == NULL)
        return NULL;
    for (size_t i = 0; i < g_nplugins; i++) {
        const plugin_rec_t *p = g_plugins[i];
        if (!p->inited || p->desc->schemes == NULL)
            continue;
        for (size_t k = 0; p->desc->schemes[k]; k++) {
            if (p->desc->schemes[k] == s) {
                snprintf(buf, size, "plugin %s (%s)", p->name, p->path);
                return buf;
            }
        }
    }
    snprintf(buf, size, "the host");
    return buf;
}

/* Checks the descriptor's schemes before anything is registered. Returns 0 or refuses. */
static int check_schemes(plugin_rec_t *p)
{
    const luar_webhook_scheme_t *const *schemes = p->desc->schemes;
    for (size_t i = 0; schemes && schemes[i]; i++) {
        const luar_webhook_scheme_t *s = schemes[i];
        char owner[PATH_MAX + 100];
        if (s->name == NULL || s->name[0] == '\0') {
            refuse(p, "scheme %zu has no name", i + 1);
            return -1;
        }
        if (s->configure == NULL || s->verify == NULL || s->events == NULL) {
            refuse(p, "scheme \"%s\" lacks configure, verify or events", s->name);
            return -1;
        }
        if (scheme_owner(s->name, owner, sizeof owner)) {
            refuse(p, "scheme \"%s\" is already registered by %s", s->name, owner);
            return -1;
        }
        for (size_t k = 0; k < i; k++) {
            if (strcmp(schemes[k]->name, s->name) == 0) {
                refuse(p, "scheme \"%s\" is listed twice", s->name);
                return -1;
            }
        }
        if (luar_webhook_scheme_count() + i + 1 > LUAR_WEBHOOK_MAX_SCHEMES) {
            refuse(p, "scheme \"%s\": the registry is full (%d schemes)", s->name,
                   LUAR_WEBHOOK_MAX_SCHEMES);
            return -1;
        }
    }
    return 0;
}

/* The descriptor's checks; refuses and returns -1 on the first failure. */
static int check_descriptor(plugin_rec_t *p)
{
    const luar_plugin_t *d = p->desc;
    p->info.abi = d->abi;
    if (d->abi != LUAR_PLUGIN_ABI) {
        /* Nothing else of the descriptor is read: its layout may differ. */
        refuse(p, "built for plugin ABI %d, this luar has plugin ABI %d", d->abi,
               LUAR_PLUGIN_ABI);
        return -1;
    }
    if (d->name == NULL || d->name[0] == '\0') {
        refuse(p, "the descriptor has no name");
        return -1;
    }
    p->name = strndup(d->name, MAX_PLUGIN_NAME + 1);
    p->version = d->version ? strdup(d->version) : NULL;
    p->description = d->description ? strdup(d->description) : NULL;
    sync_info(p);
    if (!name_ok(d->name)) {
        refuse(p, "bad plugin name \"%s\": names are [a-z][a-z0-9_]*, at most %d characters",
               p->name, MAX_PLUGIN_NAME);
        return -1;
    }
    if (d->version == NULL || d->version[0] == '\0') {
        refuse(p, "the descriptor has no version");
        return -1;
    }
    const plugin_rec_t *other = find_loaded(p->name);
    if (other) {
        refuse(p, "duplicate plugin name \"%s\": already loaded from %s", p->name, other->path);
        return -1;
    }
    char module[MAX_PLUGIN_NAME + 8];
    snprintf(module, sizeof module, "luar.%s", p->name);
    if (luar_lua_module_exists(module)) {
        refuse(p, "plugin name \"%s\" is taken by the built-in module %s", p->name, module);
        return -1;
    }
    return check_schemes(p);
}

/* The Lua module of a plugin: its open() with its context. */
static int open_module(lua_State *L, void *ctx)
{
    plugin_rec_t *p = ctx;
    return p->desc->open(L, p->ctx);
}

static void log_fields(plugin_rec_t *p)
{
    luar_buf_t f;
    luar_buf_init(&f, 0);
    luar_buf_puts(&f, "\"plugin\":");
    luar_buf_append_json_string(&f, p->name, strlen(p->name));
    p->log_fields = luar_buf_detach(&f, NULL);
    if (p->log_fields == NULL)
        p->log_fields = strdup("");
}

/* Init, then the module and the schemes. Returns 0 or refuses. */
static int start(plugin_rec_t *p, const luar_config_t *cfg, uv_loop_t *loop)
{
    p->loop = loop;
    config_copy(&p->config, luar_config_plugin(cfg, p->name), p->name);
    log_fields(p);
    luar_plugin_host_init(p);
    if (p->desc->init) {
        char err[512] = "";
        int rc = p->desc->init(&p->host, &p->config, &p->ctx, err, sizeof err);
        err[sizeof err - 1] = '\0';
        if (rc != 0) {
            luar_plugin_host_release(p); /* timers or requests init started */
            refuse(p, "init failed: %s", err[0] ? err : luar_strerror(rc));
            return -1;
        }
    }
    p->inited = 1;
    if (p->desc->open) {
        char module[MAX_PLUGIN_NAME + 8];
        snprintf(module, sizeof module, "luar.%s", p->name);
        p->module_added = luar_lua_modules_add(module, open_module, p) == 0;
    }
    for (size_t i = 0; p->desc->schemes && p->desc->schemes[i]; i++)
        if (luar_webhook_scheme_register(p->desc->schemes[i]) == 0)
            p->nschemes++;
    return 0;
}

/* Loads one file (a refusal is recorded, not returned). */
static void load_file(const char *path, const luar_config_t *cfg, uv_loop_t *loop)
{
    plugin_rec_t **list = realloc(g_plugins, (g_nplugins + 1) * sizeof *list);
    plugin_rec_t *p = calloc(1, sizeof *p);
    if (list)
        g_plugins = list;
    if (list == NULL || p == NULL || (p->path = strdup(path)) == NULL) {
        free(p);
        return;
    }
    g_plugins[g_nplugins++] = p;
    p->info.abi = -1;
    sync_info(p);
    dlerror();
    p->handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (p->handle == NULL) {
        const char *e = dlerror();
        refuse(p, "cannot load: %s", e ? e : "dlopen failed");
        return;
    }
    p->desc = dlsym(p->handle, LUAR_PLUGIN_SYMBOL);
    if (p->desc == NULL) {
        refuse(p, "no \"%s\" symbol: not a luar plugin (export it with LUAR_PLUGIN_DEFINE)",
               LUAR_PLUGIN_SYMBOL);
    } else if (check_descriptor(p) == 0 && start(p, cfg, loop) == 0) {
        p->info.named = luar_config_plugin(cfg, p->name) != NULL;
        return;
    }
    if (p->name)
        p->info.named = luar_config_plugin(cfg, p->name) != NULL;
    dlclose(p->handle);
    p->handle = NULL;
    p->desc = NULL;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Nonzero when a file of the same real path was loaded already (a folder listed twice). */
static int seen(const char *real)
{
    for (size_t i = 0; i < g_nplugins; i++) {
        char r[PATH_MAX];
        if (realpath(g_plugins[i]->path, r) && strcmp(r, real) == 0)
            return 1;
    }
    return 0;
}

/* Loads every *.so of `dir` in name order. Returns 0, or -1 when it cannot be read. */
static int load_dir(const char *dir, const luar_config_t *cfg, uv_loop_t *loop)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return -1;
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len <= 3 || strcmp(e->d_name + len - 3, ".so") != 0 || e->d_name[0] == '.')
            continue;
        char **more = realloc(names, (n + 1) * sizeof *names);
        if (more == NULL)
            break;
        names = more;
        if ((names[n] = strdup(e->d_name)) != NULL)
            n++;
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        char path[PATH_MAX], real[PATH_MAX];
        struct stat st;
        int len = snprintf(path, sizeof path, "%s%s%s", dir,
                           dir[strlen(dir) - 1] == '/' ? "" : "/", names[i]);
        if (len > 0 && (size_t)len < sizeof path && stat(path, &st) == 0 &&
            S_ISREG(st.st_mode) && (realpath(path, real) == NULL || !seen(real)))
            load_file(path, cfg, loop);
        free(names[i]);
    }
    free(names);
    return 0;
}

/* The record a configured name refers to: loaded or refused, by descriptor or file name. */
static const plugin_rec_t *find_any(const char *name)
{
    const plugin_rec_t *by_file = NULL;
    for (size_t i = 0; i < g_nplugins; i++) {
        const plugin_rec_t *p = g_plugins[i];
        if (p->name && strcmp(p->name, name) == 0 && (p->inited || !by_file))
            by_file = p;
        if (p->inited && p->name && strcmp(p->name, name) == 0)
            return p;
    }
    if (by_file)
        return by_file;
    for (size_t i = 0; i < g_nplugins; i++) {
        const char *base = strrchr(g_plugins[i]->path, '/');
        base = base ? base + 1 : g_plugins[i]->path;
        size_t len = strlen(name);
        if (strncmp(base, name, len) == 0 && strcmp(base + len, ".so") == 0)
            return g_plugins[i];
    }
    return NULL;
}

int luar_plugins_load(const luar_config_t *cfg, uv_loop_t *loop, luar_buf_t *err)
{
    if (g_loaded)
        return LUAR_EBUSY;
    g_loaded = 1;
    int rc = luar_plugin_host_setup(loop);
    if (rc)
        return rc;
    int failed = 0;
    luar_buf_t dirs;
    luar_buf_init(&dirs, 0);
    if (cfg->nplugin_dirs > 0) {
        for (size_t i = 0; i < cfg->nplugin_dirs; i++) {
            luar_buf_appendf(&dirs, "%s%s", i ? ", " : "", cfg->plugin_dirs[i]);
            if (load_dir(cfg->plugin_dirs[i], cfg, loop) != 0) {
                luar_buf_appendf(err, "plugins.dir: cannot read %s: %s\n",
                                 cfg->plugin_dirs[i], strerror(errno));
                failed = 1;
            }
        }
    } else {
        luar_buf_appendf(&dirs, "%s, %s", LUAR_PLUGIN_INSTALL_DIR, LUAR_PLUGIN_BUILD_DIR);
        load_dir(LUAR_PLUGIN_INSTALL_DIR, cfg, loop);
        load_dir(LUAR_PLUGIN_BUILD_DIR, cfg, loop);
    }
    /* A plugin the configuration names must be there: the host does not start without it. */
    for (size_t i = 0; i < cfg->nplugins; i++) {
        const char *name = cfg->plugins[i].name;
        const plugin_rec_t *p = find_any(name);
        if (p && p->inited)
            continue;
        failed = 1;
        if (p)
            luar_buf_appendf(err, "plugins.%s: %s: %s\n", name, p->path, p->refused);
        else
            luar_buf_appendf(err, "plugins.%s: no plugin named %s in %s\n", name, name,
                             dirs.data ? dirs.data : "");
    }
    luar_buf_free(&dirs);
    return failed ? LUAR_ECONFIG : 0;
}

void luar_plugins_unload(void)
{
    if (!g_loaded)
        return;
    luar_plugins_use_vm(NULL);
    for (size_t i = g_nplugins; i-- > 0;) {
        plugin_rec_t *p = g_plugins[i];
        if (!p->inited)
            continue;
        char module[MAX_PLUGIN_NAME + 8];
        snprintf(module, sizeof module, "luar.%s", p->name);
        if (p->module_added)
            luar_lua_modules_remove(module);
        for (size_t k = 0; k < p->nschemes; k++)
            luar_webhook_scheme_unregister(p->desc->schemes[k]);
        if (p->desc->fini)
            p->desc->fini(p->ctx);
        luar_plugin_host_release(p);
        /* The object stays mapped: its strings may sit in a log buffer or a listing, and
         * leak checkers keep their symbols. */
    }
    for (size_t i = 0; i < g_nplugins; i++)
        rec_free(g_plugins[i]);
    free(g_plugins);
    g_plugins = NULL;
    g_nplugins = 0;
    luar_plugin_host_teardown();
    g_loaded = 0;
}

size_t luar_plugins_count(void)
{
    return g_nplugins;
}

const luar_plugin_info_t *luar_plugins_at(size_t i)
{
    return i < g_nplugins ? &g_plugins[i]->info : NULL;
}

void luar_plugins_log(void)
{
    for (size_t i = 0; i < g_nplugins; i++) {
        const plugin_rec_t *p = g_plugins[i];
        luar_buf_t f;
        luar_buf_init(&f, 0);
        if (p->name) {
            luar_buf_puts(&f, "\"plugin\":");
            luar_buf_append_json_string(&f, p->name, strlen(p->name));
            luar_buf_putc(&f, ',');
        }
        if (p->version) {
            luar_buf_puts(&f, "\"version\":");
            luar_buf_append_json_string(&f, p->version, strlen(p->version));
            luar_buf_putc(&f, ',');
        }
        luar_buf_puts(&f, "\"path\":");
        luar_buf_append_json_string(&f, p->path, strlen(p->path));
        if (p->refused) {
            luar_buf_puts(&f, ",\"error\":");
            luar_buf_append_json_string(&f, p->refused, strlen(p->refused));
            luar_log_write(LUAR_LOG_WARN, "plugin refused", 14, f.data, f.len);
        } else {
            luar_log_write(LUAR_LOG_INFO, "plugin loaded", 13, f.data, f.len);
        }
        luar_buf_free(&f);
    }
}

void luar_plugins_print_refused(FILE *f)
{
    for (size_t i = 0; i < g_nplugins; i++)
        if (g_plugins[i]->refused)
            fprintf(f, "luar: plugin %s: %s\n", g_plugins[i]->path, g_plugins[i]->refused);
}

void luar_plugins_print_errors(FILE *f, const char *text)
{
    for (const char *line = text; line && *line;) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        fprintf(f, "luar: %.*s\n", (int)len, line);
        line += len + (eol ? 1 : 0);
    }
}
