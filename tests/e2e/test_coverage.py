"""`luar test --coverage`: the host's own line counting of scripts/, its report and its gate."""
import atexit
import os
import re
import shutil
import tempfile

from luar_e2e import main, run_cli, write_files

MAIN = """local lib = require "lib.m"
local http = require "luar.http"

http.route("GET", "/x", function(req)
  return { json = { v = lib.double(2) } }
end)
"""

LIB = """local M = {}

function M.double(x)
  return x * 2
end

function M.never(x)
  local y = x + 1
  return y
end

local function varargs(...)
  return select("#", ...)
end
M.count = varargs

return M
"""

SPEC = """local m = require "lib.m"
describe("m", function()
  it("doubles", function() assert.equal(4, m.double(2)) end)
  it("counts", function() assert.equal(2, m.count(1, 2)) end)
end)
"""


def project(extra=None):
    d = tempfile.mkdtemp(prefix="luar-cov-")
    atexit.register(shutil.rmtree, d, True)
    files = {"scripts/main.lua": MAIN, "scripts/lib/m.lua": LIB,
             "scripts/lib/unused.lua": "local u = 1\nreturn u\n",
             "scripts/spec/inner_spec.lua": "it('is not counted', function() end)\n",
             "spec/m_spec.lua": SPEC}
    files.update(extra or {})
    write_files(d, files)
    return d


def summary(report):
    rows = {}
    for line in report.splitlines():
        m = re.match(r"^(\S+)\s+(\d+)\s+(\d+)\s+([\d.]+)%\s*(.*)$", line)
        if m:
            rows[m.group(1)] = (int(m.group(2)), int(m.group(3)), m.group(4), m.group(5))
    return rows


def test_report_counts_hit_and_missed_lines_per_file():
    d = project()
    rc, out, err = run_cli(["test", "--coverage", "spec"], cwd=d)
    assert rc == 0, (rc, out, err)
    report = open(os.path.join(d, "luar-data", "coverage.txt")).read()
    rows = summary(report)
    # M.never's body (8, 9) and the route's handler (5) never ran; unused.lua never loaded;
    # specs (under scripts/spec/ or named *_spec.lua) are not the integration's code.
    assert rows["lib/m.lua"] == (10, 2, "83.33", "8, 9"), rows
    assert rows["main.lua"] == (4, 1, "80.00", "5"), rows
    assert rows["lib/unused.lua"] == (0, 2, "0.00", "1, 2"), rows
    assert rows["Total"][:3] == (14, 5, "73.68"), rows
    assert not any("spec" in name for name in rows), rows
    assert "    ***0   local y = x + 1" in report, report
    assert "       1 function M.double(x)" in report, report
    assert "coverage: 73.68% of the code lines in scripts ran" in err, err


def test_min_gate_fails_below_and_passes_above():
    d = project()
    rc, out, err = run_cli(["test", "--coverage-min=80", "spec"], cwd=d)
    assert rc == 1, (rc, out, err)
    assert "luar test: coverage 73.68% is below --coverage-min=80" in err, err
    assert "2 successes / 0 failures" in out, out
    rc, out, err = run_cli(["test", "--coverage-min=70", "spec"], cwd=d)
    assert rc == 0, (rc, out, err)


def test_report_path_busted_options_and_failing_specs():
    d = project({"spec/fail_spec.lua": "it('fails', function() assert.equal(1, 2) end)\n"})
    path = os.path.join(d, "cov.txt")
    # busted's long options pass through (`--output=TAP`), ours are taken out
    rc, out, err = run_cli(["test", "--coverage=" + path, "--output=TAP", "spec"], cwd=d)
    assert rc == 1, (rc, out, err)
    assert re.search(r"^not ok \d+ - fails", out, re.M), out
    assert re.search(r"^ok \d+ - m doubles", out, re.M), out
    assert "1..3" in out, out
    assert summary(open(path).read())["Total"][:2] == (14, 5)


def test_bad_options_are_named():
    d = project()
    rc, out, err = run_cli(["test", "--coverage-min=lots", "spec"], cwd=d)
    assert rc == 2 and 'not "lots"' in err, (rc, err)
    rc, out, err = run_cli(["test", "--coverage", "--scripts", "nowhere", "spec"], cwd=d)
    assert rc == 2 and "no scripts folder nowhere" in err, (rc, err)


if __name__ == "__main__":
    main([test_report_counts_hit_and_missed_lines_per_file,
          test_min_gate_fails_below_and_passes_above,
          test_report_path_busted_options_and_failing_specs,
          test_bad_options_are_named])
