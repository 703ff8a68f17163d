/*
 * Structured JSON-lines logging (see log.h). One process-wide state, loop thread only.
 * Lines are formatted into `pending` and written with one write(2) per flush; the file
 * size is tracked including what is still pending, so rotation happens on line
 * boundaries and never leaves a file larger than max_bytes (unless one line alone is).
 */
#include "log/log.h"
#include "common/buf.h"
#include "common/error.h"
#include "secrets/redact.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FLUSH_AT (64 * 1024)
#define MAX_MSG (64 * 1024)     /* longer messages are cut */
#define MAX_FIELDS (256 * 1024) /* longer field lists are replaced by a marker */
#define MAX_ROTATED_NAME 4096

/* The process's log state. fd 1 is stdout and is never closed here. */
static struct {
    int level;
    int fd;
    char *path;         /* NULL: stdout */
    uint64_t max_bytes; /* 0: no rotation */
    int backups;
    uint64_t size;      /* file size including pending bytes */
    luar_buf_t pending; /* formatted lines not yet written */
    luar_buf_t line;    /* scratch for the line being formatted */
    luar_buf_t clean;   /* the line with secret values redacted, when it held any */
    int atexit_done;
    time_t ts_sec; /* second of the cached timestamp prefix */
    char ts_prefix[24];
    luar_log_hook_fn hook;
    void *hook_ud;
    struct {
        luar_log_tap_fn fn;
        void *ud;
    } taps[LUAR_LOG_MAX_TAPS];
    int ntaps;
    int tapping; /* inside a tap: lines it logs are not tapped again */
} g_log = {.level = LUAR_LOG_INFO, .fd = 1, .ts_sec = -1};

static const char *const level_names[] = {"debug", "info", "warn", "error"};

static int clamp_level(int level)
{
    if (level < LUAR_LOG_DEBUG)
        return LUAR_LOG_DEBUG;
    if (level > LUAR_LOG_ERROR)
        return LUAR_LOG_ERROR;
    return level;
}

/*
 * Writes all of `len` bytes, retrying on EINTR and partial writes and waiting a little
 * when a non-blocking descriptor is full. Returns 0, or -1 when the rest had to be dropped.
 */
static int write_all(int fd, const char *p, size_t len)
{
    int waits = 0;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && waits < 10) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            waits++;
            poll(&pfd, 1, 100);
            continue;
        }
        return -1;
    }
    return 0;
}

void luar_log_flush(void)
{
    if (g_log.pending.len == 0)
        return;
    /* A failed write drops the batch: logging must never stop the server. */
    (void)write_all(g_log.fd, g_log.pending.data, g_log.pending.len);
    luar_buf_reset(&g_log.pending);
}

static void at_exit_flush(void)
{
    luar_log_flush();
}

/* Opens g_log.path for appending and records its size. Returns 0 or LUAR_EIO. */
static int open_path(void)
{
    int fd = open(g_log.path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return LUAR_EIO;
    struct stat st;
    g_log.size = fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    g_log.fd = fd;
    return 0;
}

static void close_fd(void)
{
    if (g_log.fd != 1)
        close(g_log.fd);
    g_log.fd = 1;
    g_log.size = 0;
}

/*
 * Shifts file.(N-1) to file.N ... file to file.1 and starts a new file. With no backups
 * the file is simply truncated. Pending lines must have been flushed.
 */
static void rotate(void)
{
    char from[MAX_ROTATED_NAME], to[MAX_ROTATED_NAME];
    close_fd();
    if (g_log.backups <= 0) {
        unlink(g_log.path);
    } else {
        for (int i = g_log.backups - 1; i >= 1; i--) {
            snprintf(from, sizeof from, "%s.%d", g_log.path, i);
            snprintf(to, sizeof to, "%s.%d", g_log.path, i + 1);
            rename(from, to); /* a missing older file is fine */
        }
        snprintf(to, sizeof to, "%s.1", g_log.path);
        rename(g_log.path, to);
    }
    /* When the new file cannot be created, lines go to stdout until a reopen succeeds. */
    (void)open_path();
}

int luar_log_open(const luar_log_config_t *cfg)
{
    int rc = 0;
    luar_log_flush();
    close_fd();
    free(g_log.path);
    g_log.path = NULL;
    g_log.level = clamp_level(cfg->level);
    g_log.max_bytes = cfg->max_bytes;
    g_log.backups = cfg->backups;
    if (cfg->file == NULL || cfg->file[0] == '\0')
        return 0;
    g_log.path = strdup(cfg->file);
    if (g_log.path == NULL) {
        rc = LUAR_EIO;
        goto fail;
    }
    rc = open_path();
    if (rc)
        goto fail;
    return 0;
fail:
    free(g_log.path);
    g_log.path = NULL;
    return rc;
}

void luar_log_close(void)
{
    luar_log_flush();
    close_fd();
    free(g_log.path);
    g_log.path = NULL;
    luar_buf_free(&g_log.pending);
    luar_buf_free(&g_log.line);
    luar_buf_free(&g_log.clean);
}

int luar_log_reopen(void)
{
    luar_log_flush();
    if (g_log.path == NULL)
        return 0;
    close_fd();
    return open_path();
}

void luar_log_set_level(int level)
{
    g_log.level = clamp_level(level);
}

int luar_log_enabled(int level)
{
    return level >= g_log.level;
}

int luar_log_level_parse(const char *name, int *level)
{
    static const struct {
        const char *name;
        int level;
    } names[] = {{"debug", LUAR_LOG_DEBUG},
                 {"info", LUAR_LOG_INFO},
                 {"warn", LUAR_LOG_WARN},
                 {"warning", LUAR_LOG_WARN},
                 {"error", LUAR_LOG_ERROR}};
    if (name == NULL)
        return LUAR_EINVAL;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcasecmp(name, names[i].name) == 0) {
            *level = names[i].level;
            return 0;
        }
    }
    return LUAR_EINVAL;
}

const char *luar_log_level_name(int level)
{
    return level_names[clamp_level(level)];
}

void luar_log_set_hook(luar_log_hook_fn fn, void *ud)
{
    g_log.hook = fn;
    g_log.hook_ud = ud;
}

int luar_log_add_tap(luar_log_tap_fn fn, void *ud)
{
    for (int i = 0; i < g_log.ntaps; i++)
        if (g_log.taps[i].fn == fn && g_log.taps[i].ud == ud)
            return 0;
    if (g_log.ntaps == LUAR_LOG_MAX_TAPS)
        return LUAR_ETOOBIG;
    g_log.taps[g_log.ntaps].fn = fn;
    g_log.taps[g_log.ntaps].ud = ud;
    g_log.ntaps++;
    return 0;
}

void luar_log_remove_tap(luar_log_tap_fn fn, void *ud)
{
    for (int i = 0; i < g_log.ntaps; i++) {
        if (g_log.taps[i].fn == fn && g_log.taps[i].ud == ud) {
            memmove(&g_log.taps[i], &g_log.taps[i + 1],
                    (size_t)(g_log.ntaps - i - 1) * sizeof g_log.taps[0]);
            g_log.ntaps--;
            return;
        }
    }
}

/* Gives the line to the taps, once it is written: a tap that logs overwrites g_log.line. */
static void tap_line(int level, const char *line, size_t len)
{
    if (g_log.ntaps == 0 || g_log.tapping)
        return;
    g_log.tapping = 1;
    for (int i = 0; i < g_log.ntaps; i++)
        g_log.taps[i].fn(g_log.taps[i].ud, level, line, len);
    g_log.tapping = 0;
}

/* Appends "YYYY-MM-DDTHH:MM:SS.mmmZ" for now (UTC); the per-second prefix is cached. */
static int append_timestamp(luar_buf_t *b)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (now.tv_sec != g_log.ts_sec) {
        struct tm tm;
        gmtime_r(&now.tv_sec, &tm);
        strftime(g_log.ts_prefix, sizeof g_log.ts_prefix, "%Y-%m-%dT%H:%M:%S", &tm);
        g_log.ts_sec = now.tv_sec;
    }
    return luar_buf_appendf(b, "%s.%03ldZ", g_log.ts_prefix, now.tv_nsec / 1000000L);
}

/* Formats one line, newline included, into g_log.line. Returns 0 or a luar_buf error. */
static int format_line(int level, const char *msg, size_t msg_len, const char *fields,
                       size_t fields_len)
{
    luar_buf_t *b = &g_log.line;
    int rc;
    luar_buf_reset(b);
    rc = luar_buf_puts(b, "{\"ts\":\"");
    if (rc == 0)
        rc = append_timestamp(b);
    if (rc == 0)
        rc = luar_buf_appendf(b, "\",\"level\":\"%s\",\"msg\":", level_names[level]);
    if (msg == NULL)
        msg_len = 0;
    if (rc == 0)
        rc = luar_buf_append_json_string(b, msg ? msg : "", msg_len > MAX_MSG ? MAX_MSG : msg_len);
    if (rc == 0 && msg_len > MAX_MSG)
        rc = luar_buf_puts(b, ",\"msg_truncated\":true");
    if (rc == 0 && fields != NULL && fields_len > MAX_FIELDS)
        rc = luar_buf_puts(b, ",\"fields_dropped\":true");
    else if (rc == 0 && fields != NULL && fields_len > 0) {
        rc = luar_buf_putc(b, ',');
        if (rc == 0)
            rc = luar_buf_append(b, fields, fields_len);
    }
    if (rc == 0)
        rc = luar_buf_puts(b, "}\n");
    return rc;
}

void luar_log_write(int level, const char *msg, size_t msg_len, const char *fields,
                    size_t fields_len)
{
    level = clamp_level(level);
    if (!luar_log_enabled(level))
        return;
    /*
     * Secret values never reach the log (SPEC §7.5). The whole line is scrubbed once it is
     * formatted; a message about to be cut is scrubbed first, so the cut cannot leave the
     * start of a value behind. An empty set costs one call.
     */
    luar_buf_t cut;
    luar_buf_init(&cut, 0);
    if (msg != NULL && msg_len > MAX_MSG && luar_secret_watching() &&
        luar_secret_scrub(&cut, msg, msg_len) > 0) {
        msg = cut.data;
        msg_len = cut.len;
    }
    int rc = format_line(level, msg, msg_len, fields, fields_len);
    luar_buf_free(&cut);
    if (rc != 0)
        return; /* out of memory: the line is dropped */
    const char *line = g_log.line.data;
    size_t len = g_log.line.len;
    size_t match;
    if (luar_secret_watching() && luar_secret_find(line, len, &match) < len) {
        luar_buf_reset(&g_log.clean);
        if (luar_secret_scrub(&g_log.clean, line, len) < 0)
            return; /* out of memory: better no line than a leaking one */
        line = g_log.clean.data;
        len = g_log.clean.len;
    }
    if (g_log.hook && g_log.hook(g_log.hook_ud, level, line, len - 1)) {
        tap_line(level, line, len - 1);
        return;
    }
    if (!g_log.atexit_done) {
        atexit(at_exit_flush);
        g_log.atexit_done = 1;
    }
    if (g_log.path && g_log.max_bytes && g_log.size > 0 && g_log.size + len > g_log.max_bytes) {
        luar_log_flush();
        rotate();
    }
    if (luar_buf_append(&g_log.pending, line, len) == 0) {
        if (g_log.path)
            g_log.size += len;
        if (level >= LUAR_LOG_WARN || g_log.pending.len >= FLUSH_AT)
            luar_log_flush();
    }
    tap_line(level, line, len - 1);
}

void luar_logf(int level, const char *fmt, ...)
{
    luar_buf_t msg;
    va_list ap;
    if (!luar_log_enabled(clamp_level(level)))
        return;
    luar_buf_init(&msg, 0);
    va_start(ap, fmt);
    int rc = luar_buf_vappendf(&msg, fmt, ap);
    va_end(ap);
    if (rc == 0)
        luar_log_write(level, msg.data, msg.len, NULL, 0);
    luar_buf_free(&msg);
}
