"""The socket's connect (socket.py over connect.py) with a scripted backend, on CPython
and in the MicroPython VM: a non-blocking connect steps the backend's preparation
(``connect_prepare``: a modem's bearer reopen) from ``connect_done()`` before the
handshake starts, and reads, writes and polls meanwhile say "not yet"; the connect's
limit counts from ``connect()``, the preparation included; a failure, a timeout and a
close end it, each leaving no attempt behind; a blocking connect never prepares."""

import errno

from portable import FakeClock, eq, raises

from synack import connect as connect_mod
from synack import socket as synsocket
from synack import tcp
from synack.backend import POLLIN, POLLOUT, Backend

PORTABLE = True


class Prep:
    """A preparation that is done after ``steps`` advances (or raises ``error`` then)."""

    def __init__(self, steps, error=None):
        self.steps = steps
        self.error = error
        self.advances = 0
        self.cancelled = False

    def advance(self):
        self.advances += 1
        if self.advances < self.steps:
            return False
        if self.error is not None:
            raise self.error
        return True

    def cancel(self):
        self.cancelled = True


class Scripted(Backend):
    """Prepares with ``prep`` (None: nothing), establishes after ``polls`` polls."""

    name = "scripted"

    def __init__(self, prep=None, polls=1):
        self.prep = prep
        self.polls = polls
        self.calls = []

    def connect_prepare(self, sock, limit_ms):
        self.calls.append(("prepare", limit_ms))
        return self.prep

    def connect_start(self, sock, host, port, limit_ms):
        self.calls.append(("start", host, port))
        sock.tcp.fire(tcp.CONNECT)
        return 7, False

    def connect_poll(self, sock, wait_ms):
        self.calls.append(("poll", sock.handle))
        self.polls -= 1
        if self.polls > 0:
            return False
        sock.tcp.fire(tcp.CONNECTED)
        return True

    def connect_abort(self, sock, limit_ms):
        self.calls.append(("abort", limit_ms))
        return OSError(errno.ETIMEDOUT, "no answer within %d ms" % limit_ms)

    def poll_flags(self, sock, flags):
        return flags & (POLLIN | POLLOUT)

    def close(self, sock, timeout_ms=None):
        self.calls.append(("close", sock.handle))


def nonblocking(backend, limit_ms=1000):
    s = synsocket.socket(backend=backend)
    s.setblocking(False)
    s.connect_timeout_ms = limit_ms
    return s


def test_the_preparation_is_stepped_then_the_handshake_starts():
    prep = Prep(3)
    b = Scripted(prep, polls=2)
    s = nonblocking(b)
    eq(raises(OSError, s.connect, ("10.0.0.1", 80)).args[0], errno.EINPROGRESS)
    eq((prep.advances, b.calls, s.handle), (1, [("prepare", 1000)], None))
    eq(s.poll_flags(POLLIN | POLLOUT), 0)                  # not yet: nothing ready
    eq(raises(OSError, s.send, b"x").args[0], errno.EAGAIN)
    eq(prep.advances, 3)                                   # the send stepped it: done
    eq(b.calls[1:], [("start", "10.0.0.1", 80), ("poll", 7)])
    eq(s.connect_done(), True)
    eq((s.state, s.handle, prep.cancelled), ("ESTABLISHED", 7, False))
    eq(s.connect_done(), True)                             # and stays so


def test_a_failed_preparation_is_the_connects_error_and_nothing_was_started():
    b = Scripted(Prep(2, OSError(errno.EHOSTUNREACH, "no network")))
    s = nonblocking(b)
    raises(OSError, s.connect, ("10.0.0.1", 80))
    e = raises(OSError, s.connect_done)
    eq((e.args[0], [c[0] for c in b.calls]), (errno.EHOSTUNREACH, ["prepare"]))
    eq(raises(OSError, s.connect_done).args[0], errno.ENOTCONN)   # it is over
    s.close()
    eq([c[0] for c in b.calls], ["prepare"])               # nothing to close


def test_the_limit_counts_the_preparation_and_gives_it_up():
    clock = FakeClock()
    real = connect_mod.time
    connect_mod.time = clock
    try:
        prep = Prep(100)
        s = nonblocking(Scripted(prep), limit_ms=500)
        raises(OSError, s.connect, ("10.0.0.1", 80))
        clock.now = 499
        eq(s.connect_done(), False)
        clock.now = 500
        e = raises(OSError, s.connect_done)
    finally:
        connect_mod.time = real
    eq((e.args[0], str(e.args[1])), (errno.ETIMEDOUT,
                                     "connect to 10.0.0.1:80: not ready within 500 ms"))
    eq(prep.cancelled, True)


def test_a_close_during_the_preparation_cancels_it():
    prep = Prep(100)
    b = Scripted(prep)
    s = nonblocking(b)
    raises(OSError, s.connect, ("10.0.0.1", 80))
    s.close()
    eq((prep.cancelled, [c[0] for c in b.calls]), (True, ["prepare"]))


def test_a_handshake_past_the_limit_is_aborted():
    clock = FakeClock()
    real = connect_mod.time
    connect_mod.time = clock
    try:
        b = Scripted(None, polls=100)
        s = nonblocking(b, limit_ms=300)
        raises(OSError, s.connect, ("10.0.0.1", 80))
        eq(s.connect_done(), False)
        clock.now = 300
        e = raises(OSError, s.connect_done)
    finally:
        connect_mod.time = real
    eq((e.args[0], b.calls[-1], s.handle), (errno.ETIMEDOUT, ("abort", 300), None))


def test_a_blocking_connect_never_prepares():
    b = Scripted(Prep(1), polls=3)
    s = synsocket.socket(backend=b)
    s.settimeout(1)
    s.connect(("10.0.0.1", 80))
    eq(([c[0] for c in b.calls], s.state), (["start", "poll", "poll", "poll"],
                                            "ESTABLISHED"))
