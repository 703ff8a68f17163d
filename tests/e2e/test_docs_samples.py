"""Every code sample of the book is run: each fenced block of docs/**/*.md and README.md is
extracted and executed by the real binary according to its info string. A block no runner
takes fails the test (nothing is skipped in silence); the closing lines count the blocks
of each kind and list the shell commands left out, each with its reason. A failure names
the block's file:line (and the line inside it when the tool says which).

Info strings and what happens to the block:

  lua          a fragment of scripts/main.lua, loaded with `luar check` in a temporary
               project (the top-level code runs: routes, jobs, schedules and webhook
               routes are declared, plugins are required). Every Lua sample is also listed
               with `luac5.4 -l`: a global that is not Lua's own (busted's in a spec, `env`
               in a configuration) fails, so a handler body cannot use a name nothing
               defines (the usual trace of a `…` placeholder).
  lua continued
               the page goes on: the closest ```lua block above, then this one, loaded as
               one scripts/main.lua (a narrative's later fragments use what earlier ones
               declared).
  lua config   a luar.conf.lua: `luar check --config luar.conf.lua` (TLS files it names are
               generated: a self-signed certificate, its key, the same as client CA).
  lua spec     a busted spec, run with `luar test` in a temporary project whose
               scripts/main.lua is the closest ```lua block above (the handler the page has
               just written).
  sh, bash,    commands (for console: the lines after "$ "; lines ending in "\" are
  console      joined), run by bash -e in the folder of a `luar serve` that the test starts
               on a free port, serving the closest ```lua block above as scripts/main.lua,
               with the spec of the closest ```lua spec block above in spec/ (so `luar test`
               runs it) and admin.token = $LUAR_ADMIN_TOKEN. `127.0.0.1:8080` becomes that
               port, `build/luar` the binary under test, and curl fails on a 4xx or 5xx
               answer (exit status 22). Leading `export NAME=…` lines run first and set the
               server's environment, as for a reader who exports, then starts luar.
               Commands in NOT_RUN (make, apt-get, compilers, `luar serve`) are not run and
               are listed with the reason.
               In a console block the lines under a command are its output: each must be
               printed, in order (`…` stands for any text, blanks compare loosely, JSON lines
               compare as JSON, key order aside); "(exit status N)" is the status the
               command must end with. `console transcript` shows a session of its own
               (another queue, other plugins): commands and statuses are checked, output
               is not.
  sh continued the page goes on: the shell blocks above, back to one not marked continued,
               run first in the same folder and server.
  json log     log records that the server of the shell block right above must write while
               its commands run (each field shown, `…` in a string for any text): what the
               page says the reader will see in the log.
  json         parsed (a document, or several one after another: log lines).
  python       compiled with compile() (the Django side of the migration page).
  js           `node --check`.
  yaml         parsed by a small block-YAML reader (mappings, sequences, scalars, `|`).
  sql          executed in an in-memory SQLite database.
  redis        one Redis command a line, sent to a redis-server the test starts (ACLs).
  c from=PATH, an excerpt of a file of the repository that the build compiles: each part
  cmake        (parts are separated by lines starting with "…" or "...": elisions) must
  from=PATH    appear in PATH in order, comments and whitespace aside.
  text         not code (output shown, diagrams, syntax): counted, not run.

Any other info string, or none, fails.

Samples run with the environment DOC_ENV below: the variables the pages tell the reader to
set (API keys, webhook secrets), with values that are never real.

Setups. A fragment that needs context may carry it in an HTML comment on the lines right
before its fence: `<!-- sample-setup ... -->`. Its text is Lua: for ```lua it is put before
the fragment; for ```lua spec, ```lua config and shell blocks it is the scripts/main.lua
they run with. A line `---- luar.conf.lua` in a setup starts a configuration file for the
project. A shell setup that is exactly "-- serve: the repository's scripts/" serves the
example integration and its luar.conf.lua (what `make run` serves). Keep setups rare: a
sample that needs one is usually better written whole.

The test also checks that every relative link of the book, the READMEs and the SDK's pages
resolves, anchors included.
"""
import json
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import tempfile

from luar_e2e import Luar, free_port, main, write_files
from redis_server import RedisServer

ROOT = os.environ.get("LUAR_SOURCE_DIR") or os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.abspath(os.environ.get("LUAR_BIN", os.path.join(ROOT, "build", "luar")))
BUILD = os.path.abspath(os.environ.get("LUAR_BUILD_DIR", os.path.dirname(BIN)))

# The environment every sample runs in: the variables the pages tell the reader to set.
ADMIN_TOKEN = "docs-admin-token-0123456789"
DOC_ENV = {
    "LUAR_ADMIN_TOKEN": ADMIN_TOKEN,
    "T": ADMIN_TOKEN,
    "LUAR_LOG_LEVEL": "info",
    # API keys and webhook secrets the samples read with env(), os.getenv or secrets.get
    "GITHUB_TOKEN": "ghp_docs0000000000000000000000000000000000",
    "WEATHER_TOKEN": "docs-weather-token",
    "AWS_ACCESS_KEY_ID": "AKIADOCS000000000000",
    "AWS_SECRET_ACCESS_KEY": "docs-aws-secret-key-0000000000000000000000",
    "S3_ACCESS_KEY": "AKIADOCS000000000000",
    "S3_SECRET_KEY": "docs-s3-secret-key-00000000000000000000000",
    "MINIO_SECRET": "docs-minio-secret",
    "GOOGLE_CLIENT_ID": "docs-client.apps.googleusercontent.com",
    "GOOGLE_CLIENT_SECRET": "docs-google-client-secret",
    "WH_SECRET": "whsec_ZG9jcy13ZWJob29rLXNlY3JldC0wMDAwMDA=",
    "BILLING_WH_SECRET": "whsec_YmlsbGluZy1zZWNyZXQtZm9yLXRoZS1kb2Nz",
    "BILLING_WH_SECRET_OLD": "whsec_b2xkLWJpbGxpbmctc2VjcmV0LWZvci1kb2Nz",
    "SHOP_REDIS_URL": "redis://127.0.0.1:6379/0?prefix=shop:",
    "TOKEN": "ghp_docs1111111111111111111111111111111111",
    "HONEYCOMB_KEY": "docs-honeycomb-key",
    "ORDERS_WEBHOOK_SECRET": "whsec_b3JkZXJzLXNlY3JldC1mb3ItdGhlLWRvY3M=",
    "TOKEN_ENCRYPTION_KEY": "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
}

# First words of shell commands that are not run, and why.
NOT_RUN = {
    "make": "builds the tree and serves or tests it: the test runs on that build",
    "apt-get": "installs Debian packages: tools/deps.sh, run by make",
    "sudo": "installs system-wide: not in a test",
    "cmake": "builds a plugin out of tree: tests/e2e/test_sdk_install.py does it",
    "cc": "builds a plugin out of tree: tests/e2e/test_sdk_install.py does it",
    "npm": "installs Node packages: the test does not touch the network",
    "pip": "installs Python packages: the test does not touch the network",
    "luar serve": "starts a server: the test starts that server itself",
    "cp": "installs a plugin built out of tree (see cc and cmake)",
}

FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*(.*)$")
SETUP_CONFIG = re.compile(r"^----\s*luar\.conf\.lua\s*$", re.M)


class Block:
    def __init__(self, path, line, info, text, setup):
        self.path, self.line, self.info, self.text, self.setup = path, line, info, text, setup
        words = info.split()
        self.lang = words[0].lower() if words else ""
        self.mods = words[1:]
        self.prev_lua = None  # the closest ```lua block above, in the same file
        self.main = None      # for ```lua blocks: the whole scripts/main.lua it runs as
        self.conf = None      # and the luar.conf.lua its setup gives, if any
        self.prior = None     # for ```sh continued: the shell block it goes on from
        self.prev_spec = None  # the closest ```lua spec block above, in the same file
        self.log = None       # for shell blocks: the ```json log block right after it
        self.seen = False     # for ```json log: its records were found in a server's log

    @property
    def where(self):
        return "%s:%d" % (self.path, self.line)

    @property
    def kind(self):
        if self.lang == "lua" and self.mods in ([], ["spec"], ["config"], ["continued"]):
            return " ".join(["lua"] + self.mods)
        if self.lang in ("sh", "bash", "console") and \
                set(self.mods) <= {"continued", "transcript"} and \
                len(set(self.mods)) == len(self.mods):
            return "shell"
        if self.lang in ("c", "cmake") and len(self.mods) == 1 and \
                self.mods[0].startswith("from="):
            return "excerpt"
        if self.lang in ("python", "js", "json", "yaml", "sql", "redis", "text") and \
                not self.mods:
            return self.lang
        if self.lang == "json" and self.mods == ["log"]:
            return "json log"
        return None


def parse(path, shown):
    """The fenced blocks of a Markdown file, with their setups; `shown` names the file in
    messages."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    blocks, i, last_lua, last_shell, last_spec = [], 0, None, None, None
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = len(m.group(1)), m.group(2), m.group(3).strip()
        j = i + 1
        while j < len(lines) and lines[j].strip() != fence:
            j += 1
        body = [l[indent:] if l[:indent].strip() == "" else l for l in lines[i + 1:j]]
        setup = None
        k = i - 1
        if k >= 0 and lines[k].strip().endswith("-->"):
            start = k
            while start >= 0 and "<!--" not in lines[start]:
                start -= 1
            head = lines[start].strip() if start >= 0 else ""
            if head.startswith("<!-- sample-setup"):
                text = "\n".join(lines[start:k + 1]).strip()
                setup = text[len("<!-- sample-setup"):-len("-->")].strip("\n")
        b = Block(shown, i + 1, info if j < len(lines) else "<unclosed fence>",
                  "\n".join(body) + "\n", setup)
        b.prev_lua, b.prev_spec = last_lua, last_spec
        if b.kind == "json log" and blocks and blocks[-1].kind == "shell":
            blocks[-1].log = b
        if b.kind == "lua spec":
            last_spec = b
        if b.kind in ("lua", "lua continued"):
            pre, b.conf = split_setup(b.setup)
            if b.kind == "lua continued" and last_lua is not None:
                b.main = last_lua.main + pre + b.text
                b.conf = b.conf if b.conf is not None else last_lua.conf
            else:
                b.main = pre + b.text
            last_lua = b
        if b.kind == "shell":
            if b.mods == ["continued"]:
                b.prior = last_shell
                b.prev_lua = last_shell.prev_lua if last_shell else last_lua
            last_shell = b
        blocks.append(b)
        i = j + 1
    return blocks


def doc_files():
    out = []
    for top, dirs, files in os.walk(os.path.join(ROOT, "docs")):
        dirs.sort()
        out += [os.path.join(top, f) for f in sorted(files) if f.endswith(".md")]
    return out + [os.path.join(ROOT, "README.md")]


def split_setup(setup):
    """(main.lua text, luar.conf.lua text or None) of a setup."""
    if setup is None:
        return "", None
    parts = SETUP_CONFIG.split(setup, maxsplit=1)
    return parts[0].strip("\n") + "\n", (parts[1] if len(parts) > 1 else None)


def project(files):
    d = tempfile.mkdtemp(prefix="luar-docs-")
    os.symlink(BUILD, os.path.join(d, "build"))  # plugins: the default ./build/plugins
    write_files(d, files)
    return d


def run(cmd, cwd, timeout=120, env=None):
    e = dict(os.environ)
    e.update(DOC_ENV)
    e.update(env or {})
    p = subprocess.run(cmd, cwd=cwd, env=e, capture_output=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def map_lines(message, b, offset, name="scripts/main.lua"):
    """Turns `scripts/main.lua:N:` in a message into the block's file:line."""
    def sub(m):
        n = int(m.group(1)) - offset
        return "%s:%d:" % (b.path, b.line + n) if n >= 1 else m.group(0)
    return re.sub(re.escape(name) + r":(\d+):", sub, message)


def main_of(b):
    """scripts/main.lua (and configuration) a spec or a shell block runs with."""
    if b.setup is not None:
        return split_setup(b.setup)
    if b.prev_lua is not None:
        return b.prev_lua.main, b.prev_lua.conf
    return "", None


LUA_GLOBALS = set("""_G _VERSION assert collectgarbage coroutine debug dofile error
getmetatable io ipairs load loadfile math next os package pairs pcall print rawequal rawget
rawlen rawset require select setmetatable string table tonumber tostring type utf8 warn
xpcall""".split())
BUSTED_GLOBALS = set("""describe context it spec test before_each after_each setup teardown
lazy_setup lazy_teardown strict_setup strict_teardown pending finally insulate expose spy stub
mock match""".split())


def stray_globals(b, path, offset, allowed=()):
    """Globals a sample reads or writes that nothing defines (`luac -l` lists them): a
    handler body that uses an undefined name fails only when it runs, which `luar check`
    does not do. The usual cause is a `…` placeholder or a missing require."""
    rc, out, err = run(["luac5.4", "-l", "-p", path], os.path.dirname(path))
    if rc != 0:
        return "luac: " + err.strip()
    bad = []
    for m in re.finditer(r"\[(\d+)\]\s+(GET|SET)TABUP\s.*; _ENV \"([^\"]+)\"", out):
        name = m.group(3)
        if name not in LUA_GLOBALS and name not in allowed:
            line = int(m.group(1)) - offset
            bad.append("%s:%d: %s global '%s'" % (b.path, b.line + line, "reads" if
                       m.group(2) == "GET" else "sets", name))
    return "; ".join(sorted(set(bad))) or None


def check_lua(b):
    files = {"scripts/main.lua": b.main}
    if b.conf is not None:
        files["luar.conf.lua"] = b.conf
    d = project(files)
    try:
        offset = b.main.count("\n") - b.text.count("\n")
        rc, out, err = run([BIN, "check"], d)
        if rc != 0:
            return "luar check exit %d: %s" % (rc, map_lines(err.strip(), b, offset))
        return stray_globals(b, os.path.join(d, "scripts", "main.lua"), offset)
    finally:
        shutil.rmtree(d, True)


def make_tls_files(d, conf):
    """Real PEM files for the TLS listeners a configuration names (`luar check` loads
    them): a self-signed certificate and its key, the certificate again as client CA."""
    names = dict(re.findall(r'\b(cert|key|client_ca)\s*=\s*"([^"]+)"', conf))
    if "cert" not in names or "key" not in names:
        return
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", names["key"], "-out",
                    names["cert"], "-days", "1", "-subj", "/CN=127.0.0.1"], cwd=d, check=True,
                   capture_output=True)
    if "client_ca" in names:
        shutil.copy(os.path.join(d, names["cert"]), os.path.join(d, names["client_ca"]))


def check_config(b):
    main_lua, _ = split_setup(b.setup)
    d = project({"luar.conf.lua": b.text, "scripts/main.lua": main_lua})
    try:
        make_tls_files(d, b.text)
        rc, out, err = run([BIN, "check", "--config", "luar.conf.lua"], d)
        if rc != 0:
            return "luar check --config exit %d: %s" % (
                rc, map_lines(err.strip(), b, 0, "luar.conf.lua"))
        return stray_globals(b, os.path.join(d, "luar.conf.lua"), 0, {"env"})
    finally:
        shutil.rmtree(d, True)


def check_spec(b):
    main_lua, conf = main_of(b)
    files = {"scripts/main.lua": main_lua, "spec/doc_spec.lua": b.text}
    if conf is not None:
        files["luar.conf.lua"] = conf
    d = project(files)
    try:
        rc, out, err = run([BIN, "test"], d)
        if rc != 0:
            return "luar test exit %d:\n%s\n%s" % (
                rc, map_lines(out.strip(), b, 0, "spec/doc_spec.lua"), err.strip())
        return stray_globals(b, os.path.join(d, "spec", "doc_spec.lua"), 0, BUSTED_GLOBALS)
    finally:
        shutil.rmtree(d, True)


EXIT_NOTE = re.compile(r"\(exit status (\d+)\)")


def commands(b):
    """[(doc line, command, expected exit status, [output lines shown])] of a shell block.
    In a console block, the lines under a command are its output as the page shows it; a
    line saying "(exit status N)" is the status the command must end with."""
    out, pending, first = [], None, None
    for n, line in enumerate(b.text.split("\n")):
        lineno = b.line + 1 + n
        if pending is None:
            if b.lang == "console":
                if not line.startswith("$ "):
                    m = EXIT_NOTE.search(line)
                    if m and out:
                        out[-1] = out[-1][:2] + (int(m.group(1)), out[-1][3])
                    elif out and line.strip():
                        out[-1][3].append((lineno, line))
                    continue
                line = line[2:]
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            first, pending = lineno, ""
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append((first, pending + line, 0, []))
        pending = None
    return out


def text_matches(want, got):
    """`…` in `want` stands for any text; runs of blanks are one blank."""
    norm = lambda s: re.sub(r"\s+", " ", s.strip())
    rx = "^" + ".*?".join(re.escape(p) for p in norm(want).split("…")) + "$"
    return re.match(rx, norm(got)) is not None


def value_matches(want, got):
    """JSON values: equal, key order aside; a string with `…` is a pattern."""
    if isinstance(want, dict):
        return isinstance(got, dict) and want.keys() == got.keys() and all(
            value_matches(v, got[k]) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(got, list) and len(want) == len(got) and all(
            value_matches(w, g) for w, g in zip(want, got))
    if isinstance(want, str) and "…" in want:
        return isinstance(got, str) and text_matches(want, got)
    return want == got


def line_matches(want, got):
    try:
        w = json.loads(want)
        if isinstance(w, (dict, list)):
            return value_matches(w, json.loads(got))
    except ValueError:
        pass
    return text_matches(want, got)


def output_mismatch(b, shown, got):
    """The first line a console block shows under a command that the command's output does
    not have (in order; a JSON line is compared as JSON, key order aside); `…` in a shown
    line stands for any text. None when all are there."""
    lines = got.split("\n")
    i = 0
    for lineno, want in shown:
        while i < len(lines) and not line_matches(want.strip(), lines[i].strip()):
            i += 1
        if i == len(lines):
            return "%s:%d: the page shows %r; the command printed:\n%s" % (
                b.path, lineno, want.strip(), got[-1500:])
        i += 1
    return None


def not_run_reason(cmd):
    words = shlex.split(cmd, comments=True) if cmd.strip() else []
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        words = words[1:]
    if not words:
        return None
    first = re.sub(r"^(\.\.?/)?build/", "", words[0])
    two = " ".join([first] + words[1:2])
    return NOT_RUN.get(two) or NOT_RUN.get(first)


SKIPPED = []   # (where, command, reason)


def check_shell(b):
    cmds = commands(b)
    runnable = []
    for c in cmds:
        reason = not_run_reason(c[1])
        if reason:
            SKIPPED.append(("%s:%d" % (b.path, c[0]), c[1].strip(), reason))
        else:
            runnable.append(c)
    prior = b.prior
    while prior is not None:  # ```sh continued: the blocks it goes on from run first
        runnable = [c for c in commands(prior) if not not_run_reason(c[1])] + runnable
        prior = prior.prior
    if not runnable:
        return None if cmds else "no command in the block"
    main_lua, conf = main_of(b)
    scripts = {"main.lua": main_lua}
    if main_lua.strip() == "-- serve: the repository's scripts/":
        scripts = {}
        for top, dirs, files in os.walk(os.path.join(ROOT, "scripts")):
            for name in files:
                path = os.path.join(top, name)
                with open(path, encoding="utf-8", errors="replace") as f:
                    scripts[os.path.relpath(path, os.path.join(ROOT, "scripts"))] = f.read()
        if conf is None and os.path.isfile(os.path.join(ROOT, "luar.conf.lua")):
            with open(os.path.join(ROOT, "luar.conf.lua"), encoding="utf-8") as f:
                conf = f.read()
    bindir = tempfile.mkdtemp(prefix="luar-docs-bin-")
    os.symlink(BIN, os.path.join(bindir, "luar"))
    env = dict(DOC_ENV)
    env["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    # Leading `export NAME=…` lines set up the server's environment, as they would for a
    # reader who exports and then starts luar: they run before the server starts.
    exports = []
    while runnable and re.match(r"^\s*export\s+[A-Za-z_]\w*=", runnable[0][1]):
        exports.append(runnable.pop(0)[1])
    if exports:
        # What the exports print goes to stderr: stdout is the environment alone (an
        # `echo "$TOKEN"` before `env -0` would glue itself to the first variable).
        rc, out, err = run(["bash", "-c", "set -e\n{\n%s\n} >&2\nenv -0" % "\n".join(exports)],
                           bindir, env=env)
        if rc != 0:
            shutil.rmtree(bindir, True)
            return "the exports failed: " + err.strip()
        env = dict(kv.split("=", 1) for kv in out.split("\0") if "=" in kv)
    port = free_port()
    # The commands run in the server's folder and read its luar.conf.lua: the same
    # scripts, data and admin token; plugins from the build under test.
    config = ("local c = (function()\n%s\nend)()\n"
              "c.scripts = c.scripts or 'scripts'; c.data = c.data or 'luar-data'\n"
              "c.admin = c.admin or { token = env('LUAR_ADMIN_TOKEN') }\n"
              "c.plugins = c.plugins or {}; c.plugins.dir = c.plugins.dir or %r\n"
              "return c\n") % (conf or "return {}", os.path.join(BUILD, "plugins"))
    # curl fails on a 4xx or 5xx answer (exit status 22), so a page cannot show a call that
    # no longer works; a console block shows an expected refusal with "(exit status 22)".
    script = ["set -eo pipefail", "trap 'echo \"failed at script line $LINENO\" >&2' ERR",
              'curl() { command curl --fail-with-body "$@"; }']
    where = {}
    for n, (lineno, cmd, status, shown) in enumerate(runnable):
        cmd = re.sub(r"(?<![\w/.])(\.\.?/)?build/luar\b", "luar", cmd)
        cmd = cmd.replace("127.0.0.1:8080", "127.0.0.1:%d" % port)
        cmd = cmd.replace("localhost:8080", "127.0.0.1:%d" % port)
        # Each command's output (stdout and stderr) goes to a file of its own, then to the
        # script's stdout, for the comparison with what the page shows.
        out = os.path.join(bindir, "out.%d" % n)
        cmd = "rc=0; { %s\n} >%s 2>&1 || rc=$?; cat %s" % (cmd, out, out)
        cmd += ("; if [ $rc != %d ]; then echo \"exit status $rc, the page says %d\" >&2; "
                "false; fi" % (status, status))
        script.append(cmd)
        first = sum(part.count("\n") + 1 for part in script[:-1]) + 1
        for k in range(first, first + cmd.count("\n") + 1):
            where[k] = lineno
    try:
        with Luar(scripts=scripts, config=config, env=env,
                  listen="127.0.0.1:%d" % port) as srv:
            # The server was given --data data/; the commands read the default, luar-data/,
            # from the configuration: one folder under both names.
            os.symlink("data", os.path.join(srv.dir, "luar-data"))
            if b.prev_spec is not None:  # `luar test` in a shell block runs the spec above
                write_files(srv.dir, {"spec/%s_spec.lua" % re.sub(r"\W", "_", b.where):
                                      b.prev_spec.text})
            with open(os.path.join(srv.dir, "sample.sh"), "w") as f:
                f.write("\n".join(script) + "\n")
            rc, out, err = run(["bash", "sample.sh"], srv.dir, timeout=120, env=env)
            if rc != 0:
                m = re.search(r"failed at script line (\d+)", err)
                at = where.get(int(m.group(1))) if m else None
                return "exit %d%s:\n%s%s" % (rc, " at %s:%d" % (b.path, at) if at else "",
                                             out[-1500:], err[-1500:])
            if b.log is not None:
                for n, rec in enumerate(json_records(b.log.text)):
                    try:
                        srv.wait_log(lambda r: record_matches(rec, r), timeout=15)
                    except AssertionError as e:
                        return "%s:%d: no such line in the server's log: %s\n%s" % (
                            b.log.path, b.log.line, json.dumps(rec, ensure_ascii=False),
                            str(e)[-1500:])
                b.log.seen = True
            for n, (lineno, cmd, status, shown) in enumerate(runnable):
                if "transcript" in b.mods:
                    break
                with open(os.path.join(bindir, "out.%d" % n), errors="replace") as f:
                    bad = output_mismatch(b, shown, f.read())
                if bad:
                    return bad
    finally:
        shutil.rmtree(bindir, True)


def json_records(text):
    dec, out, i = json.JSONDecoder(), [], 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return out
        rec, i = dec.raw_decode(text, i)
        out.append(rec)


def record_matches(want, got):
    """A log record the page shows, against one the server wrote: every field shown is
    there with that value (`…` in a string: any text); fields not shown do not matter."""
    return all(k in got and value_matches(v, got[k]) for k, v in want.items())


def check_json_log(b):
    err = check_json(b)
    if err:
        return err
    if not b.seen:
        return ("a ```json log block shows lines of the log of the shell block right above "
                "it; there is none, or it did not run")


def check_python(b):
    try:
        compile(b.text, b.where, "exec")
    except SyntaxError as e:
        return "%s:%d: %s" % (b.path, b.line + (e.lineno or 0), e.msg)


def check_js(b):
    d = tempfile.mkdtemp(prefix="luar-docs-js-")
    try:
        with open(os.path.join(d, "sample.js"), "w") as f:
            f.write(b.text)
        rc, out, err = run(["node", "--check", "sample.js"], d)
        if rc != 0:
            return "node --check: " + err.strip()
    finally:
        shutil.rmtree(d, True)


def check_json(b):
    """One JSON document, or several one after the other (log lines, two answers)."""
    dec, text, i = json.JSONDecoder(), b.text, 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return None
        try:
            _, i = dec.raw_decode(text, i)
        except ValueError as e:
            return "%s:%d: not JSON: %s" % (b.path, b.line + 1 + text.count("\n", 0, i), e)


def check_yaml(b):
    """Block YAML as Prometheus and Alertmanager files use it: a mapping or sequence per
    indentation level, `key: value`, `- item`, flow values parsed as JSON-ish, `|` blocks."""
    stack = [(-1, None)]   # (indent, "map" | "seq")
    block_indent = None
    lines = b.text.split("\n")
    for n, raw in enumerate(lines):
        where = "%s:%d" % (b.path, b.line + 1 + n)
        if block_indent is not None:
            if not raw.strip() or len(raw) - len(raw.lstrip()) >= block_indent:
                continue
            block_indent = None
        line = re.sub(r"\s+#.*$", "", raw) if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        if "\t" in raw[:len(raw) - len(raw.lstrip())]:
            return where + ": tab in indentation"
        indent = len(line) - len(line.lstrip())
        body = line.strip()
        while indent < stack[-1][0]:
            stack.pop()
        kind = "seq" if body.startswith("- ") or body == "-" else "map"
        if indent > stack[-1][0]:
            stack.append((indent, kind))
        elif stack[-1][1] != kind:
            return where + ": a %s item among %s items" % (kind, stack[-1][1])
        if kind == "seq":
            body = body[1:].strip()
            if not body:
                continue
            stack.append((indent + 2, "map" if re.match(r"^[\w.\-\"']+:(\s|$)", body)
                          else "seq"))
            if stack[-1][1] == "seq":
                stack.pop()
        m = re.match(r"^(\"[^\"]*\"|'[^']*'|[\w.\-/]+):(\s+(.*))?$", body)
        if kind == "map" or (kind == "seq" and m):
            if not m:
                return where + ": expected `key: value`, got %r" % body
            value = (m.group(3) or "").strip()
        else:
            value = body
        if value in ("|", "|-", ">", ">-"):
            block_indent = indent + 1
            continue
        if value[:1] in ("[", "{"):
            try:
                json.loads(re.sub(r"([\w.\-]+)(?=\s*[,\]}])", r'"\1"', value))
            except ValueError:
                if value.count(value[0]) != value.count({"[": "]", "{": "}"}[value[0]]):
                    return where + ": unbalanced %r" % value
        for q in ("'", '"'):
            if value.startswith(q) and not (value.endswith(q) and len(value) > 1):
                return where + ": unterminated string %r" % value


def check_sql(b):
    db = sqlite3.connect(":memory:")
    try:
        db.executescript(b.text)
    except sqlite3.Error as e:
        return "sqlite: %s" % e
    finally:
        db.close()


def check_redis(b):
    with RedisServer() as srv:
        for n, line in enumerate(b.text.split("\n")):
            if line.strip():
                try:
                    srv.command(*shlex.split(line))
                except Exception as e:
                    return "%s:%d: %s" % (b.path, b.line + 1 + n, e)


def squash(s, lang):
    """The text with comments and runs of whitespace dropped: an excerpt may comment more
    (or less) than its source."""
    if lang == "c":
        s = re.sub(r"/\*.*?\*/", " ", s, flags=re.S)
        s = re.sub(r"//[^\n]*", " ", s)
    else:
        s = re.sub(r"#[^\n]*", " ", s)
    return re.sub(r"\s+", " ", s).strip()


ELISION = re.compile(r"^\s*(?:…|\.\.\.)[^\n]*$", re.M)


def check_excerpt(b):
    path = os.path.join(ROOT, b.mods[0][len("from="):])
    if not os.path.isfile(path):
        return "from=%s: no such file" % b.mods[0][5:]
    with open(path, encoding="utf-8") as f:
        source = squash(f.read(), b.lang)
    at = 0
    for part in ELISION.split(b.text):
        part = squash(part, b.lang)
        if not part:
            continue
        i = source.find(part, at)
        if i < 0:
            return "not found in %s (after what matched before): %s" % (
                b.mods[0][5:], part[:120])
        at = i + len(part)


RUNNERS = {"lua": check_lua, "lua continued": check_lua, "lua config": check_config,
           "lua spec": check_spec, "shell": check_shell, "python": check_python,
           "js": check_js, "json": check_json, "json log": check_json_log, "yaml": check_yaml,
           "sql": check_sql, "redis": check_redis, "excerpt": check_excerpt,
           "text": lambda b: None}


def run_blocks(blocks):
    """Runs every block; returns ([failure messages], {kind: count})."""
    failures, counts = [], {}
    for b in blocks:
        kind = b.kind
        if kind is None:
            failures.append("%s: no runner for the info string %r (label the block: see "
                            "tests/e2e/test_docs_samples.py)" % (b.where, b.info))
            continue
        counts[kind] = counts.get(kind, 0) + 1
        try:
            err = RUNNERS[kind](b)
        except Exception as e:  # a timeout, a server that did not start: still this block
            err = "%s: %s" % (type(e).__name__, e)
        if err:
            failures.append("%s (%s): %s" % (b.where, b.info, err))
    return failures, counts


def test_every_sample_runs():
    blocks = []
    for path in doc_files():
        blocks += parse(path, os.path.relpath(path, ROOT))
    only = os.environ.get("DOCS_SAMPLES_ONLY")  # a substring of file:line, to iterate
    if only:
        blocks = [b for b in blocks if only in b.where]
    failures, counts = run_blocks(blocks)
    print("samples by kind: " + ", ".join("%s %d" % kv for kv in sorted(counts.items())))
    for where, cmd, reason in SKIPPED:
        print("not run: %s: %s  -- %s" % (where, cmd, reason))
    assert not failures, "%d of %d samples failed:\n%s" % (
        len(failures), len(blocks), "\n\n".join(failures))
    assert only or sum(counts.values()) > 100, counts


def anchors(path):
    """GitHub's heading anchors of a Markdown file."""
    out = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"^#+\s+(.*)", line)
            if m:
                out.add(re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-"))
    return out


def test_every_link_resolves():
    """Relative links of the book, the READMEs and the SDK's pages point at files that exist
    (and at headings that exist, for #anchors): pages get renamed."""
    pages = doc_files()
    for top in ("plugins", "sdk", "scripts", "bench"):
        for d, dirs, files in os.walk(os.path.join(ROOT, top)):
            pages += [os.path.join(d, f) for f in files if f.endswith(".md")]
    bad = []
    for page in pages:
        with open(page, encoding="utf-8") as f:
            text = re.sub(r"```.*?```", "", f.read(), flags=re.S)
        for m in re.finditer(r"\]\(([^)\s]+)\)", text):
            url = m.group(1)
            if re.match(r"^[a-z]+:", url):
                continue
            path, _, frag = url.partition("#")
            target = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
            where = os.path.relpath(page, ROOT)
            if not os.path.exists(target):
                bad.append("%s: %s: no such file" % (where, url))
            elif frag and target.endswith(".md") and frag not in anchors(target):
                bad.append("%s: %s: no such heading" % (where, url))
    assert not bad, "\n".join(bad)
    assert len(pages) > 20, pages


def test_a_broken_sample_is_reported_with_file_and_line():
    d = tempfile.mkdtemp(prefix="luar-docs-broken-")
    try:
        md = os.path.join(d, "broken.md")
        with open(md, "w") as f:
            f.write("# Broken\n\n```lua\nlocal http = require \"luar.http\"\n"
                    "http.route(\"GET\", \"/x\")\n```\n\n"
                    "```lua config\nreturn { workers = \"many\" }\n```\n\n"
                    "```python\ndef f(:\n```\n\n"
                    "```\nno info string\n```\n\n"
                    "```sh\nluar jobs show no-such-job\n```\n\n"
                    "<!-- sample-setup\nlocal log = require \"luar.log\"\n-->\n"
                    "```lua\nlog.info(\"fine\", {})\n```\n\n"
                    "```console\n$ luar cron next '0 9 * * *' --tz UTC --from 2026-01-01\n"
                    "2026-01-01T10:00:00+00:00\n```\n")
        blocks = parse(md, "broken.md")
        failures, counts = run_blocks(blocks)
        text = "\n".join(failures)
        assert len(failures) == 6, text
        assert "broken.md:3 (lua)" in text and "broken.md:5:" in text, text
        assert "broken.md:8 (lua config)" in text and "workers" in text, text
        assert "broken.md:12 (python)" in text, text
        assert "broken.md:16: no runner" in text, text
        assert "broken.md:20 (sh)" in text, text
        assert "broken.md:31 (console): broken.md:33: the page shows" in text, text
        assert "2026-01-01T09:00:00+00:00" in text, text
        assert counts == {"lua": 2, "lua config": 1, "python": 1, "shell": 2}, counts
    finally:
        shutil.rmtree(d, True)


if __name__ == "__main__":
    main([test_a_broken_sample_is_reported_with_file_and_line, test_every_link_resolves,
          test_every_sample_runs])
