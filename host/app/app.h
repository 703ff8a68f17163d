/*
 * The running host: a worker (loop + HTTP server + current Lua VM + signals + reload) and
 * the supervisor that forks workers when `workers` > 1.
 */
#ifndef LUAR_APP_H
#define LUAR_APP_H

#include "common/buf.h"
#include "config/config.h"

#include <uv.h>

/*
 * Serves with `cfg` in this process until SIGTERM/SIGINT and the graceful drain end.
 * `worker_id` is 0 for a lone process, 1..N for a supervisor's worker (which leaves the
 * control socket and the file watcher to the supervisor). Returns the exit status.
 */
int luar_app_serve(const luar_config_t *cfg, int worker_id);

/*
 * Runs the supervisor: spawns cfg->workers copies of this executable with `argv` plus
 * "--worker-id K", restarts a worker that dies (with backoff), validates and forwards
 * reloads, forwards SIGTERM/SIGINT and exits 0 once every worker has exited.
 */
int luar_app_supervise(const luar_config_t *cfg, int argc, char **argv);

/*
 * Completes one reload request: `rc` is 0 when the new scripts serve everywhere, or a
 * LUAR_E code with `err` the load errors ("file:line: message" lines; NULL when none).
 * `err` is only valid during the call.
 */
typedef void (*luar_reload_done_fn)(void *arg, int rc, const char *err);

/*
 * Starts a reload (asked by the control socket, the file watcher or SIGHUP) and calls
 * done(arg, ...) exactly once: at once in a lone process, once every worker has answered
 * under the supervisor. `done` may be NULL.
 */
typedef void (*luar_reload_fn)(void *ctx, luar_reload_done_fn done, void *arg);

typedef struct luar_control luar_control_t;

/*
 * Listens on the control socket `path` (unix domain). A client writes "reload\n" and reads
 * one JSON line: {"ok":true,"generation":N} or {"ok":false,"error":"..."}; "ping\n" answers
 * {"ok":true,"pid":P}. A stale socket left by a dead instance is replaced; a live one makes
 * this return LUAR_EEXISTS. Returns 0 or a LUAR_E code; close with luar_control_close.
 */
int luar_control_open(uv_loop_t *loop, const char *path, luar_reload_fn reload, void *ctx,
                      luar_control_t **out);
void luar_control_close(luar_control_t *c);

/*
 * Sends `command` to the instance listening on `path` and stores its answer line in `out`.
 * Blocking; used by the `luar reload` command. Returns 0 or LUAR_EIO (with a reason in out).
 */
int luar_control_request(const char *path, const char *command, luar_buf_t *out);

/*
 * The same, without blocking: connects to `path` on `loop`, sends `command`, and calls
 * cb(arg, rc, answer) once with the answer line (without its newline), or rc LUAR_EIO and
 * a reason. Used by a supervisor's worker to ask the supervisor for a reload (the admin
 * API). Returns 0, or LUAR_ENOMEM without calling cb.
 */
typedef void (*luar_control_answer_fn)(void *arg, int rc, const char *answer);
int luar_control_request_async(uv_loop_t *loop, const char *path, const char *command,
                               luar_control_answer_fn cb, void *arg);

typedef struct luar_watch luar_watch_t;

/*
 * Watches `dir` and its sub-folders; `debounce` seconds after the last change, calls
 * reload (logging the outcome). Returns 0 or LUAR_EIO; close with luar_watch_close.
 */
int luar_watch_open(uv_loop_t *loop, const char *dir, double debounce, luar_reload_fn reload,
                    void *ctx, luar_watch_t **out);
void luar_watch_close(luar_watch_t *w);

/* Registers the host's own metrics (luar_build_info, reloads, lua errors); idempotent. */
void luar_app_metrics_init(void);

/*
 * Samples the process metrics (process_cpu_seconds_total, process_resident_memory_bytes,
 * process_virtual_memory_bytes, process_open_fds, process_max_fds,
 * process_start_time_seconds) from /proc, and sets luar_lua_memory_bytes to `lua_bytes`.
 * Called before each /metrics rendering.
 */
void luar_app_metrics_sample(size_t lua_bytes);

/* Counts one reload outcome in luar_script_reloads_total. */
void luar_app_count_reload(int ok);

#endif
