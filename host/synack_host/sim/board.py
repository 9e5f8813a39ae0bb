"""The virtual MicroPython board: MicroPython's REPL protocol on a pseudo-terminal.

``Board`` owns a paced pty (``pty.PtyLink``) and an engine (``engines``) that runs the
code. It speaks what shared/runtime/pyexec.c speaks, so that mpremote drives it unchanged:

* friendly REPL: ``>>> `` prompt with echo, ``... `` continuation, Ctrl-C, Ctrl-D (soft
  reset), Ctrl-E (paste mode), Ctrl-B (banner), Ctrl-A on an empty line (raw REPL);
* raw REPL: code + Ctrl-D -> ``OK``, stdout, ``\\x04``, traceback, ``\\x04``, ``>``;
  Ctrl-D on an empty raw prompt soft-resets without running main.py; Ctrl-B leaves;
* raw-paste: ``\\x05A\\x01`` -> ``R\\x01`` + 128-byte window, ``\\x01`` per window consumed.

While code runs, host bytes wait (as in the UART's buffer) for the code to read them from
``sys.stdin`` (stdin.py), except Ctrl-C, which interrupts the code at once, as
MicroPython's UART interrupt handler does, unless the code turned that off with
``micropython.kbd_intr(-1)``: then 0x03 is data. That buffer is small, as an ESP32's stdin
ring buffer is: while code runs at most ``STDIN_RING`` (259) bytes wait, while the host
does not read the REPL's output (so that echo would block) ``INPUT_LIMIT``; more are
dropped and counted in ``overrun`` (a UART without flow control). The interrupt character
never enters the buffer, so it interrupts even when the buffer is full.
"""

from __future__ import annotations

import codeop
import collections
import os
import selectors
import warnings
from collections.abc import Callable

from .engine_base import Child, CPythonEngine
from .loop import PacedLoop
from .pty import PtyLink, serve_until_signalled
from .shims.flash import host_path
from .stdin import STDIN_RING, StdinServer

VERSION = "v1.27.0 on 2026-01-01"
BANNER_TEMPLATE = ("MicroPython {version}; synack virtual board ({engine} engine) with {mcu}"
                   "\r\nType \"help()\" for more information.\r\n")
RAW_HEADER = b"raw REPL; CTRL-B to exit\r\n"
PASTE_HEADER = b"\r\npaste mode; Ctrl-C to cancel, Ctrl-D to finish\r\n=== "
WINDOW = 128           # raw-paste window increment: MICROPY_REPL_STDIN_BUFFER_MAX / 2
OUT_HIGH_WATER = 4096  # stop taking engine output while the port lags this far behind
INPUT_LIMIT = 4096     # host bytes waiting while the REPL cannot take them; beyond: overrun
IDLE_WAIT_S = 0.5

CTRL_A, CTRL_B, CTRL_C, CTRL_D, CTRL_E = 1, 2, 3, 4, 5
FRIENDLY, PASTE, RAW, RAW_PASTE = "friendly", "paste", "raw", "raw-paste"

Job = tuple[bytes, bytes, Callable[[bytes], None]]


class Board:
    """A virtual board; ``port`` is the pty to open like a serial port."""

    def __init__(self, engine: CPythonEngine, baud: int | None = None,
                 link_path: str | None = None, trace: Callable[[str], None] | None = None,
                 version: str = VERSION, mcu: str = "ESP32", pty: PtyLink | None = None):
        """``version``/``mcu`` go into the banner (the virtual ROM loader passes what the
        flashed image says); ``pty``: serve a pty that is already open (the one the
        ROM loader used) instead of a new one."""
        self.engine = engine
        self.trace = trace
        self.pty = pty if pty is not None else PtyLink(baud, link_path)
        self.banner = BANNER_TEMPLATE.format(version=version, engine=engine.name,
                                             mcu=mcu).encode()
        self.loop = PacedLoop(self.pty, IDLE_WAIT_S, take_input=self._take_host_bytes,
                              prepare=self._prepare_wait, settle=self._settle)
        self._engine_child: Child | None = None    # the child whose pipes are watched
        self._engine_fds: set[int] = set()
        self.mode = FRIENDLY
        self._input = bytearray()        # host bytes the REPL has not taken yet
        self._busy: Callable[[bytes], None] | None = None   # done-callback of running job
        self._jobs: collections.deque[Job] = collections.deque()
        self._line = bytearray()         # friendly: line being edited; raw: code so far
        self._block = b""                # friendly: lines of an unfinished compound statement
        self._window_left = 0
        self.overrun = 0                 # host bytes dropped: the input buffer was full
        self._overrunning = False
        self.stdin = StdinServer(self)   # sys.stdin of running code; the interrupt char
        self.hard_reset()

    @property
    def port(self) -> str:
        return self.pty.path

    # -- output ------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        if self.trace:
            self.trace(f"board> {data!r}")
        self.pty.write(data)

    def prompt(self) -> None:
        self.send(b"... " if self._block else b">>> ")

    # -- resets ------------------------------------------------------------------------
    def hard_reset(self) -> None:
        """Power on: fresh interpreter, boot.py, main.py, then the friendly REPL."""
        self.mode = FRIENDLY
        self._restart()

    def soft_reset(self) -> None:
        """Ctrl-D: fresh interpreter, boot.py; main.py only in the friendly REPL."""
        self.send(b"MPY: soft reboot\r\n")
        self._restart()

    def _restart(self) -> None:
        self._jobs.clear()
        self._busy = None
        self.stdin.reset()
        self._line.clear()
        self._block = b""
        self.engine.start()
        for name in ("boot.py", "main.py"):
            if name == "main.py" and self.mode != FRIENDLY:
                continue   # by design: a raw REPL soft reset does not run main.py
            if self._on_flash(name):
                self._submit(b"F", name.encode(), self.send)
        self._submit(b"", b"", lambda _: self._enter_mode())

    def _on_flash(self, name: str) -> bool:
        """Whether the flash holds file ``name`` (not a symlink out of the flash)."""
        try:
            return os.path.isfile(host_path(self.engine.root, "/", name))
        except OSError:
            return False

    def _enter_mode(self) -> None:
        if self.mode == RAW:
            self.send(RAW_HEADER + b">")
        else:
            self.mode = FRIENDLY
            self.send(self.banner)
            self.prompt()

    # -- jobs: code for the engine, run one at a time ------------------------------------
    def _submit(self, kind: bytes, payload: bytes, done: Callable[[bytes], None]) -> None:
        self._jobs.append((kind, payload, done))
        self._next_job()

    def _next_job(self) -> None:
        while self._busy is None and self._jobs:
            kind, payload, done = self._jobs.popleft()
            if not kind:      # a step after the code before it: no engine involved
                done(b"")
                continue
            self._busy = done
            self.stdin.reset()
            self.engine.run(kind, payload)
            self._take_interrupts()

    def _job_done(self, error: bytes) -> None:
        done, self._busy = self._busy, None
        self.stdin.reset()
        if done:
            done(error)
        self._next_job()

    def _take_interrupts(self) -> None:
        """Ctrl-C among the bytes waiting for the REPL interrupts the running code."""
        if self._busy is not None and self.stdin.interrupts(self._input):
            self._input = self._input.replace(bytes([self.stdin.intr]), b"")
            self.stdin.cancel()
            self.engine.interrupt()

    def _on_engine(self, mask: int) -> None:
        child = self.engine.child
        assert child is not None
        frames = child.read()
        if frames is None:
            self._engine_died(child.proc.wait(2.0))
            return
        for kind, payload in frames:
            if kind == b"O":
                self.send(payload)
            elif kind == b"D":
                self._job_done(payload)
            elif kind in (b"R", b"P", b"K"):   # the code reads stdin, or calls kbd_intr
                self.stdin.on_frame(kind, payload)
            elif kind == b"E":    # sys.exit(): MicroPython soft-resets
                if self.mode == RAW:
                    self.send(b"\x04\x04")
                self.soft_reset()
                return
            elif kind == b"H":
                self.hard_reset()
                return
            elif kind == b"S":
                self.soft_reset()
                return

    def _engine_died(self, status: int | None) -> None:
        """The interpreter process ended (os._exit, a crash): the board survives with a
        fresh interpreter, and the code that was running ends with an error, so that
        the host's protocol state stays in step."""
        self.engine.start()
        self.stdin.reset()
        if self._busy is not None:
            self._job_done(b"SystemError: engine process exited with status %d\r\n"
                           % (status if status is not None else -1))

    # -- input -------------------------------------------------------------------------
    def _receive(self, data: bytes) -> None:
        """Host bytes into the REPL's input buffer, taken as far as the REPL can take
        them; what does not fit while it cannot is lost (a UART RX overrun)."""
        while data:
            if self._busy is not None and self.stdin.interrupts(data):
                # the interrupt char is never buffered
                data = data.replace(bytes([self.stdin.intr]), b"")
                self.stdin.cancel()
                self.engine.interrupt()
            limit = STDIN_RING if self._busy is not None else INPUT_LIMIT
            room = limit - len(self._input)
            if room <= 0:
                self.overrun += len(data)
                if self.trace and not self._overrunning:
                    self.trace(f"board: input overrun: {limit} bytes wait already; "
                               f"dropping what the host sends ({self.overrun} so far)")
                self._overrunning = True
                return
            self._input += data[:room]
            data = data[room:]
            self._process_input()
        if not self._input:
            self._overrunning = False

    def _can_take_input(self) -> bool:
        # the REPL takes bytes while no code runs and its echo is not held up
        return self._busy is None and self.pty.pending_out < OUT_HIGH_WATER

    def _process_input(self) -> None:
        while self._input and self._can_take_input():
            c = self._input[0]
            del self._input[0]
            {FRIENDLY: self._friendly, PASTE: self._paste, RAW: self._raw,
             RAW_PASTE: self._raw_paste}[self.mode](c)
        self._take_interrupts()
        self.stdin.serve()

    def _friendly(self, c: int) -> None:
        if c == CTRL_A and not self._line and not self._block:
            self.mode = RAW
            self.send(b"\r\n" + RAW_HEADER + b">")
        elif c == CTRL_B and not self._line:
            self.send(b"\r\n" + self.banner)
            self.prompt()
        elif c == CTRL_C:
            self._line.clear()
            self._block = b""
            self.send(b"\r\n")
            self.prompt()
        elif c == CTRL_D and not self._line and not self._block:
            self.send(b"\r\n")
            self.soft_reset()
        elif c == CTRL_E and not self._line and not self._block:
            self.mode = PASTE
            self.send(PASTE_HEADER)
        elif c == 0x0D:
            self.send(b"\r\n")
            self._enter_line()
        elif c in (0x08, 0x7F):
            if self._line:
                self._line.pop()
                self.send(b"\x08 \x08")
        elif c >= 0x20 or c == 0x09:
            self._line.append(c)
            self.send(bytes([c]))
        # other control bytes (LF, escape sequences' ESC) are ignored

    def _enter_line(self) -> None:
        line, self._line = bytes(self._line), bytearray()
        source = self._block + line + b"\n"
        if not source.strip():
            self._block = b""
            self.prompt()
            return
        if line.strip() and not _complete(self._block + line):
            self._block = source      # a compound statement goes on: "... "
            self.prompt()
            return
        self._block = b""
        self._submit(b"1", source, self._friendly_done)

    def _friendly_done(self, error: bytes) -> None:
        self.send(error)
        self.prompt()

    def _paste(self, c: int) -> None:
        if c == CTRL_C:
            self._line.clear()
            self.mode = FRIENDLY
            self.send(b"\r\n>>> ")
        elif c == CTRL_D:
            source, self._line = bytes(self._line), bytearray()
            self.mode = FRIENDLY
            self.send(b"\r\n")
            self._submit(b"X", source, self._friendly_done)
        elif c == 0x0D:
            self._line.append(0x0A)
            self.send(b"\r\n=== ")
        elif c != 0x0A:
            self._line.append(c)
            self.send(bytes([c]))

    def _raw(self, c: int) -> None:
        if c == CTRL_A:
            if self._line == b"\x05A":   # raw-paste request
                self._line.clear()
                self.mode = RAW_PASTE
                self._window_left = WINDOW
                self.send(b"R\x01" + WINDOW.to_bytes(2, "little"))
            else:
                self._line.clear()
                self.send(RAW_HEADER + b">")
        elif c == CTRL_B:
            self._line.clear()
            self.mode = FRIENDLY
            self.send(b"\r\n" + self.banner)
            self.prompt()
        elif c == CTRL_C:
            self._line.clear()
        elif c == CTRL_D:
            self.send(b"OK")
            if not self._line:
                self.send(b"\r\n")
                self.soft_reset()
            else:
                source, self._line = bytes(self._line), bytearray()
                self._submit(b"X", source, self._raw_done)
        else:
            self._line.append(c)

    def _raw_done(self, error: bytes) -> None:
        self.send(b"\x04" + error + b"\x04>")

    def _raw_paste(self, c: int) -> None:
        if c in (CTRL_C, CTRL_D):
            source, self._line = bytes(self._line), bytearray()
            self.mode = RAW
            self.send(b"\x04")          # acknowledge the end of the data
            if c == CTRL_C:
                self._raw_done(b"KeyboardInterrupt: \r\n")
            else:
                self._submit(b"X", source, self._raw_done)
            return
        self._line.append(c)
        self._window_left -= 1
        if self._window_left == 0:      # a window consumed: grant the next one
            self._window_left = WINDOW
            self.send(b"\x01")

    # -- loop --------------------------------------------------------------------------
    def _watch_engine(self) -> None:
        """Watch the engine's pipes: its output while the pty keeps up, its input while
        frames wait. A replaced child's descriptors are forgotten first (their numbers
        may come back for the new child's pipes)."""
        child = self.engine.child
        if child is not self._engine_child:
            for fd in self._engine_fds:
                self.loop.watch(fd, 0, None)
            self._engine_fds.clear()
            self._engine_child = child
        if child is None:
            return
        wanted = {child.rfd: (selectors.EVENT_READ if self.pty.pending_out < OUT_HIGH_WATER
                              else 0, self._on_engine),
                  child.wfd: (selectors.EVENT_WRITE if child.out else 0, self._flush_engine)}
        for fd, (events, callback) in wanted.items():
            self.loop.watch(fd, events, callback)
            self._engine_fds.add(fd)

    def _flush_engine(self, mask: int) -> None:
        if self.engine.child:
            self.engine.child.flush()

    def _prepare_wait(self) -> float | None:
        """Before the loop waits: the engine's pipes, and how long it may wait."""
        self._watch_engine()
        if self._input and self._can_take_input():
            return 0.0                   # input held back by output that has drained since
        return self.stdin.timeout()

    def _take_host_bytes(self, chunk: bytes) -> None:
        if self.trace:
            self.trace(f"host>  {chunk!r}")
        self._receive(chunk)

    def _settle(self) -> None:
        self._process_input()
        self.stdin.serve()   # a request whose time is up

    def step(self, max_wait: float = IDLE_WAIT_S) -> None:
        """One turn: wait for the host, the engine or pacing, then do what is due."""
        self.loop.step(max_wait)

    def serve(self) -> None:
        self.loop.serve()

    def request_stop(self) -> None:
        """Safe from signal handlers."""
        self.loop.request_stop()

    def run_until_signalled(self) -> None:
        serve_until_signalled(self.serve, self.request_stop, self.close)

    def close(self, keep_pty: bool = False) -> None:
        """``keep_pty``: leave the pty open for its next owner (a reset into the ROM
        loader), as a chip reset leaves the USB-serial bridge's port open."""
        if self.loop.closed:
            return
        self.engine.close()
        self.loop.close()
        if not keep_pty:
            self.pty.close()


def _complete(source: bytes) -> bool:
    """Whether a friendly-REPL entry is a whole statement (else: continuation lines)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return codeop.compile_command(source.decode("utf-8", "replace"),
                                          "<stdin>", "single") is not None
    except (SyntaxError, ValueError, OverflowError):
        return True    # let the engine report the error
