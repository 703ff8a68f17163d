"""Guarantee 5 against the real binary: bad input gets a bounded, specific answer and never
crashes the process. Random inputs come from a fixed seed so a failure can be replayed."""
import json
import random
import socket

from luar_e2e import Luar, main

APP = ('local http = require "luar.http"\n'
       'local json = require "luar.json"\n'
       'http.route("POST", "/parse", function(req)\n'
       '  local doc, err = req:json()\n'
       '  if not doc then return { status = 400, json = { error = err.message, kind = err.kind } } end\n'
       '  return { json = { ok = true } }\n'
       'end)\n'
       'http.route("POST", "/encode-deep", function(req)\n'
       '  local t = {}\n'
       '  local cur = t\n'
       '  for i = 1, 10000 do cur.x = {}; cur = cur.x end\n'
       '  return { json = t }\n'
       'end)\n')


def test_invalid_and_deeply_nested_json_get_400_naming_the_problem():
    with Luar({"main.lua": APP}) as luar:
        for body in (b'{"a": ', b'[1, 2,,]', b'\xff\xfe', b'{"a": 1} trailing'):
            status, _, out = luar.request("POST", "/parse", body=body)
            doc = json.loads(out)
            assert status == 400 and doc["kind"] == "invalid" and doc["error"], (body, doc)
        deep = b"[" * 100000 + b"]" * 100000
        status, _, out = luar.request("POST", "/parse", body=deep)
        doc = json.loads(out)
        assert status == 400 and ("depth" in doc["error"] or "nest" in doc["error"]), doc
        # Encoding a too-deep table is a handler error: 500, logged, process alive.
        status, _, _ = luar.request("POST", "/encode-deep", body=b"")
        assert status == 500
        assert luar.get_json("/healthz")["status"] == "ok"


def test_random_garbage_never_crashes_the_server():
    rng = random.Random(20261129)
    seeds = [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
             b"POST /parse HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n{\"a\":",
             b"POST /parse HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n[1,2]\r\n0\r\n\r\n"]
    with Luar({"main.lua": APP}) as luar:
        answered = 0
        for i in range(300):
            data = bytearray(rng.choice(seeds))
            for _ in range(rng.randint(1, 8)):  # mutate: flip, insert, delete bytes
                op = rng.randint(0, 2)
                pos = rng.randrange(len(data) + 1)
                if op == 0 and pos < len(data):
                    data[pos] = rng.randrange(256)
                elif op == 1:
                    data[pos:pos] = bytes([rng.randrange(256)]) * rng.randint(1, 40)
                elif pos < len(data):
                    del data[pos]
            s = socket.create_connection(("127.0.0.1", luar.port), timeout=10)
            try:
                s.sendall(bytes(data))
                s.shutdown(socket.SHUT_WR)
                reply = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    reply += chunk
                if reply:
                    assert reply.startswith(b"HTTP/1.1 "), reply[:80]
                    answered += 1
            except (ConnectionResetError, BrokenPipeError):
                pass
            finally:
                s.close()
        assert answered > 150, answered
        assert luar.proc.poll() is None
        assert luar.get_json("/healthz")["status"] == "ok"


if __name__ == "__main__":
    main([test_invalid_and_deeply_nested_json_get_400_naming_the_problem,
          test_random_garbage_never_crashes_the_server])
