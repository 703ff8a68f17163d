/*
 * `luar jobs …` and `luar enqueue`: one backend operation per command, driven to completion
 * on a private loop. The callbacks of queue.h hand over pointers valid only during the call,
 * so each callback formats its output into the session's buffer right away; the command
 * prints the buffer once the backend is closed.
 */
#include "cli/jobs_cmd.h"
#include "cli/jobs_format.h"
#include "common/buf.h"
#include "common/error.h"
#include "jobs/jobs.h"
#include "log/log.h"
#include "lua/util.h"
#include "lua/vm.h"
#include "plugin/loader.h"
#include "queue/queue.h"
#include "sched/tz.h"

#include <ctype.h>
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

/* How long one backend operation may take before the command gives up. */
#define OP_TIMEOUT_MS 30000
/* Characters of last_error shown per line of `jobs list`. */
#define LIST_ERROR_WIDTH 60
/* Widest name or queue column of `jobs list`. */
#define LIST_NAME_WIDTH 32
/* max_attempts of a job enqueued with no definition: jobs.enqueue's default. */
#define UNDEFINED_JOB_MAX_ATTEMPTS (LUAR_JOBS_DEFAULT_RETRIES + 1)

/* ---- options ------------------------------------------------------------------------ */

enum {
    C_STATS = 1 << 0,
    C_LIST = 1 << 1,
    C_SHOW = 1 << 2,
    C_RETRY = 1 << 3,
    C_DELETE = 1 << 4,
    C_PURGE = 1 << 5,
    C_ENQUEUE = 1 << 6,
};

typedef struct opts {
    const char *cmd; /* "jobs list", "enqueue": the prefix of every message */
    const char *usage;
    int which; /* one of C_* */
    const char *pos[4];
    int npos;
    int json, dead, help;
    const char *state, *queue, *name, *limit, *cursor, *error, *since, *until;
    const char *args, *delay, *key, *priority, *max_attempts;
} opts_t;

static const struct {
    const char *name;
    int commands; /* C_* bits of the commands accepting it */
    size_t off;   /* offset of its `const char *` in opts_t, or of its int flag */
    int is_flag;
} option_table[] = {
    {"--json", C_STATS | C_LIST | C_SHOW | C_RETRY | C_DELETE | C_PURGE | C_ENQUEUE,
     offsetof(opts_t, json), 1},
    {"--help", C_STATS | C_LIST | C_SHOW | C_RETRY | C_DELETE | C_PURGE | C_ENQUEUE,
     offsetof(opts_t, help), 1},
    {"--dead", C_RETRY, offsetof(opts_t, dead), 1},
    {"--state", C_LIST | C_PURGE, offsetof(opts_t, state), 0},
    {"--queue", C_LIST | C_RETRY | C_PURGE | C_ENQUEUE, offsetof(opts_t, queue), 0},
    {"--name", C_LIST | C_RETRY | C_PURGE, offsetof(opts_t, name), 0},
    {"--limit", C_LIST, offsetof(opts_t, limit), 0},
    {"--cursor", C_LIST, offsetof(opts_t, cursor), 0},
    {"--error", C_LIST | C_RETRY | C_PURGE, offsetof(opts_t, error), 0},
    {"--since", C_LIST | C_RETRY | C_PURGE, offsetof(opts_t, since), 0},
    {"--until", C_LIST | C_RETRY | C_PURGE, offsetof(opts_t, until), 0},
    {"--args", C_ENQUEUE, offsetof(opts_t, args), 0},
    {"--delay", C_ENQUEUE, offsetof(opts_t, delay), 0},
    {"--key", C_ENQUEUE, offsetof(opts_t, key), 0},
    {"--priority", C_ENQUEUE, offsetof(opts_t, priority), 0},
    {"--max-attempts", C_ENQUEUE, offsetof(opts_t, max_attempts), 0},
};

static const struct {
    const char *name;
    int which;
    int min_pos, max_pos;
    const char *usage;
} command_table[] = {
    {"stats", C_STATS, 0, 0, "usage: luar jobs stats [--json]"},
    {"list", C_LIST, 0, 0,
     "usage: luar jobs list [--state S] [--queue Q] [--name N] [--error TEXT] [--since T] "
     "[--until T] [--limit N] [--cursor ID] [--json]"},
    {"show", C_SHOW, 1, 1, "usage: luar jobs show ID [--json]"},
    {"retry", C_RETRY, 0, 1,
     "usage: luar jobs retry ID | --dead [--queue Q] [--name N] [--error TEXT] [--since T] "
     "[--until T] [--json]"},
    {"delete", C_DELETE, 1, 1, "usage: luar jobs delete ID [--json]"},
    {"purge", C_PURGE, 0, 0,
     "usage: luar jobs purge --state S [--queue Q] [--name N] [--error TEXT] [--since T] "
     "[--until T] [--json]"},
};

static const char jobs_usage[] = "usage: luar jobs stats|list|show|retry|delete|purge [options]";
static const char enqueue_usage[] =
    "usage: luar enqueue NAME [--args JSON] [--queue Q] [--delay SECONDS] [--key KEY] "
    "[--priority P] [--max-attempts N] [--json]";

static int usage_error(const opts_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints "luar CMD: message" and the command's usage line to stderr; returns 2. */
static int usage_error(const opts_t *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "luar %s: ", o->cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n%s\n", o->usage);
    va_end(ap);
    return 2;
}

/* Splits argv into options and positional arguments. Returns 0, or 2 after the message. */
static int parse_opts(opts_t *o, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0) {
            o->help = 1;
            continue;
        }
        if (arg[0] != '-' || arg[1] == '\0') {
            if (o->npos == (int)(sizeof o->pos / sizeof o->pos[0]))
                return usage_error(o, "unexpected argument %s", arg);
            o->pos[o->npos++] = arg;
            continue;
        }
        const char *eq = strchr(arg, '=');
        size_t namelen = eq ? (size_t)(eq - arg) : strlen(arg);
        size_t k;
        for (k = 0; k < sizeof option_table / sizeof option_table[0]; k++) {
            if (strlen(option_table[k].name) == namelen &&
                strncmp(option_table[k].name, arg, namelen) == 0 &&
                (option_table[k].commands & o->which))
                break;
        }
        if (k == sizeof option_table / sizeof option_table[0]) {
            char name[64];
            snprintf(name, sizeof name, "%.*s", (int)(namelen < 60 ? namelen : 60), arg);
            return usage_error(o, "unknown option %s", name);
        }
        char *field = (char *)o + option_table[k].off;
        if (option_table[k].is_flag) {
            if (eq)
                return usage_error(o, "%s takes no value", option_table[k].name);
            *(int *)field = 1;
            continue;
        }
        const char *value = eq ? eq + 1 : NULL;
        if (value == NULL && i + 1 < argc)
            value = argv[++i];
        if (value == NULL)
            return usage_error(o, "%s needs a value", option_table[k].name);
        *(const char **)field = value;
    }
    return 0;
}

/* Parses a whole decimal integer within [lo, hi]; returns 0 or -1. */
static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno != 0 || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int parse_state(const opts_t *o, const char *s, int *out)
{
    luar_job_state_t st;
    if (luar_job_state_parse(s, &st) != 0) {
        fprintf(stderr,
                "luar %s: --state: unknown state '%s' (queued, scheduled, running, succeeded, "
                "retrying, dead)\n",
                o->cmd, s);
        return 2;
    }
    *out = (int)st;
    return 0;
}

/* ---- the session: a private loop, the backend, one operation at a time ------------------ */

typedef struct sess {
    uv_loop_t loop;
    uv_timer_t timer;
    luar_queue_t *q;
    const opts_t *o;
    const char *url;
    char shown[512]; /* url without its password, for messages */
    int done;      /* the callback of the current operation ran */
    int timed_out; /* the session is abandoned: the backend may still hold the loop */
    int rc;        /* the callback's rc */
    luar_buf_t out;
    /* results copied out of callbacks */
    char id[128];
    int state;
    double enqueued_at;
    size_t count;
} sess_t;

static void on_timeout(uv_timer_t *t)
{
    sess_t *s = t->data;
    s->timed_out = 1;
}

/* The path of a "sqlite:PATH" URL into `path`, or "" for other schemes. */
static void sqlite_path(const char *url, char *path, size_t size)
{
    path[0] = '\0';
    if (strncmp(url, "sqlite:", 7) != 0)
        return;
    const char *p = url + 7;
    if (strncmp(p, "//", 2) == 0)
        p += 2;
    size_t n = strcspn(p, "?");
    if (n >= size)
        n = size - 1;
    memcpy(path, p, n);
    path[n] = '\0';
}

/*
 * Opens cfg->queue. Commands that only read or repair refuse a SQLite file that does not
 * exist (a wrong --data would otherwise create an empty queue and report it as empty);
 * enqueue creates the data folder, as serve does. Returns 0 or the exit status: 2 for an
 * unknown backend scheme, 1 when the backend cannot be opened.
 */
static int sess_open(sess_t *s, const opts_t *o, const luar_config_t *cfg, int create)
{
    memset(s, 0, sizeof *s);
    s->o = o;
    s->url = cfg->queue ? cfg->queue : "";
    luar_queue_url_redact(s->url, s->shown, sizeof s->shown);
    luar_buf_init(&s->out, 0);
    char path[4096];
    sqlite_path(s->url, path, sizeof path);
    if (create && cfg->data != NULL) {
        mkdir(cfg->data, 0700);
    } else if (!create && path[0] != '\0' && path[0] != ':' && access(path, F_OK) != 0) {
        fprintf(stderr, "luar %s: cannot open queue %s: %s (check --data or --queue)\n", o->cmd,
                s->shown, strerror(errno));
        return 1;
    }
    if (uv_loop_init(&s->loop) != 0) {
        fprintf(stderr, "luar %s: cannot create an event loop\n", o->cmd);
        return 1;
    }
    uv_timer_init(&s->loop, &s->timer);
    s->timer.data = s;
    luar_buf_t err;
    luar_buf_init(&err, 4096);
    int rc = luar_queue_open(&s->loop, s->url, &s->q, &err);
    if (rc != 0) {
        fprintf(stderr, "luar %s: cannot open queue %s: %s\n", o->cmd, s->shown,
                err.data ? err.data : luar_strerror(rc));
        luar_buf_free(&err);
        s->q = NULL;
        uv_close((uv_handle_t *)&s->timer, NULL);
        uv_run(&s->loop, UV_RUN_DEFAULT);
        uv_loop_close(&s->loop);
        /* An unknown scheme is a configuration error; a file that cannot be opened is not. */
        return rc == LUAR_EINVAL ? 2 : 1;
    }
    luar_buf_free(&err);
    return 0;
}

/*
 * Waits for the operation just started: `start_rc` is what the luar_queue_* call returned
 * (a synchronous failure means no callback). Returns the operation's rc, or LUAR_ETIMEDOUT
 * after printing that the backend did not answer.
 */
static int sess_wait(sess_t *s, int start_rc)
{
    if (start_rc != 0)
        return start_rc;
    uv_timer_start(&s->timer, on_timeout, OP_TIMEOUT_MS, 0);
    while (!s->done && !s->timed_out)
        uv_run(&s->loop, UV_RUN_ONCE);
    uv_timer_stop(&s->timer);
    if (!s->done) {
        fprintf(stderr, "luar %s: queue %s did not answer within %d s\n", s->o->cmd, s->shown,
                OP_TIMEOUT_MS / 1000);
        return LUAR_ETIMEOUT;
    }
    s->done = 0;
    return s->rc;
}

/*
 * Closes the backend, runs the loop to its end and prints the output when `status` is 0.
 * A session that timed out is abandoned as it is: its backend still owns work in flight and
 * the process is about to exit. Returns `status`.
 */
static int sess_close(sess_t *s, int status)
{
    if (!s->timed_out) {
        luar_queue_close(s->q, NULL, NULL);
        uv_close((uv_handle_t *)&s->timer, NULL);
        uv_run(&s->loop, UV_RUN_DEFAULT);
        if (uv_loop_close(&s->loop) != 0 && status == 0) {
            fprintf(stderr, "luar %s: the queue left handles open\n", s->o->cmd);
            status = 1;
        }
    }
    if (status == 0 && s->out.len > 0)
        fwrite(s->out.data, 1, s->out.len, stdout);
    fflush(stdout);
    luar_buf_free(&s->out);
    return status;
}

/* Reports a failed operation: "no job ID" for LUAR_ENOTFOUND. Returns the exit status. */
static int op_failed(sess_t *s, int rc, const char *id)
{
    if (rc == LUAR_ETIMEOUT && s->timed_out)
        return 1;
    if (rc == LUAR_ENOTFOUND && id != NULL)
        fprintf(stderr, "luar %s: no job %s\n", s->o->cmd, id);
    else if (rc == LUAR_EIO && luar_queue_last_error(s->q)[0] != '\0')
        fprintf(stderr, "luar %s: %s\n", s->o->cmd, luar_queue_last_error(s->q));
    else
        fprintf(stderr, "luar %s: queue %s: %s\n", s->o->cmd, s->shown, luar_strerror(rc));
    return 1;
}

static void on_done(void *arg, int rc)
{
    sess_t *s = arg;
    s->rc = rc;
    s->done = 1;
}

static void on_count(void *arg, int rc, size_t count)
{
    sess_t *s = arg;
    s->rc = rc;
    s->count = count;
    s->done = 1;
}

/* ---- jobs stats --------------------------------------------------------------------- */

static void on_counts(void *arg, int rc, const luar_queue_count_t *counts, size_t n)
{
    sess_t *s = arg;
    s->rc = rc;
    s->done = 1;
    if (rc != 0)
        return;
    luar_buf_t *b = &s->out;
    int64_t total[LUAR_JOB_STATES + 1] = {0};
    for (size_t i = 0; i < n; i++) {
        for (int st = 0; st < LUAR_JOB_STATES; st++) {
            total[st] += counts[i].counts[st];
            total[LUAR_JOB_STATES] += counts[i].counts[st];
        }
    }
    if (s->o->json) {
        luar_buf_puts(b, "{\"queues\":{");
        for (size_t i = 0; i < n; i++) {
            int64_t sum = 0;
            luar_buf_puts(b, i ? "," : "");
            luar_jobs_fmt_json_str(b, counts[i].queue);
            luar_buf_putc(b, ':');
            for (int st = 0; st < LUAR_JOB_STATES; st++) {
                luar_buf_appendf(b, "%s\"%s\":%lld", st ? "," : "{",
                                 luar_job_state_name((luar_job_state_t)st),
                                 (long long)counts[i].counts[st]);
                sum += counts[i].counts[st];
            }
            luar_buf_appendf(b, ",\"total\":%lld}", (long long)sum);
        }
        luar_buf_puts(b, "},\"total\":");
        for (int st = 0; st < LUAR_JOB_STATES; st++)
            luar_buf_appendf(b, "%s\"%s\":%lld", st ? "," : "{",
                             luar_job_state_name((luar_job_state_t)st), (long long)total[st]);
        luar_buf_appendf(b, ",\"total\":%lld}}\n", (long long)total[LUAR_JOB_STATES]);
        return;
    }
    size_t qw = 5;
    for (size_t i = 0; i < n; i++) {
        size_t w = luar_jobs_fmt_text_width(counts[i].queue ? counts[i].queue : "", LIST_NAME_WIDTH);
        qw = w > qw ? w : qw;
    }
    int widths[LUAR_JOB_STATES + 1];
    char num[32];
    luar_jobs_fmt_put_padded(b, "QUEUE", qw);
    for (int st = 0; st <= LUAR_JOB_STATES; st++) {
        const char *h = st < LUAR_JOB_STATES ? luar_job_state_name((luar_job_state_t)st) : "total";
        char upper[16];
        size_t m;
        for (m = 0; h[m] != '\0' && m < sizeof upper - 1; m++)
            upper[m] = (char)toupper((unsigned char)h[m]);
        upper[m] = '\0';
        int w = snprintf(num, sizeof num, "%lld", (long long)total[st]);
        widths[st] = (int)m > w ? (int)m : w;
        luar_buf_appendf(b, "   %*s", widths[st], upper);
    }
    luar_buf_putc(b, '\n');
    for (size_t i = 0; i <= n; i++) {
        const int64_t *row = i < n ? counts[i].counts : total;
        int64_t sum = 0;
        luar_jobs_fmt_put_padded(b, i < n ? counts[i].queue : "TOTAL", qw);
        for (int st = 0; st < LUAR_JOB_STATES; st++) {
            luar_buf_appendf(b, "   %*lld", widths[st], (long long)row[st]);
            sum += row[st];
        }
        luar_buf_appendf(b, "   %*lld\n", widths[LUAR_JOB_STATES], (long long)sum);
    }
}

static int cmd_stats(sess_t *s)
{
    int rc = sess_wait(s, luar_queue_counts(s->q, on_counts, s));
    return rc ? op_failed(s, rc, NULL) : 0;
}

/* ---- jobs list ---------------------------------------------------------------------- */

static void on_list(void *arg, int rc, const luar_job_t *jobs, size_t n, const char *next)
{
    sess_t *s = arg;
    s->rc = rc;
    s->done = 1;
    if (rc != 0)
        return;
    luar_buf_t *b = &s->out;
    if (s->o->json) {
        luar_buf_puts(b, "{\"jobs\":[");
        for (size_t i = 0; i < n; i++) {
            luar_buf_puts(b, i ? "," : "");
            luar_jobs_fmt_json_job(b, &jobs[i]);
        }
        luar_buf_puts(b, "],\"next_cursor\":");
        luar_jobs_fmt_json_str(b, next);
        luar_buf_puts(b, "}\n");
        return;
    }
    if (n == 0) {
        luar_buf_puts(b, "no jobs\n");
        return;
    }
    size_t wid = 2, wname = 4, wqueue = 5, watt = 7;
    char att[32], when[40];
    for (size_t i = 0; i < n; i++) {
        size_t w;
        w = strlen(jobs[i].id);
        wid = w > wid ? w : wid;
        w = luar_jobs_fmt_text_width(jobs[i].name ? jobs[i].name : "-", LIST_NAME_WIDTH);
        wname = w > wname ? w : wname;
        w = luar_jobs_fmt_text_width(jobs[i].queue ? jobs[i].queue : "-", LIST_NAME_WIDTH);
        wqueue = w > wqueue ? w : wqueue;
        luar_jobs_fmt_attempts_text(&jobs[i], att, sizeof att);
        watt = strlen(att) > watt ? strlen(att) : watt;
    }
    luar_buf_appendf(b, "%-*s  %-9s  ", (int)wid, "ID", "STATE");
    luar_jobs_fmt_put_padded(b, "NAME", wname);
    luar_buf_puts(b, "  ");
    luar_jobs_fmt_put_padded(b, "QUEUE", wqueue);
    luar_buf_appendf(b, "  %-*s  %-20s  LAST_ERROR\n", (int)watt, "ATTEMPT", "RUN_AT");
    for (size_t i = 0; i < n; i++) {
        const luar_job_t *j = &jobs[i];
        luar_jobs_fmt_attempts_text(j, att, sizeof att);
        luar_buf_appendf(b, "%-*s  %-9s  ", (int)wid, j->id, luar_job_state_name(j->state));
        luar_jobs_fmt_put_padded(b, j->name, wname);
        luar_buf_puts(b, "  ");
        luar_jobs_fmt_put_padded(b, j->queue, wqueue);
        luar_buf_appendf(b, "  %-*s  %-20s  ", (int)watt, att,
                         luar_jobs_fmt_iso_time(j->run_at, 0, when, sizeof when));
        luar_jobs_fmt_put_clipped(b, j->last_error, LIST_ERROR_WIDTH);
        luar_buf_putc(b, '\n');
    }
    if (next != NULL)
        luar_buf_appendf(b, "more: luar jobs list --cursor %s\n", next);
}

static int cmd_list(sess_t *s, const luar_job_filter_t *f)
{
    int rc = sess_wait(s, luar_queue_list(s->q, f, on_list, s));
    return rc ? op_failed(s, rc, NULL) : 0;
}

/* ---- jobs show ---------------------------------------------------------------------- */

static void show_field(luar_buf_t *b, const char *name, const char *value)
{
    luar_buf_appendf(b, "%-17s %s\n", name, value != NULL && *value ? value : "-");
}

static void show_time(luar_buf_t *b, const char *name, double t)
{
    char when[40];
    show_field(b, name, luar_jobs_fmt_iso_time(t, 1, when, sizeof when));
}

static void on_show(void *arg, int rc, const luar_job_t *jobs, size_t n)
{
    sess_t *s = arg;
    s->rc = rc == 0 && n == 0 ? LUAR_ENOTFOUND : rc;
    s->done = 1;
    if (s->rc != 0)
        return;
    const luar_job_t *j = &jobs[0];
    luar_buf_t *b = &s->out;
    if (s->o->json) {
        luar_jobs_fmt_json_job(b, j);
        luar_buf_putc(b, '\n');
        return;
    }
    char num[48];
    show_field(b, "id:", j->id);
    show_field(b, "name:", j->name);
    show_field(b, "queue:", j->queue);
    show_field(b, "state:", luar_job_state_name(j->state));
    snprintf(num, sizeof num, "%d", j->priority);
    show_field(b, "priority:", num);
    if (j->max_attempts > 0)
        snprintf(num, sizeof num, "%d of %d", j->attempt, j->max_attempts);
    else
        snprintf(num, sizeof num, "%d (unlimited)", j->attempt);
    show_field(b, "attempt:", num);
    show_field(b, "key:", j->key);
    show_time(b, "enqueued_at:", j->enqueued_at);
    show_time(b, "run_at:", j->run_at);
    show_time(b, "started_at:", j->started_at);
    show_time(b, "finished_at:", j->finished_at);
    show_time(b, "lease_expires_at:", j->lease_expires_at);
    show_field(b, "owner:", j->owner);
    show_time(b, "expires_at:", j->expires_at);
    luar_buf_puts(b, "args:\n  ");
    luar_buf_t args;
    luar_buf_init(&args, 0);
    luar_jobs_fmt_args(&args, j);
    luar_jobs_fmt_put_pretty_json(b, args.data != NULL ? args.data : "null", "  ");
    luar_buf_free(&args);
    luar_buf_puts(b, "\nresult:\n  ");
    luar_jobs_fmt_put_pretty_json(b, j->result ? j->result : "null", "  ");
    luar_buf_puts(b, "\nlast_error:\n");
    luar_jobs_fmt_put_block(b, j->last_error ? j->last_error : "-", "  ");
    luar_buf_puts(b, "traceback:\n");
    luar_jobs_fmt_put_block(b, j->traceback ? j->traceback : "-", "  ");
}

static int cmd_show(sess_t *s, const char *id)
{
    int rc = sess_wait(s, luar_queue_get(s->q, id, on_show, s));
    return rc ? op_failed(s, rc, id) : 0;
}

/* ---- jobs retry / delete / purge ---------------------------------------------------- */

static void on_get_state(void *arg, int rc, const luar_job_t *jobs, size_t n)
{
    sess_t *s = arg;
    s->rc = rc == 0 && n == 0 ? LUAR_ENOTFOUND : rc;
    s->done = 1;
    if (s->rc == 0) {
        s->state = (int)jobs[0].state;
        s->enqueued_at = jobs[0].enqueued_at;
    }
}

static void put_done(sess_t *s, const char *verb, const char *id, size_t count)
{
    if (s->o->json) {
        luar_buf_appendf(&s->out, "{\"%s\":%zu", verb, count);
        if (id != NULL) {
            luar_buf_puts(&s->out, ",\"id\":");
            luar_jobs_fmt_json_str(&s->out, id);
        }
        luar_buf_puts(&s->out, "}\n");
    } else if (id != NULL) {
        luar_buf_appendf(&s->out, "%s %s\n", verb, id);
    } else {
        luar_buf_appendf(&s->out, "%s %zu job%s\n", verb, count, count == 1 ? "" : "s");
    }
}

static int cmd_retry_one(sess_t *s, const char *id)
{
    /* Read the state first, so that a job that cannot be retried gets a message saying why. */
    int rc = sess_wait(s, luar_queue_get(s->q, id, on_get_state, s));
    if (rc != 0)
        return op_failed(s, rc, id);
    if (s->state == LUAR_JOB_RUNNING || s->state == LUAR_JOB_QUEUED) {
        fprintf(stderr,
                "luar %s: job %s is %s; only dead, retrying, scheduled or succeeded jobs "
                "can be retried\n",
                s->o->cmd, id, luar_job_state_name((luar_job_state_t)s->state));
        return 1;
    }
    rc = sess_wait(s, luar_queue_retry(s->q, id, on_done, s));
    if (rc != 0)
        return op_failed(s, rc, id);
    put_done(s, "retried", id, 1);
    return 0;
}

static int cmd_retry_many(sess_t *s, const luar_job_filter_t *f)
{
    int rc = sess_wait(s, luar_queue_retry_many(s->q, f, on_count, s));
    if (rc != 0)
        return op_failed(s, rc, NULL);
    put_done(s, "retried", NULL, s->count);
    return 0;
}

static int cmd_delete(sess_t *s, const char *id)
{
    int rc = sess_wait(s, luar_queue_delete(s->q, id, on_done, s));
    if (rc != 0)
        return op_failed(s, rc, id);
    put_done(s, "deleted", id, 1);
    return 0;
}

static int cmd_purge(sess_t *s, const luar_job_filter_t *f)
{
    int rc = sess_wait(s, luar_queue_purge(s->q, f, on_count, s));
    if (rc != 0)
        return op_failed(s, rc, NULL);
    put_done(s, "purged", NULL, s->count);
    return 0;
}

/* ---- luar jobs ---------------------------------------------------------------------- */

/* Checks the arguments of a jobs subcommand into `f`. Returns 0 or 2 after the message. */
static int jobs_filter(opts_t *o, luar_job_filter_t *f)
{
    memset(f, 0, sizeof *f);
    f->state = -1;
    f->queue = o->queue;
    f->name = o->name;
    f->cursor = o->cursor;
    f->error = o->error;
    if (o->state != NULL && parse_state(o, o->state, &f->state) != 0)
        return 2;
    /* T: unix seconds or ISO 8601 (UTC unless it has an offset); a job's time is when it
     * finished, else when it was enqueued (queue.h). */
    const char *const times[2] = {o->since, o->until};
    double *const slots[2] = {&f->since, &f->until};
    for (int i = 0; i < 2; i++) {
        if (times[i] != NULL && luar_tz_parse_time(times[i], slots[i]) != 0) {
            fprintf(stderr,
                    "luar %s: --%s: expected unix seconds or an ISO 8601 time "
                    "(2026-01-02T03:04:05Z), got '%s'\n",
                    o->cmd, i ? "until" : "since", times[i]);
            return 2;
        }
    }
    if (o->limit != NULL) {
        long limit;
        if (parse_long(o->limit, 1, 100000, &limit) != 0) {
            fprintf(stderr,
                    "luar %s: --limit: expected a whole number from 1 to 100000, got '%s'\n",
                    o->cmd, o->limit);
            return 2;
        }
        f->limit = (size_t)limit;
    }
    if (o->which == C_PURGE) {
        if (o->state == NULL)
            return usage_error(o,
                               "--state is required (a purge never deletes every state at once)");
        if (f->state == LUAR_JOB_RUNNING) {
            fprintf(stderr,
                    "luar %s: refusing to purge running jobs: their workers hold "
                    "leases; delete one with `luar jobs delete ID` if you must\n",
                    o->cmd);
            return 2;
        }
    }
    if (o->which == C_RETRY) {
        if (o->npos == 1 && o->dead)
            return usage_error(o, "give either an ID or --dead, not both");
        if (o->npos == 1 && (o->queue || o->name || o->error || o->since || o->until))
            return usage_error(o, "--queue, --name, --error, --since and --until select jobs "
                                  "for --dead, not with an ID");
        if (o->npos == 0 && !o->dead)
            return usage_error(o, "give a job ID or --dead");
        f->state = LUAR_JOB_DEAD;
    }
    return 0;
}

int luar_cli_jobs(int argc, char **argv, const luar_config_t *cfg)
{
    opts_t o;
    memset(&o, 0, sizeof o);
    o.cmd = "jobs";
    o.usage = jobs_usage;
    if (argc < 1 || argv[0] == NULL) {
        fprintf(stderr, "luar jobs: missing subcommand\n%s\n", jobs_usage);
        return 2;
    }
    if (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0 ||
        strcmp(argv[0], "help") == 0) {
        printf("%s\n", jobs_usage);
        for (size_t k = 0; k < sizeof command_table / sizeof command_table[0]; k++)
            printf("  %s\n", command_table[k].usage + strlen("usage: "));
        return 0;
    }
    size_t k;
    for (k = 0; k < sizeof command_table / sizeof command_table[0]; k++)
        if (strcmp(argv[0], command_table[k].name) == 0)
            break;
    if (k == sizeof command_table / sizeof command_table[0]) {
        fprintf(stderr, "luar jobs: unknown subcommand %s\n%s\n", argv[0], jobs_usage);
        return 2;
    }
    char cmdname[32];
    snprintf(cmdname, sizeof cmdname, "jobs %s", command_table[k].name);
    o.cmd = cmdname;
    o.usage = command_table[k].usage;
    o.which = command_table[k].which;
    if (parse_opts(&o, argc - 1, argv + 1) != 0)
        return 2;
    if (o.help) {
        printf("%s\n", o.usage);
        return 0;
    }
    if (o.npos < command_table[k].min_pos)
        return usage_error(&o, "missing ID");
    if (o.npos > command_table[k].max_pos)
        return usage_error(&o, "unexpected argument %s", o.pos[command_table[k].max_pos]);
    luar_job_filter_t f;
    if (jobs_filter(&o, &f) != 0)
        return 2;

    sess_t s;
    int status = sess_open(&s, &o, cfg, 0);
    if (status != 0)
        return status;
    switch (o.which) {
    case C_STATS:
        status = cmd_stats(&s);
        break;
    case C_LIST:
        status = cmd_list(&s, &f);
        break;
    case C_SHOW:
        status = cmd_show(&s, o.pos[0]);
        break;
    case C_RETRY:
        status = o.npos ? cmd_retry_one(&s, o.pos[0]) : cmd_retry_many(&s, &f);
        break;
    case C_DELETE:
        status = cmd_delete(&s, o.pos[0]);
        break;
    default:
        status = cmd_purge(&s, &f);
        break;
    }
    return sess_close(&s, status);
}

/* ---- luar enqueue ------------------------------------------------------------------- */

/* [-1, +1]: decodes the string argument with lua-cjson; returns its type name or raises. */
static int check_json(lua_State *L)
{
    if (luar_json_decode(L, 1) != 1) {
        lua_getfield(L, -1, "message");
        return lua_error(L);
    }
    const char *kind = "scalar";
    if (lua_type(L, -1) == LUA_TTABLE)
        kind = "table";
    else if (lua_type(L, -1) == LUA_TLIGHTUSERDATA)
        kind = "null";
    lua_pushstring(L, kind);
    return 1;
}

/*
 * Validates --args with lua-cjson (the luar.json instance, depth-limited) in a small
 * lua_State: a JSON object or array, or null. Returns 0 or 2 after the message.
 */
static int validate_args(const opts_t *o, const char *text)
{
    lua_State *L = luaL_newstate();
    if (L == NULL) {
        fprintf(stderr, "luar %s: out of memory\n", o->cmd);
        return 1;
    }
    int status = 0;
    lua_pushcfunction(L, check_json);
    lua_pushstring(L, text);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        fprintf(stderr, "luar %s: --args: invalid JSON: %s\n", o->cmd, msg ? msg : "?");
        status = 2;
    } else if (strcmp(lua_tostring(L, -1), "scalar") == 0) {
        fprintf(stderr, "luar %s: --args: must be a JSON object or array\n", o->cmd);
        status = 2;
    }
    lua_close(L);
    return status;
}

/* What jobs.define declared for a job: the defaults `luar enqueue` applies, like jobs.enqueue. */
typedef struct job_defaults {
    char queue[256]; /* "" for "default" */
    int priority;
    int max_attempts;
} job_defaults_t;

/*
 * Loads the scripts (when cfg->scripts has a main.lua) to read the definition of `name`,
 * so a job enqueued from the command line lands in the queue its definition names, with
 * its priority and retries, as jobs.enqueue does. Scripts that fail to load, or a name
 * they do not define, get a warning and the defaults. Never fails.
 */
static void read_definition(const opts_t *o, const luar_config_t *cfg, const char *name,
                            job_defaults_t *d)
{
    memset(d, 0, sizeof *d);
    d->max_attempts = UNDEFINED_JOB_MAX_ATTEMPTS;
    char main_path[4096];
    if (cfg->scripts == NULL)
        return;
    snprintf(main_path, sizeof main_path, "%s/main.lua", cfg->scripts);
    if (access(main_path, F_OK) != 0)
        return;
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0)
        return;
    luar_vm_config_t vc;
    luar_config_vm(cfg, &loop, &vc);
    luar_buf_t err;
    luar_buf_init(&err, 4096);
    luar_vm_t *vm = NULL;
    /* The scripts' own log lines would mix with the id this command prints. */
    luar_log_set_level(LUAR_LOG_ERROR);
    /* The scripts may require plugin modules (luar.stripe …): load them as serve does. */
    luar_plugins_load(cfg, &loop, &err); /* a refusal shows as the scripts' load error */
    luar_buf_reset(&err);
    if (luar_vm_new(&vc, &vm, &err) != 0) {
        const char *e = err.data ? err.data : "";
        fprintf(stderr,
                "luar %s: warning: %s did not load (%.*s); using the default queue and "
                "retries\n",
                o->cmd, main_path, (int)strcspn(e, "\n"), e);
    } else {
        luar_jobs_registry_t *r = luar_jobs_registry(vm);
        const luar_job_def_t *def = r ? luar_jobs_find(r, name) : NULL;
        if (def != NULL) {
            snprintf(d->queue, sizeof d->queue, "%s", def->queue ? def->queue : "");
            d->priority = def->priority;
            d->max_attempts = def->retries + 1;
        } else {
            fprintf(stderr, "luar %s: warning: %s defines no job %s; it waits until one does\n",
                    o->cmd, main_path, name);
        }
        luar_vm_retire(vm);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    luar_plugins_unload();
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    luar_log_flush();
    luar_buf_free(&err);
}

static void on_enqueue(void *arg, int rc, const char *const *ids, size_t n, int duplicate)
{
    sess_t *s = arg;
    s->rc = rc;
    s->done = 1;
    if (rc == 0 && ids != NULL && n == 1)
        snprintf(s->id, sizeof s->id, "%s", ids[0]);
    else if (rc == 0)
        s->rc = LUAR_EIO;
}

int luar_cli_enqueue(int argc, char **argv, const luar_config_t *cfg)
{
    opts_t o;
    memset(&o, 0, sizeof o);
    o.cmd = "enqueue";
    o.usage = enqueue_usage;
    o.which = C_ENQUEUE;
    if (parse_opts(&o, argc, argv) != 0)
        return 2;
    if (o.help) {
        printf("%s\n", o.usage);
        return 0;
    }
    if (o.npos == 0 || o.pos[0][0] == '\0')
        return usage_error(&o, "missing NAME");
    if (o.npos > 1)
        return usage_error(&o, "unexpected argument %s", o.pos[1]);

    luar_job_spec_t spec;
    memset(&spec, 0, sizeof spec);
    spec.name = o.pos[0];
    spec.key = o.key;
    spec.args = o.args;
    if (o.queue != NULL && o.queue[0] == '\0')
        return usage_error(&o, "--queue: must not be empty");
    if (o.key != NULL && o.key[0] == '\0')
        return usage_error(&o, "--key: must not be empty");
    if (o.args != NULL) {
        int st = validate_args(&o, o.args);
        if (st != 0)
            return st;
    }
    double delay = 0;
    if (o.delay != NULL) {
        char *end;
        errno = 0;
        delay = strtod(o.delay, &end);
        if (o.delay[0] == '\0' || *end != '\0' || errno != 0 || !isfinite(delay) || delay < 0) {
            fprintf(stderr, "luar enqueue: --delay: expected seconds (a number >= 0), got '%s'\n",
                    o.delay);
            return 2;
        }
    }
    long num;
    if (o.priority != NULL) {
        if (parse_long(o.priority, -1000000, 1000000, &num) != 0) {
            fprintf(stderr, "luar enqueue: --priority: expected a whole number, got '%s'\n",
                    o.priority);
            return 2;
        }
        spec.priority = (int)num;
    }
    if (o.max_attempts != NULL) {
        if (parse_long(o.max_attempts, 0, 1000000, &num) != 0) {
            fprintf(stderr,
                    "luar enqueue: --max-attempts: expected a whole number >= 0 "
                    "(0: unlimited), got '%s'\n",
                    o.max_attempts);
            return 2;
        }
        spec.max_attempts = (int)num;
    }

    job_defaults_t defaults;
    read_definition(&o, cfg, spec.name, &defaults);
    spec.queue = o.queue ? o.queue : defaults.queue;
    if (o.priority == NULL)
        spec.priority = defaults.priority;
    if (o.max_attempts == NULL)
        spec.max_attempts = defaults.max_attempts;

    sess_t s;
    int status = sess_open(&s, &o, cfg, 1);
    if (status != 0)
        return status;
    double before = luar_queue_now(s.q);
    spec.run_at = delay > 0 ? before + delay : 0;
    int rc = sess_wait(&s, luar_queue_enqueue(s.q, &spec, 1, NULL, 0, on_enqueue, &s));
    int existing = 0;
    if (rc == 0 && o.key != NULL) {
        /* A key that matched an unfinished job returns that job's id: it was enqueued
         * before this command started. */
        rc = sess_wait(&s, luar_queue_get(s.q, s.id, on_get_state, &s));
        existing = rc == 0 && s.enqueued_at < before;
    }
    if (rc != 0) {
        status = op_failed(&s, rc, NULL);
    } else if (o.json) {
        luar_buf_puts(&s.out, "{\"id\":");
        luar_jobs_fmt_json_str(&s.out, s.id);
        luar_buf_appendf(&s.out, ",\"existing\":%s}\n", existing ? "true" : "false");
    } else {
        luar_buf_appendf(&s.out, "%s%s\n", s.id, existing ? " (existing job)" : "");
    }
    return sess_close(&s, status);
}
