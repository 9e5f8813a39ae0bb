"""Raw bytes to the board while code runs there: deploy's fast path.

Base64 in exec'd code costs 4/3 of the wire per byte plus a raw-paste handshake per
exec. Here one exec runs ``_recv`` on the board, which reads the payload itself from
``sys.stdin.buffer`` and writes it to a file, so the wire carries the bytes as they are.
What makes that safe on a real board:

* **Flow control.** An ESP32 keeps what the UART receives for running code in a ring of
  260 bytes (MicroPython ports/esp32/mphalport.c ``stdin_ringbuf_array[260]``; one slot
  stays free, so 259), filled by the UART interrupt (ports/esp32/uart.c, in IRAM, so it
  runs even while a flash write has the cache off); a byte that finds the ring full is
  dropped. So the host sends ``WINDOW`` (64) bytes at a time and may have at most
  ``DEPTH`` (4) windows unread on the board: 256 bytes <= 259. The board writes one ACK
  (0x06) per window it has taken out of the ring and written to flash, and ``DEPTH``
  ACKs at the start. Several small windows rather than two of raw-paste's 128 bytes
  (MICROPY_REPL_STDIN_BUFFER_MAX / 2): the line stays busy as long as an ACK comes back
  within the wire time of the other windows in flight - 3 x 64 bytes, 17 ms at 115200
  baud, against 11 ms with 2 x 128 - and a USB-serial bridge may hold a lone byte for
  its latency timer (FTDI: 16 ms by default) before it sends it on.
* **Ctrl-C is data.** ``micropython.kbd_intr(-1)`` for the transfer, restored in a
  ``finally``: a 0x03 in the payload would otherwise raise KeyboardInterrupt.
* **Length and sha256** of the payload are checked on the board before anything uses it.
* **A stalled upload ends.** Before each window the board polls stdin (``select.poll``)
  for at most ``STALL_MS``: a host that stopped between windows (Ctrl-C, a vanished
  port) leaves the board at the raw REPL again after that, interrupt character
  restored, not stuck reading (and nothing of the old files touched). A link that dies
  inside a window leaves the board waiting for the rest of that window: the next
  break-in's bytes complete it, then the stall ends it.
* **A write error on the board** (flash full) does not stop the reading: the board takes
  the rest of the payload, then raises, so that no payload byte reaches the REPL as code.

The board needs ``micropython.kbd_intr``, ``sys.stdin.buffer``, ``select.poll`` and
``hashlib.sha256``: deploy's survey checks, and falls back to base64 without them.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from .transport import DeviceError, TransportError

WINDOW = 64           # bytes per window
DEPTH = 4             # windows the host may have unread on the board: 4 * 64 <= 259
STALL_MS = 3000       # the board gives up when no byte came for this long
ACK_TIMEOUT_S = 15.0  # the host gives up when no ACK came for this long
ACK = 0x06

RECV = r"""
import sys, os, micropython, select, hashlib
def _recv(path, size, digest, win, depth, stall):
    s = sys.stdin.buffer
    p = select.poll()
    p.register(sys.stdin, select.POLLIN)
    m = memoryview(bytearray(win))
    h = hashlib.sha256()
    w = sys.stdout.write
    err = None
    f = open(path, 'wb')
    micropython.kbd_intr(-1)
    try:
        w('\x06' * depth)
        left = size
        while left:
            n = min(left, win)
            if not p.poll(stall):
                raise OSError('upload stalled: no byte for %d ms' % stall)
            got = 0
            while got < n:
                got += s.readinto(m[got:n])
            if err is None:
                try:
                    f.write(m[:n])
                except OSError as e:
                    err = e
            h.update(m[:n])
            left -= n
            w('\x06')
    except BaseException:
        f.close()
        os.remove(path)
        raise
    finally:
        micropython.kbd_intr(3)
    f.close()
    if err is None and h.digest() != digest:
        err = ValueError('upload damaged in transit (sha256 differs)')
    if err:
        os.remove(path)
        raise err
"""


def squeeze(code: str) -> str:
    """Board code with one space per indentation level and no blank lines: every byte
    of code crosses the same slow line as the payload (our code has no multi-line
    strings, so this is safe)."""
    lines = []
    for line in code.splitlines():
        body = line.lstrip(" ")
        if body:
            lines.append(" " * ((len(line) - len(body)) // 4) + body)
    return "\n".join(lines) + "\n"


def recv_call(path: str, payload: bytes, window: int = WINDOW, depth: int = DEPTH,
              stall_ms: int = STALL_MS) -> str:
    """The board code that receives ``payload`` into ``path`` (after RECV)."""
    digest = hashlib.sha256(payload).digest()
    return f"_recv({path!r}, {len(payload)}, {digest!r}, {window}, {depth}, {stall_ms})\n"


class UploadError(Exception):
    """The host side of an upload failed (the board stopped acknowledging)."""


def stream(repl, code: str, payload: bytes, progress: Callable[[int], None] | None = None,
           window: int = WINDOW, timeout: float = 60.0) -> bytes:
    """Run ``code`` (which calls ``_recv``) and feed it ``payload`` window by window as
    the board grants them; return the code's output without the ACKs. A device
    exception raises DeviceError (the board consumed what it was sent)."""
    frames = [payload[i:i + window] for i in range(0, len(payload), window)]
    repl.start(squeeze(code), timeout)
    link = repl.link
    got, repl.buf = bytearray(repl.buf), b""
    credit = sent = 0
    tail = None               # the output after the ACKs: the code has ended
    last = time.monotonic()
    try:
        while tail is None and sent < len(frames):
            if sent < len(frames) and credit:
                link.write(frames[sent])
                sent += 1
                credit -= 1
                if progress:
                    progress(len(frames[sent - 1]))
                continue
            got += link.read_available(0.002)
            n = len(got) - len(got.lstrip(bytes([ACK])))
            if n:
                credit, last = credit + n, time.monotonic()
                del got[:n]
            if got:
                tail = bytes(got)     # not an ACK: the code ended (an exception)
            elif time.monotonic() - last > ACK_TIMEOUT_S:
                raise UploadError(f"the board stopped acknowledging after {sent} of "
                                  f"{len(frames)} windows ({ACK_TIMEOUT_S:.0f} s)")
    except UploadError:
        # bytes were lost on the way: fill the window the board waits for, so that it
        # stalls at the next one (STALL_MS) and ends; what is left over of the filler
        # reaches the raw REPL as Ctrl-C, which clears its line
        try:
            link.write(b"\x03" * window)
        except TransportError:
            pass
        raise
    # a host that stops (Ctrl-C, a vanished port) between windows: the board stops by
    # itself after STALL_MS, the interrupt character restored
    return repl.finish(timeout, pending=tail or b"").lstrip(bytes([ACK]))


__all__ = ["ACK", "DEPTH", "RECV", "STALL_MS", "WINDOW", "DeviceError", "UploadError",
           "recv_call", "stream"]
