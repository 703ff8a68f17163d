"""luar.cache end to end, through HTTP routes of the real binary on its embedded (SQLite)
backend, whose cache is in process: typed values round-trip, a ttl expires (awaited by
polling, bounded), incr under 200 concurrent requests is exact, remember runs its function
once for 50 concurrent requests (single flight) and hands its error to every waiter,
storing nothing; a leader whose job is cancelled releases its waiters; values over
cache.max_value are refused with too_large; the calls are counted in
luar_cache_operations_total."""
import concurrent.futures
import json
import shutil
import tempfile
import threading
import time

from luar_e2e import Luar, main, run_cli, write_files

CONFIG = '''return {
  reload = { watch = false },
  cache = { max_bytes = "1MiB", max_value = "1KiB" },
  jobs = { poll = 0.1 },
}
'''

APP = r'''
local http = require "luar.http"
local cache = require "luar.cache"
local jobs = require "luar.jobs"
local json = require "luar.json"
local log = require "luar.log"
local time = require "luar.time"

local function answer(v, err)
  if err then return { status = 200, json = { ok = false, kind = err.kind, message = err.message } } end
  return { json = { ok = true, value = v == nil and json.null or v, type = type(v),
                    math_type = math.type(v) or json.null } }
end

http.route("GET", "/get/:k", function(req) return answer(cache.get(req.params.k)) end)

-- The body is {"value": …}; ?as=float|string|bool turns a JSON value into that Lua type.
http.route("POST", "/set/:k", function(req)
  local v = req:json().value
  if req.query.as == "float" then v = v + 0.0
  elseif req.query.as == "string" then v = tostring(v)
  elseif req.query.as == "repeat" then v = string.rep("x", v)
  elseif req.query.as == "nil" then v = nil end
  return answer(cache.set(req.params.k, v, tonumber(req.query.ttl)))
end)

http.route("POST", "/delete/:k", function(req) return answer(cache.delete(req.params.k)) end)

http.route("POST", "/incr/:k", function(req)
  return answer(cache.incr(req.params.k, tonumber(req.query.n) or 1, tonumber(req.query.ttl)))
end)

-- remember: fn counts its runs per key, waits, then returns, raises or returns a big value.
local runs = {}
http.route("GET", "/runs/:k", function(req) return { json = { runs = runs[req.params.k] or 0 } } end)
http.route("GET", "/remember/:k", function(req)
  local k = req.params.k
  local ok, v, err = pcall(cache.remember, k, tonumber(req.query.ttl), function()
    runs[k] = (runs[k] or 0) + 1
    local run = runs[k]
    time.sleep(tonumber(req.query.sleep) or 0)
    if req.query.fail then error("upstream down (run " .. run .. ")") end
    if req.query.big then return string.rep("b", 4096) end
    if req.query.none then return nil end
    return { run = run, list = { 1, 2, 3 } }
  end)
  if not ok then return { json = { ok = false, raised = tostring(v) } } end
  return answer(v, err)
end)

-- A job that leads a remember and is cancelled by its timeout while fn waits.
jobs.define("slow_fill", { retries = 0, timeout = 1 }, function(args)
  cache.remember(args.key, 60, function()
    log.info("slow_fill leading", { key = args.key })
    time.sleep(30)
    return "never"
  end)
end)
http.route("POST", "/slow_fill/:k", function(req)
  return { json = { id = jobs.enqueue("slow_fill", { key = req.params.k }) } }
end)
'''


def call(luar, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    status, _, text = luar.request(method, path, body=data,
                                   headers={"Content-Type": "application/json"})
    assert status == 200, (path, status, text)
    return json.loads(text)


def metric(luar, op, result):
    _, _, text = luar.request("GET", "/metrics")
    prefix = 'luar_cache_operations_total{op="%s",result="%s"} ' % (op, result)
    for line in text.decode().splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix):])
    return 0.0


def concurrently(n, fn):
    """Runs fn(i) for i in 0..n-1 on n threads released together; returns the results."""
    barrier = threading.Barrier(n)

    def run(i):
        barrier.wait(30)
        return fn(i)

    with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


def start():
    return Luar(scripts={"main.lua": APP}, config=CONFIG)


def test_values_round_trip_with_their_types():
    with start() as luar:
        assert call(luar, "GET", "/get/nothing") == {"ok": True, "value": None, "type": "nil",
                                                    "math_type": None}
        cases = [
            ("int", "", 42, 42, "number", "integer"),
            ("neg", "", -7, -7, "number", "integer"),
            ("float", "?as=float", 2, 2.0, "number", "float"),
            ("frac", "", 0.1, 0.1, "number", "float"),
            ("str", "", "héllo", "héllo", "string", None),
            ("numstr", "?as=string", 42, "42", "string", None),
            ("yes", "", True, True, "boolean", None),
            ("no", "", False, False, "boolean", None),
            ("table", "", {"a": [1, 2, {"b": "c"}], "n": 1.5}, {"a": [1, 2, {"b": "c"}], "n": 1.5},
             "table", None),
            ("empty", "", {}, {}, "table", None),
        ]
        for key, query, value, want, typ, mtype in cases:
            assert call(luar, "POST", "/set/%s%s" % (key, query), {"value": value})["ok"]
            got = call(luar, "GET", "/get/" + key)
            assert got["value"] == want and got["type"] == typ, (key, got)
            assert got["math_type"] == mtype, (key, got)
        # Replace, then delete; a nil value deletes too.
        call(luar, "POST", "/set/int", {"value": 43})
        assert call(luar, "GET", "/get/int")["value"] == 43
        assert call(luar, "POST", "/delete/int")["ok"]
        assert call(luar, "GET", "/get/int")["type"] == "nil"
        assert call(luar, "POST", "/set/str?as=nil", {"value": 1})["ok"]
        assert call(luar, "GET", "/get/str")["type"] == "nil"
        # JSON's null (luar.json.null) is a value like any other.
        assert call(luar, "POST", "/set/null", {"value": None})["ok"]
        assert call(luar, "GET", "/get/null") == {"ok": True, "value": None, "type": "userdata",
                                                 "math_type": None}
        assert metric(luar, "get", "hit") >= 11 and metric(luar, "get", "miss") >= 3


def test_ttl_expires_and_no_ttl_stays():
    with start() as luar:
        call(luar, "POST", "/set/short?ttl=0.5", {"value": "soon gone"})
        call(luar, "POST", "/set/forever", {"value": "stays"})
        t0 = time.monotonic()
        assert call(luar, "GET", "/get/short")["value"] == "soon gone"
        # Poll until it is gone, at most 10 s.
        gone_after = None
        while time.monotonic() - t0 < 10:
            if call(luar, "GET", "/get/short")["type"] == "nil":
                gone_after = time.monotonic() - t0
                break
            time.sleep(0.05)
        assert gone_after is not None, "a 0.5 s ttl never expired"
        assert gone_after >= 0.45, gone_after
        assert call(luar, "GET", "/get/forever")["value"] == "stays"
        # incr's ttl applies when it creates the key.
        assert call(luar, "POST", "/incr/window?ttl=0.5")["value"] == 1
        assert call(luar, "POST", "/incr/window?ttl=100")["value"] == 2
        t0 = time.monotonic()
        while call(luar, "GET", "/get/window")["type"] != "nil":
            assert time.monotonic() - t0 < 10, "the counter's ttl never expired"
            time.sleep(0.05)
        assert call(luar, "POST", "/incr/window")["value"] == 1


def test_incr_under_200_concurrent_requests_is_exact():
    with start() as luar:
        results = concurrently(200, lambda i: call(luar, "POST", "/incr/hits"))
        values = sorted(r["value"] for r in results)
        assert values == list(range(1, 201)), values[:10]
        assert call(luar, "GET", "/get/hits")["value"] == 200
        assert call(luar, "POST", "/incr/hits?n=-250")["value"] == -50
        # Not an integer: invalid, unchanged.
        call(luar, "POST", "/set/word", {"value": "ten"})
        r = call(luar, "POST", "/incr/word")
        assert r["ok"] is False and r["kind"] == "invalid", r
        call(luar, "POST", "/set/half", {"value": 1.5})
        assert call(luar, "POST", "/incr/half")["kind"] == "invalid"
        assert call(luar, "GET", "/get/word")["value"] == "ten"
        assert metric(luar, "incr", "ok") == 201 and metric(luar, "incr", "invalid") == 2


def test_remember_runs_fn_once_for_50_concurrent_requests():
    with start() as luar:
        results = concurrently(50, lambda i: call(luar, "GET", "/remember/sf?sleep=1&ttl=60"))
        assert call(luar, "GET", "/runs/sf")["runs"] == 1
        for r in results:
            assert r["ok"] and r["value"] == {"run": 1, "list": [1, 2, 3]}, r
        # Stored: a later call is a hit, fn does not run again.
        assert call(luar, "GET", "/remember/sf?ttl=60")["value"]["run"] == 1
        assert call(luar, "GET", "/runs/sf")["runs"] == 1
        assert call(luar, "GET", "/get/sf")["value"] == {"run": 1, "list": [1, 2, 3]}
        miss, shared, hit = (metric(luar, "remember", r) for r in ("miss", "shared", "hit"))
        assert miss == 1 and shared + hit == 50 and shared >= 1, (miss, shared, hit)


def test_remember_error_reaches_every_waiter_and_stores_nothing():
    with start() as luar:
        results = concurrently(20, lambda i: call(luar, "GET", "/remember/boom?sleep=2&fail=1"))
        assert call(luar, "GET", "/runs/boom")["runs"] == 1
        for r in results:
            assert r["ok"] is False and "upstream down (run 1)" in r["raised"], r
        assert call(luar, "GET", "/get/boom")["type"] == "nil"
        # Nothing was stored: the next call runs fn again.
        r = call(luar, "GET", "/remember/boom?fail=1")
        assert "upstream down (run 2)" in r["raised"], r
        # fn returning nil: nothing stored, nil returned.
        r = call(luar, "GET", "/remember/nothing?none=1")
        assert r["ok"] and r["type"] == "nil", r
        assert call(luar, "GET", "/remember/nothing?none=1")["type"] == "nil"
        assert call(luar, "GET", "/runs/nothing")["runs"] == 2
        # Counted once by the call that ran fn, and as shared by those that waited for it.
        assert metric(luar, "remember", "error") == 2
        assert metric(luar, "remember", "shared") == 19


def test_remember_waiters_are_released_when_the_leader_is_cancelled():
    with start() as luar:
        call(luar, "POST", "/slow_fill/abandoned")
        luar.wait_log(lambda r: r.get("msg") == "slow_fill leading")
        t0 = time.monotonic()
        r = call(luar, "GET", "/remember/abandoned?ttl=60")
        waited = time.monotonic() - t0
        assert r["ok"] is False, r
        assert "ended without a value" in r["raised"] and "timed out" in r["raised"], r
        assert waited < 10, waited  # released by the job's 1 s timeout, not its 30 s sleep
        # The key is free again: the next call computes it.
        r = call(luar, "GET", "/remember/abandoned?ttl=60")
        assert r["ok"] and r["value"]["run"] == 1, r


def test_values_over_max_value_are_too_large():
    with start() as luar:
        r = call(luar, "POST", "/set/big?as=repeat", {"value": 2000})
        assert r["ok"] is False and r["kind"] == "too_large", r
        assert "cache.max_value (1024)" in r["message"], r
        assert call(luar, "GET", "/get/big")["type"] == "nil"
        # 1023 bytes of string plus the type tag: exactly the cap.
        assert call(luar, "POST", "/set/fits?as=repeat", {"value": 1023})["ok"]
        assert call(luar, "POST", "/set/over?as=repeat", {"value": 1024})["kind"] == "too_large"
        # remember: every caller gets the error; nothing is stored.
        results = concurrently(5, lambda i: call(luar, "GET", "/remember/huge?big=1&sleep=0.5"))
        for r in results:
            assert r["ok"] is False and r["kind"] == "too_large", r
        assert call(luar, "GET", "/runs/huge")["runs"] == 1
        assert call(luar, "GET", "/get/huge")["type"] == "nil"
        assert metric(luar, "set", "too_large") == 2


def test_config_errors_name_the_cache_key():
    cases = [
        ('cache = { max_value = "2MiB", max_bytes = "1MiB" }',
         "luar.conf.lua:1: cache.max_value: must not be more than cache.max_bytes"),
        ('cache = { max_bytes = "lots" }', "cache.max_bytes: expected a size"),
        ('cache = { max_value = 0 }', "cache.max_value: must be from 1 byte to 512MiB"),
        ('cache = { max_value = "1GiB", max_bytes = "2GiB" }', "cache.max_value: must be from"),
        ('cache = { size = 10 }', "cache.size: unknown key"),
        ('cache = 5', "cache: expected a table"),
    ]
    for conf, want in cases:
        d = tempfile.mkdtemp(prefix="luar-e2e-")
        try:
            write_files(d, {"luar.conf.lua": "return { " + conf + " }\n",
                            "scripts/main.lua": ""})
            rc, out, err = run_cli(["check"], cwd=d)
            assert rc == 2 and want in err, (conf, rc, err)
        finally:
            shutil.rmtree(d, ignore_errors=True)
    # A small cache alone caps values with it.
    d = tempfile.mkdtemp(prefix="luar-e2e-")
    try:
        write_files(d, {"luar.conf.lua": 'return { cache = { max_bytes = "4KiB" } }\n',
                        "scripts/main.lua": ""})
        rc, out, err = run_cli(["check"], cwd=d)
        assert rc == 0, (rc, out, err)
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main([test_values_round_trip_with_their_types,
          test_ttl_expires_and_no_ttl_stays,
          test_incr_under_200_concurrent_requests_is_exact,
          test_remember_runs_fn_once_for_50_concurrent_requests,
          test_remember_error_reaches_every_waiter_and_stores_nothing,
          test_remember_waiters_are_released_when_the_leader_is_cancelled,
          test_values_over_max_value_are_too_large,
          test_config_errors_name_the_cache_key])
