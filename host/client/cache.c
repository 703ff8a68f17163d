/*
 * Response cache: a chained hash table on "METHOD url" (Vary variants share a chain and
 * are told apart by their signature), an LRU list for eviction by bytes, and reference
 * counts so an entry handed to a waiting request survives its eviction.
 */
#include "client/cache.h"

#include "common/buf.h"
#include "common/error.h"
#include "metrics/metrics.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define REQUESTS_METRIC "luar_cache_requests_total"
#define VARY_SIG_MAX 8192 /* request header bytes kept per entry for Vary matching */

/*
 * The cache: a chained hash table on the primary key (grown when entries outnumber buckets),
 * an LRU list newest first, and the bytes charged against max_bytes.
 */
struct luar_cache {
    luar_cache_entry_t **buckets;
    size_t nbuckets; /* a power of two */
    size_t count, bytes, max_bytes;
    luar_cache_entry_t *newest, *oldest;
};

static void count(const char *result)
{
    static const char *const labels[] = {"result"};
    luar_metric_t *m = luar_metrics_find(REQUESTS_METRIC);
    if (m == NULL &&
        luar_metrics_register(LUAR_METRIC_COUNTER, REQUESTS_METRIC,
                              "Outbound HTTP client cache lookups by result (hit, miss, "
                              "revalidated, stale).",
                              labels, 1, NULL, 0, &m, NULL) < 0)
        return;
    const char *values[] = {result};
    luar_metric_add(m, values, 1);
}

/* "GET" or "HEAD" (any case) as the canonical upper-case name, else NULL. */
static const char *cacheable_method(const char *method)
{
    if (method == NULL)
        return NULL;
    if (strcasecmp(method, "GET") == 0)
        return "GET";
    if (strcasecmp(method, "HEAD") == 0)
        return "HEAD";
    return NULL;
}

static uint64_t hash_key(const char *method, const char *url)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = method; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    h = (h ^ ' ') * 1099511628211ULL;
    for (const char *p = url; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return h;
}

static int key_eq(const char *key, const char *method, const char *url)
{
    size_t m = strlen(method);
    return strncmp(key, method, m) == 0 && key[m] == ' ' && strcmp(key + m + 1, url) == 0;
}

/* Finds the first value of header `name` (case-insensitive), or NULL. */
static const char *header_get(const luar_cache_header_t *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (h[i].name != NULL && strcasecmp(h[i].name, name) == 0)
            return h[i].value;
    return NULL;
}

/* Whether any `name` header lists the token `token` (comma-separated, case-insensitive). */
static int header_has_token(const luar_cache_header_t *h, size_t n, const char *name,
                            const char *token)
{
    size_t tlen = strlen(token);
    for (size_t i = 0; i < n; i++) {
        if (h[i].name == NULL || h[i].value == NULL || strcasecmp(h[i].name, name) != 0)
            continue;
        const char *p = h[i].value;
        while (*p) {
            while (*p == ' ' || *p == '\t' || *p == ',')
                p++;
            const char *start = p;
            while (*p && *p != ',' && *p != '=' && *p != ' ' && *p != '\t')
                p++;
            if ((size_t)(p - start) == tlen && strncasecmp(start, token, tlen) == 0)
                return 1;
            while (*p && *p != ',')
                p++;
        }
    }
    return 0;
}

/*
 * Builds the lower-cased, comma-separated list of the names in the response's Vary headers.
 * Returns 0, 1 for "Vary: *" or too many names (not cacheable), or LUAR_ENOMEM/ETOOBIG.
 */
static int vary_names(const luar_cache_header_t *h, size_t n, luar_buf_t *out)
{
    size_t names = 0;
    for (size_t i = 0; i < n; i++) {
        if (h[i].name == NULL || h[i].value == NULL || strcasecmp(h[i].name, "vary") != 0)
            continue;
        const char *p = h[i].value;
        while (*p) {
            while (*p == ' ' || *p == '\t' || *p == ',')
                p++;
            const char *start = p;
            while (*p && *p != ',' && *p != ' ' && *p != '\t')
                p++;
            if (p == start)
                continue;
            if (p - start == 1 && *start == '*')
                return 1;
            if (++names > LUAR_CACHE_MAX_VARY)
                return 1;
            if (out->len > 0 && luar_buf_putc(out, ',') < 0)
                return LUAR_ETOOBIG;
            for (const char *q = start; q < p; q++) {
                char ch = *q >= 'A' && *q <= 'Z' ? (char)(*q - 'A' + 'a') : *q;
                if (luar_buf_putc(out, ch) < 0)
                    return LUAR_ETOOBIG;
            }
        }
    }
    return 0;
}

/*
 * Writes the request's values of the headers in `names` (from vary_names) to `out`: for each
 * name, every value of it joined by ", " and then "\n", or "\x01\n" when absent. Returns 0 or
 * a luar_buf error (the signature is then unusable: treated as no match, not cached).
 */
static int vary_signature(const char *names, const luar_cache_header_t *req, size_t nreq,
                          luar_buf_t *out)
{
    const char *p = names;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        int found = 0;
        for (size_t i = 0; i < nreq; i++) {
            if (req[i].name == NULL || req[i].value == NULL || strlen(req[i].name) != len ||
                strncasecmp(req[i].name, p, len) != 0)
                continue;
            int rc = found ? luar_buf_puts(out, ", ") : 0;
            if (rc == 0)
                rc = luar_buf_puts(out, req[i].value);
            if (rc < 0)
                return rc;
            found = 1;
        }
        int rc = luar_buf_puts(out, found ? "\n" : "\x01\n");
        if (rc < 0)
            return rc;
        p += len;
        if (*p == ',')
            p++;
    }
    if (out->data == NULL)
        return luar_buf_puts(out, "");
    return 0;
}

/* Whether `e` answers this request: its Vary headers have the values it was stored with. */
static int variant_matches(const luar_cache_entry_t *e, const luar_cache_header_t *req, size_t nreq)
{
    if (e->vary_names[0] == '\0')
        return 1;
    luar_buf_t sig;
    luar_buf_init(&sig, VARY_SIG_MAX);
    int ok =
        vary_signature(e->vary_names, req, nreq, &sig) == 0 && strcmp(sig.data, e->vary_sig) == 0;
    luar_buf_free(&sig);
    return ok;
}

static luar_cache_entry_t *find(luar_cache_t *c, const char *method, const char *url,
                                const luar_cache_header_t *req, size_t nreq)
{
    uint64_t h = hash_key(method, url);
    for (luar_cache_entry_t *e = c->buckets[h & (c->nbuckets - 1)]; e != NULL; e = e->chain)
        if (e->hash == h && key_eq(e->key, method, url) && variant_matches(e, req, nreq))
            return e;
    return NULL;
}

static void lru_unlink(luar_cache_t *c, luar_cache_entry_t *e)
{
    if (e->newer != NULL)
        e->newer->older = e->older;
    else
        c->newest = e->older;
    if (e->older != NULL)
        e->older->newer = e->newer;
    else
        c->oldest = e->newer;
    e->newer = e->older = NULL;
}

static void lru_push(luar_cache_t *c, luar_cache_entry_t *e)
{
    e->older = c->newest;
    e->newer = NULL;
    if (c->newest != NULL)
        c->newest->newer = e;
    c->newest = e;
    if (c->oldest == NULL)
        c->oldest = e;
}

static void entry_free(luar_cache_entry_t *e)
{
    free((void *)e->headers);
    free((void *)e->key); /* the blob holding every string starts with the key */
    free(e);
}

/* Takes `e` out of the cache; frees it unless a caller still holds it. */
static void remove_entry(luar_cache_t *c, luar_cache_entry_t *e)
{
    luar_cache_entry_t **pp = &c->buckets[e->hash & (c->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->chain;
    *pp = e->chain;
    e->chain = NULL;
    lru_unlink(c, e);
    c->count--;
    c->bytes -= e->size;
    e->in_cache = 0;
    if (e->refs == 0)
        entry_free(e);
}

static void grow(luar_cache_t *c)
{
    size_t n = c->nbuckets * 2;
    luar_cache_entry_t **b = calloc(n, sizeof *b);
    if (b == NULL)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < c->nbuckets; i++) {
        luar_cache_entry_t *e = c->buckets[i];
        while (e != NULL) {
            luar_cache_entry_t *next = e->chain;
            e->chain = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(c->buckets);
    c->buckets = b;
    c->nbuckets = n;
}

luar_cache_t *luar_cache_new(size_t max_bytes)
{
    luar_cache_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->nbuckets = 64;
    c->buckets = calloc(c->nbuckets, sizeof *c->buckets);
    if (c->buckets == NULL) {
        free(c);
        return NULL;
    }
    c->max_bytes = max_bytes != 0 ? max_bytes : LUAR_CACHE_DEFAULT_MAX_BYTES;
    return c;
}

void luar_cache_free(luar_cache_t *c)
{
    if (c == NULL)
        return;
    while (c->oldest != NULL)
        remove_entry(c, c->oldest);
    free(c->buckets);
    free(c);
}

int luar_cache_lookup(luar_cache_t *c, const char *method, const char *url,
                      const luar_cache_header_t *req, size_t nreq, double now,
                      luar_cache_entry_t **entry)
{
    *entry = NULL;
    if (c == NULL || url == NULL || (req == NULL && nreq > 0))
        return LUAR_EINVAL;
    const char *m = cacheable_method(method);
    if (m == NULL)
        return LUAR_CACHE_MISS;
    luar_cache_entry_t *e = find(c, m, url, req, nreq);
    if (e == NULL) {
        count("miss");
        return LUAR_CACHE_MISS;
    }
    lru_unlink(c, e);
    lru_push(c, e);
    e->refs++;
    *entry = e;
    if (now - e->stored_at < e->ttl) {
        count("hit");
        return LUAR_CACHE_FRESH;
    }
    e->pending = 1;
    return LUAR_CACHE_STALE;
}

/* Copies `s` into the blob at *at and returns the copy. */
static const char *blob_put(char **at, const char *s, size_t len)
{
    char *dst = *at;
    memcpy(dst, s, len);
    dst[len] = '\0';
    *at += len + 1;
    return dst;
}

static int status_cacheable(int status)
{
    return status == 200 || status == 203 || status == 301 || status == 308;
}

int luar_cache_store(luar_cache_t *c, const char *method, const char *url,
                     const luar_cache_header_t *req, size_t nreq, int status,
                     const luar_cache_header_t *resp, size_t nresp, const char *body,
                     size_t body_len, double ttl, double now)
{
    if (c == NULL || url == NULL || (req == NULL && nreq > 0) || (resp == NULL && nresp > 0) ||
        (body == NULL && body_len > 0) || !(ttl >= 0))
        return LUAR_EINVAL;
    const char *m = cacheable_method(method);
    if (m == NULL)
        return 0;
    size_t url_len = strnlen(url, LUAR_CACHE_MAX_URL + 1);
    if (url_len > LUAR_CACHE_MAX_URL)
        return 0;

    /*
     * The entry that answered this request: its stale lookup is resolved (a miss) now. It is
     * removed by no-store and replaced by a cacheable answer; other answers (a 500, a 404)
     * leave it in place so stale-if-error can still serve it.
     */
    luar_cache_entry_t *old = find(c, m, url, req, nreq);
    if (old != NULL && old->pending) {
        old->pending = 0;
        count("miss");
    }
    if (header_has_token(resp, nresp, "cache-control", "no-store") ||
        header_has_token(req, nreq, "cache-control", "no-store")) {
        if (old != NULL)
            remove_entry(c, old);
        return 0;
    }
    if (!status_cacheable(status) || nresp > LUAR_CACHE_MAX_HEADERS)
        return 0;

    luar_buf_t names, sig;
    luar_buf_init(&names, VARY_SIG_MAX);
    luar_buf_init(&sig, VARY_SIG_MAX);
    int rc = vary_names(resp, nresp, &names);
    if (rc == 0 && names.data == NULL)
        rc = luar_buf_puts(&names, "");
    if (rc == 0)
        rc = vary_signature(names.data, req, nreq, &sig);
    if (rc != 0) {
        luar_buf_free(&names);
        luar_buf_free(&sig);
        return rc == LUAR_ENOMEM ? LUAR_ENOMEM : 0;
    }

    size_t header_bytes = 0;
    for (size_t i = 0; i < nresp; i++) {
        if (resp[i].name == NULL || resp[i].value == NULL) {
            rc = LUAR_EINVAL;
            break;
        }
        header_bytes += strnlen(resp[i].name, LUAR_CACHE_MAX_HEADER_BYTES + 1) + 1 +
                        strnlen(resp[i].value, LUAR_CACHE_MAX_HEADER_BYTES + 1) + 1;
        if (header_bytes > LUAR_CACHE_MAX_HEADER_BYTES) {
            rc = 1;
            break;
        }
    }
    size_t key_len = strlen(m) + 1 + url_len;
    size_t blob_len = key_len + 1 + names.len + 1 + sig.len + 1 + header_bytes + body_len + 1;
    size_t size = sizeof(luar_cache_entry_t) + nresp * sizeof(luar_cache_header_t) + blob_len;
    if (rc == 0 && (body_len > c->max_bytes || size > c->max_bytes / 4))
        rc = 1;
    if (rc != 0) {
        luar_buf_free(&names);
        luar_buf_free(&sig);
        return rc == 1 ? 0 : rc;
    }

    luar_cache_entry_t *e = calloc(1, sizeof *e);
    char *blob = malloc(blob_len);
    luar_cache_header_t *headers = nresp > 0 ? malloc(nresp * sizeof *headers) : NULL;
    if (e == NULL || blob == NULL || (nresp > 0 && headers == NULL)) {
        free(e);
        free(blob);
        free(headers);
        luar_buf_free(&names);
        luar_buf_free(&sig);
        return LUAR_ENOMEM;
    }
    char *at = blob;
    char *key = at;
    memcpy(key, m, strlen(m));
    key[strlen(m)] = ' ';
    memcpy(key + strlen(m) + 1, url, url_len);
    key[key_len] = '\0';
    at += key_len + 1;
    e->key = key;
    e->vary_names = blob_put(&at, names.data, names.len);
    e->vary_sig = blob_put(&at, sig.data, sig.len);
    luar_buf_free(&names);
    luar_buf_free(&sig);
    for (size_t i = 0; i < nresp; i++) {
        headers[i].name = blob_put(&at, resp[i].name, strlen(resp[i].name));
        headers[i].value = blob_put(&at, resp[i].value, strlen(resp[i].value));
    }
    e->body = blob_put(&at, body_len > 0 ? body : "", body_len);
    e->body_len = body_len;
    e->headers = headers;
    e->nheaders = nresp;
    e->etag = header_get(headers, nresp, "etag");
    e->last_modified = header_get(headers, nresp, "last-modified");
    e->status = status;
    e->stored_at = now;
    e->ttl = ttl;
    e->size = size;
    e->hash = hash_key(m, url);
    e->in_cache = 1;

    if (old != NULL)
        remove_entry(c, old);
    while (c->bytes + size > c->max_bytes && c->oldest != NULL)
        remove_entry(c, c->oldest);
    if (c->count >= c->nbuckets)
        grow(c);
    e->chain = c->buckets[e->hash & (c->nbuckets - 1)];
    c->buckets[e->hash & (c->nbuckets - 1)] = e;
    lru_push(c, e);
    c->count++;
    c->bytes += size;
    return 1;
}

void luar_cache_revalidated(luar_cache_t *c, luar_cache_entry_t *entry, double now, double new_ttl)
{
    if (entry == NULL)
        return;
    entry->stored_at = now;
    entry->ttl = new_ttl >= 0 ? new_ttl : 0;
    entry->pending = 0;
    if (c != NULL && entry->in_cache) {
        lru_unlink(c, entry);
        lru_push(c, entry);
    }
    count("revalidated");
}

luar_cache_entry_t *luar_cache_stale_if_error(luar_cache_t *c, const char *method, const char *url,
                                              const luar_cache_header_t *req, size_t nreq,
                                              double now, double max_stale)
{
    const char *m = cacheable_method(method);
    if (c == NULL || m == NULL || url == NULL || (req == NULL && nreq > 0))
        return NULL;
    luar_cache_entry_t *e = find(c, m, url, req, nreq);
    if (e == NULL)
        return NULL;
    int pending = e->pending;
    e->pending = 0;
    if (now - e->stored_at - e->ttl > max_stale) {
        if (pending)
            count("miss");
        return NULL;
    }
    e->refs++;
    count("stale");
    return e;
}

void luar_cache_entry_release(luar_cache_entry_t *entry)
{
    if (entry == NULL || entry->refs <= 0)
        return;
    entry->refs--;
    if (entry->refs == 0 && !entry->in_cache)
        entry_free(entry);
}

size_t luar_cache_invalidate(luar_cache_t *c, const char *url)
{
    if (c == NULL || url == NULL)
        return 0;
    size_t removed = 0;
    static const char *const methods[] = {"GET", "HEAD"};
    for (size_t i = 0; i < 2; i++) {
        uint64_t h = hash_key(methods[i], url);
        luar_cache_entry_t *e = c->buckets[h & (c->nbuckets - 1)];
        while (e != NULL) {
            luar_cache_entry_t *next = e->chain;
            if (e->hash == h && key_eq(e->key, methods[i], url)) {
                remove_entry(c, e);
                removed++;
            }
            e = next;
        }
    }
    return removed;
}

void luar_cache_clear(luar_cache_t *c)
{
    while (c != NULL && c->count > 0) {
        luar_cache_entry_t *e = NULL;
        for (size_t i = 0; i < c->nbuckets && e == NULL; i++)
            e = c->buckets[i];
        if (e == NULL)
            break;
        remove_entry(c, e);
    }
}

size_t luar_cache_bytes(const luar_cache_t *c)
{
    return c != NULL ? c->bytes : 0;
}

size_t luar_cache_count(const luar_cache_t *c)
{
    return c != NULL ? c->count : 0;
}
