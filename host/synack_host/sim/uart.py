"""The receive side of the virtual board's ``machine.UART(1)``, as an ESP32 has it.

An ESP32 UART moves received bytes into a ring buffer of ``rxbuf`` bytes (MicroPython's
``UART(..., rxbuf=)``, 256 by default). Bytes that arrive while it is full are lost (an
*overrun*: the hardware FIFO overflows and the driver drops it), and ``readinto`` returns
what is there, or None. Every engine of the virtual board gives device code that UART:

* a receiver thread reads the pty (the virtual modem's port) as soon as the device code
  opens ``UART(1)`` - and not before, so that a board's spare engine never takes bytes
  meant for the running one - and keeps at most ``rxbuf`` bytes;
* bytes arrive at the UART's line rate (``UART(1, baudrate)``: 8N1, baudrate/10 bytes/s)
  however fast the modem's side wrote them: a 1500-byte reply takes 130 ms at 115200
  baud, as on the wire, so the device has the time a real board has to read it, and no
  more;
* what does not fit is dropped and counted; each overrun is written to the board's log
  (the board process's stderr): ``UART(1) overrun: 1304 bytes lost (rxbuf 256 full)``.

``RxBuffer`` keeps the bytes in this process (cpython and micropython engines: device
code calls ``read``/``any``). ``PipeRx`` hands them to a unix-port VM through a pipe
(the VM reads the pipe as its UART); the pipe's fill level (FIONREAD) is the buffer's.
Writes are not modelled here: the engines write to the pty directly.
"""

from __future__ import annotations

import fcntl
import os
import select
import struct
import termios
import threading
import time
from collections.abc import Callable

DEFAULT_RXBUF = 256          # MicroPython's default UART rxbuf on an ESP32
MAX_RXBUF = 32 * 1024        # the largest buffer the model takes (a pipe holds 64 KiB)
_READ = 4096
_FIFO = 128                  # an ESP32 UART's hardware FIFO: bytes that may arrive together
_TICK = 0.002                # how often bytes on the wire are delivered (s)


def log(text: str) -> None:
    """A line in the board's log: the engine process's stderr is the board's."""
    try:
        os.write(2, f"synack board: {text}\n".encode())
    except OSError:
        pass


def rxbuf_size(value) -> int:
    """``rxbuf=`` as MicroPython's UART takes it (None / absent: the default)."""
    if value is None:
        return DEFAULT_RXBUF
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError("rxbuf must be a positive integer")
    return min(value, MAX_RXBUF)


def open_port(path: str) -> int:
    """The pty of ``--uart1``, read side, non-blocking. Like a UART's initialisation it
    drops what waited there before (bytes sent to a UART that was not running are lost)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        termios.tcflush(fd, termios.TCIFLUSH)
    except termios.error:
        pass
    return fd


class _Receiver:
    """The thread that moves bytes from the port into the buffer, and the overrun count."""

    name = "UART(1)"

    def __init__(self, fd: int, rxbuf: int = DEFAULT_RXBUF, baud: int | None = None):
        self.fd = fd
        self.rxbuf = rxbuf
        self.baud = baud         # line rate: baud/10 bytes/s (None: as fast as written)
        self._wire = bytearray()  # read from the pty, not yet "arrived" at the line rate
        self._credit = 0.0
        self._stamp = time.monotonic()
        self.received = 0        # bytes taken into the buffer
        self.overrun = 0         # bytes lost because the buffer was full
        self.overruns = 0        # how many times that happened
        self._lost_now = 0       # bytes lost in the overrun going on
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="uart-rx", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def level(self) -> int:
        raise NotImplementedError

    def _put(self, data: bytes) -> None:
        raise NotImplementedError

    def accept(self, data: bytes) -> int:
        """Take what fits; count the rest as lost. Returns the bytes taken."""
        free = max(0, self.rxbuf - self.level())
        taken = data[:free]
        if taken:
            self._put(taken)
            self.received += len(taken)
        lost = len(data) - len(taken)
        if lost:
            if not self._lost_now:
                self.overruns += 1
            self._lost_now += lost
            self.overrun += lost
        return len(taken)

    def _settle(self) -> None:
        """An overrun ends when the device has made room again: log it then, once."""
        if self._lost_now and self.level() < self.rxbuf:
            log(f"{self.name} overrun: {self._lost_now} bytes lost (rxbuf {self.rxbuf} "
                f"full; {self.overrun} bytes lost in {self.overruns} overruns so far)")
            self._lost_now = 0

    def _arrived(self) -> bytes:
        """The bytes of ``_wire`` that the line rate has delivered by now."""
        now = time.monotonic()
        if not self.baud:
            n = len(self._wire)
        else:
            self._credit = min(self._credit + (now - self._stamp) * self.baud / 10,
                               max(len(self._wire), _FIFO))
            n = min(int(self._credit), len(self._wire))
            self._credit -= n
        self._stamp = now
        out = bytes(self._wire[:n])
        del self._wire[:n]
        return out

    def _run(self) -> None:
        while not self._stop:
            idle = not self._wire
            try:
                ready = select.select([self.fd], [], [], 0.05 if idle else _TICK)[0]
                if ready and len(self._wire) < _READ:
                    self._wire += os.read(self.fd, _READ)
            except BlockingIOError:
                pass
            except OSError:       # the modem's pty went away: nothing more arrives
                time.sleep(0.1)
                continue
            if idle:   # an idle line saves up no bytes: the first starts arriving now
                self._credit = 1.0
                self._stamp = time.monotonic()
            data = self._arrived()
            if data:
                self.accept(data)
            self._settle()

    def close(self) -> None:
        """Stop receiving (the thread ends within 50 ms) and close the port."""
        self._stop = True
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(1.0)
        try:
            os.close(self.fd)
        except OSError:
            pass
        self._settle()
        if self._lost_now:
            log(f"{self.name} overrun: {self._lost_now} bytes lost (rxbuf {self.rxbuf} "
                f"full), not read before the UART closed")
            self._lost_now = 0


class RxBuffer(_Receiver):
    """The buffer in this process: ``any()``, ``read(n, timeout)`` for device code."""

    def __init__(self, fd: int, rxbuf: int = DEFAULT_RXBUF, baud: int | None = None):
        super().__init__(fd, rxbuf, baud)
        self._buf = bytearray()
        self._cond = threading.Condition()

    def level(self) -> int:
        return len(self._buf)

    def accept(self, data: bytes) -> int:
        with self._cond:
            taken = super().accept(data)
            if taken:
                self._cond.notify_all()
            return taken

    def _put(self, data: bytes) -> None:
        self._buf += data

    def any(self) -> int:
        return len(self._buf)

    def resize(self, rxbuf: int) -> None:
        with self._cond:
            self.rxbuf = rxbuf
            del self._buf[rxbuf:]

    def read(self, n: int = -1, timeout_s: float = 0.0, line: bool = False,
             check: Callable[[], None] | None = None) -> bytes:
        """Up to ``n`` bytes (-1: what is there once something is), waiting up to
        ``timeout_s`` for them (``line``: up to and including a LF). ``check`` is called
        at least every 50 ms while waiting (it may raise, e.g. KeyboardInterrupt)."""
        end = time.monotonic() + max(0.0, timeout_s)
        with self._cond:
            while True:
                buf = self._buf
                if line:
                    i = buf.find(b"\n")
                    have = i + 1 if i >= 0 else (len(buf) if 0 < n <= len(buf) else 0)
                    if 0 < n < have:
                        have = n
                elif n < 0:
                    have = len(buf)
                else:
                    have = n if len(buf) >= n else 0
                left = end - time.monotonic()
                if have or left <= 0:
                    if not have:   # timed out: what is there (up to n)
                        have = len(buf) if n < 0 else min(n, len(buf))
                    out = bytes(buf[:have])
                    del buf[:have]
                    return out
                self._cond.wait(min(0.05, left))
                if check is not None:
                    check()


class PipeRx(_Receiver):
    """The buffer is a pipe to a unix-port VM: the VM reads ``read_fd`` (non-blocking:
    ``readinto`` gives None when it is empty) and its fill level is the buffer's."""

    def __init__(self, fd: int, write_fd: int, rxbuf: int = DEFAULT_RXBUF,
                 baud: int | None = None):
        super().__init__(fd, rxbuf, baud)
        self.write_fd = write_fd

    def level(self) -> int:
        try:
            raw = fcntl.ioctl(self.write_fd, termios.FIONREAD, b"\0\0\0\0")
        except OSError:
            return 0
        return struct.unpack("i", raw)[0]

    def _put(self, data: bytes) -> None:
        try:
            os.write(self.write_fd, data)   # level + data <= MAX_RXBUF < the pipe's size
        except OSError:
            pass                            # the VM is gone
