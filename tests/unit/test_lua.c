/* The Lua runtime: VM loading, sandbox, memory cap, CPU budget, the bridge, retirement. */
#include "common/buf.h"
#include "common/error.h"
#include "jobs/jobs.h"
#include "lua/route_guard.h"
#include "lua/task.h"
#include "lua/vm.h"
#include "log/log.h"
#include "metrics/metrics.h"
#include "queue/queue.h"
#include "server/http.h"
#include "test.h"

#include <arpa/inet.h>
#include <lauxlib.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[64];

static void write_file(const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return;
    fputs(text, f);
    fclose(f);
}

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/luar-test-lua-XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        tmpdir[0] = '\0';
}

static void remove_tmpdir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
}

/* Creates a VM whose main.lua is `main` (NULL: no entry file). */
static int new_vm(uv_loop_t *loop, const char *main, size_t mem_limit, double budget,
                  luar_vm_t **vm, luar_buf_t *err)
{
    luar_vm_config_t cfg = {0};
    cfg.loop = loop;
    cfg.scripts_dir = tmpdir;
    cfg.main_file = "";
    cfg.mem_limit = mem_limit;
    cfg.cpu_budget = budget;
    cfg.generation = 1;
    if (main != NULL) {
        write_file("main.lua", main);
        cfg.main_file = NULL;
    }
    return luar_vm_new(&cfg, vm, err);
}

/* A chunk run as a task; done records the outcome. */
struct chunk_run {
    const char *code;
    int finished;
    int status;
    char result[256];
    char error[512];
    luar_buf_t *order; /* when set, the result is appended here at the end */
};

static int chunk_setup(lua_State *L, void *arg)
{
    struct chunk_run *c = arg;
    if (luaL_loadstring(L, c->code) != LUA_OK)
        return lua_error(L);
    return 0;
}

static void chunk_done(luar_task_t *task, int status, void *arg)
{
    struct chunk_run *c = arg;
    c->finished = 1;
    c->status = status;
    if (status == 0 && luar_task_results(task) > 0) {
        const char *s = lua_tostring(luar_task_thread(task), -luar_task_results(task));
        snprintf(c->result, sizeof c->result, "%s", s != NULL ? s : "(not a string)");
        if (c->order != NULL && s != NULL)
            luar_buf_puts(c->order, s);
    }
    if (status != 0)
        snprintf(c->error, sizeof c->error, "%s", luar_task_error(task));
}

static int spawn_chunk(luar_vm_t *vm, struct chunk_run *c)
{
    return luar_task_spawn(vm, NULL, chunk_setup, c, chunk_done, c, NULL, NULL);
}

static void run_chunk(uv_loop_t *loop, luar_vm_t *vm, struct chunk_run *c)
{
    CHECK_EQ_INT(spawn_chunk(vm, c), 0);
    while (!c->finished && uv_run(loop, UV_RUN_ONCE) != 0) {
    }
    CHECK(c->finished);
}

static int closed_count;

static void on_closed(void *arg)
{
    (void)arg;
    closed_count++;
}

/* Retires `vm` and runs the loop until every handle is closed. */
static void finish_vm(uv_loop_t *loop, luar_vm_t *vm)
{
    luar_vm_retire(vm);
    uv_run(loop, UV_RUN_DEFAULT);
}

TEST(test_vm_load_error_reports_file_line)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    luar_buf_t err;
    luar_buf_init(&err, 0);
    luar_vm_t *vm = NULL;
    CHECK_EQ_INT(new_vm(&loop, "local x = 1\nerror('boom')\n", 0, 0, &vm, &err), LUAR_ELUA);
    CHECK(vm == NULL);
    CHECK(err.data != NULL && strstr(err.data, "main.lua:2: boom") != NULL);
    luar_buf_reset(&err);
    CHECK_EQ_INT(new_vm(&loop, "local x = = 1\n", 0, 0, &vm, &err), LUAR_ELUA);
    CHECK(err.data != NULL && strstr(err.data, "main.lua:1:") != NULL);
    luar_buf_reset(&err);
    write_file("helper.lua", "return { answer = 42 }\n");
    CHECK_EQ_INT(
        new_vm(&loop, "local h = require 'helper'\nassert(h.answer == 42)\n", 0, 0, &vm, &err), 0);
    if (vm != NULL)
        finish_vm(&loop, vm);
    luar_buf_free(&err);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

TEST(test_vm_yield_at_top_level_is_refused)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    luar_buf_t err;
    luar_buf_init(&err, 0);
    luar_vm_t *vm = NULL;
    CHECK_EQ_INT(new_vm(&loop, "require('luar.time').sleep(0)\n", 0, 0, &vm, &err), LUAR_ELUA);
    CHECK(err.data != NULL &&
          strstr(err.data, "cannot wait here: time.sleep must be called from a request "
                           "handler, job or luar run script") != NULL);
    luar_buf_free(&err);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

TEST(test_sandbox_refuses_blocking_and_exiting_functions)
{
    static const char main_lua[] =
        "local function refused(f, name, why)\n"
        "  local ok, err = pcall(f)\n"
        "  assert(not ok, name .. ' was allowed')\n"
        "  local want = name .. ' is not allowed in luar scripts (' .. why .. ')'\n"
        "  assert(err:find(want, 1, true), 'unexpected message: ' .. err)\n"
        "end\n"
        "refused(function() os.exit(0) end, 'os.exit', 'it would stop the host')\n"
        "refused(function() os.execute('true') end, 'os.execute', 'it would block the host')\n"
        "refused(function() io.popen('true') end, 'io.popen', 'it would block the host')\n"
        "refused(function() io.read() end, 'io.read', 'reading stdin would block the host')\n"
        "assert(not pcall(io.lines))\n"
        "assert(not pcall(function() return io.stdin:read('l') end))\n"
        "assert(not pcall(debug.sethook))\n"
        "local f = assert(io.open(package.path:match('^(.-)/%?%.lua') .. '/main.lua'))\n"
        "assert(f:read('l'):find('refused'))\n"
        "f:close()\n";
    uv_loop_t loop;
    uv_loop_init(&loop);
    luar_buf_t err;
    luar_buf_init(&err, 0);
    luar_vm_t *vm = NULL;
    CHECK_EQ_INT(new_vm(&loop, main_lua, 0, 0, &vm, &err), 0);
    if (err.data != NULL)
        fprintf(stderr, "%s", err.data);
    if (vm != NULL)
        finish_vm(&loop, vm);
    luar_buf_free(&err);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

TEST(test_memory_cap_fails_one_task_and_vm_lives_on)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    luar_vm_t *vm = NULL;
    CHECK_EQ_INT(new_vm(&loop, NULL, 8u << 20, 0, &vm, NULL), 0);
    if (vm == NULL)
        return;
    struct chunk_run hog = {.code = "local t = {}\n"
                                    "for i = 1, 1e8 do t[i] = ('x'):rep(64) .. i end\n"};
    run_chunk(&loop, vm, &hog);
    CHECK_EQ_INT(hog.status, LUAR_ELUA);
    CHECK(strstr(hog.error, "not enough memory") != NULL);
    struct chunk_run next = {.code = "local t = {}\n"
                                     "for i = 1, 1000 do t[i] = i end\n"
                                     "return 'ok ' .. #t\n"};
    run_chunk(&loop, vm, &next);
    CHECK_EQ_INT(next.status, 0);
    CHECK_EQ_STR(next.result, "ok 1000");
    CHECK(luar_vm_memory(vm) < (8u << 20));
    finish_vm(&loop, vm);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

TEST(test_cpu_budget_stops_loops_even_inside_pcall)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    luar_vm_t *vm = NULL;
    CHECK_EQ_INT(new_vm(&loop, NULL, 0, 0.2, &vm, NULL), 0);
    if (vm == NULL)
        return;
    struct chunk_run plain = {.code = "while true do end\n"};
    run_chunk(&loop, vm, &plain);
    CHECK_EQ_INT(plain.status, LUAR_ELUA);
    CHECK(strstr(plain.error, "CPU budget exceeded (0.2 s without yielding)") != NULL);
    struct chunk_run wrapped = {
        .code = "while true do\n"
                "  pcall(function() while true do end end)\n"
                "  xpcall(function() while true do end end, function() while true do end end)\n"
                "end\n"};
    run_chunk(&loop, vm, &wrapped);
    CHECK_EQ_INT(wrapped.status, LUAR_ELUA);
    CHECK(strstr(wrapped.error, "CPU budget exceeded") != NULL);
    struct chunk_run in_coroutine = {
        .code = "local co = coroutine.wrap(function() while true do end end)\n"
                "while true do pcall(co) end\n"};
    run_chunk(&loop, vm, &in_coroutine);
    CHECK_EQ_INT(in_coroutine.status, LUAR_ELUA);
    struct chunk_run after = {.code = "return 'alive'"};
    run_chunk(&loop, vm, &after);
    CHECK_EQ_STR(after.result, "alive");
    finish_vm(&loop, vm);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

TEST(test_bridge_sleep_resumes_tasks_in_timer_order)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    luar_vm_t *vm = NULL;
    CHECK_EQ_INT(new_vm(&loop, NULL, 0, 0, &vm, NULL), 0);
    if (vm == NULL)
        return;
    luar_buf_t order;
    luar_buf_init(&order, 0);
    /* a's deadline leaves c half a second to be resumed from its first sleep, so a loaded
     * machine cannot reorder them; b's comes before c's second sleep could end. */
    struct chunk_run a = {.code = "require('luar.time').sleep(0.5) return 'a'", .order = &order};
    struct chunk_run b = {.code = "require('luar.time').sleep(0.02) return 'b'", .order = &order};
    struct chunk_run c = {.code = "local t = require('luar.time')\n"
                                  "t.sleep(0.01) t.sleep(0.03) return 'c'",
                          .order = &order};
    CHECK_EQ_INT(spawn_chunk(vm, &a), 0);
    CHECK_EQ_INT(spawn_chunk(vm, &b), 0);
    CHECK_EQ_INT(spawn_chunk(vm, &c), 0);
    CHECK_EQ_INT(luar_vm_tasks(vm), 3);
    while (!(a.finished && b.finished && c.finished) && uv_run(&loop, UV_RUN_ONCE) != 0) {
    }
    CHECK_EQ_STR(order.data, "bca");
    CHECK_EQ_INT(luar_vm_tasks(vm), 0);
    luar_buf_free(&order);
    finish_vm(&loop, vm);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

TEST(test_bridge_sleep_inside_user_coroutines)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    luar_vm_t *vm = NULL;
    CHECK_EQ_INT(new_vm(&loop, NULL, 0, 0, &vm, NULL), 0);
    if (vm == NULL)
        return;
    struct chunk_run c = {
        .code = "local time = require 'luar.time'\n"
                "local out = {}\n"
                "local gen = coroutine.wrap(function()\n"
                "  for i = 1, 3 do time.sleep(0.001) coroutine.yield(i) end\n"
                "end)\n"
                "for _ = 1, 3 do out[#out + 1] = gen() end\n"
                "local co = coroutine.create(function(a)\n"
                "  time.sleep(0.001)\n"
                "  local inner = coroutine.wrap(function(x) time.sleep(0.001) return x * 3 end)\n"
                "  local b = coroutine.yield(inner(a))\n"
                "  time.sleep(0.001)\n"
                "  return b * 2\n"
                "end)\n"
                "local ok, v = coroutine.resume(co, 1)\n"
                "assert(ok and v == 3, tostring(v))\n"
                "ok, v = coroutine.resume(co, 5)\n"
                "assert(ok and v == 10, tostring(v))\n"
                "assert(coroutine.status(co) == 'dead')\n"
                "assert(not coroutine.isyieldable())\n"
                "local ok2, err = pcall(table.sort, {3, 2, 1}, function(x, y) time.sleep(0) end)\n"
                "assert(not ok2 and err:find('cannot wait here'), err)\n"
                "return table.concat(out, ',')\n"};
    run_chunk(&loop, vm, &c);
    CHECK_EQ_INT(c.status, 0);
    if (c.status != 0)
        fprintf(stderr, "%s\n", c.error);
    CHECK_EQ_STR(c.result, "1,2,3");
    finish_vm(&loop, vm);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

TEST(test_retire_closes_state_after_last_task)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    luar_vm_t *vm = NULL;
    CHECK_EQ_INT(new_vm(&loop, NULL, 0, 0, &vm, NULL), 0);
    if (vm == NULL)
        return;
    closed_count = 0;
    luar_vm_set_close_cb(vm, on_closed, NULL);
    struct chunk_run c = {.code = "require('luar.time').sleep(0.02) return 'done'"};
    CHECK_EQ_INT(spawn_chunk(vm, &c), 0);
    luar_vm_retire(vm);
    CHECK_EQ_INT(closed_count, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(c.finished);
    CHECK_EQ_STR(c.result, "done");
    CHECK_EQ_INT(closed_count, 1);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

TEST(test_shutdown_cancels_waiting_tasks)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    luar_vm_t *vm = NULL;
    CHECK_EQ_INT(new_vm(&loop, NULL, 0, 0, &vm, NULL), 0);
    if (vm == NULL)
        return;
    closed_count = 0;
    luar_vm_set_close_cb(vm, on_closed, NULL);
    struct chunk_run c = {.code = "require('luar.time').sleep(30) return 'late'"};
    CHECK_EQ_INT(spawn_chunk(vm, &c), 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    CHECK(!c.finished);
    luar_vm_shutdown(vm, "shutting down");
    CHECK(c.finished);
    CHECK_EQ_INT(c.status, LUAR_ECANCELED);
    CHECK_EQ_STR(c.error, "shutting down");
    CHECK_EQ_INT(closed_count, 1);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

/*
 * A server and a VM on a loop thread; the test thread is a blocking HTTP client. Requests go
 * to the VM's router, or to `on_request` when a test sets one (in `prepare`, which runs
 * before the loop thread starts).
 */
struct http_fixture {
    uv_loop_t loop;
    uv_async_t stop;
    luar_http_server_t *srv;
    luar_vm_t *vm; /* NULL once a test retired it */
    luar_queue_t *queue;
    void (*on_request)(struct http_fixture *f, luar_http_req_t *req);
    pthread_t thread;
    int port;
};

static void fixture_on_request(luar_http_req_t *req, void *udata)
{
    struct http_fixture *f = udata;
    if (f->on_request != NULL)
        f->on_request(f, req);
    else
        luar_vm_handle_http(f->vm, req);
}

static void fixture_on_stop(uv_async_t *a)
{
    struct http_fixture *f = a->data;
    if (f->vm != NULL)
        luar_vm_retire(f->vm);
    luar_jobs_set_host(NULL, NULL, NULL);
    if (f->queue != NULL)
        luar_queue_close(f->queue, NULL, NULL);
    luar_http_server_close(f->srv, NULL, NULL);
    uv_close((uv_handle_t *)a, NULL);
}

static void *fixture_thread(void *arg)
{
    struct http_fixture *f = arg;
    uv_run(&f->loop, UV_RUN_DEFAULT);
    return NULL;
}

static int fixture_start(struct http_fixture *f, const char *main_lua,
                         void (*prepare)(struct http_fixture *f))
{
    memset(f, 0, sizeof *f);
    uv_loop_init(&f->loop);
    luar_buf_t err;
    luar_buf_init(&err, 0);
    int rc = new_vm(&f->loop, main_lua, 0, 0.5, &f->vm, &err);
    if (rc != 0)
        fprintf(stderr, "%s", err.data != NULL ? err.data : "vm failed\n");
    luar_buf_free(&err);
    if (rc != 0)
        return rc;
    luar_http_limits_t limits;
    luar_http_limits_default(&limits);
    luar_listen_t l = {.addr = "127.0.0.1:0"};
    if (luar_http_server_new(&f->loop, &limits, fixture_on_request, f, &f->srv) != 0 ||
        luar_http_server_listen(f->srv, &l, 0) != 0)
        return LUAR_EIO;
    f->port = luar_http_server_port(f->srv);
    if (prepare != NULL)
        prepare(f);
    uv_async_init(&f->loop, &f->stop, fixture_on_stop);
    f->stop.data = f;
    pthread_create(&f->thread, NULL, fixture_thread, f);
    return 0;
}

static void fixture_stop(struct http_fixture *f)
{
    uv_async_send(&f->stop);
    pthread_join(f->thread, NULL);
    CHECK_EQ_INT(uv_loop_close(&f->loop), 0);
}

/* Sends one request (Connection: close); returns the status, the whole answer in `out`. */
static int http_call(int port, const char *method, const char *target, const char *body, char *out,
                     size_t outsz)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    out[0] = '\0';
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Test: a\r\n"
                     "X-Test: b\r\nContent-Length: %zu\r\n\r\n%s",
                     method, target, body != NULL ? strlen(body) : 0, body != NULL ? body : "");
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    size_t len = 0;
    ssize_t r;
    while (len + 1 < outsz && (r = read(fd, out + len, outsz - 1 - len)) > 0)
        len += (size_t)r;
    out[len] = '\0';
    close(fd);
    int status = -1;
    if (sscanf(out, "HTTP/1.1 %d", &status) != 1)
        return -1;
    return status;
}

static const char *http_body(const char *answer)
{
    const char *p = strstr(answer, "\r\n\r\n");
    return p != NULL ? p + 4 : "";
}

static int handler_errors_logged;

/* Swallows log lines; counts "handler error" lines that carry the error and traceback. */
static int capture_log(void *ud, int level, const char *line, size_t len)
{
    (void)ud;
    (void)len;
    if (level == LUAR_LOG_ERROR && strstr(line, "\"msg\":\"handler error\"") != NULL &&
        strstr(line, "\"traceback\":") != NULL && strstr(line, "\"route\":") != NULL)
        handler_errors_logged++;
    return 1;
}

TEST(test_http_routes_requests_and_shapes_responses)
{
    static const char main_lua[] =
        "local http = require 'luar.http'\n"
        "local json = require 'luar.json'\n"
        "local time = require 'luar.time'\n"
        "http.route('GET', '/users/:id', function(req)\n"
        "  return { json = { id = req.params.id, q = req.query.q, sp = req.query.sp,\n"
        "                    h = req.headers['x-test'], route = req.route } }\n"
        "end)\n"
        "http.route('GET', '/users/me', function(req) return 'me' end)\n"
        "http.route('*', '/files/*rest', function(req) return req.params.rest end)\n"
        "http.route('POST', '/echo', function(req)\n"
        "  local v, err = req:json()\n"
        "  if not v then return { status = 400, json = { kind = err.kind } } end\n"
        "  time.sleep(0.01)\n"
        "  return { status = 201, body = json.encode(v), headers = { ['X-Kind'] = 'echo' } }\n"
        "end)\n"
        "http.route('GET', '/secret-error', function() error('the password is hunter2') end)\n"
        "http.route('GET', '/bad-return', function() return 42 end)\n"
        "http.route('GET', '/empty', function() end)\n"
        "assert(not pcall(http.route, 'GET', '/users/me', function() end))\n"
        "assert(not pcall(http.route, 'GET', 'no-slash', function() end))\n"
        "assert(not pcall(http.route, 'GET', '/a/*x/b', function() end))\n";
    struct http_fixture f;
    handler_errors_logged = 0;
    luar_log_set_hook(capture_log, NULL);
    if (fixture_start(&f, main_lua, NULL) != 0) {
        CHECK(0);
        return;
    }
    CHECK_EQ_INT(luar_vm_routes(f.vm), 7);
    char out[8192];
    CHECK_EQ_INT(http_call(f.port, "GET", "/users/42?q=a%20b&sp=x+y&q=last", NULL, out, sizeof out),
                 200);
    CHECK(strstr(out, "Content-Type: application/json") != NULL);
    CHECK(strstr(http_body(out), "\"id\":\"42\"") != NULL);
    CHECK(strstr(http_body(out), "\"q\":\"last\"") != NULL);
    CHECK(strstr(http_body(out), "\"sp\":\"x y\"") != NULL);
    CHECK(strstr(http_body(out), "\"h\":\"a, b\"") != NULL);
    CHECK(strstr(http_body(out), "\"route\":\"/users/:id\"") != NULL);
    CHECK_EQ_INT(http_call(f.port, "GET", "/users/me", NULL, out, sizeof out), 200);
    CHECK_EQ_STR(http_body(out), "me");
    CHECK(strstr(out, "text/plain") != NULL);
    CHECK_EQ_INT(http_call(f.port, "DELETE", "/files/a/b/c", NULL, out, sizeof out), 200);
    CHECK_EQ_STR(http_body(out), "a/b/c");
    CHECK_EQ_INT(http_call(f.port, "POST", "/echo", "{\"n\":5}", out, sizeof out), 201);
    CHECK_EQ_STR(http_body(out), "{\"n\":5}");
    CHECK(strstr(out, "X-Kind: echo") != NULL);
    CHECK_EQ_INT(http_call(f.port, "POST", "/echo", "{\"n\":", out, sizeof out), 400);
    CHECK_EQ_STR(http_body(out), "{\"kind\":\"invalid\"}");
    CHECK_EQ_INT(http_call(f.port, "PUT", "/echo", NULL, out, sizeof out), 405);
    CHECK(strstr(out, "Allow: POST") != NULL);
    CHECK_EQ_INT(http_call(f.port, "GET", "/nowhere", NULL, out, sizeof out), 404);
    CHECK_EQ_STR(http_body(out), "{\"error\":\"not found\"}");
    CHECK_EQ_INT(http_call(f.port, "GET", "/users/", NULL, out, sizeof out), 404);
    CHECK_EQ_INT(http_call(f.port, "GET", "/secret-error", NULL, out, sizeof out), 500);
    CHECK(strstr(http_body(out), "\"error\":\"internal error\",\"request_id\":\"") != NULL);
    CHECK(strstr(out, "hunter2") == NULL);
    CHECK_EQ_INT(http_call(f.port, "GET", "/bad-return", NULL, out, sizeof out), 500);
    CHECK_EQ_INT(http_call(f.port, "GET", "/empty", NULL, out, sizeof out), 204);
    fixture_stop(&f);
    luar_log_set_hook(NULL, NULL);
    CHECK_EQ_INT(handler_errors_logged, 2);
}

/* ---- route guards on a request handled in C (the path webhook routes take) ---------- */

static struct guard_world {
    luar_route_guard_t *cert, *ip, *fn, *deny, *allow;
    int done_calls;
    int vm_closed;
    int closed_before_done; /* the VM closed while a check was pending: must stay 0 */
    int freed_pending;      /* guards freed while their check was pending */
} gw;

static void guard_vm_closed(void *arg)
{
    (void)arg;
    gw.vm_closed = 1;
}

static void respond_text(luar_http_req_t *req, const char *text)
{
    luar_http_respond(req, 200, NULL, 0, text, strlen(text));
}

static void guard_done(void *arg, int outcome)
{
    gw.done_calls++;
    gw.closed_before_done += gw.vm_closed;
    if (outcome == LUAR_GUARD_CONTINUE)
        respond_text(arg, "passed after the check");
}

static int noop(lua_State *L)
{
    (void)L;
    return 0;
}

static void noop_done(luar_task_t *task, int status, void *arg)
{
    (void)task;
    (void)status;
    (void)arg;
}

/* Runs fn(L, ud) on the VM's main thread, protected, as the setup of an empty task. */
struct with_lua {
    void (*fn)(lua_State *L, void *ud);
    void *ud;
};

static int with_lua_setup(lua_State *L, void *arg)
{
    struct with_lua *w = arg;
    w->fn(L, w->ud);
    lua_pushcfunction(L, noop);
    return 0;
}

static int with_lua(luar_vm_t *vm, void (*fn)(lua_State *L, void *ud), void *ud)
{
    struct with_lua w = {fn, ud};
    return luar_task_spawn(vm, NULL, with_lua_setup, &w, noop_done, NULL, NULL, NULL);
}

static void parse_guards(lua_State *L, void *ud)
{
    (void)ud;
    static const char *const code =
        "return { require_client_cert = true },\n"
        "  { rate = { limit = '3/h', name = 'c-ip' } },\n"
        "  { rate = { limit = '2/h', name = 'c-fn', key = function(req)\n"
        "      if req.query.t == 'boom' then error('no key today') end\n"
        "      if req.query.t == 'free' then return nil end\n"
        "      assert(req.method == 'GET' and req.route == '/fn')\n"
        "      return req.query.t end } },\n"
        "  { rate = { limit = '5/h', on_error = 'deny' } },\n"
        "  { rate = '5/h' }\n";
    if (luaL_dostring(L, code) != LUA_OK)
        lua_error(L);
    gw.cert = luar_route_guard_parse(L, lua_absindex(L, -5), "/cert");
    gw.ip = luar_route_guard_parse(L, lua_absindex(L, -4), "/ip");
    gw.fn = luar_route_guard_parse(L, lua_absindex(L, -3), "/fn");
    gw.deny = luar_route_guard_parse(L, lua_absindex(L, -2), "/deny");
    gw.allow = luar_route_guard_parse(L, lua_absindex(L, -1), "/allow");
    lua_pop(L, 5);
}

/* A guard made for one request and freed as soon as its check is under way. */
static void parse_ephemeral(lua_State *L, void *ud)
{
    if (luaL_dostring(L, "return { rate = { limit = '3/h', name = 'c-ip' } }") != LUA_OK)
        lua_error(L);
    *(luar_route_guard_t **)ud = luar_route_guard_parse(L, lua_absindex(L, -1), "/ip");
    lua_pop(L, 1);
}

static void guard_on_request(struct http_fixture *f, luar_http_req_t *req)
{
    snprintf(req->route, sizeof req->route, "%s", req->path);
    luar_route_guard_t *g = NULL, *ephemeral = NULL;
    luar_queue_t *q = luar_jobs_queue();
    int no_backend = strncmp(req->path, "/nobackend", 10) == 0;
    if (strcmp(req->path, "/cert") == 0)
        g = gw.cert;
    else if (strcmp(req->path, "/ip") == 0 || strcmp(req->path, "/retire") == 0)
        g = gw.ip;
    else if (strcmp(req->path, "/fn") == 0)
        g = gw.fn;
    else if (strcmp(req->path, "/nobackend-deny") == 0)
        g = gw.deny;
    else if (strcmp(req->path, "/nobackend-allow") == 0)
        g = gw.allow;
    else if (strcmp(req->path, "/ephemeral") == 0 &&
             with_lua(f->vm, parse_ephemeral, &ephemeral) == 0)
        g = ephemeral;
    if (no_backend)
        luar_jobs_set_host(NULL, NULL, NULL);
    int rc = luar_route_guard_run(g, f->vm, req, guard_done, req);
    if (no_backend)
        luar_jobs_set_host(q, NULL, NULL);
    if (rc == LUAR_GUARD_CONTINUE)
        respond_text(req, "passed at once");
    if (ephemeral != NULL) {
        gw.freed_pending += rc == LUAR_GUARD_PENDING;
        luar_route_guard_free(NULL, ephemeral);
    }
    if (strcmp(req->path, "/retire") == 0) { /* a reload while the check is pending */
        luar_vm_set_close_cb(f->vm, guard_vm_closed, NULL);
        luar_vm_retire(f->vm);
        f->vm = NULL;
    }
}

static void guard_prepare(struct http_fixture *f)
{
    char url[128];
    luar_buf_t err;
    luar_buf_init(&err, 0);
    snprintf(url, sizeof url, "sqlite:%s/guards.db", tmpdir);
    if (luar_queue_open(&f->loop, url, &f->queue, &err) != 0)
        fprintf(stderr, "queue: %s\n", err.data ? err.data : "?");
    luar_buf_free(&err);
    luar_jobs_set_host(f->queue, NULL, NULL);
    memset(&gw, 0, sizeof gw);
    CHECK_EQ_INT(with_lua(f->vm, parse_guards, NULL), 0);
    f->on_request = guard_on_request;
}

TEST(test_route_guard_run_on_a_request_handled_in_c)
{
    struct http_fixture f;
    luar_log_set_hook(capture_log, NULL);
    if (fixture_start(&f, "", guard_prepare) != 0 || f.queue == NULL || gw.fn == NULL) {
        CHECK(0);
        return;
    }
    char out[4096];
    /* The certificate is checked at once: plain HTTP is answered 403, no callback. */
    CHECK_EQ_INT(http_call(f.port, "GET", "/cert", NULL, out, sizeof out), 403);
    CHECK(strstr(http_body(out), "client certificate required") != NULL);
    /* By IP: three pass after the check, then 429 with Retry-After (20 min a request). */
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(http_call(f.port, "GET", "/ip", NULL, out, sizeof out), 200);
        CHECK_EQ_STR(http_body(out), "passed after the check");
    }
    CHECK_EQ_INT(http_call(f.port, "GET", "/ip", NULL, out, sizeof out), 429);
    CHECK(strstr(out, "Retry-After: 1200\r\n") != NULL || strstr(out, "Retry-After: 1199\r\n"));
    /* A guard freed while its check is pending: same name and limit, same allowance. */
    CHECK_EQ_INT(http_call(f.port, "GET", "/ephemeral", NULL, out, sizeof out), 429);
    CHECK_EQ_INT(gw.freed_pending, 1);
    /* A key function, called with the request table: per key; nil is unlimited; an error
     * answers 500 (and is logged). */
    CHECK_EQ_INT(http_call(f.port, "GET", "/fn?t=a", NULL, out, sizeof out), 200);
    CHECK_EQ_INT(http_call(f.port, "GET", "/fn?t=a", NULL, out, sizeof out), 200);
    CHECK_EQ_INT(http_call(f.port, "GET", "/fn?t=a", NULL, out, sizeof out), 429);
    CHECK_EQ_INT(http_call(f.port, "GET", "/fn?t=b", NULL, out, sizeof out), 200);
    for (int i = 0; i < 4; i++) {
        CHECK_EQ_INT(http_call(f.port, "GET", "/fn?t=free", NULL, out, sizeof out), 200);
        CHECK_EQ_STR(http_body(out), "passed at once");
    }
    CHECK_EQ_INT(http_call(f.port, "GET", "/fn?t=boom", NULL, out, sizeof out), 500);
    /* No backend to ask: through by default, 503 with on_error = "deny". */
    CHECK_EQ_INT(http_call(f.port, "GET", "/nobackend-allow", NULL, out, sizeof out), 200);
    CHECK_EQ_INT(http_call(f.port, "GET", "/nobackend-deny", NULL, out, sizeof out), 503);
    CHECK(strstr(out, "Retry-After: 1\r\n") != NULL);
    /* The VM retired while a check is pending stays open until the callback has run. */
    int before = gw.done_calls;
    CHECK_EQ_INT(http_call(f.port, "GET", "/retire", NULL, out, sizeof out), 429);
    CHECK_EQ_INT(gw.done_calls, before + 1);
    CHECK_EQ_INT(gw.vm_closed, 1);
    CHECK_EQ_INT(gw.closed_before_done, 0);
    fixture_stop(&f);
    luar_log_set_hook(NULL, NULL);
    /* The guards outlive the VM in this test; their key function went with its state. */
    luar_route_guard_free(NULL, gw.cert);
    luar_route_guard_free(NULL, gw.ip);
    luar_route_guard_free(NULL, gw.fn);
    luar_route_guard_free(NULL, gw.deny);
    luar_route_guard_free(NULL, gw.allow);
}

int main(void)
{
    make_tmpdir();
    RUN(test_vm_load_error_reports_file_line);
    RUN(test_vm_yield_at_top_level_is_refused);
    RUN(test_sandbox_refuses_blocking_and_exiting_functions);
    RUN(test_memory_cap_fails_one_task_and_vm_lives_on);
    RUN(test_cpu_budget_stops_loops_even_inside_pcall);
    RUN(test_bridge_sleep_resumes_tasks_in_timer_order);
    RUN(test_bridge_sleep_inside_user_coroutines);
    RUN(test_retire_closes_state_after_last_task);
    RUN(test_shutdown_cancels_waiting_tasks);
    RUN(test_http_routes_requests_and_shapes_responses);
    RUN(test_route_guard_run_on_a_request_handled_in_c);
    remove_tmpdir();
    luar_metrics_reset();
    return DONE();
}
