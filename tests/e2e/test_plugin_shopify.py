"""The shopify plugin against the real binary: the `shopify` webhook scheme with signatures
made by `openssl dgst -hmac -binary | base64`, sent to a webhooks.route (handlers run once
per X-Shopify-Webhook-Id, bad signatures are 401s, deliveries without id or topic 400s);
`luar webhook sign --scheme shopify` checked with Node's crypto and `luar webhook send`
accepted by a route; luar.shopify's query checks against Shopify's documented OAuth and
app-proxy examples."""
import base64
import json
import shutil
import subprocess
import uuid

from luar_e2e import Luar, main, run_cli
from provider_e2e import post as post_to
from provider_e2e import (config, config_file, count_handled, handled, metric, parse_headers,
                          run_lua, stats, wait_idle)

SECRET = "shpss_e2e_client_secret_0123456789"
OLD_SECRET = "shpss_e2e_previous_secret_987654"
OTHER_SECRET = "shpss_someone_elses_secret_xyz"

CONFIG = config()


APP = r'''
local webhooks = require "luar.webhooks"
local log = require "luar.log"

webhooks.route("/hooks/shopify", { scheme = "shopify",
                                   secrets = { os.getenv("SHOP_SECRET"), os.getenv("SHOP_OLD") } })
webhooks.on("/hooks/shopify", "orders.*", function(order, meta)
  log.info("handled", { handler = "orders", id = meta.id, type = meta.type, scheme = meta.scheme,
                        order = order.admin_graphql_api_id, email = order.email,
                        shop = meta.headers["x-shopify-shop-domain"], headers = meta.headers })
end)
webhooks.on("/hooks/shopify", "app.uninstalled", function(shop, meta)
  log.info("handled", { handler = "uninstalled", id = meta.id, type = meta.type,
                        domain = shop.domain })
end)
'''

ENV = {"SHOP_SECRET": SECRET, "SHOP_OLD": OLD_SECRET}

ORDER = json.dumps({"id": 820982911946154508, "email": "jon@example.com",
                    "admin_graphql_api_id": "gid://shopify/Order/820982911946154508",
                    "total_price": "199.65", "note": "caf\u00e9 \u2603",
                    "line_items": [{"id": 866550311766439020, "quantity": 1}]},
                   ensure_ascii=False)


def start():
    return Luar({"main.lua": APP}, config=CONFIG, env=ENV)


def openssl_hmac_b64(secret, body):
    data = body.encode() if isinstance(body, str) else body
    p = subprocess.run(["openssl", "dgst", "-sha256", "-hmac", secret, "-binary"], input=data,
                       capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return base64.b64encode(p.stdout).decode()


def shopify_headers(body, secret=SECRET, topic="orders/create", webhook_id=None, **extra):
    h = {"Content-Type": "application/json",
         "X-Shopify-Hmac-Sha256": openssl_hmac_b64(secret, body),
         "X-Shopify-Topic": topic,
         "X-Shopify-Shop-Domain": "example.myshopify.com",
         "X-Shopify-API-Version": "2025-07",
         "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
         "X-Shopify-Event-Id": str(uuid.uuid4()),
         "X-Shopify-Triggered-At": "2025-07-01T12:00:00.000000000Z"}
    h.update(extra)
    return {k: v for k, v in h.items() if v is not None}


def post(luar, body, headers):
    return post_to(luar, "/hooks/shopify", body, headers)


def test_signed_delivery_runs_its_handler_once_per_webhook_id():
    with start() as luar:
        wid = "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"
        h = shopify_headers(ORDER, webhook_id=wid)
        status, _, answer = post(luar, ORDER, h)
        assert status == 200 and answer == {"received": True, "id": wid, "jobs": 1}, answer
        rec = handled(luar, "orders", wid)
        assert rec["type"] == "orders.create" and rec["scheme"] == "shopify", rec
        # (order.id itself is past 2^53: luar.json decodes it through a double, so the
        # exact id is read from admin_graphql_api_id.)
        assert rec["order"] == "gid://shopify/Order/820982911946154508", rec
        assert rec["email"] == "jon@example.com", rec
        assert rec["shop"] == "example.myshopify.com", rec
        assert rec["headers"]["x-shopify-topic"] == "orders/create", rec
        assert "x-shopify-event-id" in rec["headers"], rec
        assert "x-shopify-hmac-sha256" not in rec["headers"], rec
        # Shopify's retry of the delivery: same webhook id (its Event-Id and trigger time
        # may differ; it is not refused for being old).
        again = shopify_headers(ORDER, webhook_id=wid,
                                **{"X-Shopify-Triggered-At": "2020-01-01T00:00:00Z"})
        status, _, answer = post(luar, ORDER, again)
        assert status == 200 and answer == {"received": True, "id": wid, "duplicate": True}
        # Another subscription's delivery of the same shop event: another webhook id, the
        # same Event-Id: it is its own delivery.
        other = shopify_headers(ORDER, **{"X-Shopify-Event-Id": h["X-Shopify-Event-Id"]})
        status, _, answer = post(luar, ORDER, other)
        assert status == 200 and answer["id"] == other["X-Shopify-Webhook-Id"], answer
        # The previous secret (rotation) and another topic.
        shop = json.dumps({"id": 548380009, "domain": "example.myshopify.com"})
        h2 = shopify_headers(shop, OLD_SECRET, topic="app/uninstalled")
        status, _, answer = post(luar, shop, h2)
        assert status == 200 and answer["jobs"] == 1, answer
        rec = handled(luar, "uninstalled", h2["X-Shopify-Webhook-Id"])
        assert rec["type"] == "app.uninstalled" and rec["domain"] == "example.myshopify.com"
        # Without X-Shopify-Webhook-Id the Event-Id names the delivery.
        h3 = shopify_headers(ORDER, **{"X-Shopify-Webhook-Id": None})
        status, _, answer = post(luar, ORDER, h3)
        assert status == 200 and answer["id"] == h3["X-Shopify-Event-Id"], answer
        handled(luar, "orders", h3["X-Shopify-Event-Id"])
        wait_idle(luar)
        assert count_handled(luar, "orders", wid) == 1
        assert metric(luar, "luar_webhooks_total", route="/hooks/shopify",
                      outcome="duplicate") == 1


def test_bad_signatures_are_401_and_missing_id_or_topic_400():
    with start() as luar:
        good = shopify_headers(ORDER)
        cases = {
            "tampered body": (ORDER.replace("199.65", "0.01"), good),
            "wrong secret": (ORDER, shopify_headers(ORDER, OTHER_SECRET)),
            "no signature": (ORDER, dict(good, **{"X-Shopify-Hmac-Sha256": None})),
            "hex, not base64": (ORDER, dict(good, **{"X-Shopify-Hmac-Sha256": "ab" * 32})),
            "truncated": (ORDER, dict(good, **{"X-Shopify-Hmac-Sha256":
                                               good["X-Shopify-Hmac-Sha256"][:-4]})),
        }
        for name, (b, h) in cases.items():
            h = {k: v for k, v in h.items() if v is not None}
            status, _, answer = post(luar, b, h)
            assert status == 401, (name, status, answer)
            want = "missing signature" if name == "no signature" else "invalid signature"
            assert answer["error"].startswith(want), (name, answer)
        assert metric(luar, "luar_webhooks_total", route="/hooks/shopify",
                      outcome="invalid_signature") == len(cases)
        for drop, what in (("X-Shopify-Topic", "x-shopify-topic"),
                           ("X-Shopify-Webhook-Id", "x-shopify-webhook-id")):
            h = shopify_headers(ORDER, **{drop: None})
            if drop == "X-Shopify-Webhook-Id":
                del h["X-Shopify-Event-Id"]
            status, _, answer = post(luar, ORDER, h)
            assert status == 400 and what in answer["error"], (drop, answer)
        # Signed but not JSON.
        status, _, answer = post(luar, "not json", shopify_headers("not json"))
        assert status == 400 and "malformed body" in answer["error"], answer
        assert stats(luar.data)["total"] == 0
        text = "\n".join(json.dumps(r) for r in luar.lines)
        assert SECRET not in text and good["X-Shopify-Hmac-Sha256"] not in text
        status, _, answer = post(luar, ORDER, good)
        assert status == 200 and answer.get("duplicate") is None, answer


NODE_VERIFY = r'''
const crypto = require("crypto");
const { secret, headers, body } = JSON.parse(require("fs").readFileSync(0, "utf8"));
const want = crypto.createHmac("sha256", secret).update(body, "utf8").digest("base64");
const got = headers["X-Shopify-Hmac-Sha256"];
const same = got.length === want.length &&
  crypto.timingSafeEqual(Buffer.from(got), Buffer.from(want));
process.stdout.write(JSON.stringify({ same }));
'''


def test_cli_sign_and_send_shopify():
    node = shutil.which("node")
    assert node, "node is not installed (Debian package nodejs)"
    env = None
    status, out, err = run_cli(["webhook", "sign", "--config", config_file(), "--scheme", "shopify",
                                "--secret", SECRET,
                                "--id", "wh-cli-1", "--option", "topic=orders/paid",
                                "--option", "shop=example.myshopify.com"],
                               input=ORDER.encode(), env=env)
    assert status == 0, err
    h = parse_headers(out)
    assert h["X-Shopify-Webhook-Id"] == "wh-cli-1" and h["X-Shopify-Topic"] == "orders/paid", h
    assert h["X-Shopify-Shop-Domain"] == "example.myshopify.com", h
    assert h["X-Shopify-Hmac-Sha256"] == openssl_hmac_b64(SECRET, ORDER), h
    for secret, same in ((SECRET, True), (OTHER_SECRET, False)):
        p = subprocess.run([node, "-e", NODE_VERIFY], capture_output=True, timeout=60,
                           input=json.dumps({"secret": secret, "headers": h,
                                             "body": ORDER}).encode())
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout) == {"same": same}, p.stdout
    # Without --id a fresh UUID names each delivery.
    status, out, err = run_cli(["webhook", "sign", "--config", config_file(), "--scheme", "shopify",
                                "--secret", SECRET],
                               input=ORDER.encode(), env=env)
    assert status == 0, err
    wid = parse_headers(out)["X-Shopify-Webhook-Id"]
    assert str(uuid.UUID(wid)) == wid and uuid.UUID(wid).version == 4, wid
    status, out, err = run_cli(["webhook", "sign", "--config", config_file(), "--scheme", "shopify",
                                "--secret", SECRET,
                                "--option", "nope=1"], input=ORDER.encode(), env=env)
    assert status == 2 and "unknown option \"nope\"" in err, err
    with start() as luar:
        status, out, err = run_cli(["webhook", "send", "--config", config_file(),
                                    "--scheme", "shopify",
                                    "--secret", SECRET,
                                    "--option", "topic=orders/paid", "--id", "wh-cli-2",
                                    "--url", "http://127.0.0.1:%d/hooks/shopify" % luar.port],
                                   input=ORDER.encode(), env=env)
        assert status == 0 and out.startswith("200"), (out, err)
        rec = handled(luar, "orders", "wh-cli-2")
        assert rec["type"] == "orders.paid", rec


QUERY_LUA = r'''
local shopify = require "luar.shopify"
local json = require "luar.json"
local cases = json.decode(arg[1])
local out = {}
for i, c in ipairs(cases) do
  local ok, err = shopify[c.fn](c.query, c.secret, c.opts)
  out[i] = ok and { ok = true } or { kind = err.kind, message = err.message }
end
print(json.encode(out))
'''

# Shopify's documented examples, secret "hush": the OAuth redirect ("Verify a request") and
# the app proxy ("Authenticate app proxies").
OAUTH = ("code=0907a61c0c8d55e99db179b68161bc00&hmac=700e2dadb827fcc8609e9d5ce208b2e9cdaab9"
         "df07390d2cbca10d7c328fc4bf&shop=some-shop.myshopify.com&state=0.6784241404160823&"
         "timestamp=1337178173")
PROXY = ("extra=1&extra=2&shop=shop-name.myshopify.com&logged_in_customer_id=1&path_prefix=%2Fapps"
         "%2Fawesome_reviews&timestamp=1317327555&signature=4c68c8624d737112c91818c11017d24d334b52"
         "4cb5c2b8ba08daa056f7395ddb")
PROXY_ANON = ("extra=1&extra=2&shop=shop-name.myshopify.com&logged_in_customer_id=&path_prefix="
              "%2Fapps%2Fawesome_reviews&timestamp=1317327555&signature=e072b6d7e6622d85912a5214b8"
              "60d3100dc1e73d9bc29f43796ac8c9ff8093cb")


def test_signed_query_checks_match_shopifys_examples():
    reordered = "&".join(reversed(OAUTH.split("&")))
    cases = [
        {"fn": "verify_oauth", "query": OAUTH, "secret": "hush"},
        {"fn": "verify_oauth", "query": reordered, "secret": ["other", "hush"]},
        {"fn": "verify_oauth", "query": OAUTH.replace("some-shop", "evil-shop"),
         "secret": "hush"},
        {"fn": "verify_oauth", "query": OAUTH, "secret": "hush2"},
        {"fn": "verify_oauth", "query": "shop=x.myshopify.com", "secret": "hush"},
        {"fn": "verify_oauth", "query": OAUTH, "secret": "hush",
         "opts": {"tolerance": 300, "now": 1337178173 + 3600}},
        {"fn": "verify_oauth", "query": OAUTH, "secret": "hush",
         "opts": {"tolerance": 300, "now": 1337178173 + 10}},
        {"fn": "verify_proxy", "query": PROXY, "secret": "hush"},
        {"fn": "verify_proxy", "query": PROXY_ANON, "secret": "hush"},
        {"fn": "verify_proxy", "query": PROXY.replace("extra=1&extra=2", "extra=2&extra=1"),
         "secret": "hush"},
        {"fn": "verify_proxy", "query": PROXY, "secret": "nope"},
        {"fn": "verify_proxy", "query": PROXY.replace("%2Fapps", "%2"), "secret": "hush"},
    ]
    r, _ = run_lua(QUERY_LUA, [json.dumps(cases)])
    assert r[0] == {"ok": True} and r[1] == {"ok": True}, r
    assert r[2]["kind"] == "invalid_signature" and "does not match" in r[2]["message"], r
    assert r[3]["kind"] == "invalid_signature", r
    assert r[4] == {"kind": "invalid_signature", "message": "no hmac parameter"}, r
    assert r[5]["kind"] == "expired" and "3600 s in the past" in r[5]["message"], r
    assert r[6] == {"ok": True}, r
    assert r[7] == {"ok": True} and r[8] == {"ok": True}, r
    assert r[9]["kind"] == "invalid_signature", r  # the order of repeated values is signed
    assert r[10]["kind"] == "invalid_signature", r
    assert r[11]["kind"] == "invalid_signature" and "percent-encoded" in r[11]["message"], r


if __name__ == "__main__":
    main([test_signed_delivery_runs_its_handler_once_per_webhook_id,
          test_bad_signatures_are_401_and_missing_id_or_topic_400,
          test_cli_sign_and_send_shopify,
          test_signed_query_checks_match_shopifys_examples])
