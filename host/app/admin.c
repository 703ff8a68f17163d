/*
 * The admin API (see admin.h): the token gate, a small route table, and its endpoints.
 * Each endpoint is one function taking the request, its path parameters and the process's
 * environment; the table below is where the next ones (jobs, schedules, webhooks, reload)
 * are added.
 */
#include "app/admin.h"
#include "common/buf.h"
#include "common/error.h"
#include "crypto/crypto.h"
#include "luar_version.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define DIGEST_LEN 32
#define MAX_PARAMS 4

struct luar_admin {
    int on;
    uint8_t digest[DIGEST_LEN]; /* SHA-256 of the token */
};

/* ---- answers ------------------------------------------------------------------------- */

static const luar_http_header_t json_type = {"Content-Type", 12, "application/json", 16};

static void respond_json(luar_http_req_t *req, int status, const char *body, size_t len)
{
    luar_http_respond(req, status, &json_type, 1, body, len);
}

static void respond_error(luar_http_req_t *req, int status, const char *error)
{
    luar_buf_t b;
    luar_buf_init(&b, 0);
    luar_buf_puts(&b, "{\"error\":");
    luar_buf_append_json_string(&b, error, strlen(error));
    luar_buf_putc(&b, '}');
    respond_json(req, status, b.data ? b.data : "{}", b.data ? b.len : 2);
    luar_buf_free(&b);
}

/* ---- GET /admin/api/stats ------------------------------------------------------------ */

struct stats {
    luar_http_req_t *req;
    luar_admin_env_t env;
};

static void on_counts(void *arg, int rc, const luar_queue_count_t *counts, size_t n)
{
    struct stats *st = arg;
    luar_http_req_t *req = st->req;
    if (rc) {
        respond_error(req, 503, "the queue backend does not answer");
        free(st);
        return;
    }
    int64_t totals[LUAR_JOB_STATES] = {0};
    luar_buf_t b;
    luar_buf_init(&b, 0);
    double uptime = (double)(uv_hrtime() - st->env.started_ns) / 1e9;
    luar_buf_appendf(&b,
                     "{\"version\":\"%s\",\"pid\":%d,\"worker\":%d,\"uptime_seconds\":%.3f,"
                     "\"scripts_generation\":%u,\"jobs_running\":%zu,\"queues\":{",
                     LUAR_VERSION, (int)getpid(), st->env.worker_id, uptime, st->env.generation,
                     st->env.jobs_running);
    for (size_t i = 0; i < n; i++) {
        if (i)
            luar_buf_putc(&b, ',');
        luar_buf_append_json_string(&b, counts[i].queue, strlen(counts[i].queue));
        luar_buf_putc(&b, ':');
        for (int s = 0; s < LUAR_JOB_STATES; s++) {
            luar_buf_appendf(&b, "%c\"%s\":%lld", s ? ',' : '{',
                             luar_job_state_name((luar_job_state_t)s),
                             (long long)counts[i].counts[s]);
            totals[s] += counts[i].counts[s];
        }
        luar_buf_putc(&b, '}');
    }
    luar_buf_puts(&b, "},\"totals\":");
    for (int s = 0; s < LUAR_JOB_STATES; s++)
        luar_buf_appendf(&b, "%c\"%s\":%lld", s ? ',' : '{',
                         luar_job_state_name((luar_job_state_t)s), (long long)totals[s]);
    luar_buf_puts(&b, "}}");
    if (b.data)
        respond_json(req, 200, b.data, b.len);
    else
        respond_error(req, 500, "out of memory");
    luar_buf_free(&b);
    free(st);
}

static void get_stats(luar_http_req_t *req, const char *const *params, const luar_admin_env_t *env)
{
    (void)params;
    struct stats *st = malloc(sizeof *st);
    if (st == NULL) {
        respond_error(req, 500, "out of memory");
        return;
    }
    st->req = req;
    st->env = *env;
    if (env->queue == NULL || luar_queue_counts(env->queue, on_counts, st) != 0) {
        free(st);
        respond_error(req, 503, "the queue backend does not answer");
    }
}

/* ---- the route table ----------------------------------------------------------------- */

typedef void (*admin_handler_fn)(luar_http_req_t *req, const char *const *params,
                                 const luar_admin_env_t *env);

/* Patterns are matched segment by segment; ":name" matches one segment, passed in order. */
static const struct admin_route {
    const char *method;
    const char *pattern;
    admin_handler_fn fn;
} routes[] = {
    {"GET", "/admin/api/stats", get_stats},
};

#define NROUTES (sizeof routes / sizeof routes[0])

/*
 * Matches `path` against `pattern`; copies the ":param" segments into buf (NUL-separated)
 * and points params[] at them. Returns 1 on a match.
 */
static int match(const char *pattern, const char *path, char *buf, size_t bufsize,
                 const char **params)
{
    size_t used = 0;
    int np = 0;
    while (*pattern && *path) {
        if (*pattern != '/' || *path != '/')
            return 0;
        pattern++;
        path++;
        size_t plen = strcspn(pattern, "/"), slen = strcspn(path, "/");
        if (pattern[0] == ':') {
            if (slen == 0 || np == MAX_PARAMS || used + slen + 1 > bufsize)
                return 0;
            memcpy(buf + used, path, slen);
            buf[used + slen] = '\0';
            params[np++] = buf + used;
            used += slen + 1;
        } else if (plen != slen || memcmp(pattern, path, plen) != 0) {
            return 0;
        }
        pattern += plen;
        path += slen;
    }
    return *pattern == '\0' && *path == '\0';
}

/* Finds the route of `req`; answers 404/405 itself when none matches. */
static void dispatch(luar_http_req_t *req, const luar_admin_env_t *env)
{
    char buf[512];
    const char *params[MAX_PARAMS] = {NULL};
    luar_buf_t allow;
    luar_buf_init(&allow, 256);
    for (size_t i = 0; i < NROUTES; i++) {
        if (!match(routes[i].pattern, req->path, buf, sizeof buf, params))
            continue;
        snprintf(req->route, sizeof req->route, "%s", routes[i].pattern);
        int head = strcmp(req->method, "HEAD") == 0 && strcmp(routes[i].method, "GET") == 0;
        if (strcmp(req->method, routes[i].method) == 0 || head) {
            luar_buf_free(&allow);
            routes[i].fn(req, params, env);
            return;
        }
        luar_buf_appendf(&allow, "%s%s", allow.len ? ", " : "", routes[i].method);
    }
    if (allow.len) {
        luar_http_header_t h[2] = {json_type, {"Allow", 5, allow.data, allow.len}};
        static const char body[] = "{\"error\":\"method not allowed\"}";
        luar_http_respond(req, 405, h, 2, body, sizeof body - 1);
    } else {
        snprintf(req->route, sizeof req->route, "/admin/*");
        respond_error(req, 404, "not found");
    }
    luar_buf_free(&allow);
}

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
        respond_error(req, 404, "admin API is off");
        return 1;
    }
    if (!authorized(a, req)) {
        int given = luar_http_req_header(req, "authorization") != NULL;
        const char *challenge = given ? "Bearer realm=\"luar admin\", error=\"invalid_token\""
                                      : "Bearer realm=\"luar admin\"";
        luar_http_header_t h[2] = {json_type,
                                   {"WWW-Authenticate", 16, challenge, strlen(challenge)}};
        static const char body[] = "{\"error\":\"missing or invalid admin token\"}";
        luar_http_respond(req, 401, h, 2, body, sizeof body - 1);
        return 1;
    }
    dispatch(req, env);
    return 1;
}
