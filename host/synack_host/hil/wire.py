"""A userspace Ethernet link with per-direction delay, jitter, loss and blackhole.

:class:`Wire` joins two interfaces of one network namespace (that has no addresses of its
own) by copying every frame from one to the other in a thread, the way a radio link or a
cable between device and router would. It exists because ``tc netem`` is not available on
every kernel (the CI kernel has no ``sch_netem``); a userspace wire needs only ``AF_PACKET``.

Frames are read and written with ``PACKET_VNET_HDR`` so that segmentation (GSO/TSO) and
checksum-offload metadata travels with each frame, exactly as a virtual NIC would pass it:
no offload has to be switched off on the endpoints.

Directions are named ``"a2b"`` and ``"b2a"``. With no impairment a frame is forwarded as
soon as it is read; with a delay it is held in a queue (order is kept, also with jitter).
Loss applies to IP frames only (ARP gets through, as with a real lossy IP path), a
blackhole drops every frame, silently.
"""

from __future__ import annotations

import heapq
import os
import random
import select
import socket
import threading
import time
from dataclasses import dataclass, field

from .netns import NetworkError, inside

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_VNET_HDR = 15
PACKET_OUTGOING = 4
VNET_HDR_LEN = 10
ETH_TYPES_IP = (b"\x08\x00", b"\x86\xdd")
RECV_BUF = 262144
DIRECTIONS = ("a2b", "b2a")


@dataclass
class Impairment:
    """What one direction of the wire does to frames."""

    delay_s: float = 0.0
    jitter_s: float = 0.0
    loss: float = 0.0            # probability 0..1, IP frames only
    blackhole: bool = False


@dataclass
class DirectionStats:
    forwarded: int = 0
    lost: int = 0                # random loss
    blackholed: int = 0
    send_errors: int = 0
    last_errors: list[str] = field(default_factory=list)


class Wire:
    """Forward frames between interfaces ``a`` and ``b`` of namespace ``netns``."""

    def __init__(self, netns: str, a: str, b: str, seed: int | None = None):
        self.netns, self.a, self.b = netns, a, b
        self.rng = random.Random(seed)
        self.impairments = {d: Impairment() for d in DIRECTIONS}
        self.stats = {d: DirectionStats() for d in DIRECTIONS}
        self._lock = threading.Lock()
        self._queue: list[tuple[float, int, str, bytes]] = []
        self._last_due = {d: 0.0 for d in DIRECTIONS}
        self._counter = 0
        self._stop = False
        self._thread: threading.Thread | None = None
        self._socks: dict[str, socket.socket] = {}
        self._wake_r, self._wake_w = -1, -1

    def _open(self, ifname: str) -> socket.socket:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            s.bind((ifname, ETH_P_ALL))
            s.setblocking(False)
        except OSError:
            s.close()
            raise
        return s

    def start(self) -> Wire:
        try:
            with inside(self.netns):
                self._socks = {"a": self._open(self.a), "b": self._open(self.b)}
        except OSError as e:
            self.stop()
            raise NetworkError(f"cannot open packet sockets on {self.a}/{self.b} in "
                               f"{self.netns}: {e}") from e
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name=f"wire:{self.netns}")
        self._thread.start()
        return self

    def set(self, direction: str = "both", *, delay_s: float = 0.0, jitter_s: float = 0.0,
            loss: float = 0.0, blackhole: bool = False) -> None:
        """Set the impairment of ``"a2b"``, ``"b2a"`` or ``"both"`` directions."""
        if not 0.0 <= loss <= 1.0:
            raise ValueError(f"loss must be a probability 0..1, got {loss}")
        if delay_s < 0 or jitter_s < 0:
            raise ValueError("delay and jitter must be >= 0")
        dirs = DIRECTIONS if direction == "both" else (direction,)
        with self._lock:
            for d in dirs:
                if d not in DIRECTIONS:
                    raise ValueError(f"direction must be a2b, b2a or both, not {d!r}")
                self.impairments[d] = Impairment(delay_s, jitter_s, loss, blackhole)
        self._wake()

    def clear(self) -> None:
        self.set("both")

    def _wake(self) -> None:
        if self._wake_w >= 0:
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass

    def _loop(self) -> None:
        sa, sb = self._socks["a"], self._socks["b"]
        route = {sa.fileno(): ("a2b", sb), sb.fileno(): ("b2a", sa)}
        out = {"a2b": sb, "b2a": sa}
        while not self._stop:
            with self._lock:
                due = self._queue[0][0] if self._queue else None
            timeout = None if due is None else max(0.0, due - time.monotonic())
            try:
                ready, _, _ = select.select([sa, sb, self._wake_r], [], [], timeout)
            except (OSError, ValueError):
                return
            for r in ready:
                if r == self._wake_r:
                    os.read(self._wake_r, 4096)
                    continue
                direction, _ = route[r.fileno()]
                for _ in range(64):                      # bounded batch per wakeup
                    try:
                        frame, addr = r.recvfrom(RECV_BUF)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        return
                    if addr[2] != PACKET_OUTGOING:
                        self._accept(direction, frame)
            self._flush(out)

    def _accept(self, direction: str, frame: bytes) -> None:
        with self._lock:
            imp = self.impairments[direction]
            st = self.stats[direction]
            if imp.blackhole:
                st.blackholed += 1
                return
            ethertype = frame[VNET_HDR_LEN + 12:VNET_HDR_LEN + 14]
            if imp.loss and ethertype in ETH_TYPES_IP and self.rng.random() < imp.loss:
                st.lost += 1
                return
            now = time.monotonic()
            delay = imp.delay_s
            if imp.jitter_s:
                delay = max(0.0, delay + self.rng.uniform(-imp.jitter_s, imp.jitter_s))
            due = max(now + delay, self._last_due[direction])   # never reorder
            self._last_due[direction] = due
            self._counter += 1
            heapq.heappush(self._queue, (due, self._counter, direction, frame))

    def _flush(self, out: dict[str, socket.socket]) -> None:
        now = time.monotonic()
        while True:
            with self._lock:
                if not self._queue or self._queue[0][0] > now:
                    return
                _, _, direction, frame = heapq.heappop(self._queue)
            st = self.stats[direction]
            try:
                out[direction].send(frame)
                st.forwarded += 1
            except OSError as e:                # e.g. ENOBUFS: a dropped frame, like a NIC
                st.send_errors += 1
                st.last_errors = (st.last_errors + [str(e)])[-5:]

    def stop(self) -> None:
        """Stop forwarding (bounded) and close the sockets."""
        self._stop = True
        self._wake()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None
        for s in self._socks.values():
            s.close()
        self._socks = {}
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1
