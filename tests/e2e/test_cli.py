"""The command line: check, run, version, configuration errors naming file and line."""
import atexit
import os
import shutil
import subprocess
import tempfile

from luar_e2e import main, run_cli, write_files


def tmpdir(files):
    d = tempfile.mkdtemp(prefix="luar-cli-")
    atexit.register(shutil.rmtree, d, True)
    write_files(d, files)
    return d


def test_check_reports_config_syntax_error_with_file_and_line():
    d = tmpdir({"luar.conf.lua": "return {\n  listen = \"127.0.0.1:1\",\n  workers = ,\n}\n",
                "scripts/main.lua": ""})
    rc, out, err = run_cli(["check"], cwd=d)
    assert rc == 2, (rc, out, err)
    assert "luar.conf.lua:3:" in err, err


def test_check_reports_bad_value_with_file_line_and_key():
    d = tmpdir({"luar.conf.lua": "return {\n  limits = {\n    max_body = \"lots\",\n  },\n"
                                 "  colour = 1,\n}\n",
                "scripts/main.lua": ""})
    rc, out, err = run_cli(["check"], cwd=d)
    assert rc == 2, (rc, out, err)
    assert "luar.conf.lua:3: limits.max_body" in err, err
    assert "luar.conf.lua:5: colour: unknown key" in err, err


def test_check_names_unknown_keys_in_every_table():
    conf = ("return {\n"
            "  limits = { max_bodyy = 1 },\n"
            "  log = { levle = \"info\" },\n"
            "  jobs = { leese = 30 },\n"
            "  admin = { tokn = \"x\" },\n"
            "  reload = { wach = true },\n"
            "  shutdown = { grase = 1 },\n"
            "  secrets = { fiel = \"s\" },\n"
            "  audit = { fyle = \"a\" },\n"
            "  listen = { { addr = \"127.0.0.1:1\", port = 1,\n"
            "               tls = { cert = \"c\", key = \"k\", ca = \"x\" } } },\n"
            "  oauth = {},\n"
            "}\n")
    d = tmpdir({"luar.conf.lua": conf, "scripts/main.lua": ""})
    rc, out, err = run_cli(["check"], cwd=d)
    assert rc == 2, (rc, out, err)
    for line, key in [(2, "limits.max_bodyy"), (3, "log.levle"), (4, "jobs.leese"),
                      (5, "admin.tokn"), (6, "reload.wach"), (7, "shutdown.grase"),
                      (8, "secrets.fiel"), (9, "audit.fyle"), (10, "listen.port"),
                      (11, "listen.tls.ca"), (12, "oauth")]:
        assert "luar.conf.lua:%d: %s: unknown key" % (line, key) in err, (key, err)


def test_check_loads_the_tls_files_of_each_listener():
    listen = ("return { listen = { \"127.0.0.1:1\", { addr = \"127.0.0.1:2\", "
              "tls = { cert = \"c.pem\", key = \"k.pem\" } } } }\n")
    d = tmpdir({"luar.conf.lua": listen, "scripts/main.lua": ""})
    rc, out, err = run_cli(["check"], cwd=d)
    assert rc == 2, (rc, out, err)
    assert "listen 127.0.0.1:2: tls.cert c.pem: No such file or directory" in err, err
    assert "listen 127.0.0.1:2: tls.key k.pem: No such file or directory" in err, err
    write_files(d, {"c.pem": "not a certificate\n", "k.pem": "not a key\n"})
    rc, out, err = run_cli(["check"], cwd=d)
    assert rc == 2 and "its TLS files do not load (cert c.pem, key k.pem)" in err, (rc, err)
    assert "cannot load certificate c.pem" in out, out  # OpenSSL's reason, as serve logs it
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", "k.pem", "-out", "c.pem",
                    "-days", "1", "-subj", "/CN=127.0.0.1"], cwd=d, check=True,
                   capture_output=True)
    rc, out, err = run_cli(["check"], cwd=d)
    assert rc == 0 and out.startswith("ok: "), (rc, out, err)


def test_check_env_unset_names_variable_and_line():
    d2 = tmpdir({"luar.conf.lua": "return {\n\n  data = env(\"LUAR_SURELY_NOT_SET_42\"),\n}\n",
                 "scripts/main.lua": ""})
    rc, out, err = run_cli(["check"], cwd=d2)
    assert rc == 2, (rc, out, err)
    assert "luar.conf.lua:3:" in err and "LUAR_SURELY_NOT_SET_42" in err, err
    d3 = tmpdir({"luar.conf.lua": "return { data = env(\"LUAR_SURELY_NOT_SET_42\", \"dd\") }\n",
                 "scripts/main.lua": ""})
    rc, out, err = run_cli(["check"], cwd=d3)
    assert rc == 0, (rc, out, err)


def test_check_reports_script_error_with_file_and_line():
    d = tmpdir({"scripts/main.lua": "local x = 1\nlocal y = require('helper')\n",
                "scripts/helper.lua": "local a = 1\n\nerror('helper is broken')\n"})
    rc, out, err = run_cli(["check"], cwd=d)
    assert rc == 2, (rc, out, err)
    assert "helper.lua:3:" in err and "helper is broken" in err, err


def test_check_ok_and_flags_override_environment():
    d = tmpdir({"app/main.lua": "local http = require 'luar.http'\n"
                                "http.route('GET', '/', function() return 'hi' end)\n"})
    rc, out, err = run_cli(["check"], cwd=d, env={"LUAR_SCRIPTS": "app"})
    assert rc == 0, (rc, out, err)
    assert "1 routes" in out, out
    rc, out, err = run_cli(["check", "--scripts", "nowhere"], cwd=d, env={"LUAR_SCRIPTS": "app"})
    assert rc == 2, (rc, out, err)
    assert "nowhere" in err, err


def test_bad_environment_override_is_named():
    d = tmpdir({"scripts/main.lua": ""})
    rc, out, err = run_cli(["check"], cwd=d, env={"LUAR_WORKERS": "many"})
    assert rc == 2 and "LUAR_WORKERS" in err, (rc, err)


def test_run_script_with_args_and_exit_status():
    d = tmpdir({"ok.lua": "local time = require 'luar.time'\ntime.sleep(0.01)\n"
                          "print('args', arg[1], arg[2], #arg)\n",
                "fail.lua": "local x = nil\nprint(x.field)\n"})
    rc, out, err = run_cli(["run", "ok.lua", "one", "two"], cwd=d)
    assert rc == 0, (rc, out, err)
    assert "args\tone\ttwo\t2" in out, out
    rc, out, err = run_cli(["run", "fail.lua"], cwd=d)
    assert rc == 1, (rc, out, err)
    assert "fail.lua:2:" in err, err
    rc, out, err = run_cli(["run"], cwd=d)
    assert rc == 2, (rc, out, err)


def test_version_and_usage():
    rc, out, err = run_cli(["version"])
    assert rc == 0 and out.startswith("luar ") and "Lua 5.4" in out and "libuv" in out, out
    rc, out, err = run_cli(["frobnicate"])
    assert rc == 2 and "unknown command frobnicate" in err, err
    rc, out, err = run_cli(["serve", "--bogus", "1"])
    assert rc == 2 and "--bogus" in err, err


def test_serve_refuses_broken_scripts_with_status_2():
    d = tmpdir({"scripts/main.lua": "local = 1\n"})
    rc, out, err = run_cli(["serve", "--listen", "127.0.0.1:0"], cwd=d, timeout=30)
    assert rc == 2, (rc, out, err)
    assert "main.lua:1:" in err, err


if __name__ == "__main__":
    main([test_check_reports_config_syntax_error_with_file_and_line,
          test_check_reports_bad_value_with_file_line_and_key,
          test_check_names_unknown_keys_in_every_table,
          test_check_loads_the_tls_files_of_each_listener,
          test_check_env_unset_names_variable_and_line,
          test_check_reports_script_error_with_file_and_line,
          test_check_ok_and_flags_override_environment,
          test_bad_environment_override_is_named,
          test_run_script_with_args_and_exit_status,
          test_version_and_usage,
          test_serve_refuses_broken_scripts_with_status_2])
