/*
 * `luar jobs …` and `luar enqueue` (host/cli/jobs_cmd.c) on a temporary SQLite file. Each
 * case prepares job states through queue.h directly (claim + fail with retry_at 0 gives a
 * dead job, claim + complete a succeeded one), then runs the command with stdout and stderr
 * redirected to files and checks what it printed and its exit status.
 */
#include "cli/jobs_cmd.h"
#include "common/buf.h"
#include "queue/queue.h"
#include "test.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

/* ---- the world: a temp dir, its queue URL, a configuration pointing at it --------------- */

typedef struct world {
    char dir[256];
    char url[320];
    luar_config_t cfg;
    /* jobs prepared by prepare(): dead, succeeded, queued (default), queued and scheduled
     * (mail) */
    char dead[64], succeeded[64], queued[64], mail_queued[64], mail_scheduled[64];
} world_t;

static char out[1 << 16], err[1 << 14];

static void world_init(world_t *w)
{
    memset(w, 0, sizeof *w);
    snprintf(w->dir, sizeof w->dir, "/tmp/luar-jobs-cmd-XXXXXX");
    if (mkdtemp(w->dir) == NULL) {
        perror("mkdtemp");
        exit(1);
    }
    snprintf(w->url, sizeof w->url, "sqlite:%s/luar.db", w->dir);
    w->cfg.queue = w->url;
    w->cfg.data = w->dir;
}

static void world_free(world_t *w)
{
    static const char *const files[] = {"luar.db", "luar.db-wal", "luar.db-shm",
                                        "out",     "err",         "notadir"};
    char path[400];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", w->dir, files[i]);
        unlink(path);
    }
    rmdir(w->dir);
}

/* ---- driving queue.h directly ----------------------------------------------------------- */

typedef struct qwait {
    int done, rc;
    char id[64];
    size_t n;
} qwait_t;

static uv_loop_t qloop;
static luar_queue_t *queue;

static void q_open(world_t *w)
{
    luar_buf_t e;
    luar_buf_init(&e, 0);
    uv_loop_init(&qloop);
    int rc = luar_queue_open(&qloop, w->url, &queue, &e);
    if (rc != 0) {
        fprintf(stderr, "luar_queue_open %s: %s\n", w->url, e.data ? e.data : "?");
        exit(1);
    }
    luar_buf_free(&e);
}

static void q_close(void)
{
    luar_queue_close(queue, NULL, NULL);
    uv_run(&qloop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(&qloop), 0);
    queue = NULL;
}

static int q_wait(qwait_t *qw, int start_rc)
{
    if (start_rc != 0)
        return start_rc;
    while (!qw->done)
        uv_run(&qloop, UV_RUN_ONCE);
    return qw->rc;
}

static void on_enq(void *arg, int rc, const char *const *ids, size_t n, int duplicate)
{
    qwait_t *qw = arg;
    qw->done = 1;
    qw->rc = rc;
    if (rc == 0 && n == 1)
        snprintf(qw->id, sizeof qw->id, "%s", ids[0]);
}

static void on_jobs(void *arg, int rc, const luar_job_t *jobs, size_t n)
{
    qwait_t *qw = arg;
    qw->done = 1;
    qw->rc = rc;
    qw->n = n;
    if (rc == 0 && n >= 1)
        snprintf(qw->id, sizeof qw->id, "%s", jobs[0].id);
}

static void on_qdone(void *arg, int rc)
{
    qwait_t *qw = arg;
    qw->done = 1;
    qw->rc = rc;
}

static void enqueue(const char *name, const char *qname, const char *args, double run_at, char *id)
{
    luar_job_spec_t spec = {
        .name = name, .queue = qname, .args = args, .run_at = run_at, .max_attempts = 3};
    qwait_t qw = {0};
    CHECK_EQ_INT(q_wait(&qw, luar_queue_enqueue(queue, &spec, 1, NULL, 0, on_enq, &qw)), 0);
    strcpy(id, qw.id);
}

/* Claims the one due job of `qname`, which must be `id`. */
static void claim(const char *qname, const char *id)
{
    qwait_t qw = {0};
    CHECK_EQ_INT(q_wait(&qw, luar_queue_claim(queue, qname, 1, "w1", 30, on_jobs, &qw)), 0);
    CHECK_EQ_INT(qw.n, 1);
    CHECK_EQ_STR(qw.id, id);
}

static void make_dead(const char *qname, const char *name, const char *error, char *id)
{
    enqueue(name, qname, "{\"to\":\"a@example.com\",\"n\":[1,2]}", 0, id);
    claim(qname, id);
    qwait_t qw = {0};
    CHECK_EQ_INT(q_wait(&qw, luar_queue_fail(queue, id, "w1", error,
                                             "stack traceback:\n\t[C]: in ?\n\tjob.lua:3", 0, 3600,
                                             on_qdone, &qw)),
                 0);
}

/*
 * default: one dead (send_email), one succeeded (report), one queued (noop);
 * mail: one queued (sync), one scheduled an hour ahead (later).
 */
static void prepare(world_t *w)
{
    q_open(w);
    make_dead("default", "send_email", "boom: SMTP 550\nsecond line", w->dead);
    enqueue("report", NULL, "[]", 0, w->succeeded);
    claim("default", w->succeeded);
    qwait_t qw = {0};
    CHECK_EQ_INT(q_wait(&qw, luar_queue_complete(queue, w->succeeded, "w1",
                                                 "{\"rows\":3,\"ok\":true}", 3600, on_qdone, &qw)),
                 0);
    enqueue("noop", "default", NULL, 0, w->queued);
    enqueue("sync", "mail", "{}", 0, w->mail_queued);
    enqueue("later", "mail", "{}", (double)time(NULL) + 3600, w->mail_scheduled);
    q_close();
}

/* ---- running a command with its output captured ---------------------------------------- */

static void slurp(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, size - 1, f) : 0;
    buf[n] = '\0';
    if (f)
        fclose(f);
}

typedef int (*command_fn)(int argc, char **argv, const luar_config_t *cfg);

/* Runs fn with the NULL-terminated arguments; fills `out` and `err`; returns its status. */
static int run(world_t *w, command_fn fn, ...)
{
    char *argv[32];
    int argc = 0;
    va_list ap;
    va_start(ap, fn);
    for (const char *a = va_arg(ap, const char *); a != NULL && argc < 31;
         a = va_arg(ap, const char *))
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;

    char opath[400], epath[400];
    snprintf(opath, sizeof opath, "%s/out", w->dir);
    snprintf(epath, sizeof epath, "%s/err", w->dir);
    fflush(stdout);
    fflush(stderr);
    int saved_out = dup(1), saved_err = dup(2);
    int ofd = open(opath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int efd = open(epath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(ofd, 1);
    dup2(efd, 2);
    close(ofd);
    close(efd);
    int status = fn(argc, argv, &w->cfg);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out);
    close(saved_err);
    slurp(opath, out, sizeof out);
    slurp(epath, err, sizeof err);
    return status;
}

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

static int lines(const char *s)
{
    return count_of(s, "\n");
}

/* The line of `s` containing `needle`, copied into `line`; "" when none. */
static const char *line_with(const char *s, const char *needle, char *line, size_t size)
{
    const char *p = strstr(s, needle);
    line[0] = '\0';
    if (p == NULL)
        return line;
    while (p > s && p[-1] != '\n')
        p--;
    size_t n = strcspn(p, "\n");
    snprintf(line, size, "%.*s", (int)n, p);
    return line;
}

/* ---- stats ------------------------------------------------------------------------------ */

TEST(test_stats_json_counts_by_queue_and_state)
{
    world_t w;
    world_init(&w);
    prepare(&w);
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "stats", "--json", NULL), 0);
    CHECK(strstr(out, "\"default\":{\"queued\":1,\"scheduled\":0,\"running\":0,\"succeeded\":1,"
                      "\"retrying\":0,\"dead\":1,\"total\":3}") != NULL);
    CHECK(strstr(out, "\"mail\":{\"queued\":1,\"scheduled\":1,\"running\":0,\"succeeded\":0,"
                      "\"retrying\":0,\"dead\":0,\"total\":2}") != NULL);
    CHECK(strstr(out, "\"total\":{\"queued\":2,\"scheduled\":1,\"running\":0,\"succeeded\":1,"
                      "\"retrying\":0,\"dead\":1,\"total\":5}}\n") != NULL);
    CHECK_EQ_INT(lines(out), 1);
    CHECK_EQ_STR(err, "");
    world_free(&w);
}

TEST(test_stats_table_has_a_row_per_queue_and_totals)
{
    world_t w;
    world_init(&w);
    prepare(&w);
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "stats", NULL), 0);
    char line[512];
    static const char header[] =
        "QUEUE     QUEUED   SCHEDULED   RUNNING   SUCCEEDED   RETRYING   DEAD   TOTAL\n";
    CHECK(strncmp(out, header, strlen(header)) == 0);
    CHECK_EQ_STR(line_with(out, "default", line, sizeof line),
                 "default        1           0         0           1          0      1       3");
    CHECK_EQ_STR(line_with(out, "mail", line, sizeof line),
                 "mail           1           1         0           0          0      0       2");
    CHECK_EQ_STR(line_with(out, "TOTAL ", line, sizeof line),
                 "TOTAL          2           1         0           1          0      1       5");
    CHECK_EQ_INT(lines(out), 4);
    world_free(&w);
}

/* ---- list ------------------------------------------------------------------------------- */

TEST(test_list_one_line_per_job_newest_first)
{
    world_t w;
    world_init(&w);
    prepare(&w);
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "list", NULL), 0);
    CHECK_EQ_INT(lines(out), 6);
    CHECK(strncmp(out, "ID ", 3) == 0);
    CHECK(strstr(out, "LAST_ERROR\n") != NULL);
    char line[512];
    line_with(out, w.dead, line, sizeof line);
    CHECK(strstr(line, " dead ") != NULL);
    CHECK(strstr(line, " send_email ") != NULL);
    CHECK(strstr(line, " 1/3 ") != NULL);
    /* the first line of the error, marked as cut */
    CHECK(strstr(line, "boom: SMTP 550...") != NULL);
    CHECK(strstr(line, "second line") == NULL);
    /* run_at as ISO 8601 UTC */
    CHECK(strstr(line, "T") != NULL && strstr(line, "Z ") != NULL);
    line_with(out, w.mail_scheduled, line, sizeof line);
    CHECK(strstr(line, " scheduled ") != NULL && strstr(line, " mail ") != NULL);
    /* newest first: the scheduled job (enqueued last) comes before the dead one */
    CHECK(strstr(out, w.mail_scheduled) < strstr(out, w.dead));
    world_free(&w);
}

TEST(test_list_filters_by_state_queue_and_limit)
{
    world_t w;
    world_init(&w);
    prepare(&w);
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "list", "--state", "dead", NULL), 0);
    CHECK_EQ_INT(lines(out), 2);
    CHECK(strstr(out, w.dead) != NULL);
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "list", "--queue=mail", NULL), 0);
    CHECK_EQ_INT(lines(out), 3);
    CHECK(strstr(out, w.mail_queued) != NULL && strstr(out, w.mail_scheduled) != NULL);
    CHECK(strstr(out, w.dead) == NULL);
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "list", "--state", "retrying", NULL), 0);
    CHECK_EQ_STR(out, "no jobs\n");
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "list", "--limit", "2", "--json", NULL), 0);
    CHECK_EQ_INT(count_of(out, "\"id\":"), 2);
    CHECK(strncmp(out, "{\"jobs\":[{\"id\":", 15) == 0);
    CHECK(strstr(out, "\"next_cursor\":\"") != NULL);
    CHECK_EQ_INT(lines(out), 1);
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "list", "--state", "dead", "--json", NULL), 0);
    CHECK(strstr(out, "\"state\":\"dead\"") != NULL);
    CHECK(strstr(out, "\"args\":{\"to\":\"a@example.com\",\"n\":[1,2]}") != NULL);
    CHECK(strstr(out, "\"last_error\":\"boom: SMTP 550\\nsecond line\"") != NULL);
    CHECK(strstr(out, "\"next_cursor\":null}\n") != NULL);
    world_free(&w);
}

/* ---- show ------------------------------------------------------------------------------- */

TEST(test_show_prints_every_field_args_pretty_and_errors_in_full)
{
    world_t w;
    world_init(&w);
    prepare(&w);
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "show", w.dead, NULL), 0);
    char line[512];
    CHECK(strstr(line_with(out, "id:", line, sizeof line), w.dead) != NULL);
    CHECK_EQ_STR(line_with(out, "state:", line, sizeof line), "state:            dead");
    CHECK_EQ_STR(line_with(out, "attempt:", line, sizeof line), "attempt:          1 of 3");
    CHECK_EQ_STR(line_with(out, "owner:", line, sizeof line), "owner:            -");
    CHECK(strstr(line_with(out, "finished_at:", line, sizeof line), "Z") != NULL);
    CHECK(strstr(out, "args:\n  {\n    \"to\": \"a@example.com\",\n    \"n\": [\n      1,\n"
                      "      2\n    ]\n  }\nresult:\n  null\n") != NULL);
    CHECK(strstr(out, "last_error:\n  boom: SMTP 550\n  second line\n") != NULL);
    CHECK(strstr(out, "traceback:\n  stack traceback:\n  \t[C]: in ?\n  \tjob.lua:3\n") != NULL);
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "show", w.succeeded, NULL), 0);
    CHECK(strstr(out, "result:\n  {\n    \"rows\": 3,\n    \"ok\": true\n  }\n") != NULL);
    CHECK(strstr(out, "args:\n  []\n") != NULL);
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "show", w.succeeded, "--json", NULL), 0);
    CHECK(strstr(out, "\"result\":{\"rows\":3,\"ok\":true}") != NULL);
    CHECK(strstr(out, "\"state\":\"succeeded\"") != NULL);
    world_free(&w);
}

TEST(test_show_unknown_job_is_1_naming_it)
{
    world_t w;
    world_init(&w);
    prepare(&w);
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "show", "nope", NULL), 1);
    CHECK_EQ_STR(err, "luar jobs show: no job nope\n");
    CHECK_EQ_STR(out, "");
    world_free(&w);
}

/* ---- retry, delete, purge --------------------------------------------------------------- */

TEST(test_retry_dead_job_by_id_queues_it_again)
{
    world_t w;
    world_init(&w);
    prepare(&w);
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "retry", w.dead, NULL), 0);
    char want[128];
    snprintf(want, sizeof want, "retried %s\n", w.dead);
    CHECK_EQ_STR(out, want);
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "show", w.dead, "--json", NULL), 0);
    CHECK(strstr(out, "\"state\":\"queued\"") != NULL);
    CHECK(strstr(out, "\"attempt\":0") != NULL);
    /* a queued job cannot be retried; the message says why */
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "retry", w.dead, NULL), 1);
    CHECK(strstr(err, "is queued") != NULL);
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "retry", "nope", NULL), 1);
    CHECK_EQ_STR(err, "luar jobs retry: no job nope\n");
    world_free(&w);
}

TEST(test_retry_dead_in_bulk_by_queue)
{
    world_t w;
    world_init(&w);
    prepare(&w);
    char a[64], b[64];
    q_open(&w);
    make_dead("bulk", "send_email", "x", a);
    make_dead("bulk", "send_email", "y", b);
    q_close();
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "retry", "--dead", "--queue", "bulk", "--json", NULL), 0);
    CHECK_EQ_STR(out, "{\"retried\":2}\n");
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "list", "--state", "dead", "--json", NULL), 0);
    CHECK_EQ_INT(count_of(out, "\"id\":"), 1);
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "retry", "--dead", NULL), 0);
    CHECK_EQ_STR(out, "retried 1 job\n");
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "stats", "--json", NULL), 0);
    CHECK(strstr(out, "\"total\":{\"queued\":5,") != NULL);
    world_free(&w);
}

TEST(test_delete_removes_the_job)
{
    world_t w;
    world_init(&w);
    prepare(&w);
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "delete", w.queued, "--json", NULL), 0);
    CHECK(strstr(out, "{\"deleted\":1,\"id\":\"") == out);
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "show", w.queued, NULL), 1);
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "delete", w.queued, NULL), 1);
    char want[128];
    snprintf(want, sizeof want, "luar jobs delete: no job %s\n", w.queued);
    CHECK_EQ_STR(err, want);
    world_free(&w);
}

TEST(test_purge_by_state_and_refusals)
{
    world_t w;
    world_init(&w);
    prepare(&w);
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "purge", "--state", "succeeded", NULL), 0);
    CHECK_EQ_STR(out, "purged 1 job\n");
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "purge", "--state", "queued", "--queue", "mail", NULL), 0);
    CHECK_EQ_STR(out, "purged 1 job\n");
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "stats", "--json", NULL), 0);
    CHECK(strstr(out, "\"total\":{\"queued\":1,\"scheduled\":1,\"running\":0,\"succeeded\":0,"
                      "\"retrying\":0,\"dead\":1,\"total\":3}") != NULL);
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "purge", NULL), 2);
    CHECK(strstr(err, "--state is required") != NULL && strstr(err, "usage:") != NULL);
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "purge", "--state", "running", NULL), 2);
    CHECK(strstr(err, "refusing to purge running jobs") != NULL);
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "purge", "--state", "zombie", NULL), 2);
    CHECK(strstr(err, "--state: unknown state 'zombie'") != NULL);
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "purge", "--state", "dead", "--json", NULL), 0);
    CHECK_EQ_STR(out, "{\"purged\":1}\n");
    world_free(&w);
}

/* ---- usage errors and the backend ------------------------------------------------------- */

TEST(test_usage_errors_are_2_with_a_usage_line)
{
    world_t w;
    world_init(&w);
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "frob", NULL), 2);
    CHECK(strncmp(err, "luar jobs: unknown subcommand frob\nusage: luar jobs ", 52) == 0);
    CHECK_EQ_INT(run(&w, luar_cli_jobs, NULL), 2);
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "list", "--bogus", "1", NULL), 2);
    CHECK(strncmp(err, "luar jobs list: unknown option --bogus\nusage: luar jobs list", 60) == 0);
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "list", "--state", NULL), 2);
    CHECK(strstr(err, "--state needs a value") != NULL);
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "list", "--limit", "0", NULL), 2);
    CHECK(strstr(err, "--limit") != NULL);
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "show", NULL), 2);
    CHECK(strstr(err, "missing ID") != NULL);
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "show", "a", "b", NULL), 2);
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "retry", NULL), 2);
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "retry", "abc", "--dead", NULL), 2);
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "stats", "--dead", NULL), 2);
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "stats", "--json=1", NULL), 2);
    CHECK_EQ_INT(run(&w, luar_cli_enqueue, NULL), 2);
    CHECK(strstr(err, "missing NAME") != NULL);
    CHECK_EQ_INT(run(&w, luar_cli_enqueue, "x", "--state", "dead", NULL), 2);
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "list", "--help", NULL), 0);
    CHECK(strncmp(out, "usage: luar jobs list", 21) == 0);
    world_free(&w);
}

TEST(test_missing_or_unopenable_backend_is_1_naming_it)
{
    world_t w;
    world_init(&w);
    /* nothing enqueued yet: the file does not exist, and reading does not create it */
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "stats", NULL), 1);
    CHECK(strstr(err, w.url) != NULL);
    CHECK_EQ_INT(lines(err), 1);
    char path[400];
    snprintf(path, sizeof path, "%s/luar.db", w.dir);
    CHECK(access(path, F_OK) != 0);
    /* a regular file where the data folder should be: not even root can create it */
    char file[400], url[480];
    snprintf(file, sizeof file, "%s/notadir", w.dir);
    close(open(file, O_WRONLY | O_CREAT, 0600));
    snprintf(url, sizeof url, "sqlite:%s/sub/luar.db", file);
    w.cfg.queue = url;
    w.cfg.data = file;
    CHECK_EQ_INT(run(&w, luar_cli_enqueue, "x", NULL), 1);
    char want[600];
    snprintf(want, sizeof want, "luar enqueue: cannot open queue %s", url);
    CHECK(strstr(err, want) == err);
    CHECK_EQ_INT(lines(err), 1);
    w.cfg.queue = "mongodb://x";
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "list", NULL), 2);
    CHECK(strstr(err, "mongodb://x") != NULL);
    w.cfg.queue = w.url;
    w.cfg.data = w.dir;
    world_free(&w);
}

/* ---- enqueue ---------------------------------------------------------------------------- */

TEST(test_enqueue_prints_id_and_key_dedupes_to_the_same_id)
{
    world_t w;
    world_init(&w);
    CHECK_EQ_INT(run(&w, luar_cli_enqueue, "send_email", "--args", "{\"user\": 1}", "--key",
                     "welcome:1", "--queue", "mail", NULL),
                 0);
    char id[64];
    snprintf(id, sizeof id, "%.*s", (int)strcspn(out, "\n"), out);
    CHECK_EQ_INT(lines(out), 1);
    CHECK(strlen(id) > 0 && strchr(id, ' ') == NULL);
    CHECK_EQ_INT(run(&w, luar_cli_enqueue, "send_email", "--key", "welcome:1", NULL), 0);
    char want[128];
    snprintf(want, sizeof want, "%s (existing job)\n", id);
    CHECK_EQ_STR(out, want);
    CHECK_EQ_INT(run(&w, luar_cli_enqueue, "send_email", "--key", "welcome:1", "--json", NULL), 0);
    snprintf(want, sizeof want, "{\"id\":\"%s\",\"existing\":true}\n", id);
    CHECK_EQ_STR(out, want);
    CHECK_EQ_INT(run(&w, luar_cli_enqueue, "send_email", "--key", "welcome:2", "--json", NULL), 0);
    CHECK(strstr(out, "\"existing\":false") != NULL);
    CHECK(strstr(out, id) == NULL);
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "show", id, "--json", NULL), 0);
    CHECK(strstr(out, "\"args\":{\"user\": 1}") != NULL);
    CHECK(strstr(out, "\"queue\":\"mail\"") != NULL);
    CHECK(strstr(out, "\"key\":\"welcome:1\"") != NULL);
    world_free(&w);
}

TEST(test_enqueue_delay_schedules_and_priority_is_kept)
{
    world_t w;
    world_init(&w);
    double before = (double)time(NULL);
    CHECK_EQ_INT(run(&w, luar_cli_enqueue, "later", "--delay", "90", "--priority", "7", NULL), 0);
    char id[64];
    snprintf(id, sizeof id, "%.*s", (int)strcspn(out, "\n"), out);
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "show", id, "--json", NULL), 0);
    CHECK(strstr(out, "\"state\":\"scheduled\"") != NULL);
    CHECK(strstr(out, "\"priority\":7") != NULL);
    CHECK(strstr(out, "\"args\":null") != NULL);
    const char *p = strstr(out, "\"run_at\":");
    double run_at = p ? atof(p + 9) : 0;
    CHECK(run_at >= before + 89 && run_at <= (double)time(NULL) + 91);
    CHECK_EQ_INT(run(&w, luar_cli_enqueue, "now", NULL), 0);
    snprintf(id, sizeof id, "%.*s", (int)strcspn(out, "\n"), out);
    CHECK_EQ_INT(run(&w, luar_cli_jobs, "show", id, "--json", NULL), 0);
    CHECK(strstr(out, "\"state\":\"queued\"") != NULL);
    world_free(&w);
}

TEST(test_enqueue_rejects_bad_args_delay_and_priority)
{
    world_t w;
    world_init(&w);
    CHECK_EQ_INT(run(&w, luar_cli_enqueue, "x", "--args", "{bad", NULL), 2);
    CHECK(strncmp(err, "luar enqueue: --args: invalid JSON", 34) == 0);
    CHECK_EQ_INT(lines(err), 1);
    CHECK_EQ_INT(run(&w, luar_cli_enqueue, "x", "--args", "{} trailing", NULL), 2);
    CHECK_EQ_INT(run(&w, luar_cli_enqueue, "x", "--args", "42", NULL), 2);
    CHECK_EQ_STR(err, "luar enqueue: --args: must be a JSON object or array\n");
    CHECK_EQ_INT(run(&w, luar_cli_enqueue, "x", "--delay", "-1", NULL), 2);
    CHECK(strstr(err, "--delay") != NULL);
    CHECK_EQ_INT(run(&w, luar_cli_enqueue, "x", "--delay", "soon", NULL), 2);
    CHECK_EQ_INT(run(&w, luar_cli_enqueue, "x", "--priority", "high", NULL), 2);
    CHECK(strstr(err, "--priority") != NULL);
    CHECK_EQ_INT(run(&w, luar_cli_enqueue, "x", "--max-attempts", "-2", NULL), 2);
    /* nothing was written: the queue file was never created */
    char path[400];
    snprintf(path, sizeof path, "%s/luar.db", w.dir);
    CHECK(access(path, F_OK) != 0);
    CHECK_EQ_INT(run(&w, luar_cli_enqueue, "x", "--args", "[1, {\"a\": null}]", NULL), 0);
    world_free(&w);
}

int main(void)
{
    RUN(test_stats_json_counts_by_queue_and_state);
    RUN(test_stats_table_has_a_row_per_queue_and_totals);
    RUN(test_list_one_line_per_job_newest_first);
    RUN(test_list_filters_by_state_queue_and_limit);
    RUN(test_show_prints_every_field_args_pretty_and_errors_in_full);
    RUN(test_show_unknown_job_is_1_naming_it);
    RUN(test_retry_dead_job_by_id_queues_it_again);
    RUN(test_retry_dead_in_bulk_by_queue);
    RUN(test_delete_removes_the_job);
    RUN(test_purge_by_state_and_refusals);
    RUN(test_usage_errors_are_2_with_a_usage_line);
    RUN(test_missing_or_unopenable_backend_is_1_naming_it);
    RUN(test_enqueue_prints_id_and_key_dedupes_to_the_same_id);
    RUN(test_enqueue_delay_schedules_and_priority_is_kept);
    RUN(test_enqueue_rejects_bad_args_delay_and_priority);
    return DONE();
}
