"""The BG96 driver on CPython drives the virtual BG96 (``synack sim modem --dialect bg96``)
over its pty to real TCP servers on 127.0.0.1: what is the BG96's own beyond the
conformance suite (tests/conformance/): its error texts, connectIDs 0 and 1, context 1
active, its keepalive setting. And the virtual BG96's own words on the wire, as a raw
serial client sees them."""

import random

import pytest

from synack.modems import base
from atclient import Client
from modemrig import (ACTIVE_CLOSE, after_network_loss, echoed, pair, refused, rig_fixtures,
                      start_error, unresolved)

rig_factory, rig = rig_fixtures("bg96", poll_ms=100)


# -- the firmware driver on the virtual BG96 ----------------------------------------------
def test_bring_up_activates_context_1(rig):
    assert rig.modem.is_up() and rig.modem.rssi_dbm == -73
    assert rig.modem.context_active()


@pytest.mark.parametrize("args, error, text", [
    (("--sim", "absent"), base.NoSIM, "+CME ERROR: 10"),
    (("--sim", "pin"), base.SIMLocked, "SIM PIN"),
    (("--registration", "denied"), base.RegistrationDenied, "denied"),
    (("--pdp-fail",), base.PDPError, "AT+QIACT=1 failed"),
], ids=["no-sim", "pin", "denied", "pdp-fail"])
def test_bring_up_failures_are_named(rig_factory, args, error, text):
    assert text in start_error(rig_factory, args, error)


def test_dns_through_the_modem(rig, echo):
    assert rig.modem.getaddrinfo("localhost", echo.port) == [
        (2, 1, 6, "", ("127.0.0.1", echo.port))]
    assert rig.modem.getaddrinfo("10.1.2.3", 1)[0][-1] == ("10.1.2.3", 1)
    exc = unresolved(rig.modem.getaddrinfo)
    assert '+QIURC: "dnsgip",565 (DNS parse failed)' in str(exc)


def test_64k_to_a_name_reaches_the_server_once(rig, echo):
    echoed(rig, echo, random.Random(1).randbytes(64 * 1024), "localhost")
    assert echo.wait_for(lambda: echo.received == 64 * 1024)


def test_two_sockets_are_connect_ids_0_and_1_and_close_actively(rig, echo):
    a, b = pair(rig, echo)
    assert {a.handle, b.handle} == {0, 1}
    a.close()
    b.close()
    assert a.tcp.states() == b.tcp.states() == ACTIVE_CLOSE


def test_connect_to_a_closed_port_is_refused_in_quectels_words(rig, echo):
    assert "+QIOPEN: 0,566 (socket connect failed)" in str(refused(rig, echo))


def test_network_loss_then_the_next_connect_reopens_the_context(rig, echo):
    s, s2 = after_network_loss(rig, echo)    # no start(): QIDEACT + QIACT by itself
    assert "BEARER_UP" in s2.tcp.format_history()[0]
    assert rig.modem.bearer_reopens == 1
    s2.close()


def test_modem_keepalive_reaches_the_virtual_modem(rig, echo):
    s = rig.socket()
    assert s.keepalive(idle=120, interval=30, count=4) == "modem"
    s.connect(("127.0.0.1", echo.port))
    reply = rig.modem.at.command(b'AT+QICFG="tcp/keepalive"', b"+QICFG:")
    assert reply.lines == [b'+QICFG: "tcp/keepalive",1,2,30,4']
    s.close()


# -- the virtual BG96's words, as a raw serial client sees them ---------------------------
@pytest.fixture
def client():
    from synack_host.sim.launch import start_modem

    proc = start_modem("--dialect", "bg96")
    c = Client(proc.port)
    try:
        assert c.until(b"APP RDY\r\n") == (b"\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: READY\r\n"
                                           b"\r\n+QUSIM: 1\r\n\r\n+QIND: SMS DONE\r\n"
                                           b"\r\nAPP RDY\r\n")
        c.cmd("ATE0")
        c.proc = proc
        yield c
    finally:
        c.s.close()
        assert proc.stop() == 0


def test_identity_and_context_words(client):
    c = client
    assert c.cmd("AT+CGMM") == b"\r\nBG96\r\n\r\nOK\r\n"
    assert c.cmd("ATI") == (b"\r\nQuectel\r\n\r\nBG96\r\n\r\nRevision: BG96MAR02A07M1G-synack"
                            b"\r\n\r\nOK\r\n")
    assert c.cmd("AT+QCCID") == b"\r\n+QCCID: 89882000000000000017\r\n\r\nOK\r\n"
    assert c.cmd('AT+QICSGP=1,1,"internet","",""') == b"\r\nOK\r\n"
    assert c.cmd("AT+QIACT?") == b"\r\nOK\r\n"
    assert c.cmd("AT+QIACT=1") == b"\r\nOK\r\n"
    assert c.cmd("AT+QIACT?") == b'\r\n+QIACT: 1,1,1,"10.64.0.2"\r\n\r\nOK\r\n'
    assert c.cmd("AT+QIACT=1", b"ERROR\r\n") == b"\r\nERROR\r\n"   # active already
    assert c.cmd('AT+QIDNSGIP=1,"localhost"', b'"127.0.0.1"\r\n') == (
        b'\r\nOK\r\n\r\n+QIURC: "dnsgip",0,1,600\r\n\r\n+QIURC: "dnsgip","127.0.0.1"\r\n')


def test_connection_words_on_the_wire(client, echo):
    c = client
    c.cmd("AT+QIACT=1")
    open0 = f'AT+QIOPEN=1,0,"TCP","127.0.0.1",{echo.port},0,0'
    assert c.cmd(open0, b"+QIOPEN: 0,0\r\n") == b"\r\nOK\r\n\r\n+QIOPEN: 0,0\r\n"
    assert c.cmd(open0, b"+QIOPEN: 0,563\r\n") == b"\r\nOK\r\n\r\n+QIOPEN: 0,563\r\n"
    c.s.write(b"AT+QISEND=0,5\r")
    assert c.until(b"> ") == b"\r\n> "
    c.s.write(b"hel\x00o")
    assert c.until(b'+QIURC: "recv",0\r\n') == b'\r\nSEND OK\r\n\r\n+QIURC: "recv",0\r\n'
    assert c.cmd("AT+QIRD=0,3") == b"\r\n+QIRD: 3\r\nhel\r\n\r\nOK\r\n"
    assert c.cmd("AT+QIRD=0,0") == b"\r\n+QIRD: 5,3,2\r\n\r\nOK\r\n"
    assert c.cmd("AT+QIRD=0,1500") == b"\r\n+QIRD: 2\r\n\x00o\r\n\r\nOK\r\n"
    assert c.cmd("AT+QIRD=0,1500") == b"\r\n+QIRD: 0\r\n\r\nOK\r\n"
    assert c.cmd("AT+QISTATE=1,0").startswith(
        b'\r\n+QISTATE: 0,"TCP","127.0.0.1",%d,' % echo.port)
    assert c.cmd("AT+QICLOSE=0") == b"\r\nOK\r\n"
    assert echo.wait_for(lambda: echo.closed_by_client == [True])
    assert c.cmd("AT+QIRD=0,10", b"ERROR\r\n") == b"\r\nERROR\r\n"
    assert c.cmd("AT+QISEND=0,1", b"ERROR\r\n") == b"\r\nERROR\r\n"


def test_network_loss_and_faults_in_quectel_words(client, echo):
    c = client
    c.cmd("AT+QIACT=1")
    c.cmd(f'AT+QIOPEN=1,3,"TCP","127.0.0.1",{echo.port},0,0', b"+QIOPEN: 3,0\r\n")
    assert c.proc.fault("send-fail").endswith('SEND FAIL, +QIURC: "closed",<link>')
    c.s.write(b"AT+QISEND=3,4\r")
    c.until(b"> ")
    c.s.write(b"lost")
    assert c.until(b'"closed",3\r\n') == b'\r\nSEND FAIL\r\n\r\n+QIURC: "closed",3\r\n'
    assert c.proc.fault("malformed-urc") == ("queued: '+QIURC: \"closed\",', '+QIURC: "
                                             "\"recv\",O', '+QIOPEN: 0', '+QIURC: \"pdpdeact\"'")
    c.until(b'"pdpdeact"\r\n')
    c.proc.network_lost()
    assert c.until(b'"pdpdeact",1\r\n') == b'\r\n+QIURC: "pdpdeact",1\r\n'
    assert c.cmd("AT+QIACT?") == b"\r\nOK\r\n"
    assert c.cmd(f'AT+QIOPEN=1,0,"TCP","127.0.0.1",{echo.port},0,0', b"+QIOPEN: 0,561\r\n")
