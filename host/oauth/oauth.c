/*
 * The process's OAuth settings and the sealing of token records (oauth.h). Tokens are
 * encrypted under the secrets key itself (LUAR_SECRETS_KEY / secrets.key), with the
 * record's key in the backend as associated data, so a blob copied to another account's
 * record does not decrypt. The key never reaches Lua.
 */
#include "oauth/oauth.h"

#include "common/error.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

static char *g_public_url;
static uint8_t g_key[LUAR_AEAD_KEY_LEN];
static int g_key_set;

void luar_oauth_configure(const char *public_url, const uint8_t *key, int key_set)
{
    free(g_public_url);
    g_public_url = NULL;
    if (public_url != NULL && public_url[0] != '\0') {
        g_public_url = strdup(public_url);
        size_t n = g_public_url ? strlen(g_public_url) : 0;
        while (n > 0 && g_public_url[n - 1] == '/')
            g_public_url[--n] = '\0';
    }
    OPENSSL_cleanse(g_key, sizeof g_key);
    g_key_set = key != NULL && key_set;
    if (g_key_set)
        memcpy(g_key, key, sizeof g_key);
}

const char *luar_oauth_public_url(void)
{
    return g_public_url;
}

int luar_oauth_has_key(void)
{
    return g_key_set;
}

int luar_oauth_seal(const void *plain, size_t len, const char *aad, luar_buf_t *out)
{
    if (!g_key_set)
        return LUAR_ECONFIG;
    return luar_aead_encrypt(g_key, plain, len, aad, strlen(aad), out);
}

int luar_oauth_open(const void *blob, size_t len, const char *aad, luar_buf_t *out, luar_buf_t *why)
{
    if (!g_key_set)
        return LUAR_ECONFIG;
    luar_aead_failure_t failure = LUAR_AEAD_OK;
    int rc = luar_aead_decrypt(g_key, blob, len, aad, strlen(aad), out, &failure);
    if (rc == LUAR_EPARSE)
        luar_aead_explain(failure, blob, len, why);
    return rc;
}
