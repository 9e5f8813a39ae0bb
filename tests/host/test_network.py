"""Network impairment on real traffic between namespaces this test creates.

Every test builds its own device / wire / router / server namespaces and sends traffic only
to hosts inside them. Needs root and iproute2 (idle-kill also nftables); skips with the
reason when missing, except in CI (CI=true), where it fails instead.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time

import pytest

from synack_host.hil import netns
from synack_host.hil.plugin import require_tools
from synack_host.hil.network import (Network, NetworkError, cleanup_stale, list_namespaces,
                                     unavailable)
from synack_host.hil.servers import EchoServer, ScriptedServer


def require(*tools: str) -> None:
    reason = unavailable(*tools)
    if reason is None and "tcpdump" in tools:
        reason = netns.missing_tool("tcpdump")
    require_tools(reason, "network impairment tests")


@pytest.fixture
def net():
    require("tcpdump")
    with Network() as n:
        yield n
    assert not set(n) & set(list_namespaces()), "namespaces left behind"


class PeerEcho(ScriptedServer):
    """Echo server that records each client's address as the server sees it."""

    def __init__(self, host: str = "0.0.0.0"):
        self.peers: list[tuple[str, int]] = []
        super().__init__(self._serve_echo, host)

    def _serve_echo(self, conn: socket.socket) -> None:
        self.peers.append(conn.getpeername()[:2])
        while data := conn.recv(65536):
            conn.sendall(data)


@pytest.fixture
def server(net):
    srv = net.call("server", PeerEcho)
    yield srv
    srv.stop()


def rtt(sock: socket.socket, n: int = 5) -> float:
    """Smallest of ``n`` one-byte echo round trips."""
    best = 10.0
    for _ in range(n):
        t = time.monotonic()
        sock.sendall(b"r")
        assert sock.recv(10) == b"r"
        best = min(best, time.monotonic() - t)
    return best


def test_device_and_server_are_separate_hosts(net, server, tmp_path):
    names = list_namespaces()
    assert all(n in names for n in net) and len(set(net)) == 4
    addrs = net.run("device", ["ip", "-br", "-4", "addr", "show", "eth0"]).stdout
    assert Network.DEVICE_IP in addrs
    assert net.ping("device") is not None
    assert net.ping("server") is not None          # and back, through the router
    with net.capture("server", tmp_path, ports=[server.port]) as cap:
        with net.connect("device", (net.SERVER_IP, server.port)) as c:
            c.sendall(b"across")
            assert c.recv(10) == b"across"
            c.shutdown(socket.SHUT_WR)
            assert c.recv(10) == b""
    assert server.peers[0][0] == Network.DEVICE_IP   # routed, not NATed
    f = cap.flow()
    assert f.client.ip == Network.DEVICE_IP and f.server == (Network.SERVER_IP, server.port)
    f.assert_handshake()
    f.assert_four_way_close(first_fin="client")


def test_blackhole_drops_silently_and_lifts(net, server, tmp_path):
    dev_cap = net.capture("device", tmp_path, ports=[server.port], name="dev").start()
    srv_cap = net.capture("server", tmp_path, ports=[server.port], name="srv").start()
    c = net.connect("device", (net.SERVER_IP, server.port))
    c.sendall(b"ok")
    assert c.recv(10) == b"ok"
    hole = net.blackhole()
    c.settimeout(1.2)
    c.sendall(b"lost")
    with pytest.raises(TimeoutError):
        c.recv(10)                                  # no answer, and no error either
    with pytest.raises(TimeoutError):
        net.connect("device", (net.SERVER_IP, server.port), timeout=1.0)
    assert net.ping(timeout=0.3) is None
    assert net.wire.stats["a2b"].blackholed > 0
    hole.remove()
    c.settimeout(8.0)
    assert c.recv(10) == b"lost"                    # a retransmission gets through
    c.close()
    dev_cap.stop()
    srv_cap.stop()
    first = dev_cap.flow(0)
    first.assert_no_rst()
    assert first.retransmissions["client"] >= 1
    dev_cap.assert_connections(2, port=server.port)
    second = dev_cap.flow(1)                        # the connect during the blackhole
    assert second.syn_count >= 1 and second.synack is None and not second.rst
    for flow in srv_cap.flows:
        flow.assert_no_rst()
    assert all(f.syn is not None for f in srv_cap.flows)
    assert [f.client.port for f in srv_cap.flows] == [first.client.port]  # SYN never arrived


def test_latency_adds_round_trip_time(net, server, tmp_path):
    with net.connect("device", (net.SERVER_IP, server.port)) as c:
        base = rtt(c)
        assert base < 0.03
        with net.impair(delay_ms=40):               # each way: +80 ms round trip
            slow = rtt(c, 3)
            ping = net.ping()
            with net.capture("device", tmp_path, ports=[server.port]) as cap:
                net.connect("device", (net.SERVER_IP, server.port)).close()
        assert rtt(c) < 0.03                        # removed again
    assert 0.075 <= slow - base < 0.5, (base, slow)
    assert ping is not None and ping >= 0.075
    f = cap.flow()
    f.assert_handshake()
    assert f.handshake_time >= 0.075                # seen on the wire: SYN -> ACK


def test_one_way_delay_and_loss(net):
    with net.impair(delay_ms=30, direction="up"):
        up = net.ping()
    assert up is not None and 0.028 <= up < 0.3
    results = []
    with net.impair(loss_pct=50, direction="down"):
        for _ in range(20):                         # bounded; seeded loss
            results.append(net.ping(timeout=0.15))
    lost = sum(r is None for r in results)
    assert 0 < lost < 20, results
    assert 0 < net.wire.stats["b2a"].lost <= lost   # a late reply also counts as lost
    assert net.ping() is not None


def test_idle_kill_drops_idle_but_not_active_connection(net, server, tmp_path):
    require("nft")
    killer = net.idle_kill(2)
    cap = net.capture("device", tmp_path, ports=[server.port]).start()
    active = net.connect("device", (net.SERVER_IP, server.port))
    idle = net.connect("device", (net.SERVER_IP, server.port))
    for s in (active, idle):
        s.sendall(b"hi")
        assert s.recv(10) == b"hi"
    end = time.monotonic() + 3.2
    while time.monotonic() < end:                   # active: traffic every 0.5 s
        active.sendall(b"a")
        assert active.recv(10) == b"a"
        time.sleep(0.5)
    active.sendall(b"still")
    assert active.recv(10) == b"still"
    idle.settimeout(1.5)
    idle.sendall(b"anyone?")
    with pytest.raises(TimeoutError):
        idle.recv(10)                               # forgotten by the NAT: dropped silently
    assert net.idle_kill_drops() > 0
    fresh = net.connect("device", (net.SERVER_IP, server.port))
    fresh.sendall(b"new")
    assert fresh.recv(10) == b"new"                 # new connections still pass
    for s in (active, idle, fresh):
        s.close()
    cap.stop(settle=0)
    assert all(peer[0] == Network.ROUTER_SERVER_IP for peer in server.peers)   # NAT
    idle_flow = cap.flow(1)
    idle_flow.assert_no_rst()
    assert idle_flow.retransmissions["client"] >= 1
    killer.remove()
    assert not killer.active


def test_teardown_after_exception_leaves_nothing():
    require()
    names: list[str] = []
    with pytest.raises(RuntimeError, match="test failed"):
        with Network() as net:
            names = list(net)
            net.blackhole()
            net.call("server", EchoServer, host="0.0.0.0")
            raise RuntimeError("test failed")
    assert names and not set(names) & set(list_namespaces())


def test_cleanup_stale_removes_only_dead_owners():
    require()
    with open("/proc/sys/kernel/pid_max") as f:
        dead_pid = int(f.read()) + 1                # no process can have this pid
    stale = f"synack-{dead_pid}-1-dev"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        with Network() as net:
            removed = cleanup_stale()
            assert stale in removed
            assert set(net) <= set(list_namespaces())   # ours: owner alive, kept
    finally:
        netns.delete_namespace(stale)
    assert stale not in list_namespaces()


def test_errors_name_the_command_and_stderr(net, monkeypatch):
    with pytest.raises(NetworkError) as err:
        net.run("device", ["ip", "link", "set", "nosuchdev0", "up"])
    assert err.value.cmd and "nosuchdev0" in " ".join(err.value.cmd)
    assert "nosuchdev0" in str(err.value) and err.value.returncode != 0
    with pytest.raises(ValueError, match="role must be one of"):
        net.ns("laptop")
    with pytest.raises(ValueError, match="direction"):
        net.impair(delay_ms=1, direction="sideways")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert "root" in (unavailable() or "")
    with pytest.raises(NetworkError, match="need root"):
        Network().start()


def test_thread_inside_namespace_keeps_its_socket_there(net, server):
    results: dict[str, object] = {}
    before = os.readlink("/proc/thread-self/ns/net")

    def client() -> None:
        with net.inside("device"):
            results["inside"] = os.readlink("/proc/thread-self/ns/net")
            s = socket.create_connection((net.SERVER_IP, server.port), timeout=5)
        results["after"] = os.readlink("/proc/thread-self/ns/net")
        s.sendall(b"thread")                        # the socket stays in the device netns
        results["echo"] = s.recv(10)
        s.close()

    t = threading.Thread(target=client)
    t.start()
    t.join(10)
    assert results.get("echo") == b"thread"
    assert results["inside"] != before and results["after"] == before
    assert os.readlink("/proc/thread-self/ns/net") == before   # the caller never moved
