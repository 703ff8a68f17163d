/*
 * The insides of the plugin loader, shared by loader.c and host_api.c only: the record of
 * one loaded plugin, whose first member is the host API table handed to it, so a
 * `const luar_host_t *` given back by the plugin leads to its record.
 */
#ifndef LUAR_PLUGIN_INTERNAL_H
#define LUAR_PLUGIN_INTERNAL_H

#include "common/buf.h"
#include "config/config.h"
#include "plugin/loader.h"

#include <luar/plugin.h>
#include <uv.h>

struct luar_plugin_timer;
struct luar_plugin_http_call;
struct secret_copy;

typedef struct plugin_rec {
    luar_host_t host;            /* first: (plugin_rec_t *)host_table */
    luar_plugin_info_t info;     /* what listings show; strings owned below */
    char *path;
    char *name;
    char *version;
    char *description;
    char *refused;
    void *handle;                /* dlopen's */
    const luar_plugin_t *desc;
    void *ctx;                   /* what init stored */
    int inited;                  /* init succeeded: fini is due */
    uv_loop_t *loop;
    struct luar_plugin_config config; /* a copy of plugins.<name> (empty when absent) */
    char *log_fields;            /* "\"plugin\":\"<name>\"" for log lines */
    size_t nschemes;             /* schemes registered */
    int module_added;
    struct luar_plugin_timer *timers;      /* started, not stopped */
    struct luar_plugin_http_call *calls;   /* started, not completed */
    struct secret_copy *secrets;           /* values secret_get handed out */
} plugin_rec_t;

/* host_api.c: the keep-alive handle of plugins' pending Lua calls, on `loop`; closed by
 * teardown (after the last VM closed). Returns 0 or LUAR_ENOMEM. */
int luar_plugin_host_setup(uv_loop_t *loop);
void luar_plugin_host_teardown(void);

/* host_api.c: fills the table of `p` (every function, size, abi, version, plugin name). */
void luar_plugin_host_init(plugin_rec_t *p);

/* host_api.c: after fini: stops the timers and requests the plugin left, frees the copies
 * of secrets. */
void luar_plugin_host_release(plugin_rec_t *p);

#endif
