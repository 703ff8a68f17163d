/*
 * The SQLite backend's answer to the cache operations (queue.h, "cache"): an in-process LRU
 * bounded by bytes (cache/lru.h), one per queue handle, i.e. per process. It is not kept in
 * the database file: a cache write that waited for the writer thread and a commit would
 * cost about what the cache saves, and a cache need not survive a restart. So workers of
 * one instance each have their own cache; a shared one is what the Redis backend gives.
 *
 * Runs on the loop thread, called from submit; never touches the connection.
 */
#include "common/error.h"
#include "queue/sqlite.h"

#include <string.h>

/* The store, created at first use with the queue's current bound, which it follows. */
static luar_lru_t *cache_of(luar_sq_t *s)
{
    size_t max = s->q->cache_max_bytes;
    if (s->cache == NULL) {
        s->cache = luar_lru_new(max);
    } else {
        luar_lru_stats_t st;
        luar_lru_stats(s->cache, &st);
        if (st.max_bytes != max)
            luar_lru_set_max_bytes(s->cache, max);
    }
    return s->cache;
}

/* An absolute expiry for a ttl counted from `now` (0: none). */
static double expiry(double now, double ttl)
{
    return ttl > 0 ? now + ttl : 0;
}

void luar_sq_cache_exec(luar_sq_t *s, luar_qop_t *op)
{
    luar_lru_t *c = cache_of(s);
    if (c == NULL) {
        op->rc = LUAR_ENOMEM;
        return;
    }
    size_t klen = strlen(op->cache_key);
    int rc;
    switch (op->kind) {
    case LUAR_QOP_CACHE_GET: {
        const char *v;
        size_t vlen;
        if (!luar_lru_get(c, op->cache_key, klen, op->now, &v, &vlen))
            break;
        char *copy = luar_qop_alloc(op, vlen + 1);
        if (copy == NULL) {
            op->rc = LUAR_ENOMEM;
            break;
        }
        memcpy(copy, v, vlen);
        op->out_value = copy;
        op->out_value_len = vlen;
        break;
    }
    case LUAR_QOP_CACHE_SET:
        rc = luar_lru_set(c, op->cache_key, klen, op->value, op->value_len,
                          expiry(op->now, op->ttl));
        /* An entry larger than the whole cache is one it cannot hold: the set succeeds and
         * the value is simply not there, as if evicted at once. */
        op->rc = rc == LUAR_ETOOBIG ? 0 : rc;
        break;
    case LUAR_QOP_CACHE_DELETE:
        luar_lru_delete(c, op->cache_key, klen);
        break;
    case LUAR_QOP_CACHE_INCR:
        rc = luar_lru_incr(c, op->cache_key, klen, op->delta, expiry(op->now, op->ttl), op->now,
                           &op->number);
        op->rc = rc == LUAR_ETOOBIG ? 0 : rc;
        break;
    default:
        op->rc = LUAR_EINVAL;
        break;
    }
}
