"""Webhook signature schemes checked against independent implementations.

- `standard`: signatures made by the `standardwebhooks` npm package (tests/e2e/node_modules,
  `npm ci --prefix tests/e2e`) are verified by webhooks.verify inside `luar run`; headers
  printed by `luar webhook sign` are verified by standardwebhooks.
- `hmac`: signatures made by `openssl dgst -hmac` are verified by webhooks.verify; headers
  printed by `luar webhook sign` are checked against openssl.
- `luar webhook send` POSTs to a small receiver on 127.0.0.1 that checks the signature with
  Python's hmac module.
- CLI misuse: clear one-line messages and exit status 2.
"""
import base64
import hashlib
import hmac as pyhmac
import http.server
import json
import os
import secrets as pysecrets
import shutil
import subprocess
import tempfile
import threading
import time

from luar_e2e import main, run_cli

HERE = os.path.dirname(os.path.abspath(__file__))

# Signs [secret, msg_id, unix_seconds, payload] tuples with standardwebhooks, or verifies
# {secret, headers, payload} objects ("ok" or the library's error message).
NODE_JS = r"""
const { Webhook } = require("standardwebhooks");
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
const out = input.map((c) => {
  if (Array.isArray(c)) {
    const [secret, id, ts, payload] = c;
    return new Webhook(secret).sign(id, new Date(ts * 1000), payload);
  }
  try {
    new Webhook(c.secret).verify(c.payload, c.headers);
    return "ok";
  } catch (e) {
    return "error: " + e.message;
  }
});
process.stdout.write(JSON.stringify(out));
"""

# Runs webhooks.verify on each case of the JSON file arg[1]; prints one JSON line of results:
# true, or the err.kind and err.message, or "raised: <error>" for a raise.
VERIFY_LUA = r"""
local webhooks = require "luar.webhooks"
local json = require "luar.json"
local f = assert(io.open(arg[1], "rb"))
local cases = json.decode(f:read("a"))
f:close()
local results = {}
for i, c in ipairs(cases) do
  local opts = c.options or {}
  opts.headers = c.headers
  opts.body = c.body
  if #c.secrets == 1 and not c.as_list then opts.secret = c.secrets[1]
  else opts.secrets = c.secrets end
  opts.tolerance = c.tolerance
  local ok, res, err = pcall(webhooks.verify, c.scheme, opts)
  if not ok then
    results[i] = { name = c.name, raised = tostring(res) }
  elseif res == true and err == nil then
    results[i] = { name = c.name, ok = true }
  else
    assert(res == nil, "a failure returns nil first")
    results[i] = { name = c.name, kind = err.kind, message = err.message,
                   text = tostring(err) }
  end
end
print(json.encode(results))
"""


def node():
    exe = shutil.which("node")
    assert exe, "node is not installed (Debian package nodejs)"
    assert os.path.isdir(os.path.join(HERE, "node_modules", "standardwebhooks")), \
        "run `npm ci --prefix tests/e2e` (standardwebhooks is missing)"
    return exe


def run_node(items):
    p = subprocess.run([node(), "-e", NODE_JS], cwd=HERE, input=json.dumps(items).encode(),
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout)


def run_verify(cases):
    """Runs the cases through webhooks.verify in `luar run`; returns results by name."""
    with tempfile.TemporaryDirectory(prefix="luar-wh-") as d:
        script = os.path.join(d, "verify.lua")
        data = os.path.join(d, "cases.json")
        with open(script, "w") as f:
            f.write(VERIFY_LUA)
        with open(data, "w") as f:
            json.dump(cases, f)
        status, out, err = run_cli(["run", script, data], cwd=d)
        assert status == 0, "luar run failed (%d): %s%s" % (status, out, err)
        lines = [l for l in out.splitlines() if l.startswith("[")]
        assert lines, "no results printed: %r %r" % (out, err)
        results = json.loads(lines[-1])
    assert len(results) == len(cases)
    return {r["name"]: r for r in results}


def whsec():
    return "whsec_" + base64.b64encode(pysecrets.token_bytes(24)).decode()


def expect(results, name, outcome, message_part=None):
    r = results[name]
    if outcome == "ok":
        assert r.get("ok") is True, "%s: expected ok, got %r" % (name, r)
        return
    if outcome == "raised":
        assert "raised" in r, "%s: expected a raise, got %r" % (name, r)
        if message_part:
            assert message_part in r["raised"], "%s: %r" % (name, r)
        return
    assert r.get("kind") == outcome, "%s: expected %s, got %r" % (name, outcome, r)
    assert r["text"].startswith(outcome + ": "), r
    if message_part:
        assert message_part in r["message"], "%s: %r" % (name, r)


def test_standard_signatures_from_standardwebhooks_verify_in_lua():
    main_secret, other_secret = whsec(), whsec()
    now = int(time.time())
    body = json.dumps({"type": "invoice.paid", "data": {"id": "in_1", "amount": 4200,
                                                         "note": "caf\u00e9 \u20ac"}},
                      ensure_ascii=False)
    tampered = body.replace("4200", "4201")
    sign = [
        [main_secret, "msg_ok", now, body],            # 0 valid
        [other_secret, "msg_ok", now, body],           # 1 same message, wrong secret
        [main_secret, "msg_old", now - 400, body],     # 2 expired
        [main_secret, "msg_new", now + 400, body],     # 3 from the future
        [main_secret, "msg_edge", now - 200, body],    # 4 inside the tolerance
        [main_secret, "msg_raw", now, body],           # 5 for the prefix-less secret
    ]
    sigs = run_node(sign)

    def hdrs(mid, ts, sig, family="webhook"):
        return {family + "-id": mid, family + "-timestamp": str(ts),
                family + "-signature": sig}

    def case(name, headers, secrets, body_=body, **extra):
        c = {"name": name, "scheme": "standard", "headers": headers, "secrets": secrets,
             "body": body_}
        c.update(extra)
        return c

    cases = [
        case("valid", hdrs("msg_ok", now, sigs[0]), [main_secret]),
        case("tampered_body", hdrs("msg_ok", now, sigs[0]), [main_secret], tampered),
        case("wrong_secret", hdrs("msg_ok", now, sigs[1]), [main_secret]),
        case("rotated_second_secret", hdrs("msg_ok", now, sigs[1]),
             [main_secret, other_secret], as_list=True),
        case("missing_signature", {"webhook-id": "msg_ok", "webhook-timestamp": str(now)},
             [main_secret]),
        case("missing_timestamp", {"webhook-id": "msg_ok", "webhook-signature": sigs[0]},
             [main_secret]),
        case("malformed_signature", hdrs("msg_ok", now, "not-a-signature"), [main_secret]),
        case("malformed_timestamp", hdrs("msg_ok", "yesterday", sigs[0]), [main_secret]),
        case("expired", hdrs("msg_old", now - 400, sigs[2]), [main_secret]),
        case("future", hdrs("msg_new", now + 400, sigs[3]), [main_secret]),
        case("inside_tolerance", hdrs("msg_edge", now - 200, sigs[4]), [main_secret]),
        case("tighter_tolerance", hdrs("msg_edge", now - 200, sigs[4]), [main_secret],
             tolerance=100),
        case("several_one_matches",
             hdrs("msg_ok", now, "v1a,bm90IGVkMjU1MTk= %s %s v2,xyz" % (sigs[1], sigs[0])),
             [main_secret]),
        case("several_none_match", hdrs("msg_ok", now, "v1a,bm90 %s" % sigs[1]),
             [main_secret]),
        case("svix_headers", hdrs("msg_ok", now, sigs[0], "svix"), [main_secret]),
        case("secret_without_prefix", hdrs("msg_raw", now, sigs[5]),
             [main_secret[len("whsec_"):]]),
        case("mixed_case_header_names",
             {"Webhook-Id": "msg_ok", "WEBHOOK-TIMESTAMP": str(now),
              "Webhook-Signature": sigs[0]}, [main_secret]),
        case("unknown_scheme", hdrs("msg_ok", now, sigs[0]), [main_secret], scheme="nope"),
        case("bad_option", hdrs("msg_ok", now, sigs[0]), [main_secret],
             options={"header": "X-Sig"}),
        case("bad_secret", hdrs("msg_ok", now, sigs[0]), ["whsec_!!not base64!!"]),
    ]
    r = run_verify(cases)
    expect(r, "valid", "ok")
    expect(r, "tampered_body", "invalid_signature", "no signature in webhook-signature matches")
    expect(r, "wrong_secret", "invalid_signature")
    expect(r, "rotated_second_secret", "ok")
    expect(r, "missing_signature", "invalid_signature", "no webhook-signature")
    expect(r, "missing_timestamp", "invalid_signature", "no webhook-timestamp")
    expect(r, "malformed_signature", "invalid_signature", "holds no v1 signature")
    expect(r, "malformed_timestamp", "invalid_signature", "not a unix timestamp")
    expect(r, "expired", "expired", "in the past (tolerance 300 s)")
    expect(r, "future", "expired", "in the future")
    expect(r, "inside_tolerance", "ok")
    expect(r, "tighter_tolerance", "expired", "tolerance 100 s")
    expect(r, "several_one_matches", "ok")
    expect(r, "several_none_match", "invalid_signature")
    expect(r, "svix_headers", "ok")
    expect(r, "secret_without_prefix", "ok")
    expect(r, "mixed_case_header_names", "ok")
    expect(r, "unknown_scheme", "raised", 'unknown webhook scheme "nope" (known: standard, hmac')
    expect(r, "bad_option", "raised", 'unknown option "header"')
    expect(r, "bad_secret", "raised", "secret 1 is not")
    # No reason ever carries a secret or a signature.
    for res in r.values():
        text = json.dumps(res)
        for s in [main_secret, other_secret, main_secret[6:], other_secret[6:]] + \
                 [x.split(",", 1)[1] for x in sigs]:
            assert s not in text, "a reason leaks a secret or signature: %s" % text


def openssl_hmac(alg, key, data, encoding="hex"):
    """HMAC with the openssl command line, over `data` (bytes) on stdin."""
    p = subprocess.run(["openssl", "dgst", "-" + alg, "-hmac", key, "-binary"], input=data,
                       capture_output=True, timeout=30, check=True)
    mac = p.stdout
    assert len(mac) == {"sha1": 20, "sha256": 32, "sha512": 64}[alg]
    return mac.hex() if encoding == "hex" else base64.b64encode(mac).decode()


def test_hmac_signatures_from_openssl_verify_in_lua():
    key, other = "It's a Secret to Everybody", "old-secret"
    body = '{"id": "evt_7", "type": "push", "zen": "Keep it logically awesome."}'
    now = int(time.time())
    gh = {"header": "X-Hub-Signature-256", "algorithm": "sha256", "prefix": "sha256="}
    good = "sha256=" + openssl_hmac("sha256", key, body.encode())
    wrong = "sha256=" + openssl_hmac("sha256", other, body.encode())
    ts_opts = {"header": "X-Signature", "encoding": "base64", "algorithm": "sha512",
               "timestamp_header": "X-Timestamp", "signed_content": "{timestamp}.{body}"}

    def ts_case(name, ts, secret=key, **extra):
        sig = openssl_hmac("sha512", secret, ("%d.%s" % (ts, body)).encode(), "base64")
        c = {"name": name, "scheme": "hmac", "secrets": [key], "body": body,
             "options": dict(ts_opts),
             "headers": {"X-Signature": sig, "X-Timestamp": str(ts)}}
        c.update(extra)
        return c

    def case(name, headers, secrets=(key,), body_=body, options=gh):
        return {"name": name, "scheme": "hmac", "headers": headers, "secrets": list(secrets),
                "body": body_, "options": dict(options)}

    cases = [
        case("valid", {"X-Hub-Signature-256": good}),
        case("upper_case_hex", {"X-Hub-Signature-256": "sha256=" + good[7:].upper()}),
        case("tampered_body", {"X-Hub-Signature-256": good}, body_=body.replace("7", "8")),
        case("wrong_secret", {"X-Hub-Signature-256": wrong}),
        case("rotated_second_secret", {"X-Hub-Signature-256": wrong}, secrets=(key, other)),
        case("missing_header", {"X-Hub-Signature": good}),
        case("malformed_header", {"X-Hub-Signature-256": good[7:]}),
        case("several_one_matches", {"X-Hub-Signature-256": wrong + ", " + good}),
        case("repeated_header", {"X-Hub-Signature-256": [wrong, good]}),
        case("sha1_hex", {"X-Sig": openssl_hmac("sha1", key, body.encode())},
             options={"header": "X-Sig", "algorithm": "sha1"}),
        case("sha256_base64", {"X-Sig": openssl_hmac("sha256", key, body.encode(), "base64")},
             options={"header": "X-Sig", "encoding": "base64"}),
        ts_case("timestamped_valid", now),
        ts_case("timestamped_expired", now - 400),
        ts_case("timestamped_future", now + 400),
        ts_case("timestamped_wrong_secret", now, secret=other),
        case("missing_timestamp", {"X-Signature": "x"}, options=ts_opts),
        case("bad_algorithm", {"X-Sig": "x"}, options={"header": "X-Sig", "algorithm": "md5"}),
        case("no_header_option", {"X-Sig": "x"}, options={}),
    ]
    r = run_verify(cases)
    expect(r, "valid", "ok")
    expect(r, "upper_case_hex", "ok")
    expect(r, "tampered_body", "invalid_signature", "no signature in X-Hub-Signature-256")
    expect(r, "wrong_secret", "invalid_signature")
    expect(r, "rotated_second_secret", "ok")
    expect(r, "missing_header", "invalid_signature", "no X-Hub-Signature-256 header")
    expect(r, "malformed_header", "invalid_signature", "is malformed")
    expect(r, "several_one_matches", "ok")
    expect(r, "repeated_header", "ok")
    expect(r, "sha1_hex", "ok")
    expect(r, "sha256_base64", "ok")
    expect(r, "timestamped_valid", "ok")
    expect(r, "timestamped_expired", "expired", "X-Timestamp")
    expect(r, "timestamped_future", "expired", "in the future")
    expect(r, "timestamped_wrong_secret", "invalid_signature")
    expect(r, "missing_timestamp", "invalid_signature", "no X-Timestamp header")
    expect(r, "bad_algorithm", "raised", "algorithm must be")
    expect(r, "no_header_option", "raised", "option header is required")
    for res in r.values():
        text = json.dumps(res)
        assert key not in text and good[7:] not in text and wrong[7:] not in text, text


def parse_headers(out):
    headers = {}
    for line in out.splitlines():
        name, _, value = line.partition(": ")
        assert name and value, "not a header line: %r" % line
        headers[name] = value
    return headers


def test_cli_sign_standard_is_verified_by_standardwebhooks():
    secret = whsec()
    body = '{"type":"user.created","data":{"id":1}}'
    with tempfile.TemporaryDirectory(prefix="luar-wh-") as d:
        path = os.path.join(d, "event.json")
        with open(path, "w") as f:
            f.write(body)
        # now, with a generated id; from the file and from stdin
        status, out, err = run_cli(["webhook", "sign", "--scheme", "standard", "--secret",
                                    secret, path])
        assert status == 0, err
        from_file = parse_headers(out)
        status, out, err = run_cli(["webhook", "sign", "--scheme=standard", "--secret=" + secret],
                                   input=body.encode())
        assert status == 0, err
        from_stdin = parse_headers(out)
    for h in (from_file, from_stdin):
        assert sorted(h) == ["webhook-id", "webhook-signature", "webhook-timestamp"], h
        assert h["webhook-id"].startswith("msg_") and len(h["webhook-id"]) == 31
        assert abs(int(h["webhook-timestamp"]) - time.time()) < 60
    assert from_file["webhook-id"] != from_stdin["webhook-id"]
    # a fixed id and timestamp give exactly what standardwebhooks signs
    ts = int(time.time()) - 10
    status, out, err = run_cli(["webhook", "sign", "--scheme", "standard", "--secret", secret,
                                "--id", "msg_fixed", "--timestamp", str(ts)],
                               input=body.encode())
    assert status == 0, err
    fixed = parse_headers(out)
    verdicts = run_node([
        {"secret": secret, "headers": from_file, "payload": body},
        {"secret": secret, "headers": from_stdin, "payload": body},
        {"secret": secret, "headers": fixed, "payload": body},
        {"secret": secret, "headers": fixed, "payload": body + " "},
        {"secret": whsec(), "headers": fixed, "payload": body},
        [secret, "msg_fixed", ts, body],
    ])
    assert verdicts[:3] == ["ok", "ok", "ok"], verdicts
    assert verdicts[3].startswith("error") and verdicts[4].startswith("error"), verdicts
    assert fixed == {"webhook-id": "msg_fixed", "webhook-timestamp": str(ts),
                     "webhook-signature": verdicts[5]}


def test_cli_sign_hmac_matches_openssl():
    body = b'{"action":"opened","number":1}'
    status, out, err = run_cli(["webhook", "sign", "--scheme", "hmac", "--secret", "s3cr3t",
                                "--option", "header=X-Hub-Signature-256",
                                "--option", "prefix=sha256="], input=body)
    assert status == 0, err
    assert parse_headers(out) == {
        "X-Hub-Signature-256": "sha256=" + openssl_hmac("sha256", "s3cr3t", body)}
    status, out, err = run_cli(["webhook", "sign", "--scheme", "hmac", "--secret", "s3cr3t",
                                "--option", "header=X-Signature", "--option", "algorithm=sha1",
                                "--option", "encoding=base64",
                                "--option", "timestamp_header=X-Timestamp",
                                "--option", "signed_content=v0:{timestamp}:{body}",
                                "--timestamp", "1700000000"], input=body)
    assert status == 0, err
    assert parse_headers(out) == {
        "X-Signature": openssl_hmac("sha1", "s3cr3t", b"v0:1700000000:" + body, "base64"),
        "X-Timestamp": "1700000000"}


class Receiver:
    """A webhook receiver on 127.0.0.1 verifying Standard Webhooks with Python's hmac."""

    def __init__(self, secret, status_ok=200):
        key = base64.b64decode(secret[len("whsec_"):])
        self.requests = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                mid = self.headers.get("webhook-id", "")
                ts = self.headers.get("webhook-timestamp", "")
                content = ("%s.%s." % (mid, ts)).encode() + body
                expected = base64.b64encode(
                    pyhmac.new(key, content, hashlib.sha256).digest()).decode()
                sigs = [s.split(",", 1)[1] for s in
                        self.headers.get("webhook-signature", "").split() if s.startswith("v1,")]
                fresh = ts.isdigit() and abs(int(ts) - time.time()) <= 300
                ok = fresh and any(pyhmac.compare_digest(s, expected) for s in sigs)
                outer.requests.append({"headers": dict(self.headers), "body": body, "ok": ok})
                reply = json.dumps({"verified": ok}).encode()
                self.send_response(status_ok if ok else 401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/hooks" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_cli_send_is_verified_by_a_receiver():
    secret = whsec()
    body = '{"type":"order.paid","data":{"order":42}}'
    rx = Receiver(secret)
    try:
        status, out, err = run_cli(["webhook", "send", "--scheme", "standard", "--secret",
                                    secret, "--url", rx.url, "--header", "X-Test: yes"],
                                   input=body.encode())
        assert status == 0, (out, err)
        assert out.splitlines()[0] == "200 OK", out
        assert '"verified": true' in out
        req = rx.requests[-1]
        assert req["ok"] and req["body"] == body.encode()
        hdrs = {k.lower(): v for k, v in req["headers"].items()}
        assert hdrs["content-type"] == "application/json"
        assert hdrs["x-test"] == "yes"
        assert hdrs["webhook-id"].startswith("msg_")
        # the receiver refuses another secret's signature: 401, exit status 1
        status, out, err = run_cli(["webhook", "send", "--scheme", "standard", "--secret",
                                    whsec(), "--url", rx.url], input=body.encode())
        assert status == 1, (status, out, err)
        assert out.splitlines()[0] == "401 Unauthorized", out
        assert rx.requests[-1]["ok"] is False
        assert len(rx.requests) == 2
    finally:
        rx.close()
    # nobody listening: a transport error on stderr, exit status 1
    status, out, err = run_cli(["webhook", "send", "--scheme", "standard", "--secret", secret,
                                "--url", rx.url], input=body.encode())
    assert status == 1 and out == "", (status, out, err)
    assert err.startswith("luar webhook send: connect:"), err


def test_cli_errors_are_clear():
    body = b"{}"

    def fails(args, status, message):
        st, out, err = run_cli(["webhook"] + args, input=body)
        assert st == status, (args, st, out, err)
        assert message in err, (args, err)
        assert out == "", (args, out)

    fails(["sign", "--scheme", "nope", "--secret", "x"], 2,
          'luar webhook sign: unknown webhook scheme "nope" (known: standard, hmac')
    fails(["sign", "--scheme", "standard"], 2, "luar webhook sign: --secret is required")
    fails(["sign", "--secret", "x"], 2, "--scheme is required (one of: standard, hmac")
    fails(["sign", "--scheme", "hmac", "--secret", "x", "--option", "colour=blue"], 2,
          'scheme hmac: unknown option "colour"')
    fails(["sign", "--scheme", "hmac", "--secret", "x"], 2, "option header is required")
    fails(["sign", "--scheme", "hmac", "--secret", "x", "--option", "header"], 2,
          "--option expects KEY=VALUE")
    fails(["sign", "--scheme", "standard", "--secret", "whsec_%%%"], 2, "secret 1 is not")
    fails(["sign", "--scheme", "standard", "--secret", "x", "--timestamp", "soon"], 2,
          "--timestamp expects unix seconds")
    fails(["sign", "--scheme", "standard", "--secret", "x", "--bogus", "1"], 2,
          "unknown option --bogus")
    fails(["sign", "--scheme", "standard", "--secret", "x", "/nonexistent/body.json"], 2,
          "cannot read /nonexistent/body.json")
    fails(["send", "--scheme", "standard", "--secret", "x"], 2, "--url is required")
    fails(["send", "--scheme", "standard", "--secret", "x", "--url", "http://127.0.0.1:9/",
           "--header", "no colon"], 2, "--header expects 'Name: value'")
    fails(["sign", "--scheme", "standard", "--secret", "x", "--url", "http://x/"], 2,
          "unknown option --url")
    fails([], 2, 'expected "sign" or "send"')
    fails(["verify"], 2, 'expected "sign" or "send", not verify')
    # the secret never appears in an error
    st, out, err = run_cli(["webhook", "sign", "--scheme", "standard", "--secret",
                            "whsec_NotBase64!!Secret"], input=body)
    assert st == 2 and "NotBase64" not in err, err
    st, out, err = run_cli(["help"])
    assert st == 0 and "webhook sign --scheme S --secret X" in out and "webhook send" in out
    st, out, err = run_cli(["webhook", "sign", "--help"])
    assert st == 0 and "Schemes: standard, hmac" in out, (st, out, err)


if __name__ == "__main__":
    main([
        test_standard_signatures_from_standardwebhooks_verify_in_lua,
        test_hmac_signatures_from_openssl_verify_in_lua,
        test_cli_sign_standard_is_verified_by_standardwebhooks,
        test_cli_sign_hmac_matches_openssl,
        test_cli_send_is_verified_by_a_receiver,
        test_cli_errors_are_clear,
    ])
