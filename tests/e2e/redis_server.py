"""A private redis-server for end-to-end tests: a free loopback port, a temporary directory,
never the machine's own service. A missing redis-server fails the test (no skip).
Standard library only."""
import os
import shutil
import socket
import subprocess
import tempfile
import time

from luar_e2e import free_port

REDIS_BIN = os.environ.get("LUAR_REDIS_SERVER", "redis-server")


def pings(port, timeout=1.0):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """redis-server on 127.0.0.1:port. `start()` again after `kill()` restarts it on the same
    port and directory (with AOF, the data comes back)."""

    def __init__(self, aof=False, extra=()):
        self.dir = tempfile.mkdtemp(prefix="luar-redis-")
        self.port = free_port()
        self.aof = aof
        self.extra = list(extra)
        self.proc = None
        self.start()

    def url(self, db=0, prefix=None):
        u = "redis://127.0.0.1:%d/%d" % (self.port, db)
        return u + ("?prefix=" + prefix if prefix else "")

    def start(self, timeout=10.0):
        cmd = [REDIS_BIN, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
               "--save", "", "--daemonize", "no", "--logfile", os.path.join(self.dir, "log")]
        cmd += ["--appendonly", "yes", "--appendfsync", "always"] if self.aof else \
            ["--appendonly", "no"]
        try:
            self.proc = subprocess.Popen(cmd + self.extra, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL)
        except FileNotFoundError:
            raise AssertionError("%s not found: install redis-server (tools/deps.sh test)"
                                 % REDIS_BIN)
        deadline = time.monotonic() + timeout
        while not pings(self.port):
            if self.proc.poll() is not None:
                raise AssertionError("redis-server exited with %s" % self.proc.returncode)
            if time.monotonic() > deadline:
                raise AssertionError("redis-server did not answer on port %d" % self.port)
            time.sleep(0.05)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
