/*
 * The byte-bounded LRU store of luar.cache (lru.h): a chained hash table on the key, grown
 * when entries outnumber buckets, and a doubly linked list newest first. Each entry is one
 * allocation holding its key and value. The hash is FNV-1a from a random offset chosen per
 * store, so keys taken from requests cannot be chosen to share one chain.
 */
#include "cache/lru.h"
#include "common/error.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define FIRST_BUCKETS 64

typedef struct entry {
    struct entry *chain;         /* the bucket's next entry */
    struct entry *newer, *older; /* the LRU list */
    uint64_t hash;
    double expires_at; /* 0: never */
    size_t klen, vlen;
    char data[]; /* key, value, NUL */
} entry_t;

struct luar_lru {
    entry_t **buckets;
    size_t nbuckets; /* a power of two */
    entry_t *newest, *oldest;
    uint64_t seed;
    luar_lru_stats_t stats;
};

size_t luar_lru_entry_size(size_t klen, size_t vlen)
{
    return sizeof(entry_t) + klen + vlen + 1;
}

static uint64_t hash_key(const luar_lru_t *c, const char *key, size_t klen)
{
    uint64_t h = c->seed;
    for (size_t i = 0; i < klen; i++)
        h = (h ^ (unsigned char)key[i]) * 1099511628211ULL;
    return h;
}

static const char *value_of(const entry_t *e)
{
    return e->data + e->klen;
}

static int expired(const entry_t *e, double now)
{
    return e->expires_at > 0 && now >= e->expires_at;
}

luar_lru_t *luar_lru_new(size_t max_bytes)
{
    luar_lru_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->buckets = calloc(FIRST_BUCKETS, sizeof *c->buckets);
    if (c->buckets == NULL) {
        free(c);
        return NULL;
    }
    c->nbuckets = FIRST_BUCKETS;
    c->stats.max_bytes = max_bytes;
    if (getrandom(&c->seed, sizeof c->seed, 0) != (ssize_t)sizeof c->seed)
        c->seed = (uint64_t)(uintptr_t)c ^ 0x9e3779b97f4a7c15ULL;
    c->seed ^= 1469598103934665603ULL;
    return c;
}

void luar_lru_free(luar_lru_t *c)
{
    if (c == NULL)
        return;
    entry_t *e = c->newest;
    while (e) {
        entry_t *next = e->older;
        free(e);
        e = next;
    }
    free(c->buckets);
    free(c);
}

/* The slot pointing at the entry for `key`, or at the NULL ending its chain. */
static entry_t **find_slot(luar_lru_t *c, const char *key, size_t klen, uint64_t h)
{
    entry_t **pp = &c->buckets[h & (c->nbuckets - 1)];
    while (*pp) {
        entry_t *e = *pp;
        if (e->hash == h && e->klen == klen && memcmp(e->data, key, klen) == 0)
            break;
        pp = &e->chain;
    }
    return pp;
}

static void list_unlink(luar_lru_t *c, entry_t *e)
{
    if (e->newer)
        e->newer->older = e->older;
    else
        c->newest = e->older;
    if (e->older)
        e->older->newer = e->newer;
    else
        c->oldest = e->newer;
    e->newer = e->older = NULL;
}

static void list_push(luar_lru_t *c, entry_t *e)
{
    e->newer = NULL;
    e->older = c->newest;
    if (c->newest)
        c->newest->newer = e;
    c->newest = e;
    if (c->oldest == NULL)
        c->oldest = e;
}

/* Unlinks and frees the entry at `slot`. */
static void remove_at(luar_lru_t *c, entry_t **slot)
{
    entry_t *e = *slot;
    *slot = e->chain;
    list_unlink(c, e);
    c->stats.bytes -= luar_lru_entry_size(e->klen, e->vlen);
    c->stats.entries--;
    free(e);
}

static void remove_entry(luar_lru_t *c, entry_t *e)
{
    remove_at(c, find_slot(c, e->data, e->klen, e->hash));
}

/* Evicts from the old end until `room` more bytes fit. */
static void make_room(luar_lru_t *c, size_t room)
{
    while (c->oldest && c->stats.bytes + room > c->stats.max_bytes) {
        remove_entry(c, c->oldest);
        c->stats.evictions++;
    }
}

void luar_lru_set_max_bytes(luar_lru_t *c, size_t max_bytes)
{
    c->stats.max_bytes = max_bytes;
    make_room(c, 0);
}

/* Doubles the bucket array when entries outnumber buckets; keeps the old one on failure. */
static void grow(luar_lru_t *c)
{
    if (c->stats.entries < c->nbuckets)
        return;
    size_t n = c->nbuckets * 2;
    entry_t **b = calloc(n, sizeof *b);
    if (b == NULL)
        return;
    for (size_t i = 0; i < c->nbuckets; i++) {
        entry_t *e = c->buckets[i];
        while (e) {
            entry_t *next = e->chain;
            e->chain = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(c->buckets);
    c->buckets = b;
    c->nbuckets = n;
}

int luar_lru_get(luar_lru_t *c, const char *key, size_t klen, double now, const char **value,
                 size_t *vlen)
{
    entry_t **slot = find_slot(c, key, klen, hash_key(c, key, klen));
    entry_t *e = *slot;
    if (e == NULL)
        return 0;
    if (expired(e, now)) {
        remove_at(c, slot);
        c->stats.expired++;
        return 0;
    }
    list_unlink(c, e);
    list_push(c, e);
    *value = value_of(e);
    *vlen = e->vlen;
    return 1;
}

int luar_lru_set(luar_lru_t *c, const char *key, size_t klen, const char *value, size_t vlen,
                 double expires_at)
{
    uint64_t h = hash_key(c, key, klen);
    entry_t **slot = find_slot(c, key, klen, h);
    if (*slot)
        remove_at(c, slot);
    size_t size = luar_lru_entry_size(klen, vlen);
    if (size > c->stats.max_bytes)
        return LUAR_ETOOBIG;
    entry_t *e = malloc(size);
    if (e == NULL)
        return LUAR_ENOMEM;
    e->hash = h;
    e->expires_at = expires_at > 0 ? expires_at : 0;
    e->klen = klen;
    e->vlen = vlen;
    memcpy(e->data, key, klen);
    if (vlen)
        memcpy(e->data + klen, value, vlen);
    e->data[klen + vlen] = '\0';
    make_room(c, size);
    grow(c);
    slot = &c->buckets[h & (c->nbuckets - 1)];
    e->chain = *slot;
    *slot = e;
    list_push(c, e);
    c->stats.bytes += size;
    c->stats.entries++;
    return 0;
}

int luar_lru_delete(luar_lru_t *c, const char *key, size_t klen)
{
    entry_t **slot = find_slot(c, key, klen, hash_key(c, key, klen));
    if (*slot == NULL)
        return 0;
    remove_at(c, slot);
    return 1;
}

int luar_lru_parse_int(const char *s, size_t len, int64_t *out)
{
    size_t i = 0;
    int neg = 0;
    if (len > 0 && s[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (i == len || len > 20)
        return LUAR_EINVAL;
    if (s[i] == '0' && (len - i > 1 || neg)) /* "0" only: no "-0", no "007" */
        return LUAR_EINVAL;
    uint64_t v = 0;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return LUAR_EINVAL;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return LUAR_EINVAL;
        v = v * 10 + d;
    }
    if (neg ? v > (uint64_t)INT64_MAX + 1 : v > (uint64_t)INT64_MAX)
        return LUAR_EINVAL;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

int luar_lru_incr(luar_lru_t *c, const char *key, size_t klen, int64_t delta, double expires_at,
                  double now, int64_t *out)
{
    entry_t **slot = find_slot(c, key, klen, hash_key(c, key, klen));
    int64_t v = 0;
    if (*slot && expired(*slot, now)) {
        remove_at(c, slot);
        c->stats.expired++;
    } else if (*slot) {
        if (luar_lru_parse_int(value_of(*slot), (*slot)->vlen, &v))
            return LUAR_EINVAL;
        expires_at = (*slot)->expires_at;
    }
    if ((delta > 0 && v > INT64_MAX - delta) || (delta < 0 && v < INT64_MIN - delta))
        return LUAR_EINVAL;
    v += delta;
    char text[24];
    int n = snprintf(text, sizeof text, "%" PRId64, v);
    *out = v;
    return luar_lru_set(c, key, klen, text, (size_t)n, expires_at);
}

void luar_lru_stats(const luar_lru_t *c, luar_lru_stats_t *out)
{
    *out = c->stats;
}
