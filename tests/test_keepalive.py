"""Dead-peer detection: a peer that silently stops answering (its packets dropped by an
nftables blackhole, no RST) is detected within idle + interval x count + 1 s, on the
native backend (SO_KEEPALIVE + TCP_KEEP*) and over the virtual SIM7600 (AT+CTCPKA mapped
to the modem's host sockets); the socket then fails with ETIMEDOUT and is CLOSED."""

from __future__ import annotations

import errno
import time

import pytest
import serial

from synack import socket as synsocket
from synack.modems import sim7600
from synack.native import NativeBackend
from synack_host.hil.blackhole import PortBlackhole, blackhole_unavailable
from synack_host.hil.servers import EchoServer
from synack_host.sim.launch import start_modem

needs_blackhole = pytest.mark.skipif(blackhole_unavailable() is not None,
                                     reason=f"blackhole: {blackhole_unavailable()}")


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


@needs_blackhole
def test_native_backend_detects_a_silent_peer():
    with EchoServer() as echo:
        s = synsocket.socket(backend=NativeBackend())
        assert s.keepalive(idle=1, interval=1, count=2) == "tcp"
        s.settimeout(20)
        s.connect(("127.0.0.1", echo.port))
        took = detect(s, echo.port, 1 + 1 * 2)
        assert took >= 2.0        # not before the probes had their chance
        s.close()


@needs_blackhole
def test_modem_backend_detects_a_silent_peer_with_ctcpka():
    # the virtual modem's AT+CTCPKA minute lasts 1 s here, so 1 min idle + 2 x 1 min
    # probes is detected in about 3 s
    modem_proc = start_modem("--keepalive-minute", "1")
    uart = serial.Serial(modem_proc.port, 115200, timeout=0)
    try:
        modem = sim7600.SIM7600(uart, apn="internet", poll_ms=200)
        modem.start(register_timeout_ms=3000)
        with EchoServer() as echo:
            s = synsocket.socket(backend=modem)
            assert s.keepalive(idle=60, interval=60, count=2) == "modem"
            s.settimeout(20)
            s.connect(("127.0.0.1", echo.port))
            assert modem.at.command(b"AT+CTCPKA?").lines == [b"+CTCPKA: 1,1,2,1"]
            detect(s, echo.port, (60 + 60 * 2) / 60)
            s.close()
    finally:
        uart.close()
        modem_proc.stop()


def test_modem_backend_falls_back_to_probe_for_seconds():
    modem = sim7600.SIM7600.__new__(sim7600.SIM7600)
    s = synsocket.socket(backend=modem)
    assert s.keepalive(idle=30, interval=10, count=3) == "probe"
