"""Open a board's port from any pyserial URL (/dev/ttyUSB0, rfc2217://host:port,
socket://host:port, spy://..., loop://) without resetting it.

ESP32 dev boards wire DTR/RTS to EN/IO0 through transistors; toggling them while opening
resets the chip (or drops it into the ROM loader). So both lines are set to their idle
level *before* the port opens, and a reset happens only when asked for.
"""

from __future__ import annotations

import os
import select
import stat
import time

import serial


class TransportError(Exception):
    """The port could not be opened or went away; the message names the port."""


class Link:
    """A thin wrapper over a pyserial port that turns its errors into TransportError."""

    def __init__(self, port: serial.SerialBase, name: str):
        self.port = port
        self.name = name
        try:   # a local port's descriptor (socket://, rfc2217:// ... have none)
            self._fd = port.fileno()
        except (AttributeError, serial.SerialException, OSError, ValueError):
            self._fd = None

    def write(self, data: bytes) -> None:
        try:
            self.port.write(data)
        except (serial.SerialException, OSError) as e:
            raise TransportError(f"{self.name}: write failed: {e}") from None

    def read_available(self, wait: float = 0.001) -> bytes:
        """Whatever arrives within ``wait`` seconds (possibly nothing)."""
        try:
            n = self.port.in_waiting
            if not n:
                self._wait(wait)
                n = self.port.in_waiting
            # read(1) with nothing waiting returns b"" at once (timeout 0), but it is
            # where pyserial notices a dead line: rfc2217:// whose server went away
            # (in_waiting alone would say 0 forever), a local port that hung up
            return self.port.read(n or 1)
        except (serial.SerialException, OSError, TypeError) as e:
            raise TransportError(f"{self.name}: port vanished: {e}") from None

    def _wait(self, wait: float) -> None:
        """Until a byte arrives or ``wait`` passes. On a descriptor select() wakes at the
        first byte; a sleep would add up to a timer tick to each of the handful of waits
        in a raw-REPL exec (bench/reports/host_tools.md: exec round trip)."""
        if self._fd is None:
            time.sleep(wait)
        else:
            select.select([self._fd], [], [], wait)

    def hard_reset(self) -> None:
        """Pulse EN through RTS, as esptool does: the chip reboots and runs boot.py and
        main.py."""
        try:
            pulse_reset(self.port)
        except (serial.SerialException, OSError) as e:
            raise TransportError(f"{self.name}: reset failed: {e}") from None

    def close(self) -> None:
        try:
            self.port.close()
        except (serial.SerialException, OSError):
            pass


def open_link(url: str, baudrate: int = 115200, reset: bool = False) -> Link:
    """Open ``url`` exclusively, DTR/RTS idle; ``reset=True`` pulses EN like esptool."""
    if "://" not in url:
        _check_device(url)
    try:
        port = serial.serial_for_url(url, baudrate=baudrate, timeout=0, do_not_open=True)
        if hasattr(port, "exclusive") and url.startswith("/"):
            port.exclusive = True
        port.dtr = False
        port.rts = False
        port.open()
    except (serial.SerialException, OSError, ValueError, OverflowError) as e:
        raise TransportError(f"cannot open {url}: {_clean(e, url)}") from None
    link = Link(port, url)
    if reset:
        link.hard_reset()
    return link


def _check_device(path: str) -> None:
    """A local port must be a terminal device: a regular file, a directory or a FIFO
    would fail later with an obscure ioctl error (or block)."""
    from ..command import describe_os_error, file_kind

    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise TransportError(f"cannot open {path}: {describe_os_error(e)}") from None
    if not stat.S_ISCHR(mode):
        kind = "regular file" if stat.S_ISREG(mode) else file_kind(mode)
        raise TransportError(f"cannot open {path}: a {kind}, not a serial port")


def _clean(e: Exception, url: str) -> str:
    """pyserial's message without the repeated ``[Errno N] could not open port URL:``."""
    text = str(e)
    if "Inappropriate ioctl" in text:
        return "not a serial port (not a terminal device)"
    for noise in (f"could not open port {url}: ", f"Could not open port {url}: "):
        text = text.replace(noise, "")
    while text.startswith("[Errno"):
        text = text.partition("] ")[2]
    return text.replace(f": {url!r}", "")


def pulse_reset(port: serial.SerialBase) -> None:
    port.rts = True   # EN low
    time.sleep(0.1)
    port.rts = False  # EN high: the chip boots
