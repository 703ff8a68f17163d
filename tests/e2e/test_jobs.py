"""Durable jobs, retries, dead-letter, timeouts, retry_in, uniqueness, events, queue limits,
rate limits, reload and graceful shutdown, against the real binary and its SQLite queue."""
import json
import os
import signal
import threading
import time

from luar_e2e import Luar, main, run_cli, write_files

CONFIG = ('return { reload = { watch = false }, shutdown = { grace = 1 },\n'
          '  jobs = { lease = 2, heartbeat = 0.5, poll = 0.1, queues = { solo = 1 } } }\n')

APP = r'''
local http = require "luar.http"
local jobs = require "luar.jobs"
local events = require "luar.events"
local log = require "luar.log"
local time = require "luar.time"
local json = require "luar.json"

jobs.define("double", function(args, job)
  log.info("double ran", { n = args.n, attempt = job.attempt, scheduled_at = job.scheduled_at })
  return { doubled = args.n * 2 }
end)
jobs.define("flaky", { retries = 2, backoff = 0.05 }, function(args, job)
  log.info("flaky ran", { attempt = job.attempt })
  error("flaky failure " .. job.attempt)
end)
jobs.define("slow", { retries = 0, timeout = 0.3 }, function(args, job)
  log.info("slow started")
  time.sleep(30)
end)
jobs.define("spin", { retries = 0, timeout = 0.3 }, function(args, job)
  log.info("spin started")
  while true do end
end)
jobs.define("later", { retries = 0 }, function(args, job)
  log.info("later ran", { attempt = job.attempt })
  if job.attempt == 1 and not args.done then
    -- retry_in does not count as a failure: the attempt number stays 1.
    return jobs.retry_in(0.2)
  end
  return "ok"
end)
jobs.define("uniq", { unique_for = 60 }, function(args) time.sleep(0.2) end)
jobs.define("one_at_a_time", { queue = "solo" }, function(args)
  log.info("solo start", { i = args.i })
  time.sleep(0.05)
  log.info("solo end", { i = args.i })
end)
jobs.define("limited", { rate = "2/s" }, function(args) log.info("limited ran", { i = args.i }) end)
jobs.define("long", function(args)
  log.info("long started", { i = args.i })
  time.sleep(args.s)
  log.info("long finished", { i = args.i })
end)
events.subscribe("order.*", "mailer", function(payload, meta)
  log.info("mailer got", { id = payload.id, topic = meta.topic })
end)
events.subscribe("order.#", "ledger", { retries = 1, backoff = 0.05 }, function(payload, meta)
  log.info("ledger got", { id = payload.id, attempt = meta.attempt })
  if meta.attempt == 1 then error("ledger down") end
end)

http.route("POST", "/enqueue/:name", function(req)
  local body = req:json() or {}
  local id, err = jobs.enqueue(req.params.name, body.args, body.opts)
  if not id then return { status = 503, json = { error = tostring(err) } } end
  return { status = 202, json = { id = id } }
end)
http.route("GET", "/jobs/:id", function(req)
  local j, err = jobs.get(req.params.id)
  if not j then return { status = 404, json = { error = err.kind } } end
  return { json = j }
end)
http.route("POST", "/publish/:topic", function(req)
  local n, err = events.publish(req.params.topic, req:json())
  return { json = { subscribers = n } }
end)
'''


def enqueue(luar, name, args=None, opts=None):
    doc = {k: v for k, v in (("args", args), ("opts", opts)) if v is not None}
    status, _, body = luar.request("POST", "/enqueue/" + name, body=json.dumps(doc).encode())
    assert status == 202, (status, body)
    return json.loads(body)["id"]


def job(luar, jid):
    return luar.get_json("/jobs/" + jid)


def test_job_runs_with_result_and_args():
    with Luar({"main.lua": APP}, config=CONFIG) as luar:
        jid = enqueue(luar, "double", {"n": 21})
        luar.wait_log(lambda r: r.get("msg") == "double ran" and r.get("job_id") == jid)
        # The result is written right after the run; ask until the write is visible.
        for _ in range(100):
            j = job(luar, jid)
            if j["state"] == "succeeded":
                break
        assert j["state"] == "succeeded" and j["result"] == {"doubled": 42}, j
        assert j["attempts"] == 1 and j["args"] == {"n": 21}
        metrics = luar.request("GET", "/metrics")[2].decode()
        assert ('luar_jobs_total{queue="default",job="double",outcome="succeeded"} 1'
                in metrics), metrics
        assert 'luar_queue_jobs{queue="default",state="succeeded"} 1' in metrics
        assert 'luar_job_duration_seconds_count{queue="default",job="double"} 1' in metrics
        status, _, body = luar.request("GET", "/jobs/nope")
        assert status == 404 and json.loads(body)["error"] == "not_found"


def test_concurrency_zero_on_sqlite_is_a_warning_at_start():
    # jobs.concurrency = 0 on the embedded SQLite queue: only another process on the same
    # database file would run the jobs, so the start says so as a warning (with Redis, an
    # info line: test_redis_cluster.py, where the ingest node is shown to run nothing).
    config = CONFIG.replace("queues = { solo = 1 }", "concurrency = 0")
    with Luar({"main.lua": APP}, config=config) as luar:
        rec = luar.wait_log(lambda r: "jobs.concurrency = 0" in r.get("msg", ""))
        assert rec.get("level") == "warn", rec


def test_retries_then_dead_letter_with_error_and_traceback():
    with Luar({"main.lua": APP}, config=CONFIG) as luar:
        jid = enqueue(luar, "flaky")
        rec = luar.wait_log(lambda r: r.get("msg") == "job failed, now dead" and
                            r.get("job_id") == jid)
        attempts = [r["attempt"] for r in luar.lines if r.get("msg") == "flaky ran"]
        assert attempts == [1, 2, 3], attempts  # retries = 2: three attempts in all
        assert "flaky failure 3" in rec["error"] and "stack traceback" in rec["traceback"]
        for _ in range(100):
            j = job(luar, jid)
            if j["state"] == "dead":
                break
        assert j["state"] == "dead" and "flaky failure 3" in j["last_error"], j
        assert "stack traceback" in j["traceback"]
        # Retried from the CLI, it runs again (and dies again).
        rc, out, err = run_cli(["jobs", "retry", jid, "--data", luar.data])
        assert rc == 0, (rc, out, err)
        luar.wait_log(lambda r: r.get("msg") == "flaky ran" and r.get("job_id") == jid and
                      r["attempt"] == 1, start=luar.lines.index(rec) + 1)


def test_timeouts_stop_waiting_and_spinning_jobs():
    with Luar({"main.lua": APP}, config=CONFIG) as luar:
        for name in ("slow", "spin"):
            jid = enqueue(luar, name)
            rec = luar.wait_log(lambda r: r.get("msg") == "job failed, now dead" and
                                r.get("job_id") == jid)
            assert "timed out after 0.3 s" in rec["error"], rec
        assert luar.get_json("/healthz")["status"] == "ok"


def test_retry_in_puts_the_job_back_without_counting_a_failure():
    with Luar({"main.lua": APP}, config=CONFIG) as luar:
        jid = enqueue(luar, "later")
        luar.wait_log(lambda r: r.get("msg") == "later ran" and r.get("job_id") == jid and
                      luar.count_logs(lambda x: x.get("msg") == "later ran") >= 2)
        runs = [r["attempt"] for r in luar.lines if r.get("msg") == "later ran"]
        assert runs[:2] == [1, 1], runs  # same attempt number: no failure counted
        assert not any(r.get("msg", "").startswith("job failed") for r in luar.lines)


def test_key_and_unique_for_return_the_first_job():
    with Luar({"main.lua": APP}, config=CONFIG) as luar:
        a = enqueue(luar, "double", {"n": 1}, {"key": "k1", "delay": 60})
        b = enqueue(luar, "double", {"n": 2}, {"key": "k1"})
        assert a == b
        u1 = enqueue(luar, "uniq", {"x": 1})
        u2 = enqueue(luar, "uniq", {"x": 1})
        u3 = enqueue(luar, "uniq", {"x": 2})
        assert u1 == u2 and u3 != u1
        assert job(luar, a)["state"] == "scheduled"


def test_events_one_job_per_subscriber_each_retried_alone():
    with Luar({"main.lua": APP}, config=CONFIG) as luar:
        status, _, body = luar.request("POST", "/publish/order.paid", body=b'{"id": 7}')
        assert json.loads(body) == {"subscribers": 2}
        luar.wait_log(lambda r: r.get("msg") == "ledger got" and r.get("attempt") == 2)
        assert luar.count_logs(lambda r: r.get("msg") == "mailer got" and r["id"] == 7) == 1
        status, _, body = luar.request("POST", "/publish/order.paid.eu", body=b'{"id": 8}')
        assert json.loads(body) == {"subscribers": 1}  # only order.# matches three words
        status, _, body = luar.request("POST", "/publish/invoice.paid", body=b'{"id": 9}')
        assert json.loads(body) == {"subscribers": 0}


def test_queue_concurrency_limit_and_rate_limit():
    with Luar({"main.lua": APP}, config=CONFIG) as luar:
        for i in range(6):
            enqueue(luar, "one_at_a_time", {"i": i})
        luar.wait_log(lambda r: luar.count_logs(lambda x: x.get("msg") == "solo end") >= 6)
        running = 0
        for r in luar.lines:  # never two in the "solo" queue (limit 1) at once
            if r.get("msg") == "solo start":
                running += 1
                assert running == 1, "two solo jobs overlapped"
            elif r.get("msg") == "solo end":
                running -= 1
        t0 = time.monotonic()
        for i in range(5):
            enqueue(luar, "limited", {"i": i})
        luar.wait_log(lambda r: luar.count_logs(lambda x: x.get("msg") == "limited ran") >= 5)
        # 2/s with a burst of 2: the fifth run cannot come before 1.5 s of refill.
        assert time.monotonic() - t0 >= 1.4


def test_reload_lets_running_jobs_finish_on_old_scripts():
    with Luar({"main.lua": APP}, config=CONFIG) as luar:
        jid = enqueue(luar, "long", {"i": 1, "s": 1.0})
        luar.wait_log(lambda r: r.get("msg") == "long started" and r.get("job_id") == jid)
        new_app = APP.replace('log.info("long finished"', 'log.info("long finished v2"')
        write_files(luar.scripts, {"main.lua": new_app})
        rc, out, err = run_cli(["reload", "--data", luar.data])
        assert rc == 0, (rc, out, err)
        jid2 = enqueue(luar, "long", {"i": 2, "s": 0.01})
        luar.wait_log(lambda r: r.get("msg") == "long finished" and r.get("job_id") == jid)
        luar.wait_log(lambda r: r.get("msg") == "long finished v2" and r.get("job_id") == jid2)


def test_sigterm_returns_unfinished_jobs_which_run_after_restart():
    with Luar({"main.lua": APP}, config=CONFIG) as luar:
        jid = enqueue(luar, "long", {"i": 3, "s": 60})
        luar.wait_log(lambda r: r.get("msg") == "long started" and r.get("job_id") == jid)
        assert luar.stop() == 0  # grace 1 s: the job is cancelled and released
        rc, out, err = run_cli(["jobs", "show", jid, "--json", "--data", luar.data])
        assert rc == 0, err
        doc = json.loads(out)
        doc = doc.get("job", doc)
        assert doc["state"] in ("queued", "scheduled"), doc
        assert doc["attempt"] == 0, doc  # the interrupted attempt is not counted


CATCH_UP = r'''
local http = require "luar.http"
local jobs = require "luar.jobs"
local log = require "luar.log"
jobs.define("hourly", function(args, job) log.info("hourly ran", { at = job.scheduled_at }) end)
jobs.define("marker", function() end)
jobs.every("hourly-report", 3600, "hourly", {}, { catch_up = true })
jobs.cron("nightly", "0 3 * * *", "hourly", {}, { tz = "Europe/London" })
http.route("POST", "/marker", function(req)
  return { status = 202, json = { id = jobs.enqueue("marker") } }
end)
'''


def test_catch_up_fires_the_missed_tick_once_and_cron_list_shows_schedules():
    with Luar({"main.lua": CATCH_UP}, config=CONFIG) as luar:
        rec = luar.wait_log(lambda r: r.get("msg") == "hourly ran")
        now = time.time()
        assert rec["at"] == (now // 3600) * 3600 or rec["at"] == (now // 3600 - 1) * 3600, rec
        assert luar.stop() == 0
        data = luar.data
        rc, out, err = run_cli(["cron", "list", "--scripts", luar.scripts])
        assert rc == 0, err
        assert "hourly-report" in out and "every 3600s" in out, out
        assert "nightly" in out and "0 3 * * *" in out and "Europe/London" in out, out
        assert "T03:00:00+00:00" in out or "T03:00:00+01:00" in out, out
    # A second start on the same data: the tick's dedupe key is there, nothing fires again.
    with Luar({"main.lua": CATCH_UP}, config=CONFIG, args=["--data", data]) as luar2:
        # The scheduler's first look runs before any request and its enqueue goes through the
        # same writer as the marker's, so once the marker is committed the tick was decided.
        assert luar2.request("POST", "/marker")[0] == 202
        rc, out, err = run_cli(["jobs", "list", "--json", "--data", data])
        assert rc == 0, err
        doc = json.loads(out)
        names = [j["name"] for j in doc["jobs"]]
        assert names.count("hourly") == 1, names


if __name__ == "__main__":
    main([test_job_runs_with_result_and_args,
          test_concurrency_zero_on_sqlite_is_a_warning_at_start,
          test_retries_then_dead_letter_with_error_and_traceback,
          test_timeouts_stop_waiting_and_spinning_jobs,
          test_retry_in_puts_the_job_back_without_counting_a_failure,
          test_key_and_unique_for_return_the_first_job,
          test_events_one_job_per_subscriber_each_retried_alone,
          test_queue_concurrency_limit_and_rate_limit,
          test_reload_lets_running_jobs_finish_on_old_scripts,
          test_sigterm_returns_unfinished_jobs_which_run_after_restart,
          test_catch_up_fires_the_missed_tick_once_and_cron_list_shows_schedules])
