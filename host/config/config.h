/*
 * The configuration of SPEC §3: a Lua file returning a table (luar.conf.lua or --config),
 * then the LUAR_* environment variables, then command-line flags. Defaults with no file:
 * listen 127.0.0.1:8080, scripts ./scripts, data ./luar-data, queue sqlite:<data>/luar.db.
 */
#ifndef LUAR_CONFIG_H
#define LUAR_CONFIG_H

#include "common/buf.h"
#include "log/log.h"
#include "secrets/store.h"
#include "server/http.h"
#include "trace/export.h"

#include <stddef.h>

#define LUAR_MAX_QUEUE_LIMITS 32
/* jobs.concurrency when the configuration does not say */
#define LUAR_JOBS_DEFAULT_CONCURRENCY 10

/* jobs = { lease, heartbeat, result_ttl, dead_ttl, concurrency, poll, queues = {…} } */
typedef struct luar_jobs_config {
    double lease;        /* seconds a claim holds a job without a heartbeat (30) */
    double heartbeat;    /* seconds between lease renewals and sweeps (10) */
    double result_ttl;   /* seconds a succeeded job's result is kept (86400) */
    double dead_ttl;     /* seconds a dead job is kept (2592000) */
    double poll;         /* seconds between looks for work from other processes (0.5) */
    int concurrency;     /* jobs one worker runs at once (10); 0: none (an ingest node) */
    int nqueues;         /* per-queue limits of concurrent jobs in one worker */
    struct {
        char *name;
        int limit;
    } queues[LUAR_MAX_QUEUE_LIMITS];
} luar_jobs_config_t;

#define LUAR_DELIVER_MAX_ATTEMPTS 32

/*
 * webhooks = { deliver_allow_private, deliver_schedule = {…}, deliver_breaker = {…} }: the
 * outbound delivery settings (docs/sending-webhooks.md).
 */
typedef struct luar_webhooks_config {
    int deliver_allow_private; /* deliveries may reach loopback, private, link-local … (0) */
    /* Seconds to wait before each attempt, the first included (Svix's: 0, 5, 300, 1800,
       7200, 18000, 36000, 36000); deliver_attempts entries. */
    double deliver_schedule[LUAR_DELIVER_MAX_ATTEMPTS];
    int deliver_attempts;
    int deliver_breaker_failures;  /* consecutive failures that open an endpoint's breaker (5) */
    double deliver_breaker_reset;  /* seconds open before a probe is let through (30) */
} luar_webhooks_config_t;

/* Fills `w` with the defaults above. */
void luar_webhooks_config_init(luar_webhooks_config_t *w);

/*
 * plugins.<name> = { … } (SPEC §3, §5): one plugin's table flattened to dotted keys
 * ("api_key", "retry.max", "hosts.1") and their values as text (numbers and booleans
 * converted), for the config_* functions of the plugin host API (host/plugin/). The struct
 * behind luar/plugin.h's opaque luar_plugin_config_t.
 */
typedef struct luar_config_value {
    char *key;
    char *value;
    int type; /* LUA_TSTRING, LUA_TNUMBER or LUA_TBOOLEAN */
} luar_config_value_t;

struct luar_plugin_config {
    char *name; /* the plugin's name: the key under `plugins` */
    luar_config_value_t *values;
    size_t nvalues;
};

/* Values given on the command line; NULL/0 fields were not given. */
typedef struct luar_config_flags {
    const char *config;
    const char *listen;
    const char *scripts;
    const char *data;
    const char *queue;
    const char *workers;
} luar_config_flags_t;

typedef struct luar_config {
    char *file;             /* the configuration file read, or NULL when none */
    luar_listen_t *listen;  /* every string owned by the config */
    size_t nlisten;
    char *scripts;          /* folder holding main.lua */
    char *data;             /* data folder (queue file, control socket) */
    char *queue;            /* backend URL */
    int workers;            /* worker processes; "auto" resolves to the CPU count */
    char *admin_token;      /* NULL: admin API off */
    luar_http_limits_t limits;
    size_t lua_memory;      /* limits.lua_memory: bytes per Lua state */
    double cpu_budget;      /* limits.cpu_budget: seconds a coroutine may run without yielding */
    double shutdown_grace;  /* shutdown.grace: seconds SIGTERM waits for in-flight work */
    luar_log_config_t log;  /* log.file owned */
    luar_jobs_config_t jobs; /* jobs = { … } */
    luar_webhooks_config_t webhooks; /* webhooks = { … } */
    int reload_watch;       /* reload.watch */
    double reload_debounce; /* reload.debounce: seconds of quiet before a watched reload */
    char *secrets_file;     /* secrets.file; default <data>/secrets.enc */
    luar_secrets_key_t secrets_key; /* LUAR_SECRETS_KEY, else secrets.key; wiped on free */
    char *audit_file;       /* audit.file; default <data>/audit.log */
    char *public_url;       /* public_url (LUAR_PUBLIC_URL): OAuth redirect URIs; NULL: none */
    struct {
        size_t max_bytes; /* cache.max_bytes: the in-process cache's bound (64 MiB) */
        size_t max_value; /* cache.max_value: the largest value luar.cache stores (1 MiB) */
    } cache;
    char *redis_url;        /* redis.url: luar.redis's server; NULL: the queue's when Redis */
    char **plugin_dirs;     /* plugins.dir (a string or a list); NULL: the default dirs */
    size_t nplugin_dirs;
    struct luar_plugin_config *plugins; /* plugins.<name> tables, in no particular order */
    size_t nplugins;
    luar_tracing_config_t tracing; /* tracing = { … }: span export (trace/export.h) */
} luar_config_t;

/*
 * Loads the configuration: the file (flags->config, else ./luar.conf.lua when it exists),
 * then the environment, then `flags`. On failure returns LUAR_ECONFIG with one
 * "file:line: message" (or "LUAR_X: message", "--flag: message") line per error appended
 * to `err`; `cfg` is then freed already. On success the caller frees with luar_config_free.
 */
int luar_config_load(luar_config_t *cfg, const luar_config_flags_t *flags, luar_buf_t *err);

/* The configuration of plugin `name` (plugins.<name>), or NULL when the file names none. */
const struct luar_plugin_config *luar_config_plugin(const luar_config_t *cfg,
                                                    const char *name);

/* Frees what `cfg` owns. */
void luar_config_free(luar_config_t *cfg);

struct luar_vm_config;

/*
 * Fills `vc` for a VM of this configuration on `loop`: scripts folder, memory cap, CPU
 * budget; generation 0 and the default entry file. `vc` points into `cfg`, which must
 * outlive it.
 */
void luar_config_vm(const luar_config_t *cfg, uv_loop_t *loop, struct luar_vm_config *vc);

/* The path of the control socket: <data>/luar.sock. The caller frees the string. */
char *luar_config_control_path(const luar_config_t *cfg);

#endif
