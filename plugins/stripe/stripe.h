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

/* ---- scheme.c -------------------------------------------------------------------------- */

extern const luar_webhook_scheme_t stripe_scheme;

#endif
