/*
 * The Redis queue backend: `queue = "redis://[user:password@]host:port/db?prefix=…"` or
 * rediss:// (URL options in redis/url.h).
 *
 * Every operation is one command on the queue's pipelined connection (redis/conn.c): most
 * are FCALL of the one function of redis_queue.lua, a Redis function library (Redis 7.0
 * or later) named after the SHA-1 of its text, loaded with FUNCTION LOAD (kept when it is
 * there already) on every new connection, so a restarted Redis has it again; a "Function
 * not found" answer — FUNCTION FLUSH under a live connection — loads it again and resends,
 * twice at most. Ping and counts are plain commands. The function does each operation
 * atomically, so a claim never hands a job to two claimers, and an enqueue records its
 * dedupe key in the same step as its jobs. Concurrent operations share round trips: their
 * commands leave in one write and their replies come back in order.
 *
 * Durability is the server's: a callback runs once Redis has answered, which with
 * `appendfsync always` is after the AOF is fsynced (docs/queue-backends.md).
 * A lost connection fails every operation in flight with LUAR_EIO and
 * luar_queue_last_error says why ("redis 127.0.0.1:6379: connection refused").
 */
#include "queue/redis.h"
#include "common/error.h"
#include "crypto/crypto.h"
#include "luar_redis_queue_lua.h" /* generated from redis_queue.lua: luar_redis_queue_lua[] */

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Jobs one claim takes at most (the script's work per call stays bounded). */
#define CLAIM_MAX 1000
/* "Function not found" answers one operation survives (each reloads the library and
 * resends). */
#define NOT_FOUND_RELOADS 2
/* GCRA tolerances above this are refused: the script's doubles are exact below 2^53. */
#define RATE_TOLERANCE_MAX (INT64_C(1) << 52)
/* A job in the function's replies (see read_jobs): its id and 11 changing fields, packed
 * with the other jobs' into one string, then its spec (8 fields) as an element of its own. */
#define JOB_META_LEN 12
#define JOB_SPEC_LEN 8
/* Operations one batch (one FCALL) carries at most, and arguments' bytes: a batch is
 * sent when either is reached, or when the loop iteration's commands are written and no
 * batch is out (see on_before_flush). */
#define BATCH_MAX_OPS 512
#define BATCH_MAX_BYTES ((size_t)4 << 20)

typedef struct rq {
    luar_queue_t *q;
    luar_redis_t *conn;
    char *prefix;
    char fn[46];          /* the function's name: "luar_" and the SHA-1 of redis_queue.lua */
    char fn_ro[49];       /* its read-only twin (get, list, next_due): fn and "_ro" */
    char *lib;            /* the library as loaded: its shebang line, LUAR_FUNCTION, the file */
    char load_error[160]; /* why the last reload of the library failed ("" when it did not) */
    uv_timer_t later;     /* completes operations that failed before reaching the connection */
    luar_qop_t *later_ops, *later_tail;
    struct call **batch; /* batchable calls of this loop iteration, in order (see batch_add) */
    size_t nbatch, batch_cap, batch_bytes;
    size_t batches_out; /* batches sent, not answered yet */
    int closing;
    void (*close_done)(void *arg);
    void *close_arg;
} rq_t;

/* One operation's command, kept in the record's arena so it can be sent again. */
typedef struct call {
    luar_qop_t *op;
    rq_t *rq;
    int argc, cap;
    const char **argv;
    size_t *lens;
    int cursor_arg; /* retry_many, purge: the argument holding the cursor */
    int max_arg;    /* retry_many, purge: the argument holding how many more to touch */
    int reloads;
    int nomem;
} call_t;

static rq_t *rq_of(luar_queue_t *q)
{
    return q->impl;
}

/* ---- building commands -------------------------------------------------------------- */

static void arg_n(call_t *c, const char *s, size_t len)
{
    if (c->argc >= c->cap || s == NULL) {
        c->nomem = 1;
        return;
    }
    c->argv[c->argc] = s;
    c->lens[c->argc] = len;
    c->argc++;
}

/* A string argument (kept by the record or static). */
static void arg(call_t *c, const char *s)
{
    arg_n(c, s, s ? strlen(s) : 0);
}

static void argf(call_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void argf(call_t *c, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    arg(c, luar_qop_strdup(c->op, tmp));
}

/*
 * Writes a time that reads back as the same double into buf (32 bytes); returns its length.
 * Times here are unix seconds with a fraction: the integer part and up to 17 significant
 * digits in all are written with integer arithmetic and the result checked with strtod,
 * falling back to %.17g when it does not read back exactly (rare) or the value is not a
 * plain positive time. printf's exact %.17g (multi-precision division) was a tenth of a
 * worker's CPU in the drain benchmark: a completion writes two times, an enqueue three.
 */
static int format_time(char *buf, double t)
{
    if (t > 0 && t < 1e15) {
        uint64_t ip = (uint64_t)t;
        double frac = t - (double)ip; /* exact: t and ip share their integer part */
        char digits[24];
        int nd = snprintf(digits, sizeof digits, "%" PRIu64, ip);
        int fd = 17 - nd; /* fraction digits that 17 significant digits allow */
        if (fd > 0 && fd <= 9) {
            static const double pow10[] = {1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9};
            uint64_t f = (uint64_t)llround(frac * pow10[fd]);
            if (f >= (uint64_t)pow10[fd]) { /* rounded up to the next integer */
                f -= (uint64_t)pow10[fd];
                nd = snprintf(digits, sizeof digits, "%" PRIu64, ip + 1);
            }
            memcpy(buf, digits, (size_t)nd);
            int n = nd;
            if (f > 0) {
                while (f % 10 == 0) { /* no trailing zeros, as %g */
                    f /= 10;
                    fd--;
                }
                buf[n++] = '.';
                for (int i = fd - 1; i >= 0; i--) {
                    buf[n + i] = (char)('0' + f % 10);
                    f /= 10;
                }
                n += fd;
            }
            buf[n] = '\0';
            if (strtod(buf, NULL) == t)
                return n;
        }
    }
    return snprintf(buf, 32, "%.17g", t);
}

/* A time argument: reads back as the same double (format_time). */
static void arg_time(call_t *c, double t)
{
    char tmp[32];
    int n = format_time(tmp, t);
    char *s = luar_qop_alloc(c->op, (size_t)n + 1);
    if (s)
        memcpy(s, tmp, (size_t)n + 1);
    arg_n(c, s, (size_t)n);
}

/*
 * An enqueued job's `spec`: the fields that never change, packed as read_jobs reads them
 * (name, queue, args, key, priority, max_attempts, enqueued_at — the operation's time, as
 * arg_time sends it — and trace), stored as one hash field and handed back as it is by
 * every claim, get and list.
 */
static void arg_spec(call_t *c, const luar_job_spec_t *s)
{
    char prio[24], max[24], at[32];
    snprintf(prio, sizeof prio, "%d", s->priority);
    snprintf(max, sizeof max, "%d", s->max_attempts);
    format_time(at, c->op->now);
    /* An empty key or trace is none, as the function takes it (the key's own argument). */
    const char *key = s->key && *s->key ? s->key : NULL;
    const char *trace = s->trace && *s->trace ? s->trace : NULL;
    const char *v[JOB_SPEC_LEN] = {s->name, s->queue, s->args, key, prio, max, at, trace};
    size_t len = 0;
    for (int i = 0; i < JOB_SPEC_LEN; i++)
        len += 2 + (v[i] ? strlen(v[i]) : 0);
    char *out = luar_qop_alloc(c->op, len + 1), *p = out;
    if (out) {
        for (int i = 0; i < JOB_SPEC_LEN; i++) {
            *p++ = v[i] ? '1' : '0';
            if (v[i]) {
                size_t n = strlen(v[i]);
                memcpy(p, v[i], n);
                p += n;
            }
            *p++ = '\0';
        }
    }
    arg_n(c, out, len);
}

/* A whole number held in a double, in decimal: as an integer when it fits (%.0f costs a
 * worker more than the conversion). */
static void arg_whole(call_t *c, double v)
{
    if (fabs(v) < 9e18)
        argf(c, "%" PRId64, (int64_t)v);
    else
        argf(c, "%.0f", v);
}

/*
 * A time as the script's sorted sets score it: whole microseconds, floor(t * 1e6), the
 * same double arithmetic as the script's us() on the time arg_time sends (which reads back
 * as exactly t). Sent beside a time the function would otherwise score itself (a dedupe
 * key's expiry): us() in the script (strtod of 17 digits, then %.0f) was ~2.5 µs a call
 * inside Redis.
 */
static void arg_us(call_t *c, double t)
{
    arg_whole(c, floor(t * 1e6));
}

/*
 * A time's whole second, floor(t): the expiry list a completion files its job under
 * (`<prefix>expiry:<second>`, see redis_queue.lua), computed here for the same reason.
 */
static void arg_sec(call_t *c, double t)
{
    arg_whole(c, floor(t));
}

/* An optional string: a flag ("1" present, "0" absent) and the value ("" when absent). */
static void arg_opt(call_t *c, const char *s)
{
    arg(c, s ? "1" : "0");
    arg(c, s ? s : "");
}

/* The key <prefix>cache:<key> of a cache entry, in the record's arena. */
static void argf_key(call_t *c, const rq_t *rq, const char *key)
{
    size_t plen = strlen(rq->prefix), klen = strlen(key);
    char *k = luar_qop_alloc(c->op, plen + 6 + klen + 1);
    if (k != NULL) {
        memcpy(k, rq->prefix, plen);
        memcpy(k + plen, "cache:", 6);
        memcpy(k + plen + 6, key, klen + 1);
    }
    arg_n(c, k, plen + 6 + klen);
}

/* Starts a call of the script's operation `name` with room for `extra` more arguments. */
static call_t *script_call(rq_t *rq, luar_qop_t *op, const char *name, size_t extra)
{
    call_t *c = luar_qop_alloc(op, sizeof *c);
    if (c == NULL)
        return NULL;
    c->op = op;
    c->rq = rq;
    c->cap = (int)(6 + extra);
    c->argv = luar_qop_alloc(op, (size_t)c->cap * sizeof *c->argv);
    c->lens = luar_qop_alloc(op, (size_t)c->cap * sizeof *c->lens);
    if (c->argv == NULL || c->lens == NULL)
        return NULL;
    if (name == NULL)
        return c; /* a plain command */
    /* The reads go to the twin flagged no-writes, which a full Redis still runs. */
    int ro = op->kind == LUAR_QOP_GET || op->kind == LUAR_QOP_LIST || op->kind == LUAR_QOP_NEXT_DUE;
    arg(c, ro ? "FCALL_RO" : "FCALL");
    arg(c, ro ? rq->fn_ro : rq->fn);
    arg(c, "0");
    arg(c, name);
    arg(c, rq->prefix);
    arg_time(c, op->now);
    return c;
}

/* ---- completing --------------------------------------------------------------------- */

static void fail_op(luar_qop_t *op, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail_op(luar_qop_t *op, int rc, const char *fmt, ...)
{
    char msg[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    op->rc = rc;
    op->error = luar_qop_strdup(op, msg);
}

static void finish_close(rq_t *rq);

static void on_later(uv_timer_t *t)
{
    rq_t *rq = t->data;
    luar_qop_t *op = rq->later_ops;
    rq->later_ops = rq->later_tail = NULL;
    while (op) {
        luar_qop_t *next = op->next;
        luar_qop_complete(op);
        op = next;
    }
    if (rq->closing)
        finish_close(rq);
}

/* Completes `op` (its rc set) on the next loop iteration: never inside submit. */
static void complete_later(rq_t *rq, luar_qop_t *op)
{
    op->next = NULL;
    if (rq->later_tail)
        rq->later_tail->next = op;
    else
        rq->later_ops = op;
    rq->later_tail = op;
    uv_timer_start(&rq->later, on_later, 0, 0);
}

static void on_reply(void *arg, int rc, const redisReply *reply);

static void send_call(call_t *c)
{
    if (c->nomem) {
        c->op->rc = LUAR_ENOMEM;
        complete_later(c->rq, c->op);
        return;
    }
    int rc = luar_redis_send(c->rq->conn, c->argc, c->argv, c->lens, on_reply, c);
    if (rc) {
        fail_op(c->op, rc == LUAR_ECLOSED ? LUAR_EIO : rc, "redis %s: %s",
                luar_redis_address(c->rq->conn), luar_strerror(rc));
        complete_later(c->rq, c->op);
    }
}

/* ---- reading replies ---------------------------------------------------------------- */

static const char *rstr(luar_qop_t *op, const redisReply *r, int *nomem)
{
    if (r == NULL || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS))
        return NULL;
    char *s = luar_qop_alloc(op, r->len + 1);
    if (s == NULL) {
        *nomem = 1;
        return NULL;
    }
    memcpy(s, r->str, r->len);
    s[r->len] = '\0';
    return s;
}

static double rnum(const redisReply *r)
{
    if (r == NULL)
        return 0;
    if (r->type == REDIS_REPLY_INTEGER)
        return (double)r->integer;
    if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) {
        char tmp[64];
        size_t n = r->len < sizeof tmp - 1 ? r->len : sizeof tmp - 1;
        memcpy(tmp, r->str, n);
        tmp[n] = '\0';
        return strtod(tmp, NULL);
    }
    return 0;
}

static int64_t rint64(const redisReply *r)
{
    if (r == NULL)
        return 0;
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    if (r->type != REDIS_REPLY_STRING)
        return 0;
    char tmp[32];
    size_t n = r->len < sizeof tmp - 1 ? r->len : sizeof tmp - 1;
    memcpy(tmp, r->str, n);
    tmp[n] = '\0';
    return strtoll(tmp, NULL, 10);
}

/*
 * Splits `n` packed fields off *p (before end) into f: each a presence flag ('1' or '0'),
 * the value (none when absent) and a NUL byte; an absent field is NULL. 0 or LUAR_EPARSE.
 */
static int split_fields(const char **p, const char *end, const char **f, int n)
{
    for (int k = 0; k < n; k++) {
        const char *q = *p;
        const char *nul = q < end ? memchr(q, '\0', (size_t)(end - q)) : NULL;
        if (nul == NULL || nul == q || (*q != '0' && *q != '1'))
            return LUAR_EPARSE;
        f[k] = *q == '1' ? q + 1 : NULL;
        if (f[k] == NULL && nul != q + 1)
            return LUAR_EPARSE; /* an absent field has no value */
        *p = nul + 1;
    }
    return 0;
}

/* A copy of a reply element in the record's arena (the job's fields point into it). */
static const char *element_copy(luar_qop_t *op, const redisReply *e)
{
    char *body = luar_qop_alloc(op, e->len ? e->len : 1);
    if (body)
        memcpy(body, e->str, e->len);
    return body;
}

/*
 * Reads the jobs of a reply's elements from `from` on into op->jobs (none when the reply
 * ends before `from`). The function (see pack_job in redis_queue.lua) answers with one
 * string holding every job's id and changing fields, JOB_META_LEN per job, then each job's
 * stored `spec` (its JOB_SPEC_LEN fields that never change) as an element of its own, in
 * the same order; fields are packed as split_fields reads them. Each element is copied once
 * into the record's arena and the fields point into the copy.
 */
static int read_jobs(luar_qop_t *op, const redisReply *reply, size_t from)
{
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < from)
        return LUAR_EPARSE;
    if (reply->elements == from) {
        op->njobs = 0;
        return 0;
    }
    const redisReply *meta = reply->element[from];
    if (meta->type != REDIS_REPLY_STRING)
        return LUAR_EPARSE;
    size_t nuls = 0; /* every field ends with a NUL: the jobs are the NULs / JOB_META_LEN */
    for (const char *p = meta->str, *end = meta->str + meta->len;
         (p = memchr(p, '\0', (size_t)(end - p))) != NULL; p++)
        nuls++;
    size_t n = nuls / JOB_META_LEN;
    if (n == 0 || nuls % JOB_META_LEN != 0 || reply->elements - from - 1 != n)
        return LUAR_EPARSE;
    op->jobs = luar_qop_alloc(op, n * sizeof *op->jobs);
    const char *body = element_copy(op, meta);
    if (op->jobs == NULL || body == NULL)
        return LUAR_ENOMEM;
    const char *p = body, *end = body + meta->len;
    for (size_t i = 0; i < n; i++) {
        const redisReply *e = reply->element[from + 1 + i];
        if (e->type != REDIS_REPLY_STRING)
            return LUAR_EPARSE;
        const char *m[JOB_META_LEN], *f[JOB_SPEC_LEN];
        const char *spec = element_copy(op, e);
        if (spec == NULL)
            return LUAR_ENOMEM;
        const char *sp = spec;
        if (split_fields(&p, end, m, JOB_META_LEN) ||
            split_fields(&sp, spec + e->len, f, JOB_SPEC_LEN) || sp != spec + e->len ||
            m[0] == NULL)
            return LUAR_EPARSE;
        luar_job_t *j = &op->jobs[i];
        snprintf(j->id, sizeof j->id, "%s", m[0]);
        j->state = (luar_job_state_t)(m[1] ? (int)strtol(m[1], NULL, 10) : 0);
        j->attempt = m[2] ? (int)strtol(m[2], NULL, 10) : 0;
        j->run_at = m[3] ? strtod(m[3], NULL) : 0;
        j->started_at = m[4] ? strtod(m[4], NULL) : 0;
        j->finished_at = m[5] ? strtod(m[5], NULL) : 0;
        j->lease_expires_at = m[6] ? strtod(m[6], NULL) : 0;
        j->owner = m[7];
        j->result = m[8];
        j->last_error = m[9];
        j->traceback = m[10];
        j->expires_at = m[11] ? strtod(m[11], NULL) : 0;
        j->name = f[0];
        j->queue = f[1];
        j->args = f[2];
        j->key = f[3];
        j->priority = f[4] ? (int)strtol(f[4], NULL, 10) : 0;
        j->max_attempts = f[5] ? (int)strtol(f[5], NULL, 10) : 0;
        j->enqueued_at = f[6] ? strtod(f[6], NULL) : 0;
        j->trace = f[7];
    }
    if (p != end)
        return LUAR_EPARSE;
    op->njobs = n;
    return 0;
}

/* Reads an array of strings into op->out_ids, from element `from`. */
static int read_ids(luar_qop_t *op, const redisReply *reply, size_t from)
{
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < from)
        return LUAR_EPARSE;
    size_t n = reply->elements - from;
    op->out_ids = luar_qop_alloc(op, (n ? n : 1) * sizeof *op->out_ids);
    if (op->out_ids == NULL)
        return LUAR_ENOMEM;
    int nomem = 0;
    for (size_t i = 0; i < n; i++) {
        op->out_ids[i] = rstr(op, reply->element[from + i], &nomem);
        if (op->out_ids[i] == NULL && !nomem)
            return LUAR_EPARSE;
    }
    op->nout_ids = n;
    return nomem ? LUAR_ENOMEM : 0;
}

/* The script's status answers: 0, or NOT_FOUND -1, BUSY -2, EXISTS -3. */
static int read_status(const redisReply *reply)
{
    if (reply->type != REDIS_REPLY_INTEGER)
        return LUAR_EPARSE;
    switch (reply->integer) {
    case 0:
        return 0;
    case -1:
        return LUAR_ENOTFOUND;
    case -2:
        return LUAR_EBUSY;
    case -3:
        return LUAR_EEXISTS;
    default:
        return LUAR_EPARSE;
    }
}

static int cmp_counts(const void *a, const void *b)
{
    return strcmp(((const luar_queue_count_t *)a)->queue, ((const luar_queue_count_t *)b)->queue);
}

/* HGETALL counts: fields "<state>:<queue>" → per queue, sorted by queue name. */
static int read_counts(luar_qop_t *op, const redisReply *reply)
{
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements % 2)
        return LUAR_EPARSE;
    size_t n = reply->elements / 2;
    op->counts = luar_qop_alloc(op, (n ? n : 1) * sizeof *op->counts);
    if (op->counts == NULL)
        return LUAR_ENOMEM;
    int nomem = 0;
    for (size_t i = 0; i < n; i++) {
        const char *field = rstr(op, reply->element[2 * i], &nomem);
        if (field == NULL || field[0] < '0' || field[0] >= '0' + LUAR_JOB_STATES || field[1] != ':')
            continue;
        const char *queue = field + 2;
        luar_queue_count_t *c = NULL;
        for (size_t k = 0; k < op->ncounts && c == NULL; k++) {
            if (strcmp(op->counts[k].queue, queue) == 0)
                c = &op->counts[k];
        }
        if (c == NULL) {
            c = &op->counts[op->ncounts++];
            c->queue = queue;
        }
        c->counts[field[0] - '0'] += rint64(reply->element[2 * i + 1]);
    }
    qsort(op->counts, op->ncounts, sizeof *op->counts, cmp_counts);
    return nomem ? LUAR_ENOMEM : 0;
}

/*
 * Reads a successful reply into the record. Returns 0 (complete the operation), 1 (the
 * call was sent again: a continuation), or a LUAR_E code.
 */
static int read_reply(call_t *c, const redisReply *reply)
{
    luar_qop_t *op = c->op;
    int rc;
    switch (op->kind) {
    case LUAR_QOP_ENQUEUE:
        if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1)
            return LUAR_EPARSE;
        if (rint64(reply->element[0]) == 1) {
            op->duplicate = 1;
            return 0;
        }
        rc = read_ids(op, reply, 1);
        if (rc == 0 && op->nout_ids != op->nspecs)
            rc = LUAR_EPARSE;
        return rc;
    case LUAR_QOP_CLAIM:
        return read_jobs(op, reply, 0);
    case LUAR_QOP_GET:
        rc = read_jobs(op, reply, 0);
        if (rc == 0 && op->njobs != 1)
            op->rc = LUAR_ENOTFOUND;
        return rc;
    case LUAR_QOP_HEARTBEAT:
        return read_ids(op, reply, 0);
    case LUAR_QOP_COMPLETE:
    case LUAR_QOP_FAIL:
    case LUAR_QOP_RELEASE:
    case LUAR_QOP_RETRY:
    case LUAR_QOP_DELETE:
        rc = read_status(reply);
        if (rc == LUAR_EPARSE)
            return rc;
        op->rc = rc;
        return 0;
    case LUAR_QOP_SWEEP:
        if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2)
            return LUAR_EPARSE;
        op->count = (size_t)rint64(reply->element[0]);
        op->count2 = (size_t)rint64(reply->element[1]);
        return 0;
    case LUAR_QOP_RETRY_MANY:
    case LUAR_QOP_PURGE: {
        if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2)
            return LUAR_EPARSE;
        op->count += (size_t)rint64(reply->element[0]);
        int nomem = 0;
        const char *cursor = rstr(op, reply->element[1], &nomem);
        if (nomem)
            return LUAR_ENOMEM;
        if (cursor == NULL || (op->filter.max > 0 && op->count >= op->filter.max))
            return 0;
        /* More to do: the same call from the cursor (each call bounded, see the script). */
        c->argv[c->cursor_arg] = cursor;
        c->lens[c->cursor_arg] = strlen(cursor);
        if (op->filter.max > 0) {
            char *left = luar_qop_alloc(op, 24);
            if (left == NULL)
                return LUAR_ENOMEM;
            snprintf(left, 24, "%zu", op->filter.max - op->count);
            c->argv[c->max_arg] = left;
            c->lens[c->max_arg] = strlen(left);
        }
        send_call(c);
        return 1;
    }
    case LUAR_QOP_LIST: {
        if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1)
            return LUAR_EPARSE;
        int nomem = 0;
        op->cursor = rstr(op, reply->element[0], &nomem);
        return nomem ? LUAR_ENOMEM : read_jobs(op, reply, 1);
    }
    case LUAR_QOP_COUNTS:
        return read_counts(op, reply);
    case LUAR_QOP_NEXT_DUE:
        if (reply->type != REDIS_REPLY_STRING && reply->type != REDIS_REPLY_NIL)
            return LUAR_EPARSE;
        /* The exact run_at as text, or nil (false) when nothing waits. */
        op->time = reply->type == REDIS_REPLY_STRING ? rnum(reply) : 0;
        return 0;
    case LUAR_QOP_PING:
        return reply->type == REDIS_REPLY_STATUS ? 0 : LUAR_EPARSE;
    case LUAR_QOP_CACHE_GET: {
        if (reply->type == REDIS_REPLY_NIL)
            return 0; /* absent: out_value stays NULL */
        if (reply->type != REDIS_REPLY_STRING)
            return LUAR_EPARSE;
        int nomem = 0;
        op->out_value = rstr(op, reply, &nomem);
        op->out_value_len = reply->len;
        return nomem ? LUAR_ENOMEM : 0;
    }
    case LUAR_QOP_CACHE_SET:
        return reply->type == REDIS_REPLY_STATUS ? 0 : LUAR_EPARSE;
    case LUAR_QOP_CACHE_DELETE:
        return reply->type == REDIS_REPLY_INTEGER ? 0 : LUAR_EPARSE;
    case LUAR_QOP_CACHE_INCR:
        if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1)
            return LUAR_EPARSE;
        if (rint64(reply->element[0]) == 0) {
            op->rc = LUAR_EINVAL; /* not an integer, or out of range */
            return 0;
        }
        if (reply->elements != 2 || reply->element[1]->type != REDIS_REPLY_STRING)
            return LUAR_EPARSE;
        op->number = rint64(reply->element[1]); /* the value as text: exact beyond 2^53 */
        return 0;
    case LUAR_QOP_KV: {
        if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1)
            return LUAR_EPARSE;
        op->number = rint64(reply->element[0]) != 0;
        if (reply->elements < 2)
            return 0;
        if (reply->element[1]->type != REDIS_REPLY_STRING)
            return LUAR_EPARSE;
        int nomem = 0;
        op->out_value = rstr(op, reply->element[1], &nomem);
        op->out_value_len = reply->element[1]->len;
        return nomem ? LUAR_ENOMEM : 0;
    }
    case LUAR_QOP_RATE:
        if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 6)
            return LUAR_EPARSE;
        op->rate.allowed = (int)rint64(reply->element[0]);
        op->rate.store = (int)rint64(reply->element[1]);
        op->rate.tat_ns = rint64(reply->element[2]);
        op->rate.retry_after_ns = rint64(reply->element[3]);
        op->rate.reset_after_ns = rint64(reply->element[4]);
        op->rate.remaining = rint64(reply->element[5]);
        return 0;
    }
    return LUAR_EPARSE;
}

/* A reload's answer: a failure (a full Redis: OOM) is kept, to be named if the resent call
 * finds no function again. */
static void on_loaded(void *arg, int rc, const redisReply *reply)
{
    rq_t *rq = arg;
    if (rc || reply == NULL)
        return; /* the connection failed: every call in flight says so */
    if (reply->type == REDIS_REPLY_ERROR)
        snprintf(rq->load_error, sizeof rq->load_error, "%.*s",
                 (int)(reply->len < 150 ? reply->len : 150), reply->str);
    else
        rq->load_error[0] = '\0';
}

/* The answer to an FCALL of a function the server does not have (FUNCTION FLUSH, a
 * failover to a replica that never had it, a restart without persistence). */
static int function_lost(const redisReply *reply)
{
    return reply->len >= 22 && strncmp(reply->str, "ERR Function not found", 22) == 0;
}

/* Loads the library again, ahead of a command about to be resent. */
static void reload_library(rq_t *rq)
{
    const char *load[4] = {"FUNCTION", "LOAD", "REPLACE", rq->lib};
    luar_redis_send(rq->conn, 4, load, NULL, on_loaded, rq);
}

/* Completes c's operation from its reply (or resends it: function lost, a continuation). */
static void handle_reply(call_t *c, int rc, const redisReply *reply)
{
    luar_qop_t *op = c->op;
    rq_t *rq = c->rq;
    const char *addr = luar_redis_address(rq->conn);
    if (rc) {
        fail_op(op, LUAR_EIO, "%s", luar_redis_error(rq->conn));
    } else if (reply->type == REDIS_REPLY_ERROR) {
        if (function_lost(reply) && c->reloads < NOT_FOUND_RELOADS && !rq->closing) {
            /* The server lost the library: load it, send again. */
            c->reloads++;
            reload_library(rq);
            send_call(c);
            return;
        }
        int lost = function_lost(reply) && rq->load_error[0];
        fail_op(op, LUAR_EIO, "redis %s: %.*s%s%s%s", addr,
                (int)(reply->len < 240 ? reply->len : 240), reply->str,
                lost ? " (loading it failed: " : "", lost ? rq->load_error : "", lost ? ")" : "");
    } else {
        op->rc = 0;
        rc = read_reply(c, reply);
        if (rc == 1)
            return;
        if (rc == LUAR_EPARSE)
            fail_op(op, LUAR_EIO, "redis %s: unexpected reply to a queue operation", addr);
        else if (rc)
            op->rc = rc;
    }
    luar_qop_complete(op);
}

static void on_reply(void *arg, int rc, const redisReply *reply)
{
    handle_reply(arg, rc, reply);
}

/* ---- batches ------------------------------------------------------------------------ */

/*
 * The hot-path writes that arrive during one loop iteration — enqueues (every webhook
 * delivery), completions (every job), failures, releases, rate checks — go to Redis as one
 * FCALL of the function's `batch` operation instead of one each: inside Redis a call has
 * a fixed cost (the argument table, the reply; ~11 µs on the test VM for a no-op one)
 * that was most of a no-op job's cost. The batch is sent from the connection's before_flush
 * callback, i.e. with the iteration's other commands, so nothing waits longer than it did;
 * and any other operation sends the batch before itself, so commands still reach Redis in
 * the order they were submitted. The function runs the batch's operations in order, each as
 * it would run alone, and answers with the array of their answers.
 */
typedef struct batch {
    rq_t *rq;
    size_t n;
    call_t **calls;
    int argc;
    const char **argv;
    size_t *lens;
    char *counts; /* the decimal argument counts */
    int reloads;
    int out; /* counted in rq->batches_out */
} batch_t;

static int batchable(luar_qop_kind_t kind)
{
    switch (kind) {
    case LUAR_QOP_ENQUEUE:
    case LUAR_QOP_COMPLETE:
    case LUAR_QOP_FAIL:
    case LUAR_QOP_RELEASE:
    case LUAR_QOP_RATE:
        return 1;
    default:
        return 0;
    }
}

/* A batch was answered (or failed): the operations gathered while it was out leave now. */
static void batch_free(batch_t *b)
{
    rq_t *rq = b->rq;
    if (b->out && --rq->batches_out == 0 && rq->nbatch > 0 && !rq->closing)
        luar_redis_flush_soon(rq->conn);
    free(b->calls);
    free(b->argv);
    free(b->lens);
    free(b->counts);
    free(b);
}

/* Fails every operation of b (rc set by the caller's message) and frees b. */
static void batch_fail(batch_t *b, int now, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void batch_fail(batch_t *b, int now, const char *fmt, ...)
{
    char msg[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (size_t i = 0; i < b->n; i++) {
        fail_op(b->calls[i]->op, LUAR_EIO, "%s", msg);
        if (now)
            luar_qop_complete(b->calls[i]->op);
        else
            complete_later(b->rq, b->calls[i]->op);
    }
    batch_free(b);
}

static void on_batch_reply(void *arg, int rc, const redisReply *reply);

static void batch_send(batch_t *b)
{
    rq_t *rq = b->rq;
    int rc = luar_redis_send(rq->conn, b->argc, b->argv, b->lens, on_batch_reply, b);
    if (rc)
        batch_fail(b, 0, "redis %s: %s", luar_redis_address(rq->conn),
                   luar_strerror(rc == LUAR_ECLOSED ? LUAR_EIO : rc));
}

static void on_batch_reply(void *arg, int rc, const redisReply *reply)
{
    batch_t *b = arg;
    rq_t *rq = b->rq;
    const char *addr = luar_redis_address(rq->conn);
    if (rc) {
        batch_fail(b, 1, "%s", luar_redis_error(rq->conn));
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        if (function_lost(reply) && b->reloads < NOT_FOUND_RELOADS && !rq->closing) {
            b->reloads++;
            reload_library(rq);
            batch_send(b);
            return;
        }
        int lost = function_lost(reply) && rq->load_error[0];
        batch_fail(b, 1, "redis %s: %.*s%s%s%s", addr, (int)(reply->len < 240 ? reply->len : 240),
                   reply->str, lost ? " (loading it failed: " : "", lost ? rq->load_error : "",
                   lost ? ")" : "");
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != b->n) {
        batch_fail(b, 1, "redis %s: unexpected reply to a batch of queue operations", addr);
        return;
    }
    for (size_t i = 0; i < b->n; i++)
        handle_reply(b->calls[i], 0, reply->element[i]);
    batch_free(b);
}

/*
 * The end of the run of completions that begins with calls[i] (i itself when calls[i] is not
 * one): completions in a row with the same prefix and owner — a worker's, one loop
 * iteration's. A run goes in the batch as one entry, `completes <prefix> <owner>` then per
 * job (id, now, has_result, result, expires_at, its second): 6 arguments a job instead of 10,
 * each of which Redis makes into an object and the function into a Lua string.
 */
static size_t completion_run(call_t *const *calls, size_t i, size_t n)
{
    const call_t *a = calls[i];
    size_t e = i;
    while (e < n) {
        const call_t *c = calls[e];
        if (c->op->kind != LUAR_QOP_COMPLETE || c->argc != 12 || c->lens[4] != a->lens[4] ||
            c->lens[7] != a->lens[7] || memcmp(c->argv[4], a->argv[4], a->lens[4]) ||
            memcmp(c->argv[7], a->argv[7], a->lens[7]))
            break;
        e++;
    }
    return e;
}

/* Sends the calls gathered so far: alone when there is one, else as one batch. */
static void batch_flush(rq_t *rq)
{
    size_t n = rq->nbatch;
    if (n == 0)
        return;
    rq->nbatch = 0;
    rq->batch_bytes = 0;
    if (n == 1) {
        send_call(rq->batch[0]);
        return;
    }
    batch_t *b = calloc(1, sizeof *b);
    int argc = 5;
    size_t entries = 0;
    for (size_t i = 0, e; i < n; i = e, entries++) {
        e = completion_run(rq->batch, i, n);
        if (e > i) /* its count, completes, prefix, owner, then 6 a job */
            argc += 4 + 6 * (int)(e - i);
        else /* its count, then its arguments after the name */
            argc += rq->batch[e++]->argc - 3 + 1;
    }
    if (b) {
        b->rq = rq;
        b->n = n;
        b->calls = malloc(n * sizeof *b->calls);
        b->argv = malloc((size_t)argc * sizeof *b->argv);
        b->lens = malloc((size_t)argc * sizeof *b->lens);
        b->counts = malloc((n + 1) * 12);
    }
    if (b == NULL || b->calls == NULL || b->argv == NULL || b->lens == NULL || b->counts == NULL) {
        if (b)
            batch_free(b);
        for (size_t i = 0; i < n; i++) /* out of memory: one command each */
            send_call(rq->batch[i]);
        return;
    }
    memcpy(b->calls, rq->batch, n * sizeof *b->calls);
    char *num = b->counts;
    int k = 0;
#define PUT(s, len) (b->argv[k] = (s), b->lens[k] = (len), k++)
    PUT("FCALL", 5);
    PUT(rq->fn, sizeof rq->fn - 1);
    PUT("0", 1);
    PUT("batch", 5);
    PUT(num, (size_t)sprintf(num, "%zu", entries));
    num += 12;
    for (size_t i = 0, e; i < n; i = e) {
        call_t *c = b->calls[i];
        e = completion_run(b->calls, i, n);
        if (e > i) {
            PUT(num, (size_t)sprintf(num, "%zu", 3 + 6 * (e - i)));
            num += 12;
            PUT("completes", 9);
            PUT(c->argv[4], c->lens[4]); /* prefix */
            PUT(c->argv[7], c->lens[7]); /* owner */
            for (size_t j = i; j < e; j++) {
                const call_t *d = b->calls[j];
                PUT(d->argv[6], d->lens[6]); /* id */
                PUT(d->argv[5], d->lens[5]); /* now */
                for (int a = 8; a < 12; a++)
                    PUT(d->argv[a], d->lens[a]);
            }
            continue;
        }
        e++;
        PUT(num, (size_t)sprintf(num, "%d", c->argc - 3));
        num += 12;
        for (int a = 3; a < c->argc; a++)
            PUT(c->argv[a], c->lens[a]);
    }
#undef PUT
    b->argc = k;
    b->out = 1;
    rq->batches_out++;
    batch_send(b);
}

/*
 * The loop iteration's commands are about to be written. Its batch goes with them unless
 * a batch is out: then it keeps gathering until that one is answered (group commit), so
 * under load a batch carries the operations of the whole round trip rather than of one
 * iteration, and Redis's fixed cost of a call (~30 µs for a batch of enqueues on the test
 * VM) is shared by more of them. An idle backend answers at once as before; an operation
 * that is not batched sends the batch before itself (order), and a full one leaves at once.
 */
static void on_before_flush(void *arg)
{
    rq_t *rq = arg;
    if (rq->batches_out == 0)
        batch_flush(rq);
}

/* Adds a batchable call to this iteration's batch; 0, or -1 when it must go alone. */
static int batch_add(rq_t *rq, call_t *c)
{
    if (rq->nbatch == rq->batch_cap) {
        size_t cap = rq->batch_cap ? rq->batch_cap * 2 : 64;
        call_t **nb = realloc(rq->batch, cap * sizeof *nb);
        if (nb == NULL)
            return -1;
        rq->batch = nb;
        rq->batch_cap = cap;
    }
    rq->batch[rq->nbatch++] = c;
    for (int a = 0; a < c->argc; a++)
        rq->batch_bytes += c->lens[a];
    if (rq->nbatch == 1)
        luar_redis_flush_soon(rq->conn);
    if (rq->nbatch >= BATCH_MAX_OPS || rq->batch_bytes >= BATCH_MAX_BYTES)
        batch_flush(rq);
    return 0;
}

/* ---- operations --------------------------------------------------------------------- */

static const char *state_arg(int state)
{
    static const char *const names[] = {"-1", "0", "1", "2", "3", "4", "5"};
    return state >= -1 && state < LUAR_JOB_STATES ? names[state + 1] : "-1";
}

/* Builds the command for `op`; NULL when out of memory or not supported (rc set). */
static call_t *build(rq_t *rq, luar_qop_t *op)
{
    call_t *c = NULL;
    switch (op->kind) {
    case LUAR_QOP_ENQUEUE:
        c = script_call(rq, op, "enqueue", 3 + 9 * op->nspecs);
        if (c == NULL)
            return NULL;
        arg(c, op->dedupe_key ? op->dedupe_key : "");
        arg_us(c, op->now + op->dedupe_ttl);
        argf(c, "%zu", op->nspecs);
        for (size_t i = 0; i < op->nspecs; i++) {
            const luar_job_spec_t *s = &op->specs[i];
            char *id = luar_qop_alloc(op, 27);
            if (id)
                luar_queue_new_id(op->now, id);
            arg(c, id);
            arg(c, s->name);
            arg(c, s->queue);
            arg_spec(c, s);
            arg(c, s->key ? s->key : "");
            argf(c, "%d", s->priority);
            arg(c, s->run_at > op->now ? "1" : "0");
            argf(c, "%d", s->max_attempts);
            /* A past run_at (a cron tick, a catch-up) is kept: it is job.scheduled_at. */
            arg_time(c, s->run_at > 0 ? s->run_at : op->now);
        }
        return c;
    case LUAR_QOP_CLAIM:
        c = script_call(rq, op, "claim", 4);
        if (c == NULL)
            return NULL;
        arg(c, op->queue ? op->queue : "");
        argf(c, "%zu", op->max < CLAIM_MAX ? op->max : CLAIM_MAX);
        arg(c, op->owner);
        arg_time(c, op->now + op->lease);
        return c;
    case LUAR_QOP_HEARTBEAT:
        c = script_call(rq, op, "heartbeat", 2 + op->nids);
        if (c == NULL)
            return NULL;
        arg(c, op->owner);
        arg_time(c, op->now + op->lease);
        for (size_t i = 0; i < op->nids; i++)
            arg(c, op->ids[i]);
        return c;
    case LUAR_QOP_COMPLETE:
        c = script_call(rq, op, "complete", 6);
        if (c == NULL)
            return NULL;
        arg(c, op->id);
        arg(c, op->owner);
        arg_opt(c, op->text);
        arg_time(c, op->now + op->ttl);
        arg_sec(c, op->now + op->ttl);
        return c;
    case LUAR_QOP_FAIL:
        c = script_call(rq, op, "fail", 8);
        if (c == NULL)
            return NULL;
        arg(c, op->id);
        arg(c, op->owner);
        arg_opt(c, op->text);
        arg_opt(c, op->traceback);
        arg_time(c, op->when > 0 ? op->when : 0);
        arg_time(c, op->now + op->ttl);
        return c;
    case LUAR_QOP_RELEASE:
        c = script_call(rq, op, "release", 4);
        if (c == NULL)
            return NULL;
        arg(c, op->id);
        arg(c, op->owner);
        arg_time(c, op->when);
        arg(c, op->when > op->now ? "1" : "0");
        return c;
    case LUAR_QOP_SWEEP:
        c = script_call(rq, op, "sweep", 1);
        if (c == NULL)
            return NULL;
        arg_time(c, op->now + op->ttl);
        return c;
    case LUAR_QOP_RETRY:
    case LUAR_QOP_DELETE:
    case LUAR_QOP_GET:
        c = script_call(rq, op,
                        op->kind == LUAR_QOP_RETRY    ? "retry"
                        : op->kind == LUAR_QOP_DELETE ? "delete"
                                                      : "get",
                        1);
        if (c == NULL)
            return NULL;
        arg(c, op->id);
        return c;
    case LUAR_QOP_RETRY_MANY:
    case LUAR_QOP_PURGE:
    case LUAR_QOP_LIST:
        c = script_call(rq, op,
                        op->kind == LUAR_QOP_RETRY_MANY ? "retry_many"
                        : op->kind == LUAR_QOP_PURGE    ? "purge"
                                                        : "list",
                        8);
        if (c == NULL)
            return NULL;
        arg(c, state_arg(op->filter.state));
        arg(c, op->filter.queue ? op->filter.queue : "");
        arg(c, op->filter.name ? op->filter.name : "");
        c->cursor_arg = c->argc;
        arg(c, op->kind == LUAR_QOP_LIST && op->filter.cursor ? op->filter.cursor : "");
        if (op->kind == LUAR_QOP_LIST)
            argf(c, "%zu", op->filter.limit);
        arg(c, op->filter.error ? op->filter.error : "");
        arg_time(c, op->filter.since);
        arg_time(c, op->filter.until);
        if (op->kind != LUAR_QOP_LIST) {
            c->max_arg = c->argc;
            argf(c, "%zu", op->filter.max);
        }
        return c;
    case LUAR_QOP_NEXT_DUE:
        /* A script: the set's scores are whole microseconds, the exact time is the job's. */
        return script_call(rq, op, "next_due", 0);
    case LUAR_QOP_COUNTS:
    case LUAR_QOP_PING:
        c = script_call(rq, op, NULL, 0);
        if (c == NULL)
            return NULL;
        if (op->kind == LUAR_QOP_PING) {
            arg(c, "PING");
        } else {
            arg(c, "HGETALL");
            argf(c, "%scounts", rq->prefix);
        }
        return c;
    case LUAR_QOP_CACHE_GET:
    case LUAR_QOP_CACHE_SET:
    case LUAR_QOP_CACHE_DELETE: {
        /* Plain commands on <prefix>cache:<key>; ttls run on Redis's clock. */
        c = script_call(rq, op, NULL, 0);
        if (c == NULL)
            return NULL;
        const char *cmd = op->kind == LUAR_QOP_CACHE_GET   ? "GET"
                          : op->kind == LUAR_QOP_CACHE_SET ? "SET"
                                                           : "DEL";
        arg(c, cmd);
        argf_key(c, rq, op->cache_key);
        if (op->kind == LUAR_QOP_CACHE_SET) {
            arg_n(c, op->value, op->value_len);
            if (op->ttl > 0) {
                arg(c, "PX");
                argf(c, "%.0f", ceil(op->ttl * 1000)); /* rounded up: never shorter */
            }
        }
        return c;
    }
    case LUAR_QOP_CACHE_INCR:
        c = script_call(rq, op, "cache_incr", 3);
        if (c == NULL)
            return NULL;
        arg(c, op->cache_key);
        argf(c, "%" PRId64, op->delta);
        argf(c, "%.0f", op->ttl > 0 ? ceil(op->ttl * 1000) : 0);
        return c;
    case LUAR_QOP_KV: {
        static const char *const modes[] = {"get", "put", "add", "delete", "take"};
        c = script_call(rq, op, "kv", 5);
        if (c == NULL)
            return NULL;
        arg(c, modes[op->kv_mode]);
        arg(c, op->cache_key);
        arg(c, op->value ? "1" : "0");
        arg_n(c, op->value ? op->value : "", op->value ? op->value_len : 0);
        argf(c, "%.0f", op->ttl > 0 ? ceil(op->ttl * 1000) : 0);
        return c;
    }
    case LUAR_QOP_RATE: {
        if (op->limit.burst > RATE_TOLERANCE_MAX / op->limit.interval_ns) {
            fail_op(op, LUAR_EINVAL,
                    "redis %s: rate limit too long (burst x interval over 52 days) for "
                    "exact arithmetic",
                    luar_redis_address(rq->conn));
            return NULL;
        }
        c = script_call(rq, op, "rate", 5);
        if (c == NULL)
            return NULL;
        arg(c, op->rate_key);
        argf(c, "%" PRId64, luar_gcra_ns(op->now));
        argf(c, "%" PRId64, op->limit.interval_ns);
        argf(c, "%" PRId64, op->limit.burst);
        argf(c, "%" PRId64, op->cost);
        return c;
    }
    }
    return NULL;
}

static void rq_submit(luar_queue_t *q, luar_qop_t *op)
{
    rq_t *rq = rq_of(q);
    op->next = NULL;
    call_t *c = build(rq, op);
    if (c == NULL) {
        if (op->rc == 0)
            op->rc = LUAR_ENOMEM;
        complete_later(rq, op);
        return;
    }
    if (!c->nomem && batchable(op->kind) && batch_add(rq, c) == 0)
        return;
    batch_flush(rq); /* what was submitted before goes first */
    send_call(c);
}

/* ---- opening and closing ------------------------------------------------------------ */

static void on_conn_closed(void *arg)
{
    rq_t *rq = arg;
    void (*done)(void *) = rq->close_done;
    void *done_arg = rq->close_arg;
    free(rq->prefix);
    free(rq->lib);
    free(rq->batch);
    free(rq);
    if (done)
        done(done_arg);
}

static void on_later_closed(uv_handle_t *h)
{
    rq_t *rq = h->data;
    luar_redis_close(rq->conn, on_conn_closed, rq);
}

/* Closes once the operations waiting on the timer are done (the connection waits for
 * its own). */
static void finish_close(rq_t *rq)
{
    if (rq->later_ops)
        return;
    uv_close((uv_handle_t *)&rq->later, on_later_closed);
}

static void rq_close(luar_queue_t *q, void (*done)(void *arg), void *arg)
{
    rq_t *rq = rq_of(q);
    batch_flush(rq);
    rq->closing = 1;
    rq->close_done = done;
    rq->close_arg = arg;
    finish_close(rq);
}

/*
 * The key layout this build reads and writes. Raise it with every change a build of the
 * previous layout could misread (scores, fields, key names) and say how to move in
 * docs/ops/upgrades.md. Layout 1: scores in seconds (no version key); 2: microseconds;
 * 3: the fields a job never changes packed in its `spec` field (args and trace only there),
 * dedupe scored in microseconds; 4: finished jobs filed for deletion in per-second lists
 * (`expiry:<second>`), the `expiry` set holding those seconds, not the jobs.
 */
#define KEY_LAYOUT "4"

/*
 * Sent on every new connection before any operation: stamps an empty prefix with this
 * build's layout, and refuses a prefix written by another one, so a build never misreads
 * jobs (due times, leases) written in a layout it does not know. The refusal is the
 * connection's error, so /readyz, the logs and every operation name it until it is mended.
 */
static const char layout_check[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "if v == ARGV[1] then return v end\n"
    "if v == false and redis.call('EXISTS', KEYS[2]) == 0 then\n"
    "  redis.call('SET', KEYS[1], ARGV[1]) return ARGV[1]\n"
    "end\n"
    "return redis.error_reply('the queue keys under prefix ' .. ARGV[2] .. ' were written '\n"
    "  .. 'with key layout ' .. (v or '1') .. ', this build uses ' .. ARGV[1] .. ': drain '\n"
    "  .. 'them with that build, or delete them, then start this one (docs/ops/upgrades.md)')\n";

static int rq_open(luar_queue_t *q, const char *rest, luar_buf_t *err)
{
    /* The scheme table matched "redis"; the URL parser wants the whole URL back. */
    char *url = malloc(strlen(rest) + 8);
    if (url == NULL)
        return LUAR_ENOMEM;
    sprintf(url, "redis%s", rest);
    luar_redis_url_t u;
    int rc = luar_redis_url_parse(url, &u, err);
    free(url);
    if (rc)
        return rc;
    rq_t *rq = calloc(1, sizeof *rq);
    if (rq == NULL) {
        luar_redis_url_free(&u);
        return LUAR_ENOMEM;
    }
    rq->q = q;
    rq->prefix = strdup(u.prefix);
    uint8_t digest[64];
    size_t dlen = 0;
    luar_buf_t hex;
    luar_buf_init(&hex, 0);
    if (rq->prefix == NULL ||
        luar_crypto_digest("sha1", luar_redis_queue_lua, strlen(luar_redis_queue_lua), digest,
                           &dlen) ||
        luar_hex_encode(&hex, digest, dlen) || hex.len != 40) {
        rc = LUAR_ENOMEM;
        goto fail;
    }
    snprintf(rq->fn, sizeof rq->fn, "luar_%s", hex.data);
    snprintf(rq->fn_ro, sizeof rq->fn_ro, "%s_ro", rq->fn);
    size_t slen = strlen(luar_redis_queue_lua);
    rq->lib = malloc(2 * sizeof rq->fn + slen + 64);
    if (rq->lib == NULL) {
        rc = LUAR_ENOMEM;
        goto fail;
    }
    int hlen = sprintf(rq->lib, "#!lua name=%s\nlocal LUAR_FUNCTION = '%s'\n", rq->fn, rq->fn);
    memcpy(rq->lib + hlen, luar_redis_queue_lua, slen + 1);
    rc = luar_redis_open(q->loop, &u, &rq->conn, err);
    if (rc)
        goto fail;
    /* Without REPLACE: a library of this name has this very text (its name is the text's
     * SHA-1), so one that exists is kept — no recompiling, and no write (an AOF record and
     * a replication event of the whole library) for every connection and `luar jobs`
     * command. FUNCTION LOAD is refused by a full Redis (maxmemory): the server most likely
     * has the library already, and without this the connection would fail, reads included. */
    const char *load[3] = {"FUNCTION", "LOAD", rq->lib};
    char exists[96];
    snprintf(exists, sizeof exists, "ERR Library '%s' already exists", rq->fn);
    rc = luar_redis_add_setup(rq->conn, 3, load, NULL);
    if (rc == 0)
        rc = luar_redis_setup_tolerate(rq->conn, exists);
    if (rc == 0)
        rc = luar_redis_setup_tolerate(rq->conn, "OOM");
    size_t plen = strlen(rq->prefix);
    char *layout_key = malloc(plen + 8), *counts_key = malloc(plen + 8);
    if (layout_key == NULL || counts_key == NULL) {
        rc = LUAR_ENOMEM;
    } else {
        sprintf(layout_key, "%slayout", rq->prefix);
        sprintf(counts_key, "%scounts", rq->prefix);
    }
    const char *check[7] = {"EVAL",     layout_check, "2",       layout_key,
                            counts_key, KEY_LAYOUT,   rq->prefix};
    if (rc == 0)
        rc = luar_redis_add_setup(rq->conn, 7, check, NULL); /* arguments copied */
    free(layout_key);
    free(counts_key);
    if (rc) {
        luar_redis_close(rq->conn, NULL, NULL);
        goto fail;
    }
    uv_timer_init(q->loop, &rq->later);
    rq->later.data = rq;
    luar_redis_set_before_flush(rq->conn, on_before_flush, rq);
    luar_buf_free(&hex);
    luar_redis_url_free(&u);
    q->impl = rq;
    return 0;
fail:
    luar_buf_free(&hex);
    luar_redis_url_free(&u);
    free(rq->prefix);
    free(rq->lib);
    free(rq);
    return rc;
}

luar_redis_t *luar_queue_redis_conn(luar_queue_t *q)
{
    if (q == NULL || q->backend != &luar_queue_redis_backend)
        return NULL;
    return rq_of(q)->conn;
}

const luar_queue_backend_t luar_queue_redis_backend = {
    .scheme = "redis",
    .open = rq_open,
    .submit = rq_submit,
    .close = rq_close,
};
