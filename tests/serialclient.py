"""A plain serial client for tests that check a virtual device byte for byte."""

from __future__ import annotations

import time

import serial


class SerialClient:
    """Write bytes, read until a pattern or a deadline (an AssertionError saying what
    did arrive)."""

    default_timeout = 5.0

    def __init__(self, path: str):
        self.s = serial.Serial(path, 115200, timeout=0)
        self.buf = b""

    def write(self, data: bytes) -> None:
        self.s.write(data)

    def until(self, pattern: bytes, timeout: float | None = None) -> bytes:
        timeout = self.default_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while pattern not in self.buf:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} within {timeout}s; got {self.buf!r}")
            self.buf += self.s.read(4096)
            time.sleep(0.002)
        i = self.buf.index(pattern) + len(pattern)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def quiet(self, seconds: float = 0.2) -> bytes:
        """Whatever arrives within ``seconds`` (to check that nothing does)."""
        time.sleep(seconds)
        self.buf += self.s.read(65536)
        out, self.buf = self.buf, b""
        return out
