/*
 * The admin API's other endpoints: schedules with their next fire times and last outcome,
 * the recent inbound webhooks and outbound delivery attempts of this process (no bodies,
 * no headers, no secrets: see webhooks/recent.c and deliver.c), and reload.
 */
#include "admin/api.h"
#include "plugin/loader.h"
#include "cli/jobs_format.h"
#include "common/error.h"
#include "jobs/jobs.h"
#include "lua/vm_internal.h"
#include "sched/cron.h"
#include "sched/tz.h"
#include "webhooks/deliver.h"
#include "webhooks/ingest.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NEXT_TIMES 3
#define LAST_LOOKBACK 20 /* newest jobs of a schedule's job name read to find its last tick */

/* ---- GET /admin/api/schedules -------------------------------------------------------- */

/*
 * A schedule copied out of the VM when the request arrives: the answer is built over
 * several queue calls, and a reload may retire the VM meanwhile.
 */
typedef struct sched_copy {
    char *name, *expr, *tz, *job, *args;
    double every;
    int catch_up;
    luar_cron_t cron;
    const luar_tz_t *zone; /* cached by luar_tz_load for the process's life */
} sched_copy_t;

typedef struct sched_list {
    luar_admin_call_t *c;
    sched_copy_t *s;
    size_t n, at; /* schedules, and the one whose last job is being looked up */
    double now;
    luar_buf_t out;
} sched_list_t;

static void sched_list_free(sched_list_t *sl)
{
    for (size_t i = 0; i < sl->n; i++) {
        free(sl->s[i].name);
        free(sl->s[i].expr);
        free(sl->s[i].tz);
        free(sl->s[i].job);
        free(sl->s[i].args);
    }
    free(sl->s);
    luar_buf_free(&sl->out);
    free(sl);
}

/* The first tick strictly after `after` (0 when none), as the scheduler computes it. */
static double next_tick(const sched_copy_t *s, double after)
{
    if (s->expr == NULL)
        return (floor(after / s->every) + 1) * s->every;
    int64_t next;
    if (s->zone == NULL || luar_cron_next_in(&s->cron, s->zone, (int64_t)floor(after), &next))
        return 0;
    return (double)next;
}

/* Whether `t` is one of the schedule's ticks: the run_at a tick's job carries. */
static int is_tick(const sched_copy_t *s, double t)
{
    if (!(t > 0))
        return 0;
    if (s->expr == NULL) {
        double k = t / s->every;
        return fabs(k - nearbyint(k)) < 1e-9;
    }
    return t == floor(t) && next_tick(s, t - 1) == t;
}

static void put_time(luar_buf_t *b, const sched_copy_t *s, double t)
{
    char iso[LUAR_TZ_ISO_SIZE];
    if (t > 0 && s->zone && luar_tz_format(s->zone, (int64_t)t, iso, sizeof iso) == 0)
        luar_buf_append_json_string(b, iso, strlen(iso));
    else
        luar_buf_puts(b, "null");
}

/* Appends schedule `i` without its closing brace ("last" follows). */
static void put_schedule(sched_list_t *sl, const sched_copy_t *s)
{
    luar_buf_t *b = &sl->out;
    luar_buf_puts(b, "{\"name\":");
    luar_jobs_fmt_json_str(b, s->name);
    luar_buf_puts(b, ",\"expr\":");
    luar_jobs_fmt_json_str(b, s->expr);
    if (s->expr)
        luar_buf_puts(b, ",\"every\":null");
    else
        luar_buf_appendf(b, ",\"every\":%g", s->every);
    luar_buf_puts(b, ",\"tz\":");
    luar_jobs_fmt_json_str(b, s->tz);
    luar_buf_puts(b, ",\"job\":");
    luar_jobs_fmt_json_str(b, s->job);
    luar_buf_puts(b, ",\"args\":");
    luar_buf_puts(b, s->args && *s->args ? s->args : "null");
    luar_buf_appendf(b, ",\"catch_up\":%s,\"next\":[", s->catch_up ? "true" : "false");
    double t = sl->now;
    for (int k = 0; k < NEXT_TIMES; k++) {
        t = next_tick(s, t);
        if (t <= 0)
            break;
        if (k)
            luar_buf_putc(b, ',');
        put_time(b, s, t);
    }
    double first = next_tick(s, sl->now);
    luar_buf_puts(b, "],\"next_at\":");
    if (first > 0)
        luar_buf_appendf(b, "%.3f", first);
    else
        luar_buf_puts(b, "null");
}

static void sched_step(sched_list_t *sl);

/* The newest job of the schedule's job name whose run_at is one of its ticks. */
static void on_last_jobs(void *arg, int rc, const luar_job_t *jobs, size_t n, const char *next)
{
    sched_list_t *sl = arg;
    (void)next;
    if (rc) {
        luar_admin_queue_error(sl->c, rc, NULL);
        sched_list_free(sl);
        return;
    }
    const sched_copy_t *s = &sl->s[sl->at];
    luar_buf_t *b = &sl->out;
    put_schedule(sl, s);
    luar_buf_puts(b, ",\"last\":");
    const luar_job_t *last = NULL;
    for (size_t i = 0; i < n && last == NULL; i++)
        if (is_tick(s, jobs[i].run_at))
            last = &jobs[i];
    if (last == NULL) {
        luar_buf_puts(b, "null");
    } else {
        luar_buf_puts(b, "{\"id\":");
        luar_jobs_fmt_json_str(b, last->id);
        luar_buf_appendf(b, ",\"state\":\"%s\",\"tick\":", luar_job_state_name(last->state));
        put_time(b, s, last->run_at);
        luar_buf_appendf(b, ",\"attempt\":%d,\"finished_at\":", last->attempt);
        if (last->finished_at > 0)
            luar_buf_appendf(b, "%.3f", last->finished_at);
        else
            luar_buf_puts(b, "null");
        luar_buf_puts(b, ",\"last_error\":");
        luar_jobs_fmt_json_str(b, last->last_error);
        luar_buf_putc(b, '}');
    }
    luar_buf_putc(b, '}');
    sl->at++;
    sched_step(sl);
}

static void sched_step(sched_list_t *sl)
{
    if (sl->at == sl->n) {
        luar_buf_appendf(&sl->out, "],\"generation\":%u}", sl->c->env.generation);
        luar_admin_respond_buf(sl->c, 200, &sl->out);
        sched_list_free(sl);
        return;
    }
    if (sl->at > 0)
        luar_buf_putc(&sl->out, ',');
    luar_job_filter_t f = {.state = -1, .name = sl->s[sl->at].job, .limit = LAST_LOOKBACK};
    int rc = luar_queue_list(sl->c->env.queue, &f, on_last_jobs, sl);
    if (rc) {
        luar_admin_queue_error(sl->c, rc, NULL);
        sched_list_free(sl);
    }
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

void luar_admin_list_schedules(luar_admin_call_t *c)
{
    luar_vm_t *vm = c->env.vm;
    if (vm == NULL || c->env.queue == NULL) {
        luar_admin_error(c, 503, "scripts not loaded");
        return;
    }
    sched_list_t *sl = calloc(1, sizeof *sl);
    size_t n = vm->jobs ? luar_jobs_schedules(vm->jobs) : 0;
    if (sl == NULL || (n && (sl->s = calloc(n, sizeof *sl->s)) == NULL)) {
        free(sl);
        luar_admin_error(c, 500, "out of memory");
        return;
    }
    sl->c = c;
    sl->n = n;
    sl->now = luar_queue_now(c->env.queue);
    luar_buf_init(&sl->out, 0);
    for (size_t i = 0; i < n; i++) {
        const luar_schedule_t *s = luar_jobs_schedule_at(vm->jobs, i);
        sched_copy_t *d = &sl->s[i];
        d->name = dup_or_null(s->name);
        d->expr = dup_or_null(s->expr);
        d->tz = dup_or_null(s->tz ? s->tz : "UTC");
        d->job = dup_or_null(s->job);
        d->args = dup_or_null(s->args);
        d->every = s->every;
        d->catch_up = s->catch_up;
        if (s->cron)
            d->cron = *(const luar_cron_t *)s->cron;
        luar_tz_load(d->tz ? d->tz : "UTC", &d->zone, NULL);
        if (d->name == NULL || d->tz == NULL || d->job == NULL || (s->expr && !d->expr)) {
            sched_list_free(sl);
            luar_admin_error(c, 500, "out of memory");
            return;
        }
    }
    luar_buf_puts(&sl->out, "{\"schedules\":[");
    sched_step(sl);
}

/* ---- GET /admin/api/webhooks, /admin/api/deliveries ---------------------------------- */

/* {"<member>":[…],"pid":P,"worker":W}: the rings are per process (recent.c, deliver.c). */
static void list_recent(luar_admin_call_t *c, const char *member, long max,
                        int (*put)(luar_buf_t *, size_t))
{
    long limit;
    if (luar_admin_read_count(c, "limit", 100, 1, max, &limit))
        return;
    luar_buf_t b;
    luar_buf_init(&b, 0);
    luar_buf_appendf(&b, "{\"%s\":", member);
    put(&b, (size_t)limit);
    luar_buf_appendf(&b, ",\"pid\":%d,\"worker\":%d}", (int)getpid(), c->env.worker_id);
    luar_admin_respond_buf(c, 200, &b);
}

void luar_admin_list_webhooks(luar_admin_call_t *c)
{
    list_recent(c, "webhooks", LUAR_WEBHOOK_RECENT, luar_webhook_recent_json);
}

void luar_admin_list_deliveries(luar_admin_call_t *c)
{
    list_recent(c, "deliveries", LUAR_DELIVER_RING, luar_deliver_recent_json);
}

/* ---- GET /admin/api/plugins ---------------------------------------------------------- */

static void put_str(luar_buf_t *b, const char *key, const char *v)
{
    luar_buf_appendf(b, "\"%s\":", key);
    if (v)
        luar_buf_append_json_string(b, v, strlen(v));
    else
        luar_buf_puts(b, "null");
}

/* {"plugins":[{name, version, abi, path, description, loaded, refused, named}…]}: what
 * `luar plugins` shows, as this process loaded them. */
void luar_admin_list_plugins(luar_admin_call_t *c)
{
    luar_buf_t b;
    luar_buf_init(&b, 0);
    luar_buf_puts(&b, "{\"plugins\":[");
    for (size_t i = 0; i < luar_plugins_count(); i++) {
        const luar_plugin_info_t *p = luar_plugins_at(i);
        luar_buf_puts(&b, i ? ",{" : "{");
        put_str(&b, "name", p->name);
        luar_buf_putc(&b, ',');
        put_str(&b, "version", p->version);
        luar_buf_appendf(&b, ",\"abi\":%d,", p->abi);
        put_str(&b, "path", p->path);
        luar_buf_putc(&b, ',');
        put_str(&b, "description", p->description);
        luar_buf_appendf(&b, ",\"loaded\":%s,", p->refused ? "false" : "true");
        put_str(&b, "refused", p->refused);
        luar_buf_appendf(&b, ",\"named\":%s}", p->named ? "true" : "false");
    }
    luar_buf_appendf(&b, "],\"pid\":%d,\"worker\":%d}", (int)getpid(), c->env.worker_id);
    luar_admin_respond_buf(c, 200, &b);
}

/* ---- POST /admin/api/reload ---------------------------------------------------------- */

/*
 * 200 {"ok":true,"generation":N} once the new scripts serve (every worker, under the
 * supervisor); 422 {"error":…,"load_errors":"file:line: message…"} when they failed to
 * load (the previous ones keep serving); 503 {"error":…} while shutting down or when the
 * supervisor cannot be reached.
 */
static void on_reloaded(void *arg, int rc, const char *err)
{
    luar_admin_call_t *c = arg;
    luar_buf_t f, b;
    luar_buf_init(&f, 0);
    luar_buf_init(&b, 0);
    unsigned gen =
        c->env.generation_now ? c->env.generation_now(c->env.reload_ctx) : c->env.generation;
    const char *why = err && *err ? err : luar_strerror(rc);
    if (rc == 0) {
        luar_buf_appendf(&f, "\"outcome\":\"ok\",\"generation\":%u", gen);
        luar_buf_appendf(&b, "{\"ok\":true,\"generation\":%u}", gen);
    } else {
        luar_buf_puts(&f, "\"outcome\":\"failed\",\"error\":");
        luar_buf_append_json_string(&f, why, strlen(why));
        luar_buf_appendf(&f, ",\"generation\":%u", gen);
        if (rc == LUAR_EBUSY || rc == LUAR_EIO || rc == LUAR_ENOMEM) {
            /* Not the scripts' fault: shutting down, or the supervisor out of reach. */
            luar_buf_puts(&b, "{\"error\":");
            luar_buf_append_json_string(&b, why, strlen(why));
        } else {
            luar_buf_puts(&b, "{\"error\":\"the new scripts failed to load; the previous "
                              "ones keep serving\",\"load_errors\":");
            luar_buf_append_json_string(&b, why, strlen(why));
        }
        luar_buf_appendf(&b, ",\"generation\":%u}", gen);
    }
    luar_admin_audit(c, "reload", &f);
    luar_buf_free(&f);
    int status = rc == 0                                                   ? 200
                 : rc == LUAR_EBUSY || rc == LUAR_EIO || rc == LUAR_ENOMEM ? 503
                                                                           : 422;
    luar_admin_respond_buf(c, status, &b);
}

void luar_admin_reload(luar_admin_call_t *c)
{
    if (c->env.reload == NULL) {
        luar_admin_error(c, 503, "reload is not available in this process");
        return;
    }
    c->env.vm = NULL; /* retired by the reload */
    c->env.reload(c->env.reload_ctx, on_reloaded, c);
}
