"""A local stand-in for api.stripe.com, for the stripe plugin's end-to-end tests.

It checks what Stripe checks and answers with Stripe's documented shapes
(https://docs.stripe.com/api):

- `Authorization: Bearer <key>` with the expected key, else 401 and Stripe's error body;
- `Stripe-Version` equal to the expected version, else 400;
- a POST body that is `application/x-www-form-urlencoded`, decoded with Stripe's nesting
  rules (`metadata[k]=v`, `items[0][price]=…`); an indexed key must come in order from 0;
- `Idempotency-Key`: a repeated key with the same method, path and parameters replays the
  first answer (`Idempotent-Replayed: true`); with other parameters it is a 400
  `idempotency_error`, as Stripe does;
- every answer carries a `Request-Id: req_…` header; errors are
  `{"error": {"type", "code", "decline_code", "param", "message", "doc_url", …}}`;
- list endpoints answer list objects (`object: "list"`, `data`, `has_more`, `url`) and honour
  `limit` (1-100, default 10), `starting_after` and `ending_before`; search endpoints (not
  refunds: Stripe has none) answer `search_result` objects paged with `page` / `next_page`.

Resources kept in memory: customers, payment_intents (create/confirm/capture/cancel),
charges (legacy, with `source`), subscriptions (create, cancel with DELETE, resume), refunds.
Test cards: payment method `pm_card_visa` succeeds, `pm_card_chargeDeclined` and
`pm_card_chargeDeclinedInsufficientFunds` are declined (402 card_error); legacy sources
`tok_visa` / `tok_chargeDeclinedInsufficientFunds` likewise.

Faults: `api.fault(method, path, kind, retry_after=None)` makes the next request to that
method and path fail once: kind "500" (a 500 api_error), "drop" (the connection is closed
with no answer) or "429" (a rate_limit error with Retry-After). Every request is recorded in
`api.requests` (dicts: method, path, query, headers (lower-case), body (raw), params, status),
including the ones that failed.
"""
import json
import re
import secrets
import threading
import time
import urllib.parse

from loopback import LoopbackServer, QuietHandler

API_KEY = "sk_test_luarE2E0123456789abcdefghij"
API_VERSION = "2026-10-28.endive"


class StripeError(Exception):
    def __init__(self, status, type_, message, code=None, param=None, decline_code=None,
                 **extra):
        super().__init__(message)
        self.status = status
        self.body = {"type": type_, "message": message}
        if code:
            self.body["code"] = code
            self.body["doc_url"] = "https://stripe.com/docs/error-codes/" + code.replace("_", "-")
        if param:
            self.body["param"] = param
        if decline_code:
            self.body["decline_code"] = decline_code
        self.body.update(extra)


def decode_form(text):
    """Stripe's nested form decoding: returns a dict (lists for indexed keys)."""
    root = {}
    for key, value in urllib.parse.parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text)):
        m = re.match(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$", key)
        if not m:
            raise StripeError(400, "invalid_request_error", "Invalid parameter name: %s" % key)
        parts = [m.group(1)] + re.findall(r"\[([^\[\]]*)\]", m.group(2))
        node = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit():
                    raise StripeError(400, "invalid_request_error",
                                      "Invalid array index in %s" % key, param=key)
                idx = int(part)
                if idx > len(node):
                    raise StripeError(400, "invalid_request_error",
                                      "Invalid array: indices of %s must start at 0 and "
                                      "have no gaps" % key, param=key)
                if idx == len(node):
                    node.append(None)
                if last:
                    node[idx] = value
                else:
                    if node[idx] is None:
                        node[idx] = [] if parts[i + 1].isdigit() else {}
                    node = node[idx]
            else:
                if last:
                    if part in node:
                        raise StripeError(400, "invalid_request_error",
                                          "Received duplicate parameter %s" % key, param=key)
                    node[part] = value
                else:
                    if part not in node or node[part] == "":
                        node[part] = [] if parts[i + 1].isdigit() else {}
                    node = node[part]
    return root


def need(params, name):
    v = params.get(name)
    if v is None or v == "":
        raise StripeError(400, "invalid_request_error", "Missing required param: %s." % name,
                          code="parameter_missing", param=name)
    return v


def integer(params, name, required=True):
    v = params.get(name)
    if v is None and not required:
        return None
    v = need(params, name)
    if not re.fullmatch(r"-?\d+", v):
        raise StripeError(400, "invalid_request_error", "Invalid integer: %s" % v,
                          code="parameter_invalid_integer", param=name)
    return int(v)


def boolean(params, name):
    v = params.get(name)
    if v is None:
        return False
    if v not in ("true", "false"):
        raise StripeError(400, "invalid_request_error", "Invalid boolean: %s" % v, param=name)
    return v == "true"


def merge_metadata(obj, params):
    md = params.get("metadata")
    if md is None:
        return
    if md == "":
        obj["metadata"] = {}
        return
    if not isinstance(md, dict):
        raise StripeError(400, "invalid_request_error", "Invalid hash", param="metadata")
    for k, v in md.items():
        if v == "":
            obj["metadata"].pop(k, None)
        else:
            obj["metadata"][k] = v


# The resources Stripe's Search API covers (of those served here): no /v1/refunds/search.
SEARCHABLE = {"customer", "payment_intent", "charge", "subscription"}

DECLINES = {
    "pm_card_chargeDeclined": "generic_decline",
    "pm_card_chargeDeclinedInsufficientFunds": "insufficient_funds",
    "tok_chargeDeclined": "generic_decline",
    "tok_chargeDeclinedInsufficientFunds": "insufficient_funds",
}


class StripeStandIn(LoopbackServer):
    def __init__(self, api_key=API_KEY, api_version=API_VERSION, port=0):
        self.api_key = api_key
        self.api_version = api_version
        self.lock = threading.Lock()
        self.requests = []
        self.faults = []
        self.idempotency = {}
        self.objects = {}      # id -> object
        self.order = []        # ids in creation order
        self.counter = 0
        self.serve(self._handler(), port)

    def fault(self, method, path, kind, retry_after=None):
        with self.lock:
            self.faults.append((method, path, kind, retry_after))

    def calls(self, method=None, path=None):
        with self.lock:
            return [r for r in self.requests if (method is None or r["method"] == method) and
                    (path is None or r["path"] == path)]

    # ---- objects ----------------------------------------------------------------------

    def new_id(self, prefix):
        self.counter += 1
        return "%s_%s%06d" % (prefix, secrets.token_hex(4), self.counter)

    def store(self, obj):
        self.objects[obj["id"]] = obj
        self.order.append(obj["id"])
        return obj

    def get(self, kind, id_):
        obj = self.objects.get(id_)
        if obj is None or obj["object"] != kind:
            raise StripeError(404, "invalid_request_error", "No such %s: '%s'" % (kind, id_),
                              code="resource_missing", param="id")
        return obj

    def list_of(self, kind, url, params):
        limit = integer(params, "limit", required=False) or 10
        if not 1 <= limit <= 100:
            raise StripeError(400, "invalid_request_error",
                              "Invalid limit: must be between 1 and 100", param="limit")
        # Newest first, as Stripe lists.
        items = [self.objects[i] for i in reversed(self.order)
                 if self.objects[i]["object"] == kind and not self.objects[i].get("deleted")]
        for k in ("customer", "email", "status"):
            if k in params:
                items = [o for o in items if o.get(k) == params[k]]
        ids = [o["id"] for o in items]
        if "starting_after" in params:
            if params["starting_after"] not in ids:
                raise StripeError(400, "invalid_request_error", "No such object: '%s'" %
                                  params["starting_after"], param="starting_after")
            start = ids.index(params["starting_after"]) + 1
            page = items[start:start + limit]
            more = start + limit < len(items)
        elif "ending_before" in params:
            if params["ending_before"] not in ids:
                raise StripeError(400, "invalid_request_error", "No such object: '%s'" %
                                  params["ending_before"], param="ending_before")
            end = ids.index(params["ending_before"])
            page = items[max(0, end - limit):end]
            more = end - limit > 0
        else:
            page, more = items[:limit], limit < len(items)
        return {"object": "list", "data": page, "has_more": more, "url": url}

    def search_of(self, kind, url, params):
        query = need(params, "query")
        m = re.fullmatch(r"(\w+):'([^']*)'", query)
        if not m:
            raise StripeError(400, "invalid_request_error", "Invalid search query", param="query")
        field, value = m.groups()
        items = [self.objects[i] for i in self.order if self.objects[i]["object"] == kind and
                 (self.objects[i].get(field) == value or
                  self.objects[i].get("metadata", {}).get(field) == value)]
        limit = integer(params, "limit", required=False) or 10
        start = int(params.get("page") or 0)
        page = items[start:start + limit]
        more = start + limit < len(items)
        return {"object": "search_result", "data": page, "has_more": more, "url": url,
                "next_page": str(start + limit) if more else None, "total_count": len(items)}

    def decline(self, pm, pi=None):
        code = DECLINES.get(pm)
        if code is None:
            return
        extra = {"charge": "ch_" + secrets.token_hex(6)}
        if pi is not None:
            pi["status"] = "requires_payment_method"
            pi["last_payment_error"] = {"code": "card_declined", "decline_code": code}
            extra["payment_intent"] = dict(pi)
        raise StripeError(402, "card_error",
                          "Your card has insufficient funds." if code == "insufficient_funds"
                          else "Your card was declined.",
                          code="card_declined", decline_code=code, param="payment_method"
                          if pi is not None else "source", **extra)

    # ---- routes -----------------------------------------------------------------------

    def route(self, method, path, params):
        parts = path.strip("/").split("/")
        if parts[0] != "v1" or len(parts) < 2:
            raise StripeError(404, "invalid_request_error",
                              "Unrecognized request URL (%s: %s)." % (method, path))
        res, rest = parts[1], parts[2:]
        kinds = {"customers": "customer", "payment_intents": "payment_intent",
                 "charges": "charge", "subscriptions": "subscription", "refunds": "refund"}
        kind = kinds.get(res)
        if kind is None:
            raise StripeError(404, "invalid_request_error",
                              "Unrecognized request URL (%s: %s)." % (method, path))
        url = "/v1/" + res
        if not rest:
            if method == "GET":
                return self.list_of(kind, url, params)
            if method == "POST":
                return getattr(self, "create_" + kind)(params)
        elif rest == ["search"] and method == "GET" and kind in SEARCHABLE:
            return self.search_of(kind, url + "/search", params)
        elif len(rest) == 1:
            obj = self.get(kind, rest[0])
            if method == "GET" and obj.get("deleted"):
                return {"id": obj["id"], "object": obj["object"], "deleted": True}
            if method == "GET":
                return obj
            if method == "POST":
                for k, v in params.items():
                    if k != "metadata":
                        obj[k] = v
                merge_metadata(obj, params)
                return obj
            if method == "DELETE" and kind == "customer":
                obj["deleted"] = True
                return {"id": obj["id"], "object": "customer", "deleted": True}
            if method == "DELETE" and kind == "subscription":
                obj["status"] = "canceled"
                obj["canceled_at"] = int(time.time())
                if boolean(params, "invoice_now"):
                    obj["latest_invoice"] = self.new_id("in")
                return obj
        elif len(rest) == 2 and method == "POST":
            obj = self.get(kind, rest[0])
            action = getattr(self, "%s_%s" % (kind, rest[1]), None)
            if action is not None:
                return action(obj, params)
        raise StripeError(404, "invalid_request_error",
                          "Unrecognized request URL (%s: %s)." % (method, path))

    def create_customer(self, params):
        obj = {"id": self.new_id("cus"), "object": "customer", "created": int(time.time()),
               "email": params.get("email"), "name": params.get("name"), "metadata": {},
               "livemode": False}
        merge_metadata(obj, params)
        if "address" in params:
            obj["address"] = params["address"]
        return self.store(obj)

    def create_payment_intent(self, params):
        amount = integer(params, "amount")
        if amount < 1:
            raise StripeError(400, "invalid_request_error",
                              "This value must be greater than or equal to 1.",
                              code="parameter_invalid_integer", param="amount")
        pi = {"id": self.new_id("pi"), "object": "payment_intent", "amount": amount,
              "currency": need(params, "currency"), "customer": params.get("customer"),
              "status": "requires_payment_method", "metadata": {},
              "capture_method": params.get("capture_method", "automatic_async"),
              "payment_method": params.get("payment_method"),
              "automatic_payment_methods": params.get("automatic_payment_methods")}
        pi["client_secret"] = pi["id"] + "_secret_" + secrets.token_hex(8)
        merge_metadata(pi, params)
        if pi["payment_method"]:
            pi["status"] = "requires_confirmation"
        self.store(pi)
        if boolean(params, "confirm"):
            self.payment_intent_confirm(pi, {})
        return pi

    def payment_intent_confirm(self, pi, params):
        pm = params.get("payment_method") or pi.get("payment_method")
        if not pm:
            raise StripeError(400, "invalid_request_error",
                              "You cannot confirm this PaymentIntent because it's missing a "
                              "payment method.", code="payment_intent_unexpected_state")
        pi["payment_method"] = pm
        self.decline(pm, pi)
        charge = self.store({"id": self.new_id("ch"), "object": "charge",
                             "amount": pi["amount"], "currency": pi["currency"],
                             "payment_intent": pi["id"], "status": "succeeded",
                             "captured": pi["capture_method"] != "manual", "metadata": {},
                             "refunded": False})
        pi["latest_charge"] = charge["id"]
        pi["status"] = "requires_capture" if pi["capture_method"] == "manual" else "succeeded"
        return pi

    def payment_intent_capture(self, pi, params):
        if pi["status"] != "requires_capture":
            raise StripeError(400, "invalid_request_error",
                              "This PaymentIntent could not be captured because it has a "
                              "status of %s." % pi["status"],
                              code="payment_intent_unexpected_state")
        pi["amount_received"] = integer(params, "amount_to_capture", required=False) or pi["amount"]
        pi["status"] = "succeeded"
        return pi

    def payment_intent_cancel(self, pi, params):
        pi["status"] = "canceled"
        pi["cancellation_reason"] = params.get("cancellation_reason")
        return pi

    def create_charge(self, params):
        amount = integer(params, "amount")
        source = params.get("source")
        if not source and not params.get("customer"):
            raise StripeError(400, "invalid_request_error",
                              "Must provide source or customer.", code="parameter_missing",
                              param="source")
        self.decline(source)
        capture = params.get("capture", "true") != "false"
        obj = {"id": self.new_id("ch"), "object": "charge", "amount": amount,
               "currency": need(params, "currency"), "source": {"id": source},
               "captured": capture, "status": "succeeded", "metadata": {},
               "description": params.get("description"), "refunded": False}
        merge_metadata(obj, params)
        return self.store(obj)

    def charge_capture(self, ch, params):
        ch["captured"] = True
        return ch

    def create_subscription(self, params):
        customer = self.get("customer", need(params, "customer"))
        items = params.get("items")
        if not isinstance(items, list) or not items:
            raise StripeError(400, "invalid_request_error", "Missing required param: items.",
                              code="parameter_missing", param="items")
        data = []
        for i, it in enumerate(items):
            if not isinstance(it, dict) or not it.get("price"):
                raise StripeError(400, "invalid_request_error",
                                  "Missing required param: items[%d][price]." % i,
                                  code="parameter_missing", param="items[%d][price]" % i)
            data.append({"id": self.new_id("si"), "object": "subscription_item",
                         "price": {"id": it["price"], "object": "price"},
                         "quantity": int(it.get("quantity", "1"))})
        sub = {"id": self.new_id("sub"), "object": "subscription", "customer": customer["id"],
               "status": "trialing" if params.get("trial_period_days") else "active",
               "items": {"object": "list", "data": data, "has_more": False,
                         "url": "/v1/subscription_items"},
               "metadata": {}, "cancel_at_period_end": boolean(params, "cancel_at_period_end")}
        merge_metadata(sub, params)
        return self.store(sub)

    def subscription_resume(self, sub, params):
        if sub["status"] != "paused":
            raise StripeError(400, "invalid_request_error",
                              "Subscription is not paused.", code="subscription_not_paused")
        sub["status"] = "active"
        return sub

    def create_refund(self, params):
        pi_id, ch_id = params.get("payment_intent"), params.get("charge")
        if not pi_id and not ch_id:
            raise StripeError(400, "invalid_request_error",
                              "One of the following params should be provided for this "
                              "request: payment_intent or charge.", code="parameter_missing")
        if pi_id:
            pi = self.get("payment_intent", pi_id)
            if pi["status"] != "succeeded":
                raise StripeError(400, "invalid_request_error",
                                  "This PaymentIntent does not have a successful charge to "
                                  "refund.", code="charge_not_refundable")
            ch_id = pi.get("latest_charge")
        ch = self.get("charge", ch_id)
        amount = integer(params, "amount", required=False) or ch["amount"]
        if amount > ch["amount"]:
            raise StripeError(400, "invalid_request_error",
                              "Refund amount (%d) is greater than charge amount (%d)"
                              % (amount, ch["amount"]), code="amount_too_large",
                              param="amount")
        ch["refunded"] = amount == ch["amount"]
        obj = {"id": self.new_id("re"), "object": "refund", "amount": amount, "charge": ch["id"],
               "payment_intent": pi_id, "status": "succeeded", "metadata": {},
               "reason": params.get("reason")}
        merge_metadata(obj, params)
        return self.store(obj)

    def refund_cancel(self, re_, params):
        re_["status"] = "canceled"
        return re_

    # ---- HTTP -------------------------------------------------------------------------

    def _handler(self):
        api = self

        class Handler(QuietHandler):
            def answer(self, status, body, extra=None):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                rid = "req_" + secrets.token_hex(7)
                self.send_header("Request-Id", rid)
                if getattr(self, "rec", None) is not None:
                    self.rec["request_id"] = rid
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def handle_any(self):
                u = urllib.parse.urlsplit(self.path)
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n).decode("utf-8") if n else ""
                headers = {k.lower(): v for k, v in self.headers.items()}
                rec = {"method": self.command, "path": u.path, "query": u.query,
                       "headers": headers, "body": raw, "params": None, "status": None}
                self.rec = rec
                with api.lock:
                    api.requests.append(rec)
                    fault = None
                    for i, f in enumerate(api.faults):
                        if f[0] == self.command and f[1] == u.path:
                            fault = api.faults.pop(i)
                            break
                if fault is not None:
                    rec["status"] = fault[2]
                    if fault[2] == "drop":
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    if fault[2] == "500":
                        return self.answer(500, {"error": {
                            "type": "api_error", "message": "An unknown error occurred"}})
                    if fault[2] == "429":
                        extra = {"Retry-After": str(fault[3])} if fault[3] is not None else {}
                        return self.answer(429, {"error": {
                            "type": "invalid_request_error", "code": "rate_limit",
                            "message": "Too many requests hit the API too quickly."}}, extra)
                status, body, extra = self.process(rec, raw, headers, u.query)
                rec["status"] = status
                self.answer(status, body, extra)

            def process(self, rec, raw, headers, query):
                auth = headers.get("authorization", "")
                if auth != "Bearer " + api.api_key:
                    shown = auth[len("Bearer "):][:8] if auth.startswith("Bearer ") else ""
                    return 401, {"error": {
                        "type": "invalid_request_error",
                        "message": "Invalid API Key provided: %s****" % shown
                        if shown else "You did not provide an API key."}}, {}
                if headers.get("stripe-version") != api.api_version:
                    return 400, {"error": {
                        "type": "invalid_request_error",
                        "message": "Invalid Stripe API version: %s" %
                                   headers.get("stripe-version")}}, {}
                try:
                    if self.command == "POST":
                        ctype = headers.get("content-type", "")
                        if ctype.split(";")[0].strip() != "application/x-www-form-urlencoded":
                            raise StripeError(400, "invalid_request_error",
                                              "Invalid request: unsupported Content-Type %s. "
                                              "If error persists and you need assistance, "
                                              "please contact support@stripe.com." % ctype)
                        params = decode_form(raw)
                    else:
                        params = decode_form(query)
                    rec["params"] = params
                except StripeError as e:
                    return e.status, {"error": e.body}, {}
                key = headers.get("idempotency-key")
                if key is not None and self.command == "POST":
                    with api.lock:
                        prior = api.idempotency.get(key)
                    if prior is not None:
                        if prior[0] != (self.command, rec["path"], raw):
                            return 400, {"error": {
                                "type": "idempotency_error",
                                "message": "Keys for idempotent requests can only be used "
                                           "with the same parameters they were first used "
                                           "with. Try using a key other than '%s' if you "
                                           "meant to execute a different request." % key}}, {}
                        return prior[1], prior[2], {"Idempotent-Replayed": "true"}
                with api.lock:
                    try:
                        status, body = 200, api.route(self.command, rec["path"], params)
                        body = json.loads(json.dumps(body))  # a snapshot
                    except StripeError as e:
                        status, body = e.status, {"error": e.body}
                    if key is not None and self.command == "POST":
                        api.idempotency[key] = ((self.command, rec["path"], raw), status, body)
                return status, body, {}

            do_GET = do_POST = do_DELETE = handle_any

        return Handler
