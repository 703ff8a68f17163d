/*
 * The admin API's route table: method, path pattern, endpoint. A request that passed the
 * gate is matched here; a known path with another method gets 405 with Allow, anything
 * else 404. The route pattern (never the raw path) labels the request in logs and metrics,
 * so job ids do not become metric labels.
 */
#include "admin/api.h"
#include "common/error.h"
#include "common/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Patterns are matched segment by segment; ":name" matches one segment, passed in order. The
 * first route whose pattern and method match wins, so fixed segments go before ":id". */
static const struct admin_route {
    const char *method;
    const char *pattern;
    luar_admin_handler_fn fn;
} routes[] = {
    {"GET", "/admin/api/stats", luar_admin_get_stats},
    {"GET", "/admin/api/jobs", luar_admin_list_jobs},
    {"POST", "/admin/api/jobs/purge", luar_admin_purge_jobs},
    {"GET", "/admin/api/jobs/:id", luar_admin_show_job},
    {"DELETE", "/admin/api/jobs/:id", luar_admin_delete_job},
    {"POST", "/admin/api/jobs/:id/retry", luar_admin_retry_job},
    {"POST", "/admin/api/jobs/:id/replay", luar_admin_replay_job},
    {"POST", "/admin/api/dead/replay", luar_admin_replay_dead},
    {"GET", "/admin/api/schedules", luar_admin_list_schedules},
    {"GET", "/admin/api/webhooks", luar_admin_list_webhooks},
    {"GET", "/admin/api/deliveries", luar_admin_list_deliveries},
    {"GET", "/admin/api/plugins", luar_admin_list_plugins},
    {"POST", "/admin/api/reload", luar_admin_reload},
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
            if (slen == 0 || np == LUAR_ADMIN_MAX_PARAMS || used + slen + 1 > bufsize)
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

/* Makes the call record of a matched route and hands it to the endpoint. */
static void call_route(const struct admin_route *r, luar_http_req_t *req,
                       const luar_admin_env_t *env)
{
    luar_admin_call_t *c = calloc(1, sizeof *c);
    if (c == NULL) {
        luar_admin_error_req(req, 500, "out of memory");
        return;
    }
    c->req = req;
    c->env = *env;
    match(r->pattern, req->path, c->path_buf, sizeof c->path_buf, c->path_params);
    if (luar_admin_parse_query(c) != 0) {
        luar_admin_error(c, 500, "out of memory");
        return;
    }
    if (req->body_len > 0) {
        luar_buf_t why;
        luar_buf_init(&why, 1024);
        int rc = luar_json_validate(req->body, req->body_len, 32, &why);
        size_t skip = strspn(req->body, " \t\r\n");
        if (rc != 0 || req->body[skip] != '{') {
            luar_admin_error(c, 400, "body: %s%s",
                             rc ? "not valid JSON: " : "expected a JSON object",
                             rc && why.data ? why.data : "");
            luar_buf_free(&why);
            return;
        }
        luar_buf_free(&why);
        c->body_is_object = 1;
    }
    r->fn(c);
}

void luar_admin_dispatch(luar_http_req_t *req, const luar_admin_env_t *env)
{
    char buf[512];
    const char *params[LUAR_ADMIN_MAX_PARAMS] = {NULL};
    luar_buf_t allow;
    luar_buf_init(&allow, 256);
    for (size_t i = 0; i < NROUTES; i++) {
        if (!match(routes[i].pattern, req->path, buf, sizeof buf, params))
            continue;
        snprintf(req->route, sizeof req->route, "%s", routes[i].pattern);
        int head = strcmp(req->method, "HEAD") == 0 && strcmp(routes[i].method, "GET") == 0;
        if (strcmp(req->method, routes[i].method) == 0 || head) {
            luar_buf_free(&allow);
            call_route(&routes[i], req, env);
            return;
        }
        if (allow.data == NULL || strstr(allow.data, routes[i].method) == NULL)
            luar_buf_appendf(&allow, "%s%s", allow.len ? ", " : "", routes[i].method);
    }
    if (allow.len) {
        luar_http_header_t h[4] = {luar_admin_json_headers[0],
                                   luar_admin_json_headers[1],
                                   luar_admin_json_headers[2],
                                   {"Allow", 5, allow.data, allow.len}};
        static const char body[] = "{\"error\":\"method not allowed\"}";
        luar_http_respond(req, 405, h, 4, body, sizeof body - 1);
    } else {
        snprintf(req->route, sizeof req->route, "/admin/*");
        luar_admin_error_req(req, 404, "not found");
    }
    luar_buf_free(&allow);
}
