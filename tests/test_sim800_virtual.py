"""The SIM800 driver (firmware on CPython) against the virtual SIM800 process
(``synack sim modem --dialect sim800``) over its pty, to real TCP servers on 127.0.0.1:
what is the SIM800's own beyond the conformance suite (tests/conformance/): its identity
and AT+CIFSR address, its error texts (``+CDNSGIP: 0,8``, ``0, CONNECT FAIL``, ``0, SEND
FAIL``), links 0 and 1, its keepalive setting, the ``<n>, CLOSED`` of a link the network
ends, and the bearer reopened after network loss."""

import errno
import random

import pytest

from synack import socket as synsocket
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
    s = rig.socket()
    s.connect(("127.0.0.1", echo.port))
    rig.proc.send_fail()
    with pytest.raises(OSError) as exc:
        s.send(b"lost")
    assert exc.value.errno == errno.ECONNRESET and "0, SEND FAIL" in str(exc.value)
    rig.modem.at.wait_for(lambda: s.state == "CLOSE_WAIT", 2000)
    assert events(s)[-1] == "PEER_FIN"       # "0, CLOSED" followed
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
