/*
 * The process's secrets (SPEC §4 luar.secrets): the encrypted store, read once at start and
 * again on every reload, then the environment. Every value handed out, and every value in
 * the store, is watched for redaction (redact.h). Loop thread only.
 */
#ifndef LUAR_SECRETS_H
#define LUAR_SECRETS_H

#include "common/buf.h"
#include "secrets/store.h"

#include <stddef.h>

/*
 * Reads the store at `path` with `key` and makes it the process's store, watching each of
 * its values. On failure (see luar_secret_store_read; one line naming the file in `err`)
 * the previous store stays in place. Returns 0 or that error.
 */
int luar_secrets_load(const char *path, const luar_secrets_key_t *key, luar_buf_t *err);

/*
 * The value of `name`: from the store when it has it, else from the environment, else
 * NULL. Its length goes to *len. The value is watched before it is returned. The pointer
 * is valid until the next luar_secrets_load or luar_secrets_unload.
 */
const char *luar_secrets_get(const char *name, size_t *len);

/* Drops the process's store (exit, tests). The watched values stay watched. */
void luar_secrets_unload(void);

#endif
