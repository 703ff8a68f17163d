"""The github plugin (plugins/github): its REST client against a stand-in of GitHub's API on
127.0.0.1 (github_standin.py: User-Agent required, token, API version, Link pagination,
primary and secondary rate limits, error shapes), and its `github` webhook scheme with
signatures made by @octokit/webhooks-methods (tests/e2e/node_modules), GitHub's own
library; `luar webhook sign` output is checked with its `verify`."""
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
import uuid

from github_standin import GitHubStandIn
from luar_e2e import BIN, Luar, main, run_cli
from plugin_e2e import CONFIG, run_lua as run_plain, run_node, write_config

TOKEN = "ghp_" + "T0k3n" * 7 + "x"

PRELUDE = r"""
local json = require "luar.json"
local github = require "luar.github"
local function out(t) print(json.encode(t)) end
local function outcome(data, res)
  if data then return { data = data, status = res.status } end
  local err = res
  return { kind = err.kind, message = err.message, status = err.status, text = tostring(err),
           retry_after = err.retry_after, documentation_url = err.documentation_url,
           errors = err.errors, request_id = err.request_id }
end
"""


def run_lua(src, timeout=60):
    """Runs PRELUDE + src with `luar run`; returns the JSON values it printed, one a line."""
    return run_plain(PRELUDE + src, timeout=timeout)


def client(gh, extra=""):
    return "local gh = github.client{ token = %s, base_url = %s%s }\n" % (
        json.dumps(TOKEN), json.dumps(gh.base_url), extra)


def test_headers_and_generic_calls():
    with GitHubStandIn(TOKEN) as gh:
        src = client(gh) + """
out(outcome(gh:get("user")))
out(outcome(gh:post("repos/octo/hello/issues", { title = "Bug", labels = { "bug" } })))
out(outcome(gh:patch("/repos/octo/hello/issues/1", { state = "closed" })))
out(outcome(gh:put("repos/octo/hello/issues/1/lock", { lock_reason = "resolved" })))
out(outcome(gh:delete("repos/octo/hello/issues/1/lock")))
out(outcome(gh:request("GET", "repos/octo/hello/issues", { query = { per_page = 1 } })))
local anon = github.client{ base_url = %s }
out(outcome(anon:get("user")))
local old = github.client{ token = %s, base_url = %s, api_version = "2020-01-01" }
out(outcome(old:get("user")))
""" % (json.dumps(gh.base_url), json.dumps(TOKEN), json.dumps(gh.base_url))
        user, created, patched, locked, unlocked, one, anon, old = run_lua(src)
        reqs = gh.requests
    assert user == {"data": {"login": "octocat", "id": 1}, "status": 200}, user
    for r in reqs[:6]:
        h = r["headers"]
        assert h["authorization"] == "Bearer " + TOKEN, h
        assert h["accept"] == "application/vnd.github+json", h
        assert h["x-github-api-version"] == "2022-11-28", h
        assert h["user-agent"].startswith("luar-github/"), h
    assert created["status"] == 201 and created["data"]["labels"] == ["bug"], created
    assert json.loads(reqs[1]["body"]) == {"title": "Bug", "labels": ["bug"]}
    assert reqs[1]["headers"]["content-type"].startswith("application/json")
    assert patched["data"]["state"] == "closed" and reqs[2]["method"] == "PATCH"
    assert locked == {"data": True, "status": 204} and reqs[3]["method"] == "PUT", locked
    assert unlocked == {"data": True, "status": 204} and reqs[4]["method"] == "DELETE"
    assert one["status"] == 200 and len(one["data"]) == 1 and reqs[5]["query"] == {"per_page": "1"}
    assert "authorization" not in reqs[6]["headers"]
    assert anon["kind"] == "http" and anon["status"] == 401, anon
    assert "Requires authentication" in anon["message"], anon
    assert old["status"] == 400 and "X-GitHub-Api-Version" in old["message"], old


def test_user_agent_is_always_sent_and_configurable():
    with GitHubStandIn(TOKEN) as gh:
        src = client(gh, ', user_agent = "acme-bot/2.0"') + 'out(outcome(gh:get("user")))\n'
        (r,) = run_lua(src)
        assert r["status"] == 200, r
        assert gh.requests[0]["headers"]["user-agent"] == "acme-bot/2.0"


def test_errors_carry_githubs_shape():
    with GitHubStandIn(TOKEN) as gh:
        src = client(gh) + """
out(outcome(gh:get("repos/octo/missing")))
out(outcome(gh:post("repos/octo/hello/issues", { body = "no title" })))
local bad = github.client{ token = "ghp_wrong", base_url = %s }
out(outcome(bad:get("user")))
""" % json.dumps(gh.base_url)
        missing, invalid, bad = run_lua(src)
    assert missing["kind"] == "http" and missing["status"] == 404, missing
    assert missing["text"].startswith("http: github: GET /repos/octo/missing answered 404: "
                                      "Not Found"), missing
    assert missing["documentation_url"].endswith("#get-a-repository"), missing
    assert missing["request_id"].startswith("C0DE:"), missing
    assert invalid["status"] == 422 and "Validation Failed" in invalid["message"], invalid
    assert invalid["errors"] == [{"resource": "Issue", "code": "missing_field",
                                  "field": "title"}], invalid
    assert "title: missing_field" in invalid["message"], invalid
    assert bad["status"] == 401 and "Bad credentials" in bad["message"], bad
    assert "ghp_wrong" not in bad["text"]


def test_retry_false_turns_luar_http_retries_off():
    # /repos/octo/down answers 502 every time: the default client retries the GET (three
    # attempts), `retry = false` sends it once. The once-only client goes first so the
    # per-host breaker (5 failures) stays closed for the other.
    with GitHubStandIn(TOKEN) as gh:
        src = client(gh, ", retry = false") + """
out(outcome(gh:get("repos/octo/down")))
""" + client(gh).replace("local gh", "local retrying") + """
out(outcome(retrying:get("repos/octo/down")))
"""
        once, retried = run_lua(src)
        reqs = [r for r in gh.requests if r["path"] == "/repos/octo/down"]
    assert once["kind"] == "http" and once["status"] == 502, once
    assert retried["kind"] == "http" and retried["status"] == 502, retried
    assert len(reqs) == 1 + 3, [r["status"] for r in reqs]


def test_paginate_follows_link_headers_across_three_pages():
    with GitHubStandIn(TOKEN) as gh:
        src = client(gh) + """
local numbers = {}
for issue, err in gh:paginate("repos/octo/hello/issues", { per_page = 2, state = "open" }) do
  assert(issue, err)
  numbers[#numbers + 1] = issue.number
end
out({ numbers = numbers })
local titles = {}
for item, err in gh:paginate("search/issues", { q = "repo:octo/hello", per_page = 2 }) do
  assert(item, err)
  titles[#titles + 1] = item.title
end
out({ titles = titles })
local seen, failure = {}, nil
for item, err in gh:paginate("repos/octo/evil/issues") do
  if not item then failure = tostring(err) break end
  seen[#seen + 1] = item.number
end
out({ seen = seen, failure = failure })
local got, ferr = nil, nil
for item, err in gh:paginate("repos/octo/missing/issues") do got, ferr = item, err end
out({ got = got, kind = ferr and ferr.kind, status = ferr and ferr.status })
"""
        numbers, titles, evil, missing = run_lua(src)
        pages = [r for r in gh.requests if r["path"] == "/repos/octo/hello/issues"]
        hosts = {r["headers"].get("host") for r in gh.requests}
    assert numbers == {"numbers": [1, 2, 3, 4, 5]}, numbers
    assert [r["query"] for r in pages] == [
        {"per_page": "2", "state": "open"},
        {"per_page": "2", "state": "open", "page": "2"},
        {"per_page": "2", "state": "open", "page": "3"}], pages
    assert titles == {"titles": ["Issue 1", "Issue 2", "Issue 3"]}, titles
    # A next link to another origin ends the walk before the token could leave.
    assert evil["seen"] == [1] and "is not on http://127.0.0.1:" in evil["failure"], evil
    assert hosts == {gh.base_url[len("http://"):]}, hosts
    assert missing == {"got": False, "kind": "http", "status": 404}, missing


def test_primary_rate_limit_waits_for_the_reset_then_succeeds():
    with GitHubStandIn(TOKEN) as gh:
        src = client(gh) + """
local time = require "luar.time"
local t0 = time.monotonic()
local r = outcome(gh:get("rate/primary/a"))
r.waited = time.monotonic() - t0
out(r)
t0 = time.monotonic()
r = outcome(gh:get("rate/spent/b"))   -- 200, but the window's last request
local r2 = outcome(gh:get("rate/spent/b"))
r2.waited = time.monotonic() - t0
out(r) out(r2)
"""
        primary, spent1, spent2 = run_lua(src)
        a = [r for r in gh.requests if r["path"] == "/rate/primary/a"]
        b = [r for r in gh.requests if r["path"] == "/rate/spent/b"]
        reset_a, reset_b = gh.state["a"], gh.state["b"]
    assert primary["status"] == 200 and primary["data"] == {"ok": True}, primary
    assert [r["status"] for r in a] == [403, 200], a
    assert a[1]["t"] >= reset_a, "the retry came before x-ratelimit-reset"
    assert 0.5 < primary["waited"] < 5, primary
    assert spent1["data"]["call"] == 1 and spent2["data"]["call"] == 2, (spent1, spent2)
    # The second call waited for the reset instead of spending a 403.
    assert [r["status"] for r in b] == [200, 200], b
    assert b[1]["t"] >= reset_b


def test_secondary_rate_limit_honours_retry_after():
    with GitHubStandIn(TOKEN) as gh:
        src = client(gh) + """
local time = require "luar.time"
for _, key in ipairs({ "rate/secondary/c", "rate/secondary429/d" }) do
  local t0 = time.monotonic()
  local r = outcome(gh:post(key, { n = 1 }))
  r.waited = time.monotonic() - t0
  out(r)
end
"""
        r403, r429 = run_lua(src)
        c = [r for r in gh.requests if r["path"] == "/rate/secondary/c"]
        d = [r for r in gh.requests if r["path"] == "/rate/secondary429/d"]
    for r, reqs in ((r403, c), (r429, d)):
        assert r["status"] == 200 and r["data"] == {"ok": True}, r
        assert len(reqs) == 2 and reqs[1]["t"] - reqs[0]["t"] >= 0.9, reqs
        assert 0.9 <= r["waited"] < 5, r
    assert [x["status"] for x in c] == [403, 200] and [x["status"] for x in d] == [429, 200]


def test_a_rate_limit_longer_than_max_wait_fails_at_once():
    with GitHubStandIn(TOKEN) as gh:
        src = client(gh, ", max_wait = 5") + """
local time = require "luar.time"
local t0 = time.monotonic()
local r = outcome(gh:get("rate/long/e"))
r.waited = time.monotonic() - t0
out(r)
"""
        (r,) = run_lua(src)
        assert len([x for x in gh.requests if x["path"] == "/rate/long/e"]) == 1
    assert r["kind"] == "rate_limited" and r["status"] == 403, r
    assert 100 < r["retry_after"] <= 121, r
    assert r["waited"] < 2, r
    assert "primary rate limit" in r["message"] and "max_wait 5" in r["message"], r


def test_waiting_for_a_rate_limit_blocks_nothing():
    with GitHubStandIn(TOKEN) as gh:
        main_lua = PRELUDE + client(gh) + """
local http = require "luar.http"
http.route("GET", "/slow", function()
  local data, res = gh:get("rate/primary/f")
  return { json = { ok = data ~= nil, err = not data and tostring(res) or nil } }
end)
http.route("GET", "/ping", function() return "pong" end)
"""
        with Luar(scripts={"main.lua": main_lua}, config=CONFIG) as lu:
            got = {}
            t = threading.Thread(target=lambda: got.update(
                slow=lu.request("GET", "/slow", timeout=30)))
            t.start()
            gh.wait_requests(lambda r: r["path"] == "/rate/primary/f")
            t0 = time.monotonic()
            status, _, body = lu.request("GET", "/ping")
            ping_time = time.monotonic() - t0
            waiting = t.is_alive()
            t.join(30)
        assert status == 200 and body == b"pong"
        assert waiting, "the rate-limited call finished before /ping was answered"
        assert ping_time < 0.5, ping_time
        assert got["slow"][0] == 200 and json.loads(got["slow"][2]) == {"ok": True}, got


def test_client_misuse_raises():
    src = """
for _, conf in ipairs({ { token = 5 }, { base_url = "not a url" }, { max_wait = -1 } }) do
  local ok, e = pcall(github.client, conf)
  out({ ok = ok, e = tostring(e) })
end
local gh = github.client{}
out({ ok = (pcall(gh.request, gh, 5, "x")) })
"""
    results = run_lua(src)
    assert [r["ok"] for r in results] == [False, False, False, False], results
    assert "token must be" in results[0]["e"] and "base_url" in results[1]["e"], results



def rsa_key_pair(d):
    key = os.path.join(d, "app.pem")
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                    "rsa_keygen_bits:2048", "-out", key], check=True, capture_output=True)
    pub = subprocess.run(["openssl", "pkey", "-in", key, "-pubout"], check=True,
                         capture_output=True).stdout.decode()
    with open(key) as f:
        return f.read(), pub


def test_github_app_mints_and_reuses_installation_tokens():
    with tempfile.TemporaryDirectory(prefix="luar-github-") as d:
        private, public = rsa_key_pair(d)
    with GitHubStandIn(TOKEN, app=("12345", public)) as gh:
        src = """
local key = %s
local app = github.client{ base_url = %s, app = { id = 12345, private_key = key } }
out(outcome(app:get("app")))
local inst = github.client{ base_url = %s,
                            app = { id = 12345, private_key = key, installation_id = 678 } }
local names = {}
for repo, err in inst:paginate("installation/repositories", { per_page = 2 }) do
  assert(repo, err)
  names[#names + 1] = repo.full_name
end
out({ names = names })
out(outcome(inst:get("user")))
REVOKE()
out(outcome(inst:get("user")))
local ok, e = pcall(github.client, { app = { id = 1, private_key = "nope" } })
out({ ok = ok, e = tostring(e) })
ok, e = pcall(github.client, { token = "x", app = { id = 1, private_key = key } })
out({ ok = ok, e = tostring(e) })
""" % (json.dumps(private), json.dumps(gh.base_url), json.dumps(gh.base_url))
        # The revocation happens between two calls: the script waits for a file.
        flag = tempfile.mktemp(prefix="luar-revoke-")
        src = src.replace("REVOKE()", """
print(json.encode({ revoke = true }))
io.stdout:flush()
local time = require "luar.time"
for _ = 1, 300 do
  local f = io.open(%s) if f then f:close() break end
  time.sleep(0.05)
end""" % json.dumps(flag))
        d = tempfile.mkdtemp(prefix="luar-github-")
        try:
            with open(os.path.join(d, "s.lua"), "w") as f:
                f.write(PRELUDE + src)
            write_config(d)
            p = subprocess.Popen([BIN, "run", "s.lua"], cwd=d,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            lines = []
            for raw in p.stdout:
                line = raw.decode()
                if line.startswith("{") and '"ts"' not in line:
                    lines.append(json.loads(line))
                    if lines[-1] == {"revoke": True}:
                        gh.revoke_tokens()
                        open(flag, "w").close()
            assert p.wait(60) == 0, p.stderr.read()
        finally:
            shutil.rmtree(d, ignore_errors=True)
            if os.path.exists(flag):
                os.unlink(flag)
        app_info, names, user1, _, user2, bad_key, both = lines
        mints = [r for r in gh.requests if r["path"] == "/app/installations/678/access_tokens"]
        repo_calls = [r for r in gh.requests if r["path"] == "/installation/repositories"]
    assert app_info == {"data": {"id": 12345, "slug": "luar-test"}, "status": 200}, app_info
    assert names == {"names": ["octo/repo1", "octo/repo2", "octo/repo3"]}, names
    assert user1["status"] == 200 and user2["status"] == 200, (user1, user2)
    # One token for the pages and the first /user; a second only after the revocation.
    assert len(mints) == 2 and all(r["jwt"] == "ok" for r in mints), mints
    assert all(r["headers"]["authorization"] == "Bearer ghs_1_678" for r in repo_calls)
    last = [r for r in gh.requests if r["path"] == "/user"]
    assert [r["status"] for r in last] == [200, 401, 200], last
    assert last[-1]["headers"]["authorization"] == "Bearer ghs_2_678"
    assert bad_key["ok"] is False and "not a PEM RSA private key" in bad_key["e"], bad_key
    assert both["ok"] is False and "token or app" in both["e"], both


# ---- the `github` webhook scheme ----------------------------------------------------------

# Signs [secret, payload] pairs with @octokit/webhooks-methods `sign`, or checks
# {secret, payload, signature} objects with its `verify`.
NODE_JS = r"""
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
import("@octokit/webhooks-methods")  // ESM only
  .then(({ sign, verify }) => Promise.all(input.map((c) => Array.isArray(c)
    ? sign(c[0], c[1]) : verify(c.secret, c.payload, c.signature))))
  .then((out) => process.stdout.write(JSON.stringify(out)));
"""


def node(items):
    return run_node(NODE_JS, items, "@octokit/webhooks-methods")


VERIFY_LUA = r"""
local webhooks = require "luar.webhooks"
local f = assert(io.open(arg[1], "rb"))
local cases = json.decode(f:read("a"))
f:close()
for _, c in ipairs(cases) do
  local req = { headers = c.headers, body = c.body, secrets = c.secrets }
  for k, v in pairs(c.options or {}) do req[k] = v end
  local ok, res, err = pcall(webhooks.verify, "github", req)
  if not ok then out({ name = c.name, raised = tostring(res) })
  elseif res == true then out({ name = c.name, ok = true })
  else out({ name = c.name, kind = err.kind, message = err.message }) end
end
"""

SECRET = "It's a Secret to Everybody"
OTHER = "another secret"


def issue_body(action="opened", number=7):
    return json.dumps({"action": action, "issue": {"number": number, "title": "Caf\u00e9 bug"},
                       "repository": {"full_name": "octo/hello"}}, ensure_ascii=False)


def test_signatures_from_octokit_verify_in_lua():
    body = issue_body()
    good, other = node([[SECRET, body], [OTHER, body]])
    assert good.startswith("sha256=") and len(good) == 71, good

    def case(name, headers, secrets=(SECRET,), body_=body, **extra):
        c = {"name": name, "headers": headers, "body": body_, "secrets": list(secrets)}
        c.update(extra)
        return c

    cases = [
        case("valid", {"X-Hub-Signature-256": good}),
        case("upper_case_hex", {"X-Hub-Signature-256": "sha256=" + good[7:].upper()}),
        case("rotated", {"X-Hub-Signature-256": other}, (SECRET, OTHER)),
        case("wrong_secret", {"X-Hub-Signature-256": other}),
        case("tampered", {"X-Hub-Signature-256": good}, body_=body.replace("7", "8")),
        case("missing", {}),
        case("sha1_only", {"X-Hub-Signature": "sha1=" + "0" * 40}),
        case("malformed", {"X-Hub-Signature-256": "sha256=xyz"}),
        case("no_prefix", {"X-Hub-Signature-256": good[7:]}),
        case("bad_option", {"X-Hub-Signature-256": good}, options={"header": "X-Sig"}),
        case("event_option", {"X-Hub-Signature-256": good}, options={"event": "issues"}),
    ]
    r = {x["name"]: x for x in run_plain(PRELUDE + VERIFY_LUA, data=cases)}
    for name in ("valid", "upper_case_hex", "rotated", "event_option"):
        assert r[name].get("ok") is True, (name, r[name])
    for name, part in (("wrong_secret", "does not match"), ("tampered", "does not match"),
                       ("missing", "no x-hub-signature-256 header"),
                       ("sha1_only", "the SHA-1 x-hub-signature alone is not accepted"),
                       ("malformed", "is malformed"), ("no_prefix", "is malformed")):
        assert r[name].get("kind") == "invalid_signature" and part in r[name]["message"], \
            (name, r[name])
    assert 'unknown option "header"' in r["bad_option"]["raised"], r["bad_option"]
    assert all(good[7:] not in json.dumps(x) for x in r.values())


ROUTE_LUA = r"""
local webhooks = require "luar.webhooks"
local log = require "luar.log"
webhooks.route("/hooks/github", { scheme = "github", secret = %s })
webhooks.on("/hooks/github", "issues.opened", function(event, meta)
  log.info("github event", { handler = "opened", id = meta.id, type = meta.type,
                             number = event.issue.number,
                             sig = meta.headers["x-hub-signature-256"] })
end)
webhooks.on("/hooks/github", "#", function(event, meta)
  log.info("github event", { handler = "all", id = meta.id, type = meta.type })
end)
"""


def test_route_types_events_as_event_dot_action_and_dedupes_deliveries():
    opened, closed, push = issue_body("opened", 7), issue_body("closed", 7), '{"ref":"refs/heads/main"}'
    form = "payload=" + urllib.parse.quote_plus(issue_body("opened", 9))
    sigs = node([[SECRET, opened], [SECRET, closed], [SECRET, push], [SECRET, form],
                 [OTHER, opened]])

    def post(luar, body, sig, event="issues", delivery=None, ctype="application/json"):
        h = {"Content-Type": ctype, "User-Agent": "GitHub-Hookshot/abc123"}
        if sig:
            h["X-Hub-Signature-256"] = sig
        if event:
            h["X-GitHub-Event"] = event
        if delivery is not False:
            h["X-GitHub-Delivery"] = delivery or str(uuid.uuid4())
        status, _, answer = luar.request("POST", "/hooks/github", body.encode(), h)
        return status, json.loads(answer), h.get("X-GitHub-Delivery")

    def seen(luar, handler, id_):
        return luar.wait_log(lambda r: r.get("msg") == "github event" and
                             r.get("handler") == handler and r.get("id") == id_)

    main_lua = PRELUDE + ROUTE_LUA % json.dumps(SECRET)
    with Luar(scripts={"main.lua": main_lua}, config=CONFIG) as luar:
        status, answer, d1 = post(luar, opened, sigs[0])
        assert status == 200 and answer == {"received": True, "id": d1, "jobs": 2}, answer
        rec = seen(luar, "opened", d1)
        assert rec["type"] == "issues.opened" and rec["number"] == 7 and "sig" not in rec, rec
        assert seen(luar, "all", d1)["type"] == "issues.opened"
        # GitHub redelivers with the same delivery id: nothing runs twice.
        status, answer, _ = post(luar, opened, sigs[0], delivery=d1)
        assert status == 200 and answer.get("duplicate") is True, answer
        status, answer, d2 = post(luar, closed, sigs[1])
        assert status == 200 and answer["jobs"] == 1, answer  # only "#" matches
        assert seen(luar, "all", d2)["type"] == "issues.closed"
        status, answer, d3 = post(luar, push, sigs[2], event="push")
        assert status == 200 and seen(luar, "all", d3)["type"] == "push", answer
        status, answer, d4 = post(luar, form, sigs[3],
                                  ctype="application/x-www-form-urlencoded")
        assert status == 200 and answer["jobs"] == 2, answer
        assert seen(luar, "opened", d4)["number"] == 9
        for what, (status, answer, _), want, part in [
            ("wrong secret", post(luar, opened, sigs[4]), 401, "invalid signature: "),
            ("tampered", post(luar, opened.replace("7", "8"), sigs[0]), 401,
             "invalid signature: the x-hub-signature-256 does not match"),
            ("unsigned", post(luar, opened, None), 401,
             "missing signature: no x-hub-signature-256 header"),
            ("no delivery", post(luar, opened, sigs[0], delivery=False), 400,
             "no x-github-delivery header"),
            ("no event", post(luar, opened, sigs[0], event=None), 400,
             "no x-github-event header"),
        ]:
            assert status == want and part in answer["error"], (what, status, answer)
        assert luar.count_logs(lambda r: r.get("msg") == "github event" and
                               r.get("id") == d1) == 2


def test_cli_sign_and_send_are_verified_by_octokit_and_the_route():
    body = issue_body("labeled", 3)
    with tempfile.TemporaryDirectory(prefix="luar-github-") as d:
        path = os.path.join(d, "event.json")
        with open(path, "w") as f:
            f.write(body)
        write_config(d)
        status, out, err = run_cli(["webhook", "sign", "--scheme", "github", "--secret", SECRET,
                                    "--option", "event=issues", path], cwd=d)
        assert status == 0, err
        h = dict(line.split(": ", 1) for line in out.splitlines())
        assert sorted(h) == ["X-GitHub-Delivery", "X-GitHub-Event", "X-Hub-Signature",
                             "X-Hub-Signature-256"], h
        assert h["X-GitHub-Event"] == "issues" and uuid.UUID(h["X-GitHub-Delivery"]).version == 4
        verdicts = node([{"secret": SECRET, "payload": body, "signature": h["X-Hub-Signature-256"]},
                         {"secret": OTHER, "payload": body, "signature": h["X-Hub-Signature-256"]},
                         {"secret": SECRET, "payload": body + " ",
                          "signature": h["X-Hub-Signature-256"]}])
        assert verdicts == [True, False, False], verdicts
        status, _, err = run_cli(["webhook", "sign", "--scheme", "github", "--secret", SECRET,
                                  "--option", "event=Not An Event", path], cwd=d)
        assert status != 0 and "is not an event name" in err, err
        main_lua = PRELUDE + ROUTE_LUA % json.dumps(SECRET)
        with Luar(scripts={"main.lua": main_lua}, config=CONFIG) as luar:
            status, out, err = run_cli(["webhook", "send", "--scheme", "github", "--secret",
                                        SECRET, "--option", "event=issues", "--id", "cli-1",
                                        "--url", "http://127.0.0.1:%d/hooks/github" % luar.port,
                                        path], cwd=d)
            assert status == 0, (out, err)
            rec = luar.wait_log(lambda r: r.get("msg") == "github event" and
                                r.get("id") == "cli-1")
            assert rec["type"] == "issues.labeled", rec

if __name__ == "__main__":
    main([test_headers_and_generic_calls,
          test_user_agent_is_always_sent_and_configurable,
          test_errors_carry_githubs_shape,
          test_retry_false_turns_luar_http_retries_off,
          test_paginate_follows_link_headers_across_three_pages,
          test_primary_rate_limit_waits_for_the_reset_then_succeeds,
          test_secondary_rate_limit_honours_retry_after,
          test_a_rate_limit_longer_than_max_wait_fails_at_once,
          test_waiting_for_a_rate_limit_blocks_nothing,
          test_client_misuse_raises,
          test_github_app_mints_and_reuses_installation_tokens,
          test_signatures_from_octokit_verify_in_lua,
          test_route_types_events_as_event_dot_action_and_dedupes_deliveries,
          test_cli_sign_and_send_are_verified_by_octokit_and_the_route])
