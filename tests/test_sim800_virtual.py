"""The SIM800 driver (firmware on CPython) against the virtual SIM800 process
(``synack sim modem --dialect sim800``) over its pty, to real TCP servers on 127.0.0.1:
what is the SIM800's own beyond the conformance suite (tests/conformance/): its identity
and AT+CIFSR address, its error texts (``+CDNSGIP: 0,8``, ``0, CONNECT FAIL``, ``0, SEND
FAIL``), links 0 and 1, its keepalive setting, quick send (a send returns on ``DATA
ACCEPT`` while the peer acknowledges nothing; normal mode's ``SEND OK`` waits for the
ACK), the ``<n>, CLOSED`` of a link the network ends, and the bearer reopened after
network loss."""

import contextlib
import errno
import random
import socket
import time

import pytest

from synack import socket as synsocket
from synack.at.errors import CommandTimeout
from synack.modems import base
from modemrig import (ACTIVE_CLOSE, PASSIVE_CLOSE, after_network_loss, echoed, events, pair,
                      refused, rig_fixtures, roundtrip, start_error, unresolved)

rig_factory, rig = rig_fixtures("sim800")


def test_bring_up_and_identity(rig):
    assert rig.modem.net_open and rig.modem.local_ip == "10.64.0.2"
    assert rig.modem.rssi_dbm == -73
    at = rig.modem.at
    assert at.command(b"AT+CGMM").lines == [b"SIMCOM_SIM800L"]
    assert at.command(b"ATI").lines == [b"SIM800 R14.18"]
    assert at.command(b"AT+CCID").lines == [b"89882000000000000017"]


def test_dns_through_the_modem(rig, echo):
    synsocket.use(rig.modem)
    try:
        assert synsocket.getaddrinfo("localhost", 7)[0][-1] == ("127.0.0.1", 7)
        assert "+CDNSGIP: 0,8" in str(unresolved(synsocket.getaddrinfo))
    finally:
        synsocket.use(None)


def test_64k_to_a_name_reaches_the_server_once(rig, echo):
    echoed(rig, echo, random.Random(800).randbytes(64 * 1024), "localhost")
    assert echo.wait_for(lambda: echo.received == 64 * 1024)


def test_two_sockets_are_links_0_and_1_and_close_actively(rig, echo):
    a, b = pair(rig, echo)
    assert (a.handle, b.handle) == (0, 1)
    a.close()
    b.close()
    assert a.tcp.states() == b.tcp.states() == ACTIVE_CLOSE


def test_refused_port_is_connect_fail_and_frees_the_link(rig, echo):
    assert "0, CONNECT FAIL" in str(refused(rig, echo))
    assert rig.modem.links == [None] * 6


def test_modem_keepalive_is_taken(rig, echo):
    s = rig.socket()
    assert s.keepalive(60, 30, 3) == "modem"
    s.connect(("127.0.0.1", echo.port))
    assert rig.modem.at.command(b"AT+CIPTKA?", b"+CIPTKA:").lines == [b"+CIPTKA: 1,60,30,3"]
    assert roundtrip(s, b"alive") == b"alive"
    s.close()


def test_a_failed_send_is_a_reset_then_the_links_end(rig, echo):
    # quick send too: the modem answers "0, SEND FAIL", not DATA ACCEPT
    s = rig.socket()
    s.connect(("127.0.0.1", echo.port))
    rig.proc.send_fail()
    with pytest.raises(OSError) as exc:
        s.send(b"lost")
    assert exc.value.errno == errno.ECONNRESET and "0, SEND FAIL" in str(exc.value)
    rig.modem.at.wait_for(lambda: s.state == "CLOSE_WAIT", 2000)
    assert events(s)[-1] == "PEER_FIN"       # "0, CLOSED" followed
    s.close()


# -- quick send (AT+CIPQSEND=1) -------------------------------------------------------------
def test_quick_send_is_set_at_bring_up_and_again_after_a_reboot(rig, echo):
    at = rig.modem.at
    assert at.command(b"AT+CIPQSEND?", b"+CIPQSEND:").lines == [b"+CIPQSEND: 1"]
    assert at.command(b"AT+CIPQSEND=?", b"+CIPQSEND:").lines == [b"+CIPQSEND: (0,1)"]
    before = rig.modem.reboots                # (the first boot's RDY may count)
    rig.proc.reboot()                         # the modem forgets it (normal mode again)
    assert at.wait_for(lambda: rig.modem.reboots == before + 1, 3000)
    s = rig.socket()
    s.connect(("127.0.0.1", echo.port))       # the whole bring-up again, AT+CIPQSEND=1
    assert at.command(b"AT+CIPQSEND?", b"+CIPQSEND:").lines == [b"+CIPQSEND: 1"]
    assert roundtrip(s, b"quick") == b"quick"
    s.close()


@contextlib.contextmanager
def stalled_peer():
    """A TCP server on 127.0.0.1 whose connection reads nothing until the test does, with
    a receive buffer of a few KiB: a peer whose window closes, so that nothing it is sent
    beyond that is acknowledged. Yields (port, accept), ``accept()`` its connection."""
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # the connection inherits it
    ls.bind(("127.0.0.1", 0))
    ls.listen()
    ls.settimeout(5)
    conns = []

    def accept():
        conn = ls.accept()[0]
        conns.append(conn)
        return conn

    try:
        yield ls.getsockname()[1], accept
    finally:
        for c in [*conns, ls]:
            c.close()


def drain(conn, size):
    """Read ``size`` bytes from ``conn`` (the stalled peer reading at last)."""
    got = 0
    conn.settimeout(10)
    while got < size:
        data = conn.recv(65536)
        assert data, "the modem's connection ended early"
        got += len(data)
    return got


def test_a_send_returns_on_data_accept_while_normal_modes_send_ok_waits_for_the_ack(rig):
    at = rig.modem.at
    with stalled_peer() as (port, accept):
        s = rig.socket()
        s.connect(("127.0.0.1", port))
        conn = accept()
        total = 32 * 1024                     # far beyond what the peer's window takes
        t0 = time.monotonic()
        s.sendall(bytes(total))               # every send answered by DATA ACCEPT
        quick_s = time.monotonic() - t0
        # the modem says what is not acknowledged: most of it
        line = at.command(b"AT+CIPACK=0", b"+CIPACK:").lines[0]
        txlen, acklen, nacklen = (int(v) for v in line[len(b"+CIPACK:"):].split(b","))
        assert txlen == total and acklen + nacklen == total and nacklen > total // 2, line
        # normal mode: the same kind of send is not answered until the peer acknowledges
        at.command(b"AT+CIPQSEND=0")
        with pytest.raises(CommandTimeout):
            at.command(b"AT+CIPSEND=0,5", payload=b"hello", timeout_ms=1000)
        # quick send's 23 sends of 32 KiB took less time than that one unanswered send
        assert quick_s < 1.0, quick_s
        unexpected = at.engine.unexpected
        assert drain(conn, total + 5) == total + 5
        # now acknowledged: its SEND OK comes, late (dropped: no command waits for it)
        assert at.wait_for(lambda: at.engine.unexpected > unexpected, 3000)
        at.command(b"AT+CIPQSEND=1")          # after a resync
        assert s.send(b"again") == 5 and drain(conn, 5) == 5
        s.close()


def test_normal_mode_send_ok_comes_once_the_peer_acknowledged(rig, echo):
    s = rig.socket()
    s.connect(("127.0.0.1", echo.port))
    at = rig.modem.at
    at.command(b"AT+CIPQSEND=0")
    assert at.command(b"AT+CIPSEND=0,4", payload=b"ping").lines == []   # 0, SEND OK
    assert at.command(b"AT+CIPACK=0", b"+CIPACK:").lines == [b"+CIPACK: 4,4,0"]
    assert echo.wait_for(lambda: echo.received == 4)
    assert s.recv(4) == b"ping"
    s.close()


def test_a_link_the_network_ends_reads_eof(rig, echo):
    s = rig.socket()
    s.connect(("127.0.0.1", echo.port))
    assert rig.proc.close_link(0) == "link 0 closed (0, CLOSED)"
    assert s.read() == b""
    s.close()
    assert s.tcp.states() == PASSIVE_CLOSE


def test_network_loss_then_a_connect_reopens_the_bearer(rig, echo):
    s, s2 = after_network_loss(rig, echo)
    assert events(s2) == ["BEARER_UP", "CONNECT", "CONNECTED"]
    assert rig.modem.net_open and rig.modem.bearer_reopens == 1
    assert roundtrip(s2, b"back again") == b"back again"
    s2.close()
    assert s2.tcp.states() == ACTIVE_CLOSE


@pytest.mark.parametrize("args, error, text", [
    (("--sim", "absent"), base.NoSIM, "+CME ERROR: 10"),
    (("--registration", "denied"), base.RegistrationDenied, "denied"),
    (("--pdp-fail",), base.PDPError, "at AT+CIICR: AT+CIICR -> ERROR"),
])
def test_bring_up_failures_are_named(rig_factory, args, error, text):
    assert text in start_error(rig_factory, args, error)
