"""Log output to a file: level filter, request_id on script lines, reopen on SIGUSR1 after
an external rotation."""
import json
import os
import signal
import socket
import time

from luar_e2e import Luar, free_port, main

APP = ('local http = require "luar.http"\n'
       'local log = require "luar.log"\n'
       'http.route("GET", "/note", function(req)\n'
       '  log.warn("noted", { q = req.query.q })\n'
       '  log.debug("hidden detail")\n'
       '  return { json = { ok = true } }\n'
       'end)\n')


def read_records(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def wait_port(luar, port, timeout=30):
    """Readiness probe: with the log in a file there is no stdout line to wait for, so
    connect until the listener answers (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert luar.proc.poll() is None, "luar exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)
    raise AssertionError("port %d never answered" % port)


def test_file_output_filter_and_reopen_on_sigusr1():
    port = free_port()
    cfg = 'return { log = { file = "out.log" }, reload = { watch = false } }\n'
    with Luar({"main.lua": APP}, config=cfg, listen="127.0.0.1:%d" % port,
              wait_listening=False) as luar:
        luar.port = port
        path = os.path.join(luar.dir, "out.log")
        wait_port(luar, port)
        # A response is written after the lines its handler logged were handed to the log,
        # and the log is flushed at the end of that loop iteration, before the next request
        # is read: so after a second request the first one's lines are in the file.
        luar.request("GET", "/note?q=first")
        luar.request("GET", "/healthz")
        recs = read_records(path)
        assert any(r.get("msg") == "listening" for r in recs)
        noted = [r for r in recs if r.get("msg") == "noted"]
        assert noted and noted[0]["q"] == "first" and noted[0]["level"] == "warn"
        assert noted[0]["request_id"]
        assert not any(r.get("msg") == "hidden detail" for r in recs)
        assert luar.lines == []  # nothing on stdout

        os.rename(path, path + ".old")
        luar.send_signal(signal.SIGUSR1)
        # The signal is handled before later requests on the same loop; the first request
        # may race it, so ask until one lands in the new file (bounded).
        for _ in range(50):
            luar.request("GET", "/note?q=second")
            luar.request("GET", "/healthz")
            if any(r.get("q") == "second" for r in read_records(path)):
                break
        assert any(r.get("q") == "second" for r in read_records(path))
        assert any(r.get("q") == "first" for r in read_records(path + ".old"))
        assert luar.stop() == 0


def test_level_filter_from_environment():
    with Luar({"main.lua": APP}, env={"LUAR_LOG_LEVEL": "debug"},
              config='return { reload = { watch = false } }\n') as luar:
        luar.request("GET", "/note?q=x")
        luar.wait_log(lambda r: r.get("msg") == "hidden detail" and r["level"] == "debug")


if __name__ == "__main__":
    main([test_file_output_filter_and_reopen_on_sigusr1, test_level_filter_from_environment])
