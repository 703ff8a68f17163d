"""/metrics against the real binary: each metric of SPEC §6 and the process metrics move when
their event happens; `promtool check metrics` (Debian's prometheus package) accepts the live
exposition; the shipped alert rules pass `promtool check rules` and their unit tests
(tests/fixtures/ops/alerts_test.yml); every metric the shipped Grafana dashboard and the
alert rules query exists in the live exposition."""
import hashlib
import hmac
import http.server
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

from luar_e2e import Luar, main, write_files

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OPS = os.path.join(ROOT, "docs", "ops")
SECRET = "metrics-e2e-hmac-secret"

CONFIG = ('return { reload = { watch = false },\n'
          '  jobs = { lease = 5, heartbeat = 1, poll = 0.05 } }\n')

APP = r'''
local http = require "luar.http"
local jobs = require "luar.jobs"
local webhooks = require "luar.webhooks"
local ratelimit = require "luar.ratelimit"

http.route("GET", "/ok", function() return { json = { ok = true } } end)
http.route("GET", "/boom", function() error("boom in a handler") end)
http.route("GET", "/burn", function()
  local t0 = os.clock() -- the process's CPU time
  while os.clock() - t0 < 0.08 do end
  return { json = { ok = true } }
end)
http.route("GET", "/hold", function()
  HELD = {}
  for i = 1, 400000 do HELD[i] = i end -- ≈ 6 MB kept by the VM
  return { json = { n = #HELD } }
end)
jobs.define("good", function() end)
jobs.define("bad", { retries = 1, backoff = 0 }, function() error("bad job") end)
http.route("POST", "/enqueue/:name", function(req)
  local id, err = jobs.enqueue(req.params.name, {})
  return { json = { id = id, err = err and err.message } }
end)
webhooks.route("/hooks/h", { scheme = "hmac", secret = os.getenv("WH_SECRET"),
                             header = "X-Signature", algorithm = "sha256", encoding = "hex" })
webhooks.on("/hooks/h", "#", function() end)
http.route("GET", "/call", function(req)
  local opts = { url = req.query.url, retry = false, breaker = { failures = 1, reset = 600 } }
  if req.query.cache then opts.cache = { ttl = 60 } end
  local res, err = http.request(opts)
  return { json = { status = res and res.status, kind = err and err.kind,
                    cached = res and res.cached } }
end)
http.route("GET", "/limited", function()
  local ok = ratelimit.check("metrics-e2e", "1/m", { name = "e2e" })
  return { status = ok and 200 or 429, json = { ok = ok } }
end)
'''


def parse(text):
    """{(name, ((label, value), ...)): value} of every sample, and the set of family names."""
    samples, families = {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            families.add(line.split()[2])
            continue
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', line)
        assert m, "unparsable sample line: %r" % line
        labels = tuple(sorted(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"',
                                         m.group(3) or "")))
        samples[(m.group(1), labels)] = float(m.group(4))
    return samples, families


def scrape(srv):
    status, _, body = srv.request("GET", "/metrics")
    assert status == 200, status
    return body.decode()


def value(samples, name, **want):
    """Sum of the samples of `name` whose labels include `want`."""
    total = 0.0
    for (n, labels), v in samples.items():
        if n == name and all((k, str(x)) in labels for k, x in want.items()):
            total += v
    return total


class Upstream(http.server.BaseHTTPRequestHandler):
    """A local API: /ok answers 200 (cacheable), /fail 500."""

    def do_GET(self):
        status = 200 if self.path.startswith("/ok") else 500
        body = b'{"up":true}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=60")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def post_webhook(srv, id_, secret=SECRET):
    body = json.dumps({"id": id_, "type": "a.b"})
    sig = hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()
    status, _, _ = srv.request("POST", "/hooks/h", body=body.encode(),
                               headers={"Content-Type": "application/json", "X-Signature": sig})
    return status


def wait_metric(srv, what, pred, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        samples, _ = parse(scrape(srv))
        if pred(samples):
            return samples
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.05)


def promtool(*args, cwd=None):
    p = subprocess.run(["promtool"] + list(args), capture_output=True, timeout=60, cwd=cwd)
    return p.returncode, p.stdout.decode() + p.stderr.decode()


def test_every_metric_moves_and_promtool_accepts_the_exposition():
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    up = "http://127.0.0.1:%d" % upstream.server_address[1]
    started = time.time()
    try:
        with Luar({"main.lua": APP}, config=CONFIG, env={"WH_SECRET": SECRET}) as srv:
            before, _ = parse(scrape(srv))
            assert value(before, "luar_build_info") == 1

            # Requests: counted by route, method and status; timed by route.
            for _ in range(3):
                assert srv.request("GET", "/ok")[0] == 200
            assert srv.request("GET", "/boom")[0] == 500
            s, _ = parse(scrape(srv))
            assert value(s, "luar_http_requests_total", route="/ok", method="GET",
                         status="200") == 3
            assert value(s, "luar_http_requests_total", route="/boom", status="500") == 1
            assert value(s, "luar_http_request_duration_seconds_count", route="/ok") == 3
            assert value(s, "luar_lua_errors_total") == value(before, "luar_lua_errors_total") + 1

            # Webhooks by outcome.
            assert post_webhook(srv, "evt_1") == 200
            assert post_webhook(srv, "evt_1") == 200
            assert post_webhook(srv, "evt_2", secret="wrong") == 401
            s, _ = parse(scrape(srv))
            for outcome, n in (("accepted", 1), ("duplicate", 1), ("invalid_signature", 1)):
                assert value(s, "luar_webhooks_total", route="/hooks/h",
                             outcome=outcome) == n, (outcome, s)

            # Jobs: a success, a retried failure that ends dead; durations; queue gauges.
            assert srv.request("POST", "/enqueue/good")[0] == 200
            assert srv.request("POST", "/enqueue/bad")[0] == 200
            # Outcomes are counted when the runner writes them; the queue gauges are read
            # from the backend, once the writes have committed.
            s = wait_metric(srv, "the jobs to end", lambda s: value(
                s, "luar_jobs_total", job="bad", outcome="dead") == 1 and value(
                s, "luar_jobs_total", job="good", outcome="succeeded") == 1 and value(
                s, "luar_queue_jobs", queue="default", state="dead") == 1)
            assert value(s, "luar_jobs_total", job="bad", outcome="retried") == 1, s
            assert value(s, "luar_job_duration_seconds_count", job="good") == 1
            assert value(s, "luar_queue_jobs", queue="default", state="dead") == 1
            assert value(s, "luar_queue_jobs", queue="default", state="succeeded") >= 1

            # Outbound calls: by host and status, timed; the response cache; the breaker.
            assert json.loads(srv.request("GET", "/call?cache=1&url=" + up + "/ok")[2])[
                "cached"] is False
            assert json.loads(srv.request("GET", "/call?cache=1&url=" + up + "/ok")[2])[
                "cached"] is True
            s, _ = parse(scrape(srv))
            assert value(s, "luar_http_client_requests_total", status="200") == 1, s
            assert value(s, "luar_http_client_duration_seconds_count") == 1
            assert value(s, "luar_cache_requests_total", result="hit") == 1
            assert value(s, "luar_cache_requests_total", result="miss") == 1
            assert json.loads(srv.request("GET", "/call?url=" + up + "/fail")[2])[
                "status"] == 500
            got = json.loads(srv.request("GET", "/call?url=" + up + "/fail")[2])
            assert got["kind"] == "breaker_open", got
            s, _ = parse(scrape(srv))
            assert value(s, "luar_http_client_requests_total", status="500") == 1
            assert value(s, "luar_circuit_state") == 2, s  # open

            # Rate limits: the refusal is counted under the limit's name.
            assert srv.request("GET", "/limited")[0] == 200
            assert srv.request("GET", "/limited")[0] == 429
            s, _ = parse(scrape(srv))
            assert value(s, "luar_ratelimit_rejected_total", key="e2e") == 1

            # Reloads by outcome.
            n = len(srv.lines)
            srv.send_signal(signal.SIGHUP)
            srv.wait_log(lambda r: r.get("msg") == "scripts reloaded", start=n)
            write_files(srv.scripts, {"main.lua": "this is not lua"})
            n = len(srv.lines)
            srv.send_signal(signal.SIGHUP)
            srv.wait_log(lambda r: "reload failed" in r.get("msg", ""), start=n)
            s, _ = parse(scrape(srv))
            assert value(s, "luar_script_reloads_total", outcome="success") == \
                value(before, "luar_script_reloads_total", outcome="success") + 1
            assert value(s, "luar_script_reloads_total", outcome="failure") == 1

            # Process metrics, from /proc, and the Lua heaps.
            assert abs(value(s, "process_start_time_seconds") - started) < 30, s
            assert value(s, "process_resident_memory_bytes") > 1e6
            assert value(s, "process_virtual_memory_bytes") > value(
                s, "process_resident_memory_bytes")
            assert value(s, "process_max_fds") >= value(s, "process_open_fds") >= 3
            lua_before = value(s, "luar_lua_memory_bytes")
            assert lua_before > 10000
            assert srv.request("GET", "/hold")[0] == 200
            fds_before = value(s, "process_open_fds")
            extra = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(5)]
            # The five connections are accepted by the loop before /metrics is served
            # on a sixth.
            s = wait_metric(srv, "five more descriptors",
                            lambda s: value(s, "process_open_fds") >= fds_before + 5)
            for c in extra:
                c.close()
            assert value(s, "luar_lua_memory_bytes") > lua_before + 4e6, s
            cpu = value(s, "process_cpu_seconds_total")
            assert srv.request("GET", "/burn")[0] == 200  # 80 ms of CPU in the handler
            s, _ = parse(scrape(srv))
            assert value(s, "process_cpu_seconds_total") >= cpu + 0.05, (cpu, s)

            text = scrape(srv)
            p = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                               capture_output=True, timeout=60)
            assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()

            # Every metric the dashboard and the alerts query is exposed.
            _, families = parse(text)
            used = set()
            with open(os.path.join(OPS, "grafana-dashboard.json")) as f:
                dash = json.load(f)
            exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
            with open(os.path.join(OPS, "alerts.yml")) as f:
                exprs += re.findall(r"(?:luar|process)_[a-z_]+", f.read())
            for e in exprs:
                for name in re.findall(r"\b((?:luar|process)_[a-z_]+)", e):
                    used.add(re.sub(r"_(bucket|sum|count)$", "", name))
            missing = sorted(n for n in used if n not in families)
            assert not missing, "queried but not exposed: %s" % missing
            assert len(exprs) >= 20
    finally:
        upstream.shutdown()


def test_shipped_alert_rules_check_and_fire():
    rc, out = promtool("check", "rules", os.path.join(OPS, "alerts.yml"))
    assert rc == 0 and "SUCCESS: 6 rules found" in out, out
    rc, out = promtool("test", "rules", "alerts_test.yml",
                       cwd=os.path.join(ROOT, "tests", "fixtures", "ops"))
    assert rc == 0 and "SUCCESS" in out, out


if __name__ == "__main__":
    main([test_every_metric_moves_and_promtool_accepts_the_exposition,
          test_shipped_alert_rules_check_and_fire])
