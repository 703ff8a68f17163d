/*
 * The in-process store of luar.cache: a map from binary keys to binary values, bounded by
 * bytes, with a time to live per entry and least-recently-used eviction. The SQLite queue
 * backend answers the queue interface's cache operations from one of these per process
 * (queue/sqlite_cache.c); the Redis backend keeps the cache on the server instead.
 *
 * An entry is charged luar_lru_entry_size(key, value) bytes: its key, its value and its
 * bookkeeping. Storing past the bound evicts the least recently used entries (a get or a
 * set makes an entry the most recently used). An entry whose time has come is absent: a
 * get or an incr finds nothing and frees it; until then it stays charged, and is evicted
 * in its LRU turn.
 *
 * Integers: incr reads and writes values that are the canonical decimal text of a signed
 * 64-bit integer ("0", "-12", no sign on positives, no leading zeros), which is also what
 * Redis's INCRBY reads and writes, so both backends agree on what an integer is.
 *
 * No I/O and no clock: callers pass `now` (unix seconds). Not thread-safe.
 */
#ifndef LUAR_CACHE_LRU_H
#define LUAR_CACHE_LRU_H

#include <stddef.h>
#include <stdint.h>

typedef struct luar_lru luar_lru_t;

/* Counters, for tests and diagnostics. */
typedef struct luar_lru_stats {
    size_t bytes;       /* charged now */
    size_t max_bytes;   /* the bound */
    size_t entries;     /* held now (expired ones not yet freed included) */
    uint64_t evictions; /* entries evicted to make room */
    uint64_t expired;   /* entries freed because their time had come */
} luar_lru_stats_t;

/* Creates an empty store bounded by `max_bytes` (> 0). NULL when out of memory. */
luar_lru_t *luar_lru_new(size_t max_bytes);

/* Frees the store and every entry. NULL is a no-op. */
void luar_lru_free(luar_lru_t *c);

/* Changes the bound; a smaller one evicts at once. */
void luar_lru_set_max_bytes(luar_lru_t *c, size_t max_bytes);

/* The bytes an entry of `klen` key and `vlen` value bytes is charged. */
size_t luar_lru_entry_size(size_t klen, size_t vlen);

/*
 * Looks `key` up at `now`. Returns 1 and points *value / *vlen at the stored bytes (valid
 * until the next call that changes the store; NUL-terminated for convenience), or 0 when
 * absent or expired. A hit becomes the most recently used.
 */
int luar_lru_get(luar_lru_t *c, const char *key, size_t klen, double now, const char **value,
                 size_t *vlen);

/*
 * Stores a copy of `value` under `key` (replacing an entry there), expiring at
 * `expires_at` (unix seconds; 0: never). Evicts least recently used entries to stay within
 * the bound. Returns 0, LUAR_ETOOBIG when the entry alone is larger than the bound (the
 * key's old entry is then removed: a set never leaves a stale value behind), LUAR_ENOMEM.
 */
int luar_lru_set(luar_lru_t *c, const char *key, size_t klen, const char *value, size_t vlen,
                 double expires_at);

/* Removes `key`. Returns 1 when an entry was there (expired or not), 0 otherwise. */
int luar_lru_delete(luar_lru_t *c, const char *key, size_t klen);

/*
 * Adds `delta` to the integer stored under `key` at `now` and stores the sum in *out. An
 * absent (or expired) key is created at 0 first, expiring at `expires_at` (0: never); an
 * existing key keeps its expiry. Returns 0, LUAR_EINVAL when the value there is not an
 * integer (see the top) or the sum would overflow (nothing changes), LUAR_ETOOBIG when
 * the entry is larger than the bound (*out is set, nothing is kept), LUAR_ENOMEM.
 */
int luar_lru_incr(luar_lru_t *c, const char *key, size_t klen, int64_t delta, double expires_at,
                  double now, int64_t *out);

/* Copies the counters into *out. */
void luar_lru_stats(const luar_lru_t *c, luar_lru_stats_t *out);

/*
 * Parses `s` (`len` bytes) as a canonical 64-bit integer (see the top). Returns 0, or
 * LUAR_EINVAL when it is not one.
 */
int luar_lru_parse_int(const char *s, size_t len, int64_t *out);

#endif
