"""The slack plugin against the real binary: the `slack` webhook scheme with signatures made
by `openssl dgst -hmac` (and Slack's own worked example from its documentation), sent to a
webhooks.route: handlers run, url_verification answers the challenge, retries are handled
once, bad signatures are 401s; `luar webhook sign --scheme slack` checked with Node's
crypto; and luar.slack's client against local stand-ins for slack.com/api and an incoming
webhook (127.0.0.1) that check what Slack checks and answer Slack's shapes."""
import http.server
import json
import shutil
import subprocess
import threading
import time
import urllib.parse

from luar_e2e import Luar, main, run_cli
from provider_e2e import (config, config_file, count_handled, handled, metric, parse_headers,
                          post, run_lua, stats, wait_idle)

SECRET = "8f742231b10e8888abcd99yyyzzz85a5-e2e"
OLD_SECRET = "a-previous-signing-secret-0123"
OTHER_SECRET = "some-other-apps-signing-secret"

# Slack's worked example (docs: "Verifying requests from Slack").
DOC_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
DOC_TS = 1531420618
DOC_BODY = ("token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&"
            "channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&"
            "command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2F"
            "commands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&"
            "trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c")
DOC_SIG = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"

CONFIG = config()


APP = r'''
local webhooks = require "luar.webhooks"
local log = require "luar.log"

webhooks.route("/hooks/slack", { scheme = "slack",
                                 secrets = { os.getenv("SLACK_SECRET"), os.getenv("SLACK_OLD") } })
webhooks.on("/hooks/slack", "app_mention", function(event, meta)
  log.info("handled", { handler = "mention", id = meta.id, type = meta.type, scheme = meta.scheme,
                        text = event.event.text, team = event.team_id, headers = meta.headers })
end)
webhooks.on("/hooks/slack", "command.deploy", function(event, meta)
  log.info("handled", { handler = "command", id = meta.id, type = meta.type,
                        command = event.command, text = event.text, user = event.user_name })
end)
webhooks.on("/hooks/slack", "block_actions", function(event, meta)
  log.info("handled", { handler = "action", id = meta.id, type = meta.type,
                        action = event.actions[1].action_id, user = event.user.id })
end)
webhooks.on("/hooks/slack", "#", function(event, meta)
  log.info("handled", { handler = "all", id = meta.id, type = meta.type })
end)
'''

ENV = {"SLACK_SECRET": SECRET, "SLACK_OLD": OLD_SECRET}
FORM_TYPE = "application/x-www-form-urlencoded"


def start():
    return Luar({"main.lua": APP}, config=CONFIG, env=ENV)


def openssl_sign(secret, ts, body):
    """X-Slack-Signature for body at ts, computed by `openssl dgst -sha256 -hmac`."""
    data = ("v0:%s:" % ts).encode() + (body.encode() if isinstance(body, str) else body)
    p = subprocess.run(["openssl", "dgst", "-sha256", "-hmac", secret], input=data,
                       capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return "v0=" + p.stdout.decode().strip().rsplit("= ", 1)[1]


def slack_headers(body, secret=SECRET, ts=None, content_type="application/json"):
    ts = int(time.time()) if ts is None else ts
    return {"X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": openssl_sign(secret, ts, body), "Content-Type": content_type}


# ---- the scheme -------------------------------------------------------------------------

VERIFY_LUA = r'''
local webhooks = require "luar.webhooks"
local json = require "luar.json"
local cases = json.decode(arg[1])
local out = {}
for i, c in ipairs(cases) do
  local ok, err = webhooks.verify("slack", { headers = c.headers, body = c.body,
                                             secrets = c.secrets, now = c.now })
  out[i] = ok and { ok = true } or { kind = err.kind, message = err.message }
end
print(json.encode(out))
'''


def test_slacks_documented_example_verifies():
    hdrs = {"X-Slack-Request-Timestamp": str(DOC_TS), "X-Slack-Signature": DOC_SIG}
    assert openssl_sign(DOC_SECRET, DOC_TS, DOC_BODY) == DOC_SIG  # the vector itself
    cases = [
        {"headers": hdrs, "body": DOC_BODY, "secrets": [DOC_SECRET], "now": DOC_TS + 60},
        {"headers": hdrs, "body": DOC_BODY, "secrets": [OTHER_SECRET, DOC_SECRET],
         "now": DOC_TS - 60},
        {"headers": hdrs, "body": DOC_BODY + "x", "secrets": [DOC_SECRET], "now": DOC_TS},
        {"headers": hdrs, "body": DOC_BODY, "secrets": [OTHER_SECRET], "now": DOC_TS},
        {"headers": hdrs, "body": DOC_BODY, "secrets": [DOC_SECRET], "now": DOC_TS + 301},
        {"headers": hdrs, "body": DOC_BODY, "secrets": [DOC_SECRET], "now": DOC_TS - 301},
        {"headers": {"X-Slack-Request-Timestamp": str(DOC_TS)}, "body": DOC_BODY,
         "secrets": [DOC_SECRET], "now": DOC_TS},
        {"headers": {"X-Slack-Signature": DOC_SIG}, "body": DOC_BODY, "secrets": [DOC_SECRET],
         "now": DOC_TS},
        {"headers": dict(hdrs, **{"X-Slack-Signature": DOC_SIG[3:]}), "body": DOC_BODY,
         "secrets": [DOC_SECRET], "now": DOC_TS},
    ]
    r, _ = run_lua(VERIFY_LUA, [json.dumps(cases)])
    assert r[0] == {"ok": True} and r[1] == {"ok": True}, r
    assert r[2]["kind"] == "invalid_signature" and "no signature" in r[2]["message"], r
    assert r[3]["kind"] == "invalid_signature", r
    assert r[4]["kind"] == "expired" and "301 s in the past" in r[4]["message"], r
    assert r[5]["kind"] == "expired" and "in the future" in r[5]["message"], r
    assert r[6] == {"kind": "invalid_signature", "message": "no x-slack-signature header"}, r
    assert r[7] == {"kind": "invalid_signature",
                    "message": "no x-slack-request-timestamp header"}, r
    assert r[8]["kind"] == "invalid_signature" and "malformed" in r[8]["message"], r


def test_events_api_callback_runs_its_handler_once_across_retries():
    with start() as luar:
        body = json.dumps({"token": "legacy", "team_id": "T061EG9R6", "api_app_id": "A0PNCHHK2",
                           "type": "event_callback", "event_id": "Ev0PV52K21",
                           "event_time": 1357000000,
                           "event": {"type": "app_mention", "user": "U061F7AUR",
                                     "text": "<@U0LAN0Z89> is it everything a river should be?",
                                     "ts": "1515449522.000016", "channel": "C0LAN2Q65"}})
        status, _, answer = post(luar, "/hooks/slack", body, slack_headers(body))
        assert status == 200, answer
        assert answer == {"received": True, "id": "Ev0PV52K21", "jobs": 2}, answer
        rec = handled(luar, "mention", "Ev0PV52K21")
        assert rec["type"] == "app_mention" and rec["scheme"] == "slack", rec
        assert rec["text"].endswith("river should be?") and rec["team"] == "T061EG9R6", rec
        assert "x-slack-request-timestamp" in rec["headers"], rec
        assert "x-slack-signature" not in rec["headers"], rec
        # Slack's retries: the same event_id, a new timestamp and signature, X-Slack-Retry-Num.
        for n in (1, 2):
            h = slack_headers(body, ts=int(time.time()) - n)
            h.update({"X-Slack-Retry-Num": str(n), "X-Slack-Retry-Reason": "http_timeout"})
            status, _, again = post(luar, "/hooks/slack", body, h)
            assert status == 200 and again == {"received": True, "id": "Ev0PV52K21",
                                               "duplicate": True}, again
        # Signed with the previous secret (rotation): accepted too.
        body2 = body.replace("Ev0PV52K21", "Ev0PV52K22")
        status, _, answer = post(luar, "/hooks/slack", body2, slack_headers(body2, OLD_SECRET))
        assert status == 200 and answer["id"] == "Ev0PV52K22", answer
        handled(luar, "mention", "Ev0PV52K22")
        wait_idle(luar)
        assert count_handled(luar, "mention", "Ev0PV52K21") == 1
        assert count_handled(luar, "all", "Ev0PV52K21") == 1
        assert metric(luar, "luar_webhooks_total", route="/hooks/slack",
                      outcome="duplicate") == 2


def test_url_verification_and_ssl_check_are_answered_at_once_and_not_stored():
    with start() as luar:
        challenge = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
        body = json.dumps({"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": challenge,
                           "type": "url_verification"})
        status, rh, answer = post(luar, "/hooks/slack", body, slack_headers(body))
        assert status == 200, answer
        assert rh["content-type"].startswith("application/json"), rh
        assert answer == {"challenge": challenge}, answer
        # A challenge with characters JSON escapes comes back as the same string.
        odd = 'a"b\\c\u00e9\u2028'
        body = json.dumps({"challenge": odd, "type": "url_verification"})
        status, _, answer = post(luar, "/hooks/slack", body, slack_headers(body))
        assert status == 200 and answer == {"challenge": odd}, answer
        # Slack's ssl_check of a slash command's URL: 200 at once, nothing stored.
        form = "ssl_check=1&token=gIkuvaNzQIHg97ATvDxqgjtO"
        status, _, answer = post(luar, "/hooks/slack", form,
                                 slack_headers(form, content_type=FORM_TYPE))
        assert status == 200 and answer == {}, answer
        # Unsigned, it is refused like any other request.
        status, _, answer = post(luar, "/hooks/slack", body, {"Content-Type": "application/json"})
        assert status == 401, answer
        assert stats(luar.data)["total"] == 0
        assert luar.count_logs(lambda r: r.get("msg") == "handled") == 0


def test_slash_command_and_interactive_payload_are_form_posts():
    with start() as luar:
        form = urllib.parse.urlencode([
            ("token", "gIkuvaNzQIHg97ATvDxqgjtO"), ("team_id", "T0001"),
            ("channel_id", "C2147483705"), ("user_id", "U2147483697"), ("user_name", "steve"),
            ("command", "/deploy"), ("text", "prod 1.2.3 & more"),
            ("response_url", "https://hooks.slack.com/commands/1234/5678"),
            ("trigger_id", "13345224609.738474920.8088930838d88f008e0")])
        h = slack_headers(form, content_type=FORM_TYPE)
        status, _, answer = post(luar, "/hooks/slack", form, h)
        assert status == 200, answer
        tid = "13345224609.738474920.8088930838d88f008e0"
        assert answer == {"received": True, "id": tid, "jobs": 2}, answer
        rec = handled(luar, "command", tid)
        assert rec["type"] == "command.deploy" and rec["command"] == "/deploy", rec
        assert rec["text"] == "prod 1.2.3 & more" and rec["user"] == "steve", rec
        # The same post again (a resubmission): one run.
        status, _, answer = post(luar, "/hooks/slack", form, h)
        assert answer.get("duplicate") is True, answer

        payload = {"type": "block_actions", "trigger_id": "12466734323.1395872398",
                   "user": {"id": "U123", "name": "ann"}, "team": {"id": "T9TK3CUKW"},
                   "actions": [{"action_id": "approve", "block_id": "b1", "type": "button",
                                "value": "click_me_123"}],
                   "response_url": "https://hooks.slack.com/actions/AABA1ABCD/1232321423432/D09"}
        form = urllib.parse.urlencode({"payload": json.dumps(payload)})
        status, _, answer = post(luar, "/hooks/slack", form,
                                 slack_headers(form, content_type=FORM_TYPE))
        assert status == 200 and answer["id"] == "12466734323.1395872398", answer
        rec = handled(luar, "action", "12466734323.1395872398")
        assert rec["type"] == "block_actions" and rec["action"] == "approve", rec
        assert rec["user"] == "U123", rec

        # A payload without trigger_id (view_closed) is named by a digest of the body.
        form = urllib.parse.urlencode({"payload": json.dumps({"type": "view_closed",
                                                              "view": {"id": "V1"}})})
        status, _, answer = post(luar, "/hooks/slack", form,
                                 slack_headers(form, content_type=FORM_TYPE))
        assert status == 200 and answer["id"].startswith("body:"), answer
        assert len(answer["id"]) == len("body:") + 64, answer
        rec = handled(luar, "all", answer["id"])
        assert rec["type"] == "view_closed", rec


def test_bad_signatures_are_401_with_the_outcome_and_nothing_is_stored():
    with start() as luar:
        body = json.dumps({"type": "event_callback", "event_id": "EvBAD1",
                           "event": {"type": "app_mention", "text": "hi"}})
        now = int(time.time())
        good = slack_headers(body, ts=now)
        cases = {
            "tampered body": (body.replace("hi", "ho"), good),
            "wrong secret": (body, slack_headers(body, OTHER_SECRET, ts=now)),
            "no signature": (body, {k: v for k, v in good.items() if k != "X-Slack-Signature"}),
            "no timestamp": (body, {k: v for k, v in good.items()
                                    if k != "X-Slack-Request-Timestamp"}),
            "timestamp changed": (body, dict(good, **{"X-Slack-Request-Timestamp": str(now - 1)})),
            "malformed signature": (body, dict(good, **{"X-Slack-Signature": "v0=abc"})),
            "unprefixed signature": (body, dict(good, **{"X-Slack-Signature":
                                                         good["X-Slack-Signature"][3:]})),
        }
        for name, (b, h) in cases.items():
            status, _, answer = post(luar, "/hooks/slack", b, h)
            assert status == 401, (name, status, answer)
            assert answer["error"].split(":")[0] in ("missing signature", "invalid signature"), \
                (name, answer)
        status, _, answer = post(luar, "/hooks/slack", body, cases["no signature"][1])
        assert answer["error"].startswith("missing signature"), answer
        for name, ts in (("expired", now - 400), ("future", now + 400)):
            status, _, answer = post(luar, "/hooks/slack", body, slack_headers(body, ts=ts))
            assert status == 401 and answer["error"].startswith("expired signature"), \
                (name, answer)
        assert metric(luar, "luar_webhooks_total", route="/hooks/slack",
                      outcome="invalid_signature") == len(cases) + 1
        assert metric(luar, "luar_webhooks_total", route="/hooks/slack", outcome="expired") == 2
        assert stats(luar.data)["total"] == 0
        text = "\n".join(json.dumps(r) for r in luar.lines)
        assert SECRET not in text and good["X-Slack-Signature"][3:] not in text
        # The genuine delivery is then accepted: nothing above recorded its id.
        status, _, answer = post(luar, "/hooks/slack", body, good)
        assert status == 200 and answer == {"received": True, "id": "EvBAD1", "jobs": 2}, answer
        handled(luar, "mention", "EvBAD1")


def test_signed_but_malformed_bodies_are_400():
    with start() as luar:
        for body, what in (
                ('{"type": "event_callback", "event": {"type": "app_mention"}}', "event_id"),
                ('{"event_id": "Ev1", "type": "event_callback", ', "JSON"),
                ('{"no": "type"}', "type"),
                ("foo=bar&baz=1", "payload= (interactivity) or command="),
                ("payload=%7B%22type", "JSON"),
                ("payload=%ZZ", "percent-encoded"),
                ('{"type": "url_verification"}', "challenge")):
            status, _, answer = post(luar, "/hooks/slack", body, slack_headers(body))
            assert status == 400 and "malformed body" in answer["error"], (body, answer)
            assert what in answer["error"] or what == "JSON", (body, answer)
        assert stats(luar.data)["total"] == 0


# ---- luar webhook sign --------------------------------------------------------------------

NODE_VERIFY = r'''
const crypto = require("crypto");
const { secret, headers, body } = JSON.parse(require("fs").readFileSync(0, "utf8"));
const ts = headers["X-Slack-Request-Timestamp"];
const want = "v0=" + crypto.createHmac("sha256", secret).update(`v0:${ts}:${body}`).digest("hex");
const got = headers["X-Slack-Signature"];
const same = got.length === want.length &&
  crypto.timingSafeEqual(Buffer.from(got), Buffer.from(want));
process.stdout.write(JSON.stringify({ same, ts }));
'''


def test_cli_sign_slack_is_verified_with_node_crypto():
    node = shutil.which("node")
    assert node, "node is not installed (Debian package nodejs)"
    body = ('{"type":"event_callback","event_id":"EvCLI",'
            '"event":{"type":"app_mention","text":"caf\u00e9"}}')
    status, out, err = run_cli(["webhook", "sign", "--config", config_file(), "--scheme", "slack",
                                "--secret", SECRET,
                                "--timestamp", "1700000000"], input=body.encode(),
                               env=None)
    assert status == 0, err
    h = parse_headers(out)
    assert sorted(h) == ["X-Slack-Request-Timestamp", "X-Slack-Signature"], h
    assert h["X-Slack-Request-Timestamp"] == "1700000000", h
    for secret, same in ((SECRET, True), (OTHER_SECRET, False)):
        p = subprocess.run([node, "-e", NODE_VERIFY], capture_output=True, timeout=60,
                           input=json.dumps({"secret": secret, "headers": h,
                                             "body": body}).encode())
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout) == {"same": same, "ts": "1700000000"}, p.stdout
    # Now: the signature is fresh, and a route accepts what `luar webhook send` posts.
    with start() as luar:
        status, out, err = run_cli(["webhook", "send", "--config", config_file(),
                                    "--scheme", "slack", "--secret", SECRET,
                                    "--url", "http://127.0.0.1:%d/hooks/slack" % luar.port],
                                   input=body.encode(), env=None)
        assert status == 0 and out.startswith("200"), (out, err)
        handled(luar, "mention", "EvCLI")


# ---- luar.slack: the Web API client and incoming webhooks -------------------------------

TOKEN = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"


class FakeSlack:
    """slack.com/api and hooks.slack.com on 127.0.0.1, checking what Slack checks: the bearer
    token, a JSON body declared as such with its charset, the method's required arguments;
    answering Slack's shapes: HTTP 200 with ok true/false, 429 with Retry-After."""

    def __init__(self):
        self.requests = []
        self.rate_limited = set()  # channels answered 429 once
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.requests.append({"path": self.path, "headers": dict(self.headers),
                                       "body": body, "at": time.monotonic()})
                if self.path.startswith("/services/"):
                    return self.incoming(body)
                if not self.path.startswith("/api/"):
                    return self.answer(404, "text/plain", b"not found")
                method = self.path[len("/api/"):]
                auth = self.headers.get("Authorization", "")
                if not auth:
                    return self.ok_false("not_authed")
                if auth != "Bearer " + TOKEN:
                    return self.ok_false("invalid_auth")
                ctype = self.headers.get("Content-Type", "")
                if ctype.split(";")[0].strip() != "application/json":
                    return self.ok_false("invalid_arguments")
                try:
                    args = json.loads(body)
                except ValueError:
                    return self.ok_false("invalid_json")
                if method == "chat.postMessage":
                    return self.post_message(args)
                if method == "conversations.info":
                    if args.get("channel") != "C123":
                        return self.ok_false("channel_not_found")
                    return self.ok({"channel": {"id": "C123", "name": "general"}})
                return self.ok_false("unknown_method")

            def post_message(self, args):
                channel = args.get("channel")
                if not channel:
                    return self.ok_false("channel_not_found")
                if channel == "C_RATE" and channel not in outer.rate_limited:
                    outer.rate_limited.add(channel)
                    return self.answer(429, "application/json",
                                       b'{"ok":false,"error":"ratelimited"}', {"Retry-After": "1"})
                if channel == "C_ALWAYS_RATE":
                    return self.answer(429, "application/json",
                                       b'{"ok":false,"error":"ratelimited"}', {"Retry-After": "1"})
                if channel not in ("C123", "C_RATE"):
                    return self.ok_false("channel_not_found")
                if not args.get("text") and not args.get("blocks"):
                    return self.ok_false("no_text")
                return self.ok({"channel": channel, "ts": "1503435956.000247",
                                "message": {"text": args.get("text", ""), "type": "message",
                                            "thread_ts": args.get("thread_ts"),
                                            "bot_id": "B123"}})

            def incoming(self, body):
                if self.path != "/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX" and \
                        self.path != "/services/T000/B000/ARCHIVED0000000000000000":
                    return self.answer(403, "text/plain", b"invalid_token")
                if self.path.endswith("ARCHIVED0000000000000000"):
                    return self.answer(410, "text/plain", b"channel_is_archived")
                try:
                    msg = json.loads(body)
                except ValueError:
                    return self.answer(400, "text/plain", b"invalid_payload")
                if not msg.get("text") and not msg.get("blocks"):
                    return self.answer(400, "text/plain", b"no_text")
                return self.answer(200, "text/html", b"ok")

            def ok(self, fields):
                fields = dict(fields, ok=True)
                self.answer(200, "application/json; charset=utf-8", json.dumps(fields).encode())

            def ok_false(self, error):
                self.answer(200, "application/json; charset=utf-8",
                            json.dumps({"ok": False, "error": error}).encode())

            def answer(self, status, ctype, data, headers=None):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


CLIENT_LUA = r'''
local slack = require "luar.slack"
local json = require "luar.json"
local time = require "luar.time"
local base = arg[1]
local out = {}
local function record(name, res, err)
  out[name] = { res = res, kind = err and err.kind, code = err and err.code,
                status = err and err.status, retry_after = err and err.retry_after,
                message = err and err.message, text = err and tostring(err) }
end
local c = slack.client{ token = os.getenv("SLACK_TOKEN"), base_url = base .. "/api" }
record("posted", c:chat_post_message{
  channel = "C123", text = "Hello", thread_ts = "1503435956.000100",
  blocks = { { type = "section", text = { type = "mrkdwn", text = "*Hi*" } } } })
record("not_found", c:chat_post_message{ channel = "C_NOPE", text = "x" })
local t0 = time.monotonic()
record("rate", c:chat_post_message{ channel = "C_RATE", text = "after a wait" })
out.rate_waited = time.monotonic() - t0
local quick = slack.client{ token = os.getenv("SLACK_TOKEN"), base_url = base .. "/api",
                            max_retries = 1 }
record("rate_exhausted", quick:chat_post_message{ channel = "C_ALWAYS_RATE", text = "x" })
record("api", c:api("conversations.info", { channel = "C123" }))
record("bad_token", slack.client{ token = "xoxb-wrong-token-value", base_url = base .. "/api" }
                      :chat_post_message{ channel = "C123", text = "x" })
local hooks = base .. "/services/T000/B000/"
record("hook_ok", slack.incoming_webhook(hooks .. "XXXXXXXXXXXXXXXXXXXXXXXX", "Hello"))
record("hook_blocks", slack.incoming_webhook(hooks .. "XXXXXXXXXXXXXXXXXXXXXXXX",
                                             { blocks = { { type = "divider" } } }))
record("hook_empty", slack.incoming_webhook(hooks .. "XXXXXXXXXXXXXXXXXXXXXXXX", {}))
record("hook_archived", slack.incoming_webhook(hooks .. "ARCHIVED0000000000000000", "x"))
record("hook_revoked", slack.incoming_webhook(hooks .. "REVOKED00000000000000000", "x"))
local ok, raised = pcall(c.chat_post_message, c, { text = "no channel" })
out.missing_channel = raised
ok, raised = pcall(slack.client, { base_url = base })
out.missing_token = raised
record("transport", slack.client{ token = "xoxb-x-y-z", base_url = "http://127.0.0.1:1/api" }
                      :chat_post_message{ channel = "C1", text = "x" })
print(json.encode(out))
'''


def test_client_against_a_slack_stand_in():
    fake = FakeSlack()
    try:
        # At debug level luar.http logs every request's URL: the webhook's secret segment
        # must still not appear.
        r, output = run_lua(CLIENT_LUA, [fake.base], env={"SLACK_TOKEN": TOKEN},
                            conf=config('log = { level = "debug" },'))
    finally:
        fake.close()
    posted = r["posted"]["res"]
    assert posted["ok"] is True and posted["ts"] == "1503435956.000247", r["posted"]
    assert posted["message"]["thread_ts"] == "1503435956.000100", posted
    first = fake.requests[0]
    assert first["path"] == "/api/chat.postMessage", first
    assert first["headers"]["Authorization"] == "Bearer " + TOKEN
    assert first["headers"]["Content-Type"] == "application/json; charset=utf-8", first
    sent = json.loads(first["body"])
    assert sent["channel"] == "C123" and sent["text"] == "Hello", sent
    assert sent["blocks"][0]["text"]["text"] == "*Hi*", sent

    nf = r["not_found"]
    assert nf.get("res") is None and nf["kind"] == "slack" and nf["code"] == "channel_not_found", nf
    assert nf["text"] == "slack: slack chat.postMessage: channel_not_found", nf

    rate = r["rate"]
    assert rate["res"]["ok"] is True, rate
    tries = [q for q in fake.requests if b'"C_RATE"' in q["body"]]
    assert len(tries) == 2 and tries[1]["at"] - tries[0]["at"] >= 0.95, tries
    assert r["rate_waited"] >= 0.95, r["rate_waited"]

    ex = r["rate_exhausted"]
    assert ex["kind"] == "rate_limited" and ex["status"] == 429 and ex["retry_after"] == 1, ex
    assert len([q for q in fake.requests if b"C_ALWAYS_RATE" in q["body"]]) == 2

    assert r["api"]["res"]["channel"]["name"] == "general", r["api"]
    assert r["bad_token"]["code"] == "invalid_auth", r["bad_token"]

    assert r["hook_ok"]["res"] is True and r["hook_blocks"]["res"] is True, r
    hooks = [q for q in fake.requests if q["path"].startswith("/services/")]
    assert json.loads(hooks[0]["body"]) == {"text": "Hello"}, hooks[0]
    assert hooks[0]["headers"]["Content-Type"] == "application/json; charset=utf-8"
    assert "Authorization" not in hooks[0]["headers"], hooks[0]
    assert r["hook_empty"]["code"] == "no_text" and r["hook_empty"]["status"] == 400, r
    assert r["hook_archived"]["code"] == "channel_is_archived", r
    assert r["hook_archived"]["status"] == 410, r
    assert r["hook_revoked"]["code"] == "invalid_token", r

    assert "channel must be" in r["missing_channel"], r
    assert "token must be" in r["missing_token"], r
    assert r["transport"]["kind"] == "connect", r["transport"]
    # Neither the token nor the webhook's secret reaches the output, though the requests
    # were logged.
    assert output.count('"msg":"http client request"') >= 10, output[-2000:]
    assert TOKEN not in output and "XXXXXXXXXXXXXXXXXXXXXXXX" not in output


if __name__ == "__main__":
    main([test_slacks_documented_example_verifies,
          test_events_api_callback_runs_its_handler_once_across_retries,
          test_url_verification_and_ssl_check_are_answered_at_once_and_not_stored,
          test_slash_command_and_interactive_payload_are_form_posts,
          test_bad_signatures_are_401_with_the_outcome_and_nothing_is_stored,
          test_signed_but_malformed_bodies_are_400,
          test_cli_sign_slack_is_verified_with_node_crypto,
          test_client_against_a_slack_stand_in])
