"""The admin API gate (SPEC §6): off (404) without a token; 401 with WWW-Authenticate for a
missing or wrong bearer token; with the right one, GET /admin/api/stats reports the queue
counts by queue and state, the jobs running in this process, the version and uptime. The
token never appears in any log line."""
import json

from luar_e2e import Luar, main

TOKEN = "e2e-admin-7f3c9a1b5d0e2f4a6c8b"

CONFIG = ('return { reload = { watch = false }, shutdown = { grace = 1 },\n'
          '  admin = { token = env("E2E_ADMIN_TOKEN", nil) },\n'
          '  jobs = { poll = 0.1 } }\n')

APP = r'''
local http = require "luar.http"
local jobs = require "luar.jobs"
local log = require "luar.log"
local time = require "luar.time"

jobs.define("held", { retries = 0 }, function(args)
  log.info("held started")
  time.sleep(60)
end)

http.route("POST", "/enqueue", function(req)
  local q = req.query
  for i = 1, tonumber(q.n) do
    local id, err = jobs.enqueue(q.name, {}, { queue = q.queue, delay = tonumber(q.delay) })
    assert(id, err)
  end
  return { status = 202 }
end)
http.route("GET", "/administrator", function(req) return "scripts, not admin" end)
http.route("GET", "/admin-ish/x", function(req) return "scripts too" end)
'''


def admin_get(luar, path, token=None, scheme="Bearer", method="GET"):
    headers = {} if token is None else {"Authorization": "%s %s" % (scheme, token)}
    status, h, body = luar.request(method, path, headers=headers)
    return status, h, body


def assert_token_not_logged(luar):
    with luar.cond:
        text = "\n".join(json.dumps(r) for r in luar.lines + luar.stderr_lines)
    assert TOKEN not in text
    assert TOKEN[:12] not in text


def test_admin_api_is_off_without_a_token():
    with Luar({"main.lua": APP}, config=CONFIG) as luar:
        for path in ("/admin/api/stats", "/admin/", "/admin", "/admin/api/jobs/1"):
            for token in (None, "anything"):
                status, h, body = admin_get(luar, path, token)
                assert status == 404, (path, status, body)
                assert json.loads(body) == {"error": "admin API is off"}, body
        # Only /admin and what is under /admin/ is the host's; the rest is the scripts'.
        assert luar.request("GET", "/administrator")[2] == b"scripts, not admin"
        assert luar.request("GET", "/admin-ish/x")[2] == b"scripts too"


def test_missing_or_wrong_token_is_401():
    with Luar({"main.lua": APP}, config=CONFIG, env={"E2E_ADMIN_TOKEN": TOKEN}) as luar:
        cases = [(None, "Bearer"), ("wrong", "Bearer"), (TOKEN[:-1], "Bearer"),
                 (TOKEN + "x", "Bearer"), ("", "Bearer"), (TOKEN, "Basic"), (TOKEN, "Token")]
        for token, scheme in cases:
            for path in ("/admin/api/stats", "/admin/api/nothing-here", "/admin/nothing.js"):
                status, h, body = admin_get(luar, path, token, scheme)
                assert status == 401, (token, scheme, path, status)
                assert h["www-authenticate"].startswith("Bearer"), h
                assert json.loads(body) == {"error": "missing or invalid admin token"}
        # The dashboard's files hold no data: served without the token, under a strict
        # Content-Security-Policy; the API calls they make need it.
        for path, ctype in (("/admin/", "text/html"), ("/admin", "text/html"),
                            ("/admin/app.js", "text/javascript"), ("/admin/app.css", "text/css")):
            status, h, body = admin_get(luar, path)
            assert status == 200 and h["content-type"].startswith(ctype), (path, status, h)
            assert "script-src 'self'" in h["content-security-policy"], h
            assert "unsafe-inline" not in h["content-security-policy"], h
            assert h["x-content-type-options"] == "nosniff" and body, h
        # The scheme is case-insensitive (RFC 7235).
        assert admin_get(luar, "/admin/api/stats", TOKEN, "bearer")[0] == 200
        assert_token_not_logged(luar)


def test_stats_with_the_token_matches_the_queue():
    with Luar({"main.lua": APP}, config=CONFIG, env={"LUAR_ADMIN_TOKEN": TOKEN}) as luar:
        for query in ("n=3&queue=mail&name=later&delay=3600",
                      "n=2&queue=default&name=later&delay=3600",
                      "n=1&queue=default&name=held"):
            assert luar.request("POST", "/enqueue?" + query)[0] == 202
        luar.wait_log(lambda r: r.get("msg") == "held started")
        status, h, body = admin_get(luar, "/admin/api/stats", TOKEN)
        assert status == 200, (status, body)
        assert h["content-type"] == "application/json"
        doc = json.loads(body)
        assert doc["queues"]["mail"]["scheduled"] == 3, doc
        assert doc["queues"]["default"]["scheduled"] == 2, doc
        assert doc["queues"]["default"]["running"] == 1, doc
        assert doc["totals"] == {"queued": 0, "scheduled": 5, "running": 1, "succeeded": 0,
                                 "retrying": 0, "dead": 0}, doc
        assert doc["jobs_running"] == 1, doc
        assert doc["version"] and doc["uptime_seconds"] > 0, doc
        assert doc["pid"] == luar.proc.pid, doc
        # Known path, other method: 405 with Allow; unknown path: 404 (behind the gate).
        status, h, body = admin_get(luar, "/admin/api/stats", TOKEN, method="POST")
        assert status == 405 and h["allow"] == "GET", (status, h)
        assert json.loads(body) == {"error": "method not allowed"}
        status, h, body = admin_get(luar, "/admin/api/nothing-here", TOKEN)
        assert status == 404 and json.loads(body) == {"error": "not found"}
        # Requests under /admin are counted under fixed route labels, not raw paths.
        _, _, metrics = luar.request("GET", "/metrics")
        assert b'route="/admin/api/stats"' in metrics
        assert b"nothing-here" not in metrics
        assert_token_not_logged(luar)


if __name__ == "__main__":
    main([test_admin_api_is_off_without_a_token,
          test_missing_or_wrong_token_is_401,
          test_stats_with_the_token_matches_the_queue])
