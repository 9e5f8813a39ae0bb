"""Blocking HTTP/1.x client over synack.socket, with persistent connections.

    http = Client(chunk=1024, read_timeout_ms=5000)
    r = http.get("http://example.com/data")
    n = r.readinto(buf)   # the body streams through the client's chunk buffer

One idle connection per (host, port) is kept after a response that allows it (HTTP/1.1
unless ``Connection: close``; HTTP/1.0 only with ``Connection: keep-alive``). A pooled
connection the server closed while idle is noticed before reuse (a non-blocking read
sees its FIN) or, if the FIN crosses our request, by the request failing before any
response byte arrived: an idempotent request is then sent once more on a new connection.

Memory: one ``chunk``-byte receive buffer, plus the reader's ``max_line`` buffer for a
header line split across reads. Body bytes are copied once, from the receive buffer into
the caller's. One response at a time: a new request closes a response still open.
"""

import errno
import time

from micropython import const

from .. import socket
from .errors import ConnectionClosed, HTTPError, StatusError, TooManyRedirects
from .request import (CRLF, HTTP10, HTTP11, IDEMPOTENT, LAST_CHUNK, build_head,
                      chunk_header, header_pairs, is_buffer, join_url, parse_url,
                      to_bytes)
from .response import DATA, END, RESPONSE, Reader

try:
    from typing import TYPE_CHECKING  # absent on MicroPython: only type checkers see it
except ImportError:
    TYPE_CHECKING = False
if TYPE_CHECKING: from .response import Head  # noqa: F401 (used in type comments)

_REDIRECTS = (301, 302, 303, 307, 308)
# Errors that mean "the peer had closed this connection", when no response byte came.
# EPIPE is 32 on Linux and lwIP alike, but ESP32's errno module does not name it.
_STALE = (errno.ECONNRESET, 32, errno.ENOTCONN, errno.ECONNABORTED)
_DRAIN_CHUNKS = const(16)  # a redirect body up to 16 chunks is read to keep the connection
_EMPTY = memoryview(b"")
_now = time.ticks_ms


class Response:
    """A response whose head has arrived; the body is read on demand.

    ``status``, ``reason`` (bytes), ``version`` (10 or 11), ``headers`` (list of
    lowercase-name, value bytes pairs), ``url`` (after redirects), ``length`` (the
    Content-Length or None). Read the body with ``readinto``, ``iter_chunks``, ``read``
    or discard it with ``drain``; the connection goes back to the pool when the body
    has been read to its end. ``close()`` before the end closes the connection."""

    def __init__(self, client, sock, key, head, url, deadline, read_ms, reusable):
        self._client = client
        self._sock = sock
        self._key = key
        self.head = head
        self.status = head.status
        self.reason = head.reason
        self.version = head.version
        self.headers = head.headers
        self.length = head.length
        self.url = url
        self._deadline = deadline
        self._read_ms = read_ms
        self._reusable = reusable and head.keep_alive
        self._pending = _EMPTY
        self.done = False
        self.trailers = []  # type: list

    def header(self, name, default=None):
        """The first value of header ``name`` (case-insensitive) as str, or default."""
        v = self.head.header(name)
        return default if v is None else v.decode()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _next(self):
        """Make ``_pending`` the next body bytes; False at the end of the body."""
        if self.done:
            return False
        client = self._client
        reader = client.reader
        try:
            while True:
                kind, value = reader.next_event()
                if kind == DATA:
                    self._pending = value
                    return True
                if kind == END:
                    self.trailers = value
                    self._finish()
                    return False
                client._fill(self._sock, self._deadline, self._read_ms)  # NEED_DATA
        except (OSError, HTTPError) as e:
            self._abort()
            if isinstance(e, HTTPError) and e.url is None:
                e.url = self.url
            raise

    def readinto(self, buf, nbytes=None):
        """Fill ``buf`` (or its first ``nbytes``) with body bytes; returns the count,
        less than asked only at the end of the body (0 once it is over)."""
        mv = memoryview(buf)
        want = len(mv) if nbytes is None else min(nbytes, len(mv))
        got = 0
        while got < want:
            if not len(self._pending) and not self._next():
                break
            pending = self._pending
            n = min(len(pending), want - got)
            mv[got:got + n] = pending[:n]
            self._pending = pending[n:]
            got += n
        if not len(self._pending) and self._client.reader.body_complete and not self.done:
            self._next()  # release the connection now, not on a later read
        return got

    def iter_chunks(self):
        """Yield the body as memoryviews of the client's receive buffer (no copies):
        each is valid only until the next one is requested."""
        while len(self._pending) or self._next():
            pending = self._pending
            self._pending = _EMPTY
            yield pending

    def read(self):
        """The whole body as bytes (bounded by the client's ``max_body``)."""
        if self.done and not len(self._pending):
            return b""
        if self.length is not None:  # known size: one allocation, no regrowing
            out = bytearray(self.length - self._client.reader.body_bytes
                            + len(self._pending))
            n = self.readinto(out)
            return bytes(out) if n == len(out) else bytes(out[:n])
        acc = bytearray()
        for piece in self.iter_chunks():
            acc.extend(piece)
        return bytes(acc)

    def drain(self):
        """Read and discard the rest of the body, so that the connection can be reused;
        returns the number of bytes discarded."""
        n = 0
        for piece in self.iter_chunks():
            n += len(piece)
        return n

    def raise_for_status(self):
        if self.status >= 400:
            raise StatusError(self.reason.decode() or "request failed", self.status, self.url)

    def close(self):
        """Release the connection: back to the pool if the body was read to its end
        and the server allows it, closed otherwise."""
        self._abort()

    def _finish(self):
        self._release(self._reusable and self._client.reader.unconsumed() == 0)

    def _abort(self):
        if not self.done:
            self._release(False)

    def _release(self, reuse):
        self.done = True
        self._pending = _EMPTY
        client = self._client
        if client._active is self:
            client._active = None
        if reuse:
            client._checkin(self._key, self._sock)
        else:
            _close(self._sock)
        self._sock = None


def _close(sock):
    if sock is not None:
        try:
            sock.close()
        except OSError:
            pass  # the connection is being thrown away: its close cannot fail the caller


class Client:
    """HTTP/1.x client with one keep-alive connection per (host, port).

    Timeouts are in milliseconds (None: none): ``connect_timeout_ms`` for the TCP
    handshake, ``read_timeout_ms`` for each socket operation, ``total_timeout_ms`` for a
    whole request including redirects, retries and reading the body.

    Counters: ``connections`` (TCP connections opened), ``requests`` (sent, including
    retries and redirects), ``reused`` (sent on a pooled connection), ``retries``,
    ``redirects``."""

    def __init__(self, chunk=1024, connect_timeout_ms=10000, read_timeout_ms=10000,
                 total_timeout_ms=None, max_redirects=5, max_header_bytes=4096,
                 max_headers=32, max_line=1024, max_body=1048576, http10=False,
                 keep_alive=None, headers=None, backend=None, max_pool=2, max_idle_ms=None):
        self.chunk = chunk
        self._buf = bytearray(chunk)
        self._mv = memoryview(self._buf)
        self.reader = Reader(max_header_bytes, max_headers, max_line, max_body)
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
        self._pool = []  # type: list  # [host, port, sock, idle since (ticks_ms)]
        self._active = None  # type: Response | None
        self.connections = 0
        self.requests = 0
        self.reused = 0
        self.retries = 0
        self.redirects = 0

    # -- public API ----------------------------------------------------------------
    def get(self, url, **kw):
        return self.request("GET", url, **kw)

    def head(self, url, **kw):
        return self.request("HEAD", url, **kw)

    def post(self, url, body=None, **kw):
        return self.request("POST", url, body=body, **kw)

    def request(self, method, url, body=None, headers=None, read_timeout_ms=None,
                max_redirects=None):
        """Send a request and return the ``Response`` once its head has arrived.

        ``body``: bytes-like or str (sent with Content-Length), or an iterable of
        bytes-like pieces (sent chunked; HTTP/1.1 only, never retried). ``headers``: a
        dict or a sequence of (name, value) pairs, added to the client's ``headers``.
        3xx responses with a Location are followed up to ``max_redirects`` times."""
        if self._active is not None:
            self._active.close()
        method = to_bytes(method).upper()
        if isinstance(body, str):
            body = body.encode()
        deadline = None
        if self.total_timeout_ms is not None:
            deadline = time.ticks_add(_now(), self.total_timeout_ms)
        read_ms = self.read_timeout_ms if read_timeout_ms is None else read_timeout_ms
        limit = self.max_redirects if max_redirects is None else max_redirects
        left = limit
        extra = header_pairs(self.headers) + header_pairs(headers)
        while True:
            host, port, target = parse_url(url)
            resp = self._exchange(method, host, port, target, body, extra, deadline,
                                  read_ms, url)
            location = resp.head.header(b"location")
            if resp.status not in _REDIRECTS or location is None or limit == 0:
                if not resp.done:
                    self._active = resp
                return resp
            if left <= 0:
                resp.close()
                raise TooManyRedirects("more than %d redirects" % limit, resp.status, url)
            left -= 1
            self.redirects += 1
            # Read a small redirect body to keep the connection; a big one is not worth it.
            if resp.length is not None and resp.length > _DRAIN_CHUNKS * self.chunk:
                resp.close()
            else:
                resp.drain()
            url = join_url(host, port, target, location)
            if resp.status <= 303 and method != b"HEAD":
                # RFC 9110 15.4: 303 (and in practice 301/302) turn into GET without body
                method = b"GET"
                body = None
            new_host, new_port, _ = parse_url(url)
            if (new_host, new_port) != (host, port):
                extra = [h for h in extra if to_bytes(h[0]).lower() != b"authorization"]

    def close(self):
        """Close the open response (if any) and every pooled connection."""
        if self._active is not None:
            self._active.close()
        pool = self._pool
        self._pool = []
        for entry in pool:
            _close(entry[2])

    def pooled(self):
        """(host, port) of the idle connections kept for reuse."""
        return [(e[0], e[1]) for e in self._pool]

    # -- one request/response on one connection, retried once if it was stale ------
    def _exchange(self, method, host, port, target, body, extra, deadline, read_ms, url):
        head_bytes, close_after = build_head(method, host, port, target, body, extra,
                                             self.version, self.keep_alive)
        replayable = body is None or is_buffer(body)
        for attempt in (0, 1):
            sock, reused = self._checkout(host, port, deadline)
            self.requests += 1
            self.reader.start(method)  # before sending: received == 0 until a reply byte
            try:
                self._send(sock, head_bytes, body, deadline, read_ms)
                head = self._read_head(sock, deadline, read_ms)
            except (OSError, HTTPError) as e:
                _close(sock)
                if (attempt == 0 and reused and replayable and method in IDEMPOTENT
                        and self.reader.received == 0 and _is_stale(e)):
                    self.retries += 1
                    continue
                if isinstance(e, HTTPError) and e.url is None:
                    e.url = url
                raise
            resp = Response(self, sock, (host, port), head, url, deadline, read_ms,
                            self.keep_alive and not close_after)
            if head.length == 0 and not head.chunked:
                resp._next()  # no body: END now, so the connection is pooled at once
            return resp
        raise HTTPError("unreachable")  # the loop returns or raises

    def _send(self, sock, head_bytes, body, deadline, read_ms):
        sock.settimeout(_seconds(self._left_ms(read_ms, deadline)))
        if body is None:
            sock.write(head_bytes)
        elif is_buffer(body):
            if len(body) <= self.chunk:  # one write: one packet, one modem command
                sock.write(head_bytes + bytes(body))
            else:
                sock.write(head_bytes)
                sock.write(body)
        else:
            sock.write(head_bytes)
            for piece in body:
                if len(piece):
                    sock.settimeout(_seconds(self._left_ms(read_ms, deadline)))
                    sock.write(chunk_header(len(piece)))
                    sock.write(piece)
                    sock.write(CRLF)
            sock.write(LAST_CHUNK)

    def _read_head(self, sock, deadline, read_ms):
        reader = self.reader
        while True:
            kind, value = reader.next_event()
            if kind == RESPONSE:
                head = value  # type: Head  # type: ignore[assignment]
                return head
            self._fill(sock, deadline, read_ms)  # NEED_DATA: nothing else comes first

    def _fill(self, sock, deadline, read_ms):
        """One socket read into the receive buffer, handed to the reader."""
        wait = self._left_ms(read_ms, deadline)
        sock.settimeout(_seconds(wait))
        try:
            n = sock.recv_into(self._mv)
        except OSError as e:
            # The unix port reports a receive timeout as EAGAIN; a read with a timeout
            # that fails with EAGAIN has timed out, whatever the port calls it.
            if e.args[0] == errno.ETIMEDOUT or (e.args[0] == errno.EAGAIN and wait):
                if wait != read_ms:  # the read was cut short by the total deadline
                    raise OSError(errno.ETIMEDOUT, "total timeout of %d ms exceeded"
                                  % self.total_timeout_ms)
                raise OSError(errno.ETIMEDOUT, "no response data within %d ms" % wait)
            raise
        if n:
            self.reader.feed(self._buf, n)
        else:
            self.reader.feed_eof()

    def _left_ms(self, op_ms, deadline):
        if deadline is None:
            return op_ms
        left = time.ticks_diff(deadline, _now())
        if left <= 0:
            raise OSError(errno.ETIMEDOUT, "total timeout of %d ms exceeded"
                          % self.total_timeout_ms)
        return left if op_ms is None else min(op_ms, left)

    # -- the connection pool ----------------------------------------------------------
    def _checkout(self, host, port, deadline):
        """A connection to (host, port): a live pooled one, or a new one."""
        for i in range(len(self._pool)):
            entry = self._pool[i]
            if entry[0] == host and entry[1] == port:
                self._pool.pop(i)
                sock = entry[2]
                if self._alive(sock, entry[3]):
                    self.reused += 1
                    return sock, True
                _close(sock)
                break
        return self._connect(host, port, deadline), False

    def _alive(self, sock, since):
        if sock.state != "ESTABLISHED":
            return False  # the backend already saw the peer's FIN or a reset
        if self.max_idle_ms is not None and time.ticks_diff(_now(), since) > self.max_idle_ms:
            return False
        # A non-blocking read: EAGAIN is the healthy answer; 0 bytes is the peer's FIN,
        # and data nobody asked for means the stream is out of step.
        sock.settimeout(0)
        try:
            sock.recv_into(self._mv)
        except OSError as e:
            return e.args[0] == errno.EAGAIN
        return False

    def _connect(self, host, port, deadline):
        sock = socket.socket(backend=self.backend or socket.current_backend())
        sock.settimeout(_seconds(self._left_ms(self.connect_timeout_ms, deadline)))
        try:
            # The backend resolves the name itself (getaddrinfo on the native stack, the
            # modem's own DNS in AT+CIPOPEN); a resolved sockaddr is not portable (the
            # unix port's is raw bytes).
            sock.connect((host, port))
        except OSError:
            sock.close()
            raise
        self.connections += 1
        return sock

    def _checkin(self, key, sock):
        if len(self._pool) >= self.max_pool:
            _close(self._pool.pop(0)[2])  # the longest idle goes first
        self._pool.append([key[0], key[1], sock, _now()])


def _seconds(ms):
    return None if ms is None else ms / 1000


def _is_stale(e):
    return isinstance(e, ConnectionClosed) or (isinstance(e, OSError) and e.args[0] in _STALE)
