"""A private redis-server for end-to-end tests: a free loopback port, a temporary directory,
never the machine's own service. A missing redis-server fails the test (no skip).
Standard library only."""
import os
import shutil
import signal
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


def _read_reply(f):
    """One RESP reply from file `f`: str, int, None, list, or RedisError for error replies."""
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise OSError("redis: connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return RedisError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2].decode("utf-8", "replace")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_read_reply(f) for _ in range(n)]
    raise OSError("redis: unexpected reply %r" % line)


class RedisError(Exception):
    pass


def _encode(args):
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(parts)


class RedisConnection:
    """One kept connection (SELECT and subscriptions last); error replies are returned as
    RedisError values, not raised, so a test can look at them."""

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.f = self.sock.makefile("rb")

    def __call__(self, *args):
        self.sock.sendall(_encode(args))
        return _read_reply(self.f)

    def pipeline(self, commands):
        """Sends every command in one write, then reads every reply."""
        self.sock.sendall(b"".join(_encode(c) for c in commands))
        return [_read_reply(self.f) for _ in commands]

    def close(self):
        self.f.close()
        self.sock.close()


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

    def command(self, *args, timeout=10.0):
        """Runs one command on a new connection; returns its reply (raises RedisError)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            s.sendall(_encode(args))
            with s.makefile("rb") as f:
                reply = _read_reply(f)
        if isinstance(reply, RedisError):
            raise reply
        return reply

    def connect(self):
        """A RedisConnection to this server (close it when done)."""
        return RedisConnection(self.port)

    def pause(self):
        """SIGSTOP: the server keeps its connections open and answers nothing."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # harmless unless paused
            self.proc.kill()
            self.proc.wait()

    def close(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
