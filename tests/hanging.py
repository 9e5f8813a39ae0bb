"""Ports on 127.0.0.1 for connect tests: one where a connect hangs, one that refuses.

A connect that neither completes nor fails, without firewall rules: a listener with
``listen(0)`` whose accept queue is already full (one connection made and never
accepted). Linux then drops further SYNs, so a new connect stays in SYN_SENT and the
client retransmits its SYN until someone gives up. ``HangingListener`` checks that the
trick works here (a probe connect stays pending) and skips the test if it does not."""

from __future__ import annotations

import select
import socket
import time

import pytest

_PROBE_S = 0.3   # how long a probe connect must stay pending to call the port hanging


def _pending(sock: socket.socket, seconds: float) -> bool:
    poller = select.poll()
    poller.register(sock, select.POLLOUT)
    return not poller.poll(int(seconds * 1000))


class HangingListener:
    """``with HangingListener() as port:`` a port on 127.0.0.1 where connects hang."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self._fill: list[socket.socket] = []
        try:
            self._fill_queue()
        except BaseException:
            self.close()
            raise

    def _fill_queue(self) -> None:
        for _ in range(4):   # the queue holds backlog + 1 on Linux: one or two suffice
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", self.port))
            if _pending(s, _PROBE_S):
                s.close()    # the probe hung: the queue is full, SYNs are dropped
                return
            self._fill.append(s)
        pytest.skip("a full listen(0) accept queue does not drop SYNs on this system")

    def close(self) -> None:
        for s in self._fill:
            s.close()
        self.sock.close()

    def __enter__(self) -> int:
        return self.port

    def __exit__(self, *exc) -> None:
        self.close()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (connects are refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def elapsed(t0: float) -> float:
    return time.monotonic() - t0
