/*
 * luar/plugin.h: the C ABI between Luar and its plugins. The only header a plugin
 * includes besides Lua's (<lua.h>, <lauxlib.h>).
 *
 * A plugin is a shared object that exports one symbol, `luar_plugin`, a luar_plugin_t
 * descriptor (use LUAR_PLUGIN_DEFINE). The host finds plugins in its plugin directory,
 * checks the descriptor's ABI number, calls init() once per serving process with the host
 * API table and the plugin's configuration (`plugins.<name>` in the config file), makes
 * `require "luar.<name>"` call open() in every Lua VM (each reload makes a new VM), adds
 * the plugin's webhook schemes to the registry, and calls fini() at shutdown.
 *
 * Rules every plugin follows:
 * - Everything happens on the host's loop thread: init, fini, open, the Lua functions the
 *   plugin registers, and every callback the host calls (HTTP completions, timers, scheme
 *   callbacks). A plugin never blocks that thread and never starts threads of its own.
 * - A plugin reaches the host only through the luar_host_t table it was given (keep the
 *   pointer; it stays valid until fini returns) and the Lua C API.
 * - Host functions return 0 or a negative LUAR_PLUGIN_E* code; they never raise Lua errors
 *   unless they say so (the bridge functions, which take a lua_State).
 * - Strings passed to the host are copied by it unless a function says otherwise; strings
 *   the host returns are owned by the host and valid for as long as the function says.
 * - Compatibility: LUAR_PLUGIN_ABI changes when anything in this file changes in a way
 *   that breaks a built plugin. Functions are only ever appended to luar_host_t within one
 *   ABI number; `host->size` tells a plugin which ones the running host has.
 */
#ifndef LUAR_PLUGIN_H
#define LUAR_PLUGIN_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI this header describes. A plugin built against another number is refused. */
#define LUAR_PLUGIN_ABI 1

/* The name of the descriptor symbol every plugin exports. */
#define LUAR_PLUGIN_SYMBOL "luar_plugin"

#if defined(__GNUC__)
#define LUAR_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define LUAR_PLUGIN_EXPORT
#endif

/* Exports the descriptor: `LUAR_PLUGIN_DEFINE = { .abi = LUAR_PLUGIN_ABI, ... };` */
#define LUAR_PLUGIN_DEFINE LUAR_PLUGIN_EXPORT const luar_plugin_t luar_plugin

/* ---- error codes (the host's own numbers) ------------------------------------------- */

enum {
    LUAR_PLUGIN_OK = 0,
    LUAR_PLUGIN_ENOMEM = -1,    /* out of memory */
    LUAR_PLUGIN_EINVAL = -2,    /* invalid argument */
    LUAR_PLUGIN_EIO = -3,       /* i/o error (the backend or the network failed) */
    LUAR_PLUGIN_ETOOBIG = -4,   /* too large */
    LUAR_PLUGIN_ENOTFOUND = -5, /* not found */
    LUAR_PLUGIN_EPARSE = -6,    /* malformed input */
    LUAR_PLUGIN_ETIMEOUT = -7,  /* timed out */
    LUAR_PLUGIN_ECLOSED = -8,   /* closed (the host is shutting down) */
    LUAR_PLUGIN_EEXISTS = -12,  /* already exists */
    LUAR_PLUGIN_ECONFIG = -13,  /* configuration error */
    LUAR_PLUGIN_ECANCELED = -14 /* canceled */
};

/* Log levels. */
enum {
    LUAR_PLUGIN_LOG_DEBUG = 0,
    LUAR_PLUGIN_LOG_INFO = 1,
    LUAR_PLUGIN_LOG_WARN = 2,
    LUAR_PLUGIN_LOG_ERROR = 3
};

/* ---- types the host and plugins share ------------------------------------------------ */

/*
 * A growable byte buffer owned by whoever created it. Plugins only append to buffers the
 * host hands them (reasons, signature headers) with host->buf_append / buf_printf, and read
 * them with host->buf_data. Opaque.
 */
typedef struct luar_buf luar_buf_t;

/* A header of a request the host received. Names are lower-case; not NUL-terminated. */
typedef struct luar_http_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} luar_http_header_t;

/* ---- webhook schemes ------------------------------------------------------------------ */

/*
 * A webhook signature scheme: where a provider puts the signature, timestamp, event id and
 * type, how to verify a request and how to sign a body as the provider would. The host's
 * schemes (`standard`, `hmac`) and the plugins' share this struct and one registry.
 *
 * A scheme is configured once per route (or per `luar webhook sign` call) into a `cfg`
 * holding the decoded secrets and options; verify() then allocates nothing. Every
 * comparison of a signature must be constant-time (host->equals). Reasons written to
 * `why` name what was wrong and never contain a secret or a signature.
 */

#define LUAR_WEBHOOK_DEFAULT_TOLERANCE 300.0
#define LUAR_WEBHOOK_MAX_SECRETS 8

/* Outcome of a verification (also the `outcome` label of luar_webhooks_total). */
typedef enum luar_webhook_verdict {
    LUAR_WEBHOOK_OK = 0,
    LUAR_WEBHOOK_MISSING, /* no signature (or no timestamp where one is required): 401 */
    LUAR_WEBHOOK_INVALID, /* malformed signature header or no signature matches: 401 */
    LUAR_WEBHOOK_EXPIRED  /* timestamp outside the tolerance, past or future: 401 */
} luar_webhook_verdict_t;

/* A request as a scheme sees it. Header names are lower-case. */
typedef struct luar_webhook_msg {
    const luar_http_header_t *headers;
    size_t nheaders;
    const char *body;
    size_t body_len;
} luar_webhook_msg_t;

/* A scheme option (`header = "X-Signature"`, `algorithm = "sha256"`, ...) as text. */
typedef struct luar_webhook_opt {
    const char *key;
    const char *value;
} luar_webhook_opt_t;

/*
 * One event of a request. Most providers send one event a request; SendGrid posts an
 * array of them. Pointers may point into the message or into the `scratch` buffer given to
 * events(); they stay valid while both do.
 */
typedef struct luar_webhook_event {
    const char *id; /* the provider's event id (the dedupe key); never NULL */
    size_t id_len;
    const char *type; /* event type ("charge.succeeded"); never NULL */
    size_t type_len;
    const char *json; /* the event as JSON text (the whole body, or one array element) */
    size_t json_len;
    int reply; /* nonzero: answer 200 with `json` as the body and enqueue nothing
                  (Slack's url_verification challenge) */
} luar_webhook_event_t;

typedef struct luar_webhook_scheme {
    const char *name;
    /* Headers holding signatures (lower-case, NULL-terminated): removed from the headers
     * handlers see. May be NULL. */
    const char *const *signature_headers;
    /*
     * Builds the scheme's configuration from the route's secrets (as the user wrote them;
     * at least one, at most LUAR_WEBHOOK_MAX_SECRETS) and options. Unknown option keys
     * are errors. Returns 0, or LUAR_PLUGIN_EINVAL with a line in `err` naming the option
     * or the secret's position (never its value).
     */
    int (*configure)(const char *const *secrets, const size_t *secret_lens, size_t nsecrets,
                     const luar_webhook_opt_t *opts, size_t nopts, void **cfg, luar_buf_t *err);
    /* Frees what configure() made; wipes the secrets. */
    void (*free_cfg)(void *cfg);
    /*
     * Verifies `msg` against every configured secret at time `now` (unix seconds) with
     * `tolerance` seconds either way. Returns a verdict; on failure appends a reason to
     * `why` ("no stripe-signature header", "timestamp 1700000000 is 3600 s in the past").
     */
    luar_webhook_verdict_t (*verify)(const void *cfg, const luar_webhook_msg_t *msg,
                                     double tolerance, double now, luar_buf_t *why);
    /*
     * After a successful verify: the events of the request, at most `max`, into `out`, and
     * their count in *n. `scratch` may hold decoded ids and types. Returns 0,
     * LUAR_PLUGIN_EPARSE with a reason in `why` (not JSON, no id: a 400), or
     * LUAR_PLUGIN_ETOOBIG when there are more than `max` events.
     */
    int (*events)(const void *cfg, const luar_webhook_msg_t *msg, luar_webhook_event_t *out,
                  size_t max, size_t *n, luar_buf_t *scratch, luar_buf_t *why);
    /*
     * Signs `body` with the first secret as the provider would, for event `id` (NULL when
     * the caller has none: the scheme makes one if it needs one) at `timestamp` (unix
     * seconds). Appends the headers as "Name: value\r\n" lines to `out`. Returns 0 or
     * LUAR_PLUGIN_EINVAL with `err` set (the scheme cannot sign: e.g. SendGrid signs with
     * a private key the route does not have). May be NULL.
     */
    int (*sign)(const void *cfg, const char *id, double timestamp, const char *body,
                size_t body_len, luar_buf_t *out, luar_buf_t *err);
    /* Optional: signature headers that depend on the configuration, NULL-terminated,
     * owned by `cfg`; added to signature_headers. May be NULL. */
    const char *const *(*cfg_signature_headers)(const void *cfg);
} luar_webhook_scheme_t;

/* ---- outbound HTTP --------------------------------------------------------------------- */

/* One header line of an outbound request or its response; both strings NUL-terminated. */
typedef struct luar_plugin_header {
    const char *name;
    const char *value;
} luar_plugin_header_t;

/*
 * An outbound request. Zero means the default for every numeric field (TLS verification is
 * always on). The host copies what it needs before http_request() returns.
 */
typedef struct luar_plugin_http_req {
    const char *method; /* "GET", "POST", ...; NULL: GET */
    const char *url;    /* absolute http:// or https:// URL */
    const luar_plugin_header_t *headers;
    size_t nheaders;
    const char *body; /* NULL: no body */
    size_t body_len;
    double connect_timeout; /* seconds; 0: 10 */
    double timeout;         /* the whole attempt, seconds; 0: 30 */
    size_t max_body;        /* response body cap in bytes; 0: 10 MiB */
} luar_plugin_http_req_t;

/*
 * The outcome of one attempt. rc 0: status, headers and body are set (an HTTP error status
 * is a response, not an error). rc < 0: `kind` is "timeout", "connect", "tls",
 * "too_large", "invalid" or "canceled" and `message` a readable line. Header names are
 * lower-case. Owned by the host; valid only during the completion callback.
 */
typedef struct luar_plugin_http_res {
    int rc;
    const char *kind;
    const char *message;
    long status;
    const luar_plugin_header_t *headers;
    size_t nheaders;
    const char *body;
    size_t body_len;
    double duration; /* seconds */
} luar_plugin_http_res_t;

typedef struct luar_plugin_http_call luar_plugin_http_call_t;

/* Called once per started request, from the loop (never from inside http_request). */
typedef void (*luar_plugin_http_done_fn)(void *arg, const luar_plugin_http_res_t *res);

/* ---- the rest of the host API's types ---------------------------------------------------- */

typedef struct luar_plugin_timer luar_plugin_timer_t;
typedef struct luar_metric luar_metric_t;
typedef struct luar_bridge_op luar_bridge_op_t;
typedef struct luar_plugin_config luar_plugin_config_t;

typedef enum luar_plugin_metric_type {
    LUAR_PLUGIN_COUNTER = 0,
    LUAR_PLUGIN_GAUGE = 1,
    LUAR_PLUGIN_HISTOGRAM = 2
} luar_plugin_metric_type_t;

/* The bridge's callbacks (see bridge_* below). */
typedef int (*luar_bridge_push_fn)(lua_State *L, luar_bridge_op_t *op);
typedef void (*luar_bridge_cleanup_fn)(luar_bridge_op_t *op, int canceled);

/* Options of a job a plugin enqueues; zeroed means the defaults. */
typedef struct luar_plugin_job_opts {
    const char *queue; /* NULL: the job's own or "default" */
    double delay;      /* seconds from now */
    const char *key;   /* dedupe key: a second enqueue with the same key is a duplicate */
    double key_ttl;    /* seconds the key is remembered; 0: one day */
} luar_plugin_job_opts_t;

/* rc 0: `id` is the new job's id, or NULL for a duplicate. rc < 0: `error` says why. */
typedef void (*luar_plugin_enqueue_fn)(void *arg, int rc, const char *id, const char *error);

/* ---- hooks: what the host tells plugins about the work (added within ABI 1) ------------ */

/*
 * An uncaught Lua error: a handler, a job attempt (a cron tick's job too), a pub/sub
 * handler. Strings are NUL-terminated, scrubbed of every secret value the host knows
 * (as its log lines are) and valid only during the call; the ones that do not apply are
 * NULL.
 */
typedef struct luar_plugin_error {
    const char *where;      /* "http", "job", "redis" (the luar_lua_errors_total label) */
    const char *message;    /* the error ("orders.lua:12: attempt to index a nil value") */
    const char *traceback;  /* Lua's ("stack traceback:\n\t[C]: in ..."); "" when none */
    double timestamp;       /* unix seconds */
    const char *route;      /* http: the route pattern ("/orders/:id") */
    const char *method;     /* http: "POST" */
    int status;             /* http: the status answered (500); 0 elsewhere */
    const char *request_id; /* http: the request's id */
    const char *job;        /* job: its name */
    const char *job_id;
    const char *queue;
    const char *schedule;   /* job: the schedule (jobs.cron / jobs.every) that enqueued it */
    int attempt;            /* job: this attempt, 1 for the first */
    int final;              /* job: no attempt follows (the job is dead) */
    const char *trace_id;   /* 32 hex digits; NULL when the work has no trace */
    const char *span_id;    /* 16 hex digits: the request's or job attempt's span */
} luar_plugin_error_t;

typedef void (*luar_plugin_error_fn)(void *arg, const luar_plugin_error_t *e);

/* A flag of a log line given to on_log hooks. */
#define LUAR_PLUGIN_LOG_REPORTED 1 /* the line logs an error on_error hooks were also given */

/*
 * A log line that passed the level filter: `line` is the JSON object as written (no
 * newline), already scrubbed of secret values, valid only during the call:
 * {"ts":"2026-01-02T03:04:05.678Z","level":"info","msg":"...",<fields>}.
 */
typedef void (*luar_plugin_log_fn)(void *arg, int level, const char *line, size_t len,
                                   int flags);

/* The work the running Lua code belongs to; NULL members are absent. Host-owned strings,
 * valid until the Lua function returns. */
typedef struct luar_plugin_context {
    const char *request_id;
    const char *job_id;
    const char *trace_id; /* 32 hex digits */
    const char *span_id;  /* 16 hex digits */
} luar_plugin_context_t;

/* An attribute of a span: a string value, or an integer one when `str` is NULL. */
typedef struct luar_plugin_attr {
    const char *key;
    const char *str;
    long long num;
} luar_plugin_attr_t;

/* Kinds of spans (OpenTelemetry's numbers). */
enum {
    LUAR_PLUGIN_SPAN_SERVER = 2,  /* an HTTP request the host answered */
    LUAR_PLUGIN_SPAN_CLIENT = 3,  /* an outbound call (luar.http) */
    LUAR_PLUGIN_SPAN_CONSUMER = 5 /* a job attempt */
};

/*
 * A span that ended (trace/export's, whether or not spans are exported). Attributes are
 * the exported ones: http.request.method, http.route, http.response.status_code (server);
 * http.request.method, url.full (secrets redacted), http.response.status_code or
 * error.type (client); luar.job.id, luar.job.name, luar.job.queue, luar.job.attempt (job).
 * Valid only during the call.
 */
typedef struct luar_plugin_span {
    const char *name;      /* "GET /orders/:id", "job charge", "POST" */
    int kind;              /* LUAR_PLUGIN_SPAN_* */
    const char *trace_id;  /* 32 hex digits */
    const char *span_id;   /* 16 hex digits */
    const char *parent_id; /* 16 hex digits; "" for the root of a trace */
    int sampled;           /* the trace's sampled flag (tracing.sample_rate, or the caller's) */
    double start, end;     /* unix seconds */
    int error;             /* the span failed (5xx, a transport error, a failed job) */
    const char *message;   /* why, or NULL */
    const luar_plugin_attr_t *attrs;
    size_t nattrs;
} luar_plugin_span_t;

typedef void (*luar_plugin_span_fn)(void *arg, const luar_plugin_span_t *span);

typedef struct luar_host luar_host_t;

struct luar_host {
    size_t size;          /* sizeof(luar_host_t) of the running host */
    int abi;              /* LUAR_PLUGIN_ABI of the running host */
    const char *version;  /* the host's version string ("0.1.0") */
    const char *plugin;   /* this plugin's name (each plugin gets its own table) */

    /* -- logging: one log line (printf format) with the field plugin=<name>; secrets the
     *    host knows are scrubbed. */
    void (*log)(const luar_host_t *h, int level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

    /* -- configuration: `plugins.<name>.<key>` of the config file. Strings are valid
     *    until fini. Nested tables are reached with dots ("retry.max"). */
    /* The value as text (numbers and booleans converted), or NULL when absent. */
    const char *(*config_string)(const luar_plugin_config_t *c, const char *key);
    /* 1 and *out set when the key holds a number (or a numeric string), else 0. */
    int (*config_number)(const luar_plugin_config_t *c, const char *key, double *out);
    /* 1 when the key is true, 0 when false or absent. */
    int (*config_bool)(const luar_plugin_config_t *c, const char *key);

    /* -- metrics. Names must be luar_<plugin>_...; labels fixed at registration. Registering
     *    the same name and shape twice returns the same metric. metric_register returns 0,
     *    LUAR_PLUGIN_EINVAL (a name outside luar_<plugin>_, bad label names; the reason is
     *    logged) or EEXISTS (the name is taken with another type or labels). */
    int (*metric_register)(const luar_host_t *h, luar_plugin_metric_type_t type,
                           const char *name, const char *help, const char *const *labels,
                           size_t nlabels, luar_metric_t **out);
    /* `values` holds one string per label. Counters only grow (v >= 0). */
    int (*metric_add)(luar_metric_t *m, const char *const *values, double v);
    int (*metric_set)(luar_metric_t *m, const char *const *values, double v);
    int (*metric_observe)(luar_metric_t *m, const char *const *values, double v);

    /* -- outbound HTTP: one attempt (no retry, breaker or cache: call luar.http from Lua
     *    for those). Returns 0 and calls cb exactly once later, unless http_cancel runs
     *    first; *call (may be NULL) identifies the request. Fails synchronously with
     *    LUAR_PLUGIN_EINVAL (no URL) or ENOMEM, and cb is then never called. */
    int (*http_request)(const luar_host_t *h, const luar_plugin_http_req_t *req,
                        luar_plugin_http_done_fn cb, void *arg, luar_plugin_http_call_t **call);
    /* Stops a request whose callback has not run; the callback will not run. NULL is
     *    ignored. */
    void (*http_cancel)(luar_plugin_http_call_t *call);

    /* -- timers: cb(arg) after `seconds`, then every `repeat` seconds when repeat > 0.
     *    A timer never keeps the process alive at shutdown. timer_stop stops and frees it
     *    (also from inside cb; NULL is ignored); a one-shot timer must still be stopped to be
     *    freed. Timers a plugin leaves are stopped by the host after fini. */
    int (*timer_start)(const luar_host_t *h, double seconds, double repeat,
                       void (*cb)(void *arg), void *arg, luar_plugin_timer_t **out);
    void (*timer_stop)(luar_plugin_timer_t *t);

    /* -- the coroutine bridge: the one way a Lua function of a plugin waits. In the Lua
     *    function: op = bridge_op_new(L, "stripe.call", sizeof(struct my_op)) (raises a
     *    Lua error when the caller cannot wait: top level of a script being loaded);
     *    start the I/O; bridge_op_set_cleanup(op, cleanup);
     *    return bridge_yield(L, op, push). The I/O's completion stores its result in
     *    bridge_op_data(op) and calls bridge_complete(op); the host then resumes the
     *    coroutine and calls push(L, op), which pushes the Lua results and returns their
     *    number, then cleanup(op, 0). When the task is cancelled while waiting (timeout,
     *    shutdown) the coroutine is never resumed: cleanup(op, 1) must stop the I/O.
     *    Cleanup ends with bridge_op_free(op), at once or later. `what` names the call in
     *    messages and must stay valid (a string literal). */
    luar_bridge_op_t *(*bridge_op_new)(lua_State *L, const char *what, size_t data_size);
    void *(*bridge_op_data)(luar_bridge_op_t *op);
    void (*bridge_op_set_cleanup)(luar_bridge_op_t *op, luar_bridge_cleanup_fn cleanup);
    int (*bridge_yield)(lua_State *L, luar_bridge_op_t *op, luar_bridge_push_fn push);
    void (*bridge_complete)(luar_bridge_op_t *op);
    void (*bridge_op_free)(luar_bridge_op_t *op);

    /* -- secrets: the value of secret `name` from the host's encrypted store (`luar secrets
     *    set`), valid until fini, or NULL. secret_watch makes the host scrub a value the
     *    plugin got elsewhere (an API key from its config) from logs, metrics and errors;
     *    it returns 0, LUAR_PLUGIN_EINVAL for a value shorter than 6 bytes (not watched),
     *    ETOOBIG (the host's set is full) or ENOMEM. */
    const char *(*secret_get)(const luar_host_t *h, const char *name, size_t *len);
    int (*secret_watch)(const luar_host_t *h, const char *what, const void *value, size_t len);

    /* -- jobs: enqueues job `name` with `args_json` (a JSON array or object; NULL: []) on
     *    the host's queue; cb(arg, ...) runs once the backend has stored it (or failed).
     *    The job's queue and retries default to its jobs.define in the current scripts.
     *    Fails synchronously, cb then never called, with LUAR_PLUGIN_EINVAL (no name, args
     *    not a JSON object or array), ECLOSED (the command has no queue: `luar check`) or
     *    ENOMEM. */
    int (*job_enqueue)(const luar_host_t *h, const char *name, const char *args_json,
                       size_t args_len, const luar_plugin_job_opts_t *opts,
                       luar_plugin_enqueue_fn cb, void *arg);

    /* -- buffers the host hands to scheme callbacks (and a plugin's own: buf_new below). */
    int (*buf_append)(luar_buf_t *b, const void *data, size_t len);
    int (*buf_printf)(luar_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
    const char *(*buf_data)(const luar_buf_t *b, size_t *len);

    /* -- helpers for schemes and clients. */
    /* The value of the first header `name` (lower-case) of `msg`, its length in *len;
     * NULL when absent. Points into the message. */
    const char *(*webhook_header)(const luar_webhook_msg_t *msg, const char *name,
                                  size_t *len);
    /* Checks a decimal unix-seconds timestamp against now ± tolerance; `header` names it in
     * reasons. OK (value in *ts when ts is not NULL), INVALID (not a number) or EXPIRED,
     * with a reason in `why`. */
    luar_webhook_verdict_t (*webhook_check_timestamp)(const char *header, const char *value,
                                                      size_t len, double tolerance,
                                                      double now, long long *ts,
                                                      luar_buf_t *why);
    /* Constant-time comparison: 1 when the n bytes are equal. */
    int (*equals)(const void *a, const void *b, size_t n);
    /* HMAC with "sha1", "sha256" or "sha512"; writes the MAC to out (64 bytes suffice) and
     * its length to *out_len. */
    int (*hmac)(const char *algorithm, const void *key, size_t key_len, const void *data,
                size_t data_len, unsigned char *out, size_t *out_len);
    /* Appends the encoding of data to `out`. */
    int (*base64_encode)(luar_buf_t *out, const void *data, size_t len);
    int (*hex_encode)(luar_buf_t *out, const void *data, size_t len);
    /* Appends the decoded bytes; LUAR_PLUGIN_EPARSE when `text` is not base64 (standard or
     * URL alphabet, padding optional). */
    int (*base64_decode)(luar_buf_t *out, const char *text, size_t len);
    /* Fills out with n cryptographically random bytes. */
    int (*random_bytes)(void *out, size_t n);
    /* Wall-clock time, unix seconds (the host's clock: tests may move it). */
    double (*now)(const luar_host_t *h);

    /* -- added within ABI 1 (check host->size >= offsetof(luar_host_t, buf_new) + sizeof
     *    (void *) before use when the plugin must run on an older host of ABI 1). */
    /* A buffer of the plugin's own (verify() decoding a signature, a MAC to hex-encode):
     * at most `max` bytes (0: no cap); NULL when out of memory. Freed with buf_free. */
    luar_buf_t *(*buf_new)(size_t max);
    void (*buf_free)(luar_buf_t *b);
    /* Empties a buffer (its own or one handed over), keeping its storage. */
    void (*buf_reset)(luar_buf_t *b);
    /* Appends the decoded bytes of hex `text` (either case); LUAR_PLUGIN_EPARSE when it is
     * not hex (odd length, another character). */
    int (*hex_decode)(luar_buf_t *out, const char *text, size_t len);

    /* -- added within ABI 1: JSON scanning without a Lua state, for schemes reading an
     *    event's id and type (the host's own ingest uses the same functions). */
    /* Validates `s` as one JSON text (RFC 8259, valid UTF-8, nesting at most `max_depth`,
     * 128 when 0). Returns 0, or LUAR_PLUGIN_EPARSE with a reason naming the byte offset
     * appended to `why` (may be NULL). */
    int (*json_validate)(const char *s, size_t len, int max_depth, luar_buf_t *why);
    /* In a validated text whose top level is an object: the raw text of member `key`'s
     * value (a string keeps its quotes) in *val / *vlen, and 1; 0 when absent. */
    int (*json_member)(const char *s, size_t len, const char *key, const char **val,
                       size_t *vlen);
    /* Walks a validated array: *pos = 0 first; each call gives the next element's raw
     * text and returns 1, then 0 at the end (or when the text is not an array). */
    int (*json_array_next)(const char *s, size_t len, size_t *pos, const char **el,
                           size_t *ellen);
    /* Appends the decoded contents of the raw JSON string `val` (quotes included) to
     * `out`; LUAR_PLUGIN_EPARSE when it is not a string. */
    int (*json_unquote)(const char *val, size_t vlen, luar_buf_t *out);

    /* -- added within ABI 1 (check host->size >= offsetof(luar_host_t, context) + sizeof
     *    (void *) before use): hooks for error reporters (Sentry), redaction. */
    /* Calls fn(arg, e) on the loop thread for every uncaught Lua error, just before the
     * host logs it. One hook a plugin: a second call replaces it; fn NULL removes it. Hooks
     * go at fini. Returns 0 or LUAR_PLUGIN_ENOMEM. */
    int (*on_error)(const luar_host_t *h, luar_plugin_error_fn fn, void *arg);
    /* Calls fn(arg, ...) on the loop thread for every log line written (any level that
     * passes the log's filter), after it is formatted and scrubbed. Lines a hook logs
     * itself (host->log inside fn) are written but not given to the hooks again. One hook
     * a plugin, replaced or removed (fn NULL) like on_error. */
    int (*on_log)(const luar_host_t *h, luar_plugin_log_fn fn, void *arg);
    /* Appends `text` to `out` with every secret value the host knows replaced by
     * "[REDACTED]" (the scrubbing of log lines: the raw value and its JSON-escaped forms).
     * Returns the number of replacements (>= 0) or LUAR_PLUGIN_ENOMEM. */
    int (*redact)(luar_buf_t *out, const char *text, size_t len);
    /* Fills *out with the request or job the Lua code running in L serves (all NULL at
     * the top level of a script). Returns 0. */
    int (*context)(lua_State *L, luar_plugin_context_t *out);

    /* -- added within ABI 1 (check host->size >= offsetof(luar_host_t, on_span) + sizeof
     *    (void *) before use). */
    /* Calls fn(arg, span) on the loop thread for every span that ends: requests, outbound
     * calls, job attempts. One hook a plugin, replaced or removed (fn NULL) like on_error.
     * While a plugin listens the host records spans even without tracing.endpoint. */
    int (*on_span)(const luar_host_t *h, luar_plugin_span_fn fn, void *arg);

    /* -- added within ABI 1 (check host->size >= offsetof(luar_host_t, on_stop) + sizeof
     *    (void *) before use). */
    /* Calls fn(arg) once on the loop thread when a serving process begins its final drain
     * (requests answered, jobs stopped; the Lua VMs close next, then fini). The host waits
     * for the plugin's HTTP requests in flight before fini: a plugin that sends in the
     * background (a queue of reports) bounds that here, e.g. with a timer that cancels
     * what is left. One hook a plugin, replaced or removed (fn NULL) like on_error. */
    int (*on_stop)(const luar_host_t *h, void (*fn)(void *arg), void *arg);
};

/* ---- the descriptor -------------------------------------------------------------------- */

typedef struct luar_plugin {
    int abi;                 /* LUAR_PLUGIN_ABI */
    const char *name;        /* [a-z][a-z0-9_]*: `require "luar.<name>"`, `plugins.<name>` */
    const char *version;     /* the plugin's version ("1.2.0") */
    const char *description; /* one line, for `luar plugins` */
    /*
     * Called once per serving process before any script loads. Stores the plugin's
     * context in *ctx (may stay NULL). Returns 0, or a negative code with a line in `err`
     * (NUL-terminated, at most err_size bytes) saying what is wrong ("plugins.stripe.
     * api_key is not set"). May be NULL.
     */
    int (*init)(const luar_host_t *host, const luar_plugin_config_t *config, void **ctx,
                char *err, size_t err_size);
    /* Called once at shutdown after the last Lua VM closed. May be NULL. */
    void (*fini)(void *ctx);
    /*
     * `require "luar.<name>"`: pushes the module (usually a table) and returns 1, like a
     * luaopen_* function; `ctx` is what init stored. Called once per Lua VM (each reload
     * generation has its own VM). May raise Lua errors. May be NULL (no Lua module).
     */
    int (*open)(lua_State *L, void *ctx);
    /* The webhook schemes this plugin provides, NULL-terminated; may be NULL. */
    const luar_webhook_scheme_t *const *schemes;
} luar_plugin_t;

#ifdef __cplusplus
}
#endif

#endif
