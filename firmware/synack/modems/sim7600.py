"""SIMCom SIM7600 (also SIM7500/SIM7800; A76xx are close): bring-up and TCP sockets.

Non-transparent mode with manual receive (AT+CIPRXGET=1): received data stays in the
modem until read with ``AT+CIPRXGET=2,<link>,<max>``, which answers with a length-framed
binary payload. Ten links (0-9). The data URC ``+CIPRXGET: 1,<link>`` can be lost on a
busy UART, so a reader that hears nothing still polls the modem every ``poll_ms``.

The modem is a socket backend (synack.backend) on the shared link table and read loop
(modems/links.py) and bearer life (cellular.ModemBackend); this module is the AT side. A
connect is ``AT+CIPOPEN`` (which answers OK at once) and then the ``+CIPOPEN:
<link>,<err>`` URC, so a non-blocking socket can poll for it without holding the caller.

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
``+CIPOPEN: n,2``) marks the bearer down; the next connect reopens it with
``AT+NETOPEN`` (cellular.ModemBackend.ensure_bearer), so a library that only reconnects
(umqtt.robust) recovers without calling ``start()``.
A link the network reset whose socket was never closed (robust drops its old socket
without closing it) is reused once all ten are taken.
"""

import errno

from micropython import const

from .. import keepalive as _ka
from .. import tcp
from ..at import quote
from ..at.driver import Channel
from ..at.errors import CommandError, CommandTimeout
from ..at.parser import Parser
from ..at.steps import command, wait_for
from . import base, simcom
from .cellular import ModemBackend
from .links import Link, LinkBackend, refused  # noqa: F401 (Link: part of this module's API)

LINKS = const(10)
MAX_SEND = const(1500)
MAX_READ = const(1500)
_CMD_MS = const(5000)
_SEND_MS = const(10000)
_CLOSE_MS = const(15000)
_NETOPEN_MS = const(75000)   # manual: +NETOPEN may take up to 75 s (reference)
_CONNECT_MS = const(130000)  # CIPOPEN gives up by itself after ~120 s
_DNS_MS = const(30000)

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

_ints = base.parse_ints  # a list of ints, or None for a garbled line


class SIM7600(ModemBackend, LinkBackend):
    """A SIM7600 on a UART-like object. ``start()`` brings it online; then it serves
    as the backend of synack.socket (``synack.socket.use(modem)``)."""

    name = "sim7600"
    OPEN_URC = "+CIPOPEN"
    OPEN_ERRORS = _OPEN_ERRORS
    RESET_COMMAND = b"AT+CRESET"
    ICCID = (b"AT+CICCID", b"+ICCID:")
    BEARER_QUERY = (b"AT+NETOPEN?", b"+NETOPEN:", b"1")
    IP_QUERY = (b"AT+IPADDR", b"+IPADDR:")
    connect_limit_ms = _CONNECT_MS  # a connect without a timeout of the socket's

    def __init__(self, uart, apn="", pin=None, poll_ms=500, channel=None):
        quote.param(apn, "APN")  # ValueError now, not a hijacked command at start()
        if pin is not None:
            quote.param(pin, "PIN", 8)
        at = channel or Channel(uart, Parser(urcs=URCS, framed=FRAMED,
                                             max_payload=MAX_READ, trailer=b"\r\n"))
        self.init_links(at, LINKS, poll_ms)
        self.init_modem(at, pin)
        self.apn = apn
        self._netopen = None  # pragma: no mutate -- bearer_open_steps() sets it first
        self._ctcpka = None   # the AT+CTCPKA arguments last sent  # pragma: no mutate
        self._tls = None  # the ModemTLS of tls_offload(), made on first use
        on = self.at.engine.on_urc
        on(b"+CIPRXGET: 1,", self._on_data)
        on(b"+IPCLOSE:", self._on_ipclose)
        on(b"+CIPOPEN:", self._on_open)
        on(b"+CIPCLOSE:", self._on_close)
        on(b"+CIPSEND:", self._on_sent)
        on(b"+NETOPEN:", self._on_netopen)
        on(b"+CIPEVENT:", self.network_lost_urc)
        on(b"+NETCLOSE:", self.network_lost_urc)
        on(b"RDY", self.reboot_urc)
        for informational in (b"+CPIN:", b"SMS DONE", b"PB DONE", b"+C"):
            on(informational, _ignore)

    # -- URC handlers: record only, never issue commands ------------------------
    def _link_of(self, line, prefix_len):
        """(Link or None, the URC's integers); (None, []) for a garbled URC."""
        values = _ints(line, prefix_len) or []
        return self.link_of(values), values

    def _on_data(self, line):
        link, _ = self._link_of(line, 13)
        if link:
            link.rx_pending = True

    def _on_ipclose(self, line):
        link, values = self._link_of(line, 9)
        if link:
            # reason 1: closed by the peer (its FIN); 2: timeout (retransmissions or
            # keepalive probes unanswered); 0: local abort.
            reason = values[1] if len(values) > 1 else 0
            link.peer_gone(tcp.PEER_FIN if reason == 1 else tcp.TIMEOUT if reason == 2
                           else tcp.RESET)

    def _on_open(self, line):
        link, values = self._link_of(line, 9)
        if link and len(values) > 1:
            link.open_err = values[1]

    def _on_close(self, line):
        link, values = self._link_of(line, 10)
        # +CIPCLOSE: <link>,<err>; the 10-value form answers a query
        if link and len(values) == 2:
            link.close_err = values[1]

    def _on_sent(self, line):
        link, values = self._link_of(line, 9)
        if link and len(values) == 3:
            link.sent = values[2]

    def _on_netopen(self, line):
        values = _ints(line, 9)
        if values:
            self._netopen = values[0]

    # -- bring-up ----------------------------------------------------------------
    def configure_steps(self):
        """(cellular.ModemBackend.start) PDP context, non-transparent mode, manual receive;
        then ``bearer_open_steps`` is AT+NETOPEN."""
        yield command(b'AT+CGDCONT=1,"IP","' + quote.param(self.apn, "APN") + b'"')
        yield command(b"AT+CIPMODE=0")
        yield command(b"AT+CIPRXGET=1")

    def bearer_open_steps(self):
        self._netopen = None
        try:
            yield command(b"AT+NETOPEN", timeout_ms=_CMD_MS)  # pragma: no mutate
        except CommandError as e:
            if b"already opened" not in b" ".join(e.lines):  # pragma: no mutate -- one line
                raise base.PDPError("AT+NETOPEN failed: " + str(e))
            self.net_open = True
            return
        if not (yield wait_for(self._netopen_known, _NETOPEN_MS)):
            raise base.PDPError("no +NETOPEN within %d s" % (_NETOPEN_MS // 1000))
        if self._netopen != 0:
            raise base.PDPError("packet data context failed: +NETOPEN: %d (check the APN "
                                "%r and the data plan)" % (self._netopen, self.apn))
        self.net_open = True

    def _netopen_known(self):
        return self._netopen is not None

    def bearer_close(self):
        self.at.command(b"AT+NETCLOSE", timeout_ms=_CMD_MS)

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
        """Resolve with ``AT+CDNSGIP`` (base.lookup); its answer is
        ``+CDNSGIP: 1,"<name>","<ip>"[,"<ip2>"]``."""
        return base.lookup(self.at, host, port, b"AT+CDNSGIP=", b"+CDNSGIP:", _cdnsgip_ip,
                           _DNS_MS)

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

    def before_connect(self, sock, limit_ms):
        self.ensure_bearer(sock, limit_ms)
        if sock.keepalive_mechanism == _ka.MODEM:
            try:
                self._set_keepalive(sock.keepalive_settings)
            except (CommandError, CommandTimeout) as e:
                raise refused(e, errno.EINVAL, "modem rejected AT+CTCPKA")

    def open_link(self, n, name, port):
        self.at.command(('AT+CIPOPEN=%d,"TCP","' % n).encode() + name
                        + (('",%d' % port).encode()), timeout_ms=_CMD_MS)

    def open_failed(self, sock, n, err):
        if err == 2:  # the bearer is down though no URC said so: reopen next connect
            self.net_open = False
        return LinkBackend.open_failed(self, sock, n, err)

    def send(self, sock, data, timeout_ms):
        """Send up to MAX_SEND bytes of ``data``; returns how many the modem accepted."""
        n, link = self.sending_link(sock)
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

    def read_link(self, n, link, buf):
        return simcom.ciprxget(self, n, link, buf, MAX_READ)

    def close_link(self, n, link):
        # Wait for +CIPCLOSE too (also when aborting a connect): until then the modem
        # still holds the link number, and AT+CIPOPEN on it would be refused (n,4).
        try:
            self.at.command(("AT+CIPCLOSE=%d" % n).encode(), timeout_ms=_CMD_MS)
            if link is not None:
                self.at.wait_for(lambda: link.close_err is not None, _CLOSE_MS)
        except CommandError:
            pass  # "+CIPCLOSE: n,4" + ERROR: the modem had closed the link already
        except CommandTimeout:
            return False  # the modem did not answer: the link is given up here
        return True


def _ctcpka_units(ka):
    """AT+CTCPKA=1,<keepidle min 1-120>,<keepcount 1-10>,<keepinterval min>: (idle,
    interval, count) in its units, or None when the request is not whole minutes in
    range (the application must probe then). Ranges as SIMCom's manual gives them for
    idle and count; the interval is taken as minutes 1-75 (verify on your firmware)."""
    return _ka.in_units(ka, 60, (1, 120), (1, 75), (1, 10))


def _ignore(line):
    return None


def _cdnsgip_ip(values):
    return values[2] if len(values) >= 3 and values[0] == b"1" else None
