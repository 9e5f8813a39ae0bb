"""The same socket API over the native stack (CPython's here, lwIP on an ESP32): real
TCP on 127.0.0.1, the lifecycle as the log records it, and native errnos."""

import errno
import os

import pytest

from synack import socket as synsocket
from synack.native import NativeBackend
from synack_host.hil.servers import EchoServer, ScriptedServer


def new_socket():
    s = synsocket.socket(backend=NativeBackend())
    s.settimeout(5)
    return s


def test_roundtrip_and_active_close():
    with EchoServer() as echo:
        s = new_socket()
        s.connect(synsocket.getaddrinfo("127.0.0.1", echo.port)[0][-1])
        data = os.urandom(100_000)
        s.sendall(data)
        assert s.read(len(data)) == data
        s.close()
    assert s.tcp.states() == ["CLOSED", "SYN_SENT", "ESTABLISHED", "FIN_WAIT_1",
                              "FIN_WAIT_2", "TIME_WAIT", "CLOSED"]
    assert echo.closed_by_client == [True]


def test_passive_close():
    def bye(conn):
        conn.sendall(b"bye\n")
        conn.close()

    with ScriptedServer(bye) as server:
        s = new_socket()
        s.connect(("127.0.0.1", server.port))
        assert s.readline() == b"bye\n"
        assert s.recv(10) == b""
        assert s.state == "CLOSE_WAIT"
        s.close()
    assert s.tcp.states() == ["CLOSED", "SYN_SENT", "ESTABLISHED", "CLOSE_WAIT",
                              "LAST_ACK", "CLOSED"]


def test_refused_timeout_and_closed_socket_errors():
    with EchoServer() as echo:
        port = echo.port
    s = new_socket()
    with pytest.raises(OSError) as exc:
        s.connect(("127.0.0.1", port))
    assert exc.value.errno == errno.ECONNREFUSED
    assert s.tcp.states() == ["CLOSED", "SYN_SENT", "CLOSED"]

    with ScriptedServer(lambda conn: conn.recv(1)) as silent:
        s = new_socket()
        s.settimeout(0.3)
        s.connect(("127.0.0.1", silent.port))
        with pytest.raises(OSError) as exc:
            s.recv(10)
        assert exc.value.errno == errno.ETIMEDOUT
        s.setblocking(False)
        with pytest.raises(OSError) as exc:
            s.recv(10)
        assert exc.value.errno == errno.EAGAIN
        assert s.read(10) is None  # stream read, non-blocking, nothing there
        s.close()
    with pytest.raises(OSError) as exc:
        s.send(b"x")
    assert exc.value.errno == errno.EBADF
    with pytest.raises(OSError) as exc:
        synsocket.socket(type=synsocket.SOCK_DGRAM, backend=NativeBackend())
    assert exc.value.errno == errno.EOPNOTSUPP
