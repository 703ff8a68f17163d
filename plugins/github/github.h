/*
 * What the github plugin's files share: the host table init() was given (the scheme's
 * callbacks receive no host pointer, and they need the host's buffers and helpers) and the
 * scheme itself.
 */
#ifndef GITHUB_H
#define GITHUB_H

#include <luar/plugin.h>

#define GITHUB_VERSION "0.1.0"

/* Set by init() before the host configures any scheme; valid until fini(). */
extern const luar_host_t *github_host;

/* The `github` webhook scheme (scheme.c). */
extern const luar_webhook_scheme_t github_scheme;

#endif
