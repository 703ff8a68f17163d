"""The sendgrid plugin (plugins/sendgrid): its mail/send client against a stand-in of
SendGrid's API on 127.0.0.1 (sendgrid_standin.py: Bearer key, JSON content type, required
fields, 202 + X-Message-Id, the {"errors": [...]} shapes), and its `sendgrid` webhook scheme
with ECDSA P-256 signatures made by Node's crypto from a key pair the test generates,
cross-checked by the @sendgrid/eventwebhook library (tests/e2e/node_modules)."""
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time

from luar_e2e import Luar, main, run_cli
from sendgrid_standin import SendGridStandIn

HERE = os.path.dirname(os.path.abspath(__file__))
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
    d = tempfile.mkdtemp(prefix="luar-sendgrid-")
    try:
        with open(os.path.join(d, "s.lua"), "w") as f:
            f.write(PRELUDE + src)
        rc, out, err = run_cli(["run", "s.lua"], cwd=d, timeout=timeout)
        assert rc == 0, (rc, out, err)
        return [json.loads(l) for l in out.splitlines()
                if l.startswith("{") and '"ts"' not in l]
    finally:
        shutil.rmtree(d, ignore_errors=True)


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


if __name__ == "__main__":
    main([test_rich_message_builds_the_exact_mail_send_json,
          test_dynamic_template_with_per_recipient_data,
          test_invalid_messages_are_refused_before_sending,
          test_api_error_shapes_reach_err,
          test_client_misuse_raises])
