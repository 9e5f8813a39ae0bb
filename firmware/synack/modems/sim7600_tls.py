"""TLS offload for the SIM7600: secure connections made by the modem's own SSL stack
(``AT+CCH*``), for boards without the RAM for mbedTLS (software TLS: synack.tls).

    from synack.modems import sim7600
    modem = sim7600.SIM7600(uart, apn="internet")
    modem.start()
    secure = modem.tls_offload(cadata=open("ca.pem", "rb").read())
    s = synack.socket.socket(backend=secure)
    s.connect(("example.com", 443))     # TCP and TLS handshake, both in the modem
    s.write(b"GET / HTTP/1.1\\r\\nHost: example.com\\r\\n\\r\\n")
    print(s.readline())

or https through the HTTP client: ``Client(backend=modem, tls="modem", cadata=...)``.

``ModemTLS`` is a socket backend like the SIM7600 and shares its AT channel (one UART).
The first connect downloads the CA (``AT+CCERTDOWN``, simcom_ssl.py), configures SSL
context ``ctx`` (``AT+CSSLCFG``: any version, authmode 1, cacert, enableSNI), sets
``AT+CCHSET=1,1`` (send results reported, manual receive) and ``AT+CCHSTART``. A
connect is ``AT+CCHSSLCFG`` and ``AT+CCHOPEN=<s>,"host",port,2`` (outcome:
``+CCHOPEN: <s>,<err>``): the modem resolves the name, sends it as SNI and verifies
the certificate with its own clock. ``AT+CCHSEND`` sends; ``AT+CCHRECV=<s>,<max>``
answers ``OK``, then ``+CCHRECV: DATA,<s>,<n>`` and n bytes, then ``+CCHRECV: <s>,0``
(the engine's framed URCs); ``+CCHEVENT: <s>,RECV EVENT`` announces data and
``+CCH_PEER_CLOSED: <s>`` the end. Two sessions (0-1), on the link table, read loop and
readiness every dialect shares (modems/links.py).

Errors are OSError only: a refused handshake is ``simcom_ssl.SSLError`` (EACCES,
``ssl_err`` 15; the modem does not tell the CA, the name and the dates apart). A
``+CCHRECV`` reply that does not add up (damaged header or payload, unparsable bytes,
no end line) marks the channel for a resync and raises EIO: the session stays usable,
the bytes of that read may be lost.
"""

import errno

from micropython import const

from .. import tcp
from ..at import quote
from ..at.errors import CommandError, CommandTimeout
from . import base, simcom_ssl
from .simcom_ssl import SSLError, error_text  # noqa: F401 (SSLError: part of this API)
from .links import LinkBackend

SESSIONS = const(2)
MAX_SEND = const(1500)
MAX_READ = const(1500)     # the SIM7600 parser's payload buffer (sim7600.MAX_READ)
_CMD_MS = const(5000)
_SEND_MS = const(10000)
_CLOSE_MS = const(15000)
_START_MS = const(120000)  # manual: AT+CCHSTART may take up to 120 s
_OPEN_MS = const(130000)   # TCP connect and handshake (negotiatetime at most 300 s)

URCS = (b"+CCHOPEN:", b"+CCHCLOSE:", b"+CCHSEND:", b"+CCHEVENT:", b"+CCH_PEER_CLOSED:",
        b"+CCH_RECV_CLOSED:", b"+CCHRECV:", b"+CCHSTART:", b"+CCHSTOP:")
FRAMED = ((b"+CCHRECV: DATA,", 1),)


def _read_file(path):
    with open(path, "rb") as f:
        return f.read()


def _ignore(line):
    return None


_ints = base.parse_ints


class ModemTLS(LinkBackend):
    """Secure sockets through the SIM7600's SSL stack; made by ``modem.tls_offload()``
    (one per modem: the sessions and URC handlers are the modem's)."""

    name = "sim7600-tls"
    KIND = "session"
    OPEN_URC = "+CCHOPEN"
    connect_limit_ms = _OPEN_MS

    def __init__(self, modem, cadata=None, cafile=None, verify=True, ca_name=None,
                 sni=True, ctx=0):
        self.modem = modem
        self.init_links(modem.at, SESSIONS, modem.poll_ms)
        self.started = False      # AT+CCHSTART done (since the last reboot)
        self.configured = False   # CA downloaded and AT+CSSLCFG sent
        self._start_err = None  # type: int | None
        self._rx = None  # type: memoryview | None  # the buffer of the read in flight
        self._rx_n = -1
        self._rx_got = 0
        self._rx_end = None  # type: int | None
        self._rx_bad = False
        self.stray = 0  # payload bytes that arrived with no read waiting (lost)
        self.configure(cadata, cafile, verify, ca_name, sni, ctx)
        parser = self.at.engine.parser
        parser.urcs = parser.urcs + URCS
        parser.framed = parser.framed + FRAMED
        engine = self.at.engine
        engine.on_framed_urc(b"+CCHRECV: DATA,", self._on_rx_data)
        for prefix, handler in ((b"+CCHRECV:", self._on_rx_end), (b"+CCHOPEN:", self._on_open),
                                (b"+CCHCLOSE:", self._on_close), (b"+CCHSEND:", self._on_sent),
                                (b"+CCHEVENT:", self._on_event),
                                (b"+CCH_PEER_CLOSED:", self._on_peer_closed),
                                (b"+CCH_RECV_CLOSED:", self._on_reset),
                                (b"+CCHSTART:", self._on_start), (b"+CCHSTOP:", _ignore),
                                (b"RDY", self._on_reboot)):
            engine.on_urc(prefix, handler, first=True)  # ahead of the modem's b"+C"

    def configure(self, cadata=None, cafile=None, verify=True, ca_name=None, sni=True, ctx=0):
        """What the next connect sets up (sessions open now keep theirs): ``cadata``
        (PEM or DER bytes) or ``cafile`` (a file on the board) is downloaded to the
        modem as ``ca_name`` (default synack_ca.pem / .der); with neither, a CA already
        on the modem named ``ca_name`` is used. ``verify=False`` trusts any server."""
        if cafile is not None and cadata is None:
            cadata = _read_file(cafile)
        if ca_name is None:
            der = cadata is not None and not bytes(cadata[:64]).lstrip().startswith(b"-----")
            ca_name = "synack_ca.der" if der else "synack_ca.pem"
        simcom_ssl.check_name(ca_name)
        if not 0 <= ctx <= 9:
            raise ValueError("SSL context %r: 0..9" % (ctx,))
        if cadata is not None:
            simcom_ssl.check_cert(cadata)
        self.cadata = cadata
        self.ca_name = ca_name
        self.verify = verify
        self.sni = sni
        self.ctx = ctx
        self.configured = False

    # -- URC handlers: record only ------------------------------------------------------
    def _session_of(self, line, prefix_len):
        values = _ints(line, prefix_len) or []  # [] for a garbled URC
        return self.link_of(values), values

    def _on_open(self, line):
        link, values = self._session_of(line, 9)
        if link and len(values) == 2:
            link.open_err = values[1]

    def _on_close(self, line):
        link, values = self._session_of(line, 10)
        if link and len(values) == 2:
            link.close_err = values[1]

    def _on_sent(self, line):
        link, values = self._session_of(line, 9)
        if link and len(values) == 2:
            link.sent = values[1]

    def _on_event(self, line):
        # +CCHEVENT: <s>,RECV EVENT (not all integers: parse the session alone)
        v = line[10:].split(b",")
        if len(v) == 2 and v[1].strip() == b"RECV EVENT":
            link, _ = self._session_of(v[0], 0)
            if link:
                link.rx_pending = True

    def _on_peer_closed(self, line):
        link, _ = self._session_of(line, 17)
        if link:
            link.peer_gone(tcp.PEER_FIN)

    def _on_reset(self, line):
        link, _ = self._session_of(line, 17)
        if link:
            link.peer_closed = True
            if link.tcp.accepts(tcp.RESET):
                link.tcp.fire(tcp.RESET)

    def _on_start(self, line):
        values = _ints(line, 10)
        if values and len(values) == 1:
            self._start_err = values[0]

    def _on_reboot(self, line):
        # The SSL service, its settings and every session are gone; the modem's own
        # handler (which this one displaced) does the rest.
        self.started = self.configured = False
        self.all_lost()
        self.modem.reboot_urc(line)

    def _on_rx_end(self, line):
        # +CCHRECV: <s>,<err> ends the data of a read
        values = _ints(line, 9)
        if self._rx is not None and values and len(values) == 2 and values[0] == self._rx_n:
            self._rx_end = values[1]

    def _on_rx_data(self, line, payload):
        # +CCHRECV: DATA,<s>,<n> and its n bytes (None: damaged on the UART)
        dest = self._rx
        if dest is None:
            self.stray += len(payload or b"")
            return
        values = _ints(line, 15)
        got = self._rx_got
        if (payload is None or not values or len(values) != 2 or values[0] != self._rx_n
                or values[1] != len(payload) or got + len(payload) > len(dest)):
            self._rx_bad = True
            return
        dest[got:got + len(payload)] = payload
        self._rx_got = got + len(payload)

    def _rx_done(self):
        return self._rx_end is not None

    # -- certificates and the service ----------------------------------------------------
    def download_cert(self, name, data):
        """Store a certificate on the modem (``simcom_ssl.download_cert``)."""
        simcom_ssl.download_cert(self.at, name, data)

    def certificates(self):
        return simcom_ssl.list_certs(self.at)

    def delete_cert(self, name):
        simcom_ssl.delete_cert(self.at, name)

    def _command(self, cmd, prefix=None, timeout_ms=_CMD_MS):
        return simcom_ssl.command(self.at, cmd, prefix, timeout_ms)

    def start(self):
        """Configure the SSL context and start the SSL service (done by the first
        connect, and again after a modem reboot). OSError on failure."""
        self.at.poll(0)  # a RDY still unread changes what is to do
        if not self.configured:
            if self.cadata is not None:
                self.download_cert(self.ca_name, self.cadata)
            self._cssl("sslversion", "4")  # any: SSL3.0 .. TLS1.2, as the server offers
            self._cssl("authmode", "1" if self.verify else "0")  # 1: verify the server
            if self.verify:
                self._cssl("cacert", '"%s"' % self.ca_name)
            self._cssl("enableSNI", "1" if self.sni else "0")
            self.configured = True
        if self.started:
            return
        for attempt in (0, 1):
            self._command(b"AT+CCHSET=1,1")  # report send results; manual receive
            self._start_err = None
            try:
                self.at.command(b"AT+CCHSTART", timeout_ms=_CMD_MS)
            except CommandError as e:  # already running (a board reset, not the modem's)
                if attempt:
                    raise OSError(errno.EHOSTUNREACH, "AT+CCHSTART failed: %s" % e)
                self._command(b"AT+CCHSTOP", timeout_ms=_CLOSE_MS)
                self.at.poll(100)  # its +CCHSTOP: <err>
                continue
            except CommandTimeout as e:
                raise OSError(errno.ETIMEDOUT, "AT+CCHSTART: %s" % e)
            self.at.wait_for(self._start_known, _START_MS)
            err = self._start_err
            if err != 0:
                raise OSError(errno.EHOSTUNREACH, "SSL service did not start: +CCHSTART: %s"
                              % ("none" if err is None else "%d (%s)" % (err, error_text(err))))
            self.started = True
            return

    def _cssl(self, key, value):
        self._command(('AT+CSSLCFG="%s",%d,%s' % (key, self.ctx, value)).encode())

    def _start_known(self):
        return self._start_err is not None

    # -- the socket backend ---------------------------------------------------------------
    def getaddrinfo(self, host, port):
        """The name itself: the modem resolves it in AT+CCHOPEN and checks the
        certificate against it (a resolved address would lose the name)."""
        name = quote.host(host)
        return [(2, 1, 6, "", (name.decode(), port))]

    def before_connect(self, sock, limit_ms):
        self.start()

    def open_link(self, n, name, port):
        self.at.command(("AT+CCHSSLCFG=%d,%d" % (n, self.ctx)).encode(), timeout_ms=_CMD_MS)
        self.at.command(('AT+CCHOPEN=%d,"' % n).encode() + name + ('",%d,2' % port).encode(),
                        timeout_ms=_CMD_MS)

    def open_failed(self, sock, n, err):
        code = simcom_ssl.ERRNO.get(err, errno.ECONNABORTED)
        msg = "secure connect to %s:%d failed: +CCHOPEN: %d,%d (%s)" % (
            sock.peer[0], sock.peer[1], n, err, error_text(err))
        if err in (simcom_ssl.HANDSHAKE, simcom_ssl.NO_CERT):
            return SSLError(msg + (" - certificate not trusted (unknown CA, wrong host "
                                   "name or dates) or no common protocol"
                                   if err == simcom_ssl.HANDSHAKE else ""), err)
        return OSError(code, msg)

    def send(self, sock, data, timeout_ms):
        """Send up to MAX_SEND plaintext bytes; the modem encrypts them."""
        n, link = self.sending_link(sock)
        size = min(len(data), MAX_SEND)
        link.sent = None
        try:
            self.at.command(("AT+CCHSEND=%d,%d" % (n, size)).encode(),
                            payload=bytes(data[:size]), timeout_ms=_SEND_MS)
        except CommandTimeout as e:
            raise OSError(errno.ETIMEDOUT, "session %d: %s" % (n, e))
        except CommandError as e:  # the session ended (+CCH_PEER_CLOSED follows)
            raise OSError(errno.ECONNRESET, "session %d: %s" % (n, e))
        self.at.wait_for(lambda: link.sent is not None, _SEND_MS)
        if link.sent is None:
            raise OSError(errno.ETIMEDOUT, "no +CCHSEND result for session %d" % n)
        if link.sent:
            raise OSError(errno.ECONNRESET, "session %d: +CCHSEND: %d,%d (%s)"
                          % (n, n, link.sent, error_text(link.sent)))
        return size

    def read_link(self, n, link, buf):
        """One ``AT+CCHRECV`` into ``buf``: the count (0: nothing cached)."""
        size = min(len(buf), MAX_READ)
        engine = self.at.engine
        noise = engine.noise + engine.malformed
        self._rx = memoryview(buf)[:size]
        self._rx_n = n
        self._rx_got = 0
        self._rx_end = None
        self._rx_bad = False
        try:
            try:
                self.at.command(("AT+CCHRECV=%d,%d" % (n, size)).encode(), timeout_ms=_CMD_MS)
            except CommandError:
                link.rx_pending = False  # +CCHRECV: <s>,<err> and ERROR: nothing to read
                return 0
            except CommandTimeout as e:
                link.rx_pending = True
                raise OSError(errno.ETIMEDOUT, "session %d: %s" % (n, e))
            # OK comes first; the data and "+CCHRECV: <s>,0" follow (or came before it)
            self.at.wait_for(self._rx_done, _CMD_MS)
            got = self._rx_got
            if self._rx_end is None or self._rx_bad or engine.noise + engine.malformed != noise:
                raise self.framing_lost(link, "session %d: bad +CCHRECV reply (asked %d "
                                        "bytes, %d taken, end %r)"
                                        % (n, size, got, self._rx_end))
        finally:
            self._rx = None
        link.rx_pending = got >= size  # a full read: more may be cached
        return got

    def close_link(self, n, link):
        return self._close_session(n)

    def _close_session(self, n):
        """``AT+CCHCLOSE`` (close_notify, FIN) and its ``+CCHCLOSE: <s>,<err>``; False
        when the modem did not answer."""
        link = self.links[n]
        if link is not None:
            link.close_err = None
        try:
            self.at.command(("AT+CCHCLOSE=%d" % n).encode(), timeout_ms=_CMD_MS)
            if link is not None:
                self.at.wait_for(lambda: link.close_err is not None, _CLOSE_MS)
        except CommandError:
            pass  # the session had ended already (the peer closed it)
        except CommandTimeout:
            return False
        return True

    def reclaim(self, n):
        # reset by the network, its socket never closed (umqtt.robust drops sockets
        # so): make sure the modem let the session go too
        self._close_session(n)
