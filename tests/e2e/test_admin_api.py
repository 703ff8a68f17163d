"""The admin API (docs/ops/admin.md) end to end against the real binary: every endpoint
refuses a missing or wrong token (401); bad input is a 400 naming the parameter; unknown
jobs are 404; each repair (retry, delete, purge, bulk dead-letter replay, replay with edited
args, reload) shows in the queue afterwards and as a record in the audit log, whose chain
`luar audit verify` accepts. Jobs fail "by design" until the test heals their upstream."""
import json
import os
import shutil
import tempfile
import time
import urllib.parse

import luar_e2e
from luar_e2e import Luar, main, run_cli, wait_until

TOKEN = "e2e-admin-api-0d9c8b7a6f5e4d3c2b1a"
AUTH = {"Authorization": "Bearer " + TOKEN}

CONFIG = ('return { reload = { watch = false }, shutdown = { grace = 1 },\n'
          '  admin = { token = "%s" },\n'
          '  webhooks = { deliver_allow_private = true, deliver_schedule = { 0 } },\n'
          '  jobs = { poll = 0.1 } }\n' % TOKEN)

APP = r'''
local http = require "luar.http"
local jobs = require "luar.jobs"
local log = require "luar.log"
local time = require "luar.time"
local webhooks = require "luar.webhooks"

local healthy = false

-- Fails until the test heals the upstream (POST /heal), or when args ask it to.
jobs.define("sync", { retries = 0 }, function(args, job)
  log.info("sync ran", { job_id = job.id, n = args.n })
  if args.fail then error("upstream " .. args.fail) end
  if not healthy and not args.ok then error("upstream down: HTTP 502 from api.example") end
  return { n = args.n, ok = true }
end)
jobs.define("other", { retries = 0, queue = "mail" }, function(args)
  error("smtp refused: 554")
end)
jobs.define("held", { retries = 0 }, function(args)
  log.info("held started")
  time.sleep(60)
end)
jobs.define("ticker", { retries = 0 }, function(args, job)
  log.info("ticker ran", { job_id = job.id })
end)
jobs.every("tick", 1, "ticker", { from = "every" })
jobs.cron("nightly", "0 3 * * *", "ticker", { from = "cron" }, { tz = "Europe/London" })

http.route("POST", "/enqueue", function(req)
  local b = req:json()
  local ids = {}
  for i = 1, (b.n or 1) do
    local id = assert(jobs.enqueue(b.name, b.args or { n = i }, { queue = b.queue,
                                   delay = b.delay }))
    ids[#ids + 1] = id
  end
  return { json = { ids = ids } }
end)
http.route("POST", "/heal", function() healthy = true return { status = 204 } end)
http.route("POST", "/deliver", function(req)
  local id, err = webhooks.deliver(req:json())
  assert(id, err and err.message)
  return { json = { id = id } }
end)
webhooks.route("/hooks/in", { scheme = "standard", secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" })
webhooks.on("/hooks/in", "#", function(event) end)
'''

ENDPOINTS = [
    ("GET", "/admin/api/stats"), ("GET", "/admin/api/jobs"),
    ("GET", "/admin/api/jobs/01ABCDEF"), ("DELETE", "/admin/api/jobs/01ABCDEF"),
    ("POST", "/admin/api/jobs/01ABCDEF/retry"), ("POST", "/admin/api/jobs/01ABCDEF/replay"),
    ("POST", "/admin/api/jobs/purge"), ("POST", "/admin/api/dead/replay"),
    ("GET", "/admin/api/schedules"), ("GET", "/admin/api/webhooks"),
    ("GET", "/admin/api/deliveries"), ("POST", "/admin/api/reload"),
    ("GET", "/admin/api/plugins"),
]


def api(luar, method, path, body=None, token=TOKEN, **query):
    """One admin call; returns (status, parsed JSON body, headers)."""
    if query:
        path += "?" + urllib.parse.urlencode(query)
    headers = {"Authorization": "Bearer " + token} if token else {}
    data = None
    if body is not None:
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        headers["Content-Type"] = "application/json"
    status, h, raw = luar.request(method, path, body=data, headers=headers)
    assert h.get("content-type") == "application/json", (path, h)
    return status, json.loads(raw), h


def ok(luar, method, path, body=None, **query):
    status, doc, _ = api(luar, method, path, body, **query)
    assert status == 200, (method, path, query, status, doc)
    return doc


def enqueue(luar, name, n=1, **kw):
    kw.update(name=name, n=n)
    status, _, body = luar.request("POST", "/enqueue", body=json.dumps(kw))
    assert status == 200, body
    return json.loads(body)["ids"]


def wait_state(luar, jid, state):
    return wait_until(lambda: (lambda d: d if d.get("state") == state else None)(
        api(luar, "GET", "/admin/api/jobs/" + jid)[1]), "job %s %s" % (jid, state))


def audit_records(luar):
    with open(os.path.join(luar.data, "audit.log")) as f:
        return [json.loads(line) for line in f]


def audit_verify(luar):
    """`luar audit verify` on the log; returns its output line."""
    rc, out, err = run_cli(["audit", "verify", os.path.join(luar.data, "audit.log")],
                           cwd=luar.dir)
    assert rc == 0 and ": ok, " in out, (rc, out, err)
    return out


def test_every_endpoint_needs_the_token():
    with Luar({"main.lua": APP}, config=CONFIG) as luar:
        for method, path in ENDPOINTS:
            for token in (None, "wrong", TOKEN[:-1]):
                status, doc, h = api(luar, method, path, token=token)
                assert status == 401, (method, path, token, status)
                assert doc == {"error": "missing or invalid admin token"}
                assert h["www-authenticate"].startswith("Bearer")
            # With it: never 401 (what each answers is checked below).
            assert api(luar, method, path)[0] != 401
        # The wrong method on a known path: 405 naming the allowed ones.
        status, doc, h = api(luar, "GET", "/admin/api/reload")
        assert status == 405 and h["allow"] == "POST", (status, h)
        status, doc, h = api(luar, "PUT", "/admin/api/jobs/x")
        assert status == 405 and h["allow"] == "GET, DELETE", (status, h)
        assert not os.path.exists(os.path.join(luar.data, "audit.log")) or all(
            r["who"] == "admin-api" for r in audit_records(luar))


def test_jobs_by_state_with_filters_paging_and_detail():
    with Luar({"main.lua": APP}, config=CONFIG) as luar:
        t0 = time.time()
        ids = enqueue(luar, "sync", 5)
        mail = enqueue(luar, "other", 2)
        for jid in ids + mail:
            wait_state(luar, jid, "dead")
        later = enqueue(luar, "sync", 1, delay=3600)[0]
        doc = ok(luar, "GET", "/admin/api/jobs", state="dead")
        assert sorted(j["id"] for j in doc["jobs"]) == sorted(ids + mail), doc
        assert doc["next_cursor"] is None
        # Filters: queue, name, error text, time range (when it died), any state.
        assert {j["id"] for j in ok(luar, "GET", "/admin/api/jobs", state="dead",
                                    queue="mail")["jobs"]} == set(mail)
        assert {j["id"] for j in ok(luar, "GET", "/admin/api/jobs", name="sync",
                                    error="HTTP 502")["jobs"]} == set(ids)
        assert {j["id"] for j in ok(luar, "GET", "/admin/api/jobs", error="554")["jobs"]} \
            == set(mail)
        assert ok(luar, "GET", "/admin/api/jobs", state="dead", until=t0 - 60)["jobs"] == []
        iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 - 1))
        assert len(ok(luar, "GET", "/admin/api/jobs", state="dead", since=iso)["jobs"]) == 7
        assert [j["id"] for j in ok(luar, "GET", "/admin/api/jobs", state="scheduled")["jobs"]] \
            == [later]
        # Paging: newest first, a cursor until the end, every job once.
        seen, cursor = [], None
        for _ in range(10):
            q = {"state": "dead", "limit": 3}
            if cursor:
                q["cursor"] = cursor
            page = ok(luar, "GET", "/admin/api/jobs", **q)
            assert len(page["jobs"]) <= 3
            seen += [j["id"] for j in page["jobs"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert sorted(seen) == sorted(ids + mail) and len(seen) == 7
        assert seen == sorted(seen, reverse=True)
        # One job: args, attempts, error, traceback.
        j = ok(luar, "GET", "/admin/api/jobs/" + ids[0])
        assert j["args"] == {"n": 1} and j["state"] == "dead", j
        assert j["attempt"] == 1 and j["max_attempts"] == 1, j
        assert "upstream down: HTTP 502" in j["last_error"], j
        assert "main.lua" in j["traceback"], j
        assert j["result"] is None and j["finished_at"] > t0 - 1
        # Unknown ids: 404 naming the job.
        status, doc, _ = api(luar, "GET", "/admin/api/jobs/01NOSUCHJOB")
        assert status == 404 and doc == {"error": "job 01NOSUCHJOB not found"}, doc
        # Bad input: 400 naming the parameter.
        for query, param in (({"state": "deadish"}, "state"), ({"limit": "0"}, "limit"),
                             ({"limit": "x"}, "limit"), ({"limit": "501"}, "limit"),
                             ({"since": "yesterday"}, "since"), ({"until": "2026-13-01"}, "until"),
                             ({"since": "200", "until": "100"}, "until"),
                             ({"error": "x" * 2000}, "error")):
            status, doc, _ = api(luar, "GET", "/admin/api/jobs", **query)
            assert status == 400 and doc["error"].startswith(param + ":"), (query, doc)
        # Stats agree.
        stats = ok(luar, "GET", "/admin/api/stats")
        assert stats["totals"]["dead"] == 7 and stats["queues"]["mail"]["dead"] == 2, stats


def test_retry_delete_purge_show_in_the_queue_and_the_audit_log():
    with Luar({"main.lua": APP}, config=CONFIG) as luar:
        ids = enqueue(luar, "sync", 3)
        for jid in ids:
            wait_state(luar, jid, "dead")
        # Retry one: still failing upstream, so it dies again; heal, retry, it succeeds.
        assert ok(luar, "POST", "/admin/api/jobs/%s/retry" % ids[0]) == \
            {"retried": 1, "id": ids[0]}
        luar.wait_log(lambda r: r.get("msg") == "job failed, now dead" and
                      r.get("job_id") == ids[0] and r.get("attempt") == 1 and
                      luar.count_logs(lambda x: x.get("job_id") == ids[0] and
                                      x.get("msg") == "sync ran") == 2)
        wait_state(luar, ids[0], "dead")
        assert luar.request("POST", "/heal")[0] == 204
        ok(luar, "POST", "/admin/api/jobs/%s/retry" % ids[0])
        done = wait_state(luar, ids[0], "succeeded")
        assert done["result"] == {"n": 1, "ok": True}, done
        # A running job cannot be retried (409); unknown ids are 404.
        held = enqueue(luar, "held")[0]
        luar.wait_log(lambda r: r.get("msg") == "held started")
        status, doc, _ = api(luar, "POST", "/admin/api/jobs/%s/retry" % held)
        assert status == 409 and "running" in doc["error"], doc
        status, doc, _ = api(luar, "POST", "/admin/api/jobs/01NOSUCHJOB/retry")
        assert status == 404 and doc == {"error": "job 01NOSUCHJOB not found"}
        # Delete one.
        assert ok(luar, "DELETE", "/admin/api/jobs/" + ids[1]) == {"deleted": 1, "id": ids[1]}
        assert api(luar, "GET", "/admin/api/jobs/" + ids[1])[0] == 404
        assert api(luar, "DELETE", "/admin/api/jobs/" + ids[1])[0] == 404
        # Purge by state (parameters in the body or the query): needs a state, not running.
        for body, query in (({}, {}), ({"state": "running"}, {}), ({}, {"state": "any"}),
                            ({"state": ["dead"]}, {})):
            status, doc, _ = api(luar, "POST", "/admin/api/jobs/purge", body, **query)
            assert status == 400 and doc["error"].startswith("state:"), doc
        status, doc, _ = api(luar, "POST", "/admin/api/jobs/purge", "{not json")
        assert status == 400 and doc["error"].startswith("body:"), doc
        status, doc, _ = api(luar, "POST", "/admin/api/jobs/purge", "[1]")
        assert status == 400 and doc["error"].startswith("body:"), doc
        assert ok(luar, "POST", "/admin/api/jobs/purge", {"state": "dead", "queue": "nope"}) \
            == {"purged": 0, "batches": 1}
        assert ok(luar, "POST", "/admin/api/jobs/purge", {"state": "dead"})["purged"] == 1
        # (The schedule's ticker jobs succeed every second meanwhile: purge sync's only.)
        doc = ok(luar, "POST", "/admin/api/jobs/purge", state="succeeded", name="sync")
        assert doc == {"purged": 1, "batches": 1}, doc
        assert ok(luar, "GET", "/admin/api/jobs", name="sync")["jobs"] == []
        assert ok(luar, "GET", "/admin/api/stats")["totals"]["dead"] == 0

        recs = audit_records(luar)
        actions = [(r["action"], r.get("job"), r.get("count")) for r in recs]
        assert actions == [("jobs.retry", ids[0], 1), ("jobs.retry", ids[0], 1),
                           ("jobs.delete", ids[1], 1), ("jobs.purge", None, 0),
                           ("jobs.purge", None, 1), ("jobs.purge", None, 1)], actions
        for r in recs:
            assert r["who"] == "admin-api" and r["remote"] == "127.0.0.1", r
            assert len(r["request_id"]) > 0
        assert recs[3]["filter"] == {"state": "dead", "queue": "nope"}, recs[3]
        assert recs[5]["filter"] == {"state": "succeeded", "name": "sync"}, recs[5]
        assert ": ok, 6 records, head " in audit_verify(luar)
        # A record edited afterwards breaks the chain where it happened.
        path = os.path.join(luar.data, "audit.log")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace('"count":1', '"count":9', 1))
        rc, out, err = run_cli(["audit", "verify", path], cwd=luar.dir)
        assert rc != 0 and ":2:" in err, (rc, out, err)


def test_dead_letter_replay_in_bulk_by_filter():
    with Luar({"main.lua": APP}, config=CONFIG) as luar:
        t0 = time.time()
        a = enqueue(luar, "sync", 4)
        b = enqueue(luar, "sync", 2, args={"fail": "timeout"})
        m = enqueue(luar, "other", 2)
        for jid in a + b + m:
            wait_state(luar, jid, "dead")
        assert luar.request("POST", "/heal")[0] == 204
        # Nothing matches: nothing replayed.
        assert ok(luar, "POST", "/admin/api/dead/replay", {"name": "sync", "until": t0 - 60}) \
            == {"replayed": 0, "batches": 1, "max_reached": False}
        # By error text, at most 3: three of the four oldest 502s.
        doc = ok(luar, "POST", "/admin/api/dead/replay", {"error": "HTTP 502", "max": 3})
        assert doc == {"replayed": 3, "batches": 1, "max_reached": True}, doc
        for jid in a[:3]:
            wait_state(luar, jid, "succeeded")
        assert api(luar, "GET", "/admin/api/jobs/" + a[3])[1]["state"] == "dead"
        # By name and queue: the rest of sync's (one 502, two timeouts, which die again).
        doc = ok(luar, "POST", "/admin/api/dead/replay", name="sync", queue="default")
        assert doc["replayed"] == 3 and doc["max_reached"] is False, doc
        wait_state(luar, a[3], "succeeded")
        for jid in b:
            luar.wait_log(lambda r, jid=jid: r.get("msg") == "job failed, now dead" and
                          r.get("job_id") == jid and
                          luar.count_logs(lambda x: x.get("job_id") == jid and
                                          x.get("msg") == "sync ran") == 2)
            wait_state(luar, jid, "dead")
        mail = ok(luar, "GET", "/admin/api/jobs", queue="mail", state="dead")["jobs"]
        assert {j["id"] for j in mail} == set(m)
        # Bad input names the parameter.
        for body, param in (({"max": 0}, "max"), ({"state": "retrying"}, "state"),
                            ({"since": "soon"}, "since"), ({"max": "lots"}, "max"),
                            # Never widened to "every dead job" by a member of the wrong kind:
                            ({"error": {"text": "502"}}, "error"), ({"name": ["sync"]}, "name"),
                            ({"until": [1]}, "until"), ({"error": "x" * 1500}, "error")):
            status, doc, _ = api(luar, "POST", "/admin/api/dead/replay", body)
            assert status == 400 and doc["error"].startswith(param + ":"), (body, doc)
        recs = [r for r in audit_records(luar) if r["action"] == "jobs.replay"]
        assert [r["count"] for r in recs] == [0, 3, 3], recs
        assert recs[1]["filter"]["error"] == "HTTP 502" and recs[1]["max"] == 3, recs[1]
        assert recs[2]["filter"]["name"] == "sync" and recs[2]["filter"]["state"] == "dead"
        audit_verify(luar)


def test_replay_one_dead_job_with_edited_args():
    with Luar({"main.lua": APP}, config=CONFIG) as luar:
        dead = enqueue(luar, "sync", 1, args={"n": 7})[0]
        wait_state(luar, dead, "dead")
        # Bad args: 400 naming args; not dead: 409; unknown: 404.
        for body in ({"args": 5}, {"args": "x"}):
            status, doc, _ = api(luar, "POST", "/admin/api/jobs/%s/replay" % dead, body)
            assert status == 400 and doc["error"].startswith("args:"), doc
        queued = enqueue(luar, "sync", 1, delay=3600)[0]
        status, doc, _ = api(luar, "POST", "/admin/api/jobs/%s/replay" % queued, {"args": {}})
        assert status == 409 and "scheduled" in doc["error"], doc
        assert api(luar, "POST", "/admin/api/jobs/01NOSUCHJOB/replay", {"args": {}})[0] == 404
        # The new job: same name and queue, the given args; it succeeds; the dead one is gone.
        doc = ok(luar, "POST", "/admin/api/jobs/%s/replay" % dead, {"args": {"n": 8, "ok": True}})
        new = doc["id"]
        assert doc == {"replayed": 1, "id": new, "replayed_from": dead} and new != dead
        job = wait_state(luar, new, "succeeded")
        assert job["args"] == {"n": 8, "ok": True} and job["name"] == "sync", job
        assert job["queue"] == "default" and job["result"] == {"n": 8, "ok": True}
        assert api(luar, "GET", "/admin/api/jobs/" + dead)[0] == 404
        assert api(luar, "POST", "/admin/api/jobs/%s/replay" % dead, {"args": {}})[0] == 404
        rec = [r for r in audit_records(luar) if r["action"] == "jobs.replay_edited"]
        assert len(rec) == 1 and rec[0]["job"] == dead and rec[0]["new_job"] == new, rec
        audit_verify(luar)


def test_schedules_webhooks_and_deliveries():
    with Luar({"main.lua": APP}, config=CONFIG) as luar:
        tick = luar.wait_log(lambda r: r.get("msg") == "ticker ran")
        wait_state(luar, tick["job_id"], "succeeded")
        doc = ok(luar, "GET", "/admin/api/schedules")
        by = {s["name"]: s for s in doc["schedules"]}
        assert set(by) == {"tick", "nightly"}, doc
        n = by["nightly"]
        assert n["expr"] == "0 3 * * *" and n["tz"] == "Europe/London" and n["job"] == "ticker"
        assert len(n["next"]) == 3 and all(t[11:19] == "03:00:00" for t in n["next"]), n
        assert n["next_at"] > time.time() and n["args"] == {"from": "cron"}, n
        assert n["last"] is None, n  # the 03:00 tick has not fired in this test
        t = by["tick"]
        assert t["every"] == 1 and t["expr"] is None and len(t["next"]) == 3, t
        assert t["last"] is not None and t["last"]["state"] in ("succeeded", "running",
                                                                 "queued"), t

        # Inbound: a request with a bad signature is recorded with its outcome, no body.
        status, _, _ = luar.request("POST", "/hooks/in", body=b'{"type":"x","secret":"s3"}',
                                    headers={"webhook-id": "msg_1", "webhook-timestamp":
                                             str(int(time.time())),
                                             "webhook-signature": "v1,AAAA"})
        assert status == 401, status
        doc = ok(luar, "GET", "/admin/api/webhooks", limit=5)
        w = doc["webhooks"][0]
        assert w["route"] == "/hooks/in" and w["outcome"] == "invalid_signature", w
        assert w["status"] == 401 and "s3" not in json.dumps(doc), doc
        assert doc["pid"] == luar.proc.pid

        # Outbound: an attempt to a port nobody listens on fails, recorded without secret.
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        secret = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
        st, _, body = luar.request("POST", "/deliver", body=json.dumps({
            "url": "http://127.0.0.1:%d/hook?key=topsecret" % port, "secret": secret,
            "type": "invoice.paid", "payload": {"amount": 1}}))
        assert st == 200, body
        got = wait_until(lambda: ok(luar, "GET", "/admin/api/deliveries")["deliveries"],
                         "a delivery attempt")
        d = got[0]
        assert d["outcome"] == "dead" and d["status"] is None and d["error"], d
        assert d["attempt"] == 1 and d["job_id"], d
        text = json.dumps(got)
        assert secret not in text and "topsecret" not in text and "amount" not in text, text
        # Bad input names the parameter.
        for path in ("/admin/api/webhooks", "/admin/api/deliveries"):
            status, doc, _ = api(luar, "GET", path, limit="0")
            assert status == 400 and doc["error"].startswith("limit:"), doc


def test_reload_reports_load_errors_and_is_audited():
    with Luar({"main.lua": APP}, config=CONFIG) as luar:
        assert ok(luar, "POST", "/admin/api/reload") == {"ok": True, "generation": 2}
        with open(os.path.join(luar.scripts, "main.lua"), "a") as f:
            f.write("\nlocal broken = (\n")
        status, doc, _ = api(luar, "POST", "/admin/api/reload")
        assert status == 422, (status, doc)
        assert "previous ones keep serving" in doc["error"], doc
        assert "main.lua:" in doc["load_errors"] and doc["generation"] == 2, doc
        # The old scripts still serve.
        assert luar.request("POST", "/heal")[0] == 204
        assert ok(luar, "GET", "/admin/api/stats")["scripts_generation"] == 2
        recs = [r for r in audit_records(luar) if r["action"] == "reload"]
        assert [r["outcome"] for r in recs] == ["ok", "failed"], recs
        assert "main.lua:" in recs[1]["error"]
        audit_verify(luar)


def test_reload_under_a_supervisor_reaches_every_worker():
    from luar_e2e import free_port
    port = free_port()
    with Luar({"main.lua": APP}, config=CONFIG, workers=2,
              listen="127.0.0.1:%d" % port, wait_listening=False) as luar:
        for w in (1, 2):  # both ready: a SIGHUP before its handler would end a worker
            luar.wait_log(lambda r, w=w: r.get("msg") == "listening" and r.get("worker") == w)
        luar.port = port
        doc = ok(luar, "POST", "/admin/api/reload")
        assert doc["ok"] is True and doc["generation"] == 2, doc
        with open(os.path.join(luar.scripts, "main.lua"), "a") as f:
            f.write("\nerror('refused on purpose')\n")
        status, doc, _ = api(luar, "POST", "/admin/api/reload")
        assert status == 422 and "refused on purpose" in doc["load_errors"], doc


def test_redis_backend_filters_and_503_while_it_is_down():
    from redis_server import RedisServer
    with RedisServer() as redis:
        with Luar({"main.lua": APP}, config=CONFIG, args=["--queue", redis.url()]) as luar:
            a = enqueue(luar, "sync", 3)
            b = enqueue(luar, "sync", 1, args={"fail": "timeout"})
            for jid in a + b:
                wait_state(luar, jid, "dead")
            assert {j["id"] for j in ok(luar, "GET", "/admin/api/jobs", state="dead",
                                        error="HTTP 502")["jobs"]} == set(a)
            assert luar.request("POST", "/heal")[0] == 204
            doc = ok(luar, "POST", "/admin/api/dead/replay", {"error": "502", "max": 2})
            assert doc == {"replayed": 2, "batches": 1, "max_reached": True}, doc
            for jid in a[:2]:
                wait_state(luar, jid, "succeeded")
            assert ok(luar, "POST", "/admin/api/jobs/purge", state="dead",
                      error="timeout")["purged"] == 1
            redis.kill()
            for method, path, body in (("GET", "/admin/api/stats", None),
                                       ("GET", "/admin/api/jobs", None),
                                       ("GET", "/admin/api/jobs/" + a[2], None),
                                       ("POST", "/admin/api/dead/replay", {})):
                status, doc, _ = api(luar, method, path, body)
                assert status == 503, (path, status, doc)
                assert doc["error"].startswith("the queue backend does not answer"), doc
            redis.start()
            wait_until(lambda: api(luar, "GET", "/admin/api/stats")[0] == 200, "redis back")


def test_plugins_loaded_and_refused():
    """The plugins this process found: the build's provider plugins, loaded; and a file
    that is no plugin, refused with its reason."""
    build_plugins = os.path.join(os.path.dirname(os.path.abspath(
        shutil.which(luar_e2e.BIN) or luar_e2e.BIN)), "plugins")
    extra = tempfile.mkdtemp(prefix="luar-admin-plugins-")
    with open(os.path.join(extra, "notaplugin.so"), "w") as f:
        f.write("not an ELF file\n")
    cfg = CONFIG.replace("jobs = { poll = 0.1 } }",
                         "jobs = { poll = 0.1 }, plugins = { dir = { %s, %s } } }"
                         % (json.dumps(build_plugins), json.dumps(extra)))
    with Luar({"main.lua": APP}, config=cfg) as luar:
        doc = ok(luar, "GET", "/admin/api/plugins")
        by_name = {p["name"]: p for p in doc["plugins"] if p["name"]}
        for name in ("stripe", "sendgrid", "github", "slack", "shopify", "s3", "sentry"):
            p = by_name[name]
            assert p["loaded"] is True and p["refused"] is None and p["abi"] == 1, p
            assert p["path"].endswith("/%s.so" % name) and p["version"], p
        bad = [p for p in doc["plugins"] if p["path"].endswith("notaplugin.so")]
        assert len(bad) == 1 and bad[0]["loaded"] is False and bad[0]["refused"], doc
        assert doc["pid"] > 0


if __name__ == "__main__":
    main([test_every_endpoint_needs_the_token,
          test_plugins_loaded_and_refused,
          test_jobs_by_state_with_filters_paging_and_detail,
          test_retry_delete_purge_show_in_the_queue_and_the_audit_log,
          test_dead_letter_replay_in_bulk_by_filter,
          test_replay_one_dead_job_with_edited_args,
          test_schedules_webhooks_and_deliveries,
          test_reload_reports_load_errors_and_is_audited,
          test_reload_under_a_supervisor_reaches_every_worker,
          test_redis_backend_filters_and_503_while_it_is_down])
