"""``synack hil --place NAME`` and ``--places A,B,C``: the HIL suite on labgrid places.

The parent (this module) acquires every place first - a place held by someone else is
one error naming the holder, before any test runs - and releases them at the end, on
Ctrl-C and when a child dies. Each place gets one child pytest (``--place NAME`` with
$SYNACK_HIL_PLACE_HELD telling it the parent holds the place: it only checks and watches
it). With several places the collected tests are dealt round-robin, the children run in
parallel, their live lines are prefixed ``[place]``, and their JUnit reports are merged
into one whose every test carries a ``place`` property.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

from ..command import CommandError
from . import run
from .lease import HELD_BY_PARENT_ENV
from .places import Lab, PlaceError, coordinator_address

ALL_FREE = "all-free"
PLACE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
STOP_GRACE_S = 10.0          # a child tearing down (release, rig stop) after Ctrl-C
COLLECT_TIMEOUT_S = 120.0


def check_args(args) -> None:
    """Refuse bad --place/--places before anything starts (one line each)."""
    if args.place and args.places:
        raise CommandError("give --place or --places, not both")
    if args.board != "virtual":
        raise CommandError("give --board or --place/--places, not both")
    for name in place_names(args):
        if not PLACE_NAME.fullmatch(name):
            raise CommandError(f"--place{'s' if args.places else ''}: {name!r} is not a "
                               f"place name (letters, digits, '-', '_', '.')")
    if args.places and args.places != ALL_FREE:
        names = place_names(args)
        if len(set(names)) != len(names):
            raise CommandError(f"--places {args.places}: a place is named twice")
    try:
        coordinator_address(args.coordinator)
    except PlaceError as e:
        raise CommandError(str(e)) from None


def place_names(args) -> list[str]:
    if args.place is not None:
        return [args.place]
    if args.places == ALL_FREE:
        return []
    return [n.strip() for n in args.places.split(",")]


def run_on_places(state, args, tests: Path, options: list[str]) -> int:
    """Acquire, run, release; the merged JUnit XML is written to ``args.junit``.
    Returns the worst pytest exit status of the children."""
    address = coordinator_address(args.coordinator)
    acquired: list[str] = []
    try:
        lab = Lab(address)
    except PlaceError as e:
        raise CommandError(str(e)) from None
    try:
        names = place_names(args) or lab.free_places()
        if not names:
            raise CommandError(f"--places all-free: no free place at {address} "
                               f"(places: {', '.join(lab.place_names()) or 'none'})")
        for name in names:
            lab.acquire(name)
            acquired.append(name)
        boards = {name: lab.board(name) for name in names}
        for name, board in boards.items():
            tags = " ".join(f"{k}={v}" for k, v in board.tags)
            print(f"synack hil on place {name}: {board.url}" + (f" [{tags}]" if tags else "")
                  + f", over {args.modem}", file=state.out, flush=True)
        return _run_children(state, args, tests, options, names, address)
    except PlaceError as e:
        raise CommandError(str(e)) from None
    finally:
        for name in acquired:
            try:
                lab.release(name)
            except PlaceError as e:
                print(f"synack: {e}", file=state.err, flush=True)
        lab.close()


def _run_children(state, args, tests: Path, options: list[str], names: list[str],
                  address: str) -> int:
    if len(names) == 1:
        shards = {names[0]: [str(tests)]}
    else:
        ids = collect(tests, options)
        if not ids:
            raise CommandError("no HIL test matches" + (f" -k {args.k!r}" if args.k else ""))
        shards = {n: ids[i::len(names)] for i, n in enumerate(names) if ids[i::len(names)]}
    base = list(options)
    if len(names) > 1 and "-k" in base:      # the shards are node ids already selected
        del base[base.index("-k"):base.index("-k") + 2]
    prefix = len(names) > 1
    junits = {n: args.junit.with_name(f"{args.junit.stem}.{n}.xml") for n in shards}
    lock = threading.Lock()
    children: dict[str, subprocess.Popen] = {}
    threads = []
    try:
        for name, targets in shards.items():
            logdir = args.logdir / name if prefix else args.logdir
            logdir.mkdir(parents=True, exist_ok=True)
            opts = _with(base, "--hil-logdir", str(logdir)) + ["--place", name,
                                                                "--coordinator", address]
            cmd = run.pytest_command(tests, junits[name], opts)
            where = cmd.index(str(tests))
            cmd[where:where + 1] = targets
            env = {**os.environ, HELD_BY_PARENT_ENV: name, "PYTHONUNBUFFERED": "1"}
            children[name] = proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
            t = threading.Thread(target=_relay, args=(proc, f"[{name}] " if prefix else "",
                                                      state.out, lock), daemon=True)
            t.start()
            threads.append(t)
        codes = [p.wait() for p in children.values()]
    finally:
        _stop_children(children)
        for t in threads:
            t.join(5.0)
    merge_junit(junits, args.junit)
    for j in junits.values():
        j.unlink(missing_ok=True)
    return max(codes, key=lambda c: c != 0) if codes else 0


def _with(options: list[str], flag: str, value: str) -> list[str]:
    out = list(options)
    if flag in out:
        out[out.index(flag) + 1] = value
    else:
        out += [flag, value]
    return out


def _relay(proc: subprocess.Popen, prefix: str, out, lock: threading.Lock) -> None:
    assert proc.stdout is not None
    for raw in iter(proc.stdout.readline, b""):
        line = raw.decode(errors="replace").rstrip("\n")
        with lock:
            out.write(f"{prefix}{line}\n" if line.strip() else "\n")
            out.flush()


def _stop_children(children: dict[str, subprocess.Popen]) -> None:
    """Ctrl-C or an error: the children got SIGINT from the terminal too (or get
    SIGTERM here) and tear down; bounded waits, then SIGKILL."""
    for proc in children.values():
        if proc.poll() is None:
            proc.terminate()
    for proc in children.values():
        try:
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_GRACE_S)


def collect(tests: Path, options: list[str]) -> list[str]:
    """The node ids the suite would run with these options (-k included), as absolute
    paths so that any working directory can run them."""
    cmd = [sys.executable, "-m", "pytest", str(tests), "--collect-only", "-q",
           "-p", "no:cacheprovider", "-p", "no:labgrid", "-o", "addopts=",
           "--rootdir", str(tests), *options]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                              timeout=COLLECT_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise CommandError(f"collecting the HIL tests took over {COLLECT_TIMEOUT_S:g} s") \
            from None
    ids = [line.strip() for line in proc.stdout.splitlines() if "::" in line]
    if proc.returncode not in (0, 5) or (not ids and proc.returncode != 5):
        tail = " ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
        raise CommandError(f"collecting the HIL tests failed (pytest status "
                           f"{proc.returncode}): {tail[-300:]}")
    return [str(tests / i) for i in ids]


def merge_junit(reports: dict[str, Path], out: Path) -> None:
    """One JUnit XML of the places' reports: every testcase gets ``<property
    name="place" value="..."/>``; one testsuite with the summed counts. A place whose
    child left no report (it died) is missing from it; with no report at all nothing is
    written (the caller says the run produced none)."""
    suite = ET.Element("testsuite", name="synack-hil")
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    seconds = 0.0
    found = False
    for place, path in reports.items():
        try:
            root = ET.parse(path).getroot()
        except (OSError, ET.ParseError):
            continue
        found = True
        for part in root.iter("testsuite"):
            for key in totals:
                totals[key] += int(part.get(key, 0) or 0)
            seconds = max(seconds, float(part.get("time", 0) or 0))  # they ran in parallel
            for case in part.iter("testcase"):
                props = case.find("properties")
                if props is None:
                    props = ET.Element("properties")
                    case.insert(0, props)
                ET.SubElement(props, "property", name="place", value=place)
                suite.append(case)
    if not found:
        return
    for key, value in totals.items():
        suite.set(key, str(value))
    suite.set("time", f"{seconds:.3f}")
    root = ET.Element("testsuites")
    root.append(suite)
    ET.ElementTree(root).write(out, encoding="utf-8", xml_declaration=True)
