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
import uuid

from github_standin import GitHubStandIn
from luar_e2e import Luar, main, run_cli

HERE = os.path.dirname(os.path.abspath(__file__))
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
    d = tempfile.mkdtemp(prefix="luar-github-")
    try:
        with open(os.path.join(d, "s.lua"), "w") as f:
            f.write(PRELUDE + src)
        rc, out, err = run_cli(["run", "s.lua"], cwd=d, timeout=timeout)
        assert rc == 0, (rc, out, err)
        return [json.loads(l) for l in out.splitlines()
                if l.startswith("{") and '"ts"' not in l]
    finally:
        shutil.rmtree(d, ignore_errors=True)


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
        with Luar(scripts={"main.lua": main_lua}) as lu:
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


if __name__ == "__main__":
    main([test_headers_and_generic_calls,
          test_user_agent_is_always_sent_and_configurable,
          test_errors_carry_githubs_shape,
          test_paginate_follows_link_headers_across_three_pages,
          test_primary_rate_limit_waits_for_the_reset_then_succeeds,
          test_secondary_rate_limit_honours_retry_after,
          test_a_rate_limit_longer_than_max_wait_fails_at_once,
          test_waiting_for_a_rate_limit_blocks_nothing,
          test_client_misuse_raises])
