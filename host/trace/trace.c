/* W3C Trace Context ids: parsing, formatting and generation (see trace.h). */
#include "trace/trace.h"
#include "crypto/crypto.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static const char hexdigits[] = "0123456789abcdef";
double luar_trace_sample_rate = 1.0;
static uint64_t rng_state;
static int rng_ready;

/* splitmix64: fast, well mixed, enough for identifiers. */
static uint64_t next_u64(void)
{
    if (!rng_ready) {
        if (luar_crypto_random(&rng_state, sizeof rng_state) != 0)
            rng_state = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)&rng_state;
        rng_ready = 1;
    }
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Writes 16 hex digits of a nonzero random value. */
static void random_hex16(char *out)
{
    uint64_t v;
    do
        v = next_u64();
    while (v == 0);
    for (int i = 15; i >= 0; i--, v >>= 4)
        out[i] = hexdigits[v & 15];
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1; /* upper case is invalid in traceparent */
}

/* 1 when s[0..n) is lower-case hex and not all zeros. */
static int hex_id(const char *s, size_t n)
{
    int nonzero = 0;
    for (size_t i = 0; i < n; i++) {
        int v = hexval(s[i]);
        if (v < 0)
            return 0;
        nonzero |= v;
    }
    return nonzero != 0;
}

int luar_trace_parse(const char *v, size_t len, luar_trace_t *out)
{
    while (len > 0 && (v[0] == ' ' || v[0] == '\t'))
        v++, len--;
    while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))
        len--;
    if (len < LUAR_TRACEPARENT_LEN)
        return -1;
    int ver_hi = hexval(v[0]), ver_lo = hexval(v[1]);
    if (ver_hi < 0 || ver_lo < 0 || (ver_hi == 15 && ver_lo == 15))
        return -1;
    /* Version 00 is exactly 55 characters; a later version may append "-…". */
    if ((ver_hi == 0 && ver_lo == 0 && len != LUAR_TRACEPARENT_LEN) ||
        (len > LUAR_TRACEPARENT_LEN && v[LUAR_TRACEPARENT_LEN] != '-'))
        return -1;
    if (v[2] != '-' || v[35] != '-' || v[52] != '-')
        return -1;
    if (!hex_id(v + 3, 32) || !hex_id(v + 36, 16))
        return -1;
    int f_hi = hexval(v[53]), f_lo = hexval(v[54]);
    if (f_hi < 0 || f_lo < 0)
        return -1;
    memcpy(out->trace_id, v + 3, 32);
    out->trace_id[32] = '\0';
    memcpy(out->parent_id, v + 36, 16);
    out->parent_id[16] = '\0';
    out->span_id[0] = '\0';
    out->flags = (uint8_t)(f_hi << 4 | f_lo);
    return 0;
}

void luar_trace_child(luar_trace_t *t, const luar_trace_t *parent)
{
    if (parent && parent->trace_id[0]) {
        if (parent != t) {
            memcpy(t->trace_id, parent->trace_id, sizeof t->trace_id);
            memcpy(t->parent_id, parent->span_id, sizeof t->parent_id);
            t->flags = parent->flags;
        } else if (t->span_id[0]) {
            memcpy(t->parent_id, t->span_id, sizeof t->parent_id);
        }
    } else {
        random_hex16(t->trace_id);
        random_hex16(t->trace_id + 16);
        t->trace_id[32] = '\0';
        t->parent_id[0] = '\0';
        t->flags = luar_trace_sample_rate >= 1.0 ||
                   (double)(next_u64() >> 11) * 0x1.0p-53 < luar_trace_sample_rate;
    }
    random_hex16(t->span_id);
    t->span_id[16] = '\0';
}

void luar_trace_format(const luar_trace_t *t, char *out)
{
    snprintf(out, LUAR_TRACEPARENT_LEN + 1, "00-%s-%s-%c%c", t->trace_id, t->span_id,
             hexdigits[t->flags >> 4], hexdigits[t->flags & 15]);
}
