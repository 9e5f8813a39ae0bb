"""Non-blocking connect (MicroPython's semantics: EINPROGRESS, then poll) over both
kinds of backend, on real TCP on 127.0.0.1: the native stack (CPython's here) and the
firmware's SIM7600 driver on the virtual modem. Success, refusal and a connect that
hangs (a listener whose accept queue is full) end the way a blocking connect ends, with
the same errno and TCP states; the blocking connect is the same code waiting."""

from __future__ import annotations

import errno
import socket as pysocket
import time

import pytest
from hanging import HangingListener, closed_port, elapsed

from synack import socket as synsocket
from synack.native import NativeBackend

HANDSHAKE = ["CLOSED", "SYN_SENT", "ESTABLISHED"]
FAILED = ["CLOSED", "SYN_SENT", "CLOSED"]


@pytest.fixture(params=["native", "sim7600"])
def backend(request):
    if request.param == "native":
        yield NativeBackend()
        return
    from modemrig import Rig
    with Rig() as rig:
        yield rig.modem


def start(backend, port, limit_ms=None):
    """A non-blocking socket whose connect to 127.0.0.1:``port`` has been started."""
    s = synsocket.socket(backend=backend)
    s.setblocking(False)
    s.connect_timeout_ms = limit_ms
    with pytest.raises(OSError) as exc:
        s.connect(("127.0.0.1", port))
    assert exc.value.errno == errno.EINPROGRESS
    assert s.state == "SYN_SENT"
    return s


def poll_until_done(s, limit_s=5.0):
    """Poll connect_done() until True (returns the number of False answers); its
    exception propagates. Bounded: fails after ``limit_s``."""
    t0 = time.monotonic()
    pending = 0
    while elapsed(t0) < limit_s:
        if s.connect_done():
            return pending
        pending += 1
        time.sleep(0.005)
    raise AssertionError(f"connect still pending after {limit_s} s (state {s.state})")


def test_nonblocking_connect_completes(backend, echo):
    s = start(backend, echo.port)
    poll_until_done(s)
    assert s.state == "ESTABLISHED" and s.tcp.states() == HANDSHAKE
    assert s.connect_done()           # stays True
    s.settimeout(5)
    s.sendall(b"ping")
    assert s.read(4) == b"ping"
    s.close()
    assert s.state == "CLOSED"
    assert echo.wait_for(lambda: echo.connections == 1)


def test_nonblocking_connect_refused(backend):
    s = start(backend, closed_port())
    with pytest.raises(OSError) as exc:
        poll_until_done(s)
    assert exc.value.errno == errno.ECONNREFUSED
    assert s.state == "CLOSED" and s.tcp.states() == FAILED
    with pytest.raises(OSError) as again:
        s.connect_done()              # the failure was reported: nothing in progress
    assert again.value.errno == errno.ENOTCONN
    s.close()


def test_nonblocking_connect_times_out_at_its_limit(backend, echo):
    with HangingListener() as port:
        s = start(backend, port, limit_ms=800)
        t0 = time.monotonic()
        with pytest.raises(OSError) as exc:
            poll_until_done(s)
        took = elapsed(t0)
    assert exc.value.errno == errno.ETIMEDOUT
    assert "800 ms" in str(exc.value)
    assert 0.75 <= took < 2.0, took
    assert s.state == "CLOSED" and s.tcp.states() == FAILED
    s.close()
    # the abandoned attempt left nothing behind: the next connect works
    s2 = start(backend, echo.port)
    poll_until_done(s2)
    assert s2.tcp.states() == HANDSHAKE
    s2.close()


def test_blocking_connect_is_the_same_path(backend, echo):
    with HangingListener() as port:
        s = synsocket.socket(backend=backend)
        s.settimeout(0.6)
        t0 = time.monotonic()
        with pytest.raises(OSError) as exc:
            s.connect(("127.0.0.1", port))
        took = elapsed(t0)
    assert exc.value.errno == errno.ETIMEDOUT and "600 ms" in str(exc.value)
    assert 0.55 <= took < 1.8, took
    assert s.tcp.states() == FAILED
    s = synsocket.socket(backend=backend)
    s.settimeout(5)
    with pytest.raises(OSError) as exc:
        s.connect(("127.0.0.1", closed_port()))
    assert exc.value.errno == errno.ECONNREFUSED and s.tcp.states() == FAILED
    s = synsocket.socket(backend=backend)
    s.settimeout(5)
    s.connect(("127.0.0.1", echo.port))
    assert s.tcp.states() == HANDSHAKE
    assert s.connect_done()
    s.close()


def test_modem_reports_its_own_connect_timeout():
    """The modem gives up first (+CIPOPEN: n,10 after --connect-timeout 1 s): the same
    ETIMEDOUT, named after the URC; the link is free again."""
    from modemrig import Rig

    with Rig("--connect-timeout", "1") as rig, HangingListener() as port:
        s = start(rig.modem, port, limit_ms=10000)
        t0 = time.monotonic()
        with pytest.raises(OSError) as exc:
            poll_until_done(s, limit_s=5)
        took = elapsed(t0)
        assert exc.value.errno == errno.ETIMEDOUT
        assert "+CIPOPEN: 0,10 (timeout)" in str(exc.value)
        assert 0.8 <= took < 3.0, took
        assert s.tcp.states() == FAILED
        assert rig.modem.links[0] is None


def test_close_while_connecting(backend):
    with HangingListener() as port:
        s = start(backend, port, limit_ms=5000)
        assert not s.connect_done()
        s.close()
        assert s.state == "CLOSED" and s.tcp.states() == FAILED
        with pytest.raises(OSError) as exc:
            s.connect_done()
        assert exc.value.errno == errno.EBADF


def test_native_keepalive_is_applied_before_a_nonblocking_connect(echo):
    s = synsocket.socket(backend=NativeBackend())
    assert s.keepalive(idle=30, interval=5, count=3) == "tcp"
    s.setblocking(False)
    with pytest.raises(OSError):
        s.connect(("127.0.0.1", echo.port))
    raw = s.handle.s
    assert raw.getsockopt(pysocket.SOL_SOCKET, pysocket.SO_KEEPALIVE) == 1
    assert raw.getsockopt(pysocket.IPPROTO_TCP, pysocket.TCP_KEEPIDLE) == 30
    poll_until_done(s)
    s.close()


