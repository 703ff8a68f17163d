"""The loopback HTTP server the provider stand-ins run on (github_standin, s3_standin,
sendgrid_standin, sentry_server, stripe_api): a ThreadingHTTPServer on 127.0.0.1 (a free
port unless one is given), served from a daemon thread for the length of a `with` block."""
import http.server
import threading


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """A stand-in's request handler: HTTP/1.1 (keep-alive, as the providers), no access log."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass


class LoopbackServer:
    """Subclasses call `self.serve(Handler, port)` once their state is set; then `self.port`
    and `self.url` ("http://127.0.0.1:<port>") name it."""

    def serve(self, handler, port=0, block_on_close=True):
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.server.block_on_close = block_on_close
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
