/*
 * Secrets of a webhook scheme that signs with HMAC: copied at configure(), wiped and freed
 * at free(), the way every such scheme must keep them. Header-only (static inline), so
 * nothing here is part of the plugin ABI: include it after luar/plugin.h.
 */
#ifndef LUAR_PLUGIN_KEYS_H
#define LUAR_PLUGIN_KEYS_H

#include "luar/plugin.h"

#include <stdlib.h>
#include <string.h>

typedef struct luar_plugin_key {
    unsigned char *data;
    size_t len;
} luar_plugin_key_t;

typedef struct luar_plugin_keys {
    size_t n;
    luar_plugin_key_t key[LUAR_WEBHOOK_MAX_SECRETS];
} luar_plugin_keys_t;

/* Zeroes `n` bytes in a way the compiler keeps (secrets, MACs left on the stack). */
static inline void luar_plugin_wipe(void *p, size_t n)
{
    volatile unsigned char *v = (volatile unsigned char *)p;
    while (n--)
        *v++ = 0;
}

/* Wipes and frees every key; `k` is empty afterwards. */
static inline void luar_plugin_keys_free(luar_plugin_keys_t *k)
{
    for (size_t i = 0; i < k->n; i++) {
        luar_plugin_wipe(k->key[i].data, k->key[i].len);
        free(k->key[i].data);
    }
    k->n = 0;
}

/*
 * Copies the secrets configure() was given (the first LUAR_WEBHOOK_MAX_SECRETS) into `k`,
 * which must be empty; with `lens` NULL each secret is a C string. Returns 0; LUAR_PLUGIN_EINVAL for an empty secret, with
 * "scheme <scheme>: secret N is empty" in `err` (through `h`); or LUAR_PLUGIN_ENOMEM. On
 * failure nothing stays copied.
 */
static inline int luar_plugin_keys_copy(luar_plugin_keys_t *k, const luar_host_t *h,
                                        const char *scheme, const char *const *secrets,
                                        const size_t *lens, size_t n, luar_buf_t *err)
{
    for (size_t i = 0; i < n && i < LUAR_WEBHOOK_MAX_SECRETS; i++) {
        int rc = 0;
        size_t len = lens != NULL ? lens[i] : strlen(secrets[i]);
        if (len == 0) {
            h->buf_printf(err, "scheme %s: secret %zu is empty", scheme, i + 1);
            rc = LUAR_PLUGIN_EINVAL;
        } else if ((k->key[i].data = (unsigned char *)malloc(len)) == NULL) {
            rc = LUAR_PLUGIN_ENOMEM;
        }
        if (rc != 0) {
            luar_plugin_keys_free(k);
            return rc;
        }
        memcpy(k->key[i].data, secrets[i], len);
        k->key[i].len = len;
        k->n = i + 1;
    }
    return 0;
}

#endif
