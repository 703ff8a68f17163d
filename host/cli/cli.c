/*
 * The command line of SPEC §2. Each command reads the same configuration (--config F, else
 * ./luar.conf.lua, then LUAR_* variables, then flags). Exit codes: 0 success, 1 runtime
 * failure, 2 usage or configuration error; errors go to stderr as one line naming the
 * file, key or argument at fault.
 */
#include "cli/cli.h"
#include "app/app.h"
#include "cli/jobs_cmd.h"
#include "cli/webhook_cmd.h"
#include "cli/secrets_cmd.h"
#include "jobs/jobs.h"
#include "oauth/oauth.h"
#include "queue/queue.h"
#include "sched/cron.h"
#include "common/error.h"
#include "config/config.h"
#include "log/log.h"
#include "lua/mod_redis.h"
#include "lua/coverage.h"
#include "lua/mod_test.h"
#include "lua/vm.h"
#include "luar_version.h"
#include "plugin/loader.h"
#include "webhooks/deliver.h"
#include "secrets/redact.h"
#include "secrets/secrets.h"
#include "server/conn.h"

#include <errno.h>
#include <http_parser.h>
#include <sqlite3.h>
#include <lua.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

typedef struct args {
    luar_config_flags_t flags;
    int worker_id;
    const char *coverage; /* `test --coverage[=FILE]`: the report's path ("" = the default) */
    double coverage_min;  /* `test --coverage-min=N`, or -1 */
    int npos;
    char **pos; /* positional arguments after the command */
} args_t;

/*
 * For commands with options of their own (jobs, enqueue, cron): takes --config, --data and
 * --scripts as global flags and passes every other argument through, in order.
 */
static void split_global(int argc, char **argv, args_t *a)
{
    memset(a, 0, sizeof *a);
    a->pos = calloc((size_t)argc + 1, sizeof *a->pos);
    for (int i = 2; i < argc; i++) {
        const char *name = argv[i];
        const char **slot = NULL;
        if (strncmp(name, "--config", 8) == 0 && (name[8] == '\0' || name[8] == '='))
            slot = &a->flags.config;
        else if (strncmp(name, "--data", 6) == 0 && (name[6] == '\0' || name[6] == '='))
            slot = &a->flags.data;
        else if (strncmp(name, "--scripts", 9) == 0 && (name[9] == '\0' || name[9] == '='))
            slot = &a->flags.scripts;
        if (slot == NULL) {
            a->pos[a->npos++] = argv[i];
        } else if (strchr(name, '=')) {
            *slot = strchr(name, '=') + 1;
        } else if (i + 1 < argc) {
            *slot = argv[++i];
        }
    }
}

static void usage(FILE *f)
{
    fputs("usage: luar <command> [options]\n"
          "\n"
          "  serve [--config F] [--listen ADDR] [--scripts DIR] [--data DIR] [--queue URL]\n"
          "        [--workers N]          run the host\n"
          "  check [--config F]           load config and scripts, print every error\n"
          "  run FILE.lua [ARGS...]       run one script to completion on a live loop\n"
          "  test [--coverage[=FILE]] [--coverage-min=N] [busted options] [PATH...]\n"
          "                               run busted specs inside the host\n"
          "  reload                       make the running instance reload its scripts\n"
          "  jobs stats|list|show|retry|delete|purge   inspect and repair the queue\n"
          "  enqueue NAME [--args JSON] [--queue Q] [--delay S] [--key K]   enqueue a job\n"
          "  cron list                    the schedules the scripts declare, next fire times\n"
          "  cron next EXPR [--tz TZ] [--from ISO8601] [--count N]\n"
          "  webhook sign --scheme S --secret X [--timestamp T] [--id ID] [--option K=V] [FILE]\n"
          "                               print the signature headers a provider would send\n"
          "  webhook send --scheme S --secret X --url URL [--header 'N: v'] [FILE]\n"
          "                               sign and POST a body; print the status\n"
          "  secrets set NAME [VALUE]|get NAME|list|delete NAME|rotate-key|gen-key\n"
          "                               the encrypted secret store (LUAR_SECRETS_KEY)\n"
          "  audit verify [FILE]          check the audit log's hash chain\n"
          "  plugins [--config F]         list the plugins found, and why any was refused\n"
          "  version                      versions of luar and its libraries\n",
          f);
}

/*
 * `luar test`'s own options: --coverage[=FILE] and --coverage-min=PERCENT (which implies
 * --coverage). Returns 1 when `arg` was one of them, 0 when not, -1 after printing why
 * its value is wrong.
 */
static int test_option(const char *arg, args_t *a)
{
    if (strcmp(arg, "--coverage") == 0) {
        if (a->coverage == NULL)
            a->coverage = "";
        return 1;
    }
    if (strncmp(arg, "--coverage=", 11) == 0) {
        a->coverage = arg + 11;
        return 1;
    }
    if (strncmp(arg, "--coverage-min=", 15) == 0) {
        char *end;
        double v = strtod(arg + 15, &end);
        if (end == arg + 15 || *end != '\0' || v < 0 || v > 100) {
            fprintf(stderr, "luar test: --coverage-min wants a percentage from 0 to 100, "
                            "not \"%s\"\n", arg + 15);
            return -1;
        }
        a->coverage_min = v;
        if (a->coverage == NULL)
            a->coverage = "";
        return 1;
    }
    return 0;
}

/*
 * Splits argv[2..] into flags and positional arguments. For `run`, everything after the
 * file belongs to the script. Returns 0, or 2 after printing the bad argument.
 */
static int parse_args(int argc, char **argv, int stop_at_first_positional, args_t *a)
{
    static const struct {
        const char *name;
        size_t off;
    } opts[] = {
        {"--config", offsetof(luar_config_flags_t, config)},
        {"--listen", offsetof(luar_config_flags_t, listen)},
        {"--scripts", offsetof(luar_config_flags_t, scripts)},
        {"--data", offsetof(luar_config_flags_t, data)},
        {"--queue", offsetof(luar_config_flags_t, queue)},
        {"--workers", offsetof(luar_config_flags_t, workers)},
    };
    memset(a, 0, sizeof *a);
    a->coverage_min = -1;
    a->pos = calloc((size_t)argc + 1, sizeof *a->pos);
    for (int i = 2; i < argc; i++) {
        const char *arg = argv[i];
        if (a->npos && stop_at_first_positional) {
            a->pos[a->npos++] = argv[i];
            continue;
        }
        if (strncmp(arg, "--", 2) != 0 || strcmp(arg, "--") == 0) {
            a->pos[a->npos++] = argv[i];
            continue;
        }
        if (strcmp(argv[1], "test") == 0) {
            int taken = test_option(arg, a);
            if (taken < 0)
                return 2;
            if (taken)
                continue;
        }
        char name[64];
        const char *value = NULL;
        const char *eq = strchr(arg, '=');
        if (eq) {
            snprintf(name, sizeof name, "%.*s", (int)(eq - arg), arg);
            value = eq + 1;
        } else {
            snprintf(name, sizeof name, "%s", arg);
            if (i + 1 < argc)
                value = argv[++i];
        }
        int found = 0;
        for (size_t k = 0; k < sizeof opts / sizeof opts[0]; k++) {
            if (strcmp(name, opts[k].name) == 0) {
                found = 1;
                *(const char **)((char *)&a->flags + opts[k].off) = value;
            }
        }
        if (strcmp(name, "--worker-id") == 0 && value) {
            found = 1;
            a->worker_id = atoi(value);
        }
        if (!found && strcmp(argv[1], "test") == 0) {
            /* busted's own options (--output=TAP, --filter x …) go to busted as given,
             * with the argument read as their value, if any, after them */
            int took_next = eq == NULL && value != NULL;
            a->pos[a->npos++] = argv[i - took_next];
            if (took_next)
                a->pos[a->npos++] = argv[i];
            continue;
        }
        if (!found) {
            fprintf(stderr, "luar %s: unknown option %s\n", argv[1], name);
            return 2;
        }
        if (value == NULL) {
            fprintf(stderr, "luar %s: %s needs a value\n", argv[1], name);
            return 2;
        }
    }
    return 0;
}

static int load_config(const args_t *a, luar_config_t *cfg)
{
    luar_buf_t err;
    luar_buf_init(&err, 0);
    int rc = luar_config_load(cfg, &a->flags, &err);
    if (rc)
        fprintf(stderr, "%s", err.data ? err.data : "configuration error\n");
    if (rc == 0) {
        luar_deliver_configure(&cfg->webhooks); /* webhook deliveries follow it (any job runner) */
        /* luar.oauth's public_url and the key its tokens are sealed under */
        luar_oauth_configure(cfg->public_url, cfg->secrets_key.bytes, cfg->secrets_key.set);
    }
    luar_buf_free(&err);
    return rc ? 2 : 0;
}

/* Prints script load errors to stderr, scrubbed of secret values read while loading. */
static void print_load_error(const luar_buf_t *err)
{
    luar_buf_t clean;
    luar_buf_init(&clean, 0);
    fputs(err->data ? luar_secret_clean(err->data, &clean) : "scripts failed to load\n", stderr);
    luar_buf_free(&clean);
}

/* Reads the secret store before any script runs: luar.secrets.get may be called at load. */
static int load_secrets(const luar_config_t *cfg)
{
    luar_buf_t err;
    luar_buf_init(&err, 0);
    int rc = luar_secrets_load(cfg->secrets_file, &cfg->secrets_key, &err);
    if (rc)
        fprintf(stderr, "luar: %s\n", err.data ? err.data : luar_strerror(rc));
    luar_buf_free(&err);
    return rc == 0 ? 0 : rc == LUAR_ECONFIG ? 2 : 1;
}

/*
 * Loads the plugins for a command that runs scripts (check, run, test, cron list) on
 * `loop`: refusals go to stderr; one the configuration names stops the command (2).
 */
static int load_plugins(const luar_config_t *cfg, uv_loop_t *loop)
{
    luar_buf_t err;
    luar_buf_init(&err, 0);
    int rc = luar_plugins_load(cfg, loop, &err);
    luar_plugins_print_refused(stderr);
    if (rc && err.data)
        luar_plugins_print_errors(stderr, err.data);
    else if (rc)
        fprintf(stderr, "luar: plugins: %s\n", luar_strerror(rc));
    luar_buf_free(&err);
    return rc ? 2 : 0;
}

/* After the last VM closed: the plugins' fini, then the loop (their handles close). */
static void close_plugins(uv_loop_t *loop)
{
    luar_plugins_unload();
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
}

static int cmd_serve(int argc, char **argv, const args_t *a)
{
    luar_config_t cfg;
    if (a->npos) {
        fprintf(stderr, "luar serve: unexpected argument %s\n", a->pos[0]);
        return 2;
    }
    if (load_config(a, &cfg))
        return 2;
    if (luar_log_open(&cfg.log))
        fprintf(stderr, "luar: cannot open log file %s; logging to stdout\n", cfg.log.file);
    int status;
    if (cfg.workers > 1 && a->worker_id == 0)
        status = luar_app_supervise(&cfg, argc, argv);
    else
        status = luar_app_serve(&cfg, a->worker_id);
    luar_log_close();
    luar_config_free(&cfg);
    return status;
}

/*
 * Loads the configuration and the scripts without serving, then calls show(vm, cfg) to
 * print what the command is about (`luar check`, `luar cron list`). Load errors are
 * printed as file:line: message and give status 2.
 */
static int with_scripts(const args_t *a, int (*show)(luar_vm_t *, const luar_config_t *))
{
    luar_config_t cfg;
    if (load_config(a, &cfg))
        return 2;
    int status = load_secrets(&cfg);
    if (status) {
        luar_config_free(&cfg);
        return status;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    luar_vm_config_t vc;
    luar_config_vm(&cfg, &loop, &vc);
    luar_buf_t err;
    luar_buf_init(&err, 0);
    luar_vm_t *vm = NULL;
    luar_log_set_level(LUAR_LOG_WARN);
    if (load_plugins(&cfg, &loop)) {
        status = 2;
    } else if (luar_vm_new(&vc, &vm, &err)) {
        print_load_error(&err);
        status = 2;
    } else {
        status = show(vm, &cfg);
        luar_vm_retire(vm);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    close_plugins(&loop);
    luar_log_flush();
    luar_buf_free(&err);
    luar_secrets_unload();
    luar_config_free(&cfg);
    return status;
}

/*
 * `luar check`: the scripts loaded; each TLS listener's certificate, key and client CA must
 * load as `serve` will load them (the log line before says which file and why not).
 */
static int show_check(luar_vm_t *vm, const luar_config_t *cfg)
{
    int bad = 0;
    for (size_t i = 0; i < cfg->nlisten; i++) {
        const luar_listen_t *l = &cfg->listen[i];
        SSL_CTX *ctx = NULL;
        if (l->cert == NULL)
            continue;
        const char *files[][2] = {{"cert", l->cert}, {"key", l->key}, {"client_ca", l->client_ca}};
        int missing = 0;
        for (size_t k = 0; k < 3; k++) {
            if (files[k][1] != NULL && access(files[k][1], R_OK) != 0) {
                fprintf(stderr, "luar check: listen %s: tls.%s %s: %s\n", l->addr, files[k][0],
                        files[k][1], strerror(errno));
                missing = bad = 1;
            }
        }
        if (!missing && luar_tls_ctx_new(l->cert, l->key, l->client_ca, &ctx) != 0) {
            fprintf(stderr, "luar check: listen %s: its TLS files do not load (cert %s, key "
                            "%s%s%s)\n",
                    l->addr, l->cert, l->key, l->client_ca ? ", client_ca " : "",
                    l->client_ca ? l->client_ca : "");
            bad = 1;
        }
        SSL_CTX_free(ctx);
    }
    if (bad)
        return 2;
    printf("ok: %s%s%s, %zu routes\n", cfg->file ? cfg->file : "", cfg->file ? " and " : "",
           cfg->scripts, luar_vm_routes(vm));
    return 0;
}

/* `luar cron list`: each schedule and its next fire times. */
static int show_schedules(luar_vm_t *vm, const luar_config_t *cfg)
{
    (void)cfg;
    luar_jobs_print_schedules(vm, stdout);
    return 0;
}

typedef struct run_state {
    int done;
    int status;
} run_state_t;

static void run_done(int status, void *arg)
{
    run_state_t *rs = arg;
    rs->done = 1;
    rs->status = status;
}

/*
 * `luar test --coverage`: writes the report once the specs ran and prints the total;
 * returns the run's status, or 1 when the total is below --coverage-min.
 */
static int report_coverage(const args_t *a, const luar_config_t *cfg, int status)
{
    char path[4096];
    if (a->coverage[0] != '\0') {
        snprintf(path, sizeof path, "%s", a->coverage);
    } else {
        mkdir(cfg->data, 0700);
        snprintf(path, sizeof path, "%s/coverage.txt", cfg->data);
    }
    luar_buf_t err;
    luar_buf_init(&err, 0);
    double percent = 0;
    if (luar_coverage_report(path, &percent, &err) != 0) {
        fprintf(stderr, "luar test: %s", err.data ? err.data : "coverage report failed\n");
        status = status ? status : 1;
    } else {
        fprintf(stderr, "coverage: %.2f%% of the code lines in %s ran (report: %s)\n", percent,
                cfg->scripts, path);
        if (a->coverage_min >= 0 && percent < a->coverage_min) {
            fprintf(stderr, "luar test: coverage %.2f%% is below --coverage-min=%g\n", percent,
                    a->coverage_min);
            status = status ? status : 1;
        }
    }
    luar_buf_free(&err);
    luar_coverage_stop();
    return status;
}

/* `luar run` and `luar test`: a VM on a live loop, run to completion. */
static int cmd_script(const args_t *a, int tests)
{
    luar_config_t cfg;
    if (!tests && a->npos == 0) {
        fprintf(stderr, "luar run: missing FILE.lua\n");
        return 2;
    }
    if (load_config(a, &cfg))
        return 2;
    int secrets_status = load_secrets(&cfg);
    if (secrets_status) {
        luar_config_free(&cfg);
        return secrets_status;
    }
    luar_log_open(&cfg.log);
    uv_loop_t loop;
    uv_loop_init(&loop);
    luar_vm_config_t vc;
    luar_config_vm(&cfg, &loop, &vc);
    /* The integration's routes are loaded for `test` when there is one; `run` needs none. */
    char main_path[4096];
    snprintf(main_path, sizeof main_path, "%s/main.lua", cfg.scripts);
    if (!tests || access(main_path, F_OK) != 0)
        vc.main_file = "";
    luar_buf_t err;
    luar_buf_init(&err, 0);
    luar_vm_t *vm = NULL;
    luar_queue_t *queue = NULL;
    run_state_t rs = {0, 1};
    int rc;
    /* `luar run` scripts may enqueue and read jobs; `luar test` gets its doubles: a queue
     * of its own in a temporary folder, a runner that only drains, stubs, log capture. */
    if (tests && luar_test_session_open(&loop, &cfg, &err)) {
        fprintf(stderr, "luar test: %s\n", err.data ? err.data : "cannot set up the doubles");
        luar_test_session_close();
        uv_run(&loop, UV_RUN_DEFAULT);
        luar_buf_free(&err);
        luar_config_free(&cfg);
        return 1;
    }
    if (!tests && luar_queue_open(&loop, cfg.queue, &queue, &err) == 0) {
        luar_queue_set_cache_limits(queue, cfg.cache.max_bytes, cfg.cache.max_value);
        luar_jobs_set_host(queue, NULL, &cfg.jobs);
    }
    luar_buf_reset(&err);
    /* ... and use luar.redis (config.c checked the URL already). */
    if (!tests)
        luar_redis_module_setup(&loop, cfg.redis_url, cfg.queue, &err);
    luar_buf_reset(&err);
    if (tests && a->coverage != NULL && luar_coverage_start(cfg.scripts) != 0) {
        fprintf(stderr, "luar test: --coverage: no scripts folder %s\n", cfg.scripts);
        rs.status = 2;
    } else if (load_plugins(&cfg, &loop)) {
        rs.status = 2;
    } else if (luar_vm_new(&vc, &vm, &err)) {
        print_load_error(&err);
        rs.status = 2;
    } else {
        luar_plugins_use_vm(vm);
        if (tests)
            luar_test_session_set_vm(vm);
        if (tests)
            rc = luar_vm_run_tests(vm, a->npos, a->pos, run_done, &rs);
        else
            rc = luar_vm_run_file(vm, a->pos[0], a->npos - 1, a->pos + 1, run_done, &rs);
        if (rc) {
            fprintf(stderr, "luar %s: %s\n", tests ? "test" : "run", luar_strerror(rc));
            rs.status = rc == LUAR_EINVAL || rc == LUAR_ENOTFOUND ? 2 : 1;
        } else {
            while (!rs.done && uv_run(&loop, UV_RUN_ONCE))
                luar_log_flush();
        }
        luar_vm_retire(vm);
    }
    luar_jobs_set_host(NULL, NULL, NULL);
    if (tests)
        luar_test_session_close();
    luar_redis_module_close();
    if (queue)
        luar_queue_close(queue, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (luar_coverage_on())
        rs.status = report_coverage(a, &cfg, rs.status);
    close_plugins(&loop);
    luar_log_flush();
    luar_buf_free(&err);
    luar_secrets_unload();
    luar_config_free(&cfg);
    return rs.status;
}

static int cmd_reload(const args_t *a)
{
    luar_config_t cfg;
    if (load_config(a, &cfg))
        return 2;
    char *path = luar_config_control_path(&cfg);
    luar_buf_t out;
    luar_buf_init(&out, 0);
    int rc = luar_control_request(path, "reload", &out);
    int status = 1;
    if (rc) {
        fprintf(stderr, "luar reload: %s\n", out.data ? out.data : "failed");
    } else if (out.data && strncmp(out.data, "{\"ok\":true", 10) == 0) {
        printf("reloaded: %s\n", out.data);
        status = 0;
    } else {
        fprintf(stderr, "luar reload: the new scripts failed to load; the previous ones keep "
                        "serving: %s\n", out.data ? out.data : "");
    }
    luar_buf_free(&out);
    free(path);
    luar_config_free(&cfg);
    return status;
}

/* `luar jobs …`, `luar enqueue …`: the configuration, then jobs_cmd.c. */
static int cmd_queue(int argc, char **argv, int enqueue)
{
    args_t a;
    luar_config_t cfg;
    split_global(argc, argv, &a);
    int status = 2;
    if (!enqueue && a.npos == 0) {
        fprintf(stderr, "luar jobs: missing subcommand (stats, list, show, retry, delete, "
                        "purge)\n");
    } else if (load_config(&a, &cfg) == 0) {
        status = enqueue ? luar_cli_enqueue(a.npos, a.pos, &cfg)
                         : luar_cli_jobs(a.npos, a.pos, &cfg);
        luar_config_free(&cfg);
    }
    free(a.pos);
    return status;
}

static int cmd_cron(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[2], "next") == 0)
        return luar_cron_cmd_next(argc - 3, argv + 3);
    if (argc >= 3 && strcmp(argv[2], "list") == 0) {
        args_t a;
        split_global(argc - 1, argv + 1, &a);
        int status = a.npos ? 2 : with_scripts(&a, show_schedules);
        if (a.npos)
            fprintf(stderr, "luar cron list: unexpected argument %s\n", a.pos[0]);
        free(a.pos);
        return status;
    }
    fprintf(stderr, "luar cron: expected \"list\" or \"next EXPR\"\n");
    return 2;
}

/* `luar plugins`: what the loader found, as a table, then the refused files and why. */
static int cmd_plugins(const args_t *a)
{
    luar_config_t cfg;
    if (a->npos) {
        fprintf(stderr, "luar plugins: unexpected argument %s\n", a->pos[0]);
        return 2;
    }
    if (load_config(a, &cfg))
        return 2;
    luar_buf_t err;
    luar_buf_init(&err, 0);
    /* init may read secrets; a store that cannot be read is reported and listed anyway */
    luar_secrets_load(cfg.secrets_file, &cfg.secrets_key, &err);
    luar_buf_reset(&err);
    luar_log_set_level(LUAR_LOG_WARN);
    uv_loop_t loop;
    uv_loop_init(&loop);
    luar_plugins_load(&cfg, &loop, &err);
    size_t n = luar_plugins_count(), loaded = 0;
    int wname = 4, wver = 7, wpath = 4;
    for (size_t i = 0; i < n; i++) {
        const luar_plugin_info_t *p = luar_plugins_at(i);
        if (p->refused)
            continue;
        loaded++;
        if ((int)strlen(p->name) > wname)
            wname = (int)strlen(p->name);
        if ((int)strlen(p->version) > wver)
            wver = (int)strlen(p->version);
        if ((int)strlen(p->path) > wpath)
            wpath = (int)strlen(p->path);
    }
    if (loaded)
        printf("%-*s  %-*s  ABI  %-*s  DESCRIPTION\n", wname, "NAME", wver, "VERSION", wpath,
               "PATH");
    for (size_t i = 0; i < n; i++) {
        const luar_plugin_info_t *p = luar_plugins_at(i);
        if (!p->refused)
            printf("%-*s  %-*s  %-3d  %-*s  %s\n", wname, p->name, wver, p->version, p->abi,
                   wpath, p->path, p->description ? p->description : "");
    }
    if (loaded == 0)
        printf("no plugins loaded\n");
    for (size_t i = 0; i < n; i++) {
        const luar_plugin_info_t *p = luar_plugins_at(i);
        if (p->refused)
            printf("refused: %s: %s\n", p->path, p->refused);
    }
    /* What would stop `luar serve`: a configured plugin refused or missing. */
    luar_plugins_print_errors(stderr, err.data);
    luar_buf_free(&err);
    close_plugins(&loop);
    luar_secrets_unload();
    luar_config_free(&cfg);
    return 0;
}

static int cmd_version(void)
{
    unsigned long hp = http_parser_version();
    printf("luar %s\n", LUAR_VERSION);
    printf("%s\n", LUA_RELEASE);
    printf("libuv %s\n", uv_version_string());
    printf("%s\n", OpenSSL_version(OPENSSL_VERSION));
    printf("http-parser %lu.%lu.%lu\n", (hp >> 16) & 255, (hp >> 8) & 255, hp & 255);
    printf("lua-cjson 2.1.0\n");
    printf("SQLite %s\n", sqlite3_libversion());
    return 0;
}

int luar_cli_main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0)
        return cmd_version();
    if (strcmp(cmd, "jobs") == 0 || strcmp(cmd, "enqueue") == 0)
        return cmd_queue(argc, argv, strcmp(cmd, "enqueue") == 0);
    if (strcmp(cmd, "cron") == 0)
        return cmd_cron(argc, argv);
    if (strcmp(cmd, "webhook") == 0)
        return luar_cli_webhook(argc - 2, argv + 2);
    if (strcmp(cmd, "secrets") == 0)
        return luar_cli_secrets(argc - 2, argv + 2);
    if (strcmp(cmd, "audit") == 0)
        return luar_cli_audit(argc - 2, argv + 2);
    args_t a;
    int status = parse_args(argc, argv, strcmp(cmd, "run") == 0, &a);
    if (status == 0) {
        if (strcmp(cmd, "serve") == 0)
            status = cmd_serve(argc, argv, &a);
        else if (strcmp(cmd, "check") == 0)
            status = with_scripts(&a, show_check);
        else if (strcmp(cmd, "run") == 0)
            status = cmd_script(&a, 0);
        else if (strcmp(cmd, "test") == 0)
            status = cmd_script(&a, 1);
        else if (strcmp(cmd, "reload") == 0)
            status = cmd_reload(&a);
        else if (strcmp(cmd, "plugins") == 0)
            status = cmd_plugins(&a);
        else {
            fprintf(stderr, "luar: unknown command %s\n", cmd);
            usage(stderr);
            status = 2;
        }
    }
    free(a.pos);
    return status;
}
