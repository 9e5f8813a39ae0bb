"""Application-level heartbeat on a long-lived connection, and push delivery.

Firewalls and carrier NATs forget a TCP connection that has been quiet for a few minutes
(DESIGN.md: 1-30 min, one operator exactly 2 min), and neither side learns about it until
it next sends. TCP keepalive is not tunable on every backend, so the device sends a small
heartbeat after ``idle_ms`` without traffic, expects the answer within ``timeout_ms`` and
declares the connection dead after ``misses`` unanswered heartbeats in a row: a dead peer
is noticed within idle_ms + misses * timeout_ms. Every other line the server sends is a
push message for the application.

``Heartbeat`` is the sans-I/O core: it takes ``now_ms`` (ticks) and received lines or
bytes and returns actions - ``(SEND, bytes)``, ``(DELIVER, line)``, ``(LINK_DEAD, reason)``.
Its states are one table (``TRANSITIONS``); an event the table does not allow raises
``HeartbeatStateError``. ``Driver`` does the I/O over a synack.socket with short reads and
a bounded run. The wire format is a codec object; ``LineCodec`` is the default
(``HB <seq>\\n`` answered by ``HBACK <seq>\\n``, docs/heartbeat-outbox-supervisor.md).
"""

import errno
import time

from micropython import const

try:
    from typing import TYPE_CHECKING  # absent on MicroPython: only type checkers see it
except ImportError:
    TYPE_CHECKING = False
if TYPE_CHECKING: from typing import Any  # noqa: F401 (used in type comments)

# States
ACTIVE = const(0)    # no heartbeat outstanding; the idle timer runs
AWAITING = const(1)  # heartbeat(s) sent; the answer timer runs
DEAD = const(2)      # too many misses, or the connection ended
STATE_NAMES = ("ACTIVE", "AWAITING", "DEAD")

# Events
IDLE = const(0)      # idle_ms without traffic: send a heartbeat
ACK = const(1)       # the answer to an outstanding heartbeat
TRAFFIC = const(2)   # any other line in, or application data out
MISSED = const(3)    # no answer within timeout_ms, fewer than `misses` so far: send again
GAVE_UP = const(4)   # the last allowed miss
CLOSED = const(5)    # the driver saw end of stream or a socket error
EVENT_NAMES = ("IDLE", "ACK", "TRAFFIC", "MISSED", "GAVE_UP", "CLOSED")

TRANSITIONS = {
    (ACTIVE, IDLE): AWAITING,
    (ACTIVE, TRAFFIC): ACTIVE,
    (ACTIVE, CLOSED): DEAD,
    (AWAITING, ACK): ACTIVE,
    # A push proves we hear the server, not that it hears us: keep waiting for the ack.
    (AWAITING, TRAFFIC): AWAITING,
    (AWAITING, MISSED): AWAITING,
    (AWAITING, GAVE_UP): DEAD,
    (AWAITING, CLOSED): DEAD,
}

# Actions returned by the core
SEND = const(0)
DELIVER = const(1)
LINK_DEAD = const(2)

# What a codec says a received line is
DATA_LINE = const(0)
ACK_LINE = const(1)
PING_LINE = const(2)   # the server probes us: answer it

_SEQ_WRAP = const(1 << 30)
_MAX_LINE = const(256)


class HeartbeatError(Exception):
    pass


class HeartbeatStateError(HeartbeatError):
    def __init__(self, state, event):
        super().__init__("heartbeat event %s is illegal in state %s"
                         % (EVENT_NAMES[event], STATE_NAMES[state]))
        self.state = state
        self.event = event


class HeartbeatProtocolError(HeartbeatError):
    """The peer sent something the heartbeat format does not allow."""


class LineCodec:
    """``HB <seq>`` -> ``HBACK <seq>``, one line each; the server may also send
    ``HB <seq>`` and gets ``HBACK <seq>`` back. Any other line is push data."""

    def __init__(self, ping=b"HB", ack=b"HBACK"):
        self._ping = bytes(ping)
        self._ack = bytes(ack)

    def ping(self, seq):
        return b"%s %d\n" % (self._ping, seq)

    def ack(self, seq):
        return b"%s %d\n" % (self._ack, seq)

    def classify(self, line):
        """(ACK_LINE | PING_LINE, seq) or (DATA_LINE, 0); ``line`` has no line end."""
        sp = line.find(b" ")
        word = line if sp < 0 else line[:sp]
        if word == self._ack:
            kind = ACK_LINE
        elif word == self._ping:
            kind = PING_LINE
        else:
            return DATA_LINE, 0
        digits = b"" if sp < 0 else line[sp + 1:]
        if not digits or not digits.isdigit() or len(digits) > 10:
            raise HeartbeatProtocolError("malformed heartbeat line %r: want %s <number>"
                                         % (bytes(line), word.decode()))
        return kind, int(digits)


class Heartbeat:
    """Sans-I/O heartbeat core. Call ``timer(now)`` when ``wake_at()`` is due,
    ``receive_data``/``receive_line`` with what arrived, ``sent(now)`` when the
    application sent data; each returns a list of actions."""

    def __init__(self, idle_ms=30000, timeout_ms=10000, misses=3, codec=None,
                 max_line=_MAX_LINE, now=None):
        if idle_ms <= 0 or timeout_ms <= 0 or misses < 1:
            raise ValueError("heartbeat needs idle_ms > 0, timeout_ms > 0, misses >= 1")
        self.idle_ms = idle_ms
        self.timeout_ms = timeout_ms
        self.misses = misses
        self.codec = codec or LineCodec()
        self.state = ACTIVE
        self.seq = 0            # last heartbeat sequence number sent
        self.missed = 0         # consecutive misses now
        self.reason = None      # why DEAD
        # counters a field engineer wants
        self.pings_sent = 0
        self.acks = 0
        self.total_misses = 0
        self.late_acks = 0
        self.pushes = 0
        self.rtt_ms = None      # round trip of the last answered heartbeat
        self._outstanding = 0   # heartbeats sent and not yet answered
        self._sent_at = 0  # type: Any  # pragma: no mutate -- _ping() sets it before use
        self._last = 0  # type: Any  # pragma: no mutate -- start() below sets it
        self._buf = bytearray(max_line)  # line framing buffer, preallocated
        self._len = 0
        self.start(time.ticks_ms() if now is None else now)

    @property
    def state_name(self):
        return STATE_NAMES[self.state]

    def start(self, now):
        """(Re)arm the idle timer from ``now``, e.g. right after connect()."""
        self._last = now

    def _fire(self, event):
        new = TRANSITIONS.get((self.state, event), -1)
        if new < 0:
            raise HeartbeatStateError(self.state, event)
        self.state = new
        return new

    def wake_at(self):
        """Ticks at which ``timer()`` has work, or None once DEAD."""
        if self.state == ACTIVE:
            return time.ticks_add(self._last, self.idle_ms)
        if self.state == AWAITING:
            return time.ticks_add(self._sent_at, self.timeout_ms)
        return None

    def _ping(self, now, out):
        self.seq = self.seq % _SEQ_WRAP + 1
        self._outstanding = min(self._outstanding + 1, self.misses)
        self._sent_at = now
        self.pings_sent += 1
        out.append((SEND, self.codec.ping(self.seq)))

    def timer(self, now):
        out = []
        due = self.wake_at()
        if due is None or time.ticks_diff(now, due) < 0:
            return out
        if self.state == ACTIVE:
            self._fire(IDLE)
            self._ping(now, out)
            return out
        self.missed += 1
        self.total_misses += 1
        if self.missed >= self.misses:
            self._fire(GAVE_UP)
            self.reason = ("no answer to %d heartbeat(s) in a row (%d ms each, last seq %d)"
                           % (self.missed, self.timeout_ms, self.seq))
            out.append((LINK_DEAD, self.reason))
        else:
            self._fire(MISSED)
            self._ping(now, out)
        return out

    def sent(self, now):
        """The application sent data: outgoing traffic also keeps middleboxes open."""
        if self.state == ACTIVE:
            self._fire(TRAFFIC)
            self._last = now

    def closed(self, now, reason):
        """The driver saw the connection end; returns the LINK_DEAD action."""
        if self.state == DEAD:
            return []
        self._fire(CLOSED)
        self.reason = reason
        return [(LINK_DEAD, reason)]

    def receive_line(self, now, line, out=None):
        """One received line (line end optional)."""
        if out is None:
            out = []
        end = len(line)
        while end and line[end - 1] in (10, 13):
            end -= 1
        line = bytes(line[:end])
        kind, seq = self.codec.classify(line)
        if kind == ACK_LINE and self._outstanding and \
                (self.seq - seq) % _SEQ_WRAP < self._outstanding:
            self._fire(ACK)
            if seq == self.seq:
                self.rtt_ms = time.ticks_diff(now, self._sent_at)
            self.acks += 1
            self.missed = 0
            self._outstanding = 0
        else:
            self._fire(TRAFFIC)
            if kind == ACK_LINE:
                self.late_acks += 1   # answer to a heartbeat we already gave up on
            elif kind == PING_LINE:
                out.append((SEND, self.codec.ack(seq)))
            else:
                self.pushes += 1
                out.append((DELIVER, line))
        self._last = now
        return out

    def receive_data(self, now, data):
        """Received bytes: framed into lines of at most ``max_line`` bytes."""
        out = []
        buf = self._buf
        for b in data:
            if b == 10:
                self.receive_line(now, memoryview(buf)[:self._len], out)
                self._len = 0
            elif self._len >= len(buf):
                self._len = 0
                raise HeartbeatProtocolError("line longer than %d bytes from the peer"
                                             % len(buf))
            else:
                buf[self._len] = b
                self._len += 1
        return out


_STOPPED = "stopped"
_DEADLINE = "deadline"
_DEAD = "dead"


class Driver:
    """Blocking driver over a connected synack.socket (or any object with
    settimeout/recv_into/write). ``run()`` returns "dead", "deadline" or "stopped";
    the caller owns the socket and closes it."""

    def __init__(self, sock, hb, on_push, poll_ms=100, rx_size=128, events=None):
        """``events``: an optional sink ``events(kind, detail)`` told of each missed
        heartbeat ("hb_miss") and of the link's death ("hb_dead", the reason), e.g. a
        black box's ``add``; it cannot stop the driver (its failures are ignored)."""
        self.sock = sock
        self.hb = hb
        self.on_push = on_push
        self.poll_ms = poll_ms
        self.events = events
        self._dead_told = False
        self._rx = bytearray(rx_size)
        self._rxmv = memoryview(self._rx)
        self._stop = False
        hb.start(time.ticks_ms())

    def stop(self):
        self._stop = True

    def send(self, data):
        """Application data on the same connection (resets the idle timer)."""
        try:
            self.sock.write(data)
        except OSError as e:
            self._act(self.hb.closed(time.ticks_ms(), "send failed: %s" % e))
            raise
        self.hb.sent(time.ticks_ms())

    def _act(self, actions):
        for kind, value in actions:
            if kind == SEND:
                try:
                    self.sock.write(value)
                except OSError as e:
                    self._act(self.hb.closed(time.ticks_ms(), "heartbeat send failed: %s" % e))
                    return
            elif kind == DELIVER:
                self.on_push(value)

    def run(self, duration_ms=None, stop=None):
        """Serve the connection until DEAD, ``duration_ms`` elapsed, ``stop()`` returns
        true or ``self.stop()`` was called."""
        end = None if duration_ms is None else time.ticks_add(time.ticks_ms(), duration_ms)
        self._stop = False
        while True:
            wait = self.step(end, stop)
            if isinstance(wait, str):
                return wait
            self._read(wait)

    def step(self, end=None, stop=None):
        """One turn of the loop (timers, sends): the result ("dead", "deadline",
        "stopped") when the run is over, else how many ms to wait for data. Lets an
        asyncio task (synack.tasks.heartbeat) share the logic of run()."""
        hb = self.hb
        if hb.state == DEAD:
            return self._dead()
        if self._stop or (stop is not None and stop()):
            return _STOPPED
        now = time.ticks_ms()
        if end is not None and time.ticks_diff(end, now) <= 0:
            return _DEADLINE
        misses, seq = hb.total_misses, hb.seq  # seq: the heartbeat that may go unanswered
        self._act(hb.timer(now))
        if hb.total_misses != misses:
            self._tell("hb_miss", "%d of %d in a row, seq %d" % (hb.missed, hb.misses, seq))
        if hb.state == DEAD:
            return self._dead()
        wait = self.poll_ms
        due = hb.wake_at()
        if due is not None:
            wait = min(wait, time.ticks_diff(due, now))
        if end is not None:
            wait = min(wait, time.ticks_diff(end, now))
        return max(wait, 1)

    def _dead(self):
        if not self._dead_told:
            self._dead_told = True
            self._tell("hb_dead", self.hb.reason)
        return _DEAD

    def _tell(self, kind, detail):
        if self.events is not None:
            try:
                self.events(kind, detail)
            except Exception:  # a broken sink must not take the heartbeat down with it
                pass

    def read_ready(self):
        """Take in what has arrived, without waiting."""
        self._read(0)

    def _read(self, wait_ms):
        sock = self.sock
        # +0.5: the socket turns seconds back into whole ms; a wait of 1 ms must not
        # round down to 0 (non-blocking) and spin. 0 is non-blocking on purpose.
        sock.settimeout((wait_ms + 0.5) / 1000 if wait_ms else 0)
        try:
            n = sock.recv_into(self._rx)
        except OSError as e:
            code = e.args[0] if e.args else None
            if code in (errno.ETIMEDOUT, errno.EAGAIN):
                return
            self._act(self.hb.closed(time.ticks_ms(), "connection failed: %s" % e))
            return
        if not n:
            self._act(self.hb.closed(time.ticks_ms(), "connection closed by the peer"))
            return
        try:
            self._act(self.hb.receive_data(time.ticks_ms(), self._rxmv[:n]))
        except HeartbeatProtocolError as e:
            self._act(self.hb.closed(time.ticks_ms(), str(e)))
