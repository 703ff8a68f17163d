"""The example integration end to end: the real binary serving the repository's scripts/
with its luar.conf.lua and the stand-ins `make run` starts (tools/standins.py), on free
ports. Stripe-signed events sent with `luar webhook send --scheme stripe`, as a developer
would; the receipt is read back from the S3 stand-in, the welcome mail from the SendGrid
stand-in, the "welcomed" mark from the Stripe stand-in; the GitHub lookup answers from GitHub, then
from its cache, and its fallback profile when GitHub cannot be reached; an error log line
reaches the Sentry stand-in. The last test runs the launcher itself, as the Makefile's
`run` target does.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from luar_e2e import BIN, DEFAULT_TIMEOUT, Luar, free_port, main, run_cli
from plugin_e2e import PLUGIN_DIR

SOURCE = os.environ.get("LUAR_SOURCE_DIR") or os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(SOURCE, "tools"))
from standins import BUCKET, REAL, StandIns  # noqa: E402

SECRET = "whsec_luar_example_stripe"   # scripts/lib/settings.lua's default
EVENTS = os.path.join(SOURCE, "scripts", "events")
# The example's variables, emptied (= unset for luar.conf.lua and the scripts) so that a
# developer's own keys never reach a test.
CLEAN = {v: "" for vars_ in REAL.values() for v in vars_}
CLEAN.update({v: "" for v in ("STRIPE_WEBHOOK_SECRET", "RECEIPTS_BUCKET", "MAIL_FROM",
                              "REPORT_TO", "REPORT_TZ", "REPORT_KEEP_DAYS",
                              "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                              "AWS_ENDPOINT_URL_S3", "STRIPE_API_BASE", "SENDGRID_API_BASE")})

# `luar webhook send` from the repository root, as in scripts/README.md: luar.conf.lua
# loads the plugins (the stripe scheme) from the build under test.
CLI_ENV = dict(CLEAN, LUAR_PLUGIN_DIR=PLUGIN_DIR)


def scripts():
    """Every file of scripts/, as Luar() writes them into its folder."""
    root = os.path.join(SOURCE, "scripts")
    files = {}
    for d, _, names in os.walk(root):
        for n in names:
            path = os.path.join(d, n)
            with open(path) as f:
                files[os.path.relpath(path, root)] = f.read()
    return files


def config():
    with open(os.path.join(SOURCE, "luar.conf.lua")) as f:
        return f.read()


def example(st):
    env = dict(CLEAN, LUAR_PLUGIN_DIR=PLUGIN_DIR)
    env.update(st.env)
    return Luar(scripts=scripts(), config=config(), env=env)


def send(luar, event, secret=SECRET):
    url = "http://127.0.0.1:%d/hooks/stripe" % luar.port
    path = event if os.path.isabs(event) else os.path.join(EVENTS, event + ".json")
    return run_cli(["webhook", "send", "--scheme", "stripe", "--secret", secret, "--url", url,
                    path], cwd=SOURCE, env=CLI_ENV)


def event_file(d, name, doc):
    path = os.path.join(d, name + ".json")
    with open(path, "w") as f:
        json.dump(doc, f)
    return path


def wait_for(cond, pred, what, timeout=DEFAULT_TIMEOUT):
    """Waits on a stand-in's condition variable until pred() holds."""
    deadline = time.monotonic() + timeout
    with cond:
        while not pred():
            left = deadline - time.monotonic()
            assert left > 0, "timed out waiting for " + what
            cond.wait(min(left, 0.5))


def test_payment_receipt_and_welcome():
    with StandIns(environ={}, ports=None) as st, example(st) as luar:
        # One start-up line per provider on a stand-in, naming its variable (GitHub and
        # Sentry are given URLs here, as a developer would give real ones).
        for var in ("STRIPE_API_KEY", "SENDGRID_API_KEY", "AWS_ACCESS_KEY_ID"):
            luar.wait_log(lambda r, v=var: r.get("enable_with") == v and
                          (v + " is not set") in r.get("msg", ""))
        for var in ("GITHUB_TOKEN", "SENTRY_DSN"):
            assert luar.count_logs(lambda r, v=var: r.get("enable_with") == v) == 0, var

        rc, out, err = send(luar, "payment_intent.succeeded")
        assert rc == 0 and "200" in out, (rc, out, err)

        # The receipt lands in the S3 stand-in, which checked its SigV4 signature.
        obj = st.s3.wait_object(BUCKET, "receipts/2026-11-29/pi_example_1.json")
        receipt = json.loads(obj["body"])
        assert receipt["amount"] == 2000 and receipt["currency"] == "eur", receipt
        assert receipt["customer"] == {"id": "cus_example", "email": "ada@example.com",
                                       "name": "Ada Lovelace"}, receipt
        assert obj["content_type"] == "application/json"
        assert obj["metadata"] == {"payment_intent": "pi_example_1"}, obj["metadata"]

        # The welcome mail reaches the SendGrid stand-in (which checked key and body) …
        luar.wait_log(lambda r: r.get("msg") == "welcome mail sent" and
                      r.get("customer") == "cus_example")
        mails = [r for r in st.sendgrid.requests if r["status"] == 202]
        assert len(mails) == 1, st.sendgrid.requests
        m = mails[0]["json"]
        assert m["personalizations"][0]["to"] == [{"email": "ada@example.com",
                                                    "name": "Ada Lovelace"}], m
        assert m["subject"].startswith("Welcome"), m
        # … and the customer is marked in Stripe, so a later payment welcomes no one.
        assert st.stripe.objects["cus_example"]["metadata"].get("welcomed_at"), \
            st.stripe.objects["cus_example"]

        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(EVENTS, "payment_intent.succeeded.json")) as f:
                ev = json.load(f)
            ev["id"] = "evt_example_succeeded_2"
            ev["data"]["object"]["id"] = "pi_example_3"
            rc, out, err = send(luar, event_file(d, "second", ev))
            assert rc == 0 and "200" in out, (rc, out, err)
            line = luar.wait_log(lambda r: r.get("msg") == "payment succeeded" and
                                 r.get("payment_intent") == "pi_example_3")
            assert "welcome_job" not in line, line
            st.s3.wait_object(BUCKET, "receipts/2026-11-29/pi_example_3.json")
            assert len([r for r in st.sendgrid.requests if r["status"] == 202]) == 1

            # A redelivery is acknowledged and not run again; a wrong secret is a 401.
            rc, out, err = send(luar, "payment_intent.succeeded")
            assert '"duplicate":true' in out.replace(" ", ""), (rc, out, err)
            rc, out, err = send(luar, "payment_intent.succeeded", secret="whsec_wrong")
            assert "401" in out + err, (rc, out, err)

        # A failed payment: a warning with the decline code, and its metric.
        rc, out, err = send(luar, "payment_intent.payment_failed")
        assert rc == 0 and "200" in out, (rc, out, err)
        line = luar.wait_log(lambda r: r.get("msg") == "payment failed")
        assert line["level"] == "warn" and line["code"] == "insufficient_funds", line
        status, _, body = luar.request("GET", "/metrics")
        text = body.decode()
        assert 'example_payment_failures_total{code="insufficient_funds"} 1' in text, text
        assert "example_receipts_stored_total 2" in text
        assert 'example_emails_total{kind="welcome",outcome="sent"} 1' in text


def test_github_lookup_and_fallback():
    with StandIns(environ={}, ports=None) as st, example(st) as luar:
        body = luar.get_json("/github/users/octocat")
        assert body["source"] == "github" and body["login"] == "octocat", body
        assert luar.get_json("/github/users/octocat")["source"] == "cache"
        status, _, raw = luar.request("GET", "/github/users/no-such-user")
        assert status == 404, (status, raw)
        gets = [r for r in st.github.requests if r["path"] == "/users/octocat"]
        assert len(gets) == 1 and gets[0]["headers"].get("user-agent"), gets


    # GitHub unreachable (nothing listens at its address): the fallback profile, not a 500.
    with StandIns(environ={}, ports=None) as st:
        st.env["GITHUB_API_BASE"] = "http://127.0.0.1:%d" % free_port()
        with example(st) as luar:
            status, headers, raw = luar.request("GET", "/github/users/torvalds")
            body = json.loads(raw)
            assert status == 200 and body["source"] == "fallback", (status, body)
            assert body["login"] == "torvalds", body
            assert body["html_url"] == "https://github.com/torvalds", body
            assert headers.get("x-fallback") == "connect", headers
            line = luar.wait_log(lambda r: r.get("msg") ==
                                 "github lookup failed, answering the fallback")
            assert line["login"] == "torvalds" and line["kind"] == "connect", line


def test_sentry_hears_what_goes_wrong():
    """A mail SendGrid refuses (a sender it does not know) is given up and logged as an
    error, which the sentry plugin sends to Sentry with the scripts' tag."""
    with StandIns(environ={}, ports=None) as st:
        st.env["MAIL_FROM"] = "hello@unverified.example"   # the stand-in's 403 trigger
        with example(st) as luar, tempfile.TemporaryDirectory() as d:
            ev = {"id": "evt_sentry_1", "type": "customer.subscription.created",
                  "data": {"object": {"id": "sub_1", "customer": "cus_example"}}}
            rc, out, err = send(luar, event_file(d, "sub", ev))
            assert rc == 0 and "200" in out, (rc, out, err)
            event = st.sentry.wait_event(lambda e: (e.get("logentry") or {}).get("formatted")
                                         == "sendgrid refused the mail")
            assert event["level"] == "error", event
            assert event["tags"].get("service") == "luar-example", event["tags"]
            assert event["extra"].get("kind") == "welcome", event.get("extra")
            assert [r["status"] for r in st.sendgrid.requests] == [403], st.sendgrid.requests
            # Given up, not retried, and the customer is not marked as welcomed.
            assert st.stripe.objects["cus_example"]["metadata"] == {}


def test_make_run_launcher():
    """tools/standins.py as `make run` runs it (stand-ins on free ports here, since a
    developer's `make run` may hold the fixed ones): luar comes up, an event's receipt and
    mail show in the launcher's `standin:` lines, and SIGTERM stops everything with 0."""
    port = free_port()
    data = tempfile.mkdtemp(prefix="luar-example-")
    env = dict(os.environ, **CLEAN)
    env.update({"LUAR_PLUGIN_DIR": PLUGIN_DIR, "LUAR_LISTEN": "127.0.0.1:%d" % port,
                "LUAR_DATA": data, "LUAR_STANDIN_PORTS": "free"})
    p = subprocess.Popen([sys.executable, "-B", os.path.join(SOURCE, "tools", "standins.py"),
                          BIN, "serve", "--scripts", "scripts"], cwd=SOURCE, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines, cond = [], threading.Condition()

    def read(stream):
        for raw in stream:
            with cond:
                lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                cond.notify_all()

    readers = [threading.Thread(target=read, args=(s,), daemon=True) for s in (p.stdout, p.stderr)]
    for t in readers:
        t.start()

    def seen(text):
        wait_for(cond, lambda: any(text in l for l in lines) or p.poll() is not None, text)
        with cond:
            assert any(text in l for l in lines), "%r not seen:\n%s" % (
                text, "\n".join(lines[-30:]))

    try:
        seen('"msg":"listening"')
        for name in ("stripe", "sendgrid", "github", "s3", "sentry"):
            seen("standin: %s on http://" % name)
        url = "http://127.0.0.1:%d/hooks/stripe" % port
        rc, out, err = run_cli(["webhook", "send", "--scheme", "stripe", "--secret", SECRET,
                                "--url", url, os.path.join(EVENTS,
                                                           "payment_intent.succeeded.json")],
                               cwd=SOURCE, env=CLI_ENV)
        assert rc == 0 and "200" in out, (rc, out, err)
        seen("standin: s3: PUT /%s/receipts/2026-11-29/pi_example_1.json → 200" % BUCKET)
        seen("standin: sendgrid: mail to ada@example.com: 'Welcome to Luar Example, "
             "Ada Lovelace' (202)")
        p.send_signal(signal.SIGTERM)
        assert p.wait(DEFAULT_TIMEOUT) == 0, "\n".join(lines[-30:])
        seen('"msg":"shutdown complete"')
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for t in readers:
            t.join(5)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main([test_payment_receipt_and_welcome, test_github_lookup_and_fallback,
          test_sentry_hears_what_goes_wrong, test_make_run_launcher])
