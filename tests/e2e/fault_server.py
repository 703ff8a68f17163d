"""A fault-injecting HTTP(S) upstream for the outbound client's tests: real sockets on
loopback, standard library only, one thread per connection, HTTP/1.1 keep-alive.

Routes (query parameters in brackets):
  /status/N [retry_after=S]   answer status N, with Retry-After: S when given
  /hang                       read the request, never answer (until the server stops)
  /reset                      read the request, then reset the connection (RST)
  /trickle [n=10&delay=0.1]   a body of n bytes, one every `delay` seconds
  /huge [size=N&chunked=1]    a body of N bytes (with Content-Length unless chunked)
  /etag                       ETag "v1" and Last-Modified; 304 on If-None-Match: "v1"
  /sleep [s=0.05]             200 after s seconds
  /seq/NAME [codes=200,500]   the i-th request to NAME answers the i-th code (the last one
                              repeats); 200s carry ETag "seqN" and a body "seq NAME #i"
  /echo (any method)          JSON: method, path, query (name -> list), headers (lower-case),
                              body, client_subject (mTLS)
  GET /_requests              JSON list of every request received: method, path, t (monotonic
                              seconds), headers; DELETE /_requests clears it

FaultServer(tls=None | {"cert":, "key":, "client_ca": None | path}) then .start(),
.port, .url(path), .requests(), .wait_requests(prefix, n), .stop(). Run as a script, it prints its port and serves.
"""
import http.server
import json
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status, body=b"", headers=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        body = self._read_body()
        q = {k: v[0] for k, v in query.items()}
        fs = self.server.fault
        if url.path != "/_requests":
            fs._record(self.command, self.path, dict((k.lower(), v) for k, v in
                                                     self.headers.items()))
        path = url.path
        if path == "/_requests":
            if self.command == "DELETE":
                fs.clear()
                return self._send(204)
            return self._send(200, json.dumps(fs.requests()).encode(),
                              {"Content-Type": "application/json"})
        if path.startswith("/status/"):
            h = {"Content-Type": "text/plain"}
            if "retry_after" in q:
                h["Retry-After"] = q["retry_after"]
            return self._send(int(path[8:]), b"status " + path[8:].encode(), h)
        if path == "/hang":
            fs.stopping.wait(60)
            self.close_connection = True
            return
        if path == "/reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        if path == "/trickle":
            n, delay = int(q.get("n", 10)), float(q.get("delay", 0.1))
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            for _ in range(n):
                self.wfile.write(b"x")
                self.wfile.flush()
                if fs.stopping.wait(delay):
                    break
            return
        if path == "/huge":
            size = int(q.get("size", 20 * 1024 * 1024))
            chunked = q.get("chunked") == "1"
            self.send_response(200)
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", str(size))
            self.end_headers()
            block = b"y" * 65536
            left = size if self.command != "HEAD" else 0
            try:
                while left > 0:
                    part = block[:min(left, len(block))]
                    if chunked:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                    else:
                        self.wfile.write(part)
                    left -= len(part)
                if chunked:
                    self.wfile.write(b"0\r\n\r\n")
            except OSError:
                self.close_connection = True
            return
        if path == "/etag":
            h = {"ETag": '"v1"', "Last-Modified": "Mon, 02 Jan 2006 15:04:05 GMT",
                 "Cache-Control": "max-age=60"}
            if self.headers.get("If-None-Match") == '"v1"':
                return self._send(304, b"", h)
            return self._send(200, b"etag body", h)
        if path.startswith("/seq/"):
            codes = [int(c) for c in q.get("codes", "200").split(",")]
            with fs.lock:
                i = fs._seq.get(path, 0)
                fs._seq[path] = i + 1
            code = codes[min(i, len(codes) - 1)]
            h = {"Content-Type": "text/plain"}
            if code == 200:
                h["ETag"] = '"seq%d"' % i
            return self._send(code, ("seq %s #%d" % (path[5:], i)).encode(), h)
        if path == "/sleep":
            fs.stopping.wait(float(q.get("s", 0.05)))
            return self._send(200, b"slept")
        if path == "/echo" or path.startswith("/echo/"):
            subject = None
            if isinstance(self.connection, ssl.SSLSocket):
                cert = self.connection.getpeercert()
                if cert:
                    subject = ",".join("%s=%s" % kv for rdn in cert["subject"] for kv in rdn)
            out = {"method": self.command, "path": url.path, "query": query,
                   "headers": dict((k.lower(), v) for k, v in self.headers.items()),
                   "body": body.decode("utf-8", "replace"), "client_subject": subject}
            return self._send(200, json.dumps(out).encode(), {"Content-Type": "application/json"})
        return self._send(404, b"no such route")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 2048
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass  # clients hanging up mid-request (timeouts, max_body) are the point here

    def finish_request(self, request, client_address):
        # The TLS handshake runs in the connection's own thread, never in the accept loop.
        if self.fault.tls_ctx is not None:
            try:
                request = self.fault.tls_ctx.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                self.fault._note_tls_failure()
                return
        self.fault._conns.append(request)
        super().finish_request(request, client_address)


class FaultServer:
    def __init__(self, tls=None):
        self.lock = threading.Lock()
        self.received = threading.Condition(self.lock)  # notified at every recorded request
        self._requests = []
        self._seq = {}
        self._conns = []
        self.tls_failures = 0
        self.stopping = threading.Event()
        self.tls_ctx = None
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls["cert"], tls["key"])
            if tls.get("client_ca"):
                ctx.verify_mode = ssl.CERT_REQUIRED
                ctx.load_verify_locations(tls["client_ca"])
            self.tls_ctx = ctx
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.fault = self
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path):
        return "%s://127.0.0.1:%d%s" % ("https" if self.tls_ctx else "http", self.port, path)

    def _record(self, method, path, headers):
        with self.lock:
            self._requests.append({"method": method, "path": path, "t": time.monotonic(),
                                   "headers": headers})
            self.received.notify_all()

    def _note_tls_failure(self):
        with self.lock:
            self.tls_failures += 1

    def requests(self, path_prefix=None):
        with self.lock:
            return [r for r in self._requests
                    if path_prefix is None or r["path"].startswith(path_prefix)]

    def wait_requests(self, path_prefix, n=1, timeout=10):
        """Waits until at least n requests under path_prefix arrived; returns them."""
        with self.received:
            self.received.wait_for(lambda: len([r for r in self._requests
                                                if r["path"].startswith(path_prefix)]) >= n,
                                   timeout)
        got = self.requests(path_prefix)
        assert len(got) >= n, "%d of %d requests to %s arrived" % (len(got), n, path_prefix)
        return got

    def clear(self):
        with self.lock:
            self._requests = []

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        for c in self._conns:
            try:
                c.close()
            except OSError:
                pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


if __name__ == "__main__":
    srv = FaultServer().start()
    print(srv.port, flush=True)
    try:
        srv.thread.join()
    except KeyboardInterrupt:
        srv.stop()
        sys.exit(0)
