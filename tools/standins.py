#!/usr/bin/env python3
"""Local stand-ins for the providers the example integration calls, so `make run` works
with no accounts. Usage (what `make run` does):

    tools/standins.py ./build/luar serve --scripts scripts

For each provider whose key is not set in the environment it starts a stand-in on
127.0.0.1 (Stripe 12111, SendGrid 12112, GitHub 12113, S3 12114, Sentry 12115: the URLs
luar.conf.lua falls back to), runs the command, and stops them when it exits; a provider
whose key is set is left alone (the real one is used). The stand-ins are the end-to-end
tests' (tests/e2e: stripe_api.py, sendgrid_standin.py, github_standin.py,
s3_standin.py, sentry_server.py), Python standard library only. What reaches them is
printed on stderr, one `standin:` line a request, so you can watch the mail "leave".

The Stripe stand-in knows one customer, cus_example (the one scripts/events/*.json name).
With LUAR_STANDIN_PORTS=free the stand-ins take free ports and their URLs reach luar in
STRIPE_API_BASE, SENDGRID_API_BASE, GITHUB_API_BASE and AWS_ENDPOINT_URL_S3;
tests/e2e/test_example.py runs the launcher so, and the same set in-process with
StandIns(ports=None).
"""
import os
import signal
import subprocess
import sys
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

from github_standin import GitHubStandIn      # noqa: E402
from s3_standin import S3StandIn              # noqa: E402
from sendgrid_standin import SendGridStandIn  # noqa: E402
from sentry_server import SentryStandIn       # noqa: E402
from stripe_api import StripeStandIn          # noqa: E402

PORTS = {"stripe": 12111, "sendgrid": 12112, "github": 12113, "s3": 12114, "sentry": 12115}
# The keys luar.conf.lua gives the plugins when the real ones are unset.
STRIPE_KEY = "sk_test_luar_standin"
SENDGRID_KEY = "SG.luar-standin"
S3_KEYS = ("luar-standin", "luar-standin-secret")
BUCKET = "luar-example-receipts"
CUSTOMER = {"id": "cus_example", "object": "customer", "created": 1795930000,
            "email": "ada@example.com", "name": "Ada Lovelace", "metadata": {},
            "livemode": False}
# The variable that switches each provider to the real one (scripts/README.md).
REAL = {"stripe": ("STRIPE_API_KEY",), "sendgrid": ("SENDGRID_API_KEY",),
        "github": ("GITHUB_TOKEN", "GITHUB_API_BASE"), "s3": ("AWS_ACCESS_KEY_ID",),
        "sentry": ("SENTRY_DSN",)}


class StandIns:
    """The stand-ins of the providers without a key in `environ`. `ports`: the fixed ports
    above, or None for free ones (then `env` also carries the base URLs for luar.conf.lua).
    After __enter__: `env` (variables to add to luar's environment) and one attribute per
    stand-in started (stripe, sendgrid, github, s3, sentry), None for the others."""

    def __init__(self, environ=None, ports=PORTS):
        environ = os.environ if environ is None else environ
        self.ports = ports
        self.wanted = [name for name, vars_ in REAL.items()
                       if not any(environ.get(v) for v in vars_)]
        self.env = {}
        self.started = []
        self.stripe = self.sendgrid = self.github = self.s3 = self.sentry = None

    def _port(self, name):
        return self.ports[name] if self.ports else 0

    def __enter__(self):
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self):
        free = not self.ports
        w = self.wanted
        if "stripe" in w:
            self.stripe = StripeStandIn(api_key=STRIPE_KEY, port=self._port("stripe"))
            self.stripe.store(dict(CUSTOMER, metadata={}))
            self._up(self.stripe, "stripe", self.stripe.url)
            if free:
                self.env["STRIPE_API_BASE"] = self.stripe.url
        if "sendgrid" in w:
            self.sendgrid = SendGridStandIn(SENDGRID_KEY, port=self._port("sendgrid"))
            self._up(self.sendgrid, "sendgrid", self.sendgrid.base_url)
            if free:
                self.env["SENDGRID_API_BASE"] = self.sendgrid.base_url
        if "github" in w:
            self.github = GitHubStandIn("ghp_luar_standin", port=self._port("github"))
            self._up(self.github, "github", self.github.base_url)
            if free:
                self.env["GITHUB_API_BASE"] = self.github.base_url
        if "s3" in w:
            self.s3 = S3StandIn(S3_KEYS[0], S3_KEYS[1], [BUCKET], port=self._port("s3"))
            self._up(self.s3, "s3", self.s3.endpoint)
            if free:
                self.env["AWS_ENDPOINT_URL_S3"] = self.s3.endpoint
        if "sentry" in w:
            # SENTRY_DSN is the switch itself: luar.conf.lua has no stand-in default for it
            # (a `luar test` run must not send events), so it is always set here.
            self.sentry = SentryStandIn("luarstandin", "1", port=self._port("sentry"))
            self._up(self.sentry, "sentry", self.sentry.dsn)
            self.env["SENTRY_DSN"] = self.sentry.dsn

    def _up(self, standin, name, url):
        standin.__enter__()
        self.started.append((name, standin, url))

    def __exit__(self, *exc):
        for _, standin, _ in reversed(self.started):
            standin.__exit__(None, None, None)
        self.started = []


def describe(name, rec):
    """One line about a request a stand-in received."""
    if name == "sendgrid":
        m = rec.get("json") or {}
        to = [a.get("email") for p in m.get("personalizations", []) for a in p.get("to", [])]
        return "mail to %s: %r (%s)" % (", ".join(to), m.get("subject"), rec.get("status"))
    if name == "sentry":
        ev = (rec.get("events") or [{}])[0]
        what = (ev.get("logentry") or {}).get("formatted") or \
            ((ev.get("exception") or {}).get("values") or [{}])[0].get("value")
        return "event %s: %s" % (ev.get("level"), what)
    return "%s %s → %s" % (rec.get("method"), rec.get("path"), rec.get("status"))


def watch(standins, stop):
    """Prints what reaches the stand-ins until `stop` is set (twice a second: a dev aid)."""
    seen = {}
    while not stop.wait(0.5):
        for name, s, _ in standins.started:
            recs = s.envelopes if name == "sentry" else s.requests
            for rec in list(recs)[seen.get(name, 0):]:
                print("standin: %s: %s" % (name, describe(name, rec)), file=sys.stderr,
                      flush=True)
            seen[name] = len(recs)


def main(argv):
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("usage: tools/standins.py COMMAND [ARGS…]", file=sys.stderr)
        return 2
    try:
        # LUAR_STANDIN_PORTS=free: free ports (tests/e2e/test_example.py runs it so).
        free = os.environ.get("LUAR_STANDIN_PORTS") == "free"
        standins = StandIns(ports=None if free else PORTS).__enter__()
    except OSError as e:
        print("standins: cannot start the stand-ins (%s); is another `make run` up?" % e,
              file=sys.stderr)
        return 1
    try:
        for name, _, url in standins.started:
            print("standin: %s on %s (set %s to use the real one)" % (name, url, REAL[name][0]),
                  file=sys.stderr, flush=True)
        env = dict(os.environ)
        env.update(standins.env)
        stop = threading.Event()
        threading.Thread(target=watch, args=(standins, stop), daemon=True).start()
        child = subprocess.Popen(argv, env=env)
        # Ctrl-C reaches the whole process group: luar shuts down gracefully on its own,
        # and this waits for it. A SIGTERM sent to this process alone is passed on.
        signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
        while True:
            try:
                status = child.wait()
                break
            except KeyboardInterrupt:
                continue
        stop.set()
        return status if status >= 0 else 128 - status
    finally:
        standins.__exit__(None, None, None)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
