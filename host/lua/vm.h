/*
 * A Lua VM: one lua_State loaded from scripts/main.lua, with the sandbox, the memory cap,
 * the luar.* modules and the routes the scripts declared. The host keeps one current VM;
 * a reload builds a new one and retires the old, which is closed when its last coroutine
 * (request, job, timer) ends. Loop thread only.
 */
#ifndef LUAR_VM_H
#define LUAR_VM_H

#include "common/buf.h"
#include "server/http.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct luar_vm luar_vm_t;

typedef struct luar_vm_config {
    uv_loop_t *loop;
    const char *scripts_dir; /* folder holding main.lua; put first on package.path. NULL: none */
    const char *main_file;   /* entry file; NULL: <scripts_dir>/main.lua. Not run when "" */
    size_t mem_limit;        /* bytes the state may allocate; 0: the default 256 MiB */
    double cpu_budget;       /* seconds a coroutine may run without yielding; 0: default 5 */
    unsigned generation;     /* 1 for the first load, +1 per reload; shown in logs */
} luar_vm_config_t;

/*
 * Creates a VM and runs its entry file to completion. On failure returns LUAR_ELUA (or
 * LUAR_ENOMEM), appends "file:line: message" lines to `err` (when not NULL), and leaves
 * `*out` NULL. The strings of `cfg` are copied.
 */
int luar_vm_new(const luar_vm_config_t *cfg, luar_vm_t **out, luar_buf_t *err);

/*
 * Takes no new work from now on and closes the state once its last coroutine ends (at
 * once when none runs). The caller must not use `vm` afterwards.
 */
void luar_vm_retire(luar_vm_t *vm);

/*
 * Host shutdown (after the grace period): cancels every task now (pending operations are
 * cancelled, requests in flight are answered 503, done callbacks get status 1), then
 * retires the VM, which is closed at once. `reason` (copied; NULL for a default) is the
 * error the cancelled tasks see. The caller must not use `vm` afterwards.
 */
void luar_vm_shutdown(luar_vm_t *vm, const char *reason);

/*
 * Calls cb(arg) once the VM's state has been closed (after luar_vm_retire and its last
 * task), e.g. to log that an old generation is gone. The VM's memory is released by the
 * loop shortly after, so run the loop until it has no more handles before closing it.
 */
void luar_vm_set_close_cb(luar_vm_t *vm, void (*cb)(void *arg), void *arg);

/*
 * Keeps `vm` open (even retired) until the matching luar_vm_release: for C work that
 * continues with what the scripts declared (a route and its options) after an asynchronous
 * step taken outside any coroutine, such as a route guard's rate check. Retiring still
 * stops new work at once; the state closes after the last release.
 */
void luar_vm_hold(luar_vm_t *vm);
void luar_vm_release(luar_vm_t *vm);

/* Bytes the state currently holds (under the cap of luar_vm_config_t.mem_limit). */
size_t luar_vm_memory(const luar_vm_t *vm);

/* Coroutines (requests, scripts, timers) currently alive in `vm`. */
size_t luar_vm_tasks(const luar_vm_t *vm);

/* Number of routes the scripts declared. */
size_t luar_vm_routes(const luar_vm_t *vm);

/*
 * Routes `req` to the matching http.route handler and runs it in a new coroutine; answers
 * 404 / 405 itself when nothing matches, and 500 {"error":"internal error","request_id":…}
 * (logging the traceback) when the handler fails, exceeds its CPU budget or the memory cap.
 * Always leads to exactly one luar_http_respond(req). Sets req->route.
 */
void luar_vm_handle_http(luar_vm_t *vm, luar_http_req_t *req);

/*
 * Runs the Lua file `path` in a new coroutine with the global `arg` = { [0] = path, argv… }
 * (`luar run`); the chunk also receives argv as `...`. When it ends, calls done(status, arg)
 * with status 0, or 1 after printing the error and traceback to stderr. Returns 0;
 * LUAR_ELUA when the file cannot be loaded (the error is printed to stderr, done is not
 * called); LUAR_ECLOSED when the VM is retired. `path` and `argv` are used during the call
 * only. Scripts run by the VM may declare routes.
 */
int luar_vm_run_file(luar_vm_t *vm, const char *path, int argc, char **argv,
                     void (*done)(int status, void *arg), void *arg);

/*
 * Runs busted on the spec files/folders in argv (default "spec") inside `vm`, with the real
 * API (`luar test`); busted's report goes to stdout. Calls done(status, arg): 0 when every
 * spec passed, 1 otherwise. busted's own exit is intercepted (scripts' os.exit stays
 * forbidden). Returns as luar_vm_run_file.
 */
int luar_vm_run_tests(luar_vm_t *vm, int argc, char **argv, void (*done)(int status, void *arg),
                      void *arg);

#endif
