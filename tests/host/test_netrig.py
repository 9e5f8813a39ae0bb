"""The virtual rig behind an argv prefix, and inside a network namespace (hil.netrig).

The prefix test needs nothing special; the namespace tests need root and iproute2 (they
skip without, except in CI, where they fail instead).
"""

from __future__ import annotations

import os
import socket
import sys

import pytest

from synack_host.hil import netns
from synack_host.hil.network import Network, list_namespaces
from synack_host.hil.plugin import require_tools
from synack_host.hil.servers import ScriptedServer
from synack_host.sim import rig as rigmod
from synack_host.sim.rig import start_rig

CONNECT = """
s = socket.socket()
s.settimeout(10)
s.connect(socket.getaddrinfo(%r, %d)[0][-1])
s.write(b'ping')
print('got', s.read(4))
s.close()
"""


def _environ(pid: int) -> list[bytes]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        return f.read().split(b"\0")


def _cmdline(pid: int) -> list[bytes]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().split(b"\0")


def test_prefix_goes_before_the_modem_and_the_board(tmp_path):
    # `env VAR=1 CMD` execs CMD: the process we hold is the modem / board itself
    with start_rig(fs=str(tmp_path), prefix=("env", "SYNACK_PREFIX_TEST=1")) as rig:
        for part, word in ((rig.modem, b"modem"), (rig.board, b"board")):
            pid = part.proc.pid
            assert b"SYNACK_PREFIX_TEST=1" in _environ(pid)
            cmd = _cmdline(pid)
            assert cmd[0] == sys.executable.encode() and b"synack_host.cli" in cmd
            assert word in cmd
        assert rig.dead() is None
    assert rig.modem.proc.returncode is not None and rig.board.proc.returncode is not None


def test_no_prefix_is_the_old_behaviour(tmp_path):
    with start_rig(fs=str(tmp_path)) as rig:
        for part in (rig.modem, rig.board):
            assert b"SYNACK_PREFIX_TEST=1" not in _environ(part.proc.pid)
            assert _cmdline(part.proc.pid)[0] == sys.executable.encode()


@pytest.fixture
def net():
    require_tools(netns.unavailable(), "network namespace tests")
    with Network() as n:
        yield n
    assert not set(n) & set(list_namespaces()), "namespaces left behind"


class PeerEcho(ScriptedServer):
    """Echoes, and records each client's address as the server sees it."""

    def __init__(self, host: str):
        self.peers: list[str] = []
        super().__init__(self._serve_echo, host)

    def _serve_echo(self, conn: socket.socket) -> None:
        self.peers.append(conn.getpeername()[0])
        while data := conn.recv(65536):
            conn.sendall(data)


def _netns_inode(path: str) -> int:
    return os.stat(path).st_ino


@pytest.mark.parametrize("kind", ["sim7600", "wifi"])
def test_a_device_in_the_device_namespace_connects_from_there(net, kind, tmp_path):
    from synack_host.hil.netrig import start_device

    server = net.call("server", PeerEcho, net.SERVER_IP)
    try:
        with start_device(net, network=kind, fs=tmp_path) as dev:
            device_ns = _netns_inode(netns.ns_path(net.ns("device")))
            for part in (dev.rig.modem, dev.rig.board):
                assert _netns_inode(f"/proc/{part.proc.pid}/ns/net") == device_ns
            assert _netns_inode("/proc/self/ns/net") != device_ns
            out = dev.exec(CONNECT % (dev.server_host, server.port), timeout=30)
            rig = dev.rig
        assert "got b'ping'" in out, out
        # no NAT on the router yet: the server sees the device's own address
        assert server.peers == [net.DEVICE_IP]
        assert rig.dead() is not None            # close() stopped the rig
    finally:
        server.stop()


def test_start_device_stops_the_rig_when_bring_up_fails(net, tmp_path, monkeypatch):
    from synack_host.hil import netrig

    started: list[rigmod.Rig] = []

    def recording_start_rig(*args, **kwargs):
        started.append(start_rig(*args, **kwargs))
        return started[-1]

    def broken_bring_up(self, timeout: float = 60.0) -> str:
        raise RuntimeError("bring-up broke on purpose")

    monkeypatch.setattr(rigmod, "start_rig", recording_start_rig)
    monkeypatch.setattr(netrig.NetDevice, "bring_up", broken_bring_up)
    with pytest.raises(RuntimeError, match="on purpose"):
        netrig.start_device(net, network="wifi", fs=tmp_path)
    assert len(started) == 1
    assert started[0].modem.proc.poll() is not None
    assert started[0].board.proc.poll() is not None


def test_start_device_rejects_an_unknown_network():
    from synack_host.hil.netrig import start_device
    from synack_host.sim.modem import DIALECTS

    with pytest.raises(ValueError) as exc:
        start_device(Network(), network="lte")      # before anything is started
    assert "'lte'" in str(exc.value)
    assert all(name in str(exc.value) for name in (*DIALECTS, "wifi"))
