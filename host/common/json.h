/*
 * JSON scanning in C, without Lua: validation (RFC 8259, nesting bounded) and reading
 * top-level members and array elements as slices of the text. For the paths that must not
 * enter a Lua state per request (webhook ingest: the event id and type, "is this JSON?").
 * Decoding into Lua values stays with lua-cjson (lua/util.h).
 */
#ifndef LUAR_COMMON_JSON_H
#define LUAR_COMMON_JSON_H

#include "common/buf.h"

#include <stddef.h>

#define LUAR_JSON_MAX_DEPTH 128

/*
 * Validates `s` as one JSON text (whitespace around allowed; strings must be valid UTF-8
 * with valid escapes; nesting at most `max_depth`). Returns 0, or LUAR_EPARSE with a
 * reason naming the byte offset appended to `why` ("at byte 17: expected ',' or '}'").
 */
int luar_json_validate(const char *s, size_t len, int max_depth, luar_buf_t *why);

/*
 * In a validated JSON text whose top level is an object, finds the member `key` (the
 * first one when repeated): sets *val and *vlen to the raw text of its value (a string keeps
 * its quotes) and returns 1; returns 0 when absent or when the top level is not an object.
 */
int luar_json_member(const char *s, size_t len, const char *key, const char **val,
                     size_t *vlen);

/*
 * Walks the elements of a validated JSON array: start with *pos = 0; each call sets
 * *el and *ellen to the next element's raw text and returns 1, then 0 at the end (or when the
 * text is not an array).
 */
int luar_json_array_next(const char *s, size_t len, size_t *pos, const char **el,
                         size_t *ellen);

/*
 * Appends the decoded contents of the raw JSON string `val` (with its quotes) to `out`
 * (escapes resolved, \u surrogate pairs to UTF-8). Returns 0, LUAR_EPARSE when `val` is not
 * a string, or a luar_buf error.
 */
int luar_json_unquote(const char *val, size_t vlen, luar_buf_t *out);

#endif
