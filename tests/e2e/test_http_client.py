"""The outbound HTTP client of luar.http (SPEC §4, issue 4 items 1, 2 and 4) against the
fault-injecting upstream of fault_server.py on loopback: what the upstream received for
each way of sending, each transport error kind, TLS and mTLS, max_body, 1,000 concurrent
requests through a served route, the redacted debug log and the client metrics."""
import concurrent.futures
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time

from fault_server import FaultServer
from luar_e2e import Luar, free_port, main, run_cli

PRELUDE = ('local http = require "luar.http"\n'
           'local json = require "luar.json"\n'
           'local function out(t) print(json.encode(t)) end\n'
           'local function call(fn, ...)\n'
           '  local res, err = fn(...)\n'
           '  if res then return { status = res.status, body = res.body, headers = res.headers }\n'
           '  end\n'
           '  return { kind = err.kind, message = err.message, status = err.status,\n'
           '           retry_after = err.retry_after, text = tostring(err) }\n'
           'end\n')


def run_lua(src, env=None, timeout=60):
    """Runs PRELUDE + src with `luar run`; returns the JSON values it printed, one a line."""
    d = tempfile.mkdtemp(prefix="luar-client-")
    with open(os.path.join(d, "s.lua"), "w") as f:
        f.write(PRELUDE + src)
    rc, out, err = run_cli(["run", "s.lua"], cwd=d, env=env, timeout=timeout)
    assert rc == 0, (rc, out, err)
    vals = []
    for line in out.splitlines():
        if line.startswith("{") and '"ts"' not in line:
            vals.append(json.loads(line))
    return vals, out


def lua_str(s):
    return json.dumps(s)


def test_get_post_json_form_body_query_and_headers_reach_the_server():
    with FaultServer() as fs:
        src = """
local u = %s
local r = assert(http.get(u, { query = { q = "a b&c", list = { 1, 2 }, ok = true },
                              headers = { ["X-Trace"] = "t-1" } }))
out({ status = r.status, echo = r:json(), ctype = r.headers["content-type"], cached = r.cached })
r = assert(http.post(u, { json = { name = "ada", n = 3 } }))
out({ echo = r:json() })
r = assert(http.request{ method = "put", url = u, form = { a = "1", b = "x y" } })
out({ echo = r:json() })
r = assert(http.patch(u, { body = "raw bytes", headers = { ["Content-Type"] = "text/plain" } }))
out({ echo = r:json() })
r = assert(http.delete(u))
out({ echo = r:json() })
r = assert(http.head(u))
out({ status = r.status, body = r.body })
r = assert(http.post(u .. "?x=1", { body = "plain", query = { y = "2" } }))
out({ echo = r:json() })
""" % lua_str(fs.url("/echo"))
        vals, _ = run_lua(src)
        get, post, put, patch, delete, head, raw = vals
        assert get["status"] == 200 and get["cached"] is False, get
        assert get["ctype"] == "application/json", get
        e = get["echo"]
        assert e["method"] == "GET" and e["query"] == {"q": ["a b&c"], "list": ["1", "2"],
                                                       "ok": ["true"]}, e
        assert e["headers"]["x-trace"] == "t-1", e
        assert e["headers"]["user-agent"].startswith("luar/"), e
        e = post["echo"]
        assert e["method"] == "POST" and json.loads(e["body"]) == {"name": "ada", "n": 3}, e
        assert e["headers"]["content-type"] == "application/json", e
        e = put["echo"]
        assert e["method"] == "PUT" and e["body"] == "a=1&b=x%20y", e
        assert e["headers"]["content-type"] == "application/x-www-form-urlencoded", e
        e = patch["echo"]
        assert e["method"] == "PATCH" and e["body"] == "raw bytes", e
        assert e["headers"]["content-type"] == "text/plain", e
        assert delete["echo"]["method"] == "DELETE", delete
        assert head.get("status") == 200 and head["body"] == "", head
        e = raw["echo"]
        assert e["query"] == {"x": ["1"], "y": ["2"]} and e["body"] == "plain", e
        assert "content-type" not in e["headers"], e  # body= invents no content type
        methods = [r["method"] for r in fs.requests("/echo")]
        assert methods == ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "POST"], methods


def test_http_error_statuses_are_responses_unless_raise_for_status():
    with FaultServer() as fs:
        src = """
-- retry = false: the raw answers (the default policy would retry 503 and 429)
out(call(http.get, %s, { retry = false }))
out(call(http.get, %s, { raise_for_status = true, retry = false }))
out(call(http.get, %s, { raise_for_status = true, retry = false }))
""" % (lua_str(fs.url("/status/503")), lua_str(fs.url("/status/429?retry_after=7")),
            lua_str(fs.url("/status/204")))
        (plain, raised, fine), _ = run_lua(src)
        assert plain["status"] == 503 and plain["body"] == "status 503", plain
        assert raised["kind"] == "http" and raised["status"] == 429, raised
        assert raised["retry_after"] == 7 and "429" in raised["text"], raised
        assert fine["status"] == 204, fine


def test_transport_errors_have_kinds():
    closed = free_port()  # nothing listens there
    with FaultServer() as fs:
        src = """
local time = require "luar.time"
-- One attempt each and no breaker: the raw transport errors.
local raw = { retry = false, breaker = false }
out(call(http.get, "http://127.0.0.1:%d/", raw))
local t0 = time.monotonic()
local r = call(http.get, %s, { timeout = 0.3, retry = false, breaker = false })
r.elapsed = time.monotonic() - t0
out(r)
out(call(http.get, %s, raw))
t0 = time.monotonic()
r = call(http.get, %s, { timeout = { connect = 5, total = 0.5 }, retry = false, breaker = false })
r.elapsed = time.monotonic() - t0
out(r)
out(call(http.get, "ftp://127.0.0.1/x", raw))
out(call(http.get, "http://no-such-host.invalid/", raw))
""" % (closed, lua_str(fs.url("/hang")), lua_str(fs.url("/reset")),
            lua_str(fs.url("/trickle?n=20&delay=0.1")))
        (refused, hang, reset, trickle, ftp, dns), _ = run_lua(src)
        assert refused["kind"] == "connect", refused
        assert hang["kind"] == "timeout" and 0.25 < hang["elapsed"] < 3, hang
        assert reset["kind"] == "connect", reset
        assert trickle["kind"] == "timeout" and trickle["elapsed"] < 3, trickle
        assert ftp["kind"] == "invalid", ftp
        assert dns["kind"] == "connect", dns


def test_connect_timeout_on_a_listener_that_never_accepts():
    # A full accept queue makes the kernel drop further SYNs: the connect hangs on loopback.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(0)
    port = s.getsockname()[1]
    fill = []
    for _ in range(8):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fill.append(c)
    try:
        src = """
local time = require "luar.time"
local t0 = time.monotonic()
local r = call(http.get, "http://127.0.0.1:%d/", { timeout = { connect = 0.3, total = 10 } })
r.elapsed = time.monotonic() - t0
out(r)
""" % port
        (r,), _ = run_lua(src)
        assert r["kind"] == "timeout" and 0.25 < r["elapsed"] < 3, r
        assert "onnect" in r["message"], r
    finally:
        for c in fill:
            c.close()
        s.close()


def test_max_body_too_large():
    with FaultServer() as fs:
        src = """
out(call(http.get, %s))
out(call(http.get, %s, { max_body = 1000 }))
out(call(http.get, %s, { max_body = 1000 }))
out(call(http.request, { method = "HEAD", url = %s, max_body = 1000 }))
""" % (lua_str(fs.url("/huge?size=%d" % (11 * 1024 * 1024))),
            lua_str(fs.url("/huge?size=5000&chunked=1")), lua_str(fs.url("/huge?size=1000")),
            lua_str(fs.url("/huge?size=%d" % (11 * 1024 * 1024))))
        (default_cap, chunked, fits, head), _ = run_lua(src)
        assert default_cap["kind"] == "too_large", default_cap
        # A HEAD announcing a large body is not too large: nothing is read.
        assert head.get("status") == 200 and head["body"] == "", head
        assert head["headers"]["content-length"] == str(11 * 1024 * 1024), head
        assert chunked["kind"] == "too_large", chunked
        assert fits["status"] == 200 and len(fits["body"]) == 1000, fits


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True)


def make_pki(d):
    """A CA, a server certificate for 127.0.0.1 and a client certificate, both from the CA."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=client test CA", "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    with open(os.path.join(d, "san.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    for name, subj in (("server", "/CN=127.0.0.1"), ("client", "/O=Acme/CN=billing-service")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subj, "-keyout",
                name + ".key", "-out", name + ".csr", cwd=d)
        extra = ["-extfile", "san.ext"] if name == "server" else []
        openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-out", name + ".pem", *extra, cwd=d)
    return {k: os.path.join(d, k) for k in ("ca.pem", "server.pem", "server.key", "client.pem",
                                              "client.key")}


def test_tls_verification_fails_on_a_self_signed_server_unless_its_ca_is_given():
    pki = make_pki(tempfile.mkdtemp(prefix="luar-pki-"))
    with FaultServer(tls={"cert": pki["server.pem"], "key": pki["server.key"]}) as fs:
        u = lua_str(fs.url("/echo"))
        src = """
out(call(http.get, %s))
out(call(http.get, %s, { ca = %s }))
out(call(http.get, %s, { verify = false }))
""" % (u, u, lua_str(pki["ca.pem"]), u)
        (untrusted, trusted, unverified), _ = run_lua(src)
        assert untrusted["kind"] == "tls", untrusted
        assert trusted["status"] == 200, trusted
        assert unverified["status"] == 200, unverified


def test_mtls_client_certificate():
    pki = make_pki(tempfile.mkdtemp(prefix="luar-pki-"))
    tls = {"cert": pki["server.pem"], "key": pki["server.key"], "client_ca": pki["ca.pem"]}
    with FaultServer(tls=tls) as fs:
        u = lua_str(fs.url("/echo"))
        ca = lua_str(pki["ca.pem"])
        src = """
out(call(http.get, %s, { ca = %s }))
local api = http.client{ base_url = %s, ca = %s, cert = %s, key = %s }
local r = call(api.get, api, "/echo")
out(r)
""" % (u, ca, lua_str(fs.url("")), ca, lua_str(pki["client.pem"]), lua_str(pki["client.key"]))
        (without, with_cert), _ = run_lua(src)
        assert without.get("kind") in ("tls", "connect"), without
        assert with_cert["status"] == 200, with_cert
        subject = json.loads(with_cert["body"])["client_subject"]
        assert "commonName=billing-service" in subject, subject


def test_client_object_joins_base_url_and_merges_headers_and_auth():
    with FaultServer() as fs:
        src = """
local api = http.client{ base_url = %s, auth = { bearer = "tok-1" },
                         headers = { ["X-Client"] = "a", ["Accept"] = "text/plain" },
                         timeout = 5 }
local r = assert(api:get("echo", { query = { p = 1 } }))
out(r:json())
r = assert(api:post("/echo/", { json = { x = 1 }, headers = { accept = "application/json" } }))
out(r:json())
local basic = http.client{ base_url = %s, auth = { basic = { "user", "pa:ss" } } }
out(assert(basic:request{ method = "GET", url = "//echo" }):json())
""" % (lua_str(fs.url("/")), lua_str(fs.url("")))
        (get, post, basic), _ = run_lua(src)
        assert get["path"] == "/echo" and get["query"] == {"p": ["1"]}, get
        assert get["headers"]["authorization"] == "Bearer tok-1", get
        assert get["headers"]["x-client"] == "a" and get["headers"]["accept"] == "text/plain"
        assert post["path"] == "/echo/" and post["method"] == "POST", post
        assert post["headers"]["accept"] == "application/json", post
        assert basic["path"] == "/echo", basic
        assert basic["headers"]["authorization"] == "Basic dXNlcjpwYTpzcw==", basic


def test_misuse_raises_and_waiting_at_load_time_is_refused():
    d = tempfile.mkdtemp(prefix="luar-client-")
    with open(os.path.join(d, "s.lua"), "w") as f:
        f.write('local http = require "luar.http"\n'
                'local ok, e = pcall(http.request, { url = 5 })\n'
                'print("bad url", ok, e)\n'
                'ok, e = pcall(http.post, "http://x/", { json = {}, body = "" })\n'
                'print("two bodies", ok, e)\n'
                'ok, e = pcall(http.get, "http://x/", { headers = { ["Bad\\nName"] = "v" } })\n'
                'print("bad header", ok, e)\n')
    rc, out, err = run_cli(["run", "s.lua"], cwd=d)
    assert rc == 0, (rc, out, err)
    assert "bad url\tfalse\t" in out and "url must be a string" in out, out
    assert "two bodies\tfalse\t" in out and "give one of" in out, out
    assert "bad header\tfalse\t" in out, out
    app = 'local http = require "luar.http"\nhttp.get("http://127.0.0.1:1/")\n'
    with open(os.path.join(d, "main.lua"), "w") as f:
        f.write(app)
    rc, out, err = run_cli(["check", "--scripts", d], cwd=d)
    assert rc != 0 and "cannot wait here" in (out + err), (rc, out, err)


# (what the script passes, the option the error must name): each raises before sending.
# cache = 300 used to be ignored and breaker = "yes" taken as on.
WRONG_OPTIONS = [
    # a misspelt field of a table option is named, with what the option takes
    ('http.get(U, { retry = { attempt = 5 } })',
     "http.request: option retry.attempt is unknown (retry takes attempts, backoff, "
     "backoff_cap, max_retry_after, on)"),
    ('http.client { breaker = { failure = 2 } }',
     "http.client: option breaker.failure is unknown (breaker takes failures, reset)"),
    ('http.get(U, { cache = { tll = 60 } })',
     "http.request: option cache.tll is unknown (cache takes ttl, stale_if_error)"),
    ('http.get(U, { cache = 300 })', "http.request: option cache must be a table"),
    ('http.get(U, { cache = true })', "http.request: option cache must be a table"),
    ('http.get(U, { cache = { ttl = "60" } })', "http.request: option cache.ttl must be"),
    ('http.get(U, { cache = { stale_if_error = "yes" } })',
     "http.request: option cache.stale_if_error must be"),
    ('http.get(U, { breaker = "yes" })', "http.request: option breaker must be a boolean"),
    ('http.get(U, { breaker = { failures = 2.5 } })',
     "http.request: option breaker.failures must be an integer"),
    ('http.get(U, { breaker = { reset = "30" } })',
     "http.request: option breaker.reset must be a number"),
    ('http.get(U, { retry = "no" })', "http.request: option retry must be false or a table"),
    ('http.get(U, { retry = { attempts = "3" } })',
     "http.request: option retry.attempts must be an integer"),
    ('http.get(U, { retry = { on = 503 } })', "http.request: option retry.on must be a list"),
    ('http.get(U, { retry = { on = { "503" } } })', "http.request: option retry.on must list"),
    ('http.get(U, { retry = { on = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, '
     '17 } } })', "http.request: option retry.on lists more than 16"),
    ('http.get(U, { rate = 10 })', "http.request: option rate must be a string"),
    ('http.get(U, { rate = "fast" })', "http.request: option rate must look like"),
    ('http.get(U, { rate_max_wait = "1" })', "http.request: option rate_max_wait must be a number"),
    ('http.get(U, { timeout = "5" })', "http.request: option timeout must be seconds"),
    ('http.get(U, { timeout = { connect = "1" } })',
     "http.request: option timeout.connect must be a number"),
    ('http.get(U, { verify = "no" })', "http.request: option verify must be a boolean"),
    ('http.get(U, { raise_for_status = 1 })',
     "http.request: option raise_for_status must be a boolean"),
    ('http.get(U, { max_body = "1" })', "http.request: option max_body must be a number"),
    ('http.get(U, { headers = "x" })', "http.request: option headers must be a table"),
    ('http.get(U, { query = "a=1" })', "http.request: option query must be a table"),
    ('http.get(U, { query = { a = print } })', "http.request: option query: expected strings"),
    ('http.post(U, { form = { [1] = "x" } })', "http.request: option form: keys must be strings"),
    ('http.get(U, { proxy = 8080 })', "http.request: option proxy must be a string"),
    ('http.get(U, { fallback = 1 })', "http.request: option fallback must be a function"),
    ('http.client { cache = 300 }', "http.client: option cache must be a table"),
    ('http.client { breaker = "yes" }', "http.client: option breaker must be a boolean"),
    ('http.client { retry = { on = "5xx" } }', "http.client: option retry.on must be a list"),
    ('http.client { timeout = { total = "x" } }', "http.client: option timeout.total must be"),
    ('http.client { verify = "false" }', "http.client: option verify must be a boolean"),
    ('http.client { auth = "tok" }', "http.client: option auth must be a table"),
    ('http.client { auth = { basic = { "u", {} } } }',
     "http.client: option auth.basic password must be a string"),
    ('http.client { headers = { A = {} } }', "http.client: option headers: expected strings"),
    ('http.client { fallback = "x" }', "http.client: option fallback must be a function"),
    ('http.client {}:get(U, { headers = 5 })', "client:request: option headers must be a table"),
    ('http.client {}:get(U, { cache = 300 })', "http.request: option cache must be a table"),
]


def test_options_of_the_wrong_type_raise_naming_the_option():
    src = 'local U = "http://127.0.0.1:1/"\n'
    for i, (call, _) in enumerate(WRONG_OPTIONS):
        src += ('out({ i = %d, ok = pcall(function() return %s end), '
                'err = select(2, pcall(function() return %s end)) })\n' % (i + 1, call, call))
    # the right types still pass the checks (and reach the closed port)
    src += ('local res, err = http.get(U, { retry = false, breaker = true, cache = false, '
            'timeout = { connect = 1, total = 2 }, verify = true, raise_for_status = false })\n'
            'out({ kind = err and err.kind })\n'
            'local c = http.client { retry = false, breaker = false, cache = { ttl = 0 } }\n'
            'out({ kind = select(2, c:get(U)).kind })\n')
    vals, out = run_lua(src)
    assert len(vals) == len(WRONG_OPTIONS) + 2, out
    for (call, want), got in zip(WRONG_OPTIONS, vals):
        assert got["ok"] is False and want in got["err"], (call, want, got)
    assert vals[-2] == {"kind": "connect"} and vals[-1] == {"kind": "connect"}, vals[-2:]


CONCURRENT_APP = """
local http = require "luar.http"
http.route("GET", "/fan", function(req)
  local res, err = http.get(UPSTREAM .. "/sleep?s=0.2&n=" .. req.query.n, { timeout = 60 })
  if not res then return { status = 502, body = err.kind .. ": " .. err.message } end
  return { status = res.status, body = res.body }
end)
"""


def test_1000_concurrent_requests_from_1000_coroutines():
    with FaultServer() as fs:
        app = 'UPSTREAM = %s\n' % lua_str(fs.url("")) + CONCURRENT_APP
        cfg = 'return { limits = { max_connections = 4096 }, reload = { watch = false } }\n'
        with Luar({"main.lua": app}, config=cfg) as luar:
            def one(i):
                return luar.request("GET", "/fan?n=%d" % i, timeout=120)

            t0 = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(max_workers=1000) as pool:
                results = list(pool.map(one, range(1000)))
            elapsed = time.monotonic() - t0
            bad = [(s, b) for s, _, b in results if s != 200 or b != b"slept"]
            assert not bad, bad[:5]
            assert len(fs.requests("/sleep")) == 1000
            # 0.2 s each, one loop: they overlapped (serially it would take 200 s).
            assert elapsed < 60, elapsed


REDACT_APP = """
local http = require "luar.http"
http.route("GET", "/call", function(req)
  local res, err = http.get(UPSTREAM .. "/echo", {
    query = { token = "SECRET789", page = 2 },
    headers = { Authorization = "Bearer SECRET123", ["X-Api-Key"] = "SECRET456",
                Cookie = "sid=SECRETCOOKIE", ["X-Request-Id"] = "visible-1" } })
  local res2 = http.get("http://127.0.0.1:1/", { retry = false })
  return { status = res.status, body = res.body }
end)
"""


def test_debug_log_redacts_secrets_and_metrics_count_attempts():
    with FaultServer() as fs:
        app = 'UPSTREAM = %s\n' % lua_str(fs.url("")) + REDACT_APP
        with Luar({"main.lua": app}, env={"LUAR_LOG_LEVEL": "debug"},
                  config='return { reload = { watch = false } }\n') as luar:
            status, _, body = luar.request("GET", "/call")
            assert status == 200, body
            echoed = json.loads(body)["headers"]
            assert echoed["authorization"] == "Bearer SECRET123"  # sent, just never logged
            rec = luar.wait_log(lambda r: r.get("msg") == "http client request" and
                                r.get("status") == 200)
            assert rec["level"] == "debug" and rec["method"] == "GET", rec
            assert rec["headers"]["Authorization"] == "[redacted]", rec
            assert rec["headers"]["X-Api-Key"] == "[redacted]", rec
            assert rec["headers"]["Cookie"] == "[redacted]", rec
            assert rec["headers"]["X-Request-Id"] == "visible-1", rec
            assert "token=[redacted]" in rec["url"] and "page=2" in rec["url"], rec
            assert rec["duration_ms"] >= 0 and rec["bytes"] > 0, rec
            failed = luar.wait_log(lambda r: r.get("msg") == "http client request" and
                                   r.get("status") == "error")
            assert failed["error"] == "connect", failed
            _, _, metrics = luar.request("GET", "/metrics")
            metrics = metrics.decode()
            assert 'luar_http_client_requests_total{host="127.0.0.1",status="200"} 1' in metrics
            assert 'luar_http_client_requests_total{host="127.0.0.1",status="error"} 1' in metrics
            assert 'luar_http_client_duration_seconds_count{host="127.0.0.1"} 2' in metrics
            assert luar.stop() == 0
        everything = "\n".join(json.dumps(r) for r in luar.lines + luar.stderr_lines)
        for secret in ("SECRET123", "SECRET456", "SECRET789", "SECRETCOOKIE"):
            assert secret not in everything, secret
        assert "[redacted]" in everything


HANG_APP = """
local http = require "luar.http"
local log = require "luar.log"
http.route("GET", "/hang", function(req)
  log.info("calling upstream")
  local res, err = http.get(UPSTREAM .. "/hang", { timeout = 120 })
  return { status = 200, body = "unreachable" }
end)
"""


def test_shutdown_cancels_a_transfer_in_flight():
    with FaultServer() as fs:
        app = 'UPSTREAM = %s\n' % lua_str(fs.url("")) + HANG_APP
        cfg = 'return { shutdown = { grace = 0.5 }, reload = { watch = false } }\n'
        with Luar({"main.lua": app}, config=cfg) as luar:
            import threading
            got = {}
            t = threading.Thread(target=lambda: got.update(r=luar.request("GET", "/hang",
                                                                          timeout=30)))
            t.start()
            luar.wait_log(lambda r: r.get("msg") == "calling upstream")
            fs.wait_requests("/hang")  # the transfer is in flight upstream
            t0 = time.monotonic()
            assert luar.stop() == 0
            assert time.monotonic() - t0 < 10
            t.join(10)
            assert got["r"][0] == 503, got


def test_http2_is_used_when_the_server_offers_it():
    d = tempfile.mkdtemp(prefix="luar-h2-")
    try:
        make_pki(d)
        node = subprocess.Popen(["node", os.path.join(os.path.dirname(__file__), "h2_server.js"),
                                 os.path.join(d, "server.pem"), os.path.join(d, "server.key")],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            port = int(node.stdout.readline())
            url = "https://127.0.0.1:%d/h2" % port
            src = """
local ca = %s
for i = 1, 3 do
  local res = assert(http.get(%s, { ca = ca }))
  out({ status = res.status, echo = res:json() })
end
""" % (lua_str(os.path.join(d, "ca.pem")), lua_str(url))
            vals, _ = run_lua(src)
            assert len(vals) == 3
            for v in vals:
                assert v["status"] == 200 and v["echo"]["httpVersion"] == "2.0", v
        finally:
            node.stdin.close()
            node.wait(10)
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main([test_get_post_json_form_body_query_and_headers_reach_the_server,
          test_options_of_the_wrong_type_raise_naming_the_option,
          test_http_error_statuses_are_responses_unless_raise_for_status,
          test_transport_errors_have_kinds,
          test_connect_timeout_on_a_listener_that_never_accepts,
          test_max_body_too_large,
          test_tls_verification_fails_on_a_self_signed_server_unless_its_ca_is_given,
          test_mtls_client_certificate,
          test_client_object_joins_base_url_and_merges_headers_and_auth,
          test_misuse_raises_and_waiting_at_load_time_is_refused,
          test_1000_concurrent_requests_from_1000_coroutines,
          test_debug_log_redacts_secrets_and_metrics_count_attempts,
          test_shutdown_cancels_a_transfer_in_flight,
          test_http2_is_used_when_the_server_offers_it])
