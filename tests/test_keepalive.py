"""Dead-peer detection: a peer that silently stops answering (its packets dropped by an
nftables blackhole, no RST) is detected within idle + interval x count + 1 s, on the
native backend (SO_KEEPALIVE + TCP_KEEP*) and over the virtual SIM7600 (AT+CTCPKA mapped
to the modem's host sockets); the socket then fails with ETIMEDOUT and is CLOSED."""

from __future__ import annotations

import errno
import time

import pytest

from synack import socket as synsocket
from synack.native import NativeBackend
from modemrig import Rig
from synack_host.hil.blackhole import PortBlackhole, blackhole_unavailable
from synack_host.hil.plugin import require_tools
from synack_host.hil.servers import EchoServer



@pytest.fixture
def needs_blackhole():
    require_tools(blackhole_unavailable(), "blackhole")


def detect(sock, server_port, bound_s):
    sock.write(b"ping")
    assert sock.read(4) == b"ping"
    with PortBlackhole(server_port):
        t0 = time.monotonic()
        with pytest.raises(OSError) as exc:
            sock.read(1)
        took = time.monotonic() - t0
    assert exc.value.args[0] == errno.ETIMEDOUT, exc.value
    assert "stopped answering" in str(exc.value)
    assert sock.state == "CLOSED"
    assert took <= bound_s + 1.0, f"dead peer seen after {took:.1f} s, bound {bound_s} s"
    return took


def test_keepalive_before_connect_only_and_validated():
    s = synsocket.socket(backend=NativeBackend())
    with pytest.raises(ValueError, match="keepalive idle"):
        s.keepalive(0, 1, 1)
    assert s.keepalive() == "tcp"
    with EchoServer() as echo:
        s.connect(("127.0.0.1", echo.port))
        with pytest.raises(OSError) as exc:
            s.keepalive(1, 1, 1)
        assert exc.value.args[0] == errno.EALREADY
        s.close()


def test_native_backend_detects_a_silent_peer(needs_blackhole):
    with EchoServer() as echo:
        s = synsocket.socket(backend=NativeBackend())
        assert s.keepalive(idle=1, interval=1, count=2) == "tcp"
        s.settimeout(20)
        s.connect(("127.0.0.1", echo.port))
        took = detect(s, echo.port, 1 + 1 * 2)
        assert took >= 2.0        # not before the probes had their chance
        s.close()


def test_modem_backend_detects_a_silent_peer_with_ctcpka(needs_blackhole):
    # the virtual modem's AT+CTCPKA minute lasts 1 s here, so 1 min idle + 2 x 1 min
    # probes is detected in about 3 s
    with Rig("--keepalive-minute", "1", poll_ms=200) as rig, EchoServer() as echo:
        s = rig.socket(timeout=20)
        assert s.keepalive(idle=60, interval=60, count=2) == "modem"
        s.connect(("127.0.0.1", echo.port))
        assert rig.modem.at.command(b"AT+CTCPKA?").lines == [b"+CTCPKA: 1,1,2,1"]
        detect(s, echo.port, (60 + 60 * 2) / 60)
        s.close()


def test_modem_backend_falls_back_to_probe_for_seconds():
    with Rig(start=False) as rig:      # AT+CTCPKA counts whole minutes
        s = rig.socket()
        assert s.keepalive(idle=30, interval=10, count=3) == "probe"
        assert s.keepalive(idle=120, interval=60, count=3) == "modem"
