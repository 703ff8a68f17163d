/*
 * Circuit breakers per host: a chained hash table of fixed size with an LRU list, so the
 * number of hosts tracked stays bounded however many hosts scripts call.
 */
#include "client/breaker.h"

#include "common/error.h"
#include "metrics/metrics.h"

#include <stdlib.h>
#include <string.h>

#define STATE_METRIC "luar_circuit_state"

/* One host's breaker: its state, failure count, probe in flight and settings. */
typedef struct breaker {
    char *host; /* lower-cased copy, the key */
    uint64_t hash;
    int state;
    int consecutive; /* failures in a row while closed */
    double opened_at;
    uint64_t probe; /* token of the probe in flight; 0 when none */
    double probe_started;
    luar_breaker_settings_t settings;
    struct breaker *chain;         /* next in the bucket */
    struct breaker *newer, *older; /* LRU list */
} breaker_t;

/*
 * The registry: a fixed-size chained hash table (sized for max_hosts) and an LRU list,
 * newest first, from which eviction takes the oldest closed breaker.
 */
struct luar_breaker_registry {
    breaker_t **buckets;
    size_t nbuckets; /* a power of two */
    size_t count, max_hosts;
    breaker_t *newest, *oldest;
    uint64_t next_token;
};

void luar_breaker_settings_init(luar_breaker_settings_t *s)
{
    s->failures = LUAR_BREAKER_DEFAULT_FAILURES;
    s->reset = LUAR_BREAKER_DEFAULT_RESET;
    s->probe_timeout = LUAR_BREAKER_DEFAULT_PROBE_TIMEOUT;
}

/* The gauge, looked up each time so a metrics reset (tests, reload) never leaves it dangling. */
static void set_gauge(const char *host, int state)
{
    static const char *const labels[] = {"host"};
    luar_metric_t *m = luar_metrics_find(STATE_METRIC);
    if (m == NULL &&
        luar_metrics_register(LUAR_METRIC_GAUGE, STATE_METRIC,
                              "Circuit breaker state per host (0 closed, 1 half-open, 2 open).",
                              labels, 1, NULL, 0, &m, NULL) < 0)
        return;
    const char *values[] = {host};
    luar_metric_set(m, values, state);
}

static void set_state(breaker_t *b, int state)
{
    if (b->state == state)
        return;
    b->state = state;
    set_gauge(b->host, state);
}

/* FNV-1a over the lower-cased host. */
static uint64_t hash_host(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 'A' && ch <= 'Z')
            ch = (unsigned char)(ch - 'A' + 'a');
        h = (h ^ ch) * 1099511628211ULL;
    }
    return h;
}

static int host_eq(const char *key, const char *host, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)host[i];
        if (ch >= 'A' && ch <= 'Z')
            ch = (unsigned char)(ch - 'A' + 'a');
        if ((unsigned char)key[i] != ch)
            return 0;
    }
    return key[len] == '\0';
}

/* Checks the host and returns its length, or 0 when empty or longer than the cap. */
static size_t host_len(const char *host)
{
    if (host == NULL)
        return 0;
    size_t len = strnlen(host, LUAR_BREAKER_HOST_MAX + 1);
    return len > LUAR_BREAKER_HOST_MAX ? 0 : len;
}

static breaker_t *find(const luar_breaker_registry_t *reg, const char *host, size_t len, uint64_t h)
{
    for (breaker_t *b = reg->buckets[h & (reg->nbuckets - 1)]; b != NULL; b = b->chain)
        if (b->hash == h && host_eq(b->host, host, len))
            return b;
    return NULL;
}

static void lru_unlink(luar_breaker_registry_t *reg, breaker_t *b)
{
    if (b->newer != NULL)
        b->newer->older = b->older;
    else
        reg->newest = b->older;
    if (b->older != NULL)
        b->older->newer = b->newer;
    else
        reg->oldest = b->newer;
    b->newer = b->older = NULL;
}

static void lru_push(luar_breaker_registry_t *reg, breaker_t *b)
{
    b->older = reg->newest;
    b->newer = NULL;
    if (reg->newest != NULL)
        reg->newest->newer = b;
    reg->newest = b;
    if (reg->oldest == NULL)
        reg->oldest = b;
}

static void remove_breaker(luar_breaker_registry_t *reg, breaker_t *b)
{
    breaker_t **pp = &reg->buckets[b->hash & (reg->nbuckets - 1)];
    while (*pp != b)
        pp = &(*pp)->chain;
    *pp = b->chain;
    lru_unlink(reg, b);
    reg->count--;
    free(b->host);
    free(b);
}

luar_breaker_registry_t *luar_breaker_registry_new(size_t max_hosts)
{
    if (max_hosts == 0)
        max_hosts = LUAR_BREAKER_DEFAULT_MAX_HOSTS;
    luar_breaker_registry_t *reg = calloc(1, sizeof *reg);
    if (reg == NULL)
        return NULL;
    size_t n = 16;
    while (n < max_hosts && n < ((size_t)1 << 20))
        n <<= 1;
    reg->buckets = calloc(n, sizeof *reg->buckets);
    if (reg->buckets == NULL) {
        free(reg);
        return NULL;
    }
    reg->nbuckets = n;
    reg->max_hosts = max_hosts;
    reg->next_token = 1;
    return reg;
}

void luar_breaker_registry_free(luar_breaker_registry_t *reg)
{
    if (reg == NULL)
        return;
    while (reg->oldest != NULL)
        remove_breaker(reg, reg->oldest);
    free(reg->buckets);
    free(reg);
}

/* Forgets the least recently used closed breaker. Returns 0, or -1 when none is closed. */
static int evict_one(luar_breaker_registry_t *reg)
{
    for (breaker_t *b = reg->oldest; b != NULL; b = b->newer) {
        if (b->state == LUAR_BREAKER_CLOSED) {
            remove_breaker(reg, b);
            return 0;
        }
    }
    return -1;
}

static int settings_valid(const luar_breaker_settings_t *s)
{
    return s->failures >= 1 && s->reset > 0 && s->probe_timeout > 0;
}

int luar_breaker_allow(luar_breaker_registry_t *reg, const char *host,
                       const luar_breaker_settings_t *settings, double now, uint64_t *token)
{
    luar_breaker_settings_t defaults;
    if (settings == NULL) {
        luar_breaker_settings_init(&defaults);
        settings = &defaults;
    }
    size_t len = host_len(host);
    if (reg == NULL || len == 0 || !settings_valid(settings))
        return LUAR_EINVAL;
    *token = 0;
    uint64_t h = hash_host(host, len);
    breaker_t *b = find(reg, host, len, h);
    if (b == NULL) {
        if (reg->count >= reg->max_hosts && evict_one(reg) < 0)
            return LUAR_ETOOBIG;
        b = calloc(1, sizeof *b);
        if (b == NULL)
            return LUAR_ENOMEM;
        b->host = malloc(len + 1);
        if (b->host == NULL) {
            free(b);
            return LUAR_ENOMEM;
        }
        for (size_t i = 0; i < len; i++) {
            char ch = host[i];
            b->host[i] = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
        }
        b->host[len] = '\0';
        b->hash = h;
        b->chain = reg->buckets[h & (reg->nbuckets - 1)];
        reg->buckets[h & (reg->nbuckets - 1)] = b;
        reg->count++;
        lru_push(reg, b);
        set_gauge(b->host, LUAR_BREAKER_CLOSED);
    } else {
        lru_unlink(reg, b);
        lru_push(reg, b);
    }
    b->settings = *settings;

    switch (b->state) {
    case LUAR_BREAKER_CLOSED:
        return 1;
    case LUAR_BREAKER_OPEN:
        if (now - b->opened_at < b->settings.reset)
            return 0;
        set_state(b, LUAR_BREAKER_HALF_OPEN);
        b->probe = 0;
        break;
    default:
        break;
    }
    /* half-open: one probe at a time; a probe silent past its timeout is presumed lost */
    if (b->probe != 0 && now - b->probe_started < b->settings.probe_timeout)
        return 0;
    b->probe = reg->next_token++;
    b->probe_started = now;
    *token = b->probe;
    return 1;
}

int luar_breaker_report(luar_breaker_registry_t *reg, const char *host, uint64_t token, int outcome,
                        double now)
{
    size_t len = host_len(host);
    if (reg == NULL || len == 0)
        return LUAR_BREAKER_CLOSED;
    breaker_t *b = find(reg, host, len, hash_host(host, len));
    if (b == NULL)
        return LUAR_BREAKER_CLOSED;
    if (b->state == LUAR_BREAKER_CLOSED) {
        if (outcome == LUAR_BREAKER_SUCCESS) {
            b->consecutive = 0;
        } else if (outcome == LUAR_BREAKER_FAILURE) {
            b->consecutive++;
            if (b->consecutive >= b->settings.failures) {
                b->opened_at = now;
                b->consecutive = 0;
                set_state(b, LUAR_BREAKER_OPEN);
            }
        }
        return b->state;
    }
    if (b->state != LUAR_BREAKER_HALF_OPEN || token == 0 || token != b->probe)
        return b->state;
    b->probe = 0;
    if (outcome == LUAR_BREAKER_SUCCESS) {
        b->consecutive = 0;
        set_state(b, LUAR_BREAKER_CLOSED);
    } else if (outcome == LUAR_BREAKER_FAILURE) {
        b->opened_at = now;
        set_state(b, LUAR_BREAKER_OPEN);
    }
    return b->state;
}

int luar_breaker_outcome(int status_or_0, const char *error_kind_or_NULL)
{
    if (status_or_0 >= 500)
        return LUAR_BREAKER_FAILURE;
    if (status_or_0 > 0)
        return LUAR_BREAKER_SUCCESS;
    if (error_kind_or_NULL != NULL &&
        (strcmp(error_kind_or_NULL, "connect") == 0 || strcmp(error_kind_or_NULL, "timeout") == 0))
        return LUAR_BREAKER_FAILURE;
    return LUAR_BREAKER_NEUTRAL;
}

int luar_breaker_state(const luar_breaker_registry_t *reg, const char *host)
{
    size_t len = host_len(host);
    if (reg == NULL || len == 0)
        return LUAR_BREAKER_CLOSED;
    const breaker_t *b = find(reg, host, len, hash_host(host, len));
    return b != NULL ? b->state : LUAR_BREAKER_CLOSED;
}

double luar_breaker_retry_in(const luar_breaker_registry_t *reg, const char *host, double now)
{
    size_t len = host_len(host);
    if (reg == NULL || len == 0)
        return 0;
    const breaker_t *b = find(reg, host, len, hash_host(host, len));
    if (b == NULL || b->state == LUAR_BREAKER_CLOSED)
        return 0;
    if (b->state == LUAR_BREAKER_HALF_OPEN)
        return b->probe != 0 ? b->settings.reset : 0;
    double left = b->opened_at + b->settings.reset - now;
    return left > 0 ? left : 0;
}

size_t luar_breaker_count(const luar_breaker_registry_t *reg)
{
    return reg != NULL ? reg->count : 0;
}

void luar_breaker_registry_reset(luar_breaker_registry_t *reg)
{
    if (reg == NULL)
        return;
    for (breaker_t *b = reg->newest; b != NULL; b = b->older) {
        b->consecutive = 0;
        b->probe = 0;
        if (b->state != LUAR_BREAKER_CLOSED)
            set_state(b, LUAR_BREAKER_CLOSED);
    }
}
