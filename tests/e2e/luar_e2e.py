"""Helpers for end-to-end tests: start the real `luar` binary on an ephemeral port with a
temporary data dir, talk to it over real sockets, and wait for its log lines (events, not
sleeps). Standard library only.

Environment: LUAR_BIN (path to the binary, set by CTest), LUAR_VALGRIND=1 to run the
binary under valgrind (memcheck, errors fail the exit status).
"""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

BIN = os.environ.get("LUAR_BIN", "luar")
DEFAULT_TIMEOUT = 30.0 * (4 if os.environ.get("LUAR_VALGRIND") else 1)


def free_port():
    """A TCP port free on 127.0.0.1 right now (for multi-worker tests that cannot use 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_files(root, files):
    for name, text in files.items():
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)  # atomic, as an editor or a deploy would


class Luar:
    """One running `luar serve`. Use as a context manager; stops with SIGTERM at exit."""

    def __init__(self, scripts=None, config=None, args=(), env=None, listen="127.0.0.1:0",
                 wait_listening=True, workers=1, preexec_fn=None):
        self.dir = tempfile.mkdtemp(prefix="luar-e2e-")
        self.scripts = os.path.join(self.dir, "scripts")
        self.data = os.path.join(self.dir, "data")
        os.makedirs(self.scripts)
        write_files(self.scripts, scripts or {"main.lua": ""})
        cmd = [BIN, "serve", "--scripts", self.scripts, "--data", self.data]
        if listen is not None:  # None: the configuration's own listeners
            cmd += ["--listen", listen]
        if config is not None:
            cpath = os.path.join(self.dir, "luar.conf.lua")
            with open(cpath, "w") as f:
                f.write(config)
            cmd += ["--config", cpath]
        if workers != 1:
            cmd += ["--workers", str(workers)]
        cmd += list(args)
        if os.environ.get("LUAR_VALGRIND"):
            cmd = ["valgrind", "--error-exitcode=99", "--leak-check=full", "-q"] + cmd
        e = dict(os.environ)
        e.update(env or {})
        self._ended = set()   # ids of the sinks whose stream reached its end
        self.lines = []       # parsed JSON log records (non-JSON lines as {"raw": ...})
        self.stderr_lines = []
        self.cond = threading.Condition()
        # preexec_fn runs in the child before exec (e.g. to ignore SIGXFSZ for a test that
        # fills the "disk" with a file size limit).
        self.proc = subprocess.Popen(cmd, cwd=self.dir, env=e, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                     preexec_fn=preexec_fn)
        self._readers = [threading.Thread(target=self._read, args=(self.proc.stdout, self.lines),
                                          daemon=True),
                         threading.Thread(target=self._read, args=(self.proc.stderr,
                                                                   self.stderr_lines),
                                          daemon=True)]
        for t in self._readers:
            t.start()
        self.port = None
        if wait_listening:
            rec = self.wait_log(lambda r: r.get("msg") == "listening")
            self.port = rec["port"]

    def _read(self, stream, sink):
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            try:
                rec = json.loads(line)
                if not isinstance(rec, dict):
                    rec = {"raw": line}
            except ValueError:
                rec = {"raw": line}
            with self.cond:
                sink.append(rec)
                self.cond.notify_all()
        with self.cond:
            self._ended.add(id(sink))  # everything the process wrote there has been read
            self.cond.notify_all()

    def wait_log(self, pred, timeout=DEFAULT_TIMEOUT, start=0, stream=None):
        """Waits for a log record matching pred (from index `start`); returns it."""
        sink = self.lines if stream is None else stream
        deadline = time.monotonic() + timeout
        with self.cond:
            i = start
            while True:
                while i < len(sink):
                    if pred(sink[i]):
                        return sink[i]
                    i += 1
                left = deadline - time.monotonic()
                ended = self.proc.poll() is not None and id(sink) in self._ended
                if left <= 0 or (ended and i >= len(sink)):
                    raise AssertionError("log line not seen; last lines:\n" +
                                         "\n".join(json.dumps(r) for r in sink[-15:]) +
                                         "\nstderr:\n" + "\n".join(
                                             r.get("raw", json.dumps(r))
                                             for r in self.stderr_lines[-15:]))
                self.cond.wait(min(left, 0.5))

    def wait_logs(self, pred, n, timeout=DEFAULT_TIMEOUT, start=0):
        """Waits until `n` log records match pred (from index `start`); returns them."""
        found, i = [], start
        while len(found) < n:
            rec = self.wait_log(pred, timeout=timeout, start=i)
            found.append(rec)
            with self.cond:
                i = next(j for j in range(i, len(self.lines)) if self.lines[j] is rec) + 1
        return found

    def count_logs(self, pred):
        with self.cond:
            return sum(1 for r in self.lines if pred(r))

    def connect(self, timeout=10):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=10):
        """One request on a new connection; returns (status, headers dict, body bytes)."""
        c = self.connect(timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            c.close()

    def get_json(self, path, expect=200):
        status, _, body = self.request("GET", path)
        assert status == expect, (path, status, body)
        return json.loads(body)

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=DEFAULT_TIMEOUT):
        """Signals the process and returns its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("luar did not exit within %ss of signal %s" % (timeout, sig))

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for t in self._readers:
            t.join(5)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None and self.proc.poll() is None:
                # Every test also checks a clean graceful exit (and, under valgrind, no
                # memory errors or leaks: --error-exitcode makes those a non-zero status).
                status = self.stop()
                assert status == 0, "luar exited with %s at the end of the test; stderr:\n%s" % (
                    status, "\n".join(r.get("raw", "") for r in self.stderr_lines[-30:]))
        finally:
            self.close()


def wait_until(pred, what, timeout=DEFAULT_TIMEOUT, every=0.1):
    """Polls pred() until it returns something true (returned), at most `timeout` seconds:
    for state that announces nothing (/readyz, a file other processes append to, a key in
    Redis). Log lines are events: wait for them with Luar.wait_log instead."""
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(every)


def run_cli(args, cwd=None, env=None, timeout=60, input=None):
    """Runs `luar ARGS`; returns (exit status, stdout, stderr) as text."""
    e = dict(os.environ)
    e.update(env or {})
    cmd = [BIN] + list(args)
    if os.environ.get("LUAR_VALGRIND"):
        cmd = ["valgrind", "--error-exitcode=99", "--leak-check=full", "-q"] + cmd
    p = subprocess.run(cmd, cwd=cwd, env=e, capture_output=True, timeout=timeout,
                       input=input)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def main(tests):
    """Runs the test functions given, prints one line each and the closing count. A test_*
    function of the calling module left out of `tests` is an error, not a silent skip."""
    only = sys.argv[1:]
    passed = failed = 0
    caller = sys._getframe(1).f_globals
    listed = {fn.__name__ for fn in tests}
    missing = sorted(n for n, v in caller.items()
                     if n.startswith("test_") and callable(v) and n not in listed)
    if missing:
        print("FAIL tests defined but not listed in main(): %s" % ", ".join(missing))
        sys.exit(1)
    for fn in tests:
        if only and fn.__name__ not in only:
            continue
        t0 = time.monotonic()
        try:
            fn()
            passed += 1
            print("ok   %s (%.2fs)" % (fn.__name__, time.monotonic() - t0), flush=True)
        except Exception:
            failed += 1
            print("FAIL %s" % fn.__name__, flush=True)
            traceback.print_exc()
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed or passed == 0 else 0)
