/*
 * The encrypted secret store (host/secrets/store.c) and its atomic file replacement
 * (host/common/atomic_file.c): round trips, keys, and every way a file is refused.
 */
#include "common/atomic_file.h"
#include "common/buf.h"
#include "common/error.h"
#include "secrets/store.h"
#include "test.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];
static char path[128];
static luar_secrets_key_t key = {.set = 1, .from = "LUAR_SECRETS_KEY"};
static luar_secrets_key_t other = {.set = 1, .from = "LUAR_SECRETS_KEY"};

static void fresh_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/luar-store-XXXXXX");
    if (mkdtemp(dir) == NULL)
        abort();
    snprintf(path, sizeof path, "%s/secrets.enc", dir);
}

static void remove_dir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

/* Writes a store holding A=alpha-value and B=<binary value>. */
static void write_sample(void)
{
    luar_secret_store_t *s = luar_secret_store_new();
    luar_buf_t err;
    luar_buf_init(&err, 0);
    CHECK_EQ_INT(luar_secret_store_set(s, "B_KEY", "\0\1\2binary", 9, NULL), 0);
    CHECK_EQ_INT(luar_secret_store_set(s, "A_KEY", "alpha-value", 11, NULL), 0);
    CHECK_EQ_INT(luar_secret_store_write(s, path, &key, &err), 0);
    luar_buf_free(&err);
    luar_secret_store_free(s);
}

static luar_buf_t slurp(void)
{
    luar_buf_t b;
    luar_buf_init(&b, 0);
    CHECK_EQ_INT(luar_file_read(path, 1 << 20, &b, NULL), 0);
    return b;
}

static void spit(const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    fwrite(data, 1, len, f);
    fclose(f);
}

/* Reads the store at `path`; returns the rc and leaves the message in `err`. */
static int try_read(const luar_secrets_key_t *k, luar_buf_t *err)
{
    luar_secret_store_t *s = NULL;
    luar_buf_reset(err);
    int rc = luar_secret_store_read(path, k, &s, NULL, err);
    CHECK((rc == 0) == (s != NULL));
    luar_secret_store_free(s);
    return rc;
}

TEST(test_store_round_trip_keeps_names_values_and_order)
{
    fresh_dir();
    write_sample();
    luar_secret_store_t *s = NULL;
    luar_buf_t err;
    luar_buf_init(&err, 0);
    int exists = 0;
    CHECK_EQ_INT(luar_secret_store_read(path, &key, &s, &exists, &err), 0);
    CHECK_EQ_INT(exists, 1);
    CHECK_EQ_INT(luar_secret_store_count(s), 2);
    const char *v;
    size_t len;
    CHECK_EQ_STR(luar_secret_store_at(s, 0, &v, &len), "A_KEY");
    CHECK(len == 11 && memcmp(v, "alpha-value", 11) == 0);
    v = luar_secret_store_get(s, "B_KEY", &len);
    CHECK(v != NULL && len == 9 && memcmp(v, "\0\1\2binary", 9) == 0);
    CHECK(luar_secret_store_get(s, "C_KEY", &len) == NULL);
    /* Names are inside the encryption: neither they nor the values show in the file. */
    luar_buf_t file = slurp();
    CHECK(memmem(file.data, file.len, "A_KEY", 5) == NULL);
    CHECK(memmem(file.data, file.len, "alpha-value", 11) == NULL);
    CHECK(memcmp(file.data, "luar-secrets\n", 13) == 0);
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    CHECK_EQ_INT(luar_secret_store_delete(s, "A_KEY"), 0);
    CHECK_EQ_INT(luar_secret_store_delete(s, "A_KEY"), LUAR_ENOTFOUND);
    luar_buf_free(&file);
    luar_buf_free(&err);
    luar_secret_store_free(s);
    remove_dir();
}

TEST(test_store_missing_file_is_an_empty_store_even_without_a_key)
{
    fresh_dir();
    luar_secret_store_t *s = NULL;
    luar_buf_t err;
    luar_buf_init(&err, 0);
    int exists = 1;
    CHECK_EQ_INT(luar_secret_store_read(path, NULL, &s, &exists, &err), 0);
    CHECK(s != NULL && exists == 0 && luar_secret_store_count(s) == 0);
    luar_secret_store_free(s);
    luar_buf_free(&err);
    remove_dir();
}

TEST(test_store_wrong_key_names_both_key_ids_and_is_a_configuration_error)
{
    fresh_dir();
    write_sample();
    luar_buf_t err;
    luar_buf_init(&err, 0);
    char want[9], have[9];
    luar_aead_key_id(key.bytes, want);
    luar_aead_key_id(other.bytes, have);
    CHECK_EQ_INT(try_read(&other, &err), LUAR_ECONFIG);
    CHECK(strstr(err.data, "wrong key") != NULL);
    CHECK(strstr(err.data, want) != NULL && strstr(err.data, have) != NULL);
    CHECK(strstr(err.data, "LUAR_SECRETS_KEY") != NULL);
    CHECK_EQ_INT(try_read(NULL, &err), LUAR_ECONFIG);
    CHECK(strstr(err.data, "no key is configured") != NULL);
    luar_buf_free(&err);
    remove_dir();
}

TEST(test_store_truncated_file_is_corrupt_not_a_wrong_key)
{
    fresh_dir();
    write_sample();
    luar_buf_t file = slurp(), err;
    luar_buf_init(&err, 0);
    for (size_t n = 0; n < file.len; n++) {
        spit(file.data, n);
        int rc = try_read(&key, &err);
        CHECK_EQ_INT(rc, LUAR_EPARSE);
        if (n > 13 + 20)
            CHECK(strstr(err.data, "truncated") != NULL);
    }
    spit(file.data, file.len - 1);
    try_read(&key, &err);
    CHECK(strstr(err.data, "corrupt secrets file: truncated") != NULL);
    CHECK(strstr(err.data, "restore it from a backup") != NULL);
    luar_buf_free(&file);
    luar_buf_free(&err);
    remove_dir();
}

TEST(test_store_a_modified_byte_anywhere_is_refused)
{
    fresh_dir();
    write_sample();
    luar_buf_t file = slurp(), err;
    luar_buf_init(&err, 0);
    for (size_t i = 0; i < file.len; i++) {
        file.data[i] ^= 0x20;
        spit(file.data, file.len);
        int rc = try_read(&key, &err);
        CHECK(rc == LUAR_EPARSE || rc == LUAR_ECONFIG); /* key id bytes read as a wrong key */
        if (i < 13)
            CHECK(strstr(err.data, "not a luar secrets file") != NULL);
        else if (i >= 13 + 13)
            CHECK(strstr(err.data, "modified") != NULL);
        file.data[i] ^= 0x20;
    }
    spit(file.data, file.len);
    CHECK_EQ_INT(try_read(&key, &err), 0);
    luar_buf_free(&file);
    luar_buf_free(&err);
    remove_dir();
}

TEST(test_store_refuses_a_file_that_is_not_a_store)
{
    fresh_dir();
    spit("{\"STRIPE_KEY\":\"sk\"}\n", 20);
    luar_buf_t err;
    luar_buf_init(&err, 0);
    CHECK_EQ_INT(try_read(&key, &err), LUAR_EPARSE);
    CHECK(strstr(err.data, "not a luar secrets file") != NULL);
    luar_buf_free(&err);
    remove_dir();
}

TEST(test_store_empty_value_and_large_value_round_trip)
{
    fresh_dir();
    luar_secret_store_t *s = luar_secret_store_new(), *back = NULL;
    luar_buf_t err;
    luar_buf_init(&err, 0);
    char *big = malloc(LUAR_SECRET_VALUE_MAX);
    for (size_t i = 0; i < LUAR_SECRET_VALUE_MAX; i++)
        big[i] = (char)(i * 13);
    CHECK_EQ_INT(luar_secret_store_set(s, "EMPTY", "", 0, NULL), 0);
    CHECK_EQ_INT(luar_secret_store_set(s, "BIG", big, LUAR_SECRET_VALUE_MAX, NULL), 0);
    CHECK_EQ_INT(luar_secret_store_set(s, "TOO_BIG", big, LUAR_SECRET_VALUE_MAX + 1, NULL),
                 LUAR_ETOOBIG);
    CHECK_EQ_INT(luar_secret_store_write(s, path, &key, &err), 0);
    CHECK_EQ_INT(luar_secret_store_read(path, &key, &back, NULL, &err), 0);
    size_t len = 99;
    const char *v = luar_secret_store_get(back, "EMPTY", &len);
    CHECK(v != NULL && len == 0);
    v = luar_secret_store_get(back, "BIG", &len);
    CHECK(v != NULL && len == LUAR_SECRET_VALUE_MAX && memcmp(v, big, len) == 0);
    free(big);
    luar_secret_store_free(s);
    luar_secret_store_free(back);
    luar_buf_free(&err);
    remove_dir();
}

TEST(test_store_names_are_checked)
{
    luar_secret_store_t *s = luar_secret_store_new();
    int existed = -1;
    CHECK(luar_secret_name_valid("STRIPE_API_KEY"));
    CHECK(luar_secret_name_valid("stripe.live/api-key"));
    CHECK(!luar_secret_name_valid(""));
    CHECK(!luar_secret_name_valid(".hidden"));
    CHECK(!luar_secret_name_valid("has space"));
    CHECK(!luar_secret_name_valid("new\nline"));
    CHECK_EQ_INT(luar_secret_store_set(s, "bad name", "v", 1, NULL), LUAR_EINVAL);
    CHECK_EQ_INT(luar_secret_store_set(s, "X", "1", 1, &existed), 0);
    CHECK_EQ_INT(existed, 0);
    CHECK_EQ_INT(luar_secret_store_set(s, "X", "2", 1, &existed), 0);
    CHECK_EQ_INT(existed, 1);
    CHECK_EQ_INT(luar_secret_store_count(s), 1);
    luar_secret_store_free(s);
}

TEST(test_store_keys_parse_from_hex_and_base64)
{
    uint8_t k[32], want[32];
    luar_buf_t err;
    luar_buf_init(&err, 0);
    for (int i = 0; i < 32; i++)
        want[i] = (uint8_t)(0xf0 + i / 2);
    const char *hex = "f0f0f1f1f2f2f3f3f4f4f5f5f6f6f7f7f8f8f9f9fafafbfbfcfcfdfdfefeffff";
    CHECK_EQ_INT(luar_secrets_parse_key(hex, k, &err), 0);
    CHECK(memcmp(k, want, 32) == 0);
    CHECK_EQ_INT(
        luar_secrets_parse_key(
            "  F0F0F1F1F2F2F3F3F4F4F5F5F6F6F7F7F8F8F9F9FAFAFBFBFCFCFDFDFEFEFFFF\n", k, &err),
        0);
    CHECK(memcmp(k, want, 32) == 0);
    const char *b64 = "8PDx8fLy8/P09PX19vb39/j4+fn6+vv7/Pz9/f7+//8=";
    CHECK_EQ_INT(luar_secrets_parse_key(b64, k, &err), 0);
    CHECK(memcmp(k, want, 32) == 0);
    CHECK_EQ_INT(luar_secrets_parse_key("8PDx8fLy8/P09PX19vb39/j4+fn6+vv7/Pz9/f7+//8", k, &err), 0);
    CHECK_EQ_INT(luar_secrets_parse_key("8PDx8fLy8_P09PX19vb39_j4-fn6-vv7_Pz9_f7-__8", k, &err), 0);
    CHECK(memcmp(k, want, 32) == 0);
    /* 31 bytes, 33 bytes, not a key: refused without echoing the text. */
    CHECK_EQ_INT(luar_secrets_parse_key(hex + 2, k, &err), LUAR_EINVAL);
    CHECK_EQ_INT(luar_secrets_parse_key("8PDx8fLy8/P09PX19vb39/j4+fn6+vv7/Pz9/f7+//8A", k, &err),
                 LUAR_EINVAL);
    luar_buf_reset(&err);
    CHECK_EQ_INT(luar_secrets_parse_key("correct horse battery staple", k, &err), LUAR_EINVAL);
    CHECK(strstr(err.data, "64 hex digits") != NULL && strstr(err.data, "horse") == NULL);
    CHECK_EQ_INT(luar_secrets_parse_key("", k, &err), LUAR_EINVAL);
    luar_buf_free(&err);
}

/* A crash after the temporary file was written but before the rename. */
TEST(test_atomic_write_leaves_the_old_file_intact_when_the_rename_never_happened)
{
    fresh_dir();
    write_sample();
    luar_buf_t before = slurp(), err;
    luar_buf_init(&err, 0);
    luar_atomic_file_t f;
    CHECK_EQ_INT(luar_atomic_file_begin(&f, path, 0600, &err), 0);
    CHECK_EQ_INT(luar_atomic_file_write(&f, "half a new fi", 13, &err), 0);
    /* The process "dies" here: the descriptor is closed, nothing renamed, nothing cleaned. */
    char *tmp = strdup(f.tmp);
    close(f.fd);
    luar_buf_t after = slurp();
    CHECK(after.len == before.len && memcmp(after.data, before.data, before.len) == 0);
    CHECK_EQ_INT(try_read(&key, &err), 0);
    CHECK(access(tmp, F_OK) == 0); /* the stray temporary file is all that is left */
    CHECK(strncmp(tmp, path, strlen(path)) == 0 && strstr(tmp, ".tmp-") != NULL);
    /* The next write is not disturbed by the stray file. */
    write_sample();
    CHECK_EQ_INT(try_read(&key, &err), 0);
    f.fd = -1;
    luar_atomic_file_abort(&f);
    free(tmp);
    luar_buf_free(&before);
    luar_buf_free(&after);
    luar_buf_free(&err);
    remove_dir();
}

/* A write that fails half way (here: the file size limit, as a full disk would). */
TEST(test_atomic_write_failing_mid_file_keeps_the_old_file_and_cleans_up)
{
    fresh_dir();
    write_sample();
    luar_buf_t before = slurp(), err;
    luar_buf_init(&err, 0);
    struct rlimit saved, small = {.rlim_cur = 64, .rlim_max = 0};
    getrlimit(RLIMIT_FSIZE, &saved);
    small.rlim_max = saved.rlim_max;
    signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &small) == 0);
    luar_secret_store_t *s = luar_secret_store_new();
    char big[1000];
    memset(big, 'v', sizeof big);
    luar_secret_store_set(s, "BIG", big, sizeof big, NULL);
    int rc = luar_secret_store_write(s, path, &key, &err);
    setrlimit(RLIMIT_FSIZE, &saved);
    signal(SIGXFSZ, SIG_DFL);
    CHECK_EQ_INT(rc, LUAR_EIO);
    CHECK(strstr(err.data, "cannot write") != NULL);
    luar_buf_t after = slurp();
    CHECK(after.len == before.len && memcmp(after.data, before.data, before.len) == 0);
    /* No temporary file left behind. */
    char cmd[160];
    snprintf(cmd, sizeof cmd, "test $(ls -A %s | wc -l) -eq 1", dir);
    CHECK(system(cmd) == 0);
    luar_secret_store_free(s);
    luar_buf_free(&before);
    luar_buf_free(&after);
    luar_buf_free(&err);
    remove_dir();
}

TEST(test_atomic_write_sets_the_mode_whatever_the_umask)
{
    fresh_dir();
    mode_t old = umask(0);
    luar_buf_t err;
    luar_buf_init(&err, 0);
    CHECK_EQ_INT(luar_atomic_file_save(path, "x", 1, 0600, &err), 0);
    umask(old);
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    luar_buf_free(&err);
    remove_dir();
}

int main(void)
{
    for (int i = 0; i < 32; i++) {
        key.bytes[i] = (uint8_t)(i + 1);
        other.bytes[i] = (uint8_t)(i + 2);
    }
    RUN(test_store_round_trip_keeps_names_values_and_order);
    RUN(test_store_missing_file_is_an_empty_store_even_without_a_key);
    RUN(test_store_wrong_key_names_both_key_ids_and_is_a_configuration_error);
    RUN(test_store_truncated_file_is_corrupt_not_a_wrong_key);
    RUN(test_store_a_modified_byte_anywhere_is_refused);
    RUN(test_store_refuses_a_file_that_is_not_a_store);
    RUN(test_store_empty_value_and_large_value_round_trip);
    RUN(test_store_names_are_checked);
    RUN(test_store_keys_parse_from_hex_and_base64);
    RUN(test_atomic_write_leaves_the_old_file_intact_when_the_rename_never_happened);
    RUN(test_atomic_write_failing_mid_file_keeps_the_old_file_and_cleans_up);
    RUN(test_atomic_write_sets_the_mode_whatever_the_umask);
    return DONE();
}
