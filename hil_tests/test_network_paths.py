"""The device as a separate host behind a real path: the virtual rig runs in its own
network namespace (192.0.2.2), the servers in another (198.51.100.2), and between them a
link and a router that these tests impair -- an idle-killing NAT (conntrack), a blackholed
link, added latency. Needs root (skips without it; fails in CI); virtual rig only."""

import re
import time

from device_code import HEARTBEAT

from synack_host.hil.http_server import HttpServer
from synack_host.hil.middlebox import heartbeat_server
from synack_host.hil.servers import EchoServer, ScriptedServer

NAT_IDLE_S = 2.0


def conntrack_has(network, port):
    """Whether the router's conntrack table still holds a connection to ``port``
    (expired entries are not listed)."""
    def read():
        with open("/proc/thread-self/net/nf_conntrack") as f:
            return f.read()

    return f" dport={port} " in network.call("router", read)


def test_heartbeat_keeps_a_connection_through_a_real_idle_killing_nat(
        netdevice, network, record_property):
    network.idle_kill(NAT_IDLE_S)            # before the connections it should watch
    seen_alive, seen_dead = [], []
    alive_peer = network.call("server", ScriptedServer, heartbeat_server(log=seen_alive),
                              network.SERVER_IP)
    dead_peer = network.call("server", ScriptedServer, heartbeat_server(log=seen_dead),
                             network.SERVER_IP)
    try:
        args = {"host": netdevice.server_host, "run_ms": 5000}
        # a heartbeat every 0.7 s keeps the router's mapping fresh for 5 s
        alive = netdevice.exec(HEARTBEAT % dict(args, port=alive_peer.port, idle_ms=700),
                               timeout=30).split()
        assert alive[:2] == ["result", "deadline"] and alive[3] == "ACTIVE", alive
        assert int(alive[2]) >= 5 and network.idle_kill_drops() == 0
        assert sum(d == "in" for _, d, _ in seen_alive) >= int(alive[2])
        # the same connection with its first heartbeat only after 3 s: the NAT has
        # forgotten it by then, and drops the heartbeat and everything after it
        netdevice.start(HEARTBEAT % dict(args, port=dead_peer.port, idle_ms=3000,
                                         run_ms=12000))
        assert dead_peer.wait_for(lambda: dead_peer.connections == 1, timeout=15)
        t0 = time.monotonic()
        forgot = None
        while time.monotonic() - t0 < NAT_IDLE_S + 4:       # bounded
            if not conntrack_has(network, dead_peer.port):
                forgot = time.monotonic() - t0
                break
            time.sleep(0.05)
        dead = netdevice.finish(timeout=30).split()
    finally:
        alive_peer.stop()
        dead_peer.stop()
    record_property("acks_in_5s", int(alive[2]))
    record_property("nat_forgot_after_s", None if forgot is None else round(forgot, 2))
    noticed = int(dead[4]) / 1000 if len(dead) > 4 else None
    record_property("dead_noticed_after_s", noticed)
    assert forgot is not None, "the router never forgot the idle connection"
    assert NAT_IDLE_S - 0.3 <= forgot <= NAT_IDLE_S + 1.0, forgot
    assert dead[:2] == ["result", "dead"] and dead[3] == "DEAD", dead
    assert int(dead[2]) == 0
    assert not [e for e in seen_dead if e[1] == "in"], seen_dead   # no heartbeat got through
    assert network.idle_kill_drops() > 0                           # the router dropped them
    # the device noticed after 3 s idle and 3 unanswered heartbeats 1.5 s apart
    assert noticed is not None and 3.0 + 3 * 1.5 - 0.1 <= noticed <= 3.0 + 3 * 1.5 + 1.0, dead


POLL_THROUGH_OUTAGE = """
import errno, time
from synack.http.client import Client
c = Client(connect_timeout_ms=%(timeout_ms)d, read_timeout_ms=%(timeout_ms)d)
t0 = time.ticks_ms()
failed = ok_after = 0
for i in range(%(max_polls)d):
    t = time.ticks_ms()
    try:
        r = c.get(%(url)r)
        r.read()
        res = str(r.status)
    except OSError as e:
        code = e.args[0] if e.args else 0
        res = 'ETIMEDOUT' if code == errno.ETIMEDOUT else 'E' + str(code).replace(' ', '_')
    print('poll', i, res, time.ticks_diff(time.ticks_ms(), t))
    if res != '200':
        failed += 1
    elif failed:
        ok_after += 1
    if ok_after >= 3 or time.ticks_diff(time.ticks_ms(), t0) > %(budget_ms)d:
        break
    time.sleep_ms(%(every_ms)d)
c.close()
print('done', failed, ok_after)
"""
POLL_TIMEOUT_MS = 1000
OUTAGE_S = 5.0


def test_http_polling_recovers_after_the_path_is_blackholed(netdevice, network,
                                                           record_property):
    server = network.call("server", HttpServer, network.SERVER_IP)
    try:
        netdevice.start(POLL_THROUGH_OUTAGE % {
            "url": server.url(), "timeout_ms": POLL_TIMEOUT_MS, "max_polls": 60,
            "budget_ms": 25000, "every_ms": 200})
        netdevice.expect(r"poll 2 200 ", timeout=20)
        with network.blackhole():
            t_hole = time.monotonic()
            netdevice.expect(r"poll \d+ ETIMEDOUT", timeout=10)
            time.sleep(max(0.0, t_hole + OUTAGE_S - time.monotonic()))
        t_back = time.monotonic()
        out = netdevice.finish(timeout=40)
    finally:
        server.stop()
    polls = [(int(i), res, int(ms)) for i, res, ms in
             re.findall(r"^poll (\d+) (\S+) (\d+)", out, re.MULTILINE)]
    results = [res for _, res, _ in polls]
    first_failure = results.index("ETIMEDOUT")
    failures = [p for p in polls if p[1] != "200"]
    record_property("outage_s", round(t_back - t_hole, 2))
    record_property("failed_poll_ms", " ".join(str(ms) for _, _, ms in failures))
    # polls before the outage succeed; during it they fail with a timeout, each bounded
    # (the timeout, plus up to 2 s waiting for the peer's FIN when closing): first on the
    # kept-alive connection (no response), then on new ones (no SYN+ACK)
    assert first_failure >= 3 and set(results[:first_failure]) == {"200"}, polls
    assert len(failures) >= 2, polls
    assert all(res == "ETIMEDOUT" for _, res, _ in failures), failures
    assert all(ms <= POLL_TIMEOUT_MS + 3000 for _, _, ms in failures), failures
    # and after it the device polls successfully again, without being restarted
    assert out.rstrip().endswith(f"done {len(failures)} 3"), out
    assert results[-3:] == ["200"] * 3, polls
    # the server saw it too: nothing during the outage, then requests on a new connection
    before = [r for r in server.requests if r.at < t_hole]
    during = [r for r in server.requests if t_hole + 0.2 < r.at < t_back]
    after = [r for r in server.requests if r.at >= t_back and r.status == 200
             and r.connection > max(b.connection for b in before)]
    assert len(before) >= 3 and not during, (before, during)
    assert len(after) >= 3, server.requests
    recovered = after[0].at - t_back
    record_property("recovered_after_s", round(recovered, 2))
    assert recovered <= 2 * (POLL_TIMEOUT_MS / 1000 + 2.0) + 1.0, recovered


CONNECT = """
import time
addr = socket.getaddrinfo(%(host)r, %(port)d)[0][-1]
s = socket.socket()
s.settimeout(10)
t = time.ticks_us()
s.connect(addr)
us = time.ticks_diff(time.ticks_us(), t)
s.write(b'x')
ok = s.read(1) == b'x'
s.close()
print('connect_ms', us / 1000, ok)
"""


def connect_ms(device, server):
    out = device.exec(CONNECT % {"host": device.server_host, "port": server.port},
                      timeout=30).split()
    assert out[0] == "connect_ms" and out[2] == "True", out
    return float(out[1])


def test_handshake_takes_a_round_trip_over_a_slow_link(netdevice, network, tmp_path,
                                                       record_property):
    from synack_host.hil.capture import unavailable
    from synack_host.hil.plugin import require_tools

    require_tools(unavailable(), "wire-level checks")
    server = network.call("server", EchoServer, network.SERVER_IP)
    try:
        clean_ms = connect_ms(netdevice, server)
        network.impair(delay_ms=50)                  # each way: 100 ms more round trip
        rtt = network.ping("device")
        assert rtt is not None, "no ping answer over the impaired link"
        rtt_ms = rtt * 1000
        with network.capture("device", tmp_path, ports=[server.port]) as cap:
            slow_ms = connect_ms(netdevice, server)
    finally:
        server.stop()
    flow = cap.flow()
    flow.assert_handshake()
    wire_ms = flow.handshake_time * 1000
    record_property("handshake_ms", round(slow_ms, 1))
    record_property("handshake_ms_clean", round(clean_ms, 1))
    record_property("wire_handshake_ms", round(wire_ms, 1))
    record_property("rtt_ms", round(rtt_ms, 1))
    assert rtt_ms >= 95, rtt_ms
    # the handshake costs one round trip: SYN out, SYN+ACK back
    assert wire_ms >= 0.95 * 100, wire_ms
    assert slow_ms >= 0.95 * 100 and slow_ms >= wire_ms - 5, (slow_ms, wire_ms)
    assert slow_ms - clean_ms >= 80, (slow_ms, clean_ms)
    assert slow_ms <= rtt_ms + 1000, slow_ms                 # and not much more
