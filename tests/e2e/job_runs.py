"""What jobs did, seen from outside: the e2e tests' jobs append one line per event of a run
to a file shared by every instance on the machine, and this module reads it back and checks
the guarantees of SPEC §7 against it (each job ran, how many times, never two runs at once).

A line is `<kind> <job or event id> <run> <unix time> [extra…]`: kind `start`, `alive`
(written while a long run waits, every RECORD_EVERY seconds), `end`; `run` names one run:
`<instance>:<process uuid>/<attempt>`. Appends of one short line with O_APPEND are atomic,
so lines of concurrent processes never mix. Standard library only.
"""
import json
import os
import subprocess

from luar_e2e import Luar

RECORD_EVERY = 0.05

# Lua for the scripts: record(kind, id, run, …) and a run's name. E2E_RUNS is the file,
# E2E_INSTANCE the instance's name.
LUA_RECORD = r'''
local time = require "luar.time"
local crypto = require "luar.crypto"
local RUNS = os.getenv("E2E_RUNS")
local ME = os.getenv("E2E_INSTANCE") .. ":" .. crypto.uuid()

local function record(kind, id, run, ...)
  local f = assert(io.open(RUNS, "a"))
  f:write(table.concat({ kind, id, run, string.format("%.6f", time.now()), ... }, " "), "\n")
  f:close()
end

local function run_name(attempt) return ME .. "/" .. attempt end

-- A run of `seconds`, recording that it is alive while it waits.
local function busy(id, run, seconds)
  local stop = time.now() + seconds
  while time.now() < stop do
    time.sleep(math.min(EVERY, stop - time.now()))
    record("alive", id, run)
  end
end
'''.replace("EVERY", repr(RECORD_EVERY))


def read(path):
    """The file's records as lists of fields ([] when it does not exist yet)."""
    try:
        with open(path) as f:
            return [line.split() for line in f if line.strip()]
    except FileNotFoundError:
        return []


class Run:
    def __init__(self, job, name):
        self.job, self.name = job, name
        self.instance = name.split(":")[0]
        self.attempt = int(name.rsplit("/", 1)[1])
        self.start = self.end = None
        self.last = None  # the last time it showed any sign of life
        self.extra = []

    def __repr__(self):
        return "Run(%s %s start=%s last=%s end=%s)" % (self.job, self.name, self.start,
                                                       self.last, self.end)


def runs(path):
    """{job id: [Run, …] in start order}."""
    by_job = {}
    for rec in read(path):
        if rec[0] not in ("start", "alive", "end"):
            continue
        kind, job, name, at = rec[0], rec[1], rec[2], float(rec[3])
        rs = by_job.setdefault(job, {})
        r = rs.get(name) or rs.setdefault(name, Run(job, name))
        if kind == "start":
            r.start = at
            r.extra = rec[4:]
        elif kind == "end":
            r.end = at
        r.last = at if r.last is None else max(r.last, at)
    return {job: sorted(rs.values(), key=lambda r: r.start if r.start is not None else 0)
            for job, rs in by_job.items()}


def ended(path):
    """The ids with at least one finished run."""
    return {rec[1] for rec in read(path) if rec[0] == "end"}


def overlaps(by_job):
    """Pairs of runs of one job that were alive at the same time: a run lasts from its
    start to its last record (its end, or the last sign of life of a run that was killed
    or stopped)."""
    found = []
    for job, rs in by_job.items():
        for a, b in zip(rs, rs[1:]):
            if a.start is None or b.start is None or b.start <= a.last:
                found.append((job, a, b))
    return found


def start_instance(name, queue_url, runs_path, scripts, config, env=None):
    """One `luar serve` on the shared queue, named `name` in the runs it records."""
    e = {"E2E_INSTANCE": name, "E2E_RUNS": runs_path}
    e.update(env or {})
    return Luar(scripts, config=config, args=["--queue", queue_url], env=e)


def sign(secret, messages):
    """Standard Webhooks headers for each (id, timestamp, body), made by the independent
    `standardwebhooks` npm package (webhook_sign.js), as test_webhooks_ingest.py does."""
    here = os.path.dirname(os.path.abspath(__file__))
    req = {"secret": secret,
           "messages": [{"id": i, "timestamp": ts, "body": body} for i, ts, body in messages]}
    p = subprocess.run(["node", os.path.join(here, "webhook_sign.js")],
                       input=json.dumps(req).encode(), capture_output=True, cwd=here,
                       timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout)
