"""TLS and mTLS listeners configured in luar.conf.lua, with certificates generated here by
the openssl command; the handler sees the verified client subject as req.tls.client_subject."""
import json
import os
import ssl
import subprocess
import tempfile
import http.client
import shutil

from luar_e2e import Luar, free_port, main

APP = ('local http = require "luar.http"\n'
       'http.route("GET", "/who", function(req)\n'
       '  return { json = { subject = req.tls and req.tls.client_subject or false } }\n'
       'end)\n')


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True)


def make_pki(d):
    """A CA, a server certificate for 127.0.0.1, a client certificate from the CA, and a
    client certificate from another CA."""
    for ca in ("ca", "evil"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-subj", "/CN=%s test CA" % ca, "-keyout", ca + ".key", "-out", ca + ".pem",
                cwd=d)
    with open(os.path.join(d, "san.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    for name, ca, subj in (("server", "ca", "/CN=127.0.0.1"),
                           ("client", "ca", "/O=Acme/CN=billing-service"),
                           ("intruder", "evil", "/CN=intruder")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subj, "-keyout",
                name + ".key", "-out", name + ".csr", cwd=d)
        extra = ["-extfile", "san.ext"] if name == "server" else []
        openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
                "-CAcreateserial", "-days", "2", "-out", name + ".pem", *extra, cwd=d)


def client_ctx(d, cert=None):
    ctx = ssl.create_default_context(cafile=os.path.join(d, "ca.pem"))
    if cert:
        ctx.load_cert_chain(os.path.join(d, cert + ".pem"), os.path.join(d, cert + ".key"))
    return ctx


def get(port, ctx):
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    try:
        c.request("GET", "/who")
        r = c.getresponse()
        return r.status, json.loads(r.read())
    finally:
        c.close()


def test_tls_and_mtls_listeners():
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
            # Plain listener still works; TLS without client certificate sees no subject.
            assert luar.get_json("/who") == {"subject": False}
            assert get(tls_port, client_ctx(d)) == (200, {"subject": False})
            status, doc = get(mtls_port, client_ctx(d, "client"))
            assert status == 200
            assert doc["subject"] == "CN=billing-service,O=Acme", doc
            for cert in (None, "intruder"):
                try:
                    get(mtls_port, client_ctx(d, cert))
                    raise AssertionError("mTLS accepted client %r" % cert)
                except (ssl.SSLError, ConnectionError, OSError) as e:
                    assert not isinstance(e, AssertionError)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_unusable_certificate_is_a_clear_startup_error():
    d = tempfile.mkdtemp(prefix="luar-pki-")
    try:
        cfg = ('return { listen = { { addr = "127.0.0.1:0", tls = { cert = "%s/missing.pem",'
               ' key = "%s/missing.key" } } } }\n') % (d, d)
        luar = Luar({"main.lua": APP}, config=cfg, listen=None, wait_listening=False)
        try:
            status = luar.proc.wait(30)
            assert status != 0
            text = json.dumps(luar.lines) + json.dumps(luar.stderr_lines)
            assert "missing.pem" in text, text
        finally:
            luar.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main([test_tls_and_mtls_listeners, test_unusable_certificate_is_a_clear_startup_error])
