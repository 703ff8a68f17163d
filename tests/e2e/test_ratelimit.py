"""Rate limits (GCRA) end to end: luar.ratelimit.check and the route `rate` option answer
exactly the limit, then 429 with a correct Retry-After; keys by IP, header and function;
two worker processes share one exact allowance; rejections are counted by the limit's
name; a backend that cannot write lets requests through or answers 503, as configured.

The limits are slow ("N/h", "N/m") so that no refill happens while a test runs: the counts
are then exact whatever the machine's speed."""
import concurrent.futures
import http.client
import json
import resource
import time

from luar_e2e import Luar, free_port, main

APP = r'''
local http = require "luar.http"
local ratelimit = require "luar.ratelimit"
local json = require "luar.json"

-- One luar.ratelimit.check per request (concurrent requests race for the same key).
http.route("POST", "/check/:key", function(req)
  local ok, retry_after, remaining = ratelimit.check(req.params.key, req.query.limit or "10/h",
                                                     { name = req.query.name })
  if ok == nil then
    return { status = 503, json = { kind = retry_after.kind, message = retry_after.message } }
  end
  return { json = { allowed = ok, retry_after = retry_after, remaining = remaining } }
end)

-- Several checks inside one handler.
http.route("POST", "/burst/:key", function(req)
  local allowed, refused, first_refusal = 0, 0, nil
  for i = 1, tonumber(req.query.n) do
    local ok, retry_after = ratelimit.check(req.params.key, req.query.limit)
    if ok then allowed = allowed + 1 else
      refused = refused + 1
      first_refusal = first_refusal or retry_after
    end
  end
  return { json = { allowed = allowed, refused = refused, retry_after = first_refusal } }
end)

http.route("GET", "/ip", function(req) return { json = { ok = true } } end,
  { rate = { key = "ip", limit = "5/m" } })
http.route("GET", "/header", function(req) return { json = { ok = true } } end,
  { rate = { key = "header:X-Api-Key", limit = "3/h", name = "api-key" } })
http.route("GET", "/tenant/:t", function(req) return { json = { tenant = req.params.t } } end,
  { rate = { limit = "2/h", name = "tenant",
             key = function(req)
               if req.params.t == "internal" then return nil end  -- not limited
               return req.params.t
             end } })
-- Two routes under one name share one allowance.
http.route("GET", "/shared/a", function(req) return "a" end,
  { rate = { limit = "4/h", name = "shared" } })
http.route("GET", "/shared/b", function(req) return "b" end,
  { rate = { limit = "4/h", name = "shared" } })
-- What a backend failure does: let through (default) or refuse with 503.
local n = 0
local function fresh_key() n = n + 1; return tostring(n) .. ":" .. tostring(luar_now or os.time()) end
http.route("GET", "/open", function(req) return "open" end,
  { rate = { limit = "100/h", key = fresh_key } })
http.route("GET", "/closed", function(req) return "closed" end,
  { rate = { limit = "100/h", key = fresh_key, on_error = "deny" } })
'''


def post_json(luar, path):
    status, headers, body = luar.request("POST", path)
    return status, json.loads(body)


def get_from(port, path, source="127.0.0.1", headers=None):
    """One GET on a new connection from `source`; returns (status, headers, body)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def statuses(port, path, n, **kw):
    return [get_from(port, path, **kw)[0] for _ in range(n)]


def metric(luar, name, label):
    _, _, body = luar.request("GET", "/metrics")
    for line in body.decode().splitlines():
        if line.startswith('%s{key="%s"} ' % (name, label)):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_check_allows_exactly_the_limit():
    with Luar({"main.lua": APP}) as luar:
        # In one handler: 25 checks against "10/h" → 10 allowed, then refusals whose
        # retry_after is one interval (360 s), a little less as time passes.
        status, doc = post_json(luar, "/burst/k1?n=25&limit=10/h")
        assert status == 200 and doc["allowed"] == 10 and doc["refused"] == 15, doc
        assert 355 < doc["retry_after"] <= 360, doc
        # Concurrent requests racing for one key: exactly 10 of 40 get through.
        with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
            docs = list(pool.map(lambda i: post_json(luar, "/check/k2?limit=10/h")[1],
                                 range(40)))
        allowed = [d for d in docs if d["allowed"]]
        assert len(allowed) == 10, docs
        assert sorted(d["remaining"] for d in allowed) == list(range(10)), allowed
        assert all(d["remaining"] == 0 and d["retry_after"] > 0 for d in docs
                   if not d["allowed"]), docs
        # Another limit on the same key is its own allowance; another key too.
        status, doc = post_json(luar, "/burst/k2?n=8&limit=5/h")
        assert doc["allowed"] == 5, doc
        status, doc = post_json(luar, "/burst/k3?n=3&limit=10/h")
        assert doc["allowed"] == 3, doc
        # Refusals are counted under the name given (default "check").
        before = metric(luar, "luar_ratelimit_rejected_total", "signup")
        for _ in range(4):
            post_json(luar, "/check/k4?limit=2/h&name=signup")
        assert metric(luar, "luar_ratelimit_rejected_total", "signup") == before + 2
        assert metric(luar, "luar_ratelimit_rejected_total", "check") >= 30 + 15


def test_state_survives_a_restart():
    """The allowance lives in the backend, not in the process."""
    port = free_port()
    luar = Luar({"main.lua": APP}, listen="127.0.0.1:%d" % port)
    data = luar.data
    try:
        status, doc = post_json(luar, "/burst/persist?n=3&limit=5/h")
        assert doc["allowed"] == 3, doc
        assert luar.stop() == 0
        again = Luar({"main.lua": APP}, listen="127.0.0.1:%d" % port, args=["--data", data])
        with again:
            status, doc = post_json(again, "/burst/persist?n=5&limit=5/h")
            assert doc["allowed"] == 2, doc
    finally:
        luar.close()


def test_route_rate_answers_the_limit_then_429_with_retry_after():
    with Luar({"main.lua": APP}) as luar:
        t0 = time.monotonic()
        got = statuses(luar.port, "/ip", 5)
        status, headers, body = get_from(luar.port, "/ip")
        elapsed = time.monotonic() - t0
        assert got == [200] * 5, got
        assert status == 429, (status, body)
        # "5/m": one request every 12 s; Retry-After is whole seconds, rounded up.
        retry_after = int(headers["retry-after"])
        assert 12 - elapsed - 1 <= retry_after <= 12, (retry_after, elapsed)
        doc = json.loads(body)
        assert doc == {"error": "rate limit exceeded", "retry_after": retry_after}, doc
        assert headers["content-type"] == "application/json"
        assert statuses(luar.port, "/ip", 3) == [429] * 3
        # Counted under the route pattern, never the client's address.
        assert metric(luar, "luar_ratelimit_rejected_total", "/ip") == 4
        _, _, text = luar.request("GET", "/metrics")
        assert b'luar_ratelimit_rejected_total{key="127.0.0.1"}' not in text
        # The access log records the 429 under the route.
        luar.wait_log(lambda r: r.get("msg") == "request" and r.get("path") == "/ip"
                      and r.get("status") == 429)


def test_keys_by_ip_header_and_function():
    with Luar({"main.lua": APP}) as luar:
        p = luar.port
        # By IP: another client address has its own allowance.
        assert statuses(p, "/ip", 6) == [200] * 5 + [429]
        assert statuses(p, "/ip", 6, source="127.0.0.2") == [200] * 5 + [429]
        # By header: each API key its own; without the header, by IP.
        for key in ("alpha", "beta"):
            assert statuses(p, "/header", 4, headers={"X-Api-Key": key}) == [200] * 3 + [429]
        assert statuses(p, "/header", 4) == [200] * 3 + [429]
        assert statuses(p, "/header", 4, source="127.0.0.3") == [200] * 3 + [429]
        assert statuses(p, "/header", 1, headers={"X-Api-Key": "alpha"}) == [429]
        assert metric(luar, "luar_ratelimit_rejected_total", "api-key") == 5
        _, _, text = luar.request("GET", "/metrics")
        assert b"alpha" not in text and b"beta" not in text
        # By function: per tenant; nil leaves the request unlimited.
        assert statuses(p, "/tenant/acme", 3) == [200, 200, 429]
        assert statuses(p, "/tenant/globex", 3) == [200, 200, 429]
        assert statuses(p, "/tenant/internal", 10) == [200] * 10
        # One name, one allowance across routes.
        got = statuses(p, "/shared/a", 2) + statuses(p, "/shared/b", 3)
        assert got == [200] * 4 + [429], got


def test_two_workers_share_one_exact_allowance():
    port = free_port()
    with Luar({"main.lua": APP}, workers=2, listen="127.0.0.1:%d" % port,
              wait_listening=False) as luar:
        luar.port = port
        luar.wait_log(lambda r: luar.count_logs(lambda x: x.get("msg") == "listening") >= 2)
        results = []
        # New connections spread over both processes (SO_REUSEPORT); keep going until each
        # process has answered some, with 20 concurrent clients.
        with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
            for _ in range(10):
                results += list(pool.map(lambda i: get_from(port, "/tenant/shared"),
                                         range(40)))
                procs = {h["x-request-id"][:16] for _, h, _ in results}
                if len(procs) == 2:
                    break
        procs = {h["x-request-id"][:16] for _, h, _ in results}
        assert len(procs) == 2, "one process answered every request"
        got = [s for s, _, _ in results]
        assert got.count(200) == 2 and got.count(429) == len(got) - 2, got
        # Exact with checks made by both, concurrently, through luar.ratelimit.check too.
        with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
            docs = list(pool.map(lambda i: post_json(luar, "/check/multi?limit=25/h")[1],
                                 range(80)))
        assert sum(1 for d in docs if d["allowed"]) == 25, docs


def test_backend_failure_fails_open_by_default_and_closed_when_asked():
    with Luar({"main.lua": APP}) as luar:
        assert statuses(luar.port, "/open", 2) == [200, 200]
        assert statuses(luar.port, "/closed", 2) == [200, 200]
        # A file size limit of 0 makes every write of the backend fail (EFBIG), as a full
        # disk does; the process ignores SIGXFSZ and turns it into errors.
        pid = luar.proc.pid
        old = resource.prlimit(pid, resource.RLIMIT_FSIZE)
        start = len(luar.lines)
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, old[1]))
        try:
            assert statuses(luar.port, "/open", 3) == [200] * 3
            status, headers, body = get_from(luar.port, "/closed")
            assert status == 503, (status, body)
            assert headers["retry-after"] == "1"
            assert json.loads(body) == {"error": "rate limit unavailable"}
            status, doc = post_json(luar, "/check/down?limit=10/h")
            assert status == 503 and doc["kind"] == "backend", doc
            assert "luar.db" in doc["message"], doc
            rec = luar.wait_log(lambda r: "the backend did not answer" in r.get("msg", ""),
                                start=start)
            assert rec["level"] == "warn", rec
        finally:
            resource.prlimit(pid, resource.RLIMIT_FSIZE, old)
        # The disk is back: checks work again, no restart needed.
        assert statuses(luar.port, "/closed", 2) == [200, 200]
        status, doc = post_json(luar, "/check/down?limit=10/h")
        assert status == 200 and doc["allowed"] is True, doc


if __name__ == "__main__":
    main([test_check_allows_exactly_the_limit,
          test_state_survives_a_restart,
          test_route_rate_answers_the_limit_then_429_with_retry_after,
          test_keys_by_ip_header_and_function,
          test_two_workers_share_one_exact_allowance,
          test_backend_failure_fails_open_by_default_and_closed_when_asked])
