"""The firmware package as files: what deploy copies and what mip's package.json lists."""

from __future__ import annotations

import json
from pathlib import Path

FIRMWARE_DIR = Path(__file__).resolve().parents[2] / "firmware"
VERSION = "0.1.0"


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
