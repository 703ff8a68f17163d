/*
 * The admin gate (see admin.h): off, the dashboard's files, or the token check, then the
 * route table of host/admin/router.c.
 */
#include "app/admin.h"
#include "admin/api.h"
#include "crypto/crypto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DIGEST_LEN 32

struct luar_admin {
    int on;
    uint8_t digest[DIGEST_LEN]; /* SHA-256 of the token */
};

/* ---- the gate ------------------------------------------------------------------------ */

luar_admin_t *luar_admin_new(const char *token)
{
    luar_admin_t *a = calloc(1, sizeof *a);
    if (a == NULL || token == NULL || token[0] == '\0')
        return a;
    size_t n = 0;
    if (luar_crypto_digest("sha256", token, strlen(token), a->digest, &n) != 0 || n != DIGEST_LEN) {
        free(a);
        return NULL;
    }
    a->on = 1;
    return a;
}

void luar_admin_free(luar_admin_t *a)
{
    free(a);
}

/* Nonzero when `req` carries "Authorization: Bearer <the token>". */
static int authorized(const luar_admin_t *a, const luar_http_req_t *req)
{
    const luar_http_header_t *h = luar_http_req_header(req, "authorization");
    if (h == NULL || h->value_len < 7 || strncasecmp(h->value, "Bearer ", 7) != 0)
        return 0;
    const char *tok = h->value + 7;
    size_t len = h->value_len - 7;
    while (len > 0 && *tok == ' ') {
        tok++;
        len--;
    }
    while (len > 0 && tok[len - 1] == ' ')
        len--;
    /* Digests of equal length, compared in constant time: the configured token's length
     * does not show either. */
    uint8_t given[LUAR_CRYPTO_MAX_MD];
    size_t n = 0;
    if (luar_crypto_digest("sha256", tok, len, given, &n) != 0 || n != DIGEST_LEN)
        return 0;
    return luar_crypto_equals(given, DIGEST_LEN, a->digest, DIGEST_LEN);
}

int luar_admin_handle(luar_admin_t *a, luar_http_req_t *req, const luar_admin_env_t *env)
{
    const char *p = req->path;
    if (strncmp(p, "/admin", 6) != 0 || (p[6] != '\0' && p[6] != '/'))
        return 0;
    snprintf(req->route, sizeof req->route, "/admin");
    if (a == NULL || !a->on) {
        luar_admin_error_req(req, 404, "admin API is off");
        return 1;
    }
    if (luar_admin_web(req))
        return 1;
    if (!authorized(a, req)) {
        int given = luar_http_req_header(req, "authorization") != NULL;
        const char *challenge = given ? "Bearer realm=\"luar admin\", error=\"invalid_token\""
                                      : "Bearer realm=\"luar admin\"";
        luar_http_header_t h[4] = {luar_admin_json_headers[0],
                                   luar_admin_json_headers[1],
                                   luar_admin_json_headers[2],
                                   {"WWW-Authenticate", 16, challenge, strlen(challenge)}};
        static const char body[] = "{\"error\":\"missing or invalid admin token\"}";
        luar_http_respond(req, 401, h, 4, body, sizeof body - 1);
        return 1;
    }
    luar_admin_dispatch(req, env);
    return 1;
}
