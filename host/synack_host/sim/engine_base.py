"""What every engine of the virtual board shares, parent and child side: the frame
protocol (``frame``, ``FrameReader``; described in engines.py), the parent's handle on one
engine process (``Child``), the CPython engine the others build on (``CPythonEngine``),
and the child's tie to its parent's life (``_set_parent_death_signal``).

Its own module so that engines.py (which picks an engine) and engine_wasm.py /
engine_unix.py (which extend these pieces) import it, not each other.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys

_HEADER = struct.Struct(">cI")


def frame(kind: bytes, payload: bytes = b"") -> bytes:
    return _HEADER.pack(kind, len(payload)) + payload


class FrameReader:
    """Splits a byte stream into (kind, payload) frames."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self._buf += data
        frames = []
        while len(self._buf) >= _HEADER.size:
            kind, n = _HEADER.unpack_from(self._buf)
            if len(self._buf) < _HEADER.size + n:
                break
            frames.append((kind, bytes(self._buf[_HEADER.size:_HEADER.size + n])))
            del self._buf[:_HEADER.size + n]
        return frames


class Child:
    """One engine process: non-blocking pipes, queued input, frames out."""

    def __init__(self, root: str, uart1: str | None, cmd: list[str] | None = None):
        # -B: a board's flash gets no __pycache__/ (a real board writes none)
        cmd = cmd or [sys.executable, "-I", "-B", "-m", "synack_host.sim.engines", root,
                      uart1 or ""]
        # own session: a Ctrl-C typed at the terminal running the board must not reach it
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     cwd=root, start_new_session=True)
        assert self.proc.stdin and self.proc.stdout
        self.wfd = self.proc.stdin.fileno()
        self.rfd = self.proc.stdout.fileno()
        os.set_blocking(self.wfd, False)
        os.set_blocking(self.rfd, False)
        self.out = bytearray()
        self.reader = FrameReader()

    def send(self, kind: bytes, payload: bytes) -> None:
        self.out += frame(kind, payload)
        self.flush()

    def flush(self) -> None:
        try:
            while self.out:
                n = os.write(self.wfd, self.out)
                del self.out[:n]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:        # the child died; read() will report it
            self.out.clear()

    def read(self) -> list[tuple[bytes, bytes]] | None:
        """Frames available now; None when the child has gone (end of file)."""
        try:
            data = os.read(self.rfd, 65536)
        except (BlockingIOError, InterruptedError):
            return []
        if not data:
            return None
        return self.reader.feed(data)

    def interrupt(self) -> None:
        """Ctrl-C: SIGINT stops running code; the ``I`` frame reaches code that has
        been sent but not started yet."""
        self.send(b"I", b"")
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(2.0)
        except subprocess.TimeoutExpired:
            pass
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()   # type: ignore[union-attr]
            except OSError:
                pass


class CPythonEngine:
    """The board's view of the engine: ``start()`` (fresh interpreter), ``run()``,
    ``interrupt()``; the board polls ``child`` pipes in its own selector."""

    name = "cpython"

    def __init__(self, root: str, uart1: str | None = None):
        self.root = os.path.realpath(root)
        self.uart1 = uart1
        self.child: Child | None = None
        self._spare: Child | None = None

    def start(self) -> None:
        """Replace the interpreter with a fresh one (hard or soft reset)."""
        if self.child:
            self.child.kill()
        self.child = self._spare or self._new_child()
        self._spare = self._new_child()

    def _new_child(self) -> Child:
        return Child(self.root, self.uart1)

    def run(self, kind: bytes, source: bytes) -> None:
        assert self.child is not None
        self.child.send(kind, source)

    def interrupt(self) -> None:
        if self.child:
            self.child.interrupt()

    def close(self) -> None:
        for c in (self.child, self._spare):
            if c:
                c.kill()
        self.child = self._spare = None


def _set_parent_death_signal() -> None:
    """Linux: die with the board even if it is SIGKILLed (a busy loop would live on)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
