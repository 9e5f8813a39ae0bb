"""What every AT socket dialect shares: the table of the modem's links (sockets,
connections, sessions) and the socket backend calls that only consult it.

A dialect module subclasses ``LinkBackend`` and supplies the AT side:

- ``open_link(n, name, port)``: send the open command (its OK only; the outcome comes
  as a URC whose handler sets ``link.open_err``: 0 = connected);
- ``read_link(n, link, buf)``: one read command into ``buf``: the count, 0 if the modem
  holds nothing now; it updates ``link.rx_pending``;
- ``close_link(n, link)``: close on the modem and wait for it; False if it did not
  answer. Sets ``link.close_err`` to 0 when the close completed (our FIN acknowledged);
- ``abort_link(n)``: close a link that never opened (by default ``close_link``, whose
  ``link`` may be None then);
- ``OPEN_ERRORS`` / ``open_failed()``: what an open error code means;
- ``send`` (each dialect confirms sends its own way).

URC handlers record into the ``Link`` only (``rx_pending``, ``peer_closed``,
``open_err``, ``close_err``, ``sent``) and never issue commands; the calls here wait
for those fields with ``at.wait_for``, or poll the modem every ``poll_ms`` because a
data URC can be lost on a busy UART.
"""

import errno
import time

from .. import tcp
from ..at import quote
from ..at.errors import CommandError, CommandTimeout
from ..backend import POLLERR, POLLHUP, POLLIN, POLLOUT, Backend

try:
    from typing import TYPE_CHECKING  # absent on MicroPython: only type checkers see it
except ImportError:
    TYPE_CHECKING = False
if TYPE_CHECKING: from typing import Any  # noqa: F401 (used in type comments)


def refused(e, code, text):
    """The OSError for a socket call's AT command that failed: ``code`` and ``text`` for
    an ERROR reply (CommandError), ETIMEDOUT when the modem did not answer."""
    if isinstance(e, CommandTimeout):
        return OSError(errno.ETIMEDOUT, str(e))
    return OSError(code, "%s: %s" % (text, e))


class Link:
    """What the modem told us about one of its links (updated by URC handlers)."""

    __slots__ = ("tcp", "rx_pending", "peer_closed", "close_event", "open_err", "close_err",
                 "sent", "checked")

    def __init__(self, conn):
        self.tcp = conn
        self.rx_pending = False  # pragma: no mutate -- None: only its truth is read
        self.peer_closed = False  # pragma: no mutate -- None: only its truth is read
        self.close_event = None  # type: int | None  # peer's close seen before the handshake
        self.open_err = None  # type: int | None
        self.close_err = None  # type: int | None
        self.sent = None  # type: int | None
        self.checked = time.ticks_ms()  # when a read last asked the modem (poll_flags)

    def readable(self):
        """Whether a read has something to find: data announced, or the end."""
        return self.rx_pending or self.peer_closed

    def peer_gone(self, event):
        """The peer's FIN (tcp.PEER_FIN), a reset or a timeout, from a URC: recorded
        now, or at CONNECTED if it came with the open's own URC."""
        self.peer_closed = True
        if self.tcp.state == tcp.SYN_SENT:
            self.close_event = event
        elif self.tcp.accepts(event):
            self.tcp.fire(event)


class LinkBackend(Backend):
    """The link table and the dialect-independent socket calls (see the module doc)."""

    KIND = "link"        # how messages name one: link, connection, socket, session
    OPEN_URC = "open"    # the URC that tells a connect's outcome, for messages
    # open error code -> (errno, text); others: ECONNABORTED
    OPEN_ERRORS = {}  # type: dict[int, tuple[int, str]]
    FIRST_LINK = 0       # the lowest link number the modem uses

    def init_links(self, at, count, poll_ms):
        self.at = at
        self.poll_ms = poll_ms
        self.links = [None] * count  # type: list[Link | None]

    # -- hooks a dialect provides ------------------------------------------------------
    def open_link(self, n, name, port):
        # type: (int, bytes, int) -> None
        raise OSError(errno.EOPNOTSUPP, "%s cannot open links" % self.name)

    def read_link(self, n, link, buf):
        # type: (int, Link, Any) -> int
        raise OSError(errno.EOPNOTSUPP, "%s cannot read" % self.name)

    def close_link(self, n, link):
        # type: (int, Link | None) -> bool
        return True

    def abort_link(self, n):
        link = self.links[n]
        if link is not None:
            link.close_err = None
        self.close_link(n, link)

    def before_connect(self, sock, limit_ms):
        """Called before a link is taken (a modem reopens its bearer here)."""

    def new_link(self, sock):
        """Take a free link for ``sock``: its number (a modem that numbers sockets
        itself, as u-blox's AT+USOCR, overrides this)."""
        n = self.free_link()
        self.links[n] = Link(sock.tcp)
        return n

    def open_failed(self, sock, n, err):
        """The OSError for a connect the modem refused with ``err``."""
        code, text = self.OPEN_ERRORS.get(err, (errno.ECONNABORTED, "error"))
        return OSError(code, "connect to %s:%d failed: %s: %d,%d (%s)"
                       % (sock.peer[0], sock.peer[1], self.OPEN_URC, n, err, text))

    # -- the table ---------------------------------------------------------------------
    def own(self, sock):
        """The Link of ``sock``, or None once it was released (the number may serve
        another socket by now)."""
        n = sock.handle
        if n is None or not 0 <= n < len(self.links):
            return None
        link = self.links[n]
        return link if link is not None and link.tcp is sock.tcp else None

    def link_of(self, values):
        """The Link a URC's first integer names, or None (garbled, unknown, free)."""
        if not values:
            return None
        n = values[0]
        return self.links[n] if 0 <= n < len(self.links) else None

    def free_link(self):
        links = self.links
        for i in range(self.FIRST_LINK, len(links)):
            if links[i] is None:
                return i
        # A link reset by the network (CLOSED) whose socket was never closed, as
        # umqtt.robust leaves its old socket: let the modem release it too.
        for i in range(self.FIRST_LINK, len(links)):
            link = links[i]
            if link is not None and link.tcp.state == tcp.CLOSED:
                self.reclaim(i)
                links[i] = None  # pragma: no mutate -- the caller puts a Link there
                return i
        raise OSError(errno.ENOBUFS, "all %d modem %ss are in use"
                      % (len(links) - self.FIRST_LINK, self.KIND))

    def reclaim(self, n):
        """A CLOSED link is taken for a new connect (the modem freed it already)."""

    def release(self, n, event):
        link = self.links[n]
        if link and link.tcp.accepts(event):
            link.tcp.fire(event)
        self.links[n] = None

    def all_lost(self):
        """The network or the modem went away: every link is reset."""
        for link in self.links:
            if link:
                link.peer_closed = True
                if link.tcp.accepts(tcp.RESET):
                    link.tcp.fire(tcp.RESET)

    # -- connect -----------------------------------------------------------------------
    def connect_start(self, sock, host, port, limit_ms):
        """Take a link and send the open command (its OK only). OSError(EINVAL) for a
        host that is not a host name or IPv4 literal, or a port out of range."""
        name = quote.host(host)
        if not isinstance(port, int) or not 0 < port < 65536:
            raise OSError(errno.EINVAL, "invalid port %r" % (port,))
        self.before_connect(sock, limit_ms)
        n = self.new_link(sock)
        sock.tcp.fire(tcp.CONNECT)
        try:
            self.open_link(n, name, port)
        except CommandError as e:
            self.release(n, tcp.RESET)
            raise OSError(errno.EIO, "modem rejected the connect: " + str(e))
        except CommandTimeout as e:  # the link may be opening all the same: close it
            self.abort_link(n)
            self.release(n, tcp.TIMEOUT)
            raise OSError(errno.ETIMEDOUT, "connect: " + str(e))
        return n, False

    def connect_poll(self, sock, wait_ms):
        """Process URCs for up to ``wait_ms`` (0: what has arrived; None: the modem's
        own limit) until the open URC tells the outcome; True once established."""
        n = sock.handle
        link = self.own(sock)
        conn = sock.tcp
        if link is None or conn.state == tcp.CLOSED:  # network lost (RESET) meanwhile
            if link is not None:
                self.release(n, tcp.RESET)  # pragma: no mutate -- CLOSED: no event accepted
            raise OSError(errno.ECONNRESET, "connect to %s:%d: the network went away"
                          % sock.peer)
        if link.open_err is None:
            self.at.wait_for(lambda: link.open_err is not None,
                             self.connect_limit_ms if wait_ms is None else wait_ms)
            if link.open_err is None:
                return False
        err = link.open_err
        if err != 0:
            e = self.open_failed(sock, n, err)
            refused = e.args[0] == errno.ECONNREFUSED
            self.release(n, tcp.REFUSED if refused else tcp.TIMEOUT)
            raise e
        conn.fire(tcp.CONNECTED)
        if link.close_event is not None:
            conn.fire(link.close_event)
        return True

    def connect_abort(self, sock, limit_ms):
        """No open URC within ``limit_ms``: close the link; the error to raise."""
        n = sock.handle
        self.abort_link(n)
        self.release(n, tcp.TIMEOUT)
        return OSError(errno.ETIMEDOUT, "connect to %s:%d: no %s within %d ms"
                       % (sock.peer[0], sock.peer[1], self.OPEN_URC, limit_ms))

    # -- data --------------------------------------------------------------------------
    def sending_link(self, sock):
        """(number, Link) of a connection that may send; ENOTCONN otherwise."""
        link = self.own(sock)
        if link is None or link.peer_closed or sock.tcp.state != tcp.ESTABLISHED:
            raise OSError(errno.ENOTCONN, "send on a connection in state " + sock.tcp.state_name)
        return sock.handle, link

    def recv_into(self, sock, buf, timeout_ms):
        """Read into ``buf`` (a memoryview); returns the count, 0 at end of stream.
        ``timeout_ms`` 0 = non-blocking (EAGAIN), None = wait forever."""
        n = sock.handle
        link = self.own(sock)
        deadline = None if timeout_ms is None else time.ticks_add(time.ticks_ms(), timeout_ms)
        while True:
            if link is None or link.tcp.state == tcp.CLOSED:
                if sock.tcp.last_event() == tcp.TIMEOUT:
                    raise OSError(errno.ETIMEDOUT, "%s %d: the peer stopped answering "
                                  "(keepalive or retransmission timeout)" % (self.KIND, n))
                raise OSError(errno.ECONNRESET, "connection reset (%s %d)" % (self.KIND, n))
            closed = link.peer_closed  # known before the read: then an empty read is EOF
            link.checked = time.ticks_ms()
            got = self.read_link(n, link, buf)
            if got or closed:
                return got
            if deadline is None:
                wait = self.poll_ms
            else:
                left = time.ticks_diff(deadline, time.ticks_ms())
                if left <= 0:
                    raise OSError(errno.EAGAIN if timeout_ms == 0 else errno.ETIMEDOUT,
                                  "no data on %s %d" % (self.KIND, n))
                wait = min(left, self.poll_ms)
            # Wake on the data URC; without one, poll again after poll_ms anyway.
            self.at.wait_for(link.readable, wait)

    def poll_flags(self, sock, flags):
        """Readiness for select.poll/asyncio, without blocking: URCs that arrived are
        processed; POLLIN once the data URC came, the peer closed or the link dropped
        (then POLLHUP too). Data URCs can be lost, so a link not asked for ``poll_ms``
        reports POLLIN anyway: the read then asks the modem (and finds nothing: EAGAIN
        on a non-blocking socket, None from read())."""
        self.at.poll(0)
        link = self.own(sock)
        if link is None or link.tcp.state == tcp.CLOSED:
            return POLLHUP | POLLERR | (flags & (POLLIN | POLLOUT))
        ready = 0
        if flags & POLLIN:
            if (link.rx_pending or link.peer_closed
                    or time.ticks_diff(time.ticks_ms(), link.checked) >= self.poll_ms):
                ready = POLLIN
        if flags & POLLOUT and link.tcp.state == tcp.ESTABLISHED and not link.peer_closed:
            ready |= POLLOUT
        if link.peer_closed:
            ready |= POLLHUP
        return ready

    def framing_lost(self, link, why):
        """A read reply that does not add up (line noise in its header or payload):
        re-pair commands and replies before the next command, ask the modem again on the
        next read; the EIO that tells the application bytes may be lost."""
        self.at.needs_resync = True
        link.rx_pending = True
        return OSError(errno.EIO, why + "; data may be lost")

    # -- close -------------------------------------------------------------------------
    def close(self, sock, timeout_ms=None):
        n = sock.handle
        link = self.own(sock)
        if link is None:  # never opened, or released (and maybe reused) already
            return
        conn = link.tcp
        if conn.accepts(tcp.CLOSE):
            conn.fire(tcp.CLOSE)
        link.close_err = None
        gone = tcp.RESET if self.close_link(n, link) else tcp.TIMEOUT
        if conn.state == tcp.LAST_ACK and gone == tcp.RESET:
            conn.fire(tcp.FIN_ACKED)
        elif link.close_err == 0:
            conn.complete_active_close()
        self.release(n, gone)
