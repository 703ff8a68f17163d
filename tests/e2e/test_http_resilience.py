"""Resilience of the outbound client (issue 4 item 3) against fault_server.py on loopback:
retry counts and spacing read from the upstream's own receive times, no retry of a POST
without an Idempotency-Key, the circuit breaker opening, refusing without touching the
network and closing again, fallback, the rate limiter's spacing and refusal, and the
response cache: hit, revalidation with a 304, stale-if-error."""
import json

from fault_server import FaultServer
from luar_e2e import main
from test_http_client import lua_str, run_lua


def gaps(reqs):
    return [b["t"] - a["t"] for a, b in zip(reqs, reqs[1:])]


def test_retries_follow_retry_after_and_count_every_attempt():
    with FaultServer() as fs:
        src = """
-- breaker = false: five straight failures would open the host's breaker (SPEC's default)
out(call(http.get, %s, { breaker = false }))
out(call(http.get, %s, { retry = { attempts = 4, backoff = 0.01 }, breaker = false }))
""" % (lua_str(fs.url("/status/503?retry_after=1")), lua_str(fs.url("/status/502")))
        (first, second), _ = run_lua(src)
        assert first["status"] == 503, first  # the last answer, after the retries
        ra = fs.requests("/status/503")
        assert len(ra) == 3, ra  # default: 3 attempts in all
        assert all(g >= 0.95 for g in gaps(ra)), gaps(ra)  # Retry-After: 1 honoured
        assert second["status"] == 502
        assert len(fs.requests("/status/502")) == 4


def test_post_is_retried_only_with_an_idempotency_key():
    with FaultServer() as fs:
        src = """
out(call(http.post, %s, { body = "x", retry = { backoff = 0.01 }, breaker = false }))
out(call(http.post, %s, { body = "x", headers = { ["Idempotency-Key"] = "k1" },
                          retry = { backoff = 0.01 }, breaker = false }))
""" % (lua_str(fs.url("/status/500?a=1")), lua_str(fs.url("/status/500?a=2")))
        run_lua(src)
        assert len(fs.requests("/status/500?a=1")) == 1
        assert len(fs.requests("/status/500?a=2")) == 3


def test_breaker_opens_refuses_without_the_network_then_closes():
    with FaultServer() as fs:
        src = """
local time = require "luar.time"
local b = { failures = 3, reset = 0.5 }
for i = 1, 3 do out(call(http.get, %s, { retry = false, breaker = b })) end
out(call(http.get, %s, { retry = false, breaker = b }))
out(call(http.get, %s, { retry = false, breaker = b,
  fallback = function(err) return { status = 299, body = "fallback " .. err.kind } end }))
time.sleep(0.6) -- the breaker's reset time (the behaviour under test is time itself)
out(call(http.get, %s, { retry = false, breaker = b }))
out(call(http.get, %s, { retry = false, breaker = b }))
""" % (lua_str(fs.url("/status/500")), lua_str(fs.url("/status/200")),
            lua_str(fs.url("/status/200")), lua_str(fs.url("/status/200")),
            lua_str(fs.url("/status/200")))
        vals, _ = run_lua(src)
        assert [v.get("status") for v in vals[:3]] == [500, 500, 500], vals
        assert vals[3]["kind"] == "breaker_open" and vals[3]["retry_after"] > 0, vals[3]
        assert vals[4] == {"status": 299, "body": "fallback breaker_open"} or \
            (vals[4]["status"] == 299 and vals[4]["body"] == "fallback breaker_open"), vals[4]
        assert vals[5]["status"] == 200 and vals[6]["status"] == 200, vals[5:]
        # Refused calls never reached the upstream: only the probe and the last one did.
        assert len(fs.requests("/status/200")) == 2


def test_rate_limiter_spaces_calls_and_refuses_past_max_wait():
    with FaultServer() as fs:
        src = """
local time = require "luar.time"
local c = http.client{ base_url = %s, rate = "5/s", retry = false }
local t0 = time.monotonic()
for i = 1, 8 do out(call(c.get, c, "/status/200")) end
out({ elapsed = time.monotonic() - t0 })
local strict = http.client{ base_url = %s, rate = "1/m", rate_max_wait = 0.1, retry = false }
out(call(strict.get, strict, "/status/204"))
out(call(strict.get, strict, "/status/204"))
""" % (lua_str(fs.url("")), lua_str(fs.url("")))
        vals, _ = run_lua(src)
        assert all(v["status"] == 200 for v in vals[:8]), vals
        assert len(fs.requests("/status/200")) == 8
        # A burst of 5, then one every 0.2 s: the bucket is made at the first call, so the
        # 8th token exists no sooner than 0.6 s after it (a lower bound, whatever the speed).
        assert vals[8]["elapsed"] >= 0.59, vals[8]
        assert vals[9]["status"] == 204
        assert vals[10]["kind"] == "rate_limited" and vals[10]["retry_after"] > 50, vals[10]
        assert len(fs.requests("/status/204")) == 1


def test_cache_hit_revalidation_and_stale_if_error():
    with FaultServer() as fs:
        src = """
local function get(url, cache)
  local res, err = http.get(url, { cache = cache, retry = false, breaker = false })
  if not res then return { kind = err.kind } end
  return { status = res.status, body = res.body, cached = res.cached }
end
out(get(%s, { ttl = 60 }))
out(get(%s, { ttl = 60 }))
out(get(%s, { ttl = 0 }))
out(get(%s, { ttl = 0 }))
out(get(%s, { ttl = 0, stale_if_error = 60 }))
out(get(%s, { ttl = 0, stale_if_error = 60 }))
out(get(%s, { ttl = 0 }))
""" % (lua_str(fs.url("/seq/a")), lua_str(fs.url("/seq/a")),
            lua_str(fs.url("/etag")), lua_str(fs.url("/etag")),
            lua_str(fs.url("/seq/b?codes=200,503")), lua_str(fs.url("/seq/b?codes=200,503")),
            lua_str(fs.url("/seq/c?codes=200,503")))
        vals, _ = run_lua(src)
        hit1, hit2, et1, et2, s1, s2, c1 = vals
        assert hit1 == {"status": 200, "body": "seq a #0", "cached": False}, hit1
        assert hit2 == {"status": 200, "body": "seq a #0", "cached": True}, hit2
        assert len(fs.requests("/seq/a")) == 1  # the hit did not touch the network
        assert et1["cached"] is False and et2["cached"] is True and et2["body"] == "etag body"
        etag_reqs = fs.requests("/etag")
        assert len(etag_reqs) == 2 and etag_reqs[1]["headers"].get("if-none-match") == '"v1"'
        assert s1["body"] == "seq b #0" and s2 == {"status": 200, "body": "seq b #0",
                                                    "cached": True}, (s1, s2)
        assert len(fs.requests("/seq/b")) == 2  # the upstream failed; the stale copy served
        assert c1["status"] == 200


if __name__ == "__main__":
    main([test_retries_follow_retry_after_and_count_every_attempt,
          test_post_is_retried_only_with_an_idempotency_key,
          test_breaker_opens_refuses_without_the_network_then_closes,
          test_rate_limiter_spaces_calls_and_refuses_past_max_wait,
          test_cache_hit_revalidation_and_stale_if_error])
