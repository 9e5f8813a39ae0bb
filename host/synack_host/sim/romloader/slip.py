"""SLIP framing (RFC 1055) as the ESP serial bootloader uses it, sans-I/O.

A frame is ``0xC0 <body> 0xC0``; inside the body ``0xC0`` is sent as ``0xDB 0xDC`` and
``0xDB`` as ``0xDB 0xDD``. Bytes between frames are line noise that the ROM skips (the
boot log of a chip that is reset while esptool listens looks the same to the host).

``SlipDecoder.feed(data)`` returns the frames completed by ``data``; a frame that
breaks the rules (a bad escape, more than ``max_frame`` bytes) comes back as a
``SlipError`` in the same list, in order, so that the loader can answer it with the
error response a ROM sends instead of losing its place in the stream.
"""

from __future__ import annotations

END, ESC, ESC_END, ESC_ESC = 0xC0, 0xDB, 0xDC, 0xDD
MAX_FRAME = 0x4000 + 64    # the largest block esptool sends (16 KiB stub block) + headers


class SlipError:
    """A frame that could not be decoded: why, and its first bytes (to take the
    command opcode from, when there is one)."""

    def __init__(self, reason: str, head: bytes):
        self.reason = reason
        self.head = head

    def __repr__(self) -> str:
        return f"SlipError({self.reason!r}, head={self.head[:8]!r})"


def encode(body: bytes) -> bytes:
    return b"\xc0" + body.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc") + b"\xc0"


class SlipDecoder:
    """Bytes in, frames out; memory bounded by ``max_frame``."""

    def __init__(self, max_frame: int = MAX_FRAME):
        self.max_frame = max_frame
        self._buf = bytearray()
        self._in_frame = False
        self._escape = False
        self._error: str | None = None   # the frame being received is already bad
        self.noise = 0                   # bytes seen outside any frame

    def reset(self) -> None:
        """Forget a partly received frame (the chip was reset)."""
        self._buf.clear()
        self._in_frame = self._escape = False
        self._error = None

    def feed(self, data: bytes) -> list[bytes | SlipError]:
        out: list[bytes | SlipError] = []
        for b in data:
            if not self._in_frame:
                if b == END:
                    self._in_frame = True
                else:
                    self.noise += 1
                continue
            if b == END:
                if self._escape and self._error is None:
                    self._error = "frame ends inside an escape"
                if self._error is not None:
                    out.append(SlipError(self._error, bytes(self._buf[:16])))
                elif self._buf:
                    out.append(bytes(self._buf))
                else:
                    continue     # C0 C0: the end of one frame and the start of the next
                self.reset()
                continue
            if self._error is not None:
                continue         # skip the rest of a bad frame, up to its END
            if self._escape:
                self._escape = False
                if b == ESC_END:
                    b = END
                elif b == ESC_ESC:
                    b = ESC
                else:
                    self._error = f"invalid escape 0xdb 0x{b:02x}"
                    continue
            elif b == ESC:
                self._escape = True
                continue
            if len(self._buf) >= self.max_frame:
                self._error = f"frame longer than {self.max_frame} bytes"
                continue
            self._buf.append(b)
        return out
