"""`luar jobs …` and `luar enqueue` against the real binary, no server running: each test
works in a fresh directory, so the queue is the default sqlite:./luar-data/luar.db unless
the test points --data or luar.conf.lua elsewhere. Dead and succeeded jobs need the job
runner; the unit test tests/unit/test_jobs_cmd.c prepares those through queue.h."""
import atexit
import json
import os
import re
import shutil
import tempfile
import time

from luar_e2e import DEFAULT_TIMEOUT, Luar, main, run_cli, write_files

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z")


def tmpdir(files=None):
    d = tempfile.mkdtemp(prefix="luar-jobs-cli-")
    atexit.register(shutil.rmtree, d, True)
    write_files(d, files or {})
    return d


def ok(args, cwd, env=None):
    rc, out, err = run_cli(args, cwd=cwd, env=env)
    assert rc == 0, (args, rc, out, err)
    return out


def ok_json(args, cwd, env=None):
    out = ok(args + ["--json"], cwd, env)
    assert out.count("\n") == 1, out  # one JSON document, one line
    return json.loads(out)


def enqueue(cwd, *args):
    out = ok(["enqueue"] + list(args), cwd)
    assert out.count("\n") == 1, out
    return out.split()[0]


def test_enqueue_prints_the_id_and_show_has_every_field():
    d = tmpdir()
    jid = enqueue(d, "send_email", "--args", '{"user": 1, "tags": ["a", "b"]}',
                  "--queue", "mail", "--priority", "5")
    assert re.fullmatch(r"[0-9A-Za-z]+", jid), jid
    assert os.path.exists(os.path.join(d, "luar-data", "luar.db"))
    out = ok(["jobs", "show", jid], d)
    fields = dict(re.findall(r"^(\w+):[ ]+(\S.*)$", out, re.M))
    assert fields["id"] == jid and fields["name"] == "send_email", out
    assert fields["queue"] == "mail" and fields["state"] == "queued", out
    assert fields["priority"] == "5" and fields["attempt"].startswith("0"), out
    assert ISO_UTC.fullmatch(fields["enqueued_at"]), out
    assert '  {\n    "user": 1,\n    "tags": [\n      "a",\n      "b"\n    ]\n  }\n' in out, out
    job = ok_json(["jobs", "show", jid], d)
    assert job["id"] == jid and job["args"] == {"user": 1, "tags": ["a", "b"]}, job
    assert job["state"] == "queued" and job["queue"] == "mail" and job["priority"] == 5, job
    assert job["result"] is None and job["last_error"] is None, job
    assert abs(job["enqueued_at"] - time.time()) < 60, job


def test_enqueue_key_returns_the_unfinished_job():
    d = tmpdir()
    first = enqueue(d, "welcome", "--key", "welcome:1", "--args", "[1]")
    out = ok(["enqueue", "welcome", "--key", "welcome:1", "--args", "[2]"], d)
    assert out == "%s (existing job)\n" % first, out
    doc = ok_json(["enqueue", "welcome", "--key", "welcome:1"], d)
    assert doc == {"id": first, "existing": True}, doc
    doc = ok_json(["enqueue", "welcome", "--key", "welcome:2"], d)
    assert doc["id"] != first and doc["existing"] is False, doc
    jobs = ok_json(["jobs", "list"], d)["jobs"]
    assert len(jobs) == 2, jobs
    assert [j["args"] for j in jobs if j["id"] == first] == [[1]], jobs


def test_enqueue_delay_schedules_the_job():
    d = tmpdir()
    before = time.time()
    jid = enqueue(d, "later", "--delay", "120")
    job = ok_json(["jobs", "show", jid], d)
    assert job["state"] == "scheduled", job
    assert before + 119 <= job["run_at"] <= time.time() + 121, job
    out = ok(["jobs", "list", "--state", "scheduled"], d)
    line = [l for l in out.splitlines() if l.startswith(jid)]
    assert len(line) == 1 and " scheduled " in line[0], out
    assert ISO_UTC.search(line[0]), line


def test_list_filters_limit_cursor_and_json():
    d = tmpdir()
    ids = [enqueue(d, "a%d" % i, "--queue", "mail" if i % 2 else "default") for i in range(5)]
    delayed = enqueue(d, "late", "--delay", "600")
    out = ok(["jobs", "list"], d)
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["ID", "STATE", "NAME", "QUEUE"], out
    assert len(lines) == 7, out
    assert lines[1].startswith(delayed), out  # newest first
    mail = ok_json(["jobs", "list", "--queue", "mail"], d)
    assert sorted(j["id"] for j in mail["jobs"]) == sorted([ids[1], ids[3]]), mail
    assert mail["next_cursor"] is None, mail
    queued = ok_json(["jobs", "list", "--state", "queued"], d)["jobs"]
    assert {j["id"] for j in queued} == set(ids), queued
    page = ok_json(["jobs", "list", "--state", "queued", "--limit", "2"], d)
    assert [j["id"] for j in page["jobs"]] == [ids[4], ids[3]], page
    assert page["next_cursor"], page
    page2 = ok_json(["jobs", "list", "--state", "queued", "--limit", "2",
                     "--cursor", page["next_cursor"]], d)
    assert [j["id"] for j in page2["jobs"]] == [ids[2], ids[1]], page2
    out = ok(["jobs", "list", "--state", "dead"], d)
    assert out == "no jobs\n", out


def test_stats_counts_every_queue_and_state():
    d = tmpdir()
    for _ in range(3):
        enqueue(d, "a")
    enqueue(d, "b", "--queue", "mail")
    enqueue(d, "c", "--queue", "mail", "--delay", "60")
    st = ok_json(["jobs", "stats"], d)
    assert st["queues"]["default"]["queued"] == 3, st
    assert st["queues"]["mail"] == {"queued": 1, "scheduled": 1, "running": 0, "succeeded": 0,
                                    "retrying": 0, "dead": 0, "total": 2}, st
    assert st["total"]["total"] == 5 and st["total"]["queued"] == 4, st
    out = ok(["jobs", "stats"], d)
    rows = {l.split()[0]: l.split()[1:] for l in out.splitlines()}
    assert rows["QUEUE"] == ["QUEUED", "SCHEDULED", "RUNNING", "SUCCEEDED", "RETRYING", "DEAD",
                             "TOTAL"], out
    assert rows["default"] == ["3", "0", "0", "0", "0", "0", "3"], out
    assert rows["TOTAL"] == ["4", "1", "0", "0", "0", "0", "5"], out


def test_delete_then_show_is_1_naming_the_job():
    d = tmpdir()
    jid = enqueue(d, "a")
    assert ok(["jobs", "delete", jid], d) == "deleted %s\n" % jid
    rc, out, err = run_cli(["jobs", "show", jid], cwd=d)
    assert rc == 1 and err == "luar jobs show: no job %s\n" % jid, (rc, out, err)
    rc, out, err = run_cli(["jobs", "delete", jid], cwd=d)
    assert rc == 1 and err == "luar jobs delete: no job %s\n" % jid, (rc, out, err)


def test_purge_by_state_and_queue_refuses_running():
    d = tmpdir()
    enqueue(d, "a")
    enqueue(d, "b", "--delay", "60")
    enqueue(d, "c", "--delay", "60", "--queue", "mail")
    assert ok(["jobs", "purge", "--state", "scheduled", "--queue", "mail"], d) == \
        "purged 1 job\n"
    assert ok_json(["jobs", "purge", "--state", "scheduled"], d) == {"purged": 1}
    st = ok_json(["jobs", "stats"], d)
    assert st["total"]["total"] == 1 and st["total"]["queued"] == 1, st
    rc, out, err = run_cli(["jobs", "purge", "--state", "running"], cwd=d)
    assert rc == 2 and "refusing to purge running jobs" in err, (rc, out, err)
    rc, out, err = run_cli(["jobs", "purge"], cwd=d)
    assert rc == 2 and "--state is required" in err, (rc, out, err)
    assert ok_json(["jobs", "stats"], d)["total"]["total"] == 1


def test_retry_puts_a_job_back_and_bulk_retry_reports_a_count():
    d = tmpdir()
    jid = enqueue(d, "a", "--delay", "3600")
    assert ok(["jobs", "retry", jid], d) == "retried %s\n" % jid
    job = ok_json(["jobs", "show", jid], d)
    assert job["state"] == "queued" and job["run_at"] <= time.time() + 1, job
    rc, out, err = run_cli(["jobs", "retry", jid], cwd=d)
    assert rc == 1 and "is queued" in err, (rc, out, err)
    assert ok(["jobs", "retry", "--dead"], d) == "retried 0 jobs\n"
    assert ok_json(["jobs", "retry", "--dead", "--queue", "mail"], d) == {"retried": 0}
    rc, out, err = run_cli(["jobs", "retry", "nope"], cwd=d)
    assert rc == 1 and err == "luar jobs retry: no job nope\n", (rc, out, err)


def test_usage_errors_exit_2_naming_the_argument():
    d = tmpdir()
    cases = [
        (["jobs", "frob"], "unknown subcommand frob"),
        (["jobs", "list", "--frob"], "unknown option --frob"),
        (["jobs", "list", "--state", "zombie"], "--state: unknown state 'zombie'"),
        (["jobs", "list", "--limit", "x"], "--limit"),
        (["jobs", "show"], "missing ID"),
        (["enqueue"], "missing NAME"),
        (["enqueue", "a", "--args", "{nope"], "--args: invalid JSON"),
        (["enqueue", "a", "--args", "\"text\""], "--args: must be a JSON object or array"),
        (["enqueue", "a", "--delay", "-5"], "--delay"),
    ]
    for args, msg in cases:
        rc, out, err = run_cli(args, cwd=d)
        assert rc == 2, (args, rc, out, err)
        assert msg in err.splitlines()[0], (args, err)
        assert out == "", (args, out)
    # nothing above created a queue
    assert not os.path.exists(os.path.join(d, "luar-data", "luar.db"))


def test_missing_queue_is_1_naming_the_file():
    d = tmpdir()
    rc, out, err = run_cli(["jobs", "stats"], cwd=d)
    assert rc == 1, (rc, out, err)
    assert "sqlite:luar-data/luar.db" in err and len(err.splitlines()) == 1, err
    write_files(d, {"blocker": ""})
    rc, out, err = run_cli(["enqueue", "a"], cwd=d, env={"LUAR_DATA": "blocker/x"})
    assert rc == 1 and "sqlite:blocker/x/luar.db" in err, (rc, out, err)


def test_commands_follow_data_flag_env_and_config_file():
    d = tmpdir({"luar.conf.lua": 'return { data = "from-config" }\n'})
    a = enqueue(d, "a")
    assert os.path.exists(os.path.join(d, "from-config", "luar.db"))
    b = ok(["enqueue", "b", "--data", os.path.join(d, "from-flag")], d).split()[0]
    assert os.path.exists(os.path.join(d, "from-flag", "luar.db"))
    c = ok(["enqueue", "c"], d, env={"LUAR_DATA": "from-env"}).split()[0]
    assert os.path.exists(os.path.join(d, "from-env", "luar.db"))
    assert [j["id"] for j in ok_json(["jobs", "list"], d)["jobs"]] == [a]
    flag = ok_json(["jobs", "list", "--data", os.path.join(d, "from-flag")], d)
    assert [j["id"] for j in flag["jobs"]] == [b], flag
    env = ok_json(["jobs", "list"], d, env={"LUAR_DATA": "from-env"})
    assert [j["id"] for j in env["jobs"]] == [c], env


EXPLODE = """
local jobs = require "luar.jobs"
jobs.define("explode", { queue = "ops", retries = 0, priority = 3 }, function(args, job)
  error("kaboom " .. tostring(args.n))
end)
"""


def test_enqueue_uses_the_definition_of_the_job():
    d = tmpdir({"scripts/main.lua": EXPLODE})
    job = ok_json(["jobs", "show", enqueue(d, "explode")], d)
    assert (job["queue"], job["priority"], job["max_attempts"]) == ("ops", 3, 1), job
    job = ok_json(["jobs", "show", enqueue(d, "explode", "--queue", "q2", "--priority", "-1")], d)
    assert (job["queue"], job["priority"]) == ("q2", -1), job
    rc, out, err = run_cli(["enqueue", "undefined_job"], cwd=d)
    assert rc == 0 and "defines no job undefined_job" in err, (rc, out, err)
    job = ok_json(["jobs", "show", out.split()[0]], d)
    assert (job["queue"], job["max_attempts"]) == ("default", 4), job


def test_enqueue_reads_definitions_of_scripts_that_require_plugins():
    # The scripts load as `serve` loads them: with the plugins, so a main.lua that requires
    # a plugin's module still gives the job's own queue and retries.
    from plugin_e2e import CONFIG
    d = tmpdir({"luar.conf.lua": CONFIG,
                "scripts/main.lua": 'local stripe = require "luar.stripe"\n'
                                    'local jobs = require "luar.jobs"\n'
                                    'assert(stripe.client)\n'
                                    'jobs.define("charge", { queue = "billing", retries = 2 },\n'
                                    '            function() end)\n'})
    rc, out, err = run_cli(["enqueue", "charge"], cwd=d)
    assert rc == 0 and "warning" not in err, (rc, out, err)
    job = ok_json(["jobs", "show", out.split()[0]], d)
    assert (job["queue"], job["max_attempts"]) == ("billing", 3), job


def wait_state(args, jid, state, cwd):
    deadline = time.monotonic() + DEFAULT_TIMEOUT
    while True:
        job = ok_json(["jobs", "show", jid] + args, cwd)
        if job["state"] == state:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def test_dead_job_of_a_running_server_is_shown_and_retried():
    with Luar(scripts={"main.lua": EXPLODE}) as srv:
        where = ["--data", srv.data, "--scripts", srv.scripts]
        jid = ok(["enqueue", "explode", "--args", '{"n": 7}'] + where, srv.dir).split()[0]
        job = wait_state(where, jid, "dead", srv.dir)
        assert "kaboom 7" in job["last_error"] and job["attempt"] == 1, job
        assert job["finished_at"] and job["expires_at"] > job["finished_at"], job
        out = ok(["jobs", "show", jid] + where, srv.dir)
        assert re.search(r"^last_error:\n  .*kaboom 7", out, re.M), out
        out = ok(["jobs", "list", "--state", "dead"] + where, srv.dir)
        assert jid in out and "kaboom 7" in out, out
        assert ok_json(["jobs", "stats"] + where, srv.dir)["queues"]["ops"]["dead"] == 1
        # retry while the server runs: it claims the job again, which dies again
        assert ok(["jobs", "retry", "--dead", "--queue", "ops"] + where, srv.dir) == \
            "retried 1 job\n"
        job = wait_state(where, jid, "dead", srv.dir)
        assert job["attempt"] == 1, job
        assert ok(["jobs", "retry", jid] + where, srv.dir) == "retried %s\n" % jid
        wait_state(where, jid, "dead", srv.dir)
        # The admin API's filter: error text and time range (when it died).
        other = ok(["enqueue", "explode", "--args", '{"n": 8}'] + where, srv.dir).split()[0]
        died = wait_state(where, other, "dead", srv.dir)["finished_at"]
        found = ok_json(["jobs", "list", "--error", "kaboom 8"] + where, srv.dir)["jobs"]
        assert [j["id"] for j in found] == [other], found
        iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(died + 1))
        found = ok_json(["jobs", "list", "--state", "dead", "--until", iso] + where, srv.dir)
        assert {j["id"] for j in found["jobs"]} == {jid, other}, found
        found = ok_json(["jobs", "list", "--since", "%.3f" % (died + 1)] + where, srv.dir)
        assert found["jobs"] == [], found
        assert ok(["jobs", "retry", "--dead", "--error", "kaboom 9"] + where, srv.dir) == \
            "retried 0 jobs\n"
        rc, out, err = run_cli(["jobs", "retry", jid, "--error", "x"] + where, cwd=srv.dir)
        assert rc == 2 and "not with an ID" in err, (rc, out, err)
        rc, out, err = run_cli(["jobs", "list", "--since", "soon"] + where, cwd=srv.dir)
        assert rc == 2 and err.startswith("luar jobs list: --since: expected unix seconds"), err
        assert ok(["jobs", "purge", "--state", "dead", "--error", "kaboom 8"] + where,
                  srv.dir) == "purged 1 job\n"
        assert ok(["jobs", "purge", "--state", "dead"] + where, srv.dir) == "purged 1 job\n"


if __name__ == "__main__":
    main([
        test_enqueue_prints_the_id_and_show_has_every_field,
        test_enqueue_key_returns_the_unfinished_job,
        test_enqueue_delay_schedules_the_job,
        test_list_filters_limit_cursor_and_json,
        test_stats_counts_every_queue_and_state,
        test_delete_then_show_is_1_naming_the_job,
        test_purge_by_state_and_queue_refuses_running,
        test_retry_puts_a_job_back_and_bulk_retry_reports_a_count,
        test_usage_errors_exit_2_naming_the_argument,
        test_missing_queue_is_1_naming_the_file,
        test_commands_follow_data_flag_env_and_config_file,
        test_enqueue_uses_the_definition_of_the_job,
        test_enqueue_reads_definitions_of_scripts_that_require_plugins,
        test_dead_job_of_a_running_server_is_shown_and_retried,
    ])
