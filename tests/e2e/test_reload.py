"""Hot reload: SIGHUP, `luar reload`, file watching, and reload under load without a drop."""
import os
import signal
import tempfile
import threading
import time

from luar_e2e import Luar, free_port, main, run_cli, wait_until, write_files

NO_WATCH = "return { reload = { watch = false } }\n"


def version_script(v):
    return ('local http = require "luar.http"\n'
            'http.route("GET", "/v", function(req) return { json = { v = %d } } end)\n' % v)


BROKEN = ('local http = require "luar.http"\n'
          'http.route("GET", "/v", function(req) return { json = { v = "broken" } } end)\n'
          'error("deliberately broken")\n')


def reload_cmd(luar):
    return run_cli(["reload", "--data", luar.data, "--config", os.path.join(luar.dir,
                                                                            "luar.conf.lua")])


def test_reload_command_switches_version_and_reports_failure():
    with Luar({"main.lua": version_script(1)}, config=NO_WATCH) as luar:
        assert luar.get_json("/v") == {"v": 1}
        write_files(luar.scripts, {"main.lua": version_script(2)})
        rc, out, err = reload_cmd(luar)
        assert rc == 0, (rc, out, err)
        assert luar.get_json("/v") == {"v": 2}
        write_files(luar.scripts, {"main.lua": "this is not lua"})
        rc, out, err = reload_cmd(luar)
        assert rc == 1, (rc, out, err)
        assert "main.lua:1:" in err, err
        assert luar.get_json("/v") == {"v": 2}
        luar.wait_log(lambda r: r.get("level") == "error" and "reload failed" in r.get("msg", ""))
        metrics = luar.request("GET", "/metrics")[2].decode()
        assert 'luar_script_reloads_total{outcome="failure"} 1' in metrics, metrics
        assert 'luar_script_reloads_total{outcome="success"} 2' in metrics, metrics
        assert luar.stop() == 0


def test_sighup_reloads():
    with Luar({"main.lua": version_script(1)}, config=NO_WATCH) as luar:
        n = len(luar.lines)
        write_files(luar.scripts, {"main.lua": version_script(7)})
        luar.send_signal(signal.SIGHUP)
        luar.wait_log(lambda r: r.get("msg") == "scripts reloaded", start=n)
        assert luar.get_json("/v") == {"v": 7}


def test_file_change_reloads_when_watching():
    with Luar({"main.lua": version_script(1), "lib/util.lua": "return 1\n"}) as luar:
        n = len(luar.lines)
        write_files(luar.scripts, {"main.lua": version_script(3)})
        luar.wait_log(lambda r: r.get("msg") == "scripts reloaded", start=n)
        assert luar.get_json("/v") == {"v": 3}


def test_reload_under_load_50_times_drops_nothing():
    with Luar({"main.lua": version_script(0)}, config=NO_WATCH) as luar:
        stop = threading.Event()
        seen = []
        failures = []

        def client():
            c = luar.connect()
            deadline = time.monotonic() + 240
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    c.request("GET", "/v")
                    r = c.getresponse()
                    body = r.read()
                    if r.status != 200:
                        failures.append((r.status, body))
                    else:
                        seen.append(body)
                except Exception as e:  # a dropped request is exactly what must not happen
                    failures.append(repr(e))
                    c.close()
                    c = luar.connect()
            c.close()

        threads = [threading.Thread(target=client) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            for k in range(1, 51):
                if k == 25:
                    write_files(luar.scripts, {"main.lua": BROKEN})
                    rc, out, err = reload_cmd(luar)
                    assert rc == 1 and "deliberately broken" in err, (rc, out, err)
                    continue
                write_files(luar.scripts, {"main.lua": version_script(k)})
                rc, out, err = reload_cmd(luar)
                assert rc == 0, (k, rc, out, err)
                # A request that starts after the reload answered sees the new version.
                assert luar.get_json("/v") == {"v": k}, k
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        assert not failures, failures[:5]
        assert len(seen) > 50, len(seen)
        assert not any(b"broken" in b for b in seen)
        assert luar.stop() == 0


def test_reload_with_workers_waits_for_every_worker():
    port = free_port()
    with Luar({"main.lua": version_script(1)}, config=NO_WATCH, workers=2,
              listen="127.0.0.1:%d" % port, wait_listening=False) as luar:
        luar.port = port
        luar.wait_log(lambda r: luar.count_logs(lambda x: x.get("msg") == "listening") >= 2)
        for v in (2, 3):
            write_files(luar.scripts, {"main.lua": version_script(v)})
            rc, out, err = reload_cmd(luar)
            assert rc == 0, (rc, out, err)
            # `luar reload` returned only after both workers answered: every new
            # connection, whichever worker the kernel picks, sees the new version.
            for _ in range(30):
                assert luar.get_json("/v") == {"v": v}
        write_files(luar.scripts, {"main.lua": BROKEN})
        rc, out, err = reload_cmd(luar)
        assert rc == 1 and "deliberately broken" in err, (rc, out, err)
        for _ in range(10):
            assert luar.get_json("/v") == {"v": 3}


SLOW_LOAD = r'''
-- Each process that loads these scripts leaves a marker named by its pid, then takes a
-- second of CPU before its routes exist: a window in which a reload can reach it.
local stat = io.open("/proc/self/stat"):read("l")
local pid = stat:match("^(%d+)")
local f = io.open(os.getenv("MARKERS") .. "/" .. pid, "w")
f:write("loading")
f:close()
local t0 = os.clock()
while os.clock() - t0 < 1.0 do end
local http = require "luar.http"
http.route("GET", "/v", function(req) return { json = { v = 1 } } end)
'''


def test_reload_reaching_a_worker_still_loading_does_not_kill_it():
    port = free_port()
    markers = tempfile.mkdtemp(prefix="luar-markers-")
    with Luar({"main.lua": SLOW_LOAD}, config=NO_WATCH, workers=2,
              listen="127.0.0.1:%d" % port, wait_listening=False,
              env={"MARKERS": markers}) as luar:
        luar.port = port

        def loading_worker():
            for name in os.listdir(markers):
                try:
                    with open("/proc/%s/stat" % name) as f:
                        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                except OSError:
                    continue
                if ppid == luar.proc.pid:  # a worker, not the supervisor's own check
                    return int(name)
            return None

        pid = wait_until(loading_worker, "a worker loading its scripts", every=0.01)
        os.kill(pid, signal.SIGHUP)  # mid-load: before its SIGHUP handler existed
        luar.wait_log(lambda r: luar.count_logs(lambda x: x.get("msg") == "listening") >= 2)
        # The worker lived through it: no death reported, the same process still there and
        # serving; the held SIGHUP became a reload once it was ready.
        assert luar.count_logs(lambda r: "died" in r.get("msg", "")) == 0, (
            luar.lines[-10:], luar.stderr_lines[-10:])
        os.kill(pid, 0)
        luar.wait_log(lambda r: r.get("msg") == "scripts reloaded")
        assert luar.get_json("/v") == {"v": 1}


if __name__ == "__main__":
    main([test_reload_command_switches_version_and_reports_failure, test_sighup_reloads,
          test_file_change_reloads_when_watching, test_reload_under_load_50_times_drops_nothing,
          test_reload_with_workers_waits_for_every_worker,
          test_reload_reaching_a_worker_still_loading_does_not_kill_it])
