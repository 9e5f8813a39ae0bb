"""synack.socket's stream contract (issue 11), on CPython over both backends: native
sockets to a real echo server on 127.0.0.1 and the virtual SIM7600.

- MicroPython's stream ``write(buf[, off[, n]])`` and ``write(str)``;
- the call patterns of micropython-lib's clients: umqtt.simple (``write(buf, n)``,
  ``read(1)[0]``, ``read(n)``, ``setblocking(False)`` reads that give None), requests
  (``readline`` of the status and headers, ``read()`` to the end), byte-at-a-time reads,
  ``readinto(buf[, n])``, ``settimeout(None)``, a reconnect after an OSError;
- every socket method raises OSError only: an AT failure (CommandError, CommandTimeout,
  another ModemError) never escapes, its text kept in the message;
- readiness through ``ioctl(MP_STREAM_POLL)`` (what select.poll and asyncio call);
- after ``network-lost`` or lost registration, a plain connect reopens the bearer
  (bounded, with backoff, noted in the socket's TCP log) without ``modem.start()``.
The same on MicroPython's unix port: tests/test_stream_on_unix_port.py."""

from __future__ import annotations

import errno
import time

import pytest

from synack import socket as synsocket
from synack import tcp
from synack.backend import Backend
from synack.at.errors import CommandError, CommandTimeout, ModemError
from synack.modems import base
from synack_host.hil.servers import ScriptedServer
from modemrig import Rig

POLLIN, POLLOUT, POLLERR, POLLHUP = 1, 4, 8, 16
MP_STREAM_POLL, MP_STREAM_CLOSE = 3, 4


@pytest.fixture(params=["native", "modem"])
def connect(request, echo):
    """``connect()`` -> a new synack socket connected to the echo server over the
    backend of the parameter (``connect.rig``: the modem rig, or None)."""
    rig = Rig(poll_ms=100) if request.param == "modem" else None
    backend = rig.modem if rig else None

    def make(timeout=10):
        s = synsocket.socket(backend=backend) if backend else synsocket.socket(
            backend=_native())
        s.settimeout(timeout)
        s.connect(("127.0.0.1", echo.port))
        return s

    make.rig = rig
    make.echo = echo
    yield make
    if rig:
        rig.close()


def _native():
    from synack.native import NativeBackend
    return NativeBackend()


def echoed(s, n, timeout=5.0):
    """Wait until ``n`` bytes are readable on ``s`` (the echo came back)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if s.ioctl(MP_STREAM_POLL, POLLIN) & POLLIN:
            return True
        time.sleep(0.01)
    return False


# -- write ----------------------------------------------------------------------------
def test_write_takes_length_and_offset_like_micropython_streams(connect):
    s = connect()
    premsg = bytearray(b"\x10\x0c\x00\x00\x00\x00")
    assert s.write(premsg, 2) == 2                  # umqtt.simple: write(premsg, i + 2)
    assert s.write(b"0123456789", 3, 4) == 4        # write(buf, off, n): b"3456"
    assert s.write(memoryview(b"abc"), 1, 99) == 2  # n past the end: what is there
    assert s.write(b"xyz", 5, 2) == 0               # offset past the end: nothing
    assert s.write("MQTT") == 4                     # str, as MicroPython streams take it
    assert s.send("é") == 2 and s.sendall("!") is None
    want = b"\x10\x0c" + b"3456" + b"bc" + b"MQTT" + "é".encode() + b"!"
    assert s.read(len(want)) == want
    s.close()


# -- the clients' read patterns ------------------------------------------------------
def test_umqtt_and_requests_read_patterns(connect):
    s = connect()
    s.settimeout(None)                              # umqtt.robust/requests: blocking
    s.write(b"\x20\x02\x00\x00HTTP/1.0 200 OK\r\nA: b\r\n\r\nbody")
    assert s.read(1)[0] == 0x20                     # umqtt: op = read(1)[0]
    assert s.read(1) == b"\x02" and s.read(2) == b"\x00\x00"
    assert s.readline() == b"HTTP/1.0 200 OK\r\n"   # requests: status, then headers
    assert s.readline() == b"A: b\r\n" and s.readline() == b"\r\n"
    s.setblocking(False)                            # umqtt check_msg
    got = b""
    deadline = time.monotonic() + 5
    while len(got) < 4 and time.monotonic() < deadline:
        part = s.read(4 - len(got))
        got += part or b""
    assert got == b"body"
    assert s.read(1) is None                        # nothing there: None, not an error
    assert s.readline() is None and s.readinto(bytearray(4)) is None
    with pytest.raises(OSError) as e:
        s.recv(1)
    assert e.value.args[0] == errno.EAGAIN
    s.setblocking(True)
    s.write(b"0123456789")
    buf = bytearray(16)
    assert s.readinto(buf, 3) == 3 and buf[:3] == b"012"
    one = bytearray(1)
    for want in b"3456":                             # byte at a time
        assert s.readinto(one) == 1 and one[0] == want
    assert s.readinto(memoryview(buf)[:3]) == 3 and buf[:3] == b"789"
    s.close()


def test_read_to_end_and_readline_at_eof(connect):
    s = connect()
    s.write(b"last line without newline")
    assert echoed(s, 1)
    s.settimeout(0.5)
    assert s.read(5) == b"last "
    with pytest.raises(OSError) as e:   # the echo server keeps the connection open
        s.read()
    assert e.value.args[0] == errno.ETIMEDOUT
    s.close()


def test_reconnect_after_oserror_on_a_new_socket(connect):
    s = connect()
    s.close()
    with pytest.raises(OSError) as e:
        s.write(b"x", 1)
    assert e.value.args[0] == errno.EBADF
    s = connect()                                     # umqtt.robust: a fresh socket
    s.write(b"again")
    assert s.read(5) == b"again"
    s.close()


# -- readiness (what select.poll and asyncio ask through ioctl) ------------------------
def test_ioctl_poll_reports_readiness_and_close(connect):
    s = connect()
    assert s.ioctl(MP_STREAM_POLL, POLLOUT) & POLLOUT
    s.write(b"ping")
    assert echoed(s, 4)
    assert s.read(2) == b"pi"
    assert s.ioctl(MP_STREAM_POLL, POLLIN) & POLLIN  # two bytes still buffered
    assert s.read(2) == b"ng"
    assert s.ioctl(99, 0) == -errno.EINVAL
    assert s.ioctl(MP_STREAM_CLOSE, 0) == 0
    assert s.state == "CLOSED"
    assert s.ioctl(MP_STREAM_POLL, POLLIN | POLLOUT) == 32  # POLLNVAL: closed


@pytest.mark.parametrize("kind", ["native", "modem"])
def test_peer_close_is_readable_then_eof(kind):
    def bye(conn):
        conn.sendall(b"bye")

    with ScriptedServer(bye) as server:
        rig = Rig(poll_ms=100) if kind == "modem" else None
        try:
            s = synsocket.socket(backend=rig.modem if rig else _native())
            s.settimeout(5)
            s.connect(("127.0.0.1", server.port))
            assert s.read(3) == b"bye"
            deadline = time.monotonic() + 5
            while (not s.ioctl(MP_STREAM_POLL, POLLIN) & POLLIN
                   and time.monotonic() < deadline):
                time.sleep(0.02)
            assert s.ioctl(MP_STREAM_POLL, POLLIN) & POLLIN
            assert s.read(1) == b"" and s.state == "CLOSE_WAIT"
            s.close()
            assert s.tcp.states()[-3:] == ["CLOSE_WAIT", "LAST_ACK", "CLOSED"]
        finally:
            if rig:
                rig.close()


# -- every socket method raises OSError only -------------------------------------------
class FailingBackend(Backend):
    """A backend whose every call raises ``exc``: what synack.socket lets out."""
    name = "failing"

    def __init__(self, exc):
        self.exc = exc
        self.fail = True

    def _maybe(self):
        if self.fail:
            raise self.exc

    def getaddrinfo(self, host, port):
        self._maybe()

    def connect_start(self, sock, host, port, limit_ms):
        self._maybe()
        sock.tcp.fire(tcp.CONNECT)
        return 0, False

    def connect_poll(self, sock, wait_ms):
        self._maybe()
        sock.tcp.fire(tcp.CONNECTED)
        return True

    def connect_abort(self, sock, limit_ms):
        self._maybe()

    def send(self, sock, data, timeout_ms):
        self._maybe()
        return len(data)

    def recv_into(self, sock, buf, timeout_ms):
        self._maybe()
        return 0

    def close(self, sock, timeout_ms=None):
        self._maybe()

    def poll_flags(self, sock, flags):
        self._maybe()
        return flags


AT_FAILURES = [
    (CommandError(b"AT+CIPSEND=1,2", b"ERROR"), errno.EIO, "AT+CIPSEND=1,2 -> ERROR"),
    (CommandError(b"AT+CIPOPEN=0", b"+CME ERROR: 30"), errno.EIO, "no network service"),
    (CommandTimeout(b"AT+CIPRXGET=2,0,512", 5000), errno.ETIMEDOUT, "no answer within"),
    (base.NotRegistered(2), errno.EHOSTUNREACH, "searching"),
    (base.PDPError("+NETOPEN: 1"), errno.EHOSTUNREACH, "+NETOPEN: 1"),
    (ModemError("something else"), errno.EIO, "something else"),
]


def _connected(exc):
    backend = FailingBackend(exc)
    backend.fail = False
    s = synsocket.socket(backend=backend)
    s.connect(("192.0.2.1", 80))
    backend.fail = True
    return s


CALLS = {
    "getaddrinfo": lambda exc: synsocket.getaddrinfo("example.com", 80),
    "connect": lambda exc: synsocket.socket(backend=FailingBackend(exc)).connect(
        ("192.0.2.1", 80)),
    "send": lambda exc: _connected(exc).send(b"x"),
    "sendall": lambda exc: _connected(exc).sendall(b"x"),
    "write": lambda exc: _connected(exc).write(b"xy", 1),
    "recv": lambda exc: _connected(exc).recv(10),
    "recv_into": lambda exc: _connected(exc).recv_into(bytearray(10)),
    "read": lambda exc: _connected(exc).read(10),
    "readinto": lambda exc: _connected(exc).readinto(bytearray(10)),
    "readline": lambda exc: _connected(exc).readline(),
    "close": lambda exc: _connected(exc).close(),
}


@pytest.mark.parametrize("method", sorted(CALLS))
@pytest.mark.parametrize("exc,code,text", AT_FAILURES,
                         ids=[type(f[0]).__name__ + str(i) for i, f in enumerate(AT_FAILURES)])
def test_every_method_raises_oserror_with_the_native_errno(method, exc, code, text):
    saved = synsocket._backend
    synsocket.use(FailingBackend(exc))
    try:
        with pytest.raises(OSError) as e:
            CALLS[method](exc)
    finally:
        synsocket.use(saved)
    assert not isinstance(e.value, ModemError)
    assert e.value.args[0] == code, (method, e.value)
    assert text in str(e.value)


def test_nonblocking_connect_and_poll_never_let_an_at_failure_out():
    exc = CommandTimeout(b"AT+CIPOPEN=0", 5000)
    backend = FailingBackend(exc)
    s = synsocket.socket(backend=backend)
    s.setblocking(False)
    backend.fail = False
    backend.connect_poll = lambda sock, wait_ms: False   # pending
    with pytest.raises(OSError) as e:
        s.connect(("192.0.2.1", 80))
    assert e.value.args[0] == errno.EINPROGRESS
    backend.fail = True
    del backend.connect_poll
    with pytest.raises(OSError) as e:
        s.connect_done()
    assert e.value.args[0] == errno.ETIMEDOUT and not isinstance(e.value, ModemError)
    s2 = _connected(exc)
    assert s2.ioctl(MP_STREAM_POLL, POLLIN) == POLLERR | POLLHUP


# -- the same contract on the virtual SIM7600's real AT failures -----------------------
@pytest.fixture
def rig():
    r = Rig(poll_ms=100)
    yield r
    r.close()


def test_modem_at_errors_surface_as_oserrors(rig, echo):
    s = rig.socket()
    s.connect(("127.0.0.1", echo.port))
    rig.proc.cme_error("AT+CIPSEND", 3)
    with pytest.raises(OSError) as e:
        s.write(b"hello", 2)
    assert e.value.args[0] == errno.ECONNRESET and "CME ERROR: 3" in str(e.value)
    rig.proc.cme_error("AT+CIPRXGET", 100)           # the read's ERROR: no data (EAGAIN)
    s.setblocking(False)
    assert s.read(1) is None
    s.close()
    rig.proc.cme_error("AT+CDNSGIP", 30)
    synsocket.use(rig.modem)
    try:
        with pytest.raises(OSError) as e:
            synsocket.getaddrinfo("example.com", 80)
    finally:
        synsocket.use(None)
    assert e.value.args[0] == errno.EHOSTUNREACH and "CME ERROR: 30" in str(e.value)
    s = rig.socket()
    rig.proc.cme_error("AT+CIPOPEN", 4)
    with pytest.raises(OSError) as e:
        s.connect(("127.0.0.1", echo.port))
    assert e.value.args[0] == errno.EIO and "CME ERROR: 4" in str(e.value)
    assert s.state == "CLOSED"


def test_modem_that_stops_answering_gives_etimedout_not_commandtimeout(rig, echo):
    s = rig.socket()
    rig.proc.lose_ok()                               # AT+CIPOPEN's OK never comes
    with pytest.raises(OSError) as e:
        s.connect(("127.0.0.1", echo.port))
    assert e.value.args[0] == errno.ETIMEDOUT and "AT+CIPOPEN" in str(e.value)
    s = rig.socket()
    s.connect(("127.0.0.1", echo.port))              # the channel resynchronised
    rig.proc.lose_ok()                               # AT+CIPCLOSE's OK never comes
    s.close()                                        # no exception, the link given up
    assert s.state == "CLOSED" and rig.modem.links == [None] * 10


# -- the bearer reopens on the next connect ---------------------------------------------
def seen_lost(rig):
    """Wait until the driver has read the modem's network-loss URC (it comes a moment
    after the fault; a connect racing it fails with ECONNRESET, then reopens)."""
    assert rig.modem.at.wait_for(lambda: not rig.modem.net_open, 2000)


def test_after_network_lost_a_plain_reconnect_succeeds(rig, echo):
    s = rig.socket()
    s.connect(("127.0.0.1", echo.port))
    rig.proc.network_lost()
    with pytest.raises(OSError) as e:                # the publisher notices ...
        while True:
            s.write(b"x")
            time.sleep(0.05)
    assert e.value.args[0] in (errno.ECONNRESET, errno.ENOTCONN)
    s.close()
    s = rig.socket()                                 # ... and only reconnects
    s.connect(("127.0.0.1", echo.port))
    assert s.tcp.notes() == [tcp.BEARER_UP] and rig.modem.bearer_reopens == 1
    assert s.tcp.states() == ["CLOSED", "SYN_SENT", "ESTABLISHED"]
    assert "BEARER_UP (in CLOSED)" in s.tcp.format_history()[0]
    s.write(b"back")
    assert s.read(4) == b"back"
    s.close()


def test_registration_back_within_the_backoff_one_connect_recovers(rig, echo):
    rig.modem.reopen_backoff_ms = 400                # attempts at 0, 0.4 s, 1.2 s
    rig.proc.drop_registration(0.8)
    seen_lost(rig)
    s = rig.socket()
    t0 = time.monotonic()
    s.connect(("127.0.0.1", echo.port))
    took = time.monotonic() - t0
    notes = s.tcp.notes()
    assert notes[-1] == tcp.BEARER_UP and tcp.BEARER_FAILED in notes, s.tcp.format_history()
    assert 0.4 <= took < 5, took
    s.close()


def test_bearer_reopen_is_bounded_then_recovers_on_a_later_connect(rig, echo):
    rig.modem.reopen_backoff_ms = 50
    rig.proc.drop_registration()                     # until restore-registration
    seen_lost(rig)
    s = rig.socket()
    t0 = time.monotonic()
    with pytest.raises(OSError) as e:
        s.connect(("127.0.0.1", echo.port))
    assert time.monotonic() - t0 < 5
    assert e.value.args[0] == errno.EHOSTUNREACH and "3 attempts" in str(e.value)
    assert s.tcp.notes() == [tcp.BEARER_FAILED] * 3 and s.state == "CLOSED"
    rig.proc.restore_registration()
    s = rig.socket()
    s.connect(("127.0.0.1", echo.port))
    assert s.tcp.notes() == [tcp.BEARER_UP]
    s.close()


def test_reopen_is_limited_by_the_connect_timeout(rig, echo):
    rig.modem.reopen_backoff_ms = 2000
    rig.proc.drop_registration()
    seen_lost(rig)
    s = rig.socket(timeout=1)
    t0 = time.monotonic()
    with pytest.raises(OSError) as e:
        s.connect(("127.0.0.1", echo.port))
    assert time.monotonic() - t0 < 1.5 and e.value.args[0] == errno.EHOSTUNREACH
    assert s.tcp.notes() == [tcp.BEARER_FAILED]       # no second attempt past the limit


def test_after_a_modem_reboot_a_connect_brings_it_up_again(rig, echo):
    before = rig.modem.reboots                       # (the first boot's RDY may count)
    rig.proc.reboot()
    assert rig.modem.at.wait_for(lambda: rig.modem.reboots == before + 1, 3000)
    s = rig.socket()
    s.connect(("127.0.0.1", echo.port))
    assert s.tcp.notes() == [tcp.BEARER_UP]
    s.write("after reboot")
    assert s.read(12) == b"after reboot"
    s.close()
