"""Quectel BG96 (also BG95, EG91, EC2x: the same TCP/IP AT commands): bring-up and TCP.

Context 1 (``AT+QICSGP``, ``AT+QIACT=1``) carries twelve connections (connectID 0-11),
opened in buffer access mode: received data stays in the modem until read with
``AT+QIRD=<id>,<max>``, which answers ``+QIRD: <n>`` and exactly n raw bytes (0: none).
The data URC ``+QIURC: "recv",<id>`` comes once per empty-to-filled buffer and can be
lost on a busy UART, so a reader that hears nothing still polls every ``poll_ms``.

The modem is a socket backend (synack.backend) on the shared link table and read loop
(modems/links.py) and bearer life (cellular.ModemBackend); this module is the AT side. A
connect is ``AT+QIOPEN`` (OK at once), then the ``+QIOPEN: <id>,<err>`` URC. A send is
``AT+QISEND=<id>,<n>``, the ``>`` prompt, the bytes, then ``SEND OK`` (in the modem's
buffer), ``SEND FAIL`` (buffer full: tried again until the call's timeout) or ``ERROR``.

Closes: ``+QIURC: "closed",<id>`` (the peer's FIN or a network error: the URC does not
say which, so it is taken as the FIN) leaves what the modem holds readable; the socket
reads it, then sees the end of stream. ``AT+QICLOSE=<id>`` answers OK once closed.

Robustness: every URC handler parses defensively and ignores a garbled line. A ``+QIRD``
header that does not match the read (a count that is not an integer or exceeds the
request, a payload of another length) is lost framing: the channel is resynced, the
link stays readable and the read raises OSError(EIO). Every socket call raises OSError
only. Network loss (``+QIURC: "pdpdeact",1``, a reboot, a ``+QIOPEN`` 561/570) marks
the bearer down and resets every link; the next connect deactivates what is left
(``AT+QIDEACT=1``) and activates context 1 again (cellular.ModemBackend.ensure_bearer).
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
from . import base
from .cellular import ModemBackend
from .links import LinkBackend, refused

LINKS = const(12)
MAX_SEND = const(1460)
MAX_READ = const(1500)
_CTX = const(1)              # the PDP context synack uses
_CMD_MS = const(5000)
_SEND_MS = const(10000)
_CLOSE_MS = const(15000)     # AT+QICLOSE closes within its own 10 s by default
_QIACT_MS = const(150000)    # manual: AT+QIACT may take up to 150 s
_QIDEACT_MS = const(40000)
_CONNECT_MS = const(155000)  # +QIOPEN comes within 150 s (then 569 timeout)
_DNS_MS = const(60000)

URCS = (b"+QIURC:", b"+QIOPEN:", b"RDY", b"APP RDY", b"+CPIN:", b"+QIND:", b"+QUSIM:",
        b"+CFUN:", b"POWERED DOWN", b"+CREG:", b"+CGREG:", b"+CEREG:")
FRAMED = ((b"+QIRD:", 0),)
FINALS = (b"SEND OK", b"SEND FAIL")
SUCCESS = (b"OK", b"SEND OK")
KEEPALIVE_OFF = "0"

# Quectel TCP/IP <err> codes (+QIOPEN, +QIURC: "dnsgip") -> (errno, text); others:
# ECONNABORTED. 566 is what a refused (or unreachable) connect gives.
_OPEN_ERRORS = {
    552: (errno.EINVAL, "invalid parameters"),
    553: (errno.ENOMEM, "memory not enough"),
    554: (errno.ENOBUFS, "create socket failed"),
    561: (errno.EHOSTUNREACH, "activate PDP context failed"),
    563: (errno.EADDRINUSE, "socket identity has been used"),
    564: (errno.EHOSTUNREACH, "DNS busy"),
    565: (errno.EHOSTUNREACH, "DNS parse failed"),
    566: (errno.ECONNREFUSED, "socket connect failed"),
    567: (errno.ECONNRESET, "socket has been closed"),
    568: (errno.EAGAIN, "operation busy"),
    569: (errno.ETIMEDOUT, "operation timeout"),
    570: (errno.EHOSTUNREACH, "PDP context broken down"),
    572: (errno.EPERM, "operation not allowed"),
    573: (errno.EHOSTUNREACH, "APN not configured"),
    574: (errno.EADDRINUSE, "port busy"),
}
_BEARER_GONE = (561, 570)

_ints = base.parse_ints  # a list of ints, or None for a garbled line


class BG96(ModemBackend, LinkBackend):
    """A BG96 on a UART-like object. ``start()`` brings it online; then it serves as the
    backend of synack.socket (``synack.socket.use(modem)``)."""

    name = "bg96"
    KIND = "connection"
    OPEN_URC = "+QIOPEN"
    OPEN_ERRORS = _OPEN_ERRORS
    RESET_COMMAND = b"AT+CFUN=1,1"
    ICCID = (b"AT+QCCID", b"+QCCID:")
    connect_limit_ms = _CONNECT_MS

    def __init__(self, uart, apn="", pin=None, poll_ms=500, channel=None):
        quote.param(apn, "APN")  # ValueError now, not a hijacked command at start()
        if pin is not None:
            quote.param(pin, "PIN", 8)
        at = channel or Channel(uart, engine=Engine(
            Parser(urcs=URCS, framed=FRAMED, extra_finals=FINALS, max_payload=MAX_READ,
                   trailer=b"\r\n"), success=SUCCESS))
        self.init_links(at, LINKS, poll_ms)
        self.init_modem(at, pin)
        self.apn = apn
        self.deact_pending = False  # the network dropped context 1: deactivate first
        self._keepalive = KEEPALIVE_OFF  # the tcp/keepalive arguments last set
        self._dns_err = None  # type: int | None
        self._dns_count = 0
        self._dns_ips = []  # type: list[str]
        on = self.at.engine.on_urc
        on(b"+QIURC:", self._on_qiurc)
        on(b"+QIOPEN:", self._on_open)
        on(b"RDY", self._on_reboot)
        for informational in (b"APP RDY", b"+CPIN:", b"+QIND:", b"+QUSIM:", b"+CFUN:",
                              b"POWERED DOWN", b"+C"):
            on(informational, _ignore)

    # -- URC handlers: record only, never issue commands ------------------------
    def _on_qiurc(self, line):
        # +QIURC: "<kind>"[,<values>]: quotes removed by fields()
        values = fields(line, 7)
        kind = values[0]
        arg = uint(values[1]) if len(values) > 1 else -1
        if kind == b"recv" or kind == b"closed":
            link = self.link_of([arg])
            if link is None:
                return
            if kind == b"recv":
                link.rx_pending = True
            else:
                link.peer_gone(tcp.PEER_FIN)
        elif kind == b"pdpdeact":
            if arg == _CTX:
                self.net_open = False  # pragma: no mutate -- None: only its truth is read
                self.deact_pending = True
                self.all_lost()
        elif kind == b"dnsgip" and len(values) > 1:
            if quote.is_ipv4(values[1]):
                self._dns_ips.append(values[1].decode())
            elif arg >= 0:
                # +QIURC: "dnsgip",<err>[,<count>,<ttl>]
                self._dns_count = uint(values[2]) if arg == 0 and len(values) > 2 else 0
                self._dns_err = arg

    def _on_open(self, line):
        values = _ints(line, 8) or []
        link = self.link_of(values)
        if link and len(values) == 2:
            link.open_err = values[1]

    def _on_reboot(self, line):
        self.on_reboot()
        self._keepalive = KEEPALIVE_OFF  # settings are lost with the reboot
        self.deact_pending = False
        self.all_lost()

    # -- bring-up ----------------------------------------------------------------
    def configure_steps(self):
        """(cellular.ModemBackend.start) Context 1; then ``bearer_open_steps`` activates it."""
        yield command(b'AT+QICSGP=1,1,"' + quote.param(self.apn, "APN") + b'","",""')

    def bearer_open_steps(self):
        if self.deact_pending:  # the manual: deactivate a context the network dropped
            self.deact_pending = False
            try:
                yield command(b"AT+QIDEACT=1", timeout_ms=_QIDEACT_MS)
            except ModemError:
                pass  # gone already: the state wanted
        try:
            yield command(b"AT+QIACT=1", timeout_ms=_QIACT_MS)
        except CommandError as e:
            if not (yield from self.context_active_steps()):  # ERROR: active already?
                raise base.PDPError("AT+QIACT=1 failed: %s (check the APN %r and the data "
                                    "plan)" % (e, self.apn))
        except CommandTimeout as e:
            raise base.PDPError(str(e))
        self.net_open = True

    def context_active(self):
        """Whether ``AT+QIACT?`` lists context 1 as active (``+QIACT: 1,1,...``)."""
        return run(self.at, self.context_active_steps())

    def context_active_steps(self):
        try:
            lines = (yield command(b"AT+QIACT?", b"+QIACT:", timeout_ms=_CMD_MS)).lines
        except ModemError:
            return False
        for line in lines:
            values = fields(line, 7)
            if len(values) > 1 and uint(values[0]) == _CTX and uint(values[1]) == 1:
                return True
        return False

    def bearer_close(self):
        self.at.command(b"AT+QIDEACT=1", timeout_ms=_QIDEACT_MS)

    # -- DNS ---------------------------------------------------------------------
    def getaddrinfo(self, host, port):
        """Resolve with ``AT+QIDNSGIP`` (the answer comes as URCs); OSError(EINVAL) for a
        host name that is not one, EHOSTUNREACH when the lookup fails, ETIMEDOUT when
        no answer comes within 60 s."""
        name = quote.host(host)
        if quote.is_ipv4(name):
            return [(2, 1, 6, "", (name.decode(), port))]
        self._dns_err = None
        self._dns_count = 0
        self._dns_ips = []
        try:
            self.at.command(b'AT+QIDNSGIP=1,"' + name + b'"', timeout_ms=_CMD_MS)
        except CommandError as e:
            raise OSError(errno.EHOSTUNREACH, "DNS lookup of %s failed: %s" % (host, e))
        except CommandTimeout as e:
            raise OSError(errno.ETIMEDOUT, "DNS lookup of %s: %s" % (host, e))
        self.at.wait_for(self._dns_done, _DNS_MS)
        ips = self._dns_ips
        err = self._dns_err
        if not ips:
            if err is None:
                raise OSError(errno.ETIMEDOUT, 'DNS lookup of %s: no +QIURC: "dnsgip" '
                              "within %d s" % (host, _DNS_MS // 1000))
            text = "no address" if err == 0 else _OPEN_ERRORS.get(err, (0, "error"))[1]
            raise OSError(errno.EHOSTUNREACH, 'DNS lookup of %s failed: +QIURC: "dnsgip",%d'
                          " (%s)" % (host, err, text))
        return [(2, 1, 6, "", (ip, port)) for ip in ips]  # AF_INET, STREAM, TCP

    def _dns_done(self):
        err = self._dns_err
        return err is not None and (err != 0 or len(self._dns_ips) >= self._dns_count)

    # -- socket backend ----------------------------------------------------------
    def keepalive_mechanism(self, ka):
        return _ka.MODEM if keepalive_args(ka) else _ka.PROBE

    def _set_keepalive(self, args):
        # AT+QICFG="tcp/keepalive" is global: it applies to connections opened after
        # it, so it is sent only when a connect needs other settings than the last.
        if args != self._keepalive:
            self.at.command(b'AT+QICFG="tcp/keepalive",' + args.encode(),
                            timeout_ms=_CMD_MS)  # pragma: no mutate
            self._keepalive = args

    def before_connect(self, sock, limit_ms):
        self.ensure_bearer(sock, limit_ms)
        if sock.keepalive_mechanism != _ka.MODEM:
            try:  # a connect without keepalive after one with: off again
                self._set_keepalive(KEEPALIVE_OFF)
            except ModemError:
                pass  # tried again by the next connect
            return
        args = keepalive_args(sock.keepalive_settings)
        if args is None:
            raise OSError(errno.EINVAL, "%r is not expressible in AT+QICFG=\"tcp/keepalive\""
                          % (sock.keepalive_settings,))
        try:
            self._set_keepalive(args)
        except (CommandError, CommandTimeout) as e:
            raise refused(e, errno.EINVAL, "modem rejected AT+QICFG")

    def open_link(self, n, name, port):
        self.at.command(('AT+QIOPEN=1,%d,"TCP","' % n).encode() + name
                        + ('",%d,0,0' % port).encode(), timeout_ms=_CMD_MS)

    def open_failed(self, sock, n, err):
        if err in _BEARER_GONE:  # the bearer is down though no URC said so
            self.net_open = False
            self.deact_pending = True
        return LinkBackend.open_failed(self, sock, n, err)

    def reclaim(self, n):
        # The modem holds a connection the network ended until AT+QICLOSE; until then
        # AT+QIOPEN on its number fails with 563.
        self.close_link(n, None)

    def send(self, sock, data, timeout_ms):
        """Send up to MAX_SEND bytes of ``data``; returns how many the modem took.
        ``SEND FAIL`` (its buffer full) is tried again every ``poll_ms`` within
        ``timeout_ms`` (0: EAGAIN at once)."""
        n, link = self.sending_link(sock)
        size = min(len(data), MAX_SEND)
        payload = bytes(data[:size])
        cmd = ("AT+QISEND=%d,%d" % (n, size)).encode()
        waited = 0
        while True:
            try:
                self.at.command(cmd, payload=payload, timeout_ms=_SEND_MS)
                return size
            except CommandTimeout as e:  # no prompt or no result: resync next time
                raise OSError(errno.ETIMEDOUT, "connection %d: %s" % (n, e))
            except CommandError as e:
                if e.result != b"SEND FAIL":  # ERROR: closed or broken (URC follows)
                    raise OSError(errno.ECONNRESET, "connection %d: %s" % (n, e))
            if timeout_ms == 0:
                raise OSError(errno.EAGAIN, "connection %d: the modem's send buffer is "
                              "full (SEND FAIL)" % n)
            if timeout_ms is not None and waited >= timeout_ms:
                raise OSError(errno.ETIMEDOUT, "connection %d: the modem's send buffer "
                              "stayed full (SEND FAIL) for %d ms" % (n, timeout_ms))
            wait = self.poll_ms if timeout_ms is None else min(self.poll_ms,
                                                               timeout_ms - waited)
            self.at.poll(wait)
            waited += wait
            if link.peer_closed or link.tcp.state != tcp.ESTABLISHED:
                raise OSError(errno.ECONNRESET, "connection %d closed while its send "
                              "waited (SEND FAIL)" % n)

    def read_link(self, n, link, buf):
        size = min(len(buf), MAX_READ)
        try:
            reply = self.at.command(("AT+QIRD=%d,%d" % (n, size)).encode(), b"+QIRD:",
                                    timeout_ms=_CMD_MS)
        except CommandTimeout as e:  # a payload cut short: resync, the data may be lost
            link.rx_pending = True
            raise OSError(errno.ETIMEDOUT, "connection %d: %s" % (n, e))
        except CommandError as e:  # the modem does not know the connection (any more)
            raise OSError(errno.EIO, "connection %d: %s" % (n, e))
        # +QIRD: <n>, then exactly <n> bytes (0: the modem holds nothing now)
        values = _ints(reply.lines[0], 6) if reply.lines else None
        data = reply.payload or b""
        got = len(data)
        if not values or len(values) != 1 or not 0 <= values[0] <= size or got != values[0]:
            raise self.framing_lost(link, "connection %d: bad +QIRD framing (asked %d "
                                    "bytes; header %r, %d bytes followed)"
                                    % (n, size, reply.lines[:1], got))
        buf[:got] = data
        # a full read may have left more; a short one emptied the buffer (the next
        # arrival brings a new "recv" URC)
        link.rx_pending = got == size and got > 0
        return got

    def close_link(self, n, link):
        try:
            self.at.command(("AT+QICLOSE=%d" % n).encode(), timeout_ms=_CLOSE_MS)
        except CommandError:
            return True  # the modem did not know the connection: released already
        except CommandTimeout:
            return False  # the modem did not answer: the link is given up here
        if link is not None:
            link.close_err = 0  # OK: closed
        return True


def keepalive_args(ka):
    """``AT+QICFG="tcp/keepalive",1,<idle min 1-120>,<interval s 25-100>,<count 3-10>``
    arguments for ``ka``, or None when it is not expressible (idle not whole minutes,
    or out of those ranges: the application must probe then). Ranges as Quectel's
    TCP/IP manuals give them (verify on your firmware)."""
    if ka.idle % 60:
        return None
    idle = ka.idle // 60
    if 1 <= idle <= 120 and 25 <= ka.interval <= 100 and 3 <= ka.count <= 10:
        return "1,%d,%d,%d" % (idle, ka.interval, ka.count)
    return None


def _ignore(line):
    return None
