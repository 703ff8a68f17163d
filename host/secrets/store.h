/*
 * The encrypted secret store: one file (default <data>/secrets.enc) holding the whole
 * name → value map, encrypted as a single AES-256-GCM blob so neither the values nor the
 * names nor their count leak. File layout:
 *
 *   "luar-secrets\n"   13-byte magic, so a wrong file is named as such
 *   blob               crypto.h's version 1 blob, aad "luar secrets store"
 *
 * and inside the blob, sorted by name:
 *
 *   u32 count, then count × { u16 name_len, name, u32 value_len, value }   (big-endian)
 *
 * Reading tells a wrong key (the blob's key id is not the configured key's) from a damaged
 * file (truncated, modified, not a secrets file). Writing replaces the file atomically
 * with mode 0600 (atomic_file.h). Values are wiped from memory when the store is freed.
 */
#ifndef LUAR_SECRETS_STORE_H
#define LUAR_SECRETS_STORE_H

#include "common/buf.h"
#include "crypto/crypto.h"

#include <stddef.h>
#include <stdint.h>

#define LUAR_SECRET_NAME_MAX 256
#define LUAR_SECRET_VALUE_MAX (1u << 20)
#define LUAR_SECRETS_FILE_MAX (64u << 20)

/* The store key and where it came from, for messages that name the setting at fault. */
typedef struct luar_secrets_key {
    uint8_t bytes[LUAR_AEAD_KEY_LEN];
    int set;          /* 0: no key configured */
    const char *from; /* static: "LUAR_SECRETS_KEY", "secrets.key", "LUAR_SECRETS_NEW_KEY" */
} luar_secrets_key_t;

typedef struct luar_secret_store luar_secret_store_t;

/*
 * Parses a key written as 64 hex digits, or base64 / base64url (padding optional) of 32
 * bytes; surrounding whitespace is ignored. Returns 0, or LUAR_EINVAL with a reason that
 * never repeats the text appended to `err` ("expected 32 bytes as ...").
 */
int luar_secrets_parse_key(const char *text, uint8_t key[LUAR_AEAD_KEY_LEN], luar_buf_t *err);

/*
 * Returns nonzero when `name` may name a secret: 1 to 256 bytes of letters, digits, '_',
 * '.', '-' and '/', not starting with '.', '-' or '/' (environment-variable names fit).
 */
int luar_secret_name_valid(const char *name);

/* An empty store. NULL when out of memory. */
luar_secret_store_t *luar_secret_store_new(void);

/*
 * Reads the store at `path` with `key`. A missing file gives an empty store (and
 * *exists = 0 when `exists` is not NULL). Returns 0 with the store in `*out` (the caller
 * frees it), or, with one line naming the file and the fault appended to `err`:
 *   LUAR_ECONFIG  a file exists but no key is set, or the key is not the file's
 *                 (both key ids are named);
 *   LUAR_EPARSE   not a secrets file, truncated or modified (corrupt);
 *   LUAR_EIO / LUAR_ETOOBIG / LUAR_ENOMEM.
 */
int luar_secret_store_read(const char *path, const luar_secrets_key_t *key,
                           luar_secret_store_t **out, int *exists, luar_buf_t *err);

/*
 * Encrypts the store under `key` and replaces `path` atomically (mode 0600). Returns 0, or
 * LUAR_EIO / LUAR_ENOMEM with the reason appended to `err`; the old file is then intact.
 */
int luar_secret_store_write(const luar_secret_store_t *s, const char *path,
                            const luar_secrets_key_t *key, luar_buf_t *err);

/* The value of `name` (its length in *len), or NULL. Owned by the store. */
const char *luar_secret_store_get(const luar_secret_store_t *s, const char *name, size_t *len);

/*
 * Sets `name` to a copy of `value`. Returns 0, LUAR_EINVAL (invalid name), LUAR_ETOOBIG
 * (value over LUAR_SECRET_VALUE_MAX) or LUAR_ENOMEM. *existed (when not NULL) says whether
 * the name had a value before.
 */
int luar_secret_store_set(luar_secret_store_t *s, const char *name, const void *value, size_t len,
                          int *existed);

/* Removes `name`. Returns 0 or LUAR_ENOTFOUND. */
int luar_secret_store_delete(luar_secret_store_t *s, const char *name);

/* The number of secrets, and the i-th (in name order): its name, and value via the outs. */
size_t luar_secret_store_count(const luar_secret_store_t *s);
const char *luar_secret_store_at(const luar_secret_store_t *s, size_t i, const char **value,
                                 size_t *len);

/* Wipes and frees the store. NULL is fine. */
void luar_secret_store_free(luar_secret_store_t *s);

#endif
