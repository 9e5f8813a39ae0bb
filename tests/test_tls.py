"""synack.tls and https:// on CPython: the firmware's TLS (CPython ssl through an
SSLObject and two MemoryBIOs pumped over a synack socket) against a local HTTPS server
whose certificates come from a CA made at test time by the ``openssl`` command.

Over native synack sockets and over the virtual SIM7600: a verified GET of a 64 KiB
body byte-exact; refusals (unknown CA, wrong host name, expired and not-yet-valid
certificates, a clock that was never set) each with its own error and not one request
byte sent (the server records what it received); 100 polls over https on one TCP
connection and one TLS handshake (the server counts accepts and handshakes). The clock:
IMF-fixdate and +CCLK parsing, set from a Date header and from AT+CCLK?."""

from __future__ import annotations

import calendar
import email.utils
import socket
import subprocess
import ssl
import threading
import time
from pathlib import Path

import pytest

from synack import clock, tls
from synack import socket as synsocket
from synack.http.client import Client
from synack.http.errors import LocalProtocolError, ProtocolError
from synack.poll import Poller
from synack_host.hil.pki import Pki
from synack_host.hil.pki import unavailable as pki_unavailable

BODY = bytes(range(256)) * 256          # 64 KiB


# -- a test PKI, made by the openssl command (synack_host.hil.pki, shared with synack hil)
def make_pki(d: Path) -> Path:
    """In ``d``: ca.{pem,der,key} and other.{pem,der} (an unrelated CA); leaves signed by
    ca for DNS:localhost only (not 127.0.0.1): leaf.pem (valid now, 2 days),
    expired.pem (2020), future.pem (from 2090); all with leaf.key."""
    if pki_unavailable():
        pytest.skip(pki_unavailable())
    pki = Pki(d)
    pki.ca("ca")
    pki.ca("other")
    pki.leaf("leaf", names=["localhost"])
    pki.leaf("expired", names=["localhost"], key="leaf",
             dates=("20200101000000Z", "20200201000000Z"))
    pki.leaf("future", names=["localhost"], key="leaf",
             dates=("20900101000000Z", "20900201000000Z"))
    return d


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


# -- a keep-alive HTTP(S) server that counts ------------------------------------------------
class Server:
    """HTTP/1.1 with keep-alive on 127.0.0.1, TLS if ``cert`` is given. Counts TCP
    ``accepts`` and completed TLS ``handshakes`` (failures in ``tls_errors``) and keeps
    every plaintext byte it ``received``. GET /big: BODY; /poll: an ETag'd resource
    (304 for If-None-Match); anything else: "ok". Every answer carries a Date."""

    def __init__(self, cert: Path | None = None, key: Path | None = None):
        self.ctx = None
        if cert is not None:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(cert, key)
        self.ls = socket.create_server(("127.0.0.1", 0))
        self.port = self.ls.getsockname()[1]
        self.accepts = 0
        self.handshakes = 0
        self.tls_errors: list[str] = []
        self.received = bytearray()
        self.paths: list[str] = []
        self.conns: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self._stop = False
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.ls.accept()
            except OSError:
                return
            self.accepts += 1
            self.conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        try:
            if self.ctx is not None:
                try:
                    conn = self.ctx.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError) as e:
                    self.tls_errors.append(str(e))
                    return
                self.handshakes += 1
                self.conns.append(conn)  # the raw socket was detached by the wrap
            buf = b""
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                self.received += data
                buf += data
                while b"\r\n\r\n" in buf:
                    head, buf = buf.split(b"\r\n\r\n", 1)
                    conn.sendall(self._answer(head))
        except OSError:
            pass
        finally:
            conn.close()

    def _answer(self, head: bytes) -> bytes:
        lines = head.decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1]
        self.paths.append(path)
        headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        date = email.utils.formatdate(usegmt=True)
        if path == "/poll" and headers.get("if-none-match") == '"v1"':
            return (f"HTTP/1.1 304 Not Modified\r\nDate: {date}\r\nETag: \"v1\"\r\n\r\n"
                    .encode())
        body = BODY if path == "/big" else b"ok"
        return (f"HTTP/1.1 200 OK\r\nDate: {date}\r\nETag: \"v1\"\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    def close(self) -> None:
        """Shut every socket down and let its own thread close it. Closing here, under a
        thread blocked in SSL_read, would free the fd number while OpenSSL still reads
        from it: the next test's client socket gets that number and the old thread
        steals its TLS records (the client then sees BAD_RECORD_MAC)."""
        self._stop = True
        for s in [self.ls, *self.conns]:
            try:
                socket.socket.shutdown(s, socket.SHUT_RDWR)  # not SSLSocket's: it drops _sslobj
            except OSError:
                pass
        self._acceptor.join(5)
        for t in self.threads:
            t.join(5)
        self.ls.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@pytest.fixture
def https(pki):
    with Server(pki / "leaf.pem", pki / "leaf.key") as s:
        yield s


@pytest.fixture
def real_clock(monkeypatch):
    """Whatever a test does to synack.clock is undone after it."""
    monkeypatch.setattr(clock, "_offset", 0)
    monkeypatch.setattr(clock, "source", None)


@pytest.fixture(params=["native", "modem"])
def backend(request):
    if request.param == "native":
        yield None
        return
    from modemrig import Rig
    with Rig(poll_ms=100) as rig:
        yield rig.modem


# -- the HTTPS client --------------------------------------------------------------------------
def test_verified_get_of_64k_byte_exact(pki, https, backend):
    c = Client(backend=backend, cadata=(pki / "ca.der").read_bytes(), chunk=1024,
               read_timeout_ms=20000)
    r = c.get(f"https://localhost:{https.port}/big")
    assert (r.status, r.read()) == (200, BODY)
    assert c.get(f"https://localhost:{https.port}/small").read() == b"ok"  # kept alive
    assert (c.connections, c.handshakes, c.reused) == (1, 1, 1)
    assert c.pooled_keys() == [("https", "localhost", https.port)]
    if backend is not None:           # the TLS records went through AT+CIPSEND/CIPRXGET
        assert c._pool[0][1].sock._backend is backend
    assert https.accepts == 1 and https.handshakes == 1 and https.tls_errors == []
    assert https.received.startswith(b"GET /big HTTP/1.1\r\nHost: localhost:%d\r\n"
                                     % https.port)
    c.close()


def test_ca_as_a_pem_file(pki, https):
    c = Client(cafile=str(pki / "ca.pem"))
    assert c.get(f"https://localhost:{https.port}/").read() == b"ok"
    c.close()


REFUSALS = [
    # (CA, certificate served, URL host, error class, reason, words in the message)
    ("other.der", "leaf", "localhost", tls.UnknownCA, "unknown-ca", "unable to get local"),
    ("ca.der", "leaf", "127.0.0.1", tls.HostnameMismatch, "hostname", "mismatch"),
    ("ca.der", "expired", "localhost", tls.CertificateExpired, "expired", "expired"),
    ("ca.der", "future", "localhost", tls.CertificateExpired, "not-yet-valid", "not yet"),
]


@pytest.mark.parametrize("ca,cert,host,cls,reason,words", REFUSALS,
                         ids=[r[4] for r in REFUSALS])
def test_refusals_are_distinct_and_send_no_request(pki, ca, cert, host, cls, reason, words):
    with Server(pki / f"{cert}.pem", pki / "leaf.key") as server:
        c = Client(cadata=(pki / ca).read_bytes())
        with pytest.raises(tls.TLSError) as exc:
            c.get(f"https://{host}:{server.port}/secret")
        e = exc.value
        assert type(e) is cls and e.reason == reason, (type(e), e.reason, e)
        assert isinstance(e, OSError) and e.errno == 13       # EACCES: not trusted
        assert words in str(e), str(e)
        time.sleep(0.2)                                        # the server saw the alert
        assert server.received == b"" and server.paths == []   # not one request byte
        assert server.handshakes == 0 and len(server.tls_errors) == 1
        assert c.pooled() == [] and c.handshakes == 0


def test_each_refusal_is_its_own_class():
    classes = [tls.UnknownCA, tls.HostnameMismatch, tls.CertificateExpired, tls.ClockNotSet]
    for a in classes:
        assert issubclass(a, tls.VerifyError) and issubclass(a, OSError)
        assert [b for b in classes if issubclass(a, b)] == [a]


def test_clock_not_set_is_refused_before_connecting(pki, https, real_clock):
    clock.set_time(946684800)   # 2000-01-01: what a board's RTC says after boot
    assert not clock.is_set()
    c = Client(cadata=(pki / "ca.der").read_bytes())
    with pytest.raises(tls.ClockNotSet) as exc:
        c.get(f"https://localhost:{https.port}/")
    assert exc.value.errno == 13 and exc.value.reason == "clock-not-set"
    assert "2000-01-01" in str(exc.value) and "synack.clock.sync_modem" in str(exc.value)
    assert c.connections == 0 and https.accepts == 0
    # and wrap() itself refuses on a connected socket, before any TLS byte
    s = synsocket.socket()
    s.connect(("127.0.0.1", https.port))
    with pytest.raises(tls.ClockNotSet):
        tls.wrap(s, "localhost", cadata=(pki / "ca.der").read_bytes())
    assert s.state != "ESTABLISHED"           # wrap closed it
    time.sleep(0.2)
    assert https.received == b"" and https.handshakes == 0
    with Server() as plain:            # set it from a plain request's Date header
        clock.sync_http(f"http://127.0.0.1:{plain.port}/", c)
    assert clock.is_set() and clock.source == "http"
    assert c.get(f"https://localhost:{https.port}/").read() == b"ok"


def test_no_ca_on_cpython_uses_the_system_store(https):
    c = Client()                     # the system's CAs do not know the test CA
    with pytest.raises(tls.UnknownCA):
        c.get(f"https://localhost:{https.port}/")


def test_verify_false_trusts_anyone(https):
    c = Client(tls_verify=False)
    assert c.get(f"https://127.0.0.1:{https.port}/").read() == b"ok"


def test_https_redirects_never_downgrade(pki):
    class Redirect(Server):
        def _answer(self, head):
            return b"HTTP/1.1 302 Found\r\nLocation: http://localhost/\r\nContent-Length: 0\r\n\r\n"
    with Redirect(pki / "leaf.pem", pki / "leaf.key") as server:
        c = Client(cadata=(pki / "ca.der").read_bytes())
        with pytest.raises(ProtocolError, match="from https to http refused"):
            c.get(f"https://localhost:{server.port}/")


def test_the_async_client_says_https_is_not_supported():
    import asyncio

    from synack.http.aclient import AsyncClient
    with pytest.raises(LocalProtocolError, match="https is not supported by AsyncClient"):
        asyncio.run(AsyncClient().get("https://localhost/"))


# -- polling over https: one connection, one handshake -------------------------------------
@pytest.mark.parametrize("polls", [100])
def test_polls_over_https_use_one_connection_and_one_handshake(pki, https, backend, polls):
    assert_polls_share_one_handshake(Client(backend=backend, cadata=(pki / "ca.der").read_bytes()),
                                     https, polls)


def assert_polls_share_one_handshake(c: Client, https: Server, polls: int) -> None:
    """``polls`` polls with ETag over https: 1 connection and 1 handshake, counted by the
    client and by the server, every request on it (tests/test_modem_tls.py too)."""
    seen = []
    p = Poller(f"https://localhost:{https.port}/poll", lambda r: seen.append(r.read()),
               client=c, interval_ms=0)
    assert p.run(polls=polls) == polls
    assert (p.ok, p.not_modified, p.errors) == (1, polls - 1, 0), p.last_error
    assert seen == [b"ok"]
    assert (c.connections, c.handshakes) == (1, 1)
    assert (https.accepts, https.handshakes) == (1, 1)
    assert https.paths == ["/poll"] * polls
    p.close()


def test_a_dead_pooled_tls_connection_is_replaced(pki, https):
    c = Client(cadata=(pki / "ca.der").read_bytes())
    url = f"https://localhost:{https.port}/poll"
    assert c.get(url).read() == b"ok"
    for conn in https.conns:
        if conn.fileno() >= 0:
            conn.shutdown(socket.SHUT_RDWR)  # the server drops the idle connection
    time.sleep(0.2)
    assert c.get(url).read() == b"ok"
    assert (c.connections, c.handshakes) == (2, 2)


# -- tls.wrap on its own ------------------------------------------------------------------
def test_wrap_is_a_stream_and_counts_wire_bytes(pki, https):
    s = synsocket.socket()
    s.settimeout(10)
    s.connect(("127.0.0.1", https.port))
    t = tls.wrap(s, "localhost", cadata=(pki / "ca.pem").read_bytes())  # PEM bytes too
    hs_in, hs_out = t.wire_in, t.wire_out
    assert hs_in > 300 and hs_out > 100
    assert t.write(b"xxGET /big HTTP/1.1\r\nHost: localhost\r\n\r\nyy", 2, 39) == 39
    assert t.readline() == b"HTTP/1.1 200 OK\r\n"
    while t.readline() != b"\r\n":
        pass
    assert t.read(len(BODY)) == BODY
    t.setblocking(False)
    assert t.readinto(bytearray(10)) is None and t.read(5) is None
    with pytest.raises(OSError) as exc:
        t.recv_into(bytearray(10))
    assert exc.value.errno == 11
    t.setblocking(True)
    assert t.state == "ESTABLISHED" and t.wire_in > len(BODY)
    t.close()
    assert s.state == "CLOSED" and "TIME_WAIT" in s.tcp.states()


# -- the clock ------------------------------------------------------------------------------
def test_parse_http_date_strictly():
    assert clock.parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == 784111777
    assert clock.parse_http_date(b"Thu, 29 Feb 2024 23:59:59 GMT") == calendar.timegm(
        (2024, 2, 29, 23, 59, 59))
    for t in (0, 951782400, 1704067200, 4102444799, 1795803351):
        assert clock.parse_http_date(email.utils.formatdate(t, usegmt=True)) == t
    for bad in ("Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994",
                "Mon, 06 Nov 1994 08:49:37 GMT",       # 1994-11-06 was a Sunday
                "Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 6 Nov 1994 08:49:37 GMT",
                "Fri, 30 Feb 2024 00:00:00 GMT", "Sun, 06 Nov 1994 24:00:00 GMT",
                "Sun, 06 Nov 1994 08:49:37 GMT ,", "Sun, 06 nov 1994 08:49:37 GMT",
                "Sun, 06 Nov 1994 08:4a:37 GMT", "Sun, 06 Nov +994 08:49:37 GMT",
                b"Sun, 06 Nov 1994 08:49:37 G\xc3\x89", ""):
        with pytest.raises(ValueError):
            clock.parse_http_date(bad)


def test_parse_cclk():
    # local 10:20:30 at UTC+2 (8 quarter hours) is 08:20:30 UTC
    assert clock.parse_cclk('+CCLK: "24/05/17,10:20:30+08"') == calendar.timegm(
        (2024, 5, 17, 8, 20, 30))
    assert clock.parse_cclk(b'+CCLK: "25/12/31,23:30:00-20"') == calendar.timegm(
        (2026, 1, 1, 4, 30, 0))
    assert clock.parse_cclk('"80/01/06,00:00:26+00"') == calendar.timegm(
        (1980, 1, 6, 0, 0, 26))                       # a modem without network time
    for bad in ('+CCLK: "24/13/17,10:20:30+08"', '+CCLK: "24/05/17 10:20:30+08"',
                '+CCLK: "24/05/17,10:20:30"', '+CCLK: 24/05/17,10:20:30+08',
                '+CCLK: "24/02/30,10:20:30+00"', '+CCLK: "24/05/17,10:20:30+99"'):
        with pytest.raises(ValueError):
            clock.parse_cclk(bad)


class FakeAT:
    """The AT channel's command() answering AT+CCLK? with ``line``."""

    def __init__(self, line):
        self.line = line
        self.sent = []

    def command(self, cmd, prefix=None, payload=None, timeout_ms=5000):
        self.sent.append((cmd, prefix))
        return type("Reply", (), {"lines": [self.line]})()


def test_sync_modem_sets_the_clock_from_cclk(real_clock):
    modem = type("Modem", (), {})()
    modem.at = FakeAT(b'+CCLK: "24/05/17,10:20:30+08"')
    assert clock.sync_modem(modem) == calendar.timegm((2024, 5, 17, 8, 20, 30))
    assert modem.at.sent == [(b"AT+CCLK?", b"+CCLK:")]
    assert clock.source == "modem" and abs(clock.now() - 1715934030) <= 1
    modem.at = FakeAT(b'+CCLK: "80/01/06,00:00:26+00"')   # no NITZ yet: refused
    with pytest.raises(ValueError, match="before 2024"):
        clock.sync_modem(modem)
    assert abs(clock.now() - 1715934030) <= 1             # unchanged


def test_sync_http_sets_the_clock_from_a_date_header(real_clock):
    clock.set_time(946684800)
    with Server() as plain:
        t = clock.sync_http(f"http://127.0.0.1:{plain.port}/", Client())
    assert abs(t - time.time()) <= 2 and abs(clock.now() - time.time()) <= 2
    assert clock.source == "http" and plain.paths == ["/"]


def test_a_client_certificate_is_presented_when_the_server_asks(pki, backend):
    """Mutual TLS: a server that requires a client certificate signed by its CA gets the
    device's (``cert=``/``key=``, files on CPython); without one it refuses, and the
    refusal reaches the caller as an OSError (TLS 1.3 reports it at the first read)."""
    with Server(pki / "leaf.pem", pki / "leaf.key") as server:
        assert server.ctx is not None
        server.ctx.verify_mode = ssl.CERT_REQUIRED
        server.ctx.load_verify_locations(pki / "ca.pem")
        ca = (pki / "ca.der").read_bytes()
        url = f"https://localhost:{server.port}/small"
        c = Client(backend=backend, cadata=ca, cert=str(pki / "leaf.pem"),
                   key=str(pki / "leaf.key"), read_timeout_ms=20000)
        assert c.get(url).read() == b"ok"
        peer = [s.getpeercert() for s in server.conns if isinstance(s, ssl.SSLSocket)]
        assert peer and dict(x[0] for x in peer[0]["subject"])["commonName"] == "localhost"
        c.close()
        bare = Client(backend=backend, cadata=ca, read_timeout_ms=20000)
        with pytest.raises(OSError):
            bare.get(url).read()
        bare.close()
        deadline = time.monotonic() + 5     # the server's thread records its refusal
        while not server.tls_errors and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.paths == ["/small"] and len(server.tls_errors) == 1


def test_pem_blocks_become_der_by_label(pki, tmp_path):
    """What the MicroPython side feeds mbedTLS: each block of the asked kind as DER, the
    key in its PKCS#8 and SEC1 ("EC PRIVATE KEY") forms, other blocks skipped."""
    from synack.tls import pem_to_der

    def openssl(*args: str) -> bytes:
        return subprocess.run(["openssl", *args], check=True, capture_output=True).stdout

    key_pem = (pki / "leaf.key").read_bytes()
    sec1_pem = openssl("ec", "-in", str(pki / "leaf.key"))
    assert sec1_pem.startswith(b"-----BEGIN EC PRIVATE KEY-----")
    both = (pki / "leaf.pem").read_bytes() + key_pem + (pki / "ca.pem").read_bytes()
    assert pem_to_der(key_pem, b"PRIVATE KEY") == [
        openssl("pkcs8", "-topk8", "-nocrypt", "-in", str(pki / "leaf.key"), "-outform", "DER")]
    assert pem_to_der(sec1_pem, b"PRIVATE KEY") == [
        openssl("ec", "-in", str(pki / "leaf.key"), "-outform", "DER")]
    leaf_der = openssl("x509", "-in", str(pki / "leaf.pem"), "-outform", "DER")
    assert pem_to_der(both) == [leaf_der, (pki / "ca.der").read_bytes()]
    with pytest.raises(ValueError, match="no private key"):
        pem_to_der((pki / "ca.pem").read_bytes(), b"PRIVATE KEY")
    with pytest.raises(ValueError, match="without its END line"):
        pem_to_der(key_pem[:60])
