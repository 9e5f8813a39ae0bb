"""Faults injected into a running virtual modem process through its control socket
(``synack sim modem --control``), seen byte for byte by a serial client and by real TCP
servers on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from atclient import BANNER, Client
from synack_host.sim.control import FaultError


def send(c: Client, link: int, data: bytes) -> None:
    c.s.write(b"AT+CIPSEND=%d,%d\r" % (link, len(data)))
    c.until(b"> ")
    c.s.write(data)
    c.until(b"+CIPSEND: %d,%d,%d\r\n" % (link, len(data), len(data)))


def test_drop_registration_loses_bearer_and_links_then_comes_back(serial_modem, echo):
    c = serial_modem
    c.cmd("AT+CREG=1")
    c.open_link(echo.port)
    assert c.proc.drop_registration(1.0) == "registration lost for 1 s"
    got = c.until(b"+CREG: 2\r\n")
    assert b"+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY\r\n" in got
    assert c.cmd("AT+CREG?") == b"\r\n+CREG: 1,2\r\n\r\nOK\r\n"
    assert c.cmd("AT+NETOPEN", b"+NETOPEN: 1\r\n").endswith(b"+NETOPEN: 1\r\n")
    assert c.proc.status()["links"] == {}
    assert c.until(b"+CREG: 1\r\n", timeout=3) == b"\r\n+CREG: 1\r\n"   # coverage is back
    c.open_link(echo.port)
    send(c, 0, b"back")
    assert echo.wait_for(lambda: echo.received == 4)
    assert echo.connections == 2


def test_drop_registration_until_restored(serial_modem):
    c = serial_modem
    c.proc.drop_registration()
    time.sleep(0.3)
    assert c.cmd("AT+CGREG?") == b"\r\n+CGREG: 0,2\r\n\r\nOK\r\n"
    assert c.proc.restore_registration() == "registered"
    assert c.cmd("AT+CGREG?") == b"\r\n+CGREG: 0,1\r\n\r\nOK\r\n"


def test_close_link_sends_fin_to_peer_and_ipclose_to_host(serial_modem, echo):
    c = serial_modem
    c.open_link(echo.port, link=3)
    assert c.proc.close_link(3) == "link 3 closed (+IPCLOSE: 3,1)"
    assert c.until(b"+IPCLOSE: 3,1\r\n") == b"\r\n+IPCLOSE: 3,1\r\n"
    assert echo.wait_for(lambda: echo.closed_by_client == [True])   # the peer saw a FIN
    with pytest.raises(FaultError, match=r"link 3 is not open"):
        c.proc.close_link(3)
    with pytest.raises(FaultError, match=r"link must be within 0..9"):
        c.proc.close_link(12)


def test_lose_urc_loses_exactly_the_next_data_urc(serial_modem, echo):
    c = serial_modem
    c.open_link(echo.port)
    assert c.proc.lose_data_urcs(1) == "the next 1 data URC(s) will be lost"
    send(c, 0, b"one")
    assert c.silent_for(0.3) == b""                          # the echo came, unannounced
    assert c.cmd("AT+CIPRXGET=2,0,10") == b"\r\n+CIPRXGET: 2,0,3,0\r\none\r\nOK\r\n"
    send(c, 0, b"two")
    assert c.until(b"+CIPRXGET: 1,0\r\n") == b"\r\n+CIPRXGET: 1,0\r\n"   # only one lost


def test_reboot_forgets_links_and_says_rdy(serial_modem, echo):
    c = serial_modem
    c.open_link(echo.port)
    assert c.proc.reboot() == "rebooting"
    assert c.until(b"PB DONE\r\n") == BANNER
    assert c.cmd("AT") == b"AT\r\r\nOK\r\n"                  # echo is on again
    assert c.cmd("AT+NETOPEN?").endswith(b"\r\n+NETOPEN: 0\r\n\r\nOK\r\n")
    assert echo.closed_by_client == []                        # the peer heard nothing


def test_delay_replies_answers_the_next_commands_late(serial_modem):
    c = serial_modem
    c.proc.delay_replies(0.5, count=2)
    for _ in range(2):
        t0 = time.monotonic()
        assert c.cmd("AT", timeout=3) == b"\r\nOK\r\n"
        assert time.monotonic() - t0 >= 0.5
    t0 = time.monotonic()
    c.cmd("AT")
    assert time.monotonic() - t0 < 0.4


def test_garbage_arrives_between_lines(serial_modem):
    c = serial_modem
    assert c.proc.inject_garbage(b"\xff\x00noise\r\n") == "9 byte(s) queued"
    assert c.until(b"noise\r\n") == b"\xff\x00noise\r\n"
    assert c.cmd("AT") == b"\r\nOK\r\n"


def test_status_reports_registration_bearer_and_links(serial_modem, echo):
    c = serial_modem
    c.open_link(echo.port, link=1)
    status = c.proc.status()
    assert status["registration"] == 1 and status["bearer"] == "open"
    assert status["links"] == {"1": "open"}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "synack_host.cli", "sim", "fault", *args],
                          capture_output=True, text=True, timeout=30)


def test_cli_fault_command_and_its_errors(serial_modem, tmp_path):
    path = serial_modem.proc.control_path
    done = run_cli(path, "delay", "0.1")
    assert done.returncode == 0 and done.stdout == "the next 1 command(s) answered 0.1 s late\n"
    done = run_cli(path, "help")
    assert "drop-registration [SECONDS]" in done.stdout
    for args, message in [
        (("explode",), "synack: unknown fault 'explode'; known: close-link, cme-error, delay"),
        (("delay", "soon"), "synack: delay: delay in seconds must be a number, got 'soon'"),
        (("garbage",), "synack: garbage: garbage needs the TEXT to send"),
    ]:
        done = run_cli(path, *args)
        assert done.returncode == 1 and done.stderr.startswith(message), done.stderr
    done = run_cli(str(tmp_path / "nothing"), "status")
    assert done.returncode == 1
    assert "cannot reach the modem's control socket" in done.stderr
    assert serial_modem.cmd("AT") == b"\r\nOK\r\n"       # the bad requests did nothing to the modem


def test_heal_forgets_pending_faults(serial_modem, echo):
    c = serial_modem
    c.open_link(echo.port)
    c.proc.drop_registration()
    c.until(b"UNEXPECTEDLY\r\n")
    c.proc.lose_data_urcs(5)
    c.proc.delay_replies(2.0, count=5)
    assert c.proc.heal() == "no fault pending"
    t0 = time.monotonic()
    assert c.cmd("AT+CREG?", timeout=1) == b"\r\n+CREG: 0,1\r\n\r\nOK\r\n"
    assert time.monotonic() - t0 < 0.5
    c.open_link(echo.port)
    send(c, 0, b"x")
    assert c.until(b"+CIPRXGET: 1,0\r\n") == b"\r\n+CIPRXGET: 1,0\r\n"
