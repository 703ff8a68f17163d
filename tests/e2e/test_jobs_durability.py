"""Guarantees 1-3 on the SQLite backend: acknowledged jobs survive SIGKILL and run at least
once, never concurrently with themselves, none stuck; a cron tick fires once across two
worker processes sharing one database file."""
import json
import os
import random
import select
import shutil
import signal
import tempfile
import threading
import time

from luar_e2e import Luar, free_port, main, run_cli, wait_until

CONFIG = ('return { reload = { watch = false },\n'
          '  jobs = { lease = 1, heartbeat = 0.25, poll = 0.05, concurrency = 8 } }\n')

APP = r'''
local http = require "luar.http"
local jobs = require "luar.jobs"
local log = require "luar.log"
local time = require "luar.time"
local crypto = require "luar.crypto"

local runs = os.getenv("E2E_RUNS")
local me = os.getenv("E2E_INSTANCE") .. ":" .. crypto.uuid()

local function record(line)
  local f = assert(io.open(runs, "a"))
  f:write(line, "\n")
  f:close()
end

jobs.define("work", { retries = 25, backoff = 0.05 }, function(args, job)
  record(string.format("start %s %s %.6f", job.id, me, time.now()))
  time.sleep(math.random() * 0.05)
  record(string.format("end %s %s %.6f", job.id, me, time.now()))
  log.info("work done", { id = job.id })
end)

jobs.cron("tick", "* * * * * *", "tick_job")
jobs.define("tick_job", function(args, job)
  record(string.format("tick %d %s", math.floor(job.scheduled_at), me))
  log.info("tick ran", { at = job.scheduled_at })
end)

http.route("POST", "/work", function(req)
  local id, err = jobs.enqueue("work", { n = 1 })
  if not id then return { status = 503, json = { error = tostring(err) } } end
  return { status = 202, json = { id = id } }
end)
'''

NO_TICKS = APP.replace('jobs.cron("tick", "* * * * * *", "tick_job")', '')


def kill_all(luar):
    """SIGKILL the supervisor first (so it restarts nothing), then its workers."""
    pids = {r["pid"] for r in luar.lines if r.get("msg") == "listening"}
    luar.proc.send_signal(signal.SIGKILL)
    luar.proc.wait(30)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in pids:  # wait until each has exited: a pidfd becomes readable then
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            ready, _, _ = select.select([fd], [], [], 10)
            assert ready, "worker %d still alive 10 s after SIGKILL" % pid
        finally:
            os.close(fd)
    return time.time()


def read_runs(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line.split() for line in f if line.strip()]


def test_sigkill_under_load_loses_no_acknowledged_job():
    rng = random.Random(7)
    port = free_port()
    scripts = {"main.lua": NO_TICKS}
    base = tempfile.mkdtemp(prefix="luar-crash-")
    data_dir, runs_path = os.path.join(base, "data"), os.path.join(base, "runs.txt")
    acked = []
    acked_cond = threading.Condition()
    kills = {}
    for rnd in range(4):
        # Each round: a fresh instance (two workers) on the same database, killed mid-load.
        luar = Luar(scripts, config=CONFIG, workers=2, listen="127.0.0.1:%d" % port,
                    wait_listening=False, args=["--data", data_dir],
                    env={"E2E_INSTANCE": str(rnd), "E2E_RUNS": runs_path})
        luar.port = port
        luar.wait_log(lambda r: luar.count_logs(lambda x: x.get("msg") == "listening") >= 2)
        stop = threading.Event()

        def client():
            deadline = time.monotonic() + 20
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    status, _, body = luar.request("POST", "/work", timeout=5)
                    if status == 202:
                        with acked_cond:
                            acked.append(json.loads(body)["id"])
                            acked_cond.notify_all()
                except OSError:
                    pass  # the kill interrupts requests: only answered 202s count

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        # Kill at a random moment once some work is acknowledged in this round.
        target = len(acked) + rng.randint(20, 200)
        with acked_cond:
            acked_cond.wait_for(lambda: len(acked) >= target, timeout=20)
        kills[str(rnd)] = kill_all(luar)
        stop.set()
        for t in threads:
            t.join(30)
        luar.close()
    assert len(acked) > 100, len(acked)

    # A last instance drains everything.
    final = Luar(scripts, config=CONFIG, listen="127.0.0.1:0",
                 env={"E2E_INSTANCE": "final", "E2E_RUNS": runs_path}, args=["--data", data_dir])
    try:
        want = set(acked)

        def all_done(_):
            ended = {r[1] for r in read_runs(runs_path) if r[0] == "end"}
            return want <= ended

        if not all_done(None):
            final.wait_log(all_done, timeout=120)

        # A handler's "end" record is written before its completion is committed, and jobs
        # enqueued but not acknowledged before a kill may still run: wait for the queue to
        # settle (bounded), then every job must have succeeded.
        def settled():
            rc, out, err = run_cli(["jobs", "stats", "--json", "--data", data_dir])
            assert rc == 0, err
            stats = json.loads(out)
            unfinished = ("queued", "running", "retrying", "scheduled")
            return stats if all(stats["total"][s] == 0 for s in unfinished) else None

        stats = wait_until(settled, "every job to finish", timeout=60)
        assert stats["total"]["dead"] == 0, stats
        assert stats["total"]["succeeded"] >= len(set(acked)), stats
        assert final.stop() == 0
    finally:
        final.close()

    # Never two runs of one job at the same time: a run of a killed process ends at the kill.
    runs = {}
    for rec in read_runs(runs_path):
        if rec[0] in ("start", "end"):
            runs.setdefault(rec[1], {}).setdefault(rec[2], {})[rec[0]] = float(rec[3])
    overlaps = []
    for jid, by_runner in runs.items():
        spans = []
        for runner, se in by_runner.items():
            inst = runner.split(":")[0]
            end = se.get("end", kills.get(inst, float("inf")))
            spans.append((se.get("start", 0), end, runner))
        spans.sort()
        for a, b in zip(spans, spans[1:]):
            if b[0] < a[1]:
                overlaps.append((jid, a, b))
    assert not overlaps, overlaps[:3]
    interrupted = sum(1 for by in runs.values() for se in by.values() if "end" not in se)
    print("acknowledged %d jobs, %d runs, %d interrupted by a kill and run again" % (
        len(set(acked)), sum(len(by) for by in runs.values()), interrupted))
    shutil.rmtree(base, ignore_errors=True)


def test_cron_tick_fires_once_across_two_workers():
    port = free_port()
    base = tempfile.mkdtemp(prefix="luar-cron-")
    runs_path = os.path.join(base, "ticks.txt")
    with Luar({"main.lua": APP}, config=CONFIG, workers=2, listen="127.0.0.1:%d" % port,
              wait_listening=False, env={"E2E_INSTANCE": "c", "E2E_RUNS": runs_path}) as luar:
        luar.port = port
        luar.wait_log(lambda r: luar.count_logs(lambda x: x.get("msg") == "listening") >= 2)
        # Ten seconds of ticks, seen through the workers' own log lines.
        luar.wait_log(lambda r: luar.count_logs(lambda x: x.get("msg") == "tick ran") >= 10,
                      timeout=60)
        assert luar.stop() == 0
    ticks = [int(r[1]) for r in read_runs(runs_path) if r[0] == "tick"]
    runners = {r[2] for r in read_runs(runs_path) if r[0] == "tick"}
    assert len(ticks) >= 10, ticks
    assert len(ticks) == len(set(ticks)), sorted(ticks)  # each tick exactly once
    assert max(ticks) - min(ticks) + 1 == len(ticks), sorted(ticks)  # and none skipped
    assert len(runners) >= 1
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main([test_sigkill_under_load_loses_no_acknowledged_job,
          test_cron_tick_fires_once_across_two_workers])
