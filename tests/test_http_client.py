"""The firmware's HTTP client on CPython against real HTTP servers on 127.0.0.1 (the
standard library's http.server, and a raw-socket server for the exact bytes a test
needs), and over the virtual SIM7600. Connections are counted on the server side."""

from __future__ import annotations

import errno
import hashlib
import http.server
import socket
import threading
import time
import tracemalloc

import pytest

from synack.http.client import Client
from synack.http.errors import (ConnectionClosed, LimitError, LocalProtocolError,
                                ProtocolError, StatusError, TooManyRedirects)
from synack.native import NativeBackend
from synack_host.hil.servers import ScriptedServer

MiB = 1 << 20


# -- servers ------------------------------------------------------------------------
class Request:
    def __init__(self, method, target, version, headers, body):
        self.method, self.target, self.version = method, target, version
        self.headers, self.body = headers, body

    def header(self, name, default=""):
        return self.headers.get(name.lower(), default)


def read_request(f):
    """One request from a socket file, or None at the end of the connection."""
    line = f.readline()
    while line in (b"\r\n", b"\n"):
        line = f.readline()
    if not line:
        return None
    method, target, version = line.decode("latin-1").split()
    headers = {}
    while True:
        h = f.readline()
        if h in (b"\r\n", b"\n", b""):
            break
        name, _, value = h.decode("latin-1").partition(":")  # the bytes, one char each
        headers[name.strip().lower()] = value.strip()
    body = b""
    if headers.get("transfer-encoding") == "chunked":
        while True:
            size = int(f.readline().split(b";")[0], 16)
            if size == 0:
                while f.readline() not in (b"\r\n", b"\n", b""):
                    pass
                break
            body += f.read(size)
            f.readline()
    elif "content-length" in headers:
        body = f.read(int(headers["content-length"]))
    return Request(method, target, version, headers, body)


def response(status=200, body=b"", headers=(), framing="length", version="HTTP/1.1",
             chunk=4096, reason="OK"):
    """Response bytes; framing "length", "chunked", "close" (no length) or "none"."""
    head = [f"{version} {status} {reason}"] + [f"{k}: {v}" for k, v in headers]
    if framing == "length":
        head.append(f"Content-Length: {len(body)}")
    elif framing == "chunked":
        head.append("Transfer-Encoding: chunked")
    out = bytearray(("\r\n".join(head) + "\r\n\r\n").encode())
    if framing == "chunked":
        for i in range(0, len(body), chunk):
            piece = body[i:i + chunk]
            out += b"%x\r\n" % len(piece) + piece + b"\r\n"
        out += b"0\r\n\r\n"
    elif framing != "none":
        out += body
    return bytes(out)


class RawHTTPServer(ScriptedServer):
    """Serves ``app(request, conn, n)`` (n: index of the request on its connection),
    which returns the response bytes, or None when it has dealt with the connection
    itself and it must be closed. Keeps the connection open while both sides allow it,
    the way an HTTP/1.1 server does. ``closed_by_client`` counts connections that ended
    with the client's FIN while the server was waiting for a request."""

    def __init__(self, app):
        self.app = app
        self.requests: list[Request] = []
        self.closed_by_client = 0
        super().__init__(self._conn)

    def _conn(self, conn):
        f = conn.makefile("rb")
        n = 0
        while True:
            req = read_request(f)
            if req is None:
                with self._lock:
                    self.closed_by_client += not self.stopping
                return
            with self._lock:
                self.requests.append(req)
            out = self.app(req, conn, n)
            n += 1
            if out is None:
                return
            conn.sendall(out)
            head = out[:out.find(b"\r\n\r\n")].lower()  # no copy of a big body
            if (b"connection: close" in head or req.header("connection") == "close"
                    or (head.startswith(b"http/1.0") and b"keep-alive" not in head)
                    or (b"content-length" not in head and b"chunked" not in head
                        and not head.split(b" ")[1].startswith((b"1", b"204", b"304")))):
                return


class RealServer:
    """The standard library's ThreadingHTTPServer with a handler class from the test,
    counting accepted TCP connections."""

    def __init__(self, handler_cls, protocol="HTTP/1.1"):
        handler_cls.protocol_version = protocol
        handler_cls.timeout = 10
        handler_cls.log_message = lambda *a: None
        handler_cls.disable_nagle_algorithm = True  # headers and body leave at once
        outer = self
        self.connections = 0

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

            def process_request(self, request, client_address):
                outer.connections += 1
                super().process_request(request, client_address)

        self.httpd = Server(("127.0.0.1", 0), handler_cls)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path="/"):
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(2)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"hello " + self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def url(server, path="/"):
    return f"http://127.0.0.1:{server.port}{path}"


def new_client(**kw):
    kw.setdefault("read_timeout_ms", 5000)
    kw.setdefault("backend", NativeBackend())
    return Client(**kw)


@pytest.fixture
def client():
    c = new_client()
    yield c
    c.close()


# -- keep-alive, HTTP/1.0, Connection: close -------------------------------------------
def test_http11_keep_alive_uses_one_connection(client):
    with RealServer(Hello) as server:
        for i in range(50):
            r = client.get(server.url(f"/n{i}"))
            assert (r.status, r.read()) == (200, f"hello /n{i}".encode())
        assert server.connections == 1
    assert (client.connections, client.reused, client.requests) == (1, 49, 50)


def test_http10_server_closes_after_each_response(client):
    with RealServer(Hello, protocol="HTTP/1.0") as server:
        for _ in range(20):
            r = client.get(server.url())
            assert r.version == 10 and r.read() == b"hello /"
        assert server.connections == 20
    assert client.connections == 20 and client.pooled() == []


def test_http10_client_closes_unless_keep_alive_is_agreed():
    def app(req, conn, n):
        keep = req.header("connection").lower() == "keep-alive"
        return response(body=req.version.encode(), version="HTTP/1.0",
                        headers=[("Connection", "keep-alive")] if keep else [])
    with RawHTTPServer(app) as server:
        plain = new_client(http10=True)
        for _ in range(3):
            assert plain.get(url(server)).read() == b"HTTP/1.0"
        assert server.connections == 3
        keep = new_client(http10=True, keep_alive=True)
        for _ in range(3):
            assert keep.get(url(server)).read() == b"HTTP/1.0"
        assert server.connections == 4
        assert server.requests[-1].header("connection") == "keep-alive"
        keep.close()
        plain.close()


def test_connection_close_from_either_side():
    def app(req, conn, n):
        return response(body=b"x", headers=[("Connection", "close")] if "bye" in req.target
                        else [])
    with RawHTTPServer(app) as server:
        c = new_client()
        c.get(url(server, "/a")).read()
        c.get(url(server, "/bye")).read()   # server says close: not pooled
        assert c.pooled() == []
        c.get(url(server, "/b")).read()
        assert server.connections == 2
        c.get(url(server, "/c"), headers={"Connection": "close"}).read()  # we say close
        assert server.requests[-1].header("connection") == "close"
        assert c.pooled() == []
        c.close()
        quitter = new_client(keep_alive=False)
        quitter.get(url(server)).read()
        quitter.get(url(server)).read()
        assert server.connections == 4
        assert server.requests[-1].header("connection") == "close"


def test_pool_keeps_at_most_max_pool_idle_connections_closing_the_longest_idle():
    servers = [RawHTTPServer(lambda req, conn, n: response(body=b"ok")) for _ in range(3)]
    try:
        c = new_client(max_pool=2)
        for server in servers:
            assert c.get(url(server)).read() == b"ok"
        assert c.pooled() == [("127.0.0.1", servers[1].port), ("127.0.0.1", servers[2].port)]
        assert servers[0].wait_for(lambda: servers[0].closed_by_client == 1)  # closed
        assert c.get(url(servers[2])).read() == b"ok"  # pooled ones are reused
        assert (c.connections, c.reused) == (3, 1)
        c.close()
        assert c.pooled() == []
    finally:
        for server in servers:
            server.stop()


def test_connection_with_bytes_beyond_the_response_is_not_reused():
    # A server that sent more than the response it announced: the stream is out of step
    # (those bytes would be read as the next response), so the connection is closed.
    def app(req, conn, n):
        return response(body=b"hello") + b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale"
    with RawHTTPServer(app) as server:
        c = new_client()
        assert c.get(url(server, "/a")).read() == b"hello"
        assert c.pooled() == []
        assert c.get(url(server, "/b")).read() == b"hello"
        assert (c.connections, c.reused, server.connections) == (2, 0, 2)
        c.close()


def test_idle_connection_closed_by_server_is_noticed_before_reuse():
    def app(req, conn, n):
        conn.sendall(response(body=b"once"))
        return None   # then close, as a server whose keep-alive timeout ran out
    with RawHTTPServer(app) as server:
        c = new_client()
        assert c.get(url(server)).read() == b"once"
        server.wait_for(lambda: server.connections == 1)
        time.sleep(0.05)   # let the FIN arrive
        for _ in range(3):
            assert c.get(url(server)).read() == b"once"
            time.sleep(0.05)
        assert (c.retries, c.connections, server.connections) == (0, 4, 4)
        c.close()


def test_stale_connection_is_retried_once_for_idempotent_requests():
    # The server reads the second request on a connection and closes without a reply:
    # the request crossed the server's close, which no probe can see in advance.
    def app(req, conn, n):
        return None if n == 1 else response(body=req.method.encode())
    with RawHTTPServer(app) as server:
        c = new_client()
        assert c.get(url(server)).read() == b"GET"
        assert c.get(url(server)).read() == b"GET"
        assert (c.retries, c.connections) == (1, 2)
        # POST is not idempotent: the failure is reported, not hidden by a resend
        with pytest.raises(ConnectionClosed) as exc:
            c.post(url(server), body=b"data")
        assert "before sending a response" in str(exc.value)
        assert str(exc.value).endswith(f"({url(server)})")
        assert sum(r.method == "POST" for r in server.requests) == 1
        c.close()


# -- bodies -------------------------------------------------------------------------
CHUNK = 4096


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
@pytest.mark.parametrize("size", [1, 1000, 65537, MiB])
def test_body_streams_byte_exact_in_bounded_memory(framing, size):
    body = bytes((i * 7 + i // 251) & 0xFF for i in range(size))
    wire = response(body=body, framing=framing, chunk=3001)
    with RawHTTPServer(lambda req, conn, n: wire) as server:
        c = new_client(chunk=CHUNK, max_body=MiB)
        r = c.get(url(server))
        assert r.length == (size if framing == "length" else None)
        buf = bytearray(1500)         # the caller's buffer, smaller than the chunk
        digest = hashlib.sha256()
        total = 0
        tracemalloc.start()
        try:
            while True:
                n = r.readinto(buf)
                if not n:
                    break
                digest.update(memoryview(buf)[:n])
                total += n
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert total == size and digest.digest() == hashlib.sha256(body).digest()
        # The client's one receive buffer is the chunk, allocated before the body; all
        # that is allocated while the body streams (memoryview and int objects
        # included) stays below one more chunk, whatever the body size.
        assert len(c._buf) == CHUNK
        assert peak < CHUNK, f"{peak} bytes allocated while streaming"
        assert c.pooled() == ([] if framing == "close" else [("127.0.0.1", server.port)])
        c.close()


def test_read_iter_chunks_and_trailers():
    chunked = response(body=b"abcdefghij", framing="chunked", chunk=3)
    trailer = chunked[:-2] + b"X-Sum: 55\r\n\r\n"
    wires = [response(body=b"whole body"), chunked, trailer]
    with RawHTTPServer(lambda req, conn, n: wires[n]) as server:
        c = new_client(chunk=4)
        assert c.get(url(server)).read() == b"whole body"
        r = c.get(url(server))
        views = [bytes(v) for v in r.iter_chunks()]
        assert b"".join(views) == b"abcdefghij" and max(map(len, views)) <= 4
        r = c.get(url(server))
        assert r.read() == b"abcdefghij" and r.trailers == [(b"x-sum", b"55")]
        assert server.connections == 1
        c.close()


def test_head_204_304_and_1xx_have_no_body_and_keep_the_connection():
    def app(req, conn, n):
        if req.method == "HEAD":
            return response(body=b"x" * 100, framing="none",
                            headers=[("Content-Length", "100")])
        if req.target == "/204":
            return response(204, framing="none", reason="No Content")
        if req.target == "/304":
            return response(304, framing="none", headers=[("ETag", '"v1"')])
        return (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                + response(body=b"after interim"))
    with RawHTTPServer(app) as server:
        c = new_client()
        r = c.head(url(server))
        assert (r.status, r.length, r.read(), r.done) == (200, 0, b"", True)
        assert c.get(url(server, "/204")).status == 204
        r = c.get(url(server, "/304"))
        assert (r.status, r.header("ETag"), r.read()) == (304, '"v1"', b"")
        assert c.get(url(server, "/")).read() == b"after interim"
        assert server.connections == 1 and c.reused == 3
        c.close()


def test_request_bodies_fixed_and_chunked():
    with RawHTTPServer(lambda req, conn, n: response(body=req.body)) as server:
        c = new_client(chunk=64)
        assert c.post(url(server), body=b"small").read() == b"small"
        big = bytes(range(256)) * 40
        assert c.request("PUT", url(server), body=big).read() == big
        assert c.post(url(server), body=(p for p in (b"one ", b"", b"two"))).read() == b"one two"
        assert server.requests[-1].header("transfer-encoding") == "chunked"
        assert c.post(url(server)).read() == b""
        assert server.requests[-1].header("content-length") == "0"
        assert server.connections == 1
        with pytest.raises(LocalProtocolError):
            new_client(http10=True).post(url(server), body=iter([b"x"]))
        c.close()


# -- redirects ------------------------------------------------------------------------
def test_redirects_are_followed_on_the_same_connection():
    def app(req, conn, n):
        if req.target.startswith("/hop"):
            k = int(req.target[4:])
            return response(302, b"moved", headers=[("Location", f"/hop{k - 1}" if k
                                                     else "final")], reason="Found")
        if req.target == "/see-other":
            return response(303, headers=[("Location", "/final")], reason="See Other")
        if req.target == "/temp":
            return response(307, headers=[("Location", "/final")], reason="Temporary")
        if req.target == "/loop":
            return response(301, headers=[("Location", "/loop")], reason="Moved")
        return response(body=f"{req.method} {req.target} {req.body.decode()}".encode())
    with RawHTTPServer(app) as server:
        c = new_client(max_redirects=5)
        r = c.get(url(server, "/hop4"))
        assert r.read() == b"GET /final " and r.url == url(server, "/final")
        assert c.redirects == 5
        assert c.post(url(server, "/see-other"), body=b"b").read() == b"GET /final "
        assert c.post(url(server, "/temp"), body=b"b").read() == b"POST /final b"
        r = c.get(url(server, "/hop2"), max_redirects=0)
        assert (r.status, r.header("location")) == (302, "/hop1")
        r.close()
        with pytest.raises(TooManyRedirects) as exc:
            c.get(url(server, "/loop"))
        assert exc.value.status == 301
        assert str(exc.value) == f"HTTP 301: more than 5 redirects ({url(server, '/loop')})"
        with pytest.raises(TooManyRedirects):
            c.get(url(server, "/hop9"))
        assert server.connections == 2   # the /hop9 error dropped one connection
        c.close()


# -- errors: clear message, connection closed, client usable afterwards -----------------
BAD = {
    "/oversize-header": b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 10000 + b"\r\n\r\n",
    "/many-headers": b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 100 + b"\r\n",
    "/bad-status": b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
    "/bad-chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n",
    "/too-big": response(body=b"z" * 5000),
    "/cut": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this",
}


def bad_app(req, conn, n):
    if req.target == "/endless":
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        conn.setblocking(False)
        piece = b"400\r\n" + b"e" * 1024 + b"\r\n"
        while True:   # until the client closes (then the send or recv fails)
            try:
                if conn.recv(1) == b"":
                    return None
            except BlockingIOError:
                pass
            try:
                conn.send(piece)
            except BlockingIOError:
                time.sleep(0.001)
    if req.target in BAD:
        conn.sendall(BAD[req.target])
        if req.target == "/cut":
            return None
        conn.settimeout(5)
        conn.recv(1)   # wait for the client's FIN, as a real server would
        return None
    return response(body=b"fine")


@pytest.mark.parametrize("path, error, text", [
    ("/oversize-header", LimitError, "header line longer than 1024 bytes"),
    ("/many-headers", LimitError, "more than 32 header fields"),
    ("/bad-status", ProtocolError, "malformed status line b'HTTP/1.1 2x0 OK'"),
    ("/bad-chunk", ProtocolError, "bad chunk size line b'xyz'"),
    ("/too-big", LimitError, "body of 5000 bytes exceeds the limit of 4096"),
    ("/endless", LimitError, "chunked body exceeds the limit of 65536 bytes"),
    ("/cut", ProtocolError, "connection closed after 9 of 100 body bytes"),
])
def test_bad_responses_raise_clear_errors_and_close_the_connection(path, error, text):
    with RawHTTPServer(bad_app) as server:
        c = new_client(max_body=4096 if path == "/too-big" else 65536)
        t0 = time.monotonic()
        with pytest.raises(error) as exc:
            r = c.get(url(server, path))
            r.read()
        assert text in str(exc.value)
        assert url(server, path) in str(exc.value)
        assert time.monotonic() - t0 < 3
        assert c.pooled() == []
        assert server.wait_for(lambda: not any(t.is_alive() for t in server._threads))
        assert c.get(url(server, "/ok")).read() == b"fine"   # a fresh connection works
        assert server.connections == 2
        c.close()


# Server bytes that are not text: a header value, reason phrase or Location that is not
# UTF-8 (or not ASCII), a non-ASCII digit, a Content-Length of 15 digits. Only an
# HTTPError (or OSError) may come out, and the client stays usable.
NOT_TEXT = {
    "/latin": b"HTTP/1.1 200 OK\r\nX-Name: caf\xe9\r\nX-Utf8: caf\xc3\xa9\r\n"
              b"Content-Length: 2\r\n\r\nok",
    "/reason": b"HTTP/1.1 404 Nicht gef\xfcnden\r\nContent-Length: 0\r\n\r\n",
    "/loc-bytes": b"HTTP/1.1 302 Found\r\nLocation: /\xff\xfe\r\nContent-Length: 0\r\n\r\n",
    "/loc-utf8": b"HTTP/1.1 302 Found\r\nLocation: http://h\xc3\xa9.example/\r\n"
                 b"Content-Length: 0\r\n\r\n",
    "/loc-host": b"HTTP/1.1 302 Found\r\nLocation: http://../x\r\nContent-Length: 0\r\n\r\n",
    "/loc-label": b"HTTP/1.1 302 Found\r\nLocation: http://" + b"a" * 64
                  + b".example/\r\nContent-Length: 0\r\n\r\n",
    "/loc-port": b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:+80/\r\n"
                 b"Content-Length: 0\r\n\r\n",
}


def not_text_app(req, conn, n):
    if req.target in ("/huge", "/lie"):   # a petabyte (or 1 MB) announced, 3 bytes sent
        size = b"999999999999999" if req.target == "/huge" else b"1000000"
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: " + size + b"\r\n\r\nabc")
        return None
    return NOT_TEXT.get(req.target) or response(body=b"fine")


def test_server_bytes_that_are_not_text_raise_only_http_errors():
    with RawHTTPServer(not_text_app) as server:
        c = new_client()
        r = c.get(url(server, "/latin"))
        # not UTF-8: one character per byte (ISO-8859-1); UTF-8 stays UTF-8
        assert (r.header("x-name"), r.header("X-Utf8")) == ("caf\xe9", "caf\xe9")
        assert r.head.header(b"x-name") == b"caf\xe9" and r.read() == b"ok"
        r = c.get(url(server, "/reason"))
        with pytest.raises(StatusError) as exc:
            r.raise_for_status()
        assert str(exc.value) == f"HTTP 404: Nicht gef\xfcnden ({url(server, '/reason')})"
        for path, text in (("/loc-bytes", "Location is not a URL: b'/\\xff\\xfe'"),
                           ("/loc-utf8", "Location is not a URL"),
                           ("/loc-host", "bad host in URL 'http://../x'"),
                           ("/loc-label", "bad host in URL"),
                           ("/loc-port", "bad port in URL 'http://127.0.0.1:+80/'")):
            with pytest.raises((ProtocolError, LocalProtocolError)) as exc:
                c.get(url(server, path))
            assert text in str(exc.value), path
            assert url(server, path) in str(exc.value)
            assert c.get(url(server, "/ok")).read() == b"fine"
        assert c.redirects == 5 and c.connections == 1   # the 302s were drained
        c.close()


@pytest.mark.parametrize("max_body", [None, MiB])
def test_a_huge_content_length_allocates_nothing_up_front(max_body):
    # read() grows its buffer with the bytes that arrive: a Content-Length alone, even
    # one under max_body, allocates nothing (on ESP32 1 MB would be a MemoryError).
    with RawHTTPServer(not_text_app) as server:
        c = new_client(max_body=max_body)
        if max_body is not None:
            with pytest.raises(LimitError, match="body of 999999999999999 bytes exceeds"):
                c.get(url(server, "/huge"))
        path = "/huge" if max_body is None else "/lie"
        r = c.get(url(server, path))
        assert r.length == (999999999999999 if max_body is None else 1000000)
        tracemalloc.start()
        try:
            with pytest.raises(ProtocolError, match=f"connection closed after 3 of "
                               f"{r.length} body bytes"):
                r.read()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 16 * 1024, peak
        assert c.get(url(server, "/ok")).read() == b"fine"
        c.close()


def test_async_client_huge_content_length_and_bad_location():
    import asyncio

    from synack.http.aclient import AsyncClient

    async def main(server):
        c = AsyncClient(read_timeout_ms=5000, backend=NativeBackend(), max_body=None)
        r = await c.get(url(server, "/huge"))
        with pytest.raises(ProtocolError, match="connection closed after 3 of"):
            await r.read()
        r = await c.get(url(server, "/latin"))
        assert r.header("x-name") == "caf\xe9" and await r.read() == b"ok"
        with pytest.raises(ProtocolError, match="Location is not a URL"):
            await c.get(url(server, "/loc-bytes"))
        assert await (await c.get(url(server, "/ok"))).read() == b"fine"
        c.close()

    with RawHTTPServer(not_text_app) as server:
        asyncio.run(asyncio.wait_for(main(server), 30))


def test_status_error_and_limits_carry_the_status():
    def app(req, conn, n):
        return response(503, b"busy", reason="Service Unavailable")
    with RawHTTPServer(app) as server:
        c = new_client()
        r = c.get(url(server))
        assert r.read() == b"busy"
        with pytest.raises(StatusError) as exc:
            r.raise_for_status()
        assert exc.value.status == 503
        assert str(exc.value) == f"HTTP 503: Service Unavailable ({url(server)})"
        c.close()


def slow_server(req, conn, n):
    """``/silent`` says nothing; anything else trickles a 20-byte body, a byte every
    100 ms: never a read timeout, but a total timeout."""
    if req.target == "/silent":
        conn.recv(1)   # says nothing; closes when the client does
        return None
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n")
    conn.settimeout(0.1)
    for _ in range(20):
        try:
            if conn.recv(1) == b"":
                return None   # the client gave up
        except TimeoutError:
            conn.sendall(b".")
    return None


def test_read_and_total_timeouts():
    with RawHTTPServer(slow_server) as server:
        c = new_client(read_timeout_ms=300)
        t0 = time.monotonic()
        with pytest.raises(OSError) as exc:
            c.get(url(server, "/silent"))
        assert exc.value.errno == errno.ETIMEDOUT
        assert "no response data within 300 ms" in str(exc.value)
        assert 0.25 < time.monotonic() - t0 < 1.0
        c = new_client(read_timeout_ms=300, total_timeout_ms=700)
        t0 = time.monotonic()
        with pytest.raises(OSError) as exc:
            c.get(url(server, "/trickle")).read()
        assert exc.value.errno == errno.ETIMEDOUT
        assert "total timeout of 700 ms exceeded" in str(exc.value)
        assert 0.6 < time.monotonic() - t0 < 1.2
        assert c.pooled() == []


def test_connection_refused_and_bad_urls():
    with RawHTTPServer(lambda req, conn, n: None) as server:
        port = server.port
    c = new_client(connect_timeout_ms=1000)
    with pytest.raises(OSError) as exc:
        c.get(f"http://127.0.0.1:{port}/")
    assert exc.value.errno == errno.ECONNREFUSED
    with pytest.raises(LocalProtocolError, match="only http and https"):
        c.get("ftp://example.com/")
    with pytest.raises(LocalProtocolError, match="CR, LF or NUL"):
        c.get(f"http://127.0.0.1:{port}/", headers={"X": "a\r\nInjected: 1"})
    assert c.connections == 0


def test_new_request_closes_an_unread_response():
    with RawHTTPServer(lambda req, conn, n: response(body=b"q" * 10000)) as server:
        c = new_client()
        first = c.get(url(server))
        assert c.get(url(server)).read() == b"q" * 10000
        assert first.done and first.read() == b""
        assert server.connections == 2
        c.close()


# -- over the virtual modem ------------------------------------------------------------
def test_keep_alive_and_chunked_body_over_the_virtual_modem():
    from modemrig import Rig

    body = bytes(range(256)) * 12 + b"end"
    wires = {"/small": response(body=b"tiny"), "/chunked": response(body=body,
                                                                    framing="chunked",
                                                                    chunk=1000)}
    rig = Rig()
    try:
        with RawHTTPServer(lambda req, conn, n: wires[req.target]) as server:
            c = Client(chunk=512, backend=rig.modem, read_timeout_ms=5000)
            for _ in range(4):
                assert c.get(url(server, "/small")).read() == b"tiny"
            r = c.get(url(server, "/chunked"))
            assert r.read() == body
            assert server.connections == 1 and c.connections == 1
            c.close()
            assert server.wait_for(lambda: server.closed_by_client == 1)
    finally:
        rig.close()


def test_http10_and_stale_connection_over_the_virtual_modem():
    from modemrig import Rig

    def app(req, conn, n):
        if req.target == "/old":
            return response(body=b"1.0", version="HTTP/1.0")
        return None if n == 1 else response(body=b"again")
    rig = Rig()
    try:
        with RawHTTPServer(app) as server:
            c = Client(chunk=512, backend=rig.modem, read_timeout_ms=5000)
            for _ in range(2):
                assert c.get(url(server, "/old")).read() == b"1.0"
            assert server.connections == 2
            assert c.get(url(server, "/new")).read() == b"again"
            assert c.get(url(server, "/new")).read() == b"again"   # retried once
            assert (c.retries, server.connections) == (1, 4)
            c.close()
    finally:
        rig.close()


def test_real_server_with_plain_sockets_sees_the_same_bytes():
    # The request bytes as a server receives them: exact, minimal, no surprises.
    seen = []

    def handler(conn):
        seen.append(conn.recv(4096))
        conn.sendall(response(body=b""))
    with ScriptedServer(handler) as server:
        c = new_client()
        c.get(url(server, "/p?q=1"), headers=[("Accept", "*/*")]).read()
        c.close()
    assert seen == [f"GET /p?q=1 HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                    "Accept: */*\r\n\r\n".encode()]
    _ = socket  # the module is used by ScriptedServer's handler type
