"""Details of the HTTP clients' public API (synack.http.client, .aclient, .core) against
real servers on 127.0.0.1: what drain() returns, raise_for_status() at the 400 boundary
and its message, head()/post() passing their options on, pooled_keys() of plain http,
which Location a redirect may follow (printable ASCII, no space) and the error naming a
bad one, the exact timeout messages, and which socket errors mean "the pooled connection
was stale"."""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
import threading
import time

import pytest
from test_http_client import RawHTTPServer, new_client, response, slow_server, url

from synack.http import core
from synack.http.aclient import AsyncClient
from synack.http.errors import ConnectionClosed, ProtocolError, StatusError
from synack.http.head import Head
from synack.native import NativeBackend


def echo(req, conn, n):
    """The body is what the request said: method, target, X-Tag header and body."""
    body = f"{req.method} {req.target} {req.header('x-tag')} ".encode() + req.body
    status, reason = 200, "OK"
    if req.target.startswith("/status/"):
        status = int(req.target.split("/")[2])
        reason = "" if req.target.endswith("/quiet") else "Something"
    if req.method == "HEAD":
        return response(status, b"", reason=reason, headers=[("Content-Length", "0")],
                        framing="none")
    return response(status, body, reason=reason)


@pytest.fixture
def server():
    with RawHTTPServer(echo) as s:
        yield s


BIG = "/" + "x" * 3000     # the body echoes it: more than one 1024-byte read


def test_drain_returns_the_bytes_it_discarded(server):
    c = new_client()
    r = c.get(url(server, BIG))
    assert r.drain() == len("GET %s  " % BIG)
    assert r.drain() == 0
    c.close()


def test_async_drain_returns_the_bytes_it_discarded(server):
    async def main():
        c = AsyncClient(read_timeout_ms=5000, backend=NativeBackend())
        r = await c.get(url(server, BIG))
        n = await r.drain()
        c.close()
        return n

    assert asyncio.run(asyncio.wait_for(main(), 30)) == len("GET %s  " % BIG)


def test_raise_for_status_from_400_on_with_the_reason(server):
    c = new_client()
    c.get(url(server, "/status/399")).raise_for_status()
    for status in (400, 404, 500):
        u = url(server, "/status/%d" % status)
        with pytest.raises(StatusError) as exc:
            c.get(u).raise_for_status()
        assert (exc.value.status, str(exc.value)) == (status, f"HTTP {status}: Something ({u})")
    u = url(server, "/status/503/quiet")
    with pytest.raises(StatusError) as exc:
        c.get(u).raise_for_status()
    assert str(exc.value) == f"HTTP 503: request failed ({u})"
    c.close()


def test_head_and_post_pass_their_options_on(server):
    c = new_client()
    r = c.head(url(server, "/h"), headers={"X-Tag": "t1"})
    assert (r.status, r.read()) == (200, b"")
    assert server.requests[-1].method == "HEAD" and server.requests[-1].header("x-tag") == "t1"
    r = c.post(url(server, "/p"), b"data", headers={"X-Tag": "t2"})
    assert r.read() == b"POST /p t2 data"
    c.close()


def test_pooled_keys_name_the_scheme(server):
    c = new_client()
    c.get(url(server, "/")).read()
    assert c.pooled_keys() == [("http", "127.0.0.1", server.port)]
    c.close()


def redirector(req, conn, n):
    if req.target.startswith("/go"):
        location = bytes.fromhex(req.target[4:])
        return (b"HTTP/1.1 302 Found\r\nLocation: " + location
                + b"\r\nContent-Length: 0\r\n\r\n")
    return response(200, req.target.encode())


@pytest.mark.parametrize("location", [b"/a!b", b"/~x", b"/%20"])
def test_redirect_to_any_printable_location_is_followed(location):
    with RawHTTPServer(redirector) as s:
        c = new_client()
        assert c.get(url(s, "/go/" + location.hex())).read() == location
        c.close()


@pytest.mark.parametrize("location", [b"/a b", b"/a\x7fb", b"/a\x80b", b"/a\tb"])
def test_redirect_to_a_location_that_is_not_a_url_is_a_protocol_error(location):
    with RawHTTPServer(redirector) as s:
        c = new_client()
        u = url(s, "/go/" + location.hex())
        with pytest.raises(ProtocolError) as exc:
            c.get(u)
        assert exc.value.status == 302
        assert str(exc.value) == "HTTP 302: Location is not a URL: %r (%s)" % (location, u)
        c.close()


def test_a_bad_location_is_quoted_up_to_80_bytes():
    location = b"/" + b"x" * 90 + b" y"
    with RawHTTPServer(redirector) as s:
        c = new_client()
        u = url(s, "/go/" + location.hex())
        with pytest.raises(ProtocolError) as exc:
            c.get(u)
        assert exc.value.msg == "Location is not a URL: %r" % location[:80]
        c.close()


def test_timeout_messages_say_which_limit():
    with RawHTTPServer(slow_server) as s:
        c = new_client(read_timeout_ms=100)
        with pytest.raises(OSError) as exc:
            c.get(url(s, "/silent"))
        assert exc.value.args == (errno.ETIMEDOUT, "no response data within 100 ms")
        c = new_client(read_timeout_ms=150, total_timeout_ms=250)
        with pytest.raises(OSError) as exc:
            c.get(url(s, "/trickle")).read()
        assert exc.value.args == (errno.ETIMEDOUT, "total timeout of 250 ms exceeded")


def test_stale_connection_errors():
    for e in (ConnectionClosed("gone"), OSError(errno.ECONNRESET, "reset"),
              OSError(32, "broken pipe"), OSError(errno.ENOTCONN, "x"),
              OSError(errno.ECONNABORTED, "x")):
        assert core.is_stale(e), e
    for e in (OSError(errno.ETIMEDOUT, "timed out"), OSError(errno.ECONNREFUSED, "x"),
              ProtocolError("bad"), ValueError(errno.ECONNRESET)):
        assert not core.is_stale(e), e


# -- where a redirect leads: the plan after _follow (no I/O) --------------------------------
class Redirect:
    """The part of a response a redirect decision reads: status and head."""

    def __init__(self, status, location):
        self.status = status
        self.head = Head(11, status, b"Moved")
        self.head.headers.append((b"location", location))


def plan_for(method, u, body=None, headers=None):
    c = new_client()
    plan = core.Plan(c, method, u, body, headers, None, None)
    c._hop(plan)
    return c, plan


def test_relative_redirect_of_https_stays_https():
    c, plan = plan_for("GET", "https://h/a/b")
    c._follow(plan, Redirect(302, b"next"))
    assert plan.url == "https://h/a/next"


def test_redirect_from_https_to_http_is_refused_naming_both():
    c, plan = plan_for("GET", "https://h/a")
    with pytest.raises(ProtocolError) as exc:
        c._follow(plan, Redirect(301, b"http://h/x"))
    assert str(exc.value) == ("HTTP 301: redirect from https to http refused: b'http://h/x' "
                              "(https://h/a)")
    long = b"http://h/" + b"y" * 100
    with pytest.raises(ProtocolError) as exc:
        c._follow(plan, Redirect(301, long))
    assert exc.value.msg == "redirect from https to http refused: %r" % long[:80]


def test_see_other_turns_a_post_into_a_get_without_body_but_head_stays_head():
    for status in (301, 302, 303):
        c, plan = plan_for("POST", "http://h/form", b"data")
        c._follow(plan, Redirect(status, b"/done"))
        assert (plan.method, plan.body) == (b"GET", None)
        c, plan = plan_for("HEAD", "http://h/a")
        c._follow(plan, Redirect(status, b"/b"))
        assert plan.method == b"HEAD"
    for status in (307, 308):
        c, plan = plan_for("POST", "http://h/form", b"data")
        c._follow(plan, Redirect(status, b"/again"))
        assert (plan.method, plan.body) == (b"POST", b"data")


def test_credentials_do_not_follow_a_redirect_to_another_origin():
    headers = [("AUTHORIZATION", "Bearer t"), (b"X-Tag", "1")]
    c, plan = plan_for("GET", "http://h/a", headers=headers)
    c._follow(plan, Redirect(302, b"/same-origin"))
    assert plan.extra == headers
    for other in (b"http://other/", b"http://h:8080/", b"https://h/"):
        c, plan = plan_for("GET", "http://h/a", headers=headers)
        c._follow(plan, Redirect(302, other))
        assert plan.extra == [(b"X-Tag", "1")], other


# -- who does TLS: the client's tls= option -------------------------------------------------
def test_tls_option_is_checked_at_construction():
    with pytest.raises(ValueError) as exc:
        new_client(tls="mbedtls")
    assert str(exc.value) == "tls='mbedtls': None, 'software', 'modem' or a socket backend"
    for kw in ({"cert": "c.pem"}, {"key": "k.pem"}):
        with pytest.raises(ValueError) as exc:
            new_client(tls="modem", **kw)
        assert str(exc.value) == "tls='modem' does not take a client certificate (cert=, key=)"


def test_software_tls_needs_no_secure_backend():
    for tls in (None, "software"):
        assert new_client(tls=tls)._secure_backend() is None


def test_a_secure_backend_given_is_used_as_it_is():
    from test_sim7600_driver import Far, modem_on
    offload = modem_on(Far()).tls_offload()
    assert new_client(tls=offload)._secure_backend() is offload


def test_modem_tls_is_the_backends_offload_made_once():
    from test_sim7600_driver import Far, modem_on
    modem = modem_on(Far())
    c = new_client(tls="modem", backend=modem, tls_verify=False, cadata=b"CA")
    secure = c._secure_backend()
    assert secure is modem.tls_offload() and c._secure_backend() is secure
    assert (secure.cadata, secure.verify) == (b"CA", False)


def test_modem_tls_on_a_backend_without_an_offload_is_eopnotsupp():
    c = new_client(tls="modem")
    with pytest.raises(OSError) as exc:
        c.get("https://localhost:1/")
    assert exc.value.args == (errno.EOPNOTSUPP, "tls='modem': backend native has no TLS "
                                                "offload")


def test_every_retry_of_a_stale_connection_is_counted():
    def answers_once_per_connection(req, conn, n):
        return response(200, b"ok") if n == 0 else None   # the 2nd request: closed

    with RawHTTPServer(answers_once_per_connection) as s:
        c = new_client()
        for _ in range(3):
            assert c.get(url(s, "/")).read() == b"ok"
        assert c.retries == 2
        c.close()


@pytest.mark.parametrize("size", [0, 1, 1023, 1024, 1025, 3000])
@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_async_read_and_readinto_give_the_body_byte_exact(size, framing):
    body = bytes(range(256)) * (size // 256 + 1)
    body = body[:size]

    def app(req, conn, n):
        return response(200, body, framing=framing)

    async def main(server):
        c = AsyncClient(read_timeout_ms=5000, backend=NativeBackend())
        got = await (await c.get(url(server, "/"))).read()
        r = await c.get(url(server, "/"))
        buf = bytearray(10)
        n = await r.readinto(buf, 3)
        await r.drain()
        c.close()
        return got, n, bytes(buf)

    with RawHTTPServer(app) as server:
        got, n, buf = asyncio.run(asyncio.wait_for(main(server), 30))
    assert got == body
    assert n == min(3, size) and buf == body[:n] + bytes(10 - n)


def test_modem_tls_reads_the_ca_from_cafile(tmp_path):
    from test_sim7600_driver import Far, modem_on
    pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    (tmp_path / "ca.pem").write_bytes(pem)
    modem = modem_on(Far())
    c = new_client(tls="modem", backend=modem, cafile=str(tmp_path / "ca.pem"))
    assert c._secure_backend().cadata == pem


def test_modem_tls_on_a_backend_without_a_name_says_so():
    class Bare:
        pass

    with pytest.raises(OSError) as exc:
        new_client(tls="modem", backend=Bare())._secure_backend()
    assert exc.value.args[1] == "tls='modem': backend ? has no TLS offload"


# -- the asyncio client's waits ------------------------------------------------------------
def paced(monkeypatch):
    """The asyncio client on a clock that moves only by its own pauses: the pauses."""
    from synack.http import aclient
    clock = {"now": 0}
    pauses = []

    async def sleep_ms(ms):
        pauses.append(ms)
        clock["now"] += ms

    monkeypatch.setattr(aclient.tasks, "sleep_ms", sleep_ms)
    monkeypatch.setattr(aclient, "now", lambda: clock["now"])
    return pauses


def would_block(results):
    """A socket operation that would block (EAGAIN) until ``results`` runs out."""
    def op(arg):
        if results:
            results.pop()
            raise OSError(errno.EAGAIN, "would block")
        return 7
    return op


def test_async_wait_pauses_double_up_to_poll_ms_and_end_at_the_limit(monkeypatch):
    pauses = paced(monkeypatch)
    c = AsyncClient(poll_ms=20, backend=NativeBackend())
    with pytest.raises(OSError) as exc:
        asyncio.run(c._wait(would_block([1] * 99), None, None, 100, "could not send for %d ms"))
    assert exc.value.args == (errno.ETIMEDOUT, "could not send for 100 ms")
    assert pauses == [1, 2, 4, 8, 16, 20, 20, 20, 9]


def test_async_wait_without_a_limit_keeps_pausing(monkeypatch):
    pauses = paced(monkeypatch)
    c = AsyncClient(poll_ms=20, read_timeout_ms=None, backend=NativeBackend())
    assert asyncio.run(c._wait(would_block([1] * 7), None, None, None, "x %d")) == 7
    assert pauses == [1, 2, 4, 8, 16, 20, 20]


def silent(req, conn, n):
    """Says nothing after the request (or, for /partial, a head and 2 of 10 bytes)."""
    if req.target == "/partial":
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")
    conn.recv(1)
    return None


def async_get(server, path, read_ms, total_ms=None, body=None):
    async def main():
        c = AsyncClient(read_timeout_ms=read_ms, total_timeout_ms=total_ms,
                        backend=NativeBackend())
        try:
            if body is None:
                return await (await c.get(url(server, path))).read()
            return await (await c.post(url(server, path), body)).read()
        finally:
            c.close()
    return asyncio.run(asyncio.wait_for(main(), 30))


def test_async_timeouts_say_which_limit():
    with RawHTTPServer(silent) as s:
        for path, read_ms, total_ms, text in (
                ("/", 100, None, "no response data within 100 ms"),
                ("/", 1000, 150, "total timeout of 150 ms exceeded"),
                ("/partial", 100, None, "no response data within 100 ms")):
            with pytest.raises(OSError) as exc:
                async_get(s, path, read_ms, total_ms)
            assert exc.value.args == (errno.ETIMEDOUT, text), path


class Deaf:
    """A server on 127.0.0.1 that accepts connections and never reads from them."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.held = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        try:
            while True:
                self.held.append(self.sock.accept()[0])
        except OSError:
            pass

    def close(self):
        self.sock.close()
        for conn in self.held:
            conn.close()


def test_async_send_to_a_server_that_does_not_read_times_out():
    body = bytes(8 << 20)
    deaf = Deaf()
    try:
        for read_ms, total_ms, text in ((150, None, "could not send for 150 ms"),
                                        (5000, 200, "total timeout of 200 ms exceeded")):
            with pytest.raises(OSError) as exc:
                async_get(deaf, "/upload", read_ms, total_ms, body)
            assert exc.value.args == (errno.ETIMEDOUT, text)
    finally:
        deaf.close()


def test_sync_body_read_timeout_names_its_limit():
    with RawHTTPServer(silent) as s:
        c = new_client(read_timeout_ms=100)
        r = c.get(url(s, "/partial"))
        with pytest.raises(OSError) as exc:
            r.read()
        assert exc.value.args == (errno.ETIMEDOUT, "no response data within 100 ms")
        c.close()


def test_async_body_error_names_the_url():
    def bad_chunk(req, conn, n):
        return (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"2\r\nab\r\nzz\r\n")

    with RawHTTPServer(bad_chunk) as s:
        with pytest.raises(ProtocolError) as exc:
            async_get(s, "/c", 1000)
        assert exc.value.url == url(s, "/c")
        assert str(exc.value).endswith("(%s)" % url(s, "/c"))


def test_sync_readinto_fills_at_most_nbytes(server):
    c = new_client()
    r = c.get(url(server, "/abcdef"))
    buf = bytearray(10)
    assert r.readinto(buf, 3) == 3 and buf == b"GET" + bytes(7)
    r.close()
    c.close()


def test_sync_timeouts_of_the_head_say_which_limit():
    with RawHTTPServer(silent) as s:
        for kw, per_request, text in (
                ({"read_timeout_ms": 1000, "total_timeout_ms": 150}, {},
                 "total timeout of 150 ms exceeded"),
                ({"read_timeout_ms": 5000}, {"read_timeout_ms": 100},
                 "no response data within 100 ms")):
            c = new_client(**kw)
            with pytest.raises(OSError) as exc:
                c.get(url(s, "/"), **per_request)
            assert exc.value.args == (errno.ETIMEDOUT, text)
            c.close()


def test_a_client_without_a_read_timeout_works(server):
    c = new_client(read_timeout_ms=None)
    assert c.get(url(server, "/x")).read() == b"GET /x  "
    c.close()


@pytest.mark.parametrize("kw", [{"connect_timeout_ms": 150},
                                {"connect_timeout_ms": 5000, "total_timeout_ms": 150}])
def test_a_connect_that_hangs_ends_at_its_limit(kw):
    from hanging import HangingListener
    with HangingListener() as port:
        c = new_client(**kw)
        t0 = time.monotonic()
        with pytest.raises(OSError) as exc:
            c.get(f"http://127.0.0.1:{port}/")
        assert exc.value.errno == errno.ETIMEDOUT
        assert time.monotonic() - t0 < 2
        c.close()


def test_a_reset_while_waiting_for_the_head_is_a_reset_not_a_timeout():
    def reset(req, conn, n):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
        return None

    with RawHTTPServer(reset) as s:
        c = new_client(read_timeout_ms=2000)
        with pytest.raises(OSError) as exc:
            c.get(url(s, "/"))
        assert exc.value.errno in (errno.ECONNRESET, errno.ECONNABORTED, 32)
        c.close()


def test_a_connection_idle_longer_than_max_idle_ms_is_not_reused(server):
    c = new_client(max_idle_ms=50)
    assert c.get(url(server, "/a")).read() == b"GET /a  "
    time.sleep(0.15)
    assert c.get(url(server, "/b")).read() == b"GET /b  "
    assert (c.connections, c.reused) == (2, 0)
    c.close()
    c = new_client(max_idle_ms=5000)
    for path in ("/a", "/b"):
        c.get(url(server, path)).read()
    assert (c.connections, c.reused) == (1, 1)
    c.close()


def test_the_defaults_are_the_documented_ones():
    """docs/http.md's defaults: a 512-byte chunk buffer, 10 s connect and read timeouts,
    5 redirects, 4096 header bytes, 32 headers, 1024-byte lines, a 1 MiB body, 2 pooled
    hosts, no idle limit; the client's own headers are kept as given."""
    from synack.http.client import Client

    c = Client()
    assert (c.chunk, c.connect_timeout_ms, c.read_timeout_ms) == (512, 10000, 10000)
    assert (c.max_redirects, c.max_header_bytes, c.max_headers, c.max_line, c.max_body) \
        == (5, 4096, 32, 1024, 1 << 20)
    assert (c.max_pool, c.max_idle_ms, c.total_timeout_ms) == (2, None, None)
    mine = {"User-Agent": "probe/1"}
    assert Client(headers=mine).headers is mine
    c.close()


def test_the_total_timeout_bounds_each_step_and_names_itself():
    """``total_timeout_ms``: each step gets its own timeout or what is left of the total,
    whichever is less; with nothing left the request fails with ETIMEDOUT saying so."""
    from synack.http.client import Client

    c = Client(total_timeout_ms=1500)
    deadline = core.time.ticks_add(core.time.ticks_ms(), 1000)
    assert c._left_ms(5000, deadline) in range(900, 1001)        # the total is tighter
    assert c._left_ms(200, deadline) == 200                      # the step's own is
    assert c._left_ms(None, deadline) in range(900, 1001)
    assert c._left_ms(300, None) == 300                          # no total: the step's
    past = core.time.ticks_add(core.time.ticks_ms(), 0)
    with pytest.raises(OSError) as info:
        c._left_ms(300, past)
    assert info.value.args == (errno.ETIMEDOUT, "total timeout of 1500 ms exceeded")
    c.close()
