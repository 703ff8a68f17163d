"""Helpers for the provider plugins' end-to-end tests (test_plugin_<name>.py): a
configuration that loads the built plugins, the job and metric probes a webhook test reads,
and `luar webhook sign` output parsing. Standard library only."""
import atexit
import json
import os
import shutil
import tempfile
import time

from luar_e2e import BIN, run_cli

# build/plugins: where `make build` puts every plugins/<name> .so
PLUGIN_DIR = os.path.join(os.environ.get("LUAR_BUILD_DIR") or
                          os.path.dirname(os.path.abspath(BIN)), "plugins")


def config(extra=""):
    """A configuration (Lua text) loading the built plugins, with short job timings;
    `extra` is more top-level fields ('log = { level = "debug" },')."""
    return ('return { %s reload = { watch = false }, shutdown = { grace = 2 },\n'
            '  jobs = { lease = 2, heartbeat = 0.5, poll = 0.1 },\n'
            '  plugins = { dir = %s } }\n' % (extra, json.dumps(PLUGIN_DIR)))


_conf_dir = []


def config_file():
    """The path of a config() file, for the CLI's --config (one per test run)."""
    if not _conf_dir:
        _conf_dir.append(tempfile.mkdtemp(prefix="luar-conf-"))
        atexit.register(shutil.rmtree, _conf_dir[0], True)
        with open(os.path.join(_conf_dir[0], "luar.conf.lua"), "w") as f:
            f.write(config())
    return os.path.join(_conf_dir[0], "luar.conf.lua")


def run_lua(script, args=(), env=None, conf=None):
    """Runs `luar run` on `script` (text) with config() (or `conf`); returns the last line
    printed that is JSON, decoded, and everything written (stdout and stderr)."""
    with tempfile.TemporaryDirectory(prefix="luar-run-") as d:
        path = os.path.join(d, "script.lua")
        with open(path, "w") as f:
            f.write(script)
        with open(os.path.join(d, "luar.conf.lua"), "w") as f:
            f.write(conf or config())
        status, out, err = run_cli(["run", path] + list(args), cwd=d, env=env)
        assert status == 0, "luar run failed (%d): %s%s" % (status, out, err)
        lines = [l for l in out.splitlines() if l.startswith("{") or l.startswith("[")]
        assert lines, "nothing printed: %r %r" % (out, err)
        return json.loads(lines[-1]), out + err


def post(luar, path, body, headers):
    """POSTs body (text) with headers; returns (status, headers, decoded JSON or bytes)."""
    status, rh, data = luar.request("POST", path, body=body.encode(), headers=headers)
    try:
        parsed = json.loads(data) if data else None
    except ValueError:
        parsed = data
    return status, rh, parsed


def handled(luar, handler, id_):
    """Waits for the log line {"msg": "handled", "handler": handler, "id": id_}."""
    return luar.wait_log(lambda r: r.get("msg") == "handled" and r.get("handler") == handler
                         and r.get("id") == id_)


def count_handled(luar, handler, id_):
    return luar.count_logs(lambda r: r.get("msg") == "handled" and r.get("handler") == handler
                           and r.get("id") == id_)


def stats(data_dir):
    """`luar jobs stats --json`: the totals by state."""
    rc, out, err = run_cli(["jobs", "stats", "--json", "--data", data_dir])
    assert rc == 0, err
    return json.loads(out)["total"]


def wait_idle(luar):
    """Until the backend holds no job still to run (queued, running, retrying)."""
    deadline = time.monotonic() + 30
    while True:
        t = stats(luar.data)
        if t["queued"] == 0 and t["running"] == 0 and t["retrying"] == 0:
            return t
        assert time.monotonic() < deadline, t
        time.sleep(0.05)  # a bounded poll: the backend's state has no event to wait on


def metric(luar, name, **labels):
    """The value of metric `name` with exactly `labels` on /metrics (0 when absent)."""
    _, _, body = luar.request("GET", "/metrics")
    want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
    for line in body.decode().splitlines():
        if line.startswith(name + "{"):
            lab = line[len(name) + 1:line.index("}")]
            if ",".join(sorted(lab.split(","))) == want:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def parse_headers(out):
    """`luar webhook sign` output ("Name: value" lines) as a dict."""
    headers = {}
    for line in out.splitlines():
        name, _, value = line.partition(": ")
        assert name and value, "not a header line: %r" % line
        headers[name] = value
    return headers
