"""The TCP connection lifecycle (RFC 793, client side) as one transition table.

A socket backend reports what it observes (``CONNECT`` when it sends the SYN,
``PEER_FIN`` when the peer's FIN arrives, ...) and ``Connection.fire()`` moves the state
along the table. A transition that is not in the table raises ``TCPStateError``: a
backend that reports an impossible sequence has a bug, and hiding it would make the
lifecycle shown to the user a fiction.

Every connection keeps a bounded log of (ticks_ms, event, old state, new state) so a
field engineer can see how a connection lived and died (``Connection.history()``).

Backends see different amounts of TCP: a native socket sees the handshake complete and
the peer's FIN as ``recv() == b''``; a modem reports ``+CIPOPEN: n,0``, ``+IPCLOSE`` and
``+CIPCLOSE: n,0``. docs/tcp-lifecycle.md lists how each backend maps onto these events.
"""

import time

from micropython import const

CLOSED = const(0)
SYN_SENT = const(1)
ESTABLISHED = const(2)
FIN_WAIT_1 = const(3)
FIN_WAIT_2 = const(4)
CLOSING = const(5)
TIME_WAIT = const(6)
CLOSE_WAIT = const(7)
LAST_ACK = const(8)

STATE_NAMES = ("CLOSED", "SYN_SENT", "ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2",
               "CLOSING", "TIME_WAIT", "CLOSE_WAIT", "LAST_ACK")

# Events: what the backend observed.
CONNECT = const(0)         # we sent SYN (connect() started)
CONNECTED = const(1)       # SYN+ACK received and acknowledged: handshake complete
REFUSED = const(2)         # RST in answer to our SYN
CLOSE = const(3)           # the application closed: we send FIN
FIN_ACKED = const(4)       # the peer acknowledged our FIN
PEER_FIN = const(5)        # the peer's FIN arrived (it has no more data to send)
TIME_WAIT_DONE = const(6)  # 2*MSL elapsed (or the modem released the link)
RESET = const(7)           # RST received, or the link/network vanished
TIMEOUT = const(8)         # gave up: handshake, retransmission or keepalive timeout
# Notes: logged with note(), never change the state (what the layer below the connection
# did for it, e.g. a modem reopening its packet data bearer before a connect).
BEARER_UP = const(9)       # the bearer was down; it was reopened for this connect
BEARER_FAILED = const(10)  # one attempt to reopen the bearer failed
_FIRST_NOTE = const(9)

EVENT_NAMES = ("CONNECT", "CONNECTED", "REFUSED", "CLOSE", "FIN_ACKED", "PEER_FIN",
               "TIME_WAIT_DONE", "RESET", "TIMEOUT", "BEARER_UP", "BEARER_FAILED")

# (state, event) -> next state. RESET and TIMEOUT are accepted from every state but
# CLOSED and handled in fire(); everything else must be listed here.
TRANSITIONS = {
    (CLOSED, CONNECT): SYN_SENT,
    (SYN_SENT, CONNECTED): ESTABLISHED,
    (SYN_SENT, REFUSED): CLOSED,
    (SYN_SENT, CLOSE): CLOSED,
    (ESTABLISHED, CLOSE): FIN_WAIT_1,
    (ESTABLISHED, PEER_FIN): CLOSE_WAIT,
    (FIN_WAIT_1, FIN_ACKED): FIN_WAIT_2,
    (FIN_WAIT_1, PEER_FIN): CLOSING,
    (FIN_WAIT_2, PEER_FIN): TIME_WAIT,
    (CLOSING, FIN_ACKED): TIME_WAIT,
    (TIME_WAIT, TIME_WAIT_DONE): CLOSED,
    (CLOSE_WAIT, CLOSE): LAST_ACK,
    (LAST_ACK, FIN_ACKED): CLOSED,
}

_LOG_SIZE = const(16)
_NO_ENTRY = (0, 0, 0, 0)


class TCPStateError(Exception):
    """An event that the TCP state machine does not allow in the current state."""

    def __init__(self, state, event):
        super().__init__("TCP event %s is illegal in state %s"
                         % (EVENT_NAMES[event], STATE_NAMES[state]))
        self.state = state
        self.event = event


class Connection:
    """State and bounded event log of one TCP connection."""

    def __init__(self, log_size=_LOG_SIZE):
        self.state = CLOSED
        # Ring buffer of (ticks_ms, event, old, new); preallocated, never grows.
        self._log = [_NO_ENTRY] * log_size  # type: list[tuple]
        self._n = 0

    def next_state(self, event):
        """The state ``event`` would lead to, or -1 if it is illegal now."""
        if event == RESET or event == TIMEOUT:
            return CLOSED if self.state != CLOSED else -1
        return TRANSITIONS.get((self.state, event), -1)

    def accepts(self, event):
        return self.next_state(event) >= 0

    def fire(self, event):
        """Apply ``event``; returns the new state; raises TCPStateError if illegal."""
        new = self.next_state(event)
        if new < 0:
            raise TCPStateError(self.state, event)
        old = self.state
        self.state = new
        self._log[self._n % len(self._log)] = (time.ticks_ms(), event, old, new)
        self._n += 1
        return new

    def note(self, event):
        """Log a note event (BEARER_UP, BEARER_FAILED): no state change."""
        if event < _FIRST_NOTE:
            raise TCPStateError(self.state, event)
        self._log[self._n % len(self._log)] = (time.ticks_ms(), event, self.state, self.state)
        self._n += 1

    def notes(self):
        """The note events logged (and still in the log), oldest first."""
        return [e for (_, e, _, _) in self.history() if e >= _FIRST_NOTE]

    def complete_active_close(self):
        """Walk the rest of an active close the stack completed without showing us
        each segment (a modem's "+CIPCLOSE: n,0", a native close()). TIME_WAIT is
        then held by the stack below, so the connection is CLOSED for us."""
        if self.state == FIN_WAIT_1:
            self.fire(FIN_ACKED)
        if self.state == FIN_WAIT_2:
            self.fire(PEER_FIN)
        if self.state == CLOSING:
            self.fire(FIN_ACKED)
        if self.state == TIME_WAIT:
            self.fire(TIME_WAIT_DONE)

    def last_event(self):
        """The event of the latest transition (e.g. TIMEOUT: why it is CLOSED), or -1."""
        for entry in reversed(self.history()):
            if entry[1] < _FIRST_NOTE:
                return entry[1]
        return -1

    @property
    def state_name(self):
        return STATE_NAMES[self.state]

    def history(self):
        """The logged transitions, oldest first: [(ticks_ms, event, old, new), ...]."""
        size = len(self._log)
        first = self._n - size if self._n > size else 0  # pragma: no mutate -- equal: 0 either way
        return [self._log[i % size] for i in range(first, self._n)]

    def states(self):
        """The sequence of states this connection went through, from its first logged one."""
        h = [entry for entry in self.history() if entry[1] < _FIRST_NOTE]
        if not h:
            return [STATE_NAMES[self.state]]
        out = [STATE_NAMES[h[0][2]]]
        for entry in h:
            out.append(STATE_NAMES[entry[3]])
        return out

    def format_history(self):
        """Human-readable log lines, e.g. ``12345 CONNECT CLOSED -> SYN_SENT``; a note
        reads ``12345 BEARER_UP (in CLOSED)``."""
        return ["%d %s (in %s)" % (t, EVENT_NAMES[e], STATE_NAMES[a]) if e >= _FIRST_NOTE
                else "%d %s %s -> %s" % (t, EVENT_NAMES[e], STATE_NAMES[a], STATE_NAMES[b])
                for (t, e, a, b) in self.history()]
