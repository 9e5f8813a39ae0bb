"""What the blocking client (``client.Client``) and the asyncio client
(``aclient.AsyncClient``) share: options and counters, the connection pool, one
request's way through redirects and the stale-connection retry, and every decision
that needs no waiting (is a pooled connection alive, may a failure be retried, where
does a redirect lead, may the connection be reused).

The two clients differ only in how they wait for the socket: ``Client`` blocks within
its timeouts, ``AsyncClient`` awaits. Everything here (and ``body.BaseResponse``) is
called by both, so the two cannot drift apart in what they send, keep or retry.
"""

import errno
import time

from micropython import const

try:
    from typing import TYPE_CHECKING  # absent on MicroPython: only type checkers see it
except ImportError:
    TYPE_CHECKING = False
if TYPE_CHECKING: from typing import Any  # noqa: F401 (used in type comments)

from .. import socket
from .errors import ConnectionClosed, HTTPError, ProtocolError, TooManyRedirects
from .request import (CRLF, HTTP10, HTTP11, IDEMPOTENT, LAST_CHUNK, build_head,
                      chunk_header, header_pairs, is_buffer, join_url, split_url,
                      to_bytes)
from .response import Reader

_REDIRECTS = (301, 302, 303, 307, 308)
# Errors that mean "the peer had closed this connection", when no response byte came.
# EPIPE is 32 on Linux and lwIP alike, but ESP32's errno module does not name it.
_STALE = (errno.ECONNRESET, 32, errno.ENOTCONN, errno.ECONNABORTED)
_DRAIN_CHUNKS = const(16)  # a redirect body up to 16 chunks is read to keep the connection
EMPTY = memoryview(b"")
now = time.ticks_ms


def close_quietly(sock):
    if sock is not None:
        try:
            sock.close()
        except OSError:
            pass  # the connection is being thrown away: its close cannot fail the caller


def seconds(ms):
    return None if ms is None else ms / 1000


def is_stale(e):
    return isinstance(e, ConnectionClosed) or (isinstance(e, OSError) and e.args[0] in _STALE)


def tag(e, url):
    """Name the request's URL in an HTTPError that does not name one yet."""
    if isinstance(e, HTTPError) and e.url is None:
        e.url = url


def pieces(head_bytes, body, chunk):
    """The writes that send a request: the head, then the body in its framing. A body
    of at most ``chunk`` bytes goes out with the head: one packet, one modem command."""
    if body is None:
        yield head_bytes
    elif is_buffer(body):
        if len(body) <= chunk:
            yield head_bytes + bytes(body)
        else:
            yield head_bytes
            yield body
    else:
        yield head_bytes
        for piece in body:
            if len(piece):
                yield chunk_header(len(piece))
                yield piece
                yield CRLF
        yield LAST_CHUNK


class Rx:
    """What one response in flight needs: a ``chunk``-byte receive buffer and the
    reader that parses it (its own ``max_line`` buffer included)."""

    def __init__(self, client):
        self.buf = bytearray(client.chunk)
        self.mv = memoryview(self.buf)
        self.reader = Reader(client.max_header_bytes, client.max_headers, client.max_line,
                             client.max_body)

    def took(self, n):
        """Hand the ``n`` bytes a socket read put into the buffer to the reader (0: the
        peer closed the connection)."""
        if n:
            self.reader.feed(self.buf, n)
        else:
            self.reader.feed_eof()


class Plan:
    """One request() call on its way through redirects and the stale-connection retry:
    what to send next (``_hop`` fills in the target and the head) and the time left."""

    def __init__(self, client, method, url, body, headers, read_timeout_ms, max_redirects):
        self.method = to_bytes(method).upper()
        self.body = body.encode() if isinstance(body, str) else body
        self.url = url
        self.deadline = None
        if client.total_timeout_ms is not None:
            self.deadline = time.ticks_add(now(), client.total_timeout_ms)
        self.read_ms = client.read_timeout_ms if read_timeout_ms is None else read_timeout_ms
        self.limit = client.max_redirects if max_redirects is None else max_redirects
        self.left = self.limit
        self.extra = header_pairs(client.headers) + header_pairs(headers)
        self.tls = False
        self.host = ""
        self.port = 0
        self.target = b""
        self.head_bytes = b""
        self.reusable = False
        self.replayable = False


class BaseClient:
    """Options, counters and the pool of the HTTP/1.x clients, with one keep-alive
    connection per (scheme, host, port) kept idle for reuse (up to ``max_pool`` in all).

    Timeouts are in milliseconds (None: none): ``connect_timeout_ms`` for the TCP
    handshake, ``read_timeout_ms`` for each socket operation, ``total_timeout_ms`` for a
    whole request including redirects, retries and reading the body.

    https (``synack.tls``): ``cadata`` (the CA as DER or PEM bytes) or ``cafile`` (a
    file holding it) to verify servers with; ``cert``/``key`` a client certificate;
    ``tls_verify=False`` trusts any server (tests only). The TLS handshake follows the
    TCP one, within ``connect_timeout_ms`` per read; a kept-alive https connection
    costs no new handshake.

    ``tls`` chooses who does TLS: None (or "software") this board (synack.tls);
    "modem" the modem's own SSL stack (``backend.tls_offload()``, e.g. a SIM7600's
    ``AT+CCH*``: the CA from ``cadata``/``cafile`` is downloaded to the modem, which
    also checks the dates with its own clock; no client certificate); or a secure
    socket backend made by the caller (``modem.tls_offload(...)``), used as it is.

    Counters: ``connections`` (TCP connections opened), ``handshakes`` (TLS handshakes
    done), ``requests`` (sent, including retries and redirects), ``reused`` (sent on a
    pooled connection), ``retries``, ``redirects``.

    ``chunk`` (512) is the receive buffer, one socket read: ~45 ms of a 115200-baud
    UART, one AT read command of a modem (they take up to 1500), a poll's whole reply
    in one read. A bigger one only saves read calls on big bodies (``chunk=1500``)."""

    is_async = False  # AsyncClient: its requests are coroutines (awaited)

    def __init__(self, chunk=512, connect_timeout_ms=10000, read_timeout_ms=10000,
                 total_timeout_ms=None, max_redirects=5, max_header_bytes=4096,
                 max_headers=32, max_line=1024, max_body=1048576, http10=False,
                 keep_alive=None, headers=None, backend=None, max_pool=2, max_idle_ms=None,
                 cadata=None, cafile=None, cert=None, key=None, tls_verify=True,
                 tls=None):
        self.chunk = chunk
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers
        self.max_line = max_line
        self.max_body = max_body
        self.connect_timeout_ms = connect_timeout_ms
        self.read_timeout_ms = read_timeout_ms
        self.total_timeout_ms = total_timeout_ms
        self.max_redirects = max_redirects
        self.version = HTTP10 if http10 else HTTP11
        # HTTP/1.0 closes after each response unless both sides ask for keep-alive.
        self.keep_alive = (not http10) if keep_alive is None else keep_alive
        self.headers = headers
        self.backend = backend
        self.max_pool = max_pool
        self.max_idle_ms = max_idle_ms
        # TLS options; the context is made at the first https connection (never logged)
        self._tls_args = (cadata, cafile, cert, key, tls_verify)
        self._tls_context = None  # type: Any
        if not (tls is None or tls == "software" or tls == "modem"
                or hasattr(tls, "connect_start")):
            raise ValueError("tls=%r: None, 'software', 'modem' or a socket backend" % (tls,))
        if tls == "modem" and (cert is not None or key is not None):
            raise ValueError("tls='modem' does not take a client certificate (cert=, key=)")
        self.tls = tls
        self._offload = None  # type: Any  # the modem's TLS backend (tls="modem")
        self._pool = []  # type: list  # [(tls, host, port), sock, idle since (ticks_ms)]
        self._open = []  # type: list  # responses whose connection is not released yet
        self.connections = 0
        self.handshakes = 0
        self.requests = 0
        self.reused = 0
        self.retries = 0
        self.redirects = 0

    # -- public API (request() is the blocking or the async one) ----------------------
    def get(self, url, **kw):
        return self.request("GET", url, **kw)  # type: ignore[attr-defined]

    def head(self, url, **kw):
        return self.request("HEAD", url, **kw)  # type: ignore[attr-defined]

    def post(self, url, body=None, **kw):
        return self.request("POST", url, body=body, **kw)  # type: ignore[attr-defined]

    def close(self):
        """Close the open responses and every pooled connection."""
        self._close_open()
        pool = self._pool
        self._pool = []
        for entry in pool:
            close_quietly(entry[1])

    def pooled(self):
        """(host, port) of the idle connections kept for reuse (``pooled_keys()``:
        with the scheme)."""
        return [(e[0][1], e[0][2]) for e in self._pool]

    def pooled_keys(self):
        """(scheme, host, port) of the idle connections kept for reuse."""
        return [("https" if e[0][0] else "http", e[0][1], e[0][2]) for e in self._pool]

    # -- one request: its plan, the retry, the response, redirects ---------------------
    def _close_open(self):
        while self._open:
            self._open[-1].close()

    def _hop(self, plan):
        """Make the request for ``plan.url``: its host, port, target and head bytes."""
        tls, host, port, target = split_url(plan.url)
        head_bytes, close_after = build_head(plan.method, host, port, target, plan.body,
                                             plan.extra, self.version, self.keep_alive, tls)
        plan.tls = tls
        plan.host = host
        plan.port = port
        plan.target = target
        plan.head_bytes = head_bytes
        plan.reusable = self.keep_alive and not close_after
        plan.replayable = plan.body is None or is_buffer(plan.body)

    def _retry(self, plan, attempt, reused, reader, e):
        """Whether the failed first attempt may be sent again on a new connection: a
        pooled connection the server had closed (nothing of a response arrived) and a
        request that is idempotent with a body we still have. Tags ``e`` otherwise."""
        if (attempt == 0 and reused and plan.replayable and plan.method in IDEMPOTENT
                and reader.received == 0 and is_stale(e)):
            self.retries += 1
            return True
        tag(e, plan.url)
        return False

    def _response(self, cls, sock, head, plan, rx):
        resp = cls(self, sock, head, plan, rx)
        self._open.append(resp)
        if head.length == 0 and not head.chunked:
            resp._event()  # no body: END now, so the connection is pooled at once
        return resp

    def _redirect(self, plan, resp):
        """None if ``resp`` is the answer to return; for a redirect to follow, whether
        to drain its body (and keep the connection: True) or close it (False). Closes
        ``resp`` and raises TooManyRedirects one redirect past the limit."""
        if (resp.status not in _REDIRECTS or resp.head.header(b"location") is None
                or plan.limit == 0):
            return None
        if plan.left <= 0:
            resp.close()
            raise TooManyRedirects("more than %d redirects" % plan.limit, resp.status,
                                   plan.url)
        plan.left -= 1
        self.redirects += 1
        # Read a small redirect body to keep the connection; a big one is not worth it.
        return resp.length is None or resp.length <= _DRAIN_CHUNKS * self.chunk

    def _follow(self, plan, resp):
        """Point ``plan`` at the Location of redirect ``resp`` (its body dealt with).
        A Location that is not a URL (RFC 3986: printable ASCII, no space) is the
        server's error: ProtocolError; one we cannot follow (https, a bad host or
        port) raises LocalProtocolError, as the same URL given to request() would."""
        location = resp.head.header(b"location")  # pragma: no mutate -- header() lowercases
        for c in location:
            if c <= 32 or c >= 127:
                raise ProtocolError("Location is not a URL: %r" % location[:80],
                                    resp.status, plan.url)
        try:
            url = join_url(plan.host, plan.port, plan.target, location, plan.tls)
            new_tls, new_host, new_port, _ = split_url(url)
        except HTTPError as e:
            tag(e, plan.url)
            raise
        if plan.tls and not new_tls:
            raise ProtocolError("redirect from https to http refused: %r" % location[:80],
                                resp.status, plan.url)
        if resp.status <= 303 and plan.method != b"HEAD":  # pragma: no mutate -- 304: never here
            # RFC 9110 15.4: 303 (and in practice 301/302) turn into GET without body
            plan.method = b"GET"
            plan.body = None
        if (new_tls, new_host, new_port) != (plan.tls, plan.host, plan.port):
            plan.extra = [h for h in plan.extra if to_bytes(h[0]).lower() != b"authorization"]
        plan.url = url

    # -- timeouts -------------------------------------------------------------------------
    def _left_ms(self, op_ms, deadline):
        if deadline is None:
            return op_ms
        left = time.ticks_diff(deadline, now())
        if left <= 0:
            raise OSError(errno.ETIMEDOUT, "total timeout of %d ms exceeded"
                          % self.total_timeout_ms)
        return left if op_ms is None else min(op_ms, left)

    def _timed_out(self, wait, op_ms, text="no response data within %d ms"):
        """The error for an operation that waited ``wait`` ms, out of ``op_ms``."""
        if wait != op_ms:  # the wait was cut short by the total deadline
            return OSError(errno.ETIMEDOUT, "total timeout of %d ms exceeded"
                           % self.total_timeout_ms)
        return OSError(errno.ETIMEDOUT, text % wait)

    # -- the connection pool ----------------------------------------------------------
    def _checkout(self, plan, mv):
        """A connection for ``plan`` (its scheme, host and port): a live pooled one, or a
        new one (blocking connect, and TLS handshake for https). ``mv``: a buffer for the
        liveness probe."""
        sock = self._take_pooled(plan, mv)
        if sock is not None:
            return sock, True
        return self._connect(plan.host, plan.port, plan.deadline, plan.tls), False

    def _take_pooled(self, plan, mv):
        """The pooled connection for ``plan`` if it is still alive (counted in
        ``reused``), else None; a dead one is closed."""
        key = (plan.tls, plan.host, plan.port)
        for i in range(len(self._pool)):
            entry = self._pool[i]
            if entry[0] == key:
                self._pool.pop(i)
                sock = entry[1]
                if self._alive(sock, entry[2], mv):
                    self.reused += 1
                    return sock
                close_quietly(sock)
                break
        return None

    def _alive(self, sock, since, mv):
        if sock.state != "ESTABLISHED":
            return False  # the backend already saw the peer's FIN or a reset
        if self.max_idle_ms is not None and time.ticks_diff(now(), since) > self.max_idle_ms:
            return False
        # A non-blocking read: EAGAIN is the healthy answer; 0 bytes is the peer's FIN,
        # and data nobody asked for means the stream is out of step.
        sock.settimeout(0)
        try:
            sock.recv_into(mv)
        except OSError as e:
            return e.args[0] == errno.EAGAIN
        return False

    def _new_socket(self):
        return socket.socket(backend=self.backend or socket.current_backend())

    def _connect(self, host, port, deadline, tls=False):
        secure = self._secure_backend() if tls else None
        if tls and secure is None and self._tls_args[4]:
            from ..tls import check_clock  # lazy, as _handshake
            check_clock()  # ClockNotSet before a connection is even opened
        sock = self._new_socket() if secure is None else socket.socket(backend=secure)
        sock.settimeout(seconds(self._left_ms(self.connect_timeout_ms, deadline)))
        try:
            # The backend resolves the name itself (getaddrinfo on the native stack, the
            # modem's own DNS in AT+CIPOPEN); a resolved sockaddr is not portable (the
            # unix port's is raw bytes).
            sock.connect((host, port))
        except OSError:
            sock.close()
            raise
        self.connections += 1
        if secure is not None:
            self.handshakes += 1  # the modem's connect included the TLS handshake
        elif tls:
            sock.settimeout(seconds(self._left_ms(self.connect_timeout_ms, deadline)))
            sock = self._handshake(sock, host)
        return sock

    def _secure_backend(self):
        """None for TLS on this board; else the backend whose connect is a TLS one."""
        t = self.tls
        if t is None or t == "software":
            return None
        if t != "modem":
            return t
        if self._offload is None:
            cadata, cafile, _, _, verify = self._tls_args
            modem = self.backend or socket.current_backend()
            offload = getattr(modem, "tls_offload", None)
            if offload is None:
                raise OSError(errno.EOPNOTSUPP, "tls='modem': backend %s has no TLS offload"
                              % getattr(modem, "name", "?"))
            self._offload = offload(cadata=cadata, cafile=cafile, verify=verify)
        return self._offload

    def _handshake(self, sock, host):
        """The TLS stream over the connected ``sock`` (closed if the handshake fails)."""
        from .. import tls  # lazy: an http-only program never loads ssl
        try:
            if self._tls_context is None:
                self._tls_context = tls.Context(*self._tls_args)
        except BaseException:
            sock.close()
            raise
        t = tls.wrap(sock, host, context=self._tls_context)
        self.handshakes += 1
        return t

    def _checkin(self, key, sock):
        if len(self._pool) >= self.max_pool:
            close_quietly(self._pool.pop(0)[1])  # the longest idle goes first
        self._pool.append([key, sock, now()])

    def _released(self, resp, reuse):
        """``resp`` is over: its connection goes to the pool (``reuse``) or is closed."""
        if resp in self._open:
            self._open.remove(resp)
        if reuse:
            self._checkin(resp._key, resp._sock)
        else:
            close_quietly(resp._sock)
        self._recycle(resp._rx)

    def _recycle(self, rx):
        pass  # the blocking client keeps its one receive buffer; AsyncClient pools them

