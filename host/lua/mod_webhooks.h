/*
 * luar.webhooks is assembled from three files: mod_webhooks.c (webhooks.route and
 * webhooks.on: inbound routes and their handlers), mod_webhooks_verify.c (webhooks.verify)
 * and mod_webhooks_deliver.c (webhooks.deliver: outbound, signed, retried delivery).
 */
#ifndef LUAR_MOD_WEBHOOKS_H
#define LUAR_MOD_WEBHOOKS_H

#include <lua.h>

/* webhooks.verify(scheme, {headers, body, secret | secrets, tolerance, …}) → ok, err */
int luar_webhooks_verify(lua_State *L);

/* webhooks.deliver{url, secret, type, payload, id, …} ⏸ → message id, or nil, err */
int luar_webhooks_deliver(lua_State *L);

/*
 * Adds the built-in job "webhooks.deliver" (one delivery attempt per run) to the job
 * registry of the VM of `L`. Called for every VM as it is created, so a delivery enqueued
 * under any scripts runs under any later ones. Raises when out of memory. [-0, +0]
 */
void luar_webhooks_deliver_define(lua_State *L);

#endif
