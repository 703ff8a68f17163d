/*
 * What the sendgrid plugin's files share: the host table init() was given (the scheme's
 * callbacks receive no host pointer, and they need the host's buffers and helpers) and the
 * scheme itself.
 */
#ifndef SENDGRID_H
#define SENDGRID_H

#include <luar/plugin.h>

#define SENDGRID_VERSION "0.1.0"

/* Set by init() before the host configures any scheme; valid until fini(). */
extern const luar_host_t *sendgrid_host;

/* The `sendgrid` webhook scheme (scheme.c). */
extern const luar_webhook_scheme_t sendgrid_scheme;

#endif
