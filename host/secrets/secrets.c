/* The process-wide store and luar.secrets lookups (see secrets.h). */
#include "secrets/secrets.h"
#include "secrets/redact.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static luar_secret_store_t *g_store;

/* Watches `value` as the secret `name`, naming it in the warning about short values. */
static void watch(const char *name, const char *value, size_t len)
{
    char what[LUAR_SECRET_NAME_MAX + 16];
    snprintf(what, sizeof what, "secret %s", name);
    (void)luar_secret_watch(what, value, len);
}

int luar_secrets_load(const char *path, const luar_secrets_key_t *key, luar_buf_t *err)
{
    luar_secret_store_t *s = NULL;
    int rc = luar_secret_store_read(path, key, &s, NULL, err);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < luar_secret_store_count(s); i++) {
        const char *value;
        size_t len;
        const char *name = luar_secret_store_at(s, i, &value, &len);
        watch(name, value, len);
    }
    luar_secret_store_free(g_store);
    g_store = s;
    return 0;
}

const char *luar_secrets_get(const char *name, size_t *len)
{
    const char *v = luar_secret_store_get(g_store, name, len);
    if (v == NULL) {
        v = getenv(name);
        if (v == NULL)
            return NULL;
        *len = strlen(v);
    }
    watch(name, v, *len);
    return v;
}

void luar_secrets_unload(void)
{
    luar_secret_store_free(g_store);
    g_store = NULL;
}
