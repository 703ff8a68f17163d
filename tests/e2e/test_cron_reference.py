"""`luar cron next` against a reference implementation: croner (npm, pinned in
tests/e2e/package.json; install with `npm ci --prefix tests/e2e`), run under node for a
table of expressions x time zones x start times, including both DST transitions of
America/New_York, Europe/London, Australia/Sydney and Australia/Lord_Howe (a 30-minute
shift). Expected wall-clock strings are formatted from croner's instants with Python's
zoneinfo (the system tzdata), so the offsets luar prints are checked independently too.

croner is run with fixedTimeRule "no-wildcard" and sloppyRanges. It follows the same
conventions as SPEC §8 (six fields are seconds first; dom/dow OR; a fixed-time job fires
once, at the first occurrence, in a repeated hour and at the end of a gap; an interval job
fires in both occurrences; an interval job has nothing due in a gap) except in one place,
where the SPEC wins and the expected values are computed by hand in HAND_CASES below:
croner decides "fixed time" from the second, minute and hour fields together; SPEC §8 from
the hour field alone, so `*/20 1 * * *` is a fixed-hour schedule that fires only in the
first 01:xx of a fall-back night (croner: in both). HAND_CASES also pins, by hand, the gap
behaviour of hourly schedules (real time: 01:30, then 03:30), the case a change to the gap
rule would break first.
"""
import datetime
import json
import os
import shutil
import subprocess
import zoneinfo

from luar_e2e import main, run_cli

HERE = os.path.dirname(os.path.abspath(__file__))

REFERENCE_JS = r"""
const { Cron } = require("croner");
const cases = JSON.parse(require("fs").readFileSync(0, "utf8"));
const out = cases.map(([expr, tz, from, n]) => {
  try {
    const c = new Cron(expr, { timezone: tz, paused: true, fixedTimeRule: "no-wildcard",
                               sloppyRanges: true });
    return c.nextRuns(n, new Date(from)).map((d) => d.getTime() / 1000);
  } catch (e) {
    return "croner: " + e.message;
  }
});
process.stdout.write(JSON.stringify(out));
"""

# Expressions whose fire times never come near a DST transition in these scenarios, or
# whose zone has none: every syntax form, aliases, month ends, Feb 29, the OR rule.
GENERAL_EXPRS = [
    "* * * * *", "*/5 * * * *", "0 * * * *", "15 9 * * *", "0 9 * * 1-5",
    "30 8 * * MON,WED,FRI", "0 0 1 * *", "0 0 31 * *", "0 12 30 * *", "0 0 29 2 *",
    "0 0 28-31 * *", "0 0 1 JAN *", "0 0 * * SUN", "0 0 * * 7", "0 0 * * 0",
    "0 0 13 * FRI", "0 0 1,15 * MON", "0 0 */10 * MON", "0 0 * * FRI-SUN", "5/15 * * * *",
    "1-30/7 * * * *", "0 0-23/3 * * *", "0 */6 * * *", "0 9-17 * * mon-fri",
    "0 0 1 */3 *", "0 0 1 feb-apr *", "@hourly", "@daily", "@midnight", "@weekly",
    "@monthly", "@yearly", "@annually", "*/10 * * * * *", "30 15 10 * * *",
    "0 0 12 * * 1", "59 59 23 31 12 *", "0 0 0 29 2 *", "0 0 0 31 * *", "0 30 9 ? * TUE",
    "0 0 12 31 * *", "15 10 * * ?", "0 22 * * 1-5",
    "0 0,12 1 * *", "0 0 1 1,4,7,10 *", "20 4 29 2 1",
]

GENERAL_SCENARIOS = [
    ("UTC", "2026-01-15T10:17:23Z"),
    ("UTC", "2027-12-31T23:59:59Z"),
    ("America/New_York", "2026-06-30T22:59:59Z"),
    ("Europe/London", "2026-02-27T23:30:00Z"),
    ("Australia/Sydney", "2026-12-31T13:00:00Z"),
    ("Asia/Kolkata", "2027-02-27T18:29:59Z"),
    ("America/Sao_Paulo", "2028-02-28T12:00:00Z"),
    ("Asia/Tokyo", "2026-07-31T15:00:00Z"),
]

# Fixed-hour schedules (croner and SPEC agree: fixed time) and interval schedules whose
# gap end is itself a fire time (so the gap rule gives the same answer in both).
DST_EXPRS = [
    "30 2 * * *", "0 2 * * *", "30 1 * * *", "0 1 * * *", "0 3 * * *", "15 2 * * *",
    "0 1,2,3 * * *", "0 1-3 * * *", "0 0 * * *", "0 30 2 * * *", "45 1 * * *",
    "0 2 * * SUN", "30 2 1-10 3,4,10,11 *", "*/15 * * * *", "*/30 * * * *", "*/5 * * * *",
    "0 */30 * * * *",
]

DST_SCENARIOS = [
    ("America/New_York", "2026-03-08T04:00:00Z"),   # spring forward 02:00 -> 03:00
    ("America/New_York", "2026-11-01T03:30:00Z"),   # fall back 02:00 -> 01:00
    ("Europe/London", "2026-03-28T23:00:00Z"),      # spring forward 01:00 -> 02:00
    ("Europe/London", "2026-10-24T23:00:00Z"),      # fall back 02:00 -> 01:00
    ("Australia/Sydney", "2026-04-04T13:00:00Z"),   # DST ends 03:00 -> 02:00
    ("Australia/Sydney", "2026-10-03T13:00:00Z"),   # DST starts 02:00 -> 03:00
    ("Australia/Lord_Howe", "2026-04-04T13:00:00Z"),  # 02:00 -> 01:30
    ("Australia/Lord_Howe", "2026-10-03T13:00:00Z"),  # 02:00 -> 02:30
]

# `0 * * * *` and `0 0 * * * *` agree wherever the jump is a whole hour on the hour.
HOURLY_SCENARIOS = DST_SCENARIOS[:6]

# Hand-computed cases where SPEC §8 and croner differ (see the module docstring).
HAND_CASES = [
    # New York, 2026-03-08: 02:30 does not exist. The hour is `*`: the schedule follows
    # real time, so nothing is due in the gap (ISC/Vixie cron): 01:30 EST, then 03:30 EDT.
    ("30 * * * *", "America/New_York", "2026-03-08T05:00:00Z", [
        "2026-03-08T00:30:00-05:00", "2026-03-08T01:30:00-05:00",
        "2026-03-08T03:30:00-04:00", "2026-03-08T04:30:00-04:00"]),
    # Same for an hour step: 02:00 is skipped, the next fire is 04:00 EDT.
    ("0 */2 * * *", "America/New_York", "2026-03-08T04:00:00Z", [
        "2026-03-08T00:00:00-05:00", "2026-03-08T04:00:00-04:00",
        "2026-03-08T06:00:00-04:00", "2026-03-08T08:00:00-04:00"]),
    # New York, 2026-11-01: 01:00-01:59 happens twice. The hour is fixed (1), so SPEC fires
    # only in the first occurrence (EDT); croner also fires 01:00/01:20/01:40 EST.
    ("*/20 1 * * *", "America/New_York", "2026-11-01T04:00:00Z", [
        "2026-11-01T01:00:00-04:00", "2026-11-01T01:20:00-04:00",
        "2026-11-01T01:40:00-04:00", "2026-11-02T01:00:00-05:00",
        "2026-11-02T01:20:00-05:00"]),
    # London, 2026-10-25: 01:00-01:59 twice; every minute of hour 1, first pass only.
    ("* 1 * * *", "Europe/London", "2026-10-25T00:58:00Z", [
        "2026-10-25T01:59:00+01:00", "2026-10-26T01:00:00+00:00",
        "2026-10-26T01:01:00+00:00"]),
    # Sydney, 2026-10-04: 02:00-02:59 AEST does not exist. Hour `*`: real time, so 02:15
    # and 02:45 are simply not there; after 01:45 AEST comes 03:15 AEDT.
    ("15,45 * * * *", "Australia/Sydney", "2026-10-03T15:00:00Z", [
        "2026-10-04T01:15:00+10:00", "2026-10-04T01:45:00+10:00",
        "2026-10-04T03:15:00+11:00", "2026-10-04T03:45:00+11:00"]),
    # Sydney, 2026-04-05: 02:00-02:59 twice (03:00 AEDT -> 02:00 AEST). Fixed hour 2: the
    # first pass (AEDT) only; the next fires are on the 6th.
    ("*/30 2 * * *", "Australia/Sydney", "2026-04-04T15:00:00Z", [
        "2026-04-05T02:30:00+11:00", "2026-04-06T02:00:00+10:00",
        "2026-04-06T02:30:00+10:00", "2026-04-07T02:00:00+10:00"]),
    # Lord Howe, 2026-10-04: 02:00-02:29 does not exist (a 30-minute jump). Hour `*`: real
    # time, so 02:00 is not there; a fixed hour 2 fires at 02:30 +11:00, the end of the gap.
    ("0 * * * *", "Australia/Lord_Howe", "2026-10-03T13:00:00Z", [
        "2026-10-04T00:00:00+10:30", "2026-10-04T01:00:00+10:30",
        "2026-10-04T03:00:00+11:00", "2026-10-04T04:00:00+11:00"]),
    ("0 2 * * *", "Australia/Lord_Howe", "2026-10-03T13:00:00Z", [
        "2026-10-04T02:30:00+11:00", "2026-10-05T02:00:00+11:00"]),
    # Lord Howe, 2026-04-05: 01:30-01:59 twice (02:00 +11 -> 01:30 +10:30). Hour `*`
    # follows real time: 01:45 fires in both passes.
    ("45 * * * *", "Australia/Lord_Howe", "2026-04-04T14:00:00Z", [
        "2026-04-05T01:45:00+11:00", "2026-04-05T01:45:00+10:30",
        "2026-04-05T02:45:00+10:30"]),
]


def reference(cases):
    """Runs croner for [(expr, tz, from, count)]; returns a list of unix-time lists."""
    node = shutil.which("node")
    assert node, "node is not installed (Debian package nodejs)"
    assert os.path.isdir(os.path.join(HERE, "node_modules", "croner")), \
        "croner is not installed: run `npm ci --prefix tests/e2e` (make deps does)"
    p = subprocess.run([node, "-e", REFERENCE_JS], cwd=HERE, capture_output=True,
                       input=json.dumps(cases).encode(), timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    out = json.loads(p.stdout)
    assert len(out) == len(cases)
    return out


def iso(ts, tz):
    """Formats unix time `ts` in zone `tz` as luar prints it."""
    return datetime.datetime.fromtimestamp(ts, zoneinfo.ZoneInfo(tz)).isoformat()


def luar_next(expr, tz, start, count):
    rc, out, err = run_cli(["cron", "next", expr, "--tz", tz, "--from", start,
                            "--count", str(count)])
    assert rc == 0, (expr, tz, start, rc, out, err)
    return out.split()


def compare(cases):
    expected = reference(cases)
    failures = []
    for (expr, tz, start, count), ref in zip(cases, expected):
        assert isinstance(ref, list) and len(ref) == count, (expr, tz, ref)
        want = [iso(ts, tz) for ts in ref]
        got = luar_next(expr, tz, start, count)
        if got != want:
            failures.append("%r --tz %s --from %s:\n  luar   %s\n  croner %s"
                            % (expr, tz, start, got, want))
    assert not failures, "\n".join(failures)


def test_general_expressions_match_croner():
    compare([(e, tz, start, 5) for e in GENERAL_EXPRS for tz, start in GENERAL_SCENARIOS])


def test_dst_transitions_match_croner():
    cases = [(e, tz, start, 24) for e in DST_EXPRS for tz, start in DST_SCENARIOS]
    cases += [(e, tz, start, 24) for e in ("0 * * * *", "0 0 * * * *")
              for tz, start in HOURLY_SCENARIOS]
    compare(cases)


def test_dst_cases_where_spec_differs_from_croner():
    for expr, tz, start, want in HAND_CASES:
        assert luar_next(expr, tz, start, len(want)) == want, (expr, tz, start)


if __name__ == "__main__":
    main([test_general_expressions_match_croner, test_dst_transitions_match_croner,
          test_dst_cases_where_spec_differs_from_croner])
