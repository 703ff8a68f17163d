/*
 * The generic layer of the queue interface: argument checks, copies into operation
 * records, the scheme table, state names, job ids, and calling back on the loop thread.
 * Backends see only backend.h.
 */
#include "queue/backend.h"
#include "common/error.h"
#include "common/clock.h"

#include <pthread.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* The backends, by URL scheme. A new backend adds one line. */
static const luar_queue_backend_t *const backends[] = {
    &luar_queue_sqlite_backend, /* sqlite:PATH */
    &luar_queue_redis_backend,  /* redis:// and rediss:// */
};

#define DEFAULT_DEAD_TTL 2592000.0
#define LIST_DEFAULT_LIMIT 100
#define LIST_MAX_LIMIT 10000

/* ---- states ------------------------------------------------------------------------- */

static const char *const state_names[LUAR_JOB_STATES] = {
    "queued", "scheduled", "running", "succeeded", "retrying", "dead",
};

const char *luar_job_state_name(luar_job_state_t s)
{
    if ((int)s < 0 || (int)s >= LUAR_JOB_STATES)
        return "unknown";
    return state_names[s];
}

int luar_job_state_parse(const char *name, luar_job_state_t *out)
{
    if (name == NULL)
        return LUAR_EINVAL;
    for (int i = 0; i < LUAR_JOB_STATES; i++) {
        if (strcmp(name, state_names[i]) == 0) {
            *out = (luar_job_state_t)i;
            return 0;
        }
    }
    return LUAR_EINVAL;
}

/* ---- operation records -------------------------------------------------------------- */

/* The first block is small (most records need a few hundred bytes); later ones double. */
#define ARENA_FIRST 512
#define ARENA_MAX_STEP 65536

struct luar_qop_block {
    struct luar_qop_block *next;
    size_t used, cap;
    alignas(max_align_t) unsigned char data[];
};

void *luar_qop_alloc(luar_qop_t *op, size_t size)
{
    size_t align = alignof(max_align_t);
    size = (size + align - 1) / align * align;
    if (size == 0)
        size = align;
    luar_qop_block_t *b = op->arena;
    if (b == NULL || b->cap - b->used < size) {
        size_t step = b == NULL ? ARENA_FIRST : b->cap < ARENA_MAX_STEP ? 2 * b->cap : b->cap;
        size_t cap = size > step ? size : step;
        b = malloc(sizeof *b + cap);
        if (b == NULL)
            return NULL;
        b->cap = cap;
        b->used = 0;
        b->next = op->arena;
        op->arena = b;
    }
    void *p = b->data + b->used;
    b->used += size;
    memset(p, 0, size);
    return p;
}

char *luar_qop_strdup(luar_qop_t *op, const char *s)
{
    if (s == NULL)
        return NULL;
    size_t n = strlen(s) + 1;
    char *p = luar_qop_alloc(op, n);
    if (p)
        memcpy(p, s, n);
    return p;
}

void luar_qop_free(luar_qop_t *op)
{
    luar_qop_block_t *b = op->arena;
    while (b) {
        luar_qop_block_t *next = b->next;
        free(b);
        b = next;
    }
    free(op);
}

int luar_qop_is_read(luar_qop_kind_t kind)
{
    return kind == LUAR_QOP_GET || kind == LUAR_QOP_LIST || kind == LUAR_QOP_COUNTS ||
           kind == LUAR_QOP_NEXT_DUE || kind == LUAR_QOP_PING || kind == LUAR_QOP_CACHE_GET;
}

int luar_qop_is_cache(luar_qop_kind_t kind)
{
    return kind == LUAR_QOP_CACHE_GET || kind == LUAR_QOP_CACHE_SET ||
           kind == LUAR_QOP_CACHE_DELETE || kind == LUAR_QOP_CACHE_INCR;
}

void luar_qop_complete(luar_qop_t *op)
{
    int rc = op->rc;
    int ok = rc == 0;
    if (!ok)
        snprintf(op->q->last_error, sizeof op->q->last_error, "%s",
                 op->error ? op->error : luar_strerror(rc));
    switch (op->kind) {
    case LUAR_QOP_ENQUEUE: {
        int dup = ok && op->duplicate;
        ((luar_queue_enqueue_cb)op->cb)(op->arg, rc,
                                        ok && !dup ? (const char *const *)op->out_ids : NULL,
                                        ok && !dup ? op->nout_ids : 0, dup);
        break;
    }
    case LUAR_QOP_CLAIM:
    case LUAR_QOP_GET:
        ((luar_queue_jobs_cb)op->cb)(op->arg, rc, ok ? op->jobs : NULL, ok ? op->njobs : 0);
        break;
    case LUAR_QOP_HEARTBEAT:
        ((luar_queue_ids_cb)op->cb)(op->arg, rc, ok ? (const char *const *)op->out_ids : NULL,
                                    ok ? op->nout_ids : 0);
        break;
    case LUAR_QOP_COMPLETE:
    case LUAR_QOP_FAIL:
    case LUAR_QOP_RELEASE:
    case LUAR_QOP_RETRY:
    case LUAR_QOP_DELETE:
    case LUAR_QOP_PING:
    case LUAR_QOP_CACHE_SET:
    case LUAR_QOP_CACHE_DELETE:
        ((luar_queue_done_cb)op->cb)(op->arg, rc);
        break;
    case LUAR_QOP_SWEEP:
        ((luar_queue_sweep_cb)op->cb)(op->arg, rc, ok ? op->count : 0, ok ? op->count2 : 0);
        break;
    case LUAR_QOP_RETRY_MANY:
    case LUAR_QOP_PURGE:
        ((luar_queue_count_cb)op->cb)(op->arg, rc, ok ? op->count : 0);
        break;
    case LUAR_QOP_LIST:
        ((luar_queue_list_cb)op->cb)(op->arg, rc, ok ? op->jobs : NULL, ok ? op->njobs : 0,
                                     ok ? op->cursor : NULL);
        break;
    case LUAR_QOP_COUNTS:
        ((luar_queue_counts_cb)op->cb)(op->arg, rc, ok ? op->counts : NULL, ok ? op->ncounts : 0);
        break;
    case LUAR_QOP_NEXT_DUE:
        ((luar_queue_time_cb)op->cb)(op->arg, rc, ok ? op->time : 0);
        break;
    case LUAR_QOP_RATE:
        ((luar_queue_rate_cb)op->cb)(op->arg, rc, ok ? &op->rate : NULL);
        break;
    case LUAR_QOP_CACHE_GET:
        ((luar_queue_cache_get_cb)op->cb)(op->arg, rc, ok ? op->out_value : NULL,
                                          ok && op->out_value ? op->out_value_len : 0);
        break;
    case LUAR_QOP_CACHE_INCR:
        ((luar_queue_cache_incr_cb)op->cb)(op->arg, rc, ok ? op->number : 0);
        break;
    case LUAR_QOP_KV:
        ((luar_queue_kv_cb)op->cb)(op->arg, rc, ok ? (int)op->number : 0,
                                   ok ? op->out_value : NULL,
                                   ok && op->out_value ? op->out_value_len : 0);
        break;
    }
    luar_qop_free(op);
}

/* ---- ids ---------------------------------------------------------------------------- */

static pthread_mutex_t id_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t id_last_ms;
static unsigned char id_last_rand[10];
static int id_reseed;
static pthread_once_t id_once = PTHREAD_ONCE_INIT;

/* In a child of fork: forget the sequence, so two processes never continue the same one
 * (the next id draws fresh random bits), and take the lock afresh. */
static void id_after_fork(void)
{
    pthread_mutex_init(&id_lock, NULL);
    id_reseed = 1;
}

static void id_init(void)
{
    pthread_atfork(NULL, NULL, id_after_fork);
}

/* Fills `buf` with random bytes; falls back on time and pid mixing if getrandom fails. */
static void random_bytes(unsigned char *buf, size_t n)
{
    if (getrandom(buf, n, 0) == (ssize_t)n)
        return;
    static uint64_t counter;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t x =
        (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ ((uint64_t)getpid() << 17) ^ ++counter;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = (unsigned char)(x >> 24);
    }
}

/* Adds one to a big-endian number; returns nonzero when it wrapped around. */
static int increment(unsigned char *b, size_t n)
{
    for (size_t i = n; i-- > 0;) {
        if (++b[i] != 0)
            return 0;
    }
    return 1;
}

void luar_queue_new_id(double now, char out[27])
{
    static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    uint64_t ms = now > 0 ? (uint64_t)(now * 1000.0) : 0;
    if (ms > 0xFFFFFFFFFFFFull)
        ms = 0xFFFFFFFFFFFFull;
    unsigned char bytes[16];

    pthread_once(&id_once, id_init);
    pthread_mutex_lock(&id_lock);
    if (ms > id_last_ms || id_reseed) {
        id_reseed = 0;
        if (ms > id_last_ms)
            id_last_ms = ms;
        random_bytes(id_last_rand, sizeof id_last_rand);
    } else if (increment(id_last_rand, sizeof id_last_rand)) {
        id_last_ms++;
    }
    ms = id_last_ms;
    for (int i = 0; i < 6; i++)
        bytes[i] = (unsigned char)(ms >> (8 * (5 - i)));
    memcpy(bytes + 6, id_last_rand, sizeof id_last_rand);
    pthread_mutex_unlock(&id_lock);

    /* 128 bits read as a 130-bit number whose top two bits are zero, 5 bits a character. */
    for (int c = 0; c < 26; c++) {
        int v = 0;
        for (int k = 0; k < 5; k++) {
            int bit = c * 5 + k - 2; /* bit index from the most significant, -2 .. 127 */
            int b = bit >= 0 ? (bytes[bit / 8] >> (7 - bit % 8)) & 1 : 0;
            v = v << 1 | b;
        }
        out[c] = alphabet[v];
    }
    out[26] = '\0';
}

/* ---- opening and the clock ---------------------------------------------------------- */

int luar_queue_open(uv_loop_t *loop, const char *url, luar_queue_t **out, luar_buf_t *err)
{
    *out = NULL;
    if (loop == NULL || url == NULL) {
        luar_buf_puts(err, "queue: no backend URL");
        return LUAR_EINVAL;
    }
    const luar_queue_backend_t *be = NULL;
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++) {
        size_t n = strlen(backends[i]->scheme);
        if (strncmp(url, backends[i]->scheme, n) == 0) {
            be = backends[i];
            break;
        }
    }
    if (be == NULL) {
        luar_buf_appendf(err,
                         "queue: unknown backend URL \"%s\" (expected sqlite:PATH, "
                         "redis://HOST:PORT/DB or rediss://…)",
                         url);
        return LUAR_EINVAL;
    }
    luar_queue_t *q = calloc(1, sizeof *q);
    if (q == NULL)
        return LUAR_ENOMEM;
    q->backend = be;
    q->loop = loop;
    q->dead_ttl = DEFAULT_DEAD_TTL;
    q->cache_max_bytes = LUAR_QUEUE_CACHE_DEFAULT_MAX_BYTES;
    q->cache_max_value = LUAR_QUEUE_CACHE_DEFAULT_MAX_VALUE;
    int rc = be->open(q, url + strlen(be->scheme), err);
    if (rc)
        goto fail;
    *out = q;
    return 0;
fail:
    free(q);
    return rc;
}

void luar_queue_url_redact(const char *url, char *out, size_t size)
{
    if (size == 0)
        return;
    const char *auth = url ? strstr(url, "://") : NULL;
    if (auth == NULL) {
        snprintf(out, size, "%s", url ? url : "");
        return;
    }
    auth += 3;
    size_t alen = strcspn(auth, "/?");
    const char *at = NULL, *colon = NULL;
    for (size_t i = 0; i < alen; i++) {
        if (auth[i] == '@')
            at = auth + i; /* the last '@': a password may hold one */
    }
    if (at)
        colon = memchr(auth, ':', (size_t)(at - auth));
    if (colon == NULL) {
        snprintf(out, size, "%s", url);
        return;
    }
    snprintf(out, size, "%.*s***%s", (int)(colon + 1 - url), url, at);
}

/* Frees the handle once the backend is closed, then tells the caller. */
static void on_backend_closed(void *arg)
{
    luar_queue_t *q = arg;
    void (*done)(void *) = q->close_done;
    void *done_arg = q->close_arg;
    free(q);
    if (done)
        done(done_arg);
}

void luar_queue_close(luar_queue_t *q, void (*done)(void *arg), void *arg)
{
    q->close_done = done;
    q->close_arg = arg;
    q->closing = 1;
    q->backend->close(q, on_backend_closed, q);
}

void luar_queue_set_clock(luar_queue_t *q, double (*now)(void *arg), void *arg)
{
    q->clock = now;
    q->clock_arg = arg;
}

double luar_queue_now(luar_queue_t *q)
{
    if (q->clock)
        return q->clock(q->clock_arg);
    return luar_time_now();
}

void luar_queue_set_dead_ttl(luar_queue_t *q, double dead_ttl)
{
    q->dead_ttl = dead_ttl;
}

const char *luar_queue_last_error(luar_queue_t *q)
{
    return q->last_error;
}

/* ---- building and submitting operations --------------------------------------------- */

/* A new record of `kind` for `q`, or NULL when out of memory. */
static luar_qop_t *op_new(luar_queue_t *q, luar_qop_kind_t kind, void (*cb)(void), void *arg)
{
    luar_qop_t *op = calloc(1, sizeof *op);
    if (op == NULL)
        return NULL;
    op->q = q;
    op->kind = kind;
    op->cb = cb;
    op->arg = arg;
    op->now = luar_queue_now(q);
    op->filter.state = -1;
    return op;
}

/* Copies a string input; returns 0 or LUAR_ENOMEM. */
static int op_str(luar_qop_t *op, const char **dst, const char *s)
{
    *dst = luar_qop_strdup(op, s);
    return s != NULL && *dst == NULL ? LUAR_ENOMEM : 0;
}

static int empty(const char *s)
{
    return s == NULL || s[0] == '\0';
}

/* Checks a filter; `state_required` for purge. */
static int filter_ok(const luar_job_filter_t *f, int state_required)
{
    if (f == NULL)
        return !state_required;
    if (f->state < -1 || f->state >= LUAR_JOB_STATES)
        return 0;
    return !(state_required && f->state < 0);
}

/* Copies a filter into the record (NULL: match all). */
static int op_filter(luar_qop_t *op, const luar_job_filter_t *f)
{
    op->filter.state = -1;
    if (f == NULL)
        return 0;
    op->filter.state = f->state;
    op->filter.limit = f->limit;
    op->filter.since = f->since > 0 ? f->since : 0;
    op->filter.until = f->until > 0 ? f->until : 0;
    op->filter.max = f->max;
    if (op_str(op, &op->filter.queue, empty(f->queue) ? NULL : f->queue) ||
        op_str(op, &op->filter.name, empty(f->name) ? NULL : f->name) ||
        op_str(op, &op->filter.cursor, empty(f->cursor) ? NULL : f->cursor) ||
        op_str(op, &op->filter.error, empty(f->error) ? NULL : f->error))
        return LUAR_ENOMEM;
    return 0;
}

/* Hands a built record to the backend, or frees it when building failed. */
static int op_submit(luar_qop_t *op, int rc)
{
    if (rc) {
        luar_qop_free(op);
        return rc;
    }
    op->q->backend->submit(op->q, op);
    return 0;
}

/* The common start of every operation: checks the queue and callback, then declares the
 * record `op` (with `now` and the callback) and `rc`; returns early on failure. */
#define START(kind, cb)                                                                            \
    if (q == NULL || (cb) == NULL)                                                                 \
        return LUAR_EINVAL;                                                                        \
    if (q->closing)                                                                                \
        return LUAR_ECLOSED;                                                                       \
    luar_qop_t *op = op_new(q, kind, (void (*)(void))(cb), arg);                                   \
    if (op == NULL)                                                                                \
        return LUAR_ENOMEM;                                                                        \
    int rc = 0

/* ---- writes ------------------------------------------------------------------------- */

int luar_queue_enqueue(luar_queue_t *q, const luar_job_spec_t *specs, size_t n,
                       const char *dedupe_key, double dedupe_ttl, luar_queue_enqueue_cb cb,
                       void *arg)
{
    if (n > 0 && specs == NULL)
        return LUAR_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (empty(specs[i].name) || specs[i].max_attempts < 0)
            return LUAR_EINVAL;
    }
    if (!empty(dedupe_key) && dedupe_ttl < 0)
        return LUAR_EINVAL;
    START(LUAR_QOP_ENQUEUE, cb);
    if (n > 0) {
        op->specs = luar_qop_alloc(op, n * sizeof *op->specs);
        if (op->specs == NULL)
            return op_submit(op, LUAR_ENOMEM);
    }
    op->nspecs = n;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const luar_job_spec_t *s = &specs[i];
        luar_job_spec_t *d = &op->specs[i];
        d->priority = s->priority;
        d->run_at = s->run_at;
        d->max_attempts = s->max_attempts;
        if (op_str(op, &d->name, s->name) ||
            op_str(op, &d->queue, empty(s->queue) ? "default" : s->queue) ||
            op_str(op, &d->args, empty(s->args) ? "null" : s->args) ||
            op_str(op, &d->key, empty(s->key) ? NULL : s->key) ||
            op_str(op, &d->trace, empty(s->trace) ? NULL : s->trace))
            rc = LUAR_ENOMEM;
    }
    if (rc == 0)
        rc = op_str(op, &op->dedupe_key, empty(dedupe_key) ? NULL : dedupe_key);
    op->dedupe_ttl = dedupe_ttl;
    return op_submit(op, rc);
}

int luar_queue_claim(luar_queue_t *q, const char *queue, size_t max, const char *owner,
                     double lease, luar_queue_jobs_cb cb, void *arg)
{
    if (max == 0 || empty(owner) || !(lease > 0))
        return LUAR_EINVAL;
    START(LUAR_QOP_CLAIM, cb);
    op->max = max;
    op->lease = lease;
    rc = op_str(op, &op->queue, empty(queue) ? NULL : queue);
    if (rc == 0)
        rc = op_str(op, &op->owner, owner);
    return op_submit(op, rc);
}

int luar_queue_heartbeat(luar_queue_t *q, const char *const *ids, size_t n, const char *owner,
                         double lease, luar_queue_ids_cb cb, void *arg)
{
    if ((n > 0 && ids == NULL) || empty(owner) || !(lease > 0))
        return LUAR_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (empty(ids[i]))
            return LUAR_EINVAL;
    }
    START(LUAR_QOP_HEARTBEAT, cb);
    op->lease = lease;
    rc = op_str(op, &op->owner, owner);
    const char **copy = n > 0 ? luar_qop_alloc(op, n * sizeof *copy) : NULL;
    if (n > 0 && copy == NULL)
        rc = LUAR_ENOMEM;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = op_str(op, &copy[i], ids[i]);
    op->ids = copy;
    op->nids = n;
    return op_submit(op, rc);
}

int luar_queue_complete(luar_queue_t *q, const char *id, const char *owner, const char *result,
                        double result_ttl, luar_queue_done_cb cb, void *arg)
{
    if (empty(id) || empty(owner))
        return LUAR_EINVAL;
    START(LUAR_QOP_COMPLETE, cb);
    op->ttl = result_ttl;
    if (op_str(op, &op->id, id) || op_str(op, &op->owner, owner) || op_str(op, &op->text, result))
        rc = LUAR_ENOMEM;
    return op_submit(op, rc);
}

int luar_queue_fail(luar_queue_t *q, const char *id, const char *owner, const char *error,
                    const char *traceback, double retry_at, double dead_ttl, luar_queue_done_cb cb,
                    void *arg)
{
    if (empty(id) || empty(owner) || retry_at < 0)
        return LUAR_EINVAL;
    START(LUAR_QOP_FAIL, cb);
    op->when = retry_at;
    op->ttl = dead_ttl;
    if (op_str(op, &op->id, id) || op_str(op, &op->owner, owner) || op_str(op, &op->text, error) ||
        op_str(op, &op->traceback, traceback))
        rc = LUAR_ENOMEM;
    return op_submit(op, rc);
}

int luar_queue_release(luar_queue_t *q, const char *id, const char *owner, double run_at,
                       luar_queue_done_cb cb, void *arg)
{
    if (empty(id) || empty(owner))
        return LUAR_EINVAL;
    START(LUAR_QOP_RELEASE, cb);
    op->when = run_at > op->now ? run_at : op->now;
    if (op_str(op, &op->id, id) || op_str(op, &op->owner, owner))
        rc = LUAR_ENOMEM;
    return op_submit(op, rc);
}

int luar_queue_sweep(luar_queue_t *q, luar_queue_sweep_cb cb, void *arg)
{
    START(LUAR_QOP_SWEEP, cb);
    op->ttl = q->dead_ttl;
    return op_submit(op, rc);
}

int luar_queue_retry(luar_queue_t *q, const char *id, luar_queue_done_cb cb, void *arg)
{
    if (empty(id))
        return LUAR_EINVAL;
    START(LUAR_QOP_RETRY, cb);
    rc = op_str(op, &op->id, id);
    return op_submit(op, rc);
}

int luar_queue_retry_many(luar_queue_t *q, const luar_job_filter_t *filter, luar_queue_count_cb cb,
                          void *arg)
{
    if (!filter_ok(filter, 0))
        return LUAR_EINVAL;
    START(LUAR_QOP_RETRY_MANY, cb);
    rc = op_filter(op, filter);
    return op_submit(op, rc);
}

int luar_queue_delete(luar_queue_t *q, const char *id, luar_queue_done_cb cb, void *arg)
{
    if (empty(id))
        return LUAR_EINVAL;
    START(LUAR_QOP_DELETE, cb);
    rc = op_str(op, &op->id, id);
    return op_submit(op, rc);
}

int luar_queue_purge(luar_queue_t *q, const luar_job_filter_t *filter, luar_queue_count_cb cb,
                     void *arg)
{
    if (!filter_ok(filter, 1))
        return LUAR_EINVAL;
    START(LUAR_QOP_PURGE, cb);
    rc = op_filter(op, filter);
    return op_submit(op, rc);
}

/* ---- reads -------------------------------------------------------------------------- */

int luar_queue_get(luar_queue_t *q, const char *id, luar_queue_jobs_cb cb, void *arg)
{
    if (empty(id))
        return LUAR_EINVAL;
    START(LUAR_QOP_GET, cb);
    rc = op_str(op, &op->id, id);
    return op_submit(op, rc);
}

int luar_queue_list(luar_queue_t *q, const luar_job_filter_t *filter, luar_queue_list_cb cb,
                    void *arg)
{
    if (!filter_ok(filter, 0))
        return LUAR_EINVAL;
    START(LUAR_QOP_LIST, cb);
    rc = op_filter(op, filter);
    if (op->filter.limit == 0)
        op->filter.limit = LIST_DEFAULT_LIMIT;
    if (op->filter.limit > LIST_MAX_LIMIT)
        op->filter.limit = LIST_MAX_LIMIT;
    return op_submit(op, rc);
}

int luar_queue_counts(luar_queue_t *q, luar_queue_counts_cb cb, void *arg)
{
    START(LUAR_QOP_COUNTS, cb);
    return op_submit(op, rc);
}

int luar_queue_next_due(luar_queue_t *q, luar_queue_time_cb cb, void *arg)
{
    START(LUAR_QOP_NEXT_DUE, cb);
    return op_submit(op, rc);
}

int luar_queue_ping(luar_queue_t *q, luar_queue_done_cb cb, void *arg)
{
    START(LUAR_QOP_PING, cb);
    return op_submit(op, rc);
}

/* ---- rate limits -------------------------------------------------------------------- */

int luar_queue_rate_check(luar_queue_t *q, const char *key, const luar_gcra_t *limit,
                          int64_t cost, luar_queue_rate_cb cb, void *arg)
{
    if (empty(key) || limit == NULL || limit->interval_ns < 1 || limit->burst < 1 || cost < 1 ||
        cost > limit->burst)
        return LUAR_EINVAL;
    START(LUAR_QOP_RATE, cb);
    op->limit = *limit;
    op->cost = cost;
    rc = op_str(op, &op->rate_key, key);
    return op_submit(op, rc);
}

/* ---- cache -------------------------------------------------------------------------- */

void luar_queue_set_cache_limits(luar_queue_t *q, size_t max_bytes, size_t max_value)
{
    if (max_bytes)
        q->cache_max_bytes = max_bytes;
    if (max_value)
        q->cache_max_value = max_value;
}

size_t luar_queue_cache_max_value(luar_queue_t *q)
{
    return q->cache_max_value;
}

/* Copies `len` bytes of `value` into the record's arena (NUL-terminated) as op->value. */
static int op_value(luar_qop_t *op, const char *value, size_t len)
{
    char *copy = luar_qop_alloc(op, len + 1);
    if (copy == NULL)
        return LUAR_ENOMEM;
    if (len)
        memcpy(copy, value, len);
    copy[len] = '\0';
    op->value = copy;
    op->value_len = len;
    return 0;
}

/* 1..LUAR_QUEUE_CACHE_MAX_KEY bytes (so no NUL inside: the key is a C string). */
static int cache_key_ok(const char *key)
{
    return key != NULL && key[0] != '\0' &&
           strnlen(key, LUAR_QUEUE_CACHE_MAX_KEY + 1) <= LUAR_QUEUE_CACHE_MAX_KEY;
}

/* A ttl: 0 (none) or a positive number of seconds up to LUAR_QUEUE_CACHE_MAX_TTL. */
static int ttl_ok(double ttl)
{
    return ttl >= 0 && ttl <= LUAR_QUEUE_CACHE_MAX_TTL;
}

int luar_queue_cache_get(luar_queue_t *q, const char *key, luar_queue_cache_get_cb cb, void *arg)
{
    if (!cache_key_ok(key))
        return LUAR_EINVAL;
    START(LUAR_QOP_CACHE_GET, cb);
    rc = op_str(op, &op->cache_key, key);
    return op_submit(op, rc);
}

int luar_queue_cache_set(luar_queue_t *q, const char *key, const char *value, size_t len,
                         double ttl, luar_queue_done_cb cb, void *arg)
{
    if (!cache_key_ok(key) || (value == NULL && len > 0) || !ttl_ok(ttl))
        return LUAR_EINVAL;
    if (q != NULL && len > q->cache_max_value)
        return LUAR_ETOOBIG;
    START(LUAR_QOP_CACHE_SET, cb);
    op->ttl = ttl;
    rc = op_str(op, &op->cache_key, key);
    if (rc == 0)
        rc = op_value(op, value, len);
    return op_submit(op, rc);
}

int luar_queue_cache_delete(luar_queue_t *q, const char *key, luar_queue_done_cb cb, void *arg)
{
    if (!cache_key_ok(key))
        return LUAR_EINVAL;
    START(LUAR_QOP_CACHE_DELETE, cb);
    rc = op_str(op, &op->cache_key, key);
    return op_submit(op, rc);
}

int luar_queue_cache_incr(luar_queue_t *q, const char *key, int64_t delta, double ttl,
                          luar_queue_cache_incr_cb cb, void *arg)
{
    if (!cache_key_ok(key) || !ttl_ok(ttl))
        return LUAR_EINVAL;
    START(LUAR_QOP_CACHE_INCR, cb);
    op->delta = delta;
    op->ttl = ttl;
    rc = op_str(op, &op->cache_key, key);
    return op_submit(op, rc);
}

/* ---- durable key-value -------------------------------------------------------------- */

int luar_queue_kv(luar_queue_t *q, luar_kv_mode_t mode, const char *key, const char *value,
                  size_t len, double ttl, luar_queue_kv_cb cb, void *arg)
{
    if (!cache_key_ok(key) || mode < LUAR_KV_GET || mode > LUAR_KV_TAKE || !ttl_ok(ttl) ||
        ((mode == LUAR_KV_PUT || mode == LUAR_KV_ADD) && value == NULL))
        return LUAR_EINVAL;
    if (q != NULL && len > q->cache_max_value)
        return LUAR_ETOOBIG;
    START(LUAR_QOP_KV, cb);
    op->kv_mode = mode;
    op->ttl = mode == LUAR_KV_PUT || mode == LUAR_KV_ADD ? ttl : 0;
    rc = op_str(op, &op->cache_key, key);
    if (value != NULL && rc == 0)
        rc = op_value(op, value, len);
    return op_submit(op, rc);
}
