"""Shared test setup: device code runs on CPython through the MicroPython shims."""

import pytest

from synack_host.sim.shims import install

install()


@pytest.fixture
def echo():
    """A TCP echo server on 127.0.0.1."""
    from synack_host.hil.servers import EchoServer

    with EchoServer() as server:
        yield server


@pytest.fixture
def serial_modem():
    """A virtual SIM7600 process and a booted serial client on it (echo off); the
    process is ``client.proc``."""
    from atclient import Client
    from synack_host.sim.launch import start_modem

    proc = start_modem("--dialect", "sim7600")
    c = Client(proc.port)
    try:
        c.until(b"PB DONE\r\n")
        c.cmd("ATE0")
        c.proc = proc
        yield c
    finally:
        c.s.close()
        assert proc.stop() == 0


@pytest.fixture
def flash(tmp_path):
    """An empty directory to serve as a virtual board's flash filesystem."""
    d = tmp_path / "flash"
    d.mkdir()
    return d

pytest_plugins = ["pytester"]
