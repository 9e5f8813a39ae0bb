"""SIMCom SIM7600 (also SIM7500/SIM7800; A76xx are close): bring-up and TCP sockets.

Non-transparent mode with manual receive (AT+CIPRXGET=1): received data stays in the
modem until read with ``AT+CIPRXGET=2,<link>,<max>``, which answers with a length-framed
binary payload. Ten links (0-9). The data URC ``+CIPRXGET: 1,<link>`` can be lost on a
busy UART, so a reader that hears nothing still polls the modem every ``poll_ms``.

The modem is a socket *backend* for synack.socket: ``connect_start/connect_poll/
connect_abort``, ``send``, ``recv_into`` and ``close`` take the synack socket and report
the TCP lifecycle on its ``tcp`` Connection. A connect is ``AT+CIPOPEN`` (which answers
OK at once) and then the ``+CIPOPEN: <link>,<err>`` URC, so a non-blocking socket can
poll for it without holding the caller.

Robustness: URC handlers parse with ``base.parse_ints`` and ignore a garbled URC (the
engine also contains any handler failure). Host names, the APN and the PIN are
validated (at/quote.py) before they are written into a command. A ``+CIPRXGET: 2``
header that does not match the read asked for (other link, a count that is not an
integer or exceeds the request, a payload of another length) is a lost framing: the
channel is marked for a resync, the link is marked readable again (the next read asks
the modem afresh) and the read raises OSError(EIO). The socket stays open and usable;
the bytes of that one read may be lost, which the EIO tells the application.

Errors: every socket call raises OSError only (the AT detail in its message); an AT
failure this module does not map itself is mapped by synack.socket as a backstop.

Network loss (``+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY``, ``+NETCLOSE``, a reboot, a
``+CIPOPEN: n,2``) marks the bearer down. On a modem that ``start()`` brought up once,
the next connect reopens it before ``AT+CIPOPEN``, as a phone does: registration check
and ``AT+NETOPEN`` (after a reboot the whole bring-up), at most ``reopen_attempts``
times with ``reopen_backoff_ms`` doubling between attempts, within the connect's
limit. Each attempt is a note in the socket's TCP log (BEARER_FAILED, BEARER_UP); if
none succeeds the connect raises EHOSTUNREACH and the next connect tries again. A
library that only reconnects (umqtt.robust) so recovers without calling ``start()``.
A link the network reset whose socket was never closed (robust drops its old socket
without closing it) is reused once all ten are taken.
"""

import errno
import time

from micropython import const

from .. import keepalive as _ka
from .. import tcp
from ..at import quote
from ..at.driver import Channel
from ..at.errors import CommandError, CommandTimeout, ModemError
from ..at.parser import Parser, fields
from . import base

LINKS = const(10)
MAX_SEND = const(1500)
MAX_READ = const(1500)
_CMD_MS = const(5000)
_SEND_MS = const(10000)
_CLOSE_MS = const(15000)
_NETOPEN_MS = const(75000)   # manual: +NETOPEN may take up to 75 s (reference)
_CONNECT_MS = const(130000)  # CIPOPEN gives up by itself after ~120 s
_DNS_MS = const(30000)
_REOPEN_ATTEMPTS = const(3)      # bearer reopens tried by one connect
_REOPEN_BACKOFF_MS = const(1000)  # wait before the 2nd attempt; doubles after each
_REOPEN_REGISTER_MS = const(10000)  # bring-up after a reboot: registration wait
# poll flags (select.POLLIN ...; MicroPython's MP_STREAM_POLL_*)
_POLLIN = const(1)
_POLLOUT = const(4)
_POLLERR = const(8)
_POLLHUP = const(16)

URCS = (b"+CIPRXGET: 1,", b"+IPCLOSE:", b"+CIPEVENT:", b"+CIPOPEN:", b"+CIPCLOSE:",
        b"+CIPSEND:", b"+NETOPEN:", b"+NETCLOSE:", b"RDY", b"+CPIN:", b"SMS DONE",
        b"PB DONE", b"+CREG:", b"+CGREG:", b"+CEREG:")
FRAMED = ((b"+CIPRXGET: 2,", 1),)

# +CIPOPEN <err> -> (errno, text). 1 is what a refused or reset connection gives.
_OPEN_ERRORS = {
    1: (errno.ECONNREFUSED, "network failure (refused or reset by peer)"),
    2: (errno.EHOSTUNREACH, "network not opened (AT+NETOPEN)"),
    3: (errno.EINVAL, "wrong parameter"),
    4: (errno.EADDRINUSE, "operation not supported (link in use)"),
    10: (errno.ETIMEDOUT, "timeout"),
    11: (errno.EHOSTUNREACH, "DNS lookup failed"),
}


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


_ints = base.parse_ints  # a list of ints, or None for a garbled line


class SIM7600:
    """A SIM7600 on a UART-like object. ``start()`` brings it online; then it serves
    as the backend of synack.socket (``synack.socket.use(modem)``)."""

    name = "sim7600"

    def __init__(self, uart, apn="", pin=None, poll_ms=500, channel=None):
        quote.param(apn, "APN")  # ValueError now, not a hijacked command at start()
        if pin is not None:
            quote.param(pin, "PIN", 8)
        self.at = channel or Channel(uart, Parser(urcs=URCS, framed=FRAMED,
                                                  max_payload=MAX_READ, trailer=b"\r\n"))
        self.apn = apn
        self.pin = pin
        self.poll_ms = poll_ms
        self.links = [None] * LINKS  # type: list[Link | None]
        self.net_open = False  # pragma: no mutate -- None: only its truth is read
        self.reboots = 0
        self.rssi_dbm = None
        self._netopen = None  # pragma: no mutate -- _net_up() sets it before use
        self._ctcpka = None   # the AT+CTCPKA arguments last sent  # pragma: no mutate
        self.reopen_attempts = _REOPEN_ATTEMPTS
        self.reopen_backoff_ms = _REOPEN_BACKOFF_MS
        self.bearer_reopens = 0   # how often a connect reopened the bearer
        self._started_at_reboot = -1  # self.reboots when start() last ran; -1: never
        self._tls = None  # the ModemTLS of tls_offload(), made on first use
        on = self.at.engine.on_urc
        on(b"+CIPRXGET: 1,", self._on_data)
        on(b"+IPCLOSE:", self._on_ipclose)
        on(b"+CIPOPEN:", self._on_open)
        on(b"+CIPCLOSE:", self._on_close)
        on(b"+CIPSEND:", self._on_sent)
        on(b"+NETOPEN:", self._on_netopen)
        on(b"+CIPEVENT:", self._on_network_lost)
        on(b"+NETCLOSE:", self._on_network_lost)
        on(b"RDY", self._on_reboot)
        for informational in (b"+CPIN:", b"SMS DONE", b"PB DONE", b"+C"):
            on(informational, _ignore)

    # -- URC handlers: record only, never issue commands ------------------------
    def _link_of(self, line, prefix_len):
        """(Link or None, the URC's integers); (None, []) for a garbled URC."""
        values = _ints(line, prefix_len)
        if not values:
            return None, []
        n = values[0]
        return (self.links[n] if 0 <= n < LINKS else None), values

    def _on_data(self, line):
        link, _ = self._link_of(line, 13)
        if link:
            link.rx_pending = True

    def _on_ipclose(self, line):
        link, values = self._link_of(line, 9)
        if link:
            link.peer_closed = True
            # reason 1: closed by the peer (its FIN); 2: timeout (retransmissions or
            # keepalive probes unanswered); 0: local abort.
            reason = values[1] if len(values) > 1 else 0
            event = tcp.PEER_FIN if reason == 1 else tcp.TIMEOUT if reason == 2 else tcp.RESET
            if link.tcp.state == tcp.SYN_SENT:
                link.close_event = event  # +IPCLOSE parsed in the same read as +CIPOPEN
            elif link.tcp.accepts(event):
                link.tcp.fire(event)

    def _on_open(self, line):
        link, values = self._link_of(line, 9)
        if link and len(values) > 1:
            link.open_err = values[1]

    def _on_close(self, line):
        values = _ints(line, 10)
        # +CIPCLOSE: <link>,<err>; the 10-value form answers a query
        if values and len(values) == 2:
            link = self.links[values[0]] if 0 <= values[0] < LINKS else None
            if link:
                link.close_err = values[1]

    def _on_sent(self, line):
        link, values = self._link_of(line, 9)
        if link and len(values) == 3:
            link.sent = values[2]

    def _on_netopen(self, line):
        values = _ints(line, 9)
        if values:
            self._netopen = values[0]

    def _on_network_lost(self, line):
        self.net_open = False  # pragma: no mutate -- None: only its truth is read
        for link in self.links:
            if link:
                link.peer_closed = True
                if link.tcp.accepts(tcp.RESET):
                    link.tcp.fire(tcp.RESET)

    def _on_reboot(self, line):
        self.reboots += 1
        self._on_network_lost(line)  # pragma: no mutate -- the line is not read

    # -- bring-up ----------------------------------------------------------------
    def start(self, register_timeout_ms=60000):
        """Bring the modem online: AT sync, echo off, SIM, registration, PDP, NETOPEN.
        Raises a base.BringUpError subclass that names the failing step."""
        at = self.at
        base.sync(at)
        at.command(b"ATE0")
        at.command(b"AT+CMEE=1")
        base.check_sim(at, self.pin)
        self.rssi_dbm = base.signal_dbm(at)
        base.wait_registered(at, register_timeout_ms)
        at.command(b'AT+CGDCONT=1,"IP","' + quote.param(self.apn, "APN") + b'"')
        at.command(b"AT+CIPMODE=0")
        at.command(b"AT+CIPRXGET=1")
        self._started_at_reboot = self.reboots  # the boot URCs (RDY) are behind us
        self._net_up()

    def _net_up(self):
        self._netopen = None
        try:
            self.at.command(b"AT+NETOPEN", timeout_ms=_CMD_MS)  # pragma: no mutate
        except CommandError as e:
            if b"already opened" not in b" ".join(e.lines):  # pragma: no mutate -- one line
                raise base.PDPError("AT+NETOPEN failed: " + str(e))
            self.net_open = True
            return
        if not self.at.wait_for(self._netopen_known, _NETOPEN_MS):
            raise base.PDPError("no +NETOPEN within %d s" % (_NETOPEN_MS // 1000))
        if self._netopen != 0:
            raise base.PDPError("packet data context failed: +NETOPEN: %d (check the APN "
                                "%r and the data plan)" % (self._netopen, self.apn))
        self.net_open = True

    def _netopen_known(self):
        return self._netopen is not None

    def _ensure_bearer(self, sock):
        """Before a connect: reopen the bearer if the network dropped it (see the
        module's doc). Logs each attempt on ``sock.tcp``; raises OSError(EHOSTUNREACH)
        when every attempt failed."""
        self.at.poll(0)  # a +CIPEVENT/+NETCLOSE/RDY still unread changes the answer
        if self.net_open or self._started_at_reboot < 0:  # up, or never brought up
            return
        limit = sock._connect_limit
        t0 = time.ticks_ms()
        wait = self.reopen_backoff_ms
        why = None
        tried = 0
        for attempt in range(self.reopen_attempts):
            if attempt:
                if limit is not None and time.ticks_diff(time.ticks_ms(), t0) + wait > limit:
                    break
                self.at.poll(wait)  # backoff; URCs (registration back) still processed
                wait *= 2
            tried += 1
            left = _REOPEN_REGISTER_MS
            if limit is not None:
                left = max(min(left, limit - time.ticks_diff(time.ticks_ms(), t0)), 0)
            try:
                self._reopen(left)
            except ModemError as e:  # not registered, PDP failed, the modem silent ...
                why = e
                sock.tcp.note(tcp.BEARER_FAILED)
                continue
            self.bearer_reopens += 1
            sock.tcp.note(tcp.BEARER_UP)
            return
        raise OSError(errno.EHOSTUNREACH, "network not open and reopening it failed "
                      "(%d attempts): %s" % (tried, why))

    def _reopen(self, register_ms):
        if self.reboots != self._started_at_reboot:  # settings lost: the whole bring-up
            self.start(register_timeout_ms=register_ms)
            return
        stat = base.registration(self.at)
        if stat not in (base.REG_HOME, base.REG_ROAMING):
            raise base.NotRegistered(stat)
        self._net_up()

    # -- TLS offload (modems/sim7600_tls.py) -------------------------------------
    def tls_offload(self, **options):
        """The socket backend for TLS done by this modem's own SSL stack (``AT+CCH*``),
        for boards without the RAM for mbedTLS. One per modem (it owns the modem's two
        SSL sessions); options as ``sim7600_tls.ModemTLS.configure``, and a later call
        with options reconfigures it for the connects that follow."""
        if self._tls is None:
            from .sim7600_tls import ModemTLS  # lazy: a TCP-only program never loads it
            self._tls = ModemTLS(self, **options)
        elif options:
            self._tls.configure(**options)
        return self._tls

    # -- DNS ---------------------------------------------------------------------
    def getaddrinfo(self, host, port):
        """Resolve with ``AT+CDNSGIP``; OSError(EINVAL) for a host name that is not one,
        OSError(EHOSTUNREACH) when the lookup fails or its reply is malformed."""
        name = quote.host(host)
        if quote.is_ipv4(name):
            return [(2, 1, 6, "", (name.decode(), port))]
        try:
            lines = self.at.command(b'AT+CDNSGIP="' + name + b'"', b"+CDNSGIP:",
                                    timeout_ms=_DNS_MS).lines
        except CommandError as e:
            raise OSError(errno.EHOSTUNREACH, "DNS lookup of %s failed: %s" % (host, e))
        except CommandTimeout as e:
            raise OSError(errno.ETIMEDOUT, "DNS lookup of %s: %s" % (host, e))
        # +CDNSGIP: 1,"<name>","<ip>"[,"<ip2>"]
        values = fields(lines[0], 9) if lines else []
        if len(values) < 3 or values[0] != b"1" or not quote.is_ipv4(values[2]):
            raise OSError(errno.EHOSTUNREACH, "DNS lookup of %s failed: malformed reply %r"
                          % (host, lines[:1]))
        return [(2, 1, 6, "", (values[2].decode(), port))]  # AF_INET, STREAM, TCP

    # -- socket backend ----------------------------------------------------------
    def keepalive_mechanism(self, ka):
        return _ka.MODEM if _ctcpka_units(ka) else _ka.PROBE

    def _set_keepalive(self, ka):
        # AT+CTCPKA is global: it applies to links opened after it, so send it only
        # when a connect asks for different settings than the last one.
        units = _ctcpka_units(ka)
        if units is None:
            raise OSError(errno.EINVAL, "%r is not expressible in AT+CTCPKA minutes" % ka)
        idle, interval, count = units
        args = "1,%d,%d,%d" % (idle, count, interval)
        if args != self._ctcpka:
            self.at.command(("AT+CTCPKA=" + args).encode(), timeout_ms=_CMD_MS)  # pragma: no mutate
            self._ctcpka = args

    # -- connect: start, poll, abort (synack.socket drives them) -------------------
    connect_limit_ms = _CONNECT_MS  # a connect without a timeout of the socket's

    def connect_start(self, sock, host, port):
        """Open a link with ``AT+CIPOPEN`` (this waits for its OK only); the outcome
        comes later as the ``+CIPOPEN: <link>,<err>`` URC. OSError(EINVAL) for a host
        that is not a host name or IPv4 literal, or a port out of range."""
        name = quote.host(host)
        if not isinstance(port, int) or not 0 < port < 65536:
            raise OSError(errno.EINVAL, "invalid port %r" % (port,))
        self._ensure_bearer(sock)
        if sock.keepalive_mechanism == _ka.MODEM:
            try:
                self._set_keepalive(sock._keepalive)
            except CommandError as e:
                raise OSError(errno.EINVAL, "modem rejected AT+CTCPKA: " + str(e))
            except CommandTimeout as e:
                raise OSError(errno.ETIMEDOUT, str(e))
        n = self._free_link()
        self.links[n] = Link(sock.tcp)
        sock._handle = n
        sock.tcp.fire(tcp.CONNECT)
        try:
            self.at.command(('AT+CIPOPEN=%d,"TCP","' % n).encode() + name
                            + (('",%d' % port).encode()), timeout_ms=_CMD_MS)
        except CommandError as e:
            self._release(n, tcp.RESET)
            sock._handle = None
            raise OSError(errno.EIO, "modem rejected the connect: " + str(e))
        except CommandTimeout as e:  # the link may be open all the same: close it
            self._abort_link(n)
            self._release(n, tcp.TIMEOUT)
            sock._handle = None
            raise OSError(errno.ETIMEDOUT, "connect: " + str(e))
        return False

    def connect_poll(self, sock, wait_ms):
        """Process URCs for up to ``wait_ms`` (0: what has arrived; None: the modem's
        own limit) until ``+CIPOPEN`` tells the outcome; True once established, False
        while pending; raises the failure."""
        n = sock._handle
        link = self._own(sock)
        conn = sock.tcp
        if link is None or conn.state == tcp.CLOSED:  # network lost (RESET) meanwhile
            if link is not None:
                self._release(n, tcp.RESET)  # pragma: no mutate -- CLOSED: no event accepted
            sock._handle = None
            raise OSError(errno.ECONNRESET, "connect to %s:%d: the network went away"
                          % sock._peer)
        if link.open_err is None:
            self.at.wait_for(lambda: link.open_err is not None,
                             _CONNECT_MS if wait_ms is None else wait_ms)
            if link.open_err is None:
                return False
        err = link.open_err
        if err == 2:  # the bearer is down though no URC said so: reopen next connect
            self.net_open = False
        if err != 0:
            code, text = _OPEN_ERRORS.get(err, (errno.ECONNABORTED, "error"))
            self._release(n, tcp.REFUSED if code == errno.ECONNREFUSED else tcp.TIMEOUT)
            sock._handle = None
            raise OSError(code, "connect to %s:%d failed: +CIPOPEN: %d,%d (%s)"
                          % (sock._peer[0], sock._peer[1], n, err, text))
        conn.fire(tcp.CONNECTED)
        if link.close_event is not None:
            conn.fire(link.close_event)
        return True

    def connect_abort(self, sock, limit_ms):
        """No ``+CIPOPEN`` within ``limit_ms``: close the link; the error to raise."""
        n = sock._handle
        self._abort_link(n)
        self._release(n, tcp.TIMEOUT)
        sock._handle = None
        return OSError(errno.ETIMEDOUT, "connect to %s:%d: no +CIPOPEN within %d ms"
                       % (sock._peer[0], sock._peer[1], limit_ms))

    def send(self, sock, data, timeout_ms):
        """Send up to MAX_SEND bytes of ``data``; returns how many the modem accepted."""
        n = sock._handle
        link = self._own(sock)
        if link is None or link.peer_closed or sock.tcp.state != tcp.ESTABLISHED:
            raise OSError(errno.ENOTCONN, "send on a connection in state " + sock.tcp.state_name)
        size = min(len(data), MAX_SEND)
        link.sent = None
        try:
            self.at.command(("AT+CIPSEND=%d,%d" % (n, size)).encode(),
                            payload=bytes(data[:size]), timeout_ms=_SEND_MS)
        except CommandTimeout as e:  # no prompt or no OK: the channel resyncs next time
            raise OSError(errno.ETIMEDOUT, "link %d: %s" % (n, e))
        except CommandError as e:    # ERROR: the network closed the link (+IPCLOSE follows)
            raise OSError(errno.ECONNRESET, "link %d: %s" % (n, e))
        self.at.wait_for(lambda: link.sent is not None, _SEND_MS)
        sent = link.sent
        if sent is None:
            raise OSError(errno.ETIMEDOUT, "no +CIPSEND confirmation for link %d" % n)
        if sent < 0:
            raise OSError(errno.ECONNRESET, "modem could not send on link %d" % n)
        return sent

    def recv_into(self, sock, buf, timeout_ms):
        """Read into ``buf`` (a memoryview); returns the count, 0 at end of stream.
        ``timeout_ms`` 0 = non-blocking (EAGAIN), None = wait forever."""
        n = sock._handle
        link = self._own(sock)
        deadline = None if timeout_ms is None else time.ticks_add(time.ticks_ms(), timeout_ms)
        while True:
            if link is None or link.tcp.state == tcp.CLOSED:
                if sock.tcp.last_event() == tcp.TIMEOUT:
                    raise OSError(errno.ETIMEDOUT, "link %d: the peer stopped answering "
                                  "(keepalive or retransmission timeout)" % n)
                raise OSError(errno.ECONNRESET, "connection reset (link %d)" % n)
            closed = link.peer_closed  # known before the read: then an empty read is EOF
            got = self._read(n, link, buf)
            if got or closed:
                return got
            if deadline is None:
                wait = self.poll_ms
            else:
                left = time.ticks_diff(deadline, time.ticks_ms())
                if left <= 0:
                    raise OSError(errno.EAGAIN if timeout_ms == 0 else errno.ETIMEDOUT,
                                  "no data on link %d" % n)
                wait = min(left, self.poll_ms)
            # Wake on the data URC; without one, poll again after poll_ms anyway.
            self.at.wait_for(lambda: link.rx_pending or link.peer_closed, wait)

    def poll_flags(self, sock, flags):
        """Readiness for select.poll/asyncio, without blocking: URCs that arrived are
        processed; POLLIN once the data URC came, the peer closed or the link dropped
        (then POLLHUP too). Data URCs can be lost, so a link not asked for ``poll_ms``
        reports POLLIN anyway: the read then asks the modem (and finds nothing: EAGAIN
        on a non-blocking socket, None from read())."""
        self.at.poll(0)
        link = self._own(sock)
        if link is None or link.tcp.state == tcp.CLOSED:
            return _POLLHUP | _POLLERR | (flags & (_POLLIN | _POLLOUT))
        ready = 0
        if flags & _POLLIN:
            if (link.rx_pending or link.peer_closed
                    or time.ticks_diff(time.ticks_ms(), link.checked) >= self.poll_ms):
                ready = _POLLIN
        if flags & _POLLOUT and link.tcp.state == tcp.ESTABLISHED and not link.peer_closed:
            ready |= _POLLOUT
        if link.peer_closed:
            ready |= _POLLHUP
        return ready

    def _read(self, n, link, buf):
        link.checked = time.ticks_ms()
        size = min(len(buf), MAX_READ)
        try:
            reply = self.at.command(("AT+CIPRXGET=2,%d,%d" % (n, size)).encode(),
                                    b"+CIPRXGET: 2,", timeout_ms=_CMD_MS)
        except CommandTimeout as e:  # a payload cut short: resync, the data may be lost
            link.rx_pending = True
            raise OSError(errno.ETIMEDOUT, "link %d: %s" % (n, e))
        except CommandError:
            link.rx_pending = False  # "+IP ERROR: No data"  # pragma: no mutate -- None: truth only
            return 0
        # +CIPRXGET: 2,<link>,<read>,<rest>, then exactly <read> bytes.
        values = _ints(reply.lines[0], 13) if reply.lines else None
        data = reply.payload or b""
        got = len(data)
        if (not values or len(values) != 3 or values[0] != n or not 0 <= values[1] <= size
                or values[2] < 0 or got != values[1]):
            # Framing lost (line noise in the header or payload): re-pair commands and
            # replies before the next command and ask the modem again on the next read.
            self.at.needs_resync = True
            link.rx_pending = True
            raise OSError(errno.EIO, "link %d: bad +CIPRXGET framing (asked %d bytes; "
                          "header %r, %d bytes followed); data may be lost"
                          % (n, size, reply.lines[:1], got))
        buf[:got] = data
        link.rx_pending = values[2] > 0
        return got

    def close(self, sock, timeout_ms=None):
        n = sock._handle
        link = self._own(sock)
        if link is None:  # never opened, or released (and maybe reused) already
            return
        conn = link.tcp
        if conn.accepts(tcp.CLOSE):
            conn.fire(tcp.CLOSE)
        link.close_err = None
        gone = tcp.RESET
        try:
            self.at.command(("AT+CIPCLOSE=%d" % n).encode(), timeout_ms=_CMD_MS)
            self.at.wait_for(lambda: link.close_err is not None, _CLOSE_MS)
        except CommandError:
            pass  # "+CIPCLOSE: n,4" + ERROR: the modem had closed the link already
        except CommandTimeout:
            gone = tcp.TIMEOUT  # the modem did not answer: the link is given up here
        if conn.state == tcp.LAST_ACK and gone == tcp.RESET:
            conn.fire(tcp.FIN_ACKED)
        elif link.close_err == 0:
            conn.complete_active_close()
        self._release(n, gone)

    # -- link bookkeeping ---------------------------------------------------------
    def _own(self, sock):
        """The Link of ``sock``, or None once it was released (the number may serve
        another socket by now)."""
        n = sock._handle
        link = self.links[n] if n is not None else None
        return link if link is not None and link.tcp is sock.tcp else None

    def _free_link(self):
        for i in range(LINKS):
            if self.links[i] is None:
                return i
        # A link reset by the network (CLOSED) whose socket was never closed, as
        # umqtt.robust leaves its old socket: the modem has released it already.
        for i in range(LINKS):
            link = self.links[i]
            if link is not None and link.tcp.state == tcp.CLOSED:
                self.links[i] = None  # pragma: no mutate -- the caller puts a Link there
                return i
        raise OSError(errno.ENOBUFS, "all %d modem links are in use" % LINKS)

    def _release(self, n, event):
        link = self.links[n]
        if link and link.tcp.accepts(event):
            link.tcp.fire(event)
        self.links[n] = None

    def _abort_link(self, n):
        # Wait for +CIPCLOSE too: until then the modem still holds the link number,
        # and the next AT+CIPOPEN on it would be refused (+CIPOPEN: n,4).
        link = self.links[n]
        if link is not None:
            link.close_err = None
        try:
            self.at.command(("AT+CIPCLOSE=%d" % n).encode(), timeout_ms=_CMD_MS)
            if link is not None:
                self.at.wait_for(lambda: link.close_err is not None, _CLOSE_MS)
        except ModemError:
            pass  # given up anyway: the caller raises ETIMEDOUT


def _ctcpka_units(ka):
    """AT+CTCPKA=1,<keepidle min 1-120>,<keepcount 1-10>,<keepinterval min>: (idle,
    interval, count) in its units, or None when the request is not whole minutes in
    range (the application must probe then). Ranges as SIMCom's manual gives them for
    idle and count; the interval is taken as minutes 1-75 (verify on your firmware)."""
    return _ka.in_units(ka, 60, (1, 120), (1, 75), (1, 10))


def _ignore(line):
    return None
