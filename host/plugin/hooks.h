/*
 * The plugins' hooks (luar/plugin.h: on_error, on_log, on_span, on_stop; redact and
 * context beside them): how an error reporter such as the Sentry plugin hears about
 * uncaught Lua errors, log lines, spans and the final drain. The host's error sites call
 * luar_plugin_report_error instead of writing their error line themselves, so the line
 * and the hooks see the same, scrubbed, error.
 * Loop thread only.
 */
#ifndef LUAR_PLUGIN_HOOKS_H
#define LUAR_PLUGIN_HOOKS_H

#include "common/buf.h"

#include <luar/plugin.h>
#include <stddef.h>

/*
 * Gives `e` to the on_error hooks, its strings scrubbed of secret values and its
 * timestamp set, then writes the error's log line (`msg` with `fields`, as
 * luar_log_write), marked LUAR_PLUGIN_LOG_REPORTED for the on_log hooks. `e->message` and
 * `e->traceback` may be NULL (given as "").
 */
void luar_plugin_report_error(const luar_plugin_error_t *e, int level, const char *msg,
                              const char *fields, size_t fields_len);

/* The table's entries (host_api.c fills them in). */
int luar_plugin_hooks_on_error(const luar_host_t *h, luar_plugin_error_fn fn, void *arg);
int luar_plugin_hooks_on_log(const luar_host_t *h, luar_plugin_log_fn fn, void *arg);
int luar_plugin_hooks_on_span(const luar_host_t *h, luar_plugin_span_fn fn, void *arg);
int luar_plugin_hooks_on_stop(const luar_host_t *h, void (*fn)(void *arg), void *arg);
int luar_plugin_hooks_redact(luar_buf_t *out, const char *text, size_t len);
int luar_plugin_hooks_context(lua_State *L, luar_plugin_context_t *out);

/* The serving process begins its final drain: calls the on_stop hooks, once. */
void luar_plugin_hooks_stopping(void);

/* Removes the hooks of the plugin whose table is `h` (after its fini). */
void luar_plugin_hooks_release(const luar_host_t *h);

#endif
