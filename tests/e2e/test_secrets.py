"""Secrets end to end: the `luar secrets` commands, wrong keys, luar.secrets.get (store, then
environment), redaction from logs / error bodies / metrics / stored job errors, reload, the
audit log and `luar audit verify`, and the AES-256-GCM blob layout read and written by an
independent implementation (node's crypto)."""
import atexit
import base64
import json
import os
import shutil
import stat
import subprocess
import tempfile

from luar_e2e import Luar, main, run_cli, write_files

# A value with a quote and a slash: JSON writers escape both ('/' as "\/" in lua-cjson),
# so the redaction must catch the escaped spellings too.
TOKEN = 'tok/en"Xy_9d8f7g6h5j4k3'


def tmpdir(files=None):
    d = tempfile.mkdtemp(prefix="luar-secrets-")
    atexit.register(shutil.rmtree, d, True)
    write_files(d, files or {})
    return d


def gen_key():
    rc, out, err = run_cli(["secrets", "gen-key"])
    assert rc == 0, (rc, out, err)
    key = out.strip()
    assert len(key) == 64 and int(key, 16) >= 0, out
    return key


def cli(args, d, key=None, input=None, env=None):
    e = {"LUAR_SECRETS_KEY": key or ""}
    e.update(env or {})
    return run_cli(args, cwd=d, env=e, input=input)


def ok(args, d, key=None, input=None, env=None):
    rc, out, err = cli(args, d, key, input, env)
    assert rc == 0, (args, rc, out, err)
    return out


def store_path(d):
    return os.path.join(d, "luar-data", "secrets.enc")


def audit_lines(d):
    with open(os.path.join(d, "luar-data", "audit.log")) as f:
        return f.read().splitlines()


def test_cli_set_get_list_delete_round_trip():
    d, key = tmpdir(), gen_key()
    assert "added API_TOKEN" in ok(["secrets", "set", "API_TOKEN", TOKEN], d, key)
    # From stdin: the value stays out of shell history; one trailing newline is dropped.
    assert "added DB_URL" in ok(["secrets", "set", "DB_URL"], d, key,
                                input=b"postgres://u:p@db/x\n")
    assert "updated API_TOKEN" in ok(["secrets", "set", "API_TOKEN", TOKEN + "2"], d, key)
    ok(["secrets", "set", "API_TOKEN", TOKEN], d, key)
    assert ok(["secrets", "get", "API_TOKEN"], d, key) == TOKEN + "\n"
    assert ok(["secrets", "get", "DB_URL"], d, key) == "postgres://u:p@db/x\n"
    assert ok(["secrets", "list"], d, key) == "API_TOKEN\nDB_URL\n"
    # The file: mode 0600, neither names nor values readable.
    st = os.stat(store_path(d))
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    raw = open(store_path(d), "rb").read()
    assert raw.startswith(b"luar-secrets\n")
    for word in (b"API_TOKEN", b"DB_URL", b"postgres", b"9d8f7g6h"):
        assert word not in raw, word
    assert "deleted DB_URL" in ok(["secrets", "delete", "DB_URL"], d, key)
    rc, out, err = cli(["secrets", "get", "DB_URL"], d, key)
    assert rc == 1 and "no secret DB_URL" in err and out == "", (rc, out, err)
    rc, out, err = cli(["secrets", "delete", "DB_URL"], d, key)
    assert rc == 1, (rc, out, err)
    # Usage errors are 2 and name the problem.
    for args, words in ((["secrets", "set", "bad name", "v"], "invalid name"),
                        (["secrets", "set", "EMPTY", ""], "empty value"),
                        (["secrets", "frobnicate"], "unknown command"),
                        (["secrets", "get"], "usage")):
        rc, out, err = cli(args, d, key)
        assert rc == 2 and words in err, (args, rc, err)
    rc, out, err = run_cli(["help"])
    assert rc == 0 and "secrets set NAME" in out and "audit verify" in out, out


def test_gen_key_is_fresh_and_base64_forms_are_accepted():
    d = tmpdir()
    k1, k2 = gen_key(), gen_key()
    assert k1 != k2
    ok(["secrets", "set", "X_KEY", "value-123456"], d, k1)
    raw = bytes.fromhex(k1)
    for form in (base64.b64encode(raw).decode(), base64.b64encode(raw).decode().rstrip("="),
                 base64.urlsafe_b64encode(raw).decode().rstrip("="), k1.upper(), " %s\n" % k1):
        assert ok(["secrets", "get", "X_KEY"], d, form) == "value-123456\n", form


def test_wrong_malformed_or_missing_key_is_a_clear_error():
    d, key, other = tmpdir(), gen_key(), gen_key()
    ok(["secrets", "set", "API_TOKEN", TOKEN], d, key)
    rc, out, err = cli(["secrets", "list"], d, other)
    assert rc == 2 and "wrong key" in err and "key id" in err, (rc, err)
    assert "LUAR_SECRETS_KEY" in err and other not in err and key not in err, err
    rc, out, err = cli(["secrets", "get", "API_TOKEN"], d, "not-a-key")
    assert rc == 2 and err.startswith("LUAR_SECRETS_KEY: expected a key of 32 bytes"), err
    rc, out, err = cli(["secrets", "list"], d, None)
    assert rc == 2 and "no key" in err, (rc, err)
    # A key in the configuration file is named by file, line and setting.
    write_files(d, {"luar.conf.lua": "return {\n  secrets = {\n    key = \"abc\",\n  },\n}\n"})
    rc, out, err = cli(["secrets", "list"], d, None)
    assert rc == 2 and "luar.conf.lua:3: secrets.key: expected a key" in err, (rc, err)
    os.remove(os.path.join(d, "luar.conf.lua"))
    # The server refuses to start with the wrong key, and says why.
    rc, out, err = run_cli(["check"], cwd=d, env={"LUAR_SECRETS_KEY": other})
    assert rc == 2 and "wrong key" in err, (rc, out, err)
    # A damaged file is not a wrong key: it says corrupt, exit 1.
    blob = bytearray(open(store_path(d), "rb").read())
    blob[-5] ^= 1
    open(store_path(d), "wb").write(bytes(blob))
    rc, out, err = cli(["secrets", "list"], d, key)
    assert rc == 1 and "corrupt" in err and "modified" in err, (rc, err)
    open(store_path(d), "wb").write(bytes(blob[:-20]))
    rc, out, err = cli(["secrets", "list"], d, key)
    assert rc == 1 and "truncated" in err, (rc, err)


def test_rotate_key_re_encrypts_and_the_old_key_stops_working():
    d, old, new = tmpdir(), gen_key(), gen_key()
    ok(["secrets", "set", "A_SECRET", "alpha-secret-1"], d, old)
    ok(["secrets", "set", "B_SECRET", "beta-secret-22"], d, old)
    rc, out, err = cli(["secrets", "rotate-key"], d, old)
    assert rc == 2 and "LUAR_SECRETS_NEW_KEY" in err, (rc, err)
    rc, out, err = cli(["secrets", "rotate-key"], d, old, env={"LUAR_SECRETS_NEW_KEY": old})
    assert rc == 2 and "is the current key" in err, (rc, err)
    out = ok(["secrets", "rotate-key"], d, old, env={"LUAR_SECRETS_NEW_KEY": new})
    assert "re-encrypted 2 secrets" in out and "LUAR_SECRETS_KEY" in out, out
    rc, out, err = cli(["secrets", "list"], d, old)
    assert rc == 2 and "wrong key" in err, (rc, err)
    assert ok(["secrets", "get", "B_SECRET"], d, new) == "beta-secret-22\n"
    rotations = [json.loads(l) for l in audit_lines(d) if "rotate_key" in l]
    assert len(rotations) == 1 and rotations[0]["secrets"] == 2, rotations
    assert rotations[0]["from_key_id"] != rotations[0]["to_key_id"]


LEAKY_APP = r'''
local http = require "luar.http"
local jobs = require "luar.jobs"
local log = require "luar.log"
local metrics = require "luar.metrics"
local secrets = require "luar.secrets"

local token = secrets.get("API_TOKEN")          -- at load time, from the store
local short = secrets.get("SHORT_ONE")          -- too short to redact: one warning
local calls = metrics.counter("leak_test_total", "Calls.", { "token" })

jobs.define("leaky", { retries = 0 }, function()
  error("job failed while using " .. token)
end)

http.route("GET", "/leak", function(req)
  log.info("calling the API with " .. token,
           { token = token, nested = { auth = "Bearer " .. token } })
  log.warn(token)
  calls:inc(1, { token = token })
  error("request failed with token " .. token)
end)

http.route("GET", "/bad", function(req)
  return { status = 400, json = { error = "bad token " .. token } }
end)

http.route("GET", "/job", function(req)
  return { json = { id = jobs.enqueue("leaky", {}) } }
end)

http.route("GET", "/env", function(req)
  local v = secrets.get("FROM_ENVIRONMENT")
  log.info("environment value is " .. v)
  return { json = { env = v, missing = secrets.get("NOT_SET_ANYWHERE") == nil,
                    short = short, store = secrets.get("API_TOKEN") == token } }
end)

http.route("GET", "/value/:name", function(req)
  return { json = { value = secrets.get(req.params.name) or false } }
end)
'''


def server_config(d):
    """A configuration pointing the store and the audit log into `d` (shared with the CLI)."""
    path = os.path.join(d, "luar.conf.lua")
    with open(path, "w") as f:
        f.write("return { reload = { watch = false },\n"
                "  secrets = { file = %r },\n  audit = { file = %r } }\n"
                % (os.path.join(d, "secrets.enc"), os.path.join(d, "audit.log")))
    with open(path) as f:
        return path, f.read()


def test_secret_values_never_reach_logs_error_bodies_metrics_or_job_errors():
    d, key = tmpdir(), gen_key()
    cpath, config = server_config(d)
    for name, value in (("API_TOKEN", TOKEN), ("SHORT_ONE", "abcd")):
        rc, out, err = cli(["secrets", "set", name, value, "--config", cpath], d, key)
        assert rc == 0, (rc, out, err)
    env = {"LUAR_SECRETS_KEY": key, "FROM_ENVIRONMENT": "env-secret-value-77"}
    with Luar({"main.lua": LEAKY_APP}, config=config, env=env) as luar:
        status, _, failed = luar.request("GET", "/leak")
        assert status == 500, (status, failed)
        status, _, bad = luar.request("GET", "/bad")
        assert status == 400 and b"[REDACTED]" in bad, (status, bad)
        status, _, body = luar.request("GET", "/env")
        assert status == 200, body
        got = json.loads(body)
        assert got == {"env": "env-secret-value-77", "missing": True, "short": "abcd",
                       "store": True}, got
        jid = json.loads(luar.request("GET", "/job")[2])["id"]
        luar.wait_log(lambda r: r.get("msg") == "job failed, now dead")
        luar.wait_log(lambda r: r.get("msg") == "handler error")
        metrics = luar.request("GET", "/metrics")[2].decode()
        assert 'leak_test_total{token="[REDACTED]"} 1' in metrics, metrics
        seen = luar.wait_log(lambda r: r.get("msg", "").startswith("calling the API with"))
        assert seen["msg"] == "calling the API with [REDACTED]", seen
        assert seen["token"] == "[REDACTED]" and seen["nested"]["auth"] == "Bearer [REDACTED]"
        luar.wait_log(lambda r: r.get("msg") == "environment value is [REDACTED]")
        luar.wait_log(lambda r: "SHORT_ONE is shorter than 6 bytes" in r.get("msg", ""))
        stop = luar.stop()
        assert stop == 0, stop
        # Every record decoded (any escaping undone), every stderr line, every body.
        everything = [json.dumps(r, ensure_ascii=False) for r in luar.lines + luar.stderr_lines]
        everything += [failed.decode(), bad.decode(), metrics]
        for text in everything:
            for leak in (TOKEN, "9d8f7g6h5j4k3", "env-secret-value-77"):
                assert leak not in text, (leak, text)
        handler = [r for r in luar.lines if r.get("msg") == "handler error"][0]
        assert "request failed with token [REDACTED]" in handler["error"], handler
        # The job's stored error (shown by `luar jobs show` and the admin API) is clean too.
        rc, out, err = run_cli(["jobs", "show", jid, "--json", "--config", cpath,
                                "--data", luar.data], cwd=d, env={"LUAR_SECRETS_KEY": key})
        assert rc == 0, (rc, out, err)
        job = json.loads(out)
        assert job["state"] == "dead", job
        assert "job failed while using [REDACTED]" in job["last_error"], job
        assert TOKEN not in out and "9d8f7g6h" not in out, out


def test_store_is_read_at_start_and_again_on_reload():
    d, key = tmpdir(), gen_key()
    cpath, config = server_config(d)
    env = {"LUAR_SECRETS_KEY": key}
    ok(["secrets", "set", "FIRST", "first-value-1", "--config", cpath], d, key)
    with Luar({"main.lua": LEAKY_APP.replace('secrets.get("API_TOKEN")', '"x"')},
              config=config, env=env) as luar:
        assert json.loads(luar.request("GET", "/value/FIRST")[2]) == {"value": "first-value-1"}
        ok(["secrets", "set", "SECOND", "second-value-2", "--config", cpath], d, key)
        # Loaded once per process: not seen before a reload ...
        assert json.loads(luar.request("GET", "/value/SECOND")[2]) == {"value": False}
        rc, out, err = run_cli(["reload", "--config", cpath, "--data", luar.data], cwd=d,
                               env=env)
        assert rc == 0, (rc, out, err)
        # ... and seen after it.
        assert json.loads(luar.request("GET", "/value/SECOND")[2]) == {"value": "second-value-2"}
        # A store the running key cannot read makes the reload fail; the old store serves on.
        other = gen_key()
        ok(["secrets", "rotate-key", "--config", cpath], d, key,
           env={"LUAR_SECRETS_NEW_KEY": other})
        rc, out, err = run_cli(["reload", "--config", cpath, "--data", luar.data], cwd=d,
                               env=env)
        assert rc == 1 and "wrong key" in err, (rc, out, err)
        assert json.loads(luar.request("GET", "/value/FIRST")[2]) == {"value": "first-value-1"}


def test_environment_is_the_fallback_of_secrets_get():
    d = tmpdir({"scripts/main.lua": ""})
    script = os.path.join(d, "s.lua")
    with open(script, "w") as f:
        f.write('local s = require "luar.secrets"\n'
                'print(s.get("ONLY_IN_ENV"), s.get("NOWHERE_AT_ALL"), s.get("BOTH_PLACES"))\n'
                'print(pcall(s.get, nil))\n')
    key = gen_key()
    ok(["secrets", "set", "BOTH_PLACES", "from-the-store"], d, key)
    env = {"ONLY_IN_ENV": "from-the-env", "BOTH_PLACES": "env-loses"}
    rc, out, err = cli(["run", script], d, key, env=env)
    assert rc == 0, (rc, out, err)
    lines = out.splitlines()
    assert lines[0] == "from-the-env\tnil\tfrom-the-store", out
    assert lines[1].startswith("false\t"), out  # a name that is not a string raises


def test_audit_log_records_changes_and_verify_catches_edits_and_deletions():
    d, key = tmpdir(), gen_key()
    for i in range(4):
        ok(["secrets", "set", "S%d" % i, "value-%d-abcdef" % i], d, key)
    ok(["secrets", "get", "S1"], d, key)
    ok(["secrets", "delete", "S2"], d, key)
    lines = audit_lines(d)
    recs = [json.loads(l) for l in lines]
    assert [r["action"] for r in recs] == ["secret.set"] * 4 + ["secret.get", "secret.delete"]
    assert all(r["who"] == "cli" and r["user"] and r["name"] for r in recs), recs
    assert not any("value-" in l for l in lines), lines  # names only, never values
    out = ok(["audit", "verify"], d)
    assert ": ok, 6 records, head " in out, out
    path = os.path.join(d, "luar-data", "audit.log")
    out2 = ok(["audit", "verify", path], tmpdir())  # a FILE needs no configuration
    assert out2.split(": ", 1)[1] == out.split(": ", 1)[1], (out, out2)

    def verify_fails(new_lines, line_no, words):
        with open(path, "w") as f:
            f.write("\n".join(new_lines) + "\n")
        rc, o, err = run_cli(["audit", "verify", path])
        assert rc == 1 and ("audit.log:%d:" % line_no) in err and words in err, (rc, err)

    verify_fails(lines[:2] + [lines[2].replace('"S2"', '"S9"')] + lines[3:], 4, "line 3 was edited")
    verify_fails(lines[:3] + lines[4:], 4, "deleted")
    verify_fails(lines[:2] + [lines[3], lines[2]] + lines[4:], 3, "reordered")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    ok(["audit", "verify", path], d)
    rc, out, err = run_cli(["audit", "verify", os.path.join(d, "nope.log")])
    assert rc == 1 and "No such file" in err, (rc, err)


def test_refuses_a_change_it_cannot_audit():
    d, key = tmpdir(), gen_key()
    ok(["secrets", "set", "A_SECRET", "alpha-value-1"], d, key)
    audit = os.path.join(d, "luar-data", "audit.log")
    os.remove(audit)
    os.mkdir(audit)  # the audit log cannot be opened for appending
    rc, out, err = cli(["secrets", "set", "A_SECRET", "changed-value"], d, key)
    assert rc == 1 and "audit record could not be written" in err, (rc, err)
    os.rmdir(audit)
    assert ok(["secrets", "get", "A_SECRET"], d, key) == "alpha-value-1\n"


NODE_BLOB = r'''
const crypto = require("crypto");
const [mode, keyHex, data, aad] = process.argv.slice(1);
const key = Buffer.from(keyHex, "hex");
const mac = (label) => crypto.createHmac("sha256", key).update(label).digest().subarray(0, 4);
if (mode === "open") {
  const blob = Buffer.from(data, "hex");
  if (blob[0] !== 1) throw new Error("version");
  const header = blob.subarray(0, 25), n = blob.readUInt32BE(9);
  if (!mac("luar aead v1 key id").equals(blob.subarray(1, 5))) throw new Error("key id");
  const check = mac(Buffer.concat([Buffer.from("luar aead v1 aad\0"), Buffer.from(aad)]));
  if (!check.equals(blob.subarray(5, 9))) throw new Error("aad check");
  const d = crypto.createDecipheriv("aes-256-gcm", key, blob.subarray(13, 25));
  d.setAAD(Buffer.concat([header, Buffer.from(aad)]));
  d.setAuthTag(blob.subarray(25 + n));
  process.stdout.write(Buffer.concat([d.update(blob.subarray(25, 25 + n)), d.final()]));
} else {
  const plain = Buffer.from(data), header = Buffer.alloc(25);
  header[0] = 1;
  mac("luar aead v1 key id").copy(header, 1);
  mac(Buffer.concat([Buffer.from("luar aead v1 aad\0"), Buffer.from(aad)])).copy(header, 5);
  header.writeUInt32BE(plain.length, 9);
  crypto.randomBytes(12).copy(header, 13);
  const c = crypto.createCipheriv("aes-256-gcm", key, header.subarray(13, 25));
  c.setAAD(Buffer.concat([header, Buffer.from(aad)]));
  const body = Buffer.concat([c.update(plain), c.final()]);
  process.stdout.write(Buffer.concat([header, body, c.getAuthTag()]).toString("hex"));
}
'''

LUA_BLOB = r'''
local crypto = require "luar.crypto"
local mode, key, data, aad = arg[1], crypto.unhex(arg[2]), arg[3], arg[4]
if mode == "seal" then
  io.write(crypto.hex(crypto.encrypt(key, data, aad)))
else
  local plain, err = crypto.decrypt(key, crypto.unhex(data), aad)
  io.write(plain or ("ERR " .. tostring(err)))
end
'''


def test_blob_layout_matches_an_independent_implementation():
    node = shutil.which("node")
    assert node, "node is not installed (Debian package nodejs)"
    d = tmpdir({"blob.lua": LUA_BLOB, "scripts/main.lua": ""})
    key, text, aad = gen_key(), "héllo, wörld: the quick brown fox", "invoice:42"

    def luar(*args):
        rc, out, err = run_cli(["run", "blob.lua"] + list(args), cwd=d)
        assert rc == 0, (rc, out, err)
        return out

    def js(*args):
        p = subprocess.run([node, "-e", NODE_BLOB, "--"] + list(args), capture_output=True,
                           timeout=60)
        assert p.returncode == 0, p.stderr.decode()
        return p.stdout.decode()

    # node reads what luar writes (key id and aad check included) ...
    assert js("open", key, luar("seal", key, text, aad), aad) == text
    # ... and luar reads what node writes, refusing it under another aad.
    sealed = js("seal", key, text, aad)
    assert luar("open", key, sealed, aad) == text
    refused = luar("open", key, sealed, "invoice:43")
    assert refused.startswith("ERR invalid: crypto.decrypt: the associated data"), refused


if __name__ == "__main__":
    main([test_cli_set_get_list_delete_round_trip,
          test_gen_key_is_fresh_and_base64_forms_are_accepted,
          test_wrong_malformed_or_missing_key_is_a_clear_error,
          test_rotate_key_re_encrypts_and_the_old_key_stops_working,
          test_secret_values_never_reach_logs_error_bodies_metrics_or_job_errors,
          test_store_is_read_at_start_and_again_on_reload,
          test_environment_is_the_fallback_of_secrets_get,
          test_audit_log_records_changes_and_verify_catches_edits_and_deletions,
          test_refuses_a_change_it_cannot_audit,
          test_blob_layout_matches_an_independent_implementation])
