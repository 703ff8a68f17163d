#include "common/error.h"
#include "log/log.h"
#include "test.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

/* Returns the path of `name` inside the test directory (static storage, one at a time). */
static const char *path_of(const char *name)
{
    static char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return p;
}

/* Reads a whole file into a static buffer; "" when it does not exist. */
static const char *slurp(const char *path)
{
    static char data[65536];
    data[0] = '\0';
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return data;
    size_t n = fread(data, 1, sizeof data - 1, f);
    data[n] = '\0';
    fclose(f);
    return data;
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void open_file(const char *name, int level, uint64_t max_bytes, int backups)
{
    luar_log_config_t cfg = {
        .level = level, .file = path_of(name), .max_bytes = max_bytes, .backups = backups};
    CHECK_EQ_INT(luar_log_open(&cfg), 0);
}

/* Checks "YYYY-MM-DDTHH:MM:SS.mmmZ" at `ts`. */
static int valid_timestamp(const char *ts)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    for (size_t i = 0; i < sizeof shape - 1; i++) {
        if (shape[i] == 'd' ? !(ts[i] >= '0' && ts[i] <= '9') : ts[i] != shape[i])
            return 0;
    }
    return 1;
}

TEST(test_line_format_escaping_and_fields)
{
    open_file("fmt.log", LUAR_LOG_DEBUG, 0, 0);
    const char msg[] = "say \"hi\"\\\n\t\x01";
    const char fields[] = "\"status\":200,\"path\":\"/x\"";
    luar_log_write(LUAR_LOG_INFO, msg, sizeof msg - 1, fields, sizeof fields - 1);
    luar_log_write(LUAR_LOG_DEBUG, "plain", 5, NULL, 0);
    luar_log_write(LUAR_LOG_WARN, "w", 1, "", 0);
    luar_logf(LUAR_LOG_ERROR, "n=%d s=%s", 42, "q\"");
    luar_log_flush();
    const char *text = slurp(path_of("fmt.log"));
    CHECK_EQ_INT(count_lines(text), 4);
    CHECK(strncmp(text, "{\"ts\":\"", 7) == 0);
    CHECK(valid_timestamp(text + 7));
    CHECK(strncmp(text + 7 + 24, "\",\"level\":\"info\",\"msg\":", 23) == 0);
    const char *expected[] = {
        "\"level\":\"info\",\"msg\":\"say \\\"hi\\\"\\\\\\n\\t\\u0001\","
        "\"status\":200,\"path\":\"/x\"}\n",
        "\"level\":\"debug\",\"msg\":\"plain\"}\n",
        "\"level\":\"warn\",\"msg\":\"w\"}\n",
        "\"level\":\"error\",\"msg\":\"n=42 s=q\\\"\"}\n",
    };
    const char *line = text;
    for (int i = 0; i < 4; i++) {
        CHECK(strncmp(line, "{\"ts\":\"", 7) == 0 && valid_timestamp(line + 7));
        const char *rest = line + 7 + 24 + 2; /* past the timestamp and `",` */
        CHECK(strncmp(rest, expected[i], strlen(expected[i])) == 0);
        if (strncmp(rest, expected[i], strlen(expected[i])) != 0)
            fprintf(stderr, "line %d: %.*s", i, (int)strlen(expected[i]), rest);
        line = strchr(line, '\n') + 1;
    }
    luar_log_close();
    unlink(path_of("fmt.log"));
}

TEST(test_level_filter)
{
    open_file("level.log", LUAR_LOG_WARN, 0, 0);
    CHECK(!luar_log_enabled(LUAR_LOG_INFO));
    CHECK(luar_log_enabled(LUAR_LOG_ERROR));
    luar_log_write(LUAR_LOG_DEBUG, "d", 1, NULL, 0);
    luar_log_write(LUAR_LOG_INFO, "i", 1, NULL, 0);
    luar_log_write(LUAR_LOG_WARN, "w", 1, NULL, 0);
    luar_logf(LUAR_LOG_INFO, "%s", "nope");
    luar_log_set_level(LUAR_LOG_ERROR);
    luar_log_write(LUAR_LOG_WARN, "w2", 2, NULL, 0);
    luar_log_write(LUAR_LOG_ERROR, "e", 1, NULL, 0);
    luar_log_flush();
    const char *text = slurp(path_of("level.log"));
    CHECK_EQ_INT(count_lines(text), 2);
    CHECK(strstr(text, "\"msg\":\"w\"") != NULL);
    CHECK(strstr(text, "\"msg\":\"e\"") != NULL);
    CHECK(strstr(text, "\"msg\":\"w2\"") == NULL);
    CHECK(strstr(text, "\"level\":\"info\"") == NULL);
    luar_log_close();
    unlink(path_of("level.log"));
}

TEST(test_level_names)
{
    int level = -1;
    CHECK_EQ_INT(luar_log_level_parse("debug", &level), 0);
    CHECK_EQ_INT(level, LUAR_LOG_DEBUG);
    CHECK_EQ_INT(luar_log_level_parse("warning", &level), 0);
    CHECK_EQ_INT(level, LUAR_LOG_WARN);
    CHECK_EQ_INT(luar_log_level_parse("ERROR", &level), 0);
    CHECK_EQ_INT(level, LUAR_LOG_ERROR);
    CHECK_EQ_INT(luar_log_level_parse("loud", &level), LUAR_EINVAL);
    CHECK_EQ_STR(luar_log_level_name(LUAR_LOG_INFO), "info");
    CHECK_EQ_STR(luar_log_level_name(LUAR_LOG_WARN), "warn");
}

TEST(test_info_is_buffered_until_flush_and_warn_flushes)
{
    open_file("buf.log", LUAR_LOG_INFO, 0, 0);
    luar_log_write(LUAR_LOG_INFO, "first", 5, NULL, 0);
    CHECK_EQ_STR(slurp(path_of("buf.log")), "");
    luar_log_write(LUAR_LOG_WARN, "second", 6, NULL, 0);
    const char *text = slurp(path_of("buf.log"));
    CHECK_EQ_INT(count_lines(text), 2);
    CHECK(strstr(text, "first") != NULL && strstr(text, "first") < strstr(text, "second"));
    /* Past 64 KiB the buffer is written without an explicit flush. */
    char msg[1000];
    memset(msg, 'x', sizeof msg);
    for (int i = 0; i < 70; i++)
        luar_log_write(LUAR_LOG_INFO, msg, sizeof msg, NULL, 0);
    struct stat st;
    CHECK(stat(path_of("buf.log"), &st) == 0 && st.st_size > 64 * 1024);
    luar_log_close();
    unlink(path_of("buf.log"));
}

TEST(test_rotation_keeps_n_backups)
{
    char msg[16];
    /* Each line is 64 bytes; 150 bytes hold two lines. */
    open_file("rot.log", LUAR_LOG_INFO, 150, 2);
    for (int i = 0; i < 9; i++) {
        snprintf(msg, sizeof msg, "line-%d", i);
        luar_log_write(LUAR_LOG_INFO, msg, strlen(msg), NULL, 0);
    }
    luar_log_flush();
    const char *cur = slurp(path_of("rot.log"));
    CHECK_EQ_INT(count_lines(cur), 1);
    CHECK(strstr(cur, "\"line-8\"") != NULL);
    const char *one = slurp(path_of("rot.log.1"));
    CHECK_EQ_INT(count_lines(one), 2);
    CHECK(strstr(one, "\"line-6\"") != NULL && strstr(one, "\"line-7\"") != NULL);
    const char *two = slurp(path_of("rot.log.2"));
    CHECK_EQ_INT(count_lines(two), 2);
    CHECK(strstr(two, "\"line-4\"") != NULL && strstr(two, "\"line-5\"") != NULL);
    CHECK(!exists(path_of("rot.log.3")));
    struct stat st;
    CHECK(stat(path_of("rot.log.1"), &st) == 0 && st.st_size == 128);
    luar_log_close();
    unlink(path_of("rot.log"));
    unlink(path_of("rot.log.1"));
    unlink(path_of("rot.log.2"));
}

TEST(test_rotation_counts_existing_file_size)
{
    FILE *f = fopen(path_of("old.log"), "w");
    for (int i = 0; f && i < 19; i++)
        fputs("0123456789", f);
    if (f)
        fclose(f);
    open_file("old.log", LUAR_LOG_INFO, 200, 1);
    luar_log_write(LUAR_LOG_INFO, "new", 3, NULL, 0);
    luar_log_flush();
    CHECK_EQ_INT(strlen(slurp(path_of("old.log.1"))), 190);
    CHECK(strstr(slurp(path_of("old.log")), "\"new\"") != NULL);
    luar_log_close();
    unlink(path_of("old.log"));
    unlink(path_of("old.log.1"));
}

TEST(test_reopen_after_external_move)
{
    char moved[256];
    open_file("app.log", LUAR_LOG_INFO, 0, 0);
    luar_log_write(LUAR_LOG_INFO, "before", 6, NULL, 0);
    luar_log_flush();
    snprintf(moved, sizeof moved, "%s/app.log.moved", dir);
    CHECK_EQ_INT(rename(path_of("app.log"), moved), 0);
    /* Until reopened, lines still reach the moved file (what logrotate expects). */
    luar_log_write(LUAR_LOG_INFO, "during", 6, NULL, 0);
    CHECK_EQ_INT(luar_log_reopen(), 0);
    luar_log_write(LUAR_LOG_INFO, "after", 5, NULL, 0);
    luar_log_flush();
    const char *old = slurp(moved);
    CHECK(strstr(old, "before") != NULL && strstr(old, "during") != NULL);
    CHECK(strstr(old, "after") == NULL);
    const char *cur = slurp(path_of("app.log"));
    CHECK_EQ_INT(count_lines(cur), 1);
    CHECK(strstr(cur, "after") != NULL);
    luar_log_close();
    unlink(moved);
    unlink(path_of("app.log"));
}

TEST(test_open_failure_is_eio)
{
    luar_log_config_t cfg = {.level = LUAR_LOG_INFO, .file = "/nonexistent-dir/x/y.log"};
    CHECK_EQ_INT(luar_log_open(&cfg), LUAR_EIO);
    CHECK_EQ_INT(luar_log_reopen(), 0); /* on stdout: nothing to reopen */
    luar_log_close();
}

/* Runs `fn` with fd 1 pointing at `target` and returns what was written there. */
static const char *with_stdout(const char *target, int flags, void (*fn)(void))
{
    fflush(stdout);
    int saved = dup(1);
    int fd = open(target, flags, 0644);
    if (saved < 0 || fd < 0)
        return "redirect failed";
    dup2(fd, 1);
    close(fd);
    fn();
    dup2(saved, 1);
    close(saved);
    return (flags & O_CREAT) ? slurp(target) : "";
}

static void log_two_lines(void)
{
    luar_log_write(LUAR_LOG_INFO, "to-stdout", 9, NULL, 0);
    luar_log_write(LUAR_LOG_ERROR, "err-stdout", 10, "\"k\":1", 5);
    luar_log_flush();
}

TEST(test_stdout_default_and_failing_write)
{
    luar_log_close(); /* back to the defaults: stdout */
    luar_log_set_level(LUAR_LOG_INFO);
    const char *out =
        with_stdout(path_of("stdout.txt"), O_WRONLY | O_CREAT | O_TRUNC, log_two_lines);
    CHECK_EQ_INT(count_lines(out), 2);
    CHECK(strstr(out, "\"msg\":\"to-stdout\"}") != NULL);
    CHECK(strstr(out, "\"msg\":\"err-stdout\",\"k\":1}") != NULL);
    unlink(path_of("stdout.txt"));
    /* A device that refuses every write: lines are dropped, nothing crashes. */
    if (exists("/dev/full"))
        with_stdout("/dev/full", O_WRONLY, log_two_lines);
    out = with_stdout(path_of("stdout2.txt"), O_WRONLY | O_CREAT | O_TRUNC, log_two_lines);
    CHECK_EQ_INT(count_lines(out), 2);
    unlink(path_of("stdout2.txt"));
}

static int captured;

static int capture(void *ud, int level, const char *line, size_t len)
{
    captured++;
    CHECK_EQ_INT(level, LUAR_LOG_WARN);
    CHECK(len > 0 && line[len - 1] == '}');
    CHECK_EQ_STR((const char *)ud, "ud");
    return 1;
}

static int capture_all(void *ud, int level, const char *line, size_t len)
{
    (void)ud;
    (void)level;
    (void)line;
    (void)len;
    return 1;
}

TEST(test_hook_sees_and_consumes_lines)
{
    open_file("hook.log", LUAR_LOG_INFO, 0, 0);
    luar_log_set_hook(capture, "ud");
    luar_log_write(LUAR_LOG_WARN, "hooked", 6, NULL, 0);
    luar_log_write(LUAR_LOG_DEBUG, "filtered", 8, NULL, 0);
    luar_log_set_hook(NULL, NULL);
    luar_log_flush();
    CHECK_EQ_INT(captured, 1);
    CHECK_EQ_STR(slurp(path_of("hook.log")), "");
    luar_log_close();
    unlink(path_of("hook.log"));
}

static int tapped;
static char tapped_last[256];

/* A tap that logs from inside itself: its own line is written but not tapped again. */
static void tap(void *ud, int level, const char *line, size_t len)
{
    (void)ud;
    tapped++;
    snprintf(tapped_last, sizeof tapped_last, "%.*s", (int)len, line);
    if (level == LUAR_LOG_ERROR)
        luar_log_write(LUAR_LOG_WARN, "from the tap", 12, NULL, 0);
}

TEST(test_taps_observe_without_consuming_and_never_recurse)
{
    open_file("tap.log", LUAR_LOG_INFO, 0, 0);
    CHECK_EQ_INT(luar_log_add_tap(tap, NULL), 0);
    CHECK_EQ_INT(luar_log_add_tap(tap, NULL), 0); /* the same pair once */
    luar_log_write(LUAR_LOG_INFO, "one", 3, "\"k\":1", 5);
    CHECK_EQ_INT(tapped, 1);
    CHECK(strstr(tapped_last, "\"msg\":\"one\",\"k\":1}") != NULL);
    luar_log_write(LUAR_LOG_DEBUG, "filtered", 8, NULL, 0);
    CHECK_EQ_INT(tapped, 1);
    luar_log_write(LUAR_LOG_ERROR, "two", 3, NULL, 0);
    CHECK_EQ_INT(tapped, 2);              /* "from the tap" was not tapped */
    luar_log_set_hook(capture_all, NULL); /* a consuming hook: taps still see the line */
    luar_log_write(LUAR_LOG_INFO, "three", 5, NULL, 0);
    luar_log_set_hook(NULL, NULL);
    CHECK_EQ_INT(tapped, 3);
    luar_log_remove_tap(tap, NULL);
    luar_log_write(LUAR_LOG_INFO, "four", 4, NULL, 0);
    CHECK_EQ_INT(tapped, 3);
    luar_log_flush();
    const char *text = slurp(path_of("tap.log"));
    CHECK(strstr(text, "\"one\"") && strstr(text, "\"two\"") && strstr(text, "from the tap"));
    CHECK(strstr(text, "\"four\"") && !strstr(text, "\"three\""));
    luar_log_close();
    unlink(path_of("tap.log"));
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/luar-test-log-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_line_format_escaping_and_fields);
    RUN(test_level_filter);
    RUN(test_level_names);
    RUN(test_info_is_buffered_until_flush_and_warn_flushes);
    RUN(test_rotation_keeps_n_backups);
    RUN(test_rotation_counts_existing_file_size);
    RUN(test_reopen_after_external_move);
    RUN(test_open_failure_is_eio);
    RUN(test_stdout_default_and_failing_write);
    RUN(test_hook_sees_and_consumes_lines);
    RUN(test_taps_observe_without_consuming_and_never_recurse);
    luar_log_close();
    if (rmdir(dir) != 0)
        fprintf(stderr, "test directory %s not empty\n", dir);
    return DONE();
}
