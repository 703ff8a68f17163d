/*
 * Checking the audit log's hash chain (see audit.h). Every line is hashed and its `prev`
 * read in one pass; the first line whose `prev` is not the hash of the line before it is
 * the break. To say what probably happened there, the break's `prev` is looked up among
 * the other lines' hashes: found earlier → lines were inserted or moved in between; found
 * later → lines were reordered; found nowhere → the line before was edited, or lines were
 * deleted.
 */
#include "audit/audit.h"
#include "common/error.h"
#include "crypto/crypto.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PREFIX "{\"prev\":\""
#define PREFIX_LEN (sizeof PREFIX - 1)

typedef struct link {
    uint8_t hash[32]; /* SHA-256 of the line */
    uint8_t prev[32]; /* its `prev` */
} link_t;

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Reads `prev` from a line that starts {"prev":"<64 lower-case hex>", and ends with }. */
static int parse_prev(const char *line, size_t len, uint8_t prev[32])
{
    if (len < PREFIX_LEN + 64 + 3 || memcmp(line, PREFIX, PREFIX_LEN) != 0 ||
        line[PREFIX_LEN + 64] != '"' || line[PREFIX_LEN + 65] != ',' || line[len - 1] != '}')
        return LUAR_EPARSE;
    for (int i = 0; i < 32; i++) {
        int hi = hex_digit(line[PREFIX_LEN + 2 * i]), lo = hex_digit(line[PREFIX_LEN + 2 * i + 1]);
        if (hi < 0 || lo < 0)
            return LUAR_EPARSE;
        prev[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static void to_hex(const uint8_t h[32], char out[65])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = digits[h[i] >> 4];
        out[2 * i + 1] = digits[h[i] & 15];
    }
    out[64] = '\0';
}

/* Explains the break at line `i` (0-based) of `n`. */
static void explain(const link_t *links, size_t n, size_t i, const uint8_t genesis[32],
                    const char *path, luar_buf_t *err)
{
    luar_buf_appendf(err, "%s:%zu: the chain breaks here: ", path, i + 1);
    if (i == 0) {
        luar_buf_puts(err, "the first line's prev is not the genesis hash (lines before it "
                           "were deleted, or it was edited)");
        return;
    }
    if (memcmp(links[i].prev, genesis, 32) == 0) {
        luar_buf_appendf(err,
                         "it claims to be the first record, yet %zu line%s come before it "
                         "(lines were inserted above it)",
                         i, i == 1 ? "" : "s");
        return;
    }
    for (size_t j = 0; j + 1 < i; j++) {
        if (memcmp(links[j].hash, links[i].prev, 32) == 0) {
            luar_buf_appendf(err,
                             "it follows line %zu in the chain, so lines %zu to %zu were "
                             "inserted or moved here",
                             j + 1, j + 2, i);
            return;
        }
    }
    for (size_t j = i + 1; j < n; j++) {
        if (memcmp(links[j].hash, links[i].prev, 32) == 0) {
            luar_buf_appendf(err, "it belongs after line %zu: lines were reordered", j + 1);
            return;
        }
    }
    luar_buf_appendf(err,
                     "its prev is not the hash of line %zu (line %zu was edited, or "
                     "lines between them were deleted)",
                     i, i);
}

int luar_audit_verify(const char *path, size_t *records, char head[65], size_t *bad_line,
                      luar_buf_t *err)
{
    uint8_t genesis[32];
    size_t n = 0, cap = 0, md_len = 0;
    link_t *links = NULL;
    char *line = NULL;
    size_t line_cap = 0;
    int rc = 0;
    *records = 0;
    *bad_line = 0;
    strcpy(head, LUAR_AUDIT_GENESIS);
    for (int i = 0; i < 32; i++)
        genesis[i] = (uint8_t)(hex_digit(LUAR_AUDIT_GENESIS[2 * i]) << 4 |
                               hex_digit(LUAR_AUDIT_GENESIS[2 * i + 1]));
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        luar_buf_appendf(err, "%s: %s", path, strerror(errno));
        return errno == ENOENT ? LUAR_ENOTFOUND : LUAR_EIO;
    }
    for (;;) {
        ssize_t got = getline(&line, &line_cap, f);
        if (got < 0)
            break;
        size_t len = (size_t)got;
        int terminated = len > 0 && line[len - 1] == '\n';
        if (terminated)
            len--;
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            link_t *grown = realloc(links, cap * sizeof *links);
            if (grown == NULL) {
                rc = LUAR_ENOMEM;
                luar_buf_appendf(err, "%s: out of memory", path);
                goto done;
            }
            links = grown;
        }
        link_t *l = &links[n++];
        uint8_t md[LUAR_CRYPTO_MAX_MD];
        luar_crypto_digest("sha256", line, len, md, &md_len);
        memcpy(l->hash, md, 32);
        if (!terminated) {
            luar_buf_appendf(err,
                             "%s:%zu: the last line is incomplete (no newline: a torn "
                             "write, or the file was cut)",
                             path, n);
            *bad_line = n;
            rc = LUAR_EPARSE;
            goto done;
        }
        if (parse_prev(line, len, l->prev) != 0) {
            luar_buf_appendf(err,
                             "%s:%zu: not an audit record (a record starts "
                             "{\"prev\":\"<64 hex digits>\", and is one JSON object)",
                             path, n);
            *bad_line = n;
            rc = LUAR_EPARSE;
            goto done;
        }
    }
    if (ferror(f)) {
        luar_buf_appendf(err, "%s: cannot read: %s", path, strerror(errno));
        rc = LUAR_EIO;
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const uint8_t *want = i == 0 ? genesis : links[i - 1].hash;
        if (memcmp(links[i].prev, want, 32) != 0) {
            explain(links, n, i, genesis, path, err);
            *bad_line = i + 1;
            rc = LUAR_EPARSE;
            goto done;
        }
    }
    *records = n;
    if (n > 0)
        to_hex(links[n - 1].hash, head);
done:
    fclose(f);
    free(line);
    free(links);
    return rc;
}
