"""MicroPython's raw REPL, host side: break in, execute, map device tracebacks.

Break-in is deliberately forceful: Ctrl-C several times with short waits, then Ctrl-A,
retried until an overall deadline, because a main.py busy loop can swallow a single
Ctrl-C (the most reported "could not enter raw repl" failure). Execution prefers
raw-paste mode (flow-controlled by the device's window) and falls back to plain raw
mode on ``R\\x00`` or firmware that does not know it.
"""

from __future__ import annotations

import ast
import re
import time

from .link import Link, TransportError

RAW_PROMPT = b"raw REPL; CTRL-B to exit\r\n>"


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
    def _read_until(self, marker: bytes, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while marker not in self.buf:
            if time.monotonic() > deadline:
                raise BoardNotResponding(
                    f"{self.link.name}: no {marker!r} within {timeout:.1f} s "
                    f"(last bytes: {self.buf[-80:]!r})")
            self.buf += self.link.read_available()
        i = self.buf.index(marker) + len(marker)
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
        deadline = time.monotonic() + timeout
        while True:
            for _ in range(3):
                self.link.write(b"\r\x03")
                time.sleep(0.03)
            self.buf = b""
            self.link.read_available(0.05)  # drop what the interrupted program printed
            self.link.write(b"\r\x01")
            try:
                self._read_until(RAW_PROMPT, min(1.0, max(0.1, deadline - time.monotonic())))
                self.in_raw = True
                return
            except BoardNotResponding:
                if time.monotonic() > deadline:
                    raise BoardNotResponding(
                        f"{self.link.name}: could not enter the raw REPL within "
                        f"{timeout:.0f} s (last bytes: {self.buf[-80:]!r}); is a "
                        "MicroPython board on this port, at this baud rate?") from None

    def exit(self) -> None:
        self.link.write(b"\x02")
        self.in_raw = False

    def soft_reset(self, timeout: float = 10.0) -> None:
        """Ctrl-D at the raw prompt: fresh interpreter, main.py not run."""
        self.link.write(b"\x04")
        self._read_until(b"soft reboot\r\n", timeout)
        self._read_until(RAW_PROMPT, timeout)

    # -- execution -----------------------------------------------------------------
    def exec(self, code: str | bytes, timeout: float = 30.0) -> bytes:
        """Run code; return its stdout; raise DeviceError for a device exception."""
        self.start(code, timeout)
        return self.finish(timeout)

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

    def finish(self, timeout: float = 30.0, pending: bytes = b"") -> bytes:
        """Wait for the code start() sent to end; return its stdout (``pending``: output
        a watcher already read but did not consume) or raise DeviceError."""
        self.buf = pending + self.buf
        out = self._read_until(b"\x04", timeout)[:-1]
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
