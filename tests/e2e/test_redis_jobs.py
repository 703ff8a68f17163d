"""`luar serve --queue redis://…` runs jobs enqueued with `luar enqueue`; `luar jobs
stats/list/show/retry/purge` and `luar cron list` work on Redis; Redis going away turns
/readyz into 503 and the CLI into a message naming the server, and service resumes when
it comes back. Each test starts its own redis-server (tests/e2e/redis_server.py)."""
import json
import os
import time

from luar_e2e import DEFAULT_TIMEOUT, Luar, main, run_cli
from redis_server import RedisServer

SCRIPTS = {"main.lua": """
local jobs = require "luar.jobs"
local log = require "luar.log"
jobs.define("greet", { queue = "mail" }, function(args, job)
  log.info("greeted", { who = args.who, job_id = job.id })
  return { hello = args.who }
end)
jobs.define("explode", { queue = "ops", retries = 0 }, function(args)
  error("kaboom " .. tostring(args.n))
end)
jobs.cron("nightly", "0 3 * * *", "greet", { who = "night" })
"""}


def cli(args, srv, env, expect=0):
    rc, out, err = run_cli(args + ["--scripts", srv.scripts], cwd=srv.dir, env=env)
    assert rc == expect, (args, rc, out, err)
    return out, err


def cli_json(args, srv, env):
    out, _ = cli(args + ["--json"], srv, env)
    return json.loads(out)


def wait_state(jid, state, srv, env):
    deadline = time.monotonic() + DEFAULT_TIMEOUT
    while True:
        job = cli_json(["jobs", "show", jid], srv, env)
        if job["state"] == state:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def wait_ready(srv, status, timeout=DEFAULT_TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        got, _, body = srv.request("GET", "/readyz")
        if got == status:
            return body
        assert time.monotonic() < deadline, (got, body)
        time.sleep(0.05)


def test_serve_on_redis_runs_jobs_enqueued_with_the_cli():
    with RedisServer() as redis:
        url = redis.url(prefix="e2e1:")
        env = {"LUAR_QUEUE": url}
        with Luar(scripts=SCRIPTS, args=["--queue", url]) as srv:
            assert srv.get_json("/readyz") == {"status": "ready"}
            ids = {}
            for i in range(20):
                out, _ = cli(["enqueue", "greet", "--args", json.dumps({"who": "w%d" % i})],
                             srv, env)
                ids[out.split()[0]] = "w%d" % i
            for jid, who in ids.items():
                job = wait_state(jid, "succeeded", srv, env)
                assert job["result"] == {"hello": who}, job
                assert job["queue"] == "mail" and job["attempt"] == 1, job
            greeted = srv.count_logs(lambda r: r.get("msg") == "greeted")
            assert greeted == 20, greeted
            # Everything lives in Redis: no SQLite file was made.
            assert not os.path.exists(os.path.join(srv.data, "luar.db"))
            stats = cli_json(["jobs", "stats"], srv, env)
            assert stats["queues"]["mail"]["succeeded"] == 20, stats


def test_jobs_cli_stats_list_show_retry_purge_on_redis():
    with RedisServer() as redis:
        url = redis.url(db=3, prefix="e2e2:")
        env = {"LUAR_QUEUE": url}
        with Luar(scripts=SCRIPTS, args=["--queue", url]) as srv:
            out, _ = cli(["enqueue", "explode", "--args", '{"n": 7}'], srv, env)
            jid = out.split()[0]
            job = wait_state(jid, "dead", srv, env)
            assert "kaboom 7" in job["last_error"] and job["attempt"] == 1, job
            out, _ = cli(["jobs", "show", jid], srv, env)
            assert "kaboom 7" in out and "state:            dead" in out, out
            out, _ = cli(["jobs", "list", "--state", "dead"], srv, env)
            assert jid in out and "kaboom 7" in out, out
            stats = cli_json(["jobs", "stats"], srv, env)
            assert stats["queues"]["ops"]["dead"] == 1, stats
            out, _ = cli(["jobs", "retry", "--dead", "--queue", "ops"], srv, env)
            assert out == "retried 1 job\n", out
            job = wait_state(jid, "dead", srv, env)
            assert job["attempt"] == 1, job
            out, _ = cli(["jobs", "retry", jid], srv, env)
            assert out == "retried %s\n" % jid, out
            wait_state(jid, "dead", srv, env)
            out, _ = cli(["jobs", "purge", "--state", "dead"], srv, env)
            assert out == "purged 1 job\n", out
            out, err = cli(["jobs", "show", jid], srv, env, expect=1)
            assert "no job %s" % jid in err, err
            # Another database of the same server holds none of it.
            other = {"LUAR_QUEUE": redis.url(db=4, prefix="e2e2:")}
            assert cli_json(["jobs", "stats"], srv, other)["queues"] == {}


def test_cron_list_with_a_redis_queue():
    with RedisServer() as redis:
        with Luar(scripts=SCRIPTS, args=["--queue", redis.url(prefix="e2e3:")]) as srv:
            out, _ = cli(["cron", "list"], srv, {"LUAR_QUEUE": redis.url(prefix="e2e3:")})
            assert "nightly" in out and "0 3 * * *" in out, out


def test_redis_down_is_503_and_service_resumes():
    with RedisServer() as redis:
        url = redis.url(prefix="e2e4:")
        env = {"LUAR_QUEUE": url}
        with Luar(scripts=SCRIPTS, args=["--queue", url]) as srv:
            wait_ready(srv, 200)
            redis.kill()
            body = json.loads(wait_ready(srv, 503))
            # The reason, not only that there is one (luar_queue_last_error).
            assert body["error"].startswith("the queue backend does not answer: redis "
                                            "127.0.0.1:%d: " % redis.port), body
            out, err = cli(["jobs", "stats"], srv, env, expect=1)
            assert "redis 127.0.0.1:%d: " % redis.port in err, err
            out, err = cli(["enqueue", "greet"], srv, env, expect=1)
            assert "redis 127.0.0.1:%d: " % redis.port in err, err
            redis.start()  # same port; this one kept no data
            wait_ready(srv, 200, timeout=30)
            out, _ = cli(["enqueue", "greet", "--args", '{"who": "back"}'], srv, env)
            job = wait_state(out.split()[0], "succeeded", srv, env)
            assert job["result"] == {"hello": "back"}, job


def test_a_redis_without_functions_is_named():
    """The queue is a Redis function library: a server older than 7.0 (here a 7.0 with the
    FUNCTION command renamed away, which answers as one would) is refused with the command
    and the version it needs, in /readyz and in the CLI."""
    with RedisServer(extra=["--rename-command", "FUNCTION", ""]) as redis:
        url = redis.url(prefix="e2e5:")
        with Luar(scripts=SCRIPTS, args=["--queue", url]) as srv:
            body = json.loads(wait_ready(srv, 503))
            assert "FUNCTION LOAD failed: ERR unknown command" in body["error"], body
            assert "older than Redis 7.0" in body["error"], body
            _, err = cli(["jobs", "stats"], srv, {"LUAR_QUEUE": url}, expect=1)
            assert "FUNCTION LOAD failed" in err and "older than Redis 7.0" in err, err


if __name__ == "__main__":
    main([
        test_serve_on_redis_runs_jobs_enqueued_with_the_cli,
        test_jobs_cli_stats_list_show_retry_purge_on_redis,
        test_cron_list_with_a_redis_queue,
        test_redis_down_is_503_and_service_resumes,
        test_a_redis_without_functions_is_named,
    ])
