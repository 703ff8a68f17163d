/*
 * The host side of the plugin API table (luar_host_t, luar/plugin.h): each entry is the
 * host's own mechanism, not a second one: the log, the config copy of plugins.<name>, the
 * metrics registry, the outbound client (luar_client_request), libuv timers, the coroutine
 * bridge, the secret store and redaction set, the process's queue, luar_buf, the webhook
 * scheme helpers and host/crypto. Each plugin gets its own table, whose `plugin` names it.
 */
#include "plugin/plugin_internal.h"

#include "client/client.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/json.h"
#include "crypto/crypto.h"
#include "jobs/jobs.h"
#include "log/log.h"
#include "lua/bridge.h"
#include "metrics/metrics.h"
#include "plugin/hooks.h"
#include "queue/queue.h"
#include "secrets/redact.h"
#include "secrets/secrets.h"
#include "webhooks/scheme.h"
#include "luar_version.h"

#include <math.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* The ABI's numbers are the host's own: values cross the table without translation. */
#define SAME(a, b, what) _Static_assert((int)(a) == (int)(b), what)
SAME(LUAR_PLUGIN_OK, LUAR_OK, "error codes");
SAME(LUAR_PLUGIN_ENOMEM, LUAR_ENOMEM, "error codes");
SAME(LUAR_PLUGIN_EINVAL, LUAR_EINVAL, "error codes");
SAME(LUAR_PLUGIN_EIO, LUAR_EIO, "error codes");
SAME(LUAR_PLUGIN_ETOOBIG, LUAR_ETOOBIG, "error codes");
SAME(LUAR_PLUGIN_ENOTFOUND, LUAR_ENOTFOUND, "error codes");
SAME(LUAR_PLUGIN_EPARSE, LUAR_EPARSE, "error codes");
SAME(LUAR_PLUGIN_ETIMEOUT, LUAR_ETIMEOUT, "error codes");
SAME(LUAR_PLUGIN_ECLOSED, LUAR_ECLOSED, "error codes");
SAME(LUAR_PLUGIN_EEXISTS, LUAR_EEXISTS, "error codes");
SAME(LUAR_PLUGIN_ECONFIG, LUAR_ECONFIG, "error codes");
SAME(LUAR_PLUGIN_ECANCELED, LUAR_ECANCELED, "error codes");
SAME(LUAR_PLUGIN_LOG_DEBUG, LUAR_LOG_DEBUG, "log levels");
SAME(LUAR_PLUGIN_LOG_INFO, LUAR_LOG_INFO, "log levels");
SAME(LUAR_PLUGIN_LOG_WARN, LUAR_LOG_WARN, "log levels");
SAME(LUAR_PLUGIN_LOG_ERROR, LUAR_LOG_ERROR, "log levels");
SAME(LUAR_PLUGIN_COUNTER, LUAR_METRIC_COUNTER, "metric types");
SAME(LUAR_PLUGIN_GAUGE, LUAR_METRIC_GAUGE, "metric types");
SAME(LUAR_PLUGIN_HISTOGRAM, LUAR_METRIC_HISTOGRAM, "metric types");
/* The defaults plugin.h documents for luar_plugin_http_req_t. */
_Static_assert(LUAR_CLIENT_DEFAULT_MAX_BODY == 10u * 1024 * 1024, "http defaults");

static plugin_rec_t *rec_of(const luar_host_t *h)
{
    return (plugin_rec_t *)h;
}

/* ---- logging ----------------------------------------------------------------------- */

#define LOG_MSG_MAX (64 * 1024) /* longer messages are cut (the log cuts them further) */

static void host_log(const luar_host_t *h, int level, const char *fmt, ...)
{
    if (level < LUAR_LOG_DEBUG)
        level = LUAR_LOG_DEBUG;
    if (level > LUAR_LOG_ERROR)
        level = LUAR_LOG_ERROR;
    if (!luar_log_enabled(level))
        return;
    plugin_rec_t *p = rec_of(h);
    char small[1024];
    char *msg = small;
    va_list ap, again;
    va_start(ap, fmt);
    va_copy(again, ap);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof small) {
        size_t size = n < LOG_MSG_MAX ? (size_t)n + 1 : LOG_MSG_MAX;
        if ((msg = malloc(size)) != NULL)
            n = vsnprintf(msg, size, fmt, again);
        else
            msg = small;
        if (n >= (int)size || msg == small)
            n = (int)(msg == small ? sizeof small : size) - 1;
    }
    va_end(again);
    if (n < 0)
        n = 0;
    luar_log_write(level, msg, (size_t)n, p->log_fields, strlen(p->log_fields));
    if (msg != small)
        free(msg);
}

/* ---- configuration ------------------------------------------------------------------ */

static const luar_config_value_t *config_find(const luar_plugin_config_t *c, const char *key)
{
    for (size_t i = 0; c && key && i < c->nvalues; i++)
        if (strcmp(c->values[i].key, key) == 0)
            return &c->values[i];
    return NULL;
}

static const char *config_string(const luar_plugin_config_t *c, const char *key)
{
    const luar_config_value_t *v = config_find(c, key);
    return v ? v->value : NULL;
}

static int config_number(const luar_plugin_config_t *c, const char *key, double *out)
{
    const luar_config_value_t *v = config_find(c, key);
    if (v == NULL || v->type == LUA_TBOOLEAN || v->value[0] == '\0')
        return 0;
    char *end = NULL;
    double d = strtod(v->value, &end);
    while (end && (*end == ' ' || *end == '\t'))
        end++;
    if (end == NULL || *end != '\0' || !isfinite(d))
        return 0;
    *out = d;
    return 1;
}

static int config_bool(const luar_plugin_config_t *c, const char *key)
{
    const luar_config_value_t *v = config_find(c, key);
    return v != NULL && v->type == LUA_TBOOLEAN && strcmp(v->value, "true") == 0;
}

/* ---- metrics ------------------------------------------------------------------------- */

static int metric_register(const luar_host_t *h, luar_plugin_metric_type_t type,
                           const char *name, const char *help, const char *const *labels,
                           size_t nlabels, luar_metric_t **out)
{
    plugin_rec_t *p = rec_of(h);
    size_t plen = strlen(p->name);
    if (out == NULL || name == NULL || strncmp(name, "luar_", 5) != 0 ||
        strncmp(name + 5, p->name, plen) != 0 || name[5 + plen] != '_' ||
        name[6 + plen] == '\0') {
        host_log(h, LUAR_LOG_WARN, "metric %s refused: names of plugin %s's metrics start "
                 "with luar_%s_", name ? name : "(null)", p->name, p->name);
        return LUAR_EINVAL;
    }
    if ((int)type < LUAR_PLUGIN_COUNTER || (int)type > LUAR_PLUGIN_HISTOGRAM)
        return LUAR_EINVAL;
    luar_buf_t err;
    luar_buf_init(&err, 1024);
    int rc = luar_metrics_register((luar_metric_type_t)type, name, help ? help : "", labels,
                                   nlabels, NULL, 0, out, &err);
    if (rc)
        host_log(h, LUAR_LOG_WARN, "metric %s refused: %s", name,
                 err.data ? err.data : luar_strerror(rc));
    luar_buf_free(&err);
    return rc;
}

/* ---- outbound HTTP --------------------------------------------------------------------- */

struct luar_plugin_http_call {
    plugin_rec_t *p;
    luar_client_call_t *call;
    luar_plugin_http_done_fn cb;
    void *arg;
    struct luar_plugin_http_call *prev, *next;
};

static void call_unlink(luar_plugin_http_call_t *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        c->p->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
}

static void http_done(void *arg, luar_client_res_t *res)
{
    luar_plugin_http_call_t *c = arg;
    call_unlink(c);
    luar_plugin_http_res_t r = {
        .rc = res->rc,
        .kind = res->kind,
        .message = res->rc ? res->message : NULL,
        .status = res->status,
        .body = res->body.data ? res->body.data : "",
        .body_len = res->body.len,
        .duration = res->duration,
    };
    luar_plugin_header_t *headers = NULL;
    if (res->rc == 0 && res->nheaders > 0) {
        headers = calloc(res->nheaders, sizeof *headers);
        if (headers == NULL) {
            r.rc = LUAR_ENOMEM;
            r.kind = "invalid";
            r.message = "out of memory reading the response headers";
        } else {
            for (size_t i = 0; i < res->nheaders; i++)
                headers[i] = (luar_plugin_header_t){res->headers[i].name, res->headers[i].value};
            r.headers = headers;
            r.nheaders = res->nheaders;
        }
    }
    c->cb(c->arg, &r);
    free(headers);
    luar_client_res_free(res);
    free(c);
}

static int http_request(const luar_host_t *h, const luar_plugin_http_req_t *req,
                        luar_plugin_http_done_fn cb, void *arg, luar_plugin_http_call_t **out)
{
    plugin_rec_t *p = rec_of(h);
    if (out)
        *out = NULL;
    if (req == NULL || req->url == NULL || cb == NULL)
        return LUAR_EINVAL;
    luar_plugin_http_call_t *c = calloc(1, sizeof *c);
    luar_client_header_t *headers =
        req->nheaders ? calloc(req->nheaders, sizeof *headers) : NULL;
    if (c == NULL || (req->nheaders && headers == NULL)) {
        free(c);
        free(headers);
        return LUAR_ENOMEM;
    }
    for (size_t i = 0; i < req->nheaders; i++)
        headers[i] = (luar_client_header_t){req->headers[i].name, req->headers[i].value};
    luar_client_req_t creq = {
        .method = req->method,
        .url = req->url,
        .headers = headers,
        .nheaders = req->nheaders,
        .body = req->body,
        .body_len = req->body_len,
        .connect_timeout = req->connect_timeout,
        .timeout = req->timeout,
        .max_body = req->max_body,
    };
    c->p = p;
    c->cb = cb;
    c->arg = arg;
    int rc = luar_client_request(p->loop, &creq, http_done, c, &c->call);
    free(headers);
    if (rc) {
        free(c);
        return rc;
    }
    c->next = p->calls;
    if (p->calls)
        p->calls->prev = c;
    p->calls = c;
    if (out)
        *out = c;
    return 0;
}

static void http_cancel(luar_plugin_http_call_t *c)
{
    if (c == NULL)
        return;
    call_unlink(c);
    luar_client_cancel(c->call);
    free(c);
}

/* ---- timers ------------------------------------------------------------------------- */

struct luar_plugin_timer {
    uv_timer_t t;
    plugin_rec_t *p;
    void (*cb)(void *arg);
    void *arg;
    struct luar_plugin_timer *prev, *next;
};

static void timer_fired(uv_timer_t *t)
{
    luar_plugin_timer_t *pt = t->data;
    pt->cb(pt->arg); /* may call timer_stop(pt) */
}

static void timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static uint64_t to_ms(double seconds)
{
    return seconds <= 0 ? 0 : (uint64_t)ceil(seconds * 1000);
}

static int timer_start(const luar_host_t *h, double seconds, double repeat,
                       void (*cb)(void *arg), void *arg, luar_plugin_timer_t **out)
{
    plugin_rec_t *p = rec_of(h);
    if (out)
        *out = NULL;
    if (cb == NULL || !(seconds >= 0) || !(repeat >= 0) || seconds > 1e9 || repeat > 1e9)
        return LUAR_EINVAL;
    luar_plugin_timer_t *pt = calloc(1, sizeof *pt);
    if (pt == NULL)
        return LUAR_ENOMEM;
    pt->p = p;
    pt->cb = cb;
    pt->arg = arg;
    uv_timer_init(p->loop, &pt->t);
    pt->t.data = pt;
    uv_timer_start(&pt->t, timer_fired, to_ms(seconds), to_ms(repeat));
    /* A plugin's timer never keeps the process alive (a Lua call waiting on one does:
     * see the bridge wrappers below). */
    uv_unref((uv_handle_t *)&pt->t);
    pt->next = p->timers;
    if (p->timers)
        p->timers->prev = pt;
    p->timers = pt;
    if (out)
        *out = pt;
    return 0;
}

static void timer_stop(luar_plugin_timer_t *pt)
{
    if (pt == NULL)
        return;
    if (pt->prev)
        pt->prev->next = pt->next;
    else
        pt->p->timers = pt->next;
    if (pt->next)
        pt->next->prev = pt->prev;
    uv_timer_stop(&pt->t);
    uv_close((uv_handle_t *)&pt->t, timer_closed);
}

/* ---- the bridge ---------------------------------------------------------------------- */

/*
 * A plugin's op carries a small header before the plugin's data: the plugin's cleanup. The
 * host sets its own cleanup on every plugin op so that it counts them: while one is
 * pending, the keep-alive handle is referenced, so `luar run` waits for a Lua call that
 * waits on a plugin's (unreferenced) timer instead of ending with the call unanswered.
 */
typedef struct plugin_op {
    luar_bridge_cleanup_fn cleanup;
    max_align_t data[];
} plugin_op_t;

static struct {
    uv_async_t keepalive; /* never sent: referenced while ops are pending */
    int open;
    size_t pending;
} g_ops;

static void ops_inc(void)
{
    if (g_ops.pending++ == 0 && g_ops.open)
        uv_ref((uv_handle_t *)&g_ops.keepalive);
}

static void ops_dec(void)
{
    if (g_ops.pending > 0 && --g_ops.pending == 0 && g_ops.open)
        uv_unref((uv_handle_t *)&g_ops.keepalive);
}

static void bridge_op_free(luar_bridge_op_t *op)
{
    ops_dec();
    luar_bridge_op_free(op);
}

static void plugin_op_cleanup(luar_bridge_op_t *op, int canceled)
{
    plugin_op_t *po = luar_bridge_op_data(op);
    if (po->cleanup)
        po->cleanup(op, canceled); /* ends with host->bridge_op_free: ours */
    else
        bridge_op_free(op);
}

static luar_bridge_op_t *bridge_op_new(lua_State *L, const char *what, size_t data_size)
{
    luar_bridge_op_t *op = luar_bridge_op_new(L, what, sizeof(plugin_op_t) + data_size);
    plugin_op_t *po = luar_bridge_op_data(op);
    po->cleanup = NULL;
    luar_bridge_op_set_cleanup(op, plugin_op_cleanup);
    ops_inc();
    return op;
}

static void *bridge_op_data(luar_bridge_op_t *op)
{
    plugin_op_t *po = luar_bridge_op_data(op);
    return po->data;
}

static void bridge_op_set_cleanup(luar_bridge_op_t *op, luar_bridge_cleanup_fn cleanup)
{
    plugin_op_t *po = luar_bridge_op_data(op);
    po->cleanup = cleanup;
}

static void keepalive_cb(uv_async_t *a)
{
    (void)a;
}

static void keepalive_closed(uv_handle_t *h)
{
    (void)h;
    g_ops.open = 0;
}

int luar_plugin_host_setup(uv_loop_t *loop)
{
    if (g_ops.open)
        return 0;
    if (uv_async_init(loop, &g_ops.keepalive, keepalive_cb) != 0)
        return LUAR_ENOMEM;
    g_ops.open = 1;
    if (g_ops.pending == 0)
        uv_unref((uv_handle_t *)&g_ops.keepalive);
    return 0;
}

void luar_plugin_host_teardown(void)
{
    if (g_ops.open && !uv_is_closing((uv_handle_t *)&g_ops.keepalive))
        uv_close((uv_handle_t *)&g_ops.keepalive, keepalive_closed);
}

/* ---- secrets ------------------------------------------------------------------------- */

/* A value secret_get handed out: kept until fini (the store's own is replaced by reloads). */
struct secret_copy {
    struct secret_copy *next;
    char *name;
    char *value;
    size_t len;
};

static const char *secret_get(const luar_host_t *h, const char *name, size_t *len)
{
    plugin_rec_t *p = rec_of(h);
    size_t l = 0;
    if (len)
        *len = 0;
    const char *v = name ? luar_secrets_get(name, &l) : NULL;
    if (v == NULL)
        return NULL;
    for (struct secret_copy *s = p->secrets; s; s = s->next) {
        if (strcmp(s->name, name) == 0 && s->len == l && memcmp(s->value, v, l) == 0) {
            if (len)
                *len = l;
            return s->value;
        }
    }
    struct secret_copy *s = calloc(1, sizeof *s);
    if (s == NULL || (s->name = strdup(name)) == NULL || (s->value = malloc(l + 1)) == NULL) {
        if (s)
            free(s->name);
        free(s);
        return NULL;
    }
    memcpy(s->value, v, l);
    s->value[l] = '\0';
    s->len = l;
    s->next = p->secrets;
    p->secrets = s;
    if (len)
        *len = l;
    return s->value;
}

static int secret_watch(const luar_host_t *h, const char *what, const void *value, size_t len)
{
    plugin_rec_t *p = rec_of(h);
    char label[160];
    snprintf(label, sizeof label, "plugin %s: %s", p->name, what ? what : "value");
    return luar_secret_watch(label, value, len);
}

/* ---- jobs ------------------------------------------------------------------------------ */

static luar_vm_t *g_vm; /* luar_plugins_use_vm: whose job definitions give the defaults */

void luar_plugins_use_vm(luar_vm_t *vm)
{
    g_vm = vm;
}

typedef struct enqueue_req {
    luar_plugin_enqueue_fn cb;
    void *arg;
} enqueue_req_t;

static void enqueue_done(void *arg, int rc, const char *const *ids, size_t n, int duplicate)
{
    enqueue_req_t *e = arg;
    if (rc == 0) {
        luar_jobs_kick();
        e->cb(e->arg, 0, duplicate || n == 0 ? NULL : ids[0], NULL);
    } else {
        char why[200];
        snprintf(why, sizeof why, "the queue backend could not take the job (%s)",
                 luar_strerror(rc));
        e->cb(e->arg, rc, NULL, why);
    }
    free(e);
}

static int job_enqueue(const luar_host_t *h, const char *name, const char *args_json,
                       size_t args_len, const luar_plugin_job_opts_t *opts,
                       luar_plugin_enqueue_fn cb, void *arg)
{
    plugin_rec_t *p = rec_of(h);
    luar_queue_t *q = luar_jobs_queue();
    if (name == NULL || name[0] == '\0' || cb == NULL)
        return LUAR_EINVAL;
    if (q == NULL)
        return LUAR_ECLOSED; /* a command without a queue (luar check) */
    if (args_json == NULL) {
        args_json = "[]";
        args_len = 2;
    }
    size_t i = 0;
    while (i < args_len && strchr(" \t\r\n", args_json[i]) && args_json[i])
        i++;
    luar_buf_t why;
    luar_buf_init(&why, 256);
    if (i == args_len || (args_json[i] != '{' && args_json[i] != '[') ||
        luar_json_validate(args_json, args_len, LUAR_JSON_MAX_DEPTH, &why) != 0) {
        host_log(h, LUAR_LOG_WARN, "job %s not enqueued: args must be a JSON object or array%s%s",
                 name, why.len ? ": " : "", why.data ? why.data : "");
        luar_buf_free(&why);
        return LUAR_EINVAL;
    }
    luar_buf_free(&why);
    char *args = strndup(args_json, args_len);
    enqueue_req_t *e = calloc(1, sizeof *e);
    if (args == NULL || e == NULL) {
        free(args);
        free(e);
        return LUAR_ENOMEM;
    }
    const luar_job_def_t *def = g_vm ? luar_jobs_find(luar_jobs_registry(g_vm), name) : NULL;
    luar_job_spec_t spec = {
        .name = name,
        .queue = opts && opts->queue ? opts->queue : def ? def->queue : "default",
        .args = args,
        .priority = def ? def->priority : 0,
        .max_attempts = (def ? def->retries : LUAR_JOBS_DEFAULT_RETRIES) + 1,
    };
    if (opts && opts->delay > 0)
        spec.run_at = luar_queue_now(q) + opts->delay;
    const char *key = opts ? opts->key : NULL;
    double ttl = opts && opts->key_ttl > 0 ? opts->key_ttl : 86400;
    e->cb = cb;
    e->arg = arg;
    int rc = luar_queue_enqueue(q, &spec, 1, key, key ? ttl : 0, enqueue_done, e);
    free(args);
    if (rc) {
        free(e);
        return rc;
    }
    (void)p;
    return 0;
}

/* ---- buffers, scheme helpers, crypto, clock --------------------------------------------- */

static int buf_printf(luar_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = luar_buf_vappendf(b, fmt, ap);
    va_end(ap);
    return rc;
}

static luar_buf_t *buf_new(size_t max)
{
    luar_buf_t *b = malloc(sizeof *b);
    if (b)
        luar_buf_init(b, max);
    return b;
}

static void buf_free(luar_buf_t *b)
{
    if (b == NULL)
        return;
    if (b->data)
        OPENSSL_cleanse(b->data, b->cap); /* MACs and decoded secrets pass through */
    luar_buf_free(b);
    free(b);
}

static const char *buf_data(const luar_buf_t *b, size_t *len)
{
    if (len)
        *len = b->len;
    return b->data ? b->data : "";
}

static int equals(const void *a, const void *b, size_t n)
{
    return luar_crypto_equals(a, n, b, n);
}

/* Either alphabet, padding optional: translated to base64url, whose decoder takes both. */
static int base64_decode(luar_buf_t *out, const char *text, size_t len)
{
    luar_buf_t t;
    luar_buf_init(&t, 0);
    int rc = luar_buf_append(&t, text, len);
    for (size_t i = 0; rc == 0 && i < len; i++)
        t.data[i] = t.data[i] == '+' ? '-' : t.data[i] == '/' ? '_' : t.data[i];
    if (rc == 0)
        rc = luar_base64url_decode(out, t.data ? t.data : "", len);
    luar_buf_free(&t);
    return rc;
}

static double host_now(const luar_host_t *h)
{
    (void)h;
    return luar_time_now();
}

/* ---- the table ----------------------------------------------------------------------- */

static int json_validate(const char *s, size_t len, int max_depth, luar_buf_t *why)
{
    return luar_json_validate(s, len, max_depth > 0 ? max_depth : LUAR_JSON_MAX_DEPTH, why);
}

void luar_plugin_host_init(plugin_rec_t *p)
{
    luar_host_t *h = &p->host;
    memset(h, 0, sizeof *h);
    h->size = sizeof *h;
    h->abi = LUAR_PLUGIN_ABI;
    h->version = LUAR_VERSION;
    h->plugin = p->name;
    h->log = host_log;
    h->config_string = config_string;
    h->config_number = config_number;
    h->config_bool = config_bool;
    h->metric_register = metric_register;
    h->metric_add = luar_metric_add;
    h->metric_set = luar_metric_set;
    h->metric_observe = luar_metric_observe;
    h->http_request = http_request;
    h->http_cancel = http_cancel;
    h->timer_start = timer_start;
    h->timer_stop = timer_stop;
    h->bridge_op_new = bridge_op_new;
    h->bridge_op_data = bridge_op_data;
    h->bridge_op_set_cleanup = bridge_op_set_cleanup;
    h->bridge_yield = luar_bridge_yield;
    h->bridge_complete = luar_bridge_complete;
    h->bridge_op_free = bridge_op_free;
    h->secret_get = secret_get;
    h->secret_watch = secret_watch;
    h->job_enqueue = job_enqueue;
    h->buf_append = luar_buf_append;
    h->buf_printf = buf_printf;
    h->buf_data = buf_data;
    h->webhook_header = luar_webhook_header;
    h->webhook_check_timestamp = luar_webhook_check_timestamp;
    h->equals = equals;
    h->hmac = luar_crypto_hmac;
    h->base64_encode = luar_base64_encode;
    h->hex_encode = luar_hex_encode;
    h->base64_decode = base64_decode;
    h->random_bytes = luar_crypto_random;
    h->now = host_now;
    h->buf_new = buf_new;
    h->buf_free = buf_free;
    h->buf_reset = luar_buf_reset;
    h->hex_decode = luar_hex_decode;
    h->json_validate = json_validate;
    h->json_member = luar_json_member;
    h->json_array_next = luar_json_array_next;
    h->json_unquote = luar_json_unquote;
    h->on_error = luar_plugin_hooks_on_error;
    h->on_log = luar_plugin_hooks_on_log;
    h->redact = luar_plugin_hooks_redact;
    h->context = luar_plugin_hooks_context;
    h->on_span = luar_plugin_hooks_on_span;
    h->on_stop = luar_plugin_hooks_on_stop;
}

void luar_plugin_host_release(plugin_rec_t *p)
{
    luar_plugin_hooks_release(&p->host);
    while (p->timers) {
        host_log(&p->host, LUAR_LOG_DEBUG, "timer left running after fini: stopped");
        timer_stop(p->timers);
    }
    while (p->calls) {
        host_log(&p->host, LUAR_LOG_DEBUG, "HTTP request left running after fini: cancelled");
        http_cancel(p->calls);
    }
    while (p->secrets) {
        struct secret_copy *s = p->secrets;
        p->secrets = s->next;
        OPENSSL_cleanse(s->value, s->len);
        free(s->name);
        free(s->value);
        free(s);
    }
}
