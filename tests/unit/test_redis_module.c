/*
 * luar.redis against a real redis-server this test starts on a free port: every reply type
 * converted to Lua, refused commands, a thousand coroutines sharing round trips, the
 * "no Redis configured" and outage errors, locks (watchdog, a cancelled holder, waiting,
 * fencing), and the subscriber (order, a raising handler, generations, a restarted server).
 *
 * No redis-server on the machine is a failure, not a skip.
 */
#include "common/buf.h"
#include "common/error.h"
#include "lua/mod_redis.h"
#include "lua/task.h"
#include "lua/vm.h"
#include "metrics/metrics.h"
#include "redis_server.h"
#include "test.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static redis_server_t server;
static uv_loop_t loop;
static char tmpdir[64];
static char url[256];

static void write_main(const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/main.lua", tmpdir);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return;
    fputs(text, f);
    fclose(f);
}

/* Helpers every VM of this file has, before its own main.lua text. */
static const char prelude[] =
    "redis = require 'luar.redis'\n"
    "time = require 'luar.time'\n"
    "json = require 'luar.json'\n"
    "function eq(a, b, what)\n"
    "  if a ~= b then error((what or '') .. ': ' .. tostring(a) .. ' ~= ' .. tostring(b), 2) end\n"
    "end\n"
    "function until_true(f, what)\n"
    "  for _ = 1, 500 do if f() then return end time.sleep(0.01) end\n"
    "  error('timed out waiting for ' .. what, 2)\n"
    "end\n"
    "function numsub(ch)\n"
    "  return assert(redis.call('PUBSUB', 'NUMSUB', ch))[2]\n"
    "end\n";

static luar_vm_t *new_vm(const char *main)
{
    luar_buf_t text, err;
    luar_buf_init(&text, 0);
    luar_buf_init(&err, 0);
    luar_buf_puts(&text, prelude);
    luar_buf_puts(&text, main ? main : "");
    write_main(text.data);
    luar_vm_config_t cfg = {0};
    cfg.loop = &loop;
    cfg.scripts_dir = tmpdir;
    cfg.generation = 1;
    luar_vm_t *vm = NULL;
    if (luar_vm_new(&cfg, &vm, &err))
        fprintf(stderr, "VM: %s\n", err.data ? err.data : "?");
    CHECK(vm != NULL);
    luar_buf_free(&text);
    luar_buf_free(&err);
    return vm;
}

struct chunk {
    const char *code;
    int finished, status;
    char result[1100];
    char error[1024];
};

static int chunk_setup(lua_State *L, void *arg)
{
    struct chunk *c = arg;
    if (luaL_loadstring(L, c->code) != LUA_OK)
        return lua_error(L);
    return 0;
}

static void chunk_done(luar_task_t *task, int status, void *arg)
{
    struct chunk *c = arg;
    c->finished = 1;
    c->status = status;
    if (status == 0 && luar_task_results(task) > 0) {
        const char *s = lua_tostring(luar_task_thread(task), -luar_task_results(task));
        snprintf(c->result, sizeof c->result, "%s", s ? s : "(not a string)");
    }
    if (status != 0)
        snprintf(c->error, sizeof c->error, "%s", luar_task_error(task));
}

/* Runs the loop until every chunk of `cs` finished (at most 30 s). */
static void wait_chunks(struct chunk *cs, size_t n)
{
    uint64_t deadline = uv_hrtime() + 30ull * 1000000000ull;
    for (;;) {
        size_t done = 0;
        for (size_t i = 0; i < n; i++)
            done += cs[i].finished;
        if (done == n || uv_hrtime() > deadline)
            break;
        uv_run(&loop, UV_RUN_ONCE);
    }
    for (size_t i = 0; i < n; i++) {
        CHECK(cs[i].finished);
        if (cs[i].status != 0)
            fprintf(stderr, "chunk failed: %s\n", cs[i].error);
    }
}

/* Runs `code` in a task of `vm`; returns its first result ("" when none; "!error" on error). */
static const char *run(luar_vm_t *vm, const char *code)
{
    static struct chunk c;
    memset(&c, 0, sizeof c);
    c.code = code;
    CHECK_EQ_INT(luar_task_spawn(vm, NULL, chunk_setup, &c, chunk_done, &c, NULL, NULL), 0);
    wait_chunks(&c, 1);
    if (c.status != 0) {
        snprintf(c.result, sizeof c.result, "!%s", c.error);
    }
    return c.result;
}

static void setup(const char *redis_url, const char *queue_url)
{
    luar_buf_t err;
    luar_buf_init(&err, 0);
    CHECK_EQ_INT(luar_redis_module_setup(&loop, redis_url, queue_url, &err), 0);
    luar_buf_free(&err);
}

/* Closes the module and the VM, and runs the loop until every handle is closed. */
static void teardown(luar_vm_t *vm)
{
    luar_redis_module_close();
    if (vm)
        luar_vm_retire(vm);
    uv_run(&loop, UV_RUN_DEFAULT);
}

TEST(redis_call_converts_every_reply_type)
{
    setup(url, NULL);
    luar_vm_t *vm = new_vm(NULL);
    const char *r = run(
        vm,
        "redis.call('FLUSHDB')\n"
        "eq(redis.call('SET', 'k', 'v'), 'OK', 'status')\n"
        "eq(redis.call('PING'), 'PONG', 'ping')\n"
        "eq(redis.call('GET', 'k'), 'v', 'bulk')\n"
        "local v, err = redis.call('GET', 'missing')\n"
        "eq(v, nil, 'nil') eq(err, nil, 'nil err') eq(select('#', redis.call('GET', 'x')), 1)\n"
        "eq(redis.call('INCRBY', 'n', 41), 41, 'integer') eq(math.type(redis.call('INCR', 'n')), "
        "'integer')\n"
        "eq(redis.call('SET', 'big', 4611686018427387904), 'OK') eq(redis.call('INCR', 'big'), "
        "4611686018427387905)\n"
        "eq(redis.call('SET', 'f', 0.1), 'OK') eq(redis.call('GET', 'f'), '0.1', 'float arg')\n"
        "eq(redis.call('SET', 'bin', 'a\\0b'), 'OK') eq(redis.call('GET', 'bin'), 'a\\0b', "
        "'binary')\n"
        "eq(redis.call('SET', 'empty', ''), 'OK') eq(redis.call('GET', 'empty'), '', 'empty')\n"
        "local m = redis.call('MGET', 'k', 'missing', 'n')\n"
        "eq(#m, 3) eq(m[1], 'v') eq(m[2], redis.null, 'nil in array') eq(m[3], '42')\n"
        "eq(redis.null, json.null) eq(json.encode(m), '[\"v\",null,\"42\"]')\n"
        "local e = redis.call('LRANGE', 'nolist', 0, -1) eq(type(e), 'table') eq(#e, 0)\n"
        "local t = redis.call('EVAL', \"return {1, {2, {'x', {}}}, redis.status_reply('FINE'), \"\n"
        "  .. \"redis.error_reply('MYERR nested'), false}\", 0)\n"
        "eq(#t, 5, 'nested length') eq(t[5], redis.null, 'false is nil') eq(t[1], 1) eq(t[2][1], "
        "2) eq(t[2][2][1], 'x') eq(#t[2][2][2], 0)\n"
        "eq(t[3], 'FINE') eq(t[4].kind, 'redis') eq(t[4].code, 'MYERR') eq(t[4].message, 'MYERR "
        "nested')\n"
        "local v2, e2 = redis.call('LPUSH', 'k', 'x')\n"
        "eq(v2, nil) eq(e2.kind, 'redis') eq(e2.code, 'WRONGTYPE')\n"
        "assert(e2.message:find('^WRONGTYPE Operation against a key'), e2.message)\n"
        "assert(tostring(e2):find('^redis: WRONGTYPE'), tostring(e2))\n"
        "local v3, e3 = redis.call('NOSUCHCOMMAND', 1)\n"
        "eq(e3.code, 'ERR') assert(e3.message:find('unknown command'), e3.message)\n"
        "eq(redis.call('get', 'k'), 'v', 'lower-case command')\n"
        "eq(redis.publish('nobody-listens', 'x'), 0, 'publish')\n"
        "return 'ok'\n");
    CHECK_EQ_STR(r, "ok");
    teardown(vm);
}

TEST(redis_call_refuses_what_would_break_the_shared_connection)
{
    setup(url, NULL);
    luar_vm_t *vm = new_vm(NULL);
    const char *r = run(
        vm, "local function refused(want, ...)\n"
            "  local ok, err = pcall(redis.call, ...)\n"
            "  assert(not ok, 'allowed: ' .. tostring((...)))\n"
            "  assert(err:find(want, 1, true), err)\n"
            "end\n"
            "refused('MULTI is not allowed (a transaction', 'multi')\n"
            "refused('BLPOP is not allowed (a blocking command', 'BLPOP', 'q', 0)\n"
            "refused('SELECT is not allowed', 'SELECT', 1)\n"
            "refused('SUBSCRIBE is not allowed (use redis.subscribe', 'SUBSCRIBE', 'c')\n"
            "refused('XREAD BLOCK is not allowed', 'XREAD', 'BLOCK', 0, 'STREAMS', 's', '$')\n"
            "refused('CLIENT REPLY is not allowed', 'CLIENT', 'REPLY', 'OFF')\n"
            "refused('argument #2: expected a string or number, got table', 'GET', {})\n"
            "refused('argument #3: expected a string or number, got boolean', 'SET', 'k', true)\n"
            "assert(not pcall(redis.call))\n"
            "eq(redis.call('XREAD', 'COUNT', 1, 'STREAMS', 'nostream', '0'), nil, 'xread without "
            "block')\n"
            "return 'ok'\n");
    CHECK_EQ_STR(r, "ok");
    teardown(vm);
}

TEST(redis_thousand_coroutines_share_round_trips)
{
    enum { N = 1000 };
    setup(url, NULL);
    luar_vm_t *vm = new_vm(NULL);
    CHECK_EQ_STR(run(vm, "redis.call('DEL', 'counter') return 'ok'"), "ok");
    luar_redis_stats_t before, after, sub;
    luar_redis_module_stats(&before, &sub);
    static struct chunk cs[N];
    memset(cs, 0, sizeof cs);
    for (int i = 0; i < N; i++) {
        cs[i].code = "return tostring(redis.call('INCR', 'counter'))";
        CHECK_EQ_INT(luar_task_spawn(vm, NULL, chunk_setup, &cs[i], chunk_done, &cs[i], NULL, NULL),
                     0);
    }
    wait_chunks(cs, N);
    luar_redis_module_stats(&after, &sub);
    static char seen[N + 1];
    memset(seen, 0, sizeof seen);
    int distinct = 0;
    for (int i = 0; i < N; i++) {
        int v = atoi(cs[i].result);
        if (v >= 1 && v <= N && !seen[v]) {
            seen[v] = 1;
            distinct++;
        }
    }
    CHECK_EQ_INT(distinct, N);
    CHECK_EQ_INT(after.commands - before.commands, N);
    /* Every task runs in one loop iteration, so their commands leave together. */
    CHECK(after.writes - before.writes <= 5);
    fprintf(stderr, "  %d commands in %llu writes\n", N,
            (unsigned long long)(after.writes - before.writes));
    teardown(vm);
}

TEST(redis_without_a_configured_server_is_a_backend_error)
{
    setup(NULL, "sqlite:/tmp/nothing.db");
    CHECK(luar_redis_module_url() == NULL);
    luar_vm_t *vm = new_vm(NULL);
    const char *r = run(vm, "local v, err = redis.call('PING')\n"
                            "eq(v, nil) eq(err.kind, 'backend')\n"
                            "assert(err.message:find('no Redis configured for luar.redis: set "
                            "redis = { url = ', 1, true), err.message)\n"
                            "local ok, e2 = redis.lock('x', 1, function() end)\n"
                            "eq(ok, nil) eq(e2.kind, 'backend')\n"
                            "return 'ok'\n");
    CHECK_EQ_STR(r, "ok");
    teardown(vm);
    /* The queue's URL is used when it is Redis, with its prefix. */
    char qurl[300];
    snprintf(qurl, sizeof qurl, "%s?prefix=q:", url);
    setup(NULL, qurl);
    CHECK(luar_redis_module_url() != NULL);
    CHECK_EQ_STR(luar_redis_module_url()->prefix, "q:");
    vm = new_vm(NULL);
    CHECK_EQ_STR(run(vm, "return redis.call('PING')"), "PONG");
    teardown(vm);
    /* A URL that cannot be parsed is refused with a message, password hidden. */
    luar_buf_t err;
    luar_buf_init(&err, 0);
    CHECK_EQ_INT(luar_redis_module_setup(&loop, "redis://u:secretpw@h:99999/0", NULL, &err),
                 LUAR_EINVAL);
    CHECK(err.data && strstr(err.data, "redis.url") && !strstr(err.data, "secretpw"));
    luar_buf_free(&err);
    luar_redis_module_close();
}

TEST(redis_outage_fails_fast_and_service_resumes)
{
    setup(url, NULL);
    luar_vm_t *vm = new_vm(NULL);
    CHECK_EQ_STR(run(vm, "return redis.call('PING')"), "PONG");
    redis_kill(&server);
    /* The first command notices the broken connection; the ones after fail at once. */
    const char *r =
        run(vm, "local v, err = redis.call('PING')\n"
                "eq(v, nil) eq(err.kind, 'backend')\n"
                "local t0 = time.monotonic()\n"
                "for i = 1, 20 do\n"
                "  local v2, e2 = redis.call('PING')\n"
                "  eq(v2, nil) eq(e2.kind, 'backend')\n"
                "  assert(e2.message:find('redis 127.0.0.1:'), e2.message)\n"
                "end\n"
                "local took = time.monotonic() - t0\n"
                "assert(took < 0.5, 'outage errors took ' .. took .. ' s')\n"
                "local ok, e3 = redis.lock('down', 1, function() error('ran without a lock') end)\n"
                "eq(ok, nil) eq(e3.kind, 'backend')\n"
                "return 'ok'\n");
    CHECK_EQ_STR(r, "ok");
    CHECK_EQ_INT(redis_start(&server, NULL), 0);
    r = run(vm, "until_true(function() return redis.call('PING') == 'PONG' end, 'redis') "
                "return 'ok'");
    CHECK_EQ_STR(r, "ok");
    teardown(vm);
}

TEST(redis_lock_runs_fn_returns_its_results_and_releases)
{
    setup(url, NULL);
    luar_vm_t *vm = new_vm(NULL);
    const char *r =
        run(vm, "local key\n"
                "local a, b, c, d = redis.lock('job', 0.3, function(l)\n"
                "  key = l.key\n"
                "  eq(l.name, 'job') eq(#l.token, 32)\n"
                "  eq(redis.call('GET', l.key), l.token, 'held')\n"
                "  time.sleep(1.0) -- more than three ttls: the watchdog keeps it\n"
                "  eq(redis.call('GET', l.key), l.token, 'still held')\n"
                "  assert(redis.call('PTTL', l.key) > 0)\n"
                "  return 1, nil, 'x', false\n"
                "end)\n"
                "eq(a, 1) eq(b, nil) eq(c, 'x') eq(d, false)\n"
                "eq(key, 'luar:lock:job')\n"
                "eq(redis.call('EXISTS', key), 0, 'released')\n"
                "local ok, err = pcall(redis.lock, 'job', 1, function() error({ code = 7 }) end)\n"
                "eq(ok, false) eq(err.code, 7, 'error object raised again')\n"
                "eq(redis.call('EXISTS', key), 0, 'released after an error')\n"
                "assert(not pcall(redis.lock, 'job', 0.01, function() end), 'ttl too small')\n"
                "assert(not pcall(redis.lock, '', 1, function() end), 'empty name')\n"
                "assert(not pcall(redis.lock, 'x', { wait = 1 }, function() end), 'no ttl')\n"
                "assert(not pcall(redis.lock, 'x', 1), 'no fn')\n"
                "return 'ok'\n");
    CHECK_EQ_STR(r, "ok");
    teardown(vm);
}

TEST(redis_lock_waits_then_reports_locked)
{
    setup(url, NULL);
    luar_vm_t *vm = new_vm(NULL);
    const char *r = run(
        vm,
        "redis.call('SET', 'luar:lock:busy', 'someone-else')\n"
        "local t0 = time.monotonic()\n"
        "local v, err = redis.lock('busy', { ttl = 5, wait = 0.3 }, function() error('ran') end)\n"
        "local waited = time.monotonic() - t0\n"
        "eq(v, nil) eq(err.kind, 'locked')\n"
        "assert(err.message:find('\"busy\" is held by another holder'), err.message)\n"
        "assert(waited >= 0.29 and waited < 1.5, 'waited ' .. waited)\n"
        "local v0, e0 = redis.lock('busy', { ttl = 5, wait = 0 }, function() error('ran') end)\n"
        "eq(e0.kind, 'locked', 'wait = 0 tries once')\n"
        "eq(redis.call('GET', 'luar:lock:busy'), 'someone-else', 'the other lock untouched')\n"
        "redis.call('PEXPIRE', 'luar:lock:busy', 300)\n"
        "eq(redis.lock('busy', 5, function() return 'mine' end), 'mine', 'after it expired')\n"
        "return 'ok'\n");
    CHECK_EQ_STR(r, "ok");
    teardown(vm);
}

TEST(redis_lock_release_is_fenced_by_the_token)
{
    setup(url, NULL);
    luar_vm_t *vm = new_vm(NULL);
    const char *r = run(
        vm, "redis.lock('fenced', 1, function(l)\n"
            "  -- our lock is lost (as if it expired) and someone else takes it\n"
            "  redis.call('SET', l.key, 'other-holder', 'PX', 5000)\n"
            "end)\n"
            "eq(redis.call('GET', 'luar:lock:fenced'), 'other-holder', 'not released: not ours')\n"
            "return 'ok'\n");
    CHECK_EQ_STR(r, "ok");
    teardown(vm);
}

TEST(redis_lock_of_a_cancelled_holder_is_released)
{
    setup(url, NULL);
    luar_vm_t *vm = new_vm(NULL);
    struct chunk holder = {0};
    holder.code = "redis.lock('abandoned', 0.3, function() time.sleep(60) end)";
    luar_task_t *task = NULL;
    CHECK_EQ_INT(luar_task_spawn(vm, NULL, chunk_setup, &holder, chunk_done, &holder, &task, NULL),
                 0);
    CHECK_EQ_STR(run(vm, "until_true(function() return redis.call('EXISTS', "
                         "'luar:lock:abandoned') == 1 end, 'the lock') return 'ok'"),
                 "ok");
    CHECK(!holder.finished);
    luar_task_cancel(task, "job timed out");
    CHECK(holder.finished);
    CHECK_EQ_STR(run(vm, "until_true(function() return redis.call('EXISTS', "
                         "'luar:lock:abandoned') == 0 end, 'the release') return 'ok'"),
                 "ok");
    teardown(vm);
}

static const char subscriber_main[] = "got = {}\n"
                                      "redis.subscribe('orders', function(msg, ch)\n"
                                      "  if msg == 'boom' then error('handler boom') end\n"
                                      "  got[#got + 1] = ch .. ':' .. msg\n"
                                      "end)\n"
                                      "redis.psubscribe('ev.*', function(msg, ch, pat) got[#got + "
                                      "1] = pat .. '/' .. ch .. ':' .. msg end)\n";

TEST(redis_subscribe_delivers_in_order_past_a_raising_handler)
{
    setup(url, NULL);
    luar_vm_t *vm = new_vm(subscriber_main);
    luar_redis_module_use_vm(vm);
    const char *r =
        run(vm, "until_true(function() return numsub('orders') == 1 end, 'the subscription')\n"
                "for i = 1, 200 do\n"
                "  redis.publish('orders', tostring(i))\n"
                "  if i == 100 then redis.publish('orders', 'boom') end\n"
                "end\n"
                "eq(redis.publish('ev.created', 'p'), 1, 'pattern receivers')\n"
                "until_true(function() return #got == 201 end, 'the messages')\n"
                "for i = 1, 200 do eq(got[i], 'orders:' .. i, 'message ' .. i) end\n"
                "eq(got[201], 'ev.*/ev.created:p')\n"
                "return 'ok'\n");
    CHECK_EQ_STR(r, "ok");
    luar_buf_t m;
    luar_buf_init(&m, 0);
    luar_metrics_render(&m);
    CHECK(m.data && strstr(m.data, "luar_lua_errors_total{where=\"redis\"} 1\n"));
    CHECK(m.data && strstr(m.data, "luar_redis_messages_total{outcome=\"failed\"} 1\n"));
    luar_buf_free(&m);
    teardown(vm);
}

TEST(redis_subscriptions_follow_the_serving_generation)
{
    setup(url, NULL);
    luar_vm_t *v1 = new_vm("got = {}\n"
                           "redis.subscribe('a', function(m) got[#got + 1] = 'v1a:' .. m end)\n"
                           "redis.subscribe('b', function(m) got[#got + 1] = 'v1b:' .. m end)\n");
    luar_vm_t *v2 = new_vm("got = {}\n"
                           "redis.subscribe('b', function(m) got[#got + 1] = 'v2b:' .. m end)\n"
                           "redis.subscribe('c', function(m) got[#got + 1] = 'v2c:' .. m end)\n"
                           "redis.subscribe('c', function(m) got[#got + 1] = 'v2c2:' .. m end)\n");
    luar_redis_module_use_vm(v1);
    CHECK_EQ_STR(run(v1, "until_true(function() return numsub('a') == 1 and numsub('b') == 1 "
                         "end, 'v1') redis.publish('b', 'x') "
                         "until_true(function() return #got == 1 end, 'b') return got[1]"),
                 "v1b:x");
    luar_redis_module_use_vm(v2);
    luar_vm_retire(v1); /* held by the module until the switch: closes now */
    CHECK_EQ_STR(run(v2, "until_true(function() return numsub('a') == 0 and numsub('c') == 1 "
                         "end, 'v2') eq(numsub('b'), 1) redis.publish('b', 'y') "
                         "redis.publish('c', 'z') redis.publish('a', 'lost') "
                         "until_true(function() return #got == 3 end, 'b and c') "
                         "table.sort(got) return table.concat(got, ',')"),
                 "v2b:y,v2c2:z,v2c:z");
    luar_redis_stats_t cmd, sub;
    luar_redis_module_stats(&cmd, &sub);
    CHECK_EQ_INT(sub.connects, 1); /* the switch kept the connection */
    teardown(v2);
}

TEST(redis_subscriber_subscribes_again_after_a_restart)
{
    setup(url, NULL);
    luar_vm_t *vm = new_vm(subscriber_main);
    luar_redis_module_use_vm(vm);
    CHECK_EQ_STR(run(vm, "until_true(function() return numsub('orders') == 1 end, 'sub') "
                         "return 'ok'"),
                 "ok");
    redis_kill(&server);
    CHECK_EQ_INT(redis_start(&server, NULL), 0);
    const char *r = run(
        vm, "until_true(function() local ok, n = pcall(numsub, 'orders') return ok and n == 1 end, "
            "'the subscription after the restart')\n"
            "redis.publish('orders', 'after')\n"
            "until_true(function() return #got == 1 end, 'the message')\n"
            "return got[1]\n");
    CHECK_EQ_STR(r, "orders:after");
    luar_redis_stats_t cmd, sub;
    luar_redis_module_stats(&cmd, &sub);
    CHECK(sub.connects >= 2);
    teardown(vm);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/luar-test-redismod-XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return 2;
    if (redis_start(&server, NULL)) {
        fprintf(stderr, "cannot start redis-server\n");
        return 1;
    }
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", server.port);
    uv_loop_init(&loop);
    RUN(redis_call_converts_every_reply_type);
    RUN(redis_call_refuses_what_would_break_the_shared_connection);
    RUN(redis_thousand_coroutines_share_round_trips);
    RUN(redis_without_a_configured_server_is_a_backend_error);
    RUN(redis_outage_fails_fast_and_service_resumes);
    RUN(redis_lock_runs_fn_returns_its_results_and_releases);
    RUN(redis_lock_waits_then_reports_locked);
    RUN(redis_lock_release_is_fenced_by_the_token);
    RUN(redis_lock_of_a_cancelled_holder_is_released);
    RUN(redis_subscribe_delivers_in_order_past_a_raising_handler);
    RUN(redis_subscriptions_follow_the_serving_generation);
    RUN(redis_subscriber_subscribes_again_after_a_restart);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
    luar_metrics_reset();
    redis_stop(&server);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", tmpdir);
    return DONE();
}
