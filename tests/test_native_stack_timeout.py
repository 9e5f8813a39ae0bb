"""Native backend: an ETIMEDOUT is the stack giving up on the peer (keepalive or
retransmissions exhausted: the connection is dead, CLOSED by TIMEOUT) or only our own
read timeout expiring (the connection lives on). A blocking read has no timeout of ours,
so its ETIMEDOUT is always the stack's, on CPython and on MicroPython alike, where a
read timeout of ours also raises OSError(ETIMEDOUT).

The stack's socket is a stand-in that raises what the OS or lwIP raises: a keepalive
failure cannot be provoked on loopback without root (tests/test_keepalive.py does it
with a blackhole when it can)."""

from __future__ import annotations

import errno

import pytest

from synack import native, tcp

# the errno a read timeout of ours carries (None: CPython's socket.timeout, no errno)
PORTS = {"cpython": None, "unix": errno.EAGAIN, "esp32": errno.ETIMEDOUT}


class StackSocket:
    """The platform socket, failing every read and write with ``error``."""

    def __init__(self, error):
        self.error = error
        self.timeouts = []

    def settimeout(self, t):
        self.timeouts.append(t)

    def recv_into(self, buf):
        raise self.error

    def send(self, data):
        raise self.error


class Sock:
    """What synack.socket hands its backend: the handle and the TCP lifecycle."""

    def __init__(self, platform_socket):
        self.handle = native._Conn(platform_socket)
        self.tcp = tcp.Connection()
        for event in (tcp.CONNECT, tcp.CONNECTED):
            self.tcp.fire(event)


@pytest.fixture(params=sorted(PORTS))
def port(request, monkeypatch):
    monkeypatch.setattr(native, "_OWN_TIMEOUT_ERRNO", PORTS[request.param])
    return request.param


@pytest.mark.parametrize("op", ["recv", "send"])
def test_blocking_read_or_write_etimedout_is_the_stack_giving_up(port, op):
    sock = Sock(StackSocket(OSError(errno.ETIMEDOUT, "Connection timed out")))
    backend = native.NativeBackend()
    with pytest.raises(OSError) as exc:
        if op == "recv":
            backend.recv_into(sock, memoryview(bytearray(16)), None)
        else:
            backend.send(sock, b"ping", None)
    assert exc.value.errno == errno.ETIMEDOUT
    assert "peer stopped answering" in str(exc.value)
    assert sock.handle.s.timeouts == [None]  # blocking: no timeout of ours was running
    assert (sock.tcp.state_name, sock.tcp.last_event()) == ("CLOSED", tcp.TIMEOUT)


def test_our_own_read_timeout_leaves_the_connection_alive(port):
    # ESP32: our timeout is OSError(ETIMEDOUT) too; the unix port: EAGAIN; CPython:
    # socket.timeout (TimeoutError), with no errno
    own = OSError(PORTS[port], "timed out") if PORTS[port] else TimeoutError("timed out")
    sock = Sock(StackSocket(own))
    with pytest.raises(OSError) as exc:
        native.NativeBackend().recv_into(sock, memoryview(bytearray(16)), 250)
    assert exc.value.errno == errno.ETIMEDOUT
    assert "peer stopped answering" not in str(exc.value)
    assert sock.handle.s.timeouts == [0.25]
    assert sock.tcp.state_name == "ESTABLISHED"


@pytest.mark.parametrize("port", ["cpython", "unix"], indirect=True)
def test_etimedout_during_a_timed_read_is_the_stack_where_ours_looks_different(port):
    # CPython and the unix port report our own timeout otherwise, so an ETIMEDOUT while
    # our timeout runs is the stack's verdict: the connection is dead
    sock = Sock(StackSocket(OSError(errno.ETIMEDOUT, "Connection timed out")))
    with pytest.raises(OSError) as exc:
        native.NativeBackend().recv_into(sock, memoryview(bytearray(16)), 250)
    assert "peer stopped answering" in str(exc.value)
    assert (sock.tcp.state_name, sock.tcp.last_event()) == ("CLOSED", tcp.TIMEOUT)
