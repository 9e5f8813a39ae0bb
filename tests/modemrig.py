"""A firmware modem driver on a virtual modem process of the same dialect: what tests
that run firmware over a modem share (the process, the serial port to it, the driver),
the fixtures that make them (``rig_fixtures``), ``roundtrip`` through an echo server and
the few scenarios a dialect's own virtual-modem tests build on (``start_error``,
``unresolved``, ``echoed``, ``pair``, ``refused``, ``after_network_loss``) to assert what
the conformance suite does not: the dialect's words, numbers and counters.
The TCP lifecycle helpers (``ACTIVE_CLOSE``, ``PASSIVE_CLOSE``, ``events``) are
farmodem's, named here too."""

from __future__ import annotations

import contextlib
import errno

import pytest
import serial

from synack import modems
from synack import socket as synsocket
from synack_host.sim.launch import start_modem

from farmodem import ACTIVE_CLOSE, PASSIVE_CLOSE, events

__all__ = ["ACTIVE_CLOSE", "PASSIVE_CLOSE", "Rig", "after_network_loss", "echoed", "events",
           "pair", "refused", "rig_fixtures", "roundtrip", "start_error", "unresolved"]


class Rig:
    """``Rig(*modem_args, start=True, poll_ms=500, dialect="sim7600")``: a started
    (brought-up) driver of ``dialect`` on a new virtual modem of that dialect;
    ``close()`` (or ``with``) stops both."""

    def __init__(self, *modem_args, start=True, poll_ms=500, dialect="sim7600"):
        self.dialect = dialect
        self.proc = start_modem("--dialect", dialect, *modem_args)
        self.uart = serial.Serial(self.proc.port, 115200, timeout=0)
        try:
            self.modem = modems.driver(dialect)(self.uart, apn="internet", poll_ms=poll_ms)
            if start:
                self.modem.start(register_timeout_ms=3000)
        except BaseException:
            self.close()
            raise

    def socket(self, timeout=10):
        s = synsocket.socket(backend=self.modem)
        s.settimeout(timeout)
        return s

    def close(self):
        self.uart.close()
        self.proc.stop()

    def __enter__(self) -> Rig:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def roundtrip(sock, data, chunk=4096):
    """Send ``data`` to an echo server in ``chunk``s and read each echo back."""
    got = bytearray()
    for i in range(0, len(data), chunk):
        piece = data[i:i + chunk]
        sock.sendall(piece)
        want = len(got) + len(piece)
        while len(got) < want:
            b = sock.recv(want - len(got))
            assert b, "echo connection closed early"
            got += b
    return bytes(got)


def rig_fixtures(dialect="sim7600", **defaults):
    """``rig_factory, rig = rig_fixtures(dialect, **defaults)`` at the top of a test
    module: ``rig_factory(*modem_args, **kw)`` makes Rigs of ``dialect`` (``defaults``
    unless ``kw`` says otherwise), all closed after the test; ``rig`` is one made with no
    arguments."""
    @pytest.fixture
    def rig_factory():
        with contextlib.ExitStack() as rigs:
            yield lambda *args, **kw: rigs.enter_context(
                Rig(*args, **{"dialect": dialect, **defaults, **kw}))

    @pytest.fixture
    def rig(rig_factory):
        return rig_factory()

    return rig_factory, rig


def start_error(rig_factory, args, error):
    """The bring-up of a new rig with modem ``args`` raises ``error``: its text."""
    rig = rig_factory(*args, start=False)
    with pytest.raises(error) as exc:
        rig.modem.start(register_timeout_ms=1500)
    return str(exc.value)


def unresolved(getaddrinfo, name="no-such-host.invalid"):
    """``getaddrinfo(name, 80)`` fails: its OSError (EHOSTUNREACH)."""
    with pytest.raises(OSError) as exc:
        getaddrinfo(name, 80)
    assert exc.value.errno == errno.EHOSTUNREACH
    return exc.value


def echoed(rig, echo, data, host="127.0.0.1"):
    """``data`` through a new socket to ``echo`` (reached by ``host``) and back, byte
    exact, then the socket closed: the socket."""
    s = rig.socket()
    s.connect((host, echo.port))
    assert roundtrip(s, data) == data
    s.close()
    return s


def pair(rig, echo):
    """Two sockets connected to ``echo`` one after the other, each echoing a few bytes."""
    a, b = rig.socket(), rig.socket()
    a.connect(("127.0.0.1", echo.port))
    b.connect(("127.0.0.1", echo.port))
    assert roundtrip(a, b"a" * 3000) == b"a" * 3000
    assert roundtrip(b, b"b" * 2000) == b"b" * 2000
    return a, b


def refused(rig, echo):
    """A connect to ``echo``'s port after it stopped: its OSError (ECONNREFUSED)."""
    port = echo.port
    echo.stop()
    with pytest.raises(OSError) as exc:
        rig.socket().connect(("127.0.0.1", port))
    assert exc.value.errno == errno.ECONNREFUSED
    return exc.value


def after_network_loss(rig, echo):
    """A socket connected to ``echo``, the network lost (the network-lost fault): the
    driver sees the bearer down, the socket reads ECONNRESET and is closed; then a new
    socket connected with no start(). (the old socket, the new one)."""
    s = rig.socket()
    s.connect(("127.0.0.1", echo.port))
    assert rig.proc.fault("network-lost") == "network lost"
    rig.modem.at.wait_for(lambda: s.state == "CLOSED", 3000)
    assert s.state == "CLOSED" and not rig.modem.net_open
    with pytest.raises(OSError) as exc:
        s.recv(10)
    assert exc.value.errno == errno.ECONNRESET
    s.close()
    s2 = rig.socket()
    s2.connect(("127.0.0.1", echo.port))
    return s, s2
