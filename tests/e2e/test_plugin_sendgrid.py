"""The sendgrid plugin (plugins/sendgrid): its mail/send client against a stand-in of
SendGrid's API on 127.0.0.1 (sendgrid_standin.py: Bearer key, JSON content type, required
fields, 202 + X-Message-Id, the {"errors": [...]} shapes), and its `sendgrid` webhook scheme
with ECDSA P-256 signatures made by Node's crypto from a key pair the test generates,
cross-checked by the @sendgrid/eventwebhook library (tests/e2e/node_modules)."""
import base64
import json
import os
import tempfile
import time

from luar_e2e import Luar, main, run_cli
from plugin_e2e import CONFIG, run_lua as run_plain, run_node, write_config
from sendgrid_standin import SendGridStandIn

API_KEY = "SG.test-key.0123456789abcdefghijklmnopqrstuvwxyz"

PRELUDE = r"""
local json = require "luar.json"
local sendgrid = require "luar.sendgrid"
local function out(t) print(json.encode(t)) end
local function outcome(id, err)
  if id then return { id = id } end
  return { kind = err.kind, message = err.message, field = err.field, status = err.status,
           errors = err.errors, help = err.help, text = tostring(err) }
end
"""


def run_lua(src, timeout=60):
    """Runs PRELUDE + src with `luar run`; returns the JSON values it printed, one a line."""
    return run_plain(PRELUDE + src, timeout=timeout)


def client(sg):
    return "local sg = sendgrid.client{ api_key = %s, base_url = %s }\n" % (
        json.dumps(API_KEY), json.dumps(sg.base_url))


# Raw attachment bytes with NULs, high bytes and a multi-byte character: the plugin must
# base64 them itself.
PDF = b"%PDF-1.4\x00\x01\x02\xff\xfe binary \xe2\x82\xac end"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"


def lua_bytes(b):
    return '"' + "".join("\\%d" % c for c in b) + '"'


def test_rich_message_builds_the_exact_mail_send_json():
    send_at = int(time.time()) + 3600
    with SendGridStandIn(API_KEY) as sg:
        src = client(sg) + """
local id, err = sg:send{
  from = { email = "billing@shop.example", name = "Shop Billing" },
  reply_to = "support@shop.example",
  to = { "ada@example.com", { email = "grace@example.com", name = "Grace" } },
  cc = "cc@example.com",
  bcc = { { email = "audit@shop.example" } },
  subject = "Your invoice",
  text = "Invoice attached.",
  html = "<p>Invoice <img src=\\"cid:logo\\"> attached.</p>",
  attachments = {
    { content = %s, filename = "invoice.pdf", type = "application/pdf" },
    { content = %s, filename = "logo.png", type = "image/png", disposition = "inline",
      content_id = "logo" },
  },
  categories = { "invoice", "billing" },
  custom_args = { order_id = 42, tenant = "t-1" },
  asm = { group_id = 123, groups_to_display = { 123, 456 } },
  tracking_settings = { click_tracking = { enable = true, enable_text = false },
                        open_tracking = { enable = true } },
  send_at = %d,
}
out(outcome(id, err))
""" % (lua_bytes(PDF), lua_bytes(PNG), send_at)
        results = run_lua(src)
        assert len(sg.requests) == 1, sg.requests
        req = sg.requests[0]
        assert req["status"] == 202, req
        assert results == [{"id": req["message_id"]}], results
        assert req["headers"]["authorization"] == "Bearer " + API_KEY
        assert req["headers"]["content-type"].startswith("application/json")
        assert req["headers"]["user-agent"].startswith("luar-sendgrid/")
        expected = {
            "from": {"email": "billing@shop.example", "name": "Shop Billing"},
            "reply_to": {"email": "support@shop.example"},
            "personalizations": [{
                "to": [{"email": "ada@example.com"},
                       {"email": "grace@example.com", "name": "Grace"}],
                "cc": [{"email": "cc@example.com"}],
                "bcc": [{"email": "audit@shop.example"}],
            }],
            "subject": "Your invoice",
            "content": [{"type": "text/plain", "value": "Invoice attached."},
                        {"type": "text/html",
                         "value": "<p>Invoice <img src=\"cid:logo\"> attached.</p>"}],
            "attachments": [
                {"content": base64.b64encode(PDF).decode(), "filename": "invoice.pdf",
                 "type": "application/pdf"},
                {"content": base64.b64encode(PNG).decode(), "filename": "logo.png",
                 "type": "image/png", "disposition": "inline", "content_id": "logo"},
            ],
            "categories": ["invoice", "billing"],
            "custom_args": {"order_id": "42", "tenant": "t-1"},
            "asm": {"group_id": 123, "groups_to_display": [123, 456]},
            "tracking_settings": {"click_tracking": {"enable": True, "enable_text": False},
                                  "open_tracking": {"enable": True}},
            "send_at": send_at,
        }
        assert req["json"] == expected, json.dumps(req["json"], indent=1)


def test_dynamic_template_with_per_recipient_data():
    with SendGridStandIn(API_KEY) as sg:
        src = client(sg) + """
local id, err = sg:send{
  from = "noreply@shop.example",
  template_id = "d-0123456789abcdef0123456789abcdef",
  dynamic_template_data = { shop = "Acme", items = { { sku = "A1", qty = 2 } } },
  personalizations = {
    { to = "ada@example.com", dynamic_template_data = { name = "Ada", vip = true } },
    { to = { "bob@example.com" }, cc = "carol@example.com", subject = "For Bob",
      substitutions = { ["-code-"] = 77 }, custom_args = { n = 1 } },
  },
}
out(outcome(id, err))
"""
        results = run_lua(src)
        assert len(sg.requests) == 1 and sg.requests[0]["status"] == 202, sg.requests
        assert results == [{"id": sg.requests[0]["message_id"]}]
        shared = {"shop": "Acme", "items": [{"sku": "A1", "qty": 2}]}
        assert sg.requests[0]["json"] == {
            "from": {"email": "noreply@shop.example"},
            "template_id": "d-0123456789abcdef0123456789abcdef",
            "personalizations": [
                {"to": [{"email": "ada@example.com"}],
                 "dynamic_template_data": {"name": "Ada", "vip": True}},
                {"to": [{"email": "bob@example.com"}], "cc": [{"email": "carol@example.com"}],
                 "subject": "For Bob", "substitutions": {"-code-": "77"},
                 "custom_args": {"n": "1"}, "dynamic_template_data": shared},
            ],
        }, json.dumps(sg.requests[0]["json"], indent=1)


def test_sandbox_leaves_the_callers_mail_settings_alone():
    # One mail_settings table reused: the sandboxed test message must not turn the real
    # one that follows into a sandboxed one (SendGrid would accept it and send nothing).
    with SendGridStandIn(API_KEY) as sg:
        src = client(sg) + """
local settings = { bypass_list_management = { enable = true } }
local function msg(sandbox)
  return { from = "noreply@shop.example", to = "ada@example.com", subject = "Hi",
           text = "Hello", mail_settings = settings, sandbox = sandbox }
end
out(outcome(sg:send(msg(true))))
out(outcome(sg:send(msg(false))))
out({ left = settings.sandbox_mode == nil })
"""
        test, real, left = run_lua(src)
        assert "id" in test and "id" in real, (test, real)
        assert left == {"left": True}, left
        sent = [r["json"]["mail_settings"] for r in sg.requests]
    assert sent == [{"bypass_list_management": {"enable": True},
                     "sandbox_mode": {"enable": True}},
                    {"bypass_list_management": {"enable": True}}], sent


def test_invalid_messages_are_refused_before_sending():
    cases = {
        "no_from": ('{ to = "a@example.com", subject = "s", text = "t" }', "from"),
        "bad_from": ('{ from = "not-an-address", to = "a@example.com", subject = "s", '
                     'text = "t" }', "from"),
        "no_recipient": ('{ from = "f@example.com", subject = "s", text = "t" }',
                         "personalizations[1].to"),
        "empty_to": ('{ from = "f@example.com", to = {}, subject = "s", text = "t" }',
                     "personalizations[1].to"),
        "bad_recipient": ('{ from = "f@example.com", to = { "a@example.com", "nope" }, '
                          'subject = "s", text = "t" }', "personalizations[1].to[2]"),
        "twice": ('{ from = "f@example.com", to = "a@example.com", bcc = "A@example.com", '
                  'subject = "s", text = "t" }', "personalizations[1].bcc[1]"),
        "no_subject": ('{ from = "f@example.com", to = "a@example.com", text = "t" }',
                       "subject"),
        "no_content": ('{ from = "f@example.com", to = "a@example.com", subject = "s" }',
                       "content"),
        "data_without_template": ('{ from = "f@example.com", to = "a@example.com", '
                                  'subject = "s", text = "t", dynamic_template_data = {} }',
                                  "personalizations[1].dynamic_template_data"),
        "inline_without_cid": ('{ from = "f@example.com", to = "a@example.com", subject = "s",'
                               ' text = "t", attachments = { { content = "x", filename = '
                               '"x.png", disposition = "inline" } } }',
                               "attachments[1].content_id"),
        "attachment_without_name": ('{ from = "f@example.com", to = "a@example.com", '
                                    'subject = "s", text = "t", attachments = { { content = '
                                    '"x" } } }', "attachments[1].filename"),
        "eleven_categories": ('{ from = "f@example.com", to = "a@example.com", subject = "s",'
                              ' text = "t", categories = { "1","2","3","4","5","6","7","8",'
                              '"9","10","11" } }', "categories"),
        "asm_without_group": ('{ from = "f@example.com", to = "a@example.com", subject = "s",'
                              ' text = "t", asm = { groups_to_display = { 1 } } }',
                              "asm.group_id"),
        "send_at_far": ('{ from = "f@example.com", to = "a@example.com", subject = "s", '
                        'text = "t", send_at = os.time() + 80 * 3600 }', "send_at"),
        "both_forms": ('{ from = "f@example.com", to = "a@example.com", subject = "s", '
                       'text = "t", personalizations = { { to = "b@example.com" } } }',
                       "personalizations"),
    }
    with SendGridStandIn(API_KEY) as sg:
        src = client(sg)
        for name, (msg, _) in cases.items():
            src += "do local r = outcome(sg:send(%s)); r.name = %s; out(r) end\n" % (
                msg, json.dumps(name))
        src += ("local ok, e = pcall(sg.send, sg, 'not a table')\n"
                "out({ name = 'raised', ok = ok, e = tostring(e) })\n")
        results = {r["name"]: r for r in run_lua(src)}
        assert sg.requests == [], "nothing may be sent: %r" % sg.requests
    for name, (_, field) in cases.items():
        r = results[name]
        assert r["kind"] == "invalid", (name, r)
        assert r["field"] == field, (name, r)
        assert r["text"].startswith("invalid: sendgrid: " + field + " "), (name, r)
    assert results["raised"]["ok"] is False and "message table" in results["raised"]["e"]


def test_api_error_shapes_reach_err():
    with SendGridStandIn(API_KEY) as sg:
        src = client(sg) + """
out(outcome(sg:send{ from = "me@unverified.example", to = "a@example.com", subject = "s",
                     text = "t" }))
out(outcome(sg:send{ from = "me@shop.example", to = "a@example.com",
                     template_id = "d-nope" }))
local bad = sendgrid.client{ api_key = "SG.wrong-key", base_url = %s }
out(outcome(bad:send{ from = "me@shop.example", to = "a@example.com", subject = "s",
                      text = "t" }))
""" % json.dumps(sg.base_url)
        forbidden, bad_template, unauthorized = run_lua(src)
        assert [r["status"] for r in sg.requests] == [403, 400, 401], sg.requests
    assert forbidden["kind"] == "http" and forbidden["status"] == 403, forbidden
    assert forbidden["field"] == "from" and "verified Sender Identity" in forbidden["message"]
    assert forbidden["help"].startswith("https://sendgrid.com/docs/"), forbidden
    assert forbidden["errors"][0]["field"] == "from"
    assert forbidden["text"].startswith("http: sendgrid: POST /v3/mail/send answered 403: ")
    assert bad_template["status"] == 400 and bad_template["field"] == "template_id"
    assert "must be a valid GUID" in bad_template["message"], bad_template
    assert unauthorized["status"] == 401 and unauthorized.get("field") is None, unauthorized
    assert "authorization grant is invalid" in unauthorized["message"], unauthorized
    assert "SG.wrong-key" not in unauthorized["text"]


def test_client_misuse_raises():
    src = """
for _, conf in ipairs({ {}, { api_key = 5 }, { api_key = "k", base_url = 3 } }) do
  local ok, e = pcall(sendgrid.client, conf)
  out({ ok = ok, e = tostring(e) })
end
"""
    results = run_lua(src)
    assert [r["ok"] for r in results] == [False, False, False], results
    assert "api_key is required" in results[0]["e"], results
    assert "base_url must be a string" in results[2]["e"], results



# ---- the `sendgrid` webhook scheme ------------------------------------------------------

# Generates P-256 key pairs with Node's crypto and signs "<timestamp><body>" with them as
# SendGrid does; every signature is checked by @sendgrid/eventwebhook before it is used.
# Also verifies {pub, body, sig, ts} items with @sendgrid/eventwebhook ("verify" mode).
NODE_JS = r"""
const crypto = require("crypto");
const { EventWebhook } = require("@sendgrid/eventwebhook");
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
const ew = new EventWebhook();
const check = (pub, body, sig, ts) =>
  ew.verifySignature(ew.convertPublicKeyToECDSA(pub), body, sig, String(ts));
if (input.verify) {
  process.stdout.write(JSON.stringify(input.verify.map((v) => check(v.pub, v.body, v.sig, v.ts))));
} else {
  process.stdout.write(JSON.stringify(sign(input.sign)));
}
function sign(items) {
const pair = (curve) => crypto.generateKeyPairSync("ec", { namedCurve: curve });
const keys = { main: pair("prime256v1"), other: pair("prime256v1"), p384: pair("secp384r1") };
const spki = (k) => k.publicKey.export({ type: "spki", format: "der" }).toString("base64");
const out = { sigs: [] };
for (const [name, k] of Object.entries(keys)) {
  out[name] = { b64: spki(k), pem: k.publicKey.export({ type: "spki", format: "pem" }),
                private_pem: k.privateKey.export({ type: "pkcs8", format: "pem" }) };
}
for (const m of items) {
  const k = keys[m.key];
  const sig = crypto.sign("sha256", Buffer.from(String(m.ts) + m.body, "utf8"), k.privateKey)
    .toString("base64");
  if (!check(spki(k), m.body, sig, m.ts)) throw new Error("eventwebhook refuses a signature");
  out.sigs.push(sig);
}
return out;
}
"""


def node(payload):
    return run_node(NODE_JS, payload, "@sendgrid/eventwebhook")


SIG = "X-Twilio-Email-Event-Webhook-Signature"
TS = "X-Twilio-Email-Event-Webhook-Timestamp"


def events_body(*events):
    """A batch as SendGrid posts it: a JSON array, one object per event."""
    return json.dumps([dict({"email": "ada@example.com", "timestamp": 1700000000,
                             "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
                             "category": ["invoice"]}, event=e, sg_event_id=i,
                            sg_message_id="14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0")
                       for (e, i) in events], ensure_ascii=False)


VERIFY_LUA = r"""
local webhooks = require "luar.webhooks"
local f = assert(io.open(arg[1], "rb"))
local cases = json.decode(f:read("a"))
f:close()
for _, c in ipairs(cases) do
  local ok, res, err = pcall(webhooks.verify, "sendgrid", { headers = c.headers, body = c.body,
                             secrets = c.secrets, tolerance = c.tolerance })
  if not ok then out({ name = c.name, raised = tostring(res) })
  elseif res == true then out({ name = c.name, ok = true })
  else out({ name = c.name, kind = err.kind, message = err.message }) end
end
"""


def run_verify(cases):
    results = run_plain(PRELUDE + VERIFY_LUA, data=cases)
    assert len(results) == len(cases), results
    return {r["name"]: r for r in results}


def test_signatures_from_node_crypto_verify_in_lua():
    now = int(time.time())
    body = events_body(("delivered", "ev-1"), ("open", "ev-2"))
    accented = events_body(("bounce", "ev-\u00e9\u20ac"))
    k = node({"sign": [
        {"key": "main", "ts": now, "body": body},         # 0
        {"key": "other", "ts": now, "body": body},        # 1
        {"key": "main", "ts": now - 400, "body": body},   # 2 expired
        {"key": "main", "ts": now + 400, "body": body},   # 3 from the future
        {"key": "main", "ts": now, "body": accented},     # 4 UTF-8 body
    ]})
    sigs, main_key, other = k["sigs"], k["main"], k["other"]

    def case(name, sig, ts, secrets, body_=body, **extra):
        h = {}
        if sig is not None:
            h[SIG] = sig
        if ts is not None:
            h[TS] = str(ts)
        c = {"name": name, "headers": h, "body": body_, "secrets": secrets}
        c.update(extra)
        return c

    cases = [
        case("valid_base64_key", sigs[0], now, [main_key["b64"]]),
        case("valid_pem_key", sigs[0], now, [main_key["pem"]]),
        case("valid_private_key_secret", sigs[0], now, [main_key["private_pem"]]),
        case("valid_utf8_body", sigs[4], now, [main_key["b64"]], accented),
        case("rotated", sigs[1], now, [main_key["b64"], other["b64"]]),
        case("wrong_key", sigs[1], now, [main_key["b64"]]),
        case("tampered_body", sigs[0], now, [main_key["b64"]], body.replace("ev-2", "ev-3")),
        case("timestamp_changed", sigs[0], now - 1, [main_key["b64"]]),
        case("expired", sigs[2], now - 400, [main_key["b64"]]),
        case("future", sigs[3], now + 400, [main_key["b64"]]),
        case("inside_tolerance", sigs[2], now - 400, [main_key["b64"]], tolerance=600),
        case("missing_signature", None, now, [main_key["b64"]]),
        case("missing_timestamp", sigs[0], None, [main_key["b64"]]),
        case("malformed_signature", "not base64 at all!", now, [main_key["b64"]]),
        case("not_der", base64.b64encode(b"\x01" * 64).decode(), now, [main_key["b64"]]),
        case("bad_secret", sigs[0], now, ["this is not a key"]),
        case("p384_secret", sigs[0], now, [k["p384"]["b64"]]),
    ]
    r = run_verify(cases)

    def expect(name, kind, part=None):
        got = r[name]
        if kind == "ok":
            assert got.get("ok") is True, (name, got)
        elif kind == "raised":
            assert part in got.get("raised", ""), (name, got)
        else:
            assert got.get("kind") == kind, (name, got)
            assert part is None or part in got["message"], (name, got)

    for name in ("valid_base64_key", "valid_pem_key", "valid_private_key_secret",
                 "valid_utf8_body", "rotated", "inside_tolerance"):
        expect(name, "ok")
    expect("wrong_key", "invalid_signature", "does not verify with the configured key")
    expect("tampered_body", "invalid_signature", "does not verify")
    expect("timestamp_changed", "invalid_signature", "does not verify")
    expect("expired", "expired", "in the past")
    expect("future", "expired", "in the future")
    expect("missing_signature", "invalid_signature",
           "no x-twilio-email-event-webhook-signature header")
    expect("missing_timestamp", "invalid_signature",
           "no x-twilio-email-event-webhook-timestamp header")
    expect("malformed_signature", "invalid_signature", "is malformed")
    expect("not_der", "invalid_signature", "does not verify")
    expect("bad_secret", "raised", "secret 1 is not a verification key")
    expect("p384_secret", "raised", "secret 1 is not an ECDSA P-256 key")
    for got in r.values():
        text = json.dumps(got)
        assert all(s not in text for s in sigs), "a reason leaks a signature: %s" % text


ROUTE_LUA = r"""
local webhooks = require "luar.webhooks"
local log = require "luar.log"
webhooks.route("/hooks/sendgrid", { scheme = "sendgrid", secret = %s })
webhooks.on("/hooks/sendgrid", "*", function(event, meta)
  log.info("sendgrid event", { id = meta.id, type = meta.type, email = event.email,
                               sig_header = meta.headers["x-twilio-email-event-webhook-signature"] })
end)
"""


def test_route_runs_one_job_per_event_and_dedupes_each_sg_event_id():
    now = int(time.time())
    batch = events_body(("delivered", "sg-1"), ("open", "sg-2"), ("bounce", "sg-3"))
    overlap = events_body(("open", "sg-2"), ("click", "sg-4"))
    k = node({"sign": [{"key": "main", "ts": now, "body": batch},
                       {"key": "main", "ts": now + 1, "body": batch},
                       {"key": "main", "ts": now, "body": overlap},
                       {"key": "other", "ts": now, "body": batch},
                       {"key": "main", "ts": now - 3600, "body": batch},
                       {"key": "main", "ts": now, "body": '{"event": "open"}'},
                       {"key": "main", "ts": now, "body": '[{"event": "open"}]'}]})
    sigs = k["sigs"]

    def post(luar, body, sig, ts):
        h = {"Content-Type": "application/json"}
        if sig is not None:
            h[SIG] = sig
        if ts is not None:
            h[TS] = str(ts)
        status, _, answer = luar.request("POST", "/hooks/sendgrid", body.encode(), h)
        return status, json.loads(answer)

    def handled(luar, id_):
        return luar.count_logs(lambda r: r.get("msg") == "sendgrid event" and r.get("id") == id_)

    main_lua = PRELUDE + ROUTE_LUA % json.dumps(k["main"]["b64"])
    with Luar(scripts={"main.lua": main_lua}, config=CONFIG) as luar:
        status, answer = post(luar, batch, sigs[0], now)
        assert status == 200, answer
        assert answer["events"] == 3 and answer["duplicates"] == 0 and answer["jobs"] == 3, answer
        for i, t in (("sg-1", "delivered"), ("sg-2", "open"), ("sg-3", "bounce")):
            rec = luar.wait_log(lambda r: r.get("msg") == "sendgrid event" and r.get("id") == i)
            assert rec["type"] == t and rec["email"] == "ada@example.com", rec
            assert "sig_header" not in rec, "signature headers reach handlers"
        # SendGrid retries the same batch (signed anew): every event is a duplicate.
        status, answer = post(luar, batch, sigs[1], now + 1)
        assert status == 200 and answer.get("duplicate") is True, answer
        assert answer["duplicates"] == 3 and answer["jobs"] == 0, answer
        # A batch sharing one event with the first: only the new one runs.
        status, answer = post(luar, overlap, sigs[2], now)
        assert status == 200 and answer["duplicates"] == 1 and answer["jobs"] == 1, answer
        luar.wait_log(lambda r: r.get("msg") == "sendgrid event" and r.get("id") == "sg-4")
        assert [handled(luar, i) for i in ("sg-1", "sg-2", "sg-3", "sg-4")] == [1, 1, 1, 1]

        refusals = [
            ("wrong key", post(luar, batch, sigs[3], now), 401, "invalid signature: "),
            ("tampered", post(luar, batch.replace("sg-3", "sg-9"), sigs[0], now), 401,
             "invalid signature: "),
            ("expired", post(luar, batch, sigs[4], now - 3600), 401,
             "expired signature: x-twilio-email-event-webhook-timestamp"),
            ("no signature", post(luar, batch, None, now), 401,
             "missing signature: no x-twilio-email-event-webhook-signature header"),
            ("no timestamp", post(luar, batch, sigs[0], None), 401,
             "missing signature: no x-twilio-email-event-webhook-timestamp header"),
            ("not an array", post(luar, '{"event": "open"}', sigs[5], now), 400,
             "not a JSON array"),
            ("no sg_event_id", post(luar, '[{"event": "open"}]', sigs[6], now), 400,
             "event 1 has no sg_event_id"),
        ]
        for what, (status, answer), want_status, part in refusals:
            assert status == want_status and part in answer["error"], (what, status, answer)
        # The answers came first; the log lines they wrote may still be on their way.
        outcomes = [r.get("outcome") for r in
                    luar.wait_logs(lambda r: r.get("msg") == "webhook rejected", 7)]
        assert outcomes == ["invalid_signature", "invalid_signature", "expired",
                            "invalid_signature", "invalid_signature", "malformed",
                            "malformed"], outcomes
        assert handled(luar, "sg-9") == 0


def test_cli_sign_with_a_private_key_is_verified_by_eventwebhook():
    k = node({"sign": []})
    body = events_body(("processed", "cli-1"))
    with tempfile.TemporaryDirectory(prefix="luar-sendgrid-") as d:
        path = os.path.join(d, "batch.json")
        with open(path, "w") as f:
            f.write(body)
        write_config(d)
        status, out, err = run_cli(["webhook", "sign", "--scheme", "sendgrid", "--secret",
                                    k["main"]["private_pem"], path], cwd=d)
        assert status == 0, err
        h = dict(line.split(": ", 1) for line in out.splitlines())
        assert sorted(h) == [SIG, TS], h
        assert abs(int(h[TS]) - time.time()) < 60
        status, _, err = run_cli(["webhook", "sign", "--scheme", "sendgrid", "--secret",
                                  k["main"]["b64"], path], cwd=d)
        assert status != 0 and "cannot sign with a public key" in err, err
    verdicts = node({"verify": [
        {"pub": k["main"]["b64"], "body": body, "sig": h[SIG], "ts": h[TS]},
        {"pub": k["other"]["b64"], "body": body, "sig": h[SIG], "ts": h[TS]},
        {"pub": k["main"]["b64"], "body": body + " ", "sig": h[SIG], "ts": h[TS]},
    ]})
    assert verdicts == [True, False, False], verdicts

if __name__ == "__main__":
    main([test_rich_message_builds_the_exact_mail_send_json,
          test_dynamic_template_with_per_recipient_data,
          test_sandbox_leaves_the_callers_mail_settings_alone,
          test_invalid_messages_are_refused_before_sending,
          test_api_error_shapes_reach_err,
          test_client_misuse_raises,
          test_signatures_from_node_crypto_verify_in_lua,
          test_route_runs_one_job_per_event_and_dedupes_each_sg_event_id,
          test_cli_sign_with_a_private_key_is_verified_by_eventwebhook])
