/*
 * The set of watched secret values (see redact.h) and the scrubber.
 *
 * Matching is a filtered, strided scan. Every entry is at least 6 bytes long, so each
 * occurrence in a text fully contains the 4-byte windows at its offsets 0, 1 and 2, one of
 * which starts at a multiple of 3. The filter (65536 bits) holds those three windows of
 * every entry; the scan tests only the windows at positions 0, 3, 6, … and, on a hit at p,
 * looks for an entry starting at p-2, p-1 or p (leftmost first) among the entries sorted
 * by their first 4 bytes. With a few dozen values the filter hits a random position about
 * once in a few hundred, so the scan costs a load, a multiply and a bit test every third
 * byte.
 */
#include "secrets/redact.h"
#include "common/error.h"
#include "log/log.h"

#include <openssl/crypto.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FILTER_BITS 65536
#define STRIDE 3 /* LUAR_SECRET_MIN_LEN - 4 + 1 */

_Static_assert(LUAR_SECRET_MIN_LEN - 4 + 1 >= STRIDE, "every entry must hold STRIDE windows");

/* One string to find: a watched value or one of its escaped spellings. */
typedef struct entry {
    uint32_t prefix; /* its first 4 bytes, as loaded by window() */
    size_t len;
    char *bytes;
} entry_t;

static struct {
    entry_t *entries; /* sorted by prefix, then longest first */
    size_t nentries, cap;
    size_t nvalues; /* distinct watched values (each has 1 to 3 entries) */
    unsigned generation;
    int warned_short, warned_full;
    uint64_t filter[FILTER_BITS / 64];
} g_set;

static uint32_t window(const char *p)
{
    uint32_t x;
    memcpy(&x, p, sizeof x);
    return x;
}

static uint32_t filter_slot(uint32_t prefix)
{
    return (prefix * 0x9E3779B1u) >> 16;
}

/* Index of the first entry whose prefix is >= `prefix`. */
static size_t lower_bound(uint32_t prefix)
{
    size_t lo = 0, hi = g_set.nentries;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (g_set.entries[mid].prefix < prefix)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int has_entry(const char *s, size_t len)
{
    uint32_t prefix = window(s);
    for (size_t i = lower_bound(prefix); i < g_set.nentries && g_set.entries[i].prefix == prefix;
         i++) {
        if (g_set.entries[i].len == len && memcmp(g_set.entries[i].bytes, s, len) == 0)
            return 1;
    }
    return 0;
}

/* Inserts `s` (>= 4 bytes) in sorted position unless it is there already. */
static int add_entry(const char *s, size_t len)
{
    if (has_entry(s, len))
        return 0;
    if (g_set.nentries == g_set.cap) {
        size_t cap = g_set.cap ? g_set.cap * 2 : 16;
        entry_t *e = realloc(g_set.entries, cap * sizeof *e);
        if (e == NULL)
            return LUAR_ENOMEM;
        g_set.entries = e;
        g_set.cap = cap;
    }
    char *copy = malloc(len);
    if (copy == NULL)
        return LUAR_ENOMEM;
    memcpy(copy, s, len);
    uint32_t prefix = window(s);
    size_t at = lower_bound(prefix);
    while (at < g_set.nentries && g_set.entries[at].prefix == prefix &&
           g_set.entries[at].len >= len)
        at++;
    memmove(g_set.entries + at + 1, g_set.entries + at, (g_set.nentries - at) * sizeof(entry_t));
    g_set.entries[at] = (entry_t){.prefix = prefix, .len = len, .bytes = copy};
    g_set.nentries++;
    for (int k = 0; k < STRIDE; k++) {
        uint32_t slot = filter_slot(window(s + k));
        g_set.filter[slot / 64] |= (uint64_t)1 << (slot % 64);
    }
    return 0;
}

/*
 * Appends `s` as the body of a JSON string the way lua-cjson writes it: like luar's own
 * escaping but '/' is "\/", and \b and \f have short forms; bytes >= 0x80 pass through.
 */
static int cjson_escape(luar_buf_t *out, const unsigned char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    static const char short_from[] = "\"\\/\b\f\n\r\t", short_to[] = "\"\\/bfnrt";
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < len; i++) {
        unsigned char c = s[i];
        char esc[7] = {'\\', 0, 0, 0, 0, 0, 0};
        size_t n = 2;
        const char *hit = c ? memchr(short_from, c, sizeof short_from - 1) : NULL;
        if (hit != NULL) {
            esc[1] = short_to[hit - short_from];
        } else if (c < 0x20 || c == 0x7f) {
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        } else {
            esc[0] = (char)c;
            n = 1;
        }
        rc = luar_buf_append(out, esc, n);
    }
    return rc;
}

static void warn_short(const char *what)
{
    if (g_set.warned_short)
        return;
    g_set.warned_short = 1;
    luar_logf(LUAR_LOG_WARN,
              "%s is shorter than %d bytes and cannot be redacted from logs (it would wreck "
              "every line that happens to contain it): use a longer value. Later short "
              "values are not reported.",
              what ? what : "a secret value", LUAR_SECRET_MIN_LEN);
}

int luar_secret_watch(const char *what, const void *value, size_t len)
{
    int rc;
    if (len == 0)
        return 0;
    if (len < LUAR_SECRET_MIN_LEN) {
        warn_short(what);
        return LUAR_EINVAL;
    }
    if (has_entry(value, len))
        return 0;
    if (g_set.nvalues >= LUAR_SECRET_MAX_VALUES) {
        if (!g_set.warned_full)
            luar_logf(LUAR_LOG_WARN,
                      "%d secret values are watched already; %s is not "
                      "redacted from logs",
                      LUAR_SECRET_MAX_VALUES, what ? what : "a new one");
        g_set.warned_full = 1;
        return LUAR_ETOOBIG;
    }
    luar_buf_t json, cjson;
    luar_buf_init(&json, 0);
    luar_buf_init(&cjson, 0);
    rc = add_entry(value, len);
    if (rc == 0)
        rc = luar_buf_append_json_string(&json, value, len);
    if (rc == 0 && (json.len - 2 != len || memcmp(json.data + 1, value, len) != 0))
        rc = add_entry(json.data + 1, json.len - 2);
    if (rc == 0)
        rc = cjson_escape(&cjson, value, len);
    if (rc == 0 && cjson.len != len)
        rc = add_entry(cjson.data, cjson.len);
    if (json.data)
        OPENSSL_cleanse(json.data, json.len);
    if (cjson.data)
        OPENSSL_cleanse(cjson.data, cjson.len);
    luar_buf_free(&json);
    luar_buf_free(&cjson);
    g_set.nvalues++;
    g_set.generation++;
    return rc;
}

size_t luar_secret_watching(void)
{
    return g_set.nvalues;
}

unsigned luar_secret_generation(void)
{
    return g_set.generation;
}

/* The longest entry matching `s` at its start (`left` bytes available), or NULL. */
static const entry_t *match_at(const char *s, size_t left, uint32_t prefix)
{
    for (size_t i = lower_bound(prefix); i < g_set.nentries && g_set.entries[i].prefix == prefix;
         i++) {
        const entry_t *e = &g_set.entries[i];
        if (e->len <= left && memcmp(e->bytes + 4, s + 4, e->len - 4) == 0)
            return e;
    }
    return NULL;
}

size_t luar_secret_find(const char *s, size_t len, size_t *match_len)
{
    if (g_set.nentries == 0 || len < LUAR_SECRET_MIN_LEN)
        return len;
    /* The hot loop: one unaligned load, a multiply and a bit test every STRIDE bytes. */
    const uint64_t *filter = g_set.filter;
    for (size_t p = 0; p + 4 <= len; p += STRIDE) {
        uint32_t slot = filter_slot(window(s + p));
        if (!(filter[slot >> 6] & (uint64_t)1 << (slot & 63)))
            continue;
        for (size_t k = STRIDE; k-- > 0;) {
            if (k > p || p - k + 4 > len)
                continue;
            size_t at = p - k;
            const entry_t *e = match_at(s + at, len - at, window(s + at));
            if (e) {
                *match_len = e->len;
                return at;
            }
        }
    }
    return len;
}

int luar_secret_scrub(luar_buf_t *out, const char *s, size_t len)
{
    size_t orig = out->len, done = 0, match = 0;
    int replaced = 0, rc = 0;
    while (rc == 0 && done < len) {
        size_t at = luar_secret_find(s + done, len - done, &match);
        rc = luar_buf_append(out, s + done, at);
        if (rc == 0 && at < len - done) {
            rc = luar_buf_puts(out, LUAR_SECRET_REDACTED);
            replaced++;
            at += match;
        }
        done += at;
    }
    if (rc == 0 && out->data == NULL)
        rc = luar_buf_append(out, "", 0);
    if (rc != 0) {
        if (out->data) {
            out->len = orig;
            out->data[orig] = '\0';
        }
        return rc;
    }
    return replaced;
}

const char *luar_secret_clean(const char *s, luar_buf_t *scratch)
{
    size_t match;
    if (s == NULL || g_set.nentries == 0)
        return s;
    size_t len = strlen(s);
    if (luar_secret_find(s, len, &match) == len)
        return s;
    luar_buf_reset(scratch);
    if (luar_secret_scrub(scratch, s, len) < 0)
        return LUAR_SECRET_REDACTED;
    return scratch->data;
}

void luar_secret_unwatch_all(void)
{
    for (size_t i = 0; i < g_set.nentries; i++) {
        OPENSSL_cleanse(g_set.entries[i].bytes, g_set.entries[i].len);
        free(g_set.entries[i].bytes);
    }
    free(g_set.entries);
    unsigned generation = g_set.generation;
    memset(&g_set, 0, sizeof g_set);
    g_set.generation = generation + 1;
}
