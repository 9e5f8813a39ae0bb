"""The virtual SIM7600 seen from a plain serial client, byte for byte: echo, result
formats, the prompt, binary-framed reads, URCs, UART pacing, faults and the CLI."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import pytest

from serialclient import SerialClient
from synack_host.hil.servers import EchoServer
from synack_host.sim.launch import LaunchError, start_modem


class Port(SerialClient):
    """A serial client that sends AT commands."""

    default_timeout = 3.0

    def cmd(self, text: str, until: bytes = b"OK\r\n", timeout: float = 3.0) -> bytes:
        self.s.write(text.encode() + b"\r")
        return self.until(until, timeout)

    def boot(self) -> None:
        self.until(b"PB DONE\r\n")


@pytest.fixture
def modem_port():
    procs = []

    def make(*args):
        proc = start_modem("--dialect", "sim7600", *args)
        procs.append(proc)
        port = Port(proc.port)
        port.boot()
        return port

    yield make
    for p in procs:
        p.stop()


def test_power_on_banner_echo_and_formats(modem_port):
    p = modem_port()
    assert p.cmd("AT+CSQ") == b"AT+CSQ\r\r\n+CSQ: 20,99\r\n\r\nOK\r\n"  # echo on at power-up
    assert p.cmd("ATE0") == b"ATE0\r\r\nOK\r\n"
    assert p.cmd("AT+CSQ") == b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n"
    assert p.cmd("AT+BOGUS", b"ERROR\r\n") == b"\r\nERROR\r\n"


def test_sim_absent_in_every_cmee_mode(modem_port):
    p = modem_port("--sim", "absent")
    p.cmd("ATE0")
    assert p.cmd("AT+CPIN?", b"ERROR\r\n").endswith(b"\r\nERROR\r\n")
    p.cmd("AT+CMEE=1")
    assert p.cmd("AT+CPIN?", b"10\r\n") == b"\r\n+CME ERROR: 10\r\n"
    p.cmd("AT+CMEE=2")
    assert p.cmd("AT+CPIN?", b"inserted\r\n") == b"\r\n+CME ERROR: SIM not inserted\r\n"


def test_socket_session_bytes(modem_port):
    p = modem_port()
    p.cmd("ATE0")
    p.cmd("AT+CIPRXGET=1")
    assert p.cmd("AT+CIPOPEN=0,\"TCP\",\"127.0.0.1\",9", b"+CIPOPEN: 0,2\r\n").endswith(
        b"\r\nOK\r\n\r\n+CIPOPEN: 0,2\r\n")  # network not opened yet
    assert p.cmd("AT+NETOPEN", b"+NETOPEN: 0\r\n") == b"\r\nOK\r\n\r\n+NETOPEN: 0\r\n"
    assert b"already opened" in p.cmd("AT+NETOPEN", b"ERROR\r\n")
    with EchoServer() as echo:
        p.cmd(f'AT+CIPOPEN=0,"TCP","localhost",{echo.port}', b"+CIPOPEN: 0,0\r\n")
        p.s.write(b"AT+CIPSEND=0,262\r")
        assert p.until(b"> ") == b"\r\n> "
        data = bytes(range(256)) + b"\r\nOK\r\n"
        p.s.write(data)
        assert p.until(b"+CIPSEND: 0,262,262\r\n") == b"\r\nOK\r\n\r\n+CIPSEND: 0,262,262\r\n"
        assert p.until(b"+CIPRXGET: 1,0\r\n") == b"\r\n+CIPRXGET: 1,0\r\n"
        assert p.cmd("AT+CIPRXGET=4,0") == b"\r\n+CIPRXGET: 4,0,262\r\n\r\nOK\r\n"
        head = b"\r\n+CIPRXGET: 2,0,200,62\r\n"
        got = p.cmd("AT+CIPRXGET=2,0,200", head + data[:200] + b"\r\nOK\r\n")
        assert got == head + data[:200] + b"\r\nOK\r\n"
        rest = p.cmd("AT+CIPRXGET=2,0,1500", b"OK\r\n\r\nOK\r\n")  # data itself ends "OK\r\n"
        assert rest == b"\r\n+CIPRXGET: 2,0,62,0\r\n" + data[200:] + b"\r\nOK\r\n"
        assert p.cmd("AT+CIPRXGET=2,0,10", b"ERROR\r\n") == \
            b"\r\n+IP ERROR: No data\r\n\r\nERROR\r\n"
        assert p.cmd("AT+CIPCLOSE?") == b"\r\n+CIPCLOSE: 1,0,0,0,0,0,0,0,0,0\r\n\r\nOK\r\n"
        assert p.cmd("AT+CIPCLOSE=0", b"+CIPCLOSE: 0,0\r\n") == \
            b"\r\nOK\r\n\r\n+CIPCLOSE: 0,0\r\n"
        assert p.cmd("AT+CIPCLOSE=0", b"ERROR\r\n") == b"\r\n+CIPCLOSE: 0,4\r\n\r\nERROR\r\n"
    assert echo.closed_by_client == [True]  # our FIN reached the server first


def test_connect_refused_and_bad_parameters(modem_port):
    p = modem_port()
    p.cmd("ATE0")
    p.cmd("AT+CMEE=1")
    p.cmd("AT+NETOPEN", b"+NETOPEN: 0\r\n")
    with EchoServer() as echo:
        port = echo.port
    assert p.cmd(f'AT+CIPOPEN=3,"TCP","127.0.0.1",{port}', b"+CIPOPEN: 3,1\r\n").endswith(
        b"+CIPOPEN: 3,1\r\n")
    assert p.cmd('AT+CIPOPEN=10,"TCP","127.0.0.1",80', b"ERROR: 50\r\n") == \
        b"\r\n+CME ERROR: 50\r\n"
    assert p.cmd('AT+CIPOPEN=0,"TCP","192.0.2.1",80', b"+CIPOPEN: 0,1\r\n").endswith(
        b"+CIPOPEN: 0,1\r\n")  # outside 127.0.0.0/8: refused without any traffic
    assert p.cmd('AT+CDNSGIP="nowhere.invalid"', b"ERROR\r\n") == \
        b"\r\n+CDNSGIP: 0,10\r\n\r\nERROR\r\n"


def test_fault_injection(modem_port):
    p = modem_port("--fault", "AT+CSQ|+CME ERROR: 100", "--fault", "ATI|SILENT|1")
    p.cmd("ATE0")
    assert p.cmd("AT+CSQ", b"100\r\n") == b"\r\n+CME ERROR: 100\r\n"
    assert p.cmd("AT+CSQ") == b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n"  # count 1: then normal
    p.s.write(b"ATI\r")
    time.sleep(0.3)
    assert p.s.read(4096) == b""  # SILENT
    assert b"Manufacturer" in p.cmd("ATI")


def test_baud_pacing_is_a_real_uart_rate(modem_port):
    p = modem_port("--baud", "115200")
    p.cmd("ATE0")
    t0 = time.monotonic()
    for _ in range(100):
        p.cmd("ATI")  # ~100 bytes of answer each
    dt = time.monotonic() - t0
    rate = 100 * len(b"\r\nManufacturer: SIMCOM INCORPORATED\r\n\r\nModel: SIMCOM_SIM7600G-H"
                     b"\r\n\r\nRevision: synack-virtual\r\n\r\nIMEI: 860000000000001\r\n"
                     b"\r\nOK\r\n") / dt
    assert 8000 < rate <= 11520 * 1.05, f"{rate:.0f} B/s is not a 115200-baud line"


def test_cli_prints_pty_then_stops_on_sigterm():
    proc = subprocess.Popen([sys.executable, "-m", "synack_host.cli", "sim", "modem"],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert re.fullmatch(r"/dev/pts/\d+\n", line), line
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(5) == 0
    proc.stdout.close()


@pytest.mark.parametrize("args, message", [
    (["sim", "modem", "--fault", "nonsense"], "synack: bad --fault"),
    (["sim", "modem", "--host", "nope"], "synack: --host wants NAME=IP"),
])
def test_cli_bad_input_is_a_clear_error(args, message):
    res = subprocess.run([sys.executable, "-m", "synack_host.cli", *args],
                         capture_output=True, text=True, timeout=10)
    assert res.returncode != 0
    assert message in res.stderr


def test_launch_failure_is_reported():
    with pytest.raises(LaunchError) as exc:
        start_modem("--dialect", "sim7600", "--fault", "x")
    assert "bad --fault" in str(exc.value)
    assert str(exc.value).startswith("virtual modem did not start: ")


def test_board_launch_failure_names_the_board():
    from synack_host.sim.launch_board import start_board

    with pytest.raises(LaunchError) as exc:
        start_board("--fs", "/proc/synack-flash")     # a directory that cannot be made
    assert str(exc.value).startswith("virtual board did not start: "
                                     "synack: --fs /proc/synack-flash: cannot create it: "), \
        exc.value


def test_selftest_command_passes():
    res = subprocess.run([sys.executable, "-m", "synack_host.cli", "sim", "selftest",
                          "--baud", "0", "--bytes", "3000"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "FIN_WAIT_1 -> FIN_WAIT_2 -> TIME_WAIT -> CLOSED" in res.stdout
    assert "CLOSE_WAIT -> LAST_ACK -> CLOSED" in res.stdout
    assert res.stdout.strip().endswith("selftest passed")
