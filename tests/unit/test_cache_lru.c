/*
 * The in-process store of luar.cache (cache/lru.h): the byte bound, eviction order, expiry
 * at the caller's clock, entries too large for the bound, incr and its integers, and many
 * keys through the growing hash table.
 */
#include "cache/lru.h"
#include "common/error.h"
#include "test.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static const double T0 = 1700000000.0;

/* set with a NUL-terminated key and value. */
static int put(luar_lru_t *c, const char *k, const char *v, double expires_at)
{
    return luar_lru_set(c, k, strlen(k), v, strlen(v), expires_at);
}

/* The value of `k` at `now` as a string, or "<absent>". */
static const char *get(luar_lru_t *c, const char *k, double now)
{
    static char out[256];
    const char *v;
    size_t n;
    if (!luar_lru_get(c, k, strlen(k), now, &v, &n))
        return "<absent>";
    snprintf(out, sizeof out, "%.*s", (int)n, v);
    return out;
}

static luar_lru_stats_t stats(luar_lru_t *c)
{
    luar_lru_stats_t st;
    luar_lru_stats(c, &st);
    return st;
}

TEST(lru_stores_replaces_and_deletes)
{
    luar_lru_t *c = luar_lru_new(1 << 20);
    CHECK_EQ_STR(get(c, "a", T0), "<absent>");
    CHECK_EQ_INT(put(c, "a", "1", 0), 0);
    CHECK_EQ_STR(get(c, "a", T0), "1");
    CHECK_EQ_INT(put(c, "a", "two", 0), 0);
    CHECK_EQ_STR(get(c, "a", T0), "two");
    CHECK_EQ_INT(stats(c).entries, 1);
    CHECK_EQ_INT(stats(c).bytes, luar_lru_entry_size(1, 3));
    CHECK_EQ_INT(luar_lru_delete(c, "a", 1), 1);
    CHECK_EQ_INT(luar_lru_delete(c, "a", 1), 0);
    CHECK_EQ_STR(get(c, "a", T0), "<absent>");
    CHECK_EQ_INT(stats(c).bytes, 0);
    CHECK_EQ_INT(stats(c).entries, 0);
    luar_lru_free(c);
}

TEST(lru_keys_and_values_are_binary)
{
    luar_lru_t *c = luar_lru_new(1 << 20);
    const char k1[] = {'k', 0, '1'}, k2[] = {'k', 0, '2'};
    const char v[] = {0, 1, 0, 2};
    CHECK_EQ_INT(luar_lru_set(c, k1, 3, v, 4, 0), 0);
    CHECK_EQ_INT(luar_lru_set(c, k2, 3, "", 0, 0), 0);
    const char *out;
    size_t n = 99;
    CHECK_EQ_INT(luar_lru_get(c, k1, 3, T0, &out, &n), 1);
    CHECK_EQ_INT(n, 4);
    CHECK(memcmp(out, v, 4) == 0);
    CHECK_EQ_INT(luar_lru_get(c, k2, 3, T0, &out, &n), 1);
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(out[0], 0);                                /* NUL-terminated */
    CHECK_EQ_INT(luar_lru_get(c, "k", 1, T0, &out, &n), 0); /* a prefix is another key */
    luar_lru_free(c);
}

TEST(lru_stays_within_its_bytes_and_evicts_least_recently_used_first)
{
    /* Room for exactly four entries of a 2-byte key and a 10-byte value. */
    size_t one = luar_lru_entry_size(2, 10);
    luar_lru_t *c = luar_lru_new(4 * one);
    CHECK_EQ_INT(put(c, "k1", "0123456789", 0), 0);
    CHECK_EQ_INT(put(c, "k2", "0123456789", 0), 0);
    CHECK_EQ_INT(put(c, "k3", "0123456789", 0), 0);
    CHECK_EQ_INT(put(c, "k4", "0123456789", 0), 0);
    CHECK_EQ_INT(stats(c).bytes, 4 * one);
    CHECK_EQ_INT(stats(c).evictions, 0);
    /* A read makes k1 the most recently used: k2 is now the oldest. */
    CHECK_EQ_STR(get(c, "k1", T0), "0123456789");
    CHECK_EQ_INT(put(c, "k5", "0123456789", 0), 0);
    CHECK_EQ_STR(get(c, "k2", T0), "<absent>");
    CHECK_EQ_STR(get(c, "k1", T0), "0123456789");
    CHECK_EQ_INT(stats(c).evictions, 1);
    /* Replacing a value also makes it the newest: k3, then k4 go next. */
    CHECK_EQ_INT(put(c, "k5", "abcdefghij", 0), 0);
    CHECK_EQ_INT(put(c, "k6", "0123456789", 0), 0);
    CHECK_EQ_STR(get(c, "k3", T0), "<absent>");
    CHECK_EQ_STR(get(c, "k4", T0), "0123456789");
    /* An entry twice the size pushes out the two oldest (k1, k5 read just now is newer). */
    CHECK_EQ_INT(put(c, "k7", "0123456789012345678901234567890123456789", 0), 0);
    CHECK(stats(c).bytes <= 4 * one);
    CHECK_EQ_STR(get(c, "k4", T0), "0123456789");
    CHECK_EQ_STR(get(c, "k7", T0), "0123456789012345678901234567890123456789");
    CHECK_EQ_STR(get(c, "k1", T0), "<absent>");
    /* Shrinking the bound evicts at once, oldest first. */
    luar_lru_set_max_bytes(c, one);
    CHECK(stats(c).bytes <= one);
    CHECK_EQ_INT(stats(c).entries, 0); /* k7 alone is larger than one slot */
    luar_lru_set_max_bytes(c, 4 * one);
    CHECK_EQ_INT(put(c, "k1", "x", 0), 0);
    CHECK_EQ_STR(get(c, "k1", T0), "x");
    luar_lru_free(c);
}

TEST(lru_entry_larger_than_the_bound_is_refused_and_removes_the_old_value)
{
    luar_lru_t *c = luar_lru_new(luar_lru_entry_size(1, 100));
    CHECK_EQ_INT(put(c, "a", "small", 0), 0);
    CHECK_EQ_INT(put(c, "b", "kept", 0), 0);
    char big[102];
    memset(big, 'x', 101);
    big[101] = '\0';
    CHECK_EQ_INT(put(c, "a", big, 0), LUAR_ETOOBIG);
    CHECK_EQ_STR(get(c, "a", T0), "<absent>"); /* never the stale value */
    CHECK_EQ_STR(get(c, "b", T0), "kept");     /* and nothing else evicted */
    big[100] = '\0';
    CHECK_EQ_INT(put(c, "a", big, 0), 0); /* exactly the bound fits, alone */
    CHECK_EQ_STR(get(c, "b", T0), "<absent>");
    CHECK_EQ_INT(stats(c).bytes, luar_lru_entry_size(1, 100));
    luar_lru_free(c);
}

TEST(lru_entries_expire_at_the_callers_clock)
{
    luar_lru_t *c = luar_lru_new(1 << 20);
    CHECK_EQ_INT(put(c, "short", "s", T0 + 1.5), 0);
    CHECK_EQ_INT(put(c, "long", "l", T0 + 60), 0);
    CHECK_EQ_INT(put(c, "never", "n", 0), 0);
    CHECK_EQ_STR(get(c, "short", T0), "s");
    CHECK_EQ_STR(get(c, "short", T0 + 1.499), "s");
    CHECK_EQ_INT(stats(c).entries, 3);
    CHECK_EQ_STR(get(c, "short", T0 + 1.5), "<absent>"); /* at the instant: gone */
    CHECK_EQ_INT(stats(c).expired, 1);
    CHECK_EQ_INT(stats(c).entries, 2); /* freed when found expired */
    CHECK_EQ_STR(get(c, "long", T0 + 59), "l");
    CHECK_EQ_STR(get(c, "long", T0 + 61), "<absent>");
    CHECK_EQ_STR(get(c, "never", T0 + 1e9), "n");
    /* A set replaces the expiry with its own. */
    CHECK_EQ_INT(put(c, "k", "v", T0 + 1), 0);
    CHECK_EQ_INT(put(c, "k", "v", 0), 0);
    CHECK_EQ_STR(get(c, "k", T0 + 100), "v");
    /* An expired entry still counts until found or evicted, then goes first by age. */
    CHECK_EQ_INT(put(c, "gone", "g", T0 + 1), 0);
    CHECK_EQ_INT(stats(c).bytes,
                 luar_lru_entry_size(5, 1) + luar_lru_entry_size(4, 1) + luar_lru_entry_size(1, 1));
    CHECK_EQ_INT(luar_lru_delete(c, "gone", 4), 1);
    luar_lru_free(c);
}

static int incr(luar_lru_t *c, const char *k, int64_t delta, double expires_at, double now,
                int64_t *out)
{
    return luar_lru_incr(c, k, strlen(k), delta, expires_at, now, out);
}

TEST(lru_incr_creates_at_zero_adds_and_keeps_the_expiry)
{
    luar_lru_t *c = luar_lru_new(1 << 20);
    int64_t v = 0;
    CHECK_EQ_INT(incr(c, "n", 1, T0 + 10, T0, &v), 0);
    CHECK_EQ_INT(v, 1);
    CHECK_EQ_STR(get(c, "n", T0), "1");
    CHECK_EQ_INT(incr(c, "n", 41, T0 + 1000, T0 + 1, &v), 0); /* the ttl of creation stays */
    CHECK_EQ_INT(v, 42);
    CHECK_EQ_INT(incr(c, "n", -50, 0, T0 + 2, &v), 0);
    CHECK_EQ_INT(v, -8);
    CHECK_EQ_STR(get(c, "n", T0 + 2), "-8");
    CHECK_EQ_STR(get(c, "n", T0 + 10), "<absent>");
    CHECK_EQ_INT(incr(c, "n", 5, 0, T0 + 11, &v), 0); /* expired: starts again at 0 */
    CHECK_EQ_INT(v, 5);
    CHECK_EQ_STR(get(c, "n", T0 + 1e6), "5");
    CHECK_EQ_INT(incr(c, "z", 0, 0, T0, &v), 0);
    CHECK_EQ_INT(v, 0);
    CHECK_EQ_STR(get(c, "z", T0), "0");
    luar_lru_free(c);
}

TEST(lru_incr_refuses_what_is_not_an_integer_and_overflow)
{
    luar_lru_t *c = luar_lru_new(1 << 20);
    static const char *const not_int[] = {"sx", "f1.5", "1.0", "+1", "01",
                                          "-0", " 1",   "1 ",  "",   "9223372036854775808",
                                          "-",  "1e3",  "b1"};
    int64_t v = 77;
    for (size_t i = 0; i < sizeof not_int / sizeof not_int[0]; i++) {
        CHECK_EQ_INT(put(c, "k", not_int[i], 0), 0);
        CHECK_EQ_INT(incr(c, "k", 1, 0, T0, &v), LUAR_EINVAL);
        CHECK_EQ_STR(get(c, "k", T0), not_int[i]); /* unchanged */
    }
    CHECK_EQ_INT(put(c, "max", "9223372036854775807", 0), 0);
    CHECK_EQ_INT(incr(c, "max", 1, 0, T0, &v), LUAR_EINVAL);
    CHECK_EQ_STR(get(c, "max", T0), "9223372036854775807");
    CHECK_EQ_INT(incr(c, "max", -1, 0, T0, &v), 0);
    CHECK_EQ_INT(v, INT64_MAX - 1);
    CHECK_EQ_INT(put(c, "min", "-9223372036854775808", 0), 0);
    CHECK_EQ_INT(incr(c, "min", -1, 0, T0, &v), LUAR_EINVAL);
    CHECK_EQ_INT(incr(c, "min", INT64_MAX, 0, T0, &v), 0);
    CHECK_EQ_INT(v, -1);
    luar_lru_free(c);
}

TEST(lru_parse_int_accepts_canonical_decimals_only)
{
    int64_t v;
    CHECK_EQ_INT(luar_lru_parse_int("0", 1, &v), 0);
    CHECK_EQ_INT(v, 0);
    CHECK_EQ_INT(luar_lru_parse_int("-9223372036854775808", 20, &v), 0);
    CHECK(v == INT64_MIN);
    CHECK_EQ_INT(luar_lru_parse_int("9223372036854775807", 19, &v), 0);
    CHECK(v == INT64_MAX);
    CHECK_EQ_INT(luar_lru_parse_int("123", 2, &v), 0); /* only `len` bytes are read */
    CHECK_EQ_INT(v, 12);
    CHECK_EQ_INT(luar_lru_parse_int("-9223372036854775809", 20, &v), LUAR_EINVAL);
    CHECK_EQ_INT(luar_lru_parse_int("00", 2, &v), LUAR_EINVAL);
    CHECK_EQ_INT(luar_lru_parse_int("", 0, &v), LUAR_EINVAL);
    CHECK_EQ_INT(luar_lru_parse_int("18446744073709551616", 20, &v), LUAR_EINVAL);
}

TEST(lru_many_keys_grow_the_table_and_stay_reachable)
{
    luar_lru_t *c = luar_lru_new(64 << 20);
    char k[32], v[32];
    for (int i = 0; i < 20000; i++) {
        snprintf(k, sizeof k, "key:%d", i);
        snprintf(v, sizeof v, "%d", i * 3);
        CHECK_EQ_INT(put(c, k, v, 0), 0);
    }
    CHECK_EQ_INT(stats(c).entries, 20000);
    int wrong = 0;
    for (int i = 0; i < 20000; i++) {
        snprintf(k, sizeof k, "key:%d", i);
        snprintf(v, sizeof v, "%d", i * 3);
        wrong += strcmp(get(c, k, T0), v) != 0;
    }
    CHECK_EQ_INT(wrong, 0);
    for (int i = 0; i < 20000; i += 2) {
        snprintf(k, sizeof k, "key:%d", i);
        CHECK_EQ_INT(luar_lru_delete(c, k, strlen(k)), 1);
    }
    CHECK_EQ_INT(stats(c).entries, 10000);
    CHECK_EQ_STR(get(c, "key:19999", T0), "59997");
    luar_lru_free(c);
    luar_lru_free(NULL);
}

int main(void)
{
    RUN(lru_stores_replaces_and_deletes);
    RUN(lru_keys_and_values_are_binary);
    RUN(lru_stays_within_its_bytes_and_evicts_least_recently_used_first);
    RUN(lru_entry_larger_than_the_bound_is_refused_and_removes_the_old_value);
    RUN(lru_entries_expire_at_the_callers_clock);
    RUN(lru_incr_creates_at_zero_adds_and_keeps_the_expiry);
    RUN(lru_incr_refuses_what_is_not_an_integer_and_overflow);
    RUN(lru_parse_int_accepts_canonical_decimals_only);
    RUN(lru_many_keys_grow_the_table_and_stay_reachable);
    return DONE();
}
