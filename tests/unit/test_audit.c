/* The hash-chained audit log (host/audit): appending, and verify catching each tampering. */
#include "audit/audit.h"
#include "common/buf.h"
#include "common/error.h"
#include "crypto/crypto.h"
#include "secrets/redact.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[64], path[128];

static void fresh(void)
{
    snprintf(dir, sizeof dir, "/tmp/luar-audit-XXXXXX");
    if (mkdtemp(dir) == NULL)
        abort();
    snprintf(path, sizeof path, "%s/audit.log", dir);
}

static void cleanup(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

static void append_n(int n)
{
    for (int i = 0; i < n; i++) {
        char f[64];
        int len = snprintf(f, sizeof f, "\"name\":\"SECRET_%d\"", i);
        CHECK_EQ_INT(luar_audit_append_to(path, "cli", "secret.set", f, (size_t)len, NULL), 0);
    }
}

/* The file's lines (without newlines), in `lines`; returns their number. */
static int read_lines(char lines[][512], int max)
{
    FILE *f = fopen(path, "r");
    int n = 0;
    while (n < max && f && fgets(lines[n], 512, f)) {
        lines[n][strcspn(lines[n], "\n")] = '\0';
        n++;
    }
    if (f)
        fclose(f);
    return n;
}

static void write_lines(char lines[][512], int n)
{
    FILE *f = fopen(path, "w");
    for (int i = 0; i < n; i++)
        fprintf(f, "%s\n", lines[i]);
    fclose(f);
}

/* Runs verify; returns its rc and leaves the message in `msg` and the line in *bad. */
static int verify(luar_buf_t *msg, size_t *bad, size_t *records)
{
    char head[65];
    size_t r = 0, b = 0;
    luar_buf_reset(msg);
    int rc = luar_audit_verify(path, &r, head, &b, msg);
    if (bad)
        *bad = b;
    if (records)
        *records = r;
    return rc;
}

TEST(test_audit_chain_starts_at_genesis_and_links_each_line)
{
    fresh();
    append_n(4);
    char lines[8][512];
    CHECK_EQ_INT(read_lines(lines, 8), 4);
    CHECK(strncmp(lines[0], "{\"prev\":\"" LUAR_AUDIT_GENESIS "\",\"ts\":\"", 81) == 0);
    CHECK(strstr(lines[0], "\"who\":\"cli\",\"action\":\"secret.set\",\"name\":\"SECRET_0\"}"));
    for (int i = 1; i < 4; i++) {
        uint8_t md[64];
        size_t n;
        luar_buf_t hex;
        luar_buf_init(&hex, 0);
        luar_crypto_digest("sha256", lines[i - 1], strlen(lines[i - 1]), md, &n);
        luar_hex_encode(&hex, md, n);
        CHECK(strncmp(lines[i] + 9, hex.data, 64) == 0);
        luar_buf_free(&hex);
    }
    luar_buf_t msg;
    luar_buf_init(&msg, 0);
    char head[65];
    size_t records = 0, bad = 9;
    CHECK_EQ_INT(luar_audit_verify(path, &records, head, &bad, &msg), 0);
    CHECK_EQ_INT(records, 4);
    CHECK_EQ_INT(bad, 0);
    luar_buf_t want;
    luar_buf_init(&want, 0);
    uint8_t md[64];
    size_t n;
    luar_crypto_digest("sha256", lines[3], strlen(lines[3]), md, &n);
    luar_hex_encode(&want, md, n);
    CHECK_EQ_STR(head, want.data);
    luar_buf_free(&want);
    luar_buf_free(&msg);
    cleanup();
}

TEST(test_audit_verify_names_an_edited_line)
{
    fresh();
    append_n(5);
    char lines[8][512];
    read_lines(lines, 8);
    char *p = strstr(lines[2], "SECRET_2");
    p[7] = '9'; /* SECRET_9 */
    write_lines(lines, 5);
    luar_buf_t msg;
    luar_buf_init(&msg, 0);
    size_t bad = 0;
    CHECK_EQ_INT(verify(&msg, &bad, NULL), LUAR_EPARSE);
    CHECK_EQ_INT(bad, 4);
    CHECK(strstr(msg.data, "audit.log:4: the chain breaks here") != NULL);
    CHECK(strstr(msg.data, "line 3 was edited") != NULL);
    luar_buf_free(&msg);
    cleanup();
}

TEST(test_audit_verify_names_a_deleted_line)
{
    fresh();
    append_n(5);
    char lines[8][512];
    read_lines(lines, 8);
    memmove(lines[1], lines[2], sizeof lines[0] * 3); /* line 2 removed */
    write_lines(lines, 4);
    luar_buf_t msg;
    luar_buf_init(&msg, 0);
    size_t bad = 0;
    CHECK_EQ_INT(verify(&msg, &bad, NULL), LUAR_EPARSE);
    CHECK_EQ_INT(bad, 2);
    CHECK(strstr(msg.data, "deleted") != NULL);
    /* The first line deleted: the new first line is not the start of a chain. */
    write_lines(lines + 1, 3);
    CHECK_EQ_INT(verify(&msg, &bad, NULL), LUAR_EPARSE);
    CHECK_EQ_INT(bad, 1);
    CHECK(strstr(msg.data, "genesis") != NULL);
    luar_buf_free(&msg);
    cleanup();
}

TEST(test_audit_verify_names_reordered_and_inserted_lines)
{
    fresh();
    append_n(5);
    char lines[8][512], swapped[8][512];
    read_lines(lines, 8);
    memcpy(swapped, lines, sizeof lines);
    memcpy(swapped[2], lines[3], sizeof lines[0]);
    memcpy(swapped[3], lines[2], sizeof lines[0]);
    write_lines(swapped, 5);
    luar_buf_t msg;
    luar_buf_init(&msg, 0);
    size_t bad = 0;
    CHECK_EQ_INT(verify(&msg, &bad, NULL), LUAR_EPARSE);
    CHECK_EQ_INT(bad, 3);
    CHECK(strstr(msg.data, "reordered") != NULL);
    /* A copy of line 2 inserted after line 4: line 5 still follows line 4 ... */
    memcpy(swapped, lines, sizeof lines);
    memcpy(swapped[4], lines[1], sizeof lines[0]);
    memcpy(swapped[5], lines[4], sizeof lines[0]);
    write_lines(swapped, 6);
    CHECK_EQ_INT(verify(&msg, &bad, NULL), LUAR_EPARSE);
    CHECK_EQ_INT(bad, 5);
    CHECK(strstr(msg.data, "inserted or moved") != NULL);
    /* ... and a line that is not a record at all. */
    memcpy(swapped, lines, sizeof lines);
    strcpy(swapped[1], "{\"action\":\"secret.set\"}");
    write_lines(swapped, 5);
    CHECK_EQ_INT(verify(&msg, &bad, NULL), LUAR_EPARSE);
    CHECK_EQ_INT(bad, 2);
    CHECK(strstr(msg.data, "not an audit record") != NULL);
    luar_buf_free(&msg);
    cleanup();
}

TEST(test_audit_torn_last_line_is_reported_and_the_chain_goes_on)
{
    fresh();
    append_n(2);
    FILE *f = fopen(path, "a");
    fputs("{\"prev\":\"abc", f); /* a crash mid-write */
    fclose(f);
    luar_buf_t msg;
    luar_buf_init(&msg, 0);
    size_t bad = 0, records = 0;
    CHECK_EQ_INT(verify(&msg, &bad, NULL), LUAR_EPARSE);
    CHECK_EQ_INT(bad, 3);
    CHECK(strstr(msg.data, "incomplete") != NULL);
    append_n(1);
    char lines[8][512];
    CHECK_EQ_INT(read_lines(lines, 8), 4); /* the new record starts on a line of its own */
    CHECK(strncmp(lines[3], "{\"prev\":\"", 9) == 0);
    CHECK_EQ_INT(verify(&msg, &bad, &records), LUAR_EPARSE);
    CHECK_EQ_INT(bad, 3);
    luar_buf_free(&msg);
    cleanup();
}

TEST(test_audit_lines_never_hold_a_watched_secret)
{
    fresh();
    luar_secret_watch("test", "hunter2-hunter2", 15);
    const char *f = "\"name\":\"DB_PASSWORD\",\"oops\":\"hunter2-hunter2\"";
    CHECK_EQ_INT(luar_audit_append_to(path, "admin", "secret.set", f, strlen(f), NULL), 0);
    char lines[2][512];
    read_lines(lines, 2);
    CHECK(strstr(lines[0], "hunter2") == NULL);
    CHECK(strstr(lines[0], "\"oops\":\"[REDACTED]\"") != NULL);
    luar_buf_t msg;
    luar_buf_init(&msg, 0);
    CHECK_EQ_INT(verify(&msg, NULL, NULL), 0);
    luar_buf_free(&msg);
    luar_secret_unwatch_all();
    cleanup();
}

/* Two processes appending at once still make one unbroken chain. */
TEST(test_audit_concurrent_writers_keep_one_chain)
{
    fresh();
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            for (int i = 0; i < 40; i++)
                if (luar_audit_append_to(path, "cli", "secret.set", NULL, 0, NULL) != 0)
                    _exit(1);
            _exit(0);
        }
    }
    for (int k = 0; k < 2; k++) {
        int st = 0;
        waitpid(kids[k], &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    luar_buf_t msg;
    luar_buf_init(&msg, 0);
    size_t records = 0;
    CHECK_EQ_INT(verify(&msg, NULL, &records), 0);
    CHECK_EQ_INT(records, 80);
    luar_buf_free(&msg);
    cleanup();
}

TEST(test_audit_missing_file_and_no_configured_file)
{
    fresh();
    luar_buf_t msg;
    luar_buf_init(&msg, 0);
    CHECK_EQ_INT(verify(&msg, NULL, NULL), LUAR_ENOTFOUND);
    luar_audit_set_file(NULL);
    CHECK_EQ_INT(luar_audit_append("cli", "x", NULL, 0, &msg), LUAR_EINVAL);
    luar_audit_set_file(path);
    CHECK_EQ_STR(luar_audit_file(), path);
    CHECK_EQ_INT(luar_audit_append("admin", "reload", NULL, 0, &msg), 0);
    size_t records = 0;
    CHECK_EQ_INT(verify(&msg, NULL, &records), 0);
    CHECK_EQ_INT(records, 1);
    luar_audit_set_file(NULL);
    luar_buf_free(&msg);
    cleanup();
}

int main(void)
{
    RUN(test_audit_chain_starts_at_genesis_and_links_each_line);
    RUN(test_audit_verify_names_an_edited_line);
    RUN(test_audit_verify_names_a_deleted_line);
    RUN(test_audit_verify_names_reordered_and_inserted_lines);
    RUN(test_audit_torn_last_line_is_reported_and_the_chain_goes_on);
    RUN(test_audit_lines_never_hold_a_watched_secret);
    RUN(test_audit_concurrent_writers_keep_one_chain);
    RUN(test_audit_missing_file_and_no_configured_file);
    return DONE();
}
