/*
 * The plugins' hooks (host/plugin/hooks.c): on_error sees an uncaught error before its log
 * line, with secret values scrubbed; on_log sees every line once, flagged when it is an
 * error's, and never its own; on_stop runs once; release removes a plugin's hooks.
 * Driven in-process with two stand-in host tables (the hooks key on the table pointer).
 */
#include "common/buf.h"
#include "log/log.h"
#include "plugin/hooks.h"
#include "secrets/redact.h"
#include "test.h"

#include <stdio.h>
#include <string.h>

static luar_host_t plugin_a, plugin_b;

static char order[64]; /* 'E' error hook, 'L' log hook, 'W' line written, in call order */
static size_t norder;
static char seen_message[256], seen_traceback[256], seen_route[64], seen_trace[40];
static char seen_line[1024];
static int seen_flags, log_calls, stops;

static void note(char c)
{
    if (norder + 1 < sizeof order)
        order[norder++] = c;
    order[norder] = '\0';
}

static int written(void *ud, int level, const char *line, size_t len)
{
    (void)ud;
    (void)level;
    (void)line;
    (void)len;
    note('W');
    return 1; /* consumed: nothing reaches stdout */
}

static void on_error(void *arg, const luar_plugin_error_t *e)
{
    (void)arg;
    note('E');
    snprintf(seen_message, sizeof seen_message, "%s", e->message);
    snprintf(seen_traceback, sizeof seen_traceback, "%s", e->traceback);
    snprintf(seen_route, sizeof seen_route, "%s", e->route ? e->route : "(null)");
    snprintf(seen_trace, sizeof seen_trace, "%s", e->trace_id ? e->trace_id : "(null)");
    CHECK(e->timestamp > 1e9);
}

static void on_log(void *arg, int level, const char *line, size_t len, int flags)
{
    (void)level;
    note('L');
    log_calls++;
    seen_flags = flags;
    snprintf(seen_line, sizeof seen_line, "%.*s", (int)len, line);
    if (arg) /* the plugin logs from its hook: written, not given back to it */
        luar_log_write(LUAR_LOG_WARN, "from the hook", 13, NULL, 0);
}

static void on_stop(void *arg)
{
    (void)arg;
    stops++;
}

static void reset(void)
{
    norder = 0;
    order[0] = '\0';
    log_calls = 0;
    seen_flags = -1;
}

TEST(test_error_hook_runs_first_and_sees_scrubbed_strings)
{
    const char *secret = "sk_live_hooks_secret_123";
    luar_secret_watch("test", secret, strlen(secret));
    CHECK_EQ_INT(luar_plugin_hooks_on_error(&plugin_a, on_error, NULL), 0);
    CHECK_EQ_INT(luar_plugin_hooks_on_log(&plugin_a, on_log, NULL), 0);
    reset();
    luar_plugin_error_t e = {.where = "http",
                             .message = "main.lua:3: key sk_live_hooks_secret_123 refused",
                             .traceback = "stack traceback:\n\tmain.lua:3: in local 'f' "
                                          "sk_live_hooks_secret_123",
                             .route = "/orders/:id",
                             .trace_id = ""};
    luar_plugin_report_error(&e, LUAR_LOG_ERROR, "handler error",
                             "\"k\":\"sk_live_hooks_secret_123\"", 30);
    CHECK_EQ_STR(order, "EWL"); /* the hook, then the line, then the log hooks */
    CHECK_EQ_STR(seen_message, "main.lua:3: key [REDACTED] refused");
    CHECK(strstr(seen_traceback, "in local 'f' [REDACTED]") != NULL);
    CHECK_EQ_STR(seen_route, "/orders/:id");
    CHECK_EQ_STR(seen_trace, "(null)"); /* an empty trace id is no trace */
    CHECK_EQ_INT(seen_flags, LUAR_PLUGIN_LOG_REPORTED);
    CHECK(strstr(seen_line, "\"msg\":\"handler error\",\"k\":\"[REDACTED]\"") != NULL);
    CHECK(strstr(seen_line, "sk_live") == NULL);
    /* an ordinary line is not flagged */
    luar_log_write(LUAR_LOG_ERROR, "plain", 5, NULL, 0);
    CHECK_EQ_INT(seen_flags, 0);
    CHECK_EQ_INT(log_calls, 2);
}

TEST(test_log_hooks_do_not_recurse_and_are_per_plugin)
{
    /* plugin_b logs from its hook; plugin_a still has its own */
    CHECK_EQ_INT(luar_plugin_hooks_on_log(&plugin_b, on_log, &plugin_b), 0);
    reset();
    luar_log_write(LUAR_LOG_INFO, "one", 3, NULL, 0);
    /* W (line) L (a) L (b, logs "from the hook": written, not tapped) W */
    CHECK_EQ_STR(order, "WLLW");
    CHECK_EQ_INT(log_calls, 2);
    /* replacing a plugin's hook keeps one hook for it */
    CHECK_EQ_INT(luar_plugin_hooks_on_log(&plugin_b, on_log, NULL), 0);
    reset();
    luar_log_write(LUAR_LOG_INFO, "two", 3, NULL, 0);
    CHECK_EQ_STR(order, "WLL");
    /* release removes every hook of a plugin, and none of another's */
    luar_plugin_hooks_release(&plugin_b);
    reset();
    luar_log_write(LUAR_LOG_INFO, "three", 5, NULL, 0);
    CHECK_EQ_STR(order, "WL");
    luar_plugin_hooks_release(&plugin_a);
    reset();
    luar_log_write(LUAR_LOG_INFO, "four", 4, NULL, 0);
    luar_plugin_error_t e = {.where = "job", .message = "x"};
    luar_plugin_report_error(&e, LUAR_LOG_WARN, "job failed", NULL, 0);
    CHECK_EQ_STR(order, "WW"); /* no hooks left: the lines only */
}

TEST(test_stop_hooks_run_once)
{
    CHECK_EQ_INT(luar_plugin_hooks_on_stop(&plugin_a, on_stop, NULL), 0);
    CHECK_EQ_INT(luar_plugin_hooks_on_stop(&plugin_b, on_stop, NULL), 0);
    luar_plugin_hooks_stopping();
    luar_plugin_hooks_stopping();
    CHECK_EQ_INT(stops, 2);
}

TEST(test_redact_and_context_outside_a_task)
{
    luar_buf_t out;
    luar_buf_init(&out, 0);
    CHECK_EQ_INT(luar_plugin_hooks_redact(&out, "a sk_live_hooks_secret_123 b", 28), 1);
    CHECK_EQ_STR(out.data, "a [REDACTED] b");
    luar_buf_reset(&out);
    /* the JSON-escaped form is caught too (an event's payload) */
    const char *json = "{\"v\":\"x sk_live_hooks_secret_123\"}";
    CHECK_EQ_INT(luar_plugin_hooks_redact(&out, json, strlen(json)), 1);
    CHECK(strstr(out.data, "sk_live") == NULL);
    luar_buf_free(&out);
    luar_plugin_context_t ctx;
    CHECK_EQ_INT(luar_plugin_hooks_context(NULL, &ctx), 0);
    CHECK(ctx.request_id == NULL && ctx.job_id == NULL && ctx.trace_id == NULL);
}

int main(void)
{
    luar_log_set_level(LUAR_LOG_DEBUG);
    luar_log_set_hook(written, NULL);
    RUN(test_error_hook_runs_first_and_sees_scrubbed_strings);
    RUN(test_log_hooks_do_not_recurse_and_are_per_plugin);
    RUN(test_stop_hooks_run_once);
    RUN(test_redact_and_context_outside_a_task);
    luar_log_set_hook(NULL, NULL);
    luar_secret_unwatch_all();
    return DONE();
}
