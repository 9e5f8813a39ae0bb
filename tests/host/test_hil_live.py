"""``synack hil`` prints as it goes: the header first, then one line per test the moment
it ends (result, time, figures), then the summary. Watched through a pty with pexpect:
the second test waits for a flag file that this test creates only after it has seen the
first test's line, so output held back until the end fails the test."""

from __future__ import annotations

import sys
from pathlib import Path

import pexpect

SYNACK = [sys.executable, "-m", "synack_host.cli"]

TESTS = '''
import os, time
import pytest

def test_first(record_property):
    record_property("figure", 7)

def test_second():
    deadline = time.monotonic() + 30
    while not os.path.exists(os.environ["LIVE_FLAG"]):
        assert time.monotonic() < deadline, "the flag never came: output is not live"
        time.sleep(0.05)
    assert 1 + 1 == 3, "fails on purpose"

def test_third():
    pytest.skip("not on this rig")
'''


def test_header_first_then_one_line_per_test_as_it_ends(tmp_path: Path):
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_live.py").write_text(TESTS)
    flag = tmp_path / "flag"
    child = pexpect.spawn(SYNACK[0], [*SYNACK[1:], "hil", "--tests", str(tests),
                                      "--junit", str(tmp_path / "r.xml"),
                                      "--logdir", str(tmp_path / "logs")],
                          env={"LIVE_FLAG": str(flag), "PATH": "/usr/bin:/bin",
                               "PYTHONUNBUFFERED": "1"},
                          cwd=str(tmp_path), timeout=60, encoding="utf-8")
    try:
        child.expect(r"synack hil on the virtual rig")             # the header, first
        child.expect(r"3 tests")
        child.expect(r"PASSED  test_live::test_first +\d+\.\d\d s  figure=7")
        assert not flag.exists()
        flag.write_text("go")                 # only now can the second test end
        child.expect(r"FAILED  test_live::test_second +\d+\.\d\d s")
        child.expect(r"fails on purpose")
        child.expect(r"SKIPPED test_live::test_third")
        child.expect(r"not on this rig")
        child.expect(r"1 passed, 1 failed, 1 skipped")
        child.expect(r"FAILED  test_live::test_second: AssertionError: fails on purpose")
        child.expect(r"synack: 1 of 3 HIL tests failed")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 1
    assert (tmp_path / "r.xml").is_file()


def test_reports_of_separate_runs_do_not_overwrite_each_other(tmp_path: Path):
    from synack_host.hil import run

    first = run.default_report_name("virtual", "unix", "sim7600", 1_800_000_000)
    second = run.default_report_name("virtual", "unix", "sim7600", 1_800_000_001)
    board = run.default_report_name("/dev/ttyUSB0", "unix", "wifi", 1_800_000_000)
    url = run.default_report_name("rfc2217://10.0.0.5:4000", "unix", "wifi", 1_800_000_000)
    assert first != second and first.endswith("-unix-sim7600")
    assert board.endswith("-ttyUSB0-wifi")
    assert "/" not in url and ":" not in url
