"""A small S3-compatible server on 127.0.0.1, standard library only: what `make run` uses
for the example's receipts and reports when no AWS key is set, and what the example's
end-to-end test reads them back from. (The s3 plugin's own tests use s3rver, from npm,
behind tests/e2e/s3_server.js; `make run` must not need npm.)

It checks what S3 checks on each request: a Signature Version 4 `Authorization` header
(recomputed here from the canonical request and compared: 403 SignatureDoesNotMatch, or
InvalidAccessKeyId for an unknown key), `x-amz-content-sha256` equal to the body's SHA-256
(400 XAmzContentSHA256Mismatch), and an `x-amz-date` within 15 minutes (403
RequestTimeTooSkewed). Path-style addressing only (`/<bucket>/<key>`), buckets fixed at
start. Calls: PUT, GET, HEAD and DELETE of objects (with Content-Type and x-amz-meta-*), and
ListObjectsV2 (`GET /<bucket>?list-type=2&prefix=…&max-keys=…&continuation-token=…`).
Errors are S3's XML documents. Objects are kept in memory: `s3.objects[(bucket, key)]` is
{body, content_type, metadata, etag, last_modified}.
"""
import calendar
import hashlib
import hmac
import threading
import time
import urllib.parse
from xml.sax.saxutils import escape

from loopback import LoopbackServer, QuietHandler

SKEW = 15 * 60


def _sign(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signature(secret, date, region, service, string_to_sign):
    k = _sign(("AWS4" + secret).encode(), date)
    k = _sign(k, region)
    k = _sign(k, service)
    k = _sign(k, "aws4_request")
    return hmac.new(k, string_to_sign.encode(), hashlib.sha256).hexdigest()


def canonical_query(raw):
    pairs = []
    for part in raw.split("&") if raw else []:
        k, _, v = part.partition("=")
        enc = lambda s: urllib.parse.quote(urllib.parse.unquote(s), safe="-_.~")
        pairs.append((enc(k), enc(v)))
    return "&".join("%s=%s" % kv for kv in sorted(pairs))


class S3StandIn(LoopbackServer):
    """`with S3StandIn(access_key, secret_key, buckets) as s3:` — s3.endpoint, s3.objects,
    s3.requests (dicts: method, path, status)."""

    def __init__(self, access_key, secret_key, buckets, region="us-east-1", port=0):
        self.access_key, self.secret_key, self.region = access_key, secret_key, region
        self.buckets = set(buckets)
        self.objects = {}
        self.requests = []
        self.lock = threading.Condition()
        outer = self

        class Handler(QuietHandler):
            def _send(self, status, body=b"", headers=None):
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                if "Content-Length" not in (headers or {}):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
                return status

            def _error(self, status, code, message, resource=""):
                body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code>'
                        '<Message>%s</Message><Resource>%s</Resource><RequestId>%s'
                        '</RequestId></Error>' % (code, escape(message), escape(resource),
                                                  "%016X" % int(time.time() * 1e6)))
                return self._send(status, body.encode(), {"Content-Type": "application/xml"})

            def _serve(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                rec = {"method": self.command, "path": self.path}
                rec["status"] = self._route(body)
                with outer.lock:
                    outer.requests.append(rec)
                    outer.lock.notify_all()

            do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _serve

            def _check_auth(self, raw_path, raw_query, body):
                auth = self.headers.get("Authorization", "")
                if not auth.startswith("AWS4-HMAC-SHA256 "):
                    return 403, "AccessDenied", "Access Denied"
                fields = dict(p.strip().split("=", 1) for p in auth[17:].split(","))
                cred = fields.get("Credential", "").split("/")
                if len(cred) != 5 or cred[0] != outer.access_key:
                    return 403, "InvalidAccessKeyId", ("The AWS Access Key Id you provided "
                                                       "does not exist in our records.")
                amz_date = self.headers.get("x-amz-date", "")
                try:
                    t = calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
                except ValueError:
                    return 403, "AccessDenied", "AWS authentication requires a valid Date"
                if abs(time.time() - t) > SKEW:
                    return 403, "RequestTimeTooSkewed", ("The difference between the request "
                                                         "time and the current time is too large.")
                payload = self.headers.get("x-amz-content-sha256", "")
                if payload != "UNSIGNED-PAYLOAD" and payload != hashlib.sha256(body).hexdigest():
                    return 400, "XAmzContentSHA256Mismatch", ("The provided "
                                                              "'x-amz-content-sha256' header "
                                                              "does not match what was computed.")
                signed = fields.get("SignedHeaders", "").split(";")
                headers = "".join("%s:%s\n" % (h, " ".join((self.headers.get(h) or "").split()))
                                  for h in signed)
                creq = "\n".join([self.command, raw_path, canonical_query(raw_query), headers,
                                  ";".join(signed), payload])
                sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, "/".join(cred[1:]),
                                 hashlib.sha256(creq.encode()).hexdigest()])
                want = signature(outer.secret_key, cred[1], cred[2], cred[3], sts)
                if not hmac.compare_digest(want, fields.get("Signature", "")):
                    return 403, "SignatureDoesNotMatch", ("The request signature we calculated "
                                                          "does not match the signature you "
                                                          "provided.")
                return None

            def _route(self, body):
                raw_path, _, raw_query = self.path.partition("?")
                bad = self._check_auth(raw_path, raw_query, body)
                if bad:
                    return self._error(bad[0], bad[1], bad[2], raw_path)
                bucket, _, key = urllib.parse.unquote(raw_path).lstrip("/").partition("/")
                if bucket not in outer.buckets:
                    return self._error(404, "NoSuchBucket", "The specified bucket does not "
                                       "exist", "/" + bucket)
                if not key:
                    q = dict(urllib.parse.parse_qsl(raw_query, keep_blank_values=True))
                    if self.command == "GET" and q.get("list-type") == "2":
                        return self._list(bucket, q)
                    return self._error(405, "MethodNotAllowed", "The specified method is not "
                                       "allowed against this resource.", raw_path)
                with outer.lock:
                    obj = outer.objects.get((bucket, key))
                if self.command == "PUT":
                    obj = {"body": body, "etag": '"%s"' % hashlib.md5(body).hexdigest(),
                           "content_type": self.headers.get("Content-Type",
                                                            "binary/octet-stream"),
                           "metadata": {k[11:].lower(): v for k, v in self.headers.items()
                                        if k.lower().startswith("x-amz-meta-")},
                           "last_modified": time.time()}
                    with outer.lock:
                        outer.objects[(bucket, key)] = obj
                    return self._send(200, b"", {"ETag": obj["etag"]})
                if self.command == "DELETE":
                    with outer.lock:
                        outer.objects.pop((bucket, key), None)
                    return self._send(204)
                if self.command in ("GET", "HEAD"):
                    if obj is None:
                        if self.command == "HEAD":
                            return self._send(404)
                        return self._error(404, "NoSuchKey", "The specified key does not "
                                           "exist.", raw_path)
                    h = {"Content-Type": obj["content_type"], "ETag": obj["etag"],
                         "Content-Length": str(len(obj["body"])),
                         "Last-Modified": time.strftime("%a, %d %b %Y %H:%M:%S GMT",
                                                        time.gmtime(obj["last_modified"]))}
                    for k, v in obj["metadata"].items():
                        h["x-amz-meta-" + k] = v
                    return self._send(200, obj["body"], h)
                return self._error(405, "MethodNotAllowed", "The specified method is not "
                                   "allowed against this resource.", raw_path)

            def _list(self, bucket, q):
                prefix = q.get("prefix", "")
                max_keys = int(q.get("max-keys") or 1000)
                after = q.get("continuation-token") or q.get("start-after") or ""
                with outer.lock:
                    keys = sorted(k for (b, k) in outer.objects
                                  if b == bucket and k.startswith(prefix) and k > after)
                    page = [(k, outer.objects[(bucket, k)]) for k in keys[:max_keys]]
                truncated = len(keys) > max_keys
                items = "".join(
                    "<Contents><Key>%s</Key><LastModified>%s</LastModified><ETag>%s</ETag>"
                    "<Size>%d</Size><StorageClass>STANDARD</StorageClass></Contents>" % (
                        escape(k), time.strftime("%Y-%m-%dT%H:%M:%S.000Z",
                                                 time.gmtime(o["last_modified"])),
                        escape(o["etag"]), len(o["body"])) for k, o in page)
                token = ("<NextContinuationToken>%s</NextContinuationToken>" %
                         escape(page[-1][0]) if truncated else "")
                doc = ('<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns='
                       '"http://s3.amazonaws.com/doc/2006-03-01/"><Name>%s</Name><Prefix>%s'
                       '</Prefix><KeyCount>%d</KeyCount><MaxKeys>%d</MaxKeys><IsTruncated>%s'
                       '</IsTruncated>%s%s</ListBucketResult>' % (
                           escape(bucket), escape(prefix), len(page), max_keys,
                           "true" if truncated else "false", token, items))
                return self._send(200, doc.encode(), {"Content-Type": "application/xml"})

        self.serve(Handler, port)
        self.endpoint = self.url

    def wait_object(self, bucket, key, timeout=30):
        """The object once it exists (waits on the stand-in's own condition, not a poll)."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while (bucket, key) not in self.objects:
                left = deadline - time.monotonic()
                assert left > 0, "no object %s/%s; have %s" % (bucket, key, sorted(self.objects))
                self.lock.wait(min(left, 0.5))
            return self.objects[(bucket, key)]
