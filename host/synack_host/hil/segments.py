"""What a capture is made of, for :mod:`synack_host.hil.tcpflow` (which finds them) and
:mod:`synack_host.hil.flowcheck` (which asserts on them): TCP flag bits, the sequence
number modulus, and the records -- :class:`Endpoint`, :class:`Segment`, a side's
:class:`Fin` and a keepalive :class:`Probe`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
MOD = 1 << 32


class Endpoint(NamedTuple):
    ip: str
    port: int

    def __str__(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class Segment:
    """One TCP segment as seen on the wire (``length`` is the payload length)."""

    time: float
    src: Endpoint
    dst: Endpoint
    flags: int
    seq: int
    ack: int
    length: int
    window: int
    # the captured payload bytes (fewer than ``length`` if the snapshot length cut them);
    # read by synack_host.hil.tlsflow to find TLS records
    payload: bytes = field(default=b"", repr=False, compare=False)

    def has(self, flags: int) -> bool:
        return self.flags & flags == flags

    @property
    def flag_text(self) -> str:
        """tcpdump style: S, F, R, P, then ``.`` for ACK."""
        text = "".join(c for bit, c in ((SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P"))
                       if self.flags & bit)
        return text + ("." if self.flags & ACK else "")


@dataclass
class Fin:
    """A side's first FIN: the sequence number it consumes, and whether it was acked."""

    seq: int                      # the FIN's own sequence number (after any payload)
    time: float
    acked: bool = False
    ack_time: float | None = None
    acks_seen: list[int] = field(default_factory=list)   # peer's ack values after it


@dataclass
class Probe:
    """A keepalive probe: seq = snd_nxt - 1, 0 or 1 byte, after an idle gap."""

    time: float
    side: str
    length: int
    idle_before: float
    acked: bool = False
    ack_time: float | None = None
