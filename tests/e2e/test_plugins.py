"""The plugin loader and the host API table against the real binary (SPEC §5): the fixture
plugin (tests/fixtures/plugins/good.c) reaches every function of luar_host_t from Lua;
the broken fixtures (broken.c) are each refused with their exact message; `luar plugins`,
`luar check`, `luar run` and `luar webhook sign|send` load plugins too."""
import hashlib
import hmac
import http.server
import json
import os
import re
import select
import signal
import socket
import tempfile
import threading
import time

from luar_e2e import Luar, free_port, main, run_cli, wait_until

FIX = os.environ.get("LUAR_FIXTURE_PLUGINS") or os.path.join(
    os.environ.get("LUAR_BUILD_DIR", "build"), "tests", "fixtures", "plugins")
GOOD, ABI, NOSYM, INITFAIL, DUP, BADNAME = (os.path.join(FIX, d) for d in (
    "good", "abi", "nosym", "initfail", "dup", "badname"))

FX_SECRET = "fixture-webhook-secret"
API_KEY = "sk_fixture_api_key_0123456789"
TOKEN = "tok-from-the-environment-42"


def lua_list(items):
    return "{ " + ", ".join(json.dumps(i) for i in items) + " }"


def conf(dirs, extra=""):
    return ("return { reload = { watch = false }, shutdown = { grace = 2 },\n"
            "  jobs = { lease = 5, heartbeat = 1, poll = 0.05 },\n"
            "  plugins = { dir = %s,%s } }\n" % (lua_list(dirs), extra))


def tmpdir():
    return tempfile.mkdtemp(prefix="luar-plugins-")


def write_conf(tmp, text):
    path = os.path.join(tmp, "luar.conf.lua")
    with open(path, "w") as f:
        f.write(text)
    return path


class Upstream:
    """A local HTTP server the plugin's http_request talks to: records what arrives."""

    def __init__(self):
        self.requests = []
        self.cond = threading.Condition()
        self.hang_closed = threading.Event()
        up = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_any(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                with up.cond:
                    up.requests.append({"method": self.command, "path": self.path,
                                        "headers": {k.lower(): v for k, v in self.headers.items()},
                                        "body": body})
                    up.cond.notify_all()
                if self.path.startswith("/hang"):
                    # never answer; notice when the client (a cancelled plugin call) leaves
                    r, _, _ = select.select([self.connection], [], [], 20)
                    if r and self.connection.recv(1) == b"":
                        up.hang_closed.set()
                    self.close_connection = True
                    return
                out = json.dumps({"got": body.decode(), "path": self.path}).encode()
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Upstream", "yes")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, pred, timeout=20):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for r in self.requests:
                    if pred(r):
                        return r
                left = deadline - time.monotonic()
                assert left > 0, "upstream request not seen: %r" % self.requests
                self.cond.wait(left)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


APP = r'''
local http = require "luar.http"
local jobs = require "luar.jobs"
local webhooks = require "luar.webhooks"
local log = require "luar.log"
local fx = require "luar.fixture"
local UP = os.getenv("UPSTREAM")
local function hex(s) return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end

jobs.define("record", { queue = "plugq", retries = 0 }, function(args)
  local status = fx.fetch(UP .. "/job?x=" .. args.x)
  log.info("record ran", { x = args.x, status = status })
end)
jobs.define("sleeper", { timeout = 0.3, retries = 0 }, function() fx.sleep(30) end)
jobs.define("hang", { timeout = 0.3, retries = 0 }, function() fx.fetch(UP .. "/hang") end)

webhooks.route("/hooks/fx", { scheme = "fixture", secret = os.getenv("FX_SECRET") })
webhooks.on("/hooks/fx", "#", function(event, meta)
  log.info("fx handled", { id = meta.id, type = meta.type, scheme = meta.scheme,
                           headers = meta.headers, n = event.n })
end)

http.route("GET", "/info", function()
  local h = fx.host()
  local slept = fx.sleep(0.05)
  return { json = {
    host = h, slept = slept, ticks = fx.ticks(), canceled = fx.canceled(), now = fx.now(),
    greeting = fx.config("greeting"), limit = fx.config_number("limit"),
    limit_text = fx.config("limit"), enabled = fx.config_bool("enabled"),
    disabled = fx.config_bool("disabled"), deep = fx.config("nested.deep"),
    first = fx.config("list.1"), absent = fx.config("absent") or "nil",
    not_number = fx.config_number("greeting") or "nil",
    secret = fx.secret("FIXTURE_TOKEN"), no_secret = fx.secret("NO_SUCH_SECRET") or "nil",
    b64 = fx.b64("hello, plugin"), unb64 = fx.unb64("aGVsbG8sIHBsdWdpbg"),
    unb64url = hex(fx.unb64("_-8")), unb64std = hex(fx.unb64("+/8=")),
    unhex = fx.unhex("6C7561"), bad_hex = select(2, fx.unhex("zz")),
    json_id = fx.json_pick('{"a":[1,{"id":"no"}],"id":"evt_\\u00e9"}', "id"),
    json_count = fx.json_pick('[1, {"x": 2}, "three"]', ""),
    json_absent = fx.json_pick('{"a":1}', "id") or "nil",
    json_bad = select(2, fx.json_pick('{"a":', "a")),
    json_why = select(3, fx.json_pick('{"a":', "a")),
    hmac = fx.hmac_hex("sha256", "key", "data"), random = fx.random_hex(16),
    random2 = fx.random_hex(16), eq = fx.equals("abc", "abc"), ne = fx.equals("abc", "abd"),
    count = fx.count("a", 2), bad_metric = fx.register_metric("luar_other_total"),
    watch_short = fx.watch("abc"),
  } }
end)

http.route("GET", "/log", function()
  fx.log("warn", "secret is " .. fx.secret("FIXTURE_TOKEN") .. " key is " .. fx.config("api_key"))
  return { json = { ok = true } }
end)

http.route("POST", "/fetch", function(req)
  local status, body, headers = fx.fetch(UP .. "/echo", "POST", req.body, { ["X-Test"] = "1" })
  local nothing, err = fx.fetch(req.query.closed)
  return { json = { status = status, body = body, upstream = headers["x-upstream"],
                    err_kind = err.kind, err_message = err.message, nothing = nothing == nil } }
end)

http.route("POST", "/enqueue", function()
  local id = fx.enqueue("record", '{"x": 7}')
  local first = fx.enqueue("record", '{"x": 8}', { key = "once" })
  local second = fx.enqueue("record", '{"x": 8}', { key = "once" })
  local bad, bad_err = fx.enqueue("record", "not json")
  local j = jobs.get(id)
  return { json = { id = id, queue = j and j.queue, first = first, second = second,
                    bad = bad == nil, bad_err = bad_err } }
end)

http.route("POST", "/cancel", function()
  return { json = { sleeper = jobs.enqueue("sleeper"), hang = jobs.enqueue("hang") } }
end)
'''


def fx_sign(secret, ts, body):
    mac = hmac.new(secret.encode(), str(ts).encode() + b"." + body, hashlib.sha256)
    return "t=%d,v1=%s" % (ts, mac.hexdigest())


def good_luar(up, **kw):
    extra = ('\n    fixture = { greeting = "hi", limit = 5, enabled = true, disabled = false,\n'
             '                api_key = "%s", nested = { deep = "x" }, list = { "one" } }'
             % API_KEY)
    return Luar(scripts={"main.lua": APP}, config=conf([GOOD], extra),
                env={"UPSTREAM": up.url, "FX_SECRET": FX_SECRET, "FIXTURE_TOKEN": TOKEN}, **kw)


def test_good_plugin_reaches_every_host_function():
    up = Upstream()
    try:
        with good_luar(up) as l:
            init = l.wait_log(lambda r: r.get("msg", "").startswith("fixture init"))
            assert init["msg"] == "fixture init: greeting=hi" and init["plugin"] == "fixture", init
            loaded = l.wait_log(lambda r: r.get("msg") == "plugin loaded")
            assert loaded["plugin"] == "fixture" and loaded["version"] == "1.2.3", loaded
            assert loaded["path"] == os.path.join(GOOD, "fixture.so"), loaded

            info = l.get_json("/info")
            _, out, _ = run_cli(["version"])
            assert info["host"] == {"abi": 1, "plugin": "fixture", "complete": True,
                                    "version": out.split()[1]}, info
            assert info["slept"] is True and info["ticks"] > 0 and info["canceled"] == 0, info
            assert abs(info["now"] - time.time()) < 5, info
            assert (info["greeting"], info["limit"], info["limit_text"]) == ("hi", 5, "5"), info
            assert (info["enabled"], info["disabled"], info["deep"], info["first"]) == \
                (True, False, "x", "one"), info
            assert info["absent"] == "nil" and info["not_number"] == "nil", info
            assert info["secret"] == TOKEN and info["no_secret"] == "nil", info
            assert info["b64"] == "aGVsbG8sIHBsdWdpbg==", info
            assert info["unb64"] == "hello, plugin" and info["unhex"] == "lua", info
            assert (info["unb64url"], info["unb64std"]) == ("ffef", "fbff"), info
            assert info["bad_hex"] == -6, info  # LUAR_PLUGIN_EPARSE
            assert info["json_id"] == "evt_\u00e9" and info["json_count"] == 3, info
            assert info["json_absent"] == "nil" and info["json_bad"] == -6, info
            assert "at byte" in info["json_why"], info
            assert info["hmac"] == hmac.new(b"key", b"data", hashlib.sha256).hexdigest(), info
            assert len(info["random"]) == 32 and info["random"] != info["random2"], info
            assert info["eq"] is True and info["ne"] is False, info
            assert info["count"] == 0 and info["bad_metric"] == -2, info  # EINVAL
            assert info["watch_short"] == -2, info
            refused = l.wait_log(lambda r: r.get("msg", "").startswith("metric luar_other_total"))
            assert refused == dict(refused, level="warn", plugin="fixture", msg=(
                "metric luar_other_total refused: names of plugin fixture's metrics start "
                "with luar_fixture_")), refused

            # metrics registered by the plugin are on /metrics
            status, _, body = l.request("GET", "/metrics")
            text = body.decode()
            assert status == 200
            assert 'luar_fixture_calls_total{label="a"} 2' in text, text
            assert "\nluar_fixture_level 2" in text and "\nluar_fixture_sizes_count 1" in text, text

            # log: the plugin field, and secrets (the store's, the watched API key) scrubbed
            l.get_json("/log")
            rec = l.wait_log(lambda r: r.get("msg", "").startswith("secret is"))
            assert rec["plugin"] == "fixture" and rec["level"] == "warn", rec
            assert rec["msg"] == "secret is [REDACTED] key is [REDACTED]", rec

            # http_request: method, header and body reach the server; a refused connection
            closed = socket.socket()
            closed.bind(("127.0.0.1", 0))
            port = closed.getsockname()[1]
            closed.close()
            status, _, body = l.request("POST", "/fetch?closed=http://127.0.0.1:%d/" % port,
                                        body=b"ping")
            got = json.loads(body)
            assert status == 200 and got["status"] == 201 and got["upstream"] == "yes", got
            assert json.loads(got["body"]) == {"got": "ping", "path": "/echo"}, got
            assert got["nothing"] is True and got["err_kind"] == "connect", got
            req = up.wait(lambda r: r["path"] == "/echo")
            assert req["method"] == "POST" and req["body"] == b"ping", req
            assert req["headers"]["x-test"] == "1", req

            # job_enqueue: stored, then run; the definition's queue; a duplicate key
            status, _, body = l.request("POST", "/enqueue")
            got = json.loads(body)
            assert status == 200 and got["id"] and got["queue"] == "plugq", got
            assert got["first"] and got["second"] is False, got
            assert got["bad"] is True and got["bad_err"] == "job_enqueue failed (-2)", got
            up.wait(lambda r: r["path"] == "/job?x=7")
            up.wait(lambda r: r["path"] == "/job?x=8")
            l.wait_log(lambda r: r.get("msg") == "record ran" and r.get("x") == 8)
            assert l.count_logs(lambda r: r.get("msg") == "record ran" and r.get("x") == 8) == 1

            # the cancel path: a job's timeout kills tasks waiting on a plugin timer and on a
            # plugin HTTP request; cleanup(op, 1) stops both (the server sees the hang-up)
            status, _, _ = l.request("POST", "/cancel")
            assert status == 200
            for job in ("sleeper", "hang"):
                rec = l.wait_log(lambda r: r.get("msg") == "job failed, now dead" and
                                 r.get("job") == job)
                assert rec["error"].startswith("timed out after 0.3 s"), rec
            assert up.hang_closed.wait(10), "the cancelled request's connection stayed open"
            assert l.get_json("/info")["canceled"] == 2

            # the plugin's scheme on a webhooks.route, signed independently
            body = b'{"n": 3}'
            ts = int(time.time())
            headers = {"X-Fixture-Signature": fx_sign(FX_SECRET, ts, body),
                       "X-Fixture-Id": "evt_42", "X-Fixture-Event": "thing.done",
                       "Content-Type": "application/json"}
            status, _, resp = l.request("POST", "/hooks/fx", body=body, headers=headers)
            assert status in (200, 202), (status, resp)
            rec = l.wait_log(lambda r: r.get("msg") == "fx handled")
            assert (rec["id"], rec["type"], rec["scheme"], rec["n"]) == \
                ("evt_42", "thing.done", "fixture", 3), rec
            assert "x-fixture-signature" not in rec["headers"], rec
            bad = dict(headers, **{"X-Fixture-Signature": fx_sign("wrong", ts, body)})
            status, _, resp = l.request("POST", "/hooks/fx", body=body, headers=bad)
            assert status == 401, (status, resp)
            old = dict(headers, **{"X-Fixture-Signature": fx_sign(FX_SECRET, ts - 3600, body)})
            status, _, resp = l.request("POST", "/hooks/fx", body=body, headers=old)
            assert status == 401, (status, resp)
            rec = l.wait_log(lambda r: r.get("outcome") == "expired")
            assert re.fullmatch(r"expired signature: x-fixture-signature timestamp %d is "
                                r"360\d s in the past \(tolerance 300 s\)" % (ts - 3600),
                                rec["reason"]), rec

            # `luar webhook send` signs with the plugin's scheme and reaches the route
            cpath = write_conf(l.dir, conf([GOOD]))
            code, out, err = run_cli(["webhook", "send", "--config", cpath, "--scheme",
                                      "fixture", "--secret", FX_SECRET, "--id", "evt_cli",
                                      "--url", "http://127.0.0.1:%d/hooks/fx" % l.port],
                                     input=b'{"n": 5}')
            assert code == 0 and out.startswith("20"), (code, out, err)
            rec = l.wait_log(lambda r: r.get("msg") == "fx handled" and r.get("id") == "evt_cli")
            assert rec["n"] == 5, rec

            # a reload is a new VM: require calls open() again and the module still works
            l.send_signal(signal.SIGHUP)
            l.wait_log(lambda r: r.get("msg") == "scripts reloaded" and r.get("generation") == 2)
            assert l.get_json("/info")["greeting"] == "hi"

            # fini at shutdown, after the last VM closed; the ticker does not hold the exit
            assert l.stop() == 0
            for t in l._readers:
                t.join(10)
            assert l.count_logs(lambda r: r.get("msg", "").startswith("fixture fini") and
                                r.get("plugin") == "fixture") == 1, l.lines[-10:]
    finally:
        up.close()


def test_webhook_sign_with_a_plugin_scheme_matches_an_independent_hmac():
    tmp = tmpdir()
    cpath = write_conf(tmp, conf([GOOD]))
    body = b'{"hello": "world"}'
    code, out, err = run_cli(["webhook", "sign", "--config", cpath, "--scheme", "fixture",
                              "--secret", FX_SECRET, "--timestamp", "1700000000", "--id",
                              "evt_1"], input=body, cwd=tmp)
    assert code == 0, (code, out, err)
    assert out == ("X-Fixture-Id: evt_1\nX-Fixture-Event: fixture.event\n"
                   "X-Fixture-Signature: %s\n" % fx_sign(FX_SECRET, 1700000000, body)), out
    # the plugin's scheme is listed by --help and by the "which scheme" errors
    code, out, err = run_cli(["webhook", "sign", "--config", cpath, "--help"], cwd=tmp)
    assert code == 0 and out.splitlines()[-1].endswith(": standard, hmac, fixture"), out
    code, out, err = run_cli(["webhook", "sign", "--config", cpath, "--secret", "x"], cwd=tmp)
    assert code == 2 and err.strip().endswith("(one of: standard, hmac, fixture)"), err
    # without the plugin the scheme is unknown, and the message says which ones exist
    code, out, err = run_cli(["webhook", "sign", "--scheme", "fixture", "--secret", "x"],
                             input=body, cwd=tmpdir())  # no luar.conf.lua there
    assert code == 2 and 'unknown webhook scheme "fixture" (known: standard, hmac' in err, err


def test_luar_run_waits_for_a_plugin_call_on_an_unreferenced_timer():
    tmp = tmpdir()
    cpath = write_conf(tmp, conf([GOOD]))
    script = os.path.join(tmp, "s.lua")
    with open(script, "w") as f:
        f.write('local fx = require "luar.fixture"\n'
                'print("slept", fx.sleep(0.3))\n'
                'print("after")\n')
    t0 = time.monotonic()
    code, out, err = run_cli(["run", "--config", cpath, script], cwd=tmp)
    assert code == 0, (code, out, err)
    assert "slept\ttrue\n" in out and out.index("slept\ttrue") < out.index("after\n"), out
    assert time.monotonic() - t0 >= 0.3


LISTING_REFUSED = [
    "refused: %s/wrong_abi.so: built for plugin ABI 999, this luar has plugin ABI 1" % ABI,
    'refused: %s/no_symbol.so: no "luar_plugin" symbol: not a luar plugin (export it with '
    "LUAR_PLUGIN_DEFINE)" % NOSYM,
    "refused: %s/initfail.so: init failed: plugins.initfail.token is not set" % INITFAIL,
    'refused: %s/dup_b.so: duplicate plugin name "dup": already loaded from %s/dup_a.so'
    % (DUP, DUP),
    'refused: %s/bad_name.so: bad plugin name "Bad-Name": names are [a-z][a-z0-9_]*, at most '
    "64 characters" % BADNAME,
]


def test_luar_plugins_lists_the_loaded_and_why_each_other_was_refused():
    tmp = tmpdir()
    cpath = write_conf(tmp, conf([GOOD, ABI, NOSYM, INITFAIL, DUP, BADNAME]))
    code, out, err = run_cli(["plugins", "--config", cpath], cwd=tmp)
    assert code == 0 and err == "", (code, out, err)
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "VERSION", "ABI", "PATH", "DESCRIPTION"], out
    assert lines[1].split(None, 4) == ["fixture", "1.2.3", "1", os.path.join(GOOD, "fixture.so"),
                                       "exercises every host API function (tests only)"], out
    assert lines[2].split(None, 4) == ["dup", "0.0.1", "1", os.path.join(DUP, "dup_a.so"),
                                       "a plugin the loader refuses (tests only)"], out
    assert lines[3:] == LISTING_REFUSED, out
    # a configuration error is exit 2, and so is a plugins.dir that is not a folder list
    bad = write_conf(tmp, "return { plugins = { dir = 42 } }\n")
    code, out, err = run_cli(["plugins", "--config", bad], cwd=tmp)
    assert code == 2 and "plugins.dir: expected a folder or a list of folders, got number" in err


def test_serve_starts_without_refused_plugins_the_config_does_not_name():
    with Luar(scripts={"main.lua": 'local fx = require "luar.fixture"\n'
                                   'local ok = pcall(require, "luar.initfail")\n'
                                   'assert(not ok, "a refused plugin has no module")\n'},
              config=conf([GOOD, ABI, NOSYM, INITFAIL, DUP, BADNAME])) as l:
        got = []
        for expected in LISTING_REFUSED:
            path, why = expected[len("refused: "):].split(": ", 1)
            rec = l.wait_log(lambda r: r.get("msg") == "plugin refused" and r.get("path") == path)
            assert rec["level"] == "warn" and rec["error"] == why, rec
            got.append(rec)
        assert l.get_json("/healthz")["status"] == "ok"
    # `luar check` reports them on stderr and passes: serve would start
    tmp = tmpdir()
    os.makedirs(os.path.join(tmp, "scripts"))
    with open(os.path.join(tmp, "scripts", "main.lua"), "w") as f:
        f.write('require "luar.fixture"\n')
    cpath = write_conf(tmp, conf([GOOD, ABI, INITFAIL]))
    code, out, err = run_cli(["check", "--config", cpath], cwd=tmp)
    assert code == 0 and out.startswith("ok: "), (code, out, err)
    assert err.splitlines() == [
        "luar: plugin %s/wrong_abi.so: built for plugin ABI 999, this luar has plugin ABI 1"
        % ABI,
        "luar: plugin %s/initfail.so: init failed: plugins.initfail.token is not set"
        % INITFAIL], err


def test_a_refused_plugin_the_config_names_stops_the_host():
    tmp = tmpdir()
    os.makedirs(os.path.join(tmp, "scripts"))
    with open(os.path.join(tmp, "scripts", "main.lua"), "w") as f:
        f.write("")
    cpath = write_conf(tmp, conf([INITFAIL, ABI], '\n    initfail = { token = "t" },'
                                               '\n    wrong_abi = {}, nope = {}'))
    why = [
        "luar: plugins.initfail: %s/initfail.so: init failed: plugins.initfail.token is not set "
        "(it is, but this plugin always fails)" % INITFAIL,
        "luar: plugins.nope: no plugin named nope in %s, %s" % (INITFAIL, ABI),
        "luar: plugins.wrong_abi: %s/wrong_abi.so: built for plugin ABI 999, this luar has "
        "plugin ABI 1" % ABI,
    ]
    for args in (["check"], ["serve", "--listen", "127.0.0.1:0"]):
        code, out, err = run_cli(args + ["--config", cpath], cwd=tmp, timeout=30)
        lines = sorted(line for line in err.splitlines() if line.startswith("luar: plugins."))
        assert code == 2 and lines == why, (args, code, out, err)
    # `luar plugins` still lists, says what would stop serve, and exits 0
    code, out, err = run_cli(["plugins", "--config", cpath], cwd=tmp)
    assert code == 0 and "no plugins loaded" in out, (code, out, err)
    assert sorted(err.splitlines()) == why, err


def test_each_worker_inits_its_plugins():
    up = Upstream()
    try:
        with good_luar(up, workers=2, listen="127.0.0.1:%d" % free_port(),
                       wait_listening=False) as l:
            l.wait_log(lambda r: r.get("msg") == "listening")
            # the supervisor (which checks the scripts) and each of the two workers
            wait_until(lambda: l.count_logs(
                lambda r: r.get("msg") == "fixture init: greeting=hi") >= 3, "three inits")
    finally:
        up.close()


if __name__ == "__main__":
    main([test_good_plugin_reaches_every_host_function,
          test_webhook_sign_with_a_plugin_scheme_matches_an_independent_hmac,
          test_luar_run_waits_for_a_plugin_call_on_an_unreferenced_timer,
          test_luar_plugins_lists_the_loaded_and_why_each_other_was_refused,
          test_serve_starts_without_refused_plugins_the_config_does_not_name,
          test_a_refused_plugin_the_config_names_stops_the_host,
          test_each_worker_inits_its_plugins])
