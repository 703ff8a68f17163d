/*
 * The admin API gate (SPEC §6): every request under /admin/ (the JSON API under
 * /admin/api/, host/admin/, and the dashboard's files) is answered here, before the script
 * router.
 *
 * No token configured (admin.token, LUAR_ADMIN_TOKEN): 404 {"error":"admin API is off"}.
 * Otherwise the request must carry `Authorization: Bearer <token>`; a missing or wrong one
 * gets 401 with `WWW-Authenticate: Bearer`. The dashboard's own files (/admin/, app.js,
 * app.css: code, no data) are served without the token, so a browser can load the login
 * form; every /admin/api/ call needs it. The comparison is of SHA-256 digests in
 * constant time, so neither the token's bytes nor its length show in the timing, and the
 * token itself is never logged (the access log has no headers). Loop thread only.
 */
#ifndef LUAR_APP_ADMIN_H
#define LUAR_APP_ADMIN_H

#include "app/app.h"
#include "queue/queue.h"
#include "server/http.h"

#include <stddef.h>
#include <stdint.h>

typedef struct luar_admin luar_admin_t;

/* What the admin endpoints read from the serving process, filled in per request. */
typedef struct luar_admin_env {
    luar_queue_t *queue; /* the backend; NULL while shutting down */
    size_t jobs_running; /* jobs running in this process */
    int worker_id;       /* 0 for a lone process */
    unsigned generation; /* scripts generation (1 for the first load) */
    uint64_t started_ns; /* uv_hrtime() when the process started serving */
    struct luar_vm *vm;  /* the current scripts (schedules), NULL while none; read during
                            the call only: a reload may retire it afterwards */
    double dead_ttl;     /* jobs.dead_ttl, for nothing but display */
    /* Reloads the scripts everywhere (the process, or every worker through the supervisor)
     * and calls done(arg, rc, load_errors) exactly once, possibly later; NULL: no reload. */
    luar_reload_fn reload;
    void *reload_ctx;
    /* The scripts generation now (after a reload completed). */
    unsigned (*generation_now)(void *reload_ctx);
} luar_admin_env_t;

/*
 * Creates the gate for `token` (NULL or "": the admin API is off). Only the token's digest
 * is kept. Returns NULL when out of memory.
 */
luar_admin_t *luar_admin_new(const char *token);

void luar_admin_free(luar_admin_t *a);

/*
 * Answers `req` when its path is /admin or under /admin/ and returns 1; returns 0 (and
 * leaves `req` alone) otherwise. `env` is read during the call only.
 */
int luar_admin_handle(luar_admin_t *a, luar_http_req_t *req, const luar_admin_env_t *env);

#endif
