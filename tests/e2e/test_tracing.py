"""W3C Trace Context end to end: the `traceparent` of an inbound request (or a new trace
when it has none or an invalid one) names `trace_id` on the request's log lines (the
script's, the access line, a handler error) and reaches the upstream of an outbound call as
the traceparent of a child span; a caller's own traceparent header is left alone."""
import http.server
import json
import re
import threading

from luar_e2e import Luar, main

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


def test_a_handler_error_line_carries_the_trace():
    with Luar({"main.lua": APP}) as srv:
        status, _, _ = srv.request("GET", "/fail",
                                   headers={"traceparent": "00-%s-%s-01" % (TRACE, PARENT)})
        assert status == 500
        rec = srv.wait_log(lambda r: r.get("msg") == "handler error")
        assert rec["trace_id"] == TRACE and "traced failure" in rec["error"], rec


if __name__ == "__main__":
    main([test_inbound_traceparent_names_the_logs_and_reaches_the_upstream,
          test_missing_or_invalid_traceparent_starts_a_new_trace,
          test_a_callers_own_traceparent_is_sent_as_given,
          test_a_handler_error_line_carries_the_trace])
