"""``synack sim rig``: a board and a modem wired together, run as a user would, and the
firmware on the board reaching a local echo server through the modem."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from synack_host.hil.servers import EchoServer
from synack_host.sim.rig import start_rig
from synack_host.transport import RawRepl, open_link
from test_board_commands import synack

AT_ROUND_TRIP = """
import machine, time
u = machine.UART(1, 115200)
u.write(b'AT\\r')
t = time.ticks_ms()
got = b''
while b'OK' not in got and time.ticks_diff(time.ticks_ms(), t) < 3000:
    got += u.read() or b''
print(got.strip().decode())
"""


def test_sim_rig_command_prints_both_ports_and_stops_on_sigint():
    proc = subprocess.Popen([sys.executable, "-m", "synack_host.cli", "sim", "rig", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ports = json.loads(proc.stdout.readline())
        assert set(ports) == {"board", "modem", "control"}
        link = open_link(ports["board"])
        try:
            repl = RawRepl(link)
            repl.enter()
            assert repl.exec(AT_ROUND_TRIP).decode().split()[-1] == "OK"
            # the rig's modem takes faults from the shell while it runs
            fault = synack("sim", "fault", ports["control"], "delay", "1")
            assert fault.returncode == 0, fault.stderr
            t0 = time.monotonic()
            assert repl.exec(AT_ROUND_TRIP).decode().split()[-1] == "OK"
            assert time.monotonic() - t0 >= 1.0
            repl.exit()
        finally:
            link.close()
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err


def test_sim_rig_bad_directory_is_a_clear_error():
    res = synack("sim", "rig", "--fs", "/proc/synack-flash")    # cannot be made (a missing
    assert res.returncode == 1, res.stderr                        # one is made, as a new flash)
    assert "synack: --fs /proc/synack-flash: cannot create it: " in res.stderr


DEPLOYED_FIRMWARE_ECHO = """
import sys
sys.path.insert(0, '/lib')
import machine
from synack import socket
from synack.modems.sim7600 import SIM7600
modem = SIM7600(machine.UART(1, 115200), apn='internet')
modem.start(register_timeout_ms=5000)
socket.use(modem)
s = socket.socket()
s.settimeout(10)
s.connect(socket.getaddrinfo('127.0.0.1', %d)[0][-1])
s.write(b'hello through the rig')
print(s.read(21).decode())
s.close()
print(' '.join(s.tcp.states()))
"""


def test_deployed_firmware_opens_a_socket_through_the_rig(flash):
    with EchoServer() as echo, start_rig(fs=str(flash)) as rig:
        res = synack("deploy", "-p", rig.board.port)
        assert res.returncode == 0, res.stderr
        link = open_link(rig.board.port)
        try:
            repl = RawRepl(link)
            repl.enter()
            t0 = time.monotonic()
            lines = repl.exec(DEPLOYED_FIRMWARE_ECHO % echo.port, timeout=60).decode().split("\n")
            repl.exit()
        finally:
            link.close()
        assert lines[0].strip() == "hello through the rig"
        assert lines[1].split()[:3] == ["CLOSED", "SYN_SENT", "ESTABLISHED"]
        assert lines[1].split()[-1] == "CLOSED"
        assert time.monotonic() - t0 < 30
        assert rig.dead() is None
