"""One socket API over two kinds of backend: the platform's own TCP stack (Wi-Fi, or
CPython in tests) and a cellular modem driven by AT commands.

The API is MicroPython's ``socket`` (the calls micropython-lib's ``requests`` and
``umqtt.simple`` make) plus a ``state`` attribute and a ``tcp`` lifecycle log::

    import synack.socket as socket
    socket.use(modem)                 # a started synack.modems.sim7600.SIM7600
    addr = socket.getaddrinfo("example.com", 80)[0][-1]
    s = socket.socket()
    s.settimeout(10)
    s.connect(addr)                   # s.state: CLOSED -> SYN_SENT -> ESTABLISHED
    s.write(b"GET / HTTP/1.0\\r\\n\\r\\n")
    print(s.read())
    s.close()
    print(s.tcp.format_history())

Non-blocking connect, as MicroPython's own sockets do it (asyncio's way to connect
without stopping the loop)::

    s.setblocking(False)
    s.connect_timeout_ms = 5000       # the limit of a non-blocking connect
    try:
        s.connect(addr)               # starts the handshake: state SYN_SENT
    except OSError as e:
        if e.args[0] != errno.EINPROGRESS:
            raise
    while not s.connect_done():       # False while pending; raises ECONNREFUSED,
        await asyncio.sleep_ms(10)    # ETIMEDOUT ... as a blocking connect would

A backend (synack.backend.Backend: the native stack, a modem) splits the handshake in
``connect_start`` (returns its handle), ``connect_poll`` (wait up to a limit; True once
established, raises on failure) and ``connect_abort`` (give up: the ETIMEDOUT to raise).
The blocking connect is the same three calls, waiting in ``connect_poll``. What a
backend must do first that may take seconds (a modem reopening its bearer) it hands a
non-blocking connect as ``connect_prepare``'s stepper, which ``connect_done`` advances
before the handshake starts: the event loop never waits for it.

Errors are ``OSError`` with the errno a native socket gives (ETIMEDOUT, ECONNREFUSED,
ECONNRESET, ENOTCONN, EHOSTUNREACH), and nothing else: a backend's own failure that
escapes it (an AT ``CommandError``/``CommandTimeout``, any ``ModemError``) becomes an
OSError here (EIO, ETIMEDOUT, EHOSTUNREACH), its text kept in the message. Small reads
are served from a receive buffer so that byte-at-a-time readers (MQTT clients) do not
cost one modem round trip per byte.

A socket is a MicroPython stream: on MicroPython the class derives from ``io.IOBase``
and answers ``readinto``, ``write(buf[, off[, n]])`` and ``ioctl`` (poll readiness,
close), so the port's own ``ssl`` (``SSLContext.wrap_socket``), ``select.poll`` and
asyncio's ``StreamReader``/``StreamWriter`` take it like one of the port's sockets. On
CPython it is a plain class (CPython's io.IOBase is another protocol).
"""

import errno
import sys
import time

from micropython import const

from . import stream
from . import tcp
from .connect import Connect

try:
    from typing import TYPE_CHECKING  # absent on MicroPython: only type checkers see it
except ImportError:
    TYPE_CHECKING = False
if TYPE_CHECKING: from typing import Any  # noqa: F401 (used in type comments)

AF_INET = const(2)
AF_INET6 = const(10)
SOCK_STREAM = const(1)
SOCK_DGRAM = const(2)
IPPROTO_TCP = const(6)
SOL_SOCKET = const(1)
SO_REUSEADDR = const(4)
TCP_NODELAY = const(1)

_RXBUF = const(512)

# MicroPython's stream ioctl requests and poll flags (py/stream.h; the same values as
# select.POLLIN ... on every port and on Linux).
_MP_STREAM_POLL = const(3)
_MP_STREAM_CLOSE = const(4)
POLLIN = const(1)
POLLOUT = const(4)
POLLERR = const(8)
POLLHUP = const(16)
_POLLNVAL = const(32)

# The base class: io.IOBase on MicroPython (the VM then calls readinto/write/ioctl, so
# ssl, select and asyncio take the socket); on CPython a plain class (its io.IOBase is
# another protocol).
_Stream = object  # type: Any
if sys.implementation.name == "micropython":
    import io
    _Stream = io.IOBase

_backend = None


def use(backend):
    """Make ``backend`` (a started modem, or None for the native stack) the default
    for sockets created from now on."""
    global _backend
    _backend = backend


def current_backend():
    global _backend
    if _backend is None:
        from .native import NativeBackend  # lazy: the modem-only build never loads it
        _backend = NativeBackend()
    return _backend


def _modem_error():
    """What the ``except`` clauses here catch besides OSError: a modem's own failures
    (synack.at.errors.ModemError) once a modem driver has loaded that module, else
    nothing (an empty tuple): a program on the native stack never loads the AT layer.
    An ``except`` expression is evaluated only when an exception is being matched."""
    errors = sys.modules.get("synack.at.errors")
    return () if errors is None else errors.ModemError


def getaddrinfo(host, port, af=0, type=0, proto=0, flags=0):
    try:
        return current_backend().getaddrinfo(host, port)
    except _modem_error() as e:
        raise as_oserror(e, "getaddrinfo(%r)" % (host,))


def as_oserror(e, what):
    """The OSError for a backend failure that is not one (the socket API's contract):
    an AT command's timeout is ETIMEDOUT, its ERROR/+CME ERROR EIO, another modem
    failure the errno it names (``os_errno``: EHOSTUNREACH for a failed bring-up) or
    EIO. The AT detail stays in the message."""
    from .at.errors import CommandError, CommandTimeout  # loaded: ``e`` is a ModemError
    if isinstance(e, CommandTimeout):
        code = errno.ETIMEDOUT
    elif isinstance(e, CommandError):
        code = errno.EIO
    else:
        code = getattr(e, "os_errno", errno.EIO)
    return OSError(code, "%s: %s" % (what, e))


def _always():
    # a synack socket raises EAGAIN only when it is non-blocking
    return True


def _closed():
    return OSError(errno.EBADF, "socket is closed")


class socket(_Stream):
    """A TCP client socket. ``state`` is the TCP state name; ``tcp`` its lifecycle."""

    def __init__(self, af=AF_INET, type=SOCK_STREAM, proto=0, backend=None):
        if type != SOCK_STREAM:
            raise OSError(errno.EOPNOTSUPP, "only SOCK_STREAM (TCP) sockets are supported")
        self._backend = backend or current_backend()  # type: Any
        self.tcp = tcp.Connection()
        self._handle = None  # type: Any  # the backend's handle (link number, native socket)
        self._timeout_ms = None   # None: blocking; 0: non-blocking
        self._rbuf = None         # receive buffer, allocated on first small read
        self._rpos = 0
        self._rend = 0
        self._closed = False
        self._keepalive = None    # a keepalive.Keepalive once keepalive() was called
        self.keepalive_mechanism = None  # type: str | None
        # The longest a connect may take when the socket has no timeout of its own
        # (non-blocking, or blocking without settimeout); None: the backend's limit.
        self.connect_timeout_ms = None  # type: int | None
        self._peer = None  # type: Any  # (host, port) of the last connect()
        self._attempt = None  # type: Any  # the connect.Connect in progress
        self._error = None  # type: Any  # a non-blocking connect's failure, seen by poll

    @property
    def state(self):
        return self.tcp.state_name

    # -- what a backend reads (synack.backend) -----------------------------------------
    @property
    def handle(self):
        """The backend's handle of this connection (``connect_start``'s), or None."""
        return self._handle

    @property
    def peer(self):
        """``(host, port)`` of the last connect(), or None."""
        return self._peer

    @property
    def keepalive_settings(self):
        """The keepalive.Keepalive asked for with keepalive(), or None."""
        return self._keepalive

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- options -----------------------------------------------------------------
    def settimeout(self, seconds):
        self._timeout_ms = None if seconds is None else int(seconds * 1000)

    def setblocking(self, flag):
        self._timeout_ms = None if flag else 0

    def setsockopt(self, level, option, value):
        self._backend.setsockopt(self, level, option, value)

    def keepalive(self, *args, **kw):
        """``keepalive(idle=7200, interval=75, count=10)`` (the arguments of
        ``synack.keepalive.Keepalive``): detect a dead peer: probe after ``idle`` s of
        silence, every ``interval`` s, give up after ``count`` probes (then reads fail
        with ETIMEDOUT, state CLOSED). Call before connect(). Returns the mechanism:
        "tcp", "modem" or "probe" (the backend cannot: run a synack.heartbeat with these
        timings instead)."""
        from . import keepalive as _ka  # lazy: a socket never asked for it does not load it
        if self._handle is not None:
            raise OSError(errno.EALREADY, "set keepalive before connect()")
        ka = _ka.Keepalive(*args, **kw)
        self._keepalive = ka
        self.keepalive_mechanism = self._backend.keepalive_mechanism(ka)
        return self.keepalive_mechanism

    def makefile(self, mode="rb", buffering=0):
        return self  # MicroPython sockets are streams already

    # -- connect / close ---------------------------------------------------------
    def connect(self, address):
        """Connect to ``address``. Blocking: returns once established, or raises.
        Non-blocking (``setblocking(False)``/``settimeout(0)``): starts the handshake
        and raises OSError(EINPROGRESS); ``connect_done()`` then tells how it went."""
        try:
            self._connect(address)
        except _modem_error() as e:
            raise as_oserror(e, "connect")

    def _connect(self, address):
        if self._closed:
            raise _closed()
        if self.tcp.state != tcp.CLOSED or self._handle is not None:
            raise OSError(errno.EALREADY, "socket already used (state %s)" % self.state)
        self._error = None
        if isinstance(address, (bytes, bytearray)):  # a raw sockaddr (MicroPython unix port)
            host, port = address, 0
        else:
            host, port = address[0], address[1]
        self._peer = (host, port)
        backend = self._backend
        limit = self._timeout_ms
        if not limit:  # no timeout of its own (None), or non-blocking (0)
            limit = self.connect_timeout_ms
            if limit is None:
                limit = backend.connect_limit_ms
        nonblocking = self._timeout_ms == 0
        self._attempt = Connect(self, backend, limit)
        if self._attempted(self._attempt.begin, nonblocking):
            return
        if nonblocking:
            raise OSError(errno.EINPROGRESS, "connect to %s:%d in progress" % (host, port))
        while not self._connect_step(True):
            pass

    def connect_done(self):
        """After a non-blocking ``connect()``: False while the handshake is pending,
        True once established; raises the OSError a blocking connect would have raised
        (ECONNREFUSED, ETIMEDOUT ...: the state is CLOSED then). A pending connect
        times out after ``connect_timeout_ms`` (or the backend's own limit)."""
        if self._closed:
            raise _closed()
        if self._handle is None and self._attempt is None:
            self._raise_error()
            raise OSError(errno.ENOTCONN, "no connect in progress (state %s)" % self.state)
        if self._attempt is not None:
            try:
                return self._connect_step(False)
            except _modem_error() as e:
                raise as_oserror(e, "connect")
        return True  # established (and maybe closed by the peer since)

    def _raise_error(self):
        """Raise (once) the failure of a non-blocking connect that poll() found."""
        e = self._error
        if e is not None:
            self._error = None
            raise e

    def _connect_step(self, block):
        return self._attempted(self._attempt.step, block)

    def _attempted(self, call, arg):
        """``call(arg)``: the connect in progress begun or carried on (connect.Connect):
        True once established, False while pending, its failure raised. Either way, an
        attempt that ended is dropped."""
        try:
            done = call(arg)
        except BaseException:
            self._attempt = None
            raise
        if done:
            self._attempt = None
        return done

    def close(self):
        if self._closed:
            return
        self._closed = True
        handle = self._handle
        self._connecting_cleanup()
        if handle is not None:
            try:
                self._backend.close(self, self._timeout_ms)
            except _modem_error() as e:
                raise as_oserror(e, "close")
            finally:
                self._handle = None

    def _connecting_cleanup(self):
        if self._attempt is not None:
            self._attempt.cancel()
            self._attempt = None
        self._rbuf = None
        self._rpos = self._rend = 0

    # -- sending -----------------------------------------------------------------
    def _check_open(self):
        if self._closed:
            raise _closed()
        if self._handle is None and self._attempt is None:
            self._raise_error()
            raise OSError(errno.ENOTCONN, "socket is not connected")
        if self._attempt is not None and not self._connect_step(False):
            raise OSError(errno.EAGAIN, "connect still in progress")

    def _send(self, mv):
        try:
            self._check_open()
            return self._backend.send(self, mv, self._timeout_ms)
        except _modem_error() as e:
            raise as_oserror(e, "send")

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        return self._send(memoryview(data))

    def sendall(self, data):
        if isinstance(data, str):
            data = data.encode()
        mv = memoryview(data)
        while len(mv):
            mv = mv[self._send(mv):]

    def write(self, buf, off=None, n=None):
        """Stream write, as MicroPython's: ``write(buf)``, ``write(buf, n)`` (the first
        ``n`` bytes), ``write(buf, off, n)``; ``buf`` may be a str. Blocking: writes all
        and returns the count. Non-blocking: what could be sent now (None if nothing)."""
        mv = stream.view(buf, off, n)
        total = len(mv)
        done = 0
        while done < total:
            try:
                done += self._send(mv[done:])
            except OSError as e:
                if e.args[0] == errno.EAGAIN and self._timeout_ms == 0:
                    return done or None
                raise
        return done

    # -- receiving ---------------------------------------------------------------
    def recv_into(self, buf, nbytes=0):
        """Read what is available (at least 1 byte, or 0 at end of stream)."""
        try:
            return self._recv_into(buf, nbytes)
        except _modem_error() as e:
            raise as_oserror(e, "recv")

    def _recv_into(self, buf, nbytes=0):
        self._check_open()
        mv = memoryview(buf)
        if nbytes:
            mv = mv[:nbytes]
        if not len(mv):
            return 0
        have = self._rend - self._rpos
        rbuf = self._rbuf
        if have and rbuf is not None:
            n = min(have, len(mv))
            mv[:n] = memoryview(rbuf)[self._rpos:self._rpos + n]
            self._rpos += n
            return n
        if len(mv) >= _RXBUF:  # big reads go straight into the caller's buffer
            return self._backend.recv_into(self, mv, self._timeout_ms)
        if rbuf is None:
            rbuf = self._rbuf = bytearray(_RXBUF)
        got = self._backend.recv_into(self, memoryview(rbuf), self._timeout_ms)
        self._rpos = 0
        self._rend = got
        return self._recv_into(mv) if got else 0

    def recv(self, bufsize):
        buf = bytearray(bufsize)
        n = self.recv_into(buf)
        return bytes(buf) if n == bufsize else bytes(buf[:n])

    def readinto(self, buf, nbytes=None):
        """Stream read: fill ``buf`` (or ``nbytes`` of it) unless the stream ends first.
        Non-blocking: what is available now, None if nothing (MicroPython semantics)."""
        return stream.readinto(self.recv_into, buf, nbytes, _always)

    def read(self, size=-1):
        """``read(n)``: n bytes unless the stream ends first; ``read()``: to the end.
        Non-blocking with nothing available: None."""
        return stream.read(self.readinto, size)

    def readline(self, limit=-1):
        """A line with its ``\\n`` (or what came before the end of the stream).
        Non-blocking: the part available now, None if nothing."""
        return stream.readline(self.readinto, limit)

    # -- the stream protocol -------------------------------------------------------
    def ioctl(self, request, arg):
        """MicroPython's stream ioctl: MP_STREAM_POLL (3) answers which of the poll
        flags in ``arg`` hold now (POLLIN 1, POLLOUT 4; POLLERR 8 and POLLHUP 16
        always), without blocking; MP_STREAM_CLOSE (4) closes. Others: -EINVAL."""
        if request == _MP_STREAM_POLL:
            try:
                return self.poll_flags(arg)
            except _modem_error():
                return POLLERR | POLLHUP
        if request == _MP_STREAM_CLOSE:
            self.close()
            return 0
        return -errno.EINVAL

    def poll_flags(self, flags):
        """Which of ``flags`` (POLLIN, POLLOUT) hold now, plus POLLERR/POLLHUP."""
        if self._closed:
            return _POLLNVAL
        if self._handle is None and self._attempt is None:
            return POLLERR | POLLHUP if self._error is not None else POLLHUP
        if self._attempt is not None:
            try:
                if not self._connect_step(False):
                    return 0
            except OSError as e:  # kept for the next call, which raises it
                self._error = e
                return POLLERR | POLLHUP | (flags & (POLLIN | POLLOUT))
        ready = 0
        if flags & POLLIN and self._rend > self._rpos:
            ready = POLLIN
            flags &= ~POLLIN
        return ready | self._backend.poll_flags(self, flags)
