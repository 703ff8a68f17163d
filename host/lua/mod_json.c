/*
 * luar.json: the host's decoder for valid JSON and its encoder (below), lua-cjson (a private
 * cjson.new() instance, so settings changed by scripts on `cjson` do not leak in) for the
 * texts the strict validator refuses; depth-limited to 128 levels both ways. decode returns
 * nil, err on invalid input instead of raising, so handlers need no pcall. Integers keep
 * all 64 bits both ways.
 */
#include "common/buf.h"
#include "common/error.h"
#include "common/json.h"
#include "lua/error.h"
#include "lua/modules.h"
#include "lua/util.h"

#include <lauxlib.h>
#include <lua-cjson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_DEPTH 128

static const char instance_key = 0;

static void call_setting(lua_State *L, const char *name, int value)
{
    lua_getfield(L, -1, name);
    lua_pushinteger(L, value);
    lua_call(L, 1, 0);
}

void luar_json_push_instance(lua_State *L)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &instance_key) == LUA_TTABLE)
        return;
    lua_pop(L, 1);
    luaL_requiref(L, "cjson", luaopen_cjson, 0);
    lua_getfield(L, -1, "new");
    lua_call(L, 0, 1);
    lua_remove(L, -2);
    call_setting(L, "decode_max_depth", JSON_MAX_DEPTH);
    call_setting(L, "encode_max_depth", JSON_MAX_DEPTH);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &instance_key);
}

/*
 * lua-cjson 2.1 decodes every number as a float; JSON has one number type, and Lua 5.4
 * prints 5.0 for a float five. Turns integral floats that fit an integer into integers,
 * walking the decoded value (depth is already bounded by the decoder). [-0, +0]
 */
static int integral(lua_State *L, int idx, lua_Integer *out)
{
    if (lua_type(L, idx) != LUA_TNUMBER || lua_isinteger(L, idx))
        return 0;
    lua_Number n = lua_tonumber(L, idx);
    return lua_numbertointeger(n, out) && (lua_Number)*out == n;
}

static void integerize(lua_State *L, int t, int depth)
{
    if (depth > JSON_MAX_DEPTH + 1 || !lua_checkstack(L, 4))
        return;
    t = lua_absindex(L, t);
    lua_pushnil(L);
    while (lua_next(L, t) != 0) {
        lua_Integer i;
        if (integral(L, -1, &i)) {
            lua_pushvalue(L, -2);
            lua_pushinteger(L, i);
            lua_rawset(L, t);
        } else if (lua_type(L, -1) == LUA_TTABLE) {
            integerize(L, -1, depth + 1);
        }
        lua_pop(L, 1);
    }
}

/* ---- the direct decoder ------------------------------------------------------------- */

/*
 * Texts that pass the host's strict validator (common/json.h: RFC 8259 exactly, valid
 * UTF-8, at most JSON_MAX_DEPTH levels) are decoded here, straight from the text: strings
 * without escapes pushed from where they lie, short integers without strtod, and every
 * table created at its final size once its members are on the stack (lua-cjson grows each
 * table one rehash at a time, then integerize walked the result again). A 2 KB webhook
 * event took 32 us through lua-cjson. The values are lua-cjson's to the bit: numbers go
 * through the same strtod and the same integral rule, later duplicate keys win, null is
 * cjson.null. Anything the validator refuses (lua-cjson is more lenient: raw control
 * characters, invalid UTF-8, Infinity, hex) goes to lua-cjson as before, errors included.
 */

/* Raised (as this key's address) when the stack cannot hold a container's members: the
 * text is then left to lua-cjson. */
static const char decline_key = 0;

typedef struct dec {
    const char *s, *end;
} dec_t;

static void dec_value(lua_State *L, dec_t *d);

static void dec_ws(dec_t *d)
{
    while (d->s < d->end && (*d->s == ' ' || *d->s == '\t' || *d->s == '\n' || *d->s == '\r'))
        d->s++;
}

static void dec_room(lua_State *L, int n)
{
    if (!lua_checkstack(L, n)) {
        lua_pushlightuserdata(L, (void *)&decline_key);
        lua_error(L);
    }
}

static int dec_hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v = v * 16 + (c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    return v;
}

/* A string at its opening quote; escapes are valid (validated text). */
static void dec_string(lua_State *L, dec_t *d)
{
    const char *p = ++d->s, *q = p;
    while (q < d->end && *q != '"' && *q != '\\')
        q++;
    if (q >= d->end || *q == '"') {
        lua_pushlstring(L, p, (size_t)(q - p));
        d->s = q + 1;
        return;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addlstring(&b, p, (size_t)(q - p));
    while (q < d->end && *q != '"') {
        if (*q != '\\') {
            p = q;
            while (q < d->end && *q != '"' && *q != '\\')
                q++;
            luaL_addlstring(&b, p, (size_t)(q - p));
            continue;
        }
        char e = q[1];
        q += 2;
        switch (e) {
        case 'b':
            luaL_addchar(&b, '\b');
            break;
        case 'f':
            luaL_addchar(&b, '\f');
            break;
        case 'n':
            luaL_addchar(&b, '\n');
            break;
        case 'r':
            luaL_addchar(&b, '\r');
            break;
        case 't':
            luaL_addchar(&b, '\t');
            break;
        case 'u': {
            unsigned long cp = (unsigned long)dec_hex4(q);
            q += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) { /* a high surrogate: its low half follows */
                cp = 0x10000 + ((cp - 0xD800) << 10) + ((unsigned long)dec_hex4(q + 2) - 0xDC00);
                q += 6;
            }
            char u[4];
            luaL_addlstring(&b, u, luar_utf8_put(u, cp));
            break;
        }
        default: /* '"', '\\' and '/' stand for themselves */
            luaL_addchar(&b, e);
            break;
        }
    }
    luaL_pushresult(&b);
    d->s = q + 1;
}

/*
 * A number. An integer without fraction or exponent that fits a Lua integer (64 bits) is
 * that integer, exactly: ids past 2^53 (Twitter, Discord, Shopify) survive a round trip,
 * where lua-cjson rounds them through a double. Anything else goes through strtod as a
 * float (the "e0" keeps Lua from reading a long integer exactly where lua-cjson rounds it),
 * then the integral rule of integerize, as lua-cjson would give it.
 */
static void dec_number(lua_State *L, dec_t *d)
{
    const char *p = d->s;
    int neg = *p == '-';
    const char *q = p + neg;
    uint64_t v = 0;
    int fits = 1;
    for (; q < d->end && *q >= '0' && *q <= '9'; q++) {
        unsigned digit = (unsigned)(*q - '0');
        if (v > (UINT64_MAX - digit) / 10)
            fits = 0;
        else
            v = v * 10 + digit;
    }
    int plain = fits && (neg ? v <= (uint64_t)LUA_MAXINTEGER + 1 : v <= (uint64_t)LUA_MAXINTEGER);
    while (q < d->end && ((*q >= '0' && *q <= '9') || *q == '.' || *q == 'e' || *q == 'E' ||
                          *q == '+' || *q == '-')) {
        plain = 0;
        q++;
    }
    d->s = q;
    if (plain) {
        if (neg && v == (uint64_t)LUA_MAXINTEGER + 1)
            lua_pushinteger(L, LUA_MININTEGER);
        else
            lua_pushinteger(L, neg ? -(lua_Integer)v : (lua_Integer)v);
        return;
    }
    char small[64], *text = small;
    size_t n = (size_t)(q - p);
    if (n + 3 > sizeof small)
        text = lua_newuserdatauv(L, n + 3, 0);
    memcpy(text, p, n);
    memcpy(text + n, "e0", 3);
    int has_exp = memchr(p, 'e', n) != NULL || memchr(p, 'E', n) != NULL;
    if (has_exp)
        text[n] = '\0';
    if (lua_stringtonumber(L, text) == 0)
        lua_pushnumber(L, 0); /* not reached: the validator checked the grammar */
    if (text != small)
        lua_remove(L, -2);
    lua_Integer i;
    if (integral(L, -1, &i)) {
        lua_pop(L, 1);
        lua_pushinteger(L, i);
    }
}

/* An object or array: its members onto the stack, then the table at their count. */
static void dec_container(lua_State *L, dec_t *d, int object)
{
    int base = lua_gettop(L);
    int n = 0;
    d->s++;
    dec_ws(d);
    if (d->s < d->end && *d->s == (object ? '}' : ']')) {
        d->s++;
        lua_createtable(L, 0, 0);
        return;
    }
    for (;;) {
        dec_room(L, 4);
        if (object) {
            dec_string(L, d);
            dec_ws(d);
            d->s++; /* ':' */
            dec_ws(d);
        }
        dec_value(L, d);
        n++;
        dec_ws(d);
        if (d->s < d->end && *d->s == ',') {
            d->s++;
            dec_ws(d);
            continue;
        }
        d->s++; /* '}' or ']' */
        break;
    }
    dec_room(L, 3);
    if (object) {
        lua_createtable(L, 0, n);
        int t = lua_gettop(L);
        for (int i = 0; i < n; i++) {
            lua_pushvalue(L, base + 1 + 2 * i);
            lua_pushvalue(L, base + 2 + 2 * i);
            lua_rawset(L, t);
        }
    } else {
        lua_createtable(L, n, 0);
        int t = lua_gettop(L);
        for (int i = 0; i < n; i++) {
            lua_pushvalue(L, base + 1 + i);
            lua_rawseti(L, t, i + 1);
        }
    }
    lua_replace(L, base + 1);
    lua_settop(L, base + 1);
}

static void dec_value(lua_State *L, dec_t *d)
{
    switch (*d->s) {
    case '{':
        dec_container(L, d, 1);
        break;
    case '[':
        dec_container(L, d, 0);
        break;
    case '"':
        dec_string(L, d);
        break;
    case 't':
        lua_pushboolean(L, 1);
        d->s += 4;
        break;
    case 'f':
        lua_pushboolean(L, 0);
        d->s += 5;
        break;
    case 'n':
        lua_pushlightuserdata(L, NULL); /* cjson.null */
        d->s += 4;
        break;
    default:
        dec_number(L, d);
        break;
    }
}

/* [-1, +1] the text → its value (protected: a memory error unwinds to the caller). */
static int decode_valid(lua_State *L)
{
    size_t len;
    const char *s = lua_tolstring(L, 1, &len);
    dec_t d = {s, s + len};
    dec_ws(&d);
    dec_value(L, &d);
    return 1;
}

int luar_json_decode(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    luaL_checktype(L, idx, LUA_TSTRING);
    size_t len;
    const char *text = lua_tolstring(L, idx, &len);
    if (luar_json_validate(text, len, JSON_MAX_DEPTH, NULL) == 0) {
        lua_pushcfunction(L, decode_valid);
        lua_pushvalue(L, idx);
        int rc = lua_pcall(L, 1, 1, 0);
        if (rc == LUA_OK)
            return 1;
        int declined = lua_touserdata(L, -1) == &decline_key;
        if (!declined) {
            const char *msg = lua_tostring(L, -1);
            lua_pop(L, 1);
            return luar_lua_fail(L, "invalid", "%s", msg != NULL ? msg : "cannot decode JSON");
        }
        lua_pop(L, 1);
    }
    luar_json_push_instance(L);
    lua_getfield(L, -1, "decode");
    lua_remove(L, -2);
    lua_pushvalue(L, idx);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK) {
        lua_Integer i;
        if (lua_type(L, -1) == LUA_TTABLE) {
            integerize(L, -1, 0);
        } else if (integral(L, -1, &i)) {
            lua_pop(L, 1);
            lua_pushinteger(L, i);
        }
        return 1;
    }
    const char *msg = lua_tostring(L, -1);
    lua_pop(L, 1);
    return luar_lua_fail(L, "invalid", "%s", msg != NULL ? msg : "invalid JSON");
}

/* ---- the encoder ----------------------------------------------------------------------- */

/*
 * The host's own encoder (lua-cjson's rules, two differences): integers are written as
 * integers, all 64 bits of them (lua-cjson turns them into doubles and prints 14 digits:
 * 820982911946154508 became 8.2098291194615e+17); floats in the fewest digits that read
 * back to the same double (lua-cjson's 14 digits lose the last ones). Strings are escaped
 * by the one JSON string writer (common/buf.h: invalid UTF-8 becomes U+FFFD, so the output
 * is always valid JSON; '/' is not escaped). Like lua-cjson: a table whose keys are 1..n
 * (holes allowed while n <= max(10, 2 x the key count)) is an array, any other table an
 * object with number keys written as strings, an empty table is {}, json.null is null;
 * NaN, infinities, functions, other userdata and nesting past JSON_MAX_DEPTH raise.
 */
typedef struct enc {
    lua_State *L;
    luar_buf_t *b;
} enc_t;

static void enc_value(enc_t *e, int idx, int depth);

static void enc_fail(enc_t *e, const char *fmt, const char *what)
{
    luaL_error(e->L, fmt, what);
}

static void enc_put(enc_t *e, int rc)
{
    if (rc)
        luaL_error(e->L, "Cannot serialise: %s", luar_strerror(rc));
}

static void enc_number(enc_t *e, int idx)
{
    lua_State *L = e->L;
    char num[40];
    if (lua_isinteger(L, idx)) {
        snprintf(num, sizeof num, "%lld", (long long)lua_tointeger(L, idx));
    } else {
        double v = lua_tonumber(L, idx);
        if (v != v || v - v != 0)
            luaL_error(L, "Cannot serialise number: must not be NaN or Infinity");
        lua_Integer i;
        if (lua_numbertointeger(v, &i) && (double)i == v && v > -1e15 && v < 1e15) {
            snprintf(num, sizeof num, "%lld", (long long)i); /* 5.0 → 5, as lua-cjson */
        } else {
            for (int prec = 15; prec <= 17; prec++) {
                snprintf(num, sizeof num, "%.*g", prec, v);
                if (strtod(num, NULL) == v)
                    break;
            }
        }
    }
    enc_put(e, luar_buf_puts(e->b, num));
}

/* The array length of the table at `idx` (its keys are 1..n with few holes), or -1. */
static lua_Integer array_length(lua_State *L, int idx)
{
    lua_Integer max = 0, count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pop(L, 1);
        lua_Integer k;
        if (lua_type(L, -1) == LUA_TNUMBER && lua_isinteger(L, -1))
            k = lua_tointeger(L, -1);
        else if (lua_type(L, -1) == LUA_TNUMBER && integral(L, -1, &k))
            ;
        else {
            lua_pop(L, 1);
            return -1;
        }
        if (k < 1) {
            lua_pop(L, 1);
            return -1;
        }
        if (k > max)
            max = k;
        count++;
    }
    if (max > 10 && max > 2 * count)
        luaL_error(L, "Cannot serialise table: excessively sparse array");
    return max;
}

static void enc_table(enc_t *e, int idx, int depth)
{
    lua_State *L = e->L;
    if (depth > JSON_MAX_DEPTH)
        luaL_error(L, "Cannot serialise, excessive nesting (%d)", depth);
    if (!lua_checkstack(L, 6))
        luaL_error(L, "Cannot serialise: out of stack");
    lua_Integer n = array_length(L, idx);
    if (n > 0) {
        enc_put(e, luar_buf_putc(e->b, '['));
        for (lua_Integer i = 1; i <= n; i++) {
            if (i > 1)
                enc_put(e, luar_buf_putc(e->b, ','));
            lua_rawgeti(L, idx, i);
            enc_value(e, lua_gettop(L), depth);
            lua_pop(L, 1);
        }
        enc_put(e, luar_buf_putc(e->b, ']'));
        return;
    }
    enc_put(e, luar_buf_putc(e->b, '{'));
    int first = 1;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        if (!first)
            enc_put(e, luar_buf_putc(e->b, ','));
        first = 0;
        int kt = lua_type(L, -2);
        if (kt == LUA_TSTRING) {
            size_t len;
            const char *k = lua_tolstring(L, -2, &len);
            enc_put(e, luar_buf_append_json_string(e->b, k, len));
        } else if (kt == LUA_TNUMBER) {
            enc_put(e, luar_buf_putc(e->b, '"'));
            lua_pushvalue(L, -2);
            enc_number(e, lua_gettop(L));
            lua_pop(L, 1);
            enc_put(e, luar_buf_putc(e->b, '"'));
        } else {
            enc_fail(e, "Cannot serialise %s: table key must be a number or string",
                     luaL_typename(L, -2));
        }
        enc_put(e, luar_buf_putc(e->b, ':'));
        enc_value(e, lua_gettop(L), depth);
        lua_pop(L, 1);
    }
    enc_put(e, luar_buf_putc(e->b, '}'));
}

static void enc_value(enc_t *e, int idx, int depth)
{
    lua_State *L = e->L;
    switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        enc_put(e, luar_buf_append_json_string(e->b, s, len));
        break;
    }
    case LUA_TNUMBER:
        enc_number(e, idx);
        break;
    case LUA_TBOOLEAN:
        enc_put(e, luar_buf_puts(e->b, lua_toboolean(L, idx) ? "true" : "false"));
        break;
    case LUA_TNIL:
        enc_put(e, luar_buf_puts(e->b, "null"));
        break;
    case LUA_TTABLE:
        enc_table(e, idx, depth + 1);
        break;
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL) { /* json.null */
            enc_put(e, luar_buf_puts(e->b, "null"));
            break;
        }
        /* fall through */
    default:
        enc_fail(e, "Cannot serialise %s: type not supported", luaL_typename(L, idx));
    }
}

const char *luar_json_encode(lua_State *L, int idx, size_t *len)
{
    idx = lua_absindex(L, idx);
    enc_t e = {L, luar_lua_newbuf(L, 0)};
    enc_value(&e, idx, 0);
    const char *out = lua_pushlstring(L, e.b->data ? e.b->data : "", e.b->len);
    luar_buf_free(e.b);
    lua_remove(L, -2); /* the buffer's userdata */
    out = lua_tolstring(L, -1, len);
    return out;
}

/* json.encode(value) → string; raises on values JSON cannot hold. [-1, +1] */
static int json_encode(lua_State *L)
{
    luaL_checkany(L, 1);
    luar_json_encode(L, 1, NULL);
    return 1;
}

/* json.decode(text) → value | nil, err{kind="invalid"}. [-1, +1|2] */
static int json_decode(lua_State *L)
{
    luaL_checkstring(L, 1);
    lua_settop(L, 1);
    if (lua_type(L, 1) != LUA_TSTRING) {
        lua_pushstring(L, lua_tostring(L, 1));
        lua_replace(L, 1);
    }
    return luar_json_decode(L, 1);
}

int luaopen_luar_json(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"encode", json_encode},
        {"decode", json_decode},
        {NULL, NULL},
    };
    luaL_newlib(L, funcs);
    luar_json_push_instance(L);
    lua_getfield(L, -1, "null");
    lua_setfield(L, -3, "null");
    lua_pop(L, 1);
    return 1;
}
