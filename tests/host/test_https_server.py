"""The HIL https pieces on the host: the test PKI (synack_host.hil.pki), HttpServer in
TLS mode counting accepted connections, completed handshakes, failed ones and plaintext
request bytes, and read_pcap keeping each segment's payload (what tlsflow reads).
Real OpenSSL clients over 127.0.0.1; no root needed."""

from __future__ import annotations

import http.client
import socket
import ssl
import struct
import time

import dpkt
import pytest

from synack_host.hil.http_server import HttpServer
from synack_host.hil.pki import Pki, PkiError, hil_pki, san
from synack_host.hil.pki import unavailable as pki_unavailable
from synack_host.hil.tcpflow import read_pcap


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    if pki_unavailable():
        pytest.skip(pki_unavailable())
    return hil_pki(tmp_path_factory.mktemp("pki"), "127.0.0.1")


def client_ctx(pki, ca: str = "ca") -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki.path(ca)))


# -- the PKI --------------------------------------------------------------------------------
def test_san_names_an_address_both_ways():
    assert san(["127.0.0.1"]) == "IP:127.0.0.1,DNS:127.0.0.1"
    assert san(["::1", "example.org"]) == "IP:::1,DNS:::1,DNS:example.org"
    with pytest.raises(ValueError):
        san([])


def test_hil_certificates_say_what_their_names_say(pki):
    decode = ssl._ssl._test_decode_cert          # noqa: SLF001 - reads a PEM file, no key
    server = decode(str(pki.path("server")))
    assert ("IP Address", "127.0.0.1") in server["subjectAltName"]
    assert server["issuer"] == ((("commonName", "synack test ca"),),)
    wrong = decode(str(pki.path("wrong-host")))
    assert wrong["subjectAltName"] == (("DNS", "wrong-host.synack.invalid"),)
    stranger = decode(str(pki.path("unknown-ca")))
    assert stranger["issuer"] == ((("commonName", "synack test other"),),)
    der = pki.path("ca", "der").read_bytes()
    assert der[0] == 0x30 and ssl.DER_cert_to_PEM_cert(der).strip() == \
        pki.path("ca").read_text().strip()


def test_a_missing_certificate_is_a_clear_error(pki):
    with pytest.raises(PkiError, match="no nothing.pem"):
        pki.server_context("nothing")


def test_an_openssl_failure_names_the_command(tmp_path):
    if pki_unavailable():
        pytest.skip(pki_unavailable())
    p = Pki(tmp_path)
    with pytest.raises(PkiError, match="openssl ca failed"):
        p.leaf("orphan", ca="no-such-ca")


# -- HttpServer over TLS --------------------------------------------------------------------
def test_keep_alive_polls_cost_one_handshake(pki):
    with HttpServer(tls=pki.server_context("server", "server")) as server:
        assert server.url(host="127.0.0.1").startswith(f"https://127.0.0.1:{server.port}/")
        conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=client_ctx(pki),
                                           timeout=5)
        etag = None
        for _ in range(4):
            conn.request("GET", "/data", headers={"If-None-Match": etag} if etag else {})
            r = conn.getresponse()
            r.read()
            etag = r.getheader("ETag")
        conn.close()
        conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=client_ctx(pki),
                                           timeout=5)
        conn.request("GET", "/data")
        assert conn.getresponse().read() == b"hello"
        conn.close()
        assert server.wait_for(lambda: server.handshakes == 2)
    assert (server.connections, server.handshakes, server.tls_errors) == (2, 2, [])
    assert [r.status for r in server.requests] == [200, 304, 304, 304, 200]
    assert [r.connection for r in server.requests] == [0, 0, 0, 0, 1]
    assert len(server.handshake_times) == 2 and all(0 < t < 5 for t in server.handshake_times)
    assert server.received_bytes > 5 * len(b"GET /data HTTP/1.1\r\n")


@pytest.mark.parametrize("cert,ca,alert", [("unknown-ca", "ca", "unknown ca"),
                                           ("wrong-host", "ca", "bad certificate"),
                                           ("server", "other", "unknown ca")])
def test_a_refusing_client_leaves_an_error_and_no_plaintext(pki, cert, ca, alert):
    with HttpServer(tls=pki.server_context(cert, "server")) as server:
        conn = http.client.HTTPSConnection("127.0.0.1", server.port,
                                           context=client_ctx(pki, ca), timeout=5)
        with pytest.raises(ssl.SSLCertVerificationError):
            conn.request("GET", "/secret")
        conn.close()
        assert server.wait_for(lambda: bool(server.tls_errors))
    assert (server.connections, server.handshakes, server.received_bytes) == (1, 0, 0)
    assert server.requests == [] and len(server.tls_errors) == 1
    assert alert in server.tls_errors[0].lower(), server.tls_errors


def test_plain_http_to_the_tls_port_is_not_a_request(pki):
    with HttpServer(tls=pki.server_context("server", "server")) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(b"GET /data HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                s.recv(100)                          # the server's alert, or its close
            except ConnectionResetError:
                pass                                 # closed with our bytes unread
        assert server.wait_for(lambda: bool(server.tls_errors))
    assert server.requests == [] and server.received_bytes == 0 and server.handshakes == 0


def test_stop_ends_an_open_tls_connection(pki):
    server = HttpServer(tls=pki.server_context("server", "server"))
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    tls = client_ctx(pki).wrap_socket(raw, server_hostname="127.0.0.1")
    assert server.wait_for(lambda: server.handshakes == 1)
    t0 = time.monotonic()
    server.stop()
    assert time.monotonic() - t0 < 2           # the handler was not left waiting 30 s
    assert tls.recv(10) == b""                 # and the client sees the connection end
    tls.close()


def test_plain_mode_counts_plaintext_too():
    with HttpServer() as server:
        assert server.url().startswith("http://")
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("GET", "/data")
        conn.getresponse().read()
        conn.close()
    head = b"GET /data HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept-Encoding: identity\r\n\r\n"
    assert server.received_bytes == len(head % server.port)
    assert server.handshakes == 0 and server.tls_errors == []


# -- read_pcap keeps the payload --------------------------------------------------------------
def test_read_pcap_keeps_each_segments_payload(tmp_path):
    path = tmp_path / "p.pcap"
    with open(path, "wb") as f:
        w = dpkt.pcap.Writer(f, linktype=dpkt.pcap.DLT_EN10MB)
        for i, data in enumerate([b"\x16\x03\x01hello", b"", b"world"]):
            tcp = dpkt.tcp.TCP(sport=40000, dport=443, seq=1 + i, flags=dpkt.tcp.TH_ACK,
                               data=data)
            ip = dpkt.ip.IP(src=socket.inet_aton("10.0.0.1"), dst=socket.inet_aton("10.0.0.2"),
                            p=dpkt.ip.IP_PROTO_TCP, data=tcp)
            ip.len = len(bytes(ip))
            eth = dpkt.ethernet.Ethernet(data=ip, type=dpkt.ethernet.ETH_TYPE_IP)
            frame = bytes(eth) + b"\x00" * 6         # Ethernet padding is not payload
            w.writepkt(frame, ts=1.0 + i)
    segs = read_pcap(path)
    assert [s.payload for s in segs] == [b"\x16\x03\x01hello", b"", b"world"]
    assert [s.length for s in segs] == [8, 0, 5]
    assert struct.pack("!H", segs[0].dst.port) == b"\x01\xbb"
