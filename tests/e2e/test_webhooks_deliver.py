"""webhooks.deliver end to end: the real binary delivers to a receiver on 127.0.0.1 that
verifies every request with the independent `standardwebhooks` npm package
(webhook_receiver.js) and reports each one as an event. Retry spacing is measured from the
receiver's receive times; the default (Svix) schedule is checked from the job's run_at as
`luar jobs show` reads it, so no test waits for real hours."""
import base64
import calendar
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time

from luar_e2e import DEFAULT_TIMEOUT, Luar, main, run_cli

HERE = os.path.dirname(os.path.abspath(__file__))
SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()

APP = """
local http = require "luar.http"
local webhooks = require "luar.webhooks"
http.route("POST", "/deliver", function(req)
  local id, job = webhooks.deliver(req:json())
  if not id then
    return { status = 422, json = { kind = job.kind, message = job.message } }
  end
  return { json = { id = id, job = job or false } }
end)
"""

# A short schedule for the tests: 4 attempts, 1 s, 2 s and 3 s apart. The runner is asked
# to look for due work every 0.1 s, so an attempt starts at most ~0.1 s after its time.
SHORT = """
return {
  jobs = { poll = 0.1 },
  webhooks = { deliver_allow_private = true, deliver_schedule = { 0, 1, 2, 3 }%s },
}
"""


class Receiver:
    """The node receiver; requests and acknowledgements arrive as events on a condition."""

    def __init__(self):
        self.proc = subprocess.Popen(["node", os.path.join(HERE, "webhook_receiver.js"), SECRET],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, cwd=HERE)
        self.requests = []
        self.acks = []
        self.cond = threading.Condition()
        self.port = None
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        with self.cond:
            assert self.cond.wait_for(lambda: self.port or self.proc.poll() is not None,
                                      DEFAULT_TIMEOUT), "receiver did not start"
        assert self.port, self.proc.stderr.read().decode()

    def _read(self):
        for raw in self.proc.stdout:
            rec = json.loads(raw)
            with self.cond:
                if "port" in rec:
                    self.port = rec["port"]
                elif "ack" in rec:
                    self.acks.append(rec["ack"])
                else:
                    self.requests.append(rec["request"])
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def url(self, path="/hooks", host="127.0.0.1"):
        return "http://%s:%d%s" % (host, self.port, path)

    def answer(self, command):
        """Changes what the receiver answers ("status 500", "drop"), once acknowledged."""
        with self.cond:
            n = len(self.acks)
            self.proc.stdin.write((command + "\n").encode())
            self.proc.stdin.flush()
            assert self.cond.wait_for(lambda: len(self.acks) > n, DEFAULT_TIMEOUT)

    def wait(self, n, timeout=DEFAULT_TIMEOUT):
        """Waits until `n` requests have arrived; returns them all."""
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.requests) >= n, timeout), \
                "%d requests arrived, expected %d" % (len(self.requests), n)
            return list(self.requests)

    def wait_for(self, pred, start=0, timeout=DEFAULT_TIMEOUT):
        """Waits for a request from index `start` on matching pred; returns it."""
        def found():
            return next((r for r in self.requests[start:] if pred(r)), None)
        with self.cond:
            assert self.cond.wait_for(found, timeout), "no matching request arrived"
            return found()

    def count(self):
        with self.cond:
            return len(self.requests)

    def close(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def deliver(srv, expect=200, **fields):
    fields.setdefault("secret", SECRET)
    fields.setdefault("type", "invoice.paid")
    fields.setdefault("payload", {"invoice": "in_1", "amount": 4200})
    status, _, body = srv.request("POST", "/deliver", body=json.dumps(fields),
                                  headers={"Content-Type": "application/json"})
    assert status == expect, (status, body)
    return json.loads(body)


def job_show(srv, jid):
    rc, out, err = run_cli(["jobs", "show", jid, "--json", "--data", srv.data], cwd=srv.dir)
    assert rc == 0, (rc, out, err)
    return json.loads(out)


def wait_job(srv, jid, pred, what):
    """Reads the job with `luar jobs show` until pred(job) holds (bounded)."""
    deadline = time.monotonic() + DEFAULT_TIMEOUT
    while True:
        job = job_show(srv, jid)
        if pred(job):
            return job
        assert time.monotonic() < deadline, "job never %s: %s" % (what, job)
        time.sleep(0.05)


def attempt_log(srv, **match):
    return srv.wait_log(lambda r: r.get("msg") == "webhook delivery attempt" and
                        all(r.get(k) == v for k, v in match.items()))


def rfc3339(s):
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z", s)
    assert m, s
    return calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")) + \
        float(m.group(2) or 0)


def test_delivery_is_signed_verified_and_shaped():
    with Receiver() as rcv, Luar({"main.lua": APP}, config=SHORT % "") as srv:
        before = time.time()
        out = deliver(srv, url=rcv.url(), headers={"X-Tenant": "t-42"})
        assert re.fullmatch(r"msg_[0-9A-Za-z]{27}", out["id"]), out
        [req] = rcv.wait(1)
        assert req["verified"], req["error"]
        h = req["headers"]
        assert h["webhook-id"] == out["id"] and h["x-tenant"] == "t-42", h
        assert h["content-type"] == "application/json", h
        assert re.fullmatch(r"v1,[A-Za-z0-9+/]{43}=", h["webhook-signature"]), h
        assert abs(int(h["webhook-timestamp"]) - req["t"]) < 5, (h, req["t"])
        body = json.loads(req["body"])
        assert list(body) == ["type", "timestamp", "data"], body
        assert body["type"] == "invoice.paid", body
        assert body["data"] == {"invoice": "in_1", "amount": 4200}, body
        assert before - 1 <= rfc3339(body["timestamp"]) <= req["t"] + 1, body
        rec = attempt_log(srv, msg_id=out["id"])
        assert (rec["outcome"], rec["status"], rec["attempt"], rec["job_id"]) == \
            ("delivered", 200, 1, out["job"]), rec
        job = wait_job(srv, out["job"], lambda j: j["state"] == "succeeded", "succeeded")
        assert job["name"] == "webhooks.deliver" and job["queue"] == "deliveries", job
        assert job["attempt"] == 1 and job["max_attempts"] == 4, job
        assert json.loads(job["result"])["status"] == 200 if isinstance(job["result"], str) \
            else job["result"]["status"] == 200, job
        assert rcv.count() == 1
        # An explicit id is the idempotency key: the same id to the same URL goes once.
        first = deliver(srv, url=rcv.url(), id="evt_0001")
        again = deliver(srv, url=rcv.url(), id="evt_0001")
        assert first["id"] == again["id"] == "evt_0001" and first["job"], (first, again)
        assert again["job"] is False, again
        reqs = rcv.wait(2)
        assert reqs[1]["headers"]["webhook-id"] == "evt_0001" and reqs[1]["verified"], reqs
        attempt_log(srv, msg_id="evt_0001", outcome="delivered")
        # Neither the secret nor a signature reaches a log line.
        key = SECRET[len("whsec_"):]
        sigs = [r["headers"]["webhook-signature"][3:] for r in reqs]
        with srv.cond:
            text = "\n".join(json.dumps(r) for r in srv.lines)
        assert key not in text and not any(s in text for s in sigs)
        # Nor `luar jobs show`, which keeps the rest of the arguments readable.
        assert job["args"]["secret"] == "[REDACTED]" and job["args"]["url"] == rcv.url(), job
        rc, shown, err = run_cli(["jobs", "show", out["job"], "--data", srv.data], cwd=srv.dir)
        assert rc == 0 and key not in shown and "[REDACTED]" in shown, (rc, shown, err)


def test_misuse_raises_and_bad_values_fail_softly():
    with Receiver() as rcv, Luar({"main.lua": APP}, config=SHORT % "") as srv:
        err = deliver(srv, 422, url="ftp://example.com/x")
        assert err["kind"] == "invalid" and "http" in err["message"], err
        err = deliver(srv, 422, url=rcv.url(), secret="whsec_***")
        assert err["kind"] == "invalid" and "secret" in err["message"], err
        assert "***" not in err["message"], err
        status, _, body = srv.request("POST", "/deliver", body=json.dumps(
            {"url": rcv.url(), "secret": SECRET, "type": "x", "payload": {},
             "headers": {"Webhook-Signature": "v1,forged"}}))
        assert status == 500, (status, body)
        srv.wait_log(lambda r: "Webhook-Signature is set by the delivery itself" in
                     json.dumps(r))
        status, _, body = srv.request("POST", "/deliver", body=json.dumps(
            {"url": rcv.url(), "secret": SECRET, "type": "x"}))
        assert status == 500, (status, body)
        srv.wait_log(lambda r: "payload is required" in json.dumps(r))
        assert rcv.count() == 0


def test_failing_endpoint_retries_on_schedule_then_dead_then_resent():
    with Receiver() as rcv, Luar({"main.lua": APP}, config=SHORT % "") as srv:
        rcv.answer("status 500")
        out = deliver(srv, url=rcv.url())
        reqs = rcv.wait(4)
        job = wait_job(srv, out["job"], lambda j: j["state"] == "dead", "dead")
        assert job["attempt"] == 4 and "answered 500" in job["last_error"], job
        assert "attempt 4 of 4" in job["last_error"], job
        gaps = [b["t"] - a["t"] for a, b in zip(reqs, reqs[1:])]
        for gap, want in zip(gaps, [1, 2, 3]):
            assert want - 0.05 <= gap <= want + 0.8, (gaps, [1, 2, 3])
        assert all(r["verified"] for r in reqs), [r["error"] for r in reqs]
        assert len({r["headers"]["webhook-id"] for r in reqs}) == 1
        assert len({r["body"] for r in reqs}) == 1, "every attempt sends the same body"
        outcomes = [attempt_log(srv, msg_id=out["id"], attempt=n)["outcome"]
                    for n in (1, 2, 3, 4)]
        assert outcomes == ["failed", "failed", "failed", "dead"], outcomes
        assert rcv.count() == 4
        # The dead letter is resent by `luar jobs retry`, with a fresh set of attempts.
        rcv.answer("status 204")
        rc, o, e = run_cli(["jobs", "retry", out["job"], "--data", srv.data], cwd=srv.dir)
        assert rc == 0, (rc, o, e)
        last = rcv.wait(5)[4]
        assert last["verified"] and last["headers"]["webhook-id"] == out["id"], last
        job = wait_job(srv, out["job"], lambda j: j["state"] == "succeeded", "succeeded")
        assert job["attempt"] == 1, job


def test_default_schedule_is_svix_s():
    config = "return { jobs = { poll = 0.1 }, webhooks = { deliver_allow_private = true } }"
    with Receiver() as rcv, Luar({"main.lua": APP}, config=config) as srv:
        rcv.answer("status 503")
        out = deliver(srv, url=rcv.url())
        first = rcv.wait(1)[0]
        job = wait_job(srv, out["job"], lambda j: j["state"] == "retrying", "retrying")
        assert job["max_attempts"] == 8, job
        assert 5 - 0.5 <= job["run_at"] - first["t"] <= 5 + 1.0, (job, first["t"])
        second = rcv.wait(2)[1]
        assert 5 - 0.05 <= second["t"] - first["t"] <= 5 + 0.8, second["t"] - first["t"]
        job = wait_job(srv, out["job"], lambda j: j["attempt"] == 2 and
                       j["state"] == "retrying", "retrying after attempt 2")
        assert 300 - 0.5 <= job["run_at"] - second["t"] <= 300 + 1.0, (job, second["t"])
        rec = attempt_log(srv, msg_id=out["id"], attempt=2)
        assert rec["retry_in"] == 300 and rec["status"] == 503, rec


# Attempts 0.2 s apart; the long last delay makes the schedule (60.8 s) outlast the test,
# so refusals by the open breaker are postponements, not spent attempts.
BREAKER = SHORT.replace("{ 0, 1, 2, 3 }", "{ 0, 0.2, 0.2, 0.2, 0.2, 60 }") % \
    ", deliver_breaker = { failures = 3, reset = 3 }"


def test_breaker_opens_for_a_failing_endpoint():
    with Receiver() as rcv, Luar({"main.lua": APP}, config=BREAKER) as srv:
        rcv.answer("status 500")
        out = deliver(srv, url=rcv.url())
        reqs = rcv.wait(3)
        # The third failure opened the breaker: attempt 4 waits without touching the network.
        rec = attempt_log(srv, msg_id=out["id"], outcome="postponed")
        assert rec["attempt"] == 4 and rec["error"] == "breaker_open", rec
        assert 3 - 0.5 <= rec["retry_in"] <= 6 + 0.01 and rec["duration_ms"] == 0, rec
        status, _, metrics = srv.request("GET", "/metrics")
        gauge = re.search(r'luar_circuit_state\{host="127\.0\.0\.1:%d#[0-9a-f]{12}"\} (\d)' %
                          rcv.port, metrics.decode())
        assert gauge and gauge.group(1) == "2", metrics.decode()[-2000:]
        # Another delivery to the same endpoint is held too; another endpoint on the same
        # host has a breaker of its own and is tried at once.
        held = deliver(srv, url=rcv.url())
        rec = attempt_log(srv, msg_id=held["id"])
        assert (rec["outcome"], rec["attempt"]) == ("postponed", 1), rec
        other = deliver(srv, url=rcv.url("/other"))
        req = rcv.wait(4)[3]
        assert req["path"] == "/other" and req["headers"]["webhook-id"] == other["id"], req
        # Only after the reset does a probe reach the endpoint again.
        probe = rcv.wait_for(lambda r: r["path"] == "/hooks", start=3)
        assert probe["t"] - reqs[2]["t"] >= 3 - 0.05, (probe["t"], reqs[2]["t"])
        job = job_show(srv, out["job"])
        assert job["attempt"] <= 4, job


def test_breaker_postpones_no_later_than_the_schedule_s_end():
    # A 1 s schedule and a breaker open for 30 s: the held attempts come back when the
    # schedule ends, count as failed (breaker_open) and the delivery is dead, without the
    # endpoint seeing more than the three requests that opened the breaker.
    config = SHORT.replace("{ 0, 1, 2, 3 }", "{ 0, 0.2, 0.2, 0.2, 0.2, 0.2 }") % \
        ", deliver_breaker = { failures = 3, reset = 30 }"
    with Receiver() as rcv, Luar({"main.lua": APP}, config=config) as srv:
        rcv.answer("status 500")
        out = deliver(srv, url=rcv.url())
        job = wait_job(srv, out["job"], lambda j: j["state"] == "dead", "dead")
        assert job["attempt"] == 6 and "breaker_open" in job["last_error"], job
        assert job["finished_at"] - job["enqueued_at"] < 2 * 1.0 + 1, job
        assert rcv.count() == 3
        rec = attempt_log(srv, msg_id=out["id"], outcome="dead")
        assert rec["error"] == "breaker_open" and rec["duration_ms"] == 0, rec


def test_private_addresses_are_refused_unless_allowed():
    config = "return { jobs = { poll = 0.1 }, webhooks = { deliver_schedule = { 0, 0.2 } } }"
    with Receiver() as rcv, Luar({"main.lua": APP}, config=config) as srv:
        for host, kind in (("127.0.0.1", "loopback"), ("[::1]", "loopback"),
                           ("169.254.169.254", "link-local"), ("10.1.2.3", "private"),
                           ("0.0.0.0", "unspecified")):
            err = deliver(srv, 422, url=rcv.url(host=host))
            assert err["kind"] == "private_address" and kind in err["message"], (host, err)
            assert "/hooks" not in err["message"], err
        # A name that resolves to loopback passes the URL check, and is refused on the
        # address curl actually connected to, before any byte of the request is sent.
        out = deliver(srv, url=rcv.url(host="localhost"))
        rec = attempt_log(srv, msg_id=out["id"], attempt=1)
        assert rec["error"] == "private_address" and rec["outcome"] == "failed", rec
        assert "loopback" in rec["message"], rec
        job = wait_job(srv, out["job"], lambda j: j["state"] == "dead", "dead")
        assert "private_address" in job["last_error"], job
        assert rcv.count() == 0
    config = config.replace("webhooks = {", "webhooks = { deliver_allow_private = true,")
    with Receiver() as rcv, Luar({"main.lua": APP}, config=config) as srv:
        out = deliver(srv, url=rcv.url(host="localhost"))
        assert rcv.wait(1)[0]["headers"]["webhook-id"] == out["id"]


def test_a_delivery_survives_a_restart_under_scripts_without_webhooks():
    config = SHORT.replace("{ 0, 1, 2, 3 }", "{ 1, 1 }") % ""
    with Receiver() as rcv:
        first = Luar({"main.lua": APP}, config=config)
        try:
            out = deliver(first, url=rcv.url())
            first.stop(signal.SIGKILL)  # the 200 above means it was committed
            assert rcv.count() == 0
            with Luar({"main.lua": "-- no webhooks here\n"}, config=config,
                      args=["--data", first.data]) as second:
                [req] = rcv.wait(1)
                assert req["verified"] and req["headers"]["webhook-id"] == out["id"], req
                rec = attempt_log(second, msg_id=out["id"])
                assert rec["outcome"] == "delivered" and rec["job_id"] == out["job"], rec
        finally:
            first.close()


def test_bad_webhooks_configuration_is_refused_naming_the_key():
    root = tempfile.mkdtemp(prefix="luar-e2e-")
    path = os.path.join(root, "luar.conf.lua")
    try:
        for text, want in (
                ("webhooks = { deliver_schedule = { 0, -5 } }", "webhooks.deliver_schedule"),
                ("webhooks = { deliver_schedule = {} }", "webhooks.deliver_schedule"),
                ("webhooks = { deliver_alow_private = true }", "webhooks.deliver_alow_private"),
                ("webhooks = { deliver_breaker = { failures = 0 } }",
                 "webhooks.deliver_breaker.failures")):
            with open(path, "w") as f:
                f.write("return {\n  %s,\n}\n" % text)
            rc, out, err = run_cli(["check", "--config", path, "--scripts", root], cwd=root)
            assert rc == 2 and "luar.conf.lua:2: " + want in err, (text, rc, err)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main([
        test_delivery_is_signed_verified_and_shaped,
        test_misuse_raises_and_bad_values_fail_softly,
        test_failing_endpoint_retries_on_schedule_then_dead_then_resent,
        test_default_schedule_is_svix_s,
        test_breaker_opens_for_a_failing_endpoint,
        test_breaker_postpones_no_later_than_the_schedule_s_end,
        test_private_addresses_are_refused_unless_allowed,
        test_a_delivery_survives_a_restart_under_scripts_without_webhooks,
        test_bad_webhooks_configuration_is_refused_naming_the_key,
    ])
