"""MicroPython's raw REPL, host side: break in, execute, map device tracebacks.

Break-in is deliberately forceful: Ctrl-C several times with short waits, then Ctrl-A,
retried until an overall deadline, because a main.py busy loop can swallow a single
Ctrl-C (the most reported "could not enter raw repl" failure) - but patient while the
board is still sending what the program printed, and sure that no banner of an earlier
try is left in flight when it returns. Execution prefers
raw-paste mode (flow-controlled by the device's window) and falls back to plain raw
mode on ``R\\x00`` or firmware that does not know it.
"""

from __future__ import annotations

import ast
import re
import time
from collections.abc import Callable

from .link import Link, TransportError

RAW_PROMPT = b"raw REPL; CTRL-B to exit\r\n>"
# break-in: send Ctrl-C and Ctrl-A again after this long without a byte, or this long
# of output without the raw prompt; after several tries, wait for this much quiet
RETRY_QUIET_S = 0.3
RETRY_BUSY_S = 2.0
SETTLE_QUIET_S = 0.1
# what exec() holds of a program's output (it returns it whole); exec(sink=...) streams
OUTPUT_LIMIT = 16 << 20


class BoardNotResponding(TransportError):
    pass


class DeviceError(Exception):
    """An exception raised by code on the device."""

    def __init__(self, traceback: str):
        self.traceback = traceback.strip()
        last = self.traceback.splitlines()[-1] if self.traceback else "Exception"
        m = re.match(r"([A-Za-z_][\w.]*)(?::\s?(.*))?$", last)
        self.exc_type = m.group(1) if m else "Exception"
        self.message = (m.group(2) or "") if m else last
        super().__init__(f"device raised {last}")


class RawRepl:
    def __init__(self, link: Link):
        self.link = link
        self.buf = b""
        self.raw_paste = True   # until the device says otherwise
        self.in_raw = False     # whether we put the board in the raw REPL

    # -- reading -------------------------------------------------------------------
    def _read_until(self, marker: bytes, timeout: float,
                    sink: Callable[[bytes], None] | None = None) -> bytes:
        """Bytes up to and including ``marker``. With ``sink``, what cannot be part of the
        marker is handed on as it arrives (memory stays small however much the board
        prints); without, at most OUTPUT_LIMIT bytes are held: the board's bytes are
        outside input, and a program that prints for ever must not exhaust the host."""
        deadline = time.monotonic() + timeout
        buf = bytearray(self.buf)
        start = 0             # search only what may hold a new marker: linear, not O(n^2)
        try:
            while (i := buf.find(marker, start)) < 0:
                start = max(0, len(buf) - len(marker) + 1)
                if sink is not None and start:
                    sink(bytes(buf[:start]))
                    del buf[:start]
                    start = 0
                elif len(buf) > OUTPUT_LIMIT:
                    raise TransportError(
                        f"{self.link.name}: the board printed more than {OUTPUT_LIMIT >> 20} "
                        f"MiB without {marker!r} (last bytes: {bytes(buf[-80:])!r})")
                if time.monotonic() > deadline:
                    raise BoardNotResponding(
                        f"{self.link.name}: no {marker!r} within {timeout:.1f} s "
                        f"(last bytes: {bytes(buf[-80:])!r})")
                buf += self.link.read_available()
        finally:
            self.buf = bytes(buf)   # an error leaves what came for the caller's log
        i += len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def _read_exact(self, n: int, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            if time.monotonic() > deadline:
                raise BoardNotResponding(f"{self.link.name}: raw-paste handshake timed out")
            self.buf += self.link.read_available()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    # -- modes ---------------------------------------------------------------------
    def enter(self, timeout: float = 5.0) -> None:
        """Break in and reach the raw prompt, with nothing of it left in flight."""
        deadline = time.monotonic() + timeout
        tries = 0
        while True:
            for _ in range(3):
                self.link.write(b"\r\x03")
                time.sleep(0.03)
            self.buf = b""
            self.link.read_available(0.05)  # drop what the interrupted program printed
            self.link.write(b"\r\x01")
            tries += 1
            if self._await_prompt(deadline):
                if tries > 1:
                    self._settle()
                self.in_raw = True
                return
            if time.monotonic() > deadline:
                raise BoardNotResponding(
                    f"{self.link.name}: could not enter the raw REPL within "
                    f"{timeout:.0f} s (last bytes: {self.buf[-80:]!r}); is a "
                    "MicroPython board on this port, at this baud rate?")

    def _await_prompt(self, deadline: float) -> bool:
        """Whether the raw prompt came. A board still sending what the program printed
        before the Ctrl-C (a backlog: seconds of it at 115200 baud) is waited for rather
        than interrupted again: every retry's Ctrl-A makes one more banner, and one that
        comes after the prompt we took would be read as the answer to the next exec.
        Retry when the line is quiet (a Ctrl-C the program swallowed) or after
        RETRY_BUSY_S of output without a prompt (a program that goes on printing)."""
        tail = b""           # bounded: only what may hold the prompt
        started = last = time.monotonic()
        while True:
            now = time.monotonic()
            if now > deadline or now - last > RETRY_QUIET_S or now - started > RETRY_BUSY_S:
                self.buf = tail
                return False
            got = self.link.read_available()
            if got:
                last = now
                tail = (tail + got)[-(len(RAW_PROMPT) + 80):]
                i = tail.find(RAW_PROMPT)
                if i >= 0:
                    self.buf = tail[i + len(RAW_PROMPT):]
                    return True

    def _settle(self) -> None:
        """After several break-in tries: read until the line is quiet, so that the
        banners of the earlier tries are not taken for an exec's answer."""
        last = time.monotonic()
        while time.monotonic() - last < SETTLE_QUIET_S:
            if self.link.read_available(0.01):
                last = time.monotonic()
        self.buf = b""

    def exit(self) -> None:
        self.link.write(b"\x02")
        self.in_raw = False

    def soft_reset(self, timeout: float = 10.0) -> None:
        """Ctrl-D at the raw prompt: fresh interpreter, main.py not run."""
        self.link.write(b"\x04")
        self._read_until(b"soft reboot\r\n", timeout)
        self._read_until(RAW_PROMPT, timeout)

    # -- execution -----------------------------------------------------------------
    def exec(self, code: str | bytes, timeout: float = 30.0,
             sink: Callable[[bytes], None] | None = None) -> bytes:
        """Run code; return its stdout (or, with ``sink``, hand it on as it comes and
        return b""); raise DeviceError for a device exception."""
        self.start(code, timeout)
        return self.finish(timeout, sink=sink)

    def start(self, code: str | bytes, timeout: float = 30.0) -> None:
        """Send code and return once the board runs it; its output is then readable from
        the link until finish() collects the rest (for watching long-running code)."""
        # surrogateescape: bytes that came in undecodable (argv, files) go out unchanged
        data = code.encode("utf-8", "surrogateescape") if isinstance(code, str) else code
        if self.raw_paste:
            self.link.write(b"\x05A\x01")
            answer = self._read_exact(2, timeout)
            if answer == b"R\x01":
                self._paste(data, timeout)
            else:
                self.raw_paste = False
                if answer != b"R\x00":  # firmware without raw-paste: back to the prompt
                    self.buf = answer + self.buf
                    self._read_until(b">", timeout)
        if not self.raw_paste:
            self.link.write(data + b"\x04")
            self._read_until(b"OK", timeout)

    def finish(self, timeout: float = 30.0, pending: bytes = b"",
               sink: Callable[[bytes], None] | None = None) -> bytes:
        """Wait for the code start() sent to end; return its stdout (``pending``: output
        a watcher already read but did not consume; ``sink``: as for exec) or raise
        DeviceError."""
        self.buf = pending + self.buf
        out = self._read_until(b"\x04", timeout, sink)[:-1]
        if sink is not None:
            if out:
                sink(out)
            out = b""
        err = self._read_until(b"\x04", timeout)[:-1]
        self._read_until(b">", timeout)
        if err:
            raise DeviceError(err.decode(errors="replace"))
        return out

    def _paste(self, data: bytes, timeout: float) -> None:
        window = int.from_bytes(self._read_exact(2, timeout), "little")
        credit = window
        mv = memoryview(data)
        while len(mv):
            while credit == 0 or self.buf:
                ctl = self._read_exact(1, timeout)
                if ctl == b"\x01":
                    credit += window
                elif ctl == b"\x04":  # device wants us to stop
                    self.link.write(b"\x04")
                    return
                else:
                    raise TransportError(f"{self.link.name}: raw-paste: unexpected {ctl!r}")
            n = min(credit, len(mv))
            self.link.write(bytes(mv[:n]))
            mv = mv[n:]
            credit -= n
        self.link.write(b"\x04")
        self._read_until(b"\x04", timeout)  # the device's end-of-data acknowledgement

    def eval(self, expr: str, timeout: float = 30.0):
        return self.eval_code(f"print(repr({expr}))", timeout)

    def eval_code(self, code: str, timeout: float = 30.0):
        """Run code that prints one repr(); return the value (or the text if it is not a
        Python literal)."""
        out = self.exec(code, timeout).decode(errors="replace").strip()
        try:
            return ast.literal_eval(out)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return out
