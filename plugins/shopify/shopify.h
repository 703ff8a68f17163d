/*
 * The shopify plugin's private declarations. Everything here is internal to the .so
 * (hidden visibility); only `luar_plugin` is exported.
 */
#ifndef SHOPIFY_H
#define SHOPIFY_H

#include <luar/plugin.h>

/* The host table given to init(); NULL before init and after fini. */
extern const luar_host_t *shopify_host;

extern const luar_webhook_scheme_t shopify_scheme;

#endif
