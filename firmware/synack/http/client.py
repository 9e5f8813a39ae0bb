"""Blocking HTTP/1.x client over synack.socket, with persistent connections.

    http = Client(chunk=512, read_timeout_ms=5000)
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

The pool, the retry and redirect decisions and the response's bookkeeping are in
``core`` and shared with the asyncio client (``synack.http.aclient.AsyncClient``).
"""

import errno

from .body import Response  # re-exported: ``from synack.http.client import Response``
from .core import BaseClient, Plan, Rx, close_quietly, pieces, seconds
from .errors import HTTPError
from .response import RESPONSE

try:
    from typing import TYPE_CHECKING  # absent on MicroPython: only type checkers see it
except ImportError:
    TYPE_CHECKING = False
if TYPE_CHECKING: from .head import Head  # noqa: F401 (used in type comments)


class Client(BaseClient):
    """HTTP/1.x client with one keep-alive connection per (scheme, host, port);
    blocking; ``https://`` over ``synack.tls``.

    Options (all keyword): ``chunk``, ``connect_timeout_ms``, ``read_timeout_ms``,
    ``total_timeout_ms``, ``max_redirects``, ``max_header_bytes``, ``max_headers``,
    ``max_line``, ``max_body``, ``http10``, ``keep_alive``, ``headers``, ``backend``,
    ``max_pool``, ``max_idle_ms``, and for https ``cadata``, ``cafile``, ``cert``,
    ``key``, ``tls_verify``, ``tls`` (software or the modem's own TLS; see
    ``core.BaseClient`` and docs/http.md)."""

    def __init__(self, *args, **kw):
        BaseClient.__init__(self, *args, **kw)
        self._rx = rx = Rx(self)
        self.reader = rx.reader
        self._buf = rx.buf
        self._mv = rx.mv

    def request(self, method, url, body=None, headers=None, read_timeout_ms=None,
                max_redirects=None):
        """Send a request and return the ``Response`` once its head has arrived.

        ``body``: bytes-like or str (sent with Content-Length), or an iterable of
        bytes-like pieces (sent chunked; HTTP/1.1 only, never retried). ``headers``: a
        dict or a sequence of (name, value) pairs, added to the client's ``headers``.
        3xx responses with a Location are followed up to ``max_redirects`` times."""
        self._close_open()  # one receive buffer: one response at a time
        plan = Plan(self, method, url, body, headers, read_timeout_ms, max_redirects)
        while True:
            resp = self._exchange(plan)
            drain = self._redirect(plan, resp)
            if drain is None:
                return resp
            if drain:
                resp.drain()
            else:
                resp.close()
            self._follow(plan, resp)

    # -- one request/response on one connection, retried once if it was stale ------
    def _exchange(self, plan):
        self._hop(plan)
        rx = self._rx
        for attempt in (0, 1):
            sock, reused = self._checkout(plan, rx.mv)
            self.requests += 1
            rx.reader.start(plan.method)  # before sending: received == 0 until a reply byte
            try:
                for piece in pieces(plan.head_bytes, plan.body, self.chunk):
                    sock.settimeout(seconds(self._left_ms(plan.read_ms, plan.deadline)))
                    sock.write(piece)
                head = self._read_head(sock, plan.deadline, plan.read_ms)
            except (OSError, HTTPError) as e:
                close_quietly(sock)
                if self._retry(plan, attempt, reused, rx.reader, e):
                    continue
                raise
            return self._response(Response, sock, head, plan, rx)
        raise HTTPError("unreachable")  # the loop returns or raises

    def _read_head(self, sock, deadline, read_ms):
        reader = self._rx.reader
        while True:
            kind, value = reader.next_event()
            if kind == RESPONSE:
                head = value  # type: Head  # type: ignore[assignment]
                return head
            self._fill(sock, self._rx, deadline, read_ms)  # NEED_DATA: nothing else first

    def _fill(self, sock, rx, deadline, read_ms):
        """One socket read into the receive buffer, handed to the reader."""
        wait = self._left_ms(read_ms, deadline)
        sock.settimeout(seconds(wait))
        try:
            n = sock.recv_into(rx.mv)
        except OSError as e:
            # The unix port reports a receive timeout as EAGAIN; a read with a timeout
            # that fails with EAGAIN has timed out, whatever the port calls it.
            if e.args[0] == errno.ETIMEDOUT or (e.args[0] == errno.EAGAIN and wait):
                raise self._timed_out(wait, read_ms)
            raise
        rx.took(n)
