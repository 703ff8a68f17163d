/*
 * Redis connection URLs:
 *
 *   redis://[[user]:password@]host[:port][/db][?option=value&...]
 *   rediss://...                      (TLS)
 *
 * Options (query parameters, values percent-decoded):
 *   prefix=S       the prefix of every key (default "luar:"), so several apps share a Redis
 *   ca=FILE        rediss: CA bundle to verify the server with (default: the system's)
 *   cert=FILE      rediss: client certificate chain (PEM), for tls-auth-clients
 *   key=FILE       rediss: its private key (PEM; default: cert's file)
 *   server_name=S  rediss: the name the certificate must carry and the SNI sent
 *                  (default: host; an IP address is checked against IP SANs)
 *   timeout=SECS   a connection whose oldest command has waited longer than this is
 *                  declared dead (default 10)
 *
 * A user without a password ("redis://user@host") is refused: Redis ACLs need both.
 * "redis://:password@host" authenticates as the default user (requirepass).
 */
#ifndef LUAR_REDIS_URL_H
#define LUAR_REDIS_URL_H

#include "common/buf.h"

/* A parsed URL. Every string is owned (freed by luar_redis_url_free); absent ones NULL. */
typedef struct luar_redis_url {
    int tls;    /* rediss:// */
    char *host; /* name or address, without brackets for IPv6 */
    int port;   /* default 6379 */
    int db;     /* SELECT db; default 0 */
    char *user; /* ACL user, or NULL (the default user) */
    char *password;
    char *prefix; /* default "luar:" */
    char *ca_file, *cert_file, *key_file, *server_name;
    double timeout; /* seconds */
} luar_redis_url_t;

/*
 * Parses `url` into `out` (zeroed first). Returns 0, LUAR_EINVAL with a message in `err`
 * naming what is wrong (the password is never copied into a message), or LUAR_ENOMEM.
 * On failure `out` holds nothing to free.
 */
int luar_redis_url_parse(const char *url, luar_redis_url_t *out, luar_buf_t *err);

/* Frees the strings of `u`. */
void luar_redis_url_free(luar_redis_url_t *u);

#endif
