"""Virtual-modem machinery shared by every dialect: a pty paced like a UART, command-line
assembly with character echo, ``>`` data mode, result/URC writing, timers and faults.

A dialect subclasses ``VirtualModem`` and fills ``handlers``: ``{"+CSQ": fn}`` where
``fn(kind, args)`` gets kind ``"="`` (set), ``"?"`` (read), ``"=?"`` (test) or ``""``
(execute) and the parsed argument list. URCs are only ever written between whole output
chunks, never inside a line or a binary payload, because every write goes through one
ordered output queue.
"""

from __future__ import annotations

import heapq
import os
import selectors
import termios
import time
import tty
from collections.abc import Callable

CME_TEXT = {3: "operation not allowed", 4: "operation not supported",
            10: "SIM not inserted", 50: "Incorrect parameters", 100: "unknown"}


class Pty:
    """A pseudo-terminal whose slave end the device side opens like a serial port.
    The modem keeps the slave open too, so a client closing and reopening the port does
    not make the master see end-of-file."""

    def __init__(self, link_path: str | None = None):
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        attrs = termios.tcgetattr(self._slave)
        attrs[3] &= ~termios.ECHO
        termios.tcsetattr(self._slave, termios.TCSANOW, attrs)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self._slave)
        self.link_path = link_path
        if link_path:
            if os.path.lexists(link_path):
                os.unlink(link_path)
            os.symlink(self.path, link_path)

    def close(self) -> None:
        for fd in (self.master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.link_path and os.path.islink(self.link_path):
            os.unlink(self.link_path)


class Pacer:
    """Token bucket: at most ``rate`` bytes/s (baud/10 for 8N1), bursts of 16 bytes."""

    BURST = 16

    def __init__(self, baud: int | None):
        self.rate = baud / 10 if baud else None
        self.tokens = float(self.BURST)
        self.stamp = time.monotonic()

    def allowance(self) -> int:
        if self.rate is None:
            return 1 << 16
        now = time.monotonic()
        self.tokens = min(self.BURST, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return int(self.tokens)

    def spend(self, n: int) -> None:
        if self.rate is not None:
            self.tokens -= n

    def wait_s(self) -> float:
        """How long until one more byte is allowed."""
        if self.rate is None or self.tokens >= 1:
            return 0.0
        return (1 - self.tokens) / self.rate


def parse_args(text: str) -> list[str]:
    """``1,"TCP","a,b",80`` -> ['1', 'TCP', 'a,b', '80'] (quotes removed)."""
    out, cur, quoted = [], [], False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur).strip())
    return out


class Fault:
    """``PREFIX|RESPONSE[|COUNT]``: answer the next COUNT matching commands with
    RESPONSE (``SILENT`` = no answer at all) instead of executing them."""

    def __init__(self, spec: str):
        parts = spec.split("|")
        if len(parts) not in (2, 3) or not parts[0]:
            raise ValueError(f"bad --fault {spec!r}: expected PREFIX|RESPONSE[|COUNT]")
        self.prefix = parts[0].upper()
        self.response = parts[1]
        self.count = int(parts[2]) if len(parts) == 3 else 1


class VirtualModem:
    """Generic AT front end. Subclasses provide ``handlers`` and ``power_on()``."""

    handlers: dict[str, Callable[[str, list[str]], None]] = {}

    def __init__(self, baud: int | None = None, faults: tuple[str, ...] = (),
                 link_path: str | None = None, trace: Callable[[str], None] | None = None):
        self.pty = Pty(link_path)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.pty.master, selectors.EVENT_READ, None)
        self.pace_out = Pacer(baud)
        self.pace_in = Pacer(baud)
        self.out = bytearray()
        self.line = bytearray()
        self.data_need = 0            # bytes still expected after a '>' prompt
        self.data = bytearray()
        self.data_done: Callable[[bytes], None] | None = None
        self.timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self.faults = [Fault(f) for f in faults]
        self.trace = trace
        self.echo = True
        self.cmee = 0
        self.booted = True
        self.running = True

    # -- output ----------------------------------------------------------------
    def send(self, raw: bytes) -> None:
        self.out += raw
        if self.trace:
            self.trace("<- " + repr(raw)[2:-1])

    def reply(self, *lines: str) -> None:
        for ln in lines:
            self.send(b"\r\n" + ln.encode("latin-1") + b"\r\n")

    def ok(self) -> None:
        self.reply("OK")

    def error(self, cme: int | None = None) -> None:
        if cme is None or self.cmee == 0:
            self.reply("ERROR")
        elif self.cmee == 1:
            self.reply(f"+CME ERROR: {cme}")
        else:
            self.reply(f"+CME ERROR: {CME_TEXT.get(cme, cme)}")

    urc = reply

    def later(self, delay_s: float, fn: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self.timers, (time.monotonic() + delay_s, self._seq, fn))

    def expect_data(self, n: int, done: Callable[[bytes], None]) -> None:
        """Enter data mode: the next n raw bytes (not echoed) go to ``done``."""
        self.data_need = n
        self.data = bytearray()
        self.data_done = done

    # -- input -----------------------------------------------------------------
    def _feed(self, chunk: bytes) -> None:
        if not self.booted:
            return
        for i, b in enumerate(chunk):
            if self.data_need:
                take = chunk[i:i + self.data_need]
                self.data += take
                self.data_need -= len(take)
                if not self.data_need and self.data_done:
                    done, self.data_done = self.data_done, None
                    done(bytes(self.data))
                rest = chunk[i + len(take):]
                if rest:
                    self._feed(rest)
                return
            if self.echo:
                self.send(bytes([b]))
            if b == 13:
                text = self.line.decode("latin-1").strip()
                self.line.clear()
                if text:
                    self._command(text)
            elif b == 10:
                continue
            elif b in (8, 127):
                del self.line[-1:]
            elif len(self.line) < 1024:
                self.line.append(b)

    def _command(self, text: str) -> None:
        if self.trace:
            self.trace("-> " + text)
        upper = text.upper()
        for fault in self.faults:
            if fault.count and upper.startswith(fault.prefix):
                fault.count -= 1
                if fault.response != "SILENT":
                    self.reply(fault.response)
                return
        if not upper.startswith("AT"):
            self.reply("ERROR")
            return
        body = text[2:]
        if not body:
            self.ok()
            return
        if body[0] in "Ee" and body[1:] in ("", "0", "1"):
            self.echo = body[1:] == "1"
            self.ok()
            return
        name, kind, args = _split(body)
        handler = self.handlers.get(name.upper())
        if handler is None:
            self.reply("ERROR")
            return
        handler(self, kind, args)

    # -- loop ------------------------------------------------------------------
    def step(self, max_wait: float = 0.05) -> None:
        wait = max_wait
        if self.timers:
            wait = min(wait, max(0.0, self.timers[0][0] - time.monotonic()))
        if self.out:
            wait = min(wait, self.pace_out.wait_s())
        for key, _ in self.sel.select(wait):
            if key.data is None:
                self._read_pty()
            else:
                key.data()
        while self.timers and self.timers[0][0] <= time.monotonic():
            heapq.heappop(self.timers)[2]()
        self._flush()

    def _read_pty(self) -> None:
        allowed = self.pace_in.allowance()
        if allowed <= 0:
            time.sleep(self.pace_in.wait_s())
            return
        try:
            chunk = os.read(self.pty.master, min(allowed, 4096))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # EIO: nobody has the slave open at the moment
            time.sleep(0.01)
            return
        self.pace_in.spend(len(chunk))
        self._feed(chunk)

    def _flush(self) -> None:
        while self.out:
            n = min(len(self.out), self.pace_out.allowance())
            if n <= 0:
                return
            try:
                n = os.write(self.pty.master, self.out[:n])
            except BlockingIOError:
                return
            self.pace_out.spend(n)
            del self.out[:n]

    def serve(self) -> None:
        while self.running:
            self.step()

    def close(self) -> None:
        self.running = False
        self.sel.close()
        self.pty.close()


def _split(body: str) -> tuple[str, str, list[str]]:
    """``+CIPOPEN=0,"TCP"`` -> ('+CIPOPEN', '=', ['0', 'TCP']); ``+CSQ`` -> ('+CSQ', '', [])."""
    for i, ch in enumerate(body):
        if ch in "=?":
            name = body[:i]
            rest = body[i:]
            if rest == "?":
                return name, "?", []
            if rest == "=?":
                return name, "=?", []
            return name, "=", parse_args(rest[1:])
    return body, "", []
