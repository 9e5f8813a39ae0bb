"""Firmware on CPython drives the virtual SIM7600 over its pty to real TCP servers on
127.0.0.1: byte-exact binary round trips, two sockets at once, the TCP lifecycle as the
socket's event log records it, and every bad-input path with its clear error."""

import asyncio
import errno
import os
import random
import time

import pytest

from synack import socket as synsocket
from synack.at.aio import AsyncChannel
from synack.at.errors import CommandTimeout
from synack.at.parser import Parser
from synack.modems import base, sim7600
from synack_host.hil.servers import ScriptedServer
from modemrig import Rig

ACTIVE_CLOSE = ["CLOSED", "SYN_SENT", "ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2",
                "TIME_WAIT", "CLOSED"]
PASSIVE_CLOSE = ["CLOSED", "SYN_SENT", "ESTABLISHED", "CLOSE_WAIT", "LAST_ACK", "CLOSED"]


@pytest.fixture
def rig_factory():
    rigs = []

    def make(*args, **kw):
        r = Rig(*args, **kw)
        rigs.append(r)
        return r

    yield make
    for r in rigs:
        r.close()


@pytest.fixture
def rig(rig_factory):
    return rig_factory()


def roundtrip(sock, data, chunk=4096):
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


def test_64k_random_binary_roundtrip_byte_exact(rig, echo):
    data = random.Random(1).randbytes(64 * 1024)
    s = rig.socket()
    s.connect(("127.0.0.1", echo.port))
    assert s.state == "ESTABLISHED"
    assert roundtrip(s, data) == data
    s.close()
    assert s.tcp.states() == ACTIVE_CLOSE


def test_two_sockets_at_once(rig, echo):
    a, b = rig.socket(), rig.socket()
    a.connect(("127.0.0.1", echo.port))
    b.connect(("127.0.0.1", echo.port))
    assert {a._handle, b._handle} == {0, 1}
    rnd = random.Random(2)
    for _ in range(8):
        da, db = rnd.randbytes(3000), rnd.randbytes(2000)
        a.sendall(da)
        b.sendall(db)
        assert b.read(len(db)) == db
        assert a.read(len(da)) == da
    a.close()
    b.close()
    assert echo.connections == 2


def test_passive_close_when_server_closes_first(rig):
    def say_bye(conn):
        conn.sendall(b"bye\n")
        conn.close()

    with ScriptedServer(say_bye) as server:
        s = rig.socket()
        s.connect(("127.0.0.1", server.port))
        assert s.readline() == b"bye\n"
        assert s.read() == b""  # end of stream after +IPCLOSE
        assert s.state == "CLOSE_WAIT"
        s.close()
    assert s.tcp.states() == PASSIVE_CLOSE


def test_connect_to_closed_port_is_refused(rig, echo):
    port = echo.port
    echo.stop()
    s = rig.socket()
    with pytest.raises(OSError) as exc:
        s.connect(("127.0.0.1", port))
    assert exc.value.errno == errno.ECONNREFUSED
    assert "+CIPOPEN: 0,1" in str(exc.value)
    assert s.state == "CLOSED"
    assert s.tcp.states() == ["CLOSED", "SYN_SENT", "CLOSED"]


def test_dns_through_the_modem(rig, echo):
    addr = synsocket.getaddrinfo("localhost", echo.port)[0][-1]
    assert addr == ("127.0.0.1", echo.port)
    synsocket.use(rig.modem)
    try:
        assert synsocket.getaddrinfo("localhost", 1)[0][-1] == ("127.0.0.1", 1)
        with pytest.raises(OSError) as exc:
            synsocket.getaddrinfo("no-such-host.invalid", 80)
        assert exc.value.errno == errno.EHOSTUNREACH
        assert "+CDNSGIP: 0,10" in str(exc.value)
    finally:
        synsocket.use(None)


def test_data_arrives_when_every_data_urc_is_lost(rig_factory, echo):
    rig = rig_factory("--drop-data-urcs")
    rig.modem.poll_ms = 50
    s = rig.socket()
    s.connect(("127.0.0.1", echo.port))
    data = os.urandom(5000)
    assert roundtrip(s, data, chunk=1000) == data
    s.close()


def test_cme_error_on_open_then_next_open_works(rig_factory, echo):
    rig = rig_factory("--fault", "AT+CIPOPEN|+CME ERROR: 3")
    s = rig.socket()
    with pytest.raises(OSError) as exc:
        s.connect(("127.0.0.1", echo.port))
    assert exc.value.errno == errno.EIO
    assert "+CME ERROR: 3 (operation not allowed)" in str(exc.value)
    assert s.state == "CLOSED"
    s2 = rig.socket()
    s2.connect(("127.0.0.1", echo.port))
    assert roundtrip(s2, b"still fine") == b"still fine"
    s2.close()


def test_modem_that_stops_answering_times_out_then_recovers(rig):
    rig.proc.pause()
    try:
        t0 = time.monotonic()
        with pytest.raises(CommandTimeout) as exc:
            rig.modem.at.command(b"AT+CSQ", b"+CSQ:", timeout_ms=300)
        assert 0.25 < time.monotonic() - t0 < 2
        assert "AT+CSQ: no answer within 300 ms" in str(exc.value)
    finally:
        rig.proc.resume()
    # The late reply to the old AT+CSQ must not be taken for the next command's.
    assert rig.modem.at.command(b"ATI", timeout_ms=2000).lines[0].startswith(b"Manufacturer")
    assert base.signal_dbm(rig.modem.at) == -73


def test_network_loss_resets_open_sockets(rig, echo):
    s = rig.socket()
    s.connect(("127.0.0.1", echo.port))
    os.kill(rig.proc.proc.pid, __import__("signal").SIGUSR1)
    rig.modem.at.wait_for(lambda: s.state == "CLOSED", 3000)
    assert s.state == "CLOSED"
    with pytest.raises(OSError) as exc:
        s.recv(10)
    assert exc.value.errno == errno.ECONNRESET
    s.close()


@pytest.mark.parametrize("args, error, text", [
    (("--sim", "absent"), base.NoSIM, "+CME ERROR: 10"),
    (("--sim", "pin"), base.SIMLocked, "SIM PIN"),
    (("--registration", "denied"), base.RegistrationDenied, "denied"),
    (("--registration", "searching"), base.NotRegistered, "stat 2"),
    (("--pdp-fail",), base.PDPError, "+NETOPEN: 1"),
])
def test_bring_up_failures_are_named(rig_factory, args, error, text):
    rig = rig_factory(*args, start=False)
    with pytest.raises(error) as exc:
        rig.modem.start(register_timeout_ms=1500)
    assert text in str(exc.value)


def test_asyncio_driver_serialises_concurrent_commands(rig):
    chan = AsyncChannel(rig.uart, Parser(urcs=sim7600.URCS, framed=sim7600.FRAMED))

    async def main():
        return await asyncio.gather(*(chan.command(b"AT+CSQ", b"+CSQ:") for _ in range(5)),
                                    chan.command(b"AT+CGMM"))

    replies = asyncio.run(main())
    assert [r.lines for r in replies[:5]] == [[b"+CSQ: 20,99"]] * 5
    assert replies[5].lines == [b"SIMCOM_SIM7600G-H"]


def test_commands_work_with_echo_on_and_off(rig_factory):
    rig = rig_factory(start=False)
    at = rig.modem.at
    base.sync(at)  # the modem powers up with echo on
    assert at.command(b"AT+CSQ", b"+CSQ:").lines == [b"+CSQ: 20,99"]
    assert at.command(b"AT+CGMM").lines == [b"SIMCOM_SIM7600G-H"]
    at.command(b"ATE0")
    assert at.command(b"AT+CSQ", b"+CSQ:").lines == [b"+CSQ: 20,99"]
    assert at.command(b"AT+CGMM").lines == [b"SIMCOM_SIM7600G-H"]
