"""The virtual SIM7600 seen from a plain pyserial client, byte for byte, as a host on a
real UART would see it: power-up, echo, result formats, CME modes, the bearer, DNS, TCP
links to real servers on 127.0.0.1 (binary payloads, framed reads, URCs and where they
may appear), UART pacing, faults, signals and the CLI around it."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from atclient import BANNER, Client
from synack_host.hil.servers import EchoServer, ScriptedServer
from synack_host.sim.launch import run_modem_in_thread, start_modem

ALL_BYTES = bytes(range(256))


@pytest.fixture
def modem():
    """``modem(echo=False, **options)`` -> a Client on a fresh in-process modem, booted."""
    with contextlib.ExitStack() as stack:
        def make(echo: bool = False, **options) -> Client:
            m = stack.enter_context(run_modem_in_thread(**options))
            client = Client(m.port)
            stack.callback(client.s.close)
            client.until(b"PB DONE\r\n")
            if not echo:
                assert client.cmd("ATE0") == b"ATE0\r\r\nOK\r\n"
            client.modem = m
            return client
        yield make


@pytest.fixture
def gate_server():
    """A server that sends what a test puts in ``.send`` (a list) once ``.go`` is set."""
    go = threading.Event()
    out: list[bytes] = []

    def handler(conn):
        if go.wait(5):
            for piece in out:
                conn.sendall(piece)
        conn.recv(1)   # hold the connection until the client closes or the server stops

    with ScriptedServer(handler) as server:
        server.go, server.send = go, out
        yield server


# -- power-up, echo, basic results ---------------------------------------------------
def test_power_up_urcs_then_character_echo(modem):
    c = modem(echo=True)
    assert c.cmd("AT") == b"AT\r\r\nOK\r\n"                       # echo on at power-up
    c.s.write(b"at+c")
    assert c.until(b"at+c") == b"at+c"                            # echoed as typed
    c.s.write(b"gmm\r")
    assert c.until(b"OK\r\n") == b"gmm\r\r\nSIMCOM_SIM7600G-H\r\n\r\nOK\r\n"
    c.s.write(b"AT\r\n")                                          # CR LF ends a line too
    assert c.until(b"OK\r\n") == b"AT\r\n\r\nOK\r\n"
    assert c.cmd("ATE0") == b"ATE0\r\r\nOK\r\n"
    assert c.cmd("AT+CSQ") == b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n"
    c.s.write(b"\r\r\n\n")                                        # empty lines: ignored
    assert c.cmd("ATE1") == b"\r\nOK\r\n"
    assert c.cmd("AT") == b"AT\r\r\nOK\r\n"


def test_banner_bytes_and_identity():
    with run_modem_in_thread() as m:
        c = Client(m.port)
        try:
            assert c.until(b"PB DONE\r\n") == BANNER
            c.cmd("ATE0")
            assert c.cmd("ATI") == (b"\r\nManufacturer: SIMCOM INCORPORATED\r\n"
                                    b"\r\nModel: SIMCOM_SIM7600G-H\r\n\r\nRevision: synack-virtual"
                                    b"\r\n\r\nIMEI: 860000000000001\r\n\r\nOK\r\n")
            assert c.cmd("AT+CMEE?") == b"\r\n+CMEE: 0\r\n\r\nOK\r\n"
            assert c.cmd("AT+BOGUS", b"ERROR\r\n") == b"\r\nERROR\r\n"
        finally:
            c.s.close()


def test_port_can_be_closed_and_reopened(modem):
    c = modem()
    c.s.close()
    c2 = Client(c.s.port)
    try:
        assert c2.cmd("AT") == b"\r\nOK\r\n"
    finally:
        c2.s.close()


@pytest.mark.parametrize("sim, cmee, answer", [
    ("ready", 0, b"\r\n+CPIN: READY\r\n\r\nOK\r\n"),
    ("pin", 0, b"\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n"),
    ("absent", 0, b"\r\nERROR\r\n"),
    ("absent", 1, b"\r\n+CME ERROR: 10\r\n"),
    ("absent", 2, b"\r\n+CME ERROR: SIM not inserted\r\n"),
])
def test_cpin_in_every_sim_state_and_cmee_mode(modem, sim, cmee, answer):
    c = modem(sim=sim)
    assert c.cmd(f"AT+CMEE={cmee}") == b"\r\nOK\r\n"
    end = b"OK\r\n" if answer.endswith(b"OK\r\n") else answer[-6:]
    assert c.cmd("AT+CPIN?", end) == answer


def test_pin_unlock(modem):
    c = modem(sim="pin")
    c.cmd("AT+CMEE=1")
    assert c.cmd("AT+CPIN=0000", b"16\r\n") == b"\r\n+CME ERROR: 16\r\n"
    assert c.cmd("AT+CEREG?") == b"\r\n+CEREG: 0,0\r\n\r\nOK\r\n"   # locked: not registered
    assert c.cmd('AT+CPIN="1234"', b"+CPIN: READY\r\n") == b"\r\nOK\r\n\r\n+CPIN: READY\r\n"
    assert c.cmd("AT+CEREG?") == b"\r\n+CEREG: 0,1\r\n\r\nOK\r\n"


@pytest.mark.parametrize("registration, stat", [
    ("home", 1), ("roaming", 5), ("searching", 2), ("denied", 3), ("none", 0)])
def test_registration_states(modem, registration, stat):
    c = modem(registration=registration, rssi=7)
    for name in ("+CREG", "+CGREG", "+CEREG"):
        assert c.cmd(f"AT{name}?") == f"\r\n{name}: 0,{stat}\r\n\r\nOK\r\n".encode()
    assert c.cmd("AT+CEREG=2") == b"\r\nOK\r\n"
    assert c.cmd("AT+CEREG?") == f"\r\n+CEREG: 2,{stat}\r\n\r\nOK\r\n".encode()
    assert c.cmd("AT+CSQ") == b"\r\n+CSQ: 7,99\r\n\r\nOK\r\n"


def test_no_sim_means_no_signal_and_no_network(modem):
    c = modem(sim="absent")
    assert c.cmd("AT+CSQ") == b"\r\n+CSQ: 99,99\r\n\r\nOK\r\n"
    assert c.cmd("AT+CEREG?") == b"\r\n+CEREG: 0,0\r\n\r\nOK\r\n"
    assert c.cmd("AT+NETOPEN", b"+NETOPEN: 1\r\n") == b"\r\nOK\r\n\r\n+NETOPEN: 1\r\n"


def test_bearer_setup_commands(modem):
    c = modem()
    assert c.cmd('AT+CGDCONT=1,"IP","internet"') == b"\r\nOK\r\n"
    assert c.cmd("AT+CGDCONT?") == b'\r\n+CGDCONT: 1,"IP","internet","0.0.0.0",0,0\r\n\r\nOK\r\n'
    assert c.cmd("AT+CIPMODE=0") == b"\r\nOK\r\n"
    assert c.cmd("AT+CIPMODE=1", b"ERROR\r\n") == b"\r\nERROR\r\n"
    assert c.cmd("AT+CIPRXGET=1") == b"\r\nOK\r\n"
    assert c.cmd("AT+CIPRXGET?") == b"\r\n+CIPRXGET: 1\r\n\r\nOK\r\n"
    assert c.cmd("AT+CIPCCFG=10,0,0,0,1,0,75000") == b"\r\nOK\r\n"
    assert c.cmd("AT+IPADDR", b"ERROR\r\n") == b"\r\n+IP ERROR: Network not opened\r\n\r\nERROR\r\n"
    assert c.cmd("AT+NETOPEN", b"+NETOPEN: 0\r\n") == b"\r\nOK\r\n\r\n+NETOPEN: 0\r\n"
    assert c.cmd("AT+NETOPEN", b"ERROR\r\n") == \
        b"\r\n+IP ERROR: Network is already opened\r\n\r\nERROR\r\n"
    assert c.cmd("AT+NETOPEN?") == b"\r\n+NETOPEN: 1\r\n\r\nOK\r\n"
    assert c.cmd("AT+IPADDR") == b"\r\n+IPADDR: 10.64.0.2\r\n\r\nOK\r\n"
    assert c.cmd("AT+NETCLOSE", b"+NETCLOSE: 0\r\n") == b"\r\nOK\r\n\r\n+NETCLOSE: 0\r\n"
    assert c.cmd("AT+NETCLOSE", b"+NETCLOSE: 2\r\n") == b"\r\nOK\r\n\r\n+NETCLOSE: 2\r\n"


@pytest.mark.parametrize("options", [{"pdp_fail": True}, {"registration": "denied"},
                                     {"registration": "searching"}])
def test_netopen_fails_without_pdp_or_registration(modem, options):
    c = modem(**options)
    assert c.cmd("AT+NETOPEN", b"+NETOPEN: 1\r\n") == b"\r\nOK\r\n\r\n+NETOPEN: 1\r\n"
    assert c.cmd("AT+NETOPEN?") == b"\r\n+NETOPEN: 0\r\n\r\nOK\r\n"


def test_dns_uses_only_literals_localhost_and_the_host_map(modem):
    c = modem(hosts={"api.example": "127.0.0.7"})
    assert c.cmd('AT+CDNSGIP="localhost"') == \
        b'\r\n+CDNSGIP: 1,"localhost","127.0.0.1"\r\n\r\nOK\r\n'
    assert c.cmd('AT+CDNSGIP="API.example"') == \
        b'\r\n+CDNSGIP: 1,"API.example","127.0.0.7"\r\n\r\nOK\r\n'
    assert c.cmd('AT+CDNSGIP="10.1.2.3"') == b'\r\n+CDNSGIP: 1,"10.1.2.3","10.1.2.3"\r\n\r\nOK\r\n'
    assert c.cmd('AT+CDNSGIP="example.com"', b"ERROR\r\n") == \
        b"\r\n+CDNSGIP: 0,10\r\n\r\nERROR\r\n"   # never the system resolver


# -- TCP links -------------------------------------------------------------------------
def test_binary_round_trip_with_framed_reads(modem, echo):
    c = modem()
    c.open_link(echo.port)
    c.s.write(b"AT+CIPSEND=0,256\r")
    assert c.until(b"> ") == b"\r\n> "
    c.s.write(ALL_BYTES)                              # every byte value, none echoed
    assert c.until(b"+CIPSEND: 0,256,256\r\n") == b"\r\nOK\r\n\r\n+CIPSEND: 0,256,256\r\n"
    assert c.until(b"+CIPRXGET: 1,0\r\n") == b"\r\n+CIPRXGET: 1,0\r\n"
    assert echo.wait_for(lambda: echo.received == 256)
    assert c.cmd("AT+CIPRXGET=4,0") == b"\r\n+CIPRXGET: 4,0,256\r\n\r\nOK\r\n"
    head = b"\r\n+CIPRXGET: 2,0,100,156\r\n"
    assert c.cmd("AT+CIPRXGET=2,0,100", head + ALL_BYTES[:100] + b"\r\nOK\r\n") == \
        head + ALL_BYTES[:100] + b"\r\nOK\r\n"
    hexed = ALL_BYTES[100:110].hex().upper().encode()
    assert c.cmd("AT+CIPRXGET=3,0,10") == \
        b"\r\n+CIPRXGET: 3,0,10,146\r\n" + hexed + b"\r\nOK\r\n"
    head = b"\r\n+CIPRXGET: 2,0,146,0\r\n"
    assert c.cmd("AT+CIPRXGET=2,0,1500", head + ALL_BYTES[110:] + b"\r\nOK\r\n") == \
        head + ALL_BYTES[110:] + b"\r\nOK\r\n"
    assert c.cmd("AT+CIPRXGET=2,0,10", b"ERROR\r\n") == b"\r\n+IP ERROR: No data\r\n\r\nERROR\r\n"
    assert c.cmd("AT+CIPOPEN?", b"+CIPOPEN: 9\r\n\r\nOK\r\n").startswith(
        b'\r\n+CIPOPEN: 0,"TCP","127.0.0.1",%d,-1\r\n\r\n+CIPOPEN: 1\r\n' % echo.port)
    assert c.cmd("AT+CIPCLOSE?") == b"\r\n+CIPCLOSE: 1,0,0,0,0,0,0,0,0,0\r\n\r\nOK\r\n"
    assert c.cmd("AT+CIPCLOSE=0", b"+CIPCLOSE: 0,0\r\n") == b"\r\nOK\r\n\r\n+CIPCLOSE: 0,0\r\n"
    assert echo.wait_for(lambda: echo.closed_by_client == [True])   # our FIN came first
    assert c.cmd("AT+CIPCLOSE=0", b"ERROR\r\n") == b"\r\n+CIPCLOSE: 0,4\r\n\r\nERROR\r\n"
    assert c.cmd("AT+CIPCLOSE?") == b"\r\n+CIPCLOSE: 0,0,0,0,0,0,0,0,0,0\r\n\r\nOK\r\n"


def test_data_urc_only_when_the_buffer_was_empty(modem, gate_server):
    c = modem()
    c.open_link(gate_server.port, link=3)
    gate_server.send.extend([b"one"])
    gate_server.go.set()
    assert c.until(b"+CIPRXGET: 1,3\r\n") == b"\r\n+CIPRXGET: 1,3\r\n"
    assert c.cmd("AT+CIPRXGET=2,3,1") == b"\r\n+CIPRXGET: 2,3,1,2\r\no\r\nOK\r\n"
    assert c.cmd("AT+CIPRXGET=2,3,5") == b"\r\n+CIPRXGET: 2,3,2,0\r\nne\r\nOK\r\n"
    assert c.silent_for(0.1) == b""


def test_connect_errors(modem, echo):
    c = modem()
    c.cmd("AT+CMEE=1")
    assert c.cmd(f'AT+CIPOPEN=0,"TCP","127.0.0.1",{echo.port}', b"+CIPOPEN: 0,2\r\n") == \
        b"\r\nOK\r\n\r\n+CIPOPEN: 0,2\r\n"                          # NETOPEN not done
    c.open_link(echo.port, link=0)
    assert c.cmd(f'AT+CIPOPEN=0,"TCP","127.0.0.1",{echo.port}', b"+CIPOPEN: 0,4\r\n") == \
        b"\r\nOK\r\n\r\n+CIPOPEN: 0,4\r\n"                          # link in use
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]                              # bound, not listening
    assert c.cmd(f'AT+CIPOPEN=1,"TCP","127.0.0.1",{closed_port}', b"+CIPOPEN: 1,1\r\n") == \
        b"\r\nOK\r\n\r\n+CIPOPEN: 1,1\r\n"
    assert c.cmd('AT+CIPOPEN=2,"TCP","192.0.2.1",80', b"+CIPOPEN: 2,1\r\n") == \
        b"\r\nOK\r\n\r\n+CIPOPEN: 2,1\r\n"                          # outside 127/8: no traffic
    assert c.cmd('AT+CIPOPEN=2,"TCP","nowhere.invalid",80', b"+CIPOPEN: 2,11\r\n") == \
        b"\r\nOK\r\n\r\n+CIPOPEN: 2,11\r\n"
    for bad in ('AT+CIPOPEN=10,"TCP","127.0.0.1",80', 'AT+CIPOPEN=1,"TCP","127.0.0.1",0',
                'AT+CIPOPEN=1,"TCP","127.0.0.1"', 'AT+CIPOPEN=1,"TCP,"127.0.0.1",80'):
        assert c.cmd(bad, b"\r\n+CME ERROR: 50\r\n") == b"\r\n+CME ERROR: 50\r\n", bad
    assert c.cmd('AT+CIPOPEN=1,"UDP","127.0.0.1",80', b"ERROR\r\n") == b"\r\nERROR\r\n"
    assert c.cmd("AT+CIPSEND=5,10", b"ERROR\r\n") == b"\r\nERROR\r\n"  # plain, even in CMEE 1
    assert c.cmd("AT+CIPSEND=0,1501", b"ERROR\r\n") == b"\r\nERROR\r\n"
    assert c.cmd("AT+CIPRXGET=2,0,1501", b"ERROR: 50\r\n") == b"\r\n+CME ERROR: 50\r\n"


def test_connect_timeout(modem):
    # A listener whose accept queue is full drops SYNs: the connect hangs, on loopback.
    with socket.socket() as lst:
        lst.bind(("127.0.0.1", 0))
        lst.listen(0)
        fillers = [socket.socket() for _ in range(3)]
        for f in fillers:
            f.setblocking(False)
            f.connect_ex(lst.getsockname())
        try:
            c = modem(connect_timeout=0.4)
            c.cmd("AT+NETOPEN", b"+NETOPEN: 0\r\n")
            t0 = time.monotonic()
            assert c.cmd(f'AT+CIPOPEN=4,"TCP","127.0.0.1",{lst.getsockname()[1]}',
                         b"+CIPOPEN: 4,", timeout=3) == b"\r\nOK\r\n\r\n+CIPOPEN: 4,"
            assert c.until(b"\r\n") == b"10\r\n"
            assert 0.35 < time.monotonic() - t0 < 2
        finally:
            for f in fillers:
                f.close()


def test_peer_close_keeps_data_readable_until_cipclose(modem):
    def bye(conn):
        conn.sendall(b"bye\n")
        conn.shutdown(socket.SHUT_WR)
        conn.recv(1)

    with ScriptedServer(bye) as server:
        c = modem()
        c.open_link(server.port, link=1)
        assert c.until(b"+IPCLOSE: 1,1\r\n") == b"\r\n+CIPRXGET: 1,1\r\n\r\n+IPCLOSE: 1,1\r\n"
        assert c.cmd("AT+CIPCLOSE?") == b"\r\n+CIPCLOSE: 0,0,0,0,0,0,0,0,0,0\r\n\r\nOK\r\n"
        assert c.cmd("AT+CIPSEND=1,3", b"ERROR\r\n") == b"\r\nERROR\r\n"
        assert c.cmd("AT+CIPRXGET=2,1,2") == b"\r\n+CIPRXGET: 2,1,2,2\r\nby\r\nOK\r\n"
        assert c.cmd("AT+CIPCLOSE=1", b"ERROR\r\n") == b"\r\n+CIPCLOSE: 1,4\r\n\r\nERROR\r\n"
        assert c.cmd("AT+CIPRXGET=4,1") == b"\r\n+CIPRXGET: 4,1,0\r\n\r\nOK\r\n"  # discarded
        c.open_link(server.port, link=1)                                     # reusable
        assert c.until(b"+IPCLOSE: 1,1\r\n").endswith(b"\r\n+IPCLOSE: 1,1\r\n")
        assert server.connections == 2


def test_urcs_wait_for_a_half_typed_command_line(modem, gate_server):
    c = modem()
    c.open_link(gate_server.port)
    c.cmd("ATE1")
    c.s.write(b"AT+CS")
    assert c.until(b"AT+CS") == b"AT+CS"
    gate_server.send.append(b"x")
    gate_server.go.set()
    assert c.silent_for(0.3) == b""                     # the URC waits for the line end
    c.s.write(b"Q\r")
    assert c.until(b"+CIPRXGET: 1,0\r\n") == \
        b"Q\r\r\n+CSQ: 20,99\r\n\r\nOK\r\n\r\n+CIPRXGET: 1,0\r\n"


def test_urcs_wait_for_the_end_of_a_payload(modem, gate_server):
    c = modem()
    c.open_link(gate_server.port)
    c.s.write(b"AT+CIPSEND=0,10\r")
    assert c.until(b"> ") == b"\r\n> "
    c.s.write(b"\r\nOK\r\n")                            # payload that looks like lines
    gate_server.send.append(b"x")
    gate_server.go.set()
    assert c.silent_for(0.3) == b""
    c.s.write(b"\x00\x1b\x1a\n")                    # held URCs come in the order of events
    assert c.until(b"+CIPSEND: 0,10,10\r\n") == \
        b"\r\nOK\r\n\r\n+CIPRXGET: 1,0\r\n\r\n+CIPSEND: 0,10,10\r\n"


def test_lf_after_prompt_is_payload_not_line_end(modem, echo):
    c = modem()
    c.open_link(echo.port)
    c.s.write(b"AT+CIPSEND=0,2\r\n")               # CR LF sent together: LF ends the line
    assert c.until(b"> ") == b"\r\n> "
    c.s.write(b"\n\r")                              # after the prompt: LF is data
    c.until(b"+CIPSEND: 0,2,2\r\n")
    c.until(b"+CIPRXGET: 1,0\r\n")
    assert c.cmd("AT+CIPRXGET=2,0,10") == b"\r\n+CIPRXGET: 2,0,2,0\r\n\n\r\r\nOK\r\n"


def test_drop_data_urcs_means_the_host_must_poll(modem, echo):
    c = modem(drop_data_urcs=True)
    c.open_link(echo.port)
    c.s.write(b"AT+CIPSEND=0,4\r")
    c.until(b"> ")
    c.s.write(b"ping")
    assert c.until(b"+CIPSEND: 0,4,4\r\n") == b"\r\nOK\r\n\r\n+CIPSEND: 0,4,4\r\n"
    assert c.silent_for(0.3) == b""                     # data came back, no URC said so
    assert c.cmd("AT+CIPRXGET=2,0,10") == b"\r\n+CIPRXGET: 2,0,4,0\r\nping\r\nOK\r\n"


def test_receive_buffer_back_pressure_loses_nothing(modem):
    data = os.urandom(100_000)

    def blast(conn):
        conn.sendall(data)
        conn.recv(1)

    with ScriptedServer(blast) as server:
        c = modem()
        c.open_link(server.port)
        c.until(b"+CIPRXGET: 1,0\r\n")
        deadline = time.monotonic() + 3
        while b"65536" not in c.cmd("AT+CIPRXGET=4,0"):
            assert time.monotonic() < deadline, "buffer never filled to 64 KiB"
        got = bytearray()
        deadline = time.monotonic() + 10
        while len(got) < len(data) and time.monotonic() < deadline:
            c.s.write(b"AT+CIPRXGET=2,0,1500\r")
            answer = c.framed_read()
            if answer:        # None: the buffer ran empty for a moment ("No data")
                got += answer[0]
                assert answer[1] <= 65536
        assert bytes(got) == data


def test_creset_reboots(modem, echo):
    c = modem()
    c.open_link(echo.port)
    c.cmd("AT+CMEE=2")
    assert c.cmd("AT+CRESET") == b"\r\nOK\r\n"
    assert c.until(b"PB DONE\r\n") == BANNER
    assert c.cmd("AT") == b"AT\r\r\nOK\r\n"                      # echo back on
    assert c.cmd("AT+CMEE?") == b"AT+CMEE?\r\r\n+CMEE: 0\r\n\r\nOK\r\n"
    assert c.cmd("AT+NETOPEN?").endswith(b"\r\n+NETOPEN: 0\r\n\r\nOK\r\n")
    assert c.cmd("AT+CIPCLOSE?").endswith(b"+CIPCLOSE: 0,0,0,0,0,0,0,0,0,0\r\n\r\nOK\r\n")


def test_fault_injection(modem):
    c = modem(faults=("at+cpin|+CME ERROR: 13|2", "AT+CSQ|SILENT"))
    assert c.cmd("AT+CPIN?", b"13\r\n") == b"\r\n+CME ERROR: 13\r\n"
    assert c.cmd("AT+CPIN?", b"13\r\n") == b"\r\n+CME ERROR: 13\r\n"
    assert c.cmd("AT+CPIN?") == b"\r\n+CPIN: READY\r\n\r\nOK\r\n"
    c.s.write(b"AT+CSQ\r")
    assert c.silent_for(0.2) == b""
    assert c.cmd("AT+CSQ") == b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n"


# -- pacing ----------------------------------------------------------------------------
def test_baud_pacing_in_both_directions(modem):
    payload = os.urandom(5760)

    def send_then_sink(conn):
        conn.sendall(payload)
        while conn.recv(65536):
            pass

    with ScriptedServer(send_then_sink) as server:
        c = modem(baud=115200)
        c.open_link(server.port)
        c.until(b"+CIPRXGET: 1,0\r\n")
        t0 = time.monotonic()                   # modem -> host: 5760 bytes + framing
        c.s.write(b"AT+CIPRXGET=2,0,1440\r" * 4)
        got = b"".join(c.framed_read()[0] for _ in range(4))
        out_s = time.monotonic() - t0
        assert got == payload
        t0 = time.monotonic()                   # host -> modem: 5760 bytes of payload
        for i in range(4):
            c.s.write(b"AT+CIPSEND=0,1440\r")
            c.until(b"> ")
            c.s.write(payload[i * 1440:(i + 1) * 1440])
            c.until(b"+CIPSEND: 0,1440,1440\r\n")
        in_s = time.monotonic() - t0
    assert 0.45 < out_s < 1.5, out_s
    assert 0.45 < in_s < 1.5, in_s


# -- the process: CLI, signals, launcher -------------------------------------------------
def test_cli_first_line_link_verbose_and_sigterm(tmp_path):
    link = tmp_path / "modem"
    proc = subprocess.Popen([sys.executable, "-m", "synack_host.cli", "sim", "modem",
                             "--dialect", "sim7600", "--link", str(link), "--verbose"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = proc.stdout.readline().decode()
        assert re.fullmatch(r"/dev/pts/\d+\n", line), line
        assert os.path.realpath(link) == line.strip()
        c = Client(str(link))
        c.until(b"PB DONE\r\n")
        assert c.cmd("AT+CSQ").endswith(b"OK\r\n")
        c.s.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
        err = proc.stderr.read().decode()
        assert "-> AT+CSQ\\r" in err and "<- \\r\\n+CSQ: 20,99\\r\\n" in err
        assert not os.path.lexists(link)            # the symlink goes with the modem
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        proc.stdout.close()
        proc.stderr.close()


@pytest.mark.parametrize("args, code, message", [
    (["sim", "modem", "--bogus"], 2, "unrecognized arguments: --bogus"),
    (["sim", "modem", "--sim", "maybe"], 2, "invalid choice"),
    (["sim", "modem", "--rssi", "40"], 1, "synack: rssi must be 0..31 or 99"),
    (["sim", "modem", "--host", "a=not-an-ip"], 1, "synack: host a: 'not-an-ip'"),
    (["sim", "modem", "--fault", "AT+CSQ"], 1, "synack: bad --fault"),
    ([], 2, "synack: no command given; the commands are"),
])
def test_cli_bad_input_is_a_clear_error(args, code, message):
    res = subprocess.run([sys.executable, "-m", "synack_host.cli", *args],
                         capture_output=True, text=True, timeout=10)
    assert res.returncode == code
    assert message in res.stderr
    assert res.stdout == ""


def test_cli_version():
    res = subprocess.run([sys.executable, "-m", "synack_host.cli", "--version"],
                         capture_output=True, text=True, timeout=10)
    assert res.returncode == 0 and res.stdout.startswith("synack ")


def test_pause_resume_and_network_loss_of_a_modem_process(echo):
    with start_modem("--dialect", "sim7600") as proc:
        c = Client(proc.port)
        try:
            c.until(b"PB DONE\r\n")
            c.cmd("ATE0")
            c.open_link(echo.port, link=2)
            proc.pause()                                # a modem that stops answering
            c.s.write(b"AT\r")
            assert c.silent_for(0.3) == b""
            proc.resume()
            assert c.until(b"OK\r\n") == b"\r\nOK\r\n"  # late, but it comes
            proc.network_lost()
            assert c.until(b"UNEXPECTEDLY\r\n") == b"\r\n+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY\r\n"
            assert c.cmd("AT+CIPCLOSE?") == b"\r\n+CIPCLOSE: 0,0,0,0,0,0,0,0,0,0\r\n\r\nOK\r\n"
            assert c.cmd("AT+NETOPEN?") == b"\r\n+NETOPEN: 0\r\n\r\nOK\r\n"
        finally:
            c.s.close()
        assert proc.stop() == 0


def test_servers_record_who_closed_first():
    with EchoServer() as echo:
        with socket.create_connection(echo.address, timeout=2) as s:
            s.sendall(b"hi")
            assert s.recv(2) == b"hi"
        assert echo.wait_for(lambda: echo.closed_by_client == [True])
        held = socket.create_connection(echo.address, timeout=2)
        assert echo.wait_for(lambda: echo.connections == 2)
    held.close()
    assert echo.closed_by_client == [True, False]   # the second ended by the server's stop

    def greet_and_close(conn):
        conn.sendall(b"hello")

    with ScriptedServer(greet_and_close) as server:
        with socket.create_connection(server.address, timeout=2) as s:
            assert s.recv(10) == b"hello"
            assert s.recv(10) == b""                # the server closed first
