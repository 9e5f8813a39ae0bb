"""A pseudo-terminal that behaves like the far end of a UART.

The device side (a test, the firmware on CPython, mpremote, screen ...) opens ``path`` like
a serial port; the virtual device reads and writes the master end. Two details make it
behave like a real serial line rather than like a pipe:

* the slave end stays open in this process, so a client that closes and reopens the
  port does not make the master see end-of-file (a modem does not vanish when the host
  closes its UART);
* with ``baud=N`` bytes move at most N/10 bytes/s in *each* direction (8N1 framing), so
  timing-dependent driver code (timeouts, interleaved URCs, slow binary reads) meets the
  delays it would meet on the wire.

Input is drained eagerly from the master into a bounded buffer and *released* to the
device at the paced rate, which is what a UART with a large host-side kernel buffer looks
like. Draining eagerly also lets the device ask "has the host already sent the next
byte?" (``peek``) - used to tell a CR LF line ending from a CR followed by payload data.

Output toward the host may be bounded too (``out_limit``): a host that never reads does
not make the device queue without end. Bytes that do not fit are dropped and counted in
``overrun``, as a serial line without flow control loses what the receiver has no room
for.
"""

from __future__ import annotations

from collections.abc import Callable

import os
import signal
import termios
import time
import tty

BURST = 16               # bytes a paced direction may move back to back
IN_BUFFER = 64 * 1024    # bytes drained from the master ahead of the paced release
_FOREVER = float("inf")


class TokenBucket:
    """At most ``rate`` bytes/s with bursts of ``burst`` bytes; ``rate=None`` is unpaced."""

    def __init__(self, rate: float | None, burst: int = BURST):
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = time.monotonic()

    def available(self) -> int:
        """Bytes that may move now."""
        if self.rate is None:
            return 1 << 30
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        return int(self._tokens)

    def spend(self, n: int) -> None:
        if self.rate is not None:
            self._tokens -= n

    def delay(self, want: int) -> float:
        """Seconds until ``want`` bytes may move; 0 if they may now. Aims at 3/4 of a
        burst so that waking up a little late does not waste tokens at the cap."""
        if self.rate is None:
            return 0.0
        need = min(want, self.burst * 3 // 4) - self.available()
        return max(0.0, need / self.rate)


class PtyLink:
    """The master end of a pty, non-blocking, paced like a UART when ``baud`` is given.

    The owner registers ``fileno()`` in its selector, calls ``fill()`` when it is readable
    and ``flush()`` when it is writable (``wants_fill``/``wants_flush`` say which events
    to watch), and ``delay()`` says how long it may sleep before pacing lets more bytes
    move.
    """

    def __init__(self, baud: int | None = None, link_path: str | None = None,
                 out_limit: int | None = None):
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave, termios.TCSANOW)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self._slave)
        self.link_path = link_path
        if link_path:
            if os.path.islink(link_path):
                os.unlink(link_path)
            os.symlink(self.path, link_path)
        rate = baud / 10 if baud else None
        self._tx_pace = TokenBucket(rate)
        self._rx_pace = TokenBucket(rate)
        self._out = bytearray()
        self._in = bytearray()
        self._tx_blocked = False
        self.out_limit = out_limit
        self.overrun = 0          # bytes dropped because the output queue was full
        self.bytes_in = 0
        self.bytes_out = 0

    def fileno(self) -> int:
        return self.master

    def set_baud(self, baud: int | None) -> None:
        """Pace at a new rate from now on (a UART whose divider was changed, as the
        ROM loader's CHANGE_BAUDRATE does); None: unpaced."""
        rate = baud / 10 if baud else None
        # at high rates a 16-byte burst is 0.2 ms: the loop's wake-up jitter would
        # waste tokens and run the line well below its rate; allow 2 ms worth instead
        burst = max(BURST, int(rate / 500)) if rate else BURST
        self._tx_pace = TokenBucket(rate, burst)
        self._rx_pace = TokenBucket(rate, burst)

    # -- host -> device ----------------------------------------------------------------
    def fill(self) -> None:
        """Drain what the host wrote into the input buffer (up to IN_BUFFER bytes)."""
        room = IN_BUFFER - len(self._in)
        while room > 0:
            try:
                chunk = os.read(self.master, min(room, 4096))
            except (BlockingIOError, InterruptedError):
                return
            except OSError:   # EIO: no slave open; cannot happen while we hold one
                return
            if not chunk:
                return
            self._in += chunk
            room -= len(chunk)

    def read(self) -> bytes:
        """The bytes pacing allows the device to receive now (maybe none)."""
        n = min(len(self._in), self._rx_pace.available())
        if n <= 0:
            return b""
        self._rx_pace.spend(n)
        chunk = bytes(self._in[:n])
        del self._in[:n]
        self.bytes_in += n
        return chunk

    def peek(self) -> int | None:
        """The next byte the host has already sent, without consuming it."""
        if not self._in:
            self.fill()
        return self._in[0] if self._in else None

    def discard(self, n: int) -> None:
        """Consume ``n`` already-received bytes (they still cost wire time)."""
        n = min(n, len(self._in))
        del self._in[:n]
        self._rx_pace.spend(n)
        self.bytes_in += n

    def clear_input(self) -> None:
        """Forget what the host sent but the device has not taken (device reboot)."""
        self.fill()
        self._in.clear()

    # -- device -> host ----------------------------------------------------------------
    def write(self, data: bytes) -> int:
        """Queue ``data`` for the host; ``flush()`` moves it as pacing allows. With an
        ``out_limit``, what does not fit is dropped (counted in ``overrun``); returns the
        number of bytes dropped."""
        if self.out_limit is not None and len(self._out) + len(data) > self.out_limit:
            if self._out and not self._tx_blocked:
                self.flush()     # the kernel may have room by now
            room = max(0, self.out_limit - len(self._out))
            if len(data) > room:
                dropped = len(data) - room
                self.overrun += dropped
                self._out += data[:room]
                return dropped
        self._out += data
        return 0

    def flush(self) -> None:
        while self._out:
            n = min(len(self._out), self._tx_pace.available())
            if n <= 0:
                return
            try:
                n = os.write(self.master, self._out[:n])
            except (BlockingIOError, InterruptedError):
                self._tx_blocked = True   # the host is not reading: wait for EVENT_WRITE
                return
            self._tx_blocked = False
            self._tx_pace.spend(n)
            self.bytes_out += n
            del self._out[:n]

    @property
    def pending_out(self) -> int:
        return len(self._out)

    # -- scheduling --------------------------------------------------------------------
    def wants_fill(self) -> bool:
        return len(self._in) < IN_BUFFER

    def wants_flush(self) -> bool:
        return bool(self._out) and self._tx_pace.available() > 0

    def has_input(self) -> bool:
        return bool(self._in)

    def delay(self) -> float:
        """Seconds until pacing lets a useful burst move in either direction."""
        waits = [_FOREVER]
        if self._out and not self._tx_blocked:
            waits.append(self._tx_pace.delay(len(self._out)))
        if self._in:
            waits.append(self._rx_pace.delay(len(self._in)))
        return min(waits)

    def close(self) -> None:
        for fd in (self.master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.link_path and os.path.islink(self.link_path):
            try:
                os.unlink(self.link_path)
            except OSError:
                pass


def serve_until_signalled(serve: Callable[[], None], stop: Callable[[], None],
                          close: Callable[[], None],
                          extra: dict[int, Callable[[], None]] | None = None) -> None:
    """Run ``serve()`` in the main thread until SIGTERM or SIGINT call ``stop()`` (``extra``:
    more signals and what they do), then put the old handlers back and ``close()``."""
    handlers = {signal.SIGTERM: stop, signal.SIGINT: stop, **(extra or {})}
    previous = {sig: signal.signal(sig, lambda s, f, act=act: act())
                for sig, act in handlers.items()}
    try:
        serve()
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)
        close()


class Waker:
    """A self-pipe that wakes a selector loop from a signal handler or another thread
    (a blocked select() otherwise sleeps until its timeout)."""

    def __init__(self) -> None:
        self.fd, self._w = os.pipe()
        os.set_blocking(self.fd, False)
        os.set_blocking(self._w, False)

    def wake(self) -> None:
        try:
            os.write(self._w, b"\0")
        except OSError:   # full (a wake-up is pending anyway) or closed
            pass

    def drain(self, mask: int = 0) -> None:
        try:
            while os.read(self.fd, 512):
                pass
        except OSError:
            pass

    def close(self) -> None:
        for fd in (self.fd, self._w):
            try:
                os.close(fd)
            except OSError:
                pass
