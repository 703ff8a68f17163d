"""A stand-in for SendGrid's v3 Mail Send API on 127.0.0.1, for the sendgrid plugin's
tests. It checks what SendGrid checks (Bearer API key, JSON content type, the documented
required fields and rules of a mail/send body) and answers with SendGrid's documented
shapes: 202 with an X-Message-Id and no body, or {"errors": [{"message", "field",
"help"}]} with 400, 401, 403 or 415. Every request is recorded for the test to inspect.

Two triggers stand for refusals only the real service can make: a sender on
"unverified.example" (403, no verified Sender Identity) and template_id "d-nope" (400).
"""
import base64
import binascii
import json
import secrets
import threading

from loopback import LoopbackServer, QuietHandler

HELP = "https://docs.sendgrid.com/api-reference/mail-send/errors"


def error_doc(*errors):
    return {"errors": [{"message": m, "field": f, "help": h} for (m, f, h) in errors]}


def _emails(field, lst, errs):
    if not isinstance(lst, list) or not lst:
        errs.append(("The %s array is required for all personalization objects, and must "
                     "have at least one email object with a valid email address." %
                     field.split(".")[-1], field, HELP + "#message.personalizations.to"))
        return []
    out = []
    for i, a in enumerate(lst):
        if not isinstance(a, dict) or "@" not in str(a.get("email", "")):
            errs.append(("Does not contain a valid address.", "%s.%d.email" % (field, i),
                         HELP + "#message.personalizations.to"))
        else:
            out.append(a["email"].lower())
    return out


def validate(m):
    """SendGrid's documented rules for a mail/send body; a list of (message, field, help)."""
    errs = []
    if not isinstance(m, dict):
        return [("Bad Request", None, None)]
    frm = m.get("from")
    if not isinstance(frm, dict) or "@" not in str(frm.get("email", "")):
        errs.append(("The from object must be provided for every email send. It is an object "
                     "that requires the email parameter, but may also contain a name "
                     "parameter.", "from", HELP + "#message.from"))
    ps = m.get("personalizations")
    if not isinstance(ps, list) or not ps:
        errs.append(("The personalizations field is required and must have at least one "
                     "personalization.", "personalizations", HELP + "#-Personalizations-Errors"))
        ps = []
    total = 0
    for i, p in enumerate(ps):
        seen = []
        for k in ("to", "cc", "bcc"):
            if k == "to" or k in p:
                seen += _emails("personalizations.%d.%s" % (i, k), p.get(k), errs)
        if len(seen) != len(set(seen)):
            errs.append(("Each email address in the personalization block should be unique "
                         "between to, cc, and bcc.", "personalizations.%d" % i, HELP))
        total += len(seen)
        for k in ("substitutions", "custom_args", "headers"):
            if k in p and not all(isinstance(v, str) for v in p[k].values()):
                errs.append(("%s values must be strings" % k, "personalizations.%d.%s" % (i, k),
                             HELP))
    if total > 1000:
        errs.append(("The total number of recipients must be less than 1000.",
                     "personalizations", HELP))
    templated = "template_id" in m
    if not templated and not m.get("subject") and not all(p.get("subject") for p in ps):
        errs.append(("The subject is required. You can get around this requirement if you use "
                     "a template with a subject defined or if every personalization has a "
                     "subject defined.", "subject", HELP + "#message.subject"))
    content = m.get("content")
    if content is None:
        if not templated:
            errs.append(("Unless a valid template_id is provided, the content parameter is "
                         "required. There must be at least one defined content block. We "
                         "typically suggest both text/plain and text/html blocks are included, "
                         "but only one block is required.", "content", HELP + "#message.content"))
    else:
        types = [c.get("type") for c in content]
        if any(not c.get("type") or not c.get("value") for c in content):
            errs.append(("The content value must be a string at least one character in length.",
                         "content.0.value", HELP + "#message.content.value"))
        if "text/plain" in types and types.index("text/plain") != 0:
            errs.append(("If present, text/plain and text/html may only be provided in the "
                         "order: text/plain, then text/html.", "content.0.type",
                         HELP + "#message.content.type"))
    for i, a in enumerate(m.get("attachments") or []):
        try:
            base64.b64decode(a.get("content", ""), validate=True)
        except (binascii.Error, ValueError):
            errs.append(("The attachment content must be base64 encoded.",
                         "attachments.%d.content" % i, HELP + "#message.attachments.content"))
        if not a.get("filename"):
            errs.append(("The attachment filename parameter is required.",
                         "attachments.%d.filename" % i, HELP + "#message.attachments.filename"))
        if a.get("disposition", "attachment") not in ("attachment", "inline"):
            errs.append(("disposition must be inline or attachment",
                         "attachments.%d.disposition" % i, HELP))
        if a.get("disposition") == "inline" and not a.get("content_id"):
            errs.append(("The content_id parameter is required if the disposition is set to "
                         "inline.", "attachments.%d.content_id" % i, HELP))
    cats = m.get("categories")
    if cats is not None and (len(cats) > 10 or len(set(cats)) != len(cats)):
        errs.append(("Too many categories or repeated ones.", "categories", HELP))
    if "custom_args" in m and not all(isinstance(v, str) for v in m["custom_args"].values()):
        errs.append(("custom_args values must be strings", "custom_args", HELP))
    if "asm" in m and not isinstance(m["asm"].get("group_id"), int):
        errs.append(("The asm group_id must be an integer.", "asm.group_id", HELP))
    if "send_at" in m and not isinstance(m["send_at"], int):
        errs.append(("send_at must be a unix timestamp", "send_at", HELP))
    return errs


class SendGridStandIn(LoopbackServer):
    """`with SendGridStandIn(api_key) as sg:` — sg.base_url, sg.requests (dicts with method,
    path, headers (lower-case), json, status, message_id)."""

    def __init__(self, api_key, port=0):
        self.api_key = api_key
        self.requests = []
        self.lock = threading.Lock()
        outer = self

        class Handler(QuietHandler):
            def _answer(self, status, doc=None, headers=None):
                body = b"" if doc is None else json.dumps(doc).encode()
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                if doc is not None:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return status

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n)
                rec = {"method": "POST", "path": self.path,
                       "headers": {k.lower(): v for k, v in self.headers.items()},
                       "raw": raw}
                rec["status"] = self._handle(rec, raw)
                with outer.lock:
                    outer.requests.append(rec)

            def _handle(self, rec, raw):
                if self.path != "/v3/mail/send":
                    return self._answer(404, error_doc(("resource not found", None, None)))
                if self.headers.get("Authorization") != "Bearer " + outer.api_key:
                    return self._answer(401, error_doc((
                        "The provided authorization grant is invalid, expired, or revoked",
                        None, None)))
                ctype = self.headers.get("Content-Type", "")
                if ctype.split(";")[0].strip().lower() != "application/json":
                    return self._answer(415, error_doc((
                        "Content-Type should be application/json.", None, None)))
                try:
                    m = json.loads(raw)
                except ValueError:
                    return self._answer(400, error_doc((
                        "Bad Request", None, None)))
                rec["json"] = m
                errs = validate(m)
                if errs:
                    return self._answer(400, error_doc(*errs))
                if str(m["from"]["email"]).endswith("@unverified.example"):
                    return self._answer(403, error_doc((
                        "The from address does not match a verified Sender Identity. Mail "
                        "cannot be sent until this error is resolved.", "from",
                        "https://sendgrid.com/docs/for-developers/sending-email/sender-"
                        "identity/")))
                if m.get("template_id") == "d-nope":
                    return self._answer(400, error_doc((
                        "The template_id must be a valid GUID, you provided 'd-nope'.",
                        "template_id", HELP + "#message.template_id")))
                rec["message_id"] = secrets.token_urlsafe(16)[:22]
                return self._answer(202, None, {"X-Message-Id": rec["message_id"]})

        self.serve(Handler, port)
        self.base_url = self.url
