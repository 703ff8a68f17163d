/*
 * The plugins' on_error and on_log hooks, redaction and the Lua context (hooks.h). One
 * hook of each kind a plugin, kept in small arrays; the log hooks ride on one log tap
 * (log/log.h), installed while at least one plugin listens, so a host without listeners
 * pays nothing per line.
 */
#include "plugin/hooks.h"

#include "common/clock.h"
#include "common/error.h"
#include "log/log.h"
#include "lua/task.h"
#include "secrets/redact.h"
#include "trace/export.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define MAX_HOOKS 32 /* plugins listening at once */

typedef struct hook {
    const luar_host_t *h;
    void (*fn)(void); /* luar_plugin_error_fn or luar_plugin_log_fn */
    void *arg;
} hook_t;

static struct {
    hook_t errors[MAX_HOOKS];
    size_t nerrors;
    hook_t logs[MAX_HOOKS];
    size_t nlogs;
    hook_t spans[MAX_HOOKS];
    size_t nspans;
    hook_t stops[MAX_HOOKS];
    size_t nstops;
    int tapped;      /* our log tap is installed */
    int reporting;   /* the line being written is an error's (luar_plugin_report_error) */
    luar_buf_t line; /* the tapped line, copied: a hook that logs overwrites the log's own */
} g_hooks;

/* Sets, replaces or (fn NULL) removes the hook of plugin `h` in `list`. */
static int hook_set(hook_t *list, size_t *n, const luar_host_t *h, void (*fn)(void), void *arg)
{
    for (size_t i = 0; i < *n; i++) {
        if (list[i].h != h)
            continue;
        if (fn) {
            list[i].fn = fn;
            list[i].arg = arg;
        } else {
            memmove(&list[i], &list[i + 1], (*n - i - 1) * sizeof *list);
            (*n)--;
        }
        return 0;
    }
    if (fn == NULL)
        return 0;
    if (*n == MAX_HOOKS)
        return LUAR_ENOMEM;
    list[(*n)++] = (hook_t){h, fn, arg};
    return 0;
}

/* ---- log lines -------------------------------------------------------------------------- */

static void log_tap(void *ud, int level, const char *line, size_t len)
{
    (void)ud;
    luar_buf_reset(&g_hooks.line);
    if (luar_buf_append(&g_hooks.line, line, len) != 0 || luar_buf_putc(&g_hooks.line, '\0'))
        return;
    int flags = g_hooks.reporting ? LUAR_PLUGIN_LOG_REPORTED : 0;
    /* A hook may remove itself: walk a copy. */
    hook_t hooks[MAX_HOOKS];
    size_t n = g_hooks.nlogs;
    memcpy(hooks, g_hooks.logs, n * sizeof *hooks);
    for (size_t i = 0; i < n; i++)
        ((luar_plugin_log_fn)hooks[i].fn)(hooks[i].arg, level, g_hooks.line.data, len, flags);
}

static void tap_update(void)
{
    if (g_hooks.nlogs > 0 && !g_hooks.tapped) {
        g_hooks.tapped = luar_log_add_tap(log_tap, NULL) == 0;
    } else if (g_hooks.nlogs == 0 && g_hooks.tapped) {
        luar_log_remove_tap(log_tap, NULL);
        g_hooks.tapped = 0;
        luar_buf_free(&g_hooks.line);
    }
}

int luar_plugin_hooks_on_log(const luar_host_t *h, luar_plugin_log_fn fn, void *arg)
{
    int rc = hook_set(g_hooks.logs, &g_hooks.nlogs, h, (void (*)(void))fn, arg);
    tap_update();
    if (g_hooks.nlogs > 0 && !g_hooks.tapped)
        rc = LUAR_ENOMEM;
    return rc;
}

/* ---- errors ----------------------------------------------------------------------------- */

int luar_plugin_hooks_on_error(const luar_host_t *h, luar_plugin_error_fn fn, void *arg)
{
    return hook_set(g_hooks.errors, &g_hooks.nerrors, h, (void (*)(void))fn, arg);
}

static void call_error_hooks(const luar_plugin_error_t *e)
{
    /* The same scrubbing as the log line's: hooks never see a value the log would hide. */
    luar_buf_t scratch[6];
    for (size_t i = 0; i < sizeof scratch / sizeof scratch[0]; i++)
        luar_buf_init(&scratch[i], 0);
    luar_plugin_error_t c = *e;
    c.message = luar_secret_clean(e->message ? e->message : "", &scratch[0]);
    c.traceback = luar_secret_clean(e->traceback ? e->traceback : "", &scratch[1]);
    if (e->route)
        c.route = luar_secret_clean(e->route, &scratch[2]);
    if (e->job)
        c.job = luar_secret_clean(e->job, &scratch[3]);
    if (e->queue)
        c.queue = luar_secret_clean(e->queue, &scratch[4]);
    if (e->schedule)
        c.schedule = luar_secret_clean(e->schedule, &scratch[5]);
    if (c.trace_id && c.trace_id[0] == '\0')
        c.trace_id = c.span_id = NULL;
    if (c.timestamp <= 0)
        c.timestamp = luar_time_now();
    hook_t hooks[MAX_HOOKS];
    size_t n = g_hooks.nerrors;
    memcpy(hooks, g_hooks.errors, n * sizeof *hooks);
    for (size_t i = 0; i < n; i++)
        ((luar_plugin_error_fn)hooks[i].fn)(hooks[i].arg, &c);
    for (size_t i = 0; i < sizeof scratch / sizeof scratch[0]; i++)
        luar_buf_free(&scratch[i]);
}

void luar_plugin_report_error(const luar_plugin_error_t *e, int level, const char *msg,
                              const char *fields, size_t fields_len)
{
    if (g_hooks.nerrors > 0)
        call_error_hooks(e);
    /* After the hooks: a reporter's breadcrumbs end before the error's own line. */
    g_hooks.reporting = 1;
    luar_log_write(level, msg, strlen(msg), fields, fields_len);
    g_hooks.reporting = 0;
}

/* ---- spans ------------------------------------------------------------------------------ */

/* The trace's attributes are the ABI's: they cross without a copy. */
_Static_assert(sizeof(luar_span_attr_t) == sizeof(luar_plugin_attr_t) &&
                   offsetof(luar_span_attr_t, key) == offsetof(luar_plugin_attr_t, key) &&
                   offsetof(luar_span_attr_t, str) == offsetof(luar_plugin_attr_t, str) &&
                   offsetof(luar_span_attr_t, num) == offsetof(luar_plugin_attr_t, num),
               "span attributes");
_Static_assert((int)LUAR_SPAN_SERVER == (int)LUAR_PLUGIN_SPAN_SERVER &&
                   (int)LUAR_SPAN_CLIENT == (int)LUAR_PLUGIN_SPAN_CLIENT &&
                   (int)LUAR_SPAN_CONSUMER == (int)LUAR_PLUGIN_SPAN_CONSUMER,
               "span kinds");

static void span_ended(const luar_trace_t *t, const char *name, int kind, uint64_t start_ns,
                       uint64_t end_ns, const luar_span_attr_t *attrs, size_t nattrs, int error,
                       const char *message)
{
    luar_buf_t scratch;
    luar_buf_init(&scratch, 0);
    luar_plugin_span_t s = {
        .name = name ? name : "",
        .kind = kind,
        .trace_id = t->trace_id,
        .span_id = t->span_id,
        .parent_id = t->parent_id,
        .sampled = t->flags & 1,
        .start = (double)start_ns / 1e9,
        .end = (double)end_ns / 1e9,
        .error = error,
        .message = message ? luar_secret_clean(message, &scratch) : NULL,
        .attrs = (const luar_plugin_attr_t *)attrs,
        .nattrs = nattrs,
    };
    hook_t hooks[MAX_HOOKS];
    size_t n = g_hooks.nspans;
    memcpy(hooks, g_hooks.spans, n * sizeof *hooks);
    for (size_t i = 0; i < n; i++)
        ((luar_plugin_span_fn)hooks[i].fn)(hooks[i].arg, &s);
    luar_buf_free(&scratch);
}

int luar_plugin_hooks_on_span(const luar_host_t *h, luar_plugin_span_fn fn, void *arg)
{
    int rc = hook_set(g_hooks.spans, &g_hooks.nspans, h, (void (*)(void))fn, arg);
    luar_trace_set_listener(g_hooks.nspans > 0 ? span_ended : NULL);
    return rc;
}

/* ---- the final drain ---------------------------------------------------------------------- */

int luar_plugin_hooks_on_stop(const luar_host_t *h, void (*fn)(void *arg), void *arg)
{
    return hook_set(g_hooks.stops, &g_hooks.nstops, h, (void (*)(void))fn, arg);
}

void luar_plugin_hooks_stopping(void)
{
    hook_t hooks[MAX_HOOKS];
    size_t n = g_hooks.nstops;
    memcpy(hooks, g_hooks.stops, n * sizeof *hooks);
    g_hooks.nstops = 0; /* once */
    for (size_t i = 0; i < n; i++)
        ((void (*)(void *))hooks[i].fn)(hooks[i].arg);
}

/* ---- redaction, context, release -------------------------------------------------------- */

int luar_plugin_hooks_redact(luar_buf_t *out, const char *text, size_t len)
{
    if (out == NULL || (text == NULL && len > 0))
        return LUAR_EINVAL;
    if (!luar_secret_watching())
        return luar_buf_append(out, text ? text : "", len);
    return luar_secret_scrub(out, text ? text : "", len);
}

static const char *or_null(const char *s)
{
    return s && s[0] ? s : NULL;
}

int luar_plugin_hooks_context(lua_State *L, luar_plugin_context_t *out)
{
    memset(out, 0, sizeof *out);
    luar_task_t *task = L ? luar_task_current(L) : NULL;
    if (task == NULL)
        return 0;
    out->request_id = or_null(luar_task_request_id(task));
    out->job_id = or_null(luar_task_job_id(task));
    const luar_trace_t *t = luar_task_trace(task);
    if (luar_trace_active(t)) {
        out->trace_id = t->trace_id;
        out->span_id = t->span_id;
    }
    return 0;
}

void luar_plugin_hooks_release(const luar_host_t *h)
{
    hook_set(g_hooks.errors, &g_hooks.nerrors, h, NULL, NULL);
    hook_set(g_hooks.logs, &g_hooks.nlogs, h, NULL, NULL);
    tap_update();
    luar_plugin_hooks_on_span(h, NULL, NULL);
    hook_set(g_hooks.stops, &g_hooks.nstops, h, NULL, NULL);
}
