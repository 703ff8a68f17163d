"""A local Sentry stand-in for the Sentry plugin's tests: accepts envelopes at
/api/<project>/envelope/ on 127.0.0.1 and parses them the way Sentry's ingestion (Relay)
does: a header line of JSON, then items, each an item-header line of JSON whose `length`
gives the payload's size in bytes, the payload, and a newline. Checks the X-Sentry-Auth
header against the DSN's key. Standard library only."""
import json
import threading
import time

from loopback import LoopbackServer, QuietHandler


class EnvelopeError(ValueError):
    pass


def parse_envelope(raw):
    """Returns (header, [(item_header, payload_bytes)]) or raises EnvelopeError."""
    nl = raw.find(b"\n")
    if nl < 0:
        raise EnvelopeError("no envelope header line")
    header = json.loads(raw[:nl])
    if not isinstance(header, dict):
        raise EnvelopeError("envelope header is not an object")
    pos = nl + 1
    items = []
    while pos < len(raw):
        if raw[pos:] == b"\n":
            break
        nl = raw.find(b"\n", pos)
        if nl < 0:
            raise EnvelopeError("item header without a newline")
        ih = json.loads(raw[pos:nl])
        if "type" not in ih:
            raise EnvelopeError("item header without a type")
        pos = nl + 1
        if "length" in ih:
            n = ih["length"]
            payload = raw[pos:pos + n]
            if len(payload) != n:
                raise EnvelopeError("payload shorter than its length")
            pos += n
            if pos < len(raw):
                if raw[pos:pos + 1] != b"\n":
                    raise EnvelopeError("no newline after a payload of the given length")
                pos += 1
        else:
            nl = raw.find(b"\n", pos)
            payload = raw[pos:] if nl < 0 else raw[pos:nl]
            pos = len(raw) if nl < 0 else nl + 1
        items.append((ih, payload))
    return header, items


class SentryStandIn(LoopbackServer):
    """Start with `with SentryStandIn("key", "42") as s:`; s.dsn is the DSN to configure.
    s.respond(fn) sets fn(envelope) -> (status, headers dict) for later requests."""

    def __init__(self, key="e2ekey", project="42", port=0):
        self.key, self.project = key, project
        self.envelopes = []  # dicts: raw, headers, header, items, events, at (monotonic)
        self.errors = []     # requests refused (bad auth, bad envelope): text
        self.arrived = 0     # envelopes received, answered or not yet
        self.cond = threading.Condition()
        self._respond = lambda env: (200, {})
        stand_in = self

        class Handler(QuietHandler):
            def do_GET(self):  # an upstream for outbound calls (child spans)
                body = b'{"ok":true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(n)
                status, headers, body = stand_in._handle(self.path, dict(self.headers), raw)
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (luar shutting down): nothing to answer

        self.serve(Handler, port, block_on_close=False)  # a held answer never holds the exit
        self.dsn = "http://%s@127.0.0.1:%d/%s" % (key, self.port, project)

    def respond(self, fn):
        self._respond = fn

    def _refuse(self, why):
        with self.cond:
            self.errors.append(why)
            self.cond.notify_all()
        return 400, {}, json.dumps({"detail": why}).encode()

    def _handle(self, path, headers, raw):
        if path != "/api/%s/envelope/" % self.project:
            return self._refuse("wrong path " + path)
        h = {k.lower(): v for k, v in headers.items()}
        if h.get("content-type") != "application/x-sentry-envelope":
            return self._refuse("wrong content type %r" % h.get("content-type"))
        auth = h.get("x-sentry-auth", "")
        if not auth.startswith("Sentry "):
            return self._refuse("no X-Sentry-Auth")
        parts = dict(p.strip().split("=", 1) for p in auth[len("Sentry "):].split(","))
        if parts.get("sentry_key") != self.key or parts.get("sentry_version") != "7" or \
                not parts.get("sentry_client", "").startswith("luar-sentry/"):
            return self._refuse("bad X-Sentry-Auth %r" % auth)
        try:
            header, items = parse_envelope(raw)
            events = [json.loads(p) for ih, p in items if ih["type"] in ("event", "transaction")]
        except (ValueError, EnvelopeError) as e:
            return self._refuse("bad envelope: %s" % e)
        env = {"raw": raw, "headers": h, "header": header, "items": items, "events": events,
               "at": time.monotonic()}
        with self.cond:
            self.arrived += 1
            self.cond.notify_all()
        status, rheaders = self._respond(env)
        env["status"] = status
        with self.cond:
            self.envelopes.append(env)
            self.cond.notify_all()
        body = json.dumps({"id": header.get("event_id")}).encode()
        return status, rheaders, body

    def wait_event(self, pred, timeout=30, start=0):
        """The first event (payload dict) matching pred, from envelope index `start`."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for env in self.envelopes[start:]:
                    for ev in env["events"]:
                        if pred(ev):
                            return ev
                assert not self.errors, "the stand-in refused requests: %s" % self.errors
                left = deadline - time.monotonic()
                assert left > 0, "no matching event; got %s" % json.dumps(
                    [e for env in self.envelopes for e in env["events"]])[:3000]
                self.cond.wait(min(left, 0.5))

    def wait_arrived(self, n, timeout=30):
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.arrived < n:
                left = deadline - time.monotonic()
                assert left > 0, "only %d envelopes arrived" % self.arrived
                self.cond.wait(min(left, 0.5))

    def count(self):
        with self.cond:
            return len(self.envelopes)
