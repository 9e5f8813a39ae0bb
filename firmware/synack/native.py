"""Socket backend over the platform's own TCP/IP stack (lwIP over Wi-Fi on ESP32, the
OS on the unix port and on CPython).

Connecting is always non-blocking underneath: ``connect()`` on a non-blocking socket
starts the handshake (EINPROGRESS), ``select.poll`` with POLLOUT tells when it is over,
and SO_ERROR (CPython) or a second ``connect()`` (MicroPython, which has no getsockopt)
tells how. A blocking synack connect waits in that poll; a non-blocking one looks with
``poll(0)``, so asyncio code can await in between.

The lifecycle the native stack lets us observe: the handshake completing (the socket
turns writable), the peer's FIN (recv() returns b''), our FIN (shutdown, where the port has
it) and the peer's FIN after it (the linger read in close()).
"""

import errno
import sys as _sys
import select
import time

from micropython import const

from . import tcp
from .backend import Backend

try:
    import usocket as _sys_socket  # MicroPython, even when synack.socket is installed as socket
except ImportError:
    import socket as _sys_socket

_LINGER_MS = const(2000)  # how long close() waits for the peer's FIN after ours
_SHUT_WR = const(1)
# What a non-blocking connect() raises while the handshake runs: EINPROGRESS on CPython,
# the unix port and lwIP; EALREADY and EAGAIN are taken the same way, to be safe.
_IN_PROGRESS = (errno.EINPROGRESS, errno.EALREADY, errno.EAGAIN)
# How a connect fails (what a second connect() may tell after poll said it failed).
_CONNECT_ERRORS = (errno.ECONNREFUSED, errno.ECONNRESET, errno.ETIMEDOUT,
                   errno.EHOSTUNREACH, errno.ECONNABORTED)


def _code(e):
    # CPython's socket.timeout has no errno; MicroPython puts the errno in args[0].
    code = e.errno if getattr(e, "errno", None) else (e.args[0] if e.args else None)
    return code if isinstance(code, int) else errno.ETIMEDOUT


def _stack_gave_up(e, timeout_ms):
    """Whether an ETIMEDOUT is the stack declaring the connection dead (keepalive or
    retransmissions exhausted) rather than our own read timeout expiring. A blocking
    read has no timeout of ours; otherwise it depends on how the port reports ours."""
    if timeout_ms is None:
        return True
    return getattr(e, "errno", None) == errno.ETIMEDOUT and _OWN_TIMEOUT_ERRNO != errno.ETIMEDOUT


# How our own read timeout shows: CPython raises socket.timeout (no errno), the unix
# port EAGAIN, ESP32's lwIP ETIMEDOUT - the errno the stack also uses when it gives up.
if hasattr(_sys_socket, "timeout"):
    _OWN_TIMEOUT_ERRNO = None
elif _sys.platform == "linux":
    _OWN_TIMEOUT_ERRNO = errno.EAGAIN
else:
    _OWN_TIMEOUT_ERRNO = errno.ETIMEDOUT


class _Conn:
    """The handle of one connection: the platform socket, the poller of a pending
    connect and its address, the readiness poller (kept: made once per connection)."""

    __slots__ = ("s", "connecting", "poller")

    def __init__(self, s):
        self.s = s
        self.connecting = None  # type: tuple | None  # (poller, addr) while pending
        self.poller = None


class NativeBackend(Backend):
    name = "native"

    def __init__(self, module=None):
        self.mod = module or _sys_socket

    def getaddrinfo(self, host, port):
        out = []
        for ai in self.mod.getaddrinfo(host, port):
            if ai[0] == 2 and ai[1] in (0, 1):  # AF_INET, stream (or unspecified)
                out.append((2, 1, 6, "", ai[-1]))
        if not out:
            raise OSError(errno.EHOSTUNREACH, "no IPv4 address for %s" % host)
        return out

    def keepalive_mechanism(self, ka):
        from . import keepalive as _ka  # lazy: loaded only by a socket that asks for it
        # ESP32's lwIP socket module has no SO_KEEPALIVE/TCP_KEEP* options to set
        names = ("SO_KEEPALIVE", "TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT")
        if all(hasattr(self.mod, n) for n in names):
            return _ka.TCP
        # the unix port names SO_KEEPALIVE only, and passes Linux's numbers through
        if hasattr(self.mod, "SO_KEEPALIVE") and _sys.platform == "linux":
            return _ka.TCP
        return _ka.PROBE

    def _apply_keepalive(self, s, ka):
        linux = {"IPPROTO_TCP": 6, "TCP_KEEPIDLE": 4, "TCP_KEEPINTVL": 5, "TCP_KEEPCNT": 6}
        opt = lambda name: getattr(self.mod, name, None) or linux[name]  # noqa: E731
        s.setsockopt(opt("SOL_SOCKET"), opt("SO_KEEPALIVE"), 1)
        s.setsockopt(opt("IPPROTO_TCP"), opt("TCP_KEEPIDLE"), ka.idle)
        s.setsockopt(opt("IPPROTO_TCP"), opt("TCP_KEEPINTVL"), ka.interval)
        s.setsockopt(opt("IPPROTO_TCP"), opt("TCP_KEEPCNT"), ka.count)

    def _timeout(self, s, timeout_ms):
        s.settimeout(None if timeout_ms is None else timeout_ms / 1000)

    # -- connect: start, poll, abort (synack.socket drives them) ---------------------
    def connect_start(self, sock, host, port, limit_ms):
        """Start the handshake on a non-blocking socket: (handle, completed at once)."""
        s = self.mod.socket(2, 1)
        conn = _Conn(s)
        if sock.keepalive_mechanism is not None:  # keepalive() was called: its module is in
            from . import keepalive as _ka
            if sock.keepalive_mechanism == _ka.TCP:
                self._apply_keepalive(s, sock.keepalive_settings)
        s.setblocking(False)
        sock.tcp.fire(tcp.CONNECT)
        addr = None
        try:
            addr = (bytes(host) if isinstance(host, (bytes, bytearray))
                    else self.getaddrinfo(host, port)[0][-1])
            s.connect(addr)
        except OSError as e:
            code = _code(e)
            if addr is None or code not in _IN_PROGRESS:
                raise self._connect_failed(sock, conn, code, e)
            poller = select.poll()
            poller.register(s, select.POLLOUT)
            conn.connecting = (poller, addr)
            return conn, False
        sock.tcp.fire(tcp.CONNECTED)
        return conn, True

    def connect_poll(self, sock, wait_ms):
        """True once the handshake completed; False if still pending after ``wait_ms``
        (None: until the stack decides); raises its failure."""
        conn = sock.handle
        poller, addr = conn.connecting
        events = poller.poll(-1 if wait_ms is None else wait_ms)
        if not events:
            return False
        code, e = self._connect_error(conn.s, events[0][1], addr)
        if code:
            raise self._connect_failed(sock, conn, code, e)
        conn.connecting = None
        sock.tcp.fire(tcp.CONNECTED)
        return True

    def connect_abort(self, sock, limit_ms):
        """The connect did not complete within ``limit_ms``: drop it; the error to raise."""
        return self._connect_failed(sock, sock.handle, errno.ETIMEDOUT,
                                    "not established within %d ms" % limit_ms)

    def _connect_error(self, s, mask, addr):
        """(errno, reason) of a finished connect; errno 0 if it succeeded."""
        getsockopt = getattr(s, "getsockopt", None)
        so_error = getattr(self.mod, "SO_ERROR", None)
        if getsockopt is not None and so_error is not None:  # CPython
            code = getsockopt(self.mod.SOL_SOCKET, so_error)
            return code, errno.errorcode.get(code, code)
        if not mask & (select.POLLERR | select.POLLHUP):
            return 0, None
        # MicroPython's sockets have no getsockopt: a second connect() raises the error
        # (the unix port does); where it says nothing useful, call it refused.
        try:
            s.connect(addr)
        except OSError as e:
            if _code(e) in _CONNECT_ERRORS:
                return _code(e), e
        return errno.ECONNREFUSED, "connection failed (poll flags 0x%x)" % mask

    def _connect_failed(self, sock, conn, code, why):
        """Close the half-made connection, record the TCP event; the OSError to raise."""
        conn.connecting = None
        conn.s.close()
        sock.tcp.fire(tcp.REFUSED if code == errno.ECONNREFUSED else tcp.TIMEOUT
                      if code == errno.ETIMEDOUT else tcp.RESET)
        host, port = sock.peer
        return OSError(code, "connect to %s:%d failed: %s" % (host, port, why))

    def send(self, sock, data, timeout_ms):
        s = sock.handle.s
        self._timeout(s, timeout_ms)
        try:
            return s.send(data)
        except OSError as e:
            raise self._failed(sock, e, "send", timeout_ms)

    def recv_into(self, sock, buf, timeout_ms):
        s = sock.handle.s
        self._timeout(s, timeout_ms)
        try:
            if hasattr(s, "recv_into"):
                n = s.recv_into(buf)
            else:  # MicroPython's socket has recv() and readinto() but not recv_into()
                data = s.recv(len(buf))
                n = len(data)
                buf[:n] = data
        except OSError as e:
            raise self._failed(sock, e, "recv", timeout_ms)
        if n == 0 and sock.tcp.accepts(tcp.PEER_FIN):
            sock.tcp.fire(tcp.PEER_FIN)
        return n

    def poll_flags(self, sock, flags):
        """Readiness of the underlying socket (poll with timeout 0) for select.poll
        and asyncio over a synack socket; one poller per synack socket, kept."""
        conn = sock.handle
        s = conn.s
        p = conn.poller
        if p is None:
            p = conn.poller = select.poll()
            p.register(s, flags)
        else:
            p.modify(s, flags)
        events = p.poll(0)
        return events[0][1] if events else 0

    def _failed(self, sock, e, what, timeout_ms=None):
        code = _code(e)
        if code == errno.EAGAIN and timeout_ms:  # the unix port's way to say "timed out"
            code = errno.ETIMEDOUT
        if code in (errno.ECONNRESET, errno.ENOTCONN, errno.ECONNABORTED):
            if sock.tcp.accepts(tcp.RESET):
                sock.tcp.fire(tcp.RESET)
        elif code == errno.ETIMEDOUT and _stack_gave_up(e, timeout_ms):
            if sock.tcp.accepts(tcp.TIMEOUT):
                sock.tcp.fire(tcp.TIMEOUT)
            return OSError(code, "%s failed: the peer stopped answering (keepalive or "
                           "retransmission timeout)" % what)
        return OSError(code, "%s failed: %s" % (what, e))

    def close(self, sock, timeout_ms=None):
        s = sock.handle.s
        conn = sock.tcp
        if conn.state == tcp.ESTABLISHED and hasattr(s, "shutdown"):
            conn.fire(tcp.CLOSE)
            self._linger(s, conn)
        elif conn.accepts(tcp.CLOSE):
            conn.fire(tcp.CLOSE)
        s.close()
        if conn.state == tcp.LAST_ACK:
            conn.fire(tcp.FIN_ACKED)
        else:
            conn.complete_active_close()

    def _linger(self, s, conn):
        # Send our FIN, then read (and drop) until the peer's FIN so the four-way close
        # really happens before we report it; a silent peer gets _LINGER_MS.
        deadline = time.ticks_add(time.ticks_ms(), _LINGER_MS)
        try:
            s.shutdown(_SHUT_WR)
            s.settimeout(_LINGER_MS / 1000)
            while s.recv(256):
                if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                    raise OSError(errno.ETIMEDOUT, "peer keeps sending after our FIN")
        except OSError:
            conn.fire(tcp.TIMEOUT)
