/*
 * The in-process response cache of the outbound HTTP client (SPEC §4): a private client
 * cache, used only when a request asks for it. Entries are keyed on method + URL + the
 * request's values of the headers the response's Vary names; they keep status, headers,
 * body, stored_at, ttl and the validators (ETag, Last-Modified). The cache is an LRU bounded
 * by total bytes. Lookups answer fresh, stale (revalidate with If-None-Match /
 * If-Modified-Since) or miss; a 304 refreshes an entry; stale-if-error serves the last good
 * response when the upstream failed or its breaker is open. Counts each request in
 * luar_cache_requests_total{result} (hit, miss, revalidated, stale). No I/O, no clock (callers
 * pass `now` in seconds). Loop thread only.
 *
 * Cacheable: GET and HEAD answered 200, 203, 301 or 308, without Cache-Control: no-store in
 * the request or the response, without Vary: *, at most a quarter of the cache's size, with
 * at most LUAR_CACHE_MAX_HEADERS headers of LUAR_CACHE_MAX_HEADER_BYTES in all and a URL of
 * at most LUAR_CACHE_MAX_URL bytes. The ttl is the caller's (other Cache-Control directives
 * are not interpreted).
 */
#ifndef LUAR_CLIENT_CACHE_H
#define LUAR_CLIENT_CACHE_H

#include <stddef.h>
#include <stdint.h>

#define LUAR_CACHE_DEFAULT_MAX_BYTES ((size_t)32 * 1024 * 1024)
#define LUAR_CACHE_MAX_URL 8192
#define LUAR_CACHE_MAX_HEADERS 128
#define LUAR_CACHE_MAX_HEADER_BYTES 65536
#define LUAR_CACHE_MAX_VARY 16 /* header names in Vary; more is not cached */

/* Lookup results. */
enum {
    LUAR_CACHE_MISS = 0,
    LUAR_CACHE_FRESH = 1,
    LUAR_CACHE_STALE = 2,
};

/* A header, as given to the cache (the caller keeps the strings) or held by an entry. */
typedef struct luar_cache_header {
    const char *name;
    const char *value;
} luar_cache_header_t;

/*
 * A cached response. Callers read the public fields of entries they hold a reference to
 * (from luar_cache_lookup or luar_cache_stale_if_error) and never change them; the rest is
 * the cache's. The strings live as long as the entry.
 */
typedef struct luar_cache_entry {
    int status;
    const luar_cache_header_t *headers; /* as received, in order */
    size_t nheaders;
    const char *body; /* NUL-terminated for convenience; may contain NULs */
    size_t body_len;
    double stored_at;          /* when stored or last revalidated */
    double ttl;                /* fresh while now - stored_at < ttl */
    const char *etag;          /* the ETag value, or NULL: send as If-None-Match */
    const char *last_modified; /* the Last-Modified value, or NULL: send as If-Modified-Since */
    size_t size;               /* bytes charged to the cache */

    /* private */
    int refs;
    int in_cache;
    int pending; /* a stale lookup not yet resolved (for the metric) */
    uint64_t hash;
    const char *key;        /* "METHOD url" */
    const char *vary_names; /* lower-cased, comma-separated; "" when no Vary */
    const char *vary_sig;   /* the request's values of those headers */
    struct luar_cache_entry *chain, *newer, *older;
} luar_cache_entry_t;

typedef struct luar_cache luar_cache_t;

/*
 * Creates a cache holding at most `max_bytes` (0: the default 32 MiB). Returns NULL when out
 * of memory. Free with luar_cache_free().
 */
luar_cache_t *luar_cache_new(size_t max_bytes);

/*
 * Frees the cache. Entries still referenced by callers stay valid until released. NULL is a
 * no-op.
 */
void luar_cache_free(luar_cache_t *c);

/*
 * Looks up the response to `method` `url` with request headers `req` (n entries; names
 * compared case-insensitively; the caller keeps everything). Returns LUAR_CACHE_FRESH (counted
 * "hit"), LUAR_CACHE_STALE (counted later: see luar_cache_revalidated, luar_cache_store,
 * luar_cache_stale_if_error) or LUAR_CACHE_MISS (counted "miss"; methods other than GET and
 * HEAD miss uncounted); or LUAR_EINVAL. For fresh and stale, `*entry` holds a reference the
 * caller gives back with luar_cache_entry_release(); for a miss it is NULL.
 */
int luar_cache_lookup(luar_cache_t *c, const char *method, const char *url,
                      const luar_cache_header_t *req, size_t nreq, double now,
                      luar_cache_entry_t **entry);

/*
 * Offers a final response for the cache: `status`, `resp` headers (n entries), `body` of
 * `body_len` bytes, fresh for `ttl` seconds (>= 0; 0 = revalidate every time) from `now`.
 * Everything is copied; the caller keeps its pointers. A stored response replaces the entry
 * with the same key; a response with Cache-Control: no-store (or a request with it) removes
 * that entry; any other response leaves it (stale-if-error may still serve it). When that
 * entry was left stale by a lookup, counts "miss". Returns 1 (stored),
 * 0 (not cacheable, see the top of this file), LUAR_EINVAL or LUAR_ENOMEM.
 */
int luar_cache_store(luar_cache_t *c, const char *method, const char *url,
                     const luar_cache_header_t *req, size_t nreq, int status,
                     const luar_cache_header_t *resp, size_t nresp, const char *body,
                     size_t body_len, double ttl, double now);

/*
 * Records that `entry` (a reference from a stale lookup) was confirmed by a 304 at `now`: it
 * is fresh again for `new_ttl` seconds and becomes the most recently used. Counts
 * "revalidated". Headers of the 304 are not merged. The caller keeps its reference.
 */
void luar_cache_revalidated(luar_cache_t *c, luar_cache_entry_t *entry, double now, double new_ttl);

/*
 * After the upstream failed (transport error or 5xx) or its breaker refused: returns a
 * referenced entry for the request, fresh or stale by at most `max_stale` seconds past its
 * ttl (counted "stale"), or NULL (counted "miss" when a stale lookup is thereby resolved).
 * Release the entry with luar_cache_entry_release().
 */
luar_cache_entry_t *luar_cache_stale_if_error(luar_cache_t *c, const char *method, const char *url,
                                              const luar_cache_header_t *req, size_t nreq,
                                              double now, double max_stale);

/* Gives back a reference; frees the entry when it has left the cache and is unreferenced. */
void luar_cache_entry_release(luar_cache_entry_t *entry);

/*
 * Removes every GET and HEAD entry of `url` (all Vary variants), as a successful unsafe
 * request to it (POST, PUT, PATCH, DELETE) calls for. Returns the number removed.
 */
size_t luar_cache_invalidate(luar_cache_t *c, const char *url);

/* Bytes charged and entries held (tests, admin). */
size_t luar_cache_bytes(const luar_cache_t *c);
size_t luar_cache_count(const luar_cache_t *c);

/* Removes every entry (entries a caller still holds are freed at their release). */
void luar_cache_clear(luar_cache_t *c);

#endif
