"""Sans-I/O HTTP/1.0 and HTTP/1.1 response reader: bytes in, events out.

Call ``start(method)`` before each response, ``feed(data)`` with whatever the socket
delivered (any fragmentation), then ``next_event()`` until it returns NEED_DATA; at the
end of the stream call ``feed_eof()``. Events are (kind, value) tuples:

- ``(RESPONSE, head)``  status line and headers of the final response (a ``Head``);
                        1xx interim responses are read and skipped (``informational``)
- ``(DATA, view)``      body bytes: a memoryview *into the data passed to feed()*, valid
                        until the next feed(). Chunk framing is already removed.
- ``(END, trailers)``   the response is complete; trailers of a chunked body, a list of
                        (lowercase name, value) pairs, usually empty
- ``(NEED_DATA, None)`` everything fed so far is consumed

Body bytes are never copied or buffered here: a body costs only the buffer the caller
reads the socket into. A header or chunk-size line split across two feeds is copied into
one ``max_line`` buffer, allocated the first time a line arrives split and then kept.
Framing follows RFC 9112 6.3 (docs/http.md).
The ``Head`` class and the status-line and size parsers live in ``synack.http.head``.
Errors raise ``ProtocolError`` (``LimitError``, ``ConnectionClosed`` if the peer closed
before the first byte) and leave the reader in ERROR: close the connection.
"""

from micropython import const

from .errors import ConnectionClosed, LimitError, ProtocolError
from .head import Head, decimal, hex_size, parse_status  # noqa: F401 (Head: re-exported)
from .request import is_token

NEED_DATA = const(0)
RESPONSE = const(1)
DATA = const(2)
END = const(3)
EVENT_NAMES = ("NEED_DATA", "RESPONSE", "DATA", "END")

# Reader states; _STEPS (below the class) maps each to its handler.
STATUS = const(0)       # waiting for a status line (first, or after a 1xx response)
HEADERS = const(1)
BODY_LENGTH = const(2)  # Content-Length (or no body: 0 left)
BODY_CLOSE = const(3)   # body delimited by the end of the connection
CHUNK_SIZE = const(4)
CHUNK_DATA = const(5)
CHUNK_END = const(6)    # the CRLF after a chunk's data
TRAILERS = const(7)
DONE = const(8)
ERROR = const(9)
STATE_NAMES = ("STATUS", "HEADERS", "BODY_LENGTH", "BODY_CLOSE", "CHUNK_SIZE",
               "CHUNK_DATA", "CHUNK_END", "TRAILERS", "DONE", "ERROR")

_NEED = (NEED_DATA, None)


class Reader:
    """Incremental response reader; see the module docstring for the events."""

    def __init__(self, max_header_bytes=4096, max_headers=32, max_line=1024, max_body=None):
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers
        self.max_line = max_line
        self.max_body = max_body  # None: unlimited
        # A line split across two feeds is joined in a max_line buffer, made the first
        # time that happens and kept: heads that arrive whole in one read never cost it.
        self._lmv = memoryview(b"")
        self.start()

    def start(self, method=b"GET"):
        """Expect the response to a request made with ``method``; forgets any input."""
        self.method = method.encode() if isinstance(method, str) else method
        self.state = STATUS
        self.head = None  # type: Head | None
        self.informational = 0   # 1xx responses skipped
        self.body_bytes = 0      # body bytes delivered so far
        self.received = 0        # bytes of this response consumed so far
        self._data = b""  # type: bytes | bytearray | memoryview
        self._mv = memoryview(b"")  # pragma: no mutate -- read only up to _end (0)
        self._pos = 0
        self._end = 0
        self._llen = 0           # bytes of a split line held in self._lmv
        self._hbytes = 0         # header (and trailer) bytes so far
        self._hcount = 0  # pragma: no mutate -- _status() sets it before it is read
        self._left = 0  # pragma: no mutate -- body/chunk bytes to come: _framing() sets it
        self._trailers = []  # type: list
        self._eof = False  # pragma: no mutate -- None: only its truth is read
        self._error = None  # type: Exception | None

    # -- input -------------------------------------------------------------------
    def feed(self, data, nbytes=None):
        """Hand over the next bytes (the first ``nbytes`` of ``data`` if given). The
        reader keeps a reference, not a copy: do not change ``data`` until next_event()
        has returned NEED_DATA. Passing the bytearray itself rather than a memoryview
        of it lets header lines be found with find() instead of a byte loop."""
        if self._pos < self._end:
            raise ValueError("feed() before the previous data was consumed")
        n = len(data) if nbytes is None else nbytes
        if self._eof and n:
            raise ValueError("feed() after feed_eof()")
        self._data = data
        self._mv = memoryview(data)
        self._pos = 0
        self._end = n

    def feed_eof(self):
        """The peer closed the connection (the socket read returned 0 bytes)."""
        self._eof = True

    def unconsumed(self):
        """Bytes fed but not consumed: after END, anything here was sent beyond the
        response, so the connection cannot be trusted for another request."""
        return self._end - self._pos

    @property
    def done(self):
        return self.state == DONE

    @property
    def body_complete(self):
        """All Content-Length bytes delivered: END follows without more input."""
        return self.state == BODY_LENGTH and not self._left

    # -- output ------------------------------------------------------------------
    def next_event(self):
        if self._error is not None:
            raise self._error
        try:
            while True:
                ev = _STEPS[self.state](self)
                if ev is not None:
                    return ev
        except ProtocolError as e:
            self.state = ERROR
            self._error = e
            raise

    def _fail(self, msg):
        status = self.head.status if self.head is not None else None
        return ProtocolError(msg, status)

    def _limit(self, limit, value, msg):
        return LimitError(limit, value, msg, self.head.status if self.head else None)

    def _take_line(self):
        """The next line without its CRLF (or bare LF) as bytes, or None if incomplete."""
        pos, end = self._pos, self._end
        data = self._data
        if isinstance(data, memoryview):
            lf = pos
            mv = self._mv
            while lf < end and mv[lf] != 10:
                lf += 1
            if lf == end:
                lf = -1  # pragma: no mutate -- any negative: not found
        else:
            lf = data.find(b"\n", pos, end)
        stop = end if lf < 0 else lf
        llen = self._llen
        if llen + stop - pos > self.max_line:
            raise self._limit("header line", self.max_line,
                              "header line longer than %d bytes" % self.max_line)
        if lf < 0:  # keep the partial line for the next feed
            if pos < stop:
                if not len(self._lmv):  # the first split line: made now, then kept
                    self._lmv = memoryview(bytearray(self.max_line))
                self._lmv[llen:llen + stop - pos] = self._mv[pos:stop]
                self._llen = llen + stop - pos
                self.received += stop - pos
            self._pos = end
            return None
        self.received += lf + 1 - pos
        self._pos = lf + 1
        if llen:
            self._lmv[llen:llen + lf - pos] = self._mv[pos:lf]  # pragma: no mutate -- pos 0
            view = self._lmv[:llen + lf - pos]  # pragma: no mutate -- a held line: pos is 0
            self._llen = 0
        else:
            view = self._mv[pos:lf]
        size = len(view)
        if size and view[size - 1] == 13:
            size -= 1
        return bytes(view[:size])

    def _need(self):
        # All fed data consumed: ask for more, or deal with the end of the stream.
        if not self._eof:
            return _NEED
        state = self.state
        if state == BODY_CLOSE:
            self.state = DONE
            return (END, [])
        if state == STATUS and self.received == 0:
            raise ConnectionClosed("server closed the connection before sending a response")
        if state == STATUS or state == HEADERS:
            raise self._fail("connection closed in the middle of the response headers")
        if state == BODY_LENGTH:
            raise self._fail("connection closed after %d of %d body bytes"
                             % (self.body_bytes, self.body_bytes + self._left))
        raise self._fail("connection closed inside the chunked body (after %d bytes)"
                         % self.body_bytes)

    def _count_header(self, line):
        self._hbytes += len(line) + 2
        if self._hbytes > self.max_header_bytes:
            raise self._limit("header bytes", self.max_header_bytes,
                              "response headers exceed %d bytes" % self.max_header_bytes)

    # -- state handlers: return an event, or None after a state change ------------
    def _status(self):
        line = self._take_line()
        if line is None:
            return self._need()
        self._count_header(line)
        if not line:
            return None  # tolerate blank lines before the status line (RFC 9112 2.2)
        self.head = parse_status(line)
        if self.head is None:
            raise ProtocolError("malformed status line %r" % line[:80])
        self._hcount = 0
        self.state = HEADERS
        return None

    def _headers(self):
        line = self._take_line()
        if line is None:
            return self._need()
        self._count_header(line)
        head = self.head
        if head is None:  # unreachable: HEADERS is entered with a head
            raise self._fail("header line without a status line")  # pragma: no mutate
        if line:
            self._add_header(head.headers, line)
            return None
        status = head.status
        if status < 200:
            if status == 101:  # we never ask to switch protocols
                raise self._fail("unexpected 101 Switching Protocols")
            self.informational += 1
            self.head = None
            self.state = STATUS
            return None
        self._framing(head)
        return (RESPONSE, head)

    def _add_header(self, headers, line):
        if line[0] == 32 or line[0] == 9:
            # obs-fold (RFC 9112 5.2): a continuation of the previous field's value
            if not headers:
                raise self._fail("header block starts with a continuation line")
            name, value = headers[-1]
            headers[-1] = (name, value + b" " + line.strip())
            return
        self._hcount += 1
        if self._hcount > self.max_headers:
            raise self._limit("header count", self.max_headers,
                              "more than %d header fields" % self.max_headers)
        colon = line.find(b":")
        name = line[:colon] if colon > 0 else b""  # pragma: no mutate -- 0: empty either way
        if not is_token(name):
            raise self._fail("malformed header line %r" % line[:80])
        value = line[colon + 1:].strip()
        if b"\r" in value or b"\x00" in value:
            raise self._fail("header %s has a CR or NUL in its value" % name.decode())
        headers.append((name.lower(), value))

    def _framing(self, head):
        conn = head.tokens(b"connection")  # pragma: no mutate -- tokens() lowercases
        if head.version == 11:
            head.keep_alive = b"close" not in conn
        else:
            head.keep_alive = b"keep-alive" in conn
        status = head.status
        self.state = BODY_LENGTH
        self._left = 0  # pragma: no mutate -- None: only its truth is read until set
        if self.method == b"HEAD" or status == 204 or status == 304:
            head.length = 0
            return
        te = head.tokens(b"transfer-encoding")  # pragma: no mutate -- tokens() lowercases
        lengths = head.tokens(b"content-length")  # pragma: no mutate -- tokens() lowercases
        if te:
            if te != [b"chunked"]:
                raise self._fail("unsupported transfer coding %r" % b", ".join(te))
            head.chunked = True
            if lengths:  # RFC 9112 6.3: TE wins, and the connection must not be reused
                head.keep_alive = False
            self.state = CHUNK_SIZE
            return
        if lengths:
            n = decimal(lengths[0])
            for other in lengths:
                if other != lengths[0]:
                    n = -1  # pragma: no mutate -- any negative: refused below
            if n < 0:
                raise self._fail("bad Content-Length %r" % b", ".join(lengths))
            if self.max_body is not None and n > self.max_body:
                raise self._limit("body size", self.max_body,
                                  "body of %d bytes exceeds the limit of %d"
                                  % (n, self.max_body))
            head.length = self._left = n
            return
        head.keep_alive = False  # only the end of the connection ends this body
        self.state = BODY_CLOSE

    def _data_event(self, limit):
        n = self._end - self._pos
        if limit is not None and n > limit:  # pragma: no mutate -- equal: n is limit anyway
            n = limit
        pos = self._pos
        self._pos = pos + n
        self.received += n
        self.body_bytes += n
        return (DATA, self._mv[pos:pos + n])

    def _body_length(self):
        if not self._left:
            self.state = DONE
            return (END, [])
        return self._counted(BODY_LENGTH)

    def _body_close(self):
        if self._pos == self._end:
            return self._need()
        ev = self._data_event(None)
        if self.max_body is not None and self.body_bytes > self.max_body:
            raise self._limit("body size", self.max_body,
                              "body exceeds the limit of %d bytes" % self.max_body)
        return ev

    def _chunk_size(self):
        line = self._take_line()
        if line is None:
            return self._need()
        semi = line.find(b";")  # chunk extensions: ignored
        digits = (line[:semi] if semi >= 0 else line).strip()  # pragma: no mutate -- same error
        size = hex_size(digits)
        if size < 0:
            raise self._fail("bad chunk size line %r" % line[:40])
        if size == 0:
            self._hbytes = 0
            self._hcount = 0
            self.state = TRAILERS
            return None
        if self.max_body is not None and self.body_bytes + size > self.max_body:
            raise self._limit("body size", self.max_body,
                              "chunked body exceeds the limit of %d bytes" % self.max_body)
        self._left = size
        self.state = CHUNK_DATA
        return None

    def _chunk_data(self):
        return self._counted(CHUNK_END)

    def _counted(self, then):
        # Up to _left bytes of what was fed; ``then`` is the state once none are left.
        if self._pos == self._end:
            return self._need()
        ev = self._data_event(self._left)
        self._left -= len(ev[1])
        if not self._left:
            self.state = then
        return ev

    def _chunk_end(self):
        line = self._take_line()
        if line is None:
            return self._need()
        if line:
            raise self._fail("chunk data not followed by CRLF")
        self.state = CHUNK_SIZE
        return None

    def _trailers_step(self):
        line = self._take_line()
        if line is None:
            return self._need()
        self._count_header(line)
        if line:
            self._add_header(self._trailers, line)
            return None
        self.state = DONE
        return (END, self._trailers)

    def _done(self):
        return _NEED

    def _errored(self):
        raise self._fail("reader used after an error")  # pragma: no mutate -- unreachable


_STEPS = (Reader._status, Reader._headers, Reader._body_length, Reader._body_close,
          Reader._chunk_size, Reader._chunk_data, Reader._chunk_end, Reader._trailers_step,
          Reader._done, Reader._errored)

