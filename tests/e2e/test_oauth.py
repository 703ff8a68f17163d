"""luar.oauth end to end: the real binary against a real OAuth 2.0 / OpenID Connect server
(the npm oauth2-mock-server, started by oauth_provider.js on 127.0.0.1 with a fresh RS256
key; it checks PKCE S256 at its token endpoint and carries the nonce into ID tokens).

An HTTP client follows the redirects by hand: /oauth/mock/start -> the provider's
/authorize -> /oauth/mock/callback; the tokens land encrypted in the backend and
oauth.connected reaches a subscriber. Then: wrong, missing, replayed and cross-provider
states answer 400, as do a declined authorization (error=access_denied, escaped in the
page) and a start refused by start_guard (403); ID tokens with another audience, another
nonce or a payload changed after signing are refused (nothing stored); a token close to expiry is refreshed once for
50 concurrent callers (refresh requests counted at the provider), also across two
instances sharing one SQLite file; a revoked refresh token surfaces as kind "oauth", code
invalid_grant; client credentials are cached; revoke calls the provider and forgets the
account; neither the SQLite file nor the Redis key holds any token text, and an instance
with another secrets key cannot read the tokens."""
import concurrent.futures
import glob
import json
import os
import queue
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import urllib.parse
import http.client

from luar_e2e import Luar, free_port, main, wait_until
from redis_server import RedisServer

HERE = os.path.dirname(os.path.abspath(__file__))
KEY = "7" * 64

APP = r'''
local http = require "luar.http"
local oauth = require "luar.oauth"
local events = require "luar.events"
local log = require "luar.log"
local ISS = os.getenv("OAUTH_ISSUER")

oauth.provider("mock", {
  authorize_url = ISS .. "/authorize", token_url = ISS .. "/token", revoke_url = ISS .. "/revoke",
  issuer = ISS, jwks_url = ISS .. "/jwks",
  client_id = "luar-client", client_secret = "client-secret-xyz",
  scopes = { "openid", "email", "profile" },
})
oauth.provider("other", {
  authorize_url = ISS .. "/authorize", token_url = ISS .. "/token",
  client_id = "other-client", scopes = { "read" },
  start_guard = function(req, account) return account ~= "blocked", "account blocked here" end,
})

events.subscribe("oauth.connected", "seen", function(p)
  log.info("connected event", { provider = p.provider, account = p.account, scopes = p.scopes,
                                expires_at = p.expires_at })
end)

local function answer(tok, err)
  if not tok then
    return { status = 200, json = { ok = false, kind = err.kind, code = err.code,
                                    message = err.message } }
  end
  -- the record's field names: what a script gets besides the token
  local fields = {}
  for k in pairs(type(err) == "table" and err or {}) do fields[#fields + 1] = k end
  table.sort(fields)
  return { json = { ok = true, token = tok, fields = fields } }
end

http.route("GET", "/t/:account", function(req)
  local opts = req.query.scope and { scopes = { req.query.scope } } or nil
  return answer(oauth.token("mock", req.params.account, opts))
end)
http.route("GET", "/cc", function() return answer(oauth.client_credentials("mock")) end)
http.route("POST", "/revoke/:account", function(req)
  local ok, err = oauth.revoke("mock", req.params.account)
  return answer(ok and "revoked" or nil, err)
end)
'''


class Provider:
    """oauth_provider.js: events on stdout, one-shot behaviours on stdin."""

    def __init__(self):
        self.proc = subprocess.Popen(["node", os.path.join(HERE, "oauth_provider.js")], cwd=HERE,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.events = queue.Queue()
        self.tokens = []    # every token request seen
        self.revokes = []
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        first = self.events.get(timeout=30)
        assert "issuer" in first, first
        self.issuer = first["issuer"]

    def _read(self):
        for line in self.proc.stdout:
            ev = json.loads(line)
            with self.lock:
                if "token" in ev:
                    self.tokens.append(ev["token"])
                if "revoke" in ev:
                    self.revokes.append(ev["revoke"])
            self.events.put(ev)

    def next(self, what, value=None):
        cmd = {"next": what}
        if value is not None:
            cmd["value"] = value
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        self.proc.stdin.flush()
        while True:  # bounded by the queue's timeout
            ev = self.events.get(timeout=10)
            if "ack" in ev:
                return

    def revoked(self):
        with self.lock:
            return list(self.revokes)

    def grants(self, grant_type):
        with self.lock:
            return [t for t in self.tokens if t["grant_type"] == grant_type]

    def close(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def start_luar(provider, config_extra="", port=None, queue_url=None, key=KEY):
    port = port or free_port()
    conf = ('return { reload = { watch = false }, jobs = { poll = 0.1 }, '
            'public_url = "http://127.0.0.1:%d"%s%s }') % (
        port, ', queue = "%s"' % queue_url if queue_url else "", config_extra)
    return Luar(scripts={"main.lua": APP}, config=conf, listen="127.0.0.1:%d" % port,
                env={"OAUTH_ISSUER": provider.issuer, "LUAR_SECRETS_KEY": key})


# What oauth.token hands a script besides the token (sorted): never the refresh token.
# id_claims is absent (nil) without an ID token, as for client credentials.
RECORD_FIELDS = ["access_token", "account", "expires_at", "id_claims", "obtained_at",
                 "provider", "scopes", "token_type"]


def get(url):
    """One GET (no redirect following); returns (status, headers, body)."""
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=15)
    try:
        c.request("GET", u.path + ("?" + u.query if u.query else ""))
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def authorize(luar, provider, account, name="mock"):
    """start -> authorize: returns (authorize URL, the callback URL the provider redirects to)."""
    status, h, body = get("http://127.0.0.1:%d/oauth/%s/start?account=%s"
                          % (luar.port, name, account))
    assert status == 302, (status, body)
    auth_url = h["location"]
    assert auth_url.startswith(provider.issuer + "/authorize?"), auth_url
    status, h, body = get(auth_url)
    assert status == 302, (status, body)
    return auth_url, h["location"]


def connect(luar, provider, account):
    auth_url, cb = authorize(luar, provider, account)
    status, h, body = get(cb)
    assert status == 200, (status, body)
    return auth_url, cb, body


def token(luar, account, scope=None):
    path = "/t/" + account + ("?scope=" + scope if scope else "")
    return luar.get_json(path)


def test_flow_pkce_connected_event():
    with Provider() as provider, start_luar(provider) as luar:
        auth_url, cb, body = connect(luar, provider, "acct-1")
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(auth_url).query))
        assert q["response_type"] == "code" and q["client_id"] == "luar-client", q
        assert q["redirect_uri"] == "http://127.0.0.1:%d/oauth/mock/callback" % luar.port, q
        assert q["code_challenge_method"] == "S256" and len(q["code_challenge"]) == 43, q
        assert len(q["state"]) >= 43 and len(q["nonce"]) >= 20, q
        assert q["scope"] == "openid email profile", q
        assert cb.startswith(q["redirect_uri"] + "?"), cb
        assert b"acct-1 is connected to mock" in body, body
        # the code was exchanged with the PKCE verifier (the provider checked it) and the secret
        codes = provider.grants("authorization_code")
        assert len(codes) == 1 and codes[0]["status"] == 200, codes
        assert codes[0]["code_verifier"] and codes[0]["has_secret"], codes
        ev = luar.wait_log(lambda r: r.get("msg") == "connected event")
        assert ev["provider"] == "mock" and ev["account"] == "acct-1", ev
        assert ev["scopes"] == ["openid", "email", "profile"], ev
        assert ev["expires_at"] > 0, ev
        # the stored access token is the one the provider issued; no refresh needed
        got = token(luar, "acct-1")
        assert got["ok"] and got["token"] == codes[0]["access_token"], got
        # the record handed to the script: everything but the refresh token (one was issued)
        assert codes[0]["refresh_token"], codes
        assert got["fields"] == RECORD_FIELDS, got
        assert got == token(luar, "acct-1")
        assert provider.grants("refresh_token") == []
        # scopes: granted ones pass, another is named in the error
        assert token(luar, "acct-1", "email")["ok"]
        bad = token(luar, "acct-1", "repo")
        assert not bad["ok"] and bad["kind"] == "oauth" and bad["code"] == "insufficient_scope", bad
        assert "scope repo was not granted" in bad["message"], bad
        nobody = token(luar, "nobody")
        assert nobody["kind"] == "oauth" and nobody["code"] == "not_connected", nobody


def test_state_rejected():
    with Provider() as provider, start_luar(provider) as luar:
        base = "http://127.0.0.1:%d" % luar.port
        _, cb = authorize(luar, provider, "acct-s")
        cbq = urllib.parse.urlsplit(cb).query
        # missing, unknown state: 400, nothing exchanged
        status, _, body = get(base + "/oauth/mock/callback?code=abc")
        assert status == 400 and b"no state parameter" in body, (status, body)
        status, _, body = get(base + "/oauth/mock/callback?code=abc&state=forged-state")
        assert status == 400 and b"Unknown or expired state" in body, (status, body)
        # a state issued for mock, presented to the other provider's callback
        status, _, body = get(base + "/oauth/other/callback?" + cbq)
        assert status == 400 and b"issued for provider mock" in body, (status, body)
        assert provider.grants("authorization_code") == []
        # a state is single-use: the cross-provider attempt consumed it, a replay is named
        status, _, body = get(cb)
        assert status == 400 and b"already used" in body, (status, body)
        # a fresh flow works, and replaying its callback is refused
        _, cb2 = authorize(luar, provider, "acct-s")
        status, _, _ = get(cb2)
        assert status == 200
        status, _, body = get(cb2)
        assert status == 400 and b"already used" in body, (status, body)
        assert len(provider.grants("authorization_code")) == 1
        status, _, body = get(base + "/oauth/mock/start")
        assert status == 400 and b"account" in body, (status, body)
        status, _, body = get(base + "/oauth/other/start?account=blocked")
        assert status == 403 and b"account blocked here" in body, (status, body)
        # the user declined at the provider: a valid state with error=access_denied
        _, cb3 = authorize(luar, provider, "acct-d")
        state = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(cb3).query))["state"]
        status, _, body = get(base + "/oauth/mock/callback?state=%s&error=access_denied"
                              "&error_description=%%3Cb%%3Eno%%3C%%2Fb%%3E" % state)
        assert status == 400 and b"access_denied: &lt;b&gt;no&lt;/b&gt;" in body, (status, body)
        assert len(provider.grants("authorization_code")) == 1


def test_id_token_checked():
    with Provider() as provider, start_luar(provider) as luar:
        for mode, words in (("wrong_aud", b"aud is someone-else"),
                            ("wrong_nonce", b"nonce does not match"),
                            ("tamper", b"signature")):
            provider.next(mode)
            _, cb = authorize(luar, provider, "acct-" + mode)
            status, _, body = get(cb)
            assert status == 400 and words in body, (mode, status, body)
            got = token(luar, "acct-" + mode)
            assert got["code"] == "not_connected", (mode, got)
        # and the untouched token passes the same checks
        connect(luar, provider, "acct-good")
        assert token(luar, "acct-good")["ok"]


def burst(luar, account, n):
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: token(luar, account), range(n)))


def test_refresh_once_for_50_callers():
    with Provider() as provider, start_luar(provider) as luar:
        provider.next("expires_in", 30)   # inside the 60 s refresh margin at once
        connect(luar, provider, "acct-r")
        first = provider.grants("authorization_code")[0]["access_token"]
        results = burst(luar, "acct-r", 50)
        refreshes = provider.grants("refresh_token")
        assert len(refreshes) == 1, refreshes
        new = refreshes[0]["access_token"]
        assert new != first
        assert all(r["ok"] and r["token"] == new for r in results), results
        assert all(r["fields"] == RECORD_FIELDS for r in results), results[0]["fields"]
        # the refreshed token (3600 s) is fresh: no more refreshes
        assert token(luar, "acct-r")["token"] == new
        assert len(provider.grants("refresh_token")) == 1


def test_refresh_once_across_instances():
    shared = tempfile.mkdtemp(prefix="luar-oauth-shared-")
    try:
        url = "sqlite:" + os.path.join(shared, "luar.db")
        with Provider() as provider, start_luar(provider, queue_url=url) as a, \
                start_luar(provider, queue_url=url) as b:
            provider.next("expires_in", 30)
            connect(a, provider, "acct-x")
            with concurrent.futures.ThreadPoolExecutor(40) as pool:
                futs = [pool.submit(token, a if i % 2 else b, "acct-x") for i in range(40)]
                results = [f.result() for f in futs]
            refreshes = provider.grants("refresh_token")
            assert len(refreshes) == 1, refreshes
            assert all(r["ok"] and r["token"] == refreshes[0]["access_token"] for r in results)
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_invalid_refresh_token_is_oauth_error():
    with Provider() as provider, start_luar(provider) as luar:
        provider.next("expires_in", 10)
        connect(luar, provider, "acct-i")
        provider.next("invalid_grant")
        got = token(luar, "acct-i")
        assert not got["ok"] and got["kind"] == "oauth" and got["code"] == "invalid_grant", got
        assert "refresh token revoked" in got["message"], got
        assert len(provider.grants("refresh_token")) == 1


def test_client_credentials_cached_and_revoke():
    with Provider() as provider, start_luar(provider) as luar:
        a = luar.get_json("/cc")
        b = luar.get_json("/cc")
        assert a["ok"] and a["token"] == b["token"], (a, b)
        assert a["fields"] == b["fields"] == [f for f in RECORD_FIELDS
                                         if f not in ("account", "id_claims")], a
        ccs = provider.grants("client_credentials")
        assert len(ccs) == 1 and ccs[0]["access_token"] == a["token"], ccs
        connect(luar, provider, "acct-v")
        status, _, body = luar.request("POST", "/revoke/acct-v")
        assert status == 200 and json.loads(body)["ok"], body
        # the provider's event is read on another thread: wait for it, then count
        wait_until(provider.revoked, "the provider's revocation")
        assert len(provider.revoked()) == 1
        assert token(luar, "acct-v")["code"] == "not_connected"


def db_bytes(data_dir):
    out = b""
    for f in glob.glob(os.path.join(data_dir, "luar.db*")):
        with open(f, "rb") as fh:
            out += fh.read()
    return out


def test_tokens_encrypted_in_sqlite():
    with Provider() as provider, start_luar(provider) as luar:
        connect(luar, provider, "acct-e")
        code = provider.grants("authorization_code")[0]
        assert token(luar, "acct-e")["ok"]
        raw = db_bytes(luar.data)
        assert code["access_token"].encode() not in raw
        assert code["refresh_token"].encode() not in raw
        assert b"client-secret-xyz" not in raw
        db = sqlite3.connect(os.path.join(luar.data, "luar.db"))
        try:
            rows = db.execute("SELECT key, value FROM kv "
                              "WHERE key LIKE 'oauth:token:%'").fetchall()
        finally:
            db.close()
        assert [r[0] for r in rows] == ["oauth:token:mock:acct-e"], rows
        blob = rows[0][1]
        assert blob[0] == 1 and len(blob) > 41, blob[:16]   # an AES-256-GCM blob (secrets.md)
        assert code["access_token"].encode() not in blob


def test_another_key_cannot_read_the_tokens():
    shared = tempfile.mkdtemp(prefix="luar-oauth-key-")
    try:
        url = "sqlite:" + os.path.join(shared, "luar.db")
        with Provider() as provider:
            with start_luar(provider, queue_url=url) as luar:
                connect(luar, provider, "acct-k")
                assert token(luar, "acct-k")["ok"]
            with start_luar(provider, queue_url=url, key="8" * 64) as other:
                got = token(other, "acct-k")
                assert not got["ok"] and got["kind"] == "oauth", got
                assert "cannot be decrypted: wrong key" in got["message"], got
            with start_luar(provider, queue_url=url) as again:   # the right key reads it
                assert token(again, "acct-k")["ok"]
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_tokens_encrypted_in_redis():
    with RedisServer() as redis, Provider() as provider, \
            start_luar(provider, queue_url=redis.url(prefix="lt:")) as luar:
        provider.next("expires_in", 30)
        connect(luar, provider, "acct-rd")
        code = provider.grants("authorization_code")[0]
        results = burst(luar, "acct-rd", 20)
        assert len(provider.grants("refresh_token")) == 1, provider.grants("refresh_token")
        new = provider.grants("refresh_token")[0]["access_token"]
        assert all(r["token"] == new for r in results)
        keys = redis.command("KEYS", "*oauth:token:*")
        assert keys == ["lt:kv:oauth:token:mock:acct-rd"], keys
        value = redis.command("GET", keys[0])
        for t in (code["access_token"], code["refresh_token"], new):
            assert t not in value


if __name__ == "__main__":
    main([test_flow_pkce_connected_event, test_state_rejected, test_id_token_checked,
          test_refresh_once_for_50_callers, test_refresh_once_across_instances,
          test_invalid_refresh_token_is_oauth_error, test_client_credentials_cached_and_revoke,
          test_tokens_encrypted_in_sqlite, test_another_key_cannot_read_the_tokens,
          test_tokens_encrypted_in_redis])
