"""The dashboard (/admin/) in a real browser: Debian's chromium driven by playwright-core
(tests/e2e/dashboard_browser.js). A job fails by design until the test heals its upstream;
the browser signs in with the token (keyboard only), sees the dead job, retries it with its
Retry button and watches it succeed. A second dead job carries hostile arguments and error
text, which must show as text. Afterwards the queue and the audit log agree with what the
browser did (a retry, a bulk replay by error text, a replay with edited args). Screenshots are saved under <build>/artifacts/dashboard/ (LUAR_ARTIFACTS to
put them elsewhere)."""
import json
import os
import subprocess
import urllib.parse

from luar_e2e import DEFAULT_TIMEOUT, Luar, main, run_cli, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
TOKEN = "e2e-dashboard-4b1d2c3e5f6a7b8c9d0e"

CONFIG = ('return { reload = { watch = false }, shutdown = { grace = 1 },\n'
          '  admin = { token = "%s" }, jobs = { poll = 0.1 } }\n' % TOKEN)

APP = r'''
local http = require "luar.http"
local jobs = require "luar.jobs"

local healthy = false

jobs.define("sync", { retries = 0 }, function(args)
  if args.fail then error(args.fail) end
  if not healthy then error("upstream down: HTTP 502 from api.example") end
  return { ok = true, n = args.n }
end)
jobs.define("report", { retries = 0 }, function() end)
jobs.cron("nightly-report", "30 2 * * *", "report", nil, { tz = "UTC" })

http.route("POST", "/enqueue", function(req)
  local id = assert(jobs.enqueue("sync", req:json()))
  return { json = { id = id } }
end)
http.route("POST", "/heal", function() healthy = true return { status = 204 } end)
http.route("POST", "/call-out", function()
  http.get("http://127.0.0.1:1/nothing", { timeout = 1, retry = { attempts = 1 } })
  return { status = 204 }
end)
'''

HOSTILE = {"fail": "<b>bold</b> <img src=x onerror=alert(1)>",
           "html": "<script>alert('args')</script>"}


def artifacts_dir():
    root = os.environ.get("LUAR_ARTIFACTS") or os.path.join(
        os.path.dirname(os.path.abspath(os.environ.get("LUAR_BIN", "luar"))), "artifacts")
    path = os.path.join(root, "dashboard")
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".png"):
            os.remove(os.path.join(path, name))
    return path


def api(luar, path):
    status, _, body = luar.request("GET", path, headers={"Authorization": "Bearer " + TOKEN})
    assert status == 200, (path, status, body)
    return json.loads(body)


def wait_state(luar, jid, state):
    return wait_until(lambda: api(luar, "/admin/api/jobs/" + jid)["state"] == state,
                      "job %s %s" % (jid, state))


def enqueue(luar, args):
    status, _, body = luar.request("POST", "/enqueue", body=json.dumps(args))
    assert status == 200, body
    return json.loads(body)["id"]


def test_sign_in_see_a_dead_job_retry_it_and_see_it_succeed():
    assert os.path.isdir(os.path.join(HERE, "node_modules", "playwright-core")), \
        "playwright-core missing: npm ci --prefix tests/e2e"
    out_dir = artifacts_dir()
    with Luar({"main.lua": APP}, config=CONFIG) as luar:
        jid = enqueue(luar, {"n": 1})
        hostile = enqueue(luar, HOSTILE)
        wait_state(luar, jid, "dead")
        wait_state(luar, hostile, "dead")
        assert luar.request("POST", "/call-out")[0] == 204  # a breaker to show
        assert luar.request("POST", "/heal")[0] == 204      # the next attempt succeeds
        base = "http://127.0.0.1:%d" % luar.port
        p = subprocess.run(["node", os.path.join(HERE, "dashboard_browser.js"), base, TOKEN,
                            jid, hostile, out_dir],
                           cwd=HERE, capture_output=True, timeout=DEFAULT_TIMEOUT * 6)
        steps = [json.loads(line) for line in p.stdout.decode().splitlines()
                 if line.startswith("{")]
        assert p.returncode == 0 and steps[-1]["step"] == "passed", \
            (p.returncode, steps, p.stderr.decode()[-3000:])
        names = [s["step"] for s in steps]
        for want in ("wrong token refused", "signed in", "dead job listed", "retried",
                     "succeeded", "bulk replayed", "replayed with edited args", "signed out"):
            assert want in names, names
        shots = sorted(f for f in os.listdir(out_dir) if f.endswith(".png"))
        assert len(shots) == 11 and all(os.path.getsize(os.path.join(out_dir, f)) > 5000
                                        for f in shots), shots
        # What the browser did is in the queue and in the audit log.
        job = api(luar, "/admin/api/jobs/" + jid)
        assert job["state"] == "succeeded" and job["result"] == {"ok": True, "n": 1}, job
        # The bulk replay ran the hostile job again (it died again); then the replay with
        # edited args made a new job, which succeeded, and removed the dead one.
        new = next(s["id"] for s in steps if s["step"] == "replayed with edited args")
        wait_state(luar, new, "succeeded")
        job = api(luar, "/admin/api/jobs/" + new)
        assert job["args"] == {"n": 5} and job["name"] == "sync", job
        status, _, _ = luar.request("GET", "/admin/api/jobs/" + hostile,
                                    headers={"Authorization": "Bearer " + TOKEN})
        assert status == 404
        with open(os.path.join(luar.data, "audit.log")) as f:
            recs = [json.loads(line) for line in f]
        assert [(r["who"], r["action"]) for r in recs] == \
            [("admin-api", "jobs.retry"), ("admin-api", "jobs.replay"),
             ("admin-api", "jobs.replay_edited")], recs
        assert recs[0]["job"] == jid and recs[1]["count"] == 1, recs
        assert recs[1]["filter"]["error"] == "bold" and recs[1]["filter"]["state"] == "dead"
        assert recs[2]["job"] == hostile and recs[2]["new_job"] == new, recs[2]
        rc, out, err = run_cli(["audit", "verify", os.path.join(luar.data, "audit.log")])
        assert rc == 0, (out, err)
        # The token never reached a log line.
        with luar.cond:
            assert TOKEN not in json.dumps(luar.lines + luar.stderr_lines)


if __name__ == "__main__":
    main([test_sign_in_see_a_dead_job_retry_it_and_see_it_succeed])
