"""A pytest plugin for ``synack hil``'s child pytest: one line per test the moment it
ends, instead of pytest's progress dots (``-p synack_host.hil.live -p no:terminal``).

    PASSED  test_connect::test_echo_and_active_close                 2.31 s  handshake_ms=41
    FAILED  test_keepalive::test_dead_peer_detected_within_the_bound 9.02 s  detection_s=9.0
            AssertionError: detected after 9.0 s, bound 5.0 s
            (the traceback, indented, at most TRACEBACK_LINES lines)

The time is the whole test: setup, call and teardown. A failure's report (with the
device log's path the plugin adds) is printed under its line, so a CI log shows it where
it happened. Collection errors and pytest's internal errors are printed too: with the
terminal plugin off nothing else would show them. The summary is ``synack hil``'s, from
the JUnit XML."""

from __future__ import annotations

import sys

import pytest

NAME_WIDTH = 60
TRACEBACK_LINES = 40
OUT = sys.stdout


def _name(nodeid: str) -> str:
    """``hil_tests/test_x.py::test_y[p]`` as the report writes it: ``test_x::test_y[p]``."""
    path, _, rest = nodeid.partition("::")
    module = path.rsplit("/", 1)[-1].removesuffix(".py")
    return f"{module}::{rest}" if rest else module


def _message(report: pytest.TestReport | pytest.CollectReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return " ".join(str(crash.message).split())[:160]
    if isinstance(report.longrepr, tuple):          # a skip: (path, line, reason)
        return str(report.longrepr[2]).removeprefix("Skipped: ")[:160]
    return " ".join(str(report.longrepr).split())[:160]


def _indent(text: str) -> str:
    lines = text.rstrip().splitlines()
    if len(lines) > TRACEBACK_LINES:
        cut = len(lines) - TRACEBACK_LINES
        lines = [f"... {cut} lines cut (the whole report is in the JUnit XML)"] + \
            lines[-TRACEBACK_LINES:]
    return "\n".join("        " + line for line in lines)


class LiveReport:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.failure: dict[str, pytest.TestReport] = {}
        self.skipped: dict[str, pytest.TestReport] = {}
        self.counts = {"passed": 0, "failed": 0, "skipped": 0}

    def _write(self, text: str) -> None:
        OUT.write(text + "\n")
        OUT.flush()

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self._write(f"ERROR   collecting {report.nodeid or 'tests'}: {_message(report)}")
            self._write(_indent(str(report.longrepr)))

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self._write(f"{len(session.items)} tests\n")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        nodeid = report.nodeid
        self.seconds[nodeid] = self.seconds.get(nodeid, 0.0) + report.duration
        if report.failed and nodeid not in self.failure:
            self.failure[nodeid] = report
        elif report.skipped and nodeid not in self.skipped:
            self.skipped[nodeid] = report
        if report.when != "teardown":
            return
        failed = self.failure.pop(nodeid, None)
        skipped = self.skipped.pop(nodeid, None)
        result = "failed" if failed else "skipped" if skipped else "passed"
        self.counts[result] += 1
        figures = ", ".join(f"{k}={v}" for k, v in report.user_properties)
        seconds = self.seconds.pop(nodeid)
        self._write(f"{result.upper():7} {_name(nodeid):<{NAME_WIDTH}} {seconds:6.2f} s  "
                    f"{figures}".rstrip())
        if failed is not None:
            self._write(f"        {_message(failed)}")
            self._write(_indent(str(failed.longrepr)))
            for title, content in failed.sections:
                if title == "device log":
                    self._write(f"        device log: {content}")
        elif skipped is not None:
            self._write(f"        {_message(skipped)}")

    def pytest_internalerror(self, excrepr) -> None:
        self._write("INTERNAL ERROR in pytest:")
        self._write(_indent(str(excrepr)))


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(LiveReport(), "synack-hil-live")
