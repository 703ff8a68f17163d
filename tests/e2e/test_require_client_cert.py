"""Routes with require_client_cert = true: answered 403 unless the request came over TLS
with a client certificate the listener verified (client_ca); the handler then runs and sees
the subject. Certificates are made here by the openssl command (test_tls.make_pki)."""
import http.client
import json
import shutil
import tempfile

from luar_e2e import Luar, free_port, main
from test_tls import client_ctx, make_pki

APP = r'''
local http = require "luar.http"
http.route("GET", "/internal", function(req)
  return { json = { subject = req.tls.client_subject } }
end, { require_client_cert = true })
-- Both guards: the certificate is checked first, then the rate.
http.route("GET", "/internal/limited", function(req) return "ok" end,
  { require_client_cert = true, rate = { limit = "2/h" } })
http.route("GET", "/public", function(req) return "public" end)
'''


def tls_get(port, ctx, path):
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def test_client_cert_routes_need_a_verified_certificate():
    d = tempfile.mkdtemp(prefix="luar-pki-")
    try:
        make_pki(d)
        tls_port, mtls_port = free_port(), free_port()
        cfg = ('return {\n'
               '  listen = { "127.0.0.1:0",\n'
               '    { addr = "127.0.0.1:%d", tls = { cert = "%s/server.pem", key = "%s/server.key" } },\n'
               '    { addr = "127.0.0.1:%d", tls = { cert = "%s/server.pem", key = "%s/server.key",\n'
               '                                     client_ca = "%s/ca.pem" } } },\n'
               '  reload = { watch = false },\n'
               '}\n') % (tls_port, d, d, mtls_port, d, d, d)
        with Luar({"main.lua": APP}, config=cfg, listen=None) as luar:
            # Plain listener: 403, and the handler never ran.
            status, h, body = luar.request("GET", "/internal")
            assert status == 403, (status, body)
            assert json.loads(body) == {"error": "client certificate required"}
            assert h["content-type"] == "application/json"
            assert luar.request("GET", "/public")[0] == 200
            # TLS without a client certificate (no client_ca on that listener): 403 too,
            # even when the client offers a certificate nobody verified.
            assert tls_get(tls_port, client_ctx(d), "/internal")[0] == 403
            assert tls_get(tls_port, client_ctx(d, "client"), "/internal")[0] == 403
            # mTLS with a certificate from the CA: the handler runs and sees the subject.
            status, body = tls_get(mtls_port, client_ctx(d, "client"), "/internal")
            assert status == 200, (status, body)
            assert json.loads(body) == {"subject": "CN=billing-service,O=Acme"}, body
            # Refused by the certificate check before the rate: those do not use the limit.
            for _ in range(3):
                assert luar.request("GET", "/internal/limited")[0] == 403
            got = [tls_get(mtls_port, client_ctx(d, "client"), "/internal/limited")[0]
                   for _ in range(3)]
            assert got == [200, 200, 429], got
            luar.wait_log(lambda r: r.get("msg") == "request" and r.get("status") == 403
                          and r.get("path") == "/internal")
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main([test_client_cert_routes_need_a_verified_certificate])
