"""SIMCom SIM800 (2G; SIM900 alike): bring-up and TCP sockets.

Multi-connection mode (AT+CIPMUX=1) with manual receive (AT+CIPRXGET=1) on links 0-5.
Received data stays in the modem until ``AT+CIPRXGET=2,<n>,<max>`` reads it as a
length-framed payload, as on the SIM7600; the data URC ``+CIPRXGET: 1,<n>`` can be lost
on a busy UART, so a reader that hears nothing polls the modem every ``poll_ms``.

What differs from the SIM7600, and how the AT layer takes it:

- Link events are lines without a ``+`` prefix: ``<n>, CONNECT OK`` / ``<n>, CONNECT
  FAIL`` / ``<n>, ALREADY CONNECT`` (after AT+CIPSTART's OK) and ``<n>, CLOSED`` (the
  peer closed). They are URCs by their prefixes ``0,`` .. ``5,``; no reply of a command
  this driver sends starts that way.
- Quick send (AT+CIPQSEND=1): AT+CIPSEND ends with ``DATA ACCEPT:<n>,<length>`` once
  the modem holds the data, not with ``<n>, SEND OK`` after the peer's ACK (a network
  round trip). Numbers in it: no entry of the parser's table, but a ``lone_line`` reply
  with that prefix. ``<n>, SEND FAIL`` and ``<n>, SEND OK`` (normal mode) still end it.
- AT+CIPCLOSE ends with ``<n>, CLOSE OK``, AT+CIPSHUT with ``SHUT OK``: final result
  codes of the parser (``FINALS``, with the SEND ones), successes of the engine
  (``SUCCESS``). A channel given to the constructor must be made with both.
- AT+CIFSR prints the address with no final result code: ``lone_line`` (at/engine.py).
- The bearer is AT+CSTT / AT+CIICR / AT+CIFSR, reopened after ``+PDP: DEACT`` (the
  network dropped it) from AT+CIPSHUT on, by the next connect (cellular.ModemBackend).
- DNS: ``AT+CDNSGIP="host"`` answers OK, then ``+CDNSGIP: 1,"host","a.b.c.d"`` or
  ``+CDNSGIP: 0,<err>`` comes as a URC (taken also when it comes before the OK).

Robustness as sim7600.py: URC handlers never raise on a garbled line, a read whose
framing does not add up marks the channel for a resync and raises EIO, and every socket
call raises OSError only.
"""

import errno

from micropython import const

from .. import keepalive as _ka
from .. import tcp
from ..at import quote
from ..at.driver import Channel
from ..at.engine import Engine
from ..at.errors import CommandError, CommandTimeout, ModemError
from ..at.parser import Parser, fields, uint
from ..at.steps import command, run
from . import base, simcom
from .cellular import ModemBackend
from .links import LinkBackend, refused

LINKS = const(6)
MAX_SEND = const(1460)   # AT+CIPSEND? reports the size per link (1460 on GPRS)
MAX_READ = const(1460)   # AT+CIPRXGET=2: <reqlength> 1..1460
_CMD_MS = const(5000)
_SEND_MS = const(10000)  # DATA ACCEPT: the UART's time (1460 B: 1.5 s at 9600), no RTT
_CLOSE_MS = const(15000)
_SHUT_MS = const(65000)  # manual: AT+CIPSHUT up to 65 s
_CIICR_MS = const(85000)  # manual: AT+CIICR up to 85 s
_CONNECT_MS = const(80000)  # AT+CIPSTART in multi-IP mode: up to 75 s
_DNS_MS = const(30000)

_LINK_PREFIXES = tuple(b"%d," % n for n in range(LINKS))
URCS = (b"+CIPRXGET: 1,",) + _LINK_PREFIXES + (
    b"+PDP: DEACT", b"+CDNSGIP:", b"RDY", b"+CPIN:", b"+CFUN:", b"Call Ready",
    b"SMS Ready", b"+CREG:", b"+CGREG:")
FRAMED = ((b"+CIPRXGET: 2,", 1),)
_ACCEPT = b"DATA ACCEPT:"  # quick send's answer: DATA ACCEPT:<n>,<length>


def _link_results(*words):
    return tuple(fmt % (n, w) for n in range(LINKS) for w in words
                 for fmt in (b"%d, %s", b"%d,%s"))


SUCCESS = (b"OK", b"SHUT OK") + _link_results(b"SEND OK", b"CLOSE OK")
FINALS = SUCCESS[1:] + _link_results(b"SEND FAIL")

_OK = const(0)
_FAIL = const(1)
_ALREADY = const(2)
_OPEN_RESULTS = {b"CONNECT OK": _OK, b"CONNECT FAIL": _FAIL, b"ALREADY CONNECT": _ALREADY}
_OPEN_ERRORS = {
    _FAIL: (errno.ECONNREFUSED, "CONNECT FAIL (refused, unreachable or timed out)"),
    _ALREADY: (errno.EADDRINUSE, "ALREADY CONNECT (the modem still had that link "
                                 "open; it is closed now)"),
}


def _ignore(line):
    return None


class SIM800(ModemBackend, LinkBackend):
    """A SIM800 on a UART-like object. ``start()`` brings it online; then it serves as
    the backend of synack.socket (``synack.socket.use(modem)``)."""

    name = "sim800"
    ICCID = (b"AT+CCID", None)   # the number alone on its line
    OPEN_URC = "<n>, CONNECT"
    OPEN_ERRORS = _OPEN_ERRORS
    connect_limit_ms = _CONNECT_MS

    def __init__(self, uart, apn="", pin=None, poll_ms=500, channel=None):
        quote.param(apn, "APN")  # ValueError now, not a hijacked command at start()
        if pin is not None:
            quote.param(pin, "PIN", 8)
        if channel is None:
            parser = Parser(urcs=URCS, framed=FRAMED, extra_finals=FINALS,
                            max_payload=MAX_READ, trailer=b"\r\n")
            channel = Channel(uart, engine=Engine(parser, success=SUCCESS))
        self.init_links(channel, LINKS, poll_ms)
        self.init_modem(channel, pin)
        self.apn = apn
        self.local_ip = None
        self._dns = None      # the +CDNSGIP line of the lookup in progress
        self._dns_name = None  # the name it resolves (lower case)
        self._ciptka = None   # the AT+CIPTKA arguments last sent  # pragma: no mutate
        on = self.at.engine.on_urc
        on(b"+CIPRXGET: 1,", self._on_data)
        for prefix in _LINK_PREFIXES:
            on(prefix, self._on_link_event)
        on(b"+PDP: DEACT", self.network_lost_urc)
        on(b"+CDNSGIP:", self._on_dns)
        on(b"RDY", self.reboot_urc)
        for informational in (b"+C", b"Call Ready", b"SMS Ready"):
            on(informational, _ignore)

    # -- URC handlers: record only, never issue commands ------------------------
    def _on_data(self, line):
        link = self.link_of(base.parse_ints(line, 13) or [])
        if link:
            link.rx_pending = True

    def _on_link_event(self, line):
        # "<n>, CONNECT OK" and the like; a garbled one names no link or no event
        comma = line.find(b",")
        link = self.link_of([uint(line[:comma])])
        if link is None:
            return
        word = line[comma + 1:].strip()
        if word == b"CLOSED":  # the peer's FIN or reset: SIM800 words both alike
            link.peer_gone(tcp.PEER_FIN)
        elif word in _OPEN_RESULTS:
            link.open_err = _OPEN_RESULTS[word]

    def _on_dns(self, line):
        # an answer naming another host is a late one of an earlier lookup
        values = fields(line, 9)
        if values[0] != b"1" or len(values) > 1 and values[1].lower() == self._dns_name:
            self._dns = line

    # -- bring-up ----------------------------------------------------------------
    def configure_steps(self):
        """(cellular.ModemBackend.start) Quick send: a send returns once the modem holds
        the data, not a network round trip later (again after a reboot: start())."""
        yield command(b"AT+CIPQSEND=1")

    def bearer_open_steps(self):
        """From whatever state the TCP/IP stack is in: AT+CIPSHUT (IP INITIAL), the
        multi-link and manual-receive modes, then APN, GPRS context, local address."""
        yield from self.bearer_close_steps()
        step = b"AT+CIPMUX=1"
        try:
            yield command(step)
            step = b"AT+CIPRXGET=1"
            yield command(step)
            step = b'AT+CSTT="' + quote.param(self.apn, "APN") + b'","",""'
            yield command(step)
            step = b"AT+CIICR"
            yield command(step, timeout_ms=_CIICR_MS)
            step = b"AT+CIFSR"
            lines = (yield command(step, timeout_ms=_CMD_MS, lone_line=True)).lines
        except ModemError as e:  # ERROR, +CME ERROR or no answer
            raise base.PDPError("packet data bring-up failed at %s: %s (check the APN %r "
                                "and the data plan)" % (step.decode(), e, self.apn))
        if not lines or not quote.is_ipv4(lines[0]):
            raise base.PDPError("AT+CIFSR gave no address: %r" % (lines[:1],))
        self.local_ip = lines[0].decode()
        self.net_open = True

    def bearer_close(self):
        """AT+CIPSHUT: every link and the GPRS context gone (best effort)."""
        run(self.at, self.bearer_close_steps())

    def bearer_close_steps(self):
        self.net_open = False  # pragma: no mutate -- None: only its truth is read
        self.all_lost()
        try:
            yield command(b"AT+CIPSHUT", timeout_ms=_SHUT_MS)
        except ModemError as e:
            raise base.PDPError("AT+CIPSHUT failed: " + str(e))

    # -- DNS ---------------------------------------------------------------------
    def getaddrinfo(self, host, port):
        """Resolve with ``AT+CDNSGIP``; OSError(EINVAL) for a host name that is not one,
        EHOSTUNREACH when the lookup fails or its answer is malformed, ETIMEDOUT when
        no answer comes."""
        name = quote.host(host)
        if quote.is_ipv4(name):
            return [(2, 1, 6, "", (name.decode(), port))]
        self._dns = None
        self._dns_name = name.lower()
        try:
            lines = self.at.command(b'AT+CDNSGIP="' + name + b'"', b"+CDNSGIP:",
                                    timeout_ms=_CMD_MS).lines
        except CommandError as e:
            raise OSError(errno.EHOSTUNREACH, "DNS lookup of %s failed: %s" % (host, e))
        except CommandTimeout as e:
            raise OSError(errno.ETIMEDOUT, "DNS lookup of %s: %s" % (host, e))
        line = lines[0] if lines else None
        if line is None:  # the usual order: OK now, the answer as a URC later
            self.at.wait_for(self._dns_known, _DNS_MS)
            line = self._dns
            if line is None:
                raise OSError(errno.ETIMEDOUT, "DNS lookup of %s: no +CDNSGIP within "
                              "%d s" % (host, _DNS_MS // 1000))
        # +CDNSGIP: 1,"<name>","<ip>"[,"<ip2>"] or +CDNSGIP: 0,<dns error>
        values = fields(line, 9)
        if len(values) == 2 and values[0] == b"0":
            raise OSError(errno.EHOSTUNREACH, "DNS lookup of %s failed: %s"
                          % (host, line.decode()))
        if len(values) < 3 or values[0] != b"1" or not quote.is_ipv4(values[2]):
            raise OSError(errno.EHOSTUNREACH, "DNS lookup of %s failed: malformed reply "
                          "%r" % (host, line))
        return [(2, 1, 6, "", (values[2].decode(), port))]  # AF_INET, STREAM, TCP

    def _dns_known(self):
        return self._dns is not None

    # -- socket backend ----------------------------------------------------------
    def keepalive_mechanism(self, ka):
        return _ka.MODEM if _ciptka_units(ka) else _ka.PROBE

    def before_connect(self, sock, limit_ms):
        self.ensure_bearer(sock, limit_ms)
        if sock.keepalive_mechanism != _ka.MODEM:
            return
        # AT+CIPTKA=1,<idle s>,<interval s>,<count>: for the links opened after it, so
        # sent only when a connect asks for other settings than the last one
        args = "1,%d,%d,%d" % _ciptka_units(sock.keepalive_settings)
        if args == self._ciptka:
            return
        try:
            self.at.command(("AT+CIPTKA=" + args).encode(), timeout_ms=_CMD_MS)
        except (CommandError, CommandTimeout) as e:
            raise refused(e, errno.EINVAL, "modem rejected AT+CIPTKA")
        self._ciptka = args

    def open_link(self, n, name, port):
        self.at.command(('AT+CIPSTART=%d,"TCP","' % n).encode() + name
                        + ('",%d' % port).encode(), timeout_ms=_CMD_MS)

    def open_failed(self, sock, n, err):
        code, text = _OPEN_ERRORS.get(err, (errno.ECONNABORTED, "error"))
        if err == _ALREADY:  # a link our table had lost: free it for the next connect
            self.close_link(n, None)
        return OSError(code, "connect to %s:%d failed: %d, %s"
                       % (sock.peer[0], sock.peer[1], n, text))

    def send(self, sock, data, timeout_ms):
        """Send up to MAX_SEND bytes of ``data``; returns how many the modem took: the
        count of ``DATA ACCEPT:<n>,<length>`` (quick send), all of them on ``<n>, SEND
        OK`` (normal mode). A DATA ACCEPT that does not match the send is EIO."""
        n, link = self.sending_link(sock)
        size = min(len(data), MAX_SEND)
        if not size:
            return 0
        try:
            lines = self.at.command(
                ("AT+CIPSEND=%d,%d" % (n, size)).encode(), _ACCEPT,
                payload=bytes(data[:size]), lone_line=True, timeout_ms=_SEND_MS).lines
        except CommandTimeout as e:  # no prompt, no DATA ACCEPT: resync next time
            raise OSError(errno.ETIMEDOUT, "link %d: %s" % (n, e))
        except CommandError as e:    # ERROR or "<n>, SEND FAIL": the link is broken
            raise OSError(errno.ECONNRESET, "link %d: %s" % (n, e))
        if not lines:
            return size              # "<n>, SEND OK" (normal mode): all of it
        values = base.parse_ints(lines[-1], len(_ACCEPT))
        if not values or len(values) != 2 or values[0] != n or not 0 < values[1] <= size:
            raise self.framing_lost(link, "link %d: garbled or foreign %r after a send "
                                    "of %d bytes" % (n, lines[-1], size))
        return values[1]

    def read_link(self, n, link, buf):
        return simcom.ciprxget(self, n, link, buf, MAX_READ)

    def close_link(self, n, link):
        # Slow close (our FIN), answered "<n>, CLOSE OK"; ERROR: the modem had closed
        # the link already (the peer's CLOSED, a connect that failed).
        try:
            self.at.command(("AT+CIPCLOSE=%d" % n).encode(), timeout_ms=_CLOSE_MS)
        except CommandError:
            return True
        except CommandTimeout:
            return False  # the modem did not answer: the link is given up here
        if link is not None:
            link.close_err = 0
        return True


def _ciptka_units(ka):
    """AT+CIPTKA=1,<keepIdle s 30-7200>,<keepInterval s 30-600>,<keepCount 1-9>
    (SIM800 manual V1.09; firmware before it lacks the command and answers ERROR):
    (idle, interval, count), or None when the request is out of these ranges."""
    return _ka.in_units(ka, 1, (30, 7200), (30, 600), (1, 9))
