"""Shared test setup: device code runs on CPython through the MicroPython shims."""

from synack_host.sim.shims import install

install()
