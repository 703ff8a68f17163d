"""Inbound webhooks against the real binary and its SQLite queue: events signed by the
independent `standardwebhooks` npm package (and by Python's hmac for the `hmac` scheme) are
verified, deduplicated, stored and run as jobs; bad signatures, bad bodies, a failing disk
and a SIGKILL each get the answer SPEC §4 and §7 (guarantees 1, 5, 6) promise."""
import base64
import hashlib
import hmac
import json
import os
import resource
import select
import signal
import sqlite3
import subprocess
import threading
import time

from luar_e2e import Luar, main, run_cli, write_files

HERE = os.path.dirname(os.path.abspath(__file__))
SIGNER = os.path.join(HERE, "webhook_sign.js")

SECRET = "whsec_" + base64.b64encode(b"luar-e2e-current-secret-0123456").decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"luar-e2e-previous-secret-987654").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"some-other-endpoint-secret-xyz").decode()
HMAC_SECRET = "hmac-e2e-secret-value"

CONFIG = ('return { reload = { watch = false }, shutdown = { grace = 2 },\n'
          '  limits = { max_body = "64KiB" },\n'
          '  jobs = { lease = 2, heartbeat = 0.5, poll = 0.1 } }\n')

APP = r'''
local webhooks = require "luar.webhooks"
local log = require "luar.log"

local SECRET, OLD = os.getenv("WH_SECRET"), os.getenv("WH_OLD")

webhooks.route("/hooks/std", { scheme = "standard", secrets = { SECRET, OLD },
                               max_body = "4KiB" })
webhooks.on("/hooks/std", "charge.*", function(event, meta)
  log.info("handled", { handler = "charge", id = meta.id, type = meta.type, route = meta.route,
                        scheme = meta.scheme, attempt = meta.attempt, job_id = meta.job_id,
                        received_at = meta.received_at, headers = meta.headers, event = event })
end)
webhooks.on("/hooks/std", "#", function(event, meta)
  log.info("handled", { handler = "all", id = meta.id, type = meta.type })
end)
webhooks.on("/hooks/std", "charge.succeeded", { name = "charge-ok" }, function(event, meta)
  log.info("handled", { handler = "charge-ok", id = meta.id })
end)
webhooks.on("/hooks/std", "invoice.*", function(event, meta)
  log.info("handled", { handler = "invoice", id = meta.id })
end)
webhooks.on("/hooks/std", "boom.*", { retries = 1, backoff = 0 }, function(event, meta)
  log.info("boom attempt", { id = meta.id, attempt = meta.attempt })
  error("boom on attempt " .. meta.attempt)
end)

webhooks.route("/hooks/narrow", { scheme = "standard", secret = SECRET, dedupe = 3600 })
webhooks.on("/hooks/narrow", "order.created", function(event, meta)
  log.info("handled", { handler = "narrow", id = meta.id })
end)

webhooks.route("/hooks/nodedupe", { scheme = "standard", secret = SECRET, dedupe = false })
webhooks.on("/hooks/nodedupe", "order.created", function(event, meta)
  log.info("handled", { handler = "nodedupe", id = meta.id })
end)

webhooks.route("/hooks/hmac", { scheme = "hmac", secret = os.getenv("WH_HMAC"),
                                header = "X-Signature", algorithm = "sha256",
                                encoding = "hex", prefix = "sha256=" })
webhooks.on("/hooks/hmac", "#", function(event, meta)
  log.info("handled", { handler = "hmac", id = meta.id, type = meta.type,
                        headers = meta.headers, n = event.n })
end)

webhooks.route("/hooks/sync", { scheme = "standard", secret = SECRET, sync = true })
webhooks.on("/hooks/sync", "url.challenge", function(event, meta)
  return { status = 200, json = { challenge = event.challenge, attempt = meta.attempt,
                                  id = meta.id } }
end)
webhooks.on("/hooks/sync", "fail", function() error("sync handler failed") end)

webhooks.route("/hooks/open", { verify = false })
webhooks.on("/hooks/open", "#", function(event, meta)
  log.info("handled", { handler = "open", id = meta.id, type = meta.type, scheme = meta.scheme })
end)
'''

ENV = {"WH_SECRET": SECRET, "WH_OLD": OLD_SECRET, "WH_HMAC": HMAC_SECRET}


def start(**kw):
    kw.setdefault("config", CONFIG)
    kw.setdefault("env", ENV)
    return Luar({"main.lua": kw.pop("app", APP)}, **kw)


def sign(secret, messages):
    """Headers for each (id, timestamp, body) from the standardwebhooks npm package."""
    req = {"secret": secret,
           "messages": [{"id": i, "timestamp": ts, "body": body} for i, ts, body in messages]}
    p = subprocess.run(["node", SIGNER], input=json.dumps(req).encode(), capture_output=True,
                       cwd=HERE, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout)


_seq = [0]


def new_id(prefix="msg"):
    _seq[0] += 1
    return "%s_%d_%d" % (prefix, os.getpid(), _seq[0])


def event(type_, **data):
    return json.dumps({"type": type_, "data": data})


def post(luar, path, body, headers=None):
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    status, rh, data = luar.request("POST", path, body=body.encode() if isinstance(body, str)
                                    else body, headers=h)
    try:
        parsed = json.loads(data) if data else None
    except ValueError:
        parsed = data
    return status, rh, parsed


def post_signed(luar, path, body, id_=None, ts=None, secret=SECRET, extra=None):
    id_ = id_ or new_id()
    hdrs = sign(secret, [(id_, int(time.time()) if ts is None else ts, body)])[0]
    hdrs.update(extra or {})
    return post(luar, path, body, hdrs) + (id_,)


def handled(luar, handler, id_, start=0, timeout=30):
    return luar.wait_log(lambda r: r.get("msg") == "handled" and r.get("handler") == handler
                         and r.get("id") == id_, start=start, timeout=timeout)


def count_handled(luar, handler=None, id_=None):
    return luar.count_logs(lambda r: r.get("msg") == "handled" and
                           (handler is None or r.get("handler") == handler) and
                           (id_ is None or r.get("id") == id_))


def stats(data_dir):
    rc, out, err = run_cli(["jobs", "stats", "--json", "--data", data_dir])
    assert rc == 0, err
    return json.loads(out)["total"]


def metric(luar, name, **labels):
    _, _, body = luar.request("GET", "/metrics")
    want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
    for line in body.decode().splitlines():
        if line.startswith(name + "{"):
            lab = line[len(name) + 1:line.index("}")]
            got = ",".join(sorted(lab.split(",")))
            if got == want:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_idle(luar, data_dir=None):
    """Until the backend holds no job that is still to run (queued, running, retrying)."""
    deadline = time.monotonic() + 30
    while True:
        t = stats(data_dir or luar.data)
        if t["queued"] == 0 and t["running"] == 0 and t["retrying"] == 0:
            return t
        assert time.monotonic() < deadline, t
        time.sleep(0.05)  # a bounded poll: the backend's state has no event to wait on


# ---- tests ------------------------------------------------------------------------------


def test_signed_event_runs_its_handler_with_event_and_meta():
    with start() as luar:
        body = event("charge.refunded", amount=4200, currency="eur")
        before = time.time()
        status, rh, answer, id_ = post_signed(luar, "/hooks/std", body, extra={
            "X-Custom-Thing": "kept", "Authorization": "Bearer not-stored"})
        assert status == 200, answer
        assert answer == {"received": True, "id": id_, "jobs": 2}, answer  # charge.* and #
        rec = handled(luar, "charge", id_)
        assert rec["type"] == "charge.refunded" and rec["route"] == "/hooks/std", rec
        assert rec["scheme"] == "standard" and rec["attempt"] == 1 and rec["job_id"], rec
        assert before - 1 <= rec["received_at"] <= time.time() + 1, rec
        assert rec["event"] == json.loads(body), rec
        hdrs = rec["headers"]
        assert hdrs["x-custom-thing"] == "kept" and hdrs["webhook-id"] == id_, hdrs
        assert "webhook-timestamp" in hdrs and "content-type" in hdrs, hdrs
        # Signatures and credentials are never handed to handlers nor stored with the job.
        assert "webhook-signature" not in hdrs and "authorization" not in hdrs, hdrs
        handled(luar, "all", id_)
        assert metric(luar, "luar_webhooks_total", route="/hooks/std", outcome="accepted") == 1


def test_bad_signatures_are_401_and_nothing_is_stored():
    with start() as luar:
        body = event("charge.succeeded", amount=1)
        now = int(time.time())
        good = sign(SECRET, [("msg_bad_1", now, body)])[0]
        cases = {
            "tampered body": (body.replace('"amount": 1', '"amount": 1000'), good),
            "wrong secret": (body, sign(OTHER_SECRET, [("msg_bad_1", now, body)])[0]),
            "no webhook-signature": (body, {k: v for k, v in good.items()
                                            if k != "webhook-signature"}),
            "no webhook-id": (body, {k: v for k, v in good.items() if k != "webhook-id"}),
            "no webhook-timestamp": (body, {k: v for k, v in good.items()
                                            if k != "webhook-timestamp"}),
            "malformed signature": (body, dict(good, **{"webhook-signature": "v1,%%%"})),
            "id changed": (body, dict(good, **{"webhook-id": "msg_bad_2"})),
        }
        expired = sign(SECRET, [("msg_old", now - 3600, body)])[0]
        future = sign(SECRET, [("msg_new", now + 3600, body)])[0]
        for name, (b, h) in cases.items():
            status, _, answer = post(luar, "/hooks/std", b, h)
            assert status == 401, (name, status, answer)
            assert answer["error"].split(":")[0] in ("missing signature", "invalid signature"), \
                (name, answer)
        for name, h in (("expired", expired), ("future", future)):
            status, _, answer = post(luar, "/hooks/std", body, h)
            assert status == 401 and answer["error"].startswith("expired signature"), \
                (name, answer)
        n = len(cases) + 2
        # Every refusal is one log line with its reason; none echoes the secret or signature.
        luar.wait_log(lambda r: luar.count_logs(
            lambda x: x.get("msg") == "webhook rejected" and x.get("status") == 401) >= n)
        text = "\n".join(json.dumps(r) for r in luar.lines)
        for secret in (SECRET, SECRET[6:], OLD_SECRET[6:]):
            assert secret not in text
        for h in [good, expired, future]:
            assert h["webhook-signature"][3:] not in text
        assert metric(luar, "luar_webhooks_total", route="/hooks/std",
                      outcome="expired") == 2
        assert metric(luar, "luar_webhooks_total", route="/hooks/std",
                      outcome="invalid_signature") == len(cases)
        # Nothing was stored: no job, and the id is not recorded (the genuine delivery of
        # msg_bad_1 is accepted, not a duplicate).
        t = stats(luar.data)
        assert t["total"] == 0, t
        status, _, answer = post(luar, "/hooks/std", body, good)
        assert status == 200 and answer.get("duplicate") is None and answer["jobs"] == 3, answer
        handled(luar, "charge", "msg_bad_1")
        assert count_handled(luar) <= 3


def test_rotated_secrets_both_verify():
    with start() as luar:
        for secret in (SECRET, OLD_SECRET):
            status, _, answer, id_ = post_signed(luar, "/hooks/std", event("invoice.paid"),
                                                 secret=secret)
            assert status == 200 and answer["jobs"] == 2, answer
            handled(luar, "invoice", id_)
        status, _, answer, _ = post_signed(luar, "/hooks/std", event("invoice.paid"),
                                           secret=OTHER_SECRET)
        assert status == 401, answer


def test_malformed_and_oversized_bodies():
    with start() as luar:
        # Not JSON: 400 saying where.
        status, _, answer, _ = post_signed(luar, "/hooks/std", '{"type": "charge.x", ')
        assert status == 400 and "malformed body" in answer["error"], answer
        assert "byte" in answer["error"], answer
        # JSON without a type.
        status, _, answer, _ = post_signed(luar, "/hooks/std", '{"data": {}}')
        assert status == 400 and "type" in answer["error"], answer
        # Deep nesting is refused with a bounded answer, not a crash.
        deep = '{"type": "charge.deep", "data": ' + "[" * 300 + "]" * 300 + "}"
        status, _, answer, _ = post_signed(luar, "/hooks/std", deep)
        assert status == 400, answer
        # The deepest event accepted (126 levels) still decodes when its job runs; one
        # level more is refused, not stored as a job that could never decode.
        ok_id = None
        for levels, want in ((125, 200), (126, 400)):
            nested = '{"type": "charge.nested", "data": ' + "[" * levels + '"x"' + \
                "]" * levels + '}'
            status, _, answer, nid = post_signed(luar, "/hooks/std", nested)
            assert status == want, (levels, answer)
            ok_id = ok_id or nid
        assert "deeper" in answer["error"], answer
        handled(luar, "charge", ok_id)
        # Over the route's max_body (4 KiB): 413 before any signature work.
        big = event("charge.big", pad="x" * 5000)
        status, _, answer, _ = post_signed(luar, "/hooks/std", big)
        assert status == 413 and "body too large" in answer["error"], answer
        # Over the server's limit (64 KiB): 413 from the server itself.
        huge = event("charge.huge", pad="x" * 70000)
        status, _, answer = post(luar, "/hooks/std", huge, {})
        assert status == 413, answer
        assert metric(luar, "luar_webhooks_total", route="/hooks/std",
                      outcome="malformed") == 4
        assert metric(luar, "luar_webhooks_total", route="/hooks/std",
                      outcome="rejected") == 1
        assert stats(luar.data)["total"] == 2  # the nested event's two jobs
        # Only POST reaches a webhook route.
        status, rh, _ = luar.request("GET", "/hooks/std")
        assert status == 405 and rh.get("allow") == "POST", (status, rh)
        # The process is still well: a good event goes through.
        status, _, answer, id_ = post_signed(luar, "/hooks/std", event("charge.ok"))
        assert status == 200, answer
        handled(luar, "charge", id_)


def test_duplicate_delivery_runs_the_handlers_once():
    with start() as luar:
        body = event("charge.captured", amount=7)
        id_ = new_id("dup")
        hdrs = sign(SECRET, [(id_, int(time.time()), body)])[0]
        status, _, first = post(luar, "/hooks/std", body, hdrs)
        assert status == 200 and first == {"received": True, "id": id_, "jobs": 2}, first
        status, _, second = post(luar, "/hooks/std", body, hdrs)
        assert status == 200 and second == {"received": True, "id": id_, "duplicate": True}
        # Concurrent redeliveries of a new id: exactly one is stored.
        id2 = new_id("dup")
        hdrs2 = sign(SECRET, [(id2, int(time.time()), body)])[0]
        answers = []
        lock = threading.Lock()

        def deliver():
            r = post(luar, "/hooks/std", body, hdrs2)
            with lock:
                answers.append(r)

        threads = [threading.Thread(target=deliver) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert all(s == 200 for s, _, _ in answers), answers
        assert sum(1 for _, _, a in answers if not a.get("duplicate")) == 1, answers
        handled(luar, "charge", id_)
        handled(luar, "charge", id2)
        t = wait_idle(luar)
        assert t["succeeded"] == 4, t  # two events, two handlers each
        assert count_handled(luar, "charge", id_) == 1
        assert count_handled(luar, "charge", id2) == 1
        assert count_handled(luar, "all", id2) == 1
        assert metric(luar, "luar_webhooks_total", route="/hooks/std",
                      outcome="duplicate") == 8


def test_each_matching_handler_gets_one_job():
    with start() as luar:
        status, _, answer, id_ = post_signed(luar, "/hooks/std", event("charge.succeeded"))
        assert status == 200 and answer["jobs"] == 3, answer  # charge.*, #, charge-ok
        for h in ("charge", "all", "charge-ok"):
            handled(luar, h, id_)
        status, _, answer, id2 = post_signed(luar, "/hooks/std", event("invoice.paid"))
        assert answer["jobs"] == 2, answer  # #, invoice.*
        handled(luar, "invoice", id2)
        handled(luar, "all", id2)
        status, _, answer, id3 = post_signed(luar, "/hooks/std", event("customer.created.x"))
        assert answer["jobs"] == 1, answer  # # only
        handled(luar, "all", id3)
        wait_idle(luar)
        assert count_handled(luar, id_=id_) == 3
        assert count_handled(luar, id_=id2) == 2
        assert count_handled(luar, id_=id3) == 1
        # The job names are the documented ones.
        rc, out, err = run_cli(["jobs", "list", "--json", "--data", luar.data])
        assert rc == 0, err
        names = {j["name"] for j in json.loads(out)["jobs"]}
        assert {"webhook:/hooks/std:charge.*", "webhook:/hooks/std:#", "webhook:charge-ok",
                "webhook:/hooks/std:invoice.*"} <= names, names


def test_event_without_handler_is_received_and_remembered():
    with start() as luar:
        body = event("order.cancelled")
        id_ = new_id()
        hdrs = sign(SECRET, [(id_, int(time.time()), body)])[0]
        status, _, answer = post(luar, "/hooks/narrow", body, hdrs)
        assert status == 200 and answer == {"received": True, "id": id_, "jobs": 0}, answer
        status, _, answer = post(luar, "/hooks/narrow", body, hdrs)
        assert answer.get("duplicate") is True, answer
        assert stats(luar.data)["total"] == 0
        status, _, answer, id2 = post_signed(luar, "/hooks/narrow", event("order.created"))
        assert answer["jobs"] == 1, answer
        handled(luar, "narrow", id2)


def test_dedupe_false_runs_every_delivery_and_an_unhandled_type_needs_no_write():
    with start() as luar:
        body = event("order.created")
        id_ = new_id("nd")
        hdrs = sign(SECRET, [(id_, int(time.time()), body)])[0]
        for _ in range(2):  # no dedupe record: a redelivery is stored and run again
            status, _, answer = post(luar, "/hooks/nodedupe", body, hdrs)
            assert status == 200 and answer == {"received": True, "id": id_, "jobs": 1}, answer
        handled(luar, "nodedupe", id_)
        wait_idle(luar)
        assert count_handled(luar, "nodedupe", id_) == 2
        # A type no handler takes, without dedupe, has nothing to store: it is answered
        # without a commit, even while another process holds the database's write lock
        # (every commit waits for it).
        db = sqlite3.connect(os.path.join(luar.data, "luar.db"), isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            status, _, answer, id2 = post_signed(luar, "/hooks/nodedupe", event("order.paid"))
            assert status == 200 and answer == {"received": True, "id": id2, "jobs": 0}, answer
        finally:
            db.execute("ROLLBACK")
            db.close()
        assert stats(luar.data)["total"] == 2


def test_hmac_route_verified_with_pythons_hmac():
    with start() as luar:
        body = json.dumps({"id": "evt_hmac_1", "type": "thing.happened", "n": 5})
        sig = "sha256=" + hmac.new(HMAC_SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()
        status, _, answer = post(luar, "/hooks/hmac", body, {"X-Signature": sig})
        assert status == 200 and answer == {"received": True, "id": "evt_hmac_1", "jobs": 1}
        rec = handled(luar, "hmac", "evt_hmac_1")
        assert rec["type"] == "thing.happened" and rec["n"] == 5, rec
        assert "x-signature" not in rec["headers"], rec
        wrong = "sha256=" + hmac.new(b"nope", body.encode(), hashlib.sha256).hexdigest()
        status, _, answer = post(luar, "/hooks/hmac", body, {"X-Signature": wrong})
        assert status == 401, answer
        status, _, answer = post(luar, "/hooks/hmac", body, {})
        assert status == 401 and answer["error"].startswith("missing signature"), answer
        status, _, answer = post(luar, "/hooks/hmac", body, {"X-Signature": sig})
        assert answer.get("duplicate") is True, answer
        # Without an id in the body the signature names the event (SPEC §8); it never goes
        # to a log line, even when the event is then refused.
        bad = json.dumps({"type": "t" * 300})
        bad_sig = hmac.new(HMAC_SECRET.encode(), bad.encode(), hashlib.sha256).hexdigest()
        status, _, answer = post(luar, "/hooks/hmac", bad, {"X-Signature": "sha256=" + bad_sig})
        assert status == 400 and "type" in answer["error"], answer
        luar.wait_log(lambda r: r.get("msg") == "webhook rejected" and r.get("status") == 400)
        assert not any(bad_sig in json.dumps(r) for r in luar.lines)


def test_verify_false_is_warned_about_and_reads_the_body():
    with start() as luar:
        rec = luar.lines[0:]
        assert any("does not verify signatures" in r.get("msg", "") and "main.lua:" in
                   r.get("msg", "") for r in rec), rec[:5]
        status, _, answer = post(luar, "/hooks/open", json.dumps({"id": 77, "type": "a.b"}))
        assert status == 200 and answer == {"received": True, "id": "77", "jobs": 1}, answer
        rec = handled(luar, "open", "77")
        assert rec["type"] == "a.b" and rec["scheme"] == "none", rec
        status, _, answer = post(luar, "/hooks/open", "[1,2")
        assert status == 400, answer


def test_sync_route_answers_with_the_handler_result():
    with start() as luar:
        body = json.dumps({"type": "url.challenge", "challenge": "abc123"})
        status, _, answer, id_ = post_signed(luar, "/hooks/sync", body)
        assert status == 200 and answer == {"challenge": "abc123", "attempt": 1, "id": id_}
        # Sync routes do not deduplicate: the handler answers a redelivery too.
        hdrs = sign(SECRET, [(id_, int(time.time()), body)])[0]
        status, _, again = post(luar, "/hooks/sync", body, hdrs)
        assert status == 200 and again == answer, again
        status, _, answer, _ = post_signed(luar, "/hooks/sync", json.dumps({"type": "fail"}))
        assert status == 500 and answer["error"] == "internal error", answer
        status, _, answer, _ = post_signed(luar, "/hooks/sync", json.dumps({"type": "x"}))
        assert status == 200 and answer["handlers"] == 0, answer
        status, _, answer, _ = post_signed(luar, "/hooks/sync", body, secret=OTHER_SECRET)
        assert status == 401, answer
        assert stats(luar.data)["total"] == 0


def test_failing_handler_is_retried_then_dead():
    with start() as luar:
        status, _, answer, id_ = post_signed(luar, "/hooks/std", event("boom.now"))
        assert status == 200 and answer["jobs"] == 2, answer
        rec = luar.wait_log(lambda r: r.get("msg") == "job failed, now dead" and
                            r.get("job") == "webhook:/hooks/std:boom.*")
        assert "boom on attempt 2" in rec["error"], rec
        attempts = [r["attempt"] for r in luar.lines
                    if r.get("msg") == "boom attempt" and r.get("id") == id_]
        assert attempts == [1, 2], attempts
        t = wait_idle(luar)
        assert t["dead"] == 1 and t["succeeded"] == 1, t


def test_handler_job_names_survive_a_reload():
    app_v1 = APP.replace('{ retries = 1, backoff = 0 }', '{ retries = 3, backoff = 3 }')
    app_v2 = app_v1.replace('error("boom on attempt " .. meta.attempt)',
                            'log.info("handled", { handler = "v2", id = meta.id, '
                            'attempt = meta.attempt })')
    with start(app=app_v1) as luar:
        status, _, answer, id_ = post_signed(luar, "/hooks/std", event("boom.later"))
        assert status == 200, answer
        luar.wait_log(lambda r: r.get("msg") == "job failed, will retry" and
                      r.get("job") == "webhook:/hooks/std:boom.*")
        # The retry (3 s later) must run on the new scripts' handler of the same name.
        write_files(luar.scripts, {"main.lua": app_v2})
        mark = len(luar.lines)
        luar.send_signal(signal.SIGHUP)
        luar.wait_log(lambda r: r.get("msg") == "scripts reloaded", start=mark)
        rec = handled(luar, "v2", id_)
        assert rec["attempt"] == 2, rec


def test_backend_unavailable_is_503_and_nothing_is_acknowledged():
    def no_sigxfsz():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a full "disk" fails writes instead

    with start(preexec_fn=no_sigxfsz) as luar:
        pid = luar.wait_log(lambda r: r.get("msg") == "listening")["pid"]
        status, _, answer, id0 = post_signed(luar, "/hooks/std", event("charge.warm"))
        assert status == 200, answer
        handled(luar, "charge", id0)
        wait_idle(luar)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        body = event("charge.during_outage", amount=3)
        id_ = new_id("outage")
        hdrs = sign(SECRET, [(id_, int(time.time()), body)])[0]
        # A file size limit of one byte stands in for a full disk: every SQLite write fails.
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (1, hard))
        try:
            status, rh, answer = post(luar, "/hooks/std", body, hdrs)
        finally:
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (soft, hard))
        assert status == 503, (status, answer)
        assert rh.get("retry-after") == "5", rh
        assert "retry later" in answer["error"], answer
        rec = luar.wait_log(lambda r: r.get("msg") == "webhook rejected" and
                            r.get("status") == 503)
        assert rec["outcome"] == "rejected" and rec["event_id"] == id_, rec
        # Nothing was stored: when the disk has room again the provider's retry is a new
        # event (not a duplicate) and its handlers run once.
        status, _, answer = post(luar, "/hooks/std", body, hdrs)
        assert status == 200 and answer == {"received": True, "id": id_, "jobs": 2}, answer
        handled(luar, "charge", id_)
        wait_idle(luar)
        assert count_handled(luar, "charge", id_) == 1


SLOW_CONFIG = ('return { reload = { watch = false },\n'
               '  jobs = { lease = 1, heartbeat = 0.25, poll = 0.05, concurrency = 1 } }\n')

SLOW_APP = r'''
local webhooks = require "luar.webhooks"
local log = require "luar.log"
local time = require "luar.time"
webhooks.route("/hooks/k", { scheme = "standard", secret = os.getenv("WH_SECRET") })
webhooks.on("/hooks/k", "#", function(event, meta)
  if os.getenv("E2E_BLOCK") == "1" then
    log.info("blocking", { id = meta.id })
    time.sleep(60)
  end
  local f = assert(io.open(os.getenv("E2E_RUNS"), "a"))
  f:write(meta.id, "\n")
  f:close()
  log.info("handled", { handler = "k", id = meta.id })
end)
'''


def test_sigkill_right_after_2xx_loses_nothing():
    first = start(app=SLOW_APP, config=SLOW_CONFIG,
                  env=dict(ENV, E2E_BLOCK="1", E2E_RUNS="/dev/null"))
    try:
        runs = os.path.join(first.dir, "runs.txt")
        data_dir = first.data
        pid = first.wait_log(lambda r: r.get("msg") == "listening")["pid"]
        ids = [new_id("kill") for _ in range(300)]
        now = int(time.time())
        bodies = [event("charge.succeeded", n=i) for i in range(len(ids))]
        hdrs = sign(SECRET, [(i, now, b) for i, b in zip(ids, bodies)])
        todo = list(zip(ids, bodies, hdrs))
        acked, cond = [], threading.Condition()

        # The first handler blocks the only job slot, so acknowledged events wait in the
        # queue; eight clients keep deliveries in flight until the kill.
        def client():
            while True:
                with cond:
                    if not todo:
                        return
                    id_, b, h = todo.pop()
                try:
                    status, _, answer = post(first, "/hooks/k", b, h)
                except OSError:
                    return  # killed: only answered 2xx count
                if status == 200:
                    with cond:
                        acked.append(id_)
                        cond.notify_all()

        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        with cond:
            assert cond.wait_for(lambda: len(acked) >= 100, timeout=60), len(acked)
            os.kill(pid, signal.SIGKILL)  # right after a 2xx, with others in flight
        fd = os.pidfd_open(pid)
        try:
            assert select.select([fd], [], [], 10)[0], "luar survived SIGKILL"
        finally:
            os.close(fd)
        for t in threads:
            t.join(30)
        first.proc.wait(10)
        assert not os.path.exists(runs)
        # A new process on the same data runs every acknowledged event's handler.
        second = Luar({"main.lua": SLOW_APP}, config=SLOW_CONFIG, args=["--data", data_dir],
                      env=dict(ENV, E2E_BLOCK="0", E2E_RUNS=runs))
        with second:
            want = set(acked)
            second.wait_log(lambda r: want <= {x.get("id") for x in second.lines
                                               if x.get("msg") == "handled"}, timeout=60)
            wait_idle(second, data_dir)
        with open(runs) as f:
            done = {line.strip() for line in f if line.strip()}
        assert set(acked) <= done, sorted(set(acked) - done)[:5]
        print("  %d acknowledged before the kill, all handled after the restart" % len(acked))
    finally:
        first.close()



GUARDED_APP = r'''
local webhooks = require "luar.webhooks"
local log = require "luar.log"
webhooks.route("/hooks/limited", { scheme = "standard", secret = os.getenv("WH_SECRET"),
                                   rate = { limit = "3/h", key = "header:X-Tenant" } })
webhooks.on("/hooks/limited", "#", function(event, meta)
  log.info("handled", { handler = "limited", id = meta.id })
end)
webhooks.route("/hooks/mtls", { scheme = "standard", secret = os.getenv("WH_SECRET"),
                                require_client_cert = true })
webhooks.on("/hooks/mtls", "#", function() end)
'''


def test_route_guards_limit_and_require_a_client_certificate():
    with start(app=GUARDED_APP) as luar:
        # Exactly 3 per hour per tenant: the 4th is refused before verification or storage.
        accepted = []
        for n in range(3):
            status, _, answer, id_ = post_signed(luar, "/hooks/limited", event("a.b", n=n),
                                                 extra={"X-Tenant": "t1"})
            assert status == 200 and answer["jobs"] == 1, (n, status, answer)
            accepted.append(id_)
        status, rh, answer, id_ = post_signed(luar, "/hooks/limited", event("a.b", n=3),
                                              extra={"X-Tenant": "t1"})
        assert status == 429 and "error" in answer, (status, answer)
        retry_after = int({k.lower(): v for k, v in rh.items()}["retry-after"])
        assert 1100 <= retry_after <= 1201, retry_after  # one token of 3/h: 1200 s
        # Another tenant has its own allowance; a refused event was not stored.
        status, _, answer, other = post_signed(luar, "/hooks/limited", event("a.b", n=4),
                                               extra={"X-Tenant": "t2"})
        assert status == 200, answer
        for i in accepted + [other]:
            handled(luar, "limited", i)
        wait_idle(luar)
        assert count_handled(luar, "limited") == 4
        assert count_handled(luar, "limited", id_) == 0
        assert metric(luar, "luar_ratelimit_rejected_total", key="/hooks/limited") == 1
        # A route kept for mutually authenticated clients refuses a plain connection.
        status, _, answer, _ = post_signed(luar, "/hooks/mtls", event("a.b"))
        assert status == 403 and "certificate" in answer["error"], (status, answer)

def test_route_misuse_raises_at_load_with_file_and_line():
    cases = [
        ('webhooks.route("/h", { secret = "x" })', "option scheme is required"),
        ('webhooks.route("/h", { scheme = "nope", secret = "x" })', "nope"),
        ('webhooks.route("/h", { scheme = "standard" })', "no secret"),
        ('webhooks.route("/h", { scheme = "standard", secrets = { os.getenv("UNSET_X") } })',
         "no secret"),
        ('webhooks.route("/h", { scheme = "standard", secret = "" })', "empty"),
        ('webhooks.route("/h", { scheme = "standard", secret = "whsec_QUJD", colour = "red" })',
         "colour"),
        ('webhooks.route("/h", { scheme = "standard", secret = "whsec_QUJD", retries = -1 })',
         "retries"),
        ('webhooks.route("/h", { scheme = "standard", secret = "whsec_QUJD", max_body = "lots" })',
         "max_body"),
        ('webhooks.on("/nowhere", "#", function() end)', "no webhook route /nowhere"),
        ('webhooks.route("/h", { scheme = "standard", secret = "whsec_QUJD" })\n'
         'webhooks.on("/h", "#", function() end)\nwebhooks.on("/h", "#", function() end)',
         "already defined"),
        ('webhooks.route("/h", { scheme = "hmac", secret = "x" })', "header"),
    ]
    import tempfile
    import shutil
    for code, want in cases:
        d = tempfile.mkdtemp(prefix="luar-wh-check-")
        try:
            write_files(d, {"scripts/main.lua": 'local webhooks = require "luar.webhooks"\n' +
                            code + "\n"})
            rc, out, err = run_cli(["check", "--scripts", os.path.join(d, "scripts")], cwd=d)
            assert rc == 2, (code, rc, out, err)
            assert "main.lua:" in err and want in err, (code, err)
            assert "QUJD" not in err, err  # a secret never appears in an error
        finally:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main([test_signed_event_runs_its_handler_with_event_and_meta,
          test_bad_signatures_are_401_and_nothing_is_stored,
          test_rotated_secrets_both_verify,
          test_malformed_and_oversized_bodies,
          test_duplicate_delivery_runs_the_handlers_once,
          test_each_matching_handler_gets_one_job,
          test_event_without_handler_is_received_and_remembered,
          test_dedupe_false_runs_every_delivery_and_an_unhandled_type_needs_no_write,
          test_hmac_route_verified_with_pythons_hmac,
          test_verify_false_is_warned_about_and_reads_the_body,
          test_sync_route_answers_with_the_handler_result,
          test_failing_handler_is_retried_then_dead,
          test_handler_job_names_survive_a_reload,
          test_backend_unavailable_is_503_and_nothing_is_acknowledged,
          test_sigkill_right_after_2xx_loses_nothing,
          test_route_guards_limit_and_require_a_client_certificate,
          test_route_misuse_raises_at_load_with_file_and_line])
