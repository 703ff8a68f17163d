/*
 * Route guards: the inbound protection options that http.route and webhooks.route share,
 * checked before a route's handler runs.
 *
 *   rate = { limit = "N/period",                      -- GCRA, exact across processes
 *            key = "ip" | "header:Name" | function(req) return … end,   -- default "ip"
 *            name = "…",                              -- metric label; default the route
 *            on_error = "allow" | "deny" },           -- backend down: default "allow"
 *   require_client_cert = true,                       -- 403 unless mTLS-verified
 *
 * Over the limit a request is answered 429 with Retry-After (whole seconds, rounded up)
 * and {"error": …}, and counted in luar_ratelimit_rejected_total{key=<name>}. When the
 * backend cannot answer the check the request goes through (on_error = "allow", logged)
 * or is answered 503 (on_error = "deny").
 *
 * Two ways to run a guard: a Lua route's task runs the entry of luar_route_guard_push_entry
 * (the key function may wait, the check yields through the bridge), and a request handled
 * in C (a webhook route) calls luar_route_guard_run, which answers the request itself when
 * it refuses it. Loop thread only.
 */
#ifndef LUAR_ROUTE_GUARD_H
#define LUAR_ROUTE_GUARD_H

#include "lua/vm.h"
#include "server/http.h"

#include <lua.h>

typedef struct luar_route_guard luar_route_guard_t;

/* Outcomes of luar_route_guard_check_cert and luar_route_guard_run. */
enum {
    LUAR_GUARD_CONTINUE = 0, /* go on with the request */
    LUAR_GUARD_ANSWERED = 1, /* the guard answered it (403, 429, 500, 503): do nothing more */
    LUAR_GUARD_PENDING = 2,  /* luar_route_guard_run only: `done` tells which, later */
};

/*
 * Reads `rate` and `require_client_cert` from the options table at absolute index `opts`
 * (0: none). `route` (copied) is the route's pattern, the default name. Returns NULL when
 * neither option is set; raises a Lua error naming the option on misuse, having allocated
 * nothing then. A key function is kept referenced in the registry. Stack [-0, +0].
 */
luar_route_guard_t *luar_route_guard_parse(lua_State *L, int opts, const char *route);

/* Frees `g` (NULL is fine). `L` drops the key function's reference: pass NULL once the
 * state is closed. */
void luar_route_guard_free(lua_State *L, luar_route_guard_t *g);

/* Nonzero when `g` has a `rate` option (the check waits for the backend). */
int luar_route_guard_has_rate(const luar_route_guard_t *g);

/*
 * The synchronous part: with require_client_cert, answers 403 {"error": "client
 * certificate required"} unless `req` came over TLS with a client certificate the listener
 * verified (req->tls_client_subject), and returns LUAR_GUARD_ANSWERED; else
 * LUAR_GUARD_CONTINUE.
 */
int luar_route_guard_check_cert(const luar_route_guard_t *g, luar_http_req_t *req);

/* ---- Lua handlers (http.route) ------------------------------------------------------- */

/*
 * Pushes the function a route's task runs, instead of the handler at index `handler`, when
 * `g` has a rate: called with the request table, it computes the key (a key function runs
 * inside the task and may wait), waits for the check, then calls the handler with the
 * request and returns its results; or returns a refusal for luar_route_guard_answer. `g`
 * and `req` must outlive the task (the VM keeps its routes while tasks run; `req` is
 * answered when the task ends). Stack [-0, +1].
 */
void luar_route_guard_push_entry(lua_State *L, const luar_route_guard_t *g, int handler,
                                 luar_http_req_t *req);

/*
 * When the value at `idx` (a route task's result) is a refusal returned by that entry,
 * answers `req` with it (429 or 503) and returns 1; otherwise returns 0 and does nothing.
 */
int luar_route_guard_answer(lua_State *L, int idx, luar_http_req_t *req);

/* ---- requests handled in C (webhooks.route) ------------------------------------------ */

typedef void (*luar_route_guard_done_fn)(void *arg, int outcome);

/*
 * Runs the whole guard for a request handled in C: the client certificate, then the rate.
 * Returns LUAR_GUARD_CONTINUE or LUAR_GUARD_ANSWERED when that is decided at once (`done`
 * is then not called), or LUAR_GUARD_PENDING: done(arg, LUAR_GUARD_CONTINUE or
 * LUAR_GUARD_ANSWERED) is called later from the loop, `req` having been answered in the
 * second case. A key function is called at once on `vm`'s main thread with the request
 * table (it must not wait there; an error answers 500 and is logged). Everything the check
 * needs from `g` is copied, so `g` may be freed meanwhile; `vm` is held (luar_vm_hold)
 * until `done` returns, so `done` may still use the route's options — hold it yourself
 * across any later asynchronous step.
 */
int luar_route_guard_run(const luar_route_guard_t *g, luar_vm_t *vm, luar_http_req_t *req,
                         luar_route_guard_done_fn done, void *arg);

#endif
