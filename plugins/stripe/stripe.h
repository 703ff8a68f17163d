/*
 * The stripe plugin's internal interfaces: the host table it was given, the form encoder,
 * the JSON scanner the webhook scheme uses, and the scheme itself.
 */
#ifndef STRIPE_H
#define STRIPE_H

#include <luar/plugin.h>

#include <stddef.h>

/* The host table from init(), for the scheme callbacks (which get no host pointer).
 * NULL until init ran. */
extern const luar_host_t *stripe_host;

/* ---- form.c ---------------------------------------------------------------------------- */

/*
 * Pushes the Stripe form encoding of the table at `idx` (application/x-www-form-urlencoded
 * with nested keys: `metadata[k]=v`, `items[0][price]=p`), keys in byte order, lists by
 * position from 0. Raises a Lua error naming the key path of a value it cannot encode.
 * [-0, +1, e]
 */
void stripe_form_encode(lua_State *L, int idx);

/* Lua: stripe.encode(params) → string. */
int stripe_l_encode(lua_State *L);

/* Lua: percent-encodes one path segment (an object id). */
int stripe_l_escape(lua_State *L);

/* ---- json_scan.c ----------------------------------------------------------------------- */

/*
 * Finds member `key` of the top-level JSON object in text[0..len). Returns 1 with the raw
 * value (a string keeps its quotes) in *val / *val_len, 0 when the object has no such
 * member, -1 when the text is not a JSON object (*why names the problem; a static string).
 * Nesting deeper than 512 levels counts as malformed.
 */
int stripe_json_member(const char *text, size_t len, const char *key, const char **val,
                       size_t *val_len, const char **why);

/*
 * Appends the decoded JSON string `raw` (with its quotes) to `out` with host->buf_append.
 * Returns 0, or LUAR_PLUGIN_EPARSE when `raw` is not a string without control characters.
 */
int stripe_json_unquote(const char *raw, size_t len, luar_buf_t *out);

/* ---- scheme.c -------------------------------------------------------------------------- */

extern const luar_webhook_scheme_t stripe_scheme;

#endif
