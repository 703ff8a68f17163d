"""The Sentry plugin end to end: the real binary with build/plugins/sentry.so sends to a
local Sentry stand-in (sentry_server.py) that parses envelopes as Sentry does and checks
the DSN's auth. Handler, job and cron-tick errors, error-level log lines and
luar.sentry's captures become events with stack frames, tags, trace context and
breadcrumbs; secrets never leave; Sentry down or rate limiting never slows requests and
drops are counted."""
import base64
import json
import os
import re
import threading
import time

from luar_e2e import Luar, free_port, main
from sentry_server import SentryStandIn

PLUGINS = os.path.join(os.environ.get("LUAR_BUILD_DIR", "build"), "plugins")
SECRET = "whsec_" + base64.b64encode(b"sentry-e2e-secret-value-0123456").decode()
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"

APP = r'''
local http = require "luar.http"
local jobs = require "luar.jobs"
local log = require "luar.log"
local sentry = require "luar.sentry"
local webhooks = require "luar.webhooks"
local SECRET = os.getenv("E2E_SECRET")
webhooks.route("/hooks/x", { scheme = "standard", secret = SECRET }) -- the host watches it
sentry.set_tag("team", "billing")

local function check(order)
  if not order.paid then
    error("order " .. order.id .. " is not paid") -- RAISE
  end
end

http.route("POST", "/orders/:id", function(req)
  log.info("checking order", { order = req.params.id })
  check({ id = req.params.id }) -- HANDLER
end)

jobs.define("charge", { queue = "billing", retries = 0 }, function(args)
  local amount = nil
  return amount + args.n -- JOB
end)

http.route("POST", "/enqueue", function(req)
  return { json = { id = jobs.enqueue("charge", { n = 1 }) } }
end)

http.route("POST", "/log-error", function(req)
  log.error("payment provider refused", { order = 9, reason = "card_declined" })
  return { status = 204 }
end)

http.route("POST", "/capture", function(req)
  local _, err = pcall(check, { id = 5 })
  local id1 = sentry.capture_exception(err, { tags = { feature = "capture" }, extra = { n = 1 } }) -- CAPTURE
  local id2 = sentry.capture_exception({ kind = "upstream", message = "bank timed out" })
  local id3 = sentry.capture_message("hello from lua", "warning", { user = { id = "u1" } })
  return { json = { ids = { id1, id2, id3 }, enabled = sentry.enabled() } }
end)

http.route("POST", "/leak", function(req)
  log.info("using the secret " .. SECRET, { key = SECRET })
  log.error("failed with " .. SECRET)
  sentry.capture_message("message with " .. SECRET, "error", { extra = { k = SECRET } })
  error("error with " .. SECRET)
end)
'''

TRACED_APP = r'''
local http = require "luar.http"
local jobs = require "luar.jobs"
local UPSTREAM = os.getenv("E2E_UPSTREAM")
jobs.define("sync", { queue = "io" }, function() http.get(UPSTREAM .. "/from-job") end)
http.route("GET", "/orders/:id", function(req)
  local res = http.get(UPSTREAM .. "/upstream?id=" .. req.params.id)
  jobs.enqueue("sync")
  return { json = { upstream = res.status } }
end)
http.route("GET", "/boom", function() error("boom") end)
'''

CRON_APP = r'''
local jobs = require "luar.jobs"
jobs.define("ticker", { retries = 0 }, function() error("tick failed") end)
jobs.cron("tick", "* * * * * *", "ticker")
'''


def line_of(marker, app=APP):
    for i, line in enumerate(app.split("\n"), 1):
        if marker in line:
            return i
    raise AssertionError(marker)


def config(dsn, **extra):
    opts = {"dsn": dsn, "environment": "staging", "release": "billing@1.2.3",
            "max_breadcrumbs": 20}
    opts.update(extra)
    fields = ", ".join("%s = %s" % (k, json.dumps(v)) for k, v in opts.items())
    return ('return { reload = { watch = false }, shutdown = { grace = 2 },\n'
            '  jobs = { poll = 0.1 },\n'
            '  plugins = { dir = %s, sentry = { %s } } }\n' % (json.dumps(PLUGINS), fields))


def metrics(luar):
    _, _, body = luar.request("GET", "/metrics")
    out = {}
    for m in re.finditer(r'^luar_sentry_events_total\{outcome="(\w+)"\} (\S+)$',
                         body.decode(), re.M):
        out[m.group(1)] = float(m.group(2))
    return out


def wait_metrics(luar, pred, what, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        m = metrics(luar)
        if pred(m):
            return m
        assert time.monotonic() < deadline, "metrics never showed %s: %s" % (what, m)
        time.sleep(0.05)


def frames_of(ev):
    return ev["exception"]["values"][0]["stacktrace"]["frames"]


def start(dsn, app=APP, env=None, **extra):
    e = {"E2E_SECRET": SECRET}
    e.update(env or {})
    return Luar({"main.lua": app}, config=config(dsn, **extra), env=e)


def test_handler_error_event_with_frames_tags_trace_and_breadcrumbs():
    with SentryStandIn() as sentry, start(sentry.dsn) as luar:
        luar.request("POST", "/orders/1")  # an earlier request: its lines are breadcrumbs
        sentry.wait_event(lambda e: True)
        first = sentry.count()
        status, _, body = luar.request(
            "POST", "/orders/7", headers={"X-Request-Id": "e2e-req-7",
                                          "traceparent": "00-%s-00f067aa0ba902b7-01" % TRACE_ID})
        assert status == 500, body
        ev = sentry.wait_event(lambda e: e.get("tags", {}).get("request_id") == "e2e-req-7")
        env = [x for x in sentry.envelopes if ev in x["events"]][0]
        # the envelope: header, item header with the payload's exact length, auth
        assert env["header"]["event_id"] == ev["event_id"]
        assert env["header"]["dsn"] == sentry.dsn
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", env["header"]["sent_at"])
        (ih, payload), = env["items"]
        assert ih == {"type": "event", "length": len(payload)}
        assert "sentry_key=e2ekey" in env["headers"]["x-sentry-auth"]
        # the event
        assert re.fullmatch(r"[0-9a-f]{32}", ev["event_id"])
        assert abs(ev["timestamp"] - time.time()) < 60
        assert ev["platform"] == "other" and ev["level"] == "error"
        assert ev["logger"] == "luar.http" and ev["transaction"] == "/orders/:id"
        assert ev["release"] == "billing@1.2.3" and ev["environment"] == "staging"
        assert ev["server_name"] and ev["sdk"]["name"] == "luar-sentry"
        exc, = ev["exception"]["values"]
        assert exc["type"] == "LuaError"
        assert exc["value"].endswith("main.lua:%d: order 7 is not paid" % line_of("-- RAISE"))
        assert exc["mechanism"] == {"type": "luar.http", "handled": False}
        frames = frames_of(ev)
        assert frames[-1] == {"filename": "[C]", "function": "error", "in_app": False}, frames
        raising, handler = frames[-2], frames[-3]
        assert raising["filename"].endswith("main.lua") and raising["in_app"] is True
        assert raising["function"] == "check" and raising["lineno"] == line_of("-- RAISE")
        assert handler["lineno"] == line_of("-- HANDLER") and handler["in_app"] is True
        tags = ev["tags"]
        assert tags["route"] == "/orders/:id" and tags["method"] == "POST"
        assert tags["status"] == "500" and tags["where"] == "http" and tags["team"] == "billing"
        trace = ev["contexts"]["trace"]
        assert trace["trace_id"] == TRACE_ID and re.fullmatch(r"[0-9a-f]{16}", trace["span_id"])
        assert trace["span_id"] != "00f067aa0ba902b7" and trace["op"] == "http.server"
        crumbs = ev["breadcrumbs"]["values"]
        assert len(crumbs) <= 20
        mine = [c for c in crumbs if c["message"] == "checking order"
                and c["data"].get("request_id") == "e2e-req-7"]
        assert mine and mine[-1]["data"]["order"] == "7" and mine[-1]["level"] == "info"
        assert mine[-1]["category"] == "log" and mine[-1]["timestamp"].endswith("Z")
        assert any(c["message"] == "request" and c["data"].get("path") == "/orders/1"
                   for c in crumbs), crumbs
        # the error's own log line is not a second event: events leave in order, so once
        # a later one arrived, nothing else came between
        luar.request("POST", "/log-error")
        sentry.wait_event(lambda e: e.get("logentry", {}).get("formatted") ==
                          "payment provider refused")
        assert not any("logentry" in e and e["logentry"]["formatted"] == "handler error"
                       for x in sentry.envelopes for e in x["events"])
        assert sentry.count() == first + 2
        m = wait_metrics(luar, lambda m: m["sent"] == 3, "3 sent")
        assert m["failed"] == 0 and m["dropped"] == 0 and m["rate_limited"] == 0, m


def test_job_and_cron_tick_errors_carry_job_queue_and_schedule():
    with SentryStandIn() as sentry, start(sentry.dsn) as luar:
        status, _, body = luar.request("POST", "/enqueue")
        job_id = json.loads(body)["id"]
        ev = sentry.wait_event(lambda e: e.get("tags", {}).get("job") == "charge")
        assert ev["tags"]["queue"] == "billing" and ev["tags"]["where"] == "job"
        assert ev["logger"] == "luar.job" and ev["transaction"] == "charge"
        assert ev["extra"] == {"job_id": job_id, "attempt": 1, "final": True}
        assert ev["contexts"]["trace"]["op"] == "queue.task"
        frames = frames_of(ev)
        assert frames[-1]["lineno"] == line_of("-- JOB") and frames[-1]["in_app"] is True
        assert "attempt to perform arithmetic on a nil value" in ev["exception"]["values"][0]["value"]
    with SentryStandIn() as sentry, start(sentry.dsn, app=CRON_APP) as luar:
        ev = sentry.wait_event(lambda e: e.get("tags", {}).get("schedule") == "tick")
        assert ev["tags"]["job"] == "ticker" and ev["tags"]["queue"] == "default"
        assert ev["exception"]["values"][0]["value"].endswith("tick failed")
        assert frames_of(ev)[-2]["lineno"] == line_of("error(", CRON_APP)


def test_error_log_lines_and_captures():
    with SentryStandIn() as sentry, start(sentry.dsn) as luar:
        status, _, _ = luar.request("POST", "/log-error", headers={"X-Request-Id": "req-log"})
        assert status == 204
        ev = sentry.wait_event(lambda e: "logentry" in e)
        assert ev["logentry"]["formatted"] == "payment provider refused"
        assert ev["level"] == "error" and ev["logger"] == "luar.log"
        assert ev["extra"]["order"] == 9 and ev["extra"]["reason"] == "card_declined"
        assert ev["tags"]["request_id"] == "req-log" and ev["tags"]["where"] == "log"
        assert len(ev["contexts"]["trace"]["trace_id"]) == 32

        status, _, body = luar.request("POST", "/capture")
        assert status == 200, body
        out = json.loads(body)
        ids = out["ids"]
        assert out["enabled"] is True and len(ids) == 3
        assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids), ids
        e1 = sentry.wait_event(lambda e: e["event_id"] == ids[0])
        e2 = sentry.wait_event(lambda e: e["event_id"] == ids[1])
        e3 = sentry.wait_event(lambda e: e["event_id"] == ids[2])
        x1 = e1["exception"]["values"][0]
        assert x1["value"].endswith("main.lua:%d: order 5 is not paid" % line_of("-- RAISE"))
        assert x1["mechanism"] == {"type": "luar.capture", "handled": True}
        # the caller's stack: the last frame is the line that called capture_exception
        assert frames_of(e1)[-1]["lineno"] == line_of("-- CAPTURE"), frames_of(e1)
        assert e1["tags"]["feature"] == "capture" and e1["extra"] == {"n": 1}
        assert e1["tags"]["request_id"] and e1["contexts"]["trace"]["trace_id"]
        x2 = e2["exception"]["values"][0]
        assert x2["type"] == "upstream" and x2["value"] == "bank timed out"
        assert e3["logentry"]["formatted"] == "hello from lua" and e3["level"] == "warning"
        assert e3["user"] == {"id": "u1"} and e3["tags"]["team"] == "billing"


def test_secrets_never_reach_sentry():
    with SentryStandIn() as sentry, start(sentry.dsn) as luar:
        status, _, _ = luar.request("POST", "/leak")
        assert status == 500
        sentry.wait_event(lambda e: e.get("tags", {}).get("where") == "http")
        sentry.wait_event(lambda e: e.get("logentry", {}).get("formatted", "").startswith(
            "message with"))
        sentry.wait_event(lambda e: e.get("logentry", {}).get("formatted", "").startswith(
            "failed with"))
        raw = b"".join(x["raw"] for x in sentry.envelopes)
        assert SECRET.encode() not in raw
        assert SECRET.split("_", 1)[1].encode() not in raw
        assert raw.count(b"[REDACTED]") >= 5, raw


def test_sentry_down_never_slows_requests_and_counts_drops():
    dead = "http://e2ekey@127.0.0.1:%d/42" % free_port()  # nothing listens there
    with start(dead, queue_size=3) as luar:
        slowest = 0
        t0 = time.monotonic()
        for i in range(40):
            t = time.monotonic()
            status, _, _ = luar.request("POST", "/orders/%d" % i)
            slowest = max(slowest, time.monotonic() - t)
            assert status == 500
        total = time.monotonic() - t0
        m = wait_metrics(luar, lambda m: m["failed"] >= 1 and m["dropped"] >= 30,
                         "failed and dropped events")
        assert m["sent"] == 0, m
        assert slowest < 1.0 and total < 10, (slowest, total)
        luar.wait_log(lambda r: r.get("plugin") == "sentry" and r.get("level") == "warn"
                      and "sending to Sentry failed" in r.get("msg", ""))


def test_rate_limits_are_honoured_and_nothing_is_retried_early():
    with SentryStandIn() as sentry, start(sentry.dsn) as luar:
        answers = [(429, {"Retry-After": "2"}),
                   (200, {"X-Sentry-Rate-Limits": "2:error;default:organization:quota"})]
        sentry.respond(lambda env: answers.pop(0) if answers else (200, {}))
        luar.request("POST", "/orders/1")
        wait_metrics(luar, lambda m: m["rate_limited"] == 1, "the 429")
        limited_at = sentry.envelopes[0]["at"]
        first_id = sentry.envelopes[0]["header"]["event_id"]
        for i in range(5):  # inside the 2 s: dropped at once, never sent
            t = time.monotonic()
            assert luar.request("POST", "/orders/x%d" % i)[0] == 500
            assert time.monotonic() - t < 1.0
        wait_metrics(luar, lambda m: m["rate_limited"] == 6, "drops while limited")
        assert sentry.count() == 1
        while time.monotonic() < limited_at + 2.1:  # the limit runs out by itself
            time.sleep(0.05)
        luar.request("POST", "/orders/2")
        sentry.wait_event(lambda e: e.get("exception", {}).get("values", [{}])[0].get(
            "value", "").endswith("order 2 is not paid"))
        assert sentry.envelopes[1]["at"] >= limited_at + 2.0
        # X-Sentry-Rate-Limits on a 200 limits the error category for 2 s
        luar.request("POST", "/orders/3")
        wait_metrics(luar, lambda m: m["rate_limited"] == 7 and m["sent"] == 1,
                     "X-Sentry-Rate-Limits applied")
        assert sentry.count() == 2
        ids = [x["header"]["event_id"] for x in sentry.envelopes]
        assert ids.count(first_id) == 1  # the rate-limited event was not retried


def test_shutdown_bounds_the_last_sends():
    with SentryStandIn() as sentry:
        release = threading.Event()
        sentry.respond(lambda env: (release.wait(30), (200, {}))[1])  # Sentry hangs
        luar = start(sentry.dsn, shutdown_timeout=1)
        try:
            for i in range(5):
                assert luar.request("POST", "/orders/%d" % i)[0] == 500
            sentry.wait_arrived(1)  # one in flight, four queued
            t = time.monotonic()
            assert luar.stop() == 0
            took = time.monotonic() - t
            assert 0.9 < took < 4, took
            luar.wait_log(lambda r: r.get("plugin") == "sentry" and
                          r.get("msg", "").startswith("5 events not sent to Sentry within 1.0 s"))
            assert sentry.arrived == 1
        finally:
            release.set()
            luar.close()


def test_sampled_transactions_for_requests_and_jobs():
    with SentryStandIn() as sentry:
        up = "http://127.0.0.1:%d" % sentry.port
        with start(sentry.dsn, app=TRACED_APP, traces_sample_rate=1,
                   env={"E2E_UPSTREAM": up}) as luar:
            status, _, body = luar.request(
                "GET", "/orders/5", headers={"traceparent": "00-%s-00f067aa0ba902b7-01" % TRACE_ID})
            assert status == 200, body
            tx = sentry.wait_event(lambda e: e.get("type") == "transaction"
                                   and e["contexts"]["trace"]["op"] == "http.server")
            env = [x for x in sentry.envelopes if tx in x["events"]][0]
            assert env["items"][0][0]["type"] == "transaction"
            assert tx["transaction"] == "GET /orders/:id"
            assert tx["transaction_info"] == {"source": "route"}
            assert tx["start_timestamp"] <= tx["timestamp"]
            trace = tx["contexts"]["trace"]
            assert trace["trace_id"] == TRACE_ID and trace["parent_span_id"] == "00f067aa0ba902b7"
            assert trace["status"] == "ok"
            assert tx["tags"]["route"] == "/orders/:id" and tx["tags"]["method"] == "GET"
            child, = tx["spans"]
            assert child["op"] == "http.client" and child["parent_span_id"] == trace["span_id"]
            assert child["description"] == "GET %s/upstream?id=5" % up
            assert child["data"]["http.response.status_code"] == 200 and child["status"] == "ok"
            assert tx["start_timestamp"] <= child["start_timestamp"] <= child["timestamp"] \
                <= tx["timestamp"]
            job = sentry.wait_event(lambda e: e.get("type") == "transaction"
                                    and e["contexts"]["trace"]["op"] == "queue.task")
            assert job["transaction"] == "job sync" and job["tags"]["queue"] == "io"
            assert job["transaction_info"] == {"source": "task"}
            jchild, = job["spans"]
            assert jchild["description"].endswith("/from-job")
            assert not any(e.get("transaction", "").startswith("GET /metrics")
                           for x in sentry.envelopes for e in x["events"])
    # traces_sample_rate = 0 (the default): no transactions at all
    with SentryStandIn() as sentry:
        up = "http://127.0.0.1:%d" % sentry.port
        with start(sentry.dsn, app=TRACED_APP, env={"E2E_UPSTREAM": up}) as luar:
            for i in range(3):
                assert luar.request("GET", "/orders/%d" % i)[0] == 200
            assert luar.request("GET", "/boom")[0] == 500  # an error event closes the row
            sentry.wait_event(lambda e: e.get("tags", {}).get("route") == "/boom")
            assert sentry.count() == 1, [x["items"][0][0] for x in sentry.envelopes]


def test_without_dsn_the_plugin_is_inert():
    with Luar({"main.lua": 'local s = require "luar.sentry"\n'
               'local http = require "luar.http"\n'
               'http.route("GET", "/x", function() local id, err = s.capture_message("m")\n'
               '  return { json = { id = id or false, err = err, enabled = s.enabled() } } end)\n'},
              config='return { plugins = { dir = %s } }\n' % json.dumps(PLUGINS)) as luar:
        out = luar.get_json("/x")
        assert out == {"id": False, "err": "sentry is not configured (plugins.sentry.dsn)",
                       "enabled": False}, out
        assert "luar_sentry_events_total" not in luar.request("GET", "/metrics")[2].decode()


def test_bad_dsn_refuses_to_start():
    luar = Luar({"main.lua": ""}, config=config("https://sentry.example.com/42"),
                wait_listening=False)
    try:
        assert luar.proc.wait(30) != 0
        err = "\n".join(r.get("raw", json.dumps(r)) for r in luar.stderr_lines + luar.lines)
        assert "plugins.sentry.dsn has no public key" in err, err
    finally:
        luar.close()


if __name__ == "__main__":
    main([test_handler_error_event_with_frames_tags_trace_and_breadcrumbs,
          test_job_and_cron_tick_errors_carry_job_queue_and_schedule,
          test_error_log_lines_and_captures,
          test_secrets_never_reach_sentry,
          test_sentry_down_never_slows_requests_and_counts_drops,
          test_rate_limits_are_honoured_and_nothing_is_retried_early,
          test_shutdown_bounds_the_last_sends,
          test_sampled_transactions_for_requests_and_jobs,
          test_without_dsn_the_plugin_is_inert,
          test_bad_dsn_refuses_to_start])
