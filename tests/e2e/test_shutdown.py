"""Graceful shutdown and the worker supervisor."""
import json
import os
import signal
import socket
import threading

from luar_e2e import Luar, free_port, main

SLOW = ('local http = require "luar.http"\n'
        'local time = require "luar.time"\n'
        'local log = require "luar.log"\n'
        'http.route("GET", "/slow", function(req)\n'
        '  log.info("slow start")\n'
        '  time.sleep(0.5)\n'
        '  return { json = { done = true } }\n'
        'end)\n'
        'http.route("GET", "/hello", function(req) return { json = { hello = "world" } } end)\n')


def test_sigterm_finishes_in_flight_requests_and_exits_0():
    with Luar({"main.lua": SLOW}) as luar:
        results = []

        def call():
            results.append(luar.request("GET", "/slow"))

        threads = [threading.Thread(target=call) for _ in range(5)]
        for t in threads:
            t.start()
        luar.wait_log(lambda r: luar.count_logs(lambda x: x.get("msg") == "slow start") >= 5)
        luar.send_signal(signal.SIGTERM)
        luar.wait_log(lambda r: "stopping" in r.get("msg", ""))
        # New connections are refused once stopping has begun.
        refused = False
        try:
            s = socket.create_connection(("127.0.0.1", luar.port), timeout=2)
            s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            refused = s.recv(100) == b""
            s.close()
        except OSError:
            refused = True
        assert refused
        for t in threads:
            t.join(30)
        assert len(results) == 5
        for status, _, body in results:
            assert status == 200 and json.loads(body) == {"done": True}, (status, body)
        assert luar.proc.wait(30) == 0


def test_grace_period_ends_a_request_that_takes_too_long():
    app = ('local http = require "luar.http"\n'
           'local time = require "luar.time"\n'
           'local log = require "luar.log"\n'
           'http.route("GET", "/forever", function(req)\n'
           '  log.info("forever start")\n'
           '  time.sleep(600)\n'
           '  return { json = { done = true } }\n'
           'end)\n')
    cfg = 'return { shutdown = { grace = 0.3 }, reload = { watch = false } }\n'
    with Luar({"main.lua": app}, config=cfg) as luar:
        results = []
        t = threading.Thread(target=lambda: results.append(luar.request("GET", "/forever",
                                                                        timeout=60)))
        t.start()
        luar.wait_log(lambda r: r.get("msg") == "forever start")
        luar.send_signal(signal.SIGTERM)
        t.join(60)
        assert results and results[0][0] == 503, results
        assert luar.proc.wait(30) == 0
        luar.wait_log(lambda r: "grace period over" in r.get("msg", ""))


def test_killed_worker_is_restarted_and_service_goes_on():
    port = free_port()
    with Luar({"main.lua": SLOW}, listen="127.0.0.1:%d" % port, workers=2,
              wait_listening=False) as luar:
        luar.port = port
        luar.wait_log(lambda r: luar.count_logs(lambda x: x.get("msg") == "listening") >= 2)
        listening = [r for r in luar.lines if r.get("msg") == "listening"]
        pids = [r["pid"] for r in listening]
        assert len(set(pids)) == 2, pids
        assert luar.get_json("/hello") == {"hello": "world"}
        n = len(luar.lines)
        os.kill(pids[0], signal.SIGKILL)
        luar.wait_log(lambda r: "died" in r.get("msg", ""), start=n)
        rec = luar.wait_log(lambda r: r.get("msg") == "listening" and r["pid"] not in pids,
                            start=n)
        assert rec["worker"] == listening[0]["worker"]
        for _ in range(20):
            assert luar.get_json("/hello") == {"hello": "world"}
        assert luar.stop() == 0


def test_sigterm_as_soon_as_a_start_line_is_written_is_a_graceful_stop():
    # A warning is written at once (info lines wait for the loop's next turn), and the
    # ingest-node warning on SQLite is the last line of the start: a supervisor that
    # stops the process the moment it sees it must get a graceful exit, not a death by
    # the signal's default action (the handlers were once installed after that line).
    # Each start has a small window, so five starts in a row.
    cfg = 'return { jobs = { concurrency = 0 }, reload = { watch = false } }\n'
    for _ in range(5):
        luar = Luar({"main.lua": SLOW}, config=cfg, wait_listening=False)
        try:
            luar.wait_log(lambda r: "jobs.concurrency = 0" in r.get("msg", ""))
            luar.send_signal(signal.SIGTERM)
            assert luar.proc.wait(30) == 0, luar.stderr_lines
            luar.wait_log(lambda r: r.get("msg") == "shutdown complete")
        finally:
            luar.close()


if __name__ == "__main__":
    main([test_sigterm_finishes_in_flight_requests_and_exits_0,
          test_grace_period_ends_a_request_that_takes_too_long,
          test_killed_worker_is_restarted_and_service_goes_on,
          test_sigterm_as_soon_as_a_start_line_is_written_is_a_graceful_stop])
