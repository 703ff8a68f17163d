"""The LuaLS stubs in sdk/lua/luar/ against the real API: every module the host and the built
plugins register is loaded inside `luar run` (tests/e2e/sdk_dump.lua lists its functions and
the methods of the objects it returns: clients, metrics, Stripe's resources, a response from
a local server), the stubs are parsed (`function M.x(`, `function Class:x(`, `---@field x
fun(`, `---@class A: B` inheritance), and every function that exists on one side only is
named. A deliberately broken copy of the stubs must be caught in both directions. Every stub
is valid Lua (luac5.4 -p) and scripts/.luarc.json is valid JSON whose paths exist."""
import glob
import http.server
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading

from luar_e2e import Luar, main, run_cli
from plugin_e2e import PLUGIN_DIR, json_lines, write_config

SRC = os.environ.get("LUAR_SOURCE_DIR", os.getcwd())
STUBS = os.path.join(SRC, "sdk", "lua", "luar")
HERE = os.path.dirname(os.path.abspath(__file__))
DUMP = os.path.join(HERE, "sdk_dump.lua")
PLUGINS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(SRC, "plugins", "*"))
                 if os.path.isfile(os.path.join(p, "CMakeLists.txt")))

CLASS = re.compile(r"^---@class\s+([\w.]+)\s*(?::\s*(.+))?$")
LOCAL = re.compile(r"^local\s+(\w+)\s*=\s*\{\s*\}")
FUNC = re.compile(r"^function\s+(\w+)((?:\.\w+)*)(?::(\w+))?\s*\(")
FIELD_FN = re.compile(r"^---@field\s+(\w+)\??\s+fun\(")
FIELD = re.compile(r"^---@field\s+(\w+)\??\s+([\w.]+)")


# ---- the stubs ----

def parse_stubs(folder):
    """Returns (functions, bases, files, fields): functions maps a class name (a module's,
    like "luar.http", or an object's, like "luar.http.Client") to the set of function names
    it declares ("route", "sub.fn" for nested tables); bases maps a class to its parents;
    files maps each module (luar.<file>, which each file must declare) to its file name;
    fields maps a class to its ---@field names that are not functions, each to its type."""
    functions, bases, files, fields = {}, {}, {}, {}
    for path in sorted(glob.glob(os.path.join(folder, "*.lua"))):
        var_class = {}
        last_class = None      # the class the next `local X = {}` names
        current = None         # the class whose ---@field lines follow
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.rstrip("\n")
                m = CLASS.match(line)
                if m:
                    current = last_class = m.group(1)
                    functions.setdefault(current, set())
                    if m.group(2):
                        bases[current] = [b.strip() for b in m.group(2).split(",")]
                    continue
                m = FIELD_FN.match(line)
                if m and current:
                    functions[current].add(m.group(1))
                    continue
                m = FIELD.match(line)
                if m and current:
                    fields.setdefault(current, {})[m.group(1)] = m.group(2)
                    continue
                if line.startswith("---"):
                    continue
                current = None
                m = LOCAL.match(line)
                if m:
                    if last_class is None:
                        raise AssertionError("%s: `%s` follows no ---@class" % (path, line))
                    var_class[m.group(1)] = last_class
                    last_class = None
                    continue
                m = FUNC.match(line)
                if m:
                    var, dotted, method = m.group(1), m.group(2), m.group(3)
                    if var not in var_class:
                        raise AssertionError("%s: `%s`: %s is no class's table" % (path, line, var))
                    name = (dotted[1:] + ("." + method if dotted else method)) if method \
                        else dotted[1:]
                    functions[var_class[var]].add(name)
        base = os.path.basename(path)[:-4]
        if "luar." + base not in functions:
            raise AssertionError("%s declares no ---@class luar.%s" % (path, base))
        files["luar." + base] = base
    return functions, bases, files, fields


def with_inherited(functions, bases, cls, seen=()):
    out = set(functions.get(cls, ()))
    for b in bases.get(cls, ()):
        if b not in seen:
            out |= with_inherited(functions, bases, b, seen + (cls,))
    return out


def namespaces(functions, fields, cls):
    """A module's fields typed as a class that has functions (`---@field http
    luar.test.http`) are tables of functions: {field name: class}."""
    return {name: t for name, t in fields.get(cls, {}).items() if functions.get(t)}


def module_functions(functions, bases, fields, cls, depth=0):
    """A module's functions, those of its namespace fields as "field.fn" included."""
    out = with_inherited(functions, bases, cls)
    if depth < 4:
        for name, t in namespaces(functions, fields, cls).items():
            out |= {name + "." + f for f in module_functions(functions, bases, fields, t,
                                                             depth + 1)}
    return out


# ---- the real modules ----

class Quiet(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def as_list(v):
    return list(v) if isinstance(v, list) else []   # lua-cjson writes an empty table as {}


def dump_runtime():
    """Runs sdk_dump.lua inside `luar run` with every built plugin loaded; returns
    (modules {name: {fn}}, objects {class: {method}}, constants {module: {field}})."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    d = tempfile.mkdtemp(prefix="luar-stubs-")
    try:
        write_config(d)
        shutil.copy(DUMP, os.path.join(d, "dump.lua"))
        rc, out, err = run_cli(["run", "dump.lua", "http://127.0.0.1:%d/" % srv.server_port],
                               cwd=d, timeout=60)
        assert rc == 0, (rc, out, err)
        lines = [l for l in json_lines(out) if "modules" in l]
        assert len(lines) == 1, out
        got = lines[0]
    finally:
        srv.shutdown()
        srv.server_close()
        shutil.rmtree(d, ignore_errors=True)
    errors = as_list(got.get("errors"))
    assert not errors, "the dump could not reach everything:\n  " + "\n  ".join(errors)
    modules = {k: set(as_list(v)) for k, v in got["modules"].items()}
    objects = {k: set(as_list(v)) for k, v in got["objects"].items()}
    constants = {k: set(as_list(v)) for k, v in got["constants"].items()}
    objects["luar.http.Request"] = dump_server_request()
    if os.path.exists(os.path.join(STUBS, "test.lua")):
        modules["luar.test"] = dump_test_module()
        constants["luar.test"] = set()
    return modules, objects, constants


SERVER_MAIN = """
local http = require "luar.http"
http.route("GET", "/methods", function(req)
  local out, idx = {}, (getmetatable(req) or {}).__index
  for _, t in ipairs { req, type(idx) == "table" and idx or {} } do
    for k, v in pairs(t) do
      if type(v) == "function" and k:sub(1, 1) ~= "_" then out[#out + 1] = k end
    end
  end
  if type(idx) == "function" then out[#out + 1] = "(__index is a function)" end
  return { json = { methods = out } }
end)
"""


def dump_server_request():
    """The methods of the request object a route handler gets, from a real `luar serve`."""
    with Luar(scripts={"main.lua": SERVER_MAIN}) as srv:
        status, _, body = srv.request("GET", "/methods")
        assert status == 200, (status, body)
        return set(as_list(json.loads(body)["methods"]))


def dump_test_module(module="luar.test"):
    """luar.test exists only inside `luar test`: a one-spec folder prints its functions."""
    d = tempfile.mkdtemp(prefix="luar-stubs-test-")
    try:
        write_config(d)
        os.makedirs(os.path.join(d, "spec"))
        os.makedirs(os.path.join(d, "scripts"))
        open(os.path.join(d, "scripts", "main.lua"), "w").close()
        with open(os.path.join(d, "spec", "dump_spec.lua"), "w") as f:
            f.write("""
local json = require "luar.json"
local function walk(t, prefix, out, seen)
  if seen[t] then return end
  seen[t] = true
  for k, v in pairs(t) do
    if type(k) == "string" and k:sub(1, 1) ~= "_" then
      local name = prefix and (prefix .. "." .. k) or k
      if type(v) == "function" then out[#out + 1] = name
      elseif type(v) == "table" and getmetatable(v) == nil then walk(v, name, out, seen) end
    end
  end
end
describe("dump", function()
  it("lists luar.test", function()
    local out = {}
    walk(require "%s", nil, out, {})
    io.stdout:write(json.encode({ test_module = out }), "\\n")
  end)
end)
""" % module)
        rc, out, err = run_cli(["test", "spec"], cwd=d, timeout=120)
        assert rc == 0, (rc, out, err)
        for line in out.splitlines():
            i = line.find('{"test_module"')
            if i >= 0:
                return set(as_list(json.loads(line[i:])["test_module"]))
        raise AssertionError("luar test printed no dump:\n%s\n%s" % (out, err))
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---- the comparison ----

def mismatches(stub_dir, modules, objects, constants):
    """Every difference, one line each: a function on one side only, a module's constant on
    one side only, a module without a stub file or a stub file without a module."""
    functions, bases, stub_modules, fields = parse_stubs(stub_dir)
    out = []
    for name in sorted(modules):
        if name not in stub_modules:
            out.append("module %s has no stub file in sdk/lua/luar/" % name)
    for name in sorted(stub_modules):
        if name not in modules:
            out.append("stub file %s.lua declares module %s, which the host does not register"
                       % (stub_modules[name], name))
    real = dict(modules)
    real.update(objects)
    for cls in sorted(real):
        if cls in modules and cls not in stub_modules:
            continue           # reported above
        if cls not in functions:
            out.append("class %s (returned by the API) has no ---@class in the stubs" % cls)
            continue
        if cls in modules:
            declared = module_functions(functions, bases, fields, cls)
        else:
            declared = with_inherited(functions, bases, cls)
        sep = "." if cls in modules else ":"
        for fn in sorted(real[cls] - declared):
            out.append("missing from the stubs: %s%s%s" % (cls, sep, fn))
        for fn in sorted(declared - real[cls]):
            out.append("not in the real API: %s%s%s" % (cls, sep, fn))
        if cls in modules:
            declared = set(fields.get(cls, {})) - set(namespaces(functions, fields, cls))
            for f in sorted(constants.get(cls, set()) - declared):
                out.append("field missing from the stubs: %s.%s" % (cls, f))
            for f in sorted(declared - constants.get(cls, set())):
                out.append("field not in the real API: %s.%s" % (cls, f))
    return out


_runtime = None


def runtime():
    global _runtime
    if _runtime is None:
        _runtime = dump_runtime()
    return _runtime


def test_every_module_and_plugin_is_loaded():
    modules, objects, constants = runtime()
    for p in PLUGINS:
        assert "luar." + p in modules, "plugin %s's module is not loaded (%s)" % (p, PLUGIN_DIR)
    for m in ("luar.http", "luar.error", "luar.oauth", "luar.redis", "luar.secrets",
              "luar.jobs", "luar.webhooks"):
        assert m in modules, m
    assert "route" in modules["luar.http"] and "get" in objects["luar.http.Client"]
    assert "json" in objects["luar.http.ClientResponse"]
    assert "json" in objects["luar.http.Request"]
    assert "null" in constants["luar.json"]


def test_stubs_match_the_real_api():
    modules, objects, constants = runtime()
    bad = mismatches(STUBS, modules, objects, constants)
    assert not bad, "the stubs and the API differ:\n  " + "\n  ".join(bad)
    functions, bases, _, fields = parse_stubs(STUBS)
    n = sum(len(module_functions(functions, bases, fields, c)) for c in modules) + \
        sum(len(with_inherited(functions, bases, c)) for c in objects)
    print("     %d modules, %d object classes, %d functions checked"
          % (len(modules), len(objects), n))


def test_a_mismatched_stub_set_is_reported_both_ways():
    modules, objects, constants = runtime()
    d = tempfile.mkdtemp(prefix="luar-stubs-bad-")
    try:
        for p in glob.glob(os.path.join(STUBS, "*.lua")):
            shutil.copy(p, d)
        # one function removed from a module, one method removed from a class, one extra
        # function added, and a whole module's file removed
        with open(os.path.join(d, "crypto.lua")) as f:
            src = f.read()
        assert "function crypto.uuid(" in src
        src = src.replace("function crypto.uuid(", "function crypto.uuid_v9(")
        with open(os.path.join(d, "crypto.lua"), "w") as f:
            f.write(src)
        with open(os.path.join(d, "http.lua")) as f:
            src = f.read()
        assert "function Client:patch(" in src
        src = src.replace("function Client:patch(", "local function _gone(")
        with open(os.path.join(d, "http.lua"), "w") as f:
            f.write(src)
        with open(os.path.join(d, "json.lua")) as f:
            src = f.read()
        assert "---@field null " in src
        src = src.replace("---@field null ", "---@field nul ")
        with open(os.path.join(d, "json.lua"), "w") as f:
            f.write(src)
        os.remove(os.path.join(d, "time.lua"))
        bad = mismatches(d, modules, objects, constants)
        assert "missing from the stubs: luar.crypto.uuid" in bad, bad
        assert "not in the real API: luar.crypto.uuid_v9" in bad, bad
        assert "missing from the stubs: luar.http.Client:patch" in bad, bad
        assert "module luar.time has no stub file in sdk/lua/luar/" in bad, bad
        assert "field missing from the stubs: luar.json.null" in bad, bad
        assert "field not in the real API: luar.json.nul" in bad, bad
        # and a stub module the host does not have
        with open(os.path.join(d, "nosuch.lua"), "w") as f:
            f.write("---@meta\n---@class luar.nosuch\nlocal m = {}\nfunction m.x() end\n"
                    "return m\n")
        bad = mismatches(d, modules, objects, constants)
        assert any("declares module luar.nosuch" in b for b in bad), bad
        assert len(bad) == 7, bad
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_every_stub_is_valid_lua():
    luac = shutil.which("luac5.4")
    assert luac, "luac5.4 is not installed (Debian package lua5.4)"
    files = sorted(glob.glob(os.path.join(STUBS, "*.lua")))
    assert len(files) >= 20, files
    for path in files:
        p = subprocess.run([luac, "-p", path], capture_output=True, timeout=30)
        assert p.returncode == 0, p.stderr.decode()
        with open(path, encoding="utf-8") as f:
            assert f.readline().strip() == "---@meta", "%s does not start with ---@meta" % path
    # the checker catches a broken file
    d = tempfile.mkdtemp(prefix="luar-stubs-syntax-")
    try:
        bad = os.path.join(d, "bad.lua")
        with open(bad, "w") as f:
            f.write("---@meta\nfunction x( end\n")
        assert subprocess.run([luac, "-p", bad], capture_output=True).returncode != 0
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_luarc_is_valid_and_points_at_what_exists():
    path = os.path.join(SRC, "scripts", ".luarc.json")
    with open(path) as f:
        rc = json.load(f)
    assert rc["runtime"]["version"] == "Lua 5.4", rc
    libs = rc["workspace"]["library"]
    assert any(os.path.realpath(os.path.join(SRC, "scripts", l)) ==
               os.path.realpath(os.path.join(SRC, "sdk", "lua")) for l in libs), libs
    for lib in libs:
        if lib.startswith("${3rd}"):
            continue       # LuaLS's bundled third-party definitions (busted, luassert)
        assert os.path.isdir(os.path.join(SRC, "scripts", lib)), lib
    assert any(l.startswith("${3rd}/busted") for l in libs), libs
    assert any(l.startswith("${3rd}/luassert") for l in libs), libs


if __name__ == "__main__":
    main([test_every_module_and_plugin_is_loaded, test_stubs_match_the_real_api,
          test_a_mismatched_stub_set_is_reported_both_ways, test_every_stub_is_valid_lua,
          test_luarc_is_valid_and_points_at_what_exists])
