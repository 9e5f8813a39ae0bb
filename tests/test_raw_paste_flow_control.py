"""Raw-paste flow control, host side, against a scripted device on a real pty: the host
never has more bytes in flight than the window the device granted. A real board's
stdin buffer holds one window; bytes beyond it are lost (or the device stops the paste).

The peer grants a window only after a pause once the previous one is used up, and
counts every byte that arrived while the host had no credit."""

from __future__ import annotations

import os
import pty
import select
import threading
import time
import tty

import pytest

from synack_host.transport.link import open_link
from synack_host.transport.repl import RawRepl

WINDOW = 16


class PasteDevice(threading.Thread):
    """The device end of the pty: answers ``\\x05A\\x01`` with ``R\\x01`` and a window
    of ``WINDOW`` bytes, grants the next window (``\\x01``) 50 ms after the previous
    one is used up, and at the host's ``\\x04`` acknowledges and "runs" the code."""

    def __init__(self, fd: int):
        super().__init__(daemon=True)
        self.fd = fd
        self.code = bytearray()
        self.overrun = 0      # most bytes that arrived ahead of a grant (no credit)
        self.max_in_flight = 0
        self.error = None

    def _read(self, timeout: float) -> bytes:
        r, _, _ = select.select([self.fd], [], [], timeout)
        return os.read(self.fd, 4096) if r else b""

    def run(self) -> None:
        try:
            self._serve()
        except Exception as e:  # reported by the test
            self.error = e

    def _serve(self) -> None:
        buf = bytearray()
        deadline = time.monotonic() + 10
        while b"\x05A\x01" not in buf:
            if time.monotonic() > deadline:
                raise TimeoutError("no raw-paste request")
            buf += self._read(0.1)
        os.write(self.fd, b"R\x01" + WINDOW.to_bytes(2, "little"))
        pending = buf[buf.index(b"\x05A\x01") + 3:]
        credit = WINDOW
        in_flight = 0
        while True:
            if not pending:
                pending = bytearray(self._read(0.1))
                if time.monotonic() > deadline:
                    raise TimeoutError("paste never ended")
                continue
            c = pending.pop(0)
            if c == 0x04:
                os.write(self.fd, b"\x04" + b"ran\x04\x04>")
                return
            self.code.append(c)
            credit -= 1
            in_flight += 1
            self.max_in_flight = max(self.max_in_flight, in_flight)
            if credit == 0:
                time.sleep(0.05)  # "executing" the buffered window before granting more
                pending += self._read(0)
                # bytes that came before the grant, the closing Ctrl-D apart: sent
                # without credit (a real board would have lost them)
                self.overrun = max(self.overrun, len(pending.rstrip(b"\x04")))
                credit, in_flight = WINDOW, 0
                os.write(self.fd, b"\x01")


@pytest.fixture
def pty_pair():
    master, slave = pty.openpty()
    tty.setraw(slave)
    tty.setraw(master)
    yield master, os.ttyname(slave)
    os.close(master)
    os.close(slave)


def test_raw_paste_never_sends_more_than_the_granted_window(pty_pair):
    master, path = pty_pair
    device = PasteDevice(master)
    device.start()
    link = open_link(path)
    try:
        code = "print(%r)\n" % ("x" * 90)   # about 6 windows of 16 bytes
        out = RawRepl(link).exec(code, timeout=10)
    finally:
        link.close()
    device.join(5)
    assert device.error is None, device.error
    assert out == b"ran"
    assert device.code == code.encode()
    assert device.overrun == 0, f"{device.overrun} bytes sent beyond a window"
    assert device.max_in_flight == WINDOW
