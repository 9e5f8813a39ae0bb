"""Firmware type-checks against micropython-esp32-stubs (basedpyright, "standard" mode):
MicroPython's own modules resolve (machine, time.ticks_ms, micropython.const) and APIs
that ESP32 MicroPython lacks are flagged. (Imports of CPython-only modules such as
threading are caught by the module check in tests/test_mpy_compile.py instead.)"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def typecheck(target: Path, workdir: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("basedpyright", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("basedpyright is not installed: pip install -e '.[test]'")
    site = sysconfig.get_paths()["purelib"]
    if not (Path(site) / "stdlib").is_dir() or not (Path(site) / "machine.pyi").exists():
        pytest.fail("micropython-esp32-stubs are not installed in " + site)
    config = {
        "include": [str(target)],
        # micropython-stdlib-stubs installs a typeshed-style "stdlib" folder: using it as
        # the typeshed replaces CPython's standard library with MicroPython's.
        "typeshedPath": site,
        "extraPaths": [site],
        "pythonPlatform": "Linux",
        "pythonVersion": "3.11",
        "typeCheckingMode": "standard",
        "reportMissingModuleSource": "none",
    }
    cfg = workdir / "pyrightconfig.json"
    cfg.write_text(json.dumps(config))
    return subprocess.run([exe, "-p", str(cfg)], capture_output=True, text=True, timeout=300)


def test_firmware_typechecks_against_esp32_stubs(tmp_path):
    res = typecheck(ROOT / "firmware" / "synack", tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 errors" in res.stdout


def test_checker_flags_what_micropython_lacks(tmp_path):
    bad = tmp_path / "pkg"
    bad.mkdir()
    (bad / "good.py").write_text(
        "import machine, time\nfrom micropython import const\n"
        "X = const(3)\nuart = machine.UART(1, 115200)\nt = time.ticks_diff(time.ticks_ms(), 0)\n")
    (bad / "bad.py").write_text(
        "import time\nt = time.monotonic_ns()\n")
    res = typecheck(bad, tmp_path)
    out = res.stdout
    assert res.returncode != 0
    assert "bad.py" in out and "good.py" not in out, out
    assert "monotonic_ns" in out, out  # CPython has it, MicroPython does not
