"""A stand-in for GitHub's REST API on 127.0.0.1, for the github plugin's tests. It checks
what GitHub checks (a User-Agent is required: 403 without one; a token, when sent, must be
valid: 401 "Bad credentials"; X-GitHub-Api-Version must name a supported version: 400) and
answers with GitHub's documented shapes: x-ratelimit-* headers on every answer,
{"message", "documentation_url", "status"} errors, 422 "Validation Failed" with `errors`,
Link-header pagination, primary rate limits (403, x-ratelimit-remaining: 0 until
x-ratelimit-reset) and secondary ones (403 or 429 with Retry-After). GET /users/<login>
answers a made-up profile (the example integration's lookups). Every request is
recorded (with its arrival time) for the test to inspect.

With `app=(app_id, public_key_pem)` it also stands in for GitHub App authentication: a
Bearer JWT (RS256, checked with the openssl command against the App's public key; iss, iat
and exp checked as GitHub does) is accepted on /app and on POST
/app/installations/<id>/access_tokens, which answers 201 {"token": "ghs_…", "expires_at"};
those installation tokens are accepted everywhere else until revoke_tokens().
"""
import base64
import json
import math
import os
import subprocess
import tempfile
import threading
import time
import urllib.parse

from loopback import LoopbackServer, QuietHandler

DOCS = "https://docs.github.com/rest"
SUPPORTED_VERSIONS = {"2022-11-28"}
UA_REFUSAL = ("Request forbidden by administrative rules. Please make sure your request has a "
              "User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-"
              "rest-api#user-agent-required). Check https://developer.github.com for other "
              "possible causes.\n")
SECONDARY = ("You have exceeded a secondary rate limit. Please wait a few minutes before you "
             "try again. If you reach out to GitHub Support for help, please include the "
             "request ID 0000:0000:0000000:0000000:00000000.")
ISSUES = [{"number": n, "title": "Issue %d" % n, "state": "open"} for n in range(1, 6)]


def user(login):
    """GET /users/<login>: GitHub's public user shape, made up for any login (the example
    integration's lookups); a login starting with "no-such-" is a 404, as for a real unknown
    one."""
    uid = sum(ord(c) for c in login)
    return {"login": login, "id": uid, "type": "User", "name": login.capitalize(),
            "avatar_url": "https://avatars.githubusercontent.com/u/%d?v=4" % uid,
            "html_url": "https://github.com/" + login, "public_repos": len(login),
            "followers": uid % 100}


class GitHubStandIn(LoopbackServer):
    """`with GitHubStandIn(token) as gh:` — gh.base_url, gh.requests (dicts with t, method,
    path, query, headers (lower-case), body, status)."""

    def __init__(self, token, app=None, port=0):
        self.token = token
        self.app = app
        self.installation_tokens = set()
        self.minted = 0
        self.requests = []
        self.lock = threading.Condition()
        self.state = {}  # per rate-limit key: when it resets
        outer = self

        class Handler(QuietHandler):
            def _answer(self, status, doc=None, headers=None, text=None):
                body = (text.encode() if text is not None else
                        b"" if doc is None else json.dumps(doc).encode())
                self.send_response(status)
                now = int(time.time())
                h = {"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "4999",
                     "X-RateLimit-Reset": str(now + 3600), "X-RateLimit-Used": "1",
                     "X-RateLimit-Resource": "core",
                     "X-GitHub-Request-Id": "C0DE:%04X:%d" % (len(outer.requests), now)}
                h.update(headers or {})
                for k, v in h.items():
                    self.send_header(k, v)
                if text is not None:
                    self.send_header("Content-Type", "text/plain; charset=utf-8")
                elif doc is not None:
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return status

            def _error(self, status, message, doc_url=DOCS, headers=None, **extra):
                doc = {"message": message, "documentation_url": doc_url, "status": str(status)}
                doc.update(extra)
                return self._answer(status, doc, headers)

            def _serve(self):
                u = urllib.parse.urlsplit(self.path)
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                rec = {"t": time.time(), "method": self.command, "path": u.path,
                       "query": dict(urllib.parse.parse_qsl(u.query)),
                       "headers": {k.lower(): v for k, v in self.headers.items()},
                       "body": raw}
                rec["status"] = self._route(rec, u, raw)
                with outer.lock:
                    outer.requests.append(rec)
                    outer.lock.notify_all()

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

            def _route(self, rec, u, raw):
                h = rec["headers"]
                if not h.get("user-agent"):
                    return self._answer(403, text=UA_REFUSAL)
                auth = h.get("authorization")
                path, q, m = u.path, rec["query"], self.command
                if outer.app and auth and auth.startswith("Bearer ey"):
                    why = outer.check_jwt(auth[len("Bearer "):])
                    rec["jwt"] = why or "ok"
                    if why:
                        return self._error(401, "A JSON web token could not be decoded")
                    if path == "/app":
                        return self._answer(200, {"id": int(outer.app[0]), "slug": "luar-test"})
                    parts = path.split("/")
                    if (m == "POST" and len(parts) == 5 and parts[1:3] == ["app", "installations"]
                            and parts[4] == "access_tokens"):
                        with outer.lock:
                            outer.minted += 1
                            tok = "ghs_%d_%s" % (outer.minted, parts[3])
                            outer.installation_tokens.add(tok)
                        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                time.gmtime(time.time() + 3600))
                        return self._answer(201, {"token": tok, "expires_at": expires,
                                                  "permissions": {"issues": "write"},
                                                  "repository_selection": "all"})
                    return self._error(403, "A JSON web token cannot be used for this endpoint")
                installation = (auth or "")[len("Bearer "):] in outer.installation_tokens
                if installation and path == "/installation/repositories":
                    repos = [{"id": i, "full_name": "octo/repo%d" % i} for i in range(1, 4)]
                    return self._page(q, repos, lambda items: {
                        "total_count": len(repos), "repositories": items})
                if auth is not None and not installation and auth != "Bearer " + outer.token:
                    return self._error(401, "Bad credentials")
                version = h.get("x-github-api-version")
                if version is not None and version not in SUPPORTED_VERSIONS:
                    return self._error(400, "Unsupported 'X-GitHub-Api-Version' header value",
                                       DOCS + "/overview/api-versions")
                if path == "/user":
                    if auth is None:
                        return self._error(401, "Requires authentication")
                    return self._answer(200, {"login": "octocat", "id": 1})
                if path == "/repos/octo/hello/issues" and m == "GET":
                    return self._page(q, ISSUES, lambda items: items)
                if path == "/search/issues":
                    return self._page(q, ISSUES[:3], lambda items: {
                        "total_count": 3, "incomplete_results": False, "items": items})
                if path == "/repos/octo/hello/issues" and m == "POST":
                    body = json.loads(raw or b"{}")
                    if not h.get("content-type", "").startswith("application/json"):
                        return self._error(415, "Unsupported Media Type")
                    if not body.get("title"):
                        return self._error(422, "Validation Failed",
                                           DOCS + "/issues/issues#create-an-issue",
                                           errors=[{"resource": "Issue", "code": "missing_field",
                                                    "field": "title"}])
                    return self._answer(201, {"number": 6, "title": body["title"],
                                              "labels": body.get("labels", [])})
                if path == "/repos/octo/hello/issues/1" and m == "PATCH":
                    return self._answer(200, dict(ISSUES[0], **json.loads(raw)))
                if path == "/repos/octo/hello/issues/1/lock" and m in ("PUT", "DELETE"):
                    return self._answer(204)
                if path == "/repos/octo/down":
                    return self._error(502, "Server Error")
                if path == "/repos/octo/evil/issues":
                    return self._answer(200, [ISSUES[0]], {
                        "Link": '<http://127.0.0.2:9/steal?page=2>; rel="next"'})
                parts = path.split("/")
                if len(parts) == 3 and parts[1] == "users" and m == "GET" and parts[2]:
                    if parts[2].startswith("no-such-"):
                        return self._error(404, "Not Found", DOCS + "/users/users#get-a-user")
                    return self._answer(200, user(parts[2]))
                if len(parts) == 4 and parts[1] == "rate":
                    return self._rate(parts[2], parts[3])
                return self._error(404, "Not Found",
                                   DOCS + "/repos/repos#get-a-repository")

            def _page(self, q, items, shape):
                per_page = int(q.get("per_page", "30"))
                page = int(q.get("page", "1"))
                last = max(1, math.ceil(len(items) / per_page))
                chunk = items[(page - 1) * per_page: page * per_page]
                base = outer.base_url + urllib.parse.urlsplit(self.path).path

                def link(p):
                    qq = dict(q, page=str(p))
                    return base + "?" + urllib.parse.urlencode(qq)
                rels = []
                if page < last:
                    rels.append('<%s>; rel="next"' % link(page + 1))
                    rels.append('<%s>; rel="last"' % link(last))
                if page > 1:
                    rels.insert(0, '<%s>; rel="prev"' % link(page - 1))
                    rels.append('<%s>; rel="first"' % link(1))
                headers = {"Link": ", ".join(rels)} if rels else {}
                return self._answer(200, shape(chunk), headers)

            def _rate(self, kind, key):
                now = time.time()
                with outer.lock:
                    until = outer.state.get(key)
                    if until is None:
                        # The first call is refused: the window resets at the next whole
                        # second at least one second away (x-ratelimit-reset is whole
                        # seconds), a secondary limit lifts after Retry-After: 1.
                        until = (math.ceil(now + 1) if kind in ("primary", "spent")
                                 else now + 120 if kind == "long" else now + 1)
                        outer.state[key] = until
                        first = True
                    else:
                        first = False
                if kind == "spent":
                    if first:  # a success that used the window's last request
                        return self._answer(200, {"ok": True, "call": 1}, {
                            "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(until))})
                    if now < until:
                        return self._primary(until)
                    return self._answer(200, {"ok": True, "call": 2})
                if now >= until:
                    return self._answer(200, {"ok": True})
                if kind in ("primary", "long"):
                    return self._primary(until)
                status = 429 if kind == "secondary429" else 403
                return self._error(status, SECONDARY, DOCS + "/overview/rate-limits-for-the-"
                                   "rest-api#about-secondary-rate-limits",
                                   {"Retry-After": str(max(1, math.ceil(until - now)))})

            def _primary(self, until):
                return self._error(403, "API rate limit exceeded for user ID 1.",
                                   DOCS + "/overview/rate-limits-for-the-rest-api",
                                   {"X-RateLimit-Remaining": "0",
                                    "X-RateLimit-Reset": str(int(math.ceil(until))),
                                    "X-RateLimit-Used": "5000"})

        self.serve(Handler, port)
        self.base_url = self.url

    def check_jwt(self, jwt):
        """None when `jwt` is a valid JWT of the App, else what is wrong."""
        def unb64(x):
            return base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
        try:
            h, p, sig = jwt.split(".")
            header, claims = json.loads(unb64(h)), json.loads(unb64(p))
            sig = unb64(sig)
        except ValueError:
            return "not a JWT"
        now = time.time()
        if header.get("alg") != "RS256":
            return "alg"
        if str(claims.get("iss")) != str(self.app[0]):
            return "iss"
        if not (claims["iat"] <= now + 1 < claims["exp"] and claims["exp"] - claims["iat"] <= 660):
            return "times"
        with tempfile.TemporaryDirectory() as d:
            key, sigf = os.path.join(d, "pub.pem"), os.path.join(d, "sig")
            with open(key, "w") as f:
                f.write(self.app[1])
            with open(sigf, "wb") as f:
                f.write(sig)
            r = subprocess.run(["openssl", "dgst", "-sha256", "-verify", key, "-signature", sigf],
                               input=(h + "." + p).encode(), capture_output=True)
        return None if r.returncode == 0 else "signature"

    def revoke_tokens(self):
        with self.lock:
            self.installation_tokens.clear()

    def wait_requests(self, pred, timeout=30):
        """Waits until some recorded request matches pred; returns it."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                for r in self.requests:
                    if pred(r):
                        return r
                left = deadline - time.monotonic()
                assert left > 0, "request not seen: %r" % [
                    (r["method"], r["path"]) for r in self.requests]
                self.lock.wait(min(left, 0.5))
