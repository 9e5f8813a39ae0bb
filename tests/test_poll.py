"""The poller on CPython against real HTTP servers on 127.0.0.1, and over the virtual
SIM7600: connection reuse counted on the server side, ETag/304, long polling, backoff on
bad responses and recovery, stopping."""

from __future__ import annotations

import http.server
import threading
import time

from synack.http.client import Client
from synack.poll import CHANGED, FAILED, NOT_MODIFIED, Poller
from test_http_client import RawHTTPServer, RealServer, new_client, response, url


class Versioned(http.server.BaseHTTPRequestHandler):
    """A resource whose version goes up every ``every`` requests; ETag and 304."""

    every = 25
    lock = threading.Lock()
    count = 0
    bodies_sent = 0

    def do_GET(self):
        cls = type(self)
        with cls.lock:
            version = 1 + cls.count // cls.every
            cls.count += 1
        etag = f'"v{version}"'
        if self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            self.send_header("ETag", etag)
            self.end_headers()
            return
        body = f"state {version}".encode() * 20
        cls.bodies_sent += 1
        self.send_response(200)
        self.send_header("ETag", etag)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def versioned(every=25):
    return type("V", (Versioned,), {"every": every, "count": 0, "bodies_sent": 0,
                                    "lock": threading.Lock()})


def test_100_polls_over_http11_use_one_connection():
    handler = versioned()
    seen = []
    with RealServer(handler) as server:
        p = Poller(server.url("/state"), lambda r: seen.append(r.read()),
                   client=new_client(), interval_ms=0)
        assert p.run(polls=100) == 100
        assert server.connections == 1
        p.close()
    assert p.stats() == {"polls": 100, "ok": 4, "not_modified": 96, "errors": 0,
                         "connections": 1}
    assert seen == [f"state {v}".encode() * 20 for v in (1, 2, 3, 4)]
    assert handler.bodies_sent == 4   # a 304 costs no body


def test_100_polls_over_http10_use_100_connections():
    with RealServer(versioned(), protocol="HTTP/1.0") as server:
        p = Poller(server.url("/state"), client=new_client(), interval_ms=0)
        p.run(polls=100)
        assert server.connections == 100
    assert (p.polls, p.ok, p.not_modified, p.errors, p.connections) == (100, 4, 96, 0, 100)
    with RealServer(versioned()) as server:   # an HTTP/1.0 client, HTTP/1.1 server
        p = Poller(server.url("/state"), client=new_client(http10=True), interval_ms=0)
        p.run(polls=100)
        assert server.connections == 100 and p.errors == 0


def test_server_closing_the_keep_alive_connection_between_polls_costs_no_poll():
    # Every 4th response is the last on its connection: the server closes it right after
    # (idle timeout), or reads the next request and closes without answering (the race
    # no probe can see; the client resends the GET once).
    def app(req, conn, n):
        if req.target == "/idle-close" and n == 2:
            conn.sendall(response(body=b"fresh"))
            return None
        if req.target == "/race" and n == 3:
            return None
        return response(body=b"fresh")
    for path, retries in (("/idle-close", 0), ("/race", 7)):
        with RawHTTPServer(app) as server:
            p = Poller(url(server, path), client=new_client(), interval_ms=5)
            p.run(polls=24)
            assert (p.polls, p.ok, p.errors) == (24, 24, 0)
            assert server.connections == 8
            assert p.client.retries == retries
            p.close()


BAD_SEQUENCE = {
    2: b"HTTP/1.1 200 OK\r\nX-Huge: " + b"h" * 5000 + b"\r\n\r\n",
    3: "endless",
    4: b"HTTP/1.1 OK 200\r\nContent-Length: 0\r\n\r\n",
    5: response(503, b"later", headers=[("Retry-After", "0")], reason="Busy"),
}


def bad_then_good(start=0):
    """An app whose requests number ``start``, ``start + 1``, ...; those listed in
    BAD_SEQUENCE get a bad answer, the others a good one."""
    count = [start]

    def app(req, conn, n):
        i = count[0]
        count[0] += 1
        bad = BAD_SEQUENCE.get(i)
        if bad is None:
            return response(body=b"good %d" % i)
        if bad == "endless":
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            conn.settimeout(0.001)
            while True:
                try:
                    if conn.recv(1) == b"":
                        return None
                except TimeoutError:
                    conn.sendall(b"100\r\n" + b"e" * 256 + b"\r\n")
        if i == 5:
            return bad   # a well-formed 503: the connection stays
        conn.sendall(bad)
        conn.settimeout(5)
        conn.recv(1)   # closes when the client does
        return None
    return app


def test_bad_responses_back_off_exponentially_then_recover():
    with RawHTTPServer(bad_then_good()) as server:
        p = Poller(url(server, "/poll"), client=new_client(max_body=32768), interval_ms=0,
                   backoff_ms=20, backoff_cap_ms=50)
        outcomes, delays, errors = [], [], []
        t0 = time.monotonic()
        for _ in range(9):
            outcome, delay = p.poll()
            outcomes.append(outcome)
            delays.append(delay)
            errors.append(type(p.last_error).__name__ if outcome == FAILED else None)
        assert time.monotonic() - t0 < 3
        p.close()
    assert outcomes == [CHANGED, CHANGED] + [FAILED] * 4 + [CHANGED] * 3
    assert delays == [0, 0, 20, 40, 50, 50, 0, 0, 0]
    assert errors[2:6] == ["LimitError", "LimitError", "ProtocolError", "HTTPError"]
    assert p.stats()["errors"] == 4 and p.schedule.failures == 0
    # each malformed response cost its connection; the 503 was drained and kept it
    assert server.connections == 4


def test_error_messages_of_the_last_failure_are_readable():
    with RawHTTPServer(bad_then_good(start=2)) as server:
        p = Poller(url(server, "/poll"), client=new_client(max_body=32768), interval_ms=0,
                   backoff_ms=10, backoff_cap_ms=10)
        texts = []
        for _ in range(4):
            p.poll()
            texts.append(str(p.last_error))
        p.close()
    u = url(server, "/poll")
    assert texts == [
        f"HTTP 200: header line longer than 1024 bytes ({u})",
        f"HTTP 200: chunked body exceeds the limit of 32768 bytes ({u})",
        f"malformed status line b'HTTP/1.1 OK 200' ({u})",
        f"HTTP 503: poll answered 503 Busy ({u})",
    ]


def test_poller_survives_server_bytes_that_are_not_text():
    # Each answer once killed poll() with a UnicodeDecodeError or a ValueError: an ETag
    # and a reason phrase that are not UTF-8, "Retry-After: \u00b2" (a digit to
    # str.isdigit(), not to int()), a Location that is not ASCII. Now each is a result
    # or an HTTPError, and the next poll is fine.
    etag = b'"\xff\xfe-1"'
    answers = [
        b"HTTP/1.1 200 OK\r\nETag: " + etag + b"\r\nContent-Length: 1\r\n\r\nA",
        "conditional",
        b"HTTP/1.1 503 Besch\xe4ftigt\r\nRetry-After: \xc2\xb2\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 429 \xff\r\nRetry-After: 1\xd9\xa1\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 302 Found\r\nLocation: /\xe9\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nLast-Modified: \xc0\r\nContent-Length: 1\r\n\r\nB",
    ]
    seen = []

    def app(req, conn, n):
        answer = answers[len(server.requests) - 1]
        if answer == "conditional":   # the ETag comes back byte for byte
            seen.append(req.header("if-none-match").encode("latin-1"))
            return response(304, framing="none")
        return answer
    with RawHTTPServer(app) as server:
        p = Poller(url(server, "/t"), lambda r: r.read(), client=new_client(),
                   interval_ms=0, backoff_ms=10, backoff_cap_ms=1000)
        results = [p.poll() for _ in range(len(answers))]
        texts = [str(p.last_error)]
        p.close()
    u = url(server, "/t")
    assert [outcome for outcome, _ in results] == [CHANGED, NOT_MODIFIED, FAILED, FAILED,
                                                   FAILED, CHANGED]
    assert [delay for _, delay in results] == [0, 0, 10, 20, 40, 0]   # no Retry-After
    assert seen == [etag]
    assert p.etag is None and p.last_modified == "\xc0"
    assert texts == [f"HTTP 302: Location is not a URL: b'/\\xe9' ({u})"]
    assert (p.ok, p.not_modified, p.errors) == (2, 1, 3)
    assert server.connections == 1


def test_last_modified_is_sent_back_when_there_is_no_etag():
    stamp = "Wed, 21 Oct 2015 07:28:00 GMT"

    def app(req, conn, n):
        if req.header("if-modified-since") == stamp:
            return response(304, framing="none")
        return response(body=b"v1", headers=[("Last-Modified", stamp)])
    with RawHTTPServer(app) as server:
        p = Poller(url(server), client=new_client(), interval_ms=0)
        p.run(polls=3)
        p.close()
    assert (p.ok, p.not_modified, p.last_modified) == (1, 2, stamp)
    assert [r.header("if-modified-since") for r in server.requests] == ["", stamp, stamp]


class LongPoll(http.server.BaseHTTPRequestHandler):
    """Holds each GET until an event is published or ``hold`` seconds pass (then 304)."""

    hold = 0.4
    event = threading.Event()
    prefer = []

    def do_GET(self):
        cls = type(self)
        cls.prefer.append(self.headers.get("Prefer"))
        if cls.event.wait(cls.hold):
            cls.event.clear()
            body = b"news"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_response(304)
            self.end_headers()


def test_long_polling_delivers_news_at_once_on_one_connection():
    handler = type("LP", (LongPoll,), {"event": threading.Event(), "prefer": []})
    got = []
    with RealServer(handler) as server:
        # read timeout (300 ms) shorter than the hold (400 ms): the poller adds the two
        p = Poller(server.url("/events"), lambda r: got.append((time.monotonic(), r.read())),
                   client=new_client(read_timeout_ms=300), interval_ms=50,
                   long_poll_ms=400)
        timer = threading.Timer(0.7, handler.event.set)
        published = time.monotonic() + 0.7
        timer.start()
        try:
            p.run(stop=lambda: len(got) > 0 and p.polls >= 4)
        finally:
            timer.cancel()
        p.close()
        assert server.connections == 1
    assert p.errors == 0 and p.not_modified >= 1 and p.ok == 1
    assert got[0][1] == b"news" and got[0][0] - published < 0.25
    assert set(handler.prefer) == {"wait=1"}


def test_stop_interrupts_a_long_sleep():
    with RawHTTPServer(lambda req, conn, n: response(body=b"x")) as server:
        p = Poller(url(server), client=new_client(), interval_ms=60000)
        threading.Timer(0.3, p.stop).start()
        t0 = time.monotonic()
        assert p.run() == 1
        assert time.monotonic() - t0 < 1
        p = Poller(url(server), lambda r: p.stop(), client=new_client(), interval_ms=60000)
        assert p.run() == 1
        p.close()


def test_jittered_interval_and_default_client():
    with RealServer(versioned(every=1000)) as server:
        p = Poller(server.url("/s"), interval_ms=30, jitter_ms=20)
        t0 = time.monotonic()
        p.run(polls=6)
        elapsed = time.monotonic() - t0
        assert isinstance(p.client, Client)
        assert 0.15 <= elapsed < 1.5, elapsed
        assert server.connections == 1 and p.not_modified == 5
        p.close()


def test_poller_over_the_virtual_modem_reuses_one_connection():
    from modemrig import Rig

    etags = iter(['"a"'] * 3 + ['"b"'] * 3)

    def app(req, conn, n):
        tag = next(etags)
        if req.header("if-none-match") == tag:
            return response(304, framing="none", headers=[("ETag", tag)])
        if n == 3:
            conn.sendall(response(body=tag.encode() * 100, headers=[("ETag", tag)]))
            return None   # and the server drops the idle connection
        return response(body=tag.encode() * 100, headers=[("ETag", tag)])
    rig = Rig()
    try:
        with RawHTTPServer(app) as server:
            bodies = []
            p = Poller(url(server, "/m"), lambda r: bodies.append(r.read()),
                       client=Client(chunk=512, backend=rig.modem, read_timeout_ms=5000),
                       interval_ms=0)
            p.run(polls=6)
            assert (p.ok, p.not_modified, p.errors) == (2, 4, 0)
            assert bodies == [b'"a"' * 100, b'"b"' * 100]
            assert server.connections == 2 and p.connections == 2
            p.close()
    finally:
        rig.close()
