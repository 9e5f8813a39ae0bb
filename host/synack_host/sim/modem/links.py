"""The socket-backed link stack every dialect shares: the modem's numbered TCP links, each
backed by a real TCP socket on this machine, with no AT wording at all.

What a link does, whatever the dialect calls it:

* connect without blocking (the loop watches for the socket to become writable), give
  up after ``connect_timeout``;
* hold what arrives in a receive buffer of at most ``RX_CAP`` bytes; when it is full the
  socket is no longer read, so TCP flow control stops the peer (nothing is dropped);
* queue what the host sends and confirm each send once the kernel took all of it, or
  (``confirm_acked``) once the peer acknowledged all of it; a send made with
  ``confirm=False`` is never confirmed (a modem that answered it at once);
* close gracefully when the host asks: our FIN after the pending data, then up to
  ``CLOSE_WAIT_S`` for the peer's FIN; a peer's FIN or reset, an unanswered keepalive,
  or the network (a fault) ends a link the other way (``PEER_CLOSED``: what was received
  stays readable until the host closes or reopens the link);
* on network loss or a reboot, *abandon* every link: the sockets stay open and unread
  until the modem stops, so the peer hears nothing, as when a real modem loses its radio.

Link numbers are chosen by the host (``open(n, ...)``: SIM7600 AT+CIPOPEN, BG96
connectID, SIM800 <n>) or by the modem (``create()`` then ``connect()``: SARA-R4
AT+USOCR answers the socket number). The owner (the dialect) hears what happened through
the ``LinkOwner`` methods and words it as URCs; the states and their changes are the
``TRANSITIONS`` table, and a change the table does not list is a ``LinkStateError``.
"""

from __future__ import annotations

import collections
import errno
import fcntl
import selectors
import socket
import struct
import termios
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

RX_CAP = 64 * 1024            # bytes held per link; then the socket is not read (no loss)
CLOSE_WAIT_S = 2.0            # a host close waits this long for the peer's FIN
ACK_POLL_S = 0.005            # confirm_acked: how often the peer's ACKs are looked for
READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE

# Why a link ended (SIMCom's +IPCLOSE numbers; other dialects word them their own way).
CLOSED_LOCALLY, CLOSED_BY_PEER, CLOSED_BY_TIMEOUT = 0, 1, 2


class LinkState(str, Enum):
    CREATED = "created"        # a number given out (SARA AT+USOCR), not connecting yet
    CONNECTING = "connecting"
    OPEN = "open"
    PEER_CLOSED = "closed"     # ended by the peer or the network; data still readable
    CLOSING = "closing"        # the host closed it: our FIN sent, waiting for the peer's
    GONE = "gone"              # out of the stack; its number is free again


class LinkEvent(str, Enum):
    CONNECT = "connect"              # the host asks for a connection
    CONNECTED = "connected"          # the TCP handshake completed
    CONNECT_FAILED = "connect-failed"   # refused, unreachable, or no answer in time
    HOST_CLOSE = "host-close"        # the host closes the link (or forgets a closed one)
    PEER_CLOSE = "peer-close"        # FIN, reset, keepalive or send failure, the network
    CLOSE_DONE = "close-done"        # our close completed: the peer's FIN, an error, time
    DROP = "drop"                    # network lost, reboot, bearer closed: no word to anyone


S, E = LinkState, LinkEvent
TRANSITIONS: dict[tuple[LinkState, LinkEvent], LinkState] = {
    (S.CREATED, E.CONNECT): S.CONNECTING,
    (S.CREATED, E.HOST_CLOSE): S.GONE,
    (S.CREATED, E.DROP): S.GONE,
    (S.CONNECTING, E.CONNECTED): S.OPEN,
    (S.CONNECTING, E.CONNECT_FAILED): S.GONE,
    (S.CONNECTING, E.HOST_CLOSE): S.GONE,
    (S.CONNECTING, E.DROP): S.GONE,
    (S.OPEN, E.PEER_CLOSE): S.PEER_CLOSED,
    (S.OPEN, E.HOST_CLOSE): S.CLOSING,
    (S.OPEN, E.DROP): S.GONE,
    (S.PEER_CLOSED, E.HOST_CLOSE): S.GONE,
    (S.PEER_CLOSED, E.DROP): S.GONE,
    (S.CLOSING, E.CLOSE_DONE): S.GONE,
    (S.CLOSING, E.DROP): S.GONE,
}
del S, E


class LinkStateError(RuntimeError):
    """A link was asked to change state in a way ``TRANSITIONS`` does not allow."""


def next_state(state: LinkState, event: LinkEvent) -> LinkState:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise LinkStateError(f"a link in state {state.name} cannot take event "
                             f"{event.name}") from None


@dataclass(frozen=True)
class Keepalive:
    """TCP keepalive of a link's host socket, in seconds (the dialect converts its units)."""
    idle_s: int
    interval_s: int
    count: int


class Link:
    """One link: its TCP socket and the bytes the modem holds for it."""

    def __init__(self, n: int):
        self.n = n
        self.state = LinkState.CREATED
        self.sock: socket.socket | None = None
        self.remote: tuple[str, int] = ("", 0)
        self.rx = bytearray()
        self.tx = bytearray()
        self.tx_sent = 0          # bytes handed to the kernel so far
        self.tx_accepted = 0      # bytes the host has sent so far
        # the sends to confirm: (tx_accepted after it, its size), in order
        self.unconfirmed: collections.deque[tuple[int, int]] = collections.deque()
        self.ack_poll = False     # confirm_acked: a look for the peer's ACKs is due
        self.fin_sent = False
        self.data_urc_armed = True   # the data URC is due on the next arrival
        self.callback: Callable[[int], None] | None = None

    def take(self, event: LinkEvent) -> None:
        self.state = next_state(self.state, event)

    def can(self, event: LinkEvent) -> bool:
        return (self.state, event) in TRANSITIONS


class LinkOwner(Protocol):
    """The loop the stack runs in and the dialect that words what happens."""

    def watch(self, fileobj, events: int, callback: Callable[[int], None] | None) -> None: ...
    def later(self, delay_s: float, fn: Callable[[], None]) -> None: ...
    def link_connected(self, link: Link) -> None: ...
    def link_connect_failed(self, link: Link, timed_out: bool) -> None: ...
    def link_data(self, link: Link) -> None: ...          # data in an empty, armed buffer
    def link_peer_closed(self, link: Link, reason: int) -> None: ...
    def link_closed(self, link: Link) -> None: ...         # the host's close completed
    def link_sent(self, link: Link, size: int, ok: bool) -> None: ...


class LinkStack:
    """The links of one modem, numbered from ``ids``."""

    def __init__(self, owner: LinkOwner, ids: range, connect_timeout: float = 20.0,
                 confirm_acked: bool = False):
        self.owner = owner
        self.ids = ids
        self.connect_timeout = connect_timeout
        # a send is confirmed once the peer acknowledged it (SIM800 SEND OK), not once
        # the kernel took it
        self.confirm_acked = confirm_acked
        self.links: dict[int, Link] = {}
        self._abandoned: list[socket.socket] = []

    def get(self, n: int) -> Link | None:
        return self.links.get(n)

    def is_open(self, link: Link) -> bool:
        """Whether ``link`` is still in the stack and open (it may have ended since)."""
        return self.links.get(link.n) is link and link.state is LinkState.OPEN

    def status(self) -> dict[int, str]:
        return {n: link.state.value for n, link in sorted(self.links.items())}

    # -- opening -------------------------------------------------------------------------
    def create(self, n: int | None = None) -> Link | None:
        """A new link numbered ``n``, or the lowest free number (None: none is free or
        ``n`` is taken or out of range)."""
        if n is None:
            n = next((i for i in self.ids if i not in self.links), None)
        if n is None or n not in self.ids or n in self.links:
            return None
        link = self.links[n] = Link(n)
        return link

    def connect(self, link: Link, ip: str, port: int, keepalive: Keepalive | None = None) -> None:
        """Start connecting; the owner hears ``link_connected`` or ``link_connect_failed``
        (at once if the connect fails at once)."""
        link.take(LinkEvent.CONNECT)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        if keepalive is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, keepalive.idle_s)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, keepalive.interval_s)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, keepalive.count)
        err = sock.connect_ex((ip, port))
        link.sock, link.remote = sock, (ip, port)
        if err not in (0, errno.EINPROGRESS):
            return self._connect_failed(link, timed_out=False)
        link.callback = lambda mask, link=link: self._on_socket(link, mask)
        self._rewatch(link)
        self.owner.later(self.connect_timeout, lambda: self._connect_timeout(link))

    def open(self, n: int | None, ip: str, port: int,
             keepalive: Keepalive | None = None) -> Link | None:
        """``create`` + ``connect``; None if no link could be made."""
        link = self.create(n)
        if link is not None:
            self.connect(link, ip, port, keepalive)
        return link

    def _connected(self, link: Link) -> None:
        assert link.sock is not None
        if link.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            return self._connect_failed(link, timed_out=False)
        link.take(LinkEvent.CONNECTED)
        self._rewatch(link)
        self.owner.link_connected(link)

    def _connect_timeout(self, link: Link) -> None:
        if self.links.get(link.n) is link and link.state is LinkState.CONNECTING:
            self._connect_failed(link, timed_out=True)

    def _connect_failed(self, link: Link, timed_out: bool) -> None:
        link.take(LinkEvent.CONNECT_FAILED)
        self._remove(link)
        self.owner.link_connect_failed(link, timed_out)

    # -- data ----------------------------------------------------------------------------
    def send(self, link: Link, data: bytes, confirm: bool = True) -> None:
        """Queue ``data``; ``link_sent(ok=True)`` once the kernel took all of it (the
        peer acknowledged it: ``confirm_acked``), unless not ``confirm``."""
        link.tx += data
        self._accept(link, len(data), confirm)
        self._flush_tx(link)
        self._rewatch(link)

    def send_lost(self, link: Link, size: int, confirm: bool = True) -> None:
        """A send the modem accepted but never sends (the send-fail fault): the link
        ends as after a sending timeout, and its peer hears nothing."""
        self._accept(link, size, confirm)
        self.end(link, CLOSED_BY_TIMEOUT, abandon=True)

    def read(self, link: Link, limit: int) -> bytes:
        """Up to ``limit`` received bytes; reading resumes a socket paused at RX_CAP and
        an emptied buffer re-arms the data URC."""
        chunk = bytes(link.rx[:limit])
        del link.rx[:limit]
        if not link.rx:
            link.data_urc_armed = True
        self._rewatch(link)
        return chunk

    def _accept(self, link: Link, size: int, confirm: bool) -> None:
        link.tx_accepted += size
        if confirm:
            link.unconfirmed.append((link.tx_accepted, size))

    def _confirm(self, link: Link) -> None:
        """``link_sent(ok=True)`` for the sends that went (were acknowledged); while
        some went to the kernel unacknowledged, look again every ACK_POLL_S."""
        done = self.acked(link) if self.confirm_acked else link.tx_sent
        while link.unconfirmed and link.unconfirmed[0][0] <= done:
            self.owner.link_sent(link, link.unconfirmed.popleft()[1], ok=True)
        if (link.unconfirmed and link.unconfirmed[0][0] <= link.tx_sent
                and not link.ack_poll):
            link.ack_poll = True
            self.owner.later(ACK_POLL_S, lambda: self._ack_poll(link))

    def _ack_poll(self, link: Link) -> None:
        link.ack_poll = False
        if self.links.get(link.n) is link and link.sock is not None:
            self._confirm(link)

    @staticmethod
    def acked(link: Link) -> int:
        """Bytes of the link the peer acknowledged: those handed to the kernel less
        those still in its send queue (SIOCOUTQ: unsent and unacknowledged). Where the
        kernel cannot tell (not Linux, the socket gone), all that it took."""
        if link.sock is None:
            return link.tx_sent
        try:
            held = struct.unpack("i", fcntl.ioctl(link.sock, termios.TIOCOUTQ, b"\0" * 4))[0]
        except OSError:
            return link.tx_sent
        return link.tx_sent - held

    def _fail_unconfirmed(self, link: Link) -> None:
        while link.unconfirmed:
            self.owner.link_sent(link, link.unconfirmed.popleft()[1], ok=False)
        link.tx.clear()

    # -- closing -------------------------------------------------------------------------
    def close(self, link: Link) -> None:
        """The host closes ``link``: a connect is abandoned at once, an open link closes
        gracefully (``link_closed`` when done), a link the peer closed is forgotten with
        its data (no event). LinkStateError if it is closing already."""
        was = link.state
        link.take(LinkEvent.HOST_CLOSE)
        if was is LinkState.OPEN:
            link.rx.clear()
            self._flush_tx(link)
            self._rewatch(link)
            self.owner.later(CLOSE_WAIT_S, lambda: self._finish_close(link))
            return
        self._remove(link)
        if was is LinkState.CONNECTING:
            self.owner.link_closed(link)

    def end(self, link: Link, reason: int, abandon: bool = False) -> None:
        """The peer or the network ends an open link (``reason``: CLOSED_*); unconfirmed
        sends fail. ``abandon``: the peer hears nothing."""
        link.take(LinkEvent.PEER_CLOSE)
        self._fail_unconfirmed(link)
        self._release(link, abandon)
        self.owner.link_peer_closed(link, reason)

    def drop_all(self, abandon: bool) -> None:
        """Every link gone without a word to the host: network loss and reboot abandon the
        sockets (``abandon``), a closed bearer closes them."""
        for link in self.links.values():
            self._release(link, abandon)
            link.take(LinkEvent.DROP)
        self.links = {}

    def close_abandoned(self) -> None:
        """The modem stops: now the abandoned sockets close too."""
        for sock in self._abandoned:
            sock.close()
        self._abandoned.clear()

    def _finish_close(self, link: Link) -> None:
        if self.links.get(link.n) is not link or link.state is not LinkState.CLOSING:
            return
        link.take(LinkEvent.CLOSE_DONE)
        self._fail_unconfirmed(link)
        self._remove(link)
        self.owner.link_closed(link)

    def _remove(self, link: Link) -> None:
        self._release(link)
        if self.links.get(link.n) is link:
            del self.links[link.n]

    def _release(self, link: Link, abandon: bool = False) -> None:
        """Stop watching the link's socket and close it (or leave it open, unread)."""
        if link.sock is None:
            return
        self.owner.watch(link.sock, 0, link.callback)
        if abandon:
            self._abandoned.append(link.sock)
        else:
            link.sock.close()
        link.sock = None

    # -- socket events -------------------------------------------------------------------
    def _rewatch(self, link: Link) -> None:
        if link.sock is None:
            return
        events = 0
        if link.state is LinkState.CONNECTING:
            events = WRITE
        elif link.state in (LinkState.OPEN, LinkState.CLOSING):
            want_rx = link.state is LinkState.CLOSING or len(link.rx) < RX_CAP
            events = (READ if want_rx else 0) | (WRITE if link.tx else 0)
        self.owner.watch(link.sock, events, link.callback)

    def _on_socket(self, link: Link, mask: int) -> None:
        if self.links.get(link.n) is not link or link.sock is None:
            return
        if link.state is LinkState.CONNECTING:
            return self._connected(link)
        if mask & WRITE:
            self._flush_tx(link)
        if mask & READ and link.sock is not None:
            self._receive(link)
        self._rewatch(link)

    def _receive(self, link: Link) -> None:
        assert link.sock is not None
        closing = link.state is LinkState.CLOSING
        room = 65536 if closing else RX_CAP - len(link.rx)
        if room <= 0:
            return
        try:
            data = link.sock.recv(room)
        except (BlockingIOError, InterruptedError):
            return
        except TimeoutError:      # keepalive probes went unanswered: the peer is gone
            if closing:
                return self._finish_close(link)
            return self.end(link, CLOSED_BY_TIMEOUT)
        except OSError:           # ECONNRESET: the same end of the link as a FIN
            data = b""
        if closing:
            if not data:          # the peer's FIN: the four-way close is complete
                self._finish_close(link)
            return                # data after our close is discarded
        if not data:
            return self.end(link, CLOSED_BY_PEER)
        was_empty = not link.rx
        link.rx += data
        if was_empty and link.data_urc_armed:
            link.data_urc_armed = False
            self.owner.link_data(link)

    def _flush_tx(self, link: Link) -> None:
        """Hand queued data to the kernel; confirm each send once all of it went."""
        while link.tx and link.sock is not None:
            try:
                sent = link.sock.send(link.tx)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                if link.state is LinkState.CLOSING:
                    return self._finish_close(link)
                return self.end(link, CLOSED_BY_PEER)
            del link.tx[:sent]
            link.tx_sent += sent
        self._confirm(link)
        if (link.state is LinkState.CLOSING and not link.tx and not link.fin_sent
                and link.sock is not None):
            link.fin_sent = True
            try:
                link.sock.shutdown(socket.SHUT_WR)   # our FIN, after all pending data
            except OSError:
                self._finish_close(link)
