"""The stripe plugin end to end: luar.stripe against a local stand-in for api.stripe.com
(tests/e2e/stripe_api.py, which checks what Stripe checks and answers in Stripe's shapes),
and the `stripe` webhook scheme against the official `stripe` npm package
(tests/e2e/node_modules: `npm ci --prefix tests/e2e`): signatures made by
webhooks.generateTestHeaderString are sent to a webhooks.route, and headers printed by
`luar webhook sign --scheme stripe` are checked by webhooks.constructEvent.
"""
import json
import os
import shutil
import subprocess
import tempfile
import time

from luar_e2e import BIN, Luar, main, run_cli, write_files
from stripe_api import API_KEY, API_VERSION, StripeStandIn

HERE = os.path.dirname(os.path.abspath(__file__))
PLUGIN_DIR = os.path.join(os.path.dirname(os.path.abspath(BIN)), "plugins")

# Shared by the scripts: `call(name, fn, ...)` records {ok = value} or {err = fields} under
# `name`, and the results are printed as one line "RESULTS <json>" at the end.
PRELUDE = r"""
local stripe = require "luar.stripe"
local json = require "luar.json"
local BASE = arg[1]
local results = {}
local function errfields(err)
  if type(err) ~= "table" then return { raw = tostring(err) } end
  return { kind = err.kind, status = err.status, type = err.type, code = err.code,
           decline_code = err.decline_code, param = err.param, request_id = err.request_id,
           retry_after = err.retry_after, message = err.message, text = tostring(err),
           raw_type = err.raw and err.raw.type }
end
local function call(name, fn, ...)
  local ok, v, err = pcall(fn, ...)
  if not ok then results[name] = { raised = tostring(v) }
  elseif v == nil then results[name] = { err = errfields(err) }
  else results[name] = { ok = v } end
  return ok and v or nil
end
local function done() print("RESULTS " .. json.encode(results)) end
"""


def node():
    exe = shutil.which("node")
    assert exe, "node is not installed (Debian package nodejs)"
    assert os.path.isdir(os.path.join(HERE, "node_modules", "stripe")), \
        "run `npm ci --prefix tests/e2e` (the stripe package is missing)"
    return exe


# Reads a JSON list of jobs on stdin; each job is {sign: {payload, secret, timestamp}} (→ the
# header string from stripe.webhooks.generateTestHeaderString) or {verify: {payload, header,
# secret, tolerance}} (→ the event's id from stripe.webhooks.constructEvent, or "error: …").
NODE_JS = r"""
const Stripe = require("stripe");
const stripe = new Stripe("sk_test_unused");
const jobs = JSON.parse(require("fs").readFileSync(0, "utf8"));
const out = jobs.map((j) => {
  if (j.sign) return stripe.webhooks.generateTestHeaderString(j.sign);
  try {
    const v = j.verify;
    return stripe.webhooks.constructEvent(v.payload, v.header, v.secret, v.tolerance).id;
  } catch (e) {
    return "error: " + e.message;
  }
});
process.stdout.write(JSON.stringify(out));
"""


def run_node(jobs):
    p = subprocess.run([node(), "-e", NODE_JS], cwd=HERE, input=json.dumps(jobs).encode(),
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout)


def config(stripe=None, extra=""):
    """A configuration naming the build's plugin dir and plugins.stripe (a Lua table text)."""
    return ('return { reload = { watch = false }, shutdown = { grace = 2 },\n'
            '  jobs = { lease = 2, heartbeat = 0.5, poll = 0.1 },\n'
            '  plugins = { dir = %s, stripe = %s }, %s }\n'
            % (json.dumps(PLUGIN_DIR), stripe or "{}", extra))


def run_script(body, base_url, conf=None, env=None, args=()):
    """Runs PRELUDE + body with `luar run` in a fresh folder; returns (results, stdout)."""
    with tempfile.TemporaryDirectory(prefix="luar-stripe-") as d:
        write_files(d, {"script.lua": PRELUDE + body,
                        "luar.conf.lua": conf or config(
                            '{ api_key = "%s", api_version = "%s" }' % (API_KEY, API_VERSION))})
        status, out, err = run_cli(["run", "script.lua", base_url] + list(args), cwd=d, env=env)
        lines = [l for l in out.splitlines() if l.startswith("RESULTS ")]
        assert status == 0 and lines, "luar run failed (%d):\n%s\n%s" % (status, out, err)
        return json.loads(lines[-1][len("RESULTS "):]), out + err


def ok(results, name):
    r = results[name]
    assert "ok" in r, "%s: expected success, got %r" % (name, r)
    return r["ok"]


def failed(results, name):
    r = results[name]
    assert "err" in r, "%s: expected nil, err, got %r" % (name, r)
    return r["err"]


# ---- the API client ---------------------------------------------------------------------


def test_calls_carry_what_stripe_checks():
    script = r"""
local c = stripe.client{ base_url = BASE }
local cus = call("customer", c.customers.create, c.customers, {
  email = "ada@example.com", name = "Ada Lovelace",
  metadata = { order_id = "A-1", note = "tea & cake" },
  address = { line1 = "12 St James's Sq", city = "London" } })
call("retrieved", c.customers.retrieve, c.customers, cus.id)
call("updated", c.customers.update, c.customers, cus.id,
     { metadata = { note = "", tier = "gold" } })
local pi = call("pi", c.payment_intents.create, c.payment_intents, {
  amount = 2000, currency = "eur", customer = cus.id, payment_method = "pm_card_visa",
  confirm = true, capture_method = "manual",
  automatic_payment_methods = { enabled = true, allow_redirects = "never" },
  metadata = { order_id = "A-1" } })
call("captured", c.payment_intents.capture, c.payment_intents, pi.id, { amount_to_capture = 1500 })
call("refund", c.refunds.create, c.refunds, { payment_intent = pi.id, amount = 500,
                                             reason = "requested_by_customer" })
local sub = call("subscription", c.subscriptions.create, c.subscriptions, {
  customer = cus.id, items = { { price = "price_basic", quantity = 2 }, { price = "price_addon" } },
  metadata = { plan = "team" } })
call("canceled", c.subscriptions.cancel, c.subscriptions, sub.id, { invoice_now = true })
local ch = call("charge", c.charges.create, c.charges, { amount = 999, currency = "usd",
  source = "tok_visa", capture = false, description = "legacy" })
call("charge_captured", c.charges.capture, c.charges, ch.id)
call("generic", c.request, c, "GET", "customers/" .. cus.id, { expand = { "default_source" } })
call("deleted", c.customers.delete, c.customers, cus.id)
call("gone", c.customers.retrieve, c.customers, cus.id)
call("missing", c.customers.retrieve, c.customers, "cus_missing")
done()
"""
    with StripeStandIn() as api:
        # At debug level luar.http logs every attempt with its headers: the key must not
        # be among them.
        r, out = run_script(script, api.url, env={"LUAR_LOG_LEVEL": "debug"})
        assert '"msg":"http client request"' in out, out[:2000]
        cus = ok(r, "customer")
        assert cus["object"] == "customer" and cus["email"] == "ada@example.com", cus
        assert cus["metadata"] == {"order_id": "A-1", "note": "tea & cake"}, cus
        assert ok(r, "retrieved")["id"] == cus["id"]
        assert ok(r, "updated")["metadata"] == {"order_id": "A-1", "tier": "gold"}
        pi = ok(r, "pi")
        assert pi["status"] == "requires_capture" and pi["amount"] == 2000, pi
        assert ok(r, "captured")["status"] == "succeeded"
        assert ok(r, "refund")["amount"] == 500
        sub = ok(r, "subscription")
        assert [i["price"]["id"] for i in sub["items"]["data"]] == ["price_basic", "price_addon"]
        assert [i["quantity"] for i in sub["items"]["data"]] == [2, 1]
        assert ok(r, "canceled")["status"] == "canceled"
        assert ok(r, "charge")["captured"] is False
        assert ok(r, "charge_captured")["captured"] is True
        assert ok(r, "generic")["id"] == cus["id"]
        assert ok(r, "deleted") == {"id": cus["id"], "object": "customer", "deleted": True}
        assert ok(r, "gone") == {"id": cus["id"], "object": "customer", "deleted": True}
        missing = failed(r, "missing")
        assert missing["kind"] == "http" and missing["status"] == 404, missing
        assert missing["code"] == "resource_missing" and missing["param"] == "id", missing
        assert missing["type"] == "invalid_request_error", missing

        reqs = api.calls()
        assert all(q["status"] == 200 for q in reqs[:-1]), [(q["path"], q["status"]) for q in reqs]
        for q in reqs:
            h = q["headers"]
            assert h["authorization"] == "Bearer " + API_KEY, h
            assert h["stripe-version"] == API_VERSION, h
            if q["method"] == "POST":
                assert h["content-type"] == "application/x-www-form-urlencoded", h
                assert h["idempotency-key"].startswith("luar-"), h
                assert q["query"] == "", q
            else:
                assert "idempotency-key" not in h and q["body"] == "", q
        keys = [q["headers"]["idempotency-key"] for q in reqs if q["method"] == "POST"]
        assert len(keys) == len(set(keys)) == 8, keys  # one fresh key per call
        # The exact bytes: keys in order at every level, lists from 0, brackets literal,
        # everything else percent-encoded, booleans as words.
        first = reqs[0]
        assert first["path"] == "/v1/customers" and first["body"] == (
            "address[city]=London&address[line1]=12%20St%20James%27s%20Sq"
            "&email=ada%40example.com&metadata[note]=tea%20%26%20cake&metadata[order_id]=A-1"
            "&name=Ada%20Lovelace"), first["body"]
        pi_req = api.calls("POST", "/v1/payment_intents")[0]
        assert pi_req["body"] == (
            "amount=2000&automatic_payment_methods[allow_redirects]=never"
            "&automatic_payment_methods[enabled]=true&capture_method=manual&confirm=true"
            "&currency=eur&customer=%s&metadata[order_id]=A-1&payment_method=pm_card_visa"
            % cus["id"]), pi_req["body"]
        sub_req = api.calls("POST", "/v1/subscriptions")[0]
        assert sub_req["body"] == (
            "customer=%s&items[0][price]=price_basic&items[0][quantity]=2"
            "&items[1][price]=price_addon&metadata[plan]=team" % cus["id"]), sub_req["body"]
        upd = api.calls("POST", "/v1/customers/" + cus["id"])[0]
        assert upd["body"] == "metadata[note]=&metadata[tier]=gold", upd["body"]
        gen = api.calls("GET", "/v1/customers/" + cus["id"])[1]
        assert gen["query"] == "expand[0]=default_source", gen
        assert api.calls("DELETE", "/v1/subscriptions/" + sub["id"])[0]["query"] == \
            "invoice_now=true"
        assert API_KEY not in out, "the API key reached the output"


def test_form_encoding_edge_cases():
    script = r"""
local enc = stripe.encode
results.values = enc{ int = 42, neg = -7, whole_float = 10.0, frac = 0.1, big = 2^53,
  yes = true, no = false, empty = "", none = json.null, cleared = {},
  utf8 = "caf\u{e9} \u{20ac}", reserved = "a+b=c&d/e?f#g%h", tilde = "-_.~",
  nested = { deeper = { list = { { x = 1 }, "two" } } } }
results.nothing = enc(nil) .. "|" .. enc({})
local t = {} t.self = t
for name, bad in pairs{ fn = { f = print }, mixed = { a = { 1, 2, x = 3 } },
    holes = { a = { [1] = "x", [3] = "y" } }, nan = { a = 0/0 }, inf = { a = math.huge },
    list_top = { "a", "b" }, bool_key = { a = { [true] = 1 } }, cycle = { a = t },
    not_table = "amount=1" } do
  local okc, e = pcall(enc, bad)
  results["bad_" .. name] = okc and ("encoded: " .. e) or tostring(e)
end
done()
"""
    r, _ = run_script(script, "http://127.0.0.1:9")
    assert r["values"] == (
        "big=9007199254740992&cleared=&empty=&frac=0.1&int=42&neg=-7"
        "&nested[deeper][list][0][x]=1&nested[deeper][list][1]=two&no=false&none="
        "&reserved=a%2Bb%3Dc%26d%2Fe%3Ff%23g%25h&tilde=-_.~&utf8=caf%C3%A9%20%E2%82%AC"
        "&whole_float=10&yes=true"), r["values"]
    assert r["nothing"] == "|", r
    want = {
        "fn": "cannot encode f: a function has no form encoding",
        "mixed": "cannot encode a: a table must be a list (keys 1..n, no holes) or a map",
        "holes": "cannot encode a: a table must be a list (keys 1..n, no holes)",
        "nan": "cannot encode a: NaN and infinities have no form encoding",
        "inf": "cannot encode a: NaN and infinities have no form encoding",
        "list_top": "cannot encode params: the parameters must be a map of names, not a list",
        "bool_key": "cannot encode a[?]: keys must be strings",
        "cycle": "tables nest deeper than 32 levels (a cycle?)",
        "not_table": "stripe: parameters must be a table, not a string",
    }
    for name, part in want.items():
        assert part in r["bad_" + name], (name, r["bad_" + name])


def test_idempotency_key_is_the_same_across_retries():
    script = r"""
local c = stripe.client{ base_url = BASE, retry = { attempts = 3, backoff = 0.05 } }
call("after_500", c.customers.create, c.customers, { email = "retry@example.com" })
call("after_drop", c.payment_intents.create, c.payment_intents,
     { amount = 500, currency = "usd" })
call("given_key", c.customers.create, c.customers, { email = "k@example.com" },
     { idempotency_key = "order-77" })
call("same_key_replayed", c.customers.create, c.customers, { email = "k@example.com" },
     { idempotency_key = "order-77" })
call("same_key_other_params", c.customers.create, c.customers, { email = "x@example.com" },
     { idempotency_key = "order-77" })
done()
"""
    with StripeStandIn() as api:
        api.fault("POST", "/v1/customers", "500")
        api.fault("POST", "/v1/payment_intents", "drop")
        r, _ = run_script(script, api.url)
        cus = ok(r, "after_500")
        attempts = api.calls("POST", "/v1/customers")[:2]
        assert [a["status"] for a in attempts] == ["500", 200], attempts
        k1, k2 = (a["headers"]["idempotency-key"] for a in attempts)
        assert k1 == k2 and k1.startswith("luar-"), (k1, k2)
        assert attempts[0]["body"] == attempts[1]["body"]
        pi = ok(r, "after_drop")
        attempts = api.calls("POST", "/v1/payment_intents")
        assert [a["status"] for a in attempts] == ["drop", 200], attempts
        assert attempts[0]["headers"]["idempotency-key"] == \
            attempts[1]["headers"]["idempotency-key"]
        # Stripe created each object once.
        assert sum(1 for o in api.objects.values() if o["object"] == "customer") == 2
        assert sum(1 for o in api.objects.values() if o["object"] == "payment_intent") == 1
        assert cus["email"] == "retry@example.com" and pi["amount"] == 500
        # A caller's own key is sent as is; Stripe replays the first answer for it, and
        # refuses it with other parameters.
        assert ok(r, "given_key")["id"] == ok(r, "same_key_replayed")["id"]
        given = [q for q in api.calls("POST", "/v1/customers")
                 if q["headers"]["idempotency-key"] == "order-77"]
        assert len(given) == 3, given
        e = failed(r, "same_key_other_params")
        assert e["kind"] == "http" and e["status"] == 400, e
        assert e["type"] == "idempotency_error" and e["raw_type"] == "idempotency_error", e


def test_retry_false_sends_each_call_once():
    script = r"""
local c = stripe.client{ base_url = BASE, retry = false }
call("once", c.customers.create, c.customers, { email = "once@example.com" })
done()
"""
    with StripeStandIn() as api:
        api.fault("POST", "/v1/customers", "500")
        r, _ = run_script(script, api.url)
        e = failed(r, "once")
        assert e["kind"] == "http" and e["status"] == 500, e
        attempts = api.calls("POST", "/v1/customers")
        assert [a["status"] for a in attempts] == ["500"], attempts


def test_list_iterates_every_page():
    script = r"""
local c = stripe.client{ base_url = BASE }
local ids = {}
for cus, err in c:list("customers", { limit = 10, email = "many@example.com" }) do
  if not cus then results.list_err = tostring(err) break end
  ids[#ids + 1] = cus.id
end
results.ids = ids
local found = {}
for cus, err in c.customers:search{ query = "tier:'gold'", limit = 4 } do
  assert(cus, tostring(err))
  found[#found + 1] = cus.id
end
results.found = found
-- Stripe's Search API covers these, not refunds (there is no /v1/refunds/search).
results.searchable = {}
for _, name in ipairs({ "customers", "payment_intents", "charges", "subscriptions", "refunds" }) do
  results.searchable[name] = type(c[name].search) == "function"
end
local back = {}
for cus in c.customers:list{ limit = 3, ending_before = arg[2], email = "many@example.com" } do
  back[#back + 1] = cus.id
end
results.back = back
done()
"""
    with StripeStandIn() as api:
        made = []
        with api.lock:
            for i in range(25):
                made.append(api.store({"id": api.new_id("cus"), "object": "customer",
                                       "email": "many@example.com", "metadata":
                                       {"tier": "gold" if i % 2 else "free"}})["id"])
            api.store({"id": api.new_id("cus"), "object": "customer", "email": "x@example.com",
                       "metadata": {}})
        # Stripe lists newest first.
        expected = list(reversed(made))
        r, _ = run_script(script, api.url, args=[made[5]])
        assert "list_err" not in r, r
        assert r["ids"] == expected, r["ids"]
        pages = api.calls("GET", "/v1/customers")[:3]
        assert [q["query"] for q in pages] == [
            "email=many%40example.com&limit=10",
            "email=many%40example.com&limit=10&starting_after=" + expected[9],
            "email=many%40example.com&limit=10&starting_after=" + expected[19]], pages
        gold = [m for i, m in enumerate(made) if i % 2]
        assert r["found"] == gold, r["found"]
        assert r["searchable"] == {"customers": True, "payment_intents": True,
                                   "charges": True, "subscriptions": True,
                                   "refunds": False}, r["searchable"]
        searches = api.calls("GET", "/v1/customers/search")
        assert [q["params"].get("page") for q in searches] == [None, "4", "8"], searches
        assert all(q["params"]["query"] == "tier:'gold'" for q in searches), searches
        # Backwards from made[5]: the newer ones, nearest first, page after page of 3.
        assert r["back"] == made[6:], r["back"]
        back = [q["params"] for q in api.calls("GET", "/v1/customers")
                if "ending_before" in q["params"]]
        assert [p["ending_before"] for p in back] == [made[5]] + made[8:25:3], back


def test_a_failing_page_ends_the_loop_with_the_error():
    script = r"""
local c = stripe.client{ base_url = BASE, max_network_retries = 0 }
local seen, errs = 0, {}
for cus, err in c.customers:list{ limit = 10 } do
  if cus then seen = seen + 1 else errs[#errs + 1] = { kind = err.kind, status = err.status,
                                                       type = err.type } end
end
results.partial = { seen = seen, errs = errs }
done()
"""
    with StripeStandIn() as api:
        with api.lock:
            for i in range(15):
                api.store({"id": api.new_id("cus"), "object": "customer", "metadata": {}})
        # The second page fails with a 500 (this client does not retry): the fault is armed
        # when the first page is answered.
        orig = api.route

        def route(method, path, params):
            res = orig(method, path, params)
            if method == "GET" and path == "/v1/customers" and "starting_after" not in params:
                api.faults.append(("GET", "/v1/customers", "500", None))
            return res
        api.route = route
        r, _ = run_script(script, api.url)
        assert r["partial"] == {"seen": 10, "errs": [{"kind": "http", "status": 500,
                                                      "type": "api_error"}]}, r


def test_errors_map_to_stripe_fields():
    script = r"""
local c = stripe.client{ base_url = BASE, retry = { attempts = 3, backoff = 0.05 } }
call("declined", c.payment_intents.create, c.payment_intents, { amount = 1000,
  currency = "usd", payment_method = "pm_card_chargeDeclinedInsufficientFunds",
  confirm = true })
call("legacy_declined", c.charges.create, c.charges, { amount = 1000, currency = "usd",
  source = "tok_chargeDeclined" })
call("missing_param", c.payment_intents.create, c.payment_intents, { currency = "usd" })
call("not_found", c.payment_intents.retrieve, c.payment_intents, "pi_missing")
local t0 = require("luar.time").monotonic()
call("rate_limited_then_ok", c.customers.create, c.customers, { email = "slow@example.com" })
results.waited = require("luar.time").monotonic() - t0
local c0 = stripe.client{ base_url = BASE, max_network_retries = 0 }
call("rate_limited", c0.customers.retrieve, c0.customers, "cus_x")
local bad = stripe.client{ base_url = BASE, api_key = "sk_test_wrong_key_123456" }
local first, ferr = bad.customers:list()()
results.bad_key = first == false and { err = errfields(ferr) } or { ok = first }
call("raises_on_bad_params", c.customers.create, c.customers, { f = function() end })
call("raises_on_empty_id", c.customers.retrieve, c.customers, "")
done()
"""
    with StripeStandIn() as api:
        api.fault("POST", "/v1/customers", "429", retry_after=1)
        api.fault("GET", "/v1/customers/cus_x", "429", retry_after=7)
        r, out = run_script(script, api.url)
        e = failed(r, "declined")
        assert e["kind"] == "http" and e["status"] == 402 and e["type"] == "card_error", e
        assert e["code"] == "card_declined" and e["decline_code"] == "insufficient_funds", e
        assert e["param"] == "payment_method", e
        declined = api.calls("POST", "/v1/payment_intents")[0]
        assert e["request_id"] == declined["request_id"], (e, declined)
        assert "insufficient funds" in e["message"] and e["text"].startswith("http: "), e
        assert "(status 402)" in e["text"], e
        e = failed(r, "legacy_declined")
        assert e["type"] == "card_error" and e["decline_code"] == "generic_decline", e
        assert e["param"] == "source", e
        e = failed(r, "missing_param")
        assert (e["status"], e["type"], e["code"], e["param"]) == (
            400, "invalid_request_error", "parameter_missing", "amount"), e
        e = failed(r, "not_found")
        assert (e["status"], e["code"]) == (404, "resource_missing"), e
        # 429 with Retry-After: 1 → waited about a second, then the same request went through.
        assert ok(r, "rate_limited_then_ok")["email"] == "slow@example.com"
        assert 0.9 <= r["waited"] < 10, r["waited"]
        tries = api.calls("POST", "/v1/customers")
        assert [q["status"] for q in tries] == ["429", 200], tries
        assert tries[0]["headers"]["idempotency-key"] == tries[1]["headers"]["idempotency-key"]
        e = failed(r, "rate_limited")
        assert (e["status"], e["code"], e["retry_after"]) == (429, "rate_limit", 7), e
        e = failed(r, "bad_key")
        assert e["status"] == 401 and e["type"] == "invalid_request_error", e
        assert "Invalid API Key" in e["message"], e
        assert "cannot encode f: a function" in r["raises_on_bad_params"]["raised"], r
        assert "id must be a non-empty string" in r["raises_on_empty_id"]["raised"], r
        assert "sk_test_wrong_key_123456" not in out


def test_api_key_from_config_secret_store_or_environment():
    script = r"""
local made, c = pcall(stripe.client, { base_url = BASE })
if made then
  call("cus", c.customers.create, c.customers, { email = "conf@example.com" })
else
  results.cus = { raised = tostring(c) }
end
done()
"""
    with StripeStandIn() as api:
        # plugins.stripe.api_key (and its default API version)
        r, _ = run_script(script, api.url, conf=config('{ api_key = "%s" }' % API_KEY))
        ok(r, "cus")
        assert api.calls()[-1]["headers"]["stripe-version"] == API_VERSION
        # STRIPE_API_KEY through luar.secrets (the store, then the environment)
        r, _ = run_script(script, api.url, conf=config("{}"), env={"STRIPE_API_KEY": API_KEY})
        ok(r, "cus")
        # another secret name
        r, _ = run_script(script, api.url, conf=config('{ api_key_secret = "PAY_KEY" }'),
                          env={"PAY_KEY": API_KEY, "STRIPE_API_KEY": ""})
        ok(r, "cus")
        # nothing anywhere: a clear raise
        r, _ = run_script(script, api.url, conf=config("{}"), env={"STRIPE_API_KEY": ""})
        assert "stripe.client: no API key" in r["cus"].get("raised", ""), r
        assert len(api.calls()) == 3


def test_bad_plugin_configuration_is_refused_with_its_key():
    with tempfile.TemporaryDirectory(prefix="luar-stripe-conf-") as d:
        for conf, want in (('{ base_url = "ftp://api.example" }',
                            "plugins.stripe.base_url must start with https:// or http://"),
                           ('{ timeout = "soon" }', "plugins.stripe.timeout must be a number")):
            write_files(d, {"luar.conf.lua": config(conf), "scripts/main.lua": ""})
            status, out, err = run_cli(["check"], cwd=d)
            assert status == 2, (status, out, err)
            assert "stripe.so: init failed: " + want in err, err


# ---- the webhook scheme -----------------------------------------------------------------

SECRET = "whsec_luarE2Ecurrent0123456789abcdef"
OLD_SECRET = "whsec_luarE2Eprevious0123456789abcde"
WRONG_SECRET = "whsec_notTheEndpointSecret0123456789"

APP = r"""
local webhooks = require "luar.webhooks"
local log = require "luar.log"
webhooks.route("/hooks/stripe", { scheme = "stripe", secrets = { os.getenv("WH_NEW"),
                                                              os.getenv("WH_OLD") } })
webhooks.on("/hooks/stripe", "#", function(event, meta)
  log.info("handled", { id = meta.id, type = meta.type, scheme = meta.scheme,
                        amount = event.data.object.amount, headers = meta.headers })
end)
webhooks.route("/hooks/stripe-one", { scheme = "stripe", secret = os.getenv("WH_NEW"),
                                      tolerance = 60 })
webhooks.on("/hooks/stripe-one", "#", function(event, meta)
  log.info("handled", { id = meta.id, type = meta.type })
end)
"""


def stripe_event(id_, type_="payment_intent.succeeded", amount=2000):
    return json.dumps({"id": id_, "object": "event", "api_version": API_VERSION,
                       "created": int(time.time()), "type": type_, "livemode": False,
                       "data": {"object": {"id": "pi_123", "object": "payment_intent",
                                           "amount": amount, "note": "caf\u00e9"}}},
                      ensure_ascii=False)


def test_webhook_scheme_against_the_stripe_package():
    now = int(time.time())
    ev = {name: stripe_event("evt_%s_%d" % (name, os.getpid())) for name in (
        "valid", "rotated", "wrong", "tampered", "expired", "future", "missing", "malformed",
        "nov1", "edge", "tight")}
    jobs = [
        {"sign": {"payload": ev["valid"], "secret": SECRET, "timestamp": now}},
        {"sign": {"payload": ev["rotated"], "secret": OLD_SECRET, "timestamp": now}},
        {"sign": {"payload": ev["wrong"], "secret": WRONG_SECRET, "timestamp": now}},
        {"sign": {"payload": ev["tampered"], "secret": SECRET, "timestamp": now}},
        {"sign": {"payload": ev["expired"], "secret": SECRET, "timestamp": now - 400}},
        {"sign": {"payload": ev["future"], "secret": SECRET, "timestamp": now + 400}},
        {"sign": {"payload": ev["edge"], "secret": SECRET, "timestamp": now - 200}},
        {"sign": {"payload": ev["tight"], "secret": SECRET, "timestamp": now - 200}},
    ]
    sig = dict(zip(["valid", "rotated", "wrong", "tampered", "expired", "future", "edge",
                    "tight"], run_node(jobs)))
    env = {"WH_NEW": SECRET, "WH_OLD": OLD_SECRET}
    with Luar({"main.lua": APP}, config=config(), env=env) as luar:
        def post(path, body, header):
            h = {"Content-Type": "application/json"}
            if header is not None:
                h["Stripe-Signature"] = header
            status, _, data = luar.request("POST", path, body=body.encode(), headers=h)
            return status, json.loads(data)

        def handled(id_):
            return luar.wait_log(lambda r: r.get("msg") == "handled" and r.get("id") == id_)

        status, body = post("/hooks/stripe", ev["valid"], sig["valid"])
        assert status == 200 and body.get("id") == json.loads(ev["valid"])["id"], body
        rec = handled(json.loads(ev["valid"])["id"])
        assert rec["type"] == "payment_intent.succeeded" and rec["scheme"] == "stripe", rec
        assert rec["amount"] == 2000, rec
        assert "stripe-signature" not in rec["headers"], rec["headers"]
        # a second delivery of the same event is a duplicate, not a second job
        status, body = post("/hooks/stripe", ev["valid"], sig["valid"])
        assert status == 200 and body.get("duplicate") is True, body

        # rotation: the old secret still verifies on the route holding both
        status, body = post("/hooks/stripe", ev["rotated"], sig["rotated"])
        assert status == 200, body
        handled(json.loads(ev["rotated"])["id"])
        # several v1 values (Stripe sends one per active secret while rolling): one matches
        t = sig["wrong"].split(",")[0]
        v1s = [s.split(",")[1] for s in (sig["wrong"], sig["rotated"])]
        multi = "%s,%s,%s,v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39" \
                % (t, v1s[0], v1s[1])
        status, body = post("/hooks/stripe", ev["rotated"], multi)
        assert status == 200 and body.get("duplicate") is True, body

        refused = {
            "wrong": (ev["wrong"], sig["wrong"], "invalid signature: no signature in "
                      "stripe-signature matches (1 v1 signature, 2 secrets)"),
            "tampered": (ev["tampered"].replace("2000", "2001"), sig["tampered"],
                         "invalid signature: no signature in stripe-signature matches"),
            "expired": (ev["expired"], sig["expired"], "expired signature:"),
            "future": (ev["future"], sig["future"], "expired signature:"),
            "missing": (ev["missing"], None, "missing signature: no stripe-signature header"),
            "malformed": (ev["malformed"], "garbage", "invalid signature: stripe-signature is "
                          "malformed: element 1 is not key=value"),
            "no_t": (ev["malformed"], sig["valid"].split(",", 1)[1],
                     "missing signature: stripe-signature has no t= timestamp"),
            "nov1": (ev["nov1"], "t=%d,v0=abcdef" % now,
                     "invalid signature: stripe-signature holds no v1 signature"),
            "bad_t": (ev["nov1"], "t=yesterday," + sig["valid"].split(",", 1)[1],
                      "invalid signature: stripe-signature t"),
        }
        for name, (payload, header, want) in refused.items():
            status, body = post("/hooks/stripe", payload, header)
            assert status == 401, (name, status, body)
            assert body["error"].startswith(want), (name, body)
            for s in (SECRET, OLD_SECRET, WRONG_SECRET):
                assert s not in body["error"], (name, body)
        assert "past" in post("/hooks/stripe", ev["expired"], sig["expired"])[1]["error"]
        assert "future" in post("/hooks/stripe", ev["future"], sig["future"])[1]["error"]

        # tolerance: 200 s old passes the default 300 s, not the route's 60 s
        status, body = post("/hooks/stripe", ev["edge"], sig["edge"])
        assert status == 200, body
        status, body = post("/hooks/stripe-one", ev["tight"], sig["tight"])
        assert status == 401 and body["error"].startswith("expired signature"), body

        # a signed body that is not a Stripe event is a 400 naming what is missing
        bad = json.dumps({"object": "event", "type": "x.y"})
        hdr = run_node([{"sign": {"payload": bad, "secret": SECRET, "timestamp": now}}])[0]
        status, body = post("/hooks/stripe", bad, hdr)
        assert status == 400 and "the event has no \"id\"" in body["error"], body

        # `luar webhook send --scheme stripe` signs and posts like `stripe trigger`
        sent = stripe_event("evt_sent_%d" % os.getpid(), "invoice.paid", amount=777)
        with tempfile.TemporaryDirectory(prefix="luar-stripe-send-") as d:
            write_files(d, {"luar.conf.lua": config(), "event.json": sent})
            status, out, err = run_cli(["webhook", "send", "--scheme", "stripe", "--secret",
                                        OLD_SECRET, "--url", "http://127.0.0.1:%d/hooks/stripe"
                                        % luar.port, "event.json"], cwd=d)
            assert status == 0 and out.startswith("200 "), (status, out, err)
        rec = handled(json.loads(sent)["id"])
        assert rec["type"] == "invoice.paid" and rec["amount"] == 777, rec

        for name in ("wrong", "tampered", "expired", "future", "missing", "malformed",
                     "nov1"):
            assert luar.count_logs(lambda r: r.get("msg") == "handled" and
                                   r.get("id") == json.loads(ev[name])["id"]) == 0, name


def test_cli_sign_is_accepted_by_the_stripe_package():
    with tempfile.TemporaryDirectory(prefix="luar-stripe-sign-") as d:
        write_files(d, {"luar.conf.lua": config(),
                        "event.json": stripe_event("evt_cli_%d" % os.getpid())})
        payload = open(os.path.join(d, "event.json")).read()
        now = int(time.time())
        status, out, err = run_cli(["webhook", "sign", "--scheme", "stripe", "--secret", SECRET,
                                    "--timestamp", str(now), "event.json"], cwd=d)
        assert status == 0, err
        lines = out.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Stripe-Signature: t=%d,v1=" % now), out
        header = lines[0].split(": ", 1)[1]
        # without --timestamp: now
        status, out2, err = run_cli(["webhook", "sign", "--scheme", "stripe", "--secret",
                                     OLD_SECRET, "event.json"], cwd=d)
        assert status == 0, err
        header2 = out2.strip().split(": ", 1)[1]
        res = run_node([
            {"verify": {"payload": payload, "header": header, "secret": SECRET}},
            {"verify": {"payload": payload, "header": header2, "secret": OLD_SECRET}},
            {"verify": {"payload": payload + " ", "header": header, "secret": SECRET}},
            {"verify": {"payload": payload, "header": header, "secret": OLD_SECRET}},
        ])
        want_id = json.loads(payload)["id"]
        assert res[0] == want_id and res[1] == want_id, res
        assert res[2].startswith("error: No signatures found matching"), res
        assert res[3].startswith("error: No signatures found matching"), res


if __name__ == "__main__":
    main([test_calls_carry_what_stripe_checks, test_form_encoding_edge_cases,
          test_idempotency_key_is_the_same_across_retries, test_retry_false_sends_each_call_once,
          test_list_iterates_every_page, test_a_failing_page_ends_the_loop_with_the_error,
          test_errors_map_to_stripe_fields, test_api_key_from_config_secret_store_or_environment,
          test_bad_plugin_configuration_is_refused_with_its_key,
          test_webhook_scheme_against_the_stripe_package,
          test_cli_sign_is_accepted_by_the_stripe_package])
