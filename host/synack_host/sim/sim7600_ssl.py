"""Virtual SIM7600 SSL service: the ``AT+CCH*``, ``AT+CSSLCFG`` and ``AT+CCERT*``
commands of SIMCom's "SIM7500_SIM7600 Series SSL AT Command Manual", backed by a real
TLS client (Python's ``ssl``) toward servers on this machine.

- Certificates: ``AT+CCERTDOWN="<name>",<len>`` (``.pem``/``.der``, 1..10240 bytes,
  ``>`` prompt, then the bytes), ``AT+CCERTLIST``, ``AT+CCERTDELE``. They are the
  modem's flash: kept across reboots (at most ``MAX_CERTS``).
- ``AT+CSSLCFG="sslversion"|"authmode"|"cacert"|"enableSNI"|"ignorelocaltime"|
  "negotiatetime",<ctx>,<value>`` configures contexts 0-9; authmode 0 (no check) and
  1 (verify the server against cacert: chain, dates and -- with SNI on -- the host
  name); 2/3 (client certificates) are not emulated: ERROR. sslversion 4 is SSL3.0 ..
  TLS1.2 (as the SIM7600: no TLS1.3).
- ``AT+CCHSET=<report_send>,<recv_mode>``, ``AT+CCHSTART``/``AT+CCHSTOP`` (``OK`` then
  ``+CCHSTART: 0``), ``AT+CCHSSLCFG=<s>,<ctx>``, ``AT+CCHOPEN=<s>,"host",port[,2]``
  (``OK`` then ``+CCHOPEN: <s>,<err>``), ``AT+CCHSEND=<s>,<len>`` (``>``, ``OK``, then
  ``+CCHSEND: <s>,0`` when reported), ``AT+CCHRECV=<s>[,<max>]`` (``OK``, then
  ``+CCHRECV: DATA,<s>,<n>`` + n bytes and ``+CCHRECV: <s>,0``), ``AT+CCHRECV?``,
  ``AT+CCHCLOSE=<s>`` (close_notify and FIN, ``+CCHCLOSE: <s>,0``). Sessions 0-1.
- URCs: ``+CCHEVENT: <s>,RECV EVENT`` (manual receive: data arrived in an empty cache),
  pushed ``+CCHRECV: DATA,<s>,<n>`` frames (recv_mode 0), ``+CCH_PEER_CLOSED: <s>``.
- <err>: 13 the name does not resolve, 14 the TCP connect failed, 15 the handshake
  failed (any cause: the manual has one code), 19 no CA certificate, 5 timeout.

Bounded: at most ``RX_CAP`` plaintext bytes cached per session (then the socket is not
read: TCP flow control), ``TX_CAP`` queued for sending (beyond: ``AT+CCHSEND`` ERROR).
"""

from __future__ import annotations

import collections
import errno
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .faults import Fault
from .modem import ArgError, Command, int_arg

if TYPE_CHECKING:
    from .sim7600 import SIM7600

SESSIONS = 2
CONTEXTS = 10
MAX_CERT = 10240
MAX_CERTS = 16
MAX_SEND = 2048
MAX_RECV = 1500
RX_CAP = 64 * 1024
TX_CAP = 64 * 1024
CLOSE_WAIT_S = 2.0
START_DELAY_S = 0.02
READ, WRITE = 1, 2   # selectors.EVENT_READ, EVENT_WRITE
NO_CHECK_TIME = 0x200000   # OpenSSL X509_V_FLAG_NO_CHECK_TIME (ignorelocaltime)


@dataclass
class Context:
    sslversion: int = 4
    authmode: int = 0
    cacert: str = ""
    sni: int = 0
    ignorelocaltime: int = 0
    negotiatetime: int = 300


class Session:
    """One SSL session: connecting -> handshake -> open -> (closing | closed)."""

    def __init__(self, n: int, sock: socket.socket, host: str):
        self.n = n
        self.sock: socket.socket | None = sock
        self.host = host
        self.state = "connecting"
        self.want = WRITE
        self.rx = bytearray()
        self.tx = bytearray()
        self.tx_sent = 0
        self.unconfirmed: collections.deque[int] = collections.deque()  # cumulative ends
        self.urc_armed = True
        self.callback = None
        self.ctx: ssl.SSLContext | None = None


class SSLService:
    """The SSL part of one virtual SIM7600 (``modem.ssl``)."""

    def __init__(self, modem: SIM7600):
        self.modem = modem
        self.certs: dict[str, bytes] = {}
        self.handshakes = 0
        self.garble_reads = 0     # the garble-cchrecv fault: headers still to garble
        self._abandoned: list[socket.socket] = []
        self.reset(abandon=True)

    def reset(self, abandon: bool) -> None:
        """Power cycle or AT+CCHSTOP: sessions gone (silently if ``abandon``)."""
        for sess in list(getattr(self, "sessions", {}).values()):
            self._release(sess, abandon)
        self.sessions: dict[int, Session] = {}
        self.contexts = [Context() for _ in range(CONTEXTS)]
        self.session_ctx = {n: 0 for n in range(SESSIONS)}
        self.report_send = 0
        self.recv_mode = 0
        self.started = False

    def network_lost(self) -> None:
        for sess in list(self.sessions.values()):
            if sess.state != "closed":
                self._peer_closed(sess, abandon=True)

    def close(self) -> None:
        self.reset(abandon=False)
        for sock in self._abandoned:
            sock.close()
        self._abandoned.clear()

    def status(self) -> dict:
        return {n: s.state for n, s in sorted(self.sessions.items())}

    # -- sockets -------------------------------------------------------------------
    def _release(self, sess: Session, abandon: bool = False) -> None:
        if sess.sock is None:
            return
        self.modem.watch(sess.sock, 0, sess.callback)
        if abandon:
            self._abandoned.append(sess.sock)
        else:
            sess.sock.close()
        sess.sock = None

    def _rewatch(self, sess: Session) -> None:
        if sess.sock is None:
            return
        events = 0
        if sess.state in ("connecting", "handshake"):
            events = sess.want
        elif sess.state == "open":
            events = (READ if len(sess.rx) < RX_CAP else 0) | (WRITE if sess.tx else 0)
        elif sess.state == "closing":
            events = READ
        self.modem.watch(sess.sock, events, sess.callback)

    def _on_socket(self, sess: Session, mask: int) -> None:
        if self.sessions.get(sess.n) is not sess or sess.sock is None:
            return
        if sess.state == "connecting":
            self._connected(sess)
        elif sess.state == "handshake":
            self._handshake(sess)
        elif sess.state == "open":
            if mask & WRITE:
                self._flush(sess)
            if mask & READ:
                self._receive(sess)
        elif sess.state == "closing":
            self._drain_close(sess)
        self._rewatch(sess)

    def _fail_open(self, sess: Session, err: int) -> None:
        self._release(sess)
        self.sessions.pop(sess.n, None)
        self.modem.urc(f"+CCHOPEN: {sess.n},{err}")

    def _connected(self, sess: Session) -> None:
        assert sess.sock is not None and sess.ctx is not None
        if sess.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            return self._fail_open(sess, 14)
        cfg = self.contexts[self.session_ctx[sess.n]]
        name = sess.host if cfg.sni else None
        self.modem.watch(sess.sock, 0, sess.callback)   # the fd moves to the SSL socket
        sess.sock = sess.ctx.wrap_socket(sess.sock, server_hostname=name,
                                         do_handshake_on_connect=False)
        sess.state = "handshake"
        self._handshake(sess)

    def _handshake(self, sess: Session) -> None:
        assert isinstance(sess.sock, ssl.SSLSocket)
        try:
            sess.sock.do_handshake()
        except ssl.SSLWantReadError:
            sess.want = READ
            return
        except ssl.SSLWantWriteError:
            sess.want = WRITE
            return
        except ssl.SSLError as e:   # verification, alerts: the alert goes to the server
            if self.modem.trace:
                self.modem.trace(f"!! session {sess.n}: handshake failed: {e}")
            return self._fail_open(sess, 15)
        except OSError:             # reset during the handshake
            return self._fail_open(sess, 15)
        sess.state = "open"
        self.handshakes += 1
        self.modem.urc(f"+CCHOPEN: {sess.n},0")

    def _open_timeout(self, sess: Session) -> None:
        if self.sessions.get(sess.n) is sess and sess.state in ("connecting", "handshake"):
            self._fail_open(sess, 5)

    def _receive(self, sess: Session) -> None:
        """Take what the TLS socket has (kernel and SSL buffers), up to RX_CAP."""
        was_empty = not sess.rx
        while sess.sock is not None and len(sess.rx) < RX_CAP:
            try:
                data = sess.sock.recv(min(16384, RX_CAP - len(sess.rx)))
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                break
            except OSError:         # an SSL error or a reset: the session is over
                data = b""
            if not data:
                self._announce(sess, was_empty)
                return self._peer_closed(sess)
            sess.rx += data
        self._announce(sess, was_empty)

    def _announce(self, sess: Session, was_empty: bool) -> None:
        if not sess.rx:
            return
        if self.recv_mode == 0:     # automatic: pushed as frames
            while sess.rx:
                chunk = bytes(sess.rx[:MAX_RECV])
                del sess.rx[:MAX_RECV]
                self.modem.inject(f"\r\n+CCHRECV: DATA,{sess.n},{len(chunk)}\r\n".encode()
                                  + chunk)
        elif was_empty and sess.urc_armed:
            sess.urc_armed = False
            self.modem.urc(f"+CCHEVENT: {sess.n},RECV EVENT")

    def _peer_closed(self, sess: Session, abandon: bool = False) -> None:
        self._release(sess, abandon)
        sess.state = "closed"   # the cached data stays readable until AT+CCHCLOSE
        self.modem.urc(f"+CCH_PEER_CLOSED: {sess.n}")

    def _flush(self, sess: Session) -> None:
        while sess.tx and sess.sock is not None:
            try:
                sent = sess.sock.send(sess.tx)
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                break
            except OSError:
                return self._peer_closed(sess)
            del sess.tx[:sent]
            sess.tx_sent += sent
        while sess.unconfirmed and sess.unconfirmed[0] <= sess.tx_sent:
            sess.unconfirmed.popleft()
            if self.report_send:
                self.modem.urc(f"+CCHSEND: {sess.n},0")

    def _begin_close(self, sess: Session) -> None:
        """close_notify and FIN, then up to CLOSE_WAIT_S for the peer's FIN."""
        sess.state = "closing"
        sess.rx.clear()
        sock = sess.sock
        if isinstance(sock, ssl.SSLSocket):
            try:
                sock.unwrap()       # writes our close_notify
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass
            except OSError:
                pass
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                return self._finish_close(sess)
        self._rewatch(sess)
        self.modem.later(CLOSE_WAIT_S, lambda: self._finish_close(sess))

    def _drain_close(self, sess: Session) -> None:
        assert sess.sock is not None
        try:
            data = sess.sock.recv(65536)
        except (ssl.SSLWantReadError, BlockingIOError):
            return
        except OSError:
            data = b""
        if not data:
            self._finish_close(sess)

    def _finish_close(self, sess: Session) -> None:
        if self.sessions.get(sess.n) is not sess:
            return
        self._release(sess)
        del self.sessions[sess.n]
        self.modem.urc(f"+CCHCLOSE: {sess.n},0")

    def _context(self, cfg: Context) -> ssl.SSLContext | int:
        """The client context for ``cfg``, or the <err> to answer (19: no CA)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        if cfg.sslversion in (1, 2, 3):
            version = (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1,
                       ssl.TLSVersion.TLSv1_2)[cfg.sslversion - 1]
            ctx.minimum_version = ctx.maximum_version = version
        if cfg.authmode == 0:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        ca = self.certs.get(cfg.cacert)
        if ca is None:
            return 19
        try:
            if ca.lstrip().startswith(b"-----"):
                ctx.load_verify_locations(cadata=ca.decode("latin-1"))
            else:
                ctx.load_verify_locations(cadata=ca)
        except (ssl.SSLError, ValueError):
            return 15       # not a certificate: every handshake fails
        ctx.check_hostname = bool(cfg.sni)
        if cfg.ignorelocaltime:
            ctx.verify_flags |= NO_CHECK_TIME
        return ctx


def _service(modem: SIM7600) -> SSLService:
    return modem.ssl


def _session_arg(args: list[str]) -> int:
    return int_arg(args, 0, 0, SESSIONS - 1)


# -- certificates ---------------------------------------------------------------------
def _cert_name(name: str) -> str:
    if (not name or len(name) > 64 or "/" in name or "\\" in name
            or not name.lower().endswith((".pem", ".der"))):
        raise ArgError("certificate name: <name>.pem or <name>.der")
    return name


def _ccertdown(modem: SIM7600, args: list[str]) -> None:
    svc = _service(modem)
    try:
        name = _cert_name(args[0] if args else "")
        size = int_arg(args, 1, 1, MAX_CERT)
    except ArgError:
        return modem.reply("ERROR")
    if len(args) != 2 or (name not in svc.certs and len(svc.certs) >= MAX_CERTS):
        return modem.reply("ERROR")

    def done(data: bytes) -> None:
        svc.certs[name] = data
        modem.ok()
    modem.send(b"\r\n> ")
    modem.expect_data(size, done)


def _ccertlist(modem: SIM7600, args: list[str]) -> None:
    modem.reply(*(f'+CCERTLIST: "{name}"' for name in sorted(_service(modem).certs)))
    modem.ok()


def _ccertdele(modem: SIM7600, args: list[str]) -> None:
    if len(args) != 1 or _service(modem).certs.pop(args[0], None) is None:
        return modem.reply("ERROR")
    modem.ok()


# -- configuration --------------------------------------------------------------------
CSSLCFG_RANGES = {"sslversion": (0, 4), "authmode": (0, 1), "enablesni": (0, 1),
                  "ignorelocaltime": (0, 1), "negotiatetime": (10, 300)}


def _csslcfg_set(modem: SIM7600, args: list[str]) -> None:
    svc = _service(modem)
    if len(args) == 1:          # AT+CSSLCFG=<ctx>: the context's settings
        c = svc.contexts[int_arg(args, 0, 0, CONTEXTS - 1)]
        modem.reply(f'+CSSLCFG: {args[0]},{c.sslversion},{c.authmode},{c.ignorelocaltime},'
                    f'{c.negotiatetime},"{c.cacert}","",""')
        return modem.ok()
    if len(args) != 3:
        raise ArgError("expected \"<key>\",<ctx>,<value>")
    key = args[0].lower()
    cfg = svc.contexts[int_arg(args, 1, 0, CONTEXTS - 1)]
    if key == "cacert":
        _cert_name(args[2])
        cfg.cacert = args[2]
    elif key in CSSLCFG_RANGES:
        lo, hi = CSSLCFG_RANGES[key]
        if key == "authmode" and args[2] in ("2", "3"):
            return modem.reply("ERROR")   # client certificates are not emulated
        value = int_arg(args, 2, lo, hi)
        setattr(cfg, "sni" if key == "enablesni" else key, value)
    else:
        return modem.reply("ERROR")       # clientcert, clientkey ...: not emulated
    modem.ok()


def _cchset_set(modem: SIM7600, args: list[str]) -> None:
    svc = _service(modem)
    svc.report_send = int_arg(args, 0, 0, 1)
    svc.recv_mode = int_arg(args, 1, 0, 1) if len(args) > 1 else 0
    modem.ok()


def _cchset_read(modem: SIM7600, args: list[str]) -> None:
    svc = _service(modem)
    modem.reply(f"+CCHSET: {svc.report_send},{svc.recv_mode}")
    modem.ok()


def _cchmode_set(modem: SIM7600, args: list[str]) -> None:
    if int_arg(args, 0, 0, 1) != 0:
        return modem.reply("ERROR")       # transparent mode is not emulated
    modem.ok()


def _cchsslcfg_set(modem: SIM7600, args: list[str]) -> None:
    n = _session_arg(args)
    _service(modem).session_ctx[n] = int_arg(args, 1, 0, CONTEXTS - 1)
    modem.ok()


# -- the service -----------------------------------------------------------------------
def _cchstart(modem: SIM7600, args: list[str]) -> None:
    svc = _service(modem)
    if svc.started:
        return modem.reply("ERROR")
    modem.ok()
    up = modem._stat() in (1, 5) and not modem.pdp_fail
    svc.started = up
    modem.later(START_DELAY_S, lambda: modem.urc(f"+CCHSTART: {0 if up else 9}"))


def _cchstop(modem: SIM7600, args: list[str]) -> None:
    svc = _service(modem)
    if not svc.started:
        return modem.reply("ERROR")
    modem.ok()
    for sess in list(svc.sessions.values()):
        svc._release(sess)
    svc.sessions.clear()
    svc.started = False
    modem.later(START_DELAY_S, lambda: modem.urc("+CCHSTOP: 0"))


def _cchopen_set(modem: SIM7600, args: list[str]) -> None:
    svc = _service(modem)
    n = _session_arg(args)
    port = int_arg(args, 2, 1, 65535)
    kind = int_arg(args, 3, 1, 2) if len(args) > 3 else 2
    if len(args) not in (3, 4, 5) or not args[1]:
        raise ArgError("expected <session>,\"<host>\",<port>[,<client_type>[,<bind_port>]]")
    if not svc.started or n in svc.sessions or kind != 2:
        return modem.reply("ERROR")       # plain TCP (type 1) is AT+CIPOPEN's job here
    modem.ok()
    cfg = svc.contexts[svc.session_ctx[n]]
    ctx = svc._context(cfg)
    if isinstance(ctx, int):
        return modem.urc(f"+CCHOPEN: {n},{ctx}")
    ip = modem._resolve(args[1])
    if ip is None:
        return modem.urc(f"+CCHOPEN: {n},13")
    if not any(ipaddress.ip_address(ip) in net for net in modem.allow):
        return modem.urc(f"+CCHOPEN: {n},14")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    if sock.connect_ex((ip, port)) not in (0, errno.EINPROGRESS):
        sock.close()
        return modem.urc(f"+CCHOPEN: {n},14")
    sess = svc.sessions[n] = Session(n, sock, args[1])
    sess.ctx = ctx
    sess.callback = lambda mask, sess=sess: svc._on_socket(sess, mask)
    svc._rewatch(sess)
    modem.later(min(modem.connect_timeout, cfg.negotiatetime),
                lambda: svc._open_timeout(sess))


def _cchsend_set(modem: SIM7600, args: list[str]) -> None:
    svc = _service(modem)
    try:
        n = _session_arg(args)
        size = int_arg(args, 1, 1, MAX_SEND)
    except ArgError:
        return modem.reply("ERROR")
    sess = svc.sessions.get(n)
    if len(args) != 2 or sess is None or sess.state != "open" or len(sess.tx) > TX_CAP:
        return modem.reply("ERROR")

    def done(data: bytes) -> None:
        if svc.sessions.get(n) is not sess or sess.state != "open":
            return modem.reply("ERROR")   # the session ended while the payload came in
        modem.ok()
        sess.tx += data
        sess.unconfirmed.append(sess.tx_sent + len(sess.tx))
        svc._flush(sess)
        svc._rewatch(sess)
    modem.send(b"\r\n> ")
    modem.expect_data(size, done)


def _cchrecv_set(modem: SIM7600, args: list[str]) -> None:
    svc = _service(modem)
    n = _session_arg(args)
    limit = int_arg(args, 1, 1, MAX_RECV) if len(args) > 1 else RX_CAP
    sess = svc.sessions.get(n)
    if sess is None or svc.recv_mode != 1:
        return modem.reply(f"+CCHRECV: {n},11", "ERROR")   # state error
    modem.ok()
    out = b""
    while sess.rx and limit > 0:
        chunk = bytes(sess.rx[:min(limit, MAX_RECV)])
        del sess.rx[:len(chunk)]
        limit -= len(chunk)
        header = f"\r\n+CCHRECV: DATA,{n},{len(chunk)}\r\n".encode()
        if modem.reads_to_truncate:
            # truncate-read: the header announces every byte, half of them come, then
            # nothing (no end line); the rest is lost, as on a UART that dropped it
            modem.reads_to_truncate -= 1
            modem.send(out + header + chunk[:len(chunk) // 2])
            return
        if svc.garble_reads:
            svc.garble_reads -= 1
            header = f"\r\n+CCHRECV: DATA,{n},x{len(chunk)}\r\n".encode()
        out += header + chunk
    modem.send(out + f"\r\n+CCHRECV: {n},0\r\n".encode())
    if not sess.rx:
        sess.urc_armed = True
        if sess.state == "open":
            svc._receive(sess)    # what the SSL layer buffered while the cache was full
            svc._rewatch(sess)


def _cchrecv_read(modem: SIM7600, args: list[str]) -> None:
    svc = _service(modem)
    lens = ",".join(str(len(svc.sessions[n].rx)) if n in svc.sessions else "0"
                    for n in range(SESSIONS))
    modem.reply(f"+CCHRECV: LEN,{lens}")
    modem.ok()


def _cchclose_set(modem: SIM7600, args: list[str]) -> None:
    svc = _service(modem)
    n = _session_arg(args)
    sess = svc.sessions.get(n)
    if sess is None or sess.state == "closing":
        return modem.reply("ERROR")
    modem.ok()
    if sess.state == "open":
        return svc._begin_close(sess)
    svc._release(sess)        # connecting, handshaking, or closed by the peer
    del svc.sessions[n]
    modem.urc(f"+CCHCLOSE: {n},0")


SSL_COMMANDS = {
    "+CCERTDOWN": Command(set=_ccertdown),
    "+CCERTLIST": Command(run=_ccertlist),
    "+CCERTDELE": Command(set=_ccertdele),
    "+CSSLCFG": Command(set=_csslcfg_set),
    "+CCHSET": Command(set=_cchset_set, read=_cchset_read),
    "+CCHMODE": Command(set=_cchmode_set),
    "+CCHSTART": Command(run=_cchstart),
    "+CCHSTOP": Command(run=_cchstop),
    "+CCHSSLCFG": Command(set=_cchsslcfg_set),
    "+CCHOPEN": Command(set=_cchopen_set),
    "+CCHSEND": Command(set=_cchsend_set),
    "+CCHRECV": Command(set=_cchrecv_set, read=_cchrecv_read),
    "+CCHCLOSE": Command(set=_cchclose_set),
}


def _garble_read(modem: SIM7600, args: list[str]) -> str:
    from .faults import number
    count = int(number(args, 0, "count", default=1, lo=1, hi=1000))
    modem.ssl.garble_reads = count
    return f"the next {count} +CCHRECV: DATA header(s) will be garbled"


SSL_FAULTS = {
    "garble-cchrecv": Fault(_garble_read, "garble-cchrecv [COUNT]",
                            "the next COUNT +CCHRECV: DATA headers carry a length that is "
                            "not a number (x<n>); the payload follows as announced"),
}
