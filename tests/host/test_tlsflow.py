"""synack_host.hil.tlsflow on real TLS bytes: an OpenSSL client and server (CPython ssl)
handshake in memory and the bytes each sent are laid out as the TCP segments a capture
would show (small segments, a retransmission, a lost segment); and a real capture of
HTTPS over 127.0.0.1 (tcpdump: needs root, skips without it except in CI).

Each fact is checked against what the test itself arranged: which flight carried the
ClientHello and the Finished, how many requests went, which side refused."""

from __future__ import annotations

import http.client
import ssl

import pytest

from synack_host.hil.capture import Capture, unavailable
from synack_host.hil.http_server import HttpServer
from synack_host.hil.pki import hil_pki
from synack_host.hil.pki import unavailable as pki_unavailable
from synack_host.hil.plugin import require_tools
from synack_host.hil.segments import ACK, FIN, PSH, SYN, Endpoint, Segment
from synack_host.hil.tcpflow import flows
from synack_host.hil.tlsflow import (
    ALERT,
    APPLICATION_DATA,
    HANDSHAKE,
    count_client_hellos,
    negotiated_version,
    side_stream,
    tls_facts,
)

CLIENT = Endpoint("127.0.0.1", 40000)
SERVER = Endpoint("127.0.0.1", 8443)
REQUEST = b"GET /data HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"e\"\r\n\r\n"
RESPONSE = b"HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\n\r\n"


def _move(out: ssl.MemoryBIO, into: ssl.MemoryBIO, side: str, flights: list) -> None:
    data = out.read()
    if data:
        into.write(data)
        flights.append((side, data))


def tls_flights(pki, cert: str = "server", ca: str = "ca", version: str = "1.3",
                requests: int = 2, host: str = "127.0.0.1") -> tuple[list, str | None]:
    """Run a handshake (and ``requests`` request/response pairs if it succeeds) between
    an OpenSSL client trusting ``ca`` and a server presenting ``cert``, at most TLS
    ``version``. Returns the flights [(side, bytes)] in the order sent, and the
    client's error (its verify message) or None."""
    sctx = pki.server_context(cert, "server")
    sctx.maximum_version = (ssl.TLSVersion.TLSv1_3 if version == "1.3"
                            else ssl.TLSVersion.TLSv1_2)
    cctx = ssl.create_default_context(cafile=str(pki.path(ca)))
    cin, cout, sin, sout = (ssl.MemoryBIO() for _ in range(4))
    client = cctx.wrap_bio(cin, cout, server_hostname=host)
    server = sctx.wrap_bio(sin, sout, server_side=True)
    flights: list[tuple[str, bytes]] = []
    error = None
    done = {"client": False, "server": False}
    for _ in range(10):                          # a handshake takes 2-3 round trips
        for side, obj in (("client", client), ("server", server)):
            if done[side]:
                continue
            try:
                obj.do_handshake()
                done[side] = True
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as e:
                if side == "client":
                    error = getattr(e, "verify_message", None) or str(e)
                done[side] = True            # this side gave up (its alert is queued)
            if side == "client":
                _move(cout, sin, "client", flights)
            else:
                _move(sout, cin, "server", flights)
        if all(done.values()):
            break
    if error is not None:
        return flights, error
    for _ in range(requests):
        client.write(REQUEST)
        _move(cout, sin, "client", flights)
        assert server.read(4096) == REQUEST
        server.write(RESPONSE)
        _move(sout, cin, "server", flights)
        while True:                              # 1.3: a session ticket comes first
            try:
                if client.read(4096) == RESPONSE:
                    break
            except ssl.SSLWantReadError:
                raise AssertionError("the response did not arrive") from None
    return flights, None


def segments(flights: list, mss: int = 200, t0: float = 100.0, dt: float = 0.001,
             duplicate: int | None = None, drop: int | None = None,
             close: bool = True) -> tuple[list[Segment], list[float]]:
    """The TCP segments of a connection carrying ``flights``: three-way handshake, each
    flight cut into ``mss``-byte segments (each acked by the peer), then a close. Data
    segment number ``duplicate`` is sent twice (a retransmission), ``drop`` never shows
    up (capture loss). Returns the segments and the time each flight's first byte was
    captured."""
    isn = {"client": 2**32 - 100, "server": 5000}    # the client's wraps
    nxt = {s: (isn[s] + 1) % 2**32 for s in isn}
    ends = {"client": (CLIENT, SERVER), "server": (SERVER, CLIENT)}
    t = [t0]

    def seg(side: str, flags: int, seq: int, ack: int, payload: bytes = b"") -> Segment:
        t[0] += dt
        src, dst = ends[side]
        return Segment(t[0], src, dst, flags, seq, ack, len(payload), 65535, payload)

    out = [seg("client", SYN, isn["client"], 0), seg("server", SYN | ACK, isn["server"],
                                                     nxt["client"]),
           seg("client", ACK, nxt["client"], nxt["server"])]
    starts: list[float] = []
    n = 0
    for side, data in flights:
        peer = "server" if side == "client" else "client"
        starts.append(t[0] + dt)
        for i in range(0, len(data), mss):
            part = data[i:i + mss]
            s = seg(side, PSH | ACK, nxt[side], nxt[peer], part)
            if n != drop:
                out.append(s)
            if n == duplicate:
                out.append(seg(side, PSH | ACK, s.seq, s.ack, part))
            n += 1
            nxt[side] = (nxt[side] + len(part)) % 2**32
        out.append(seg(peer, ACK, nxt[peer], nxt[side]))
    if close:
        out.append(seg("client", FIN | ACK, nxt["client"], nxt["server"]))
        out.append(seg("server", FIN | ACK, nxt["server"], (nxt["client"] + 1) % 2**32))
        out.append(seg("client", ACK, (nxt["client"] + 1) % 2**32, (nxt["server"] + 1) % 2**32))
    return out, starts


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    if pki_unavailable():
        pytest.skip(pki_unavailable())
    return hil_pki(tmp_path_factory.mktemp("pki"), "127.0.0.1")


def facts_of(flights, **kw):
    segs, starts = segments(flights, **kw)
    found = flows(segs, [SERVER.port])
    assert len(found) == 1
    return tls_facts(found[0]), starts


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_one_handshake_then_requests(pki, version):
    flights, error = tls_flights(pki, version=version, requests=3)
    assert error is None
    tls, starts = facts_of(flights, mss=100)            # records span many segments
    assert tls.complete == {"client": True, "server": True}, tls.summary()
    assert tls.version_name == f"TLS {version}" and tls.client_hellos == 1
    first = tls.of("client")[0]
    assert first.type == HANDSHAKE and first.messages[0] == 1 and first.time == starts[0]
    assert tls.of("server")[0].messages[0] == 2          # the ServerHello comes first
    # the handshake ends with the server's Finished (1.2, its 2nd flight, flight 3) or
    # the client's Finished (1.3, its 2nd flight, flight 2): where this test put them
    end = tls.handshake_end
    assert end is not None and end.side == ("server" if version == "1.2" else "client")
    flight = 3 if version == "1.2" else 2
    assert starts[flight] <= end.time < starts[flight + 1]
    if version == "1.2":                # after a session ticket (4) and its CCS
        ccs = tls.of("server")[end.index - 1]
        assert ccs.type == 20 and tls.of("server")[end.index - 2].messages == (4,)
    else:
        assert end.time == starts[2] and end.type == APPLICATION_DATA
    for side in ("client", "server"):   # after its CCS a side's handshake is encrypted
        ccs_at = next((r.index for r in tls.of(side) if r.type == 20), 10**6)
        assert all(r.messages == () for r in tls.of(side, HANDSHAKE) if r.index > ccs_at)
    assert tls.handshake_time == pytest.approx(end.time - starts[0])
    requests = len(REQUEST) + 5 + (16 if version == "1.3" else 0)  # + header, AEAD tag ...
    assert tls.app_data_bytes("client") >= 3 * requests
    assert 700 < tls.handshake_bytes < 2500
    total = sum(len(d) for _, d in flights)
    assert tls.handshake_bytes + tls.app_data_bytes("client") \
        + tls.app_data_bytes("server") <= total
    if version == "1.2":
        assert tls.client_application_data == 3           # exactly the requests
        assert tls.handshake_bytes + tls.app_data_bytes("client") \
            + tls.app_data_bytes("server") == total
    else:
        assert tls.client_application_data is None        # Finished is one too
    client_bytes = bytes(side_stream(tls.flow, "client").data)
    assert b"GET /data" not in client_bytes and b"If-None-Match" not in client_bytes


def test_a_retransmission_counts_once_and_a_lost_segment_stops_the_parse(pki):
    flights, _ = tls_flights(pki, version="1.2", requests=2)
    clean, _ = facts_of(flights, mss=120)
    again, _ = facts_of(flights, mss=120, duplicate=3)
    assert [(r.side, r.type, r.length) for r in again.records] == \
        [(r.side, r.type, r.length) for r in clean.records]
    assert again.complete == {"client": True, "server": True}
    lost, _ = facts_of(flights, mss=120, drop=len(flights[0][1]) // 120 + 1)  # server's
    assert side_stream(lost.flow, "server").gap and not side_stream(lost.flow, "client").gap
    assert lost.complete["server"] is False and lost.complete["client"] is True
    assert lost.handshake_end is None and lost.client_hellos == 1
    assert "not fully parsed" in lost.summary()


def test_a_payload_cut_by_the_snapshot_length_is_a_gap(pki):
    flights, _ = tls_flights(pki, version="1.2", requests=1)
    segs, _ = segments(flights, mss=120)
    i = next(i for i, x in enumerate(segs) if x.length and x.src == CLIENT)
    x = segs[i]
    segs[i] = Segment(x.time, x.src, x.dst, x.flags, x.seq, x.ack, x.length, x.window,
                      x.payload[:50])
    stream = side_stream(flows(segs, [SERVER.port])[0], "client")
    assert stream.gap and stream.data == b""


def test_tls13_client_finished_counts_only_once_the_server_answers(pki):
    """The client's first encrypted record ends a 1.3 handshake, but an encrypted alert
    would look the same: only a server record after it proves it was a Finished."""
    flights, _ = tls_flights(pki, version="1.3", requests=0)
    assert [side for side, _ in flights] == ["client", "server", "client", "server"]
    unanswered, _ = facts_of(flights[:3])
    assert unanswered.of("client", APPLICATION_DATA) and unanswered.handshake_end is None
    answered, starts = facts_of(flights)              # the server's session tickets
    assert answered.handshake_end is not None and answered.handshake_end.time == starts[2]


def test_two_connections_are_two_handshakes(pki):
    segs = []
    for i in range(2):
        flights, _ = tls_flights(pki, requests=1)
        s, _ = segments(flights, t0=100.0 + i)
        segs += [Segment(x.time, x.src if x.src != CLIENT else Endpoint(CLIENT.ip, 40000 + i),
                         x.dst if x.dst != CLIENT else Endpoint(CLIENT.ip, 40000 + i),
                         x.flags, x.seq, x.ack, x.length, x.window, x.payload) for x in s]
    found = flows(segs, [SERVER.port])
    assert len(found) == 2 and count_client_hellos(found) == 2


def test_a_hello_split_over_two_records_is_one_hello(pki):
    flights, _ = tls_flights(pki, version="1.2", requests=1)
    side, hello = flights[0]
    assert side == "client" and hello[0] == HANDSHAKE
    body = hello[5:5 + int.from_bytes(hello[3:5], "big")]
    rest = hello[5 + len(body):]
    cut = 30                                   # inside the ClientHello message
    split = (bytes([HANDSHAKE]) + hello[1:3] + cut.to_bytes(2, "big") + body[:cut]
             + bytes([HANDSHAKE]) + hello[1:3] + (len(body) - cut).to_bytes(2, "big")
             + body[cut:] + rest)
    tls, _ = facts_of([("client", split)] + flights[1:2], close=False)
    hs = tls.of("client", HANDSHAKE)
    assert [r.messages for r in hs[:2]] == [(1,), ()] and tls.client_hellos == 1


@pytest.mark.parametrize("cert,words", [("unknown-ca", "unable to get local issuer"),
                                        ("wrong-host", "mismatch")])
def test_a_refused_handshake_shows_an_alert_and_no_request(pki, cert, words):
    flights, error = tls_flights(pki, cert=cert, version="1.2")
    assert error is not None and words in error
    tls, _ = facts_of(flights)
    assert tls.client_hellos == 1 and tls.handshake_end is None
    assert tls.handshake_time is None and tls.client_application_data == 0
    assert [r.type for r in tls.of("client")] == [HANDSHAKE, ALERT]
    assert "handshake not completed" in tls.summary()


def test_a_refused_tls13_handshake_is_not_taken_for_a_completed_one(pki):
    flights, error = tls_flights(pki, cert="unknown-ca", version="1.3")
    assert error is not None
    tls, _ = facts_of(flights)
    assert tls.version_name == "TLS 1.3" and tls.handshake_end is None


def test_plain_http_is_not_tls():
    tls, _ = facts_of([("client", REQUEST), ("server", RESPONSE)])
    assert tls.records == [] and tls.client_hellos == 0 and tls.version is None
    assert tls.complete == {"client": False, "server": False}


def test_negotiated_version_reads_the_server_hello(pki):
    for version, want in (("1.2", 0x0303), ("1.3", 0x0304)):
        flights, _ = tls_flights(pki, version=version, requests=0)
        hello = flights[1][1]
        n = int.from_bytes(hello[6:9], "big")
        assert hello[5] == 2 and negotiated_version(hello[9:9 + n]) == want
    assert negotiated_version(b"\x03\x03" + b"\x00" * 10) is None     # cut short


# -- a real capture: HTTPS over 127.0.0.1 ------------------------------------------------------
def test_capture_of_https_polls_and_a_refusal(pki, tmp_path):
    require_tools(unavailable(), "wire-level checks")
    with HttpServer(tls=pki.server_context("server", "server")) as good, \
            HttpServer(tls=pki.server_context("unknown-ca", "server")) as bad:
        cap = Capture(tmp_path, ports=[good.port, bad.port]).start()
        ctx = ssl.create_default_context(cafile=str(pki.path("ca")))
        conn = http.client.HTTPSConnection("127.0.0.1", good.port, context=ctx, timeout=5)
        etag = None
        for _ in range(5):
            conn.request("GET", "/data", headers={"If-None-Match": etag} if etag else {})
            r = conn.getresponse()
            r.read()
            etag = r.getheader("ETag")
        conn.close()
        refused = http.client.HTTPSConnection("127.0.0.1", bad.port, context=ctx, timeout=5)
        with pytest.raises(ssl.SSLCertVerificationError):
            refused.request("GET", "/secret")
        refused.close()
        assert bad.wait_for(lambda: bool(bad.tls_errors))
        found = cap.stop()
    cap.assert_connections(1, port=good.port)
    cap.assert_connections(1, port=bad.port)
    assert count_client_hellos(found) == 2
    ok, no = (tls_facts(cap.flow(port=p)) for p in (good.port, bad.port))
    assert ok.handshake_end is not None and 0 < ok.handshake_time < 2, ok.summary()
    assert ok.complete == {"client": True, "server": True}, ok.summary()
    assert len(ok.of("client", APPLICATION_DATA)) >= 5 and ok.app_data_bytes("server") > 0
    assert no.client_hellos == 1 and no.handshake_end is None, no.summary()
    # and the server counted the same
    assert (good.connections, good.handshakes, good.tls_errors) == (1, 1, [])
    assert [r.status for r in good.requests] == [200, 304, 304, 304, 304]
    assert (bad.connections, bad.handshakes, bad.received_bytes) == (1, 0, 0)
    assert "unknown ca" in bad.tls_errors[0].lower()
