"""SPEC §7 across instances: three `luar serve` processes share one redis-server (started by
the test on a free port): 10,000 jobs enqueued through all three run exactly once; an
instance killed with SIGKILL has its jobs run again by the others after the lease, never
two runs of a job at once; a per-second cron fires once per tick; a rate limit of N per
minute allows exactly N across the three; one webhook or one unique key sent to the three
at once is stored once. Jobs record their runs in a shared file (job_runs.py), which is
what the assertions read."""
import base64
import contextlib
import http.client
import json
import os
import select
import shutil
import signal
import tempfile
import threading
import time

import job_runs
from luar_e2e import main, run_cli, wait_until
from redis_server import RedisServer

APP = job_runs.LUA_RECORD + r'''
local http = require "luar.http"
local jobs = require "luar.jobs"
local ratelimit = require "luar.ratelimit"
local webhooks = require "luar.webhooks"

-- A job records its start and end; `ms` makes it last that long, alive all along.
jobs.define("work", { retries = 25, backoff = 0.05 }, function(args, job)
  local run = run_name(job.attempt)
  record("start", job.id, run)
  if (args.ms or 0) > 0 then busy(job.id, run, args.ms / 1000) else time.sleep(0.001) end
  record("end", job.id, run)
end)

-- POST /enqueue?n=N&ms=M: N jobs, one after the other; answers their ids.
http.route("POST", "/enqueue", function(req)
  local ids = {}
  for i = 1, tonumber(req.query.n) do
    local id, err = jobs.enqueue("work", { ms = tonumber(req.query.ms or "0") })
    if not id then return { status = 503, json = { error = tostring(err) } } end
    ids[i] = id
  end
  return { status = 200, json = { ids = ids } }
end)

-- POST /unique?key=K: a job due in an hour under unique key K; answers its id.
http.route("POST", "/unique", function(req)
  local id, err = jobs.enqueue("work", {}, { key = req.query.key, delay = 3600 })
  if not id then return { status = 503, json = { error = tostring(err) } } end
  return { status = 200, json = { id = id } }
end)

webhooks.route("/hooks/in", { scheme = "standard", secret = os.getenv("WH_SECRET") })
webhooks.on("/hooks/in", "#", function(event, meta)
  record("end", meta.id, run_name(meta.attempt), meta.job_id)
end)

if os.getenv("E2E_CRON") == "1" then
  jobs.cron("tick", "* * * * * *", "tick_job")
  jobs.define("tick_job", function(args, job)
    record("end", "tick:" .. string.format("%d", job.scheduled_at), run_name(job.attempt))
  end)
end

-- A route limited to 12 a minute across every instance, and the same with luar.ratelimit.
http.route("GET", "/limited", function() return { status = 200, json = { ok = true } } end,
           { rate = { limit = "12/m", key = "header:X-Tenant" } })
http.route("GET", "/checked", function(req)
  local ok, retry_after = ratelimit.check("e2e:" .. req.query.k, "12/m")
  if not ok then return { status = 429, json = { retry_after = retry_after } } end
  return { status = 200, json = { ok = true } }
end)
'''

# No process dies in the first test: a lease long enough that a loaded machine never loses
# one, so any second run would be a double run.
CONFIG_STEADY = ('return { reload = { watch = false },\n'
                 '  jobs = { lease = 30, heartbeat = 5, poll = 0.05, concurrency = 32 } }\n')
# The kill test: a short lease, so the killed instance's jobs come back quickly.
CONFIG_SHORT = ('return { reload = { watch = false },\n'
                '  jobs = { lease = 1, heartbeat = 0.25, poll = 0.05, concurrency = 4 } }\n')


SECRET = "whsec_" + base64.b64encode(b"luar-e2e-redis-cluster-secret-1").decode()


@contextlib.contextmanager
def cluster(n, config, extra_env=None, aof=False):
    """A redis-server and n instances on it; yields (redis, url, runs path, [Luar])."""
    base = tempfile.mkdtemp(prefix="luar-cluster-")
    runs_path = os.path.join(base, "runs.txt")
    with RedisServer(aof=aof) as redis, contextlib.ExitStack() as stack:
        url = redis.url(prefix="cl:")
        env = dict(extra_env or {}, WH_SECRET=SECRET)
        nodes = [stack.enter_context(job_runs.start_instance(
            "abc"[i], url, runs_path, {"main.lua": APP}, config, env))
            for i in range(n)]
        yield redis, url, runs_path, nodes
    shutil.rmtree(base, ignore_errors=True)


def stats(url):
    rc, out, err = run_cli(["jobs", "stats", "--json"], env={"LUAR_QUEUE": url})
    assert rc == 0, err
    return json.loads(out)["total"]


def enqueue_through(nodes, total, per_request, ms=0, threads_per_node=2):
    """POSTs /enqueue to every node in turn (keep-alive connections, a few threads each)
    until `total` jobs are acknowledged; returns their ids."""
    todo = list(range(total // per_request))
    lock = threading.Lock()
    ids, errors = [], []

    def client(node):
        c = http.client.HTTPConnection("127.0.0.1", node.port, timeout=30)
        try:
            while True:
                with lock:
                    if not todo or errors:
                        return
                    todo.pop()
                c.request("POST", "/enqueue?n=%d&ms=%d" % (per_request, ms), body=b"")
                r = c.getresponse()
                body = r.read()
                with lock:
                    if r.status != 200:
                        errors.append((r.status, body))
                    else:
                        ids.extend(json.loads(body)["ids"])
        finally:
            c.close()

    threads = [threading.Thread(target=client, args=(node,))
               for node in nodes for _ in range(threads_per_node)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    assert len(ids) == total, len(ids)
    return ids


def test_ten_thousand_jobs_through_three_instances_run_exactly_once():
    with cluster(3, CONFIG_STEADY) as (redis, url, runs_path, nodes):
        t0 = time.monotonic()
        ids = enqueue_through(nodes, 10000, 100)
        t_enqueued = time.monotonic() - t0
        assert len(set(ids)) == 10000
        want = set(ids)
        wait_until(lambda: want <= job_runs.ended(runs_path), "10,000 jobs to end",
                   timeout=180, every=0.25)
        t_done = time.monotonic() - t0
        # Each job ran once: one start and one end, in one run; no job ran that nobody
        # enqueued; every instance took its share.
        by_job = job_runs.runs(runs_path)
        assert set(by_job) == want, len(set(by_job) ^ want)
        twice = {j: rs for j, rs in by_job.items() if len(rs) != 1}
        assert not twice, list(twice.items())[:3]
        unfinished = [rs[0] for rs in by_job.values() if rs[0].end is None]
        assert not unfinished, unfinished[:3]
        starts = sum(1 for rec in job_runs.read(runs_path) if rec[0] == "start")
        assert starts == 10000, starts
        per_instance = {}
        for rs in by_job.values():
            per_instance[rs[0].instance] = per_instance.get(rs[0].instance, 0) + 1
        assert set(per_instance) == {"a", "b", "c"}, per_instance
        # The backend agrees: 10,000 succeeded, nothing left anywhere else.
        t = stats(url)
        assert t["succeeded"] == 10000, t
        for state in ("queued", "scheduled", "running", "retrying", "dead"):
            assert t[state] == 0, (state, t)
        assert redis.command("ZCARD", "cl:leases") == 0
        print("  enqueued in %.1f s, all run in %.1f s; runs per instance %s" % (
            t_enqueued, t_done, per_instance))


def sigkill(luar):
    """SIGKILLs the instance (one process: workers = 1) and waits until it is gone."""
    pid = luar.proc.pid
    fd = os.pidfd_open(pid)
    try:
        luar.proc.send_signal(signal.SIGKILL)
        assert select.select([fd], [], [], 10)[0], "instance survived SIGKILL"
    finally:
        os.close(fd)
    luar.proc.wait(10)
    return time.time()


def test_sigkilled_instance_jobs_rerun_after_the_lease_never_concurrently():
    lease, heartbeat = 1.0, 0.25
    with cluster(3, CONFIG_SHORT) as (redis, url, runs_path, nodes):
        a, b, c = nodes
        # 4 slots each, 48 jobs of 600-1000 ms: every slot stays busy for seconds.
        ids = []
        for node, ms in zip(nodes, (600, 800, 1000)):
            ids += enqueue_through([node], 16, 16, ms=ms, threads_per_node=1)
        want = set(ids)

        def b_busy():
            return [rs[-1] for rs in job_runs.runs(runs_path).values()
                    if rs[-1].instance == "b" and rs[-1].end is None]

        # Kill b while it runs 4 jobs that have been alive a while (their leases renewed by
        # a heartbeat at least once).
        wait_until(lambda: len([r for r in b_busy() if r.last - r.start > 0.3]) >= 4,
                   "b running 4 jobs", every=0.02)
        sigkill(b)
        cut = {r.job: r for r in b_busy()}
        assert len(cut) >= 4, cut
        # What Redis holds for them now: running, owned by b, leased until L.
        held = {}
        for job in cut:
            state, owner, until = redis.command("HMGET", "cl:job:" + job, "state", "owner",
                                                "lease_expires_at")
            if state == "2":
                held[job] = (owner, float(until))
        assert len(held) >= 4, held
        # Each becomes claimable by the others once its lease has ended, at most one
        # heartbeat later (SPEC §8; the sweep runs every heartbeat in every process), plus
        # this poll's period and slack for a loaded machine (2 s).
        freed = {}

        def all_freed():
            for job, (owner, _) in held.items():
                if job not in freed:
                    state, now_owner = redis.command("HMGET", "cl:job:" + job, "state", "owner")
                    if state != "2" or now_owner != owner:
                        freed[job] = time.time()
            return len(freed) == len(held)

        wait_until(all_freed, "b's jobs to be reclaimed", every=0.02)
        for job, (_, until) in held.items():
            # Seen freed after the moment it was freed: never before the lease ended.
            assert until <= freed[job] <= until + heartbeat + 2.0, (job, until, freed[job])
        wait_until(lambda: want <= job_runs.ended(runs_path), "every job to end", timeout=60)
        by_job = job_runs.runs(runs_path)

        # b's runs cut short by the kill were run again by a or c, never before b's lease
        # had ended, and finished there.
        for job, killed in cut.items():
            rs = by_job[job]
            after = [r for r in rs if r.start > killed.start]
            assert after and after[0].instance in ("a", "c"), rs
            assert after[0].attempt == killed.attempt + 1, rs
            if job in held:
                assert after[0].start >= held[job][1], (held[job], after[0])
            assert any(r.end for r in after), rs
        # Never two runs of one job at the same time; every job finished.
        found = job_runs.overlaps(by_job)
        assert not found, found[:3]
        assert set(by_job) == want
        # Only b's runs are ever run again (b may also have finished a job whose completion
        # it had no time to write: it then runs again, at least once), and every job ended
        # in a live instance at most once.
        for job, rs in by_job.items():
            assert any(r.end for r in rs), rs
            assert len([r for r in rs if r.end and r.instance != "b"]) <= 1, rs
            if len(rs) > 1:
                assert rs[0].instance == "b" and len(rs) == 2, rs
        t = stats(url)
        assert t["succeeded"] == 48, t
        for state in ("queued", "running", "retrying", "dead"):
            assert t[state] == 0, (state, t)
        print("  %d of b's runs cut by the kill; freed %.2f-%.2f s after their lease, "
              "all run again by a or c" % (
                  len(cut), min(freed[j] - held[j][1] for j in held),
                  max(freed[j] - held[j][1] for j in held)))


def test_cron_every_second_fires_once_per_tick_across_three_instances():
    with cluster(3, CONFIG_SHORT, extra_env={"E2E_CRON": "1"}) as (_, url, runs_path, nodes):
        started = time.time()  # every instance is up and its scheduler running

        def ticks():
            return [(int(rec[1].split(":")[1]), rec[2]) for rec in job_runs.read(runs_path)
                    if rec[1].startswith("tick:")]

        # Ten seconds of ticks with all three running (and the first partial second aside).
        first = int(started) + 1
        wait_until(lambda: {t for t, _ in ticks()} >= set(range(first, first + 10)),
                   "ten ticks", timeout=60, every=0.2)
        for n in nodes:
            assert n.stop() == 0
        got = sorted(ticks())
        window = [t for t, _ in got if first <= t < first + 10]
        assert window == list(range(first, first + 10)), got  # each tick once, none missed
        # And over everything the three fired: no tick twice.
        all_ticks = [t for t, _ in got]
        assert len(all_ticks) == len(set(all_ticks)), all_ticks
        runners = {name.split(":")[0] for _, name in got}
        print("  ticks %d..%d fired once each; ran on %s" % (first, first + 9,
                                                             "".join(sorted(runners))))


def test_rate_limit_is_exact_across_three_instances():
    with cluster(3, CONFIG_SHORT) as (_, url, runs_path, nodes):
        # 12/m: a burst of 12, then one every 5 s. 48 requests over the three instances
        # in well under 5 s must give exactly 12 for the route guard and 12 for the check.
        results = {"/limited": [], "/checked?k=t1": []}
        lock = threading.Lock()

        def client(node, path):
            for _ in range(4):
                status, headers, _ = node.request("GET", path, headers={"X-Tenant": "t1"})
                with lock:
                    results[path].append((status, headers.get("retry-after")))

        t0 = time.monotonic()
        threads = [threading.Thread(target=client, args=(node, path))
                   for path in results for node in nodes for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        elapsed = time.monotonic() - t0
        assert elapsed < 5, "the burst took %.1f s, longer than one refill (5 s)" % elapsed
        for path, got in results.items():
            assert len(got) == 48, (path, len(got))
            allowed = [s for s, _ in got if s == 200]
            refused = [(s, ra) for s, ra in got if s != 200]
            assert len(allowed) == 12, (path, sorted(got))
            assert all(s == 429 for s, _ in refused), (path, refused)
            if path == "/limited":
                assert all(ra is not None and int(ra) >= 1 for _, ra in refused), refused
        print("  12 of 48 allowed on each limit, in %.2f s" % elapsed)


def at_once(nodes, fn):
    """Calls fn(node) on every node from its own thread, released together; the answers."""
    barrier = threading.Barrier(len(nodes))
    out = [None] * len(nodes)

    def one(k):
        barrier.wait(10)
        out[k] = fn(nodes[k])

    threads = [threading.Thread(target=one, args=(k,)) for k in range(len(nodes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out


def test_one_delivery_or_key_sent_to_three_instances_at_once_is_stored_once():
    with cluster(3, CONFIG_SHORT) as (_, url, runs_path, nodes):
        # The same webhook delivered to the three instances at the same moment, 40 times:
        # one is stored (its handler runs once), the others are duplicates.
        now = int(time.time())
        events = [("dup_%d" % i, json.dumps({"type": "order.paid", "data": {"n": i}}))
                  for i in range(40)]
        signed = job_runs.sign(SECRET, [(i, now, b) for i, b in events])
        for (id_, body), headers in zip(events, signed):
            h = dict(headers, **{"Content-Type": "application/json"})
            answers = at_once(nodes, lambda n: n.request("POST", "/hooks/in", body=body.encode(),
                                                         headers=h))
            assert [a[0] for a in answers] == [200] * 3, answers
            fresh = [json.loads(a[2]) for a in answers if not json.loads(a[2]).get("duplicate")]
            assert len(fresh) == 1 and fresh[0]["jobs"] == 1, answers
        want = {i for i, _ in events}
        wait_until(lambda: want <= job_runs.ended(runs_path), "the 40 handlers")
        handled = [rec[1] for rec in job_runs.read(runs_path) if rec[1] in want]
        assert sorted(handled) == sorted(want), sorted(handled)
        # The same unique key enqueued on the three at once: one job, the same id for all.
        for k in range(20):
            answers = at_once(nodes, lambda n: n.request("POST", "/unique?key=u%d" % k))
            ids = {json.loads(a[2])["id"] for a in answers if a[0] == 200}
            assert [a[0] for a in answers] == [200] * 3 and len(ids) == 1, answers
        assert stats(url)["scheduled"] == 20


# An ingest node: it answers webhooks and enqueues, and runs no job (jobs.concurrency = 0).
CONFIG_INGEST = ('return { reload = { watch = false },\n'
                 '  jobs = { lease = 30, heartbeat = 5, poll = 0.05, concurrency = 0 } }\n')


def test_ingest_node_runs_no_jobs_and_a_worker_node_runs_all_it_enqueued():
    base = tempfile.mkdtemp(prefix="luar-ingest-")
    runs_path = os.path.join(base, "runs.txt")
    env = {"WH_SECRET": SECRET}
    with RedisServer() as redis, contextlib.ExitStack() as stack:
        url = redis.url(prefix="in:")
        ingest = stack.enter_context(job_runs.start_instance(
            "i", url, runs_path, {"main.lua": APP}, CONFIG_INGEST, env))
        rec = ingest.wait_log(lambda r: "jobs.concurrency = 0" in r.get("msg", ""))
        assert rec.get("level") == "info", rec  # a shared queue: said, not warned
        # 20 webhooks and 20 jobs through the ingest node, with no other node running: its
        # own enqueues would wake its runner at once, so a job it ran would show up below.
        now = int(time.time())
        events = [("in_%d" % i, json.dumps({"type": "order.paid", "data": {"n": i}}))
                  for i in range(20)]
        signed = job_runs.sign(SECRET, [(i, now, b) for i, b in events])
        for (id_, body), headers in zip(events, signed):
            status, _, answer = ingest.request(
                "POST", "/hooks/in", body=body.encode(),
                headers=dict(headers, **{"Content-Type": "application/json"}))
            assert status == 200 and json.loads(answer)["jobs"] == 1, (status, answer)
        ids = enqueue_through([ingest], 20, 10)
        assert stats(url)["queued"] == 40
        # A worker node on the same queue runs all 40, each once; the ingest node none.
        stack.enter_context(job_runs.start_instance(
            "w", url, runs_path, {"main.lua": APP}, CONFIG_STEADY, env))
        want = set(ids) | {i for i, _ in events}
        wait_until(lambda: want <= job_runs.ended(runs_path), "the worker node to run all 40")
        by_job = job_runs.runs(runs_path)
        assert set(by_job) == want, set(by_job) ^ want
        where = {rs[0].instance for rs in by_job.values()}
        assert where == {"w"}, where
        assert all(len(rs) == 1 for rs in by_job.values())
        assert stats(url)["succeeded"] == 40
        status, _, metrics = ingest.request("GET", "/metrics")
        assert status == 200 and b"luar_jobs_total{" not in metrics, metrics[:2000]
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main([test_ten_thousand_jobs_through_three_instances_run_exactly_once,
          test_sigkilled_instance_jobs_rerun_after_the_lease_never_concurrently,
          test_cron_every_second_fires_once_per_tick_across_three_instances,
          test_rate_limit_is_exact_across_three_instances,
          test_one_delivery_or_key_sent_to_three_instances_at_once_is_stored_once,
          test_ingest_node_runs_no_jobs_and_a_worker_node_runs_all_it_enqueued])
