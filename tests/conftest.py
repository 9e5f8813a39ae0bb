"""Shared test setup: device code runs on CPython through the MicroPython shims."""

import pytest

from synack_host.sim.shims import install

install()


@pytest.fixture
def flash(tmp_path):
    """An empty directory to serve as a virtual board's flash filesystem."""
    d = tmp_path / "flash"
    d.mkdir()
    return d

pytest_plugins = ["pytester"]
