"""u-blox SARA-R4 (SARA-R410M-02B, R412M; SARA-R5 has the same socket commands): bring-up
and TCP sockets. docs/dialects/sara-r4.md has every command, URC and error mapping.

The modem numbers its sockets (``AT+USOCR=6`` -> ``+USOCR: <s>``, 0-6, ``new_link``) and
connects them asynchronously (``AT+USOCO=<s>,"host",port,1``, then ``+UUSOCO: <s>,<err>``,
one pending at a time). ``AT+USOWR`` prompts ``@``: the bytes follow 50 ms later (the
engine's ``payload_delay_ms``). Reads are binary (``AT+UDCONF=1,0``): ``+USORD: <s>,<n>,
"<n raw bytes>"`` holds the bytes between quotes on the reply line itself; the parser
frames them by the length before the opening quote (its ``inline`` table) and checks
the ``"`` CR LF after them; a reply that does not add up is EIO and a resync (the socket
stays usable). The R4 says nothing at boot: ``+CGEV`` reporting found off (``AT+CGEREP?``,
asked before each connect and after a failed socket command: we turn it on, a boot turns
it off) means it rebooted. ``+UUSOCL`` is the peer's FIN unless its last error
(``AT+USOCTL=<s>,1``) says otherwise; ``+CGEV`` detach / PDN deact of context 1 drops the
bearer, the next connect reopens it. Every socket call raises OSError only; URC handlers
ignore garbled lines.
"""

import errno

from micropython import const

from .. import keepalive as _ka
from .. import tcp
from ..at import quote
from ..at.driver import Channel
from ..at.engine import Engine
from ..at.errors import CommandError, CommandTimeout
from ..at.parser import Parser, fields, uint
from ..at.steps import command, poll
from . import base
from .cellular import ModemBackend
from .links import Link, LinkBackend, refused

try:
    from typing import TYPE_CHECKING  # absent on MicroPython: only type checkers see it
except ImportError:
    TYPE_CHECKING = False
if TYPE_CHECKING: from typing import Any, Generator  # noqa: F401 (used in type comments)

SOCKETS = const(7)
MAX_SEND = const(1024)
MAX_READ = const(1024)      # per AT+USORD (binary: 0-1024); the parser's payload buffer
_PROMPT_DELAY_MS = const(50)
_CMD_MS = const(5000)
_SEND_MS = const(120000)    # AT+USOWR: < 120 s (AT manual)
_CONNECT_MS = const(130000)  # the modem gives a connect up after ~120 s
_CLOSE_MS = const(135000)   # an asynchronous close may take up to 120 s
_CGATT_MS = const(360000)
_CGACT_MS = const(150000)
_DEACT_MS = const(40000)
_DNS_MS = const(70000)
_BOOT_QUIET_MS = const(1000)  # after AT+CFUN=15, before asking for AT again
_SYNC_MS = const(1000)
_KA_INTERVAL_S = const(75)  # the stack's own keepalive interval and count (not settable)
_KA_COUNT = const(9)
_KA_IDLE_MAX_S = const(2147483)  # AT+USOSO=<s>,6,2,<ms>: 0-2147483647 ms

URCS = (b"+UUSORD:", b"+UUSOCO:", b"+UUSOCL:", b"+CGEV:", b"+UUPSDD:", b"+CPIN:",
        b"+CREG:", b"+CGREG:", b"+CEREG:")
# +USORD: <s>,<n>,"<n raw bytes>": the length is field 1, the bytes inside the line
INLINE = ((b"+USORD:", 1),)

# +UUSOCO <socket_error> (AT manual appendix, BSD errno numbers) -> (errno, text);
# others: ECONNABORTED
_OPEN_ERRORS = {
    111: (errno.ECONNREFUSED, "connection refused"),
    110: (errno.ETIMEDOUT, "connection timed out"),
    113: (errno.EHOSTUNREACH, "host unreachable"),
    100: (errno.EHOSTUNREACH, "network down"),
    101: (errno.EHOSTUNREACH, "network unreachable"),
    104: (errno.ECONNRESET, "connection reset"),
    103: (errno.ECONNABORTED, "connection aborted"),
    160: (errno.EHOSTUNREACH, "host name not found"),
}
_NETWORK_DOWN = (100, 101)

_ints = base.parse_ints  # a list of ints, or None for a garbled line


class SARAR4(ModemBackend, LinkBackend):
    """A SARA-R4 on a UART-like object. ``start()`` brings it online; then it serves as
    the backend of synack.socket (``synack.socket.use(modem)``)."""

    name = "sara-r4"
    KIND = "socket"
    OPEN_URC = "+UUSOCO"
    OPEN_ERRORS = _OPEN_ERRORS
    RESET_COMMAND = b"AT+CFUN=15"
    connect_limit_ms = _CONNECT_MS

    def __init__(self, uart, apn="", pin=None, poll_ms=500, channel=None):
        quote.param(apn, "APN")  # ValueError now, not a hijacked command at start()
        if pin is not None:
            quote.param(pin, "PIN", 8)
        at = channel or Channel(uart, engine=Engine(
            Parser(urcs=URCS, inline=INLINE, prompt=b"@", max_payload=MAX_READ),
            payload_delay_ms=_PROMPT_DELAY_MS))
        self.init_links(at, SOCKETS, poll_ms)
        self.init_modem(at, pin)
        self.apn = apn
        self.model = b""
        self.keepidle = False  # the modem takes AT+USOSO=<s>,6,2 (SARA-R5; the R4 does not)
        self._closing = -1     # the socket whose AT+USOCL=<s>,1 waits for its +UUSOCL
        self._closed = False  # pragma: no mutate -- None: only its truth is read
        on = at.engine.on_urc
        on(b"+UUSORD:", self._on_data)
        on(b"+UUSOCO:", self._on_open)
        on(b"+UUSOCL:", self._on_closed)
        on(b"+CGEV:", self._on_cgev)
        on(b"+UUPSDD:", self.network_lost_urc)
        on(b"+C", lambda line: None)  # +CPIN, +CREG, +CGREG, +CEREG: informational

    # -- URC handlers: record only, never issue commands ------------------------
    def _link_of(self, line, prefix_len):
        """(Link or None, the URC's integers); (None, []) for a garbled URC."""
        values = _ints(line, prefix_len) or []
        return self.link_of(values), values

    def _on_data(self, line):  # +UUSORD: <s>,<n>
        link, values = self._link_of(line, 8)
        if link and len(values) == 2 and values[1] > 0:
            link.rx_pending = True

    def _on_open(self, line):  # +UUSOCO: <s>,<err>
        link, values = self._link_of(line, 8)
        if link and len(values) == 2 and values[1] >= 0:
            link.open_err = values[1]

    def _on_closed(self, line):  # +UUSOCL: <s>
        link, values = self._link_of(line, 8)
        if len(values) != 1:
            return
        if values[0] == self._closing:  # our own close completed
            self._closed = True
            if link:
                link.close_err = 0
        elif link:
            link.peer_gone(tcp.PEER_FIN)

    def _on_cgev(self, line):
        event = line[6:].strip()  # NW PDN DEACT <cid>[,...]: only context 1 carries ours
        if event in (b"NW DETACH", b"ME DETACH") or (
                event[3:13] == b"PDN DEACT " and uint(event[13:].split(b",")[0]) == 1):
            self.network_lost_urc(line)

    # -- bring-up ----------------------------------------------------------------
    def configure_steps(self):
        """(cellular.ModemBackend.start) Model (R4/R5), PDP context, binary reads, +CGEV."""
        try:
            self.model = b" ".join((yield command(b"AT+CGMM")).lines)
        except CommandError:
            self.model = b""
        self.keepidle = b"SARA-R5" in self.model
        yield command(b'AT+CGDCONT=1,"IP","' + quote.param(self.apn, "APN") + b'"')
        yield command(b"AT+UDCONF=1,0")  # HEX mode off: AT+USORD data as raw bytes
        # +CGEV URCs: the network dropping the bearer; off again after a reboot
        # (_settings_lost)
        yield command(b"AT+CGEREP=1")

    def bearer_open_steps(self):
        try:
            yield command(b"AT+CGATT=1", timeout_ms=_CGATT_MS)  # pragma: no mutate
            yield command(b"AT+CGACT=1,1", timeout_ms=_CGACT_MS)  # pragma: no mutate
            lines = (yield command(b"AT+CGACT?", b"+CGACT:")).lines
        except CommandError as e:
            raise base.PDPError("packet data context failed: %s (check the APN %r and the "
                                "data plan)" % (e, self.apn))
        except CommandTimeout as e:
            raise base.PDPError(str(e))
        for line in lines:
            if _ints(line, 7) == [1, 1]:
                self.net_open = True
                return
        raise base.PDPError("context 1 not active after AT+CGACT=1,1: %r" % (lines,))

    def bearer_close(self):
        self.at.command(b"AT+CGACT=0,1", timeout_ms=_DEACT_MS)

    def reset_steps(self, wait_ms=30000):
        # type: (int) -> Generator[Any, Any, None]
        """(cellular.ModemBackend.reset) AT+CFUN=15; no URC tells the boot: counted at once,
        over when AT answers."""
        yield command(self.RESET_COMMAND, timeout_ms=_CMD_MS)
        self.on_reboot()
        self.all_lost()
        yield poll(_BOOT_QUIET_MS)
        try:
            yield from base.sync_steps(max(1, wait_ms // _SYNC_MS), _SYNC_MS)
        except base.ModemNotResponding:
            raise base.ModemNotResponding("modem did not answer AT within %d ms after %s"
                                          % (wait_ms, self.RESET_COMMAND.decode()))

    # -- DNS ---------------------------------------------------------------------
    def getaddrinfo(self, host, port):
        """Resolve with ``AT+UDNSRN=0`` (base.lookup); its answer is
        ``+UDNSRN: "<ip>"``."""
        return base.lookup(self.at, host, port, b"AT+UDNSRN=0,", b"+UDNSRN:", _first,
                           _DNS_MS)

    # -- keepalive ---------------------------------------------------------------
    def keepalive_mechanism(self, ka):
        return _ka.MODEM if self._keepidle_ms(ka) is not None else _ka.PROBE

    def _keepidle_ms(self, ka):
        """AT+USOSO=<s>,6,2,<ms> sets only the idle time; the probes' interval and count
        are the stack's (75 s, 9: verify on your firmware). So the modem keeps ``ka``
        only when it takes the option (SARA-R5; the R4 rejects it) and ``ka`` asks for
        those probes; None otherwise (the application probes then)."""
        if (not self.keepidle or ka.interval != _KA_INTERVAL_S or ka.count != _KA_COUNT
                or not 0 < ka.idle <= _KA_IDLE_MAX_S):
            return None
        return ka.idle * 1000

    def _set_keepalive(self, n, ka):
        ms = self._keepidle_ms(ka)
        if ms is None:
            raise OSError(errno.EINVAL, "%r is not expressible with AT+USOSO" % (ka,))
        try:
            for option in ("65535,8,1", "6,2,%d" % ms):  # SO_KEEPALIVE, TCP_KEEPIDLE
                self.at.command(("AT+USOSO=%d,%s" % (n, option)).encode(), timeout_ms=_CMD_MS)
        except (CommandError, CommandTimeout) as e:
            raise refused(e, errno.EINVAL, "modem rejected AT+USOSO")

    # -- socket backend ----------------------------------------------------------
    def before_connect(self, sock, limit_ms):
        if self._started_at_reboot == self.reboots:  # rebooted since, unannounced?
            self._settings_lost()
        self.ensure_bearer(sock, limit_ms)
        if not self.at.wait_for(self._no_connect_pending,
                                _CONNECT_MS if limit_ms is None else limit_ms):
            raise OSError(errno.EAGAIN, "another connect is still pending on the modem "
                          "(the SARA-R4 takes one at a time)")

    def _no_connect_pending(self):
        for link in self.links:
            if link and link.tcp.state == tcp.SYN_SENT and link.open_err is None:
                return False
        return True

    def new_link(self, sock):
        """AT+USOCR=6: the modem's number for the new socket, and its options."""
        self.free_link()  # ENOBUFS when all seven are taken (or a CLOSED one reclaimed)
        try:
            lines = self.at.command(b"AT+USOCR=6", b"+USOCR:", timeout_ms=_CMD_MS).lines
        except (CommandError, CommandTimeout) as e:
            raise refused(e, errno.ENOBUFS, "modem could not create a socket")
        values = _ints(lines[0], 7) if lines else None
        if not values or len(values) != 1 or not 0 <= values[0] < SOCKETS:
            raise OSError(errno.EIO, "AT+USOCR: malformed reply %r" % (lines[:1],))
        n = values[0]
        old = self.links[n]
        if old is not None:  # the modem freed that number (its +UUSOCL lost): gone
            old.peer_closed = True
            if old.tcp.accepts(tcp.RESET):
                old.tcp.fire(tcp.RESET)
        self.links[n] = Link(sock.tcp)
        if sock.keepalive_mechanism == _ka.MODEM:
            try:
                self._set_keepalive(n, sock.keepalive_settings)
            except OSError:
                self.close_link(n, None)
                self.links[n] = None
                raise
        return n

    def reclaim(self, n):
        self.close_link(n, None)

    def open_link(self, n, name, port):
        try:
            self.at.command(('AT+USOCO=%d,"' % n).encode() + name + ('",%d,1' % port).encode(),
                            timeout_ms=_CMD_MS)
        except CommandError:
            self.close_link(n, None)  # the socket exists on the modem still
            raise

    def open_failed(self, sock, n, err):
        if err in _NETWORK_DOWN:  # the bearer is down though no URC said so
            self.net_open = False
        self.close_link(n, self.links[n])  # the modem keeps a socket whose connect failed
        return LinkBackend.open_failed(self, sock, n, err)

    def send(self, sock, data, timeout_ms):
        """Send up to MAX_SEND bytes of ``data``; returns how many the modem took."""
        n, link = self.sending_link(sock)
        size = min(len(data), MAX_SEND)
        wait = _SEND_MS if timeout_ms is None else max(_CMD_MS, min(timeout_ms, _SEND_MS))
        try:
            lines = self.at.command(("AT+USOWR=%d,%d" % (n, size)).encode(), b"+USOWR:",
                                    payload=bytes(data[:size]), timeout_ms=wait).lines
        except CommandTimeout as e:  # no prompt or no OK: the channel resyncs next time
            raise OSError(errno.ETIMEDOUT, "socket %d: %s" % (n, e))
        except CommandError as e:    # the socket closed (peer, network, a reboot?)
            self._settings_lost()
            raise OSError(errno.ECONNRESET, "socket %d: %s" % (n, e))
        values = _ints(lines[0], 7) if lines else None
        if not values or len(values) != 2 or values[0] != n or not 0 <= values[1] <= size:
            raise OSError(errno.EIO, "socket %d: AT+USOWR of %d bytes confirmed as %r"
                          % (n, size, lines[:1]))
        if not values[1]:  # its buffer is full: come back later
            if timeout_ms == 0:
                raise OSError(errno.EAGAIN, "socket %d: the modem took no bytes" % n)
            self.at.poll(self.poll_ms)
        return values[1]

    def read_link(self, n, link, buf):
        size = min(len(buf), MAX_READ)
        link.rx_pending = False  # pragma: no mutate -- a +UUSORD during the read sets it
        try:
            reply = self.at.command(("AT+USORD=%d,%d" % (n, size)).encode(), b"+USORD:",
                                    timeout_ms=_CMD_MS)
        except CommandTimeout as e:  # a reply cut short: resync, the data may be lost
            link.rx_pending = True
            raise OSError(errno.ETIMEDOUT, "socket %d: %s" % (n, e))
        except CommandError:  # the modem has no such socket (any more): rebooted?
            if not link.peer_closed and not self._settings_lost():
                link.peer_gone(tcp.RESET)
            return 0
        data = reply.payload
        got = _usord_count(reply.lines[0] if reply.lines else b"", n, data)
        if got < 0 or got > size:
            # Framing lost (the parser's check, or a header that does not match): ask
            # the modem again on the next read, once commands and replies are re-paired.
            err = self.framing_lost(link, "socket %d: bad +USORD reply (asked %d bytes; "
                                    "header %r, %s bytes followed)" % (
                                        n, size, reply.lines[:1],
                                        "no" if data is None else len(data)))
            if self._settings_lost():
                raise OSError(errno.ECONNRESET, "socket %d: the modem rebooted" % n)
            raise err
        if got:
            buf[:got] = data
        if got == size:  # maybe more behind it
            link.rx_pending = True
        elif not got and link.peer_closed:
            self._why_closed(n, link)
        return got

    def _why_closed(self, n, link):
        """At the end of the stream: the peer's FIN, or did the socket fail? Its last
        error (AT+USOCTL=<s>,1) says; a failure fires TIMEOUT or RESET and raises."""
        try:
            lines = self.at.command(("AT+USOCTL=%d,1" % n).encode(), b"+USOCTL:",
                                    timeout_ms=_CMD_MS).lines
        except (CommandError, CommandTimeout):
            return  # the modem freed the socket: nothing more to learn
        values = _ints(lines[0], 8) if lines else None
        err = values[2] if values and len(values) == 3 and values[:2] == [n, 1] else 0
        if err:
            code, text = _OPEN_ERRORS.get(err, (errno.ECONNRESET, "error"))
            event = tcp.TIMEOUT if code == errno.ETIMEDOUT else tcp.RESET
            if link.tcp.accepts(event):
                link.tcp.fire(event)
            raise OSError(code, "socket %d ended by error %d (%s)" % (n, err, text))

    def is_up(self):
        """The bearer is open and the modem did not reboot: an R4 announces no reboot
        (no boot URC), so a supervisor's check asks (one AT+CGEREP?)."""
        self.at.poll(0)
        return bool(self.net_open) and not self._settings_lost()

    def _settings_lost(self):
        """+CGEV reporting off means an unannounced reboot: ``start()`` turns it on
        (AT+CGEREP=1), a boot sets the default, 0. Counted, every socket reset (the next
        connect runs ``start()``). (Our other settings do not tell: binary reads are
        the R4's default, ATE0 has no read form, AT+CMEE=1 may be stored by AT&W.)"""
        try:
            lines = self.at.command(b"AT+CGEREP?", b"+CGEREP:", timeout_ms=_CMD_MS).lines
        except (CommandError, CommandTimeout):
            return False
        values = _ints(lines[0], 8) if lines else None
        if values and values[0] == 0:
            self.on_reboot()
            self.all_lost()
            return True
        return False

    def close_link(self, n, link):
        # AT+USOCL=<s>,1 answers OK at once; +UUSOCL: <s> tells the close done. Until
        # then the number is not free: wait for it (also when aborting a connect).
        self._closing, self._closed = n, False
        try:
            self.at.command(("AT+USOCL=%d,1" % n).encode(), timeout_ms=_CMD_MS)
            if not self.at.wait_for(lambda: self._closed, _CLOSE_MS):
                return False
        except CommandError:
            pass  # no such socket: the modem had closed it already
        except CommandTimeout:
            return False  # the modem did not answer: the socket is given up here
        finally:
            self._closing = -1
        return True


def _first(values):
    return values[0] if values else None


def _usord_count(line, n, data):
    """The byte count of socket ``n``'s read reply, or -1 when it does not add up.
    ``line`` is the reply line; ``data`` the payload the parser framed after it (None:
    none). With bytes: ``+USORD: <s>,<count>`` (the header up to the opening quote);
    without: ``+USORD: <s>,""``, the R4's answer when nothing is there."""
    values = fields(line, 7)
    if len(values) != 2 or uint(values[0]) != n:
        return -1
    if data is None:
        return 0 if not values[1] and line.endswith(b'""') else -1
    return len(data) if uint(values[1]) == len(data) else -1
