"""``synack hil``: run hil_tests against a board and print a readable report.

pytest runs in a child process (the synack_hil plugin loaded, JUnit XML written); each
test's line (pass/fail/skip, its time and the key figures it recorded with
``record_property``: handshake time, detection time, connections per N polls) is
printed live as it ends (``live.py``); the summary is read back from the XML.
"""

from __future__ import annotations

import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from ..packaging import HIL_TESTS_DIR as DEFAULT_TESTS  # noqa: F401 (the wheel's copy or the checkout's)


@dataclass
class Outcome:
    name: str
    result: str                    # passed | failed | skipped
    seconds: float
    figures: dict[str, str] = field(default_factory=dict)
    message: str = ""


def pytest_command(tests: Path, junit: Path, options: list[str]) -> list[str]:
    # junit_family legacy: the XML keeps the figures tests record with record_property;
    # the live plugin prints a line per test as it ends, in place of pytest's dots (the
    # terminal plugin and the ini's addopts, which are terminal options, are left out;
    # labgrid's pytest plugin, installed with synack[farm], needs the terminal plugin and
    # is not how synack hil reaches labgrid: hil/places.py is)
    return [sys.executable, "-m", "pytest", str(tests), "-p", "no:cacheprovider",
            "-p", "no:labgrid",
            "-p", "synack_host.hil.live", "-p", "no:terminal", "-o", "addopts=",
            "-o", "junit_family=legacy", "--junitxml", str(junit), *options]


def run_pytest(tests: Path, junit: Path, options: list[str], out) -> int:
    """Run pytest, its progress streaming to ``out`` (a real file: directly)."""
    out.flush()
    try:
        fd = out.fileno()
    except (AttributeError, OSError, ValueError):
        fd = None
    proc = subprocess.run(pytest_command(tests, junit, options), check=False,
                          stdout=fd if fd is not None else subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    if fd is None:
        out.write(proc.stdout)
    return proc.returncode


class ReportError(Exception):
    """The JUnit report cannot be read; the message names the file."""


def read_junit(path: Path) -> list[Outcome]:
    outcomes = []
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        raise ReportError(f"cannot read the JUnit report {path}: {e}") from None
    for case in root.iter("testcase"):
        module = case.get("classname", "").rsplit(".", 1)[-1]
        name = f"{module}::{case.get('name')}"
        result, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                result = "skipped" if tag == "skipped" else "failed"
                message = (node.get("message") or "").partition("\n")[0][:160]
        figures = {p.get("name", ""): p.get("value", "")
                   for p in case.iter("property")}
        try:
            seconds = float(case.get("time", 0))
        except ValueError:
            seconds = 0.0
        outcomes.append(Outcome(name, result, seconds, figures, message))
    return outcomes


# what runs the device code on the virtual rig, per --engine
ENGINE_NAMES = {
    "unix": "MicroPython (the unix port)",
    "micropython": "MicroPython (WebAssembly VM)",
    "cpython": "CPython with MicroPython shims",
}


def title(board: str, engine: str, network: str) -> str:
    """The report's first line: where the device code ran, on what, over which network."""
    if board == "virtual":
        ran = f"the virtual rig, device code on {ENGINE_NAMES.get(engine, engine)} " \
              f"[engine {engine}]"
    else:
        ran = f"{board}, device code on the board's own MicroPython"
    return f"synack hil on {ran}, over {network}"


def format_summary(outcomes: list[Outcome]) -> str:
    """What ``synack hil`` prints after the live lines: the counts, then each failed
    test again with its first message line (the live output may have scrolled away)."""
    counts = {r: sum(o.result == r for o in outcomes) for r in ("passed", "failed", "skipped")}
    lines = ["", ", ".join(f"{n} {r}" for r, n in counts.items())]
    for o in outcomes:
        if o.result == "failed":
            lines.append(f"FAILED  {o.name}: {o.message}")
    return "\n".join(lines)


def default_report_name(board: str, engine: str, network: str, when: float) -> str:
    """A name of its own for each run's report and logs, so runs do not overwrite each
    other: ``20261127-201530-unix-sim7600`` (a real board: its port's last part)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when))
    where = engine if board == "virtual" else board.rstrip("/").rsplit("/", 1)[-1]
    where = "".join(c if c.isalnum() or c in "-_." else "_" for c in where)
    return f"{stamp}-{where}-{network}"
