"""What SIMCom's SIM7600 and SIM800 say alike: the manual-receive read
``AT+CIPRXGET=2,<link>,<max>`` and its length-framed answer."""

import errno

from micropython import const

from ..at.errors import CommandError, CommandTimeout
from .base import parse_ints

_CMD_MS = const(5000)


def ciprxget(backend, n, link, buf, max_read):
    """One read of link ``n`` into ``buf`` (``backend``: a links.LinkBackend): the count,
    0 when the modem holds nothing (its ERROR). The answer is ``+CIPRXGET: 2,<link>,
    <read>,<rest>`` and then exactly <read> bytes; one that does not add up is a lost
    framing (EIO, resync)."""
    size = min(len(buf), max_read)
    try:
        reply = backend.at.command(("AT+CIPRXGET=2,%d,%d" % (n, size)).encode(),
                                   b"+CIPRXGET: 2,", timeout_ms=_CMD_MS)
    except CommandTimeout as e:  # a payload cut short: resync, the data may be lost
        link.rx_pending = True
        raise OSError(errno.ETIMEDOUT, "link %d: %s" % (n, e))
    except CommandError:
        link.rx_pending = False  # "+IP ERROR: No data"  # pragma: no mutate -- truth only
        return 0
    values = parse_ints(reply.lines[0], 13) if reply.lines else None
    data = reply.payload or b""
    got = len(data)
    if (not values or len(values) != 3 or values[0] != n or not 0 <= values[1] <= size
            or values[2] < 0 or got != values[1]):
        raise backend.framing_lost(link, "link %d: bad +CIPRXGET framing (asked %d bytes; "
                                   "header %r, %d bytes followed)"
                                   % (n, size, reply.lines[:1], got))
    buf[:got] = data
    link.rx_pending = values[2] > 0
    return got
