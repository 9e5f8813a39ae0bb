"""One connect of a synack socket, in the steps the backend contract splits it into
(synack.backend): what must come first (``connect_prepare``: a modem's bearer reopen,
for a non-blocking connect only), the start of the handshake (``connect_start``), its
outcome (``connect_poll``) and giving up at the connect's limit (``connect_abort``).

A blocking connect steps it waiting in ``connect_poll``; a non-blocking one steps it
from ``connect_done()`` (and from reads, writes and polls before that) without ever
waiting. The limit counts from ``connect()``, the preparation included.
"""

import errno
import time


class Connect:
    """The connect in progress of ``sock`` (a synack.socket.socket, which owns this and
    lets it keep the handle in ``sock._handle``) on ``backend``, within ``limit_ms``
    (None: the transport's own limit)."""

    def __init__(self, sock, backend, limit_ms):
        self.sock = sock
        self.backend = backend
        self.limit = limit_ms
        self.t0 = time.ticks_ms()
        self.prep = None  # the backend's connect_prepare() stepper while it runs

    def begin(self, nonblocking):
        """Start: True if established at once; raises the failure."""
        if nonblocking:
            self.prep = self.backend.connect_prepare(self.sock, self.limit)
            if self.prep is not None:
                return self.step(False)
        return self._start()

    def step(self, block):
        """Carry the connect on, waiting (``block``) at most until the limit: True once
        established, False while pending; raises the failure (ETIMEDOUT once the limit
        has passed: the backend has given the attempt up)."""
        prep = self.prep
        if prep is not None:
            if not prep.advance():  # raises the preparation's failure
                if self.limit is None or self._elapsed() < self.limit:
                    return False
                self.cancel()
                raise OSError(errno.ETIMEDOUT, "connect to %s:%d: not ready within %d ms"
                              % (self.sock.peer[0], self.sock.peer[1], self.limit))
            self.prep = None
            if self._start():
                return True
        limit = self.limit
        wait = 0
        if block:
            wait = None if limit is None else max(limit - self._elapsed(), 0)
        sock = self.sock
        try:
            if self.backend.connect_poll(sock, wait):
                return True
        except OSError:
            sock._handle = None  # failed: the backend released the handle
            raise
        if limit is not None and self._elapsed() >= limit:
            e = self.backend.connect_abort(sock, limit)
            sock._handle = None
            raise e
        return False

    def cancel(self):
        """The socket closes before the outcome: a preparation is given up (the
        handshake itself is the backend's close to end)."""
        if self.prep is not None:
            self.prep.cancel()
            self.prep = None

    def _start(self):
        sock = self.sock
        host, port = sock.peer
        sock._handle, established = self.backend.connect_start(sock, host, port, self.limit)
        return established

    def _elapsed(self):
        return time.ticks_diff(time.ticks_ms(), self.t0)
