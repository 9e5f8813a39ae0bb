"""Heartbeat driver over real TCP on 127.0.0.1 (firmware on CPython, synack.socket native
backend, and once over the virtual SIM7600): a middlebox that kills idle connections,
push messages between heartbeats, and a server that stops answering."""

from __future__ import annotations

import time

import pytest

from synack import heartbeat as hbm
from synack import socket as synsocket
from modemrig import Rig
from synack_host.hil.middlebox import IdleKillingProxy, heartbeat_server
from synack_host.hil.servers import ScriptedServer

MIDDLEBOX_IDLE_S = 1.0


@pytest.fixture
def hb_server():
    with ScriptedServer(heartbeat_server()) as server:
        yield server


@pytest.fixture
def middlebox(hb_server):
    proxy = IdleKillingProxy(hb_server.address, MIDDLEBOX_IDLE_S)
    yield proxy
    proxy.stop()


def connect(port: int, backend=None) -> synsocket.socket:
    s = synsocket.socket(backend=backend or synsocket.current_backend())
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    return s


def test_heartbeat_keeps_the_connection_alive_through_an_idle_killing_middlebox(middlebox):
    s = connect(middlebox.port)
    pushed: list[bytes] = []
    hb = hbm.Heartbeat(idle_ms=300, timeout_ms=500, misses=3)
    drv = hbm.Driver(s, hb, pushed.append, poll_ms=50)
    assert drv.run(duration_ms=3000) == "deadline"       # 3 x the middlebox's idle limit
    assert hb.state_name == "ACTIVE", hb.reason
    assert middlebox.kills == 0
    assert hb.acks >= 6 and hb.total_misses == 0
    assert hb.rtt_ms is not None and hb.rtt_ms < 200
    # ...and the connection still carries application data end to end.
    drv.send(b"ECHO still here\n")
    drv.run(duration_ms=2000, stop=lambda: bool(pushed))
    assert pushed == [b"ECHO still here"]
    s.close()
    assert middlebox.connections == 1


def test_without_heartbeats_the_same_connection_is_killed(middlebox):
    s = connect(middlebox.port)
    hb = hbm.Heartbeat(idle_ms=60000, timeout_ms=500, misses=3)   # never fires here
    drv = hbm.Driver(s, hb, lambda line: None, poll_ms=50)
    t0 = time.monotonic()
    assert drv.run(duration_ms=3000) == "dead"
    took = time.monotonic() - t0
    assert middlebox.kills == 1
    assert hb.reason == "connection closed by the peer"
    assert MIDDLEBOX_IDLE_S * 0.9 <= took <= MIDDLEBOX_IDLE_S + 0.5, took
    with pytest.raises(OSError):          # writing into the killed connection fails too
        for _ in range(50):
            s.write(b"ECHO anyone?\n")
            time.sleep(0.01)
    s.close()


def test_push_messages_are_delivered_between_heartbeats():
    log: list = []
    pushes = ((0.25, b"PUSH 1"), (0.75, b"PUSH 2"), (1.25, b"PUSH 3"))
    with ScriptedServer(heartbeat_server(pushes=pushes, log=log)) as server:
        s = connect(server.port)
        got: list[tuple[bytes, int]] = []
        hb = hbm.Heartbeat(idle_ms=200, timeout_ms=500, misses=3)
        drv = hbm.Driver(s, hb, lambda line: got.append((line, hb.acks)), poll_ms=20)
        drv.run(duration_ms=4000, stop=lambda: len(got) == 3)
        s.close()
    assert [line for line, _ in got] == [b"PUSH 1", b"PUSH 2", b"PUSH 3"]
    assert hb.pushes == 3 and hb.state_name == "ACTIVE"
    acks_at_push = [acks for _, acks in got]
    assert acks_at_push[0] < acks_at_push[1] < acks_at_push[2], acks_at_push
    # On the server's side heartbeats really arrived between the pushes.
    order = [(d, line[:3]) for _, d, line in log]
    first, last = order.index(("push", b"PUS")), len(order) - 1 - order[::-1].index(
        ("push", b"PUS"))
    assert ("in", b"HB ") in order[first:last]


def test_server_that_stops_answering_is_dead_after_k_misses():
    log: list = []
    idle, timeout, misses = 300, 250, 3
    with ScriptedServer(heartbeat_server(answer=False, log=log)) as server:
        s = connect(server.port)
        hb = hbm.Heartbeat(idle_ms=idle, timeout_ms=timeout, misses=misses)
        drv = hbm.Driver(s, hb, lambda line: None, poll_ms=50)
        t0 = time.monotonic()
        assert drv.run(duration_ms=5000) == "dead"
        took = time.monotonic() - t0
        s.close()
    expected = (idle + misses * timeout) / 1000
    assert expected - 0.02 <= took <= expected + 0.5, (took, expected)
    assert "no answer to 3 heartbeat(s)" in hb.reason
    assert (hb.pings_sent, hb.total_misses, hb.acks) == (3, 3, 0)
    assert [line for _, d, line in log if d == "in"] == [b"HB 1", b"HB 2", b"HB 3"]


def test_server_close_ends_the_run_at_once():
    def hang_up(conn):
        conn.sendall(b"BYE\n")
        time.sleep(0.2)

    with ScriptedServer(hang_up) as server:
        s = connect(server.port)
        got: list[bytes] = []
        drv = hbm.Driver(s, hbm.Heartbeat(idle_ms=5000), got.append, poll_ms=50)
        t0 = time.monotonic()
        assert drv.run(duration_ms=5000) == "dead"
        assert time.monotonic() - t0 < 1.0
        s.close()
    assert got == [b"BYE"]
    assert drv.hb.reason == "connection closed by the peer"
    assert s.tcp.states()[-3:] == ["CLOSE_WAIT", "LAST_ACK", "CLOSED"]


def test_heartbeat_and_push_over_the_virtual_modem():
    handler = heartbeat_server(pushes=((0.6, b"PUSH over the air"),))
    with Rig(poll_ms=50) as rig, ScriptedServer(handler) as server:
        s = connect(server.port, backend=rig.modem)
        got: list[bytes] = []
        hb = hbm.Heartbeat(idle_ms=250, timeout_ms=1000, misses=2)
        drv = hbm.Driver(s, hb, got.append, poll_ms=50)
        assert drv.run(duration_ms=1500) == "deadline"
        assert got == [b"PUSH over the air"]
        assert hb.acks >= 3 and hb.total_misses == 0, (hb.acks, hb.total_misses)
        s.close()
