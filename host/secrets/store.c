/* The encrypted secret store file (see store.h). */
#include "secrets/store.h"
#include "common/atomic_file.h"
#include "common/error.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#define MAGIC "luar-secrets\n"
#define MAGIC_LEN (sizeof MAGIC - 1)
#define STORE_AAD "luar secrets store"

typedef struct secret {
    char *name;
    char *value;
    size_t len;
} secret_t;

struct luar_secret_store {
    secret_t *items; /* sorted by name */
    size_t n, cap;
};

/* ---- keys and names ---- */

int luar_secrets_parse_key(const char *text, uint8_t key[LUAR_AEAD_KEY_LEN], luar_buf_t *err)
{
    const char *s = text ? text : "";
    size_t len;
    while (isspace((unsigned char)*s))
        s++;
    len = strlen(s);
    while (len > 0 && isspace((unsigned char)s[len - 1]))
        len--;
    luar_buf_t raw, padded;
    luar_buf_init(&raw, 64);
    luar_buf_init(&padded, 0);
    int ok = 0;
    if (len == 64 && luar_hex_decode(&raw, s, len) == 0 && raw.len == LUAR_AEAD_KEY_LEN) {
        ok = 1;
    } else {
        /* base64 without its padding is common (it is what base64url prints): add it. */
        luar_buf_reset(&raw);
        luar_buf_append(&padded, s, len);
        while (padded.len % 4 != 0)
            luar_buf_putc(&padded, '=');
        if ((luar_base64_decode(&raw, padded.data ? padded.data : "", padded.len) == 0 ||
             (luar_buf_reset(&raw), luar_base64url_decode(&raw, s, len) == 0)) &&
            raw.len == LUAR_AEAD_KEY_LEN)
            ok = 1;
    }
    if (ok)
        memcpy(key, raw.data, LUAR_AEAD_KEY_LEN);
    else if (err)
        luar_buf_appendf(err,
                         "expected a key of 32 bytes written as 64 hex digits or as "
                         "base64/base64url (`luar secrets gen-key` makes one); got %zu "
                         "characters that are neither",
                         len);
    if (raw.data)
        OPENSSL_cleanse(raw.data, raw.cap);
    if (padded.data)
        OPENSSL_cleanse(padded.data, padded.cap);
    luar_buf_free(&raw);
    luar_buf_free(&padded);
    return ok ? 0 : LUAR_EINVAL;
}

int luar_secret_name_valid(const char *name)
{
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len > LUAR_SECRET_NAME_MAX || strchr(".-/", name[0]) != NULL)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!isalnum(c) && c != '_' && c != '.' && c != '-' && c != '/')
            return 0;
    }
    return 1;
}

/* ---- the map ---- */

luar_secret_store_t *luar_secret_store_new(void)
{
    return calloc(1, sizeof(luar_secret_store_t));
}

static void wipe(secret_t *it)
{
    if (it->value)
        OPENSSL_cleanse(it->value, it->len);
    free(it->value);
    free(it->name);
}

void luar_secret_store_free(luar_secret_store_t *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n; i++)
        wipe(&s->items[i]);
    free(s->items);
    free(s);
}

/* The index of `name`, or where it would go (with *found = 0). */
static size_t search(const luar_secret_store_t *s, const char *name, int *found)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int cmp = strcmp(s->items[mid].name, name);
        if (cmp == 0) {
            *found = 1;
            return mid;
        }
        if (cmp < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

const char *luar_secret_store_get(const luar_secret_store_t *s, const char *name, size_t *len)
{
    int found;
    if (s == NULL || name == NULL)
        return NULL;
    size_t i = search(s, name, &found);
    if (!found)
        return NULL;
    *len = s->items[i].len;
    return s->items[i].value;
}

int luar_secret_store_set(luar_secret_store_t *s, const char *name, const void *value, size_t len,
                          int *existed)
{
    int found;
    if (!luar_secret_name_valid(name))
        return LUAR_EINVAL;
    if (len > LUAR_SECRET_VALUE_MAX)
        return LUAR_ETOOBIG;
    char *copy = luar_memdup(value, len);
    if (copy == NULL)
        return LUAR_ENOMEM;
    size_t i = search(s, name, &found);
    if (existed)
        *existed = found;
    if (found) {
        OPENSSL_cleanse(s->items[i].value, s->items[i].len);
        free(s->items[i].value);
        s->items[i].value = copy;
        s->items[i].len = len;
        return 0;
    }
    char *name_copy = strdup(name);
    if (name_copy == NULL || (s->n == s->cap && s->cap > SIZE_MAX / 2 / sizeof(secret_t)))
        goto nomem;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        secret_t *items = realloc(s->items, cap * sizeof *items);
        if (items == NULL)
            goto nomem;
        s->items = items;
        s->cap = cap;
    }
    memmove(s->items + i + 1, s->items + i, (s->n - i) * sizeof *s->items);
    s->items[i] = (secret_t){.name = name_copy, .value = copy, .len = len};
    s->n++;
    return 0;
nomem:
    free(name_copy);
    OPENSSL_cleanse(copy, len);
    free(copy);
    return LUAR_ENOMEM;
}

int luar_secret_store_delete(luar_secret_store_t *s, const char *name)
{
    int found;
    size_t i = search(s, name, &found);
    if (!found)
        return LUAR_ENOTFOUND;
    wipe(&s->items[i]);
    memmove(s->items + i, s->items + i + 1, (s->n - i - 1) * sizeof *s->items);
    s->n--;
    return 0;
}

size_t luar_secret_store_count(const luar_secret_store_t *s)
{
    return s ? s->n : 0;
}

const char *luar_secret_store_at(const luar_secret_store_t *s, size_t i, const char **value,
                                 size_t *len)
{
    if (s == NULL || i >= s->n)
        return NULL;
    if (value)
        *value = s->items[i].value;
    if (len)
        *len = s->items[i].len;
    return s->items[i].name;
}

/* ---- the file ---- */

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/*
 * Serialises the map (the plaintext of the blob) into one exact-size allocation, so no
 * copy of a value is left behind by a growing buffer. The caller wipes and frees *out.
 */
static int encode(const luar_secret_store_t *s, uint8_t **out, size_t *out_len)
{
    size_t total = 4;
    for (size_t i = 0; i < s->n; i++)
        total += 2 + strlen(s->items[i].name) + 4 + s->items[i].len;
    uint8_t *p = malloc(total);
    if (p == NULL)
        return LUAR_ENOMEM;
    put_u32(p, (uint32_t)s->n);
    size_t off = 4;
    for (size_t i = 0; i < s->n; i++) {
        size_t name_len = strlen(s->items[i].name);
        p[off] = (uint8_t)(name_len >> 8);
        p[off + 1] = (uint8_t)name_len;
        memcpy(p + off + 2, s->items[i].name, name_len);
        off += 2 + name_len;
        put_u32(p + off, (uint32_t)s->items[i].len);
        if (s->items[i].len)
            memcpy(p + off + 4, s->items[i].value, s->items[i].len);
        off += 4 + s->items[i].len;
    }
    *out = p;
    *out_len = total;
    return 0;
}

/* Parses the plaintext into `s`. Returns 0 or LUAR_EPARSE. */
static int decode(luar_secret_store_t *s, const uint8_t *p, size_t len)
{
    char name[LUAR_SECRET_NAME_MAX + 1];
    if (len < 4)
        return LUAR_EPARSE;
    uint32_t count = get_u32(p);
    size_t off = 4;
    for (uint32_t i = 0; i < count; i++) {
        if (len - off < 2)
            return LUAR_EPARSE;
        size_t name_len = (size_t)p[off] << 8 | p[off + 1];
        off += 2;
        if (name_len == 0 || name_len > LUAR_SECRET_NAME_MAX || len - off < name_len + 4)
            return LUAR_EPARSE;
        memcpy(name, p + off, name_len);
        name[name_len] = '\0';
        off += name_len;
        size_t value_len = get_u32(p + off);
        off += 4;
        if (len - off < value_len || strlen(name) != name_len)
            return LUAR_EPARSE;
        int existed = 0;
        if (luar_secret_store_set(s, name, p + off, value_len, &existed) != 0 || existed)
            return LUAR_EPARSE;
        off += value_len;
    }
    return off == len ? 0 : LUAR_EPARSE;
}

static void key_id_text(const luar_secrets_key_t *key, char out[2 * LUAR_AEAD_ID_LEN + 1])
{
    luar_aead_key_id(key->bytes, out);
}

int luar_secret_store_read(const char *path, const luar_secrets_key_t *key,
                           luar_secret_store_t **out, int *exists, luar_buf_t *err)
{
    luar_buf_t file, plain;
    luar_secret_store_t *s = NULL;
    luar_aead_failure_t why = LUAR_AEAD_OK;
    int rc;
    *out = NULL;
    if (exists)
        *exists = 0;
    luar_buf_init(&file, 0);
    luar_buf_init(&plain, 0);
    rc = luar_file_read(path, LUAR_SECRETS_FILE_MAX, &file, err);
    if (rc == LUAR_ENOTFOUND) {
        *out = luar_secret_store_new();
        return *out ? 0 : LUAR_ENOMEM;
    }
    if (rc != 0)
        goto done;
    if (exists)
        *exists = 1;
    if (key == NULL || !key->set) {
        luar_buf_appendf(err,
                         "%s: the secrets file exists but no key is configured: set "
                         "LUAR_SECRETS_KEY (or secrets.key in the configuration)",
                         path);
        rc = LUAR_ECONFIG;
        goto done;
    }
    if (file.len < MAGIC_LEN || memcmp(file.data, MAGIC, MAGIC_LEN) != 0) {
        luar_buf_appendf(err,
                         "%s: not a luar secrets file (it does not start with "
                         "\"luar-secrets\")",
                         path);
        rc = LUAR_EPARSE;
        goto done;
    }
    const char *blob = file.data + MAGIC_LEN;
    size_t blob_len = file.len - MAGIC_LEN;
    rc = luar_aead_decrypt(key->bytes, blob, blob_len, STORE_AAD, strlen(STORE_AAD), &plain, &why);
    if (rc == LUAR_EPARSE && why == LUAR_AEAD_WRONG_KEY) {
        char want[2 * LUAR_AEAD_ID_LEN + 1], have[2 * LUAR_AEAD_ID_LEN + 1];
        luar_aead_blob_key_id(blob, blob_len, want);
        key_id_text(key, have);
        luar_buf_appendf(err,
                         "%s: wrong key: the file was encrypted under key id %s, the "
                         "key in %s has key id %s",
                         path, want, key->from ? key->from : "the configuration", have);
        rc = LUAR_ECONFIG;
        goto done;
    }
    if (rc == LUAR_EPARSE) {
        luar_buf_appendf(err, "%s: corrupt secrets file: ", path);
        luar_aead_explain(why, blob, blob_len, err);
        luar_buf_puts(err, "; restore it from a backup");
        goto done;
    }
    if (rc != 0) {
        luar_buf_appendf(err, "%s: cannot decrypt: %s", path, luar_strerror(rc));
        goto done;
    }
    s = luar_secret_store_new();
    if (s == NULL) {
        rc = LUAR_ENOMEM;
        goto done;
    }
    rc = decode(s, (const uint8_t *)plain.data, plain.len);
    if (rc != 0) {
        /* Authenticated yet malformed: written by something that is not this code. */
        luar_buf_appendf(err, "%s: corrupt secrets file: the decrypted contents are malformed",
                         path);
        luar_secret_store_free(s);
        s = NULL;
        goto done;
    }
    *out = s;
done:
    if (plain.data)
        OPENSSL_cleanse(plain.data, plain.len);
    luar_buf_free(&plain);
    luar_buf_free(&file);
    return rc;
}

int luar_secret_store_write(const luar_secret_store_t *s, const char *path,
                            const luar_secrets_key_t *key, luar_buf_t *err)
{
    luar_buf_t file;
    uint8_t *plain = NULL;
    size_t plain_len = 0;
    int rc;
    if (key == NULL || !key->set) {
        luar_buf_appendf(err,
                         "%s: no key is configured: set LUAR_SECRETS_KEY (or "
                         "secrets.key in the configuration)",
                         path);
        return LUAR_ECONFIG;
    }
    luar_buf_init(&file, 0);
    rc = encode(s, &plain, &plain_len);
    if (rc == 0)
        rc = luar_buf_append(&file, MAGIC, MAGIC_LEN);
    if (rc == 0)
        rc = luar_aead_encrypt(key->bytes, plain, plain_len, STORE_AAD, strlen(STORE_AAD), &file);
    if (rc == 0 && file.len > LUAR_SECRETS_FILE_MAX)
        rc = LUAR_ETOOBIG;
    if (plain) {
        OPENSSL_cleanse(plain, plain_len);
        free(plain);
    }
    if (rc != 0) {
        luar_buf_appendf(err, "%s: cannot encrypt the store: %s", path, luar_strerror(rc));
        luar_buf_free(&file);
        return rc;
    }
    rc = luar_atomic_file_save(path, file.data, file.len, 0600, err);
    luar_buf_free(&file);
    return rc;
}
