"""One TCP keepalive configuration, mapped to the best mechanism a backend has.

``sock.keepalive(idle, interval, count)`` (see synack.socket) asks for this: after
``idle`` seconds without traffic, probe every ``interval`` seconds; after ``count``
unanswered probes the peer is dead, the socket fails with ETIMEDOUT and its TCP state
goes to CLOSED. Defaults are the classic stack values (7200 s, 75 s) with the seed's
10 probes. The bound a caller can rely on is ``deadline_s()`` = idle + interval x count.

Mechanisms, best first:

- ``"tcp"``: the platform's own TCP keepalive (SO_KEEPALIVE with TCP_KEEPIDLE,
  TCP_KEEPINTVL, TCP_KEEPCNT), e.g. MicroPython's unix port or CPython.
- ``"modem"``: the modem's vendor command (SIMCom ``AT+CTCPKA``), when the requested
  times can be expressed in its units without making detection slower.
- ``"probe"``: neither is possible (ESP32 lwIP sockets take no keepalive options; a
  modem whose units are too coarse): the application must probe, i.e. run a
  synack.heartbeat on the connection with the same timings.
"""

from micropython import const

DEFAULT_IDLE_S = const(7200)
DEFAULT_INTERVAL_S = const(75)
DEFAULT_COUNT = const(10)

TCP = "tcp"
MODEM = "modem"
PROBE = "probe"


class Keepalive:
    __slots__ = ("idle", "interval", "count")

    def __init__(self, idle=DEFAULT_IDLE_S, interval=DEFAULT_INTERVAL_S, count=DEFAULT_COUNT):
        for name, value in (("idle", idle), ("interval", interval), ("count", count)):
            if not isinstance(value, int) or value < 1:
                raise ValueError("keepalive %s must be a whole number >= 1, got %r"
                                 % (name, value))
        self.idle = idle
        self.interval = interval
        self.count = count

    def deadline_s(self):
        """Seconds from the last traffic until a dead peer is declared."""
        return self.idle + self.interval * self.count

    def __repr__(self):
        return "Keepalive(idle=%d, interval=%d, count=%d)" % (self.idle, self.interval,
                                                            self.count)


def in_units(ka, unit_s, idle_range, interval_range, count_range):
    """(idle, interval, count) in a modem's units, or None when they cannot be expressed
    exactly within its ranges (rounding up would make detection slower than promised)."""
    if ka.idle % unit_s or ka.interval % unit_s:
        return None
    idle, interval = ka.idle // unit_s, ka.interval // unit_s
    if (idle_range[0] <= idle <= idle_range[1]
            and interval_range[0] <= interval <= interval_range[1]
            and count_range[0] <= ka.count <= count_range[1]):
        return idle, interval, ka.count
    return None
