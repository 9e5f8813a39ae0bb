"""asyncio HTTP/1.x client over synack.socket: the blocking ``Client`` with awaits.

    http = AsyncClient(read_timeout_ms=5000)
    r = await http.get("http://example.com/data")
    body = await r.read()          # or: n = await r.readinto(buf)

Same options, pool, keep-alive, ``Connection: close`` handling, stale-connection
retry, redirects, timeouts, limits and errors as ``synack.http.client.Client``: both
call the shared core (``core``) and the sans-I/O writer and reader, and differ only
in how they wait. Requests may run concurrently from several tasks; each response in
flight has its own ``chunk`` receive buffer and reader, kept for reuse once its body
is over (memory grows with the number of concurrent responses, not requests).

How it waits. Sockets are switched to non-blocking and every read or send that would
block (EAGAIN) is retried after ``await asyncio.sleep_ms``: first after 1 ms, doubling
up to ``poll_ms``, until the read timeout. Why polling rather than
``asyncio.open_connection`` streams: the stream API exists only for the platform's own
sockets, while a synack socket over a cellular modem is AT commands on a UART that
neither select.poll nor asyncio can wait on. Polling through ``synack.socket`` is one
code path for both backends and keeps the TCP lifecycle (``sock.state``, ``sock.tcp``)
and the errno mapping of synack.socket. The cost:
a response can be seen up to ``poll_ms`` late, and on a modem every poll is one AT
round trip (``AT+CIPRXGET``), so give a modem a larger ``poll_ms`` (100-200 ms).

https is not supported here yet (``LocalProtocolError``): use the blocking
``synack.http.client.Client``, whose TLS handshake may block.

Connecting does not block either: the socket connects non-blocking (``connect()``
raises EINPROGRESS, then ``connect_done()`` is polled with the same pauses; on a modem
that poll only reads the UART for the ``+CIPOPEN`` URC, no AT round trip) for at most
``connect_timeout_ms``; a cancelled connect closes its socket.

What still blocks the event loop, bounded: the name lookup of a new connection (the
native stack's getaddrinfo), each AT command of a modem backend (``AT+CIPOPEN`` until
its OK, one send of up to 1460 bytes, one read), and closing a native connection (its
four-way close waits up to 2 s for the peer's FIN; servers answer at once). After every
read or send the client gives way (``tasks.give_way``), so a bulk transfer holds the
loop for one AT exchange at a time, not for the whole body (bench/bench_async.py).
"""

import errno
import time

import asyncio

from .. import tasks
from .body import BaseResponse
from .core import EMPTY, BaseClient, Plan, Rx, close_quietly, now, pieces
from .errors import HTTPError, LocalProtocolError
from .response import RESPONSE

try:
    from typing import TYPE_CHECKING  # absent on MicroPython: only type checkers see it
except ImportError:
    TYPE_CHECKING = False
if TYPE_CHECKING: from .head import Head  # noqa: F401 (used in type comments)

_CANCELLED = asyncio.CancelledError


class AsyncResponse(BaseResponse):
    """A response whose head has arrived; read the body with ``await readinto(buf)``,
    ``await read()``, ``await chunk()`` or discard it with ``await drain()``.
    ``status``, ``reason``, ``version``, ``headers``, ``length``, ``url``,
    ``trailers``, ``header(name)`` and ``raise_for_status()`` are as in the blocking
    ``Response``. Read the body to its end or ``close()`` it (``async with`` does): the
    connection goes back to the pool only when the body is over."""

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        self.close()

    async def _next(self):
        """Make ``_pending`` the next body bytes; False at the end of the body."""
        if self.done:
            return False
        try:
            while True:
                more = self._event()
                if more is not None:
                    return more
                await self._client._fill(self._sock, self._rx, self._deadline, self._read_ms)
        except (OSError, HTTPError, _CANCELLED) as e:
            self._failed(e)  # a cancelled read leaves the stream out of step: drop it
            raise

    async def readinto(self, buf, nbytes=None):
        """Fill ``buf`` (or its first ``nbytes``) with body bytes; returns the count,
        less than asked only at the end of the body (0 once it is over)."""
        mv = memoryview(buf)
        want = len(mv) if nbytes is None else min(nbytes, len(mv))
        got = 0
        while got < want:
            if not len(self._pending) and not await self._next():
                break
            got = self._take(mv, got, want)
        self._settle()
        return got

    async def chunk(self):
        """The next piece of the body as a memoryview of the receive buffer (no copy),
        valid only until the next call; None at the end of the body."""
        if not len(self._pending) and not await self._next():
            return None
        pending = self._pending
        self._pending = EMPTY
        return pending

    async def read(self):
        """The whole body as bytes (bounded by the client's ``max_body``); the buffer
        grows with what arrives (``BaseResponse._grow``)."""
        out = bytearray(0)  # pragma: no mutate -- any start: _grow() takes it from there
        n = 0
        while not self.done or len(self._pending):
            if n == len(out):
                out = self._grow(out, n)
                if n == len(out):
                    break  # all of the Content-Length is in
            n += await self.readinto(memoryview(out)[n:])
            if n < len(out):
                break  # readinto() stops short only at the end of the body
        return bytes(out) if n == len(out) else bytes(out[:n])  # pragma: no mutate -- same bytes

    async def drain(self):
        """Read and discard the rest of the body, so that the connection can be reused;
        returns the number of bytes discarded."""
        n = 0
        while True:
            piece = await self.chunk()
            if piece is None:
                return n
            n += len(piece)


class AsyncClient(BaseClient):
    """HTTP/1.x client for asyncio with one keep-alive connection per (host, port).

    Options as ``synack.http.client.Client`` (all keyword), plus ``poll_ms``: the
    longest pause between two tries of a socket operation that would block."""

    is_async = True

    def __init__(self, *args, poll_ms=20, **kw):
        BaseClient.__init__(self, *args, **kw)
        self.poll_ms = poll_ms
        self._spare = []  # type: list  # Rx of finished responses, for the next ones

    async def request(self, method, url, body=None, headers=None, read_timeout_ms=None,
                      max_redirects=None):
        """Send a request and return the ``AsyncResponse`` once its head has arrived;
        arguments as ``Client.request``. Other tasks run while it waits."""
        plan = Plan(self, method, url, body, headers, read_timeout_ms, max_redirects)
        while True:
            resp = await self._exchange(plan)
            drain = self._redirect(plan, resp)
            if drain is None:
                return resp
            if drain:
                await resp.drain()
            else:
                resp.close()
            self._follow(plan, resp)

    # -- one request/response on one connection, retried once if it was stale ------
    async def _exchange(self, plan):
        self._hop(plan)
        if plan.tls:
            raise LocalProtocolError("https is not supported by AsyncClient (its TLS "
                                     "handshake would block the event loop): use "
                                     "synack.http.client.Client", None, plan.url)
        rx = self._spare.pop() if self._spare else Rx(self)
        resp = None
        try:
            for attempt in (0, 1):
                sock = self._take_pooled(plan, rx.mv)
                reused = sock is not None
                if sock is None:
                    sock = await self._connect_async(plan.host, plan.port, plan.deadline)
                sock.settimeout(0)  # from now on every wait is an await
                self.requests += 1
                rx.reader.start(plan.method)
                try:
                    for piece in pieces(plan.head_bytes, plan.body, self.chunk):
                        await self._send(sock, piece, plan.deadline, plan.read_ms)
                    head = await self._read_head(sock, rx, plan.deadline, plan.read_ms)
                except (OSError, HTTPError, _CANCELLED) as e:
                    close_quietly(sock)
                    if self._retry(plan, attempt, reused, rx.reader, e):
                        continue
                    raise
                resp = self._response(AsyncResponse, sock, head, plan, rx)
                return resp
            raise HTTPError("unreachable")  # the loop returns or raises
        finally:
            if resp is None:
                self._spare.append(rx)  # no response owns it

    async def _connect_async(self, host, port, deadline):
        """A new connection to (host, port), connected non-blocking: the handshake is
        polled with ``connect_done()`` and awaited in between (pauses as in ``_wait``),
        for at most ``connect_timeout_ms`` (or what is left of the total). A failed or
        cancelled connect closes its socket."""
        sock = self._new_socket()
        sock.setblocking(False)
        sock.connect_timeout_ms = self._left_ms(self.connect_timeout_ms, deadline)
        try:
            try:
                sock.connect((host, port))  # the backend resolves the name (see _connect)
            except OSError as e:
                if e.args[0] != errno.EINPROGRESS:
                    raise
            pause = 1
            while not sock.connect_done():  # raises ETIMEDOUT once the limit has passed
                await tasks.sleep_ms(pause)
                if pause < self.poll_ms:
                    pause = min(pause * 2, self.poll_ms)
        except (OSError, _CANCELLED):
            close_quietly(sock)
            raise
        self.connections += 1
        return sock

    async def _read_head(self, sock, rx, deadline, read_ms):
        reader = rx.reader
        while True:
            kind, value = reader.next_event()
            if kind == RESPONSE:
                head = value  # type: Head  # type: ignore[assignment]
                return head
            await self._fill(sock, rx, deadline, read_ms)  # NEED_DATA: nothing else first

    async def _fill(self, sock, rx, deadline, read_ms):
        """One socket read into the receive buffer, handed to the reader."""
        rx.took(await self._wait(sock.recv_into, rx.mv, deadline, read_ms,
                                 "no response data within %d ms"))

    async def _send(self, sock, data, deadline, read_ms):
        mv = memoryview(data)
        while len(mv):
            n = await self._wait(sock.send, mv, deadline, read_ms,
                                 "could not send for %d ms")
            mv = mv[n:]

    async def _wait(self, op, arg, deadline, op_ms, text):
        """``op(arg)`` on the non-blocking socket, tried again after a pause while it
        would block (EAGAIN), for at most ``op_ms`` (or what is left of the total)."""
        wait = self._left_ms(op_ms, deadline)
        start = now()
        pause = 1
        while True:
            try:
                done = op(arg)
            except OSError as e:
                if e.args[0] != errno.EAGAIN:
                    raise
            else:
                await tasks.give_way()  # a modem's op is an AT exchange: others run between
                return done
            waited = time.ticks_diff(now(), start)
            if wait is not None and waited >= wait:
                raise self._timed_out(wait, op_ms, text)
            await tasks.sleep_ms(pause if wait is None else min(pause, wait - waited))
            if pause < self.poll_ms:
                pause = min(pause * 2, self.poll_ms)

    def _recycle(self, rx):
        self._spare.append(rx)
