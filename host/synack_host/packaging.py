"""The firmware package as files: what deploy copies and what mip's package.json lists."""

from __future__ import annotations

import json
from pathlib import Path

from . import __version__ as VERSION

_HERE = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    """``name`` (firmware or hil_tests) as the wheel carries it (setup.py bundles it into
    the package), else beside the host package in a checkout (an editable install)."""
    bundled = _HERE / "_bundled" / name
    return bundled if bundled.is_dir() else _HERE.parents[1] / name


FIRMWARE_DIR = _find("firmware")
HIL_TESTS_DIR = _find("hil_tests")


def firmware_files(root: Path = FIRMWARE_DIR) -> list[str]:
    """Device files of the synack package, relative to firmware/, sorted."""
    return sorted(p.relative_to(root).as_posix() for p in (root / "synack").rglob("*.py"))


def package_json(root: Path = FIRMWARE_DIR) -> str:
    """firmware/package.json for ``mip.install``: URLs relative to the JSON file, so
    ``mip.install("github:<owner>/<repo>/firmware/package.json")`` fetches every module."""
    doc = {"urls": [[f, f] for f in firmware_files(root)], "deps": [], "version": VERSION}
    return json.dumps(doc, indent=2) + "\n"


def main() -> None:
    (FIRMWARE_DIR / "package.json").write_text(package_json())


if __name__ == "__main__":
    main()
