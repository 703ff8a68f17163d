/*
 * Stripe's form encoding. The API takes application/x-www-form-urlencoded bodies (and query
 * strings) whose keys spell out nesting the way Rails and PHP do:
 *
 *   { amount = 2000, metadata = { order = "A-1" }, items = { { price = "p_1" } },
 *     expand = { "customer" }, capture = false }
 *   → amount=2000&capture=false&expand[0]=customer&items[0][price]=p_1&metadata[order]=A-1
 *
 * Choices, all as Stripe's official libraries make them (stripe-node's qs settings):
 * - map keys in byte order at every level, so a body is the same bytes every time (tests,
 *   logs, signatures of requests);
 * - a list (keys exactly 1..n) is indexed from 0: `items[0][price]`;
 * - brackets stay literal; everything else but A-Z a-z 0-9 - _ . ~ is percent-encoded (a
 *   space as %20), in keys and values alike;
 * - true/false as words; integers in decimal; a float with an integral value as an integer
 *   (10.0 → "10": amounts are integers to Stripe), other floats with the fewest digits that
 *   read back exactly;
 * - an empty string, an empty table or luar.json.null send `key=` (empty), which is how
 *   Stripe unsets a field (`metadata[k]=` removes k; `metadata=` removes every key).
 * Anything else (functions, userdata, NaN, a table mixing list and map keys, keys that are
 * neither strings nor list positions, nesting deeper than STRIPE_FORM_MAX_DEPTH) raises
 * an error naming the key path.
 *
 * The output accumulates in a userdata-owned buffer, so a Lua error in the middle leaks
 * nothing (the garbage collector frees it).
 */
#include "stripe.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STRIPE_FORM_MAX_DEPTH 32
#define SB_MT "luar.stripe.formbuf"

typedef struct sb {
    char *p;
    size_t n, cap;
} sb_t;

static int sb_gc(lua_State *L)
{
    sb_t *b = lua_touserdata(L, 1);
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
    return 0;
}

/* Pushes a new empty buffer userdata. [-0, +1, m] */
static sb_t *sb_new(lua_State *L)
{
    sb_t *b = lua_newuserdatauv(L, sizeof *b, 0);
    memset(b, 0, sizeof *b);
    if (luaL_newmetatable(L, SB_MT)) {
        lua_pushcfunction(L, sb_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return b;
}

static void sb_put(lua_State *L, sb_t *b, const char *s, size_t n)
{
    if (b->cap - b->n < n) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->n < n) {
            if (cap > ((size_t)1 << 30))
                luaL_error(L, "stripe: encoded parameters are larger than 1 GiB");
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (p == NULL)
            luaL_error(L, "stripe: out of memory encoding parameters");
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void sb_puts(lua_State *L, sb_t *b, const char *s)
{
    sb_put(L, b, s, strlen(s));
}

/* Percent-encodes s into b (RFC 3986 unreserved characters kept). */
static void sb_escape(lua_State *L, sb_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            sb_put(L, b, (const char *)&c, 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            sb_put(L, b, e, 3);
        }
    }
}

/* Raises "stripe: cannot encode <key path>: <what>" ("params" at the top level). */
static void fail(lua_State *L, sb_t *key, const char *what)
{
    int top = key->n == 0;
    sb_put(L, key, "", 1);
    luaL_error(L, "stripe: cannot encode %s: %s", top ? "params" : key->p, what);
}

/* Formats a number as Stripe expects it into buf. Returns 0, or -1 for NaN/inf. */
static int format_number(lua_State *L, int idx, char *buf, size_t size)
{
    if (lua_isinteger(L, idx)) {
        snprintf(buf, size, "%lld", (long long)lua_tointeger(L, idx));
        return 0;
    }
    double d = lua_tonumber(L, idx);
    if (!isfinite(d))
        return -1;
    if (d == floor(d) && fabs(d) < 9007199254740992.0) { /* 2^53: exact as an integer */
        snprintf(buf, size, "%.0f", d);
        return 0;
    }
    for (int prec = 15; prec <= 17; prec++) { /* the shortest text that reads back */
        snprintf(buf, size, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    return 0;
}

/* Number of list items when the table at idx has exactly the keys 1..n (n >= 1), 0 when
 * it has no integer keys at all, -1 when it mixes them or has holes. */
static lua_Integer list_length(lua_State *L, int idx)
{
    lua_Integer n = 0, max = 0;
    size_t others = 0;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pop(L, 1);
        if (lua_isinteger(L, -1)) {
            lua_Integer k = lua_tointeger(L, -1);
            n++;
            if (k > max)
                max = k;
            if (k < 1)
                others++;
        } else {
            others++;
        }
    }
    if (n == 0)
        return 0;
    return others == 0 && max == n ? n : -1;
}

static int key_cmp(const void *a, const void *b)
{
    const char *const *x = a, *const *y = b;
    /* Keys are pushed as Lua strings; compare as bytes (a 0-byte cannot be a Stripe key,
     * and is refused before sorting). */
    return strcmp(*x, *y);
}

static void encode_value(lua_State *L, int idx, sb_t *out, sb_t *key, int depth);

/* Encodes the table at idx: a list, or a map with its keys sorted. */
static void encode_table(lua_State *L, int idx, sb_t *out, sb_t *key, int depth)
{
    if (depth >= STRIPE_FORM_MAX_DEPTH)
        fail(L, key, "tables nest deeper than 32 levels (a cycle?)");
    luaL_checkstack(L, 8, "stripe: parameters nest too deep");
    size_t base = key->n;
    lua_Integer n = list_length(L, idx);
    if (n < 0)
        fail(L, key, "a table must be a list (keys 1..n, no holes) or a map of string keys");
    if (n > 0) {
        if (base == 0)
            fail(L, key, "the parameters must be a map of names, not a list");
        for (lua_Integer i = 1; i <= n; i++) {
            char num[32];
            snprintf(num, sizeof num, "[%lld]", (long long)(i - 1));
            sb_puts(L, key, num);
            lua_rawgeti(L, idx, i);
            encode_value(L, lua_gettop(L), out, key, depth + 1);
            lua_pop(L, 1);
            key->n = base;
        }
        return;
    }
    /* A map: gather its keys in a Lua table (keeps them alive), sort their pointers. */
    size_t count = 0;
    lua_newtable(L);
    int keys = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) {
            sb_puts(L, key, base ? "[?]" : "?");
            fail(L, key, "keys must be strings (or list positions 1..n)");
        }
        size_t klen;
        const char *k = lua_tolstring(L, -1, &klen);
        if (klen == 0 || memchr(k, '\0', klen) != NULL)
            fail(L, key, "a key is empty or holds a NUL byte");
        lua_pushvalue(L, -1);
        lua_rawseti(L, keys, (lua_Integer)++count);
    }
    if (count == 0) { /* {} unsets the field, like "" */
        if (base == 0)
            return; /* no parameters at all */
        sb_put(L, key, "", 1);
        if (out->n)
            sb_put(L, out, "&", 1);
        sb_put(L, out, key->p, key->n - 1);
        sb_put(L, out, "=", 1);
        key->n = base;
        return;
    }
    const char **sorted = lua_newuserdatauv(L, count * sizeof *sorted, 0);
    for (size_t i = 0; i < count; i++) {
        lua_rawgeti(L, keys, (lua_Integer)i + 1);
        sorted[i] = lua_tostring(L, -1); /* kept alive by `keys` */
        lua_pop(L, 1);
    }
    qsort(sorted, count, sizeof *sorted, key_cmp);
    for (size_t i = 0; i < count; i++) {
        if (base)
            sb_put(L, key, "[", 1);
        sb_escape(L, key, sorted[i], strlen(sorted[i]));
        if (base)
            sb_put(L, key, "]", 1);
        lua_pushstring(L, sorted[i]);
        lua_rawget(L, idx);
        encode_value(L, lua_gettop(L), out, key, depth + 1);
        lua_pop(L, 1);
        key->n = base;
    }
    lua_pop(L, 2); /* sorted, keys */
}

static void put_pair(lua_State *L, sb_t *out, sb_t *key, const char *v, size_t vlen)
{
    if (out->n)
        sb_put(L, out, "&", 1);
    sb_put(L, out, key->p, key->n);
    sb_put(L, out, "=", 1);
    sb_escape(L, out, v, vlen);
}

static void encode_value(lua_State *L, int idx, sb_t *out, sb_t *key, int depth)
{
    char num[64];
    switch (lua_type(L, idx)) {
    case LUA_TTABLE:
        encode_table(L, idx, out, key, depth);
        return;
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        put_pair(L, out, key, s, len);
        return;
    }
    case LUA_TNUMBER:
        if (format_number(L, idx, num, sizeof num) != 0)
            fail(L, key, "NaN and infinities have no form encoding");
        put_pair(L, out, key, num, strlen(num));
        return;
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx))
            put_pair(L, out, key, "true", 4);
        else
            put_pair(L, out, key, "false", 5);
        return;
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL) { /* luar.json.null: unset the field */
            put_pair(L, out, key, "", 0);
            return;
        }
        /* fall through */
    default: {
        char what[80];
        snprintf(what, sizeof what, "a %s has no form encoding", luaL_typename(L, idx));
        fail(L, key, what);
    }
    }
}

void stripe_form_encode(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    sb_t *out = sb_new(L);
    sb_t *key = sb_new(L);
    if (lua_type(L, idx) == LUA_TTABLE)
        encode_table(L, idx, out, key, 0);
    else if (!lua_isnil(L, idx))
        luaL_error(L, "stripe: parameters must be a table, not a %s", luaL_typename(L, idx));
    lua_pushlstring(L, out->p ? out->p : "", out->n);
    lua_replace(L, -3);
    lua_pop(L, 1);
}

int stripe_l_encode(lua_State *L)
{
    stripe_form_encode(L, 1);
    return 1;
}

int stripe_l_escape(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    sb_t *b = sb_new(L);
    sb_escape(L, b, s, len);
    lua_pushlstring(L, b->p ? b->p : "", b->n);
    return 1;
}
