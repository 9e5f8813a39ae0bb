"""A raw serial client of a virtual modem, as a host on a real UART would see it: write,
then read until a pattern arrives or a deadline (shared by the modem and fault tests)."""

from __future__ import annotations

import re
import time

import serial

BANNER = b"\r\nRDY\r\n\r\n+CPIN: READY\r\n\r\nSMS DONE\r\n\r\nPB DONE\r\n"


class Client:
    """A raw serial client: write, then read until a pattern arrives or a deadline."""

    def __init__(self, path: str):
        self.s = serial.Serial(path, 115200, timeout=0.02)
        self.buf = bytearray()

    def until(self, pattern: bytes, timeout: float = 3.0) -> bytes:
        """Everything up to and including ``pattern`` (which is consumed)."""
        deadline = time.monotonic() + timeout
        while pattern not in self.buf:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} within {timeout} s; got {bytes(self.buf)!r}")
            self.buf += self.s.read(max(1, self.s.in_waiting))
        end = self.buf.index(pattern) + len(pattern)
        out = bytes(self.buf[:end])
        del self.buf[:end]
        return out

    def cmd(self, text: str, until: bytes = b"OK\r\n", timeout: float = 3.0) -> bytes:
        self.s.write(text.encode("latin-1") + b"\r")
        return self.until(until, timeout)

    def take(self, n: int, timeout: float = 3.0) -> bytes:
        """Exactly ``n`` bytes (binary payloads may contain anything)."""
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.buf)} of {n} bytes within {timeout} s")
            self.buf += self.s.read(max(1, self.s.in_waiting))
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def framed_read(self, timeout: float = 3.0) -> tuple[bytes, int] | None:
        """Parse one answer to AT+CIPRXGET=2: (payload, rest), or None for "No data"."""
        head = self.until(b"\r\n", timeout) + self.until(b"\r\n", timeout)
        m = re.fullmatch(rb"\r\n\+CIPRXGET: 2,\d,(\d+),(\d+)\r\n", head)
        if m is None:
            assert head + self.until(b"ERROR\r\n") == \
                b"\r\n+IP ERROR: No data\r\n\r\nERROR\r\n", head
            return None
        data = self.take(int(m[1]), timeout)
        assert self.take(6, timeout) == b"\r\nOK\r\n"
        return data, int(m[2])

    def silent_for(self, seconds: float) -> bytes:
        """What arrives within ``seconds`` (tests assert it is nothing)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.buf += self.s.read(max(1, self.s.in_waiting))
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def open_link(self, port: int, link: int = 0, host: str = "127.0.0.1") -> None:
        if b"+NETOPEN: 0" in self.cmd("AT+NETOPEN?"):
            assert self.cmd("AT+NETOPEN", b"+NETOPEN: 0\r\n") == b"\r\nOK\r\n\r\n+NETOPEN: 0\r\n"
        got = self.cmd(f'AT+CIPOPEN={link},"TCP","{host}",{port}', f"+CIPOPEN: {link},".encode())
        assert got == b"\r\nOK\r\n\r\n+CIPOPEN: %d," % link
        assert self.until(b"\r\n") == b"0\r\n"
