/*
 * Replacing a file so that a reader sees the old contents or the new ones, never a mix,
 * even across a crash or a full disk: write a temporary file in the same folder, fsync it,
 * rename it over the target, fsync the folder (so the rename itself is durable).
 * Blocking; for command-line tools and rare writes, not for the serving loop.
 */
#ifndef LUAR_ATOMIC_FILE_H
#define LUAR_ATOMIC_FILE_H

#include "common/buf.h"

#include <stddef.h>

/* One replacement in progress. Caller-allocated; fields are private. */
typedef struct luar_atomic_file {
    int fd;
    char *path; /* the target */
    char *tmp;  /* the temporary file: <path>.tmp-<pid>-<random> */
} luar_atomic_file_t;

/*
 * Creates the temporary file next to `path` with permissions `mode` (exactly: the umask
 * does not widen or narrow them). Returns 0, or LUAR_EIO with "path: reason" appended to
 * `err`. On success the caller ends with luar_atomic_file_commit or _abort.
 */
int luar_atomic_file_begin(luar_atomic_file_t *f, const char *path, int mode, luar_buf_t *err);

/* Writes all of `len` bytes to the temporary file. Returns 0 or LUAR_EIO (reason in err). */
int luar_atomic_file_write(luar_atomic_file_t *f, const void *data, size_t len, luar_buf_t *err);

/*
 * fsyncs and closes the temporary file, renames it over the target and fsyncs the folder.
 * Returns 0, or LUAR_EIO with the reason in `err`; on failure the temporary file is
 * removed and the target is untouched. `f` is released either way.
 */
int luar_atomic_file_commit(luar_atomic_file_t *f, luar_buf_t *err);

/* Closes and removes the temporary file; the target is untouched. Releases `f`. */
void luar_atomic_file_abort(luar_atomic_file_t *f);

/* begin + write + commit in one call. Same returns. */
int luar_atomic_file_save(const char *path, const void *data, size_t len, int mode,
                          luar_buf_t *err);

/* fsyncs the folder holding `path`, so a new name in it survives a crash. Returns 0 or -1. */
int luar_file_sync_dir(const char *path);

/*
 * Reads the whole file `path` (at most `max` bytes) into `out`. Returns 0, LUAR_ENOTFOUND
 * (no such file; nothing appended to err), LUAR_ETOOBIG, or LUAR_EIO ("path: reason" in err).
 */
int luar_file_read(const char *path, size_t max, luar_buf_t *out, luar_buf_t *err);

#endif
