"""Wire-level verification on real traffic: tcpdump on lo, CPython sockets, local servers.

Tests that capture need root and tcpdump; they skip with the reason when either is
missing, except in CI (CI=true), where the wire checks must run and so fail instead.
The pcap-parsing tests at the end use pcaps written here and need neither.
"""

from __future__ import annotations

import socket
import struct
import time

import dpkt
import pytest

from synack_host.hil.plugin import require_tools
from synack_host.hil.capture import Capture, CaptureError, flows, read_pcap, unavailable
from synack_host.hil.servers import ScriptedServer

REASON = unavailable()


def require_capture() -> None:
    require_tools(REASON, "wire-level checks")


@pytest.fixture
def capture(tmp_path):
    """Factory: ``capture(port, ...)`` -> a started Capture on lo; stopped at teardown."""
    require_capture()
    made: list[Capture] = []

    def make(*ports: int, **kwargs) -> Capture:
        cap = Capture(tmp_path, ports=ports, name=f"cap{len(made)}", **kwargs).start()
        made.append(cap)
        return cap

    yield make
    for cap in made:
        if cap.running:
            cap.stop(settle=0)


def echo_once(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    got = b""
    deadline = time.monotonic() + 5
    while len(got) < len(data) and time.monotonic() < deadline:
        got += sock.recv(65536)
    return got


def test_handshake_and_data_facts(echo, capture):
    cap = capture(echo.port)
    with socket.create_connection(echo.address, timeout=5) as c:
        assert echo_once(c, b"x" * 1000) == b"x" * 1000
        c.shutdown(socket.SHUT_WR)
        assert c.recv(10) == b""
    cap.stop()
    cap.assert_connections(1, port=echo.port, complete=True)
    f = cap.flow(port=echo.port)
    f.assert_handshake(max_time=1.0)
    assert f.syn is not None and f.synack is not None and f.handshake_ack is not None
    assert f.client == (f.syn.src.ip, f.syn.src.port) and f.server.port == echo.port
    assert f.synack.ack == (f.client_isn + 1) % 2**32          # SYN consumes one number
    assert f.handshake_ack.ack == (f.server_isn + 1) % 2**32
    assert 0 < f.handshake_time < 1.0
    f.assert_data(client=1000, server=1000)
    f.assert_no_rst()
    assert "handshake" in cap.summary() and str(echo.port) in cap.summary()


def test_four_way_close_client_first(echo, capture):
    cap = capture(echo.port)
    with socket.create_connection(echo.address, timeout=5) as c:
        echo_once(c, b"hello")
        c.shutdown(socket.SHUT_WR)                  # client FIN first
        assert c.recv(10) == b""                    # server's FIN
    cap.stop()
    f = cap.flow()
    f.assert_four_way_close(first_fin="client")
    f.assert_time_wait("client")
    assert f.first_fin == "client" and f.time_wait == "client"
    for side, fin in f.fins.items():                # FIN consumes one sequence number
        assert fin.acked, side
    assert f.fins["client"].seq == (f.client_isn + 1 + 5) % 2**32


def test_four_way_close_server_first(capture):
    def bye(conn: socket.socket) -> None:
        conn.sendall(b"bye")
        conn.shutdown(socket.SHUT_WR)               # server FIN first
        conn.recv(10)                               # wait for the client's FIN

    with ScriptedServer(bye) as srv:
        cap = capture(srv.port)
        with socket.create_connection(srv.address, timeout=5) as c:
            data = b""
            while chunk := c.recv(10):
                data += chunk
            assert data == b"bye"
        assert srv.wait_for(lambda: srv.connections == 1)
        time.sleep(0.1)
        cap.stop()
    f = cap.flow()
    f.assert_handshake()
    f.assert_four_way_close(first_fin="server")
    f.assert_time_wait("server")
    f.assert_data(client=0, server=3)
    with pytest.raises(AssertionError) as err:
        f.assert_time_wait("client")
    assert "TIME_WAIT fell to server" in str(err.value)


def test_rst_on_abortive_close(echo, capture):
    cap = capture(echo.port)
    c = socket.create_connection(echo.address, timeout=5)
    echo_once(c, b"ping")
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()                                       # linger 0: RST instead of FIN
    cap.stop()
    f = cap.flow()
    f.assert_handshake()
    f.assert_rst(by="client")
    assert f.rst_by == "client" and f.time_wait is None
    with pytest.raises(AssertionError) as err:
        f.assert_four_way_close()
    assert "neither side sent a FIN (RST by client)" in str(err.value)
    with pytest.raises(AssertionError, match="the client sent an RST"):
        f.assert_no_rst()


def test_refused_connection_is_reset_by_server(capture):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()                                   # nothing listens on port now
    cap = capture(port)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)
    cap.stop()
    cap.assert_connections(1, port=port)
    cap.assert_connections(0, port=port, complete=True)
    f = cap.flow()
    assert f.rst_by == "server" and not f.handshake_complete
    with pytest.raises(AssertionError, match=r"answered the SYN with RST \(connection refused"):
        f.assert_handshake()


def test_keepalive_probes_count_and_spacing(echo, capture):
    cap = capture(echo.port)
    with socket.create_connection(echo.address, timeout=5) as c:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
        echo_once(c, b"k")
        time.sleep(2.6)                             # idle: probes at ~1 s and ~2 s
    cap.stop()
    f = cap.flow()
    f.assert_keepalive(min_probes=2, side="client", interval=(0.8, 1.6))
    assert all(p.acked and p.length in (0, 1) for p in f.keepalives["client"])
    assert all(p.idle_before >= 0.8 for p in f.keepalives["client"])
    f.assert_no_keepalive(side="server")
    f.assert_data(client=1, server=1)               # probes are not data
    assert sum(f.retransmissions.values()) == 0
    with pytest.raises(AssertionError, match=r"probe\(s\) were seen"):
        f.assert_keepalive(min_probes=10)
    with pytest.raises(AssertionError, match="were spaced"):
        f.assert_keepalive(min_probes=2, interval=(0.1, 0.2))


def test_no_keepalive_probes_without_so_keepalive(echo, capture):
    cap = capture(echo.port)
    with socket.create_connection(echo.address, timeout=5) as c:
        echo_once(c, b"k")
        time.sleep(1.2)
    cap.stop()
    f = cap.flow()
    f.assert_no_keepalive("client")
    with pytest.raises(AssertionError, match=r"at least 1 keepalive probe\(s\) from the client, "
                                             r"but on the wire 0 probe"):
        f.assert_keepalive()


def test_connection_counting(echo, capture):
    cap = capture(echo.port)
    for i in range(3):
        with socket.create_connection(echo.address, timeout=5) as c:
            echo_once(c, b"req %d" % i)
    cap.stop()
    cap.assert_connections(3, port=echo.port)
    cap.assert_connections(3, port=echo.port, complete=True)
    ports = [f.client.port for f in cap.connections(echo.port)]
    assert len(set(ports)) == 3
    with pytest.raises(AssertionError) as err:
        cap.assert_connections(1, port=echo.port)
    msg = str(err.value)
    assert "expected 1 connection(s) to port" in msg and "the wire shows 3" in msg
    assert msg.count("handshake") == 3              # the summary lists every connection
    with pytest.raises(AssertionError, match="connection #5"):
        cap.flow(5)


def test_failure_message_shows_the_wire(echo, capture):
    cap = capture(echo.port)
    with socket.create_connection(echo.address, timeout=5) as c:
        echo_once(c, b"hi")
        c.shutdown(socket.SHUT_WR)
        c.recv(10)
    cap.stop()
    with pytest.raises(AssertionError) as err:
        cap.flow().assert_four_way_close(first_fin="server")
    msg = str(err.value)
    assert "begun by the server, but on the wire the client sent the first FIN" in msg
    assert "trace:" in msg and "[S  ]" in msg and "[F. ]" in msg and "facts:" in msg


def test_start_fails_clearly_on_a_bad_interface(tmp_path):
    require_capture()
    cap = Capture(tmp_path, interface="nosuchif0")
    with pytest.raises(CaptureError, match="nosuchif0"):
        cap.start(timeout=5)
    assert not cap.running


def test_failing_block_stops_tcpdump_and_keeps_its_error(tmp_path, echo):
    require_capture()
    cap = Capture(tmp_path, ports=[echo.port])
    with pytest.raises(RuntimeError, match="the test's own failure"):
        with cap:
            socket.create_connection(echo.address, timeout=5).close()
            raise RuntimeError("the test's own failure")
    assert not cap.running and cap.pcap_path.exists()
    cap.assert_connections(1, port=echo.port)


# -- pcap parsing (no root needed) ---------------------------------------------------------

def tcp(src: str, dst: str, sport: int, dport: int, flags: int, seq: int, ack: int = 0,
        payload: bytes = b"") -> dpkt.Packet:
    seg = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, win=512,
                       data=payload)
    if ":" in src:
        raw = bytes(seg)
        return dpkt.ip6.IP6(src=socket.inet_pton(socket.AF_INET6, src), nxt=6, hlim=64,
                            dst=socket.inet_pton(socket.AF_INET6, dst), plen=len(raw),
                            data=seg)
    return dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=6, data=seg)


def conversation(c: str, s: str, cport: int = 40000, isn_c: int = 2**32 - 2,
                 isn_s: int = 7000, t0: float = 100.0) -> list[tuple[float, dpkt.Packet]]:
    """Handshake, 4 bytes each way, server closes first, client acks and closes.
    The client ISN wraps past 2**32 to exercise sequence arithmetic."""
    S, A, F, P = dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK, dpkt.tcp.TH_FIN, dpkt.tcp.TH_PUSH
    m = 2**32
    cs = lambda n: (isn_c + n) % m  # noqa: E731
    ss = lambda n: (isn_s + n) % m  # noqa: E731
    steps = [
        (c, s, cport, 80, S, cs(0), 0, b""),
        (s, c, 80, cport, S | A, ss(0), cs(1), b""),
        (c, s, cport, 80, A, cs(1), ss(1), b""),
        (c, s, cport, 80, P | A, cs(1), ss(1), b"ping"),
        (s, c, 80, cport, P | A, ss(1), cs(5), b"pong"),
        (s, c, 80, cport, F | A, ss(5), cs(5), b""),
        (c, s, cport, 80, A, cs(5), ss(6), b""),
        (c, s, cport, 80, F | A, cs(5), ss(6), b""),
        (s, c, 80, cport, A, ss(6), cs(6), b""),
    ]
    return [(t0 + i * 0.01, tcp(*step)) for i, step in enumerate(steps)]


def write_pcap(path, linktype: int, packets) -> None:
    with open(path, "wb") as f:
        w = dpkt.pcap.Writer(f, linktype=linktype)
        for ts, ip in packets:
            ethertype = 0x86DD if isinstance(ip, dpkt.ip6.IP6) else 0x0800
            if linktype == dpkt.pcap.DLT_EN10MB:
                frame = bytes(dpkt.ethernet.Ethernet(dst=b"\x02" * 6, src=b"\x04" * 6,
                                                     type=ethertype, data=ip))
            elif linktype == dpkt.pcap.DLT_LINUX_SLL:
                frame = bytes(dpkt.sll.SLL(type=0, hrd=1, hlen=6, hdr=b"\x04" * 6 + b"\0\0",
                                           ethtype=ethertype, data=ip))
            else:
                frame = bytes(ip)
            w.writepkt(frame, ts)


@pytest.mark.parametrize("linktype,client,server", [
    (dpkt.pcap.DLT_EN10MB, "192.0.2.2", "198.51.100.2"),
    (dpkt.pcap.DLT_LINUX_SLL, "192.0.2.2", "198.51.100.2"),
    (101, "2001:db8::2", "2001:db8::80"),           # LINKTYPE_RAW, IPv6
    (dpkt.pcap.DLT_EN10MB, "2001:db8::2", "2001:db8::80"),
])
def test_pcap_link_types_and_ipv6(tmp_path, linktype, client, server):
    path = tmp_path / "x.pcap"
    write_pcap(path, linktype, conversation(client, server))
    segs = read_pcap(path)
    assert len(segs) == 9
    (f,) = flows(segs)
    assert f.client.ip == client and f.server == (server, 80)
    f.assert_handshake()
    assert abs(f.handshake_time - 0.02) < 1e-6
    f.assert_data(client=4, server=4)
    f.assert_four_way_close(first_fin="server")
    f.assert_time_wait("server")


def test_pcap_port_reuse_and_partial_flows(tmp_path):
    first = conversation("192.0.2.2", "198.51.100.2", t0=100.0)
    again = conversation("192.0.2.2", "198.51.100.2", isn_c=555, t0=200.0)   # same 4-tuple
    path = tmp_path / "x.pcap"
    write_pcap(path, 101, first[3:] + again)       # first one: SYN missed
    found = flows(read_pcap(path), server_ports=[80])
    assert [f.partial for f in found] == [True, False]
    assert found[0].server.port == 80 and found[0].syn is None
    with pytest.raises(AssertionError, match="no SYN was captured"):
        found[0].assert_handshake()
    found[0].assert_four_way_close(first_fin="server")
    found[1].assert_handshake()
    assert found[1].client_isn == 555
