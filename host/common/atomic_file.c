/* Atomic file replacement and whole-file reads (see atomic_file.h). */
#include "common/atomic_file.h"
#include "common/error.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

static int io_error(luar_buf_t *err, const char *what, const char *path)
{
    if (err)
        luar_buf_appendf(err, "%s: %s: %s", path, what, strerror(errno));
    return LUAR_EIO;
}

int luar_file_sync_dir(const char *path)
{
    char *copy = strdup(path);
    if (copy == NULL)
        return -1;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(copy);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int luar_atomic_file_begin(luar_atomic_file_t *f, const char *path, int mode, luar_buf_t *err)
{
    uint8_t rnd[4] = {0};
    luar_buf_t tmp;
    memset(f, 0, sizeof *f);
    f->fd = -1;
    /* Random, so two writers (or a stale file of a crashed one) never pick the same name. */
    if (getrandom(rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
        rnd[0] = (uint8_t)clock();
    luar_buf_init(&tmp, 0);
    if (luar_buf_appendf(&tmp, "%s.tmp-%d-%02x%02x%02x%02x", path, (int)getpid(), rnd[0], rnd[1],
                         rnd[2], rnd[3]) != 0) {
        luar_buf_free(&tmp);
        return LUAR_ENOMEM;
    }
    f->tmp = luar_buf_detach(&tmp, NULL);
    f->path = strdup(path);
    if (f->path == NULL) {
        luar_atomic_file_abort(f);
        return LUAR_ENOMEM;
    }
    f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (f->fd < 0) {
        int rc = io_error(err, "cannot create a temporary file next to it", path);
        luar_atomic_file_abort(f);
        return rc;
    }
    /* open() applied the umask; the mode asked for is what the file must have. */
    if (fchmod(f->fd, (mode_t)mode) != 0) {
        int rc = io_error(err, "cannot set the permissions of the temporary file", path);
        luar_atomic_file_abort(f);
        return rc;
    }
    return 0;
}

int luar_atomic_file_write(luar_atomic_file_t *f, const void *data, size_t len, luar_buf_t *err)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(f->fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            return io_error(err, "cannot write", f->tmp);
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int luar_atomic_file_commit(luar_atomic_file_t *f, luar_buf_t *err)
{
    int rc = 0;
    if (fsync(f->fd) != 0) {
        rc = io_error(err, "cannot fsync", f->tmp);
        goto fail;
    }
    int fd = f->fd;
    f->fd = -1;
    if (close(fd) != 0) {
        rc = io_error(err, "cannot close", f->tmp);
        goto fail;
    }
    if (rename(f->tmp, f->path) != 0) {
        rc = io_error(err, "cannot rename the temporary file over it", f->path);
        goto fail;
    }
    free(f->tmp);
    f->tmp = NULL;
    /* The new contents are in place; a failed folder sync only risks the rename's
     * durability across a power cut, which is still worth reporting. */
    if (luar_file_sync_dir(f->path) != 0)
        rc = io_error(err, "renamed, but cannot fsync its folder", f->path);
    luar_atomic_file_abort(f);
    return rc;
fail:
    luar_atomic_file_abort(f);
    return rc;
}

void luar_atomic_file_abort(luar_atomic_file_t *f)
{
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    if (f->tmp)
        unlink(f->tmp);
    free(f->tmp);
    free(f->path);
    f->tmp = NULL;
    f->path = NULL;
}

int luar_atomic_file_save(const char *path, const void *data, size_t len, int mode, luar_buf_t *err)
{
    luar_atomic_file_t f;
    int rc = luar_atomic_file_begin(&f, path, mode, err);
    if (rc != 0)
        return rc;
    rc = luar_atomic_file_write(&f, data, len, err);
    if (rc != 0) {
        luar_atomic_file_abort(&f);
        return rc;
    }
    return luar_atomic_file_commit(&f, err);
}

int luar_file_read(const char *path, size_t max, luar_buf_t *out, luar_buf_t *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? LUAR_ENOTFOUND : io_error(err, "cannot open", path);
    char chunk[16384];
    int rc = 0;
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = io_error(err, "cannot read", path);
            break;
        }
        if (n == 0)
            break;
        if (out->len + (size_t)n > max) {
            if (err)
                luar_buf_appendf(err, "%s: larger than %zu bytes", path, max);
            rc = LUAR_ETOOBIG;
            break;
        }
        rc = luar_buf_append(out, chunk, (size_t)n);
        if (rc != 0)
            break;
    }
    close(fd);
    if (rc == 0 && out->data == NULL)
        rc = luar_buf_append(out, "", 0);
    return rc;
}
