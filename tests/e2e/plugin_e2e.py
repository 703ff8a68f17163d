"""Helpers for the provider plugins' end-to-end tests: the plugins built beside the binary
under test (build/plugins, build-san/plugins), loaded through a luar.conf.lua, and `luar
run` of a script whose printed JSON lines come back as values."""
import json
import os
import shutil
import subprocess
import tempfile

from luar_e2e import BIN, run_cli

HERE = os.path.dirname(os.path.abspath(__file__))
PLUGIN_DIR = os.path.join(os.path.dirname(os.path.abspath(shutil.which(BIN) or BIN)), "plugins")
CONFIG = "return { plugins = { dir = %s } }\n" % json.dumps(PLUGIN_DIR)


def write_config(d):
    """Writes luar.conf.lua into folder `d`: commands run there load the plugins."""
    with open(os.path.join(d, "luar.conf.lua"), "w") as f:
        f.write(CONFIG)


def json_lines(out):
    return [json.loads(l) for l in out.splitlines() if l.startswith("{") and '"ts"' not in l]


def run_lua(src, data=None, timeout=60):
    """Runs `src` with `luar run` in a fresh folder (plugins loaded); `data`, when given, is
    written as cases.json and passed as arg[1]. Returns the JSON objects printed, one a line."""
    d = tempfile.mkdtemp(prefix="luar-plugin-")
    try:
        write_config(d)
        with open(os.path.join(d, "s.lua"), "w") as f:
            f.write(src)
        args = ["run", "s.lua"]
        if data is not None:
            with open(os.path.join(d, "cases.json"), "w") as f:
                json.dump(data, f)
            args.append("cases.json")
        rc, out, err = run_cli(args, cwd=d, timeout=timeout)
        assert rc == 0, (rc, out, err)
        return json_lines(out)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run_node(script, payload, module):
    """Runs the JavaScript `script` with `payload` as JSON on stdin, in tests/e2e (so it finds
    node_modules); returns its stdout decoded as JSON. `module` is checked to be installed."""
    exe = shutil.which("node")
    assert exe, "node is not installed (Debian package nodejs)"
    assert os.path.isdir(os.path.join(HERE, "node_modules", *module.split("/"))), \
        "run `npm ci --prefix tests/e2e` (%s is missing)" % module
    p = subprocess.run([exe, "-e", script], cwd=HERE, input=json.dumps(payload).encode(),
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout)
