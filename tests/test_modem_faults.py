"""The virtual SIM7600's faults for the fault matrix (issue 10), byte for byte: a CME
error on a command, a lost final OK, a send that fails, a cut-short read, a link closed
while a send's payload comes in, malformed URCs -- injected through the control socket
of a modem process, seen by a plain serial client and by real TCP servers on 127.0.0.1.
And the peer reset the matrix makes with a server of its own (SO_LINGER 0)."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import time

import pytest

from atclient import Client
from synack_host.hil.servers import ScriptedServer
from synack_host.sim.control import FaultError


def prompt_and_send(c: Client, link: int, data: bytes) -> None:
    c.s.write(b"AT+CIPSEND=%d,%d\r" % (link, len(data)))
    assert c.until(b"> ") == b"\r\n> "
    c.s.write(data)


def test_cme_error_answers_the_next_matching_commands_per_cmee(serial_modem, echo):
    c = serial_modem
    c.cmd("AT+CMEE=1")
    c.cmd("AT+NETOPEN", b"+NETOPEN: 0\r\n")
    assert c.proc.fault("cme-error at+cipopen 3 2") == \
        "the next 2 command(s) starting with AT+CIPOPEN answered with CME error 3"
    assert c.proc.status()["pending"] == {"cme-error": 2}
    open_cmd = f'AT+CIPOPEN=0,"TCP","127.0.0.1",{echo.port}'
    assert c.cmd(open_cmd, b"\r\n", timeout=3) + c.until(b"\r\n") == b"\r\n+CME ERROR: 3\r\n"
    assert c.cmd("AT+CSQ") == b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n"   # other commands run
    c.cmd("AT+CMEE=2")
    assert c.cmd(open_cmd, b"allowed\r\n") == b"\r\n+CME ERROR: operation not allowed\r\n"
    assert c.silent_for(0.3) == b""                  # not executed: no +CIPOPEN URC
    assert echo.connections == 0
    assert c.proc.status()["pending"] == {}
    c.open_link(echo.port)                           # the third one opens
    assert echo.wait_for(lambda: echo.connections == 1)


def test_cme_error_is_a_plain_error_with_cmee_0(serial_modem):
    c = serial_modem
    c.proc.fault("cme-error AT+CSQ 10")
    assert c.cmd("AT+CSQ", b"ERROR\r\n") == b"\r\nERROR\r\n"
    assert c.cmd("AT+CSQ") == b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n"


def test_lose_ok_keeps_information_lines_payloads_and_urcs(serial_modem, echo):
    c = serial_modem
    assert c.proc.fault("lose-ok") == "the next 1 final OK(s) will be lost"
    assert c.cmd("AT+CSQ", b"99\r\n") == b"\r\n+CSQ: 20,99\r\n"
    assert c.silent_for(0.3) == b""                  # no OK
    assert c.cmd("AT") == b"\r\nOK\r\n"              # one only
    c.open_link(echo.port)
    c.proc.fault("lose-ok 2")
    prompt_and_send(c, 0, b"ping")
    # the send's OK is lost, its confirmation URC is not; the bytes went out
    assert c.until(b"+CIPSEND: 0,4,4\r\n") == b"\r\n+CIPSEND: 0,4,4\r\n"
    c.until(b"+CIPRXGET: 1,0\r\n")
    assert c.cmd("AT+CIPRXGET=2,0,10", b"ping") == b"\r\n+CIPRXGET: 2,0,4,0\r\nping"
    assert c.silent_for(0.3) == b""                  # the read's CR LF OK is lost too
    assert c.cmd("AT") == b"\r\nOK\r\n"
    assert echo.received == 4


def test_send_fail_confirms_minus_one_and_drops_the_link_silently(serial_modem, echo):
    c = serial_modem
    c.open_link(echo.port, link=2)
    assert c.proc.fault("send-fail") == \
        "the next 1 AT+CIPSEND(s) will fail: +CIPSEND: <link>,<n>,-1"
    prompt_and_send(c, 2, b"lost")
    assert c.until(b"+IPCLOSE: 2,2\r\n") == \
        b"\r\nOK\r\n\r\n+CIPSEND: 2,4,-1\r\n\r\n+IPCLOSE: 2,2\r\n"
    assert c.cmd("AT+CIPCLOSE?") == b"\r\n+CIPCLOSE: 0,0,0,0,0,0,0,0,0,0\r\n\r\nOK\r\n"
    assert c.cmd("AT+CIPSEND=2,1", b"ERROR\r\n") == b"\r\nERROR\r\n"
    time.sleep(0.3)
    assert echo.received == 0                        # the data never left
    assert echo.closed_by_client == []               # and the peer heard nothing
    c.open_link(echo.port, link=2)                   # the link can be opened again


def test_truncate_read_announces_more_than_comes(serial_modem, echo):
    c = serial_modem
    c.open_link(echo.port)
    c.s.write(b"AT+CIPSEND=0,10\r")
    c.until(b"> ")
    c.s.write(b"0123456789")
    c.until(b"+CIPRXGET: 1,0\r\n")
    assert c.proc.fault("truncate-read") == "the next 1 AT+CIPRXGET read(s) will be cut short"
    c.s.write(b"AT+CIPRXGET=2,0,8\r")
    assert c.until(b"0123") == b"\r\n+CIPRXGET: 2,0,8,2\r\n0123"
    assert c.silent_for(0.5) == b""                  # 4 of 8 bytes, then nothing
    assert c.cmd("AT") == b"\r\nOK\r\n"              # the modem still answers
    # the bytes that never came are gone; what was not announced is still there
    assert c.cmd("AT+CIPRXGET=2,0,10", b"OK\r\n") == b"\r\n+CIPRXGET: 2,0,2,0\r\n89\r\nOK\r\n"


def test_truncate_read_cuts_a_hex_read_too(serial_modem, echo):
    c = serial_modem
    c.open_link(echo.port)
    c.s.write(b"AT+CIPSEND=0,4\r")
    c.until(b"> ")
    c.s.write(b"\x00\x01\x02\x03")
    c.until(b"+CIPRXGET: 1,0\r\n")
    c.proc.fault("truncate-read")
    c.s.write(b"AT+CIPRXGET=3,0,4\r")
    assert c.until(b"\r\n0001") == b"\r\n+CIPRXGET: 3,0,4,0\r\n0001"
    assert c.silent_for(0.3) == b""


def test_ipclose_during_send_closes_the_link_while_the_payload_comes_in(serial_modem, echo):
    c = serial_modem
    c.open_link(echo.port, link=1)
    c.proc.fault("ipclose-during-send")
    prompt_and_send(c, 1, b"half")
    # the link ended while the payload came in: ERROR, then the URC at the next boundary
    assert c.until(b"+IPCLOSE: 1,1\r\n") == b"\r\nERROR\r\n\r\n+IPCLOSE: 1,1\r\n"
    assert echo.wait_for(lambda: echo.closed_by_client == [True])   # the peer got a FIN
    assert echo.received == 0
    assert c.proc.status()["pending"] == {}


def test_ipclose_during_send_with_a_reason(serial_modem, echo):
    c = serial_modem
    c.open_link(echo.port)
    assert c.proc.fault("ipclose-during-send 2").endswith("(+IPCLOSE: <link>,2)")
    prompt_and_send(c, 0, b"x")
    assert c.until(b"+IPCLOSE: 0,2\r\n") == b"\r\nERROR\r\n\r\n+IPCLOSE: 0,2\r\n"


def test_malformed_urcs_come_as_lines_at_a_line_boundary(serial_modem):
    c = serial_modem
    assert c.proc.fault("malformed-urc") == "queued: '+IPCLOSE: 0,', '+CIPRXGET: 1,O'"
    assert c.until(b"1,O\r\n") == b"\r\n+IPCLOSE: 0,\r\n\r\n+CIPRXGET: 1,O\r\n"
    c.proc.fault(r"malformed-urc +CIPSEND: 0,\xff")
    assert c.until(b"\xff\r\n") == b"\r\n+CIPSEND: 0,\xff\r\n"
    assert c.cmd("AT") == b"\r\nOK\r\n"


def test_a_peer_reset_is_ipclose_1(serial_modem):
    """The matrix's peer RST: a server that closes with SO_LINGER 0 resets the link."""
    def reset(conn: socket.socket) -> None:
        conn.recv(16)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    c = serial_modem
    with ScriptedServer(reset) as server:
        c.open_link(server.port)
        prompt_and_send(c, 0, b"hello")
        c.until(b"+CIPSEND: 0,5,5\r\n")
        assert c.until(b"+IPCLOSE: 0,1\r\n") == b"\r\n+IPCLOSE: 0,1\r\n"
    assert c.cmd("AT+CIPCLOSE=0", b"ERROR\r\n") == b"\r\n+CIPCLOSE: 0,4\r\n\r\nERROR\r\n"


def test_heal_forgets_the_new_faults(serial_modem, echo):
    c = serial_modem
    c.open_link(echo.port)
    for request in ("cme-error AT+CSQ 4 3", "lose-ok 2", "send-fail", "truncate-read",
                    "ipclose-during-send"):
        c.proc.fault(request)
    assert c.proc.status()["pending"] == {"cme-error": 3, "lose-ok": 2, "send-fail": 1,
                                          "truncate-read": 1, "ipclose-during-send": 1}
    c.proc.heal()
    assert c.proc.status()["pending"] == {}
    assert c.cmd("AT+CSQ") == b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n"
    prompt_and_send(c, 0, b"fine")
    assert c.until(b"+CIPSEND: 0,4,4\r\n") == b"\r\nOK\r\n\r\n+CIPSEND: 0,4,4\r\n"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "synack_host.cli", "sim", "fault", *args],
                          capture_output=True, text=True, timeout=30)


def test_cli_knows_the_new_faults_and_refuses_bad_ones(serial_modem):
    path = serial_modem.proc.control_path
    done = run_cli(path, "help")
    for usage in ("cme-error PREFIX CODE [COUNT]", "lose-ok [COUNT]", "send-fail [COUNT]",
                  "truncate-read [COUNT]", "ipclose-during-send [REASON]",
                  "malformed-urc [TEXT]"):
        assert usage in done.stdout
    done = run_cli(path, "lose-ok", "2")
    assert done.returncode == 0 and done.stdout == "the next 2 final OK(s) will be lost\n"
    for args, message in [
        (("cme-error",), "synack: cme-error: the command PREFIX (e.g. AT+CIPOPEN) is missing"),
        (("cme-error", "AT+CIPOPEN"), "synack: cme-error: CME error code is missing"),
        (("cme-error", "AT+CIPOPEN", "3.5"), "synack: cme-error: CME error code must be a "
                                            "whole number, got '3.5'"),
        (("send-fail", "0"), "synack: send-fail: count must be within 1..1000, got 0"),
        (("ipclose-during-send", "7"), "synack: ipclose-during-send: reason must be within"),
        (("malformed-urc", r"a\r\nb"), "synack: malformed-urc: a URC is one line"),
    ]:
        done = run_cli(path, *args)
        assert done.returncode == 1 and done.stderr.startswith(message), done.stderr
    serial_modem.proc.heal()
    assert serial_modem.cmd("AT") == b"\r\nOK\r\n"      # the refused requests did nothing


def test_a_refused_fault_raises_fault_error(serial_modem):
    with pytest.raises(FaultError, match=r"truncate-read: count must be a number"):
        serial_modem.proc.fault("truncate-read many")
