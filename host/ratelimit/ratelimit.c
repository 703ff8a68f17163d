/* Keys and the rejection counter of rate limits (see ratelimit.h). */
#include "ratelimit/ratelimit.h"
#include "metrics/metrics.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

void luar_ratelimit_key(const char *scope, const char *key, size_t key_len,
                        const luar_gcra_t *limit, char out[LUAR_RATELIMIT_KEY_SIZE])
{
    /* scope NUL interval:burst NUL key: the key comes last, so any bytes in it are fine. */
    char head[64];
    int n = snprintf(head, sizeof head, "%lld:%lld", (long long)limit->interval_ns,
                     (long long)limit->burst);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(ctx, scope, strlen(scope) + 1) == 1 &&
             EVP_DigestUpdate(ctx, head, (size_t)n + 1) == 1 &&
             EVP_DigestUpdate(ctx, key, key_len) == 1 && EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 &&
             mdlen == 32;
    EVP_MD_CTX_free(ctx);
    if (!ok) {
        /* Out of memory inside OpenSSL: a key that is valid and shared by every such
         * call, so the limit still holds (more strictly) rather than not at all. */
        memset(md, 0, sizeof md);
        mdlen = 32;
    }
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[64] = '\0';
}

static luar_metric_t *rejected(void)
{
    static const char *const labels[] = {"key"};
    luar_metric_t *m = NULL;
    /* Registering again returns the family (and survives a registry reset in tests). */
    luar_metrics_register(LUAR_METRIC_COUNTER, "luar_ratelimit_rejected_total",
                          "Requests refused by a rate limit, by the limit's name.", labels, 1, NULL,
                          0, &m, NULL);
    return m;
}

void luar_ratelimit_metrics_init(void)
{
    rejected();
}

void luar_ratelimit_count_rejected(const char *name)
{
    luar_metric_t *m = rejected();
    const char *values[] = {name && name[0] ? name : "unnamed"};
    if (m)
        luar_metric_add(m, values, 1);
}
