"""The firmware's asyncio HTTP client (synack.http.aclient) and the asyncio outbox
delivery (synack.tasks.deliver) on CPython against real HTTP servers on 127.0.0.1 (the
servers of tests/test_http_client.py and tests/test_outbox.py), and over the virtual
SIM7600. Connections are counted on the server side."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import time

import pytest
from test_http_client import Hello, RawHTTPServer, RealServer, response, slow_server, url
from test_outbox import DedupServer

from hanging import HangingListener, closed_port

from synack import tasks
from synack.http.aclient import AsyncClient, AsyncResponse
from synack.http.errors import ConnectionClosed, ProtocolError, TooManyRedirects
from synack.native import NativeBackend
from synack.outbox import MemoryStore, Outbox

MiB = 1 << 20


def new_client(**kw) -> AsyncClient:
    kw.setdefault("read_timeout_ms", 5000)
    kw.setdefault("backend", NativeBackend())
    return AsyncClient(**kw)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


# -- keep-alive, Connection: close, HTTP/1.0 ----------------------------------------------
def test_keep_alive_reuses_one_connection():
    async def main(server):
        c = new_client()
        for i in range(50):
            r = await c.get(server.url(f"/n{i}"))
            assert isinstance(r, AsyncResponse)
            assert (r.status, await r.read()) == (200, f"hello /n{i}".encode())
        assert c.pooled() == [("127.0.0.1", server.port)]
        c.close()
        return c

    with RealServer(Hello) as server:
        c = run(main(server))
        assert server.connections == 1
    assert (c.connections, c.reused, c.requests) == (1, 49, 50)


def test_connection_close_from_either_side_and_http10():
    def app(req, conn, n):
        if req.target == "/old":
            return response(body=b"1.0", version="HTTP/1.0")
        return response(body=b"x", headers=[("Connection", "close")] if "bye" in req.target
                        else [])

    async def main(server):
        c = new_client()
        assert await (await c.get(url(server, "/a"))).read() == b"x"
        assert await (await c.get(url(server, "/bye"))).read() == b"x"  # server: close
        assert c.pooled() == []
        assert await (await c.get(url(server, "/b"))).read() == b"x"
        assert server.connections == 2
        r = await c.get(url(server, "/c"), headers={"Connection": "close"})  # we say close
        assert await r.read() == b"x" and c.pooled() == []
        assert server.requests[-1].header("connection") == "close"
        for _ in range(3):
            assert await (await c.get(url(server, "/old"))).read() == b"1.0"
        assert server.connections == 5 and c.pooled() == []
        c.close()

    with RawHTTPServer(app) as server:
        run(main(server))


def test_stale_connection_retried_once_for_get_never_for_post():
    def app(req, conn, n):
        return None if n == 1 else response(body=req.method.encode())

    async def main(server):
        c = new_client()
        assert await (await c.get(url(server))).read() == b"GET"
        assert await (await c.get(url(server))).read() == b"GET"
        assert (c.retries, c.connections) == (1, 2)
        with pytest.raises(ConnectionClosed) as exc:
            await c.post(url(server), body=b"data")
        assert str(exc.value).endswith(f"({url(server)})")
        c.close()

    with RawHTTPServer(app) as server:
        run(main(server))
        assert sum(r.method == "POST" for r in server.requests) == 1


def test_redirects_share_the_blocking_rules():
    def app(req, conn, n):
        if req.target == "/loop":
            return response(301, headers=[("Location", "/loop")], reason="Moved")
        if req.target == "/see-other":
            return response(303, b"see", headers=[("Location", "/final")], reason="See Other")
        return response(body=f"{req.method} {req.target}".encode())

    async def main(server):
        c = new_client(max_redirects=3)
        r = await c.post(url(server, "/see-other"), body=b"b")
        assert (await r.read(), r.url) == (b"GET /final", url(server, "/final"))
        with pytest.raises(TooManyRedirects) as exc:
            await c.get(url(server, "/loop"))
        assert str(exc.value) == f"HTTP 301: more than 3 redirects ({url(server, '/loop')})"
        c.close()
        return c

    with RawHTTPServer(app) as server:
        c = run(main(server))
        assert server.connections == 1 and c.redirects == 4


# -- bodies -------------------------------------------------------------------------------
@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
@pytest.mark.parametrize("size", [0, 1, 65537, MiB])
def test_bodies_are_byte_exact(framing, size):
    body = bytes((i * 7 + i // 251) & 0xFF for i in range(size))
    wire = response(body=body, framing=framing, chunk=3001)

    async def main(server):
        c = new_client(chunk=4096, max_body=MiB)
        r = await c.get(url(server))
        assert r.length == (size if framing == "length" else None)
        digest, total, buf = hashlib.sha256(), 0, bytearray(1500)
        while True:
            n = await r.readinto(buf)
            if not n:
                break
            digest.update(memoryview(buf)[:n])
            total += n
        assert total == size and digest.digest() == hashlib.sha256(body).digest()
        assert r.done
        assert await (await c.get(url(server))).read() == body   # read() as well
        assert c.pooled() == ([] if framing == "close" else [("127.0.0.1", server.port)])
        c.close()

    with RawHTTPServer(lambda req, conn, n: wire) as server:
        run(main(server))
        assert server.connections == (2 if framing == "close" else 1)


def test_chunks_trailers_and_async_with():
    chunked = response(body=b"abcdefghij", framing="chunked", chunk=3)
    trailer = chunked[:-2] + b"X-Sum: 55\r\n\r\n"

    async def main(server):
        c = new_client(chunk=4)
        async with await c.get(url(server)) as r:
            pieces = []
            while (piece := await r.chunk()) is not None:
                pieces.append(bytes(piece))
        assert b"".join(pieces) == b"abcdefghij" and max(map(len, pieces)) <= 4
        assert r.trailers == [(b"x-sum", b"55")]
        async with await c.get(url(server)) as r:   # left unread: closed, not pooled
            assert r.status == 200
        assert c.pooled() == [] and (c.connections, c.reused) == (1, 1)
        c.close()

    with RawHTTPServer(lambda req, conn, n: trailer) as server:
        run(main(server))


# -- errors and timeouts --------------------------------------------------------------------
def test_malformed_status_line_is_a_clear_error_and_the_client_recovers():
    def app(req, conn, n):
        if req.target == "/bad":
            conn.sendall(b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n")
            conn.settimeout(5)
            conn.recv(1)   # until the client's FIN
            return None
        return response(body=b"fine")

    async def main(server):
        c = new_client()
        with pytest.raises(ProtocolError) as exc:
            await c.get(url(server, "/bad"))
        assert str(exc.value) == ("malformed status line b'HTTP/1.1 2x0 OK' (%s)"
                                  % url(server, "/bad"))
        assert c.pooled() == []
        assert await (await c.get(url(server, "/ok"))).read() == b"fine"
        c.close()

    with RawHTTPServer(app) as server:
        run(main(server))
        assert server.connections == 2


def test_read_and_total_timeouts():
    async def main(server):
        c = new_client(read_timeout_ms=300)
        t0 = time.monotonic()
        with pytest.raises(OSError) as exc:
            await c.get(url(server, "/silent"))
        assert exc.value.errno == errno.ETIMEDOUT
        assert "no response data within 300 ms" in str(exc.value)
        assert 0.25 < time.monotonic() - t0 < 1.0
        c = new_client(read_timeout_ms=300, total_timeout_ms=700)
        t0 = time.monotonic()
        with pytest.raises(OSError) as exc:
            await (await c.get(url(server, "/trickle"))).read()
        assert exc.value.errno == errno.ETIMEDOUT
        assert "total timeout of 700 ms exceeded" in str(exc.value)
        assert 0.6 < time.monotonic() - t0 < 1.2
        assert c.pooled() == [] and c._open == []

    with RawHTTPServer(slow_server) as server:
        run(main(server))


def test_cancelled_request_drops_its_connection():
    def app(req, conn, n):
        if req.target == "/never":
            conn.recv(1)
            return None
        return response(body=b"ok")

    async def main(server):
        c = new_client()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(c.get(url(server, "/never")), 0.2)
        assert c.pooled() == [] and c._open == [] and len(c._spare) == 1
        assert await (await c.get(url(server, "/"))).read() == b"ok"
        c.close()

    with RawHTTPServer(app) as server:
        run(main(server))
        assert server.connections == 2


# -- it does not block the event loop -------------------------------------------------------
def test_quick_requests_complete_while_a_long_poll_is_held():
    def app(req, conn, n):
        if req.target == "/hold":
            time.sleep(1.0)   # the server holds the long poll
            return response(body=b"news")
        return response(body=req.target.encode())

    async def main(server):
        c = new_client(read_timeout_ms=3000)
        done = []

        async def long_poll():
            r = await c.get(url(server, "/hold"))
            assert await r.read() == b"news"
            done.append(("hold", time.monotonic()))

        async def quick():
            for i in range(5):
                r = await c.get(url(server, f"/q{i}"))
                assert await r.read() == f"/q{i}".encode()
                done.append((f"q{i}", time.monotonic()))

        t0 = time.monotonic()
        await asyncio.gather(long_poll(), quick())
        elapsed = time.monotonic() - t0
        c.close()
        return c, done, t0, elapsed

    with RawHTTPServer(app) as server:
        c, done, t0, elapsed = run(main(server))
        # the held request has one connection, the quick ones share another
        assert server.connections == 2 and c.connections == 2 and c.reused == 4
    assert [name for name, _ in done] == ["q0", "q1", "q2", "q3", "q4", "hold"]
    assert done[4][1] - t0 < 0.5      # the quick ones did not wait for the long poll
    assert 1.0 <= elapsed < 1.5


# -- connecting does not block the event loop ------------------------------------------------
class RecordingNative(NativeBackend):
    """The native backend, remembering the sockets it was asked to connect."""

    def __init__(self):
        super().__init__()
        self.socks = []

    def connect_start(self, sock, host, port, limit_ms):
        self.socks.append(sock)
        return super().connect_start(sock, host, port, limit_ms)


async def connect_while_ticking(c, target):
    """Request ``target`` (which must fail) while a task ticks every 50 ms: (the error,
    seconds the request took, ticks meanwhile)."""
    ticks = []
    stop = []

    async def ticker():
        while not stop:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.05)

    t = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    t0 = time.monotonic()
    try:
        await c.get(target)
    except OSError as e:
        error = e
    else:
        raise AssertionError("the connect did not fail")
    took = time.monotonic() - t0
    stop.append(1)
    await t
    return error, took, sum(t0 <= tick <= t0 + took for tick in ticks)


def test_connect_to_a_hanging_port_leaves_the_loop_free_and_times_out():
    backend = RecordingNative()

    async def main(port):
        c = new_client(connect_timeout_ms=1500, backend=backend)
        result = await connect_while_ticking(c, "http://127.0.0.1:%d/" % port)
        c.close()
        return c, result

    with HangingListener() as port:
        c, (error, took, ticks) = run(main(port))
    assert error.errno == errno.ETIMEDOUT and "1500 ms" in str(error)
    assert 1.45 <= took < 2.5, took
    assert ticks >= 20, ticks           # ~30 expected: the loop ran all along
    assert c.connections == 0 and c.pooled() == []
    sock = backend.socks[0]
    assert sock.tcp.states() == ["CLOSED", "SYN_SENT", "CLOSED"] and sock._closed


def test_connect_refused_and_cancelled_while_connecting():
    backend = RecordingNative()

    async def main(port):
        c = new_client(connect_timeout_ms=5000, backend=backend)
        with pytest.raises(OSError) as exc:
            await c.get("http://127.0.0.1:%d/" % closed_port())
        assert exc.value.errno == errno.ECONNREFUSED
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(c.get("http://127.0.0.1:%d/" % port), 0.3)
        assert c.connections == 0 and c._open == [] and len(c._spare) == 1
        c.close()

    with HangingListener() as port:
        run(main(port))
    refused, cancelled = backend.socks
    assert refused.tcp.states() == ["CLOSED", "SYN_SENT", "CLOSED"]
    assert cancelled.tcp.states() == ["CLOSED", "SYN_SENT", "CLOSED"]  # closed: CLOSE
    assert cancelled._closed and cancelled._handle is None


# -- the outbox, delivered by asyncio -------------------------------------------------------
def test_outbox_of_50_messages_delivered_exactly_once_by_id():
    box = Outbox(MemoryStore(), max_messages=100, max_bytes=65536)
    sent = {box.put(b'{"n": %d}' % i): b'{"n": %d}' % i for i in range(50)}
    server = DedupServer()
    try:
        async def main():
            c = new_client()
            n = await tasks.deliver(box, c, "http://127.0.0.1:%d/messages" % server.port,
                                    headers={"Content-Type": "application/json"})
            c.close()
            return n

        assert run(main()) == 50
        assert len(box) == 0 and box.delivered == 50
        assert server.wire == sorted(sent)            # each id POSTed once, in order
        assert server.messages == sent
        assert server.connections == 1
    finally:
        server.stop()


def test_outbox_keeps_what_the_server_did_not_acknowledge():
    refused = set()

    def app(req, conn, n):
        mid = int(req.header("x-message-id"))
        if mid == 10 and mid not in refused:   # fails once, then is accepted
            refused.add(mid)
            return response(503, b"busy", reason="Service Unavailable")
        return response(body=b"ok")

    box = Outbox(MemoryStore())
    ids = [box.put(b"m%d" % i) for i in range(20)]

    async def main(server):
        c = new_client()
        target = url(server, "/messages")
        first = await tasks.deliver(box, c, target)
        assert box.ids() == ids[9:]                  # message 10 stays, with all after it
        second = await tasks.deliver(box, c, target)
        server.stop()
        box.put(b"offline")
        with pytest.raises(OSError):
            await tasks.deliver(box, c, target)     # the error propagates, nothing lost
        c.close()
        return first, second

    with RawHTTPServer(app) as server:
        assert run(main(server)) == (9, 11)
        delivered = [int(r.header("x-message-id")) for r in server.requests]
    assert delivered == ids[:10] + ids[9:]           # only the refused one was sent twice
    assert len(box) == 1 and box.peek() == (ids[-1] + 1, b"offline")


# -- over the virtual modem ----------------------------------------------------------------
def test_keep_alive_chunked_body_and_a_free_loop_over_the_virtual_modem():
    from modemrig import Rig

    body = bytes(range(256)) * 12 + b"end"
    wires = {"/small": response(body=b"tiny"),
             "/chunked": response(body=body, framing="chunked", chunk=1000)}

    def app(req, conn, n):
        if req.target == "/slow":
            time.sleep(0.5)   # the client polls the modem meanwhile, awaiting between
            return response(body=b"late")
        return wires[req.target]

    async def main(server, rig):
        c = AsyncClient(chunk=512, backend=rig.modem, read_timeout_ms=5000, poll_ms=50)
        ticks = []
        stop = []

        async def ticker():
            while not stop:
                ticks.append(1)
                await asyncio.sleep(0.01)

        t = asyncio.create_task(ticker())
        for _ in range(4):
            assert await (await c.get(url(server, "/small"))).read() == b"tiny"
        assert await (await c.get(url(server, "/chunked"))).read() == body
        assert await (await c.get(url(server, "/slow"))).read() == b"late"
        stop.append(1)
        await t
        c.close()
        return c, len(ticks)

    rig = Rig()
    try:
        with RawHTTPServer(app) as server:
            c, ticks = run(main(server, rig))
            assert server.connections == 1 and (c.connections, c.reused) == (1, 5)
            assert server.wait_for(lambda: server.closed_by_client == 1)
        assert ticks >= 10     # the ticker ran while the client awaited the response
    finally:
        rig.close()


def test_connect_over_the_virtual_modem_leaves_the_loop_free_and_times_out():
    """The same over the modem: AT+CIPOPEN answers OK at once, the +CIPOPEN URC is
    awaited; at the limit the client aborts the link (AT+CIPCLOSE)."""
    from modemrig import Rig

    async def main(rig, port):
        c = AsyncClient(backend=rig.modem, connect_timeout_ms=1500, read_timeout_ms=5000,
                        poll_ms=50)
        result = await connect_while_ticking(c, "http://127.0.0.1:%d/" % port)
        c.close()
        return result

    with Rig() as rig, HangingListener() as port:
        error, took, ticks = run(main(rig, port))
        assert all(link is None for link in rig.modem.links)   # the link was closed
    assert error.errno == errno.ETIMEDOUT and "no +CIPOPEN within 1500 ms" in str(error)
    assert 1.45 <= took < 2.5, took
    assert ticks >= 20, ticks
