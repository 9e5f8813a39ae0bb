"""Virtual SIM7600 SSL service: the ``AT+CCH*``, ``AT+CSSLCFG`` and ``AT+CCERT*``
commands of SIMCom's "SIM7500_SIM7600 Series SSL AT Command Manual", backed by a real
TLS client (Python's ``ssl``) toward servers on this machine. This module holds the
sessions (``SSLService``) and ``SSLDialect``, the dialect layer that owns them;
sim7600_ssl_commands.py the AT commands.

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
import socket
import ssl
from dataclasses import dataclass

from ...control import Fault, number
from .base import Dialect

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

    def __init__(self, modem: Dialect):
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


class SSLDialect(Dialect):
    """A dialect with the SSL service (``self.ssl``, the SIM7600's): the service follows
    the modem's power, bearer, status and faults."""

    def __init__(self, **options):
        self.ssl = SSLService(self)
        super().__init__(**options)

    def reset_state(self) -> None:
        super().reset_state()
        self.ssl.reset(abandon=True)

    def bearer_lost(self) -> None:
        super().bearer_lost()
        self.ssl.network_lost()

    def status(self) -> dict:
        return {**super().status(), "ssl_sessions": self.ssl.status()}

    def pending_faults(self) -> dict[str, int]:
        pending = super().pending_faults()
        if self.ssl.garble_reads:
            pending["garble-cchrecv"] = self.ssl.garble_reads
        return pending

    def heal(self) -> None:
        super().heal()
        self.ssl.garble_reads = 0

    def close(self) -> None:
        super().close()
        self.ssl.close()


def _garble_read(modem: SSLDialect, args: list[str]) -> str:
    count = int(number(args, 0, "count", default=1, lo=1, hi=1000))
    modem.ssl.garble_reads = count
    return f"the next {count} +CCHRECV: DATA header(s) will be garbled"


SSLDialect.extra_faults = {
    "garble-cchrecv": Fault(_garble_read, "garble-cchrecv [COUNT]",
                            "the next COUNT +CCHRECV: DATA headers carry a length that is "
                            "not a number (x<n>); the payload follows as announced"),
}
