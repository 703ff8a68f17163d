/* Appending to the hash-chained audit log (see audit.h). */
#include "audit/audit.h"
#include "common/atomic_file.h"
#include "common/error.h"
#include "crypto/crypto.h"
#include "secrets/redact.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char *g_path;

void luar_audit_set_file(const char *path)
{
    free(g_path);
    g_path = path ? strdup(path) : NULL;
}

const char *luar_audit_file(void)
{
    return g_path;
}

static int io_error(luar_buf_t *err, const char *path, const char *what)
{
    if (err)
        luar_buf_appendf(err, "%s: %s: %s", path, what, strerror(errno));
    return LUAR_EIO;
}

/*
 * Reads the last line of the open file (`size` bytes) into `line`, without its newline,
 * and says whether the file ends with one. Returns 0, LUAR_ETOOBIG or LUAR_EIO.
 */
static int read_last_line(int fd, off_t size, luar_buf_t *line, int *terminated)
{
    char chunk[4096];
    off_t end = size, pos = size;
    *terminated = 0;
    /* Find where the last line starts: after the last newline before the final byte. */
    for (;;) {
        size_t want = pos > (off_t)sizeof chunk ? sizeof chunk : (size_t)pos;
        if (want == 0)
            break;
        ssize_t n = pread(fd, chunk, want, pos - (off_t)want);
        if (n != (ssize_t)want)
            return LUAR_EIO;
        int found = 0;
        for (ssize_t i = n - 1; i >= 0; i--) {
            off_t at = pos - (off_t)want + i;
            if (chunk[i] != '\n')
                continue;
            if (at == size - 1) {
                *terminated = 1;
                end = size - 1;
                continue;
            }
            pos = at + 1;
            found = 1;
            break;
        }
        if (found)
            break;
        pos -= (off_t)want;
        if (end - pos > (off_t)LUAR_AUDIT_MAX_LINE)
            return LUAR_ETOOBIG;
    }
    if (end - pos > (off_t)LUAR_AUDIT_MAX_LINE)
        return LUAR_ETOOBIG;
    while (pos < end) {
        size_t want = end - pos > (off_t)sizeof chunk ? sizeof chunk : (size_t)(end - pos);
        ssize_t n = pread(fd, chunk, want, pos);
        if (n <= 0)
            return LUAR_EIO;
        if (luar_buf_append(line, chunk, (size_t)n) != 0)
            return LUAR_ENOMEM;
        pos += n;
    }
    return 0;
}

/* Appends the hex SHA-256 of `len` bytes to `out`. */
static int append_sha256_hex(luar_buf_t *out, const void *data, size_t len)
{
    uint8_t md[LUAR_CRYPTO_MAX_MD];
    size_t n = 0;
    int rc = luar_crypto_digest("sha256", data, len, md, &n);
    return rc ? rc : luar_hex_encode(out, md, n);
}

static int append_timestamp(luar_buf_t *b)
{
    struct timespec now;
    struct tm tm;
    char text[32];
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &tm);
    return luar_buf_appendf(b, "%s.%03ldZ", text, now.tv_nsec / 1000000L);
}

int luar_audit_append(const char *who, const char *action, const char *fields, size_t fields_len,
                      luar_buf_t *err)
{
    if (g_path == NULL) {
        if (err)
            luar_buf_puts(err, "no audit log file is configured");
        return LUAR_EINVAL;
    }
    return luar_audit_append_to(g_path, who, action, fields, fields_len, err);
}

int luar_audit_append_to(const char *path, const char *who, const char *action, const char *fields,
                         size_t fields_len, luar_buf_t *err)
{
    luar_buf_t last, rec, line;
    int terminated = 0, rc = 0;
    struct stat st;
    luar_buf_init(&last, 0);
    luar_buf_init(&rec, LUAR_AUDIT_MAX_LINE);
    luar_buf_init(&line, 0);
    int fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return io_error(err, path, "cannot open the audit log");
    /* One writer at a time across processes: the chain needs the true last line. */
    while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            rc = io_error(err, path, "cannot lock the audit log");
            goto done;
        }
    }
    if (fstat(fd, &st) != 0) {
        rc = io_error(err, path, "cannot stat the audit log");
        goto done;
    }
    if (st.st_size > 0) {
        rc = read_last_line(fd, st.st_size, &last, &terminated);
        if (rc != 0) {
            if (err)
                luar_buf_appendf(err, "%s: cannot read the last line of the audit log: %s", path,
                                 rc == LUAR_ETOOBIG ? "longer than 1 MiB" : strerror(errno));
            goto done;
        }
    }
    /* The record's own members, scrubbed of any watched secret value. */
    rc = luar_buf_puts(&rec, ",\"ts\":\"");
    if (rc == 0)
        rc = append_timestamp(&rec);
    if (rc == 0)
        rc = luar_buf_puts(&rec, "\",\"who\":");
    if (rc == 0)
        rc = luar_buf_append_json_string(&rec, who ? who : "", who ? strlen(who) : 0);
    if (rc == 0)
        rc = luar_buf_puts(&rec, ",\"action\":");
    if (rc == 0)
        rc = luar_buf_append_json_string(&rec, action ? action : "", action ? strlen(action) : 0);
    if (rc == 0 && fields != NULL && fields_len > 0) {
        rc = luar_buf_putc(&rec, ',');
        if (rc == 0)
            rc = luar_buf_append(&rec, fields, fields_len);
    }
    if (rc == 0)
        rc = luar_buf_putc(&rec, '}');
    /* A torn last line (no newline: a crash mid-write) stays in the chain, on its own line. */
    if (rc == 0 && st.st_size > 0 && !terminated)
        rc = luar_buf_putc(&line, '\n');
    if (rc == 0)
        rc = luar_buf_puts(&line, "{\"prev\":\"");
    if (rc == 0)
        rc = st.st_size > 0 ? append_sha256_hex(&line, last.data ? last.data : "", last.len)
                            : luar_buf_puts(&line, LUAR_AUDIT_GENESIS);
    if (rc == 0)
        rc = luar_buf_putc(&line, '"');
    if (rc == 0)
        rc = luar_secret_scrub(&line, rec.data, rec.len) < 0 ? LUAR_ENOMEM : 0;
    if (rc == 0)
        rc = luar_buf_putc(&line, '\n');
    if (rc != 0) {
        if (err)
            luar_buf_appendf(err, "%s: cannot build the audit record: %s", path, luar_strerror(rc));
        rc = rc == LUAR_ETOOBIG ? LUAR_EINVAL : rc;
        goto done;
    }
    /* One write(2) of the whole line: O_APPEND puts it at the end in one piece. */
    size_t off = 0;
    while (off < line.len) {
        ssize_t n = write(fd, line.data + off, line.len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = io_error(err, path, "cannot write the audit log");
            goto done;
        }
        off += (size_t)n;
    }
    if (fsync(fd) != 0)
        rc = io_error(err, path, "cannot fsync the audit log");
    else if (st.st_size == 0)
        (void)luar_file_sync_dir(path); /* a new file: make its name durable too */
done:
    close(fd); /* releases the lock */
    luar_buf_free(&last);
    luar_buf_free(&rec);
    luar_buf_free(&line);
    return rc;
}
