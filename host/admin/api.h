/*
 * The admin API behind the gate (app/admin.c): the route table (router.c), what every
 * endpoint shares (call.c: answers, parameters, filters, the audit record) and the
 * endpoints, one file per group of resources (api_jobs.c, api_ops.c), plus the dashboard's
 * files (web.c). Internal to host/admin/ and the gate. Loop thread only.
 *
 * One request is one luar_admin_call_t, allocated by the router and handed to the
 * endpoint, which owns it from then on: every path ends in exactly one luar_admin_respond*
 * or luar_admin_error* call, which answers the request and frees the call. Endpoints that
 * wait (every queue operation is asynchronous) keep the call in their own state record
 * until the callback answers.
 */
#ifndef LUAR_ADMIN_API_H
#define LUAR_ADMIN_API_H

#include "app/admin.h"
#include "common/buf.h"
#include "queue/queue.h"

#include <stddef.h>

#define LUAR_ADMIN_MAX_PARAMS 4   /* ":name" segments of a route */
#define LUAR_ADMIN_MAX_VALUE 1024 /* bytes of one query or body parameter, decoded */

/* A decoded parameter, kept until the call ends. */
typedef struct luar_admin_param {
    struct luar_admin_param *next;
    char *name;
    char *value;
} luar_admin_param_t;

typedef struct luar_admin_call {
    luar_http_req_t *req;
    luar_admin_env_t env; /* a copy; env.vm only during the endpoint's first call */
    const char *path_params[LUAR_ADMIN_MAX_PARAMS]; /* ":name" segments, in order */
    char path_buf[512];
    luar_admin_param_t *params; /* query parameters, then body members looked up */
    int body_is_object;         /* the body is a JSON object (POST parameters) */
    const char *bad_param;      /* a body member asked for that is not a scalar */
} luar_admin_call_t;

typedef void (*luar_admin_handler_fn)(luar_admin_call_t *c);

/* ---- the router (router.c) ----------------------------------------------------------- */

/* Finds the route of `req` under /admin/api/ and calls it; answers 404/405/400 itself. */
void luar_admin_dispatch(luar_http_req_t *req, const luar_admin_env_t *env);

/* ---- answers (call.c); each answers the request and frees `c` ------------------------- */

/* Sends `body` (JSON, len bytes) with `status`; the caller keeps `body`. */
void luar_admin_respond(luar_admin_call_t *c, int status, const char *body, size_t len);

/* Sends the buffer's contents (500 when an append failed: b->data NULL) and frees it. */
void luar_admin_respond_buf(luar_admin_call_t *c, int status, luar_buf_t *b);

/* {"error": "<formatted message>"} with `status`: the one error shape of the API. */
void luar_admin_error(luar_admin_call_t *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * The answer to a failed queue operation: 404 "job <id> not found" for LUAR_ENOTFOUND
 * (`id` may be NULL), 503 naming the backend's last error for LUAR_EIO, 500 otherwise.
 */
void luar_admin_queue_error(luar_admin_call_t *c, int rc, const char *id);

/* Answers on the gate's behalf (no call allocated): {"error": msg}. */
void luar_admin_error_req(luar_http_req_t *req, int status, const char *msg);

/* The headers of every admin answer: JSON, not cached, not sniffed. */
extern const luar_http_header_t luar_admin_json_headers[3];

/* ---- parameters (call.c) -------------------------------------------------------------- */

/* Splits the query string into decoded parameters (the router, once). 0 or LUAR_ENOMEM. */
int luar_admin_parse_query(luar_admin_call_t *c);

/*
 * The value of parameter `name`: from the query string (percent-decoded, '+' as space), else
 * a member of a JSON object body (a string unquoted; a number or boolean as written).
 * Returns NULL when absent or null; an object or array member also returns NULL and is
 * noted in c->bad_param, which the read_* functions below answer with a 400, so a
 * malformed filter never widens into "every job". Valid until the call ends.
 */
const char *luar_admin_param(luar_admin_call_t *c, const char *name);

/*
 * Reads the filter parameters into `f` (zeroed first, state -1): state, queue, name,
 * error, since, until (unix seconds or ISO 8601; UTC unless an offset is given), and
 * cursor and limit (1..max_limit, default `default_limit`) when `max_limit` > 0.
 * `state_default` is the state when none is given (-1: any). Returns 0, or answers 400
 * naming the parameter, frees `c` and returns -1. The strings stay valid until the call ends.
 */
int luar_admin_read_filter(luar_admin_call_t *c, luar_job_filter_t *f, int state_default,
                           size_t default_limit, size_t max_limit);

/*
 * Reads the whole-number parameter `name` into *out: `def` when absent; 400 (call freed,
 * returns -1) when it is not a whole number from `min` to `max`.
 */
int luar_admin_read_count(luar_admin_call_t *c, const char *name, long def, long min, long max,
                          long *out);

/* Appends `"filter":{…}` (only the members set) to `b`. */
void luar_admin_filter_json(luar_buf_t *b, const luar_job_filter_t *f);

/* ---- the audit log (call.c) ----------------------------------------------------------- */

/*
 * Appends one audit record for an admin action: who "admin-api", `action`, then the
 * remote address and request id, then `fields` (JSON members without braces, may be NULL).
 * A record that cannot be written is logged at error level (the action already happened).
 */
void luar_admin_audit(const luar_admin_call_t *c, const char *action, const luar_buf_t *fields);

/* ---- endpoints ------------------------------------------------------------------------ */

/* api_jobs.c */
void luar_admin_get_stats(luar_admin_call_t *c);
void luar_admin_list_jobs(luar_admin_call_t *c);
void luar_admin_show_job(luar_admin_call_t *c);
void luar_admin_retry_job(luar_admin_call_t *c);
void luar_admin_delete_job(luar_admin_call_t *c);
void luar_admin_replay_job(luar_admin_call_t *c);
void luar_admin_purge_jobs(luar_admin_call_t *c);
void luar_admin_replay_dead(luar_admin_call_t *c);

/* api_ops.c */
void luar_admin_list_schedules(luar_admin_call_t *c);
void luar_admin_list_webhooks(luar_admin_call_t *c);
void luar_admin_list_deliveries(luar_admin_call_t *c);
void luar_admin_list_plugins(luar_admin_call_t *c);
void luar_admin_reload(luar_admin_call_t *c);

/* ---- the dashboard's files (web.c) ---------------------------------------------------- */

/*
 * Answers GET/HEAD of /admin, /admin/ and the dashboard's files (embedded at build time)
 * and returns 1; returns 0 for any other request. Needs no token: the files hold no data.
 */
int luar_admin_web(luar_http_req_t *req);

#endif
