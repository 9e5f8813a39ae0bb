"""TLS offload through the SIM7600's own SSL stack (synack.modems.sim7600_tls) on the
virtual SIM7600 over its pty: the virtual modem is a real TLS client (Python's ssl)
toward a real HTTPS server on 127.0.0.1 whose certificates the openssl command makes
at test time (tests/test_tls.py's PKI and counting server).

A verified 64 KiB GET byte-exact; refusals (unknown CA, wrong host name, expired, no
CA on the modem) as SSLError with not one plaintext byte at the server, distinct from
a refused port and an unknown name; the peer's close as EOF; 100 polls on one TCP
connection and one handshake; garbled +CCH* replies and URCs that end in an OSError
and leave the driver working; certificate downloads of a bad length refused; the
engine's framed URCs fed byte by byte; AT+CCLK and clock.sync_modem."""

from __future__ import annotations

import calendar
import errno
import socket
import ssl
import threading
import time

import pytest

from atclient import BANNER, Client as ATClient
from modemrig import Rig
from synack import clock
from synack import socket as synsocket
from synack.at.engine import Engine
from synack.at.parser import Parser
from synack.http.client import Client
from synack.modems import sim7600_tls, simcom_ssl
from synack_host.sim.launch import start_modem
from synack_host.sim.modem import cclk_text
from test_tls import BODY, Server, assert_polls_share_one_handshake, make_pki

ACTIVE_CLOSE = ["CLOSED", "SYN_SENT", "ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2",
                "TIME_WAIT", "CLOSED"]
PASSIVE_CLOSE = ["CLOSED", "SYN_SENT", "ESTABLISHED", "CLOSE_WAIT", "LAST_ACK", "CLOSED"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def https(pki):
    with Server(pki / "leaf.pem", pki / "leaf.key") as s:
        yield s


@pytest.fixture
def rig():
    with Rig(poll_ms=100) as r:
        yield r


def offload(rig, pki, ca="ca.pem", **kw):
    return rig.modem.tls_offload(cadata=(pki / ca).read_bytes(), **kw)


def secure_socket(backend, timeout=10):
    s = synsocket.socket(backend=backend)
    s.settimeout(timeout)
    return s


# -- https over the modem's TLS -----------------------------------------------------------
def test_verified_get_of_64k_byte_exact(pki, https, rig):
    c = Client(backend=rig.modem, tls="modem", cadata=(pki / "ca.pem").read_bytes(),
               read_timeout_ms=20000)
    t0 = time.monotonic()
    r = c.get(f"https://localhost:{https.port}/big")
    assert (r.status, r.read()) == (200, BODY)
    elapsed = time.monotonic() - t0
    assert c.get(f"https://localhost:{https.port}/small").read() == b"ok"  # kept alive
    assert (c.connections, c.handshakes, c.reused) == (1, 1, 1)
    sock = c._pool[0][1]
    assert isinstance(sock._backend, sim7600_tls.ModemTLS)     # the modem did TLS,
    assert c._tls_context is None                              # not synack.tls
    assert sock.state == "ESTABLISHED"
    assert https.accepts == 1 and https.handshakes == 1 and https.tls_errors == []
    assert https.received.startswith(b"GET /big HTTP/1.1\r\nHost: localhost:%d\r\n"
                                     % https.port)
    assert rig.modem.tls_offload().certificates() == ["synack_ca.pem"]
    c.close()
    assert sock.tcp.states() == ACTIVE_CLOSE
    assert elapsed < 30


def test_a_der_ca_and_the_stream_api(pki, https, rig):
    secure = offload(rig, pki, "ca.der")
    s = secure_socket(secure)
    s.connect(("localhost", https.port))
    assert s.write(b"xxGET /big HTTP/1.1\r\nHost: localhost\r\n\r\nyy", 2, 39) == 39
    assert s.readline() == b"HTTP/1.1 200 OK\r\n"
    while s.readline() != b"\r\n":
        pass
    assert s.read(len(BODY)) == BODY
    s.setblocking(False)
    assert s.readinto(bytearray(10)) is None and s.read(5) is None
    with pytest.raises(OSError) as exc:
        s.recv_into(bytearray(10))
    assert exc.value.errno == errno.EAGAIN
    s.close()
    assert secure.certificates() == ["synack_ca.der"]


REFUSALS = [
    # (CA downloaded, certificate served, host) - all: +CCHOPEN: <s>,15
    ("other.pem", "leaf", "localhost"),       # unknown CA
    ("ca.pem", "leaf", "127.0.0.1"),          # wrong host name (the leaf is for localhost)
    ("ca.pem", "expired", "localhost"),       # dates, by the modem's clock
]


@pytest.mark.parametrize("ca,cert,host", REFUSALS, ids=["unknown-ca", "hostname", "expired"])
def test_refusals_send_no_request(pki, rig, ca, cert, host):
    with Server(pki / f"{cert}.pem", pki / "leaf.key") as server:
        c = Client(backend=rig.modem, tls="modem", cadata=(pki / ca).read_bytes())
        with pytest.raises(sim7600_tls.SSLError) as exc:
            c.get(f"https://{host}:{server.port}/secret")
        e = exc.value
        assert isinstance(e, OSError) and e.errno == errno.EACCES
        assert (e.ssl_err, e.reason) == (15, "handshake")
        assert "+CCHOPEN: 0,15 (SSL handshake failed)" in str(e), str(e)
        time.sleep(0.2)                                         # the server saw the alert
        assert server.received == b"" and server.paths == []    # not one request byte
        assert server.handshakes == 0 and len(server.tls_errors) == 1
        assert c.pooled() == [] and c.handshakes == 0
        # the session was given back: the next connect works
        ok = Client(backend=rig.modem, tls="modem", cadata=(pki / "ca.pem").read_bytes())
    with Server(pki / "leaf.pem", pki / "leaf.key") as good:
        assert ok.get(f"https://localhost:{good.port}/").read() == b"ok"
    ok.close()


def test_other_failures_have_their_own_errors(pki, rig):
    secure = offload(rig, pki)
    with socket.socket() as unused:         # a port nobody listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    s = secure_socket(secure)
    with pytest.raises(OSError) as exc:                 # nobody listens: err 14
        s.connect(("localhost", port))
    assert not isinstance(exc.value, sim7600_tls.SSLError)
    assert exc.value.errno == errno.ECONNREFUSED
    assert "+CCHOPEN: 0,14 (connect socket error)" in str(exc.value)
    assert s.tcp.states() == ["CLOSED", "SYN_SENT", "CLOSED"]
    with pytest.raises(OSError) as exc:                 # no such name: err 13
        secure_socket(secure).connect(("no-such-host.invalid", 443))
    assert exc.value.errno == errno.EHOSTUNREACH and "DNS" in str(exc.value)
    secure.configure(ca_name="missing.pem")             # no such CA on the modem: 19
    with pytest.raises(sim7600_tls.SSLError) as exc:
        secure_socket(secure).connect(("localhost", port))
    assert (exc.value.ssl_err, exc.value.reason) == (19, "no-ca")
    with pytest.raises(OSError) as exc:                 # a host name that is not one
        secure_socket(secure).connect(('x";+CFUN=0;"', 443))
    assert exc.value.errno == errno.EINVAL


def test_peer_close_is_end_of_stream(pki, rig):
    ls = socket.create_server(("127.0.0.1", 0))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / "leaf.pem", pki / "leaf.key")

    def serve():
        conn, _ = ls.accept()
        with ctx.wrap_socket(conn, server_side=True) as t:
            time.sleep(0.5)     # the client is waiting in a read by now
            t.sendall(b"bye\n")
            time.sleep(2)       # then it must have been woken by +CCHEVENT
            t.sendall(bytes(3000))
            try:
                t.unwrap()  # close_notify; the modem closes on it, then the TCP close
            except OSError:
                pass
    threading.Thread(target=serve, daemon=True).start()
    secure = offload(rig, pki)
    secure.poll_ms = 5000       # the read wakes on +CCHEVENT, not on the fallback poll
    s = secure_socket(secure)
    s.connect(("localhost", ls.getsockname()[1]))
    t0 = time.monotonic()
    assert s.readline() == b"bye\n"
    assert time.monotonic() - t0 < 2
    assert s.read() == bytes(3000)           # the cached data, then the end of stream
    assert s.read() == b"" and s.state == "CLOSE_WAIT"
    with pytest.raises(OSError) as exc:
        s.write(b"late")
    assert exc.value.errno == errno.ENOTCONN
    s.close()
    assert s.tcp.states() == PASSIVE_CLOSE
    ls.close()


@pytest.mark.parametrize("polls", [100])
def test_polls_use_one_connection_and_one_handshake(pki, https, rig, polls):
    assert_polls_share_one_handshake(
        Client(backend=rig.modem, tls="modem", cadata=(pki / "ca.pem").read_bytes()),
        https, polls)


def test_the_client_checks_its_tls_option(rig):
    with pytest.raises(ValueError, match="tls="):
        Client(tls="mbedtls")
    with pytest.raises(ValueError, match="client certificate"):
        Client(tls="modem", cert="c.pem", key="k.pem")
    c = Client(tls="modem")             # the native stack has no TLS offload
    with pytest.raises(OSError) as exc:
        c.get("https://localhost:1/")
    assert exc.value.errno == errno.EOPNOTSUPP


# -- bad input never wedges the driver -----------------------------------------------------
def _get_works(pki, rig, server):
    c = Client(backend=rig.modem, tls="modem", cadata=(pki / "ca.pem").read_bytes())
    assert c.get(f"https://localhost:{server.port}/").read() == b"ok"
    c.close()


def test_garbled_urcs_are_ignored(pki, https, rig):
    s = secure_socket(offload(rig, pki))
    s.connect(("localhost", https.port))
    engine = rig.modem.at.engine
    before = engine.malformed
    for text in ("+CCHOPEN: 0,x", "+CCHEVENT: 7,RECV EVENT", "+CCHEVENT: 0,", "+CCHRECV: 0,",
                 "+CCH_PEER_CLOSED: Z", "+CCHSEND: 0", "+CCHCLOSE: 5,0", "+CCHSTART: q"):
        rig.proc.malformed_urc(text)
    rig.modem.at.poll(300)
    s.write(b"GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert s.readline() == b"HTTP/1.1 200 OK\r\n"
    while s.readline() != b"\r\n":
        pass
    assert s.read(len(BODY)) == BODY and s.state == "ESTABLISHED"
    assert engine.malformed == before       # each was parsed and found wanting, quietly
    s.close()


@pytest.mark.parametrize("fault", ["garble-cchrecv", "truncate-read"])
def test_a_damaged_read_is_an_oserror_then_the_driver_works(pki, https, rig, fault):
    s = secure_socket(offload(rig, pki))
    s.connect(("localhost", https.port))
    s.write(b"GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n")
    rig.modem.at.poll(300)                  # the response is cached in the modem
    rig.proc.fault(fault)
    t0 = time.monotonic()
    with pytest.raises(OSError) as exc:
        s.read(len(BODY))
    assert exc.value.errno == errno.EIO, exc.value
    assert "bad +CCHRECV reply" in str(exc.value)
    assert time.monotonic() - t0 < 8
    assert rig.proc.status()["pending"] == {}
    s.close()
    _get_works(pki, rig, https)


def test_cme_error_on_open_then_next_open_works(pki, https, rig):
    secure = offload(rig, pki)
    secure.start()
    rig.proc.cme_error("AT+CCHOPEN", 3)
    s = secure_socket(secure)
    with pytest.raises(OSError) as exc:
        s.connect(("localhost", https.port))
    assert not isinstance(exc.value, sim7600_tls.SSLError) and exc.value.errno == errno.EIO
    assert s.state == "CLOSED"
    _get_works(pki, rig, https)


def test_a_modem_reboot_resets_sessions_and_the_next_connect_restarts(pki, https, rig):
    secure = offload(rig, pki)
    s = secure_socket(secure)
    s.connect(("localhost", https.port))
    reboots = rig.modem.reboots
    rig.proc.reboot()
    rig.modem.at.wait_for(lambda: s.state == "CLOSED", 3000)
    with pytest.raises(OSError) as exc:
        s.recv(10)
    assert exc.value.errno == errno.ECONNRESET
    s.close()
    assert not secure.started
    assert rig.modem.reboots == reboots + 1     # the modem's own RDY handling ran too
    rig.modem.start(register_timeout_ms=3000)       # the application's bring-up
    _get_works(pki, rig, https)
    assert secure.started


# -- certificates -----------------------------------------------------------------------------
def test_certificate_downloads_of_a_bad_length_are_refused(pki, rig):
    secure = offload(rig, pki)
    at = rig.modem.at
    sent = at.tx_bytes
    for data in (b"", bytes(simcom_ssl.MAX_CERT + 1)):
        with pytest.raises(ValueError, match="AT\\+CCERTDOWN takes 1..10240"):
            secure.download_cert("x.pem", data)
    for name in ("x.crt", "../x.pem", 'a".pem', "x" * 70 + ".pem"):
        with pytest.raises(ValueError):
            secure.download_cert(name, b"data")
    with pytest.raises(ValueError):
        rig.modem.tls_offload(cadata=bytes(simcom_ssl.MAX_CERT + 1))
    assert at.tx_bytes == sent                      # nothing was sent
    # and the modem refuses them too (a driver that does not check)
    for bad in ('"x.pem",0', '"x.pem",10241', '"x.pem",abc', '"x.crt",5', '"x.pem"'):
        with pytest.raises(Exception) as exc:
            at.command(b"AT+CCERTDOWN=" + bad.encode(), payload=b"12345", timeout_ms=1000)
        assert "ERROR" in str(exc.value), (bad, exc.value)
    assert secure.certificates() == []
    secure.download_cert("a.pem", (pki / "ca.pem").read_bytes())
    secure.download_cert("b.der", (pki / "ca.der").read_bytes())
    assert secure.certificates() == ["a.pem", "b.der"]
    secure.delete_cert("a.pem")
    assert secure.certificates() == ["b.der"]
    with pytest.raises(OSError):
        secure.delete_cert("a.pem")


def test_the_virtual_modem_speaks_the_manual_bytes(pki, https):
    """The SSL commands as a host on a raw serial line sees them."""
    proc = start_modem("--dialect", "sim7600")
    c = ATClient(proc.port)
    try:
        assert c.until(b"PB DONE\r\n").endswith(BANNER)
        c.cmd("ATE0")
        ca = (pki / "ca.pem").read_bytes()
        c.s.write(b'AT+CCERTDOWN="ca.pem",%d\r' % len(ca))
        assert c.until(b"> ") == b"\r\n> "
        c.s.write(ca)
        assert c.until(b"OK\r\n") == b"\r\nOK\r\n"
        assert c.cmd("AT+CCERTLIST") == b'\r\n+CCERTLIST: "ca.pem"\r\n\r\nOK\r\n'
        for cmd in ('AT+CSSLCFG="sslversion",0,4', 'AT+CSSLCFG="authmode",0,1',
                    'AT+CSSLCFG="cacert",0,"ca.pem"', 'AT+CSSLCFG="enableSNI",0,1',
                    "AT+CCHSET=1,1", "AT+CCHSSLCFG=0,0"):
            assert c.cmd(cmd) == b"\r\nOK\r\n", cmd
        assert c.cmd('AT+CSSLCFG="authmode",0,2', until=b"ERROR\r\n") == b"\r\nERROR\r\n"
        assert c.cmd("AT+CCHSTART", until=b"+CCHSTART: 0\r\n") == \
            b"\r\nOK\r\n\r\n+CCHSTART: 0\r\n"
        assert c.cmd(f'AT+CCHOPEN=0,"localhost",{https.port},2',
                     until=b"+CCHOPEN: 0,0\r\n") == b"\r\nOK\r\n\r\n+CCHOPEN: 0,0\r\n"
        req = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
        c.s.write(b"AT+CCHSEND=0,%d\r" % len(req))
        assert c.until(b"> ") == b"\r\n> "
        c.s.write(req)
        assert c.until(b"RECV EVENT\r\n") == \
            b"\r\nOK\r\n\r\n+CCHSEND: 0,0\r\n\r\n+CCHEVENT: 0,RECV EVENT\r\n"
        head = c.cmd("AT+CCHRECV=0,20", until=b"+CCHRECV: DATA,0,20\r\n")
        assert head == b"\r\nOK\r\n\r\n+CCHRECV: DATA,0,20\r\n"
        assert c.take(20) == b"HTTP/1.1 200 OK\r\nDat"
        assert c.until(b"+CCHRECV: 0,0\r\n") == b"\r\n+CCHRECV: 0,0\r\n"
        assert c.cmd("AT+CCHRECV?").startswith(b"\r\n+CCHRECV: LEN,")
        assert c.cmd("AT+CCHCLOSE=0", until=b"+CCHCLOSE: 0,0\r\n") == \
            b"\r\nOK\r\n\r\n+CCHCLOSE: 0,0\r\n"
        assert c.cmd("AT+CCHRECV=0,10", until=b"ERROR\r\n") == \
            b"\r\n+CCHRECV: 0,11\r\n\r\nERROR\r\n"
        assert c.cmd("AT+CCHSTOP", until=b"+CCHSTOP: 0\r\n") == \
            b"\r\nOK\r\n\r\n+CCHSTOP: 0\r\n"
    finally:
        c.s.close()
        proc.stop()


# -- the engine: framed URCs ------------------------------------------------------------------
def _engine():
    p = Parser(urcs=sim7600_tls.URCS, framed=sim7600_tls.FRAMED, trailer=b"\r\n")
    e = Engine(p)
    got = []
    e.on_framed_urc(b"+CCHRECV: DATA,", lambda line, payload: got.append((line, payload)))
    e.on_urc(b"+CCHRECV:", lambda line: got.append((line, None)))
    return e, got


@pytest.mark.parametrize("data_first", [False, True])
def test_engine_delivers_framed_urcs_byte_by_byte(data_first):
    e, got = _engine()
    e.begin(b"AT+CCHRECV=0,5")
    # the payload looks like a final result: only the framing tells it is data
    data = b"\r\n+CCHRECV: DATA,0,5\r\n" + b"\r\nOK\r" + b"\r\n\r\n+CCHRECV: 0,0\r\n"
    ok = b"\r\nOK\r\n"
    wire = (data + ok) if data_first else (ok + data)
    for i in range(len(wire)):
        e.receive(wire[i:i + 1])
    assert e.done and e.finish().payload is None
    assert got == [(b"+CCHRECV: DATA,0,5", b"\r\nOK\r"), (b"+CCHRECV: 0,0", None)]
    assert (e.unexpected, e.malformed, e.noise) == (0, 0, 0)


def test_engine_reports_a_damaged_framed_payload_as_none():
    e, got = _engine()
    e.receive(b"\r\n+CCHRECV: DATA,0,3\r\nabcd\r\n+CCHRECV: 0,0\r\n")
    assert got[0] == (b"+CCHRECV: DATA,0,3", None) and e.parser.framing == 1
    e.receive(b"\r\n+CCHRECV: DATA,0,0\r\n")            # zero bytes announced
    assert got[-1] == (b"+CCHRECV: DATA,0,0", b"")
    e.on_framed_urc(b"+X:", lambda line, payload: 1 / 0)  # a handler that fails
    e.parser.framed += ((b"+X:", 0),)
    e.receive(b"\r\n+X: 2\r\nab\r\n")
    assert e.malformed == 1 and e.last_malformed == b"+X: 2" and not e.busy


def test_on_urc_first_goes_ahead_of_a_catch_all():
    e = Engine(Parser(urcs=(b"+C",)))
    seen = []
    e.on_urc(b"+C", lambda line: seen.append("catch-all"))
    e.on_urc(b"+CCHEVENT:", lambda line: seen.append("first"), first=True)
    e.receive(b"\r\n+CCHEVENT: 0,RECV EVENT\r\n\r\n+CREG: 1\r\n")
    assert seen == ["first", "catch-all"]


# -- AT+CCLK and the device clock ------------------------------------------------------------
@pytest.fixture
def real_clock(monkeypatch):
    monkeypatch.setattr(clock, "_offset", 0)
    monkeypatch.setattr(clock, "source", None)


def test_sync_modem_against_the_virtual_modem(rig, real_clock):
    clock.set_time(946684800)                       # a board that just booted
    t = clock.sync_modem(rig.modem)
    assert abs(t - time.time()) <= 2 and abs(clock.now() - time.time()) <= 2
    assert clock.source == "modem"
    # the network gives local time with a zone: +08 quarter hours = UTC+2
    rig.modem.at.command(b'AT+CCLK="24/05/17,10:20:30+08"')
    line = rig.modem.at.command(b"AT+CCLK?", b"+CCLK:").lines[0]
    assert line.startswith(b'+CCLK: "24/05/17,10:2') and line.endswith(b'+08"')
    t = clock.sync_modem(rig.modem)
    assert abs(t - calendar.timegm((2024, 5, 17, 8, 20, 30))) <= 2
    for bad in (b'"24/13/17,10:20:30+08"', b'"24/05/17,10:20:30"', b'"24/05/17,10:20:30+99"',
                b"24"):
        with pytest.raises(Exception, match="ERROR"):
            rig.modem.at.command(b"AT+CCLK=" + bad)


def test_cclk_text_is_27007():
    assert cclk_text(calendar.timegm((2024, 5, 17, 8, 20, 30)), 8) == "24/05/17,10:20:30+08"
    assert cclk_text(calendar.timegm((2026, 1, 1, 4, 30, 0)), -20) == "25/12/31,23:30:00-20"
    assert clock.parse_cclk('"%s"' % cclk_text(1715934030, -3)) == 1715934030
