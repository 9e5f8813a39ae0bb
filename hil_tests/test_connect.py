"""Connect: DNS, the three-way handshake, an echo, and the close — as the device's TCP
event log tells it and as the wire shows it."""

ECHO = """
addr = socket.getaddrinfo(%(host)r, %(port)d)[0][-1]
s = socket.socket()
s.settimeout(15)
s.connect(addr)
s.write(b'x' * %(size)d)
got = s.read(%(size)d)
%(close)s
print('echoed', len(got), got == b'x' * %(size)d)
print('states', ' '.join(s.tcp.states()))
"""


def run_echo(board, server, host, size=1000, close="s.close()"):
    out = board.exec(ECHO % {"host": host, "port": server.port, "size": size,
                             "close": close}, timeout=60)
    lines = dict(line.split(" ", 1) for line in out.strip().splitlines())
    return lines


def test_dns_connect_echo_and_active_close(board, echo_server, capture, hil,
                                           record_property):
    cap = capture(echo_server.port)
    lines = run_echo(board, echo_server, "localhost" if hil.virtual else hil.server_host)
    flows = cap.stop()
    assert lines["echoed"] == "1000 True"
    states = lines["states"].split()
    assert states[:3] == ["CLOSED", "SYN_SENT", "ESTABLISHED"]
    assert states[3:] == ["FIN_WAIT_1", "FIN_WAIT_2", "TIME_WAIT", "CLOSED"], states
    # the wire agrees: one connection, handshake, 1000 bytes each way, we closed first
    assert len(flows) == 1, cap.summary()
    flow = flows[0]
    flow.assert_handshake()
    record_property("handshake_ms", round(flow.handshake_time * 1000, 3))
    flow.assert_data(client=1000, server=1000)
    flow.assert_four_way_close(first_fin="client")
    flow.assert_time_wait("client")
    flow.assert_no_rst()
    assert echo_server.closed_by_client == [True]


def test_peer_closes_first(board, capture, hil):
    from synack_host.hil.servers import ScriptedServer

    def greet_and_close(conn):
        conn.sendall(b"bye")

    with ScriptedServer(greet_and_close, hil.bind_host) as server:
        cap = capture(server.port)
        out = board.exec("""
s = socket.socket()
s.settimeout(15)
s.connect(socket.getaddrinfo(%r, %d)[0][-1])
print('got', s.read())
s.close()
print('states', ' '.join(s.tcp.states()))
""" % (hil.server_host, server.port), timeout=60)
        flows = cap.stop()
    assert "got b'bye'" in out
    states = out.split("states ", 1)[1].split()
    assert states[2:] == ["ESTABLISHED", "CLOSE_WAIT", "LAST_ACK", "CLOSED"], states
    flows[0].assert_handshake()
    flows[0].assert_four_way_close(first_fin="server")
    flows[0].assert_time_wait("server")


def test_connect_refused_is_a_clear_error(board, hil):
    import socket as host_socket

    s = host_socket.socket()
    s.bind((hil.bind_host, 0))
    port = s.getsockname()[1]
    s.close()                       # nobody listens on this port now
    out = board.exec("""
import errno
s = socket.socket()
s.settimeout(15)
try:
    s.connect(socket.getaddrinfo(%r, %d)[0][-1])
    print('connected?!')
except OSError as e:
    print('refused', e.args[0] == errno.ECONNREFUSED, s.state)
""" % (hil.server_host, port), timeout=60)
    assert out.strip() == "refused True CLOSED", out
