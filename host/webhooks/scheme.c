/*
 * The webhook scheme registry and the verifier around a configured scheme (scheme.h).
 *
 * The registry is a fixed array of pointers to schemes in static storage: registration
 * happens at start-up (the host's schemes on first use, then the plugins'), lookups are
 * read-only afterwards, and nothing is allocated, so there is nothing to free at exit.
 * A plugin's schemes leave the registry after its fini (luar_webhook_scheme_unregister).
 * Each forked worker has its own copy, filled the same way.
 */
#include "webhooks/scheme.h"
#include "common/error.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const luar_webhook_scheme_t *registry[LUAR_WEBHOOK_MAX_SCHEMES];
static size_t registry_len;
static pthread_once_t builtins_once = PTHREAD_ONCE_INIT;

static const luar_webhook_scheme_t *find(const char *name)
{
    for (size_t i = 0; i < registry_len; i++) {
        if (strcmp(registry[i]->name, name) == 0)
            return registry[i];
    }
    return NULL;
}

static int add(const luar_webhook_scheme_t *scheme)
{
    if (scheme == NULL || scheme->name == NULL || scheme->name[0] == '\0' ||
        scheme->configure == NULL || scheme->verify == NULL || scheme->events == NULL)
        return LUAR_EINVAL;
    if (find(scheme->name))
        return LUAR_EEXISTS;
    if (registry_len == LUAR_WEBHOOK_MAX_SCHEMES)
        return LUAR_ENOMEM;
    registry[registry_len++] = scheme;
    return 0;
}

static void register_builtins(void)
{
    add(&luar_webhook_scheme_standard);
    add(&luar_webhook_scheme_hmac);
}

int luar_webhook_scheme_register(const luar_webhook_scheme_t *scheme)
{
    pthread_once(&builtins_once, register_builtins);
    return add(scheme);
}

int luar_webhook_scheme_unregister(const luar_webhook_scheme_t *scheme)
{
    pthread_once(&builtins_once, register_builtins);
    if (scheme == &luar_webhook_scheme_standard || scheme == &luar_webhook_scheme_hmac)
        return LUAR_EINVAL;
    for (size_t i = 0; i < registry_len; i++) {
        if (registry[i] == scheme) {
            /* Keep the order: listings show schemes as they were registered. */
            memmove(&registry[i], &registry[i + 1],
                    (registry_len - i - 1) * sizeof registry[0]);
            registry_len--;
            return 0;
        }
    }
    return LUAR_ENOTFOUND;
}

const luar_webhook_scheme_t *luar_webhook_scheme_find(const char *name)
{
    pthread_once(&builtins_once, register_builtins);
    return name ? find(name) : NULL;
}

size_t luar_webhook_scheme_count(void)
{
    pthread_once(&builtins_once, register_builtins);
    return registry_len;
}

const luar_webhook_scheme_t *luar_webhook_scheme_at(size_t i)
{
    pthread_once(&builtins_once, register_builtins);
    return i < registry_len ? registry[i] : NULL;
}

int luar_webhook_scheme_list(luar_buf_t *out)
{
    int rc = 0;
    size_t n = luar_webhook_scheme_count();
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = luar_buf_appendf(out, "%s%s", i ? ", " : "", registry[i]->name);
    return rc;
}

int luar_webhook_verifier_init(luar_webhook_verifier_t *v, const char *name,
                               const char *const *secrets, const size_t *secret_lens,
                               size_t nsecrets, const luar_webhook_opt_t *opts, size_t nopts,
                               double tolerance, luar_buf_t *err)
{
    memset(v, 0, sizeof *v);
    const luar_webhook_scheme_t *scheme = luar_webhook_scheme_find(name);
    if (scheme == NULL) {
        luar_buf_appendf(err, "unknown webhook scheme \"%s\" (known: ", name ? name : "");
        luar_webhook_scheme_list(err);
        luar_buf_puts(err, ")");
        return LUAR_ENOTFOUND;
    }
    if (nsecrets == 0) {
        luar_buf_appendf(err, "scheme %s: no secret given", scheme->name);
        return LUAR_EINVAL;
    }
    if (nsecrets > LUAR_WEBHOOK_MAX_SECRETS) {
        luar_buf_appendf(err, "scheme %s: %zu secrets given, at most %d may be active",
                         scheme->name, nsecrets, LUAR_WEBHOOK_MAX_SECRETS);
        return LUAR_EINVAL;
    }
    if (!(tolerance >= 0) || isinf(tolerance)) {
        luar_buf_appendf(err, "scheme %s: tolerance must be a number of seconds >= 0",
                         scheme->name);
        return LUAR_EINVAL;
    }
    size_t lens[LUAR_WEBHOOK_MAX_SECRETS];
    for (size_t i = 0; i < nsecrets; i++) {
        if (secrets[i] == NULL) {
            luar_buf_appendf(err, "scheme %s: secret %zu is missing", scheme->name, i + 1);
            return LUAR_EINVAL;
        }
        lens[i] = secret_lens ? secret_lens[i] : strlen(secrets[i]);
    }
    void *cfg = NULL;
    int rc = scheme->configure(secrets, lens, nsecrets, opts, nopts, &cfg, err);
    if (rc)
        return rc;
    v->scheme = scheme;
    v->cfg = cfg;
    v->tolerance = tolerance;
    return 0;
}

void luar_webhook_verifier_free(luar_webhook_verifier_t *v)
{
    if (v->scheme && v->scheme->free_cfg && v->cfg)
        v->scheme->free_cfg(v->cfg);
    v->cfg = NULL;
    v->scheme = NULL;
}

luar_webhook_verdict_t luar_webhook_verify(const luar_webhook_verifier_t *v,
                                           const luar_webhook_msg_t *msg, double now,
                                           luar_buf_t *why)
{
    double tolerance = v->tolerance > 0 ? v->tolerance : LUAR_WEBHOOK_DEFAULT_TOLERANCE;
    return v->scheme->verify(v->cfg, msg, tolerance, now, why);
}

int luar_webhook_events(const luar_webhook_verifier_t *v, const luar_webhook_msg_t *msg,
                        luar_webhook_event_t *out, size_t max, size_t *n, luar_buf_t *scratch,
                        luar_buf_t *why)
{
    *n = 0;
    return v->scheme->events(v->cfg, msg, out, max, n, scratch, why);
}

int luar_webhook_sign(const luar_webhook_verifier_t *v, const char *id, double timestamp,
                      const char *body, size_t body_len, luar_buf_t *out, luar_buf_t *err)
{
    if (v->scheme->sign == NULL) {
        luar_buf_appendf(err, "scheme %s cannot sign", v->scheme->name);
        return LUAR_EINVAL;
    }
    return v->scheme->sign(v->cfg, id, timestamp, body, body_len, out, err);
}

int luar_webhook_sign_with_secret(const char *scheme, const char *secret,
                                  const luar_webhook_opt_t *opts, size_t nopts, const char *id,
                                  double timestamp, const char *body, size_t body_len,
                                  luar_buf_t *out, luar_buf_t *err)
{
    luar_webhook_verifier_t v;
    const char *secrets[] = {secret};
    int rc = luar_webhook_verifier_init(&v, scheme, secrets, NULL, 1, opts, nopts, 0, err);
    if (rc)
        return rc;
    rc = luar_webhook_sign(&v, id, timestamp, body, body_len, out, err);
    luar_webhook_verifier_free(&v);
    return rc;
}

static int in_list(const char *const *list, const char *name, size_t len)
{
    for (size_t i = 0; list && list[i]; i++) {
        if (strlen(list[i]) == len && strncasecmp(list[i], name, len) == 0)
            return 1;
    }
    return 0;
}

int luar_webhook_is_signature_header(const luar_webhook_verifier_t *v, const char *name,
                                     size_t len)
{
    if (v->scheme == NULL)
        return 0;
    if (in_list(v->scheme->signature_headers, name, len))
        return 1;
    return v->scheme->cfg_signature_headers &&
           in_list(v->scheme->cfg_signature_headers(v->cfg), name, len);
}

const char *luar_webhook_verdict_outcome(luar_webhook_verdict_t v)
{
    switch (v) {
    case LUAR_WEBHOOK_OK:
        return "accepted";
    case LUAR_WEBHOOK_EXPIRED:
        return "expired";
    case LUAR_WEBHOOK_MISSING:
    case LUAR_WEBHOOK_INVALID:
    default:
        return "invalid_signature";
    }
}

const char *luar_webhook_header(const luar_webhook_msg_t *msg, const char *name, size_t *len)
{
    size_t nlen = strlen(name);
    for (size_t i = 0; i < msg->nheaders; i++) {
        const luar_http_header_t *h = &msg->headers[i];
        if (h->name_len == nlen && strncasecmp(h->name, name, nlen) == 0) {
            *len = h->value_len;
            return h->value ? h->value : "";
        }
    }
    *len = 0;
    return NULL;
}

luar_webhook_verdict_t luar_webhook_check_timestamp(const char *header, const char *value,
                                                    size_t len, double tolerance, double now,
                                                    long long *ts, luar_buf_t *why)
{
    size_t i = 0, end = len;
    while (i < end && (value[i] == ' ' || value[i] == '\t'))
        i++;
    while (end > i && (value[end - 1] == ' ' || value[end - 1] == '\t'))
        end--;
    /* Up to 15 digits: far beyond any real time and exact as a double. */
    if (end == i || end - i > 15) {
        luar_buf_appendf(why, "%s is not a unix timestamp", header);
        return LUAR_WEBHOOK_INVALID;
    }
    long long t = 0;
    for (size_t k = i; k < end; k++) {
        if (value[k] < '0' || value[k] > '9') {
            luar_buf_appendf(why, "%s is not a unix timestamp", header);
            return LUAR_WEBHOOK_INVALID;
        }
        t = t * 10 + (value[k] - '0');
    }
    double skew = now - (double)t;
    if (skew > tolerance) {
        luar_buf_appendf(why, "%s %lld is %.0f s in the past (tolerance %.0f s)", header, t,
                         skew, tolerance);
        return LUAR_WEBHOOK_EXPIRED;
    }
    if (-skew > tolerance) {
        luar_buf_appendf(why, "%s %lld is %.0f s in the future (tolerance %.0f s)", header, t,
                         -skew, tolerance);
        return LUAR_WEBHOOK_EXPIRED;
    }
    if (ts)
        *ts = t;
    return LUAR_WEBHOOK_OK;
}
