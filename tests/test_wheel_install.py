"""A wheel built from the project works with no checkout: built with pip, installed
(with its ``hil`` extra, as a user would) into a fresh virtual environment, and run from a
directory outside the checkout — ``synack --version``, ``synack sim selftest``,
``synack deploy`` to a virtual board started by the installed ``synack``, and
``synack hil -k ...`` with the HIL tests the wheel carries.

Slow (a venv and its packages: about a minute, most of it pip); the packages come from
the index pip is configured with, as in CI's own setup."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from synack_host import __version__
from synack_host.packaging import firmware_files

ROOT = Path(__file__).resolve().parents[1]
PIP_TIMEOUT = 600


def run(argv: list[str], cwd: Path, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    res = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                         env=env, check=False, **kw)
    assert res.returncode == 0, f"{' '.join(argv)}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(the venv's bin directory, a working directory outside the checkout)."""
    tmp = tmp_path_factory.mktemp("wheel")
    dist = tmp / "dist"
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(ROOT)],
        cwd=tmp, timeout=PIP_TIMEOUT)
    wheels = list(dist.glob("synack-*.whl"))
    assert len(wheels) == 1, wheels
    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=tmp)
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
         "--disable-pip-version-check", f"{wheels[0]}[hil]"], cwd=tmp, timeout=PIP_TIMEOUT)
    work = tmp / "work"
    work.mkdir()
    return venv / "bin", work


def test_installed_wheel_runs_outside_the_checkout(installed, tmp_path):
    bin_dir, work = installed
    synack = str(bin_dir / "synack")
    # the version is the one the checkout has, from its one place
    assert run([synack, "--version"], cwd=work).stdout.strip() == f"synack {__version__}"
    # the firmware and the HIL tests come from the installed package, not a checkout
    where = run([str(bin_dir / "python"), "-c",
                 "from synack_host import packaging as p; print(p.FIRMWARE_DIR); "
                 "print(p.HIL_TESTS_DIR)"], cwd=work).stdout.split()
    assert all("site-packages" in w and not w.startswith(str(ROOT)) for w in where), where

    selftest = run([synack, "sim", "selftest"], cwd=work)
    assert "selftest passed" in selftest.stdout + selftest.stderr

    flash = tmp_path / "flash"
    board = subprocess.Popen([synack, "sim", "board", "--fs", str(flash)], cwd=work,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert board.stdout is not None
        port = board.stdout.readline().strip()
        assert port.startswith("/dev/"), port
        run([synack, "deploy", "-p", port], cwd=work)
    finally:
        board.terminate()
        board.wait(10)
    landed = sorted(p.relative_to(flash / "lib").as_posix()
                    for p in (flash / "lib").rglob("*") if p.is_file())
    assert landed == firmware_files()

    hil = run([synack, "hil", "-k", "refused", "--junit", str(tmp_path / "r.xml"),
               "--logdir", str(tmp_path / "logs")], cwd=work, timeout=300)
    assert "PASSED  test_connect::test_connect_refused_is_a_clear_error" in hil.stdout
    assert "1 passed, 0 failed" in hil.stdout


def test_wheel_contents(installed):
    bin_dir, _ = installed
    wheel = next((bin_dir.parents[1] / "dist").glob("synack-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    bundled = sorted(n.split("_bundled/firmware/", 1)[1] for n in names
                     if "_bundled/firmware/synack/" in n)
    assert bundled == firmware_files()
    assert "synack_host/_bundled/hil_tests/test_connect.py" in names
    assert "synack_host/_bundled/hil_tests/conftest.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
