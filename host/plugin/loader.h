/*
 * The plugin loader (SPEC §5): finds the shared objects in the plugin folders, checks
 * their descriptor (luar/plugin.h), calls init() with the host API table and the plugin's
 * `plugins.<name>` configuration, adds their `luar.<name>` modules to the module table
 * (lua/modules.h) and their webhook schemes to the scheme registry (webhooks/scheme.h),
 * and calls fini() at shutdown.
 *
 * Folders: `plugins.dir` (a string or a list) when the configuration sets it, else the
 * install's plugin folder (LUAR_PLUGIN_INSTALL_DIR, baked in at build time) then
 * ./build/plugins. Every `*.so` directly in a folder is a plugin; folders are read in
 * order, files in name order. A default folder that does not exist is skipped; a
 * configured one that cannot be read is an error.
 *
 * A plugin is refused (and listed with the reason by `luar plugins`) when its file cannot
 * be loaded, lacks the `luar_plugin` symbol, was built for another ABI, has a bad or taken
 * name, has a bad or taken scheme, or its init() fails. The host runs without a refused
 * plugin, unless the configuration names it (`plugins.<name>` is present): then
 * luar_plugins_load() fails and the host refuses to start with the reason.
 *
 * Once per process: every command that runs scripts or handles schemes loads the plugins
 * after the configuration and before the first VM; with `workers = N` each worker (and
 * the supervisor, which loads the scripts to check them) loads and inits them itself.
 * Loop thread only.
 */
#ifndef LUAR_PLUGIN_LOADER_H
#define LUAR_PLUGIN_LOADER_H

#include "common/buf.h"
#include "config/config.h"
#include "lua/vm.h"

#include <stdio.h>
#include <uv.h>

/* What `luar plugins` shows of one plugin file: loaded, or refused and why. */
typedef struct luar_plugin_info {
    const char *path;        /* the file, as found (folder + name) */
    const char *name;        /* the descriptor's name; NULL when it could not be read */
    const char *version;     /* NULL when unknown */
    const char *description; /* NULL when none */
    int abi;                 /* the descriptor's ABI; -1 when there is no descriptor */
    const char *refused;     /* NULL when loaded; else one line saying why */
    int named;               /* the configuration names it (plugins.<name>) */
} luar_plugin_info_t;

/*
 * Loads the plugins of `cfg` on `loop` (which must outlive luar_plugins_unload). Returns 0,
 * or LUAR_ECONFIG with one line per reason in `err` ("<path>: <why>") when the host must
 * not start: a plugin the configuration names was refused or not found, or a configured
 * folder cannot be read. Plugins that loaded stay loaded either way (unload them). Calling
 * it again without an unload in between is LUAR_EBUSY.
 */
int luar_plugins_load(const luar_config_t *cfg, uv_loop_t *loop, luar_buf_t *err);

/*
 * Calls every loaded plugin's fini() (in reverse load order) after the last Lua VM has
 * closed, stops what the plugins left running (timers, HTTP requests), and removes their
 * modules and schemes. The shared objects stay mapped until the process exits. No-op when
 * nothing is loaded.
 */
void luar_plugins_unload(void);

/* Every plugin file found by the last load, loaded and refused, in load order. */
size_t luar_plugins_count(void);
const luar_plugin_info_t *luar_plugins_at(size_t i);

/* Logs one line per plugin: info for the loaded, warn for the refused (serve). */
void luar_plugins_log(void);

/* Prints each line of `text` (luar_plugins_load's err) to `f` as "luar: <line>". */
void luar_plugins_print_errors(FILE *f, const char *text);

/* Prints one "luar: plugin <path>: <why>" line per refused plugin to `f` (commands). */
void luar_plugins_print_refused(FILE *f);

/* Tells the plugins' job_enqueue which VM's job definitions give a job's queue and
 * retries (the current generation); NULL: none. */
void luar_plugins_use_vm(luar_vm_t *vm);

#endif
