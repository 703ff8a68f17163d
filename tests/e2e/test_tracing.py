"""W3C Trace Context end to end: the `traceparent` of an inbound request (or a new trace
when it has none or an invalid one) names `trace_id` on the request's log lines (the
script's, the access line, a handler error) and reaches the upstream of an outbound call as
the traceparent of a child span; a caller's own traceparent header is left alone. Spans are
exported as OTLP/HTTP JSON to a collector the test runs (parent links, names, attributes,
sampling, a collector that is down)."""
import http.server
import json
import re
import threading
import time

from luar_e2e import Luar, free_port, main

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"

APP = r'''
local http = require "luar.http"
local log = require "luar.log"
http.route("GET", "/work", function(req)
  log.info("working", { step = 1 })
  local headers = nil
  if req.query.own then headers = { traceparent = req.query.own } end
  local res, err = http.get(req.query.up, { headers = headers, retry = false })
  return { json = { status = res and res.status, err = err and err.message } }
end)
http.route("GET", "/fail", function() error("traced failure") end)
local jobs = require "luar.jobs"
jobs.define("traced", function() log.info("in the job") end)
http.route("POST", "/job", function() return { json = { id = jobs.enqueue("traced", {}) } } end)
'''


class Upstream(http.server.BaseHTTPRequestHandler):
    seen = []

    def do_GET(self):
        Upstream.seen.append(self.headers.get("traceparent"))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *a):
        pass


def upstream():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, "http://127.0.0.1:%d/x" % srv.server_address[1]


def work(srv, up, traceparent=None, own=None):
    """One /work request; returns the trace id its lines carry and what the upstream saw."""
    n = len(srv.lines)
    Upstream.seen.clear()
    path = "/work?up=" + up + ("&own=" + own if own else "")
    headers = {"traceparent": traceparent} if traceparent is not None else {}
    status, _, body = srv.request("GET", path, headers=headers)
    assert status == 200 and json.loads(body)["status"] == 200, body
    script = srv.wait_log(lambda r: r.get("msg") == "working", start=n)
    access = srv.wait_log(lambda r: r.get("msg") == "request" and r.get("path") == "/work",
                          start=n)
    assert script["trace_id"] == access["trace_id"], (script, access)
    assert script["request_id"] == access["request_id"]
    assert len(Upstream.seen) == 1
    return script["trace_id"], Upstream.seen[0]


def child_of(tp, trace_id):
    m = re.fullmatch(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})", tp or "")
    assert m, tp
    assert m.group(1) == trace_id, (tp, trace_id)
    assert m.group(2) != "0" * 16
    return m.group(2), m.group(3)


def test_inbound_traceparent_names_the_logs_and_reaches_the_upstream():
    up_srv, up = upstream()
    try:
        with Luar({"main.lua": APP}) as srv:
            tid, seen = work(srv, up, "00-%s-%s-01" % (TRACE, PARENT))
            assert tid == TRACE
            span, flags = child_of(seen, TRACE)
            assert span != PARENT and flags == "01"
            # Not sampled upstream: the flag travels on.
            tid, seen = work(srv, up, "00-%s-%s-00" % (TRACE, PARENT))
            assert child_of(seen, TRACE)[1] == "00"
            # Two requests under one parent are two spans.
            _, seen2 = work(srv, up, "00-%s-%s-01" % (TRACE, PARENT))
            assert child_of(seen2, TRACE)[0] != span
    finally:
        up_srv.shutdown()


def test_missing_or_invalid_traceparent_starts_a_new_trace():
    up_srv, up = upstream()
    try:
        with Luar({"main.lua": APP}) as srv:
            ids = set()
            for tp in (None, "garbage", "00-%s-%s-01" % (TRACE.upper(), PARENT),
                       "00-%s-%s-01" % ("0" * 32, PARENT), "ff-%s-%s-01" % (TRACE, PARENT)):
                tid, seen = work(srv, up, tp)
                assert re.fullmatch(r"[0-9a-f]{32}", tid) and tid != TRACE.lower(), (tp, tid)
                child_of(seen, tid)
                ids.add(tid)
            assert len(ids) == 5  # each request its own new trace
    finally:
        up_srv.shutdown()


def test_a_callers_own_traceparent_is_sent_as_given():
    up_srv, up = upstream()
    try:
        with Luar({"main.lua": APP}) as srv:
            own = "00-%s-%s-01" % ("1" * 32, "2" * 16)
            _, seen = work(srv, up, "00-%s-%s-01" % (TRACE, PARENT), own=own)
            assert seen == own, seen
    finally:
        up_srv.shutdown()


WEBHOOK_APP = r'''
local webhooks = require "luar.webhooks"
local log = require "luar.log"
webhooks.route("/hooks/h", { scheme = "hmac", secret = "tracing-e2e-secret",
                             header = "X-Signature" })
webhooks.on("/hooks/h", "#", function(event, meta) log.info("handled", { id = meta.id }) end)
'''


def test_a_webhook_handler_job_runs_in_the_delivery_trace():
    import hashlib
    import hmac
    body = json.dumps({"id": "evt_traced", "type": "a.b"}).encode()
    sig = hmac.new(b"tracing-e2e-secret", body, hashlib.sha256).hexdigest()
    with Luar({"main.lua": WEBHOOK_APP}) as srv:
        status, _, _ = srv.request("POST", "/hooks/h", body=body, headers={
            "Content-Type": "application/json", "X-Signature": sig,
            "traceparent": "00-%s-%s-01" % (TRACE, PARENT)})
        assert status == 200
        rec = srv.wait_log(lambda r: r.get("msg") == "handled")
        assert rec["id"] == "evt_traced" and rec["trace_id"] == TRACE, rec


def test_a_handler_error_line_carries_the_trace():
    with Luar({"main.lua": APP}) as srv:
        status, _, _ = srv.request("GET", "/fail",
                                   headers={"traceparent": "00-%s-%s-01" % (TRACE, PARENT)})
        assert status == 500
        rec = srv.wait_log(lambda r: r.get("msg") == "handler error")
        assert rec["trace_id"] == TRACE and "traced failure" in rec["error"], rec


class Collector(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP JSON receiver: keeps every span with its resource's attributes."""
    spans = []
    posts = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Collector.posts.append({k.lower(): v for k, v in self.headers.items()})
        doc = json.loads(body)
        for rs in doc["resourceSpans"]:
            res = {a["key"]: list(a["value"].values())[0]
                   for a in rs["resource"]["attributes"]}
            for ss in rs["scopeSpans"]:
                for sp in ss["spans"]:
                    sp["resource"] = res
                    sp["attrs"] = {a["key"]: list(a["value"].values())[0]
                                   for a in sp["attributes"]}
                    Collector.spans.append(sp)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *a):
        pass


def collector():
    Collector.spans.clear()
    Collector.posts.clear()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, "http://127.0.0.1:%d/v1/traces" % srv.server_address[1]


def tracing_config(endpoint, **extra):
    items = ", ".join("%s = %s" % (k, v) for k, v in extra.items())
    return ('return { tracing = { endpoint = "%s", service_name = "e2e-svc", '
            'headers = { ["x-api-key"] = "collector-key-123" }%s } }\n'
            % (endpoint, ", " + items if items else ""))


def wait_spans(pred, what, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        got = [sp for sp in list(Collector.spans) if pred(sp)]
        if got:
            return got
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.05)


def test_spans_are_exported_as_otlp_json_with_their_parents():
    up_srv, up = upstream()
    col, endpoint = collector()
    try:
        with Luar({"main.lua": APP}, config=tracing_config(endpoint)) as srv:
            tid, seen = work(srv, up + "?token=hunter2-secret", "00-%s-%s-01" % (TRACE, PARENT))
            server = wait_spans(lambda sp: sp["kind"] == 2 and sp["traceId"] == TRACE,
                                "the request's span")[0]
            assert server["parentSpanId"] == PARENT and server["name"] == "GET /work", server
            assert server["attrs"]["http.route"] == "/work"
            assert server["attrs"]["http.response.status_code"] == "200"
            assert int(server["endTimeUnixNano"]) >= int(server["startTimeUnixNano"]) > 0
            assert abs(int(server["startTimeUnixNano"]) / 1e9 - time.time()) < 60
            assert server["resource"]["service.name"] == "e2e-svc"
            client = wait_spans(lambda sp: sp["kind"] == 3 and sp["traceId"] == TRACE,
                                "the outbound call's span")[0]
            assert client["parentSpanId"] == server["spanId"], (client, server)
            span_seen = child_of(seen, TRACE)[0]
            assert client["spanId"] == span_seen  # the span the upstream was told about
            assert client["attrs"]["http.request.method"] == "GET"
            assert "hunter2" not in client["attrs"]["url.full"], client["attrs"]
            # The collector got the configured header on each post.
            assert all(p.get("x-api-key") == "collector-key-123" for p in Collector.posts)
            assert all(p.get("content-type") == "application/json" for p in Collector.posts)
            # A job attempt is a consumer span under the request that enqueued it; its log
            # lines carry that trace.
            n = len(srv.lines)
            job_trace = "5" * 32
            assert srv.request("POST", "/job", headers={
                "traceparent": "00-%s-%s-01" % (job_trace, PARENT)})[0] == 200
            rec = srv.wait_log(lambda r: r.get("msg") == "in the job", start=n)
            assert rec["trace_id"] == job_trace, rec
            job = wait_spans(lambda sp: sp["kind"] == 5, "the job's span")[0]
            assert job["name"] == "job traced" and job["traceId"] == job_trace, (job, rec)
            enqueuer = wait_spans(lambda sp: sp["kind"] == 2 and sp["traceId"] == job_trace,
                                  "the enqueuing request's span")[0]
            assert job["parentSpanId"] == enqueuer["spanId"], (job, enqueuer)
            assert job["attrs"]["luar.job.name"] == "traced"
            assert job["attrs"]["luar.job.id"] == rec["job_id"]
            # A failing request is an error span.
            srv.request("GET", "/fail", headers={"traceparent": "00-%s-%s-01" % (TRACE, PARENT)})
            err = wait_spans(lambda sp: sp["name"] == "GET /fail", "the failed request's span")
            assert err[0]["status"].get("code") == 2, err
    finally:
        up_srv.shutdown()
        col.shutdown()


def test_sampling_follows_the_rate_and_the_remote_flag():
    up_srv, up = upstream()
    col, endpoint = collector()
    try:
        with Luar({"main.lua": APP}, config=tracing_config(endpoint, sample_rate=0)) as srv:
            work(srv, up)  # a new trace, not sampled at rate 0
            work(srv, up, "00-%s-%s-00" % ("a" * 32, PARENT))  # remote parent: not sampled
            work(srv, up, "00-%s-%s-01" % (TRACE, PARENT))  # remote parent: sampled
            wait_spans(lambda sp: sp["traceId"] == TRACE and sp["kind"] == 2, "sampled span")
            # The unsampled ones were ended before the sampled one: a batch holding the
            # sampled span would hold them too.
            assert {sp["traceId"] for sp in Collector.spans} == {TRACE}, Collector.spans
    finally:
        up_srv.shutdown()
        col.shutdown()


def test_a_collector_that_is_down_drops_spans_and_blocks_nothing():
    up_srv, up = upstream()
    try:
        endpoint = "http://127.0.0.1:%d/v1/traces" % free_port()
        with Luar({"main.lua": APP}, config=tracing_config(endpoint)) as srv:
            t0 = time.monotonic()
            for _ in range(20):
                work(srv, up)
            assert time.monotonic() - t0 < 10
            rec = srv.wait_log(lambda r: "trace export to" in r.get("msg", ""))
            assert "spans dropped" in rec["msg"] and "collector-key" not in json.dumps(rec)

            def dropped():
                _, _, body = srv.request("GET", "/metrics")
                m = re.search(r'^luar_trace_spans_total\{outcome="dropped"\} (\S+)$',
                              body.decode(), re.M)
                return m and float(m.group(1)) >= 40  # 20 requests x (server + client)
            deadline = time.monotonic() + 15
            while not dropped():
                assert time.monotonic() < deadline, "drops were not counted"
                time.sleep(0.1)
    finally:
        up_srv.shutdown()


if __name__ == "__main__":
    main([test_inbound_traceparent_names_the_logs_and_reaches_the_upstream,
          test_missing_or_invalid_traceparent_starts_a_new_trace,
          test_a_callers_own_traceparent_is_sent_as_given,
          test_a_handler_error_line_carries_the_trace,
          test_a_webhook_handler_job_runs_in_the_delivery_trace,
          test_spans_are_exported_as_otlp_json_with_their_parents,
          test_sampling_follows_the_rate_and_the_remote_flag,
          test_a_collector_that_is_down_drops_spans_and_blocks_nothing])
