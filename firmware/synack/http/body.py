"""Responses: the head has arrived, the body is read on demand.

``BaseResponse`` is the part both clients share: attributes, the reader's events, the
copying of body bytes and the release of the connection. ``Response`` reads the body
with socket reads that block within the client's timeouts (``synack.http.client``
re-exports it); ``synack.http.aclient.AsyncResponse`` awaits them instead.
"""

from .core import EMPTY, tag
from .errors import HTTPError, StatusError
from .head import text
from .response import DATA, END


class BaseResponse:
    """A response whose head has arrived; the body is read on demand.

    ``status``, ``reason`` (bytes), ``version`` (10 or 11), ``headers`` (list of
    lowercase-name, value bytes pairs), ``url`` (after redirects), ``length`` (the
    Content-Length or None), ``trailers`` (after the end of a chunked body). The
    connection goes back to the pool when the body has been read to its end;
    ``close()`` before the end closes the connection."""

    def __init__(self, client, sock, head, plan, rx):
        self._client = client
        self._sock = sock
        self._key = (plan.tls, plan.host, plan.port)
        self._rx = rx
        self._reader = rx.reader
        self.head = head
        self.status = head.status
        self.reason = head.reason
        self.version = head.version
        self.headers = head.headers
        self.length = head.length
        self.url = plan.url
        self._deadline = plan.deadline
        self._read_ms = plan.read_ms
        self._reusable = plan.reusable and head.keep_alive
        self._pending = EMPTY
        self.done = False
        self.trailers = []  # type: list

    def header(self, name, default=None):
        """The first value of header ``name`` (case-insensitive) as str, or default.
        A value that is not UTF-8 comes out one character per byte (ISO-8859-1);
        ``head.header(name)`` gives the bytes themselves."""
        v = self.head.header(name)
        return default if v is None else text(v)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def raise_for_status(self):
        if self.status >= 400:
            raise StatusError(text(self.reason) or "request failed", self.status, self.url)

    def close(self):
        """Release the connection: back to the pool if the body was read to its end
        and the server allows it, closed otherwise."""
        self._abort()

    # -- for the body readers of Response and aclient.AsyncResponse ---------------------
    def _event(self):
        """One reader event: True when ``_pending`` holds body bytes, False at the end
        of the body (the connection is released), None when the reader needs input."""
        kind, value = self._reader.next_event()
        if kind == DATA:
            self._pending = value
            return True
        if kind == END:
            self.trailers = value
            self._finish()
            return False
        return None

    def _failed(self, e):
        """Reading the body failed with ``e``: drop the connection, name the URL."""
        self._abort()
        tag(e, self.url)

    def _take(self, mv, got, want):
        """Copy pending body bytes into ``mv[got:want]``; returns the new ``got``."""
        pending = self._pending
        n = min(len(pending), want - got)
        mv[got:got + n] = pending[:n]
        self._pending = pending[n:]
        return got + n

    def _settle(self):
        # Once the last Content-Length byte is handed out, END needs no more input:
        # release the connection now, not on a later read.
        if not len(self._pending) and self._reader.body_complete and not self.done:
            self._event()

    def _grow(self, out, n):
        """For read(): a buffer for the body, twice as big as ``out`` (the first, one
        ``chunk``), with the ``n`` bytes read so far; never bigger than a known body
        needs. A Content-Length is only the server's word: allocating it up front would
        let one header line (a petabyte, or just more than the heap) fail the read
        before a byte arrived. Growing, the buffer stays under twice what arrived."""
        size = 2 * len(out) if len(out) else self._client.chunk
        if self.length is not None:
            left = self.length - self._reader.body_bytes + len(self._pending)
            if n + left < size:
                size = n + left
        if size == len(out):
            return out
        new = bytearray(size)
        new[:n] = memoryview(out)[:n]
        return new

    def _finish(self):
        self._release(self._reusable and self._reader.unconsumed() == 0)

    def _abort(self):
        if not self.done:
            self._release(False)  # pragma: no mutate -- None: only its truth is read

    def _release(self, reuse):
        self.done = True
        self._pending = EMPTY
        self._client._released(self, reuse)
        self._sock = None


class Response(BaseResponse):
    """A response whose head has arrived; the body is read on demand.

    ``status``, ``reason`` (bytes), ``version`` (10 or 11), ``headers`` (list of
    lowercase-name, value bytes pairs), ``url`` (after redirects), ``length`` (the
    Content-Length or None). Read the body with ``readinto``, ``iter_chunks``, ``read``
    or discard it with ``drain``; the connection goes back to the pool when the body
    has been read to its end. ``close()`` before the end closes the connection."""

    def _next(self):
        """Make ``_pending`` the next body bytes; False at the end of the body."""
        if self.done:
            return False
        try:
            while True:
                more = self._event()
                if more is not None:
                    return more
                self._client._fill(self._sock, self._rx, self._deadline, self._read_ms)
        except (OSError, HTTPError) as e:
            self._failed(e)
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
            got = self._take(mv, got, want)
        self._settle()
        return got

    def iter_chunks(self):
        """Yield the body as memoryviews of the client's receive buffer (no copies):
        each is valid only until the next one is requested."""
        while len(self._pending) or self._next():
            pending = self._pending
            self._pending = EMPTY
            yield pending

    def read(self):
        """The whole body as bytes (bounded by the client's ``max_body``)."""
        out = bytearray(0)  # pragma: no mutate -- any start: _grow() takes it from there
        n = 0
        while not self.done or len(self._pending):
            if n == len(out):
                out = self._grow(out, n)
                if n == len(out):
                    break  # all of the Content-Length is in
            got = self.readinto(memoryview(out)[n:])
            n += got
            if n < len(out):
                break  # readinto() stops short only at the end of the body
        return bytes(out) if n == len(out) else bytes(out[:n])  # pragma: no mutate -- same bytes

    def drain(self):
        """Read and discard the rest of the body, so that the connection can be reused;
        returns the number of bytes discarded."""
        n = 0
        for piece in self.iter_chunks():
            n += len(piece)
        return n
