"""Stdin of the code running on the virtual board, as an ESP32 gives it.

On an ESP32, MicroPython's REPL UART interrupt (ports/esp32/uart.c) moves each received
byte into ``stdin_ringbuf`` (ports/esp32/mphalport.c: ``uint8_t stdin_ringbuf_array[260]``,
one slot kept free: 259 bytes), except the interrupt character, which raises
KeyboardInterrupt instead; ``micropython.kbd_intr(-1)`` turns that off, so a 0x03 is data.
While code runs, that ring is all the buffer there is: a byte that arrives when it is full
is lost. Running code takes bytes out of it with ``sys.stdin.buffer.readinto`` (blocking
until its buffer is full) and asks whether any wait with ``select.poll``.

The board keeps the waiting bytes (its ``_input``, bounded by ``STDIN_RING`` while code
runs) and serves the engine's requests, which are frames (engines.py):

* engine -> board ``R`` seq, n, timeout_ms (>Iii): n bytes (at most STDIN_RING: what the
  ring can hold), answered by ``i`` seq + the bytes once they are all there - readinto
  waits for a full buffer anyway, and one answer per read keeps the engine's round trips
  few - or with what is there when timeout_ms (-1: for ever) is up;
* ``P`` seq, timeout_ms (>Ii): whether a byte waits; answered by ``p`` seq + 1 byte;
* ``K`` char (>i): the interrupt character from now on (-1: none), kbd_intr().

A new request replaces an old one (code interrupted while it waited leaves one behind);
replies carry the sequence number, so a reply to a request the code gave up is ignored.
"""

from __future__ import annotations

import struct
import time

STDIN_RING = 259    # bytes an ESP32 holds for running code (see above)
CTRL_C = 3


class StdinServer:
    """Answers one engine's stdin requests from the board's waiting bytes."""

    def __init__(self, board) -> None:
        self.board = board
        self.intr = CTRL_C        # the interrupt character (-1: kbd_intr(-1))
        self._req: tuple[bytes, int, int, float | None] | None = None  # kind, seq, n, deadline

    def reset(self) -> None:
        """A job starts or ends: MicroPython's pyexec sets Ctrl-C as the interrupt
        character before every piece of code it runs; pending requests are void."""
        self.intr = CTRL_C
        self._req = None

    def cancel(self) -> None:
        self._req = None

    def on_frame(self, kind: bytes, payload: bytes) -> None:
        if kind == b"K":
            (self.intr,) = struct.unpack(">i", payload)
            return
        if kind == b"R":
            seq, n, timeout_ms = struct.unpack(">Iii", payload)
        else:
            (seq, timeout_ms), n = struct.unpack(">Ii", payload), 0
        deadline = None if timeout_ms < 0 else time.monotonic() + timeout_ms / 1000
        self._req = (kind, seq, max(1, n), deadline)
        self.serve()

    def timeout(self) -> float | None:
        """Seconds until a waiting request times out (None: none waits with a timeout)."""
        if self._req is None or self._req[3] is None:
            return None
        return max(0.0, self._req[3] - time.monotonic())

    def serve(self) -> None:
        """Answer the waiting request if bytes are there or its time is up."""
        if self._req is None or self.board._busy is None:
            return
        kind, seq, n, deadline = self._req
        waiting = self.board._input
        enough = len(waiting) >= min(n, STDIN_RING) if kind == b"R" else bool(waiting)
        if not enough and (deadline is None or time.monotonic() < deadline):
            return
        self._req = None
        child = self.board.engine.child
        if child is None:
            return
        if kind == b"R":
            data = bytes(waiting[:n])
            del waiting[:n]
            child.send(b"i", struct.pack(">I", seq) + data)
        else:
            child.send(b"p", struct.pack(">I", seq) + (b"\x01" if waiting else b"\x00"))

    def interrupts(self, data: bytes | bytearray) -> bool:
        """Whether ``data`` holds the interrupt character (then it is no data)."""
        return self.intr >= 0 and self.intr in data


# ================================================= engine side (the cpython engine's child)
POLLIN = 1


class PortIn:
    """``sys.stdin`` of device code on the cpython engine: text from ``read``/``readline``,
    bytes from ``buffer.read``/``buffer.readinto`` (which block until the buffer is full,
    as MicroPython's do). ``request(kind, payload)`` sends a frame to the board and
    returns the reply's payload after the sequence number."""

    encoding = "utf-8"

    def __init__(self, request) -> None:
        self._request = request
        self.buffer = _PortInBytes(request)

    def read(self, n: int = 1) -> str:
        return self.buffer.read(n).decode("utf-8", "replace")

    def readline(self) -> str:
        return self.buffer.readline().decode("utf-8", "replace")

    def isatty(self) -> bool:
        return False

    def wait(self, timeout_ms: int) -> bool:
        """Whether a byte waits, within timeout_ms (-1: for ever)."""
        return self._request(b"P", struct.pack(">i", timeout_ms)) == b"\x01"


class _PortInBytes:
    def __init__(self, request) -> None:
        self._request = request

    def readinto(self, buf) -> int:
        m = memoryview(buf).cast("B")
        got = 0
        while got < len(m):
            data = self._request(b"R", struct.pack(">ii", len(m) - got, -1))
            m[got:got + len(data)] = data
            got += len(data)
        return got

    def read(self, n: int = 1) -> bytes:
        buf = bytearray(max(0, n))
        self.readinto(buf)
        return bytes(buf)

    def readline(self) -> bytes:
        out = bytearray()
        while not out.endswith(b"\n"):
            out += self.read(1)
        return bytes(out)


def poll_module(real_select, stdin: PortIn):
    """``select`` for device code: the real one, whose ``poll()`` also takes
    ``sys.stdin`` (MicroPython's stdin is pollable)."""
    import types

    mod = types.ModuleType("select")
    mod.__dict__.update({k: v for k, v in vars(real_select).items() if not k.startswith("__")})

    class Poll:
        def __init__(self) -> None:
            self._p = real_select.poll()
            self._others = 0
            self._stdin = 0

        def register(self, obj, mask: int = 5) -> None:
            if obj is stdin or obj is stdin.buffer:
                self._stdin = mask
            else:
                self._p.register(obj, mask)
                self._others += 1

        def modify(self, obj, mask: int) -> None:
            if obj is stdin or obj is stdin.buffer:
                self._stdin = mask
            else:
                self._p.modify(obj, mask)

        def unregister(self, obj) -> None:
            if obj is stdin or obj is stdin.buffer:
                self._stdin = 0
            else:
                self._p.unregister(obj)
                self._others -= 1

        def poll(self, timeout: int | None = -1) -> list:
            timeout = -1 if timeout is None else int(timeout)
            if not self._stdin & POLLIN:
                return self._p.poll(None if timeout < 0 else timeout)
            if not self._others:
                return [(stdin, POLLIN)] if stdin.wait(timeout) else []
            end = None if timeout < 0 else time.monotonic() + timeout / 1000
            while True:   # stdin and descriptors: look at both in short turns
                ready = self._p.poll(0) + ([(stdin, POLLIN)] if stdin.wait(0) else [])
                if ready or (end is not None and time.monotonic() >= end):
                    return ready
                time.sleep(0.005)

        ipoll = poll

    mod.poll = Poll
    return mod
