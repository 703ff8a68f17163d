"""`luar test` end to end: specs that should fail do fail, with a message that says why
(an unmatched outbound request even when the code under test caught it — also one made by
a plugin; a failing assertion after a drain; a tampered signature answered 401), exit
statuses, busted's output formats (utfTerminal by default, TAP, JUnit XML), logs captured
rather than printed, and the temporary queue folder removed at exit. Each test copies the
fixture integration of tests/fixtures/test-doubles (routes, jobs, schedules, webhook routes,
the stripe plugin) into a fresh folder and writes its own spec files there."""
import os
import re
import shutil
import tempfile
import xml.etree.ElementTree as ET

from luar_e2e import main, run_cli
from plugin_e2e import PLUGIN_DIR

SOURCE = os.environ.get("LUAR_SOURCE_DIR",
                        os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
FIXTURE = os.path.join(SOURCE, "tests", "fixtures", "test-doubles")

PASSING = """
local t = require "luar.test"
describe("signup", function()
  it("queues a welcome that calls the mail API", function()
    t.http.stub("POST", "https://api.mail.example/*", { status = 200, json = { id = "m1" } })
    assert.equal(202, t.request("POST", "/signup", { json = { email = "a@example.com" } }).status)
    assert.equal(1, t.jobs.drain().succeeded)
  end)
  it("logs without printing", function()
    require("luar.log").info("CAPTURED-NOT-PRINTED", { n = 1 })
    assert.equal(1, #t.logs("CAPTURED-NOT-PRINTED"))
  end)
end)
"""

UNMATCHED = """
local t = require "luar.test"
local http = require "luar.http"
describe("outbound", function()
  it("catches the error of an unstubbed call", function()
    local ok, err = pcall(http.get, "https://nowhere.example/v1/things")
    assert.is_false(ok)
    assert.matches("no stub for GET https://nowhere.example/v1/things", tostring(err), 1, true)
  end)
  it("starts clean afterwards", function()
    assert.same({}, t.http.requests())
  end)
end)
"""

PLUGIN_UNMATCHED = """
local t = require "luar.test"
describe("customers", function()
  it("creates one at Stripe", function()
    -- no stub for Stripe: the plugin's call raises, the route answers 500
    assert.equal(500, t.request("POST", "/customers", { json = { email = "a@example.com" } }).status)
  end)
end)
"""

RETRY = """
local t = require "luar.test"
describe("rates", function()
  it("retries a 500 then gets the 200", function()
    local s = t.http.stub("GET", "https://api.rates.example/latest",
      { { status = 500 }, { status = 200, json = { eur = 1.1 } } })
    local res = t.request("GET", "/rates")
    assert.equal(200, res.status)
    assert.equal(2, s.calls)
  end)
  it("gives up after its three attempts", function()
    local s = t.http.stub("GET", "https://api.rates.example/latest", { status = 500 })
    assert.equal(500, t.request("GET", "/rates").status)
    assert.equal(3, s.calls)
  end)
end)
"""

FAIL_AFTER_DRAIN = """
local t = require "luar.test"
describe("orders", function()
  it("handles every order", function()
    t.webhook("/hooks/orders", "standard", { type = "order.paid", data = { id = 9, fail = true } })
    local report = t.jobs.drain()
    assert.equal(0, report.failed, report.errors[1] and report.errors[1].error)
  end)
end)
"""

TAMPER = """
local t = require "luar.test"
describe("signatures", function()
  it("accepts a good one", function()
    assert.equal(200, t.webhook("/hooks/orders", "standard", { type = "order.paid", data = { id = 1 } }).status)
  end)
  it("accepts a tampered one", function()
    local res = t.webhook("/hooks/orders", "standard", { type = "order.paid", data = { id = 2 } },
      { tamper = true })
    assert.equal(200, res.status)
  end)
  it("answers 401 to a tampered one", function()
    local res = t.webhook("/hooks/orders", "standard", { type = "order.paid", data = { id = 3 } },
      { tamper = true })
    assert.equal(401, res.status)
    assert.equal(0, t.jobs.drain().ran)
  end)
end)
"""


class Project:
    """A copy of the fixture integration with the given spec files, and a TMPDIR of its own
    (where `luar test` keeps its queue)."""

    def __init__(self, specs):
        self.root = tempfile.mkdtemp(prefix="luar-test-e2e-")
        shutil.copytree(os.path.join(FIXTURE, "scripts"), os.path.join(self.root, "scripts"))
        shutil.copy(os.path.join(FIXTURE, "luar.conf.lua"), self.root)
        os.mkdir(os.path.join(self.root, "spec"))
        self.tmp = os.path.join(self.root, "tmp")
        os.mkdir(self.tmp)
        for name, text in specs.items():
            with open(os.path.join(self.root, "spec", name), "w") as f:
                f.write(text)

    def run(self, *args):
        env = dict(os.environ, LUAR_TEST_PLUGINS=PLUGIN_DIR, TMPDIR=self.tmp)
        status, out, err = run_cli(["test"] + list(args), cwd=self.root, env=env, timeout=120)
        assert os.listdir(self.tmp) == [], "the test queue folder was left: %s" % os.listdir(self.tmp)
        return status, out, err

    def close(self):
        shutil.rmtree(self.root, ignore_errors=True)


def run_specs(specs, *args):
    p = Project(specs)
    try:
        return p.run(*args)
    finally:
        p.close()


def summary(out):
    m = re.search(r"(\d+) success(?:es)? / (\d+) failures? / (\d+) errors? / (\d+) pending", out)
    assert m, "no busted summary in:\n" + out
    return tuple(int(x) for x in m.groups())


def test_passing_specs_exit_0_and_logs_are_captured():
    status, out, err = run_specs({"signup_spec.lua": PASSING})
    assert status == 0, out + err
    assert summary(out) == (2, 0, 0, 0), out
    assert "CAPTURED-NOT-PRINTED" not in out + err, "a log record was printed:\n" + out + err
    assert '"ts"' not in out + err, out + err


def test_unmatched_request_fails_the_test_even_when_caught():
    status, out, err = run_specs({"outbound_spec.lua": UNMATCHED})
    assert status == 1, out + err
    assert summary(out) == (1, 0, 1, 0), out
    assert "outbound catches the error of an unstubbed call" in out, out
    assert "luar.test: no stub for GET https://nowhere.example/v1/things" in out, out
    assert "add a t.http.stub" in out, out


def test_unmatched_plugin_request_fails_the_test():
    status, out, err = run_specs({"customers_spec.lua": PLUGIN_UNMATCHED})
    assert status == 1, out + err
    assert "luar.test: no stub for POST https://api.stripe.com/v1/customers" in out, out


def test_client_retries_run_against_a_stub_sequence():
    status, out, err = run_specs({"rates_spec.lua": RETRY})
    assert status == 0, out + err
    assert summary(out) == (2, 0, 0, 0), out


def test_failing_assertion_after_drain_names_the_job_error():
    status, out, err = run_specs({"orders_spec.lua": FAIL_AFTER_DRAIN})
    assert status == 1, out + err
    assert summary(out) == (0, 1, 0, 0), out
    assert "orders_spec.lua:7" in out, out
    assert "order 9 cannot be handled" in out, out


def test_tampered_signature_gets_401():
    status, out, err = run_specs({"sig_spec.lua": TAMPER})
    assert status == 1, out + err
    assert summary(out) == (2, 1, 0, 0), out
    failure = out[out.index("signatures accepts a tampered one"):]
    assert re.search(r"Passed in:\s*\(number\) 401", failure), out


def test_tap_output():
    status, out, err = run_specs({"sig_spec.lua": TAMPER}, "-o", "TAP")
    assert status == 1, out + err
    lines = out.splitlines()
    assert "1..3" in lines, out
    oks = [l for l in lines if re.match(r"^ok \d+ - ", l)]
    not_oks = [l for l in lines if re.match(r"^not ok \d+ - ", l)]
    assert len(oks) == 2 and len(not_oks) == 1, out
    assert "accepts a tampered one" in not_oks[0], out


def test_junit_output():
    status, out, err = run_specs({"sig_spec.lua": TAMPER, "signup_spec.lua": PASSING},
                                 "-o", "junit")
    assert status == 1, out + err
    root = ET.fromstring(out[out.index("<"):])
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    cases = [c for s in suites for c in s.iter("testcase")]
    assert len(cases) == 5, out
    failed = [c for c in cases if c.find("failure") is not None or c.find("error") is not None]
    assert len(failed) == 1, out
    assert "accepts a tampered one" in failed[0].get("name"), out
    total = sum(int(s.get("tests")) for s in suites)
    failures = sum(int(s.get("failures")) + int(s.get("errors")) for s in suites)
    assert (total, failures) == (5, 1), out


def test_drains_run_jobs_when_the_configuration_runs_none():
    # jobs.concurrency = 0 (an ingest node of a scaled-out app) runs no jobs in `luar
    # serve`; `luar test`'s drains still run them.
    p = Project({"signup_spec.lua": PASSING})
    try:
        conf = os.path.join(p.root, "luar.conf.lua")
        with open(conf) as f:
            text = f.read()
        with open(conf, "w") as f:
            f.write(text.replace("return {", "return {\n  jobs = { concurrency = 0 },", 1))
        status, out, err = p.run()
        assert status == 0, out + err
        assert summary(out) == (2, 0, 0, 0), out
    finally:
        p.close()


def test_exit_status_without_specs_and_with_broken_scripts():
    p = Project({})
    try:
        status, out, err = p.run("no_such_dir")
        assert status != 0, out + err
        with open(os.path.join(p.root, "scripts", "main.lua"), "a") as f:
            f.write("\nthis is not lua\n")
        status, out, err = p.run()
        assert status == 2, out + err
        assert "main.lua" in err, err
    finally:
        p.close()


if __name__ == "__main__":
    main([test_passing_specs_exit_0_and_logs_are_captured,
          test_unmatched_request_fails_the_test_even_when_caught,
          test_unmatched_plugin_request_fails_the_test,
          test_client_retries_run_against_a_stub_sequence,
          test_drains_run_jobs_when_the_configuration_runs_none,
          test_failing_assertion_after_drain_names_the_job_error,
          test_tampered_signature_gets_401,
          test_tap_output,
          test_junit_output,
          test_exit_status_without_specs_and_with_broken_scripts])
