/*
 * The dashboard's files: host/admin/web/ embedded into the binary at build time (the
 * top-level CMakeLists.txt writes generated/luar_admin_web.h), so an install is the binary
 * alone. Served without the token, since they hold code and no data; every call they make
 * goes to /admin/api/ with the token the operator typed in. A strict Content-Security-Policy
 * allows only these files: no inline script or style, no other origin, no framing.
 */
#include "admin/api.h"

#include "luar_admin_web.h"

#include <stdio.h>
#include <string.h>

static const char csp[] = "default-src 'none'; script-src 'self'; style-src 'self'; "
                          "img-src 'self'; connect-src 'self'; base-uri 'none'; "
                          "form-action 'none'; frame-ancestors 'none'";

static const char *content_type(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (dot && strcmp(dot, ".html") == 0)
        return "text/html; charset=utf-8";
    if (dot && strcmp(dot, ".js") == 0)
        return "text/javascript; charset=utf-8";
    if (dot && strcmp(dot, ".css") == 0)
        return "text/css; charset=utf-8";
    if (dot && strcmp(dot, ".svg") == 0)
        return "image/svg+xml";
    return "application/octet-stream";
}

int luar_admin_web(luar_http_req_t *req)
{
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0)
        return 0;
    const char *name;
    if (strcmp(req->path, "/admin") == 0 || strcmp(req->path, "/admin/") == 0)
        name = "index.html";
    else if (strncmp(req->path, "/admin/", 7) == 0 && strchr(req->path + 7, '/') == NULL)
        name = req->path + 7;
    else
        return 0;
    const struct luar_admin_web_file *f = NULL;
    for (size_t i = 0; i < sizeof luar_admin_web_files / sizeof luar_admin_web_files[0]; i++)
        if (strcmp(luar_admin_web_files[i].name, name) == 0)
            f = &luar_admin_web_files[i];
    if (f == NULL)
        return 0; /* unknown: behind the gate like the rest (401, then 404) */
    snprintf(req->route, sizeof req->route, "/admin/%s",
             strcmp(name, "index.html") == 0 ? "" : name);
    const char *type = content_type(f->name);
    luar_http_header_t h[6] = {
        {"Content-Type", 12, type, strlen(type)},
        {"Cache-Control", 13, "no-cache", 8},
        {"X-Content-Type-Options", 22, "nosniff", 7},
        {"Content-Security-Policy", 23, csp, sizeof csp - 1},
        {"Referrer-Policy", 15, "no-referrer", 11},
        {"X-Frame-Options", 15, "DENY", 4},
    };
    luar_http_respond(req, 200, h, 6, f->data, f->len);
    return 1;
}
