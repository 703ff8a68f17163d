"""luar.redis end to end, against a redis-server each test starts: redis.call round trips for
every reply type, a thousand concurrent handler coroutines, publish/subscribe in order past a
raising handler, resubscription after a Redis restart and across a reload, lock mutual
exclusion across two `luar serve` processes, fencing of a holder whose lock expired (the
process frozen with SIGSTOP), fast "backend" errors during an outage and recovery, the
`redis = { url }` setting with a SQLite queue, the queue's Redis by default, and an ACL user.
A kept RESP connection (redis_server.py) looks at Redis from outside."""
import concurrent.futures
import json
import os
import signal
import time

from luar_e2e import DEFAULT_TIMEOUT, Luar, main, write_files
from redis_server import RedisServer


def until(pred, what, timeout=DEFAULT_TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.02)


def numsub(r, channel):
    return r("PUBSUB", "NUMSUB", channel)[1]


def metric(srv, line_start):
    _, _, body = srv.request("GET", "/metrics")
    for line in body.decode().splitlines():
        if line.startswith(line_start + " "):
            return float(line.split()[-1])
    return 0.0


def config(url):
    return "return { redis = { url = %s } }\n" % json.dumps(url)


CALLS = {"main.lua": r"""
local http = require "luar.http"
local redis = require "luar.redis"
local json = require "luar.json"
http.route("GET", "/types", function()
  local v, err = redis.call("LPUSH", "str", "x")
  local missing, none = redis.call("GET", "missing")
  return { json = {
    status = redis.call("SET", "str", "hello"),
    ping = redis.call("PING"),
    bulk = redis.call("GET", "str"),
    missing_is_nil = missing == nil and none == nil,
    integer = redis.call("INCRBY", "n", 40) + 2,
    integer_type = math.type(redis.call("INCR", "m")),
    array = redis.call("LRANGE", "list", 0, -1),
    mget = redis.call("MGET", "str", "missing"),
    nested = redis.call("EVAL", "return {1, {'a', {2}}, redis.status_reply('FINE')}", 0),
    error = { kind = err.kind, code = err.code, message = err.message, value = v },
    published = redis.publish("nobody", "x"),
  } }
end)
""" + "\n"}


def test_call_round_trips_every_reply_type():
    with RedisServer() as redis:
        r = redis.connect()
        r("RPUSH", "list", "a", "b", "c")
        r("SET", "str", 5)  # LPUSH on it is a WRONGTYPE error reply
        with Luar(scripts=CALLS, config=config(redis.url())) as srv:
            got = srv.get_json("/types")
        assert got["status"] == "OK" and got["ping"] == "PONG", got
        assert got["bulk"] == "hello" and got["missing_is_nil"] is True, got
        assert got["integer"] == 42 and got["integer_type"] == "integer", got
        assert got["array"] == ["a", "b", "c"], got
        assert got["mget"] == ["hello", None], got
        assert got["nested"] == [1, ["a", [2]], "FINE"], got
        err = got["error"]
        assert err["kind"] == "redis" and err["code"] == "WRONGTYPE", err
        assert err["message"].startswith("WRONGTYPE Operation against a key"), err
        assert "value" not in err, err
        assert got["published"] == 0, got
        assert r("GET", "str") == "hello" and r("GET", "n") == "40"
        r.close()


PUBSUB = {"main.lua": r"""
local http = require "luar.http"
local redis = require "luar.redis"
local log = require "luar.log"
redis.subscribe("orders", function(msg, channel)
  if msg == "boom" then error("handler boom") end
  redis.call("RPUSH", "got", channel .. ":" .. msg)
end)
redis.psubscribe("ev.*", function(msg, channel, pattern)
  redis.call("RPUSH", "pgot", pattern .. "/" .. channel .. ":" .. msg)
end)
redis.subscribe("load", function(msg)
  -- every message is a coroutine of its own, all waiting on Redis at the same time
  local n = redis.call("INCR", "load:running")
  redis.call("SET", "load:peak:" .. msg, n)
  redis.call("SADD", "load:done", msg)
  redis.call("DECR", "load:running")
end)
http.route("POST", "/publish", function(req)
  local n, err = redis.publish(req.query.channel, req.body)
  if not n then return { status = 503, json = { error = tostring(err) } } end
  return { json = { receivers = n } }
end)
"""}


def test_publish_subscribe_in_order_past_a_raising_handler():
    with RedisServer() as redis, Luar(scripts=PUBSUB, config=config(redis.url())) as srv:
        srv.wait_log(lambda x: x.get("msg") == "redis subscriptions active")
        r = redis.connect()
        assert numsub(r, "orders") == 1
        msgs = [str(i) for i in range(1, 501)]
        commands = [("PUBLISH", "orders", m) for m in msgs[:250]] + \
            [("PUBLISH", "orders", "boom")] + [("PUBLISH", "orders", m) for m in msgs[250:]]
        assert r.pipeline(commands) == [1] * 501
        status, _, body = srv.request("POST", "/publish?channel=ev.created", body=b"p1")
        assert status == 200 and json.loads(body) == {"receivers": 1}, body
        until(lambda: r("LLEN", "got") == 500, "500 messages handled")
        assert r("LRANGE", "got", 0, -1) == ["orders:" + m for m in msgs]
        until(lambda: r("LLEN", "pgot") == 1, "the pattern message")
        assert r("LRANGE", "pgot", 0, -1) == ["ev.*/ev.created:p1"]
        rec = srv.wait_log(lambda x: x.get("msg") == "redis handler error")
        assert rec["channel"] == "orders" and "handler boom" in rec["error"], rec
        assert metric(srv, 'luar_lua_errors_total{where="redis"}') == 1
        assert metric(srv, 'luar_redis_messages_total{outcome="handled"}') == 501
        r.close()


def test_thousand_concurrent_calls_from_coroutines():
    with RedisServer() as redis, Luar(scripts=PUBSUB, config=config(redis.url())) as srv:
        srv.wait_log(lambda x: x.get("msg") == "redis subscriptions active")
        r = redis.connect()
        t0 = time.monotonic()
        assert r.pipeline([("PUBLISH", "load", str(i)) for i in range(1000)]) == [1] * 1000
        until(lambda: r("SCARD", "load:done") == 1000 and r("GET", "load:running") == "0",
              "1,000 handlers to finish")
        took = time.monotonic() - t0
        peak = max(int(v) for v in r.pipeline([("GET", "load:peak:%d" % i)
                                               for i in range(1000)]))
        # The coroutines overlapped: many had INCRed before the first one DECRed.
        assert peak > 100, peak
        print("  1,000 handler coroutines x 4 commands in %.2fs, peak %d at once" % (took, peak))
        r.close()


def test_subscription_resumes_after_a_redis_restart():
    with RedisServer() as redis, Luar(scripts=PUBSUB, config=config(redis.url())) as srv:
        srv.wait_log(lambda x: x.get("msg") == "redis subscriptions active")
        n = len(srv.lines)
        redis.kill()
        redis.start()  # same port, empty
        srv.wait_log(lambda x: x.get("msg") == "redis subscriptions active", start=n)
        r = redis.connect()
        assert r("PUBLISH", "orders", "again") == 1
        until(lambda: r("LRANGE", "got", 0, -1) == ["orders:again"], "the message")
        r.close()


def test_reload_replaces_subscriptions_on_the_same_connection():
    with RedisServer() as redis, Luar(scripts=PUBSUB, config=config(redis.url())) as srv:
        srv.wait_log(lambda x: x.get("msg") == "redis subscriptions active")
        r = redis.connect()
        before = r("CLIENT", "LIST", "TYPE", "pubsub")
        assert before.count("\n") == 1, before
        n = len(srv.lines)
        write_files(srv.scripts, {"main.lua": r"""
local redis = require "luar.redis"
redis.subscribe("orders", function(msg) redis.call("RPUSH", "got2", msg) end)
redis.subscribe("fresh", function(msg) redis.call("RPUSH", "fresh", msg) end)
"""})
        srv.wait_log(lambda x: x.get("msg") == "scripts reloaded", start=n)
        until(lambda: numsub(r, "fresh") == 1 and numsub(r, "load") == 0, "the new channels")
        assert numsub(r, "orders") == 1
        assert r("PUBSUB", "NUMPAT") == 0
        after = r("CLIENT", "LIST", "TYPE", "pubsub")
        assert before.split()[0] == after.split()[0], (before, after)  # same id=
        assert r("PUBLISH", "orders", "o") == 1 and r("PUBLISH", "fresh", "f") == 1
        until(lambda: r("LRANGE", "got2", 0, -1) == ["o"], "the new generation's handler")
        until(lambda: r("LRANGE", "fresh", 0, -1) == ["f"], "the new channel")
        assert r("LLEN", "got") == 0  # the old handler is gone
        r.close()


CRITICAL = {"main.lua": r"""
local http = require "luar.http"
local redis = require "luar.redis"
local time = require "luar.time"
-- A critical section that notices overlap: "inside" counts the holders at once.
local function section()
  if redis.call("INCR", "inside") ~= 1 then redis.call("INCR", "overlaps") end
  time.sleep(0.005)
  redis.call("DECR", "inside")
  redis.call("INCR", "total")
end
http.route("POST", "/locked", function()
  local ok, err = redis.lock("crit", { ttl = 10, wait = 60 }, function() section() return true end)
  if not ok then return { status = 503, body = tostring(err) } end
  return "ok"
end)
http.route("POST", "/unlocked", function() section() return "ok" end)
-- Fencing: hold the lock, tell the test, then work on.
http.route("POST", "/hold", function()
  return redis.lock("fence", 0.5, function(l)
    redis.call("SET", "a:token", l.token)
    time.sleep(1.0)
    return "a done"
  end)
end)
http.route("POST", "/take2", function()
  return redis.lock("fence", { ttl = 10, wait = 20 }, function(l)
    redis.call("SET", "b:token", l.token)
    time.sleep(1.5)
    return redis.call("GET", l.key) == l.token and "b still holds" or "b lost it"
  end)
end)
"""}


def hammer(servers, path, per_server):
    def one(srv):
        status, _, body = srv.request("POST", path, timeout=120)
        return status, body
    jobs = [s for s in servers for _ in range(per_server)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        return list(pool.map(one, jobs))


def test_lock_mutual_exclusion_across_two_serve_processes():
    with RedisServer() as redis:
        cfg = config(redis.url(prefix="mx:"))
        with Luar(scripts=CRITICAL, config=cfg) as a, Luar(scripts=CRITICAL, config=cfg) as b:
            r = redis.connect()
            # The detector works: without the lock, the sections overlap.
            results = hammer([a, b], "/unlocked", 20)
            assert all(s == 200 for s, _ in results), results
            assert int(r("GET", "overlaps") or 0) > 0
            r("DEL", "overlaps", "total", "inside")
            results = hammer([a, b], "/locked", 40)
            assert all(s == 200 for s, _ in results), [x for x in results if x[0] != 200][:3]
            assert r("GET", "total") == "80"
            assert r("GET", "overlaps") is None, r("GET", "overlaps")
            assert r("EXISTS", "mx:lock:crit") == 0  # released, under the URL's prefix
            r.close()


def test_expired_lock_holder_cannot_release_anothers():
    with RedisServer() as redis:
        cfg = config(redis.url(prefix="fx:"))
        with Luar(scripts=CRITICAL, config=cfg) as a, Luar(scripts=CRITICAL, config=cfg) as b:
            r = redis.connect()
            with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
                held = pool.submit(a.request, "POST", "/hold", None, None, 60)
                a_token = until(lambda: r("GET", "a:token"), "A holding the lock")
                a.send_signal(signal.SIGSTOP)  # frozen: its watchdog cannot extend the lock
                try:
                    until(lambda: r("EXISTS", "fx:lock:fence") == 0, "A's lock to expire")
                    took = pool.submit(b.request, "POST", "/take2", None, None, 60)
                    b_token = until(lambda: r("GET", "b:token"), "B holding the lock")
                    assert b_token != a_token
                finally:
                    a.send_signal(signal.SIGCONT)
                # A wakes up, finishes, and its release must leave B's lock alone.
                status, _, body = held.result(timeout=60)
                assert status == 200 and body == b"a done", (status, body)
                assert r("GET", "fx:lock:fence") == b_token
                status, _, body = took.result(timeout=60)
                assert status == 200 and body == b"b still holds", (status, body)
            a.wait_log(lambda x: "redis.lock: \"fence\" was no longer held at release"
                       in x.get("msg", "") or "lost the lock" in x.get("msg", ""))
            assert r("EXISTS", "fx:lock:fence") == 0  # B released its own
            r.close()


OUTAGE = {"main.lua": r"""
local http = require "luar.http"
local redis = require "luar.redis"
local time = require "luar.time"
http.route("GET", "/ping", function()
  local t0 = time.monotonic()
  local v, err = redis.call("PING")
  return { json = { value = v, kind = err and err.kind, message = err and err.message,
                    ms = (time.monotonic() - t0) * 1000 } }
end)
http.route("GET", "/set", function(req)
  return { json = { value = redis.call("SET", req.query.k, "v") } }
end)
"""}


def test_outage_fails_fast_with_backend_errors_and_recovers():
    with RedisServer() as redis, Luar(scripts=OUTAGE, config=config(redis.url())) as srv:
        assert srv.get_json("/ping")["value"] == "PONG"
        redis.kill()
        srv.get_json("/ping")  # the first call finds the connection gone
        for _ in range(20):
            got = srv.get_json("/ping")
            assert got["kind"] == "backend", got
            assert "redis 127.0.0.1:%d" % redis.port in got["message"], got
            assert got["ms"] < 100, got
        assert srv.get_json("/readyz") == {"status": "ready"}  # the queue is SQLite
        redis.start()
        until(lambda: srv.get_json("/ping").get("value") == "PONG", "recovery")


def test_redis_url_setting_with_a_sqlite_queue():
    with RedisServer() as redis:
        with Luar(scripts=OUTAGE, config=config(redis.url(db=3))) as srv:
            assert srv.get_json("/set?k=from-luar") == {"value": "OK"}
            assert os.path.exists(os.path.join(srv.data, "luar.db"))  # the queue is SQLite
        r = redis.connect()
        assert r("EXISTS", "from-luar") == 0
        r("SELECT", 3)
        assert r("GET", "from-luar") == "v"  # raw keys carry no prefix
        r.close()


def test_queue_redis_is_used_when_no_redis_url_and_none_is_a_clear_error():
    with RedisServer() as redis:
        with Luar(scripts=OUTAGE, args=["--queue", redis.url(db=2, prefix="q:")]) as srv:
            assert srv.get_json("/set?k=via-queue") == {"value": "OK"}
        r = redis.connect()
        r("SELECT", 2)
        assert r("GET", "via-queue") == "v"
        r.close()
    with Luar(scripts=OUTAGE) as srv:
        got = srv.get_json("/ping")
        assert got["kind"] == "backend", got
        assert "no Redis configured for luar.redis: set redis = { url = " in got["message"], got


def test_bad_redis_url_refuses_to_start():
    cfg = 'return { redis = { url = "redis://user@127.0.0.1:6379" } }\n'
    with Luar(scripts=OUTAGE, config=cfg, wait_listening=False) as srv:
        assert srv.proc.wait(DEFAULT_TIMEOUT) == 2
        line = srv.wait_log(lambda x: "redis.url" in x.get("raw", ""), stream=srv.stderr_lines)
        assert "redis.url: redis URL: a user needs a password" in line["raw"], line


ACL = {"main.lua": r"""
local http = require "luar.http"
local redis = require "luar.redis"
redis.subscribe("app:events", function(msg) redis.call("RPUSH", "app:got", msg) end)
http.route("GET", "/acl", function()
  local ok = redis.call("SET", "app:x", "1")
  local v, err = redis.call("SET", "other:x", "1")
  local locked = redis.lock("job", 1, function(l) return l.key end)
  return { json = { ok = ok, code = err and err.code, lock_key = locked } }
end)
"""}


def test_acl_user_confined_to_its_prefix():
    with RedisServer() as redis:
        r = redis.connect()
        assert r("ACL", "SETUSER", "app", "on", ">s3cret", "resetkeys", "~app:*",
                 "resetchannels", "&app:*", "+@all", "-@dangerous") == "OK"
        url = "redis://app:s3cret@127.0.0.1:%d/0?prefix=app:" % redis.port
        with Luar(scripts=ACL, config=config(url)) as srv:
            srv.wait_log(lambda x: x.get("msg") == "redis subscriptions active")
            got = srv.get_json("/acl")
            assert got == {"ok": "OK", "code": "NOPERM", "lock_key": "app:lock:job"}, got
            assert r("PUBLISH", "app:events", "hi") == 1
            until(lambda: r("LRANGE", "app:got", 0, -1) == ["hi"], "the message")
        bad = "redis://app:wrong@127.0.0.1:%d/0" % redis.port
        with Luar(scripts=OUTAGE, config=config(bad)) as srv:
            got = srv.get_json("/ping")
            assert got["kind"] == "backend" and "AUTH failed" in got["message"], got
            assert "wrong" not in got["message"], got
        r.close()


if __name__ == "__main__":
    main([
        test_call_round_trips_every_reply_type,
        test_publish_subscribe_in_order_past_a_raising_handler,
        test_thousand_concurrent_calls_from_coroutines,
        test_subscription_resumes_after_a_redis_restart,
        test_reload_replaces_subscriptions_on_the_same_connection,
        test_lock_mutual_exclusion_across_two_serve_processes,
        test_expired_lock_holder_cannot_release_anothers,
        test_outage_fails_fast_with_backend_errors_and_recovers,
        test_redis_url_setting_with_a_sqlite_queue,
        test_queue_redis_is_used_when_no_redis_url_and_none_is_a_clear_error,
        test_bad_redis_url_refuses_to_start,
        test_acl_user_confined_to_its_prefix,
    ])
